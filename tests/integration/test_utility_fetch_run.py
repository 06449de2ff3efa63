"""``econome run`` fetches Linky and Gazpar data from the APIs into a real InfluxDB, and keeps them off the missing list.

The fake Enedis/GRDF server (tests/utility_fakes.py) answers in the published formats; the run's clock
is simulated (4 hours a second) over more than two days, longer than a Linky's silence limit: the points
would be reported missing if what the daily fetch delivered were not told to the missing-point check.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from streams.influx import RAW_MEASUREMENT, InfluxConfig, InfluxQLClient
from streams.status import PointCounts, read_point_counts
from tests import utility_fakes as fk
from tests.conftest import Endpoint

ROOT = Path(__file__).resolve().parents[2]



def _query(config: InfluxConfig, statement: str) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        client = InfluxQLClient(config)
        try:
            return await client.query(statement)
        finally:
            await client.close()

    return asyncio.run(run())


def _rows(config: InfluxConfig, statement: str) -> list[list[Any]]:
    return [row for series in _query(config, statement) for row in series["values"]]


def _local_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=fk.PARIS).astimezone(UTC)


@pytest.mark.timeout(120)
def test_run_lands_fetched_readings_in_influxdb_and_the_points_are_not_missing(
    tmp_path: Path, influxdb_server: Endpoint, unique_name: str
) -> None:
    # Whatever the run asks (up to its yesterday) is published.
    fake = fk.FakeUtilities(enedis_until=date(2026, 12, 31), grdf_until=date(2026, 12, 31))
    (tmp_path / "inv.yaml").write_text(fk.INVENTORY, encoding="utf-8")
    with fk.ServedInThread(fake) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ECONOME_")}
        env.update({
            "PYTHONPATH": str(ROOT), "ECONOME_DATA_DIR": str(tmp_path / "var"), "ECONOME_DETECT_ENABLED": "false",
            "ECONOME_INFLUX_URL": influxdb_server.url, "ECONOME_INFLUX_DATABASE": unique_name,
            "ECONOME_STOP_TIMEOUT_S": "5",
            "ECONOME_ENEDIS_CLIENT_ID": fk.CLIENT_ID, "ECONOME_ENEDIS_CLIENT_SECRET": fk.CLIENT_SECRET,
            "ECONOME_ENEDIS_URL": server.url,
            "ECONOME_GRDF_CLIENT_ID": fk.CLIENT_ID, "ECONOME_GRDF_CLIENT_SECRET": fk.CLIENT_SECRET,
            "ECONOME_GRDF_URL": f"{server.url}/adict/v2", "ECONOME_GRDF_TOKEN_URL": f"{server.url}/grdf/access_token",
            "ECONOME_UTILITIES_BACKFILL_DAYS": "3",
        })  # fmt: skip
        # From 12-02 07:00 in Paris, 8 simulated hours a second, for 7 s: 56 hours, past 12-04 07:30
        # (three daily runs at 07:30) and past 12-04 08:00, when a silent Linky would be missing since the start.
        result = subprocess.run(
            [sys.executable, "-m", "econome.cli", "run", str(tmp_path / "inv.yaml"), "--duration", "7",
             "--speed", "28800", "--start", "2026-12-02T07:00:00+01:00"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "missing: no reading" not in result.stderr, result.stderr[-3000:]
    assert fk.CLIENT_SECRET not in result.stdout + result.stderr

    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    # The Linky: an index at the start of the backfill (11-29 00:00) then every half hour up to 12-04 00:00.
    rows = _rows(config, f"SELECT value FROM {RAW_MEASUREMENT} WHERE point = 'mairie-linky'")  # noqa: S608 - constants
    times = [datetime.fromtimestamp(t / 1000, UTC) for t, _ in rows]
    span = (_local_midnight(date(2026, 11, 29)), _local_midnight(date(2026, 12, 4)))
    assert (times[0], times[-1]) == span, result.stderr[-2000:]
    assert all(b - a == timedelta(minutes=30) for a, b in itertools.pairwise(times)), "a gap or a repeat in the index"
    # Index continuity: each step is the fake's half-hour energy (W x 0.5 h), so each day sums to the fake's kWh.
    per_day: dict[date, float] = defaultdict(float)
    for (_, before), (t, after) in itertools.pairwise(rows):
        end = datetime.fromtimestamp(t / 1000, UTC)
        assert after - before == pytest.approx(round(fk.linky_watts(end)) * 0.5 / 1000)
        per_day[(end - timedelta(minutes=30)).astimezone(fk.PARIS).date()] += after - before
    for day, kwh in per_day.items():
        ends = [_local_midnight(day) + timedelta(minutes=30 * (n + 1)) for n in range(48)]
        assert kwh == pytest.approx(sum(round(fk.linky_watts(e)) * 0.5 for e in ends) / 1000)
    assert sorted(per_day) == [date(2026, 11, 29) + timedelta(days=n) for n in range(5)]
    # The Gazpar: gas days up to 12-03, each the fake's m3.
    gas = _rows(config, f"SELECT value FROM {RAW_MEASUREMENT} WHERE point = 'mairie-gazpar'")  # noqa: S608 - constants
    steps = [after - before for (_, before), (_, after) in itertools.pairwise(gas)]
    gas_days = [date(2026, 11, 29) + timedelta(days=n) for n in range(5)]
    assert steps == pytest.approx([fk.gazpar_m3(d) for d in gas_days])
    # The pipeline's point status: neither point reported missing at any time of the run.
    status = _rows(config, "SELECT max(missing) FROM point_status GROUP BY point")
    assert status, "no point status written"
    assert all(row[1] == 0 for row in status), status
    assert len(_query(config, "SELECT max(missing) FROM point_status GROUP BY point")) == 2

    # econome status of a Gazpar published monthly looks for its last reading as far back as its silence limit.
    later = _local_midnight(date(2027, 1, 20))

    async def counts(last_within: timedelta) -> dict[str, PointCounts]:
        client = InfluxQLClient(config)
        try:
            return await read_point_counts(client, later, last_within=last_within)
        finally:
            await client.close()

    assert "mairie-gazpar" not in asyncio.run(counts(timedelta(days=7)))
    last_gas_day_end = _local_midnight(date(2026, 12, 4)) + timedelta(hours=6)
    assert asyncio.run(counts(timedelta(days=52)))["mairie-gazpar"].last == last_gas_day_end
