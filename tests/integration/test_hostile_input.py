"""No payload stops the pipeline: 10,000 hostile MQTT payloads against a running ``econome run``.

A seeded generator mixes hostile payloads (random bytes, 1 MB payloads, invalid
UTF-8, NaN and ±1e308 values, deep nesting, wrong types, timestamps from year 1
to 9999, odd topic levels) with 2,000 valid readings of unique values, and
publishes them, interleaved, at QoS 1 to a real Mosquitto. ``econome run`` (a
real process) writes to a real InfluxDB 1.6. Then:

* the pipeline was alive throughout, and still writes afterwards;
* every valid reading is in InfluxDB exactly once (count and sum per point);
* every hostile payload was dead-lettered with a reason (the counts match);
* the process's resident memory grew by less than 100 MB.

Every bound topic feeds exactly one point, so one hostile message gives exactly
one dead letter, wherever it is caught (decoder, edge validation, processor).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from econome.localservers import free_port

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC).replace(microsecond=0)
T0 = NOW - timedelta(days=1)
VALID_PER_POINT = 500
HOSTILE = 10_000
SEED = 20261130


def _config(tmp: Path, mqtt_port: int, prefix: str) -> Path:
    path = tmp / "hostile.yaml"
    path.write_text(
        f"""
organisation: {{name: Hostile, population: 100, school_holiday_zone: C}}
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
              mqtt: {{topic: {prefix}/meter, format: json, field: e, timestamp_field: time}}}}
          - {{id: temp, quantity: temperature, unit: degC, usage: comfort,
              mqtt: {{topic: {prefix}/zone/temp, format: json, field: t, timestamp_field: time}}}}
          - {{id: plain, quantity: temperature, unit: degC, usage: comfort,
              mqtt: {{topic: {prefix}/zone/plain, format: plain}}}}
          - {{id: lora, quantity: temperature, unit: degC, usage: comfort,
              mqtt: {{topic: {prefix}/lora/+/up, format: chirpstack_v4, field: temperature}}}}
          - {{id: probe, quantity: temperature, unit: degC, usage: comfort,
              mqtt: {{topic: {prefix}/probe, format: json, field: t, timestamp_field: time}}}}
