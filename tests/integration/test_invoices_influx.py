"""Issue 14, part M: invoices into a real InfluxDB, and the OPERAT export they give.

The demo commune's town hall gets an electricity and a gas account, and bills
from 2011 to 2023 as an advisor types them (decimal commas, ``DD/MM/YYYY``,
spaces in thousands, m3 of gas, a bill across the new year, a month missing in
2011). They are imported with ``econome import invoices`` (twice: the second
time adds nothing), a file with bad rows is refused whole, and ``econome
report operat --from-influx`` gives the reference year, the trajectory and the
climate-adjusted consumption computed here by hand from the same bills.
"""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dashboards.operat import (
    ADJUSTED_KWH,
    ADJUSTMENT_METHOD,
    DJU_REFERENCE,
    DJU_YEAR,
    GAP_2030,
    GAP_2030_ADJUSTED,
    OBJECTIVE_COLUMNS,
    REFERENCE_KWH,
    REFERENCE_SOURCE,
    REFERENCE_YEAR,
    SOURCE,
    TOTAL_KWH,
)
from econome.cli import app
from econome.localservers import free_port
from streams.influx import InfluxConfig, InfluxQLClient

ROOT = Path(__file__).resolve().parents[2]
GAS_KWH_PER_M3 = 11.0


def _month_ends(year: int) -> list[tuple[date, date]]:
    starts = [date(year, m, 1) for m in range(1, 13)]
    return [(s, (starts[i + 1] if i < 11 else date(year + 1, 1, 1)) - timedelta(days=1)) for i, s in enumerate(starts)]


def _bills() -> list[tuple[str, date, date, float, str]]:
    """(account, start, end, consumption, unit) of the town hall."""
    bills: list[tuple[str, date, date, float, str]] = []
    # 2011: the highest, but March is missing: not a complete year, not a reference.
    bills += [("mairie-elec", s, e, 3000.0, "kWh") for s, e in _month_ends(2011) if s.month != 3]
    bills += [("mairie-elec", s, e, 2000.0, "kWh") for s, e in _month_ends(2012)]
    bills += [("mairie-elec", s, e, 2100.0, "kWh") for s, e in _month_ends(2013)]
    bills += [("mairie-elec", s, e, 1500.0, "kWh") for s, e in _month_ends(2023)]
    for year, m3 in ((2012, 500.0), (2023, 300.0)):
        bills += [("mairie-gaz", date(year, m, 1), (date(year, m + 2, 1) if m < 11 else date(year + 1, 1, 1))
                   - timedelta(days=1), m3, "m3") for m in range(1, 13, 2)]
    bills += [("mairie-gaz", date(2013, 1, 1), date(2013, 2, 28), 600.0, "m3"),
              ("mairie-gaz", date(2013, 3, 1), date(2013, 11, 30), 1000.0, "m3"),
              ("mairie-gaz", date(2013, 12, 1), date(2014, 1, 31), 620.0, "m3")]  # 31 of its 62 days in 2013
    return bills


def _csv(bills: list[tuple[str, date, date, float, str]]) -> str:
    lines = ["account;start;end;consumption;unit;amount_eur;estimated;reference"]
    for i, (account, start, end, amount, unit) in enumerate(bills):
        # As typed in a French spreadsheet: DD/MM/YYYY on half the rows, a space in thousands, a decimal comma.
        first = start.strftime("%d/%m/%Y") if i % 2 else start.isoformat()
        # The first bill's reference typed on two lines of its cell: still one row (line 2).
        reference = '"Facture\nn° 1"' if i == 0 else ""
        lines.append(f"{account};{first};{end.isoformat()};{amount:,.1f};{unit};{amount * 0.2:.2f};"
                     f"{'oui' if i % 7 == 0 else 'non'};{reference}".replace(",", " ").replace(".", ","))
    return "\n".join(lines) + "\n"


def _inventory(tmp_path: Path) -> Path:
    raw = yaml.safe_load((ROOT / "examples" / "commune.yaml").read_text(encoding="utf-8"))
    for site in raw["sites"]:
        for building in site["buildings"]:
            if building["id"] == "mairie":
                building["invoices"] = [
                    {"id": "mairie-elec", "energy": "electricity", "reference": "30001234567890"},
                    {"id": "mairie-gaz", "energy": "natural_gas", "conversion_kwh_per_unit": GAS_KWH_PER_M3},
                ]
    path = tmp_path / "commune.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _stored(url: str, database: str) -> list[list[Any]]:
    async def read() -> list[list[Any]]:
        client = InfluxQLClient(InfluxConfig(url=url, database=database))
        try:
            series = await client.query('SELECT * FROM "invoices"."invoice" GROUP BY "account"')
        finally:
            await client.close()
        return sorted(row for s in series for row in s["values"])

    return asyncio.run(read())


