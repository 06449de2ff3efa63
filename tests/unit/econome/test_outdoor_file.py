"""A commune without a weather sensor (Linky/Gazpar only): outdoor temperatures from Météo-France's daily file.

Review of issue 14 (part F2): ``mv``, ``report building`` and ``report portfolio`` exited 2 "no outdoor
temperature" for such a commune, with no way to bring temperatures in; ``report operat --out x.pdf``
wrote a CSV under a PDF name.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import typer
import yaml
from typer.testing import CliRunner

from econome.cli_mv import register

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "examples" / "commune.yaml"
START = datetime(2023, 9, 1, tzinfo=UTC)
DAYS = 730
STATION = "41018001"
GAZPAR = "salle-polyvalente-gazpar"


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture
def commune(tmp_path: Path) -> Path:
    """The example commune without its weather station."""
    raw = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    for site in raw["sites"]:
        for building in site["buildings"]:
            building["points"] = [p for p in building["points"] if p.get("usage") != "weather"]
    path = tmp_path / "no-weather.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _files(tmp_path: Path, saving: float) -> tuple[Path, Path]:
    """The school's gas index and the hall's Gazpar (gas days from 6:00), heated below 15 °C, saving from 2024-09-01.

    With Météo-France's file of two stations.
    """
    rng = np.random.default_rng(0)
    temp = 11 - 9 * np.cos(2 * np.pi * (np.arange(DAYS) - 140) / 365) + rng.normal(0, 2.5, DAYS)
    heat_kwh = 100 + 60 * np.maximum(0, 15 - temp) + rng.normal(0, 20, DAYS)
    heat_kwh[366:] *= 1 - saving
    index = 5000 + np.cumsum(heat_kwh / 11.2)  # m3
    readings = tmp_path / "readings.csv"
    stamps = [START + timedelta(days=i, hours=11) for i in range(DAYS)]
    gas_days = [START + timedelta(days=i, hours=5) for i in range(DAYS)]
    readings.write_text("timestamp,point,value\n" + "".join(
        f"{t.isoformat()},ecole-curie-gas-volume,{v:.4f}\n" for t, v in zip(stamps, index, strict=True)) + "".join(
        f"{t.isoformat()},{GAZPAR},{v / 2:.4f}\n" for t, v in zip(gas_days, index, strict=True)))
    rows = ["NUM_POSTE;NOM_USUEL;LAT;LON;ALTI;AAAAMMJJ;RR;QRR;TN;QTN;HTN;QHTN;TX;QTX"]
    for i in range(DAYS):
        day = (START + timedelta(days=i)).strftime("%Y%m%d")
        rows.append(f"{STATION};BLOIS;47.67;1.31;112;{day};0.0;1;{temp[i] - 4:.1f};1;;;{temp[i] + 4:.1f};1")
        # Another station of the département, 10 °C warmer: read, the heating would vanish.
        rows.append(f"41097001;ROMORANTIN;47.3;1.7;90;{day};0.0;1;{temp[i] + 6:.1f};1;;;{temp[i] + 14:.1f};1")
    meteo = tmp_path / "Q_41_latest-2023-2024_RR-T-Vent.csv"
    meteo.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return readings, meteo


def test_a_commune_without_weather_sensor_takes_meteo_france_temperatures(
    app: typer.Typer, commune: Path, tmp_path: Path
) -> None:
    readings, meteo = _files(tmp_path, 0.3)
    runner = CliRunner()
    mv = ["mv", "--readings", str(readings), "--point", "ecole-curie-gas-volume", "--config", str(commune),
          "--building", "ecole-curie", "--baseline", "2023-09-01/2024-09-01", "--reporting", "2024-09-01/2025-08-31"]
    refused = runner.invoke(app, mv)
    assert refused.exit_code == 2
    assert "--temperatures" in refused.output

    several = runner.invoke(app, [*mv, "--temperatures", str(meteo)])
    assert several.exit_code == 2
    assert "--station" in several.output
    assert STATION in several.output

    result = runner.invoke(app, [*mv, "--temperatures", str(meteo), "--station", STATION])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert "terms=hdd" in out["model"]  # a heating slope: consumption follows the file's cold days
    assert out["savings_fraction"] == pytest.approx(0.3, abs=0.03)
    monthly = {m["start"][:7]: m["adjusted_baseline_kwh"] / m["points"] for m in out["monthly"]}
    assert monthly["2025-01"] > 1.5 * monthly["2025-07"]

    # The hall's Gazpar, read once per gas day, the same way.
    gazpar = ["mv", "--readings", str(readings), "--point", GAZPAR, "--config", str(commune), "--building",
              "salle-polyvalente", "--baseline", "2023-09-02/2024-09-01", "--reporting", "2024-09-01/2025-08-30",
              "--temperatures", str(meteo), "--station", STATION]
    result = runner.invoke(app, gazpar)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert "terms=hdd" in out["model"]
    assert out["savings_fraction"] == pytest.approx(0.3, abs=0.05)

    both = runner.invoke(app, [*mv, "--temperatures", str(meteo), "--temperature-point", "x"])
    assert both.exit_code == 2

    common = ["--config", str(commune), "--readings", str(readings), "--temperatures", str(meteo), "--station", STATION]
    month = tmp_path / "month.html"
    result = runner.invoke(app, ["report", "building", *common, "--building", "ecole-curie", "--month", "2025-01",
                                 "--out", str(month)])
    assert result.exit_code == 0, result.output
    assert "janvier 2025" in month.read_text(encoding="utf-8")
    # The month's degree days are the file's station's, Météo-France's way: 18 - (TN + TX) / 2.
    january = [line.split(";") for line in meteo.read_text(encoding="utf-8").splitlines()[1:]
               if line.startswith(STATION) and ";202501" in line]
    dju = sum(max(0.0, 18 - (float(f[8]) + float(f[12])) / 2) for f in january)
    assert len(january) == 31
    assert f"{dju:.0f}\u00a0DJU" in month.read_text(encoding="utf-8")

    reno = tmp_path / "reno.html"
    result = runner.invoke(app, ["report", "renovation", *common, "--building", "ecole-curie", "--out", str(reno)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.splitlines()[-1])["savings_fraction"] == pytest.approx(0.3, abs=0.03)

    # The portfolio needs no outdoor temperature: without one it only measures no renovation savings.
    portfolio = tmp_path / "portfolio.html"
    result = runner.invoke(app, ["report", "portfolio", "--config", str(commune), "--readings", str(readings),
                                 "--year", "2024", "--out", str(portfolio)])
    assert result.exit_code == 0, result.output
    assert "no outdoor temperature (no weather point, no --temperatures): no renovation savings measured" in result.output
    assert "€/hab." in portfolio.read_text(encoding="utf-8")


def test_operat_writes_csv_and_refuses_another_name(app: typer.Typer, commune: Path, tmp_path: Path) -> None:
    readings, _ = _files(tmp_path, 0.0)
    helped = CliRunner().invoke(app, ["report", "operat", "--help"], env={"COLUMNS": "200"})
    assert "CSV file to write" in helped.output
    assert "PDF" not in helped.output
    for name in ("operat.pdf", "operat.html"):
        out = tmp_path / name
        result = CliRunner().invoke(app, ["report", "operat", "--config", str(commune), "--readings", str(readings),
                                          "--year", "2024", "--reference-year", "2024", "--out", str(out)])
        assert result.exit_code == 2
        assert "the OPERAT export is a CSV file, give a name ending in .csv" in result.output
        assert not out.exists()
