"""Refitting a known structure: same terms, balance points and split, new coefficients; searched again when it fails."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from mv.baseline import BaselineConfig, DailyChangePointBaseline, DailyObservations, DayType

_CONFIG = BaselineConfig(min_span=timedelta(days=14), min_coverage=0.5, min_days_per_type=3)


def _heated(seed: int, days: int, start_day: int, slope: float = 6.0) -> DailyObservations:
    """A school heated below 15 °C, closed at weekends (40 % of the weekday level)."""
    rng = np.random.default_rng(seed)
    first = date(2025, 1, 1) + timedelta(days=start_day)
    ds = [first + timedelta(days=i) for i in range(days)]
    doy = np.arange(start_day, start_day + days)
    mean = 11 - 9 * np.cos(2 * np.pi * (doy - 20) / 365)
    temp = mean[:, None] + 4 * np.sin(2 * np.pi * np.arange(24) / 24)[None, :] + rng.normal(0, 1.5, (days, 24))
    types = [DayType.UNOCCUPIED if d.weekday() >= 5 else DayType.OCCUPIED for d in ds]
    occupied = np.array([t == DayType.OCCUPIED for t in types])
    hdd = np.maximum(0.0, 15.0 - temp).mean(axis=1)
    energy = np.where(occupied, 60.0, 25.0) + slope * hdd + rng.normal(0, 4.0, days)
    return DailyObservations.build(ds, energy, temp, types)


@pytest.mark.parametrize("seed", range(6))
def test_a_kept_structure_is_refitted_as_the_search_fits_it(seed: int) -> None:
    # Refitted on the days it was found on, the structure gives the search's own coefficients, bit for bit.
    obs = _heated(seed, 28 + 60 * (seed % 3), 30 * seed)
    searched = DailyChangePointBaseline(_CONFIG).fit(obs)
    kept = DailyChangePointBaseline(_CONFIG).fit(obs, like=searched)
    assert searched.searched
    assert not kept.searched
    assert kept.params == searched.params
    assert kept.stats == searched.stats
    # A week later the structure is kept (terms, balance points, split), the coefficients refitted.
    later = _heated(seed, 35 + 60 * (seed % 3), 30 * seed)
    week = DailyChangePointBaseline(_CONFIG).fit(later, like=searched)
    assert not week.searched
    assert week.describe() == searched.describe()
    assert week.params != searched.params


def test_coefficients_follow_the_new_days() -> None:
    # A year (the balance point well identified), then the same year after insulation: half the slope.
    before = DailyChangePointBaseline(_CONFIG).fit(_heated(1, 365, 0, slope=6.0))
    insulated = DailyChangePointBaseline(_CONFIG).fit(_heated(1, 365, 0, slope=3.0), like=before)
    assert not insulated.searched
    old = before.params.heating_slope[DayType.OCCUPIED]
    new = insulated.params.heating_slope[DayType.OCCUPIED]
    assert new == pytest.approx(old / 2, rel=0.25)


def test_a_structure_that_no_longer_holds_is_searched_again() -> None:
    winter = DailyChangePointBaseline(_CONFIG).fit(_heated(2, 60, 0))
    assert winter.params.heating_balance_c is not None
    # Summer days: no heating degree day below the winter's balance point, or no significant slope.
    summer = _heated(2, 40, 170)
    kept = DailyChangePointBaseline(_CONFIG).fit(summer, like=winter)
    fresh = DailyChangePointBaseline(_CONFIG).fit(summer)
    assert kept.searched
    assert kept.params == fresh.params


def test_a_new_day_type_is_searched_again() -> None:
    weekdays = _heated(3, 35, 0)
    only_open = DailyObservations.build(
        list(weekdays.days), weekdays.energy_kwh, weekdays.temperature_c, [DayType.OCCUPIED] * len(weekdays.days))
    before = DailyChangePointBaseline(_CONFIG).fit(only_open)
    kept = DailyChangePointBaseline(_CONFIG).fit(weekdays, like=before)
    assert kept.searched
    assert kept.params == DailyChangePointBaseline(_CONFIG).fit(weekdays).params
