"""Subscribe to MQTT sensors and turn their payloads into readings.

The collector is a *push* collector: :meth:`MqttCollector.start` connects and
subscribes, and every decoded payload is handed to ``emit`` on the event loop.
paho-mqtt's network loop runs in its own thread; its callbacks only pass data
to the loop with ``call_soon_threadsafe``.

Sessions use QoS 1 and a persistent session (``clean_session=False``) under the
broker's fixed client id, so messages published while Econome restarts are
delivered when it comes back. paho runs with ``manual_ack=True``: a message is
acknowledged (PUBACK) only by the ``ack`` passed to ``emit``, which the
pipeline calls once the readings are in the delivery log, or once the message
is in the dead-letter store. A crash before that leaves the message with the
broker, which delivers it again.

A reconnect must not store a message twice (#10 review, finding 7). A PUBACK
due when the connection dropped is lost, and the broker sends the message
again on the new connection, flagged DUP under the same packet id. The
collector remembers each message it emitted and not yet acknowledged, and the
last :data:`_RECENT_ACKS` it acknowledged (their PUBACK may not have left),
by packet id, topic and a BLAKE2 digest of the payload. A DUP message that
matches one of them is not emitted again: it is acknowledged at once if the
first copy is already on disk, or as soon as the first copy's ``ack`` runs
(the persist still in flight during the reconnect). It is counted in
``MqttCollector.redelivered``. The memory is per process, by packet id
(at most 65,535 entries): after a restart of Econome a redelivered message is
stored again (a receive-time payload twice, one with its own time as a
duplicate dead letter).

No payload can stop the collector. A payload that does not decode, arrives on
a topic no point is bound to, is larger than :data:`MAX_PAYLOAD_BYTES` (64 KiB;
only its first :data:`DEAD_LETTER_PREFIX_BYTES` are kept) or nests JSON deeper
than :data:`MAX_JSON_NESTING`, goes to the dead-letter store with its reason;
so does any unexpected exception of a decoder. A JSON ``true``/``false`` or an
``on``/``off`` string is a value only for a binary quantity (occupancy, state).

A payload without a time of its own is stamped with its receive time, to the
millisecond. Two such readings of one point in the same millisecond would be
one InfluxDB point, so the second is stamped one millisecond after the first
(counted in ``MqttCollector.nudged``). But a *retained* one is not stamped: the
broker sends the retained message of each topic at every subscription (every
start and reconnect), and its value may be days old (a sensor gone silent).
Stamped with its receive time it would be an old value stored as a fresh
reading at each restart; it is dead-lettered instead, naming the point. A
retained payload that carries its own time is a reading like any other.

Connection failures (refused, closed port, TLS certificate, bad password, lost
connection) are logged at ERROR once when the broker goes down, with its
host:port, and at INFO once when it is back.

Sample binding and broker (in the inventory)::

    mqtt_brokers: [{id: default, host: mqtt.valmont.fr, port: 8883, tls: true,
                    ca_file: /etc/econome/tls/ca.crt, username: econome,
                    password_env: ECONOME_MQTT_PASSWORD}]
    mqtt: {topic: valmont/mairie/bureaux/climate, format: json,
           field: temperature, timestamp_field: time}
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import math
import os
import re
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from inventory import Inventory, MqttBinding, MqttBroker, PayloadFormat, Point, Quantity
from streams.clock import Clock
from streams.deadletter import DeadLetter, DeadLetterStore
from streams.errors import ConfigError, DecodeError
from streams.record import Reading

__all__ = ["DEAD_LETTER_PREFIX_BYTES", "MAX_JSON_NESTING", "MAX_PAYLOAD_BYTES", "MqttCollector", "decode_payload"]

logger = logging.getLogger(__name__)

Ack = Callable[[], None]
Emit = Callable[[list[Reading], Ack | None], None]

MAX_PAYLOAD_BYTES = 64 * 1024
"""Largest payload decoded; a larger one is dead-lettered (sensor payloads are well under 4 KiB)."""
MAX_JSON_NESTING = 32
"""Deepest JSON nesting decoded (LoRaWAN uplinks nest 4 or 5 levels)."""
DEAD_LETTER_PREFIX_BYTES = 1024
"""How much of an oversized payload the dead letter keeps."""

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
_EPOCH_TEXT = re.compile(r"\s*-?\d{1,30}(\.\d{1,30})?\s*")
# (magnitude beyond which, divisor to seconds): nanoseconds, microseconds, milliseconds.
_EPOCH_UNITS = ((1e17, 1_000_000_000), (1e14, 1_000_000), (1e11, 1000))
# A JSON string (skipped whole, possessively: no backtracking) or a bracket.
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{}]')

_BOOLEAN = {"true": 1.0, "on": 1.0, "occupied": 1.0, "false": 0.0, "off": 0.0, "unoccupied": 0.0}
_BINARY = frozenset({Quantity.OCCUPANCY, Quantity.STATE})
_MAX_FUTURE = timedelta(hours=1)
_MS = timedelta(milliseconds=1)
_RECENT_ACKS = 1024
# Never subscribed: MqttCollector.stop unsubscribes from it as a barrier behind its last acks.
_BARRIER_TOPIC = "econome/stop-barrier"  # no client id in it: one with "+" or "#" would make it no valid filter
"""Acknowledged messages remembered in case their PUBACK was lost with the connection."""


@dataclass(slots=True)
class _Delivery:
    """A QoS 1 message emitted, whose acknowledgement the broker may still be waiting for."""

    mid: int
    qos: int
    topic: str
    digest: bytes
    session: int  # the connection on which its PUBACK is due
    stored: bool = False  # its ack ran: on disk, or in the dead-letter store


def _digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=16).digest()


def _boolean(flag: float, where: str, quantity: Quantity | None) -> float:
    if quantity in _BINARY:
        return flag
    what = quantity.value.replace("_", " ") if quantity is not None else "a quantity that is not binary"
    article = "" if quantity is None else ("an " if what[0] in "aeiou" else "a ")
    msg = f"{where}: boolean for {article}{what}"
    raise DecodeError(msg)


def _number(value: Any, where: str, quantity: Quantity | None) -> float:
    if isinstance(value, bool):
        return _boolean(1.0 if value else 0.0, where, quantity)
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError as exc:
            msg = f"{where} is an integer too large for a float"
            raise DecodeError(msg) from exc
    elif isinstance(value, str):
        text = value.strip()
        if text.lower() in _BOOLEAN:
            return _boolean(_BOOLEAN[text.lower()], where, quantity)
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


def _epoch(value: float) -> datetime:
    """An epoch time in seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude.

    Beyond 1e11 a time in seconds would be after the year 5000: it is in finer units.
    """
    divisor = next((d for limit, d in _EPOCH_UNITS if value > limit), 1)
    try:
        if isinstance(value, int):
            # Integer arithmetic: a float keeps no microseconds of a nanosecond count.
            seconds, rest = divmod(value, divisor)
            return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=rest * 1_000_000 // divisor)
        return datetime.fromtimestamp(value / divisor, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        # fromtimestamp(1e300) overflows, a year beyond 9999 is a ValueError, NaN too.
        msg = f"timestamp {str(value)[:40]} is out of range"
        raise DecodeError(msg) from exc


def _timestamp(value: Any) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _epoch(value)
    if isinstance(value, str) and _EPOCH_TEXT.fullmatch(value):
        # Some gateways send the epoch time as a string.
        return _epoch(float(value) if "." in value else int(value))
    if isinstance(value, str):
        try:
            # LoRaWAN servers send nanoseconds; datetime keeps microseconds.
            ts = datetime.fromisoformat(_FRACTION.sub(r"\1", value.replace("Z", "+00:00")))
        except ValueError as exc:
            msg = f"timestamp {value[:40]!r} is not ISO 8601"
            raise DecodeError(msg) from exc
        if ts.tzinfo is None:
            msg = f"timestamp {value[:40]!r} has no UTC offset"
            raise DecodeError(msg)
        try:
            return ts.astimezone(UTC)
        except OverflowError as exc:
            # 0001-01-01T00:00:00+01:00 or 9999-12-31T23:59:59-01:00 leave datetime's range in UTC.
            msg = f"timestamp {value[:40]!r} is out of range"
            raise DecodeError(msg) from exc
    msg = f"timestamp {str(value)[:40]} is neither ISO 8601 nor epoch"
    raise DecodeError(msg)


def _check_size(payload: bytes) -> None:
    if len(payload) > MAX_PAYLOAD_BYTES:
        msg = f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit"
        raise DecodeError(msg)


def _check_nesting(payload: bytes) -> None:
    """Refuse JSON nested deeper than :data:`MAX_JSON_NESTING`, before ``json.loads`` recurses into it."""
    if payload.count(b"[") + payload.count(b"{") <= MAX_JSON_NESTING:
        return
    depth = 0
    for token in _JSON_TOKEN.finditer(payload):
        bracket = token.group()
        if bracket in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_NESTING:
                msg = f"JSON nested deeper than {MAX_JSON_NESTING} levels"
                raise DecodeError(msg)
        elif bracket in (b"]", b"}"):
            depth -= 1


def _decode(binding: MqttBinding, payload: bytes, quantity: Quantity | None) -> tuple[float, datetime | None]:
    """The value, and the payload's own time (None when it has none)."""
    _check_size(payload)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = "payload is not UTF-8"
        raise DecodeError(msg) from exc
    if binding.format is PayloadFormat.PLAIN:
        return _number(text, "payload", quantity), None
    _check_nesting(payload)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"payload is not JSON: {exc.msg}"
        raise DecodeError(msg) from exc
    except ValueError as exc:
        # An integer of more than 4,300 digits (sys.int_info.str_digits_check_threshold).
        msg = f"payload is not usable JSON: {str(exc)[:80]}"
        raise DecodeError(msg) from exc
    root = _VALUE_ROOT[binding.format]
    path = f"{root}.{binding.field}" if root else binding.field or ""
    value = _number(_path(document, path), f"field {path!r}", quantity)
    time_field = binding.timestamp_field or _TIME_FIELD.get(binding.format)
    if time_field:
        try:
            raw_ts = _path(document, time_field)
        except DecodeError:
            raw_ts = None
        if raw_ts is not None:
            return value, _timestamp(raw_ts)
    return value, None


