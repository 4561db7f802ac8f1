"""Chunk mode: a file goes to the device as raw chunks, over a real socket pair."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
from simulator_support import TIMEOUT, LineClient

from actors.myntrix.devices.upload import send_chunks


async def receive_all(stream: trio.SocketStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        data += await stream.receive_some(65536)
    return bytes(data)


async def test_a_binary_file_arrives_byte_for_byte_in_chunks(tmp_path: Path) -> None:
    payload = os.urandom(100_000)
    path = tmp_path / "firmware.bin"
    path.write_bytes(payload)
    ours, theirs = trio.socket.socketpair()
    device = trio.SocketStream(theirs)
    client = LineClient(trio.SocketStream(ours))
    calls: list[tuple[int, int]] = []

    async def progress(done: int, total: int) -> None:
        calls.append((done, total))

    try:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                received = trio.Event()
                result_holder: list[bytes] = []

                async def collect() -> None:
                    result_holder.append(await receive_all(device, len(payload)))
                    received.set()

                nursery.start_soon(collect)
                result = await send_chunks(path, client, chunk_size=4096, progress=progress)
                await received.wait()
    finally:
        await client.aclose()
        await device.aclose()
    assert result_holder == [payload]
    assert [len(data) for data in client.sent] == [4096] * 24 + [100_000 - 24 * 4096]
    assert (result.lines_sent, result.bytes_sent, result.resends) == (25, 100_000, 0)
    assert calls[0] == (0, 100_000) and calls[-1] == (100_000, 100_000)


async def test_an_empty_file_sends_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty.bin").write_bytes(b"")
    ours, theirs = trio.socket.socketpair()
    client = LineClient(trio.SocketStream(ours))
    calls: list[tuple[int, int]] = []

    async def progress(done: int, total: int) -> None:
        calls.append((done, total))

    try:
        result = await send_chunks(tmp_path / "empty.bin", client, chunk_size=10, progress=progress)
    finally:
        await client.aclose()
        theirs.close()
    assert (result.lines_sent, result.bytes_sent) == (0, 0)
    assert client.sent == []
    assert calls[-1] == (0, 0)


async def test_the_chunk_size_must_be_positive(tmp_path: Path) -> None:
    async def progress(done: int, total: int) -> None:
        raise AssertionError("no progress expected")

    with pytest.raises(ValueError, match="chunk_size must be a positive number of bytes, not 0"):
        await send_chunks(tmp_path / "missing.bin", None, chunk_size=0, progress=progress)  # type: ignore[arg-type]
