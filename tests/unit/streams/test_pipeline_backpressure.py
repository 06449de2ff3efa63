"""Backpressure, partial writes, InfluxDB state logging and clean stops of the in-process pipeline (issue 10).

InfluxDB is replaced by an in-memory fake of its write endpoint (a list sink that
can be "down" and refuses poisoned lines as InfluxDB does: the rest of the batch
is stored, the request answered 400). Time is a ManualClock; the tests wait for
conditions, never for time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from inventory import load_inventory
from streams.buffer import DeliveryLog
from streams.clock import ManualClock
from streams.deadletter import DeadLetterStore
from streams.influx import RefusedWriteError, RetryableSinkError, write_splitting
from streams.metrics import PrometheusSensor
from streams.pipeline import LogState, Pipeline
from streams.record import Reading

ROOT = Path(__file__).resolve().parents[3]
INV = load_inventory(ROOT / "examples" / "commune.yaml")
T0 = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)
POINT = "mairie-bureaux-temperature"
SECRET_URL = "http://econome:s3cr3t-pw@127.0.0.1:8086"  # noqa: S105 - a fake credential that must not be logged


class FakeInflux:
    """An InfluxDB write endpoint in memory: ``down`` refuses connections; lines with ``poison`` are refused (400)."""

    def __init__(self) -> None:
        self.config = SimpleNamespace(url=SECRET_URL)
        self.lines: list[str] = []
        self.down = False
        self.requests = 0

    async def write(self, lines: list[str], *, raw: bool = False) -> None:
        self.requests += 1
        if self.down:
            msg = f"InfluxDB {SECRET_URL} unreachable: [Errno 111] Connection refused"
            raise RetryableSinkError(msg)
        bad = [line for line in lines if "poison" in line]
        # Like InfluxDB 1.x: the good lines of a partially refused batch are stored.
        self.lines.extend(line for line in lines if "poison" not in line)
        if bad:
            msg = f"InfluxDB {SECRET_URL} answered 400: partial write: unable to parse '{bad[0]}': invalid number dropped=0"
            raise RefusedWriteError(msg, 400)

    async def close(self) -> None:
        return None


class SlowMeter:
    """A polled source whose poll waits until released; counts its polls."""

    def __init__(self, interval: timedelta = timedelta(minutes=1)) -> None:
        self.name = "meter"
        self.interval = interval
        self.polls = 0
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()

    async def poll(self) -> list[Reading]:
        self.polls += 1
        self.entered.set()
        await self.release.wait()
        return [Reading(POINT, T0 + timedelta(minutes=self.polls), 19.0 + self.polls / 100, "degC")]


async def _until(condition: Callable[[], bool], step: Callable[[], None] = lambda: None) -> None:
    """Yield to the loop until ``condition`` holds (fails after 2,000 rounds, never waits for time)."""
    for _ in range(2000):
        if condition():
            return
        step()
        await asyncio.sleep(0.001)
    msg = "condition never became true"
    raise AssertionError(msg)


def _pipeline(tmp_path: Path, writer: FakeInflux, max_rows: int, clock: ManualClock | None = None, **kw: object) -> Pipeline:
    return Pipeline(
        INV,
        writer,
        clock or ManualClock(T0),
        kw.pop("dead", DeadLetterStore()),  # type: ignore[arg-type]
        DeliveryLog(tmp_path / "log.sqlite", max_rows=max_rows),
        flush_interval=timedelta(milliseconds=1),
        retry_min=timedelta(milliseconds=1),
        retry_max=timedelta(milliseconds=4),
        **kw,  # type: ignore[arg-type]
    )


def _reading(i: int) -> Reading:
    return Reading(POINT, T0 + timedelta(seconds=i), 18.0 + i / 1000, "degC")


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_full_log_holds_batches_unacked_then_delivers_each_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    influx = FakeInflux()
    influx.down = True
    sensor = PrometheusSensor()
    pipeline = _pipeline(tmp_path, influx, max_rows=10, sensor=sensor)
    acked: list[int] = []
    caplog.set_level(logging.DEBUG, logger="streams")
    task = asyncio.create_task(pipeline.run([], []))
    for i in range(30):
        pipeline.emit([_reading(i)], lambda i=i: acked.append(i))  # type: ignore[misc]
    await _until(lambda: pipeline.state is LogState.FULL)
    # Only what is on disk is acknowledged; the rest is held, not dropped.
    assert acked == list(range(10))
    assert pipeline.stats.held == 20
    assert b'econome_delivery_log_state{state="full"} 1.0' in sensor.exposition()
    assert b"econome_readings_held 20.0" in sensor.exposition()
    assert b"econome_influxdb_up 0.0" in sensor.exposition()
    await _until(lambda: influx.requests > 20)  # many failed retries while down
    influx.down = False
    await _until(lambda: len(acked) == 30 and pipeline.log.depth() == 0)
    await _until(lambda: pipeline.state is LogState.NORMAL)
    await _stop(task)
    assert acked == list(range(30))
    assert sorted(influx.lines) == sorted(set(influx.lines))
    assert len(influx.lines) == 30
    assert b'econome_delivery_log_state{state="normal"} 1.0' in sensor.exposition()
    assert b"econome_influxdb_up 1.0" in sensor.exposition()
    records = [r for r in caplog.records if r.name == "streams.pipeline" and r.levelno >= logging.INFO]
    messages = [r.getMessage() for r in records]
    # One line per transition (30 readings through a bound of 10 fill it again after the
    # outage), never a line per held batch; the InfluxDB outage: once down (ERROR), once back (INFO).
    kinds = {"full:": "full", "accepting input again": "draining", "back to normal": "normal"}
    transitions = [kind for m in messages for key, kind in kinds.items() if key in m]
    assert transitions[:3] == ["full", "draining", "normal"]
    assert transitions == ["full", "draining", "normal"] * (len(transitions) // 3)
    down = [r for r in records if "down:" in r.getMessage()]
    assert len(down) == 1
    assert down[0].levelno == logging.ERROR
    assert "http://127.0.0.1:8086" in down[0].getMessage()
    assert sum("reachable again" in m for m in messages) == 1
    assert "s3cr3t-pw" not in caplog.text


async def test_polls_are_skipped_and_counted_while_the_log_is_full(tmp_path: Path) -> None:
    influx = FakeInflux()
    influx.down = True
    clock = ManualClock(T0)
    sensor = PrometheusSensor()
    pipeline = _pipeline(tmp_path, influx, max_rows=5, clock=clock, sensor=sensor)
    meter = SlowMeter()
    task = asyncio.create_task(pipeline.run([meter], []))
    for i in range(6):
        pipeline.emit([_reading(i)], lambda: None)
    await _until(lambda: pipeline.state is LogState.FULL)
    polls_before = meter.polls
    await _until(lambda: pipeline.stats.polls_skipped >= 3, step=lambda: clock.advance(meter.interval))
    assert meter.polls == polls_before
    assert b'econome_polls_skipped_total{collector="meter"}' in sensor.exposition()
    influx.down = False
    await _until(lambda: pipeline.state is not LogState.FULL)
    await _until(lambda: meter.polls > polls_before, step=lambda: clock.advance(meter.interval))
    await _stop(task)


async def test_stop_is_bounded_while_the_log_is_full_and_influxdb_down(tmp_path: Path) -> None:
    influx = FakeInflux()
    influx.down = True
    pipeline = _pipeline(tmp_path, influx, max_rows=10, stop_timeout=timedelta(milliseconds=200))
    acked: list[int] = []
    task = asyncio.create_task(pipeline.run([], []))
    for i in range(15):
        pipeline.emit([_reading(i)], lambda i=i: acked.append(i))  # type: ignore[misc]
    await _until(lambda: pipeline.state is LogState.FULL)
    task.cancel()
    # Before issue 10 this never returned: the persist step and the sink retried forever.
    done, _ = await asyncio.wait({task}, timeout=30)
    assert task in done
    assert acked == list(range(10))  # the held ones stay unacknowledged (the broker keeps them)
    pipeline.log.close()
    reopened = DeliveryLog(tmp_path / "log.sqlite", max_rows=10)
    assert reopened.depth() == 10  # what is on disk stays for the next start
    reopened.close()


async def test_stop_persists_the_poll_in_progress(tmp_path: Path) -> None:
    influx = FakeInflux()
    clock = ManualClock(T0)
    pipeline = _pipeline(tmp_path, influx, max_rows=100, clock=clock)
    meter = SlowMeter()
    meter.release.clear()
    task = asyncio.create_task(pipeline.run([meter], []))
    await _until(meter.entered.is_set, step=lambda: clock.advance(meter.interval))
    task.cancel()
    await asyncio.sleep(0)
    meter.release.set()  # the poll answers after the stop began
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert pipeline.stats.received == 1
    assert len(influx.lines) == 1
    assert f"point={POINT}" in influx.lines[0]


async def test_refused_lines_alone_are_dead_lettered_and_aggregates_written(tmp_path: Path) -> None:
    influx = FakeInflux()
    dead = DeadLetterStore()
    pipeline = _pipeline(tmp_path, influx, max_rows=1000, dead=dead)
    readings = [_reading(i) for i in range(100)]
    lines = [f"reading,point={POINT} value={r.value} {i}" for i, r in enumerate(readings)]
    for i in (3, 50, 97):
        lines[i] = f"reading,point={POINT} value=poison {i}"
    pipeline.log.append(readings, lines)
    pipeline.log.add_outbox(["agg_point,point=x sum=1.0 0"], 0)
    task = asyncio.create_task(pipeline.run([], []))
    await _until(lambda: pipeline.log.depth() == 0)
    await _stop(task)
    good = {line for line in lines if "poison" not in line}
    assert set(influx.lines) == good | {"agg_point,point=x sum=1.0 0"}
    assert pipeline.stats.refused == 3
    assert [letter.payload for letter in dead.recent] == [lines[3], lines[50], lines[97]]
    assert all("unable to parse" in letter.reason and "s3cr3t" not in letter.reason for letter in dead.recent)
    assert pipeline.stats.written == 98


async def test_write_splitting_isolates_refused_lines_with_few_requests() -> None:
    influx = FakeInflux()
    lines = [f"m v={i} {i}" for i in range(5000)]
    for i in (0, 2500, 4999):
        lines[i] = f"m v=poison {i}"
    refused = await write_splitting(influx, lines)
    assert [line for line, _ in refused] == [lines[0], lines[2500], lines[4999]]
    assert set(influx.lines) == {line for line in lines if "poison" not in line}
    assert influx.requests <= 2 * 3 * 13 + 1  # ~2 k log2(n), not n