def decode_payload(
    binding: MqttBinding, payload: bytes, received: datetime, quantity: Quantity | None = None
) -> tuple[float, datetime]:
    """Decode one payload for one binding.

    Args:
        binding: the point's MQTT binding.
        payload: the raw payload.
        received: when it arrived (UTC); used when the payload has no time.
        quantity: the point's quantity; a boolean (``true``, ``"off"``...) is a
            value only for a binary one (occupancy, state).

    Returns:
        The value and its timestamp.

    Raises:
        DecodeError: the payload does not hold a usable value or time, is larger
            than :data:`MAX_PAYLOAD_BYTES` or nests deeper than :data:`MAX_JSON_NESTING`.

    >>> from inventory import MqttBinding
    >>> b = MqttBinding(topic="t", format="json", field="temperature", timestamp_field="time")
    >>> decode_payload(b, b'{"temperature": 19.5, "time": "2026-01-05T08:00:00Z"}', datetime.now(UTC))[0]
    19.5
    """
    value, ts = _decode(binding, payload, quantity)
    return value, received if ts is None else ts


class _TlsContext(ssl.SSLContext):
    """An SSL context that remembers the socket it wrapped last.

    paho leaves the socket of a failed TLS handshake open (a ResourceWarning,
    and a file descriptor per attempt until the garbage collector runs);
    :class:`_Client` closes it.
    """

    last_socket: ssl.SSLSocket | None = None

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        sock = super().wrap_socket(*args, **kwargs)
        self.last_socket = sock
        return sock


