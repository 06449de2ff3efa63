"""Turn the successive indexes of a cumulative counter into interval consumption.

Every pair of successive readings of a counter gives an :class:`Interval`:
the consumption between their two timestamps, in the canonical unit (kWh for
energies, gas included; m3 for water). On the way:

* **rollover**: a register that wraps at its width (16, 32 or 64 bits, times
  its scale) is unwrapped. A drop is a rollover when the index was in the upper
  half of the register range and is now in the lower half with an increment of
  at most half the range;
* **declared replacement**: a replacement declared in the inventory (old final
  index, new initial index) is applied exactly;
* **suspicious readings are held** (issue 13 review): any other drop, and an
  implausible jump (a rate more than ``jump_factor`` (20) times the highest
  rate of the accepted intervals, that peak halving every week without a
  higher one, once there are ``min_history`` (6) of them, and more than
  ``jump_floor`` canonical units), does not move the base:
  the reading is *pending* (:attr:`Rejection.PENDING`, no interval) and the
  next reading judges it (:class:`Verdict`):

  - the next reading continues from the base (no drop from it, at a plausible
    rate; for a pending drop, any reading at or above the base): the pending
    reading is dropped, a :attr:`~Verdict.GLITCH` (a small drop, at most
    0.1 % of the index: :attr:`~Verdict.JITTER`). The interval runs from the
    base to the new reading: **the sum is the consumption from the base to the
    new reading**, the dropped reading never counts (``193850 → 1938500 →
    193851`` gives 1, not 1 744 650 + 193 851);
  - otherwise, when it continues from the pending reading (no drop from it):
    the change is confirmed. A jump is consumption (:attr:`~Verdict.JUMP`: a
    boiler starting after a summer at rest counts whole); a drop below a tenth
    of the base is a restart from zero (:attr:`~Verdict.RESET`: the pending
    index is the consumption since); any other drop is a
    :attr:`~Verdict.REBASE`: the drop is no consumption and the pending index
    is the new base, so what follows counts (a gas meter re-based 2000 m3 down
    no longer reads zero for weeks). One interval runs from the base to the
    new reading, flagged estimated: **its amount is the jump, or the index
    since zero, or nothing, plus the consumption from the pending reading to
    the new one**;
  - otherwise (the next reading falls below both), the pending reading is
    dropped as a glitch and the next one is judged against the base in its
    place;
  - a declared replacement between the pending reading and the next confirms
    the pending reading.

  Only suspicious readings wait: the others give their interval at once. A
  small drop that the next reading confirms is thus a re-base (it counts the
  drop again once the meter climbs back, at most the drop's size), and one the
  next reading climbs past is jitter (nothing lost, nothing doubled);
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
declared replacements, confirmed resets and jumps and gaps up to
``max_spread``, up to the last reading that is not pending (see the property
tests); a glitch is never counted, a re-base counts nothing for its drop.
Each judgement is a :class:`Judgement` on the step (:attr:`CounterStep.judged`),
counted on the tracker (:attr:`CounterTracker.verdicts`), with the sentence
the pipeline logs and the offline commands print.

:meth:`CounterTracker.plan` computes what a reading does without changing the
tracker, and :meth:`CounterTracker.commit` applies it, so a caller that fails
between the two leaves the tracker as it was. The pending reading and the
peak rate are part of :meth:`CounterTracker.to_dict`.

>>> from datetime import UTC, datetime, timedelta
>>> t = datetime(2026, 1, 5, tzinfo=UTC)
>>> c = CounterTracker("p", unit_factor=1.0, wrap=65536.0)
>>> c.update(t, 65530.0) is None
True
>>> c.update(t + timedelta(minutes=1), 4.0).amount
10.0
>>> c.update(t + timedelta(minutes=2), 2.0) is None, c.last_rejection.value  # a drop waits
(True, 'pending')
>>> c.update(t + timedelta(minutes=3), 5.0).amount, c.last_judgement.verdict.value  # it was a glitch
(1.0, 'glitch')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from inventory import MeterReplacement

__all__ = ["MAX_SPREAD", "CounterStep", "CounterTracker", "Interval", "Judgement", "Rejection", "Verdict"]

MAX_SPREAD = timedelta(days=31)
"""Default longest counter interval spread over windows; a longer one is an unexplained gap."""

PEAK_HALF_LIFE = timedelta(days=7)
"""The highest recent rate a jump is judged against halves every week without a higher one.

