"""Progress of the long commands (``simulate``, ``detect``, ``report``) on stderr.

When stderr is a terminal, each phase of a command is one line of rich's
progress bar: what it does, how far (done/total, %), elapsed and remaining
time. When it is not (CI logs, a pipe, a cron job's mail) nothing is printed:
the command's output stays what it was.

The loops that take long live below ``econome`` (the simulator, detection), so
they take a plain callback ``(phase, done, total)``; a phase written
``"detecting — mairie"`` moves the bar of ``"detecting"`` and shows the building.
A command decorated with :func:`with_progress` reaches its display through
:func:`current`, so that a phase is one added line, not a re-indented block.

>>> import io
>>> with progress("simulate", file=io.StringIO()) as report:  # not a terminal: quiet
...     report("simulating", 1, 2)
...     [b for b in report.track(["a", "b"], "buildings")]
['a', 'b']
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, ParamSpec, TextIO, TypeVar

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID

__all__ = ["Progress", "current", "progress", "with_progress"]

T = TypeVar("T")
P = ParamSpec("P")

_SEPARATOR = " — "
"""Between a phase and its detail (the building being processed)."""


class Progress:
    """The progress of one command: call it with ``(phase, done, total)``, or :meth:`track` a loop."""

    def __init__(self, command: str, bar: RichProgress | None) -> None:
        self._command = command
        self._bar = bar
        self._tasks: dict[str, TaskID] = {}

    @property
    def shown(self) -> bool:
        """Whether anything is printed (stderr is a terminal)."""
        return self._bar is not None

    def __call__(self, phase: str, done: int, total: int) -> None:
        """Say that ``done`` of ``total`` units of ``phase`` are done."""
        if self._bar is None:
            return
        key = phase.split(_SEPARATOR, 1)[0]
        description = f"{self._command}: {phase}"
        task = self._tasks.get(key)
        if task is None:
            task = self._tasks[key] = self._bar.add_task(description, total=max(total, 1))
        self._bar.update(task, description=description, completed=done, total=max(total, 1))

    def track(self, items: Iterable[T], phase: str, total: int | None = None) -> Iterator[T]:
        """Yield the items, moving the bar of ``phase`` after each one.

        Args:
            items: What the loop goes over.
            phase: What the loop does.
            total: How many items, when ``items`` has no length.

        Yields:
            The items.
        """
        listed = list(items) if total is None else items
        count = len(listed) if total is None and isinstance(listed, list) else (total or 0)
        self(phase, 0, count)
        for done, item in enumerate(listed, start=1):
            yield item
            self(phase, done, count)


_QUIET = Progress("", None)
_CURRENT: ContextVar[Progress] = ContextVar("econome_progress", default=_QUIET)


def current() -> Progress:
    """The display of the command running (:func:`with_progress`); a quiet one outside."""
    return _CURRENT.get()


def with_progress(command: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Run a command inside :func:`progress`, reachable through :func:`current`.

    Args:
        command: The command's name, shown before each phase.

    Returns:
        The decorator (the signature is kept: typer reads it).
    """

    def decorate(function: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(function)
        def run(*args: P.args, **kwargs: P.kwargs) -> T:
            with progress(command):
                return function(*args, **kwargs)

        return run

    return decorate


@contextmanager
def progress(command: str, *, file: TextIO | None = None) -> Iterator[Progress]:
    """A progress display for one command, on ``file`` (stderr) when it is a terminal.

    Args:
        command: The command, shown before each phase (``simulate``, ``report portfolio``).
        file: Where to draw; stderr when None.

    Yields:
        The callback the command's loops report to.
    """
    stream = file if file is not None else sys.stderr
    if not stream.isatty():
        yield _QUIET
        return
    # Imported here: a command whose output is not a terminal never pays for rich's import.
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    bar = RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(file=stream),
    )
    shown = Progress(command, bar)
    token = _CURRENT.set(shown)
    try:
        with bar:
            yield shown
    finally:
        _CURRENT.reset(token)
