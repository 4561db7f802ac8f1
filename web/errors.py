"""Every HTTP error as ``{"error": {"code", "message", "details"}}`` JSON, never HTML.

What becomes what::

    werkzeug HTTPException           its status; 404 unknown route, 405 (allowed methods in
    │                                details and the Allow header), 413 body over the limit, ...
    ├── MalformedJSONError           400 malformed_json: the body is not UTF-8 JSON
    ├── MalformedFormError           400 malformed_form: the form body is not UTF-8
    ├── UnsupportedMediaTypeError    415 unsupported_media_type: a Content-Type the route does
    │                                not read; details name the expected types
    ├── FormTooLargeError            413 too_large: more form parts than allowed
    └── RequestSchemaValidationError 422 invalid: quart-schema refused the body, query or headers;
                                     details lists each field: {"loc": ["body", "password"], ...}
    ServiceError (kernel)            its own status and code; 401 adds WWW-Authenticate: Bearer,
                                     429 adds Retry-After; 504 timeout when a device or remote
                                     service did not answer in time
    AskTimeoutError, ActorStoppedError, StoreClosedError
                                     503 unavailable: a dependency is down or stopping
    StoreError caused by an OperationalError (locked, disk full, connection lost)
                                     503 unavailable: the database is, for now
    anything else                    500 internal, logged with its traceback and the request id;
                                     the body carries only the id

Every request gets an id (``g.request_id``), sent back as ``X-Request-ID``, so a user who reports
a 500 hands over the key to its log line.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ValidationError
from quart import Quart, Response, current_app, g, has_request_context, has_websocket_context
from quart import request, websocket
from quart_schema import RequestSchemaValidationError
from quart_schema.validation import QuerystringValidationError, RequestHeadersValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    MethodNotAllowed,
    RequestEntityTooLarge,
    UnsupportedMediaType,
)

from vareon_runtime.errors import (
    ActorStoppedError,
    AskTimeoutError,
    AuthenticationError,
    ServiceError,
    StoreClosedError,
    StoreError,
    TooManyRequestsError,
)

__all__ = [
    "MAX_PROBLEMS",
    "FormTooLargeError",
    "MalformedFormError",
    "MalformedJSONError",
    "UnsupportedMediaTypeError",
    "answers",
    "answers_of",
    "capped",
    "error_response",
    "install_error_handlers",
    "new_request_id",
    "request_id",
]

log = logging.getLogger("vareon.web")

REQUEST_ID_HEADER = "X-Request-ID"

MAX_PROBLEMS = 20
"""The most problems an error's ``details`` lists; a last entry counts the rest."""

# Request ids: a random prefix per process and a counter. Unique, cheap (uuid4 reads the OS
# random source on every request, measurable under load), and not meant to be secret.
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count(1)

# Codes for the HTTP errors werkzeug raises; the kernel's ServiceErrors carry their own.
_HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
}

# Kernel errors that mean "a dependency is down or stopping", not a bug of ours.
_UNAVAILABLE = (AskTimeoutError, ActorStoppedError, StoreClosedError)
# Causes of a StoreError that mean "the database cannot serve right now": locked past the busy
# timeout, disk full, connection lost, no pooled connection free.
_DATABASE_DOWN = (OperationalError, PoolTimeoutError)
_DATABASE_DOWN_MESSAGE = (
    "the database is unavailable (locked, full or unreachable); try again later"
)


def _why_undecodable(error: Exception) -> str:
    if isinstance(error, UnicodeDecodeError):
        return f"it is not UTF-8 ({error.reason} at byte {error.start})"
    if isinstance(error, RecursionError):
        return "it is nested too deeply"
    return str(error)


class MalformedJSONError(BadRequest):
    """The request said it carries JSON and it does not parse (or is not UTF-8)."""

    error_code = "malformed_json"

    def __init__(self, error: Exception) -> None:
        super().__init__(f"request body is not valid JSON: {_why_undecodable(error)}")


