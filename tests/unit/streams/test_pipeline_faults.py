"""Faults that used to end the in-process pipeline (issue 10, review findings 1, 2, 3 and 4).

A poll that raises, a disk that refuses writes (dead-letter store or delivery
log), InfluxDB refusing the request itself, and a stop with a processor backlog.
The disk faults are injected by subclasses of the real stores whose writes
raise what a full disk raises (ENOSPC, SQLite's "disk I/O error") while a flag
is set; everything else is the real code. InfluxDB is the in-memory
``FakeInflux`` of ``test_pipeline_backpressure``. Tests wait for conditions,
never for time.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.aggregate import StreamProcessor
from streams.buffer import DeliveryLog
from streams.clock import ManualClock
from streams.deadletter import DeadLetter, DeadLetterStore
from streams.errors import SinkError
from streams.influx import LineEncoder
from streams.metrics import PrometheusSensor
from streams.pipeline import Pipeline
from streams.record import Reading
from tests.unit.streams.test_pipeline_backpressure import INV, POINT, T0, FakeInflux, _pipeline, _reading, _stop, _until


class BrokenMeter:
    """A polled source whose poll raises (a bug, an unexpected library error) until ``fixed``."""

    def __init__(self) -> None:
        self.name = "broken-meter"
        self.interval = timedelta(minutes=1)
        self.polls = 0
        self.fixed = False

    async def poll(self) -> list[Reading]:
        self.polls += 1
        if not self.fixed:
            msg = "'NoneType' object has no attribute 'registers'"
            raise AttributeError(msg)
        return [Reading(POINT, T0 + timedelta(minutes=self.polls), 20.0, "degC")]


class FullDiskLetters(DeadLetterStore):
    """The real store, on a disk that is full while ``full`` is set."""

    full = True

    def _append(self, line: bytes) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        super()._append(line)


class FailingLog(DeliveryLog):
    """The real delivery log, whose appends fail as SQLite does on a full disk while ``failing`` is set."""

    failing = True

    def append(self, readings: list[Reading], lines: list[str] | None = None, *, force: bool = False) -> None:
        if self.failing:
            msg = "disk I/O error"
            raise sqlite3.OperationalError(msg)
        super().append(readings, lines, force=force)


class RefusingInflux(FakeInflux):
    """InfluxDB refusing the request itself (403 on CREATE DATABASE for a user without admin rights)."""

    refusing = True

    async def write(self, lines: list[str], *, raw: bool = False) -> None:
        if self.refusing:
            self.requests += 1
            msg = "InfluxDB refused 'CREATE DATABASE \"econome\"': 403 requires admin privilege"
            raise SinkError(msg)
        await super().write(lines, raw=raw)


def _errors(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.ERROR and text in r.getMessage()]


async def test_a_poll_that_raises_is_logged_once_counted_and_polling_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streams")
    clock = ManualClock(T0)
    sensor = PrometheusSensor()
    pipeline = _pipeline(tmp_path, FakeInflux(), max_rows=100, clock=clock, sensor=sensor)
    meter = BrokenMeter()
    task = asyncio.create_task(pipeline.run([meter], []))
    # Before the fix the first AttributeError reached the TaskGroup and ended the run.
    await _until(lambda: pipeline.stats.poll_errors >= 3, step=lambda: clock.advance(meter.interval))
    assert not task.done()
    failures = _errors(caplog, "broken-meter: poll failed")
    assert len(failures) == 1  # once per change of state, not once per poll
    assert "AttributeError" in failures[0].getMessage()
    assert b'econome_poll_errors_total{collector="broken-meter"}' in sensor.exposition()
    meter.fixed = True
    await _until(lambda: pipeline.stats.received > 0, step=lambda: clock.advance(meter.interval))
    await _stop(task)
    assert any("broken-meter: polls work again" in r.getMessage() for r in caplog.records)


async def test_a_full_disk_for_dead_letters_holds_the_batch_unacknowledged_then_stores_it_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streams")
    influx = FakeInflux()
    dead = FullDiskLetters(tmp_path / "dead-letters.jsonl")
    sensor = PrometheusSensor()
    pipeline = _pipeline(tmp_path, influx, max_rows=100, dead=dead, sensor=sensor)
    acked: list[str] = []
    task = asyncio.create_task(pipeline.run([], []))
    stale = Reading(POINT, datetime(1970, 1, 1, tzinfo=UTC), 20.0, "degC")  # dead-lettered at the edge
    pipeline.emit([stale, _reading(1)], lambda: acked.append("message"))
    await _until(lambda: pipeline.stats.disk_errors >= 3)
    # The pipeline lives; the message is neither acknowledged nor half stored.
    assert not task.done()
    assert acked == []
    assert pipeline.log.depth() == 0
    assert dead.count == 0
    assert b"econome_disk_ok 0.0" in sensor.exposition()
    assert len(_errors(caplog, "persist: cannot store")) == 1
    dead.full = False
    await _until(lambda: acked == ["message"] and influx.lines != [])
    await _stop(task)
    assert dead.count == 1  # stored once, though it was tried several times
    assert len((tmp_path / "dead-letters.jsonl").read_text().splitlines()) == 1
    assert len(influx.lines) == 1
    assert b"econome_disk_ok 1.0" in sensor.exposition()
    assert any("persist: disk writes work again" in r.getMessage() for r in caplog.records)


async def test_a_delivery_log_disk_error_is_retried_without_losing_or_acknowledging(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    influx = FakeInflux()
    log = FailingLog(tmp_path / "log.sqlite", max_rows=100)
    pipeline = Pipeline(
        INV,
        influx,
        ManualClock(T0),
        DeadLetterStore(),
        log,
        flush_interval=timedelta(milliseconds=1),
        retry_min=timedelta(milliseconds=1),
        retry_max=timedelta(milliseconds=4),
    )
    acked: list[int] = []
    task = asyncio.create_task(pipeline.run([], []))
    for i in range(5):
        pipeline.emit([_reading(i)], lambda i=i: acked.append(i))  # type: ignore[misc]
    await _until(lambda: pipeline.stats.disk_errors >= 3)
    assert not task.done()
    assert acked == []
    assert len(_errors(caplog, "persist: cannot store")) == 1
    log.failing = False
    await _until(lambda: len(influx.lines) == 5)
    await _stop(task)
    assert acked == list(range(5))


async def test_a_dead_letter_the_disk_refuses_at_the_sink_keeps_the_batch_until_it_is_stored(tmp_path: Path) -> None:
    influx = FakeInflux()
    dead = FullDiskLetters(tmp_path / "dead-letters.jsonl")
    pipeline = _pipeline(tmp_path, influx, max_rows=100, dead=dead)
    readings = [_reading(i) for i in range(10)]
    lines = [f"reading,point={POINT} value={r.value} {i}" for i, r in enumerate(readings)]
    lines[4] = f"reading,point={POINT} value=poison 4"
    pipeline.log.append(readings, lines)
    task = asyncio.create_task(pipeline.run([], []))
    await _until(lambda: pipeline.stats.disk_errors >= 3)
    assert not task.done()
    assert pipeline.log.depth() == 10  # not acknowledged: the refused line has nowhere to go yet
    dead.full = False
    await _until(lambda: pipeline.log.depth() == 0)
    await _stop(task)
    assert dead.count == 1
    assert [letter.payload for letter in dead.recent] == [lines[4]]


async def test_a_refused_request_keeps_the_readings_in_the_log_and_dead_letters_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    influx = RefusingInflux()
    dead = DeadLetterStore()
    pipeline = _pipeline(tmp_path, influx, max_rows=1000, dead=dead)
    task = asyncio.create_task(pipeline.run([], []))
    pipeline.emit([_reading(i) for i in range(100)], lambda: None)
    await _until(lambda: influx.requests >= 5)
    # Before the fix the whole batch was dead-lettered and acknowledged out of the log.
    assert dead.count == 0
    assert pipeline.log.depth() == 100
    assert len(_errors(caplog, "403")) == 1  # logged once, retried quietly
    influx.refusing = False
    await _until(lambda: pipeline.log.depth() == 0)
    await _stop(task)
    assert len(influx.lines) == 100
    assert dead.count == 0


def test_dead_letter_store_counts_a_letter_only_once_it_is_on_disk(tmp_path: Path) -> None:
    store = FullDiskLetters(tmp_path / "dl.jsonl")
    with pytest.raises(OSError, match="No space left"):
        store.add(DeadLetter.now("mqtt", "t", "x", "bad"))
    assert (store.count, store.by_source["mqtt"]) == (0, 0)
    store.full = False
    store.add(DeadLetter.now("mqtt", "t", "x", "bad"))
    assert (store.count, store.by_source["mqtt"]) == (1, 1)


_LINE = re.compile(r"^((?:[^ \\]|\\.)*) (.*) (\d+)$")


def _latest(lines: list[str]) -> dict[tuple[str, str], str]:
    """Aggregate lines as InfluxDB keeps them: the last write of a series at a time wins."""
    out = {}
    for line in lines:
        match = _LINE.match(line)
        assert match is not None, line
        if not match.group(1).startswith("reading,"):
            out[match.group(1), match.group(3)] = match.group(2)
    return out


async def test_stop_with_a_processor_backlog_is_bounded_and_a_restart_completes_it_exactly(tmp_path: Path) -> None:
    points = [p.id for _, p in INV.points() if not p.cumulative and p.quantity.value == "temperature"][:20]
    readings = [Reading(points[j % len(points)], T0 + timedelta(seconds=j), 20.0 + (j % 7) / 10, "degC") for j in range(60_000)]
    log = DeliveryLog(tmp_path / "log.sqlite", max_rows=1_000_000)
    encoder = LineEncoder(INV)
    log.append(readings, [encoder.encode(r) for r in readings])
    last_seq = log.readings_after(0, len(readings))[-1][0]
    influx = FakeInflux()
    influx.down = True
    stop = timedelta(milliseconds=20)
    pipeline = Pipeline(INV, influx, ManualClock(T0), DeadLetterStore(), log, processor=StreamProcessor(INV), stop_timeout=stop)
    task = asyncio.create_task(pipeline.run([], []))
    await asyncio.sleep(0)
    # Before the fix the processor applied the whole backlog on cancel, whatever the stop timeout.
    await _stop(task)
    snapshot = log.snapshot()
    assert snapshot is not None
    assert snapshot[0] == pipeline._processed_seq
    assert 0 < snapshot[0] < last_seq  # stopped within its budget; the rest stays in the log
    assert len(log.readings_after(snapshot[0], 1)) == 1
    log.close()

    influx.down = False
    log = DeliveryLog(tmp_path / "log.sqlite", max_rows=1_000_000)
    restarted = Pipeline(INV, influx, ManualClock(T0), DeadLetterStore(), log, processor=StreamProcessor(INV))
    task = asyncio.create_task(restarted.run([], []))
    for _ in range(20_000):  # a condition, not a time: the backlog takes what it takes
        if restarted._processed_seq == last_seq and log.depth() == 0:
            break
        await asyncio.sleep(0.001)
    assert restarted._processed_seq == last_seq
    assert log.depth() == 0
    await _stop(task)
    log.close()

    reference = StreamProcessor(INV)
    reference.process(readings)
    expected = [r.line() for r in reference.advance() + reference.flush()]
    assert _latest(influx.lines) == _latest(expected)


class GatedInflux(FakeInflux):
    """InfluxDB taking its time: each write waits for ``gate``; counts the writes waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = 0

    async def write(self, lines: list[str], *, raw: bool = False) -> None:
        self.waiting += 1
        try:
            await self.gate.wait()
        finally:
            self.waiting -= 1
        await super().write(lines, raw=raw)


