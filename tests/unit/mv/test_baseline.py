from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from inventory import Building, FrenchCalendar
from mv.baseline import (
    BaselineConfig,
    DailyChangePointBaseline,
    DailyObservations,
    DayType,
    FitStats,
    HourlyObservations,
    Resolution,
    TowtBaseline,
    classify_days,
    daily_energy,
    fit_stats,
)
from streams.errors import InsufficientData, NotFitted

START = date(2024, 1, 1)


def _climate(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 11 - 9 * np.cos(2 * np.pi * (np.arange(n) - 20) / 365) + rng.normal(0, 2.5, n)


def _days(n: int) -> list[date]:
    return [START + timedelta(days=i) for i in range(n)]


def test_recovers_balance_point_and_slopes_with_day_types() -> None:
    n = 365
    days = _days(n)
    temp = _climate(n)
    types = [DayType.UNOCCUPIED if d.weekday() >= 5 else DayType.OCCUPIED for d in days]
    base = np.array([60.0 if t is DayType.OCCUPIED else 25.0 for t in types])
    energy = base + 8 * np.maximum(0, 15 - temp) + 3 * np.maximum(0, temp - 22) + np.random.default_rng(1).normal(0, 4, n)
    model = DailyChangePointBaseline().fit(DailyObservations.build(days, energy, temp, types))
    p = model.params
    assert p.heating_balance_c == pytest.approx(15, abs=1.0)
    assert p.intercept[DayType.OCCUPIED] - p.intercept[DayType.UNOCCUPIED] == pytest.approx(35, abs=4)
    assert p.heating_slope[DayType.OCCUPIED] == pytest.approx(8, rel=0.1)
    assert model.stats.passes_g14
    assert abs(model.stats.nmbe) < 1e-6
    assert "split=intercept" in model.describe()


def test_intercept_only_when_no_weather_dependence() -> None:
    days = _days(365)
    energy = 50 + np.random.default_rng(2).normal(0, 2, 365)
    model = DailyChangePointBaseline().fit(DailyObservations.build(days, energy, _climate(365)))
    assert model.params.heating_balance_c is None
    assert model.params.cooling_balance_c is None


def test_sub_daily_temperatures_integrate_degree_hours() -> None:
    # 2-D temperatures: the degree days are the mean of hourly degree-hours.
    days = _days(300)
    hourly = _climate(300)[:, None] + 6 * np.sin(np.linspace(0, 2 * np.pi, 24, endpoint=False))[None, :]
    true_hdd = np.maximum(0, 16 - hourly).mean(axis=1)
    energy = 20 + 5 * true_hdd + np.random.default_rng(3).normal(0, 1, 300)
    model = DailyChangePointBaseline().fit(DailyObservations.build(days, energy, hourly))
    assert model.params.heating_balance_c == pytest.approx(16, abs=0.5)
    assert model.stats.r2 > 0.95


def test_insufficient_data_gives_reasons() -> None:
    days = _days(100)
    obs = DailyObservations.build(days, np.full(100, 10.0), _climate(100))
    with pytest.raises(InsufficientData) as err:
        DailyChangePointBaseline().fit(obs)
    assert "spans 100 days" in err.value.reasons[0]
    sparse = np.full(365, np.nan)
    sparse[::3] = 10.0
    with pytest.raises(InsufficientData, match="33%"):
        DailyChangePointBaseline().fit(DailyObservations.build(_days(365), sparse, _climate(365)))


def test_not_fitted() -> None:
    with pytest.raises(NotFitted):
        _ = DailyChangePointBaseline().stats


def test_round_trip_to_dict() -> None:
    days = _days(365)
    temp = _climate(365)
    energy = 30 + 4 * np.maximum(0, 14 - temp) + np.random.default_rng(4).normal(0, 2, 365)
    obs = DailyObservations.build(days, energy, temp)
    model = DailyChangePointBaseline(BaselineConfig(min_span=timedelta(days=300))).fit(obs)
    again = DailyChangePointBaseline.from_dict(model.to_dict())
    np.testing.assert_allclose(again.predict(obs), model.predict(obs))
    assert again.stats == model.stats


def test_monthly_stats_computed_when_asked_are_those_of_the_usable_days_monthly_sums() -> None:
    """The monthly statistics are computed when first read (the expected model never reads them), from the fit's
    usable days: the months with 90 % of their days usable, their sums of energy and of the fit's predictions."""
    days = _days(400)
    temp = _climate(400, seed=3)
    energy = 30 + 4 * np.maximum(0, 14 - temp) + np.random.default_rng(5).normal(0, 2, 400)
    energy[40:47] = np.nan  # February loses a week: not a full month
    energy[200] = np.nan  # one day of July: still one
    obs = DailyObservations.build(days, energy, temp)
    model = DailyChangePointBaseline(BaselineConfig(min_span=timedelta(days=300))).fit(obs)
    ok = obs.usable()
    predicted = model.predict(obs)
    sums: dict[tuple[int, int], list[float]] = {}
    for day, y, yhat in zip(days, energy, predicted, strict=True):
        if np.isfinite(y):
            acc = sums.setdefault((day.year, day.month), [0.0, 0.0, 0.0])
            acc[0], acc[1], acc[2] = acc[0] + y, acc[1] + yhat, acc[2] + 1
    full = [(y, yhat) for (year, month), (y, yhat, n) in sorted(sums.items())
            if n >= 0.9 * ((date(year + (month == 12), month % 12 + 1, 1) - date(year, month, 1)).days)]
    assert int(ok.sum()) == 392
    assert len(full) == 12
    want = fit_stats(np.array([f[0] for f in full]), np.array([f[1] for f in full]), model.stats.p, Resolution.MONTHLY)
    assert model.monthly_stats == want
    assert DailyChangePointBaseline.from_dict(model.to_dict()).monthly_stats == want


def test_g14_limits_and_monthly_fallback() -> None:
    noisy = FitStats(365, 4, 100.0, 0.31, 0.0, 0.9, 0.0, Resolution.DAILY)
    assert noisy.failures()
    assert "25%" in noisy.failures()[0]
    assert FitStats(8760, 200, 10.0, 0.29, 0.0, 0.9, 0.0, Resolution.HOURLY).passes_g14
    assert not FitStats(12, 3, 10.0, 0.16, 0.0, 0.9, 0.0, Resolution.MONTHLY).passes_g14
    s = fit_stats(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]), 1, Resolution.DAILY)
    assert s.cvrmse == 0.0
    assert s.r2 == 1.0


