r"""Invoices: the consumption an advisor copies from the bills, per supply account and period.

Most municipal buildings have years of bills and no meter of their own: the
bills give the consumption of each invoiced period, back to years no meter
recorded. This module reads them (:func:`parse_invoices`), checks that the
periods of one account follow each other (:func:`coverage_problems`), spreads
them over calendar years (:func:`yearly_totals`) and writes them to and reads
them from InfluxDB (:func:`invoice_lines`, :func:`read_invoices_influx`).

The file format is ours (no standard exists; suppliers' own exports differ),
made to be filled from the bills in a spreadsheet and saved as CSV; it is
documented in ``docs/invoices.md``::

    account;start;end;consumption;unit;amount_eur;estimated;reference
    mairie-elec;2019-01-01;2019-02-28;12 450;kWh;1 980,55;non;Facture 2019-0042
    mairie-gaz;01/01/2019;31/03/2019;4 210,5;m3;2 130,00;oui;

- separator ``;`` or ``,`` (the header line tells which); with ``,`` decimals
  take a dot, or the cell is quoted;
- ``account``: an ``InvoiceAccount.id`` of the inventory (``Building.invoices``);
- ``start``, ``end``: the first and the **last day included** of the invoiced
  period, ``YYYY-MM-DD`` or ``DD/MM/YYYY`` (as printed on French bills: "du
  01/01/2019 au 28/02/2019"); the next invoice starts the day after;
- ``consumption``: the quantity billed, read by :func:`_number` (spaces and
  dots before groups of 3 digits are thousands separators, the comma the
  decimal mark; ``1,234.5`` is refused); ``unit`` one of :data:`UNITS`;
- ``amount_eur``: the amount of the bill (may be empty); ``estimated``:
  ``oui``/``non`` (an estimated index rather than a read one; may be empty);
  ``reference``: free text, the bill's number; ``conversion`` (optional): the
  kWh per m3, L or t printed on the bill, used for that bill.

Empty cells at the end of the header or of a row are ignored.

Units per energy: electricity and heating networks in kWh or MWh; natural
gas also in m3 (times the account's ``conversion_kwh_per_unit``, else
:data:`DEFAULT_KWH_PER_UNIT`: the bill prints the coefficient of each period,
the default is a typical one); fuel oil also in L, wood pellets also in t;
water in m3 or L only. Energies are counted in kWh, water in m3, as the
reports count them.

A bad row (unknown account, end before start, a negative or unreadable
number, an unknown unit or one that does not fit the energy, the same account
and start twice) is rejected with its line; overlaps and gaps between the
invoices of one account are reported with the lines of both invoices. A line
is a row of the spreadsheet, the header being line 1.

>>> from inventory import Building, InvoiceAccount, Organisation, Site, Inventory
>>> org = Organisation(name="Valmont", population=900, school_holiday_zone="C")
>>> inv = Inventory(organisation=org, sites=[Site(id="c", name="C", buildings=[
...     Building(id="mairie", name="Mairie", usage="town_hall", floor_area_m2=100, heated_area_m2=100,
...              invoices=[InvoiceAccount(id="mairie-elec", energy="electricity")])])])
>>> parsed = parse_invoices("account;start;end;consumption;unit;amount_eur\n"
...                         "mairie-elec;01/01/2023;31/12/2023;1 200,5;MWh;250 000\n", inv)
>>> parsed.invoices[0].kwh, parsed.invoices[0].days, parsed.rejected
(1200500.0, 365, [])
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path

import httpx

from inventory import Energy, Inventory, InvoiceAccount
from streams.errors import DecodeError, SinkError
from streams.influx import (
    InfluxConfig,
    InfluxQLClient,
    _http_client,  # the client every InfluxDB call of ours uses (TLS, auth, timeouts)
    _influxql_post,
    escape_tag,
    retention_policies,
    to_ms,
)
from streams.utility_files import read_limited

__all__ = [
    "COLUMNS",
    "DEFAULT_KWH_PER_UNIT",
    "INVOICE_MEASUREMENT",
    "INVOICE_RP",
    "OPTIONAL_COLUMNS",
    "UNITS",
    "Invoice",
    "InvoiceFile",
    "InvoiceProblem",
    "YearTotal",
    "coverage_problems",
    "delete_invoices",
    "ensure_invoice_policy",
    "invoice_config",
    "invoice_lines",
    "invoice_source",
    "parse_invoices",
    "read_invoice_file",
    "read_invoices_influx",
    "yearly_totals",
]

INVOICE_MEASUREMENT = "invoice"
"""InfluxDB measurement of the invoices: tags building, account, energy; timestamp the period's first day."""
INVOICE_RP = "invoices"
"""Retention policy of the invoices on InfluxDB 1.x, kept forever: a reference year may be 2010, older than
what ``econome influx setup`` keeps of anything (InfluxDB refuses points older than their policy keeps)."""

