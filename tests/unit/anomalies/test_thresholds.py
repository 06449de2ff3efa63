from __future__ import annotations

import numpy as np
import pytest

from anomalies.thresholds import FixedThreshold, QuantileThreshold, thresholder_from_dict
from streams.errors import InsufficientData, NotFitted


def test_quantile_threshold_is_calibrated_per_model() -> None:
    quiet = QuantileThreshold(q=0.99).calibrate(np.random.default_rng(0).normal(0.40, 0.01, 2000))
    noisy = QuantileThreshold(q=0.99).calibrate(np.random.default_rng(0).normal(0.40, 0.05, 2000))
    assert quiet.threshold < noisy.threshold
    assert quiet.flag(0.47)
    assert not noisy.flag(0.47)


def test_flagged_scores_do_not_move_the_running_threshold() -> None:
    th = QuantileThreshold(q=0.9, window=100, min_scores=10).calibrate(np.linspace(0, 1, 100))
    before = th.threshold
    for _ in range(50):
        assert th.flag(5.0)
    assert th.update() == pytest.approx(before)


def test_refuses_too_few_scores_and_unfitted_use() -> None:
    with pytest.raises(InsufficientData):
        QuantileThreshold(min_scores=100).calibrate(np.ones(10))
    with pytest.raises(NotFitted):
        _ = QuantileThreshold().threshold


def test_round_trips() -> None:
    th = QuantileThreshold(q=0.95, min_scores=10).calibrate(np.linspace(0, 1, 50))
    assert thresholder_from_dict(th.to_dict()).threshold == th.threshold
    fixed = FixedThreshold(0.6)
    assert thresholder_from_dict(fixed.to_dict()).flag(0.7)
    assert not fixed.flag(float("nan"))


def test_flag_many_is_flag_score_after_score() -> None:
    """Issue 11 (speed): a block of scores flagged at once gives the flags, the running window and the next
    threshold that flagging them one by one gives (unknown scores neither flagged nor kept)."""
    rng = np.random.default_rng(4)
    reference = rng.normal(0.4, 0.05, 500)
    block = rng.normal(0.45, 0.08, 300)
    block[rng.random(300) < 0.1] = np.nan
    one, many = (QuantileThreshold(q=0.95, window=600, min_scores=50).calibrate(reference) for _ in range(2))
    flags = [one.flag(float(s)) for s in block]
    assert many.flag_many(block).tolist() == flags
    assert 0 < sum(flags) < 300
    assert many.to_dict() == one.to_dict()
    assert many.update() == one.update()
    assert not many.flag_many(np.full(3, np.nan)).any()
