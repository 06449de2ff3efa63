"""Thresholders: they turn anomaly scores into flags, apart from the scoring.

A detector scores (higher is more anomalous); a :class:`Thresholder` decides.
:class:`QuantileThreshold` is calibrated on each model's own reference scores
and keeps a running window of the scores it accepted, so the threshold of a
building whose consumption is noisy is higher than that of a quiet one,
without guessing a contamination fraction. Flagged scores are not added to
the window, as flagged hours are not used to refit the model.

Sample config::

    threshold: {kind: quantile, q: 0.998, window: 4000}

>>> import numpy as np
>>> th = QuantileThreshold(q=0.99).calibrate(np.linspace(0.3, 0.6, 1001))
>>> round(th.threshold, 3), th.flag(0.7), th.flag(0.4)
(0.597, True, False)
>>> QuantileThreshold.from_dict(th.to_dict()).threshold == th.threshold
True
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Protocol, Self

import numpy as np
import numpy.typing as npt

from streams.errors import InsufficientData, ModelError, NotFitted

__all__ = ["FORMAT_VERSION", "FixedThreshold", "QuantileThreshold", "Thresholder", "thresholder_from_dict"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

FORMAT_VERSION = 1


class Thresholder(Protocol):
    """Turns a score into a flag."""

    @property
    def threshold(self) -> float:
        """The score above which a row is flagged."""
        ...

    def flag(self, score: float) -> bool:
        """Tell whether a score is anomalous; an accepted score may update the threshold."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state, with ``format_version``."""
        ...


class FixedThreshold:
    """A fixed threshold, for a rule or a hand-set model.

    Args:
        value: scores strictly above it are flagged.
    """

    def __init__(self, value: float) -> None:
        self.value = value

    @property
    def threshold(self) -> float:
        """The fixed value."""
        return self.value

    def flag(self, score: float) -> bool:
        """``score > value``; an unknown score is never flagged."""
        return math.isfinite(score) and score > self.value

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state."""
        return {"format_version": FORMAT_VERSION, "kind": "fixed", "value": self.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FixedThreshold:
        """Load :meth:`to_dict` output."""
        _check_version(data)
        return cls(float(data["value"]))


class QuantileThreshold:
    """The ``q`` quantile of the reference scores, then of a running window of accepted scores.

    Args:
        q: the quantile, e.g. 0.998 (about one hour in 500 of normal data above it).
        window: how many accepted scores the running quantile keeps.
        min_scores: fewest reference scores :meth:`calibrate` accepts.
    """

    def __init__(self, q: float = 0.998, window: int = 4000, min_scores: int = 100) -> None:
        self.q = q
        self.window = window
        self.min_scores = min_scores
        self._scores: deque[float] = deque(maxlen=window)
        self._threshold: float | None = None

    def calibrate(self, scores: FloatArray) -> Self:
        """Set the threshold from reference scores (``nan`` ignored).

        Raises:
            InsufficientData: fewer than ``min_scores`` finite scores.
        """
        finite = scores[np.isfinite(scores)]
        if finite.size < self.min_scores:
            raise InsufficientData([f"{finite.size} reference scores, need {self.min_scores}"])
        self._scores.clear()
        self._scores.extend(finite[-self.window:].tolist())
        self._threshold = float(np.quantile(finite, self.q))
        return self

    @property
    def threshold(self) -> float:
        """The current threshold.

        Raises:
            NotFitted: before :meth:`calibrate`.
        """
        if self._threshold is None:
            msg = "QuantileThreshold used before calibrate()"
            raise NotFitted(msg)
        return self._threshold

    def flag(self, score: float) -> bool:
        """Flag a score above the threshold; an accepted score joins the running window."""
        if not math.isfinite(score):
            return False
        if score > self.threshold:
            return True
        self._scores.append(score)
        return False

    def flag_many(self, scores: FloatArray) -> BoolArray:
        """:meth:`flag` of each score in turn, at once: the threshold does not move until :meth:`update`.

        >>> th = QuantileThreshold(q=0.5, min_scores=3).calibrate(np.array([1.0, 2.0, 3.0]))
        >>> th.flag_many(np.array([1.5, float("nan"), 2.5])).tolist(), list(th._scores)[-1]
        ([False, False, True], 1.5)
        """
        finite = np.isfinite(scores)
        if not finite.any():
            return np.zeros(scores.shape, dtype=np.bool_)
        hit: BoolArray = finite & (scores > self.threshold)
        self._scores.extend(scores[finite & ~hit].tolist())
        return hit

    def update(self) -> float:
        """Recompute the threshold from the running window and return it."""
        if self._scores:
            self._threshold = float(np.quantile(np.fromiter(self._scores, dtype=np.float64), self.q))
        return self.threshold

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state, with ``format_version``."""
        return {
            "format_version": FORMAT_VERSION,
            "kind": "quantile",
            "q": self.q,
            "window": self.window,
            "min_scores": self.min_scores,
            "threshold": self._threshold,
            "scores": list(self._scores),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantileThreshold:
        """Load :meth:`to_dict` output."""
        _check_version(data)
        th = cls(q=float(data["q"]), window=int(data["window"]), min_scores=int(data["min_scores"]))
        th._scores.extend(map(float, data["scores"]))
        th._threshold = None if data["threshold"] is None else float(data["threshold"])
        return th


def _check_version(data: dict[str, Any]) -> None:
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        msg = f"unknown thresholder format_version {version!r} (this version reads {FORMAT_VERSION})"
        raise ModelError(msg)


def thresholder_from_dict(data: dict[str, Any]) -> FixedThreshold | QuantileThreshold:
    """Load any thresholder written by ``to_dict``.

    Raises:
        ModelError: unknown kind or format version.
    """
    kind = data.get("kind")
    if kind == "fixed":
        return FixedThreshold.from_dict(data)
    if kind == "quantile":
        return QuantileThreshold.from_dict(data)
    msg = f"unknown thresholder kind {kind!r}"
    raise ModelError(msg)
