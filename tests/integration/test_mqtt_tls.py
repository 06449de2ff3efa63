"""The MQTT collector over TLS, against a real Mosquitto with a private CA made by the test (issue 10).

Each broker has a TLS listener (the one the collector uses) and a plain one on
loopback for the test's publisher.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import trustme
from paho.mqtt.enums import CallbackAPIVersion

from collectors.mqtt import MqttCollector
from econome.localservers import LocalServer, ServerUnavailable, free_port
from inventory import parse_inventory
from streams.clock import SystemClock
from streams.deadletter import DeadLetterStore
from streams.errors import ConfigError
from streams.record import Reading


@dataclass(frozen=True)
class Pki:
    """PEM files of the broker's CA, its certificate, a client certificate and an unrelated CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("econome-client")
    d = tmp_path / "pki"
    d.mkdir()
    files = {
        "ca": ca.cert_pem.bytes(),
        "server_cert": b"".join(blob.bytes() for blob in server.cert_chain_pems),
        "server_key": server.private_key_pem.bytes(),
        "client_cert": b"".join(blob.bytes() for blob in client.cert_chain_pems),
        "client_key": client.private_key_pem.bytes(),
        "other_ca": other.cert_pem.bytes(),
    }
    for name, data in files.items():
        (d / f"{name}.pem").write_bytes(data)
    return Pki(**{name: d / f"{name}.pem" for name in files})


@dataclass(frozen=True)
class TlsBroker:
    server: LocalServer
    tls_port: int
    plain_port: int


def _start(tmp_path: Path, pki: Pki, require_certificate: bool = False) -> TlsBroker:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    data = tmp_path / "mosquitto"
    data.mkdir(exist_ok=True)
    tls_port, plain_port = free_port(), free_port()
    conf = data / "mosquitto.conf"
    user = "user root\n" if os.getuid() == 0 else ""  # as root, mosquitto would drop to a user that cannot read tmp
    conf.write_text(
        f"{user}persistence false\nallow_anonymous true\n"
        f"listener {tls_port} 127.0.0.1\ncafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
        f"require_certificate {'true' if require_certificate else 'false'}\n"
        f"listener {plain_port} 127.0.0.1\n"
    )
    log = data / "mosquitto.log"
    with log.open("wb") as out:
        process = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = LocalServer("mosquitto", "127.0.0.1", plain_port, process, data, log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", plain_port), 0.5), socket.create_connection(("127.0.0.1", tls_port), 0.5):
                return TlsBroker(server, tls_port, plain_port)
        except OSError:
            time.sleep(0.05)
    server.stop(2)
    msg = f"mosquitto with TLS did not start: {log.read_text(errors='replace')[-1000:]}"
    raise ServerUnavailable(msg)


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[TlsBroker]:
    broker = _start(tmp_path, pki)
    yield broker
    broker.server.stop()


def _collector(port: int, topic: str, tls: str) -> MqttCollector:
    inv = parse_inventory(f"""
organisation: {{name: Test, population: 100, school_holiday_zone: C}}
mqtt_brokers: [{{host: 127.0.0.1, port: {port}, client_id: {topic.replace("/", "-")}, tls: true, {tls}}}]
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
          - {{id: occ, quantity: occupancy, unit: "1", usage: comfort, mqtt: {{topic: {topic}}}}}
""")
    return MqttCollector(inv, inv.broker("default"), SystemClock(), DeadLetterStore())


def _publish(port: int, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


async def _wait(predicate, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _receives(collector: MqttCollector, broker: TlsBroker, topic: str) -> list[Reading]:
    got: list[Reading] = []
    await collector.start(lambda readings, ack: (got.extend(readings), ack and ack()))
    try:
        await asyncio.wait_for(collector.subscribed.wait(), 15)
        await asyncio.to_thread(_publish, broker.plain_port, topic, b"1")
        await _wait(lambda: len(got) == 1)
    finally:
        await collector.stop()
    return got


async def _refused(collector: MqttCollector, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Run until two attempts failed; return the ERROR lines."""
    with caplog.at_level(logging.DEBUG, logger="collectors.mqtt"):
        await collector.start(lambda readings, ack: pytest.fail("no reading may arrive"))
        try:
            await _wait(lambda: collector.connect_failures >= 2)
        finally:
            await collector.stop()
    assert not collector.subscribed.is_set()
    return [r.getMessage() for r in caplog.records if r.name == "collectors.mqtt" and r.levelno == logging.ERROR]


async def test_private_ca_is_trusted_with_ca_file(tls_broker: TlsBroker, pki: Pki, unique_name: str) -> None:
    topic = f"{unique_name}/occ"
    got = await _receives(_collector(tls_broker.tls_port, topic, f"ca_file: {pki.ca}"), tls_broker, topic)
    assert [r.value for r in got] == [1.0]


@pytest.mark.parametrize("trust", ["system CAs", "another CA"])
async def test_unknown_ca_is_an_error_naming_the_broker(
    tls_broker: TlsBroker, pki: Pki, unique_name: str, caplog: pytest.LogCaptureFixture, trust: str
) -> None:
    tls = "tls_insecure: false" if trust == "system CAs" else f"ca_file: {pki.other_ca}"
    errors = await _refused(_collector(tls_broker.tls_port, f"{unique_name}/occ", tls), caplog)
    assert len(errors) == 1, errors  # once, not once per attempt
    assert f"127.0.0.1:{tls_broker.tls_port}" in errors[0]
    assert "CERTIFICATE_VERIFY_FAILED" in errors[0]


async def test_client_certificate(tmp_path: Path, pki: Pki, unique_name: str, caplog: pytest.LogCaptureFixture) -> None:
    broker = _start(tmp_path, pki, require_certificate=True)
    topic = f"{unique_name}/occ"
    try:
        errors = await _refused(_collector(broker.tls_port, topic, f"ca_file: {pki.ca}"), caplog)
        assert len(errors) == 1, errors
        assert f"127.0.0.1:{broker.tls_port}" in errors[0]
        with_cert = f"ca_file: {pki.ca}, cert_file: {pki.client_cert}, key_file: {pki.client_key}"
        got = await _receives(_collector(broker.tls_port, topic, with_cert), broker, topic)
        assert [r.value for r in got] == [1.0]
    finally:
        broker.server.stop()


async def test_tls_insecure_skips_the_certificate_check(
    tls_broker: TlsBroker, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    topic = f"{unique_name}/occ"
    with caplog.at_level(logging.WARNING, logger="collectors.mqtt"):
        got = await _receives(_collector(tls_broker.tls_port, topic, "tls_insecure: true"), tls_broker, topic)
    assert [r.value for r in got] == [1.0]
    assert any("tls_insecure" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


async def test_unreadable_tls_file_is_a_config_error(tmp_path: Path, pki: Pki) -> None:
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(ConfigError, match=rf"MQTT broker default: cannot load TLS files \(ca_file {missing}\)"):
        await _collector(1883, "t/occ", f"ca_file: {missing}").start(lambda readings, ack: None)
    with pytest.raises(ConfigError, match="cert_file"):
        await _collector(1883, "t/occ", f"cert_file: {pki.ca}").start(lambda readings, ack: None)  # a cert, no key
