from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from inventory import FrenchCalendar, Inventory, is_open
from simulator.faults import Fault, FaultKind, default_fault_plan, read_ground_truth, validate_faults, write_ground_truth
from simulator.physics import History, generate_history

STEP = timedelta(minutes=15)
SEED = 21


def _histories(commune: Inventory, fault: Fault) -> tuple[History, History]:
    start = fault.start - timedelta(days=3)
    end = fault.end + timedelta(days=5)
    base = generate_history(commune, start, end, STEP, seed=SEED)
    faulted = generate_history(commune, start, end, STEP, seed=SEED, faults=[fault])
    return base, faulted


def _masks(history: History, fault: Fault, settle: timedelta) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    times = np.array([m.timestamp() for m in history.datetimes()])
    before = times < fault.start.timestamp()
    inside = (times >= fault.start.timestamp()) & (times < fault.end.timestamp())
    after = times >= (fault.end + settle).timestamp()
    return before, inside, after


def _rate(history: History, point_id: str) -> np.ndarray:
    return np.diff(history.column(point_id), append=np.nan)


def _only_in_window(commune: Inventory, base: History, faulted: History, fault: Fault) -> None:
    """Nothing changes before the fault; after it (and a settling time) every rate and reading is back."""
    before, _, after = _masks(base, fault, settle=timedelta(days=4))
    assert after.any()
    for _, point in commune.points():
        b, f = base.column(point.id), faulted.column(point.id)
        assert np.array_equal(b[before], f[before], equal_nan=True), point.id
        if point.cumulative:
            b, f = _rate(base, point.id), _rate(faulted, point.id)
            after = after & ~np.isnan(b)
        np.testing.assert_allclose(f[after], b[after], rtol=1e-6, atol=1e-6, err_msg=point.id)


def test_heating_left_on_over_a_weekend(commune: Inventory) -> None:
    fault = Fault(kind="heating_left_on", building="ecole-jaures",
                  start=datetime(2026, 1, 9, 16, tzinfo=UTC), end=datetime(2026, 1, 12, 3, tzinfo=UTC))
    base, faulted = _histories(commune, fault)
    _, inside, _ = _masks(base, fault, timedelta())
    point = "ecole-jaures-heat-energy"
    assert np.nansum(_rate(faulted, point)[inside]) > 1.3 * np.nansum(_rate(base, point)[inside])
    temp = "ecole-jaures-classes-temperature"
    assert faulted.column(temp)[inside].mean() > base.column(temp)[inside].mean() + 1.5
    _only_in_window(commune, base, faulted, fault)


def test_setpoint_raised(commune: Inventory) -> None:
    fault = Fault(kind="setpoint_raised", building="mairie", params={"delta_c": 3},
                  start=datetime(2026, 1, 12, tzinfo=UTC), end=datetime(2026, 1, 23, tzinfo=UTC))
    base, faulted = _histories(commune, fault)
    _, inside, _ = _masks(base, fault, timedelta())
    temp = "mairie-bureaux-temperature"
    assert faulted.column(temp)[inside].mean() > base.column(temp)[inside].mean() + 2
    gas = "mairie-gas-volume"
    assert np.nansum(_rate(faulted, gas)[inside]) > 1.15 * np.nansum(_rate(base, gas)[inside])
    _only_in_window(commune, base, faulted, fault)


def test_lighting_left_on_at_night(commune: Inventory) -> None:
    fault = Fault(kind="lighting_left_on", building="centre-culturel",
                  start=datetime(2026, 1, 13, 18, tzinfo=UTC), end=datetime(2026, 1, 16, 6, tzinfo=UTC))
    base, faulted = _histories(commune, fault)
    _, inside, _ = _masks(base, fault, timedelta())
    light = "centre-culturel-light-energy"
    assert np.nansum(_rate(faulted, light)[inside]) > 5 * np.nansum(_rate(base, light)[inside])
    lux = "centre-culturel-grande-salle-illuminance"
    assert faulted.column(lux)[inside].mean() > base.column(lux)[inside].mean() + 200
    _only_in_window(commune, base, faulted, fault)


def test_baseload_creep(commune: Inventory) -> None:
    fault = Fault(kind="baseload_creep", building="atelier", params={"increase_pct": 80},
                  start=datetime(2026, 1, 5, tzinfo=UTC), end=datetime(2026, 2, 2, tzinfo=UTC))
    base, faulted = _histories(commune, fault)
    _, inside, _ = _masks(base, fault, timedelta())
    ratio = faulted.column("atelier-elec-power")[inside] / base.column("atelier-elec-power")[inside]
    weeks = np.array_split(ratio, 4)
    assert [float(np.mean(w)) for w in weeks] == sorted(float(np.mean(w)) for w in weeks)  # it grows
    assert np.mean(weeks[-1]) > 1.3
    _only_in_window(commune, base, faulted, fault)


def test_water_leak_flows_at_night(commune: Inventory) -> None:
    fault = Fault(kind="water_leak", building="bibliotheque", params={"flow_m3_per_h": 0.2},
                  start=datetime(2026, 1, 14, 10, tzinfo=UTC), end=datetime(2026, 1, 20, 10, tzinfo=UTC))
    base, faulted = _histories(commune, fault)
    _, inside, _ = _masks(base, fault, timedelta())
    hours = np.array([m.hour for m in base.datetimes()])
    night = inside & (hours == 2)
    water = "bibliotheque-water-volume"
    assert np.nanmax(_rate(base, water)[night]) == pytest.approx(0, abs=1e-9)
    assert np.nanmin(_rate(faulted, water)[night]) == pytest.approx(0.2 / 4, rel=1e-6)
    _only_in_window(commune, base, faulted, fault)


