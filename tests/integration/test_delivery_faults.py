"""Zero loss under faults, against real servers: InfluxDB down for 60 s, the pipeline SIGKILLed,
and the delivery log full during an outage (backpressure, issue 10).

A test publisher sends QoS 1 MQTT messages with known values and times; ``econome run``
(a real process) collects them. Afterwards InfluxDB must hold every reading exactly once:
counts and sums per point equal the source's, and the windowed consumption of the
counter adds up to the true consumption.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from econome.localservers import LocalServer, restart, start_influxdb

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
STEP = timedelta(seconds=10)


def _config(tmp: Path, mqtt_port: int, prefix: str) -> Path:
    path = tmp / "commune.yaml"
    path.write_text(
        f"""
organisation: {{name: Test, population: 100, school_holiday_zone: C}}
mqtt_brokers: [{{host: 127.0.0.1, port: {mqtt_port}, client_id: {prefix}-econome}}]
sites:
  - id: s
    name: S
    buildings:
      - id: b
        name: B
        usage: offices
        floor_area_m2: 100
        heated_area_m2: 100
        points:
          - {{id: energy, quantity: active_energy, unit: kWh, usage: general, cumulative: true, energy: electricity,
              mqtt: {{topic: {prefix}/meter, format: json, field: energy, timestamp_field: time}}}}
          - {{id: temp, quantity: temperature, unit: degC, usage: comfort,
              mqtt: {{topic: {prefix}/meter, format: json, field: temp, timestamp_field: time}}}}
          - {{id: probe, quantity: temperature, unit: degC, usage: comfort,
              mqtt: {{topic: {prefix}/probe, format: json, field: t, timestamp_field: time}}}}