def test_classify_days_school(building_school: Building) -> None:
    cal = FrenchCalendar("B")
    types = classify_days([date(2025, 1, 6), date(2025, 1, 11), date(2025, 2, 17), date(2025, 5, 1)], building_school, cal)
    # Monday of term, Saturday, winter holidays of zone B, Labour Day.
    assert types == [DayType.OCCUPIED, DayType.UNOCCUPIED, DayType.SCHOOL_HOLIDAY, DayType.UNOCCUPIED]


@pytest.fixture
def building_school() -> Building:
    return Building.model_validate(
        {
            "id": "ecole",
            "name": "École",
            "usage": "school",
            "floor_area_m2": 1000,
            "heated_area_m2": 900,
            "schedule": {"weekly": {d: ["08:00-16:30"] for d in ("mon", "tue", "wed", "thu", "fri")}},
        }
    )


def test_daily_energy_sums_local_days_and_flags_incomplete() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    stamps = [start + timedelta(hours=h) for h in range(48)]
    days, kwh = daily_energy(stamps, [1.0] * 48)
    assert days == [date(2025, 1, 1), date(2025, 1, 2)]
    assert kwh.tolist() == [24.0, 24.0]


def test_towt_learns_weekly_profile() -> None:
    hours = [datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=h) for h in range(24 * 300)]
    how = np.array([h.weekday() * 24 + h.hour for h in hours])
    occupied = (how % 24 >= 8) & (how % 24 < 18) & (how < 120)
    doy = np.arange(len(hours)) / 24
    temp = 11 - 9 * np.cos(2 * np.pi * (doy - 20) / 365) + 4 * np.sin(2 * np.pi * (doy % 1))
    energy = 2 + 5 * occupied + 0.4 * np.maximum(0, 15 - temp) + np.random.default_rng(5).normal(0, 0.3, len(hours))
    obs = HourlyObservations(tuple(hours), energy, temp)
    model = TowtBaseline(BaselineConfig(min_span=timedelta(days=200))).fit(obs)
    assert model.stats.passes_g14
    assert model.stats.r2 > 0.9
    pred = model.predict(obs)
    assert np.nanmean(np.abs(pred - energy)) < 0.5


def test_residuals_constant_but_for_one_end_have_no_autocorrelation() -> None:
    # Hostile-input round: a flat meter that moved once made numpy divide by a zero spread (a RuntimeWarning
    # on `econome detect`'s stderr) and gave a NaN autocorrelation, which reaches the savings uncertainty.
    for observed in ([5.0, 5.0, 5.0, 9.0], [9.0, 5.0, 5.0, 5.0]):
        s = fit_stats(np.array(observed), np.zeros(4), 1, Resolution.DAILY)
        assert s.autocorr == 0.0
    assert fit_stats(np.array([1.0, 3.0, 2.0, 4.0]), np.zeros(4), 1, Resolution.DAILY).autocorr == pytest.approx(-0.5)
