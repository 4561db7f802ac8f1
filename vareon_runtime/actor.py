"""Actors: a task that owns its state and is reached only through typed messages.

An actor declares handlers with :func:`handles`::

    class Counter(Actor):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        @handles(Add)
        async def add(self, msg: Add) -> int:
            self.count += msg.n
            return self.count

``await nursery.start(counter.run)`` returns its :class:`ActorRef`. ``await ref.tell(msg)`` queues
a message (waiting while the bounded mailbox is full); ``await ref.ask(msg, timeout=1)`` waits for
the handler's return value. A type the actor has no handler for is refused at the caller with
:class:`UnhandledMessageError`, never dropped silently.

Under a :class:`~vareon_runtime.supervisor.Supervisor` the mailbox and the ref outlive a crash:
messages queued while the actor restarts are handled by the next incarnation, so holders of a ref
never need a new one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

import trio

from .errors import (
    ActorCrashedError,
    ActorStoppedError,
    AskTimeoutError,
    UnhandledMessageError,
    VareonError,
)
from .messages import Message

__all__ = ["DEFAULT_ASK_TIMEOUT", "Actor", "ActorRef", "Mailbox", "handles", "lone_leaf"]

log = logging.getLogger("vareon.actor")

DEFAULT_ASK_TIMEOUT = 5.0
"""Seconds an ``ask`` waits when the caller names no timeout."""

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def handles(*message_types: type[Message]) -> Callable[[F], F]:
    """Mark an actor method as the handler of one or more message types.

    Raises:
        TypeError: if a type is not a :class:`Message` subclass.
    """
    for message_type in message_types:
        if not (isinstance(message_type, type) and issubclass(message_type, Message)):
            raise TypeError(f"@handles takes Message subclasses, not {message_type!r}")

    def mark(method: F) -> F:
        method.__vareon_handles__ = message_types  # type: ignore[attr-defined]
        return method

    return mark


class _Reply:
    """A one-shot reply slot: cheaper than a channel pair per ``ask``."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def set(self, value: Any) -> None:
        self.value = value
        self.done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


class Mailbox:
    """An actor's bounded queue of ``(message, reply)`` envelopes; outlives restarts."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"mailbox size must be at least 1, not {size!r}")
        self.size = size
        self.closed = False
        self.send, self.receive = trio.open_memory_channel[tuple[Message, _Reply | None]](size)

    def reopen(self) -> None:
        """Give a closed mailbox fresh channels (a failed child started again by a user)."""
        self.closed = False
        self.send, self.receive = trio.open_memory_channel[tuple[Message, _Reply | None]](self.size)

    def close(self, name: str) -> None:
        """Refuse further messages and fail every ``ask`` still waiting in the queue."""
        self.closed = True
        self.send.close()
        while True:
            try:
                _, reply = self.receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            if reply is not None:
                reply.fail(ActorStoppedError(f"{name} stopped before answering"))
        self.receive.close()

    @property
    def depth(self) -> int:
        """Messages waiting to be handled."""
        return self.send.statistics().current_buffer_used


class ActorRef:
    """The address of an actor: what other code holds and sends messages to.

    A ref is stable across restarts of the actor under a supervisor.
    """

    __slots__ = ("_accepts", "_actor_type", "_mailbox", "name")

    def __init__(self, name: str, mailbox: Mailbox, actor_type: type[Actor]) -> None:
        self.name = name
        self._mailbox = mailbox
        self._actor_type = actor_type
        self._accepts = actor_type._accepts

    def __repr__(self) -> str:
        return f"<ActorRef {self.name} ({self._actor_type.__name__})>"

    @property
    def actor_type(self) -> type[Actor]:
        """The class of the actor behind this ref."""
        return self._actor_type

    @property
    def alive(self) -> bool:
        """Whether the actor takes messages: its mailbox is open (also while it restarts)."""
        return not self._mailbox.closed

    @property
    def mailbox_depth(self) -> int:
        """Messages waiting in the actor's mailbox."""
        return self._mailbox.depth

    def _check(self, message: Message) -> None:
        if self._actor_type._handler_name(type(message)) is None:
            known = ", ".join(sorted(t.__name__ for t in self._accepts)) or "nothing"
            raise UnhandledMessageError(
                f"{self.name} ({self._actor_type.__name__}) has no handler for "
                f"{type(message).__name__}; it handles {known}"
            )

    async def tell(self, message: Message) -> None:
        """Queue ``message`` without waiting for it to be handled.

        Waits while the mailbox is full (back-pressure).

        Raises:
            UnhandledMessageError: the actor has no handler for the message's type.
            ActorStoppedError: the actor was stopped for good.
        """
        if type(message) not in self._accepts:
            self._check(message)
        try:
            await self._mailbox.send.send((message, None))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise ActorStoppedError(f"{self.name} is stopped; it takes no messages") from None

    async def ask(self, message: Message, *, timeout: float = DEFAULT_ASK_TIMEOUT) -> Any:
        """Send ``message`` and return the handler's result.

        Raises:
            UnhandledMessageError: the actor has no handler for the message's type.
            AskTimeoutError: no reply within ``timeout`` seconds (queueing included).
            ActorStoppedError: the actor was stopped for good before answering, or it stopped
                (or crashed elsewhere) while handling the message.
            ActorCrashedError: the handler failed with an unexpected error.
            VareonError: whatever refusal the handler raised (a ConflictError, say).
        """
        if type(message) not in self._accepts:
            self._check(message)
        reply = _Reply()
        with trio.move_on_after(timeout):
            try:
                await self._mailbox.send.send((message, reply))
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                raise ActorStoppedError(f"{self.name} is stopped; it takes no messages") from None
            await reply.done.wait()
        if not reply.done.is_set():
            raise AskTimeoutError(
                f"{self.name} did not answer {type(message).__name__} within {timeout:g}s"
            )
        if reply.error is not None:
            raise reply.error
        return reply.value


