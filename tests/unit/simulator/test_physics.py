from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from inventory import FrenchCalendar, Inventory, Quantity, is_open
from simulator.physics import History, PortfolioModel, generate_history

JAN = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday, school term
JUL = datetime(2026, 7, 6, tzinfo=UTC)
STEP = timedelta(minutes=15)


@pytest.fixture(scope="module")
def january(commune: Inventory) -> History:
    return generate_history(commune, JAN, JAN + timedelta(days=28), STEP, seed=11)


@pytest.fixture(scope="module")
def july(commune: Inventory) -> History:
    return generate_history(commune, JUL, JUL + timedelta(days=28), STEP, seed=11)


def _increase(history: History, point_id: str) -> float:
    column = history.column(point_id)
    return float(column[-1] - column[0])


def _local_hours(history: History, commune: Inventory) -> np.ndarray:
    tz = commune.organisation.tz
    return np.array([moment.astimezone(tz).hour for moment in history.datetimes()])


@pytest.mark.parametrize("point_id", ["mairie-gas-volume", "ecole-jaures-heat-energy", "creche-gas-volume"])
def test_heating_in_january_far_above_july(january: History, july: History, point_id: str) -> None:
    assert _increase(january, point_id) > 5 * _increase(july, point_id)


def test_pool_heat_runs_all_year(july: History) -> None:
    # Pool water is heated in summer too: about 90 kW of process heat.
    assert _increase(july, "piscine-heat-energy") > 50_000  # kWh over 4 weeks


def test_school_at_three_in_the_morning(january: History, commune: Inventory) -> None:
    hours = _local_hours(january, commune)
    weekday = np.array([m.astimezone(commune.organisation.tz).weekday() in {1, 2, 3, 4} for m in january.datetimes()])
    night = (hours == 3) & weekday
    day = (hours == 10) & weekday
    occupancy = january.column("ecole-jaures-classes-occupancy")
    assert occupancy[night].max() == 0
    assert occupancy[day].mean() > 0.9
    heat_rate = np.diff(january.column("ecole-jaures-heat-energy"), append=np.nan)
    light_rate = np.diff(january.column("ecole-jaures-light-energy"), append=np.nan)
    assert np.nanmean(heat_rate[night]) < 0.5 * np.nanmean(heat_rate[day])
    assert np.nanmean(light_rate[night]) < 0.1 * np.nanmean(light_rate[day])
    assert january.column("ecole-jaures-classes-co2")[night].mean() < 500


def test_school_during_winter_holidays(commune: Inventory) -> None:
    calendar = FrenchCalendar("B")
    holidays = datetime(2026, 2, 23, tzinfo=UTC)  # zone B winter holidays: 14 Feb - 1 Mar 2026
    assert calendar.is_school_holiday(holidays.date())
    term = holidays - timedelta(days=14)
    during = generate_history(commune, holidays, holidays + timedelta(days=5), STEP, seed=3)
    before = generate_history(commune, term, term + timedelta(days=5), STEP, seed=3)
    assert during.column("ecole-jaures-classes-occupancy").max() == 0
    assert before.column("ecole-jaures-classes-occupancy").max() == 1
    assert _increase(during, "ecole-jaures-light-energy") < 0.2 * _increase(before, "ecole-jaures-light-energy")
    assert _increase(during, "ecole-jaures-water-volume") < 0.2 * _increase(before, "ecole-jaures-water-volume")
    assert _increase(during, "ecole-jaures-heat-energy") < _increase(before, "ecole-jaures-heat-energy")
    # The town hall is not closed for school holidays.
    assert during.column("mairie-bureaux-occupancy").max() == 1


def test_occupancy_follows_the_inventory_calendar(january: History, commune: Inventory) -> None:
    calendar = FrenchCalendar(commune.organisation.school_holiday_zone)
    tz = commune.organisation.tz
    moments = january.datetimes()
    for building_id, point_id in [("mairie", "mairie-bureaux-occupancy"), ("piscine", "piscine-bassin-occupancy")]:
        schedule = commune.building(building_id).schedule
        expected = [is_open(schedule, m.astimezone(tz), calendar) for m in moments]
        assert january.column(point_id).tolist() == [float(e) for e in expected]