def _columns(url: str, database: str) -> list[str]:
    async def read() -> list[str]:
        client = InfluxQLClient(InfluxConfig(url=url, database=database))
        try:
            series = await client.query('SELECT * FROM "invoices"."invoice" GROUP BY "account"')
        finally:
            await client.close()
        return list(series[0]["columns"])

    return asyncio.run(read())


def _year_kwh(bills: list[tuple[str, date, date, float, str]], year: int) -> float:
    """Each bill's kWh pro-rated by its days in the year, computed here without the project's code."""
    total = 0.0
    for _, start, end, amount, unit in bills:
        kwh = amount * (GAS_KWH_PER_M3 if unit == "m3" else 1.0)
        days = [start + timedelta(days=d) for d in range((end - start).days + 1)]
        total += kwh * sum(d.year == year for d in days) / len(days)
    return total


def test_invoices_import_once_and_give_the_operat_reference_and_trajectory(
    influxdb_server: Any, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECONOME_INFLUX_URL", influxdb_server.url)
    monkeypatch.setenv("ECONOME_INFLUX_DATABASE", unique_name)
    monkeypatch.setenv("ECONOME_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    config = _inventory(tmp_path)
    bills = _bills()
    invoices = tmp_path / "factures.csv"
    invoices.write_text(_csv(bills), encoding="utf-8")

    # As deployed: readings' retention set up (aggregates kept 5 years, the default policy); the bills of 2011 are
    # older, and kept all the same.
    result = runner.invoke(app, ["influx", "setup"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["import", "invoices", str(invoices), "--inventory", str(config)])
    assert result.exit_code == 0, result.output
    assert f"{len(bills)} new, 0 already there" in result.stdout
    # March 2011 missing: said on the April bill's line, naming the February one.
    assert "line 4: account mairie-elec: 31 day(s) without invoice after line 3 (2011-03-01 to 2011-03-31)" in result.stderr
    stored = _stored(influxdb_server.url, unique_name)
    assert len(stored) == len(bills)

    # Again: the same points, overwritten, nothing added.
    result = runner.invoke(app, ["import", "invoices", str(invoices), "--inventory", str(config)])
    assert result.exit_code == 0, result.output
    assert f"0 new, {len(bills)} already there (0 of them with other figures, replaced)" in result.stdout
    assert _stored(influxdb_server.url, unique_name) == stored

    # A file with bad rows is refused whole, each row named.
    bad = tmp_path / "bad.csv"
    bad.write_text("account;start;end;consumption;unit;amount_eur\n"
                   "mairie-elec;2024-01-01;2024-01-31;100;kWh;20\n"
                   "mairie-fioul;2024-01-01;2024-01-31;100;L;20\n"
                   "mairie-elec;2024-03-01;2024-02-01;100;kWh;20\n", encoding="utf-8")
    result = runner.invoke(app, ["import", "invoices", str(bad), "--inventory", str(config)])
    assert result.exit_code == 2
    assert "line 3: unknown account 'mairie-fioul'" in result.stderr
    assert "line 4: the period ends (2024-02-01) before it starts (2024-03-01)" in result.stderr
    assert _stored(influxdb_server.url, unique_name) == stored

    # Outdoor temperatures of both years, one Tn and Tx a year: DJU 2012 = 366 × (18 - 6), 2023 = 365 × (18 - 8).
    temperatures = tmp_path / "dju.csv"
    days = [date(2012, 1, 1) + timedelta(days=d) for d in range(366)]
    days += [date(2023, 1, 1) + timedelta(days=d) for d in range(365)]
    temperatures.write_text("date,tmin,tmax\n" + "".join(
        f"{d},{2 if d.year == 2012 else 5},{10 if d.year == 2012 else 11}\n" for d in days), encoding="utf-8")
    outputs = {}
    for how in (["--from-influx"], ["--invoices", str(invoices)]):
        out = tmp_path / f"operat-{how[0][2:]}.csv"
        result = runner.invoke(app, ["report", "operat", "--config", str(config), *how, "--year", "2023",
                                     "--temperatures", str(temperatures), "--out", str(out)])
        assert result.exit_code == 0, result.output
        outputs[how[0]] = out.read_text(encoding="utf-8-sig")
    assert outputs["--from-influx"] == outputs["--invoices"]
    mairie = next(r for r in csv.DictReader(io.StringIO(outputs["--from-influx"]), delimiter=";")
                  if r["Référence interne"] == "mairie")

    # 2011 is the highest but misses March; 2012 (57,000 kWh) beats 2013; 2014 is incomplete.
    reference = {y: _year_kwh(bills, y) for y in (2012, 2013)}
    assert reference[2012] > reference[2013]
    assert mairie[REFERENCE_YEAR] == "2012"
    assert int(mairie[REFERENCE_KWH]) == round(reference[2012])
    for deadline, cut in ((2030, 0.4), (2040, 0.5), (2050, 0.6)):
        assert int(mairie[OBJECTIVE_COLUMNS[deadline]]) == round(reference[2012] * (1 - cut))
    used = _year_kwh(bills, 2023)
    assert int(mairie[TOTAL_KWH]) == round(used)
    assert mairie[SOURCE] == mairie[REFERENCE_SOURCE] == "factures"

    # Invoices only: the default heating share of gas (0.8), none of electricity.
    gas = 6 * 300 * GAS_KWH_PER_M3
    dju_2012, dju_2023 = 366 * 12, 365 * 10
    adjusted = (used - gas) + gas * 0.2 + gas * 0.8 * dju_2012 / dju_2023
    assert (mairie[DJU_YEAR], mairie[DJU_REFERENCE]) == (str(dju_2023), str(dju_2012))
    assert int(mairie[ADJUSTED_KWH]) == round(adjusted)
    target = reference[2012] * 0.6
    assert mairie[GAP_2030_ADJUSTED] == f"{100 * (adjusted - target) / adjusted:.1f}".replace(".", ",")
    assert mairie[GAP_2030] == f"{100 * (used - target) / used:.1f}".replace(".", ",")
    assert "part par défaut (électricité 0\u00a0%, gaz naturel 80\u00a0%)" in mairie[ADJUSTMENT_METHOD]
    assert "DJU 2012/DJU 2023" in mairie[ADJUSTMENT_METHOD]

    # Shares declared for a building heated by electricity too.
    out = tmp_path / "operat-shares.csv"
    declared = ["report", "operat", "--config", str(config), "--invoices", str(invoices), "--year", "2023",
                "--temperatures", str(temperatures), "--out", str(out)]
    result = runner.invoke(app, [*declared, "--heating-share", "natural_gas=0.5", "--heating-share", "electricity=0.25"])
    assert result.exit_code == 0, result.output
    shared = next(r for r in csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig")), delimiter=";")
                  if r["Référence interne"] == "mairie")
    heated = (used - gas) * 0.25 + gas * 0.5
    assert int(shared[ADJUSTED_KWH]) == round(used - heated + heated * dju_2012 / dju_2023)
    result = runner.invoke(app, [*declared, "--heating-share", "gaz=0.5"])
    assert result.exit_code == 2
    assert "write ENERGY=FRACTION" in result.output

    # The portfolio: the year from the bills, the cost of inaction against the bills' reference year, and the
    # yearly follow-up back to the first bill, each figure marked as from the bills.
    portfolio = tmp_path / "portfolio.html"
    result = runner.invoke(app, ["report", "portfolio", "--config", str(config), "--from-influx", "--year", "2023",
                                 "--out", str(portfolio)])
    assert result.exit_code == 0, result.output
    page = " ".join(portfolio.read_text(encoding="utf-8").replace("\xa0", " ").replace("\u202f", " ").split())
    indicators = page[page.index("Indicateurs par bâtiment"):page.index("Coût de l'inaction")]
    assert "<td>Hôtel de ville</td><td>1 100</td><td>18 000\u1da0</td><td>19 800\u1da0</td>" in indicators
    assert "\u1da0 : d'après les factures." in indicators
    inaction = page[page.index("Coût de l'inaction"):page.index("Suivi pluriannuel")]
    assert f"{round(used / 1000)} MWh en 2023, {round(reference[2012] / 1000)} MWh en 2012, année de référence" in inaction
    follow_up = page[page.index("Suivi pluriannuel"):]
    electricity = follow_up[follow_up.index("Électricité (kWh)"):].split("</tr>")[0]
    cells = [c.split("</td>")[0] for c in electricity.split("<td>")[1:]]
    assert cells == ["33 000\u1da0 *", "24 000\u1da0", "25 200\u1da0", *["—"] * 9, "18 000\u1da0"]

    # Another file: December 2023 corrected, and a bill overlapping one imported before.
    corrections = tmp_path / "rectificatif.csv"
    corrections.write_text("account;start;end;consumption;unit;amount_eur\n"
                           "mairie-elec;2023-12-01;2023-12-31;1600;kWh;320\n"
                           "mairie-elec;2023-11-15;2023-11-30;700;kWh;140\n", encoding="utf-8")
    result = runner.invoke(app, ["import", "invoices", str(corrections), "--inventory", str(config)])
    assert result.exit_code == 0, result.output
    assert "1 new, 1 already there (1 of them with other figures, replaced)" in result.stdout
    assert ("line 3: account mairie-elec: overlaps the stored bill 2023-11-01 to 2023-11-30 (imported from "
            "factures.csv) on 16 day(s) (2023-11-15 to 2023-11-30): counted twice (an invoice imported before)"
            ) in result.stderr
    assert len(_stored(influxdb_server.url, unique_name)) == len(bills) + 1

    # The reports read the stored bills: their overlap is said, naming both bills and their files.
    # (The inventory without its meters: only the bills are read, quickly.)
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    for site in raw["sites"]:
        for building in site["buildings"]:
            for key in ("points", "virtual_meters"):
                building.pop(key, None)
    bills_only = tmp_path / "bills-only.yaml"
    bills_only.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    operat = ["report", "operat", "--config", str(bills_only), "--from-influx", "--year", "2023", "--out",
              str(tmp_path / "operat-after.csv")]
    result = runner.invoke(app, operat)
    assert result.exit_code == 0, result.output
    overlap = ("warning: bills stored in InfluxDB: account mairie-elec: the stored bill 2023-11-15 to 2023-11-30 "
               "(imported from rectificatif.csv) overlaps the stored bill 2023-11-01 to 2023-11-30 (imported from "
               "factures.csv) on 16 day(s)")
    assert overlap in result.stderr

    # A corrected bill whose amount is emptied: the old amount does not stay (InfluxDB merges rewritten fields).
    corrections.write_text("account;start;end;consumption;unit;amount_eur\n"
                           "mairie-elec;2023-12-01;2023-12-31;1650;kWh;\n", encoding="utf-8")
    result = runner.invoke(app, ["import", "invoices", str(corrections), "--inventory", str(config)])
    assert result.exit_code == 0, result.output
    columns = _columns(influxdb_server.url, unique_name)
    december = next(r for r in _stored(influxdb_server.url, unique_name) if r[columns.index("consumption")] == 1650)
    assert december[columns.index("amount_eur")] is None

    # --replace: the file's bills replace every stored one of its accounts within its span (November and December).
    replacing = tmp_path / "novembre-decembre.csv"
    replacing.write_text("account;start;end;consumption;unit;amount_eur\n"
                         "mairie-elec;2023-11-01;2023-12-31;3100;kWh;600\n", encoding="utf-8")
    result = runner.invoke(app, ["import", "invoices", str(replacing), "--inventory", str(config), "--replace"])
    assert result.exit_code == 0, result.output
    assert "removed account mairie-elec: the stored bill 2023-11-15 to 2023-11-30 (imported from rectificatif.csv)" \
        in result.stdout
    assert "removed account mairie-elec: the stored bill 2023-12-01 to 2023-12-31" in result.stdout
    stored_now = _stored(influxdb_server.url, unique_name)
    assert len(stored_now) == len(bills) - 1
    assert sum(r[columns.index("consumption")] == 3100 for r in stored_now) == 1
    result = runner.invoke(app, operat)
    assert result.exit_code == 0, result.output
    assert "bills stored in InfluxDB" not in result.stderr


def test_import_with_influxdb_down_exits_4_and_a_bad_header_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECONOME_INFLUX_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("ECONOME_DATA_DIR", str(tmp_path / "data"))
    config = _inventory(tmp_path)
    invoices = tmp_path / "factures.csv"
    invoices.write_text(_csv(_bills()[:3]), encoding="utf-8")
    result = CliRunner().invoke(app, ["import", "invoices", str(invoices), "--inventory", str(config)])
    assert result.exit_code == 4, result.output
    # --replace deletes with InfluxQL: refused on InfluxDB 2.x before anything is written.
    for name, value in (("API", "v2"), ("TOKEN", "t"), ("ORG", "o"), ("BUCKET", "b")):
        monkeypatch.setenv(f"ECONOME_INFLUX_{name}", value)
    result = CliRunner().invoke(app, ["import", "invoices", str(invoices), "--inventory", str(config), "--replace"])
    assert result.exit_code == 2, result.output
    assert "--replace deletes stored bills on InfluxDB 1.x only" in result.stderr
    for name in ("API", "TOKEN", "ORG", "BUCKET"):
        monkeypatch.delenv(f"ECONOME_INFLUX_{name}")
    invoices.write_text("compte;debut;fin\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["import", "invoices", str(invoices), "--inventory", str(config)])
    assert result.exit_code == 2
    assert f"{invoices}: line 1: missing column(s) account, start, end, consumption, unit, amount_eur" in result.stderr
