"""Turn the successive indexes of a cumulative counter into interval consumption.

Every pair of successive readings of a counter gives an :class:`Interval`:
the consumption between their two timestamps, in the canonical unit (kWh for
energies, gas included; m3 for water). On the way:

* **rollover**: a register that wraps at its width (16, 32 or 64 bits, times
  its scale) is unwrapped. A drop is a rollover when the index was in the upper
  half of the register range and is now in the lower half with an increment of
  at most half the range;
* **reset / replacement**: a replacement declared in the inventory (old final
  index, new initial index) is applied exactly. An undeclared fall to near zero
  (below half the previous index) is taken as a restart from zero: the new index
  is the consumption since, flagged estimated;
* **backward steps**: any other drop (a meter's jitter, an index corrected
  down by a few units) is no consumption, not a restart: the interval is zero,
  flagged estimated, and the counter keeps the higher index as its base, so the
  consumption resumes when the meter climbs past it (:attr:`CounterStep.backward`;
  adding the whole index, as a reset would, made a month of 4 810 kWh read
  264 077 kWh);
* **gaps**: an interval longer than ``max_gap`` is flagged estimated; the
  windows spread its consumption over its whole span instead of dumping it
  into the window where the meter came back;
* **unexplained gaps**: an interval longer than ``max_spread`` (31 days by
  default) is not spread at all: a device whose clock was never set (1970)
  then fixed, or a meter silent for months, would otherwise cut years into
  10-minute windows (issue 10). The reading becomes the new base and the
  tracker reports :attr:`Rejection.GAP` with the consumption it did not spread;
* **out-of-order and duplicates**: a reading at or before the last one is not
  used (it is reported, not silently dropped): the consumption between indexes
  already seen is already accounted for.

The sum of the intervals is thus the true consumption, whatever the rollovers,
resets and gaps up to ``max_spread`` (see the property tests); a backward step
delays the consumption by its size, never adds it.

:meth:`CounterTracker.plan` computes what a reading does without changing the
tracker, and :meth:`CounterTracker.commit` applies it, so a caller that fails
between the two leaves the tracker as it was.

>>> from datetime import UTC, datetime, timedelta
>>> t = datetime(2026, 1, 5, tzinfo=UTC)
>>> c = CounterTracker("p", unit_factor=1.0, wrap=65536.0)
>>> c.update(t, 65530.0) is None
True
>>> c.update(t + timedelta(minutes=1), 4.0).amount
10.0
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from inventory import MeterReplacement

__all__ = ["MAX_SPREAD", "CounterStep", "CounterTracker", "Interval", "Rejection"]

MAX_SPREAD = timedelta(days=31)
"""Default longest counter interval spread over windows; a longer one is an unexplained gap."""


@dataclass(frozen=True, slots=True)
class Interval:
    """Consumption of one counter between two readings, in the canonical unit."""

    point_id: str
    start: datetime
    end: datetime
    amount: float
    estimated: bool = False


class Rejection(str, Enum):
    """Why a counter reading gave no interval."""

    FIRST = "first"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    GAP = "gap"
    """Longer than ``max_spread``: the reading is the new base, the consumption across is not spread."""


@dataclass(frozen=True, slots=True)
class CounterStep:
    """What one reading does to a tracker, computed by :meth:`CounterTracker.plan`.

    Attributes:
        ts: time of the reading.
        value: index of the reading.
        interval: the consumption since the previous reading, if any.
        rejection: why there is no interval (``None`` when there is one).
        unspread: for :attr:`Rejection.GAP`, the consumption across the gap, canonical unit.
        rollover: the step unwraps a register rollover.
        reset: the step is an undeclared reset.
        backward: the step is a small backward step (no consumption; the base stays at the higher index).
    """

    ts: datetime
    value: float
    interval: Interval | None
    rejection: Rejection | None
    unspread: float = 0.0
    rollover: bool = False
    reset: bool = False
    backward: bool = False

    @property
    def moves(self) -> bool:
        """Whether committing the step moves the tracker to this reading."""
        return self.rejection not in (Rejection.DUPLICATE, Rejection.OUT_OF_ORDER)


class CounterTracker:
    """State of one counter: its last index and time.

    Args:
        point_id: the counter.
        unit_factor: canonical units per unit of the index (1e-3 for Wh → kWh,
            11.2 for gas m3 → kWh...).
        wrap: the index value at which the register wraps (``2**bits * scale``),
            or None for a float register that never wraps.
        max_gap: intervals longer than this are flagged estimated.
        replacements: declared swaps and resets.
        max_spread: intervals longer than this are unexplained gaps, not spread.
    """

    def __init__(
        self,
        point_id: str,
        unit_factor: float,
        wrap: float | None = None,
        max_gap: timedelta = timedelta(minutes=15),
        replacements: list[MeterReplacement] | None = None,
        max_spread: timedelta = MAX_SPREAD,
    ) -> None:
        self.point_id = point_id
        self.unit_factor = unit_factor
        self.wrap = wrap
        self.max_gap = max_gap
        self.replacements = sorted(replacements or [], key=lambda r: r.at)
        self.max_spread = max_spread
        self.last_ts: datetime | None = None
        self.last_value: float | None = None
        self.resets = 0
        self.rollovers = 0
        self.backward_steps = 0
        self.last_rejection: Rejection | None = None

    def update(self, ts: datetime, value: float) -> Interval | None:
        """Feed one index; return the interval since the previous one, if any.

        When it returns None, :attr:`last_rejection` says why.
        """
        step = self.plan(ts, value)
        self.commit(step)
        return step.interval

    def plan(self, ts: datetime, value: float) -> CounterStep:
        """What feeding ``(ts, value)`` would do, without changing the tracker."""
        if self.last_ts is None or self.last_value is None:
            return CounterStep(ts, value, None, Rejection.FIRST)
        if ts <= self.last_ts:
            return CounterStep(ts, value, None, Rejection.DUPLICATE if ts == self.last_ts else Rejection.OUT_OF_ORDER)
        delta, estimated, rollover, reset = self._delta(self.last_ts, self.last_value, ts, value)
        backward = delta < 0
        base = self.last_value if backward else value
        delta = max(delta, 0.0)
        span = ts - self.last_ts
        if span > self.max_spread:
            return CounterStep(ts, base, None, Rejection.GAP, delta * self.unit_factor, rollover, reset, backward)
        interval = Interval(self.point_id, self.last_ts, ts, delta * self.unit_factor,
                            estimated or backward or span > self.max_gap)
        return CounterStep(ts, base, interval, None, 0.0, rollover, reset, backward)

    def commit(self, step: CounterStep) -> None:
        """Apply a step made by :meth:`plan` on the tracker's current state."""
        self.last_rejection = step.rejection
        if not step.moves:
            return
        self.last_ts, self.last_value = step.ts, step.value
        self.rollovers += step.rollover
        self.resets += step.reset
        self.backward_steps += step.backward

    def _delta(self, t0: datetime, v0: float, t1: datetime, v1: float) -> tuple[float, bool, bool, bool]:
        """(delta, estimated, rollover, reset) between two indexes; a negative delta is a backward step."""
        for swap in self.replacements:
            if t0 < swap.at <= t1:
                return (swap.old_final - v0) + (v1 - swap.new_initial), False, False, False
        delta = v1 - v0
        if delta >= 0:
            return delta, False, False, False
        if self.wrap is not None:
            half = self.wrap / 2
            wrapped = delta + self.wrap
            if v0 >= half and v1 < half and wrapped <= half:
                return wrapped, False, True, False
        if 0 <= v1 < v0 / 2:
            # An undeclared fall to near zero: the meter restarted from zero.
            return v1, True, False, True
        return delta, True, False, False

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state, to resume after a restart."""
        return {
            "last_ts": self.last_ts.timestamp() if self.last_ts else None,
            "last_value": self.last_value,
            "resets": self.resets,
            "rollovers": self.rollovers,
            "backward_steps": self.backward_steps,
        }

    def load(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`to_dict` saved."""
        ts = state.get("last_ts")
        self.last_ts = datetime.fromtimestamp(ts, UTC) if ts is not None else None
        self.last_value = state.get("last_value")
        self.resets = int(state.get("resets", 0))
        self.rollovers = int(state.get("rollovers", 0))
        self.backward_steps = int(state.get("backward_steps", 0))
