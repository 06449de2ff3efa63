"""Offline detection: readings CSV → anomaly events, the code path of ``econome detect``.

The steps, for the whole portfolio:

1. read the readings (``timestamp,point,value``: counters as cumulative
   indexes, sensors as instantaneous values) and aggregate them to hours
   (:class:`~anomalies.features.HourlyFrame`);
2. run the data-quality rules on every point; the hours they flag (a stuck
   counter, a frozen or silent sensor) are blanked for what follows;
3. describe each building's hours (schedule, holidays, weather, indoor
   temperature, consumption per usage) and run the energy rules;
4. per building × usage, walking forward: every week the expected
   consumption (:mod:`anomalies.expected`, the M&V daily change-point model
   times an hourly profile per day type) is refitted on the earlier hours,
   and every ``refit_every`` an isolation forest on the residual features
   (:func:`~anomalies.features.build_features`), both leaving out the hours a
   rule or the forest flagged; the forest's threshold is calibrated on
   held-out reference hours (:class:`~anomalies.thresholds.QuantileThreshold`);
   they score and flag the following hours;
5. debounce every rule's and model's hourly states through the alert
   lifecycle (:class:`~anomalies.lifecycle.AlertLifecycle`: minimum duration,
   flap suppression, the buildings' mute windows) into
   :class:`~anomalies.events.AnomalyEvent` records, priced with the inventory's tariffs.

A forest flags an hour by its score, or when the mean residual ratio of the
24 hours up to it is more than twice the largest among the hours it was
fitted on (``model_beyond_reference``: the score saturates at the reference's
extremes).
A forest's flagged hour counts for an event only when the consumption is
above the expected one (by ``model_min_ratio``); a model event needs
``model_min_duration`` of such hours. A model event that overlaps a rule
event of the same building is dropped: the rule explains it better. A usage
measured only as a share of another usage's meter raises no model event
(:func:`has_own_meter`). A consumption event opens only once its excess is
material (:class:`MaterialityConfig`).

Sample config (``DetectConfig``)::

    detect:
      refit_every: 28d
      expected: {min_history: 14d, refit_every: 7d}
      rule_events: true
      model_events: true
      model_day_spread: 3.0
      model_day_history: 56d
      model_beyond_reference: 2.0
      model_min_duration: 6h
      model_clear_after: 48h
      materiality: {min_ratio: 0.1, min_day_share: 0.03}
      threshold_q: 0.999
      rules: {tolerance_c: 0.7}

>>> from pathlib import Path
>>> import tempfile
>>> from datetime import UTC, datetime
>>> from inventory import load_inventory
>>> from simulator.export import write_readings_csv
>>> inv = load_inventory(Path("examples/commune.yaml"))
>>> csv = Path(tempfile.mkdtemp()) / "readings.csv"
>>> _ = write_readings_csv(inv, csv, datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 8, tzinfo=UTC))
>>> events = detect(inv, read_readings_csv(csv))
>>> isinstance(events, list)
True
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from anomalies.events import AlertState, AnomalyEvent, ChartSeries, EventKind, Language, excess_cost
from anomalies.expected import (
    ExpectedConfig,
    ExpectedConsumption,
    ExpectedFit,
    day_residual_bound,
    refit_hours,
    trailing_day_residual,
)
from anomalies.features import (
    FEATURE_NAMES,
    BuildingHours,
    ClockCache,
    FeatureConfig,
    HourlyFrame,
    PointSeries,
    UsageSeries,
    build_features,
    building_bookings,
    energy_per_unit,
    outdoor_temperature,
    schedule_masks,
)
from anomalies.iforest import IsolationForestConfig, IsolationForestDetector
from anomalies.lifecycle import AlertKey, AlertLifecycle, Gate, LifecycleConfig, Track, Transition
from anomalies.rules import (
    BUILDING_RULES,
    CLOSURE_LOOKAHEAD_H,
    QUALITY_RULES,
    Finding,
    RuleMemo,
    RulesConfig,
    planned_closures,
)
from anomalies.thresholds import QuantileThreshold
from inventory import Building, FrenchCalendar, Inventory, Usage
from streams.errors import InsufficientData
from streams.history import read_readings_csv

__all__ = [
    "MATERIAL_KINDS",
    "AlertMemory",
    "BuildingFindings",
    "DetectConfig",
    "ExpectedSeries",
    "MaterialityConfig",
    "ModelProgress",
    "ModelRun",
    "RuleSpan",
    "building_findings",
    "debounce",
    "detect",
    "events_from_findings",
    "has_own_meter",
    "read_readings_csv",
    "refit_phase",
    "run_models",
    "typical_consumption",
    "write_events_jsonl",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_HOUR = timedelta(hours=1)
_RATIO_COLUMN = FEATURE_NAMES.index("residual_ratio")
_OUTDOOR_COLUMN = FEATURE_NAMES.index("outdoor_c")
_DAY_RATIO_COLUMN = FEATURE_NAMES.index("residual_ratio_24h")
_DAY_H = 24  # the hours residual_ratio_24h averages, the hour itself included
_MIN_CALIBRATION = 48  # held-out scores at the first fit: a quarter of 14 days, minus unknown rows
_LONGEST_FACTS = frozenset({"hours", "weather_unknown_h"})  # an event's fact is their longest over its hours, not the mean


MATERIAL_KINDS = frozenset({
    EventKind.HEATING_UNOCCUPIED, EventKind.LIGHTING_UNOCCUPIED, EventKind.LIGHTING_DAYLIGHT,
    EventKind.BASELOAD_CREEP, EventKind.WATER_LEAK, EventKind.CONSUMPTION_UNOCCUPIED, EventKind.UNUSUAL_CONSUMPTION,
    EventKind.OVERHEATING,
})
"""The kinds whose alert is an excess consumption, held back until it is material.

Data-quality and sensor kinds say nothing of a consumption. ``overheating`` is a
breach of a comfort or legal limit judged on the temperature; what it costs is the
heat spent above the limit, which must be worth an e-mail (a crèche warmed by the
June sun while only its hot water runs is not)."""


class MaterialityConfig(BaseModel):
    """When an excess consumption is worth an advisor's time.

    A consumption alert (:data:`MATERIAL_KINDS`, on a finding whose observed
    values are the metered consumption) reaching its minimum duration opens
    only when the excess accumulated since its first active hour, up to the
    current hour, is

    * at least ``min_ratio`` of the expected consumption of its active hours
      (not for ``baseload_creep`` and ``overheating``, whose rules judge the
      anomaly's size themselves), and
    * at least ``min_day_share`` of the usage's typical day (and, if set,
      ``min_rate`` of its typical hourly consumption per active hour).

    What makes an excess material is its total: a steady leak of 90 L/h is 7 %
    of a pool's usual flow but 2 m3 a day, so no rate is required by default.

    The typical consumption is the mean of the usage's hours known so far
    (at least ``min_history`` of them), so the decision looks back only;
    without it only the ratio applies. Until material an alert stays pending
    (and is forgotten after its quiet time like any pending alert): it opens
    at the first hour its excess is material, the same hour in a replay and
    a live run.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    """Hold back immaterial consumption alerts (off: open at the minimum duration, as before)."""
    min_ratio: float = Field(default=0.1, ge=0)
    """Excess over the expected consumption of the alert's active hours."""
    min_rate: float = Field(default=0.0, ge=0)
    """Excess per active hour, as a share of the usage's typical hourly consumption (0: none)."""
    min_day_share: float = Field(default=0.03, ge=0)
    """Excess so far, as a share of the usage's typical daily consumption."""
    min_history: timedelta = timedelta(days=7)
    """Known hours of the usage before its typical consumption is trusted."""


