"""Servers and devices that misbehave at run time: small fakes at the boundary (HTTP, Modbus TCP).

Each fake answers what a broken or foreign server answers: a proxy's HTML page,
JSON of another shape, a Modbus answer of another table or length. What we
check: a clear error naming the server or device, nothing stored that is not
a reading, no valid reading dropped, and nothing stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from anomalies.live import LiveConfig, LiveDetector
from collectors.modbus import ModbusBus, ModbusCollector
from inventory import Inventory, load_inventory, parse_inventory
from streams.buffer import DeliveryLog
from streams.clock import SystemClock
from streams.deadletter import DeadLetterStore
from streams.errors import SinkError
from streams.influx import InfluxConfig, InfluxQLClient, InfluxV1Writer, LineEncoder
from streams.pipeline import Pipeline
from streams.record import Reading

ROOT = Path(__file__).resolve().parents[2]


class FakeHttp:
    """An HTTP server on loopback answering every request with ``status`` and ``body``; records the paths."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b""
        self.content_type = "application/json"
        self.paths: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.paths.append(self.path)
                self.send_response(fake.status)
                self.send_header("Content-Type", fake.content_type)
                self.send_header("Content-Length", str(len(fake.body)))
                self.end_headers()
                self.wfile.write(fake.body)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture
def fake_http() -> Iterator[FakeHttp]:
    fake = FakeHttp()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    fake.thread.join()


@pytest.fixture(scope="module")
def town_hall(tmp_path_factory: pytest.TempPathFactory) -> Inventory:
    data = yaml.safe_load((ROOT / "examples" / "commune.yaml").read_text(encoding="utf-8"))
    data["sites"] = [data["sites"][0]]
    data["sites"][0]["buildings"] = [b for b in data["sites"][0]["buildings"] if b["id"] == "mairie"]
    path = tmp_path_factory.mktemp("hostile") / "mairie.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_inventory(path)


class NoMail:
    def __init__(self) -> None:
        self.queued = 0

    def queue(self, events: object, now: datetime) -> None:
        self.queued += 1

    async def flush(self, now: datetime) -> int:
        return 0


# What a server that is not InfluxDB 1.x (or a proxy before it) answers with 200 to a /query.
GARBAGE_QUERY_ANSWERS = [
    b"<html><body>Please log in</body></html>",
    b'{"results": [{"statement_id": 0, "series": [{"name": "retention',  # cut short
    b"[]",
    b'{"results": "none"}',
    b'{"results": [1]}',
    b'{"results": [{"series": {"name": "x"}}]}',
    b'{"results": [{"series": [{"name": "retention_policies"}]}]}',  # no columns
    b'{"results": [{"series": [{"name": "r", "columns": ["name"], "tags": "x", "values": [["raw"]]}]}]}',
    b'{"results": [{"series": [{"name": "r", "columns": ["name", "duration"], "values": [["raw"]]}]}]}',
    b'{"results": [{"series": [{"name": "r", "columns": ["time", "value"], "values": [[null, "abc"]]}]}]}',
]


