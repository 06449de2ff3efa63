"""Weather-normalised baseline models and their ASHRAE Guideline 14 fit statistics.

Two models of a meter's consumption on a reference (baseline) period:

* :class:`DailyChangePointBaseline`: daily energy regressed on heating and
  cooling degree days with searched balance points (a change-point model),
  with a day-type split (occupied / unoccupied / school holiday) of the
  intercept and, when it pays, of the heating slope. Degree days of a day are
  integrated over its sub-daily temperatures, ``mean(max(0, Tb - T_h))``, so a
  cold night and a warm afternoon both count; with one temperature per day it
  is the classic ``max(0, Tb - T_day)``.
* :class:`TowtBaseline`: the hourly time-of-week-and-temperature model of
  Mathieu et al. (LBNL, 2011): one coefficient per hour of the week and a
  piecewise-linear temperature response, separate for occupied and unoccupied hours.

Both refuse a reference period that is too short or too sparse
(:class:`~streams.errors.InsufficientData` with the reasons), and report
CV(RMSE) and NMBE (:class:`FitStats`), checked against the Guideline 14
limits of :data:`G14_LIMITS`. Savings are computed in :mod:`mv.savings`.

Sample config::

    baseline:
      min_span: 270d
      min_coverage: 0.9
      heating_balance_c: [5.0, 22.0]
      cooling_balance_c: [12.0, 28.0]

>>> import numpy as np
>>> from datetime import date, timedelta
>>> days = [date(2024, 1, 1) + timedelta(days=i) for i in range(365)]
>>> temp = 11 - 9 * np.cos(2 * np.pi * (np.arange(365) - 20) / 365)
>>> energy = 40 + 6 * np.maximum(0, 15 - temp) + np.random.default_rng(0).normal(0, 3, 365)
>>> obs = DailyObservations.build(days, energy, temp)
>>> model = DailyChangePointBaseline().fit(obs)
>>> round(model.params.heating_balance_c), model.stats.passes_g14
(15, True)
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from enum import Enum
from typing import Any, Protocol, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from inventory import Building, Duration, FrenchCalendar
from inventory.model import WEEKDAYS
from streams.errors import InsufficientData, ModelError, NotFitted

__all__ = [
    "G14_LIMITS",
    "Baseline",
    "BaselineConfig",
    "DailyChangePointBaseline",
    "DailyObservations",
    "DailyParams",
    "DayType",
    "FitStats",
    "HourlyObservations",
    "Resolution",
    "TowtBaseline",
    "classify_days",
    "daily_energy",
    "fit_stats",
    "hourly_temperature_matrix",
    "weekday_day_types",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

FORMAT_VERSION = 1


class Resolution(str, Enum):
    """Time step of the data a model is fitted on."""

    HOURLY = "hourly"
    DAILY = "daily"
    MONTHLY = "monthly"


G14_LIMITS: dict[Resolution, tuple[float, float]] = {
    Resolution.MONTHLY: (0.15, 0.05),
    Resolution.DAILY: (0.25, 0.10),
    Resolution.HOURLY: (0.30, 0.10),
}
"""(max CV(RMSE), max |NMBE|) per resolution. Monthly and hourly are the ASHRAE
Guideline 14 limits; Guideline 14 gives none for daily data, which sit between
the two, so daily uses 25 % / ±10 % (see docs/mv.md)."""


class DayType(str, Enum):
    """How a building is used on a day, the split of the daily model."""

    OCCUPIED = "occupied"
    UNOCCUPIED = "unoccupied"
    SCHOOL_HOLIDAY = "school_holiday"


# A day type with too few reference days borrows the coefficients of the next one.
_FALLBACK = {DayType.SCHOOL_HOLIDAY: DayType.UNOCCUPIED, DayType.UNOCCUPIED: DayType.OCCUPIED}


def classify_days(days: Sequence[date], building: Building, calendar: FrenchCalendar) -> list[DayType]:
    """Day type of each day from the building's schedule and the French calendar.

    A day with no opening hours, an exceptional closure or a public holiday
    (when the building closes on them) is unoccupied; otherwise a day in the
    school holidays of the zone is a school-holiday day (a school is closed,
    a library or a gymnasium is used differently); otherwise it is occupied.

    Args:
        days: the days to classify.
        building: gives the schedule.
        calendar: public and school holidays of the organisation's zone.

    Returns:
        One day type per day.
    """
    schedule = building.schedule
    out: list[DayType] = []
    for day in days:
        closed = not schedule.opening_hours(WEEKDAYS[day.weekday()])
        closed = closed or any(c.start <= day <= c.end for c in schedule.closures)
        closed = closed or (schedule.closed_on_public_holidays and calendar.is_public_holiday(day))
        if closed:
            out.append(DayType.UNOCCUPIED)
        elif calendar.is_school_holiday(day):
            out.append(DayType.SCHOOL_HOLIDAY)
        else:
            out.append(DayType.OCCUPIED)
    return out


def weekday_day_types(days: Sequence[date], calendar: FrenchCalendar | None = None) -> list[DayType]:
    """Day types without a schedule: Monday to Friday occupied, weekends unoccupied.

    >>> weekday_day_types([date(2025, 1, 3), date(2025, 1, 4)])
    [<DayType.OCCUPIED: 'occupied'>, <DayType.UNOCCUPIED: 'unoccupied'>]
    """
    out: list[DayType] = []
    for day in days:
        weekend = day.weekday() >= 5 or (calendar is not None and calendar.is_public_holiday(day))
        out.append(DayType.UNOCCUPIED if weekend else DayType.OCCUPIED)
    return out


class BaselineConfig(BaseModel):
    """Data sufficiency rules and search ranges of the baseline models."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_span: Duration = timedelta(days=270)
    """Shortest reference period; a full year is better, a heating season at least."""
    min_coverage: float = Field(default=0.9, gt=0, le=1)
    """Smallest fraction of the reference period with both energy and temperature."""
    min_days_per_type: int = Field(default=12, ge=1)
    """A day type with fewer reference days shares the coefficients of the next one."""
    heating_balance_c: tuple[float, float] = (5.0, 22.0)
    """Range searched for the heating balance point."""
    cooling_balance_c: tuple[float, float] = (12.0, 28.0)
    """Range searched for the cooling balance point."""
    balance_step_c: float = Field(default=0.5, gt=0)
    """Step of the balance-point grid."""
    min_t_stat: float = Field(default=1.645, ge=0)
    """A heating or cooling slope must be positive with at least this t statistic."""
    towt_knots_c: tuple[float, ...] = (5.0, 10.0, 15.0, 20.0, 25.0)
    """Knots of the piecewise-linear temperature response of the hourly model."""

    @model_validator(mode="after")
    def _ranges(self) -> BaselineConfig:
        for name, (lo, hi) in (("heating_balance_c", self.heating_balance_c), ("cooling_balance_c", self.cooling_balance_c)):
            if hi < lo:
                msg = f"{name}: upper bound {hi} is below lower bound {lo}"
                raise ValueError(msg)
        if list(self.towt_knots_c) != sorted(self.towt_knots_c):
            msg = "towt_knots_c must be increasing"
            raise ValueError(msg)
        return self


