"""The scale-out guard (:meth:`FaustRunner.step`) never stalls a partition for ever, nor hangs a stop.

Issue 15's hostile review of the guard found four ways: a message whose
handling raises was sought back to without end (poison message); offsets
gone from the topic past the committed offset stopped faust's commits for
ever; a seek back waiting for an offset that never comes (retention during
the re-read, an offset that is no record) looped with only INFO lines; and a
stop while a write waits on InfluxDB hung until SIGKILL. Same harness as
``test_faust_seek``: faust's own consumer code, a fake at the Kafka boundary.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from faust.types import TP

from streams.aggregate import AggregateRecord
from streams.errors import SinkError
from streams.metrics import PrometheusSensor
from tests.unit.streams.test_faust_seek import TOPIC, Worker


def _set_aside(worker: Worker) -> dict[str, float]:
    sensor = worker.runner.sensor
    assert isinstance(sensor, PrometheusSensor)
    return {
        s.labels["reason"]: s.value for m in sensor.registry.collect() for s in m.samples
        if s.name == "econome_worker_set_aside_offsets_total"
    }  # fmt: skip


async def _crash(worker: Worker, *offsets: int) -> None:
    """Deliver messages whose handling raises, as faust's stream does before it restarts the crashed agent."""
    for offset in offsets:
        with pytest.raises(RuntimeError, match="state table not ready"):
            await worker.deliver(offset)


async def test_an_undecodable_message_is_set_aside_at_once_and_its_partition_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = Worker()
    worker.batches = [*worker.batches]  # _batches() is cached: the other tests keep theirs
    worker.batches[1] = b"not json"
    worker.batches[3] = b'[["ecole-curie-elec-energy", 0, 1.0, "kWh", "no such quality"]]'
    with caplog.at_level(logging.WARNING, logger="streams.faust_runner"):
        await worker.deliver(*range(6))
    assert worker.runner.stats.batches == 4  # 0, 2, 4, 5: the partition went on
    assert worker.thread.kafka.seeks == []  # never sought back to the poison
    assert worker.commit() == 6  # acknowledged: faust commits past them
    assert not worker.consumer._unacked_messages
    assert worker.runner.stats.set_aside == 2
    assert _set_aside(worker) == {"undecodable": 2.0}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "partition 0 offset 1, building ecole-curie: message set aside (undecodable after 1 tries)" in errors[0]
    assert "b'not json'" in errors[0]
    assert "partition 0 offset 3, building ecole-curie" in errors[1]
    assert "no such quality" in errors[1]


class FailingState(dict[bytes, bytes]):
    """The state table, whose read of one building fails a given number of times (a table between two rebalances)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]  # dict.get's overloads
        if self.failures:
            self.failures -= 1
            msg = "state table not ready"
            raise RuntimeError(msg)
        return super().get(key, default)


@pytest.mark.parametrize(("failures", "applied", "set_aside"), [(2, 6, 0), (5, 5, 1)])
async def test_a_message_whose_handling_raises_is_read_again_then_set_aside(
    failures: int, applied: int, set_aside: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Two failures: read again, applied at the third try. More: set aside at the third, and the partition goes on."""
    worker = Worker()
    assert worker.runner.set_aside_after == 3
    await worker.deliver(0)
    table = FailingState(failures)
    table.update(worker.runner.table)  # type: ignore[call-overload]  # Worker's table is a dict
    worker.runner.table = table  # type: ignore[assignment]  # the state table, in memory
    with caplog.at_level(logging.WARNING, logger="streams.faust_runner"):
        await _crash(worker, 1)
        await worker.deliver(2)  # faust's restarted agent: held back, sought back to 1
        assert worker.thread.kafka.seeks == [(0, 1)]
        await _crash(worker, 1)  # the second try
        if set_aside:
            await worker.deliver(1)  # the third try: set aside
            table.failures = 0
        else:
            await worker.deliver(1)  # the third try: applied
        await worker.deliver(2, 3, 4, 5)
    assert worker.runner.stats.batches == applied
    assert worker.runner.stats.set_aside == set_aside
    assert worker.commit() == 6
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == set_aside
    if set_aside:
        assert "partition 0 offset 1, building ecole-curie: message set aside (failed after 3 tries)" in errors[0]
        assert _set_aside(worker) == {"failed": 1.0}
    assert "handling failed (try 2 of 3)" in caplog.text


