"""``econome influx setup`` on a real InfluxDB 1.6: retention policies and downsampling."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from typer.testing import CliRunner

from econome.cli import app
from inventory import load_inventory
from streams.influx import InfluxConfig, InfluxQLClient, InfluxV1Writer, LineEncoder
from streams.record import Reading

ROOT = Path(__file__).resolve().parents[2]


def _show(url: str, query: str, series_name: str | None = None) -> list[list[object]]:
    body = httpx.get(f"{url}/query", params={"q": query}, timeout=10).json()
    return [
        row
        for series in body["results"][0].get("series", [])
        if series_name is None or series.get("name") == series_name
        for row in series.get("values", [])  # a database without continuous queries has none
    ]


def test_setup_creates_policies_and_downsampling_then_raw_goes_to_raw(
    influxdb_server, unique_name: str, monkeypatch
) -> None:
    monkeypatch.setenv("ECONOME_INFLUX_URL", influxdb_server.url)
    monkeypatch.setenv("ECONOME_INFLUX_DATABASE", unique_name)
    runner = CliRunner()
    first = runner.invoke(app, ["influx", "setup", "--raw-days", "30", "--long-days", "1830"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["influx", "setup", "--raw-days", "45"])  # idempotent, alters
    assert again.exit_code == 0, again.output
    policies = {row[0]: (row[1], row[4]) for row in _show(influxdb_server.url, f'SHOW RETENTION POLICIES ON "{unique_name}"')}
    assert policies["long"] == ("43920h0m0s", True)  # 1830 days, the default policy
    assert policies["raw"] == ("1080h0m0s", False)  # 45 days
    queries = [row[0] for row in _show(influxdb_server.url, "SHOW CONTINUOUS QUERIES", unique_name)]
    assert "cq_reading_1h" in queries
    assert runner.invoke(app, ["influx", "setup", "--long-days", "365"]).exit_code != 0  # BACS: 5 years at least

    raw, default, long_term = asyncio.run(_write_and_read(influxdb_server.url, unique_name))
    assert raw[0]["values"][0][1] == 1
    assert default == []
    assert long_term[0]["values"][0][1] == 3.5  # aggregates go to the default (long) policy


async def _write_and_read(url: str, database: str) -> tuple[list, list, list]:
    inv = load_inventory(ROOT / "examples" / "commune.yaml")
    config = InfluxConfig(url=url, database=database)
    writer = InfluxV1Writer(config)
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)  # inside the 45-day raw policy
    try:
        await writer.ensure_database()
        line = LineEncoder(inv).encode(Reading("mairie-elec-energy", t, 1.0, "kWh"))
        await writer.write([line], raw=True)
        await writer.write([f"agg_building,building=mairie,window=1h kwh=3.5 {int(t.timestamp() * 1000)}"])
    finally:
        await writer.close()
    client = InfluxQLClient(config)
    try:
        raw = await client.query('SELECT count("value") FROM "raw"."reading"')
        default = await client.query('SELECT count("value") FROM "reading"')
        long_term = await client.query('SELECT "kwh" FROM "agg_building"')
    finally:
        await client.close()
    return raw, default, long_term
