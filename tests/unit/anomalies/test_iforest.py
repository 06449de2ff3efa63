from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from anomalies.iforest import IsolationForestConfig, IsolationForestDetector
from streams.errors import InsufficientData, ModelError, NotFitted


def _rows(n: int = 24 * 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 4))


def test_scores_are_negated_sklearn_score_samples() -> None:
    rows = _rows()
    det = IsolationForestDetector(random_state=5).fit(rows)
    forest = IsolationForest(n_estimators=100, max_samples=256, random_state=5).fit(rows)
    probe = np.random.default_rng(9).normal(scale=2.0, size=(300, 4))
    assert np.allclose(det.score_many(probe), -forest.score_samples(probe))


def test_higher_score_is_more_anomalous_and_nan_rows_score_nan() -> None:
    det = IsolationForestDetector(random_state=0).fit(_rows())
    assert det.score(np.zeros(4)) < det.score(np.full(4, 8.0))
    assert np.isnan(det.score(np.array([0.0, np.nan, 0.0, 0.0])))


def test_refuses_short_or_patchy_reference_with_reasons() -> None:
    with pytest.raises(InsufficientData) as short:
        IsolationForestDetector().fit(_rows(24 * 5))
    assert any("spans" in r for r in short.value.reasons)
    patchy = _rows()
    patchy[::2, 1] = np.nan
    with pytest.raises(InsufficientData) as holes:
        IsolationForestDetector().fit(patchy)
    assert any("coverage" in r for r in holes.value.reasons)


def test_round_trip_through_json_scores_the_same() -> None:
    det = IsolationForestDetector(IsolationForestConfig(n_estimators=20), random_state=1).fit(_rows())
    data = json.loads(json.dumps(det.to_dict()))
    assert data["format_version"] == 2
    loaded = IsolationForestDetector.from_dict(data)
    probe = _rows(50, seed=3)
    assert np.array_equal(loaded.score_many(probe), det.score_many(probe))
    assert np.array_equal(loaded.beyond(probe * 3.0, 0, 1.0), det.beyond(probe * 3.0, 0, 1.0))
    with pytest.raises(ModelError):
        IsolationForestDetector.from_dict({**data, "format_version": 99})


def test_init_does_no_work_and_unfitted_use_raises() -> None:
    det = IsolationForestDetector(random_state=3)
    assert not det.fitted
    with pytest.raises(NotFitted):
        det.score(np.zeros(4))


def test_held_out_and_flagged_rows_count_as_covered() -> None:
    rows = _rows(24 * 14)
    held_out = np.random.default_rng(3).random(rows.shape[0]) < 0.25
    flagged = np.zeros(rows.shape[0], dtype=bool)
    flagged[24 * 3 : 24 * 6] = True
    # Blanking them (the old way) drops coverage below 70 %; excluding them does not.
    blanked = np.where((held_out | flagged)[:, None], np.nan, rows)
    assert any("coverage" in r for r in IsolationForestDetector().check_sufficiency(blanked))
    det = IsolationForestDetector(random_state=0).fit(rows, exclude=held_out | flagged)
    assert det.fitted


@pytest.mark.parametrize(("n", "seed"), [(150, 3), (258, 5), (2000, 7)])  # every row, 99 % of them, a permutation
def test_trees_are_node_for_node_those_of_sklearn(n: int, seed: int) -> None:
    from anomalies.iforest import _grow_direct, _grow_public

    rows = _rows(n, seed)
    rows[:, 1] = np.round(rows[:, 1])  # ties
    rows[:, 3] = 2.5  # a constant column
    max_samples = min(256, n)
    direct = _grow_direct(rows, 100, max_samples, seed)
    public = _grow_public(rows, 100, max_samples, seed)
    assert len(direct) == len(public) == 100
    for a, b in zip(direct, public, strict=True):
        for name in ("left", "right", "feature", "threshold", "path", "features"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_all_trees_walked_at_once_give_the_sum_tree_by_tree_exactly() -> None:
    det = IsolationForestDetector(random_state=2).fit(_rows())
    probe = np.random.default_rng(4).normal(scale=1.5, size=(40, 4))
    assert det._trees is not None
    depths = np.zeros(probe.shape[0])
    for tree in det._trees:
        lengths = []
        for row in probe:
            node = 0
            while tree.left[node] >= 0:
                go_left = row[tree.features[tree.feature[node]]] <= tree.threshold[node]
                node = tree.left[node] if go_left else tree.right[node]
            lengths.append(tree.path[node])
        depths += np.array(lengths)
    expected = 2.0 ** (-depths / det._denominator)
    assert det.score_many(probe).tolist() == expected.tolist()


def test_importing_detection_does_not_load_scikit_learn() -> None:
    """scikit-learn (and scipy.stats with it, about a second) is imported when a forest is first grown, not before."""
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, anomalies.detect, anomalies.incremental; print(sorted(m for m in sys.modules if m.startswith('sklearn')))"
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_row_far_beyond_the_reference_scores_no_higher_than_one_just_beyond_it_and_is_beyond() -> None:
    """Issue 11: the trees split a column between their sample's values only, so the score saturates.

    A row four times above every fitted row's largest value of one column scores like a row just above
    it; :meth:`beyond` tells them apart, and reads the same after a round trip through a state file's
    arrays. A format-1 model (saved before the maxima were) has no row beyond until its next fit.
    """
    rows = _rows()
    rows[:, 2] = np.abs(rows[:, 2])
    det = IsolationForestDetector(random_state=0).fit(rows)
    top = float(rows[:, 2].max())
    just, far = np.zeros((1, 4)), np.zeros((1, 4))
    just[0, 2], far[0, 2] = top * 1.01, top * 4.0
    assert det.score_many(far)[0] == det.score_many(just)[0]
    assert det.beyond(np.vstack([just, far]), 2, 2.0).tolist() == [False, True]
    meta, arrays = det.to_arrays()
    assert meta["format_version"] == 2
    assert IsolationForestDetector.from_arrays(meta, arrays).beyond(far, 2, 2.0).tolist() == [True]
    old = {k: v for k, v in meta.items() if k != "upper"} | {"format_version": 1}
    assert IsolationForestDetector.from_arrays(old, arrays).beyond(far, 2, 2.0).tolist() == [False]
    legacy = {k: v for k, v in det.to_dict().items() if k != "upper"} | {"format_version": 1}
    assert IsolationForestDetector.from_dict(legacy).beyond(far, 2, 2.0).tolist() == [False]


def test_no_row_is_beyond_a_column_whose_fitted_rows_never_went_above_zero() -> None:
    rows = _rows()
    rows[:, 1] = -np.abs(rows[:, 1])
    det = IsolationForestDetector(random_state=0).fit(rows)
    probe = np.zeros((2, 4))
    probe[:, 1] = [0.5, 50.0]
    assert not det.beyond(probe, 1, 2.0).any()