COLUMNS = ("account", "start", "end", "consumption", "unit", "amount_eur")
"""Columns every invoice file has."""
OPTIONAL_COLUMNS = ("estimated", "reference", "conversion")
"""Columns an invoice file may add (``conversion``: kWh per m3, L or t printed on the bill)."""

UNITS: dict[str, str] = {"kwh": "kWh", "mwh": "MWh", "m3": "m3", "m³": "m3", "l": "L", "litres": "L", "t": "t"}
"""Units accepted (any case) and how they are stored."""

_PER_UNIT: dict[str, float] = {"kWh": 1.0, "MWh": 1000.0}
_ENERGY_UNITS: dict[Energy, tuple[str, ...]] = {
    Energy.ELECTRICITY: ("kWh", "MWh"),
    Energy.HEATING_NETWORK: ("kWh", "MWh"),
    Energy.NATURAL_GAS: ("kWh", "MWh", "m3"),
    Energy.FUEL_OIL: ("kWh", "MWh", "L"),
    Energy.WOOD_PELLETS: ("kWh", "MWh", "t"),
    Energy.WATER: ("m3", "L"),
}

DEFAULT_KWH_PER_UNIT: dict[Energy, float] = {
    Energy.NATURAL_GAS: 11.2,
    Energy.FUEL_OIL: 10.0,
    Energy.WOOD_PELLETS: 4600.0,
}
"""kWh per m3 of gas (PCS, a typical GRDF coefficient), per litre of fuel oil, per tonne of pellets:
used when the account gives no ``conversion_kwh_per_unit`` (said once per account)."""

_YES = {"oui", "o", "yes", "y", "true", "1", "e", "estimé", "estime", "estimated"}
_NO = {"", "non", "n", "no", "false", "0", "r", "relevé", "releve", "read"}


@dataclass(frozen=True, slots=True)
class Invoice:
    """One invoiced period of one account.

    Attributes:
        account: the inventory's ``InvoiceAccount.id``.
        building: the building of the account.
        energy: the account's energy.
        start: first day of the period.
        end: last day of the period, included.
        consumption: the quantity billed, in ``unit``.
        unit: as stored (:data:`UNITS` values).
        amount: the consumption in report units: kWh, or m3 for water.
        amount_eur: the bill's amount, None when not given.
        estimated: the bill was on an estimated index.
        reference: the bill's number or any note.
        line: the line of the file, None when read from InfluxDB.
        source: the name of the file the bill was read from ("" when unknown).
    """

    account: str
    building: str
    energy: Energy
    start: date
    end: date
    consumption: float
    unit: str
    amount: float
    amount_eur: float | None = None
    estimated: bool = False
    reference: str = ""
    line: int | None = None
    source: str = ""

    @property
    def days(self) -> int:
        """Days of the period, both ends included."""
        return (self.end - self.start).days + 1

    @property
    def kwh(self) -> float | None:
        """The kWh of an energy invoice; None for water."""
        return None if self.energy is Energy.WATER else self.amount

    @property
    def where(self) -> str:
        """``line N``, or for a stored bill its period and the file it came from, for messages."""
        if self.line is not None:
            return f"line {self.line}"
        parts = [p for p in (self.reference, f"imported from {self.source}" if self.source else "") if p]
        origin = f" ({', '.join(parts)})" if parts else ""
        return f"the stored bill {self.start} to {self.end}{origin}"


@dataclass(frozen=True, slots=True)
class InvoiceProblem:
    """A rejected row, or an overlap or gap between two invoices, with its line."""

    line: int | None
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line is not None else self.message


