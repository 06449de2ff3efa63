"""InfluxDB over HTTPS with a private CA made by the test (trustme): InfluxDB 1.6 (v1 API) and VictoriaMetrics (v2 API).

For each API: a write succeeds when ``ca_file`` names the CA, fails with an
error naming the host and the fix without it, and succeeds with the
explicitly named insecure switch. ``econome run`` logs the TLS failure.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import trustme

from econome.localservers import LocalServer, start_influxdb, start_victoriametrics
from streams.influx import InfluxConfig, InfluxQLClient, InfluxV1Writer, InfluxV2Writer, RetryableSinkError

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A private CA and a server certificate for 127.0.0.1, as PEM files."""
    base = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    paths = {"ca": base / "ca.pem", "cert": base / "server.pem", "key": base / "server.key"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.private_key_pem.write_to_path(str(paths["key"]))
    for i, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(str(paths["cert"]), append=i > 0)
    return paths


@pytest.fixture(scope="module")
def https_influxdb(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Path]) -> Iterator[LocalServer]:
    server = start_influxdb(tmp_path_factory.mktemp("influxdb-tls"), tls=(pki["cert"], pki["key"]))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def https_victoriametrics(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Path]) -> Iterator[LocalServer]:
    server = start_victoriametrics(tmp_path_factory.mktemp("vm-tls"), tls=(pki["cert"], pki["key"]))
    yield server
    server.stop()


def _lines(measurement: str, n: int) -> list[str]:
    start = int(T0.timestamp() * 1000)
    return [f"{measurement},point=p value={float(i)} {start + 60_000 * i}" for i in range(n)]


async def _count_v1(config: InfluxConfig, measurement: str) -> int:
    client = InfluxQLClient(config)
    try:
        series = await client.query(f'SELECT count("value") FROM "{measurement}"')  # noqa: S608 - test constant
    finally:
        await client.close()
    return int(series[0]["values"][0][1]) if series else 0


async def test_v1_https_trusted_refused_insecure(https_influxdb: LocalServer, pki: dict[str, Path], unique_name: str) -> None:
    assert https_influxdb.url.startswith("https://")
    base = InfluxConfig(url=https_influxdb.url, database=unique_name)

    trusted = base.model_copy(update={"ca_file": pki["ca"]})
    writer = InfluxV1Writer(trusted)
    try:
        await writer.ensure_database()
        await writer.write(_lines("trusted", 5))
    finally:
        await writer.close()
    assert await _count_v1(trusted, "trusted") == 5

    writer = InfluxV1Writer(base)  # system CAs only: the private CA is unknown
    try:
        with pytest.raises(RetryableSinkError) as info:
            await writer.write(_lines("refused", 5))
    finally:
        await writer.close()
    message = str(info.value)
    assert f"InfluxDB {https_influxdb.url} TLS certificate not trusted" in message
    assert "ECONOME_INFLUX_CA_FILE" in message
    assert await _count_v1(trusted, "refused") == 0

    insecure = base.model_copy(update={"tls_insecure": True})
    writer = InfluxV1Writer(insecure)
    try:
        await writer.write(_lines("insecure", 5))
    finally:
        await writer.close()
    assert await _count_v1(trusted, "insecure") == 5


def _vm_count(server: LocalServer, ca: Path, series: str) -> int:
    with httpx.Client(base_url=server.url, verify=ssl.create_default_context(cafile=str(ca)), timeout=10) as client:
        client.get("/internal/force_flush")
        deadline = time.monotonic() + 15
        while True:
            rows = [line for line in client.post("/api/v1/export", data={"match[]": series}).text.splitlines() if line]
            if rows or time.monotonic() > deadline:
                return sum(len(json.loads(row)["values"]) for row in rows)
            time.sleep(0.3)


# urllib3 warns on every unverified request; the insecure switch is the point of this case.
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
async def test_v2_https_trusted_refused_insecure(
    https_victoriametrics: LocalServer, pki: dict[str, Path], unique_name: str
) -> None:
    base = InfluxConfig(api="v2", url=https_victoriametrics.url, token="t0ken-for-vm", org="o", bucket=unique_name)  # noqa: S106

    writer = InfluxV2Writer(base.model_copy(update={"ca_file": pki["ca"]}))
    try:
        await writer.write(_lines(f"{unique_name}_trusted", 5))
    finally:
        await writer.close()
    assert _vm_count(https_victoriametrics, pki["ca"], f"{unique_name}_trusted_value") == 5

    writer = InfluxV2Writer(base)
    try:
        with pytest.raises(RetryableSinkError) as info:
            await writer.write(_lines(f"{unique_name}_refused", 5))
    finally:
        await writer.close()
    assert f"InfluxDB {https_victoriametrics.url} TLS certificate not trusted" in str(info.value)

    writer = InfluxV2Writer(base.model_copy(update={"tls_insecure": True}))
    try:
        await writer.write(_lines(f"{unique_name}_insecure", 5))
    finally:
        await writer.close()
    assert _vm_count(https_victoriametrics, pki["ca"], f"{unique_name}_insecure_value") == 5


def test_econome_run_logs_the_tls_failure_naming_the_host(
    https_influxdb: LocalServer, mqtt_server, unique_name: str, tmp_path: Path
) -> None:
    """Without the CA, ``econome run`` says which server it does not trust and how to fix it; it does not stay silent."""
    config = tmp_path / "commune.yaml"
    config.write_text(
        f"""
organisation: {{name: Test, population: 100, school_holiday_zone: C}}
mqtt_brokers: [{{host: 127.0.0.1, port: {mqtt_server.port}, client_id: {unique_name}}}]
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
          - {{id: temp, quantity: temperature, unit: degC, usage: comfort, mqtt: {{topic: {unique_name}/t, format: plain}}}}
""",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "ECONOME_INFLUX_URL": https_influxdb.url,
        "ECONOME_INFLUX_DATABASE": unique_name,
        "ECONOME_DATA_DIR": str(tmp_path / "var"),
        "ECONOME_LOG_LEVEL": "INFO",
    }
    done = subprocess.run(
        [sys.executable, "-m", "econome.cli", "run", str(config), "--duration", "3"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert f"ERROR econome: InfluxDB {https_influxdb.url} TLS certificate not trusted" in output
    assert "Traceback" not in output
