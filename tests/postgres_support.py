"""PostgreSQL for the store's tests: a fresh database on the shared server, or a cluster of the test's own.

``fresh_database()`` creates ``vareon_test_<hex>`` on 127.0.0.1:5432 and drops it afterwards
(skipping, with the reason, when the server does not answer). ``ThrowawayCluster`` is a server
the test owns, made with ``initdb`` and run with ``pg_ctl`` on a free port, as the ``postgres``
user (both refuse root): a test may stop and restart it, which it must never do to the shared
server.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


def fresh_database() -> Iterator[str]:
    """Yield the URL of a new, empty database on the shared server; drop it afterwards."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a test dependency
        pytest.skip(f"PostgreSQL not reachable on 127.0.0.1:5432: psycopg is missing ({exc})")
    name = f"vareon_test_{secrets.token_hex(6)}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable on 127.0.0.1:5432: {str(exc).strip()}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            # FORCE: a connection a failing test leaked must not leave the database behind.
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _binaries() -> Path | None:
    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(os.path.join(directory, "pg_ctl"), os.X_OK) and os.access(
            os.path.join(directory, "initdb"), os.X_OK
        ):
            return Path(directory)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ThrowawayCluster:
    """A PostgreSQL server of the test's own, in a temporary directory, on 127.0.0.1."""

    def __init__(self, binaries: Path) -> None:
        self._binaries = binaries
        self._user = pwd.getpwnam("postgres")
        self.root = Path(tempfile.mkdtemp(prefix="vareon-pg-"))
        os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
        self.data = self.root / "data"
        self.port = _free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        command = ["runuser", "-u", "postgres", "--", str(self._binaries / program), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root}"
            " -c fsync=off"
        )
        log = str(self.root / "log")
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-l", log, "-o", options, "start")

    def stop(self) -> None:
        """Stop the server (fast: its sessions are ended, as a restart by an operator would)."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-m", "fast", "stop")

    def remove(self) -> None:
        try:
            self.stop()
        except RuntimeError:
            pass  # not running
        shutil.rmtree(self.root, ignore_errors=True)


def throwaway_cluster() -> Iterator[ThrowawayCluster]:
    """Yield a started cluster of the test's own; stop and remove it afterwards.

    Skips, saying why, where the server binaries, ``runuser`` or the ``postgres`` user are
    missing, or when not running as root (``runuser`` needs it).
    """
    binaries = _binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (initdb, pg_ctl)")
    if shutil.which("runuser") is None:
        pytest.skip("runuser is missing: initdb and pg_ctl refuse root and must run as postgres")
    if os.geteuid() != 0:
        pytest.skip("a throwaway cluster runs initdb as the postgres user through runuser, which needs root")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("there is no postgres user to run initdb and pg_ctl as")
    cluster = ThrowawayCluster(binaries)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
