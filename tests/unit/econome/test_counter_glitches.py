"""Issue 13 review: one glitched index reading and an undeclared re-base, through ``econome report building``.

The reviewer's two cases on the same month: a mairie-elec-energy reading ×10
(it added 2.6 GWh) and mairie-gas-volume 2000 m³ lower from 5 December on (gas
read zero for the rest of the month, "−89 %"). The month's figures must equal
those of the same readings without the defects (gas: but for the hour whose
consumption the drop hides), and stderr must name each defect.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.reader_text import figure, visible_text

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "examples" / "commune.yaml"
GLITCH_AT = datetime(2025, 12, 10, 10, tzinfo=UTC)
REBASE_FROM = datetime(2025, 12, 5, tzinfo=UTC)


def _write(path: Path, *, defects: bool) -> tuple[float, float, float, float]:
    """Hourly readings of December 2024 and 2025; (glitched index, its base, gas index before and after the drop)."""
    rng = np.random.default_rng(1)
    lines = ["timestamp,point,value\n"]
    seen = (0.0, 0.0, 0.0, 0.0)
    elec_from, gas_from = 150000.0, 4000.0  # the indexes go on from one December to the next
    for year in (2024, 2025):
        stamps = [datetime(year, 11, 30, tzinfo=UTC) + timedelta(hours=i) for i in range(33 * 24)]
        elec = elec_from + np.cumsum(rng.uniform(4, 8, len(stamps)))  # kWh
        gas = gas_from + np.cumsum(rng.uniform(1, 3, len(stamps)))  # m3
        elec_from, gas_from = float(elec[-1]) + 40000, float(gas[-1]) + 9000
        temp = rng.normal(5, 3, len(stamps))
        if defects and year == 2025:
            at = stamps.index(GLITCH_AT)
            drop = stamps.index(REBASE_FROM)
            seen = (elec[at] * 10, elec[at - 1], gas[drop - 1], gas[drop] - 2000)
            elec[at] *= 10
            gas[drop:] -= 2000
        lines += [f"{t.isoformat()},mairie-elec-energy,{e!r}\n{t.isoformat()},mairie-gas-volume,{g!r}\n"
                  f"{t.isoformat()},station-meteo-temperature,{c:.2f}\n"
                  for t, e, g, c in zip(stamps, elec.tolist(), gas.tolist(), temp.tolist(), strict=True)]
    path.write_text("".join(lines))
    return seen


def _report(tmp_path: Path, name: str, *, defects: bool) -> tuple[str, str, tuple[float, float, float, float]]:
    data = tmp_path / f"{name}.csv"
    seen = _write(data, defects=defects)
    out = tmp_path / f"{name}.html"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECONOME_")} | {"PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "econome.cli", "report", "building", "--config", str(CONFIG), "--readings", str(data),
         "--building", "mairie", "--month", "2025-12", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return visible_text(out.read_text(encoding="utf-8")), result.stderr, seen


def _row(text: str, label: str) -> tuple[float, float]:
    """This month's and the same month's a year before, of one energy's row of the table."""
    row = text[text.index(label + "\n", text.index("Consommations par énergie")):]
    cells = row.split("\n")
    return figure(cells[1], ""), figure(cells[2], "")


def test_a_glitched_reading_and_a_rebase_leave_the_month_right_and_are_told(tmp_path: Path) -> None:
    clean, clean_err, _ = _report(tmp_path, "clean", defects=False)
    text, stderr, (glitch, base, before, after) = _report(tmp_path, "defects", defects=True)
    assert "glitch" not in clean_err
    assert "re-based" not in clean_err
    elec, elec_2024 = _row(text, "Électricité")
    gas, gas_2024 = _row(text, "Gaz naturel")
    clean_elec, _ = _row(clean, "Électricité")
    clean_gas, _ = _row(clean, "Gaz naturel")
    assert elec == pytest.approx(clean_elec, abs=1)  # not +1.7 GWh then a whole index
    assert 0 <= clean_gas - gas <= 3 * 11.2 + 1  # at most the hour hidden by the drop (≤ 3 m3), not 27 days
    assert gas == pytest.approx(gas_2024, rel=0.1)  # the same use as a year before: no "−89 %"
    assert elec == pytest.approx(elec_2024, rel=0.1)
    lines = stderr.splitlines()
    assert any(line.startswith(f"mairie-elec-energy: reading {glitch:.10g} at 2025-12-10T10:00+00:00 dropped as a "
                               f"glitch (next reading ") and line.endswith(f"continues from {base:.10g})")
               for line in lines), stderr
    assert any(line.startswith(f"mairie-gas-volume: index fell from {before:.10g} to {after:.10g} at "
                               "2025-12-05T00:00+00:00, confirmed by the next reading") and "re-based" in line
               for line in lines), stderr
