"""The durable outbox against a real SMTP server (aiosmtpd on loopback): dedupe, resolution, retry, digest, mute, ack.

Time is given to ``queue`` and ``flush`` (a stepped clock), never waited for.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import email.utils
import logging
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from anomalies.alerts import EmailConfig
from anomalies.events import AlertState, AnomalyEvent, _sample_event
from anomalies.notify import MailOutbox
from inventory import Inventory, load_inventory
from streams.clock import ManualClock

ROOT = Path(__file__).resolve().parents[2]
ADVISOR = "cep@valmont.example"


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        self.messages.append(email.message_from_bytes(raw, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 OK"

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Server:
    """An aiosmtpd server on a fixed port, started and stopped at will."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.inbox = _Inbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def server() -> Iterator[_Server]:
    smtp = _Server()
    smtp.start()
    try:
        yield smtp
    finally:
        smtp.stop()


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return load_inventory(ROOT / "examples" / "commune.yaml")


T0 = datetime(2026, 1, 12, 4, tzinfo=UTC)  # 05:00 in Valmont, before the digest hour


def _outbox(tmp_path: Path, inventory: Inventory, port: int, **settings: object) -> MailOutbox:
    config = EmailConfig.model_validate(
        {"host": "127.0.0.1", "port": port, "security": "none", "sender": "econome@valmont.example", **settings}
    )
    return MailOutbox(tmp_path / "detect" / "alerts.sqlite", config, inventory, ManualClock(T0))


def _event(state: AlertState, start: datetime = datetime(2026, 1, 10, 17, tzinfo=UTC), **changes: object) -> AnomalyEvent:
    return replace(_sample_event(), state=state, start=start, end=start + timedelta(hours=36), **changes)  # type: ignore[arg-type]


async def test_the_same_events_queued_twice_send_one_mail(tmp_path: Path, inventory: Inventory, server: _Server) -> None:
    outbox = _outbox(tmp_path, inventory, server.port)
    outbox.queue([_event(AlertState.OPEN)], T0)
    outbox.queue([_event(AlertState.OPEN)], T0)  # the pass replayed after a crash

    assert await outbox.flush(T0) == 1
    assert await outbox.flush(T0 + timedelta(minutes=5)) == 0
    # A restart (a new outbox on the same file) replaying the pass again sends nothing either.
    again = _outbox(tmp_path, inventory, server.port)
    again.queue([_event(AlertState.OPEN)], T0)
    assert await again.flush(T0 + timedelta(minutes=10)) == 0
    assert len(server.inbox.messages) == 1
    message = server.inbox.messages[0]
    assert message["To"] == ADVISOR
    assert str(message["Subject"]).startswith("[Econome] Alerte\u00a0: Gymnase Batum")
    assert any(part.get_content_type() == "image/png" for part in message.walk())


async def test_opened_then_resolved_sends_one_alert_and_one_resolution(
    tmp_path: Path, inventory: Inventory, server: _Server
) -> None:
    outbox = _outbox(tmp_path, inventory, server.port)
    outbox.queue([_event(AlertState.OPEN)], T0)
    assert await outbox.flush(T0) == 1
    outbox.queue([_event(AlertState.ONGOING)], T0 + timedelta(minutes=20))
    assert await outbox.flush(T0 + timedelta(minutes=20)) == 0
    outbox.queue([_event(AlertState.RESOLVED)], T0 + timedelta(minutes=40))
    outbox.queue([_event(AlertState.RESOLVED)], T0 + timedelta(minutes=40))
    assert await outbox.flush(T0 + timedelta(minutes=40)) == 1

    subjects = server.inbox.subjects()
    assert len(subjects) == 2
    assert subjects[0].startswith("[Econome] Alerte\u00a0: Gymnase Batum")
    assert subjects[1].startswith("[Econome] Résolu\u00a0: Gymnase Batum")
    [alert] = outbox.register.alerts(include_resolved=True)
    assert alert.state is AlertState.RESOLVED
    assert alert.resolved_at == T0 + timedelta(minutes=40)


