"""``create_app``: the Quart-Trio app of one runtime, with its blueprints, checks and docs.

One blueprint per web module, each published under the entry point group ``vareon.routes``
(``agents = "web.agents:blueprint"``): a new domain adds its module and its entry point, never
a line here. The entry point's name is the blueprint's tag in the API docs. Before any view: a request id, the body
limit (413 on a too large Content-Length before a byte of the body is read; a chunked body is cut
off by Quart once it passes the same limit; a route marked ``@upload_route`` has
``upload_max_size`` instead of ``max_body_size``, see :mod:`web.uploads`), then the access check
of :mod:`web.permissions`.
Bodies are read by :class:`~web.validation.VareonRequest` (strict JSON, UTF-8 forms, 415 for a
Content-Type the route does not take).
quart-schema publishes OpenAPI 3.1 at ``/openapi.json`` and Swagger UI at ``/docs`` with the
assets served from the installed ``swagger_ui_bundle`` under ``/docs/static/``, so the page works
on a box with no network. The redoc and scalar pages are off (they load scripts from a CDN).

The runtime context is kept in ``app.extensions["vareon"]`` (:mod:`web.context`).

What each request costs (decision 0018): :class:`~web.connection.VareonConnection` serves a
request whose body is all in without Quart-Trio's second task, a view's model is serialized to
JSON once, and a GET route declared :func:`~web.direct.direct` (``/health``,
``/api/users/me``) is answered from memory, with the same checks, headers and body, without
Quart's request machinery; anything it cannot answer so takes the full path.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_json
from quart import Blueprint, Response, current_app, redirect, request, send_from_directory
from quart.json.provider import DefaultJSONProvider
from quart_schema import (
    HttpSecurityScheme,
    Info,
    OAuth2SecurityScheme,
    OpenAPIProvider,
    QuartSchema,
    hide,
    tag_blueprint,
)
from quart_trio import QuartTrio
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing.rules import Rule

from vareon_runtime.auth import Role
from vareon_runtime.component import RuntimeContext
from vareon_runtime.errors import ConfigError

from .context import install_context
from .connection import VareonConnection
from .direct import VareonApp
from .errors import install_error_handlers
from .headers import add_security_headers
from .errors import answers_of
from .permissions import access_of, install_permissions, public
from .schemas import ErrorResponse
from .uploads import UploadTooLargeError, is_upload_route
from .validation import FORM_OR_JSON_ATTRIBUTE, VareonRequest

__all__ = ["DOCS_STATIC", "ROUTES_GROUP", "VareonRequest", "create_app", "discover_routes"]

log = logging.getLogger("vareon.web")

ROUTES_GROUP = "vareon.routes"
"""Entry points naming a web module's blueprint (``module:blueprint``), one per module."""

DOCS_STATIC = "/docs/static"
_SWAGGER_DIR = Path(str(swagger_ui_path))
_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}


class VareonOpenAPIProvider(OpenAPIProvider):
    """quart-schema's OpenAPI, plus each operation's security from its declared access."""

    def schema(self) -> dict[str, Any]:
        document = super().schema()
        error = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas = document["components"]["schemas"]
        schemas.update(error.pop("$defs", {}))
        schemas["ErrorResponse"] = error
        return document

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        view = self._app.view_functions[rule.endpoint]
        access = access_of(view)
        declared = answers_of(view)
        for path_item in paths.values():
            for method, operation in path_item.items():
                responses = operation["responses"] = dict(operation["responses"])
                if 204 in declared:  # nothing in the body: quart-schema's default 200 is not one
                    responses.pop(200, None)
                    responses.pop("200", None)
                    responses[204] = {"description": declared[204]}
                for status, description in declared.items():
                    if status >= 400:
                        responses[status] = _error(description)
                if rule.arguments:
                    responses.setdefault(404, _error("nothing has that id"))
                if isinstance(access, Role):
                    operation["security"] = [{"bearer": []}, {"password": []}]
                    operation["x-required-role"] = access.value
                    responses[401] = _error("no valid access token")
                    responses[403] = _error(f"the caller's role is below {access.value}")
                    responses[503] = _error("the module that answers is not running (see /api/system/status)")
                    if method != "get":
                        responses.setdefault(409, _error("conflicts with the current state of what it changes"))
                else:
                    operation["security"] = []
                    if method != "get":
                        responses.setdefault(429, _error("too many attempts; wait for Retry-After"))
                if is_upload_route(view) and "requestBody" not in operation:
                    operation["requestBody"] = _UPLOAD_BODY
                if "requestBody" in operation or operation["parameters"]:
                    responses[422] = _error("a field breaks the schema (see details)")
                if "requestBody" in operation:
                    responses[400] = _error("the body does not parse (malformed JSON or form)")
                    responses[413] = _error("the body is over the size limit")
                    responses[415] = _error("the body's Content-Type is not one listed here")
                if getattr(view, FORM_OR_JSON_ATTRIBUTE, False) and "requestBody" in operation:
                    content = dict(operation["requestBody"]["content"])
                    (form,) = content.values()
                    content["application/json"] = form
                    operation["requestBody"] = {**operation["requestBody"], "content": content}
        return paths, components