""",
        encoding="utf-8",
    )
    return path


# -- the traffic ------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    hostile: bool
    kind: str


@dataclass
class Traffic:
    """The messages to publish, in order, and what InfluxDB must hold afterwards."""

    messages: list[Message] = field(default_factory=list)
    expected: dict[str, tuple[int, float]] = field(default_factory=dict)

    @property
    def hostile(self) -> int:
        return sum(m.hostile for m in self.messages)

    @property
    def kinds(self) -> Counter[str]:
        return Counter(m.kind for m in self.messages if m.hostile)


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _valid(prefix: str) -> tuple[list[Message], dict[str, tuple[int, float]]]:
    messages: list[Message] = []
    sums: dict[str, list[float]] = {"energy": [], "temp": [], "plain": [], "lora": []}
    for i in range(VALID_PER_POINT):
        ts = _iso(T0 + timedelta(seconds=60 * i))
        energy, temp, plain, lora = 1000.0 + 0.5 * i, 18.0 + 0.001 * i, 17.0 + 0.001 * i, 21.0 + 0.001 * i
        messages += [
            Message(f"{prefix}/meter", json.dumps({"e": energy, "time": ts}).encode(), False, "valid"),
            Message(f"{prefix}/zone/temp", json.dumps({"t": temp, "time": ts}).encode(), False, "valid"),
            Message(f"{prefix}/zone/plain", f"{plain:.3f}".encode(), False, "valid"),
            Message(
                f"{prefix}/lora/dev{i % 5}/up",
                json.dumps({"object": {"temperature": lora}, "time": ts}).encode(),
                False,
                "valid",
            ),
        ]
        sums["energy"].append(energy)
        sums["temp"].append(temp)
        sums["plain"].append(float(f"{plain:.3f}"))
        sums["lora"].append(lora)
    return messages, {point: (len(values), sum(values)) for point, values in sums.items()}


def _parses_as_number(payload: bytes) -> bool:
    try:
        float(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    return True


def _bad_time(rng: random.Random) -> object:
    """A timestamp outside any sane window: year 1 to 9999 away from now, or an absurd epoch."""
    choice = rng.randrange(6)
    if choice == 0:
        return rng.choice([0, -1, 1e300, -1e300, 2**63, 253402300800000, 1e18])
    if choice == 1:
        return rng.choice(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "1970-01-01T00:00:00Z", "NaN"])
    year = rng.choice([rng.randint(1, NOW.year - 2), rng.randint(NOW.year + 2, 9999)])
    return f"{year:04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z"


def _bad_value(rng: random.Random) -> object:
    return rng.choice(
        [
            float("nan"), float("inf"), float("-inf"), 1e308, -1e308, "abc", "", None, [], {}, [19.5], {"v": 19.5},
            True, False, "on", "19,5", "0x13", 10**400,
        ]
    )  # fmt: skip


def _nest(depth: int, rng: random.Random) -> str:
    opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
    return opener * depth + "1" + closer * depth


def _hostile(prefix: str, rng: random.Random) -> Message:
    family = rng.randrange(10)
    json_topics = [f"{prefix}/meter", f"{prefix}/zone/temp"]
    if family == 0:  # random bytes, on any bound topic
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        if _parses_as_number(payload):
            payload = b"\xff" + payload
        return Message(rng.choice([*json_topics, f"{prefix}/zone/plain"]), payload, True, "random bytes")
    if family == 1:  # invalid UTF-8 around a plausible value
        body = rng.choice([b'{"t": 19.5, "time": "\xff\xfe"}', b"19.5\xc3\x28", b"\xed\xa0\x80", b'{"e": 1\x80}'])
        return Message(rng.choice([*json_topics, f"{prefix}/zone/plain"]), body, True, "invalid utf-8")
    if family == 2:  # a rare 1 MB payload, else a long one
        size = 1_048_576 if rng.random() < 0.004 else rng.randrange(70_000, 200_000)
        body = rng.choice([b"9" * size, b'{"t": "' + b"x" * size + b'"}', b"[" * size])
        return Message(rng.choice(json_topics), body, True, "oversized")
    if family == 3:  # NaN, infinities, ±1e308 (JSON and plain)
        value = rng.choice([float("nan"), float("inf"), float("-inf"), 1e308, -1e308])
        if rng.random() < 0.5:
            text = rng.choice(["nan", "NaN", "inf", "-inf", "1e308", "-1e308", "1e999", "-1e999", "Infinity"])
            return Message(f"{prefix}/zone/plain", text.encode(), True, "non-finite")
        topic = rng.choice(json_topics)
        name = "e" if topic.endswith("meter") else "t"
        ts = _iso(T0 + timedelta(seconds=rng.randrange(0, 30_000) + 0.5))
        return Message(topic, json.dumps({name: value, "time": ts}).encode(), True, "non-finite")
    if family == 4:  # deep nesting
        depth = rng.choice([50, 1_000, 100_000, 500_000])
        body = f'{{"t": {_nest(depth, rng)}, "time": "{_iso(NOW)}"}}' if rng.random() < 0.5 else _nest(depth, rng)
        return Message(rng.choice(json_topics), body.encode(), True, "deep nesting")
    if family == 5:  # wrong types
        topic = rng.choice(json_topics)
        name = "e" if topic.endswith("meter") else "t"
        document = rng.choice([{name: _bad_value(rng), "time": _iso(NOW)}, [1, 2], "19.5", 19.5, None, {"other": 1}])
        try:
            body = json.dumps(document)
        except ValueError:  # 10**400 is too long for json.dumps' int conversion
            body = f'{{"{name}": {"9" * 5000}, "time": "{_iso(NOW)}"}}'
        return Message(topic, body.encode(), True, "wrong type")
    if family == 6:  # booleans and words for a temperature (plain)
        word = rng.choice(["true", "false", "on", "off", "", " ", "19,5", "abc", "0x13", "--1", "1e", "NULL"])
        return Message(f"{prefix}/zone/plain", word.encode(), True, "wrong type")
    if family in (7, 8):  # timestamps from year 1 to 9999
        topic = rng.choice([*json_topics, "lora"])
        value = 1100.0 if topic.endswith("meter") else 19.0
        if topic == "lora":
            body = {"object": {"temperature": value}, "time": _bad_time(rng)}
            return Message(f"{prefix}/lora/dev0/up", json.dumps(body).encode(), True, "bad timestamp")
        name = "e" if topic.endswith("meter") else "t"
        return Message(topic, json.dumps({name: value, "time": _bad_time(rng)}).encode(), True, "bad timestamp")
    # odd topic levels on the wildcard binding, with a payload that cannot be used
    level = rng.choice(["", " ", "ünïcödé", "a" * 2000, "dev$", "..", "%00", "DEV 1", "é/è"[:1]])
    body = rng.choice(
        [
            b'{"object": {}}',
            b'{"object": {"temperature": "warm"}}',
            b'{"object": {"temperature": 19.5}, "time": "0001-01-01T00:00:00Z"}',
            b'{"objet": {"temperature": 19.5}}',
            b"[]",
        ]
    )
    return Message(f"{prefix}/lora/{level}/up", body, True, "odd topic")


def traffic(prefix: str, seed: int = SEED) -> Traffic:
    """Valid readings in their order, hostile payloads shuffled in between."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test traffic, not cryptography
    valid, expected = _valid(prefix)
    hostile = [_hostile(prefix, rng) for _ in range(HOSTILE)]
    # Interleave without reordering the valid readings (plain ones are stamped on receipt).
    slots = sorted(rng.sample(range(len(valid) + len(hostile)), len(valid)))
    out: list[Message] = []
    hostile_iter, valid_iter = iter(hostile), iter(valid)
    slot_set = set(slots)
    for position in range(len(valid) + len(hostile)):
        out.append(next(valid_iter) if position in slot_set else next(hostile_iter))
    return Traffic(out, expected)