def lone_leaf(exc: BaseException) -> BaseException:
    """The exception inside nested one-member exception groups; ``exc`` itself otherwise.

    A crash inside a nursery arrives wrapped in a one-leaf group; callers, supervisors and logs
    want the crash. A group of several stays a group.
    """
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class Actor:
    """Base class of actors. Subclasses add ``@handles`` methods and may override the hooks.

    Hooks: :meth:`on_start` runs before the actor is reported started (open what it owns there);
    :meth:`on_stop` runs whenever it ends, crash or stop, shielded and bounded by
    ``stop_timeout`` (release what it owns there). ``self.nursery`` runs the actor's own
    background tasks; if one of them raises, the actor crashes.
    """

    mailbox_size: ClassVar[int] = 128
    _accepts: ClassVar[frozenset[type[Message]]] = frozenset()
    _handlers: ClassVar[dict[type[Message], str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[type[Message], str] = {}
        for klass in reversed(cls.__mro__):
            for attr_name, attr in vars(klass).items():
                for message_type in getattr(attr, "__vareon_handles__", ()):
                    handlers[message_type] = attr_name
        cls._handlers = handlers
        cls._accepts = frozenset(handlers)

    @classmethod
    def _handler_name(cls, message_type: type[Message]) -> str | None:
        # Exact type first (the hot path), then a handler declared for a base message class.
        name = cls._handlers.get(message_type)
        if name is None:
            for base in message_type.__mro__[1:]:
                name = cls._handlers.get(base)
                if name is not None:
                    break
        return name

    def __init__(self) -> None:
        self.name: str = type(self).__name__
        self.stop_timeout: float = 5.0
        self._mailbox: Mailbox | None = None
        self._ref: ActorRef | None = None
        self._loop_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None

    @property
    def ref(self) -> ActorRef:
        """This actor's address (available once it has been bound or started)."""
        if self._ref is None:
            raise RuntimeError(f"{self.name} has no ref before it is started")
        return self._ref

    @property
    def nursery(self) -> trio.Nursery:
        """The nursery for this actor's own background tasks (open while it runs)."""
        if self._nursery is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._nursery

    def bind(self, name: str, ref: ActorRef, mailbox: Mailbox, *, stop_timeout: float) -> None:
        """Attach a supervisor-owned mailbox before :meth:`run` (used by the supervisor)."""
        self.name = name
        self._ref = ref
        self._mailbox = mailbox
        self.stop_timeout = stop_timeout

    def stop(self) -> None:
        """End this actor normally after the current message (a ``transient`` child stays down)."""
        if self._loop_scope is not None:
            self._loop_scope.cancel()

    async def on_start(self) -> None:
        """Open what the actor owns. Runs before ``run`` reports the actor started."""

    async def on_stop(self) -> None:
        """Release what the actor owns. Runs on every ending, shielded, within ``stop_timeout``."""

    async def run(self, *, task_status: trio.TaskStatus[ActorRef] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the mailbox until stopped or cancelled; reports the ref once ready."""
        standalone = self._mailbox is None
        if self._mailbox is None:
            mailbox = Mailbox(self.mailbox_size)
            self._mailbox = mailbox
            self._ref = ActorRef(self.name, mailbox, type(self))
        mailbox = self._mailbox
        try:
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    await self.on_start()
                    task_status.started(self.ref)
                    with trio.CancelScope() as self._loop_scope:
                        await self._serve(mailbox.receive)
                    nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                # The nursery wraps even a lone error; callers and supervisors want the error.
                leaf = lone_leaf(group)
                if not isinstance(leaf, Exception) or isinstance(leaf, BaseExceptionGroup):
                    raise
                raise leaf from leaf.__cause__
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True) as cleanup:
                cleanup.deadline = trio.current_time() + self.stop_timeout
                await self.on_stop()
            if cleanup.cancelled_caught:
                log.warning("%s: on_stop did not finish within %gs", self.name, self.stop_timeout)
            if standalone:
                mailbox.close(self.name)

    async def _serve(self, receive: trio.MemoryReceiveChannel[tuple[Message, _Reply | None]]) -> None:
        handlers = type(self)._handlers
        while True:
            try:
                message, reply = await receive.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return
            name = handlers.get(type(message)) or type(self)._handler_name(type(message))
            handler = getattr(self, name)  # type: ignore[arg-type]
            if reply is None:
                await handler(message)
                continue
            try:
                result = await handler(message)
            except VareonError as exc:
                reply.fail(exc)  # a refusal: the caller's problem, the actor lives on
            except Exception as exc:
                crash = ActorCrashedError(
                    f"{self.name} crashed handling {type(message).__name__}: {exc!r}"
                )
                crash.__cause__ = exc
                reply.fail(crash)
                raise
            except BaseException:
                # Cancelled: the actor is being stopped, or crashed elsewhere in its nursery. The
                # asker learns now rather than at its timeout.
                reply.fail(ActorStoppedError(f"{self.name} stopped while handling {type(message).__name__}"))
                raise
            else:
                reply.set(result)
