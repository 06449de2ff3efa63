"""Issue 14, must show "Demo": the commune's Linky/Gazpar buildings come from simulated files, end to end.

``econome simulate --utility-files`` writes what an advisor downloads for the
two buildings read only through the utilities (the Linky-only school heated by
fuel oil, the hall with a Linky and a Gazpar): Enedis load curves (one file a
year), the GRDF daily file (newest day first) and the invoice CSV (the school's
fuel oil, both buildings' bills of 2018-2019). ``econome import
enedis|grdf|invoices`` brings them into a real InfluxDB 1.6.7, with the
weather station's temperatures (the town hall's, written as the pipeline
writes them); a second import changes nothing. Then the two buildings are in
the Grafana dashboards (the panel queries return their data), in ``econome mv
--from-influx`` (the hall's Gazpar), in the OPERAT export (identifiers, comma
decimals, subjection per site, the reference year of the bills), and
``econome detect --from-influx`` finds the school's lights left on from the
30-minute curve, once, and nothing on the hall. Expected figures are computed
here from the files, not by the code under test.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from typer.testing import CliRunner

from dashboards.grafana import generate_dashboards, interpolate, iter_queries
from dashboards.operat import (
    AREA,
    EFA_ID,
    INTERNAL_REF,
    REFERENCE_KWH,
    REFERENCE_SOURCE,
    REFERENCE_YEAR,
    SUBJECT,
)
from econome.cli import app
from inventory import Inventory, load_inventory
from simulator.faults import default_fault_plan
from streams.history import read_readings_csv
from streams.influx import InfluxConfig, InfluxQLClient, InfluxV1Writer, LineEncoder
from streams.record import Reading

ROOT = Path(__file__).resolve().parents[2]
PARIS = ZoneInfo("Europe/Paris")
SCHOOL, HALL = "maternelle-aulnes", "salle-polyvalente"
START, END = "2024-12-20", "2025-12-13"  # two Enedis files (2024, 2025); the school's fault ends on 8 December
BILL_YEARS = (2019,)


def _small_commune(path: Path) -> Path:
    """The demo commune cut down to the two utility buildings and the town hall's weather station."""
    raw = yaml.safe_load((ROOT / "examples" / "commune.yaml").read_text(encoding="utf-8"))
    sites = []
    for site in raw["sites"]:
        kept = []
        for building in site["buildings"]:
            if building["id"] in (SCHOOL, HALL):
                kept.append(building)
            elif building["id"] == "mairie":
                weather = [p for p in building["points"] if p["id"] == "station-meteo-temperature"]
                kept.append({**building, "points": weather, "zones": [], "invoices": []})
        if kept:
            sites.append({**site, "buildings": kept})
    raw["sites"] = sites
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


async def _write_weather(config: InfluxConfig, inv: Inventory, readings: Path) -> None:
    """The weather station's temperatures of the simulated CSV, written as the pipeline writes raw readings."""
    encoder = LineEncoder(inv)
    series = read_readings_csv(readings)["station-meteo-temperature"]
    lines = [encoder.encode(Reading("station-meteo-temperature", datetime.fromtimestamp(t, UTC), v, "degC"))
             for t, v in zip(series.times_s.tolist(), series.values.tolist(), strict=True)]
    writer = InfluxV1Writer(config)
    try:
        await writer.ensure_database()
        await writer.write(lines, raw=True)
    finally:
        await writer.close()


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result.output


def _query(config: InfluxConfig, statement: str) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        client = InfluxQLClient(config)
        try:
            return await client.query(statement)
        finally:
            await client.close()

    return asyncio.run(run())


def _counts(config: InfluxConfig) -> dict[str, int]:
    series = _query(config, 'SELECT count("value") FROM "reading" GROUP BY "point"')
    return {s["tags"]["point"]: int(s["values"][0][1]) for s in series}


def _bills_kwh(path: Path, accounts: dict[str, tuple[str, float]]) -> dict[str, dict[int, float]]:
    """kWh per building and calendar year of the invoice CSV (monthly bills: no period spans two years)."""
    out: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter=";"):
            building, per_unit = accounts[row["account"]]
            start, end = date.fromisoformat(row["start"]), date.fromisoformat(row["end"])
            assert start.year == end.year, row
            out[building][start.year] += float(row["consumption"].replace(",", ".")) * per_unit
    return out