A boiler that restarts every morning after a night at rest is not held; one
that starts in autumn after a summer at rest is, once (issue 13 review)."""
_JITTER = 1e-3
"""A dropped fall of at most this fraction of the index is jitter, not a glitch."""
_RESET = 0.1
"""A confirmed fall below this fraction of the index is a restart from zero."""


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
    PENDING = "pending"
    """A drop or an implausible jump: held until the next reading judges it."""


class Verdict(str, Enum):
    """What the next reading made of a pending one."""

    GLITCH = "glitch"
    """Dropped: the next reading continues from the base."""
    JITTER = "jitter"
    """A small drop (at most 0.1 % of the index) the next reading climbs past: dropped."""
    JUMP = "jump"
    """Confirmed jump: consumption, estimated."""
    RESET = "reset"
    """Confirmed fall to near zero: a restart, the index is the consumption since."""
    REBASE = "rebase"
    """Confirmed drop: no consumption for it, the lower index is the new base."""


@dataclass(frozen=True, slots=True)
class Judgement:
    """A pending reading judged by the next one.

    Attributes:
        verdict: what it was.
        ts: time of the pending reading.
        value: its index.
        base: the index it was compared with (the base before it).
        next_value: the index of the reading that judged it.
        below_both: the next reading fell below both (it is judged against the base in turn).
    """

    verdict: Verdict
    ts: datetime
    value: float
    base: float
    next_value: float
    below_both: bool = False

    def describe(self, point_id: str) -> str:
        """One line for a log or a report's warnings."""
        at = self.ts.isoformat(timespec="minutes")
        value, base, nxt = _fmt(self.value), _fmt(self.base), _fmt(self.next_value)
        if self.verdict in (Verdict.GLITCH, Verdict.JITTER):
            what = "a glitch" if self.verdict is Verdict.GLITCH else "jitter"
            why = f"is below it and below {base}" if self.below_both else f"continues from {base}"
            return f"{point_id}: reading {value} at {at} dropped as {what} (next reading {nxt} {why})"
        if self.verdict is Verdict.JUMP:
            return (f"{point_id}: jump from {base} to {value} at {at} confirmed by the next reading {nxt}: "
                    "counted as consumption (estimated)")
        if self.verdict is Verdict.RESET:
            return (f"{point_id}: index fell from {base} to {value} at {at}, confirmed by the next reading {nxt}: "
                    f"a restart from zero, {value} counted as consumption since (estimated)")
        return (f"{point_id}: index fell from {base} to {value} at {at}, confirmed by the next reading {nxt}: "
                f"re-based, the drop of {_fmt(self.base - self.value)} is not consumption "
                "(declare the meter's replacement in the inventory if it was replaced)")


def _fmt(value: float) -> str:
    return f"{value:.10g}"


@dataclass(frozen=True, slots=True)
class CounterStep:
    """What one reading does to a tracker, computed by :meth:`CounterTracker.plan`.

    Attributes:
        ts: time of the tracker's base after the step.
        value: index of the base after the step.
        interval: the consumption since the previous base, if any.
        rejection: why there is no interval (``None`` when there is one).
        unspread: for :attr:`Rejection.GAP`, the consumption across the gap, canonical unit.
        rollover: the step unwraps a register rollover.
        pending: the reading held for judgement after the step (:attr:`Rejection.PENDING`), if any.
        judged: the judgement of the reading that was pending before the step, if any.
        rate: the rate (canonical units per second) of an accepted interval, remembered to judge jumps.
    """

    ts: datetime
    value: float
    interval: Interval | None
    rejection: Rejection | None
    unspread: float = 0.0
    rollover: bool = False
    pending: tuple[datetime, float] | None = None
    judged: Judgement | None = None
    rate: float | None = None

    @property
    def moves(self) -> bool:
        """Whether committing the step changes the tracker's base or pending reading."""
        return self.rejection not in (Rejection.DUPLICATE, Rejection.OUT_OF_ORDER)


