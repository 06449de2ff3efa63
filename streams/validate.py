"""Validate readings: physical range, NaN, unit, event time, duplicates; flag or reject.

A value outside what the quantity can physically be (a negative counter index,
an occupancy of 3, a temperature of 400 °C) is rejected to the dead-letter
output with its reason. A value that is possible but implausible for a
building (35 °C in a classroom... is possible; 55 °C is suspect) is kept and
flagged ``Quality.SUSPECT``. Ranges are in the point's canonical unit.

Event time is checked too (issue 10), against :class:`EventTimeConfig`:

* always, the absolute bounds: a time before 2000 (a device clock never set
  gives 1970) or from 2100 on is rejected;
* with a clock (at the edge, before the delivery log): a time more than
  ``max_future`` ahead of now, or more than ``max_age`` behind it for a live
  point, is rejected. A point declared ``backfill: true`` in the inventory
  replays history (a gateway emptying its buffer after an outage): its old
  times are accepted, within the absolute bounds;
* with duplicate tracking (at the edge): a reading at the same time, to the
  millisecond InfluxDB keys points by, as an earlier accepted reading of its
  point is rejected: with the same value it is a duplicate that is already
  stored (counted in :attr:`Validator.duplicates`), with another value it would
  silently overwrite the first point in InfluxDB. So t1, t2, then t1 again with
  another value is dead-lettered, not only a repeat of the last time.

  Memory is bounded: per point, the :data:`HISTORY` (32) most recent times
  accepted since the process started, with their values (16 bytes each; 117 MB
  measured for 3,000 buildings of 50 points once all are full, 95 MB with 16).
  A reading at or after the oldest of those is checked exactly. A reading
  older than all of them (behind 32 later ones, e.g. a gateway replaying a
  backlog while live readings go on) cannot be checked: it is accepted, counted in
  :attr:`Validator.unchecked` and logged (WARNING once per point, then DEBUG).
  The memory starts empty at each start: a reading re-sent after a restart
  with a time stored before it is not checked against the stored one.

The processor runs the checks without a clock: a reading replayed from the
delivery log after an outage was accepted at the edge and stays accepted.

>>> from datetime import UTC, datetime
>>> v = Validator()
>>> v.check(Reading("t", datetime(2026, 1, 5, tzinfo=UTC), 21.0, "degC"), Quantity.TEMPERATURE, "degC")[0].quality
<Quality.GOOD: 'good'>
>>> v.check(Reading("t", datetime(1970, 1, 1, tzinfo=UTC), 21.0, "degC"), Quantity.TEMPERATURE, "degC")[1]
'point t: time 1970-01-01T00:00:00+00:00 is outside 2000-01-01T00:00:00+00:00 .. 2100-01-01T00:00:00+00:00'
"""

from __future__ import annotations

import logging
import math
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from inventory import Inventory, Quantity
from streams.clock import Clock
from streams.record import Quality, Reading
from streams.units import factor

__all__ = ["HISTORY", "RANGES", "EventTimeConfig", "Range", "Validator"]

logger = logging.getLogger(__name__)

HISTORY = 32
"""Most recent accepted times remembered per point, to refuse a reading that would overwrite one."""
_MAX_TRACKED = 200_000  # points remembered for duplicates when no inventory bounds them
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class _History:
    """The most recent accepted times of one point (ms, ascending) and their values."""

    __slots__ = ("times", "values")

    def __init__(self) -> None:
        self.times = array("q")
        self.values = array("d")


@dataclass(frozen=True, slots=True)
class Range:
    """Hard limits (reject outside) and plausible limits (flag outside), canonical unit."""

    low: float
    high: float
    plausible_low: float
    plausible_high: float


