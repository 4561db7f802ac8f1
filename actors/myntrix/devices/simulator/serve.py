"""The simulators from a shell: ``python -m actors.myntrix.devices.simulator marlin|scpi [...]``
serves one until stopped and prints the connection string to give Vareon.

Ctrl-C (SIGINT), SIGTERM (``kill``, ``kill %1`` for a job started with ``&``) and SIGHUP (the
terminal closed) all stop it the same way: the pty closed, its ``ttySIM0`` link removed (and the
temp directory made for it), then the process exits with status 0.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import trio

from .marlin import MarlinPrinter
from .scpi import ScpiInstrument
from .transport import PtySimulator, SimulatedDevice, TcpSimulator

__all__ = ["STOP_SIGNALS", "main"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""The signals that stop a simulator cleanly."""


def _parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m actors.myntrix.devices.simulator",
        description="Serve a simulated device and print the connection string to give Vareon.",
    )
    parser.add_argument("device", choices=["marlin", "scpi"], help="a Marlin printer or a SCPI instrument")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--pty", action="store_true", help="serve on a pseudo-terminal (the default)")
    where.add_argument("--tcp", type=int, metavar="PORT", help="serve on a TCP port (0 for a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on with --tcp")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to put the pty's stable symlink (default: a new temp dir)"
    )
    return parser.parse_args(argv)


async def _serve_forever(arguments: argparse.Namespace) -> None:
    device: SimulatedDevice = MarlinPrinter() if arguments.device == "marlin" else ScpiInstrument()
    simulator: PtySimulator | TcpSimulator
    made: Path | None = None  # a temp dir we create for the symlink, removed on exit
    if arguments.tcp is not None:
        simulator = TcpSimulator(device, host=arguments.host, port=arguments.tcp)
    else:
        directory: Path | None = arguments.dir
        if directory is None:
            directory = made = Path(tempfile.mkdtemp(prefix="vareon-sim-"))
        simulator = PtySimulator(device, directory)
    try:
        # Python's default for SIGTERM and SIGHUP ends the process where it stands, leaving the
        # link behind: every stop goes through the cancellation that removes it.
        with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(simulator.run)
                print(simulator.connection_string, flush=True)
                print(f"simulated {arguments.device} ready; Ctrl-C or SIGTERM to stop", file=sys.stderr, flush=True)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a simulator from the command line until one of :data:`STOP_SIGNALS`."""
    arguments = _parse_arguments(argv)
    status = 0
    try:
        trio.run(_serve_forever, arguments)
    except* KeyboardInterrupt:
        pass  # Ctrl-C is how it stops
    except* OSError as group:
        where = f"{arguments.host}:{arguments.tcp}" if arguments.tcp is not None else "a pty"
        print(f"cannot serve the simulator on {where}: {group.exceptions[0]}", file=sys.stderr)
        status = 1
    return status
