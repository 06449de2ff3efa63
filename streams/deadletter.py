"""Dead letters: input that could not be used, kept with the reason.

Nothing is dropped silently: an undecodable MQTT payload, a reading of an
unknown point or a line InfluxDB refused lands here, with where it came from.
The store appends JSON lines to a file when given a path, and always keeps the
last entries and counts per source and per reason in memory.

The store is bounded (issue 10: 1 MB payloads made a 25 MB file in one run):

* a payload is kept as a prefix of at most ``max_payload_bytes`` (4 KiB) of
  UTF-8, with its full size (``payload_bytes``) and its ``payload_sha256``;
* the file is rotated before it passes ``max_file_bytes`` (10 MB):
  ``dead-letters.jsonl`` becomes ``dead-letters.<n>.jsonl`` (``n`` counts
  rotations) and only the last ``keep_files`` rotated files are kept;
* a letter is counted once it is on disk: a disk error (``OSError``, e.g. a
  full disk) is raised to the caller with the counts untouched and no half
  line left in the file;
* counts survive rotation and restarts: ``dead-letters.counts.json`` holds the
  counts of every rotated file (rewritten atomically at each rotation), and the
  live file is counted when the store opens. A crash between the rename and the
  counts update is recovered on the next start.

>>> store = DeadLetterStore()
>>> store.add(DeadLetter.now("mqtt", "valmont/x", "abc", "not a number"))
>>> store.count, store.by_source["mqtt"]
(1, 1)

:meth:`DeadLetterStore.stored_counts` counts the letters of a store's files
without opening it for writing (``econome status`` reads the files of a
running service).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from collections import Counter, deque
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.metrics import Sensor

__all__ = ["DeadLetter", "DeadLetterStore"]

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 4096
MAX_FILE_BYTES = 10_000_000
KEEP_FILES = 5


def _prefix(data: bytes, limit: int) -> str:
    """At most ``limit`` bytes of ``data`` as text, never cutting a UTF-8 sequence in two."""
    return data[:limit].decode("utf-8", errors="ignore" if len(data) > limit else "replace")


def _counts_path(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".jsonl") + ".counts.json")


def _rotated_path(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name.removesuffix('.jsonl')}.{n}.jsonl")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One rejected input.

    Attributes:
        source: where it came from (``mqtt``, ``modbus``, ``sink``...).
        key: the topic, device or point it concerns.
        payload: the raw input as text (bytes decoded with replacement), at most
            the store's ``max_payload_bytes`` of it.
        reason: why it was rejected.
        ts: when it was rejected (UTC).
        payload_bytes: the full size of the payload, in bytes.
        payload_sha256: the SHA-256 of the full payload, hex.
        truncated: ``payload`` is a prefix of the payload.
    """

    source: str
    key: str
    payload: str
    reason: str
    ts: datetime
    payload_bytes: int = -1
    payload_sha256: str = ""
    truncated: bool = False

    @classmethod
    def now(
        cls, source: str, key: str, payload: str | bytes, reason: str, max_payload_bytes: int = MAX_PAYLOAD_BYTES
    ) -> DeadLetter:
        """A dead letter stamped with the current UTC time; the payload kept as a bounded prefix."""
        data = payload if isinstance(payload, bytes) else payload.encode("utf-8", errors="surrogatepass")
        return cls(
            source,
            key,
            _prefix(data, max_payload_bytes),
            reason,
            datetime.now(UTC),
            len(data),
            hashlib.sha256(data).hexdigest(),
            len(data) > max_payload_bytes,
        )

    def bounded(self, max_payload_bytes: int) -> DeadLetter:
        """This letter with its payload cut to ``max_payload_bytes`` (size and hash of the whole kept)."""
        if self.payload_sha256 and len(self.payload) * 4 <= max_payload_bytes:
            return self  # already measured, and short enough whatever its encoding
        data = self.payload.encode("utf-8", errors="surrogatepass")
        size = self.payload_bytes if self.payload_bytes >= 0 else len(data)
        digest = self.payload_sha256 or hashlib.sha256(data).hexdigest()
        if len(data) <= max_payload_bytes:
            return replace(self, payload_bytes=size, payload_sha256=digest)
        return replace(
            self, payload=_prefix(data, max_payload_bytes), payload_bytes=size, payload_sha256=digest, truncated=True
        )

    def to_json(self) -> str:
        """One JSON line."""
        data = asdict(self)
        data["ts"] = self.ts.isoformat()
        # Surrogates (undecodable input) must not make the line unwritable.
        return json.dumps(data, ensure_ascii=True)