_INF = math.inf
RANGES: dict[Quantity, Range] = {
    Quantity.ACTIVE_ENERGY: Range(0, 1e12, 0, 1e10),
    Quantity.REACTIVE_ENERGY: Range(0, 1e12, 0, 1e10),
    Quantity.HEAT_ENERGY: Range(0, 1e12, 0, 1e10),
    Quantity.GAS_VOLUME: Range(0, 1e11, 0, 1e9),
    Quantity.WATER_VOLUME: Range(0, 1e11, 0, 1e9),
    Quantity.ACTIVE_POWER: Range(-1e9, 1e9, -1e6, 1e7),
    Quantity.HEAT_POWER: Range(-1e9, 1e9, 0, 2e7),
    Quantity.APPARENT_POWER: Range(0, 1e9, 0, 1e7),
    Quantity.REACTIVE_POWER: Range(-1e9, 1e9, -1e7, 1e7),
    Quantity.POWER_FACTOR: Range(-1, 1, -1, 1),
    Quantity.FREQUENCY: Range(0, 1000, 45, 65),
    Quantity.HARMONIC_DISTORTION: Range(0, 1000, 0, 100),
    Quantity.WATER_FLOW: Range(0, 1e5, 0, 500),
    Quantity.VOLTAGE: Range(0, 1e5, 0, 1000),
    Quantity.CURRENT: Range(-1e5, 1e5, -1e4, 1e4),
    Quantity.TEMPERATURE: Range(-80, 150, -35, 50),
    Quantity.SETPOINT: Range(-20, 100, 5, 35),
    Quantity.HUMIDITY: Range(0, 100, 5, 100),
    Quantity.OCCUPANCY: Range(0, 1, 0, 1),
    Quantity.ILLUMINANCE: Range(0, 2e5, 0, 1.5e5),
    Quantity.CO2: Range(0, 1e5, 300, 5000),
    Quantity.STATE: Range(-_INF, _INF, -_INF, _INF),
}


