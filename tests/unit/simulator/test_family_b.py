"""Family B: the independent scenario family (issue 11)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from anomalies.detect import read_readings_csv
from inventory import Inventory, load_inventory
from simulator.family_b import (
    FAMILY_B_CONFIG,
    FamilyBHistory,
    family_b_fault_plan,
    read_bookings,
    simulate_family_b,
    write_family_b,
    write_readings,
)
from simulator.faults import Fault, FaultKind, read_ground_truth

TZ = ZoneInfo("Europe/Paris")
HOUR = 3600.0


@pytest.fixture(scope="module")
def family_b() -> Inventory:
    return load_inventory(FAMILY_B_CONFIG)


@pytest.fixture(scope="module")
def winter(family_b: Inventory) -> FamilyBHistory:
    return simulate_family_b(family_b, datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 26, tzinfo=UTC), seed=5,
                             quirks=False)


def _local(t: float) -> datetime:
    return datetime.fromtimestamp(t, TZ)


def _hourly(values: np.ndarray) -> np.ndarray:
    """Consumption per 15-minute step from an index."""
    return np.diff(values)


def _daily(values: np.ndarray) -> np.ndarray:
    """Consumption per whole day (96 steps) from an index."""
    steps = np.diff(values)
    return steps[: steps.size // 96 * 96].reshape(-1, 96).sum(axis=1)


def test_inventory_has_the_archetypes(family_b: Inventory) -> None:
    buildings = {b.id: b for _, b in family_b.buildings()}
    assert len(buildings) >= 8
    assert family_b.organisation.school_holiday_zone == "A"
    assert buildings["piscine-sioule"].comfort().setpoint_c == 27
    hall = buildings["salle-fetes"]
    assert hall.schedule.bookings is not None
    assert not hall.schedule.weekly
    assert buildings["gymnase-sioule"].heating_setpoint_occupied_c == 15
    gas = next(p for p in buildings["multi-accueil"].points if p.id.endswith("gas-volume"))
    assert [u.value for u in gas.serves] == ["dhw"]
    assert [p.quantity.value for p in buildings["maternelle-bourg"].points] == ["gas_volume"]
    assert [p.quantity.value for p in buildings["eglise-saint-remy"].points] == ["temperature"]


def test_deterministic_per_seed(family_b: Inventory) -> None:
    start, end = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 6, tzinfo=UTC)
    a = simulate_family_b(family_b, start, end, seed=3)
    b = simulate_family_b(family_b, start, end, seed=3)
    c = simulate_family_b(family_b, start, end, seed=4)
    for pid in a.values:
        np.testing.assert_array_equal(a.values[pid], b.values[pid])
    assert a.duplicates == b.duplicates
    assert a.late_rows == b.late_rows
    assert any(not np.array_equal(a.values[p], c.values[p], equal_nan=True) for p in a.values)
    assert family_b_fault_plan(family_b, 2026, 7) == family_b_fault_plan(family_b, 2026, 7)


def test_indoor_temperature_follows_setpoints_and_cools_down_for_hours(winter: FamilyBHistory) -> None:
    t = winter.times_s
    air = winter.indoor_c["groupe-scolaire"]
    sp = winter.setpoint_c["groupe-scolaire"]
    # Mid-morning of open days, the classes are at the setpoint.
    morning = np.array([_local(x).hour == 10 and _local(x).weekday() in (0, 1, 3, 4) for x in t])
    assert np.all(np.abs(air[morning] - sp[morning]) < 1.0)
    # The hall cools down over hours after a booking ends: still above its setback one hour later.
    hall = winter.indoor_c["salle-fetes"]
    bookings = read_bookings(FAMILY_B_CONFIG.parent / "family_b_bookings.ics")
    ends = [b for a, b in bookings if t[0] + 3 * HOUR < b < t[-1] - 6 * HOUR]
    assert ends
    for end in ends:
        i = int(np.searchsorted(t, end))
        assert hall[i + 4] > 12.5  # one hour after closing
        assert hall[i + 4] < hall[i - 1]  # but cooling


def test_booked_hall_warms_before_bookings(winter: FamilyBHistory) -> None:
    t = winter.times_s
    hall = winter.indoor_c["salle-fetes"]
    heat = winter.heat_kw["salle-fetes"]
    bookings = read_bookings(FAMILY_B_CONFIG.parent / "family_b_bookings.ics")
    # Bookings that follow a cold hall (no booking in the 12 hours before).
    starts = [a for k, (a, _) in enumerate(bookings)
              if t[0] + 24 * HOUR < a < t[-1] and (k == 0 or bookings[k - 1][1] < a - 12 * HOUR)]
    assert starts
    for start in starts:
        i = int(np.searchsorted(t, start))
        assert heat[i - 4] > 5.0  # the boiler runs the hour before
        assert hall[i] > 16.0  # warm when the guests arrive
        assert hall[i] > float(np.min(hall[i - 48:i])) + 3.0  # from a cold hall, within the twelve hours before


def test_heating_meter_flat_in_summer_shutdown_and_pool_heated_every_day(family_b: Inventory) -> None:
    summer = simulate_family_b(family_b, datetime(2026, 7, 6, tzinfo=UTC), datetime(2026, 7, 13, tzinfo=UTC), seed=5,
                               quirks=False)
    school_gas = summer.values["groupe-scolaire-gas-volume"]
    assert np.all(_hourly(school_gas) == 0.0)
    # The crèche's gas meter also serves hot water: it keeps counting in summer.
    assert np.all(_daily(summer.values["multi-accueil-gas-volume"]) > 0.5)
    pool = _daily(summer.values["piscine-sioule-gas-volume"]) * 10.9
    assert np.all(pool > 1000.0)  # kWh a day, even in July


def _with_and_without(
    inv: Inventory, fault: Fault, start: datetime, end: datetime,
) -> tuple[np.ndarray, FamilyBHistory, FamilyBHistory]:
    clean = simulate_family_b(inv, start, end, seed=11, quirks=False)
    faulty = simulate_family_b(inv, start, end, seed=11, faults=[fault], quirks=False)
    return clean.times_s, clean, faulty


CASES = [
    (FaultKind.HEATING_LEFT_ON, "maternelle-bourg", None, {}, "maternelle-bourg-gas-volume", 5.0),
    (FaultKind.SETPOINT_RAISED, "multi-accueil", None, {"delta_c": 2.5}, "multi-accueil-gas-volume", 5.0),
    (FaultKind.CONSUMPTION_EXCESS, "maison-services", None, {"increase_pct": 30.0}, "maison-services-gas-volume", 0.0),
    (FaultKind.WATER_LEAK, "gymnase-sioule", None, {"flow_m3_per_h": 0.1}, "gymnase-sioule-water-volume", 0.0),
    (FaultKind.STUCK_COUNTER, "groupe-scolaire", "groupe-scolaire-elec-energy", {}, "groupe-scolaire-elec-energy", 0.0),
    (FaultKind.LIGHTING_LEFT_ON, "gymnase-sioule", None, {}, "gymnase-sioule-elec-energy", 0.0),
    (FaultKind.BASELOAD_CREEP, "piscine-sioule", None, {"increase_pct": 25.0}, "piscine-sioule-elec-energy", 0.0),
    (FaultKind.SENSOR_DRIFT, "eglise-saint-remy", "eglise-saint-remy-nef-temperature", {},
     "eglise-saint-remy-nef-temperature", 0.0),
    (FaultKind.SENSOR_FLATLINE, "multi-accueil", "multi-accueil-vie-temperature", {}, "multi-accueil-vie-temperature", 0.0),
]


@pytest.mark.parametrize(("kind", "building", "point", "params", "observed", "tail_days"), CASES,
                         ids=[c[0].value for c in CASES])
def test_each_fault_changes_the_data_where_and_only_where_the_truth_says(
    family_b: Inventory, kind: FaultKind, building: str, point: str | None, params: dict[str, float],
    observed: str, tail_days: float,
) -> None:
    start, end = datetime(2026, 2, 2, tzinfo=UTC), datetime(2026, 2, 23, tzinfo=UTC)
    fault = Fault(kind=kind, building=building, point=point, params=params,
                  start=datetime(2026, 2, 6, 22, tzinfo=UTC), end=datetime(2026, 2, 12, 22, tzinfo=UTC))
    t, clean, faulty = _with_and_without(family_b, fault, start, end)
    a, b = clean.values[observed], faulty.values[observed]
    if fault.kind in {FaultKind.SENSOR_DRIFT, FaultKind.SENSOR_FLATLINE}:
        a_step, b_step, times = a, b, t
    else:
        a_step, b_step, times = np.diff(a), np.diff(b), t[:-1]
    inside = (times >= fault.start.timestamp()) & (times < fault.end.timestamp())
    before = times < fault.start.timestamp()
    after = times >= fault.end.timestamp() + tail_days * 86_400 + (HOUR if kind is FaultKind.STUCK_COUNTER else 0)
    np.testing.assert_array_equal(a_step[before], b_step[before])
    assert np.any(np.abs(a_step[inside] - b_step[inside]) > 1e-6)
    # Heat stored in the building mass during a heating fault fades over days (tail_days); then the
    # data are back to normal within 3 % for those, exactly for the others.
    scale = float(np.mean(np.abs(a_step)))
    np.testing.assert_allclose(a_step[after], b_step[after], atol=(0.03 if tail_days else 1e-6) * scale)
    # Other buildings are untouched.
    for pid in clean.values:
        if not pid.startswith(building):
            np.testing.assert_array_equal(clean.values[pid], faulty.values[pid])


def test_unrepaired_leak_runs_to_the_year_end(family_b: Inventory) -> None:
    faults = family_b_fault_plan(family_b, 2026, 7)
    leaks = [f for f in faults if f.kind is FaultKind.WATER_LEAK and f.building == "gymnase-sioule"]
    assert leaks
    assert leaks[0].end - leaks[0].start > timedelta(days=180)
    kinds = {f.kind for f in faults}
    assert {FaultKind.HEATING_LEFT_ON, FaultKind.SETPOINT_RAISED, FaultKind.CONSUMPTION_EXCESS, FaultKind.WATER_LEAK,
            FaultKind.STUCK_COUNTER, FaultKind.SENSOR_DRIFT, FaultKind.SENSOR_FLATLINE, FaultKind.LIGHTING_LEFT_ON,
            FaultKind.BASELOAD_CREEP} <= kinds
    holiday = next(f for f in faults if f.kind is FaultKind.HEATING_LEFT_ON and f.building == "maternelle-bourg")
    assert holiday.end - holiday.start >= timedelta(days=7)


def test_quirks_are_present_and_the_output_reads(family_b: Inventory, tmp_path: Path) -> None:
    # Four weeks across the spring DST change.
    start, end = datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 4, 7, tzinfo=UTC)
    history = simulate_family_b(family_b, start, end, seed=7)
    counters = [p.id for _, p in family_b.points() if p.cumulative]
    assert history.resets
    assert set(history.resets) <= set(counters)
    reset = next(iter(history.resets))
    index = history.values[reset]
    assert np.nanmin(np.diff(index[np.isfinite(index)])) < 0  # the counter went back
    gaps = {pid: int(np.isnan(v).sum()) for pid, v in history.values.items()}
    assert max(gaps.values()) >= 8  # two hours at least
    assert history.duplicates
    path = tmp_path / "readings.csv"
    rows = write_readings(family_b, history, path, seed=7)
    lines = path.read_text().splitlines()
    assert len(lines) == rows + 1
    stamps = [line.split(",")[0] for line in lines[1:]]
    assert any("+01:00" in s for s in stamps)
    assert any("+02:00" in s for s in stamps)
    assert len(set(lines)) < len(lines)  # duplicated rows
    times = [datetime.fromisoformat(s).timestamp() for s in stamps]
    assert any(b < a for a, b in itertools.pairwise(times))  # out of order
    readings = read_readings_csv(path)
    assert set(readings) == set(history.values)


def test_write_family_b_writes_readings_and_truth(tmp_path: Path) -> None:
    rows, faults = write_family_b(tmp_path / "r.csv", tmp_path / "truth.json", 2026, 7, lead_in=timedelta(days=7),
                                  until=datetime(2026, 2, 15, tzinfo=UTC))
    assert rows > 50_000
    assert {f.kind for f in faults} >= {FaultKind.SETPOINT_RAISED, FaultKind.CONSUMPTION_EXCESS}
    assert read_ground_truth(tmp_path / "truth.json") == faults
    assert read_readings_csv(tmp_path / "r.csv")


def test_long_gaps_of_the_quirks_are_in_the_ground_truth(tmp_path: Path) -> None:
    """A day-long gap (gateway outage, flat battery) is a real event, scored as ``dead_sensor``; short ones are not."""
    _, faults = write_family_b(tmp_path / "r.csv", tmp_path / "truth.json", 2026, 7, lead_in=timedelta(days=7),
                               until=datetime(2026, 7, 1, tzinfo=UTC))
    gaps = [f for f in faults if f.kind is FaultKind.DEAD_SENSOR]
    assert gaps
    assert all(f.end - f.start >= timedelta(hours=24) and f.point for f in gaps)
    assert read_ground_truth(tmp_path / "truth.json") == faults
    readings = read_readings_csv(tmp_path / "r.csv")
    for gap in gaps:
        assert gap.point is not None
        times = readings[gap.point].times_s
        inside = (times >= gap.start.timestamp()) & (times < gap.end.timestamp() - HOUR)
        assert not inside.any(), (gap, int(inside.sum()))
