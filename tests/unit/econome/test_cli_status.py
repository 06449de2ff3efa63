"""``econome status`` on a service's local files (typer's CliRunner); InfluxDB is unreachable here (exit 4).

The figures read from InfluxDB are tested on a real server in tests/integration/test_status.py.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anomalies.incremental import DetectorState
from econome.cli import app
from streams.errors import DecodeError

ROOT = Path(__file__).resolve().parents[3]
INVENTORY = str(ROOT / "examples" / "commune.yaml")
runner = CliRunner()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ECONOME_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ECONOME_INFLUX_URL", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("ECONOME_INFLUX_API", "v1")
    return tmp_path


def test_peek_last_hour_reads_the_state_s_hour_and_refuses_garbage(tmp_path: Path) -> None:
    state = DetectorState.fresh()
    path = tmp_path / "state.npz"
    state.save(path)
    assert DetectorState.peek_last_hour(path) is None
    state.last_hour = datetime(2026, 1, 12, 9, tzinfo=UTC)
    state.save(path)
    assert DetectorState.peek_last_hour(path) == datetime(2026, 1, 12, 9, tzinfo=UTC)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DecodeError, match=r"bad\.npz"):
        DetectorState.peek_last_hour(tmp_path / "bad.npz")


def test_status_shows_the_last_hour_detection_processed_in_local_time(data_dir: Path) -> None:
    state = DetectorState.fresh()
    state.last_hour = datetime(2026, 1, 12, 9, tzinfo=UTC)
    (data_dir / "detect").mkdir()
    state.save(data_dir / "detect" / "state.npz")
    (data_dir / "detect" / "old.npz").write_bytes(b"garbage")

    result = runner.invoke(app, ["status", INVENTORY])

    assert result.exit_code == 4, result.output
    assert "detection      last hour processed up to 2026-01-12 10:00 (" in result.output  # Europe/Paris
    assert "old.npz: not a readable detection state" in result.output
    assert "live detection has not run yet (no " in result.output  # no alerts.sqlite
    assert "14 buildings: readings unknown (InfluxDB not read)" in result.output


def test_status_sums_up_the_buildings_states_each_behind_by_its_own_lag(data_dir: Path) -> None:
    """Live detection's state per building: one line, the oldest hour, the buildings behind beyond their lag."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    folder = data_dir / "detect" / "state"
    folder.mkdir(parents=True)
    for building, last in [("mairie", hour - timedelta(hours=4)), ("bibliotheque", hour),
                           ("maternelle-aulnes", hour - timedelta(days=2, hours=1)),  # a Linky: judged 2 days late
                           ("demolie", hour - timedelta(days=30))]:  # a building taken out of the inventory
        state = DetectorState.fresh()
        state.last_hour = last
        state.save(folder / f"{building}.npz")

    result = runner.invoke(app, ["status", INVENTORY, "--json"])

    report = json.loads(result.stdout)
    assert report["service_problems"] == ["detection: behind: more than 2 h 05 min (2 periods + delay)"]
    assert len(report["detection"]) == 3
    text = runner.invoke(app, ["status", INVENTORY]).output
    [line] = [x for x in text.splitlines() if x.startswith("detection")]
    assert "3 buildings, last hour processed up to " in line
    assert "ago, maternelle-aulnes) at the oldest" in line
    assert "PROBLEM 1 behind (mairie)" in line


def test_status_json_is_one_object_with_the_local_part(data_dir: Path) -> None:
    result = runner.invoke(app, ["status", INVENTORY, "--json", "--building", "mairie"])
    assert result.exit_code == 4
    report = json.loads(result.stdout)
    assert report["exit_code"] == 4
    assert report["delivery_log"] == {"path": str(data_dir / "delivery.sqlite"), "exists": False}
    assert report["dead_letters"]["count"] == 0
    assert report["detection"] == []
    [building] = report["buildings"]
    assert building["id"] == "mairie"
    assert building["points"] is None


def test_min_completeness_out_of_range_is_a_usage_error(data_dir: Path) -> None:
    result = runner.invoke(app, ["status", INVENTORY, "--min-completeness", "1.5"])
    assert result.exit_code == 2


def test_a_bad_inventory_exits_2(data_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("organisation: {name: x}\nsites: 3\n", encoding="utf-8")
    result = runner.invoke(app, ["status", str(broken)])
    assert result.exit_code == 2
