"""The MQTT collector against a real Mosquitto broker."""

from __future__ import annotations

import asyncio

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collectors.mqtt import MqttCollector
from inventory import Inventory, parse_inventory
from streams.clock import SystemClock
from streams.deadletter import DeadLetterStore
from streams.record import Reading


def _inventory(host: str, port: int, prefix: str) -> Inventory:
    return parse_inventory(f"""
organisation: {{name: Test, population: 100, school_holiday_zone: C}}
mqtt_brokers: [{{host: {host}, port: {port}, client_id: {prefix}-collector}}]
sites:
  - id: s
    name: S
    buildings:
      - id: b
        name: B
        usage: school
        floor_area_m2: 100
        heated_area_m2: 100
        points:
          - {{id: temp, quantity: temperature, unit: degC, usage: comfort,
              mqtt: {{topic: {prefix}/b/climate, format: json, field: temperature, timestamp_field: time}}}}
          - {{id: co2, quantity: co2, unit: ppm, usage: comfort,
              mqtt: {{topic: {prefix}/b/climate, format: json, field: co2, timestamp_field: time}}}}
          - {{id: occ, quantity: occupancy, unit: "1", usage: comfort, mqtt: {{topic: {prefix}/b/occupancy}}}}
""")


def _publish(host: str, port: int, messages: list[tuple[str, bytes]]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="")
    client.connect(host, port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


async def _wait(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_decodes_and_dead_letters_bad_payloads(mqtt_server, unique_name: str) -> None:
    inv = _inventory(mqtt_server.host, mqtt_server.port, unique_name)
    dead = DeadLetterStore()
    collector = MqttCollector(inv, inv.broker("default"), SystemClock(), dead)
    got: list[Reading] = []
    await collector.start(lambda readings, ack: (got.extend(readings), ack and ack()))
    try:
        await asyncio.wait_for(collector.subscribed.wait(), 10)
        messages = [
            (f"{unique_name}/b/climate", b'{"temperature": 20.5, "co2": 640, "time": "2026-01-05T08:00:00Z"}'),
            (f"{unique_name}/b/occupancy", b"1"),
            (f"{unique_name}/b/occupancy", b"maybe"),
            (f"{unique_name}/b/climate", b"{broken"),
            (f"{unique_name}/b/climate", b'{"temperature": 21.0, "time": "2026-01-05T08:01:00Z"}'),
        ]
        await asyncio.to_thread(_publish, mqtt_server.host, mqtt_server.port, messages)
        await _wait(lambda: collector.received == len(messages))
    finally:
        await collector.stop()
    values = sorted((r.point_id, r.value) for r in got)
    assert values == [("co2", 640.0), ("occ", 1.0), ("temp", 20.5), ("temp", 21.0)]
    # Dead letters: 'maybe', the broken JSON (once per bound point), the missing co2 field.
    reasons = sorted(letter.reason for letter in dead.recent)
    assert dead.count == 4
    assert any("occ" in r and "'maybe' is not a number" in r for r in reasons)
    assert sum("not JSON" in r for r in reasons) == 2
    assert any("point co2: field 'co2' not found" in r for r in reasons)
    assert all(letter.key.startswith(unique_name) for letter in dead.recent)


async def test_unbound_topic_payload_is_kept(mqtt_server, unique_name: str) -> None:
    inv = _inventory(mqtt_server.host, mqtt_server.port, unique_name)
    dead = DeadLetterStore()
    collector = MqttCollector(inv, inv.broker("default"), SystemClock(), dead)
    readings = collector.handle(f"{unique_name}/nobody", b"12", SystemClock().now())
    assert readings == []
    assert dead.recent[0].reason == "no point is bound to this topic"
    assert dead.recent[0].payload == "12"


async def test_persistent_session_delivers_what_was_published_while_away(mqtt_server, unique_name: str) -> None:
    inv = _inventory(mqtt_server.host, mqtt_server.port, unique_name)
    got: list[Reading] = []
    first = MqttCollector(inv, inv.broker("default"), SystemClock(), DeadLetterStore())
    await first.start(lambda readings, ack: (got.extend(readings), ack and ack()))
    await asyncio.wait_for(first.subscribed.wait(), 10)
    await first.stop()
    # Econome is down (restarting); the sensors go on publishing.
    away = [(f"{unique_name}/b/occupancy", str(i % 2).encode()) for i in range(5)]
    await asyncio.to_thread(_publish, mqtt_server.host, mqtt_server.port, away)
    second = MqttCollector(inv, inv.broker("default"), SystemClock(), DeadLetterStore())
    await second.start(lambda readings, ack: (got.extend(readings), ack and ack()))
    try:
        await _wait(lambda: len(got) == 5)
    finally:
        await second.stop()
    assert [r.value for r in got] == [0.0, 1.0, 0.0, 1.0, 0.0]


async def test_username_and_password_from_the_environment(tmp_path, unique_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from econome.localservers import start_mosquitto
    from streams.errors import ConfigError

    server = start_mosquitto(tmp_path / "mq", users={"econome": "s3cret-valmont"})
    try:
        base = _inventory(server.host, server.port, unique_name)
        broker = base.broker("default").model_copy(update={"username": "econome", "password_env": "TEST_MQTT_PASSWORD"})
        collector = MqttCollector(base, broker, SystemClock(), DeadLetterStore())
        with pytest.raises(ConfigError, match="TEST_MQTT_PASSWORD is not set"):
            await collector.start(lambda readings, ack: None)
        monkeypatch.setenv("TEST_MQTT_PASSWORD", "wrong")
        refused = MqttCollector(base, broker, SystemClock(), DeadLetterStore())
        await refused.start(lambda readings, ack: None)
        await asyncio.sleep(1.0)
        assert not refused.subscribed.is_set()
        await refused.stop()
        monkeypatch.setenv("TEST_MQTT_PASSWORD", "s3cret-valmont")
        accepted = MqttCollector(base, broker, SystemClock(), DeadLetterStore())
        await accepted.start(lambda readings, ack: None)
        try:
            await asyncio.wait_for(accepted.subscribed.wait(), 10)
        finally:
            await accepted.stop()
    finally:
        server.stop()
