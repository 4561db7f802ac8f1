"""The simulated SCPI instrument over a real TCP listener: queries, silence, unplug/replug."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from simulator_support import TIMEOUT, DeviceClosed, LineClient

from actors.myntrix.devices.simulator import SCPI_IDENTITY, ScpiInstrument, TcpSimulator


@pytest.fixture
def instrument() -> ScpiInstrument:
    return ScpiInstrument(voltage=5.0)


@pytest.fixture
async def simulator(nursery: trio.Nursery, instrument: ScpiInstrument) -> TcpSimulator:
    simulator = TcpSimulator(instrument)
    await nursery.start(simulator.run)
    return simulator


@pytest.fixture
async def client(simulator: TcpSimulator) -> AsyncIterator[LineClient]:
    client = await LineClient.open_tcp(simulator.port)
    yield client
    await client.aclose()


async def test_port_zero_becomes_a_real_port(simulator: TcpSimulator) -> None:
    assert simulator.port > 0
    assert simulator.connection_string == f"tcp://127.0.0.1:{simulator.port}"


async def test_queries_get_one_line_and_no_ok(client: LineClient, instrument: ScpiInstrument) -> None:
    with trio.fail_after(TIMEOUT):
        assert await client.ask("*IDN?") == [SCPI_IDENTITY]
        voltage = float((await client.ask("MEAS:VOLT?"))[0])
        assert voltage == pytest.approx(5.0, abs=0.01)
        assert float((await client.ask("measure:voltage:dc?"))[0]) == pytest.approx(5.0, abs=0.01)
        assert float((await client.ask("MEAS:CURR?"))[0]) == pytest.approx(0.5, abs=0.01)
        assert await client.ask("*OPC?") == ["1"]
    assert instrument.received == ["*IDN?", "MEAS:VOLT?", "measure:voltage:dc?", "MEAS:CURR?", "*OPC?"]


async def test_an_unknown_command_gets_silence_and_an_error_in_the_queue(client: LineClient) -> None:
    await client.send_line("FROB:NICATE 3")
    with trio.move_on_after(0.3) as waited:
        await client.receive_line()
    assert waited.cancelled_caught
    with trio.fail_after(TIMEOUT):
        assert await client.ask("SYST:ERR?") == ['-113,"Undefined header"']
        assert await client.ask("SYSTem:ERRor?") == ['0,"No error"']
        # *RST answers nothing; the next query's answer is the next line.
        await client.send_line("*RST")
        assert await client.ask("*IDN?") == [SCPI_IDENTITY]


async def test_several_clients_talk_to_the_same_instrument(simulator: TcpSimulator, instrument: ScpiInstrument) -> None:
    with trio.fail_after(TIMEOUT):
        first = await LineClient.open_tcp(simulator.port)
        second = await LineClient.open_tcp(simulator.port)
        try:
            assert await first.ask("*IDN?") == [SCPI_IDENTITY]
            assert await second.ask("*IDN?") == [SCPI_IDENTITY]
            assert await simulator.emit("VOLT 5.0") == 2
            assert await first.receive_line() == "VOLT 5.0"
            assert await second.receive_line() == "VOLT 5.0"
        finally:
            await first.aclose()
            await second.aclose()
    assert instrument.received == ["*IDN?", "*IDN?"]


async def test_unplug_drops_the_connection_and_replug_listens_on_the_same_port(
    simulator: TcpSimulator, client: LineClient
) -> None:
    port = simulator.port
    with trio.fail_after(TIMEOUT):
        assert await client.ask("*IDN?") == [SCPI_IDENTITY]
        await simulator.unplug()
        with pytest.raises((DeviceClosed, trio.BrokenResourceError)):
            await client.receive_line()
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", port)
        assert await simulator.emit("lost") == 0

        await simulator.replug()
        assert simulator.port == port
        again = await LineClient.open_tcp(port)
        try:
            assert await again.ask("*IDN?") == [SCPI_IDENTITY]
        finally:
            await again.aclose()


async def test_the_command_line_prints_a_tcp_connection_string(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "actors.myntrix.devices.simulator", "scpi", "--tcp", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[4],
    )
    try:
        with trio.fail_after(TIMEOUT):
            assert process.stdout is not None
            line = (await trio.to_thread.run_sync(process.stdout.readline)).strip()
            assert line.startswith("tcp://127.0.0.1:")
            client = await LineClient.open_tcp(int(line.rsplit(":", 1)[1]))
            try:
                assert await client.ask("*IDN?") == [SCPI_IDENTITY]
            finally:
                await client.aclose()
    finally:
        process.terminate()
        process.communicate(timeout=TIMEOUT)


async def test_the_command_line_says_when_the_port_is_taken(simulator: TcpSimulator) -> None:
    with trio.fail_after(TIMEOUT):
        result = await trio.run_process(
            [sys.executable, "-m", "actors.myntrix.devices.simulator", "scpi", "--tcp", str(simulator.port)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=Path(__file__).resolve().parents[4],
        )
    assert result.returncode == 1
    assert f"cannot serve the simulator on 127.0.0.1:{simulator.port}" in result.stderr.decode()
