"""The faust runner: the stream processor over Kafka, partitioned by building.

The aggregates are per building, so the work partitions cleanly by building:
each building gets its own :class:`~streams.aggregate.StreamProcessor`, built on
a one-building copy of the inventory (:func:`building_inventory`). The same
per-building processors, fed the same batches, run in both runners; only the
transport differs.

* **In-process** (:func:`aggregate_in_process`): cut the readings into batches
  with :func:`batch_readings`, then for each batch ``process`` + ``advance`` on
  its building's processor, and ``flush`` every processor at the end.
* **faust** (:func:`make_app`): :func:`publish` cuts the readings with the same
  :func:`batch_readings` and sends each batch as one message to the
  ``econome-readings`` topic, keyed by building id (faust spends about 1 ms of
  CPU per message, so a message carries a batch, not a reading). One agent
  restores the building's processor from the ``econome-state`` table (key:
  building id, value: the processor state and the source offset it covers,
  kept in a changelog topic), processes the batch, advances, hands the closed
  windows to the sink and saves the state back.

**End of a bounded input.** After the last batch, :func:`publish` sends one
control message ``{"control": "flush"}`` per building of the inventory, keyed
like the data, so it lands on the same partition after that building's last
batch. The agent answers it as the in-process runner does at the end: it calls
``flush()`` on the building's processor, sinks the records and saves the state.
:meth:`FaustRunner.wait_flushed` waits for those answers.

**Delivery.** Kafka gives at-least-once here (Tansu has no transactions, defect
B4). The table entry records the source offset of the last batch applied, in
the same changelog record as the state, so a batch delivered again after a
restart is skipped instead of being counted twice. A batch *sent* again is
another matter: :class:`KafkaForwarder` re-sends what Kafka did not
acknowledge (a send cancelled by a stop, or timed out after the broker took
part of it), and the copies land at new offsets. So each message it sends
carries, in its ``econome-seq`` header (:class:`LogSequence`), the
delivery-log sequence number of each reading, and the table entry also keeps,
per delivery log, the highest number applied: readings at or below it are
skipped. That holds because a building's readings reach its partition in log
order: the forwarder reads the log in order and sends a batch only once the
one before is acknowledged, and aiokafka keeps one request in flight per
broker and retries a batch in its place. A message without the header
(:func:`publish` without ``seqs``, an older forwarder) is deduplicated by
offset only, and an older worker ignores the header. A state the table holds
that covers an older offset than the one this worker saved last for the
building is not restored: a rebalance re-read the changelog only up to an end
read before this worker's last writes arrived (seen under load), and the newer
state in memory is kept, since the messages in between are committed and will
not come again. faust drops records it has fetched around a rebalance (a fetch
that returns while its flow is stopped, the agents' queues when its flow
resumes) and does not always fetch them again: :meth:`FaustRunner.start` works
around both (:func:`_seek_uncommitted_to_start`,
:func:`_keep_queued_records_on_resume`). Whatever the path, a worker never
applies a message ahead of one of its partition it has not handled, nor lets
faust commit past it (:meth:`FaustRunner.step`): such a message is held back and
the partition read again from the first one missing. The sink is written before
the state is saved, and an aggregate written again overwrites the same point,
so a crash between the two repeats a write and loses nothing. A write that
fails (``SinkError``: InfluxDB down, past the sink's own retries) is tried
again, with a backoff up to ``write_retry_max``, until it succeeds: the agent
waits, its stall metric grows, and nothing is committed past that message
(an ERROR when the writes start failing, an INFO when they succeed again).
A worker stopped (SIGTERM) while a write waits ends the wait at once, and the
message is not acknowledged: the stop commits up to it, and the partition's
next owner reads it again. If any other exception raises out of the handling,
the building's processor in memory is dropped, so the next message starts
again from the saved state; the message is read again, and set aside (an
ERROR, ``econome_worker_set_aside_offsets_total``) at its third failure, at
once if it does not decode: one message never stops its partition.

Windows close on the processor's own event-time watermark, never on faust's
``on_window_close`` (defect F1 in ``shared/KAFKA-TANSU.md``).

**Workers and their health.** ``econome worker`` runs :func:`make_app` alone;
any number of them share the topic's partitions through their consumer group
(``econome run`` with the faust runner only publishes, through
:class:`KafkaForwarder`). Each reports to its :class:`~streams.metrics.Sensor`
the messages it handles, every rebalance (counted and timed, through a faust
sensor) and, every ``health_every``, the lag of each assigned partition, the
seconds since its last message and the seconds it has stalled while messages
wait. On a stop in group generation 0 the consumer leaves the group too
(Tansu defect B3, see :func:`_leave_group_in_generation_zero`).

Sample use (see ``tests/integration/test_faust_runner.py``)::

    runner = make_app(inventory, "kafka://127.0.0.1:9092", app_id="econome", partitions=4, sink=ListSink())
    create_topic("127.0.0.1:9092", SOURCE_TOPIC, 4)
    await runner.start()
    await publish(readings, runner.topic, inventory)
    await runner.wait_flushed(runner.buildings, timeout=timedelta(seconds=60))
    await runner.stop()

>>> from pathlib import Path
>>> from datetime import UTC, datetime
>>> from inventory import load_inventory
>>> inv = load_inventory(Path("examples/commune.yaml"))
>>> [b.id for _, b in building_inventory(inv, "mairie").buildings()]
['mairie']
>>> t = datetime(2026, 1, 5, 7, tzinfo=UTC)
>>> decode_batch(encode_batch([Reading("mairie-gas-volume", t, 100.5, "m3")]))[0].value
100.5
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from faust.types import TP, EventT, StreamT, TableT, TopicT

from inventory import Inventory
from streams.aggregate import AggregateRecord, StreamProcessor, StreamSettings
from streams.counters import Verdict
from streams.errors import ConfigError, DecodeError, SinkError
from streams.influx import InfluxConfig, InfluxV1Writer, InfluxV2Writer, RetryableSinkError, make_writer, to_ms
from streams.kafka_url import kafka_servers
from streams.metrics import Sensor
from streams.partitioning import PartitionMap, assign_partitions, stored_partition_map
from streams.record import Quality, Reading

__all__ = [
    "FLUSH_MESSAGE",
    "MAX_BATCH",
    "SEQUENCE_HEADER",
    "SOURCE_TOPIC",
    "STATE_TABLE",
    "AggregateKey",
    "AggregateSink",
    "FaustRunner",
    "InfluxAggregateSink",
    "ListSink",
    "LogSequence",
    "RunnerStats",
    "aggregate_in_process",
    "batch_readings",
    "building_inventory",
    "collect",
    "decode_batch",
    "decode_sequence",
    "encode_batch",
    "encode_sequence",
    "ensure_topic",
    "make_app",
    "publish",
    "true_end_offsets",
]

logger = logging.getLogger(__name__)

SOURCE_TOPIC = "econome-readings"
STATE_TABLE = "econome-state"
MAX_BATCH = 500
FLUSH_MESSAGE = b'{"control":"flush"}'
STATE_FORMAT_VERSION = 1
SEQUENCE_HEADER = "econome-seq"
#: Delivery logs remembered per building in the state table (a log made again has a new identity).
MAX_LOGS = 16

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: An aggregate's identity: measurement, tags and window start. Writing it again overwrites it.
AggregateKey = tuple[str, tuple[tuple[str, str], ...], datetime]

_Item = TypeVar("_Item")


# -- the partitioning, shared by both runners ---------------------------------------


def building_inventory(inventory: Inventory, building_id: str) -> Inventory:
    """A copy of the inventory that holds one building, and its site only.

    The organisation, energies and tariffs, gateways and brokers are kept, so the
    building's processor prices and converts as the whole portfolio would.

    Raises:
        ConfigError: the building is not in the inventory.
    """
    for site in inventory.sites:
        for building in site.buildings:
            if building.id == building_id:
                # Validators do not run again on model_copy: the subset is valid because the whole was.
                only = site.model_copy(update={"buildings": [building]})
                return inventory.model_copy(update={"sites": [only]})
    msg = f"building {building_id} is not in the inventory"
    raise ConfigError(msg)


def batch_readings(
    inventory: Inventory, readings: Iterable[Reading], max_batch: int = MAX_BATCH
) -> Iterator[tuple[str, list[Reading]]]:
    """Cut readings into batches of one building each, in arrival order.

    A building's batch is yielded when it holds ``max_batch`` readings; what is
    left is yielded at the end, building by building. Readings of points unknown
    to the inventory cannot be routed: they are logged and left out (the
    processor would reject them anyway).

    Returns:
        An iterator of ``(building id, readings)`` pairs.
    """
    return _batches(inventory, readings, lambda reading: reading, max_batch)


def _batches(
    inventory: Inventory, items: Iterable[_Item], reading_of: Callable[[_Item], Reading], max_batch: int
) -> Iterator[tuple[str, list[_Item]]]:
    """:func:`batch_readings` over items that carry a reading (a reading and its sequence number)."""
    building_of = {point.id: building.id for building, point in inventory.points()}
    pending: dict[str, list[_Item]] = {}
    unknown = 0
    for item in items:
        building_id = building_of.get(reading_of(item).point_id)
        if building_id is None:
            unknown += 1
            continue
        batch = pending.setdefault(building_id, [])
        batch.append(item)
        if len(batch) >= max_batch:
            yield building_id, batch
            pending[building_id] = []
    if unknown:
        logger.warning("left out %s readings of points not in the inventory", unknown)
    for building_id, batch in pending.items():
        if batch:
            yield building_id, batch


def collect(records: Iterable[AggregateRecord], into: dict[AggregateKey, dict[str, float]]) -> None:
    """Apply records to a view of the sink: a record written again replaces the older one."""
    for record in records:
        into[(record.measurement, record.tags, record.start)] = dict(record.fields)


def aggregate_in_process(
    inventory: Inventory,
    readings: Iterable[Reading],
    settings: StreamSettings | None = None,
    *,
    max_batch: int = MAX_BATCH,
) -> dict[AggregateKey, dict[str, float]]:
    """Aggregate a bounded input in-process, the way the faust runner does over Kafka.

    One processor per building; each batch of :func:`batch_readings` is
    processed then advanced, and every processor is flushed at the end.

    Returns:
        The final fields of every aggregate, by (measurement, tags, window start).

    Example:
        >>> from pathlib import Path
        >>> from inventory import load_inventory
        >>> inv = load_inventory(Path("examples/commune.yaml"))
        >>> t = datetime(2026, 1, 5, 7, tzinfo=UTC)
        >>> out = aggregate_in_process(inv, [Reading("mairie-gas-volume", t, 100.0, "m3"),
        ...                                  Reading("mairie-gas-volume", t + timedelta(minutes=10), 101.0, "m3")])
        >>> round(out[("agg_building", (("building", "mairie"), ("window", "1h")), t)]["kwh"], 6)
        11.2
    """
    processors: dict[str, StreamProcessor] = {}
    result: dict[AggregateKey, dict[str, float]] = {}
    for building_id, batch in batch_readings(inventory, readings, max_batch):
        processor = processors.get(building_id)
        if processor is None:
            processor = processors[building_id] = StreamProcessor(building_inventory(inventory, building_id), settings)
        processor.process(batch)
        collect(processor.advance(), result)
    for processor in processors.values():
        collect(processor.flush(), result)
    return result


# -- messages ------------------------------------------------------------------------


def encode_batch(readings: Sequence[Reading]) -> bytes:
    """A message value: JSON list of ``[point_id, ts_ms, value, unit, quality]``.

    Times travel at millisecond precision. Non-finite values are encoded as the
    JSON extensions ``NaN``/``Infinity`` so the processor rejects them, as it would in-process.
    """
    return json.dumps([[r.point_id, to_ms(r.ts), r.value, r.unit, r.quality.value] for r in readings]).encode()


def decode_batch(payload: bytes) -> list[Reading]:
    """The readings of a message value made by :func:`encode_batch`.

    Raises:
        DecodeError: the value is not a list of readings as :func:`encode_batch` makes them
            (not JSON, a field missing, an unknown quality code...).
    """
    try:
        return [
            Reading(point_id, _EPOCH + timedelta(milliseconds=ts_ms), float(value), unit, Quality(quality))
            for point_id, ts_ms, value, unit, quality in json.loads(payload)
        ]
    except (ValueError, TypeError, OverflowError) as exc:  # JSONDecodeError and an unknown Quality are ValueErrors
        msg = f"not a batch of readings: {exc}"
        raise DecodeError(msg) from exc


class LogSequence(NamedTuple):
    """Where a message's readings come from: a delivery log and the sequence number of each reading in it.

    :class:`KafkaForwarder` sends it in the message's ``econome-seq`` header
    (:func:`encode_sequence`); a batch forwarded again carries the same
    numbers, so a worker applies each reading once. A message without the
    header (from :func:`publish` without ``seqs``, or from an older forwarder)
    is deduplicated by its offset only.
    """

    log_id: str
    seqs: list[int]

    @property
    def last(self) -> int:
        """The highest sequence number (the readings of a building are forwarded in log order)."""
        return self.seqs[-1]


def encode_sequence(sequence: LogSequence) -> bytes:
    """The ``econome-seq`` header: JSON ``{"log": id, "seqs": [first, step, step...]}``.

    Each number after the first is the step from the previous one (mostly 1:
    a poll's readings are stored together), which keeps the header a few bytes per reading.

    >>> encode_sequence(LogSequence("a1", [7, 8, 9, 40]))
    b'{"log":"a1","seqs":[7,1,1,31]}'
    >>> decode_sequence(encode_sequence(LogSequence("a1", [7, 8, 9, 40])))
    LogSequence(log_id='a1', seqs=[7, 8, 9, 40])
    """
    seqs = sequence.seqs
    steps = [seqs[0], *(b - a for a, b in itertools.pairwise(seqs))] if seqs else []
    return json.dumps({"log": sequence.log_id, "seqs": steps}, separators=(",", ":")).encode()


def decode_sequence(header: bytes) -> LogSequence:
    """The :class:`LogSequence` of an ``econome-seq`` header.

    Raises:
        DecodeError: the header is not one :func:`encode_sequence` makes
            (numbers not increasing included).
    """
    try:
        body = json.loads(header)
        log_id, steps = body["log"], body["seqs"]
        if not isinstance(log_id, str) or not steps or not all(isinstance(n, int) and n > 0 for n in steps):
            raise ValueError(header)
    except (ValueError, TypeError, KeyError) as exc:
        msg = f"{SEQUENCE_HEADER} header {header[:80]!r} is malformed"
        raise DecodeError(msg) from exc
    return LogSequence(log_id, list(itertools.accumulate(steps)))


# -- sinks -----------------------------------------------------------------------------


class AggregateSink(Protocol):
    """Where the runner hands the aggregates of closed (or flushed) windows."""

    async def write(self, records: list[AggregateRecord]) -> None:
        """Store the records; a record written again must overwrite the same point."""
        ...


class ListSink:
    """Keeps every record in memory, in the order received (for tests).

    >>> sink = ListSink()
    >>> asyncio.run(sink.write([]))
    >>> sink.records
    []
    """

    def __init__(self) -> None:
        self.records: list[AggregateRecord] = []

    async def write(self, records: list[AggregateRecord]) -> None:
        """Append the records."""
        self.records.extend(records)

    def view(self) -> dict[AggregateKey, dict[str, float]]:
        """What a database would hold: the last fields written for each aggregate."""
        out: dict[AggregateKey, dict[str, float]] = {}
        collect(self.records, out)
        return out


class InfluxAggregateSink:
    """Writes aggregates as line protocol through :func:`streams.influx.make_writer`.

    Writes go in batches of ``config.batch_size`` lines. A write that may succeed
    later is retried with exponential backoff from ``retry_min`` to ``retry_max``
    for up to ``attempts`` tries, then raises; the runner then waits and writes
    the same batch again (:meth:`FaustRunner._write`), without saving its state meanwhile.

    Example::

        sink = InfluxAggregateSink(InfluxConfig(url="http://127.0.0.1:8086", database="econome"))
    """

    def __init__(
        self,
        config: InfluxConfig,
        *,
        attempts: int = 8,
        retry_min: timedelta = timedelta(milliseconds=200),
        retry_max: timedelta = timedelta(seconds=10),
    ) -> None:
        self.config = config
        self.attempts = attempts
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.writer: InfluxV1Writer | InfluxV2Writer = make_writer(config)
        self.written = 0

    async def write(self, records: list[AggregateRecord]) -> None:
        """Write the records' lines.

        Raises:
            SinkError: InfluxDB refused the batch, or stayed unreachable.
        """
        lines = [record.line() for record in records]
        size = self.config.batch_size
        for i in range(0, len(lines), size):
            await self._write_retrying(lines[i : i + size])
        self.written += len(lines)

    async def _write_retrying(self, lines: list[str]) -> None:
        delay = self.retry_min.total_seconds()
        for attempt in range(1, self.attempts + 1):
            try:
                await self.writer.write(lines)
                return
            except RetryableSinkError as exc:
                if attempt == self.attempts:
                    msg = f"gave up writing {len(lines)} aggregates after {attempt} attempts"
                    raise SinkError(msg) from exc
                logger.warning("aggregate write failed (attempt %s), retrying in %.1f s: %s", attempt, delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max.total_seconds())

    async def close(self) -> None:
        """Release the writer's connections."""
        await self.writer.close()


# -- the faust app -----------------------------------------------------------------------


@dataclass
class RunnerStats:
    """Counters of a faust worker.

    Attributes:
        batches: data messages applied.
        readings: readings in them.
        redelivered: messages skipped because the state already covered them.
        resent: readings skipped because their delivery-log sequence number showed
            them applied already (a batch the forwarder sent again, at new offsets).
        rejected: readings the processor rejected (validation, unknown point).
        late: readings behind the watermark, applied as corrections.
        records: aggregate records handed to the sink.
        unknown_buildings: messages keyed by a building not in the inventory.
        flushed: buildings whose flush control message was handled.
        rebalances: consumer-group rebalances this worker went through.
        rereads: gaps gone back over: a message handed over ahead of others of its partition
            that this worker had not handled was held back, and the partition read again from the first of them.
        set_aside: source offsets passed without being applied: a message that does not decode, or whose
            handling raised ``set_aside_after`` times; an offset that never came (gone from the topic, not a record).
    """

    batches: int = 0
    readings: int = 0
    redelivered: int = 0
    resent: int = 0
    rejected: int = 0
    late: int = 0
    records: int = 0
    unknown_buildings: int = 0
    flushed: set[str] = field(default_factory=set)
    rebalances: int = 0
    rereads: int = 0
    set_aside: int = 0


@dataclass
class _Reread:
    """A partition sought back to ``offset``, the first message not handled, after ``ahead`` was handed over.

    ``lowest`` is the lowest offset handed over since, ``seeks`` the seeks that were fruitless (messages of
    the partition handed over after them, the first missing one not among them), ``started`` when the first was.
    A seek the health loop makes while the agent hands nothing over (it waits on a write) is no evidence.
    """

    offset: int
    ahead: int
    sought: float
    lowest: int = 0
    seeks: int = 1
    started: float = 0.0


class _StopWhileWriting(asyncio.CancelledError):
    """The worker stops while a write waits: the message is left unacknowledged, as a cancelled one."""


class FaustRunner:
    """A faust app, its source topic, its state table and its agent; built by :func:`make_app`.

    Attributes:
        app: the faust app (start it with :meth:`start`, or run it with a faust worker).
        topic: the source topic, ``econome-readings`` by default.
        table: building id → processor state and the source offset it covers.
        stats: counters of this worker.
        buildings: ids of the inventory's buildings.
    """

    def __init__(
        self,
        inventory: Inventory,
        app: faust.App,
        topic: TopicT,
        table: TableT[bytes, bytes],
        settings: StreamSettings | None,
        sink: AggregateSink,
        fix_end_offsets: bool,
        sensor: Sensor | None = None,
        health_every: timedelta = timedelta(seconds=1),
    ) -> None:
        self.inventory = inventory
        self.app = app
        self.topic = topic
        self.table = table
        self.settings = settings
        self.sink = sink
        self.fix_end_offsets = fix_end_offsets
        self.stats = RunnerStats()
        self.buildings = [building.id for _, building in inventory.buildings()]
        self._known = set(self.buildings)
        self._inventories: dict[str, Inventory] = {}
        # building id -> (processor, the table value it was restored from or saved as, its source offset)
        self._cache: dict[str, tuple[StreamProcessor, bytes, int]] = {}
        # building id -> delivery log id -> the highest sequence number applied; kept in step with _cache
        self._applied: dict[str, dict[str, int]] = {}
        self._progress = asyncio.Condition()
        self.sensor = sensor or Sensor()
        self.health_every = health_every
        self._health: asyncio.Task[None] | None = None
        # source partition -> the next offset to handle: the offset after the last message handled here, or the
        # group's committed offset before the first. Every offset below it is applied (here, or by the worker that
        # committed it); a message above it is held back (FaustRunner.step). Kept across rebalances for the
        # partitions this worker keeps, dropped for the others.
        self._position: dict[int, int] = {}
        # source partition -> the re-read under way (sought back, the first message not handled not seen yet)
        self._rereads: dict[int, _Reread] = {}
        #: A re-read that has not brought the first message missing within this is sought again.
        self.reread_retry = timedelta(seconds=2)
        #: A re-read that has not brought the first message missing after ``reread_give_up_seeks`` seeks and this
        #: long treats the offsets below the lowest one handed over as absent (an ERROR; they are passed).
        self.reread_give_up_after = timedelta(seconds=30)
        self.reread_give_up_seeks = 10
        #: A message whose handling raises (other than a decode error, set aside at once) is set aside at this try.
        self.set_aside_after = 3
        #: A message whose handling failed is read again after this pause (or at once when the worker stops).
        self.retry_pause = timedelta(seconds=1)
        # source partition -> (offset, tries) of the last message whose handling raised
        self._failures: dict[int, tuple[int, int]] = {}
        self._stopping = asyncio.Event()
        self._last_message = time.monotonic()
        self._unknown_logged: set[str] = set()
        #: A failed aggregate write is tried again after this, doubled each time up to ``write_retry_max``.
        self.write_retry_min = timedelta(seconds=1)
        self.write_retry_max = timedelta(seconds=10)
        app.sensors.add(_RebalanceSensor(self))

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the app in this event loop: consumer, producer, table recovery, agent, health metrics."""
        if self.fix_end_offsets:
            _fix_end_offsets(self.app)
        _seek_uncommitted_to_start(self.app, self.topic.get_topic_name())
        _keep_queued_records_on_resume(self.app)
        _leave_source_order_to_the_guard(self.app, self.topic.get_topic_name())
        await self.app.start()
        self._last_message = time.monotonic()
        self._health = asyncio.create_task(self._health_loop(), name="faust-health")

    async def stop(self) -> None:
        """Stop the app: commit the offsets processed, leave the group (in generation 0 too), stop agent, consumer, producer.

        A write waiting on the sink (InfluxDB down) ends first: its message is not acknowledged, so nothing
        is committed past it, and the partition's next owner reads it again.
        """
        self._stopping.set()
        if self._health is not None:
            self._health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health
            self._health = None
        _leave_group_in_generation_zero(self.app)
        await self.app.stop()

    # -- health ------------------------------------------------------------------------

    def lag(self) -> dict[int, int]:
        """Messages not yet handled, per source partition assigned to this worker.

        The high watermark comes from the last fetch (right on Tansu too, unlike
        ListOffsets: defect B1); the position is the offset after the last
        message handled here, or the group's committed offset before the first.
        A partition not fetched yet counts 0.
        """
        consumer = self.app.consumer
        committed: Mapping[TP, int | None] = getattr(consumer, "_committed_offset", {})
        name = self.topic.get_topic_name()
        lag: dict[int, int] = {}
        for tp in consumer.assignment():
            if tp.topic != name:
                continue
            highwater = consumer.highwater(tp)
            position = self._position.get(tp.partition)
            if position is None:
                position = committed.get(tp) or 0
            lag[tp.partition] = max(0, (highwater or 0) - position) if highwater is not None else 0
        return lag

    def _check_health(self) -> None:
        lag = self.lag()
        idle = time.monotonic() - self._last_message
        self.sensor.on_worker_health(lag, idle_s=idle, stalled_s=idle if any(lag.values()) else 0.0)

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_every.total_seconds())
            try:
                self._check_health()
                await self._retry_rereads()
            except (KafkaError, RuntimeError, AssertionError) as exc:  # the consumer is between assignments
                logger.debug("health check skipped: %r", exc)

    async def wait_flushed(self, buildings: Iterable[str], timeout: timedelta) -> None:
        """Wait until the flush messages of ``buildings`` have been handled.

        Raises:
            TimeoutError: they were not handled within ``timeout``.
        """
        wanted = set(buildings)
        await self.wait_until(lambda stats: wanted <= stats.flushed, timeout)

    async def wait_until(self, predicate: Callable[[RunnerStats], bool], timeout: timedelta) -> None:
        """Wait until ``predicate(stats)`` holds; it is checked after each message.

        Raises:
            TimeoutError: it did not hold within ``timeout``.
        """
        async with asyncio.timeout(timeout.total_seconds()), self._progress:
            await self._progress.wait_for(lambda: predicate(self.stats))

    # -- the agent ---------------------------------------------------------------------

    async def consume(self, stream: StreamT[bytes]) -> None:
        """The agent: apply each message of the stream to its building's processor."""
        # faust acks a message once this loop moves on, or once step raises or is cancelled; step marks a message
        # it did not handle (held back, failed, cancelled) as done without acknowledging its offset, so faust's
        # commit stops before it. A sink that fails does not make handle raise (see _write).
        async for event in stream.events():
            try:
                await self.step(event)
            except _StopWhileWriting:
                # The worker stops (its message left unacknowledged): leave the stream, rather than have faust log
                # a crash with its traceback and restart the agent on a clean stop.
                return

    async def step(self, event: EventT[bytes]) -> None:
        """Handle one message in its partition's order, then move this worker's position past it.

        The guard against every way faust has shown to pass over messages (issue 15): the offsets of the
        source topic are contiguous (no compaction, no transactions), so a message above the partition's
        next offset to handle comes ahead of messages this worker has not handled. Applying it would be
        wrong twice: a building's table keeps only its highest applied offset, so its messages in the gap
        would be skipped as applied when they came; and faust's commit, which counts the acknowledged
        offsets, could pass the gap. So such a message is held back, neither applied nor acknowledged
        (faust's commit stops before it), and the partition is sought back to the first message missing,
        with one WARNING per gap and the ``rereads`` counter; the message comes again in its turn. A
        message below the next offset is a redelivery, and the table's offsets skip what it holds.

        The position moves after the message is handled: a message waiting on its write still counts in
        the lag (the stall metric). A message not handled (its handling raised, or was cancelled by a stop)
        is not acknowledged either, so a stop does not commit past it; one whose handling raises is read
        again, and passed at the ``set_aside_after``-th failure, or at once if it does not decode
        (:meth:`_set_aside`). Offsets that never come (gone from the topic, or no record) are passed
        too (:meth:`_seek_again`): no partition stalls for ever.
        """
        try:
            await self._step(event)
        except BaseException:
            _keep_uncommitted(self.app.consumer, event.message)
            raise

    async def _step(self, event: EventT[bytes]) -> None:
        message = event.message
        partition, offset = message.partition, message.offset
        expected = await self._next_offset(message.tp, partition)
        if offset > expected:
            expected = await self._hold_back(event, expected)
            if offset > expected:
                return
        try:
            await self.handle(event)
        except Exception as exc:  # a stop's cancellation is no Exception: it goes up, the message unacknowledged
            if not self._set_aside(event, exc):
                # Read again, after a pause: a passing failure gets time to pass (stopping ends the pause).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.retry_pause.total_seconds()):
                        await self._stopping.wait()
                raise
        if offset == expected:
            self._position[partition] = offset + 1
            self._rereads.pop(partition, None)
        self._last_message = time.monotonic()

    def _set_aside(self, event: EventT[bytes], exc: Exception) -> bool:
        """Whether a message whose handling raised ``exc`` is passed (True), or left for another try (False).

        A message that does not decode never will: it is passed at once. Another failure may be passing
        (the state table between two rebalances...): the message is read again, and passed at its
        ``set_aside_after``-th failure. Either way with an ERROR naming the partition, offset and building,
        and the ``set_aside`` counter: one message must not stop its partition for ever.
        """
        message = event.message
        partition, offset = message.partition, message.offset
        key = event.key
        building_id = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
        undecodable = isinstance(exc, DecodeError)
        if isinstance(exc, ConfigError):
            # The worker's own state or settings, not the message (a state table of another format: a rolling
            # upgrade or downgrade): setting aside would pass every message of the building. The partition waits
            # for the worker to be fixed, loudly (a hostile review's finding).
            logger.error(
                "partition %s offset %s, building %s: this worker cannot handle it: %s; the partition waits "
                "(nothing is set aside: fix the worker's version or settings)", partition, offset, building_id, exc,
            )  # fmt: skip
            return False
        last, tries = self._failures.get(partition, (offset, 0))
        tries = tries + 1 if last == offset else 1
        if not undecodable and tries < self.set_aside_after:
            self._failures[partition] = (offset, tries)
            logger.warning(
                "partition %s offset %s, building %s: handling failed (try %s of %s), the message is read again: %r",
                partition, offset, building_id, tries, self.set_aside_after, exc,
            )  # fmt: skip
            return False
        self._failures.pop(partition, None)
        reason = "undecodable" if undecodable else "failed"
        self.stats.set_aside += 1
        self.sensor.on_worker_set_aside(reason, 1)
        value = event.value if isinstance(event.value, bytes) else b""
        logger.error(
            "partition %s offset %s, building %s: message set aside (%s after %s tries): %s; its readings are not "
            "aggregated (the message stays in the topic until its retention; its value starts %r)",
            partition, offset, building_id, reason, tries, exc, value[:120],
            exc_info=None if undecodable else exc,
        )  # fmt: skip
        return True

    async def _next_offset(self, tp: TP, partition: int) -> int:
        """The partition's next offset to handle; on its first message here, the group's committed offset."""
        expected = self._position.get(partition)
        if expected is None:
            committed: int | None
            try:
                async with asyncio.timeout(10):
                    committed = await _call_kafka(self.app, _committed_offset, TopicPartition(tp.topic, tp.partition))
            except (KafkaError, AssertionError, TimeoutError) as exc:
                # faust's own view of it then; 0 at worst, and the messages before the first come as redeliveries.
                committed = getattr(self.app.consumer, "_committed_offset", {}).get(tp)
                logger.warning("partition %s: committed offset not read (%r), starting from %s", partition, exc, committed or 0)
            expected = self._position[partition] = committed or 0
        return expected

    async def _hold_back(self, event: EventT[bytes], expected: int) -> int:
        """Keep a message ahead of a gap from being applied or committed, and read the gap again.

        Returns:
            The partition's next offset to handle: ``expected``, or the topic's first offset when the
            messages of the gap are gone from the topic (retention), with a WARNING; the message is
            then handled if it is that one.
        """
        message = event.message
        partition, offset = message.partition, message.offset
        reread = self._rereads.get(partition)
        now = time.monotonic()
        if reread is None or reread.offset != expected:
            first = await self._first_offset(message.tp)
            if first > expected:
                expected = await self._pass_absent(message.tp, expected, first, retention=True)
                if offset <= expected:
                    return expected
            logger.warning(
                "partition %s: offset %s was handed over before offsets %s–%s, which this worker has not handled: "
                "held back; re-reading offsets %s–%s of partition %s",
                partition, offset, expected, offset - 1, expected, offset - 1, partition,
            )  # fmt: skip
            self.stats.rereads += 1
            self.sensor.on_worker_reread(partition, offset - expected)
            reread = self._rereads[partition] = _Reread(expected, offset, now, lowest=offset, started=now)
            _keep_uncommitted(self.app.consumer, message)
            await self._seek(message.tp, expected)
            return expected
        reread.lowest = min(reread.lowest, offset)
        if offset > reread.ahead and now - reread.sought < self.reread_retry.total_seconds():
            # Messages fetched before the seek still coming: the seek's own come after them.
            reread.ahead = offset
            _keep_uncommitted(self.app.consumer, message)
            return expected
        logger.info("partition %s: offset %s again before %s: seeking back again", partition, offset, expected)
        reread.ahead = max(reread.ahead, offset)
        expected = await self._seek_again(message.tp, reread, fruitless=True)
        if offset > expected:
            _keep_uncommitted(self.app.consumer, message)
        return expected

    async def _seek_again(self, tp: TP, reread: _Reread, *, fruitless: bool) -> int:
        """Seek a re-read back again, or pass the offsets it waits for if they are not coming.

        They are not coming when the topic no longer holds them (retention moved its start meanwhile), or
        after ``reread_give_up_seeks`` seeks over ``reread_give_up_after`` that brought only later offsets
        (the offset is no record: a transaction marker, a compacted one): those below the lowest offset
        handed over are then passed, with an ERROR. Never a stall without end. Only the seeks after which
        the agent was handed later offsets (``fruitless``, from :meth:`_hold_back`) count: the health
        loop's while the agent waits (on a write to a down InfluxDB) passed messages that exist (a hostile
        review's finding).

        Returns:
            The partition's next offset to handle.
        """
        now = time.monotonic()
        expected = reread.offset
        first = await self._first_offset(tp)
        if first > expected:
            expected = await self._pass_absent(tp, expected, first, retention=True)
        elif (
            reread.seeks >= self.reread_give_up_seeks
            and now - reread.started >= self.reread_give_up_after.total_seconds()
            and reread.lowest > expected
        ):
            expected = await self._pass_absent(tp, expected, reread.lowest, retention=False, seeks=reread.seeks)
        moved = expected != reread.offset
        if moved:
            reread.offset, reread.seeks, reread.started, reread.lowest = expected, 0, now, reread.ahead
        if fruitless or moved:
            reread.seeks += 1
        reread.sought = now
        await self._seek(tp, expected)
        return expected

    async def _pass_absent(self, tp: TP, start: int, stop: int, *, retention: bool, seeks: int = 0) -> int:
        """Pass offsets ``start``…``stop - 1`` of a partition, never delivered; faust may commit past them.

        Returns:
            ``stop``, the partition's next offset to handle now.
        """
        if retention:
            logger.warning(
                "partition %s: offsets %s–%s are gone from the topic (retention) and were never aggregated here",
                tp.partition, start, stop - 1,
            )  # fmt: skip
        else:
            logger.error(
                "partition %s: offsets %s–%s never came in %s seeks back (not records: a transaction marker, "
                "compaction?); passed as absent, from offset %s on", tp.partition, start, stop - 1, seeks, stop,
            )  # fmt: skip
        self.stats.set_aside += stop - start
        self.sensor.on_worker_set_aside("absent", stop - start)
        # Acknowledged to faust as its own gap filling does (disabled for the source topic): its commit refuses to
        # pass a hole between the committed offset and the acknowledged ones, and would never move again.
        consumer: Any = self.app.consumer
        add_gap = getattr(consumer, "_econome_add_gap", consumer._add_gap)
        await add_gap(tp, start, stop - 1)
        self._position[tp.partition] = stop
        return stop

    async def _first_offset(self, tp: TP) -> int:
        """The first offset the topic still holds in the partition (0 when it cannot be read)."""
        try:
            first: Mapping[TP, int] = await self.app.consumer.earliest_offsets(tp)
        except KafkaError as exc:
            logger.debug("first offset of %s not read: %r", tp, exc)
            return 0
        return first.get(tp) or 0

    async def _seek(self, tp: TP, offset: int) -> None:
        """Make the consumer fetch the partition from ``offset`` again (a failure is tried again later)."""
        try:
            await _call_kafka(self.app, _seek_kafka, TopicPartition(tp.topic, tp.partition), offset)
        except (KafkaError, AssertionError) as exc:  # revoked meanwhile: its next owner starts from the commit
            logger.info("partition %s: seek back to %s failed: %r", tp.partition, offset, exc)
            return
        # faust keeps no read offset and notes no gap for the source topic (_leave_source_order_to_the_guard): the
        # messages fetched again are not dropped as read already.

    async def _retry_rereads(self) -> None:
        """Seek again the re-reads whose first missing message has not come within ``reread_retry``."""
        now = time.monotonic()
        name = self.topic.get_topic_name()
        for partition, reread in list(self._rereads.items()):
            if now - reread.sought < self.reread_retry.total_seconds():
                continue
            logger.info("partition %s: offset %s not read again yet: seeking back again", partition, reread.offset)
            await self._seek_again(TP(name, partition), reread, fruitless=False)

    async def handle(self, event: EventT[bytes]) -> None:
        """Apply one message: a batch of readings, or the flush control message."""
        key = event.key
        building_id = key.decode() if isinstance(key, bytes) else str(key)
        offset = event.message.offset
        partition = event.message.partition
        if building_id not in self._known:
            self._left_out_unknown(building_id, event.value, partition, offset)
            return
        processor, covered = self._restore(building_id)
        if offset <= covered:
            # Delivered again after a restart: the saved state already holds it.
            self.stats.redelivered += 1
            self.sensor.on_worker_message(partition, readings=0, redelivered=True)
            return
        payload = event.value
        sequence = self._sequence(event, building_id)
        applied = self._applied.get(building_id, {}).get(sequence.log_id, 0) if sequence is not None else 0
        if sequence is not None and sequence.last <= applied:
            # Forwarded again at new offsets (a send cancelled or timed out after the broker took it).
            self.stats.resent += len(sequence.seqs)
            self.sensor.on_worker_message(partition, readings=0, redelivered=True)
            return
        readings_before = self.stats.readings
        try:
            records = self._apply(processor, payload, sequence, applied)
            if records:
                # Sink first, then state: a crash in between repeats an (idempotent) write instead of losing it.
                await self._write(building_id, records)
                self.stats.records += len(records)
        except BaseException:
            # The processor in memory is ahead of the table now: forget it, so the next message
            # restores the saved state. Cancellation included; it is re-raised.
            self._cache.pop(building_id, None)
            raise
        self._save(building_id, processor, offset, sequence)
        self.sensor.on_worker_message(partition, readings=self.stats.readings - readings_before, redelivered=False)
        async with self._progress:
            if payload == FLUSH_MESSAGE:
                self.stats.flushed.add(building_id)
            self._progress.notify_all()

    def _left_out_unknown(self, building_id: str, payload: bytes | None, partition: int, offset: int) -> None:
        """A message of a building this worker's inventory lacks: counted, and an ERROR once per building."""
        self.stats.unknown_buildings += 1
        readings = 0 if payload is None or payload == FLUSH_MESSAGE else len(decode_batch(payload))
        self.sensor.on_worker_left_out("unknown_building", readings)
        if building_id in self._unknown_logged:
            logger.debug("message at partition %s offset %s of unknown building %r left out", partition, offset, building_id)
            return
        self._unknown_logged.add(building_id)
        logger.error(
            "building %r is not in this worker's inventory: its readings are left out (first at partition %s offset %s); "
            "every worker needs the forwarder's inventory", building_id, partition, offset,
        )  # fmt: skip

    async def _write(self, building_id: str, records: list[AggregateRecord]) -> None:
        """Write the records, again and again until the sink takes them (backoff up to ``write_retry_max``).

        The agent waits meanwhile: its messages are neither handled nor committed, and the stall metric
        grows. An ERROR when the writes start failing, an INFO when they succeed again.
        """
        delay = self.write_retry_min.total_seconds()
        failing_since: float | None = None
        while True:
            try:
                await self._write_once(building_id, records)
            except SinkError as exc:
                self.sensor.on_worker_sink_failure()
                if failing_since is None:
                    failing_since = time.monotonic()
                    logger.error(
                        "aggregates of building %s not written: %s; this worker waits and writes them again "
                        "until they are (nothing is committed meanwhile)", building_id, exc,
                    )  # fmt: skip
                else:
                    logger.debug("aggregates of building %s still not written: %s", building_id, exc)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stopping.wait()
                if self._stopping.is_set():
                    # faust's stop waits for the messages handed over to be acknowledged: waiting on here hung the
                    # stop until systemd's SIGKILL. Not acknowledged, so nothing is committed past it.
                    logger.warning(
                        "aggregates of building %s not written when the worker stopped: its message is not "
                        "committed, the partition's next owner reads it again", building_id,
                    )  # fmt: skip
                    raise _StopWhileWriting from exc
                delay = min(delay * 2, self.write_retry_max.total_seconds())
                continue
            if failing_since is not None:
                failed_s = time.monotonic() - failing_since
                logger.info("aggregates of building %s written after %.0f s of failed writes", building_id, failed_s)
            return

    async def _write_once(self, building_id: str, records: list[AggregateRecord]) -> None:
        """One write to the sink, ended by a stop.

        A write hung on InfluxDB (accepting, never answering) held the stop for the sink's three 10 s
        tries, past systemd's 30 s (a hostile review's finding).

        Raises:
            _StopWhileWriting: the worker stops first; the message is not acknowledged.
        """
        write = asyncio.ensure_future(self.sink.write(records))
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({write, stop}, return_when=asyncio.FIRST_COMPLETED)
            stopped = not write.done()
        finally:
            stop.cancel()
            if not write.done():
                write.cancel()
        if stopped:
            logger.warning(
                "aggregates of building %s not written when the worker stopped: its message is not committed, "
                "the partition's next owner reads it again", building_id,
            )  # fmt: skip
            raise _StopWhileWriting
        write.result()

    def _sequence(self, event: EventT[bytes], building_id: str) -> LogSequence | None:
        """The delivery-log numbers of the message's readings; None without them (offset dedup only)."""
        header = (event.headers or {}).get(SEQUENCE_HEADER)
        if header is None:
            return None
        try:
            return decode_sequence(header if isinstance(header, bytes) else str(header).encode())
        except DecodeError as exc:
            logger.warning("building %s, offset %s: %s; deduplicated by offset only", building_id, event.message.offset, exc)
            return None

    def _apply(
        self, processor: StreamProcessor, payload: bytes, sequence: LogSequence | None = None, applied: int = 0
    ) -> list[AggregateRecord]:
        if payload == FLUSH_MESSAGE:
            return processor.flush()
        readings = decode_batch(payload)
        if sequence is not None and len(sequence.seqs) != len(readings):
            logger.warning("%s header of %s numbers for %s readings ignored", SEQUENCE_HEADER, len(sequence.seqs), len(readings))
        elif sequence is not None and sequence.seqs[0] <= applied:
            # The first part was applied from an earlier send (this one read more of the log): skip that part.
            fresh = [reading for reading, seq in zip(readings, sequence.seqs, strict=True) if seq > applied]
            self.stats.resent += len(readings) - len(fresh)
            readings = fresh
        result = processor.process(readings)
        self.stats.batches += 1
        self.stats.readings += len(readings)
        self.stats.rejected += len(result.rejected)
        if result.rejected:
            self.sensor.on_worker_left_out("rejected", len(result.rejected))
        # The processor quarantines what it cannot use (a poison pill included) and goes on; there is no
        # dead-letter store on this side of Kafka, so say what was set aside.
        for reading, reason in result.rejected:
            logger.warning("reading of %s at %s set aside: %s", reading.point_id, reading.ts.isoformat(), reason)
        for point_id, judgement in result.judged:  # a held counter reading judged (a glitch, a re-base...)
            level = logging.DEBUG if judgement.verdict is Verdict.JITTER else logging.WARNING
            logger.log(level, "%s", judgement.describe(point_id))
        self.stats.late += len(result.late)
        return processor.advance()

    def _restore(self, building_id: str) -> tuple[StreamProcessor, int]:
        saved: bytes | None = self.table.get(building_id.encode())
        cached = self._cache.get(building_id)
        if cached is not None and saved is not None and (cached[1] is saved or cached[1] == saved):
            return cached[0], cached[2]
        state: dict[str, Any] | None = None
        covered = -1
        if saved is not None:
            state = json.loads(saved)
            if state.get("format_version") != STATE_FORMAT_VERSION:
                msg = f"state of building {building_id}: format {state.get('format_version')} is not {STATE_FORMAT_VERSION}"
                raise ConfigError(msg)
            covered = int(state["offset"])
        if cached is not None and cached[2] > covered:
            # The table went back behind what this worker saved: a rebalance re-read the changelog up to an end
            # read before this worker's last writes reached it, and put older values over them (issue 15,
            # scale-out losses under load). Restoring those would skip, as already applied, the messages
            # between the two offsets; their state is the cached one (a building's state is a function of
            # the messages of its partition up to the offset), so it is kept.
            logger.warning(
                "state of building %s in the table covers offset %s, this worker saved up to %s: "
                "keeping its newer state (changelog re-read stale)", building_id, covered, cached[2],
            )  # fmt: skip
            return cached[0], cached[2]
        # No cache, or the table moved on without us (another worker had the partition): restore from the table.
        processor = StreamProcessor(self._building_inventory(building_id), self.settings)
        self._applied[building_id] = {}
        if state is not None:
            processor.load(state["processor"])
            # Absent from the states saved before the forwarder sent sequence numbers.
            self._applied[building_id] = {str(k): int(v) for k, v in state.get("logs", {}).items()}
        return processor, covered

    def _save(self, building_id: str, processor: StreamProcessor, offset: int, sequence: LogSequence | None = None) -> None:
        applied = self._applied.setdefault(building_id, {})
        if sequence is not None and sequence.last > applied.get(sequence.log_id, 0):
            # The log just used goes last; the oldest is forgotten past MAX_LOGS (a log made again has a new id).
            applied.pop(sequence.log_id, None)
            applied[sequence.log_id] = sequence.last
            while len(applied) > MAX_LOGS:
                del applied[next(iter(applied))]
        state = {
            "format_version": STATE_FORMAT_VERSION,
            "offset": offset,
            "logs": applied,
            "processor": processor.to_dict(),
        }
        value = json.dumps(state).encode()
        self.table[building_id.encode()] = value
        self._cache[building_id] = (processor, value, offset)

    def _building_inventory(self, building_id: str) -> Inventory:
        inventory = self._inventories.get(building_id)
        if inventory is None:
            inventory = self._inventories[building_id] = building_inventory(self.inventory, building_id)
        return inventory


class _RebalanceSensor(faust.Sensor):
    """Counts and times the worker's rebalances (faust calls it at their start and end)."""

    def __init__(self, runner: FaustRunner) -> None:
        super().__init__()
        self.runner = runner

    def on_rebalance_start(self, app: faust.types.AppT) -> dict[str, Any]:
        # The positions are kept: a partition this worker keeps goes on from where it was (faust seeks it back to
        # its committed offset, and what comes again below the position is a redelivery). Forgetting them here let
        # a kept partition go on past messages never handled, unseen (issue 15, a SIGTERM of a busy worker).
        return {"started": time.monotonic()}

    def on_rebalance_end(self, app: faust.types.AppT, state: dict[str, Any]) -> None:
        seconds = time.monotonic() - float(state.get("started", time.monotonic()))
        runner = self.runner
        runner.stats.rebalances += 1
        name = runner.topic.get_topic_name()
        partitions = sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == name)
        # A partition gone to another worker moves on there: if it comes back, its position is the group's
        # committed offset again. (A message of it handed over before this point is one of a partition kept.)
        for gone in set(runner._position) - set(partitions):
            del runner._position[gone]
            runner._rereads.pop(gone, None)
        logger.info("rebalance %s ended after %.1f s: source partitions %s", runner.stats.rebalances, seconds, partitions)
        runner.sensor.on_worker_rebalance(seconds, partitions)


