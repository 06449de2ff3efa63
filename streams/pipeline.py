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
   when the log is full it *holds* the batch, unacknowledged, until there is
   room (see "Backpressure" below);
2. ``process``: feeds new readings of the log to the
   :class:`~streams.aggregate.StreamProcessor` and stores the aggregates it
   closes in the log's outbox, with a snapshot of its state from time to time
   (when input has been quiet for a second and the sink has caught up, or once
   four periods late); while a batch or more waits for InfluxDB it waits for
   the sink's next write before each batch (at most ``flush_interval``), so
   raw readings go first during a burst; a held counter reading judged by the next one (a glitch dropped, a reset,
   a re-base, a jump) is counted (:meth:`Sensor.on_counter_judgement`) and
   logged, WARNING at most once an hour per point and verdict (jitter at DEBUG);
3. ``sink``: writes raw readings and aggregates from the log to InfluxDB in
   batches, retrying with exponential backoff while InfluxDB is unreachable,
   and acknowledges them in the log once accepted. When InfluxDB refuses a
   batch (400, a partial write), the batch is bisected: only the lines InfluxDB
   refuses are dead-lettered, with its reason; the rest are written.
   InfluxDB going down is logged once (ERROR), its return once (INFO).

With a :class:`Forwarder` (``econome run --runner faust``), a ``forward`` task
also sends the log's readings on, in log order, with their sequence numbers
and the log's identity, and moves the log's ``forward`` cursor once the
receiver has them. It connects first; while the receiver is unreachable (at
start too) the readings wait in the log, ERROR is logged once and INFO once
it forwards again.

After a crash the log holds everything: see :mod:`streams.buffer`.

Backpressure (issue 10): nothing emitted is ever dropped. When the delivery
log is full (``max_rows``), the batch being persisted and those behind it wait,
unacknowledged: an MQTT broker keeps the messages (it sends a client only a
bounded number of unacknowledged messages, Mosquitto's
``max_inflight_messages``), and polled sources skip their polls, counted. The
log's state (``normal`` → ``full`` → ``draining`` → ``normal``) is logged once
per transition and exposed through :meth:`Sensor.on_log_state`. It leaves
``full`` once the log is below 90 % of its bound, and ``draining`` below 50 %.

Stopping (cancellation, e.g. SIGTERM) always ends within ``stop_timeout``
(10 s by default), even while the log is full and InfluxDB is down: a poll in
progress completes and its readings are persisted, held MQTT messages that
still find no room stay unacknowledged at the broker, and what the log holds
stays there for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from typing import Protocol
from urllib.parse import urlsplit

from inventory import Inventory
from streams.aggregate import StreamProcessor
from streams.buffer import BufferFull, DeliveryLog, SinkBatch
from streams.clock import Clock
from streams.counters import Judgement, Verdict
from streams.deadletter import DeadLetter, DeadLetterStore
from streams.errors import SinkError
from streams.influx import InfluxWriter, LineEncoder, escape_tag, to_ms, write_splitting
from streams.metrics import Sensor
from streams.quality import QualityTracker
from streams.record import Reading
from streams.validate import EventTimeConfig, Validator

__all__ = ["Ack", "Forwarder", "LogState", "Pipeline", "PipelineStats", "PolledSource", "PushSource"]

logger = logging.getLogger(__name__)

Ack = Callable[[], None]

# What a full disk, a read-only volume or a broken SQLite file raise: retried, never fatal.
_DISK_ERRORS = (OSError, sqlite3.Error)

# A counter's judged readings (glitches, re-bases...) are logged at WARNING at most this often per point and verdict.
_COUNTER_WARN_EVERY_S = 3600.0

# Hysteresis of the backpressure states, as fractions of the log's bound.
_RESUME = 0.9
_NORMAL = 0.5

# Input quiet this long (and the sink caught up): a moment for the processor's snapshot (issue 15).
_QUIET_S = 1.0


class LogState(str, Enum):
    """The delivery log's state, as backpressure sees it."""

    NORMAL = "normal"
    FULL = "full"
    """Input is held: MQTT acknowledgements withheld, polls skipped."""
    DRAINING = "draining"
    """Input is accepted again; the log is still above half its bound."""


