"""The MQTT collector against a real Mosquitto broker."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collectors.mqtt import Ack, MqttCollector
from inventory import Inventory, parse_inventory
from streams.clock import SystemClock
from streams.deadletter import DeadLetterStore
from streams.record import Reading


def _inventory(host: str, port: int, prefix: str) -> Inventory:
    return parse_inventory(f"""
organisation: {{name: Test, population: 100, school_holiday_zone: C}}
mqtt_brokers: [{{host: {host}, port: {port}, client_id: {prefix}-collector}}]
sites:
  - id: s
    name: S
    buildings:
      - id: b
        name: B
        usage: school
        floor_area_m2: 100
        heated_area_m2: 100
        points:
          - {{id: temp, quantity: temperature, unit: degC, usage: comfort,
              mqtt: {{topic: {prefix}/b/climate, format: json, field: temperature, timestamp_field: time}}}}
          - {{id: co2, quantity: co2, unit: ppm, usage: comfort,
              mqtt: {{topic: {prefix}/b/climate, format: json, field: co2, timestamp_field: time}}}}
          - {{id: occ, quantity: occupancy, unit: "1", usage: comfort, mqtt: {{topic: {prefix}/b/occupancy}}}}
          - {{id: level, quantity: temperature, unit: degC, usage: comfort, mqtt: {{topic: {prefix}/b/level, format: plain}}}}
