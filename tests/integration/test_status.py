"""``econome status`` as a real process against InfluxDB 1.6.7 and the local files of a service.

A two-building inventory: the school complete over the whole week (its Modbus
meter every 15 min, its MQTT thermometer every 10 min), the gymnasium's water
meter silent for the last day. Readings are written half an interval off the
quarter hours before the test's time, so the few seconds between the write
and the command never move one across a window's edge: the counts below are
exact, and the completeness figures are computed here by hand.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from anomalies.alerts import EmailConfig
from anomalies.events import AlertState, _sample_event
from anomalies.notify import MailOutbox, alerts_path
from inventory import Inventory, load_inventory
from streams.buffer import DeliveryLog
from streams.clock import ManualClock
from streams.deadletter import DeadLetter, DeadLetterStore
from streams.influx import InfluxConfig, InfluxV1Writer, LineEncoder
from streams.record import Reading
from tests.conftest import Endpoint

ROOT = Path(__file__).resolve().parents[2]
QUARTER = timedelta(minutes=15)
TEN = timedelta(minutes=10)

INVENTORY = """
organisation: {name: Commune test, population: 1200, school_holiday_zone: A}
modbus_gateways:
  - {id: gw, host: 127.0.0.1, port: 15999, timeout: 1s}
mqtt_brokers:
  - {host: 127.0.0.1}
sites:
  - id: s1
    name: Site
    buildings:
      - id: ecole
        name: Ecole
        usage: school
        floor_area_m2: 500
        heated_area_m2: 450
        points:
          - {id: ecole-elec, quantity: active_energy, unit: kWh, usage: general, cumulative: true, energy: electricity,
             modbus: {gateway: gw, unit: 1, register: {address: 0, data_type: uint32}, poll_interval: 15min}}
          - {id: ecole-temp, quantity: temperature, unit: degC, usage: comfort, mqtt: {topic: t/ecole/temp}}
      - id: gymnase
        name: Gymnase
        usage: gymnasium
        floor_area_m2: 800
        heated_area_m2: 700
        points:
          - {id: gymnase-elec, quantity: active_energy, unit: kWh, usage: general, cumulative: true, energy: electricity,
             modbus: {gateway: gw, unit: 2, register: {address: 0, data_type: uint32}, poll_interval: 15min}}
          - {id: gymnase-water, quantity: water_volume, unit: m3, usage: water, cumulative: true, energy: water,
             modbus: {gateway: gw, unit: 3, register: {address: 0, data_type: uint32}, poll_interval: 15min}}
