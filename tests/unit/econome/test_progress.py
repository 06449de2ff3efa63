"""Long commands show their progress on a terminal, and print nothing more in a log (issue 13).

The commands run as a user runs them: in a process whose stderr is a
pseudo-terminal (as in a shell), then one whose stderr is a pipe (as in CI).
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from anomalies.detect import DetectConfig, detect
from anomalies.features import PointSeries
from inventory import Inventory, load_inventory
from simulator.export import write_readings_csv
from simulator.physics import generate_history

ROOT = Path(__file__).resolve().parents[3]
COMMUNE = ROOT / "examples" / "commune.yaml"
START = datetime(2026, 1, 5, tzinfo=UTC)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    return env | {"PYTHONPATH": str(ROOT), "TERM": "xterm", "ECONOME_LOG_LEVEL": "WARNING"}


def _econome(*args: str) -> list[str]:
    return [sys.executable, "-m", "econome.cli", *args]


def _on_terminal(command: list[str]) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal of 120 columns; exit code, stdout, what the terminal got."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=_env()) as proc:
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.stdout is not None
        out = proc.stdout.read().decode()
        code = proc.wait(timeout=120)
    os.close(master)
    return code, out, b"".join(chunks).decode(errors="replace")


def _in_a_log(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=120, check=False)


def test_simulate_and_report_show_progress_on_a_terminal_only(tmp_path: Path) -> None:
    simulate = _econome("simulate", "--config", str(COMMUNE), "--start", "2025-01-01", "--end", "2025-02-01")
    code, out, terminal = _on_terminal([*simulate, "--out", str(tmp_path / "tty.csv")])
    assert code == 0, terminal
    assert out.startswith("wrote ")
    assert " readings to " in out
    assert "simulate: simulating" in terminal
    assert "simulate: writing the CSV" in terminal
    assert "100%" in terminal
    # Every half hour of January (the Linky), then the half hour and the gas day that end the month.
    assert "1490/1490" in terminal

    logged = _in_a_log([*simulate, "--out", str(tmp_path / "log.csv")])
    assert logged.returncode == 0, logged.stderr
    assert logged.stdout == out.replace("/tty.csv", "/log.csv")
    assert logged.stderr == ""
    assert (tmp_path / "log.csv").read_bytes() == (tmp_path / "tty.csv").read_bytes()

    report = _econome("report", "portfolio", "--config", str(COMMUNE), "--readings", str(tmp_path / "log.csv"), "--year", "2025")
    code, out, terminal = _on_terminal([*report, "--out", str(tmp_path / "tty.html")])
    assert code == 0, terminal
    assert "report portfolio: reading consumption 2025" in terminal
    assert "report portfolio: savings per building" in terminal
    assert "14/14" in terminal
    logged = _in_a_log([*report, "--out", str(tmp_path / "log.html")])
    assert logged.returncode == 0, logged.stderr
    assert "report portfolio:" not in logged.stderr
    assert "\x1b[" not in logged.stderr


def test_detect_shows_progress_on_a_terminal_only(tmp_path: Path) -> None:
    inventory = load_inventory(COMMUNE)
    csv = tmp_path / "readings.csv"
    write_readings_csv(inventory, csv, START, START + timedelta(days=2), seed=2)
    command = _econome("detect", "--inventory", str(COMMUNE), "--readings", str(csv), "--no-models")
    code, out, terminal = _on_terminal([*command, "--out", str(tmp_path / "tty.jsonl")])
    assert code == 0, terminal
    assert "events written to" in out
    assert "detect: detecting — " in terminal
    assert "100%" in terminal
    logged = _in_a_log([*command, "--out", str(tmp_path / "log.jsonl")])
    assert logged.returncode == 0, logged.stderr
    assert "detecting" not in logged.stderr
    assert (tmp_path / "tty.jsonl").read_text() == (tmp_path / "log.jsonl").read_text()


@pytest.fixture(scope="module")
def commune() -> Inventory:
    return load_inventory(COMMUNE)


def test_detection_reports_every_building_up_to_the_end(commune: Inventory) -> None:
    history = generate_history(commune, START, START + timedelta(days=2), timedelta(minutes=15), seed=2)
    seconds = history.times.astype(np.int64) / 1000.0
    readings = {
        pid: PointSeries(seconds[np.isfinite(col)], col[np.isfinite(col)])
        for pid, col in zip(history.point_ids, history.values.T, strict=True)
    }
    calls: list[tuple[str, int, int]] = []
    detect(commune, readings, DetectConfig(models=False), progress=lambda *call: calls.append(call))
    buildings = [b.id for _, b in commune.buildings()]
    assert {phase.removeprefix("detecting — ") for phase, _, _ in calls} == set(buildings)
    dones = [done for _, done, _ in calls]
    assert dones == sorted(dones)
    (total,) = {total for _, _, total in calls}
    assert dones[-1] == total
    assert total % len(buildings) == 0
