"""A batch the forwarder sends twice is applied once (review of issue 15 part A, defect 2).

``econome run --runner faust`` forwards the delivery log in batches and moves
its ``forward`` cursor only once Kafka acknowledged a batch. A send cancelled
by a stop (the producer's stop still flushes what it holds) or timed out after
the broker took part of it is sent again at the next try, at new offsets,
where the worker's offset check cannot see it. Here, on Tansu with a real
worker (:func:`~streams.faust_runner.make_app`) writing to InfluxDB 1.6.7, a
batch is cancelled mid-send, the forwarder stopped, and a new forwarder sends
the same rows again, plus the next ones (the log held more by then). The
aggregates must equal those of ``streams/pipeline.py`` on the same readings:
no count doubled, no mean moved.
"""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from faust.types import TP

from econome.localservers import create_topic
from inventory import load_inventory
from simulator.physics import generate_history
from streams.aggregate import StreamSettings
from streams.buffer import DeliveryLog
from streams.faust_runner import (
    SEQUENCE_HEADER,
    InfluxAggregateSink,
    KafkaForwarder,
    decode_batch,
    decode_sequence,
    make_app,
    publish,
    true_end_offsets,
)
from streams.influx import InfluxConfig, InfluxV1Writer
from streams.record import Reading
from tests.conftest import ROOT, Endpoint
from tests.integration.test_faust_scale_out import DAY, LATENESS, _aggregates, _in_process

PARTITIONS = 4
BATCH = 1000  # the pipeline's forward batch in this test


async def _topic_readings(address: str, topic: str) -> tuple[int, int]:
    """Readings in the topic's messages, and how many of them carry a sequence number seen before."""
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer = AIOKafkaConsumer(bootstrap_servers=address, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign(tps)
        reported = await consumer.end_offsets(tps)
        ends = await true_end_offsets(address, {TP(tp.topic, tp.partition): end for tp, end in reported.items()})
        total, seen, again = 0, set[int](), 0
        while [tp for tp in tps if await consumer.position(tp) < ends[TP(tp.topic, tp.partition)]]:
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                for message in messages:
                    header = dict(message.headers).get(SEQUENCE_HEADER)
                    if header is None:
                        continue
                    seqs = decode_sequence(header).seqs
                    assert len(seqs) == len(decode_batch(message.value))
                    total += len(seqs)
                    again += sum(1 for seq in seqs if seq in seen)
                    seen.update(seqs)
    finally:
        await consumer.stop()
    return total, again


async def test_a_batch_sent_twice_counts_once(
    kafka_server: Endpoint, influxdb_server: Endpoint, unique_name: str, tmp_path: Path
) -> None:
    inventory = load_inventory(ROOT / "examples" / "commune.yaml")
    history = generate_history(inventory, DAY, DAY + timedelta(hours=4), timedelta(minutes=1), seed=4)
    unit = {point.id: point.unit for _, point in inventory.points()}
    readings = [Reading(p, ts, v, unit[p]) for ts, p, v in history.rows() if not math.isnan(v)]
    address = f"{kafka_server.host}:{kafka_server.port}"
    topic, database = f"{unique_name}-readings", f"{unique_name}_faust"
    create_topic(address, topic, PARTITIONS)

    # The forwarder's side: a real delivery log numbers the readings, as `econome run` stores them.
    log = DeliveryLog(tmp_path / "delivery.sqlite")
    log.append(readings)
    rows = log.readings_after(0, len(readings))
    assert len(rows) == len(readings)

    sink = InfluxAggregateSink(InfluxConfig(url=influxdb_server.url, database=database))
    assert isinstance(sink.writer, InfluxV1Writer)
    await sink.writer.ensure_database()
    runner = make_app(
        inventory, f"kafka://{address}", app_id=unique_name, partitions=PARTITIONS, sink=sink, topic=topic,
        settings=StreamSettings(allowed_lateness=LATENESS), fix_end_offsets=True, data_dir=tmp_path / "faust",
    )  # fmt: skip
    await runner.start()
    try:

        async def forward(forwarder: KafkaForwarder, part: list[tuple[int, Reading]]) -> None:
            await forwarder.send([r for _, r in part], seqs=[n for n, _ in part], log_id=log.log_id)

        first = KafkaForwarder(inventory, address, topic=topic, partitions=PARTITIONS)
        await first.start()
        middle = len(rows) // 2 // BATCH * BATCH
        for i in range(0, middle, BATCH):
            await forward(first, rows[i : i + BATCH])
        # The stop's cancellation lands while the batch is being sent; the producer's stop flushes what it holds.
        send = asyncio.create_task(forward(first, rows[middle : middle + BATCH]))
        for _ in range(30):
            await asyncio.sleep(0)
        send.cancel()
        await asyncio.gather(send, return_exceptions=True)
        await first.stop()
        # The next start reads from the unmoved cursor; by then the log holds more than one batch.
        second = KafkaForwarder(inventory, address, topic=topic, partitions=PARTITIONS)
        await second.start()
        for i in range(middle, len(rows), 2 * BATCH):
            await forward(second, rows[i : i + 2 * BATCH])
        await second.stop()
        forwarded, again = await _topic_readings(address, topic)
        assert again > 0, "the cancelled batch did not reach Kafka: the scenario did not happen"
        assert forwarded == len(readings) + again

        # The end of the bounded input: each building flushes its windows.
        producer = AIOKafkaProducer(bootstrap_servers=address)
        await producer.start()
        try:
            await publish([], producer, inventory, topic=topic, end=True)
        finally:
            await producer.stop()
        await runner.wait_flushed(runner.buildings, timeout=timedelta(seconds=60))
    finally:
        await runner.stop()
        await sink.close()
        log.close()

    pipeline = await _in_process(inventory, readings, influxdb_server.url, f"{unique_name}_inprocess", tmp_path / "ref")
    assert pipeline.stats.received == len(readings)
    expected = _aggregates(influxdb_server.url, f"{unique_name}_inprocess")
    got = _aggregates(influxdb_server.url, database)
    assert {key[0] for key in expected} == {"agg_point", "agg_usage", "agg_building"}
    assert expected.keys() == got.keys()
    different = [(key, got[key], expected[key]) for key in expected if got[key] != expected[key]]
    assert not different, (len(different), different[:3])
    # The worker saw every copy and applied each reading once.
    assert runner.stats.resent == again
    assert runner.stats.readings == len(readings)
