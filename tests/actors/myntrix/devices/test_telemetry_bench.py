"""``vareon bench telemetry``: its simulated sensor and its sqlite3 floor, measured for real."""

from __future__ import annotations

import socket
import sqlite3
from importlib.metadata import entry_points
from pathlib import Path

from actors.myntrix.devices import bench
from actors.myntrix.devices.configuration import TelemetrySettings
from actors.myntrix.devices.telemetry import TelemetryParser


def test_the_benchmark_is_installed_as_telemetry() -> None:
    (point,) = [p for p in entry_points(group="vareon.benchmarks") if p.name == "telemetry"]
    assert point.load() is bench.main


def _read_lines(conn: socket.socket, count: int) -> list[str]:
    data = b""
    while data.count(b"\n") < count:
        chunk = conn.recv(65536)
        assert chunk, "the sensor closed early"
        data += chunk
    return data.decode().splitlines()


def test_the_sensor_streams_kv_lines_the_parser_reads() -> None:
    sensor = bench.SimulatedSensor()
    try:
        with socket.create_connection(("127.0.0.1", sensor.port), timeout=10) as conn:
            sensor.wait_connected(10)
            paced = sensor.stream(0.1, lines_per_s=2000)
            flooded = sensor.stream(0.05)
            lines = _read_lines(conn, paced + flooded)
    finally:
        sensor.close()
    assert paced > 0 and flooded > 0 and len(lines) == paced + flooded
    parser = TelemetryParser(TelemetrySettings.model_validate({"format": "kv"}))
    samples = [parser.parse(line) for line in lines]
    assert all(len(sample) == bench.SAMPLES_PER_LINE for sample in samples)
    assert [sample["seq"] for sample in samples] == list(range(len(lines)))
    assert all(later["sent"] >= earlier["sent"] for earlier, later in zip(samples, samples[1:]))


def test_raw_sqlite_floor_inserts_the_rows(tmp_path: Path) -> None:
    rate = bench.raw_sqlite_rows_per_s(tmp_path / "raw.db", 1000)
    assert rate > 0
    with sqlite3.connect(tmp_path / "raw.db") as db:
        assert db.execute("SELECT count(*), count(DISTINCT metric_name) FROM telemetry").fetchone() == (1000, 5)