class MalformedFormError(BadRequest):
    """The request said it carries a form and it cannot be read (not UTF-8)."""

    error_code = "malformed_form"

    def __init__(self, error: Exception) -> None:
        super().__init__(f"request body is not a valid form: {_why_undecodable(error)}")


class UnsupportedMediaTypeError(UnsupportedMediaType):
    """The body's Content-Type is not one the route reads."""

    def __init__(self, where: str, expected: list[str], received: str | None) -> None:
        kinds = "a JSON body" if expected == ["application/json"] else "a JSON or form body"
        *first, last = expected
        types = f"{', '.join(first)} or {last}" if first else last
        super().__init__(
            f"{where} takes {kinds}: send it with Content-Type: {types},"
            f" not {received or 'no Content-Type'}"
        )
        self.details = {"expected": expected, "received": received}


class FormTooLargeError(RequestEntityTooLarge):
    """A form body within the size limit, but with more parts (or a bigger field) than allowed."""

    def __init__(self, max_parts: int | None, max_field_size: int | None) -> None:
        details: dict[str, int | None] = {"max_parts": max_parts}
        if max_field_size is None:
            description = (
                f"the form has more than {max_parts} parts; send at most {max_parts} fields"
                " and files"
            )
        else:
            # The parser does not say which of its two limits it hit.
            description = (
                f"the form has more than {max_parts} parts or a field larger than"
                f" {max_field_size} bytes"
            )
            details["max_field_size"] = max_field_size
        super().__init__(description)
        self.details = details


def request_id() -> str:
    """The id of the current request or WebSocket, made on first use."""
    rid: str | None = g.get("request_id")
    if rid is None:
        rid = g.request_id = new_request_id()
    return rid


