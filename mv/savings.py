"""Avoided consumption: adjusted baseline minus actual, with its uncertainty.

The baseline fitted on the reference period (:mod:`mv.baseline`) is run
on the weather of the reporting period: that is "what we would have consumed"
without the works (the *adjusted baseline*). The avoided consumption is the
adjusted baseline minus the metered consumption, over the periods where both
are known.

Its uncertainty is the ASHRAE Guideline 14 (annex B) formula for a regression
baseline, with Reddy and Claridge's 1.26 correction::

    U = t · 1.26 · CV(RMSE) · E_adj · sqrt( (n / n') · (1 + 2 / n) / m )

with ``n`` the baseline points, ``n' = n (1 - rho) / (1 + rho)`` the effective
number of them given the lag-1 autocorrelation rho of the residuals, ``m`` the
reporting points, ``E_adj`` the adjusted baseline and ``t`` Student's t for the
confidence level with ``n' - p`` degrees of freedom. ``U / E_adj`` is
``savings_uncertainty_fraction``, comparable with ``savings_fraction``;
``U / savings`` is Guideline 14's *fractional savings uncertainty*, which must
stay below 50 % at 68 % confidence for savings to be reported as compliant.

No savings are claimed from a baseline that fails the Guideline 14 limits
(``g14_failures`` of the model): :func:`avoided_consumption` raises :class:`~streams.errors.ModelError`.

>>> import numpy as np
>>> from datetime import date, timedelta
>>> from mv.baseline import DailyChangePointBaseline, DailyObservations
>>> days = [date(2024, 1, 1) + timedelta(days=i) for i in range(730)]
>>> temp = 11 - 9 * np.cos(2 * np.pi * (np.arange(730) - 20) / 365)
>>> energy = 40 + 6 * np.maximum(0, 15 - temp) + np.random.default_rng(1).normal(0, 3, 730)
>>> energy[365:] *= 0.8
>>> obs = DailyObservations.build(days, energy, temp)
>>> model = DailyChangePointBaseline().fit(obs.select(date(2024, 1, 1), date(2024, 12, 31)))
>>> report = avoided_consumption(model, obs.select(date(2024, 12, 31), date(2026, 1, 1)))
>>> round(report.total.savings_fraction, 2), report.total.significant
(0.2, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from inventory import EnergyTariff, Renovation
from mv.baseline import DailyChangePointBaseline, DailyObservations, FitStats, HourlyObservations, TowtBaseline
from streams.errors import ModelError

__all__ = [
    "G14_FSU_CONFIDENCE",
    "G14_MAX_FSU",
    "HourlyFallback",
    "PerformanceGapAlert",
    "Savings",
    "SavingsReport",
    "avoided_consumption",
    "avoided_consumption_hourly_or_daily",
    "cost_of_inaction",
    "performance_gap",
    "savings_uncertainty",
]

FloatArray = npt.NDArray[np.float64]

G14_MAX_FSU = 0.5
"""Guideline 14: the savings uncertainty must stay below 50 % of the savings..."""
G14_FSU_CONFIDENCE = 0.68
"""...at a 68 % confidence level."""
_REDDY_CLARIDGE = 1.26


def savings_uncertainty(stats: FitStats, adjusted_baseline_kwh: float, m: int, confidence: float = 0.9) -> float:
    """Absolute uncertainty of the savings over m reporting points (ASHRAE G14, annex B).

    Args:
        stats: fit statistics of the baseline.
        adjusted_baseline_kwh: the baseline predicted over the reporting points.
        m: number of reporting points.
        confidence: two-sided confidence level.

    Returns:
        Half-width of the confidence interval, in the unit of the baseline.

    >>> from mv.baseline import FitStats, Resolution
    >>> s = FitStats(365, 3, 100.0, 0.1, 0.0, 0.9, 0.0, Resolution.DAILY)
    >>> round(savings_uncertainty(s, 36_500.0, 365, 0.68))
    240
    """
    if m <= 0:
        return math.nan
    n = stats.n
    n_eff = max(stats.n_effective, stats.p + 1.0)
    # scipy.stats takes half a second to import: only here, not when the CLI starts.
    from scipy import stats as scipy_stats  # type: ignore[import-untyped]

    t = float(scipy_stats.t.ppf(0.5 + confidence / 2, max(n_eff - stats.p, 1.0)))
    return t * _REDDY_CLARIDGE * stats.cvrmse * abs(adjusted_baseline_kwh) * math.sqrt((n / n_eff) * (1 + 2 / n) / m)


@dataclass(frozen=True, slots=True)
class Savings:
    """Avoided consumption over a period.

    Attributes:
        start: first day of the period.
        end: day after the last day.
        adjusted_baseline_kwh: what would have been consumed without the works.
        actual_kwh: what was metered.
        uncertainty_kwh: half-width of the confidence interval of the savings.
        confidence: its confidence level.
        points: number of reporting points (days or hours) counted.
    """

    start: date
    end: date
    adjusted_baseline_kwh: float
    actual_kwh: float
    uncertainty_kwh: float
    confidence: float
    points: int

    @property
    def savings_kwh(self) -> float:
        """Adjusted baseline minus actual."""
        return self.adjusted_baseline_kwh - self.actual_kwh

    @property
    def savings_fraction(self) -> float:
        """Savings as a fraction of the adjusted baseline."""
        return self.savings_kwh / self.adjusted_baseline_kwh if self.adjusted_baseline_kwh else math.nan

    @property
    def savings_uncertainty_fraction(self) -> float:
        """Uncertainty as a fraction of the adjusted baseline (same scale as ``savings_fraction``)."""
        return self.uncertainty_kwh / self.adjusted_baseline_kwh if self.adjusted_baseline_kwh else math.nan

    @property
    def fractional_savings_uncertainty(self) -> float | None:
        """Guideline 14's FSU, uncertainty over savings (None when the savings are zero)."""
        return self.uncertainty_kwh / abs(self.savings_kwh) if self.savings_kwh else None

    @property
    def significant(self) -> bool:
        """True when the savings exceed their uncertainty (either sign)."""
        return abs(self.savings_kwh) > self.uncertainty_kwh

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "adjusted_baseline_kwh": self.adjusted_baseline_kwh,
            "actual_kwh": self.actual_kwh,
            "savings_kwh": self.savings_kwh,
            "savings_fraction": self.savings_fraction,
            "uncertainty_kwh": self.uncertainty_kwh,
            "savings_uncertainty_fraction": self.savings_uncertainty_fraction,
            "fractional_savings_uncertainty": self.fractional_savings_uncertainty,
            "confidence": self.confidence,
            "significant": self.significant,
            "points": self.points,
        }


