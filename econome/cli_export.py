r"""The ``econome export`` command: collected readings out of InfluxDB, into the one CSV format.

::

    econome export --config examples/commune.yaml --since 2025-01-01 --until 2026-01-01 --out readings.csv
    econome export --config examples/commune.yaml --since 2025-06-01T00:00:00+02:00 --until 2025-07-01 \\
        --building mairie --building ecole-curie --out two.csv

It reads the raw readings the pipeline wrote (measurement ``reading``; the
``raw`` retention policy after ``econome influx setup``, and before the time
from which it keeps them the hourly aggregates of ``long.reading_1h``: a
counter's hourly minimum at the start of the hour (and its maximum just before
the end of an hour followed by none), a sensor's hourly mean at its middle;
said on stderr) from the InfluxDB of
``econome run`` (``ECONOME_INFLUX_*``, API v1 or v2 through its DBRP mapping)
and writes them as ``timestamp,point,value`` (:mod:`streams.history`): the
file ``econome detect``, ``econome mv`` and ``econome report`` read, as they
read ``econome simulate``'s. Counters stay cumulative indexes.

``--since`` and ``--until`` (excluded) are ISO 8601 dates or times; a date or
a time without offset is in the organisation's timezone. ``--building``
(repeatable) keeps those buildings' points, and the weather points, which the
reports need. The range is read one day and 50 points at a time, so memory
does not grow with the range. The file is written whole or not at all.

Exit codes: 1 the file cannot be written; 2 a bad inventory, setting or
option; 3 no reading in the range; 4 InfluxDB unreachable or refusing.

:func:`register` adds the command to the main app.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from econome._common import EXIT_CONFIG, plausible_day, writable_or_exit
from econome._common import load_or_exit as _load
from econome._readings import EXIT_DATA, EXIT_INFLUX, influx_config, retention_note
from inventory import Quantity, Usage
from streams.errors import SinkError
from streams.history import CSV_HEADER, influx_rows, write_rows
from streams.influx import InfluxConfig, InfluxQLClient
from streams.status import RawHistory, raw_history

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from inventory import Inventory

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``export`` to an app.

    >>> app = typer.Typer()
    >>> register(app)
    >>> [c.name for c in app.registered_commands]
    ['export']
    """
    app.command("export")(export_command)


def _moment(text: str, option: str, tz: ZoneInfo) -> datetime:
    """An ISO 8601 date or time; local to ``tz`` without an offset."""
    try:
        moment = datetime.combine(date.fromisoformat(text), time(0)) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError as exc:
        msg = f"{option} {text!r} is not an ISO 8601 date or time (e.g. 2025-01-01 or 2025-01-01T06:00:00+01:00)"
        raise typer.BadParameter(msg) from exc
    plausible_day(moment.date(), option)  # year 1 or 9999 overflows in the conversion to UTC
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)).astimezone(UTC)


def _points(inv: Inventory, buildings: list[str]) -> list[str]:
    """The points of ``buildings`` (all when empty) and the weather points; exit 2 for an unknown building."""
    known = {b.id for _, b in inv.buildings()}
    unknown = [b for b in buildings if b not in known]
    if unknown:
        typer.echo(f"error: no building {', '.join(repr(b) for b in unknown)} in the inventory", err=True)
        raise typer.Exit(code=EXIT_CONFIG)
    wanted = set(buildings)
    return [
        p.id for _, b in inv.buildings() for p in b.points
        if not wanted or b.id in wanted or (p.quantity is Quantity.TEMPERATURE and p.usage is Usage.WEATHER)
    ]


async def _write(
    client: InfluxQLClient, points: list[str], start: datetime, end: datetime, out: Path, history: RawHistory,
    counters: set[str], now: datetime,
) -> tuple[int, float | None]:
    """Stream the chunks into ``out``: the file is opened once and each chunk written as it comes.

    Returns:
        The rows written, and the time of the first (epoch seconds).
    """
    count, first = 0, None
    with out.open("w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(CSV_HEADER) + "\n")
        async for chunk in influx_rows(client, points, start, end, history=history, counters=counters, now=now):
            if first is None and chunk:
                first = chunk[0][0].timestamp()
            count += write_rows(handle, chunk)
    return count, first


def export_command(
    config: Annotated[Path, typer.Option("--config", help="Inventory YAML file.")],
    since: Annotated[str, typer.Option("--since", help="First date or time, ISO 8601 (local without offset).")],
    until: Annotated[str, typer.Option("--until", help="End date or time, excluded.")],
    out: Annotated[Path, typer.Option("--out", help="CSV file to write (timestamp,point,value).")],
    building: Annotated[list[str] | None, typer.Option("--building", help="Only this building (repeatable).")] = None,
) -> None:
    """Write the readings collected in InfluxDB over a time range as CSV (timestamp,point,value), for detect, mv, report."""
    writable_or_exit(out)
    inv = _load(config)
    tz = inv.organisation.tz
    start, end = _moment(since, "--since", tz), _moment(until, "--until", tz)
    if end <= start:
        msg = f"--until {until} is not after --since {since}"
        raise typer.BadParameter(msg)
    points = _points(inv, building or [])
    counters = {p.id for _, p in inv.points() if p.cumulative}
    influx = influx_config()
    part = out.with_name(out.name + ".part")
    now = datetime.now(UTC)
    try:
        rows, first, history = asyncio.run(_write_all(influx, points, start, end, part, counters, now))
    except SinkError as exc:
        part.unlink(missing_ok=True)
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=EXIT_INFLUX) from exc
    except OSError as exc:  # the folder missing or not writable, a full disk
        part.unlink(missing_ok=True)
        typer.echo(f"error: cannot write {out}: {exc.strerror or exc}", err=True)
        raise typer.Exit(code=1) from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    where = influx.bucket if influx.api == "v2" else influx.database
    if rows == 0:
        part.unlink(missing_ok=True)
        typer.echo(f"error: InfluxDB {influx.safe_url} ({where}) holds no reading of the {len(points)} points "
                   f"between {start.isoformat()} and {end.isoformat()}", err=True)
        raise typer.Exit(code=EXIT_DATA)
    part.replace(out)
    retention_note(history, now, start, first)
    typer.echo(f"wrote {rows} readings of {len(points)} points from InfluxDB {influx.safe_url} ({where}) to {out}")


async def _write_all(
    config: InfluxConfig, points: list[str], start: datetime, end: datetime, out: Path, counters: set[str], now: datetime
) -> tuple[int, float | None, RawHistory]:
    client = InfluxQLClient(config)
    try:
        history = await raw_history(client, config)
        rows, first = await _write(client, points, start, end, out, history, counters, now)
        return rows, first, history
    finally:
        await client.close()