class DetectConfig(BaseModel):
    """Settings of a detection run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    features: FeatureConfig = Field(default_factory=FeatureConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    iforest: IsolationForestConfig = Field(default_factory=IsolationForestConfig)
    models: bool = True
    """Run the expected-consumption models and the isolation forests (rules always run)."""
    expected: ExpectedConfig = Field(default_factory=ExpectedConfig)
    """The expected consumption: start, refit cadence (:mod:`anomalies.expected`)."""
    rule_events: bool = True
    """Raise events from the rules (off: the forests alone, for a benchmark)."""
    model_events: bool = True
    """Raise events from the forests: consumption persistently above the expected one."""
    refit_every: timedelta = timedelta(days=28)
    """How often each forest is refitted on the hours before (the expected model every ``expected.refit_every``)."""
    refit_spread: bool = False
    """Refit each building's expected model at its own hour of the week (:func:`refit_phase`), so that a live
    pass over a large portfolio refits about 1/168 of its buildings, not all of them in the same pass once a
    week. Off (the default): every building on the weekly grid of its first fit. It changes the model events
    (the forests are sensitive to when the expected model is refitted): on ``bench/detection.py`` family A
    2025 it gave 36 events instead of 33, model precision down (docs/anomalies.md "Live pass at scale")."""
    threshold_q: float = Field(default=0.995, gt=0.5, lt=1)
    """Quantile of held-out reference scores above which an hour is flagged."""
    calibration_share: float = Field(default=0.25, gt=0, lt=1)
    """Share of the reference hours held back to calibrate the threshold (not fitted on)."""
    model_min_ratio: float = Field(default=0.2, ge=0)
    """A flagged hour counts for an event only when the consumption exceeds the expected one by
    this share (of the expected value plus a quarter of the usual level)."""
    model_min_typical_share: float = Field(default=0.25, ge=0)
    """A flagged hour counts for an event only when its excess over the expected consumption is at least
    this share of the usage's typical hourly consumption (the mean of its hours so far): a heating meter's
    summer hot water, a few kWh above an expected zero, is not an anomaly worth an alert."""
    model_fit_margin_c: float = Field(default=2.0, ge=0)
    """A weather-dependent expected model raises no alert on hours whose last 24 hours were colder, or
    warmer, by more than this, than any day of their day type it was fitted on: its expected value there is
    an extrapolation (the first frost after a mild autumn, the first warm weeks after a winter), not a
    reference (:meth:`~anomalies.expected.ExpectedConsumption.beyond_fit`)."""
    model_day_spread: float | None = Field(default=3.0, gt=0)
    """A flagged hour counts for an event only when the residual of the 24 hours up to it stands out of the
    expected model's own uncertainty: above the median of the same residual on the reference days before
    (``model_day_history``, same day type) by this many robust standard deviations. A crèche's or an event
    hall's days vary more than an office's, so they need a larger excess (None: no such test)."""
    model_day_history: timedelta = timedelta(days=56)
    """How far back the days that measure the expected model's uncertainty reach."""
    model_day_min_share: float | None = Field(default=0.1, gt=0)
    """A flagged hour whose own excess is under ``model_min_ratio`` or ``model_min_typical_share`` still counts
    when the 24 hours up to it and the 24 hours before them both stand out of the model's uncertainty
    (``model_day_spread``), each by at least this share of its expected consumption: an excess spread over
    every hour (a door held open, a fouled burner: +30 % heating all day, for days) is small in each hour, where
    one hour's noise hides it, and plain in the days' sums, whose noise the day bound measures. Two days: one
    busy day beyond the bound is the building's own variation often enough (a crèche's full day, a workshop's
    odd Saturday), two in a row rarely. The share is of the usage's typical day (24 typical hours) when that is
    larger: a closed day's expected energy is near zero. 10 %, the least share worth an alert
    (``materiality.min_ratio``). None: the hours' own size only."""
    model_day_floor_share: float = Field(default=0.05, ge=0, lt=1)
    """The least day bound, as a share of the expected consumption of the same 24 hours: a model that matched
    its reference days exactly (a constant base load, MAD 0) or kept under them (a negative median) would
    otherwise take a rounding of the counter for an excess beyond its uncertainty. 5 % is well inside the
    accuracy of any daily consumption model (ASHRAE Guideline 14 accepts a 25 % CV(RMSE) for daily models)."""
    model_water_open_hours: bool = False
    """Whether a water meter's open hours count for a model alert. They do not by default: what occupants
    draw while the building is open (a cleaning day, a canteen's busy week) is no fault, and a fault (a leak,
    a running cistern, a valve left open) draws while it is closed too; its open hours neither extend nor end
    an episode. An open hour with no closed hour in the day before (a building open around the clock, every day
    or on weekdays) is judged."""
    model_beyond_reference: float | None = Field(default=2.0, gt=1)
    """An hour whose 24-hour mean residual ratio is more than this many times the largest among the rows its forest
    was fitted on is flagged, whatever its score: a whole day further above the expected consumption, relative to
    it, than any day of the reference, by as much again. The forest cannot say it: its trees split a column between
    the values of their sample only, so its score saturates at the reference's extremes
    (:meth:`~anomalies.iforest.IsolationForestDetector.beyond`). Such an hour is not left out of the refits
    (:func:`_score_block`). None: the score alone."""
    model_min_duration: timedelta = timedelta(hours=6)
    """Flagged time before a model event opens: a model event needs persistence."""
    model_clear_after: timedelta = timedelta(hours=48)
    """Quiet time before a model event resolves: a fault that shows by day only (heating through the
    opening hours of a holiday, 30 % more for a week) stays one episode across its nights and across
    a day it hides in the noise; a model event that comes back within it is the same alert."""
    materiality: MaterialityConfig = Field(default_factory=MaterialityConfig)
    """When the excess of a consumption alert is worth an advisor's time (:class:`MaterialityConfig`)."""
    random_state: int = 0


@dataclass(frozen=True, slots=True, eq=False)
class ExpectedSeries:
    """What one building × usage consumed, hour by hour, against what it was expected to.

    What :func:`detect` hands its ``on_expected`` hook, so that a caller can
    write expected against observed (:mod:`anomalies.expected_sink`).

    Attributes:
        building: building id.
        usage: the usage.
        unit: ``kWh`` or ``m3`` (water).
        times_s: start of each hour, UTC seconds since the epoch.
        observed: per hour, the consumption (``nan`` unknown or blanked by a quality rule).
        expected: per hour, the expected consumption (``nan`` where there is no model yet).
    """

    building: str
    usage: Usage
    unit: str
    times_s: FloatArray
    observed: FloatArray
    expected: FloatArray

    def between(self, start: datetime | None, end: datetime | None) -> ExpectedSeries:
        """The hours starting in ``[start, end)``; either bound may be None (open).

        >>> from datetime import UTC
        >>> from inventory import Usage
        >>> s = ExpectedSeries("mairie", Usage.HEATING, "kWh", np.array([0.0, 3600.0, 7200.0]),
        ...                    np.array([1.0, 2.0, 3.0]), np.array([1.0, np.nan, 2.0]))
        >>> s.between(datetime.fromtimestamp(3600, UTC), None).times_s.tolist()
        [3600.0, 7200.0]
        """
        keep = np.ones(self.times_s.size, dtype=np.bool_)
        if start is not None:
            keep &= self.times_s >= start.timestamp()
        if end is not None:
            keep &= self.times_s < end.timestamp()
        return ExpectedSeries(self.building, self.usage, self.unit, self.times_s[keep], self.observed[keep],
                              self.expected[keep])


@dataclass(frozen=True, slots=True, eq=False)
class ModelRun:
    """The walk-forward expected consumption and forest scores of one building × usage.

    Attributes:
        building: building id.
        usage: the usage.
        scores: per hour, the forest's score (``nan`` before the first fit or where a feature is missing).
        flagged: per hour, 1 flagged, 0 not, ``nan`` not scored.
        expected: per hour, the expected consumption (:mod:`anomalies.expected`), ``nan`` before its first fit
            and where the weather station was silent for the 24 hours (those hours' value is in ``bounded``).
        fits: how many times the forest was fitted.
        last: the last fitted detector, if any.
        last_threshold: its thresholder.
        residual: per hour, observed − expected (the bounded expected value where the weather is unknown).
        ratio: per hour, the residual ratio (the ``residual_ratio`` feature).
        expected_fits: how many times the expected-consumption model was fitted.
        beyond_fit: per hour, its weather is colder than the expected model was fitted on, or its type,
            weekday, clock hour and open state were seen on too few days
            (:meth:`~anomalies.expected.ExpectedConsumption.beyond_fit`); no model alert there.
        day_residual: per hour, the residual summed over the 24 hours up to it
            (:func:`~anomalies.expected.trailing_day_residual`).
        day_bound: per hour, how large ``day_residual`` may be within the expected model's own
            uncertainty (:func:`~anomalies.expected.day_residual_bound`, causal; ``nan``: not known yet).
    """

    building: str
    usage: Usage
    scores: FloatArray
    flagged: FloatArray
    expected: FloatArray
    fits: int
    last: IsolationForestDetector | None
    last_threshold: QuantileThreshold | None
    residual: FloatArray
    ratio: FloatArray
    expected_fits: int
    beyond_fit: BoolArray | None = None
    day_residual: FloatArray | None = None
    day_bound: FloatArray | None = None
    observed: FloatArray | None = None
    """What the model judged (:func:`judged_series`): the usage's consumption, or the whole of a meter whose
    split between this usage and another is learnt (``None``: the usage's consumption)."""
    bounded: FloatArray | None = None
    """Per hour whose 24 hours the weather station was silent for, the expected consumption at a bounded weather
    (:meth:`~anomalies.expected.ExpectedConsumption.predict_bounded`; ``nan`` elsewhere): for an excess only, it is
    not in ``expected`` (Grafana, reports) but it is in ``residual``, ``ratio`` and ``day_residual``."""
    weather_bound_c: FloatArray | None = None
    """Per such hour, the outdoor temperature it was expected at (:func:`~anomalies.expected.unknown_weather`)."""
    silent_h: FloatArray | None = None
    """Per such hour, how long the station had been silent."""


def judged_series(hours: BuildingHours, usage: Usage) -> UsageSeries:
    """The consumption the expected model and the forest of a usage judge.

    A usage's own consumption, except where it comes from a meter that also
    serves another usage with a *learnt* split (one gas meter for heating and
    hot water, :func:`~anomalies.features.usage_shares`): that meter counts
    whole. The learnt split is itself a weather model, refitted as days go by
    (before it has seen enough weather, everything goes to the meter's own
    usage), so a model of its heating share models a model's output, and its
    residual holds the split's errors and changes of mind as much as the
    building's. The meter measures the sum; the expected model has the
    weather-dependent and the weather-independent terms to describe it. A
    declared split is a fixed share of the meter, and stays as it is.

    Args:
        hours: the building's hours.
        usage: a usage with a consumption series in ``hours.usages``.

    Returns:
        The series judged (``nan`` where the usage's own series is unknown).
    """
    series = hours.usages[usage]
    points = {p.id: p for p in hours.building.points if p.id in series.points}
    learnt = [p for p in points.values() if p.serves and p.split is None and p.usage is usage]
    if not learnt or usage is Usage.WATER:
        return series
    total = np.zeros(hours.frame.hours)
    for pid in series.points:
        point = points[pid]
        values = hours.frame.consumption[pid] * energy_per_unit(point)
        if point.split is not None:
            values = values * point.split[usage]
        elif point.serves and point.usage is not usage:
            return series  # a share of another usage's meter, learnt: not judged on a whole meter
        total = total + values
    total = np.where(np.isfinite(series.values), total, np.nan)
    return UsageSeries(usage=usage, unit=series.unit, energy=series.energy, points=series.points, values=total)


