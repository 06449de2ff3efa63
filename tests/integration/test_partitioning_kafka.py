"""The forwarder and ``publish`` put each building on the partition of the balanced map, on a real broker (Tansu)."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from econome.localservers import create_topic
from inventory import load_inventory
from simulator.physics import generate_history
from streams.errors import ConfigError
from streams.faust_runner import FLUSH_MESSAGE, KafkaForwarder, publish
from streams.partitioning import PartitionMap, assign_partitions
from streams.record import Reading
from tests.conftest import ROOT, Endpoint

PARTITIONS = 4
START = datetime(2026, 1, 5, 8, tzinfo=UTC)


async def _read_all(address: str, topic: str, expected: int) -> list[tuple[int, bytes, bytes]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=address, auto_offset_reset="earliest", request_timeout_ms=10_000)
    await consumer.start()
    got: list[tuple[int, bytes, bytes]] = []
    try:
        while len(got) < expected:
            batches = await consumer.getmany(timeout_ms=10_000)
            assert batches, f"read {len(got)} of {expected} messages"
            got += [(m.partition, m.key or b"", m.value or b"") for messages in batches.values() for m in messages]
    finally:
        await consumer.stop()
    return got


async def test_each_building_goes_to_its_partition_of_the_kept_map(
    kafka_server: Endpoint, unique_name: str, tmp_path: Path
) -> None:
    inventory = load_inventory(ROOT / "examples" / "commune.yaml")
    history = generate_history(inventory, START, START + timedelta(hours=2), timedelta(minutes=1), seed=2)
    unit = {p.id: p.unit for _, p in inventory.points()}
    readings = [Reading(pid, ts, value, unit[pid]) for ts, pid, value in history.rows() if not math.isnan(value)]
    address = f"{kafka_server.host}:{kafka_server.port}"
    topic = f"{unique_name}-readings"
    create_topic(address, topic, PARTITIONS)
    map_path = tmp_path / "partitions.json"

    forwarder = KafkaForwarder(inventory, address, topic=topic, partitions=PARTITIONS, map_path=map_path)
    await forwarder.start()
    try:
        await forwarder.send(readings)
    finally:
        await forwarder.stop()
    pmap = assign_partitions(inventory, PARTITIONS)
    assert forwarder.partition_map == pmap
    assert PartitionMap.from_json(map_path.read_text(encoding="utf-8")) == pmap

    producer = AIOKafkaProducer(bootstrap_servers=address, request_timeout_ms=10_000)
    await producer.start()
    try:
        # A map made for 12 partitions is refused on this 4-partition topic, before anything is sent.
        with pytest.raises(ConfigError, match=f"map is for 12 partitions, topic {topic} has 4"):
            await publish(readings, producer, inventory, topic=topic, partition_map=assign_partitions(inventory, 12))
        sent_by_publish = await publish(readings[:50], producer, inventory, topic=topic)  # its default map, and flushes
    finally:
        await producer.stop()

    buildings = [b.id for _, b in inventory.buildings()]
    with_readings = {inventory.building_of(r.point_id).id for r in readings}
    messages = await _read_all(address, topic, expected=len(with_readings) + sent_by_publish)
    wrong = [(key, partition) for partition, key, _ in messages if pmap.partition_of(key.decode()) != partition]
    assert not wrong
    assert sum(value == FLUSH_MESSAGE for _, _, value in messages) == len(buildings)
    assert Counter(partition for partition, _, _ in messages).keys() == set(range(PARTITIONS))
