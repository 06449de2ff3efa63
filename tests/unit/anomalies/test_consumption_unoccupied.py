"""Issue 11, ``consumption_unoccupied`` on a main gas meter: closures judged against comparable closures.

A small generator of this test, not the simulator: a school heated by one gas meter (no indoor sensor),
consumption proportional to the setpoint held minus the outdoor temperature of the last day, occupants'
heat lowering it while open, a morning recovery, multiplicative noise. Through
:func:`anomalies.detect.detect` without models: no simulator, no servers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from anomalies.detect import DetectConfig, detect
from anomalies.events import AnomalyEvent
from anomalies.features import PointSeries, schedule_masks
from inventory import FrenchCalendar, Inventory, parse_inventory

from .one_building import one_building_yaml

INVENTORY = one_building_yaml(
    """          - {id: b1-outdoor, quantity: temperature, unit: degC, usage: weather, mqtt: {topic: t/o}}
          - {id: b1-gas, quantity: gas_volume, unit: m3, usage: general, cumulative: true,
             conversion_kwh_per_unit: 10.0, mqtt: {topic: t/g}}
""",
    floor_area_m2=600, heated_area_m2=550,
    extra="""        heating_setpoint_unoccupied_c: 16
        heating_setpoint_weekend_c: 14
        heating_frost_protection_c: 8
""",
    schedule="""          closed_on_school_holidays: true
          weekly:
            mon: ['08:30-16:30']
            tue: ['08:30-16:30']
            thu: ['08:30-16:30']
            fri: ['08:30-16:30']
""",
)
START = datetime(2025, 11, 10, tzinfo=UTC)
DAYS = 56
HOUR_S = 3600.0
UA_KWH_K = 1.0
CHRISTMAS = (datetime(2025, 12, 19, 23, tzinfo=UTC), datetime(2026, 1, 4, 23, tzinfo=UTC))
"""Zone A's Christmas holidays of 2025 (Saturday 20 December to Sunday 4 January included, Paris time)."""
COLD_NIGHTS = (datetime(2025, 12, 8, 16, tzinfo=UTC), datetime(2025, 12, 11, 8, tzinfo=UTC))


def _series(
    *, comfort_through_christmas: bool, days: int = DAYS, recharge_kwh: float = 0.0
) -> tuple[Inventory, dict[str, PointSeries], np.ndarray]:
    inventory = parse_inventory(INVENTORY)
    building = next(b for _, b in inventory.buildings())
    times = START.timestamp() + HOUR_S * np.arange(24 * days + 1, dtype=np.float64)
    hours = times[:-1]
    rng = np.random.default_rng(21)
    days = (hours - hours[0]) / 86_400.0
    hour = (hours / HOUR_S) % 24
    outdoor = 4.0 + 4.0 * np.sin(days / 4.0) + 3.5 * np.cos(2.0 * np.pi * (hour - 15.0) / 24.0)
    outdoor += rng.normal(0, 0.3, hours.size)
    cold = (hours >= COLD_NIGHTS[0].timestamp()) & (hours < COLD_NIGHTS[1].timestamp())
    outdoor[cold] -= 7.0  # a cold spell over three nights and the days between
    calendar = FrenchCalendar("A")
    open_frac, preheat = schedule_masks(building, calendar, inventory.organisation.tz, hours, timedelta(hours=4))
    is_open = open_frac > 0.0
    closed_run = np.zeros(hours.size)
    for i in range(1, hours.size):
        closed_run[i] = 0.0 if is_open[i] else closed_run[i - 1] + 1.0
    # The setpoint of the hour: comfort open, setback at night, weekend setpoint on closed days, frost in holidays.
    holiday = (hours >= CHRISTMAS[0].timestamp()) & (hours < CHRISTMAS[1].timestamp())
    target = np.where(is_open | preheat, 19.0, 16.0)
    long_closed = ~is_open & ~preheat & (closed_run >= 16)
    target = np.where(long_closed, 14.0, target)
    target = np.where(holiday & ~is_open, 19.0 if comfort_through_christmas else 8.0, target)
    mean_out = np.convolve(outdoor, np.ones(24) / 24)[: hours.size]
    mean_out[:24] = outdoor[:24]
    heat = UA_KWH_K * np.maximum(0.0, target - mean_out)
    heat = np.where(is_open, np.maximum(0.0, heat - 4.0), heat)  # occupants, lights and computers heat it too
    heat = np.where(preheat, 1.6 * heat, heat)  # the morning recovery
    # The heat the building's mass lost cooling to frost protection, stored back after reopening (time constant 24 h).
    since_reopening = (hours - CHRISTMAS[1].timestamp()) / HOUR_S
    after = since_reopening >= 0
    heat = heat + np.where(after, recharge_kwh / 24.0 * np.exp(-np.where(after, since_reopening, 0.0) / 24.0), 0.0)
    kwh = heat * (1.0 + rng.normal(0, 0.06, hours.size)).clip(0.5) + 0.5
    readings = {
        "b1-outdoor": PointSeries(hours, outdoor),
        "b1-gas": PointSeries(times, np.concatenate([[100.0], 100.0 + np.cumsum(kwh / 10.0)])),
    }
    return inventory, readings, outdoor


