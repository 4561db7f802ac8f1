"""File uploads: a multipart body streamed to a file on disk, under its own size limit.

A route that takes an upload is marked :func:`upload_route`; its requests get ``[server]
upload_max_size`` as their body limit instead of ``max_body_size`` (the body object is created
with that limit by :class:`UploadConnection`, before a byte arrives, and the app's size check
refuses a larger ``Content-Length`` with 413 before reading). The view then calls
:func:`save_upload`, which parses the body as it arrives (werkzeug's sans-I/O multipart decoder)
and writes the file part to ``<name>.part`` in the uploads directory, a chunk at a time: the file
is never held in memory. When the body is complete the part file is renamed; on any failure, a
cancellation or the client going away, it is deleted.

The client's file name is reduced to a safe basename (:func:`safe_filename`) and kept as
metadata; the file on disk gets a fresh random name, so two uploads of ``part.gcode`` never
collide and no name can point outside the directory.

Errors, all in the uniform shape: 415 not multipart, 400 malformed body or no file part, 413
over the limit (or too many parts).
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import Any, TypeVar

import trio
from quart import Quart, Request
from quart_trio.asgi import TrioASGIHTTPConnection
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from vareon_runtime.errors import ServiceError

__all__ = [
    "MAX_FIELD_SIZE",
    "MAX_NAME",
    "MAX_PARTS",
    "MAX_PENDING",
    "UPLOAD_ATTRIBUTE",
    "WRITE_SIZE",
    "MalformedUploadError",
    "NotMultipartError",
    "SavedUpload",
    "UploadConnection",
    "UploadTooLargeError",
    "is_upload_route",
    "safe_filename",
    "save_upload",
    "upload_limit",
    "upload_route",
]

F = TypeVar("F", bound=Callable[..., Any])

UPLOAD_ATTRIBUTE = "_vareon_upload_route"
MULTIPART = "multipart/form-data"
MAX_PARTS = 32
"""Most parts an upload body may have (the file and a few fields)."""
MAX_FIELD_SIZE = 64 * 1024
"""Largest text field beside the file, in bytes: fields are kept in memory."""
MAX_PENDING = 1024 * 1024
"""Most bytes the parser may hold without finding a part's end of headers (a body of garbage)."""
WRITE_SIZE = 256 * 1024
"""Bytes gathered before each write to disk (each write is a hop to a worker thread)."""
MAX_NAME = 120
"""Longest kept file name, in characters."""


class UploadTooLargeError(ServiceError):
    """The upload is over the size limit (413)."""

    status = 413
    code = "too_large"

    @classmethod
    def over(cls, limit: int) -> UploadTooLargeError:
        """The error for a body over ``limit`` bytes."""
        return cls(
            f"the upload is larger than the limit of {limit} bytes ([server] upload_max_size in"
            " config.toml); send a smaller file or raise the limit",
            details={"limit": limit},
        )


class MalformedUploadError(ServiceError):
    """The body is not a readable multipart form, or has no file part (400)."""

    status = 400
    code = "malformed_upload"


class NotMultipartError(ServiceError):
    """The body is not ``multipart/form-data`` (415)."""

    status = 415
    code = "unsupported_media_type"


@dataclass(frozen=True)
class SavedUpload:
    """A file received and saved.

    Attributes:
        path: where it is on disk (a fresh name in the uploads directory).
        filename: the client's file name, reduced to a safe basename (metadata only).
        size: its size in bytes.
        fields: the text fields sent beside it.
    """

    path: Path
    filename: str
    size: int
    fields: dict[str, str] = dataclass_field(default_factory=dict)


def upload_route(view: F) -> F:
    """Mark a view as taking an upload: its body may be as large as ``[server] upload_max_size``.

    Put it under the route decorator, beside ``@requires``; the view reads the body with
    :func:`save_upload`.
    """
    setattr(view, UPLOAD_ATTRIBUTE, True)
    return view


def is_upload_route(view: Callable[..., Any] | None) -> bool:
    """Whether ``view`` is marked :func:`upload_route`."""
    return bool(getattr(view, UPLOAD_ATTRIBUTE, False))


