"""Isolation forest per building × usage, fitted on a reference period, persisted as plain data.

:class:`IsolationForestDetector` follows the detector contract: ``fit(rows)``
then ``score(row)``, where **a higher score means more anomalous** (the
score is ``2 ** (-mean path length / c(max_samples))``, in 0..1, i.e. the
negation of scikit-learn's ``score_samples``). Rows are the hourly features of
:func:`anomalies.features.build_features`; rows with a missing value are
skipped when fitting and score ``nan``.

``fit`` checks data sufficiency first and raises
:class:`~streams.errors.InsufficientData` with the reasons (span too short,
too few complete rows, coverage too low; rows held back for calibration or
flagged by a rule are passed as ``exclude``: not fitted on, but not gaps
either). Deciding is a thresholder's job
(:mod:`anomalies.thresholds`); hours it flags are left out of the next refit
by the caller (:mod:`anomalies.detect`).

``fit`` also keeps the largest value of each column among the rows fitted
on (:meth:`IsolationForestDetector.beyond`): a tree splits a column only
between the values of its sample, so a row far above every reference row
isolates no faster than the most extreme reference row, and its score
saturates there, however far beyond it lies.

The trees are those of scikit-learn's ``IsolationForest`` with the same
seed, node for node, grown through its tree builder without the per-tree
estimator overhead (see ``_grow``). They are exported to plain arrays
(``to_dict``, with ``format_version``), and scoring walks those arrays, all
trees at once, so a model loaded from JSON scores exactly like the one
fitted, with no pickle.

Sample config::

    iforest:
      n_estimators: 100
      max_samples: 256
      min_span: 14d
      min_coverage: 0.7

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> rows = rng.normal(size=(24 * 30, 3))
>>> det = IsolationForestDetector(IsolationForestConfig(), random_state=0).fit(rows)
>>> det.score(np.array([0.0, 0.0, 0.0])) < det.score(np.array([6.0, -6.0, 6.0]))
True
>>> IsolationForestDetector.from_dict(det.to_dict()).score(np.array([6.0, -6.0, 6.0])) == det.score(np.array([6.0, -6.0, 6.0]))
True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from inventory import Duration
from streams.errors import InsufficientData, ModelError, NotFitted

__all__ = ["FORMAT_VERSION", "IsolationForestConfig", "IsolationForestDetector"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

FORMAT_VERSION = 2  # 2: the fitted rows' column maxima (``upper``); 1 is read without them
_MAX_INT = int(np.iinfo(np.int32).max)

logger = logging.getLogger(__name__)


class IsolationForestConfig(BaseModel):
    """Size of the forest and the data-sufficiency rules of its reference period."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_estimators: int = Field(default=100, ge=10, le=1000)
    max_samples: int = Field(default=256, ge=16)
    min_span: Duration = timedelta(days=14)
    """Shortest reference period (one row per hour)."""
    min_coverage: float = Field(default=0.7, gt=0, le=1)
    """Smallest share of reference rows with every feature known."""
    min_rows: int = Field(default=120, ge=16)
    """Fewest complete rows fitted on (five days of hours)."""
    step: Duration = timedelta(hours=1)
    """Time one row stands for."""


@dataclass(frozen=True, slots=True, eq=False)
class _Tree:
    left: IntArray
    right: IntArray
    feature: IntArray
    threshold: FloatArray
    path: FloatArray  # at leaves: depth + c(samples in the leaf), as scikit-learn counts it
    features: IntArray  # columns the tree was grown on


