"""Histories of raw readings: the one CSV format, InfluxDB read back, and counters turned into consumption.

Every offline command (``econome detect``, ``econome mv``, ``econome report
…``) reads the readings of the inventory's points, from a CSV file or from
InfluxDB, into one :class:`PointSeries` per point; what follows is the same
code whichever the source.

**The CSV format** (written by ``econome simulate`` and ``econome export``)
has one reading per line, as meters give them::

    timestamp,point,value
    2026-01-05T00:00:00+00:00,mairie-elec-energy,48211.25
    2026-01-05T00:00:00+00:00,station-meteo-temperature,3.4
    2026-01-05T00:15:00+00:00,mairie-elec-energy,48213.5

* ``timestamp``: ISO 8601 with a UTC offset (a time without one is refused);
* ``point``: a point id of the inventory;
* ``value``: the value in the point's unit as the inventory declares it: a
  counter's **cumulative index** (kWh, Wh, m3, L…, rollovers and resets
  included), a sensor's instantaneous value.

A point that gave no reading at a time has no row then: a row with an empty
value, a missing column or another separator than the comma is refused,
naming the file and line (a blank line is allowed).

Rows may come in any order. This is what the pipeline writes to InfluxDB
(measurement ``reading``, field ``value``, tag ``point``), so an export of
collected data and a simulated history are read the same way.

**Counters become consumption** with the pipeline's own logic
(:func:`hourly_consumption`): the :class:`~streams.counters.CounterTracker`
of :func:`streams.aggregate.counter_tracker` (rollovers, declared
replacements, drops and jumps judged by the next reading, gaps spread over the hours they cover,
unexplained gaps over ``max_spread`` not spread) and the local hour windows of
:class:`~streams.windows.WindowCalendar`.

>>> import tempfile
>>> from pathlib import Path
>>> from datetime import UTC, datetime, timedelta
>>> path = Path(tempfile.mkdtemp()) / "r.csv"
>>> t = datetime(2026, 1, 5, tzinfo=UTC)
>>> write_readings_csv(path, [[(t, "p", 65530.0), (t + timedelta(minutes=30), "p", 65535.0),
...                            (t + timedelta(minutes=90), "p", 4.0)]])
3
>>> series = read_readings_csv(path)["p"]
>>> from streams.counters import CounterTracker
>>> from zoneinfo import ZoneInfo
>>> hours, kwh = hourly_consumption(series, CounterTracker("p", 1.0, wrap=65536.0), ZoneInfo("UTC"))  # rolls over
>>> [h.strftime("%H:%M") for h in hours], kwh.tolist()
(['00:00', '01:00'], [7.5, 2.5])
"""

from __future__ import annotations

import codecs
import csv
import logging
import math
from collections import defaultdict
from collections.abc import AsyncIterator, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from streams.counters import CounterTracker, Rejection, Verdict
from streams.errors import DecodeError
from streams.influx import DOWNSAMPLE_MEASUREMENT, RAW_MEASUREMENT, InfluxQLClient, influxql_ident, to_ms
from streams.status import RawHistory
from streams.windows import WindowCalendar, WindowSize

if TYPE_CHECKING:
    from inventory import Inventory

__all__ = [
    "CSV_HEADER",
    "PointSeries",
    "hourly_consumption",
    "influx_rows",
    "read_readings",
    "read_readings_csv",
    "unmeasured_days",
    "write_readings_csv",
    "write_rows",
]

logger = logging.getLogger(__name__)

