"""``econome run`` and ``econome demo`` end to end, as a user runs them."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import yaml

from econome.cli import count_per_point
from econome.localservers import free_port
from econome.wiring import with_endpoints
from inventory import load_inventory
from simulator import Simulator
from streams.clock import ScaledClock
from streams.influx import InfluxConfig, InfluxQLClient

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "commune.yaml"


async def test_demo_fills_influxdb_for_every_point_and_mails_each_fault_once(influxdb_server, tmp_path: Path) -> None:
    """The demo's promises: live readings for every point, and one alert e-mail per injected fault, none else."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "econome.cli",
            "demo",
            "--duration",
            "10",
            "--speed",
            "180",
            "--influx-url",
            influxdb_server.url,
            "--workdir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "points with no reading: 0" in result.stdout
    imported = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("imported ")]
    assert [name for name in imported if name.startswith(("enedis-", "grdf-", "factures"))] == imported
    assert len(imported) == 4  # two Linkys (one file each), a Gazpar, the bills
    assert [line.split()[-1] for line in result.stdout.splitlines() if line.startswith("salle-polyvalente-")] == [
        "live", "live"]  # "imported, not live"
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith(("mairie-", "piscine-", "ecole-"))]
    assert len(rows) > 40
    assert all(int(row[-1]) > 0 for row in rows)
    # The aggregates of the closed windows are there too, per point, usage and building.
    client = InfluxQLClient(InfluxConfig(url=influxdb_server.url, database="econome_demo"))
    try:
        for measurement in ("agg_point", "agg_usage", "agg_building"):
            query = f'SELECT count("kwh") FROM "{measurement}" WHERE "window" = \'10m\''  # noqa: S608 - InfluxQL, constants
            series = await client.query(query)
            assert series, measurement
            assert series[0]["values"][0][1] > 0
        buildings = await client.query('SHOW TAG VALUES FROM "agg_building" WITH KEY = "building"')
        # The two Linky/Gazpar buildings are not collected live: their aggregates come from their imported files.
        assert len(buildings[0]["values"]) == 14
        # Their eight days of history are imported from the simulated files, at their utility's resolution:
        # 30 min, one index per gas day (a reading at each end, after the anchor at the first start; the
        # half-hour ending at the start is not published yet).
        utility = await client.query('SELECT count("value") FROM "reading" WHERE "point" = \'salle-polyvalente-gazpar\' '
                                     'OR "point" = \'maternelle-aulnes-linky\' GROUP BY "point"')
        assert {u["tags"]["point"]: u["values"][0][1] for u in utility} == {
            "maternelle-aulnes-linky": 8 * 48 - 1 + 1, "salle-polyvalente-gazpar": 7 + 1}
        bills = await client.query('SELECT count("consumption") FROM "invoices"."invoice" GROUP BY "account"')
        # A bill a month of 2019 (--bill-years), and the school's fuel oil of the history's whole days, by month.
        started = datetime.fromisoformat(re.search(r"simulated time starts (\S+) at", result.stdout)[1])
        whole_days = [started.date() - timedelta(days=d) for d in range(1, 8)]
        assert {b["tags"]["account"]: b["values"][0][1] for b in bills} == {
            "maternelle-aulnes-elec": 12, "maternelle-aulnes-fioul": 12 + len({(d.year, d.month) for d in whole_days}),
            "salle-polyvalente-elec": 12, "salle-polyvalente-gaz": 12}
        # The live service wrote its events: the faulty buildings' alerts are in InfluxDB for Grafana.
        flagged = await client.query('SHOW TAG VALUES FROM "anomaly" WITH KEY = "building"')
        assert {"mairie", "bibliotheque"} <= {row[1] for row in flagged[0]["values"]}
    finally:
        await client.close()
    # Each injected fault is one alert e-mail to the building's advisor (kept as .eml, subject printed); no
    # alert and no resolution notice for any other building.
    names = {b.id: b.name for _, b in load_inventory(EXAMPLE).buildings()}
    mails = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
             for p in sorted((tmp_path / "mail").glob("*.eml"))]
    for mail in mails:
        assert f"mail \u2192 {mail['To']}: {mail['Subject']}" in result.stdout
    alerts = [m for m in mails if not str(m["Subject"]).startswith("[Econome] Synthèse")]
    assert all(str(m["Subject"]).startswith("[Econome] Alerte") for m in alerts), [m["Subject"] for m in mails]
    per_building = {b: [m for m in alerts if f" {name} \u2014 " in str(m["Subject"])] for b, name in names.items()}
    assert {b: len(ms) for b, ms in per_building.items() if ms} == {"mairie": 1, "bibliotheque": 1}, [
        m["Subject"] for m in mails]
    assert len(alerts) == 2
    assert "chauffage" in str(per_building["mairie"][0]["Subject"])
    assert "fuite" in str(per_building["bibliotheque"][0]["Subject"])
    assert all(m["To"] == "cep@valmont.example" for m in alerts)