@dataclass(frozen=True, slots=True, eq=False)
class SavingsReport:
    """Savings of a reporting period, in total, by month and day by day.

    Attributes:
        model: the baseline's description.
        stats: the baseline's fit statistics.
        total: savings over the whole reporting period.
        monthly: savings of each calendar month.
        days: the reporting days.
        adjusted_baseline_kwh: adjusted baseline of each day (NaN when unknown).
        actual_kwh: metered energy of each day (NaN when unknown).
        g14_model_ok: the baseline passes Guideline 14 (see ``g14_failures`` of the models).
        g14_compliant: the model passes and the FSU is below 50 % at 68 % confidence.
        monthly_stats: fit statistics of the monthly sums, for a daily model.
    """

    model: str
    stats: FitStats
    total: Savings
    monthly: tuple[Savings, ...]
    days: tuple[date, ...]
    adjusted_baseline_kwh: FloatArray
    actual_kwh: FloatArray
    g14_model_ok: bool
    g14_compliant: bool
    monthly_stats: FitStats | None = None

    def cumulative(self) -> tuple[FloatArray, FloatArray]:
        """Running sums of the adjusted baseline and of the actual, over days where both are known."""
        both = ~np.isnan(self.adjusted_baseline_kwh) & ~np.isnan(self.actual_kwh)
        base = np.cumsum(np.where(both, self.adjusted_baseline_kwh, 0.0))
        actual = np.cumsum(np.where(both, self.actual_kwh, 0.0))
        return base, actual

    def valued(self, tariff: EnergyTariff) -> dict[str, float]:
        """Savings and uncertainty in € and kgCO2e with an energy's tariff."""
        t = self.total
        return {
            "savings_eur": t.savings_kwh * tariff.price_eur_per_unit,
            "uncertainty_eur": t.uncertainty_kwh * tariff.price_eur_per_unit,
            "savings_kgco2e": t.savings_kwh * tariff.emission_kgco2e_per_unit,
            "uncertainty_kgco2e": t.uncertainty_kwh * tariff.emission_kgco2e_per_unit,
        }

    def to_dict(self, tariff: EnergyTariff | None = None) -> dict[str, Any]:
        """The JSON object of ``econome mv``: totals, fit statistics, model, months."""
        t = self.total
        out: dict[str, Any] = {
            "savings_kwh": t.savings_kwh,
            "savings_fraction": t.savings_fraction,
            "savings_uncertainty_kwh": t.uncertainty_kwh,
            "savings_uncertainty_fraction": t.savings_uncertainty_fraction,
            "fractional_savings_uncertainty": t.fractional_savings_uncertainty,
            "confidence": t.confidence,
            "significant": t.significant,
            "adjusted_baseline_kwh": t.adjusted_baseline_kwh,
            "actual_kwh": t.actual_kwh,
            "cvrmse": self.stats.cvrmse,
            "nmbe": self.stats.nmbe,
            "r2": self.stats.r2,
            "g14_model_ok": self.g14_model_ok,
            "monthly_cvrmse": self.monthly_stats.cvrmse if self.monthly_stats is not None else None,
            "monthly_nmbe": self.monthly_stats.nmbe if self.monthly_stats is not None else None,
            "g14_compliant": self.g14_compliant,
            "model": self.model,
            "baseline_points": self.stats.n,
            "reporting_points": t.points,
            "monthly": [m.to_dict() for m in self.monthly],
        }
        if tariff is not None:
            out.update(self.valued(tariff))
        return out


