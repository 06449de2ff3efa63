"""The InfluxDB writers against real servers: InfluxDB 1.6 (v1 API) and VictoriaMetrics (v2 write API)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from inventory import load_inventory
from streams.errors import SinkError
from streams.influx import InfluxConfig, InfluxQLClient, InfluxV1Writer, InfluxV2Writer, LineEncoder, RetryableSinkError
from streams.record import Quality, Reading

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def encoder() -> LineEncoder:
    return LineEncoder(load_inventory(ROOT / "examples" / "commune.yaml"))


def _readings(n: int) -> list[Reading]:
    return [Reading("mairie-elec-energy", T0 + timedelta(minutes=i), 1000.0 + i, "kWh") for i in range(n)] + [
        Reading("mairie-bureaux-temperature", T0 + timedelta(minutes=i), 19.0 + i / 100, "degC", Quality.STALE) for i in range(n)
    ]


async def test_v1_write_then_influxql(influxdb_server, unique_name: str, encoder: LineEncoder) -> None:
    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    writer = InfluxV1Writer(config)
    client = InfluxQLClient(config)
    try:
        await writer.ensure_database()
        lines = [encoder.encode(r) for r in _readings(50)]
        await writer.write(lines)
        await writer.write(lines)  # same points again: idempotent
        series = await client.query('SELECT count("value"), sum("value") FROM "reading" GROUP BY "point"')
        by_point = {s["tags"]["point"]: s["values"][0] for s in series}
        assert by_point["mairie-elec-energy"][1] == 50
        assert by_point["mairie-elec-energy"][2] == pytest.approx(sum(1000.0 + i for i in range(50)))
        assert by_point["mairie-bureaux-temperature"][1] == 50
        tags = await client.query('SHOW TAG VALUES FROM "reading" WITH KEY = "zone"')
        assert tags[0]["values"] == [["zone", "bureaux"]]
        quality = await client.query('SELECT last("quality") FROM "reading" WHERE "point" = \'mairie-bureaux-temperature\'')
        assert quality[0]["values"][0][1] == "stale"
    finally:
        await writer.close()
        await client.close()


async def test_v1_write_goes_out_while_the_event_loop_is_busy(influxdb_server, unique_name: str, encoder: LineEncoder) -> None:
    # Issue 15: during a burst the loop turns slowly; the request must not need its turns to be sent and answered.
    writer = InfluxV1Writer(InfluxConfig(url=influxdb_server.url, database=unique_name))
    try:
        await writer.ensure_database()
        lines = [encoder.encode(r) for r in _readings(500)]
        task = asyncio.create_task(writer.write(lines))
        await asyncio.sleep(0)  # the write starts; then the loop is held, as a burst's validation holds it
        query = {"db": unique_name, "q": 'SELECT count("value") FROM "reading"'}
        found = 0
        deadline = time.monotonic() + 10
        while found < len(lines) and time.monotonic() < deadline:
            series = httpx.get(f"{influxdb_server.url}/query", params=query, timeout=5).json()["results"][0].get("series")
            found = series[0]["values"][0][1] if series else 0
            time.sleep(0.05)  # blocks the loop
        assert found == len(lines)
        await task
    finally:
        await writer.close()


async def test_v1_refused_write_is_not_retryable(influxdb_server, unique_name: str) -> None:
    writer = InfluxV1Writer(InfluxConfig(url=influxdb_server.url, database=unique_name))
    try:
        await writer.ensure_database()
        with pytest.raises(SinkError) as info:
            await writer.write(["reading,point=x value=notanumber 1"])
        assert not isinstance(info.value, RetryableSinkError)
        assert "400" in str(info.value)
    finally:
        await writer.close()


async def test_v1_unreachable_is_retryable() -> None:
    from econome.localservers import free_port

    writer = InfluxV1Writer(InfluxConfig(url=f"http://127.0.0.1:{free_port()}", database="x"))
    try:
        with pytest.raises(RetryableSinkError, match="unreachable"):
            await writer.write(["reading,point=x value=1 1"])
    finally:
        await writer.close()


def _vm_export(url: str, series: str) -> list[dict]:
    httpx.get(f"{url}/internal/force_flush", timeout=10)
    deadline = time.monotonic() + 15
    while True:
        response = httpx.post(f"{url}/api/v1/export", data={"match[]": series}, timeout=10)
        rows = [__import__("json").loads(line) for line in response.text.splitlines() if line]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.3)


async def test_v2_write_path_against_victoriametrics(victoriametrics_server, unique_name: str, encoder: LineEncoder) -> None:
    token = "t0ken"  # noqa: S105 - VictoriaMetrics ignores it
    config = InfluxConfig(api="v2", url=victoriametrics_server.url, token=token, org="valmont", bucket=unique_name)
    writer = InfluxV2Writer(config)
    try:
        lines = [encoder.encode(r).replace("reading,", f"{unique_name},", 1) for r in _readings(20)]
        await writer.write(lines)
    finally:
        await writer.close()
    rows = _vm_export(victoriametrics_server.url, f'{unique_name}_value{{point="mairie-elec-energy"}}')
    assert len(rows) == 1
    assert rows[0]["metric"]["building"] == "mairie"
    assert rows[0]["values"] == [1000.0 + i for i in range(20)]
    assert rows[0]["timestamps"][0] == int(T0.timestamp() * 1000)


def test_v2_config_needs_token_org_bucket() -> None:
    with pytest.raises(ValueError, match="token, org and bucket"):
        InfluxConfig(api="v2", url="http://127.0.0.1:1")


def _poisoned(encoder: LineEncoder, n: int) -> tuple[list[str], dict[int, str]]:
    """``n`` good lines with three InfluxDB 1.6 refuses: unparsable, time out of range, field-type conflict."""
    lines = [encoder.encode(r) for r in _readings(n // 2)]
    poison = {
        n // 7: "reading,point=poison-a value=notanumber 1736060400000",
        n // 2: "reading,point=poison-b value=1 99999999999999999",
        n - 3: f'reading,point=mairie-elec-energy value="text" {int(T0.timestamp() * 1000) + 123}',
    }
    for i, line in sorted(poison.items()):
        lines.insert(i, line)
    return lines, poison


async def test_v1_partial_write_is_split_to_the_refused_lines(influxdb_server, unique_name: str, encoder: LineEncoder) -> None:
    from streams.influx import write_splitting

    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    writer = InfluxV1Writer(config)
    client = InfluxQLClient(config)
    try:
        await writer.ensure_database()
        lines, poison = _poisoned(encoder, 400)
        refused = await write_splitting(writer, lines)
        assert [line for line, _ in refused] == [poison[i] for i in sorted(poison)]
        reasons = [reason for _, reason in refused]
        assert "invalid number" in reasons[0]
        assert "time outside range" in reasons[1]
        assert "field type conflict" in reasons[2]
        series = await client.query('SELECT count("value"), sum("value") FROM "reading" GROUP BY "point"')
        by_point = {s["tags"]["point"]: s["values"][0] for s in series}
        assert set(by_point) == {"mairie-elec-energy", "mairie-bureaux-temperature"}
        assert by_point["mairie-elec-energy"][1] == 200
        assert by_point["mairie-elec-energy"][2] == pytest.approx(sum(1000.0 + i for i in range(200)))
        assert by_point["mairie-bureaux-temperature"][1] == 200
    finally:
        await writer.close()
        await client.close()


async def test_v1_missing_database_that_cannot_be_created_is_retryable_not_refused(tmp_path: Path) -> None:
    """Review finding 4: 404 "database not found", then 403 on CREATE DATABASE (a user without admin rights).

    InfluxDB 1.6 runs here without authentication, so the locked-down server is a
    small HTTP server answering as InfluxDB does.
    """

    class Locked(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            write = self.path.startswith("/write")
            code, error = (404, 'database not found: "econome"') if write else (403, "requires admin privilege")
            body = json.dumps({"error": error}).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Locked)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    writer = InfluxV1Writer(InfluxConfig(url=f"http://127.0.0.1:{server.server_port}"))
    try:
        # Retryable: the pipeline keeps the readings in its log instead of dead-lettering them.
        with pytest.raises(RetryableSinkError, match="not found and not created"):
            await writer.write(["m v=1 1"])
    finally:
        await writer.close()
        server.shutdown()
        server.server_close()
        thread.join()