# -- the harness ------------------------------------------------------------------------


def _run(config: Path, influx_url: str, database: str, data_dir: Path, metrics_port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ECONOME_INFLUX_URL": influx_url,
        "ECONOME_INFLUX_DATABASE": database,
        "ECONOME_DATA_DIR": str(data_dir),
        "ECONOME_FLUSH_INTERVAL_S": "0.2",
        "ECONOME_LATENESS_S": "60",
        "ECONOME_LOG_LEVEL": "WARNING",
        # Live detection's first pass (its imports and frames, 75-90 MB) would land in the RSS measured here at a
        # moment that depends on the machine's load: this suite measures what hostile payloads cost, bench/live.py
        # what detection costs.
        "ECONOME_DETECT_ENABLED": "false",
    }
    log = data_dir.parent / "run.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "econome.cli", "run", str(config), "--metrics-port", str(metrics_port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    process.log_path = log  # type: ignore[attr-defined]
    return process


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _query(url: str, database: str, q: str) -> list[dict]:
    body = httpx.get(f"{url}/query", params={"db": database, "q": q}, timeout=10).json()
    return body["results"][0].get("series", [])


def _counts(url: str, database: str) -> dict[str, tuple[int, float]]:
    series = _query(url, database, 'SELECT count("value"), sum("value") FROM "reading" GROUP BY "point"')
    # A series InfluxDB lists before any of its values is queryable has a count of 0 and no sum.
    return {s["tags"]["point"]: (int(s["values"][0][1] or 0), float(s["values"][0][2] or 0.0)) for s in series}


