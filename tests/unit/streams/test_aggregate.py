from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from inventory import load_inventory
from streams.aggregate import AggregateRecord, StreamProcessor, StreamSettings
from streams.record import Quality, Reading

ROOT = Path(__file__).resolve().parents[3]
INV = load_inventory(ROOT / "examples" / "commune.yaml")


def _series(point: str, unit: str, start: datetime, step: timedelta, values: list[float]) -> list[Reading]:
    return [Reading(point, start + i * step, v, unit) for i, v in enumerate(values)]


def _by(records: list[AggregateRecord], measurement: str, window: str, **tags: str) -> list[AggregateRecord]:
    return [
        r for r in records
        if r.measurement == measurement and dict(r.tags)["window"] == window
        and all(dict(r.tags).get(k) == v for k, v in tags.items())
    ]  # fmt: skip


def test_energy_is_conserved_across_window_sizes() -> None:
    proc = StreamProcessor(INV)
    start = datetime(2026, 1, 5, 5, 3, tzinfo=UTC)
    indexes = [1000.0 + 0.37 * i + (i % 7) * 0.01 for i in range(600)]
    proc.process(_series("mairie-elec-energy", "kWh", start, timedelta(minutes=1, seconds=7), indexes))
    records = proc.flush()
    total = indexes[-1] - indexes[0]
    for window in ("10m", "1h", "1d"):
        sums = [r.fields["sum"] for r in _by(records, "agg_point", window, point="mairie-elec-energy")]
        assert math.isclose(sum(sums), total, rel_tol=1e-9), window
        eur = sum(r.fields["eur"] for r in _by(records, "agg_point", window, point="mairie-elec-energy"))
        assert math.isclose(eur, total * 0.2516, rel_tol=1e-9)  # the commune's own electricity tariff


def test_gas_in_m3_becomes_kwh_and_wh_becomes_kwh() -> None:
    proc = StreamProcessor(INV)
    t = datetime(2026, 1, 5, 7, tzinfo=UTC)
    proc.process(_series("mairie-gas-volume", "m3", t, timedelta(minutes=5), [500.0, 500.5, 501.0]))
    proc.process(_series("ecole-pasteur-elec-energy", "Wh", t, timedelta(minutes=5), [1e6, 1e6 + 2500, 1e6 + 5000]))
    records = proc.flush()
    gas = _by(records, "agg_point", "1h", point="mairie-gas-volume")[0].fields
    assert gas["sum"] == pytest.approx(1.0)
    assert gas["kwh"] == pytest.approx(11.2)
    assert gas["kgco2e"] == pytest.approx(11.2 * 0.227)
    elec = _by(records, "agg_point", "1h", point="ecole-pasteur-elec-energy")[0].fields
    assert elec["kwh"] == pytest.approx(5.0)


def test_gap_is_spread_and_flagged() -> None:
    proc = StreamProcessor(INV)
    t = datetime(2026, 1, 5, 6, tzinfo=UTC)
    # Readings every minute, then the meter is silent for 3 hours.
    proc.process(_series("mairie-elec-energy", "kWh", t, timedelta(minutes=1), [100.0, 101.0]))
    proc.process([Reading("mairie-elec-energy", t + timedelta(hours=3, minutes=1), 131.0, "kWh")])
    hours = _by(proc.flush(), "agg_point", "1h", point="mairie-elec-energy")
    assert [h.fields["sum"] for h in hours] == pytest.approx([11.0 - 1 / 6, 10.0, 10.0, 1 / 6])
    assert all(h.fields["estimated"] > 0 for h in hours)