@dataclass
class InvoiceFile:
    """What :func:`parse_invoices` read: the invoices kept, the rows rejected, the warnings."""

    invoices: list[Invoice] = field(default_factory=list)
    rejected: list[InvoiceProblem] = field(default_factory=list)
    warnings: list[InvoiceProblem] = field(default_factory=list)


_FRENCH_THOUSANDS = re.compile(r"\d{1,3}(\.\d{3})+")


def _number(text: str, dot_decimal: bool = False) -> float:
    """A number as typed from a French bill; ``dot_decimal`` in a ``,``-separated file.

    Spaces are thousands separators; a comma is the decimal mark. A dot is a thousands
    separator when every dot is followed by exactly 3 digits (``120.000`` is 120000,
    ``1.234.567`` is 1234567, ``1.234,5`` is 1234.5), else the decimal mark (``12.5``);
    in a ``,``-separated file a dot is always the decimal mark (``120.000`` is 120).
    A dot after a comma (``1,234.5``, the English way), two commas, or ``0.500`` (half, or
    five hundred?) is refused.

    >>> _number("120.000"), _number("1.234.567"), _number("1 234,5"), _number("12.5"), _number("120.000", True)
    (120000.0, 1234567.0, 1234.5, 12.5, 120.0)

    Raises:
        ValueError: not a number, or written in a way that can be read two ways (the reason).
    """
    cleaned = text.strip().replace(" ", "").replace("\u00a0", "").replace("\u202f", "")
    if cleaned.count(",") > 1:
        msg = f"{text!r} has several commas: write 1234,5 or 1 234,5"
        raise ValueError(msg)
    if "," in cleaned and "." in cleaned[cleaned.index(","):]:
        msg = f"{text!r} mixes the English way (comma for thousands, dot for decimals): write 1234,5 or 1 234,5"
        raise ValueError(msg)
    whole, _, decimals = cleaned.partition(",")
    if "." in whole and (not dot_decimal or "," in cleaned):
        unsigned = whole.lstrip("+-")
        if unsigned.startswith("0.") and "," not in cleaned and _FRENCH_THOUSANDS.fullmatch(unsigned):
            msg = f"{text!r} is ambiguous (0.500: half or five hundred?): write 0,5 or 500"
            raise ValueError(msg)
        if _FRENCH_THOUSANDS.fullmatch(unsigned):
            whole = whole.replace(".", "")
        elif "," in cleaned or whole.count(".") > 1:
            msg = f"{text!r}: dots as thousands separators take groups of 3 digits"
            raise ValueError(msg)
    try:
        value = float(f"{whole}.{decimals}" if "," in cleaned else whole)
    except ValueError:
        msg = f"{text!r} is not a number"
        raise ValueError(msg) from None
    if not math.isfinite(value):
        msg = f"{text!r} is not a number"
        raise ValueError(msg)
    return value


MAX_INVOICE_FILE_BYTES = 64_000_000
"""The largest invoice file read (64 MB: about a million bills)."""
_MAX_PER_DAY = {False: 2.4e6, True: 1e5}
"""The most a bill may give a day, kWh (a 100 MW average: as the utility files' rows) or m3 of water (a town's
whole supply): more is a broken value (1e308, a consumption typed in Wh), which would swamp every total."""
_MAX_EUR_PER_DAY = 1e6
"""The most a bill's amount may give a day, in euros (a 100 MW average at 0.40 €/kWh)."""
_FIRST_DAY, _LAST_DAY = date(1990, 1, 1), date(2099, 12, 31)
"""The days a bill may cover (as the utility files' rows)."""


def _date(text: str) -> date:
    text = text.strip()
    if "/" in text:
        day, month, year = text.split("/")
        if len(year) != 4:  # a 4-digit year: "23" is ambiguous
            raise ValueError(text)
        return date(int(year), int(month), int(day))
    return date.fromisoformat(text)


def _conversion(account: InvoiceAccount, unit: str) -> tuple[float, bool]:
    """Report units per ``unit`` for the account, and whether the default was used."""
    if account.energy is Energy.WATER:
        return (0.001 if unit == "L" else 1.0), False
    if unit in _PER_UNIT:
        return _PER_UNIT[unit], False
    if account.conversion_kwh_per_unit is not None:
        return account.conversion_kwh_per_unit, False
    return DEFAULT_KWH_PER_UNIT[account.energy], True


