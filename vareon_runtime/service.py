"""``vareon service install|status|uninstall``: the runtime started at boot and kept running.

On Linux with systemd, a unit that runs ``vareon run --config <config>``, restarted on failure
(a clean stop, SIGTERM from ``systemctl stop``, exits 0 and stays stopped):

- as root, a system unit (``/etc/systemd/system/<name>.service``), after ``network-online.target``,
  run as the user who called ``sudo`` (``SUDO_USER``), else as root;
- otherwise, a user unit (``~/.config/systemd/user/<name>.service``), run as that user. A user's
  units start at boot only with lingering on (``loginctl enable-linger``), which install says; a
  user's service manager has no ``network-online.target``, so the unit says so instead of
  waiting for it.

On Termux (``TERMUX_VERSION`` set, or ``$PREFIX`` under ``/data/data/com.termux``), a
Termux:Boot script (``~/.termux/boot/<name>``): it takes a wake lock, runs the runtime, writes
its pid to ``~/.termux/<name>.pid``, restarts it after a failure (not after a clean stop), and
appends its output to ``~/.termux/<name>.log`` (rotated once past 10 MiB).

Everything touching the system goes through a :class:`Host` (the filesystem root, the home, the
environment, the command runner, signals), so tests run it on a fake root without systemctl.
Logs: journald keeps the runtime's stderr; ``[runtime] log_format = "json"`` makes each line a
JSON object (``journalctl -u vareon -o cat | jq``).
"""

from __future__ import annotations

import os
import pwd
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import VareonError

__all__ = [
    "Completed",
    "Host",
    "Service",
    "ServiceError",
    "ServiceState",
    "parse_is_active",
    "parse_main_pid",
    "run_command",
    "systemd_unit",
    "termux_boot_script",
]

LOG_ROTATE_BYTES = 10 * 1024 * 1024


class ServiceError(VareonError):
    """The service cannot be installed, read or removed here; the message says why."""


@dataclass(frozen=True)
class Completed:
    """What a command gave back."""

    returncode: int
    stdout: str


Runner = Callable[[Sequence[str]], Completed]


def run_command(argv: Sequence[str]) -> Completed:
    """Run ``argv`` (no shell), its output captured."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=60)
    except FileNotFoundError as exc:
        raise ServiceError(f"{argv[0]} is not installed here: {exc}") from exc
    return Completed(done.returncode, done.stdout + done.stderr)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Host:
    """The machine as the service sees it (a fake one in tests).

    Attributes:
        root: the filesystem root (``/``): system units and ``/run/systemd/system`` below it.
        home: the user's home.
        environ: the environment (``SUDO_USER``, ``TERMUX_VERSION``, ``PREFIX``).
        uid: the effective user id (0: root).
        user: the user's name.
        executable: the Python running ``vareon``.
        run: runs a command (systemctl), returns its status and output.
        alive: whether a pid is a live process.
        kill: sends a signal to a pid.
    """

    root: Path = Path("/")
    home: Path = field(default_factory=Path.home)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    uid: int = field(default_factory=os.geteuid)
    user: str = field(default_factory=lambda: pwd.getpwuid(os.geteuid()).pw_name)
    executable: Path = field(default_factory=lambda: Path(sys.executable))
    run: Runner = run_command
    alive: Callable[[int], bool] = _alive
    kill: Callable[[int, int], None] = os.kill

    @property
    def termux(self) -> bool:
        return "TERMUX_VERSION" in self.environ or self.environ.get("PREFIX", "").startswith("/data/data/com.termux")

    @property
    def systemd(self) -> bool:
        return (self.root / "run" / "systemd" / "system").is_dir()

    def command(self) -> list[str]:
        """How to start ``vareon``: the script beside this Python, else ``python -m``."""
        script = self.executable.parent / "vareon"
        if script.is_file():
            return [str(script)]
        return [str(self.executable), "-m", "vareon_runtime.cli"]


def systemd_unit(command: Sequence[str], config: Path, *, system: bool, user: str | None, stop_timeout: float) -> str:
    """The text of the unit that runs ``command run --config config``."""
    exec_start = shlex.join([*command, "run", "--config", str(config)])
    lines = [
        "# Written by `vareon service install`; `vareon service uninstall` removes it.",
        "[Unit]",
        f"Description=Vareon Runtime ({config})",
    ]
    if system:
        lines += ["Wants=network-online.target", "After=network-online.target"]
    else:
        lines += [
            "# A user's service manager has no network-online.target; the runtime needs no",
            "# network to start (devices and outbound calls retry on their own).",
        ]
    lines += [
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={exec_start}",
        f"WorkingDirectory={config.parent}",
    ]
    if system and user:
        lines.append(f"User={user}")
    lines += [
        # A clean stop (SIGTERM) exits 0 and stays stopped; a crash or a failed start comes back.
        "Restart=on-failure",
        "RestartSec=5",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={int(stop_timeout) + 15}",
        "Environment=PYTHONUNBUFFERED=1",
        "",
        "[Install]",
        f"WantedBy={'multi-user.target' if system else 'default.target'}",
    ]
    return "\n".join(lines) + "\n"


def termux_boot_script(command: Sequence[str], config: Path, *, pid_file: Path, log_file: Path, shell: str) -> str:
    """The Termux:Boot script that runs ``command run --config config`` and keeps it running."""
    run = shlex.join([*command, "run", "--config", str(config)])
    log, pid = shlex.quote(str(log_file)), shlex.quote(str(pid_file))
    return f"""#!{shell}
