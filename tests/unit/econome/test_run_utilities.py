"""``econome run`` starts the daily Linky/Gazpar fetch from the ECONOME_ENEDIS_* / ECONOME_GRDF_* settings."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

from tests import utility_fakes as fk

ROOT = Path(__file__).resolve().parents[3]



def _run(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "inv.yaml").write_text(fk.INVENTORY, encoding="utf-8")
    full = {k: v for k, v in os.environ.items() if not k.startswith("ECONOME_")}
    full.update({"ECONOME_DATA_DIR": str(tmp_path / "var"), "PYTHONPATH": str(ROOT), "ECONOME_DETECT_ENABLED": "false",
                 "ECONOME_INFLUX_URL": "http://127.0.0.1:9", "ECONOME_STOP_TIMEOUT_S": "1", **env})
    return subprocess.run(
        [sys.executable, "-m", "econome.cli", "run", str(tmp_path / "inv.yaml"), *args],
        cwd=tmp_path, env=full, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_api_points_without_credentials_exit_2(tmp_path: Path) -> None:
    result = _run(tmp_path, {"ECONOME_GRDF_CLIENT_ID": "x", "ECONOME_GRDF_CLIENT_SECRET": "y"}, "--duration", "5")
    assert result.returncode == 2, result.stderr
    assert "mairie-linky have enedis.data_connect: true but ECONOME_ENEDIS_CLIENT_ID" in result.stderr


def test_run_fetches_at_the_configured_hour_with_the_env_credentials(tmp_path: Path) -> None:
    fake = fk.FakeUtilities(enedis_until=date(2026, 11, 30), grdf_until=date(2026, 11, 28))
    with fk.ServedInThread(fake) as server:
        env = {
            "ECONOME_ENEDIS_CLIENT_ID": fk.CLIENT_ID, "ECONOME_ENEDIS_CLIENT_SECRET": fk.CLIENT_SECRET,
            "ECONOME_ENEDIS_URL": server.url,
            "ECONOME_GRDF_CLIENT_ID": fk.CLIENT_ID, "ECONOME_GRDF_CLIENT_SECRET": fk.CLIENT_SECRET,
            "ECONOME_GRDF_URL": f"{server.url}/adict/v2", "ECONOME_GRDF_TOKEN_URL": f"{server.url}/grdf/access_token",
            "ECONOME_UTILITIES_AT": "08:15", "ECONOME_UTILITIES_BACKFILL_DAYS": "3", "ECONOME_LOG_LEVEL": "DEBUG",
        }  # fmt: skip
        # A simulated clock from 08:00 in Paris, 1800 times faster: 08:15 comes after half a second.
        result = _run(tmp_path, env, "--duration", "4", "--speed", "1800", "--start", "2026-12-01T08:00:00+01:00")
    asked = {(path, q.get("pointId") or q.get("date_debut"), q.get("dateDebut") or q.get("date_fin")) for path, q in fake.log}
    assert ("/mesure_synchrone_auto/v2/courbe_de_charge_consommation", fk.PRM_OK, "2026-11-28") in asked, result.stderr
    assert (f"/adict/v2/pce/{fk.PCE_OK}/donnees_consos_informatives", "2026-11-28", "2026-11-30") in asked, result.stderr
    assert fake.tokens == 2
    # Two simulated hours without a reading: a live point would be missing, not a Linky or a Gazpar (J+1 to J+3).
    assert "missing: no reading" not in result.stderr
    assert "utility fetch: 2 point(s) fetched daily at 08:15:00 (Europe/Paris)" in result.stderr
    assert fk.CLIENT_SECRET not in result.stdout + result.stderr
