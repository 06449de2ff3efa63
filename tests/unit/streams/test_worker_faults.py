"""A faust worker facing a failing sink, a building its inventory lacks, rejected readings, several bootstrap servers.

The worker's ``handle`` runs on hand-made events, with a dict for faust's table and a sink that
fails at the boundary: no broker (the same paths on real servers: tests/integration/test_worker_outage.py).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from econome.settings import EconomeSettings
from inventory import Inventory, load_inventory
from streams.aggregate import AggregateRecord
from streams.errors import ConfigError, SinkError
from streams.faust_runner import FaustRunner, ListSink, aggregate_in_process, encode_batch, make_app
from streams.kafka_url import kafka_servers
from streams.metrics import PrometheusSensor
from streams.record import Reading

ROOT = Path(__file__).resolve().parents[3]
T0 = datetime(2026, 1, 5, 7, tzinfo=UTC)


class FailingSink(ListSink):
    """InfluxDB down for the first ``failures`` writes (past the sink's own retries: SinkError)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.calls = 0

    async def write(self, records: list[AggregateRecord]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            msg = "gave up writing aggregates after 3 attempts (InfluxDB down)"
            raise SinkError(msg)
        await super().write(records)


def _runner(inventory: Inventory, sink: ListSink, sensor: PrometheusSensor) -> FaustRunner:
    runner = make_app(inventory, "kafka://127.0.0.1:1", app_id="faults", partitions=4, sink=sink, sensor=sensor)
    # The defaults deploy/OPERATIONS.md states: 1 s, doubled up to 10 s.
    assert (runner.write_retry_min, runner.write_retry_max) == (timedelta(seconds=1), timedelta(seconds=10))
    runner.table = {}  # type: ignore[assignment]  # faust's table needs a running app; a dict at the boundary
    runner.write_retry_min = timedelta(milliseconds=10)
    runner.write_retry_max = timedelta(milliseconds=40)
    return runner


def _event(building: str, readings: list[Reading], offset: int) -> Any:
    message = SimpleNamespace(offset=offset, partition=1)
    return SimpleNamespace(key=building.encode(), value=encode_batch(readings), message=message, headers={})


def _samples(sensor: PrometheusSensor) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(sensor.exposition().decode()):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def _hour(point: str, unit: str, start: float, step: float) -> list[Reading]:
    return [Reading(point, T0 + timedelta(minutes=10 * i), start + step * i, unit) for i in range(7)]


def test_a_failed_write_is_written_again_until_it_succeeds_and_the_state_waits(caplog: pytest.LogCaptureFixture) -> None:
    inventory = load_inventory(ROOT / "examples" / "commune.yaml")
    sink, sensor = FailingSink(failures=4), PrometheusSensor()
    runner = _runner(inventory, sink, sensor)
    readings = _hour("mairie-gas-volume", "m3", 100.0, 1.0)
    expected = aggregate_in_process(inventory, readings)
    caplog.set_level(logging.INFO, logger="streams.faust_runner")

    async def scenario() -> None:
        handled = asyncio.create_task(runner.handle(_event("mairie", readings, 10)))
        while sink.calls < 2:
            await asyncio.sleep(0.005)
        assert not handled.done()  # the agent waits on the write
        assert b"mairie" not in runner.table  # and the state is not saved past the failed batch
        await asyncio.wait_for(handled, 5)

    asyncio.run(scenario())
    assert sink.calls == 5
    written = sink.view()
    assert written
    assert all(expected[key] == fields for key, fields in written.items())  # as the in-process runner computes them
    assert len(sink.records) == len(written)  # each aggregate written once
    assert b'"offset": 10' in runner.table[b"mairie"]
    assert runner.stats.records == len(sink.records)
    assert _samples(sensor)["econome_worker_sink_failures_total"] == 4
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "aggregates of building mairie not written" in errors[0].getMessage()
    assert any(r.levelno == logging.INFO and "mairie written after" in r.getMessage() for r in caplog.records)


def test_readings_of_an_unknown_building_and_rejected_readings_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    full = load_inventory(ROOT / "examples" / "commune.yaml")
    # The worker's inventory is an older copy, without the building 'mairie' the forwarder's has.
    older = full.model_copy(update={"sites": [
        s.model_copy(update={"buildings": [b for b in s.buildings if b.id != "mairie"]}) for s in full.sites
    ]})  # fmt: skip
    sensor = PrometheusSensor()
    runner = _runner(older, ListSink(), sensor)
    caplog.set_level(logging.INFO, logger="streams.faust_runner")
    school = next(b for _, b in older.buildings())
    school_point = next(p for b, p in older.points() if b.id == school.id)
    known = [*_hour(school_point.id, school_point.unit, 1.0, 1.0), Reading("no-such-point", T0, 1.0, "kWh")]

    async def scenario() -> None:
        await runner.handle(_event("mairie", _hour("mairie-gas-volume", "m3", 100.0, 1.0), 0))
        await runner.handle(_event("mairie", _hour("mairie-gas-volume", "m3", 107.0, 1.0), 1))
        await runner.handle(_event(school.id, known, 2))

    asyncio.run(scenario())
    samples = _samples(sensor)
    assert samples["econome_worker_left_out_readings_total{reason=unknown_building}"] == 14
    assert samples["econome_worker_left_out_readings_total{reason=rejected}"] == runner.stats.rejected >= 1
    assert runner.stats.unknown_buildings == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # once per building, not per message
    assert "building 'mairie' is not in this worker's inventory" in errors[0]


def test_several_bootstrap_servers() -> None:
    assert kafka_servers("kafka://k1:9092,k2:9093, k3:19092") == ["k1:9092", "k2:9093", "k3:19092"]
    for bad in ("kafka://k1:9092;k2:9092", "kafka://k1", "kafka://k1:99999", "kafka://k1:9092,"):
        with pytest.raises(ConfigError, match="is not HOST:PORT"):
            kafka_servers(bad)
    assert EconomeSettings(kafka_url="kafka://k1:9092,k2:9092").kafka_url == "kafka://k1:9092,k2:9092"
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        EconomeSettings(kafka_url="kafka://k1:9092;k2:9092")