# Written by `vareon service install`: Termux:Boot runs it when the phone starts.
# `vareon service uninstall` removes it and stops the runtime.
termux-wake-lock 2>/dev/null  # keep the CPU awake while the runtime runs
cd {shlex.quote(str(config.parent))} || exit 1
while :; do
    if [ -f {log} ] && [ "$(wc -c < {log})" -gt {LOG_ROTATE_BYTES} ]; then
        mv -f {log} {log}.1
    fi
    {run} >> {log} 2>&1 &
    echo $! > {pid}
    wait $!
    status=$?
    [ "$status" -eq 0 ] && break  # a clean stop (SIGTERM): stay stopped
    echo "vareon exited with status $status; starting it again in 5 s" >> {log}
    sleep 5
done
rm -f {pid}
"""


@dataclass(frozen=True)
class ServiceState:
    """What ``vareon service status`` found."""

    kind: str
    """``systemd-system``, ``systemd-user``, ``termux`` or ``none``."""
    installed: bool
    state: str
    """systemd's ActiveState word (``active``, ``inactive``, ``failed``, ``activating``...),
    ``running``/``stopped`` on Termux, ``not installed``."""
    pid: int | None
    where: Path | None

    @property
    def running(self) -> bool:
        return self.state in ("active", "running", "reloading")

    def line(self) -> str:
        if not self.installed:
            return "vareon service: not installed (install it with `vareon service install --config <path>`)"
        pid = f", pid {self.pid}" if self.pid else ""
        return f"vareon service ({self.kind}, {self.where}): {self.state}{pid}"


class Service:
    """The runtime's service on one host (see the module docstring).

    Args:
        host: the machine.
        name: the unit's (or boot script's) name.
    """

    def __init__(self, host: Host, name: str = "vareon") -> None:
        if not name or "/" in name or name.startswith("."):
            raise ServiceError(f"a service name is a plain file name such as 'vareon', not {name!r}")
        self.host = host
        self.name = name

    @classmethod
    def here(cls, name: str = "vareon") -> Service:
        return cls(Host(), name)

    # -- where things are -----------------------------------------------------------------------

    @property
    def system(self) -> bool:
        return self.host.uid == 0

    @property
    def system_unit(self) -> Path:
        return self.host.root / "etc" / "systemd" / "system" / f"{self.name}.service"

    @property
    def user_unit(self) -> Path:
        return self.host.home / ".config" / "systemd" / "user" / f"{self.name}.service"

    @property
    def boot_script(self) -> Path:
        return self.host.home / ".termux" / "boot" / self.name

    @property
    def pid_file(self) -> Path:
        return self.host.home / ".termux" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.host.home / ".termux" / f"{self.name}.log"

    def _systemctl(self, *args: str, user: bool) -> list[str]:
        return ["systemctl", *(["--user"] if user else []), *args]

    # -- install ----------------------------------------------------------------------------------

    def install(self, config: Path, *, dry_run: bool = False, force: bool = False, stop_timeout: float = 10.0) -> list[str]:
        """Write and enable the unit (or boot script) running ``config``; lines to print.

        Raises:
            ServiceError: neither systemd nor Termux is here, or a different file of that name
                exists (without ``force``), or systemctl failed.
        """
        host = self.host
        config = config.resolve()
        if host.termux:
            text = termux_boot_script(
                host.command(), config, pid_file=self.pid_file, log_file=self.log_file, shell=self._termux_shell()
            )
            return self._write(self.boot_script, text, 0o700, [], dry_run, force) + [
                "Termux:Boot runs it at the next boot (install the Termux:Boot app and open it once);"
                f" to start it now: sh {self.boot_script} &",
            ]
        if not host.systemd and not dry_run:  # a dry run shows the unit all the same
            raise ServiceError(
                "no systemd here (/run/systemd/system is missing) and not Termux; start"
                f" `{shlex.join([*host.command(), 'run', '--config', str(config)])}` from your init system"
            )
        system = self.system
        user = (host.environ.get("SUDO_USER") or host.user) if system else None
        text = systemd_unit(host.command(), config, system=system, user=user, stop_timeout=stop_timeout)
        unit = self.system_unit if system else self.user_unit
        commands = [
            self._systemctl("daemon-reload", user=not system),
            self._systemctl("enable", "--now", f"{self.name}.service", user=not system),
        ]
        lines = self._write(unit, text, 0o644, commands, dry_run, force)
        scope = "" if system else " --user"
        lines.append(f"logs: journalctl{scope} -u {self.name} -f  (JSON lines with [runtime] log_format = \"json\")")
        if not system and not (host.root / "var" / "lib" / "systemd" / "linger" / host.user).exists():
            lines.append(
                f"a user's units start at boot only with lingering on: loginctl enable-linger {host.user}"
                " (or install as root for a system unit)"
            )
        return lines

    def _write(self, path: Path, text: str, mode: int, commands: list[list[str]], dry_run: bool, force: bool) -> list[str]:
        if dry_run:
            return [f"would write {path}:", text, *(f"would run: {shlex.join(c)}" for c in commands)]
        if path.exists() and path.read_text() != text and not force:
            raise ServiceError(f"{path} exists and differs from what would be written; pass --force to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(text)
        os.chmod(partial, mode)
        os.replace(partial, path)
        lines = [f"wrote {path}"]
        for command in commands:
            done = self.host.run(command)
            if done.returncode != 0:
                raise ServiceError(f"{shlex.join(command)} failed ({done.returncode}): {done.stdout.strip()}")
            lines.append(f"ran: {shlex.join(command)}")
        return lines

    def _termux_shell(self) -> str:
        prefix = self.host.environ.get("PREFIX", "/data/data/com.termux/files/usr")
        return f"{prefix}/bin/sh"

    # -- status -------------------------------------------------------------------------------------

    def status(self) -> ServiceState:
        """Whether the service is installed and running.

        Raises:
            ServiceError: systemctl failed in a way that tells nothing.
        """
        host = self.host
        if host.termux or self.boot_script.exists():
            if not self.boot_script.exists():
                return ServiceState("termux", False, "not installed", None, None)
            pid = _read_pid(self.pid_file)
            running = pid is not None and host.alive(pid)
            return ServiceState("termux", True, "running" if running else "stopped", pid if running else None, self.boot_script)
        for user, unit in ((False, self.system_unit), (True, self.user_unit)):
            if unit.exists():
                active = host.run(self._systemctl("is-active", f"{self.name}.service", user=user))
                state = parse_is_active(active.stdout)
                shown = host.run(self._systemctl("show", "--property=MainPID", "--value", f"{self.name}.service", user=user))
                pid = parse_main_pid(shown.stdout)
                return ServiceState("systemd-user" if user else "systemd-system", True, state, pid, unit)
        return ServiceState("none", False, "not installed", None, None)

    # -- uninstall ----------------------------------------------------------------------------------

    def uninstall(self, *, dry_run: bool = False) -> list[str]:
        """Stop, disable and remove the service; lines to print.

        Raises:
            ServiceError: it is not installed, or systemctl failed.
        """
        host = self.host
        if self.boot_script.exists():
            pid = _read_pid(self.pid_file)
            running = pid is not None and host.alive(pid)
            if dry_run:
                return [f"would remove {self.boot_script}"] + ([f"would stop pid {pid} (SIGTERM)"] if running else [])
            self.boot_script.unlink()
            lines = [f"removed {self.boot_script}"]
            if running:
                assert pid is not None
                host.kill(pid, signal.SIGTERM)  # a clean stop: the script's loop ends with it
                lines.append(f"stopped pid {pid} (SIGTERM)")
            return lines
        for user, unit in ((False, self.system_unit), (True, self.user_unit)):
            if not unit.exists():
                continue
            commands = [
                self._systemctl("disable", "--now", f"{self.name}.service", user=user),
            ]
            if dry_run:
                return [*(f"would run: {shlex.join(c)}" for c in commands), f"would remove {unit}"]
            lines = []
            for command in commands:
                done = host.run(command)
                if done.returncode != 0:
                    raise ServiceError(f"{shlex.join(command)} failed ({done.returncode}): {done.stdout.strip()}")
                lines.append(f"ran: {shlex.join(command)}")
            unit.unlink()
            lines.append(f"removed {unit}")
            reload = self._systemctl("daemon-reload", user=user)
            host.run(reload)
            lines.append(f"ran: {shlex.join(reload)}")
            return lines
        raise ServiceError(f"no {self.name} service is installed here (no unit, no Termux:Boot script)")


def parse_is_active(output: str) -> str:
    """systemd's ActiveState from ``systemctl is-active`` (its first line; ``unknown`` if none)."""
    first = output.strip().splitlines()[0].strip() if output.strip() else ""
    return first or "unknown"


def parse_main_pid(output: str) -> int | None:
    """The main pid from ``systemctl show --property=MainPID --value`` (0 or nothing: None)."""
    text = output.strip().removeprefix("MainPID=")
    return int(text) if text.isdigit() and int(text) > 0 else None


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