async def test_offsets_gone_from_the_topic_past_the_commit_do_not_stop_commits(caplog: pytest.LogCaptureFixture) -> None:
    """Committed 2, the topic starts at 5 (retention): faust's commit must move on from 5."""
    worker = Worker(committed=2)
    worker.consumer._committed_offset[TP(TOPIC, 0)] = 2  # as faust's perform_seek sets it from the group's commit
    worker.thread.kafka.first = 5
    with caplog.at_level(logging.WARNING, logger="streams.faust_runner"):
        await worker.deliver(5, 6, 7, 8, 9)
    assert "partition 0: offsets 2–4 are gone from the topic (retention)" in caplog.text
    assert worker.runner.stats.batches == 5
    assert worker.commit() == 10
    assert worker.consumer._acked[TP(TOPIC, 0)] == []
    assert _set_aside(worker) == {"absent": 3.0}


async def test_retention_passing_the_gap_during_a_reread_is_seen_at_the_next_try(caplog: pytest.LogCaptureFixture) -> None:
    worker = Worker()
    await worker.deliver(0, 1, 2)
    await worker.deliver(5)  # held back, sought back to 3 (still in the topic)
    assert worker.thread.kafka.seeks == [(0, 3)]
    worker.thread.kafka.first = 4  # retention removes offset 3 while the re-read is under way
    with caplog.at_level(logging.WARNING, logger="streams.faust_runner"):
        await worker.deliver(4)  # the broker answers a fetch at 3 from 4 (out of range, reset to earliest)
    assert "partition 0: offsets 3–3 are gone from the topic (retention)" in caplog.text
    await worker.deliver(5)
    assert worker.runner.stats.batches == 5
    assert worker.commit() == 6
    assert worker.runner._rereads == {}


async def test_retention_passing_the_gap_is_seen_by_the_health_loops_retry() -> None:
    worker = Worker()
    await worker.deliver(0, 1, 2, 5)  # 5 held back, sought back to 3
    worker.thread.kafka.first = 4
    worker.runner._rereads[0].sought -= 10  # nothing came for longer than reread_retry
    await worker.runner._retry_rereads()
    assert worker.thread.kafka.seeks == [(0, 3), (0, 4)]  # sought to the topic's first offset, not to 3 again
    await worker.deliver(4, 5)
    assert worker.runner.stats.batches == 5
    assert worker.commit() == 6


async def test_an_offset_that_never_comes_is_passed_with_an_error(caplog: pytest.LogCaptureFixture) -> None:
    """Offset 3 is no record (a transaction marker, compaction): every fetch after a seek to 3 starts at 4."""
    worker = Worker()
    worker.runner.reread_give_up_after = timedelta(0)
    await worker.deliver(0, 1, 2)
    with caplog.at_level(logging.INFO, logger="streams.faust_runner"):
        for _ in range(worker.runner.reread_give_up_seeks + 1):
            await worker.deliver(4, 5)  # what each seek back to 3 brings
            if worker.runner._rereads:
                worker.runner._rereads[0].sought -= 10
                await worker.runner._retry_rereads()  # the health loop's retry
        await worker.deliver(4, 5)
    assert worker.runner.stats.batches == 5
    assert worker.commit() == 6
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].startswith("partition 0: offsets 3–3 never came in 10 seeks back")
    assert _set_aside(worker) == {"absent": 1.0}
    assert len(worker.thread.kafka.seeks) < 25


async def test_an_offset_late_to_come_is_not_passed_before_the_give_up_time() -> None:
    worker = Worker()
    assert worker.runner.reread_give_up_after >= timedelta(seconds=30)
    await worker.deliver(0, 1, 2)
    for _ in range(3 * worker.runner.reread_give_up_seeks):
        await worker.deliver(4, 5)
    assert worker.runner.stats.batches == 3  # still waiting for 3
    await worker.deliver(3, 4, 5)
    assert worker.runner.stats.batches == 6
    assert worker.runner.stats.set_aside == 0


class DownSink:
    """InfluxDB down: every write fails."""

    def __init__(self) -> None:
        self.records: list[AggregateRecord] = []
        self.tries = 0

    async def write(self, records: list[AggregateRecord]) -> None:
        self.tries += 1
        msg = "InfluxDB unreachable"
        raise SinkError(msg)


async def test_a_stop_ends_a_write_that_waits_and_commits_nothing_past_it() -> None:
    sink = DownSink()
    worker = Worker(sink=sink)
    worker.runner.write_retry_min = worker.runner.write_retry_max = timedelta(seconds=60)
    delivering = asyncio.create_task(worker.deliver(*range(6)))
    while sink.tries == 0:  # the first batch that closes windows waits on its write
        await asyncio.sleep(0.01)
    handled = worker.runner.stats.batches
    worker.runner._stopping.set()  # what FaustRunner.stop does first
    done, _ = await asyncio.wait({delivering}, timeout=2)  # not the 60 s of the retry
    assert delivering in done
    with pytest.raises(asyncio.CancelledError):
        delivering.result()
    assert worker.commit() == handled - 1  # up to the message whose write waited, not past it
    assert not worker.consumer._unacked_messages  # so faust's stop does not wait for it
    assert worker.runner.stats.set_aside == 0


