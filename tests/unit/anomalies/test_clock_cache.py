"""Issue 12 (live pass at scale): a building's clock columns kept between passes are those of the frame itself.

A live pass judges a frame one hour longer than the last; :class:`anomalies.features.ClockCache` computes
the columns that depend on the hour alone (schedule, bookings, holidays, local hours, setpoints, sun) a week
past the frame's end and slices them. The hours built with it must be those built without it, for every
building of both example communes (closures, an event hall opened by its bookings, heating seasons), across
the autumn clock change and the Christmas holidays, for a frame that grows by an hour, by more than the week
ahead, and that starts elsewhere.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from anomalies.detect import DetectConfig, building_findings
from anomalies.features import CLOCK_AHEAD_H, BuildingHours, ClockCache, HourlyFrame, building_bookings
from anomalies.rules import RuleMemo
from inventory import FrenchCalendar, load_inventory

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
START_S = datetime(2026, 10, 5, tzinfo=UTC).timestamp()
HOURS = 24 * 80  # to Christmas week: the clock change and the holidays inside
COLUMNS = ("open_frac", "preheat", "public_holiday", "school_holiday", "local_hour", "hour_of_week", "local_day",
           "sun_deg", "setpoint_c", "heating_in_season", "day_open", "open_after")


def _same(a: BuildingHours, b: BuildingHours) -> None:
    for name in COLUMNS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), (a.building.id, name)


@pytest.mark.parametrize("example", ["commune.yaml", "family_b.yaml"])
def test_clock_columns_kept_between_passes_are_those_of_the_frame(example: str) -> None:
    inventory = load_inventory(EXAMPLES / example)
    calendar = FrenchCalendar(inventory.organisation.school_holiday_zone)
    cache = ClockCache()
    booked_seen = False
    for _, building in inventory.buildings():
        # Hour by hour past the first frame, then past the week computed ahead, then a frame starting a day later
        # (a history rolled forward) and one past what the cache holds, then one off the cache's hours.
        for start_s, hours in [(START_S, HOURS), (START_S, HOURS + 1), (START_S, HOURS + 2),
                               (START_S, HOURS + CLOCK_AHEAD_H + 5), (START_S + 86400.0, HOURS),
                               (START_S + 86400.0, HOURS + 2 * CLOCK_AHEAD_H), (START_S + 1800.0, HOURS)]:
            frame = HourlyFrame(start_s, hours, {}, {})
            booked = building_bookings(inventory, building, frame)
            booked_seen |= bool(booked)
            kept = BuildingHours.build(inventory, building, frame, calendar, booked=booked, calendars=cache)
            fresh = BuildingHours.build(inventory, building, frame, calendar, booked=booked)
            _same(kept, fresh)
    # Per building: the first frame and the half hour off its hours computed whole; past the week ahead and past
    # what the later start held, the new hours only; the later start and the frames an hour longer reused.
    # A building with bookings has other bookings in another frame: computed whole.
    booking = sum(1 for _, b in inventory.buildings() if b.schedule.bookings is not None)
    assert cache.computed == 2 * sum(1 for _ in inventory.buildings()) + 3 * booking
    assert cache.extended == 2 * (sum(1 for _ in inventory.buildings()) - booking)
    assert booked_seen == (example == "family_b.yaml")


def test_other_bookings_compute_the_columns_again() -> None:
    """A booking calendar that changed between passes (an evening booked since), or the building read again, is
    not read from the cache."""
    inventory = load_inventory(EXAMPLES / "family_b.yaml")
    calendar = FrenchCalendar(inventory.organisation.school_holiday_zone)
    hall = next(b for _, b in inventory.buildings() if b.schedule.bookings is not None)
    frame = HourlyFrame(START_S, HOURS, {}, {})
    booked = building_bookings(inventory, hall, frame)
    cache = ClockCache()
    BuildingHours.build(inventory, hall, frame, calendar, booked=booked, calendars=cache)
    evening = (datetime(2026, 11, 3, 17, tzinfo=UTC), datetime(2026, 11, 3, 22, tzinfo=UTC))
    more = sorted([*booked, evening])
    kept = BuildingHours.build(inventory, hall, frame, calendar, booked=more, calendars=cache)
    _same(kept, BuildingHours.build(inventory, hall, frame, calendar, booked=more))
    assert cache.computed == 2
    # The inventory read again (another building object, equal or not): computed again, not compared.
    BuildingHours.build(inventory, hall.model_copy(), frame, calendar, booked=more, calendars=cache)
    assert cache.computed == 3
    assert kept.open_frac[round((evening[0].timestamp() - START_S) / 3600)] == 1.0


def test_building_findings_with_the_clock_kept_are_the_same() -> None:
    """The findings of a building's frame (schedule around it for the closures, hours) with a cache filled by
    a shorter frame are those without: the rules read the same calendar."""
    inventory = load_inventory(EXAMPLES / "commune.yaml")
    calendar = FrenchCalendar(inventory.organisation.school_holiday_zone)
    config = DetectConfig(models=False)
    cache = ClockCache()
    for _, building in inventory.buildings():
        for hours in (HOURS, HOURS + 1):
            frame = HourlyFrame(START_S, hours, {}, {})
            kept = building_findings(inventory, building, {}, frame, calendar, config, memo=RuleMemo(), clock=cache)
            fresh = building_findings(inventory, building, {}, frame, calendar, config, memo=RuleMemo())
            assert [(f.qualified_name, f.point) for f in kept.rules] == [(f.qualified_name, f.point) for f in fresh.rules]
            for a, b in zip(kept.rules, fresh.rules, strict=True):
                assert np.array_equal(a.state, b.state, equal_nan=True), (building.id, a.qualified_name, a.point)
            # No reading at all: the points are missing data, outside the closures the schedule plans ahead.
            assert any(f.kind.value == "missing_data" for f in kept.rules)


def test_rolling_statistics_kept_by_their_input_are_those_computed_afresh() -> None:
    """The rules' rolling means and ranges, kept for the next point of the same building (the outdoor
    temperature rolled for each indoor sensor), are those computed afresh, whatever a caller did to a result."""
    from anomalies.rules import _rolling, _rolling_uncached

    rng = np.random.default_rng(12)
    outdoor = rng.normal(8.0, 5.0, 24 * 60)
    outdoor[rng.random(outdoor.size) < 0.1] = np.nan
    other = outdoor + 0.5
    for _ in range(3):
        for values in (outdoor, other, outdoor[24:]):
            for window, how in ((24, "mean"), (72, "mean"), (24, "range")):
                got = _rolling(values, window, how)
                assert np.array_equal(got, _rolling_uncached(values, window, how), equal_nan=True)
                got[:] = -1.0  # the caller's copy: what is kept does not change
    assert not np.array_equal(_rolling(outdoor, 24, "mean"), _rolling(other, 24, "mean"), equal_nan=True)


def test_clock_columns_read_back_from_a_state_file_stand_for_the_same_building_and_key_only() -> None:
    """Saved with the detection state (format 4): read back, an entry gives its columns without computing them
    for the same building (by digest of its whole model) and key; another building or key computes them."""
    building = load_inventory(EXAMPLES / "commune.yaml").building("mairie")
    key = ("Europe/Paris", "C", 1.5)

    def compute(first_s: float, n: int) -> dict[str, np.ndarray]:
        first = round(first_s / 3600.0)
        return {"x": np.arange(first, first + n, dtype=np.float64), "b": np.arange(first, first + n) % 2 == 0}

    cache = ClockCache()
    first = cache.get(building, "hours", 3600.0, 10, key, compute)
    arrays = cache.to_arrays()
    back = ClockCache.from_arrays(arrays)
    got = back.get(building.model_copy(), "hours", 3600.0, 12, key, compute)  # the inventory read again
    assert back.computed == 0
    np.testing.assert_array_equal(got["x"][:10], first["x"])
    np.testing.assert_array_equal(got["b"], compute(3600.0, 12)["b"])
    for other_building, other_key in [(building.model_copy(update={"name": "Autre"}), key), (building, (*key, 2))]:
        fresh = ClockCache.from_arrays(arrays)
        fresh.get(other_building, "hours", 3600.0, 10, other_key, compute)
        assert fresh.computed == 1
    assert ClockCache.from_arrays({}).computed == 0
