from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from collectors.mqtt import decode_payload
from inventory import MqttBinding, Quantity
from streams.errors import DecodeError

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
PLAIN = MqttBinding(topic="t")
JSON = MqttBinding(topic="t", format="json", field="sensor.temperature", timestamp_field="time")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [(b"19.5", 19.5), (b" 1 ", 1.0), (b"true", 1.0), (b"OFF", 0.0), (b"-3e2", -300.0)],
)
def test_plain(payload: bytes, expected: float) -> None:
    assert decode_payload(PLAIN, payload, NOW, Quantity.OCCUPANCY) == (expected, NOW)


def test_json_with_time_in_payload() -> None:
    payload = b'{"sensor": {"temperature": 21.25}, "time": "2026-01-05T07:59:00+01:00"}'
    value, ts = decode_payload(JSON, payload, NOW)
    assert value == 21.25
    assert ts == datetime(2026, 1, 5, 6, 59, tzinfo=UTC)


def test_json_epoch_milliseconds_and_missing_time() -> None:
    _, ts = decode_payload(JSON, b'{"sensor": {"temperature": 3}, "time": 1767600000000}', NOW)
    assert ts == datetime.fromtimestamp(1767600000, UTC)
    assert decode_payload(JSON, b'{"sensor": {"temperature": 3}}', NOW) == (3.0, NOW)


@pytest.mark.parametrize(
    ("binding", "payload", "reason"),
    [
        (PLAIN, b"abc", "'abc' is not a number"),
        (PLAIN, b"nan", "payload is nan"),
        (PLAIN, b"\xff\xfe", "not UTF-8"),
        (JSON, b"{not json", "not JSON"),
        (JSON, b'{"sensor": {}}', "field 'sensor.temperature' not found"),
        (JSON, b'{"sensor": {"temperature": [1]}}', "is a list, not a number"),
        (JSON, b'{"sensor": {"temperature": 1}, "time": "2026-01-05T08:00:00"}', "has no UTC offset"),
    ],
)
def test_bad_payloads(binding: MqttBinding, payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason.replace("[", r"\[").replace("(", r"\(")):
        decode_payload(binding, payload, NOW)


# Payloads as the servers document them (trimmed to the fields that matter).
ZIGBEE = b'{"battery": 97, "humidity": 41.5, "illuminance_lux": 312, "linkquality": 120, "occupancy": true, "temperature": 19.3}'
CHIRPSTACK = b"""{"deduplicationId": "3ac7e3c4", "time": "2026-01-05T07:55:12.123456789+00:00",
 "deviceInfo": {"applicationName": "batiments", "devEui": "0018b20000000abc"},
 "fPort": 1, "data": "AQDmAg==", "object": {"temperature": 21.4, "co2": 812}}"""
TTN = b"""{"end_device_ids": {"device_id": "eui-a840", "application_ids": {"application_id": "valmont"}},
 "received_at": "2026-01-05T07:56:00.987654321Z",
 "uplink_message": {"f_port": 2, "decoded_payload": {"water": {"index_l": 123456}}, "received_at": "2026-01-05T07:55:59Z"}}"""


def test_zigbee2mqtt_without_time_uses_receive_time() -> None:
    binding = MqttBinding(topic="zigbee2mqtt/salle", format="zigbee2mqtt", field="occupancy")  # type: ignore[arg-type]
    assert decode_payload(binding, ZIGBEE, NOW, Quantity.OCCUPANCY) == (1.0, NOW)
    lux = MqttBinding(topic="zigbee2mqtt/salle", format="zigbee2mqtt", field="illuminance_lux")  # type: ignore[arg-type]
    assert decode_payload(lux, ZIGBEE, NOW)[0] == 312.0


def test_chirpstack_v4_uplink() -> None:
    binding = MqttBinding(topic="application/+/device/+/event/up", format="chirpstack_v4", field="co2")  # type: ignore[arg-type]
    value, ts = decode_payload(binding, CHIRPSTACK, NOW)
    assert value == 812.0
    assert ts == datetime(2026, 1, 5, 7, 55, 12, 123456, tzinfo=UTC)


def test_ttn_v3_uplink_nested_field() -> None:
    binding = MqttBinding(topic="v3/valmont@ttn/devices/eui-a840/up", format="ttn_v3", field="water.index_l")  # type: ignore[arg-type]
    value, ts = decode_payload(binding, TTN, NOW)
    assert value == 123456.0
    assert ts == datetime(2026, 1, 5, 7, 56, 0, 987654, tzinfo=UTC)
    with pytest.raises(DecodeError, match=r"uplink_message\.decoded_payload\.gas"):
        decode_payload(binding.model_copy(update={"field": "gas"}), TTN, NOW)


@pytest.mark.parametrize(
    "stamp",
    [b"1767600000", b"1767600000.25", b"1767600000250", b"1767600000250000", b"1767600000250000000",
     b'"1767600000.25"', b'"1767600000250"', b'"1767600000250000000"'],
)
def test_epoch_time_in_seconds_milliseconds_microseconds_or_nanoseconds_numbers_or_strings(stamp: bytes) -> None:
    """Devices and gateways send epoch times of each precision, some as strings: all are times, none a dead letter."""
    _, ts = decode_payload(JSON, b'{"sensor": {"temperature": 3}, "time": ' + stamp + b"}", NOW)
    expected = datetime(2026, 1, 5, 8, 0, tzinfo=UTC) + (timedelta(0) if stamp == b"1767600000" else timedelta(milliseconds=250))
    assert ts == expected


@pytest.mark.parametrize(("stamp", "reason"), [(b'"17676e"', "not ISO 8601"), (b"1e30", "out of range"),
                                               (b'"99999999999999999999999"', "out of range"), (b"-1e20", "out of range")])
def test_epoch_time_out_of_every_range_is_refused(stamp: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_payload(JSON, b'{"sensor": {"temperature": 3}, "time": ' + stamp + b"}", NOW)