async def test_an_alert_first_seen_resolved_gets_both_mails_and_ongoing_alone_none(
    tmp_path: Path, inventory: Inventory, server: _Server
) -> None:
    outbox = _outbox(tmp_path, inventory, server.port)
    outbox.queue([_event(AlertState.RESOLVED)], T0)  # opened and closed during a catch-up
    assert await outbox.flush(T0) == 2
    outbox.queue([_event(AlertState.ONGOING, start=datetime(2026, 1, 11, tzinfo=UTC))], T0)  # first seen ongoing
    assert await outbox.flush(T0) == 1
    assert [s.split("\u00a0:")[0] for s in server.inbox.subjects()] == [
        "[Econome] Alerte", "[Econome] Résolu", "[Econome] Alerte"]


async def test_no_resolution_notice_without_send_resolved(tmp_path: Path, inventory: Inventory, server: _Server) -> None:
    outbox = _outbox(tmp_path, inventory, server.port, send_resolved=False)
    outbox.queue([_event(AlertState.OPEN)], T0)
    outbox.queue([_event(AlertState.RESOLVED)], T0 + timedelta(hours=1))
    assert await outbox.flush(T0 + timedelta(hours=1)) == 1
    assert len(server.inbox.messages) == 1


async def test_smtp_down_keeps_the_mail_for_the_next_flush(
    tmp_path: Path, inventory: Inventory, caplog: pytest.LogCaptureFixture
) -> None:
    smtp = _Server()  # not started: the port refuses connections
    outbox = _outbox(tmp_path, inventory, smtp.port)
    outbox.queue([_event(AlertState.OPEN)], T0)
    with caplog.at_level(logging.ERROR, logger="anomalies.notify"):
        assert await outbox.flush(T0) == 0  # logged, not raised
    [pending] = outbox.register.pending_mails()
    assert pending.attempts == 1
    assert f"127.0.0.1:{smtp.port}" in (pending.last_error or "")
    assert any(f"mail server 127.0.0.1:{smtp.port}" in r.getMessage() for r in caplog.records)

    smtp.start()
    try:
        assert await outbox.flush(T0 + timedelta(minutes=5)) == 1
        assert await outbox.flush(T0 + timedelta(minutes=10)) == 0
    finally:
        smtp.stop()
    assert not outbox.register.pending_mails()
    assert len(smtp.inbox.messages) == 1


async def test_digest_once_at_its_local_hour_with_costs_and_resolved(
    tmp_path: Path, inventory: Inventory, server: _Server
) -> None:
    outbox = _outbox(tmp_path, inventory, server.port, digest_hour=7)
    leak = _event(AlertState.OPEN, start=datetime(2026, 1, 11, 1, tzinfo=UTC), kind="water_leak", usage="water",
                  excess_kwh=0.0, excess_m3=3.5, excess_eur=14.0, excess_kgco2e=0.0)  # fmt: skip
    stuck = _event(AlertState.OPEN, start=datetime(2026, 1, 11, 2, tzinfo=UTC), kind="stale_counter", point="gym-gaz",
                   excess_kwh=0.0, excess_eur=0.0, excess_kgco2e=0.0)  # fmt: skip
    outbox.queue([_event(AlertState.OPEN), leak, stuck], T0)
    assert await outbox.flush(T0) == 3  # the three alert mails; 05:00 local, no digest yet
    assert await outbox.flush(datetime(2026, 1, 12, 5, 59, tzinfo=UTC)) == 0  # 06:59 local
    assert await outbox.flush(datetime(2026, 1, 12, 6, tzinfo=UTC)) == 1  # 07:00 local: the digest
    assert await outbox.flush(datetime(2026, 1, 12, 6, 30, tzinfo=UTC)) == 0  # not twice the same day
    assert await outbox.flush(datetime(2026, 1, 12, 22, tzinfo=UTC)) == 0

    digest = server.inbox.messages[-1]
    assert str(digest["Subject"]) == "[Econome] Synthèse du 12/01/2026\u00a0: 2 alertes ouvertes, 59\u00a0€"
    text = digest.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert "Alertes ouvertes\u00a0:" in text
    assert "Gymnase Batum — chauffage en inoccupation, depuis le 10/01 18:00 — 412\u00a0kWh, 45\u00a0€, 94\u00a0kgCO₂e" in text
    assert "fuite d'eau probable, depuis le 11/01 02:00 — 3,5\u00a0m³, 14\u00a0€" in text
    assert "Problèmes de données\u00a0:" in text
    assert "compteur bloqué (point gym-gaz)" in text
    assert "Résolues" not in text

    # The leak ends in the day; the next morning's digest reports it resolved, once, and no longer as open.
    outbox.queue([replace(leak, state=AlertState.RESOLVED)], datetime(2026, 1, 12, 15, tzinfo=UTC))
    assert await outbox.flush(datetime(2026, 1, 12, 15, tzinfo=UTC)) == 1  # the resolution notice
    assert await outbox.flush(datetime(2026, 1, 13, 6, 5, tzinfo=UTC)) == 1
    text = server.inbox.messages[-1].get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    resolved = text.split("Résolues depuis la dernière synthèse\u00a0:")[1]
    assert "fuite d'eau probable" in resolved
    assert "fuite d'eau probable" not in text.split("Résolues")[0]
    assert await outbox.flush(datetime(2026, 1, 14, 6, 5, tzinfo=UTC)) == 1
    assert "fuite d'eau" not in server.inbox.messages[-1].get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]