@dataclass(frozen=True, slots=True)
class FitStats:
    """Goodness of fit of a baseline on its reference period (ASHRAE Guideline 14).

    ``cvrmse = sqrt(Σ(y - ŷ)² / (n - p)) / ȳ`` and ``nmbe = Σ(y - ŷ) / ((n - p) ȳ)``.

    Attributes:
        n: number of observations.
        p: number of fitted parameters.
        mean: mean observed value ȳ.
        cvrmse: coefficient of variation of the RMSE.
        nmbe: normalised mean bias error.
        r2: coefficient of determination.
        autocorr: lag-1 autocorrelation of the residuals.
        resolution: time step of the observations.
    """

    n: int
    p: int
    mean: float
    cvrmse: float
    nmbe: float
    r2: float
    autocorr: float
    resolution: Resolution

    @property
    def rmse(self) -> float:
        """Root mean square error with n - p degrees of freedom, in the data's unit."""
        return self.cvrmse * self.mean

    @property
    def n_effective(self) -> float:
        """Number of independent observations, ``n (1 - rho) / (1 + rho)``."""
        rho = min(max(self.autocorr, 0.0), 0.99)
        return self.n * (1 - rho) / (1 + rho)

    def failures(self) -> list[str]:
        """Why the fit fails the Guideline 14 limits (empty when it passes)."""
        max_cv, max_nmbe = G14_LIMITS[self.resolution]
        out: list[str] = []
        if not self.cvrmse <= max_cv:
            out.append(f"CV(RMSE) {self.cvrmse:.1%} above the {max_cv:.0%} limit for {self.resolution.value} data")
        if not abs(self.nmbe) <= max_nmbe:
            out.append(f"NMBE {self.nmbe:+.1%} beyond ±{max_nmbe:.0%} for {self.resolution.value} data")
        return out

    @property
    def passes_g14(self) -> bool:
        """True when CV(RMSE) and NMBE are within the Guideline 14 limits."""
        return not self.failures()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "n": self.n,
            "p": self.p,
            "mean": self.mean,
            "cvrmse": self.cvrmse,
            "nmbe": self.nmbe,
            "r2": self.r2,
            "autocorr": self.autocorr,
            "resolution": self.resolution.value,
        }


def fit_stats(observed: FloatArray, predicted: FloatArray, p: int, resolution: Resolution) -> FitStats:
    """CV(RMSE), NMBE, R² and residual autocorrelation of a fit.

    Args:
        observed: observations, in time order.
        predicted: the model's predictions for them.
        p: number of fitted parameters.
        resolution: time step of the observations.

    Returns:
        The statistics.

    >>> s = fit_stats(np.array([10.0, 12.0, 11.0, 13.0]), np.array([10.5, 11.5, 11.5, 12.5]), 2, Resolution.DAILY)
    >>> round(s.cvrmse, 3), round(s.nmbe, 3)
    (0.061, 0.0)
    """
    n = observed.size
    dof = max(n - p, 1)
    resid = observed - predicted
    mean = float(observed.mean())
    sse = float(resid @ resid)
    sst = float(((observed - mean) ** 2).sum())
    autocorr = 0.0
    if n > 2 and resid[:-1].std() > 0 and resid[1:].std() > 0:  # one constant side: no correlation (NaN before)
        autocorr = float(np.corrcoef(resid[:-1], resid[1:])[0, 1])
    return FitStats(
        n=n,
        p=p,
        mean=mean,
        cvrmse=math.sqrt(sse / dof) / mean if mean else math.inf,
        nmbe=float(resid.sum()) / (dof * mean) if mean else math.inf,
        r2=1 - sse / sst if sst > 0 else 0.0,
        autocorr=autocorr,
        resolution=resolution,
    )


@dataclass(frozen=True, slots=True, eq=False)
class DailyObservations:
    """Daily energy and outdoor temperature of a meter.

    Attributes:
        days: consecutive or not, in increasing order.
        energy_kwh: energy of each day, NaN when unknown (the value to predict).
        temperature_c: shape ``(days, k)``: the k sub-daily temperatures of
            each day (k = 24 for hourly), NaN where missing; k = 1 for a daily mean.
        day_types: how the building is used each day.
    """

    days: tuple[date, ...]
    energy_kwh: FloatArray
    temperature_c: FloatArray
    day_types: tuple[DayType, ...]

    @classmethod
    def build(
        cls,
        days: Sequence[date],
        energy_kwh: Sequence[float] | FloatArray,
        temperature_c: Sequence[float] | FloatArray,
        day_types: Sequence[DayType] | None = None,
    ) -> DailyObservations:
        """Check shapes and build; ``temperature_c`` may be 1-D (daily means) or 2-D.

        Day types default to all occupied.
        """
        energy = np.asarray(energy_kwh, dtype=np.float64)
        temp = np.asarray(temperature_c, dtype=np.float64)
        if temp.ndim == 1:
            temp = temp[:, None]
        types = tuple(day_types) if day_types is not None else (DayType.OCCUPIED,) * len(days)
        if not (len(days) == energy.size == temp.shape[0] == len(types)):
            msg = f"{len(days)} days, {energy.size} energies, {temp.shape[0]} temperature rows, {len(types)} day types"
            raise ValueError(msg)
        return cls(tuple(days), energy, temp, types)

    def select(self, start: date, end: date) -> DailyObservations:
        """The days from ``start`` included to ``end`` excluded."""
        idx = [i for i, d in enumerate(self.days) if start <= d < end]
        return DailyObservations(
            tuple(self.days[i] for i in idx),
            self.energy_kwh[idx],
            self.temperature_c[idx],
            tuple(self.day_types[i] for i in idx),
        )

    @property
    def daily_mean_c(self) -> FloatArray:
        """Mean temperature of each day (NaN when no sample)."""
        out = np.full(len(self.days), np.nan)
        ok = ~np.all(np.isnan(self.temperature_c), axis=1)
        out[ok] = np.nanmean(self.temperature_c[ok], axis=1)
        return out

    def usable(self) -> BoolArray:
        """Days with both an energy and a temperature."""
        return ~np.isnan(self.energy_kwh) & ~np.isnan(self.daily_mean_c)


