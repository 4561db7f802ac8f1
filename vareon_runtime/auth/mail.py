"""Outgoing mail: the :class:`Mailer`, a runtime child that sends queued mails over SMTP.

Sending mail must not hold up whoever asked for it: an SMTP server can take seconds to answer,
or never answer. The auth service queues a :class:`Mail` with :meth:`Mailer.submit`, which
returns at once; the mailer runs as a supervised child of the runtime (before the components, so
it stops after them) and sends the queue one mail at a time with the standard library's
``smtplib`` in a worker thread.

A send that fails is logged with what was sent, to whom, through which server, why, and what to
do instead, never with the body (it carries a token); it fails nothing else. Stopping does not
wait for a slow server: a send in flight is abandoned (its thread ends at the SMTP timeout) and
it, and every mail still queued, is logged as not sent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from vareon_runtime.config import EmailConfig
from vareon_runtime.errors import ConfigError

if TYPE_CHECKING:
    from email.message import EmailMessage

__all__ = ["QUEUE_SIZE", "SMTP_TIMEOUT", "Mail", "Mailer"]

logger = logging.getLogger("vareon.auth")

SMTP_TIMEOUT = 15.0
"""Seconds the SMTP client waits for the server at each step."""

QUEUE_SIZE = 256
"""Mails waiting to be sent at most; past it a new mail is refused (and logged)."""


@dataclass(frozen=True, slots=True)
class Mail:
    """One plain-text mail, and how to talk about it in the log without showing its body.

    Attributes:
        what: what the mail carries, for log lines ("the verification token of alice").
        remedy: what to do if it is not sent ("confirm it with `vareon user verify alice`").
    """

    to: str
    subject: str
    body: str
    what: str
    remedy: str

    def __repr__(self) -> str:
        return f"Mail(to={self.to!r}, subject={self.subject!r}, what={self.what!r})"


class Mailer:
    """Send mails through the ``[email]`` SMTP server, from a queue, off the request path.

    The queue lives as long as the object, so a restart of :meth:`run` (by its supervisor)
    keeps the mails not yet sent.

    Args:
        config: the ``[email]`` section; ``smtp_host`` must be set.
        environ: where the password variable is looked up (default ``os.environ``).
        queue_size: mails waiting at most.
    """

    def __init__(
        self,
        config: EmailConfig,
        *,
        environ: Mapping[str, str] | None = None,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        if config.smtp_host is None:
            raise ValueError("Mailer needs [email] smtp_host")
        self._config = config
        self._environ = os.environ if environ is None else environ
        self._outbox, self._queue = trio.open_memory_channel[Mail](queue_size)

    @property
    def server(self) -> str:
        """``host:port`` of the SMTP server, for log lines."""
        return f"{self._config.smtp_host}:{self._config.smtp_port}"

    def submit(self, mail: Mail) -> None:
        """Queue ``mail`` for sending and return at once.

        A full queue refuses the mail: that is logged as an error with the mail's remedy, and
        the caller goes on (a mail is never worth failing a request for).
        """
        try:
            self._outbox.send_nowait(mail)
        except trio.WouldBlock:
            logger.error(
                "%s to %s was not mailed: %d mails already wait for %s; %s",
                mail.what, mail.to, self._queue.statistics().current_buffer_used, self.server,
                mail.remedy,
            )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send queued mails one at a time until cancelled; then log what was not sent."""
        task_status.started()
        current: Mail | None = None
        try:
            while True:
                current = await self._queue.receive()
                await self._deliver(current)
                current = None
        except trio.Cancelled:
            # Stopping: nothing will send what is left, so say so for each.
            if current is not None:
                self._not_sent(current, f"the mailer stopped before {self.server} accepted it")
            while True:
                try:
                    mail = self._queue.receive_nowait()
                except trio.WouldBlock:
                    break
                self._not_sent(mail, "the mailer stopped first")
            raise

    async def send(self, to: str, subject: str, body: str) -> None:
        """Send one mail now (in a worker thread); return once the server accepted it.

        Cancelling abandons the thread, which ends at the latest after :data:`SMTP_TIMEOUT`.

        Raises:
            ConfigError: ``[email] username`` is set but the password variable is not.
            OSError, smtplib.SMTPException: the server is unreachable or refused the mail.
        """
        from email.message import EmailMessage  # the mail modules at the first mail, not at boot

        message = EmailMessage()
        message["From"] = self._config.from_address
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        password: str | None = None
        if self._config.username is not None:
            password = self._environ.get(self._config.password_env)
            if not password:
                raise ConfigError(
                    f"[email] username is set but the environment variable"
                    f" {self._config.password_env} (named by [email] password_env) is not"
                )
        await trio.to_thread.run_sync(self._send, message, password, abandon_on_cancel=True)

    async def _deliver(self, mail: Mail) -> None:
        import smtplib

        try:
            await self.send(mail.to, mail.subject, mail.body)
        except (OSError, smtplib.SMTPException, ConfigError) as exc:
            # The exception says what the server or the socket said: no body, no password.
            logger.error(
                "could not mail %s to %s via %s: %s; %s",
                mail.what, mail.to, self.server, exc, mail.remedy,
            )
            return
        logger.info("mailed %s to %s", mail.what, mail.to)

    def _not_sent(self, mail: Mail, why: str) -> None:
        logger.warning("%s to %s was not mailed: %s; %s", mail.what, mail.to, why, mail.remedy)

    def _send(self, message: EmailMessage, password: str | None) -> None:
        import smtplib
        import ssl

        config = self._config
        assert config.smtp_host is not None
        with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=SMTP_TIMEOUT) as smtp:
            if config.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if config.username is not None and password is not None:
                smtp.login(config.username, password)
            smtp.send_message(message)
