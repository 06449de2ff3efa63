"""The in-process pipeline: sources → queue → InfluxDB 1.6, with retries and dead letters."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from econome.localservers import restart
from inventory import load_inventory
from streams.buffer import DeliveryLog
from streams.clock import SystemClock
from streams.deadletter import DeadLetterStore
from streams.influx import InfluxConfig, InfluxQLClient, InfluxV1Writer, LineEncoder
from streams.pipeline import Pipeline
from streams.record import Reading

ROOT = Path(__file__).resolve().parents[2]
INV = load_inventory(ROOT / "examples" / "commune.yaml")
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)  # live input: within ECONOME_MAX_AGE_S


class CountingSource:
    """A polled source of a meter's counter, one reading per poll."""

    def __init__(self, name: str, point_id: str, limit: int) -> None:
        self.name = name
        self.point_id = point_id
        self.interval = timedelta(milliseconds=20)
        self.limit = limit
        self.polls = 0

    async def poll(self) -> list[Reading]:
        if self.polls >= self.limit:
            return []
        self.polls += 1
        return [Reading(self.point_id, T0 + timedelta(minutes=self.polls), float(self.polls), "kWh")]


async def _count(config: InfluxConfig, point: str) -> int:
    client = InfluxQLClient(config)
    try:
        series = await client.query(f'SELECT count("value") FROM "reading" WHERE "point" = \'{point}\'')  # noqa: S608 - test query
    finally:
        await client.close()
    return int(series[0]["values"][0][1]) if series else 0


async def _run_until(pipeline: Pipeline, sources: list[CountingSource], done) -> None:
    task = asyncio.create_task(pipeline.run(sources, []))
    deadline = asyncio.get_running_loop().time() + 30
    while not done() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_readings_reach_influxdb_and_unknown_points_are_dead_lettered(
    influxdb_server, unique_name: str, tmp_path: Path
) -> None:
    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    writer = InfluxV1Writer(config)
    await writer.ensure_database()
    dead = DeadLetterStore()
    log = DeliveryLog(tmp_path / "log.sqlite")
    pipeline = Pipeline(INV, writer, SystemClock(), dead, log, flush_interval=timedelta(milliseconds=100))
    sources = [CountingSource("a", "mairie-elec-energy", 30), CountingSource("b", "no-such-point", 5)]
    await _run_until(pipeline, sources, lambda: pipeline.stats.written >= 30 and pipeline.stats.rejected >= 5)
    await writer.close()
    assert await _count(config, "mairie-elec-energy") == 30
    assert pipeline.stats.rejected == 5
    assert dead.recent[0].reason == "point not in the inventory"
    assert dead.recent[0].key == "no-such-point"


async def test_influxdb_down_then_back_loses_nothing(influxdb_server, unique_name: str, tmp_path: Path) -> None:
    # A private InfluxDB, since this test stops it.
    from econome.localservers import start_influxdb

    server = start_influxdb(tmp_path / "influx")
    config = InfluxConfig(url=server.url, database=unique_name)
    writer = InfluxV1Writer(config)
    await writer.ensure_database()
    pipeline = Pipeline(
        INV,
        writer,
        SystemClock(),
        DeadLetterStore(),
        DeliveryLog(tmp_path / "log.sqlite"),
        flush_interval=timedelta(milliseconds=50),
        retry_min=timedelta(milliseconds=100),
        retry_max=timedelta(milliseconds=400),
    )
    source = CountingSource("a", "mairie-elec-energy", 60)
    task = asyncio.create_task(pipeline.run([source], []))
    try:
        while source.polls < 10:
            await asyncio.sleep(0.02)
        server.stop()
        while source.polls < 60 or pipeline.stats.write_errors == 0:
            await asyncio.sleep(0.05)
        server = await asyncio.to_thread(restart, server)
        while pipeline.stats.written < 60:
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await writer.close()
    try:
        assert await _count(config, "mairie-elec-energy") == 60
        assert pipeline.stats.write_errors >= 1
    finally:
        server.stop()


async def test_a_partial_write_dead_letters_only_the_refused_lines(influxdb_server, unique_name: str, tmp_path: Path) -> None:
    """InfluxDB 1.6 answers 400 to a batch with three bad lines: the rest and the aggregates are written."""
    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    writer = InfluxV1Writer(config)
    await writer.ensure_database()
    dead = DeadLetterStore()
    log = DeliveryLog(tmp_path / "log.sqlite")
    encoder = LineEncoder(INV)
    readings = [Reading("mairie-elec-energy", T0 + timedelta(minutes=i), 1000.0 + i, "kWh") for i in range(300)]
    lines = [encoder.encode(r) for r in readings]
    bad = {
        10: "reading,point=mairie-elec-energy value=notanumber 1736060400000",
        150: "reading,point=mairie-elec-energy value=1 99999999999999999",
        290: f'reading,point=mairie-elec-energy value="text" {int(T0.timestamp() * 1000) + 123}',
    }
    for i, line in bad.items():
        lines[i] = line
    log.append(readings, lines)
    aggregate = f"agg_point,point=mairie-elec-energy,window=1h sum=42.0 {int(T0.timestamp() * 1000)}"
    log.add_outbox([aggregate], 0)
    pipeline = Pipeline(INV, writer, SystemClock(), dead, log, flush_interval=timedelta(milliseconds=50))
    await _run_until(pipeline, [], lambda: log.depth() == 0)
    await writer.close()
    assert await _count(config, "mairie-elec-energy") == 297
    client = InfluxQLClient(config)
    try:
        series = await client.query('SELECT sum("value") FROM "reading"')
        assert series[0]["values"][0][1] == sum(1000.0 + i for i in range(300) if i not in bad)
        agg = await client.query('SELECT "sum" FROM "agg_point"')
        assert agg[0]["values"][0][1] == 42.0
    finally:
        await client.close()
    assert sorted(letter.payload for letter in dead.recent) == sorted(bad.values())
    assert all(letter.source == "sink" and "400" in letter.reason for letter in dead.recent)
    assert pipeline.stats.refused == 3