async def test_run_collects_from_real_devices_into_influxdb(
    mqtt_server, influxdb_server, unique_name: str, tmp_path: Path
) -> None:
    inv = load_inventory(EXAMPLE)
    ports = {gw.id: free_port() for gw in inv.modbus_gateways}
    local = with_endpoints(inv, ports, (mqtt_server.host, mqtt_server.port))
    # The config a user would write: the example with the simulator's ports.
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    for gw in data["modbus_gateways"]:
        gw.update(port=ports[gw["id"]], timeout="500ms")
    data["mqtt_brokers"][0].update(port=mqtt_server.port, client_id=f"{unique_name}-run")
    for site in data["sites"]:
        for building in site["buildings"]:
            for point in building["points"]:
                if "modbus" in point:
                    point["modbus"]["poll_interval"] = "1s"
    config = tmp_path / "commune.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")

    metrics_port = free_port()
    sim_start = datetime(2026, 1, 13, 7, tzinfo=UTC)
    simulator = Simulator(
        local,
        ScaledClock(sim_start, 60.0),
        modbus_ports=ports,
        mqtt=(mqtt_server.host, mqtt_server.port),
        mqtt_topic_prefix="",
        mqtt_client_id=f"{unique_name}-sim",
    )
    await simulator.start()
    env = {
        **os.environ,
        "ECONOME_INFLUX_URL": influxdb_server.url,
        "ECONOME_INFLUX_DATABASE": unique_name,
        "ECONOME_DATA_DIR": str(tmp_path),
        "ECONOME_LOG_LEVEL": "INFO",
        # The simulated devices replay a January day: accept their times as a live gateway's.
        "ECONOME_MAX_AGE_S": str((datetime.now(UTC) - sim_start).total_seconds() + 86_400),
    }
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "econome.cli",
            "run",
            str(config),
            "--duration",
            "8",
            "--metrics-port",
            str(metrics_port),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        metrics = last = ""
        for _ in range(100):
            await asyncio.sleep(0.1)
            try:
                response = await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{metrics_port}/metrics", timeout=1)
            except httpx.HTTPError:
                continue
            last = response.text
            if 'econome_device_up{device="gw-centre/1"} 1.0' in response.text:
                metrics = response.text
                break
        output, _ = await asyncio.wait_for(process.communicate(), 60)
    finally:
        await simulator.stop()
    assert process.returncode == 0, output.decode()
    counts = await count_per_point(InfluxConfig(url=influxdb_server.url, database=unique_name), local)
    # Every collected point has readings; Linky and Gazpar points are imported or fetched a day late, not collected.
    assert [p for p, n in counts.items() if n == 0 and not local.point(p).is_utility] == []
    assert [p for p, n in counts.items() if n > 0 and local.point(p).is_utility] == []
    modbus = [p.id for _, p in inv.points() if p.protocol == "modbus"]
    assert min(counts[p] for p in modbus) >= 4  # polled every second for 8 s
    assert "stopped:" in output.decode()
    assert 'econome_device_up{device="gw-centre/1"} 1.0' in metrics, last[-3000:]
    # What it built at start (inventory, processor) is out of the garbage collector's full walks (issue 15).
    frozen = re.search(r"(\d+) objects built at start frozen out of the garbage collector's walks", output.decode())
    assert frozen is not None, output.decode()[-3000:]
    assert int(frozen[1]) > 10_000
