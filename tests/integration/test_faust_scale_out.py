"""Scale-out over Kafka: two ``econome worker`` processes, one SIGKILLed, one SIGTERMed busy, give the in-process aggregates.

Real Tansu, real InfluxDB 1.6.7, the real CLI. The demo commune (14 buildings)
over one simulated day goes to a 4-partition topic; two workers share it. The
first half of the day: one worker is killed (SIGKILL: no commit, no goodbye)
after it has handled some batches, and the other takes its partitions and
replays what it left uncommitted. The second half: the killed worker is started
again, and once both are busy with the second half, the other is stopped
(SIGTERM, a clean stop: it commits and leaves while the restarted worker keeps
its own partitions through the rebalance, issue 15's second way to lose
records). What the workers wrote to InfluxDB is compared with what
``streams/pipeline.py`` (the in-process runner) writes to another database
from the same readings: every aggregate of ``agg_point``, ``agg_usage`` and
``agg_building``, nothing missing, nothing extra, no value different.

The same run scrapes the workers' Prometheus metrics (assigned partitions,
lag, rebalances, idle and stall seconds, gaps read again) and measures the
takeover time after the SIGKILL and after the SIGTERM (printed; see
deploy/OPERATIONS.md, "Scaling out").

A run with aggregates missing or different prints, and writes to ``diagnosis.txt``
in its temporary folder, per building: its partition, which worker held it
after each rebalance, the windows lost and the workers' log lines about it
(issue 15: that is how faust's dropped records were found).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from faust.types import TP
from prometheus_client.parser import text_string_to_metric_families

from econome.localservers import create_topic, free_port
from inventory import Inventory, load_inventory
from simulator.physics import generate_history
from streams.aggregate import StreamProcessor, StreamSettings
from streams.buffer import DeliveryLog
from streams.clock import ManualClock
from streams.deadletter import DeadLetterStore
from streams.faust_runner import publish, true_end_offsets
from streams.influx import InfluxConfig, InfluxV1Writer
from streams.partitioning import assign_partitions
from streams.pipeline import Pipeline
from streams.record import Reading
from tests.conftest import ROOT, Endpoint

PARTITIONS = 4
DAY = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday in winter: heating, school, occupancy
LATENESS = timedelta(minutes=10)  # ECONOME_LATENESS_S's default, which the workers use
SESSION_S = 3.0
MEASUREMENTS = ("agg_point", "agg_usage", "agg_building")
Aggregates = dict[tuple[str, tuple[tuple[str, str], ...], str], dict[str, Any]]


def _readings(inventory: Inventory) -> list[Reading]:
    history = generate_history(inventory, DAY, DAY + timedelta(days=1), timedelta(minutes=1), seed=4)
    unit = {point.id: point.unit for _, point in inventory.points()}
    return [Reading(point_id, ts, value, unit[point_id]) for ts, point_id, value in history.rows() if not math.isnan(value)]


async def _in_process(inventory: Inventory, readings: list[Reading], url: str, database: str, folder: Path) -> Pipeline:
    """Run streams/pipeline.py on the readings, writing to ``database``; its stop processes and flushes everything."""
    writer = InfluxV1Writer(InfluxConfig(url=url, database=database))
    await writer.ensure_database()
    pipeline = Pipeline(
        inventory,
        writer,
        ManualClock(DAY + timedelta(days=1)),
        DeadLetterStore(),
        DeliveryLog(folder / "delivery.sqlite"),
        processor=StreamProcessor(inventory, StreamSettings(allowed_lateness=LATENESS)),
        flush_interval=timedelta(milliseconds=100),
        stop_timeout=timedelta(seconds=120),
    )
    task = asyncio.create_task(pipeline.run([], []))
    for i in range(0, len(readings), 5000):
        await pipeline.put(readings[i : i + 5000])
    # Stop only once everything is processed and written: a stop leaves what it has no time for in the
    # delivery log for the next start, which this run does not have.
    deadline = time.monotonic() + 90
    settled = (-1, -1)
    while time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.5)
        stats = pipeline.stats
        now = (stats.aggregates, stats.written)
        if pipeline.log.depth() == 0 and stats.written >= stats.received + stats.aggregates and now == settled:
            break
        settled = now
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await writer.close()
    left = pipeline.log.depth()
    pipeline.log.close()
    assert left == 0, f"the in-process run stopped with {left} rows not written"
    return pipeline


def _aggregates(url: str, database: str) -> Aggregates:
    """Every aggregate InfluxDB holds: (measurement, tags, time) -> fields."""
    out: Aggregates = {}
    for measurement in MEASUREMENTS:
        response = httpx.get(
            f"{url}/query", params={"db": database, "q": f'SELECT * FROM "{measurement}" GROUP BY *'}, timeout=30,  # noqa: S608 - our constants
        )
        for series in response.json()["results"][0].get("series", []):
            tags = tuple(sorted(series["tags"].items()))
            for row in series["values"]:
                fields = {k: v for k, v in zip(series["columns"], row, strict=True) if k != "time" and v is not None}
                out[(measurement, tags, row[0])] = fields
    return out


class Worker:
    """One ``econome worker`` process with its own data folder and metrics port."""

    def __init__(self, name: str, config: Path, env: dict[str, str], folder: Path, *options: str) -> None:
        self.name = name
        self.host = env.get("ECONOME_WORKER_METRICS_HOST", "127.0.0.1")
        self.port = free_port()
        self.log = folder / f"{name}-{time.monotonic_ns()}.log"
        data = folder / name
        data.mkdir(exist_ok=True)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "econome.cli", "worker", str(config), "--metrics-port", str(self.port), *options],
                cwd=ROOT, env={**os.environ, **env, "ECONOME_DATA_DIR": str(data)}, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def kill(self) -> None:
        """SIGKILL it if it still runs (a test's clean-up), and reap it."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def metrics(self) -> dict[str, float]:
        """The worker's samples, ``name{label=value}`` -> value; empty while it does not answer."""
        try:
            text = httpx.get(f"http://{self.host}:{self.port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return {}
        out = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return out

    def value(self, name: str) -> float:
        """The sum of a metric's samples (over its labels)."""
        return sum(v for k, v in self.metrics().items() if k == name or k.startswith(name + "{"))

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _diagnose(
    bad: set[tuple[str, tuple[tuple[str, str], ...], str]],
    expected: Aggregates,
    inventory: Inventory,
    logs: list[tuple[str, Path]],
    metrics: dict[str, dict[str, float]],
) -> str:
    """What a failing run shows, per building with aggregates missing or different (``bad``).

    The building's partition, which worker held it after each rebalance, the first and last bad
    window of each size against the building's windows, the workers' metrics at the end and the log
    lines about that partition or building (skipped offsets, partitions read from their start).
    """
    pmap = assign_partitions(inventory, PARTITIONS)
    out = [f"{len(bad)} aggregates missing or different; worker logs: " + ", ".join(f"{name} {path}" for name, path in logs)]
    for building in sorted({dict(key[1])["building"] for key in bad}):
        partition = pmap.partition_of(building)
        ours = [key for key in bad if dict(key[1])["building"] == building]
        out.append(f"--- building {building}, partition {partition}: {len(ours)} missing or different")
        for size in sorted({dict(key[1])["window"] for key in ours}):
            gone = sorted(key[2] for key in ours if dict(key[1])["window"] == size)
            windows = sorted(
                {key[2] for key in expected if dict(key[1]).get("building") == building and dict(key[1])["window"] == size}
            )
            tail = windows[windows.index(gone[0]):]
            out.append(
                f"  {size}: {len(set(gone))} of {len(windows)} windows missing or different, first {gone[0]}, last {gone[-1]}; "
                f"every window from the first bad one on: {set(gone) == set(tail)}"
            )
        for name, path in logs:
            text = path.read_text(errors="replace").splitlines()
            owned = [line for line in text if "ended after" in line]
            words = (f"partition {partition}", building, "committed offset", "Traceback")
            about = [line for line in text if any(word in line for word in words)]
            out.append(f"  {name}: rebalances: " + " | ".join(line.split("rebalance ", 1)[-1] for line in owned))
            out.extend(f"  {name}: {line}" for line in about[:40])
    for name, samples in metrics.items():
        wanted = {k: v for k, v in samples.items() if k.startswith(("econome_worker_left_out", "econome_worker_redelivered",
                                                                    "econome_worker_sink", "econome_worker_messages"))}
        out.append(f"metrics of {name} at the end: {wanted}")
    return "\n".join(out)


def _wait(what: str, predicate: Callable[[], bool], timeout: float, workers: list[Worker]) -> float:
    """Wait until ``predicate()`` holds; return the seconds it took."""
    started = time.monotonic()
    while not predicate():
        for worker in workers:
            assert worker.process.poll() is None, f"{worker.name} exited:\n{worker.output()[-3000:]}"
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s\n" + "\n".join(
            f"--- {w.name}\n{w.output()[-2000:]}" for w in workers
        )
        time.sleep(0.1)
    return time.monotonic() - started


async def _publish(readings: list[Reading], address: str, topic: str, inventory: Inventory, *, end: bool) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=address, request_timeout_ms=10_000, max_request_size=8 * 1024 * 1024)
    await producer.start()
    try:
        return await publish(readings, producer, inventory, topic=topic, end=end)
    finally:
        await producer.stop()