@pytest.mark.timeout(300)  # ~40 s on a quiet machine; past 120 s under two test workers and a loaded machine
def test_utility_buildings_from_simulated_files_reach_dashboards_mv_operat_and_detection(
    influxdb_server: Any, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECONOME_INFLUX_URL", influxdb_server.url)
    monkeypatch.setenv("ECONOME_INFLUX_DATABASE", unique_name)
    monkeypatch.setenv("ECONOME_DATA_DIR", str(tmp_path / "data"))
    config = _small_commune(tmp_path / "commune.yaml")
    inv = load_inventory(config)
    influx = InfluxConfig(url=influxdb_server.url, database=unique_name)
    files = tmp_path / "downloads"
    first = datetime.fromisoformat(START).replace(tzinfo=PARIS)
    last = datetime.fromisoformat(END).replace(tzinfo=PARIS)

    # -- the files an advisor downloads --------------------------------------------------------------
    out = _run("simulate", "--config", str(config), "--out", str(tmp_path / "readings.csv"), "--start", START,
               "--end", END, "--faults", "--utility-files", str(files), "--bill-years", "2019")
    enedis = sorted(files.glob("enedis-*.csv"))
    assert [p.name for p in enedis] == [f"enedis-{prm}-{year}.csv" for prm in ("30001234567890", "30001234567891")
                                        for year in (2024, 2025)]
    assert sorted(p.name for p in files.glob("grdf-*.csv")) == ["grdf-21400000000012.csv"]
    assert f"wrote Enedis load curve {enedis[0]}" in out
    gas_rows = (files / "grdf-21400000000012.csv").read_text(encoding="utf-8").splitlines()[1:]
    gas_days = [date(*map(int, reversed(r.split(";")[1].split("/")))) for r in gas_rows]
    assert gas_days == sorted(gas_days, reverse=True)  # newest first
    faults = [f for f in default_fault_plan(inv, 2025, 3) if f.building in (SCHOOL, HALL)]
    assert [(f.building, f.kind.value) for f in faults] == [(SCHOOL, "lighting_left_on")]
    fault = faults[0]

    # -- imported as an advisor does, with the weather station's temperatures ----------------------------
    asyncio.run(_write_weather(influx, inv, tmp_path / "readings.csv"))
    _run("import", "enedis", *map(str, enedis), "--inventory", str(config))
    imported = _run("import", "grdf", str(files / "grdf-21400000000012.csv"), "--inventory", str(config))
    assert "rows set aside: none" in imported
    bills = _run("import", "invoices", str(files / "factures.csv"), "--inventory", str(config))
    billed = len((files / "factures.csv").read_text(encoding="utf-8").splitlines()) - 1
    assert f"{billed} new, 0 already there" in bills
    counts = _counts(influx)
    half_hours = int((last - first) / timedelta(minutes=30))
    assert counts["maternelle-aulnes-linky"] == counts["salle-polyvalente-linky"] == half_hours + 1  # + the anchor
    assert counts["salle-polyvalente-gazpar"] == len(gas_days) + 1
    # Again: nothing added, nothing changed.
    before = _query(influx, 'SELECT sum("value") FROM "reading" GROUP BY "point"')
    _run("import", "enedis", *(str(p) for p in enedis if p.name.endswith("-2024.csv")), "--inventory", str(config))
    assert f"0 new, {billed} already there" in _run("import", "invoices", str(files / "factures.csv"),
                                                     "--inventory", str(config))
    assert _counts(influx) == counts
    assert _query(influx, 'SELECT sum("value") FROM "reading" GROUP BY "point"') == before

    # -- (a) the Grafana dashboards of the two buildings show their data ---------------------------------
    week = (datetime(2025, 11, 3, tzinfo=UTC), datetime(2025, 11, 10, tzinfo=UTC))
    for dashboard in generate_dashboards(inv):
        mine = [b for b in (SCHOOL, HALL) if dashboard.uid.endswith(b)]
        if not mine:
            continue
        answered = 0
        for ref in iter_queries(dashboard):
            if 'FROM "expected"' in ref.query or 'FROM "anomaly"' in ref.query or "point_status" in ref.query:
                continue  # no model, no live detection, no live status: their panels may be empty
            variables: dict[str, str | list[str]] = {
                v["name"]: v["current"]["value"] if v["type"] == "custom" else v["query"]
                for v in dashboard.model["templating"]["list"]
            }
            statement = interpolate(ref.query, start=week[0], end=week[1], interval=timedelta(hours=1),
                                    variables=variables)
            series = _query(influx, statement)
            assert series, f"{dashboard.uid} {ref.where}: no series for {statement}"
            answered += 1
        assert answered >= 3, dashboard.uid

    # -- (b) M&V of the hall's Gazpar from InfluxDB -----------------------------------------------------
    mv = json.loads(_run("mv", "--config", str(config), "--from-influx", "--point", "salle-polyvalente-gazpar",
                         "--building", HALL, "--baseline", "2024-12-21/2025-10-01", "--reporting", "2025-10-01/2025-12-01"))
    gas_in_reporting = sum(
        float(r.split(";")[5].replace(",", ".")) for r, d in zip(gas_rows, gas_days, strict=True)
        if date(2025, 10, 1) <= d < date(2025, 12, 1))
    # The gas days from 1 October 6:00 to 1 December 6:00 (m3 at 11.2 kWh/m3): the local days within a few hours.
    assert mv["actual_kwh"] == pytest.approx(gas_in_reporting * 11.2, rel=0.02), mv
    assert mv["baseline_points"] >= 270
    assert abs(mv["savings_fraction"]) < 0.25, mv  # no works in the hall: no large savings

    # -- (c) OPERAT: identifiers, comma decimals, subjection per site, reference year of the bills --------
    operat = tmp_path / "operat.csv"
    _run("report", "operat", "--config", str(config), "--from-influx", "--year", "2025", "--allow-incomplete",
         "--out", str(operat))
    rows = {r[INTERNAL_REF]: r for r in csv.DictReader(io.StringIO(operat.read_text(encoding="utf-8-sig")), delimiter=";")}
    assert rows[SCHOOL][EFA_ID] == "EFA-0041013"
    assert rows[HALL][EFA_ID] == "EFA-0041014"
    assert (rows[HALL][SUBJECT], rows[SCHOOL][SUBJECT]) == ("oui", "non")
    accounts = {"maternelle-aulnes-fioul": (SCHOOL, 10.0), "maternelle-aulnes-elec": (SCHOOL, 1.0),
                "salle-polyvalente-elec": (HALL, 1.0), "salle-polyvalente-gaz": (HALL, 1.0)}
    per_year = _bills_kwh(files / "factures.csv", accounts)
    areas = {SCHOOL: 420.0, HALL: 1050.0}
    for building in (SCHOOL, HALL):
        # The school's fuel oil is billed over the simulated period too.
        assert sorted(per_year[building]) == ([*BILL_YEARS, 2024, 2025] if building == SCHOOL else list(BILL_YEARS))
        reference = max(BILL_YEARS, key=lambda y: per_year[building][y] / areas[building])
        assert rows[building][REFERENCE_YEAR] == str(reference)
        assert int(rows[building][REFERENCE_KWH]) == round(per_year[building][reference])
        assert rows[building][REFERENCE_SOURCE] == "factures"
        assert rows[building][AREA] == f"{areas[building]:g}"
    assert re.search(r"\d,\d", operat.read_text(encoding="utf-8-sig"))
    assert not re.search(r"\d\.\d", operat.read_text(encoding="utf-8-sig"))

    # -- (d) the school's lights left on, found from the 30-minute curve; nothing on the hall -------------
    events_path = tmp_path / "events.jsonl"
    _run("detect", "--inventory", str(config), "--from-influx", "--since", "2025-09-01", "--until", END, "--no-models",
         "--out", str(events_path))
    events = [json.loads(line) for line in events_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    school = [e for e in events if e["building"] == SCHOOL]
    assert [e["kind"] for e in school] == ["consumption_unoccupied"], school
    assert fault.start <= datetime.fromisoformat(school[0]["start"]) < fault.end
    assert [e for e in events if e["building"] == HALL] == []
