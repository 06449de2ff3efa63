"""The stream processor: validated readings → interval consumption → windowed aggregates.

Pure logic with no I/O: both runners (in-process and faust) drive the same
:class:`StreamProcessor`, so the same input gives the same aggregates.

* Counters become interval consumption (:mod:`streams.counters`), spread over
  the windows they overlap, in the canonical unit (kWh for energies, gas
  included; m3 for water), with their cost and emissions from the inventory.
  A suspicious counter reading (a drop, an implausible jump) is accepted but
  held until the next one: the interval then spans it, and the judgement
  (glitch, reset, re-base...) is in :attr:`ProcessResult.judged`.
* Instantaneous points give mean, min, max and count per window; occupancy
  gives the occupied ratio.
* Per building × usage (``agg_usage``) and per building (``agg_building``).
  A parent meter counts in its usage for what its sub-meters do not measure,
  and a virtual meter (``add`` − ``subtract``) replaces its ``add`` meters in the
  usage breakdown, so the usages of a building add up to its total.
* Windows close on an event-time watermark: the latest reading time minus the
  allowed lateness. A reading for a window already closed goes to the ``late``
  output and is still applied: the window is emitted again, corrected, as long
  as it is retained. Emitting a window again overwrites it in InfluxDB. Only
  what the late reading changed is emitted again: its point's aggregate and its
  building's (usages, virtual meters, total) in the windows it falls in, not the
  other buildings' (issue 15: one late reading re-emitted the window of every
  building, 156,000 lines per late batch at 3,000 buildings).
  A reading whose windows are older than what the processor remembers as
  closed is ``too_late``: it is not aggregated, since writing such a window
  again would overwrite its aggregates with this reading alone.
* Poison pills are quarantined (issue 10): each reading is applied in two
  steps, a plan that may fail (windows out of range, a sum that would
  overflow...) and a commit that cannot, so a reading that makes the processor
  raise leaves the state untouched and goes to ``rejected`` with the exception
  type and message; processing goes on with the next one. A counter gap
  longer than ``max_spread`` (31 days) is not cut into windows: the reading is
  ``rejected`` as an unexplained gap, with the consumption that was not spread.
  One reading thus opens at most ``max_spread`` worth of windows.

>>> from pathlib import Path
>>> from datetime import UTC, datetime, timedelta
>>> from inventory import load_inventory
>>> proc = StreamProcessor(load_inventory(Path("examples/commune.yaml")))
>>> t = datetime(2026, 1, 5, 7, tzinfo=UTC)
>>> _ = proc.process([Reading("mairie-gas-volume", t, 100.0, "m3"),
...                   Reading("mairie-gas-volume", t + timedelta(minutes=10), 101.0, "m3")])
>>> [(r.measurement, r.fields["kwh"]) for r in proc.flush() if r.measurement == "agg_point" and r.tags[-1] == ("window", "10m")]
[('agg_point', 11.2)]
"""

from __future__ import annotations

import logging
import math
from array import array
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from inventory import Building, DataType, Energy, Inventory, Point, Quantity
from streams.counters import MAX_SPREAD, CounterTracker, Interval, Judgement, Rejection
from streams.influx import escape_tag
from streams.record import Quality, Reading
from streams.units import canonical_unit, energy_kwh_factor, factor
from streams.validate import EventTimeConfig, Validator
from streams.windows import MAX_SPLIT, WindowCalendar, WindowSize

__all__ = ["AggregateRecord", "ProcessResult", "StreamProcessor", "StreamSettings", "counter_tracker"]

logger = logging.getLogger(__name__)

