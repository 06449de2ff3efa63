"""The expected model's own uncertainty: an excess must stand out of the building's day-to-day variation.

Unit tests of :func:`anomalies.expected.day_residual_bound` on small
synthetic residuals, then end to end through ``detect()`` on the school of
``test_main_meter`` with a generator of this test whose occupancy varies from
day to day (a crèche's attendance, an event hall's bookings): run with the
test and with it switched off (``model_day_spread=None``), so that it fails if
the test stops guarding.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from anomalies.detect import DetectConfig, detect
from anomalies.expected import day_residual_bound, trailing_day_residual
from anomalies.features import PointSeries
from inventory import Inventory, parse_inventory

from .test_main_meter import INVENTORY, KWH_PER_M3, TZ

DAYS = 70


def _daily_noise(rng: np.random.Generator, sigma: float, days: int = DAYS) -> np.ndarray:
    """Hourly residuals: small hourly noise plus a level drawn per day (the day's occupancy)."""
    return rng.normal(0.0, 0.1, 24 * days) + np.repeat(rng.normal(0.0, sigma, days), 24)


def test_the_bound_grows_with_the_day_to_day_noise() -> None:
    """A building whose days vary ten times more needs a (roughly) ten times larger excess."""
    rng = np.random.default_rng(3)
    ref, types = np.ones(24 * DAYS, dtype=np.bool_), np.zeros(24 * DAYS, dtype=np.int64)
    steady = day_residual_bound(trailing_day_residual(_daily_noise(rng, 0.05)), ref, types)[-1]
    noisy = day_residual_bound(trailing_day_residual(_daily_noise(rng, 0.5)), ref, types)[-1]
    assert 5.0 < noisy / steady < 20.0, (steady, noisy)


def test_the_bound_looks_back_only() -> None:
    """Changing the hours after h, or flagging them, changes no bound up to h."""
    rng = np.random.default_rng(4)
    residual = _daily_noise(rng, 0.3)
    ref, types = np.ones(residual.size, dtype=np.bool_), np.zeros(residual.size, dtype=np.int64)
    before = day_residual_bound(trailing_day_residual(residual), ref, types)
    h = 24 * 40 + 7
    changed, flagged = residual.copy(), ref.copy()
    changed[h + 1 :] += 50.0
    flagged[h + 1 :] = False
    after = day_residual_bound(trailing_day_residual(changed), flagged, types)
    np.testing.assert_array_equal(before[: h + 1], after[: h + 1])
    assert not np.array_equal(before[h + 30 :], after[h + 30 :])


def test_each_day_type_has_its_own_spread() -> None:
    """Busy, irregular weekends (an event hall's bookings) do not loosen the bound of steady weekdays."""
    rng = np.random.default_rng(5)
    weekend = np.repeat((np.arange(DAYS) % 7) >= 5, 24)
    residual = np.where(weekend, _daily_noise(rng, 2.0), _daily_noise(rng, 0.05))
    ref, types = np.ones(residual.size, dtype=np.bool_), weekend.astype(np.int64)
    bound = day_residual_bound(trailing_day_residual(residual), ref, types)
    late = np.arange(residual.size) >= 24 * 63  # a Sunday has its 7 Sundays before (min_days)
    midweek = np.repeat(np.isin(np.arange(DAYS) % 7, [2, 3, 4]), 24) & late  # their 24 h: weekday hours only
    sunday = np.repeat(np.arange(DAYS) % 7 == 6, 24) & late  # weekend hours only
    # A weekday's 24 h vary by about 1.3 (24 × 0.05, plus the hours' noise): 3 robust deviations, about 4.
    assert np.nanmax(bound[midweek]) < 6.0
    assert np.nanmin(bound[sunday]) > 5 * np.nanmax(bound[midweek])


def test_flagged_days_are_not_reference() -> None:
    """A fault's days, flagged, do not teach the bound that a fault is usual (a leak stays an excess)."""
    rng = np.random.default_rng(6)
    residual = _daily_noise(rng, 0.05)
    fault = (np.arange(residual.size) >= 24 * 30) & (np.arange(residual.size) < 24 * 60)
    residual[fault] += 1.0
    types = np.zeros(residual.size, dtype=np.int64)
    day = trailing_day_residual(residual)
    kept_out = day_residual_bound(day, ~fault, types)
    learnt = day_residual_bound(day, np.ones(residual.size, dtype=np.bool_), types)
    h = 24 * 59
    assert day[h] > kept_out[h]  # judged against the days before the fault: 24 kWh stands out
    assert day[h] <= learnt[h]  # had the fault's days been reference, it would not


def test_too_few_days_give_no_bound() -> None:
    residual = np.ones(24 * 5)
    bound = day_residual_bound(trailing_day_residual(residual), np.ones(residual.size, dtype=np.bool_),
                               np.zeros(residual.size, dtype=np.int64))
    assert np.isnan(bound).all()


# End to end: a school whose days vary (attendance, events), no fault at all.

START = datetime(2025, 9, 1, tzinfo=TZ)  # a Monday; no school holiday for seven weeks
WEEKS = 7


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return parse_inventory(INVENTORY)


def _noisy_occupancy(seed: int) -> dict[str, PointSeries]:
    """Heating and hot water whose open days each draw their own level (± 30 %, one standard deviation)."""
    rng = np.random.default_rng(seed)
    days = WEEKS * 7
    n = days * 24
    start_s = START.astimezone(UTC).timestamp()
    times = start_s + 3600.0 * np.arange(n)
    local = [datetime.fromtimestamp(t, TZ) for t in times]
    hod = np.array([m.hour for m in local], dtype=np.float64)
    is_open = np.array([m.weekday() < 5 for m in local])
    daily_c = 10.0 + 2.0 * np.sin(np.arange(days) / 2.0)
    outdoor = np.repeat(daily_c, 24) + 3.0 * np.sin(2 * np.pi * (hod - 9) / 24) + rng.normal(0, 0.3, n)
    need = np.maximum(0.0, 16.0 - outdoor)
    occupancy = np.repeat((1.0 + rng.normal(0.0, 0.3, days)).clip(0.3), 24)  # the day's attendance
    comfort = is_open & (hod >= 6) & (hod < 17)
    heating = np.where(comfort, (3.0 * need + 4.0 * (need > 0)) * occupancy, 0.3 * need)
    dhw = np.where(is_open & (hod >= 7) & (hod < 18), 2.0 * occupancy, 0.3)
    kwh = (heating + dhw) * (1 + rng.normal(0, 0.05, n)).clip(0.5)
    index = np.concatenate([[1000.0], 1000.0 + np.cumsum(kwh / KWH_PER_M3)])
    return {
        "gaz": PointSeries(start_s + 3600.0 * np.arange(n + 1), index),
        "meteo": PointSeries(times + 600.0, outdoor),
    }


def test_day_to_day_variation_is_mostly_no_fault(inventory: Inventory) -> None:
    """Seven weeks of a school whose attendance varies from day to day (± 30 %), four draws, no fault.

    Without the test the forest's flagged hours of the busiest days make
    two to three events per draw; with it, less than half as many (what is
    left: days three robust deviations above their usual level, which the
    normal law allows now and then, or judged on too few days of their type).
    Counted from day 21: the first week after the expected model's first fit
    (day 14) has no out-of-sample days to learn the variation from, and is
    not judged by this test.
    """
    judged = (START + timedelta(days=21)).astimezone(UTC)
    guarded, unguarded = [], []
    for seed in (1, 2, 3, 4):
        readings = _noisy_occupancy(seed)
        guarded += [e for e in detect(inventory, readings, DetectConfig())
                    if e.kind == "unusual_consumption" and e.start >= judged]
        unguarded += [e for e in detect(inventory, readings, DetectConfig(model_day_spread=None))
                      if e.kind == "unusual_consumption" and e.start >= judged]
    assert len(unguarded) >= 6, "without the test the busiest days raise events: the test would prove nothing"
    assert len(guarded) * 2 <= len(unguarded), [(e.start, e.end, e.excess_kwh) for e in guarded]


def test_the_days_the_forest_flags_still_measure_the_spread(inventory: Inventory) -> None:
    """The bound learns the spread from every day no rule flagged, the forest's flagged days included.

    The forest flags the busiest days of a building whose attendance varies;
    were those days left out of the bound's reference, it would learn its
    spread from the calm days only and pass the next busy day as an excess
    (a selection bias: main on 2028/13 gave the crèche's water and the
    event hall's weddings 7 such events). Median and MAD are robust to the
    minority of days a real fault takes, so they need no such exclusion.
    Three draws of ± 30 % attendance, no fault: at most one event each
    (eight together with the forest's flagged days kept out).
    """
    judged = (START + timedelta(days=21)).astimezone(UTC)
    events = []
    for seed in (3, 6, 7):
        events += [e for e in detect(inventory, _noisy_occupancy(seed), DetectConfig())
                   if e.kind == "unusual_consumption" and e.start >= judged]
    assert len(events) <= 3, [(e.start, e.end, e.excess_kwh) for e in events]
