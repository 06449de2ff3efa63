"""SIGKILL during a burst of 10,000 QoS 1 messages: nothing the broker acknowledged is lost (issue 10).

A publisher sends 10,000 JSON messages with unique values and times, as fast as
Mosquitto takes them, and records each PUBACK it gets. ``econome run`` (a real
process) is SIGKILLed three times and restarted each time: once 3 % of the
burst is in InfluxDB, then 0.2 s after each restarted process has its MQTT
session back, while it drains what the broker kept for the session (the moment
when readings acknowledged on receipt, and not yet on disk, were lost).
Afterwards InfluxDB 1.6 holds every acknowledged message exactly once: count and
sum of the values equal the publisher's.

Econome acknowledges a message to the broker only once its reading is in the
delivery log (paho's manual acknowledgement): a message in flight when the
process dies is delivered again to the next one, under the same persistent
session. A message delivered twice carries its own time, so it is the same
InfluxDB point, not a second one.
"""

from __future__ import annotations

import json
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

ROOT = Path(__file__).resolve().parents[2]
N = 10_000
FIRST_KILL_SHARE = 0.03
"""The share of the burst in InfluxDB at which the first process is killed."""
# Dated in the recent past, one second apart: live input, no window spans days.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)


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
          - {{id: power, quantity: active_power, unit: W, usage: general,
              mqtt: {{topic: {prefix}/burst, format: json, field: v, timestamp_field: time}}}}
          - {{id: probe, quantity: temperature, unit: degC, usage: comfort,
              mqtt: {{topic: {prefix}/probe, format: json, field: t, timestamp_field: time}}}}
""",
        encoding="utf-8",
    )
    return path


def _value(i: int) -> float:
    return float(i)


@dataclass
class Burst:
    """Publishes message i (value i, time T0 + i s) and records which ones the broker acknowledged."""

    port: int
    topic: str
    acked: set[int] = field(default_factory=set)
    done: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    _mids: dict[int, int] = field(default_factory=dict)
    _early: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: object, props: object) -> None:
        with self._lock:
            i = self._mids.pop(mid, None)
            if i is None:
                self._early.add(mid)  # the PUBACK came before publish() returned
            else:
                self.acked.add(i)

    def run(self) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="")
        client.max_queued_messages_set(0)
        client.on_publish = self._on_publish
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        try:
            infos = []
            self.started.set()
            for i in range(N):
                payload = json.dumps({"v": _value(i), "time": (T0 + timedelta(seconds=i)).isoformat()})
                # Not under our lock: paho calls on_publish holding its own, which publish() takes too.
                info = client.publish(self.topic, payload, qos=1)
                with self._lock:
                    if info.mid in self._early:
                        self._early.discard(info.mid)
                        self.acked.add(i)
                    else:
                        self._mids[info.mid] = i
                infos.append(info)
            for info in infos:
                info.wait_for_publish(60)
        finally:
            client.disconnect()
            client.loop_stop()
            self.done.set()


def _run(config: Path, influx_url: str, database: str, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ECONOME_INFLUX_URL": influx_url,
        "ECONOME_INFLUX_DATABASE": database,
        "ECONOME_DATA_DIR": str(data_dir),
        "ECONOME_FLUSH_INTERVAL_S": "0.2",
        "ECONOME_LATENESS_S": "60",
        "ECONOME_LOG_LEVEL": "INFO",  # _wait_connected reads the collector's INFO line
    }
    log = data_dir.parent / f"run-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "econome.cli", "run", str(config)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    process.log_path = log  # type: ignore[attr-defined]  # where to read its output
    return process


def _counts(url: str, database: str) -> dict[str, tuple[int, float]]:
    body = httpx.get(
        f"{url}/query",
        params={"db": database, "q": 'SELECT count("value"), sum("value") FROM "reading" GROUP BY "point"'},
        timeout=10,
    ).json()
    series = body["results"][0].get("series", [])
    # InfluxDB 1.6 may answer a null sum while it writes a batch: such a series is not counted yet.
    return {
        s["tags"]["point"]: (int(s["values"][0][1]), float(s["values"][0][2])) for s in series if None not in s["values"][0][1:3]
    }


def _power(url: str, database: str) -> int:
    try:
        return _counts(url, database).get("power", (0, 0.0))[0]
    except httpx.HTTPError:
        return 0


def _wait_ready(mqtt_port: int, prefix: str, url: str, database: str, timeout: float = 60.0) -> None:
    """Publish probes until one reaches InfluxDB: the pipeline is subscribed and writing."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="")
    client.connect("127.0.0.1", mqtt_port)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        i = 0
        while time.monotonic() < deadline:
            ts = (T0 - timedelta(minutes=30) + timedelta(seconds=i)).isoformat()
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


def _wait_connected(process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Wait until the restarted process has its MQTT session back (its log says so)."""
    log: Path = process.log_path  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "collectors.mqtt: MQTT broker default" in log.read_text(errors="replace"):
            return
        assert process.poll() is None, log.read_text(errors="replace")[-2000:]
        time.sleep(0.02)
    msg = "the restarted econome run did not connect to the broker"
    raise AssertionError(msg)


@pytest.mark.timeout(300)
def test_sigkill_three_times_during_a_burst_loses_and_duplicates_nothing(
    mqtt_server, influxdb_server, unique_name: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, mqtt_server.port, unique_name)
    data_dir = tmp_path / "var"
    url, db = influxdb_server.url, unique_name
    processes = [_run(config, url, db, data_dir)]
    burst = Burst(mqtt_server.port, f"{unique_name}/burst")
    kills: list[tuple[float, int]] = []  # (seconds into the burst, readings in InfluxDB then)
    try:
        _wait_ready(mqtt_server.port, unique_name, url, db)
        threading.Thread(target=burst.run, daemon=True, name="burst").start()
        assert burst.started.wait(10)
        start = time.monotonic()
        # The first kill once some of the burst is in InfluxDB; the next ones 0.2 s after the restarted process has
        # its session back, while it drains it, not at a moment: a process that starts faster drained the whole
        # burst before a third kill at 3 s, which then fell after it.
        for _ in range(3):
            if len(processes) > 1:
                _wait_connected(processes[-1])
                time.sleep(0.2)
                stored = _power(url, db)
            else:
                stored = _power(url, db)
                deadline = time.monotonic() + 60
                while stored < FIRST_KILL_SHARE * N and time.monotonic() < deadline:
                    time.sleep(0.02)
                    stored = _power(url, db)
            processes[-1].send_signal(signal.SIGKILL)
            processes[-1].wait(10)
            kills.append((round(time.monotonic() - start, 2), stored))
            processes.append(_run(config, url, db, data_dir))
        assert burst.done.wait(120)
        assert len(burst.acked) == N, "the broker acknowledged every message"
        # Every kill fell inside the burst: it had not all reached InfluxDB yet.
        assert all(stored < N for _, stored in kills), kills
        deadline = time.monotonic() + 120
        count = 0
        while time.monotonic() < deadline and count < N:
            count = _power(url, db)
            time.sleep(0.5)
        counts = _counts(url, db)
        processes[-1].send_signal(signal.SIGTERM)
        processes[-1].wait(60)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        burst.done.wait(120)
    count, total = counts["power"]
    assert count == len(burst.acked), f"lost {len(burst.acked) - count} acknowledged messages; kills at {kills}"
    assert total == pytest.approx(sum(_value(i) for i in burst.acked))