def avoided_consumption(
    model: DailyChangePointBaseline | TowtBaseline,
    reporting: DailyObservations | HourlyObservations,
    *,
    confidence: float = 0.9,
    require_g14: bool = True,
) -> SavingsReport:
    """Adjusted baseline minus actual over the reporting period, with its uncertainty.

    Args:
        model: a fitted baseline.
        reporting: observations of the reporting period, of the model's kind.
        confidence: two-sided confidence level of the uncertainty.
        require_g14: refuse a baseline that fails the Guideline 14 limits.

    Returns:
        Total, monthly and daily savings.

    Raises:
        ModelError: when the baseline fails Guideline 14 (with ``require_g14``),
            when the observations do not fit the model, or when no reporting
            point has both energy and weather.
    """
    stats = model.stats
    failures = model.g14_failures()
    if require_g14 and failures:
        msg = "baseline fails ASHRAE Guideline 14, no savings claimed: " + "; ".join(failures)
        raise ModelError(msg)
    if isinstance(model, DailyChangePointBaseline) and isinstance(reporting, DailyObservations):
        predicted = model.predict(reporting)
        days = list(reporting.days)
        point_days = days
        actual = reporting.energy_kwh
    elif isinstance(model, TowtBaseline) and isinstance(reporting, HourlyObservations):
        predicted = model.predict(reporting)
        point_days = [h.astimezone(reporting.tz).date() for h in reporting.hours]
        days = sorted(set(point_days))
        actual = reporting.energy_kwh
    else:
        msg = f"{type(model).__name__} cannot predict {type(reporting).__name__}"
        raise ModelError(msg)
    both = ~np.isnan(predicted) & ~np.isnan(actual)
    if not both.any():
        msg = "no reporting point has both energy and weather"
        raise ModelError(msg)
    total = _savings(stats, predicted[both], actual[both], min(days), max(days) + timedelta(days=1), confidence)
    months: dict[tuple[int, int], list[int]] = {}
    for i, day in enumerate(point_days):
        if both[i]:
            months.setdefault((day.year, day.month), []).append(i)
    monthly = []
    for (year, month), idx in sorted(months.items()):
        first = date(year, month, 1)
        nxt = date(year + (month == 12), month % 12 + 1, 1)
        monthly.append(_savings(stats, predicted[idx], actual[idx], max(first, total.start), min(nxt, total.end), confidence))
    daily_pred, daily_act = _by_day(days, point_days, predicted, actual)
    fsu = savings_uncertainty(stats, total.adjusted_baseline_kwh, total.points, G14_FSU_CONFIDENCE)
    compliant = bool(not failures and total.savings_kwh > 0 and fsu < G14_MAX_FSU * total.savings_kwh)
    monthly_stats = model.monthly_stats if isinstance(model, DailyChangePointBaseline) else None
    return SavingsReport(
        model.describe(), stats, total, tuple(monthly), tuple(days), daily_pred, daily_act, not failures, compliant, monthly_stats
    )