def _rows(reader: Iterator[list[str]]) -> Iterator[list[str]]:
    """The rows of ``reader``; the error of a quoted cell running on past csv's field size limit names its line."""
    try:
        yield from reader
    except csv.Error as exc:
        msg = f"line {getattr(reader, 'line_num', '?')}: {exc} (a quote '\"' opened and never closed?)"
        raise DecodeError(msg) from exc


def parse_invoices(text: str, inventory: Inventory) -> InvoiceFile:
    """Read an invoice CSV (the format of the module docstring).

    Args:
        text: the file's text.
        inventory: gives the accounts (``Building.invoices``).

    Returns:
        The invoices kept (in file order), the rows rejected and the overlaps and gaps, by line.

    Raises:
        DecodeError: the header lacks a column or names an unknown one (line 1).
    """
    accounts = {a.id: (b.id, a) for _, b in inventory.buildings() for a in b.invoices}
    text = text.removeprefix("\ufeff")
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = ";" if ";" in first else ","
    rows = _rows(csv.reader(io.StringIO(text), delimiter=delimiter))
    header: list[str] = []
    out = InvoiceFile()
    starts: dict[tuple[str, date], int | None] = {}
    defaulted: set[str] = set()
    for number, row in enumerate(rows, start=1):
        if not any(cell.strip() for cell in row):
            continue
        # A spreadsheet may end rows with separators ("reference;"): empty trailing cells are ignored.
        typed = len(row)
        while row and not row[-1].strip():
            row = row[:-1]
        if not header:
            header = [cell.strip().lower() for cell in row]
            missing = [c for c in COLUMNS if c not in header]
            unknown = [c for c in header if c not in COLUMNS + OPTIONAL_COLUMNS]
            if missing or unknown:
                parts = ([f"missing column(s) {', '.join(missing)}"] if missing else []) + (
                    [f"unknown column(s) {', '.join(unknown)}"] if unknown else [])
                msg = (f"line {number}: {'; '.join(parts)}: the header must be "
                       f"{';'.join(COLUMNS)} (optionally {';'.join(OPTIONAL_COLUMNS)})")
                raise DecodeError(msg)
            continue
        if len(row) < len(header) <= typed:
            row = row + [""] * (len(header) - len(row))
        if len(row) != len(header):
            hint = (": with ',' between columns, write decimals with a dot or quote the cell"
                    if delimiter == "," else "")
            out.rejected.append(InvoiceProblem(number, f"{typed} cells where the header has {len(header)}{hint}"))
            continue
        cells = {name: cell.strip() for name, cell in zip(header, row, strict=True)}
        invoice = _row(number, cells, accounts, out.rejected, defaulted, delimiter == ",")
        if invoice is None:
            continue
        key = (invoice.account, invoice.start)
        if key in starts:
            out.rejected.append(InvoiceProblem(
                number, f"account {invoice.account} already has an invoice starting {invoice.start} (line {starts[key]})"))
            continue
        starts[key] = number
        out.invoices.append(invoice)
    if not header:
        msg = f"line 1: no header: the file must start with {';'.join(COLUMNS)}"
        raise DecodeError(msg)
    for account in sorted(defaulted):
        energy = accounts[account][1].energy
        out.warnings.append(InvoiceProblem(None, (
            f"account {account}: no conversion_kwh_per_unit in the inventory, {DEFAULT_KWH_PER_UNIT[energy]:g} kWh "
            f"per unit assumed for {energy.value} (give the bills' coefficient)")))
    out.warnings.extend(coverage_problems(out.invoices))
    return out


