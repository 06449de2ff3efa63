"""Issue 11, item 6: BuildingHours uses what the inventory says: bookings, setpoints hour by hour, shared meters."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from anomalies.features import (
    BuildingHours,
    FeatureConfig,
    HourlyFrame,
    PointSeries,
    expected_setpoints,
    schedule_masks,
    usage_shares,
)
from inventory import Building, FrenchCalendar, Usage, load_inventory

PARIS = ZoneInfo("Europe/Paris")
CALENDAR_B = FrenchCalendar("B")  # 2026 winter holidays of zone B: 14 February to 1 March

SCHOOL = Building.model_validate(
    {
        "id": "ecole",
        "name": "École",
        "usage": "school",
        "floor_area_m2": 900,
        "heated_area_m2": 850,
        "heating_setpoint_occupied_c": 19,
        "heating_setpoint_unoccupied_c": 16,
        "heating_setpoint_weekend_c": 14,
        "heating_frost_protection_c": 8,
        "heating_season": {"start": "10-15", "end": "05-15"},
        "schedule": {
            "weekly": {day: ["08:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
            "closed_on_school_holidays": True,
        },
    }
)


def _local(*args: int) -> float:
    return datetime(*args, tzinfo=PARIS).timestamp()  # type: ignore[misc]  # year, month, day, hour


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ((2026, 2, 3, 10), 19.0),  # a Tuesday, open
        ((2026, 2, 3, 6), 19.0),  # pre-heating before 08:00
        ((2026, 2, 3, 2), 16.0),  # night of an open day: setback
        ((2026, 2, 13, 21), 16.0),  # evening of the last day before the holidays
        ((2026, 2, 7, 12), 14.0),  # a plain weekend
        ((2026, 2, 14, 12), 8.0),  # first Saturday of the school holidays: a long closure
        ((2026, 2, 17, 10), 8.0),  # a Tuesday of the school holidays: frost protection
        ((2026, 3, 2, 6), 19.0),  # pre-heating on the Monday the school reopens
        ((2026, 4, 4, 12), 8.0),  # Easter weekend with its Monday: closed more than 48 hours
        ((2026, 6, 9, 10), math.nan),  # open, but outside the heating season
        ((2026, 10, 15, 10), 19.0),  # first day of the season (included)
        ((2026, 10, 14, 10), math.nan),  # the day before
    ],
)
def test_setpoint_hour_by_hour(moment: tuple[int, int, int, int], expected: float) -> None:
    # A frame of a few days around the hour: the setpoint of an hour must not depend on where the frame ends.
    centre = _local(*moment)
    for before, after in ((0, 1), (72, 1), (0, 120)):
        times = centre + 3600.0 * np.arange(-before, after)
        open_frac, preheat = schedule_masks(SCHOOL, CALENDAR_B, PARIS, times, timedelta(hours=4))
        setpoint, in_season = expected_setpoints(SCHOOL, CALENDAR_B, PARIS, times, open_frac, preheat)
        value = float(setpoint[before])
        assert (math.isnan(value) and math.isnan(expected)) or value == expected, (moment, before, after, value)
        assert bool(in_season[before]) == (not math.isnan(expected))


def test_a_building_without_season_or_weekend_setpoint_keeps_the_old_behaviour() -> None:
    plain = SCHOOL.model_copy(update={"heating_season": None, "heating_setpoint_weekend_c": None})
    times = _local(2026, 6, 6, 0) + 3600.0 * np.arange(24 * 7)  # a Saturday in June, then a week
    open_frac, preheat = schedule_masks(plain, CALENDAR_B, PARIS, times, timedelta(hours=4))
    setpoint, in_season = expected_setpoints(plain, CALENDAR_B, PARIS, times, open_frac, preheat)
    assert in_season.all()
    assert set(setpoint[:48].tolist()) == {16.0}  # the weekend: the night setpoint
    assert setpoint[48 + 10] == 19.0


INVENTORY = """
organisation: {name: Commune test, population: 1200, school_holiday_zone: B}
mqtt_brokers:
  - {host: 127.0.0.1}
sites:
  - id: s1
    name: Site
    buildings:
      - id: gym
        name: Gymnase
        usage: gymnasium
        floor_area_m2: 1200
        heated_area_m2: 1100
        schedule:
          weekly: {mon: ["17:00-22:00"], tue: ["17:00-22:00"], wed: ["17:00-22:00"], thu: ["17:00-22:00"], fri: ["17:00-22:00"]}
          bookings: {ical: gym.ics}
        points:
          - id: gym-gas
            quantity: gas_volume
            unit: m3
            usage: heating
            serves: [dhw]
            SPLIT
            cumulative: true
            energy: natural_gas
            conversion_kwh_per_unit: 10.0
            mqtt: {topic: t/gym/gas}
      - id: meteo
        name: Station
        usage: other
        floor_area_m2: 10
        heated_area_m2: 10
        points:
          - id: outdoor
            quantity: temperature
            unit: degC
            usage: weather
            mqtt: {topic: t/meteo/t}
"""

GYM_ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Econome tests//EN
BEGIN:VEVENT
UID:tournament
SUMMARY:Basketball tournament
DTSTART;TZID=Europe/Paris:20251018T090000
DTEND;TZID=Europe/Paris:20251018T180000
END:VEVENT
END:VCALENDAR
""".replace("\n", "\r\n")

START = datetime(2025, 10, 1, tzinfo=UTC)
DAYS = 120


