"""Publish the inventory's MQTT sensors from the model, like the real sensors would.

Points are grouped by topic. A JSON topic gets one payload holding every field
bound to it plus the binding's timestamp field (``time``: ISO 8601 UTC of the
simulated time); a plain topic gets the bare number. Climate topics and the
weather station publish every ``sensor_interval`` (60 s simulated); occupancy
topics publish when the value changes and every ``occupancy_interval`` (5 min).
Times are aligned on the interval grid and an interval is never published twice,
so a fast clock skips intervals instead of flooding the broker. A silent dead
sensor's field is left out (its topic is not published when nothing is left).

paho-mqtt runs its network loop in its own thread (``loop_start``); publishing
from the event loop only queues the message (QoS 1).

>>> import asyncio
>>> from datetime import UTC, datetime
>>> from pathlib import Path
>>> from inventory import load_inventory
>>> from simulator.physics import PortfolioModel
>>> from streams.clock import ManualClock
>>> inventory = load_inventory(Path("examples/commune.yaml"))
>>> clock = ManualClock(datetime(2026, 1, 12, 9, tzinfo=UTC))
>>> publisher = MqttPublisher(inventory, PortfolioModel(inventory, clock.now()), clock, "127.0.0.1", 1883)
>>> payload = publisher.payload("valmont/mairie/bureaux/climate")
>>> sorted(json.loads(payload or "{}"))
['illuminance', 'temperature', 'time']
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from inventory import Inventory, PayloadFormat, Point, Quantity
from simulator.physics import PortfolioModel
from streams.clock import Clock

__all__ = ["MqttPublisher"]

logger = logging.getLogger(__name__)

_DECIMALS = {
    Quantity.TEMPERATURE: 2,
    Quantity.SETPOINT: 1,
    Quantity.HUMIDITY: 1,
    Quantity.ILLUMINANCE: 0,
    Quantity.CO2: 0,
    Quantity.OCCUPANCY: 0,
    Quantity.STATE: 0,
}
_CHANGE_CHECK = timedelta(seconds=10)
_MIN_WAIT = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class _Topic:
    """A topic and the points it carries."""

    topic: str
    points: tuple[Point, ...]
    format: PayloadFormat
    interval: timedelta
    on_change: bool
    time_field: str | None


def _rounded(point: Point, value: float) -> float | int:
    decimals = _DECIMALS.get(point.quantity, 3)
    return round(value) if decimals == 0 else round(value, decimals)


class MqttPublisher:
    """Publishes every MQTT-bound point of the inventory to one broker.

    Args:
        inventory: the portfolio whose MQTT points are published.
        model: the model the values come from (advanced by :meth:`run`).
        clock: the simulated clock.
        host: broker host.
        port: broker port.
        client_id: MQTT client id.
        topic_prefix: prepended to every topic (tests use a unique prefix).
        sensor_interval: period of climate and weather topics.
        occupancy_interval: heartbeat of occupancy topics, published on change too.
        connect_timeout: how long :meth:`start` waits for the broker.
    """

    def __init__(
        self,
        inventory: Inventory,
        model: PortfolioModel,
        clock: Clock,
        host: str,
        port: int,
        *,
        client_id: str = "econome-simulator",
        topic_prefix: str = "",
        sensor_interval: timedelta = timedelta(seconds=60),
        occupancy_interval: timedelta = timedelta(minutes=5),
        connect_timeout: timedelta = timedelta(seconds=5),
    ) -> None:
        self.model = model
        self.clock = clock
        self.host = host
        self.port = port
        self.topic_prefix = topic_prefix
        self.connect_timeout = connect_timeout
        self.published = 0
        grouped: dict[str, list[Point]] = {}
        for _, point in inventory.points():
            if point.mqtt is not None:
                grouped.setdefault(point.mqtt.topic, []).append(point)
        self.topics: dict[str, _Topic] = {}
        for topic, points in grouped.items():
            binding = points[0].mqtt
            assert binding is not None  # noqa: S101 - grouped from MQTT points only
            occupancy = all(p.quantity is Quantity.OCCUPANCY for p in points)
            self.topics[topic] = _Topic(
                topic=topic,
                points=tuple(points),
                format=binding.format,
                interval=occupancy_interval if occupancy else sensor_interval,
                on_change=occupancy,
                time_field=next((p.mqtt.timestamp_field for p in points if p.mqtt and p.mqtt.timestamp_field), None),
            )
        self._next_due: dict[str, datetime] = {}
        self._last_payload: dict[str, str] = {}
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self._connected: asyncio.Event | None = None
        self._failing = False

    # -- payloads ---------------------------------------------------------------------------------

    def payload(self, topic: str) -> str | None:
        """The payload a topic would carry now, or None when none of its sensors reports.

        Raises:
            KeyError: for a topic of no point.
        """
        spec = self.topics[topic]
        values = {p: self.model.value(p.id) for p in spec.points}
        reporting = {p: v for p, v in values.items() if not math.isnan(v)}
        if not reporting:
            return None
        if spec.format is PayloadFormat.PLAIN:
            point, value = next(iter(reporting.items()))
            return str(_rounded(point, value))
        body: dict[str, float | int | str] = {
            (p.mqtt.field if p.mqtt and p.mqtt.field else p.id): _rounded(p, v) for p, v in reporting.items()
        }
        if spec.time_field:
            body[spec.time_field] = self.model.now.isoformat(timespec="seconds").replace("+00:00", "Z")
        return json.dumps(body, separators=(",", ":"))

    def publish_due(self) -> int:
        """Publish every topic due at the model's time; return how many were published."""
        now = self.model.now
        count = 0
        for topic, spec in self.topics.items():
            due = self._next_due.get(topic)
            is_due = due is None or now >= due
            if not is_due and not spec.on_change:
                continue
            payload = self.payload(topic)
            if payload is None:
                continue
            if not is_due and payload == self._last_payload.get(topic):
                continue
            self._send(topic, payload)
            self._last_payload[topic] = payload
            period = spec.interval.total_seconds()
            self._next_due[topic] = datetime.fromtimestamp((math.floor(now.timestamp() / period) + 1) * period, UTC)
            count += 1
        return count

    def _send(self, topic: str, payload: str) -> None:
        info = self._client.publish(self.topic_prefix + topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            if not self._failing:
                logger.error("MQTT publish to %s on %s:%s failed: %s", topic, self.host, self.port, info.rc)
            self._failing = True
            return
        if self._failing:
            logger.info("MQTT publishing to %s:%s works again", self.host, self.port)
        self._failing = False
        self.published += 1

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the broker and start paho's network thread.

        Raises:
            ConnectionError: when the broker does not accept the connection in time.
        """
        loop = asyncio.get_running_loop()
        connected = asyncio.Event()
        self._connected = connected

        def on_connect(
            client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, properties: object
        ) -> None:
            if not reason.is_failure:
                loop.call_soon_threadsafe(connected.set)

        self._client.on_connect = on_connect
        try:
            self._client.connect_async(self.host, self.port, keepalive=30)
        except OSError as exc:
            msg = f"cannot reach MQTT broker {self.host}:{self.port}"
            raise ConnectionError(msg) from exc
        self._client.loop_start()
        try:
            await asyncio.wait_for(connected.wait(), self.connect_timeout.total_seconds())
        except TimeoutError as exc:
            self._client.loop_stop()
            msg = f"MQTT broker {self.host}:{self.port} did not accept the connection within {self.connect_timeout}"
            raise ConnectionError(msg) from exc
        logger.info("publishing %d MQTT topics to %s:%s", len(self.topics), self.host, self.port)

    async def run(self) -> None:
        """Advance the model with the clock and publish what is due, until cancelled."""
        while True:
            self.model.advance(self.clock.now())
            self.publish_due()
            await self.clock.sleep(self._wait())

    def _wait(self) -> timedelta:
        now = self.model.now
        waits = [due - now for due in self._next_due.values()]
        if any(spec.on_change for spec in self.topics.values()):
            waits.append(_CHANGE_CHECK)
        return max(min(waits, default=_CHANGE_CHECK), _MIN_WAIT)

    async def stop(self) -> None:
        """Disconnect and stop paho's network thread."""
        if self._connected is None:
            return
        self._connected = None
        self._client.disconnect()
        self._client.loop_stop()
        logger.info("stopped publishing to %s:%s after %d messages", self.host, self.port, self.published)