class DeadLetterStore:
    """Keeps dead letters: bounded, rotated JSON-line files on disk, the most recent in memory.

    Args:
        path: the live file (``None``: memory only).
        keep: how many recent letters are kept in memory.
        max_file_bytes: the live file is rotated before it grows past this.
        keep_files: how many rotated files are kept (older ones are deleted, their counts kept).
        max_payload_bytes: the longest payload prefix kept.
        sensor: told the total per source after every letter.

    Attributes:
        count: letters stored since the store was created (across rotations and restarts).
        by_source: the same, per source.
        by_reason: letters per ``source: reason`` head, since this process started.
    """

    def __init__(
        self,
        path: Path | None = None,
        keep: int = 1000,
        *,
        max_file_bytes: int = MAX_FILE_BYTES,
        keep_files: int = KEEP_FILES,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        sensor: Sensor | None = None,
    ) -> None:
        if max_file_bytes < 1024 or keep_files < 0 or max_payload_bytes < 16:
            msg = "dead letters: max_file_bytes >= 1024, keep_files >= 0 and max_payload_bytes >= 16 are required"
            raise ValueError(msg)
        self.path = path
        self.max_file_bytes = max_file_bytes
        self.keep_files = keep_files
        self.max_payload_bytes = max_payload_bytes
        self.sensor = sensor or Sensor()
        self.recent: deque[DeadLetter] = deque(maxlen=keep)
        self.by_reason: Counter[str] = Counter()
        self.by_source: Counter[str] = Counter()
        self.count = 0
        self.rotations = 0
        self._rotated: Counter[str] = Counter()  # letters per source in rotated files
        self._size = 0
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._open()

    # -- files ----------------------------------------------------------------------------

    @property
    def counts_path(self) -> Path:
        """Where the counts of rotated files are kept."""
        assert self.path is not None  # noqa: S101 - only called with a path
        return _counts_path(self.path)

    def rotated_path(self, n: int) -> Path:
        """The ``n``-th rotated file."""
        assert self.path is not None  # noqa: S101 - only called with a path
        return _rotated_path(self.path, n)

    def _open(self) -> None:
        """Load the counts, recover an interrupted rotation, count the live file."""
        try:
            saved = json.loads(self.counts_path.read_text(encoding="utf-8"))
            self.rotations = int(saved.get("rotations", 0))
            self._rotated = Counter({str(k): int(v) for k, v in saved.get("by_source", {}).items()})
        except FileNotFoundError:
            pass
        except (ValueError, OSError, AttributeError) as exc:
            logger.error("dead letters: %s unreadable (%s): counts restart from the files kept", self.counts_path, exc)
        pending = self.rotated_path(self.rotations + 1)
        if pending.exists():
            # Renamed, but the process died before the counts were saved.
            self.rotations += 1
            self._rotated += self._count_file(pending)
            self._save_counts()
        live = self._count_file(self.path) if self.path is not None and self.path.exists() else Counter()
        self._size = self.path.stat().st_size if self.path is not None and self.path.exists() else 0
        self.by_source = self._rotated + live
        self.count = sum(self.by_source.values())

    @staticmethod
    def _count_file(path: Path) -> Counter[str]:
        counts: Counter[str] = Counter()
        with path.open("rb") as fh:
            for raw in fh:
                try:
                    counts[str(json.loads(raw)["source"])] += 1
                except (ValueError, KeyError, TypeError):
                    counts["unreadable"] += 1  # a line cut by a crash still was a letter
        return counts

    @classmethod
    def stored_counts(cls, path: Path) -> Counter[str]:
        """Letters per source kept at ``path`` and counted for its rotated files, read only.

        The same total as :attr:`count` of a store opened on ``path``, an
        interrupted rotation included; nothing is written (no recovery).

        Raises:
            OSError: a file exists but cannot be read.
        """
        counts: Counter[str] = Counter()
        rotations = 0
        try:
            saved = json.loads(_counts_path(path).read_text(encoding="utf-8"))
            rotations = int(saved.get("rotations", 0))
            counts.update({str(k): int(v) for k, v in saved.get("by_source", {}).items()})
        except FileNotFoundError:
            pass
        except (ValueError, AttributeError) as exc:
            logger.warning("dead letters: %s unreadable (%s): rotated files not counted", _counts_path(path), exc)
        for live in (_rotated_path(path, rotations + 1), path):
            if live.exists():
                counts += cls._count_file(live)
        return counts

    def _save_counts(self) -> None:
        tmp = self.counts_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"rotations": self.rotations, "by_source": dict(self._rotated)}), encoding="utf-8")
        os.replace(tmp, self.counts_path)

    def _rotate(self) -> None:
        assert self.path is not None  # noqa: S101 - only called with a path
        live = self.by_source - self._rotated
        os.replace(self.path, self.rotated_path(self.rotations + 1))
        self.rotations += 1
        self._rotated += live
        self._save_counts()
        self._size = 0
        for old in self.path.parent.glob(self.path.name.removesuffix(".jsonl") + ".*.jsonl"):
            number = old.name.removesuffix(".jsonl").rsplit(".", 1)[-1]
            if number.isdigit() and int(number) <= self.rotations - self.keep_files:
                old.unlink(missing_ok=True)

    # -- adding ---------------------------------------------------------------------------

    def add(self, letter: DeadLetter) -> None:
        """Record one dead letter (thread-safe); its payload is cut to ``max_payload_bytes``.

        Raises:
            OSError: the file cannot be written (the letter is then not counted).
        """
        letter = letter.bounded(self.max_payload_bytes)
        with self._lock:
            if self.path is not None:
                # On disk first: a disk error (OSError) leaves the counts untouched, so the
                # caller can hold its input and add the letter again later, counted once.
                line = (letter.to_json() + "\n").encode("utf-8")
                if self._size and self._size + len(line) > self.max_file_bytes:
                    self._rotate()
                self._append(line)
            self.count += 1
            self.by_source[letter.source] += 1
            self.recent.append(letter)
            self.by_reason[f"{letter.source}: {letter.reason.split(':')[0]}"] += 1
            total = self.by_source[letter.source]
        self.sensor.on_dead_letter(1)
        self.sensor.on_dead_letter_stored(letter.source, total)

    def _append(self, line: bytes) -> None:
        """Append one line; on a disk error, cut what was written of it, so no half line stays."""
        assert self.path is not None  # noqa: S101 - only called with a path
        with self.path.open("ab") as fh:
            try:
                fh.write(line)
                fh.flush()
            except OSError:
                with contextlib.suppress(OSError):
                    fh.truncate(self._size)
                raise
        self._size += len(line)

    def totals(self) -> dict[str, Any]:
        """Counts since the store was created: ``{"total": n, "by_source": {...}, "rotations": r}``."""
        with self._lock:
            return {"total": self.count, "by_source": dict(self.by_source), "rotations": self.rotations}
