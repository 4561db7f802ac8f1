"""The telemetry benchmark's WebSocket subscriber against a live runtime."""

from __future__ import annotations

import time
import uuid

import pytest
import trio
from sqlalchemy.orm import Session
from web_support import DEVICES, Account, Front

from actors.myntrix.devices.bench import StreamReader
from actors.myntrix.devices.configuration import TelemetrySettings
from actors.myntrix.devices.models import DeviceRecord
from actors.myntrix.devices.telemetry import DeviceStream
from vareon_runtime.auth import Role
from vareon_runtime.clock import utcnow
from vareon_runtime.component import Component

TIMEOUT = 10


@pytest.fixture
def front_components() -> tuple[Component, ...]:
    return DEVICES


async def test_the_reader_counts_samples_and_latency(front: Front, accounts: dict[Role, Account]) -> None:
    device_id = str(uuid.uuid4())

    def write(session: Session) -> None:
        session.add(
            DeviceRecord(
                id=device_id, name="sensor", type="sensor", connection_string="tcp://127.0.0.1:1",
                status="connected", desired_state="connected", configuration={},
            )
        )

    stream = DeviceStream(device_id, TelemetrySettings.model_validate({"format": "kv"}), front.ctx.bus)
    with trio.fail_after(TIMEOUT):
        await front.ctx.store.write(write)
        # The handshake blocks: in a thread, while this loop serves it.
        reader = await trio.to_thread.run_sync(StreamReader, front.server.port, device_id, accounts[Role.VIEWER].token)
        try:
            for n in range(3):
                stream.received([f"seq={n} sent={time.monotonic():.6f} a=1 b=2 c=3"], utcnow())
                await trio.sleep(0)
            while reader.tally.samples < 15:
                await trio.sleep(0.01)
            tally = reader.phase()
        finally:
            reader.close()
    assert (tally.samples, tally.lines, tally.dropped) == (15, 3, 0)
    assert len(tally.latencies) == 3 and all(0 <= latency < TIMEOUT for latency in tally.latencies)
    assert reader.tally.samples == 0  # a fresh tally after phase()
