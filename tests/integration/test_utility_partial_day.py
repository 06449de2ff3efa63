"""A Linky day published in part, then whole: the daily fetch delivers it twice into a real InfluxDB (review F3).

The second delivery repeats the morning's half-hours and adds the afternoon's: the index must
keep the morning's values and reach the day's whole consumption, with no reading twice.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collectors.utilities.daily import DailyFetch
from collectors.utilities.dataconnect import DataConnectClient
from inventory import parse_inventory
from streams.clock import ManualClock
from streams.imports import Consumption, deliver_consumption
from streams.influx import RAW_MEASUREMENT, InfluxConfig, InfluxQLClient
from tests import utility_fakes as fk
from tests.unit.collectors.test_utility_daily import LINKY_ONLY, _LateCurve


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=fk.PARIS).astimezone(UTC)


async def test_a_day_published_in_part_then_whole_gets_the_whole_day_once(
    influxdb_server: Any, unique_name: str, tmp_path: Path
) -> None:
    inv = parse_inventory(LINKY_ONLY.split("          - {id: linky-daily")[0])
    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    fake = _LateCurve(enedis_until=date(2026, 12, 2), grdf_until=date(2026, 12, 2))
    fake.curve_until, fake.partial_until = date(2026, 12, 2), "2026-12-02 12:00:00"
    runner, url = await fk.serve(fake)

    async def deliver(point_id: str, intervals: Sequence[Consumption], source: str) -> object:
        # As econome run's fetch delivers: the run's clock is "now" (an interval may not end after it).
        return await deliver_consumption(inv, config, point_id, intervals, data_dir=tmp_path / "var", source=source,
                                         now=clock.now())

    async def rows() -> list[tuple[datetime, float]]:
        client = InfluxQLClient(config)
        try:
            series = await client.query(f"SELECT value FROM {RAW_MEASUREMENT} WHERE point = 'linky'")  # noqa: S608
        finally:
            await client.close()
        return [(datetime.fromtimestamp(t / 1000, UTC), v) for s in series for t, v in s["values"]]

    state = tmp_path / "state.json"
    state.write_text(json.dumps({"version": 1, "last_run": "2026-12-02", "fetched": ["linky"],
                                 "points": {"linky": {"last_day": "2026-12-01"}}}))
    clock = ManualClock(datetime(2026, 12, 3, 6, 30, tzinfo=UTC))  # 07:30 in Paris
    client = DataConnectClient(fk.CLIENT_ID, fk.CLIENT_SECRET, url=url, retries=0)
    fetch = DailyFetch(inv, state, clock, deliver, enedis=client)
    try:
        await fetch.run_once()
        morning = await rows()
        start = _midnight(date(2026, 12, 2))
        assert (len(morning), morning[0][0], morning[-1][0]) == (25, start, start + timedelta(hours=12))
        assert json.loads(state.read_text())["points"]["linky"]["last_day"] == "2026-12-01"

        fake.partial_until = None
        clock.advance(timedelta(hours=2))  # the 09:30 retry: the whole day
        await fetch.run_once()
        day = await rows()
    finally:
        await client.close()
        await runner.cleanup()
    assert [t for t, _ in day] == [start + timedelta(minutes=30 * k) for k in range(49)]
    assert day[:25] == morning  # the morning's index kept
    for (_, before), (end, after) in itertools.pairwise(day):
        assert after - before == pytest.approx(round(fk.linky_watts(end)) * 0.5 / 1000)
    assert json.loads(state.read_text())["points"]["linky"] == {"last_day": "2026-12-02"}
