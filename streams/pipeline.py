"""The in-process runner: collectors → bounded queue → InfluxDB sink.

Sources come in two shapes, kept apart on purpose:

* a :class:`PolledSource` (Modbus) exposes ``interval`` and ``async poll()``;
  the pipeline owns the schedule, with jitter on the first poll;
* a :class:`PushSource` (MQTT) exposes ``async start(emit)`` and ``async stop()``.

Every source runs as one named task under a ``TaskGroup``. Batches of readings
go through one bounded queue to the sink task, which encodes them as line
protocol and writes batches of up to ``batch_size`` points, retrying with
exponential backoff while InfluxDB is unreachable. Readings of points unknown to
the inventory and batches InfluxDB refuses for good go to the dead-letter store.

>>> PipelineStats().received
0
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from inventory import Inventory
from streams.clock import Clock
from streams.deadletter import DeadLetter, DeadLetterStore
from streams.errors import SinkError
from streams.influx import InfluxWriter, LineEncoder, RetryableSinkError, escape_tag, to_ms
from streams.metrics import Sensor
from streams.quality import QualityTracker
from streams.record import Reading

__all__ = ["Pipeline", "PipelineStats", "PolledSource", "PushSource"]

logger = logging.getLogger(__name__)

_STATUS = "\x00status"  # marks point-status lines in the pending buffer; not a point id


class PolledSource(Protocol):
    """A source the pipeline polls on a schedule."""

    @property
    def name(self) -> str:
        """Unique task name."""
        ...

    interval: timedelta

    async def poll(self) -> list[Reading]:
        """Read once; failures are handled inside and never raised."""
        ...


class PushSource(Protocol):
    """A source that pushes readings as they arrive."""

    @property
    def name(self) -> str:
        """Unique task name."""
        ...

    async def start(self, emit: Callable[[list[Reading]], None]) -> None:
        """Begin delivering readings to ``emit`` (on the event loop)."""
        ...

    async def stop(self) -> None:
        """Stop delivering and release resources."""
        ...


@dataclass
class PipelineStats:
    """Counters of what flowed."""

    received: int = 0
    dropped: int = 0
    written: int = 0
    rejected: int = 0
    write_errors: int = 0
    per_point: Counter[str] = field(default_factory=Counter)


class Pipeline:
    """Runs sources and the InfluxDB sink until cancelled.

    Args:
        inventory: the portfolio; its points give the line-protocol tags.
        writer: an InfluxDB writer (v1 or v2).
        clock: time source for polling schedules.
        dead_letters: where rejected input goes.
        queue_size: the most batches waiting for the sink.
        batch_size: the most points per write.
        flush_interval: the longest a point waits before being written
            (wall-clock time: it is about I/O, not about the data's time).
    """

    def __init__(
        self,
        inventory: Inventory,
        writer: InfluxWriter,
        clock: Clock,
        dead_letters: DeadLetterStore,
        *,
        queue_size: int = 10_000,
        batch_size: int = 5000,
        flush_interval: timedelta = timedelta(seconds=1),
        retry_min: timedelta = timedelta(milliseconds=500),
        retry_max: timedelta = timedelta(seconds=30),
        sensor: Sensor | None = None,
        quality: QualityTracker | None = None,
        status_every: timedelta = timedelta(minutes=5),
    ) -> None:
        self.inventory = inventory
        self.encoder = LineEncoder(inventory)
        self.quality = quality
        self.status_every = status_every
        self.writer = writer
        self.clock = clock
        self.dead_letters = dead_letters
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.sensor = sensor or Sensor()
        self.stats = PipelineStats()
        self.queue: asyncio.Queue[list[Reading]] = asyncio.Queue(maxsize=queue_size)
        self._pending: list[str] = []
        self._pending_points: list[str] = []

    def emit(self, readings: list[Reading]) -> None:
        """Queue readings without waiting (for push sources); counts a drop when full."""
        if not readings:
            return
        if self.quality is not None:
            readings = self.quality.observe_all(readings)
        try:
            self.queue.put_nowait(readings)
        except asyncio.QueueFull:
            self.stats.dropped += len(readings)
            self.sensor.on_drop(len(readings))
            logger.warning("queue full: dropped %s readings of %s", len(readings), readings[0].point_id)
            return
        self.stats.received += len(readings)
        self.sensor.on_readings(len(readings))

    async def put(self, readings: list[Reading]) -> None:
        """Queue readings, waiting while the queue is full (for polled sources)."""
        if readings:
            if self.quality is not None:
                readings = self.quality.observe_all(readings)
            await self.queue.put(readings)
            self.stats.received += len(readings)
            self.sensor.on_readings(len(readings))

    async def run(self, polled: Sequence[PolledSource], pushed: Sequence[PushSource]) -> None:
        """Run every source and the sink until cancelled; then flush and stop.

        Raises:
            ValueError: two sources share a name.
        """
        names = [s.name for s in polled] + [s.name for s in pushed]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            msg = f"duplicate source names: {duplicates}"
            raise ValueError(msg)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._sink_loop(), name="sink:influxdb")
                if self.quality is not None:
                    group.create_task(self._status_loop(self.quality), name="status:points")
                for source in pushed:
                    await source.start(self.emit)
                for polled_source in polled:
                    group.create_task(self._poll_loop(polled_source), name=polled_source.name)
        finally:
            for source in pushed:
                with contextlib.suppress(Exception):
                    await source.stop()

    async def _poll_loop(self, source: PolledSource) -> None:
        # A random first delay spreads meters over the interval (HA's stagger).
        await self.clock.sleep(source.interval * random.uniform(0, 1))  # noqa: S311 - jitter
        due = self.clock.now()
        while True:
            readings = await source.poll()
            await self.put(readings)
            due += source.interval
            now = self.clock.now()
            if due < now:
                # Overran: skip the missed slots rather than polling in a burst.
                missed = (now - due) // source.interval + 1
                due += source.interval * missed
            await self.clock.sleep(due - now)

    async def _status_loop(self, quality: QualityTracker) -> None:
        """Every ``status_every``, report missing points and write one status point per point."""
        while True:
            await self.clock.sleep(self.status_every)
            now = self.clock.now()
            missing = set(quality.check_missing(now))
            lines = []
            for building, point in self.inventory.points():
                state = quality.states[point.id]
                self.sensor.on_point_state(point.id, stale=state.stale, missing=point.id in missing)
                age = (now - state.last_ts).total_seconds() if state.last_ts else -1.0
                lines.append(
                    f"point_status,building={escape_tag(building.id)},point={escape_tag(point.id)} "
                    f"missing={int(point.id in missing)}i,stale={int(state.stale)}i,age_s={age} {to_ms(now)}"
                )
            # The sink flushes pending lines within one flush interval.
            self._pending.extend(lines)
            self._pending_points.extend([_STATUS] * len(lines))

    async def _sink_loop(self) -> None:
        try:
            while True:
                deadline = time.monotonic() + self.flush_interval.total_seconds()
                while len(self._pending) < self.batch_size:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        batch = await asyncio.wait_for(self.queue.get(), remaining)
                    except TimeoutError:
                        break
                    self._encode(batch)
                if self._pending:
                    await self._flush_with_retry()
        except asyncio.CancelledError:
            await self._drain()
            raise

    def _encode(self, batch: list[Reading]) -> None:
        for reading in batch:
            try:
                line = self.encoder.encode(reading)
            except KeyError:
                self._dead("pipeline", reading.point_id, repr(reading), "point not in the inventory")
                continue
            except ValueError as exc:
                self._dead("pipeline", reading.point_id, repr(reading), str(exc))
                continue
            self._pending.append(line)
            self._pending_points.append(reading.point_id)

    async def _flush_with_retry(self) -> None:
        delay = self.retry_min.total_seconds()
        while self._pending:
            chunk = self._pending[: self.batch_size]
            points = self._pending_points[: self.batch_size]
            started = time.perf_counter()
            try:
                await self.writer.write(chunk)
            except RetryableSinkError as exc:
                self.stats.write_errors += 1
                self.sensor.on_sink_error(exc)
                logger.warning("InfluxDB write failed, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay + random.uniform(0, delay / 4))  # noqa: S311 - backoff jitter
                delay = min(delay * 2, self.retry_max.total_seconds())
                continue
            except SinkError as exc:
                self.stats.write_errors += 1
                self.sensor.on_sink_error(exc)
                logger.error("InfluxDB refused %s points: %s", len(chunk), exc)
                for line, point in zip(chunk, points, strict=True):
                    self._dead("sink", point, line, str(exc))
            else:
                self.stats.written += len(chunk)
                self.stats.per_point.update(p for p in points if p != _STATUS)
                self.sensor.on_write(len(chunk), time.perf_counter() - started)
                delay = self.retry_min.total_seconds()
            del self._pending[: len(chunk)]
            del self._pending_points[: len(chunk)]

    async def _drain(self, timeout: float = 10.0) -> None:
        """On shutdown, write what is queued, for at most ``timeout`` seconds."""
        while not self.queue.empty():
            self._encode(self.queue.get_nowait())
        if self._pending:
            try:
                await asyncio.wait_for(self._flush_with_retry(), timeout)
            except TimeoutError:
                logger.error("shutdown: %s points could not be written to InfluxDB", len(self._pending))

    def _dead(self, source: str, key: str, payload: str, reason: str) -> None:
        self.stats.rejected += 1
        self.sensor.on_dead_letter(1)
        self.dead_letters.add(DeadLetter.now(source, key, payload, reason))
