"""Alert mails that survive crashes: the alert register, a durable outbox, resolution notices and the daily digest.

The live detection pass (:mod:`anomalies.live`) hands the events it changed to
a :class:`Notifier`; :class:`MailOutbox` is the one that sends e-mails. It
keeps everything in one SQLite file, ``<data_dir>/detect/alerts.sqlite``
(WAL, ``synchronous=FULL``: a commit is on disk when it returns), shared with
``econome alerts list|ack|mute``:

- ``alerts``, the register: one row per episode (building, usage, kind,
  point, start), with its state, when it was first seen, opened and resolved,
  its last event (JSON, with its chart), who acknowledged it, whether its mails
  were muted. ``alerts.id`` is the id ``econome alerts`` prints.
- ``outbox``: one row per mail and recipient, with a unique dedupe key
  (``opened|…|recipient`` or ``resolved|…|recipient``), created, status
  (pending, sent, muted, failed), sent_at, attempts and the last error.
- ``mutes``: the operator's mutes (building, kind or ``*``, until, by, why).
- ``digests``: (recipient, local date) of each daily digest sent.

:meth:`MailOutbox.queue` records a pass's events in one transaction and is
idempotent: an event queued twice, or a pass replayed after a crash, adds
nothing. It queues one mail per recipient when an alert is first seen
(whatever its state), a resolution notice per recipient when it resolves
(with ``send_resolved``), nothing for an ongoing one.

:meth:`MailOutbox.flush` sends the pending mails over one SMTP session and
marks each one sent as soon as the server accepted it, so a crash can send
again at most the one mail the server was accepting. A mute is judged at each
flush: the mails of a building (or of one kind) an operator muted stay queued
while the mute runs (the alert is registered and marked ``muted``, held); an
alert still open when the mute ends (or is lifted) gets its opening mail then,
and its digest line; one that resolved meanwhile is dropped (its mails marked
``muted``, no resolution notice of an alert nobody was told of).
A server down, a refused login, our sender refused (any answer to ``MAIL
FROM`` but a 552, the mail's size: the relay's account or policy, the same for
every mail), a missing password or a mail refused for now
(a 4xx answer: greylisting, a full mailbox) leave the mails queued,
``attempts`` counted and the error kept (naming the server, never the
password), for the next flush: flush logs, it never raises. A mail the server
refuses for good (a 5xx answer to a recipient, its content or its size: an
unknown mailbox, a policy) is marked ``failed`` with the server's answer and
never sent again (``econome status`` counts it, ``econome alerts list --all``
shows it); a digest so refused is not tried again that day.

Each recipient gets a daily digest at the first flush at or after
``digest_hour`` (local time of the organisation), once per local day (a DST
day too): the open alerts with their cost (€, kWh, kgCO2e), those
acknowledged (listed, not reminded), those resolved since the previous digest
(or the last 24 hours) and the data problems (missing data, stuck meters,
frozen sensors). A recipient with nothing to read gets no digest.

>>> import tempfile
>>> from datetime import UTC, datetime
>>> from inventory import load_inventory
>>> from anomalies.alerts import EmailConfig
>>> from anomalies.events import _sample_event
>>> from streams.clock import ManualClock
>>> now = datetime(2026, 1, 12, 6, tzinfo=UTC)
>>> config = EmailConfig(host="127.0.0.1", security="none", sender="econome@valmont.example")
>>> outbox = MailOutbox(Path(tempfile.mkdtemp()) / "alerts.sqlite", config,
...                     load_inventory(Path("examples/commune.yaml")), ManualClock(now))
>>> outbox.queue([_sample_event()], now)
>>> outbox.queue([_sample_event()], now)
>>> [(a.building, a.kind, a.state.value) for a in outbox.register.alerts()]
[('gymnase-batum', 'heating_unoccupied', 'open')]
>>> len(outbox.register.pending_mails())
1
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import logging
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

from anomalies.alerts import DATA_PROBLEM_KINDS, Digest, DigestEntry, EmailAlerter, EmailConfig
from anomalies.events import AlertState, AnomalyEvent, ChartSeries
from inventory import EmailSettings, Inventory
from streams.clock import Clock
from streams.errors import ConfigError, SinkError

__all__ = [
    "ALERTS_FILE",
    "AlertRecord",
    "AlertRegister",
    "MailOutbox",
    "Mute",
    "Notifier",
    "PendingMail",
    "alerts_path",
]

logger = logging.getLogger(__name__)

ALERTS_FILE = Path("detect") / "alerts.sqlite"
"""The register's path under the data directory (``ECONOME_DATA_DIR``)."""

