"""Stale and missing points: a frozen value must not pass for a live one.

A gateway that lost its meter often keeps answering with the last value, and an
MQTT bridge may republish an old value with fresh timestamps. The
:class:`QualityTracker` watches every point:

* **stale**: a value unchanged for longer than the limit of its quantity
  (a temperature frozen for 6 h) is flagged ``Quality.STALE``. A cumulative
  counter may rightly stand still (no water at night), so a counter is only
  stale when it stands still while the power measured on the same device, or
  in the same building, says energy is flowing;
* **missing**: a point with no reading for three poll intervals (Modbus) or for
  its quantity's limit (MQTT) is reported missing.

State changes are logged once (ERROR when a point goes stale or missing, INFO
when it comes back), naming the point and its binding. The logic is pure: the
pipeline feeds it readings and asks it about missing points on its clock.

>>> from datetime import timedelta
>>> StalenessLimits().stale_after["temperature"]
datetime.timedelta(seconds=21600)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from inventory import Inventory, Point, Quantity
from streams.record import Quality, Reading

__all__ = ["UTILITY_DELAY", "PointState", "QualityTracker", "StalenessLimits", "binding_label", "utility_publication"]

logger = logging.getLogger(__name__)


def _default_stale() -> dict[str, timedelta]:
    return {
        Quantity.TEMPERATURE.value: timedelta(hours=6),
        Quantity.HUMIDITY.value: timedelta(hours=6),
        Quantity.CO2.value: timedelta(hours=6),
        Quantity.VOLTAGE.value: timedelta(hours=1),
        Quantity.CURRENT.value: timedelta(hours=6),
        Quantity.ACTIVE_POWER.value: timedelta(hours=6),
        Quantity.HEAT_POWER.value: timedelta(hours=12),
        Quantity.ILLUMINANCE.value: timedelta(hours=24),
    }


UTILITY_DELAY: dict[str, timedelta] = {"enedis": timedelta(days=2), "grdf": timedelta(days=4),
                                       "grdf-monthly": timedelta(days=52)}
"""Silence limit of a utility point, per :func:`utility_publication`. Enedis publishes day D on D+1 and the
daily fetch reads it that morning (07:30), or at one of its retries every 2 hours until 14:00 when it came
late: its last reading (D+1 00:00) is at most 31.5 h old before the next morning's fetch, 38 h when day D+1
comes at the last retry; only a day published after 14:00 makes the point stale until the next morning.
GRDF publishes a 1M meter's informative data from D+1 to D+3 and gas day D ends at 06:00 on D+1 (see
:mod:`collectors.utilities.daily`). An MM meter (``grdf: {publication: monthly}``) has the days of month M-1
published between the 10th and the 20th of month M: its last reading (06:00 on the 1st of M) may be 51 days
old when month M's days come (the 20th of M+1, fetched the next morning)."""


def utility_publication(point: Point) -> str:
    """The key of :data:`UTILITY_DELAY` for a utility point: ``enedis``, ``grdf`` or ``grdf-monthly``."""
    if point.grdf is not None and point.grdf.publication == "monthly":
        return "grdf-monthly"
    return point.protocol