@dataclass(frozen=True, slots=True, eq=False)
class _Forest:
    """Every tree's nodes in one set of arrays, so that all trees are walked at once (one numpy step per depth).

    A leaf is its own two children, with an infinite threshold: a row that has
    reached its leaf stays there, so every row takes the same steps, without
    gathering the rows still walking at each level.
    """

    roots: IntArray
    children: IntArray  # node 2k: left child of node k, 2k + 1: right child (k itself at leaves)
    column: IntArray  # the row's column each node splits on (0 at leaves)
    threshold: FloatArray  # +inf at leaves
    path: FloatArray
    depth: int  # the deepest leaf's depth: steps of the walk

    @classmethod
    def stack(cls, trees: list[_Tree]) -> _Forest:
        sizes = np.array([t.left.size for t in trees], dtype=np.int64)
        roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        own = np.arange(int(sizes.sum()), dtype=np.int64)
        leaf = np.concatenate([t.left < 0 for t in trees])
        left = np.concatenate([t.left + r for t, r in zip(trees, roots.tolist(), strict=True)])
        right = np.concatenate([t.right + r for t, r in zip(trees, roots.tolist(), strict=True)])
        children = np.empty(2 * own.size, dtype=np.int64)
        children[0::2] = np.where(leaf, own, left)
        children[1::2] = np.where(leaf, own, right)
        column = np.where(leaf, 0, np.concatenate([t.features[t.feature] for t in trees])).astype(np.int64)
        threshold = np.where(leaf, np.inf, np.concatenate([t.threshold for t in trees]))
        depth = 0
        node = roots.copy()
        while node.size:  # breadth first: the nodes of each level
            node = node[~leaf[node]]
            if node.size:
                depth += 1
                node = np.concatenate([children[2 * node], children[2 * node + 1]])
        return cls(roots, children, column, threshold, np.concatenate([t.path for t in trees]), depth)

    def path_lengths(self, x: FloatArray) -> FloatArray:
        """Per tree (rows of the result) and row, its path length (left when the value is at most the threshold)."""
        n_rows, n_columns = x.shape
        flat = np.ascontiguousarray(x).ravel()
        node = np.repeat(self.roots, n_rows)
        row_at = np.tile(np.arange(n_rows, dtype=np.int64) * n_columns, self.roots.size)  # where each row starts in flat
        for _ in range(self.depth):
            right = flat[row_at + self.column[node]] > self.threshold[node]  # not (value <= threshold)
            node = self.children[2 * node + right]
        result: FloatArray = self.path[node].reshape(self.roots.size, n_rows)
        return result


def _average_path_length(n: FloatArray) -> FloatArray:
    """c(n) of Liu et al., the average path length of an unsuccessful BST search."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _grow(data: FloatArray, n_estimators: int, max_samples: int, random_state: int | None) -> list[_Tree]:
    """The trees scikit-learn's ``IsolationForest(n_estimators, max_samples, random_state).fit(data)`` grows.

    Grown through scikit-learn's tree builder directly, with the same random
    draws as its bagging loop (the same trees, node for node: a unit test
    compares them), without the per-tree estimator cloning and validation that
    made up most of the fitting time. Any other scikit-learn, or no seed, goes
    through ``IsolationForest`` itself.
    """
    if random_state is not None:
        try:
            return _grow_direct(data, n_estimators, max_samples, random_state)
        except (ImportError, TypeError, AttributeError):  # another scikit-learn's private API
            logger.debug("isolation trees grown through IsolationForest", exc_info=True)
    return _grow_public(data, n_estimators, max_samples, random_state)


def _grow_public(data: FloatArray, n_estimators: int, max_samples: int, random_state: int | None) -> list[_Tree]:
    # Imported here, as scikit-learn is in _grow_direct: importing it costs about a second (scipy.stats
    # with it), which a run that fits no forest (too little history, forest off) need not pay.
    from sklearn.ensemble import IsolationForest  # type: ignore[import-untyped]  # scikit-learn ships no type stubs

    forest = IsolationForest(n_estimators=n_estimators, max_samples=max_samples, random_state=random_state).fit(data)
    return _trees([e.tree_ for e in forest.estimators_], list(forest.estimators_features_))


def _grow_direct(data: FloatArray, n_estimators: int, max_samples: int, random_state: int) -> list[_Tree]:
    # What IsolationForest.fit, BaseBagging._fit, _parallel_build_estimators and
    # BaseDecisionTree._fit do for ExtraTreeRegressor(max_features=1, splitter="random"), draw for draw.
    from sklearn.tree._criterion import MSE  # type: ignore[import-untyped]  # private, no stubs
    from sklearn.tree._splitter import RandomSplitter  # type: ignore[import-untyped]  # private, no stubs
    from sklearn.tree._tree import DepthFirstTreeBuilder, Tree  # type: ignore[import-untyped]  # private, no stubs
    from sklearn.utils.random import sample_without_replacement  # type: ignore[import-untyped]  # no stubs

    x = np.ascontiguousarray(data, dtype=np.float32)
    n_rows, n_features = x.shape
    target = np.asarray(np.random.RandomState(random_state).uniform(size=n_rows))
    y = np.ascontiguousarray(target.reshape(-1, 1), dtype=np.float64)
    max_depth = int(np.ceil(np.log2(max(max_samples, 2))))
    seeds = np.random.RandomState(random_state).randint(_MAX_INT, size=n_estimators)
    one_output = np.array([1], dtype=np.intp)
    # One generator re-seeded per draw: the same states as a fresh RandomState(seed) each time (which
    # scikit-learn builds), without drawing OS entropy for every one, most of the fitting time.
    draws = np.random.RandomState(random_state)
    # One splitter and builder for every tree: the splitter takes its state from ``draws`` and the rows when
    # each build starts, the builder holds its settings only.
    splitter = RandomSplitter(MSE(1, max_samples), 1, 1, 0.0, draws, None)
    builder = DepthFirstTreeBuilder(splitter, 2, 1, 0.0, max_depth, 0.0)
    # sample_without_replacement(n_features, n_features) is every column in order, drawing nothing; its
    # rows, for a share strictly between 1 % and 99 %, are the first of ``permutation`` (its "auto" method).
    every_column = np.arange(n_features, dtype=np.int64)
    permuted = 0.01 < max_samples / n_rows < 0.99
    grown = []
    drawn = []
    for seed in seeds.tolist():
        draws.seed(seed)
        tree_seed = draws.randint(_MAX_INT)
        draws.seed(seed)
        if permuted:
            chosen = draws.permutation(n_rows)[:max_samples]
        else:
            sample_without_replacement(n_features, n_features, random_state=draws)
            chosen = sample_without_replacement(n_rows, max_samples, random_state=draws)
        indices = np.sort(chosen)
        # scikit-learn passes every row with a weight of 1 (drawn) or 0, and its splitter keeps the rows of
        # non-zero weight in row order: the drawn rows alone, in that order and unweighted, give the same
        # tree, without the builder walking (and the criterion sized for) all the rows at every tree.
        draws.seed(tree_seed)  # the splitter draws its own seed from it when the build starts
        tree = Tree(n_features, one_output, 1)
        builder.build(tree, x[indices], y[indices], None, None)
        grown.append(tree)
        drawn.append(every_column)
    return _trees(grown, drawn)


def _trees(trees: list[Any], features: list[Any]) -> list[_Tree]:
    """scikit-learn trees as plain arrays; every node's c(samples) computed in one step for the forest."""
    samples = [np.asarray(tree.n_node_samples, dtype=np.float64) for tree in trees]
    averages = np.split(_average_path_length(np.concatenate(samples)), np.cumsum([a.size for a in samples])[:-1])
    return [
        _Tree(
            left=np.asarray(tree.children_left, dtype=np.int64),
            right=np.asarray(tree.children_right, dtype=np.int64),
            feature=np.maximum(np.asarray(tree.feature, dtype=np.int64), 0),
            threshold=np.asarray(tree.threshold, dtype=np.float64),
            path=np.asarray(tree.compute_node_depths(), dtype=np.float64) + average - 1.0,
            features=np.asarray(drawn, dtype=np.int64),
        )
        for tree, drawn, average in zip(trees, features, averages, strict=True)
    ]


