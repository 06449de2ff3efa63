"""Issue 10 against real servers: hostile event times never stop ``econome run``, never are stored as good.

``econome run`` (a real process) subscribes to a real Mosquitto and writes to a real
InfluxDB 1.6. It receives a counter reading stamped 1970 after one stamped now (which
used to cut 56 years into 10-minute windows), readings stamped 0001-01-01 (which used to
raise OverflowError and exit, at every restart) and 9999, one an hour ahead, one 30 days
old, a backfill point's 30-day-old reading and a duplicate timestamp with another value.
It must stay up, store exactly the good readings, dead-letter the others with their
reason, and stop on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[2]


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
              mqtt: {{topic: {prefix}/energy, format: json, field: v, timestamp_field: time}}}}
          - {{id: temp, quantity: temperature, unit: degC, usage: comfort,
              mqtt: {{topic: {prefix}/temp, format: json, field: v, timestamp_field: time}}}}
          - {{id: history, quantity: temperature, unit: degC, usage: comfort, backfill: true,
              mqtt: {{topic: {prefix}/history, format: json, field: v, timestamp_field: time}}}}
""",
        encoding="utf-8",
    )
    return path


def _counts(url: str, database: str) -> dict[str, tuple[int, float]]:
    body = httpx.get(
        f"{url}/query",
        params={"db": database, "q": 'SELECT count("value"), sum("value") FROM "reading" GROUP BY "point"'},
        timeout=10,
    ).json()
    series = body["results"][0].get("series", [])
    return {s["tags"]["point"]: (int(s["values"][0][1]), float(s["values"][0][2])) for s in series}


def _dead_letters(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.timeout(120)
def test_hostile_event_times_are_dead_lettered_and_the_run_goes_on(
    mqtt_server, influxdb_server, unique_name: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, mqtt_server.port, unique_name)
    data_dir = tmp_path / "var"
    env = {
        **os.environ,
        "ECONOME_INFLUX_URL": influxdb_server.url,
        "ECONOME_INFLUX_DATABASE": unique_name,
        "ECONOME_DATA_DIR": str(data_dir),
        "ECONOME_FLUSH_INTERVAL_S": "0.2",
        "ECONOME_LOG_LEVEL": "WARNING",
    }
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as out:
        run = subprocess.Popen(
            [sys.executable, "-m", "econome.cli", "run", str(config)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    now = datetime.now(UTC).replace(microsecond=0)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="")
    client.connect("127.0.0.1", mqtt_server.port)
    client.loop_start()

    def publish(point: str, value: float, ts: str) -> None:
        payload = json.dumps({"v": value, "time": ts})
        client.publish(f"{unique_name}/{point}", payload, qos=1).wait_for_publish(10)

    try:
        # Wait until the pipeline is subscribed and writing: a first counter reading, an hour ago.
        deadline = time.monotonic() + 60
        while _counts(influxdb_server.url, unique_name).get("energy", (0, 0.0))[0] == 0:
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            assert run.poll() is None, log_path.read_text(errors="replace")
            publish("energy", 1000.0, (now - timedelta(hours=1)).isoformat())
            time.sleep(0.3)
        hostile = [
            ("energy", 500.0, "1970-01-01T00:00:00Z"),
            ("temp", 20.0, "0001-01-01T00:00:00Z"),
            ("temp", 20.0, "9999-12-31T23:59:59Z"),
            ("temp", 20.0, (now + timedelta(hours=1)).isoformat()),
            ("temp", 20.0, (now - timedelta(days=30)).isoformat()),
            ("temp", 21.5, (now - timedelta(minutes=50)).isoformat()),  # a duplicate time, another value
        ]
        publish("temp", 21.0, (now - timedelta(minutes=50)).isoformat())
        for point, value, ts in hostile:
            publish(point, value, ts)
        publish("history", 18.0, (now - timedelta(days=30)).isoformat())
        publish("energy", 1010.0, (now - timedelta(minutes=40)).isoformat())
        deadline = time.monotonic() + 60
        expected = {"temp": (1, 21.0), "history": (1, 18.0)}
        while True:
            counts = _counts(influxdb_server.url, unique_name)
            # The waiting loop's repeats of the first reading are counted duplicates, not hostile ones.
            letters = [
                d for d in _dead_letters(data_dir / "dead-letters.jsonl")
                if "same value" not in d["reason"] and d["source"] != "aggregation"
            ]  # fmt: skip
            done = all(counts.get(k) == v for k, v in expected.items()) and counts.get("energy", (0, 0.0))[0] >= 2
            if done and len(letters) >= len(hostile):
                break
            assert time.monotonic() < deadline, (counts, [(d["source"], d["key"], d["reason"]) for d in letters])
            assert run.poll() is None, log_path.read_text(errors="replace")
            time.sleep(0.3)
        assert run.poll() is None  # alive after every hostile time
    finally:
        client.disconnect()
        client.loop_stop()
        run.send_signal(signal.SIGTERM)
        code = run.wait(timeout=60)
    output = log_path.read_text(errors="replace")
    assert code == 0, output
    assert "Traceback" not in output
    assert "OverflowError" not in output
    # Only good readings are stored, once: the counter's two live readings, the first temperature.
    counts = _counts(influxdb_server.url, unique_name)
    assert counts["energy"] == (2, pytest.approx(2010.0))
    assert counts["temp"] == (1, pytest.approx(21.0))
    assert len(letters) == len(hostile), [(d["source"], d["key"], d["reason"]) for d in letters]
    reasons = [d["reason"] for d in letters]
    # 9999 is refused by the MQTT decoder already ("in the future"), 1970 and year 1 at the edge.
    assert sum("is outside 2000" in r for r in reasons) == 2
    assert sum("ECONOME_MAX_FUTURE_S" in r or "in the future" in r for r in reasons) == 2
    assert sum("ECONOME_MAX_AGE_S" in r for r in reasons) == 1
    assert sum("duplicate timestamp" in r and "with a different value" in r for r in reasons) == 1
    # The backfill reading is stored raw; its windows closed long ago, and the dead letters say so.
    late = [d for d in _dead_letters(data_dir / "dead-letters.jsonl") if d["source"] == "aggregation"]
    assert [(d["key"], d["reason"]) for d in late] == [("history", "too late to aggregate: window past its retention")]
