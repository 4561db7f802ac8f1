"""Streamed multipart uploads through a live Hypercorn and the real app: the upload body limit,
safe names, malformed bodies, a client that goes away mid-upload.

The devices upload route is not the subject here: a test-only route marked ``@upload_route``
is added to a second server of the same runtime, so these tests hold for every upload route.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio
from quart import Blueprint, current_app, request
from web_support import Account, Front, error_of

from vareon_runtime.auth import Role
from web.permissions import requires
from web.server import WebServer
from web.uploads import (
    MAX_FIELD_SIZE,
    WRITE_SIZE,
    SavedUpload,
    safe_filename,
    save_upload,
    upload_route,
)

BODY_LIMIT = 4096
UPLOAD_LIMIT = 1_000_000
TIMEOUT = 20
ROUTE = "/test/upload"


@pytest.fixture
def front_environ() -> dict[str, str]:
    return {
        "VAREON_SERVER_MAX_BODY_SIZE": str(BODY_LIMIT),
        "VAREON_SERVER_UPLOAD_MAX_SIZE": str(UPLOAD_LIMIT),
    }


def uploads_of(front: Front) -> Path:
    return front.ctx.config.data_dir_path / "uploads"


def upload_blueprint(saved: list[SavedUpload]) -> Blueprint:
    blueprint = Blueprint("upload_test", __name__)

    @blueprint.post(ROUTE)
    @requires(Role.OPERATOR)
    @upload_route
    async def receive() -> dict[str, object]:
        config = current_app.extensions["vareon"].config
        upload = await save_upload(
            request, config.data_dir_path / "uploads", max_size=config.server.upload_max_size
        )
        saved.append(upload)
        return {"filename": upload.filename, "size": upload.size, "fields": upload.fields, "path": str(upload.path)}

    return blueprint


@pytest.fixture
def saved() -> list[SavedUpload]:
    return []


@pytest.fixture
async def server(nursery: trio.Nursery, front: Front, saved: list[SavedUpload]) -> WebServer:
    server = WebServer(front.ctx)
    server.app.register_blueprint(upload_blueprint(saved))
    with trio.fail_after(TIMEOUT):
        await nursery.start(server.run)
    return server


@pytest.fixture
async def http(server: WebServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=TIMEOUT) as client:
        yield client


@pytest.fixture
def operator(accounts: dict[Role, Account]) -> Account:
    return accounts[Role.OPERATOR]


def multipart(boundary: str, parts: list[tuple[str, str | None, bytes]]) -> bytes:
    """A multipart body: (name, filename or None for a field, content) per part."""
    body = b""
    for name, filename, content in parts:
        quoted = None if filename is None else filename.replace("\\", "\\\\").replace('"', '\\"')
        disposition = f'form-data; name="{name}"' + (f'; filename="{quoted}"' if quoted is not None else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            body += b"Content-Type: application/octet-stream\r\n"
        body += b"\r\n" + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def head(account: Account, extra: str) -> bytes:
    return (
        f"POST {ROUTE} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {account.token}\r\n"
        f"Content-Type: multipart/form-data; boundary=XyZ\r\n{extra}\r\n"
    ).encode()


async def read_reply(stream: trio.SocketStream) -> tuple[int, object]:
    reply = b""
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        reply += chunk
        header, _, body = reply.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: (\d+)", header)
        if length is not None and len(body) >= int(length.group(1)):
            break
    header, _, body = reply.partition(b"\r\n\r\n")
    return int(header.split()[1]), json.loads(body)


def leftovers(front: Front) -> list[str]:
    directory = uploads_of(front)
    return sorted(os.listdir(directory)) if directory.exists() else []


async def test_a_file_larger_than_the_body_limit_is_saved_whole(
    http: httpx.AsyncClient, operator: Account, front: Front, saved: list[SavedUpload]
) -> None:
    content = os.urandom(300_000)  # far over max_body_size, within upload_max_size
    response = await http.post(
        ROUTE,
        headers=operator.headers,
        files={"file": ("part.gcode", content, "text/x-gcode")},
        data={"note": "first layer 0.2 mm", "copies": "2"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["filename"] == "part.gcode" and body["size"] == len(content)
    assert body["fields"] == {"note": "first layer 0.2 mm", "copies": "2"}
    (upload,) = saved
    assert upload.path.parent == uploads_of(front)
    assert re.fullmatch(r"[0-9a-f]{32}\.gcode", upload.path.name)
    assert upload.path.read_bytes() == content
    assert leftovers(front) == [upload.path.name]  # no .part left behind


async def test_two_uploads_of_the_same_name_get_two_files(
    http: httpx.AsyncClient, operator: Account, saved: list[SavedUpload]
) -> None:
    for content in (b"G28\n", b"G1 X1\n"):
        response = await http.post(ROUTE, headers=operator.headers, files={"file": ("part.gcode", content)})
        assert response.status_code == 200, response.text
    first, second = saved
    assert first.filename == second.filename == "part.gcode"
    assert first.path != second.path
    assert (first.path.read_bytes(), second.path.read_bytes()) == (b"G28\n", b"G1 X1\n")


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("../../../etc/passwd", "passwd"),
        ("..\\..\\Windows\\evil.gcode", "evil.gcode"),
        ("..", "upload"),
        (".bashrc", "bashrc"),
        ("a\x00b\x1fc.gcode", "a_b_c.gcode"),
        ('say "hi".gcode', 'say _hi_.gcode'),
        ("pièce en résine.gcode", "pièce en résine.gcode"),
    ],
)
async def test_file_names_are_reduced_to_a_safe_basename(
    http: httpx.AsyncClient, operator: Account, front: Front, saved: list[SavedUpload], sent: str, kept: str
) -> None:
    body = multipart("XyZ", [("file", sent, b"G28\n")])
    response = await http.post(
        ROUTE,
        headers={**operator.headers, "Content-Type": "multipart/form-data; boundary=XyZ"},
        content=body,
    )
    assert response.status_code == 200, response.text
    assert response.json()["filename"] == kept
    (upload,) = saved
    assert upload.path.parent == uploads_of(front)
    assert upload.path.read_bytes() == b"G28\n"


def test_safe_filename_keeps_the_extension_of_a_long_name() -> None:
    name = safe_filename("x" * 500 + ".gcode")
    assert len(name) == 120 and name.endswith(".gcode")
    assert safe_filename(None) == safe_filename("") == safe_filename(" / ") == "upload"
    assert safe_filename('con:fig*?"<>|.txt') == "con_fig______.txt"


async def test_a_content_length_over_the_upload_limit_is_413_before_the_body(
    server: WebServer, operator: Account, front: Front
) -> None:
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port or 0)
        async with stream:
            await stream.send_all(head(operator, f"Content-Length: {UPLOAD_LIMIT + 1}\r\n") + b"--XyZ\r\n")
            status, body = await read_reply(stream)
    assert status == 413
    error = error_of(body)
    assert error["code"] == "too_large"
    assert error["details"] == {"limit": UPLOAD_LIMIT}
    assert f"limit of {UPLOAD_LIMIT} bytes ([server] upload_max_size" in str(error["message"])
    assert leftovers(front) == []


async def test_a_chunked_upload_is_cut_off_at_the_limit_and_its_file_deleted(
    http: httpx.AsyncClient, operator: Account, front: Front
) -> None:
    prologue = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'

    async def body() -> AsyncIterator[bytes]:  # no length: sent chunked, refused as it grows
        yield prologue
        for _ in range(UPLOAD_LIMIT // 65536 + 2):
            yield b"\xab" * 65536
        yield b"\r\n--XyZ--\r\n"

    try:
        response = await http.post(
            ROUTE,
            headers={**operator.headers, "Content-Type": "multipart/form-data; boundary=XyZ"},
            content=body(),
        )
    except httpx.TransportError:
        pytest.fail("the server should answer 413 rather than drop the connection")
    assert response.status_code == 413, response.text
    assert error_of(response.json())["details"] == {"limit": UPLOAD_LIMIT}
    assert leftovers(front) == []


async def test_a_client_that_goes_away_leaves_no_file(server: WebServer, operator: Account, front: Front) -> None:
    prologue = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port or 0)
        await stream.send_all(head(operator, f"Content-Length: {UPLOAD_LIMIT - 1000}\r\n") + prologue)
        sent = 0
        # The file grows on disk while the body is still arriving: it is streamed, not buffered.
        while True:
            await stream.send_all(b"\xcd" * 65536)
            sent += 65536
            parts = [name for name in leftovers(front) if name.endswith(".part")]
            if parts and (uploads_of(front) / parts[0]).stat().st_size >= WRITE_SIZE:
                break
            assert sent < UPLOAD_LIMIT - 100_000, "nothing was written to disk while the body arrived"
            await trio.sleep(0.01)
        await stream.aclose()
        while leftovers(front):
            await trio.sleep(0.02)


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code", "message"),
    [
        ("application/json", b'{"file": "x"}', 415, "unsupported_media_type", "Content-Type: multipart/form-data"),
        ("multipart/form-data", b"--XyZ--\r\n", 400, "malformed_upload", "no boundary"),
        ("multipart/form-data; boundary=XyZ", b"this is not a form at all", 400, "malformed_upload", "not a valid"),
        (
            "multipart/form-data; boundary=XyZ",
            b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.gcode"\r\n\r\nG28\n',
            400,
            "malformed_upload",
            "not a valid multipart/form-data form",
        ),
        (
            "multipart/form-data; boundary=XyZ",
            multipart("XyZ", [("note", None, b"hello")]),
            400,
            "malformed_upload",
            "no file in the form; send the file in a part named 'file'",
        ),
        (
            "multipart/form-data; boundary=XyZ",
            multipart("XyZ", [("document", "a.gcode", b"G28\n")]),
            400,
            "malformed_upload",
            "unexpected file part 'document'",
        ),
        (
            "multipart/form-data; boundary=XyZ",
            multipart("XyZ", [("file", "a.gcode", b"G28\n"), ("file", "b.gcode", b"G28\n")]),
            400,
            "malformed_upload",
            "more than one file",
        ),
        (
            "multipart/form-data; boundary=XyZ",
            multipart("XyZ", [("file", "a.gcode", b"G28\n"), ("note", None, b"\xff\xfe")]),
            400,
            "malformed_upload",
            "'note' is not UTF-8",
        ),
        (
            "multipart/form-data; boundary=XyZ",
            multipart("XyZ", [("file", "a.gcode", b"G28\n"), ("note", None, b"n" * (MAX_FIELD_SIZE + 1))]),
            413,
            "too_large",
            "only the file part may be large",
        ),
        (
            "multipart/form-data; boundary=XyZ",
            multipart("XyZ", [("file", "a.gcode", b"G28\n")] + [(f"f{n}", None, b"1") for n in range(40)]),
            413,
            "too_large",
            "more than 32 parts",
        ),
    ],
)
async def test_bad_bodies_are_refused_and_leave_nothing(
    http: httpx.AsyncClient,
    operator: Account,
    front: Front,
    content_type: str,
    body: bytes,
    status: int,
    code: str,
    message: str,
) -> None:
    response = await http.post(ROUTE, headers={**operator.headers, "Content-Type": content_type}, content=body)
    assert response.status_code == status, response.text
    error = error_of(response.json())
    assert error["code"] == code
    assert message in str(error["message"])
    assert leftovers(front) == []


async def test_uploads_need_the_operator_role(
    http: httpx.AsyncClient, accounts: dict[Role, Account], front: Front
) -> None:
    files = {"file": ("part.gcode", b"G28\n")}
    assert (await http.post(ROUTE, files=files)).status_code == 401
    response = await http.post(ROUTE, headers=accounts[Role.VIEWER].headers, files=files)
    assert response.status_code == 403
    assert leftovers(front) == []


async def test_other_routes_keep_the_small_body_limit(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/register", json={"username": "x" * (BODY_LIMIT + 10)})
    assert response.status_code == 413
    error = error_of(response.json())
    assert error["details"] == {"limit": BODY_LIMIT}
    assert "max_body_size" in str(error["message"])
