"""``@direct``: a GET route answered from memory, without Quart's request machinery (decision
0018), and :class:`VareonApp`, the Quart-Trio app that keeps the table of such routes.

A route whose 200 body is already in memory (``/health``, ``/api/users/me``) declares
``@direct(answer)``; the connection (:class:`web.connection.VareonConnection`) answers it with
the same checks, headers and body as Quart would, and leaves every request it cannot answer so
to Quart. The mechanism turns itself off, with a warning, when a request hook is installed that
a direct answer would skip.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import CodeType
from typing import Any, TypeVar

from pydantic import BaseModel
from quart_schema.validation import QUART_SCHEMA_RESPONSE_ATTRIBUTE
from quart_trio import QuartTrio

from vareon_runtime.auth import Principal
from vareon_runtime.component import RuntimeContext

from .permissions import Access, access_of

__all__ = ["DIRECT_ATTRIBUTE", "DirectAnswer", "DirectRoute", "VareonApp", "direct"]

log = logging.getLogger("vareon.web")

DIRECT_ATTRIBUTE = "_vareon_direct"
DirectAnswer = Callable[[RuntimeContext, Principal | None], BaseModel | None]
"""``answer(ctx, principal)``: a route's 200 body from memory, or None to decline."""

F = TypeVar("F", bound=Callable[..., Any])


def direct(answer: DirectAnswer) -> Callable[[F], F]:
    """Let a GET route be answered from memory, without Quart's request machinery.

    Put it under the route decorator, beside the access marker. ``answer(ctx, principal)``
    computes the route's 200 body from memory, without I/O or side effects (``principal`` is
    None on a public route), or returns None to decline. The view stays the route of record
    (the docs, HEAD, every request the short path declines) and answers the same: it should
    call ``answer`` too.

    The connection answers directly only a bodiless HTTP/1 GET of the route's exact path whose
    caller passes the route's access from memory (:func:`web.permissions.caller_now`: the same
    token check, users view and role rule), when ``answer`` gives a model of the route's
    declared 200 schema. Anything else (no token, a refusal, an account not in memory, an
    error) takes the full path, which answers with its own checks and uniform errors. Direct
    answers carry the same headers (`Content-Type`, `Content-Length`, `X-Request-ID`) and body.
    """

    def decorator(view: F) -> F:
        setattr(view, DIRECT_ATTRIBUTE, answer)
        return view

    return decorator


@dataclass(frozen=True, slots=True)
class DirectRoute:
    """A route answered by :func:`direct`: its path, access, answer and 200 model."""

    path: str
    access: Access
    answer: DirectAnswer
    model: type[BaseModel]


def _request_hooks(app: QuartTrio) -> dict[str, Any]:
    """The hooks Quart runs around an HTTP view (signals are checked at each request)."""
    hooks: dict[str, Any] = {}
    for kind in (
        "before_request_funcs",
        "after_request_funcs",
        "teardown_request_funcs",
        "url_value_preprocessors",
    ):
        for blueprint, functions in getattr(app, kind).items():
            for function in functions:
                hooks[f"{kind}[{blueprint}]:{getattr(function, '__qualname__', function)}"] = function
    for function in app.teardown_appcontext_funcs:
        hooks[f"teardown_appcontext:{getattr(function, '__qualname__', function)}"] = function
    return hooks


def _added_hooks(known: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    if known is None:
        return sorted(now) or ["(hooks never recorded)"]
    return sorted(name for name, hook in now.items() if known.get(name) is not hook)


class VareonApp(QuartTrio):
    """The runtime's Quart-Trio app: Quart-Trio, plus the table of :func:`direct` routes.

    It also remembers which functions are coroutine functions: Quart asks ``ensure_async`` of
    every hook, view and session call of every request, and each answer costs an `inspect`
    walk, while the answer is a property of the function's code.

    Attributes:
        direct_routes: the :func:`direct` routes by path, found once the app starts serving
            (None before: every request takes Quart's path).
        direct_answers: False sends every request through Quart (to compare the two paths).
        dump_options: how response models become JSON (quart-schema's options, as JSON).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._coroutine_code: set[CodeType] = set()
        self.direct_routes: dict[str, DirectRoute] | None = None
        self.direct_answers = True
        self.dump_options: dict[str, Any] = {}
        self._hooks_known: dict[str, Any] | None = None

    def know_hooks(self) -> None:
        """Take the request hooks installed so far as the ones :func:`direct` answers stand
        for (the body limit, the access check, the request id)."""
        self._hooks_known = _request_hooks(self)

    def find_direct_routes(self) -> None:
        """Fill :attr:`direct_routes` from the URL map (at startup, once routes are final).

        Direct answers stay off, with a warning naming them, when hooks were added since
        :meth:`know_hooks`: a direct answer would skip them.

        Raises:
            TypeError: a view declares :func:`direct` on a route it cannot serve (not a GET
                of a fixed path, or no model for 200).
        """
        routes: dict[str, DirectRoute] = {}
        for rule in self.url_map.iter_rules():
            view = self.view_functions.get(rule.endpoint)
            answer = getattr(view, DIRECT_ATTRIBUTE, None)
            if answer is None:
                continue
            schemas = getattr(view, QUART_SCHEMA_RESPONSE_ATTRIBUTE, {})
            model, headers_model = schemas.get(200, (None, None))
            if (
                rule.websocket
                or "GET" not in (rule.methods or ())
                or rule.arguments
                or not (isinstance(model, type) and issubclass(model, BaseModel))
                or headers_model is not None
            ):
                raise TypeError(
                    f"{rule.endpoint} ({rule.rule}) declares @direct, which needs a GET route"
                    " of a fixed path with @validate_response(Model) for 200; drop @direct"
                )
            access = access_of(view)
            if access is None:
                continue  # refused with 403 by the full path, as a bug
            routes[rule.rule] = DirectRoute(rule.rule, access, answer, model)
        extra = _added_hooks(self._hooks_known, _request_hooks(self))
        if routes and extra:
            log.warning(
                "direct answers are off: they would skip the request hooks %s; run them in"
                " web.connection.VareonConnection or drop them",
                ", ".join(extra),
            )
            routes = {}
        self.direct_routes = routes

    def ensure_async(self, func: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        code = getattr(func, "__code__", None)
        if code is not None and code in self._coroutine_code:
            return func
        result = super().ensure_async(func)
        if result is func and code is not None:
            self._coroutine_code.add(code)
        return result