def upload_limit(app: Quart, request: Request) -> int | None:
    """The body limit of ``request`` if it goes to an upload route, else None.

    Matched from the URL map, so it works before the request context exists.
    """
    try:
        rule, _ = app.create_url_adapter(request).match(return_rule=True)  # type: ignore[union-attr]
    except HTTPException:
        return None  # no such route (or a redirect): the normal limit and the normal 404
    if not is_upload_route(app.view_functions.get(rule.endpoint)):
        return None
    limit: int = app.extensions["vareon"].config.server.upload_max_size
    return limit


class UploadConnection(TrioASGIHTTPConnection):
    """Quart-Trio's HTTP connection, creating the request of an upload route with the upload
    body limit. The body object enforces its limit from the first byte (it drops what passes
    it), so the limit must be right when it is created, not raised later in a hook."""

    def _create_request_from_scope(self, send: Any) -> Request:
        request = super()._create_request_from_scope(send)
        limit = upload_limit(self.app, request)
        if limit is not None:
            request.max_content_length = limit
            request.body = request.body_class(request.content_length, limit)
        return request


_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")


def safe_filename(raw: str | None) -> str:
    """A file name safe to show and store: the last path component of ``raw`` (``/`` or ``\\``),
    without control characters, NUL or characters Windows refuses, no leading dots, at most
    MAX_NAME characters (the extension kept). ``"upload"`` when nothing is left.
    """
    name = unicodedata.normalize("NFC", raw or "")
    name = re.split(r"[/\\]", name)[-1]
    name = _UNSAFE.sub("_", name).strip().lstrip(".").strip()
    if len(name) > MAX_NAME:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 16:
            name = stem[: MAX_NAME - len(extension) - 1] + "." + extension
        else:
            name = name[:MAX_NAME]
    return name or "upload"


def _disk_name(filename: str) -> str:
    extension = filename.rpartition(".")[2] if "." in filename else ""
    suffix = f".{extension}" if re.fullmatch(r"[A-Za-z0-9]{1,16}", extension) else ""
    return f"{secrets.token_hex(16)}{suffix}"


class _Receiver:
    """Turns the decoder's events into a file on disk and a dict of fields."""

    def __init__(self, directory: Path, field: str, where: str) -> None:
        self.directory = directory
        self.field = field
        self.where = where
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.partial: Path | None = None
        self.size = 0
        self.parts = 0
        self.complete = False
        self._file: Any = None
        self._pending = bytearray()
        self._current: str | None = None  # the field being read; None while in the file part
        self._value = bytearray()

    async def handle(self, decoder: MultipartDecoder) -> None:
        if self.complete:
            return  # the decoder has nothing after its epilogue (and raises if asked)
        while not isinstance(event := decoder.next_event(), NeedData):
            if isinstance(event, Epilogue):
                self.complete = True
                return
            if isinstance(event, (File, Field)):
                self.parts += 1
                if self.parts > MAX_PARTS:
                    raise UploadTooLargeError(
                        f"{self.where}: the form has more than {MAX_PARTS} parts; send the file and a few fields",
                        details={"max_parts": MAX_PARTS},
                    )
            if isinstance(event, File):
                await self._open(event)
            elif isinstance(event, Field):
                if event.name is None:
                    raise MalformedUploadError(f"{self.where}: a form part has no name")
                self._current, self._value = event.name, bytearray()
            elif isinstance(event, Data):
                await self._data(event.data, event.more_data)
            # A preamble carries nothing of ours; a body cut short makes the decoder raise.
        if len(decoder.buffer) > MAX_PENDING:
            raise MalformedUploadError(
                f"{self.where}: {len(decoder.buffer)} bytes without the end of a part's headers;"
                " expected a multipart/form-data body"
            )

    async def _open(self, event: File) -> None:
        if event.name != self.field or not event.filename:
            raise MalformedUploadError(
                f"{self.where}: unexpected file part {event.name!r}; send one file in the part"
                f" named {self.field!r}",
                details={"field": self.field, "received": event.name},
            )
        if self.partial is not None:
            raise MalformedUploadError(
                f"{self.where}: more than one file in {self.field!r}; send one file per upload",
                details={"field": self.field},
            )
        self.filename = safe_filename(event.filename)
        self.partial = self.directory / f".{secrets.token_hex(16)}.part"
        self._file = await trio.open_file(self.partial, "xb")
        self._current = None

    async def _data(self, data: bytes, more: bool) -> None:
        if self._current is None:
            self._pending += data
            self.size += len(data)
            if len(self._pending) >= WRITE_SIZE or not more:
                await self._flush()
            return
        self._value += data
        if len(self._value) > MAX_FIELD_SIZE:
            raise UploadTooLargeError(
                f"{self.where}: the field {self._current!r} is over {MAX_FIELD_SIZE} bytes;"
                " only the file part may be large",
                details={"field": self._current, "limit": MAX_FIELD_SIZE},
            )
        if not more:
            try:
                self.fields[self._current] = self._value.decode()
            except UnicodeDecodeError as error:
                raise MalformedUploadError(
                    f"{self.where}: the field {self._current!r} is not UTF-8 text ({error.reason})"
                ) from None

    async def _flush(self) -> None:
        if self._pending:
            await self._file.write(bytes(self._pending))
            self._pending.clear()

    async def finish(self) -> Path:
        """Close the file and give it its final name."""
        await self._flush()
        await self._file.aclose()
        self._file = None
        assert self.partial is not None and self.filename is not None
        final = self.directory / _disk_name(self.filename)
        await trio.Path(self.partial).rename(final)
        self.partial = None
        return final

    def discard(self) -> None:
        """Delete the partial file (synchronous: it runs while the request is being cancelled)."""
        if self._file is not None:
            self._file.wrapped.close()
            self._file = None
        if self.partial is not None:
            self.partial.unlink(missing_ok=True)
            self.partial = None


