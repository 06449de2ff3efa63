"""Where the offline commands read their readings: the one CSV file, or InfluxDB over a time range.

``econome detect``, ``econome mv`` and ``econome report …`` take either
``--readings FILE.csv`` (the format of :mod:`streams.history`, written by
``econome simulate`` and ``econome export``) or ``--from-influx`` (the
InfluxDB of ``econome run``, from the ``ECONOME_INFLUX_*`` settings). Both
give one :class:`~streams.history.PointSeries` per point; what follows is the
same code.

InfluxDB is read as ``econome run`` wrote it: raw readings in their retention
policy and, for a range older than they are kept after ``econome influx
setup``, the hourly aggregates of ``long.reading_1h`` (said on stderr; a
warning when neither holds the older part). Each counter's last index before
the range and first index after it are read too, whatever their age.

Exit codes, as the rest of the CLI: 2 a bad setting or option, 3 unreadable
readings or none in the range, 4 InfluxDB unreachable or refusing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import numpy as np
import typer
from pydantic import ValidationError

from econome._common import EXIT_CONFIG
from streams.errors import SinkError, TelemetryError
from streams.history import PointSeries, read_readings, read_readings_csv
from streams.influx import DOWNSAMPLE_MEASUREMENT, InfluxConfig, InfluxQLClient
from streams.status import RawHistory, raw_history

if TYPE_CHECKING:
    from inventory import Inventory
    from streams.invoices import Invoice

__all__ = [
    "EXIT_DATA",
    "EXIT_INFLUX",
    "ReadingSource",
    "influx_config",
    "load_invoices",
    "local_range",
    "one_line",
    "retention_note",
]

EXIT_DATA = 3
EXIT_INFLUX = 4

_CHUNK = timedelta(days=7)
"""Time covered by one InfluxQL query: a week of the points asked (what is read is held whole anyway)."""
_NAMED = 5
"""Point ids named in a message; the others are counted."""
_MARGIN = timedelta(days=1)
"""Read a day more on each side of the dates asked: the counter index before the first hour, and the
Météo-France windows of the degree days (Tn from 18:00 UTC the day before, Tx until 06:00 UTC the day after)."""


def one_line(exc: Exception) -> str:
    """An error in one line: a pydantic error as ``field: message; …``."""
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
    return str(exc)


def influx_config(url: str | None = None, database: str | None = None) -> InfluxConfig:
    """The InfluxDB of ``ECONOME_INFLUX_*``, with the command line's URL and database; exit 2 when invalid."""
    # The settings (pydantic-settings, the utilities' collectors, InfluxDB's client) are imported only
    # by the commands that read or write InfluxDB: `econome detect` on a CSV file does not pay them (issue 11).
    from econome.settings import EconomeSettings, load_settings

    try:
        settings = load_settings()
        overrides: dict[str, str] = {}
        if url is not None:
            overrides["influx_url"] = url
        if database is not None:
            overrides["influx_bucket" if settings.influx_api == "v2" else "influx_database"] = database
        if overrides:
            settings = EconomeSettings(**overrides)  # type: ignore[arg-type]  # checked by pydantic at run time
        return settings.influx()
    except (TelemetryError, ValidationError, ValueError) as exc:
        typer.echo(f"error: {one_line(exc)}", err=True)
        raise typer.Exit(code=EXIT_CONFIG) from None


def local_range(tz: ZoneInfo, first: date, end: date) -> tuple[datetime, datetime]:
    """``[first, end)`` local days as UTC times, with a day of margin on each side."""
    start = datetime.combine(first, time(0), tz).astimezone(UTC) - _MARGIN
    stop = datetime.combine(end, time(0), tz).astimezone(UTC) + _MARGIN
    return start, stop


