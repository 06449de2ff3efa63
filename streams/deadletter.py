"""Dead letters: input that could not be used, kept with the reason.

Nothing is dropped silently: an undecodable MQTT payload, a reading of an
unknown point or a batch InfluxDB refused for good lands here, with where it
came from. The store appends JSON lines to a file when given a path, and
always keeps the last entries and a count per reason in memory.

>>> store = DeadLetterStore()
>>> store.add(DeadLetter.now("mqtt", "valmont/x", "abc", "not a number"))
>>> store.count
1
"""

from __future__ import annotations

import json
import threading
from collections import Counter, deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["DeadLetter", "DeadLetterStore"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One rejected input.

    Attributes:
        source: where it came from (``mqtt``, ``modbus``, ``sink``...).
        key: the topic, device or point it concerns.
        payload: the raw input, as text (bytes are decoded with replacement).
        reason: why it was rejected.
        ts: when it was rejected (UTC).
    """

    source: str
    key: str
    payload: str
    reason: str
    ts: datetime

    @classmethod
    def now(cls, source: str, key: str, payload: str | bytes, reason: str) -> DeadLetter:
        """A dead letter stamped with the current UTC time."""
        text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else payload
        return cls(source, key, text, reason, datetime.now(UTC))

    def to_json(self) -> str:
        """One JSON line."""
        data = asdict(self)
        data["ts"] = self.ts.isoformat()
        return json.dumps(data, ensure_ascii=False)


class DeadLetterStore:
    """Keeps dead letters: JSON lines on disk, the most recent in memory."""

    def __init__(self, path: Path | None = None, keep: int = 1000) -> None:
        self.path = path
        self.recent: deque[DeadLetter] = deque(maxlen=keep)
        self.by_reason: Counter[str] = Counter()
        self.count = 0
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, letter: DeadLetter) -> None:
        """Record one dead letter (thread-safe)."""
        with self._lock:
            self.count += 1
            self.recent.append(letter)
            self.by_reason[f"{letter.source}: {letter.reason.split(':')[0]}"] += 1
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(letter.to_json() + "\n")