def new_request_id() -> str:
    """A fresh request id (for a request answered outside Quart's request context)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


_ANSWERS_ATTRIBUTE = "_vareon_answers"
F = TypeVar("F", bound=Callable[..., Any])


def answers(status: int, description: str) -> Callable[[F], F]:
    """Declare an answer of a view for the API document (``@answers(401, "wrong password")``).

    Every protected route is documented with 401, 403, 503 and, if it changes something, 409;
    a route with an id in its path with 404; one with a body with 400, 413, 415, 422. A view
    declares what else it answers, and 204 when it answers no body.
    """

    def decorator(view: F) -> F:
        declared = dict(getattr(view, _ANSWERS_ATTRIBUTE, {}))
        declared[status] = description
        setattr(view, _ANSWERS_ATTRIBUTE, declared)
        return view

    return decorator


def answers_of(view: Callable[..., Any] | None) -> dict[int, str]:
    """What ``view`` declared with :func:`answers`, by status."""
    return dict(getattr(view, _ANSWERS_ATTRIBUTE, {}))


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Build the uniform JSON error response."""
    body = json.dumps(
        {"error": {"code": code, "message": message, "details": details}},
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )
    response: Response = current_app.response_class(
        body, status=status, mimetype="application/json"
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def install_error_handlers(app: Quart) -> None:
    """Make every error of ``app`` JSON and give each request an id."""
    app.config["PROPAGATE_EXCEPTIONS"] = False  # even in testing: always the JSON 500
    # No hook assigns the id up front: request_id() makes it on first use (a log line, an
    # error body, or at the latest the X-Request-ID header below).
    app.after_request(_send_request_id)
    app.register_error_handler(HTTPException, _on_http_exception)
    app.register_error_handler(RequestSchemaValidationError, _on_validation_error)
    app.register_error_handler(ServiceError, _on_service_error)
    app.register_error_handler(Exception, _on_exception)


async def _send_request_id(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = request_id()
    return response


def _where() -> str:
    return " ".join(_method_and_path())


def _method_and_path() -> tuple[str, str]:
    if has_request_context():
        return request.method, request.path
    if has_websocket_context():
        return "WEBSOCKET", websocket.path
    return "?", "?"


async def _on_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    if status >= 500 and status != 503:
        original = getattr(error, "original_exception", None)
        return _internal(original if isinstance(original, BaseException) else error)
    code = _HTTP_CODES.get(status) or _snake(error.name)
    method, path = _method_and_path()
    details: Any = None
    headers: dict[str, str] = {}
    message = error.description or error.name
    if status == 404:
        message = f"no route {method} {path}; the API is listed at /docs"
    elif isinstance(error, MethodNotAllowed):
        allowed = sorted(m for m in (error.valid_methods or ()) if m not in ("HEAD", "OPTIONS"))
        message = f"{method} is not allowed on {path}; allowed: {', '.join(allowed) or 'none'}"
        details = {"allowed": allowed}
        headers["Allow"] = ", ".join(allowed)
    elif isinstance(error, (FormTooLargeError, UnsupportedMediaTypeError)):
        details = error.details
    elif status == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        message = (
            f"request body is larger than the limit of {limit} bytes"
            " ([server] max_body_size in config.toml)"
        )
        details = {"limit": limit}
    code = getattr(error, "error_code", code)
    return error_response(status, code, message, details, headers)


async def _on_validation_error(error: RequestSchemaValidationError) -> Response:
    if isinstance(error, QuerystringValidationError):
        source = "query"
    elif isinstance(error, RequestHeadersValidationError):
        source = "header"
    else:
        source = "body"
    cause = error.validation_error
    fields: list[dict[str, Any]]
    if isinstance(cause, ValidationError):
        # No "input": it would echo passwords back.
        fields = [
            {"loc": [source, *err["loc"]], "msg": err["msg"], "type": err["type"]}
            for err in cause.errors(include_url=False)
        ]
    else:
        fields = [{"loc": [source], "msg": str(cause), "type": type(cause).__name__}]
    first = fields[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(fields) - 1} more)" if len(fields) > 1 else ""
    return error_response(422, "invalid", f"{where}: {first['msg']}{more}", capped(fields))


def capped(details: Any) -> Any:
    """``details`` with a list of problems cut to its first :data:`MAX_PROBLEMS` and a last entry
    counting the rest: a body with 90,000 bad keys gets a short answer, not 8 MB of them."""
    if not isinstance(details, list) or len(details) <= MAX_PROBLEMS:
        return details
    rest = len(details) - MAX_PROBLEMS
    return [
        *details[:MAX_PROBLEMS],
        {"loc": [], "msg": f"{rest} more problem(s) not listed; fix these first", "type": "truncated"},
    ]


async def _on_service_error(error: ServiceError) -> Response:
    headers: dict[str, str] = {}
    if isinstance(error, AuthenticationError):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error, TooManyRequestsError):
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return error_response(error.status, error.code, error.message, capped(error.details), headers)


async def _on_exception(error: Exception) -> Response:
    if isinstance(error, _UNAVAILABLE):
        log.warning("request %s: %s: dependency unavailable: %s", request_id(), _where(), error)
        return error_response(
            503, "unavailable", f"a part of the runtime is unavailable: {error}",
            {"request_id": request_id()},
        )
    if isinstance(error, StoreError) and isinstance(error.__cause__, _DATABASE_DOWN):
        # The store's message names the failing step and the driver's reason; with the
        # engines' hide_parameters it carries no statement parameters (no hashes, no tokens).
        log.warning("request %s: %s: database unavailable: %s", request_id(), _where(), error)
        return error_response(
            503, "unavailable", _DATABASE_DOWN_MESSAGE, {"request_id": request_id()}
        )
    return _internal(error)


def _internal(error: BaseException) -> Response:
    rid = request_id()
    log.error("request %s failed: %s", rid, _where(), exc_info=error)
    return error_response(500, "internal", "internal error", {"request_id": rid})


def _snake(name: str) -> str:
    return "_".join(name.lower().split())
