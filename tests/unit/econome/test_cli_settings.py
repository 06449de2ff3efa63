"""``econome run`` with bad settings, and with an InfluxDB that fails at start-up (review findings 5 and 9).

Each test runs ``python -m econome.cli run`` as a subprocess. The InfluxDB of the
start-up tests is a small HTTP server in this process that answers as a broken
or locked-down InfluxDB 1.x does (503 to everything; 404 "database not found"
to writes and 403 to ``CREATE DATABASE``).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "examples" / "commune.yaml"


def _run(tmp_path: Path, env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("ECONOME_")}
    full.update({"ECONOME_DATA_DIR": str(tmp_path / "var"), "PYTHONPATH": str(ROOT)}, **env)
    return subprocess.run(
        [sys.executable, "-m", "econome.cli", "run", str(CONFIG), *args],
        cwd=tmp_path,  # no .env of the developer's
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ECONOME_BUFFER_MAX_ROWS": "0"}, "ECONOME_BUFFER_MAX_ROWS"),
        ({"ECONOME_BATCH_SIZE": "0"}, "ECONOME_BATCH_SIZE"),
        ({"ECONOME_BATCH_SIZE": "lots"}, "ECONOME_BATCH_SIZE"),
        ({"ECONOME_FLUSH_INTERVAL_S": "-1"}, "ECONOME_FLUSH_INTERVAL_S"),
        ({"ECONOME_LATENESS_S": "1e12"}, "ECONOME_LATENESS_S"),
        ({"ECONOME_STOP_TIMEOUT_S": "0"}, "ECONOME_STOP_TIMEOUT_S"),
        ({"ECONOME_KAFKA_PARTITIONS": "0"}, "ECONOME_KAFKA_PARTITIONS"),
        ({"ECONOME_INFLUX_URL": "http://127.0.0.1:notaport"}, "ECONOME_INFLUX_URL"),
        ({"ECONOME_INFLUX_URL": "http://[::1:8086"}, "ECONOME_INFLUX_URL"),
        ({"ECONOME_INFLUX_URL": "127.0.0.1:8086"}, "ECONOME_INFLUX_URL"),
        ({"ECONOME_INFLUX_API": "v2"}, "ECONOME_INFLUX_ORG"),
        (
            {"ECONOME_INFLUX_API": "v2", "ECONOME_INFLUX_TOKEN": "tok-secret-9", "ECONOME_INFLUX_ORG": "o"},
            "ECONOME_INFLUX_BUCKET",
        ),
        ({"ECONOME_INFLUX_DATABASE": "bad name;drop"}, "ECONOME_INFLUX_DATABASE"),
        ({"ECONOME_LOG_LEVEL": "LOUD"}, "ECONOME_LOG_LEVEL"),
        ({"ECONOME_INFLUX_KEY_FILE": "/k.pem"}, "ECONOME_INFLUX_CERT_FILE"),
        ({"ECONOME_DETECT_EVERY": "60"}, "ECONOME_DETECT_EVERY"),
        ({"ECONOME_DETECT_DELAY": "2h"}, "ECONOME_DETECT_DELAY"),
        ({"ECONOME_DETECT_BOOTSTRAP": "10min"}, "ECONOME_DETECT_BOOTSTRAP"),
        ({"ECONOME_DETECT_ENABLED": "maybe"}, "ECONOME_DETECT_ENABLED"),
        ({"ECONOME_DATA_DIR": ""}, "ECONOME_DATA_DIR"),  # claims review: it ran in the current folder
    ],
)
def test_an_invalid_setting_is_one_clean_line_naming_its_variable(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    result = _run(tmp_path, env, "--duration", "0.1")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: invalid settings: ")
    assert named in lines[0]
    assert "tok-secret-9" not in result.stderr  # values are never echoed: they may be secrets


def test_a_data_dir_that_is_a_file_is_one_clean_line(tmp_path: Path) -> None:
    # Hostile-input round: ECONOME_DATA_DIR naming a file gave a FileExistsError traceback (exit 1).
    afile = tmp_path / "not-a-folder"
    afile.write_text("x")
    result = _run(tmp_path, {"ECONOME_DATA_DIR": str(afile)}, "--duration", "0.1")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"error: ECONOME_DATA_DIR {afile} cannot be used as a folder: File exists\n"


class _Influx(BaseHTTPRequestHandler):
    """A broken (``mode`` 503) or locked-down (``mode`` 403: no database, no admin rights) InfluxDB 1.x."""

    mode = "503"
    requests: list[str] = []  # noqa: RUF012 - shared on purpose: the test reads what the server saw

    def log_message(self, format: str, *args: object) -> None:
        return

    def _send(self, code: int, body: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.requests.append(self.path)
        if self.mode == "503":
            self._send(503, {"error": "service unavailable"})
        elif self.path.startswith("/write"):
            self._send(404, {"error": 'database not found: "econome"'})
        else:
            self._send(403, {"error": "econome not authorized to execute statement 'CREATE DATABASE econome', requires admin"})

    do_GET = do_POST


@pytest.fixture
def failing_influx() -> Iterator[tuple[str, type[_Influx]]]:
    handler = type("Handler", (_Influx,), {"requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("mode", ["503", "403"])
def test_run_starts_collecting_while_influxdb_fails_or_refuses_create_database(
    tmp_path: Path, failing_influx: tuple[str, type[_Influx]], mode: str
) -> None:
    url, handler = failing_influx
    handler.mode = mode
    env = {
        "ECONOME_INFLUX_URL": url,
        "ECONOME_STOP_TIMEOUT_S": "2",
        "ECONOME_INFLUX_USERNAME": "u",
        "ECONOME_INFLUX_PASSWORD": "pw-start-7",
    }
    result = _run(tmp_path, env, "--duration", "3")
    # Before the fix: "error: InfluxDB refused 'CREATE DATABASE…': 503", exit 1, nothing collected.
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "collecting anyway" in result.stderr
    assert "stopped:" in result.stdout
    assert any(path.startswith("/query") for path in handler.requests)
    assert "pw-start-7" not in result.stderr + result.stdout


def test_the_retention_policy_setting_is_for_raw_readings_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # deploy/systemd/econome.env.example sets it to `raw` (90 days): aggregates must stay in the default policy.
    from econome.settings import load_settings
    from streams.influx import InfluxV1Writer

    example = (Path(__file__).resolve().parents[3] / "deploy" / "systemd" / "econome.env.example").read_text(encoding="utf-8")
    assert "\nECONOME_INFLUX_RETENTION_POLICY=raw\n" in example
    monkeypatch.setenv("ECONOME_INFLUX_RETENTION_POLICY", "raw")
    config = load_settings().influx()
    assert (config.raw_retention_policy, config.retention_policy) == ("raw", None)
    writer = InfluxV1Writer(config)
    assert "rp" not in writer._params  # aggregates: the database's default policy
    assert writer._raw_params is not None
    assert writer._raw_params["rp"] == "raw"
    asyncio.run(writer.close())


def test_kafka_heartbeat_must_fit_three_times_in_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    from econome.settings import load_settings
    from streams.errors import ConfigError

    monkeypatch.setenv("ECONOME_KAFKA_SESSION_TIMEOUT_S", "3")
    monkeypatch.setenv("ECONOME_KAFKA_HEARTBEAT_INTERVAL_S", "1.5")
    with pytest.raises(ConfigError, match="ECONOME_KAFKA_HEARTBEAT_INTERVAL_S"):
        load_settings()
    monkeypatch.setenv("ECONOME_KAFKA_HEARTBEAT_INTERVAL_S", "1")
    assert load_settings().kafka_fix_end_offsets is True  # the Tansu B1 workaround is on by default


def test_detect_chunk_and_held_reach_the_live_detector(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``ECONOME_DETECT_CHUNK`` and ``ECONOME_DETECT_HELD`` configure ``econome run``'s live detection."""
    from econome.settings import load_settings
    from econome.wiring import build_live_detector
    from inventory import load_inventory
    from streams.clock import SystemClock
    from streams.errors import ConfigError

    monkeypatch.setenv("ECONOME_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ECONOME_DETECT_CHUNK", "7")
    monkeypatch.setenv("ECONOME_DETECT_HELD", "0")
    inventory = load_inventory(Path(__file__).resolve().parents[3] / "examples" / "commune.yaml")
    detector = build_live_detector(inventory, load_settings(), SystemClock())
    assert (detector.live.chunk, detector.live.held) == (7, 0)
    assert detector.live.lagged_every == timedelta(days=1)
    monkeypatch.setenv("ECONOME_DETECT_LAGGED_EVERY", "0s")
    assert build_live_detector(inventory, load_settings(), SystemClock()).live.lagged_every == timedelta(0)
    monkeypatch.setenv("ECONOME_DETECT_CHUNK", "0")
    with pytest.raises(ConfigError, match="ECONOME_DETECT_CHUNK"):
        load_settings()
