"""Turn the successive indexes of a cumulative counter into interval consumption.

Every pair of successive readings of a counter gives an :class:`Interval`:
the consumption between their two timestamps, in the canonical unit (kWh for
energies, gas included; m3 for water). On the way:

* **rollover**: a register that wraps at its width (16, 32 or 64 bits, times
  its scale) is unwrapped. A drop is a rollover when the index was in the upper
  half of the register range and is now in the lower half with an increment of
  at most half the range; any other drop is a reset;
* **reset / replacement**: a replacement declared in the inventory (old final
  index, new initial index) is applied exactly. An undeclared drop is taken as a
  restart from zero: the new index is the consumption since, flagged estimated;
* **gaps**: an interval longer than ``max_gap`` is flagged estimated; the
  windows spread its consumption over its whole span instead of dumping it
  into the window where the meter came back;
* **out-of-order and duplicates**: a reading at or before the last one is not
  used (it is reported, not silently dropped): the consumption between indexes
  already seen is already accounted for.

The sum of the intervals is thus the true consumption, whatever the rollovers,
resets and gaps (see the property tests).

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

__all__ = ["CounterTracker", "Interval", "Rejection"]


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
    """

    def __init__(
        self,
        point_id: str,
        unit_factor: float,
        wrap: float | None = None,
        max_gap: timedelta = timedelta(minutes=15),
        replacements: list[MeterReplacement] | None = None,
    ) -> None:
        self.point_id = point_id
        self.unit_factor = unit_factor
        self.wrap = wrap
        self.max_gap = max_gap
        self.replacements = sorted(replacements or [], key=lambda r: r.at)
        self.last_ts: datetime | None = None
        self.last_value: float | None = None
        self.resets = 0
        self.rollovers = 0
        self.last_rejection: Rejection | None = None

    def update(self, ts: datetime, value: float) -> Interval | None:
        """Feed one index; return the interval since the previous one, if any.

        When it returns None, :attr:`last_rejection` says why.
        """
        if self.last_ts is None or self.last_value is None:
            self.last_ts, self.last_value = ts, value
            self.last_rejection = Rejection.FIRST
            return None
        if ts <= self.last_ts:
            self.last_rejection = Rejection.DUPLICATE if ts == self.last_ts else Rejection.OUT_OF_ORDER
            return None
        delta, estimated = self._delta(self.last_ts, self.last_value, ts, value)
        interval = Interval(
            self.point_id,
            self.last_ts,
            ts,
            delta * self.unit_factor,
            estimated or ts - self.last_ts > self.max_gap,
        )
        self.last_ts, self.last_value = ts, value
        self.last_rejection = None
        return interval

    def _delta(self, t0: datetime, v0: float, t1: datetime, v1: float) -> tuple[float, bool]:
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
                self.rollovers += 1
                return wrapped, False
        # An undeclared drop: the meter restarted from zero.
        self.resets += 1
        return v1, True

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state, to resume after a restart."""
        return {
            "last_ts": self.last_ts.timestamp() if self.last_ts else None,
            "last_value": self.last_value,
            "resets": self.resets,
            "rollovers": self.rollovers,
        }

    def load(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`to_dict` saved."""
        ts = state.get("last_ts")
        self.last_ts = datetime.fromtimestamp(ts, UTC) if ts is not None else None
        self.last_value = state.get("last_value")
        self.resets = int(state.get("resets", 0))
        self.rollovers = int(state.get("rollovers", 0))
