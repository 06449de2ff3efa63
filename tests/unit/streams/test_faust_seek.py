"""Records faust drops or passes over are fetched again, and none is applied ahead of one not handled.

Issue 15 (the scale-out test's missing windows): a fetch that returns while
faust's flow is stopped (a rebalance, a table recovery) is dropped, and faust
seeks back to the committed offsets. aiokafka's ``seek_to_committed`` moves
only partitions committed past 0, so on the partitions of a killed worker that
had committed nothing, the survivor went on after the dropped records and
committed past them: hours of those buildings were never aggregated.

Then the generic guard (:meth:`FaustRunner.step`): a message handed over
ahead of one this worker has not handled is held back (not applied, not
acknowledged) and its partition read again from the first one missing; the
position of a partition kept through a rebalance is not forgotten. Issue 15's
hostile review found both shapes: offset 38 handled right after 10 (the
building's table offset then skipped its batches among 11-37), and a worker
that kept its partition through a SIGTERM's rebalance going on past offsets
9-18 it never handled.

faust's own consumer code runs here (``Consumer.getmany``, ``perform_seek``,
``ack``, ``_new_offset``: what it would commit); the fake is at the Kafka boundary: :class:`FakeKafka` stands for the aiokafka
consumer (positions, committed offsets, and aiokafka's seek rules), and
:class:`FakeThread` for the thread faust runs it on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition
from faust.events import Event
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from inventory import load_inventory
from simulator.physics import generate_history
from streams.aggregate import AggregateRecord
from streams.faust_runner import (
    FaustRunner,
    ListSink,
    _keep_queued_records_on_resume,
    _leave_source_order_to_the_guard,
    _seek_uncommitted_to_start,
    batch_readings,
    building_inventory,
    encode_batch,
    make_app,
)
from streams.metrics import PrometheusSensor
from streams.record import Reading
from tests.conftest import ROOT

TOPIC = "readings"
CHANGELOG = "app-econome-state-changelog"
MESSAGES = 10


class FakeKafka:
    """The aiokafka consumer: a position per partition, committed offsets, and aiokafka's seek rules."""

    def __init__(self, commits: dict[TopicPartition, int | None]) -> None:
        self.commits = commits
        # A partition without a commit starts at its beginning (auto_offset_reset="earliest").
        self.position = {tp: offset or 0 for tp, offset in commits.items()}
        self.first = 0  # the first offset the topic still holds (retention)
        self.seeks: list[tuple[int, int]] = []

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position[tp] = offset
        self.seeks.append((tp.partition, offset))

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.commits.get(tp)

    def fetch(self, tp: TopicPartition, count: int) -> list[ConsumerRecord[bytes, bytes]]:
        start = self.position[tp]
        offsets = range(start, min(start + count, MESSAGES))
        self.position[tp] = offsets.stop
        return [ConsumerRecord(tp.topic, tp.partition, o, 0, 0, b"b", b"[]", None, 1, 2, []) for o in offsets]

    async def seek_to_committed(self) -> dict[TopicPartition, int | None]:
        for tp, offset in self.commits.items():
            if offset and offset > 0:  # as aiokafka 0.14: a partition committed nowhere, or at 0, is not moved
                self.position[tp] = offset
        return dict(self.commits)

    async def seek_to_beginning(self, *partitions: TopicPartition) -> bool:
        for tp in partitions:
            self.position[tp] = 0
        return True


class FakeThread:
    """faust's consumer thread: runs the aiokafka calls; a fetch may return while a rebalance stops the flow."""

    def __init__(self, kafka: FakeKafka, runner: FaustRunner) -> None:
        self.kafka = kafka
        self.runner = runner
        self.stop_flow_during_fetch = False

    def _ensure_consumer(self) -> FakeKafka:
        return self.kafka

    async def call_thread(self, fun: Any, *args: Any) -> Any:
        return await fun(*args)

    async def seek_to_committed(self) -> Any:  # faust's own: the aiokafka call on the thread
        return await self.call_thread(self.kafka.seek_to_committed)

    def assignment(self) -> set[TP]:
        return {TP(tp.topic, tp.partition) for tp in self.kafka.commits}

    async def earliest_offsets(self, *partitions: TP) -> dict[TP, int]:
        return dict.fromkeys(partitions, self.kafka.first)

    def highwater(self, tp: TP) -> int:
        return MESSAGES

    async def getmany(self, active_partitions: Any, timeout: float) -> dict[TP, list[ConsumerRecord[bytes, bytes]]]:
        records = {TP(TOPIC, 0): self.kafka.fetch(TopicPartition(TOPIC, 0), 4)}
        if self.stop_flow_during_fetch:
            self.runner.app.consumer.stop_flow()
        return records