_RANK = {AlertState.OPEN: 0, AlertState.ONGOING: 1, AlertState.RESOLVED: 2}
_ALL_KINDS = "*"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    building TEXT NOT NULL, usage TEXT NOT NULL, kind TEXT NOT NULL, point TEXT NOT NULL, start TEXT NOT NULL,
    state TEXT NOT NULL, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL, opened_at TEXT NOT NULL,
    resolved_at TEXT, event TEXT NOT NULL, acked_by TEXT, acked_at TEXT, muted INTEGER NOT NULL DEFAULT 0,
    closed TEXT,
    UNIQUE (building, usage, kind, point, start)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe TEXT NOT NULL UNIQUE,
    alert_id INTEGER NOT NULL REFERENCES alerts (id),
    mail TEXT NOT NULL CHECK (mail IN ('opened', 'resolved')),
    recipient TEXT NOT NULL, created TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'muted', 'failed')),
    sent_at TEXT, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_status ON outbox (status, id);
CREATE TABLE IF NOT EXISTS mutes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    building TEXT NOT NULL, kind TEXT NOT NULL, until TEXT NOT NULL, muted_by TEXT NOT NULL,
    why TEXT NOT NULL, created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS digests (
    recipient TEXT NOT NULL, local_date TEXT NOT NULL, sent_at TEXT NOT NULL, PRIMARY KEY (recipient, local_date)
);
CREATE TABLE IF NOT EXISTS digest_failures (
    recipient TEXT NOT NULL, local_date TEXT NOT NULL, at TEXT NOT NULL, error TEXT NOT NULL,
    PRIMARY KEY (recipient, local_date)
);
"""


def alerts_path(data_dir: Path) -> Path:
    """The alert register of a data directory.

    >>> alerts_path(Path("var")).as_posix()
    'var/detect/alerts.sqlite'
    """
    return data_dir / ALERTS_FILE


class Notifier(Protocol):
    """Where a detection pass hands the alerts it opened, continued or resolved."""

    def queue(self, events: Sequence[AnomalyEvent], now: datetime) -> None:
        """Record durably (fsync'd before returning) the events a pass changed.

        The events are alerts opened, ongoing or resolved (``AnomalyEvent.state``).
        Idempotent: the same (building, usage, kind, point, start, state) queued twice is kept once,
        so a pass replayed after a crash queues nothing new. Mails are derived from it: one per opened alert (state OPEN
        or the first time an alert is seen whatever its state), one resolution notice per RESOLVED, none for ONGOING.
        """
        ...

    async def flush(self, now: datetime) -> int:
        """Send what is queued and due, including each recipient's daily digest once its local hour has come.

        Each mail is marked sent as soon as the server accepted it; returns how many were sent. A server down leaves
        them queued for the next flush (logged, never raised).
        """
        ...


def _iso(moment: datetime) -> str:
    # One fixed format in UTC, so that text order is time order in SQL.
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _event_record(event: AnomalyEvent) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for item in fields(AnomalyEvent):
        value = getattr(event, item.name)
        if isinstance(value, datetime):
            value = _iso(value)
        elif isinstance(value, AlertState):
            value = value.value
        elif isinstance(value, ChartSeries):
            value = {
                "times": [_iso(t) for t in value.times], "observed": list(value.observed),
                "expected": list(value.expected), "unit": value.unit,
            }  # fmt: skip
        record[item.name] = value
    return record


def _event_from_record(record: dict[str, Any]) -> AnomalyEvent:
    data = dict(record)
    for name in ("start", "end", "detected_at"):
        data[name] = _time(data[name])
    data["state"] = AlertState(data["state"])
    series = data.get("series")
    if series is not None:
        data["series"] = ChartSeries(
            times=[_time(t) for t in series["times"]], observed=series["observed"],
            expected=series["expected"], unit=series["unit"],
        )  # fmt: skip
    return AnomalyEvent(**data)


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert of the register.

    Attributes:
        id: the id ``econome alerts`` prints.
        state: its state (from its last event).
        first_seen: when a pass first reported it.
        resolved_at: when a pass reported it resolved.
        acked_by: who acknowledged it (``None``: nobody).
        acked_at: when.
        muted: whether a mute held its mails.
        event: its last event.
        closed: why it was closed without a resolution (``reset``: detection restarted from a fresh state,
            or its building left the inventory), ``None`` otherwise.
    """

    id: int
    state: AlertState
    first_seen: datetime
    resolved_at: datetime | None
    acked_by: str | None
    acked_at: datetime | None
    muted: bool
    event: AnomalyEvent
    closed: str | None = None

    @property
    def building(self) -> str:
        """The building's id."""
        return self.event.building

    @property
    def kind(self) -> str:
        """The kind of anomaly."""
        return self.event.kind

    @property
    def is_open(self) -> bool:
        """Open or ongoing."""
        return self.state is not AlertState.RESOLVED


@dataclass(frozen=True, slots=True)
class Mute:
    """An operator's mute: no mail for a building (or one kind of alert in it) until a time.

    Attributes:
        id: its row.
        building: the building's id.
        kind: the kind muted, ``None`` for all.
        until: the end of the mute (excluded).
        by: who muted.
        why: why.
    """

    id: int
    building: str
    kind: str | None
    until: datetime
    by: str
    why: str

    def covers(self, building: str, kind: str, at: datetime) -> bool:
        """Whether this mute silences an alert of ``kind`` in ``building`` at ``at``."""
        return self.building == building and self.kind in (None, kind) and at < self.until


@dataclass(frozen=True, slots=True)
class PendingMail:
    """A mail of the outbox not yet sent.

    Attributes:
        id: its row.
        alert_id: the alert it is about.
        mail: ``opened`` or ``resolved``.
        recipient: its address.
        attempts: failed attempts so far.
        last_error: the last failure.
    """

    id: int
    alert_id: int
    mail: str
    recipient: str
    attempts: int
    last_error: str | None


class AlertRegister:
    """The SQLite file of alerts, mails, mutes and digests; one connection per call, so processes can share it.

    Args:
        path: the file (created with its folder when missing).
        read_only: only read an existing file: nothing is created, migrated or locked for writing, so a
            reader (``econome status``) never waits behind the service's writes (a write raises
            :class:`sqlite3.OperationalError`).
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        if read_only:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=30.0, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            _migrate(db)
            db.executescript(_SCHEMA)  # executescript runs its own transaction

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection in an immediate transaction, committed (and fsync'd) on success, rolled back on error.

        Read-only, a connection that reads (WAL: it sees the last commit, whatever a writer holds).
        """
        if self.read_only:
            with closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30.0)) as db:
                yield db
            return
        with closing(sqlite3.connect(self.path, timeout=30.0, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk when it returns, so a power cut cannot lose a queued mail.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def alerts(
        self, *, include_resolved: bool = False, building: str | None = None, resolved_since: datetime | None = None
    ) -> list[AlertRecord]:
        """The alerts, oldest first: open ones, or all with ``include_resolved``; of one building if given.

        ``resolved_since`` keeps, of the resolved ones, only those resolved after it (the register grows for
        ever; a digest needs the resolved alerts since the previous one only).
        """
        sql = "SELECT id, state, first_seen, resolved_at, acked_by, acked_at, muted, event, closed FROM alerts WHERE 1=1"
        args: list[str] = []
        if not include_resolved:
            sql += " AND state != 'resolved'"
        elif resolved_since is not None:
            sql += " AND (state != 'resolved' OR resolved_at > ?)"
            args.append(_iso(resolved_since))
        if building is not None:
            sql += " AND building = ?"
            args.append(building)
        with self.transaction() as db:
            rows = db.execute(sql + " ORDER BY id", args).fetchall()
        return [_record(row) for row in rows]

    def alert(self, alert_id: int) -> AlertRecord:
        """One alert.

        Raises:
            KeyError: no alert has this id.
        """
        with self.transaction() as db:
            row = db.execute(
                "SELECT id, state, first_seen, resolved_at, acked_by, acked_at, muted, event, closed FROM alerts WHERE id = ?",
                (alert_id,),
            ).fetchone()
        if row is None:
            msg = f"no alert {alert_id}"
            raise KeyError(msg)
        return _record(row)

    def ack(self, alert_id: int, by: str, at: datetime) -> AlertRecord:
        """Acknowledge an alert: the digest lists it without reminding it.

        Raises:
            KeyError: no alert has this id.
        """
        with self.transaction() as db:
            done = db.execute("UPDATE alerts SET acked_by = ?, acked_at = ? WHERE id = ?", (by, _iso(at), alert_id))
        if done.rowcount == 0:
            msg = f"no alert {alert_id}"
            raise KeyError(msg)
        return self.alert(alert_id)

    def mute(self, building: str, kind: str | None, until: datetime, by: str, why: str, at: datetime) -> Mute:
        """Mute a building's mails (or one kind of them) until ``until``."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO mutes (building, kind, until, muted_by, why, created) VALUES (?, ?, ?, ?, ?, ?)",
                (building, kind or _ALL_KINDS, _iso(until), by, why, _iso(at)),
            )
        return Mute(int(cursor.lastrowid or 0), building, kind, until.astimezone(UTC), by, why)

    def unmute(self, building: str, kind: str | None = None) -> int:
        """Remove a building's mutes (of one kind only, if given); returns how many."""
        with self.transaction() as db:
            if kind is None:
                done = db.execute("DELETE FROM mutes WHERE building = ?", (building,))
            else:
                done = db.execute("DELETE FROM mutes WHERE building = ? AND kind = ?", (building, kind))
        return done.rowcount

    def mutes(self, at: datetime | None = None) -> list[Mute]:
        """The mutes, those still running at ``at`` if given."""
        with self.transaction() as db:
            rows = db.execute("SELECT id, building, kind, until, muted_by, why FROM mutes ORDER BY id").fetchall()
        found = [Mute(r[0], r[1], None if r[2] == _ALL_KINDS else r[2], _time(r[3]), r[4], r[5]) for r in rows]
        return [m for m in found if at is None or at < m.until]

    def pending_mails(self) -> list[PendingMail]:
        """The mails not sent yet, in the order they were queued."""
        with self.transaction() as db:
            rows = db.execute(
                "SELECT id, alert_id, mail, recipient, attempts, last_error FROM outbox WHERE status = 'pending' ORDER BY id"
            ).fetchall()
        return [PendingMail(*row) for row in rows]

    def failed_mails(self) -> list[PendingMail]:
        """The mails failed for good (refused with a 5xx answer, or that could not be written), in queue order."""
        with self.transaction() as db:
            rows = db.execute(
                "SELECT id, alert_id, mail, recipient, attempts, last_error FROM outbox WHERE status = 'failed' ORDER BY id"
            ).fetchall()
        return [PendingMail(*row) for row in rows]


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a register made by an older version to the current schema (the outbox's ``failed`` status)."""
    alerts = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'alerts'").fetchone()
    if alerts is not None and "closed TEXT" not in alerts[0]:
        db.execute("ALTER TABLE alerts ADD COLUMN closed TEXT")
    row = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'outbox'").fetchone()
    if row is None or "'failed'" in row[0]:
        return
    copy = "INSERT INTO outbox SELECT * FROM outbox_old; DROP TABLE outbox_old; COMMIT;"
    db.executescript("BEGIN IMMEDIATE; DROP INDEX IF EXISTS outbox_status; ALTER TABLE outbox RENAME TO outbox_old;"
                     + _SCHEMA + copy)


def _record(row: tuple[Any, ...]) -> AlertRecord:
    return AlertRecord(
        id=row[0], state=AlertState(row[1]), first_seen=_time(row[2]),
        resolved_at=_time(row[3]) if row[3] else None, acked_by=row[4],
        acked_at=_time(row[5]) if row[5] else None, muted=bool(row[6]),
        event=_event_from_record(json.loads(row[7])), closed=row[8],
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """A rendered mail and what to record once the server accepted it."""

    message: EmailMessage
    outbox_id: int | None = None
    digest: tuple[str, str] | None = None  # (recipient, local date)


class MailOutbox:
    """The :class:`Notifier` that e-mails advisors, through a durable outbox in SQLite.

    Args:
        path: the SQLite file, normally :func:`alerts_path` of ``ECONOME_DATA_DIR``.
        email_config: the inventory's ``email:`` section; ``None`` keeps the alert register (``econome alerts``,
            ``econome status``) without sending any mail.
        inventory: gives each building's advisors and the organisation's timezone.
        clock: the time of operator actions made through this object.
    """

    def __init__(self, path: Path, email_config: EmailSettings | None, inventory: Inventory, clock: Clock) -> None:
        self.config = None if email_config is None else EmailConfig.of(email_config)
        self.inventory = inventory
        self.clock = clock
        self.register = AlertRegister(path)
        self.alerter = None if self.config is None else EmailAlerter(self.config, inventory)
        self._server_down = False

    def queue(self, events: Sequence[AnomalyEvent], now: datetime) -> None:
        """Record a pass's events and the mails they call for, in one fsync'd transaction; idempotent.

        See :meth:`Notifier.queue`.
        """
        stamp = _iso(now)
        with self.register.transaction() as db:
            for event in events:
                key = (event.building, event.usage, event.kind, event.point or "", _iso(event.start))
                record = json.dumps(_event_record(event))
                row = db.execute(
                    "SELECT id, state, closed FROM alerts"
                    " WHERE building = ? AND usage = ? AND kind = ? AND point = ? AND start = ?",
                    key,
                ).fetchone()
                resolved_at = stamp if event.state is AlertState.RESOLVED else None
                first_time = row is None
                if row is None:
                    cursor = db.execute(
                        "INSERT INTO alerts (building, usage, kind, point, start, state, first_seen, last_seen, opened_at,"
                        " resolved_at, event) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (*key, event.state.value, stamp, stamp, stamp, resolved_at, record),
                    )
                    alert_id = int(cursor.lastrowid or 0)
                else:
                    alert_id = int(row[0])
                    if row[2] is not None:
                        # Closed by a reset and seen again by the fresh detection: the same alert, open again
                        # (its opening mail was sent before; none again).
                        db.execute(
                            "UPDATE alerts SET state = ?, event = ?, last_seen = ?, resolved_at = ?, closed = NULL"
                            " WHERE id = ?",
                            (event.state.value, record, stamp, resolved_at, alert_id),
                        )
                    # A state never goes back: a late ongoing after the resolution changes nothing.
                    elif _RANK[event.state] >= _RANK[AlertState(row[1])]:
                        db.execute(
                            "UPDATE alerts SET state = ?, event = ?, last_seen = ?,"
                            " resolved_at = COALESCE(resolved_at, ?) WHERE id = ?",
                            (event.state.value, record, stamp, resolved_at, alert_id),
                        )
                if self.config is None or self.alerter is None:
                    continue  # no email: section: the register alone (econome alerts, econome status)
                mails = ["opened"] if first_time else []
                if event.state is AlertState.RESOLVED and self.config.send_resolved:
                    mails.append("resolved")
                recipients = self.alerter.recipients(event)
                if mails and not recipients:
                    logger.warning(
                        "no recipient for alert %s of building %s: give the building advisors, or email.default_recipients",
                        event.kind, event.building,
                    )  # fmt: skip
                for mail in mails:
                    for recipient in recipients:
                        db.execute(
                            "INSERT OR IGNORE INTO outbox (dedupe, alert_id, mail, recipient, created) VALUES (?, ?, ?, ?, ?)",
                            ("|".join((mail, *key, recipient)), alert_id, mail, recipient, stamp),
                        )

    def reset(self, now: datetime, *, everything: bool, buildings: Collection[str] | None = None) -> int:
        """Close open alerts detection will not resolve; returns how many.

        With ``everything`` (detection restarted from a fresh state: a first
        start after settings changed, a lost or unreadable state file) every
        open alert, or only those of ``buildings`` when given (the buildings of
        one fresh state of live detection, :func:`anomalies.live.lag_groups`);
        else those of buildings no longer in the inventory. They are
        closed as ``reset``: no resolution notice (nothing was seen to end), one
        line in the next digest. An alert the fresh detection reports again
        (same start) is opened again, with no new opening mail.
        """
        known = {b.id for _, b in self.inventory.buildings()}
        with self.register.transaction() as db:
            rows = db.execute("SELECT id, building FROM alerts WHERE state != 'resolved'").fetchall()
            ids = [(int(r[0]),) for r in rows
                   if (everything and (buildings is None or r[1] in buildings)) or r[1] not in known]
            db.executemany(
                "UPDATE alerts SET state = 'resolved', resolved_at = ?, closed = 'reset' WHERE id = ?",
                [(_iso(now), i) for (i,) in ids],
            )
        if ids:
            why = ("detection restarted from a fresh state" if everything and buildings is None
                   else f"detection of {', '.join(sorted(buildings))} restarted from a fresh state" if everything
                   and buildings is not None else "their building left the inventory")
            logger.warning("alert register %s: %d open alerts closed as reset (%s): no resolution mail, "
                           "a line in the next digest", self.register.path, len(ids), why)
        return len(ids)

    def next_digest(self, now: datetime) -> datetime | None:
        """When the digests next fall due: the first ``digest_hour`` o'clock, local time, after ``now``.

        ``None`` without an ``email:`` section. Live detection flushes then when no pass comes within the hour
        (:meth:`anomalies.live.LiveDetector.serve`: a pass a day at 00:05 UTC would never reach 07:00 local).

        >>> import tempfile
        >>> from inventory import load_inventory
        >>> from streams.clock import ManualClock
        >>> config = EmailConfig(host="127.0.0.1", security="none", sender="econome@valmont.example", digest_hour=7)
        >>> now = datetime(2026, 3, 28, 7, tzinfo=UTC)  # 08:00 in Valmont; tomorrow is the spring-forward day
        >>> outbox = MailOutbox(Path(tempfile.mkdtemp()) / "alerts.sqlite", config,
        ...                     load_inventory(Path("examples/commune.yaml")), ManualClock(now))
        >>> outbox.next_digest(now).isoformat()
        '2026-03-29T05:00:00+00:00'
        """
        if self.config is None:
            return None
        tz = self.inventory.organisation.tz
        day = now.astimezone(tz).date()
        for ahead in range(3):
            at = datetime.combine(day + timedelta(days=ahead), time(self.config.digest_hour), tzinfo=tz).astimezone(UTC)
            if at > now:
                return at
        return None  # pragma: no cover - the digest hour of the day after tomorrow is always ahead

    async def flush(self, now: datetime) -> int:
        """Send the pending mails and the digests due; returns how many the server accepted.

        See :meth:`Notifier.flush`. Never raises for a server down: the mails
        stay queued, with the error, for the next flush.
        """
        return await asyncio.to_thread(self._flush, now)

    def _flush(self, now: datetime) -> int:
        if self.config is None or self.alerter is None:
            return 0
        mutes = self.register.mutes(now)
        pending = self._pending(now, mutes)
        digests = self._digests_due(now, mutes)
        if not pending and not digests:
            return 0
        outgoing: list[_Outgoing] = []
        for outbox_id, mail, recipient, alert in pending:
            event = alert.event if mail == "opened" else alert.event.with_state(AlertState.RESOLVED)
            if mail == "opened" and event.state is not AlertState.OPEN:
                event = event.with_state(AlertState.OPEN)
            try:
                message = self.alerter.render([event], recipient)
            except Exception as exc:  # one mail that cannot be written holds back no other
                reason = f"cannot write the mail of alert {alert.id} to {recipient!r}: {exc}"
                logger.error("%s; marked failed", reason)
                self._mark_dead(outbox_id, reason)
                continue
            _stamp(message, f"{mail}|{alert.id}|{_iso(alert.first_seen)}|{recipient}", now)
            outgoing.append(_Outgoing(message, outbox_id=outbox_id))
        for recipient, day, digest in digests:
            try:
                message = self.alerter.render_digest(digest, recipient)
            except Exception as exc:  # nor one digest
                logger.error("cannot write the digest of %s to %r: %s", day, recipient, exc)
                continue
            _stamp(message, f"digest|{day}|{recipient}", now)
            outgoing.append(_Outgoing(message, digest=(recipient, day)))
        if not outgoing:
            return 0
        done: set[int] = set()
        refused: dict[int, str] = {}
        dead: set[int] = set()

        def on_sent(index: int) -> None:
            done.add(index)
            self._mark_sent(outgoing[index], now)

        def on_refused(index: int, code: int, error: str) -> None:
            refused[index] = error
            if _is_permanent(code):
                # 5xx: refused for good (unknown mailbox, policy); sending it again would be refused again.
                dead.add(index)
                done.add(index)  # not counted as failed below: marked dead here
                self._mark_refused(outgoing[index], error, now)

        error: str | None = None
        try:
            self.alerter.deliver([o.message for o in outgoing], on_sent, on_refused)
        except (SinkError, ConfigError) as exc:
            error = str(exc)
        failed = {i: refused.get(i, error or "") for i in range(len(outgoing)) if i not in done}
        self._mark_failed(outgoing, failed, now)
        accepted = len(done) - len(dead)
        where = f"{self.config.host}:{self.config.port}"
        if error is not None:
            if not self._server_down:
                logger.error("mail server %s: %s; %d mails stay queued for the next flush", where, error, len(failed))
            else:
                logger.debug("mail server %s still failing: %s", where, error)
            self._server_down = True
        elif self._server_down:
            logger.info("mail server %s accepts mails again", where)
            self._server_down = False
        for index, reason in refused.items():
            if index in dead:
                logger.error("mail to %s refused for good, marked failed: %s", outgoing[index].message["To"], reason)
            else:
                logger.warning("mail to %s refused for now, kept for the next flush: %s", outgoing[index].message["To"], reason)
        return accepted

    def _pending(self, now: datetime, mutes: list[Mute]) -> list[tuple[int, str, str, AlertRecord]]:
        """The pending mails to send now.

        The mute is judged now, at each flush: the mails of an alert a running
        mute covers stay pending (the alert is marked ``muted``: its mails were
        held); once the mute ends (or is lifted) an alert still open gets its
        opening mail. An alert held by a mute and resolved by then is dropped
        (its mails marked ``muted``): nobody was told it opened.
        """
        out: list[tuple[int, str, str, AlertRecord]] = []
        dropped: list[int] = []
        held: set[int] = set()
        alerts: dict[int, AlertRecord] = {}
        pending = self.register.pending_mails()
        unannounced = {m.alert_id for m in pending if m.mail == "opened"}
        for mail in pending:
            if mail.alert_id not in alerts:
                alerts[mail.alert_id] = self.register.alert(mail.alert_id)
            alert = alerts[mail.alert_id]
            if any(m.covers(alert.building, alert.kind, now) for m in mutes):
                held.add(alert.id)
                continue
            if alert.muted and not alert.is_open and alert.id in unannounced:
                dropped.append(mail.id)
                continue
            out.append((mail.id, mail.mail, mail.recipient, alert))
        if dropped or held:
            with self.register.transaction() as db:
                db.executemany("UPDATE outbox SET status = 'muted' WHERE id = ?", [(i,) for i in dropped])
                db.executemany("UPDATE alerts SET muted = 1 WHERE id = ?", [(i,) for i in held])
        return out

    def _digests_due(self, now: datetime, mutes: list[Mute]) -> list[tuple[str, str, Digest]]:
        """(recipient, local date, digest) of each recipient whose digest of today is due and not sent."""
        if self.config is None or self.alerter is None:
            return []
        local = now.astimezone(self.inventory.organisation.tz)
        if local.hour < self.config.digest_hour:
            return []
        day = local.date().isoformat()
        with self.register.transaction() as db:
            sent_today = {r[0] for r in db.execute("SELECT recipient FROM digests WHERE local_date = ?", (day,))}
            last = dict(db.execute("SELECT recipient, MAX(sent_at) FROM digests GROUP BY recipient").fetchall())
            # A mute held their mails, but their opening went out (before the mute, or once it was lifted).
            announced = {r[0] for r in db.execute("SELECT DISTINCT alert_id FROM outbox WHERE mail = 'opened'"
                                                  " AND status = 'sent'")}
        # The oldest "since" of any recipient (its last digest, or a day back): no earlier resolution can show.
        oldest = min([_time(t) for t in last.values()] + [now - timedelta(days=1)])
        alerts = [
            a for a in self.register.alerts(include_resolved=True, resolved_since=oldest)
            if not any(m.covers(a.building, a.kind, now) for m in mutes)
            and (a.is_open or not a.muted or a.id in announced)  # a muted one resolved unannounced: never said
        ]  # fmt: skip
        by_recipient: dict[str, list[AlertRecord]] = {}
        for alert in alerts:
            for recipient in self.alerter.recipients_of(alert.building):
                by_recipient.setdefault(recipient, []).append(alert)
        out = []
        for recipient, mine in sorted(by_recipient.items()):
            if recipient in sent_today:
                continue
            since = _time(last[recipient]) if recipient in last else now - timedelta(days=1)
            digest = _digest(local.date(), mine, since, now)
            if not digest.is_empty():
                out.append((recipient, day, digest))
        return out

    def _mark_sent(self, outgoing: _Outgoing, now: datetime) -> None:
        with self.register.transaction() as db:
            if outgoing.outbox_id is not None:
                db.execute(
                    "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?",
                    (_iso(now), outgoing.outbox_id),
                )
            if outgoing.digest is not None:
                db.execute(
                    "INSERT OR IGNORE INTO digests (recipient, local_date, sent_at) VALUES (?, ?, ?)",
                    (*outgoing.digest, _iso(now)),
                )

    def _mark_dead(self, outbox_id: int, reason: str) -> None:
        """A mail that will never be sent (it cannot be written, or the server refused it for good)."""
        with self.register.transaction() as db:
            db.execute(
                "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ? WHERE id = ?",
                (reason, outbox_id),
            )

    def _mark_refused(self, outgoing: _Outgoing, reason: str, now: datetime) -> None:
        """A mail the server refused for good (5xx): failed, never sent again; a digest counts as done for its day."""
        if outgoing.outbox_id is not None:
            self._mark_dead(outgoing.outbox_id, reason)
        if outgoing.digest is not None:
            with self.register.transaction() as db:
                db.execute(
                    "INSERT OR IGNORE INTO digests (recipient, local_date, sent_at) VALUES (?, ?, ?)",
                    (*outgoing.digest, _iso(now)),
                )

    def _mark_failed(self, outgoing: Sequence[_Outgoing], failed: dict[int, str], now: datetime) -> None:
        """Mails and digests the server did not take this time: kept for the next flush, with the error.

        A digest is rebuilt at each flush, so its failure is recorded apart (``digest_failures``), for
        ``econome status`` to tell a digest not delivered until it is sent.
        """
        rows = [(error, outgoing[i].outbox_id) for i, error in failed.items() if outgoing[i].outbox_id is not None]
        digests = [(*d, _iso(now), error) for i, error in failed.items() if (d := outgoing[i].digest) is not None]
        if rows or digests:
            with self.register.transaction() as db:
                db.executemany("UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?", rows)
                db.executemany("INSERT OR REPLACE INTO digest_failures (recipient, local_date, at, error)"
                               " VALUES (?, ?, ?, ?)", digests)


def _stamp(message: EmailMessage, key: str, now: datetime) -> None:
    """Give a mail its ``Date`` (now) and a ``Message-ID`` made from what it is, not when it is sent.

    RFC 5322 requires the Date; large mail services refuse, or file as spam, a mail without Message-ID (and
    a relay adds none to a mail from another host). The same mail sent again (the crash window: accepted by
    the server, not yet marked sent) has the same Message-ID, so the reader's service can drop the copy.

    >>> message = EmailMessage()
    >>> message["From"] = "econome@valmont.example"
    >>> _stamp(message, "opened|1|2026-01-12T04:00:00.000000+00:00|cep@valmont.example", datetime(2026, 1, 12, 4, tzinfo=UTC))
    >>> message["Message-ID"], message["Date"]
    ('<econome.2e405987efe01eb7cf8c891f@valmont.example>', 'Mon, 12 Jan 2026 04:00:00 +0000')
    """
    domain = str(message["From"]).rpartition("@")[2] or "econome"
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    del message["Message-ID"], message["Date"]
    message["Message-ID"] = f"<econome.{digest}@{domain}>"
    message["Date"] = email.utils.format_datetime(now.astimezone(UTC))


def _is_permanent(code: int) -> bool:
    """Whether an SMTP reply code refuses a mail for good (5xx); 4xx and unknown codes are tried again.

    >>> [_is_permanent(c) for c in (550, 554, 451, 421, 0)]
    [True, True, False, False, False]
    """
    return 500 <= code < 600


def _digest(day: date, alerts: Sequence[AlertRecord], since: datetime, now: datetime) -> Digest:
    """One recipient's digest from the alerts of its buildings."""
    open_: list[DigestEntry] = []
    acked: list[DigestEntry] = []
    resolved: list[DigestEntry] = []
    data: list[DigestEntry] = []
    closed: list[DigestEntry] = []
    for alert in alerts:
        entry = DigestEntry(alert.id, alert.event, alert.acked_by)
        if alert.is_open:
            if alert.kind in DATA_PROBLEM_KINDS:
                data.append(entry)
            elif alert.acked_by is not None:
                acked.append(entry)
            else:
                open_.append(entry)
        elif alert.resolved_at is not None and since < alert.resolved_at <= now:
            (closed if alert.closed else resolved).append(entry)
    return Digest(day, open=open_, acknowledged=acked, resolved=resolved, data_problems=data, closed=closed)
