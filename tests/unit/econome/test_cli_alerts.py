"""``econome alerts list|ack|mute|unmute`` on a real SQLite register (typer's CliRunner)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anomalies.alerts import EmailConfig
from anomalies.events import AlertState, _sample_event
from anomalies.notify import AlertRegister, MailOutbox, alerts_path
from econome.cli import app
from inventory import load_inventory
from streams.clock import ManualClock

ROOT = Path(__file__).resolve().parents[3]
INVENTORY = str(ROOT / "examples" / "commune.yaml")
runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ECONOME_DATA_DIR", str(tmp_path))
    now = datetime(2026, 1, 12, 4, tzinfo=UTC)
    config = EmailConfig(host="127.0.0.1", security="none", sender="econome@valmont.example")
    outbox = MailOutbox(alerts_path(tmp_path), config, load_inventory(Path(INVENTORY)), ManualClock(now))
    outbox.queue([_sample_event().with_state(AlertState.OPEN)], now)
    return tmp_path


def test_list_ack_and_list_again(data_dir: Path) -> None:
    listed = runner.invoke(app, ["alerts", "list"])
    assert listed.exit_code == 0, listed.output
    [row] = [line for line in listed.output.splitlines() if "gymnase-batum" in line]
    assert row.split()[:3] == ["1", "gymnase-batum", "heating_unoccupied"]
    assert "2026-01-10 18:00" in row
    assert "45 €" in row
    assert "open" in row

    acked = runner.invoke(app, ["alerts", "ack", "1", "--by", "Durand"])
    assert acked.exit_code == 0, acked.output
    assert "acknowledged by Durand" in acked.output
    assert AlertRegister(alerts_path(data_dir)).alert(1).acked_by == "Durand"  # persisted in the file
    assert "acked by Durand" in runner.invoke(app, ["alerts", "list"]).output


def test_unknown_alert_id_is_one_line_exit_2(data_dir: Path) -> None:
    result = runner.invoke(app, ["alerts", "ack", "99"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: no alert 99 in {alerts_path(data_dir)}"]


def test_mute_then_unmute(data_dir: Path) -> None:
    muted = runner.invoke(
        app, ["alerts", "mute", "gymnase-batum", "--inventory", INVENTORY, "--until", "2099-01-31", "--why", "travaux"]
    )
    assert muted.exit_code == 0, muted.output
    assert "muted until 2099-02-01 00:00" in muted.output
    [mute] = AlertRegister(alerts_path(data_dir)).mutes()
    assert (mute.building, mute.kind, mute.why) == ("gymnase-batum", None, "travaux")
    assert mute.until == datetime(2099, 1, 31, 23, tzinfo=UTC)  # the end of the local day (CET)
    assert "muted until 2099-02-01 00:00" in runner.invoke(app, ["alerts", "list"]).output

    assert runner.invoke(app, ["alerts", "unmute", "gymnase-batum"]).exit_code == 0
    assert not AlertRegister(alerts_path(data_dir)).mutes()
    again = runner.invoke(app, ["alerts", "unmute", "gymnase-batum"])
    assert again.exit_code == 2
    assert "no mute on building gymnase-batum" in again.output


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["nowhere", "--until", "2099-01-01"], "unknown building 'nowhere'"),
        (["gymnase-batum", "--until", "2099-01-01", "--kind", "fire"], "unknown kind of alert 'fire'"),
        (["gymnase-batum", "--until", "someday"], "--until 'someday' is neither a date"),
        (["gymnase-batum", "--until", "2001-01-01"], "--until 2001-01-01 is already past"),
        # Hostile-input round: an OverflowError traceback (exit 1).
        (["gymnase-batum", "--until", "9999-12-31"], "--until '9999-12-31' is outside 1990-01-01 .. 2099-12-31"),
        (["gymnase-batum", "--until", "9999-12-31T23:30"], "--until '9999-12-31T23:30' is outside"),
    ],
)
def test_mute_refuses_what_it_cannot_use(data_dir: Path, args: list[str], named: str) -> None:
    result = runner.invoke(app, ["alerts", "mute", *args, "--inventory", INVENTORY])
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"error: {named}")
    assert not AlertRegister(alerts_path(data_dir)).mutes()


def test_list_shows_a_mail_failed_for_good(data_dir: Path) -> None:
    register = AlertRegister(alerts_path(data_dir))
    [mail] = register.pending_mails()
    assert "mail failed" not in runner.invoke(app, ["alerts", "list", "--all"]).output
    with register.transaction() as db:  # as flush marks a mail the server answered 550
        db.execute("UPDATE outbox SET status = 'failed', last_error = '550 no such user' WHERE id = ?", (mail.id,))
    listed = runner.invoke(app, ["alerts", "list", "--all"])
    assert listed.exit_code == 0, listed.output
    [row] = [line for line in listed.output.splitlines() if "gymnase-batum" in line]
    assert f"mail failed to {mail.recipient}" in row


def test_mute_without_the_service_s_register_is_refused_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator's shell without the service's ECONOME_DATA_DIR: the mute would land in a register nobody reads."""
    monkeypatch.setenv("ECONOME_DATA_DIR", str(tmp_path / "not-the-service-s"))
    result = runner.invoke(app, ["alerts", "mute", "gymnase-batum", "--inventory", INVENTORY, "--until", "2099-01-01"])
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"error: no alert register {alerts_path(tmp_path / 'not-the-service-s')}")
    assert "ECONOME_DATA_DIR" in line
    assert not alerts_path(tmp_path / "not-the-service-s").exists()