def test_usages_add_up_to_the_building_with_submeters_and_virtual_meters() -> None:
    proc = StreamProcessor(INV)
    t = datetime(2026, 1, 5, 8, tzinfo=UTC)
    step = timedelta(minutes=10)
    for building in ("gymnase-batum", "centre-culturel"):
        proc.process(_series(f"{building}-elec-energy", "kWh", t, step, [100.0, 130.0, 160.0]))
        proc.process(_series(f"{building}-light-energy", "kWh", t, step, [10.0, 20.0, 30.0]))
        proc.process(_series(f"{building}-gas-volume", "m3", t, step, [7.0, 8.0, 9.0]))
    records = proc.flush()
    for building in ("gymnase-batum", "centre-culturel"):
        total = _by(records, "agg_building", "1h", building=building)[0].fields["kwh"]
        assert total == pytest.approx(60.0 + 2 * 11.2)  # the lighting sub-meter is inside the general meter
        usages = {dict(r.tags)["usage"]: r.fields["kwh"] for r in _by(records, "agg_usage", "1h", building=building)}
        assert usages == pytest.approx({"general": 40.0, "lighting": 20.0, "heating": 22.4})
        assert sum(usages.values()) == pytest.approx(total)
    virtual = _by(records, "agg_point", "1h", point="centre-culturel-elec-hors-eclairage")[0]
    assert virtual.fields["kwh"] == pytest.approx(40.0)


def test_instantaneous_and_occupancy() -> None:
    proc = StreamProcessor(INV)
    t = datetime(2026, 1, 5, 8, tzinfo=UTC)
    proc.process(_series("mairie-bureaux-temperature", "degC", t, timedelta(minutes=15), [18.0, 19.0, 20.0, 21.0]))
    proc.process(_series("mairie-bureaux-occupancy", "1", t, timedelta(minutes=15), [0.0, 1.0, 1.0, 1.0]))
    records = proc.flush()
    temp = _by(records, "agg_point", "1h", point="mairie-bureaux-temperature")[0].fields
    assert (temp["mean"], temp["min"], temp["max"], temp["count"]) == (19.5, 18.0, 21.0, 4.0)
    assert _by(records, "agg_point", "1h", point="mairie-bureaux-occupancy")[0].fields["ratio"] == 0.75


def test_rejects_bad_readings_with_reasons() -> None:
    proc = StreamProcessor(INV)
    t = datetime(2026, 1, 5, 8, tzinfo=UTC)
    result = proc.process([
        Reading("nobody", t, 1.0, "kWh"),
        Reading("mairie-bureaux-temperature", t, float("nan"), "degC"),
        Reading("mairie-bureaux-occupancy", t, 3.0, "1"),
        Reading("mairie-bureaux-temperature", t, 19.0, "K"),
        Reading("mairie-bureaux-co2", t, 9000.0, "ppm") if False else Reading("mairie-bureaux-temperature", t, 58.0, "degC"),
    ])  # fmt: skip
    reasons = [reason for _, reason in result.rejected]
    assert reasons[0] == "point nobody is not in the inventory"
    assert "is not a number" in reasons[1]
    assert "outside the physical range of occupancy" in reasons[2]
    assert "unit 'K', the inventory says 'degC'" in reasons[3]
    assert [r.quality for r in result.accepted] == [Quality.SUSPECT]


def test_windows_close_on_the_watermark_and_late_readings_correct_them() -> None:
    proc = StreamProcessor(INV, StreamSettings(allowed_lateness=timedelta(minutes=5)))
    t = datetime(2026, 1, 5, 8, tzinfo=UTC)
    point = "mairie-bureaux-temperature"
    proc.process(_series(point, "degC", t, timedelta(minutes=2), [20.0] * 5))  # 08:00 .. 08:08
    assert proc.advance() == []  # nothing closed yet
    proc.process([Reading(point, t + timedelta(minutes=16), 20.0, "degC")])  # watermark 08:11
    first = _by(proc.advance(), "agg_point", "10m", point=point)
    assert [(r.start.minute, r.fields["count"]) for r in first] == [(0, 5.0)]
    result = proc.process([Reading(point, t + timedelta(minutes=9), 25.0, "degC")])  # late for 08:00-08:10
    assert result.late
    assert proc.late_count == 1
    corrected = _by(proc.advance(), "agg_point", "10m", point=point)
    assert [(r.start.minute, r.fields["count"], r.fields["max"]) for r in corrected] == [(0, 6.0, 25.0)]


def test_dst_day_has_23_hourly_windows_and_one_day() -> None:
    proc = StreamProcessor(INV)
    paris_midnight = datetime(2026, 3, 28, 23, tzinfo=UTC)  # 29 March 00:00 in Paris
    n = 23 * 6 + 1
    indexes = [float(i) for i in range(n)]
    proc.process(_series("mairie-elec-energy", "kWh", paris_midnight, timedelta(minutes=10), indexes))
    records = proc.flush()
    hours = _by(records, "agg_point", "1h", point="mairie-elec-energy")
    days = _by(records, "agg_point", "1d", point="mairie-elec-energy")
    assert len(hours) == 23
    assert [d.start for d in days] == [paris_midnight]
    assert days[0].fields["sum"] == pytest.approx(23 * 6)