async def test_a_live_pass_on_an_influxdb_answering_garbage_fails_naming_it_and_the_service_goes_on(
    fake_http: FakeHttp, town_hall: Inventory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = InfluxConfig(url=fake_http.url, database="econome")
    notifier = NoMail()
    detector = LiveDetector(town_hall, config, tmp_path / "state.npz", notifier, live=LiveConfig(held=0))
    now = datetime(2026, 1, 9, 12, 5, tzinfo=UTC)
    with caplog.at_level(logging.DEBUG, logger="anomalies.live"):
        for i, body in enumerate(GARBAGE_QUERY_ANSWERS):
            fake_http.body = body
            # Never raises: an AttributeError or KeyError here would end `econome run` (exit 1).
            assert await detector.tick(now + timedelta(hours=i)) is None, body
    assert detector.failures == len(GARBAGE_QUERY_ANSWERS)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, "one ERROR, the repeats at DEBUG"
    assert fake_http.url in errors[0].getMessage()
    failed = [r.getMessage() for r in caplog.records if "live detection pass failed" in r.getMessage()]
    assert len(failed) == len(GARBAGE_QUERY_ANSWERS)
    assert all(fake_http.url in line or "InfluxQL" in line for line in failed), failed
    assert notifier.queued == 0
    assert all(p.startswith("/query") for p in fake_http.paths), "a pass only reads"


async def test_select_range_refuses_rows_that_are_no_time_and_number(fake_http: FakeHttp) -> None:
    client = InfluxQLClient(InfluxConfig(url=fake_http.url))
    start = datetime(2026, 1, 5, tzinfo=UTC)
    good = {"name": "reading", "tags": {"point": "p"}, "columns": ["time", "value"], "values": [[1000, 2.5], [2000, None]]}
    try:
        fake_http.body = json.dumps({"results": [{"series": [good]}]}).encode()
        got = [item async for item in client.select_range("reading", "value", start, start + timedelta(days=1), group_by="point")]
        assert got == [("p", [(1000, 2.5)])]
        for row in ([None, 1.0], [1000, "abc"], [1000, [1]]):
            fake_http.body = json.dumps({"results": [{"series": [{**good, "values": [row]}]}]}).encode()
            with pytest.raises(SinkError, match=f"InfluxDB {fake_http.url} answered .*no time and number"):
                _ = [item async for item in client.select_range("reading", "value", start, start + timedelta(days=1),
                                                                group_by="point")]
    finally:
        await client.close()


LINES = [f"reading,point=p{i} value={i}.5 {1767600000000 + i}" for i in range(64)]


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_a_400_that_is_not_influxdb_s_keeps_the_batch_and_names_the_server(fake_http: FakeHttp, api: str) -> None:
    """A proxy's 400 (HTTP sent to an HTTPS port) refuses the request, not the lines: no line is dead-lettered.

    Bisected as InfluxDB's line errors are, every reading of every batch became a dead letter (and
    was acknowledged, gone from the delivery log), after 127 requests for a batch of 64.
    """
    from streams.influx import RetryableSinkError, make_writer, write_splitting

    fake_http.status = 400
    fake_http.content_type = "text/html"
    fake_http.body = b"<html><head><title>400 The plain HTTP request was sent to HTTPS port</title></head></html>"
    config = InfluxConfig(api=api, url=fake_http.url, token="t" if api == "v2" else None,
                          org="o" if api == "v2" else None, bucket="b" if api == "v2" else None)
    writer = make_writer(config)
    try:
        with pytest.raises(RetryableSinkError, match=f"InfluxDB {fake_http.url} answered 400 .*not an InfluxDB error"):
            await write_splitting(writer, LINES, raw=True)
        assert len(fake_http.paths) == 1, "not bisected"
        # InfluxDB's own 400 names lines: the batch is bisected down to them, the others written.
        fake_http.content_type = "application/json"
        fake_http.body = (b'{"error":"partial write: unable to parse: bad timestamp dropped=1"}' if api == "v1" else
                          b'{"code":"invalid","message":"unable to parse: bad timestamp"}')
        refused = await write_splitting(writer, LINES[:4], raw=True)
        assert [line for line, _ in refused] == LINES[:4]  # the fake refuses every line
        assert all("unable to parse" in reason for _, reason in refused)
    finally:
        await writer.close()


class FakeModbusGateway:
    """A Modbus TCP gateway in a few lines of asyncio: register ``r`` holds ``1000 + r``; some units misbehave.

    ``modes`` maps a unit id to what it does: ``other_table`` answers with the other read function
    (input registers for holding), ``long`` three registers more than asked, ``cut`` half a frame then
    closes the connection, ``other_unit`` answers as unit id + 1. Other units answer correctly.
    """

    def __init__(self, modes: dict[int, str]) -> None:
        self.modes = modes
        self.requests: list[tuple[int, int]] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                tid, _, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                function, address, count = struct.unpack(">BHH", await reader.readexactly(length - 1))
                self.requests.append((unit, function))
                mode = self.modes.get(unit, "")
                words = [1000 + address + i for i in range(count + (3 if mode == "long" else 0))]
                if mode == "other_table":
                    function = 4 if function == 3 else 3
                pdu = struct.pack(f">BB{len(words)}H", function, 2 * len(words), *words)
                frame = struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit + (mode == "other_unit")) + pdu
                if mode == "cut":
                    writer.write(frame[: len(frame) // 2])
                    await writer.drain()
                    break
                writer.write(frame)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


MODBUS_MODES = {2: "other_table", 3: "long", 4: "cut", 5: "other_unit"}


async def test_modbus_answers_of_another_table_length_or_unit_are_refused_and_the_healthy_unit_is_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeModbusGateway(MODBUS_MODES)
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    points = "".join(
        f"""
          - {{id: u{unit}-temp, quantity: temperature, unit: degC, usage: comfort,
              modbus: {{gateway: gw, unit: {unit}, register: {{address: 10, data_type: int16, scale: 0.01}}}}}}"""
        for unit in (1, *MODBUS_MODES)
    )
    inv = parse_inventory(f"""
organisation: {{name: Test, population: 100, school_holiday_zone: C}}
modbus_gateways: [{{id: gw, host: 127.0.0.1, port: {port}, timeout: 300ms, reconnect_min: 10ms, reconnect_max: 20ms}}]
sites:
  - id: s
    name: S
    buildings:
      - id: b
        name: B
        usage: offices
        floor_area_m2: 100
        heated_area_m2: 100
        points:{points}
""")
    bus = ModbusBus(inv.gateway("gw"))
    collector = ModbusCollector(inv, bus, [p for _, p in inv.points()], timedelta(seconds=10), SystemClock())
    try:
        with caplog.at_level(logging.ERROR, logger="collectors.modbus"):
            polls = [await collector.poll() for _ in range(2)]
    finally:
        bus.close()
        server.close()
        await server.wait_closed()
    for readings in polls:
        # Register 10 holds 1010: 10.10 °C. Unit 2's input register 10 also holds 1010: the value is
        # plausible, only the function code says it comes from the other table.
        assert [(r.point_id, round(r.value, 6)) for r in readings] == [("u1-temp", 10.1)]
    errors = {unit: collector.units[unit].last_error for unit in MODBUS_MODES}
    where = f"gateway gw@127.0.0.1:{port} unit"
    assert errors[2] == f"{where} 2 holding 10+1: answer of function 4 (read input registers), not 3"
    assert errors[3] == f"{where} 3 holding 10+1: long answer of 4 registers"
    assert errors[4] == f"{where} 4 holding 10+1: connection closed by the gateway before a whole answer"
    # Answered as unit 6: pymodbus drops it and waits; the error shows what came back.
    assert errors[5].startswith(f"{where} 5 holding 10+1: no usable answer in 0.3s, received ")
    assert "00000005060302" in errors[5]  # unit 6, function 3, 2 bytes
    assert all(not collector.units[unit].up for unit in MODBUS_MODES)
    assert collector.units[1].up
    assert sum(f"{where} {unit} down" in caplog.text for unit in MODBUS_MODES) == len(MODBUS_MODES)
    assert {function for _, function in fake.requests} == {3}, "the collector only reads holding registers here"


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_a_200_html_page_answered_to_a_write_is_no_success(fake_http: FakeHttp, api: str) -> None:
    """A login page or web app in front of InfluxDB answers 200: the readings were not stored, they stay in the log."""
    from streams.influx import RetryableSinkError, make_writer

    fake_http.content_type = "text/html; charset=utf-8"
    fake_http.body = b"<!doctype html><html><body><form action='/login'>...</form></body></html>"
    writer = make_writer(InfluxConfig(api=api, url=fake_http.url, token="t" if api == "v2" else None,
                                      org="o" if api == "v2" else None, bucket="b" if api == "v2" else None))
    try:
        with pytest.raises(RetryableSinkError, match=f"InfluxDB {fake_http.url} answered 200 with an HTML page"):
            await writer.write(LINES)
        fake_http.status = 204
        fake_http.body = b""
        await writer.write(LINES)  # InfluxDB's own answer
    finally:
        await writer.close()


class Proxy(FakeHttp):
    """A reverse proxy before the real InfluxDB: ``broken`` answers every request itself (status, page) instead."""

    def __init__(self, upstream: str) -> None:
        super().__init__()
        self.upstream = upstream
        self.broken = True
        fake = self
        handler = self.server.RequestHandlerClass

        class Forwarding(handler):  # type: ignore[valid-type, misc]
            def _answer(self) -> None:
                if fake.broken:
                    super()._answer()
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "content-encoding")}
                answer = httpx.request(self.command, fake.upstream + self.path, content=body, headers=headers, timeout=10)
                self.send_response(answer.status_code)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = _answer

        self.server.RequestHandlerClass = Forwarding


