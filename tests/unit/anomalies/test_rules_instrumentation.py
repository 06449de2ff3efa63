"""Issue 11, minimal instrumentation: a main meter alone, a lone indoor temperature sensor.

Synthetic series through one-building inventories and :func:`anomalies.detect.detect`: no simulator, no servers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from anomalies.detect import DetectConfig, detect
from anomalies.events import AnomalyEvent
from anomalies.features import PointSeries
from inventory import Inventory, parse_inventory

from .one_building import OUTDOOR, WEEKDAYS, one_building_yaml

GAS = """          - {id: b1-gas, quantity: gas_volume, unit: m3, usage: general, cumulative: true,
             conversion_kwh_per_unit: 10.0, mqtt: {topic: t/b1/gas}}
"""
INDOOR = """          - {id: b1-indoor, quantity: temperature, unit: degC, usage: comfort, mqtt: {topic: t/b1/indoor}}
"""

START = datetime(2025, 11, 3, tzinfo=UTC)
HOUR_S = 3600.0


def _times(days: int) -> np.ndarray:
    return START.timestamp() + HOUR_S * np.arange(24 * days + 1, dtype=np.float64)


def _outdoor(times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hour = (times / HOUR_S) % 24
    days = (times - times[0]) / 86_400.0
    result: np.ndarray = 5.0 + 3.0 * np.sin(days / 5.0) + 4.0 * np.cos(2.0 * np.pi * (hour - 15.0) / 24.0)
    return result + rng.normal(0, 0.5, times.size)


def _open(inventory: Inventory, times: np.ndarray) -> np.ndarray:
    """1 where the school is open (its weekly schedule and the calendar), from the detection's own masks."""
    from anomalies.features import schedule_masks
    from inventory import FrenchCalendar

    building = next(b for _, b in inventory.buildings())
    calendar = FrenchCalendar(inventory.organisation.school_holiday_zone)
    open_frac, preheat = schedule_masks(building, calendar, inventory.organisation.tz, times, timedelta(hours=4))
    return np.where(open_frac > 0.0, 1.0, np.where(preheat, 0.5, 0.0))


def _events(inventory: Inventory, readings: dict[str, PointSeries], kind: str) -> list[AnomalyEvent]:
    return [e for e in detect(inventory, readings, DetectConfig(models=False)) if e.kind == kind]


def test_main_gas_meter_alone_finds_a_closed_week_heated_as_if_open_as_one_event() -> None:
    """Only a main gas meter and outdoor temperature: a closed week (nights, weekend, Christmas) heated as if open: one event."""
    inventory = parse_inventory(one_building_yaml(OUTDOOR + GAS))
    days = 70
    times = _times(days)
    hours = times[:-1]
    rng = np.random.default_rng(7)
    outdoor = _outdoor(times, rng)
    use = _open(inventory, hours)  # 1 open, 0.5 pre-heat, 0 closed
    # Comfort heating when open or warming up, a setback otherwise, plus a little hot water.
    hdh = np.maximum(0.0, 16.0 - outdoor[:-1])
    gas = np.where(use > 0, 0.6 * hdh + 1.0, 0.15 * hdh) + 0.1 * rng.random(hours.size)
    # Heating kept at comfort every night and through the weekend of one week: one fault across days.
    kept_on = (use == 0) & (hours >= datetime(2025, 12, 22, tzinfo=UTC).timestamp()) & (
        hours < datetime(2025, 12, 29, tzinfo=UTC).timestamp())
    gas = np.where(kept_on, 0.6 * hdh + 1.0 + 0.1 * rng.random(hours.size), gas)
    readings = {
        "b1-gas": PointSeries(times, np.concatenate([[100.0], 100.0 + np.cumsum(gas / 10.0)])),
        "b1-outdoor": PointSeries(times, outdoor),
    }
    events = _events(inventory, readings, "consumption_unoccupied")
    assert len(events) == 1, [(e.start, e.end) for e in events]
    event = events[0]
    assert datetime(2025, 12, 22, tzinfo=UTC) <= event.start < datetime(2025, 12, 23, tzinfo=UTC)
    assert datetime(2025, 12, 28, tzinfo=UTC) <= event.end <= datetime(2025, 12, 30, tzinfo=UTC)
    assert event.excess_kwh > 0
    # Nothing outside the fault over ten weeks of ordinary nights and weekends (base-load creep may see its nights).
    others = [e for e in detect(inventory, readings, DetectConfig(models=False))
              if not (e.start < datetime(2025, 12, 31, tzinfo=UTC) and e.end > datetime(2025, 12, 22, tzinfo=UTC))]
    assert others == [], [(e.kind, e.start) for e in others]


