"""Processes a benchmark runs beside itself: free ports, the `vareon` command, waiting for a
server to answer, clean stops, and a whole runtime with a signed-in user
(:func:`served_runtime`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import VareonError

if TYPE_CHECKING:
    import httpx

__all__ = ["ServedRuntime", "checked", "free_port", "run_vareon", "served_runtime", "stop_process", "wait_ready"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a server started next)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_vareon(*args: str, env: dict[str, str]) -> None:
    """Run ``vareon ARGS`` to completion.

    Raises:
        VareonError: it exited non-zero (its stderr is in the message).
    """
    done = subprocess.run(
        [sys.executable, "-m", "vareon_runtime.cli", *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise VareonError(f"vareon {' '.join(args[:2])} failed: {done.stderr.strip()}")


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Wait until ``GET url`` answers 200 (the server ``proc`` started and listens).

    Raises:
        VareonError: ``proc`` exited first, or no 200 came within ``timeout`` seconds.
    """
    import httpx  # only the benchmarks that start a server need it

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise VareonError(f"the server under test exited with {proc.returncode} before answering {url}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise VareonError(f"no answer from {url} within {timeout:g}s")
        time.sleep(0.05)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """SIGTERM ``proc`` and wait up to ``timeout`` seconds, then SIGKILL it."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass(frozen=True)
class ServedRuntime:
    """A runtime a benchmark started (:func:`served_runtime`), and how to reach it."""

    base: str
    """``http://127.0.0.1:<port>``."""
    port: int
    token: str
    """An access token of the benchmark's user."""
    process: subprocess.Popen[bytes]
    data_dir: Path

    def client(self, timeout: float = 60.0) -> httpx.Client:
        """An HTTP client on the runtime, signed in as the benchmark's user."""
        import httpx

        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {self.token}"}, timeout=timeout)


@contextmanager
def served_runtime(tmp: Path, *, role: str, environ: Mapping[str, str] | None = None) -> Iterator[ServedRuntime]:
    """Run ``vareon run`` on a fresh config and data directory under ``tmp``, with a user of
    ``role`` signed in; stop it (SIGTERM, then SIGKILL) on leaving.

    Args:
        environ: the runtime's environment (``os.environ`` by default); its port, log level, data
            directory and the user's password are set here.

    Raises:
        VareonError: the runtime did not start, or the user could not sign in.
    """
    import httpx

    port = free_port()
    password = os.urandom(12).hex()
    data_dir = tmp / "data"
    env = {
        **(os.environ if environ is None else environ),
        "VAREON_SERVER_PORT": str(port),
        "VAREON_RUNTIME_LOG_LEVEL": "warning",
        "VAREON_RUNTIME_DATA_DIR": str(data_dir),
        "VAREON_BENCH_PASSWORD": password,
    }
    config = str(tmp / "config.toml")
    run_vareon("init", "--config", config, env=env)
    run_vareon("user", "create", "bench", "--role", role, "--password-env", "VAREON_BENCH_PASSWORD", "--config", config, env=env)
    process = subprocess.Popen([sys.executable, "-m", "vareon_runtime.cli", "run", "--config", config], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base + "/health", process)
        signed_in = checked(httpx.post(base + "/api/token", json={"username": "bench", "password": password}))
        yield ServedRuntime(base, port, signed_in.json()["access_token"], process, data_dir)
    finally:
        stop_process(process)


def checked(response: httpx.Response) -> httpx.Response:
    """``response``, if it is not an error.

    Raises:
        VareonError: it is a 4xx or 5xx (method, path, status and body in the message).
    """
    if response.status_code >= 400:
        raise VareonError(f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text}")
    return response
