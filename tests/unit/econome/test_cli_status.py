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


@pytest.mark.parametrize(("lagged_every", "behind"), [("1d", False), ("0s", True)])
def test_a_building_judged_late_may_be_behind_by_its_daily_advance_more(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, lagged_every: str, behind: bool,
) -> None:
    """A Linky-only school advanced once a day (``ECONOME_DETECT_LAGGED_EVERY``, 1d) 2 days 20 hours back is
    not behind; advanced at every pass, it is."""
    monkeypatch.setenv("ECONOME_DETECT_LAGGED_EVERY", lagged_every)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    folder = data_dir / "detect" / "state"
    folder.mkdir(parents=True)
    state = DetectorState.fresh()
    state.last_hour = hour - timedelta(days=2, hours=20)
    state.save(folder / "maternelle-aulnes.npz")
    report = json.loads(runner.invoke(app, ["status", INVENTORY, "--json"]).stdout)
    assert bool(report["service_problems"]) is behind, report["service_problems"]


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


def _with_email(tmp_path: Path, advisor: str) -> str:
    text = (ROOT / "examples" / "commune.yaml").read_text(encoding="utf-8").replace("cep@valmont.example", advisor)
    path = tmp_path / f"commune-{advisor.split('@')[0]}.yaml"
    path.write_text(text + "email: {host: 127.0.0.1, security: none, sender: econome@valmont.example}\n",
                    encoding="utf-8")
    return str(path)


def test_a_mail_failed_for_good_is_a_problem_until_its_alert_is_acked_or_its_address_fixed(data_dir: Path) -> None:
    # Claims review: a mail refused for good (5xx) is never sent again, and status counted it as a problem
    # (exit 1) for ever: after the advisor's address was fixed, after the alert was acknowledged.
    import asyncio
    from dataclasses import replace

    from aiosmtpd.controller import Controller

    from anomalies.alerts import EmailConfig
    from anomalies.events import _sample_event
    from anomalies.notify import MailOutbox, alerts_path
    from inventory import load_inventory
    from streams.clock import ManualClock

    class _Refusing:
        async def handle_DATA(self, *args: object) -> str:
            return "550 5.1.1 mailbox unknown"

    inventory = _with_email(data_dir, "cep@valmont.example")
    port = _free_port()
    controller = Controller(_Refusing(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        now = datetime.now(UTC)
        config = EmailConfig(host="127.0.0.1", port=port, security="none", sender="econome@valmont.example")
        outbox = MailOutbox(alerts_path(data_dir), config, load_inventory(Path(inventory)), ManualClock(now))
        outbox.queue([replace(_sample_event(), start=now - timedelta(hours=3))], now)
        assert asyncio.run(outbox.flush(now)) == 0
    finally:
        controller.stop()
    [failed] = outbox.register.failed_mails()

    def problem(inventory: str) -> object:
        result = runner.invoke(app, ["status", inventory, "--json"])
        assert result.exit_code == 4, result.output  # InfluxDB unreachable here: the JSON tells the rest
        return json.loads(result.stdout)["outbox"]["problem"]

    assert problem(inventory) == "1 failed for good (to cep@valmont.example)"
    assert problem(_with_email(data_dir, "energie@valmont.example")) is None  # the address fixed
    outbox.register.ack(failed.alert_id, "M. Durand", now)
    assert problem(inventory) is None