def refit_phase(building_id: str) -> int:
    """A number, 0 to 671, of a building for its scheduled work: stable across runs, spread over the buildings.

    With ``DetectConfig.refit_spread`` the expected model is refitted at the hours of the week
    ``refit_phase % 168`` (UTC, after the first fit, :func:`run_models`); the history the models are computed
    on always moves forward at the building's own hour of the 28-day roll (``refit_phase`` hours,
    :mod:`anomalies.incremental`): a live pass over 3,000 buildings refits about 3,000 / 168 of them, and
    moves the history of about 3,000 / 672 of them forward, not all of them in one pass.

    >>> refit_phase("mairie"), refit_phase("mairie") == refit_phase("ecole-jaures")
    (430, False)
    """
    return int(hashlib.sha256(building_id.encode()).hexdigest()[:8], 16) % 672


@dataclass(frozen=True, slots=True, eq=False)
class ModelProgress:
    """Where :func:`run_models` stands on one building × usage: what a later run on more hours resumes from.

    The walk forward is causal (each hour's expected value, features, score and flag depend only on the
    hours before it and on the models fitted before it), so a run on the same hours and more gives the
    same values for the first ``hours``: a resumed run keeps them and computes only the new hours,
    refitting only at the refit hours among them (the live pass: one new hour, a refit once a week).

    Attributes:
        hours: hours computed (rows ``[0, hours)`` of the frame the run was on).
        expected: per hour, the expected consumption, at the bounded weather where the station was silent for
            the 24 hours (:meth:`~anomalies.expected.ExpectedConsumption.predict_bounded`).
        scores: per hour, the forest's score.
        flagged: per hour, 1 flagged, 0 not, ``nan`` not scored.
        model_flag: per hour, flagged by the forest.
        beyond: per hour, beyond the expected model's fit.
        rows: per hour, the feature row.
        fit: the expected model's fits (:meth:`~anomalies.expected.ExpectedConsumption.snapshot`).
        forest: the forest in use, if any.
        threshold: its thresholder.
        forest_fits: how many times the forest was fitted.
        last_fit_at: the hour of its last fit.
        in_sample: the hours before it have in-sample expected values.
        day_bound: the bounds of the trailing-24-hour residual it computed (:class:`DayBoundMemo`), held in
            memory only (not in the state file: the first run after a load computes them all).
    """

    hours: int
    expected: FloatArray
    scores: FloatArray
    flagged: FloatArray
    model_flag: BoolArray
    beyond: BoolArray
    rows: FloatArray
    fit: ExpectedFit
    forest: IsolationForestDetector | None
    threshold: QuantileThreshold | None
    forest_fits: int
    last_fit_at: int
    in_sample: int
    day_bound: DayBoundMemo | None = None
    moved_here: bool = False
    """Made by :meth:`moved` for the run on the rolled history (never saved: that run replaces it)."""

    def moved(self, hours: int) -> ModelProgress:
        """This progress on a frame that starts ``hours`` later: a history rolled forward (:mod:`anomalies.incremental`).

        The first ``hours`` rows are dropped and the hour indices moved; the fits, the forest and its threshold
        are kept as they are: the models carry on where they stood, and their later refits see the readings of
        the new frame only. The day bounds are computed again over the new frame (their digest is of its rows).
        """
        return ModelProgress(
            self.hours - hours, self.expected[hours:], self.scores[hours:], self.flagged[hours:],
            self.model_flag[hours:], self.beyond[hours:], self.rows[hours:], self.fit.moved(hours), self.forest,
            self.threshold, self.forest_fits, self.last_fit_at - hours, max(0, self.in_sample - hours), None, True,
        )


@dataclass(frozen=True, slots=True, eq=False)
class DayBoundMemo:
    """The bounds :func:`~anomalies.expected.day_residual_bound` gave over the first ``hours`` hours of a frame.

    The bound looks back only (at most ``model_day_history`` days), so a later run on the same frame start
    whose inputs over those hours are the same (same digest: residuals, references, day types, floors) keeps
    them and computes the new hours only: an hourly pass costs one hour's bound, not 400 days' medians.

    Attributes:
        hours: hours covered.
        digest: digest of the inputs over those hours (:func:`_bound_digest`).
        values: the bounds.
    """

    hours: int
    digest: bytes
    values: FloatArray


