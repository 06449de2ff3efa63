"""A day beyond every reference day is flagged, whatever the forest's score (issue 11, ``model_beyond_reference``).

An isolation tree splits a column between the values of its sample only, so a
row far above every reference row isolates no faster than the most extreme of
them: its score saturates there. Family B's event hall lit through three closed
days (24-hour residual ratios of 4 to 5 against a reference whose largest was
1.06) scored 0.67, under its threshold of 0.685, and no model alert was raised.
"""

from __future__ import annotations

import numpy as np
import pytest

from anomalies.detect import _DAY_RATIO_COLUMN, DetectConfig, _score_block
from anomalies.features import FEATURE_NAMES
from anomalies.iforest import IsolationForestDetector
from anomalies.thresholds import QuantileThreshold


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
    _score_block(forest, threshold, probe, 0, 6, scores, flagged, model_flag, beyond_reference)
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
