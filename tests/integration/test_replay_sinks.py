"""Exactly-once effect: an aggregate batch written again (a replay after a kill or a rebalance) doubles nothing.

The faust worker is at-least-once towards its sink: what it applied after its
last commit is delivered again to its successor. The state table's offset
skips a message already applied to the saved state; a message applied and
written but not saved is applied again, and its aggregates are written again
with the same measurement, tags and timestamp. Each sink a worker can write
to (``InfluxAggregateSink``: InfluxDB 1.x, and the v2 write path, here
VictoriaMetrics) must overwrite them, not add them. InfluxDB does; VictoriaMetrics
does only with ``-dedup.minScrapeInterval=1ms`` (a replay writes the same values).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from econome.localservers import start_victoriametrics
from inventory import load_inventory
from streams.aggregate import AggregateRecord, StreamProcessor
from streams.faust_runner import InfluxAggregateSink, building_inventory
from streams.influx import InfluxConfig, InfluxV1Writer
from streams.record import Reading
from tests.conftest import ROOT, Endpoint

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def _records() -> list[AggregateRecord]:
    """The mairie's aggregates over six hours of a counter at 1-minute steps, 0.1 kWh a minute."""
    inventory = building_inventory(load_inventory(ROOT / "examples" / "commune.yaml"), "mairie")
    processor = StreamProcessor(inventory)
    processor.process(Reading("mairie-elec-energy", T0 + timedelta(minutes=i), 1000.0 + 0.1 * i, "kWh") for i in range(361))
    return processor.advance() + processor.flush()


def _hours(records: list[AggregateRecord]) -> list[AggregateRecord]:
    return [
        r for r in records
        if r.measurement.endswith("agg_point") and ("window", "1h") in r.tags and ("point", "mairie-elec-energy") in r.tags
    ]


async def test_a_replayed_batch_overwrites_the_same_points_in_influxdb_1(influxdb_server: Endpoint, unique_name: str) -> None:
    records = _records()
    hours = _hours(records)
    assert len(hours) == 6
    sink = InfluxAggregateSink(InfluxConfig(url=influxdb_server.url, database=unique_name))
    assert isinstance(sink.writer, InfluxV1Writer)
    await sink.writer.ensure_database()
    try:
        await sink.write(records)
        await sink.write(records[len(records) // 2 :])  # the replay of the last batches
    finally:
        await sink.close()
    query = 'SELECT count("sum"), sum("sum") FROM "agg_point" WHERE "point" = \'mairie-elec-energy\' AND "window" = \'1h\''
    body = httpx.get(f"{influxdb_server.url}/query", params={"db": unique_name, "q": query}, timeout=10).json()
    _, count, total = body["results"][0]["series"][0]["values"][0]
    assert count == 6
    assert total == sum(r.fields["sum"] for r in hours)


def _vm_samples(url: str, series: str) -> list[dict[str, Any]]:
    httpx.get(f"{url}/internal/force_flush", timeout=10)
    deadline = time.monotonic() + 15
    rows: list[dict[str, Any]] = []
    while not rows and time.monotonic() < deadline:
        response = httpx.post(f"{url}/api/v1/export", data={"match[]": series}, timeout=10)
        rows = [json.loads(line) for line in response.text.splitlines() if line]
        time.sleep(0.3)
    return rows


@pytest.mark.parametrize("dedup", [False, True], ids=["default", "dedup-1ms"])
async def test_a_replayed_batch_in_victoriametrics_is_kept_once_only_with_deduplication(
    unique_name: str, tmp_path: Path, dedup: bool
) -> None:
    """The v2 write path: InfluxDB 2.x overwrites like 1.x; VictoriaMetrics needs ``-dedup.minScrapeInterval=1ms``."""
    server = start_victoriametrics(tmp_path / "vm", dedup=dedup)
    records = [r for r in _records() if r.measurement == "agg_point"]
    token = "t0ken"  # noqa: S105 - VictoriaMetrics ignores it
    url = f"http://{server.host}:{server.port}"
    sink = InfluxAggregateSink(InfluxConfig(api="v2", url=url, token=token, org="o", bucket="b"))
    try:
        await sink.write(records)
        await sink.write(records)  # the replay: the same records, the same values
        await sink.close()
        rows = _vm_samples(url, 'agg_point_sum{point="mairie-elec-energy",window="1h"}')
    finally:
        server.stop()
    assert len(rows) == 1
    once = [r.fields["sum"] for r in _hours(records)]
    # Without deduplication every hour is there twice, and a sum over time doubles.
    assert rows[0]["values"] == (once if dedup else [v for v in once for _ in (0, 1)])
