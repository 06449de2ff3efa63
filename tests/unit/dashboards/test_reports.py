from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from dashboards.reports import BuildingYear, EnergySeries, building_month_report, portfolio_report, renovation_report
from inventory import Energy, Inventory, load_inventory
from mv.baseline import DailyChangePointBaseline, DailyObservations
from mv.degreedays import DailyTemperature, degree_days
from mv.savings import avoided_consumption, performance_gap

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def commune() -> Inventory:
    return load_inventory(ROOT / "examples" / "commune.yaml")


def _days(n: int) -> list[date]:
    return [date(2023, 9, 1) + timedelta(days=i) for i in range(n)]


def _temps(n: int) -> np.ndarray:
    return 11 - 9 * np.cos(2 * np.pi * (np.arange(n) - 140) / 365) + np.random.default_rng(0).normal(0, 2, n)


def _images(html: str) -> int:
    return len(re.findall(r'<img class="chart" alt="graphique" src="data:image/png;base64,[A-Za-z0-9+/=]{200,}">', html))


def test_month_report(commune: Inventory) -> None:
    n = 520
    days, temp = _days(n), _temps(n)
    gas = EnergySeries(Energy.NATURAL_GAS, tuple(days), 50 + 30 * np.maximum(0, 15 - temp))
    water = EnergySeries(Energy.WATER, tuple(days), np.full(n, 2.0))
    dts = [DailyTemperature(d, t - 4, t + 4, t, 1.0, False) for d, t in zip(days, temp.tolist(), strict=True)]
    html = building_month_report(
        commune, commune.building("ecole-curie"), 2025, 1, [gas, water], degree_days(dts), {d.day: d.mean_c for d in dts}
    )
    assert html.startswith("<!DOCTYPE html>")
    assert "rapport de janvier 2025" in html
    assert "DJU" in html
    assert _images(html) == 1


def test_renovation_report_with_alert(commune: Inventory) -> None:
    n = 730
    days, temp = _days(n), _temps(n)
    energy = 80 + 40 * np.maximum(0, 15 - temp) + np.random.default_rng(1).normal(0, 10, n)
    energy[366:] *= 0.85
    obs = DailyObservations.build(days, energy, temp)
    building = commune.building("ecole-curie")
    works = building.renovations[0]
    model = DailyChangePointBaseline().fit(obs.select(date(2023, 9, 1), works.date))
    report = avoided_consumption(model, obs.select(works.date, date(2025, 9, 1)))
    alert = performance_gap(report, works, building_id=building.id)
    assert alert is not None
    html = renovation_report(
        commune, building, works, Energy.NATURAL_GAS, report, alert, (temp[:366], energy[:366]), (temp[366:], energy[366:])
    )
    assert "Alerte écart de performance" in html
    assert "en deçà des 40\u00a0%" in html
    assert "CV(RMSE)" in html
    assert _images(html) == 3


def test_portfolio_report(commune: Inventory) -> None:
    rows = [
        BuildingYear(b, {Energy.ELECTRICITY: 50_000.0, Energy.NATURAL_GAS: 80_000.0, Energy.WATER: 300.0})
        for _, b in commune.buildings()
    ]
    rows[0] = BuildingYear(rows[0].building, rows[0].by_energy, 3, ((Energy.NATURAL_GAS, 10_000.0),))
    html = portfolio_report(commune, 2025, rows)
    assert "€/hab." in html
    assert "Coût de l'inaction" in html
    assert "Hôtel de ville *" in html  # incomplete data flagged
    assert _images(html) == 1  # no building said subject to the décret: no cost of inaction, no chart
    subject = [BuildingYear(r.building, r.by_energy, subject=True, reference_kwh=200_000.0) for r in rows]
    assert _images(portfolio_report(commune, 2025, subject, reference_year=2019)) == 2


def test_a_month_under_way_compares_the_same_days_and_small_volumes_keep_a_decimal(commune: Inventory) -> None:
    # Issue 13 review: "0 m³ … 1 €" in a partial month, and "21 DJU (302 en 2025)", a part of a month against a whole one.
    days = [date(2024, 12, 1) + timedelta(days=i) for i in range(365 + 10)]  # December 2024, then 1-10 December 2025
    days = [d for d in days if d < date(2025, 1, 1) or d >= date(2025, 12, 1)]
    temp = np.full(len(days), 8.0)  # 10 DJU a day
    gas = EnergySeries(Energy.NATURAL_GAS, tuple(days), np.full(len(days), 300.0))
    water = EnergySeries(Energy.WATER, tuple(days), np.full(len(days), 0.3))
    dts = [DailyTemperature(d, t - 4, t + 4, t, 1.0, False) for d, t in zip(days, temp.tolist(), strict=True)]
    html = building_month_report(commune, commune.building("ecole-curie"), 2025, 12, [gas, water], degree_days(dts))
    assert "sur 10\u00a0jours (100 les mêmes jours de 2024)" in html
    assert "310 en 2024" not in html
    assert "<td>3,0\u00a0m³</td>" in html  # ten days of 0.3 m³, not "3 m³" or "0 m³"
    assert "<td>9,3\u00a0m³</td>" in html  # December 2024
    # A whole month is still compared with the whole month before.
    whole = building_month_report(commune, commune.building("ecole-curie"), 2024, 12, [gas, water], degree_days(dts))
    assert "sur 10" not in whole