async def test_influxdb_down_at_the_digest_hour_holds_back_no_mail(tmp_path: Path, inventory: Inventory) -> None:
    """A failed detection pass (InfluxDB down) still sends what earlier passes queued, and the digest at its hour."""
    from anomalies.live import LiveDetector
    from streams.influx import InfluxConfig

    smtp = _Server()  # down at 05:00, when a pass queues the alert
    outbox = _outbox(tmp_path, inventory, smtp.port, digest_hour=7)
    outbox.queue([_event(AlertState.OPEN)], T0)
    assert await outbox.flush(T0) == 0
    smtp.start()
    try:
        influx_down = InfluxConfig(url=f"http://127.0.0.1:{_free_port()}", database="econome")
        detector = LiveDetector(inventory, influx_down, tmp_path / "detect" / "state.npz", outbox)
        assert await detector.tick(datetime(2026, 1, 12, 6, 5, tzinfo=UTC)) is None  # 07:05 local: the pass fails
    finally:
        smtp.stop()
    assert [s.split("\u00a0:")[0] for s in smtp.inbox.subjects()] == ["[Econome] Alerte", "[Econome] Synthèse du 12/01/2026"]
    assert not outbox.register.pending_mails()


async def test_a_daily_detection_pass_still_sends_the_digest_at_its_hour(
    tmp_path: Path, inventory: Inventory, server: _Server
) -> None:
    """``ECONOME_DETECT_EVERY=1d``: passes at 00:05 UTC (01:05 in Valmont), the digest of 07:00 goes at 07:00."""
    from anomalies.live import LiveConfig, LiveDetector
    from streams.influx import InfluxConfig

    start = datetime(2026, 1, 12, 0, 5, tzinfo=UTC)
    outbox = _outbox(tmp_path, inventory, server.port, digest_hour=7)
    outbox.queue([_event(AlertState.OPEN)], start)
    clock = ManualClock(start)
    passes: asyncio.Queue[datetime] = asyncio.Queue()
    influx_down = InfluxConfig(url=f"http://127.0.0.1:{_free_port()}", database="econome")  # passes fail fast
    detector = LiveDetector(inventory, influx_down, tmp_path / "detect" / "state.npz", outbox,
                            live=LiveConfig(every=timedelta(days=1)), on_pass=lambda _: passes.put_nowait(clock.now()))
    task = asyncio.create_task(detector.serve(clock), name="live-detection")

    async def mails(count: int) -> list[str]:
        while len(server.inbox.messages) < count:  # the SMTP server's own thread receives them
            await asyncio.sleep(0.02)
        return [s.split("\u00a0:")[0] for s in server.inbox.subjects()]

    try:
        await asyncio.wait_for(passes.get(), timeout=60)  # the pass at start
        assert await asyncio.wait_for(mails(1), timeout=30) == ["[Econome] Alerte"]
        clock.advance(timedelta(hours=5, minutes=55))  # 07:00 in Valmont; the next pass is at 01:05 tomorrow
        assert await asyncio.wait_for(mails(2), timeout=30) == ["[Econome] Alerte", "[Econome] Synthèse du 12/01/2026"]
        clock.advance(timedelta(hours=18, minutes=5))  # the next pass
        assert await asyncio.wait_for(passes.get(), timeout=60) == datetime(2026, 1, 13, 0, 5, tzinfo=UTC)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(server.inbox.messages) == 2