@pytest.mark.parametrize(("status", "page"), [(400, b"<html>400 The plain HTTP request was sent to HTTPS port</html>"),
                                              (200, b"<html><form action='/login'></form></html>")])
async def test_the_pipeline_behind_a_proxy_answering_for_influxdb_loses_no_reading(
    influxdb_server: Any, unique_name: str, tmp_path: Path, status: int, page: bytes
) -> None:
    proxy = Proxy(influxdb_server.url)
    proxy.status, proxy.body, proxy.content_type = status, page, "text/html"
    proxy.thread.start()
    inv = load_inventory(ROOT / "examples" / "commune.yaml")
    config = InfluxConfig(url=proxy.url, database=unique_name)
    writer = InfluxV1Writer(config)
    dead = DeadLetterStore()
    log = DeliveryLog(tmp_path / "log.sqlite")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    readings = [Reading("mairie-elec-energy", t0 + timedelta(minutes=i), 1000.0 + i, "kWh") for i in range(60)]
    encoder = LineEncoder(inv)
    log.append(readings, [encoder.encode(r) for r in readings])
    pipeline = Pipeline(inv, writer, SystemClock(), dead, log, flush_interval=timedelta(milliseconds=50),
                        retry_min=timedelta(milliseconds=50), retry_max=timedelta(milliseconds=200))
    task = asyncio.create_task(pipeline.run([], []))
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while pipeline.stats.write_errors < 3:
            assert asyncio.get_running_loop().time() < deadline, "no write tried"
            await asyncio.sleep(0.02)
        assert log.depth() > 0, "the readings stay in the delivery log"
        proxy.broken = False  # the operator fixes the URL
        while log.depth():
            assert asyncio.get_running_loop().time() < deadline, "not delivered"
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await writer.close()
        proxy.server.shutdown()
        proxy.server.server_close()
        proxy.thread.join()
    assert dead.count == 0
    assert pipeline.stats.refused == 0
    client = InfluxQLClient(InfluxConfig(url=influxdb_server.url, database=unique_name))
    try:
        [series] = await client.query('SELECT count("value"), sum("value") FROM "reading"')
    finally:
        await client.close()
    assert series["values"][0][1:] == [60, sum(1000.0 + i for i in range(60))]