def test_counters_never_decrease(january: History, commune: Inventory) -> None:
    for _, point in commune.points():
        if point.cumulative:
            assert np.all(np.diff(january.column(point.id)) >= 0), point.id


def test_values_are_plausible(january: History, commune: Inventory) -> None:
    for _, point in commune.points():
        column = january.column(point.id)
        assert np.isfinite(column).all(), point.id
        if point.quantity is Quantity.TEMPERATURE and point.zone is not None:
            assert 10 < column.min(), point.id
            assert column.max() < 30, point.id
        if point.quantity is Quantity.CO2:
            assert 380 < column.min(), point.id
            assert column.max() < 2500, point.id
        if point.quantity is Quantity.ACTIVE_POWER:
            assert column.min() > 0, point.id


def test_renovated_school_needs_less_heat_after_renovation(commune: Inventory) -> None:
    # ecole-curie: -40 % heating promised on 2024-09-01; ecole-pasteur is a similar school without works.
    def ratio(start: datetime) -> float:
        history = generate_history(commune, start, start + timedelta(days=21), timedelta(hours=1), seed=2)
        curie = _increase(history, "ecole-curie-gas-volume") / commune.building("ecole-curie").heated_area_m2
        pasteur = _increase(history, "ecole-pasteur-gas-volume") / commune.building("ecole-pasteur").heated_area_m2
        return curie / pasteur

    assert ratio(datetime(2024, 11, 25, tzinfo=UTC)) < 0.75 * ratio(datetime(2024, 1, 15, tzinfo=UTC))


def test_stepper_agrees_with_bulk_generator(commune: Inventory) -> None:
    start = datetime(2026, 3, 27, 22, 7, 13, tzinfo=UTC)  # across the DST change, off the grid
    history = generate_history(commune, start, start + timedelta(days=3), timedelta(minutes=10), seed=4)
    model = PortfolioModel(commune, start, seed=4)
    for row, moment in enumerate(history.datetimes()):
        if row % 5:
            continue
        model.advance(moment)
        for column, point_id in enumerate(history.point_ids):
            assert model.value(point_id) == pytest.approx(history.values[row, column], rel=1e-9, abs=1e-9), point_id


def test_same_seed_same_history_other_seed_other_history(commune: Inventory) -> None:
    one = generate_history(commune, JAN, JAN + timedelta(days=2), STEP, seed=9)
    again = generate_history(commune, JAN, JAN + timedelta(days=2), STEP, seed=9)
    other = generate_history(commune, JAN, JAN + timedelta(days=2), STEP, seed=10)
    assert np.array_equal(one.values, again.values)
    assert not np.array_equal(one.values, other.values)


def test_counter_read_between_grid_minutes_is_consistent(commune: Inventory) -> None:
    model = PortfolioModel(commune, JAN, seed=1)
    model.advance(JAN + timedelta(hours=10, seconds=20))
    first = model.value("mairie-elec-energy")
    rate = model.rate("mairie-elec-energy")
    model.advance(JAN + timedelta(hours=10, seconds=50))
    assert model.value("mairie-elec-energy") - first == pytest.approx(rate * 30 / 3600)
    model.advance(JAN)  # going back is ignored
    assert model.now == JAN + timedelta(hours=10, seconds=50)


def test_rows_and_columns(commune: Inventory) -> None:
    history = generate_history(commune, JAN, JAN + timedelta(hours=1), STEP)
    rows = list(history.rows())
    assert len(rows) == 4 * len(history.point_ids)
    moment, point_id, value = rows[0]
    assert moment == JAN
    assert point_id == history.point_ids[0]
    assert value == history.values[0, 0]


def test_bad_arguments(commune: Inventory) -> None:
    with pytest.raises(ValueError, match="aware"):
        generate_history(commune, datetime(2026, 1, 1), JAN, STEP)  # noqa: DTZ001
    with pytest.raises(ValueError, match="positive step"):
        generate_history(commune, JAN, JAN, STEP)
    with pytest.raises(ValueError, match="not a counter"):
        PortfolioModel(commune, JAN).rate("mairie-elec-power")