""",
        encoding="utf-8",
    )
    return path


@dataclass
class Publisher:
    """Publishes message i with energy 1000 + 0.5 i kWh and temperature 20 + (i % 10) / 10 °C at T0 + i·STEP."""

    port: int
    topic: str
    count: int
    rate: float
    sent: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    @staticmethod
    def energy(i: int) -> float:
        return 1000.0 + 0.5 * i

    @staticmethod
    def temp(i: int) -> float:
        return 20.0 + (i % 10) / 10

    def run(self) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="")
        client.max_queued_messages_set(0)
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        try:
            start = time.monotonic()
            for i in range(self.count):
                ts = (T0 + i * STEP).isoformat()
                payload = json.dumps({"energy": self.energy(i), "temp": self.temp(i), "time": ts})
                client.publish(self.topic, payload, qos=1).wait_for_publish(10)
                self.sent = i + 1
                delay = start + (i + 1) / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        finally:
            client.disconnect()
            client.loop_stop()
            self.done.set()


def _run(
    config: Path, influx_url: str, database: str, data_dir: Path, extra: dict[str, str] | None = None,
    command: str = "run",
) -> subprocess.Popen[bytes]:
    env = {
        **(extra or {}),
        **os.environ,
        "ECONOME_INFLUX_URL": influx_url,
        "ECONOME_INFLUX_DATABASE": database,
        "ECONOME_DATA_DIR": str(data_dir),
        "ECONOME_FLUSH_INTERVAL_S": "0.2",
        "ECONOME_LATENESS_S": "60",
        "ECONOME_LOG_LEVEL": "WARNING",
    }
    log = data_dir.parent / f"run-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "econome.cli", command, str(config)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    process.log_path = log  # type: ignore[attr-defined]  # where to read its output
    return process


def _query(url: str, database: str, q: str) -> list[dict]:
    body = httpx.get(f"{url}/query", params={"db": database, "q": q}, timeout=10).json()
    return body["results"][0].get("series", [])


def _wait_ready(mqtt_port: int, prefix: str, url: str, database: str, timeout: float = 60.0) -> None:
    """Publish probes until one reaches InfluxDB: the pipeline is subscribed and writing.

    Messages published before the first subscription would reach nobody: that
    is MQTT, not a loss of ours, so the test waits for it.
    """
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="")
    client.connect("127.0.0.1", mqtt_port)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        i = 0
        while time.monotonic() < deadline:
            # Probes are dated before the data, so they do not move the event-time watermark past it.
            ts = (T0 - timedelta(hours=1) + i * timedelta(seconds=1)).isoformat()
            client.publish(f"{prefix}/probe", json.dumps({"t": 19.0, "time": ts}), qos=1).wait_for_publish(10)
            i += 1
            try:
                if _counts(url, database).get("probe", (0, 0.0))[0] > 0:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        msg = "econome run never wrote a probe reading"
        raise AssertionError(msg)
    finally:
        client.disconnect()
        client.loop_stop()


def _counts(url: str, database: str) -> dict[str, tuple[int, float]]:
    series = _query(url, database, 'SELECT count("value"), sum("value") FROM "reading" GROUP BY "point"')
    # InfluxDB 1.6 may answer a null sum for a series being written: nan, which no total equals.
    return {s["tags"]["point"]: (int(s["values"][0][1]), math.nan if s["values"][0][2] is None else float(s["values"][0][2]))
            for s in series}


def _wait_complete(url: str, database: str, n: int, timeout: float) -> dict[str, tuple[int, float]]:
    deadline = time.monotonic() + timeout
    counts: dict[str, tuple[int, float]] = {}
    while time.monotonic() < deadline:
        try:
            counts = _counts(url, database)
        except httpx.HTTPError:
            counts = {}
        if counts.get("energy", (0, 0))[0] >= n and counts.get("temp", (0, 0))[0] >= n:
            return counts
        time.sleep(0.5)
    return counts


def _stop(process: subprocess.Popen[bytes]) -> str:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    return process.log_path.read_text(errors="replace")  # type: ignore[attr-defined, no-any-return]


def _check(url: str, database: str, n: int, counts: dict[str, tuple[int, float]]) -> None:
    assert counts["energy"][0] == n
    assert counts["temp"][0] == n
    assert counts["energy"][1] == pytest.approx(sum(Publisher.energy(i) for i in range(n)))
    assert counts["temp"][1] == pytest.approx(sum(Publisher.temp(i) for i in range(n)))
    # The consumption in the 1 h windows adds up to the counter's true consumption.
    windows = _query(url, database, 'SELECT sum("sum") FROM "agg_point" WHERE "point" = \'energy\' AND "window" = \'1h\'')
    assert windows[0]["values"][0][1] == pytest.approx(Publisher.energy(n - 1) - Publisher.energy(0))


@pytest.mark.timeout(240)
def test_influxdb_down_for_60_seconds_loses_nothing(mqtt_server, unique_name: str, tmp_path: Path) -> None:
    influx: LocalServer = start_influxdb(tmp_path / "influx")
    config = _config(tmp_path, mqtt_server.port, unique_name)
    run = _run(config, influx.url, unique_name, tmp_path / "var")
    n = 1400
    publisher = Publisher(mqtt_server.port, f"{unique_name}/meter", n, rate=20.0)
    try:
        _wait_ready(mqtt_server.port, unique_name, influx.url, unique_name)
        threading.Thread(target=publisher.run, daemon=True).start()
        time.sleep(5)
        influx.stop()
        down_at = publisher.sent
        time.sleep(60)
        influx = restart(influx)
        assert publisher.sent > down_at + 500, "messages kept flowing while InfluxDB was down"
        assert publisher.done.wait(60)
        counts = _wait_complete(influx.url, unique_name, n, timeout=60)
        output = _stop(run)
        _check(influx.url, unique_name, n, counts)
        assert "points written" in output
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(30)
        influx.stop()


STOP_BOUND_S = 15.0
"""The longest ``econome run`` may take to honour SIGTERM (ECONOME_STOP_TIMEOUT_S is 10 s by default)."""


def _wait_output(process: subprocess.Popen[bytes], text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in process.log_path.read_text(errors="replace"):  # type: ignore[attr-defined]
            return
        assert process.poll() is None, "econome run exited"
        time.sleep(0.2)
    msg = f"econome run never logged {text!r}"
    raise AssertionError(msg)


@pytest.mark.timeout(400)
def test_full_log_during_a_60_second_outage_loses_nothing_and_sigterm_is_honoured(
    mqtt_server, unique_name: str, tmp_path: Path
) -> None:
    """15,000 QoS 1 messages (30,000 readings) meet a log bound of 3,000 rows while InfluxDB is down for 60 s.

    The pipeline holds its MQTT acknowledgements (the broker keeps the messages), a
    SIGTERM while the log is full and InfluxDB down is honoured within the bound, and a
    restart delivers the rest: every broker-acknowledged message is in InfluxDB once.
    """
    influx: LocalServer = start_influxdb(tmp_path / "influx")
    config = _config(tmp_path, mqtt_server.port, unique_name)
    data_dir = tmp_path / "var"
    bound = {"ECONOME_BUFFER_MAX_ROWS": "3000"}
    run = _run(config, influx.url, unique_name, data_dir, bound)
    n = 15_000
    publisher = Publisher(mqtt_server.port, f"{unique_name}/meter", n, rate=1500.0)
    second = None
    try:
        _wait_ready(mqtt_server.port, unique_name, influx.url, unique_name)
        influx.stop()
        down_at = time.monotonic()
        threading.Thread(target=publisher.run, daemon=True).start()
        _wait_output(run, "full:", timeout=60)
        assert publisher.done.wait(60)
        assert publisher.sent == n, "the broker acknowledged every message"
        # SIGTERM while the log is full and InfluxDB is down.
        signalled = time.monotonic()
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=STOP_BOUND_S)
        stop_seconds = time.monotonic() - signalled
        first_output = run.log_path.read_text(errors="replace")  # type: ignore[attr-defined]
        assert run.returncode == 0, first_output[-3000:]
        assert "Traceback" not in first_output
        assert "left unacknowledged at the broker" in first_output
        print(f"SIGTERM honoured in {stop_seconds:.1f} s with the log full and InfluxDB down")
        second = _run(config, influx.url, unique_name, data_dir, bound)
        time.sleep(max(0.0, 60 - (time.monotonic() - down_at)))  # the outage lasts at least 60 s
        influx = restart(influx)
        counts = _wait_complete(influx.url, unique_name, n, timeout=180)
        output = _stop(second)
        assert "Traceback" not in output
        _check(influx.url, unique_name, n, counts)
    finally:
        for process in (run, second):
            if process is not None and process.poll() is None:
                process.kill()
        influx.stop()


@pytest.mark.timeout(180)
def test_sigkill_mid_run_then_restart_loses_nothing(mqtt_server, influxdb_server, unique_name: str, tmp_path: Path) -> None:
    config = _config(tmp_path, mqtt_server.port, unique_name)
    data_dir = tmp_path / "var"
    run = _run(config, influxdb_server.url, unique_name, data_dir)
    n = 1500
    publisher = Publisher(mqtt_server.port, f"{unique_name}/meter", n, rate=150.0)
    second = None
    try:
        _wait_ready(mqtt_server.port, unique_name, influxdb_server.url, unique_name)
        threading.Thread(target=publisher.run, daemon=True).start()
        while publisher.sent < n // 3:
            time.sleep(0.05)
        run.kill()  # SIGKILL: no flush, no goodbye
        run.wait(10)
        killed_at = publisher.sent
        second = _run(config, influxdb_server.url, unique_name, data_dir)
        assert publisher.done.wait(60)
        assert killed_at < n
        counts = _wait_complete(influxdb_server.url, unique_name, n, timeout=60)
        _stop(second)
        _check(influxdb_server.url, unique_name, n, counts)
    finally:
        for process in (run, second):
            if process is not None and process.poll() is None:
                process.kill()


@pytest.mark.timeout(180)
def test_faust_runner_aggregates_what_econome_run_forwards(
    mqtt_server, influxdb_server, kafka_server, unique_name: str, tmp_path: Path
) -> None:
    """``econome run`` with ECONOME_RUNNER=faust forwards: readings → delivery log → Kafka; ``econome worker``
    aggregates: Kafka → faust → InfluxDB."""
    config = _config(tmp_path, mqtt_server.port, unique_name)
    kafka = {
        "ECONOME_RUNNER": "faust",
        "ECONOME_KAFKA_URL": f"kafka://{kafka_server.host}:{kafka_server.port}",
        "ECONOME_KAFKA_PARTITIONS": "4",
        "ECONOME_KAFKA_TOPIC": f"{unique_name}-readings",
        "ECONOME_KAFKA_GROUP": unique_name,
        "ECONOME_KAFKA_SESSION_TIMEOUT_S": "3",
    }
    run = _run(config, influxdb_server.url, unique_name, tmp_path / "var", kafka)
    worker = _run(config, influxdb_server.url, unique_name, tmp_path / "worker", kafka, command="worker")
    n = 1400
    publisher = Publisher(mqtt_server.port, f"{unique_name}/meter", n, rate=200.0)
    try:
        _wait_ready(mqtt_server.port, unique_name, influxdb_server.url, unique_name)
        publisher.run()
        counts = _wait_complete(influxdb_server.url, unique_name, n, timeout=60)
        assert counts["energy"][0] == n
        # Every 1 h window the watermark has closed (last reading - 60 s lateness) holds the true consumption.
        expected: dict[int, float] = {}
        for i in range(1, n):
            start, end = T0 + (i - 1) * STEP, T0 + i * STEP
            cursor = start
            while cursor < end:
                hour = int(cursor.timestamp()) // 3600 * 3600
                piece_end = min(end, datetime.fromtimestamp(hour + 3600, UTC))
                expected[hour] = expected.get(hour, 0.0) + 0.5 * (piece_end - cursor) / STEP
                cursor = piece_end
        last = T0 + (n - 1) * STEP - timedelta(seconds=60)
        closed = {h: v for h, v in expected.items() if datetime.fromtimestamp(h + 3600, UTC) <= last}
        assert len(closed) >= 3
        query = 'SELECT "sum" FROM "agg_point" WHERE "point" = \'energy\' AND "window" = \'1h\''
        got: dict[int, float] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = _query(influxdb_server.url, unique_name, query)
            values = rows[0]["values"] if rows else []
            got = {int(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()): v for t, v in values}
            if all(h in got for h in closed):
                break
            time.sleep(0.5)
        assert {h: got.get(h) for h in closed} == pytest.approx(closed)
        _stop(run)
        _stop(worker)
    finally:
        for process in (run, worker):
            if process.poll() is None:
                process.kill()
                process.wait(30)
