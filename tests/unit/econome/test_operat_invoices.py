"""Issue 14, part M: a building with meters for the year and only bills for its reference year.

The Curie school is metered from September 2023 (gas for heating, electricity
flat) and has its bills of 2012 and 2013. ``report operat --year 2024`` takes
2024 from the meters and the reference year from the bills (the year with the
most kWh per m², or the inventory's ``operat_reference_year``); the heating
share of the climate adjustment is the weather-sensitive part of the M&V
model of the meters, close to the heating part the data were made with.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dashboards.operat import (
    ADJUSTED_KWH,
    ADJUSTMENT_METHOD,
    DJC_REFERENCE,
    DJC_YEAR,
    HEATING_SHARE,
    REFERENCE_KWH,
    REFERENCE_SOURCE,
    REFERENCE_YEAR,
    SOURCE,
    TOTAL_KWH,
)
from econome.cli import app

ROOT = Path(__file__).resolve().parents[3]
START = datetime(2023, 9, 1, tzinfo=UTC)
DAYS = 700


def _inventory(tmp_path: Path, reference_year: int | None) -> Path:
    raw = yaml.safe_load((ROOT / "examples" / "commune.yaml").read_text(encoding="utf-8"))
    for site in raw["sites"]:
        for building in site["buildings"]:
            if building["id"] == "ecole-curie":
                building["invoices"] = [{"id": "curie-elec", "energy": "electricity"},
                                        {"id": "curie-gaz", "energy": "natural_gas", "conversion_kwh_per_unit": 11.0}]
                if reference_year is not None:
                    building["operat_reference_year"] = reference_year
    path = tmp_path / f"commune-{reference_year}.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_meters_for_the_year_bills_for_the_reference_and_the_share_from_the_model(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    stamps = [START + timedelta(days=i, hours=11) for i in range(DAYS)]
    temp = 11 - 9 * np.cos(2 * np.pi * (np.arange(DAYS) - 140) / 365) + rng.normal(0, 2.0, DAYS)
    weather_kwh = 60 * np.maximum(0, 15 - temp)
    gas_kwh = 100 + weather_kwh + rng.normal(0, 10, DAYS)
    elec_kwh = 120 + rng.normal(0, 5, DAYS)
    columns = {"station-meteo-temperature": temp, "ecole-curie-gas-volume": 5000 + np.cumsum(gas_kwh / 11.2),
               "ecole-curie-elec-energy": np.cumsum(elec_kwh)}
    readings = tmp_path / "readings.csv"
    readings.write_text("timestamp,point,value\n" + "".join(
        f"{t.isoformat()},{p},{v[i]:.4f}\n" for p, v in columns.items() for i, t in enumerate(stamps)))
    # The M&V model counts the same days as the report: each index is the consumption up to 11:00 UTC.
    in_2024 = np.array([date(2024, 1, 1) <= (t - timedelta(days=1)).date() < date(2025, 1, 1) for t in stamps])
    share = weather_kwh[in_2024].sum() / (gas_kwh[in_2024].sum() + elec_kwh[in_2024].sum())

    bills = ["account;start;end;consumption;unit;amount_eur"]
    bills += [f"curie-elec;{y}-01-01;{y}-12-31;{kwh};kWh;" for y, kwh in ((2012, 60000), (2013, 50000))]
    bills += [f"curie-gaz;{y}-01-01;{y}-12-31;{m3};m3;" for y, m3 in ((2012, 9000), (2013, 9500))]
    invoices = tmp_path / "factures.csv"
    invoices.write_text("\n".join(bills) + "\n", encoding="utf-8")
    temperatures = tmp_path / "dju.csv"
    # Daily Tn and Tx (as Météo-France gives them) for the years the readings do not hold, and for 2024 since
    # one reading a day gives no Tn/Tx: DJU 2012 = 366 × (18 - 7), 2024 = 366 × (18 - 9).
    days = [date(2012, 1, 1) + timedelta(days=d) for d in range(731)]
    lines = [f"{d},3,11\n" for d in days] + [f"{date(2024, 1, 1) + timedelta(days=d)},5,13\n" for d in range(366)]
    temperatures.write_text("date,tmin,tmax\n" + "".join(lines), encoding="utf-8")

    runner = CliRunner()
    rows = {}
    for fixed in (None, 2013):
        out = tmp_path / f"operat-{fixed}.csv"
        result = runner.invoke(app, ["report", "operat", "--config", str(_inventory(tmp_path, fixed)),
                                     "--readings", str(readings), "--invoices", str(invoices),
                                     "--temperatures", str(temperatures), "--year", "2024", "--out", str(out)])
        assert result.exit_code == 0, result.output
        rows[fixed] = next(r for r in csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig")), delimiter=";")
                           if r["Référence interne"] == "ecole-curie")
    chosen = rows[None]
    # 2012: 60,000 + 99,000 kWh beat 2013's 50,000 + 104,500 kWh.
    assert (chosen[REFERENCE_YEAR], chosen[REFERENCE_KWH]) == ("2012", "159000")
    assert (chosen[SOURCE], chosen[REFERENCE_SOURCE]) == ("compteurs", "factures")
    assert (rows[2013][REFERENCE_YEAR], rows[2013][REFERENCE_KWH]) == ("2013", "154500")

    printed = float(chosen[HEATING_SHARE].replace(",", ".")) / 100
    assert printed == pytest.approx(share, abs=0.03)
    assert chosen[ADJUSTMENT_METHOD].startswith(
        "C×(1−sh−sc) + C×sh×DJU 2012/DJU 2024 + C×sc×DJC 2012/DJC 2024 ; parts : modèle M&V des compteurs (")
    # No day above 18 °C in either year: no cooling degree days, the cooling part (if any) left as it is.
    assert (chosen[DJC_YEAR], chosen[DJC_REFERENCE]) == ("0", "0")
    used = gas_kwh[in_2024].sum() + elec_kwh[in_2024].sum()
    assert int(chosen[TOTAL_KWH]) == pytest.approx(used, rel=1e-3)
    assert int(chosen[ADJUSTED_KWH]) == pytest.approx(used * (1 - printed) + used * printed * 4026 / 3294, rel=1e-3)
