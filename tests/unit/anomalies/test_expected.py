"""The expected consumption: causal, fitted from 14 days, refitted around flagged hours, with day types."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from anomalies.expected import (
    ExpectedConfig,
    ExpectedConsumption,
    _row_nanmedian,
    day_types_of_hours,
    refit_hours,
)
from mv.baseline import DayType

DAYS = 60


def _series(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = DAYS * 24
    day = np.repeat(np.arange(DAYS), 24)
    hour = np.tile(np.arange(24), DAYS)
    outdoor = 6.0 + 5.0 * np.sin(day / 5.0) + 3.0 * np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0, 0.5, n)
    is_open = (day % 7) < 5
    comfort = is_open & (hour >= 6) & (hour < 17)
    need = np.maximum(0.0, 16.0 - outdoor)
    y = np.where(comfort, 3.0 * need, 0.8 * need) + 1.0
    y = y * (1 + rng.normal(0, 0.05, n))
    open_frac = (is_open & (hour >= 8) & (hour < 17)).astype(float)
    return {"y": y, "outdoor": outdoor, "open_frac": open_frac, "hour": hour, "day": day}


def _walk(y: np.ndarray, outdoor: np.ndarray, open_frac: np.ndarray, hour: np.ndarray, day: np.ndarray,
          excluded: np.ndarray) -> np.ndarray:
    """Each week predicted by the fit on the hours before it (what ``run_models`` does, without the forest).

    The causality of the walk detection really runs is tested on ``run_models`` and ``detect()``
    (``test_main_meter.py``, ``test_incremental.py``).
    """
    n = y.size
    model = ExpectedConsumption(y, outdoor, open_frac, np.zeros(n, dtype=bool), hour, day, ExpectedConfig())
    expected = np.full(n, np.nan)
    at_hours = refit_hours(n, ExpectedConfig())
    for at, stop in zip(at_hours, [*at_hours[1:], n], strict=True):
        if model.refit(at, excluded[:at]) and model.fits == 1:
            expected[:at] = model.predict(0, at)
        expected[at:stop] = model.predict(at, stop)
    return expected


def _run(s: dict[str, np.ndarray], excluded: np.ndarray) -> np.ndarray:
    return _walk(s["y"], s["outdoor"], s["open_frac"], s["hour"], s["day"], excluded)


def test_starts_at_day_14_and_follows_weather_and_schedule() -> None:
    s = _series()
    expected = _run(s, np.zeros(s["y"].size, dtype=bool))
    assert np.isfinite(expected[: 14 * 24]).all()  # in-sample reference for the first forest
    out = slice(14 * 24, None)
    mape = np.mean(np.abs(expected[out] - s["y"][out]) / s["y"][out])
    assert mape < 0.15
    # A closed day is expected lower than an open day of the same weather.
    assert np.mean(expected[out][s["open_frac"][out] > 0]) > 2 * np.mean(expected[out][(s["day"][out] % 7) >= 5])


def test_flagged_hours_are_left_out_but_refits_go_on() -> None:
    s = _series()
    n = s["y"].size
    faulty = {k: v.copy() for k, v in s.items()}
    faulty["y"][20 * 24 : 50 * 24] *= 1.5  # an open alert for 30 days
    excluded = np.zeros(n, dtype=bool)
    excluded[20 * 24 : 50 * 24] = True
    clean = _run(s, np.zeros(n, dtype=bool))
    kept = _run(faulty, excluded)
    # The reference stays the consumption before the alert: the fault shows as a residual all along.
    window = slice(45 * 24, 50 * 24)
    assert np.mean(faulty["y"][window] - kept[window]) > 0.3 * np.mean(clean[window])


def test_day_types_from_opening_hours() -> None:
    types = day_types_of_hours(np.array([0.0, 0.5, 0.0, 0.0]), np.array([True, True, True, True]), np.array([1, 1, 2, 2]))
    assert types == [DayType.OCCUPIED, DayType.OCCUPIED, DayType.UNOCCUPIED, DayType.UNOCCUPIED]


def test_each_weekday_gets_its_own_level_and_hours() -> None:
    """A cultural centre open 4 h on Thursdays and 13 h on Saturdays: one profile for all open days fails both."""
    rng = np.random.default_rng(3)
    days = 56
    n = days * 24
    day = np.repeat(np.arange(1, days + 1), 24)  # date ordinals: 1 is a Monday
    hour = np.tile(np.arange(24), days)
    weekday = (day - 1) % 7
    opening = {2: (14, 22), 3: (18, 22), 4: (18, 23), 5: (10, 23), 6: (14, 19)}
    open_frac = np.zeros(n)
    for wd, (lo, hi) in opening.items():
        open_frac[(weekday == wd) & (hour >= lo) & (hour < hi)] = 1.0
    y = 0.4 + 18.0 * open_frac * (1 + rng.normal(0, 0.03, n))
    outdoor = np.full(n, np.nan)  # lighting: no weather term
    expected = _walk(y, outdoor, open_frac, hour, day, np.zeros(n, dtype=bool))
    late = slice(28 * 24, None)
    for wd in opening:
        sel = (weekday[late] == wd) & (open_frac[late] > 0)
        assert abs(expected[late][sel].mean() / y[late][sel].mean() - 1) < 0.1, wd
    saturday_morning = (weekday[late] == 5) & (hour[late] >= 10) & (hour[late] < 14)
    assert expected[late][saturday_morning].mean() > 10.0


def test_cold_days_spread_their_extra_energy_to_the_nights() -> None:
    """A setback that runs only below about 3 °C: the nights of a cold day are expected to heat."""
    rng = np.random.default_rng(4)
    days = 70
    n = days * 24
    day = np.repeat(np.arange(1, days + 1), 24)
    hour = np.tile(np.arange(24), days)
    daily_c = 8.0 - 10.0 * (np.arange(days) / days) + rng.normal(0, 2.0, days)  # autumn into winter
    outdoor = np.repeat(daily_c, 24)
    comfort = (hour >= 6) & (hour < 18)
    night = np.maximum(0.0, 3.0 - outdoor) * 2.0
    y = np.where(comfort, 2.0 * np.maximum(0.0, 18.0 - outdoor), night) * (1 + rng.normal(0, 0.03, n)) + 0.5
    open_frac = ((hour >= 8) & (hour < 17)).astype(float)
    expected = _walk(y, outdoor, open_frac, hour, day, np.zeros(n, dtype=bool))
    cold_nights = (np.arange(n) >= 42 * 24) & ~comfort & (outdoor < -1.0)
    assert cold_nights.sum() > 24
    ratio = y[cold_nights].sum() / expected[cold_nights].sum()
    # A fixed share of the day (the model before) expected about a third of it (ratio 3.4); a line in the
    # day's energy cannot follow a threshold exactly, but halves the gap.
    assert 0.7 < ratio < 2.5


def _heating_meter(days: int, daily_c: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """A heating meter that also heats hot water every morning: 2 kWh/h from 6 to 9 h, whatever the weather."""
    rng = np.random.default_rng(seed)
    n = days * 24
    day = np.repeat(np.arange(1, days + 1), 24)
    hour = np.tile(np.arange(24), days)
    outdoor = np.repeat(daily_c, 24) + 3.0 * np.sin(2 * np.pi * (hour - 9) / 24)
    comfort = (hour >= 6) & (hour < 18)
    y = np.where(comfort, 2.5 * np.maximum(0.0, 15.0 - outdoor), 0.0) + np.where((hour >= 6) & (hour < 9), 2.0, 0.0)
    y = y * (1 + rng.normal(0, 0.03, n))
    return {"y": y, "outdoor": outdoor, "open_frac": ((hour >= 8) & (hour < 17)).astype(float), "hour": hour,
            "day": day}


def test_mild_days_keep_what_the_meter_still_counts() -> None:
    """Spring into summer: the degree-day line falls to zero, the morning hot water does not."""
    days = 90
    s = _heating_meter(days, np.linspace(6.0, 20.0, days), seed=5)
    expected = _run(s, np.zeros(s["y"].size, dtype=bool))
    summer = np.arange(s["y"].size) >= 75 * 24
    # A line stopped at zero expected a third of it (ratio 3); the mild days are now not under-expected.
    assert 0.6 < s["y"][summer].sum() / expected[summer].sum() < 1.5


def test_hours_colder_than_the_fitted_days_are_beyond_the_fit() -> None:
    """Fitted on a mild autumn (8 to 12 °C), the first frost is an extrapolation; a mild day is not."""
    days = 42
    daily_c = np.where(np.arange(days) < 35, 10.0 + 2.0 * np.sin(np.arange(days) / 2.0), -4.0)
    s = _heating_meter(days, daily_c, seed=6)
    n = s["y"].size
    model = ExpectedConsumption(s["y"], s["outdoor"], s["open_frac"], np.zeros(n, dtype=bool), s["hour"], s["day"],
                                ExpectedConfig())
    assert model.refit(35 * 24, np.zeros(35 * 24, dtype=bool))
    beyond = model.beyond_fit(0, n, margin_c=2.0)
    assert beyond[37 * 24 :].all()
    assert not beyond[20 * 24 : 34 * 24].any()


def test_hours_warmer_than_the_fitted_days_are_beyond_the_fit_until_a_refit_has_seen_such_days() -> None:
    """Fitted on a winter (2 to 8 °C), a first warm week at 20 °C is an extrapolation too: the degree-day line's
    fall and the level it stops at were never seen (issue 11, family B: a workshop's convector meter expected at 0
    through its first summer nights, 3 kWh/h of base load read as an excess). A refit that has fitted such days
    judges them again; a fit of the format before (no warmest days kept) judges them, as it did."""
    from anomalies.expected import ExpectedFit

    days = 56
    daily_c = np.where(np.arange(days) < 35, 5.0 + 3.0 * np.sin(np.arange(days) / 2.0), 20.0)
    s = _heating_meter(days, daily_c, seed=7)
    n = s["y"].size
    model = ExpectedConsumption(s["y"], s["outdoor"], s["open_frac"], np.zeros(n, dtype=bool), s["hour"], s["day"],
                                ExpectedConfig())
    assert model.refit(35 * 24, np.zeros(35 * 24, dtype=bool))
    beyond = model.beyond_fit(0, n, margin_c=2.0)
    assert beyond[37 * 24 : 42 * 24].all()
    assert not beyond[20 * 24 : 34 * 24].any()
    fit = model.snapshot().to_dict()
    assert fit["format_version"] == 3
    old = {k: v for k, v in fit.items() if k != "warmest_c"}
    model.restore(ExpectedFit.from_dict({**old, "format_version": 2}))
    assert not model.beyond_fit(37 * 24, 42 * 24, margin_c=2.0).any()
    assert model.refit(49 * 24, np.zeros(49 * 24, dtype=bool))
    assert not model.beyond_fit(49 * 24, n, margin_c=2.0).any()


def _dst_series() -> dict[str, np.ndarray]:
    """Hourly UTC series from a Paris afternoon across the spring and autumn DST changes, with gaps."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    local = [(start + timedelta(hours=i)).astimezone(paris) for i in range(24 * 250)]
    hour = np.array([t.hour for t in local], dtype=np.int64)
    day = np.array([t.date().toordinal() for t in local], dtype=np.int64)
    rng = np.random.default_rng(4)
    n = hour.size
    outdoor = 12.0 + 8.0 * np.sin(np.arange(n) / (24 * 40.0)) + 3.0 * np.sin(2 * np.pi * (hour - 9) / 24)
    is_open = (day % 7) < 5
    y = np.maximum(0.0, 17.0 - outdoor) * np.where(is_open & (hour >= 7) & (hour < 18), 2.5, 0.7) + 1.0
    y = y * (1 + rng.normal(0, 0.05, n))
    y[rng.random(n) < 0.01] = np.nan
    open_frac = (is_open & (hour >= 8) & (hour < 17)).astype(float)
    return {"y": y, "outdoor": outdoor, "open_frac": open_frac, "hour": hour, "day": day}


