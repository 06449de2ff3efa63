"""What every command shares: loading the inventory, checking and writing the output file, or exiting with errors."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import typer

from inventory import Inventory, InventoryError, load_inventory

EXIT_CONFIG = 2
"""Exit code of a command given a configuration it cannot use."""
FIRST_DAY = date(1990, 1, 1)
"""Earliest day a date option takes (as the utility files' rows): year 1 crashed the commands' time arithmetic."""
LAST_DAY = date(2099, 12, 31)
"""Latest day a date option takes: 9999-12-31 crashed a day or a year later."""


def plausible_day(day: date, option: str) -> date:
    """``day``, or a ``typer.BadParameter`` (exit 2) naming ``option`` when it is outside 1990..2099."""
    if not FIRST_DAY <= day <= LAST_DAY:
        msg = f"{option} {day.isoformat()} is outside {FIRST_DAY.isoformat()} .. {LAST_DAY.isoformat()}"
        raise typer.BadParameter(msg)
    return day


def load_or_exit(path: Path) -> Inventory:
    """Load an inventory, or print every problem (file:line path: message) and exit 2."""
    try:
        return load_inventory(path)
    except InventoryError as exc:
        for line in exc.lines():
            typer.echo(line, err=True)
        raise typer.Exit(code=EXIT_CONFIG) from exc


def writable_or_exit(path: Path, option: str = "--out") -> Path:
    """Check, before any work, that ``path`` can be written: its folder exists and is writable, it is no folder.

    Prints one line naming the option and the path, and exits 2 (a bad option), when it cannot.

    Returns:
        ``path``.
    """
    folder = path.parent
    problem = None
    if path.is_dir():
        problem = "is a folder"
    elif not folder.is_dir():
        problem = f"folder {folder} does not exist"
    elif not os.access(folder, os.W_OK | os.X_OK):
        problem = f"folder {folder} is not writable"
    if problem is not None:
        typer.echo(f"error: {option} {path}: {problem}", err=True)
        raise typer.Exit(code=EXIT_CONFIG)
    return path


def _umask() -> int:
    """The process's umask (reading it means setting it: it is set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` that replaces it once the block ends without error.

    A failure (or an interruption) leaves no half-written ``path``: the temporary file is removed,
    and a file already at ``path`` stays as it was. The block only writes: an ``OSError`` in it (a
    full disk) is printed in one line naming ``path``, and exits 1.

    >>> folder = Path(tempfile.mkdtemp())
    >>> with atomic_path(folder / "out.txt") as part:
    ...     _ = part.write_text("done")
    >>> sorted(p.name for p in folder.iterdir()), (folder / "out.txt").read_text()
    (['out.txt'], 'done')
    """
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(handle)
    part = Path(name)
    try:
        yield part
        # mkstemp makes it 0600: give it the mode open() would, so a report is read by others as the umask allows.
        part.chmod(0o666 & ~_umask())
        part.replace(path)
    except OSError as exc:
        typer.echo(f"error: cannot write {path}: {exc.strerror or exc}", err=True)
        raise typer.Exit(code=1) from exc
    finally:
        part.unlink(missing_ok=True)

