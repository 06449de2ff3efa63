"""The stream processor: validated readings → interval consumption → windowed aggregates.

Pure logic with no I/O: both runners (in-process and faust) drive the same
:class:`StreamProcessor`, so the same input gives the same aggregates.

* Counters become interval consumption (:mod:`streams.counters`), spread over
  the windows they overlap, in the canonical unit (kWh for energies, gas
  included; m3 for water), with their cost and emissions from the inventory.
* Instantaneous points give mean, min, max and count per window; occupancy
  gives the occupied ratio.
* Per building × usage (``agg_usage``) and per building (``agg_building``).
  A parent meter counts in its usage for what its sub-meters do not measure,
  and a virtual meter (``add`` − ``subtract``) replaces its ``add`` meters in the
  usage breakdown, so the usages of a building add up to its total.
* Windows close on an event-time watermark: the latest reading time minus the
  allowed lateness. A reading for a window already closed goes to the ``late``
  output and is still applied: the window is emitted again, corrected, as long
  as it is retained. Emitting a window again overwrites it in InfluxDB.

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

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from inventory import Building, DataType, Energy, Inventory, Point, Quantity
from streams.counters import CounterTracker, Interval, Rejection
from streams.influx import escape_tag
from streams.record import Quality, Reading
from streams.units import canonical_unit, energy_kwh_factor, factor
from streams.validate import Validator
from streams.windows import WindowCalendar, WindowSize

__all__ = ["AggregateRecord", "ProcessResult", "StreamProcessor", "StreamSettings"]

ALL_SIZES = (WindowSize.TEN_MINUTES, WindowSize.HOUR, WindowSize.DAY)
STATE_FORMAT_VERSION = 1


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
    """

    sizes: tuple[WindowSize, ...] = ALL_SIZES
    allowed_lateness: timedelta = timedelta(minutes=10)
    retention: timedelta = timedelta(days=2)
    max_gap: timedelta = timedelta(minutes=15)


@dataclass
class ProcessResult:
    """What one call to :meth:`StreamProcessor.process` set aside."""

    accepted: list[Reading] = field(default_factory=list)
    rejected: list[tuple[Reading, str]] = field(default_factory=list)
    late: list[Reading] = field(default_factory=list)
    ignored: list[tuple[Reading, str]] = field(default_factory=list)
    too_late: list[Reading] = field(default_factory=list)
    """Kept raw, but older than the retention of closed windows: not aggregated."""


class _Acc:
    """Accumulator of one point in one window."""

    __slots__ = ("count", "estimated", "max", "min", "sum", "total")

    def __init__(self) -> None:
        self.sum = 0.0  # counters: consumption; instantaneous: sum of values
        self.estimated = 0.0
        self.count = 0
        self.min = math.inf
        self.max = -math.inf
        self.total = 0.0

    def to_list(self) -> list[float]:
        return [self.sum, self.estimated, self.count, self.min, self.max]

    @classmethod
    def from_list(cls, values: list[float]) -> _Acc:
        acc = cls()
        acc.sum, acc.estimated, count, acc.min, acc.max = values
        acc.count = int(count)
        return acc


