"""Issue 11, rules that respect physics: stale counters look back only and know when heating is off; a leak stays open.

Pure tests on synthetic series through a one-building inventory: no simulator, no servers.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from anomalies.detect import DetectConfig, detect
from anomalies.events import AlertState, AnomalyEvent
from anomalies.features import HourlyFrame, PointSeries, schedule_masks
from anomalies.rules import RulesConfig, StaleCounterRule
from inventory import FrenchCalendar, Inventory, parse_inventory

INVENTORY = """
organisation: {name: Commune test, population: 1200, school_holiday_zone: A}
mqtt_brokers:
  - {host: 127.0.0.1}
sites:
  - id: s1
    name: Site
    buildings:
      - id: b1
        name: Mairie
        usage: town_hall
        floor_area_m2: 500
        heated_area_m2: 450
        schedule:
          weekly:
            mon: ['08:00-18:00']
            tue: ['08:00-18:00']
            wed: ['08:00-18:00']
            thu: ['08:00-18:00']
            fri: ['08:00-18:00']
        points:
          - {id: b1-elec, quantity: active_energy, unit: kWh, usage: general, cumulative: true, mqtt: {topic: t/b1/elec}}
          - {id: b1-gas, quantity: gas_volume, unit: m3, usage: heating, cumulative: true,
             conversion_kwh_per_unit: 10.0, mqtt: {topic: t/b1/gas}}
          - {id: b1-water, quantity: water_volume, unit: m3, usage: water, cumulative: true, mqtt: {topic: t/b1/water}}
          - {id: b1-outdoor, quantity: temperature, unit: degC, usage: weather, mqtt: {topic: t/b1/outdoor}}
"""

START = datetime(2025, 9, 1, tzinfo=UTC)
HOUR_S = 3600.0


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return parse_inventory(INVENTORY)


def _times(days: int) -> np.ndarray:
    return START.timestamp() + HOUR_S * np.arange(24 * days + 1, dtype=np.float64)


def _outdoor(times: np.ndarray) -> np.ndarray:
    """A French year: 3 °C daily mean late January, 21 °C late July, ±4 K between night and afternoon."""
    day = (times - datetime(2025, 7, 25, tzinfo=UTC).timestamp()) / 86_400.0
    hour = (times / HOUR_S) % 24
    return 12.0 + 9.0 * np.cos(2.0 * np.pi * day / 365.25) + 4.0 * np.cos(2.0 * np.pi * (hour - 15.0) / 24.0)


def _counter(hourly: np.ndarray) -> np.ndarray:
    """The index of a counter whose consumption in hour i is ``hourly[i]``, read at each hour boundary."""
    return np.concatenate([[1000.0], 1000.0 + np.cumsum(hourly)])


def _electricity(hours: int, rng: np.random.Generator) -> np.ndarray:
    return 2.0 + rng.random(hours)  # never still


def _readings(times: np.ndarray, **hourly: np.ndarray) -> dict[str, PointSeries]:
    series = {pid.replace("_", "-"): PointSeries(times, _counter(h)) for pid, h in hourly.items()}
    series["b1-outdoor"] = PointSeries(times, _outdoor(times))
    return series


def _events(inventory: Inventory, readings: dict[str, PointSeries], kind: str) -> list[AnomalyEvent]:
    return [e for e in detect(inventory, readings, DetectConfig(models=False)) if e.kind == kind]


# --- stale counters look back only ---------------------------------------------------------------


def test_stale_counter_state_does_not_depend_on_later_hours(inventory: Inventory) -> None:
    """No look-ahead: the rule on the series cut at hour h says the same of every hour before h.

    A counter that stood still for a day in its first month and then moves at every hour: seen
    from the whole year the still day is very unlikely, seen from its own past it is not yet.
    """
    building = next(b for _, b in inventory.buildings())
    point = next(p for p in building.points if p.id == "b1-elec")
    days = 120
    times = _times(days)
    hourly = _electricity(times.size - 1, np.random.default_rng(1))
    hourly[24 * 10 + 8: 24 * 11 + 8] = 0.0  # a still day after ten days of history
    hourly[24 * 90: 24 * 90 + 30] = 0.0  # and stuck for 30 h later on
    series = PointSeries(times, _counter(hourly))
    calendar = FrenchCalendar(inventory.organisation.school_holiday_zone)
    rule = StaleCounterRule()
    config = RulesConfig()

    def state_up_to(cut: int) -> np.ndarray:
        frame = HourlyFrame.build({point.id: series}, counters={point.id}, start_s=float(times[0]), hours=cut)
        open_frac, _ = schedule_masks(building, calendar, inventory.organisation.tz, frame.times_s, timedelta(hours=4))
        finding = rule.evaluate(building, point, series, frame, open_frac, config)
        assert finding is not None
        return finding.state

    whole = state_up_to(24 * days)
    assert (whole == 1.0).any()  # the late stuck run is found
    for cut in (24 * 11 + 12, 24 * 40, 24 * 90 + 20, 24 * 100):
        np.testing.assert_array_equal(state_up_to(cut), whole[:cut], err_msg=f"cut at hour {cut}")


# --- ... and know when heating is off -------------------------------------------------------------


def _gas(times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Heating cut off on days of 16 °C and more (daily mean); else it burns with the cold, day and night."""
    hours = times[:-1]
    outdoor = _outdoor(hours)
    day = np.floor(hours / 86_400.0).astype(np.int64)
    daily = np.bincount(day - day[0], weights=outdoor) / np.bincount(day - day[0])
    heating = daily[day - day[0]] < 16.0
    return np.where(heating, 0.5 + 0.2 * np.maximum(0.0, 18.0 - outdoor) + 0.1 * rng.random(hours.size), 0.0)