def _indoor(times: np.ndarray, use: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Heated to 20 °C when open, set back to 16 °C otherwise, with a lagging first-order response."""
    target = np.where(use > 0, 20.0, 16.0)
    out = np.empty(times.size)
    value = 17.0
    for i, t in enumerate(target.tolist()):
        value += 0.35 * (t - value)
        out[i] = value
    return out + rng.normal(0, 0.1, times.size)


def test_lone_indoor_sensor_losing_its_daily_cycle_and_drifting_is_found() -> None:
    inventory = parse_inventory(one_building_yaml(OUTDOOR + INDOOR))
    days = 84
    times = _times(days)
    rng = np.random.default_rng(8)
    use = _open(inventory, times)
    indoor = _indoor(times, use, rng)
    flat = (times >= datetime(2025, 12, 1, 10, tzinfo=UTC).timestamp()) & (times < datetime(2025, 12, 6, tzinfo=UTC).timestamp())
    indoor[flat] = 18.3 + rng.normal(0, 0.05, int(flat.sum()))  # stuck, with a little noise: not frozen
    drift = times >= datetime(2026, 1, 12, tzinfo=UTC).timestamp()
    indoor[drift] += np.minimum(8.0, 0.1 * np.arange(int(drift.sum())))  # walks away, then stays 8 K off
    readings = {"b1-indoor": PointSeries(times, indoor), "b1-outdoor": PointSeries(times, _outdoor(times, rng))}
    events = detect(inventory, readings, DetectConfig(models=False))
    lost = [e for e in events if e.kind == "lost_daily_cycle"]
    assert len(lost) == 1, [(e.kind, e.start, e.end) for e in events]
    assert datetime(2025, 12, 1, tzinfo=UTC) <= lost[0].start <= datetime(2025, 12, 4, tzinfo=UTC)
    # Nothing else of that kind: the ordinary weeks, weekends and holidays raise nothing.
    assert {e.kind for e in events} <= {"lost_daily_cycle", "sensor_drift"}, [(e.kind, e.start) for e in events]
    # The drift is one event, found within days of leaving the usual range; the Christmas holidays,
    # colder than school weeks, are not a drift.
    drifted = [e for e in events if e.kind == "sensor_drift"]
    assert len(drifted) == 1, [(e.start, e.end) for e in drifted]
    assert datetime(2026, 1, 12, tzinfo=UTC) <= drifted[0].start <= datetime(2026, 1, 16, tzinfo=UTC)


def test_lone_indoor_sensor_colder_in_a_cold_week_is_not_a_drift() -> None:
    """A cold snap 12 K below the usual weather that cools the building by 4 K (heating short of power) is no drift."""
    inventory = parse_inventory(one_building_yaml(OUTDOOR + INDOOR))
    days = 56
    times = _times(days)
    rng = np.random.default_rng(9)
    use = _open(inventory, times)
    outdoor = _outdoor(times, rng)
    cold = (times >= datetime(2025, 12, 8, tzinfo=UTC).timestamp()) & (times < datetime(2025, 12, 15, tzinfo=UTC).timestamp())
    outdoor[cold] -= 12.0
    indoor = _indoor(times, use, rng) - np.where(cold, 4.0, 0.0)
    readings = {"b1-indoor": PointSeries(times, indoor), "b1-outdoor": PointSeries(times, outdoor)}
    events = detect(inventory, readings, DetectConfig(models=False))
    assert [e for e in events if e.kind == "sensor_drift"] == [], [(e.kind, e.start) for e in events]


ELEC = """          - {id: b1-elec, quantity: active_energy, unit: kWh, usage: general, cumulative: true,
             mqtt: {topic: t/b1/elec}}
"""


def _electrically_heated(creep_from: datetime | None) -> list[AnomalyEvent]:
    """A main electricity meter carrying convector heating (setback at night, nonlinear in the weather):
    a cold spring, then warm nights; base load 3 kWh/h, +40 % from ``creep_from`` on."""
    inventory = parse_inventory(one_building_yaml(OUTDOOR + ELEC))
    days = 120
    times = _times(days)
    hours = times[:-1]
    rng = np.random.default_rng(21)
    day = (hours - hours[0]) / 86_400.0
    outdoor = 2.0 + 16.0 * np.clip(day / 90.0, 0.0, 1.0) + 4.0 * np.sin(day / 3.0) + rng.normal(0, 0.5, hours.size)
    use = _open(inventory, hours)
    setpoint = np.where(use > 0, 19.0, 12.0)
    heating = np.maximum(0.0, 1.5 * (setpoint - outdoor) - 4.0 * (use > 0)) ** 1.3  # a thermostat's on/off, not linear
    base = np.full(hours.size, 3.0)
    if creep_from is not None:
        base = np.where(hours >= creep_from.timestamp(), 4.2, base)
    kwh = base + heating + 6.0 * (use > 0) + 0.1 * rng.random(hours.size)
    readings = {
        "b1-elec": PointSeries(times, np.concatenate([[1000.0], 1000.0 + np.cumsum(kwh)])),
        "b1-outdoor": PointSeries(hours + 600.0, outdoor),
    }
    # A step of the base load is named as lights or equipment left on, a slow rise as a creep: both count here.
    kinds = {"baseload_creep", "lighting_unoccupied"}
    return [e for e in detect(inventory, readings, DetectConfig(models=False)) if e.kind in kinds]


def test_main_meter_heating_nights_are_not_a_base_load_creep() -> None:
    """Convector heating on the main meter, cold nights after mild ones: no creep, the base load did not move."""
    assert _electrically_heated(None) == []


def test_main_meter_base_load_creep_is_found_on_nights_without_heating() -> None:
    """The same building whose base load rises by 40 % once nights are warm: found within a week of the rise,
    never before it (cold nights in between are unknown; they may split it in episodes)."""
    rise = START + timedelta(days=100)
    events = _electrically_heated(rise)
    assert events, "no creep found"
    assert all(e.start >= rise for e in events), [(e.start, e.end) for e in events]
    assert events[0].start < rise + timedelta(days=7)
    # +40 % from one night to the next is a step: every episode of it is named as equipment left on.
    assert {e.kind for e in events} == {"lighting_unoccupied"}, [(e.kind, e.start) for e in events]


def test_lone_indoor_sensor_colder_through_a_holiday_at_frost_protection_is_not_a_drift() -> None:
    """Two weeks of Christmas holidays at frost protection: the school cools for days towards 8 °C, then warms up
    again once reopened. Colder than any weekend of its past, but a closed building, not a drifting sensor."""
    holidays_closed = "          closed_on_school_holidays: true\n" + WEEKDAYS
    inventory = parse_inventory(one_building_yaml(OUTDOOR + INDOOR, schedule=holidays_closed))
    days = 70
    times = _times(days)
    rng = np.random.default_rng(10)
    use = _open(inventory, times)
    closed_for = np.zeros(times.size)
    for i in range(1, times.size):
        closed_for[i] = 0.0 if use[i] > 0 else closed_for[i - 1] + 1.0
    # Set back to 16 °C at night and on weekends; frost protection (8 °C) after two days closed.
    target = np.where(use > 0, 20.0, np.where(closed_for > 48, 8.0, 16.0))
    indoor = np.empty(times.size)
    value = 17.0
    for i, t in enumerate(target.tolist()):
        value += (0.35 if t > value else 0.03) * (t - value)  # heats up fast, cools down slowly
        indoor[i] = value
    indoor += rng.normal(0, 0.1, times.size)
    assert indoor.min() < 11.0  # it does cool, in the holidays only
    readings = {"b1-indoor": PointSeries(times, indoor), "b1-outdoor": PointSeries(times, _outdoor(times, rng))}
    events = detect(inventory, readings, DetectConfig(models=False))
    assert [e for e in events if e.kind == "sensor_drift"] == [], [(e.kind, e.start, e.end) for e in events]


def _pool_base_load(creep: float) -> list[AnomalyEvent]:
    """A heated building (heating meter) whose night electricity is a 40 kWh/h base (filtration, standby) with
    2 % night-to-night noise; from day 90 the base rises linearly by ``creep`` (a share) over 8 weeks."""
    heat = ("          - {id: b1-heat, quantity: heat_energy, unit: kWh, usage: heating, cumulative: true,\n"
            "             mqtt: {topic: t/b1/heat}}\n")
    inventory = parse_inventory(one_building_yaml(OUTDOOR + heat + ELEC))
    days = 160
    times = _times(days)
    hours = times[:-1]
    rng = np.random.default_rng(31)
    outdoor = _outdoor(times, rng)
    day = np.floor((hours - hours[0]) / 86_400.0)
    progress = np.clip((day - 90.0) / 56.0, 0.0, 1.0)
    night_noise = rng.normal(0, 0.02, days + 1)[day.astype(int)]
    use = _open(inventory, hours)
    kwh = 40.0 * (1.0 + creep * progress) * (1.0 + night_noise) + 30.0 * (use > 0)
    heat = np.maximum(0.0, 16.0 - outdoor[:-1]) * np.where(use > 0, 8.0, 5.0)
    readings = {
        "b1-elec": PointSeries(times, np.concatenate([[1000.0], 1000.0 + np.cumsum(kwh)])),
        "b1-heat": PointSeries(times, np.concatenate([[0.0], np.cumsum(heat)])),
        "b1-outdoor": PointSeries(times, outdoor),
    }
    return [e for e in detect(inventory, readings, DetectConfig(models=False)) if e.kind == "baseload_creep"]


def test_slow_base_load_creep_is_found_against_the_base_before_it() -> None:
    """+15 % over eight weeks never rises 12 % above the last weeks (the moving reference follows it), yet it
    is found against the base load before it began (the long lower envelope), within the eight weeks."""
    events = _pool_base_load(0.15)
    assert events, "slow creep not found"
    rise = START + timedelta(days=90)
    assert all(e.start >= rise for e in events), [(e.start, e.end) for e in events]
    assert events[0].start < rise + timedelta(days=56)


def test_a_steady_noisy_base_load_is_no_creep() -> None:
    """The same building without the creep: 2 % noise night to night raises nothing over five months."""
    assert _pool_base_load(0.0) == []


def test_a_slow_creep_under_the_materiality_ratio_is_found_once_its_total_counts() -> None:
    """+8 % of a 40 kWh/h base over eight weeks never reaches 10 % of the night's consumption, but 3 kWh/h every
    night is 9 MWh a year: the rise, judged against the base's own noise, opens once its total is material."""
    events = _pool_base_load(0.08)
    assert events, "slow creep under 10 % not found"
    rise = START + timedelta(days=90)
    assert all(e.start >= rise for e in events), [(e.start, e.end) for e in events]
    assert events[0].start < rise + timedelta(days=56)


def test_a_church_open_on_sunday_mornings_drifting_sensor_is_found() -> None:
    """Closed six days a week is the church's ordinary state, not a holiday: its drifting sensor is still judged."""
    sundays = "          weekly:\n            sun: ['09:00-12:00']\n"
    inventory = parse_inventory(one_building_yaml(OUTDOOR + INDOOR, schedule=sundays))
    days = 84
    times = _times(days)
    rng = np.random.default_rng(12)
    use = _open(inventory, times)
    outdoor = _outdoor(times, rng)
    indoor = 9.0 + 0.3 * outdoor + np.where(use > 0, 6.0, 0.0) + rng.normal(0, 0.1, times.size)
    drift_from = START + timedelta(days=42)
    drifting = times >= drift_from.timestamp()
    indoor[drifting] += 0.35 * (times[drifting] - drift_from.timestamp()) / 86_400.0
    readings = {"b1-indoor": PointSeries(times, indoor), "b1-outdoor": PointSeries(times, outdoor)}
    events = [e for e in detect(inventory, readings, DetectConfig(models=False)) if e.kind == "sensor_drift"]
    assert events, "the church's drift was not found"
    assert all(e.start >= drift_from for e in events), [(e.start, e.end) for e in events]
    assert events[0].start < drift_from + timedelta(days=21)


def test_lone_indoor_sensor_at_frost_protection_from_a_holidays_first_hour_is_not_a_drift() -> None:
    """Frost protection from the first hour of a two-week holiday: its first 72 h, colder than any weekend,
    are judged by the schedule (a closure planned longer than a weekend), not found a drift."""
    holidays_closed = "          closed_on_school_holidays: true\n" + WEEKDAYS
    inventory = parse_inventory(one_building_yaml(OUTDOOR + INDOOR, schedule=holidays_closed))
    times = _times(70)
    rng = np.random.default_rng(14)
    use = _open(inventory, times)
    closed = use == 0
    run = np.zeros(times.size)  # the length of each closure, known in advance (the schedule)
    i = 0
    while i < times.size:
        j = i
        while j < times.size and closed[j] == closed[i]:
            j += 1
        run[i:j] = (j - i) if closed[i] else 0
        i = j
    target = np.where(use > 0, 20.0, np.where(run > 72, 8.0, 16.0))
    indoor = np.empty(times.size)
    value = 17.0
    for k, t in enumerate(target.tolist()):
        value += (0.35 if t > value else 0.1) * (t - value)
        indoor[k] = value
    indoor += rng.normal(0, 0.1, times.size)
    readings = {"b1-indoor": PointSeries(times, indoor), "b1-outdoor": PointSeries(times, _outdoor(times, rng))}
    events = detect(inventory, readings, DetectConfig(models=False))
    assert [e for e in events if e.kind == "sensor_drift"] == [], [(e.kind, e.start, e.end) for e in events]


def test_unheated_building_following_a_cold_week_before_its_heating_season_is_not_a_drift() -> None:
    """Before its heating season a building floats with the weather (about 1 K per K, lagging): a cold week
    14 K below the weeks before cools it by about 14 K. No drift; heated, it would be damped to 0.5 K per K."""
    season = "        heating_season: {start: '12-15', end: '04-15'}\n"
    inventory = parse_inventory(one_building_yaml(OUTDOOR + INDOOR, extra=season))
    times = _times(40)
    rng = np.random.default_rng(15)
    outdoor = _outdoor(times, rng) + 8.0
    cold = (times >= datetime(2025, 12, 1, tzinfo=UTC).timestamp()) & (times < datetime(2025, 12, 8, tzinfo=UTC).timestamp())
    outdoor[cold] -= 14.0
    indoor = np.empty(times.size)
    value = 16.0
    for k, o in enumerate(outdoor.tolist()):
        value += 0.05 * (o + 4.0 - value)  # free floating, 4 K of gains, a time constant of 20 h
        indoor[k] = value
    indoor += rng.normal(0, 0.1, times.size)
    readings = {"b1-indoor": PointSeries(times, indoor), "b1-outdoor": PointSeries(times, outdoor)}
    events = detect(inventory, readings, DetectConfig(models=False))
    assert [e for e in events if e.kind == "sensor_drift"] == [], [(e.kind, e.start, e.end) for e in events]
