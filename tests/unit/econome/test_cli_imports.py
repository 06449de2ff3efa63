"""What ``econome detect`` imports (issue 11: a building-year under 5 s, the CLI's imports were 1.1 s of it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from econome.cli import app

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "examples" / "commune.yaml"
# Imported only by the commands that talk to InfluxDB, convert units, run the service or render PDFs.
NOT_FOR_DETECT = ("httpx", "influxdb_client", "pint", "pydantic_settings", "econome.settings", "econome.wiring",
                  "pymodbus", "paho", "weasyprint", "econome.cli_mv",
                  # Only once a forest is fitted or a sensor's trend tested (24 hours of one sensor: neither).
                  "scipy.stats", "sklearn")


def test_econome_detect_on_a_csv_file_imports_no_influxdb_client_pint_settings_or_scipy_stats(tmp_path: Path) -> None:
    """The whole command, run as users run it; ``-X importtime`` names every module it imported."""
    readings = tmp_path / "r.csv"
    rows = [f"2026-01-05T{h:02d}:00:00+00:00,mairie-bureaux-temperature,{19 + h % 3}" for h in range(24)]
    readings.write_text("timestamp,point,value\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "events.jsonl"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "econome.cli", "detect", "--inventory", str(CONFIG),
         "--readings", str(readings), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.exists()
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "anomalies.detect" in imported  # the parse sees the command's own modules
    loaded = sorted(m for m in imported if any(m == n or m.startswith(n + ".") for n in NOT_FOR_DETECT))
    assert loaded == []


@pytest.mark.parametrize("command", ["mv", "report", "dashboards", "detect", "export", "import", "alerts", "status"])
def test_every_command_of_the_lazy_modules_is_listed_and_runs(command: str) -> None:
    """``econome --help`` lists the commands imported on demand, and each one answers ``--help``."""
    listed = CliRunner().invoke(app, ["--help"])
    assert listed.exit_code == 0
    assert f" {command} " in listed.stdout
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout


@pytest.mark.parametrize(("typo", "meant"), [("detec", "detect"), ("staus", "status"), ("alert", "alerts"), ("chek", "check")])
def test_a_mistyped_command_suggests_the_lazy_ones_too(typo: str, meant: str) -> None:
    """typer suggests from the commands loaded so far; the lazy ones are not, until looked up."""
    result = CliRunner().invoke(app, [typo])
    assert result.exit_code == 2
    assert f"Did you mean '{meant}'?" in result.output
