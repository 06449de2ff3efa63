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