def test_heat_meter_still_all_summer_is_no_stale_counter(inventory: Inventory) -> None:
    times = _times(365)
    gas = _gas(times, np.random.default_rng(2))
    assert (gas == 0.0).sum() > 24 * 90  # the summer shutdown is long
    readings = _readings(times, b1_elec=_electricity(gas.size, np.random.default_rng(3)), b1_gas=gas,
                         b1_water=np.full(gas.size, 0.05))
    events = _events(inventory, readings, "stale_counter")
    assert events == [], [(e.point, e.start, e.end) for e in events]


def test_heat_meter_stuck_in_a_cold_week_is_a_stale_counter(inventory: Inventory) -> None:
    times = _times(365)
    gas = _gas(times, np.random.default_rng(2))
    stuck_from = int((datetime(2026, 1, 14, 10, tzinfo=UTC) - START) / timedelta(hours=1))
    stuck_to = stuck_from + 24 * 6
    gas[stuck_to] = gas[stuck_from:stuck_to + 1].sum()  # the catch-up when it moves again
    gas[stuck_from:stuck_to] = 0.0
    readings = _readings(times, b1_elec=_electricity(gas.size, np.random.default_rng(3)), b1_gas=gas,
                         b1_water=np.full(gas.size, 0.05))
    events = _events(inventory, readings, "stale_counter")
    assert [e.point for e in events] == ["b1-gas"], [(e.point, e.start, e.end) for e in events]
    event = events[0]
    assert START + timedelta(hours=stuck_from) <= event.start
    assert event.detected_at < START + timedelta(hours=stuck_from + 48)  # found within two days, not in summer



def test_gas_heating_counter_frozen_four_days_in_january_is_found_within_a_day(inventory: Inventory) -> None:
    """Frozen from a Tuesday 03:00 (closed: the heater may be coasting) for four cold days: found that same day."""
    times = _times(150)
    gas = _gas(times, np.random.default_rng(4))
    stuck_from = int((datetime(2026, 1, 13, 3, tzinfo=UTC) - START) / timedelta(hours=1))
    stuck_to = stuck_from + 24 * 4
    gas[stuck_to] = gas[stuck_from:stuck_to + 1].sum()
    gas[stuck_from:stuck_to] = 0.0
    readings = _readings(times, b1_elec=_electricity(gas.size, np.random.default_rng(5)), b1_gas=gas,
                         b1_water=np.full(gas.size, 0.05))
    events = _events(inventory, readings, "stale_counter")
    assert [e.point for e in events] == ["b1-gas"], [(e.point, e.start, e.end) for e in events]
    assert events[0].start >= START + timedelta(hours=stuck_from)
    assert events[0].detected_at < START + timedelta(hours=stuck_from + 24)


