"""Expected consumption, hour by hour: what the building would have consumed, fitted walk-forward.

The expected consumption of one building × usage reuses the M&V baseline of
:mod:`mv.baseline`, not a second family of models: a
:class:`~mv.baseline.DailyChangePointBaseline` (daily energy on degree days,
with balance point, occupied / unoccupied / school-holiday split) times the
share of a day's energy each local hour takes, per day type (the hourly
profile). Day types come from the building's hours as the inventory and the
calendar describe them (:class:`~anomalies.features.BuildingHours`): a day
without any opening hour is unoccupied (weekends, closures, public holidays,
the school holidays of a school, days outside bookings), an open day in the
school holidays is a school-holiday day.

The hourly profile is why TOWT (:class:`~mv.baseline.TowtBaseline`) is not
used here: its hour-of-week term cannot tell a Monday of the school holidays
from an ordinary Monday, so it would expect a school heated through the
holidays, and miss exactly the heating kept on through a holiday.

Everything is causal, so that a live pipeline gets the same numbers:

* at each refit (every ``refit_every``, from ``min_history`` on) the model is
  fitted on the earlier hours only (at most ``window`` of them), leaving out
  the hours flagged by a rule or an open alert (``excluded``): a day with
  such an hour is left out, the other days still count, so refits go on
  while an alert is open and the reference is the consumption before it;
  the structure (terms, balance points, day-type split) is searched every
  ``structure_every`` (every refit by default; longer: the refits in
  between refit its coefficients);
* an hour is predicted from the degree days of the 24 hours up to it
  (the building's inertia follows the last day's weather), never from later
  temperatures;
* until the first fit no hour is expected; at the first fit the hours before
  it get the model's in-sample values (the reference the isolation forest is
  first fitted on).

With no outdoor temperature at all, a constant stands in for it and the
model has no weather term: the expected value is the usual level of each
day type and hour.

Sample config (``ExpectedConfig``)::

    expected:
      min_history: 14d
      refit_every: 7d
      structure_every: 7d
      window: 365d

>>> import numpy as np
>>> from datetime import UTC, date, datetime, timedelta
>>> hours = 24 * 28
>>> day_of = np.repeat(np.arange(28), 24)
>>> outdoor = 8.0 + 4.0 * np.sin(day_of / 3.0)
>>> local_hour = np.tile(np.arange(24), 28)
>>> open_day = (day_of % 7) < 5
>>> heat = np.maximum(0.0, 16.0 - outdoor) * np.where((local_hour >= 7) & (local_hour < 18), 2.0, 0.5)
>>> y = heat * np.where(open_day, 1.0, 0.4) + 1.0
>>> open_frac = np.where(open_day & (local_hour >= 8) & (local_hour < 17), 1.0, 0.0)
>>> model = ExpectedConsumption(y, outdoor, open_frac, np.zeros(hours, dtype=bool), local_hour, day_of,
...                             ExpectedConfig())
>>> refit_hours(hours, ExpectedConfig())
[336, 504]
>>> model.refit(336, np.zeros(336, dtype=bool)), model.fits
(True, 1)
>>> error = np.abs(model.predict(336, hours) - y[336:]) / y[336:]
>>> bool(np.mean(error) < 0.1)
True

The walk forward (refit every week, predict the week after, leave out the
flagged hours) is :func:`anomalies.detect.run_models`'s.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields, replace
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from inventory import Duration
from mv.baseline import BaselineConfig, DailyChangePointBaseline, DailyObservations, DayType
from streams.errors import InsufficientData, ModelError

__all__ = [
    "ExpectedConfig",
    "ExpectedConsumption",
    "ExpectedFit",
    "day_residual_bound",
    "day_types_of_hours",
    "refit_hours",
    "trailing_day_residual",
    "trailing_temperatures",
    "unknown_weather",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

_HOUR = timedelta(hours=1)
_TYPES = (DayType.OCCUPIED, DayType.UNOCCUPIED, DayType.SCHOOL_HOLIDAY)
_TYPE_INDEX = {t: i for i, t in enumerate(_TYPES)}  # per hour of 400 days, a dict beats tuple.index
_WARM_HDD = 0.5  # K·day: a day this close to no heating degree day is a warm day (its energy: the floor)
_MIN_ENERGY_SPREAD = 0.01  # the fitted days' energies of a type must differ by this share of their mean (RMS)
_FIT_FORMAT = 3  # of ExpectedFit.to_dict (3: the warmest fitted days; 2: the profile's ``seen``; 1 and 2 are read)
_NO_WEATHER_C = 10.0  # stands in for a missing outdoor temperature: a constant gives no weather term
_UNKNOWN_WEATHER_DAYS = 28  # a silent station's hours are expected at the coldest day of the 4 weeks before it
_UNKNOWN_WEATHER_MAX_DAYS = 14  # ... for two weeks at most: past that, those weeks say little of the season
_MIN_SEEN_DAYS = 3  # days a type × weekday had an hour open (or closed) before the model judges such an hour
_SEEN_SLOTS = len(_TYPES) * 7 * 24 * 2  # type × weekday × local hour × open state
_DAY_KNOWN_H = 20  # of a day's 24 hourly temperatures, to take its mean for that day's


class ExpectedConfig(BaseModel):
    """When the expected-consumption model starts, how often it is refitted, and its search ranges."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_history: Duration = timedelta(days=14)
    """History before the first fit; no hour is expected before it."""
    refit_every: Duration = timedelta(days=7)
    """How often the model is refitted on the hours before."""
    structure_every: Duration = timedelta(days=7)
    """How often a refit searches the model's structure (terms, balance points, day-type split) again;
    the refits in between fit the coefficients of the last structure found. Also searched again when
    the usable days have grown by a quarter since, when the structure no longer holds (a slope no
    longer significant) and when a day type appears or vanishes. ``refit_every`` or less (the default):
    every refit searches. 28 days makes the building-year's refits 0.8 s faster (docs/anomalies.md "Speed")."""
    window: Duration = timedelta(days=365)
    """Longest history a fit uses (a year holds every season)."""
    min_days: int = Field(default=10, ge=3)
    """Fewest usable days (energy and temperature known, no flagged hour) a fit needs."""
    min_days_per_type: int = Field(default=3, ge=1)
    """A day type with fewer reference days borrows another's coefficients and profile."""
    heating_balance_c: tuple[float, float] = (8.0, 20.0)
    """Range searched for the heating balance point."""
    cooling_balance_c: tuple[float, float] = (22.0, 26.0)
    """Range searched for the cooling balance point."""
    balance_step_c: float = Field(default=1.0, gt=0)
    """Step of the balance-point grids."""

    def baseline_config(self) -> BaselineConfig:
        """The :class:`~mv.baseline.BaselineConfig` of the daily model (sufficiency is checked here)."""
        return BaselineConfig(
            min_span=self.min_history,
            min_coverage=0.05,
            min_days_per_type=self.min_days_per_type,
            heating_balance_c=self.heating_balance_c,
            cooling_balance_c=self.cooling_balance_c,
            balance_step_c=self.balance_step_c,
        )