async def _committed_lag(address: str, group: str, topic: str) -> int:
    """Messages of the topic past the group's committed offsets (true end offsets: Tansu defect B1)."""
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer = AIOKafkaConsumer(bootstrap_servers=address, request_timeout_ms=10_000)
    admin = AIOKafkaAdminClient(bootstrap_servers=address, request_timeout_ms=10_000)
    await consumer.start()
    await admin.start()
    try:
        reported = await consumer.end_offsets(partitions)
        ends = await true_end_offsets(address, {TP(tp.topic, tp.partition): end for tp, end in reported.items()})
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)  # B5: partitions given
    finally:
        await consumer.stop()
        await admin.close()
    done = {tp.partition: (meta.offset if meta is not None and meta.offset >= 0 else 0) for tp, meta in committed.items()}
    return sum(end - done.get(tp.partition, 0) for tp, end in ends.items())


def _assert_healthy(worker: Worker) -> None:
    """Health metrics of a running worker once everything is committed: lag 0 per assigned partition, rebalances, idle."""
    time.sleep(1.5)  # one health tick after the last message
    samples = worker.metrics()
    lags = {k: v for k, v in samples.items() if k.startswith("econome_worker_lag_messages{")}
    assert len(lags) == samples["econome_worker_assigned_partitions"] >= 1, samples
    assert set(lags.values()) == {0.0}
    assert samples["econome_worker_rebalances_total"] >= 1
    assert samples["econome_worker_stalled_seconds"] == 0.0
    assert samples["econome_worker_idle_seconds"] > 0.0