async def save_upload(request: Request, directory: Path, *, field: str = "file", max_size: int) -> SavedUpload:
    """Stream the multipart body of ``request`` to a new file in ``directory``.

    Args:
        request: the current request (its body not read yet).
        directory: where the file goes (the data directory's ``uploads/``); created if missing.
        field: the name of the form part that carries the file.
        max_size: the largest body accepted, in bytes.

    Returns:
        The saved file, its safe client name, size and the other (text) fields.

    Raises:
        NotMultipartError: the body is not ``multipart/form-data`` (415).
        MalformedUploadError: the body does not parse, or has no (or more than one) file part (400).
        UploadTooLargeError: the body is over ``max_size``, a field over MAX_FIELD_SIZE, or more
            than MAX_PARTS parts (413).
    """
    where = f"{request.method} {request.path}"
    if request.mimetype != MULTIPART:
        raise NotMultipartError(
            f"{where} takes a file upload: send it with Content-Type: {MULTIPART},"
            f" not {request.mimetype or 'no Content-Type'}",
            details={"expected": [MULTIPART], "received": request.mimetype or None},
        )
    boundary = request.mimetype_params.get("boundary")
    if not boundary:
        raise MalformedUploadError(f"{where}: the {MULTIPART} Content-Type has no boundary parameter")
    if request.content_length is not None and request.content_length > max_size:
        raise UploadTooLargeError.over(max_size)
    await trio.Path(directory).mkdir(parents=True, exist_ok=True)
    decoder = MultipartDecoder(boundary.encode())
    receiver = _Receiver(directory, field, where)
    received = 0
    try:
        try:
            async for chunk in request.body:
                received += len(chunk)
                if received > max_size:
                    raise UploadTooLargeError.over(max_size)
                decoder.receive_data(chunk)
                await receiver.handle(decoder)
            decoder.receive_data(None)
            await receiver.handle(decoder)
        except RequestEntityTooLarge:
            raise UploadTooLargeError.over(max_size) from None  # the body passed Quart's limit
        except ValueError as error:  # the decoder's word for a body it cannot parse
            raise MalformedUploadError(f"{where}: the body is not a valid {MULTIPART} form: {error}") from None
        if receiver.partial is None:
            raise MalformedUploadError(
                f"{where}: no file in the form; send the file in a part named {field!r}"
                ' (Content-Disposition: form-data; name="file"; filename="...")',
                details={"field": field},
            )
        path = await receiver.finish()
    except BaseException:
        receiver.discard()
        raise
    assert receiver.filename is not None
    return SavedUpload(path, receiver.filename, receiver.size, receiver.fields)