def retention_note(history: RawHistory, now: datetime, start: datetime, first_s: float | None) -> None:
    """Say on stderr when the range from ``start`` reaches past the raw readings' retention, and what was read instead.

    ``first_s`` is the time of the first reading read (epoch seconds), None when none was.
    """
    cut = history.raw_from(now)
    if cut is None or start >= cut:
        return
    policy = f"retention policy '{history.policy or 'default'}'"
    days = history.kept.days if history.kept and history.kept == timedelta(days=history.kept.days) else None
    kept = f"{days} day{'s' if days != 1 else ''}" if days else str(history.kept)
    if history.downsampled is None:
        typer.echo(f"warning: InfluxDB keeps raw readings {kept} ({policy}): none before {cut.isoformat()}, and no "
                   "hourly aggregates to read instead (run `econome influx setup` to keep them)", err=True)
        return
    aggregates = f"{history.downsampled}.{DOWNSAMPLE_MEASUREMENT}"
    if first_s is not None and first_s < cut.timestamp():
        typer.echo(f"note: InfluxDB keeps raw readings {kept} ({policy}): before {cut.isoformat()} the hourly "
                   f"aggregates of {aggregates} are read", err=True)
    else:
        typer.echo(f"warning: InfluxDB keeps raw readings {kept} ({policy}): none before {cut.isoformat()}, and "
                   f"{aggregates} holds none before then either", err=True)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


_STRAY_GAP_S = 366 * 86_400.0
"""A point silent longer than this between two of its rows is named: a stray row (a meter's clock set to 2001)
stretches every hourly grid over the years between, and detection over them took minutes (68 s for 24 years)."""


def _refuse_edge_rows(path: Path, data: dict[str, PointSeries]) -> None:
    """Refuse (exit 3) the rows that stretch the file's span by over a year beyond the rest of it.

    A point's first or last row more than a year from its own next (previous) row is isolated; isolated rows
    more than a year beyond every other row of that edge (the points' rows once the isolated ones are left
    out) are strays (a device's clock set to 2001 or 2090, for one point or for all of a gateway's), not a
    history: every command would walk the hourly grid over the years they add (``econome detect`` ran for
    minutes, then longer than 5, on one row of 2090 beside a year of 2026), and the date options do not bound
    that walk. A file of one point has nothing to tell a stray from its own history by: the warning of
    :func:`_warn_stray_rows` only.
    """
    held = {p: s.times_s for p, s in data.items() if s.times_s.size}
    if len(held) < 2:
        return
    for edge, pick, own, sign in (("last", -1, -2, 1.0), ("first", 0, 1, -1.0)):
        isolated = {p: float(t[pick]) for p, t in held.items()
                    if t.size == 1 or sign * float(t[pick] - t[own]) > _STRAY_GAP_S}
        # Where the file's rows end (start) without the isolated rows.
        body = [float(t[pick]) if p not in isolated else float(t[own]) for p, t in held.items()
                if p not in isolated or t.size > 1]
        if not body or not isolated:
            continue
        bulk = max(body) if edge == "last" else min(body)
        strays = sorted(p for p, when in isolated.items() if sign * (when - bulk) > _STRAY_GAP_S)
        if strays:
            when = datetime.fromtimestamp(isolated[strays[0]], UTC).isoformat()
            more = f" (and the {edge} row of {len(strays) - 1} more point(s))" if len(strays) > 1 else ""
            msg = (f"{path}: the {edge} row of {strays[0]}, at {when}{more}, is more than a year from the point's "
                   f"other rows and from every other point's rows: a stray row (a device's clock?); every hour "
                   "between would be processed: remove or correct it")
            raise _fail(msg, EXIT_DATA)


