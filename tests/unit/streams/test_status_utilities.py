"""``econome status`` gives Linky and Gazpar points their publication delay (Enedis J+1, GRDF J+1 to J+3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from inventory import parse_inventory
from streams.quality import QualityTracker, StalenessLimits
from streams.status import DAY, WEEK, PointCounts, building_statuses, expected_readings

NOW = datetime(2026, 12, 1, 6, 29, tzinfo=UTC)  # 07:29 in Paris, just before the daily fetch

YAML = """
organisation: {name: Commune test, population: 1200, school_holiday_zone: A}
sites:
  - id: s1
    name: Site
    buildings:
      - id: ecole
        name: École
        usage: school
        floor_area_m2: 500
        heated_area_m2: 450
        points:
          - {id: linky, quantity: active_energy, unit: kWh, usage: general, cumulative: true,
             enedis: {prm: "12345678901234", data_connect: true}}
          - {id: gazpar, quantity: gas_volume, unit: m3, usage: heating, cumulative: true, conversion_kwh_per_unit: 11.2,
             grdf: {pce: "GI123456", adict: true}}
"""


@pytest.mark.parametrize(
    ("linky_age", "gazpar_age", "stale"),
    [
        # Day D fetched on D+1 at 07:30: its last reading (D+1 00:00 local) is 31.5 h old before the next fetch.
        (timedelta(hours=31, minutes=29), timedelta(days=3, hours=1), []),
        # A missed day of Enedis; GRDF beyond D+3.
        (timedelta(days=2, hours=1), timedelta(days=4, hours=1), ["linky", "gazpar"]),
    ],
)
def test_utility_points_are_stale_only_past_their_publication_delay(
    linky_age: timedelta, gazpar_age: timedelta, stale: list[str]
) -> None:
    inv = parse_inventory(YAML)
    counts = {"linky": PointCounts(0, 240, NOW - linky_age), "gazpar": PointCounts(0, 3, NOW - gazpar_age)}
    (status,) = building_statuses(inv, counts, NOW)
    assert status.stale_points == stale
    assert status.completeness_24h is None  # nothing is expected of them in the last 24 hours
    assert status.completeness_7d == pytest.approx(1.0)  # 5 days of half hours, 3 gas days
    assert all("completeness" not in problem for problem in status.problems(0.9))


def test_expected_readings_of_utility_points() -> None:
    inv = parse_inventory(YAML)
    linky, gazpar = inv.point("linky"), inv.point("gazpar")
    limits = StalenessLimits()
    assert (expected_readings(linky, DAY, limits), expected_readings(linky, WEEK, limits)) == (0, 5 * 48)
    assert (expected_readings(gazpar, DAY, limits), expected_readings(gazpar, WEEK, limits)) == (0, 3)


def test_a_gazpar_published_monthly_is_silent_for_weeks_without_being_stale_or_missing() -> None:
    inv = parse_inventory(YAML.replace('adict: true}', 'adict: true, publication: monthly}'))
    gazpar = inv.point("gazpar")
    # Month M-1's days come between the 10th and the 20th of M: on the 20th of M+1, 06:00 on the 1st of M is 50 days old.
    counts = {"linky": PointCounts(0, 240, NOW - timedelta(hours=20)), "gazpar": PointCounts(0, 0, NOW - timedelta(days=50))}
    (status,) = building_statuses(inv, counts, NOW)
    assert status.stale_points == []
    assert expected_readings(gazpar, WEEK, StalenessLimits()) == 0
    counts["gazpar"] = PointCounts(0, 0, NOW - timedelta(days=53))  # a month's publication missed
    assert building_statuses(inv, counts, NOW)[0].stale_points == ["gazpar"]
    tracker = QualityTracker(inv, NOW)
    assert tracker.check_missing(NOW + timedelta(days=40)) == ["linky"]  # the daily one would be long missing
    assert tracker.check_missing(NOW + timedelta(days=53)) == ["linky", "gazpar"]