@pytest.mark.timeout(300)  # about 60 s alone; up to 200 s seen on this 2-core machine at a load average of 13
def test_two_workers_one_killed_and_restarted_give_the_in_process_aggregates(
    kafka_server: Endpoint, influxdb_server: Endpoint, unique_name: str, tmp_path: Path
) -> None:
    config = ROOT / "examples" / "commune.yaml"
    inventory = load_inventory(config)
    assert len(list(inventory.buildings())) == 14  # the README says: the 14 buildings of the demo commune
    readings = _readings(inventory)
    half = len(readings) // 2
    address = f"{kafka_server.host}:{kafka_server.port}"
    topic, group, database = f"{unique_name}-readings", f"{unique_name}-group", f"{unique_name}_faust"
    create_topic(address, topic, PARTITIONS)
    env = {
        "ECONOME_KAFKA_URL": f"kafka://{address}",
        "ECONOME_KAFKA_TOPIC": topic,
        "ECONOME_KAFKA_GROUP": group,
        "ECONOME_KAFKA_PARTITIONS": str(PARTITIONS),
        "ECONOME_KAFKA_SESSION_TIMEOUT_S": str(SESSION_S),
        "ECONOME_KAFKA_HEARTBEAT_INTERVAL_S": "0.5",
        "ECONOME_INFLUX_URL": influxdb_server.url,
        "ECONOME_INFLUX_DATABASE": database,
        "ECONOME_LOG_LEVEL": "INFO",
    }
    # The reference, streams/pipeline.py in this process, runs on a thread while the workers mostly wait for joins.
    reference: list[Pipeline | BaseException] = []

    def run_reference() -> None:
        try:
            reference.append(
                asyncio.run(_in_process(inventory, readings, influxdb_server.url, f"{unique_name}_inprocess", tmp_path))
            )
        except BaseException as exc:  # reported by the test's thread below
            reference.append(exc)

    in_process = threading.Thread(target=run_reference, name="in-process-reference")
    in_process.start()
    survivor = Worker("survivor", config, env, tmp_path)
    # The victim commits rarely: what it handles before its SIGKILL is surely read again by the survivor.
    victim = Worker("victim", config, {**env, "ECONOME_KAFKA_COMMIT_INTERVAL_S": "60"}, tmp_path)
    workers = [survivor, victim]
    logs = [("survivor", survivor.log), ("killed victim", victim.log)]
    metrics: dict[str, dict[str, float]] = {}
    try:
        _wait(
            "both workers hold partitions",
            lambda: survivor.value("econome_worker_assigned_partitions") >= 1
            and victim.value("econome_worker_assigned_partitions") >= 1
            and survivor.value("econome_worker_assigned_partitions") + victim.value("econome_worker_assigned_partitions")
            == PARTITIONS,
            60,
            workers,
        )
        # What a worker built at start is out of the collector's full walks, as in econome run.
        assert re.search(r"\d+ objects built at start frozen out of the garbage collector's walks", survivor.output())
        asyncio.run(_publish(readings[:half], address, topic, inventory, end=False))
        _wait("the victim handles batches", lambda: victim.value("econome_worker_messages_total") >= 5, 30, workers)
        victim.process.kill()  # SIGKILL: no commit, no LeaveGroup
        victim.process.wait(10)
        workers = [survivor]
        takeover_kill = _wait(
            "the survivor takes the victim's partitions",
            lambda: survivor.value("econome_worker_assigned_partitions") == PARTITIONS,
            30,
            workers,
        )
        _wait("the first half committed", lambda: asyncio.run(_committed_lag(address, group, topic)) == 0, 60, workers)
        # The replay happened: the survivor read again what the victim had handled and saved, and skipped it.
        assert survivor.value("econome_worker_redelivered_total") > 0
        _assert_healthy(survivor)
        victim = Worker("victim", config, env, tmp_path)
        workers = [survivor, victim]
        logs.append(("restarted victim", victim.log))
        _wait(
            "both workers hold partitions again",
            lambda: victim.value("econome_worker_assigned_partitions") >= 1
            and survivor.value("econome_worker_assigned_partitions") + victim.value("econome_worker_assigned_partitions")
            == PARTITIONS,
            60,
            workers,
        )
        # The survivor's own partitions stop during each rebalance (eager): its rebalance seconds are that stall.
        survivor_rebalances = survivor.metrics()
        stall = survivor_rebalances["econome_worker_rebalance_seconds_sum"] / survivor_rebalances[
            "econome_worker_rebalance_seconds_count"
        ]
        before = survivor.value("econome_worker_messages_total")
        asyncio.run(_publish(readings[half:], address, topic, inventory, end=True))
        _wait("the survivor is busy with the second half", lambda: survivor.value("econome_worker_messages_total") >= before + 5,
              30, workers)  # fmt: skip
        # A clean stop while busy: it commits what it handled and leaves; the other worker keeps its own partitions
        # through the rebalance and takes the survivor's without waiting for the session to expire.
        metrics["survivor"] = survivor.metrics()
        survivor.process.send_signal(signal.SIGTERM)
        busy = sum(v for k, v in metrics["survivor"].items() if k.startswith("econome_worker_messages_total")) - before
        workers = [victim]
        takeover_term = _wait(
            "the restarted victim takes every partition",
            lambda: victim.value("econome_worker_assigned_partitions") == PARTITIONS,
            30,
            workers,
        )
        assert survivor.process.wait(30) == 0, survivor.output()[-3000:]
        _wait("every message committed", lambda: asyncio.run(_committed_lag(address, group, topic)) == 0, 90, workers)
        _assert_healthy(victim)
        metrics["restarted victim"] = victim.metrics()
        victim.process.send_signal(signal.SIGTERM)
        assert victim.process.wait(30) == 0, victim.output()[-3000:]
    finally:
        for worker in workers:
            worker.kill()
        in_process.join(120)
    assert "stopped:" in survivor.output()
    rereads = {name: sum(v for k, v in samples.items() if k.startswith("econome_worker_rereads_total"))
               for name, samples in metrics.items()}  # fmt: skip
    print(
        f"takeover after SIGKILL {takeover_kill:.1f} s, after SIGTERM {takeover_term:.1f} s, "
        f"survivor's mean rebalance (its own partitions stalled) {stall:.1f} s (session {SESSION_S} s); "
        f"survivor SIGTERMed {busy:.0f} messages into the second half; gaps read again {rereads}"
    )

    pipeline = reference[0]
    if isinstance(pipeline, BaseException):
        raise pipeline
    assert pipeline.stats.received == len(readings)
    assert pipeline.stats.rejected == 0
    expected = _aggregates(influxdb_server.url, f"{unique_name}_inprocess")
    got = _aggregates(influxdb_server.url, database)
    assert {key[0] for key in expected} == set(MEASUREMENTS)
    assert {dict(key[1])["building"] for key in expected if key[0] == "agg_building"} == {
        b.id for _, b in inventory.buildings()
    }
    missing = expected.keys() - got.keys()
    extra = got.keys() - expected.keys()
    different = [(key, got[key], expected[key]) for key in expected if key in got and got[key] != expected[key]]
    if missing or different:
        diagnosis = _diagnose(missing | {key for key, _, _ in different}, expected, inventory, logs, metrics)
        (tmp_path / "diagnosis.txt").write_text(diagnosis)
        print(diagnosis)
    assert not extra, (len(extra), [(key, got[key]) for key in sorted(extra)[:5]])
    assert not missing, (len(missing), sorted(missing)[:5])
    assert not different, (len(different), different[:5])