def test_day_sums_kept_across_refits_are_those_of_each_window() -> None:
    """Refits read a table of per-day sums built once; a window cut inside a day, DST days and gaps give
    the same table, fit and predictions, bit for bit, as summing the window's days again at each refit."""
    from datetime import timedelta

    from anomalies.expected import _DayTable

    s = _dst_series()
    n = s["y"].size
    config = ExpectedConfig(window=timedelta(days=20))
    args = (s["y"], s["outdoor"], s["open_frac"], np.zeros(n, dtype=bool), s["hour"], s["day"], config)
    kept, again = ExpectedConsumption(*args), ExpectedConsumption(*args)
    assert kept._days is not None
    again._days = None  # the per-refit path: every window's days summed from its hours
    excluded = np.random.default_rng(5).random(n) < 0.02
    fitted = 0
    for at in range(14 * 24 + 5, n, 97):  # refits at every hour of the day
        lo = max(0, at - 20 * 24)
        cut = (s["y"][lo:at], s["outdoor"][lo:at], s["hour"][lo:at], s["day"][lo:at])
        window, whole = kept._days.window(lo, at, *cut), _DayTable.build(*cut)
        for name in _DayTable.__slots__:
            assert np.array_equal(getattr(window, name), getattr(whole, name), equal_nan=True), (at, name)
        ok = kept.refit(at, excluded[:at])
        assert ok == again.refit(at, excluded[:at])
        fitted += ok
        assert np.array_equal(kept.predict(at, min(n, at + 97)), again.predict(at, min(n, at + 97)), equal_nan=True)
    assert fitted > 15
    hours_per_day = np.bincount(s["day"] - s["day"].min())
    assert (hours_per_day == 23).any()
    assert (hours_per_day == 25).any()


