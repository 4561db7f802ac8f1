"""Acceptance test of the store: an acknowledged write survives ``kill -9`` of the process."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import trio

# Acknowledgements to collect before the kill, so the child is killed in full flow.
ACKS_BEFORE_KILL = 400

CHILD = '''
import sys

import trio
from sqlalchemy.orm import Session

from vareon_runtime.store import EventRecord, Store


def add_event(session: Session) -> int:
    event = EventRecord(source="test/durability", kind="note", message="x" * 64)
    session.add(event)
    session.flush()
    return event.id


async def writer(store: Store) -> None:
    while True:
        event_id = await store.write(add_event)
        # Printed only after write() returned, i.e. after the commit: this line is the ack.
        sys.stdout.write(f"{event_id}\\n")
        sys.stdout.flush()


async def main() -> None:
    async with trio.open_nursery() as nursery:
        store = await nursery.start(Store(sys.argv[1]).run)
        for _ in range(200):
            nursery.start_soon(writer, store)


trio.run(main)
'''


async def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    database = tmp_path / "data" / "vareon.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    stderr_path = tmp_path / "child.stderr"
    output = bytearray()

    with trio.fail_after(60):
        with stderr_path.open("wb") as stderr:
            process = await trio.lowlevel.open_process(
                [sys.executable, str(script), f"sqlite:///{database}"],
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        assert process.stdout is not None
        try:
            while output.count(b"\n") < ACKS_BEFORE_KILL:
                chunk = await process.stdout.receive_some()
                assert chunk, f"the child ended early:\n{stderr_path.read_text()}"
                output += chunk
            process.send_signal(signal.SIGKILL)
            # Whatever the child printed before it died was acknowledged too.
            while chunk := await process.stdout.receive_some():
                output += chunk
            await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()
            await process.stdout.aclose()

    assert process.returncode == -signal.SIGKILL
    # The last line may have been cut by the kill; only complete lines are acknowledgements.
    acked = [int(line) for line in bytes(output).split(b"\n")[:-1]]
    assert len(acked) >= ACKS_BEFORE_KILL
    assert len(set(acked)) == len(acked)

    # A plain sqlite3 connection, as a user's tool would open it (it replays the WAL).
    with closing(sqlite3.connect(database)) as connection:
        present = {row[0] for row in connection.execute("SELECT id FROM events")}
    missing = sorted(set(acked) - present)
    assert not missing, f"{len(missing)} acknowledged writes were lost: {missing[:20]}"