def test_state_round_trip_gives_the_same_aggregates() -> None:
    t = datetime(2026, 1, 5, 8, tzinfo=UTC)
    readings = _series("mairie-elec-energy", "kWh", t, timedelta(minutes=3), [float(i) for i in range(100)])
    whole = StreamProcessor(INV)
    whole.process(readings)
    halves = StreamProcessor(INV)
    halves.process(readings[:50])
    state = json.loads(json.dumps(halves.to_dict()))
    resumed = StreamProcessor(INV)
    resumed.load(state)
    resumed.process(readings[50:])
    assert [r.line() for r in resumed.flush()] == [r.line() for r in whole.flush()]


def test_readings_past_the_retention_are_reported_too_late() -> None:
    proc = StreamProcessor(INV, StreamSettings(allowed_lateness=timedelta(minutes=5), retention=timedelta(hours=1)))
    t = datetime(2026, 1, 5, 8, tzinfo=UTC)
    point = "mairie-bureaux-temperature"
    proc.process([Reading(point, t, 20.0, "degC")])
    proc.process([Reading(point, t + timedelta(hours=5), 20.0, "degC")])
    proc.advance()  # closes and, past the retention, drops the 08:00 windows
    result = proc.process([Reading(point, t + timedelta(minutes=1), 21.0, "degC")])
    assert [r.ts for r in result.too_late] == [t + timedelta(minutes=1)]
    assert result.late  # late too, and still accepted for the raw measurement


def _portfolio_readings(start: datetime, minutes: range) -> list[Reading]:
    """Every kWh counter and every temperature of the commune, read every 2 minutes."""
    out = []
    for minute in minutes[::2]:
        for _, point in INV.points():
            ts = start + timedelta(minutes=minute)
            if point.cumulative and point.unit == "kWh":
                out.append(Reading(point.id, ts, 1000.0 + 0.5 * minute, "kWh"))
            elif point.unit == "degC":
                out.append(Reading(point.id, ts, 19.0 + (minute % 3), "degC"))
    return out


def test_a_late_reading_re_emits_only_its_point_and_building_in_its_window() -> None:
    # Issue 15: one late reading re-emitted the closed window of every building (1,200
    # records at 100 buildings for one reading), not only what it changed.
    settings = StreamSettings(allowed_lateness=timedelta(minutes=5))
    proc = StreamProcessor(INV, settings)
    t = datetime(2026, 1, 5, 8, tzinfo=UTC)
    on_time = _portfolio_readings(t, range(26))  # 08:00 .. 08:24: watermark 08:19
    proc.process(on_time)
    first = proc.advance()
    closed = _by(first, "agg_building", "10m")
    metered = {b.id for b, p in INV.points() if p.cumulative and p.unit == "kWh"}
    assert sorted(dict(r.tags)["building"] for r in closed) == sorted(metered)  # every building, once
    assert len(metered) > 10
    point = "mairie-bureaux-temperature"
    late = Reading(point, t + timedelta(minutes=9), 30.0, "degC")  # in 08:00-08:10, closed
    result = proc.process([late])
    assert result.late == [late]
    again = proc.advance()
    assert {(r.measurement, dict(r.tags).get("point"), r.start) for r in again if r.measurement == "agg_point"} == {
        ("agg_point", point, t)
    }
    assert {dict(r.tags)["building"] for r in again} == {"mairie"}
    assert {(dict(r.tags)["window"], r.start) for r in again} == {("10m", t)}
    assert len(again) == 1 + len(_by(first, "agg_usage", "10m", building="mairie")) + 1  # point, usages, building
    # What is emitted again is what a processor that got the reading in time gives for those series.
    reference = StreamProcessor(INV, settings)
    reference.process(sorted([*on_time, late], key=lambda r: r.ts))
    expected = {(r.measurement, r.tags, r.start): r.fields for r in reference.flush()}
    assert {(r.measurement, r.tags, r.start): r.fields for r in again} == {
        (r.measurement, r.tags, r.start): expected[(r.measurement, r.tags, r.start)] for r in again
    }
    assert _by(again, "agg_point", "10m", point=point)[0].fields["max"] == 30.0


