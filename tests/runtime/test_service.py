"""``vareon service``: the systemd unit and the Termux:Boot script, on a fake root (no systemctl
runs: the host's command runner is a recorder)."""

from __future__ import annotations

import signal
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from vareon_runtime.service import (
    Completed,
    Host,
    Service,
    ServiceError,
    parse_is_active,
    parse_main_pid,
)


class FakeSystemctl:
    """Answers systemctl as a host with the unit active under pid 4242 would."""

    def __init__(self, active: str = "active\n", pid: str = "4242\n") -> None:
        self.calls: list[list[str]] = []
        self.active = active
        self.pid = pid

    def __call__(self, argv: Sequence[str]) -> Completed:
        self.calls.append(list(argv))
        if "is-active" in argv:
            return Completed(0 if self.active.strip() == "active" else 3, self.active)
        if "show" in argv:
            return Completed(0, self.pid)
        return Completed(0, "")


def host_on(tmp_path: Path, *, uid: int, environ: dict[str, str] | None = None, systemd: bool = True) -> tuple[Host, FakeSystemctl]:
    root, home = tmp_path / "root", tmp_path / "home" / "pi"
    home.mkdir(parents=True)
    if systemd:
        (root / "run" / "systemd" / "system").mkdir(parents=True)
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "vareon").write_text("#!/bin/sh\n")
    runner = FakeSystemctl()
    host = Host(
        root=root, home=home, environ=environ or {}, uid=uid, user="root" if uid == 0 else "pi",
        executable=venv / "python3", run=runner,
    )
    return host, runner


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "box" / "config.toml"
    path.parent.mkdir()
    path.write_text("")
    return path


def test_as_root_a_system_unit_after_the_network_run_as_the_sudo_user(tmp_path: Path, config: Path) -> None:
    host, systemctl = host_on(tmp_path, uid=0, environ={"SUDO_USER": "pi"})
    lines = Service(host).install(config, stop_timeout=10.0)
    unit = host.root / "etc" / "systemd" / "system" / "vareon.service"
    text = unit.read_text()
    assert f"ExecStart={tmp_path}/venv/bin/vareon run --config {config}\n" in text
    assert "Wants=network-online.target\nAfter=network-online.target\n" in text
    assert "User=pi\n" in text
    assert "Restart=on-failure\n" in text and "KillSignal=SIGTERM\n" in text and "TimeoutStopSec=25\n" in text
    assert f"WorkingDirectory={config.parent}\n" in text
    assert text.endswith("[Install]\nWantedBy=multi-user.target\n")
    assert systemctl.calls == [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", "vareon.service"]]
    assert lines[0] == f"wrote {unit}" and "journalctl -u vareon -f" in lines[-1]
    # The same again is fine; a different unit of that name needs --force.
    Service(host).install(config, stop_timeout=10.0)
    with pytest.raises(ServiceError, match="exists and differs from what would be written; pass --force"):
        Service(host).install(config, stop_timeout=60.0)


def test_as_a_user_a_user_unit_and_the_lingering_hint(tmp_path: Path, config: Path) -> None:
    host, systemctl = host_on(tmp_path, uid=1000)
    lines = Service(host).install(config)
    unit = host.home / ".config" / "systemd" / "user" / "vareon.service"
    text = unit.read_text()
    assert "User=" not in text and "network-online.target\n" not in text.replace("# A user's service manager has no network-online.target", "")
    assert text.endswith("WantedBy=default.target\n")
    assert systemctl.calls == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", "vareon.service"],
    ]
    assert lines[-1] == (
        "a user's units start at boot only with lingering on: loginctl enable-linger pi (or install as root for a system unit)"
    )
    (host.root / "var" / "lib" / "systemd" / "linger").mkdir(parents=True)
    (host.root / "var" / "lib" / "systemd" / "linger" / "pi").touch()
    assert "enable-linger" not in Service(host).install(config)[-1]


