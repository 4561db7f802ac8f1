"""``GET /asyncapi.json``: the runtime's WebSocket API as an AsyncAPI 3.0 document.

OpenAPI has no words for a WebSocket, so ``/openapi.json`` and ``/docs`` leave out
``/api/websocket`` and ``/ws/myntrix/telemetry/{deviceId}``; this document describes them, and
the OpenAPI description links to it. It is made from the models the endpoints' frames follow
(``CLIENT_MESSAGES`` and ``SERVER_MESSAGES`` of :mod:`web.websocket` and :mod:`web.telemetry`,
which tests/web/test_asyncapi.py holds the real frames to), once per process; only the server's
address is the request's. The bus topics a client may subscribe to are listed under the events
channel's ``x-topics`` (:data:`TOPICS`); docs/websocket.md shows an event of each.

Public, as ``/openapi.json`` is: it says what the API is, not what is in it.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from quart import Blueprint, Response, current_app, request
from quart_schema import hide

from . import telemetry, websocket
from .context import current_context
from .permissions import public

__all__ = ["ASYNCAPI_PATH", "TOPICS", "blueprint", "document"]

ASYNCAPI_PATH = "/asyncapi.json"

TOPICS: tuple[tuple[str, str], ...] = (
    ("agent.<id>.created", "An agent was defined: the agent as `GET /api/myntrix/agents/{id}` shows it."),
    ("agent.<id>.updated", "An agent's name, type or configuration changed: the agent as it is now."),
    ("agent.<id>.deleted", "An agent was removed: `{\"id\"}`."),
    ("agent.<id>.status", "Its process changed status (starting, running, backoff, stopped, error), with pid, exit code, restarts and last error."),
    ("agent.<id>.log", "A line of its output: `{\"id\", \"time\", \"stream\", \"line\"}`, stream `stdout`, `stderr` or `system`."),
    ("agent.<id>.health", "A health sample of a running agent: score, CPU and memory percent."),
    ("device.<id>.created", "A device was defined: the device as `GET /api/myntrix/devices/{id}` shows it."),
    ("device.<id>.updated", "A device's name, connection string or configuration changed."),
    ("device.<id>.deleted", "A device was removed: `{\"id\"}`."),
    ("device.<id>.status", "Its link changed status (connecting, connected, disconnected, error), with lastSeen, lastError and firmwareVersion."),
    ("telemetry.device.<id>", "Lines read from a device with their samples, or a command sent to it (the telemetry stream's events)."),
    ("task.<id>.created", "A scheduled task was defined: the task, with its next fire times."),
    ("task.<id>.updated", "A task changed (schedule, enabled, parameters...)."),
    ("task.<id>.deleted", "A task was removed: `{\"id\"}`."),
    ("task.<id>.run", "A run of the task `started`, `finished` (with its status) or was `skipped`."),
    ("task.<id>.log", "A line of a running task's output: `{\"runId\", \"line\"}`."),
    ("job.<id>", "A job (an agent's start, stop or restart, a device upload, a task run) as `GET /api/myntrix/jobs` lists it, at each change."),
    ("visualization", "The 3D scene of agents and devices, again after they change (as `GET /api/myntrix/visualization-data`)."),
    ("status.actor", "A supervised actor changed status (starting, running, restarting, failed, stopped), with its supervisor and reason."),
)
"""Every topic the runtime publishes on (``<id>`` is an entity's UUID), and what it carries."""

_DESCRIPTION = """The live side of one Vareon runtime: two WebSocket endpoints, JSON text frames.

Both begin with the same handshake: the server sends `auth_required`; the client answers
`{"type": "auth", "access_token": "<token>"}` (a token from `POST /api/token`), or gives the
token as `?token=` in the URL and sends nothing; the server says `auth_ok`, or `auth_invalid`
and closes with 4001 (also later, when the account's sign-in ends).

`/api/websocket` multiplexes the event bus, as Home Assistant's API does: commands carry an
increasing integer `id` (`ping`, `subscribe` to a topic or pattern such as `agent.*` or `*`,
`unsubscribe`), each answered with a `result` (or `pong`) of the same id; then every `event` of a
subscription carries the subscribe command's id, and `dropped` says how many a slow client
lost. The topics are listed under the channel's `x-topics`.

`/ws/myntrix/telemetry/{deviceId}` streams one device: `ready`, then `telemetry` frames (lines
read, samples parsed, commands sent), `status` frames, `dropped`; it answers `ping` with `pong`."""


blueprint = Blueprint("asyncapi", __name__)


@functools.cache
def _components() -> dict[str, Any]:
    """The schemas and messages of both channels, made once from the frame models."""
    models = {
        model
        for group in (
            websocket.CLIENT_MESSAGES,
            websocket.SERVER_MESSAGES,
            telemetry.CLIENT_MESSAGES,
            telemetry.SERVER_MESSAGES,
        )
        for model in group
    }
    ordered = sorted(models, key=lambda model: model.__name__)
    _, definitions = models_json_schema(
        [(model, "validation") for model in ordered], ref_template="#/components/schemas/{model}"
    )
    schemas = {name: _tidy(schema) for name, schema in definitions.get("$defs", {}).items()}
    messages = {
        model.__name__: {
            "name": _frame_type(model),
            "title": model.__name__,
            "summary": _summary(model),
            "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
        }
        for model in ordered
    }
    return {"schemas": schemas, "messages": messages}


def _frame_type(model: type[BaseModel]) -> str:
    field = model.model_fields["type"]
    (value,) = getattr(field.annotation, "__args__", ("?",))
    return str(value)


def _summary(model: type[BaseModel]) -> str:
    doc = (model.__doc__ or "").strip()
    if not doc or doc.startswith(f"{model.__name__}("):  # pydantic's default repr-like docstring
        return f"`{_frame_type(model)}`"
    return " ".join(doc.replace("``", "`").split())


def _tidy(schema: Any) -> Any:
    """Markdown single backticks (Swagger-like viewers show reST's doubled ones literally); no
    property titles pydantic made from the field names."""
    if isinstance(schema, dict):
        tidy = {key: _tidy(value) for key, value in schema.items()}
        if isinstance(tidy.get("description"), str):
            tidy["description"] = tidy["description"].replace("``", "`")
        if isinstance(tidy.get("properties"), dict):
            tidy["properties"] = {
                name: {key: value for key, value in prop.items() if key != "title"}
                for name, prop in tidy["properties"].items()
            }
        return tidy
    if isinstance(schema, list):
        return [_tidy(item) for item in schema]
    return schema


def _channel_messages(models: tuple[type[BaseModel], ...]) -> dict[str, Any]:
    return {model.__name__: {"$ref": f"#/components/messages/{model.__name__}"} for model in models}


def _operation(action: str, channel: str, models: tuple[type[BaseModel], ...], summary: str) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": summary,
        "messages": [{"$ref": f"#/channels/{channel}/messages/{model.__name__}"} for model in models],
    }