def _events(inventory: Inventory, readings: dict[str, PointSeries]) -> list[AnomalyEvent]:
    return [e for e in detect(inventory, readings, DetectConfig(models=False)) if e.kind == "consumption_unoccupied"]


def test_cold_nights_at_setback_on_a_main_gas_meter_raise_nothing() -> None:
    """Nights set back in a cold spell draw as much as open days (occupants heat those), yet are no alert."""
    inventory, readings, outdoor = _series(comfort_through_christmas=False)
    hours = readings["b1-outdoor"].times_s
    gas = np.diff(readings["b1-gas"].values) * 10.0
    cold = (hours >= COLD_NIGHTS[0].timestamp()) & (hours < COLD_NIGHTS[1].timestamp())
    night = cold & (((hours / HOUR_S) % 24 >= 20) | ((hours / HOUR_S) % 24 < 4))
    open_before = (hours < COLD_NIGHTS[0].timestamp()) & (((hours / HOUR_S) % 24 >= 9) & ((hours / HOUR_S) % 24 < 15))
    # The material of the test: those nights consume more than usual open hours, as in real schools.
    assert np.median(gas[night]) > np.median(gas[open_before]), (np.median(gas[night]), np.median(gas[open_before]))
    assert outdoor[cold].mean() < outdoor[~cold].mean() - 3.0
    events = _events(inventory, readings)
    assert events == [], [(e.start, e.end, round(e.excess_kwh)) for e in events]


def test_a_holiday_heated_at_comfort_on_a_main_gas_meter_is_one_event() -> None:
    """The same school kept at comfort through two weeks of Christmas holidays: one event, from the holidays' start."""
    inventory, readings, _ = _series(comfort_through_christmas=True)
    events = _events(inventory, readings)
    assert len(events) == 1, [(e.start, e.end) for e in events]
    event = events[0]
    assert CHRISTMAS[0] <= event.start <= CHRISTMAS[0] + timedelta(days=1)
    assert CHRISTMAS[1] - timedelta(days=1) <= event.end <= CHRISTMAS[1] + timedelta(days=1)
    assert event.excess_kwh > 0


def test_the_mass_recharging_after_a_cold_holiday_raises_nothing() -> None:
    """After two weeks at frost protection in winter the mass stores back what it lost: the first nights draw more.

    250 kWh over the days after reopening (a 550 m2 school's structure warming by ~3 K), decaying with the
    building's time constant; the closures of the two days after the holidays are not compared with usual
    nights. Fails without :func:`anomalies.rules._recharging`.
    """
    inventory, readings, _ = _series(comfort_through_christmas=False, days=DAYS + 7, recharge_kwh=250.0)
    events = _events(inventory, readings)
    assert events == [], [(e.start, e.end, round(e.excess_kwh)) for e in events]


def test_heating_left_at_comfort_after_the_recharge_is_still_found() -> None:
    """Guard: the same restart with heating then left at comfort every night of the following week is an event."""
    inventory, readings, _ = _series(comfort_through_christmas=False, days=DAYS + 7, recharge_kwh=250.0)
    hours = readings["b1-outdoor"].times_s
    gas = np.diff(readings["b1-gas"].values) * 10.0
    local_h = (hours / HOUR_S + 1) % 24
    week_after = (hours >= CHRISTMAS[1].timestamp() + 3 * 86_400) & ((local_h >= 18) | (local_h < 6))
    gas = gas + np.where(week_after, UA_KWH_K * 3.0, 0.0)  # comfort (19 degC) instead of the 16 degC setback
    readings["b1-gas"] = PointSeries(readings["b1-gas"].times_s, np.concatenate([[100.0], 100.0 + np.cumsum(gas / 10.0)]))
    events = _events(inventory, readings)
    assert any(e.start >= CHRISTMAS[1] + timedelta(days=2) for e in events), [(e.start, e.end) for e in events]
