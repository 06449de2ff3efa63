"""An unset ``email.password_env`` is found at start: ``econome run`` exits 2, ``econome check`` warns, naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
VARIABLE = "ECONOME_TEST_SMTP_PASSWORD_UNSET"
EMAIL = (
    "email:\n  host: smtp.valmont.example\n  security: starttls\n  sender: econome@valmont.example\n"
    f"  username: econome\n  password_env: {VARIABLE}\n"
)


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "commune.yaml"
    path.write_text((ROOT / "examples" / "commune.yaml").read_text(encoding="utf-8") + EMAIL, encoding="utf-8")
    return path


def _econome(tmp_path: Path, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "ECONOME_DATA_DIR": str(tmp_path / "data"), "ECONOME_LOG_LEVEL": "ERROR"}
    if password is not None:
        env[VARIABLE] = password
    return subprocess.run(
        [sys.executable, "-m", "econome.cli", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_run_refuses_to_start_without_the_smtp_password(tmp_path: Path, inventory: Path) -> None:
    result = _econome(tmp_path, "run", str(inventory), "--duration", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"error: email.password_env: the SMTP password variable {VARIABLE} is not set" in result.stderr
    assert "smtp.valmont.example" in result.stderr
    assert "stopped:" not in result.stdout  # nothing started


def test_check_warns_naming_the_variable_and_passes_once_it_is_set(tmp_path: Path, inventory: Path) -> None:
    unset = _econome(tmp_path, "check", str(inventory))
    assert unset.returncode == 0, unset.stdout + unset.stderr
    assert f"{inventory}: OK" in unset.stdout
    [warning] = [line for line in unset.stderr.splitlines() if line.startswith("warning:")]
    assert VARIABLE in warning
    assert "password_env" in warning

    set_ = _econome(tmp_path, "check", str(inventory), password="s3cret")  # noqa: S106
    assert set_.returncode == 0, set_.stdout + set_.stderr
    assert "warning:" not in set_.stderr


def test_run_refuses_to_start_with_an_empty_smtp_password(tmp_path: Path, inventory: Path) -> None:
    # The compose stack's secrets/smtp_password is an empty file until the operator writes it; the entrypoint
    # exports it as an empty variable: every mail would fail at the login, for weeks, unnoticed.
    result = _econome(tmp_path, "run", str(inventory), "--duration", "1", password="")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"error: email.password_env: the SMTP password variable {VARIABLE} is empty" in result.stderr
    assert "stopped:" not in result.stdout
    check = _econome(tmp_path, "check", str(inventory), password="")
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"warning: email.password_env: the SMTP password variable {VARIABLE} is empty" in check.stderr


def test_run_refuses_to_start_with_a_smtp_password_of_blanks_only(tmp_path: Path, inventory: Path) -> None:
    # A secret file holding a newline (an editor saving an "empty" file) is no password either.
    result = _econome(tmp_path, "run", str(inventory), "--duration", "1", password="\n")  # noqa: S106
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"error: email.password_env: the SMTP password variable {VARIABLE} holds only blanks" in result.stderr
    assert "stopped:" not in result.stdout
