"""Bench helper: readings per second of one faust worker over Tansu.

``faust_throughput(n)`` starts a Tansu broker, creates the source topic, starts
one worker of :mod:`streams.faust_runner` in this process (memory table, a sink
that only counts), and waits until it is ready (group joined, table recovered).
A child process then publishes ``n`` readings of the demo commune, batched per
building (500 readings a message), followed by one flush message per building.

Measured from the first publish to the last flush handled by the worker:

* ``readings_per_s``: readings / wall seconds, end to end, one worker;
* ``worker_cpu_s``: CPU seconds of this process (the worker: the agent on the
  event loop and faust's consumer thread; the publisher runs in the child and is
  not counted), and ``readings_per_cpu_s``;
* ``messages``, ``aggregates``, ``publish_s`` (wall seconds the child took to publish).

Used by ``bench/streams.py``; run alone: ``.venv/bin/python bench/_faust.py [N]``.
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Event
from pathlib import Path

from aiokafka import AIOKafkaProducer

# This folder holds scripts named like packages (bench/streams.py); keep it off the import path when run directly.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != _HERE]

from econome.localservers import create_topic, start_tansu  # noqa: E402
from inventory import Inventory, load_inventory  # noqa: E402
from simulator.physics import generate_history  # noqa: E402
from streams.aggregate import AggregateRecord  # noqa: E402
from streams.faust_runner import MAX_BATCH, make_app, publish  # noqa: E402
from streams.record import Reading  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 1, 12, tzinfo=UTC)
PARTITIONS = 4


class CountingSink:
    """Counts aggregates: the bench measures the runner, not a database."""

    def __init__(self) -> None:
        self.count = 0

    async def write(self, records: list[AggregateRecord]) -> None:
        self.count += len(records)


def demo_readings(inventory: Inventory, n: int) -> list[Reading]:
    """The first ``n`` readings of the demo commune from START, one-minute steps, in time order."""
    per_day = 24 * 60 * sum(1 for _ in inventory.points())
    days = max(1, math.ceil(n / per_day * 1.2))
    history = generate_history(inventory, START, START + timedelta(days=days), timedelta(minutes=1), seed=7)
    units = {point.id: point.unit for _, point in inventory.points()}
    out: list[Reading] = []
    for ts, point_id, value in history.rows():
        out.append(Reading(point_id, ts, value, units[point_id]))
        if len(out) == n:
            break
    return out


def _publisher(address: str, topic: str, n: int, ready: Event, go: Event, result: multiprocessing.SimpleQueue[float]) -> None:
    inventory = load_inventory(ROOT / "examples" / "commune.yaml")
    readings = demo_readings(inventory, n)

    async def run() -> float:
        producer = AIOKafkaProducer(bootstrap_servers=address, linger_ms=5, max_request_size=8 * 1024 * 1024)
        await producer.start()
        try:
            ready.set()
            await asyncio.to_thread(go.wait, 300)
            t0 = time.perf_counter()
            await publish(readings, producer, inventory, topic=topic, max_batch=MAX_BATCH)
            return time.perf_counter() - t0
        finally:
            await producer.stop()

    result.put(asyncio.run(run()))


async def faust_throughput(n_readings: int) -> dict[str, float]:
    """Readings per second of one faust worker; see the module docstring for the keys."""
    inventory = load_inventory(ROOT / "examples" / "commune.yaml")
    server = start_tansu()
    ctx = multiprocessing.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    result: multiprocessing.SimpleQueue[float] = ctx.SimpleQueue()
    try:
        address = f"{server.host}:{server.port}"
        name = "bench" + uuid.uuid4().hex[:8]
        topic = f"{name}-readings"
        create_topic(server, topic, PARTITIONS)
        child = ctx.Process(target=_publisher, args=(address, topic, n_readings, ready, go, result), name="faust-bench-publisher")
        child.start()
        sink = CountingSink()
        runner = make_app(inventory, f"kafka://{address}", app_id=name, partitions=PARTITIONS, sink=sink, topic=topic)
        await runner.start()
        try:
            # Ready: partitions assigned and the (empty) table recovered; then the clock starts.
            await asyncio.wait_for(runner.app.tables.recovery.completed.wait(), 60)
            if not await asyncio.to_thread(ready.wait, 120):
                msg = "the publisher did not get ready"
                raise RuntimeError(msg)
            t0, cpu0 = time.perf_counter(), time.process_time()
            go.set()
            await runner.wait_flushed(runner.buildings, timedelta(seconds=600))
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        finally:
            await runner.stop()
        publish_s = await asyncio.to_thread(result.get)
        await asyncio.to_thread(child.join, 30)
    finally:
        server.stop()
    stats = runner.stats
    return {
        "readings": float(stats.readings),
        "messages": float(stats.batches + len(stats.flushed)),
        "aggregates": float(sink.count),
        "wall_s": round(wall, 3),
        "publish_s": round(publish_s, 3),
        "worker_cpu_s": round(cpu, 3),
        "readings_per_s": round(stats.readings / wall),
        "readings_per_cpu_s": round(stats.readings / cpu),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(faust_throughput(int(sys.argv[1]) if len(sys.argv) > 1 else 60_000))))
