"""Event-time tumbling windows aligned to the organisation's local time.

Windows of 10 minutes and 1 hour are aligned to the local wall clock; a day
runs from local midnight to the next local midnight, so it lasts 23 h or 25 h
when the clocks change. Every window includes its start and excludes its end.

The arithmetic is bounded (issue 10): a time outside years 2 to 9998 (where
the local-time shifts of ``datetime`` would overflow), or an interval that
would be cut into more than :data:`MAX_SPLIT` windows, raises
:class:`~streams.errors.EventTimeError` instead of overflowing or looping for
minutes: a reading stamped ``0001-01-01`` or a gap of 56 years is an error
the caller quarantines, never a crash or millions of windows.

>>> from datetime import datetime
>>> from zoneinfo import ZoneInfo
>>> paris = ZoneInfo("Europe/Paris")
>>> start, end = window_bounds(datetime(2026, 3, 29, 12, tzinfo=paris), WindowSize.DAY, paris)
>>> (end - start).total_seconds() / 3600
23.0
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from enum import Enum
from zoneinfo import ZoneInfo

from streams.errors import EventTimeError

__all__ = ["MAX_SPLIT", "WindowCalendar", "WindowSize", "split_interval", "window_bounds"]

MAX_SPLIT = 20_000
"""The most windows one interval may be cut into (31 days of 10-minute windows are 4,464)."""

# Times the windows can hold: one day inside datetime's range, so no timezone shift overflows.
_EARLIEST = datetime(2, 1, 1, tzinfo=UTC)
_LATEST = datetime(9998, 12, 31, tzinfo=UTC)
_EARLIEST_MS = int(_EARLIEST.timestamp() * 1000)
_LATEST_MS = int(_LATEST.timestamp() * 1000)


def _check_ms(ts_ms: int) -> None:
    if not _EARLIEST_MS <= ts_ms <= _LATEST_MS:
        msg = f"time {ts_ms} ms since 1970 is outside what windows can hold (years 2 to 9998)"
        raise EventTimeError(msg)


def _check_split(total_s: float, size: WindowSize) -> None:
    # A day may last 23 h: count with the shortest length a window of this size can have.
    shortest = timedelta(hours=23) if size is WindowSize.DAY else size.nominal
    if total_s / shortest.total_seconds() > MAX_SPLIT - 2:
        msg = (
            f"an interval of {timedelta(seconds=total_s)} would be cut into more than {MAX_SPLIT} "
            f"windows of {size.value}: a gap that long is not spread"
        )
        raise EventTimeError(msg)


class WindowSize(str, Enum):
    """Window lengths; the value is the InfluxDB ``window`` tag."""

    TEN_MINUTES = "10m"
    HOUR = "1h"
    DAY = "1d"

    @property
    def nominal(self) -> timedelta:
        """Nominal length (a day may last 23 h or 25 h)."""
        return {"10m": timedelta(minutes=10), "1h": timedelta(hours=1), "1d": timedelta(days=1)}[self.value]


def window_bounds(ts: datetime, size: WindowSize, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The window holding ``ts``: (start, end) in UTC, start included, end excluded.

    Raises:
        ValueError: ``ts`` is naive.
        EventTimeError: ``ts`` lies outside years 2 to 9998.
    """
    if ts.tzinfo is None:
        msg = "window_bounds needs an aware datetime"
        raise ValueError(msg)
    if not _EARLIEST <= ts <= _LATEST:
        msg = f"time {ts.isoformat()} is outside what windows can hold (years 2 to 9998)"
        raise EventTimeError(msg)
    local = ts.astimezone(tz)
    if size is WindowSize.DAY:
        day = local.date()
        start = datetime.combine(day, time(0), tz).astimezone(UTC)
        end = datetime.combine(day + timedelta(days=1), time(0), tz).astimezone(UTC)
        return start, end
    offset = local.utcoffset() or timedelta(0)
    length = size.nominal
    utc = ts.astimezone(UTC)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    # Floor on the local wall clock: shift by the UTC offset, floor, shift back.
    shifted = utc + offset - epoch
    start = epoch + (shifted // length) * length - offset
    return start, start + length


def split_interval(start: datetime, end: datetime, size: WindowSize, tz: ZoneInfo) -> Iterator[tuple[datetime, datetime, float]]:
    """Cut ``[start, end)`` by windows: (window start, window end, share of the interval).

    The shares add up to 1; a zero-length interval belongs wholly to the window
    holding ``end``.

    Raises:
        EventTimeError: a bound is out of range, or the interval spans more
            than :data:`MAX_SPLIT` windows.
    """
    total = (end - start).total_seconds()
    _check_split(total, size)
    if total <= 0:
        w_start, w_end = window_bounds(end, size, tz)
        yield w_start, w_end, 1.0
        return
    cursor = start
    while cursor < end:
        w_start, w_end = window_bounds(cursor, size, tz)
        piece_end = min(w_end, end)
        yield w_start, w_end, (piece_end - cursor).total_seconds() / total
        cursor = piece_end


_HOUR_MS = 3_600_000


class WindowCalendar:
    """Fast window bounds in epoch milliseconds, cached per UTC hour.

    The hot path of the aggregator asks for the windows of every reading; the
    timezone arithmetic is done once per hour of data, not once per reading.

    >>> from zoneinfo import ZoneInfo
    >>> cal = WindowCalendar(ZoneInfo("Europe/Paris"))
    >>> cal.bounds_ms(1_774_778_400_000, WindowSize.DAY)  # 2026-03-29 10:00 UTC, a 23 h day
    (1774738800000, 1774821600000)
    """

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._hours: dict[int, tuple[int, int, int]] = {}

    def _hour(self, ts_ms: int) -> tuple[int, int, int]:
        hour = ts_ms // _HOUR_MS
        cached = self._hours.get(hour)
        if cached is None:
            ts = datetime.fromtimestamp(hour * _HOUR_MS / 1000, UTC)
            offset = ts.astimezone(self.tz).utcoffset() or timedelta(0)
            day_start, day_end = window_bounds(ts, WindowSize.DAY, self.tz)
            cached = (
                int(offset.total_seconds() * 1000),
                int(day_start.timestamp() * 1000),
                int(day_end.timestamp() * 1000),
            )
            # A time at the very edge (0002-01-01 00:00 UTC) has its local day start in year 1: refused here,
            # with the reading, rather than kept as a window whose bounds raise when it closes (Hypothesis found it).
            _check_ms(cached[1])
            _check_ms(cached[2])
            if len(self._hours) > 100_000:
                self._hours.clear()
            self._hours[hour] = cached
        return cached

    def bounds_ms(self, ts_ms: int, size: WindowSize) -> tuple[int, int]:
        """(start, end) of the window holding ``ts_ms``.

        Raises:
            EventTimeError: ``ts_ms`` lies outside years 2 to 9998.
        """
        _check_ms(ts_ms)
        offset, day_start, day_end = self._hour(ts_ms)
        if size is WindowSize.DAY:
            return day_start, day_end
        length = 600_000 if size is WindowSize.TEN_MINUTES else _HOUR_MS
        start = (ts_ms + offset) // length * length - offset
        return start, start + length

    def split_ms(self, start_ms: int, end_ms: int, size: WindowSize) -> list[tuple[int, float]]:
        """Cut ``[start, end)`` by windows: (window start, share); shares add up to 1.

        Raises:
            EventTimeError: a bound is out of range, or the interval spans more
                than :data:`MAX_SPLIT` windows.
        """
        total = end_ms - start_ms
        _check_ms(start_ms)
        _check_ms(end_ms)
        _check_split(total / 1000, size)
        if total <= 0:
            return [(self.bounds_ms(end_ms, size)[0], 1.0)]
        out = []
        cursor = start_ms
        while cursor < end_ms:
            w_start, w_end = self.bounds_ms(cursor, size)
            piece_end = min(w_end, end_ms)
            out.append((w_start, (piece_end - cursor) / total))
            cursor = piece_end
        return out
