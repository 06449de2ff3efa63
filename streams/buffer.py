"""The delivery log: a disk-backed buffer between the collectors and InfluxDB.

A reading is appended to an SQLite database (WAL mode) before it is
acknowledged (an MQTT message is acked to the broker only then), and leaves it
only once InfluxDB has accepted it. The processor's aggregates wait in an
outbox in the same database, and the processor's state is snapshotted there with
the sequence number of the last reading it had applied. After a crash, even a
SIGKILL, a restart resumes exactly where the database says:

* readings not yet written are written (again, maybe: writes are idempotent);
* the processor restores its snapshot and replays the readings that came after
  it, so its windows are complete; the aggregates it emits again overwrite the
  same points.

The log is bounded: past ``max_rows`` waiting rows, :meth:`append` raises
:class:`BufferFull`; the pipeline then holds its input (MQTT messages stay
unacknowledged at the broker, polls are skipped: see :mod:`streams.pipeline`).
A warning is logged when it passes 80 %. An empty log takes any batch, so
that one batch larger than the bound cannot wedge it.

Sequence numbers only grow (``AUTOINCREMENT``: a number is never reused, even
once its reading is trimmed). With the log's identity, :attr:`DeliveryLog.log_id`
(made when the file is created), they name a reading for good: the Kafka
forwarder sends them along, and a faust worker recognizes a batch forwarded
twice by them (see :mod:`streams.faust_runner`).

Durability: ``synchronous=NORMAL`` in WAL mode survives a process crash; a
power cut may lose the last transactions (set ``synchronous="FULL"`` for that).

>>> import tempfile
>>> from pathlib import Path
>>> from datetime import UTC, datetime
>>> log = DeliveryLog(Path(tempfile.mkdtemp()) / "log.sqlite")
>>> log.append([Reading("p", datetime(2026, 1, 5, tzinfo=UTC), 1.5, "kWh")])
>>> log.depth()
1
>>> DeliveryLog.inspect(log.path).rows
1

:meth:`DeliveryLog.inspect` reads a log read-only (``econome status`` looks at
the log of a running service without taking a write lock).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import uuid
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.errors import SinkError
from streams.record import Quality, Reading

__all__ = ["BufferFull", "DeliveryLog", "LogDepth", "SinkBatch"]

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    point TEXT NOT NULL, ts_ms INTEGER NOT NULL, value REAL NOT NULL, unit TEXT NOT NULL, quality TEXT NOT NULL,
    line TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (name TEXT PRIMARY KEY, seq INTEGER NOT NULL, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class BufferFull(SinkError):
    """The delivery log holds ``max_rows`` rows waiting for InfluxDB."""


@dataclass(frozen=True)
class SinkBatch:
    """Rows to write; :meth:`DeliveryLog.ack` them once InfluxDB accepted them.

    Attributes:
        readings: (sequence number, point id, line) of raw readings.
        lines: (outbox sequence number, line) of aggregates and point status.
        readings_after: the reading sequence number this batch starts after.
        lines_after: the outbox sequence number this batch starts after.
    """

    readings: list[tuple[int, str, str]]
    lines: list[tuple[int, str]]
    readings_after: int = 0
    lines_after: int = 0

    def __len__(self) -> int:
        return len(self.readings) + len(self.lines)

    @property
    def last_reading(self) -> int | None:
        """Sequence number of the last raw reading, if any."""
        return self.readings[-1][0] if self.readings else None

    @property
    def last_line(self) -> int | None:
        """Outbox sequence number of the last line, if any."""
        return self.lines[-1][0] if self.lines else None


@dataclass(frozen=True, slots=True)
class LogDepth:
    """What waits in a delivery log for InfluxDB, read by :meth:`DeliveryLog.inspect`.

    Attributes:
        readings: raw readings not yet written.
        lines: aggregate and point-status lines not yet written.
        oldest: event time of the oldest reading waiting (``None``: none waits).
    """

    readings: int
    lines: int
    oldest: datetime | None

    @property
    def rows(self) -> int:
        """Rows waiting, as :meth:`DeliveryLog.depth` counts them."""
        return self.readings + self.lines


def _reading(row: tuple[Any, ...]) -> tuple[int, Reading]:
    seq, point, ts_ms, value, unit, quality = row
    return int(seq), Reading(point, datetime.fromtimestamp(ts_ms / 1000, UTC), float(value), unit, Quality(quality))


class DeliveryLog:
    """Disk-backed readings, outbox, cursors and processor snapshots.

    Args:
        path: the SQLite file (created with its folder).
        max_rows: the most rows (readings + aggregate lines) waiting for InfluxDB.
        synchronous: SQLite's ``synchronous`` setting.
    """

    def __init__(self, path: Path, max_rows: int = 2_000_000, synchronous: str = "NORMAL") -> None:
        if synchronous not in ("OFF", "NORMAL", "FULL"):
            msg = f"synchronous must be OFF, NORMAL or FULL, not {synchronous!r}"
            raise ValueError(msg)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_rows = max_rows
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.executescript(_SCHEMA)
        # A log made before the identity existed gets one at its next open (the table is created above).
        self._db.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('log_id', ?)", (uuid.uuid4().hex,))
        self.log_id: str = self._db.execute("SELECT value FROM meta WHERE name = 'log_id'").fetchone()[0]
        """This log's identity, made at its creation: its sequence numbers mean something only with it
        (a log deleted and made again numbers from 1 again, under another identity)."""
        self._warned = False
        self._depth = self._count()
        # Who must have read a reading before it is deleted: the sink always; the
        # processor (through its snapshot) and a Kafka forwarder when they run.
        self.readers: set[str] = {"sink"}

    @staticmethod
    def inspect(path: Path) -> LogDepth:
        """What waits in the log at ``path``, read without writing to it (another process may be using it).

        Raises:
            SinkError: the file is missing or is not a delivery log (the message names it).
        """
        if not path.exists():
            msg = f"delivery log {path}: no such file"
            raise SinkError(msg)
        try:
            with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)) as db:
                row = db.execute("SELECT seq FROM cursors WHERE name = 'sink'").fetchone()
                sent = int(row[0]) if row else 0
                readings, oldest = db.execute("SELECT count(*), min(ts_ms) FROM readings WHERE seq > ?", (sent,)).fetchone()
                lines = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        except sqlite3.Error as exc:
            msg = f"delivery log {path}: not readable ({exc})"
            raise SinkError(msg) from exc
        first = None if oldest is None else datetime.fromtimestamp(oldest / 1000, UTC)
        return LogDepth(int(readings), int(lines), first)

    def _count(self) -> int:
        sent = self.cursor("sink")
        with self._lock:
            readings = self._db.execute("SELECT count(*) FROM readings WHERE seq > ?", (sent,)).fetchone()[0]
            lines = self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        return int(readings) + int(lines)

    def depth(self) -> int:
        """Rows waiting for InfluxDB."""
        return self._depth

    def _grow(self, added: int) -> None:
        self._depth += added
        if self._depth >= 0.8 * self.max_rows and not self._warned:
            self._warned = True
            logger.warning("delivery log %s is %d%% full (%d rows)", self.path, 100 * self._depth // self.max_rows, self._depth)
        elif self._depth < 0.7 * self.max_rows and self._warned:
            self._warned = False
            logger.info("delivery log %s back under 70%% (%d rows)", self.path, self._depth)

    def append(self, readings: list[Reading], lines: list[str] | None = None, *, force: bool = False) -> None:
        """Store readings durably (one transaction), with their line protocol if given.

        The sink writes the stored lines as they are, so encoding is paid once,
        when a reading comes in, not again on every retry.

        Args:
            readings: the readings.
            lines: their line protocol.
            force: store even past ``max_rows`` (a stop persisting the poll in
                progress, which has no broker to wait at).

        Raises:
            BufferFull: the log already holds ``max_rows`` waiting rows.
            ValueError: ``lines`` and ``readings`` differ in length.
        """
        if not readings:
            return
        if lines is not None and len(lines) != len(readings):
            msg = f"{len(lines)} lines for {len(readings)} readings"
            raise ValueError(msg)
        if not force and self._depth > 0 and self._depth + len(readings) > self.max_rows:
            msg = f"delivery log full: {self._depth} rows wait for InfluxDB"
            raise BufferFull(msg)
        encoded = lines if lines is not None else [""] * len(readings)
        rows = [
            (r.point_id, int(r.ts.timestamp() * 1000), r.value, r.unit, r.quality.value, line)
            for r, line in zip(readings, encoded, strict=True)
        ]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO readings (point, ts_ms, value, unit, quality, line) VALUES (?, ?, ?, ?, ?, ?)", rows
            )
            self._db.execute("COMMIT")
        self._grow(len(rows))

    def cursor(self, name: str) -> int:
        """The last sequence number a consumer has finished with (0 if none)."""
        with self._lock:
            row = self._db.execute("SELECT seq FROM cursors WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def readings_after(self, seq: int, limit: int) -> list[tuple[int, Reading]]:
        """Readings with a sequence number above ``seq``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, point, ts_ms, value, unit, quality FROM readings WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        return [_reading(row) for row in rows]

    def add_outbox(self, lines: list[str], processed_seq: int, state: dict[str, Any] | None = None) -> None:
        """Store aggregate lines, move the processor cursor and maybe snapshot its state, atomically."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO outbox (line) VALUES (?)", [(line,) for line in lines])
            self._db.execute(
                "INSERT INTO cursors (name, seq) VALUES ('processor', ?) ON CONFLICT(name) DO UPDATE SET seq = excluded.seq",
                (processed_seq,),
            )
            if state is not None:
                self._db.execute(
                    "INSERT INTO snapshots (name, seq, state) VALUES ('processor', ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET seq = excluded.seq, state = excluded.state",
                    (processed_seq, json.dumps(state)),
                )
            self._db.execute("COMMIT")
        self._grow(len(lines))

    def snapshot(self) -> tuple[int, dict[str, Any]] | None:
        """The processor's last snapshot and the sequence number it covers."""
        with self._lock:
            row = self._db.execute("SELECT seq, state FROM snapshots WHERE name = 'processor'").fetchone()
        return (int(row[0]), json.loads(row[1])) if row else None

    def next_batch(self, limit: int, after: SinkBatch | None = None) -> SinkBatch:
        """Up to ``limit`` rows not yet written: raw readings first, then aggregate lines.

        Args:
            limit: the most rows.
            after: a batch still being written: start after it (so the next
                batch can be prepared while InfluxDB takes the previous one).
        """
        sent = self.cursor("sink")
        line_after = 0
        if after is not None:
            # A batch without readings (or lines) still starts after its predecessor's: reading
            # from the sink's cursor again would put rows of a batch in flight in this one too.
            sent = after.last_reading if after.last_reading is not None else max(sent, after.readings_after)
            line_after = after.last_line if after.last_line is not None else after.lines_after
        with self._lock:
            # sqlite3 already gives (int, str, str) rows: no per-row conversion on this hot path.
            readings: list[tuple[int, str, str]] = self._db.execute(
                "SELECT seq, point, line FROM readings WHERE seq > ? ORDER BY seq LIMIT ?", (sent, limit)
            ).fetchall()
            room = limit - len(readings)
            lines: list[tuple[int, str]] = []
            if room > 0:
                lines = self._db.execute(
                    "SELECT seq, line FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (line_after, room)
                ).fetchall()
        return SinkBatch(readings, lines, sent, line_after)

    def ack(self, batch: SinkBatch) -> None:
        """InfluxDB accepted the batch: move the sink cursor, drop the lines, trim readings."""
        with self._lock:
            self._db.execute("BEGIN")
            if batch.readings:
                self._db.execute(
                    "INSERT INTO cursors (name, seq) VALUES ('sink', ?) ON CONFLICT(name) DO UPDATE SET seq = excluded.seq",
                    (batch.readings[-1][0],),
                )
            if batch.lines:
                self._db.execute("DELETE FROM outbox WHERE seq <= ?", (batch.lines[-1][0],))
            self._db.execute("COMMIT")
        self._depth -= len(batch)
        self._trim()

    def set_cursor(self, name: str, seq: int) -> None:
        """Record that reader ``name`` is done with every reading up to ``seq``; trim."""
        with self._lock:
            self._db.execute(
                "INSERT INTO cursors (name, seq) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET seq = excluded.seq",
                (name, seq),
            )
        self._trim()

    def _trim(self) -> None:
        """Delete readings every reader is done with (the processor: up to its snapshot)."""
        with self._lock:
            positions = []
            for reader in self.readers:
                if reader == "processor":
                    row = self._db.execute("SELECT seq FROM snapshots WHERE name = 'processor'").fetchone()
                    positions.append(int(row[0]) if row else 0)
                else:
                    positions.append(self.cursor(reader))
            keep_after = min(positions)
            if keep_after > 0:
                self._db.execute("DELETE FROM readings WHERE seq <= ?", (keep_after,))

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
