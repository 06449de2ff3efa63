"""Benchmark: stream processing rate and InfluxDB sink rate, each beside its baseline.

1. **In-process runner**: a recorded day of the demo commune (every point at
   one-minute steps) goes through what the runner does to each reading:
   validation, the durable delivery log (SQLite), the stream processor
   (counters, windows, aggregates) and line-protocol encoding. CPU seconds are
   measured with ``time.process_time`` on one core.
2. **faust runner** over Tansu (Kafka protocol), when its bench helper is there.
3. **Sink**: the pipeline's own sink draining a delivery log (SQLite reads,
   gzip, batches of 5,000, two writes in flight while the next is prepared, acks)
   against raw line-protocol POSTs of pre-encoded batches of 5,000 (no gzip),
   both to a real InfluxDB 1.x started for the run, alternated over two rounds.

Run: ``.venv/bin/python bench/streams.py [--points N]``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np

# This folder holds scripts named like packages; keep it off the import path.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != _HERE]

from econome.localservers import start_influxdb  # noqa: E402
from inventory import Inventory, load_inventory  # noqa: E402
from simulator.physics import generate_history  # noqa: E402
from streams.aggregate import StreamProcessor  # noqa: E402
from streams.buffer import DeliveryLog  # noqa: E402
from streams.clock import SystemClock  # noqa: E402
from streams.deadletter import DeadLetterStore  # noqa: E402
from streams.influx import InfluxConfig, InfluxV1Writer, LineEncoder  # noqa: E402
from streams.pipeline import Pipeline  # noqa: E402
from streams.record import Reading  # noqa: E402
from streams.validate import Validator  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BATCH = 5000


def recorded_day(inv: Inventory, start: datetime, step: timedelta) -> list[Reading]:
    """A day of the demo commune as readings, in time order, NaN (silent sensors) left out."""
    history = generate_history(inv, start, start + timedelta(days=1), step, seed=7)
    units = {p.id: p.unit for _, p in inv.points()}
    times = history.datetimes()
    out = []
    for row, ts in enumerate(times):
        for col, point_id in enumerate(history.point_ids):
            value = float(history.values[row, col])
            if not np.isnan(value):
                out.append(Reading(point_id, ts, value, units[point_id]))
    return out


def bench_in_process(inv: Inventory, readings: list[Reading]) -> dict[str, float]:
    """CPU cost of the in-process runner's per-reading work."""
    points = {p.id: p for _, p in inv.points()}
    validator = Validator()
    encoder = LineEncoder(inv)
    processor = StreamProcessor(inv)
    with tempfile.TemporaryDirectory() as tmp:
        log = DeliveryLog(Path(tmp) / "log.sqlite", max_rows=10_000_000)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        aggregates = 0
        for i in range(0, len(readings), 500):  # one batch per device poll or MQTT burst
            batch = readings[i : i + 500]
            good = [validator.check(r, points[r.point_id].quantity, points[r.point_id].unit)[0] for r in batch]
            log.append(good)
            processor.process(good)
            records = processor.advance()
            lines = [encoder.encode(r) for r in good] + [r.line() for r in records]
            aggregates += len(records)
            assert lines  # noqa: S101 - the work is not optimised away
        aggregates += len(processor.flush())
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        log.close()
    return {"readings": len(readings), "cpu_s": cpu, "wall_s": wall, "per_s_per_core": len(readings) / cpu,
            "aggregates": aggregates}  # fmt: skip


async def _sink_once(
    url: str, inv: Inventory, readings: list[Reading], database: str, tmp: Path, gzip: bool = True
) -> float:
    """Points/s of the pipeline's own sink draining a delivery log holding the readings."""
    encoder = LineEncoder(inv)
    log = DeliveryLog(tmp / f"{database}.sqlite", max_rows=10_000_000)
    for i in range(0, len(readings), BATCH):  # filled before the clock starts: that is the persist step
        chunk = readings[i : i + BATCH]
        log.append(chunk, [encoder.encode(r) for r in chunk])
    writer = InfluxV1Writer(InfluxConfig(url=url, database=database, gzip=gzip))
    await writer.ensure_database()
    pipeline = Pipeline(
        inv, writer, SystemClock(), DeadLetterStore(), log, batch_size=BATCH, flush_interval=timedelta(milliseconds=20)
    )
    t0 = time.perf_counter()
    task = asyncio.create_task(pipeline.run([], []))
    while log.depth() > 0:
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - t0
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await writer.close()
    log.close()
    assert pipeline.stats.written == len(readings)  # noqa: S101 - nothing was refused
    return len(readings) / elapsed