def test_the_points_to_emit_again_survive_a_state_round_trip() -> None:
    settings = StreamSettings(allowed_lateness=timedelta(minutes=5))
    t = datetime(2026, 1, 5, 8, tzinfo=UTC)
    proc = StreamProcessor(INV, settings)
    proc.process(_portfolio_readings(t, range(26)))
    proc.advance()
    proc.process([Reading("mairie-bureaux-temperature", t + timedelta(minutes=9), 30.0, "degC")])
    resumed = StreamProcessor(INV, settings)
    resumed.load(json.loads(json.dumps(proc.to_dict())))
    assert [r.line() for r in resumed.advance()] == [r.line() for r in proc.advance()]
    # A state saved in format 1 (whole windows marked) emits the whole window again, as it did.
    old = StreamProcessor(INV, settings)
    old.process(_portfolio_readings(t, range(26)))
    state = old.to_dict()
    state["format_version"] = 1
    state["dirty"] = [[size, start] for size, start, _ in state["dirty"]]
    from_v1 = StreamProcessor(INV, settings)
    from_v1.load(state)
    assert [r.line() for r in from_v1.advance()] == [r.line() for r in old.advance()]


def test_a_closed_window_is_emitted_a_limited_batch_at_a_time_with_nothing_lost() -> None:
    # Issue 15: a window of 3,000 buildings is 300,000 records, seconds in one call.
    settings = StreamSettings(allowed_lateness=timedelta(minutes=5))
    t = datetime(2026, 1, 5, 8, tzinfo=UTC)
    whole = StreamProcessor(INV, settings)
    whole.process(_portfolio_readings(t, range(26)))
    expected = whole.advance()
    assert not whole.emission_pending
    parts = StreamProcessor(INV, settings)
    parts.process(_portfolio_readings(t, range(26)))
    batches = []
    while True:
        batch = parts.advance(limit=10)
        if not batch:
            break
        batches.append(batch)
        # Whole buildings: a batch passes the limit by at most one building's records.
        assert len([r for r in batch if r.measurement == "agg_point"]) < 10 + 12
    assert not parts.emission_pending
    assert len(batches) > 3
    assert sorted(r.line() for b in batches for r in b) == sorted(r.line() for r in expected)
    # A building's records come out whole, in one batch: its total is never written from part of its points.
    for batch in batches:
        for building in {dict(r.tags)["building"] for r in batch if r.measurement == "agg_building"}:
            assert [r.line() for r in batch if dict(r.tags)["building"] == building] == [
                r.line() for r in expected if dict(r.tags)["building"] == building
            ]


def test_buildings_changed_while_their_window_is_emitted_in_batches_are_emitted_again_corrected() -> None:
    # The buildings left to emit are listed once per window (issue 15: grouping them again at every
    # batch made a 150,000-point window quadratic); buildings changed after they were emitted come out again.
    settings = StreamSettings(allowed_lateness=timedelta(minutes=5))
    t = datetime(2026, 1, 5, 8, tzinfo=UTC)
    readings = _portfolio_readings(t, range(26))
    parts = StreamProcessor(INV, settings)
    parts.process(readings)
    last: dict[object, str] = {}
    emitted: set[str] = set()
    for _ in range(5):  # a building per batch
        for r in parts.advance(limit=1):
            last[(r.measurement, r.tags, r.start)] = r.line()
            emitted.add(dict(r.tags)["building"])
    # Their temperatures read again inside the closed window: more points than a batch takes.
    late = [
        Reading(p.id, t + timedelta(minutes=1, seconds=30), 25.0, "degC")
        for b, p in INV.points() if b.id in emitted and p.unit == "degC"
    ]  # fmt: skip
    assert len(late) > 1
    parts.process(late)
    while batch := parts.advance(limit=1):
        for r in batch:
            last[(r.measurement, r.tags, r.start)] = r.line()
    assert not parts.emission_pending
    whole = StreamProcessor(INV, settings)
    whole.process([*readings, *late])
    assert last == {(r.measurement, r.tags, r.start): r.line() for r in whole.advance()}
