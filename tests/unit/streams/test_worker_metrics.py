"""The faust worker's Prometheus metrics: lag per assigned partition, rebalances, idle and stall seconds."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from streams.metrics import PrometheusSensor


def _samples(sensor: PrometheusSensor) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(sensor.exposition().decode())
        for s in family.samples
    }


def test_no_worker_metric_until_a_worker_reports() -> None:
    assert not any(name.startswith("econome_worker") for name, _ in _samples(PrometheusSensor()))


def test_lag_follows_the_assignment_and_rebalances_are_counted() -> None:
    sensor = PrometheusSensor()
    sensor.on_worker_rebalance(2.5, [0, 2])
    sensor.on_worker_health({0: 7, 2: 0}, idle_s=4.0, stalled_s=4.0)
    sensor.on_worker_message(0, readings=500, redelivered=False)
    sensor.on_worker_message(0, readings=0, redelivered=True)
    samples = _samples(sensor)
    assert samples[("econome_worker_lag_messages", (("partition", "0"),))] == 7
    assert samples[("econome_worker_lag_messages", (("partition", "2"),))] == 0
    assert samples[("econome_worker_assigned_partitions", ())] == 2
    assert samples[("econome_worker_stalled_seconds", ())] == 4.0
    assert samples[("econome_worker_rebalances_total", ())] == 1
    assert samples[("econome_worker_rebalance_seconds_sum", ())] == 2.5
    assert samples[("econome_worker_messages_total", (("partition", "0"),))] == 2
    assert samples[("econome_worker_readings_total", ())] == 500
    assert samples[("econome_worker_redelivered_total", ())] == 1
    # Partition 2 went to another worker: its lag is no longer this worker's.
    sensor.on_worker_rebalance(1.0, [0])
    sensor.on_worker_health({0: 0}, idle_s=0.5, stalled_s=0.0)
    samples = _samples(sensor)
    assert ("econome_worker_lag_messages", (("partition", "2"),)) not in samples
    assert samples[("econome_worker_assigned_partitions", ())] == 1
    assert samples[("econome_worker_rebalances_total", ())] == 2
