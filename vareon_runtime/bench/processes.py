"""Processes a benchmark runs beside itself: free ports, the `vareon` command, waiting for a
server to answer, clean stops."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

from ..errors import VareonError

__all__ = ["free_port", "run_vareon", "stop_process", "wait_ready"]


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