def _runner(committed: int | None, sink: Any = None, partitions: int = 1) -> tuple[FaustRunner, FakeThread]:
    inventory = load_inventory(ROOT / "examples" / "commune.yaml")
    runner = make_app(
        inventory, "kafka://127.0.0.1:1", app_id="app", partitions=partitions, sink=sink or ListSink(), topic=TOPIC,
        sensor=PrometheusSensor(),
    )  # fmt: skip
    kafka = FakeKafka(
        {**{TopicPartition(TOPIC, p): committed for p in range(partitions)}, TopicPartition(CHANGELOG, 0): None}
    )
    thread = FakeThread(kafka, runner)
    consumer: Any = runner.app.consumer
    consumer._thread.thread_loop.close()  # the real thread's loop, never started
    consumer._thread = thread  # the boundary: no broker, no thread
    return runner, thread


async def _offsets(runner: FaustRunner) -> list[int]:
    return [message.offset async for _, message in runner.app.consumer.getmany(timeout=0)]


@pytest.mark.parametrize(("committed", "first"), [(None, 0), (0, 0), (3, 3)])
async def test_records_dropped_while_the_flow_is_stopped_are_fetched_again(
    committed: int | None, first: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streams.faust_runner")
    runner, thread = _runner(committed)
    _seek_uncommitted_to_start(runner.app, TOPIC)  # what FaustRunner.start does
    consumer = runner.app.consumer
    consumer.resume_partitions([TP(TOPIC, 0)])  # the source partition, as faust resumes it after a recovery
    consumer.resume_flow()
    thread.stop_flow_during_fetch = True
    assert await _offsets(runner) == []  # fetched, then dropped by faust: the flow stopped meanwhile
    consumer.resume_flow()
    thread.stop_flow_during_fetch = False
    assert await _offsets(runner) == list(range(first, first + 4))
    # The changelog's position is faust's business (its recovery reads it from its own offsets): not moved.
    assert thread.kafka.position[TopicPartition(CHANGELOG, 0)] == 0
    said = "source partitions [0] have no committed offset: read from their start" in caplog.text
    assert said == (first == 0)


async def test_records_queued_when_the_flow_resumes_are_kept_and_those_of_a_revocation_dropped() -> None:
    runner, _ = _runner(None)
    _keep_queued_records_on_resume(runner.app)  # what FaustRunner.start does
    flow = runner.app.flow_control
    queue = runner.app.FlowControlQueue(maxsize=10, clear_on_resume=True)  # as faust makes an agent's queue
    flow.resume()
    queue.put_nowait("fetched before the recovery ends")
    flow.resume()  # faust's end of recovery: the record stays for the agent
    assert queue.qsize() == 1
    flow.suspend()  # partitions revoked: faust suspends and clears the queues itself
    flow.clear()
    assert queue.qsize() == 0
    assert not flow.is_active()
    flow.resume()
    assert flow.is_active()




# -- the guard: nothing applied ahead of a message not handled --------------------------------------

DAY = datetime(2026, 1, 5, tzinfo=UTC)
BUILDING = "ecole-curie"


@functools.cache
def _batches() -> list[bytes]:
    """Six hours of one building, in batches of 120 readings: windows close along the way."""
    inventory = building_inventory(load_inventory(ROOT / "examples" / "commune.yaml"), BUILDING)
    history = generate_history(inventory, DAY, DAY + timedelta(hours=6), timedelta(minutes=1), seed=4)
    unit = {point.id: point.unit for _, point in inventory.points()}
    readings = [Reading(p, ts, v, unit[p]) for ts, p, v in history.rows() if not math.isnan(v)]
    return [encode_batch(batch) for _, batch in batch_readings(inventory, readings, 120)]


class Worker:
    """A runner without a broker, handed messages as faust's stream hands them: tracked, then acked as it moves on."""

    def __init__(self, committed: int | None = None, sink: Any = None) -> None:
        self.runner, self.thread = _runner(committed, sink, partitions=2)
        self.runner.table = {}  # type: ignore[assignment]  # the state table, in memory (no changelog)
        self.consumer: Any = self.runner.app.consumer
        self.consumer.app.topics._acking_topics.add(TOPIC)  # as faust's conductor does for an agent's topic
        _leave_source_order_to_the_guard(self.runner.app, TOPIC)  # what FaustRunner.start does
        self.sink = self.runner.sink
        self.batches = _batches()

    async def deliver(self, *offsets: int, partition: int = 0) -> None:
        for offset in offsets:
            tp = TP(TOPIC, partition)
            message = ConsumerMessage(
                TOPIC, partition, offset, 0.0, 0, {}, BUILDING.encode(), self.batches[offset], None, tp=tp
            )
            self.consumer.track_message(message)
            event = Event(self.runner.app, message.key, message.value, {}, message)
            try:
                await self.runner.step(event)
            finally:
                event.ack()  # faust acks an event once the agent moves on, or raises

    def commit(self, partition: int = 0) -> int | None:
        """What faust would commit now (its ``_new_offset``, from the offsets acknowledged)."""
        offset: int | None = self.consumer._new_offset(TP(TOPIC, partition))
        return offset

    def samples(self) -> dict[str, float]:
        sensor = self.runner.sensor
        assert isinstance(sensor, PrometheusSensor)
        return {
            s.name: s.value for m in sensor.registry.collect() for s in m.samples
            if "reread" in s.name and s.name.endswith("_total")
        }  # fmt: skip


def _view(sink: Any) -> dict[Any, dict[str, float]]:
    assert isinstance(sink, ListSink)
    return sink.view()


async def test_a_message_ahead_of_a_gap_is_held_back_and_the_gap_read_again(caplog: pytest.LogCaptureFixture) -> None:
    in_order = Worker()
    await in_order.deliver(*range(6))
    assert in_order.runner.stats.batches == 6

    worker = Worker()
    with caplog.at_level(logging.WARNING, logger="streams.faust_runner"):
        await worker.deliver(0, 1, 5)  # offset 5 handed over ahead of 2-4 (issue 15: 38 after 10)
    assert worker.runner.stats.batches == 2  # not applied
    assert worker.commit() == 2  # faust's commit stops before the gap: 5 is not acknowledged
    assert worker.thread.kafka.seeks == [(0, 2)]  # the partition is read again from the first missing
    assert "re-reading offsets 2–4 of partition 0" in caplog.text
    assert caplog.text.count("re-reading") == 1
    await worker.deliver(2, 3, 4, 5)  # what the seek fetches again
    assert worker.runner.stats.batches == 6
    assert worker.runner.stats.rereads == 1
    assert worker.samples() == {"econome_worker_rereads_total": 1.0, "econome_worker_reread_messages_total": 3.0}
    assert _view(worker.sink) == _view(in_order.sink)
    assert len(_view(worker.sink)) > 10
    assert worker.commit() == 6
    assert not worker.consumer._unacked_messages


async def test_messages_queued_before_the_seek_are_held_back_without_seeking_again() -> None:
    worker = Worker()
    await worker.deliver(0, 3, 4)  # 3 then 4 were fetched before the seek back to 1
    assert worker.thread.kafka.seeks == [(0, 1)]
    assert worker.runner.stats.batches == 1
    await worker.deliver(1, 2, 3, 4)
    assert worker.runner.stats.batches == 5
    assert worker.commit() == 5


async def test_a_gap_the_fetcher_comes_back_to_without_filling_is_sought_again(caplog: pytest.LogCaptureFixture) -> None:
    worker = Worker()
    await worker.deliver(0, 3)
    with caplog.at_level(logging.INFO, logger="streams.faust_runner"):
        await worker.deliver(3)  # the fetcher came back, but to the wrong place: seek again
    assert worker.thread.kafka.seeks == [(0, 1), (0, 1)]
    assert "offset 3 again before 1: seeking back again" in caplog.text
    assert worker.runner.stats.rereads == 1  # one gap
    assert worker.runner.reread_retry == timedelta(seconds=2)  # deploy/OPERATIONS.md says so
    await worker.runner._retry_rereads()  # the health loop, within 2 s of the last seek: nothing
    assert worker.thread.kafka.seeks == [(0, 1), (0, 1)]
    worker.runner._rereads[0].sought -= 2  # nothing came for reread_retry: the health loop seeks again
    with caplog.at_level(logging.INFO, logger="streams.faust_runner"):
        await worker.runner._retry_rereads()
    assert worker.thread.kafka.seeks == [(0, 1), (0, 1), (0, 1)]
    assert "partition 0: offset 1 not read again yet: seeking back again" in caplog.text
    await worker.deliver(1)
    assert worker.runner._rereads == {}


async def test_the_position_of_a_partition_kept_through_a_rebalance_is_not_forgotten(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 15: a worker that kept its partition through a SIGTERM's rebalance went on past offsets it never handled."""
    worker = Worker()
    sensor = next(s for s in worker.runner.app.sensors if type(s).__name__ == "_RebalanceSensor")
    await worker.deliver(0, 1, 2)
    state = sensor.on_rebalance_start(worker.runner.app)
    await worker.deliver(1)  # faust seeks back to the committed offset: a redelivery, skipped by the table
    assert worker.runner.stats.redelivered == 1
    sensor.on_rebalance_end(worker.runner.app, state)  # partition 0 kept
    with caplog.at_level(logging.WARNING, logger="streams.faust_runner"):
        await worker.deliver(5)
    assert worker.runner.stats.batches == 3  # 5 held back: 3 and 4 were never handled here
    assert worker.thread.kafka.seeks == [(0, 3)]
    assert "re-reading offsets 3–4 of partition 0" in caplog.text
    assert worker.commit() == 3


async def test_a_partition_taken_starts_at_the_groups_committed_offset() -> None:
    worker = Worker(committed=2)
    await worker.deliver(0, 1, 2, partition=1)  # 0 and 1 are below the commit: delivered again, applied once
    assert worker.runner.stats.batches == 3
    await worker.deliver(4, partition=1)
    assert worker.thread.kafka.seeks == [(1, 3)]
    # A partition gone to another worker at a rebalance: its position is the group's commit again when it comes back.
    sensor = next(s for s in worker.runner.app.sensors if type(s).__name__ == "_RebalanceSensor")
    worker.thread.kafka.commits = {TopicPartition(TOPIC, 0): None}
    sensor.on_rebalance_end(worker.runner.app, sensor.on_rebalance_start(worker.runner.app))
    assert worker.runner._position == {}
    assert worker.runner._rereads == {}


async def test_offsets_gone_from_the_topic_are_said_and_passed(caplog: pytest.LogCaptureFixture) -> None:
    worker = Worker()
    worker.thread.kafka.first = 3  # retention removed 0-2 before this group read them
    with caplog.at_level(logging.WARNING, logger="streams.faust_runner"):
        await worker.deliver(3, 4)
    assert worker.runner.stats.batches == 2
    assert worker.thread.kafka.seeks == []
    assert "offsets 0–2 are gone from the topic (retention)" in caplog.text


class CancelledSink:
    """A sink whose write is cancelled, as a stop cancels the agent while a write waits."""

    def __init__(self) -> None:
        self.records: list[AggregateRecord] = []

    async def write(self, records: list[AggregateRecord]) -> None:
        raise asyncio.CancelledError


async def test_a_message_not_handled_is_not_committed() -> None:
    worker = Worker(sink=CancelledSink())
    with pytest.raises(asyncio.CancelledError):
        await worker.deliver(*range(6))  # the first batch that closes windows is cancelled at its write
    handled = worker.runner.stats.batches
    assert 0 < handled < 6
    assert worker.commit() == handled - 1  # up to the message cancelled, not past it
    assert not worker.consumer._unacked_messages  # and a stop does not wait for it


async def test_faust_neither_drops_nor_counts_as_acknowledged_source_offsets_by_its_read_offset() -> None:
    """faust's fetch loop drops a message below its read offset, and counts a jump above it as acknowledged."""
    worker = Worker()
    read_offset = worker.consumer._read_offset
    read_offset[TP(TOPIC, 0)] = 60  # the loop handed over 60 after the guard's seek back to 43
    read_offset.update({TP(TOPIC, 1): 7, TP(CHANGELOG, 0): 7})  # as faust's perform_seek sets them
    assert read_offset[TP(TOPIC, 0)] is None  # so 43, fetched again, is not dropped as read already
    assert read_offset[TP(TOPIC, 1)] is None
    assert read_offset[TP(CHANGELOG, 0)] == 7  # the changelog keeps faust's own bookkeeping
    await worker.consumer._add_gap(TP(TOPIC, 0), 1, 4)
    await worker.consumer._add_gap(TP(CHANGELOG, 0), 1, 4)
    assert TP(TOPIC, 0) not in worker.consumer._gap
    assert TP(CHANGELOG, 0) in worker.consumer._gap