""")


def _publish(host: str, port: int, messages: list[tuple[str, bytes]]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="")
    client.connect(host, port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


async def _wait(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_decodes_and_dead_letters_bad_payloads(mqtt_server, unique_name: str) -> None:
    inv = _inventory(mqtt_server.host, mqtt_server.port, unique_name)
    dead = DeadLetterStore()
    collector = MqttCollector(inv, inv.broker("default"), SystemClock(), dead)
    got: list[Reading] = []
    await collector.start(lambda readings, ack: (got.extend(readings), ack and ack()))
    try:
        await asyncio.wait_for(collector.subscribed.wait(), 10)
        messages = [
            (f"{unique_name}/b/climate", b'{"temperature": 20.5, "co2": 640, "time": "2026-01-05T08:00:00Z"}'),
            (f"{unique_name}/b/occupancy", b"1"),
            (f"{unique_name}/b/occupancy", b"maybe"),
            (f"{unique_name}/b/climate", b"{broken"),
            (f"{unique_name}/b/climate", b'{"temperature": 21.0, "time": "2026-01-05T08:01:00Z"}'),
        ]
        await asyncio.to_thread(_publish, mqtt_server.host, mqtt_server.port, messages)
        await _wait(lambda: collector.received == len(messages))
    finally:
        await collector.stop()
    values = sorted((r.point_id, r.value) for r in got)
    assert values == [("co2", 640.0), ("occ", 1.0), ("temp", 20.5), ("temp", 21.0)]
    # Dead letters: 'maybe', the broken JSON (once per bound point), the missing co2 field.
    reasons = sorted(letter.reason for letter in dead.recent)
    assert dead.count == 4
    assert any("occ" in r and "'maybe' is not a number" in r for r in reasons)
    assert sum("not JSON" in r for r in reasons) == 2
    assert any("point co2: field 'co2' not found" in r for r in reasons)
    assert all(letter.key.startswith(unique_name) for letter in dead.recent)


async def test_unbound_topic_payload_is_kept(mqtt_server, unique_name: str) -> None:
    inv = _inventory(mqtt_server.host, mqtt_server.port, unique_name)
    dead = DeadLetterStore()
    collector = MqttCollector(inv, inv.broker("default"), SystemClock(), dead)
    readings = collector.handle(f"{unique_name}/nobody", b"12", SystemClock().now())
    assert readings == []
    assert dead.recent[0].reason == "no point is bound to this topic"
    assert dead.recent[0].payload == "12"


async def test_persistent_session_delivers_what_was_published_while_away(mqtt_server, unique_name: str) -> None:
    inv = _inventory(mqtt_server.host, mqtt_server.port, unique_name)
    got: list[Reading] = []
    first = MqttCollector(inv, inv.broker("default"), SystemClock(), DeadLetterStore())
    await first.start(lambda readings, ack: (got.extend(readings), ack and ack()))
    await asyncio.wait_for(first.subscribed.wait(), 10)
    await first.stop()
    # Econome is down (restarting); the sensors go on publishing.
    away = [(f"{unique_name}/b/occupancy", str(i % 2).encode()) for i in range(5)]
    await asyncio.to_thread(_publish, mqtt_server.host, mqtt_server.port, away)
    second = MqttCollector(inv, inv.broker("default"), SystemClock(), DeadLetterStore())
    await second.start(lambda readings, ack: (got.extend(readings), ack and ack()))
    try:
        await _wait(lambda: len(got) == 5)
    finally:
        await second.stop()
    assert [r.value for r in got] == [0.0, 1.0, 0.0, 1.0, 0.0]


async def test_username_and_password_from_the_environment(
    tmp_path, unique_name: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from econome.localservers import start_mosquitto
    from streams.errors import ConfigError

    server = start_mosquitto(tmp_path / "mq", users={"econome": "s3cret-valmont"})
    try:
        base = _inventory(server.host, server.port, unique_name)
        broker = base.broker("default").model_copy(update={"username": "econome", "password_env": "TEST_MQTT_PASSWORD"})
        collector = MqttCollector(base, broker, SystemClock(), DeadLetterStore())
        with pytest.raises(ConfigError, match="TEST_MQTT_PASSWORD is not set"):
            await collector.start(lambda readings, ack: None)
        monkeypatch.setenv("TEST_MQTT_PASSWORD", "wrong")
        refused = MqttCollector(base, broker, SystemClock(), DeadLetterStore())
        with caplog.at_level(logging.DEBUG, logger="collectors.mqtt"):
            await refused.start(lambda readings, ack: None)
            try:
                await _wait(lambda: refused.connect_failures >= 2)  # paho retries after 1 s
            finally:
                await refused.stop()
        assert not refused.subscribed.is_set()
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1, errors  # once per change of state, not once per attempt
        assert f"{server.host}:{server.port}" in errors[0]
        assert "refused" in errors[0]
        assert "wrong" not in caplog.text
        monkeypatch.setenv("TEST_MQTT_PASSWORD", "s3cret-valmont")
        accepted = MqttCollector(base, broker, SystemClock(), DeadLetterStore())
        await accepted.start(lambda readings, ack: None)
        try:
            await asyncio.wait_for(accepted.subscribed.wait(), 10)
        finally:
            await accepted.stop()
    finally:
        server.stop()


async def test_message_is_acknowledged_only_by_the_pipeline(mqtt_server, unique_name: str) -> None:
    """manual_ack: a message whose readings never reached the log is delivered again (issue 10).

    With paho acknowledging on receipt, the broker would forget the messages the
    first collector received, and the second would get only the marker.
    """
    inv = _inventory(mqtt_server.host, mqtt_server.port, unique_name)
    topic = f"{unique_name}/b/occupancy"
    held: list[Reading] = []
    first = MqttCollector(inv, inv.broker("default"), SystemClock(), DeadLetterStore())
    await first.start(lambda readings, ack: held.extend(readings))  # crashes before the log: never acks
    try:
        await asyncio.wait_for(first.subscribed.wait(), 10)
        await asyncio.to_thread(_publish, mqtt_server.host, mqtt_server.port, [(topic, b"1"), (topic, b"0"), (topic, b"1")])
        await _wait(lambda: len(held) == 3)
    finally:
        await first.stop()
    got: list[float] = []
    second = MqttCollector(inv, inv.broker("default"), SystemClock(), DeadLetterStore())
    # Acked before counted: once the test sees three, their PUBACKs are queued before the stop's barrier.
    await second.start(lambda readings, ack: (ack and ack(), got.extend(r.value for r in readings)))
    try:
        await asyncio.wait_for(second.subscribed.wait(), 10)
        await _wait(lambda: len(got) >= 3)
        # The second acked them: a third session gets only what is published next.
    finally:
        await second.stop()
    assert got == [1.0, 0.0, 1.0]
    third_got: list[float] = []
    third = MqttCollector(inv, inv.broker("default"), SystemClock(), DeadLetterStore())
    await third.start(lambda readings, ack: (third_got.extend(r.value for r in readings), ack and ack()))
    try:
        await asyncio.wait_for(third.subscribed.wait(), 10)
        await asyncio.to_thread(_publish, mqtt_server.host, mqtt_server.port, [(topic, b"0")])  # the marker
        await _wait(lambda: len(third_got) >= 1)
    finally:
        await third.stop()
    assert third_got == [0.0]


async def test_dead_lettered_message_is_acknowledged(mqtt_server, unique_name: str) -> None:
    inv = _inventory(mqtt_server.host, mqtt_server.port, unique_name)
    topic = f"{unique_name}/b/occupancy"
    dead = DeadLetterStore()
    first = MqttCollector(inv, inv.broker("default"), SystemClock(), dead)
    await first.start(lambda readings, ack: None)  # readings are never acked; dead letters are
    try:
        await asyncio.wait_for(first.subscribed.wait(), 10)
        await asyncio.to_thread(_publish, mqtt_server.host, mqtt_server.port, [(topic, b"maybe"), (topic, b"1")])
        await _wait(lambda: first.received == 2)
    finally:
        await first.stop()
    assert dead.count == 1
    got: list[float] = []
    second = MqttCollector(inv, inv.broker("default"), SystemClock(), dead)
    await second.start(lambda readings, ack: (got.extend(r.value for r in readings), ack and ack()))
    try:
        await _wait(lambda: second.received >= 1)
    finally:
        await second.stop()
    # Only the reading comes back; 'maybe' was acked once written as a dead letter.
    assert got == [1.0]
    assert second.received == 1
    assert dead.count == 1


async def test_closed_port_is_logged_once_and_recovery_once(tmp_path, unique_name: str, caplog: pytest.LogCaptureFixture) -> None:
    from econome.localservers import free_port, start_mosquitto

    port = free_port()
    inv = _inventory("127.0.0.1", port, unique_name)
    collector = MqttCollector(inv, inv.broker("default"), SystemClock(), DeadLetterStore())
    server = None
    with caplog.at_level(logging.DEBUG, logger="collectors.mqtt"):
        await collector.start(lambda readings, ack: None)
        try:
            await _wait(lambda: collector.connect_failures >= 2)
            assert collector.up is False
            server = start_mosquitto(tmp_path / "mq", port=port)
            await asyncio.wait_for(collector.subscribed.wait(), 30)
        finally:
            await collector.stop()
            if server is not None:
                server.stop()
    records = [r for r in caplog.records if r.name == "collectors.mqtt" and r.levelno >= logging.INFO]
    errors = [r.getMessage() for r in records if r.levelno == logging.ERROR]
    assert errors == [f"MQTT broker default (127.0.0.1:{port}) down: cannot connect: [Errno 111] Connection refused"]
    assert sum("up again" in r.getMessage() for r in records if r.levelno == logging.INFO) == 1


class _Proxy:
    """A TCP relay between the collector and the broker, whose connections the test can cut."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self.connections += 1
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # close() leaves what drain() let through in the transport's buffer; cut() would abort it.
            # Wait until it is written (the connection lost), so a closing peer's last PUBACKs get through.
            sink.close()
            with contextlib.suppress(ConnectionError, OSError):
                await sink.wait_closed()

    def cut(self) -> None:
        """Drop every connection, as a NAT timeout or a flaky link would."""
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        """Let the relays pass on what the peers already sent (the last PUBACKs, DISCONNECT), then drop the rest."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._tasks:
            # Aborting at once lost PUBACKs still in the relay: the broker then rightly sent those messages again.
            await asyncio.wait(set(self._tasks), timeout=5)
        self.cut()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def test_reconnect_does_not_store_a_message_twice(mqtt_server, unique_name: str) -> None:
    """#10 review, finding 7: PUBACKs lost with the connection must not duplicate receive-time readings.

    Of 20 plain payloads (stamped on receipt, so a second copy would be a second
    reading): 5 are acked before the connection drops, 8 while it is down (their
    PUBACK is lost), 7 only after the reconnect (persist still in flight). The
    broker redelivers the 15 unacknowledged ones (DUP); none is emitted again,
    and every one ends acknowledged: a later session gets only what is new.
    """
    proxy = _Proxy(mqtt_server.host, mqtt_server.port)
    port = await proxy.start()
    inv = _inventory("127.0.0.1", port, unique_name)
    topic = f"{unique_name}/b/level"
    held: list[tuple[list[Reading], Ack | None]] = []
    collector = MqttCollector(inv, inv.broker("default"), SystemClock(), DeadLetterStore())
    await collector.start(lambda readings, ack: held.append((readings, ack)))
    try:
        await asyncio.wait_for(collector.subscribed.wait(), 10)
        first = [(topic, str(float(i)).encode()) for i in range(20)]  # Mosquitto sends 20 unacked at most
        await asyncio.to_thread(_publish, mqtt_server.host, mqtt_server.port, first)
        await _wait(lambda: len(held) == 20)
        for _, ack in held[:5]:
            assert ack is not None
            ack()
        proxy.cut()
        await _wait(lambda: collector.up is False)
        for _, ack in held[5:13]:
            assert ack is not None
            ack()  # on disk, but the PUBACK has no connection to go on
        await _wait(lambda: collector.up is True and proxy.connections == 2, timeout=30)
        for _, ack in held[13:20]:
            assert ack is not None
            ack()  # the persist in flight during the reconnect ends
        # The broker sends the redeliveries first, then what is published now, in order.
        second = [(topic, str(float(i)).encode()) for i in range(20, 30)]
        await asyncio.to_thread(_publish, mqtt_server.host, mqtt_server.port, second)
        await _wait(lambda: any(r.value == 29.0 for readings, _ in held for r in readings))
        for _, ack in held[20:]:
            assert ack is not None
            ack()
    finally:
        await collector.stop()
        await proxy.close()
    values = sorted(r.value for readings, _ in held for r in readings)
    assert values == [float(i) for i in range(30)]  # each once
    assert collector.redelivered in (15, 20)  # 20 if the 5 PUBACKs sent before the cut were lost too
    # Every message is acknowledged: a new session gets only the marker.
    got: list[float] = []
    direct = inv.broker("default").model_copy(update={"port": mqtt_server.port})
    after = MqttCollector(inv, direct, SystemClock(), DeadLetterStore())
    await after.start(lambda readings, ack: (got.extend(r.value for r in readings), ack and ack()))
    try:
        await asyncio.wait_for(after.subscribed.wait(), 10)
        await asyncio.to_thread(_publish, mqtt_server.host, mqtt_server.port, [(topic, b"99")])
        await _wait(lambda: len(got) >= 1)
    finally:
        await after.stop()
    assert got == [99.0]
    assert after.received == 1


async def _ack_all_then_successor(inv: Inventory, mqtt_server, topic: str) -> list[float]:
    """Twenty messages acked at once, a stop, a successor at once: what the successor gets, marker included."""
    held: list[Ack | None] = []
    first = MqttCollector(inv, inv.broker("default"), SystemClock(), DeadLetterStore())
    await first.start(lambda readings, ack: held.append(ack))
    try:
        await asyncio.wait_for(first.subscribed.wait(), 10)
        await asyncio.to_thread(_publish, mqtt_server.host, mqtt_server.port, [(topic, b"%d" % i) for i in range(20)])
        await _wait(lambda: len(held) == 20)
        for ack in held:
            assert ack is not None
            ack()
    finally:
        await first.stop()
    got: list[float] = []
    second = MqttCollector(inv, inv.broker("default"), SystemClock(), DeadLetterStore())
    await second.start(lambda readings, ack: (got.extend(r.value for r in readings), ack and ack()))
    try:
        await asyncio.wait_for(second.subscribed.wait(), 10)
        await asyncio.to_thread(_publish, mqtt_server.host, mqtt_server.port, [(topic, b"99")])
        await _wait(lambda: 99.0 in got)
    finally:
        await second.stop()
    return got


async def test_a_successor_connecting_at_once_gets_no_acknowledged_message(mqtt_server, unique_name: str) -> None:
    """stop() returns once the broker has read the last PUBACKs, not just once they are written.

    Mosquitto reads one packet per connection per turn of its loop: twenty PUBACKs
    and the DISCONNECT written at once, then a successor's CONNECT under the same
    client id, and the broker took the session over before reading the last
    PUBACKs, and delivered those messages again (seen under two test workers;
    without the barrier in stop(), about one round in two failed).
    """
    inv = _inventory(mqtt_server.host, mqtt_server.port, unique_name)
    for _ in range(5):
        assert await _ack_all_then_successor(inv, mqtt_server, f"{unique_name}/b/level") == [99.0]


def _publish_retained(host: str, port: int, messages: list[tuple[str, bytes]]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="")
    client.connect(host, port)
    client.loop_start()
    try:
        for info in [client.publish(topic, payload, qos=1, retain=True) for topic, payload in messages]:
            info.wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


async def test_a_retained_message_without_its_own_time_is_not_stamped_with_the_time_it_is_received(
    mqtt_server, unique_name: str
) -> None:
    """The broker sends retained messages at every subscription: at each start and reconnect.

    A payload without a time of its own would be stamped with the receive time: an old value
    (of a sensor maybe dead for a week) stored as a fresh reading at every restart. It is
    dead-lettered instead, naming the point; a retained payload that carries its time is a reading.
    """
    inv = _inventory(mqtt_server.host, mqtt_server.port, unique_name)
    retained = [
        (f"{unique_name}/b/level", b"17.5"),
        (f"{unique_name}/b/climate", b'{"temperature": 20.5, "co2": 640, "time": "2026-01-05T08:00:00Z"}'),
    ]
    await asyncio.to_thread(_publish_retained, mqtt_server.host, mqtt_server.port, retained)
    got: list[Reading] = []
    dead = DeadLetterStore()
    try:
        for start in range(2):  # a first start, then a restart under the same client id (persistent session)
            collector = MqttCollector(inv, inv.broker("default"), SystemClock(), dead)
            await collector.start(lambda readings, ack: (got.extend(readings), ack and ack()))
            try:
                await _wait(lambda c=collector: c.received == 2)  # type: ignore[misc]
                if start == 1:
                    # A live message on the same topic is a reading, stamped when received.
                    await asyncio.to_thread(_publish, mqtt_server.host, mqtt_server.port, [(f"{unique_name}/b/level", b"18")])
                    await _wait(lambda c=collector: c.received == 3)  # type: ignore[misc]
            finally:
                await collector.stop()
    finally:
        await asyncio.to_thread(_publish_retained, mqtt_server.host, mqtt_server.port, [(t, b"") for t, _ in retained])
    assert sorted((r.point_id, r.value) for r in got) == [("co2", 640.0), ("co2", 640.0), ("level", 18.0),
                                                          ("temp", 20.5), ("temp", 20.5)]
    assert {r.ts.isoformat() for r in got if r.point_id != "level"} == {"2026-01-05T08:00:00+00:00"}
    assert dead.count == 2
    assert {(letter.key, letter.payload) for letter in dead.recent} == {(f"{unique_name}/b/level", "17.5")}
    assert all(letter.reason.startswith("point level: retained message without a time of its own")
               for letter in dead.recent)