def _searches(config: ExpectedConfig, days: int = 200) -> tuple[ExpectedConsumption, list[int]]:
    """Weekly refits over ``days``; the hours at which the structure was searched."""
    rng = np.random.default_rng(5)
    n = days * 24
    day = np.repeat(np.arange(days), 24)
    hour = np.tile(np.arange(24), days)
    outdoor = 10.0 - 8.0 * np.cos(2 * np.pi * (day - 200) / 365) + rng.normal(0, 1.0, n)
    open_frac = (((day % 7) < 5) & (hour >= 8) & (hour < 17)).astype(float)
    y = 2.0 + 0.6 * np.maximum(0.0, 15.0 - outdoor) * (1 + open_frac) + rng.normal(0, 0.2, n)
    model = ExpectedConsumption(y, outdoor, open_frac, np.zeros(n, dtype=bool), hour, day, config)
    searched = []
    for at in refit_hours(n, config):
        before = model.searches
        model.refit(at, np.zeros(at, dtype=bool))
        if model.searches > before:
            searched.append(at)
    return model, searched


def test_the_structure_is_searched_every_four_weeks_and_while_the_history_is_young() -> None:
    config = ExpectedConfig(structure_every=timedelta(days=28))
    model, searched = _searches(config)
    assert model.fits == len(refit_hours(200 * 24, config))
    assert searched[0] == 14 * 24
    gaps = np.diff(searched) / 24
    assert gaps.max() <= 28
    # Young histories grow by a quarter within a week or two: searched more often than every four weeks.
    assert gaps[0] < 28
    assert model.searches < model.fits / 2