def _seek_uncommitted_to_start(app: faust.App, topic: str) -> None:
    """Make faust's seek back to the committed offsets move a source partition without a commit to its start.

    faust drops the records a fetch returns while its flow is stopped (a
    rebalance, a table recovery) and seeks every partition back to its
    committed offset so they are fetched again. aiokafka's
    ``seek_to_committed`` moves only partitions committed past 0; one never
    committed stays after the dropped records, faust delivers the next ones and
    commits past the hole. That lost whole hours of the buildings of a killed
    worker's partitions when it had committed nothing yet (issue 15, the
    scale-out test's missing windows). Here such a partition of ``topic`` is
    sent back to its start (``earliest``, as the app's offset reset): what the
    table already covers is skipped through its offset, the rest is applied.
    Other topics (the table's changelog) keep faust's own behaviour.
    """
    thread = getattr(app.consumer, "_thread", None)
    if thread is None or getattr(thread, "_econome_seek", False):
        return

    async def seek_to_committed() -> Mapping[TopicPartition, int | None]:
        committed: Mapping[TopicPartition, int | None] = await thread.call_thread(
            _seek_to_committed_or_start, thread._ensure_consumer(), topic
        )
        return committed

    thread.seek_to_committed = seek_to_committed
    thread._econome_seek = True


