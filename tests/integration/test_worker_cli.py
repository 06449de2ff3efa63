"""``econome worker`` refuses a broker it cannot reach, and a topic whose partitions differ, before it starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from econome.cli import app
from econome.localservers import create_topic, free_port
from tests.conftest import ROOT, Endpoint

CONFIG = str(ROOT / "examples" / "commune.yaml")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, unique_name: str) -> None:
    monkeypatch.setenv("ECONOME_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ECONOME_KAFKA_TOPIC", f"{unique_name}-readings")
    monkeypatch.setenv("ECONOME_KAFKA_GROUP", unique_name)


@pytest.mark.usefixtures("env")
def test_an_unreachable_broker_is_an_error_naming_its_url(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("ECONOME_KAFKA_URL", f"kafka://{url}")
    result = CliRunner().invoke(app, ["worker", CONFIG])
    assert result.exit_code == 1, result.output
    assert f"error: Kafka {url} unreachable (ECONOME_KAFKA_URL)" in result.output


@pytest.mark.usefixtures("env")
def test_a_topic_with_other_partitions_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, kafka_server: Endpoint, unique_name: str
) -> None:
    address = f"{kafka_server.host}:{kafka_server.port}"
    create_topic(address, f"{unique_name}-readings", 2)
    monkeypatch.setenv("ECONOME_KAFKA_URL", f"kafka://{address}")
    monkeypatch.setenv("ECONOME_KAFKA_PARTITIONS", "4")
    result = CliRunner().invoke(app, ["worker", CONFIG])
    assert result.exit_code == 2, result.output
    assert f"topic {unique_name}-readings has 2 partitions, the settings say 4" in result.output


def test_a_kafka_url_that_is_no_kafka_url_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECONOME_KAFKA_URL", "http://127.0.0.1:9092")
    result = CliRunner().invoke(app, ["worker", CONFIG])
    assert result.exit_code == 2
    assert "ECONOME_KAFKA_URL: must be kafka://HOST:PORT" in result.output


@pytest.mark.usefixtures("env")
def test_run_with_the_faust_runner_refuses_a_topic_with_other_partitions(
    monkeypatch: pytest.MonkeyPatch, kafka_server: Endpoint, unique_name: str
) -> None:
    """``econome run --runner faust`` collects with Kafka down (test_forward_kafka_down.py), but a topic of another
    partition count is a configuration error, exit 2, as for ``econome worker``."""
    address = f"{kafka_server.host}:{kafka_server.port}"
    create_topic(address, f"{unique_name}-readings", 2)
    monkeypatch.setenv("ECONOME_DETECT_ENABLED", "false")
    monkeypatch.setenv("ECONOME_INFLUX_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("ECONOME_STOP_TIMEOUT_S", "1")
    monkeypatch.setenv("ECONOME_KAFKA_URL", f"kafka://{address}")
    monkeypatch.setenv("ECONOME_KAFKA_PARTITIONS", "4")
    result = CliRunner().invoke(app, ["run", CONFIG, "--runner", "faust", "--duration", "30"])
    assert result.exit_code == 2, result.output
    assert f"topic {unique_name}-readings has 2 partitions, the settings say 4" in result.output
    assert CliRunner().invoke(app, ["run", CONFIG, "--runner", "kafka"]).exit_code == 2


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize("port", ["91110", "0", "abc"])
def test_a_metrics_port_that_is_no_port_is_a_one_line_error(port: str) -> None:
    """systemd's econome-worker@NAME passes NAME as the port: a bad one is refused before anything starts."""
    result = CliRunner().invoke(app, ["worker", CONFIG, "--metrics-port", port])
    assert result.exit_code == 2, result.output
    assert "--metrics-port" in result.output
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("env")
def test_a_metrics_port_taken_is_a_one_line_error_naming_the_address() -> None:
    """(That the worker binds --metrics-host: tests/integration/test_worker_outage.py scrapes it on 127.0.0.2.)"""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["worker", CONFIG, "--metrics-port", str(port), "--metrics-host", "127.0.0.1"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: cannot serve metrics on 127.0.0.1:{port} (--metrics-host/--metrics-port)")
    assert len(result.output.splitlines()) == 1


def test_run_stops_on_a_topic_with_other_partitions_with_the_workers_exit_code(
    monkeypatch: pytest.MonkeyPatch, kafka_server: Endpoint, unique_name: str, tmp_path: Path
) -> None:
    address = f"{kafka_server.host}:{kafka_server.port}"
    create_topic(address, f"{unique_name}-readings", 2)
    monkeypatch.setenv("ECONOME_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ECONOME_DETECT_ENABLED", "false")
    monkeypatch.setenv("ECONOME_INFLUX_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("ECONOME_KAFKA_URL", f"kafka://{address}")
    monkeypatch.setenv("ECONOME_KAFKA_TOPIC", f"{unique_name}-readings")
    monkeypatch.setenv("ECONOME_KAFKA_PARTITIONS", "4")
    result = CliRunner().invoke(app, ["run", CONFIG, "--runner", "faust", "--duration", "30"])
    assert result.exit_code == 2, result.output  # as `econome worker` (test_a_topic_with_other_partitions_is_a_config_error)
    assert f"topic {unique_name}-readings has 2 partitions, the settings say 4" in result.output
