"""A day beyond every reference day is flagged, whatever the forest's score (issue 11, ``model_beyond_reference``).

An isolation tree splits a column between the values of its sample only, so a
row far above every reference row isolates no faster than the most extreme of
them: its score saturates there. Family B's event hall lit through three closed
days (24-hour residual ratios of 4 to 5 against a reference whose largest was
1.06) scored 0.67, under its threshold of 0.685, and no model alert was raised.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from anomalies.detect import _DAY_RATIO_COLUMN, DetectConfig, ModelRun, _score_block, detect, run_models
from anomalies.events import AnomalyEvent, EventKind
from anomalies.features import FEATURE_NAMES, BuildingHours, HourlyFrame, PointSeries
from anomalies.iforest import IsolationForestDetector
from anomalies.thresholds import QuantileThreshold
from inventory import FrenchCalendar, Usage, parse_inventory

from .test_main_meter import INVENTORY, KWH_PER_M3, TZ, _open


def _reference(n: int = 24 * 60, seed: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, len(FEATURE_NAMES)))
    rows[:, _DAY_RATIO_COLUMN] = rng.uniform(-0.3, 1.0, n)  # the busiest reference day: 1.0
    return rows


def _scored(beyond_reference: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    rows = _reference()
    held_out = np.asarray(np.random.default_rng(1).random(rows.shape[0]) < 0.25, dtype=np.bool_)
    forest = IsolationForestDetector(random_state=0).fit(rows, exclude=held_out)
    threshold = QuantileThreshold(q=0.995, min_scores=48).calibrate(forest.score_many(rows[held_out]))
    # Three ordinary hours, then the same hours with their day 4 times above the busiest reference day's.
    probe = np.vstack([np.zeros((3, len(FEATURE_NAMES)))] * 2)
    probe[3:, _DAY_RATIO_COLUMN] = 4.0
    scores, flagged = np.full(6, np.nan), np.full(6, np.nan)
    model_flag = np.zeros(6, dtype=np.bool_)
    _score_block(forest, threshold, probe, 0, 6, scores, flagged, model_flag, beyond_reference,
                 unseen_day=np.zeros(6, dtype=np.bool_))
    return scores, flagged, model_flag, threshold.threshold


def test_a_day_far_beyond_every_reference_day_is_flagged_though_its_score_is_under_the_threshold() -> None:
    scores, flagged, model_flag, threshold = _scored(DetectConfig().model_beyond_reference)
    assert (scores[3:] < threshold).all(), "the score alone flags it: the test would prove nothing"
    assert flagged.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    # Not left out of the refits: a lasting change of use must become the reference one day.
    assert not model_flag.any()


def test_with_the_setting_off_the_score_alone_decides() -> None:
    scores, flagged, _, threshold = _scored(None)
    assert flagged.tolist() == (scores > threshold).astype(float).tolist() == [0.0] * 6


@pytest.mark.parametrize("factor", [1.0, 0.5])
def test_the_factor_must_reach_beyond_the_reference(factor: float) -> None:
    with pytest.raises(ValueError, match="model_beyond_reference"):
        DetectConfig(model_beyond_reference=factor)


def _school(start: datetime, seed: int, erratic: float = 0.0, days: int = 75) -> dict[str, PointSeries]:
    """A school's gas meter and outdoor temperature from ``start`` (its first metered hour), no fault.

    The generator of :mod:`test_main_meter` without its faults: heating by the degree hours under 16 °C at comfort
    from 06:00 to 17:00 on open days, setback otherwise, hot water while open, multiplicative noise; ``erratic``,
    the deviation of a second multiplicative noise: a use the expected model follows poorly.
    """
    rng = np.random.default_rng(seed)
    calendar = FrenchCalendar("B")
    n = days * 24
    start_s = start.astimezone(UTC).timestamp()
    times = start_s + 3600.0 * np.arange(n)
    local = [datetime.fromtimestamp(t, TZ) for t in times]
    doy = np.array([m.timetuple().tm_yday for m in local], dtype=np.float64)
    hod = np.array([m.hour for m in local], dtype=np.float64)
    weather = np.zeros(n)
    for i in range(1, n):
        weather[i] = 0.995 * weather[i - 1] + rng.normal(0, 0.3)
    outdoor = 11.0 - 8.0 * np.cos(2 * np.pi * (doy - 20) / 365) + 3.5 * np.sin(2 * np.pi * (hod - 9) / 24) + weather
    need = np.maximum(0.0, 16.0 - outdoor)
    is_open = np.array([_open(m.date(), calendar) for m in local])
    heating = np.where(is_open & (hod >= 6) & (hod < 17), 3.0 * need + 4.0 * (need > 0), 0.8 * need)
    dhw = np.where(is_open & (hod >= 7) & (hod < 18), 2.0, 0.3)
    kwh = (heating + dhw) * (1 + rng.normal(0, 0.08, n)).clip(0.5)
    if erratic:
        kwh *= (1 + np.random.default_rng(9).normal(0, erratic, n)).clip(0.3)
    index = np.concatenate([[1000.0], 1000.0 + np.cumsum(kwh / KWH_PER_M3)])
    readings = {
        "gaz": PointSeries(start_s + 3600.0 * np.arange(n + 1), index),
        "meteo": PointSeries(times + 600.0, outdoor + rng.normal(0, 0.1, n)),
    }
    return readings


def _heating_runs(readings: dict[str, PointSeries], start: datetime, days: int = 75) -> tuple[ModelRun, ModelRun]:
    """The heating's model run with ``model_beyond_reference`` at its default, and off."""
    inventory = parse_inventory(INVENTORY)
    frame = HourlyFrame.build(readings, counters={"gaz"}, start_s=start.astimezone(UTC).timestamp(), hours=days * 24)
    hours = BuildingHours.build(inventory, next(b for _, b in inventory.buildings()), frame, FrenchCalendar("B"))
    excluded = np.zeros(days * 24, dtype=np.bool_)
    on, off = (next(r for r in run_models(hours, excluded, config) if r.usage is Usage.HEATING)
               for config in (DetectConfig(), DetectConfig(model_beyond_reference=None)))
    return on, off