CSV_HEADER = ("timestamp", "point", "value")
"""The columns of the one readings CSV format."""
CSV_MAX_LINE = 1 << 16
"""Longest line read from a readings CSV, in characters (a row is under 200)."""
CSV_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
"""No reading before this in a readings CSV (as the live path's :class:`streams.validate.EventTimeConfig`)."""
CSV_LATEST = datetime(2100, 1, 1, tzinfo=UTC)
"""No reading from this on in a readings CSV."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, eq=False)
class PointSeries:
    """Readings of one point, sorted by time.

    Attributes:
        times_s: UTC epoch seconds.
        values: the values, in the point's unit (a counter's index).
    """

    times_s: FloatArray
    values: FloatArray


def read_readings_csv(path: Path) -> dict[str, PointSeries]:
    """Read a ``timestamp,point,value`` CSV (ISO 8601 timestamps with an offset).

    Rows may come in any order; blank lines are skipped. A row repeated (same
    point, time and value, e.g. two overlapping exports put end to end) is kept
    once.

    A plain file (no quote, LF or CRLF line ends, three fields a row, finite
    values: what ``econome simulate`` and ``econome export`` write) is read in
    blocks with str methods, each distinct timestamp parsed once: twice as
    fast as csv row by row on a building-year (issue 11). A file that reading
    cannot vouch for is read again from its start row by row, the reference,
    which names the line of each fault; the two give the same arrays, bit for
    bit.

    Raises:
        DecodeError: naming the file and line: bytes that are not UTF-8, a line
            longer than :data:`CSV_MAX_LINE` characters, a row without exactly
            three columns, an empty point or value, a timestamp without offset or
            outside :data:`CSV_EARLIEST` .. :data:`CSV_LATEST` (a device clock
            never set gives 1970; a stray year stretches every hourly grid
            over it), a value that is not a finite number, or two rows of one
            point at the same time with different values (both lines named).
    """
    try:
        return _point_series(path, *_read_plain_csv(path))
    except _NotPlain:
        return _point_series(path, *_read_csv_rows(path))


def _read_csv_rows(path: Path) -> tuple[dict[str, tuple[list[float], list[float]]], dict[str, float]]:
    """Per point, its times and values in file order, and each timestamp's epoch seconds, row by row (csv).

    The reference: whatever the plain reading (:func:`_read_plain_csv`) cannot vouch for is read here,
    which names the line of each fault.
    """
    # Per point, its times and values, as the rows come (a dict lookup a row, not two).
    columns: dict[str, tuple[list[float], list[float]]] = {}
    parsed: dict[str, float] = {}
    earliest, latest = CSV_EARLIEST.timestamp(), CSV_LATEST.timestamp()
    isfinite = math.isfinite
    # Excel's "CSV UTF-8" starts with a BOM; newline="" lets csv see CRLF, LF and the CR of old Mac exports.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(_bounded_lines(handle, path))
        try:
            header = next(reader, None)
            if header is None or tuple(h.strip() for h in header[:3]) != CSV_HEADER:
                msg = f"{path}: the header must be 'timestamp,point,value', got {header}"
                raise DecodeError(msg)
            for row in reader:
                if len(row) != 3:
                    if not row:
                        continue  # a blank line
                    msg = (f"{path}:{reader.line_num}: {len(row)} column(s), expected 3 separated by commas "
                           f"(timestamp,point,value): {','.join(row)[:80]!r}")
                    raise DecodeError(msg)
                stamp, point, text = row
                held = columns.get(point)
                if held is None:  # a point's first row: its id checked once
                    if not point.strip():
                        msg = f"{path}:{reader.line_num}: the row has no point id"
                        raise DecodeError(msg)
                    held = columns[point] = ([], [])
                try:
                    value = float(text)
                except ValueError as exc:
                    if tuple(h.strip().lstrip("\ufeff") for h in row) == CSV_HEADER:
                        # The header of a second export put after the first (cat a.csv b.csv), its BOM too.
                        if not held[0]:
                            del columns[point]  # "point", the column's name, taken above for a point's first row
                        continue
                    # The checks in the order every row gets them: an empty value, the timestamp, then the number.
                    _refuse_value(path, reader.line_num, stamp, point, text, parsed, exc)
                moment = parsed.get(stamp)
                if moment is None:
                    moment = _csv_moment(path, reader.line_num, stamp, earliest, latest)
                    parsed[stamp] = moment
                if not isfinite(value):
                    msg = f"{path}:{reader.line_num}: value {text!r} of {point} is not a finite number"
                    raise DecodeError(msg)
                held[0].append(moment)
                held[1].append(value)
        except csv.Error as exc:  # a quoted field running on past the field size limit
            msg = f"{path}:{reader.line_num}: {exc}"
            raise DecodeError(msg) from exc
        except UnicodeDecodeError as exc:
            msg = f"{path}:{_undecodable_line(path)}: not UTF-8 text ({exc.reason}): save the file as CSV UTF-8"
            raise DecodeError(msg) from exc
    return columns, parsed


def _point_series(path: Path, columns: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]],
                  parsed: dict[str, float]) -> dict[str, PointSeries]:
    """Each point's readings (in file order in ``columns``) sorted by time, a repeated row kept once.

    Raises:
        DecodeError: two rows of one point at the same time with different values, both lines named.
    """
    out: dict[str, PointSeries] = {}
    for point, (stamps, readings) in columns.items():
        t = np.asarray(stamps, dtype=np.float64)
        v = np.asarray(readings, dtype=np.float64)
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        same = t[1:] == t[:-1]
        if same.any():
            clash = np.flatnonzero(same & (v[1:] != v[:-1]))
            if clash.size:
                i = int(clash[0])
                k = i - int(np.searchsorted(t, t[i]))  # rows at that time before it, in file order (a stable sort)
                first, second = _lines_at(path, point, float(t[i]), parsed)[k : k + 2]
                when = datetime.fromtimestamp(float(t[i]), UTC).isoformat()
                msg = (f"{path}:{second}: {point} at {when} is {v[i + 1]:g}, but line {first} gives it "
                       f"{v[i]:g} at the same time: keep one of the two rows")
                raise DecodeError(msg)
            keep = np.concatenate(([True], ~same))
            t, v = t[keep], v[keep]
        out[point] = PointSeries(times_s=t, values=v)
    return out


class _NotPlain(Exception):
    """The plain reading cannot vouch for the file: the row by row reader reads it again from the start."""


_PLAIN_BLOCK = CSV_MAX_LINE // 2
"""Bytes read at a time by the plain reading (about 500 rows: larger blocks are no faster, and at 1 MiB, their
strings out of the CPU's caches, twice as slow). The part line a block leaves for the next is refused over this
length, so a block, and every line in it, is within :data:`CSV_MAX_LINE`: none the row by row reader refuses."""
_NOT_SEPARATORS = bytes(sorted(set(range(256)) - set(b',\n\r"')))
_EARLIEST_S, _LATEST_S = CSV_EARLIEST.timestamp(), CSV_LATEST.timestamp()
_NO_PATH = Path()  # the row by row reader names the file and line of a refused timestamp


def _read_plain_csv(path: Path) -> tuple[dict[str, tuple[FloatArray, FloatArray]], dict[str, float]]:
    """What :func:`_read_csv_rows` gives, for a plain file, read in blocks with str methods.

    Plain: UTF-8 (a BOM at the start), no ``"``, LF or CRLF line ends (no CR
    alone), the header :func:`_read_csv_rows` takes, then rows of exactly two
    commas (blank lines left out) with a point id not blank, a timestamp
    :func:`_csv_moment` takes and a finite value ``float`` takes. csv reads
    such a line as ``line.split(",")``, so these are the rows of
    :func:`_read_csv_rows`, in the same order, each value the same
    ``float(text)`` and each time the same ``datetime.timestamp()``.

    Raises:
        _NotPlain: the file is not plain (why is left to the row by row reader).
    """
    moments: dict[str, float] = {}
    codes: dict[str, int] = {}  # point -> its number, in the order of first appearance (the rows' dict order)
    blocks: list[tuple[npt.NDArray[np.int32], FloatArray, FloatArray]] = []  # each block's points, times, values
    with path.open("rb") as handle:
        data = handle.read(_PLAIN_BLOCK).removeprefix(codecs.BOM_UTF8)
        end = data.find(b"\n") + 1
        if not end:
            raise _NotPlain
        line = data[:end].removesuffix(b"\n").removesuffix(b"\r")  # "" if the first line is blank: no header
        if b'"' in line or b"\r" in line:  # csv unquotes (a quote left open takes the rows in), a CR ends the line
            raise _NotPlain
        if tuple(h.strip() for h in _plain_text(line).split(",")[:3]) != CSV_HEADER:
            raise _NotPlain
        carry = data[end:]
        while True:
            chunk = handle.read(_PLAIN_BLOCK)
            data = carry + chunk
            if not chunk and data:
                data += b"\n"  # the last line, without its line end
            end = data.rfind(b"\n") + 1
            block, carry = data[:end], data[end:]
            if len(carry) > _PLAIN_BLOCK:
                raise _NotPlain
            if rows := _plain_rows(block, moments, codes):
                blocks.append(rows)
            if not chunk:
                break
    if not blocks:
        return {}, moments
    # Each point's rows together, in file order: one stable sort of the file's rows by point (a block holds
    # a few rows of each of a portfolio's hundred points: sorted block by block, they were 0.2 s of pieces).
    code, t, v = (np.concatenate(column) for column in zip(*blocks, strict=True))
    order = np.argsort(code, kind="stable")
    t, v = t[order], v[order]
    ends = np.cumsum(np.bincount(code, minlength=len(codes))).tolist()
    starts = [0, *ends[:-1]]
    return {point: (t[starts[n]:ends[n]], v[starts[n]:ends[n]]) for point, n in codes.items()}, moments


def _plain_lines(block: bytes) -> bytes:
    """``block`` (whole lines) with LF line ends for CRLF and no blank line."""
    block = block.replace(b"\r\n", b"\n")
    if block.startswith(b"\n") or b"\n\n" in block:
        block = block.lstrip(b"\n")
        while b"\n\n" in block:
            block = block.replace(b"\n\n", b"\n")
    return block


def _plain_text(block: bytes) -> str:
    """``block`` decoded (:class:`_NotPlain` if it is not UTF-8)."""
    try:
        return block.decode("utf-8")
    except UnicodeDecodeError:
        raise _NotPlain from None


def _plain_rows(block: bytes, moments: dict[str, float],
                codes: dict[str, int]) -> tuple[npt.NDArray[np.int32], FloatArray, FloatArray] | None:
    """The rows of ``block`` (whole lines): their points' numbers (new points numbered), times and values."""
    # Rows of exactly two commas, no quote, no CR: the separators alone are ",,\n" again and again.
    separators = block.translate(None, _NOT_SEPARATORS)
    if separators != b",,\n" * (len(separators) // 3):
        block = _plain_lines(block)  # CRLF line ends, blank lines
        separators = block.translate(None, _NOT_SEPARATORS)
        if separators != b",,\n" * (len(separators) // 3):  # a quote, a CR alone, a row not of three fields
            raise _NotPlain
    if not block:
        return None
    fields = _plain_text(block).replace("\n", ",").split(",")
    stamps, points, texts = fields[0:-1:3], fields[1::3], fields[2::3]
    rows = len(stamps)
    for stamp in set(stamps).difference(moments):
        moments[stamp] = _plain_moment(stamp)
    t = np.fromiter(map(moments.__getitem__, stamps), np.float64, rows)
    try:
        v = np.fromiter(map(float, texts), np.float64, rows)
    except ValueError:
        raise _NotPlain from None
    if not np.isfinite(v).all():
        raise _NotPlain
    try:
        code = np.fromiter(map(codes.__getitem__, points), np.int32, rows)
    except KeyError:  # a point's first rows
        for point in dict.fromkeys(points):
            if point not in codes:
                if not point.strip():
                    raise _NotPlain from None
                codes[point] = len(codes)
        code = np.fromiter(map(codes.__getitem__, points), np.int32, rows)
    return code, t, v


def _plain_moment(stamp: str) -> float:
    """The epoch seconds of a timestamp :func:`_csv_moment` takes (:class:`_NotPlain` for one it refuses)."""
    try:
        return _csv_moment(_NO_PATH, 0, stamp, _EARLIEST_S, _LATEST_S)
    except DecodeError:
        raise _NotPlain from None


def _refuse_value(path: Path, line_no: int, stamp: str, point: str, text: str, parsed: dict[str, float],
                  exc: ValueError) -> NoReturn:
    """The error of a row whose value is no number: an empty value, else a bad timestamp, else the value."""
    if not text.strip():
        msg = (f"{path}:{line_no}: {point} has an empty value (a point that gave no reading has no row; "
               "leave the line out)")
        raise DecodeError(msg) from exc
    if stamp not in parsed:
        _csv_moment(path, line_no, stamp, CSV_EARLIEST.timestamp(), CSV_LATEST.timestamp())
    msg = f"{path}:{line_no}: value {text!r} of {point} is not a number"
    raise DecodeError(msg) from exc


def _lines_at(path: Path, point: str, moment: float, parsed: dict[str, float]) -> list[int]:
    """The lines of ``path`` (already read whole: its timestamps in ``parsed``) holding ``point`` at ``moment``.

    Read again for an error only, rather than keeping a line number per row of every file read.
    """
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        return [reader.line_num for row in reader
                if len(row) == 3 and row[1] == point and parsed.get(row[0]) == moment]


def _csv_moment(path: Path, line_no: int, stamp: str, earliest: float, latest: float) -> float:
    """The epoch seconds of a CSV timestamp, or a :class:`DecodeError` naming the line."""
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError as exc:
        msg = f"{path}:{line_no}: bad timestamp {stamp!r}"
        raise DecodeError(msg) from exc
    if when.tzinfo is None:
        msg = f"{path}:{line_no}: timestamp {stamp!r} has no UTC offset"
        raise DecodeError(msg)
    try:
        moment = when.timestamp()
    except (OverflowError, ValueError):  # year 1 at a positive offset is before year 1 in UTC
        moment = -math.inf
    if not earliest <= moment < latest:
        msg = (f"{path}:{line_no}: timestamp {stamp!r} is outside {CSV_EARLIEST.date().isoformat()} .. "
               f"{CSV_LATEST.date().isoformat()} (a device clock never set gives 1970)")
        raise DecodeError(msg)
    return moment


def _bounded_lines(handle: TextIO, path: Path) -> Iterator[str]:
    """The lines of ``handle``, refusing one longer than :data:`CSV_MAX_LINE` before it is read whole."""
    readline, limit = handle.readline, CSV_MAX_LINE + 1
    line_no = 0
    while line := readline(limit):
        line_no += 1
        if len(line) == limit and not line.endswith(("\n", "\r")):
            msg = (f"{path}:{line_no}: line longer than {CSV_MAX_LINE:,} characters, not a "
                   "timestamp,point,value row")
            raise DecodeError(msg)
        yield line


def _undecodable_line(path: Path) -> int:
    """The number of the first line of ``path`` that is not UTF-8 (read as bytes, in bounded pieces)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line_no = 1
    with path.open("rb") as handle:
        while raw := handle.readline(CSV_MAX_LINE + 1):
            try:
                decoder.decode(raw)
            except UnicodeDecodeError:
                return line_no
            line_no += raw.endswith(b"\n")
    return line_no


def write_readings_csv(path: Path, chunks: Iterable[Iterable[tuple[datetime, str, float]]]) -> int:
    """Write readings in the one CSV format, one chunk of ``(time, point, value)`` at a time.

    Only one chunk is held at a time, so a caller streaming from InfluxDB keeps
    its memory bounded. Non-finite values are left out.

    Returns:
        The number of rows written.
    """
    count = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(CSV_HEADER) + "\n")
        for chunk in chunks:
            count += write_rows(handle, chunk)
    return count


def write_rows(handle: TextIO, rows: Iterable[tuple[datetime, str, float]]) -> int:
    """Append ``(time, point, value)`` rows to an open readings CSV (header already written); non-finite values are left out.

    Returns:
        The number of rows written.
    """
    lines = [f"{ts.isoformat()},{point},{value!r}\n" for ts, point, value in rows if math.isfinite(value)]
    handle.writelines(lines)
    return len(lines)


def _tag_filter(tag: str, values: Collection[str]) -> str:
    escaped = (v.replace("\\", "\\\\").replace("'", "\\'") for v in sorted(values))
    return "(" + " OR ".join(f"\"{tag}\" = '{v}'" for v in escaped) + ")"


async def read_readings(
    client: InfluxQLClient,
    inventory: Inventory,
    start: datetime,
    end: datetime,
    *,
    chunk: timedelta = timedelta(days=1),
    retention_policy: str | None = None,
    points: Collection[str] | None = None,
    history: RawHistory | None = None,
    now: datetime | None = None,
    index_before: bool = False,
) -> dict[str, PointSeries]:
    """The raw readings of the inventory's points in ``[start, end)``, as :func:`read_readings_csv` gives them.

    Counters come as the cumulative indexes the meters gave, sensors as their
    values, as the pipeline wrote them (:class:`streams.influx.LineEncoder`).
    Points unknown to the inventory are left out.

    With ``history``, the part of the range older than the raw readings'
    retention (:meth:`RawHistory.raw_from`) is read from the hourly aggregates
    of ``econome influx setup`` (``long.reading_1h``): a counter's hourly
    minimum as its index at the start of the hour, and its maximum just before
    the hour's end when the next hour has none (the same consumption per hour,
    but for a reset or rollover inside the hour; a Linky's or a Gazpar's
    readings fall on the hour, so its days are the file's), a sensor's hourly
    mean at the middle of the hour. An index before ``start`` read there is the
    hourly maximum at the end of its hour; one from ``end``, the hourly minimum
    at its start. With ``index_before``, every counter's last index
    before ``start`` and first index from ``end`` are read too, whatever their
    age, so that a meter read once a week gives the consumption of the range's
    first and last days as a file would.

    Args:
        client: the InfluxQL client.
        inventory: the portfolio.
        start: first time (aware).
        end: end, excluded.
        chunk: time covered by one query.
        retention_policy: where raw readings are (``raw`` after ``econome influx setup``), without ``history``.
        points: read only these points (all the inventory's when None).
        history: where raw readings are and how long they are kept (:func:`streams.status.raw_history`).
        now: the time the retention is counted from (default: the clock's now).
        index_before: also read each counter's last index before ``start`` and first from ``end``.

    Raises:
        SinkError: InfluxDB is unreachable or refused a query.
    """
    known = {p.id for _, p in inventory.points()}
    if points is not None:
        known &= set(points)
    if not known:
        return {}
    where = _tag_filter("point", known) if points is not None else None
    counters = {p.id for _, p in inventory.points() if p.cumulative and p.id in known}
    history = history or RawHistory(retention_policy)
    parts: dict[str, list[tuple[FloatArray, FloatArray]]] = {}
    unknown: set[str] = set()
    chunks = _select(client, start, end, chunk=chunk, history=history, now=now or datetime.now(UTC),
                     where=where, counters=counters)
    if index_before and counters:
        chunks = _chain(_edge_indexes(client, start, end, history, now or datetime.now(UTC), counters), chunks)
    async for point, rows in chunks:
        if point not in known:
            unknown.add(point)
            continue
        if rows:
            data = np.asarray(rows, dtype=np.float64)
            parts.setdefault(point, []).append((data[:, 0] / 1000.0, data[:, 1]))
    if unknown and points is None:
        logger.debug("InfluxDB holds readings of %d points not in the inventory (ignored): %s",
                     len(unknown), ", ".join(sorted(unknown)[:5]))
    out: dict[str, PointSeries] = {}
    for point, pieces in parts.items():
        times = np.concatenate([t for t, _ in pieces])
        values = np.concatenate([v for _, v in pieces])
        order = np.argsort(times, kind="stable")
        out[point] = PointSeries(times[order], values[order])
    return out


async def _chain(
    first: AsyncIterator[tuple[str, list[tuple[int, float]]]], second: AsyncIterator[tuple[str, list[tuple[int, float]]]]
) -> AsyncIterator[tuple[str, list[tuple[int, float]]]]:
    async for item in first:
        yield item
    async for item in second:
        yield item


async def _select(
    client: InfluxQLClient, start: datetime, end: datetime, *, chunk: timedelta, history: RawHistory, now: datetime,
    where: str | None, counters: Collection[str],
) -> AsyncIterator[tuple[str, list[tuple[int, float]]]]:
    """Per point, its readings in ``[start, end)``: raw ones, and before the raw retention the hourly aggregates."""
    cut = history.raw_from(now)
    if cut is not None and start < cut and history.downsampled is not None:
        top = min(end, cut)
        # A sensor's hourly mean is its value mid-hour.
        async for point, rows in client.select_range(DOWNSAMPLE_MEASUREMENT, "mean", start, top, group_by="point",
                                                     chunk=chunk, retention_policy=history.downsampled, where=where):
            if point not in counters:
                yield point, [(ms + _HOUR_MS // 2, value) for ms, value in rows]
        if counters:
            async for item in _hourly_indexes(client, start, top, min(top + timedelta(hours=1), cut), chunk=chunk,
                                              policy=history.downsampled, where=where, counters=counters):
                yield item
        start = max(start, cut)
    if start < end:
        async for item in client.select_range(RAW_MEASUREMENT, "value", start, end, group_by="point", chunk=chunk,
                                              retention_policy=history.policy, where=where):
            yield item


async def _hourly_indexes(
    client: InfluxQLClient, start: datetime, top: datetime, ahead: datetime, *, chunk: timedelta, policy: str,
    where: str | None, counters: Collection[str],
) -> AsyncIterator[tuple[str, list[tuple[int, float]]]]:
    """Counters' indexes in ``[start, top)`` from their hourly rows: ``min`` at the start of each hour, ``max`` at its end.

    A counter's first index of an hour stands at the hour's start (exact for a Linky or a Gazpar, whose
    readings fall on the hour, and for a polled meter within its poll interval); its last index, just
    before the hour's end, only when the next hour has no row (``ahead``: the end of the rows looked at
    to know it), for the next row's minimum is the index then. So a 30-minute load curve gives each
    local day's kWh of the file.
    """
    lows: dict[str, dict[int, float]] = defaultdict(dict)
    highs: dict[str, dict[int, float]] = defaultdict(dict)
    for field, into in (("min", lows), ("max", highs)):
        async for point, rows in client.select_range(DOWNSAMPLE_MEASUREMENT, field, start, ahead, group_by="point",
                                                     chunk=chunk, retention_policy=policy, where=where):
            if point in counters:
                into[point].update(rows)
    top_ms = to_ms(top)
    for point, by_hour in lows.items():
        out: list[tuple[int, float]] = []
        for hour in sorted(by_hour):
            if hour >= top_ms:
                break
            out.append((hour, by_hour[hour]))
            high = highs[point].get(hour)
            if high is not None and high != by_hour[hour] and hour + _HOUR_MS not in by_hour:
                out.append((hour + _HOUR_MS - 1, high))
        yield point, out


async def _edge_indexes(
    client: InfluxQLClient, start: datetime, end: datetime, history: RawHistory, now: datetime, counters: Collection[str]
) -> AsyncIterator[tuple[str, list[tuple[int, float]]]]:
    """Each counter's last index before ``start`` and first from ``end``, whatever their age: two queries.

    A meter read once a week has its readings days away from the range; the
    consumption of the range's first and last days needs them, as a file holding
    them all would give it.
    """
    cut = history.raw_from(now)
    where = _tag_filter("point", counters)
    for selector, moment, before in (("last", start, True), ("first", end, False)):
        from_long = cut is not None and moment < cut and history.downsampled is not None
        found: set[str] = set()
        async for point, rows in _edge_query(client, selector, moment, before, history, where, from_long=from_long):
            found.add(point)
            yield point, rows
        missing = [point for point in counters if point not in found]
        if before and not from_long and history.downsampled is not None and missing:
            # The range is within the raw retention but the index before it may not be:
            # a weekly meter's last reading, older than the raw retention, is left only in
            # the hourly aggregates.
            async for item in _edge_query(client, selector, moment, before, history, _tag_filter("point", missing),
                                          from_long=True):
                yield item


async def _edge_query(
    client: InfluxQLClient, selector: str, moment: datetime, before: bool, history: RawHistory, where: str, *,
    from_long: bool,
) -> AsyncIterator[tuple[str, list[tuple[int, float]]]]:
    """Each point's ``last`` reading before ``moment`` or ``first`` from it, in the raw readings or the hourly aggregates."""
    if from_long and history.downsampled is not None:
        source = f"{influxql_ident(history.downsampled)}.{influxql_ident(DOWNSAMPLE_MEASUREMENT)}"
        # Before: an hourly maximum stands at the end of its hour; after: an hourly minimum at its start (see _select).
        field, bound, offset_ms = ("max", moment - timedelta(hours=1), _HOUR_MS) if before else ("min", moment, 0)
    else:
        source = influxql_ident(RAW_MEASUREMENT)
        if history.policy:
            source = f"{influxql_ident(history.policy)}.{source}"
        field, bound, offset_ms = "value", moment, 0
    condition = f"time < {to_ms(bound)}ms" if before else f"time >= {to_ms(bound)}ms"
    statement = (
        f"SELECT {selector}({influxql_ident(field)}) FROM {source} "  # noqa: S608 - identifiers quoted, times are integers
        f'WHERE {condition} AND {where} GROUP BY "point"'
    )
    for series in await client.query(statement):
        point = str(series.get("tags", {}).get("point", ""))
        rows = [(int(row[0]) + offset_ms, float(row[1])) for row in series.get("values", []) if row[1] is not None]
        if rows:
            yield point, rows


async def influx_rows(
    client: InfluxQLClient,
    points: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    chunk: timedelta = timedelta(days=1),
    points_per_query: int = 50,
    retention_policy: str | None = None,
    history: RawHistory | None = None,
    counters: Collection[str] = (),
    now: datetime | None = None,
) -> AsyncIterator[list[tuple[datetime, str, float]]]:
    """The raw readings of ``points`` in ``[start, end)``, one time chunk at a time, sorted by time then point.

    One query per chunk of time and group of ``points_per_query`` points, so
    that memory holds at most one chunk of time of the points, whatever the
    range (``econome export``). With ``history``, the part older than the raw
    retention comes from the hourly aggregates, as in :func:`read_readings`
    (``counters``: the points read as indexes).

    Yields:
        Per time chunk, its ``(time, point, value)`` rows (an empty chunk yields nothing).

    Raises:
        SinkError: InfluxDB is unreachable or refused a query.
    """
    groups = [list(points[i:i + points_per_query]) for i in range(0, len(points), points_per_query)]
    history = history or RawHistory(retention_policy)
    moment = now or datetime.now(UTC)
    lo = start
    while lo < end:
        hi = min(lo + chunk, end)
        rows: list[tuple[int, str, float]] = []
        for group in groups:
            async for point, values in _select(client, lo, hi, chunk=chunk, history=history, now=moment,
                                               where=_tag_filter("point", group), counters=counters):
                rows.extend((ms, point, value) for ms, value in values)
        if rows:
            rows.sort()
            yield [(datetime.fromtimestamp(ms / 1000, UTC), point, value) for ms, point, value in rows]
        lo = hi


def hourly_consumption(series: PointSeries, tracker: CounterTracker, tz: ZoneInfo) -> tuple[list[datetime], FloatArray]:
    """A counter's consumption per local hour, in the tracker's canonical unit, as the pipeline aggregates it.

    Each pair of successive indexes gives the consumption between them
    (:meth:`CounterTracker.update`: rollovers, declared replacements, drops
    and implausible jumps judged by the next reading); it is spread over the
    hour windows it covers in proportion to time. A gap longer than the
    tracker's ``max_spread`` is not spread (the pipeline rejects it too). Hours
    that no interval covers are absent. Each held reading judged (a glitch
    dropped, a reset, a re-base, a jump) is logged as a warning, the pipeline's
    sentence (:meth:`~streams.counters.Judgement.describe`), up to five per
    counter then a count; jitter is not. A reading still pending at the end
    of the series is not counted.

    Args:
        series: the counter's readings (cumulative indexes), sorted by time.
        tracker: a fresh tracker (:func:`streams.aggregate.counter_tracker`).
        tz: the organisation's timezone (hour windows are local, for half-hour offsets).

    Returns:
        The starts (UTC) of the hours with consumption, in order, and the consumption of each.
    """
    starts: list[int] = []
    ends: list[int] = []
    amounts: list[float] = []
    told = 0
    for t, v in zip(series.times_s.tolist(), series.values.tolist(), strict=True):
        if not math.isfinite(v):
            continue
        interval = tracker.update(datetime.fromtimestamp(t, UTC), v)
        judged = tracker.last_judgement
        if judged is not None and judged.verdict is not Verdict.JITTER:
            told += 1
            if told <= _JUDGEMENTS_TOLD:
                logger.warning("%s", judged.describe(tracker.point_id))
        if interval is None:
            if tracker.last_rejection is Rejection.GAP:
                logger.warning("counter %s: a gap of more than %s before %s is not spread",
                               tracker.point_id, tracker.max_spread, datetime.fromtimestamp(t, UTC).isoformat())
            continue
        starts.append(round(interval.start.timestamp() * 1000))
        ends.append(round(interval.end.timestamp() * 1000))
        amounts.append(interval.amount)
    if told > _JUDGEMENTS_TOLD:
        counts = ", ".join(f"{n} {v.value}" for v, n in tracker.verdicts.items() if n and v is not Verdict.JITTER)
        logger.warning("%s: %d more held readings judged (in all: %s)", tracker.point_id, told - _JUDGEMENTS_TOLD, counts)
    if not starts:
        return [], np.zeros(0)
    start_ms, end_ms = np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)
    if _whole_hour_offsets(tz, int(start_ms[0]), int(end_ms[-1])):
        hours = _split_utc_hours(start_ms, end_ms, np.array(amounts, dtype=np.float64))
    else:  # local hours are not UTC hours (a half-hour offset): the windows' own split
        calendar = WindowCalendar(tz)
        hours = defaultdict(float)
        for lo, hi, amount in zip(starts, ends, amounts, strict=True):
            for hour_ms, share in calendar.split_ms(lo, hi, WindowSize.HOUR):
                hours[hour_ms] += amount * share
    keys = sorted(hours)
    return [datetime.fromtimestamp(k / 1000, UTC) for k in keys], np.array([hours[k] for k in keys], dtype=np.float64)


_HOUR_MS = 3_600_000
_JUDGEMENTS_TOLD = 5
"""Held counter readings judged (glitches, re-bases...) told one by one per point; the rest are counted."""


UNMEASURED_SHARE = 0.1
"""The share of a local day a counter's reading gaps may cover before :func:`unmeasured_days` names it
(the complement of :func:`mv.baseline.daily_energy`'s ``min_coverage``)."""
_GAP_FACTOR = 1.5
"""An interval between readings over this many times the counter's median interval is a gap: a Gazpar's missing gas
day makes a 48-hour interval of its 24-hour step (at twice the step it was none)."""
_GAP_FLOOR_S = 3600.0
"""An interval between readings is never a gap under an hour, whatever the counter's usual step."""


def unmeasured_days(series: PointSeries, tz: ZoneInfo, share: float = UNMEASURED_SHARE) -> set[date]:
    """The local days a counter's readings leave more than ``share`` of uncovered: not measured, whatever is spread there.

    :func:`hourly_consumption` spreads the consumption across a gap over its hours, as the
    pipeline does: right for a live meter whose index kept counting, but an imported Linky or
    Gazpar has no energy at all for a day its file misses (the next index continues without
    it), and spread over that day it read as a measured day of almost nothing. A gap is an
    interval between successive readings longer than 1.5 times the counter's median interval
    (and than an hour), so a meter read once a week is not full of gaps, and than 1.5 times the
    shorter of the intervals beside it, so a Linky moved from its curve to daily values is not
    either; the days it covers
    for more than ``share`` of their length (23 or 25 hours at the clock changes) are named.

    Args:
        series: the counter's readings, sorted by time.
        tz: the timezone of the local days.
        share: the part of a day gaps may cover and the day still count as measured.

    Returns:
        The days not measured.

    >>> from zoneinfo import ZoneInfo
    >>> start = datetime(2026, 3, 9, tzinfo=UTC).timestamp()
    >>> times = [start + 1800 * i for i in range(49)] + [start + 1800 * i for i in range(96, 145)]
    >>> series = PointSeries(np.array(times), np.arange(98, dtype=np.float64))
    >>> sorted(d.isoformat() for d in unmeasured_days(series, ZoneInfo("UTC")))
    ['2026-03-10']
    """
    finite = np.isfinite(series.values)
    times = series.times_s[finite]
    if times.size < 3:  # two intervals at least, to tell a usual step from a gap
        return set()
    steps = np.diff(times)
    limit = max(_GAP_FACTOR * float(np.median(steps)), _GAP_FLOOR_S)
    # And longer than 1.5 times the shorter of its neighbours: a Linky moved from its curve to daily consumption
    # (the daily fetch, a meter without curve) has daily steps among daily steps, not gaps among half hours.
    nearest = np.minimum(np.r_[np.inf, steps[:-1]], np.r_[steps[1:], np.inf])
    uncovered: dict[date, float] = defaultdict(float)
    for i in np.flatnonzero((steps > limit) & (steps > _GAP_FACTOR * nearest)).tolist():
        lo, hi = float(times[i]), float(times[i + 1])
        day = datetime.fromtimestamp(lo, UTC).astimezone(tz).date()
        while (day_start := datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()) < hi:
            after = day + timedelta(days=1)
            day_end = datetime(after.year, after.month, after.day, tzinfo=tz).timestamp()
            uncovered[day] += max(0.0, min(hi, day_end) - max(lo, day_start))
            day = after
    out: set[date] = set()
    for day, seconds in uncovered.items():
        after = day + timedelta(days=1)
        length = (datetime(after.year, after.month, after.day, tzinfo=tz).timestamp()
                  - datetime(day.year, day.month, day.day, tzinfo=tz).timestamp())
        if seconds > share * length:
            out.add(day)
    return out


def _whole_hour_offsets(tz: ZoneInfo, start_ms: int, end_ms: int) -> bool:
    """Whether every UTC offset of ``tz`` in the range is a whole number of hours (local hours are UTC hours)."""
    day = 86_400_000
    for ms in range(start_ms - day, end_ms + 2 * day, day):
        offset = datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz).utcoffset()
        if offset is None or offset.total_seconds() % 3600:
            return False
    return True


def _split_utc_hours(start_ms: IntArray, end_ms: IntArray, amounts: FloatArray) -> dict[int, float]:
    """:meth:`WindowCalendar.split_ms` over UTC hours for many intervals at once: each amount shared in proportion to time.

    A zero-length interval belongs wholly to the hour holding its end, as in the windows.
    """
    first = start_ms // _HOUR_MS
    last = np.maximum((end_ms - 1) // _HOUR_MS, first)
    empty = end_ms <= start_ms
    first = np.where(empty, end_ms // _HOUR_MS, first)
    last = np.where(empty, first, last)
    count = last - first + 1
    which = np.repeat(np.arange(start_ms.size), count)
    hour = first[which] + (np.arange(which.size) - np.repeat(np.cumsum(count) - count, count))
    lo = np.maximum(start_ms[which], hour * _HOUR_MS)
    hi = np.minimum(end_ms[which], (hour + 1) * _HOUR_MS)
    span = (end_ms - start_ms)[which]
    share = np.where(empty[which], 1.0, (hi - lo) / np.where(span > 0, span, 1))
    keys, index = np.unique(hour, return_inverse=True)
    sums = np.bincount(index, weights=amounts[which] * share, minlength=keys.size)
    return {int(k) * _HOUR_MS: float(v) for k, v in zip(keys.tolist(), sums.tolist(), strict=True)}
