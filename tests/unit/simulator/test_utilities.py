"""The demo commune's utility meters: read when the utility publishes, their fault planned apart (issue 14)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from inventory import Inventory
from simulator import FaultKind, default_fault_plan
from simulator.export import write_readings_csv
from simulator.utilities import invoiced_fuel, reading_times, utility_consumption
from streams.history import read_readings_csv

LINKY = "maternelle-aulnes-linky"
HALL_LINKY = "salle-polyvalente-linky"
GAZPAR = "salle-polyvalente-gazpar"


def test_the_demo_commune_has_a_linky_only_building_and_a_linky_gazpar_one(commune: Inventory) -> None:
    buildings = {b.id: b for _, b in commune.buildings()}
    school, hall = buildings["maternelle-aulnes"], buildings["salle-polyvalente"]
    assert [p.protocol for p in school.points] == ["enedis"]
    assert sorted(p.protocol for p in hall.points) == ["enedis", "grdf"]
    assert all(p.cumulative for p in (*school.points, *hall.points))
    # Neither is polled: no Modbus or MQTT binding to serve or collect.
    assert all(p.modbus is None and p.mqtt is None for p in (*school.points, *hall.points))


def test_csv_holds_the_linky_every_half_hour_and_the_gazpar_once_per_gas_day_across_dst(
    commune: Inventory, tmp_path: Path
) -> None:
    # 29 March 2026: clocks go forward in Paris, 6:00 local is 5:00 UTC before and 4:00 UTC after.
    start, end = datetime(2026, 3, 27, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC)
    out = tmp_path / "r.csv"
    write_readings_csv(commune, out, start, end, step=timedelta(hours=1), energy_only=True)
    series = read_readings_csv(out)
    linky = [datetime.fromtimestamp(t, UTC) for t in series[LINKY].times_s.tolist()]
    assert linky[0] == start
    assert all(b - a == timedelta(minutes=30) for a, b in pairwise(linky))
    assert linky[-1] == end  # the index that closes the period's last half hour
    gas = [datetime.fromtimestamp(t, UTC) for t in series[GAZPAR].times_s.tolist()]
    assert [t.astimezone(commune.organisation.tz).hour for t in gas] == [6, 6, 6, 6, 6]
    assert [t.hour for t in gas] == [5, 5, 4, 4, 4]
    assert gas[-1] == datetime(2026, 3, 31, 4, tzinfo=UTC)  # the gas day of the 30th, whole
    # Meters of ours keep the CSV's step.
    elec = series["mairie-elec-energy"].times_s
    assert (elec[1:] - elec[:-1] == 3600).all()


def test_utility_consumption_is_the_difference_of_the_csv_indexes(commune: Inventory, tmp_path: Path) -> None:
    start, end = datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 9, tzinfo=UTC)
    out = tmp_path / "r.csv"
    write_readings_csv(commune, out, start, end, energy_only=True)
    series = read_readings_csv(out)
    intervals = utility_consumption(commune, start, end)
    assert set(intervals) == {LINKY, HALL_LINKY, GAZPAR}
    for pid, found in intervals.items():
        index = dict(zip(series[pid].times_s.tolist(), series[pid].values.tolist(), strict=True))
        for interval in found:
            if interval.end.timestamp() in index:  # the last interval ends at `end`, past the CSV
                rise = index[interval.end.timestamp()] - index[interval.start.timestamp()]
                assert interval.amount == pytest.approx(rise, abs=1e-4)
            assert interval.amount > 0
    assert len(intervals[LINKY]) == 4 * 48
    days = intervals[GAZPAR]
    assert [(d.end - d.start) for d in days] == [timedelta(days=1)] * 3  # 6:00 on the 5th to 6:00 on the 8th
    # The school's day and night differ: the load curve is not a flat day spread over hours.
    by_hour: dict[int, list[float]] = defaultdict(list)
    for interval in intervals[LINKY]:
        by_hour[interval.start.astimezone(commune.organisation.tz).hour].append(interval.amount)
    assert min(by_hour[10]) > 2 * max(by_hour[2])


def test_reading_times_refuse_a_point_of_ours(commune: Inventory) -> None:
    with pytest.raises(ValueError, match="mairie-elec-energy is not read from a utility"):
        reading_times(commune.point("mairie-elec-energy"), commune.organisation.tz,
                      datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 6, tzinfo=UTC))


def test_linky_only_building_gets_two_weeks_of_lights_left_on_and_the_other_draws_stay(commune: Inventory) -> None:
    without = commune.model_copy(update={
        "sites": [s for s in commune.sites if s.id not in {"hameau-aulnes", "salle-fetes"}]
    })
    for year, seed in ((2025, 1), (2027, 3)):
        plan = default_fault_plan(commune, year, seed)
        utility = [f for f in plan if f.building in {"maternelle-aulnes", "salle-polyvalente"}]
        assert len(utility) == 1
        fault = utility[0]
        assert (fault.kind, fault.building) == (FaultKind.LIGHTING_LEFT_ON, "maternelle-aulnes")
        local = fault.start.astimezone(commune.organisation.tz)
        assert (local.month, local.weekday(), local.hour) == (11, 0, 18)
        assert (local + timedelta(weeks=1)).month == 12  # the last Monday of November
        assert fault.end - fault.start == timedelta(days=14)
        # The buildings of ours get the very faults they got before the two buildings came.
        assert [f for f in plan if f not in utility] == default_fault_plan(without, year, seed)


def test_invoiced_fuel_of_the_oil_heated_school_follows_the_seasons(commune: Inventory) -> None:
    tz = commune.organisation.tz
    months = invoiced_fuel(commune, datetime(2025, 7, 1, tzinfo=tz), datetime(2026, 1, 1, tzinfo=tz))
    # Only the school has a fuel billed and no heating meter; the hall's gas is its Gazpar's.
    assert list(months) == ["maternelle-aulnes-fioul"]
    school = months["maternelle-aulnes-fioul"]
    assert [m.start.astimezone(tz).month for m in school] == list(range(7, 13))
    assert all(m.start.astimezone(tz).day == 1 and m.start.astimezone(tz).hour == 0 for m in school)
    by_month = [m.amount for m in school]
    assert min(by_month) > 0  # hot water all year
    assert by_month[-1] > 10 * max(by_month[:2])  # heating in winter only
    # Of the order of a school's heating: 20 to 100 kWh/m² from July to December.
    assert 20 * 400 < sum(by_month) < 100 * 400


def test_a_linky_only_building_without_fuel_invoices_is_heated_on_its_linky(commune: Inventory) -> None:
    data = commune.model_dump(exclude_none=True)
    for site in data["sites"]:
        for building in site["buildings"]:
            if building["id"] == "maternelle-aulnes":
                building["invoices"] = []
    electric = Inventory.model_validate(data)
    start, end = datetime(2026, 1, 12, tzinfo=UTC), datetime(2026, 1, 13, tzinfo=UTC)
    with_oil = sum(i.amount for i in utility_consumption(commune, start, end, points=[LINKY])[LINKY])
    on_convectors = sum(i.amount for i in utility_consumption(electric, start, end, points=[LINKY])[LINKY])
    # A January day's heat of 400 m², several times the lights and plugs of the school.
    assert on_convectors > 3 * with_oil
