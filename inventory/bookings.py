r"""Bookings of halls and gyms, read from an iCalendar file or URL.

Communes manage their rooms in a booking calendar; its iCalendar export says
when a hall or a gymnasium is used, on top of its weekly hours. A building
points to it with ``schedule.bookings.ical``: a ``.ics`` file, taken relative
to the inventory file, or an ``http(s)://`` URL.

Events are expanded with ``recurring-ical-events`` (RRULE, RDATE, EXDATE and
moved occurrences). Times are read the way calendar programs read them:

- a time with a ``TZID`` or in UTC (``Z``) is that instant;
- a floating time (no zone) is wall-clock time of the organisation's timezone;
- an all-day event runs from local midnight of its first day to local
  midnight after its last (``DTEND`` of a date is excluded, as RFC 5545 says).

A URL is fetched with a timeout and each good copy is kept on disk. When the
URL fails (unreachable, an HTTP error, a body that is not a calendar) a
warning is logged and the last good copy is used; only with no copy at all is
it an error. A local file that cannot be read or parsed is an error naming the
file, and the event's UID and summary when one event is at fault.

Sample (in the inventory)::

    schedule:
      weekly: {mon: ["17:00-22:00"]}
      bookings: {ical: calendars/salle-des-fetes.ics}

>>> from pathlib import Path
>>> from zoneinfo import ZoneInfo
>>> from datetime import UTC, datetime
>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "hall.ics").write_text(
...     "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//doc//EN\r\nBEGIN:VEVENT\r\nUID:1\r\n"
...     "DTSTART:20260110T140000\r\nDTEND:20260110T180000\r\nSUMMARY:Loto\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
>>> loader = BookingLoader(folder)
>>> [(s.isoformat(), e.isoformat()) for s, e in loader.intervals("hall.ics", ZoneInfo("Europe/Paris"),
...     datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))]
[('2026-01-10T13:00:00+00:00', '2026-01-10T17:00:00+00:00')]
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import cache
from pathlib import Path
from typing import Any

import icalendar
import recurring_ical_events

from inventory.model import Building

__all__ = ["DEFAULT_FETCH_TIMEOUT", "DEFAULT_REFRESH", "BookingLoader", "BookingsError", "booked_intervals", "default_loader"]

logger = logging.getLogger(__name__)

DEFAULT_FETCH_TIMEOUT = timedelta(seconds=10)
"""Longest wait for a calendar URL."""
DEFAULT_REFRESH = timedelta(hours=1)
"""A calendar URL is fetched again at most this often by one loader."""


class BookingsError(ValueError):
    """A booking calendar cannot be used; the message names the file or URL (and the event).

    Attributes:
        source: the file or URL.
    """

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        super().__init__(f"{source}: {message}")


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "econome" / "bookings"


@dataclass(slots=True)
class _Cached:
    calendar: icalendar.Calendar
    stamp: float  # file mtime, or the epoch second of the last fetch attempt of a URL


class BookingLoader:
    """Reads booking calendars, keeping the parsed calendars in memory.

    Args:
        base_dir: the folder of the inventory file; relative paths start there.
        cache_dir: where the last good copy of each calendar URL is kept
            (default ``$XDG_CACHE_HOME/econome/bookings``).
        timeout: longest wait for a URL.
        refresh: a URL is fetched again at most this often (a file is read again when it changes).
        now: the clock, aware UTC.
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        cache_dir: Path | None = None,
        timeout: timedelta = DEFAULT_FETCH_TIMEOUT,
        refresh: timedelta = DEFAULT_REFRESH,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.base_dir = base_dir
        self.cache_dir = cache_dir or _default_cache_dir()
        self.timeout = timeout
        self.refresh = refresh
        self.now = now
        self._calendars: dict[str, _Cached] = {}

    def calendar(self, source: str) -> icalendar.Calendar:
        """The parsed calendar of a file or URL.

        Args:
            source: a path (relative to ``base_dir``) or an ``http(s)://`` URL.

        Returns:
            The calendar, checked event by event.

        Raises:
            BookingsError: a file that is missing or broken, or a URL that fails with no copy kept.
        """
        return self._url(source) if _is_url(source) else self._file(source)

    def intervals(self, source: str, tz: tzinfo, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """Booked intervals of a calendar overlapping ``[start, end)``, sorted and merged, in UTC.

        Args:
            source: a path (relative to ``base_dir``) or an ``http(s)://`` URL.
            tz: the organisation's timezone, for floating times and all-day events.
            start: aware start of the period.
            end: aware end of the period.

        Returns:
            Sorted, disjoint ``(start, end)`` pairs of aware UTC datetimes.

        Raises:
            BookingsError: the calendar cannot be used.
        """
        cal = self.calendar(source)
        # Widened by a day on both sides: floating and all-day times are only placed once tz is applied.
        lo = start.astimezone(tz).replace(tzinfo=None) - timedelta(days=1)
        hi = end.astimezone(tz).replace(tzinfo=None) + timedelta(days=1)
        try:
            occurrences = recurring_ical_events.of(cal).between(lo, hi)
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
            raise BookingsError(self._where(source), _name_culprit(cal, lo, hi) or f"cannot expand the events: {exc}") from exc
        spans: list[tuple[datetime, datetime]] = []
        for event in occurrences:
            if str(event.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT" or str(event.get("STATUS", "")).upper() == "CANCELLED":
                continue  # a free-time marker or a cancelled booking does not open the hall
            s = _instant(event["DTSTART"].dt, tz)
            e = _instant(event["DTEND"].dt, tz) if "DTEND" in event else s + _duration(event)
            if e > start and s < end and e > s:
                spans.append((max(s, start.astimezone(UTC)), min(e, end.astimezone(UTC))))
        return _merge(spans)

    def _where(self, source: str) -> str:
        return source if _is_url(source) else str(self._path(source))

    def _path(self, source: str) -> Path:
        path = Path(source).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def _file(self, source: str) -> icalendar.Calendar:
        path = self._path(source)
        try:
            mtime = path.stat().st_mtime
        except OSError as exc:
            raise BookingsError(str(path), f"cannot read the booking calendar: {exc.strerror or exc}") from exc
        cached = self._calendars.get(source)
        if cached is not None and cached.stamp == mtime:
            return cached.calendar
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BookingsError(str(path), f"cannot read the booking calendar: {exc.strerror or exc}") from exc
        cal = _parse(str(path), data)
        self._calendars[source] = _Cached(cal, mtime)
        return cal

    def _cache_file(self, url: str) -> Path:
        return self.cache_dir / f"{hashlib.sha256(url.encode()).hexdigest()[:24]}.ics"

    def _url(self, url: str) -> icalendar.Calendar:
        now = self.now().timestamp()
        cached = self._calendars.get(url)
        if cached is not None and now - cached.stamp < self.refresh.total_seconds():
            return cached.calendar
        import httpx  # only where a calendar is fetched: `econome detect` on a file does not pay it (issue 11)

        copy = self._cache_file(url)
        try:
            response = httpx.get(url, timeout=self.timeout.total_seconds(), follow_redirects=True)
            response.raise_for_status()
            cal = _parse(url, response.content)
        except (httpx.HTTPError, BookingsError) as exc:
            if cached is not None:
                logger.warning("booking calendar %s failed (%s): keeping the copy in memory", url, exc)
                self._calendars[url] = _Cached(cached.calendar, now)
                return cached.calendar
            if copy.exists():
                logger.warning("booking calendar %s failed (%s): using the last good copy %s", url, exc, copy)
                cal = _parse(str(copy), copy.read_bytes())
                self._calendars[url] = _Cached(cal, now)
                return cal
            raise BookingsError(url, f"cannot fetch the booking calendar and no copy is kept: {exc}") from exc
        copy.parent.mkdir(parents=True, exist_ok=True)
        partial = copy.with_suffix(".part")
        partial.write_bytes(response.content)
        partial.replace(copy)  # atomic: a crash never leaves a half-written last good copy
        self._calendars[url] = _Cached(cal, now)
        return cal


def _describe(event: Any) -> str:
    uid = event.get("UID")
    summary = event.get("SUMMARY")
    parts = [f"UID {uid}" if uid is not None else "", f"{str(summary)!r}" if summary is not None else ""]
    return "event " + " ".join(p for p in parts if p) if any(parts) else "an event"


def _parse(source: str, data: bytes) -> icalendar.Calendar:
    try:
        cal = icalendar.Calendar.from_ical(data)
    except (ValueError, KeyError, IndexError) as exc:
        raise BookingsError(source, f"not an iCalendar file: {exc}") from exc
    if not isinstance(cal, icalendar.Calendar):  # from_ical returns the first component, which may be a VEVENT
        raise BookingsError(source, "not an iCalendar file: no VCALENDAR")
    for event in cal.walk("VEVENT"):
        for prop, message in event.errors:
            raise BookingsError(source, f"{_describe(event)}: {prop}: {message}")
        if "DTSTART" not in event:
            raise BookingsError(source, f"{_describe(event)} has no DTSTART")
        problem = _rule_problem(event) or _span_problem(event)
        if problem:
            raise BookingsError(source, f"{_describe(event)}: {problem}")
        for prop in ("DTSTART", "DTEND"):
            value = event.get(prop)
            zone = value.params.get("TZID") if value is not None else None
            if zone and isinstance(value.dt, datetime) and value.dt.tzinfo is None:
                logger.warning("booking calendar %s: %s: %s TZID %r is no time zone known (nor a VTIMEZONE of the "
                               "file): read as the organisation's time", source, _describe(event), prop, zone)
    return cal


MAX_PER_DAY = 96
"""Most occurrences a day one RRULE may give (every 15 minutes): more is no booking, and expanded over
months (``FREQ=SECONDLY``, or ``FREQ=HOURLY;BYMINUTE=0,…,59;BYSECOND=0,…,59``) it took minutes and gigabytes."""
_PER_DAY = {"SECONDLY": 86_400, "MINUTELY": 1_440, "HOURLY": 24}


def _rule_problem(event: Any) -> str | None:
    """Why the event's RRULE cannot be expanded in bounded time, or None."""
    rules = event.get("RRULE")
    for rule in rules if isinstance(rules, list) else [rules] if rules is not None else []:
        intervals = rule.get("INTERVAL", [1])
        if any(not isinstance(i, int) or i < 1 for i in intervals):
            return f"RRULE INTERVAL={intervals[0]}: must be a whole number from 1 (RFC 5545)"
        freq = str((rule.get("FREQ") or ["DAILY"])[0]).upper()
        per_day = _PER_DAY.get(freq, 1) / intervals[0]
        for part in ("BYSECOND", "BYMINUTE", "BYHOUR"):
            if part in rule and (part != "BYHOUR" or freq not in _PER_DAY):
                per_day *= max(len(rule[part]), 1)
        if per_day > MAX_PER_DAY:
            return (f"RRULE {rule.to_ical().decode(errors='replace')[:80]} repeats {per_day:,.0f} times a day: "
                    f"a booking recurs at most {MAX_PER_DAY} times a day")
    return None


def _span_problem(event: Any) -> str | None:
    """Why the event's start, end or duration cannot be read, or its end is not after its start; or None."""
    for prop in ("DTSTART", "DTEND", "DURATION"):
        if isinstance(event.get(prop), list):  # RFC 5545: at most once
            return f"{prop} given {len(event[prop])} times"
    start = event["DTSTART"].dt
    if "DURATION" in event and isinstance(event["DURATION"].dt, timedelta) and event["DURATION"].dt < timedelta(0):
        return f"DURATION {event['DURATION'].to_ical().decode()} is negative"
    if "DTEND" not in event:
        return None
    end = event["DTEND"].dt
    if type(start) is not type(end):
        return None  # a date beside a date-time: recurring-ical-events reads it
    try:
        before = end < start
    except TypeError:  # a floating time beside a zoned one
        return None
    return f"DTEND {end.isoformat()} is before DTSTART {start.isoformat()}" if before else None


def _name_culprit(cal: icalendar.Calendar, lo: datetime, hi: datetime) -> str | None:
    """Find the event that breaks the expansion, to name it (one calendar per event)."""
    for event in cal.walk("VEVENT"):
        single = icalendar.Calendar()
        single.add_component(event)
        try:
            recurring_ical_events.of(single).between(lo, hi)
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
            return f"{_describe(event)}: {exc}"
    return None


def _instant(value: datetime | date, tz: tzinfo) -> datetime:
    if isinstance(value, datetime):
        local = value if value.tzinfo is not None else value.replace(tzinfo=tz)  # floating: the organisation's time
        return local.astimezone(UTC)
    return datetime.combine(value, time(0), tzinfo=tz).astimezone(UTC)  # all-day: local midnight


def _duration(event: Any) -> timedelta:
    if "DURATION" in event:
        value = event["DURATION"].dt
        if isinstance(value, timedelta):
            return value
    # RFC 5545: with neither DTEND nor DURATION, a date lasts one day and a date-time no time.
    return timedelta(days=1) if not isinstance(event["DTSTART"].dt, datetime) else timedelta(0)


def _merge(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


@cache
def default_loader(base_dir: Path) -> BookingLoader:
    """The process's loader for one inventory folder, so a URL is fetched at most once per refresh.

    Args:
        base_dir: the folder of the inventory file.

    Returns:
        The same loader for the same folder.
    """
    return BookingLoader(base_dir)


def booked_intervals(
    building: Building,
    inventory_dir: Path,
    start: datetime,
    end: datetime,
    tz: tzinfo,
    *,
    loader: BookingLoader | None = None,
) -> list[tuple[datetime, datetime]]:
    """Booked intervals of a building in ``[start, end)``, in UTC; empty when it has no booking calendar.

    Args:
        building: the building, whose ``schedule.bookings`` names the calendar.
        inventory_dir: the folder of the inventory file.
        start: aware start of the period.
        end: aware end of the period.
        tz: the organisation's timezone (floating times, all-day events).
        loader: the loader to use (default: :func:`default_loader` of ``inventory_dir``).

    Returns:
        Sorted, disjoint ``(start, end)`` pairs of aware UTC datetimes.

    Raises:
        BookingsError: the calendar cannot be used.
    """
    bookings = building.schedule.bookings
    if bookings is None:
        return []
    loader = loader or default_loader(inventory_dir.resolve())
    return loader.intervals(bookings.ical, tz, start, end)