_UPLOAD_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary", "description": "The file."}},
                "required": ["file"],
            },
            "encoding": {"file": {"contentType": "application/octet-stream"}},
        }
    },
}
"""An upload route's body: a multipart form whose ``file`` part is the file (web/uploads.py)."""


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


class _JSONProvider(DefaultJSONProvider):
    """JSON without options (``quart.json.dumps``, ``send_json``) through pydantic-core.

    Calls with options keep the standard library path: the pretty-printed OpenAPI document, and
    Flask's ``response()``, which always passes some; a view's model does not come here, it is
    serialized by :func:`_answer_models`.
    """

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs:
            return super().dumps(obj, **kwargs)
        return to_json(obj).decode()


_MakeResponse = Callable[[Any], Awaitable[Any]]


def _answer_models(app: VareonApp, make_response: _MakeResponse) -> _MakeResponse:
    """Wrap quart-schema's ``make_response`` so that a model is serialized once.

    quart-schema turns a view's model into a dict (``model_dump``) that Quart then encodes as
    JSON: two passes over the data. A model, alone or with a status (the shapes
    ``@validate_response`` hands over), is serialized by pydantic-core straight to JSON with
    the same options; any other result goes the usual way.
    """
    options = app.dump_options = {
        key: value
        for key, value in app.config["QUART_SCHEMA_PYDANTIC_DUMP_OPTIONS"].items()
        if key != "mode"  # JSON, by construction
    }
    mimetype = app.json.mimetype

    @wraps(make_response)
    async def answer(result: Any) -> Any:
        value, status = result, None
        if (
            type(result) is tuple
            and len(result) in (2, 3)
            and type(result[1]) is int
            and (len(result) == 2 or result[2] is None)
        ):
            value, status = result[0], result[1]
        if isinstance(value, BaseModel) and not app.config["QUART_SCHEMA_CONVERT_CASING"]:
            body = value.__pydantic_serializer__.to_json(value, **options)
            return app.response_class(body, status=status, mimetype=mimetype)
        return await make_response(result)

    return answer


