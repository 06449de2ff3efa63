"""Metrics hooks: a :class:`Sensor` whose methods do nothing, and a Prometheus one.

Components call the hooks at the moments that matter (a batch written, a
device down, a point gone missing); what happens then is the sensor's business.
The default sensor does nothing, so metrics cost nothing unless asked for.

>>> sensor = PrometheusSensor()
>>> sensor.on_device_state("gw-centre", 3, up=False)
>>> b'econome_device_up{device="gw-centre/3"} 0.0' in sensor.exposition()
True
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

from streams.errors import SinkError

__all__ = ["PrometheusSensor", "Sensor"]


class Sensor:
    """Metric hooks; every method does nothing unless overridden."""

    def on_readings(self, count: int) -> None:
        """Readings entered the queue."""

    def on_write(self, count: int, seconds: float) -> None:
        """Points were accepted by InfluxDB."""

    def on_dead_letter(self, count: int) -> None:
        """Inputs went to the dead-letter store."""

    def on_sink_error(self, error: SinkError) -> None:
        """A write failed (it will be retried if it can be)."""

    def on_poll(self, collector: str, seconds: float, requests: int) -> None:
        """A polled collector finished one poll."""

    def on_device_state(self, gateway: str, unit: int, *, up: bool) -> None:
        """A Modbus unit answered (up) or failed (down)."""

    def on_device_error(self, gateway: str, unit: int) -> None:
        """A request to a Modbus unit failed."""

    def on_point_state(self, point_id: str, *, stale: bool, missing: bool) -> None:
        """A point's staleness or presence was checked."""

    def on_log_state(self, state: str, rows: int) -> None:
        """The delivery log changed state: ``normal``, ``full`` (input held) or ``draining``."""

    def on_readings_held(self, count: int) -> None:
        """``count`` readings wait, unacknowledged, for room in the delivery log."""

    def on_poll_skipped(self, collector: str) -> None:
        """A poll was skipped because the delivery log was full."""

    def on_sink_state(self, *, up: bool) -> None:
        """InfluxDB became reachable (up) or unreachable (down)."""

    def on_dead_letter_stored(self, source: str, total: int) -> None:
        """The dead-letter store holds ``total`` letters from ``source`` since it was created (across rotations)."""

    def on_disk_state(self, *, ok: bool) -> None:
        """Writing to the delivery log or the dead-letter store failed (a full disk...) or works again."""

    def on_poll_error(self, collector: str) -> None:
        """A poll raised an unexpected exception (it is logged; the schedule goes on)."""

    def on_counter_judgement(self, point_id: str, verdict: str) -> None:
        """A counter reading held (a drop, a jump) was judged: ``glitch``, ``jitter``, ``jump``, ``reset`` or ``rebase``."""

    def on_utility_fetch(self, point_id: str, api: str, *, ok: bool) -> None:
        """The daily fetch of a utility point (``api``: ``enedis`` or ``grdf``) succeeded or failed."""

    def on_worker_message(self, partition: int, *, readings: int, redelivered: bool) -> None:
        """A faust worker handled a message of a source partition (``redelivered``: skipped, already applied)."""

    def on_worker_rebalance(self, seconds: float, partitions: Collection[int]) -> None:
        """A consumer-group rebalance ended after ``seconds``; the worker now holds ``partitions``."""

    def on_worker_left_out(self, reason: str, readings: int) -> None:
        """A faust worker left readings out: ``unknown_building`` (not in its inventory) or ``rejected`` (by the processor)."""

    def on_worker_sink_failure(self) -> None:
        """A faust worker's aggregate write failed; it waits and writes the same batch again."""

    def on_worker_set_aside(self, reason: str, offsets: int) -> None:
        """A faust worker passed a source offset without applying it.

        ``offsets``: how many. ``reason``: ``undecodable``, ``failed`` (its handling raised on every try),
        or ``absent`` (an offset the partition never delivered: gone from the topic, or not a record).
        """

    def on_worker_reread(self, partition: int, messages: int) -> None:
        """A faust worker was handed a message of ``partition`` ahead of ``messages`` it had not handled.

        It held that message back (not applied, not committed) and went back to read the missing ones again.
        """

    def on_worker_health(self, lag: Mapping[int, int], *, idle_s: float, stalled_s: float) -> None:
        """A faust worker's periodic health.

        ``lag``: messages waiting per assigned source partition; ``idle_s``: seconds since its last
        message; ``stalled_s``: seconds it has processed nothing while messages wait (0 when none wait).
        """


