"""No "données manquantes" for a Linky/Gazpar before its first daily fetch (issue 14, review F3).

On a first start, or for a building just added, live detection ran its pass before the daily
fetch had delivered anything (or the new point waited for the next 07:30): the utility points
were judged missing. ``econome run`` hands live detection the points not fetched yet
(:func:`econome.cli._not_fetched_yet`, from the fetch's state file), whose silence is not judged.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from anomalies.detect import DetectConfig
from anomalies.live import LiveConfig, LiveDetector
from econome.cli import _not_fetched_yet
from inventory import parse_inventory
from streams.influx import InfluxConfig, InfluxV1Writer, LineEncoder
from streams.record import Reading
from tests import utility_fakes as fk

YAML = f"""
organisation: {{name: Commune test, population: 1200, school_holiday_zone: A}}
mqtt_brokers: [{{id: default, host: 127.0.0.1, port: 11883, client_id: t}}]
sites:
  - id: s1
    name: Site
    buildings:
      - id: mairie
        name: Mairie
        usage: town_hall
        floor_area_m2: 500
        heated_area_m2: 450
        points:
          - {{id: meteo, quantity: temperature, unit: degC, usage: weather, mqtt: {{topic: t/meteo, format: json, field: t}}}}
      - id: ecole
        name: École
        usage: school
        floor_area_m2: 500
        heated_area_m2: 450
        points:
          - {{id: ecole-linky, quantity: active_energy, unit: kWh, usage: general, cumulative: true,
             enedis: {{prm: "{fk.PRM_OK}", data_connect: true}}}}
"""


async def test_a_utility_point_is_not_judged_missing_before_its_first_fetch(
    influxdb_server: Any, unique_name: str, tmp_path: Path
) -> None:
    inv = parse_inventory(YAML)
    now = datetime(2026, 12, 3, 6, 40, tzinfo=UTC)  # 07:40: the pass the first start runs, the fetch not done yet
    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    writer = InfluxV1Writer(config)
    await writer.ensure_database()
    encoder = LineEncoder(inv)
    start = now - timedelta(days=20)
    try:
        await writer.write([encoder.encode(Reading("meteo", start + timedelta(hours=h), 5.0, "degC"))
                            for h in range(20 * 24)], raw=True)
    finally:
        await writer.close()
    fetch_state = tmp_path / "utilities" / "state.json"
    live = LiveConfig(every=timedelta(days=1), bootstrap=timedelta(days=10))

    def detector(name: str) -> LiveDetector:
        (tmp_path / name).mkdir()
        return LiveDetector(inv, config, tmp_path / name / "state.npz", config=DetectConfig(models=False), live=live,
                            unjudged=lambda: _not_fetched_yet(inv, fetch_state))

    # No fetch state (first start): the Linky is not judged.
    assert _not_fetched_yet(inv, fetch_state) == {"ecole-linky"}
    first = detector("first")
    report = await first.run_pass(now)
    assert report.hours > 0
    assert [e for e in report.events if e.kind == "missing_data"] == []

    # Its first fetch then delivers a daily-only Linky's backfill, for hours that pass already judged: the next
    # pass reads it back (the state had no reading of it), and the Linky is not silent since the first hour.
    fetch_state.parent.mkdir()
    fetch_state.write_text(json.dumps({"version": 1, "last_run": "2026-12-03", "fetched": ["ecole-linky"],
                                       "points": {"ecole-linky": {"last_day": "2026-12-02"}}}))
    midnights = [datetime(2026, 12, 3, tzinfo=inv.organisation.tz).astimezone(UTC) - timedelta(days=k) for k in range(20)]
    writer = InfluxV1Writer(config)
    try:
        await writer.write([encoder.encode(Reading("ecole-linky", t, 900.0 - 10 * k, "kWh"))
                            for k, t in enumerate(midnights)], raw=True)
        await writer.write([encoder.encode(Reading("meteo", now + timedelta(hours=h), 5.0, "degC"))
                            for h in range(1, 25)], raw=True)
    finally:
        await writer.close()
    later = await first.run_pass(now + timedelta(days=1))
    assert later.hours > 0
    assert [(e.kind, e.start) for e in later.events if e.kind == "missing_data"] == []

    # Once its first fetch is made (whatever it brought: a refused consent), a silent Linky is missing data.
    silent = parse_inventory(YAML.replace("ecole-linky", "ecole-linky-2"))
    fetch_state.write_text(json.dumps({"version": 1, "last_run": "2026-12-03", "fetched": ["ecole-linky-2"],
                                       "points": {"ecole-linky-2": {"from": "2026-11-03"}}}))
    assert _not_fetched_yet(silent, fetch_state) == frozenset()
    (tmp_path / "after").mkdir()
    report = await LiveDetector(silent, config, tmp_path / "after" / "state.npz", config=DetectConfig(models=False),
                                live=live, unjudged=lambda: _not_fetched_yet(silent, fetch_state)).run_pass(now)
    assert [(e.kind, e.point) for e in report.events if e.kind == "missing_data"] == [("missing_data", "ecole-linky-2")]
