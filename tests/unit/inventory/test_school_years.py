"""School-holiday dates are known for a few years only: beyond them, a warning, never a silent change."""

from __future__ import annotations

import logging
from datetime import date

import pytest

from inventory import FrenchCalendar
from inventory.calendar import unknown_school_days


def test_a_day_of_an_unknown_school_year_is_no_holiday_with_one_warning_naming_zone_and_years(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calendar = FrenchCalendar("C")
    known = calendar.school_years
    late = known.stop + 5  # a year the package cannot know
    with caplog.at_level(logging.WARNING, logger="inventory.calendar"):
        assert not calendar.is_school_holiday(date(late, 8, 3))  # mid-August: a holiday every year
        assert not calendar.is_school_holiday(date(late, 8, 4))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "zone C" in warnings[0]
    assert str(late) in warnings[0]
    assert str(known.stop - 1) in warnings[0]
    assert calendar.is_school_holiday(date(known.stop - 1, 8, 3))  # a known August is a holiday


def test_the_years_a_span_of_days_reaches_beyond_the_known_ones() -> None:
    last = FrenchCalendar("A").school_years.stop - 1
    assert unknown_school_days("A", date(last, 12, 1), 120) == [last + 1]
    assert unknown_school_days("A", date(last, 1, 1), 120) == []


def test_the_dates_read_quickly_are_the_package_s_own() -> None:
    """The package's CSV read with ``date.fromisoformat`` (0.4 s less per command) gives its own dict and years."""
    from vacances_scolaires_france import SchoolHolidayDates

    from inventory.calendar import _school_dates

    theirs, ours = SchoolHolidayDates(), _school_dates()
    assert ours.data == theirs.data
    assert len(ours.data) > 3000
    assert (ours.min_year, ours.max_year) == (theirs.min_year, theirs.max_year)
    assert ours.is_holiday_for_zone(date(2026, 8, 3), "B")