async def test_digest_in_english_for_an_english_recipient(tmp_path: Path, inventory: Inventory, server: _Server) -> None:
    outbox = _outbox(tmp_path, inventory, server.port, languages={ADVISOR: "en"})
    outbox.queue([_event(AlertState.OPEN, excess_eur=1234.5)], T0)
    assert await outbox.flush(datetime(2026, 1, 12, 6, tzinfo=UTC)) == 2
    digest = server.inbox.messages[-1]
    assert str(digest["Subject"]) == "[Econome] Digest of 12/01/2026: 1 open alert, 1,234\u00a0€"


@pytest.mark.parametrize(
    ("before", "at_hour", "later"),
    [
        # 2026-03-29: 02:00 local does not exist (01:59 CET → 03:00 CEST); the digest of 02:00 goes at 03:00.
        (datetime(2026, 3, 29, 0, 59, tzinfo=UTC), datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 3, 29, 2, tzinfo=UTC)),
        # 2026-10-25: 02:00-03:00 local happens twice (CEST, then CET); one digest.
        (datetime(2026, 10, 24, 23, 59, tzinfo=UTC), datetime(2026, 10, 25, 0, tzinfo=UTC), datetime(2026, 10, 25, 1, tzinfo=UTC)),  # noqa: E501
    ],
    ids=["spring-forward", "fall-back"],
)
async def test_digest_once_on_dst_days(
    tmp_path: Path, inventory: Inventory, server: _Server, before: datetime, at_hour: datetime, later: datetime
) -> None:
    outbox = _outbox(tmp_path, inventory, server.port, digest_hour=2)
    outbox.queue([_event(AlertState.OPEN, start=before - timedelta(days=1))], before - timedelta(hours=2))
    # The alert mail, and the digest of the day before (23:00 local is past its hour).
    assert await outbox.flush(before - timedelta(hours=2)) == 2
    assert await outbox.flush(before) == 0
    assert await outbox.flush(at_hour) == 1
    assert await outbox.flush(later) == 0
    assert await outbox.flush(later + timedelta(minutes=30)) == 0
    assert sum(at_hour.strftime("%d/%m/%Y") in s for s in server.inbox.subjects()) == 1


async def test_mute_stops_mails_of_the_building_until_the_date(tmp_path: Path, inventory: Inventory, server: _Server) -> None:
    outbox = _outbox(tmp_path, inventory, server.port)
    until = T0 + timedelta(days=2)
    outbox.register.mute("gymnase-batum", None, until, "Durand", "travaux chaufferie", T0)
    during = _event(AlertState.OPEN, start=T0 - timedelta(hours=5))
    outbox.queue([during], T0)
    assert await outbox.flush(T0) == 0
    assert await outbox.flush(T0 + timedelta(hours=6)) == 0  # digest hour: nothing to say of a muted building
    [alert] = outbox.register.alerts()
    assert alert.muted  # still registered
    assert len(outbox.register.pending_mails()) == 1  # held while the mute runs, judged again at each flush

    after = until + timedelta(hours=1)
    outbox.queue([replace(during, state=AlertState.RESOLVED)], after)  # its end is not announced either
    fresh = _event(AlertState.OPEN, start=until - timedelta(hours=3))
    outbox.queue([fresh], after)
    assert await outbox.flush(after) == 1  # mails resume for alerts after the mute
    assert server.inbox.subjects() == [server.inbox.subjects()[0]]
    assert server.inbox.subjects()[0].startswith("[Econome] Alerte\u00a0: Gymnase Batum")


