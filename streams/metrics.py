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

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

from streams.errors import SinkError

__all__ = ["PrometheusSensor", "Sensor"]


class Sensor:
    """Metric hooks; every method does nothing unless overridden."""

    def on_readings(self, count: int) -> None:
        """Readings entered the queue."""

    def on_drop(self, count: int) -> None:
        """Readings were dropped because the queue was full."""

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


class PrometheusSensor(Sensor):
    """Exposes the hooks as Prometheus metrics (prefix ``econome_``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.readings = Counter("econome_readings", "Readings queued", registry=r)
        self.dropped = Counter("econome_readings_dropped", "Readings dropped on a full queue", registry=r)
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

    def on_readings(self, count: int) -> None:
        """Count queued readings."""
        self.readings.inc(count)

    def on_drop(self, count: int) -> None:
        """Count dropped readings."""
        self.dropped.inc(count)

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

    def exposition(self) -> bytes:
        """The metrics in Prometheus text format."""
        return generate_latest(self.registry)

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` over HTTP from a background thread."""
        start_http_server(port, addr=addr, registry=self.registry)
