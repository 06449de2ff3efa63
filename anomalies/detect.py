"""Offline detection: readings CSV → anomaly events, the code path of ``econome detect``.

The steps, for the whole portfolio:

1. read the readings (``timestamp,point,value``: counters as cumulative
   indexes, sensors as instantaneous values) and aggregate them to hours
   (:class:`~anomalies.features.HourlyFrame`);
2. run the data-quality rules on every point; the hours they flag (a stuck
   counter, a frozen or silent sensor) are blanked for what follows;
3. describe each building's hours (schedule, holidays, weather, indoor
   temperature, consumption per usage) and run the energy rules;
4. fit an isolation forest per building × usage, walking forward: every
   ``refit_every`` it is refitted on all earlier hours except those any rule or
   the model itself flagged, its threshold calibrated on held-out reference
   hours (:class:`~anomalies.thresholds.QuantileThreshold`); it scores the
   following hours;
5. debounce every rule's and model's hourly states through the alert
   lifecycle (:class:`~anomalies.lifecycle.AlertLifecycle`: minimum duration,
   flap suppression, the buildings' mute windows) into
   :class:`~anomalies.events.AnomalyEvent` records, priced with the inventory's tariffs.

A model event that overlaps a rule event of the same building is dropped:
the rule explains it better.

Sample config (``DetectConfig``)::

    detect:
      refit_every: 56d
      model_events: false
      model_min_duration: 6h
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

import csv
import json
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from anomalies.events import AlertState, AnomalyEvent, ChartSeries, EventKind, Language, excess_cost
from anomalies.features import (
    FEATURE_NAMES,
    BuildingHours,
    FeatureConfig,
    HourlyFrame,
    PointSeries,
    build_features,
    outdoor_temperature,
    schedule_masks,
)
from anomalies.iforest import IsolationForestConfig, IsolationForestDetector
from anomalies.lifecycle import AlertKey, AlertLifecycle, LifecycleConfig
from anomalies.rules import BUILDING_RULES, QUALITY_RULES, Finding, RulesConfig
from anomalies.thresholds import QuantileThreshold
from inventory import Building, FrenchCalendar, Inventory, Usage
from streams.errors import DecodeError, InsufficientData

__all__ = [
    "DetectConfig",
    "ModelRun",
    "detect",
    "events_from_findings",
    "read_readings_csv",
    "run_models",
    "write_events_jsonl",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_HOUR = timedelta(hours=1)
_CONSUMPTION_COLUMN = FEATURE_NAMES.index("consumption")


class DetectConfig(BaseModel):
    """Settings of a detection run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    features: FeatureConfig = Field(default_factory=FeatureConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    iforest: IsolationForestConfig = Field(default_factory=IsolationForestConfig)
    models: bool = True
    """Run the isolation forests (rules always run); their scores become the events' score."""
    model_events: bool = False
    """Also raise events from the forests alone. Off by default: walking forward through a
    first year, a forest meets each season for the first time and flags it (see docs/anomalies.md)."""
    refit_every: timedelta = timedelta(days=56)
    """How often each forest is refitted on the hours before."""
    threshold_q: float = Field(default=0.999, gt=0.5, lt=1)
    """Quantile of held-out reference scores above which an hour is flagged."""
    model_min_duration: timedelta = timedelta(hours=6)
    """Flagged time before a model event opens."""
    model_clear_after: timedelta = timedelta(hours=12)
    """Quiet time before a model event resolves."""
    random_state: int = 0


def read_readings_csv(path: Path) -> dict[str, PointSeries]:
    """Read a ``timestamp,point,value`` CSV (ISO 8601 timestamps with an offset).

    Empty values are skipped; rows may come in any order.

    Raises:
        DecodeError: a missing column, a timestamp without offset or a value that is not a number.
    """
    times: dict[str, list[float]] = defaultdict(list)
    values: dict[str, list[float]] = defaultdict(list)
    parsed: dict[str, float] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != ["timestamp", "point", "value"]:
            msg = f"{path}: the header must be 'timestamp,point,value', got {header}"
            raise DecodeError(msg)
        for line_no, row in enumerate(reader, start=2):
            if len(row) < 3 or not row[2].strip():
                continue
            stamp, point, text = row[0], row[1], row[2]
            moment = parsed.get(stamp)
            if moment is None:
                try:
                    when = datetime.fromisoformat(stamp)
                except ValueError as exc:
                    msg = f"{path}:{line_no}: bad timestamp {stamp!r}"
                    raise DecodeError(msg) from exc
                if when.tzinfo is None:
                    msg = f"{path}:{line_no}: timestamp {stamp!r} has no UTC offset"
                    raise DecodeError(msg)
                moment = when.timestamp()
                parsed[stamp] = moment
            try:
                value = float(text)
            except ValueError as exc:
                msg = f"{path}:{line_no}: value {text!r} of {point} is not a number"
                raise DecodeError(msg) from exc
            times[point].append(moment)
            values[point].append(value)
    out: dict[str, PointSeries] = {}
    for point, stamps in times.items():
        t = np.asarray(stamps, dtype=np.float64)
        v = np.asarray(values[point], dtype=np.float64)
        order = np.argsort(t, kind="stable")
        out[point] = PointSeries(times_s=t[order], values=v[order])
    return out


@dataclass(frozen=True, slots=True, eq=False)
class ModelRun:
    """The walk-forward scores of one building × usage forest.

    Attributes:
        building: building id.
        usage: the usage.
        scores: per hour, the score (``nan`` before the first fit or where a feature is missing).
        flagged: per hour, 1 flagged, 0 not, ``nan`` not scored.
        expected: per hour, the median consumption of the same hour of the week in the reference.
        fits: how many times the forest was fitted.
        last: the last fitted detector, if any.
        last_threshold: its thresholder.
    """

    building: str
    usage: Usage
    scores: FloatArray
    flagged: FloatArray
    expected: FloatArray
    fits: int
    last: IsolationForestDetector | None
    last_threshold: QuantileThreshold | None


def run_models(hours: BuildingHours, excluded: BoolArray, config: DetectConfig) -> list[ModelRun]:
    """Walk-forward isolation forests for every usage of a building.

    Args:
        hours: the building's hours.
        excluded: hours any rule flagged; never used as reference.
        config: detection settings.

    Returns:
        One run per usage with a consumption series.
    """
    runs: list[ModelRun] = []
    n = hours.frame.hours
    step = max(1, int(config.refit_every / _HOUR))
    first = max(1, int(config.iforest.min_span / _HOUR))
    for usage in hours.usages:
        rows = build_features(hours, usage, config.features)
        scores = np.full(n, np.nan)
        flagged = np.full(n, np.nan)
        expected = np.full(n, np.nan)
        model_flag = np.zeros(n, dtype=np.bool_)
        fits = 0
        last: IsolationForestDetector | None = None
        last_th: QuantileThreshold | None = None
        rng = np.random.default_rng([config.random_state, n])
        for at in range(first, n, step):
            usable = ~excluded[:at] & ~model_flag[:at]
            reference = np.where(usable[:, None], rows[:at], np.nan)
            detector = IsolationForestDetector(config.iforest, random_state=config.random_state)
            held_out = rng.random(at) < 0.25
            try:
                detector.fit(np.where(held_out[:, None], np.nan, reference))
                threshold = QuantileThreshold(q=config.threshold_q).calibrate(detector.score_many(reference[held_out]))
            except InsufficientData as exc:
                logger.debug("no forest for %s %s at hour %d: %s", hours.building.id, usage.value, at, exc.reasons)
                continue
            fits += 1
            last, last_th = detector, threshold
            stop = min(n, at + step)
            block = detector.score_many(rows[at:stop])
            scores[at:stop] = block
            for i, score in enumerate(block.tolist()):
                if math.isfinite(score):
                    hit = threshold.flag(score)
                    flagged[at + i] = float(hit)
                    model_flag[at + i] = hit
            expected[at:stop] = _hour_of_week_median(hours, rows[:at, _CONSUMPTION_COLUMN], usable, at, stop)
        runs.append(ModelRun(hours.building.id, usage, scores, flagged, expected, fits, last, last_th))
    return runs


def _hour_of_week_median(hours: BuildingHours, y: FloatArray, usable: BoolArray, at: int, stop: int) -> FloatArray:
    how = hours.hour_of_week
    out = np.full(stop - at, np.nan)
    ok = usable & np.isfinite(y)
    for h in range(168):
        sel = ok & (how[:at] == h)
        if sel.any():
            out[how[at:stop] == h] = float(np.median(y[sel]))
    return out


def _model_findings(runs: Sequence[ModelRun], hours: BuildingHours, config: DetectConfig) -> list[Finding]:
    findings = []
    for run in runs:
        series = hours.usages[run.usage]
        excess = np.where(run.flagged == 1.0, np.maximum(0.0, series.values - run.expected), 0.0)
        findings.append(
            Finding(
                qualified_name=f"anomalies.iforest.{run.usage.value}", kind=EventKind.UNUSUAL_CONSUMPTION,
                building=run.building, usage=run.usage, state=run.flagged, observed=series.values, expected=run.expected,
                excess=np.nan_to_num(excess), unit=series.unit, excess_unit=series.unit, energy=series.energy,
                min_duration=config.model_min_duration, clear_after=config.model_clear_after,
            )
        )
    return findings


def events_from_findings(
    inventory: Inventory,
    building: Building,
    frame: HourlyFrame,
    findings: Sequence[Finding],
    scores: dict[Usage, FloatArray] | None = None,
) -> list[AnomalyEvent]:
    """Debounce findings through the alert lifecycle into events.

    Args:
        inventory: tariffs and timezone.
        building: the building of the findings (its mute windows apply).
        frame: the hourly grid.
        findings: the findings of the building.
        scores: per usage, model scores used as the events' score (1.0 without).

    Returns:
        The events, open, ongoing or resolved.
    """
    per_kind = {f.kind.value: LifecycleConfig(min_duration=f.min_duration, clear_after=f.clear_after) for f in findings}
    tz = inventory.organisation.tz
    events: list[AnomalyEvent] = []
    for finding in findings:
        life = AlertLifecycle(per_kind=per_kind, mutes={building.id: building.mute}, timezone=tz)
        key: AlertKey = (finding.building, finding.usage.value, finding.kind.value, finding.point or "")
        active = finding.active
        if not active.any():
            continue
        opened: int | None = None
        for h in np.flatnonzero(np.isfinite(finding.state)).tolist():
            if not active[h] and not life.tracking(key):
                continue  # an absent anomaly with no alert changes nothing
            transition = life.observe(key, frame.time(h), bool(active[h]))
            if transition is None:
                continue
            if transition.state is AlertState.OPEN:
                opened = h
            elif transition.state is AlertState.RESOLVED and opened is not None:
                events.append(_event(inventory, building, frame, finding, transition.start, transition.last_active,
                                     opened, AlertState.RESOLVED, scores))
                opened = None
        for transition in life.open_alerts():
            if opened is not None:
                events.append(_event(inventory, building, frame, finding, transition.start, transition.last_active,
                                     opened, AlertState.ONGOING, scores))
    return events


def _event(
    inventory: Inventory,
    building: Building,
    frame: HourlyFrame,
    finding: Finding,
    start: datetime,
    end: datetime,
    opened: int,
    state: AlertState,
    scores: dict[Usage, FloatArray] | None,
) -> AnomalyEvent:
    a = int((start.timestamp() - frame.start_s) // 3600)
    b = round((end.timestamp() - frame.start_s) / 3600)
    active = finding.active[a:b]
    if finding.origin is not None and finding.origin[a] >= 0:
        a0 = min(a, int(finding.origin[a]))
        start = frame.time(a0)
    observed = float(np.nansum(finding.observed[a:b][active]))
    expected = float(np.nansum(finding.expected[a:b][active]))
    amount = float(np.nansum(finding.excess[a:b]))
    cost = excess_cost(inventory, finding.energy, finding.excess_unit, amount)
    facts: dict[str, Any] = dict(finding.constant_facts)
    for name, values in finding.facts.items():
        chosen = values[a:b][active]
        chosen = chosen[np.isfinite(chosen)]
        if chosen.size:
            facts[name] = round(float(np.max(chosen) if name == "hours" else np.mean(chosen)), 3)
    if "occupied" in facts:
        facts["occupied"] = facts["occupied"] >= 0.5
    series = None
    if np.isfinite(finding.observed[a:b]).any():
        lo, hi = max(0, a - 24), min(frame.hours, b + 24)
        obs = finding.observed[lo:hi]
        exp = np.where(np.isfinite(finding.expected[lo:hi]) & finding.active[lo:hi], finding.expected[lo:hi], obs)
        series = ChartSeries(
            times=[frame.time(h) for h in range(lo, hi)],
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
        start=start, end=end, detected_at=frame.time(opened) + _HOUR, state=state, score=score,
        observed=observed, expected=expected, unit=finding.unit, excess_kwh=cost.kwh, excess_m3=cost.m3,
        excess_eur=cost.eur, excess_kgco2e=cost.kgco2e, point=finding.point, facts=facts,
        timezone=inventory.organisation.timezone, series=series,
    )


def detect(
    inventory: Inventory,
    readings: dict[str, PointSeries],
    config: DetectConfig | None = None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[AnomalyEvent]:
    """Run the rules and models on a history of readings.

    Args:
        inventory: the portfolio; readings of unknown points are ignored.
        readings: per point, its readings (:func:`read_readings_csv`).
        config: detection settings.
        start: keep events that end after this time (the history before it still serves as reference).
        end: keep events that start before this time.

    Returns:
        The events, by start time.
    """
    config = config or DetectConfig()
    known = {p.id: p for _, p in inventory.points()}
    readings = {pid: s for pid, s in readings.items() if pid in known}
    frame = HourlyFrame.build(readings, counters={pid for pid, p in known.items() if p.cumulative},
                              max_gap=config.features.max_gap)
    calendar = FrenchCalendar(inventory.organisation.school_holiday_zone)
    empty = PointSeries(np.empty(0), np.empty(0))
    events: list[AnomalyEvent] = []
    weather_points = [p for p in known.values() if p.usage is Usage.WEATHER]
    for _, building in inventory.buildings():
        open_frac, _ = _open_fraction(inventory, building, frame, calendar, config)
        quality: list[Finding] = []
        blank: dict[str, BoolArray] = {}
        # Weather first: the counters' rules need the outdoor temperature, without its frozen hours.
        ordered = [*weather_points, *[p for p in building.points if p not in weather_points]]
        outdoor: FloatArray | None = None
        for point in ordered:
            if outdoor is None and point.usage is not Usage.WEATHER:
                outdoor = outdoor_temperature(inventory, frame, blank)
            for quality_rule in QUALITY_RULES:
                found = quality_rule.evaluate(
                    building, point, readings.get(point.id, empty), frame, open_frac, config.rules, outdoor_c=outdoor
                )
                if found is None:
                    continue
                if point in building.points:
                    quality.append(found)
                blank[point.id] = blank.get(point.id, np.zeros(frame.hours, dtype=np.bool_)) | found.active
        hours = BuildingHours.build(inventory, building, frame, calendar, config.features, blank=blank)
        findings: list[Finding] = []
        for rule in BUILDING_RULES:
            findings.extend(rule.evaluate(hours, config.rules, findings))
        scores: dict[Usage, FloatArray] = {}
        model_findings: list[Finding] = []
        if config.models:
            excluded = np.zeros(frame.hours, dtype=np.bool_)
            for finding in findings:
                excluded |= finding.active
            runs = run_models(hours, excluded, config)
            scores = {run.usage: run.scores for run in runs}
            model_findings = _model_findings(runs, hours, config)
        rule_events = events_from_findings(inventory, building, frame, [*quality, *findings], scores)
        model_events = events_from_findings(inventory, building, frame, model_findings, scores) if config.model_events else []
        events.extend(rule_events)
        if config.model_events:
            events.extend(e for e in model_events if not _overlaps_any(e, rule_events))
    if start is not None:
        events = [e for e in events if e.end > start]
    if end is not None:
        events = [e for e in events if e.start < end]
    return sorted(events, key=lambda e: (e.start, e.building, e.kind))


def _open_fraction(
    inventory: Inventory, building: Building, frame: HourlyFrame, calendar: FrenchCalendar, config: DetectConfig
) -> tuple[FloatArray, BoolArray]:
    return schedule_masks(building, calendar, inventory.organisation.tz, frame.times_s, config.features.preheat)


def _overlaps_any(event: AnomalyEvent, others: Iterable[AnomalyEvent]) -> bool:
    return any(o.building == event.building and o.start < event.end and event.start < o.end for o in others)


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