class HangingSink:
    """InfluxDB accepting and never answering: a write that never returns."""

    def __init__(self) -> None:
        self.tries = 0

    async def write(self, records: list[AggregateRecord]) -> None:
        self.tries += 1
        await asyncio.Event().wait()


async def test_a_stop_ends_a_write_that_hangs_and_commits_nothing_past_it() -> None:
    """A second hostile review: the stop waited for the sink's own timeouts (30.4 s, past systemd's 30 s)."""
    sink = HangingSink()
    worker = Worker(sink=sink)
    delivering = asyncio.create_task(worker.deliver(*range(6)))
    while sink.tries == 0:
        await asyncio.sleep(0.01)
    handled = worker.runner.stats.batches
    worker.runner._stopping.set()
    done, _ = await asyncio.wait({delivering}, timeout=2)
    assert delivering in done
    with pytest.raises(asyncio.CancelledError):
        delivering.result()
    assert worker.commit() == handled - 1
    assert not worker.consumer._unacked_messages
    assert sink.tries == 1


async def test_the_health_loop_s_seeks_while_the_agent_waits_pass_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A second hostile review: offsets 3-4 exist, but the agent waits 40 s on a write (InfluxDB down), so
    nothing is handed over; the health loop's seeks every second counted as fruitless and passed 3-4 as absent."""
    clock = [1000.0]
    monkeypatch.setattr("streams.faust_runner.time.monotonic", lambda: clock[0])
    worker = Worker()
    await worker.deliver(0, 1, 2, 5)  # 5 ahead of 3-4: held back, sought back to 3
    with caplog.at_level(logging.ERROR, logger="streams.faust_runner"):
        for _ in range(40):
            clock[0] += 1.0
            await worker.runner._retry_rereads()
    assert not [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert worker.thread.kafka.seeks[-1] == (0, 3)
    await worker.deliver(3, 4, 5)  # the writes go again: the seek's messages come
    assert worker.runner.stats.batches == 6
    assert worker.runner.stats.set_aside == 0


async def test_a_state_of_another_format_is_never_set_aside(caplog: pytest.LogCaptureFixture) -> None:
    """A second hostile review: the building's state in the table written by a worker of another state format (a
    rolling upgrade or downgrade) made every message of the building fail, and each was set aside at its third
    try: all its readings lost. The worker's own fault: the partition waits, with an ERROR."""
    import json

    from tests.unit.streams.test_faust_seek import BUILDING

    worker = Worker()
    worker.runner.retry_pause = timedelta(0)
    worker.runner.table[BUILDING.encode()] = json.dumps({"format_version": 99, "offset": -1, "processor": {}}).encode()
    with caplog.at_level(logging.ERROR, logger="streams.faust_runner"):
        for _ in range(3 * worker.runner.set_aside_after):
            with pytest.raises(Exception, match="format 99"):
                await worker.deliver(0)
    assert worker.runner.stats.set_aside == 0
    assert worker.commit() in (None, 0)
    assert any("cannot handle it" in r.getMessage() for r in caplog.records)


def test_a_third_worker_on_four_partitions_gets_none_while_the_first_two_hold_two_each() -> None:
    """faust's assignor keeps an assignment within ceil(partitions / workers) when tables have standby replicas.

    Our app keeps faust's one standby replica per table: the third worker of a 4-partition topic holds standbys only
    (deploy/OPERATIONS.md, "Scaling out"). Without replicas, the assignor would give it one partition.
    """
    from faust.assignor.client_assignment import CopartitionedAssignment
    from faust.assignor.copartitioned_assignor import CopartitionedAssignor

    replicas = Worker().runner.app.conf.table_standby_replicas
    assert replicas == 1

    def actives(replicas: int, partitions: int = 4) -> dict[str, set[int]]:
        half = partitions // 2
        cluster = {
            "a": CopartitionedAssignment(actives=set(range(half)), topics={TOPIC}),
            "b": CopartitionedAssignment(actives=set(range(half, partitions)), topics={TOPIC}),
            "c": CopartitionedAssignment(topics={TOPIC}),
        }
        assignment = CopartitionedAssignor({TOPIC}, cluster, partitions, replicas).get_assignment()
        return {client: set(a.actives) for client, a in assignment.items()}

    assert actives(replicas) == {"a": {0, 1}, "b": {2, 3}, "c": set()}
    assert len(actives(0)["c"]) == 1
    assert [len(a) for a in actives(replicas, 12).values()] == [4, 4, 4]  # the default 12 partitions
