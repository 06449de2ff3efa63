"""``econome report ... --out X.pdf``: the reports as PDF (WeasyPrint), read back with pypdfium2.

The figures the report prints are computed here from the CSV files written,
and looked for in the PDF's text; every character must sit inside the A4
page's margins (a table wider than the page would be cut on paper).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pypdfium2
import pytest
import typer
from typer.testing import CliRunner

from econome.cli_mv import register
from inventory import Energy, Inventory, Quantity, Usage, load_inventory

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "examples" / "commune.yaml"
START = datetime(2023, 9, 1, tzinfo=UTC)
DAYS = 730
A4_WIDTH_PT = 595.28
MARGIN_PT = 14 / 25.4 * 72  # the reports' @page margin, 14 mm


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture(scope="module")
def commune() -> Inventory:
    return load_inventory(CONFIG)


def _metered(inv: Inventory) -> list[tuple[str, str, Energy, float]]:
    """(building, point, energy, kWh per unit) of one metered point per building and energy, the general meter first."""
    out = []
    for _, building in inv.buildings():
        chosen: dict[Energy, tuple[int, str, float]] = {}
        for point in building.points:
            if point.energy is None or not point.cumulative:
                continue
            rank = 0 if point.usage in (Usage.GENERAL, Usage.WATER) else 1
            factor = point.conversion_kwh_per_unit if point.quantity is Quantity.GAS_VOLUME else 1.0
            factor = (factor or 1.0) * {"Wh": 1e-3, "L": 1e-3, "MWh": 1e3}.get(point.unit, 1.0)
            if point.energy not in chosen or rank < chosen[point.energy][0]:
                chosen[point.energy] = (rank, point.id, factor)
        out += [(building.id, pid, energy, factor) for energy, (_, pid, factor) in chosen.items()]
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, commune: Inventory) -> tuple[Path, dict[str, np.ndarray]]:
    """One readings CSV: a meter per building and energy, read at local midnight as an index; ecole-curie saves 30 %
    of its heating after its works.

    Returns the file and, per point, its daily consumption in kWh (water in m³).
    """
    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("data") / "readings.csv"
    tz = commune.organisation.tz
    midnights = [datetime.combine(START.date() + timedelta(days=i), time(), tz).isoformat() for i in range(DAYS + 1)]
    noons = [(START + timedelta(days=i, hours=11)).isoformat() for i in range(DAYS)]
    temp = 11 - 9 * np.cos(2 * np.pi * (np.arange(DAYS) - 140) / 365) + rng.normal(0, 2.5, DAYS)
    kwh: dict[str, np.ndarray] = {}
    rows = [f"{t},station-meteo-temperature,{v:.4f}\n" for t, v in zip(noons, temp.tolist(), strict=True)]
    for building, point, energy, factor in _metered(commune):
        if energy is Energy.WATER:
            daily = np.round(2 + rng.normal(0, 0.1, DAYS), 4)
        elif energy is Energy.ELECTRICITY:
            daily = np.round(120 + rng.normal(0, 5, DAYS), 4)
        else:
            daily = 100 + 60 * np.maximum(0, 15 - temp) + rng.normal(0, 20, DAYS)
            if building == "ecole-curie":
                daily[366:] *= 0.7
            daily = np.round(daily / factor, 4) * factor
        kwh[point] = daily
        index = np.concatenate([[1000.0], 1000.0 + np.cumsum(daily / factor)])
        rows += [f"{t},{point},{v:.6f}\n" for t, v in zip(midnights, index.tolist(), strict=True)]
    path.write_text("timestamp,point,value\n" + "".join(rows), encoding="utf-8")
    return path, kwh


def _month(values: np.ndarray, first: date, end: date) -> float:
    days = [START.date() + timedelta(days=i) for i in range(DAYS)]
    return float(sum(v for d, v in zip(days, values.tolist(), strict=True) if first <= d < end))


def _pdf(path: Path) -> tuple[int, str, list[float]]:
    """Page count, text (spaces of every kind removed) and the right and left edges of every character."""
    document = pypdfium2.PdfDocument(path)
    texts, edges = [], []
    try:
        for index in range(len(document)):
            page = document[index]
            assert page.get_width() == pytest.approx(A4_WIDTH_PT, abs=1)
            text = page.get_textpage()
            texts.append(text.get_text_range())
            for char in range(text.count_chars()):
                left, _, right, _ = text.get_charbox(char)
                if right > left:
                    edges += [left, right]
            text.close()
            page.close()
        return len(document), re.sub(r"\s", "", "".join(texts)), edges
    finally:
        document.close()


def _inside_margins(edges: list[float]) -> None:
    assert edges
    assert min(edges) >= MARGIN_PT - 1
    assert max(edges) <= A4_WIDTH_PT - MARGIN_PT + 1


def _digits(value: float) -> str:
    return f"{value:.0f}"


def test_building_and_renovation_reports_as_pdf(
    app: typer.Typer, data: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    folder, kwh = data
    common = ["--config", str(CONFIG), "--readings", str(folder)]
    runner = CliRunner()

    month = tmp_path / "curie-2025-01.pdf"
    args = ["report", "building", *common, "--building", "ecole-curie", "--month", "2025-01", "--out", str(month)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert month.read_bytes().startswith(b"%PDF-")
    pages, text, edges = _pdf(month)
    assert 1 <= pages <= 2
    _inside_margins(edges)
    assert "ÉcoleMarieCurie" in text
    assert "janvier2025" in text
    assert f"page1sur{pages}" in text
    jan = (date(2025, 1, 1), date(2025, 2, 1))
    gas = _month(kwh["ecole-curie-gas-volume"], *jan)
    elec = _month(kwh["ecole-curie-elec-energy"], *jan)
    water = _month(kwh["ecole-curie-water-volume"], *jan)
    for figure in (gas, elec, gas + elec):
        assert f"{_digits(figure)}kWh" in text, figure
    assert f"{_digits(water)}m³" in text

    reno = tmp_path / "curie-renovation.pdf"
    result = runner.invoke(app, ["report", "renovation", *common, "--building", "ecole-curie", "--out", str(reno)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.splitlines()[-1])
    pages, text, edges = _pdf(reno)
    assert 2 <= pages <= 3
    _inside_margins(edges)
    assert summary["savings_fraction"] == pytest.approx(0.3, abs=0.03)
    assert f"{100 * summary['savings_fraction']:.1f}%".replace(".", ",") in text
    assert f"{_digits(summary['savings_kwh'])}±" in text
    assert f"{_digits(summary['actual_kwh'])}kWh" in text


def test_portfolio_report_as_pdf_keeps_its_wide_table_on_the_page(
    app: typer.Typer, data: tuple[Path, dict[str, np.ndarray]], commune: Inventory, tmp_path: Path
) -> None:
    folder, kwh = data
    out = tmp_path / "portfolio-2024.pdf"
    result = CliRunner().invoke(app, ["report", "portfolio", "--config", str(CONFIG), "--readings", str(folder), "--year", "2024",
                                      "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    pages, text, edges = _pdf(out)
    assert 1 <= pages <= 3
    _inside_margins(edges)
    year = (date(2024, 1, 1), date(2025, 1, 1))
    metered = _metered(commune)
    total = sum(_month(kwh[p], *year) for _, p, e, _ in metered if e is not Energy.WATER)
    area = sum(b.heated_area_m2 for _, b in commune.buildings())
    assert f"Patrimoine{_digits(area)}" in text
    assert _digits(total) in text
    for _, building in commune.buildings():
        assert re.sub(r"\s", "", building.name) in text


def _many_buildings(count: int) -> str:
    """A commune of ``count`` schools, each with an electricity counter, and a weather station."""
    buildings = "".join(
        f"""
  - id: ecole-{i:02d}
    name: École numéro {i:02d}
    usage: school
    floor_area_m2: {800 + 10 * i}
    heated_area_m2: {700 + 10 * i}
    points:
    - {{id: ecole-{i:02d}-elec, quantity: active_energy, unit: kWh, usage: general, cumulative: true, energy: electricity,
       mqtt: {{topic: t/{i}/elec, format: plain}}}}"""
        for i in range(count)
    )
    return f"""organisation: {{name: Commune de Grandval, population: 52000, timezone: Europe/Paris, school_holiday_zone: B}}