class CounterTracker:
    """State of one counter: its base (last accepted index and time), and a pending reading.

    Args:
        point_id: the counter.
        unit_factor: canonical units per unit of the index (1e-3 for Wh → kWh,
            11.2 for gas m3 → kWh...).
        wrap: the index value at which the register wraps (``2**bits * scale``),
            or None for a float register that never wraps.
        max_gap: intervals longer than this are flagged estimated.
        replacements: declared swaps and resets.
        max_spread: intervals longer than this are unexplained gaps, not spread.
        jump_factor: a rise faster than this many times the highest recent rate
            is held for confirmation (None: never).
        min_history: accepted intervals needed before a jump is judged.
        jump_floor: a rise of at most this (canonical units) is never held.
    """

    def __init__(
        self,
        point_id: str,
        unit_factor: float,
        wrap: float | None = None,
        max_gap: timedelta = timedelta(minutes=15),
        replacements: list[MeterReplacement] | None = None,
        max_spread: timedelta = MAX_SPREAD,
        *,
        jump_factor: float | None = 20.0,
        min_history: int = 6,
        jump_floor: float = 1.0,
    ) -> None:
        self.point_id = point_id
        self.unit_factor = unit_factor
        self.wrap = wrap
        self.max_gap = max_gap
        self.replacements = sorted(replacements or [], key=lambda r: r.at)
        self.max_spread = max_spread
        self.jump_factor = jump_factor
        self.min_history = min_history
        self.jump_floor = jump_floor
        self.last_ts: datetime | None = None
        self.last_value: float | None = None
        self.pending: tuple[datetime, float] | None = None
        self.peak_rate = 0.0
        """The highest rate (canonical units per second) of the accepted intervals, decaying (``PEAK_HALF_LIFE``)."""
        self.peak_ts: datetime | None = None
        self.accepted = 0
        """Intervals accepted since the first reading or the last unexplained gap."""
        self.rollovers = 0
        self.verdicts: dict[Verdict, int] = dict.fromkeys(Verdict, 0)
        self.last_rejection: Rejection | None = None
        self.last_judgement: Judgement | None = None

    @property
    def resets(self) -> int:
        """Confirmed undeclared resets."""
        return self.verdicts[Verdict.RESET]

    def update(self, ts: datetime, value: float) -> Interval | None:
        """Feed one index; return the interval since the previous base, if any.

        When it returns None, :attr:`last_rejection` says why;
        :attr:`last_judgement` tells what became of a pending reading.
        """
        step = self.plan(ts, value)
        self.commit(step)
        return step.interval

    def plan(self, ts: datetime, value: float) -> CounterStep:
        """What feeding ``(ts, value)`` would do, without changing the tracker."""
        if self.last_ts is None or self.last_value is None:
            return CounterStep(ts, value, None, Rejection.FIRST)
        latest = self.pending[0] if self.pending is not None else self.last_ts
        if ts <= latest:
            return CounterStep(ts, value, None, Rejection.DUPLICATE if ts == latest else Rejection.OUT_OF_ORDER)
        if self.pending is None:
            return self._judge_new(self.last_ts, self.last_value, ts, value)
        t0, v0 = self.last_ts, self.last_value
        tp, vp = self.pending
        declared = any(tp < swap.at <= ts for swap in self.replacements)
        # A pending drop: any reading at or above the base climbs past it.
        from_base = self._delta(t0, v0, ts, value)
        base_ok = from_base[0] >= 0 and (vp < v0 or not self._jump(t0, ts, from_base[0]))
        if not declared and base_ok:
            drop = v0 - vp
            verdict = Verdict.JITTER if 0 < drop <= _JITTER * abs(v0) else Verdict.GLITCH
            step = self._judge_new(t0, v0, ts, value)
            return replace(step, judged=Judgement(verdict, tp, vp, v0, value), interval=_estimated(step.interval))
        from_pending = self._delta(tp, vp, ts, value)
        if declared or from_pending[0] >= 0:
            return self._confirm(t0, v0, tp, vp, ts, value, from_pending)
        # Below both: the pending reading was a glitch; the new one is judged against the base instead.
        step = self._judge_new(t0, v0, ts, value)
        return replace(step, judged=Judgement(Verdict.GLITCH, tp, vp, v0, value, below_both=True))

    def _confirm(self, t0: datetime, v0: float, tp: datetime, vp: float, ts: datetime, value: float,
                 after: tuple[float, bool]) -> CounterStep:
        """The pending reading confirmed: one interval from the base to the new reading."""
        first, rollover = self._delta(t0, v0, tp, vp)
        if first >= 0:
            verdict = Verdict.JUMP
        elif vp < _RESET * v0 and vp >= 0:
            verdict, first = Verdict.RESET, vp
        else:
            verdict, first = Verdict.REBASE, 0.0
        judged = Judgement(verdict, tp, vp, v0, value)
        amount = (first + max(after[0], 0.0)) * self.unit_factor
        if ts - t0 > self.max_spread:
            return CounterStep(ts, value, None, Rejection.GAP, amount, rollover or after[1], judged=judged)
        interval = Interval(self.point_id, t0, ts, amount, True)
        rate = amount / (ts - t0).total_seconds()
        return CounterStep(ts, value, interval, None, 0.0, rollover or after[1], judged=judged, rate=rate)

    def _judge_new(self, t0: datetime, v0: float, ts: datetime, value: float) -> CounterStep:
        """A reading against the base, nothing pending: an interval, a gap, or held."""
        delta, rollover = self._delta(t0, v0, ts, value)
        span = ts - t0
        if span > self.max_spread:
            return CounterStep(ts, value, None, Rejection.GAP, max(delta, 0.0) * self.unit_factor, rollover)
        declared = bool(self.replacements) and any(t0 < swap.at <= ts for swap in self.replacements)
        if not declared and (delta < 0 or self._jump(t0, ts, delta)):
            return CounterStep(t0, v0, None, Rejection.PENDING, pending=(ts, value))
        amount = delta * self.unit_factor
        interval = Interval(self.point_id, t0, ts, amount, span > self.max_gap)
        return CounterStep(ts, value, interval, None, 0.0, rollover, rate=amount / span.total_seconds())

    def _jump(self, t0: datetime, t1: datetime, delta: float) -> bool:
        """Whether a rise is implausible for this counter: far faster than its recent intervals, and not small."""
        if self.jump_factor is None or self.accepted < self.min_history:
            return False
        amount = delta * self.unit_factor
        if amount <= self.jump_floor:
            return False
        return amount / (t1 - t0).total_seconds() > self.jump_factor * self._peak_at(t1)

    def _peak_at(self, ts: datetime) -> float:
        if self.peak_ts is None or ts <= self.peak_ts:
            return self.peak_rate
        return self.peak_rate * math.pow(0.5, (ts - self.peak_ts) / PEAK_HALF_LIFE)

    def commit(self, step: CounterStep) -> None:
        """Apply a step made by :meth:`plan` on the tracker's current state."""
        self.last_rejection = step.rejection
        self.last_judgement = step.judged
        if not step.moves:
            return
        self.last_ts, self.last_value = step.ts, step.value
        self.pending = step.pending
        self.rollovers += step.rollover
        if step.judged is not None:
            self.verdicts[step.judged.verdict] += 1
        if step.rate is not None:
            # The decayed peak is at most the stored one: no decay to compute when the rate reaches it.
            peak = step.rate if step.rate >= self.peak_rate else max(self._peak_at(step.ts), step.rate)
            self.peak_rate, self.peak_ts = peak, step.ts
            self.accepted += 1
        elif step.rejection is Rejection.GAP:
            self.peak_rate, self.peak_ts, self.accepted = 0.0, None, 0

    def _delta(self, t0: datetime, v0: float, t1: datetime, v1: float) -> tuple[float, bool]:
        """(delta, rollover) between two indexes; a negative delta is a drop."""
        for swap in self.replacements:
            if t0 < swap.at <= t1:
                return (swap.old_final - v0) + (v1 - swap.new_initial), False
        delta = v1 - v0
        if delta >= 0:
            return delta, False
        if self.wrap is not None:
            half = self.wrap / 2
            wrapped = delta + self.wrap
            if v0 >= half and v1 < half and wrapped <= half:
                return wrapped, True
        return delta, False

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state, to resume after a restart (the pending reading and the peak rate included)."""
        return {
            "last_ts": self.last_ts.timestamp() if self.last_ts else None,
            "last_value": self.last_value,
            "pending": [self.pending[0].timestamp(), self.pending[1]] if self.pending else None,
            "peak_rate": self.peak_rate,
            "peak_ts": self.peak_ts.timestamp() if self.peak_ts else None,
            "accepted": self.accepted,
            "rollovers": self.rollovers,
            "verdicts": {v.value: n for v, n in self.verdicts.items()},
        }

    def load(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`to_dict` saved (a state saved before pending readings existed has none)."""
        ts = state.get("last_ts")
        self.last_ts = datetime.fromtimestamp(ts, UTC) if ts is not None else None
        self.last_value = state.get("last_value")
        pending = state.get("pending")
        self.pending = (datetime.fromtimestamp(pending[0], UTC), float(pending[1])) if pending else None
        self.peak_rate = float(state.get("peak_rate", 0.0))
        peak_ts = state.get("peak_ts")
        self.peak_ts = datetime.fromtimestamp(peak_ts, UTC) if peak_ts is not None else None
        self.accepted = int(state.get("accepted", 0))
        self.rollovers = int(state.get("rollovers", 0))
        saved = state.get("verdicts", {})
        self.verdicts = {v: int(saved.get(v.value, 0)) for v in Verdict}
        if "verdicts" not in state:
            self.verdicts[Verdict.RESET] = int(state.get("resets", 0))


def _estimated(interval: Interval | None) -> Interval | None:
    """A reading was dropped inside the interval: flag it estimated."""
    return replace(interval, estimated=True) if interval is not None else None