def _metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _publish(port: int, messages: list[Message], on_each: Callable[[int], None]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="")
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        pending = []
        for i, message in enumerate(messages):
            pending.append(client.publish(message.topic, message.payload, qos=1))
            if len(pending) >= 200:
                for info in pending:
                    info.wait_for_publish(30)
                    assert info.is_published(), "the broker did not acknowledge a message"
                pending.clear()
            on_each(i)
        for info in pending:
            info.wait_for_publish(30)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def _probe(port: int, prefix: str, url: str, database: str, timeout: float = 60.0) -> None:
    """Publish probe readings until one reaches InfluxDB."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        i = 0
        before = _counts(url, database).get("probe", (0, 0.0))[0]
        while time.monotonic() < deadline:
            ts = _iso(T0 - timedelta(hours=1) + timedelta(seconds=i) + timedelta(milliseconds=time.monotonic_ns() % 1000))
            client.publish(f"{prefix}/probe", json.dumps({"t": 19.0, "time": ts}), qos=1).wait_for_publish(10)
            i += 1
            if _counts(url, database).get("probe", (0, 0.0))[0] > before:
                return
            time.sleep(0.3)
        msg = "econome run never wrote a probe reading"
        raise AssertionError(msg)
    finally:
        client.disconnect()
        client.loop_stop()


def test_traffic_is_what_it_says() -> None:
    """The generator gives 10,000 hostile payloads of every family and 2,000 unique valid readings."""
    t = traffic("p")
    assert t.hostile == HOSTILE
    assert len(t.messages) - t.hostile == 4 * VALID_PER_POINT
    assert set(t.kinds) == {
        "random bytes", "invalid utf-8", "oversized", "non-finite", "deep nesting", "wrong type", "bad timestamp", "odd topic",
    }  # fmt: skip
    assert any(len(m.payload) >= 1_048_576 for m in t.messages)
    valid = [m.payload for m in t.messages if not m.hostile]
    assert len(set(valid)) == len(valid)


@pytest.mark.timeout(420)
def test_ten_thousand_hostile_payloads_stop_nothing_and_lose_nothing(
    mqtt_server, influxdb_server, unique_name: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, mqtt_server.port, unique_name)
    metrics_port = free_port()
    run = _run(config, influxdb_server.url, unique_name, tmp_path / "var", metrics_port)
    t = traffic(unique_name)
    rss: list[float] = []
    alive: list[bool] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            alive.append(run.poll() is None)
            if run.poll() is None:
                rss.append(_rss_mb(run.pid))
            stop.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        _probe(mqtt_server.port, unique_name, influxdb_server.url, unique_name)
        baseline_rss = _rss_mb(run.pid)
        sampler.start()
        _publish(mqtt_server.port, t.messages, lambda i: None)

        deadline = time.monotonic() + 180
        counts: dict[str, tuple[int, float]] = {}
        dead = 0.0
        while time.monotonic() < deadline:
            assert run.poll() is None, "econome run died"
            counts = _counts(influxdb_server.url, unique_name)
            dead = _metric(metrics_port, "econome_dead_letters_total")
            if all(counts.get(p, (0, 0))[0] >= n for p, (n, _) in t.expected.items()) and dead >= t.hostile:
                break
            time.sleep(1)
        # Still alive and still writing after the storm.
        _probe(mqtt_server.port, unique_name, influxdb_server.url, unique_name)
        stop.set()
        sampler.join(5)
        assert alive
        assert all(alive)

        for point, (n, total) in t.expected.items():
            assert counts.get(point, (0, 0.0))[0] == n, f"{point}: {counts.get(point)} in InfluxDB, {n} sent"
            assert counts[point][1] == pytest.approx(total), point
        assert dead == t.hostile, f"{dead:.0f} dead letters for {t.hostile} hostile payloads"
        letters = _dead_letters(tmp_path / "var")
        assert letters, "no dead-letter file"
        assert all(letter["reason"] for letter in letters)
        growth = max(rss) - baseline_rss
        print(f"RSS {baseline_rss:.0f} MB → peak {max(rss):.0f} MB (+{growth:.0f} MB); {len(t.messages)} messages")
        assert growth < 100, f"RSS grew by {growth:.0f} MB"

        run.send_signal(signal.SIGTERM)
        assert run.wait(30) == 0
        output = run.log_path.read_text(errors="replace")  # type: ignore[attr-defined]
        assert "Traceback" not in output, output[-3000:]
    finally:
        stop.set()
        if run.poll() is None:
            run.kill()
            run.wait(30)  # reaped here, not left to warn in a later test


def _dead_letters(data_dir: Path) -> list[dict]:
    letters = []
    for path in sorted(data_dir.glob("dead-letters*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                letters.append(json.loads(line))
    return letters
