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

from datetime import date, datetime
from functools import cache

import holidays
from vacances_scolaires_france import SchoolHolidayDates

from inventory.model import WEEKDAYS, Building, Schedule

__all__ = ["FrenchCalendar", "is_open"]


@cache
def _school_dates() -> SchoolHolidayDates:
    return SchoolHolidayDates()


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
        """Tell whether a day falls in the school holidays of the zone."""
        if day.year not in self.school_years:
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
    day = local.date()
    for closure in schedule.closures:
        if closure.start <= day <= closure.end:
            return False
    if schedule.closed_on_public_holidays and calendar.is_public_holiday(day):
        return False
    if schedule.closed_on_school_holidays and calendar.is_school_holiday(day):
        return False
    moment = local.time()
    return any(rng.contains(moment) for rng in schedule.opening_hours(WEEKDAYS[local.weekday()]))


def building_is_open(building: Building, local: datetime, calendar: FrenchCalendar) -> bool:
    """Shorthand for :func:`is_open` on a building's schedule."""
    return is_open(building.schedule, local, calendar)
