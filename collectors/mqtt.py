"""Subscribe to MQTT sensors and turn their payloads into readings.

The collector is a *push* collector: :meth:`MqttCollector.start` connects and
subscribes, and every decoded payload is handed to ``emit`` on the event loop.
paho-mqtt's network loop runs in its own thread; its callbacks only pass data
to the loop with ``call_soon_threadsafe``.

Sessions use QoS 1 and a persistent session (``clean_session=False``) under the
broker's fixed client id, so messages published while Econome restarts are
delivered when it comes back. A payload that does not decode, or arrives on a
topic no point is bound to, goes to the dead-letter store with its reason.

Sample binding (in the inventory)::

    mqtt: {topic: valmont/mairie/bureaux/climate, format: json,
           field: temperature, timestamp_field: time}
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from inventory import Inventory, MqttBinding, MqttBroker, PayloadFormat, Point
from streams.clock import Clock
from streams.deadletter import DeadLetter, DeadLetterStore
from streams.errors import ConfigError, DecodeError
from streams.record import Reading

__all__ = ["MqttCollector", "decode_payload"]

logger = logging.getLogger(__name__)

Ack = Callable[[], None]
Emit = Callable[[list[Reading], Ack | None], None]

# Where each structured format keeps the decoded values, and the event time.
_VALUE_ROOT = {
    PayloadFormat.JSON: "",
    PayloadFormat.ZIGBEE2MQTT: "",
    PayloadFormat.CHIRPSTACK_V4: "object",
    PayloadFormat.TTN_V3: "uplink_message.decoded_payload",
}
_TIME_FIELD = {
    PayloadFormat.ZIGBEE2MQTT: "last_seen",
    PayloadFormat.CHIRPSTACK_V4: "time",
    PayloadFormat.TTN_V3: "received_at",
}
_FRACTION = re.compile(r"(\.\d{6})\d+")

_BOOLEAN = {"true": 1.0, "on": 1.0, "occupied": 1.0, "false": 0.0, "off": 0.0, "unoccupied": 0.0}
_MAX_FUTURE = timedelta(hours=1)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.lower() in _BOOLEAN:
            return _BOOLEAN[text.lower()]
        try:
            number = float(text)
        except ValueError as exc:
            msg = f"{where} {text[:40]!r} is not a number"
            raise DecodeError(msg) from exc
    else:
        msg = f"{where} is a {type(value).__name__}, not a number"
        raise DecodeError(msg)
    if not math.isfinite(number):
        msg = f"{where} is {number}"
        raise DecodeError(msg)
    return number


def _path(document: Any, path: str) -> Any:
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            msg = f"field {path!r} not found"
            raise DecodeError(msg)
    return node


def _timestamp(value: Any) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value
        return datetime.fromtimestamp(seconds, UTC)
    if isinstance(value, str):
        try:
            # LoRaWAN servers send nanoseconds; datetime keeps microseconds.
            ts = datetime.fromisoformat(_FRACTION.sub(r"\1", value.replace("Z", "+00:00")))
        except ValueError as exc:
            msg = f"timestamp {value[:40]!r} is not ISO 8601"
            raise DecodeError(msg) from exc
        if ts.tzinfo is None:
            msg = f"timestamp {value!r} has no UTC offset"
            raise DecodeError(msg)
        return ts.astimezone(UTC)
    msg = f"timestamp {value!r} is neither ISO 8601 nor epoch"
    raise DecodeError(msg)


def decode_payload(binding: MqttBinding, payload: bytes, received: datetime) -> tuple[float, datetime]:
    """Decode one payload for one binding.

    Args:
        binding: the point's MQTT binding.
        payload: the raw payload.
        received: when it arrived (UTC); used when the payload has no time.

    Returns:
        The value and its timestamp.

    Raises:
        DecodeError: the payload does not hold a usable value or time.

    >>> from inventory import MqttBinding
    >>> b = MqttBinding(topic="t", format="json", field="temperature", timestamp_field="time")
    >>> decode_payload(b, b'{"temperature": 19.5, "time": "2026-01-05T08:00:00Z"}', datetime.now(UTC))[0]
    19.5
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = "payload is not UTF-8"
        raise DecodeError(msg) from exc
    if binding.format is PayloadFormat.PLAIN:
        return _number(text, "payload"), received
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"payload is not JSON: {exc.msg}"
        raise DecodeError(msg) from exc
    root = _VALUE_ROOT[binding.format]
    path = f"{root}.{binding.field}" if root else binding.field or ""
    value = _number(_path(document, path), f"field {path!r}")
    ts = received
    time_field = binding.timestamp_field or _TIME_FIELD.get(binding.format)
    if time_field:
        try:
            raw_ts = _path(document, time_field)
        except DecodeError:
            raw_ts = None
        if raw_ts is not None:
            ts = _timestamp(raw_ts)
    return value, ts


