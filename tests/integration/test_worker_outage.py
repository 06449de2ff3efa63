"""An InfluxDB stopped for ~20 s under a running ``econome worker`` loses no aggregate.

Real Tansu, two real InfluxDB 1.6.7 (the worker's own, stopped and restarted; the shared one
for the reference), the real CLI. The demo commune over half a day goes to a 4-partition topic;
during the outage the worker's writes fail: it logs one ERROR, waits on the batch (its
``econome_worker_stalled_seconds`` grows, nothing is committed past it), and writes it once
InfluxDB is back (an INFO). Afterwards every aggregate equals what ``streams/pipeline.py``
writes from the same readings. The worker is given two bootstrap servers, the first one dead.
"""

from __future__ import annotations

import asyncio
import math
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from econome.localservers import create_topic, free_port, restart, start_influxdb
from inventory import Inventory, load_inventory
from simulator.physics import generate_history
from streams.pipeline import Pipeline
from streams.record import Reading
from tests.conftest import ROOT, Endpoint
from tests.integration.test_faust_scale_out import (
    DAY,
    MEASUREMENTS,
    PARTITIONS,
    Worker,
    _aggregates,
    _committed_lag,
    _in_process,
    _publish,
    _wait,
)


def _half_day(inventory: Inventory) -> list[Reading]:
    history = generate_history(inventory, DAY, DAY + timedelta(hours=12), timedelta(minutes=1), seed=7)
    unit = {point.id: point.unit for _, point in inventory.points()}
    return [Reading(point_id, ts, value, unit[point_id]) for ts, point_id, value in history.rows() if not math.isnan(value)]


@pytest.mark.timeout(150)
def test_an_influxdb_outage_under_a_worker_loses_nothing(
    kafka_server: Endpoint, influxdb_server: Endpoint, unique_name: str, tmp_path: Path
) -> None:
    config = ROOT / "examples" / "commune.yaml"
    inventory = load_inventory(config)
    readings = _half_day(inventory)
    quarter = len(readings) // 4
    address = f"{kafka_server.host}:{kafka_server.port}"
    topic, group = f"{unique_name}-readings", f"{unique_name}-group"
    create_topic(address, topic, PARTITIONS)
    influx = start_influxdb(tmp_path / "influx")
    env = {
        # Several bootstrap servers; the first answers nothing.
        "ECONOME_KAFKA_URL": f"kafka://127.0.0.1:{free_port()},{address}",
        "ECONOME_KAFKA_TOPIC": topic,
        "ECONOME_KAFKA_GROUP": group,
        "ECONOME_KAFKA_PARTITIONS": str(PARTITIONS),
        "ECONOME_KAFKA_SESSION_TIMEOUT_S": "3",
        "ECONOME_KAFKA_HEARTBEAT_INTERVAL_S": "0.5",
        "ECONOME_INFLUX_URL": influx.url,
        "ECONOME_INFLUX_DATABASE": "econome",
        "ECONOME_LOG_LEVEL": "INFO",
        "ECONOME_WORKER_METRICS_HOST": "127.0.0.2",  # the metrics listen there, not on 127.0.0.1
    }
    reference: list[Pipeline | BaseException] = []

    def run_reference() -> None:
        try:
            reference.append(asyncio.run(_in_process(inventory, readings, influxdb_server.url, unique_name, tmp_path)))
        except BaseException as exc:  # reported below
            reference.append(exc)

    in_process = threading.Thread(target=run_reference, name="in-process-reference")
    in_process.start()
    worker = Worker("worker", config, env, tmp_path)
    try:
        _wait("the worker holds every partition",
              lambda: worker.value("econome_worker_assigned_partitions") == PARTITIONS, 60, [worker])  # fmt: skip
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{worker.port}/metrics", timeout=2)
        asyncio.run(_publish(readings[:quarter], address, topic, inventory, end=False))
        _wait("the first quarter handled", lambda: asyncio.run(_committed_lag(address, group, topic)) == 0, 60, [worker])
        influx.stop()
        stopped = time.monotonic()
        asyncio.run(_publish(readings[quarter : 2 * quarter], address, topic, inventory, end=False))
        _wait("the worker reports the failed write", lambda: "not written" in worker.output(), 20, [worker])
        assert worker.value("econome_worker_stalled_seconds") >= 0
        stalls = []
        while time.monotonic() - stopped < 20:
            time.sleep(2)
            stalls.append(worker.value("econome_worker_stalled_seconds"))
        failures = worker.value("econome_worker_sink_failures_total")
        lag_during = asyncio.run(_committed_lag(address, group, topic))
        influx = restart(influx)
        restarted = time.monotonic()
        asyncio.run(_publish(readings[2 * quarter :], address, topic, inventory, end=True))
        _wait("every message committed", lambda: asyncio.run(_committed_lag(address, group, topic)) == 0, 60, [worker])
        recovered = time.monotonic() - restarted
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(30) == 0, worker.output()[-3000:]
        got = _aggregates(influx.url, "econome")
    finally:
        worker.kill()
        influx.stop()
        in_process.join(120)
    output = worker.output()
    print(f"stalled seconds sampled during the outage {stalls}; all messages committed {recovered:.1f} s after the restart")
    # The stall metric grew through the outage, and nothing was committed past the batch not written.
    assert stalls == sorted(stalls), stalls
    assert stalls[-1] - stalls[0] >= 8, stalls
    assert stalls[-1] >= 10, stalls
    assert lag_during > 0
    assert failures >= 2  # failed writes, each written again
    assert output.count("not written") == 1  # one ERROR when the writes start failing
    assert "written after" in output  # an INFO when they succeed again
    assert "ERROR" in output.split("not written")[0].splitlines()[-1]
    assert "Crashed" not in output

    pipeline = reference[0]
    if isinstance(pipeline, BaseException):
        raise pipeline
    assert pipeline.stats.received == len(readings)
    expected = _aggregates(influxdb_server.url, unique_name)
    assert {key[0] for key in expected} == set(MEASUREMENTS)
    missing = expected.keys() - got.keys()
    extra = got.keys() - expected.keys()
    assert not missing, (len(missing), sorted(missing)[:5])
    assert not extra, (len(extra), [(key, got[key]) for key in sorted(extra)[:5]])
    different = [(key, got[key], expected[key]) for key in expected if got[key] != expected[key]]
    assert not different, (len(different), different[:5])
