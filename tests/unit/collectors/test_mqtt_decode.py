from __future__ import annotations

from datetime import UTC, datetime

import pytest

from collectors.mqtt import decode_payload
from inventory import MqttBinding
from streams.errors import DecodeError

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
PLAIN = MqttBinding(topic="t")
JSON = MqttBinding(topic="t", format="json", field="sensor.temperature", timestamp_field="time")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [(b"19.5", 19.5), (b" 1 ", 1.0), (b"true", 1.0), (b"OFF", 0.0), (b"-3e2", -300.0)],
)
def test_plain(payload: bytes, expected: float) -> None:
    assert decode_payload(PLAIN, payload, NOW) == (expected, NOW)


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
