"""Bench helper: one faust worker of the synthetic portfolio, as a process of its own (for ``bench/scale.py``).

It runs what ``econome worker`` runs, :func:`streams.faust_runner.make_app`, over the synthetic
portfolio of ``bench/scale.py``, until SIGTERM. It stays rather than ``econome worker`` because the
bench needs what the CLI does not give: the wall time of the first batch and of the first aggregate
written per partition since it was assigned (the takeover time), the flush count, the portfolio
built in memory (3,000 buildings, no YAML file), and a counting sink for the saturation run. The sink is InfluxDB
(:class:`~streams.faust_runner.InfluxAggregateSink`), or a counter with ``--count-only``.

It reports on stdout, one JSON object a line, with wall times (``time.time()``):

* ``{"event": "ready"}`` once the table is recovered;
* ``{"event": "assigned", "partitions": [...]}`` when its partitions change;
* ``{"event": "first_batch" | "first_write", "partition": p}`` the first time it
  applies a batch of, or writes an aggregate of, a partition since it got it;
* ``{"event": "progress", "readings": n, "flushed": k}`` every half second.

With ``--gate`` it applies nothing until SIGUSR1 (``{"event": "gate_open"}``): the saturation run
publishes its backlog while the workers wait, so that the publisher takes no CPU from them.

Run: ``python bench/_scale_worker.py --broker kafka://127.0.0.1:9092 --app-id a --topic t --influx http://...``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != _HERE]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faust.types import EventT  # noqa: E402

from simulator.portfolio import synthetic_portfolio  # noqa: E402
from streams.aggregate import AggregateRecord, StreamSettings  # noqa: E402
from streams.faust_runner import AggregateSink, InfluxAggregateSink, make_app  # noqa: E402
from streams.influx import InfluxConfig  # noqa: E402


def say(event: str, **data: Any) -> None:
    """One report line."""
    print(json.dumps({"event": event, "t": time.time(), **data}), flush=True)


class CountingSink:
    """Counts aggregates: the saturation run measures the workers, not InfluxDB."""

    def __init__(self) -> None:
        self.count = 0

    async def write(self, records: list[AggregateRecord]) -> None:
        self.count += len(records)


async def main(args: argparse.Namespace) -> None:
    inventory = synthetic_portfolio(args.buildings, points=args.points)
    sink: AggregateSink = (
        CountingSink() if args.count_only else InfluxAggregateSink(InfluxConfig(url=args.influx, database=args.database))
    )
    runner = make_app(
        inventory, args.broker, app_id=args.app_id, partitions=args.partitions, sink=sink, topic=args.topic,
        settings=StreamSettings(allowed_lateness=timedelta(seconds=args.lateness_s)),
        session_timeout=timedelta(seconds=args.session_s), fix_end_offsets=True,
    )  # fmt: skip
    held: set[int] = set()
    seen_batch: set[int] = set()
    seen_write: set[int] = set()
    partition_of: dict[str, int] = {}
    handle = runner.handle
    go = asyncio.Event()
    loop = asyncio.get_running_loop()
    if args.gate:

        def open_gate() -> None:
            say("gate_open")
            go.set()

        loop.add_signal_handler(signal.SIGUSR1, open_gate)
    else:
        go.set()

    async def noting_handle(event: EventT[bytes]) -> None:
        await go.wait()
        partition = event.message.partition
        key = event.key
        partition_of[key.decode() if isinstance(key, bytes) else str(key)] = partition
        if partition not in seen_batch:
            seen_batch.add(partition)
            say("first_batch", partition=partition)
        await handle(event)

    runner.handle = noting_handle  # type: ignore[method-assign]  # the bench notes which partition each message came from
    write = sink.write

    async def noting_write(records: list[AggregateRecord]) -> None:
        await write(records)
        for record in records:
            partition = partition_of.get(dict(record.tags).get("building", ""))
            if partition is not None and partition not in seen_write:
                seen_write.add(partition)
                say("first_write", partition=partition)

    sink.write = noting_write  # type: ignore[method-assign]  # the same: which partition the aggregates belong to
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await runner.start()
    try:
        await asyncio.wait_for(runner.app.tables.recovery.completed.wait(), 120)
        say("ready")
        while not stop.is_set():
            now = {tp.partition for tp in runner.app.assignor.assigned_actives() if tp.topic == args.topic}
            if now != held:
                # A partition given back and taken again counts as a new takeover.
                seen_batch.intersection_update(now)
                seen_write.intersection_update(now)
                held = now
                say("assigned", partitions=sorted(held))
            say("progress", readings=runner.stats.readings, flushed=len(runner.stats.flushed), batches=runner.stats.batches)
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except TimeoutError:
                pass
    finally:
        await runner.stop()
        if isinstance(sink, InfluxAggregateSink):
            await sink.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--buildings", type=int, default=3000)
    parser.add_argument("--points", type=int, default=50)
    parser.add_argument("--influx", default="http://127.0.0.1:8086")
    parser.add_argument("--database", default="scale")
    parser.add_argument("--lateness-s", type=float, default=0.0)
    parser.add_argument("--session-s", type=float, default=3.0)
    parser.add_argument("--count-only", action="store_true")
    parser.add_argument("--gate", action="store_true", help="apply nothing until SIGUSR1")
    asyncio.run(main(parser.parse_args()))