async def _raw_once(url: str, inv: Inventory, readings: list[Reading], database: str) -> float:
    """Points/s of plain POSTs of pre-encoded batches of 5,000 lines (no gzip)."""
    encoder = LineEncoder(inv)
    bodies = [
        ("\n".join(encoder.encode(r) for r in readings[i : i + BATCH]) + "\n").encode() for i in range(0, len(readings), BATCH)
    ]
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await client.post("/query", params={"q": f'CREATE DATABASE "{database}"'})
        t0 = time.perf_counter()
        for body in bodies:
            response = await client.post("/write", params={"db": database, "precision": "ms"}, content=body)
            response.raise_for_status()
        return len(readings) / (time.perf_counter() - t0)


async def bench_sink(url: str, inv: Inventory, readings: list[Reading]) -> dict[str, float]:
    """Our sink against raw line protocol on the same server, alternated over two rounds."""
    sink, gzipped, raw = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(2):
            raw.append(await _raw_once(url, inv, readings, f"bench_raw{round_}"))
            sink.append(await _sink_once(url, inv, readings, f"bench_sink{round_}", Path(tmp)))
            gzipped.append(await _sink_once(url, inv, readings, f"bench_plain{round_}", Path(tmp), gzip=False))
    return {
        "sink_points_per_s": sum(sink) / len(sink),
        "sink_plain_points_per_s": sum(gzipped) / len(gzipped),
        "raw_points_per_s": sum(raw) / len(raw),
    }


def bench_faust(n: int) -> dict[str, float]:
    """The faust runner's rate over a Tansu broker (``bench/_faust.py``)."""
    # bench/_faust.py is imported as bench._faust, here and in its spawned publisher process.
    sys.path.insert(0, str(ROOT))
    from bench._faust import faust_throughput

    return asyncio.run(faust_throughput(n))


def main() -> None:
    """Run the three measures and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sink-points", type=int, default=200_000)
    parser.add_argument("--faust-readings", type=int, default=60_000)
    args = parser.parse_args()
    inv = load_inventory(ROOT / "examples" / "commune.yaml")
    readings = recorded_day(inv, datetime(2026, 1, 12, tzinfo=UTC), timedelta(minutes=1))
    inproc = bench_in_process(inv, readings)
    print(f"recorded day: {len(readings):,} readings of {sum(1 for _ in inv.points())} points")
    print(
        f"in-process runner: {inproc['per_s_per_core']:,.0f} readings/s per core "
        f"({inproc['cpu_s']:.2f} CPU s; validation + SQLite log + processor + encoding; "
        f"{inproc['aggregates']:,} aggregates)"
    )
    faust = bench_faust(args.faust_readings)
    print(f"faust runner:      {faust['readings_per_s']:,.0f} readings/s per worker ({faust})")
    sink_readings = (readings * (args.sink_points // len(readings) + 1))[: args.sink_points]
    # Distinct times, so every point is a new one for InfluxDB.
    sink_readings = [
        Reading(r.point_id, r.ts + timedelta(days=i // len(readings)), r.value, r.unit) for i, r in enumerate(sink_readings)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        server = start_influxdb(Path(tmp))
        try:
            sink = asyncio.run(bench_sink(server.url, inv, sink_readings))
        finally:
            server.stop()
    ratio = sink["sink_points_per_s"] / sink["raw_points_per_s"]
    print(f"sink:  {sink['sink_points_per_s']:,.0f} points/s (delivery log → gzip → POST → ack, batches of {BATCH})")
    print(f"sink without gzip: {sink['sink_plain_points_per_s']:,.0f} points/s")
    print(f"raw:   {sink['raw_points_per_s']:,.0f} points/s (pre-encoded line protocol, batches of {BATCH})")
    print(f"sink/raw = {ratio:.2f}")
    print(json.dumps({
        "inproc_readings_per_s": round(inproc["per_s_per_core"]),
        "faust_readings_per_s": round(faust["readings_per_s"]),
        "sink_points_per_s": round(sink["sink_points_per_s"]),
        "raw_points_per_s": round(sink["raw_points_per_s"]),
        "sink_plain_points_per_s": round(sink["sink_plain_points_per_s"]),
        "sink_vs_raw": round(ratio, 3),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
