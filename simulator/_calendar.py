"""Opening intervals of a building as UTC epoch seconds, for vectorised masks.

:func:`inventory.calendar.is_open` answers for one moment; the simulator needs
millions of moments, so it turns each local day's opening hours into UTC
intervals once (DST-correct through ``zoneinfo``) and masks arrays with
``searchsorted``. The rules are those of ``is_open``: closures, public holidays,
and school holidays when the schedule says so.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from inventory import Building, FrenchCalendar, Weekday

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_WEEKDAYS = list(Weekday)


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
        schedule = self.building.schedule
        if any(closure.start <= day <= closure.end for closure in schedule.closures):
            return []
        if schedule.closed_on_public_holidays and self.calendar.is_public_holiday(day):
            return []
        if schedule.closed_on_school_holidays and self.calendar.is_school_holiday(day):
            return []
        out: list[tuple[float, float]] = []
        for rng in schedule.opening_hours(_WEEKDAYS[day.weekday()]):
            start = datetime.combine(day, rng.start, tzinfo=self.tz)
            end_day = day + timedelta(days=1) if rng.end == time(0) else day
            end = datetime.combine(end_day, rng.end, tzinfo=self.tz)
            out.append((start.timestamp(), end.timestamp()))
        out.sort()
        return out

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