async def test_a_kind_mute_leaves_the_other_kinds(tmp_path: Path, inventory: Inventory, server: _Server) -> None:
    outbox = _outbox(tmp_path, inventory, server.port)
    outbox.register.mute("gymnase-batum", "water_leak", T0 + timedelta(days=1), "Durand", "", T0)
    outbox.queue([_event(AlertState.OPEN), _event(AlertState.OPEN, kind="water_leak", usage="water")], T0)
    assert await outbox.flush(T0) == 1
    assert "chauffage en inoccupation" in server.inbox.subjects()[0]


async def test_ack_is_persisted_and_shown_in_the_digest(tmp_path: Path, inventory: Inventory, server: _Server) -> None:
    outbox = _outbox(tmp_path, inventory, server.port)
    outbox.queue([_event(AlertState.OPEN)], T0)
    assert await outbox.flush(T0) == 1
    [alert] = outbox.register.alerts()
    outbox.register.ack(alert.id, "M. Durand", T0 + timedelta(minutes=30))

    restarted = _outbox(tmp_path, inventory, server.port)
    [acked] = restarted.register.alerts()
    assert (acked.acked_by, acked.acked_at) == ("M. Durand", T0 + timedelta(minutes=30))
    assert await restarted.flush(datetime(2026, 1, 12, 6, tzinfo=UTC)) == 1
    text = server.inbox.messages[-1].get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert "Alertes ouvertes" not in text
    assert f"Alertes prises en compte\u00a0:\n- #{alert.id} Gymnase Batum" in text
    assert "prise en compte par M. Durand" in text


async def test_an_alert_opened_during_a_mute_is_mailed_when_the_mute_ends(
    tmp_path: Path, inventory: Inventory, server: _Server
) -> None:
    outbox = _outbox(tmp_path, inventory, server.port)
    until = T0 + timedelta(hours=1, minutes=30)  # before the digest hour
    outbox.register.mute("gymnase-batum", None, until, "Durand", "travaux", T0)
    outbox.queue([_event(AlertState.OPEN, start=T0 - timedelta(hours=5))], T0)
    assert await outbox.flush(T0) == 0
    assert await outbox.flush(T0 + timedelta(hours=1)) == 0
    [held] = outbox.register.alerts()
    assert held.muted
    # Still open when the mute ends: its opening mail goes then, and it is in the next digest.
    assert await outbox.flush(until) == 1
    assert server.inbox.subjects()[0].startswith("[Econome] Alerte\u00a0: Gymnase Batum")
    assert await outbox.flush(datetime(2026, 1, 12, 6, tzinfo=UTC)) == 1
    assert "1 alerte ouverte" in server.inbox.subjects()[1]


async def test_unmute_releases_the_alerts_it_held(tmp_path: Path, inventory: Inventory, server: _Server) -> None:
    outbox = _outbox(tmp_path, inventory, server.port)
    outbox.register.mute("gymnase-batum", None, T0 + timedelta(days=5), "Durand", "", T0)
    outbox.queue([_event(AlertState.OPEN, start=T0 - timedelta(hours=5))], T0)
    assert await outbox.flush(T0) == 0
    assert outbox.register.unmute("gymnase-batum") == 1
    assert await outbox.flush(T0 + timedelta(minutes=5)) == 1
    # Later resolved: its resolution notice goes too (it was announced).
    outbox.queue([_event(AlertState.RESOLVED, start=T0 - timedelta(hours=5))], T0 + timedelta(hours=1))
    assert await outbox.flush(T0 + timedelta(hours=1)) == 1
    assert len(server.inbox.messages) == 2