async def _seek_to_committed_or_start(consumer: AIOKafkaConsumer, topic: str) -> Mapping[TopicPartition, int | None]:
    """Seek to the committed offsets (aiokafka), then partitions of ``topic`` committed nowhere (or at 0) to their start."""
    committed: dict[TopicPartition, int | None] = await consumer.seek_to_committed()
    fresh = [tp for tp, offset in committed.items() if tp.topic == topic and (offset is None or offset <= 0)]
    if fresh:
        logger.info("source partitions %s have no committed offset: read from their start", sorted(tp.partition for tp in fresh))
        await consumer.seek_to_beginning(*fresh)
    return committed


_Result = TypeVar("_Result")


async def _call_kafka(
    app: faust.App, fun: Callable[..., Awaitable[_Result]], *args: Any
) -> _Result:
    """Run ``fun(aiokafka consumer, *args)`` on the thread faust runs its aiokafka consumer on."""
    thread: Any = app.consumer._thread  # type: ignore[attr-defined]  # faust's ThreadDelegateConsumer
    result: _Result = await thread.call_thread(fun, thread._ensure_consumer(), *args)
    return result


async def _committed_offset(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """The group's committed offset of the partition, asked of the broker (None: never committed)."""
    committed: int | None = await consumer.committed(tp)
    return committed


async def _seek_kafka(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
    """The aiokafka seek, which also drops what it has fetched of the partition and not handed over yet."""
    consumer.seek(tp, offset)


def _keep_uncommitted(consumer: Any, message: Any) -> None:
    """Mark a message done for faust without acknowledging its offset.

    faust's commit counts the acknowledged offsets; this one is not among them,
    so the commit stops before it, and a stop does not wait for it either.
    """
    from faust.types.tuples import ack_lock

    with ack_lock:
        message.acked = True
    consumer._unacked_messages.discard(message)


class _ReadOffsets(dict[TP, int | None]):
    """faust's read offsets (``Consumer._read_offset``), with none kept for the source topic."""

    def __init__(self, topic: str, offsets: Mapping[TP, int | None]) -> None:
        super().__init__()
        self.topic = topic
        self.update(offsets)

    def __missing__(self, tp: TP) -> None:
        return None

    def __setitem__(self, tp: TP, offset: int | None) -> None:
        if tp.topic != self.topic:
            super().__setitem__(tp, offset)

    def update(self, *others: Any, **more: Any) -> None:
        for tp, offset in dict(*others, **more).items():
            self[tp] = offset


def _leave_source_order_to_the_guard(app: faust.App, topic: str) -> None:
    """Make faust leave the order of ``topic``'s messages to :meth:`FaustRunner.step`.

    faust's fetch loop keeps a read offset per partition: a message below it
    is dropped as read already, and a jump above it counts the offsets in
    between as acknowledged, so its commit passes them. In the source topic,
    whose offsets are contiguous, a jump is messages passed over, never
    handled; and after a seek back to them (the guard's) a message the loop
    was still handing over when the seek came moved that offset past them
    again, so they were dropped when they came (seen under load: seven seeks
    before the gap was read). For ``topic``, faust keeps no read offset and
    notes no gap: every message fetched reaches the agent, whose guard applies
    them in order and skips what it has applied. Other topics keep faust's behaviour.
    """
    consumer: Any = app.consumer
    if getattr(consumer, "_econome_guarded", False):
        return
    consumer._read_offset = _ReadOffsets(topic, consumer._read_offset)
    add_gap = consumer._add_gap

    async def no_gap_in_source(tp: TP, offset_from: int, offset_to: int) -> None:
        if tp.topic == topic:
            logger.debug("partition %s: offsets %s–%s passed over, not counted", tp.partition, offset_from, offset_to)
            return
        await add_gap(tp, offset_from, offset_to)

    consumer._econome_add_gap = add_gap  # FaustRunner._pass_absent acknowledges offsets that never come with it
    consumer._add_gap = no_gap_in_source
    consumer._econome_guarded = True


def _keep_queued_records_on_resume(app: faust.App) -> None:
    """Make faust's flow control resume without emptying the agents' queues.

    At the end of a table recovery faust resumes the source partitions, seeks
    them to the committed offsets, then resumes its flow control, which
    empties every agent's queue: the records fetched in between (their offsets
    already marked as read) were dropped, and the next ones handled and
    committed past them (issue 15: the scale-out test lost the windows of one
    message of a building, on a surviving worker's own partitions). The queues
    are still emptied where a rebalance starts (``flow_control.clear()`` when
    partitions are revoked), and a record fetched before the rebalance is
    skipped by faust's stream (its generation is an older one); a record kept
    here that the seek fetches again is skipped through the table's offset.
    A kept record beyond the seek's offset is handed over before the records
    the seek fetches again (the likely source of issue 15's "38 after 10"):
    :meth:`FaustRunner.step` holds it back and reads the gap again.
    """
    flow = app.flow_control
    if getattr(flow, "_econome_keep", False):
        return

    def resume() -> None:
        # mode's FlowControlEvent.resume, without its clear().
        flow._suspend.clear()
        flow._resume.set()

    flow.resume = resume  # type: ignore[method-assign]  # the workaround replaces one method of this instance
    flow._econome_keep = True  # type: ignore[attr-defined]  # marks the instance as patched


def _leave_group_in_generation_zero(app: faust.App) -> None:
    """Make the consumer send LeaveGroup when it closes in group generation 0 (Tansu defect B3).

    aiokafka leaves the group on close only when the generation is above 0;
    Kafka numbers generations from 1, Tansu from 0, so on Tansu a clean stop in
    the first generation left the partitions to a dead member until its session
    expired. The consumer's own leave step is replaced, on this instance, by one
    that also leaves in generation 0: it still runs at close, after the last
    commit and once the heartbeat has stopped (leaving earlier would make the
    coordinator join again as a new member). On a real Kafka the generation is
    never 0 there, and this changes nothing.
    """
    from aiokafka.protocol.group import JoinGroupRequest, LeaveGroupRequest

    consumer = getattr(getattr(app.consumer, "_thread", None), "_consumer", None)
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None or getattr(coordinator, "_econome_b3", False):
        return
    leave = coordinator._maybe_leave_group

    async def maybe_leave_group() -> None:
        if (
            coordinator.generation == 0
            and coordinator._group_instance_id is None
            and coordinator.member_id != JoinGroupRequest.UNKNOWN_MEMBER_ID
        ):
            try:
                await coordinator._send_req(LeaveGroupRequest(coordinator.group_id, coordinator.member_id))
            except KafkaError as exc:
                logger.warning("LeaveGroup (generation 0) failed: %r", exc)
            else:
                logger.info("left group %s (generation 0: Tansu defect B3)", coordinator.group_id)
        await leave()

    coordinator._maybe_leave_group = maybe_leave_group
    coordinator._econome_b3 = True


def make_app(
    inventory: Inventory,
    broker_url: str,
    *,
    app_id: str,
    partitions: int,
    sink: AggregateSink,
    settings: StreamSettings | None = None,
    topic: str = SOURCE_TOPIC,
    store: str = "memory://",
    session_timeout: timedelta = timedelta(seconds=3),
    heartbeat_interval: timedelta | None = None,
    rebalance_timeout: timedelta | None = None,
    commit_interval: timedelta = timedelta(seconds=1),
    data_dir: Path | None = None,
    fix_end_offsets: bool = False,
    web_port: int | None = None,
    sensor: Sensor | None = None,
) -> FaustRunner:
    """Build the faust app that aggregates readings per building.

    The source topic must exist with ``partitions`` partitions before the app
    starts (faust does not create it; see :func:`econome.localservers.create_topic`).
    The table's changelog topic, ``<app_id>-econome-state-changelog``, has as many
    partitions and is created by faust.

    Args:
        inventory: the portfolio.
        broker_url: ``kafka://host:port``, or several bootstrap servers ``kafka://h1:port,h2:port``.
        app_id: the faust app id, also the consumer group.
        partitions: partitions of the source topic and of the table.
        sink: where aggregates go.
        settings: the processor's settings.
        topic: the source topic's name.
        store: the table store (``memory://``, or ``rocksdb://`` in production).
        session_timeout: the consumer group session timeout: how long a killed
            worker's partitions wait before another takes them; short on Tansu (defect B2).
        heartbeat_interval: how often the consumer tells the group it lives
            (a sixth of the session timeout by default).
        rebalance_timeout: how long the group waits for its members to rejoin
            during a rebalance (twice the session, 10 s at least, by default).
        commit_interval: how often the offsets handled are committed; what a
            killed worker handled after its last commit is delivered again (and skipped
            through the table's offset, or overwritten in the sink).
        data_dir: faust's data directory (a temporary one by default).
        fix_end_offsets: read the changelog end offsets from a fetch's high
            watermark before recovering the table: Tansu's ListOffsets answers
            too low (defect B1), and the table would be recovered stale.
        web_port: serve faust's web views on this port; off when None.
        sensor: metrics hooks (messages, lag, stalls, rebalances).

    Returns:
        The runner; its ``app`` is the faust app.

    Example::

        runner = make_app(inventory, "kafka://127.0.0.1:9092", app_id="econome", partitions=4, sink=ListSink())
    """
    session_s = session_timeout.total_seconds()
    app = faust.App(
        app_id,
        broker=[f"kafka://{server}" for server in kafka_servers(broker_url)],
        store=store,
        datadir=str(data_dir or tempfile.mkdtemp(prefix="econome-faust-")),
        topic_partitions=partitions,
        web_enabled=web_port is not None,
        web_port=web_port or 6066,
        web_bind="127.0.0.1",
        broker_session_timeout=session_s,
        broker_heartbeat_interval=heartbeat_interval.total_seconds() if heartbeat_interval else max(session_s / 6, 0.1),
        broker_rebalance_timeout=rebalance_timeout.total_seconds() if rebalance_timeout else max(session_s * 2, 10.0),
        broker_commit_interval=commit_interval.total_seconds(),
        # Tansu assigns at once; faust's default waits 3 s for more workers to join before recovering.
        stream_recovery_delay=0.0,
        consumer_auto_offset_reset="earliest",
        producer_max_request_size=8 * 1024 * 1024,
        consumer_max_fetch_size=8 * 1024 * 1024,
    )
    source = app.topic(
        topic, partitions=partitions, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    table: TableT[bytes, bytes] = app.Table(
        STATE_TABLE,
        partitions=partitions,
        # bytes in and out: faust picks the "raw" codec for the table, its store and its changelog from these types.
        key_type=bytes,
        value_type=bytes,
    )
    runner = FaustRunner(inventory, app, source, table, settings, sink, fix_end_offsets, sensor)
    app.agent(source, name="econome-aggregate")(runner.consume)
    return runner


# -- publishing ------------------------------------------------------------------------


async def publish(
    readings: Iterable[Reading],
    target: TopicT | AIOKafkaProducer,
    inventory: Inventory,
    *,
    topic: str = SOURCE_TOPIC,
    max_batch: int = MAX_BATCH,
    end: bool = True,
    partition_map: PartitionMap | None = None,
    seqs: Sequence[int] | None = None,
    log_id: str | None = None,
) -> int:
    """Send readings as batches of one building each, keyed by building id, to the building's partition.

    Args:
        readings: in time order.
        target: the runner's faust topic (the app's producer must be running),
            or a started aiokafka producer.
        inventory: routes each point to its building.
        topic: the topic name, when ``target`` is an aiokafka producer.
        max_batch: readings per message at most.
        end: after the data, send the flush control message of every building
            of the inventory: the input is bounded and ends here.
        partition_map: which partition carries each building; by default the
            balanced map of :func:`streams.partitioning.assign_partitions` over
            the topic's partition count.
        seqs: the delivery-log sequence number of each reading, increasing, with
            ``log_id`` the log's identity: each message carries its readings'
            numbers (:class:`LogSequence`), so that the worker applies a batch
            sent again only once. Without them, the worker skips only what it
            reads again at an offset it already applied.
        log_id: the delivery log the numbers belong to (:attr:`streams.buffer.DeliveryLog.log_id`).

    Returns:
        The number of messages sent (and acknowledged by the broker).

    Raises:
        ConfigError: the map is for another partition count than the topic's.
        ValueError: ``seqs`` without ``log_id``, or not one per reading.
    """
    send = _sender(target, topic)
    partitions = await _partition_count(target, topic)
    pmap = partition_map or assign_partitions(inventory, partitions)
    if pmap.partitions != partitions:
        msg = f"the partition map is for {pmap.partitions} partitions, topic {topic} has {partitions}"
        raise ConfigError(msg)
    pending: list[Awaitable[Any]] = []
    if seqs is None:
        for building_id, batch in batch_readings(inventory, readings, max_batch):
            pending.append(await send(building_id.encode(), encode_batch(batch), pmap.partition_of(building_id), None))
    else:
        readings = list(readings)
        if log_id is None or len(seqs) != len(readings):
            msg = f"publish: {len(seqs)} sequence numbers for {len(readings)} readings, log {log_id!r}"
            raise ValueError(msg)
        numbered = zip(readings, seqs, strict=True)
        for building_id, pairs in _batches(inventory, numbered, lambda pair: pair[0], max_batch):
            header = encode_sequence(LogSequence(log_id, [seq for _, seq in pairs]))
            value = encode_batch([reading for reading, _ in pairs])
            pending.append(await send(building_id.encode(), value, pmap.partition_of(building_id), header))
    if end:
        for _, building in inventory.buildings():
            pending.append(await send(building.id.encode(), FLUSH_MESSAGE, pmap.partition_of(building.id), None))
    # Sends are pipelined; wait until the broker has acknowledged every message.
    await asyncio.gather(*pending)
    return len(pending)


async def _partition_count(target: TopicT | AIOKafkaProducer, topic: str) -> int:
    if isinstance(target, AIOKafkaProducer):
        return len(await target.partitions_for(topic))
    return target.partitions or target.app.conf.topic_partitions


_Send = Callable[[bytes, bytes, int, bytes | None], Awaitable[Awaitable[Any]]]


def _sender(target: TopicT | AIOKafkaProducer, topic: str) -> _Send:
    """A send function for the target: key, value, partition and the ``econome-seq`` header (or None)."""
    if isinstance(target, AIOKafkaProducer):
        producer = target

        async def send_kafka(key: bytes, value: bytes, partition: int, sequence: bytes | None) -> Awaitable[Any]:
            headers = [(SEQUENCE_HEADER, sequence)] if sequence is not None else None
            delivered: Awaitable[Any] = await producer.send(topic, value, key=key, partition=partition, headers=headers)
            return delivered

        return send_kafka
    faust_topic = target

    async def send_faust(key: bytes, value: bytes, partition: int, sequence: bytes | None) -> Awaitable[Any]:
        headers = {SEQUENCE_HEADER: sequence} if sequence is not None else None
        return await faust_topic.send(key=key, value=value, partition=partition, headers=headers)

    return send_faust


# -- Tansu defect B1 -----------------------------------------------------------------


def _fix_end_offsets(app: faust.App) -> None:
    """Make the app's consumer report end offsets from a fetch's high watermark (Tansu defect B1)."""
    consumer = app.consumer
    reported_highwaters = consumer.highwaters
    servers = ",".join(url.authority for url in app.conf.broker_consumer) or None

    async def highwaters(*partitions: TP) -> Mapping[TP, int]:
        reported = dict(await reported_highwaters(*partitions))
        if servers is None:
            return reported
        return await true_end_offsets(servers, reported)

    consumer.highwaters = highwaters  # type: ignore[method-assign]  # the workaround replaces one method of this instance


async def true_end_offsets(servers: str, reported: Mapping[TP, int], timeout: timedelta = timedelta(seconds=10)) -> dict[TP, int]:
    """Correct end offsets reported by ListOffsets with the high watermark of a fetch.

    Tansu answers ListOffsets(latest) with the base offset of the last batch + 1
    (defect B1); the high watermark in a Fetch response is right. Each partition
    with data is fetched once from just before the reported end.

    Args:
        servers: ``host:port`` of the broker.
        reported: end offsets as ListOffsets gave them.
        timeout: how long to try.

    Returns:
        The corrected end offsets (never lower than reported).
    """
    result = dict(reported)
    todo = {tp: end for tp, end in reported.items() if end}
    if not todo:
        return result
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = {TopicPartition(tp.topic, tp.partition): tp for tp in todo}
        consumer.assign(list(partitions))
        for kafka_tp, tp in partitions.items():
            consumer.seek(kafka_tp, todo[tp] - 1)
        deadline = time.monotonic() + timeout.total_seconds()
        waiting = dict(partitions)
        while waiting and time.monotonic() < deadline:
            await consumer.getmany(timeout_ms=200)
            for kafka_tp, tp in list(waiting.items()):
                highwater = consumer.highwater(kafka_tp)
                if highwater is not None:
                    result[tp] = max(highwater, reported[tp])
                    del waiting[kafka_tp]
        if waiting:
            logger.warning("no high watermark for %s: keeping the reported end offsets", sorted(waiting.values()))
    except KafkaError as exc:
        logger.warning("could not correct end offsets, keeping the reported ones: %s", exc)
    finally:
        await consumer.stop()
    return result


# -- the source topic -------------------------------------------------------------------


async def ensure_topic(bootstrap: str, topic: str, partitions: int, timeout: timedelta = timedelta(seconds=10)) -> None:
    """Create the source topic with ``partitions`` partitions, or check the one there.

    The forwarder and every worker call it at start, so whichever starts first
    creates the topic, and a worker configured with another partition count
    than the topic's stops at once instead of failing inside faust
    (``PartitionsMismatch``).

    Raises:
        SinkError: the broker at ``bootstrap`` cannot be reached (the message names it).
        ConfigError: the topic exists with another partition count.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    address = ",".join(kafka_servers(bootstrap))
    timeout_ms = int(timeout.total_seconds() * 1000)
    admin = AIOKafkaAdminClient(bootstrap_servers=address, request_timeout_ms=timeout_ms)
    try:
        await asyncio.wait_for(admin.start(), timeout.total_seconds())
        # aiokafka answers with per-topic error codes rather than raising them.
        response = await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        refused = [
            (code, message)
            for _, code, *rest in getattr(response, "topic_errors", [])
            for message in (rest[0] if rest else "",)
            if code not in (0, TopicAlreadyExistsError.errno)
        ]
        described = await admin.describe_topics([topic])
    except (KafkaError, TimeoutError, OSError) as exc:
        msg = f"Kafka {address} unreachable (ECONOME_KAFKA_URL): {exc!r}"
        raise SinkError(msg) from exc
    finally:
        await admin.close()
    if refused:
        msg = f"Kafka {address}: creating topic {topic} failed: error {refused[0][0]} {refused[0][1] or ''}".rstrip()
        raise SinkError(msg)
    found = len(described[0]["partitions"]) if described else 0
    if found != partitions:
        msg = (f"Kafka {address}: topic {topic} has {found} partitions, the settings say {partitions} "
               "(ECONOME_KAFKA_PARTITIONS must match the topic on the forwarder and every worker)")
        raise ConfigError(msg)


# -- forwarding from the in-process pipeline ---------------------------------------------


class KafkaForwarder:
    """Publishes the pipeline's readings to the runner's source topic, batched per building.

    It is the pipeline's :class:`~streams.pipeline.Forwarder` when ``econome run``
    uses the faust runner: the delivery log's ``forward`` cursor moves only once
    Kafka has acknowledged a batch, so a crash re-sends rather than loses. A
    batch sent again lands at new offsets (the first send was cancelled by a
    stop, or timed out after the broker took part of it), so each message
    carries the log sequence numbers of its readings (:class:`LogSequence`),
    and the worker skips the readings it has applied already.

    Kafka unreachable is not fatal: :meth:`start` and :meth:`send` raise
    :class:`~streams.errors.SinkError`, the pipeline keeps the readings in its
    delivery log and tries again (:meth:`send` connects first when
    :meth:`start` could not).

    Example::

        forwarder = KafkaForwarder(inventory, "127.0.0.1:9092", partitions=12, map_path=Path("var/partitions.json"))
        await forwarder.start()

    Each building's batches go to its partition in the balanced map of
    :mod:`streams.partitioning`; with ``map_path``, the map is kept in that file
    so a building added later does not move the others (their state stays on their partition).
    """

    def __init__(
        self,
        inventory: Inventory,
        bootstrap: str,
        *,
        topic: str = SOURCE_TOPIC,
        partitions: int = 12,
        timeout: timedelta = timedelta(seconds=10),
        map_path: Path | None = None,
    ) -> None:
        self.inventory = inventory
        self.partition_map = (
            assign_partitions(inventory, partitions)
            if map_path is None
            else stored_partition_map(inventory, partitions, map_path)
        )
        self.bootstrap = ",".join(kafka_servers(bootstrap))
        self.topic = topic
        self.partitions = partitions
        self.timeout = timeout
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Create the source topic if it is missing, and start the producer; nothing once started.

        Raises:
            SinkError: the broker cannot be reached.
            ConfigError: the topic exists with another partition count.
        """
        if self._producer is not None:
            return
        await ensure_topic(self.bootstrap, self.topic, self.partitions, self.timeout)
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, max_request_size=8 * 1024 * 1024)
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            msg = f"Kafka {self.bootstrap} unreachable: {exc}"
            raise SinkError(msg) from exc
        self._producer = producer

    async def send(self, readings: list[Reading], *, seqs: Sequence[int] | None = None, log_id: str | None = None) -> None:
        """Publish readings; returns once the broker acknowledged them.

        Args:
            readings: in delivery-log order.
            seqs: their sequence numbers in the delivery log, sent along (see :func:`publish`).
            log_id: the log's identity.

        Raises:
            SinkError: the broker refused or could not be reached.
            ConfigError: the broker is back, with a topic of another partition count.
        """
        await self.start()
        assert self._producer is not None  # noqa: S101 - start() set it or raised
        try:
            await asyncio.wait_for(
                publish(
                    readings, self._producer, self.inventory, topic=self.topic, end=False,
                    partition_map=self.partition_map, seqs=seqs, log_id=log_id,
                ),
                self.timeout.total_seconds(),
            )  # fmt: skip
        except (KafkaError, TimeoutError) as exc:
            msg = f"Kafka {self.bootstrap}: publishing {len(readings)} readings failed: {exc!r}"
            raise SinkError(msg) from exc

    async def stop(self) -> None:
        """Stop the producer, flushing what it holds."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