def test_every_refit_searches_the_structure_by_default() -> None:
    config = ExpectedConfig()
    model, searched = _searches(config, days=60)
    assert model.searches == model.fits == len(searched)


def test_a_constant_closed_day_load_keeps_its_flat_profile() -> None:
    """A school's electricity: heating-dependent open days, closed days drawing exactly the same 4 kWh every hour.

    The closed days' energies differ by rounding alone: a slope of where a day's extra energy goes, learnt
    from them, was rounding over rounding and reshaped their hours at random (0 kWh some hours, 14 kWh others).
    """
    rng = np.random.default_rng(8)
    days = 84
    n = days * 24
    day = np.repeat(np.arange(1, days + 1), 24)
    hour = np.tile(np.arange(24), days)
    daily_c = 4.0 + 8.0 * (np.arange(days) / days) + rng.normal(0, 3.0, days)  # late winter into spring
    outdoor = np.repeat(daily_c, 24) + 3.0 * np.sin(2 * np.pi * (hour - 9) / 24)
    is_open = np.repeat(np.isin((np.arange(1, days + 1) - 1) % 7, [0, 1, 3, 4]), 24)  # Wednesdays closed too
    open_hours = is_open & (hour >= 8) & (hour < 17)
    # Hourly energies are differences of a meter's index: the same draw, up to floating-point round-off.
    closed_load = 3.99 + rng.normal(0, 1e-9, n)
    y = np.where(open_hours, (10.0 + 0.8 * np.maximum(0.0, 16.0 - outdoor)) * (1 + rng.normal(0, 0.03, n)), closed_load)
    expected = _walk(y, outdoor, open_hours.astype(float), hour, day, np.zeros(n, dtype=bool))
    closed_days = [d for d in range(28, days) if not is_open[d * 24]]
    assert len(closed_days) >= 20
    hours_of = np.array([expected[d * 24 : (d + 1) * 24] for d in closed_days])
    # A closed day's hours are expected alike (the level may follow the weather, the hours not apart).
    assert (hours_of.max(axis=1) / hours_of.min(axis=1)).max() < 1.5, hours_of.round(1)


