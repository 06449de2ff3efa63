"""Records faust drops while its flow is stopped are fetched again, on a partition never committed too.

Issue 15 (the scale-out test's missing windows): a fetch that returns while
faust's flow is stopped (a rebalance, a table recovery) is dropped, and faust
seeks back to the committed offsets. aiokafka's ``seek_to_committed`` moves
only partitions committed past 0, so on the partitions of a killed worker that
had committed nothing, the survivor went on after the dropped records and
committed past them: hours of those buildings were never aggregated.

faust's own consumer code runs here (``Consumer.getmany``, ``perform_seek``);
the fake is at the Kafka boundary: :class:`FakeKafka` stands for the aiokafka
consumer (positions, committed offsets, and aiokafka's seek rules), and
:class:`FakeThread` for the thread faust runs it on.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition
from faust.types import TP

from inventory import load_inventory
from streams.faust_runner import (
    FaustRunner,
    ListSink,
    _keep_queued_records_on_resume,
    _seek_uncommitted_to_start,
    make_app,
)
from tests.conftest import ROOT

TOPIC = "readings"
CHANGELOG = "app-econome-state-changelog"
MESSAGES = 10


class FakeKafka:
    """The aiokafka consumer: a position per partition, committed offsets, and aiokafka's seek rules."""

    def __init__(self, committed: dict[TopicPartition, int | None]) -> None:
        self.committed = committed
        # A partition without a commit starts at its beginning (auto_offset_reset="earliest").
        self.position = {tp: offset or 0 for tp, offset in committed.items()}

    def fetch(self, tp: TopicPartition, count: int) -> list[ConsumerRecord[bytes, bytes]]:
        start = self.position[tp]
        offsets = range(start, min(start + count, MESSAGES))
        self.position[tp] = offsets.stop
        return [ConsumerRecord(tp.topic, tp.partition, o, 0, 0, b"b", b"[]", None, 1, 2, []) for o in offsets]

    async def seek_to_committed(self) -> dict[TopicPartition, int | None]:
        for tp, offset in self.committed.items():
            if offset and offset > 0:  # as aiokafka 0.14: a partition committed nowhere, or at 0, is not moved
                self.position[tp] = offset
        return dict(self.committed)

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
        return {TP(tp.topic, tp.partition) for tp in self.kafka.committed}

    def highwater(self, tp: TP) -> int:
        return MESSAGES

    async def getmany(self, active_partitions: Any, timeout: float) -> dict[TP, list[ConsumerRecord[bytes, bytes]]]:
        records = {TP(TOPIC, 0): self.kafka.fetch(TopicPartition(TOPIC, 0), 4)}
        if self.stop_flow_during_fetch:
            self.runner.app.consumer.stop_flow()
        return records


def _runner(committed: int | None) -> tuple[FaustRunner, FakeThread]:
    inventory = load_inventory(ROOT / "examples" / "commune.yaml")
    runner = make_app(inventory, "kafka://127.0.0.1:1", app_id="app", partitions=1, sink=ListSink(), topic=TOPIC)
    kafka = FakeKafka({TopicPartition(TOPIC, 0): committed, TopicPartition(CHANGELOG, 0): None})
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


async def _step(runner: FaustRunner, offset: int) -> None:
    message = SimpleNamespace(offset=offset, partition=0)
    event: Any = SimpleNamespace(key=b"nowhere", value=b"[]", headers={}, message=message)
    await runner.step(event)


async def test_a_skip_in_messages_handled_before_the_rebalance_ends_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    """faust hands messages to the agent before it ends the rebalance: the offsets are followed from its start."""
    runner, _ = _runner(None)
    sensor = next(s for s in runner.app.sensors if type(s).__name__ == "_RebalanceSensor")
    await _step(runner, 3)
    state = sensor.on_rebalance_start(runner.app)
    await _step(runner, 1)  # read again from the committed offset: no skip
    await _step(runner, 2)
    with caplog.at_level(logging.WARNING, logger="streams.faust_runner"):
        sensor.on_rebalance_end(runner.app, state)
        await _step(runner, 4)
    assert "partition 0: offset 4 follows 2, messages in between not handled here" in caplog.text