class PrometheusSensor(Sensor):
    """Exposes the hooks as Prometheus metrics (prefix ``econome_``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._lag_partitions: set[int] = set()
        r = self.registry
        self.readings = Counter("econome_readings", "Readings queued", registry=r)
        self.written = Counter("econome_points_written", "Points accepted by InfluxDB", registry=r)
        self.write_seconds = Histogram("econome_write_seconds", "Duration of InfluxDB writes", registry=r)
        self.dead_letters = Counter("econome_dead_letters", "Inputs sent to the dead-letter store", registry=r)
        self.sink_errors = Counter("econome_sink_errors", "Failed InfluxDB writes", registry=r)
        self.poll_seconds = Histogram("econome_poll_seconds", "Duration of one poll", ["collector"], registry=r)
        self.requests = Counter("econome_modbus_requests", "Modbus requests sent", ["collector"], registry=r)
        self.device_up = Gauge("econome_device_up", "1 when the Modbus unit answered its last request", ["device"], registry=r)
        self.device_errors = Counter("econome_device_errors", "Failed requests per Modbus unit", ["device"], registry=r)
        self.point_stale = Gauge("econome_point_stale", "1 when the point's value is frozen", ["point"], registry=r)
        self.point_missing = Gauge("econome_point_missing", "1 when the point stopped reporting", ["point"], registry=r)
        self.log_state = Gauge(
            "econome_delivery_log_state", "1 for the delivery log's current state (normal, draining, full)", ["state"], registry=r
        )
        self.log_rows = Gauge("econome_delivery_log_rows", "Rows waiting in the delivery log for InfluxDB", registry=r)
        self.log_full = Counter("econome_delivery_log_full", "Times the delivery log became full", registry=r)
        self.held = Gauge("econome_readings_held", "Readings held unacknowledged while the delivery log is full", registry=r)
        self.polls_skipped = Counter(
            "econome_polls_skipped", "Polls skipped while the delivery log was full", ["collector"], registry=r
        )
        self.influxdb_up = Gauge("econome_influxdb_up", "1 when the last write reached InfluxDB", registry=r)
        self.dead_letters_stored = Gauge(
            "econome_dead_letters_stored", "Dead letters stored since the store was created, per source", ["source"], registry=r
        )
        self.disk_ok = Gauge("econome_disk_ok", "0 while the delivery log or dead-letter store cannot be written", registry=r)
        self.disk_ok.set(1)
        self.poll_errors = Counter("econome_poll_errors", "Polls that raised an unexpected exception", ["collector"], registry=r)
        self.counter_judgements = Counter(
            "econome_counter_judgements",
            "Counter readings held then judged by the next one (glitch, jitter, jump, reset, rebase)",
            ["point", "verdict"],
            registry=r,
        )
        self.utility_fetch_failures = Counter(
            "econome_utility_fetch_failures",
            "Daily fetches of a Linky/Gazpar point that failed (no consent, API down after retries, delivery)",
            ["point", "api"],
            registry=r,
        )
        self.utility_fetch_ok = Gauge(
            "econome_utility_fetch_ok", "1 when the last daily fetch of the utility point succeeded", ["point", "api"], registry=r
        )

    def on_readings(self, count: int) -> None:
        """Count queued readings."""
        self.readings.inc(count)

    def on_write(self, count: int, seconds: float) -> None:
        """Count written points and time the write."""
        self.written.inc(count)
        self.write_seconds.observe(seconds)

    def on_dead_letter(self, count: int) -> None:
        """Count dead letters."""
        self.dead_letters.inc(count)

    def on_sink_error(self, error: SinkError) -> None:
        """Count failed writes."""
        self.sink_errors.inc()

    def on_poll(self, collector: str, seconds: float, requests: int) -> None:
        """Time a poll and count its requests."""
        self.poll_seconds.labels(collector).observe(seconds)
        self.requests.labels(collector).inc(requests)

    def on_device_state(self, gateway: str, unit: int, *, up: bool) -> None:
        """Set the unit's up gauge."""
        self.device_up.labels(f"{gateway}/{unit}").set(1 if up else 0)

    def on_device_error(self, gateway: str, unit: int) -> None:
        """Count a failed request."""
        self.device_errors.labels(f"{gateway}/{unit}").inc()

    def on_point_state(self, point_id: str, *, stale: bool, missing: bool) -> None:
        """Set the point's gauges."""
        self.point_stale.labels(point_id).set(int(stale))
        self.point_missing.labels(point_id).set(int(missing))

    def on_log_state(self, state: str, rows: int) -> None:
        """Set the state gauges; count entries into ``full``."""
        for name in ("normal", "draining", "full"):
            self.log_state.labels(name).set(int(name == state))
        self.log_rows.set(rows)
        if state == "full":
            self.log_full.inc()

    def on_readings_held(self, count: int) -> None:
        """Set the held readings gauge."""
        self.held.set(count)

    def on_poll_skipped(self, collector: str) -> None:
        """Count a skipped poll."""
        self.polls_skipped.labels(collector).inc()

    def on_sink_state(self, *, up: bool) -> None:
        """Set the InfluxDB up gauge."""
        self.influxdb_up.set(int(up))

    def on_dead_letter_stored(self, source: str, total: int) -> None:
        """Set the stored dead letters of a source."""
        self.dead_letters_stored.labels(source).set(total)

    def on_disk_state(self, *, ok: bool) -> None:
        """Set the disk gauge."""
        self.disk_ok.set(int(ok))

    def on_poll_error(self, collector: str) -> None:
        """Count a failed poll."""
        self.poll_errors.labels(collector).inc()

    def on_counter_judgement(self, point_id: str, verdict: str) -> None:
        """Count a judged counter reading."""
        self.counter_judgements.labels(point_id, verdict).inc()

    def on_utility_fetch(self, point_id: str, api: str, *, ok: bool) -> None:
        """Set the point's fetch gauge; count a failure."""
        self.utility_fetch_ok.labels(point_id, api).set(int(ok))
        if not ok:
            self.utility_fetch_failures.labels(point_id, api).inc()

    def on_worker_message(self, partition: int, *, readings: int, redelivered: bool) -> None:
        """Count a message of the partition, and its readings."""
        self._worker_metrics()
        self.worker_messages.labels(str(partition)).inc()
        self.worker_readings.inc(readings)
        if redelivered:
            self.worker_redelivered.inc()

    def on_worker_rebalance(self, seconds: float, partitions: Collection[int]) -> None:
        """Count the rebalance, time it, and set the assigned partitions."""
        self._worker_metrics()
        self.worker_rebalances.inc()
        self.worker_rebalance_seconds.observe(seconds)
        self.worker_assigned.set(len(partitions))

    def on_worker_left_out(self, reason: str, readings: int) -> None:
        """Count the readings left out, by reason."""
        self._worker_metrics()
        self.worker_left_out.labels(reason).inc(readings)

    def on_worker_sink_failure(self) -> None:
        """Count a failed aggregate write."""
        self._worker_metrics()
        self.worker_sink_failures.inc()

    def on_worker_set_aside(self, reason: str, offsets: int) -> None:
        """Count a message (or an absent offset) set aside, by reason."""
        self._worker_metrics()
        self.worker_set_aside.labels(reason).inc(offsets)

    def on_worker_reread(self, partition: int, messages: int) -> None:
        """Count a gap gone back over, and the messages read again for it."""
        self._worker_metrics()
        self.worker_rereads.labels(str(partition)).inc()
        self.worker_reread_messages.labels(str(partition)).inc(messages)

    def on_worker_health(self, lag: Mapping[int, int], *, idle_s: float, stalled_s: float) -> None:
        """Set the lag gauges (partitions no longer assigned are removed), idle and stall seconds."""
        self._worker_metrics()
        for partition in self._lag_partitions - set(lag):
            self.worker_lag.remove(str(partition))
        for partition, messages in lag.items():
            self.worker_lag.labels(str(partition)).set(messages)
        self._lag_partitions = set(lag)
        self.worker_assigned.set(len(lag))
        self.worker_idle.set(idle_s)
        self.worker_stalled.set(stalled_s)

    def _worker_metrics(self) -> None:
        # Made on a worker's first hook only, so that `econome run` exposes no worker metrics.
        if hasattr(self, "worker_lag"):
            return
        r = self.registry
        self.worker_messages = Counter(
            "econome_worker_messages", "Source messages handled by this faust worker", ["partition"], registry=r
        )
        self.worker_readings = Counter("econome_worker_readings", "Readings in the messages applied", registry=r)
        self.worker_redelivered = Counter(
            "econome_worker_redelivered", "Messages skipped: already applied to the saved state (a replay)", registry=r
        )
        self.worker_rebalances = Counter(
            "econome_worker_rebalances", "Consumer-group rebalances this worker went through", registry=r
        )
        self.worker_rebalance_seconds = Histogram(
            "econome_worker_rebalance_seconds", "Duration of a rebalance, from revocation to assignment", registry=r
        )
        self.worker_assigned = Gauge(
            "econome_worker_assigned_partitions", "Source partitions assigned to this worker", registry=r
        )
        self.worker_lag = Gauge(
            "econome_worker_lag_messages", "Messages of the partition not yet processed (high watermark - position)",
            ["partition"], registry=r,
        )
        self.worker_idle = Gauge("econome_worker_idle_seconds", "Seconds since the last message was handled", registry=r)
        self.worker_stalled = Gauge(
            "econome_worker_stalled_seconds", "Seconds without processing while messages wait (0 when none wait)", registry=r
        )
        self.worker_left_out = Counter(
            "econome_worker_left_out_readings",
            "Readings left out: reason=unknown_building (not in this worker's inventory) or rejected (by the processor)",
            ["reason"], registry=r,
        )
        self.worker_sink_failures = Counter(
            "econome_worker_sink_failures", "Failed aggregate writes, each followed by a wait and the same write again",
            registry=r,
        )
        self.worker_set_aside = Counter(
            "econome_worker_set_aside_offsets",
            "Source offsets passed without being applied: reason=undecodable, failed (handling raised on every try) "
            "or absent (never delivered: gone from the topic, or not a record)",
            ["reason"], registry=r,
        )
        self.worker_rereads = Counter(
            "econome_worker_rereads",
            "Gaps gone back over: a message handed over ahead of others not handled was held back, the partition read again",
            ["partition"], registry=r,
        )
        self.worker_reread_messages = Counter(
            "econome_worker_reread_messages", "Messages of those gaps, read again", ["partition"], registry=r
        )

    def exposition(self) -> bytes:
        """The metrics in Prometheus text format."""
        return generate_latest(self.registry)

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` over HTTP from a background thread."""
        start_http_server(port, addr=addr, registry=self.registry)
