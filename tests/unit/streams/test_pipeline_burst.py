"""A burst of input through the in-process pipeline (issue 15: 3,000 buildings polled on the minute).

InfluxDB is the in-memory fake of test_pipeline_backpressure, kept down so that
the delivery log only grows: what is on disk when a message is acknowledged is
read through a second, read-only connection (:meth:`DeliveryLog.inspect`).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from pathlib import Path

from streams.aggregate import StreamProcessor
from streams.buffer import DeliveryLog
from streams.clock import ManualClock
from streams.deadletter import DeadLetterStore
from streams.pipeline import Pipeline
from tests.unit.streams.test_pipeline_backpressure import INV, T0, FakeInflux, _pipeline, _reading, _until

# Readings from T0 on, read an hour later; a stop does not wait for the fake InfluxDB, down.
_KW = {"clock": ManualClock(T0 + timedelta(hours=1)), "stop_timeout": timedelta(milliseconds=100)}


def _message(pipeline: Pipeline, log_path: Path, first: int, size: int, seen: list[tuple[int, int]]) -> None:
    """Emit readings ``first``..``first + size - 1`` as one message; its ack records (its last reading, rows on disk)."""
    last = first + size

    def ack() -> None:
        seen.append((last, DeliveryLog.inspect(log_path).readings))

    pipeline.emit([_reading(i) for i in range(first, last)], ack)


async def test_queued_messages_are_stored_in_one_transaction_and_each_acknowledged_once_on_disk(tmp_path: Path) -> None:
    influx = FakeInflux()
    influx.down = True  # nothing leaves the log: its row count is what was stored
    dead = DeadLetterStore()
    pipeline = _pipeline(tmp_path, influx, max_rows=100_000, dead=dead, **_KW)
    path = pipeline.log.path
    seen: list[tuple[int, int]] = []
    for m in range(200):  # queued before the persist step runs, as in a burst
        _message(pipeline, path, 5 * m, 5, seen)
    task = asyncio.create_task(pipeline.run([], []))
    try:
        await _until(lambda: len(seen) == 200)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # Each message acknowledged once, in order, with its readings already on disk...
    assert [last for last, _ in seen] == [5 * (m + 1) for m in range(200)]
    assert all(on_disk >= last for last, on_disk in seen)
    # ... and the 200 stored in a few transactions (one each before: 200 commits).
    assert len({on_disk for _, on_disk in seen}) <= 2
    assert DeliveryLog.inspect(path).readings == 1000
    assert dead.count == 0


async def test_messages_and_polls_are_not_stored_in_one_transaction(tmp_path: Path) -> None:
    # A stop with the log full keeps a message at the broker and forces a poll in: a group is one or the other.
    influx = FakeInflux()
    influx.down = True
    pipeline = _pipeline(tmp_path, influx, max_rows=100_000, **_KW)
    path = pipeline.log.path
    seen: list[tuple[int, int]] = []
    for m in range(3):
        _message(pipeline, path, 5 * m, 5, seen)
    await pipeline.put([_reading(i) for i in range(15, 25)])  # a poll: no acknowledgement
    for m in range(3):
        _message(pipeline, path, 25 + 5 * m, 5, seen)
    task = asyncio.create_task(pipeline.run([], []))
    try:
        await _until(lambda: len(seen) == 6)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [on_disk for _, on_disk in seen] == [15, 15, 15, 40, 40, 40]


class GatedInflux(FakeInflux):
    """The fake InfluxDB, answering only once ``gate`` is open (a slow server during a burst)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def write(self, lines: list[str], *, raw: bool = False) -> None:
        await self.gate.wait()
        await super().write(lines, raw=raw)


async def test_the_processor_waits_for_the_sink_while_raw_readings_wait_for_influxdb(tmp_path: Path) -> None:
    influx = GatedInflux()
    log = DeliveryLog(tmp_path / "log.sqlite", max_rows=100_000)
    pipeline = Pipeline(
        INV, influx, _KW["clock"], DeadLetterStore(), log, processor=StreamProcessor(INV), batch_size=10,
        flush_interval=timedelta(seconds=30), stop_timeout=timedelta(milliseconds=100),
    )  # fmt: skip
    task = asyncio.create_task(pipeline.run([], []))
    try:
        for m in range(3):
            pipeline.emit([_reading(i) for i in range(10 * m, 10 * m + 10)])
        await _until(lambda: log.depth() == 30)
        for _ in range(50):  # the loop turns; InfluxDB has answered nothing
            await asyncio.sleep(0.002)
        assert log.cursor("processor") == 0  # before: the 30 readings processed at once
        influx.gate.set()
        await _until(lambda: log.cursor("processor") == 30 and len([x for x in influx.lines if x.startswith("reading,")]) == 30)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_snapshot_waits_for_input_to_be_quiet(tmp_path: Path) -> None:
    # Issue 15: taken when the processor had caught up, it fell at the start of each burst, just after the first polls.
    influx = FakeInflux()
    log = DeliveryLog(tmp_path / "log.sqlite", max_rows=100_000)
    pipeline = Pipeline(
        INV, influx, _KW["clock"], DeadLetterStore(), log, processor=StreamProcessor(INV),
        flush_interval=timedelta(milliseconds=5), snapshot_every=timedelta(seconds=1), stop_timeout=timedelta(milliseconds=100),
    )  # fmt: skip
    task = asyncio.create_task(pipeline.run([], []))
    try:
        pipeline.emit([_reading(0)])
        await _until(lambda: log.snapshot() is not None)  # the first one is due at once
        first = log.snapshot()
        loop = asyncio.get_running_loop()
        end = loop.time() + 1.6  # past the period (1 s), short of four (when it is taken anyway)
        i = 1
        while loop.time() < end:  # input every 50 ms, each processed and written at once
            pipeline.emit([_reading(i)])
            i += 1
            await asyncio.sleep(0.05)
        assert log.snapshot() == first
        last = log.readings_after(0, 1000)[-1][0]
        for _ in range(300):  # quiet: within about a second, a snapshot of everything
            saved = log.snapshot()
            if saved is not None and saved[0] == last:
                break
            await asyncio.sleep(0.01)
        saved = log.snapshot()
        assert saved is not None
        assert saved[0] == last
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