async def test_a_stop_while_writes_are_in_flight_writes_every_batch_and_empties_the_log(tmp_path: Path) -> None:
    """A stop while the sink waited for its oldest write cancelled that write and forgot its batch.

    The next batch's acknowledgement then moved the cursor past it: its readings
    and aggregate lines left the log unwritten (issue 15's review: a stop while
    InfluxDB was behind lost up to a batch of aggregates, without a word).
    """
    influx = GatedInflux()
    pipeline = _pipeline(tmp_path, influx, max_rows=1000, batch_size=10, max_inflight=2)
    task = asyncio.create_task(pipeline.run([], []))
    pipeline.emit([_reading(i) for i in range(50)], None)
    await _until(lambda: influx.waiting == 2)  # two writes in flight, the sink waiting for the oldest
    task.cancel()
    asyncio.get_running_loop().call_later(0.05, influx.gate.set)  # InfluxDB catches up within the stop budget
    with contextlib.suppress(asyncio.CancelledError):
        await task
    stamps = sorted(int(line.rsplit(" ", 1)[1]) for line in influx.lines if line.startswith("reading"))
    assert stamps == [int((T0 + timedelta(seconds=i)).timestamp() * 1000) for i in range(50)]  # ms precision
    assert pipeline.log.depth() == 0
