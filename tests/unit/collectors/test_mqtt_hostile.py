"""Hostile MQTT payloads: every one becomes a dead letter with its reason, none escapes (issue 10).

``MqttCollector.handle`` is what paho's thread schedules on the event loop for
each message; these tests call it directly, with no broker.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.mqtt import DEAD_LETTER_PREFIX_BYTES, MAX_JSON_NESTING, MAX_PAYLOAD_BYTES, MqttCollector, decode_payload
from inventory import Inventory, MqttBinding, Quantity, parse_inventory
from streams.clock import ManualClock
from streams.deadletter import DeadLetterStore
from streams.errors import DecodeError

NOW = datetime(2026, 1, 5, 8, 0, 0, 123456, tzinfo=UTC)
JSON = MqttBinding(topic="t", format="json", field="v", timestamp_field="time")  # type: ignore[arg-type]

INVENTORY = """
organisation: {name: Test, population: 100, school_holiday_zone: C}
mqtt_brokers: [{host: 127.0.0.1, port: 1}]
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
          - {id: temp, quantity: temperature, unit: degC, usage: comfort,
             mqtt: {topic: b/climate, format: json, field: v, timestamp_field: time}}
          - {id: temp2, quantity: temperature, unit: degC, usage: comfort,
             mqtt: {topic: b/climate, format: json, field: w, timestamp_field: time}}
          - {id: occ, quantity: occupancy, unit: "1", usage: comfort, mqtt: {topic: b/occupancy}}
          - {id: energy, quantity: active_energy, unit: kWh, usage: general, mqtt: {topic: b/energy}}
"""


class Acks:
    """Counts acknowledgements."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def inventory() -> Inventory:
    return parse_inventory(INVENTORY)


def _collector(inventory: Inventory, dead: DeadLetterStore | None = None) -> MqttCollector:
    collector = MqttCollector(inventory, inventory.broker("default"), ManualClock(NOW), dead or DeadLetterStore())
    # What start() installs: the pipeline's emit, which keeps the ack until the readings are on disk.
    collector._emit = lambda readings, ack: None
    return collector


def test_booleans_only_for_binary_quantities() -> None:
    plain = MqttBinding(topic="t")
    assert decode_payload(plain, b"on", NOW, Quantity.OCCUPANCY)[0] == 1.0
    assert decode_payload(JSON, b'{"v": false}', NOW, Quantity.STATE)[0] == 0.0
    with pytest.raises(DecodeError, match="field 'v': boolean for a temperature"):
        decode_payload(JSON, b'{"v": true}', NOW, Quantity.TEMPERATURE)
    with pytest.raises(DecodeError, match="payload: boolean for an active energy"):
        decode_payload(plain, b"off", NOW, Quantity.ACTIVE_ENERGY)


def _deep(n: int) -> bytes:
    return b'{"v": ' + b"[" * n + b"]" * n + b"}"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"v": 1, "time": 1e300}', "timestamp 1e+300 is out of range"),
        (b'{"v": 1, "time": -1e18}', "out of range"),
        (b'{"v": 1, "time": NaN}', "timestamp nan is out of range"),
        (b'{"v": 1, "time": 99999999999999999999999}', "out of range"),
        (b'{"v": 1, "time": "0000-01-01T00:00:00Z"}', "is not ISO 8601"),
        (b'{"v": 1, "time": "10000-01-01T00:00:00Z"}', "is not ISO 8601"),
        (b'{"v": 1, "time": "0001-01-01T00:00:00+01:00"}', "is out of range"),
        (b'{"v": 1, "time": "9999-12-31T23:59:59-01:00"}', "is out of range"),
        (b'{"v": 1e400}', "field 'v' is inf"),
        (b'{"v": -Infinity}', "field 'v' is -inf"),
        (b'{"v": ' + b"9" * 400 + b"}", "integer too large for a float"),
        (b'{"v": ' + b"9" * 5000 + b"}", "not usable JSON"),
        (b'{"v": true}', "boolean for a temperature"),
        (b'{"v": "on"}', "boolean for a temperature"),
        (_deep(MAX_JSON_NESTING), f"JSON nested deeper than {MAX_JSON_NESTING} levels"),
        (b"[" * 60_000, f"JSON nested deeper than {MAX_JSON_NESTING} levels"),
        (b'{"v": 1, "time": "\xff"}', "not UTF-8"),
        (b'{"v": {"a": 1}}', "is a dict, not a number"),
    ],
)
def test_hostile_json_becomes_a_dead_letter_with_its_reason(inventory: Inventory, payload: bytes, reason: str) -> None:
    dead = DeadLetterStore()
    collector = _collector(inventory, dead)
    ack = Acks()
    assert collector.handle("b/climate", payload, NOW, ack) == []
    # Both points of the topic fail (temp2's field 'w' is missing anyway); the message is acked once.
    assert ack.count == 1
    reasons = [letter.reason for letter in dead.recent]
    assert any(r.startswith("point temp: ") and reason in r for r in reasons), reasons
    assert all(letter.key == "b/climate" for letter in dead.recent)