class MqttCollector:
    """Subscribes to the topics of one broker's points.

    Attributes:
        received: messages received.
        decoded: readings emitted.
        rejected: payloads sent to the dead-letter store.
    """

    kind = "mqtt"

    def __init__(
        self,
        inventory: Inventory,
        broker: MqttBroker,
        clock: Clock,
        dead_letters: DeadLetterStore,
        client_id: str | None = None,
    ) -> None:
        self.broker = broker
        self.clock = clock
        self.dead_letters = dead_letters
        self.client_id = client_id or broker.client_id
        self.bindings: dict[str, list[Point]] = {}
        self.patterns: dict[str, list[Point]] = {}
        for _, point in inventory.points():
            if point.mqtt is not None and point.mqtt.broker == broker.id:
                table = self.patterns if point.mqtt.is_pattern else self.bindings
                table.setdefault(point.mqtt.topic, []).append(point)
        self.received = 0
        self.decoded = 0
        self.rejected = 0
        self.subscribed = asyncio.Event()
        self._client: mqtt.Client | None = None
        self._emit: Emit | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = False
        self._stopping = False

    @property
    def name(self) -> str:
        """Task name: ``mqtt:<broker>``."""
        return f"mqtt:{self.broker.id}"

    @staticmethod
    def example_params() -> dict[str, object]:
        """Parameters for the conformance test (a point binding)."""
        return {"topic": "test/zone/climate", "format": "json", "field": "temperature"}

    async def start(self, emit: Emit) -> None:
        """Connect in the background and subscribe; returns at once.

        ``subscribed`` is set once the broker has acknowledged the subscriptions.
        """
        self._loop = asyncio.get_running_loop()
        self._emit = emit
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False, protocol=mqtt.MQTTv311, manual_ack=True
        )
        if self.broker.username:
            password = os.environ.get(self.broker.password_env) if self.broker.password_env else None
            if self.broker.password_env and password is None:
                msg = f"MQTT broker {self.broker.id}: environment variable {self.broker.password_env} is not set"
                raise ConfigError(msg)
            client.username_pw_set(self.broker.username, password)
        if self.broker.tls:
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        client.connect_async(self.broker.host, self.broker.port, keepalive=int(self.broker.keepalive.total_seconds()))
        client.loop_start()

    async def stop(self) -> None:
        """Disconnect and stop paho's thread."""
        client, self._client = self._client, None
        self._stopping = True
        if client is not None:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)

    # -- paho thread ---------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            logger.error("MQTT broker %s:%s refused connection: %s", self.broker.host, self.broker.port, reason)
            return
        self._connected = True
        topics = [*self.bindings, *self.patterns]
        logger.info("MQTT broker %s:%s connected, subscribing to %s topics", self.broker.host, self.broker.port, len(topics))
        if topics:
            client.subscribe([(topic, 1) for topic in topics])
        elif self._loop is not None:
            self._loop.call_soon_threadsafe(self.subscribed.set)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.subscribed.set)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self._connected:
            self._connected = False
            if self._stopping:
                logger.info("MQTT broker %s:%s disconnected on stop", self.broker.host, self.broker.port)
                return
            logger.error("MQTT broker %s:%s disconnected: %s", self.broker.host, self.broker.port, reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._loop is not None:
            ack = self._acker(client, message.mid, message.qos)
            self._loop.call_soon_threadsafe(self.handle, message.topic, bytes(message.payload), self.clock.now(), ack)

    # -- event loop ----------------------------------------------------------------

    def _acker(self, client: mqtt.Client, mid: int, qos: int) -> Ack:
        def ack() -> None:
            if self._client is client and qos > 0:
                client.ack(mid, qos)

        return ack

    def handle(self, topic: str, payload: bytes, received: datetime, ack: Ack | None = None) -> list[Reading]:
        """Decode one message and emit its readings; bad parts go to dead letters.

        ``ack`` is passed on with the readings, or called at once when the
        message gave none (it is then safe in the dead-letter store).
        """
        self.received += 1
        points = list(self.bindings.get(topic, ()))
        for pattern, matched in self.patterns.items():
            if mqtt.topic_matches_sub(pattern, topic):
                points.extend(matched)
        if not points:
            self._reject(topic, payload, "no point is bound to this topic")
            if ack is not None:
                ack()
            return []
        readings = []
        for point in points:
            assert point.mqtt is not None  # noqa: S101 - bindings only hold MQTT points
            try:
                value, ts = decode_payload(point.mqtt, payload, received)
            except DecodeError as exc:
                self._reject(topic, payload, f"point {point.id}: {exc}")
                continue
            if ts - received > _MAX_FUTURE:
                self._reject(topic, payload, f"point {point.id}: timestamp {ts.isoformat()} is in the future")
                continue
            readings.append(Reading(point.id, ts, value, point.unit))
        if readings and self._emit is not None:
            self.decoded += len(readings)
            self._emit(readings, ack)
        elif ack is not None:
            ack()
        return readings

    def _reject(self, topic: str, payload: bytes, reason: str) -> None:
        self.rejected += 1
        logger.debug("MQTT topic %s rejected: %s", topic, reason)
        self.dead_letters.add(DeadLetter.now("mqtt", topic, payload, reason))