@dataclass(frozen=True, slots=True)
class HourlyFallback:
    """Why the savings come from the daily model when the hourly one was asked for.

    Attributes:
        hourly_failures: the hourly model's Guideline 14 failures (e.g. its CV(RMSE) above 30 %).
        hourly_model: the hourly model's description.
    """

    hourly_failures: tuple[str, ...]
    hourly_model: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"from": "hourly", "to": "daily", "hourly_model": self.hourly_model, "reasons": list(self.hourly_failures)}


def avoided_consumption_hourly_or_daily(
    hourly: TowtBaseline,
    hourly_reporting: HourlyObservations,
    daily: DailyChangePointBaseline,
    daily_reporting: DailyObservations,
    *,
    confidence: float = 0.9,
) -> tuple[SavingsReport, HourlyFallback | None]:
    """Savings from the hourly model, or from the daily one when only the daily model passes Guideline 14.

    Hourly consumption is often too erratic hour by hour for an hourly model
    to pass Guideline 14 (eemeter's hourly sample: CV(RMSE) 118 %) while its
    daily sums follow the weather closely: refusing the savings would throw
    away a daily model that passes.

    Args:
        hourly: a fitted hourly model.
        hourly_reporting: the reporting hours.
        daily: a daily model fitted on the same reference period (its days).
        daily_reporting: the reporting days.
        confidence: two-sided confidence level of the uncertainty.

    Returns:
        The savings, and the fallback (None when the hourly model passed and was used).

    Raises:
        ModelError: both models fail Guideline 14 (the message gives both reasons), or the
            observations do not fit them.
    """
    failures = hourly.g14_failures()
    if not failures:
        return avoided_consumption(hourly, hourly_reporting, confidence=confidence), None
    daily_failures = daily.g14_failures()
    if daily_failures:
        msg = (
            "baseline fails ASHRAE Guideline 14, no savings claimed: hourly model: " + "; ".join(failures)
            + "; daily model: " + "; ".join(daily_failures)
        )
        raise ModelError(msg)
    report = avoided_consumption(daily, daily_reporting, confidence=confidence)
    return report, HourlyFallback(tuple(failures), hourly.describe())


def _savings(stats: FitStats, predicted: FloatArray, actual: FloatArray, start: date, end: date, confidence: float) -> Savings:
    base = float(predicted.sum())
    return Savings(
        start=start,
        end=end,
        adjusted_baseline_kwh=base,
        actual_kwh=float(actual.sum()),
        uncertainty_kwh=savings_uncertainty(stats, base, int(predicted.size), confidence),
        confidence=confidence,
        points=int(predicted.size),
    )


def _by_day(
    days: Sequence[date], point_days: Sequence[date], predicted: FloatArray, actual: FloatArray
) -> tuple[FloatArray, FloatArray]:
    if len(days) == len(point_days):
        return predicted.copy(), actual.copy()
    index = {d: i for i, d in enumerate(days)}
    rows = np.array([index[d] for d in point_days])
    pred = np.zeros(len(days))
    act = np.zeros(len(days))
    missing = np.zeros(len(days), dtype=bool)
    np.add.at(pred, rows, np.nan_to_num(predicted))
    np.add.at(act, rows, np.nan_to_num(actual))
    np.logical_or.at(missing, rows, np.isnan(predicted) | np.isnan(actual))
    pred[missing] = np.nan
    act[missing] = np.nan
    return pred, act


@dataclass(frozen=True, slots=True)
class PerformanceGapAlert:
    """An alert record: the savings of a renovation stay below what was promised.

    Attributes:
        qualified_name: ``mv.savings.performance_gap``.
        description: one sentence for the advisor.
        data: JSON-safe details (building, promised and measured fractions, months).
    """

    qualified_name: str
    description: str
    data: dict[str, Any]


