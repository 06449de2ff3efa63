"""``econome status`` expects a Linky read by its daily consumption once a day, not 48 times (review F3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from inventory import parse_inventory
from streams.influx import InfluxConfig, InfluxQLClient, InfluxV1Writer, LineEncoder
from streams.record import Reading
from streams.status import building_statuses, read_point_counts

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
          - {id: linky-curve, quantity: active_energy, unit: kWh, usage: general, cumulative: true,
             enedis: {prm: "12345678901234", data_connect: true}}
          - {id: linky-daily, quantity: active_energy, unit: kWh, usage: general, cumulative: true,
             enedis: {prm: "52345678901234", data_connect: true}}
"""


async def test_a_daily_only_linky_is_complete_with_one_reading_a_day(influxdb_server: Any, unique_name: str) -> None:
    inv = parse_inventory(YAML)
    now = datetime(2026, 12, 3, 7, tzinfo=UTC)  # after the morning's fetch: up to 12-03 00:00 Paris
    last = datetime(2026, 12, 2, 23, tzinfo=UTC)
    encoder = LineEncoder(inv)
    halves = [last - timedelta(minutes=30 * k) for k in range(8 * 48)]
    days = [last - timedelta(days=k) for k in range(9)]
    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    writer = InfluxV1Writer(config)
    await writer.ensure_database()
    try:
        await writer.write([encoder.encode(Reading("linky-curve", t, 1000.0 - i, "kWh")) for i, t in enumerate(halves)]
                           + [encoder.encode(Reading("linky-daily", t, 500.0 - i, "kWh")) for i, t in enumerate(days)],
                           raw=True)
    finally:
        await writer.close()
    client = InfluxQLClient(config)
    try:
        counts = await read_point_counts(client, now, steps_of=["linky-curve", "linky-daily"])
        unasked = await read_point_counts(client, now)
    finally:
        await client.close()
    assert (counts["linky-curve"].step, counts["linky-daily"].step) == (timedelta(minutes=30), timedelta(days=1))
    assert unasked["linky-daily"].step is None

    (status,) = building_statuses(inv, counts, now)
    points = {p.id: p for p in status.points or ()}
    assert (points["linky-daily"].received_7d, points["linky-daily"].expected_7d) == (7, 5)  # 7 days less the 2-day delay
    assert points["linky-curve"].expected_7d == 5 * 48
    assert status.completeness_7d == pytest.approx(1.0)
    # Without the step read (as before), the daily Linky looked 97 % incomplete.
    (before,) = building_statuses(inv, unasked, now)
    assert {p.id: round(p.received_7d / p.expected_7d, 2) for p in before.points or ()}["linky-daily"] == 0.03
