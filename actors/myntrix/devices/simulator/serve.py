"""The simulators from a shell: ``python -m actors.myntrix.devices.simulator marlin|scpi [...]``
serves one until interrupted and prints the connection string to give Vareon."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import trio

from .marlin import MarlinPrinter
from .scpi import ScpiInstrument
from .transport import PtySimulator, SimulatedDevice, TcpSimulator

__all__ = ["main"]


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
        async with trio.open_nursery() as nursery:
            await nursery.start(simulator.run)
            print(simulator.connection_string, flush=True)
            print(f"simulated {arguments.device} ready; Ctrl-C to stop", file=sys.stderr, flush=True)
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a simulator from the command line until interrupted."""
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