def create_app(ctx: RuntimeContext) -> QuartTrio:
    """Build the HTTP and WebSocket app of the runtime ``ctx``.

    Returns:
        The app, ready for Hypercorn or ``app.test_client()``.
    """
    app = VareonApp(__name__, static_folder=None)
    app.request_class = VareonRequest
    # An upload route's body gets upload_max_size; a request without a body takes a short path.
    app.asgi_http_class = VareonConnection
    app.config.update(
        MAX_CONTENT_LENGTH=ctx.config.server.max_body_size,
        # A form field may be as large as the body limit allows (Quart's own default of 500 kB
        # would be a second, undocumented limit); a route that raises its body limit for
        # uploads still keeps fields below max_body_size. Parts stay capped at Quart's 1000.
        MAX_FORM_MEMORY_SIZE=ctx.config.server.max_body_size,
        # No automatic OPTIONS: every route serves exactly the methods it declares.
        PROVIDE_AUTOMATIC_OPTIONS=False,
        QUART_SCHEMA_SWAGGER_JS_URL=f"{DOCS_STATIC}/swagger-ui-bundle.js",
        QUART_SCHEMA_SWAGGER_CSS_URL=f"{DOCS_STATIC}/swagger-ui.css",
    )
    install_context(app, ctx)
    install_error_handlers(app)  # first: the request id exists before any other check
    app.after_request(add_security_headers)
    app.before_request(_refuse_large_body)
    install_permissions(app)

    QuartSchema(
        app,
        openapi_path="/openapi.json",
        swagger_ui_path="/docs",
        redoc_ui_path=None,
        scalar_ui_path=None,
        info=Info(
            title="Vareon Runtime",
            version=ctx.version,
            description=(
                "The HTTP API of one Vareon runtime. Get a token from `POST /api/token` and"
                " send it as `Authorization: Bearer <token>` (or use Authorize). Errors are"
                ' `{"error": {"code", "message", "details"}}`.\n\n'
                "The WebSocket endpoints, `/api/websocket` (live events by topic) and"
                " `/ws/myntrix/telemetry/{deviceId}` (one device's telemetry), are described in"
                " AsyncAPI 3.0 at [/asyncapi.json](/asyncapi.json)."
            ),
        ),
        security_schemes={
            "bearer": HttpSecurityScheme(scheme="bearer", bearer_format="JWT"),
            # Lets Swagger UI's "Authorize" log in with a username and password.
            "password": OAuth2SecurityScheme(
                flows={"password": {"tokenUrl": "/api/token", "scopes": {}}}
            ),
        },
        pydantic_dump_options={"mode": "json", "by_alias": True},
        openapi_provider_class=VareonOpenAPIProvider,
    )
    app.json = _JSONProvider(app)
    app.make_response = _answer_models(app, app.make_response)  # type: ignore[method-assign]
    # quart-schema's own views are bound methods, which take no marker: mark wrappers instead.
    for endpoint in ("openapi", "swagger_ui"):
        app.view_functions[endpoint] = public(_wrap(app.view_functions[endpoint]))
    app.add_url_rule(f"{DOCS_STATIC}/<path:filename>", "docs_static", _docs_static)
    # /docs/ is how the page is often typed or linked; it is /docs.
    app.add_url_rule("/docs/", "docs_slash", _docs_slash)
    # Direct answers stand for the hooks installed so far; the routes are final at startup.
    app.know_hooks()

    @app.before_serving
    async def find_direct_routes() -> None:
        app.find_direct_routes()


    for tag, blueprint in discover_routes():
        tag_blueprint(blueprint, [tag])
        app.register_blueprint(blueprint)
    return app


def discover_routes() -> list[tuple[str, Blueprint]]:
    """Every blueprint published under ``vareon.routes``, by entry point name.

    Raises:
        ConfigError: an entry point cannot be loaded or does not name a blueprint.
    """
    found: list[tuple[str, Blueprint]] = []
    for point in sorted(entry_points(group=ROUTES_GROUP), key=lambda p: p.name):
        try:
            blueprint = point.load()
        except Exception as exc:
            raise ConfigError(f"routes {point.name!r} ({point.value}) failed to load: {exc}; reinstall the package") from exc
        if not isinstance(blueprint, Blueprint):
            raise ConfigError(f"routes {point.name!r} ({point.value}) name a {type(blueprint).__name__}, not a Blueprint")
        found.append((point.name, blueprint))
    return found


def _wrap(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    async def wrapper(**kwargs: Any) -> Any:
        return await view(**kwargs)

    return wrapper


@public
@hide
async def _docs_static(filename: str) -> Response:
    """The Swagger UI assets, from the installed package (no CDN)."""
    response: Response = await send_from_directory(_SWAGGER_DIR, filename)
    response.cache_control.max_age = 86400
    response.cache_control.public = True
    return response


@public
@hide
async def _docs_slash() -> Response:
    """``/docs/`` -> ``/docs``, the query kept (308: the method too)."""
    query = request.query_string.decode("latin-1")
    return redirect(f"/docs?{query}" if query else "/docs", 308)


async def _refuse_large_body() -> None:
    # Quart would refuse the same body only when a view reads it; refuse it before any work.
    # An upload route's request carries its own limit, upload_max_size (web.uploads).
    req = request._get_current_object()  # one context lookup, not one per attribute
    length = req.content_length
    limit = req.max_content_length
    if length is not None and limit is not None and length > limit:
        if is_upload_route(current_app.view_functions.get(req.endpoint or "")):
            raise UploadTooLargeError.over(limit)
        raise RequestEntityTooLarge()