def test_an_alert_id_out_of_range_is_one_line_exit_2(data_dir: Path) -> None:
    result = runner.invoke(app, ["alerts", "ack", "99999999999999999999"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: no alert 99999999999999999999 in {alerts_path(data_dir)}"]


def test_status_reads_the_register_while_the_service_holds_its_write_lock(data_dir: Path) -> None:
    """``econome status`` opens the register read-only: nothing created, migrated or locked, so it answers at once
    while ``econome run`` writes (it waited up to 30 s behind a write, then called the file not readable)."""
    import sqlite3
    from contextlib import closing

    from econome.cli_status import _alerts

    path = alerts_path(data_dir)
    before = path.read_bytes()
    with closing(sqlite3.connect(path, isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")  # the service in the middle of a write
        line, data, per_building = _alerts(path)
        writer.execute("ROLLBACK")
    assert "1 open in 1 building" in line, line
    assert data["open"] == 1
    assert per_building == {"gymnase-batum": (1, "heating_unoccupied")}
    assert path.read_bytes() == before
    with pytest.raises(sqlite3.OperationalError):
        with AlertRegister(path, read_only=True).transaction() as db:
            db.execute("DELETE FROM alerts")


def test_status_names_a_daily_digest_the_mail_server_did_not_take(data_dir: Path) -> None:
    """A digest is rebuilt at each flush, so its failure left no trace: with every alert mail sent, a relay down at
    the digest hour showed an outbox with nothing wrong. It is recorded now, and ``econome status`` names it (a
    problem: exit 1) until the digest goes."""
    import sqlite3
    from contextlib import closing
    from zoneinfo import ZoneInfo

    from econome.cli_status import _outbox
    from econome.localservers import free_port

    path = alerts_path(data_dir)
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("UPDATE outbox SET status = 'sent'")  # the opening mail went out
    tz = ZoneInfo("Europe/Paris")
    now = datetime(2026, 1, 12, 7, 30, tzinfo=UTC)  # 08:30 in Paris, past the digest hour (7)
    assert _outbox(path, now, tz, ())[1]["problem"] is None
    down = EmailConfig(host="127.0.0.1", port=free_port(), security="none", sender="econome@valmont.example")
    outbox = MailOutbox(path, down, load_inventory(Path(INVENTORY)), ManualClock(now))
    assert outbox._flush(now) == 0  # nobody listens there
    line, data = _outbox(path, now, tz, ())
    assert data["problem"] == "1 digest not delivered", line
    assert data["digests_not_delivered"] == 1
    assert "PROBLEM" in line
    with closing(sqlite3.connect(path, isolation_level=None)) as db:  # sent at a later flush (MailOutbox._mark_sent)
        db.execute("INSERT INTO digests (recipient, local_date, sent_at) SELECT recipient, local_date, at"
                   " FROM digest_failures")
    assert _outbox(path, now, tz, ())[1]["problem"] is None


def test_list_of_a_building_never_alerted_names_the_buildings_that_were(data_dir: Path) -> None:
    """A typo in --building lists nothing, as a quiet building does: a note on stderr tells them apart."""
    typo = runner.invoke(app, ["alerts", "list", "--building", "gymnase-batun"])
    assert typo.exit_code == 0, typo.output
    assert "0 alerts" in typo.stdout
    assert "no alert of building 'gymnase-batun' was ever registered" in typo.stderr
    assert "buildings with alerts: gymnase-batum" in typo.stderr
    known = runner.invoke(app, ["alerts", "list", "--building", "gymnase-batum"])
    assert "1 alerts" in known.stdout
    assert "note:" not in known.stderr
    checked = runner.invoke(app, ["alerts", "list", "--building", "gymnase-batun", "--inventory", INVENTORY])
    assert checked.exit_code == 2
    assert "unknown building 'gymnase-batun'" in checked.stderr


def test_list_reads_the_register_while_the_service_holds_its_write_lock(data_dir: Path) -> None:
    """``econome alerts list`` opens the register read-only, as ``status``: it answers while the service writes."""
    import sqlite3
    from contextlib import closing

    path = alerts_path(data_dir)
    before = path.read_bytes()
    with closing(sqlite3.connect(path, isolation_level=None, timeout=0.1)) as writer:
        writer.execute("BEGIN IMMEDIATE")  # the service in the middle of a write
        t0 = time.monotonic()
        listed = runner.invoke(app, ["alerts", "list"])
        waited = time.monotonic() - t0
        writer.execute("ROLLBACK")
    assert listed.exit_code == 0, listed.output
    assert "1 alerts" in listed.stdout
    assert waited < 10, waited  # a writer would wait for the lock (30 s) first
    assert path.read_bytes() == before
