"""The figures of ``econome status`` (streams.status) and the read-only helpers it uses on a service's files."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from inventory import Inventory, parse_inventory
from streams.buffer import DeliveryLog
from streams.deadletter import DeadLetter, DeadLetterStore
from streams.errors import SinkError
from streams.quality import QualityTracker, StalenessLimits
from streams.record import Reading
from streams.status import DAY, WEEK, PointCounts, building_statuses, expected_readings, worst_first

NOW = datetime(2026, 1, 12, 10, tzinfo=UTC)

YAML = """
organisation: {name: Commune test, population: 1200, school_holiday_zone: A}
modbus_gateways:
  - {id: gw, host: 127.0.0.1, port: 15999, timeout: 1s}
mqtt_brokers:
  - {host: 127.0.0.1}
sites:
  - id: s1
    name: Site
    buildings:
      - id: a
        name: A
        usage: school
        floor_area_m2: 500
        heated_area_m2: 450
        points:
          - {id: a-elec, quantity: active_energy, unit: kWh, usage: general, cumulative: true, energy: electricity,
             modbus: {gateway: gw, unit: 1, register: {address: 0, data_type: uint32}, poll_interval: 1h}}
          - {id: a-temp, quantity: temperature, unit: degC, usage: comfort, mqtt: {topic: t/a/temp}}
      - id: b
        name: B
        usage: school
        floor_area_m2: 500
        heated_area_m2: 450
        points:
          - {id: b-elec, quantity: active_energy, unit: kWh, usage: general, cumulative: true, energy: electricity,
             modbus: {gateway: gw, unit: 2, register: {address: 0, data_type: uint32}, poll_interval: 1h}}
"""


@pytest.fixture
def inv() -> Inventory:
    return parse_inventory(YAML)


def test_expected_readings_come_from_the_poll_interval_or_the_push_silence_limit(inv: Inventory) -> None:
    limits = StalenessLimits()
    points = {p.id: p for _, p in inv.points()}
    assert expected_readings(points["a-elec"], DAY, limits) == 24
    assert expected_readings(points["a-elec"], WEEK, limits) == 168
    assert expected_readings(points["a-temp"], DAY, limits) == 48  # one per 30 min
    # The stale limit is the pipeline's own: the tracker reports the same silence.
    tracker = QualityTracker(inv, NOW)
    assert [limits.missing_after(p) for p in points.values()] == [tracker.missing_after(p) for p in points.values()]


def test_completeness_caps_each_point_so_a_chatty_one_hides_no_silent_one(inv: Inventory) -> None:
    counts = {
        "a-elec": PointCounts(12, 84, NOW - timedelta(minutes=30)),
        "a-temp": PointCounts(500, 600, NOW - timedelta(minutes=1)),  # 144/day pushed: capped at 48 and 336
    }
    [a, b] = building_statuses(inv, counts, NOW)
    assert a.completeness_24h == pytest.approx((12 + 48) / (24 + 48))
    assert a.completeness_7d == pytest.approx((84 + 336) / (168 + 336))
    assert a.stale_points == []
    assert a.last == NOW - timedelta(minutes=1)
    # b-elec has no reading in 7 days: stale, 0 %.
    assert b.stale_points == ["b-elec"]
    assert b.completeness_24h == 0.0
    assert b.last is None


def test_a_point_is_stale_past_three_poll_intervals_not_before(inv: Inventory) -> None:
    fresh = building_statuses(inv, {"b-elec": PointCounts(24, 168, NOW - timedelta(hours=3))}, NOW)[1]
    late = building_statuses(inv, {"b-elec": PointCounts(24, 168, NOW - timedelta(hours=3, seconds=1))}, NOW)[1]
    assert fresh.stale_points == []
    assert late.stale_points == ["b-elec"]
    assert late.problems(0.9) == ["stale points: b-elec"]


def test_unknown_counts_give_unknown_figures_and_no_problem(inv: Inventory) -> None:
    [a, _] = building_statuses(inv, None, NOW)
    assert a.points is None
    assert a.completeness_24h is None
    assert a.problems(0.9) == []
    assert a.to_json(NOW, 0.9)["completeness_7d"] is None


def test_worst_first_puts_problems_first_then_lowest_completeness(inv: Inventory) -> None:
    good = {"a-elec": PointCounts(24, 168, NOW), "a-temp": PointCounts(48, 336, NOW), "b-elec": PointCounts(24, 168, NOW)}
    a, b = building_statuses(inv, good, NOW)
    assert [s.id for s in worst_first([a, b], 0.9)] == ["a", "b"]  # ties by id
    low = {**good, "a-elec": PointCounts(23, 100, NOW)}  # 23/24 for a-elec: 71/72 = 98.6 % > 90 %
    a, b = building_statuses(inv, low, NOW)
    assert [s.id for s in worst_first([a, b], 0.9)] == ["a", "b"]
    assert a.problems(0.9) == []
    assert a.problems(0.99) == ["24 h completeness 98.6 % < 99 %"]
    worse = {**good, "b-elec": PointCounts(20, 168, NOW)}  # 20/24 = 83 %: a problem, first
    a, b = building_statuses(inv, worse, NOW)
    assert [s.id for s in worst_first([a, b], 0.9)] == ["b", "a"]


def test_delivery_log_inspect_counts_what_waits_read_only(tmp_path: Path) -> None:
    path = tmp_path / "delivery.sqlite"
    log = DeliveryLog(path)
    first = NOW - timedelta(hours=2)
    log.append([Reading("p", first + timedelta(minutes=m), 1.0, "kWh") for m in range(5)], ["x"] * 5)
    log.add_outbox(["agg 1", "agg 2"], processed_seq=5)
    depth = DeliveryLog.inspect(path)
    assert (depth.readings, depth.lines, depth.rows, depth.oldest) == (5, 2, 7, first)
    assert depth.rows == log.depth()
    batch = log.next_batch(3)  # the three oldest readings reach InfluxDB
    log.ack(batch)
    depth = DeliveryLog.inspect(path)
    assert (depth.readings, depth.lines, depth.oldest) == (2, 2, first + timedelta(minutes=3))
    assert depth.rows == log.depth()
    log.close()
    with pytest.raises(SinkError, match="no such file"):
        DeliveryLog.inspect(tmp_path / "none.sqlite")
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).close()
    with pytest.raises(SinkError, match="not readable"):
        DeliveryLog.inspect(other)


def test_dead_letter_counts_read_from_the_files_equal_the_store_s_across_rotations(tmp_path: Path) -> None:
    path = tmp_path / "dead-letters.jsonl"
    assert DeadLetterStore.stored_counts(path) == {}
    store = DeadLetterStore(path, max_file_bytes=1024, keep_files=1)
    for i in range(30):
        store.add(DeadLetter("mqtt" if i % 3 else "sink", "k", "x" * 100, "bad", NOW))
    assert store.rotations >= 2  # rotated files deleted, their counts kept
    counts = DeadLetterStore.stored_counts(path)
    assert counts == {"mqtt": 20, "sink": 10}
    assert sum(counts.values()) == store.count == DeadLetterStore(path).count
