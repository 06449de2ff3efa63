"""No secret in any output of ``econome run``, in every mode, on real servers, at DEBUG.

Each test runs ``econome run`` as a subprocess with ``ECONOME_LOG_LEVEL=DEBUG``
and a metrics port, reading from a Mosquitto that requires a password:

* v1: InfluxDB 1.6 with authentication on (user and password in a Basic
  header); InfluxDB is down at first (unreachable), then up (writes accepted,
  which proves the header is accepted), then the password is changed behind
  Econome's back (401: the readings wait in the delivery log), and back again
  (they are written);
* v2: VictoriaMetrics with a token; down at first, then up.

Then no form of any secret (as is, base64, Basic ``user:password``) may appear
in stdout/stderr, in any file of the data directory (dead letters, the delivery
log's bytes) or in ``/metrics``. Positive controls check that each phase did
happen, so the absence is not that of an empty output.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from econome.localservers import LocalServer, free_port, restart, start_influxdb, start_mosquitto, start_victoriametrics

ROOT = Path(__file__).resolve().parents[2]
MQTT_USER = "econome"
PUBLISHER = "sensor"
MQTT_PASSWORD_ENV = "SENSORS_MQTT_PASSWORD"  # noqa: S105 - a variable name, outside ECONOME_*: only the inventory names it
INFLUX_USER = "admin"


def _secret(kind: str) -> str:
    return f"{kind}-S3cr3t-{uuid.uuid4().hex[:12]}"


def _forms(secret: str, user: str | None = None) -> list[str]:
    """The ways a secret could leak: as is, base64, and as a Basic authorization value."""
    forms = [secret, base64.b64encode(secret.encode()).decode()]
    if user is not None:
        forms.append(base64.b64encode(f"{user}:{secret}".encode()).decode())
    return forms


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[LocalServer, str, str]]:
    """Mosquitto requiring a password; yields it with Econome's and the publisher's passwords."""
    ours, theirs = _secret("mqtt"), _secret("pub")
    server = start_mosquitto(tmp_path / "mosquitto", users={MQTT_USER: ours, PUBLISHER: theirs})
    yield server, ours, theirs
    server.stop()


def _config(tmp: Path, mqtt_port: int, prefix: str) -> Path:
    path = tmp / "commune.yaml"
    path.write_text(
        f"""
organisation: {{name: Test, population: 100, school_holiday_zone: C}}
mqtt_brokers:
  - {{host: 127.0.0.1, port: {mqtt_port}, client_id: {prefix}-econome, username: {MQTT_USER},
      password_env: {MQTT_PASSWORD_ENV}}}
sites:
  - id: s
    name: S
    buildings:
      - id: b
        name: B
        usage: offices
        floor_area_m2: 100
        heated_area_m2: 100
        points:
          - {{id: temp, quantity: temperature, unit: degC, usage: comfort,
              mqtt: {{topic: {prefix}/temp, format: json, field: t, timestamp_field: time}}}}
          - {{id: probe, quantity: temperature, unit: degC, usage: comfort,
              mqtt: {{topic: {prefix}/probe, format: json, field: t, timestamp_field: time}}}}