def test_stuck_counter(commune: Inventory) -> None:
    fault = Fault(kind="stuck_counter", building="gymnase-batum", point="gymnase-batum-elec-energy",
                  start=datetime(2026, 1, 14, 10, 7, tzinfo=UTC), end=datetime(2026, 1, 17, tzinfo=UTC))
    base, faulted = _histories(commune, fault)
    _, inside, _ = _masks(base, fault, timedelta())
    stuck = faulted.column(fault.point or "")[inside]
    assert np.all(stuck == stuck[0])
    assert np.ptp(base.column(fault.point or "")[inside]) > 100
    assert stuck[0] == base.column(fault.point or "")[inside][0]  # held at the true value of 10:07
    _only_in_window(commune, base, faulted, fault)


@pytest.mark.parametrize("mode", ["silent", "frozen"])
def test_dead_sensor(commune: Inventory, mode: str) -> None:
    point = "creche-dortoir-temperature"
    fault = Fault(kind="dead_sensor", building="creche", point=point, params={"mode": mode},
                  start=datetime(2026, 1, 14, 10, tzinfo=UTC), end=datetime(2026, 1, 16, tzinfo=UTC))
    base, faulted = _histories(commune, fault)
    _, inside, _ = _masks(base, fault, timedelta())
    column = faulted.column(point)
    if mode == "silent":
        assert np.isnan(column[inside]).all()
    else:
        assert np.all(column[inside] == column[inside][0])
        assert np.ptp(base.column(point)[inside]) > 1
    assert not np.isnan(column[~inside]).any()
    _only_in_window(commune, base, faulted, fault)


def test_default_plan(commune: Inventory) -> None:
    plan = default_fault_plan(commune, 2026, seed=5)
    assert plan == default_fault_plan(commune, 2026, seed=5)
    assert plan != default_fault_plan(commune, 2026, seed=6)
    validate_faults(commune, plan)
    kinds = [f.kind for f in plan]
    family_b_only = {FaultKind.CONSUMPTION_EXCESS, FaultKind.SENSOR_DRIFT, FaultKind.SENSOR_FLATLINE}
    for kind in set(FaultKind) - family_b_only:
        assert kinds.count(kind) >= 2, kind
    assert len({f.building for f in plan}) >= 6
    tz = commune.organisation.tz
    for fault in plan:
        assert datetime(2026, 1, 1, tzinfo=tz) <= fault.start < fault.end <= datetime(2027, 1, 1, tzinfo=tz)
        others = [g for g in plan if g.building == fault.building and g is not fault]
        assert all(g.end <= fault.start or g.start >= fault.end for g in others), fault
    calendar = FrenchCalendar("B")
    for fault in plan:
        if fault.kind is FaultKind.HEATING_LEFT_ON:
            schedule = commune.building(fault.building).schedule
            moment = fault.start
            while moment < fault.end:
                assert not is_open(schedule, moment.astimezone(tz), calendar), fault
                moment += timedelta(hours=1)


def test_ground_truth_round_trip(commune: Inventory, tmp_path: Path) -> None:
    plan = default_fault_plan(commune, 2026, seed=1)
    path = tmp_path / "ground_truth.json"
    write_ground_truth(path, plan)
    assert read_ground_truth(path) == plan
    assert '"start": "2026-' in path.read_text()
    assert "Z\"" in path.read_text()


def test_the_plan_applies(commune: Inventory) -> None:
    plan = default_fault_plan(commune, 2026, seed=1)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    faulted = generate_history(commune, start, start + timedelta(days=60), timedelta(hours=1), seed=1, faults=plan)
    base = generate_history(commune, start, start + timedelta(days=60), timedelta(hours=1), seed=1)
    assert not np.array_equal(faulted.values, base.values, equal_nan=True)


def test_fault_validation(commune: Inventory) -> None:
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    with pytest.raises(ValidationError, match="not after start"):
        Fault(kind="water_leak", building="mairie", start=end, end=start)
    with pytest.raises(ValidationError, match="needs 'point'"):
        Fault(kind="stuck_counter", building="mairie", start=start, end=end)
    with pytest.raises(ValidationError, match="unknown parameter"):
        Fault(kind="water_leak", building="mairie", start=start, end=end, params={"litres": 3})
    with pytest.raises(ValidationError, match="mode"):
        Fault(kind="dead_sensor", building="mairie", point="mairie-bureaux-temperature", start=start, end=end,
              params={"mode": "sleepy"})
    with pytest.raises(ValueError, match="not a counter"):
        validate_faults(commune, [Fault(kind="stuck_counter", building="mairie", point="mairie-elec-power",
                                        start=start, end=end)])
    with pytest.raises(ValueError, match="belongs to"):
        validate_faults(commune, [Fault(kind="dead_sensor", building="creche", point="mairie-bureaux-temperature",
                                        start=start, end=end)])
    with pytest.raises(ValueError, match="unknown building"):
        validate_faults(commune, [Fault(kind="water_leak", building="nowhere", start=start, end=end)])