def test_nesting_inside_strings_is_not_counted(inventory: Inventory) -> None:
    payload = json.dumps({"v": 19.5, "note": "[" * 100 + '"{' * 50}).encode()
    readings = _collector(inventory).handle("b/climate", payload, NOW)
    assert [(r.point_id, r.value) for r in readings] == [("temp", 19.5)]


def test_nesting_up_to_the_limit_is_decoded() -> None:
    payload = b'{"v": 1, "x": ' + b"[" * (MAX_JSON_NESTING - 1) + b"]" * (MAX_JSON_NESTING - 1) + b"}"
    assert decode_payload(JSON, payload, NOW, Quantity.TEMPERATURE) == (1.0, NOW)


def test_oversized_payload_is_one_dead_letter_keeping_a_prefix(inventory: Inventory) -> None:
    dead = DeadLetterStore()
    ack = Acks()
    payload = b'{"v": 1, "pad": "' + b"x" * (1024 * 1024) + b'"}'
    assert _collector(inventory, dead).handle("b/climate", payload, NOW, ack) == []
    assert ack.count == 1
    assert dead.count == 1  # once for the message, not once per bound point
    letter = dead.recent[0]
    assert letter.reason == f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit"
    assert len(letter.payload) == DEAD_LETTER_PREFIX_BYTES


def test_payload_at_the_size_limit_is_decoded(inventory: Inventory) -> None:
    head = b'{"v": 2, "pad": "'
    payload = head + b"x" * (MAX_PAYLOAD_BYTES - len(head) - 2) + b'"}'
    assert len(payload) == MAX_PAYLOAD_BYTES
    readings = _collector(inventory).handle("b/climate", payload, NOW)
    assert [r.value for r in readings] == [2.0]


def test_receive_time_stamps_are_unique_per_point(inventory: Inventory) -> None:
    collector = _collector(inventory)
    stamps = [collector.handle("b/occupancy", b"1", NOW)[0].ts for _ in range(5)]
    base = NOW.replace(microsecond=123000)  # milliseconds, as InfluxDB stores them
    assert stamps == [base + timedelta(milliseconds=i) for i in range(5)]
    assert collector.nudged == 4
    # Another point has its own sequence; a later receive time is kept as it is.
    assert collector.handle("b/energy", b"12.5", NOW)[0].ts == base
    later = NOW + timedelta(seconds=1)
    assert collector.handle("b/occupancy", b"0", later)[0].ts == later.replace(microsecond=123000)
    assert collector.nudged == 4


def test_payload_time_is_kept_even_when_repeated(inventory: Inventory) -> None:
    collector = _collector(inventory)
    payload = b'{"v": 20.5, "time": "2026-01-05T07:00:00Z"}'
    first, second = (collector.handle("b/climate", payload, NOW)[0] for _ in range(2))
    assert first.ts == second.ts == datetime(2026, 1, 5, 7, tzinfo=UTC)
    assert collector.nudged == 0


def test_unwritable_dead_letter_leaves_the_message_unacknowledged(inventory: Inventory, tmp_path: Path) -> None:
    # The store's file becomes a directory: the write fails as a full or read-only disk would.
    path = tmp_path / "dead-letters.jsonl"
    dead = DeadLetterStore(path)
    path.mkdir()
    ack = Acks()
    assert _collector(inventory, dead).handle("b/occupancy", b"maybe", NOW, ack) == []
    assert ack.count == 0  # the broker keeps it and delivers it again


_json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(["v", "w", "time"]), children),
    max_leaves=20,
)
_payloads = st.one_of(
    st.binary(max_size=200),
    _json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    st.dictionaries(st.sampled_from(["v", "w", "time"]), _json_values).map(lambda d: json.dumps(d).encode()),
    st.integers(min_value=1, max_value=5000).map(lambda n: b"[" * n),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=_payloads, topic=st.sampled_from(["b/climate", "b/occupancy", "b/energy", "b/other", "b//+#"]))
def test_no_payload_escapes_handle(inventory: Inventory, payload: bytes, topic: str) -> None:
    dead = DeadLetterStore()
    collector = _collector(inventory, dead)
    ack = Acks()
    readings = collector.handle(topic, payload, NOW, ack)
    # Every message gives readings or dead letters; one with no reading is acknowledged at once.
    assert readings or dead.count > 0
    assert ack.count == (0 if readings else 1)
    assert all(letter.reason for letter in dead.recent)