async def test_an_announced_alert_resolved_under_a_mute_is_in_the_next_digest(
    tmp_path: Path, inventory: Inventory, server: _Server
) -> None:
    # Claims review: an alert mailed before a mute, resolved under it, had its resolution notice sent when the
    # mute ended but was left out of the next digest's resolved alerts (the mute's mark read as "never announced").
    outbox = _outbox(tmp_path, inventory, server.port)
    start = T0 - timedelta(hours=5)
    outbox.queue([_event(AlertState.OPEN, start=start)], T0)
    assert await outbox.flush(T0) == 1
    outbox.register.mute("gymnase-batum", None, T0 + timedelta(minutes=30), "Durand", "", T0)
    outbox.queue([_event(AlertState.RESOLVED, start=start)], T0 + timedelta(minutes=10))
    assert await outbox.flush(T0 + timedelta(minutes=10)) == 0  # the resolution held by the mute
    assert await outbox.flush(T0 + timedelta(hours=1)) == 1  # and sent once it ends
    assert await outbox.flush(datetime(2026, 1, 12, 6, tzinfo=UTC)) == 1  # 07:00 local: the digest
    text = server.inbox.messages[-1].get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert "chauffage en inoccupation" in text.split("Résolues depuis la dernière synthèse\u00a0:")[1]


async def test_a_mail_that_cannot_be_written_is_failed_and_the_others_sent(
    tmp_path: Path, inventory: Inventory, server: _Server
) -> None:
    outbox = _outbox(tmp_path, inventory, server.port)
    outbox.queue([_event(AlertState.OPEN), _event(AlertState.OPEN, kind="water_leak", usage="water")], T0)
    # A recipient queued before addresses were checked (an older register): a header injection.
    with outbox.register.transaction() as db:
        db.execute("UPDATE outbox SET recipient = ? WHERE id = 1", ("a@x.fr\r\nBcc: x@y.fr",))
    assert await outbox.flush(T0) == 1
    assert len(server.inbox.messages) == 1
    assert "fuite" in server.inbox.subjects()[0]
    with outbox.register.transaction() as db:
        status, error = db.execute("SELECT status, last_error FROM outbox WHERE id = 1").fetchone()
    assert status == "failed"
    assert "cannot write the mail" in error
    assert outbox.register.pending_mails() == []
    assert await outbox.flush(T0 + timedelta(minutes=5)) == 0  # not tried again


def test_a_register_of_the_previous_schema_is_migrated(tmp_path: Path) -> None:
    import sqlite3
    from contextlib import closing

    from anomalies.notify import AlertRegister

    path = tmp_path / "alerts.sqlite"
    with closing(sqlite3.connect(path)) as db:
        db.execute(
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, dedupe TEXT NOT NULL UNIQUE, alert_id INTEGER,"
            " mail TEXT, recipient TEXT, created TEXT, status TEXT NOT NULL DEFAULT 'pending'"
            " CHECK (status IN ('pending', 'sent', 'muted')), sent_at TEXT, attempts INTEGER NOT NULL DEFAULT 0,"
            " last_error TEXT)"
        )
        db.execute("INSERT INTO outbox (dedupe, alert_id, mail, recipient, created) VALUES ('k', 1, 'opened', 'a@b.fr', 't')")
        db.commit()
    register = AlertRegister(path)
    with register.transaction() as db:
        db.execute("UPDATE outbox SET status = 'failed' WHERE dedupe = 'k'")
        assert db.execute("SELECT recipient, status FROM outbox").fetchall() == [("a@b.fr", "failed")]


async def test_alerts_closed_by_a_reset_get_a_digest_line_and_no_resolution_mail(
    tmp_path: Path, inventory: Inventory, server: _Server
) -> None:
    outbox = _outbox(tmp_path, inventory, server.port)
    outbox.queue([_event(AlertState.OPEN)], T0)
    assert await outbox.flush(T0) == 1
    assert outbox.reset(T0 + timedelta(minutes=10), everything=True) == 1
    assert outbox.register.alerts() == []
    assert await outbox.flush(T0 + timedelta(minutes=20)) == 0  # no resolution notice
    assert await outbox.flush(datetime(2026, 1, 12, 6, tzinfo=UTC)) == 1
    text = server.inbox.messages[-1].get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert "Alertes ouvertes" not in text
    assert "Closes sans résolution (détection redémarrée)\u00a0:\n- #1 Gymnase Batum" in text
    # The fresh detection seeing the same episode again opens it again, with no second opening mail.
    outbox.queue([_event(AlertState.ONGOING)], datetime(2026, 1, 12, 7, tzinfo=UTC))
    assert [a.id for a in outbox.register.alerts()] == [1]
    assert await outbox.flush(datetime(2026, 1, 12, 7, tzinfo=UTC)) == 0