def document(version: str, host: str, secure: bool) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of a runtime of ``version`` reached at ``host``.

    Args:
        host: ``host:port`` as the client reached the runtime.
        secure: whether it was over TLS (then the server's protocol is ``wss``).
    """
    components = _components()
    token_binding = {
        "ws": {
            "query": {
                "type": "object",
                "properties": {
                    "token": {"type": "string", "description": "An access token, instead of the auth message."}
                },
            },
            "bindingVersion": "0.1.0",
        }
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Vareon Runtime WebSocket API",
            "version": version,
            "description": _DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "servers": {
            "runtime": {
                "host": host,
                "protocol": "wss" if secure else "ws",
                "description": "This runtime, as this document was asked for.",
                "security": [{"$ref": "#/components/securitySchemes/accessToken"}],
            }
        },
        "channels": {
            "events": {
                "address": "/api/websocket",
                "title": "Events",
                "description": "The event bus: subscribe to topics, receive their events.",
                "messages": _channel_messages(websocket.CLIENT_MESSAGES + websocket.SERVER_MESSAGES),
                "bindings": token_binding,
                "x-topics": [{"topic": topic, "description": what} for topic, what in TOPICS],
            },
            "telemetry": {
                "address": "/ws/myntrix/telemetry/{deviceId}",
                "title": "A device's telemetry",
                "description": "Lines, samples, sent commands and status changes of one device.",
                "parameters": {"deviceId": {"description": "The device's id, from `GET /api/myntrix/devices`."}},
                "messages": _channel_messages(telemetry.CLIENT_MESSAGES + telemetry.SERVER_MESSAGES),
                "bindings": token_binding,
            },
        },
        "operations": {
            "receiveCommands": _operation("receive", "events", websocket.CLIENT_MESSAGES, "What a client sends."),
            "sendEvents": _operation("send", "events", websocket.SERVER_MESSAGES, "What the runtime sends."),
            "receivePings": _operation("receive", "telemetry", telemetry.CLIENT_MESSAGES, "What a client sends."),
            "sendTelemetry": _operation("send", "telemetry", telemetry.SERVER_MESSAGES, "What the runtime sends."),
        },
        "components": {
            **components,
            "securitySchemes": {
                "accessToken": {
                    "type": "httpApiKey",
                    "name": "token",
                    "in": "query",
                    "description": (
                        "An access token (`POST /api/token`, or `vareon token USER`): as `?token=` in"
                        " the URL, or in the first message, `auth`."
                    ),
                }
            },
        },
    }


@blueprint.get(ASYNCAPI_PATH)
@public
@hide
async def asyncapi() -> Response:
    """The AsyncAPI 3.0 document of the WebSocket endpoints."""
    body = document(current_context().version, request.host, request.scheme in ("https", "wss"))
    return current_app.response_class(
        current_app.json.dumps(body, indent=2), mimetype="application/json"
    )