def performance_gap(
    report: SavingsReport,
    renovation: Renovation,
    *,
    building_id: str = "",
    months: int = 3,
    min_month_share: float = 0.5,
) -> PerformanceGapAlert | None:
    """Alert when the savings stay clearly below the promise for ``months`` months in a row.

    A month is *below* when even the top of its confidence interval
    (savings + uncertainty) is below the promised fraction. Only months whose
    adjusted baseline is at least ``min_month_share`` of the average month are
    judged, so that a heating renovation is not judged in July.

    Args:
        report: savings since the renovation.
        renovation: gives the promised savings.
        building_id: named in the alert.
        months: how many judged months in a row, the last ones, must be below.
        min_month_share: see above.

    Returns:
        The alert, or None when the savings keep the promise (or too few months are judged).
    """
    promised = renovation.promised_savings_pct / 100
    if not report.monthly:
        return None
    mean_base = float(np.mean([m.adjusted_baseline_kwh for m in report.monthly]))
    judged = [m for m in report.monthly if m.adjusted_baseline_kwh >= min_month_share * mean_base]
    if len(judged) < months:
        return None
    last = judged[-months:]
    if not all(m.savings_fraction + m.savings_uncertainty_fraction < promised for m in last):
        return None
    measured = sum(m.savings_kwh for m in last) / sum(m.adjusted_baseline_kwh for m in last)
    who = f"building {building_id}: " if building_id else ""
    return PerformanceGapAlert(
        qualified_name="mv.savings.performance_gap",
        description=(
            f"{who}savings of {measured:.0%} over the last {months} judged months, "
            f"below the {promised:.0%} promised for '{renovation.description}'"
        ),
        data={
            "building": building_id,
            "renovation_date": renovation.date.isoformat(),
            "promised_fraction": promised,
            "measured_fraction": measured,
            "months": [f"{m.start:%Y-%m}" for m in last],
            "monthly_fractions": [m.savings_fraction for m in last],
            "monthly_uncertainty_fractions": [m.savings_uncertainty_fraction for m in last],
        },
    )


def cost_of_inaction(
    annual_kwh: float,
    price_eur_per_kwh: float,
    *,
    first_year: int,
    last_year: int = 2030,
    target_fraction: float = 0.4,
    price_escalation: float = 0.04,
    target_kwh: float | None = None,
) -> list[tuple[int, float, float]]:
    """Cumulative cost of doing nothing against following a linear path to a target.

    Doing nothing keeps ``annual_kwh`` every year; the path cuts it linearly to
    ``target_kwh`` in ``last_year`` (the Décret tertiaire's: 60 % of the reference
    year's consumption), or, when not given, to ``(1 - target_fraction) · annual_kwh``.
    A consumption already at or below the target costs nothing. Prices rise by
    ``price_escalation`` a year.

    Args:
        annual_kwh: consumption of the current year (``first_year``).
        price_eur_per_kwh: average price in ``first_year``.
        first_year: the current year.
        last_year: the target year (2030 for the Décret tertiaire -40 %).
        target_fraction: reduction reached in ``last_year``.
        price_escalation: yearly price rise.
        target_kwh: consumption to reach in ``last_year``; replaces ``target_fraction``.

    Returns:
        ``(year, cost of doing nothing, cumulative extra cost over the path)`` per year.

    >>> rows = cost_of_inaction(100_000, 0.2, first_year=2026, last_year=2028, price_escalation=0.0)
    >>> [(y, round(c), round(extra)) for y, c, extra in rows]
    [(2026, 20000, 0), (2027, 20000, 4000), (2028, 20000, 12000)]
    >>> rows = cost_of_inaction(100_000, 0.2, first_year=2026, last_year=2028, price_escalation=0.0, target_kwh=90_000)
    >>> [round(extra) for _, _, extra in rows]
    [0, 1000, 3000]
    """
    rows: list[tuple[int, float, float]] = []
    extra = 0.0
    span = max(last_year - first_year, 1)
    target = annual_kwh * (1 - target_fraction) if target_kwh is None else min(target_kwh, annual_kwh)
    for year in range(first_year, last_year + 1):
        price = price_eur_per_kwh * (1 + price_escalation) ** (year - first_year)
        path_kwh = annual_kwh - (annual_kwh - target) * (year - first_year) / span
        extra += (annual_kwh - path_kwh) * price
        rows.append((year, annual_kwh * price, extra))
    return rows
