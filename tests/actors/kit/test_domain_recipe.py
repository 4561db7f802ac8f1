"""The recipe of docs/domains.md, proven: a minimal domain (``notes``: one entity, CRUD, an
actor per entity, one web module) moves into a runtime through its entry points alone.

The domain lives in ``tests/actors/kit/domain`` (its folder ``notes/`` and its web module
``notes_web.py``); this module installs it as a distribution would (a ``.dist-info`` with
``vareon.components`` and ``vareon.routes`` entry points on ``sys.path``) and runs a real
runtime with every installed component, over real HTTP. Nothing outside the domain's own files
names it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from vareon_runtime.auth import Passwords, Role
from vareon_runtime.component import Component, RuntimeContext, discover_components
from vareon_runtime.config import load_config, render_default_config
from vareon_runtime.runtime import Runtime
from vareon_runtime.store.models import Base
from vareon_runtime.supervisor import ChildSpec
from web.server import WebServer

DOMAIN = Path(__file__).resolve().parent / "domain"
TIMEOUT = 30.0
PASSWORD = "correct horse battery staple"
ENTRY_POINTS = """\
[vareon.components]
notes = notes.component:component

[vareon.routes]
notes = notes_web:blueprint
"""


@pytest.fixture(scope="module")
def notes_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The notes domain installed for this module's tests, and gone after them."""
    site = tmp_path_factory.mktemp("site")
    dist = site / "vareon_notes-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vareon-notes\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(DOMAIN))
        patch.syspath_prepend(str(site))
        yield
    for name in [name for name in sys.modules if name == "notes" or name.startswith("notes.") or name == "notes_web"]:
        del sys.modules[name]
    if "notes" in Base.metadata.tables:  # later tests compare the metadata with their database
        Base.metadata.remove(Base.metadata.tables["notes"])


class Box:
    """A runtime of every installed component, its web front on 127.0.0.1:0."""

    def __init__(self, runtime: Runtime, server: WebServer) -> None:
        self.runtime = runtime
        self.server = server
        self._tokens: dict[Role, str] = {}

    @property
    def ctx(self) -> RuntimeContext:
        assert self.runtime.context is not None
        return self.runtime.context

    async def token(self, role: Role) -> str:
        if role not in self._tokens:
            name = f"{role.value}-user"
            await self.ctx.auth.create_user(name, f"{name}@example.com", PASSWORD, role)
            self._tokens[role] = (await self.ctx.auth.login(name, PASSWORD, None)).access_token
        return self._tokens[role]


@pytest.fixture
async def box(nursery: trio.Nursery, tmp_path: Path, notes_installed: None) -> AsyncIterator[Box]:
    config_file = tmp_path / "config.toml"
    config_file.write_text("[notes]\nmax_length = 20\n")
    async with start(nursery, config_file, tmp_path / "data") as running:
        yield running