async def test_alerts_of_a_building_left_out_of_the_inventory_are_closed(tmp_path: Path, inventory: Inventory) -> None:
    outbox = _outbox(tmp_path, inventory, 25)
    outbox.queue([_event(AlertState.OPEN), _event(AlertState.OPEN, building="ancienne-poste")], T0)
    assert outbox.reset(T0, everything=False) == 1
    assert [a.building for a in outbox.register.alerts()] == ["gymnase-batum"]


class _Refusing(_Inbox):
    """Refuses the DATA of mails whose subject holds a word, with a given answer; accepts the others."""

    def __init__(self, word: str, answer: str) -> None:
        super().__init__()
        self.word = word
        self.answer = answer
        self.refused = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        if self.word in str(message["Subject"]):
            self.refused += 1
            return self.answer
        return await super().handle_DATA(server, session, envelope)


def _refusing_server(word: str, answer: str) -> tuple[Controller, _Refusing, int]:
    handler = _Refusing(word, answer)
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, handler, port


async def test_a_mail_refused_for_good_is_failed_and_never_sent_again(tmp_path: Path, inventory: Inventory) -> None:
    controller, handler, port = _refusing_server("fuite", "554 5.7.1 message rejected by policy")
    try:
        outbox = _outbox(tmp_path, inventory, port)
        outbox.queue([_event(AlertState.OPEN), _event(AlertState.OPEN, kind="water_leak", usage="water")], T0)
        assert await outbox.flush(T0) == 1  # the other mail is sent
        assert handler.refused == 1
        with outbox.register.transaction() as db:
            rows = db.execute("SELECT status, attempts, last_error FROM outbox ORDER BY id").fetchall()
        assert [r[0] for r in rows] == ["sent", "failed"]
        assert "554" in rows[1][2]
        assert f"127.0.0.1:{port}" in rows[1][2]
        assert outbox.register.pending_mails() == []
        assert [m.recipient for m in outbox.register.failed_mails()] == [ADVISOR]
        assert await outbox.flush(T0 + timedelta(hours=1)) == 0
        assert handler.refused == 1  # not offered to the server again
    finally:
        controller.stop()


async def test_a_mail_refused_for_now_is_kept_and_sent_later(tmp_path: Path, inventory: Inventory) -> None:
    controller, handler, port = _refusing_server("Gymnase", "451 4.7.1 greylisted, try again later")
    try:
        outbox = _outbox(tmp_path, inventory, port)
        outbox.queue([_event(AlertState.OPEN)], T0)
        assert await outbox.flush(T0) == 0
        [pending] = outbox.register.pending_mails()
        assert pending.attempts == 1
        assert "451" in (pending.last_error or "")
        assert outbox.register.failed_mails() == []
        handler.word = "no subject holds this"  # the greylisting is over
        assert await outbox.flush(T0 + timedelta(minutes=10)) == 1
        assert handler.refused == 1
        assert len(handler.messages) == 1
        assert outbox.register.pending_mails() == []
    finally:
        controller.stop()


class _Misbehaving(_Inbox):
    """Refuses one recipient at RCPT (550); drops the connection after the next ``drops`` DATA, before answering."""

    def __init__(self, refused: str, drops: int) -> None:
        super().__init__()
        self.refused = refused
        self.drops = drops

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address == self.refused:
            return f"550 5.1.1 <{address}>: recipient address rejected: user unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.drops:
            self.drops -= 1
            assert server.transport is not None
            server.transport.close()  # the reply to the DATA never comes
            return "421 gone"
        return await super().handle_DATA(server, session, envelope)


