"""French public and school holidays, and whether a building is open.

Public holidays come from the ``holidays`` package (France, metropolitan) and
school holidays from ``vacances-scolaires-france`` (zones A, B and C, data from
the Ministry of Education). Outside the years that package covers, no day is a
school holiday, and :attr:`FrenchCalendar.school_years` says which years are known.

>>> from datetime import date
>>> cal = FrenchCalendar("B")
>>> cal.is_public_holiday(date(2026, 7, 14))
True
>>> cal.is_school_holiday(date(2026, 8, 3))
True
"""

from __future__ import annotations

import csv
import logging
from datetime import date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays
import numpy as np
import numpy.typing as npt
import vacances_scolaires_france
from vacances_scolaires_france import SchoolHolidayDates

from inventory.model import WEEKDAYS, Building, Schedule

logger = logging.getLogger(__name__)

__all__ = [
    "FrenchCalendar",
    "OpeningHours",
    "closed_all_day",
    "day_intervals",
    "in_intervals",
    "is_open",
    "unknown_school_days",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


class _SchoolHolidayDates(SchoolHolidayDates):  # type: ignore[misc]  # the package ships no type hints
    """The package's dates, its CSV read as it reads it but with ``date.fromisoformat``.

    The package parses its 13,000 rows with ``strptime``: 0.4 s of every command that opens a calendar
    (``econome detect`` on one building-year takes 5 s). The same rows, the same dict
    (``tests/unit/inventory/test_school_years.py``).
    """

    def load_data(self) -> None:
        path = Path(vacances_scolaires_france.__file__).parent / "data" / "data.csv"
        keys = [self.zone_key(zone) for zone in self.SUPPORTED_ZONES]
        with path.open() as handle:
            for row in csv.DictReader(handle):
                day = date.fromisoformat(row["date"])
                row["date"] = day  # the package's rows hold the date itself
                holiday = False
                for key in keys:
                    on = row[key] == "True"
                    row[key] = on  # and booleans for the zones
                    holiday = holiday or on
                if holiday:
                    if not row["nom_vacances"]:
                        msg = f"Holiday name not set for date: {day}"
                        raise ValueError(msg)
                    self.data[day] = row


@cache
def _school_dates() -> SchoolHolidayDates:
    return _SchoolHolidayDates()


@cache
def _warn_unknown_school_year(zone: str, year: int, known: range) -> None:
    logger.warning(
        "school-holiday dates of zone %s are known for %d-%d only (vacances-scolaires-france): in %d no day is "
        "taken as a school holiday, so buildings closed in school holidays count as open; upgrade the package",
        zone, known.start, known.stop - 1, year,
    )  # fmt: skip


def unknown_school_days(zone: str, first: date, days: int) -> list[int]:
    """The years among ``days`` days from ``first`` whose school-holiday dates are not known.

    >>> unknown_school_days("A", date(2026, 12, 1), 90)
    []
    >>> unknown_school_days("A", date(2040, 1, 1), 1)
    [2040]
    """
    known = FrenchCalendar(zone).school_years
    years = sorted({(first + timedelta(days=d)).year for d in range(days)})
    return [y for y in years if y not in known]


class FrenchCalendar:
    """Public holidays of France and school holidays of one zone."""

    def __init__(self, zone: str) -> None:
        self.zone = zone
        self._public = holidays.country_holidays("FR")

    @property
    def school_years(self) -> range:
        """Years for which school-holiday dates are known."""
        dates = _school_dates()
        return range(dates.min_year, dates.max_year + 1)

    def is_public_holiday(self, day: date) -> bool:
        """Tell whether a day is a French public holiday (jour férié)."""
        return day in self._public

    def is_school_holiday(self, day: date) -> bool:
        """Tell whether a day falls in the school holidays of the zone.

        A day of a year whose dates are not known is no holiday, with one warning per zone and year.
        """
        if day.year not in self.school_years:
            _warn_unknown_school_year(self.zone, day.year, self.school_years)
            return False
        return bool(_school_dates().is_holiday_for_zone(day, self.zone))

    def holiday_name(self, day: date) -> str | None:
        """Name of the public or school holiday on a day, if any."""
        name = self._public.get(day)
        if name:
            return str(name)
        if self.is_school_holiday(day):
            return str(_school_dates().data[day]["nom_vacances"])
        return None


def is_open(schedule: Schedule, local: datetime, calendar: FrenchCalendar) -> bool:
    """Tell whether a building with this schedule is open at a local wall-clock time.

    Args:
        schedule: the building's schedule.
        local: a time in the organisation's timezone.
        calendar: holidays of the organisation's zone.

    Returns:
        True when the moment is inside the opening hours and no closure,
        public holiday or (for schools) school holiday applies.
    """
    if closed_all_day(schedule, local.date(), calendar):
        return False
    moment = local.time()
    return any(rng.contains(moment) for rng in schedule.opening_hours(WEEKDAYS[local.weekday()]))


def building_is_open(building: Building, local: datetime, calendar: FrenchCalendar) -> bool:
    """Shorthand for :func:`is_open` on a building's schedule."""
    return is_open(building.schedule, local, calendar)


def closed_all_day(schedule: Schedule, day: date, calendar: FrenchCalendar) -> bool:
    """Tell whether a building is closed all day: a closure, or a holiday it closes on."""
    if any(closure.start <= day <= closure.end for closure in schedule.closures):
        return True
    if schedule.closed_on_public_holidays and calendar.is_public_holiday(day):
        return True
    return schedule.closed_on_school_holidays and calendar.is_school_holiday(day)


def day_intervals(schedule: Schedule, day: date, calendar: FrenchCalendar, tz: ZoneInfo) -> list[tuple[float, float]]:
    """Opening intervals of a local day as sorted (start, end) UTC epoch seconds, DST-correct.

    The same rules as :func:`is_open`, for code that masks arrays of times.
    """
    if closed_all_day(schedule, day, calendar):
        return []
    out: list[tuple[float, float]] = []
    for rng in schedule.opening_hours(WEEKDAYS[day.weekday()]):
        start = datetime.combine(day, rng.start, tzinfo=tz)
        end_day = day + timedelta(days=1) if rng.end == time(0) else day
        end = datetime.combine(end_day, rng.end, tzinfo=tz)
        out.append((start.timestamp(), end.timestamp()))
    out.sort()
    return out


class OpeningHours:
    """Opening intervals of one building, cached per local day.

    Args:
        building: the building whose schedule is used.
        tz: the organisation's timezone.
        calendar: public and school holidays of the organisation's zone.
    """

    def __init__(self, building: Building, tz: ZoneInfo, calendar: FrenchCalendar) -> None:
        self.building = building
        self.tz = tz
        self.calendar = calendar
        self._days: dict[date, list[tuple[float, float]]] = {}

    def day(self, day: date) -> list[tuple[float, float]]:
        """Opening intervals of a local day, as (start, end) UTC epoch seconds."""
        cached = self._days.get(day)
        if cached is None:
            cached = self._compute(day)
            self._days[day] = cached
        return cached

    def _compute(self, day: date) -> list[tuple[float, float]]:
        return day_intervals(self.building.schedule, day, self.calendar, self.tz)

    def intervals(self, start_s: float, end_s: float, lead: timedelta = timedelta()) -> tuple[FloatArray, FloatArray]:
        """Merged opening intervals touching ``[start_s, end_s)``, each started ``lead`` early.

        Args:
            start_s: first time of interest, UTC epoch seconds.
            end_s: end of the period of interest, UTC epoch seconds.
            lead: how much earlier each interval starts (pre-heating).

        Returns:
            Sorted, non-overlapping ``(starts, ends)`` arrays of epoch seconds.
        """
        lead_s = lead.total_seconds()
        first = datetime.fromtimestamp(start_s, self.tz).date() - timedelta(days=1)
        last = datetime.fromtimestamp(end_s + lead_s, self.tz).date() + timedelta(days=1)
        merged: list[list[float]] = []
        day = first
        while day <= last:
            for s, e in self.day(day):
                s -= lead_s
                if merged and s <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], e)
                else:
                    merged.append([s, e])
            day += timedelta(days=1)
        if not merged:
            return np.empty(0), np.empty(0)
        arr = np.asarray(merged, dtype=np.float64)
        return arr[:, 0], arr[:, 1]

    def mask(self, epoch_s: FloatArray, lead: timedelta = timedelta()) -> BoolArray:
        """Tell, for each time, whether it falls in an (early-started) opening interval."""
        if epoch_s.size == 0:
            return np.zeros(0, dtype=np.bool_)
        starts, ends = self.intervals(float(epoch_s[0]), float(epoch_s[-1]), lead)
        return in_intervals(epoch_s, starts, ends)


def in_intervals(epoch_s: FloatArray, starts: FloatArray, ends: FloatArray) -> BoolArray:
    """Membership of sorted times in sorted, disjoint ``[start, end)`` intervals."""
    if starts.size == 0:
        return np.zeros(epoch_s.shape, dtype=np.bool_)
    idx = np.searchsorted(starts, epoch_s, side="right") - 1
    safe = np.clip(idx, 0, None)
    result: BoolArray = (idx >= 0) & (epoch_s < ends[safe])
    return result
