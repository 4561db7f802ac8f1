"""WebServer: binds [server] host:port inside the runtime, stops gracefully, leaks no version."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import pytest
import trio
from web_support import Front, environ_for

import web
from vareon_runtime import Runtime, load_config
from web import WebServer, public
from web.component import component as web_component


async def test_binds_port_0_and_reports_the_port(front: Front, client: httpx.AsyncClient) -> None:
    assert front.server.port is not None and front.server.port > 0
    assert front.server.bound == [f"http://127.0.0.1:{front.server.port}"]
    response = await client.get("/health")
    assert response.status_code == 200
    assert "server" not in response.headers  # no product or version for scanners


async def test_stop_finishes_requests_in_flight_then_closes_the_port(front: Front) -> None:
    started = trio.Event()
    release = trio.Event()

    @front.app.get("/test/slow")
    @public
    async def slow() -> dict[str, bool]:
        started.set()
        await release.wait()
        return {"done": True}

    port = front.server.port
    assert port is not None
    answers: list[httpx.Response] = []

    async def call() -> None:
        async with httpx.AsyncClient(base_url=front.base_url, timeout=10) as client:
            answers.append(await client.get("/test/slow"))

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            await started.wait()
            nursery.start_soon(front.stop)
            await trio.sleep(0.2)  # the stop is under way; the request is still in flight
            release.set()
    assert [a.status_code for a in answers] == [200]
    assert answers[0].json() == {"done": True}
    assert front.server.bound == [] and front.server.port is None
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", port)


async def test_disabled_server_adds_no_web_module(nursery: trio.Nursery, tmp_path: Path) -> None:
    config = load_config(None, environ=environ_for(tmp_path, VAREON_SERVER_ENABLED="false"))
    runtime = Runtime(config, components=[web_component])
    with trio.fail_after(30):
        await nursery.start(runtime.run)
    assert [child.name for child in runtime.root.which_children()] == ["journal"]
    runtime.stop()


async def test_ipv6_hosts_are_bracketed(front: Front) -> None:
    for host, bind in (("::", "[::]:0"), ("::1", "[::1]:0"), ("0.0.0.0", "0.0.0.0:0")):
        server = front.ctx.config.server.model_copy(update={"host": host})
        config = front.ctx.config.model_copy(update={"server": server})
        ctx = dataclasses.replace(front.ctx, config=config)
        settings = WebServer(ctx).hypercorn_config()
        assert settings.bind == [bind]
        assert settings.accesslog is None  # off by default: it costs throughput


def test_the_package_face_lists_every_public_name() -> None:
    public_names = {
        name
        for name, value in vars(web).items()
        if not name.startswith("_") and not isinstance(value, type(web)) and name != "annotations"
    }
    assert public_names <= set(web.__all__)  # the face is lazy: a name appears once asked for
    assert all(hasattr(web, name) for name in web.__all__)
