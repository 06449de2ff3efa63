"""Which state a faust worker applies a message to: its own newer one, or the table's when another worker moved it on.

Issue 15 (scale-out losses under load): a rebalance re-reads the state
changelog up to an end offset read before the worker's last writes reached it,
and puts those older values back in the worker's table. Restoring from them
would skip the messages in between as already applied (their offsets are
committed): whole windows went missing. The worker's table is a dict here (the
boundary: faust's changelog-backed table), the messages are real batches of the
demo commune, and the result is compared with :func:`aggregate_in_process`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from inventory import Inventory, load_inventory
from simulator.physics import generate_history
from streams.faust_runner import (
    FLUSH_MESSAGE,
    FaustRunner,
    ListSink,
    aggregate_in_process,
    batch_readings,
    building_inventory,
    encode_batch,
    make_app,
)
from streams.record import Reading
from tests.conftest import ROOT

BUILDING = "mairie"
DAY = datetime(2026, 1, 5, tzinfo=UTC)


def _inventory() -> Inventory:
    return building_inventory(load_inventory(ROOT / "examples" / "commune.yaml"), BUILDING)


def _messages(inventory: Inventory) -> tuple[list[Reading], list[bytes]]:
    """A quarter of a day of the building's readings, as the message values of one partition (offset = index)."""
    history = generate_history(inventory, DAY, DAY + timedelta(hours=6), timedelta(minutes=1), seed=4)
    unit = {point.id: point.unit for _, point in inventory.points()}
    readings = [Reading(p, ts, v, unit[p]) for ts, p, v in history.rows() if not math.isnan(v)]
    values = [encode_batch(batch) for _, batch in batch_readings(inventory, readings, max_batch=200)]
    return readings, [*values, FLUSH_MESSAGE]


def _runner(inventory: Inventory, table: dict[bytes, bytes], sink: ListSink) -> FaustRunner:
    runner = make_app(inventory, "kafka://127.0.0.1:1", app_id="restore-test", partitions=1, sink=sink)
    runner.table = table  # type: ignore[assignment]  # a dict stands in for faust's changelog-backed table
    return runner


async def _handle(runner: FaustRunner, offset: int, value: bytes) -> None:
    """Apply one message (``handle``: the order of a partition's offsets is ``step``'s, in test_faust_seek.py)."""
    message = SimpleNamespace(offset=offset, partition=0)
    event: Any = SimpleNamespace(key=BUILDING.encode(), value=value, headers={}, message=message)
    await runner.handle(event)


async def test_a_table_put_back_behind_the_worker_own_writes_loses_nothing(caplog: pytest.LogCaptureFixture) -> None:
    inventory = _inventory()
    readings, values = _messages(inventory)
    assert len(values) >= 8
    table: dict[bytes, bytes] = {}
    sink = ListSink()
    runner = _runner(inventory, table, sink)
    stale_at, reread_at = 2, 5
    stale = b""
    for offset, value in enumerate(values):
        if offset == reread_at:
            # The rebalance's changelog re-read ends at the value of offset 2: the worker's writes of 3 and 4
            # (in flight, or not yet flushed when the end offset was read) are put back behind.
            table[BUILDING.encode()] = stale
        await _handle(runner, offset, value)
        if offset == stale_at:
            stale = table[BUILDING.encode()]
    assert runner.stats.batches == len(values) - 1  # the flush message is not a batch
    assert runner.stats.redelivered == 0
    assert sink.view() == aggregate_in_process(inventory, readings, max_batch=200)
    assert "keeping its newer state (changelog re-read stale)" in caplog.text


async def test_a_table_another_worker_moved_on_is_restored_and_redeliveries_are_skipped() -> None:
    inventory = _inventory()
    readings, values = _messages(inventory)
    table: dict[bytes, bytes] = {}
    sink = ListSink()  # one database for both workers: the last write of an aggregate wins
    first, second = _runner(inventory, table, sink), _runner(inventory, table, sink)
    for offset in range(3):  # the first worker applies 0..2, then loses the partition
        await _handle(first, offset, values[offset])
    for offset in range(1, 6):  # the second resumes at the committed offset 1 (2 is delivered again), goes to 5
        await _handle(second, offset, values[offset])
    assert second.stats.redelivered == 2
    for offset in range(4, len(values)):  # the partition comes back to the first worker at committed offset 4
        await _handle(first, offset, values[offset])
    assert first.stats.redelivered == 2  # 4 and 5: the table (from the second worker) covers them
    assert sink.view() == aggregate_in_process(inventory, readings, max_batch=200)

