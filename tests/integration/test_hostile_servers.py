"""Servers and devices that misbehave at run time: small fakes at the boundary (HTTP, Modbus TCP).

Each fake answers what a broken or foreign server answers: a proxy's HTML page,
JSON of another shape, a Modbus answer of another table or length. What we
check: a clear error naming the server or device, nothing stored that is not
a reading, no valid reading dropped, and nothing stops.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from anomalies.live import LiveConfig, LiveDetector
from inventory import Inventory, load_inventory
from streams.errors import SinkError
from streams.influx import InfluxConfig, InfluxQLClient

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
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

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