def test_an_hour_open_where_its_weekday_never_was_is_beyond_the_fit() -> None:
    """An event hall open on Tuesday afternoons and Saturdays just after midnight, then booked on a Saturday evening.

    The hall's Saturdays were open from midnight to one (Friday parties running late): the model knows
    no Saturday evening open, so those hours are beyond the fit (no model alert there; issue 11, family
    B's event hall); the same Saturday's closed afternoon, a Tuesday afternoon, seen four times, and the
    closed Sundays are not. From the old format (no ``seen``), every hour counts as seen.
    """
    from anomalies.expected import ExpectedFit

    days = 42
    day = np.repeat(np.arange(700_000, 700_000 + days), 24)
    hour = np.tile(np.arange(24), days)
    weekday = (day - 1) % 7
    booked_saturday = day == np.min(day[(weekday == 5) & (day >= day[0] + 28)])
    late = (weekday == 5) & (day < day[0] + 28) & (hour == 0)
    open_frac = (((weekday == 1) & (hour >= 14) & (hour < 18)) | late | (booked_saturday & (hour >= 18))).astype(float)
    y = 0.5 + 10.0 * open_frac + np.random.default_rng(3).normal(0, 0.05, day.size)
    outdoor = np.full(day.size, 12.0)
    model = ExpectedConsumption(y, outdoor, open_frac, np.zeros(day.size, dtype=bool), hour, day, ExpectedConfig())
    at = 28 * 24
    assert not booked_saturday[:at].any()
    assert model.refit(at, np.zeros(at, dtype=bool))
    beyond = model.beyond_fit(at, day.size, margin_c=2.0)
    tuesday = (weekday[at:] == 1) & (hour[at:] == 15)
    assert tuesday.any()
    assert not beyond[tuesday].any()
    assert beyond[booked_saturday[at:] & (hour[at:] >= 18)].all()
    assert not beyond[booked_saturday[at:] & (hour[at:] > 0) & (hour[at:] < 18)].any()
    sunday = weekday[at:] == 6
    assert sunday.sum() >= 24
    assert not beyond[sunday].any()
    fit = model.snapshot().to_dict()
    assert fit["profile"] is not None
    assert fit["format_version"] == 3
    del fit["profile"]["seen"]
    model.restore(ExpectedFit.from_dict({**fit, "format_version": 1}))
    assert not model.beyond_fit(at, day.size, margin_c=2.0).any()


@pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning")
def test_row_medians_are_numpys_bit_for_bit() -> None:
    """The day bound's medians (one sort a row) are ``np.nanmedian``'s: odd and even counts of numbers, ties,
    NaN anywhere, large magnitudes, and what numpy is left to compute (infinities, negative zeros, a row
    without a number)."""
    rng = np.random.default_rng(7)
    for trial in range(400):
        shape = (int(rng.integers(1, 30)), int(rng.integers(1, 60)))
        values = [rng.normal(size=shape), rng.integers(-3, 4, size=shape).astype(np.float64),
                  np.round(rng.normal(size=shape), 1) * 1e300][trial % 3]
        values[rng.random(shape) < rng.random()] = np.nan
        if trial % 5 == 0:
            values[0, 0] = [-0.0, np.inf, -np.inf, np.nan][trial // 5 % 4]
        got, numpy = _row_nanmedian(values), np.nanmedian(values, axis=1)
        assert got.tobytes() == numpy.tobytes(), trial


def test_the_hour_a_dst_day_repeats_counts_one_day_seen_not_two() -> None:
    """A Sunday open at 2 o'clock on two days, one of them the autumn's 25-hour Sunday (2 o'clock twice).

    Seen on 2 days, fewer than 3: that Sunday hour booked again after the fit is beyond the fit (it was
    counted 3 times, one per hour, and judged).
    """
    d0, day_l, hour_l, dst = 700_000, [], [], 0
    for d in range(d0, d0 + 42):
        hrs = list(range(24))
        if (d - 1) % 7 == 6 and not dst and d >= d0 + 7:
            dst, hrs = d, [0, 1, 2, 2, *range(3, 24)]
        day_l += [d] * len(hrs)
        hour_l += hrs
    day, hour = np.array(day_l), np.array(hour_l)
    weekday = (day - 1) % 7
    sundays = sorted(set(day[weekday == 6].tolist()))
    other = next(s for s in sundays if s != dst)
    booked = next(s for s in sundays if s >= d0 + 28)
    assert dst < d0 + 28
    assert other < d0 + 28
    open_frac = (((weekday == 1) & (hour >= 14) & (hour < 18))
                 | (np.isin(day, [dst, other, booked]) & (hour == 2))).astype(float)
    y = 0.5 + 10.0 * open_frac + np.random.default_rng(3).normal(0, 0.05, day.size)
    model = ExpectedConsumption(y, np.full(day.size, 12.0), open_frac, np.zeros(day.size, dtype=bool), hour, day,
                                ExpectedConfig())
    at = int(np.searchsorted(day, d0 + 28))
    assert model.refit(at, np.zeros(at, dtype=bool))
    beyond = model.beyond_fit(at, day.size, margin_c=2.0)
    assert beyond[(day[at:] == booked) & (hour[at:] == 2)].all()
    assert not beyond[(weekday[at:] == 1) & (hour[at:] == 15)].any()


def test_a_new_building_s_hours_are_judged_from_the_refit_after_its_third_week() -> None:
    """The first fit (14 days) has seen each weekday twice: every hour is beyond it, the third week whole.

    The weekly refit at 21 days has seen each weekday three times: the fourth week is judged
    (docs/anomalies.md, "where the expected value can be trusted").
    """
    s = _series()
    n = s["y"].size
    model = ExpectedConsumption(s["y"], s["outdoor"], s["open_frac"], np.zeros(n, dtype=bool), s["hour"], s["day"],
                                ExpectedConfig())
    first, second = refit_hours(n, ExpectedConfig())[:2]
    assert (first, second) == (14 * 24, 21 * 24)
    assert model.refit(first, np.zeros(first, dtype=bool))
    assert model.beyond_fit(first, second, margin_c=50.0).all()
    assert model.refit(second, np.zeros(second, dtype=bool))
    assert not model.beyond_fit(second, second + 7 * 24, margin_c=50.0).any()


@pytest.mark.xfail(strict=True, reason="known limitation: flagged warm weeks stay out of the refits (docs/anomalies.md)")
def test_first_warm_weeks_flagged_by_the_forest_are_fitted_and_a_fault_there_found() -> None:
    """A convector meter (3 kWh/h of base load, 1.2 kWh/h per degree below 15 °C) fitted on a winter, then warm weeks
    at 20 °C from day 36: its winter line expected 9 kWh/h there, the forest flagged every warm hour, and flagged hours
    left out of every refit keep them beyond the fit for good: a convector left on from day 45 (+3 kWh/h) is no model
    alert. Not fixed: taking their flags as no evidence against them as references (the refit of day 42 then fits them
    and the convector is an alert) lost ``test_main_meter.py``'s +30 % week and cost a false alert on family B
    2026/251 (8 -> 9)."""
    from datetime import UTC, datetime

    from anomalies.detect import DetectConfig, detect
    from anomalies.features import PointSeries
    from inventory import parse_inventory
    from tests.unit.anomalies.one_building import OUTDOOR, one_building_yaml

    meter = ("          - {id: b1-elec, quantity: active_energy, unit: kWh, usage: heating, cumulative: true,"
             " mqtt: {topic: t/e}}\n")
    inventory = parse_inventory(one_building_yaml(OUTDOOR + meter, usage="other"))
    start = datetime(2026, 1, 5, tzinfo=UTC)
    n = 56 * 24
    times = start.timestamp() + 3600.0 * np.arange(n + 1)
    rng = np.random.default_rng(3)
    day = np.arange(n + 1) / 24.0
    daily_c = np.where(day < 36, 5.0 + 3.0 * np.sin(day / 2.0), 20.0 + 1.5 * np.sin(day / 3.0))
    outdoor = daily_c + 3.0 * np.cos(2 * np.pi * ((times / 3600.0) % 24 - 15) / 24) + rng.normal(0, 0.3, n + 1)
    load = 3.0 + 1.2 * np.maximum(0.0, 15.0 - outdoor) + rng.normal(0, 0.15, n + 1) + np.where(day >= 45, 3.0, 0.0)
    readings = {"b1-outdoor": PointSeries(times, outdoor),
                "b1-elec": PointSeries(times, np.concatenate([[0.0], np.cumsum(load[:-1])]))}
    found = [e for e in detect(inventory, readings, DetectConfig(rule_events=False)) if e.kind == "unusual_consumption"]
    assert len(found) == 1, [(e.start, e.end) for e in found]
    assert found[0].start.timestamp() >= start.timestamp() + 45 * 86_400.0