def _warn_stray_rows(path: Path, data: dict[str, PointSeries]) -> None:
    """Name on stderr, once, the points of a CSV with more than a year between two consecutive rows."""
    gaps: list[tuple[str, float, float]] = []
    for point, series in data.items():
        if series.times_s.size > 1:
            steps = np.diff(series.times_s)
            i = int(np.argmax(steps))
            if steps[i] > _STRAY_GAP_S:
                gaps.append((point, float(series.times_s[i]), float(series.times_s[i + 1])))
    if not gaps:
        return
    named = ", ".join(f"{p} ({datetime.fromtimestamp(a, UTC).date()} to {datetime.fromtimestamp(b, UTC).date()})"
                      for p, a, b in sorted(gaps)[:_NAMED])
    more = f" and {len(gaps) - _NAMED} more" if len(gaps) > _NAMED else ""
    typer.echo(f"warning: {path}: {len(gaps)} point(s) without a row for more than a year: {named}{more}; "
               "a stray row makes the commands cover every hour between", err=True)


class ReadingSource:
    """The readings of an offline command: a CSV file (read once, whole) or InfluxDB (read per range).

    Args:
        path: ``--readings``, or None.
        from_influx: ``--from-influx``.
        influx: the InfluxDB to read (default: ``ECONOME_INFLUX_*``).

    Raises:
        typer.BadParameter: neither or both were given.
    """

    def __init__(self, path: Path | None, from_influx: bool, influx: InfluxConfig | None = None) -> None:
        if (path is None) == (not from_influx):
            msg = "give either --readings FILE.csv or --from-influx"
            raise typer.BadParameter(msg)
        self.path = path
        self.from_influx = from_influx
        self._influx = influx
        self._csv: dict[str, PointSeries] | None = None
        self._told_unknown = False

    @property
    def where(self) -> str:
        """The source, for messages."""
        if self.path is not None:
            return str(self.path)
        config = self.influx
        return f"InfluxDB {config.safe_url} ({config.bucket if config.api == 'v2' else config.database})"

    @property
    def influx(self) -> InfluxConfig:
        """The InfluxDB read (settings checked on first use; exit 2 when invalid)."""
        if self._influx is None:
            self._influx = influx_config()
        return self._influx

    def load(
        self,
        inventory: Inventory | None,
        start: datetime,
        end: datetime,
        points: Collection[str] | None = None,
        *,
        required: bool = True,
    ) -> dict[str, PointSeries]:
        """The readings of ``points`` (every point when None): the whole CSV, or InfluxDB's in ``[start, end)``.

        Args:
            inventory: the portfolio (needed for InfluxDB).
            start: first time read from InfluxDB (aware).
            end: end, excluded.
            points: the points wanted.
            required: no reading of ``points`` (or, when None, of any point of the inventory) is an
                error (exit 3).

        Returns:
            The readings per point, of the inventory's points only when it is given (the ids
            it does not know are counted and named on stderr).

        Raises:
            typer.Exit: 3 an unreadable CSV or, when required, no reading of ``points``;
                4 InfluxDB unreachable or refusing.
        """
        if self.path is not None:
            data = self._read_csv(self.path)
        else:
            if inventory is None:
                msg = "--from-influx needs the inventory (--config)"
                raise _fail(msg, EXIT_CONFIG)
            data = self._read_influx(inventory, start, end, points)
        if inventory is not None:
            data = self._known(inventory, data)
        wanted = data if points is None else {p: s for p, s in data.items() if p in points}
        if not wanted and required:
            which = ("reading of a point of the inventory" if points is None
                     else "reading of " + ", ".join(sorted(points)))
            span = "" if self.path is not None else f" between {start.isoformat()} and {end.isoformat()}"
            msg = f"{self.where} holds no {which}{span}"
            raise _fail(msg, EXIT_DATA)
        return data

    def _known(self, inventory: Inventory, data: dict[str, PointSeries]) -> dict[str, PointSeries]:
        """The readings of the inventory's points; the other point ids are named on stderr, once."""
        known = {p.id for _, p in inventory.points()}
        unknown = sorted(set(data) - known)
        if unknown and not self._told_unknown:
            self._told_unknown = True
            more = f" and {len(unknown) - _NAMED} more" if len(unknown) > _NAMED else ""
            typer.echo(f"warning: {self.where}: {len(unknown)} point id(s) not in the inventory, ignored: "
                       f"{', '.join(p if p.isprintable() else repr(p) for p in unknown[:_NAMED])}{more}", err=True)
        return {p: s for p, s in data.items() if p in known}

    def unread(self, inventory: Inventory, data: dict[str, PointSeries]) -> list[str]:
        """The inventory's points without a reading in ``data``."""
        return [p.id for _, p in inventory.points() if p.id not in data or not data[p.id].times_s.size]

    def _read_csv(self, path: Path) -> dict[str, PointSeries]:
        if self._csv is None:
            if not path.exists():
                msg = f"{path}: no such file"
                raise _fail(msg, EXIT_DATA)
            try:
                data = read_readings_csv(path)
            except TelemetryError as exc:
                raise _fail(str(exc), EXIT_DATA) from exc
            except OSError as exc:  # a folder, a file without read permission
                msg = f"{path}: cannot be read: {exc.strerror or exc}"
                raise _fail(msg, EXIT_DATA) from exc
            _refuse_edge_rows(path, data)
            _warn_stray_rows(path, data)
            self._csv = data
        return self._csv

    def _read_influx(
        self, inventory: Inventory, start: datetime, end: datetime, points: Collection[str] | None
    ) -> dict[str, PointSeries]:
        config = self.influx
        now = datetime.now(UTC)

        async def read() -> tuple[RawHistory, dict[str, PointSeries]]:
            client = InfluxQLClient(config)
            try:
                history = await raw_history(client, config)
                data = await read_readings(client, inventory, start, end, chunk=_CHUNK, points=points, history=history,
                                           now=now, index_before=True)
                return history, data
            finally:
                await client.close()

        try:
            history, data = asyncio.run(read())
        except SinkError as exc:
            raise _fail(str(exc), EXIT_INFLUX) from exc
        firsts = [float(s.times_s[0]) for s in data.values() if s.times_s.size]
        retention_note(history, now, start, min(firsts) if firsts else None)
        return data


