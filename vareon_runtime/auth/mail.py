"""Outgoing mail over SMTP (stdlib ``smtplib`` in a worker thread), for verification tokens."""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage

import trio

from vareon_runtime.config import EmailConfig
from vareon_runtime.errors import ConfigError

__all__ = ["SMTP_TIMEOUT", "Mailer"]

SMTP_TIMEOUT = 15.0


class Mailer:
    """Send plain-text mails through the ``[email]`` SMTP server.

    Args:
        config: the ``[email]`` section; ``smtp_host`` must be set.
        environ: where the password variable is looked up (default ``os.environ``).
    """

    def __init__(self, config: EmailConfig, *, environ: Mapping[str, str] | None = None) -> None:
        if config.smtp_host is None:
            raise ValueError("Mailer needs [email] smtp_host")
        self._config = config
        self._environ = os.environ if environ is None else environ

    async def send(self, to: str, subject: str, body: str) -> None:
        """Send one mail; returns once the server accepted it.

        Raises:
            ConfigError: ``[email] username`` is set but the password variable is not.
            OSError, smtplib.SMTPException: the server is unreachable or refused the mail.
        """
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
        await trio.to_thread.run_sync(self._send, message, password)

    def _send(self, message: EmailMessage, password: str | None) -> None:
        config = self._config
        assert config.smtp_host is not None
        with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=SMTP_TIMEOUT) as smtp:
            if config.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if config.username is not None and password is not None:
                smtp.login(config.username, password)
            smtp.send_message(message)
