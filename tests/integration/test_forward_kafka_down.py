"""``econome run --runner faust`` started while Kafka is down collects anyway (review of issue 15 part A, defect 5).

The real CLI, Mosquitto, InfluxDB 1.6.7, then Tansu on the port the run was
given. Readings published while no broker listens land in the delivery log
(and their raw points in InfluxDB); the forward step says once that Kafka is
unreachable, keeps trying, and once Tansu is up every reading reaches the
topic, once, with its delivery-log sequence number.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from econome.localservers import free_port, start_tansu
from streams.faust_runner import SEQUENCE_HEADER, decode_batch, decode_sequence
from tests.conftest import ROOT, Endpoint
from tests.integration.test_delivery_faults import Publisher, _config, _stop, _wait_complete, _wait_ready

PARTITIONS = 4


def _log_rows(path: Path) -> tuple[int, int]:
    """Readings of the meter in the delivery log, and the forward cursor."""
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT count(*) FROM readings WHERE point IN ('energy', 'temp')").fetchone()[0]
        cursor = db.execute("SELECT seq FROM cursors WHERE name = 'forward'").fetchone()
    return int(rows), int(cursor[0]) if cursor else 0


async def _topic(address: str, topic: str, n: int, timeout: float) -> tuple[Counter[str], Counter[int]]:
    """Readings per point in the topic, and how often each sequence number came, once ``n`` readings of each are in."""
    consumer = AIOKafkaConsumer(bootstrap_servers=address, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    points: Counter[str] = Counter()
    seqs: Counter[int] = Counter()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (points["energy"] >= n and points["temp"] >= n):
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for message in messages:
                    readings = decode_batch(message.value)
                    points.update(r.point_id for r in readings)
                    seqs.update(decode_sequence(dict(message.headers)[SEQUENCE_HEADER]).seqs)
    finally:
        await consumer.stop()
    return points, seqs


@pytest.mark.timeout(120)
def test_run_started_with_kafka_down_collects_and_forwards_once_it_is_up(
    mqtt_server: Endpoint, influxdb_server: Endpoint, unique_name: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, mqtt_server.port, unique_name)
    kafka_port = free_port()
    topic = f"{unique_name}-readings"
    data_dir = tmp_path / "var"
    env = {
        **os.environ,
        "ECONOME_RUNNER": "faust",
        "ECONOME_KAFKA_URL": f"kafka://127.0.0.1:{kafka_port}",
        "ECONOME_KAFKA_PARTITIONS": str(PARTITIONS),
        "ECONOME_KAFKA_TOPIC": topic,
        "ECONOME_INFLUX_URL": influxdb_server.url,
        "ECONOME_INFLUX_DATABASE": unique_name,
        "ECONOME_DATA_DIR": str(data_dir),
        "ECONOME_DETECT_ENABLED": "false",
        "ECONOME_FLUSH_INTERVAL_S": "0.2",
        "ECONOME_LATENESS_S": "60",
        "ECONOME_LOG_LEVEL": "INFO",
    }
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        run = subprocess.Popen(
            [sys.executable, "-m", "econome.cli", "run", str(config)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    run.log_path = log  # type: ignore[attr-defined]  # read by _stop
    tansu = None
    n = 100
    try:
        _wait_ready(mqtt_server.port, unique_name, influxdb_server.url, unique_name)
        assert run.poll() is None, log.read_text()
        publisher = Publisher(mqtt_server.port, f"{unique_name}/meter", n, rate=200.0)
        threading.Thread(target=publisher.run, daemon=True).start()
        assert publisher.done.wait(30)
        # Collected: the raw points are in InfluxDB, and every reading waits in the log, none forwarded.
        counts = _wait_complete(influxdb_server.url, unique_name, n, timeout=30)
        assert counts["energy"][0] == counts["temp"][0] == n
        assert _log_rows(data_dir / "delivery.sqlite") == (2 * n, 0)
        time.sleep(2)  # a few more tries (0.5 s, 1 s, 2 s... apart) while Kafka stays down
        tansu = start_tansu(tmp_path / "tansu", port=kafka_port)
        points, seqs = asyncio.run(_topic(f"127.0.0.1:{kafka_port}", topic, n, timeout=45))
        assert (points["energy"], points["temp"]) == (n, n)
        assert set(seqs.values()) == {1}  # each reading forwarded once
        output = _stop(run)
        assert run.returncode == 0, output
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
        if tansu is not None:
            tansu.stop()
    errors = [line for line in output.splitlines() if "ERROR" in line and "forward" in line]
    assert len(errors) == 1, output
    assert f"Kafka 127.0.0.1:{kafka_port} unreachable" in errors[0]
    assert "forward: working again after" in output