def _thermostat_gas(times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """No declared season, no cut-off date: a thermostat burns in proportion to the cold below 14 °C, hour
    by hour, so spring afternoons, mild days and the summer stand still, and mornings still burn."""
    outdoor = _outdoor(times[:-1])
    return np.where(outdoor < 14.0, 0.3 * (14.0 - outdoor) + 0.05 * rng.random(outdoor.size), 0.0)


def test_gas_heating_counter_still_in_mild_spring_afternoons_is_no_alert(inventory: Inventory) -> None:
    """Autumn to June: afternoons still in the mild season, and a counter truly still for one mild April
    afternoon and night (8 h, the heater off as the afternoon warms), give no stale counter."""
    times = _times(290)
    gas = _thermostat_gas(times, np.random.default_rng(6))
    afternoon = int((datetime(2026, 4, 15, 11, tzinfo=UTC) - START) / timedelta(hours=1))
    assert gas[afternoon:afternoon + 8].sum() > 0.0  # it would have burnt a little
    gas[afternoon + 8] += gas[afternoon:afternoon + 8].sum()
    gas[afternoon:afternoon + 8] = 0.0
    spring = (times[:-1] >= datetime(2026, 3, 15, tzinfo=UTC).timestamp()) & (gas == 0.0)
    assert spring.sum() > 24 * 30  # weeks of still hours in spring, mostly afternoons
    readings = _readings(times, b1_elec=_electricity(gas.size, np.random.default_rng(7)), b1_gas=gas,
                         b1_water=np.full(gas.size, 0.05))
    events = _events(inventory, readings, "stale_counter")
    assert events == [], [(e.point, e.start, e.end) for e in events]


# --- a leak stays open ----------------------------------------------------------------------------


def test_unrepaired_leak_is_one_alert_open_all_along(inventory: Inventory) -> None:
    days = 240
    times = _times(days)
    hours = times[:-1]
    rng = np.random.default_rng(4)
    local_hour = ((hours / HOUR_S) + 1) % 24
    # Night flow: toilets' cisterns, 0.01-0.02 m3/h; day use up to 0.3 m3/h.
    water = np.where((local_hour >= 7) & (local_hour < 20), 0.1 + 0.2 * rng.random(hours.size),
                     0.01 + 0.01 * rng.random(hours.size))
    leak_from = int((datetime(2025, 10, 20, 14, tzinfo=UTC) - START) / timedelta(hours=1))
    water[leak_from:] += 0.12  # nobody repairs it
    readings = _readings(times, b1_elec=_electricity(hours.size, np.random.default_rng(5)),
                         b1_gas=_gas(times, np.random.default_rng(6)), b1_water=water)
    events = _events(inventory, readings, "water_leak")
    assert len(events) == 1, [(e.start, e.end, e.state) for e in events]
    event = events[0]
    assert event.start >= START + timedelta(hours=leak_from)
    assert event.detected_at < START + timedelta(hours=leak_from, days=2)
    assert event.state is not AlertState.RESOLVED
    last_night = datetime.fromtimestamp(float(hours[-1]), UTC) - timedelta(days=1)
    assert event.end >= last_night
    # The whole leak is counted, day and night: 0.12 m3/h over the months it ran (±15 %).
    leaked = 0.12 * (hours.size - leak_from)
    assert math.isclose(event.excess_m3, leaked, rel_tol=0.15), (event.excess_m3, leaked)
    # Open all along: cut at any month of the six, detection (the lifecycle included) has the same one
    # alert, still open, from the same start.
    for month in (2, 4):
        cut = datetime.fromtimestamp(float(hours[leak_from]), UTC) + timedelta(days=30 * month)
        part = {pid: PointSeries(s.times_s[s.times_s <= cut.timestamp()], s.values[s.times_s <= cut.timestamp()])
                for pid, s in readings.items()}
        seen = _events(inventory, part, "water_leak")
        assert [(e.start, e.state) for e in seen] == [(event.start, AlertState.ONGOING)], (month, seen)


GYMNASIUM = INVENTORY.replace("usage: town_hall", "usage: gymnasium\n        heating_setpoint_occupied_c: 15\n"
                              "        heating_setpoint_unoccupied_c: 11\n        heating_setpoint_weekend_c: 11")


def test_heat_meter_of_a_hall_held_at_15_c_still_on_mild_days_is_no_stale_counter() -> None:
    """A hall held at 15 °C needs no heat on days a 19 °C building would still heat.

    Heat losses follow indoor minus outdoor, gains stay: the hall's balance point is 4 K lower. Its
    heater burns only on days whose mean is below 10 °C (the building's mass follows the last 24 h),
    so on mild spring days (mean 10 to 12 °C) it stands still through their cold mornings, which in
    winter always burnt; a week stuck in January is still found.
    """
    inventory = parse_inventory(GYMNASIUM)
    times = _times(290)
    outdoor = _outdoor(times[:-1])
    mean24 = np.convolve(np.concatenate([np.full(23, outdoor[0]), outdoor]), np.ones(24) / 24.0, mode="valid")
    rng = np.random.default_rng(8)
    gas = np.where(mean24 < 10.0, 0.5 + 0.3 * np.maximum(0.0, 10.0 - outdoor) + 0.1 * rng.random(outdoor.size), 0.0)
    mild = (mean24 >= 10.0) & (mean24 < 12.0) & (_outdoor(times[:-1]) < 9.0)
    assert mild.sum() > 24  # cold hours of mild days, where a 19 °C building would burn
    stuck_from = int((datetime(2026, 1, 14, 10, tzinfo=UTC) - START) / timedelta(hours=1))
    stuck_to = stuck_from + 24 * 6
    gas[stuck_to] = gas[stuck_from:stuck_to + 1].sum()
    gas[stuck_from:stuck_to] = 0.0
    readings = _readings(times, b1_elec=_electricity(gas.size, np.random.default_rng(9)), b1_gas=gas,
                         b1_water=np.full(gas.size, 0.05))
    events = _events(inventory, readings, "stale_counter")
    assert [(e.point, e.start) for e in events] == [("b1-gas", START + timedelta(hours=stuck_from))], [
        (e.point, e.start, e.end) for e in events
    ]
