"""The ``econome import`` commands: files downloaded from the Enedis and GRDF customer areas, into InfluxDB.

::

    econome import enedis mes-mesures.csv --inventory commune.yaml
    econome import grdf consommations.csv --inventory commune.yaml
    econome import enedis mairie-*.csv ecole-*.csv --inventory commune.yaml

Each file is read (:mod:`streams.utility_files`: formats, sources, pitfalls),
its meter numbers (PRM, PCE) matched to the inventory's ``enedis``/``grdf``
points, and each point's consumption written as its cumulative index, with the
aggregates it changes, through the delivery log (:mod:`streams.imports`).
Importing the same file again changes nothing. The command prints, per point,
the period, the intervals and their total, the gaps, then every rejected,
duplicate, conflicting or overlapping row as ``file:line: kind: why``.

InfluxDB is the one of ``econome run`` (``ECONOME_INFLUX_*``); the import's
delivery log is ``ECONOME_DATA_DIR/imports.sqlite``.

Several files are imported in turn; one that cannot be read is reported and
the others are imported. Exit codes, as the rest of the CLI: 2 a bad
inventory, setting or file (no header; a PRM or PCE of no point: the file's
other meters are imported, the error names it); 3 no usable row in a file,
intervals older than InfluxDB's policies keep (not imported), or an
unexpected error in a file (named, no traceback); 4 InfluxDB unreachable
(the command stops there, what was not written waits in the import log, and
the next ``econome import`` writes it first) or refusing lines (in the dead
letters). Intervals older than the raw retention are kept as the hourly
rows of ``long.reading_1h`` (:mod:`streams.imports`), and the command says how
many. ``--point ID`` sends every row to that point when the file's meter
number is missing or was changed by a spreadsheet.

:func:`register` adds the ``import`` group to the main app; each format is one
command of :data:`import_app`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from econome._common import EXIT_CONFIG
from econome._common import load_or_exit as _load
from econome._readings import EXIT_DATA, EXIT_INFLUX, influx_config, one_line
from econome.cli_invoices import register as register_invoices
from econome.settings import load_settings
from inventory import Quantity
from streams.errors import DecodeError, SinkError, TelemetryError
from streams.imports import ImportReport, deliver_consumption
from streams.units import energy_kwh_factor
from streams.utility_files import ParsedFile, parse_enedis, parse_grdf

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from inventory import Inventory
    from streams.influx import InfluxConfig

__all__ = ["import_app", "register"]

import_app = typer.Typer(no_args_is_help=True, help="Import utility data (Linky, Gazpar files) and invoices into InfluxDB.")

_InventoryOption = Annotated[Path, typer.Option("--inventory", help="Inventory YAML file.")]
_PointOption = Annotated[
    str | None,
    typer.Option("--point", help="The inventory point every row goes to, when the file's meter number is missing "
                                 "or was changed by a spreadsheet (2,19877E+13)."),
]
_FilesArgument = Annotated[
    list[Path], typer.Argument(help="Files downloaded from the customer area (CSV, ';'), imported in this order.")
]


def register(app: typer.Typer) -> None:
    """Add the ``import`` group to an app.

    >>> app = typer.Typer()
    >>> register(app)
    >>> [g.name for g in app.registered_groups]
    ['import']
    """
    app.add_typer(import_app, name="import")


@import_app.command("enedis")
def import_enedis(files: _FilesArgument, inventory: _InventoryOption, point: _PointOption = None) -> None:
    """Import Linky files of the Enedis customer area ("Mes mesures": load curve, daily indexes or daily consumption)."""
    _import(files, inventory, lambda path, inv: parse_enedis(path, inv, point), "PRM")


@import_app.command("grdf")
def import_grdf(files: _FilesArgument, inventory: _InventoryOption, point: _PointOption = None) -> None:
    """Import Gazpar files of the GRDF customer area (daily m3 and kWh, saved as ';' CSV)."""
    _import(files, inventory, lambda path, inv: parse_grdf(path, inv, point), "PCE")


def _import(files: list[Path], inventory: Path, parse: Callable[[Path, Inventory], ParsedFile], meter: str) -> None:
    """Import each file in turn; a bad file is reported and the others imported; InfluxDB down stops at once."""
    inv = _load(inventory)
    try:
        data_dir = load_settings().data_dir
    except TelemetryError as exc:
        typer.echo(f"error: {one_line(exc)}", err=True)
        raise typer.Exit(code=EXIT_CONFIG) from None
    config = influx_config()
    worst = 0
    for file in files:
        worst = max(worst, _import_one(file, inv, config, data_dir, parse, meter))
    if worst:
        raise typer.Exit(code=worst)


def _import_one(file: Path, inv: Inventory, config: InfluxConfig, data_dir: Path,
                parse: Callable[[Path, Inventory], ParsedFile], meter: str) -> int:
    """Import one file; its exit code (0, 2, 3 or 4). Raises ``typer.Exit(4)`` when InfluxDB is down."""
    try:
        return _import_checked(file, inv, config, data_dir, parse, meter)
    except typer.Exit:
        raise
    except Exception as exc:  # one broken file is reported by name, without a traceback; the others are imported
        typer.echo(f"error: {file}: {type(exc).__name__}: {one_line(exc)} (nothing more imported from this file)", err=True)
        return EXIT_DATA


def _import_checked(file: Path, inv: Inventory, config: InfluxConfig, data_dir: Path,
                    parse: Callable[[Path, Inventory], ParsedFile], meter: str) -> int:
    try:
        parsed = parse(file, inv)
    except DecodeError as exc:
        typer.echo(f"error: {exc}", err=True)
        return EXIT_CONFIG
    if not any(parsed.series.values()):
        _print_problems(parsed)
        typer.echo(f"error: {file}: no usable row", err=True)
        return EXIT_DATA
    try:
        reports = asyncio.run(_deliver_all(inv, config, parsed, data_dir))
    except SinkError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=EXIT_INFLUX) from exc
    tz = inv.organisation.tz
    where = config.bucket if config.api == "v2" else config.database
    for note in parsed.notes:
        typer.echo(f"note: {file}: {note}")
    for report in reports:
        _print_report(inv, report, parsed, tz, meter, f"{config.safe_url} ({where})")
        _kwh_warning(inv, report, parsed)
    _print_problems(parsed)
    code = 0
    for report in reports:
        if report.too_old:
            typer.echo(f"error: {file}: {report.point_id}: {report.too_old} intervals before {_local(report.kept_from, tz)} "
                       "not imported: InfluxDB's retention policies do not keep them "
                       "(econome influx setup: raw readings 90 days, hourly rows and aggregates --long-days)", err=True)
            code = max(code, EXIT_DATA)
        if report.in_future:
            typer.echo(_future_error(file, report, tz), err=True)
            code = max(code, EXIT_DATA)
        if report.refused:
            typer.echo(f"error: {file}: {report.point_id}: InfluxDB refused {report.refused} lines "
                       f"({' '.join(report.refused_reason.split())[:200]}); they are in the dead letters of {data_dir}", err=True)
            code = max(code, EXIT_INFLUX)
    if parsed.unknown:
        # The rows of the known meters are imported; the others are an error the advisor must see.
        names = ", ".join(f"{name!r} ({rows} row{'s' if rows > 1 else ''})" for name, rows in sorted(parsed.unknown.items()))
        typer.echo(f"error: {file}: {meter} {names} of no point of the inventory: not imported "
                   "(the other rows were)", err=True)
        code = max(code, EXIT_CONFIG)
    return code


async def _deliver_all(inv: Inventory, config: InfluxConfig, parsed: ParsedFile, data_dir: Path) -> list[ImportReport]:
    return [
        await deliver_consumption(inv, config, point_id, items, data_dir=data_dir, source=str(parsed.path))
        for point_id, items in sorted(parsed.series.items()) if items
    ]


def _future_error(file: Path, report: ImportReport, tz: ZoneInfo) -> str:
    """The error of the intervals dated after now, naming the file, the point and the lines (the first five, saying so).

    >>> from datetime import UTC
    >>> from zoneinfo import ZoneInfo
    >>> report = ImportReport("linky", "f.csv", "kWh", in_future=7, future_lines=[12, 13, 14, 15, 16],
    ...                       future_from=datetime(2062, 1, 4, 23, 30, tzinfo=UTC))
    >>> message = _future_error(Path("f.csv"), report, ZoneInfo("UTC"))
    >>> message[:message.index(" end")]
    'error: f.csv: linky: 7 intervals from 2062-01-04 23:30'
    >>> message[message.index("(lines"):]
    '(lines 12, 13, 14, 15, 16 and 2 more): not imported (a wrong date?)'
    """
    more = report.in_future - len(report.future_lines)
    lines = ", ".join(map(str, report.future_lines)) + (f" and {more} more" if report.future_lines and more > 0 else "")
    where = f" (lines {lines})" if report.future_lines else ""
    return (f"error: {file}: {report.point_id}: {report.in_future} intervals from "
            f"{_local(report.future_from, tz)} end after now{where}: not imported (a wrong date?)")


def _local(moment: datetime | None, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M") if moment is not None else "-"


def _in_kwh(inv: Inventory, report: ImportReport, parsed: ParsedFile) -> str:
    """`` (688.800 kWh)`` for a point counted in another unit than kWh (a gas volume, Wh), else nothing.

    A gas volume shows the energy the file publishes (GRDF's kWh, from the day's coefficient)
    beside the one the inventory's constant gives: reports and OPERAT count the latter.
    """
    point = inv.point(report.point_id)
    kwh = energy_kwh_factor(point)
    published = parsed.published_kwh.get(report.point_id)
    if point.quantity is Quantity.GAS_VOLUME and published is not None:
        constant = (f"{report.amount * kwh:.3f} kWh at the inventory's {point.conversion_kwh_per_unit:g} kWh/m3"
                    if kwh else "no conversion_kwh_per_unit in the inventory")
        return f" ({published:.3f} kWh published by the file; {constant})"
    if kwh is None or report.unit == "kWh":
        return ""
    return f" ({report.amount * kwh:.3f} kWh)"


_KWH_TOLERANCE = 0.01
"""The relative difference between the file's published kWh and the inventory constant's that is warned about."""


def _kwh_warning(inv: Inventory, report: ImportReport, parsed: ParsedFile) -> None:
    """Warn when a gas volume point's constant kWh differ from the file's published kWh by more than 1 %."""
    point = inv.point(report.point_id)
    published = parsed.published_kwh.get(report.point_id)
    kwh = energy_kwh_factor(point)
    if point.quantity is not Quantity.GAS_VOLUME or not published or not kwh:
        return
    constant = report.amount * kwh
    difference = (constant - published) / published
    if abs(difference) <= _KWH_TOLERANCE:
        return
    pce = point.grdf.pce if point.grdf is not None else "..."
    typer.echo(
        f"warning: {parsed.path}: {point.id}: the inventory's {point.conversion_kwh_per_unit:g} kWh/m3 gives "
        f"{constant:.3f} kWh, {difference:+.1%} from the {published:.3f} kWh the file publishes (GRDF's daily "
        "coefficient): reports, M&V and OPERAT count the inventory's. Declare the Gazpar in kWh to count GRDF's "
        f"energy: {{id: {point.id}, quantity: heat_energy, unit: kWh, usage: {point.usage.value}, cumulative: true, "
        f"energy: natural_gas, grdf: {{pce: '{pce}'}}}} (docs/utilities.md)",
        err=True,
    )


def _print_report(
    inv: Inventory, report: ImportReport, parsed: ParsedFile, tz: ZoneInfo, meter: str, influx: str
) -> None:
    typer.echo(
        f"{report.point_id} ({meter} {parsed.meters.get(report.point_id, '?')}): "
        f"{_local(report.first, tz)} -> {_local(report.last, tz)} ({tz.key}), "
        f"{report.intervals} intervals, {report.amount:.3f} {report.unit}{_in_kwh(inv, report, parsed)}"
    )
    done = "written to" if not report.refused else f"sent ({report.refused} refused) to"
    typer.echo(
        f"  index {report.anchor:.3f} -> {report.anchor + report.amount:.3f} {report.unit}; "
        f"{report.readings} readings and {report.aggregates} aggregates {done} InfluxDB {influx}"
    )
    if report.hourly:
        older = f", {report.hourly_only} intervals older than the raw retention kept in them only" if report.hourly_only else ""
        typer.echo(f"  {report.hourly} hourly rows written to long.reading_1h{older}")
    gaps = [g for g in parsed.gaps if g.point_id == report.point_id]
    typer.echo(f"  gaps: {len(gaps)}" + "".join(f"\n    {_local(g.start, tz)} -> {_local(g.end, tz)}" for g in gaps))
    if report.shifted:
        typer.echo(f"  {report.shifted} later readings re-anchored by {report.shift:+.3f} {report.unit} "
                   "(their consumption is unchanged)")
    if report.waiting:
        typer.echo(f"  {report.waiting} rows still wait in {report.log_path}: the next `econome import` writes them")


def _print_problems(parsed: ParsedFile) -> None:
    problems = sorted(parsed.problems, key=lambda p: (p.line or 0, p.kind.value))
    counts: dict[str, int] = {}
    for problem in problems:
        counts[problem.kind.value] = counts.get(problem.kind.value, 0) + 1
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "none"
    typer.echo(f"rows set aside: {summary}")
    for problem in problems:
        typer.echo(f"  {problem.describe(parsed.path)}")


register_invoices(import_app)
