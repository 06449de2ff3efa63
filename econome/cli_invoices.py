r"""``econome import invoices``: the consumption of the bills into InfluxDB.

::

    econome import invoices factures.csv --inventory examples/commune.yaml

The file is the invoice CSV of :mod:`streams.invoices` (``docs/invoices.md``):
one row per bill, ``account;start;end;consumption;unit;amount_eur`` and
optionally ``estimated;reference``. Each invoice becomes one point of the
measurement ``invoice`` (retention policy ``invoices``, kept forever, on InfluxDB
1.x; tags building, account, energy; fields kwh, or
water_m3 for water, consumption, unit, end, estimated, reference, amount_eur, file)
at the local midnight its period starts: importing a file again overwrites the
same points and adds none; a bill of the same account and start with other
figures replaces the one stored (said in the summary). Overlaps and gaps with
the bills imported before, from other files, are warned too, naming the stored bill
and its file. A stored bill with other figures is deleted before the new one is
written (InfluxDB merges the fields of a rewritten point: an emptied amount would
stay). ``--replace`` deletes first every stored bill of the file's accounts that
starts within the file's span for that account (a way to remove wrong bills). ``econome report operat`` and ``report portfolio``
read them back with ``--from-influx`` (or read the file with ``--invoices``).

A file with a rejected row is not imported at all (exit 2, every rejected row
named by line): fix the rows and import it again. Overlaps and gaps between
the invoices of one account are warnings, by line, and the file is imported.
Exit codes, as the rest of the CLI: 2 bad input, 4 InfluxDB unreachable or
refusing.

:func:`import_invoices` is the command; :func:`register` adds it to the
``import`` group as ``econome import invoices``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from econome._common import EXIT_CONFIG
from econome._common import load_or_exit as _load
from econome._readings import EXIT_INFLUX, influx_config
from inventory import Inventory
from streams.errors import DecodeError, SinkError
from streams.influx import InfluxConfig, InfluxQLClient, InfluxV1Writer, make_writer, write_splitting
from streams.invoices import (
    Invoice,
    coverage_problems,
    delete_invoices,
    ensure_invoice_policy,
    invoice_config,
    invoice_lines,
    invoice_source,
    read_invoice_file,
    read_invoices_influx,
)

__all__ = ["import_invoices", "register"]


def register(app: typer.Typer) -> None:
    """Add ``invoices`` to the ``import`` group.

    >>> app = typer.Typer()
    >>> register(app)
    >>> [c.name for c in app.registered_commands]
    ['invoices']
    """
    app.command("invoices")(import_invoices)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


async def _stored(client: InfluxQLClient, accounts: set[str]) -> int:
    """Invoices already stored for ``accounts``."""
    total = 0
    statement = f'SELECT count("consumption") FROM {invoice_source(client.config)} GROUP BY "account"'  # noqa: S608
    for series in await client.query(statement):
        if str(series.get("tags", {}).get("account", "")) in accounts:
            total += int(series["values"][0][1])
    return total


@dataclass(frozen=True, slots=True)
class _Outcome:
    before: int
    after: int
    replaced: int
    warnings: list[str]
    removed: list[Invoice]


def _same(a: Invoice, b: Invoice) -> bool:
    return (a.end, a.consumption, a.unit, a.amount, a.amount_eur, a.estimated, a.reference) == (
        b.end, b.consumption, b.unit, b.amount, b.amount_eur, b.estimated, b.reference)


def _within_span(stored: list[Invoice], invoices: list[Invoice]) -> list[Invoice]:
    """The stored bills of the file's accounts that start within the file's span for that account."""
    spans: dict[str, tuple[date, date]] = {}
    for i in invoices:
        first, last = spans.get(i.account, (i.start, i.end))
        spans[i.account] = (min(first, i.start), max(last, i.end))
    return [i for i in stored if i.account in spans and spans[i.account][0] <= i.start <= spans[i.account][1]]


async def _write(
    config: InfluxConfig, inventory: Inventory, invoices: list[Invoice], lines: list[str], *, replace: bool = False
) -> _Outcome:
    """Write the lines; count the invoices of their accounts stored before and after, and those replaced.

    The invoices already stored for the same accounts are checked with the file's: an
    overlap or a gap between a bill of the file and one imported before is a warning.
    A stored bill with other figures is deleted before the file's is written (InfluxDB
    would keep a field the new one lacks, e.g. an amount emptied); with ``replace``
    every stored bill of the file's accounts starting within the file's span goes.
    """
    accounts = {i.account for i in invoices}
    client = InfluxQLClient(config)
    writer = make_writer(invoice_config(config))
    try:
        if isinstance(writer, InfluxV1Writer):
            await writer.ensure_database()
            await ensure_invoice_policy(config)
        before = await _stored(client, accounts)
        stored = {(i.account, i.start): i for i in await read_invoices_influx(client, inventory) if i.account in accounts}
        mine = {(i.account, i.start): i for i in invoices}
        changed = [stored[key] for key, i in mine.items() if key in stored and not _same(stored[key], i)]
        removed = _within_span(list(stored.values()), invoices) if replace else []
        tz = inventory.organisation.tz
        if replace or config.api == "v1":  # on 2.x a corrected bill is written over the old one (fields merged)
            await delete_invoices(config, {(i.account, i.start): i for i in [*changed, *removed]}.values(), tz)
        gone = {(i.account, i.start) for i in removed}
        others = [i for key, i in stored.items() if key not in mine and key not in gone]
        alone = {str(p) for p in coverage_problems(invoices)}
        warnings = [str(p) for p in coverage_problems([*others, *invoices]) if str(p) not in alone]
        refused = await write_splitting(writer, lines)
        if refused:
            line, why = refused[0]
            msg = f"InfluxDB refused {len(refused)} invoice(s), e.g. {line!r}: {why}"
            raise SinkError(msg)
        removed_only = [i for i in removed if (i.account, i.start) not in mine]
        return _Outcome(before - len(removed_only), await _stored(client, accounts), len(changed), warnings, removed_only)
    finally:
        await writer.close()
        await client.close()


def import_invoices(
    file: Annotated[Path, typer.Argument(help="Invoice CSV: account;start;end;consumption;unit;amount_eur (docs/invoices.md).")],
    inventory: Annotated[Path, typer.Option(help="Inventory YAML file: the invoice accounts of each building.")],
    replace: Annotated[bool, typer.Option(
        "--replace", help="First delete the stored bills of the file's accounts that start within the file's span "
                          "(first start to last end, per account): the file replaces them (InfluxDB 1.x).")] = False,
) -> None:
    """Import the consumption of the bills into InfluxDB; importing a file again adds nothing."""
    inv = _load(inventory)
    try:
        parsed = read_invoice_file(file, inv)
    except DecodeError as exc:
        raise _fail(str(exc), EXIT_CONFIG) from exc
    for problem in parsed.warnings:
        typer.echo(f"warning: {file}: {problem}", err=True)
    if parsed.rejected:
        for problem in parsed.rejected:
            typer.echo(f"error: {file}: {problem}", err=True)
        msg = f"{file}: {len(parsed.rejected)} row(s) rejected (above), nothing imported: fix them and import again"
        raise _fail(msg, EXIT_CONFIG)
    if not parsed.invoices:
        msg = f"{file}: no invoice"
        raise _fail(msg, EXIT_CONFIG)
    config = influx_config()
    if replace and config.api != "v1":
        msg = "--replace deletes stored bills on InfluxDB 1.x only: on 2.x delete them with `influx delete`"
        raise _fail(msg, EXIT_CONFIG)
    lines = invoice_lines(parsed.invoices, inv.organisation.tz)
    try:
        outcome = asyncio.run(_write(config, inv, parsed.invoices, lines, replace=replace))
    except SinkError as exc:
        raise _fail(str(exc), EXIT_INFLUX) from exc
    for warning in outcome.warnings:
        typer.echo(f"warning: {file}: {warning} (an invoice imported before)", err=True)
    for gone in outcome.removed:
        typer.echo(f"{file}: removed account {gone.account}: {gone.where}, not in the file (--replace)")
    accounts = len({i.account for i in parsed.invoices})
    new = outcome.after - outcome.before
    typer.echo(f"{file}: {len(parsed.invoices)} invoice(s) of {accounts} account(s) written to InfluxDB "
               f"{config.safe_url}: {new} new, {len(parsed.invoices) - new} already there "
               f"({outcome.replaced} of them with other figures, replaced)")
