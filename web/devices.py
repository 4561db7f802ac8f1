"""Myntrix devices over HTTP (seeds 001, 002, 003): CRUD, connection, commands, uploads.

Every handler reaches the domain through its face (:class:`~actors.myntrix.devices.Devices`)
and lets it refuse: 404 for an unknown id, 409
for a command to a device that is not connected (or is uploading), 422 for invalid fields or a
connection string no driver takes (naming the known schemes), 504 when the device's reply did
not complete in time (``details.received`` holds what came). Bodies go out with the seeds'
camelCase names and every connection string with its password masked. Lists take ``?limit=``
and ``?offset=``, answer a JSON array and put the total in ``X-Total-Count``.

Admins create, change and delete devices (a connection string makes the host open a port or a
connection); operators connect, disconnect, send commands and upload; viewers read.

``POST .../connect`` waits until the link is open (and the device identified), fails for good
(``error``), or an attempt fails (``disconnected`` with ``lastError``; retries go on), at most
``?wait=`` seconds (default 10), then answers the device as it is, 200 in every case: the
connection is the device's business from then on, and ``status`` says where it stands.

``POST .../upload`` streams the multipart body's ``file`` part to ``<data_dir>/uploads`` (limit
``[server] upload_max_size``), then answers 202 with the ``device.upload`` job; its progress is
in ``GET /api/myntrix/jobs``. ``DELETE .../upload`` cancels it.

``/api/myntrix/hardware`` and ``/api/myntrix/hardware/{id}/status`` are seed 002's legacy names:
the device list, and the live part of one device.
"""

from __future__ import annotations

import trio
from pydantic import BaseModel, Field
from quart import Blueprint, request
from quart_schema import validate_querystring, validate_request, validate_response

from actors.kit.schemas import Job
from actors.myntrix.devices import (
    CommandReply,
    CommandRequest,
    Device,
    DeviceCreate,
    Devices,
    DeviceStatus,
    DeviceStatusReport,
    DeviceUpdate,
)
from vareon_runtime.auth import Role
from vareon_runtime.errors import ServiceError, UnavailableError

from .context import current_context
from .kit import PageQuery, ResourceDocs, face, page_reply, resource_routes
from .permissions import current_principal, requires
from .uploads import save_upload, upload_route

__all__ = ["CONNECT_WAIT_MAX", "ConnectQuery", "DeviceListQuery", "blueprint"]

CONNECT_WAIT_MAX = 60.0

blueprint = Blueprint("devices", __name__)


class DeviceListQuery(PageQuery):
    """`GET /api/myntrix/devices` query."""

    status: DeviceStatus | None = Field(None, description="Only devices in this status.")


class ConnectQuery(BaseModel):
    """``POST /api/myntrix/devices/{id}/connect`` query."""

    wait: float = Field(
        10.0, ge=0, le=CONNECT_WAIT_MAX, description="Seconds to wait for the link before answering the state as it is."
    )


resource_routes(
    blueprint,
    "/api/myntrix/devices",
    Devices,
    item=Device,
    query=DeviceListQuery,
    create=DeviceCreate,
    update=DeviceUpdate,
    read=Role.VIEWER,
    write=Role.ADMIN,
    docs=ResourceDocs(
        list="A page of devices with their connection status, oldest first; the total in `X-Total-Count`.",
        create="Add a device, disconnected. 422 when no driver takes its connection string.",
        get="One device.",
        update="Change the fields given; a new connection string or configuration reopens the link.",
        delete="Close the device's link (cancelling an upload) and remove it.",
    ),
)


@blueprint.post("/api/myntrix/devices/<device_id>/connect")
@requires(Role.OPERATOR)
@validate_querystring(ConnectQuery)
@validate_response(Device)
async def connect_device(device_id: str, query_args: ConnectQuery) -> Device:
    """Connect the device and keep it connected; answers once connected, failed, or after
    ``wait`` seconds, with the status as it is. 409 when it is already connected."""
    return await face(Devices).connect(device_id, wait=query_args.wait)


@blueprint.post("/api/myntrix/devices/<device_id>/disconnect")
@requires(Role.OPERATOR)
@validate_response(Device)
async def disconnect_device(device_id: str) -> Device:
    """Close the device's link and stop reconnecting. 409 when already disconnected or uploading."""
    return await face(Devices).disconnect(device_id)


@blueprint.post("/api/myntrix/devices/<device_id>/command")
@requires(Role.OPERATOR)
@validate_request(CommandRequest)
@validate_response(CommandReply)
async def send_command(device_id: str, data: CommandRequest) -> CommandReply:
    """Send one command and answer the device's reply (``ok`` false for an error reply).
    409 when not connected, 504 with ``details.received`` when the reply did not complete."""
    return await face(Devices).command(device_id, data.command, timeout=data.timeout)


@blueprint.post("/api/myntrix/devices/<device_id>/upload")
@requires(Role.OPERATOR)
@upload_route
@validate_response(Job, 202)
async def upload_to_device(device_id: str) -> tuple[Job, int]:
    """Upload a file (multipart, part ``file``) and send it to the device as a job: G-code line
    by line with flow control, other files in chunks. Answers 202 with the job."""
    devices = face(Devices)
    device = devices.check_uploadable(await devices.get(device_id))  # 404, 409 before reading the body
    config = current_context().config
    uploads = devices.settings.uploads
    if uploads is None:
        raise UnavailableError("this runtime's devices module takes no uploads (no uploads directory)")
    saved = await save_upload(request, uploads, max_size=config.server.upload_max_size)
    try:
        job = await devices.upload(device.id, saved.path, saved.filename, size=saved.size, by=current_principal().username)
    except ServiceError:
        await trio.Path(saved.path).unlink(missing_ok=True)  # refused: nothing will refer to it
        raise
    return job, 202


@blueprint.delete("/api/myntrix/devices/<device_id>/upload")
@requires(Role.OPERATOR)
@validate_response(Job)
async def cancel_upload(device_id: str) -> Job:
    """Cancel the device's running upload; answers its job, failed "cancelled by <user>".
    409 when no upload runs."""
    return await face(Devices).cancel_upload(device_id, by=current_principal().username)


@blueprint.get("/api/myntrix/hardware")
@requires(Role.VIEWER)
@validate_querystring(DeviceListQuery)
@validate_response(list[Device])
async def list_hardware(query_args: DeviceListQuery) -> tuple[list[Device], int, dict[str, str]]:
    """Seed 002's legacy name of `GET /api/myntrix/devices`: the same list."""
    return page_reply(await face(Devices).list(**query_args.model_dump()))


@blueprint.get("/api/myntrix/hardware/<device_id>/status")
@requires(Role.VIEWER)
@validate_response(DeviceStatusReport)
async def hardware_status(device_id: str) -> DeviceStatusReport:
    """Seed 002's legacy status of one device: its status, whether connected, lastSeen,
    firmwareVersion, desiredState and lastError."""
    return await face(Devices).status_report(device_id)