def load_invoices(inventory: Inventory, path: Path | None, source: ReadingSource | None) -> list[Invoice]:
    """The invoices of a report: ``--invoices FILE``, else with ``--from-influx`` those imported, else none.

    ``econome import invoices`` stores them in InfluxDB.

    The file's overlaps and gaps, and the overlaps of the stored bills, are warnings on stderr;
    a rejected row is an error (exit 2, every row named by line), as when importing it.

    Raises:
        typer.Exit: 2 an unreadable file or a rejected row; 4 InfluxDB unreachable or refusing.
    """
    from streams.invoices import coverage_problems, read_invoice_file, read_invoices_influx

    if path is not None:
        try:
            parsed = read_invoice_file(path, inventory)
        except TelemetryError as exc:
            raise _fail(str(exc), EXIT_CONFIG) from exc
        for problem in parsed.warnings:
            typer.echo(f"warning: {path}: {problem}", err=True)
        if parsed.rejected:
            for problem in parsed.rejected:
                typer.echo(f"error: {path}: {problem}", err=True)
            msg = f"{path}: {len(parsed.rejected)} invoice row(s) rejected (above)"
            raise _fail(msg, EXIT_CONFIG)
        return parsed.invoices
    if source is None or not source.from_influx:
        return []
    config = source.influx

    async def read() -> list[Invoice]:
        client = InfluxQLClient(config)
        try:
            return await read_invoices_influx(client, inventory)
        finally:
            await client.close()

    try:
        stored = asyncio.run(read())
    except SinkError as exc:
        raise _fail(str(exc), EXIT_INFLUX) from exc
    # Bills imported from several files may overlap: counted twice, so said (fix with import --replace).
    for problem in coverage_problems(stored, gaps=False):
        typer.echo(f"warning: bills stored in InfluxDB: {problem} (econome import invoices --replace to fix)", err=True)
    return stored