class EventTimeConfig(BaseModel):
    """The window of event times a reading may carry.

    Attributes:
        max_age: how far behind now a live reading may be (``ECONOME_MAX_AGE_S``).
            Seven days covers a gateway that replays a week-end outage of its
            Modbus or MQTT link; a point with ``backfill: true`` is exempt.
        max_future: how far ahead of now a reading may be: clock skew
            (``ECONOME_MAX_FUTURE_S``).
        earliest: no reading before this, backfill or not (a clock never set gives 1970).
        latest: no reading from this on.

    >>> EventTimeConfig().max_age
    datetime.timedelta(days=7)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_age: timedelta = Field(default=timedelta(days=7), gt=timedelta(0))
    max_future: timedelta = Field(default=timedelta(minutes=5), ge=timedelta(0))
    earliest: AwareDatetime = datetime(2000, 1, 1, tzinfo=UTC)
    latest: AwareDatetime = datetime(2100, 1, 1, tzinfo=UTC)

    @model_validator(mode="after")
    def _ordered(self) -> EventTimeConfig:
        if self.earliest >= self.latest:
            msg = f"earliest {self.earliest.isoformat()} must be before latest {self.latest.isoformat()}"
            raise ValueError(msg)
        return self


class Validator:
    """Checks readings against their point's quantity, unit and event-time window.

    Args:
        ranges: physical ranges that replace the defaults, per quantity.
        clock: "now" for the age and future checks; without one, only the
            absolute bounds of event time are checked.
        event_time: the event-time window.
        backfill: points whose source replays history: no age check.
        track_duplicates: reject a reading at the same time (ms) as one of the
            :data:`HISTORY` most recent accepted readings of its point.
        points: the points to track duplicates of (others are not tracked);
            ``None`` tracks any, up to 200,000.
        history: how many recent times to remember per point.
    """

    def __init__(
        self,
        ranges: dict[Quantity, Range] | None = None,
        *,
        clock: Clock | None = None,
        event_time: EventTimeConfig | None = None,
        backfill: Iterable[str] = (),
        track_duplicates: bool = False,
        points: Iterable[str] | None = None,
        history: int = HISTORY,
    ) -> None:
        self.ranges = {**RANGES, **(ranges or {})}
        self.clock = clock
        self.event_time = event_time or EventTimeConfig()
        self.backfill = frozenset(backfill)
        self.track_duplicates = track_duplicates
        self._tracked = frozenset(points) if points is not None else None
        self.history = history
        # The inventory's points get their history at once, not at their first reading: built with the
        # rest of what lives as long as the process, they are frozen out of the garbage collector's walks
        # with it (econome run; three tracked objects a point, 450,000 at 3,000 buildings; issue 15).
        self._seen: dict[str, _History] = (
            {point_id: _History() for point_id in self._tracked} if track_duplicates and self._tracked is not None else {}
        )
        self._warned: set[str] = set()
        self.duplicates = 0
        """Readings rejected because the same reading (time and value) was already accepted."""
        self.unchecked = 0
        """Readings accepted older than all the remembered times of their point: not checked for overwrites."""

    @classmethod
    def for_inventory(cls, inventory: Inventory, clock: Clock, event_time: EventTimeConfig | None = None) -> Validator:
        """The edge validator of a portfolio: event time against ``clock``, backfill points, duplicates.

        Example:
            >>> from pathlib import Path
            >>> from inventory import load_inventory
            >>> from streams.clock import ManualClock
            >>> now = datetime(2026, 1, 5, 8, tzinfo=UTC)
            >>> v = Validator.for_inventory(load_inventory(Path("examples/commune.yaml")), ManualClock(now))
            >>> v.check(Reading("mairie-bureaux-temperature", now + timedelta(hours=1), 20.0, "degC"),
            ...         Quantity.TEMPERATURE, "degC")[1]  # doctest: +ELLIPSIS
            'point mairie-bureaux-temperature: time 2026-01-05T09:00:00+00:00 is 1:00:00 ahead of now ...'
        """
        points = [point for _, point in inventory.points()]
        return cls(
            clock=clock,
            event_time=event_time,
            backfill=[p.id for p in points if p.backfill],
            track_duplicates=True,
            points=[p.id for p in points],
        )

    def check(self, reading: Reading, quantity: Quantity, unit: str) -> tuple[Reading, str | None]:
        """Return the reading (flagged if suspect) and ``None``, or the reason to reject it."""
        if reading.unit != unit:
            return reading, f"point {reading.point_id}: unit {reading.unit!r}, the inventory says {unit!r}"
        if not math.isfinite(reading.value):
            return reading, f"point {reading.point_id}: value {reading.value} is not a number"
        limits = self.ranges[quantity]
        value = reading.value * factor(unit)
        if not limits.low <= value <= limits.high:
            return reading, (
                f"point {reading.point_id}: {reading.value} {unit} is outside the physical range of {quantity.value}"
            )
        reason = self._check_time(reading)
        if reason is None and self.track_duplicates:
            reason = self._check_duplicate(reading)
        if reason is not None:
            return reading, reason
        if not limits.plausible_low <= value <= limits.plausible_high and reading.quality is Quality.GOOD:
            return replace(reading, quality=Quality.SUSPECT), None
        return reading, None

    def _check_time(self, reading: Reading) -> str | None:
        ts, config = reading.ts, self.event_time
        if not config.earliest <= ts < config.latest:
            return (
                f"point {reading.point_id}: time {ts.isoformat()} is outside "
                f"{config.earliest.isoformat()} .. {config.latest.isoformat()}"
            )
        if self.clock is None:
            return None
        now = self.clock.now()
        if ts - now > config.max_future:
            return (
                f"point {reading.point_id}: time {ts.isoformat()} is {ts - now} ahead of now "
                f"({now.isoformat()}), more than the allowed skew of {config.max_future} (ECONOME_MAX_FUTURE_S)"
            )
        if now - ts > config.max_age and reading.point_id not in self.backfill:
            return (
                f"point {reading.point_id}: time {ts.isoformat()} is {now - ts} old, more than {config.max_age} "
                "for live input (ECONOME_MAX_AGE_S; declare the point 'backfill: true' if its source replays history)"
            )
        return None

    def _check_duplicate(self, reading: Reading) -> str | None:
        point_id = reading.point_id
        if self._tracked is not None and point_id not in self._tracked:
            return None
        seen = self._seen.get(point_id)
        if seen is None:
            if self._tracked is None and len(self._seen) >= _MAX_TRACKED:
                self._seen.clear()
            seen = self._seen[point_id] = _History()
        times, values = seen.times, seen.values
        key = (reading.ts - _EPOCH) // _MS  # InfluxDB's key: the millisecond
        if not times or key > times[-1]:
            at = len(times)  # the usual case: a new latest time
        else:
            at = bisect_left(times, key)
            if at < len(times) and times[at] == key:
                stored = values[at]
                if stored == reading.value:
                    self.duplicates += 1
                    return f"point {point_id}: duplicate of the reading at {reading.ts.isoformat()} (same value, stored once)"
                return (
                    f"point {point_id}: duplicate timestamp {reading.ts.isoformat()} with a different value "
                    f"({reading.value}, {stored} already stored)"
                )
            if at == 0 and len(times) >= self.history:
                self._unchecked(reading)
                return None
        times.insert(at, key)
        values.insert(at, reading.value)
        if len(times) > self.history:
            del times[0], values[0]
        return None

    def _unchecked(self, reading: Reading) -> None:
        self.unchecked += 1
        point_id = reading.point_id
        if point_id in self._warned or (self._tracked is None and len(self._warned) >= _MAX_TRACKED):
            log = logger.debug
        else:
            self._warned.add(point_id)
            log = logger.warning
        log(
            "point %s: reading at %s is older than the %d times remembered: not checked for an overwrite (further ones at DEBUG)",
            point_id,
            reading.ts.isoformat(),
            self.history,
        )