def day_types_of_hours(open_frac: FloatArray, school_holiday: BoolArray, day: IntArray) -> list[DayType]:
    """Day type of each hour's local day: unoccupied without any opening, school holiday, else occupied.

    Args:
        open_frac: open share of each hour.
        school_holiday: the hour's local day is in the school holidays.
        day: local day number of each hour (any integer that changes at local midnight).

    Returns:
        One day type per hour.

    >>> day_types_of_hours(np.array([0.0, 1.0, 0.0, 0.0]), np.array([False, False, True, True]), np.array([1, 1, 2, 2]))[1:3]
    [<DayType.OCCUPIED: 'occupied'>, <DayType.UNOCCUPIED: 'unoccupied'>]
    """
    days, inverse = np.unique(day, return_inverse=True)
    opened = np.zeros(days.size)
    np.add.at(opened, inverse, open_frac)
    holiday = np.zeros(days.size, dtype=np.bool_)
    np.logical_or.at(holiday, inverse, school_holiday)
    per_day = [DayType.UNOCCUPIED if o <= 0 else DayType.OCCUPIED for o in opened.tolist()]
    return [per_day[i] for i in inverse.tolist()]


def trailing_temperatures(outdoor_c: FloatArray) -> FloatArray:
    """The 24 hourly temperatures up to and including each hour, as rows (``nan`` before the first).

    >>> trailing_temperatures(np.arange(30.0))[25, [0, -1]].tolist()
    [2.0, 25.0]
    """
    padded = np.concatenate([np.full(23, np.nan), outdoor_c])
    result: FloatArray = np.lib.stride_tricks.sliding_window_view(padded, 24).copy()
    return result


def unknown_weather(
    outdoor_c: FloatArray, days: int = _UNKNOWN_WEATHER_DAYS, max_days: int = _UNKNOWN_WEATHER_MAX_DAYS,
) -> tuple[FloatArray, FloatArray]:
    """Where the weather station was silent for the whole 24 hours up to an hour: a bounded weather for it.

    An hour's expected value comes from the temperatures of the 24 hours up
    to it (those it has, when some are missing); when the station was silent
    for all of them (a dead gateway, a flat battery: days, in real data),
    the model has no weather to predict from. For an *excess* the least
    telling weather is the coldest plausible one: the coldest day (24-hour
    mean, at least 20 hours known) of the ``days`` days up to the station's
    last reading, the same for the whole silence. An excess claimed against
    it is an excess in any weather those weeks have seen (the idea
    :class:`~anomalies.rules.SensorDriftRule` applies to a fall of an indoor
    temperature while the weather is unknown). It bounds nothing else: a
    deficit against it proves nothing, and no model is fitted on it. Past
    ``max_days`` of silence those weeks say little of the season: no bound.

    Args:
        outdoor_c: outdoor temperature per hour (``nan`` unknown).
        days: how many days before the silence the coldest day is taken from.
        max_days: the longest silence a bound is given for.

    Returns:
        Per hour, the bounding temperature (``nan`` where the 24 hours hold a temperature, or no bound), and
        the hours since the station's last reading (``nan`` where it is not silent).

    >>> outdoor = np.concatenate([np.full(48, 5.0), np.full(24, -2.0), np.full(24, 6.0), np.full(60, np.nan)])
    >>> bound, silent_h = unknown_weather(outdoor)
    >>> bool(np.isnan(bound[:119]).all()), float(bound[119]), float(silent_h[119]), float(bound[-1])
    (True, -2.0, 24.0, -2.0)
    """
    n = outdoor_c.size
    bound = np.full(n, np.nan)
    silent_h = np.full(n, np.nan)
    known = np.isfinite(outdoor_c)
    if n == 0 or not known.any():
        return bound, silent_h
    index = np.arange(n)
    last = np.maximum.accumulate(np.where(known, index, -1))
    since = index - last
    silent = (since >= 24) & (last >= 0) & (since <= 24 * max_days)  # no temperature in the 24 hours up to it
    if not silent.any():  # the usual case, cheaply: a live pass computes this for every usage of every building
        return bound, silent_h
    lag = np.maximum(index - 23, 0)
    counts = np.concatenate([[0], np.cumsum(known)])
    sums = np.concatenate([[0.0], np.cumsum(np.where(known, outdoor_c, 0.0))])
    known_h = counts[index + 1] - counts[lag]
    day_mean = np.where(known_h >= _DAY_KNOWN_H, (sums[index + 1] - sums[lag]) / np.maximum(known_h, 1), np.nan)
    for end in np.unique(last[silent]).tolist():
        window = day_mean[max(0, end + 1 - 24 * days) : end + 1]
        window = window[np.isfinite(window)]
        if window.size:
            run = silent & (last == end)
            bound[run] = float(window.min())
            silent_h[run] = since[run]
    return bound, silent_h