class start:  # noqa: N801 - used as `async with start(...)`
    """Start a runtime of the installed components on ``data``; stop it on the way out."""

    def __init__(self, nursery: trio.Nursery, config_file: Path, data: Path) -> None:
        self.nursery, self.config_file, self.data = nursery, config_file, data
        self.stopped = trio.Event()

    async def __aenter__(self) -> Box:
        config = load_config(
            self.config_file,
            environ={"VAREON_RUNTIME_DATA_DIR": str(self.data), "VAREON_SERVER_HOST": "127.0.0.1", "VAREON_SERVER_PORT": "0"},
        )
        servers: list[WebServer] = []
        components = [self._capturing(c, servers) if c.name == "web" else c for c in discover_components()]
        runtime = Runtime(config, components=components)

        async def run(*, task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                await runtime.run(task_status=task_status)
            finally:
                self.stopped.set()

        with trio.fail_after(TIMEOUT):
            await self.nursery.start(run)
        assert runtime.context is not None
        runtime.context.auth.passwords = Passwords(time_cost=1, memory_cost=1024)
        self.runtime = runtime
        return Box(runtime, servers[0])

    async def __aexit__(self, *exc: object) -> None:
        self.runtime.stop()
        with trio.fail_after(TIMEOUT):
            await self.stopped.wait()

    @staticmethod
    def _capturing(web: Component, servers: list[WebServer]) -> Component:
        def build(ctx: RuntimeContext) -> ChildSpec | None:
            spec = web.build(ctx)
            assert spec is not None
            server = spec.factory()
            assert isinstance(server, WebServer)
            servers.append(server)
            return spec

        return Component(name=web.name, build=build, order=web.order)


async def call(box: Box, method: str, path: str, role: Role, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {await box.token(role)}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{box.server.port}", timeout=10.0) as http:
        return await http.request(method, path, headers=headers, **kwargs)


def test_its_entry_points_bring_its_component_routes_config_and_migrations(notes_installed: None) -> None:
    (notes,) = [c for c in discover_components() if c.name == "notes"]
    assert notes.migrations == "notes.migrations" and notes.config is not None
    assert "\n[notes]\n" in render_default_config()  # `vareon init` writes its section with its comments
    assert "# Characters a note's body may hold.\nmax_length = 1000\n" in render_default_config()


async def test_a_minimal_domain_answers_over_http_with_an_actor_per_entity(box: Box) -> None:
    with trio.fail_after(TIMEOUT):
        created = await call(box, "POST", "/api/notes", Role.OPERATOR, json={"title": "milk", "body": "two litres"})
        assert created.status_code == 201, created.text
        note = created.json()
        assert note["title"] == "milk" and note["created_at"].endswith("Z")
        assert f"note/{note['id']}" in box.ctx.registry  # its actor
        pinned = await call(box, "POST", "/api/notes", Role.OPERATOR, json={"title": "bread", "pinned": True})
        assert pinned.status_code == 201

        listed = await call(box, "GET", "/api/notes?limit=1", Role.VIEWER)
        assert listed.status_code == 200 and listed.headers["X-Total-Count"] == "2"
        assert [n["title"] for n in listed.json()] == ["milk"]
        only_pinned = await call(box, "GET", "/api/notes?pinned=true", Role.VIEWER)
        assert [n["title"] for n in only_pinned.json()] == ["bread"]

        viewed = await call(box, "POST", f"/api/notes/{note['id']}/view", Role.VIEWER)
        viewed = await call(box, "POST", f"/api/notes/{note['id']}/view", Role.VIEWER)
        assert viewed.json()["views"] == 2  # counted by the note's actor

        changed = await call(box, "PUT", f"/api/notes/{note['id']}", Role.OPERATOR, json={"body": "one litre"})
        assert changed.status_code == 200 and changed.json()["body"] == "one litre"

        # Its own config section is read: [notes] max_length = 20 in the file.
        long = await call(box, "POST", "/api/notes", Role.OPERATOR, json={"title": "essay", "body": "x" * 21})
        assert long.status_code == 422 and "at most 20 characters" in long.json()["error"]["message"]
        # The kit's checks at the door and its error mapping.
        assert (await call(box, "POST", "/api/notes", Role.VIEWER, json={"title": "no"})).status_code == 403
        assert (await call(box, "GET", "/api/notes/not-a-uuid", Role.VIEWER)).status_code == 404
        assert (await call(box, "POST", "/api/notes", Role.OPERATOR, json={"titel": "typo"})).status_code == 422
        assert (await call(box, "GET", "/api/notes?limit=501", Role.VIEWER)).status_code == 422

        deleted = await call(box, "DELETE", f"/api/notes/{note['id']}", Role.OPERATOR)
        assert deleted.status_code == 204
        assert f"note/{note['id']}" not in box.ctx.registry
        gone = await call(box, "GET", f"/api/notes/{note['id']}", Role.VIEWER)
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"


async def test_its_actors_come_back_with_the_runtime(nursery: trio.Nursery, tmp_path: Path, notes_installed: None) -> None:
    config_file = tmp_path / "config.toml"
    config_file.write_text("")
    with trio.fail_after(2 * TIMEOUT):
        async with start(nursery, config_file, tmp_path / "data") as first:
            made = (await call(first, "POST", "/api/notes", Role.OPERATOR, json={"title": "keep"})).json()
        async with start(nursery, config_file, tmp_path / "data") as second:
            assert f"note/{made['id']}" in second.ctx.registry
            assert (await call(second, "GET", f"/api/notes/{made['id']}", Role.VIEWER)).json()["title"] == "keep"