def _row(
    number: int,
    cells: Mapping[str, str],
    accounts: Mapping[str, tuple[str, InvoiceAccount]],
    rejected: list[InvoiceProblem],
    defaulted: set[str],
    dot_decimal: bool,
) -> Invoice | None:
    def reject(message: str) -> None:
        rejected.append(InvoiceProblem(number, message))

    found = accounts.get(cells["account"])
    if found is None:
        reject(f"unknown account {cells['account']!r}: not an invoices id of a building of the inventory")
        return None
    building, account = found
    try:
        start, end = _date(cells["start"]), _date(cells["end"])
    except ValueError:
        reject(f"dates {cells['start']!r}, {cells['end']!r}: write YYYY-MM-DD or DD/MM/YYYY")
        return None
    if end < start:
        reject(f"the period ends ({end}) before it starts ({start})")
        return None
    if start < _FIRST_DAY or end > _LAST_DAY:  # year 1 or 9999: every day of the bill was prorated, one by one
        reject(f"the period {start} .. {end} is not within {_FIRST_DAY} .. {_LAST_DAY}")
        return None
    try:
        consumption = _number(cells["consumption"], dot_decimal)
    except ValueError as exc:
        reject(f"consumption {exc}")
        return None
    if consumption < 0:
        reject(f"negative consumption {consumption:g} (a credit note: enter the corrected bill instead)")
        return None
    amount_eur: float | None = None
    if cells["amount_eur"]:
        try:
            amount_eur = _number(cells["amount_eur"], dot_decimal)
        except ValueError as exc:
            reject(f"amount_eur {exc}")
            return None
    unit = UNITS.get(cells["unit"].lower())
    if unit is None:
        reject(f"unknown unit {cells['unit']!r}: use one of {', '.join(sorted(set(UNITS.values())))}")
        return None
    if unit not in _ENERGY_UNITS[account.energy]:
        reject(f"unit {unit} does not fit {account.energy.value} (account {account.id}): "
               f"use {', '.join(_ENERGY_UNITS[account.energy])}")
        return None
    estimated_text = cells.get("estimated", "").lower()
    if estimated_text not in _YES | _NO:
        reject(f"estimated {cells.get('estimated')!r}: write oui or non")
        return None
    per_unit, default = _conversion(account, unit)
    if cells.get("conversion"):
        try:
            bill_conversion = _number(cells["conversion"], dot_decimal)
        except ValueError as exc:
            reject(f"conversion {exc}")
            return None
        if bill_conversion <= 0:
            reject(f"conversion {bill_conversion:g} must be positive (kWh per {unit}, as printed on the bill)")
            return None
        if unit in _PER_UNIT or account.energy is Energy.WATER:
            reject(f"conversion given for a bill in {unit}: it converts m3, L or t to kWh")
            return None
        per_unit, default = bill_conversion, False
    days = (end - start).days + 1
    amount = consumption * per_unit
    if amount / days > _MAX_PER_DAY[account.energy is Energy.WATER]:
        report_unit = "m3" if account.energy is Energy.WATER else "kWh"
        reject(f"consumption {consumption:g} {unit} ({amount:g} {report_unit} over {days} days) is not plausible "
               f"for a building (above {_MAX_PER_DAY[account.energy is Energy.WATER]:g} {report_unit} a day)")
        return None
    if amount_eur is not None and abs(amount_eur) / days > _MAX_EUR_PER_DAY:
        reject(f"amount_eur {amount_eur:g} over {days} days is not plausible for a building's bill "
               f"(above {_MAX_EUR_PER_DAY:g} € a day)")
        return None
    if default:
        defaulted.add(account.id)
    # A reference typed on two lines in the spreadsheet is kept on one: InfluxDB stores it so.
    reference = " ".join(cells.get("reference", "").split())
    return Invoice(account.id, building, account.energy, start, end, consumption, unit, consumption * per_unit,
                   amount_eur, estimated_text in _YES, reference, number)


def read_invoice_file(path: Path, inventory: Inventory) -> InvoiceFile:
    """:func:`parse_invoices` of a file (UTF-8, with or without BOM; else Windows-1252, as old Excel saves).

    Raises:
        DecodeError: unreadable, or a bad header; the message names the file.
    """
    raw = read_limited(path, MAX_INVOICE_FILE_BYTES)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    try:
        parsed = parse_invoices(text, inventory)
    except DecodeError as exc:
        msg = f"{path}: {exc}"
        raise DecodeError(msg) from exc
    parsed.invoices = [dataclasses.replace(i, source=path.name) for i in parsed.invoices]
    return parsed


