"""The forest's two guards, end to end through ``detect()``: weather beyond the fit, and immaterial residuals.

A school with only a main gas meter and an outdoor temperature (the
inventory of ``test_main_meter``), six weeks of autumn from a small generator
of this test: heating proportional to the degree hours below 16 °C, at comfort
from 06:00 to 17:00 on open days and in a deep setback otherwise, plus hot water,
with multiplicative noise. Each test runs ``detect()`` with the guard and
with it switched off, so that it fails if the guard stops guarding.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from anomalies.detect import DetectConfig, detect
from anomalies.events import AnomalyEvent
from anomalies.features import PointSeries
from inventory import Inventory, parse_inventory

from .test_main_meter import INVENTORY, KWH_PER_M3, TZ

START = datetime(2025, 9, 1, tzinfo=TZ)  # a Monday; no school or public holiday in the next six weeks
DAYS = 42
LAST_WEEK = (35 * 24, 42 * 24)


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return parse_inventory(INVENTORY)


def _generate(
    daily_c: np.ndarray, extra_kwh: np.ndarray, seed: int = 7, heating_factor: np.ndarray | None = None,
) -> dict[str, PointSeries]:
    """Hourly gas index and outdoor temperature; ``extra_kwh`` per hour is added to the building's own need,
    whose heating is multiplied by ``heating_factor`` per hour (default 1)."""
    rng = np.random.default_rng(seed)
    n = DAYS * 24
    start_s = START.astimezone(UTC).timestamp()
    times = start_s + 3600.0 * np.arange(n)
    local = [datetime.fromtimestamp(t, TZ) for t in times]
    hod = np.array([m.hour for m in local], dtype=np.float64)
    is_open = np.array([m.weekday() < 5 for m in local])
    outdoor = np.repeat(daily_c, 24) + 3.0 * np.sin(2 * np.pi * (hod - 9) / 24) + rng.normal(0, 0.3, n)
    need = np.maximum(0.0, 16.0 - outdoor)
    comfort = is_open & (hod >= 6) & (hod < 17)
    heating = np.where(comfort, 3.0 * need + 4.0 * (need > 0), 0.3 * need)
    if heating_factor is not None:
        heating = heating * heating_factor
    dhw = np.where(is_open & (hod >= 7) & (hod < 18), 2.0, 0.3)
    kwh = (heating + dhw) * (1 + rng.normal(0, 0.05, n)).clip(0.5) + extra_kwh
    index = np.concatenate([[1000.0], 1000.0 + np.cumsum(kwh / KWH_PER_M3)])
    return {
        "gaz": PointSeries(start_s + 3600.0 * np.arange(n + 1), index),
        "meteo": PointSeries(times + 600.0, outdoor),
    }


def _model_events_in_last_week(events: list[AnomalyEvent]) -> list[AnomalyEvent]:
    lo = START.astimezone(UTC).timestamp() + LAST_WEEK[0] * 3600.0
    return [e for e in events if e.kind == "unusual_consumption" and e.end.timestamp() > lo]


def _autumn(days: int = DAYS) -> np.ndarray:
    return 10.0 + 2.0 * np.sin(np.arange(days) / 2.0)


def test_no_model_event_in_weather_colder_than_the_fit(inventory: Inventory) -> None:
    """Fitted on a mild autumn, a cold week where frost protection starts to run at night is an extrapolation.

    The degree-day line fitted on 8-12 °C days cannot know that below 2 °C
    the boiler's frost protection adds 6 kWh an hour at night: the residual is
    real, but it is the model's ignorance, not a fault.
    """
    daily_c = _autumn()
    daily_c[35:] = -4.0
    n = DAYS * 24
    hod = np.tile(np.arange(24), DAYS)  # Europe/Paris in September: local hour = UTC hour + 2
    night = ((hod + 2) % 24 < 6) | ((hod + 2) % 24 >= 20)
    frost = np.where((np.arange(n) >= LAST_WEEK[0]) & night, 6.0, 0.0)
    readings = _generate(daily_c, frost)
    guarded = _model_events_in_last_week(detect(inventory, readings, DetectConfig()))
    assert guarded == [], [(e.start, e.end, e.excess_kwh) for e in guarded]
    unguarded = _model_events_in_last_week(detect(inventory, readings, DetectConfig(model_fit_margin_c=1000.0)))
    assert unguarded, "without the guard the forest raises the cold week: the test would prove nothing"


@pytest.mark.parametrize("extra", [1.6, 8.0])
def test_a_residual_under_a_share_of_a_typical_hour_raises_nothing(inventory: Inventory, extra: float) -> None:
    """A steady excess at night, large against the night's own consumption: material only above a typical hour's share.

    The building uses about 8.4 kWh an hour on average over these weeks;
    ``model_min_typical_share`` (0.25) makes 2.1 kWh the least excess worth
    an alert. 1.6 kWh an hour is half as much again as a mild night's
    setback, plain for the forest (and raised without the guard), and not
    worth an advisor's time; 8 kWh is.
    """
    n = DAYS * 24
    hod = np.tile(np.arange(24), DAYS)
    night = ((hod + 2) % 24 < 6) | ((hod + 2) % 24 >= 22)
    extra_kwh = np.where((np.arange(n) >= LAST_WEEK[0]) & night, extra, 0.0)
    readings = _generate(_autumn(), extra_kwh)
    # The forest alone: with the rules on, the out-of-hours rule may explain (and silence) its alert.
    found = _model_events_in_last_week(detect(inventory, readings, DetectConfig(rule_events=False)))
    unguarded = _model_events_in_last_week(
        detect(inventory, readings, DetectConfig(model_min_typical_share=0.0, model_day_spread=None, rule_events=False))
    )  # the other guard off too: 1.6 kWh a night is also within this school's day-to-day variation
    assert unguarded, "without the guard the forest raises the nights: the test would prove nothing"
    if extra < 2.0:  # under 0.25 × 8.4 kWh
        assert found == [], [(e.start, e.end, e.excess_kwh) for e in found]
    else:
        assert found, "an excess above a quarter of a typical hour is an alert"
        # Rules and forest together: one alert for the week of nights, whichever explains it.
        lo = START.astimezone(UTC).timestamp() + LAST_WEEK[0] * 3600.0
        both = [e for e in detect(inventory, readings, DetectConfig())
                if e.usage == "heating" and e.end.timestamp() > lo
                and e.kind in {"unusual_consumption", "consumption_unoccupied"}]
        assert len(both) == 1, [(e.kind, e.start, e.end) for e in both]


def test_a_week_of_heating_a_fifth_higher_in_every_hour_is_found_by_its_days(inventory: Inventory) -> None:
    """+20 % heating in every hour for a week (a door held open, a fouled burner): small in each hour, plain by day.

    Each comfort hour's excess (about 4 kWh over 22) is under ``model_min_ratio``
    (0.2 of the expected value plus a quarter of a typical hour), so no hour
    counts by its own size, and the week was missed; its days' excess (about
    50 kWh over 290) stands far out of this school's day-to-day variation and
    is above ``model_day_min_share`` (10 %) of the expected day, from its
    second day on. The same weeks without the excess raise nothing.
    """
    n = DAYS * 24
    factor = np.where(np.arange(n) >= LAST_WEEK[0], 1.2, 1.0)
    config = DetectConfig(rule_events=False)  # the forest alone
    found = _model_events_in_last_week(detect(inventory, _generate(_autumn(), np.zeros(n), heating_factor=factor),
                                              config))
    assert found, "a week of +20 % heating is an alert"
    hours_only = _model_events_in_last_week(detect(
        inventory, _generate(_autumn(), np.zeros(n), heating_factor=factor),
        config.model_copy(update={"model_day_min_share": None})))
    assert hours_only == [], "judged hour by hour the week is missed: the test would prove nothing"
    assert _model_events_in_last_week(detect(inventory, _generate(_autumn(), np.zeros(n)), config)) == []


def test_one_day_of_heating_higher_in_every_hour_is_no_alert(inventory: Inventory) -> None:
    """+30 % heating in every hour for one day only: a day beyond the bound is a building's own variation often enough.

    The day stands out of the bound by more than ``model_day_min_share``, so
    with the 24 hours up to an hour judged alone (not the day before them too)
    it is an alert.
    """
    n = DAYS * 24
    day = (np.arange(n) >= LAST_WEEK[0] + 24) & (np.arange(n) < LAST_WEEK[0] + 48)
    readings = _generate(_autumn(), np.zeros(n), heating_factor=np.where(day, 1.3, 1.0))
    found = _model_events_in_last_week(detect(inventory, readings, DetectConfig(rule_events=False)))
    assert found == [], [(e.start, e.end, e.excess_kwh) for e in found]


def test_a_small_steady_excess_over_closed_weekends_is_no_alert(inventory: Inventory) -> None:
    """Mild weeks (no heating): the weekends draw only the hot-water loop, about 0.3 kWh an hour. +0.08 kWh in
    every hour of the last weekends is a quarter of a closed day's expected energy but under a tenth of this
    school's typical day (about 21 kWh): not worth an alert, as an hour's excess under a quarter of a typical hour is not
    (family A: a school's lighting meter 0.1 kWh an hour above its standby on closed Sundays)."""
    n = DAYS * 24
    local = np.arange(n) + 2  # Europe/Paris in September: local hour = UTC hour + 2
    weekend = ((local // 24) % 7 >= 5) & (np.arange(n) >= 28 * 24)  # START is a Monday
    readings = _generate(np.full(DAYS, 20.0), np.where(weekend, 0.08, 0.0))
    lo = START.astimezone(UTC).timestamp() + 28 * 24 * 3600.0
    found = [e for e in detect(inventory, readings, DetectConfig(rule_events=False))
             if e.kind == "unusual_consumption" and e.end.timestamp() > lo]
    assert found == [], [(e.start, e.end, e.excess_kwh) for e in found]
