"""The simulator stops at once and takes its ``ttySIM0`` link along: from a shell (Ctrl-C,
``kill``, a closed terminal) and inside a test (its task cancelled, a client holding the pty)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from actors.myntrix.devices.simulator import MarlinPrinter, PtySimulator
from actors.myntrix.devices.simulator.serve import STOP_SIGNALS

START_TIMEOUT = 30  # the first start imports the devices package: slow on a busy box
STOP_TIMEOUT = 5  # a stop waits on nothing; this only bounds a hang


async def _first_line(stream: trio.abc.ReceiveStream) -> str:
    data = b""
    while b"\n" not in data:
        chunk = await stream.receive_some(4096)
        assert chunk, f"the simulator ended before printing its path: {data!r}"
        data += chunk
    return data.split(b"\n", 1)[0].decode()


@pytest.mark.parametrize("stop", STOP_SIGNALS, ids=lambda s: signal.Signals(s).name)
async def test_a_signal_stops_the_command_and_removes_the_link(tmp_path: Path, stop: int) -> None:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "actors.myntrix.devices.simulator", "marlin", "--dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        # A shell's background job ignores SIGINT; this one must not, to be stopped by it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert process.stdout is not None
        with trio.fail_after(START_TIMEOUT):
            path = Path(await _first_line(process.stdout))
        assert path == tmp_path / "ttySIM0" and path.is_symlink()
        target = os.readlink(path)
        process.send_signal(stop)
        with trio.fail_after(STOP_TIMEOUT):
            status = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert status == 0
    assert not path.is_symlink() and not path.exists()
    assert os.listdir(tmp_path) == []
    assert target.startswith("/dev/")  # the pty it pointed at is gone with the process


async def test_a_cancelled_simulator_removes_its_link_while_a_client_holds_the_pty(tmp_path: Path) -> None:
    simulator = PtySimulator(MarlinPrinter(), tmp_path)
    with trio.fail_after(STOP_TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(simulator.run)
            assert simulator.path.is_symlink()
            client = os.open(simulator.path, os.O_RDWR | os.O_NOCTTY)  # a device's open port
            try:
                os.write(client, b"M155 S1\n")  # reporting: a task of the session is busy
                nursery.cancel_scope.cancel()
            finally:
                os.close(client)
    assert not simulator.path.is_symlink()
    assert not simulator.plugged


async def test_unplug_removes_the_link_and_replug_restores_it(tmp_path: Path) -> None:
    simulator = PtySimulator(MarlinPrinter(), tmp_path)
    with trio.fail_after(STOP_TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(simulator.run)
            await simulator.unplug()
            assert not simulator.path.is_symlink()
            await simulator.replug()
            assert simulator.path.is_symlink()
            nursery.cancel_scope.cancel()
    assert not simulator.path.is_symlink()