def coverage_problems(invoices: Iterable[Invoice], *, gaps: bool = True) -> list[InvoiceProblem]:
    """Overlaps and gaps (unless ``gaps`` is False) between the consecutive invoices of each account, by line.

    A bill read from InfluxDB has no line: the message names its period and file.

    >>> from inventory import Energy
    >>> def inv(line, start, end):
    ...     return Invoice("a", "b", Energy.ELECTRICITY, date.fromisoformat(start), date.fromisoformat(end), 1.0, "kWh",
    ...                    1.0, line=line)
    >>> for p in coverage_problems([inv(2, "2023-01-01", "2023-01-31"), inv(3, "2023-01-31", "2023-02-28"),
    ...                             inv(4, "2023-03-05", "2023-03-31")]):
    ...     print(p)
    line 3: account a: overlaps line 2 on 1 day(s) (2023-01-31 to 2023-01-31): counted twice
    line 4: account a: 4 day(s) without invoice after line 3 (2023-03-01 to 2023-03-04)
    """
    by_account: dict[str, list[Invoice]] = {}
    for invoice in invoices:
        by_account.setdefault(invoice.account, []).append(invoice)
    out: list[InvoiceProblem] = []
    for account, items in by_account.items():
        items.sort(key=lambda i: (i.start, i.end))
        for before, after in itertools.pairwise(items):
            # A stored bill has no line: the message names it.
            subject = "" if after.line is not None else f"{after.where} "
            if after.start <= before.end:
                last = min(before.end, after.end)
                out.append(InvoiceProblem(after.line, (
                    f"account {account}: {subject}overlaps {before.where} on {(last - after.start).days + 1} day(s) "
                    f"({after.start} to {last}): counted twice")))
            elif gaps and after.start > before.end + timedelta(days=1):
                gap_end = after.start - timedelta(days=1)
                out.append(InvoiceProblem(after.line, (
                    f"account {account}: {subject}{(gap_end - before.end).days} day(s) without invoice after {before.where} "
                    f"({before.end + timedelta(days=1)} to {gap_end})")))
    out.sort(key=lambda p: (p.line is None, p.line or 0))
    return out


@dataclass(frozen=True, slots=True)
class YearTotal:
    """One calendar year of one building and energy, from its invoices.

    Attributes:
        amount: kWh (m3 for water), each invoice pro-rated by the days it has in the year.
        missing_days: days of the year without a bill: within the energy's supply span (its
            building's accounts of that energy together, first bill to last), the days no bill
            covers; plus the days the building has no bill of any energy (before its first
            bill, after its last one).
        amount_eur: the bills' amounts, pro-rated likewise; None when a bill of the year has none.
        estimated: every bill of the year is on an estimated index.
    """

    amount: float
    missing_days: int
    amount_eur: float | None = None
    estimated: bool = False

    @property
    def complete(self) -> bool:
        """Every day of the year is billed, for every energy supplying it."""
        return self.missing_days == 0


def _days(first: date, last: date) -> set[date]:
    return {first + timedelta(days=d) for d in range((last - first).days + 1)}