@pytest.mark.timeout(90)
def test_a_sigterm_in_the_first_generation_hands_over_before_the_session_expires(
    kafka_server: Endpoint, influxdb_server: Endpoint, unique_name: str, tmp_path: Path
) -> None:
    """Tansu numbers the first generation 0, where aiokafka sends no LeaveGroup (defect B3): the worker sends it."""
    config = ROOT / "examples" / "commune.yaml"
    address = f"{kafka_server.host}:{kafka_server.port}"
    session_s = 6.0
    env = {
        "ECONOME_KAFKA_URL": f"kafka://{address}",
        "ECONOME_KAFKA_TOPIC": f"{unique_name}-readings",
        "ECONOME_KAFKA_GROUP": unique_name,
        "ECONOME_KAFKA_PARTITIONS": str(PARTITIONS),
        "ECONOME_KAFKA_SESSION_TIMEOUT_S": str(session_s),
        "ECONOME_INFLUX_URL": influxdb_server.url,
        "ECONOME_INFLUX_DATABASE": unique_name,
        "ECONOME_LOG_LEVEL": "INFO",
    }
    # No topic yet: the workers create it, with ECONOME_KAFKA_PARTITIONS partitions (the second finds it there).
    web_port = free_port()
    first, second = Worker("first", config, env, tmp_path), Worker("second", config, env, tmp_path, "--web-port", str(web_port))
    workers = [first, second]
    try:
        _wait(
            "both workers hold partitions",
            lambda: first.value("econome_worker_assigned_partitions") >= 1
            and second.value("econome_worker_assigned_partitions") >= 1,
            60,
            workers,
        )
        # faust's web views only where asked for: the second worker's port answers.
        assert httpx.get(f"http://127.0.0.1:{web_port}/", timeout=5).status_code == 200
        first.process.send_signal(signal.SIGTERM)
        workers = [second]
        takeover = _wait(
            "the second worker takes every partition",
            lambda: second.value("econome_worker_assigned_partitions") == PARTITIONS,
            30,
            workers,
        )
        assert first.process.wait(30) == 0, first.output()[-3000:]
    finally:
        for worker in (first, second):
            worker.kill()
    print(f"takeover after a SIGTERM in generation 0: {takeover:.1f} s (session {session_s} s)")
    assert "(generation 0: Tansu defect B3)" in first.output()
    assert first.output().count("Joined group") == 1  # it left once, and did not join again as a new member
    # Without the LeaveGroup the partitions would wait for the session to expire (6 s), then for the
    # rebalance (Tansu holds a join about half the session, B2): 9 s and more. With it, about 4 s.
    assert takeover < session_s * 1.25