@dataclass(frozen=True)
class _PointInfo:
    point: Point
    building: Building
    canonical: str
    to_canonical: float
    kwh_per_unit: float | None  # per canonical unit
    eur_per_unit: float
    kgco2e_per_unit: float


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
        self.validator = Validator()
        self.info: dict[str, _PointInfo] = {}
        self.counters: dict[str, CounterTracker] = {}
        for building, point in inventory.points():
            self.info[point.id] = self._describe(inventory, building, point)
            if point.cumulative:
                self.counters[point.id] = CounterTracker(
                    point.id,
                    unit_factor=factor(point.unit),
                    wrap=self._wrap(inventory, point),
                    max_gap=self._max_gap(point),
                    replacements=list(point.replacements),
                )
        # (size, window start ms) -> point id -> accumulator
        self.windows: dict[tuple[WindowSize, int], dict[str, _Acc]] = {}
        self.dirty: set[tuple[WindowSize, int]] = set()
        self.closed: set[tuple[WindowSize, int]] = set()
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

    @staticmethod
    def _wrap(inventory: Inventory, point: Point) -> float | None:
        if point.modbus is None:
            return None
        spec = inventory.register_of(point)
        if spec.data_type in (DataType.FLOAT32, DataType.FLOAT64):
            return None
        return float(2**spec.data_type.bits) * spec.scale

    def _max_gap(self, point: Point) -> timedelta:
        if point.modbus is not None:
            return max(self.settings.max_gap, point.modbus.poll_interval * 3)
        return max(self.settings.max_gap, timedelta(hours=1))

    # -- processing ------------------------------------------------------------------

    @property
    def watermark_ms(self) -> int | None:
        """Event time before which windows are closed."""
        if self.max_event_ms is None:
            return None
        return self.max_event_ms - int(self.settings.allowed_lateness.total_seconds() * 1000)

    def process(self, readings: Iterable[Reading]) -> ProcessResult:
        """Validate and apply readings; returns what was rejected, late or ignored."""
        result = ProcessResult()
        for reading in readings:
            info = self.info.get(reading.point_id)
            if info is None:
                result.rejected.append((reading, f"point {reading.point_id} is not in the inventory"))
                continue
            checked, reason = self.validator.check(reading, info.point.quantity, info.point.unit)
            if reason is not None:
                result.rejected.append((reading, reason))
                continue
            ts_ms = int(checked.ts.timestamp() * 1000)
            watermark = self.watermark_ms
            too_late_before = self.too_late_count
            if info.point.cumulative:
                interval = self.counters[checked.point_id].update(checked.ts, checked.value)
                if interval is None:
                    rejection = self.counters[checked.point_id].last_rejection
                    if rejection is not Rejection.FIRST:
                        result.ignored.append((checked, f"counter reading {rejection.value if rejection else ''}"))
                    else:
                        result.accepted.append(checked)
                    self._see(ts_ms)
                    continue
                if watermark is not None and self._to_ms(interval.start) < watermark:
                    result.late.append(checked)
                    self.late_count += 1
                self._apply_interval(info, interval)
            else:
                if watermark is not None and ts_ms < watermark:
                    result.late.append(checked)
                    self.late_count += 1
                self._apply_value(info, checked, ts_ms)
            result.accepted.append(checked)
            if self.too_late_count > too_late_before:
                result.too_late.append(checked)
            self._see(ts_ms)
        return result

    @staticmethod
    def _to_ms(ts: datetime) -> int:
        return int(ts.timestamp() * 1000)

    def _see(self, ts_ms: int) -> None:
        if self.max_event_ms is None or ts_ms > self.max_event_ms:
            self.max_event_ms = ts_ms

    def _acc(self, size: WindowSize, start_ms: int, point_id: str) -> _Acc | None:
        key = (size, start_ms)
        if key in self.closed and key not in self.windows:
            self.too_late_count += 1
            return None
        points = self.windows.get(key)
        if points is None:
            points = self.windows[key] = {}
        acc = points.get(point_id)
        if acc is None:
            acc = points[point_id] = _Acc()
        self.dirty.add(key)
        return acc

    def _apply_interval(self, info: _PointInfo, interval: Interval) -> None:
        start_ms, end_ms = self._to_ms(interval.start), self._to_ms(interval.end)
        for size in self.settings.sizes:
            for w_start, share in self.calendar.split_ms(start_ms, end_ms, size):
                acc = self._acc(size, w_start, interval.point_id)
                if acc is None:
                    continue
                amount = interval.amount * share
                acc.sum += amount
                acc.count += 1
                if interval.estimated:
                    acc.estimated += amount

    def _apply_value(self, info: _PointInfo, reading: Reading, ts_ms: int) -> None:
        value = reading.value * info.to_canonical
        for size in self.settings.sizes:
            w_start, _ = self.calendar.bounds_ms(ts_ms, size)
            acc = self._acc(size, w_start, reading.point_id)
            if acc is None:
                continue
            acc.sum += value
            acc.count += 1
            acc.min = min(acc.min, value)
            acc.max = max(acc.max, value)
            if reading.quality is not Quality.GOOD:
                acc.estimated += 1

    # -- emission --------------------------------------------------------------------

    def advance(self) -> list[AggregateRecord]:
        """Close windows behind the watermark; emit them, and closed windows corrected since."""
        watermark = self.watermark_ms
        if watermark is None:
            return []
        ready = []
        for key in list(self.dirty):
            size, start_ms = key
            _, end_ms = self.calendar.bounds_ms(start_ms, size)
            if end_ms <= watermark:
                ready.append(key)
        records = self._emit(ready)
        self._expire(watermark)
        return records

    def flush(self) -> list[AggregateRecord]:
        """Emit every window with data, open ones included (end of a bounded input)."""
        return self._emit(list(self.dirty))

    def _emit(self, keys: Sequence[tuple[WindowSize, int]]) -> list[AggregateRecord]:
        records: list[AggregateRecord] = []
        for key in sorted(keys, key=lambda k: (k[1], k[0].value)):
            self.dirty.discard(key)
            self.closed.add(key)
            points = self.windows.get(key)
            if points:
                records.extend(self._records(key[0], key[1], points))
        return records

    def _expire(self, watermark: int) -> None:
        horizon = watermark - int(self.settings.retention.total_seconds() * 1000)
        for key in [k for k in self.windows if k[1] < horizon and k not in self.dirty]:
            del self.windows[key]
        self.closed = {k for k in self.closed if k[1] >= horizon - 86_400_000}

    def _records(self, size: WindowSize, start_ms: int, points: dict[str, _Acc]) -> list[AggregateRecord]:
        start = datetime.fromtimestamp(start_ms / 1000, UTC)
        window = ("window", size.value)
        out: list[AggregateRecord] = []
        by_building: dict[str, dict[str, _Acc]] = defaultdict(dict)
        for point_id, acc in sorted(points.items()):
            info = self.info[point_id]
            by_building[info.building.id][point_id] = acc
            tags = (
                ("building", info.building.id),
                ("point", point_id),
                ("quantity", info.point.quantity.value),
                ("usage", info.point.usage.value),
                window,
            )
            out.append(AggregateRecord("agg_point", tags, self._point_fields(info, acc), start))
        for building_id, accs in sorted(by_building.items()):
            out.extend(self._building_records(self.inventory.building(building_id), accs, window, start))
        return out

    def _point_fields(self, info: _PointInfo, acc: _Acc) -> dict[str, float]:
        if info.point.cumulative:
            fields = {"sum": acc.sum, "estimated": acc.estimated, "eur": acc.sum * info.eur_per_unit,
                      "kgco2e": acc.sum * info.kgco2e_per_unit}  # fmt: skip
            if info.kwh_per_unit is not None:
                fields["kwh"] = acc.sum * info.kwh_per_unit
            return fields
        mean = acc.sum / acc.count if acc.count else 0.0
        fields = {"mean": mean, "min": acc.min, "max": acc.max, "count": float(acc.count)}
        if info.point.quantity is Quantity.OCCUPANCY:
            fields["ratio"] = mean
        return fields

    def _building_records(
        self, building: Building, accs: dict[str, _Acc], window: tuple[str, str], start: datetime
    ) -> list[AggregateRecord]:
        # Contributions per usage: (kwh, m3, eur, kgco2e) of each counter, sub-meters and virtual meters resolved.
        contrib: dict[str, list[float]] = {}
        for point_id, acc in accs.items():
            info = self.info[point_id]
            if info.point.cumulative:
                contrib[point_id] = self._money(info, acc.sum)
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
                [size.value, start, {pid: acc.to_list() for pid, acc in points.items()}]
                for (size, start), points in self.windows.items()
            ],
            "dirty": [[size.value, start] for size, start in self.dirty],
            "closed": [[size.value, start] for size, start in self.closed],
        }

    def load(self, state: dict[str, Any]) -> None:
        """Restore the state saved by :meth:`to_dict`."""
        version = state.get("format_version")
        if version != STATE_FORMAT_VERSION:
            msg = f"processor state format {version} is not {STATE_FORMAT_VERSION}"
            raise ValueError(msg)
        self.max_event_ms = state["max_event_ms"]
        for pid, counter_state in state["counters"].items():
            if pid in self.counters:
                self.counters[pid].load(counter_state)
        self.windows = {
            (WindowSize(size), int(start)): {pid: _Acc.from_list(v) for pid, v in points.items() if pid in self.info}
            for size, start, points in state["windows"]
        }
        self.dirty = {(WindowSize(size), int(start)) for size, start in state["dirty"]}
        self.closed = {(WindowSize(size), int(start)) for size, start in state["closed"]}


def _fields(values: list[float]) -> dict[str, float]:
    kwh, m3, eur, kg = values
    return {"kwh": kwh, "m3": m3, "eur": eur, "kgco2e": kg}