def yearly_totals(invoices: Iterable[Invoice]) -> dict[str, dict[Energy, dict[int, YearTotal]]]:
    """Consumption per calendar year, per building and energy.

    An invoice counts in a year for the share of its days that fall in that year
    (an invoice of 1 December to 31 January puts 31/62 in each year).

    An energy supplies the building from its first bill to its last, the building's
    accounts of that energy together: a change of contract or supplier (one account
    ends on 30 June, the next starts on 1 July) leaves no gap, and an energy replaced by
    another (fuel oil until 30 June, gas from 1 July) is not missing outside its span.
    The years of that span are given; a year is complete when every day of it within
    the span is billed and the building has a bill of some energy on every day of the
    year (a first year billed from July is not complete).

    >>> from inventory import Energy
    >>> bill = Invoice("a", "b", Energy.ELECTRICITY, date(2022, 12, 1), date(2023, 1, 31), 620.0, "kWh", 620.0)
    >>> {y: (t.amount, t.missing_days) for y, t in yearly_totals([bill])["b"][Energy.ELECTRICITY].items()}
    {2022: (310.0, 334), 2023: (310.0, 334)}
    """
    by_energy: dict[tuple[str, Energy], list[Invoice]] = {}
    for invoice in invoices:
        by_energy.setdefault((invoice.building, invoice.energy), []).append(invoice)
    # The days each building has a bill's span of some energy, per year.
    supplied: dict[tuple[str, int], set[date]] = {}
    spans: dict[tuple[str, Energy], tuple[date, date]] = {}
    for (building, energy), items in by_energy.items():
        span = (min(i.start for i in items), max(i.end for i in items))
        spans[(building, energy)] = span
        for year in range(span[0].year, span[1].year + 1):
            supplied.setdefault((building, year), set()).update(
                _days(max(span[0], date(year, 1, 1)), min(span[1], date(year, 12, 31))))
    out: dict[str, dict[Energy, dict[int, YearTotal]]] = {}
    for (building, energy), items in sorted(by_energy.items(), key=lambda kv: (kv[0][0], kv[0][1].value)):
        amounts: dict[int, float] = {}
        euros: dict[int, float | None] = {}
        estimated: dict[int, bool] = {}
        covered: dict[int, set[date]] = {}
        for invoice in items:
            for year in range(invoice.start.year, invoice.end.year + 1):
                first = max(invoice.start, date(year, 1, 1))
                last = min(invoice.end, date(year, 12, 31))
                part = ((last - first).days + 1) / invoice.days
                amounts[year] = amounts.get(year, 0.0) + invoice.amount * part
                eur = euros.get(year, 0.0)
                euros[year] = None if eur is None or invoice.amount_eur is None else eur + invoice.amount_eur * part
                estimated[year] = estimated.get(year, True) and invoice.estimated
                covered.setdefault(year, set()).update(_days(first, last))
        span_first, span_last = spans[(building, energy)]
        years: dict[int, YearTotal] = {}
        for year in range(span_first.year, span_last.year + 1):
            in_span = (min(span_last, date(year, 12, 31)) - max(span_first, date(year, 1, 1))).days + 1
            whole = (date(year + 1, 1, 1) - date(year, 1, 1)).days
            unsupplied = whole - len(supplied[(building, year)])
            years[year] = YearTotal(amounts.get(year, 0.0), in_span - len(covered.get(year, ())) + unsupplied,
                                    euros.get(year), estimated.get(year, False))
        out.setdefault(building, {})[energy] = years
    return out


def _field_string(value: str) -> str:
    # Line protocol ends a point at a newline.
    flat = " ".join(value.splitlines())
    return '"' + flat.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _midnight(day: date, tz: tzinfo) -> datetime:
    return datetime.combine(day, time(0), tz).astimezone(UTC)


def invoice_lines(invoices: Sequence[Invoice], tz: tzinfo) -> list[str]:
    """Line protocol of the invoices, one point each, at the local midnight starting the period.

    The same account and start give the same series and time: writing a file again
    overwrites its points and adds none.
    """
    lines = []
    for i in invoices:
        tags = f"building={escape_tag(i.building)},account={escape_tag(i.account)},energy={escape_tag(i.energy.value)}"
        fields = [
            f"{'water_m3' if i.energy is Energy.WATER else 'kwh'}={i.amount!r}",
            f"consumption={i.consumption!r}",
            f"unit={_field_string(i.unit)}",
            f"end={_field_string(i.end.isoformat())}",
            f"estimated={'true' if i.estimated else 'false'}",
            f"reference={_field_string(i.reference)}",
        ]
        if i.amount_eur is not None:
            fields.append(f"amount_eur={i.amount_eur!r}")
        if i.source:
            fields.append(f"file={_field_string(i.source)}")
        lines.append(f"{INVOICE_MEASUREMENT},{tags} {','.join(fields)} {to_ms(_midnight(i.start, tz))}")
    return lines


def invoice_config(config: InfluxConfig) -> InfluxConfig:
    """Where the invoices are written: the retention policy :data:`INVOICE_RP` on InfluxDB 1.x, the bucket on 2.x."""
    return config.model_copy(update={"retention_policy": INVOICE_RP}) if config.api == "v1" else config


def invoice_source(config: InfluxConfig) -> str:
    """The invoices' measurement in InfluxQL: ``"invoices"."invoice"`` on InfluxDB 1.x."""
    return f'"{INVOICE_RP}"."{INVOICE_MEASUREMENT}"' if config.api == "v1" else f'"{INVOICE_MEASUREMENT}"'


