"""The simulator's MQTT sensors against a real Mosquitto (``mqtt_server`` fixture)."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from inventory import Inventory, load_inventory
from simulator.faults import Fault
from simulator.runner import Simulator
from streams.clock import ManualClock, ScaledClock

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 1, 13, 9, 0, tzinfo=UTC)  # a Tuesday, schools open


@pytest.fixture(scope="module")
def commune() -> Inventory:
    return load_inventory(ROOT / "examples" / "commune.yaml")


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}/"


class Subscriber:
    """Collects every message under a prefix, on paho's thread."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        self.prefix = prefix
        self.messages: queue.Queue[tuple[str, str]] = queue.Queue()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{prefix}")
        self.client.on_connect = lambda client, *_: client.subscribe(prefix + "#", qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda _c, _u, msg: self.messages.put((msg.topic.removeprefix(prefix), msg.payload.decode()))
        self.client.connect(host, port)
        self.client.loop_start()
        assert subscribed.wait(5), "subscription not acknowledged"

    def drain(self, until: int, timeout: float = 5.0) -> list[tuple[str, str]]:
        """Messages received, waiting until ``until`` of them came or ``timeout`` seconds passed."""
        got: list[tuple[str, str]] = []
        deadline = time.monotonic() + timeout
        while len(got) < until:
            try:
                got.append(self.messages.get(timeout=max(deadline - time.monotonic(), 0.01)))
            except queue.Empty:
                break
        return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber(mqtt_server: Any, prefix: str) -> Iterator[Subscriber]:
    sub = Subscriber(mqtt_server.host, mqtt_server.port, prefix)
    yield sub
    sub.close()


def _topics(commune: Inventory) -> set[str]:
    return {p.mqtt.topic for _, p in commune.points() if p.mqtt is not None}


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_payloads_and_intervals(commune: Inventory, mqtt_server: Any, prefix: str, subscriber: Subscriber) -> None:
    clock = ManualClock(START)
    silent = Fault(
        kind="dead_sensor",
        building="mairie",
        point="mairie-bureaux-temperature",
        params={"mode": "silent"},
        start=START,
        end=START + timedelta(days=1),
    )
    simulator = Simulator(
        commune,
        clock,
        seed=2,
        faults=[silent],
        modbus_ports={g.id: 0 for g in commune.modbus_gateways},
        mqtt=(mqtt_server.host, mqtt_server.port),
        mqtt_topic_prefix=prefix,
    )
    await simulator.start()
    try:
        await _settle()
        topics = _topics(commune)
        first = dict(subscriber.drain(len(topics)))
        assert set(first) == topics

        climate = json.loads(first["valmont/ecole-jaures/classes/climate"])
        assert set(climate) == {"temperature", "illuminance", "co2", "time"}
        assert datetime.fromisoformat(climate["time"]) == START
        assert climate["temperature"] == pytest.approx(simulator.model.value("ecole-jaures-classes-temperature"), abs=0.01)
        assert 15 < climate["temperature"] < 25
        assert 400 < climate["co2"] < 2000
        assert json.loads(first["valmont/mairie/bureaux/climate"]).keys() == {"illuminance", "time"}  # dead sensor
        assert 0 < json.loads(first["valmont/meteo/station"])["temperature"] + 20 < 40
        assert first["valmont/ecole-jaures/classes/occupancy"] == "1"
        assert {first[t] for t in topics if t.endswith("/occupancy")} <= {"0", "1"}

        for _ in range(4):
            clock.advance(timedelta(seconds=60))
            await _settle()
        climate_topics = [t for t in topics if not t.endswith("/occupancy")]
        later = subscriber.drain(4 * len(climate_topics))
        counts = Counter(topic for topic, _ in later)
        assert all(counts[t] == 4 for t in climate_topics), counts
        assert not any(t.endswith("/occupancy") for t, _ in later)  # nothing changed, heartbeat is 5 min
        times = [json.loads(p)["time"] for t, p in later if t == "valmont/meteo/station"]
        assert times == [(START + timedelta(minutes=m)).isoformat().replace("+00:00", "Z") for m in range(1, 5)]

        clock.advance(timedelta(seconds=60))  # 09:05: the occupancy heartbeat
        await _settle()
        heartbeat = Counter(topic for topic, _ in subscriber.drain(len(topics)))
        assert heartbeat == Counter(topics)
    finally:
        await simulator.stop()


async def test_fast_clock_publishes_at_most_once_per_interval(
    commune: Inventory, mqtt_server: Any, prefix: str, subscriber: Subscriber
) -> None:
    clock = ScaledClock(START, speed=3600)
    simulator = Simulator(
        commune,
        clock,
        seed=2,
        modbus_ports={g.id: 0 for g in commune.modbus_gateways},
        mqtt=(mqtt_server.host, mqtt_server.port),
        mqtt_topic_prefix=prefix,
    )
    await simulator.start()
    try:
        await asyncio.sleep(1.0)  # one simulated hour passes on the scaled clock
        elapsed = clock.now() - START
    finally:
        await simulator.stop()
    messages = subscriber.drain(10_000, timeout=1.0)
    counts = Counter(topic for topic, _ in messages)
    minutes = elapsed / timedelta(minutes=1)
    station = counts["valmont/meteo/station"]
    assert 10 < station <= minutes + 1
    occupancy = [t for t in _topics(commune) if t.endswith("/occupancy")]
    assert all(counts[t] <= minutes / 5 + 2 * 2 for t in occupancy), counts
    stamps = [json.loads(p)["time"] for t, p in messages if t == "valmont/meteo/station"]
    assert len(stamps) == len(set(stamps))  # never twice the same interval


async def test_unreachable_broker_fails_start(commune: Inventory) -> None:
    clock = ManualClock(START)
    simulator = Simulator(commune, clock, modbus_ports={g.id: 0 for g in commune.modbus_gateways}, mqtt=("127.0.0.1", 1))
    assert simulator.mqtt is not None
    simulator.mqtt.connect_timeout = timedelta(seconds=0.5)
    with pytest.raises(ConnectionError):
        await simulator.start()
    await simulator.stop()


async def test_occupancy_published_on_change(commune: Inventory, mqtt_server: Any, prefix: str, subscriber: Subscriber) -> None:
    before_lunch = datetime(2026, 1, 13, 10, 58, tzinfo=UTC)  # 11:58 in Paris; the school closes at 12:00
    clock = ManualClock(before_lunch)
    simulator = Simulator(
        commune,
        clock,
        modbus_ports={g.id: 0 for g in commune.modbus_gateways},
        mqtt=(mqtt_server.host, mqtt_server.port),
        mqtt_topic_prefix=prefix,
    )
    await simulator.start()
    try:
        await _settle()
        for _ in range(3):
            clock.advance(timedelta(seconds=60))
            await _settle()
        topic = "valmont/ecole-jaures/classes/occupancy"
        messages = subscriber.drain(len(_topics(commune)) + 3 * 20, timeout=2.0)
        assert [p for t, p in messages if t == topic] == ["1", "0"]
    finally:
        await simulator.stop()
