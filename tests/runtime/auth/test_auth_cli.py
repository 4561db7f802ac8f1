"""`vareon user create` and `vareon user verify` against the configured database."""

from __future__ import annotations

import io
from functools import partial
from pathlib import Path

import pytest
import trio

from vareon_runtime.auth import Auth, Role
from vareon_runtime.cli import main
from vareon_runtime.config import load_config
from vareon_runtime.store import Store

PASSWORD = "correct horse battery"
TIMEOUT = 60


@pytest.fixture
def config_file(tmp_path: Path, database_url: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[runtime]\ndata_dir = "data"\n\n[database]\nurl = "{database_url}"\n')
    return path


async def vareon(*argv: str) -> int:
    """Run the command in a worker thread (it calls trio.run itself)."""
    return await trio.to_thread.run_sync(partial(main, list(argv)))


async def sign_in(config_file: Path, username: str, password: str) -> Role:
    """Sign in with a runtime's own store on the same config; return the token's role."""
    config = load_config(config_file)
    async with trio.open_nursery() as nursery:
        store: Store = await nursery.start(Store(config.database_url).run)
        try:
            auth = Auth(config, store)
            pair = await auth.login(username, password, None)
            return auth.verify_access_token(pair.access_token).role
        finally:
            await store.close()


async def test_user_create_with_password_env_then_login(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NEW_ADMIN_PW", PASSWORD)
    with trio.fail_after(TIMEOUT):
        status = await vareon(
            "user", "create", "root", "--role", "admin", "--email", "root@example.com",
            "--password-env", "NEW_ADMIN_PW", "--config", str(config_file),
        )
        out = capsys.readouterr().out
        assert status == 0, capsys.readouterr().err
        assert out.startswith("created admin root (id ")
        assert PASSWORD not in out
        assert await sign_in(config_file, "root", PASSWORD) is Role.ADMIN
    # The JWT key was made in the configured data directory.
    assert (config_file.parent / "data" / "secrets" / "jwt.key").exists()


async def test_user_create_reads_one_line_of_stdin(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    with trio.fail_after(TIMEOUT):
        status = await vareon("user", "create", "ops", "--role", "operator", "--config", str(config_file))
        assert status == 0, capsys.readouterr().err
        assert await sign_in(config_file, "ops", PASSWORD) is Role.OPERATOR


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_user_create_prompts_twice_on_a_terminal(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter([PASSWORD, "something else"])
    monkeypatch.setattr("sys.stdin", _Terminal())
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    with trio.fail_after(TIMEOUT):
        status = await vareon("user", "create", "vera", "--role", "viewer", "--config", str(config_file))
    assert status == 2
    assert "vareon: error: the two passwords differ; nothing was created" in capsys.readouterr().err

    answers = iter([PASSWORD, PASSWORD])
    with trio.fail_after(TIMEOUT):
        status = await vareon("user", "create", "vera", "--role", "viewer", "--config", str(config_file))
        assert status == 0, capsys.readouterr().err
        assert await sign_in(config_file, "vera", PASSWORD) is Role.VIEWER


async def test_user_create_refusals_exit_2_with_the_reason(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PW", PASSWORD)
    monkeypatch.setenv("SHORT_PW", "short")
    monkeypatch.delenv("UNSET_PW", raising=False)
    cases = [
        (["--password-env", "UNSET_PW"], "--password-env names UNSET_PW, which is not set or empty"),
        (["--password-env", "SHORT_PW"], "password must be at least 8 characters, not 5"),
    ]
    with trio.fail_after(TIMEOUT):
        for extra, message in cases:
            status = await vareon("user", "create", "root", "--role", "admin", *extra, "--config", str(config_file))
            assert status == 2
            assert f"vareon: error: {message}" in capsys.readouterr().err
        assert await vareon("user", "create", "root", "--role", "admin", "--password-env", "PW", "--config", str(config_file)) == 0
        status = await vareon("user", "create", "root", "--role", "admin", "--password-env", "PW", "--config", str(config_file))
        assert status == 2
        assert "vareon: error: username 'root' is taken" in capsys.readouterr().err


async def test_user_verify_marks_the_email_verified(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_config(config_file)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            store: Store = await nursery.start(Store(config.database_url).run)
            auth = Auth(config, store)
            user = await auth.register("alice", "alice@example.com", PASSWORD)
            assert not user.email_verified

            status = await vareon("user", "verify", "alice", "--config", str(config_file))
            assert status == 0, capsys.readouterr().err
            assert capsys.readouterr().out == "verified the email of alice (alice@example.com)\n"
            assert (await auth.get_user(user.id)).email_verified

            status = await vareon("user", "verify", "nobody", "--config", str(config_file))
            assert status == 2
            assert "vareon: error: no user named 'nobody'" in capsys.readouterr().err
            await store.close()


def test_user_commands_need_an_existing_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["user", "verify", "alice", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist; create one with `vareon init" in capsys.readouterr().err