mqtt_brokers:
- {{id: default, host: 127.0.0.1, port: 1883}}
sites:
- id: ville
  name: Ville
  buildings:{buildings}
  - id: station
    name: Station météo
    usage: workshop
    floor_area_m2: 10
    heated_area_m2: 10
    points:
    - {{id: station-temperature, quantity: temperature, unit: degC, usage: weather, mqtt: {{topic: t/meteo, format: plain}}}}
"""


def _page_texts(path: Path) -> list[str]:
    document = pypdfium2.PdfDocument(path)
    try:
        texts = []
        for index in range(len(document)):
            page = document[index]
            text = page.get_textpage()
            texts.append(text.get_text_range())
            text.close()
            page.close()
        return texts
    finally:
        document.close()


def test_a_portfolio_of_many_buildings_repeats_its_table_header_on_every_page(app: typer.Typer, tmp_path: Path) -> None:
    """80 buildings (the review saw it with 48): page 1 starts the table, each page that holds rows starts with the header."""
    count = 80
    config = tmp_path / "grandval.yaml"
    config.write_text(_many_buildings(count), encoding="utf-8")
    tz = load_inventory(config).organisation.tz
    days = 60  # two months of 2025: the report counts the rest as missing days
    midnights = [datetime.combine(date(2025, 1, 1) + timedelta(days=d), time(), tz).isoformat() for d in range(days + 1)]
    rows = [f"{t},station-temperature,{5 + d % 7}\n" for d, t in enumerate(midnights)]
    rows += [f"{t},ecole-{i:02d}-elec,{1000 + (100 + i) * d}\n" for i in range(count) for d, t in enumerate(midnights)]
    readings = tmp_path / "readings.csv"
    readings.write_text("timestamp,point,value\n" + "".join(rows), encoding="utf-8")
    out = tmp_path / "big.pdf"
    result = CliRunner().invoke(app, ["report", "portfolio", "--config", str(config), "--readings", str(readings),
                                      "--year", "2025", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    pages = [re.sub(r"\s", "", text) for text in _page_texts(out)]
    header = "Bâtimentm²chauffés"
    holding_rows = [n for n, text in enumerate(pages) if re.search(r"Écolenuméro\d\d", text)]
    assert len(holding_rows) >= 2, "80 buildings fill more than one page"
    assert holding_rows[0] == 0, "page 1 starts the table (no mostly empty first page)"
    assert holding_rows == list(range(holding_rows[0], holding_rows[-1] + 1))
    for n in holding_rows:
        assert header in pages[n], f"page {n + 1} holds rows of the table but no header row"
    for i in range(count):  # every building printed, once
        assert sum(text.count(f"Écolenuméro{i:02d}") for text in pages) == 1, i
    assert f"Patrimoine{sum(700 + 10 * i for i in range(count))}" in "".join(pages).replace("\u202f", "")
