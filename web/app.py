"""``create_app``: the Quart-Trio app of one runtime, with its blueprints, checks and docs.

One blueprint per domain (``auth``, ``system``, ...). Before any view: a request id, the body
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
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from quart import Blueprint, Response, current_app, request, send_from_directory
from quart_schema import (
    HttpSecurityScheme,
    Info,
    OAuth2SecurityScheme,
    OpenAPIProvider,
    QuartSchema,
    hide,
    tag_blueprint,
)
from pydantic_core import to_json
from quart.json.provider import DefaultJSONProvider
from quart_trio import QuartTrio
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing.rules import Rule

from vareon_runtime.auth import Role
from vareon_runtime.component import RuntimeContext

from . import auth, devices, myntrix, system, tasks, telemetry, visualization, websocket
from .context import install_context
from .errors import install_error_handlers
from .permissions import access_of, install_permissions, public
from .schemas import ErrorResponse
from .uploads import UploadConnection, UploadTooLargeError, is_upload_route
from .validation import FORM_OR_JSON_ATTRIBUTE, VareonRequest

__all__ = ["BLUEPRINTS", "DOCS_STATIC", "VareonRequest", "create_app"]

# Each domain's blueprint and its tag in the API docs; a new domain adds one line here.
BLUEPRINTS: tuple[tuple[Blueprint, str], ...] = (
    (system.blueprint, "system"),
    (auth.blueprint, "auth"),
    (websocket.blueprint, "websocket"),
    (myntrix.blueprint, "myntrix"),
    (devices.blueprint, "devices"),
    (telemetry.blueprint, "telemetry"),
    (visualization.blueprint, "visualization"),
    (tasks.blueprint, "tasks"),
)

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
        for path_item in paths.values():
            for operation in path_item.values():
                responses = operation["responses"] = dict(operation["responses"])
                if isinstance(access, Role):
                    operation["security"] = [{"bearer": []}, {"password": []}]
                    operation["x-required-role"] = access.value
                    responses[401] = _error("no valid access token")
                    responses[403] = _error(f"the caller's role is below {access.value}")
                else:
                    operation["security"] = []
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


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


class _JSONProvider(DefaultJSONProvider):
    """Response JSON through pydantic-core's serializer: the same JSON for our types, faster.

    Calls with options (the pretty-printed OpenAPI document) keep the standard library path.
    """

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs:
            return super().dumps(obj, **kwargs)
        return to_json(obj).decode()


def create_app(ctx: RuntimeContext) -> QuartTrio:
    """Build the HTTP and WebSocket app of the runtime ``ctx``.

    Returns:
        The app, ready for Hypercorn or ``app.test_client()``.
    """
    app = QuartTrio(__name__, static_folder=None)
    app.request_class = VareonRequest
    app.asgi_http_class = UploadConnection  # an upload route's body gets upload_max_size
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
                ' `{"error": {"code", "message", "details"}}`.'
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
    # quart-schema's own views are bound methods, which take no marker: mark wrappers instead.
    for endpoint in ("openapi", "swagger_ui"):
        app.view_functions[endpoint] = public(_wrap(app.view_functions[endpoint]))
    app.add_url_rule(f"{DOCS_STATIC}/<path:filename>", "docs_static", _docs_static)

    for blueprint, tag in BLUEPRINTS:
        tag_blueprint(blueprint, [tag])
        app.register_blueprint(blueprint)
    return app


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


async def _refuse_large_body() -> None:
    # Quart would refuse the same body only when a view reads it; refuse it before any work.
    # An upload route's request carries its own limit, upload_max_size (web.uploads).
    length = request.content_length
    limit = request.max_content_length
    if length is not None and limit is not None and length > limit:
        if is_upload_route(current_app.view_functions.get(request.endpoint or "")):
            raise UploadTooLargeError.over(limit)
        raise RequestEntityTooLarge()
