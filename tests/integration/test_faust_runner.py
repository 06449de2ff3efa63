"""The faust runner over a real Kafka broker (Tansu) gives the in-process aggregates, exactly.

Both runners drive the same per-building StreamProcessors with the same batches
(``batch_readings``), so the floats are computed by the same operations in the
same order and must be equal, not just close.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from faust.types import TP

from econome.localservers import create_topic
from inventory import Inventory, load_inventory
from simulator.physics import generate_history
from streams.faust_runner import (
    AggregateKey,
    ListSink,
    aggregate_in_process,
    batch_readings,
    make_app,
    publish,
    true_end_offsets,
)
from streams.record import Reading
from tests.conftest import ROOT, Endpoint

PARTITIONS = 4
Day = tuple[list[Reading], dict[AggregateKey, dict[str, float]]]
DAY = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday in winter: heating, school, occupancy
TIMEOUT = timedelta(seconds=60)


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return load_inventory(ROOT / "examples" / "commune.yaml")


@pytest.fixture(scope="module")
def day(inventory: Inventory) -> Day:
    """One recorded day of the demo commune at 1-minute steps, and its in-process aggregates."""
    history = generate_history(inventory, DAY, DAY + timedelta(days=1), timedelta(minutes=1), seed=4)
    unit = {point.id: point.unit for _, point in inventory.points()}
    readings = [Reading(point_id, ts, value, unit[point_id]) for ts, point_id, value in history.rows() if not math.isnan(value)]
    return readings, aggregate_in_process(inventory, readings)


def _broker(server: Endpoint) -> tuple[str, str]:
    address = f"{server.host}:{server.port}"
    return address, f"kafka://{address}"


def _assert_identical(got: dict[AggregateKey, dict[str, float]], expected: dict[AggregateKey, dict[str, float]]) -> None:
    assert {k[0] for k in expected} == {"agg_point", "agg_usage", "agg_building"}
    assert {dict(k[1])["window"] for k in expected} == {"10m", "1h", "1d"}
    missing = expected.keys() - got.keys()
    extra = got.keys() - expected.keys()
    assert not missing, sorted(missing)[:5]
    assert not extra, sorted(extra)[:5]
    different = [(k, got[k], expected[k]) for k in expected if got[k] != expected[k]]
    assert not different, different[:5]


async def test_faust_and_in_process_give_identical_aggregates(
    kafka_server: Endpoint, unique_name: str, inventory: Inventory, day: Day
) -> None:
    readings, expected = day
    address, url = _broker(kafka_server)
    topic = f"{unique_name}-readings"
    create_topic(address, topic, PARTITIONS)
    sink = ListSink()
    runner = make_app(inventory, url, app_id=unique_name, partitions=PARTITIONS, sink=sink, topic=topic)
    await runner.start()
    try:
        sent = await publish(readings, runner.topic, inventory)
        await runner.wait_flushed(runner.buildings, TIMEOUT)
    finally:
        await runner.stop()
    batches = sum(1 for _ in batch_readings(inventory, readings))
    assert sent == batches + len(runner.buildings)
    assert runner.stats.batches == batches
    assert runner.stats.readings == len(readings)
    assert runner.stats.rejected == runner.stats.redelivered == runner.stats.unknown_buildings == 0
    _assert_identical(sink.view(), expected)


async def test_a_new_worker_recovers_the_table_and_ends_with_identical_aggregates(
    kafka_server: Endpoint, unique_name: str, inventory: Inventory, day: Day
) -> None:
    readings, expected = day
    address, url = _broker(kafka_server)
    topic = f"{unique_name}-readings"
    create_topic(address, topic, PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=address, request_timeout_ms=10_000)
    await producer.start()
    try:
        await publish(readings, producer, inventory, topic=topic)
    finally:
        await producer.stop()
    batches = sum(1 for _ in batch_readings(inventory, readings))

    sink = ListSink()  # the database both workers write to
    first = make_app(inventory, url, app_id=unique_name, partitions=PARTITIONS, sink=sink, topic=topic)
    await first.start()
    try:
        await first.wait_until(lambda stats: stats.batches >= batches // 2, TIMEOUT)
    finally:
        await first.stop()
    assert first.stats.batches < batches  # stopped mid-stream

    # Tansu reports changelog end offsets too low (KAFKA-TANSU.md, B1): without the fix the table comes back stale.
    second = make_app(inventory, url, app_id=unique_name, partitions=PARTITIONS, sink=sink, topic=topic, fix_end_offsets=True)
    await second.start()
    try:
        # Buildings the first worker flushed before it stopped have nothing left for the second.
        await second.wait_flushed(set(second.buildings) - first.stats.flushed, TIMEOUT)
    finally:
        await second.stop()
    # The second worker resumed from the committed offsets with the state of the changelog, not from scratch.
    assert 0 < second.stats.batches < batches
    # Every batch was applied once to the saved state; one the first worker applied but did not save is applied again.
    assert first.stats.batches + second.stats.batches >= batches
    _assert_identical(sink.view(), expected)


async def test_end_offsets_are_corrected_from_the_fetch_high_watermark(kafka_server: Endpoint, unique_name: str) -> None:
    """Tansu defect B1: ListOffsets(latest) gives the last batch's base offset + 1 when the batch held several records."""
    address, _ = _broker(kafka_server)
    create_topic(address, unique_name, 1)
    producer = AIOKafkaProducer(bootstrap_servers=address, linger_ms=50, request_timeout_ms=10_000)
    await producer.start()
    try:
        sent = [await producer.send(unique_name, b"%d" % i, key=b"k") for i in range(5)]
        for delivered in sent:
            await delivered
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=address, request_timeout_ms=10_000)
    await consumer.start()
    try:
        reported = (await consumer.end_offsets([TopicPartition(unique_name, 0)]))[TopicPartition(unique_name, 0)]
    finally:
        await consumer.stop()
    corrected = await true_end_offsets(address, {TP(unique_name, 0): reported})
    assert corrected == {TP(unique_name, 0): 5}
    assert await true_end_offsets(address, {TP(unique_name, 0): 0}) == {TP(unique_name, 0): 0}