""",
        encoding="utf-8",
    )
    return path


class _Run:
    """``econome run`` in a subprocess, its output in a file."""

    def __init__(self, config: Path, data_dir: Path, env: dict[str, str]) -> None:
        self.metrics_port = free_port()
        self.log_path = data_dir.parent / "run.log"
        self.data_dir = data_dir
        full_env = {
            **os.environ,
            **env,
            "ECONOME_DATA_DIR": str(data_dir),
            "ECONOME_FLUSH_INTERVAL_S": "0.2",
            "ECONOME_LOG_LEVEL": "DEBUG",
        }
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "econome.cli", "run", str(config), "--metrics-port", str(self.metrics_port)],
                cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_output(self, needle: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.output():
            assert self.process.poll() is None, f"econome run exited:\n{self.output()[-3000:]}"
            assert time.monotonic() < deadline, f"{needle!r} never logged:\n{self.output()[-3000:]}"
            time.sleep(0.2)

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def readings_received(self) -> float:
        try:
            text = self.metrics()
        except httpx.HTTPError:
            return 0.0
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("econome_readings_total"))

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.output()


class _Publisher:
    def __init__(self, port: int, password: str, prefix: str) -> None:
        self.prefix = prefix
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="")
        self.client.username_pw_set(PUBLISHER, password)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.sent = 0

    def send(self, topic: str, payload: str | bytes) -> None:
        self.client.publish(f"{self.prefix}/{topic}", payload, qos=1).wait_for_publish(10)

    def temps(self, n: int) -> None:
        now = datetime.now(UTC).replace(microsecond=0)
        for _ in range(n):
            ts = now - timedelta(minutes=30) + timedelta(seconds=self.sent)
            self.send("temp", json.dumps({"t": 20.0 + self.sent / 100, "time": ts.isoformat()}))
            self.sent += 1

    def until_received(self, run: _Run, timeout: float = 30.0) -> None:
        """Publish probes until the pipeline counts one: it is subscribed."""
        deadline = time.monotonic() + timeout
        while run.readings_received() < 1:
            assert time.monotonic() < deadline, f"econome run never received a probe:\n{run.output()[-3000:]}"
            ts = datetime.now(UTC) - timedelta(hours=1)
            self.send("probe", json.dumps({"t": 19.0, "time": ts.isoformat()}))
            time.sleep(0.3)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _wait(predicate: Callable[[], bool], what: str, run: _Run, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} never happened:\n{run.output()[-3000:]}"
        time.sleep(0.3)


def _assert_nowhere(secrets: list[str], output: str, data_dir: Path, metrics: str) -> None:
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert any("dead-letters" in p.name for p in files), files
    assert any(p.name.startswith("delivery.sqlite") for p in files), files
    places = {"stdout/stderr": output.encode(), "/metrics": metrics.encode()}
    places.update({str(p.relative_to(data_dir)): p.read_bytes() for p in files})
    for secret in secrets:
        for where, blob in places.items():
            assert secret.encode() not in blob, f"a secret appears in {where}"


def _v1_count(server: LocalServer, database: str, password: str) -> int:
    try:
        body = httpx.get(
            f"{server.url}/query",
            params={"db": database, "q": 'SELECT count("value") FROM "reading" WHERE "point" = \'temp\''},
            auth=(INFLUX_USER, password), timeout=5,
        ).json()  # fmt: skip
    except httpx.HTTPError:
        return 0
    series = body["results"][0].get("series", [])
    return int(series[0]["values"][0][1]) if series else 0


@pytest.mark.timeout(180)
def test_v1_password_and_mqtt_password_never_printed(
    broker: tuple[LocalServer, str, str], unique_name: str, tmp_path: Path
) -> None:
    mosquitto, mqtt_password, publisher_password = broker
    influx_password = _secret("influx")
    influx = start_influxdb(tmp_path / "influx", auth=(INFLUX_USER, influx_password))
    influx.stop()  # first phase: InfluxDB unreachable
    run = _Run(
        _config(tmp_path, mosquitto.port, unique_name),
        tmp_path / "var",
        {
            "ECONOME_INFLUX_URL": influx.url,
            "ECONOME_INFLUX_DATABASE": unique_name,
            "ECONOME_INFLUX_USERNAME": INFLUX_USER,
            "ECONOME_INFLUX_PASSWORD": influx_password,
            MQTT_PASSWORD_ENV: mqtt_password,
        },
    )
    publisher = _Publisher(mosquitto.port, publisher_password, unique_name)
    new_password = _secret("rotated")
    try:
        publisher.until_received(run)
        publisher.temps(20)
        publisher.send("temp", b"\xff not json")  # a dead letter
        run.wait_output(f"InfluxDB {influx.url} unreachable")

        influx = restart(influx)  # second phase: up, with authentication on
        _wait(lambda: _v1_count(influx, unique_name, influx_password) == 20, "20 readings in InfluxDB", run)

        # Third phase: the password changes behind Econome's back; InfluxDB refuses with 401.
        response = httpx.post(
            f"{influx.url}/query", data={"q": f"SET PASSWORD FOR \"{INFLUX_USER}\" = '{new_password}'"},
            auth=(INFLUX_USER, influx_password), timeout=5,
        )  # fmt: skip
        assert response.status_code == 200, response.text
        publisher.temps(5)
        run.wait_output("answered 401")
        metrics = run.metrics()
        # The password is put back: the readings refused meanwhile were kept, not dead-lettered.
        response = httpx.post(
            f"{influx.url}/query", data={"q": f"SET PASSWORD FOR \"{INFLUX_USER}\" = '{influx_password}'"},
            auth=(INFLUX_USER, new_password), timeout=5,
        )  # fmt: skip
        assert response.status_code == 200, response.text
        _wait(lambda: _v1_count(influx, unique_name, influx_password) == 25, "25 readings in InfluxDB", run)
    finally:
        publisher.close()
        output = run.stop()
        influx.stop()
    assert "econome_dead_letters_total" in metrics
    assert f"(127.0.0.1:{mosquitto.port}) connected" in output
    assert "DEBUG" in output
    secrets = [
        *_forms(influx_password, INFLUX_USER),
        *_forms(new_password, INFLUX_USER),
        *_forms(mqtt_password, MQTT_USER),
        *_forms(publisher_password),
    ]
    _assert_nowhere(secrets, output, run.data_dir, metrics)


def _vm_count(server: LocalServer, series: str) -> int:
    try:
        httpx.get(f"{server.url}/internal/force_flush", timeout=5)
        text = httpx.post(f"{server.url}/api/v1/export", data={"match[]": series}, timeout=5).text
    except httpx.HTTPError:
        return 0
    return sum(len(json.loads(line)["values"]) for line in text.splitlines() if line)


@pytest.mark.timeout(180)
def test_v2_token_and_mqtt_password_never_printed(
    broker: tuple[LocalServer, str, str], unique_name: str, tmp_path: Path
) -> None:
    mosquitto, mqtt_password, publisher_password = broker
    token = _secret("token")
    port = free_port()
    run = _Run(
        _config(tmp_path, mosquitto.port, unique_name),
        tmp_path / "var",
        {
            "ECONOME_INFLUX_API": "v2",
            "ECONOME_INFLUX_URL": f"http://127.0.0.1:{port}",
            "ECONOME_INFLUX_TOKEN": token,
            "ECONOME_INFLUX_ORG": "commune",
            "ECONOME_INFLUX_BUCKET": unique_name,
            MQTT_PASSWORD_ENV: mqtt_password,
        },
    )
    publisher = _Publisher(mosquitto.port, publisher_password, unique_name)
    vm: LocalServer | None = None
    try:
        publisher.until_received(run)
        publisher.temps(20)
        publisher.send("temp", b"{{{ not json")  # a dead letter
        run.wait_output(f"InfluxDB http://127.0.0.1:{port} unreachable")  # first phase: nothing listens

        vm = start_victoriametrics(tmp_path / "vm", port=port)  # second phase: up
        _wait(lambda: _vm_count(vm, 'reading_value{point="temp"}') == 20, "20 readings in VictoriaMetrics", run)
        metrics = run.metrics()
    finally:
        publisher.close()
        output = run.stop()
        if vm is not None:
            vm.stop()
    assert "econome_points_written_total" in metrics
    assert "DEBUG" in output
    secrets = [*_forms(token), *_forms(mqtt_password, MQTT_USER), *_forms(publisher_password)]
    _assert_nowhere(secrets, output, run.data_dir, metrics)