class IsolationForestDetector:
    """An isolation forest over hourly feature rows; higher score = more anomalous.

    Args:
        config: forest size and sufficiency rules.
        random_state: seed of the forest.
    """

    def __init__(self, config: IsolationForestConfig | None = None, random_state: int | None = 0) -> None:
        self.config = config or IsolationForestConfig()
        self.random_state = random_state
        self._trees: list[_Tree] | None = None
        self._stacked: _Forest | None = None
        self._denominator = 1.0
        self._n_features = 0
        self._upper: FloatArray | None = None

    def check_sufficiency(self, rows: FloatArray, exclude: BoolArray | None = None) -> list[str]:
        """Reasons the rows cannot make a reference period (empty when they can).

        Coverage is the share of the period's rows whose features are all
        known: rows left out of the fit on purpose (``exclude``: held back for
        calibration, flagged by a rule) are data, not gaps, and count as
        covered. The fewest-rows rule counts the rows actually fitted on.
        """
        cfg = self.config
        complete = np.isfinite(rows).all(axis=1) if rows.size else np.zeros(rows.shape[0], dtype=np.bool_)
        fitted = complete if exclude is None else complete & ~exclude
        span = rows.shape[0] * cfg.step
        reasons = []
        if span < cfg.min_span:
            reasons.append(f"reference spans {span}, need {cfg.min_span}")
        if int(fitted.sum()) < cfg.min_rows:
            reasons.append(f"{int(fitted.sum())} complete rows to fit on, need {cfg.min_rows}")
        coverage = float(complete.mean()) if rows.shape[0] else 0.0
        if coverage < cfg.min_coverage:
            reasons.append(f"coverage {coverage:.0%} of the reference period, need {cfg.min_coverage:.0%}")
        return reasons

    def fit(self, rows: FloatArray, exclude: BoolArray | None = None) -> Self:
        """Fit on reference rows (one per hour; rows with ``nan`` and ``exclude`` rows are skipped).

        Args:
            rows: the reference period, one row per hour.
            exclude: rows not to fit on (held back for calibration, flagged); they still count as covered.

        Returns:
            self, fitted.

        Raises:
            InsufficientData: with the reasons, when the rows are too few, too short or too patchy.
        """
        reasons = self.check_sufficiency(rows, exclude)
        if reasons:
            raise InsufficientData(reasons)
        keep = np.isfinite(rows).all(axis=1)
        if exclude is not None:
            keep &= ~exclude
        data = rows[keep]
        max_samples = min(self.config.max_samples, data.shape[0])
        trees = _grow(data, self.config.n_estimators, max_samples, self.random_state)
        self._trees = trees
        self._stacked = None
        self._n_features = data.shape[1]
        self._upper = data.max(axis=0)
        self._denominator = len(trees) * float(_average_path_length(np.array([float(max_samples)]))[0])
        return self

    @property
    def fitted(self) -> bool:
        """Tell whether the detector has been fitted (or loaded)."""
        return self._trees is not None

    def score_many(self, rows: FloatArray) -> FloatArray:
        """Scores of many rows; ``nan`` for rows with a missing value.

        Raises:
            NotFitted: before :meth:`fit`.
        """
        if self._trees is None:
            msg = "IsolationForestDetector used before fit()"
            raise NotFitted(msg)
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        if rows.shape[1] != self._n_features:
            msg = f"rows have {rows.shape[1]} features, the model {self._n_features}"
            raise ModelError(msg)
        out = np.full(rows.shape[0], np.nan)
        ok = np.isfinite(rows).all(axis=1)
        if ok.any():
            per_tree = self._forest().path_lengths(rows[ok])
            # Summed tree by tree, in the trees' order: the same float additions as one tree at a time.
            depths = np.zeros(per_tree.shape[1])
            for lengths in per_tree:
                depths += lengths
            out[ok] = 2.0 ** (-depths / self._denominator) if self._denominator > 0 else 1.0
        return out

    def beyond(self, rows: FloatArray, column: int, factor: float) -> BoolArray:
        """Rows whose ``column`` is above ``factor`` times its largest value among the rows fitted on.

        What the score cannot say: the trees split a column between the values
        of their sample only, so a row beyond every fitted row scores like the
        most extreme of them (issue 11: an event hall lit for three closed days,
        24-hour ratios of 4 against a reference's largest of 1, scored under the
        threshold). Only a positive largest value is scaled; otherwise (and for a
        model loaded from format 1, which does not know it) no row is beyond.

        Args:
            rows: feature rows (``nan`` never beyond).
            column: the column judged.
            factor: how many times the fitted rows' largest value a row must exceed.

        Returns:
            Per row, beyond.

        >>> det = IsolationForestDetector(random_state=0).fit(np.linspace([0.0, 0.0], [1.0, 0.5], 24 * 14))
        >>> det.beyond(np.array([[0.0, 0.9], [0.0, 1.1], [np.nan, np.nan]]), 1, 2.0).tolist()
        [False, True, False]
        """
        if self._upper is None or not self._upper[column] > 0.0:
            return np.zeros(rows.shape[0], dtype=np.bool_)
        with np.errstate(invalid="ignore"):
            result: BoolArray = np.asarray(rows[:, column] > factor * self._upper[column], dtype=np.bool_)
        return result

    def _forest(self) -> _Forest:
        if self._stacked is None:
            assert self._trees is not None  # noqa: S101 - callers check fitted first
            self._stacked = _Forest.stack(self._trees)
        return self._stacked

    def score(self, row: FloatArray) -> float:
        """Score of one row, 0 to 1, higher is more anomalous (``nan`` if a feature is missing)."""
        return float(self.score_many(np.asarray(row, dtype=np.float64)[None, :])[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe model, with ``format_version``.

        Raises:
            NotFitted: before :meth:`fit`.
        """
        if self._trees is None:
            msg = "cannot save an unfitted IsolationForestDetector"
            raise NotFitted(msg)
        return {
            **self._meta(),
            "trees": [
                {
                    "left": t.left.tolist(),
                    "right": t.right.tolist(),
                    "feature": t.feature.tolist(),
                    "threshold": [x if math.isfinite(x) else 0.0 for x in t.threshold.tolist()],
                    "path": t.path.tolist(),
                    "features": t.features.tolist(),
                }
                for t in self._trees
            ],
        }

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        """:meth:`to_dict` with the trees as a few flat arrays (a state file's form: no list of numbers).

        Returns:
            The JSON-safe part (without ``trees``) and the trees' arrays, concatenated tree after tree.

        Raises:
            NotFitted: before :meth:`fit`.
        """
        if self._trees is None:
            msg = "cannot save an unfitted IsolationForestDetector"
            raise NotFitted(msg)
        meta = self._meta()
        trees = self._trees
        arrays: dict[str, npt.NDArray[Any]] = {
            "nodes": np.array([t.left.size for t in trees], dtype=np.int64),
            "columns": np.array([t.features.size for t in trees], dtype=np.int64),
        }
        for name in ("left", "right", "feature", "threshold", "path", "features"):
            arrays[name] = np.concatenate([getattr(t, name) for t in trees])
        return meta, arrays

    @classmethod
    def from_arrays(cls, meta: dict[str, Any], arrays: Mapping[str, npt.NDArray[Any]]) -> IsolationForestDetector:
        """Load :meth:`to_arrays` output.

        Raises:
            ModelError: an unknown format version.
        """
        if meta.get("format_version") not in (1, FORMAT_VERSION):
            msg = (f"unknown IsolationForestDetector format_version {meta.get('format_version')!r} "
                   f"(this version reads {FORMAT_VERSION})")
            raise ModelError(msg)
        det = cls(IsolationForestConfig.model_validate(meta["config"]), random_state=meta["random_state"])
        det._n_features = int(meta["n_features"])
        det._denominator = float(meta["denominator"])
        det._upper = _upper_from(meta)
        nodes = np.cumsum(arrays["nodes"])[:-1]
        columns = np.cumsum(arrays["columns"])[:-1]
        split = {name: np.split(np.asarray(arrays[name]), nodes) for name in ("left", "right", "feature", "threshold", "path")}
        used = np.split(np.asarray(arrays["features"], dtype=np.int64), columns)
        det._trees = [
            _Tree(left=split["left"][i].astype(np.int64), right=split["right"][i].astype(np.int64),
                  feature=split["feature"][i].astype(np.int64), threshold=split["threshold"][i].astype(np.float64),
                  path=split["path"][i].astype(np.float64), features=used[i])
            for i in range(len(used))
        ]
        return det

    def _meta(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "config": {
                k: f"{v.total_seconds()}s" if isinstance(v, timedelta) else v for k, v in self.config.model_dump().items()
            },
            "random_state": self.random_state,
            "n_features": self._n_features,
            "denominator": self._denominator,
            "upper": None if self._upper is None else self._upper.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IsolationForestDetector:
        """Load :meth:`to_dict` output, whatever format version this code reads.

        Raises:
            ModelError: an unknown format version.
        """
        version = data.get("format_version")
        if version == 1:
            return cls._load_v1(data)
        if version == FORMAT_VERSION:
            return cls._load_v2(data)
        msg = f"unknown IsolationForestDetector format_version {version!r} (this version reads {FORMAT_VERSION})"
        raise ModelError(msg)

    @classmethod
    def _load_v2(cls, data: dict[str, Any]) -> IsolationForestDetector:
        det = cls._load_v1(data)
        det._upper = _upper_from(data)
        return det

    @classmethod
    def _load_v1(cls, data: dict[str, Any]) -> IsolationForestDetector:
        # Format 1 has no column maxima: nothing is beyond the fitted rows until the next fit.
        det = cls(IsolationForestConfig.model_validate(data["config"]), random_state=data["random_state"])
        det._n_features = int(data["n_features"])
        det._denominator = float(data["denominator"])
        det._trees = [
            _Tree(
                left=np.asarray(t["left"], dtype=np.int64),
                right=np.asarray(t["right"], dtype=np.int64),
                feature=np.asarray(t["feature"], dtype=np.int64),
                threshold=np.asarray(t["threshold"], dtype=np.float64),
                path=np.asarray(t["path"], dtype=np.float64),
                features=np.asarray(t["features"], dtype=np.int64),
            )
            for t in data["trees"]
        ]
        return det


def _upper_from(data: Mapping[str, Any]) -> FloatArray | None:
    """The fitted rows' column maxima of a saved model (``None``: a format-1 model, which does not hold them)."""
    upper = data.get("upper")
    return None if upper is None else np.asarray(upper, dtype=np.float64)
