"""A bad ``--out`` is refused before any work, in one line, exit 2; a written file appears whole or not at all."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from econome._common import atomic_path
from econome.cli import app

ROOT = Path(__file__).resolve().parents[3]
CONFIG = str(ROOT / "examples" / "commune.yaml")

COMMANDS = {
    "report building": ["report", "building", "--config", CONFIG, "--building", "mairie", "--month", "2025-01"],
    "report renovation": ["report", "renovation", "--config", CONFIG, "--building", "ecole-curie"],
    "report portfolio": ["report", "portfolio", "--config", CONFIG, "--year", "2025"],
    "report operat": ["report", "operat", "--config", CONFIG, "--year", "2025", "--reference-year", "2024"],
    "detect": ["detect", "--inventory", CONFIG],
    "simulate": ["simulate", "--config", CONFIG, "--start", "2025-01-01", "--end", "2026-01-01"],
    "export": ["export", "--config", CONFIG, "--since", "2025-01-01", "--until", "2025-02-01"],
}
READS = {"report building", "report renovation", "report portfolio", "report operat", "detect"}


@pytest.fixture
def readings(tmp_path: Path) -> Path:
    """A year of the mairie's counters, so that a report would have work to do if it did not check --out first."""
    path = tmp_path / "readings.csv"
    rows = [f"2025-01-{d:02d}T12:00:00+01:00,mairie-elec-energy,{1000 + 50 * d}\n" for d in range(1, 29)]
    path.write_text("timestamp,point,value\n" + "".join(rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", list(COMMANDS))
@pytest.mark.parametrize("bad", ["missing-folder", "a-folder"])
def test_a_bad_out_is_one_line_and_exit_2(name: str, bad: str, tmp_path: Path, readings: Path) -> None:
    out = tmp_path / "nonexistent" / "x.pdf" if bad == "missing-folder" else tmp_path
    args = [*COMMANDS[name], "--out", str(out)]
    if name in READS:
        args += ["--readings", str(readings)]
    started = time.monotonic()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: --out ")
    assert str(out) in lines[0]
    assert "Traceback" not in result.output
    assert time.monotonic() - started < 5  # refused before the work, not after it


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_written_file_leaves_nothing_beside_it_and_respects_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    # Review round 2: the mode was forced to 0644 whatever the umask (a commune's private reports).
    out = tmp_path / "readings.csv"
    previous = os.umask(umask)
    try:
        result = CliRunner().invoke(app, ["simulate", "--config", CONFIG, "--start", "2026-01-01", "--end", "2026-01-02",
                                          "--out", str(out)])  # fmt: skip
        (tmp_path / "by-open").write_text("")  # what open() makes under the same umask
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["by-open", "readings.csv"]
    assert out.read_text(encoding="utf-8").startswith("timestamp,point,value")
    assert out.stat().st_mode & 0o777 == mode == (tmp_path / "by-open").stat().st_mode & 0o777


@pytest.mark.parametrize("bad", ["missing-folder", "a-folder"])
def test_a_bad_state_is_one_line_and_exit_2_before_the_work(bad: str, tmp_path: Path, readings: Path) -> None:
    # Review round 2: a missing folder ran the whole detection then a traceback; a folder said "remove it".
    state = tmp_path / "nonexistent" / "s.json" if bad == "missing-folder" else tmp_path
    started = time.monotonic()
    result = CliRunner().invoke(app, [*COMMANDS["detect"], "--readings", str(readings), "--out",
                                      str(tmp_path / "e.jsonl"), "--state", str(state)])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"error: --state {state}: " + ("is a folder" if bad == "a-folder" else f"folder {state.parent} does not exist")]
    assert not (tmp_path / "e.jsonl").exists()
    assert time.monotonic() - started < 5


def _write_half(out: Path, error: BaseException) -> None:
    with atomic_path(out) as part:
        part.write_bytes(b"%PDF-1.7 half")
        raise error


def test_a_failure_leaves_no_half_file(tmp_path: Path) -> None:
    out = tmp_path / "report.pdf"
    with pytest.raises(RuntimeError):
        _write_half(out, RuntimeError("disk full"))
    assert list(tmp_path.iterdir()) == []
    out.write_bytes(b"the previous report")
    with pytest.raises(KeyboardInterrupt):
        _write_half(out, KeyboardInterrupt())
    assert [p.name for p in tmp_path.iterdir()] == ["report.pdf"]
    assert out.read_bytes() == b"the previous report"


def test_a_full_disk_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "readings.csv"
    with pytest.raises(typer.Exit) as exit_info:
        _write_half(out, OSError(errno.ENOSPC, "No space left on device"))
    assert exit_info.value.exit_code == 1
    assert capsys.readouterr().err == f"error: cannot write {out}: No space left on device\n"
    assert list(tmp_path.iterdir()) == []
