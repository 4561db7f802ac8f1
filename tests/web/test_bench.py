"""``vareon bench http``: the floor it compares against runs with the runtime's server settings."""

from __future__ import annotations

import sys

import httpx
import trio

from vareon_runtime.bench.processes import free_port
from web import bench

TIMEOUT = 30


async def test_the_floor_answers_like_the_runtime_without_a_server_header(
    client: httpx.AsyncClient,
) -> None:
    port = free_port()
    process = await trio.lowlevel.open_process([sys.executable, "-m", "web.bench", "floor", str(port)])
    try:
        async with httpx.AsyncClient(timeout=5.0) as http:
            with trio.fail_after(TIMEOUT):
                while True:
                    try:
                        floor = await http.get(f"http://127.0.0.1:{port}/")
                        break
                    except httpx.TransportError:
                        await trio.sleep(0.05)
    finally:
        process.terminate()
        with trio.fail_after(TIMEOUT):
            await process.wait()
    runtime = await client.get("/health")
    assert floor.status_code == runtime.status_code == 200
    # Hypercorn adds "server: hypercorn-h11" unless told not to; the runtime does not send it,
    # and a floor that did would be measured doing different work.
    assert "server" not in runtime.headers
    assert "server" not in floor.headers
