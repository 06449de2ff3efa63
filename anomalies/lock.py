"""One live detection per data directory: an exclusive ``flock`` on ``<data_dir>/detect/live.lock``.

Two ``econome run`` on one data directory would each flush the same outbox
(every mail sent twice) and overwrite each other's detection state. So
``econome run`` takes :class:`DetectionLock` before live detection starts; a
second process gets a :class:`~streams.errors.ConfigError` naming the
directory and the PID of the one holding it (``econome run`` exits 2). The
kernel drops the lock when its process ends, even by SIGKILL: there is never a
stale lock to remove by hand. Kept apart from :mod:`anomalies.live` so that
taking it imports nothing heavy.

>>> import tempfile
>>> data = Path(tempfile.mkdtemp())
>>> with DetectionLock(data):
...     try:
...         DetectionLock(data).acquire()
...     except ConfigError as exc:
...         print("PID" in str(exc), str(data) in str(exc))
True True
>>> with DetectionLock(data) as again:  # released: taken again
...     again.path.name
'live.lock'
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from streams.errors import ConfigError

__all__ = ["LOCK_FILE", "DetectionLock", "LockHeld"]

LOCK_FILE = Path("detect") / "live.lock"
"""The lock of live detection under the data directory: one process at a time detects and mails."""


class LockHeld(ConfigError):
    """Another process holds the live detection lock of this data directory (its PID in the message)."""


class DetectionLock:
    """An exclusive lock (``fcntl.flock``) on ``<data_dir>/detect/live.lock``, held while live detection runs.

    Two processes on one data directory would each send every mail (each
    flushes the same outbox), so ``econome run`` takes this lock before live
    detection starts: a second one fails at once naming the directory and the
    PID of the process holding it. The kernel releases the lock when its
    process ends, even by SIGKILL: no stale lock to remove by hand.

    Args:
        data_dir: the data directory (``ECONOME_DATA_DIR``).
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write this process's PID in it.

        Raises:
            LockHeld: another process holds it (naming the directory and its PID).
            ConfigError: the lock file cannot be made (naming it).
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            msg = f"cannot create the live detection lock {self.path}: {exc}"
            raise ConfigError(msg) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            msg = (f"another econome process (PID {holder}) already runs on data directory "
                   f"{self.data_dir} (lock {self.path}); stop it, or give this one its own ECONOME_DATA_DIR")
            raise LockHeld(msg) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Release the lock (the file stays; its PID is only read while it is locked)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DetectionLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
