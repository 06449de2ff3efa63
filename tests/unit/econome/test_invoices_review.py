"""Issue 14, review of part M (14-M2): invoices and the OPERAT export on the cases a hostile review found.

A town hall whose electricity supplier changed on 1 July 2015, a school that
went from fuel oil to gas on 1 July 2015, a reference year before 2010, a
subject building without its OPERAT identifier: ``report operat --invoices``.
"""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dashboards.operat import (
    ADJUSTMENT_METHOD,
    DJU_REFERENCE,
    DJU_YEAR,
    EFA_ID,
    GAP_2030_NORMAL,
    INTERNAL_REF,
    NORMAL_ADJUSTED_KWH,
    NORMAL_DJU,
    NORMAL_REFERENCE_KWH,
    REFERENCE_KWH,
    REFERENCE_YEAR,
)
from econome.cli import app
from inventory import Energy, Inventory

INVENTORY = {
    "organisation": {"name": "Commune de Test", "population": 900, "timezone": "Europe/Paris",
                     "school_holiday_zone": "C"},
    "sites": [
        {"id": "centre", "name": "Centre", "address": "1 place, 01000 Test", "buildings": [
            {"id": "mairie", "operat_id": "EFA-1", "name": "Mairie", "usage": "town_hall", "floor_area_m2": 1000,
             "heated_area_m2": 900, "invoices": [
                 {"id": "m-elec", "energy": "electricity"},
                 {"id": "m-gaz", "energy": "natural_gas", "conversion_kwh_per_unit": 11.0},
                 {"id": "m-elec2", "energy": "electricity", "name": "nouveau fournisseur"}]}]},
        {"id": "ecoles", "name": "Ecoles", "address": "rue", "buildings": [
            {"id": "ecole", "name": "Ecole", "usage": "school", "floor_area_m2": 1200, "heated_area_m2": 1200,
             "invoices": [{"id": "e-fioul", "energy": "fuel_oil", "conversion_kwh_per_unit": 10.0},
                          {"id": "e-gaz", "energy": "natural_gas", "conversion_kwh_per_unit": 11.0}]}]},
    ],
}

HEADER = "account;start;end;consumption;unit;amount_eur;estimated;reference\n"


def _operat(tmp_path: Path, bills: str, *extra: str) -> tuple[int, str, dict[str, dict[str, str]]]:
    config = tmp_path / "inv.yaml"
    config.write_text(yaml.safe_dump(INVENTORY, allow_unicode=True), encoding="utf-8")
    invoices = tmp_path / "factures.csv"
    invoices.write_text(HEADER + bills, encoding="utf-8")
    out = tmp_path / "operat.csv"
    result = CliRunner().invoke(app, ["report", "operat", "--config", str(config), "--invoices", str(invoices),
                                      "--year", "2024", "--out", str(out), *extra])
    rows = {}
    if result.exit_code == 0:
        rows = {r[INTERNAL_REF]: r for r in csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig")),
                                                            delimiter=";")}
    return result.exit_code, result.output, rows