"""


@pytest.fixture
def inventory(tmp_path: Path) -> tuple[Path, Inventory]:
    path = tmp_path / "commune.yaml"
    path.write_text(INVENTORY, encoding="utf-8")
    return path, load_inventory(path)


def _readings(point: str, now: datetime, every: timedelta, skip_last: timedelta = timedelta(0)) -> list[Reading]:
    """A week of readings, half an interval off the grid before ``now``; none in the last ``skip_last``."""
    out = []
    k = 0
    while (ts := now - (k + 0.5) * every) > now - timedelta(days=7):
        if now - ts > skip_last:
            out.append(Reading(point, ts, float(k), "kWh"))
        k += 1
    return out


def _write(url: str, database: str, inv: Inventory, readings: list[Reading]) -> None:
    encoder = LineEncoder(inv)

    async def write() -> None:
        writer = InfluxV1Writer(InfluxConfig(url=url, database=database))
        try:
            await writer.ensure_database()
            await writer.write([encoder.encode(r) for r in readings], raw=True)
        finally:
            await writer.close()

    asyncio.run(write())


def _week(inv: Inventory, now: datetime, *, silent_water: bool) -> list[Reading]:
    return [
        *_readings("ecole-elec", now, QUARTER),
        *_readings("ecole-temp", now, TEN),
        *_readings("gymnase-elec", now, QUARTER),
        *_readings("gymnase-water", now, QUARTER, skip_last=timedelta(days=1) if silent_water else timedelta(0)),
    ]


def _status(data_dir: Path, url: str, database: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECONOME_")}
    env.update(ECONOME_INFLUX_URL=url, ECONOME_INFLUX_DATABASE=database, ECONOME_DATA_DIR=str(data_dir))
    return subprocess.run(
        [sys.executable, "-m", "econome.cli", "status", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _queue_alerts(data_dir: Path, inv: Inventory, now: datetime) -> None:
    """Two open alerts of the gymnasium in the register, as the live service leaves them."""
    # No recipient: the register is what is tested, not the mails (a warning says so).
    outbox = MailOutbox(
        alerts_path(data_dir), EmailConfig(host="127.0.0.1", security="none", sender="e@x.example"), inv, ManualClock(now)
    )
    base = replace(_sample_event(), building="gymnase", building_name="Gymnase")
    leak = replace(base, kind="water_leak", usage="water", score=0.9, start=now - timedelta(hours=30))
    silent = replace(base, kind="missing_data", usage="water", score=0.4, point="gymnase-water", start=now - timedelta(hours=20))
    gone = replace(base, kind="heating_unoccupied", state=AlertState.RESOLVED, score=1.0)
    outbox.queue([leak, silent, gone], now)


def test_status_names_the_silent_point_gives_completeness_and_exits_1(
    influxdb_server: Endpoint,
    unique_name: str,
    inventory: tuple[Path, Inventory],
    tmp_path: Path,
) -> None:
    path, inv = inventory
    now = datetime.now(UTC)
    _write(influxdb_server.url, unique_name, inv, _week(inv, now, silent_water=True))
    data_dir = tmp_path / "var"
    _queue_alerts(data_dir, inv, now)

    run = _status(data_dir, influxdb_server.url, unique_name, str(path), "--json")

    assert run.returncode == 1, run.stdout + run.stderr
    report = json.loads(run.stdout)
    buildings = {b["id"]: b for b in report["buildings"]}
    assert [b["id"] for b in report["buildings"]] == ["gymnase", "ecole"]  # worst first
    gym, school = buildings["gymnase"], buildings["ecole"]
    # Gymnasium: its meter 96 of 96 quarter hours in 24 h, its water meter 0 of 96;
    # over 7 days 672 of 672 and 672 - 96 = 576 of 672.
    assert gym["completeness_24h"] == round((96 + 0) / (96 + 96), 4) == 0.5
    assert gym["completeness_7d"] == round((672 + 576) / (672 + 672), 4)
    assert gym["stale_points"] == ["gymnase-water"]
    assert gym["open_alerts"] == 2
    assert gym["worst_alert"] == "water_leak"  # the higher score; the resolved one does not count
    # School: 96/96 and 672/672 for the meter; the thermometer pushes every 10 min (144 a day),
    # counted against one reading per 30 min (48 a day, 336 a week), capped.
    assert school["completeness_24h"] == 1.0
    assert school["completeness_7d"] == 1.0
    assert school["stale_points"] == []
    assert school["open_alerts"] == 0
    # Its last reading is the thermometer's, half of 10 min before the test's time (InfluxDB keeps milliseconds).
    last = datetime.fromisoformat(school["last_reading"])
    assert abs(last - (now - TEN / 2)) < timedelta(milliseconds=1)
    assert school["age_s"] >= 5 * 60
    assert report["problems"] == {"gymnase": ["stale points: gymnase-water", "24 h completeness 50.0 % < 90 %"]}
    assert report["alerts"]["open"] == 2
    assert report["influxdb"]["error"] is None

    text = _status(data_dir, influxdb_server.url, unique_name, str(path))
    assert text.returncode == 1, text.stdout + text.stderr
    lines = text.stdout.splitlines()
    gym_line = next(line for line in lines if line.startswith("gymnase "))
    assert "gymnase-water" in gym_line
    assert "50.0 %" in gym_line
    assert f"{100 * (672 + 576) / 1344:.1f} %" in gym_line  # 92.9 %
    assert "2 water_leak" in gym_line
    assert lines.index(gym_line) < lines.index(next(line for line in lines if line.startswith("ecole ")))
    assert "2 buildings, 1 with stale points or a 24 h completeness under 90 %" in text.stdout

    one = _status(data_dir, influxdb_server.url, unique_name, str(path), "--building", "gymnase")
    assert one.returncode == 1
    water = next(line for line in one.stdout.splitlines() if line.startswith("gymnase-water "))
    assert "0/96" in water
    assert "576/672" in water
    assert "STALE" in water
    assert "ecole " not in one.stdout


def test_status_exits_0_when_every_building_is_complete(
    influxdb_server: Endpoint,
    unique_name: str,
    inventory: tuple[Path, Inventory],
    tmp_path: Path,
) -> None:
    path, inv = inventory
    now = datetime.now(UTC)
    _write(influxdb_server.url, unique_name, inv, _week(inv, now, silent_water=False))

    run = _status(tmp_path / "var", influxdb_server.url, unique_name, str(path), "--json")

    assert run.returncode == 0, run.stdout + run.stderr
    report: dict[str, Any] = json.loads(run.stdout)
    assert {b["id"]: (b["completeness_24h"], b["completeness_7d"], b["stale_points"]) for b in report["buildings"]} == {
        "ecole": (1.0, 1.0, []),
        "gymnase": (1.0, 1.0, []),
    }
    assert report["problems"] == {}
    assert report["alerts"] == {"path": str(alerts_path(tmp_path / "var")), "exists": False}
    assert report["detection"] == []

    text = _status(tmp_path / "var", influxdb_server.url, unique_name, str(path))
    assert text.returncode == 0
    assert "live detection has not run yet" in text.stdout


def test_status_shows_the_delivery_log_depth_and_dead_letters(
    influxdb_server: Endpoint,
    unique_name: str,
    inventory: tuple[Path, Inventory],
    tmp_path: Path,
) -> None:
    path, inv = inventory
    now = datetime.now(UTC)
    _write(influxdb_server.url, unique_name, inv, _week(inv, now, silent_water=False))
    data_dir = tmp_path / "var"
    log = DeliveryLog(data_dir / "delivery.sqlite")
    log.append([Reading("ecole-elec", now - timedelta(hours=2, minutes=m), 1.0, "kWh") for m in range(3)])
    log.close()
    letters = DeadLetterStore(data_dir / "dead-letters.jsonl")
    letters.add(DeadLetter.now("mqtt", "t/ecole/temp", "abc", "not a number"))

    run = _status(data_dir, influxdb_server.url, unique_name, str(path), "--json")

    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert report["delivery_log"]["rows_waiting"] == 3
    assert 2 * 3600 + 2 * 60 <= report["delivery_log"]["oldest_age_s"] < 3 * 3600
    assert report["dead_letters"]["count"] == 1
    text = _status(data_dir, influxdb_server.url, unique_name, str(path))
    assert "3 rows waiting for InfluxDB (3 readings, 0 aggregate lines; oldest reading 2 h 0" in text.stdout
    assert "dead letters   1 (mqtt 1)" in text.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_status_exits_4_naming_an_unreachable_influxdb_and_still_prints_the_local_files(
    inventory: tuple[Path, Inventory],
    tmp_path: Path,
) -> None:
    path, inv = inventory
    now = datetime.now(UTC)
    data_dir = tmp_path / "var"
    log = DeliveryLog(data_dir / "delivery.sqlite")
    log.append([Reading("gymnase-water", now - timedelta(minutes=30), 1.0, "m3")])
    log.close()
    _queue_alerts(data_dir, inv, now)
    url = f"http://127.0.0.1:{_free_port()}"

    run = _status(data_dir, url, "econome", str(path))

    assert run.returncode == 4, run.stdout + run.stderr
    assert f"InfluxDB {url} unreachable" in run.stderr
    assert "1 rows waiting for InfluxDB" in run.stdout
    assert "2 open in 1 building " in run.stdout
    gym_line = next(line for line in run.stdout.splitlines() if line.startswith("gymnase "))
    assert "2 water_leak" in gym_line

    as_json = _status(data_dir, url, "econome", str(path), "--json")
    assert as_json.returncode == 4
    report = json.loads(as_json.stdout)
    assert url in report["influxdb"]["error"]
    assert report["delivery_log"]["rows_waiting"] == 1
    assert report["buildings"][0]["completeness_24h"] is None


def test_status_exits_2_on_a_bad_setting_or_an_unknown_building(inventory: tuple[Path, Inventory], tmp_path: Path) -> None:
    path, _ = inventory
    url = f"http://127.0.0.1:{_free_port()}"
    unknown = _status(tmp_path / "var", url, "econome", str(path), "--building", "piscine")
    assert unknown.returncode == 2
    assert "unknown building 'piscine'" in unknown.stderr
    bad = _status(tmp_path / "var", "ftp://influx", "econome", str(path))
    assert bad.returncode == 2
    assert "ECONOME_INFLUX_URL" in bad.stderr


def test_status_exits_1_when_mails_are_not_delivered_or_detection_is_behind(
    influxdb_server: Endpoint, unique_name: str, inventory: tuple[Path, Inventory], tmp_path: Path
) -> None:
    path, inv = inventory
    now = datetime.now(UTC)
    _write(influxdb_server.url, unique_name, inv, _week(inv, now, silent_water=False))
    data_dir = tmp_path / "var"
    outbox = MailOutbox(
        alerts_path(data_dir),
        EmailConfig(host="127.0.0.1", port=_free_port(), security="none", sender="e@x.example",
                    default_recipients=["cep@x.example"]),
        inv, ManualClock(now),
    )  # fmt: skip
    base = replace(_sample_event(), building="gymnase", building_name="Gymnase", start=now - timedelta(hours=3))
    outbox.queue([base], now)
    assert asyncio.run(outbox.flush(now)) == 0  # the server is down: the mail stays pending, with its error

    run = _status(data_dir, influxdb_server.url, unique_name, str(path), "--json")
    assert run.returncode == 1, run.stdout + run.stderr
    report: dict[str, Any] = json.loads(run.stdout)
    assert report["problems"] == {}  # every building is complete: the outbox alone turns the exit code
    assert report["outbox"]["pending"] == 1
    assert "127.0.0.1" in report["outbox"]["last_error"]
    # Past the digest hour (now is the wall clock), the day's digest failed too, and is named as well.
    [problem] = report["service_problems"]
    assert problem in {"outbox: mails not delivered", "outbox: mails not delivered, 1 digest not delivered"}, problem
    text = _status(data_dir, influxdb_server.url, unique_name, str(path))
    assert text.returncode == 1
    assert "outbox         1 pending" in text.stdout

    # Detection behind: a state whose last hour is 4 hours old (period 1 h, delay 5 min).
    from anomalies.detect import DetectConfig
    from anomalies.incremental import DetectorState, IncrementalConfig

    alerts_path(data_dir).unlink()
    state = DetectorState.fresh(DetectConfig(), IncrementalConfig())
    state.last_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    state.save(data_dir / "detect" / "state.npz")
    behind = _status(data_dir, influxdb_server.url, unique_name, str(path), "--json")
    assert behind.returncode == 1, behind.stdout + behind.stderr
    assert json.loads(behind.stdout)["service_problems"] == ["detection: behind: more than 2 h 05 min (2 periods + delay)"]