class StalenessLimits(BaseModel):
    """How long a value may stand still, and how long a point may be silent.

    Quantities left out of ``stale_after`` (occupancy, states, setpoints) may
    legitimately keep one value for days and are never flagged stale.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    stale_after: dict[str, timedelta] = Field(default_factory=_default_stale)
    counter_stuck_after: timedelta = timedelta(hours=1)
    counter_min_power_w: float = Field(default=100.0, ge=0)
    missing_polls: int = Field(default=3, ge=1)
    missing_push_after: timedelta = timedelta(minutes=30)

    def missing_after(self, point: Point) -> timedelta:
        """Silence after which a point is missing: ``missing_polls`` poll intervals (polled), ``missing_push_after`` (pushed).

        A utility point (a Linky, a Gazpar), published a day late or more, is missing after :data:`UTILITY_DELAY`.
        """
        if point.is_utility:
            return UTILITY_DELAY[utility_publication(point)]
        if point.modbus is not None:
            return point.modbus.poll_interval * self.missing_polls
        return self.missing_push_after


def binding_label(point: Point) -> str:
    """Where a point is read, for log lines: ``gw-x unit 3 reg 72`` or ``topic a/b``."""
    if point.modbus is not None:
        where = point.modbus.field or (point.modbus.raw_register.address if point.modbus.raw_register else "?")
        return f"gateway {point.modbus.gateway} unit {point.modbus.unit} {where}"
    if point.mqtt is not None:
        return f"topic {point.mqtt.topic}"
    if point.enedis is not None:
        return f"Linky PRM {point.enedis.prm}"
    if point.grdf is not None:
        return f"Gazpar PCE {point.grdf.pce}"
    return "unbound"


@dataclass
class PointState:
    """What the tracker knows of one point."""

    last_value: float | None = None
    last_ts: datetime | None = None
    unchanged_since: datetime | None = None
    stale: bool = False
    missing: bool = False


@dataclass
class QualityTracker:
    """Flags stale readings and reports missing points.

    Args:
        inventory: the portfolio (quantities, poll intervals, power companions).
        limits: thresholds.
        started: when watching began; a point never seen counts from here.
    """

    inventory: Inventory
    started: datetime
    limits: StalenessLimits = field(default_factory=StalenessLimits)
    states: dict[str, PointState] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        """Index points and find each counter's power companion."""
        self._points = {point.id: point for _, point in self.inventory.points()}
        self.states = {point_id: PointState() for point_id in self._points}
        self._companion: dict[str, str] = {}
        for building, point in self.inventory.points():
            if point.cumulative and point.quantity is Quantity.ACTIVE_ENERGY:
                companion = self._power_of(building.points, point)
                if companion is not None:
                    self._companion[point.id] = companion.id

    @staticmethod
    def _power_of(points: list[Point], counter: Point) -> Point | None:
        powers = [p for p in points if p.quantity is Quantity.ACTIVE_POWER]
        if counter.modbus is not None:
            for power in powers:
                if power.modbus is not None and (power.modbus.gateway, power.modbus.unit) == (
                    counter.modbus.gateway,
                    counter.modbus.unit,
                ):
                    return power
        same_usage = [p for p in powers if p.usage is counter.usage]
        return same_usage[0] if same_usage else None

    def _power_w(self, point_id: str) -> float | None:
        state = self.states.get(point_id)
        if state is None or state.last_value is None:
            return None
        unit = self._points[point_id].unit
        return state.last_value * (1000.0 if unit == "kW" else 1.0)

    def observe(self, reading: Reading) -> Reading:
        """Update the state of the reading's point; return it, flagged if stale."""
        point = self._points.get(reading.point_id)
        if point is None:
            return reading
        state = self.states[reading.point_id]
        if state.missing:
            state.missing = False
            logger.info("point %s (%s) reporting again", point.id, binding_label(point))
        if state.last_ts is not None and reading.ts <= state.last_ts:
            # Out of order or repeated: no bearing on staleness.
            return reading if not state.stale else replace(reading, quality=Quality.STALE)
        if state.last_value is None or reading.value != state.last_value:
            state.unchanged_since = reading.ts
        state.last_value = reading.value
        state.last_ts = reading.ts
        stale = self._is_stale(point, state, reading.ts)
        if stale != state.stale:
            state.stale = stale
            if stale:
                logger.error(
                    "point %s (%s) stale: value %s unchanged since %s",
                    point.id,
                    binding_label(point),
                    reading.value,
                    state.unchanged_since,
                )
            else:
                logger.info("point %s (%s) moving again", point.id, binding_label(point))
        if stale and reading.quality is Quality.GOOD:
            return replace(reading, quality=Quality.STALE)
        return reading

    def _is_stale(self, point: Point, state: PointState, now: datetime) -> bool:
        assert state.unchanged_since is not None  # noqa: S101 - set by observe
        still = now - state.unchanged_since
        if point.cumulative:
            companion = self._companion.get(point.id)
            if companion is None:
                return False
            power = self._power_w(companion)
            return still > self.limits.counter_stuck_after and power is not None and power > self.limits.counter_min_power_w
        limit = self.limits.stale_after.get(point.quantity.value)
        return limit is not None and still > limit

    def delivered(self, point_id: str, last: datetime) -> None:
        """A utility point's readings up to ``last`` were written outside the pipeline (the daily Linky/Gazpar fetch).

        They never go through :meth:`observe`: without this, a fetched point would be reported missing
        :data:`UTILITY_DELAY` after every start.
        """
        point = self._points.get(point_id)
        if point is None:
            return
        state = self.states[point_id]
        if state.last_ts is None or last > state.last_ts:
            state.last_ts = last
        if state.missing:
            state.missing = False
            logger.info("point %s (%s) reporting again", point.id, binding_label(point))

    def observe_all(self, readings: list[Reading]) -> list[Reading]:
        """:meth:`observe` over a batch."""
        return [self.observe(reading) for reading in readings]

    def missing_after(self, point: Point) -> timedelta:
        """Silence after which a point is reported missing (:meth:`StalenessLimits.missing_after`)."""
        return self.limits.missing_after(point)

    def check_missing(self, now: datetime) -> list[str]:
        """Flag points silent for too long; return the ids that are missing now."""
        missing = []
        for point_id, point in self._points.items():
            state = self.states[point_id]
            since = state.last_ts or self.started
            if now - since > self.missing_after(point):
                missing.append(point_id)
                if not state.missing:
                    state.missing = True
                    logger.error("point %s (%s) missing: no reading since %s", point_id, binding_label(point), since.isoformat())
        return missing