async def ensure_invoice_policy(config: InfluxConfig) -> None:
    """Create the retention policy :data:`INVOICE_RP` (duration infinite) on InfluxDB 1.x; nothing on 2.x.

    Raises:
        SinkError: InfluxDB is unreachable or refused (a user without admin rights: create it once
            with ``CREATE RETENTION POLICY "invoices" ON <db> DURATION INF REPLICATION 1``).
    """
    if config.api != "v1":
        return
    async with _http_client(config) as client:
        statement = f'CREATE RETENTION POLICY "{INVOICE_RP}" ON "{config.database}" DURATION INF REPLICATION 1'
        if INVOICE_RP not in await retention_policies(client, config.database):
            await _influxql_post(client, statement)


async def delete_invoices(config: InfluxConfig, invoices: Iterable[Invoice], tz: tzinfo) -> None:
    """Delete the stored points of these invoices (same account and start), on InfluxDB 1.x.

    Needed before a bill is written again with fewer fields: InfluxDB merges the fields of
    a point written twice, so an amount emptied by a corrected bill would stay.

    Raises:
        SinkError: InfluxDB is unreachable or refused; on InfluxDB 2.x (delete with ``influx delete``).
    """
    items = list(invoices)
    if not items:
        return
    if config.api != "v1":
        msg = "deleting stored bills is done on InfluxDB 1.x only: on 2.x use `influx delete` (account and time)"
        raise SinkError(msg)
    async with _http_client(config) as client:
        for i in items:
            # DELETE takes no retention policy: the measurement's series in every policy go.
            ts = _midnight(i.start, tz).strftime("%Y-%m-%dT%H:%M:%SZ")
            statement = (f'DELETE FROM "{INVOICE_MEASUREMENT}" WHERE "account" = '  # noqa: S608 - quoted below
                         f"'{_influxql_string(i.account)}' AND time = '{ts}'")
            await _influxql_post_db(client, config.database, statement)


def _influxql_string(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


async def _influxql_post_db(client: httpx.AsyncClient, database: str, statement: str) -> None:
    try:
        response = await client.post("/query", params={"q": statement, "db": database})
    except httpx.HTTPError as exc:
        msg = f"InfluxDB unreachable running {statement!r}: {exc}"
        raise SinkError(msg) from exc
    if response.status_code != 200 or '"error"' in response.text[:300]:
        msg = f"InfluxDB refused {statement!r}: {response.status_code} {response.text[:200]}"
        raise SinkError(msg)


async def _has_invoices(client: InfluxQLClient) -> bool:
    if client.config.api != "v1":
        return True
    series = await client.query("SHOW RETENTION POLICIES")
    return any(row and row[0] == INVOICE_RP for s in series for row in s.get("values", []))


async def read_invoices_influx(client: InfluxQLClient, inventory: Inventory) -> list[Invoice]:
    """Every invoice stored by ``econome import invoices``, of the inventory's accounts; none when none was imported.

    Raises:
        SinkError: InfluxDB is unreachable or refused the query.
    """
    accounts = {a.id: (b.id, a) for _, b in inventory.buildings() for a in b.invoices}
    tz = inventory.organisation.tz
    out: list[Invoice] = []
    if not await _has_invoices(client):
        return out
    statement = f'SELECT * FROM {invoice_source(client.config)} GROUP BY "account"'  # noqa: S608 - constant names
    for series in await client.query(statement):
        account_id = str(series.get("tags", {}).get("account", ""))
        if account_id not in accounts:
            continue
        building, account = accounts[account_id]
        columns = series["columns"]
        for row in series["values"]:
            cell = dict(zip(columns, row, strict=True))
            amount = cell.get("water_m3") if account.energy is Energy.WATER else cell.get("kwh")
            if amount is None:
                continue
            start = datetime.fromtimestamp(int(cell["time"]) / 1000, tz).date()
            eur = cell.get("amount_eur")
            out.append(Invoice(account_id, building, account.energy, start, date.fromisoformat(str(cell["end"])),
                               float(cell["consumption"]), str(cell["unit"]), float(amount),
                               None if eur is None else float(eur), bool(cell.get("estimated")),
                               str(cell.get("reference") or ""), source=str(cell.get("file") or "")))
    return out