def test_a_dry_run_prints_the_unit_and_changes_nothing(tmp_path: Path, config: Path) -> None:
    host, systemctl = host_on(tmp_path, uid=1000)
    lines = Service(host).install(config, dry_run=True)
    assert lines[0].startswith("would write ") and "[Service]" in lines[1]
    assert lines[2:4] == [
        "would run: systemctl --user daemon-reload",
        "would run: systemctl --user enable --now vareon.service",
    ]
    assert systemctl.calls == [] and not (host.home / ".config").exists()


def test_status_reads_is_active_and_the_main_pid(tmp_path: Path, config: Path) -> None:
    host, systemctl = host_on(tmp_path, uid=1000)
    assert not Service(host).status().installed
    Service(host).install(config)
    state = Service(host).status()
    assert (state.kind, state.state, state.pid, state.running) == ("systemd-user", "active", 4242, True)
    assert state.line() == f"vareon service (systemd-user, {Service(host).user_unit}): active, pid 4242"
    systemctl.active, systemctl.pid = "failed\n", "0\n"
    state = Service(host).status()
    assert (state.state, state.pid, state.running) == ("failed", None, False)
    assert parse_is_active("activating\n") == "activating" and parse_is_active("") == "unknown"
    assert parse_main_pid("MainPID=17\n") == 17 and parse_main_pid("0") is None and parse_main_pid("") is None


def test_uninstall_disables_and_removes_the_unit(tmp_path: Path, config: Path) -> None:
    host, systemctl = host_on(tmp_path, uid=0)
    Service(host).install(config)
    systemctl.calls.clear()
    lines = Service(host).uninstall()
    assert systemctl.calls == [["systemctl", "disable", "--now", "vareon.service"], ["systemctl", "daemon-reload"]]
    assert not Service(host).system_unit.exists() and lines[1] == f"removed {Service(host).system_unit}"
    with pytest.raises(ServiceError, match="no vareon service is installed here"):
        Service(host).uninstall()


def test_without_systemd_or_termux_it_says_what_to_run(tmp_path: Path, config: Path) -> None:
    host, _ = host_on(tmp_path, uid=1000, systemd=False)
    with pytest.raises(ServiceError, match=rf"no systemd here .* start `{tmp_path}/venv/bin/vareon run --config {config}`"):
        Service(host).install(config)


def test_termux_gets_a_boot_script_that_restarts_after_a_failure_only(tmp_path: Path, config: Path) -> None:
    prefix = "/data/data/com.termux/files/usr"
    host, systemctl = host_on(tmp_path, uid=10123, environ={"PREFIX": prefix}, systemd=False)
    lines = Service(host).install(config)
    script = host.home / ".termux" / "boot" / "vareon"
    text = script.read_text()
    assert text.startswith(f"#!{prefix}/bin/sh\n")
    assert "termux-wake-lock" in text
    assert f"{tmp_path}/venv/bin/vareon run --config {config} >> {host.home}/.termux/vareon.log 2>&1 &\n" in text
    assert '[ "$status" -eq 0 ] && break' in text
    assert stat.S_IMODE(script.stat().st_mode) == 0o700
    assert systemctl.calls == [] and "Termux:Boot" in lines[-1]
    # The script's shell syntax holds (checked by sh -n, not run).
    subprocess.run(["sh", "-n", str(script)], check=True)

    pids: dict[int, bool] = {}
    host.alive = lambda pid: pids.get(pid, False)
    sent: list[tuple[int, int]] = []
    host.kill = lambda pid, sig: sent.append((pid, sig))
    assert Service(host).status().state == "stopped"
    (host.home / ".termux" / "vareon.pid").write_text("777\n")
    pids[777] = True
    state = Service(host).status()
    assert (state.kind, state.state, state.pid) == ("termux", "running", 777)
    assert Service(host).uninstall() == [f"removed {script}", "stopped pid 777 (SIGTERM)"]
    assert sent == [(777, signal.SIGTERM)] and not script.exists()


def test_termux_is_found_by_its_version_variable_too(tmp_path: Path, config: Path) -> None:
    host, _ = host_on(tmp_path, uid=10123, environ={"TERMUX_VERSION": "0.118.0"}, systemd=True)
    Service(host).install(config)
    assert (host.home / ".termux" / "boot" / "vareon").is_file()
    assert not Service(host).user_unit.exists()