def _bound_digest(hours: int, *inputs: npt.NDArray[Any] | None) -> bytes:
    """A digest of the first ``hours`` values of each input (``None``: absent)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(hours.to_bytes(8, "little"))
    for values in inputs:
        h.update(b"-" if values is None else np.ascontiguousarray(values[:hours]).tobytes())
    return h.digest()


def run_models(
    hours: BuildingHours, excluded: BoolArray, config: DetectConfig, progress: dict[Usage, ModelProgress] | None = None,
) -> list[ModelRun]:
    """Walk-forward expected consumption and isolation forest for every usage of a building.

    Every ``config.expected.refit_every`` (from ``config.expected.min_history``
    on) the expected model is refitted on the earlier hours, and every
    ``config.refit_every`` the forest, both leaving out the hours a rule or the
    forest flagged (only those: the rest of an open alert's period still
    counts). The forest's threshold is calibrated on a share of the reference
    hours held back from its fit; they count as covered.

    Args:
        hours: the building's hours.
        excluded: hours any rule flagged; never used as reference.
        config: detection settings.
        progress: per usage, where an earlier run on the first hours of the same frame stopped
            (:class:`ModelProgress`): resumed from there, and updated to where this run stops. A progress
            of more hours than the frame is ignored.

    Returns:
        One run per usage with a consumption series.
    """
    runs: list[ModelRun] = []
    n = hours.frame.hours
    forest_every = max(1, int(config.refit_every / _HOUR))
    # With refit_spread, the building's own hour of the week (UTC) for its weekly refits, whatever hour the frame
    # starts at; without, the grid of the first fit.
    step = max(1, int(config.expected.refit_every / _HOUR))
    phase = ((refit_phase(hours.building.id) - int(hours.frame.start_s // 3600)) % step if config.refit_spread
             else None)
    at_hours = refit_hours(n, config.expected, phase)
    for usage in hours.usages:
        series = judged_series(hours, usage)
        judged = hours if series is hours.usages[usage] else replace(hours, usages={**hours.usages, usage: series})
        y = series.values
        # Day types from the whole local day's schedule: an hour's expected value does not depend on where the frame ends.
        model = ExpectedConsumption(y, hours.outdoor_c, hours.day_open.astype(np.float64), hours.school_holiday, hours.local_hour,
                                    hours.local_day, config.expected, open_hour=hours.open_frac > 0.0)
        # The hours whose 24 hours the weather station was silent for are expected at a bounded weather, for an
        # excess only (issue 11: a workshop's +35 % week, 4 days of it silent): the forest scores them on rows
        # of their own (_bounded_rows) but no model is fitted on them, no later hour's features read them and
        # their residuals are no reference.
        silent = np.isfinite(model.weather_bound_c)
        expected = np.full(n, np.nan)  # with the bounded values
        scores = np.full(n, np.nan)
        flagged = np.full(n, np.nan)
        model_flag = np.zeros(n, dtype=np.bool_)
        beyond = np.ones(n, dtype=np.bool_)
        rows = np.full((n, len(FEATURE_NAMES)), np.nan)
        fits = 0
        last: IsolationForestDetector | None = None
        last_th: QuantileThreshold | None = None
        last_fit_at = -forest_every
        in_sample = n  # hours before it have in-sample expected values (the first fit's own days)
        done = 0  # rows before it are built
        resumed = progress.get(usage) if progress is not None else None
        if resumed is not None and resumed.hours <= n:
            done = resumed.hours
            expected[:done], scores[:done], flagged[:done] = resumed.expected, resumed.scores, resumed.flagged
            model_flag[:done], beyond[:done], rows[:done] = resumed.model_flag, resumed.beyond, resumed.rows
            model.restore(resumed.fit)
            fits, last, last_th, last_fit_at = resumed.forest_fits, resumed.forest, resumed.threshold, resumed.last_fit_at
            in_sample = n if resumed.in_sample >= resumed.hours else resumed.in_sample
            if resumed.moved_here:
                # The history rolled. Hours of a weather-station silence that began before the new start have
                # no bound in this history (no temperature before them): the bounded values the longer history
                # gave them are unknown here, as a history starting there would hold them, not plain values.
                lost = (np.isfinite(expected[:done]) & ~silent[:done]
                        & ~np.isfinite(model.rows[:done]).any(axis=1))
                if lost.any():
                    expected[:done][lost], rows[:done][lost] = np.nan, np.nan
                    scores[:done][lost], flagged[:done][lost], model_flag[:done][lost] = np.nan, np.nan, False
        start = done  # hours before it were computed by an earlier run
        for k, at in enumerate(at_hours):
            stop = at_hours[k + 1] if k + 1 < len(at_hours) else n
            if at < start:
                # A refit an earlier run did: the new hours of its block only, by the models it left.
                if stop <= start or not model.fitted:
                    continue
                expected[start:stop] = model.predict_bounded(start, stop)
                beyond[start:stop] = model.beyond_fit(start, stop, config.model_fit_margin_c)
                rows[start:stop] = build_features(judged, usage, _without(expected[:stop], silent[:stop]),
                                                  config.features, start=start)
                _bounded_rows(judged, usage, expected[:stop], silent, model.weather_bound_c, rows, start, config)
                done = stop
                if last is not None and last_th is not None:
                    _score_block(last, last_th, rows, start, stop, scores, flagged, model_flag,
                                 _beyond_reference(config, last_fit_at, in_sample),
                                 unseen_day=_day_beyond_fit(beyond, start, stop))
                    model_flag[start:stop] &= ~silent[start:stop]  # a bounded hour's flag is no evidence for a reference
                continue
            usual = schedule_recurrence(model_flag[:at], model.type_idx[:at], hours.local_hour[:at],
                                        hours.local_day[:at])
            skip = excluded[:at] | (model_flag[:at] & ~usual)
            first = not model.fitted
            if model.refit(at, skip) and first:
                expected[:at] = model.predict_bounded(0, at)
                in_sample = at
            if not model.fitted:
                continue
            expected[at:stop] = model.predict_bounded(at, stop)
            beyond[at:stop] = model.beyond_fit(at, stop, config.model_fit_margin_c)
            # Every feature looks back only: the rows up to ``stop`` are final once the expected values are,
            # and the earlier rows are those of the earlier blocks (the expected values before ``at`` stay).
            first_row = 0 if first else done
            rows[first_row:stop] = build_features(judged, usage, _without(expected[:stop], silent[:stop]),
                                                  config.features, start=first_row)
            _bounded_rows(judged, usage, expected[:stop], silent, model.weather_bound_c, rows, first_row, config)
            done = stop
            if last is None or at - last_fit_at >= forest_every:
                # Seeded by the refit hour, not the series length: chunked runs hold out the same hours.
                held_out = np.random.default_rng([config.random_state, at]).random(at) < config.calibration_share
                detector = IsolationForestDetector(config.iforest, random_state=config.random_state)
                try:
                    # The bounded hours are gaps to the forest's fit, as when they had no expected value.
                    fitted = np.where(silent[:at, None], np.nan, rows[:at]) if silent[:at].any() else rows[:at]
                    detector.fit(fitted, exclude=skip | held_out)
                    calibration = detector.score_many(rows[:at][held_out & ~skip & ~silent[:at]])
                    threshold = QuantileThreshold(q=config.threshold_q, min_scores=_MIN_CALIBRATION).calibrate(calibration)
                except InsufficientData as exc:
                    logger.debug("no forest for %s %s at hour %d: %s", hours.building.id, usage.value, at, exc.reasons)
                else:
                    fits += 1
                    last, last_th, last_fit_at = detector, threshold, at
            if last is None or last_th is None:
                continue
            _score_block(last, last_th, rows, at, stop, scores, flagged, model_flag,
                         _beyond_reference(config, last_fit_at, in_sample), unseen_day=_day_beyond_fit(beyond, at, stop))
            model_flag[at:stop] &= ~silent[at:stop]
        residual = y - expected
        ratio = rows[:, _RATIO_COLUMN]
        day_residual = trailing_day_residual(residual)
        # The bound is learnt from the residuals without the bounded values (a bounded value measures no
        # uncertainty): its samples are those the hours had before the bounds existed.
        known_day_residual = trailing_day_residual(y - _without(expected, silent)) if silent.any() else day_residual
        day_bound = np.full(n, np.nan)
        bound_memo: DayBoundMemo | None = None
        if config.model_day_spread is not None:
            # The spread is learnt from every day no rule flagged, the forest's flagged days included: left out,
            # the busiest ordinary days (a crèche's full days, an event hall's weddings) would leave a spread
            # learnt on the calm days only. Median and MAD are robust to the minority of days a fault takes.
            reference = ~excluded
            reference[:in_sample] = False  # a model's errors on the days it was fitted on are optimistic
            # The least bound: a share of the expected energy of the same 24 hours.
            floor = config.model_day_floor_share * trailing_day_residual(np.maximum(expected, 0.0))
            inputs = (known_day_residual, reference, model.type_idx, floor)
            kept = resumed.day_bound if resumed is not None else None
            # The bounds of the hours an earlier run computed stay when their inputs did (the bound looks back only).
            since = kept.hours if kept is not None and kept.hours <= n and kept.digest == _bound_digest(
                kept.hours, *inputs) else 0
            day_bound = day_residual_bound(known_day_residual, reference, model.type_idx,
                                           days=max(1, round(config.model_day_history / timedelta(days=1))),
                                           spread=config.model_day_spread, floor=floor, start=since)
            if kept is not None and since:
                day_bound[:since] = kept.values[:since]
            bound_memo = DayBoundMemo(n, _bound_digest(n, *inputs), day_bound.copy())
        if progress is not None:
            progress[usage] = ModelProgress(n, expected, scores, flagged, model_flag, beyond, rows, model.snapshot(),
                                            last, last_th, fits, last_fit_at, in_sample, bound_memo)
        runs.append(ModelRun(hours.building.id, usage, scores, flagged, np.where(silent, np.nan, expected), fits, last,
                             last_th, residual, ratio, model.fits, beyond, day_residual, day_bound, y,
                             np.where(silent, expected, np.nan), model.weather_bound_c, model.silent_h))
    return runs


def _beyond_reference(config: DetectConfig, fit_at: int, in_sample: int) -> float | None:
    """``config.model_beyond_reference`` for a forest fitted at hour ``fit_at``; ``None`` when all its rows were in-sample.

    The expected values of the hours before ``in_sample`` come from the model fitted on those very hours: their
    ratios are its fit's residuals, optimistic (as for the day bound, :func:`day_residual_bound`'s reference). A
    forest fitted on them alone (a building's first, at its first expected fit) knows no out-of-sample day, and
    twice its largest day is within the ordinary error of the weeks after (a building whose consumption the
    model follows poorly was alerted through its third week). Its score alone judges until the next fit.
    """
    return config.model_beyond_reference if fit_at > in_sample else None


def _day_beyond_fit(beyond_fit: BoolArray, start: int, stop: int) -> BoolArray:
    """Per hour ``start`` to ``stop``: one of the 24 hours up to it (those of ``residual_ratio_24h``) is beyond the fit."""
    lo = max(0, start - (_DAY_H - 1))
    counts = np.convolve(beyond_fit[lo:stop].astype(np.float64), np.ones(_DAY_H))[: stop - lo]
    result: BoolArray = counts[start - lo :] > 0.0
    return result


def _score_block(forest: IsolationForestDetector, threshold: QuantileThreshold, rows: FloatArray, start: int,
                 stop: int, scores: FloatArray, flagged: FloatArray, model_flag: BoolArray,
                 beyond_reference: float | None, *, unseen_day: BoolArray) -> None:
    """Score rows ``start`` to ``stop`` and flag them by the threshold, in place.

    A row whose day is beyond ``beyond_reference`` times the reference's largest excess
    (``DetectConfig.model_beyond_reference``) is flagged too
    (``flagged``, what alerts are made of): the forest's score saturates at its reference's extremes, and a
    building's calm reference (the hours a rule or the forest flagged are left out of it) makes a high threshold
    of its busiest hours, which a fault far above every reference day did not pass (issue 11: an event hall
    lit through three closed days). Such a row is not left out of the refits (``model_flag``: the forest's own
    flags only): a lasting change of use (a new tenant, longer hours) is beyond the reference every day, never
    recurs as a schedule does (:func:`schedule_recurrence`), and left out it would never become the reference,
    an alert for ever; fitted on, it can become the reference once the refits have taken it in (not shown: a
    Saturday tenant from April, tried in review, had every summer Saturday alerted, with this setting or without).

    A row whose 24 hours hold an hour beyond the expected model's fit (``unseen_day``,
    :meth:`~anomalies.expected.ExpectedConsumption.beyond_fit`: a day type it never learnt, a colder day than
    it was fitted on) is judged by its score alone: that hour's ratio measures what the model does not know,
    not the building, and the day's mean carries it (a school metered since its summer holidays: the
    Saturday after the first open week, an ordinary closed day, read Friday's open hours, ratios of 5 to 8
    against a closed day's expected value, and was alerted). The hour itself is no model alert anyway.
    """
    block = forest.score_many(rows[start:stop])
    scores[start:stop] = block
    known = np.isfinite(block)
    hit = threshold.flag_many(block)
    beyond = hit if beyond_reference is None else known & ~unseen_day & forest.beyond(
        rows[start:stop], _DAY_RATIO_COLUMN, beyond_reference)
    flagged[start:stop][known] = (hit | beyond)[known]
    model_flag[start:stop][known] = hit[known]


def _without(values: FloatArray, hours: BoolArray) -> FloatArray:
    """``values`` with ``nan`` at ``hours`` (the same array when there is none)."""
    return np.where(hours, np.nan, values) if hours.any() else values


def _bounded_rows(hours: BuildingHours, usage: Usage, expected: FloatArray, silent: BoolArray, bound_c: FloatArray,
                  rows: FloatArray, start: int, config: DetectConfig) -> None:
    """The feature rows of the hours from ``start`` the weather station was silent for, in place.

    Their residuals are against the expected value at the bounded weather (``expected`` holds it there) and
    their outdoor temperature is that weather: the forest judges them as if it had been the weather. The
    rows of the other hours are built without the bounded values, so that none of them reads one.
    """
    at = np.flatnonzero(silent[start : expected.size]) + start
    if at.size == 0:
        return
    first = int(at[0])
    block = build_features(hours, usage, expected, config.features, start=first)
    block[:, _OUTDOOR_COLUMN] = bound_c[first : expected.size]
    rows[at] = block[at - first]


def schedule_recurrence(
    flagged: BoolArray, day_type: npt.NDArray[np.int64], local_hour: npt.NDArray[np.int64],
    local_day: npt.NDArray[np.int64], occurrences: int = 3,
    min_occurrences: int = 2,
) -> BoolArray:
    """Flagged hours that repeat on the building's other days of the same schedule: usual, not a fault.

    A day's schedule is its day type (open, closed, school holiday: what the
    expected model splits on) and its weekday. An hour is recurrent when the
    same local hour was flagged on at least ``min_occurrences`` of the
    ``occurrences`` days of the same schedule before it and the
    ``occurrences`` after it (those the history given holds: at a refit, the
    hours before it), while the same hour of the 3 days before and the 3
    days after it was mostly not (fewer than 3 of them; a leak or a drift is
    flagged every day). For a building open every week the days of its
    schedule are the same weekday of the weeks around (a cultural centre's
    Saturday shows). For a hall opened by its bookings they are its other
    booked days of that weekday, weeks apart: a count over calendar weeks
    never saw a pattern there, so the booked days the forest flagged stayed
    out of the references for ever, and the expected model, never fitted on
    one, kept expecting another day's profile. Once the pattern is seen, its
    first occurrences join the references too. Uses only the hours given:
    called at a refit with the hours before it, it looks back only.

    Args:
        flagged: per hour, flagged by the forest.
        day_type: per hour, the index of its local day's type.
        local_hour: per hour, the local wall-clock hour, 0-23.
        local_day: per hour, its local date ordinal (ascending).
        occurrences: how many days of the same schedule on each side are looked at.
        min_occurrences: how many of them must have the hour flagged.

    Returns:
        Per hour, flagged and recurrent.

    >>> day = np.repeat(np.arange(700_000, 700_056), 24)
    >>> hour = np.tile(np.arange(24), 56)
    >>> booked = np.isin(day - 700_000, [5, 26, 47, 54])  # four booked days of one weekday, weeks apart
    >>> f = booked & (hour == 20)
    >>> (np.nonzero(schedule_recurrence(f, booked.astype(np.int64), hour, day))[0] // 24).tolist()
    [5, 26, 47, 54]
    >>> (np.nonzero(schedule_recurrence(f & (day < 700_030), booked.astype(np.int64), hour, day))[0] // 24).tolist()
    []
    """
    n = flagged.size
    result: BoolArray = np.zeros(n, dtype=np.bool_)
    hits = np.flatnonzero(flagged)
    if hits.size == 0:
        return result
    # Counted for the flagged hours only (the others are never recurrent): a refit's few dozen, not every hour
    # of the history against every day of its schedule (issue 11, speed: 0.67 -> 0.21 ms a call at 9 000 hours).
    days, day_of_hour = np.unique(local_day, return_inverse=True)
    table = np.zeros((days.size, 24), dtype=np.int64)
    table[day_of_hour[hits], local_hour[hits]] = 1  # a 25-hour day's repeated hour counts once
    types = np.zeros(days.size, dtype=np.int64)
    types[day_of_hour] = day_type
    key = types * 7 + (days - 1) % 7
    # The days of one schedule, in date order, one after the other: a day's neighbours of the same schedule
    # are the positions around its own, as long as they hold the same key.
    order = np.argsort(key, kind="stable")
    position = np.empty(days.size, dtype=np.int64)
    position[order] = np.arange(days.size)
    hit_day, hit_hour = day_of_hour[hits], local_hour[hits]
    around = np.zeros(hits.size, dtype=np.int64)
    for step in (*range(1, occurrences + 1), *range(-occurrences, 0)):
        at = position[hit_day] + step
        inside = (at >= 0) & (at < days.size)
        other = order[np.where(inside, at, 0)]
        around += np.where(inside & (key[other] == key[hit_day]), table[other, hit_hour], 0)
    days_around = np.zeros(hits.size, dtype=np.int64)
    for k in range(1, 4):
        for other_hour in (hits - 24 * k, hits + 24 * k):
            inside = (other_hour >= 0) & (other_hour < n)
            days_around += inside & flagged[np.where(inside, other_hour, 0)]
    result[hits] = (around >= min_occurrences) & (days_around < 3)
    return result


_OPEN_AROUND_H = 24
"""Hours before a water meter's open hour without a closed one after which it counts: open around the clock."""


def _model_findings(runs: Sequence[ModelRun], hours: BuildingHours, config: DetectConfig) -> list[Finding]:
    """A forest's hours become an event's hours when flagged with consumption above the expected one.

    Hours whose 24 hours the weather station was silent for are judged the same way against their expected
    value at the bounded weather (:attr:`ModelRun.bounded`). An excess only, as every model finding: a deficit
    against the least telling weather of the weeks before proves nothing.
    """
    findings = []
    closed = (hours.open_frac == 0.0).astype(np.float64)
    for run in runs:
        series = hours.usages[run.usage]
        observed = series.values if run.observed is None else run.observed
        silent = np.isfinite(run.bounded) if run.bounded is not None else np.zeros(run.expected.size, dtype=np.bool_)
        expected = np.where(silent, run.bounded, run.expected) if run.bounded is not None else run.expected
        typical = typical_consumption(observed, config.materiality.min_history)
        material = ~(run.residual < config.model_min_typical_share * typical)  # unknown typical: the ratio alone
        sized = (run.ratio >= config.model_min_ratio) & material
        if config.model_day_spread is not None and run.day_residual is not None and run.day_bound is not None:
            if config.model_day_min_share is not None:
                # An excess spread over the days is judged by the days' size (known bounds only): each of its
                # hours is within an hour's noise, their sums are not.
                day_expected = trailing_day_residual(np.maximum(expected, 0.0))
                # The days' excess is a share of their expected energy and of the usage's typical day too: a closed
                # day's expected energy is near zero, and any use of it a large share (the hours' test is against
                # a typical hour likewise, ``model_min_typical_share``).
                least = config.model_day_min_share * np.maximum(day_expected, 24.0 * np.nan_to_num(typical))
                with np.errstate(invalid="ignore"):
                    day_out = (run.day_residual > run.day_bound) & (run.day_residual >= least)
                day_before = np.zeros_like(day_out)
                day_before[24:] = day_out[:-24]
                sized |= day_out & day_before
            # An unknown bound (fewer than a week of out-of-sample days of any type yet): not judged.
            sized &= ~(run.day_residual <= run.day_bound)
        above = (run.residual > 0) & sized
        if run.beyond_fit is not None:
            above &= ~run.beyond_fit
        state = np.where(np.isfinite(run.flagged), ((run.flagged == 1.0) & above).astype(np.float64), np.nan)
        if run.usage is Usage.WATER and not config.model_water_open_hours:
            # Water drawn while the building is open is its occupants' (a cleaning day, a canteen's busy
            # week): no model tells that use from a fault hour by hour. A fault (a leak, a running cistern,
            # a valve left open) draws while it is closed too: only its closed hours count, and the open
            # hours neither extend nor end an episode. A building open around the clock (a care home, a
            # fire station; a workshop on shifts from Monday to Friday: no closed hour in the day before) has
            # no such hours: those count. Over the week, the workshop's leak of a Monday waited for Saturday.
            closes = np.convolve(closed, np.ones(_OPEN_AROUND_H))[: state.size] > 0.0
            state[(hours.open_frac > 0.0) & closes] = np.nan
        excess = np.where(state == 1.0, np.maximum(0.0, run.residual), 0.0)
        facts = {"closed_share": closed, "outdoor_c": hours.outdoor_c}
        if silent.any() and run.weather_bound_c is not None and run.silent_h is not None:
            facts |= {"weather_bound_c": run.weather_bound_c, "weather_unknown_h": run.silent_h}
        findings.append(
            Finding(
                qualified_name=f"anomalies.iforest.{run.usage.value}", kind=EventKind.UNUSUAL_CONSUMPTION,
                building=run.building, usage=run.usage, state=state, observed=observed, expected=expected,
                excess=np.nan_to_num(excess), unit=series.unit, excess_unit=series.unit, energy=series.energy,
                facts=facts, min_duration=config.model_min_duration, clear_after=config.model_clear_after,
            )
        )
    return findings


@dataclass(slots=True)
class AlertMemory:
    """What detection remembers of one alert key beyond its lifecycle track, between runs.

    Attributes:
        opened: when its current alert opened (the hour of the transition), ``None`` while pending.
        suppressed: a model alert that a rule alert of its building already explains: never reported.
    """

    opened: datetime | None = None
    suppressed: bool = False


@dataclass(frozen=True, slots=True)
class RuleSpan:
    """A rule alert of a building, as model alerts need it to be suppressed (see :func:`debounce`).

    Attributes:
        building: building id.
        start: its first active hour.
        last_active: end of its last active hour.
        opened: when it opened.
        resolved: when it resolved, ``None`` while open.
        usage: the usage of the rule alert: it explains model alerts of that usage only.
    """

    building: str
    start: datetime
    last_active: datetime
    opened: datetime
    resolved: datetime | None = None
    usage: str = ""


def _key(finding: Finding) -> AlertKey:
    return (finding.building, finding.usage.value, finding.kind.value, finding.point or "")


def debounce(
    inventory: Inventory,
    building: Building,
    frame: HourlyFrame,
    findings: Sequence[Finding],
    *,
    first_hour: int,
    life: AlertLifecycle,
    memory: dict[AlertKey, AlertMemory],
    spans: list[RuleSpan],
    scores: dict[Usage, FloatArray] | None = None,
    typical: dict[Usage, FloatArray] | None = None,
    materiality: MaterialityConfig | None = None,
    flagged: dict[Usage, FloatArray] | None = None,
) -> list[AnomalyEvent]:
    """Feed hours ``first_hour`` … of a building's findings to the alert lifecycle; return what changed.

    This is the one place findings become events: :func:`events_from_findings`
    (a single pass) and :func:`anomalies.incremental.advance` (run after run,
    ``life``, ``memory`` and ``spans`` persisted) both call it. Only the hours
    from ``first_hour`` on are observed; earlier hours of the findings serve
    the events' figures (observed, expected, excess, chart).

    Model findings (``unusual_consumption``) must come after the rule
    findings: a model alert that opens while a rule alert of the building and
    usage, reported by then, was active during its episode or in the two days
    before is suppressed for its whole life (the rule explains it better),
    which depends on earlier hours only. While a rule of the building and
    usage is still building evidence (active, pending or open, in the last
    :data:`_DEFER_TO_RULE_H` hours), a model alert does not open: it waits
    for the rule, which then explains it, or opens once the rule is quiet.

    Args:
        inventory: tariffs and timezone.
        building: the building (its mute windows apply).
        frame: the hourly grid of the findings.
        findings: the building's findings, rules first.
        first_hour: index of the first hour to observe.
        life: the lifecycle, with the tracks of earlier runs.
        memory: per key, the opening time and suppression of its alert (updated).
        spans: the building's rule alerts, for suppression (updated).
        scores: per usage, model scores used as the events' score (1.0 without).
        typical: per usage, its typical hourly consumption as known at each hour
            (:func:`typical_consumption`), for materiality.
        materiality: hold consumption alerts pending until material (``None``: never).
        flagged: per usage, the hours its forest flagged above expected (1), did not (0) or did not score
            (``nan``): the witness a :data:`CORROBORATED_KINDS` alert waits for (:func:`_witness`).

    Returns:
        One event per alert that opened, was extended or resolved in these hours,
        in its latest state; an alert still open reports ``open`` or ``ongoing``.
    """
    events: list[AnomalyEvent] = []
    for finding in findings:
        key = _key(finding)
        life.per_kind[key[2]] = LifecycleConfig(min_duration=finding.min_duration, clear_after=finding.clear_after,
                                                forget_pending_after=finding.forget_pending_after)
        is_model = finding.kind is EventKind.UNUSUAL_CONSUMPTION
        known = np.flatnonzero(np.isfinite(finding.state[first_hour:])) + first_hour
        if known.size == 0:
            continue
        active_mask = finding.active[known]
        actives = known[active_mask]
        if actives.size == 0 and not life.tracking(key):
            continue
        before = life.track(key)
        mem = memory.setdefault(key, AlertMemory())
        clear_h = max(1, math.ceil(finding.clear_after / _HOUR))
        gate = _materiality_gate(finding, frame, typical, materiality)
        if is_model:
            gate = _both(gate, _defer_to_rule_gate(finding, frame, findings))
        elif finding.kind in CORROBORATED_KINDS and flagged is not None:
            gate = _both(gate, _corroborated_gate(frame, flagged.get(finding.usage)))
        changed = False
        i = 0
        while i < known.size:
            h = int(known[i])
            if not active_mask[i]:
                if not life.tracking(key):
                    # Nothing tracked: the next active hour is the next that can change anything.
                    j = int(np.searchsorted(actives, h))
                    if j >= actives.size:
                        break
                    i = int(np.searchsorted(known, actives[j]))
                    continue
                # Tracked and quiet: only an active hour or the end of the quiet time changes anything.
                track = life.track(key)
                assert track is not None  # noqa: S101 - tracking() said so
                quiet_end = int((track.last_active.timestamp() - frame.start_s) // 3600) + clear_h - 1
                j = int(np.searchsorted(actives, h))
                nxt_active = int(np.searchsorted(known, actives[j])) if j < actives.size else known.size
                nxt_quiet = int(np.searchsorted(known, max(h, quiet_end)))
                target = min(nxt_active, nxt_quiet)
                if target > i:
                    i = target
                    continue
            transition = life.observe(key, frame.time(h), bool(active_mask[i]), gate)
            i += 1
            if transition is None:
                continue
            if transition.state is AlertState.OPEN:
                mem.opened = transition.at
                mem.suppressed = is_model and _explained(spans, building.id, transition)
                changed = True
            elif transition.state is AlertState.RESOLVED and mem.opened is not None:
                if not is_model:
                    _record_span(spans, building.id, transition, mem.opened)
                if not mem.suppressed:
                    events.append(_event(inventory, building, frame, finding, transition.start, transition.last_active,
                                         mem.opened, AlertState.RESOLVED, scores, transition.at))
                mem.opened, mem.suppressed, changed = None, False, False
        track = life.track(key)
        if track is None or track.state is None or mem.opened is None:
            if track is None and mem.opened is None:
                memory.pop(key, None)
            continue
        if not is_model:
            _record_span(spans, building.id, Transition(key, track.state, track.last_active, track.first,
                                                        track.last_active), mem.opened, open_=True)
        extended = before is None or before.last_active != track.last_active or before.state is None
        if (changed or extended) and not mem.suppressed:
            events.append(_event(inventory, building, frame, finding, track.first, track.last_active, mem.opened,
                                 track.state, scores, None))
    return events


_DEFER_TO_RULE_H = 6
"""Hours a model alert waits after a rule finding of its building and usage was last active (pending or open)."""


def _defer_to_rule_gate(finding: Finding, frame: HourlyFrame, findings: Sequence[Finding]) -> Gate | None:
    """A model alert may not open while a rule of its usage is building evidence (see :func:`debounce`).

    A rule has the more specific explanation (heating at night, a leak…) but often needs a few hours
    more than the model to be sure: while any rule finding of the building and usage was active in the
    last :data:`_DEFER_TO_RULE_H` hours (up to the hour asked: causal), the model alert stays pending.
    If the rule then opens, :func:`_explained` silences the model alert; if it was a blip, the model
    alert opens at most :data:`_DEFER_TO_RULE_H` hours later.
    """
    rules = [f.active for f in findings
             if f.kind is not EventKind.UNUSUAL_CONSUMPTION and f.building == finding.building
             and f.usage is finding.usage]
    if not rules:
        return None
    any_active = np.logical_or.reduce(rules)
    # recent[h]: a rule of the usage was active at one of the hours h - _DEFER_TO_RULE_H + 1 … h.
    counts = np.concatenate([[0], np.cumsum(any_active)])
    upto = np.arange(1, any_active.size + 1)
    recent = counts[upto] > counts[np.maximum(upto - _DEFER_TO_RULE_H, 0)]

    def clear_of_rules(track: Track, at: datetime) -> bool:
        h = int((at.timestamp() - frame.start_s) // 3600)
        return not (0 <= h < recent.size and bool(recent[h]))

    return clear_of_rules


CORROBORATED_KINDS = frozenset({EventKind.CONSUMPTION_UNOCCUPIED})
"""Rule kinds whose alert opens only once the usage's forest flagged one of its hours too (when it scored them).

``consumption_unoccupied`` judges a main meter's closures against earlier closures, with no indoor
temperature to say whether the heating held a comfort setpoint: a cold weekend at a 14 °C setback, the
morning boost before a Monday, the first days of a holiday draw close to an occupied day and look like a
heater left on. The forest judges the same hours against the expected model (weather, day type, the
weekday's own hours): where it finds them ordinary, the rule alone is not enough to e-mail an advisor.
Until the forest has scored any hour of the episode (its first 14 days), the rule decides alone."""


def _witness(run: ModelRun) -> FloatArray:
    """The hours a forest flagged *above* expected (1), the others it scored (0), the unscored (``nan``).

    What corroborates an excess (:data:`CORROBORATED_KINDS`): an hour flagged below its expected value says
    the building drew less than usual, and an hour whose weather was unknown (expected at a bounded weather)
    is no evidence either (as for the references, :func:`run_models`).
    """
    silent = np.isfinite(run.bounded) if run.bounded is not None else np.zeros(run.flagged.size, dtype=np.bool_)
    above = (run.flagged == 1.0) & (run.residual > 0) & ~silent
    result: FloatArray = np.where(np.isfinite(run.flagged), above.astype(np.float64), np.nan)
    return result


def _corroborated_gate(frame: HourlyFrame, flagged: FloatArray | None) -> Gate | None:
    """A :data:`CORROBORATED_KINDS` alert may open once the forest flagged an hour of its episode so far.

    Causal: the hours from the alert's first active one up to the hour asked. An episode none of whose
    hours the forest scored (no forest yet, a usage without a model) opens on the rule alone.
    """
    if flagged is None:
        return None
    hits = np.concatenate([[0], np.cumsum(flagged == 1.0)])
    scored = np.concatenate([[0], np.cumsum(np.isfinite(flagged))])

    def corroborated(track: Track, at: datetime) -> bool:
        h = int((at.timestamp() - frame.start_s) // 3600)
        if not 0 <= h < flagged.size:
            return True
        a = min(h, max(0, int((track.first.timestamp() - frame.start_s) // 3600)))
        if scored[h + 1] == scored[a]:
            return True
        return bool(hits[h + 1] > hits[a])

    return corroborated


def _both(first: Gate | None, second: Gate | None) -> Gate | None:
    """A gate that allows only what both allow (``None``: no condition)."""
    if first is None or second is None:
        return first if second is None else second

    def both(track: Track, at: datetime) -> bool:
        return first(track, at) and second(track, at)

    return both


_RATIO_JUDGED_BY_RULE = frozenset({EventKind.BASELOAD_CREEP, EventKind.OVERHEATING})
"""Kinds whose rule judges the size of the anomaly itself (a rise against the base's noise, kelvins above a
limit): ``min_ratio`` does not apply, only the total."""


def _materiality_gate(
    finding: Finding,
    frame: HourlyFrame,
    typical: dict[Usage, FloatArray] | None,
    config: MaterialityConfig | None,
) -> Gate | None:
    """Whether a pending consumption alert is material at an hour (see :class:`MaterialityConfig`)."""
    if config is None or not config.enabled or finding.kind not in MATERIAL_KINDS or finding.unit != finding.excess_unit:
        return None
    active = finding.active
    excess = np.concatenate([[0.0], np.cumsum(np.where(active, np.nan_to_num(finding.excess), 0.0))])
    usual = np.concatenate([[0.0], np.cumsum(np.where(active, np.nan_to_num(np.maximum(finding.expected, 0.0)), 0.0))])
    level = None if typical is None else typical.get(finding.usage)
    # A base-load creep is a rise the rule has already judged against the base's own night-to-night noise
    # (a few % of a large base); what makes it worth an e-mail is then its total, every night.
    min_ratio = 0.0 if finding.kind in _RATIO_JUDGED_BY_RULE else config.min_ratio

    def material(track: Track, at: datetime) -> bool:
        assert config is not None  # noqa: S101 - checked above
        h = int((at.timestamp() - frame.start_s) // 3600)
        a = min(h, max(0, int((track.first.timestamp() - frame.start_s) // 3600)))
        amount = float(excess[h + 1] - excess[a])
        if amount <= 0.0 or amount < min_ratio * float(usual[h + 1] - usual[a]):
            return False
        if level is None or not math.isfinite(level[h]):
            return True
        active_h = track.active / _HOUR
        return amount >= float(level[h]) * max(config.min_rate * active_h, config.min_day_share * 24.0)

    return material


def typical_consumption(values: FloatArray, min_history: timedelta) -> FloatArray:
    """Typical hourly consumption as known at each hour: the mean of the known hours up to it.

    Args:
        values: hourly consumption (``nan`` unknown).
        min_history: known hours needed; before, ``nan``.

    Returns:
        Per hour, the mean of the known values up to and including it.

    >>> typical_consumption(np.array([1.0, np.nan, 3.0, 5.0]), timedelta(hours=2)).tolist()
    [nan, nan, 2.0, 3.0]
    """
    known = np.isfinite(values)
    count = np.cumsum(known)
    total = np.cumsum(np.where(known, values, 0.0))
    result: FloatArray = np.where(count >= min_history / _HOUR, total / np.maximum(count, 1), np.nan)
    return result


_EXPLAINS_WITHIN = timedelta(hours=48)
"""A rule alert explains a model alert whose episode starts at most this long after the rule's last active hour."""


def _explained(spans: Sequence[RuleSpan], building: str, opening: Transition) -> bool:
    """A rule alert of the building and usage, reported by the time a model alert opens, was active around it.

    Only the same usage: a stuck water meter or a silent thermometer says nothing of the heating.
    Only a rule alert active during the model's episode or in the two days before it: a rule alert
    still open but quiet for a week (waiting to be resolved) says nothing of a new excess.
    """
    usage = opening.key[1]
    for span in spans:
        if span.building != building or span.usage != usage or span.opened > opening.at:
            continue
        if span.last_active >= opening.start - _EXPLAINS_WITHIN:
            return True
    return False


def _record_span(spans: list[RuleSpan], building: str, t: Transition, opened: datetime, *, open_: bool = False) -> None:
    usage = t.key[1]
    spans[:] = [s for s in spans
                if not (s.building == building and s.usage == usage and s.start == t.start and s.opened == opened)]
    spans.append(RuleSpan(building, t.start, t.last_active, opened, None if open_ else t.at, usage))


def events_from_findings(
    inventory: Inventory,
    building: Building,
    frame: HourlyFrame,
    findings: Sequence[Finding],
    scores: dict[Usage, FloatArray] | None = None,
    typical: dict[Usage, FloatArray] | None = None,
    materiality: MaterialityConfig | None = None,
    flagged: dict[Usage, FloatArray] | None = None,
) -> list[AnomalyEvent]:
    """Debounce findings through the alert lifecycle into events, in one pass over every hour.

    Args:
        inventory: tariffs and timezone.
        building: the building of the findings (its mute windows apply).
        frame: the hourly grid.
        findings: the findings of the building (rules before models).
        scores: per usage, model scores used as the events' score (1.0 without).
        typical: per usage, typical hourly consumption per hour (:func:`typical_consumption`).
        materiality: hold consumption alerts pending until material (``None``: never).
        flagged: per usage, the hours its forest flagged above expected (1), did not (0), did not score
            (``nan``): :func:`_witness`.

    Returns:
        The events, resolved, open or ongoing.
    """
    life = AlertLifecycle(mutes={building.id: building.mute}, timezone=inventory.organisation.tz)
    return debounce(inventory, building, frame, findings, first_hour=0, life=life, memory={}, spans=[], scores=scores,
                    typical=typical, materiality=materiality, flagged=flagged)


def _muted_hours(building: Building, inventory: Inventory, frame: HourlyFrame, a: int, b: int) -> BoolArray:
    """Which of the frame's hours ``a`` .. ``b`` fall in the building's mute windows (local dates, both included)."""
    muted = np.zeros(max(0, b - a), dtype=np.bool_)
    tz = inventory.organisation.tz
    for window in building.mute:
        lo, hi = window.span(tz)
        first = max(a, math.ceil((lo.timestamp() - frame.start_s) / 3600))  # hours starting inside the window
        last = min(b, math.ceil((hi.timestamp() - frame.start_s) / 3600))
        if last > first:
            muted[first - a : last - a] = True
    return muted


def _event(
    inventory: Inventory,
    building: Building,
    frame: HourlyFrame,
    finding: Finding,
    start: datetime,
    end: datetime,
    opened: datetime,
    state: AlertState,
    scores: dict[Usage, FloatArray] | None,
    reported: datetime | None,
) -> AnomalyEvent:
    # Indexes into this run's frame; an alert older than the kept history is clipped to it.
    a = max(0, int((start.timestamp() - frame.start_s) // 3600))
    b = max(a, round((end.timestamp() - frame.start_s) / 3600))
    # The hours of the building's mute windows (works, a known event) are not the fault's: an alert open across
    # one neither counts their excess nor their facts (the lifecycle already ignores them).
    heard = ~_muted_hours(building, inventory, frame, a, b)
    active = finding.active[a:b] & heard
    if finding.origin is not None and a < frame.hours and finding.origin[a] >= 0:
        a0 = min(a, int(finding.origin[a]))
        start = min(start, frame.time(a0))
    # Observed and expected over the hours the excess is counted in, so that the excess is part of the
    # observed (issue 13): a leak's excess runs day and night while it is flagged at night only.
    counted = (active | (np.nan_to_num(finding.excess[a:b]) > 0)) & heard
    observed = float(np.nansum(finding.observed[a:b][counted]))
    expected = float(np.nansum(finding.expected[a:b][counted]))
    amount = float(np.nansum(finding.excess[a:b][heard]))
    cost = excess_cost(inventory, finding.energy, finding.excess_unit, amount)
    facts: dict[str, Any] = dict(finding.constant_facts)
    for name, values in finding.facts.items():
        chosen = values[a:b][active]
        chosen = chosen[np.isfinite(chosen)]
        if chosen.size:
            facts[name] = round(float(np.max(chosen) if name in _LONGEST_FACTS else np.mean(chosen)), 3)
    if "occupied" in facts:
        facts["occupied"] = facts["occupied"] >= 0.5
    named = next((p for p in building.points if p.id == finding.point), None) if finding.point else None
    if named is not None:  # the advisor reads the point's name and unit, not only its id (issue 13)
        facts["point_unit"] = named.unit
        if named.name:
            facts["point_name"] = named.name
    series = None
    if np.isfinite(finding.observed[a:b]).any():
        # The chart shows a day either side, but only what was known when the event was reported,
        # so that a replay and a live run draw the same chart.
        known_to = frame.hours if reported is None else int((reported.timestamp() - frame.start_s) // 3600) + 1
        lo, hi = max(0, a - 24), min(frame.hours, b + 24, known_to)
        drawn = np.arange(lo, hi)
        if finding.chart_hours is not None:
            drawn = drawn[finding.chart_hours[lo:hi]]
        obs = finding.observed[drawn]
        exp = np.where(np.isfinite(finding.expected[drawn]) & finding.active[drawn], finding.expected[drawn], obs)
        series = ChartSeries(
            times=[frame.time(int(h)) for h in drawn],
            observed=[float(x) for x in obs.tolist()],
            expected=[float(x) for x in exp.tolist()],
            unit=finding.unit,
        )
    score = 1.0
    if scores is not None and finding.usage in scores:
        window = scores[finding.usage][a:b]
        if np.isfinite(window).any():
            score = float(np.nanmax(window))
    return AnomalyEvent(
        building=building.id, building_name=building.name, usage=finding.usage.value, kind=finding.kind.value,
        qualified_name=finding.qualified_name, source="model" if finding.kind is EventKind.UNUSUAL_CONSUMPTION else "rule",
        start=start, end=end, detected_at=opened + _HOUR, state=state, score=score,
        observed=observed, expected=expected, unit=finding.unit, excess_kwh=cost.kwh, excess_m3=cost.m3,
        excess_eur=cost.eur, excess_kgco2e=cost.kgco2e, point=finding.point, facts=facts,
        timezone=inventory.organisation.timezone, series=series,
    )


@dataclass(frozen=True, slots=True, eq=False)
class BuildingFindings:
    """What the rules and models say of one building's hours.

    Attributes:
        building: the building.
        rules: data-quality then energy rule findings.
        models: model findings (``unusual_consumption``).
        scores: per usage, the model scores.
        expected: per usage with a model, observed against expected over the frame.
        typical: per usage, its typical hourly consumption as known at each hour (for materiality).
        flagged: per usage with a model, the hours its forest flagged above expected (1), did not (0, or
            below expected, or at a bounded weather), did not score (``nan``): :func:`_witness`.
    """

    building: Building
    rules: list[Finding]
    models: list[Finding]
    scores: dict[Usage, FloatArray]
    expected: list[ExpectedSeries]
    typical: dict[Usage, FloatArray] = field(default_factory=dict)
    flagged: dict[Usage, FloatArray] = field(default_factory=dict)


def building_findings(
    inventory: Inventory,
    building: Building,
    readings: dict[str, PointSeries],
    frame: HourlyFrame,
    calendar: FrenchCalendar,
    config: DetectConfig,
    *,
    unjudged: Collection[str] = frozenset(),
    memo: RuleMemo | None = None,
    models: dict[Usage, ModelProgress] | None = None,
    clock: ClockCache | None = None,
) -> BuildingFindings:
    """Run the data-quality rules, the energy rules and the models on one building's hours.

    Args:
        inventory: the portfolio (weather points).
        building: the building.
        readings: per point, its readings (those of the frame's period).
        frame: the hourly data.
        calendar: holidays.
        config: detection settings.
        unjudged: points whose missing data is not judged (an offline source that never held them).
        memo: what the rules computed on an earlier pass over the same frame start: spares recomputing
            the hours whose inputs did not change (:class:`~anomalies.rules.RuleMemo`), the findings the same.
        models: where the models of an earlier call on the first hours of this frame stopped, per usage
            (:class:`ModelProgress`): resumed, and updated (:func:`run_models`).
        clock: the schedule and calendar columns of earlier calls on the same frame start
            (:class:`~anomalies.features.ClockCache`): kept, the findings the same.

    Returns:
        The findings and scores; each hour's depends only on the readings up to its end.
    """
    empty = PointSeries(np.empty(0), np.empty(0))
    known = {p.id: p for _, p in inventory.points()}
    weather_points = [p for p in known.values() if p.usage is Usage.WEATHER]
    # The schedule is read once, around the frame: the closures' planned lengths need the hours after it.
    margin = CLOSURE_LOOKAHEAD_H
    around = HourlyFrame(frame.start_s - margin * 3600.0, frame.hours + 2 * margin, {}, {})
    booked = building_bookings(inventory, building, around)
    tz = inventory.organisation.tz

    def schedule(first_s: float, hours: int) -> dict[str, npt.NDArray[Any]]:
        times = first_s + 3600.0 * np.arange(hours, dtype=np.float64)
        return {"open": schedule_masks(building, calendar, tz, times, config.features.preheat, booked=booked)[0]}

    if clock is None:
        open_around = schedule(around.start_s, around.hours)["open"]
    else:
        open_around = clock.get(building, "around", around.start_s, around.hours,
                                (str(tz), calendar.zone, config.features.preheat, tuple(booked)), schedule)["open"]
    open_frac = open_around[margin : margin + frame.hours]
    planned = planned_closures(open_around, margin)
    quality: list[Finding] = []
    blank: dict[str, BoolArray] = {}
    # Weather first: the counters' rules need the outdoor temperature, without its frozen hours.
    # By id: a point's model equality compares every field, 50 x 50 times per building and pass.
    weather_ids = {p.id for p in weather_points}
    own_ids = {p.id for p in building.points}
    ordered = [*weather_points, *[p for p in building.points if p.id not in weather_ids]]
    outdoor: FloatArray | None = None
    for point in ordered:
        if outdoor is None and point.usage is not Usage.WEATHER:
            outdoor = outdoor_temperature(inventory, frame, blank)
        for quality_rule in QUALITY_RULES:
            if point.id in unjudged and quality_rule.name == "missing_data":
                continue
            found = quality_rule.evaluate(
                building, point, readings.get(point.id, empty), frame, open_frac, config.rules, outdoor_c=outdoor,
                planned_closure_h=planned, memo=memo,
            )
            if found is None:
                continue
            if point.id in own_ids:
                quality.append(found)
            blank[point.id] = blank.get(point.id, np.zeros(frame.hours, dtype=np.bool_)) | found.active
    hours = BuildingHours.build(inventory, building, frame, calendar, config.features, blank=blank, booked=booked,
                                calendars=clock)
    findings: list[Finding] = []
    for rule in BUILDING_RULES:
        findings.extend(rule.evaluate(hours, config.rules, findings, memo=memo))
    scores: dict[Usage, FloatArray] = {}
    flagged: dict[Usage, FloatArray] = {}
    model_findings: list[Finding] = []
    expected: list[ExpectedSeries] = []
    if config.models:
        excluded = np.zeros(frame.hours, dtype=np.bool_)
        for finding in findings:
            excluded |= finding.active
        runs = run_models(hours, excluded, config, models)
        scores = {run.usage: run.scores for run in runs}
        flagged = {run.usage: _witness(run) for run in runs}
        for run in runs:  # expected against observed, for Grafana (anomalies.expected_sink)
            used = hours.usages[run.usage]
            observed = used.values if run.observed is None else run.observed  # with the whole of a shared meter
            expected.append(ExpectedSeries(run.building, run.usage, used.unit, frame.times_s, observed, run.expected))
        if config.model_events:
            alerting = [run for run in runs if has_own_meter(building, hours.usages[run.usage])]
            model_findings = _model_findings(alerting, hours, config)
    typical = {u: typical_consumption(s.values, config.materiality.min_history) for u, s in hours.usages.items()}
    return BuildingFindings(building, [*quality, *findings], model_findings, scores, expected, typical, flagged)


def has_own_meter(building: Building, series: UsageSeries) -> bool:
    """Whether a usage's consumption comes, at least in part, from a meter of its own.

    A usage measured only as a share of meters of other usages (``serves``,
    its split learnt or declared) raises no model alert: the share moves with
    the meter, so the meter's own usage's model already sees any anomaly of
    it, and a learnt share's residual is the split's error as much as the
    building's. Its expected consumption is still computed (reports, Grafana).
    Water meters are always their own.
    """
    if series.usage is Usage.WATER:
        return True
    return any(p.usage is series.usage for p in building.points if p.id in series.points)


def detect(
    inventory: Inventory,
    readings: dict[str, PointSeries],
    config: DetectConfig | None = None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    on_expected: Callable[[ExpectedSeries], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    unjudged: Collection[str] = frozenset(),
) -> list[AnomalyEvent]:
    """Run the rules and models on a history of readings: a replay of :func:`anomalies.incremental.advance`.

    The history is processed as a live pipeline would have (one advance from a
    fresh state up to the hour of the last reading), so the events are those
    an hour-by-hour run would have raised.

    Args:
        inventory: the portfolio; readings of unknown points are ignored.
        readings: per point, its readings (:func:`read_readings_csv`).
        config: detection settings.
        start: keep events that end after this time (the history before it still serves as reference).
        end: keep events that start before this time.
        on_expected: called once per building × usage with a model (``config.models``) with its
            hourly observed and expected consumption, cut to ``[start, end)``.
        progress: told how far detection is (:func:`anomalies.incremental.advance`).
        unjudged: points whose missing data is not judged: a history that never held them
            (``econome simulate`` writes counters and weather only) says nothing of their sensors.

    Returns:
        The events, by start time, each in its last state.
    """
    # Imported here: anomalies.incremental builds on this module.
    from anomalies.incremental import DetectorState, advance

    config = config or DetectConfig()
    def expected_between(series: ExpectedSeries) -> None:
        if on_expected is not None:
            on_expected(series.between(start, end))

    hook = expected_between if on_expected is not None else None
    state = DetectorState.fresh(config)
    events = advance(inventory, readings, state, config=config, on_expected=hook, progress=progress,
                     unjudged=unjudged).events
    if start is not None:
        events = [e for e in events if e.end > start]
    if end is not None:
        events = [e for e in events if e.start < end]
    return sorted(events, key=lambda e: (e.start, e.building, e.kind))


def write_events_jsonl(events: Iterable[AnomalyEvent], path: Path, language: Language = "fr") -> int:
    """Write events as JSON lines; return how many.

    Args:
        events: the events.
        path: the file (overwritten).
        language: language of the explanations.
    """
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for event in events:
            handle.write(json.dumps(event.to_json(language), ensure_ascii=False) + "\n")
            count += 1
    return count