def hourly_temperature_matrix(
    timestamps: Sequence[datetime], values_c: Sequence[float], days: Sequence[date], tz: tzinfo = UTC
) -> FloatArray:
    """Hourly temperatures of each local day, as rows of 24 (NaN where missing).

    Samples within one local hour are averaged; the 23- and 25-hour days of
    daylight saving time keep 24 columns (the repeated hour is averaged).

    >>> from datetime import datetime
    >>> ts = [datetime(2025, 1, 1, h, tzinfo=UTC) for h in range(24)]
    >>> m = hourly_temperature_matrix(ts, [float(h) for h in range(24)], [date(2025, 1, 1)])
    >>> m.shape, float(m[0, 5])
    ((1, 24), 5.0)
    """
    index = {d: i for i, d in enumerate(days)}
    sums = np.zeros((len(days), 24))
    counts = np.zeros((len(days), 24))
    for moment, value in zip(timestamps, values_c, strict=True):
        if math.isnan(value):
            continue
        local = moment.astimezone(tz)
        row = index.get(local.date())
        if row is not None:
            sums[row, local.hour] += value
            counts[row, local.hour] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        out: FloatArray = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return out


class Baseline(Protocol):
    """What :mod:`mv.savings` needs of a fitted baseline."""

    @property
    def stats(self) -> FitStats:
        """Fit statistics on the reference period."""
        ...

    def describe(self) -> str:
        """One line naming the model and its main parameters."""
        ...

    def g14_failures(self) -> list[str]:
        """Why the model fails Guideline 14 at every resolution it is checked at (empty when it passes)."""
        ...


def _degree_days(temp: FloatArray, balance_c: float, heating: bool) -> FloatArray:
    """Mean over the sub-daily samples of max(0, Tb - T) (heating) or max(0, T - Tb)."""
    diff = balance_c - temp if heating else temp - balance_c
    result: FloatArray = np.nanmean(np.maximum(diff, 0.0), axis=1)
    return result


def _degree_days_grid(temp: FloatArray, balances_c: FloatArray, heating: bool) -> FloatArray:
    """:func:`_degree_days` of every balance point at once, one row each (the same values, bit for bit)."""
    diff = balances_c[:, None, None] - temp[None] if heating else temp[None] - balances_c[:, None, None]
    result: FloatArray = np.nanmean(np.maximum(diff, 0.0), axis=2)
    return result


