"""Imported consumption (Linky, Gazpar, invoices) → a cumulative index in InfluxDB, idempotently.

A utility gives consumption per interval (30 minutes, a gas day, an invoice
period); the rest of Econome reads counters. :func:`deliver_consumption` turns
the intervals of one point into the readings of a cumulative index, in the
point's unit: one reading at the start of the first interval (the **anchor**:
the point's index at that instant in InfluxDB, interpolated between two of its
readings when it falls between them, the last one past them, or 0 when there
is none before it), and one at each interval's end with the running index.
Nothing is written inside a gap of the intervals nor at its end, so the
processor takes the interval from the last reading before the gap to the end
of the next interval as a counter gap, as it does live: spread over its
windows and flagged estimated (an unexplained gap past 31 days), never a
measured zero; the importer reports the gap. An interval longer than
28 days (a two-month invoice) also gets a reading every 28 days at most,
interpolated, so the processor spreads it over its windows (it sets aside as
an unexplained gap what is longer than 31 days). So the counter tracker,
the aggregates, detection, M&V, reports, dashboards and the readings CSV treat
a Linky like any energy counter.

Idempotent and exact:

* importing the same intervals again writes the same points (same times, same
  values): InfluxDB overwrites them, nothing changes;
* intervals that overlap an earlier import start from the index InfluxDB holds
  at their first instant, so the overlap gets the same indexes;
* inside the span of the intervals, an earlier reading at an instant the new
  intervals do not end at gets the index the new intervals give there
  (interpolated inside an interval), so the index never falls back; readings
  InfluxDB holds **inside a gap** of the new intervals (an earlier file had
  that day) keep their consumption: they move with the index before them,
  and the intervals after the gap go on from the index they reach;
* a stored reading the new intervals give again, equal but for float rounding
  (30-minute sums over hourly ones), keeps its value: nothing is rewritten;
* **later data are re-anchored**: when InfluxDB holds readings of the point
  after the last interval (a file older than one imported before, or one that
  fills a gap), they are all moved by the difference between the new index at
  the last interval's end and the index InfluxDB had there (found as the
  anchor is; 0 when none), so the consumption of every later interval
  is kept and the index stays continuous. The report says how many readings
  moved and by how much;
* the aggregates of every window the change touches (from the local day of the
  last reading before the first interval to the local day of the first
  reading after the last one, at most :data:`~streams.counters.MAX_SPREAD`
  either side; not past the last interval when a stored reading sits at its
  end, for what follows moves whole) are computed again by the same
  :class:`~streams.aggregate.StreamProcessor` as ``econome run``, from the raw
  readings InfluxDB holds for the building's counters merged with the new ones,
  so no partial window overwrites a complete one. Only windows entirely inside
  that range are written; the point's own ``agg_point`` and the building's
  ``agg_usage``/``agg_building`` (other points' ``agg_point`` are left as the
  pipeline wrote them).

**History older than the raw retention** (``econome influx setup``: raw
readings 90 days, the default ``long`` policy 5 years or more): InfluxDB
refuses raw points older than their policy keeps, and what survives them is
``long.reading_1h``, where the continuous query of
:func:`streams.influx.setup_v1` writes the ``mean``, ``min`` and ``max`` of
each point's raw readings per UTC hour, at the hour's start, with their tags.
So readings older than the raw retention (and an hour more, for the writes
come after now) are written only as those hourly rows, exactly as the
continuous query would have computed them; their aggregates go to the default
policy as all aggregates do. The continuous query only downsamples the hour
just gone, never a day published later: the import writes the hourly rows of
its recent readings too (from every raw reading of their hour). Before the
raw retention the anchor, the later data and the building's other counters
are read from the hourly rows, each standing for two readings (``min`` at the
start of its hour, ``max`` at its last millisecond, :class:`_Stored`). An
hour the intervals share with stored data merges with it. Intervals older
than the ``long`` policy keeps (less a day, for their day's aggregates), or
older than the raw retention when there is no default ``long`` policy, are
not written, and counted in the report (``too_old``): InfluxDB would refuse
them and the index lose its anchor. On InfluxDB 2.x (``api: v2``) no
retention is read (a bucket's is not known): every reading goes to the raw
bucket as a raw reading and no hourly row is written. Lines InfluxDB refuses
all the same are counted (``refused``).

**Data completeness**: ``econome run`` writes a ``point_status`` row per
point every 5 minutes (``missing``, ``stale``, ``age_s``), which the
"Complétude des données" panels average; an imported point is not polled, so
the import writes those rows over its span, at the same instants: ``missing``
inside a gap of the intervals (unless InfluxDB already held readings there),
``age_s`` the time since the last interval end, within the raw retention only
(:func:`_status_lines`). Importing the same file again writes the same rows.
``econome run``'s daily fetch passes ``status=False``: its own status loop
already writes those points' rows, with their publication delay.

Delivery goes the way of ``econome run``'s readings: they are appended with
their line protocol to a :class:`~streams.buffer.DeliveryLog` (its own file,
``data_dir/imports.sqlite``, so an import never competes with a running
service; removed once empty) and written by the :class:`~streams.pipeline.Pipeline`'s sink
(batches, retries, refused lines to the dead-letter store). If InfluxDB goes
down mid-import, what is not written stays in that log: the **next**
``econome import`` writes it first, before it reads anything from InfluxDB.

>>> from datetime import UTC, datetime
>>> half_hour = Consumption(datetime(2026, 1, 5, 8, tzinfo=UTC), datetime(2026, 1, 5, 8, 30, tzinfo=UTC), 0.75, line=12)
>>> half_hour.amount, half_hour.end - half_hour.start
(0.75, datetime.timedelta(seconds=1800))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from inventory import Inventory, Point
from streams.aggregate import StreamProcessor
from streams.buffer import DeliveryLog
from streams.clock import SystemClock
from streams.counters import MAX_SPREAD
from streams.deadletter import DeadLetterStore
from streams.errors import ConfigError, SinkError
from streams.history import read_readings
from streams.influx import (
    DOWNSAMPLE_MEASUREMENT,
    InfluxConfig,
    InfluxQLClient,
    InfluxV1Writer,
    LineEncoder,
    escape_tag,
    influxql_ident,
    make_writer,
    to_ms,
)
from streams.metrics import Sensor
from streams.pipeline import Pipeline
from streams.record import Reading
from streams.status import RawHistory, raw_history
from streams.windows import WindowSize, window_bounds

logger = logging.getLogger(__name__)

__all__ = ["IMPORT_LOG", "Consumption", "ImportReport", "deliver_consumption", "deliver_pending"]

IMPORT_LOG = "imports.sqlite"
"""The delivery log of imports, in ``data_dir``."""
_MS = timedelta(milliseconds=1)
_FUTURE_SKEW = timedelta(hours=1)
"""How far after now an imported interval may end (clock skew): later, its date is wrong."""
_LONGEST = timedelta(days=28)
"""The longest time between two readings an import writes (under the processor's ``max_spread``, 31 days)."""
_CHUNK = timedelta(days=20)
"""Time read per query: 20 days of 10-minute readings are 2,880 rows, under InfluxDB's max-row-limit (10,000)."""


@dataclass(frozen=True, slots=True)
class Consumption:
    """What a utility measured over an interval.

    Attributes:
        start: start of the interval, aware.
        end: end of the interval (after ``start``).
        amount: consumption over the interval, in the point's unit.
        line: the line of the file it comes from, if any.
    """

    start: datetime
    end: datetime
    amount: float
    line: int | None = None


@dataclass
class ImportReport:
    """What :func:`deliver_consumption` did.

    Attributes:
        point_id: the point.
        source: where the intervals came from (a file name).
        unit: the point's unit.
        first: start of the first interval.
        last: end of the last one.
        intervals: intervals imported.
        amount: their total, in ``unit``.
        anchor: the index the first interval started from.
        readings: raw readings written (the new ones, and earlier ones re-indexed or re-anchored).
        aggregates: aggregate lines written.
        shifted: later readings re-anchored.
        shift: by how much (in ``unit``).
        waiting: rows left in the import delivery log (InfluxDB went down); 0 when all is written.
        log_path: the import delivery log.
        too_old: intervals not imported because they start before what the raw readings'
            retention policy keeps (InfluxDB would refuse them, and the index would lose its anchor).
        kept_from: the first instant the raw policy keeps, when intervals were too old.
        in_future: intervals not imported because they end after now (more than
            :data:`_FUTURE_SKEW`): a utility publishes what was measured, so the date is wrong
            (a year typed 2062, a clock set wrong); ``future_from`` is the first one's start,
            ``future_lines`` the file lines of the first five.
        refused: lines InfluxDB refused (kept in ``data_dir/dead-letters.jsonl``), with ``refused_reason``.
        hourly: hourly rows written to ``long.reading_1h`` (after ``econome influx setup``).
        hourly_only: intervals older than the raw retention: kept as hourly rows only.
        statuses: ``point_status`` rows written over the span, every 5 minutes as ``econome run``
            writes them, ``missing`` in the gaps (the data-completeness panels).
    """

    point_id: str
    source: str
    unit: str
    first: datetime | None = None
    last: datetime | None = None
    intervals: int = 0
    amount: float = 0.0
    anchor: float = 0.0
    readings: int = 0
    aggregates: int = 0
    shifted: int = 0
    shift: float = 0.0
    waiting: int = 0
    log_path: Path | None = None
    too_old: int = 0
    kept_from: datetime | None = None
    in_future: int = 0
    future_from: datetime | None = None
    future_lines: list[int] = field(default_factory=list)
    refused: int = 0
    refused_reason: str = ""
    hourly: int = 0
    hourly_only: int = 0
    statuses: int = 0


class _SinkWatch(Sensor):
    """Tells the import when the sink finds InfluxDB down (the pipeline then retries forever)."""

    def __init__(self) -> None:
        self.down = asyncio.Event()
        self.error: SinkError | None = None

    def on_sink_error(self, error: SinkError) -> None:
        self.error = error

    def on_sink_state(self, *, up: bool) -> None:
        if not up:
            self.down.set()


def _checked(point: Point, consumptions: Sequence[Consumption]) -> list[Consumption]:
    """Sorted intervals; raises on naive times, empty or overlapping intervals, negative or infinite amounts."""
    items = sorted(consumptions, key=lambda c: c.start)
    for i, item in enumerate(items):
        where = f"point {point.id}: interval {item.start.isoformat()} .. {item.end.isoformat()}"
        if item.start.tzinfo is None or item.end.tzinfo is None:
            msg = f"{where} has a naive time"
            raise ValueError(msg)
        if item.end <= item.start:
            msg = f"{where} does not end after it starts"
            raise ValueError(msg)
        if not math.isfinite(item.amount) or item.amount < 0:
            msg = f"{where}: amount {item.amount} is not a finite number >= 0"
            raise ValueError(msg)
        if i and item.start < items[i - 1].end:
            msg = f"{where} overlaps the one ending {items[i - 1].end.isoformat()}"
            raise ValueError(msg)
    return items


def _source(history: RawHistory) -> str:
    name = influxql_ident("reading")
    return f"{influxql_ident(history.policy)}.{name}" if history.policy else name


def _where(point_id: str) -> str:
    return "\"point\" = '" + point_id.replace("\\", "\\\\").replace("'", "\\'") + "'"


async def _last_at_or_before(
    client: InfluxQLClient, history: RawHistory, point_id: str, moment: datetime
) -> tuple[int, float] | None:
    statement = f"SELECT last(\"value\") FROM {_source(history)} WHERE time <= {to_ms(moment)}ms AND {_where(point_id)}"  # noqa: S608 - quoted
    for series in await client.query(statement):
        for row in series.get("values", []):
            if row[1] is not None:
                return int(row[0]), float(row[1])
    return None


async def _after(client: InfluxQLClient, history: RawHistory, point_id: str, moment: datetime) -> list[tuple[int, float]]:
    """Every reading of the point after ``moment``, in time order."""
    statement = f"SELECT last(\"value\") FROM {_source(history)} WHERE time > {to_ms(moment)}ms AND {_where(point_id)}"  # noqa: S608 - quoted
    newest: int | None = None
    for series in await client.query(statement):
        for row in series.get("values", []):
            newest = int(row[0])
    if newest is None:
        return []
    rows: list[tuple[int, float]] = []
    start = moment + _MS
    end = datetime.fromtimestamp(newest / 1000, UTC) + _MS
    async for _, chunk in client.select_range("reading", "value", start, end, group_by="point", chunk=_CHUNK,
                                               retention_policy=history.policy, where=_where(point_id)):
        rows.extend(chunk)
    return sorted(rows)


_HOUR_MS = 3_600_000
_HOURS_CHUNK = timedelta(days=200)
"""Time read per query of hourly rows: 4,800 rows a point, under InfluxDB's max-row-limit (10,000)."""


@dataclass(frozen=True, slots=True)
class _Hour:
    """One row of ``long.reading_1h``: the continuous query's mean, min and max of a point's readings in an hour."""

    mean: float
    min: float
    max: float

    def moved(self, delta: float) -> _Hour:
        return _Hour(self.mean + delta, self.min + delta, self.max + delta)


@dataclass
class _Stored:
    """What InfluxDB holds of the point around the intervals.

    Readings older than ``cut`` survive only as hourly rows: each row stands for two readings, its
    ``min`` at the start of its hour and its ``max`` at the hour's last millisecond (a counter's first
    and last index of the hour, exact for a Linky or a Gazpar whose readings fall on the hour). These
    stand-ins (``stand_ins``) anchor the intervals and measure what moves, and are never written as readings.
    """

    before: tuple[int, float] | None
    later: list[tuple[int, float]]
    hours: dict[int, _Hour]
    """Every hourly row of the point from :data:`~streams.counters.MAX_SPREAD` and a day before the first interval on."""
    stand_ins: dict[int, float]
    """The rows' stand-ins before the cut: epoch ms → index."""


async def _hour_rows(client: InfluxQLClient, policy: str, point_id: str, start: datetime, end: datetime) -> dict[int, _Hour]:
    """The point's ``reading_1h`` rows with an hour in ``[start, end)``, by hour start (epoch ms)."""
    source = f"{influxql_ident(policy)}.{influxql_ident(DOWNSAMPLE_MEASUREMENT)}"
    rows: dict[int, _Hour] = {}
    lo = start
    while lo < end:
        hi = min(lo + _HOURS_CHUNK, end)
        statement = (f'SELECT "mean", "min", "max" FROM {source} '  # noqa: S608 - quoted
                     f"WHERE time >= {to_ms(lo)}ms AND time < {to_ms(hi)}ms AND {_where(point_id)}")
        for series in await client.query(statement):
            for row in series.get("values", []):
                if None not in row[1:4]:
                    rows[int(row[0])] = _Hour(float(row[1]), float(row[2]), float(row[3]))
        lo = hi
    return rows


async def _stored(client: InfluxQLClient, history: RawHistory, point_id: str, first: datetime,
                  cut: datetime | None) -> _Stored:
    """The point's readings around ``first``: raw ones from ``cut`` on, hourly rows' stand-ins before it."""
    before = await _last_at_or_before(client, history, point_id, first)
    # Raw readings start at the cut: no need to read two years of empty raw chunks.
    later = await _after(client, history, point_id, first if cut is None else max(first, cut - _MS))
    if cut is None or history.downsampled is None:
        return _Stored(before, later, {}, {})
    cut_ms = to_ms(cut)
    # Raw readings older than the cut expire within the hour: the hourly rows stand for them.
    before = before if before is not None and before[0] >= cut_ms else None
    later = [(ts, value) for ts, value in later if ts >= cut_ms]
    first_hour = first.replace(minute=0, second=0, microsecond=0)
    since = first_hour - MAX_SPREAD - timedelta(days=1)  # what the aggregates of the first days read
    newest = await client.query(f'SELECT last("max") FROM {influxql_ident(history.downsampled)}.'  # noqa: S608 - quoted
                                f"{influxql_ident(DOWNSAMPLE_MEASUREMENT)} WHERE {_where(point_id)}")
    last_hour = max((int(row[0]) for series in newest for row in series.get("values", [])), default=None)
    hours: dict[int, _Hour] = {}
    if last_hour is not None and last_hour >= to_ms(since):
        end = datetime.fromtimestamp(last_hour / 1000, UTC) + timedelta(hours=1)
        hours = await _hour_rows(client, history.downsampled, point_id, since, end)
    stand_ins: dict[int, float] = {}
    first_ms = to_ms(first)
    for hour, row in hours.items():
        if hour < cut_ms:
            stand_ins[hour] = row.min
            if row.max != row.min:  # one reading in the hour (a Gazpar's day, a file's last): one stand-in
                stand_ins[hour + _HOUR_MS - 1] = row.max
    if before is None:
        at_or_before = [(ts, value) for ts, value in stand_ins.items() if ts <= first_ms]
        if at_or_before:
            before = max(at_or_before)
        else:
            # The point's last hourly row before the first interval's hour: its last index.
            statement = (f'SELECT last("max") FROM {influxql_ident(history.downsampled)}.'  # noqa: S608 - quoted
                         f"{influxql_ident(DOWNSAMPLE_MEASUREMENT)} WHERE time < {to_ms(first_hour)}ms AND {_where(point_id)}")
            for series in await client.query(statement):
                for row in series.get("values", []):
                    if row[1] is not None:
                        before = (int(row[0]) + _HOUR_MS - 1, float(row[1]))
    later = sorted([(ts, value) for ts, value in stand_ins.items() if ts > first_ms] + later)
    return _Stored(before, later, hours, stand_ins)


@dataclass
class _Plan:
    new: dict[int, float]
    """The readings of the intervals: epoch ms → index."""
    anchor: float
    first_ms: int
    last_ms: int
    shift: float
    before_ms: int | None
    """The point's last reading before the first interval, if any."""
    after_ms: int | None
    """Its first reading after the last interval, if any."""
    rewritten: dict[int, float]
    """Earlier readings re-indexed (inside the span) or re-anchored (after it)."""
    in_gaps: set[int]
    """Earlier readings inside a gap of the intervals: kept, moved with the index."""
    gaps: list[tuple[int, int]]
    """The gaps between the intervals: (start, end) epoch ms."""

    def value(self, ts_ms: int, old: float) -> float:
        """The index of a reading of the point once the import is applied."""
        if ts_ms < self.first_ms:
            return old
        if ts_ms > self.last_ms:
            return old + self.shift
        if ts_ms in self.new:
            return self.new[ts_ms]
        return self.rewritten.get(ts_ms, old)


def _index_at(times: list[int], values: list[float], ts_ms: int, in_interval: set[int]) -> float:
    """The new index at ``ts_ms``: interpolated inside an interval, flat across a gap."""
    i = bisect_right(times, ts_ms) - 1
    if i + 1 >= len(times) or times[i] == ts_ms or times[i + 1] not in in_interval:
        return values[i]
    t0, t1 = times[i], times[i + 1]
    return values[i] + (values[i + 1] - values[i]) * (ts_ms - t0) / (t1 - t0)


def _old_index_at(old: list[tuple[int, float]], ts_ms: int) -> float | None:
    """The index InfluxDB gives at ``ts_ms``: a reading there, or interpolated between its neighbours.

    None when no reading is at or before ``ts_ms``; the last value past the last reading.
    """
    i = bisect_right(old, (ts_ms, math.inf)) - 1
    if i < 0:
        return None
    t0, v0 = old[i]
    if t0 == ts_ms or i + 1 >= len(old):
        return v0
    t1, v1 = old[i + 1]
    return v0 + (v1 - v0) * (ts_ms - t0) / (t1 - t0)


def _same(a: float, b: float, scale: float) -> bool:
    """Equal but for float rounding (relative to ``scale``): such a reading is not rewritten."""
    return abs(a - b) <= 1e-9 * max(1.0, abs(scale))


def _plan(stored: _Stored, items: list[Consumption]) -> _Plan:
    first, last = items[0].start, items[-1].end
    first_ms, last_ms = to_ms(first), to_ms(last)
    before, later = stored.before, stored.later
    old = ([before] if before is not None else []) + later
    # A file starting inside an interval InfluxDB holds (a 30-minute file over a 60-minute one) starts
    # from the index interpolated there, so the overlap keeps the same indexes.
    start_index = _old_index_at(old, first_ms)
    anchor = start_index if start_index is not None else 0.0
    new: dict[int, float] = {first_ms: anchor}
    ends: set[int] = set()  # times that end an interval (the others start one after a gap)
    in_gaps: dict[int, float] = {}  # readings InfluxDB holds inside the file's gaps, kept, moved with the index
    gaps: list[tuple[int, int]] = []
    running, previous_end = anchor, first
    for item in items:
        if item.start > previous_end:
            gap_start, gap_end = to_ms(previous_end), to_ms(item.start)
            gaps.append((gap_start, gap_end))
            inside = [(ts_ms, value) for ts_ms, value in later if gap_start < ts_ms <= gap_end]
            if inside:
                # A file with a missing day over data imported before: that day's readings stay (moved
                # with the index before them), and the file goes on from the index they reach.
                base = _old_index_at(old, gap_start)
                delta = running - (base if base is not None else inside[0][1])
                in_gaps.update({ts_ms: value + delta for ts_ms, value in inside})
                end_old = _old_index_at(old, gap_end)
                running = (end_old if end_old is not None else inside[-1][1]) + delta
                new[gap_end] = running
            # Else nothing is written inside the gap nor at its end: the interval across it, from the
            # last reading before to the end of the next interval, is the processor's counter gap
            # (flagged estimated, spread), never a measured zero.
        # An interval longer than the processor spreads (an invoice of two months) gets a reading every
        # _LONGEST, interpolated, so its consumption is spread over its windows instead of set aside as a gap.
        span = item.end - item.start
        steps = math.ceil(span / _LONGEST)
        for k in range(1, steps):
            new[to_ms(item.start + span * k / steps)] = running + item.amount * k / steps
            ends.add(to_ms(item.start + span * k / steps))
        running += item.amount
        new[to_ms(item.end)] = running
        ends.add(to_ms(item.end))
        previous_end = item.end
    times = sorted(new)
    values = [new[t] for t in times]
    rewritten = {ts_ms: _index_at(times, values, ts_ms, ends) for ts_ms, _ in later if ts_ms <= last_ms and ts_ms not in new}
    rewritten.update({ts_ms: value for ts_ms, value in in_gaps.items() if ts_ms not in new})
    # A stored reading at the end of the last interval (the next file's first) fixes the index there:
    # what follows moves whole, its consumption and so its windows unchanged (as they are before it).
    after_ms = next((ts_ms for ts_ms, _ in later if ts_ms > last_ms), None)
    if any(ts_ms == last_ms for ts_ms, _ in later):
        after_ms = None
    # Later readings keep their consumption: they move by what the index at the file's end changed.
    end_index = _old_index_at(old, last_ms)
    shift = running - (end_index if end_index is not None else 0.0)
    if _same(shift, 0.0, running):
        shift = 0.0  # a finer file over a coarser one sums the same to the last digits: nothing to move
    if shift != 0.0:
        rewritten.update({ts_ms: value + shift for ts_ms, value in later if ts_ms > last_ms})
    held = dict(later)
    rewritten = {ts_ms: value for ts_ms, value in rewritten.items() if not _same(value, held[ts_ms], value)}
    # A stored reading the file gives again, but for float rounding (30-minute sums over hourly ones), keeps its value.
    new = {ts_ms: held[ts_ms] if ts_ms in held and _same(value, held[ts_ms], value) else value
           for ts_ms, value in new.items()}
    before_ms = before[0] if before is not None and before[0] < first_ms else None
    return _Plan(new, anchor, first_ms, last_ms, shift, before_ms, after_ms, rewritten, set(in_gaps), gaps)


def _hour_lines(prefix: str, plan: _Plan, stored: _Stored, cut_ms: int) -> tuple[list[str], int]:
    """The ``reading_1h`` rows the import changes, as the continuous query of ``econome influx setup`` writes them.

    The continuous query only ever downsamples the hour just gone: intervals a utility publishes a day
    later are never downsampled by it, so the import writes their hourly rows itself (mean, min and max of
    the point's readings in each UTC hour, at the hour's start, with the readings' tags). From the cut on,
    a row comes from every raw reading of its hour. Before it, only the rows survive: an hour the
    intervals cover whole gets the new readings' row; an hour they share with stored data (the hour of
    their last reading, that of the next file's first) merges the two (its mean is kept when the new
    readings are within its range, so a second import changes nothing); an hour of stored data that
    moves (after the last interval, inside a gap) moves whole.

    Returns:
        The lines, and how many hours before the cut moved without new readings (re-anchored or in a gap).
    """
    final: dict[int, float] = {ts: plan.value(ts, value) for ts, value in stored.later if ts not in stored.stand_ins}
    if stored.before is not None and stored.before[0] not in stored.stand_ins:
        final.setdefault(stored.before[0], stored.before[1])
    final.update(plan.new)
    touched: set[int] = {ts - ts % _HOUR_MS for ts in plan.new}
    touched |= {ts - ts % _HOUR_MS for ts in plan.rewritten if ts not in stored.stand_ins}
    deltas: dict[int, float] = {}
    old = dict(stored.later)
    for ts in sorted(plan.rewritten):
        if ts in stored.stand_ins and ts in old and (ts > plan.last_ms or ts in plan.in_gaps):
            deltas[ts - ts % _HOUR_MS] = plan.rewritten[ts] - old[ts]  # the hour's max wins (written last)
    by_hour: dict[int, list[float]] = {}
    for ts in sorted(final):
        if ts - ts % _HOUR_MS in touched:
            by_hour.setdefault(ts - ts % _HOUR_MS, []).append(final[ts])
    rows: dict[int, _Hour] = {}
    moved = 0
    for hour in sorted(touched | set(deltas)):
        row, values = stored.hours.get(hour), by_hour.get(hour)
        if hour >= cut_ms or (values and row is None):
            if values:
                rows[hour] = _Hour(math.fsum(values) / len(values), min(values), max(values))
            continue
        if row is None:
            continue
        kept = row.moved(deltas.get(hour, 0.0))
        if not values:
            rows[hour] = kept
            moved += 1
            continue
        new = _Hour(math.fsum(values) / len(values), min(values), max(values))
        covered = plan.first_ms <= hour and hour + _HOUR_MS <= plan.last_ms and not any(
            lo < hour + _HOUR_MS and hour < hi for lo, hi in plan.gaps)
        if covered:
            rows[hour] = new  # the intervals cover the whole hour: its old readings are all replaced
            continue
        within = kept.min <= new.min and new.max <= kept.max
        rows[hour] = _Hour(kept.mean if within else (kept.mean + new.mean) / 2, min(kept.min, new.min), max(kept.max, new.max))
    # A row the import gives again, equal but for float rounding, keeps its stored value (as readings do).
    for hour, row in rows.items():
        was = stored.hours.get(hour)
        if was is not None and all(_same(a, b, a) for a, b in ((row.mean, was.mean), (row.min, was.min), (row.max, was.max))):
            rows[hour] = was
    return [f"{prefix}mean={row.mean!r},min={row.min!r},max={row.max!r} {hour}" for hour, row in sorted(rows.items())], moved


async def _downsampling(client: InfluxQLClient, config: InfluxConfig, history: RawHistory) -> tuple[bool, timedelta | None]:
    """Whether the import writes hourly rows, and how long their policy keeps them (None: forever).

    Only when ``econome influx setup`` made the hourly rows' policy the database's default, the one
    the pipeline's sink writes aggregates to (no ``ECONOME_INFLUX_RETENTION_POLICY`` elsewhere).
    """
    if history.downsampled is None or config.retention_policy or config.api != "v1":
        return False, None
    for series in await client.query(f"SHOW RETENTION POLICIES ON {influxql_ident(config.database)}"):
        for row in series.get("values", []):
            if row[0] == history.downsampled:
                parts = re.findall(r"(\d+)([hms])", str(row[1]))  # 43920h0m0s; 0s is forever
                total = sum((timedelta(**{_UNITS[unit]: int(amount)}) for amount, unit in parts), timedelta(0))
                return row[-1] is True, total or None
    return False, None


_UNITS = {"h": "hours", "m": "minutes", "s": "seconds"}


def _day_start(ts_ms: int, tz_inventory: Inventory) -> datetime:
    moment = datetime.fromtimestamp(ts_ms / 1000, UTC)
    return window_bounds(moment, WindowSize.DAY, tz_inventory.organisation.tz)[0]


def _day_end(ts_ms: int, inventory: Inventory) -> datetime:
    # The day holding the instant just before: an interval ending at midnight belongs to the day before.
    moment = datetime.fromtimestamp(ts_ms / 1000, UTC) - _MS
    return window_bounds(moment, WindowSize.DAY, inventory.organisation.tz)[1]


async def _stand_ins(client: InfluxQLClient, policy: str, point_id: str, start: datetime, end: datetime,
                     cut_ms: int) -> list[tuple[int, float]]:
    """Another counter's stand-ins (see :class:`_Stored`) before the cut, in ``[start, end)`` and at its edges."""
    top = min(end, datetime.fromtimestamp(cut_ms / 1000, UTC))
    rows = await _hour_rows(client, policy, point_id, start, top)
    source = f"{influxql_ident(policy)}.{influxql_ident(DOWNSAMPLE_MEASUREMENT)}"
    for selector, condition in (("last", f"time < {to_ms(start)}ms"), ("first", f"time >= {to_ms(top)}ms AND time < {cut_ms}ms")):
        statement = f'SELECT {selector}("max") FROM {source} WHERE {condition} AND {_where(point_id)}'  # noqa: S608 - quoted
        for series in await client.query(statement):
            for row in series.get("values", []):
                edge = await _hour_rows(client, policy, point_id, datetime.fromtimestamp(int(row[0]) / 1000, UTC),
                                        datetime.fromtimestamp(int(row[0]) / 1000, UTC) + timedelta(hours=1))
                rows.update(edge)
    out: list[tuple[int, float]] = []
    for hour, row in sorted(rows.items()):
        out.append((hour, row.min))
        if row.max != row.min:
            out.append((hour + _HOUR_MS - 1, row.max))
    return out


async def _aggregates(client: InfluxQLClient, history: RawHistory, inventory: Inventory, point: Point, plan: _Plan,
                      stored: _Stored, cut_ms: int | None) -> list[str]:
    """The aggregate lines of every window the import changes, from InfluxDB's readings and the new ones.

    Before the raw retention the point's readings are its hourly rows' stand-ins (its index at the start
    and end of each hour), not the hourly maxima :func:`~streams.history.read_readings` places at hour
    ends, so a second import computes the same windows.
    """
    spread = int(MAX_SPREAD / _MS)
    low = plan.first_ms if plan.before_ms is None else max(plan.before_ms, plan.first_ms - spread)
    high = plan.last_ms if plan.after_ms is None else min(plan.after_ms, plan.last_ms + spread)
    start, end = _day_start(low, inventory), _day_end(high, inventory)
    building = inventory.building_of(point.id)
    counters = [p.id for p in building.points if p.cumulative]
    series = await read_readings(client, inventory, start, end, chunk=_CHUNK, points=counters, history=history,
                                 index_before=True)
    readings: list[Reading] = []
    for point_id, data in series.items():
        for seconds, value in zip(data.times_s.tolist(), data.values.tolist(), strict=True):
            ts_ms = round(seconds * 1000)
            if cut_ms is not None and ts_ms < cut_ms:
                continue  # an hourly maximum placed at the hour's end: the stand-ins replace it
            if point_id == point.id:
                value = plan.value(ts_ms, value)
            readings.append(Reading(point_id, datetime.fromtimestamp(ts_ms / 1000, UTC), value, inventory.point(point_id).unit))
    lo_ms, hi_ms = to_ms(start), to_ms(end)
    if cut_ms is not None and history.downsampled is not None and lo_ms < cut_ms:
        for other in counters:
            if other != point.id:
                stand_ins = await _stand_ins(client, history.downsampled, other, start, end, cut_ms)
                unit = inventory.point(other).unit
                readings.extend(Reading(other, datetime.fromtimestamp(ts / 1000, UTC), value, unit) for ts, value in stand_ins)
    # The stand-ins of the range, and the last before it and first after it (the index at its edges).
    times = sorted(stored.stand_ins)
    edges = {max((t for t in times if t < lo_ms), default=None), min((t for t in times if t >= hi_ms), default=None)}
    readings.extend(Reading(point.id, datetime.fromtimestamp(ts / 1000, UTC), plan.value(ts, stored.stand_ins[ts]), point.unit)
                    for ts in times
                    if (lo_ms <= ts < hi_ms or ts in edges) and ts not in plan.new
                    and not (plan.first_ms <= ts <= plan.last_ms and ts not in plan.in_gaps))
    known = {round(r.ts.timestamp() * 1000) for r in readings if r.point_id == point.id}
    readings.extend(Reading(point.id, datetime.fromtimestamp(ts_ms / 1000, UTC), value, point.unit)
                    for ts_ms, value in plan.new.items() if ts_ms not in known)
    readings.sort(key=lambda r: (r.ts, r.point_id))
    processor = StreamProcessor(inventory)
    processor.process(readings)
    lines = []
    for record in processor.flush():
        if not start <= record.start < end:
            continue
        tags = dict(record.tags)
        if record.measurement == "agg_point" and tags.get("point") != point.id and tags.get("quantity") != "virtual":
            continue
        lines.append(record.line())
    return lines


STATUS_EVERY = timedelta(minutes=5)
"""The cadence of the ``point_status`` rows an import writes: ``econome run``'s (``Pipeline.status_every``)."""


def _status_lines(inventory: Inventory, point: Point, plan: _Plan, cut: datetime | None) -> list[str]:
    """``point_status`` rows over the imported span, every :data:`STATUS_EVERY`, as ``econome run`` writes them.

    A row is ``missing`` inside a gap of the intervals that holds no reading InfluxDB already had
    (another file's); ``age_s`` is the time since the point's last reading (its interval ends);
    ``stale`` is 0 (a utility's index is published, not polled). Rows older than the raw retention
    (``cut``) are not written: InfluxDB keeps ``point_status`` in the raw policy.
    """
    building = next(b.id for b, p in inventory.points() if p.id == point.id)
    step = int(STATUS_EVERY.total_seconds() * 1000)
    start = max(plan.first_ms, to_ms(cut) if cut is not None else plan.first_ms)
    first = -(-start // step) * step
    empty = sorted((a, b) for a, b in plan.gaps if not any(a <= ts <= b for ts in plan.in_gaps))
    starts = [a for a, _ in empty]
    times = sorted({*plan.new, *plan.in_gaps})
    prefix = f"point_status,building={escape_tag(building)},point={escape_tag(point.id)} "
    lines: list[str] = []
    for ts in range(first, plan.last_ms, step):
        gap = bisect_right(starts, ts) - 1  # the gaps do not overlap: only the last one starting before can hold ts
        missing = gap >= 0 and empty[gap][0] < ts < empty[gap][1]
        at = bisect_right(times, ts) - 1
        age = (ts - times[at]) / 1000 if at >= 0 else -1.0
        lines.append(f"{prefix}missing={int(missing)}i,stale=0i,age_s={age} {ts}")
    return lines


async def deliver_pending(inventory: Inventory, influx_config: InfluxConfig, *, data_dir: Path,
                          timeout: timedelta = timedelta(minutes=5)) -> int:
    """Write what an interrupted import left in ``data_dir/imports.sqlite``; returns the rows still waiting.

    Raises:
        SinkError: InfluxDB is unreachable or refuses the writes (the rows stay in the log).
    """
    log = DeliveryLog(data_dir / IMPORT_LOG)
    try:
        return await _deliver(inventory, influx_config, log, data_dir, timeout)
    finally:
        log.close()


@dataclass
class _Refused:
    """Lines InfluxDB refused during one delivery (dead-lettered), and the last reason."""

    count: int = 0
    reason: str = ""


async def _deliver(inventory: Inventory, influx_config: InfluxConfig, log: DeliveryLog, data_dir: Path,
                   timeout: timedelta, refused: _Refused | None = None) -> int:
    """Run the pipeline's sink on the log until it is empty, InfluxDB is down, or ``timeout``."""
    if log.depth() == 0:
        return 0
    watch = _SinkWatch()
    writer = make_writer(influx_config)
    if isinstance(writer, InfluxV1Writer):
        # As `econome run` does: the database exists, and raw readings go to the `raw` policy if there is one.
        try:
            await writer.ensure_database()
        except SinkError:
            await writer.close()
            raise
    dead = DeadLetterStore(data_dir / "dead-letters.jsonl")
    dead_before = dead.count
    pipeline = Pipeline(inventory, writer, SystemClock(), dead, log, flush_interval=timedelta(milliseconds=50),
                        sensor=watch, stop_timeout=timedelta(seconds=1))
    task = asyncio.create_task(pipeline.run([], []), name="import:deliver")
    deadline = time.monotonic() + timeout.total_seconds()
    try:
        while log.depth() > 0 and not watch.down.is_set() and not task.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await writer.close()
    waiting = log.depth()
    if refused is not None and dead.count > dead_before:
        refused.count += dead.count - dead_before
        refused.reason = dead.recent[-1].reason if dead.recent else ""
    if waiting and watch.error is not None:
        msg = (f"{watch.error}; {waiting} rows wait in {log.path}: the next `econome import` writes them "
               "before anything else")
        raise SinkError(msg) from watch.error
    return waiting


async def deliver_consumption(
    inventory: Inventory,
    influx_config: InfluxConfig,
    point_id: str,
    consumptions: Sequence[Consumption],
    *,
    data_dir: Path,
    source: str,
    timeout: timedelta = timedelta(minutes=5),
    status: bool = True,
    now: datetime | None = None,
) -> ImportReport:
    """Write one point's intervals as its cumulative index, with the aggregates they change (see the module).

    Args:
        inventory: the portfolio.
        influx_config: the InfluxDB of ``econome run``.
        point_id: a cumulative point of the inventory.
        consumptions: its intervals, in its unit, not overlapping (any order).
        data_dir: where the import delivery log and the dead letters are kept.
        source: where the intervals come from (for the report).
        timeout: the longest the writes may take.
        status: write ``point_status`` rows over the span (:func:`_status_lines`); False where
            ``econome run``'s own status loop already writes the point's (its daily fetch).
        now: the pipeline's time (``econome run``'s clock, accelerated in a demo), after which an interval
            may not end (``in_future``); the system's time when None.

    Returns:
        What was written, and what waits in the log if InfluxDB went down.

    Raises:
        ConfigError: the point is unknown or not a cumulative counter.
        ValueError: intervals overlap, are empty, have naive times or negative amounts.
        SinkError: InfluxDB is unreachable or refused a query or the writes (what was not
            written stays in ``data_dir/imports.sqlite`` for the next import).
    """
    try:
        point = inventory.point(point_id)
    except KeyError as exc:
        msg = f"point {point_id} is not in the inventory"
        raise ConfigError(msg) from exc
    if not point.cumulative:
        msg = f"point {point_id} is not a cumulative counter: consumption cannot be imported into it"
        raise ConfigError(msg)
    items = _checked(point, consumptions)
    clock_now = now
    if influx_config.api == "v1":
        setup = InfluxV1Writer(influx_config)
        try:
            await setup.ensure_database()
        finally:
            await setup.close()
    report = ImportReport(point.id, source, point.unit, log_path=data_dir / IMPORT_LOG)
    log = DeliveryLog(data_dir / IMPORT_LOG)
    client = InfluxQLClient(influx_config)
    try:
        # What an interrupted import left goes first: the anchors below must see it.
        if await _deliver(inventory, influx_config, log, data_dir, timeout):
            msg = f"{log.depth()} rows of an earlier import still wait in {log.path}"
            raise SinkError(msg)
        history = await raw_history(client, influx_config)
        now = datetime.now(UTC)
        cut = history.raw_from(now)
        if cut is not None:
            cut += timedelta(hours=1)  # the writes come a little after now
        hourly, long_kept = await _downsampling(client, influx_config, history) if cut is not None else (False, None)
        # InfluxDB refuses points older than their policy keeps (`econome influx setup`: raw 90 days, long 5 years).
        # Older than the raw policy, intervals go to the hourly rows of the long policy as the continuous query
        # would have written them; older than that (or without a long policy), they are set aside here, so the
        # index keeps its anchor and nothing claims to be written.
        latest = (clock_now if clock_now is not None else now) + _FUTURE_SKEW
        future = [item for item in items if item.end > latest]
        if future:
            report.in_future, report.future_from = len(future), future[0].start
            report.future_lines = [item.line for item in future if item.line is not None][:5]
            logger.warning("%s: point %s: %d intervals end after now (%s), from %s: not imported (a wrong date?)",
                           source, point.id, len(future), (latest - _FUTURE_SKEW).isoformat(timespec="seconds"),
                           future[0].start.isoformat())
            items = [item for item in items if item.end <= latest]
        oldest = cut if not hourly else None if long_kept is None else now - long_kept + timedelta(days=1)
        if oldest is not None:
            report.too_old = sum(1 for item in items if item.start < oldest)
            report.kept_from = oldest if report.too_old else None
            items = [item for item in items if item.start >= oldest]
        if not items:
            return report
        cut_ms = to_ms(cut) if cut is not None and hourly else None
        stored = await _stored(client, history, point.id, items[0].start, cut if hourly else None)
        plan = _plan(stored, items)
        lines = await _aggregates(client, history, inventory, point, plan, stored, cut_ms)
        values = {ts: value for ts, value in {**plan.rewritten, **plan.new}.items()
                  if ts not in stored.stand_ins and (cut_ms is None or ts >= cut_ms)}
        readings = [Reading(point.id, datetime.fromtimestamp(ts / 1000, UTC), values[ts], point.unit) for ts in sorted(values)]
        encoder = LineEncoder(inventory)
        hour_lines: list[str] = []
        moved = 0
        if cut_ms is not None:
            sample = LineEncoder(inventory, DOWNSAMPLE_MEASUREMENT).encode(Reading(point.id, now, 0.0, point.unit))
            hour_lines, moved = _hour_lines(sample[:sample.index(" value=") + 1], plan, stored, cut_ms)
        if readings:
            log.append(readings, [encoder.encode(r) for r in readings], force=True)
        statuses = _status_lines(inventory, point, plan, cut) if status else []
        log.add_outbox(lines + hour_lines + statuses, processed_seq=0)
        report.first, report.last = items[0].start, items[-1].end
        report.intervals, report.amount, report.anchor = len(items), sum(i.amount for i in items), plan.anchor
        report.readings, report.aggregates, report.hourly = len(readings), len(lines), len(hour_lines)
        report.statuses = len(statuses)
        report.hourly_only = sum(1 for item in items if cut_ms is not None and to_ms(item.end) < cut_ms)
        report.shifted = sum(1 for ts in plan.rewritten if ts > plan.last_ms and ts not in stored.stand_ins) + moved
        report.shift = plan.shift if report.shifted else 0.0
        refused = _Refused()
        report.waiting = await _deliver(inventory, influx_config, log, data_dir, timeout, refused)
        report.refused, report.refused_reason = refused.count, refused.reason
        return report
    finally:
        await client.close()
        empty = log.depth() == 0
        log.close()
        if empty:
            # A 3-year load curve leaves a log of ~100 MB once written: nothing in it is needed any more.
            for suffix in ("", "-wal", "-shm"):
                (data_dir / f"{IMPORT_LOG}{suffix}").unlink(missing_ok=True)
