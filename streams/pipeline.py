"""The in-process runner: collectors → delivery log → processor → InfluxDB.

Sources come in two shapes, kept apart on purpose:

* a :class:`PolledSource` (Modbus) exposes ``interval`` and ``async poll()``;
  the pipeline owns the schedule, with a random first delay (jitter);
* a :class:`PushSource` (MQTT) exposes ``async start(emit)`` and ``async stop()``;
  ``emit(readings, ack)`` takes an acknowledgement called once the readings
  are on disk.

Every source runs as one named task under a ``TaskGroup``, with three more:

1. ``persist``: validates each batch (rejects go to the dead-letter store with
   their reason), flags stale values, appends the batch to the
   :class:`~streams.buffer.DeliveryLog` and only then acknowledges it;
2. ``process``: feeds new readings of the log to the
   :class:`~streams.aggregate.StreamProcessor` and stores the aggregates it
   closes in the log's outbox, with a snapshot of its state from time to time;
3. ``sink``: writes raw readings and aggregates from the log to InfluxDB in
   batches, retrying with exponential backoff while InfluxDB is unreachable,
   and acknowledges them in the log once accepted.

After a crash the log holds everything: see :mod:`streams.buffer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from inventory import Inventory
from streams.aggregate import StreamProcessor
from streams.buffer import BufferFull, DeliveryLog, SinkBatch
from streams.clock import Clock
from streams.deadletter import DeadLetter, DeadLetterStore
from streams.errors import SinkError
from streams.influx import InfluxWriter, LineEncoder, RetryableSinkError, escape_tag, to_ms
from streams.metrics import Sensor
from streams.quality import QualityTracker
from streams.record import Reading
from streams.validate import EventTimeConfig, Validator

__all__ = ["Ack", "Forwarder", "Pipeline", "PipelineStats", "PolledSource", "PushSource"]

logger = logging.getLogger(__name__)

Ack = Callable[[], None]


class Forwarder(Protocol):
    """Sends readings on, durably: :meth:`send` returns once the receiver has them."""

    async def send(self, readings: list[Reading]) -> None:
        """Send a batch (raises on failure; it is sent again)."""
        ...


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

    async def start(self, emit: Callable[[list[Reading], Ack | None], None]) -> None:
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
    rejected: int = 0
    written: int = 0
    aggregates: int = 0
    late: int = 0
    write_errors: int = 0
    per_point: Counter[str] = field(default_factory=Counter)


class Pipeline:
    """Runs sources, the delivery log, the processor and the InfluxDB sink until cancelled.

    Args:
        inventory: the portfolio.
        writer: an InfluxDB writer (v1 or v2).
        clock: time source for polling schedules and point status.
        dead_letters: where rejected input goes.
        log: the delivery log.
        processor: the aggregator; None writes raw readings only.
        forwarder: sends every reading on (to Kafka, where the faust runner aggregates).
        queue_size: the most batches waiting to be persisted.
        batch_size: the most points per write.
        flush_interval: the longest a point waits before being written (wall clock).
        snapshot_every: how often the processor's state is saved (wall clock).
        max_inflight: writes to InfluxDB in flight at once (acknowledged in order).
        sensor: metrics hooks.
        quality: stale and missing point tracking.
        status_every: how often point status is written (clock time).
        event_time: the window of event times accepted from sources (by ``clock``).
    """

    def __init__(
        self,
        inventory: Inventory,
        writer: InfluxWriter,
        clock: Clock,
        dead_letters: DeadLetterStore,
        log: DeliveryLog,
        *,
        processor: StreamProcessor | None = None,
        forwarder: Forwarder | None = None,
        queue_size: int = 10_000,
        batch_size: int = 5000,
        flush_interval: timedelta = timedelta(seconds=1),
        retry_min: timedelta = timedelta(milliseconds=500),
        retry_max: timedelta = timedelta(seconds=30),
        snapshot_every: timedelta = timedelta(seconds=30),
        max_inflight: int = 2,
        sensor: Sensor | None = None,
        quality: QualityTracker | None = None,
        status_every: timedelta = timedelta(minutes=5),
        event_time: EventTimeConfig | None = None,
    ) -> None:
        self.inventory = inventory
        self.encoder = LineEncoder(inventory)
        self.validator = Validator.for_inventory(inventory, clock, event_time)
        self.writer = writer
        self.clock = clock
        self.dead_letters = dead_letters
        self.log = log
        self.processor = processor
        self.forwarder = forwarder
        if processor is not None:
            log.readers.add("processor")
        if forwarder is not None:
            log.readers.add("forward")
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.snapshot_every = snapshot_every
        self.max_inflight = max_inflight
        self.sensor = sensor or Sensor()
        self.quality = quality
        self.status_every = status_every
        self.stats = PipelineStats()
        self.queue: asyncio.Queue[tuple[list[Reading], Ack | None]] = asyncio.Queue(maxsize=queue_size)
        self._logged = asyncio.Event()
        self._outboxed = asyncio.Event()
        self._points = {point.id: point for _, point in inventory.points()}
        self._processed_seq = 0
        self._last_snapshot = 0.0
        # Shutdown runs in order: persist what is queued, process it, then flush to InfluxDB.
        self._persisted_final = asyncio.Event()
        self._processed_final = asyncio.Event()

    # -- entry points for sources -------------------------------------------------------

    def emit(self, readings: list[Reading], ack: Ack | None = None) -> None:
        """Queue readings without waiting (push sources); counts a drop when full (nothing is acked)."""
        if not readings:
            if ack is not None:
                ack()
            return
        try:
            self.queue.put_nowait((readings, ack))
        except asyncio.QueueFull:
            self.stats.dropped += len(readings)
            self.sensor.on_drop(len(readings))
            logger.warning("queue full: %s readings of %s not acknowledged", len(readings), readings[0].point_id)
            return
        self.stats.received += len(readings)
        self.sensor.on_readings(len(readings))

    async def put(self, readings: list[Reading]) -> None:
        """Queue readings, waiting while the queue is full (polled sources)."""
        if readings:
            await self.queue.put((readings, None))
            self.stats.received += len(readings)
            self.sensor.on_readings(len(readings))

    # -- running ----------------------------------------------------------------------

    async def run(self, polled: Sequence[PolledSource], pushed: Sequence[PushSource]) -> None:
        """Run everything until cancelled; then persist, process and flush what is queued.

        Raises:
            ValueError: two sources share a name.
        """
        names = [s.name for s in polled] + [s.name for s in pushed]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            msg = f"duplicate source names: {duplicates}"
            raise ValueError(msg)
        self._restore()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._persist_loop(), name="persist")
                group.create_task(self._sink_loop(), name="sink:influxdb")
                if self.processor is not None:
                    group.create_task(self._process_loop(self.processor), name="process")
                if self.forwarder is not None:
                    group.create_task(self._forward_loop(self.forwarder), name="forward")
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

    def _restore(self) -> None:
        if self.processor is None:
            return
        saved = self.log.snapshot()
        if saved is not None:
            seq, state = saved
            self.processor.load(state)
            self._processed_seq = seq
            logger.info("processor state restored at log sequence %s", seq)

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

    # -- persist ----------------------------------------------------------------------

    async def _persist_loop(self) -> None:
        try:
            while True:
                batch, ack = await self.queue.get()
                await self._persist(batch, ack)
        except asyncio.CancelledError:
            while not self.queue.empty():
                batch, ack = self.queue.get_nowait()
                with contextlib.suppress(BufferFull):
                    await self._persist(batch, ack)
            self._persisted_final.set()
            raise

    async def _persist(self, batch: list[Reading], ack: Ack | None) -> None:
        good = []
        for reading in batch:
            point = self._points.get(reading.point_id)
            if point is None:
                self._dead("pipeline", reading.point_id, repr(reading), "point not in the inventory")
                continue
            checked, reason = self.validator.check(reading, point.quantity, point.unit)
            if reason is not None:
                self._dead("pipeline", reading.point_id, repr(reading), reason)
                continue
            good.append(checked)
        if self.quality is not None:
            good = self.quality.observe_all(good)
        lines = [self.encoder.encode(reading) for reading in good]
        while True:
            try:
                self.log.append(good, lines)
                break
            except BufferFull as exc:
                # Back-pressure: wait for InfluxDB to drain the log; MQTT stays unacked meanwhile.
                logger.warning("%s; waiting", exc)
                await asyncio.sleep(1.0)
        if ack is not None:
            ack()
        self._logged.set()

    # -- process ----------------------------------------------------------------------

    async def _process_loop(self, processor: StreamProcessor) -> None:
        try:
            while True:
                await self._logged.wait()
                self._logged.clear()
                while self._process_some(processor):
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            await self._wait_final(self._persisted_final)
            while self._process_some(processor):
                pass
            # Open windows are written as they stand; after a restart the restored
            # state completes them and they are written again, whole.
            records = processor.flush()
            self.log.add_outbox([r.line() for r in records], self._processed_seq, processor.to_dict())
            self.stats.aggregates += len(records)
            self._processed_final.set()
            raise

    def _process_some(self, processor: StreamProcessor) -> bool:
        rows = self.log.readings_after(self._processed_seq, self.batch_size)
        if not rows:
            return False
        result = processor.process(reading for _, reading in rows)
        for reading, reason in result.rejected:
            self._dead("processor", reading.point_id, repr(reading), reason)
        for reading in result.too_late:
            # Written raw, but its window was closed and dropped: say so rather than lose it quietly.
            self._dead("aggregation", reading.point_id, repr(reading), "too late to aggregate: window past its retention")
        self.stats.late += len(result.late)
        records = processor.advance()
        self._processed_seq = rows[-1][0]
        state = self._snapshot_state(processor)
        self.log.add_outbox([r.line() for r in records], self._processed_seq, state)
        self.stats.aggregates += len(records)
        if records:
            self._outboxed.set()
        return len(rows) == self.batch_size

    def _snapshot_state(self, processor: StreamProcessor) -> dict[str, object] | None:
        now = time.monotonic()
        if now - self._last_snapshot < self.snapshot_every.total_seconds():
            return None
        self._last_snapshot = now
        return processor.to_dict()

    # -- forward ----------------------------------------------------------------------

    async def _forward_loop(self, forwarder: Forwarder) -> None:
        seq = self.log.cursor("forward")
        delay = self.retry_min.total_seconds()
        while True:
            rows = self.log.readings_after(seq, self.batch_size)
            if not rows:
                await asyncio.sleep(self.flush_interval.total_seconds())
                continue
            try:
                await forwarder.send([reading for _, reading in rows])
            except SinkError as exc:
                logger.warning("forwarding %s readings failed, retrying in %.1fs: %s", len(rows), delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max.total_seconds())
                continue
            delay = self.retry_min.total_seconds()
            seq = rows[-1][0]
            self.log.set_cursor("forward", seq)

    # -- point status -----------------------------------------------------------------

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
            self.log.add_outbox(lines, self._processed_seq)
            self._outboxed.set()

    # -- sink -------------------------------------------------------------------------

    async def _sink_loop(self) -> None:
        # Up to ``max_inflight`` writes in flight while the next batch is read: InfluxDB
        # parses on one core while we prepare on the other. Batches are acknowledged in
        # log order, each once its own write and every earlier one have succeeded.
        inflight: deque[tuple[asyncio.Task[None], SinkBatch]] = deque()
        try:
            while True:
                batch = self.log.next_batch(self.batch_size, after=inflight[-1][1] if inflight else None)
                if len(batch) < self.batch_size and not inflight:
                    # Give a partial batch up to flush_interval to fill.
                    await self._wait_for_rows()
                    batch = self.log.next_batch(self.batch_size)
                if len(batch) == 0:
                    while inflight:
                        await self._settle(inflight.popleft())
                    continue
                raw, long_term = self._lines(batch)
                if len(inflight) >= self.max_inflight:
                    await self._settle(inflight.popleft())
                inflight.append((asyncio.create_task(self._write_with_retry(batch, raw, long_term), name="sink:write"), batch))
        except asyncio.CancelledError:
            while inflight:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._settle(inflight.popleft())
            await self._drain()
            raise

    async def _settle(self, item: tuple[asyncio.Task[None], SinkBatch]) -> None:
        task, batch = item
        await task
        self.log.ack(batch)

    async def _wait_for_rows(self) -> None:
        self._logged.clear()
        self._outboxed.clear()
        waiters = [asyncio.ensure_future(self._logged.wait()), asyncio.ensure_future(self._outboxed.wait())]
        try:
            await asyncio.wait(waiters, timeout=self.flush_interval.total_seconds(), return_when=asyncio.FIRST_COMPLETED)
            await asyncio.sleep(min(0.05, self.flush_interval.total_seconds()))
        finally:
            for waiter in waiters:
                waiter.cancel()
        # The processor waits on _logged too: keep it woken.
        self._logged.set()

    @staticmethod
    def _lines(batch: SinkBatch) -> tuple[list[str], list[str]]:
        """Raw lines (readings, point status) and long-term lines (aggregates)."""
        raw = [line for _, _, line in batch.readings]
        long_term: list[str] = []
        for _, line in batch.lines:
            (raw if line.startswith("point_status,") else long_term).append(line)
        return raw, long_term

    async def _write_with_retry(self, batch: SinkBatch, raw: list[str], long_term: list[str]) -> None:
        count = len(raw) + len(long_term)
        delay = self.retry_min.total_seconds()
        while True:
            started = time.perf_counter()
            try:
                # Both writes are idempotent: after a failure of the second, both are retried.
                await self.writer.write(raw, raw=True)
                await self.writer.write(long_term)
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
                logger.error("InfluxDB refused %s points: %s", count, exc)
                for line in raw + long_term:
                    self._dead("sink", line.split(" ", 1)[0], line, str(exc))
            else:
                self.stats.written += count
                self.stats.per_point.update(point for _, point, _ in batch.readings)
                self.sensor.on_write(count, time.perf_counter() - started)
            return

    async def _drain(self, timeout: float = 10.0) -> None:
        """On shutdown, write what the log holds, for at most ``timeout`` seconds."""

        async def flush_all() -> None:
            while True:
                batch = self.log.next_batch(self.batch_size)
                if len(batch) == 0:
                    return
                await self._write_with_retry(batch, *self._lines(batch))
                self.log.ack(batch)

        await self._wait_final(self._processed_final if self.processor is not None else self._persisted_final)
        try:
            await asyncio.wait_for(flush_all(), timeout)
        except TimeoutError:
            logger.error("shutdown: %s rows stay in the delivery log for the next start", self.log.depth())

    @staticmethod
    async def _wait_final(event: asyncio.Event, timeout: float = 5.0) -> None:
        """Wait for an earlier step's shutdown (bounded: a stuck step must not hang the exit)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    def _dead(self, source: str, key: str, payload: str, reason: str) -> None:
        self.stats.rejected += 1
        self.sensor.on_dead_letter(1)
        self.dead_letters.add(DeadLetter.now(source, key, payload, reason))