ALL_SIZES = (WindowSize.TEN_MINUTES, WindowSize.HOUR, WindowSize.DAY)
STATE_FORMAT_VERSION = 2
_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class AggregateRecord:
    """One aggregate: a measurement, its tags, its fields, at its window start."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: dict[str, float]
    start: datetime

    def line(self) -> str:
        """Line protocol, millisecond precision."""
        tags = ",".join(f"{k}={escape_tag(v)}" for k, v in self.tags)
        fields = ",".join(f"{k}={float(v)!r}" for k, v in sorted(self.fields.items()))
        return f"{self.measurement},{tags} {fields} {int(self.start.timestamp() * 1000)}"


@dataclass(frozen=True)
class StreamSettings:
    """Knobs of the processor.

    Attributes:
        sizes: the window sizes to compute.
        allowed_lateness: how far behind the newest reading a reading may be
            before its window is closed (and it counts as late).
        retention: how long a closed window is kept to apply late corrections.
        max_gap: counter intervals longer than this are flagged estimated.
        max_spread: counter intervals longer than this are unexplained gaps:
            rejected, not spread over windows. At most 90 days, so that one
            reading opens a bounded number of windows.
        event_time: the absolute bounds of event time (the processor has no
            clock: age and skew are checked at the edge, before the delivery log).

    Raises:
        ValueError: ``max_spread`` is not positive or longer than 90 days.
    """

    sizes: tuple[WindowSize, ...] = ALL_SIZES
    allowed_lateness: timedelta = timedelta(minutes=10)
    retention: timedelta = timedelta(days=2)
    max_gap: timedelta = timedelta(minutes=15)
    max_spread: timedelta = MAX_SPREAD
    event_time: EventTimeConfig = field(default_factory=EventTimeConfig)

    def __post_init__(self) -> None:
        """Refuse a spread that could cut one interval into more than ``MAX_SPLIT`` windows."""
        if not timedelta(0) < self.max_spread <= timedelta(days=90):
            msg = f"max_spread {self.max_spread} must be positive and at most 90 days"
            raise ValueError(msg)
        assert self.max_spread / timedelta(minutes=10) < MAX_SPLIT  # noqa: S101 - 90 days fit


@dataclass
class ProcessResult:
    """What one call to :meth:`StreamProcessor.process` set aside."""

    accepted: list[Reading] = field(default_factory=list)
    rejected: list[tuple[Reading, str]] = field(default_factory=list)
    late: list[Reading] = field(default_factory=list)
    ignored: list[tuple[Reading, str]] = field(default_factory=list)
    too_late: list[Reading] = field(default_factory=list)
    """Kept raw, but older than the retention of closed windows: not aggregated."""
    judged: list[tuple[str, Judgement]] = field(default_factory=list)
    """Counter readings held then judged by the next one (glitch, jitter, jump, reset, re-base), per point."""


# (window, amount added to the sum, amount added to the estimated part, value for min/max or None)
_Plan = list[tuple[tuple[WindowSize, int], float, float, float | None]]


class _Window:
    """The accumulators of one window: a slot per point in flat arrays, no object per point.

    A window of 3,000 buildings holds 150,000 points. One accumulator object per
    point (and a float object per sum, estimate, minimum and maximum) made the
    windows most of the objects the garbage collector walked in each full
    collection, seconds per collection in the middle of a burst (issue 15). Here
    the point ids map to ints (a dict of strings and ints, which CPython does not
    track) and the figures sit in five ``array`` buffers: a window is six tracked
    objects whatever its size (the tests count them). The arrays hold C doubles, the
    values Python floats hold, so every sum is the same, bit for bit.
    """

    __slots__ = ("count", "estimated", "index", "max", "min", "sum")

    def __init__(self) -> None:
        self.index: dict[str, int] = {}  # point id -> its slot in the arrays
        self.sum = array("d")  # counters: consumption; instantaneous: sum of values
        self.estimated = array("d")
        self.count = array("q")
        self.min = array("d")
        self.max = array("d")

    def slot(self, point_id: str) -> int:
        """The slot of a point, added (empty) the first time."""
        slot = self.index.get(point_id)
        if slot is None:
            slot = self.index[point_id] = len(self.sum)
            self.sum.append(0.0)
            self.estimated.append(0.0)
            self.count.append(0)
            self.min.append(math.inf)
            self.max.append(-math.inf)
        return slot

    def values(self, slot: int) -> list[float]:
        """``[sum, estimated, count, min, max]`` of a slot (the saved state's list)."""
        return [self.sum[slot], self.estimated[slot], self.count[slot], self.min[slot], self.max[slot]]

    def put(self, point_id: str, values: list[float]) -> None:
        """Restore a point's ``[sum, estimated, count, min, max]``."""
        slot = self.slot(point_id)
        total, estimated, count, low, high = values
        self.sum[slot], self.estimated[slot], self.count[slot] = total, estimated, int(count)
        self.min[slot], self.max[slot] = low, high


@dataclass(frozen=True)
class _PointInfo:
    point: Point
    building: Building
    canonical: str
    to_canonical: float
    kwh_per_unit: float | None  # per canonical unit
    eur_per_unit: float
    kgco2e_per_unit: float


_SAFE = 1e200
"""Amounts below this cannot overflow a window's sum (see ``StreamProcessor._check_finite``)."""


def counter_tracker(inventory: Inventory, point: Point, settings: StreamSettings | None = None) -> CounterTracker:
    """The tracker that turns a counter's indexes into consumption, as the pipeline sets it up.

    Canonical unit, the register's rollover (an integer Modbus register), the longest
    interval not flagged estimated (three polls, at least ``max_gap``; an hour for a
    pushed or Linky meter, 25 hours (a gas day) for a Gazpar), the declared replacements and ``max_spread``. A utility
    meter's (Linky, Gazpar) jumps are never held: its index comes from checked intervals. The offline
    commands use it too, so that a CSV or InfluxDB history gives the consumption
    the pipeline computes.

    >>> from pathlib import Path
    >>> from inventory import load_inventory
    >>> inv = load_inventory(Path("examples/commune.yaml"))
    >>> counter_tracker(inv, inv.point("mairie-gas-volume")).unit_factor
    1.0
    """
    settings = settings or StreamSettings()
    wrap: float | None = None
    if point.modbus is not None:
        spec = inventory.register_of(point)
        if spec.data_type not in (DataType.FLOAT32, DataType.FLOAT64):
            wrap = float(2**spec.data_type.bits) * spec.scale
        max_gap = max(settings.max_gap, point.modbus.poll_interval * 3)
    elif point.grdf is not None:
        # A Gazpar's published gas day is one measured interval (25 hours at the autumn change), not a gap.
        max_gap = max(settings.max_gap, timedelta(hours=25))
    else:
        max_gap = max(settings.max_gap, timedelta(hours=1))
    return CounterTracker(
        point.id,
        unit_factor=factor(point.unit),
        wrap=wrap,
        max_gap=max_gap,
        replacements=list(point.replacements),
        max_spread=settings.max_spread,
        # A Linky's or Gazpar's index is built from the utility's checked consumption
        # (streams.imports): a heating start after a mild night is no glitch to hold.
        jump_factor=None if point.is_utility else 20.0,
    )


class StreamProcessor:
    """Validated, windowed aggregation of one portfolio's readings.

    Args:
        inventory: the portfolio.
        settings: windows, lateness, retention.
    """

    def __init__(self, inventory: Inventory, settings: StreamSettings | None = None) -> None:
        self.inventory = inventory
        self.settings = settings or StreamSettings()
        self.calendar = WindowCalendar(inventory.organisation.tz)
        self.validator = Validator(event_time=self.settings.event_time)
        self.info: dict[str, _PointInfo] = {}
        self.counters: dict[str, CounterTracker] = {}
        # Building id -> the building and its point ids in order (Inventory.building() scans every building).
        self.buildings: dict[str, tuple[Building, list[str]]] = {
            building.id: (building, sorted(p.id for p in building.points)) for _, building in inventory.buildings()
        }
        # Point id -> its building's id: one lookup where a large window is emitted a batch at a time.
        self._building_of: dict[str, str] = {}
        for building, point in inventory.points():
            self.info[point.id] = self._describe(inventory, building, point)
            self._building_of[point.id] = building.id
            if point.cumulative:
                self.counters[point.id] = counter_tracker(inventory, point, self.settings)
        # (size, window start ms) -> the accumulators of its points
        self.windows: dict[tuple[WindowSize, int], _Window] = {}
        # (size, window start ms) -> the points changed since the window was last emitted
        self.dirty: dict[tuple[WindowSize, int], set[str]] = {}
        self.closed: set[tuple[WindowSize, int]] = set()
        # (size, window start ms) -> building ids left to emit, last first (see _first_buildings).
        self._emit_queue: dict[tuple[WindowSize, int], list[str]] = {}
        self._large = False  # some amount reached _SAFE: check every sum (see _check_finite)
        self.max_event_ms: int | None = None
        self.late_count = 0
        self.too_late_count = 0

    # -- set-up ----------------------------------------------------------------------

    @staticmethod
    def _describe(inventory: Inventory, building: Building, point: Point) -> _PointInfo:
        canonical = canonical_unit(point.unit)
        to_canonical = factor(point.unit)
        kwh = energy_kwh_factor(point)
        kwh_per_canonical = kwh / to_canonical if kwh is not None else None
        eur = kg = 0.0
        if point.energy is not None:
            tariff = inventory.tariff(point.energy)
            per = kwh_per_canonical if point.energy is not Energy.WATER and kwh_per_canonical is not None else 1.0
            eur, kg = tariff.price_eur_per_unit * per, tariff.emission_kgco2e_per_unit * per
        return _PointInfo(point, building, canonical, to_canonical, kwh_per_canonical, eur, kg)

    # -- processing ------------------------------------------------------------------

    @property
    def watermark_ms(self) -> int | None:
        """Event time before which windows are closed."""
        if self.max_event_ms is None:
            return None
        return self.max_event_ms - int(self.settings.allowed_lateness.total_seconds() * 1000)

    def process(self, readings: Iterable[Reading]) -> ProcessResult:
        """Validate and apply readings; returns what was rejected, late or ignored.

        Never raises for a reading: one that makes the processor raise is
        ``rejected`` with the exception, and the state is left as it was.
        """
        result = ProcessResult()
        for reading in readings:
            try:
                self._process_one(reading, result)
            except Exception as exc:  # a poison pill is quarantined, whatever it raises
                reason = f"processor raised {type(exc).__name__}: {exc}"
                logger.warning("reading of point %s at %r quarantined: %s", reading.point_id, reading.ts, reason)
                result.rejected.append((reading, reason))
        return result

    def _process_one(self, reading: Reading, result: ProcessResult) -> None:
        # Everything that may raise runs before the first change of state (plan, then commit).
        info = self.info.get(reading.point_id)
        if info is None:
            result.rejected.append((reading, f"point {reading.point_id} is not in the inventory"))
            return
        checked, reason = self.validator.check(reading, info.point.quantity, info.point.unit)
        if reason is not None:
            result.rejected.append((reading, reason))
            return
        ts_ms = self._to_ms(checked.ts)
        watermark = self.watermark_ms
        if info.point.cumulative:
            tracker = self.counters[checked.point_id]
            step = tracker.plan(checked.ts, checked.value)
            interval = step.interval
            if interval is None:
                tracker.commit(step)
                if step.judged is not None:
                    result.judged.append((checked.point_id, step.judged))
                if step.rejection in (Rejection.FIRST, Rejection.PENDING):
                    result.accepted.append(checked)
                elif step.rejection is Rejection.GAP:
                    result.rejected.append((checked, self._gap_reason(info, checked, step.unspread)))
                else:
                    result.ignored.append((checked, f"counter reading {step.rejection.value if step.rejection else ''}"))
                self._see(ts_ms)
                return
            plan = self._plan_interval(interval)
            late = watermark is not None and self._to_ms(interval.start) < watermark
            tracker.commit(step)
            if step.judged is not None:
                result.judged.append((checked.point_id, step.judged))
        else:
            plan = self._plan_value(info, checked, ts_ms)
            late = watermark is not None and ts_ms < watermark
        if late:
            result.late.append(checked)
            self.late_count += 1
        if self._commit(plan, checked.point_id):
            result.too_late.append(checked)
        result.accepted.append(checked)
        self._see(ts_ms)

    def _gap_reason(self, info: _PointInfo, reading: Reading, unspread: float) -> str:
        return (
            f"point {reading.point_id}: counter gap up to {reading.ts.isoformat()} longer than "
            f"{self.settings.max_spread}: {unspread} {info.canonical} not spread over windows "
            "(unexplained gap; the reading is the new base of the counter)"
        )

    @staticmethod
    def _to_ms(ts: datetime) -> int:
        return int(ts.timestamp() * 1000)

    def _see(self, ts_ms: int) -> None:
        if self.max_event_ms is None or ts_ms > self.max_event_ms:
            self.max_event_ms = ts_ms

    def _refused(self, key: tuple[WindowSize, int]) -> bool:
        """Whether a window is past what the processor may still correct (too late)."""
        if key in self.windows:
            return False
        if key in self.closed:
            return True
        # Closed windows are remembered down to this horizon; below it, a window may have been
        # written and forgotten, and writing it again from this reading alone would overwrite it.
        watermark = self.watermark_ms
        if watermark is None:
            return False
        return key[1] < watermark - int(self.settings.retention.total_seconds() * 1000) - _DAY_MS

    def _plan_interval(self, interval: Interval) -> _Plan:
        """(window, amount, estimated, value) of a counter interval; raises if it cannot be applied."""
        start_ms, end_ms = self._to_ms(interval.start), self._to_ms(interval.end)
        plan: _Plan = []
        for size in self.settings.sizes:
            for w_start, share in self.calendar.split_ms(start_ms, end_ms, size):
                amount = interval.amount * share
                plan.append(((size, w_start), amount, amount if interval.estimated else 0.0, None))
        self._check_finite(plan, interval.point_id)
        return plan

    def _plan_value(self, info: _PointInfo, reading: Reading, ts_ms: int) -> _Plan:
        """(window, value, estimated, value) of an instantaneous reading; raises if it cannot be applied."""
        value = reading.value * info.to_canonical
        estimated = 0.0 if reading.quality is Quality.GOOD else 1.0
        plan: _Plan = [((size, self.calendar.bounds_ms(ts_ms, size)[0]), value, estimated, value) for size in self.settings.sizes]
        self._check_finite(plan, reading.point_id)
        return plan

    def _check_finite(self, plan: _Plan, point_id: str) -> None:
        # Fast path: while every amount so far was under _SAFE, no sum can reach infinity
        # (it would take 1e108 additions). One larger amount (a STATE point may carry 1e308)
        # switches to checking every sum for good.
        if not self._large:
            for _, amount, _, _ in plan:
                if not -_SAFE < amount < _SAFE:
                    self._large = True
                    break
            else:
                return
        for key, amount, estimated, _ in plan:
            window = self.windows.get(key)
            slot = window.index.get(point_id) if window is not None else None
            total = amount + (window.sum[slot] if window is not None and slot is not None else 0.0)
            part = estimated + (window.estimated[slot] if window is not None and slot is not None else 0.0)
            if not (math.isfinite(total) and math.isfinite(part)):
                msg = f"the {key[0].value} sum of point {point_id} would not be finite ({total})"
                raise ArithmeticError(msg)

    def _commit(self, plan: _Plan, point_id: str) -> bool:
        """Apply a plan (plain dict and float updates, nothing that raises); whether a window was too late."""
        too_late = False
        for key, amount, estimated, value in plan:
            if self._refused(key):
                self.too_late_count += 1
                too_late = True
                continue
            window = self.windows.get(key)
            if window is None:
                window = self.windows[key] = _Window()
            slot = window.index.get(point_id)
            if slot is None:
                slot = window.slot(point_id)
            changed = self.dirty.get(key)
            if changed is None:
                self.dirty[key] = {point_id}
            else:
                changed.add(point_id)
            window.sum[slot] += amount
            window.count[slot] += 1
            if estimated:  # adding ±0.0 changes nothing: the estimate starts at +0.0 and never becomes -0.0
                window.estimated[slot] += estimated
            if value is not None:
                # What min() and max() kept: the new value only when strictly lower (higher), a NaN never.
                if value < window.min[slot]:
                    window.min[slot] = value
                if value > window.max[slot]:
                    window.max[slot] = value
        return too_late

    # -- emission --------------------------------------------------------------------

    def advance(self, limit: int | None = None) -> list[AggregateRecord]:
        """Close windows behind the watermark; emit them, and closed windows corrected since.

        Args:
            limit: emit about this many records at most (whole buildings: one may
                pass it); what is left stays for the next calls (:attr:`emission_pending`),
                so that a runner can do other work meanwhile. A window of 3,000
                buildings is 300,000 records, seconds of work in one call.
        """
        watermark = self.watermark_ms
        if watermark is None:
            return []
        records = self._emit(self._ready(watermark), limit)
        self._expire(watermark)
        return records

    @property
    def emission_pending(self) -> bool:
        """Whether windows behind the watermark hold changes not emitted yet (``advance`` stopped at its limit)."""
        watermark = self.watermark_ms
        return watermark is not None and bool(self._ready(watermark))

    def _ready(self, watermark: int) -> list[tuple[WindowSize, int]]:
        ready = []
        for key in self.dirty:
            size, start_ms = key
            _, end_ms = self.calendar.bounds_ms(start_ms, size)
            if end_ms <= watermark:
                ready.append(key)
        return ready

    def flush(self) -> list[AggregateRecord]:
        """Emit every window with data, open ones included (end of a bounded input)."""
        return self._emit(list(self.dirty))

    def _emit(self, keys: Sequence[tuple[WindowSize, int]], limit: int | None = None) -> list[AggregateRecord]:
        records: list[AggregateRecord] = []
        for key in sorted(keys, key=lambda k: (k[1], k[0].value)):
            if limit is not None and len(records) >= limit:
                break
            changed = self.dirty.get(key, set())
            if limit is not None and len(changed) > limit - len(records):
                changed = self._first_buildings(key, changed, limit - len(records))
                self.dirty[key] -= changed
                if not self.dirty[key]:
                    del self.dirty[key]
                    self._emit_queue.pop(key, None)
            else:
                self.dirty.pop(key, None)
                self._emit_queue.pop(key, None)
            self.closed.add(key)
            window = self.windows.get(key)
            if window is not None and window.index:
                records.extend(self._records(key[0], key[1], window, changed))
        return records

    def _first_buildings(self, key: tuple[WindowSize, int], changed: set[str], budget: int) -> set[str]:
        """The changed points of the next buildings (in id order) until ``budget`` points are passed.

        The buildings to visit are listed once per window and kept between calls
        (``_emit_queue``): grouping all the changed points again at every batch made
        emitting a window of 150,000 points quadratic, 0.5 s a call (issue 15). A
        building listed whose points were emitted meanwhile gives nothing; one that
        changed after the listing is found when the list runs out and is made again.
        """
        taken: set[str] = set()
        for _ in range(2):
            queue = self._emit_queue.get(key)
            if not queue:
                # Sorted backwards: the next building is popped from the end.
                queue = sorted({self._building_of[point_id] for point_id in changed}, reverse=True)
                self._emit_queue[key] = queue
            while queue and len(taken) < budget:
                taken.update(p for p in self.buildings[queue.pop()][1] if p in changed)
            if taken:
                break
        return taken

    def _expire(self, watermark: int) -> None:
        horizon = watermark - int(self.settings.retention.total_seconds() * 1000)
        for key in [k for k in self.windows if k[1] < horizon and k not in self.dirty]:
            del self.windows[key]
        self.closed = {k for k in self.closed if k[1] >= horizon - 86_400_000}

    def _records(self, size: WindowSize, start_ms: int, points: _Window, changed: set[str]) -> list[AggregateRecord]:
        """The aggregates of the ``changed`` points of one window, and of their buildings (from all their points)."""
        start = datetime.fromtimestamp(start_ms / 1000, UTC)
        window = ("window", size.value)
        out: list[AggregateRecord] = []
        buildings: set[str] = set()
        for point_id in sorted(changed):
            slot = points.index.get(point_id)
            if slot is None:
                continue
            info = self.info[point_id]
            buildings.add(info.building.id)
            tags = (
                ("building", info.building.id),
                ("point", point_id),
                ("quantity", info.point.quantity.value),
                ("usage", info.point.usage.value),
                window,
            )
            out.append(AggregateRecord("agg_point", tags, self._point_fields(info, points, slot), start))
        for building_id in sorted(buildings):
            building, point_ids = self.buildings[building_id]
            # In point id order, as the sums of a building were always taken (same floats in both runners).
            sums = {pid: points.sum[points.index[pid]] for pid in point_ids if pid in points.index}
            out.extend(self._building_records(building, sums, window, start))
        return out

    def _point_fields(self, info: _PointInfo, window: _Window, slot: int) -> dict[str, float]:
        total = window.sum[slot]
        if info.point.cumulative:
            fields = {"sum": total, "estimated": window.estimated[slot], "eur": total * info.eur_per_unit,
                      "kgco2e": total * info.kgco2e_per_unit}  # fmt: skip
            if info.kwh_per_unit is not None:
                fields["kwh"] = total * info.kwh_per_unit
            return fields
        count = window.count[slot]
        mean = total / count if count else 0.0
        fields = {"mean": mean, "min": window.min[slot], "max": window.max[slot], "count": float(count)}
        if info.point.quantity is Quantity.OCCUPANCY:
            fields["ratio"] = mean
        return fields

    def _building_records(
        self, building: Building, sums: dict[str, float], window: tuple[str, str], start: datetime
    ) -> list[AggregateRecord]:
        # Contributions per usage: (kwh, m3, eur, kgco2e) of each counter, sub-meters and virtual meters resolved.
        contrib: dict[str, list[float]] = {}
        for point_id, amount in sums.items():
            info = self.info[point_id]
            if info.point.cumulative:
                contrib[point_id] = self._money(info, amount)
        if not contrib:
            return []
        usage_of = {p.id: p.usage.value for p in building.points}
        shares = {pid: list(v) for pid, v in contrib.items()}
        for point in building.points:
            if point.submeter_of in shares and point.id in contrib:
                parent = shares[point.submeter_of]
                for i, value in enumerate(contrib[point.id]):
                    parent[i] -= value
        records = []
        for virtual in building.virtual_meters:
            values = [0.0, 0.0, 0.0, 0.0]
            present = False
            for sign, refs in ((1.0, virtual.add), (-1.0, virtual.subtract)):
                for ref in refs:
                    if ref in contrib:
                        present = True
                        values = [v + sign * c for v, c in zip(values, contrib[ref], strict=True)]
            if not present:
                continue
            for ref in virtual.add:
                shares.pop(ref, None)
            shares[virtual.id] = values
            usage_of[virtual.id] = virtual.usage.value
            tags = (("building", building.id), ("point", virtual.id), ("quantity", "virtual"),
                    ("usage", virtual.usage.value), window)  # fmt: skip
            records.append(AggregateRecord("agg_point", tags, _fields(values), start))
        per_usage: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
        for pid, values in shares.items():
            total = per_usage[usage_of[pid]]
            for i, value in enumerate(values):
                total[i] += value
        for usage, values in sorted(per_usage.items()):
            records.append(
                AggregateRecord("agg_usage", (("building", building.id), ("usage", usage), window), _fields(values), start)
            )
        whole = [0.0, 0.0, 0.0, 0.0]
        for pid, values in contrib.items():
            point = self.info[pid].point
            if point.submeter_of is None:
                whole = [w + v for w, v in zip(whole, values, strict=True)]
        fields = _fields(whole)
        fields["kwh_per_m2"] = whole[0] / building.floor_area_m2
        records.append(AggregateRecord("agg_building", (("building", building.id), window), fields, start))
        return records

    @staticmethod
    def _money(info: _PointInfo, amount: float) -> list[float]:
        kwh = amount * info.kwh_per_unit if info.kwh_per_unit is not None else 0.0
        m3 = amount if info.point.quantity is Quantity.WATER_VOLUME else 0.0
        return [kwh, m3, amount * info.eur_per_unit, amount * info.kgco2e_per_unit]

    # -- persistence -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state: counters, open and retained windows, watermark."""
        return {
            "format_version": STATE_FORMAT_VERSION,
            "max_event_ms": self.max_event_ms,
            "counters": {pid: c.to_dict() for pid, c in self.counters.items()},
            "windows": [
                [size.value, start, {pid: window.values(slot) for pid, slot in window.index.items()}]
                for (size, start), window in self.windows.items()
            ],
            "dirty": [[size.value, start, sorted(changed)] for (size, start), changed in self.dirty.items()],
            "closed": [[size.value, start] for size, start in self.closed],
        }

    def load(self, state: dict[str, Any]) -> None:
        """Restore the state saved by :meth:`to_dict`."""
        version = state.get("format_version")
        if version not in (1, STATE_FORMAT_VERSION):
            msg = f"processor state format {version} is not {STATE_FORMAT_VERSION} (nor 1)"
            raise ValueError(msg)
        self.max_event_ms = state["max_event_ms"]
        for pid, counter_state in state["counters"].items():
            if pid in self.counters:
                self.counters[pid].load(counter_state)
        self.windows = {}
        for size, start, points in state["windows"]:
            window = self.windows[WindowSize(size), int(start)] = _Window()
            for pid, values in points.items():
                if pid in self.info:
                    window.put(pid, values)
        load_dirty = _load_dirty if version == STATE_FORMAT_VERSION else _load_dirty_v1
        self.dirty = load_dirty(state["dirty"], self.windows)
        self._emit_queue = {}
        self.closed = {(WindowSize(size), int(start)) for size, start in state["closed"]}
        self._large = any(not -_SAFE < total < _SAFE for window in self.windows.values() for total in window.sum)


def _load_dirty(saved: list[list[Any]], windows: dict[tuple[WindowSize, int], _Window]) -> dict[tuple[WindowSize, int], set[str]]:
    """Format 2: ``[size, start, [point ids changed]]`` per window (points no longer in the inventory left out)."""
    out: dict[tuple[WindowSize, int], set[str]] = {}
    for size, start, changed in saved:
        key = (WindowSize(size), int(start))
        window = windows.get(key)
        out[key] = {pid for pid in changed if window is not None and pid in window.index}
    return out


def _load_dirty_v1(
    saved: list[list[Any]], windows: dict[tuple[WindowSize, int], _Window]
) -> dict[tuple[WindowSize, int], set[str]]:
    """Format 1 kept ``[size, start]`` per window: every point of such a window is emitted again, as it was then."""
    out: dict[tuple[WindowSize, int], set[str]] = {}
    for size, start in saved:
        key = (WindowSize(size), int(start))
        window = windows.get(key)
        out[key] = set(window.index) if window is not None else set()
    return out


def _fields(values: list[float]) -> dict[str, float]:
    kwh, m3, eur, kg = values
    return {"kwh": kwh, "m3": m3, "eur": eur, "kgco2e": kg}
