"""Every HTTP error as ``{"error": {"code", "message", "details"}}`` JSON, never HTML.

What becomes what::

    werkzeug HTTPException           its status; 404 unknown route, 405 (allowed methods in
    │                                details and the Allow header), 413 body over the limit, ...
    ├── MalformedJSONError           400 malformed_json: the body is not JSON
    └── RequestSchemaValidationError 422 invalid: quart-schema refused the body, query or headers;
                                     details lists each field: {"loc": ["body", "password"], ...}
    ServiceError (kernel)            its own status and code; 401 adds WWW-Authenticate: Bearer,
                                     429 adds Retry-After
    AskTimeoutError, ActorStoppedError, StoreClosedError
                                     503 unavailable: a dependency is down or stopping
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
from typing import Any

from quart import Quart, Response, current_app, g, has_request_context, has_websocket_context
from quart import request, websocket
from pydantic import ValidationError
from quart_schema import RequestSchemaValidationError
from quart_schema.validation import QuerystringValidationError, RequestHeadersValidationError
from werkzeug.exceptions import BadRequest, HTTPException, MethodNotAllowed

from vareon_runtime.errors import (
    ActorStoppedError,
    AskTimeoutError,
    AuthenticationError,
    ServiceError,
    StoreClosedError,
    TooManyRequestsError,
)

__all__ = [
    "MalformedJSONError",
    "error_response",
    "install_error_handlers",
    "request_id",
]

log = logging.getLogger("vareon.web")

REQUEST_ID_HEADER = "X-Request-ID"

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


class MalformedJSONError(BadRequest):
    """The request said it carries JSON and it does not parse."""

    def __init__(self, error: Exception) -> None:
        super().__init__(f"request body is not valid JSON: {error}")


def request_id() -> str:
    """The id of the current request or WebSocket, made on first use."""
    rid: str | None = g.get("request_id")
    if rid is None:
        rid = g.request_id = f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"
    return rid


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
    elif status == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        message = (
            f"request body is larger than the limit of {limit} bytes"
            " ([server] max_body_size in config.toml)"
        )
        details = {"limit": limit}
    elif isinstance(error, MalformedJSONError):
        code = "malformed_json"
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
    return error_response(422, "invalid", f"{where}: {first['msg']}{more}", fields)


async def _on_service_error(error: ServiceError) -> Response:
    headers: dict[str, str] = {}
    if isinstance(error, AuthenticationError):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error, TooManyRequestsError):
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return error_response(error.status, error.code, error.message, error.details, headers)


async def _on_exception(error: Exception) -> Response:
    if isinstance(error, _UNAVAILABLE):
        log.warning("request %s: %s: dependency unavailable: %s", request_id(), _where(), error)
        return error_response(
            503, "unavailable", f"a part of the runtime is unavailable: {error}",
            {"request_id": request_id()},
        )
    return _internal(error)


def _internal(error: BaseException) -> Response:
    rid = request_id()
    log.error("request %s failed: %s", rid, _where(), exc_info=error)
    return error_response(500, "internal", "internal error", {"request_id": rid})


def _snake(name: str) -> str:
    return "_".join(name.lower().split())