def _model_events(readings: dict[str, PointSeries], config: DetectConfig | None = None) -> list[AnomalyEvent]:
    events = detect(parse_inventory(INVENTORY), readings, config or DetectConfig())
    return [e for e in events if e.kind == EventKind.UNUSUAL_CONSUMPTION]


def test_a_day_that_reads_hours_the_expected_model_never_saw_is_not_beyond_the_reference() -> None:
    """The return from the summer holidays of a school metered since them: no model alert on its first weekend.

    The forest's reference is the closed summer (24-hour ratios near 0). The first open days are beyond the
    expected model's fit (a day type it never learnt: their expected value is that of a closed day, their ratios
    of 5 to 8 measure the model's ignorance) and no model alert is raised on them. The Saturday after is a
    closed day the model knows, and its own hours are ordinary, but its 24-hour ratio still holds Friday's
    open hours: far beyond the reference, it was flagged (and alerted, 9 hours). A mean that reads hours the
    expected model never saw says nothing of the building against its reference.
    """
    start = datetime(2025, 7, 12, tzinfo=TZ)
    readings = _school(start, seed=5)
    on, off = _heating_runs(readings, start)
    assert on.beyond_fit is not None
    # Some open hours of the first week back are beyond the expected model's fit (the test's premise).
    assert on.beyond_fit[(datetime(2025, 9, 1, tzinfo=TZ) - start) // timedelta(hours=1):].any()
    by_reference = (on.flagged == 1.0) & ~(off.flagged == 1.0)
    unseen_day = np.convolve(on.beyond_fit.astype(np.float64), np.ones(24))[: on.beyond_fit.size] > 0
    assert not (by_reference & unseen_day).any()
    assert _model_events(readings) == []


@pytest.mark.parametrize("first_day", [datetime(2025, 5, 1, tzinfo=TZ), datetime(2025, 9, 13, tzinfo=TZ)])
def test_a_forest_fitted_on_in_sample_days_only_flags_by_its_score(first_day: datetime) -> None:
    """An erratic school's first weeks: no model alert by the reference of a forest that knows no out-of-sample day.

    A building's first forest is fitted at its expected model's first fit, on the days that model was fitted on:
    their ratios are its fit's residuals, optimistic. Twice their largest day was within the ordinary error of
    the weeks after, for a use the model follows poorly, and a false alert was raised in the third week (from
    June 3rd 8 hours, from October 4th 3 days). The next forest, fitted on out-of-sample days too, judges by the reference.
    """
    readings = _school(first_day, seed=8, erratic=0.35)
    on, off = _heating_runs(readings, first_day)
    first_forest = slice(14 * 24, 42 * 24)  # the first forest, from day 14 to its refit 28 days later
    assert np.array_equal(on.flagged[first_forest], off.flagged[first_forest], equal_nan=True)
    # The model alerts are those of the score alone (May's erratic June has one, found by the score).
    assert _model_events(readings) == _model_events(readings, DetectConfig(model_beyond_reference=None))