@dataclass(frozen=True, slots=True)
class DailyParams:
    """Coefficients of a fitted daily change-point model.

    ``E = intercept[type] + heating_slope[type] · HDD(Tb_h) + cooling_slope · CDD(Tb_c)``
    in kWh per day, with degree days in K·day. A slope of 0 with no balance
    point means the term is absent.
    """

    intercept: dict[DayType, float]
    heating_slope: dict[DayType, float]
    cooling_slope: float
    heating_balance_c: float | None
    cooling_balance_c: float | None
    type_map: dict[DayType, DayType] = field(default_factory=dict)
    """Day types merged into another for lack of reference days."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "intercept": {k.value: v for k, v in self.intercept.items()},
            "heating_slope": {k.value: v for k, v in self.heating_slope.items()},
            "cooling_slope": self.cooling_slope,
            "heating_balance_c": self.heating_balance_c,
            "cooling_balance_c": self.cooling_balance_c,
            "type_map": {k.value: v.value for k, v in self.type_map.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DailyParams:
        """Inverse of :meth:`to_dict`."""
        return cls(
            intercept={DayType(k): float(v) for k, v in data["intercept"].items()},
            heating_slope={DayType(k): float(v) for k, v in data["heating_slope"].items()},
            cooling_slope=float(data["cooling_slope"]),
            heating_balance_c=data["heating_balance_c"],
            cooling_balance_c=data["cooling_balance_c"],
            type_map={DayType(k): DayType(v) for k, v in data["type_map"].items()},
        )


def _check_span(days: Sequence[date], usable: int, expected: int, config: BaselineConfig, what: str) -> None:
    reasons: list[str] = []
    if not days:
        raise InsufficientData([f"no {what} in the reference period"])
    span = days[-1] - days[0] + timedelta(days=1)
    if span < config.min_span:
        reasons.append(f"reference period spans {span.days} days, fewer than the {config.min_span.days} required")
    coverage = usable / expected if expected else 0.0
    if coverage < config.min_coverage:
        reasons.append(
            f"only {coverage:.0%} of the reference {what} have energy and temperature (need {config.min_coverage:.0%})"
        )
    if reasons:
        raise InsufficientData(reasons)


@dataclass(frozen=True, slots=True)
class _Candidate:
    bic: float
    coef: FloatArray
    hbp: float | None
    cbp: float | None
    split: str


def _onehot(types: Sequence[DayType], present: Sequence[DayType]) -> FloatArray:
    """Per day (row), 1.0 in the column of its day type among ``present`` (in that order), 0.0 elsewhere.

    >>> _onehot([DayType.OCCUPIED, DayType.UNOCCUPIED, DayType.OCCUPIED], [DayType.OCCUPIED, DayType.UNOCCUPIED]).tolist()
    [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]
    """
    column = {t: j for j, t in enumerate(present)}
    codes = np.fromiter((column.get(t, -1) for t in types), dtype=np.int64, count=len(types))
    result: FloatArray = (codes[:, None] == np.arange(len(present))[None, :]).astype(np.float64)
    return result


@dataclass(frozen=True, slots=True, eq=False)
class _SearchPlan:
    """The columns of a structure search's bank and its candidates (see :func:`_search_plan`).

    Attributes:
        bank: per column, what it holds: ``("one", 0.0, 0)`` ones, ``("type", 0.0, j)`` day type j's
            indicator, ``("cdd", bp, 0)``/``("hdd", bp, 0)`` degree days at balance point ``bp``,
            ``("hdd_type", bp, j)`` those of day type j's days.
        candidates: per candidate, in search order: its columns, how many lead them before the slopes, its
            heating and cooling balance points and its day-type split.
        screened: the candidates' (columns, leading columns), as :meth:`DailyChangePointBaseline._screen` takes them.
    """

    bank: list[tuple[str, float, int]]
    candidates: list[tuple[list[int], int, float | None, float | None, str]]
    screened: list[tuple[list[int], int]]


@functools.lru_cache(maxsize=64)
def _search_plan(n_types: int, heating: tuple[float, ...], cooling: tuple[float, ...]) -> _SearchPlan:
    """The bank and candidates of a search, built once for all the searches they are the same for.

    They depend on how many day types the days have and at which balance points (in grid order) their heating
    and cooling degree days are not all zero, nothing else: weekly refits build them once (issue 11, speed).
    Kept for the searches to read, never changed.
    """
    bank: list[tuple[str, float, int]] = [("one", 0.0, 0)]

    def add(sources: list[tuple[str, float, int]]) -> list[int]:
        first = len(bank)
        bank.extend(sources)
        return list(range(first, len(bank)))

    splits = {"none": [0]} if n_types == 1 else {"none": [0], "intercept": add([("type", 0.0, j) for j in range(n_types)])}
    cdd_cols = {cbp: add([("cdd", cbp, 0)])[0] for cbp in cooling}
    cands: list[tuple[list[int], int, float | None, float | None, str]] = []
    heat_cols: dict[tuple[float, str], list[int]] = {}
    for split, base in splits.items():
        k = len(base)
        cands.append((base, k, None, None, split))
        cands.extend(([*base, col], k, None, cbp, split) for cbp, col in cdd_cols.items())
        for hbp in heating:
            for name in ("none",) if split == "none" else ("intercept", "intercept+heating"):
                key = (hbp, name if name == "intercept+heating" else "single")
                if key not in heat_cols:
                    heat_cols[key] = add([("hdd_type", hbp, j) for j in range(n_types)] if name == "intercept+heating"
                                         else [("hdd", hbp, 0)])
                cols = [*base, *heat_cols[key]]
                cands.append((cols, k, hbp, None, name))
                cands.extend(([*cols, col], k, hbp, cbp, name) for cbp, col in cdd_cols.items() if cbp >= hbp)
    return _SearchPlan(bank, cands, [(c[0], c[1]) for c in cands])


class DailyChangePointBaseline:
    """Daily change-point regression on degree days with a day-type split.

    Candidates are the intercept-only, heating, cooling and heating+cooling
    models over a grid of balance points, each with no split, a split of the
    intercept by day type, or a split of intercept and heating slope. A
    heating or cooling slope must be positive and significant
    (``config.min_t_stat``); among the rest the lowest BIC wins.

    Args:
        config: sufficiency rules and search ranges.
    """

    name = "daily-changepoint"

    def __init__(self, config: BaselineConfig | None = None) -> None:
        self.config = config or BaselineConfig()
        self._params: DailyParams | None = None
        self._stats: FitStats | None = None
        self._monthly_stats: FitStats | None = None
        self._monthly_inputs: tuple[Sequence[date], BoolArray, FloatArray, FloatArray, int] | None = None
        self._split = "none"  # the fitted candidate's day-type split, as :meth:`_search` names it
        self._present: tuple[DayType, ...] = ()  # the day types it was fitted on, after merging
        self.searched = False
        """Whether the last :meth:`fit` searched the structure (False: it refitted the one of ``like``)."""

    @property
    def params(self) -> DailyParams:
        """Fitted coefficients; NotFitted before :meth:`fit`."""
        if self._params is None:
            msg = "daily baseline used before fit()"
            raise NotFitted(msg)
        return self._params

    @property
    def stats(self) -> FitStats:
        """Fit statistics on the reference period; NotFitted before :meth:`fit`."""
        if self._stats is None:
            msg = "daily baseline used before fit()"
            raise NotFitted(msg)
        return self._stats

    @property
    def monthly_stats(self) -> FitStats | None:
        """Fit statistics of the monthly sums of the reference period (None with fewer than 6 full months)."""
        if self._monthly_inputs is not None:
            days, ok, y, predicted, p = self._monthly_inputs
            self._monthly_stats = _monthly_fit([d for d, k in zip(days, ok.tolist(), strict=True) if k], y, predicted, p)
            self._monthly_inputs = None
        return self._monthly_stats

    def g14_failures(self) -> list[str]:
        """Guideline 14 check: daily limits, or else the monthly limits on monthly sums.

        Savings are reported by month and by year, so a model that is noisy day
        to day but right month by month passes on the monthly limits, the ones
        Guideline 14 gives for the resolution savings are reported at. The
        savings uncertainty still uses the daily CV(RMSE), so noisy days widen it.
        """
        daily = self.stats.failures()
        if not daily:
            return []
        monthly_stats = self.monthly_stats
        if monthly_stats is None:
            return [*daily, "fewer than 6 complete months for the monthly check"]
        monthly = monthly_stats.failures()
        return [*daily, *monthly] if monthly else []

    def describe(self) -> str:
        """Model name, terms, split and balance points."""
        p = self.params
        terms = [t for t, bp in (("hdd", p.heating_balance_c), ("cdd", p.cooling_balance_c)) if bp is not None]
        split = (
            "none" if len(p.intercept) == 1 else ("intercept+heating" if len(set(p.heating_slope.values())) > 1 else "intercept")
        )
        parts = [f"terms={'+'.join(terms) or 'intercept'}", f"split={split}"]
        if p.heating_balance_c is not None:
            parts.append(f"heating_balance={p.heating_balance_c:g}C")
        if p.cooling_balance_c is not None:
            parts.append(f"cooling_balance={p.cooling_balance_c:g}C")
        return f"{self.name}({', '.join(parts)})"

    def fit(self, obs: DailyObservations, like: DailyChangePointBaseline | None = None) -> Self:
        """Fit on the reference period.

        With ``like`` (a fitted model), only its structure is refitted: the
        same terms, balance points and day-type split, new coefficients. That
        is the structure search's own candidate when it is still valid on
        these days (a positive, significant slope; the same day types, merged
        the same way); when it is not, the full search runs as without ``like``.

        Args:
            obs: the reference days.
            like: a fitted model whose structure to keep, if it still holds.

        Returns:
            self, fitted.

        Raises:
            InsufficientData: when the period is too short or too sparse.
            ModelError: when no candidate can be fitted.
        """
        ok = obs.usable()
        expected = (obs.days[-1] - obs.days[0]).days + 1 if obs.days else 0
        _check_span(list(obs.days), int(ok.sum()), expected, self.config, "days")
        y = obs.energy_kwh[ok]
        temp = obs.temperature_c[ok]
        types, type_map = self._merge_types([t for t, k in zip(obs.day_types, ok, strict=True) if k])
        best = self._refit_structure(y, temp, types, type_map, like) if like is not None else None
        self.searched = best is None
        if best is None:
            best = self._search(y, temp, types)
        if best is None:
            msg = "no daily change-point candidate could be fitted"
            raise ModelError(msg)
        self._split = best.split
        self._present = tuple(t for t in DayType if t in types)
        self._params = self._to_params(best, types, type_map)
        predicted = self._predict_rows(obs.temperature_c[ok], [obs.day_types[i] for i in np.flatnonzero(ok)])
        self._stats = fit_stats(y, predicted, best.coef.size, Resolution.DAILY)
        # Computed when asked (the M&V reports): the expected model refits weekly and never reads them.
        self._monthly_stats = None
        self._monthly_inputs = (obs.days, ok, y, predicted, best.coef.size)
        return self

    def predict(self, obs: DailyObservations) -> FloatArray:
        """Predicted energy of each day (NaN where the temperature is missing)."""
        return self._predict_rows(obs.temperature_c, list(obs.day_types))

    def _predict_rows(self, temp: FloatArray, day_types: Sequence[DayType]) -> FloatArray:
        p = self.params
        out = np.zeros(temp.shape[0])
        resolved = {t: self._resolve(t) for t in set(day_types)}
        mapped = [resolved[t] for t in day_types]
        out += np.array([p.intercept[t] for t in mapped])
        missing = np.all(np.isnan(temp), axis=1)
        safe = np.where(np.isnan(temp), np.nanmean(np.where(missing[:, None], 0.0, temp), axis=1, keepdims=True), temp)
        if p.heating_balance_c is not None:
            hdd = _degree_days(safe, p.heating_balance_c, heating=True)
            out += np.array([p.heating_slope[t] for t in mapped]) * hdd
        if p.cooling_balance_c is not None:
            out += p.cooling_slope * _degree_days(safe, p.cooling_balance_c, heating=False)
        # A day-type intercept can be negative (a setback lowers the balance point of
        # unoccupied days); energy cannot, so the line stops at zero.
        out = np.maximum(out, 0.0)
        out[missing] = np.nan
        return out

    def _resolve(self, day_type: DayType) -> DayType:
        p = self.params
        while day_type not in p.intercept:
            day_type = p.type_map.get(day_type, _FALLBACK.get(day_type, DayType.OCCUPIED))
            if day_type == DayType.OCCUPIED and day_type not in p.intercept:
                return next(iter(p.intercept))
        return day_type

    def _merge_types(self, types: list[DayType]) -> tuple[list[DayType], dict[DayType, DayType]]:
        type_map: dict[DayType, DayType] = {}
        for day_type in (DayType.SCHOOL_HOLIDAY, DayType.UNOCCUPIED):
            count = sum(1 for t in types if t == day_type)
            if 0 < count < self.config.min_days_per_type:
                target = _FALLBACK[day_type]
                type_map[day_type] = target
                types = [target if t == day_type else t for t in types]
        return types, type_map

    def _grid(self, bounds: tuple[float, float]) -> FloatArray:
        lo, hi = bounds
        step = self.config.balance_step_c
        return np.round(np.arange(lo, hi + step / 2, step), 6)

    def _search(self, y: FloatArray, temp: FloatArray, types: list[DayType]) -> _Candidate | None:
        """The lowest-BIC valid candidate, the first one in search order on a tie.

        Every candidate is a choice of columns of one bank (intercepts, degree
        days per balance point). All are screened at once through their normal
        equations (one batched numpy solve per number of columns); the ones the
        screen cannot rule out (BIC within a tolerance of the best, a t statistic
        or conditioning too close to call) are then fitted one by one, in search
        order, by :meth:`_ols`, so the choice and its coefficients are exactly
        those of fitting every candidate by :meth:`_ols`.
        """
        present = [t for t in DayType if t in types]
        onehot = _onehot(types, present)
        hgrid = self._grid(self.config.heating_balance_c)
        cgrid = self._grid(self.config.cooling_balance_c)
        # A balance point whose degree days are all zero on these days makes no candidate.
        hdds = {float(bp): hdd for bp, hdd in zip(hgrid, _degree_days_grid(temp, hgrid, heating=True), strict=True) if hdd.any()}
        cdds = {float(bp): cdd for bp, cdd in zip(cgrid, _degree_days_grid(temp, cgrid, heating=False), strict=True) if cdd.any()}
        plan = _search_plan(len(present), tuple(hdds), tuple(cdds))
        columns: list[FloatArray] = []
        for kind, bp, j in plan.bank:
            if kind == "one":
                columns.append(np.ones(y.size))
            elif kind == "type":
                columns.append(onehot[:, j])
            elif kind == "cdd":
                columns.append(cdds[bp])
            elif kind == "hdd":
                columns.append(hdds[bp])
            else:  # a heating slope per day type
                columns.append(onehot[:, j] * hdds[bp])
        matrix = np.column_stack(columns)
        cands = plan.candidates
        keep = self._screen(y, matrix, plan.screened)
        best: _Candidate | None = None
        for i in keep:
            cols, k, hbp, cbp, split = cands[i]
            x = np.ascontiguousarray(matrix[:, cols])
            cand = self._ols(y, x, list(range(k, len(cols))))
            if cand is not None and (best is None or cand[1] < best.bic):
                best = _Candidate(cand[1], cand[0], hbp, cbp, split)
        return best

    def _refit_structure(
        self, y: FloatArray, temp: FloatArray, types: list[DayType], type_map: dict[DayType, DayType],
        like: DailyChangePointBaseline,
    ) -> _Candidate | None:
        """``like``'s candidate (terms, balance points, split) fitted on these days; None when it no longer holds."""
        if like._params is None or like._present != tuple(t for t in DayType if t in types) or like.params.type_map != type_map:
            return None  # a day type appeared, vanished or is merged otherwise: the candidates differ
        p = like.params
        present = list(like._present)
        onehot = _onehot(types, present)
        split = like._split
        columns: list[FloatArray] = [np.ones((y.size, 1)) if split == "none" else onehot]
        if p.heating_balance_c is not None:
            hdd = _degree_days_grid(temp, np.array([p.heating_balance_c]), heating=True)[0]
            if not hdd.any():
                return None
            columns.append(onehot * hdd[:, None] if split == "intercept+heating" else hdd[:, None])
        if p.cooling_balance_c is not None:
            cdd = _degree_days_grid(temp, np.array([p.cooling_balance_c]), heating=False)[0]
            if not cdd.any():
                return None
            columns.append(cdd[:, None])
        x = np.ascontiguousarray(np.column_stack(columns))
        k = columns[0].shape[1]
        fitted = self._ols(y, x, list(range(k, x.shape[1])))
        if fitted is None:
            return None
        return _Candidate(fitted[1], fitted[0], p.heating_balance_c, p.cooling_balance_c, split)

    def _screen(self, y: FloatArray, matrix: FloatArray, cands: list[tuple[list[int], int]]) -> list[int]:
        """Candidates (their indices, in order) that may be the best valid one; the others surely are not.

        Args:
            y: the observations.
            matrix: the bank of columns.
            cands: per candidate, its columns in ``matrix`` and how many of them are not slopes.
        """
        n = y.size
        gram = matrix.T @ matrix
        xty = matrix.T @ y
        bic = np.full(len(cands), np.inf)
        status = np.zeros(len(cands), dtype=np.int8)  # 0 surely invalid, 1 surely valid, 2 to check
        margin = 1e-4 * (1.0 + self.config.min_t_stat)
        by_width: dict[int, list[int]] = {}
        for i, (cols, _) in enumerate(cands):
            by_width.setdefault(len(cols), []).append(i)
        for p, members in by_width.items():
            if n <= p + 1:
                continue
            idx = np.array([cands[i][0] for i in members])
            g = gram[idx[:, :, None], idx[:, None, :]]
            eig = np.linalg.eigvalsh(g)
            sound = eig[:, 0] > 1e-8 * eig[:, -1]
            status[[m for m, s in zip(members, sound, strict=True) if not s]] = 2
            if not sound.any():
                continue
            rows = np.flatnonzero(sound)
            sel = [members[r] for r in rows]
            g = g[rows]
            coef = np.linalg.solve(g, xty[idx[rows]][:, :, None])[:, :, 0]
            x = matrix[:, idx[rows]]  # (n, c, p)
            resid = y[:, None] - np.einsum("ncp,cp->nc", x, coef)
            sse = np.einsum("nc,nc->c", resid, resid)
            bic[sel] = n * np.log(np.maximum(sse, 1e-12) / n) + p * math.log(n)
            tiny = sse <= 1e-10 * float(y @ y)
            diag = np.diagonal(np.linalg.inv(g), axis1=1, axis2=2)
            se = np.sqrt(np.maximum(sse / (n - p), 0.0)[:, None] * np.maximum(diag, 0.0))
            with np.errstate(divide="ignore", invalid="ignore"):
                t = coef / se
            slope = np.arange(p)[None, :] >= np.array([cands[m][1] for m in sel])[:, None]
            unsure = tiny | np.any(slope & ~np.isfinite(t), axis=1)
            low = np.any(slope & (t < self.config.min_t_stat - margin), axis=1)
            high = np.all(~slope | (t > self.config.min_t_stat + margin), axis=1)
            status[sel] = np.where(unsure, 2, np.where(low, 0, np.where(high, 1, 2)))
        valid = bic[status == 1]
        limit = float(valid.min()) if valid.size else math.inf
        limit += 1e-6 * (abs(limit) + n) if valid.size else 0.0
        return [i for i in range(len(cands)) if status[i] == 2 or (status[i] == 1 and bic[i] <= limit)]

    def _ols(self, y: FloatArray, x: FloatArray, slope_idx: list[int]) -> tuple[FloatArray, float] | None:
        n, p = x.shape
        if n <= p + 1:
            return None
        coef, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
        if rank < p:
            return None
        resid = y - x @ coef
        sse = float(resid @ resid)
        if slope_idx:
            sigma2 = sse / (n - p)
            try:
                cov = sigma2 * np.linalg.inv(x.T @ x)
            except np.linalg.LinAlgError:
                return None
            for i in slope_idx:
                se = math.sqrt(max(float(cov[i, i]), 0.0))
                if coef[i] <= 0 or (se > 0 and coef[i] / se < self.config.min_t_stat):
                    return None
        bic = n * math.log(max(sse, 1e-12) / n) + p * math.log(n)
        return np.asarray(coef, dtype=np.float64), bic

    @staticmethod
    def _to_params(best: _Candidate, types: list[DayType], type_map: dict[DayType, DayType]) -> DailyParams:
        present = [t for t in DayType if t in types]
        coef = best.coef
        split = best.split
        if split == "none":
            intercept = dict.fromkeys(present, float(coef[0]))
            rest = coef[1:]
        else:
            intercept = {t: float(c) for t, c in zip(present, coef[: len(present)], strict=True)}
            rest = coef[len(present) :]
        heating = dict.fromkeys(present, 0.0)
        if best.hbp is not None:
            if split == "intercept+heating":
                heating = {t: float(c) for t, c in zip(present, rest[: len(present)], strict=True)}
                rest = rest[len(present) :]
            else:
                heating = dict.fromkeys(present, float(rest[0]))
                rest = rest[1:]
        cooling = float(rest[0]) if best.cbp is not None else 0.0
        return DailyParams(intercept, heating, cooling, best.hbp, best.cbp, type_map)

    def to_dict(self) -> dict[str, Any]:
        """Persisted form of the fitted model, with ``format_version``."""
        return {
            "format_version": FORMAT_VERSION,
            "model": self.name,
            "config": {**self.config.model_dump(mode="json"), "min_span": f"{self.config.min_span.total_seconds():.0f}s"},
            "params": self.params.to_dict(),
            "stats": self.stats.to_dict(),
            "monthly_stats": None if self.monthly_stats is None else self.monthly_stats.to_dict(),
            # What a later fit ``like`` this one refits (the structure it keeps), and how it was found.
            "split": self._split,
            "present": [t.value for t in self._present],
            "searched": self.searched,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DailyChangePointBaseline:
        """Load a model saved by :meth:`to_dict`.

        Raises:
            ModelError: on an unknown format version or another model.
        """
        if data.get("format_version") != FORMAT_VERSION or data.get("model") != cls.name:
            msg = f"cannot load {data.get('model')!r} format {data.get('format_version')!r} as {cls.name} v{FORMAT_VERSION}"
            raise ModelError(msg)
        model = cls(BaselineConfig.model_validate(data["config"]))
        model._params = DailyParams.from_dict(data["params"])
        model._stats = _stats_from_dict(data["stats"])
        # Absent from files written before the detection state held expected models (issue 12): defaults.
        monthly = data.get("monthly_stats")
        model._monthly_stats = None if monthly is None else _stats_from_dict(monthly)
        model._split = str(data.get("split", "none"))
        model._present = tuple(DayType(t) for t in data.get("present", []))
        model.searched = bool(data.get("searched", False))
        return model


def _stats_from_dict(s: dict[str, Any]) -> FitStats:
    return FitStats(s["n"], s["p"], s["mean"], s["cvrmse"], s["nmbe"], s["r2"], s["autocorr"], Resolution(s["resolution"]))


def _monthly_fit(days: Sequence[date], energy: FloatArray, predicted: FloatArray, p: int) -> FitStats | None:
    """Fit statistics of monthly sums, over months with at least 90 % of their days usable.

    Args:
        days: the usable days.
        energy: their energy.
        predicted: their predicted energy.
        p: parameters of the model.
    """
    sums: dict[tuple[int, int], list[float]] = {}
    for day, y, yhat in zip(days, energy.tolist(), predicted.tolist(), strict=True):
        acc = sums.setdefault((day.year, day.month), [0.0, 0.0, 0.0])
        acc[0] += y
        acc[1] += yhat
        acc[2] += 1
    full = []
    for (year, month), (y, yhat, count) in sorted(sums.items()):
        length = (date(year + (month == 12), month % 12 + 1, 1) - date(year, month, 1)).days
        if count >= 0.9 * length:
            full.append((y, yhat))
    if len(full) < 6:
        return None
    arr = np.array(full)
    return fit_stats(arr[:, 0], arr[:, 1], min(p, len(full) - 2), Resolution.MONTHLY)


@dataclass(frozen=True, slots=True, eq=False)
class HourlyObservations:
    """Hourly energy and outdoor temperature of a meter.

    Attributes:
        hours: start of each hour, UTC, increasing.
        energy_kwh: energy of each hour (NaN when unknown).
        temperature_c: mean outdoor temperature of each hour (NaN when unknown).
        occupied: whether the building is in use each hour, or None to infer it.
        tz: timezone of the building, for the hour of the week.
    """

    hours: tuple[datetime, ...]
    energy_kwh: FloatArray
    temperature_c: FloatArray
    occupied: BoolArray | None = None
    tz: tzinfo = UTC

    def select(self, start: datetime, end: datetime) -> HourlyObservations:
        """The hours from ``start`` included to ``end`` excluded."""
        idx = [i for i, h in enumerate(self.hours) if start <= h < end]
        occ = None if self.occupied is None else self.occupied[idx]
        return HourlyObservations(tuple(self.hours[i] for i in idx), self.energy_kwh[idx], self.temperature_c[idx], occ, self.tz)

    def hour_of_week(self) -> npt.NDArray[np.int64]:
        """0 for Monday 00:00 local, up to 167."""
        out = [(h.astimezone(self.tz).weekday() * 24 + h.astimezone(self.tz).hour) for h in self.hours]
        return np.array(out, dtype=np.int64)


def _piecewise(temp: FloatArray, knots: Sequence[float]) -> FloatArray:
    """Piecewise-linear temperature basis: one column per segment between knots."""
    edges = [-np.inf, *knots, np.inf]
    cols = []
    for lo, hi in itertools.pairwise(edges):
        if np.isinf(lo):
            cols.append(np.minimum(temp, hi))
        elif np.isinf(hi):
            cols.append(np.maximum(temp - lo, 0.0))
        else:
            cols.append(np.clip(temp - lo, 0.0, hi - lo))
    return np.column_stack(cols)


class TowtBaseline:
    """Hourly time-of-week-and-temperature model (LBNL TOWT).

    ``E_h = a[hour of week] + Σ_k β_k[occupied] · T_k(h)`` where ``T_k`` are
    the segments of the outdoor temperature between ``config.towt_knots_c``.
    When the observations carry no occupancy, an hour of the week is taken as
    occupied when a temperature-only fit under-predicts it in more than 65 % of
    the reference weeks, as in the LBNL method.

    Args:
        config: sufficiency rules and temperature knots.
    """

    name = "towt"

    def __init__(self, config: BaselineConfig | None = None) -> None:
        self.config = config or BaselineConfig()
        self._coef: FloatArray | None = None
        self._occupied_how: BoolArray | None = None
        self._stats: FitStats | None = None

    @property
    def stats(self) -> FitStats:
        """Fit statistics on the reference hours; NotFitted before :meth:`fit`."""
        if self._stats is None:
            msg = "hourly baseline used before fit()"
            raise NotFitted(msg)
        return self._stats

    def g14_failures(self) -> list[str]:
        """Guideline 14 check at the hourly limits."""
        return self.stats.failures()

    def describe(self) -> str:
        """Model name and knots."""
        knots = ",".join(f"{k:g}" for k in self.config.towt_knots_c)
        return f"{self.name}(knots={knots}C)"

    def fit(self, obs: HourlyObservations) -> Self:
        """Fit on the reference hours.

        Raises:
            InsufficientData: when the period is too short or too sparse.
        """
        ok = ~np.isnan(obs.energy_kwh) & ~np.isnan(obs.temperature_c)
        days = sorted({h.date() for h in obs.hours})
        expected = int((obs.hours[-1] - obs.hours[0]) / timedelta(hours=1)) + 1 if obs.hours else 0
        _check_span(days, int(ok.sum()), expected, self.config, "hours")
        how = obs.hour_of_week()
        occupied = obs.occupied if obs.occupied is not None else self._infer_occupancy(obs, ok, how)
        if obs.occupied is None:
            self._occupied_how = np.array([occupied[how == k].mean() > 0.5 if (how == k).any() else True for k in range(168)])
        x = self._design(obs.temperature_c[ok], how[ok], occupied[ok])
        y = obs.energy_kwh[ok]
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        self._coef = np.asarray(coef, dtype=np.float64)
        rank = int(np.linalg.matrix_rank(x))
        self._stats = fit_stats(y, x @ coef, rank, Resolution.HOURLY)
        return self

    def predict(self, obs: HourlyObservations) -> FloatArray:
        """Predicted energy of each hour (NaN where the temperature is missing)."""
        if self._coef is None:
            msg = "hourly baseline used before fit()"
            raise NotFitted(msg)
        how = obs.hour_of_week()
        if obs.occupied is not None:
            occupied = obs.occupied
        elif self._occupied_how is not None:
            occupied = self._occupied_how[how]
        else:
            occupied = np.ones(how.size, dtype=bool)
        temp = np.nan_to_num(obs.temperature_c, nan=0.0)
        out: FloatArray = self._design(temp, how, occupied) @ self._coef
        out[np.isnan(obs.temperature_c)] = np.nan
        return out

    def _design(self, temp: FloatArray, how: npt.NDArray[np.int64], occupied: BoolArray) -> FloatArray:
        tow = np.zeros((temp.size, 168))
        tow[np.arange(temp.size), how] = 1.0
        basis = _piecewise(temp, self.config.towt_knots_c)
        occ = occupied.astype(np.float64)[:, None]
        return np.hstack([tow, basis * occ, basis * (1 - occ)])

    def _infer_occupancy(self, obs: HourlyObservations, ok: BoolArray, how: npt.NDArray[np.int64]) -> BoolArray:
        temp = obs.temperature_c[ok]
        x = np.hstack([np.ones((temp.size, 1)), _piecewise(temp, self.config.towt_knots_c)])
        coef, *_ = np.linalg.lstsq(x, obs.energy_kwh[ok], rcond=None)
        positive = (obs.energy_kwh[ok] - x @ coef) > 0
        share = np.zeros(168)
        for k in range(168):
            sel = how[ok] == k
            share[k] = positive[sel].mean() if sel.any() else 0.0
        by_how = share > 0.65
        result: BoolArray = by_how[how]
        return result


def daily_energy(
    timestamps: Sequence[datetime], values_kwh: Sequence[float], tz: tzinfo = UTC, min_coverage: float = 0.9
) -> tuple[list[date], FloatArray]:
    """Sum interval consumption into local days; a day with too few intervals is NaN.

    Each value is the consumption of the interval that starts at its timestamp.
    The interval length is the median spacing of the timestamps; a day is
    complete when it holds at least ``min_coverage`` of the intervals it should.

    Args:
        timestamps: interval starts (aware).
        values_kwh: consumption of each interval.
        tz: timezone of the local day.
        min_coverage: see above.

    Returns:
        Every day from the first to the last, and the energy of each (NaN when incomplete).

    >>> ts = [datetime(2025, 1, 1, h, tzinfo=UTC) for h in range(24)] + [datetime(2025, 1, 2, 0, tzinfo=UTC)]
    >>> days, kwh = daily_energy(ts, [1.0] * 25)
    >>> [d.isoformat() for d in days], kwh.tolist()
    (['2025-01-01', '2025-01-02'], [24.0, nan])
    """
    if not timestamps:
        return [], np.zeros(0)
    secs = np.array(sorted(t.timestamp() for t in timestamps))
    step = float(np.median(np.diff(secs))) if secs.size > 1 else 86_400.0
    per_day = max(86_400.0 / step, 1.0)
    sums: dict[date, float] = {}
    counts: dict[date, int] = {}
    for moment, value in zip(timestamps, values_kwh, strict=True):
        if math.isnan(value):
            continue
        day = moment.astimezone(tz).date()
        sums[day] = sums.get(day, 0.0) + value
        counts[day] = counts.get(day, 0) + 1
    first = min(t.astimezone(tz).date() for t in timestamps)
    last = max(t.astimezone(tz).date() for t in timestamps)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    # DST days have 23 or 25 hours: compare with the hours of that local day.
    energy = np.full(len(days), np.nan)
    for i, day in enumerate(days):
        start = datetime(day.year, day.month, day.day, tzinfo=tz)
        nxt = day + timedelta(days=1)
        hours = (datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz) - start) / timedelta(hours=24)
        if counts.get(day, 0) >= min_coverage * per_day * hours:
            energy[i] = sums[day]
    return days, energy
