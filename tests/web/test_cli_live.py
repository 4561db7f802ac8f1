"""`vareon token` and `vareon watch` beside a running runtime: the token the command prints is
admitted by the runtime (one store, one JWT key in the data directory), and the watch prints
the runtime's events, one JSON object a line."""

from __future__ import annotations

import io
import json
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
from web_support import PASSWORD, START_TIMEOUT, Front

from vareon_runtime.auth import Role
from vareon_runtime.cli import main


@pytest.fixture
def config_file(tmp_path: Path, front: Front) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[runtime]\ndata_dir = "{tmp_path / "data"}"\n')
    return path


async def vareon(*argv: str) -> int:
    """Run the command in a worker thread (it calls trio.run itself)."""
    return await trio.to_thread.run_sync(partial(main, list(argv)))


async def test_token_signs_in_against_the_running_runtime(
    front: Front, client: httpx.AsyncClient, config_file: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    with trio.fail_after(START_TIMEOUT):
        await front.ctx.auth.create_user("ops", None, PASSWORD, Role.OPERATOR)
        monkeypatch.setenv("OPS_PASSWORD", PASSWORD)
        assert await vareon("token", "ops", "--password-env", "OPS_PASSWORD", "--config", str(config_file)) == 0
        token = capsys.readouterr().out.strip()
        me = await client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200, me.text
        assert (me.json()["username"], me.json()["role"]) == ("ops", "operator")

        monkeypatch.setenv("OPS_PASSWORD", "not the password")
        assert await vareon("token", "ops", "--password-env", "OPS_PASSWORD", "--config", str(config_file)) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "vareon: error: incorrect username or password" in captured.err


async def test_token_reads_one_line_of_stdin(
    front: Front, config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(START_TIMEOUT):
        await front.ctx.auth.create_user("vera", None, PASSWORD, Role.VIEWER)
        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        assert await vareon("token", "vera", "--config", str(config_file)) == 0
        token = capsys.readouterr().out.strip()
    assert (await front.ctx.auth.authenticate(token)).username == "vera"


async def test_watch_prints_events_of_its_topics(
    front: Front, config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await front.ctx.auth.create_user("vera", None, PASSWORD, Role.VIEWER)
    pair = await front.ctx.auth.login("vera", PASSWORD, None)
    monkeypatch.setenv("TOKEN", pair.access_token)
    argv = ["watch", "demo.*", "other.one", "--count", "2", "--url", front.base_url]
    async with trio.open_nursery() as nursery:
        done = trio.Event()
        status: list[int] = []

        async def watch() -> None:
            status.append(await vareon(*argv))
            done.set()

        nursery.start_soon(watch)
        with trio.fail_after(START_TIMEOUT):
            while not done.is_set():  # published until the watch has subscribed and counted two
                front.ctx.bus.publish("demo.tick", {"n": 1})
                front.ctx.bus.publish("unwatched.tick", {"n": 0})
                with trio.move_on_after(0.05):
                    await done.wait()
    assert status == [0]
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line in lines:
        event = json.loads(line)
        assert (event["topic"], event["data"]) == ("demo.tick", {"n": 1})
        assert set(event) == {"topic", "data", "time", "seq"}


async def test_watch_says_what_is_wrong(
    front: Front, config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TOKEN", raising=False)
    with trio.fail_after(START_TIMEOUT):
        assert await vareon("watch", "agent.*", "--url", front.base_url) == 2
        assert "TOKEN is not set; export TOKEN=$(vareon token USER" in capsys.readouterr().err
        monkeypatch.setenv("TOKEN", "not-a-token")
        assert await vareon("watch", "agent.*", "--url", front.base_url) == 2
        assert "vareon: error: the token was refused: invalid token" in capsys.readouterr().err
        await front.ctx.auth.create_user("vera", None, PASSWORD, Role.VIEWER)
        monkeypatch.setenv("TOKEN", (await front.ctx.auth.login("vera", PASSWORD, None)).access_token)
        assert await vareon("watch", "no spaces", "--url", front.base_url) == 2
        assert "cannot subscribe to 'no spaces'" in capsys.readouterr().err
        assert await vareon("watch", "--device", "nope", "--url", front.base_url) == 2
        assert "vareon: error: the telemetry stream refused: the devices module is not running" in capsys.readouterr().err
        assert await vareon("watch", "--config", str(config_file)) == 2
        assert "give topics (say 'agent.*') or --device ID" in capsys.readouterr().err
