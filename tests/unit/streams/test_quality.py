from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from inventory import load_inventory
from streams.quality import QualityTracker
from streams.record import Quality, Reading

ROOT = Path(__file__).resolve().parents[3]
INV = load_inventory(ROOT / "examples" / "commune.yaml")
T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)


def _r(point: str, minutes: float, value: float, unit: str) -> Reading:
    return Reading(point, T0 + timedelta(minutes=minutes), value, unit)


def test_frozen_temperature_goes_stale_after_six_hours(caplog: pytest.LogCaptureFixture) -> None:
    tracker = QualityTracker(INV, T0)
    point = "mairie-bureaux-temperature"
    out = [tracker.observe(_r(point, m, 19.5, "degC")) for m in range(0, 7 * 60, 10)]
    flags = [r.quality for r in out]
    first_stale = flags.index(Quality.STALE)
    assert all(f is Quality.GOOD for f in flags[:first_stale])
    assert out[first_stale].ts - T0 > timedelta(hours=6)
    assert out[first_stale - 1].ts - T0 <= timedelta(hours=6)
    with caplog.at_level(logging.INFO, logger="streams.quality"):
        back = tracker.observe(_r(point, 7 * 60, 19.6, "degC"))
    assert back.quality is Quality.GOOD
    assert "moving again" in caplog.text
    assert "topic valmont/mairie/bureaux/climate" in caplog.text


def test_occupancy_may_hold_its_value() -> None:
    tracker = QualityTracker(INV, T0)
    out = [tracker.observe(_r("mairie-bureaux-occupancy", m, 0.0, "1")) for m in range(0, 3 * 24 * 60, 60)]
    assert {r.quality for r in out} == {Quality.GOOD}


def test_counter_stuck_only_while_power_flows() -> None:
    tracker = QualityTracker(INV, T0)
    counter, power = "mairie-elec-energy", "mairie-elec-power"
    # Night: no power, counter still: fine.
    for m in range(0, 180, 5):
        tracker.observe(_r(power, m, 20.0, "W"))
        assert tracker.observe(_r(counter, m, 1000.0, "kWh")).quality is Quality.GOOD
    # Day: 8 kW drawn but the counter does not move: stuck after an hour.
    flags = []
    for m in range(180, 300, 5):
        tracker.observe(_r(power, m, 8000.0, "W"))
        flags.append(tracker.observe(_r(counter, m, 1000.0, "kWh")).quality)
    assert flags[0] is Quality.STALE  # it had not moved for 3 h already
    # The water counter has no power companion: never stale for standing still.
    out = [tracker.observe(_r("mairie-water-volume", m, 5.0, "m3")) for m in range(0, 600, 10)]
    assert {r.quality for r in out} == {Quality.GOOD}


def test_missing_points_use_poll_interval_or_push_limit(caplog: pytest.LogCaptureFixture) -> None:
    tracker = QualityTracker(INV, T0)
    tracker.observe(_r("mairie-elec-energy", 0, 1.0, "kWh"))  # polled every 60 s
    tracker.observe(_r("mairie-bureaux-temperature", 0, 19.0, "degC"))  # MQTT
    with caplog.at_level(logging.ERROR, logger="streams.quality"):
        missing = tracker.check_missing(T0 + timedelta(minutes=5))
    assert "mairie-elec-energy" in missing
    assert "mairie-bureaux-temperature" not in missing
    assert "point mairie-elec-energy (gateway gw-centre unit 1 import_active_energy) missing" in caplog.text
    assert "mairie-bureaux-temperature" in tracker.check_missing(T0 + timedelta(minutes=31))
    caplog.clear()
    tracker.check_missing(T0 + timedelta(minutes=32))
    assert caplog.text == ""  # logged once, on the transition
    tracker.observe(_r("mairie-elec-energy", 33, 2.0, "kWh"))
    assert "mairie-elec-energy" not in tracker.check_missing(T0 + timedelta(minutes=33))
