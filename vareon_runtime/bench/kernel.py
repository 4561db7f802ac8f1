"""``vareon bench kernel``: actor messaging, restarts and durable writes beside their raw limits.

Every figure is measured in the same run as the limit it is compared with:

- ``tell`` throughput vs a raw trio memory channel with the same buffer;
- ``ask`` round trip vs a raw request/reply pair of channels;
- crash-to-restarted latency of a supervised actor (the exception to the next incarnation ready);
- acknowledged durable writes/s from 200 concurrent writers through the group-commit store vs raw
  ``sqlite3`` one-insert-one-commit and raw ``executemany`` in one transaction, same pragmas.
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import trio
from sqlalchemy.orm import Session

from ..actor import Actor, handles
from ..config import DatabaseConfig
from ..logs import configure_logging
from ..messages import Message
from ..store import EventRecord
from ..store import Store
from ..supervisor import ChildSpec, Supervisor
from .report import Report, percentile

__all__ = ["main"]

MAILBOX = 128


class Tick(Message):
    pass


class Count(Message):
    pass


class Crash(Message):
    pass


class Sink(Actor):
    mailbox_size = MAILBOX

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    @handles(Tick)
    async def tick(self, msg: Tick) -> int:
        self.count += 1
        return self.count

    @handles(Count)
    async def total(self, msg: Count) -> int:
        return self.count


class Crasher(Actor):
    crashed_at: float = 0.0
    restarts: list[float] = []

    async def on_start(self) -> None:
        if Crasher.crashed_at:
            Crasher.restarts.append(time.perf_counter() - Crasher.crashed_at)

    @handles(Crash)
    async def crash(self, msg: Crash) -> None:
        Crasher.crashed_at = time.perf_counter()
        raise RuntimeError("crash on purpose")

    @handles(Tick)
    async def tick(self, msg: Tick) -> None:
        return None


async def _tell_rate(n: int) -> float:
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(Sink().run)
        msg = Tick()
        began = time.perf_counter()
        for _ in range(n):
            await ref.tell(msg)
        total = await ref.ask(Count(), timeout=60)
        elapsed = time.perf_counter() - began
        assert total == n
        nursery.cancel_scope.cancel()
    return n / elapsed


async def _raw_channel_rate(n: int) -> float:
    send, receive = trio.open_memory_channel[Tick](MAILBOX)
    msg = Tick()
    received = 0

    async def consume() -> None:
        nonlocal received
        async for _ in receive:
            received += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        began = time.perf_counter()
        async with send:
            for _ in range(n):
                await send.send(msg)
    elapsed = time.perf_counter() - began
    assert received == n
    return n / elapsed


async def _ask_round_trip(n: int) -> float:
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(Sink().run)
        msg = Tick()
        began = time.perf_counter()
        for _ in range(n):
            await ref.ask(msg, timeout=10)
        elapsed = time.perf_counter() - began
        nursery.cancel_scope.cancel()
    return elapsed / n


async def _raw_round_trip(n: int) -> float:
    request_send, request_receive = trio.open_memory_channel[Tick](MAILBOX)
    reply_send, reply_receive = trio.open_memory_channel[int](1)
    msg = Tick()

    async def serve() -> None:
        count = 0
        async for _ in request_receive:
            count += 1
            await reply_send.send(count)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        began = time.perf_counter()
        for _ in range(n):
            await request_send.send(msg)
            await reply_receive.receive()
        elapsed = time.perf_counter() - began
        nursery.cancel_scope.cancel()
    return elapsed / n


async def _restart_latencies(n: int) -> tuple[list[float], list[float]]:
    Crasher.crashed_at = 0.0
    Crasher.restarts = []
    end_to_end: list[float] = []
    # period=0: every crash is a "first" restart, which is immediate; later ones back off.
    sup = Supervisor("bench", [ChildSpec("crasher", Crasher, period=0)], max_restarts=None)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        ref = sup.ref("crasher")
        for _ in range(n):
            await ref.tell(Crash())
            await ref.ask(Tick(), timeout=10)  # answered by the next incarnation
            end_to_end.append(time.perf_counter() - Crasher.crashed_at)
        await sup.stop()
    return Crasher.restarts, end_to_end


async def _store_rate(url: str, writers: int, per_writer: int) -> tuple[float, dict[str, int]]:
    store = Store(url, sqlite_synchronous=DatabaseConfig().sqlite_synchronous)

    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)

        def insert(session: Session) -> None:
            session.add(EventRecord(source="bench", kind="write", message="x"))

        async def writer() -> None:
            for _ in range(per_writer):
                await store.write(insert)

        began = time.perf_counter()
        async with trio.open_nursery() as writers_nursery:
            for _ in range(writers):
                writers_nursery.start_soon(writer)
        elapsed = time.perf_counter() - began
        stats = dict(store.stats)
        await store.close()
    return writers * per_writer / elapsed, stats


def _raw_sqlite(path: Path, n: int, *, one_transaction: bool) -> float:
    synchronous = DatabaseConfig().sqlite_synchronous.upper()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, time TEXT, source TEXT, kind TEXT, message TEXT, details TEXT)"
    )
    sql = "INSERT INTO events (time, source, kind, message) VALUES (?, ?, ?, ?)"
    row = ("2026-01-01T00:00:00Z", "bench", "write", "x")
    began = time.perf_counter()
    if one_transaction:
        conn.execute("BEGIN")
        conn.executemany(sql, [row] * n)
        conn.execute("COMMIT")
    else:
        for _ in range(n):
            conn.execute("BEGIN")
            conn.execute(sql, row)
            conn.execute("COMMIT")
    elapsed = time.perf_counter() - began
    conn.close()
    return n / elapsed


async def _run(report: Report, quick: bool, workdir: Path) -> None:
    scale = 10 if quick else 1
    rounds = 3

    print("messaging (best of 3 rounds, interleaved):", flush=True)
    n_tell = 200_000 // scale
    tell = raw = 0.0
    for _ in range(rounds):
        raw = max(raw, await _raw_channel_rate(n_tell))
        tell = max(tell, await _tell_rate(n_tell))
    report.figure("raw_channel_msgs_per_s", raw, "msg/s", "raw trio memory channel")
    report.figure("tell_msgs_per_s", tell, "msg/s", "ActorRef.tell to a handler")
    report.goal("tell throughput vs raw channel", tell / raw, ">=", 0.5, f"{tell:,.0f} vs {raw:,.0f} msg/s")

    n_ask = 50_000 // scale
    ask = raw_rt = float("inf")
    for _ in range(rounds):
        raw_rt = min(raw_rt, await _raw_round_trip(n_ask))
        ask = min(ask, await _ask_round_trip(n_ask))
    report.figure("raw_round_trip_us", raw_rt * 1e6, "us", "raw channel request/reply round trip")
    report.figure("ask_round_trip_us", ask * 1e6, "us", "ActorRef.ask round trip")
    report.goal("ask round trip vs raw", ask / raw_rt, "<=", 3.0, f"{ask * 1e6:.1f} vs {raw_rt * 1e6:.1f} us")

    print("supervision:", flush=True)
    restarts, end_to_end = await _restart_latencies(2000 // scale)
    med = statistics.median(restarts)
    report.figure("restart_median_us", med * 1e6, "us", f"crash to restarted, median of {len(restarts)}")
    report.figure("restart_p95_us", percentile(restarts, 0.95) * 1e6, "us", "crash to restarted, p95")
    report.figure(
        "crash_to_next_answer_median_us", statistics.median(end_to_end) * 1e6, "us",
        "crash to the next ask answered by the new incarnation, median",
    )
    report.goal("restart of a crashed actor, median (ms)", med * 1e3, "<=", 1.0, f"{med * 1e6:.0f} us")

    print("store (SQLite, WAL, synchronous=" + DatabaseConfig().sqlite_synchronous + "):", flush=True)
    writers, per_writer = 200, 100 // scale
    rate, stats = await _store_rate(f"sqlite:///{workdir / 'store.db'}", writers, per_writer)
    one_commit = await trio.to_thread.run_sync(
        lambda: _raw_sqlite(workdir / "raw1.db", 2000 // scale, one_transaction=False)
    )
    batch = await trio.to_thread.run_sync(
        lambda: _raw_sqlite(workdir / "raw2.db", writers * per_writer, one_transaction=True)
    )
    report.figure("store_acked_writes_per_s", rate, "writes/s", f"Store.write acknowledged after commit, {writers} writers")
    report.figure("store_writes_per_batch", stats["committed"] / max(stats["batches"], 1), "writes", "mean writes per group commit")
    report.figure("raw_one_commit_per_insert_per_s", one_commit, "writes/s", "raw sqlite3, one insert one commit")
    report.figure("raw_executemany_per_s", batch, "rows/s", "raw sqlite3 executemany, one transaction (ceiling)")
    report.goal("durable writes vs raw one-commit-per-insert", rate / one_commit, ">=", 1.0, f"{rate:,.0f} vs {one_commit:,.0f} writes/s")
    report.figure("store_vs_executemany", rate / batch, "ratio", "store vs the executemany ceiling")


def main(*, output_dir: Path, quick: bool = False) -> int:
    """Run the kernel benchmark, print it, write ``kernel.json``; returns 0."""
    report = Report("kernel")
    print("vareon bench kernel" + (" (quick)" if quick else ""), flush=True)
    with tempfile.TemporaryDirectory(prefix="vareon-bench-") as tmp:
        # Crash tracebacks are logged for real, to a file as a deployment would, not to the screen.
        configure_logging("info", "plain", stream=open(Path(tmp) / "bench.log", "w"))  # noqa: SIM115
        trio.run(_run, report, quick, Path(tmp))
    report.write(output_dir)
    return 0