@dataclass(frozen=True, slots=True, eq=False)
class ExpectedFit:
    """What an :class:`ExpectedConsumption` has learnt: its last fit and the refit chain's bookkeeping.

    The per-hour inputs are not part of it: a model built on a longer frame of the same hours and
    :meth:`ExpectedConsumption.restore`-d from it predicts the same values (``anomalies.detect.ModelProgress``).
    """

    last: DailyChangePointBaseline | None
    profile: _Shape | None
    coldest_c: FloatArray
    warmest_c: FloatArray
    fits: int
    searches: int
    searched_at: int
    searched_days: int

    def moved(self, hours: int) -> ExpectedFit:
        """The same fits on a frame that starts ``hours`` later (a rolled history): its hour indices moved."""
        return replace(self, searched_at=self.searched_at - hours)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, with ``format_version`` (floats written by ``json`` read back bit for bit)."""
        shape = self.profile
        return {
            "format_version": _FIT_FORMAT,
            "last": None if self.last is None else self.last.to_dict(),
            "profile": None if shape is None else {f.name: getattr(shape, f.name).tolist() for f in fields(shape)},
            "coldest_c": self.coldest_c.tolist(),
            "warmest_c": self.warmest_c.tolist(),
            "fits": self.fits, "searches": self.searches,
            "searched_at": self.searched_at, "searched_days": self.searched_days,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExpectedFit:
        """Load :meth:`to_dict` output.

        Raises:
            ModelError: an unknown format version.
        """
        if data.get("format_version") == 1:
            data = _fit_from_format_1(data)
        if data.get("format_version") == 2:
            data = _fit_from_format_2(data)
        if data.get("format_version") != _FIT_FORMAT:
            msg = (f"unknown expected-model format_version {data.get('format_version')!r} "
                   f"(this version reads 1 to {_FIT_FORMAT})")
            raise ModelError(msg)
        shape = data["profile"]
        return cls(
            last=None if data["last"] is None else DailyChangePointBaseline.from_dict(data["last"]),
            profile=None if shape is None else _Shape(**{k: np.asarray(v, dtype=np.float64) for k, v in shape.items()}),
            coldest_c=np.asarray(data["coldest_c"], dtype=np.float64),
            warmest_c=np.asarray(data["warmest_c"], dtype=np.float64),
            fits=int(data["fits"]), searches=int(data["searches"]),
            searched_at=int(data["searched_at"]), searched_days=int(data["searched_days"]),
        )


class ExpectedConsumption:
    """The expected-consumption model of one series, refitted step by step as hours go by.

    The per-hour inputs (weather, day types, hours) are given once; :meth:`refit`
    fits on the hours before ``at`` that are not excluded, and :meth:`predict`
    gives the expected value of any hours from the last fit.

    Args:
        y: observed consumption per hour (``nan`` unknown).
        outdoor_c: outdoor temperature per hour (``nan`` unknown; all ``nan``: no weather term).
        open_frac: open share of each hour.
        school_holiday: the hour's local day is in the school holidays.
        local_hour: local wall-clock hour, 0-23.
        day: local day number of each hour.
        config: start, refit cadence, search ranges.
        open_hour: whether each hour is open, for the hours each type × weekday has had open or closed
            (:meth:`beyond_fit`); ``None``: ``open_frac > 0``.
    """

    def __init__(
        self,
        y: FloatArray,
        outdoor_c: FloatArray,
        open_frac: FloatArray,
        school_holiday: BoolArray,
        local_hour: IntArray,
        day: IntArray,
        config: ExpectedConfig,
        open_hour: BoolArray | None = None,
    ) -> None:
        self.y = y
        self.outdoor_c = outdoor_c if np.isfinite(outdoor_c).any() else np.full(y.size, _NO_WEATHER_C)
        self.types = day_types_of_hours(open_frac, school_holiday, day)
        self.open_hour = open_frac > 0.0 if open_hour is None else open_hour
        self.type_idx = np.array([_TYPE_INDEX[t] for t in self.types], dtype=np.int64)
        self.local_hour = local_hour
        self.day = day
        self.config = config
        self.rows = trailing_temperatures(self.outdoor_c)
        self.weather_bound_c, self.silent_h = unknown_weather(outdoor_c)
        """Per hour whose 24 hours the weather station was silent for, the weather it is expected at for an excess,
        and how long the station has been silent (:func:`unknown_weather`; ``nan`` elsewhere)."""
        # Per-day sums of the whole series, once: a weekly refit reads them instead of re-adding a year of days.
        self._days = _DayTable.build(self.y, self.outdoor_c, self.local_hour, self.day) if _ascending(day) else None
        self.fits = 0
        self.searches = 0
        """How many fits searched the structure (the others refitted the last one's)."""
        self._searched_at = 0  # the hour of the last structure search
        self._searched_days = 0  # how many days it was fitted on
        self.last: DailyChangePointBaseline | None = None
        self._profile: _Shape | None = None
        self.coldest_c = np.full(len(_TYPES), np.nan)
        """Per day type, the lowest daily mean outdoor temperature of the last fit's days (``nan``: none)."""
        self.warmest_c = np.full(len(_TYPES), np.nan)
        """Per day type, the highest daily mean outdoor temperature of the last fit's days (``nan``: none)."""

    @property
    def fitted(self) -> bool:
        """Tell whether a fit has succeeded yet."""
        return self.last is not None

    def refit(self, at: int, excluded: BoolArray) -> bool:
        """Refit on the hours before ``at`` (at most ``config.window``), leaving out ``excluded`` ones.

        Args:
            at: first hour not yet seen.
            excluded: per hour before ``at``, hours not to fit on (flagged by a rule or an alert).

        Returns:
            Whether the fit succeeded (when not, the previous fit stays in use).
        """
        lo = max(0, at - int(self.config.window / _HOUR))
        y, outdoor_c, local_hour, day = self.y[lo:at], self.outdoor_c[lo:at], self.local_hour[lo:at], self.day[lo:at]
        days = (self._days.window(lo, at, y, outdoor_c, local_hour, day) if self._days is not None
                else _DayTable.build(y, outdoor_c, local_hour, day))
        # A building's structure (its balance point, whether its closed days heat differently) does not change
        # week to week: between searches only the coefficients follow the latest weeks.
        like = self.last if at - self._searched_at < int(self.config.structure_every / _HOUR) else None
        fitted = _fit(y, outdoor_c, self.types[lo:at], excluded[lo:at], days, self.config,
                      like, self._searched_days + self._searched_days // 4,
                      seen_of=(self.type_idx[lo:at], self.open_hour[lo:at], local_hour, day))
        if fitted is None:
            return False
        self.last, self._profile, self.coldest_c, self.warmest_c = fitted
        self.fits += 1
        if self.last.searched:
            self.searches += 1
            self._searched_at, self._searched_days = at, self.last.stats.n
        return True

    def snapshot(self) -> ExpectedFit:
        """What the model has learnt so far (its fits), to :meth:`restore` on a model of more hours."""
        return ExpectedFit(self.last, self._profile, self.coldest_c.copy(), self.warmest_c.copy(), self.fits,
                           self.searches,
                           self._searched_at, self._searched_days)

    def restore(self, fit: ExpectedFit) -> None:
        """Continue from a :meth:`snapshot` taken on the same hours (this frame may hold more of them after)."""
        self.last, self._profile, self.coldest_c = fit.last, fit.profile, fit.coldest_c.copy()
        self.warmest_c = fit.warmest_c.copy()
        self.fits, self.searches = fit.fits, fit.searches
        self._searched_at, self._searched_days = fit.searched_at, fit.searched_days

    def predict(self, start: int, stop: int) -> FloatArray:
        """Expected consumption of hours ``start`` to ``stop`` by the last fit (``nan`` before any fit)."""
        if self.last is None or self._profile is None:
            return np.full(max(0, stop - start), np.nan)
        return _predict(self.last, self._profile, self.rows[start:stop], self.types[start:stop],
                        self.type_idx[start:stop], self.local_hour[start:stop], self.day[start:stop])


    def predict_bounded(self, start: int, stop: int) -> FloatArray:
        """:meth:`predict`, and where the station was silent for the 24 hours, the value at its bounded weather.

        The hours :meth:`predict` cannot expect (no temperature in their 24 hours) are expected at the
        coldest day of the weeks before the silence (:func:`unknown_weather`): what the building would draw
        in that weather, a bound above its need in any warmer weather, so an excess over it is an excess
        whatever the weather was. Only an excess may be judged against it; nothing is fitted on it.
        A model with a cooling term draws more in hot weather too: no single weather bounds it, and those
        hours stay without an expected value.
        """
        result = self.predict(start, stop)
        bound = self.weather_bound_c[start:stop]
        at = np.flatnonzero(np.isfinite(bound))
        if at.size == 0 or self.last is None or self._profile is None or self.last.params.cooling_balance_c is not None:
            return result
        rows = np.repeat(bound[at][:, None], 24, axis=1)
        idx = start + at
        result[at] = _predict(self.last, self._profile, rows, [self.types[i] for i in idx.tolist()],
                              self.type_idx[idx], self.local_hour[idx], self.day[idx])
        return result

    def beyond_fit(self, start: int, stop: int, margin_c: float) -> BoolArray:
        """Hours the last fit knows no day like: too cold for their day type, or of a weekday it has not learnt.

        * Colder: the last 24 hours were colder than any fitted day of their
          day type, by more than ``margin_c``. Only for a model with a heating
          term: there the expected value is an extrapolation of the degree-day
          line into weather it was never fitted on (the first frost after a
          mild autumn, a day type never seen cold, where a setback or frost
          protection starts to run). A day type without enough fitted days of
          its own is beyond the fit whenever the model is weather-dependent.
        * Warmer: the last 24 hours were warmer than any fitted day of their
          day type, by more than ``margin_c`` (a model with a heating term
          too). Fitted on a winter, the line's fall to its balance point and
          the level it stops at were never seen: a building's first warm
          weeks were expected below its base load (a workshop's convector
          meter expected at 0 through its first summer nights). Once a refit
          has fitted such days, they are judged; a fit read from a file of
          the format before (no warmest days) judges them, as it did.
          An hour whose 24 hours the station was silent for is judged at its
          bounded weather (:meth:`predict_bounded`).
        * An hour its type and weekday had open (or closed) on fewer than
          :data:`_MIN_SEEN_DAYS` days before the fit, whatever the weather:
          the profile that spreads its day's energy was learnt on days unlike
          it (an event hall's first Saturday evening booking after weeks of
          weekday afternoons; any weekday in the first three weeks).

        Without a fit, every hour is.
        """
        if self.last is None or self._profile is None:
            return np.ones(max(0, stop - start), dtype=np.bool_)
        key = self.type_idx[start:stop] * 7 + _weekday(self.day[start:stop])
        slot = key * 48 + self.local_hour[start:stop] * 2 + self.open_hour[start:stop]
        borrowed: BoolArray = ~(self._profile.seen[slot] >= _MIN_SEEN_DAYS)
        if self.last.params.heating_balance_c is None:
            return borrowed
        rows = self.rows[start:stop]
        known = np.isfinite(rows).sum(axis=1)
        mean_c = np.where(known > 0, np.nansum(rows, axis=1) / np.maximum(known, 1), np.nan)
        mean_c = np.where(known > 0, mean_c, self.weather_bound_c[start:stop])  # the station silent: its bound
        edge = self.coldest_c[self.type_idx[start:stop]]
        result: BoolArray = ~(mean_c >= edge - margin_c) | borrowed  # nan edge or nan temperature: beyond
        # Warmer than any fitted day: unknown warmest (a fit read from an older file) judges as before.
        result |= mean_c > self.warmest_c[self.type_idx[start:stop]] + margin_c
        return result


def refit_hours(n: int, config: ExpectedConfig, phase: int | None = None) -> list[int]:
    """The hours at which the model is refitted: at ``min_history``, then every ``refit_every`` on a grid.

    The grid is the hours ``h`` with ``h ≡ phase`` modulo ``refit_every`` (default: the grid of ``min_history``
    itself). Live detection gives each building its own phase (:func:`anomalies.detect.refit_phase`), so that
    a portfolio's weekly refits are spread over the hours of the week, not all in one pass.

    >>> refit_hours(24 * 30, ExpectedConfig())
    [336, 504, 672]
    >>> refit_hours(24 * 30, ExpectedConfig(), phase=10)
    [336, 346, 514, 682]
    """
    first = max(1, int(config.min_history / _HOUR))
    step = max(1, int(config.refit_every / _HOUR))
    if first >= n:
        return []
    after = first + (((first if phase is None else phase) - first) % step or step)
    return [first, *range(after, n, step)]


def _ascending(day: IntArray) -> bool:
    """Tell whether local day numbers never decrease (each day's hours are then one run)."""
    return bool(np.all(day[1:] >= day[:-1]))


@dataclass(frozen=True, slots=True, eq=False)
class _DayTable:
    """What a fit reads of each local day of a stretch of hours, computed day by day as a fit always did.

    Attributes:
        day: local day number.
        start: index of the day's first hour in the stretch.
        count: hours of the day in the stretch.
        energy: the day's consumption (``y`` of its hours, summed as one slice).
        temps: the day's outdoor temperature per local hour (``nan`` where none: a 23-hour day).
        hourly: the day's consumption per local hour (a 25-hour day adds its repeated hour).
        hourly_energy: the sum of ``hourly``.
    """

    day: IntArray
    start: IntArray
    count: IntArray
    energy: FloatArray
    temps: FloatArray
    hourly: FloatArray
    hourly_energy: FloatArray

    @classmethod
    def build(cls, y: FloatArray, outdoor_c: FloatArray, local_hour: IntArray, day: IntArray) -> _DayTable:
        """The table of a stretch of hours."""
        days, start, counts = np.unique(day, return_index=True, return_counts=True)
        n = days.size
        energy = np.zeros(n)
        temps = np.full((n, 24), np.nan)
        hourly = np.zeros((n, 24))
        for i, (s, c) in enumerate(zip(start.tolist(), counts.tolist(), strict=True)):
            energy[i] = float(y[s : s + c].sum())
            temps[i, local_hour[s : s + c]] = outdoor_c[s : s + c]
            np.add.at(hourly[i], local_hour[s : s + c], y[s : s + c])
        hourly_energy = np.array([row.sum() for row in hourly], dtype=np.float64)  # row by row, as a fit always summed
        return cls(day=days.astype(np.int64), start=start.astype(np.int64), count=counts.astype(np.int64),
                   energy=energy, temps=temps, hourly=hourly, hourly_energy=hourly_energy)

    def window(self, lo: int, at: int, y: FloatArray, outdoor_c: FloatArray, local_hour: IntArray,
               day: IntArray) -> _DayTable:
        """The table of hours ``lo`` to ``at`` of the series this one was built on (``y`` … ``day``: that stretch).

        Days wholly inside come from this table; a day cut by either end is built again from its part.
        """
        first = int(np.searchsorted(self.start, lo, side="right")) - 1
        first = max(first, 0)
        last = int(np.searchsorted(self.start, at, side="left"))
        inner = np.arange(first, last)
        whole = (self.start[inner] >= lo) & (self.start[inner] + self.count[inner] <= at)
        inner = inner[whole]
        parts: list[_DayTable] = []
        if inner.size == 0:
            return _DayTable.build(y, outdoor_c, local_hour, day)
        i0, i1 = int(inner[0]), int(inner[-1]) + 1
        head = int(self.start[i0]) - lo
        tail = int(self.start[i1 - 1] + self.count[i1 - 1]) - lo
        if head > 0:
            parts.append(_DayTable.build(y[:head], outdoor_c[:head], local_hour[:head], day[:head]))
        parts.append(_DayTable(day=self.day[i0:i1], start=self.start[i0:i1] - lo, count=self.count[i0:i1],
                               energy=self.energy[i0:i1], temps=self.temps[i0:i1], hourly=self.hourly[i0:i1],
                               hourly_energy=self.hourly_energy[i0:i1]))
        if tail < y.size:
            end = _DayTable.build(y[tail:], outdoor_c[tail:], local_hour[tail:], day[tail:])
            parts.append(_DayTable(day=end.day, start=end.start + tail, count=end.count, energy=end.energy,
                                   temps=end.temps, hourly=end.hourly, hourly_energy=end.hourly_energy))
        if len(parts) == 1:
            return parts[0]
        return _DayTable(
            day=np.concatenate([p.day for p in parts]), start=np.concatenate([p.start for p in parts]),
            count=np.concatenate([p.count for p in parts]), energy=np.concatenate([p.energy for p in parts]),
            temps=np.concatenate([p.temps for p in parts]), hourly=np.concatenate([p.hourly for p in parts]),
            hourly_energy=np.concatenate([p.hourly_energy for p in parts]))


def _fit(
    y: FloatArray,
    outdoor_c: FloatArray,
    types: list[DayType],
    excluded: BoolArray,
    days: _DayTable,
    config: ExpectedConfig,
    like: DailyChangePointBaseline | None,
    like_max_days: int,
    seen_of: tuple[IntArray, BoolArray, IntArray, IntArray],
) -> tuple[DailyChangePointBaseline, _Shape, FloatArray, FloatArray] | None:
    """Fit the daily model and the hourly profile on complete, unflagged local days (``days``: the table of ``y``'s).

    ``like``'s structure is refitted (see :meth:`mv.baseline.DailyChangePointBaseline.fit`) while the usable
    days are at most ``like_max_days``; beyond, or without ``like``, the structure is searched.
    ``seen_of`` (per hour: day type index, open or not, local hour, local day) counts the hours the building
    has had of each type × weekday × local hour × open state (:attr:`_Shape.seen`).
    """
    if y.size == 0:
        return None
    bad = np.concatenate([[0], np.cumsum(~(np.isfinite(y) & ~excluded & np.isfinite(outdoor_c)))])
    # DST days have 23 or 25 hours; a day cut by the history's edge is left out.
    usable = (days.count >= 23) & (bad[days.start + days.count] == bad[days.start])
    kept = np.flatnonzero(usable)
    if kept.size < config.min_days:
        logger.debug("expected model: %d usable days, need %d", kept.size, config.min_days)
        return None
    energy = days.energy[kept].tolist()
    stacked = days.temps[kept]
    kept_types = [types[s] for s in days.start[kept].tolist()]
    kept_days = days.day[kept]
    first = date.fromordinal(1)
    d0 = int(kept_days[0])
    obs = DailyObservations.build([first + timedelta(days=d - d0) for d in kept_days.tolist()], energy, stacked,
                                  kept_types)
    if like is not None and int(obs.usable().sum()) > like_max_days:
        like = None
    try:
        model = DailyChangePointBaseline(config.baseline_config()).fit(obs, like)
    except (InsufficientData, ModelError) as exc:
        logger.debug("expected model not fitted: %s", exc)
        return None
    modelled = model.predict(obs)
    balance = model.params.heating_balance_c
    # Without a heating term there is no line falling to zero: no floor (every day counts as cold).
    hdd = (np.nanmean(np.maximum(balance - stacked, 0.0), axis=1) if balance is not None
           else np.full(len(energy), np.inf))
    coldest = np.full(len(_TYPES), np.nan)
    warmest = np.full(len(_TYPES), np.nan)
    daily_c = np.nanmean(stacked, axis=1)
    for i, day_type in enumerate(_TYPES):
        of_type = [c for c, t in zip(daily_c.tolist(), kept_types, strict=True) if t is day_type]
        if len(of_type) >= config.min_days_per_type:
            coldest[i] = min(of_type)
            warmest[i] = max(of_type)
    # The hours of each key, clock hour and open state the building has had on complete, known days, flagged
    # or not: a weekday whose days were all left out of the fits (an alert, the forest's flags) is still one
    # it has had, while an event hall's first Saturday evening booking is not.
    type_idx, open_hour, local_hour, day = seen_of
    missing = np.concatenate([[0], np.cumsum(~(np.isfinite(y) & np.isfinite(outdoor_c)))])
    complete = (days.count >= 23) & (missing[days.start + days.count] == missing[days.start])
    of_day = np.repeat(complete, days.count)  # the days are runs of the hours, in order
    # A day counts once per clock hour: the hour a DST day repeats (25 h) is one day's, not two.
    again = np.concatenate([[False], (day[1:] == day[:-1]) & (local_hour[1:] == local_hour[:-1])])
    slot = (type_idx * 7 + _weekday(day)) * 48 + local_hour * 2 + open_hour
    seen_counts = np.bincount(slot[of_day & ~again], minlength=_SEEN_SLOTS).astype(np.float64)
    shape = _profile(days.hourly[kept], days.hourly_energy[kept], kept_days, kept_types, model, modelled, hdd,
                     seen_counts)
    return model, shape, coldest, warmest


@dataclass(frozen=True, slots=True, eq=False)
class _Shape:
    """How a predicted day's energy is spread over its hours, per day type × weekday (a key: ``type * 7 + weekday``).

    Attributes:
        factor: per key, observed over modelled daily energy of its fitted days (1 without enough days).
        share: per key × local hour, the share of the day's energy.
        mean_energy: per key, the mean daily energy of its fitted days.
        slope: per day type × local hour, the change of the hour's energy per kWh of the day above
            its key's mean (the hours a colder day adds: a night setback that starts to run).
        floor: per key, the median energy of its fitted days without heating degree days (0 without
            enough of them): where the degree-day line falls to zero, what such a day still consumes
            (the hot water or the morning warm-up a heating meter still counts in mild weather).
        seen: per key × local hour × open state (``(key * 24 + hour) * 2 + open``), on how many complete
            days before the fit the building had that hour, flagged or not (a DST day's repeated hour once) (an hour of a type and
            weekday open at an hour it never was open: an event hall's first Saturday evening booking).
    """

    factor: FloatArray
    share: FloatArray
    mean_energy: FloatArray
    slope: FloatArray
    floor: FloatArray
    seen: FloatArray


def _fit_from_format_1(data: dict[str, Any]) -> dict[str, Any]:
    """A format-1 fit (before the hours seen were counted) as format 2: every hour counts as seen.

    Its model then judges every hour, as it did, until its next refit counts them.
    """
    shape = data["profile"]
    if shape is not None:
        shape = {**shape, "seen": [float(_MIN_SEEN_DAYS)] * _SEEN_SLOTS}
    return {**data, "profile": shape, "format_version": 2}


def _fit_from_format_2(data: dict[str, Any]) -> dict[str, Any]:
    """A format-2 fit (before the warmest fitted days were kept) as format 3: the warmest unknown.

    Its model then judges warm hours as it did, until its next refit keeps them.
    """
    return {**data, "warmest_c": [math.nan] * len(data["coldest_c"]), "format_version": 3}


def _weekday(day: IntArray) -> IntArray:
    """Weekday (Monday 0) of local date ordinals."""
    result: IntArray = (day - 1) % 7
    return result


def _profile(
    matrix: FloatArray, energy: FloatArray, kept_days: IntArray, types: list[DayType],
    model: DailyChangePointBaseline, modelled: FloatArray, hdd: FloatArray, seen_counts: FloatArray,
) -> _Shape:
    """The hourly shape of each day type and weekday, and its daily factor, from the fitted days.

    A day type's weekdays differ (a cultural centre open 4 h on Thursdays and
    13 h on Saturdays): a weekday with ``min_days_per_type`` fitted days of a
    type gets its own share profile and its own factor on the daily model; the
    others use the type's. Within a type, the hours a day's extra energy goes to
    are learnt too (``slope``): on a cold day a setback heats the nights too,
    which a fixed share would put in the day's opening hours.
    """
    n_types = len(_TYPES)
    min_days = model.config.min_days_per_type
    type_of = np.array([_TYPE_INDEX[t] for t in types], dtype=np.int64)
    weekday = _weekday(kept_days)
    type_share = np.full((n_types, 24), 1.0 / 24.0)
    type_mean = np.zeros(n_types)
    counts = np.bincount(type_of, minlength=n_types)
    sums = np.zeros((n_types, 24))
    np.add.at(sums, type_of, matrix)
    total = sums.sum(axis=1)
    merged = model.params.type_map
    for i, day_type in enumerate(_TYPES):
        source = i
        if counts[i] < min_days or total[i] <= 0:
            # Too few days of this type: the profile of the type its coefficients come from.
            target = merged.get(day_type, DayType.UNOCCUPIED if day_type is DayType.SCHOOL_HOLIDAY else DayType.OCCUPIED)
            source = _TYPES.index(target)
            if counts[source] < min_days or total[source] <= 0:
                source = int(np.argmax(counts))
        if total[source] > 0:
            type_share[i] = sums[source] / total[source]
            type_mean[i] = total[source] / counts[source]
    keys = n_types * 7
    key = type_of * 7 + weekday
    factor = np.ones(keys)
    share = np.repeat(type_share, 7, axis=0)
    mean_energy = np.repeat(type_mean, 7)
    key_counts = np.bincount(key, minlength=keys)
    key_sums = np.zeros((keys, 24))
    np.add.at(key_sums, key, matrix)
    key_energy = key_sums.sum(axis=1)
    key_modelled = np.bincount(key, weights=modelled, minlength=keys)
    own = (key_counts >= min_days) & (key_energy > 0) & (key_modelled > 0)
    share[own] = key_sums[own] / key_energy[own, None]
    factor[own] = key_energy[own] / key_modelled[own]
    mean_energy[own] = key_energy[own] / key_counts[own]
    # What is left once each day's energy is spread by its key's shares, against the day's energy above its key's mean.
    x = energy - mean_energy[key]
    rest = matrix - share[key] * energy[:, None]
    slope = np.zeros((n_types, 24))
    for t in range(n_types):
        sel = type_of == t
        sxx = float(np.sum(x[sel] ** 2))
        # Only days whose energy measurably differs tell where extra energy goes: a constant closed-day base load
        # differs by rounding alone, and a slope of rounding over rounding would reshape its days at random.
        varies = sxx > sel.sum() * (_MIN_ENERGY_SPREAD * float(np.mean(energy[sel]))) ** 2 if sel.any() else False
        if sel.sum() >= 2 * min_days and varies:
            slope[t] = x[sel] @ rest[sel] / sxx
    floor = np.zeros(keys)
    warm = hdd < _WARM_HDD
    for k in range(keys):
        of_key = warm & (key == k)
        if of_key.sum() < min_days:
            of_key = warm & (type_of == k // 7)
        if of_key.sum() >= min_days:
            floor[k] = float(np.median(energy[of_key]))
    return _Shape(factor=factor, share=share, mean_energy=mean_energy, slope=slope, floor=floor,
                  seen=seen_counts)


def _predict(
    model: DailyChangePointBaseline,
    shape: _Shape,
    rows: FloatArray,
    types: list[DayType],
    type_idx: IntArray,
    local_hour: IntArray,
    day: IntArray,
) -> FloatArray:
    if rows.shape[0] == 0:
        return np.zeros(0)
    obs = DailyObservations.build([date.fromordinal(1)] * rows.shape[0], np.full(rows.shape[0], np.nan), rows, types)
    key = type_idx * 7 + _weekday(day)
    daily = np.maximum(model.predict(obs) * shape.factor[key], shape.floor[key])
    # Every hour of a day of this energy, then the hour's part of them: the day's hours add up to its energy.
    spread = shape.share[key] * daily[:, None] + shape.slope[type_idx] * (daily - shape.mean_energy[key])[:, None]
    spread = np.maximum(spread, 0.0)
    total = spread.sum(axis=1)
    part = np.where(total > 0, spread[np.arange(key.size), local_hour] / np.where(total > 0, total, 1.0),
                    shape.share[key, local_hour])
    result: FloatArray = daily * part
    return result


def trailing_day_residual(residual: FloatArray, min_known: int = 20) -> FloatArray:
    """The residual summed over the 24 hours up to and including each hour: the excess of the last day, in energy.

    ``nan`` where fewer than ``min_known`` of those hours are known (unknown
    hours count as no excess).

    >>> trailing_day_residual(np.ones(30))[[18, 23, 29]].tolist()
    [nan, 24.0, 24.0]
    """
    rows = trailing_temperatures(residual)  # the 24 values up to each hour, as rows
    known = np.isfinite(rows).sum(axis=1)
    result: FloatArray = np.where(known >= min_known, np.nansum(rows, axis=1), np.nan)
    return result


def _row_nanmedian(values: FloatArray) -> FloatArray:
    """``np.nanmedian(values, axis=1)`` bit for bit, by one sort of the rows (NaN last) and two picks.

    numpy takes a median of fewer than 600 values a row through a masked array (its sort, its sums),
    most of :func:`day_residual_bound`'s time. Its result is the mean of the two middle numbers of each
    row, summed then halved, as here. Where that could differ (an infinity, which it sorts among the masked
    values, a negative zero, which sorts level with a positive one, a row without a number) numpy computes it.
    """
    if values.ndim != 2 or values.shape[1] == 0 or np.isinf(values).any() or (np.signbit(values) & (values == 0)).any():
        return np.asarray(np.nanmedian(values, axis=1), dtype=np.float64)
    counts = values.shape[1] - np.isnan(values).sum(axis=1)
    if not counts.all():
        return np.asarray(np.nanmedian(values, axis=1), dtype=np.float64)
    ordered = np.sort(values, axis=1)
    high = counts // 2
    low = np.where(counts % 2 == 1, high, high - 1)
    rows = np.arange(values.shape[0])
    result: FloatArray = (ordered[rows, low] + ordered[rows, high]) / 2.0
    return result


def day_residual_bound(
    day_residual: FloatArray,
    reference: BoolArray,
    day_type: IntArray,
    *,
    days: int = 56,
    spread: float = 3.0,
    min_days: int = 7,
    floor: FloatArray | None = None,
    start: int = 0,
) -> FloatArray:
    """How large the last day's residual may be before it stands out of the expected model's own uncertainty.

    The expected model is exact for no building: occupancy varies from day
    to day (a crèche's attendance, an event hall's bookings, a gym's
    tournaments), and so does the energy that follows it. How much it varies
    is a property of the building and its day type, learnt causally from
    the model's own errors: for each hour, the residuals of the 24 hours up
    to the same clock hour on each of the ``days`` days before (one sample a
    day, taken where its 24 hours were all ``reference``: no flagged hour),
    of the same day types (those of the hour's day and of the day 23 hours
    before it, as the 24 hours straddle two) when at least ``min_days`` such
    samples exist, of any day type otherwise. The bound is their median plus ``spread`` robust
    standard deviations (1.4826 × the median absolute deviation). Looks back
    only; ``nan`` where fewer than ``min_days`` samples exist (no judgement).

    The bound is never below ``floor``: a model that matched its reference
    days exactly (a constant base load: median and MAD 0) or kept under them
    (a negative median) would otherwise take any excess, down to a rounding
    of the counter, for one beyond its uncertainty.

    Args:
        day_residual: per hour, the trailing-24-hour residual (:func:`trailing_day_residual`).
        reference: per hour, whether the hour may serve as reference (not flagged by a rule or an alert).
        day_type: per hour, the index of its day's type.
        days: how many days back the samples reach.
        spread: robust standard deviations above the median.
        min_days: fewest samples a bound needs.
        floor: per hour, the least bound (``nan``: none), e.g. a share of the expected day.
        start: the first hour computed; the hours before it are ``nan`` (a live pass that kept the bounds of
            the hours it computed before computes only its new hours: the bound looks back only).

    Returns:
        Per hour, the bound on its trailing-24-hour residual.

    >>> rng = np.random.default_rng(1)
    >>> steady = trailing_day_residual(rng.normal(0.0, 0.1, 24 * 70))
    >>> noisy = trailing_day_residual(rng.normal(0.0, 0.1, 24 * 70) + np.repeat(rng.normal(0.0, 1.0, 70), 24))
    >>> ref, types = np.ones(24 * 70, dtype=bool), np.zeros(24 * 70, dtype=np.int64)
    >>> bool(day_residual_bound(noisy, ref, types)[-1] > 3 * day_residual_bound(steady, ref, types)[-1])
    True

    A model exact on its reference days leaves a bound of 0 without a floor:

    >>> exact = np.zeros(24 * 70)
    >>> floor = np.full(24 * 70, 2.4)
    >>> float(day_residual_bound(exact, ref, types)[-1]), float(day_residual_bound(exact, ref, types, floor=floor)[-1])
    (0.0, 2.4)

    From ``start`` on, the bounds are those of the whole series:

    >>> whole, tail = day_residual_bound(noisy, ref, types), day_residual_bound(noisy, ref, types, start=1600)
    >>> bool(np.isnan(tail[:1600]).all()), bool(np.array_equal(whole[1600:], tail[1600:], equal_nan=True))
    (True, True)
    """
    if start > 0:
        # An hour's bound reads the samples of the ``days`` days before it, each the 24 hours up to it (their
        # references and the day type 23 hours before): the hours from ``lo`` on give the same bounds.
        lo = max(0, start - 24 * (days + 1))
        tail = day_residual_bound(day_residual[lo:], reference[lo:], day_type[lo:], days=days, spread=spread,
                                  min_days=min_days, floor=None if floor is None else floor[lo:])
        out_all = np.full(day_residual.size, np.nan)
        out_all[start:] = tail[start - lo :]
        return out_all
    n = day_residual.size
    # A day's 24 hours straddle two local days (a Monday morning's hold Sunday's): the type of both.
    before = np.concatenate([day_type[:1].repeat(min(n, 23)), day_type[: max(0, n - 23)]])
    day_type = day_type * (int(day_type.max(initial=0)) + 1) + before
    clean = np.convolve((~reference).astype(np.float64), np.ones(24))[:n] == 0  # its 24 hours are all reference
    sample = np.where(clean, day_residual, np.nan)
    lags = np.full((n, days), np.nan)
    same = np.zeros((n, days), dtype=np.bool_)
    for k in range(1, days + 1):
        if n > 24 * k:
            lags[24 * k :, k - 1] = sample[: n - 24 * k]
            same[24 * k :, k - 1] = day_type[: n - 24 * k] == day_type[24 * k :]
    own = np.where(same, lags, np.nan)
    use_own = (np.isfinite(own).sum(axis=1) >= min_days)[:, None]
    chosen = np.where(use_own, own, lags)
    enough = np.isfinite(chosen).sum(axis=1) >= min_days
    out = np.full(n, np.nan)
    if enough.any():
        picked = chosen[enough]
        centre = _row_nanmedian(picked)
        mad = _row_nanmedian(np.abs(picked - centre[:, None]))
        out[enough] = centre + spread * 1.4826 * mad
    if floor is not None:
        out = np.where(np.isfinite(out) & np.isfinite(floor), np.maximum(out, floor), out)
    return out