def _tls_context(broker: MqttBroker) -> _TlsContext:
    """The TLS settings of a broker: system CAs, or ``ca_file``; a client certificate; or no check at all."""
    context = _TlsContext(ssl.PROTOCOL_TLS_CLIENT)  # TLS 1.2 at least, CERT_REQUIRED, host name checked
    if broker.tls_insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif broker.ca_file is not None:
        context.load_verify_locations(cafile=broker.ca_file)
    else:
        context.load_default_certs()
    if broker.cert_file is not None:
        context.load_cert_chain(broker.cert_file, broker.key_file)
    return context


class _Client(mqtt.Client):
    """paho's client, keeping the error of the last failed connection attempt.

    paho's ``on_connect_fail`` does not say why; this is what a log line needs
    (refused, timed out, certificate verify failed).
    """

    last_error: OSError | None = None

    def reconnect(self) -> MQTTErrorCode:
        context = self._ssl_context if isinstance(self._ssl_context, _TlsContext) else None
        if context is not None:
            context.last_socket = None
        try:
            return super().reconnect()
        except OSError as exc:
            self.last_error = exc
            if context is not None and context.last_socket is not None:
                context.last_socket.close()
            raise


class MqttCollector:
    """Subscribes to the topics of one broker's points.

    Attributes:
        received: messages received.
        decoded: readings emitted.
        rejected: dead letters written (one per message and point that failed).
        nudged: receive-time stamps moved 1 ms later so as not to repeat one of the same point.
        connect_failures: failed connection attempts and lost connections.
        redelivered: messages the broker sent again after a reconnect, already
            emitted: acknowledged without emitting them twice.
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
        self.nudged = 0
        self.connect_failures = 0
        self.redelivered = 0
        self.subscribed = asyncio.Event()
        self._client: _Client | None = None
        self._emit: Emit | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._up: bool | None = None  # None until the first attempt ends
        self._stopping = False
        self._disconnected = threading.Event()
        self._barrier = threading.Event()  # set by the broker's UNSUBACK (stop)
        self._refused = False
        # Acks of one connection must not reach the next: its message ids are reused.
        self._session = 0
        self._ack_lock = threading.Lock()
        # By packet id, under _ack_lock: emitted on this connection and not yet
        # acknowledged; acknowledged lately; and both of earlier connections.
        self._inflight: dict[int, _Delivery] = {}
        self._recent: dict[int, _Delivery] = {}
        self._orphans: dict[int, _Delivery] = {}
        self._last_stamp: dict[str, datetime] = {}

    @property
    def name(self) -> str:
        """Task name: ``mqtt:<broker>``."""
        return f"mqtt:{self.broker.id}"

    @property
    def where(self) -> str:
        """The broker as log lines name it: ``<id> (host:port)``."""
        return f"{self.broker.id} ({self.broker.host}:{self.broker.port})"

    @property
    def up(self) -> bool | None:
        """Whether the broker is connected (None before the first attempt ends)."""
        return self._up

    @staticmethod
    def example_params() -> dict[str, object]:
        """Parameters for the conformance test (a point binding)."""
        return {"topic": "test/zone/climate", "format": "json", "field": "temperature"}

    async def start(self, emit: Emit) -> None:
        """Connect in the background and subscribe; returns at once.

        ``subscribed`` is set once the broker has acknowledged the subscriptions.

        Raises:
            ConfigError: the password variable is unset, or a TLS file cannot be loaded.
        """
        self._loop = asyncio.get_running_loop()
        self._emit = emit
        client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,  # PUBACK only once on disk: see _acker (#10)
        )
        if self.broker.username:
            password = os.environ.get(self.broker.password_env) if self.broker.password_env else None
            if self.broker.password_env and password is None:
                msg = f"MQTT broker {self.broker.id}: environment variable {self.broker.password_env} is not set"
                raise ConfigError(msg)
            client.username_pw_set(self.broker.username, password)
        if self.broker.tls:
            self._set_tls(client)
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_message = self._on_message
        self._client = client
        client.connect_async(self.broker.host, self.broker.port, keepalive=int(self.broker.keepalive.total_seconds()))
        client.loop_start()

    def _set_tls(self, client: mqtt.Client) -> None:
        broker = self.broker
        try:
            context = _tls_context(broker)
        except (OSError, ValueError) as exc:
            # ssl.SSLError is an OSError: a file that is not PEM, a key that does not match its certificate.
            files = ", ".join(f"{name} {path}" for name, path in _tls_files(broker))
            msg = f"MQTT broker {broker.id}: cannot load TLS files ({files or 'system CAs'}): {exc}"
            raise ConfigError(msg) from exc
        if broker.tls_insecure:
            logger.warning("MQTT broker %s: tls_insecure, the broker's certificate is not checked", self.where)
        client.tls_set_context(context)

    async def stop(self) -> None:
        """Disconnect and stop paho's thread; messages not yet acknowledged stay with the broker.

        The acknowledgements already given reach the broker before the DISCONNECT, and the
        broker has read them when this returns (at most 2 s each step), else it would deliver
        those messages again: to a dropped connection's successor, and to a successor that
        connects at once under the same client id. Mosquitto reads a connection's packets one
        per turn of its loop, so such a successor could take the session over before the last
        PUBACKs were read. The barrier is an UNSUBSCRIBE of a topic never subscribed: the
        broker answers a connection's packets in order, so its UNSUBACK comes after them.
        """
        client = self._client
        self._stopping = True
        if client is not None:
            with self._ack_lock:
                self._client = None  # no ack after this point: it would follow the DISCONNECT
            connected = self._up
            if connected:
                self._barrier.clear()
                client.unsubscribe(_BARRIER_TOPIC)
                await asyncio.to_thread(self._barrier.wait, 2.0)
            self._disconnected.clear()
            client.disconnect()
            if connected:
                await asyncio.to_thread(self._disconnected.wait, 2.0)
            await asyncio.to_thread(client.loop_stop)

    # -- connection state (paho thread) ------------------------------------------

    def _went_down(self, reason: str) -> None:
        self.connect_failures += 1
        if self._stopping:
            return
        if self._up is not False:
            logger.error("MQTT broker %s down: %s", self.where, reason)
            self._up = False
        else:
            logger.debug("MQTT broker %s still down: %s", self.where, reason)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            # A bad password or an unknown client: the broker answered, and refused.
            self._went_down(f"connection refused by the broker: {reason}")
            self._refused = True
            return
        self._refused = False
        with self._ack_lock:
            self._session += 1
            # What the last connection left unacknowledged, or acknowledged just
            # before it dropped, may come back flagged DUP.
            self._orphans.update(self._recent)
            self._orphans.update(self._inflight)
            self._recent.clear()
            self._inflight.clear()
        topics = [*self.bindings, *self.patterns]
        if self._up is False:
            logger.info("MQTT broker %s up again, subscribing to %s topics", self.where, len(topics))
        else:
            logger.info("MQTT broker %s connected, subscribing to %s topics", self.where, len(topics))
        self._up = True
        if topics:
            client.subscribe([(topic, 1) for topic in topics])
        elif self._loop is not None:
            self._loop.call_soon_threadsafe(self.subscribed.set)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        error = client.last_error if isinstance(client, _Client) else None
        self._went_down(f"cannot connect: {error}" if error is not None else "cannot connect")

    def _on_unsubscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self._barrier.set()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.subscribed.set)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._disconnected.set()
        if self._stopping:
            if self._up:
                logger.info("MQTT broker %s disconnected on stop", self.where)
            self._up = False
            return
        if self._up:
            self._went_down(f"connection lost: {reason}")
        elif self._refused:
            self._refused = False  # already told by _on_connect
        else:
            # Closed before the CONNACK: with TLS 1.3 a broker that wants a client
            # certificate says so only after the handshake.
            hint = (
                " (does it require a client certificate? see cert_file)" if self.broker.tls and not self.broker.cert_file else ""
            )
            self._went_down(f"connection closed before the broker accepted it: {reason}{hint}")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # Runs on paho's thread: an exception here would end it, and the collector with it.
        loop = self._loop
        if loop is None:
            return
        try:
            topic = message.topic
        except UnicodeDecodeError:
            # A broker should refuse such a topic (MQTT 3.1.1 §1.5.3); keep the message anyway.
            topic = "invalid UTF-8 topic " + repr(getattr(message, "_topic", b""))[:200]
        try:
            payload = bytes(message.payload)
            ack = self._track(client, message, topic, payload)
            if ack is None:
                return  # a redelivery of a message already emitted
            loop.call_soon_threadsafe(functools.partial(self.handle, topic, payload, self.clock.now(), ack,
                                                        retained=bool(message.retain)))
        except RuntimeError:
            logger.debug("MQTT broker %s: message on %s after the event loop closed, left unacknowledged", self.where, topic)

    # -- acknowledgements (paho thread and event loop) -----------------------------

    def _track(self, client: mqtt.Client, message: mqtt.MQTTMessage, topic: str, payload: bytes) -> Ack | None:
        """The ack of a new message; None for a redelivery of one already emitted (then acked or linked)."""
        if message.qos == 0:
            return lambda: None
        mid = message.mid
        digest = _digest(payload)
        with self._ack_lock:
            # Once a packet id comes back, what was remembered under it is settled either way:
            # the same message again, or the broker reusing an id it considers acknowledged.
            earlier = self._orphans.pop(mid, None) or self._recent.pop(mid, None)
            if earlier is not None and message.dup and earlier.topic == topic and earlier.digest == digest:
                self.redelivered += 1
                earlier.session = self._session
                if earlier.stored:
                    self._send_ack(client, earlier)
                else:
                    self._inflight[mid] = earlier  # acked when the first copy's persist ends
                logger.debug("MQTT broker %s: message %s on %s delivered again, not emitted twice", self.where, mid, topic)
                return None
            delivery = _Delivery(mid, message.qos, topic, digest, self._session)
            self._inflight[mid] = delivery
        return self._acker(client, delivery)

    def _acker(self, client: mqtt.Client, delivery: _Delivery) -> Ack:
        def ack() -> None:
            with self._ack_lock:
                if delivery.stored:
                    return
                delivery.stored = True
                # After a reconnect the broker sends unacked messages again under their
                # ids, and those ids are reused once acked: an ack from the old session
                # could acknowledge someone else's message. Such a delivery waits in
                # _orphans for its redelivery, which is then acked at once.
                if delivery.session == self._session and self._inflight.get(delivery.mid) is delivery:
                    del self._inflight[delivery.mid]
                    self._send_ack(client, delivery)

        return ack

    def _send_ack(self, client: mqtt.Client, delivery: _Delivery) -> None:
        """PUBACK on the current connection (under ``_ack_lock``), remembered in case it is lost."""
        if self._client is not client:
            return  # stopped
        client.ack(delivery.mid, delivery.qos)
        self._recent[delivery.mid] = delivery
        if len(self._recent) > _RECENT_ACKS:
            del self._recent[next(iter(self._recent))]

    def handle(
        self, topic: str, payload: bytes, received: datetime, ack: Ack | None = None, *, retained: bool = False
    ) -> list[Reading]:
        """Decode one message and emit its readings; bad parts go to dead letters.

        Never raises. ``ack`` is passed on with the readings, or called at once
        when the message gave none (it is then safe in the dead-letter store).
        If a dead letter cannot be written, the message is not acknowledged, so
        the broker keeps it.

        Args:
            topic: the message's topic.
            payload: its payload.
            received: when it arrived (UTC).
            ack: acknowledges the message to the broker.
            retained: the broker's retained message, sent because of a subscription:
                a payload without its own time is dead-lettered, its time unknown.

        Returns:
            The readings emitted.
        """
        self.received += 1
        try:
            readings = self._readings(topic, payload, received, retained)
        except Exception as exc:  # no payload may stop the collector (#10)
            try:
                self._reject(topic, payload, f"decoder error {type(exc).__name__}: {str(exc)[:200]}")
            except Exception:
                logger.exception("MQTT topic %s: dead letter not written; message left unacknowledged", topic)
                return []
            readings = []
        if readings and self._emit is not None:
            self.decoded += len(readings)
            self._emit(readings, ack)
        elif ack is not None:
            ack()
        return readings

    def _readings(self, topic: str, payload: bytes, received: datetime, retained: bool = False) -> list[Reading]:
        points = list(self.bindings.get(topic, ()))
        for pattern, matched in self.patterns.items():
            if mqtt.topic_matches_sub(pattern, topic):
                points.extend(matched)
        if not points:
            self._reject(topic, payload, "no point is bound to this topic")
            return []
        try:
            _check_size(payload)
        except DecodeError as exc:
            # One dead letter for the message, not one per point, with only a prefix kept.
            self._reject(topic, payload[:DEAD_LETTER_PREFIX_BYTES], str(exc))
            return []
        received = received.replace(microsecond=received.microsecond // 1000 * 1000)
        readings = []
        for point in points:
            assert point.mqtt is not None  # noqa: S101 - bindings only hold MQTT points
            try:
                value, ts = _decode(point.mqtt, payload, point.quantity)
            except DecodeError as exc:
                self._reject(topic, payload, f"point {point.id}: {exc}")
                continue
            if ts is None and retained:
                reason = "retained message without a time of its own: when it was measured is unknown"
                self._reject(topic, payload, f"point {point.id}: {reason}")
                continue
            if ts is None:
                ts = self._stamp(point.id, received)
            elif ts - received > _MAX_FUTURE:
                self._reject(topic, payload, f"point {point.id}: timestamp {ts.isoformat()} is in the future")
                continue
            readings.append(Reading(point.id, ts, value, point.unit))
        return readings

    def _stamp(self, point_id: str, received: datetime) -> datetime:
        """A receive-time stamp no earlier reading of this point has (InfluxDB keys points by time)."""
        last = self._last_stamp.get(point_id)
        ts = received
        if last is not None and ts <= last:
            ts = last + _MS
            self.nudged += 1
            logger.debug("point %s: receive time %s already used, stamped %s", point_id, received.isoformat(), ts.isoformat())
        self._last_stamp[point_id] = ts
        return ts

    def _reject(self, topic: str, payload: bytes, reason: str) -> None:
        self.rejected += 1
        logger.debug("MQTT topic %s rejected: %s", topic, reason)
        self.dead_letters.add(DeadLetter.now("mqtt", topic, payload, reason))


def _tls_files(broker: MqttBroker) -> list[tuple[str, object]]:
    files = [("ca_file", broker.ca_file), ("cert_file", broker.cert_file), ("key_file", broker.key_file)]
    return [(name, path) for name, path in files if path is not None]
