"""A real ``econome worker`` on Tansu: an undecodable message, then a SIGTERM while InfluxDB is down.

Issue 15's hostile review of the scale-out guard: one undecodable message
stopped its partition for ever (sought back to 97 times in 45 s), and a
SIGTERM while a write waited on InfluxDB hung the stop until systemd's
SIGKILL. Here the worker sets the message aside with an ERROR and goes on,
stops within seconds of a SIGTERM without committing the message whose write
waited, and a worker started after it (InfluxDB up) gives the aggregates of
``streams/pipeline.py`` on the same readings, value for value.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from econome.localservers import create_topic, free_port
from inventory import load_inventory
from streams.partitioning import assign_partitions
from streams.pipeline import Pipeline
from tests.conftest import ROOT, Endpoint
from tests.integration.test_faust_scale_out import (
    DAY,
    PARTITIONS,
    SESSION_S,
    Worker,
    _aggregates,
    _committed_lag,
    _in_process,
    _publish,
    _readings,
    _wait,
)

HOURS = 3


@pytest.mark.timeout(180)
def test_an_undecodable_message_is_set_aside_and_a_sigterm_while_influxdb_is_down_stops_promptly(
    kafka_server: Endpoint, influxdb_server: Endpoint, unique_name: str, tmp_path: Path
) -> None:
    config = ROOT / "examples" / "commune.yaml"
    inventory = load_inventory(config)
    readings = [r for r in _readings(inventory) if r.ts < DAY + timedelta(hours=HOURS)]
    address = f"{kafka_server.host}:{kafka_server.port}"
    topic, group, database = f"{unique_name}-readings", f"{unique_name}-group", f"{unique_name}_faust"
    create_topic(address, topic, PARTITIONS)
    env = {
        "ECONOME_KAFKA_URL": f"kafka://{address}", "ECONOME_KAFKA_TOPIC": topic, "ECONOME_KAFKA_GROUP": group,
        "ECONOME_KAFKA_PARTITIONS": str(PARTITIONS), "ECONOME_KAFKA_SESSION_TIMEOUT_S": str(SESSION_S),
        "ECONOME_KAFKA_HEARTBEAT_INTERVAL_S": "0.5", "ECONOME_INFLUX_URL": influxdb_server.url,
        "ECONOME_INFLUX_DATABASE": database, "ECONOME_LOG_LEVEL": "INFO",
    }  # fmt: skip
    reference: list[Pipeline | BaseException] = []

    def run_reference() -> None:
        try:
            reference.append(
                asyncio.run(_in_process(inventory, readings, influxdb_server.url, f"{unique_name}_inprocess", tmp_path))
            )
        except BaseException as exc:  # re-raised below, in the test's thread
            reference.append(exc)

    in_process = threading.Thread(target=run_reference, name="in-process-reference")
    in_process.start()
    building = next(iter(inventory.buildings()))[1].id
    partition = assign_partitions(inventory, PARTITIONS).partition_of(building)
    down = Worker("down", config, {**env, "ECONOME_INFLUX_URL": f"http://127.0.0.1:{free_port()}"}, tmp_path)
    workers = [down]
    try:
        _wait("assigned", lambda: down.value("econome_worker_assigned_partitions") == PARTITIONS, 60, workers)

        async def poison() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=address)
            await producer.start()
            try:
                await producer.send_and_wait(topic, b"not json", key=building.encode(), partition=partition)
            finally:
                await producer.stop()

        asyncio.run(poison())  # offset 0 of the building's partition
        undecodable = "econome_worker_set_aside_offsets_total{reason=undecodable}"
        _wait("the undecodable message set aside", lambda: down.metrics().get(undecodable) == 1.0, 30, workers)
        # Then the readings: the first write (InfluxDB down) makes the worker wait, every partition with it.
        asyncio.run(_publish(readings, address, topic, inventory, end=True))
        _wait("writes failing", lambda: down.value("econome_worker_sink_failures_total") >= 1, 60, workers)
        said = f"partition {partition} offset 0, building {building}: message set aside (undecodable after 1 tries)"
        lines = [line for line in down.output().splitlines() if said in line]
        assert len(lines) == 1, down.output()[-3000:]
        assert "ERROR" in lines[0]
        time.sleep(2)  # a commit interval or two: the messages handled are committed
        down.process.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        rc = down.process.wait(30)
        stop_s = time.monotonic() - stopping
        lag_after_stop = asyncio.run(_committed_lag(address, group, topic))
        assert rc == 0, down.output()[-3000:]
        assert stop_s < 10, f"the stop took {stop_s:.1f} s"
        assert "not written when the worker stopped: its message is not committed" in down.output()
        assert "Traceback" not in down.output()  # a clean stop: no agent crash logged
        assert lag_after_stop > 0  # the message whose write waited, and what follows it, not committed

        up = Worker("up", config, env, tmp_path)
        workers = [up]
        _wait("every message committed", lambda: asyncio.run(_committed_lag(address, group, topic)) == 0, 90, workers)
        # The poison was committed past by the first worker: the second never meets it.
        assert up.value("econome_worker_set_aside_offsets_total") == 0
        up.process.send_signal(signal.SIGTERM)
        assert up.process.wait(30) == 0
    finally:
        for worker in workers:
            worker.kill()
        in_process.join(120)
    print(f"stop with InfluxDB down: {stop_s:.1f} s; committed lag after it {lag_after_stop}")
    pipeline = reference[0]
    if isinstance(pipeline, BaseException):
        raise pipeline
    expected = _aggregates(influxdb_server.url, f"{unique_name}_inprocess")
    got = _aggregates(influxdb_server.url, database)
    assert len(expected) > 100
    assert got.keys() == expected.keys(), (len(expected.keys() - got.keys()), len(got.keys() - expected.keys()))
    different = [(key, got[key], expected[key]) for key in expected if got[key] != expected[key]]
    assert not different, (len(different), different[:3])
