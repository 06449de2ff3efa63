from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from dashboards.operat import (
    COLUMNS,
    EFA_ID,
    ENERGY_COLUMNS,
    GAP_2030,
    INTENSITY,
    OBJECTIVE_COLUMNS,
    SUBJECT,
    SUBJECT_SITE_AREA,
    operat_rows,
    write_operat_csv,
)
from inventory import Building, Energy, Site


def _building(area: float, id: str = "gymnase", usage: str = "gymnasium", operat_id: str | None = None) -> Building:
    return Building(id=id, name=id.title(), usage=usage, floor_area_m2=area, heated_area_m2=area * 0.9,
                    operat_id=operat_id)


def _site(*buildings: Building, id: str = "sports") -> Site:
    return Site(id=id, name=id.title(), address=f"1 rue {id}", buildings=list(buildings))


def test_trajectory_and_energies(tmp_path: Path) -> None:
    used = {"gymnase": {Energy.ELECTRICITY: 50_000.0, Energy.NATURAL_GAS: 100_000.0, Energy.WATER: 900.0}}
    ref = {"gymnase": {Energy.ELECTRICITY: 60_000.0, Energy.NATURAL_GAS: 140_000.0}}
    rows = operat_rows([_site(_building(2000, operat_id="EFA-123"))], 2025, used, 2019, ref)
    row = rows[0]
    assert row[EFA_ID] == "EFA-123"
    assert row["Adresse"] == "1 rue sports"
    assert row[ENERGY_COLUMNS[Energy.NATURAL_GAS]] == "100000"
    assert row["Consommation totale (kWh EF)"] == "150000"  # water is not declared
    assert [row[OBJECTIVE_COLUMNS[y]] for y in (2030, 2040, 2050)] == ["120000", "100000", "80000"]
    assert row[SUBJECT] == "oui"
    path = tmp_path / "operat.csv"
    text = write_operat_csv(rows, path)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    parsed = list(csv.DictReader(io.StringIO(text), delimiter=";"))
    assert list(parsed[0]) == COLUMNS
    # Decimal commas, for French spreadsheets: 150,000 kWh on 2,000 m², 20 % left to do.
    assert (parsed[0][GAP_2030], parsed[0][INTENSITY]) == ("20,0", "75,0")


def test_subjection_is_per_site_and_small_sites_can_be_dropped() -> None:
    library = _building(650, "bibliotheque", "library")
    town_hall = _building(400, "mairie", "town_hall")
    church = _building(900, "eglise", "church")
    school = _building(900, "ecole", "school")
    sites = [_site(library, town_hall, id="centre"), _site(school, church, id="nord")]
    rows = {r["Référence interne"]: r for r in operat_rows(sites, 2025, {}, 2019, {})}
    # 650 + 400 m² on one site: both subject; a church does not make the school's site reach 1,000 m².
    assert {b: (r[SUBJECT], r[SUBJECT_SITE_AREA]) for b, r in rows.items()} == {
        "bibliotheque": ("oui", "1050"), "mairie": ("oui", "1050"), "ecole": ("non", "900"), "eglise": ("non", "900"),
    }
    assert rows["ecole"]["Objectif 2030 (kWh EF, -40 %)"] == ""
    kept = operat_rows(sites, 2025, {}, 2019, {}, only_subject=True)
    assert [r["Référence interne"] for r in kept] == ["bibliotheque", "mairie"]


def test_the_default_heating_shares_are_those_docs_mv_states() -> None:
    from dashboards.operat import DEFAULT_HEATING_SHARE

    text = " ".join((Path(__file__).resolve().parents[3] / "docs" / "mv.md").read_text(encoding="utf-8").split())
    stated = {Energy.NATURAL_GAS: 0.8, Energy.FUEL_OIL: 0.8, Energy.WOOD_PELLETS: 0.9, Energy.HEATING_NETWORK: 0.9,
              Energy.ELECTRICITY: 0.0}
    assert "(gas and fuel oil 80 %, pellets and heating network 90 %, electricity 0 %;" in text
    assert DEFAULT_HEATING_SHARE == stated


def test_a_climate_adjustment_moves_the_2030_gap_to_the_adjusted_consumption() -> None:
    from dashboards.operat import ADJUSTED_KWH, ADJUSTMENT_METHOD, GAP_2030_ADJUSTED, ClimateAdjustment

    site = _site(_building(1200, id="mairie", usage="town_hall"))
    # Half heating, a year 20 % milder than the reference: 80,000 kWh are 90,000 at the reference's climate.
    adjustment = ClimateAdjustment(0.5, 2000.0, 2400.0, "test")
    rows = operat_rows([site], 2025, {"mairie": {Energy.NATURAL_GAS: 80000.0}}, 2019,
                       {"mairie": {Energy.NATURAL_GAS: 120000.0}}, adjustments={"mairie": adjustment})
    assert rows[0][ADJUSTED_KWH] == "88000"  # 40,000 + 40,000 × 2400 / 2000
    # Review 14-M2 #11: the raw gap keeps its meaning, the adjusted one has its own column.
    assert rows[0][GAP_2030_ADJUSTED] == "18,2"  # (88,000 − 72,000) / 88,000
    assert rows[0][GAP_2030] == "10,0"  # (80,000 − 72,000) / 80,000
    assert rows[0][ADJUSTMENT_METHOD].startswith("test ; aperçu : l'année ramenée au climat de l'année de référence")
    unadjusted = operat_rows([site], 2025, {"mairie": {Energy.NATURAL_GAS: 80000.0}}, 2019,
                             {"mairie": {Energy.NATURAL_GAS: 120000.0}})
    assert unadjusted[0][GAP_2030] == "10,0"
    assert unadjusted[0][GAP_2030_ADJUSTED] == ""
    assert unadjusted[0][ADJUSTED_KWH] == ""


def test_the_heating_and_cooling_parts_of_a_fitted_model_are_those_the_data_were_made_with() -> None:
    from datetime import date, timedelta

    import numpy as np

    from dashboards.operat import weather_shares
    from mv.baseline import DailyChangePointBaseline, DailyObservations

    rng = np.random.default_rng(3)
    days = [date(2024, 1, 1) + timedelta(days=d) for d in range(366)]
    temp = 13 - 11 * np.cos(2 * np.pi * (np.arange(366) - 15) / 366) + rng.normal(0, 2.0, 366)
    heating, cooling = 12 * np.maximum(0, 15 - temp), 9 * np.maximum(0, temp - 21)
    energy = 80 + heating + cooling + rng.normal(0, 4, 366)
    obs = DailyObservations.build(days, energy, temp)
    shares = weather_shares(DailyChangePointBaseline().fit(obs), obs)
    assert shares is not None
    assert shares[0] == pytest.approx(heating.sum() / energy.sum(), abs=0.03)
    assert shares[1] == pytest.approx(cooling.sum() / energy.sum(), abs=0.02)
    assert shares[1] > 0.02


def test_year_degree_days_follow_the_professionals_method_of_the_arrete() -> None:
    # Review 14-M2: days crossing the base count the part below it (annex III), not max(0, 18 − mean) = 1.
    from datetime import date, timedelta

    from dashboards.operat import year_degree_days
    from mv.degreedays import DailyTemperature

    days = [DailyTemperature(date(2023, 1, 1) + timedelta(days=d), 12.0, 22.0, 17.0, 1.0, False) for d in range(365)]
    dju, djc = year_degree_days(days, 2023)
    assert dju == pytest.approx(365 * 6 * (0.08 + 0.42 * 6 / 10))
    assert djc == pytest.approx(365 * 4 * (0.08 + 0.42 * 4 / 10))
