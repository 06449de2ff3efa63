from __future__ import annotations

import csv
import io
from pathlib import Path

from dashboards.operat import COLUMNS, ENERGY_COLUMNS, OBJECTIVE_COLUMNS, operat_rows, write_operat_csv
from inventory import Building, Energy


def _building(area: float) -> Building:
    return Building(id="gymnase", name="Gymnase", usage="gymnasium", floor_area_m2=area, heated_area_m2=area * 0.9)


def test_trajectory_and_energies(tmp_path: Path) -> None:
    used = {"gymnase": {Energy.ELECTRICITY: 50_000.0, Energy.NATURAL_GAS: 100_000.0, Energy.WATER: 900.0}}
    ref = {"gymnase": {Energy.ELECTRICITY: 60_000.0, Energy.NATURAL_GAS: 140_000.0}}
    rows = operat_rows([_building(2000)], 2025, used, 2019, ref, efa_ids={"gymnase": "EFA-123"})
    row = rows[0]
    assert row["Identifiant EFA OPERAT"] == "EFA-123"
    assert row[ENERGY_COLUMNS[Energy.NATURAL_GAS]] == "100000"
    assert row["Consommation totale (kWh EF)"] == "150000"  # water is not declared
    assert [row[OBJECTIVE_COLUMNS[y]] for y in (2030, 2040, 2050)] == ["120000", "100000", "80000"]
    assert row["Assujettie (≥ 1000 m²)"] == "oui"
    path = tmp_path / "operat.csv"
    text = write_operat_csv(rows, path)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    parsed = list(csv.DictReader(io.StringIO(text), delimiter=";"))
    assert list(parsed[0]) == COLUMNS
    assert parsed[0]["Réduction restant à faire pour 2030 (%)"] == "20.0"


def test_small_buildings_flagged_or_dropped() -> None:
    rows = operat_rows([_building(500)], 2025, {}, 2019, {})
    assert rows[0]["Assujettie (≥ 1000 m²)"] == "non"
    assert rows[0]["Objectif 2030 (kWh EF, -40 %)"] == ""
    assert operat_rows([_building(500)], 2025, {}, 2019, {}, only_subject=True) == []