def test_a_change_of_supplier_or_of_energy_within_the_reference_year_keeps_it_complete(tmp_path: Path) -> None:
    # Review #3 (/tmp/rc/k1.csv): 2015 billed by two electricity accounts, the school's fuel oil then gas.
    code, output, rows = _operat(tmp_path, (
        "m-elec;01/01/2014;31/12/2014;100000;kWh;;non;\n"
        "m-elec;01/01/2015;30/06/2015;50000;kWh;;non;\n"
        "m-elec2;01/07/2015;31/12/2015;60000;kWh;;non;\n"
        "m-elec2;01/01/2016;31/12/2016;90000;kWh;;non;\n"
        "m-elec2;01/01/2024;31/12/2024;80000;kWh;;non;\n"
        "e-fioul;01/01/2014;31/12/2014;15000;L;;non;\n"
        "e-fioul;01/01/2015;30/06/2015;10000;L;;non;\n"
        "e-gaz;01/07/2015;31/12/2016;20000;m3;;non;\n"
        "e-gaz;01/01/2024;31/12/2024;10000;m3;;non;\n"))
    assert code == 0, output
    assert (rows["mairie"][REFERENCE_YEAR], rows["mairie"][REFERENCE_KWH]) == ("2015", "110000")
    # 2015: 100,000 kWh of fuel oil and 184/550 of the gas bill beat 2014's 150,000 kWh of fuel oil.
    assert (rows["ecole"][REFERENCE_YEAR], rows["ecole"][REFERENCE_KWH]) == ("2015", str(100000 + 20000 * 11 * 184 // 550))
    code, output, rows = _operat(tmp_path, (
        "m-elec;01/01/2015;30/06/2015;50000;kWh;;non;\n"
        "m-elec2;01/07/2015;31/12/2015;60000;kWh;;non;\n"
        "m-elec2;01/01/2024;31/12/2024;80000;kWh;;non;\n"
        "e-fioul;01/01/2015;30/06/2015;10000;L;;non;\n"
        "e-gaz;01/07/2015;31/12/2015;5000;m3;;non;\n"
        "e-gaz;01/01/2024;31/12/2024;10000;m3;;non;\n"), "--reference-year", "2015")
    assert code == 0, output
    assert rows["ecole"][REFERENCE_KWH] == str(100000 + 55000)


def test_the_automatic_reference_year_is_one_the_export_accepts(tmp_path: Path) -> None:
    # Review #4 (/tmp/rc/f2.csv): gas billed in 2012, electricity only from 2013: 2012 was chosen, then refused.
    code, output, rows = _operat(tmp_path, (
        "m-gaz;01/01/2012;31/12/2012;20 000;m3;;non;\n"
        "m-gaz;01/01/2013;31/12/2013;9 000;m3;;non;\n"
        "m-gaz;01/01/2024;31/12/2024;5000;m3;;non;\n"
        "m-elec;01/01/2013;31/12/2013;100 000;kWh;;non;\n"
        "m-elec;01/01/2024;31/12/2024;80 000;kWh;;non;\n"))
    assert code == 0, output
    assert (rows["mairie"][REFERENCE_YEAR], rows["mairie"][REFERENCE_KWH]) == ("2012", "220000")
    assert ("warning: mairie: no electricity in the reference year 2012 (its bills start later: counted as not "
            "supplied then; if it was, enter those bills)") in output


@pytest.mark.parametrize("report", ["operat", "portfolio"])
def test_a_reference_year_before_2010_exits_2(tmp_path: Path, report: str) -> None:
    # Review #5.
    config = tmp_path / "inv.yaml"
    config.write_text(yaml.safe_dump(INVENTORY, allow_unicode=True), encoding="utf-8")
    invoices = tmp_path / "factures.csv"
    invoices.write_text(HEADER + "m-elec;01/01/2024;31/12/2024;80000;kWh;;non;\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["report", report, "--config", str(config), "--invoices", str(invoices),
                                      "--year", "2024", "--out", str(tmp_path / "out.csv"), "--reference-year", "2009"])
    assert result.exit_code == 2
    said = " ".join(result.output.replace("│", " ").split())
    assert "Invalid value for '--reference-year': Input should be greater than or equal to 2010" in said


def test_a_subject_building_without_operat_id_is_warned(tmp_path: Path) -> None:
    # Review #9: the school (1,200 m²) has no operat_id.
    code, output, rows = _operat(tmp_path, "m-elec;01/01/2024;31/12/2024;80000;kWh;;non;\n"
                                           "e-fioul;01/01/2024;31/12/2024;8000;L;;non;\n", "--reference-year", "2024",
                                 "--allow-incomplete")
    assert code == 0, output
    assert rows["ecole"][EFA_ID] == ""
    assert ("warning: 1 subject building(s) without operat_id in the inventory, exported with an empty EFA "
            "identifier (give the one of the OPERAT platform): ecole") in output


def test_temperatures_from_a_meteo_france_file_with_station(tmp_path: Path) -> None:
    # Review #6: the département file of meteo.data.gouv.fr; DJU 2015 = 365 × (18 − 6), 2024 = 366 × (18 − 8).
    lines = ["NUM_POSTE;NOM_USUEL;LAT;LON;ALTI;AAAAMMJJ;RR;QRR;TN;QTN;HTN;QHTN;TX;QTX\n"]
    for number, name, shift in (("41018001", "BLOIS", 0), ("41269001", "ROMORANTIN", 3)):
        for year, tn, tx in ((2015, 2, 10), (2024, 4, 12)):
            day = date(year, 1, 1)
            while day.year == year:
                lines.append(f"{number};{name};47;1;100;{day:%Y%m%d};0;1;{tn + shift};1;;;{tx + shift};1\n")
                day += timedelta(days=1)
    station_file = tmp_path / "Q_41.csv"
    station_file.write_text("".join(lines), encoding="utf-8")
    bills = ("m-elec;01/01/2015;31/12/2015;100000;kWh;;non;\n"
             "m-gaz;01/01/2015;31/12/2015;10000;m3;;non;\n"
             "m-elec;01/01/2024;31/12/2024;80000;kWh;;non;\n"
             "m-gaz;01/01/2024;31/12/2024;8000;m3;;non;\n")
    code, output, _ = _operat(tmp_path, bills, "--temperatures", str(station_file))
    assert code == 2
    assert "2 stations in this Météo-France file, choose one with --station NUM_POSTE: 41018001 BLOIS, " \
           "41269001 ROMORANTIN" in " ".join(output.split())
    code, output, rows = _operat(tmp_path, bills, "--temperatures", str(station_file), "--station", "41018001")
    assert code == 0, output
    assert (rows["mairie"][DJU_YEAR], rows["mairie"][DJU_REFERENCE]) == (str(366 * 10), str(365 * 12))
    assert rows["mairie"][NORMAL_ADJUSTED_KWH] == ""
    assert "aperçu : l'année ramenée au climat de l'année de référence" in rows["mairie"][ADJUSTMENT_METHOD]

    # --normal-dju: both years brought to the station's mean DJU 2000-2019, as the arrêté does (default shares).
    code, output, rows = _operat(tmp_path, bills, "--temperatures", str(station_file), "--station", "41018001",
                                 "--normal-dju", "4000")
    assert code == 0, output
    used, reference = 80000 + 8000 * 11.0, 100000 + 10000 * 11.0
    share = 0.8 * 8000 * 11.0 / used
    year_normal = used * (1 - share) + used * share * 4000 / (366 * 10)
    reference_normal = reference * (1 - share) + reference * share * 4000 / (365 * 12)
    mairie = rows["mairie"]
    assert (mairie[NORMAL_DJU], mairie[NORMAL_ADJUSTED_KWH], mairie[NORMAL_REFERENCE_KWH]) == (
        "4000", str(round(year_normal)), str(round(reference_normal)))
    gap = 100 * (year_normal - 0.6 * reference_normal) / year_normal
    assert mairie[GAP_2030_NORMAL] == f"{gap:.1f}".replace(".", ",")
    assert "DJU normaux 2000-2019 de la station : 4000 (--normal-dju)" in mairie[ADJUSTMENT_METHOD]


def test_the_portfolio_cost_comes_from_the_bills_amounts_and_estimated_reference_bills_are_warned(
    tmp_path: Path,
) -> None:
    # Review #7: electricity billed 1,200.50 + 800 € in 2024; gas bills without an amount: the inventory's tariff.
    bills = ("m-elec;01/01/2015;31/12/2015;100000;kWh;9000;oui;\n"
             "m-gaz;01/01/2015;31/12/2015;10000;m3;;oui;\n"
             "m-elec;01/01/2024;30/06/2024;40000;kWh;1 200,50;non;\n"
             "m-elec;01/07/2024;31/12/2024;40000;kWh;800;non;\n"
             "m-gaz;01/01/2024;31/12/2024;8000;m3;;non;\n")
    config = tmp_path / "inv.yaml"
    config.write_text(yaml.safe_dump(INVENTORY, allow_unicode=True), encoding="utf-8")
    invoices = tmp_path / "factures.csv"
    invoices.write_text(HEADER + bills, encoding="utf-8")
    out = tmp_path / "bilan.html"
    result = CliRunner().invoke(app, ["report", "portfolio", "--config", str(config), "--invoices", str(invoices),
                                      "--year", "2024", "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    row = page[page.index("<td>Mairie"):].split("</tr>")[0]
    cells = [c.split("</td>")[0] for c in row.split("<td>")[1:]]
    cost = cells[7]
    assert cost.endswith("\u1da0")
    gas_tariff = Inventory.model_validate(INVENTORY).tariff(Energy.NATURAL_GAS).price_eur_per_unit
    expected = 1200.5 + 800 + 8000 * 11.0 * gas_tariff
    assert float("".join(ch for ch in cost if ch.isdigit())) == pytest.approx(expected, abs=1)
    assert "montants des factures (au prorata des jours de l'année)" in page

    code, output, _ = _operat(tmp_path, bills)
    assert code == 0, output
    assert "warning: mairie: the reference year 2015 is known only from estimated bills" in output
    code, output, _ = _operat(tmp_path, bills.replace("9000;oui", "9000;non"))
    assert "known only from estimated bills" not in output


def test_a_reference_year_before_every_bill_is_refused_as_without_data(tmp_path: Path) -> None:
    # An energy is not missing outside its bills' span, but a building with no bill at all that year has no data.
    code, output, _ = _operat(tmp_path, "m-elec;01/01/2015;31/12/2015;100000;kWh;;non;\n"
                                        "m-elec;01/01/2024;31/12/2024;80000;kWh;;non;\n", "--reference-year", "2012")
    assert code == 3, output
    assert "the reference year 2012 has days without data (mairie without any)" in " ".join(output.split())