class Forwarder(Protocol):
    """Sends readings on, durably: :meth:`send` returns once the receiver has them."""

    async def start(self) -> None:
        """Connect; nothing once connected (raises :class:`SinkError` while the receiver is unreachable)."""
        ...

    async def send(self, readings: list[Reading], *, seqs: Sequence[int] | None = None, log_id: str | None = None) -> None:
        """Send a batch (raises :class:`SinkError` on failure; it is sent again).

        ``seqs`` are the readings' sequence numbers in the delivery log ``log_id``:
        a batch sent again carries the same ones, so the receiver can apply each reading once.
        """
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
    """Counters of what flowed.

    Nothing is dropped: a full log holds input instead (``held``, ``polls_skipped``).
    ``poll_errors`` counts polls that raised; ``disk_errors`` failed writes to the
    delivery log or the dead-letter store (retried); ``lost`` what could be kept nowhere.
    """

    received: int = 0
    held: int = 0
    polls_skipped: int = 0
    refused: int = 0
    rejected: int = 0
    written: int = 0
    aggregates: int = 0
    late: int = 0
    write_errors: int = 0
    poll_errors: int = 0
    disk_errors: int = 0
    lost: int = 0
    """Readings or dead letters that could not be kept anywhere (disk errors at a stop, processor rejects)."""
    per_point: Counter[str] = field(default_factory=Counter)
    counter_judgements: Counter[str] = field(default_factory=Counter)
    """Counter readings held then judged, per verdict (``glitch``, ``jitter``, ``jump``, ``reset``, ``rebase``)."""


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
        queue_size: the most batches waiting to be persisted before :meth:`put` waits
            (:meth:`emit` never waits nor drops: push sources are bounded by their broker).
        batch_size: the most points per write.
        flush_interval: the longest a point waits before being written (wall clock).
        snapshot_every: how often the processor's state is saved (wall clock).
        max_inflight: writes to InfluxDB in flight at once (acknowledged in order).
        sensor: metrics hooks.
        quality: stale and missing point tracking.
        status_every: how often point status is written (clock time).
        stop_timeout: the longest a stop takes (wall clock), InfluxDB down or not.
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
        stop_timeout: timedelta = timedelta(seconds=10),
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
        self.queue_size = queue_size
        self.stop_timeout = stop_timeout
        self.state = LogState.NORMAL
        # Batches waiting to be persisted, oldest first; never dropped.
        self._pending: deque[tuple[list[Reading], Ack | None]] = deque()
        self._wakeup = asyncio.Event()
        self._space = asyncio.Event()
        self._acked = asyncio.Event()
        # The prepared batch the persist step holds while the log is full.
        self._holding: tuple[list[Reading], list[str], list[DeadLetter], list[Ack]] | None = None
        self._polls: set[asyncio.Task[list[Reading]]] = set()
        self._stop_at: float | None = None
        self._influx_up: bool | None = None
        self._influx_failures = 0
        self._forward_failures = 0
        self._logged = asyncio.Event()
        self._outboxed = asyncio.Event()
        self._points = {point.id: point for _, point in inventory.points()}
        self._processed_seq = 0
        self._last_snapshot = 0.0
        self._snapshot_seq = -1  # the log sequence number the last snapshot covers
        self._last_input = 0.0  # loop time of the last batch queued
        self._snapshot_cost = 0.0  # seconds the last processor.to_dict() took
        self._counter_warned: dict[tuple[str, Verdict], float] = {}  # monotonic time of the last WARNING
        # Aggregates, cursor and snapshot the processor could not store yet (a disk error).
        self._unsaved: tuple[list[str], int, dict[str, object] | None] | None = None
        self._failing_polls: set[str] = set()
        # Per step (persist, process, sink...), whether its last disk write failed.
        self._disk_failing: dict[str, int] = {}
        # Shutdown runs in order: persist what is queued, process it, then flush to InfluxDB.
        self._persisted_final = asyncio.Event()
        self._processed_final = asyncio.Event()

    # -- entry points for sources -------------------------------------------------------

    def emit(self, readings: list[Reading], ack: Ack | None = None) -> None:
        """Queue readings without waiting (push sources); ``ack`` is called once they are on disk.

        Nothing is dropped: while the delivery log is full the readings wait,
        unacknowledged, and the broker holds back what follows.
        """
        if not readings:
            if ack is not None:
                ack()
            return
        self._enqueue(readings, ack)

    async def put(self, readings: list[Reading]) -> None:
        """Queue readings, waiting while ``queue_size`` batches are waiting already."""
        if readings:
            self._enqueue(readings, None)
            while len(self._pending) > self.queue_size:
                self._space.clear()
                await self._space.wait()

    def _enqueue(self, readings: list[Reading], ack: Ack | None) -> None:
        self._pending.append((readings, ack))
        self._last_input = asyncio.get_running_loop().time()
        self._wakeup.set()
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
        # The processor looks at the log at once: after a restart it may hold a backlog.
        self._logged.set()
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
            if self.state is LogState.FULL:
                # Backpressure: a reading not taken is better than one taken and lost.
                self.stats.polls_skipped += 1
                self.sensor.on_poll_skipped(source.name)
                logger.debug("%s: poll skipped, the delivery log is full", source.name)
            else:
                await self._poll_once(source)
            due += source.interval
            now = self.clock.now()
            if due < now:
                # Overran: skip the missed slots rather than polling in a burst.
                missed = (now - due) // source.interval + 1
                due += source.interval * missed
            await self.clock.sleep(due - now)

    async def _poll_once(self, source: PolledSource) -> None:
        """Poll in a task of its own, so that a stop lets it finish and persists its readings."""
        task = asyncio.create_task(source.poll(), name=f"{source.name}:poll")
        self._polls.add(task)
        # Registered first, so the readings are queued before anyone waiting on the task wakes.
        task.add_done_callback(self._poll_done)
        # A poll that raises is logged and counted by _poll_done; the schedule goes on
        # (issue 10, review finding 1: it used to reach the TaskGroup and stop everything).
        with contextlib.suppress(Exception):
            await asyncio.shield(task)

    def _poll_done(self, task: asyncio.Task[list[Reading]]) -> None:
        self._polls.discard(task)
        if task.cancelled():
            return
        name = task.get_name().removesuffix(":poll")
        exc = task.exception()
        if exc is not None:
            self.stats.poll_errors += 1
            self.sensor.on_poll_error(name)
            if name in self._failing_polls:
                logger.debug("%s: poll failed again: %r", name, exc)
            else:
                self._failing_polls.add(name)
                logger.error("%s: poll failed: %r; polling goes on", name, exc, exc_info=exc)
            return
        if name in self._failing_polls:
            self._failing_polls.discard(name)
            logger.info("%s: polls work again", name)
        readings = task.result()
        if readings:
            self._enqueue(readings, None)

    # -- persist ----------------------------------------------------------------------

    async def _persist_loop(self) -> None:
        try:
            while True:
                while not self._pending:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                batch, acks = self._take()
                self._space.set()
                good, lines, rejects = self._prepare(batch)
                self._holding = (good, lines, rejects, acks)
                await self._store(good, lines, rejects, acks)
                self._holding = None
                # A turn of the loop per group: a burst queues hundreds of batches, and the sink's
                # writes in flight advance only between turns (issue 15: none went out during a burst).
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            await self._persist_final()
            raise

    def _take(self) -> tuple[list[Reading], list[Ack]]:
        """The next queued batch, with the batches of the same kind queued behind it, up to ``batch_size`` readings.

        (And up to a tenth of the log's bound.)

        Stored in one transaction: a burst of 3,000 polls of 50 readings was 3,000
        SQLite commits, a fifth of the persist step's time (issue 15). Acknowledged
        messages and polls are not mixed, so a group is held or kept as its batches
        were (a stop with the log full keeps messages at the broker and forces polls in).

        Returns:
            The readings, and the acknowledgements of the messages they come from (none for polls).
        """
        batch, ack = self._pending.popleft()
        acks = [] if ack is None else [ack]
        # A tenth of the log's bound at most: a group must not wait for a nearly empty log.
        most = min(self.batch_size, self.log.max_rows // 10)
        while self._pending and (self._pending[0][1] is None) == (ack is None):
            if len(batch) + len(self._pending[0][0]) > most:
                break
            more, more_ack = self._pending.popleft()
            batch = [*batch, *more]
            if more_ack is not None:
                acks.append(more_ack)
        return batch, acks

    def _prepare(self, batch: list[Reading]) -> tuple[list[Reading], list[str], list[DeadLetter]]:
        """Validate, flag quality and encode a batch; the rejects are returned as dead letters to store."""
        good = []
        rejects = []
        for reading in batch:
            point = self._points.get(reading.point_id)
            if point is None:
                rejects.append(DeadLetter.now("pipeline", reading.point_id, repr(reading), "point not in the inventory"))
                continue
            checked, reason = self.validator.check(reading, point.quantity, point.unit)
            if reason is not None:
                rejects.append(DeadLetter.now("pipeline", reading.point_id, repr(reading), reason))
                continue
            good.append(checked)
        if self.quality is not None:
            good = self.quality.observe_all(good)
        return good, [self.encoder.encode(reading) for reading in good], rejects

    async def _store(self, good: list[Reading], lines: list[str], rejects: list[DeadLetter], acks: list[Ack]) -> None:
        """Store the rejects and append to the log, holding the batch (unacknowledged) while either fails.

        The log full: the batch waits for room. A disk error (full disk, read-only
        volume, SQLite I/O error) on the dead-letter store or the log: the batch is
        retried with backoff, unacknowledged; MQTT keeps it at the broker.
        """
        delay = self.retry_min.total_seconds()
        while True:
            try:
                while rejects:
                    self._store_letter(rejects[0])
                    rejects.pop(0)  # stored: a retry must not store it twice
                self.log.append(good, lines)
                break
            except BufferFull:
                self._set_state(LogState.FULL)
                self.stats.held = len(good) + sum(len(batch) for batch, _ in self._pending)
                self.sensor.on_readings_held(self.stats.held)
                await self._wait_for_room(len(good))
            except _DISK_ERRORS as exc:
                self._disk_failed("persist", f"cannot store {len(good)} readings and {len(rejects)} dead letters", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max.total_seconds())
        self._disk_ok("persist")
        if self.state is LogState.FULL:
            self.stats.held = 0
            self.sensor.on_readings_held(0)
            self._set_state(LogState.DRAINING)
        self._check_drained()
        for ack in acks:
            ack()
        self._logged.set()

    def _has_room(self, count: int) -> bool:
        depth = self.log.depth()
        return depth == 0 or (depth + count <= self.log.max_rows and depth <= _RESUME * self.log.max_rows)

    async def _wait_for_room(self, count: int) -> None:
        """Wait for the sink to acknowledge rows until ``count`` more fit (and the log is under 90 %)."""
        while True:
            self._acked.clear()
            if self._has_room(count):
                return
            # Woken by every acknowledgement; the timeout is only a safety net.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acked.wait(), 1.0)

    def _set_state(self, state: LogState) -> None:
        if state is self.state:
            return
        previous, self.state = self.state, state
        depth = self.log.depth()
        self.sensor.on_log_state(state.value, depth)
        if state is LogState.FULL:
            logger.warning(
                "delivery log %s full: %d rows wait for InfluxDB (bound %d); input is held unacknowledged "
                "(MQTT messages stay at the broker) and polls are skipped until it drains",
                self.log.path,
                depth,
                self.log.max_rows,
            )
        elif state is LogState.DRAINING:
            logger.info("delivery log %s accepting input again (%d rows wait): draining", self.log.path, depth)
        else:
            logger.info("delivery log %s back to normal (%d rows wait, was %s)", self.log.path, depth, previous.value)

    def _check_drained(self) -> None:
        if self.state is LogState.DRAINING and self.log.depth() < _NORMAL * self.log.max_rows:
            self._set_state(LogState.NORMAL)

    async def _persist_final(self) -> None:
        """On stop: let polls in progress finish, then persist what waits, within the stop budget."""
        if self._polls:
            _, late = await asyncio.wait(set(self._polls), timeout=self._remaining())
            for task in late:
                logger.error("shutdown: %s did not finish within the stop timeout; its readings are not taken", task.get_name())
                task.cancel()
            await asyncio.sleep(0)  # let the done callbacks queue their readings
        items: list[tuple[list[Reading], list[str], list[DeadLetter], list[Ack]]] = []
        if self._holding is not None:
            items.append(self._holding)
            self._holding = None
        while self._pending:
            batch, ack = self._pending.popleft()
            items.append((*self._prepare(batch), [] if ack is None else [ack]))
        unacked = 0
        for good, lines, rejects, acks in items:
            try:
                while rejects:
                    self._store_letter(rejects[0])
                    rejects.pop(0)
                try:
                    self.log.append(good, lines)
                except BufferFull:
                    if acks:
                        # The broker keeps the message and delivers it again at the next start.
                        unacked += len(good)
                        continue
                    # A poll's readings have no broker to wait at: the bound gives way by one poll.
                    self.log.append(good, lines, force=True)
            except _DISK_ERRORS as exc:
                self.stats.disk_errors += 1
                if acks:
                    unacked += len(good)
                    logger.error("shutdown: cannot store a message's readings (%s); it stays unacknowledged at the broker", exc)
                    continue
                self.stats.lost += len(good) + len(rejects)
                logger.error(
                    "shutdown: cannot store %d polled readings and %d dead letters (%s); they are lost: %s",
                    len(good),
                    len(rejects),
                    exc,
                    ", ".join(sorted({r.point_id for r in good} | {d.key for d in rejects})),
                )
                continue
            for ack in acks:
                ack()
        if unacked:
            logger.warning(
                "shutdown: %d readings left unacknowledged at the broker for the next start (delivery log full or disk error)",
                unacked,
            )
        self._logged.set()
        self._persisted_final.set()

    def _remaining(self) -> float:
        """Seconds left of the stop budget (the budget starts at the first call)."""
        now = asyncio.get_running_loop().time()
        if self._stop_at is None:
            self._stop_at = now + self.stop_timeout.total_seconds()
        return max(0.0, self._stop_at - now)

    # -- process ----------------------------------------------------------------------

    async def _process_loop(self, processor: StreamProcessor) -> None:
        delay = self.retry_min.total_seconds()
        try:
            while True:
                if not self._logged.is_set():
                    # Woken without new rows too, to find the quiet moment for a snapshot. asyncio.timeout,
                    # not wait_for: in 3.11 wait_for can swallow a cancellation arriving as the event is set,
                    # and the stop then waited for this loop for ever.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_QUIET_S):
                            await self._logged.wait()
                self._logged.clear()
                while True:
                    await self._give_way()
                    try:
                        more = self._process_some(processor)
                    except _DISK_ERRORS as exc:
                        self._disk_failed("process", "cannot store the processor's aggregates", exc, delay)
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, self.retry_max.total_seconds())
                        continue
                    self._disk_ok("process")
                    delay = self.retry_min.total_seconds()
                    if not more:
                        break
                    await asyncio.sleep(0)
                try:
                    self._snapshot_when_quiet(processor)
                except _DISK_ERRORS as exc:
                    # Kept in _unsaved: stored before anything else at the next batch.
                    self._disk_failed("process", "cannot store the processor's snapshot", exc, delay)
        except asyncio.CancelledError:
            await self._wait_final(self._persisted_final, self._remaining())
            self._process_on_stop(processor)
            self._processed_final.set()
            raise

    def _process_on_stop(self, processor: StreamProcessor) -> None:
        """Process what fits in half of what is left of the stop budget; save the state where it stopped.

        The other half is the sink's. What is not processed stays in the log: the
        snapshot saved here covers exactly the readings processed, so a restart
        replays the rest (issue 10, review finding 3: a backlog made the stop unbounded).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._remaining() / 2
        try:
            while loop.time() < deadline and self._process_some(processor):
                pass
            self._flush_unsaved()
        except _DISK_ERRORS as exc:
            self.stats.disk_errors += 1
            logger.error("shutdown: cannot store the processor's aggregates (%s); the next start replays them", exc)
            return
        behind = self.log.readings_after(self._processed_seq, 1)
        if behind:
            logger.warning(
                "shutdown: the processor stopped at log sequence %s within the stop timeout; "
                "the readings after it stay in the delivery log and are processed at the next start",
                self._processed_seq,
            )
        # Open windows are written as they stand; after a restart the restored
        # state completes them and they are written again, whole.
        records = processor.flush()
        try:
            self.log.add_outbox([r.line() for r in records], self._processed_seq, processor.to_dict())
        except _DISK_ERRORS as exc:
            self.stats.disk_errors += 1
            logger.error("shutdown: cannot store the processor's state (%s); the next start replays from its last snapshot", exc)
            return
        self.stats.aggregates += len(records)

    def _process_some(self, processor: StreamProcessor) -> bool:
        # What a disk error kept from being stored comes first: the cursor must not pass it.
        self._flush_unsaved()
        if processor.emission_pending:
            # Closed windows first, a batch per turn of the loop: their aggregates are due now.
            self._emit_some(processor)
            return True
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
        for point_id, judgement in result.judged:
            self._counter_judged(point_id, judgement)
        self._processed_seq = rows[-1][0]
        self._emit_some(processor)
        return len(rows) == self.batch_size or processor.emission_pending

    def _emit_some(self, processor: StreamProcessor) -> None:
        """Store up to a batch of the aggregates the watermark closed, the cursor, and a snapshot if overdue.

        A snapshot due on time waits for a quiet moment (:meth:`_snapshot_when_quiet`): a
        caught-up processor is none, as at the start of a burst its first polls are just in.

        A batch at a time: a window of 3,000 buildings is 300,000 aggregates, seconds
        of work; in one go they held up the raw readings behind them (issue 15).
        """
        records = processor.advance(limit=self.batch_size)
        self._unsaved = ([r.line() for r in records], self._processed_seq, self._snapshot_state(processor, quiet=False))
        self._flush_unsaved()

    async def _give_way(self) -> None:
        """Raw readings first: input waiting to be persisted, then rows waiting for InfluxDB, each at most ``flush_interval``.

        The processor, the sink and the persist step share one core. During a
        burst the processor took most of it, and the raw readings waited for
        InfluxDB behind the aggregates' work (issue 15: a 150,000-reading burst
        took 30 s to appear). Aggregates are due a window's lateness later
        anyway; a batch per write of the sink keeps the processor going, and
        the wait is bounded, so it never stalls (InfluxDB down: it does not wait).
        """
        if self._pending:
            # Input waits to be persisted: its turn first (the persist step sets _logged once it has).
            self._logged.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval.total_seconds()):  # not wait_for: see _process_loop
                    await self._logged.wait()
            self._logged.set()  # there is work: keep the process loop awake
        if self._influx_up is False or self.log.depth() < self.batch_size:
            return
        self._acked.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.flush_interval.total_seconds()):
                await self._acked.wait()

    def _snapshot_when_quiet(self, processor: StreamProcessor) -> None:
        """Snapshot the processor's state if due, once input has been quiet for ``_QUIET_S`` and the sink caught up.

        A snapshot of a large portfolio holds the loop for seconds (3,000
        buildings: 750,000 point windows). Taken when the processor had caught
        up, it fell at the start of each minute's burst, when the first polls
        had just been processed, and held them all back (issue 15).
        """
        quiet = asyncio.get_running_loop().time() - self._last_input >= _QUIET_S
        sink_idle = self.log.depth() == 0 or self._influx_up is False
        if not quiet or not sink_idle or self._unsaved is not None or processor.emission_pending:
            return
        if self._processed_seq == self._snapshot_seq:
            return  # nothing new since the last one
        state = self._snapshot_state(processor, quiet=True)
        if state is not None:
            self._unsaved = ([], self._processed_seq, state)
            self._flush_unsaved()

    def _counter_judged(self, point_id: str, judgement: Judgement) -> None:
        """Count a judged counter reading; WARNING at most once an hour per point and verdict (then DEBUG), jitter at DEBUG."""
        self.sensor.on_counter_judgement(point_id, judgement.verdict.value)
        self.stats.counter_judgements[judgement.verdict.value] += 1
        now = time.monotonic()
        level = logging.DEBUG
        if judgement.verdict is not Verdict.JITTER:
            key = (point_id, judgement.verdict)
            last = self._counter_warned.get(key)
            if last is None or now - last >= _COUNTER_WARN_EVERY_S:
                self._counter_warned[key] = now
                level = logging.WARNING
        logger.log(level, "%s", judgement.describe(point_id))

    def _flush_unsaved(self) -> None:
        """Store the aggregates, cursor and snapshot of the last processed rows (raises a disk error)."""
        if self._unsaved is None:
            return
        lines, seq, state = self._unsaved
        self.log.add_outbox(lines, seq, state)
        self._unsaved = None
        self.stats.aggregates += len(lines)
        if lines:
            self._outboxed.set()

    def _snapshot_state(self, processor: StreamProcessor, *, quiet: bool) -> dict[str, object] | None:
        """The processor's state when a snapshot is due, else None.

        A snapshot of a large portfolio takes seconds (3,000 buildings: the state of
        750,000 point windows), during which nothing else runs. So it waits for a
        quiet moment (``quiet``: no input for ``_QUIET_S``, the sink caught up,
        nothing left to emit), unless it is four periods late, and the period grows
        to 20 times what the last one took.
        """
        now = time.monotonic()
        period = max(self.snapshot_every.total_seconds(), 20 * self._snapshot_cost)
        since = now - self._last_snapshot
        if since < period or (not quiet and since < 4 * period):
            return None
        started = time.perf_counter()
        state = processor.to_dict()
        self._snapshot_cost = time.perf_counter() - started
        self._last_snapshot = now
        self._snapshot_seq = self._processed_seq
        return state

    # -- forward ----------------------------------------------------------------------

    async def _forward_loop(self, forwarder: Forwarder) -> None:
        seq = self.log.cursor("forward")
        delay = self.retry_min.total_seconds()
        connected = False
        while True:
            if not connected:
                # The receiver may be unreachable at start: readings wait in the log meanwhile, as for InfluxDB.
                try:
                    await forwarder.start()
                except SinkError as exc:
                    self._forward_down(exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.retry_max.total_seconds())
                    continue
                connected = True
                self._forward_up()
            try:
                rows = self.log.readings_after(seq, self.batch_size)
            except _DISK_ERRORS as exc:
                self._disk_failed("forward", "cannot read the delivery log", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max.total_seconds())
                continue
            if not rows:
                await asyncio.sleep(self.flush_interval.total_seconds())
                continue
            try:
                await forwarder.send([reading for _, reading in rows], seqs=[n for n, _ in rows], log_id=self.log.log_id)
            except SinkError as exc:
                self._forward_down(exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max.total_seconds())
                continue
            self._forward_up()
            try:
                self.log.set_cursor("forward", rows[-1][0])
            except _DISK_ERRORS as exc:
                # Sent but not recorded: sent again from the old cursor, with the same numbers (the receiver skips them).
                self._disk_failed("forward", "cannot move the forward cursor", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max.total_seconds())
                continue
            self._disk_ok("forward")
            delay = self.retry_min.total_seconds()
            seq = rows[-1][0]

    def _forward_down(self, exc: SinkError, delay: float) -> None:
        """Forwarding failed: ERROR once per outage, DEBUG while it lasts."""
        self._forward_failures += 1
        if self._forward_failures > 1:
            logger.debug("forward: failed again, retrying in %.1fs: %s", delay, exc)
            return
        logger.error("forward: %s; readings wait in the delivery log and are forwarded when it answers", exc)

    def _forward_up(self) -> None:
        if self._forward_failures:
            logger.info("forward: working again after %d failed attempts", self._forward_failures)
        self._forward_failures = 0

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
            try:
                self.log.add_outbox(lines, self._processed_seq)
            except _DISK_ERRORS as exc:
                # The next round writes a fresh status: this one is not worth holding anything for.
                self._disk_failed("status", "cannot store the point status", exc, self.status_every.total_seconds())
                continue
            self._disk_ok("status")
            self._outboxed.set()

    # -- sink -------------------------------------------------------------------------

    async def _sink_loop(self) -> None:
        # Up to ``max_inflight`` writes in flight while the next batch is read: InfluxDB
        # parses on one core while we prepare on the other. Batches are acknowledged in
        # log order, each once its own write and every earlier one have succeeded.
        inflight: deque[tuple[asyncio.Task[None], SinkBatch]] = deque()
        delay = self.retry_min.total_seconds()
        try:
            while True:
                try:
                    await self._sink_step(inflight)
                except _DISK_ERRORS as exc:
                    # Reading or acknowledging the log failed: writes in flight are let go
                    # unacknowledged, and read again from the sink's cursor (writes are idempotent).
                    for task, _ in inflight:
                        task.cancel()
                    await asyncio.gather(*(task for task, _ in inflight), return_exceptions=True)
                    inflight.clear()
                    self._disk_failed("sink", "cannot read or acknowledge the delivery log", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.retry_max.total_seconds())
                    continue
                self._disk_ok("sink")
                delay = self.retry_min.total_seconds()
        except asyncio.CancelledError:
            await self._settle_on_stop(inflight)
            await self._drain()
            raise

    async def _sink_step(self, inflight: deque[tuple[asyncio.Task[None], SinkBatch]]) -> None:
        batch = self.log.next_batch(self.batch_size, after=inflight[-1][1] if inflight else None)
        if len(batch) < self.batch_size and not inflight:
            # Give a partial batch up to flush_interval to fill.
            await self._wait_for_rows()
            batch = self.log.next_batch(self.batch_size)
        if len(batch) == 0:
            while inflight:
                await self._settle(inflight)
            return
        raw, long_term = self._lines(batch)
        if len(inflight) >= self.max_inflight:
            await self._settle(inflight)
        inflight.append((asyncio.create_task(self._write_with_retry(batch, raw, long_term), name="sink:write"), batch))

    async def _settle(self, inflight: deque[tuple[asyncio.Task[None], SinkBatch]]) -> None:
        """Wait for the oldest write in flight and acknowledge its batch.

        It stays in ``inflight`` until written, and a stop does not cancel it here: popped
        first and cancelled with this wait, a batch was left out of :meth:`_settle_on_stop`,
        which then acknowledged the next ones, and their acknowledgement dropped its lines
        unwritten (a stop while InfluxDB was behind lost up to a batch of aggregates).
        """
        task, batch = inflight[0]
        await asyncio.shield(task)
        inflight.popleft()
        self._ack(batch)

    def _ack(self, batch: SinkBatch) -> None:
        self.log.ack(batch)
        self._acked.set()
        self._check_drained()

    async def _settle_on_stop(self, inflight: deque[tuple[asyncio.Task[None], SinkBatch]]) -> None:
        """Give writes in flight the stop budget; acknowledge those done in order; cancel the rest."""
        if not inflight:
            return
        await asyncio.wait([task for task, _ in inflight], timeout=self._remaining())
        while inflight and inflight[0][0].done() and not inflight[0][0].cancelled() and inflight[0][0].exception() is None:
            self._ack(inflight.popleft()[1])
        for task, _ in inflight:
            task.cancel()
        # Written or not, what was not acknowledged stays in the log for the next start.
        await asyncio.gather(*(task for task, _ in inflight), return_exceptions=True)

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
        stored: set[str] = set()  # refused lines already dead-lettered, across retries
        while True:
            started = time.perf_counter()
            try:
                # Both writes are idempotent: after a failure of the second, both are retried.
                # A refused batch is bisected: only the lines InfluxDB refuses are left out,
                # and the aggregates are written whatever the raw readings held.
                refused = await write_splitting(self.writer, raw, raw=True)
                refused += await write_splitting(self.writer, long_term)
            except SinkError as exc:
                # Unreachable, 5xx, or the request itself refused (401, 403, 404, a database
                # that cannot be created): nothing is wrong with the lines. They stay in the
                # log and are retried; dead-lettering them would lose them (review finding 4).
                self.stats.write_errors += 1
                self.sensor.on_sink_error(exc)
                self._sink_down(exc, delay)
                await asyncio.sleep(delay + random.uniform(0, delay / 4))  # noqa: S311 - backoff jitter
                delay = min(delay * 2, self.retry_max.total_seconds())
                continue
            self._sink_up()
            if refused:
                try:
                    for line, reason in refused:
                        if line not in stored:
                            self._store_letter(DeadLetter.now("sink", line.split(" ", 1)[0], line, self._redact(reason)))
                            stored.add(line)
                except _DISK_ERRORS as exc:
                    # Not acknowledged: the batch is written again, and its refused lines kept, once the disk is back.
                    self._disk_failed("sink", f"cannot dead-letter {len(refused)} lines InfluxDB refused", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.retry_max.total_seconds())
                    continue
                self._disk_ok("sink")
                self.stats.refused += len(refused)
                logger.error(
                    "InfluxDB refused %s of %s lines; they go to the dead-letter store, the rest is written",
                    len(refused),
                    count,
                )
            written = count - len(refused)
            self.stats.written += written
            self.stats.per_point.update(point for _, point, _ in batch.readings)
            self.sensor.on_write(written, time.perf_counter() - started)
            return

    # -- InfluxDB state ---------------------------------------------------------------

    def _writer_url(self) -> str | None:
        config = getattr(self.writer, "config", None)
        url = getattr(config, "url", None)
        return url if isinstance(url, str) else None

    def _redact(self, text: str) -> str:
        """``text`` with the writer's URL shown without credentials, query or fragment."""
        url = self._writer_url()
        return text.replace(url, _safe_url(url)) if url else text

    def _sink_down(self, exc: SinkError, delay: float) -> None:
        self._influx_failures += 1
        message = self._redact(str(exc))
        if self._influx_up is False:
            logger.debug("InfluxDB write failed again, retrying in %.1fs: %s", delay, message)
            return
        self._influx_up = False
        self.sensor.on_sink_state(up=False)
        url = self._writer_url()
        logger.error(
            "InfluxDB %s down: %s; writes are retried, readings wait in the delivery log",
            _safe_url(url) if url else "",
            message,
        )

    def _sink_up(self) -> None:
        if self._influx_up is True:
            return
        if self._influx_up is False:
            url = self._writer_url()
            logger.info(
                "InfluxDB %s reachable again after %d failed writes", _safe_url(url) if url else "", self._influx_failures
            )
        self._influx_up = True
        self._influx_failures = 0
        self.sensor.on_sink_state(up=True)

    async def _drain(self) -> None:
        """On stop, write what the log holds, within what is left of the stop budget."""

        async def flush_all() -> None:
            while True:
                batch = self.log.next_batch(self.batch_size)
                if len(batch) == 0:
                    return
                await self._write_with_retry(batch, *self._lines(batch))
                self._ack(batch)

        await self._wait_final(
            self._processed_final if self.processor is not None else self._persisted_final, self._remaining()
        )
        try:
            await asyncio.wait_for(flush_all(), self._remaining())
        except TimeoutError:
            logger.error("shutdown: %s rows stay in the delivery log for the next start", self.log.depth())

    @staticmethod
    async def _wait_final(event: asyncio.Event, timeout: float) -> None:
        """Wait for an earlier step's shutdown (bounded: a stuck step must not hang the exit)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    def _store_letter(self, letter: DeadLetter) -> None:
        """Store one dead letter; a disk error is raised for the caller to hold its input."""
        self.dead_letters.add(letter)
        self.stats.rejected += 1

    def _dead(self, source: str, key: str, payload: str, reason: str) -> None:
        """Store a dead letter whose input cannot be held back (the processor's): a disk error loses it, loudly."""
        try:
            self._store_letter(DeadLetter.now(source, key, payload, reason))
        except _DISK_ERRORS as exc:
            self.stats.disk_errors += 1
            self.stats.lost += 1
            self.sensor.on_disk_state(ok=False)
            logger.error("dead letter lost, the disk refused it (%s): %s %s: %s", exc, source, key, reason)

    # -- disk state -------------------------------------------------------------------

    def _disk_failed(self, step: str, what: str, exc: BaseException, delay: float) -> None:
        """A step's disk write failed: ERROR once per change of state, DEBUG while it lasts; counted."""
        self.stats.disk_errors += 1
        failures = self._disk_failing.get(step, 0)
        self._disk_failing[step] = failures + 1
        self.sensor.on_disk_state(ok=False)
        if failures:
            logger.debug("%s: disk error again, retrying in %.1fs: %s", step, delay, exc)
            return
        logger.error(
            "%s: %s: %s; input is held unacknowledged (MQTT keeps it at the broker) and retried with backoff",
            step,
            what,
            exc,
        )

    def _disk_ok(self, step: str) -> None:
        failures = self._disk_failing.pop(step, 0)
        if not failures:
            return
        logger.info("%s: disk writes work again after %d failures", step, failures)
        if not self._disk_failing:
            self.sensor.on_disk_state(ok=True)


def _safe_url(url: str) -> str:
    """``scheme://host:port/path`` of a URL: no user, password, query or fragment."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"