def _synthetic(seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Outdoor temperature, true heating and hot-water kWh per hour, hour start times."""
    rng = np.random.default_rng(seed)
    n = DAYS * 24
    times = START.timestamp() + 3600.0 * np.arange(n)
    hour = np.arange(n) % 24
    outdoor = 12.0 - 10.0 * np.arange(n) / n + 4.0 * np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0, 1.0, n)
    heating = 2.0 * np.maximum(0.0, 16.0 - outdoor)
    dhw = np.where((hour >= 6) & (hour < 18), 4.0, 0.5) * rng.uniform(0.8, 1.2, n)
    return outdoor, heating, dhw, times


def _inventory(tmp_path: Path, split: str = "") -> Path:
    (tmp_path / "gym.ics").write_text(GYM_ICS, encoding="utf-8", newline="")
    path = tmp_path / "inventory.yaml"
    path.write_text(INVENTORY.replace("SPLIT", split), encoding="utf-8")
    return path


def _frame(total_kwh: np.ndarray, outdoor: np.ndarray, times: np.ndarray, hours: int | None = None) -> HourlyFrame:
    index = np.concatenate([[1000.0], 1000.0 + np.cumsum(total_kwh) / 10.0])  # m3 at 10 kWh/m3
    stamps = np.concatenate([times, [times[-1] + 3600.0]])
    readings = {"gym-gas": PointSeries(stamps, index), "outdoor": PointSeries(times + 1800.0, outdoor)}
    return HourlyFrame.build(readings, counters={"gym-gas"}, start_s=float(times[0]), hours=hours or times.size)


def test_declared_split_shares_every_hour_and_bookings_open_the_gym(tmp_path: Path) -> None:
    inventory = load_inventory(_inventory(tmp_path, "split: {heating: 0.75, dhw: 0.25}"))
    building = inventory.building("gym")
    outdoor, heating, dhw, times = _synthetic()
    frame = _frame(heating + dhw, outdoor, times)
    hours = BuildingHours.build(inventory, building, frame, CALENDAR_B)
    total = (heating + dhw)
    np.testing.assert_allclose(hours.usages[Usage.HEATING].values, 0.75 * total, rtol=1e-9)
    np.testing.assert_allclose(hours.usages[Usage.DHW].values, 0.25 * total, rtol=1e-9)
    assert hours.usages[Usage.DHW].points == ("gym-gas",)
    # Saturday 18 October is booked (relative path, TZID): open 09:00-18:00 local, pre-heated before.
    saturday = [datetime.fromtimestamp(float(t), PARIS) for t in times]
    booked = [m.hour for m, f in zip(saturday, hours.open_frac, strict=True) if m.date().isoformat() == "2025-10-18" and f == 1]
    assert booked == list(range(9, 18))
    assert hours.setpoint_c[times.tolist().index(datetime(2025, 10, 18, 10, tzinfo=PARIS).timestamp())] == 19.0


def test_learnt_split_is_within_10_percent_of_truth(tmp_path: Path) -> None:
    inventory = load_inventory(_inventory(tmp_path))
    building = inventory.building("gym")
    outdoor, heating, dhw, times = _synthetic()
    frame = _frame(heating + dhw, outdoor, times)
    hours = BuildingHours.build(inventory, building, frame, CALENDAR_B, FeatureConfig(split_min_days=14))
    got_heating = hours.usages[Usage.HEATING].values
    got_dhw = hours.usages[Usage.DHW].values
    np.testing.assert_allclose(got_heating + got_dhw, heating + dhw, rtol=1e-9)
    # Until 14 complete days are seen, everything is the meter's own usage.
    np.testing.assert_allclose(got_heating[: 14 * 24], (heating + dhw)[: 14 * 24], rtol=1e-9)
    later = slice(21 * 24, None)
    truth = heating[later].sum() / (heating + dhw)[later].sum()
    learnt = got_heating[later].sum() / (heating + dhw)[later].sum()
    assert abs(learnt - truth) <= 0.10 * truth, (learnt, truth)
    # Once learnt (the days seen span enough weather), the last month on its own too.
    learnt_from = int(np.flatnonzero(got_dhw > 0)[0]) // 24
    assert learnt_from <= 90, learnt_from
    for month in (3,):
        part = slice(month * 30 * 24, (month + 1) * 30 * 24)
        assert abs(got_heating[part].sum() - heating[part].sum()) <= 0.10 * heating[part].sum(), month


def test_learnt_split_never_uses_later_hours(tmp_path: Path) -> None:
    inventory = load_inventory(_inventory(tmp_path))
    building = inventory.building("gym")
    outdoor, heating, dhw, times = _synthetic()
    config = FeatureConfig(split_min_days=14)
    local_day = np.array([datetime.fromtimestamp(float(t), PARIS).date().toordinal() for t in times], dtype=np.int64)
    full = usage_shares(building, _frame(heating + dhw, outdoor, times), outdoor, local_day, CALENDAR_B, config)
    rng = np.random.default_rng(1)
    for cut in (40 * 24 + 13, 71 * 24 + 23):
        # The future is different (a heating failure, another weather): the past shares must not move.
        future_heat = heating.copy()
        future_heat[cut:] *= rng.uniform(0.0, 3.0)
        future_out = outdoor.copy()
        future_out[cut:] += 5.0
        changed = usage_shares(
            building, _frame(future_heat + dhw, future_out, times), future_out, local_day, CALENDAR_B, config
        )
        cut_frame = _frame((heating + dhw)[:cut], outdoor[:cut], times[:cut])
        truncated = usage_shares(building, cut_frame, outdoor[:cut], local_day[:cut], CALENDAR_B, config)
        for usage in (Usage.HEATING, Usage.DHW):
            np.testing.assert_array_equal(changed["gym-gas"][usage][:cut], full["gym-gas"][usage][:cut])
            np.testing.assert_array_equal(truncated["gym-gas"][usage], full["gym-gas"][usage][:cut])
        assert not np.array_equal(changed["gym-gas"][Usage.HEATING][cut + 48 :], full["gym-gas"][Usage.HEATING][cut + 48 :])