async def test_a_connection_dropped_mid_data_keeps_the_mail_and_a_recipient_refused_at_rcpt_fails_it(
    tmp_path: Path, inventory: Inventory, caplog: pytest.LogCaptureFixture
) -> None:
    handler = _Misbehaving(refused="nobody@valmont.example", drops=1)
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        outbox = _outbox(tmp_path, inventory, port)
        outbox.queue([_event(AlertState.OPEN)], T0)
        with caplog.at_level(logging.WARNING, logger="anomalies.notify"):
            assert await outbox.flush(T0) == 0  # logged, not raised
        [pending] = outbox.register.pending_mails()
        assert pending.attempts == 1
        assert f"127.0.0.1:{port}" in (pending.last_error or "")
        assert await outbox.flush(T0 + timedelta(minutes=5)) == 1
        assert len(handler.messages) == 1  # sent once, not lost
        assert handler.messages[0]["To"] == ADVISOR

        handler.refused = ADVISOR  # the advisor's mailbox is closed
        outbox.queue([_event(AlertState.OPEN, kind="water_leak", usage="water")], T0 + timedelta(hours=1))
        with caplog.at_level(logging.WARNING, logger="anomalies.notify"):
            assert await outbox.flush(T0 + timedelta(hours=1)) == 0
        [failed] = outbox.register.failed_mails()
        assert failed.recipient == ADVISOR
        assert "550" in (failed.last_error or "")
        assert "user unknown" in (failed.last_error or "")
        assert outbox.register.pending_mails() == []
        refused = [r.getMessage() for r in caplog.records if "refused for good" in r.getMessage()]
        [line] = refused
        assert ADVISOR in line
        assert f"127.0.0.1:{port}" in line
    finally:
        controller.stop()


class _RefusingSender(_Inbox):
    """Refuses our sender at MAIL FROM with a 5xx (a relay whose account or policy changed) until told otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.answer: str | None = "553 5.7.1 <econome@valmont.example>: Sender address rejected: not owned by user"

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self.answer is not None:
            return self.answer
        envelope.mail_from = address
        return "250 OK"


async def test_our_sender_refused_for_good_keeps_every_mail_for_when_the_relay_is_fixed(
    tmp_path: Path, inventory: Inventory
) -> None:
    """A 5xx to the sender refuses every mail alike: it is the relay's settings, like a refused login, not the mail."""
    handler = _RefusingSender()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        outbox = _outbox(tmp_path, inventory, port)
        outbox.queue([_event(AlertState.OPEN), _event(AlertState.OPEN, kind="water_leak", usage="water")], T0)
        assert await outbox.flush(T0) == 0
        assert outbox.register.failed_mails() == []
        pending = outbox.register.pending_mails()
        assert [m.attempts for m in pending] == [1, 1]
        assert all("553" in (m.last_error or "") and f"127.0.0.1:{port}" in (m.last_error or "") for m in pending)
        handler.answer = None  # the relay is fixed
        assert await outbox.flush(T0 + timedelta(hours=1)) == 2
        assert outbox.register.pending_mails() == []
    finally:
        controller.stop()


async def test_every_mail_has_a_date_and_a_message_id_kept_when_sent_again(
    tmp_path: Path, inventory: Inventory, server: _Server
) -> None:
    """RFC 5322 requires a Date, and large mail services refuse or file as spam a mail without Message-ID.

    A mail sent again after a crash (accepted by the server, not yet marked sent) keeps its Message-ID,
    so that the reader's mail service can drop the copy.
    """
    outbox = _outbox(tmp_path, inventory, server.port)
    outbox.queue([_event(AlertState.OPEN)], T0)
    assert await outbox.flush(T0) == 1
    with outbox.register.transaction() as db:  # the crash between the server's answer and the record
        db.execute("UPDATE outbox SET status = 'pending'")
    assert await outbox.flush(T0 + timedelta(minutes=5)) == 1
    assert await outbox.flush(datetime(2026, 1, 12, 6, tzinfo=UTC)) == 1  # the digest
    first, again, digest = server.inbox.messages
    assert first["Message-ID"] is not None
    assert again["Message-ID"] == first["Message-ID"]
    assert digest["Message-ID"] is not None
    assert digest["Message-ID"] != first["Message-ID"]
    assert str(first["Message-ID"]).endswith("@valmont.example>")
    assert email.utils.parsedate_to_datetime(str(first["Date"])) == T0
    assert email.utils.parsedate_to_datetime(str(again["Date"])) == T0 + timedelta(minutes=5)
    assert email.utils.parsedate_to_datetime(str(digest["Date"])) == datetime(2026, 1, 12, 6, tzinfo=UTC)
