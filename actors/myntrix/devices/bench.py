"""``vareon bench telemetry``: device lines to WebSocket and database, end to end, beside sqlite3.

A real runtime (``vareon run`` on a fresh data directory, driven over HTTP) reads a simulated
device that lives in this process: a TCP listener (:class:`SimulatedSensor`) the device is
created against as ``tcp://127.0.0.1:<port>``. Each line it writes is one ``kv`` record of
:data:`SAMPLES_PER_LINE` samples::

    seq=1234 sent=81234.567890 a=1.5 b=2.5 c=3.5

``sent`` is ``time.monotonic()`` when the line was handed to the socket (system-wide on Linux, so
the subscriber in this process can subtract it from its own clock). A WebSocket subscriber on
``/ws/myntrix/telemetry/{id}`` (:class:`StreamReader`, a plain wsproto client in a thread) counts
the samples that reach it and the device-to-WebSocket latency of each line.

The phases:

1. **flood**: the sensor writes as fast as the link takes the lines (TCP back-pressure paces it).
   Samples/s at the WebSocket, and rows that land in the ``telemetry`` table while the event
   loop is saturated (the recorder sheds the oldest samples past its memory cap, and counts them).
2. **paced**: the sensor writes at :data:`TARGET_SAMPLES_PER_S` in 10 ms chunks, then (full mode)
   at 2, 3, 4 and 6 times that, until a rate loses a sample (at the WebSocket or in the database)
   or misses the p95 target. The highest rate that kept everything is the sustained end-to-end
   figure; latency is from the sensor's write to the subscriber's read.

Beside them, as many rows as the flood landed are inserted with raw ``sqlite3`` ``executemany``
(one transaction, same columns and indexes, WAL) into a file in the same run: the floor the
recorder's database path is compared with. Targets are printed, not asserted.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from vareon_runtime.bench import Report, percentile
from vareon_runtime.bench.processes import checked, served_runtime
from vareon_runtime.errors import VareonError

__all__ = [
    "SAMPLES_PER_LINE",
    "TARGET_SAMPLES_PER_S",
    "Phase",
    "SimulatedSensor",
    "StreamReader",
    "main",
    "raw_sqlite_rows_per_s",
]

SAMPLES_PER_LINE = 5
TARGET_SAMPLES_PER_S = 20_000
TARGET_P95_MS = 50.0
_CHUNK_LINES = 256
_PACE = 0.01  # seconds between two chunks in the paced phase


class SimulatedSensor:
    """A TCP device that streams ``kv`` lines to whoever connects (the runtime's device link).

    It serves one connection at a time; what the runtime writes to it is read and ignored.
    Call :meth:`stream` from the bench's thread to write lines, flooding or at a rate.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._connected = threading.Event()
        self._conn: socket.socket | None = None
        self.seq = 0
        threading.Thread(target=self._accept, name="sensor-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conn = conn
            self._connected.set()
            threading.Thread(target=self._discard, args=(conn,), name="sensor-read", daemon=True).start()

    @staticmethod
    def _discard(conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass

    def wait_connected(self, timeout: float) -> None:
        if not self._connected.wait(timeout):
            raise VareonError(f"the runtime did not connect to the simulated sensor within {timeout:g}s")

    def _chunk(self, lines: int) -> bytes:
        sent = time.monotonic()
        start = self.seq
        self.seq += lines
        return "".join(
            f"seq={n} sent={sent:.6f} a={n % 100 * 0.5} b={n % 7 * 1.25} c=-{n % 13}\n" for n in range(start, start + lines)
        ).encode()

    def stream(self, seconds: float, *, lines_per_s: float | None = None) -> int:
        """Write lines for ``seconds``: as fast as the link takes them, or ``lines_per_s``.

        Returns:
            The lines written.
        """
        conn = self._conn
        if conn is None:
            raise VareonError("the simulated sensor has no connection to write to")
        first = self.seq
        start = time.monotonic()
        end = start + seconds
        if lines_per_s is None:
            while time.monotonic() < end:
                conn.sendall(self._chunk(_CHUNK_LINES))
        else:
            ticks = 0
            while True:
                ticks += 1
                due = start + ticks * _PACE
                if due > end:
                    break
                target = int((due - start) * lines_per_s)
                lines = first + target - self.seq
                if lines > 0:
                    conn.sendall(self._chunk(lines))
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
        return self.seq - first

    def close(self) -> None:
        self._listener.close()
        if self._conn is not None:
            self._conn.close()


@dataclass
class _Tally:
    samples: int = 0
    lines: int = 0
    dropped: int = 0
    first_at: float | None = None
    last_at: float = 0.0
    latencies: list[float] = field(default_factory=list)


class StreamReader:
    """A WebSocket subscriber of one device's telemetry, in a thread (wsproto over a socket).

    :meth:`phase` starts a new tally; the reader adds every sample it receives to the current one.
    """

    def __init__(self, port: int, device_id: str, token: str) -> None:
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import Request

        self._sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self._ws = WSConnection(ConnectionType.CLIENT)
        path = f"/ws/myntrix/telemetry/{device_id}?token={token}"
        self._sock.sendall(self._ws.send(Request(host=f"127.0.0.1:{port}", target=path)))
        self._messages = self._read()
        for expected in ("auth_required", "auth_ok", "ready"):
            message = json.loads(next(self._messages))
            if message.get("type") != expected:
                raise VareonError(f"the telemetry stream answered {message!r}, expected {expected}")
        self._sock.settimeout(None)
        self.tally = _Tally()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="stream-reader", daemon=True)
        self._thread.start()

    def _read(self) -> Iterator[str]:
        from wsproto.events import AcceptConnection, CloseConnection, Ping, TextMessage

        parts: list[str] = []
        while True:
            data = self._sock.recv(1 << 20)
            self._ws.receive_data(data or None)
            for event in self._ws.events():
                if isinstance(event, TextMessage):
                    parts.append(event.data)
                    if event.message_finished:
                        yield "".join(parts)
                        parts = []
                elif isinstance(event, Ping):
                    self._sock.sendall(self._ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    return
                elif not isinstance(event, AcceptConnection):
                    continue
            if not data:
                return

    def _run(self) -> None:
        try:
            for text in self._messages:
                now = time.monotonic()
                frame = json.loads(text)
                kind = frame.get("type")
                with self._lock:
                    tally = self.tally
                    if kind == "dropped":
                        tally.dropped += frame["count"]
                        continue
                    if kind != "telemetry":
                        continue
                    if tally.first_at is None:
                        tally.first_at = now
                    tally.last_at = now
                    for event in frame["events"]:
                        samples = event.get("samples", ())
                        tally.samples += len(samples)
                        tally.lines += len(event.get("lines", ()))
                        for sample in samples:
                            if sample["metric"] == "sent":
                                tally.latencies.append(now - sample["value"])
        except OSError:
            return

    def phase(self) -> _Tally:
        """End the current tally (returned) and start a fresh one."""
        with self._lock:
            done, self.tally = self.tally, _Tally()
        return done

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()


def _schema(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE telemetry (id INTEGER PRIMARY KEY, timestamp DATETIME NOT NULL, source VARCHAR(32) NOT NULL,"
        " device_id VARCHAR(36), metric_name VARCHAR(255) NOT NULL, value FLOAT NOT NULL)"
    )
    db.execute("CREATE INDEX ix_a ON telemetry (device_id, metric_name, timestamp)")
    db.execute("CREATE INDEX ix_b ON telemetry (timestamp)")


def raw_sqlite_rows_per_s(path: Path, rows: int) -> float:
    """Insert ``rows`` telemetry-shaped rows with raw sqlite3 executemany (WAL, one commit); rows/s."""
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        _schema(db)
        db.commit()
        device = "00000000-0000-0000-0000-000000000000"
        names = ("seq", "sent", "a", "b", "c")
        start = time.perf_counter()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S.000000")
        db.executemany(
            "INSERT INTO telemetry (timestamp, source, device_id, metric_name, value) VALUES (?, ?, ?, ?, ?)",
            ((stamp, "device", device, names[n % 5], float(n)) for n in range(rows)),
        )
        db.commit()
        return rows / (time.perf_counter() - start)
    finally:
        db.close()


def _count_rows(database: Path, device_id: str) -> int:
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        return int(db.execute("SELECT count(*) FROM telemetry WHERE device_id = ?", (device_id,)).fetchone()[0])
    finally:
        db.close()


def _settled_rows(database: Path, device_id: str, expected: int, timeout: float = 60.0) -> tuple[int, float]:
    """Wait until the row count reaches ``expected`` or stops growing for 2 s.

    Returns:
        The count, and the ``time.monotonic()`` of its last change.
    """
    deadline = time.monotonic() + timeout
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        rows = _count_rows(database, device_id)
        now = time.monotonic()
        if rows != last:
            last, last_change = rows, now
        if rows >= expected or now - last_change > 2.0:
            break
        time.sleep(0.05)
    return last, last_change


def _wait_status(http: httpx.Client, device_id: str, status: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    current = None
    while time.monotonic() < deadline:
        current = checked(http.get(f"/api/myntrix/devices/{device_id}")).json()["status"]
        if current == status:
            return
        time.sleep(0.05)
    raise VareonError(f"the device is {current!r}, not {status!r}, after {timeout:g}s")


@dataclass
class Phase:
    """What one phase measured."""

    name: str
    rate: float | None  # samples/s the sensor was asked for; None when flooding
    seconds: float
    sent: int  # samples the sensor wrote
    tally: _Tally
    rows: int  # rows of this phase that landed in the database
    rows_seconds: float  # from the phase's start to the last row landing
    started: float  # time.monotonic() at the phase's start

    @property
    def ws_per_s(self) -> float:
        """Samples/s that reached the WebSocket over the phase (to its last frame)."""
        return self.tally.samples / max(self.tally.last_at - self.started, self.seconds, 1e-9)

    def latency_ms(self, q: float) -> float:
        return percentile(self.tally.latencies, q) * 1000 if self.tally.latencies else float("inf")

    @property
    def kept_everything(self) -> bool:
        return self.tally.samples == self.sent and self.rows == self.sent


class _Bench:
    """The runtime, the sensor and the subscriber of one run."""

    def __init__(self, database: Path, sensor: SimulatedSensor, reader: StreamReader, device_id: str) -> None:
        self.database = database
        self.sensor = sensor
        self.reader = reader
        self.device_id = device_id

    def run(self, name: str, seconds: float, rate: float | None) -> Phase:
        rows_before = _count_rows(self.database, self.device_id)
        self.reader.phase()
        started = time.monotonic()
        lines = self.sensor.stream(seconds, lines_per_s=None if rate is None else rate / SAMPLES_PER_LINE)
        sent = lines * SAMPLES_PER_LINE
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tally = self.reader.tally
            if tally.samples + tally.dropped * SAMPLES_PER_LINE >= sent:
                break
            time.sleep(0.02)
        tally = self.reader.phase()
        rows, landed_at = _settled_rows(self.database, self.device_id, rows_before + sent)
        phase = Phase(name, rate, seconds, sent, tally, rows - rows_before, landed_at - started, started)
        time.sleep(0.5)  # let the recorder and the socket settle before the next phase
        return phase


def _runtime(tmp: Path, seconds: float, rates: list[float]) -> list[Phase]:
    """Run the runtime and the phases: a flood, then the paced ``rates`` until one loses samples
    or misses the latency target."""
    sensor = SimulatedSensor()
    reader: StreamReader | None = None
    phases: list[Phase] = []
    try:
        with served_runtime(tmp, role="admin") as runtime, runtime.client() as http:
            body = {
                "name": "bench sensor",
                "type": "sensor",
                "connectionString": f"tcp://127.0.0.1:{sensor.port}",
                "configuration": {"telemetry": {"format": "kv"}, "replyTerminator": None},
            }
            device_id = str(checked(http.post("/api/myntrix/devices", json=body)).json()["id"])
            checked(http.post(f"/api/myntrix/devices/{device_id}/connect"))
            sensor.wait_connected(30.0)
            _wait_status(http, device_id, "connected", 30.0)
            reader = StreamReader(runtime.port, device_id, runtime.token)
            bench = _Bench(runtime.data_dir / "vareon.db", sensor, reader, device_id)
            phases.append(bench.run("flood", seconds, None))
            for index, rate in enumerate(rates):
                phase = bench.run(f"paced {rate:,.0f}/s", seconds if index == 0 else seconds / 2, rate)
                phases.append(phase)
                if not phase.kept_everything or phase.latency_ms(0.95) > TARGET_P95_MS:
                    break
            checked(http.post(f"/api/myntrix/devices/{device_id}/disconnect"))
    finally:
        if reader is not None:
            reader.close()
        sensor.close()
    return phases


def main(*, output_dir: Path, quick: bool = False) -> int:
    """Run the telemetry benchmark, print it, write ``telemetry.json``; returns 0."""
    seconds = 3.0 if quick else 10.0
    rates = [TARGET_SAMPLES_PER_S] if quick else [TARGET_SAMPLES_PER_S * k for k in (1, 2, 3, 4, 6)]
    report = Report("telemetry")
    print(
        f"vareon bench telemetry ({seconds:g} s flooding, then paced at {', '.join(f'{r:,}' for r in rates)} samples/s"
        f" until one loses samples or misses p95 {TARGET_P95_MS:g} ms; {SAMPLES_PER_LINE} samples a line)",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="vareon-bench-telemetry-") as name:
        tmp = Path(name)
        phases = _runtime(tmp, seconds, rates)
        flood = phases[0]
        raw = raw_sqlite_rows_per_s(tmp / "raw.db", max(flood.rows, 1000))

    flood_db = flood.rows / max(flood.rows_seconds, 1e-9)
    report.figure("flood_sent", flood.sent, "samples", "flood: samples the sensor wrote (as fast as the link took them)")
    report.figure("flood_ws_samples_per_s", flood.ws_per_s, "samples/s", "flood: samples/s reaching the WebSocket")
    report.figure("flood_ws_dropped_events", flood.tally.dropped, "events", "flood: events the WebSocket stream dropped")
    report.figure("flood_latency_p95_ms", flood.latency_ms(0.95), "ms", "flood: device-to-WebSocket p95 (queues full)")
    report.figure("flood_db_rows", flood.rows, "rows", "flood: rows landed in the database (the recorder sheds the oldest past its cap)")
    report.figure("flood_db_rows_per_s", flood_db, "rows/s", "flood: rows/s into the database, event loop saturated")
    report.figure("raw_sqlite_rows_per_s", raw, "rows/s", "raw sqlite3 executemany of as many rows, same run")
    report.figure("flood_db_vs_raw_sqlite", flood_db / raw, "x", "flood: database rows/s of the runtime / raw sqlite3")
    sustained = 0.0
    for phase in phases[1:]:
        key = f"paced_{int(phase.rate or 0)}"
        report.figure(f"{key}_ws_samples_per_s", phase.ws_per_s, "samples/s", f"{phase.name}: samples/s at the WebSocket")
        report.figure(f"{key}_db_rows", phase.rows, "rows", f"{phase.name}: rows landed of {phase.sent:,} sent")
        report.figure(f"{key}_latency_p50_ms", phase.latency_ms(0.5), "ms", f"{phase.name}: device-to-WebSocket p50")
        report.figure(f"{key}_latency_p95_ms", phase.latency_ms(0.95), "ms", f"{phase.name}: device-to-WebSocket p95")
        if phase.kept_everything and phase.latency_ms(0.95) <= TARGET_P95_MS and phase.rate is not None:
            sustained = max(sustained, phase.rate)
    report.figure("sustained_samples_per_s", sustained, "samples/s", "highest paced rate with every sample at the WebSocket and in the database, p95 within target")
    report.figure("sustained_vs_raw_sqlite", sustained / raw, "x", "sustained rows/s into the database / raw sqlite3 executemany")
    report.goal(
        "sustained samples/s end to end (WebSocket and database)", sustained, ">=", TARGET_SAMPLES_PER_S,
        "every sample delivered and recorded",
    )
    target = phases[1]
    report.goal(
        f"p95 latency at {TARGET_SAMPLES_PER_S:,} samples/s, ms", target.latency_ms(0.95), "<=", TARGET_P95_MS,
        f"p50 {target.latency_ms(0.5):.1f} ms",
    )
    report.write(output_dir)
    return 0
