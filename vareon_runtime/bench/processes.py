"""Processes a benchmark runs beside itself: free ports, the `vareon` command, clean stops."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

from ..errors import VareonError

__all__ = ["free_port", "run_vareon", "stop_process"]


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


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """SIGTERM ``proc`` and wait up to ``timeout`` seconds, then SIGKILL it."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
