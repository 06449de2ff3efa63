r"""The files advisors download from the Enedis and GRDF customer areas: read them, and write them (simulator).

Both become :class:`~streams.imports.Consumption` intervals in the unit of the
inventory point the meter number names, plus the problems found, each with its
file line: rejected rows (unreadable, negative, unknown meter), duplicates
(identical: dropped; different values: the first line is kept, the other
reported), overlapping intervals (the later one rejected) and gaps (missing
days or intervals). :func:`streams.imports.deliver_consumption` then writes
them as a cumulative index.

**Enedis** ("Mes mesures" of the customer area https://mon-compte-particulier.enedis.fr
or https://mon-compte-entreprise.enedis.fr, "Télécharger mes données", CSV):
``;``-separated. Two shapes are published. The customer area's download
has a preamble: a row of names, ``Identifiant PRM;Type de donnees;Date de
debut;Date de fin;Grandeur physique;Grandeur metier;Etape metier;Unite;Pas en
minutes``, one row of values, then ``Horodate;Valeur`` and the data (as
the public parsers and test fixtures of that file found by searching GitHub
for ``Horodate;Valeur`` show it; Enedis does not publish the layout): PRM,
unit and step come from the preamble. The other has one header line, the 13 columns (with or without
accents: names are compared without accents or case)::

    Identifiant PRM;Date de début;Date de fin;Grandeur physique;Grandeur métier;Etape métier;Unité;Horodate;Valeur;
    Nature;Pas;Indice de vraisemblance;Etat complémentaire

(one line in the file).

* a load curve row (``Unité`` ``W``, or ``kW``) is the average power over the
  interval of length ``Pas`` (``PT10M``, ``PT30M``, ``PT60M``: Linky meters
  change step, so one file may mix them) that **ends** at ``Horodate``; its
  energy is power × step. This is how the Data Connect API gives the same
  curve (``meter_reading.interval_reading[{value, date, interval_length}]``,
  ``reading_type: {unit: W, aggregate: average}``, the date ending the
  interval): Enedis's own documentation needs a DataHub account; public
  accounts of it are the Consometers' notes (https://github.com/consometers/data-connect)
  and Quoalise's format notes (https://github.com/l-etabli/quoalise, ``formalisme/enedis.md``);
* a daily index row (``Unité`` ``Wh``, no ``Pas``, or the preamble's ``Type
  de donnees`` naming an index) is the cumulative index at ``Horodate``: the
  consumption is the difference between successive indexes;
* a daily consumption row (``Wh`` with ``Pas`` ``P1D``, or the preamble's
  ``Type de donnees;Consommation quotidienne``) is the energy of the local day
  ``Horodate`` names, 00:00 to 24:00 (23 or 25 hours at the clock changes), as
  Data Connect's ``daily_consumption`` gives it (``date`` the day, Wh).

The kind is read from the file, never guessed: a ``Type de donnees`` not
recognised (``Puissance maximale``, anything else) refuses the file, and so do
``Wh`` rows with neither a step nor a type whose values fall (an index never
falls: those are daily energies, which read as indexes would give wrong figures).

``Horodate`` carries an offset (``2026-03-29T03:00:00+02:00``) or is a local
time without one (``2026-03-29 03:00:00``, ``29/03/2026 03:00``), in the
organisation's timezone. Local times of the autumn change are ambiguous
(02:30 happens twice): in a file sorted oldest first, the first row of such a
time is the first 02:30 (summer time) and the next row with another value the
second (winter time); in a file sorted newest first, the other way round; in
an unsorted file, file order is taken as oldest first and the row reported
``ambiguous``. A repeat of the same value is a duplicate. Offsets avoid the guess.
A local time that does not exist (the spring change) is rejected. The values
may use a decimal comma. Lines before the header (a title) are skipped.

**GRDF** (customer area https://monespace.grdf.fr, "Mes consommations",
"Télécharger", daily data; the export is a spreadsheet: save it as CSV with
``;``): title rows naming the PCE, then one row per gas day (from row 10 of
the spreadsheet: date, index at start and end, volume, energy, coefficient,
temperature, type of reading, as PyGazpar reads it,
https://github.com/ssenart/PyGazpar ``pygazpar/excelparser.py``). The PCE is
a ``N° PCE`` column when there is one (our simulator, other tools), else the
title rows' ``PCE``, else ``--point``, else the inventory's only ``grdf``
point. The columns are found by name, the customer
area's spreadsheet (as public scripts reading the export name them) or the
customer area's JSON (``journeeGaziere``, ``dateDebutReleve``,
``dateFinReleve``, ``volumeBrutConsomme``, ``energieConsomme``,
``coeffConversion``..., the names PyGazpar's ``pygazpar/jsonparser.py``
reads, the period's bounds beside them in the same records; a table of those
records saved as CSV keeps the names). The GRDF ADICT API names
differ (``journee_gaziere``, ``volume_brut``, ``energie``,
``coeff_calcul.coeff_conversion``): :mod:`collectors.utilities.adict` reads those.

====================================  =======================
spreadsheet                           customer-area JSON
====================================  =======================
``N° PCE``                            ``pce``
``Date de relevé``                    ``journeeGaziere``
(none)                                ``dateDebutReleve``, ``dateFinReleve``
``Volume consommé (m3)``              ``volumeBrutConsomme``
``Energie consommée (kWh)``           ``energieConsomme``
``Coefficient de conversion``         ``coeffConversion``
``Type de relevé``                    ``qualificationReleve``
====================================  =======================

Our choice for time: a row is the **gas day** it names, which runs from 06:00
local time that day to 06:00 the next day (GRDF's "journée gazière"); a 23 h
or 25 h gas day at the clock changes is what the local times give. A row with
a reading period (``dateDebutReleve`` D, ``dateFinReleve`` E: the published,
often monthly or two-monthly, records) is one interval from D 06:00 to E 06:00,
whatever its ``journeeGaziere`` (which names the last gas day, or is empty):
its volume is not put on one day, and its days are not told apart (the
import says so). A row without any date is rejected by line. The amount
is the volume in m3 for a ``gas_volume`` point, the energy in kWh for an
energy point; when one of the two is missing it is computed from the other
with the day's coefficient (kWh per m3).

>>> import tempfile
>>> from datetime import UTC, datetime
>>> path = Path(tempfile.mkdtemp()) / "curve.csv"
>>> write_enedis_load_curve(path, "12345678901234", [(datetime(2026, 1, 5, 8, 30, tzinfo=UTC), 30, 2000.0)])
>>> path.read_text(encoding="utf-8").splitlines()[1]
'12345678901234;2026-01-05;2026-01-05;PA;CONS;BRUT;W;2026-01-05T09:30:00+01:00;2000;B;PT30M;;'
"""

from __future__ import annotations

import csv
import re
import stat
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import Enum
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

from inventory import Inventory, Point, Quantity
from streams.errors import DecodeError
from streams.imports import Consumption
from streams.units import factor

__all__ = [
    "ENEDIS_HEADER",
    "GRDF_HEADER",
    "Gap",
    "ParsedFile",
    "Problem",
    "ProblemKind",
    "parse_enedis",
    "parse_grdf",
    "write_enedis_load_curve",
    "write_grdf_daily",
]

ENEDIS_HEADER = (
    "Identifiant PRM", "Date de début", "Date de fin", "Grandeur physique", "Grandeur métier", "Etape métier",
    "Unité", "Horodate", "Valeur", "Nature", "Pas", "Indice de vraisemblance", "Etat complémentaire",
)  # fmt: skip
"""The header of the Enedis customer area's "Mes mesures" CSV."""

GRDF_HEADER = (
    "N° PCE", "Date de relevé", "Type de relevé", "Index de début (m3)", "Index de fin (m3)",
    "Volume consommé (m3)", "Energie consommée (kWh)", "Coefficient de conversion",
)  # fmt: skip
"""The columns of the GRDF customer area's daily export, as :func:`write_grdf_daily` writes them."""

_GAS_DAY_START = time(6)
"""A GRDF gas day runs from 06:00 local time to 06:00 the next day."""
_STEP_RE = re.compile(r"^P?T?(\d+)\s*(M|MIN|H)$", re.IGNORECASE)
_SAME = 1e-9
"""Relative difference under which two amounts of the same interval are one duplicate."""

_GRDF_COLUMNS: dict[str, tuple[str, ...]] = {
    "pce": ("n pce", "pce", "numero pce", "idpce"),
    "start": ("datedebutreleve", "date de debut de releve", "date debut releve"),
    "end": ("datefinreleve", "date de fin de releve", "date fin releve"),
    "day": ("date de releve", "journeegaziere", "journee gaziere", "date"),
    "m3": ("volume consomme (m3)", "volume consomme (m)", "volumebrutconsomme", "volume brut consomme (m3)", "volume"),
    "kwh": ("energie consommee (kwh)", "energieconsomme", "energie"),
    "coeff": ("coefficient de conversion", "coeffconversion", "coefficient"),
    "kind": ("type de releve", "qualificationreleve", "type"),
}
"""Column names (compared by :func:`_norm`: no accents, lower case) of the customer area and ADICT."""
_MAX_GAS_DAY_KWH = 1e7
"""The most a gas day may give (10 GWh, or its m3): more is a broken value."""


class ProblemKind(str, Enum):
    """What is wrong with a row or between rows."""

    REJECTED = "rejected"
    """The row cannot be used: unreadable, negative, unknown meter, a local time that does not exist."""
    DUPLICATE = "duplicate"
    """The same interval with the same amount as an earlier row: dropped."""
    CONFLICT = "conflict"
    """The same interval with another amount than an earlier row: the earlier row is kept."""
    OVERLAP = "overlap"
    """An interval that overlaps part of an earlier one: rejected."""
    IGNORED = "ignored"
    """A row of a kind not imported: daily indexes in a file that also has the load curve, production, reactive power."""
    AMBIGUOUS = "ambiguous"
    """A row placed by a guess (an autumn-change local time in an unsorted file): imported, reported."""


@dataclass(frozen=True, slots=True)
class Problem:
    """A problem found in a file, with its line (1 is the first line of the file)."""

    kind: ProblemKind
    line: int | None
    message: str

    def describe(self, path: Path) -> str:
        """``file:line: kind: message``."""
        where = f"{path}:{self.line}" if self.line is not None else str(path)
        return f"{where}: {self.kind.value}: {self.message}"


@dataclass(frozen=True, slots=True)
class Gap:
    """Time not covered between two intervals of a point (a missing day or interval)."""

    point_id: str
    start: datetime
    end: datetime


@dataclass
class ParsedFile:
    """What a utility file gives: per point, its intervals (sorted, no overlap), and the problems.

    Attributes:
        path: the file.
        series: per point id, the intervals in the point's unit, sorted by start.
        problems: rows rejected, duplicates, conflicts, overlaps, by line.
        gaps: time missing between the intervals of each point.
        meters: the meter number (PRM or PCE) of each point.
        unknown: meter numbers of no point, with their rows (rejected).
        notes: what was read with a guess (a meter number a spreadsheet changed).
    """

    path: Path
    series: dict[str, list[Consumption]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    meters: dict[str, str] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)
    """Meter numbers of no point of the inventory, with their rows (rejected)."""
    notes: list[str] = field(default_factory=list)
    """What was read with a guess (a meter number a spreadsheet changed)."""
    published_kwh: dict[str, float] = field(default_factory=dict)
    """GRDF: per point, the energy (kWh) the file publishes over its kept intervals (``energieConsomme``,
    or the volume × the day's coefficient); no entry when a kept row gives neither."""


# -- shared helpers ----------------------------------------------------------------------


MAX_UTILITY_FILE_BYTES = 256_000_000
"""The largest utility file read (256 MB: a hundred meters' three years of 10-minute load curve). A file is read
whole, then held as rows several times its size: a larger one is refused rather than exhausting the memory."""


def read_limited(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, checked before reading a byte (and while reading).

    Raises:
        DecodeError: the file cannot be read, or is larger (naming it, its size and the limit).
    """
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            msg = f"{path}: cannot be read: Is a directory"
            raise DecodeError(msg)
        if not stat.S_ISREG(info.st_mode):  # a pipe without a writer would block, /dev/zero fill the limit
            msg = f"{path}: not a regular file (a pipe or a device): save the export to a file and import that"
            raise DecodeError(msg)
        size = info.st_size
        data = b""
        if size <= limit:
            with path.open("rb") as handle:
                data = handle.read(limit + 1)  # a file growing (or a device) between the stat and the read
    except OSError as exc:
        msg = f"{path}: cannot be read: {exc.strerror or exc}"
        raise DecodeError(msg) from exc
    if size > limit or len(data) > limit:
        msg = (f"{path}: {max(size, len(data)) / 1e6:.1f} MB, above the {limit / 1e6:.1f} MB read at once: "
               "split it (by year or by meter) and import the parts")
        raise DecodeError(msg)
    return data


def _read_rows(
    path: Path, is_header: Callable[[list[str]], bool]
) -> tuple[list[str], list[tuple[int, list[str]]], list[list[str]]]:
    """The header, the data rows (with their line numbers) and the lines before the header (a preamble) of a ``;`` CSV.

    Raises:
        DecodeError: the file cannot be read or has no header.
    """
    raw = read_limited(path, MAX_UTILITY_FILE_BYTES)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")  # a spreadsheet saved as "CSV (Windows)"
    lines = text.splitlines()
    reader = csv.reader(lines, delimiter=";")
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    preamble: list[list[str]] = []
    try:
        for number, row in enumerate(reader, start=1):
            if header is None:
                if is_header([cell.strip() for cell in row]):
                    header = [cell.strip() for cell in row]
                else:
                    preamble.append([cell.strip() for cell in row])
                continue
            if any(cell.strip() for cell in row):
                rows.append((number, [cell.strip() for cell in row]))
    except csv.Error as exc:
        msg = f"{path}:{reader.line_num}: {exc} (a quote '\"' opened and never closed?)"
        raise DecodeError(msg) from exc
    if header is None:
        msg = f"{path}: no header line found (is it the right kind of file, ';'-separated?)"
        raise DecodeError(msg)
    return header, rows, preamble


def _norm(text: str) -> str:
    """A column name or value compared without accents, case or extra spaces (``Unité`` = ``unite``)."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return " ".join(plain.lower().split())


_SCIENTIFIC = re.compile(r"^\d+([.,]\d+)?[eE]\+?\d+$")


def _spreadsheet_mangled(meter: str) -> str | None:
    """Why a meter number looks changed by a spreadsheet (``2,19877E+13``), or None."""
    if _SCIENTIFIC.match(meter.strip()):
        return (f"{meter!r} is a number in scientific notation: a spreadsheet rounded the meter number "
                "and its digits are lost (format the column as text, or give the point with --point)")
    return None


def _number(text: str) -> float:
    """A number with a decimal point or comma (``1234,5``), spaces as thousands separators.

    The spaces a French spreadsheet writes are no-break ones: U+00A0, and U+202F (narrow) in a
    "CSV UTF-8" of a recent Excel.
    """
    cleaned = text.replace("\u00a0", "").replace("\u202f", "").replace(" ", "").replace(",", ".")
    if not cleaned:
        msg = "no value"
        raise ValueError(msg)
    try:
        value = float(cleaned)
    except ValueError:
        msg = f"{text!r} is not a number"
        raise ValueError(msg) from None
    if value != value or value in (float("inf"), float("-inf")):  # NaN or infinite
        msg = f"{text!r} is not a finite number"
        raise ValueError(msg)
    return value


def _naive_or_aware(text: str) -> datetime:
    """An ISO 8601 time (``T`` or space, offset or not), ``dd/mm/yyyy[ HH:MM[:SS]]`` or a date alone."""
    text = text.strip()
    if "/" not in text[:6]:
        # ISO 8601, what most files hold: three failed strptime calls a row were most of an import's time.
        return datetime.fromisoformat(text)
    for pattern in ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y"):
        try:
            return datetime.strptime(text, pattern)  # noqa: DTZ007 - a local time, placed in the timezone by the caller
        except ValueError:
            continue
    return datetime.fromisoformat(text)


def _exists(local: datetime, tz: ZoneInfo) -> bool:
    """Whether a naive local time exists in ``tz`` (not skipped by the spring change)."""
    aware = local.replace(tzinfo=tz)
    return aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == local


def _ambiguous(local: datetime, tz: ZoneInfo) -> bool:
    """Whether a naive local time happens twice in ``tz`` (the autumn change)."""
    return local.replace(tzinfo=tz, fold=0).utcoffset() != local.replace(tzinfo=tz, fold=1).utcoffset()


def _settle(point_id: str, raw: list[Consumption], parsed: ParsedFile, unit: str, tz: ZoneInfo,
            rank: dict[int, int] | None = None) -> None:
    """Sort one point's intervals, drop duplicates, keep the first of conflicting ones, find overlaps and gaps.

    ``rank`` (by line, lower first) puts a definitive row before an estimated one of the same interval.
    """
    ranks = rank or {}

    def order(c: Consumption) -> tuple[int, int]:
        return (ranks.get(c.line or 0, 0), c.line or 0)

    ordered = sorted(raw, key=lambda c: (c.start, c.end, *order(c)))
    kept: list[Consumption] = []
    for item in ordered:
        if kept and item.start < kept[-1].end:
            prev = kept[-1]
            same = item.start == prev.start and item.end == prev.end
            if same and abs(item.amount - prev.amount) <= _SAME * max(abs(prev.amount), 1.0):
                parsed.problems.append(Problem(ProblemKind.DUPLICATE, item.line,
                                               f"same interval and value as line {prev.line}: dropped"))
                continue
            if same:
                first, other = (prev, item) if order(prev) <= order(item) else (item, prev)
                kept[-1] = first
                parsed.problems.append(Problem(
                    ProblemKind.CONFLICT, other.line,
                    f"{_span(item, tz)}: {_fmt(other.amount)} {unit} here, {_fmt(first.amount)} {unit} at line {first.line}: "
                    f"line {first.line} kept",
                ))
                continue
            parsed.problems.append(Problem(
                ProblemKind.OVERLAP, item.line, f"{_span(item, tz)} overlaps {_span(prev, tz)} of line {prev.line}: rejected"
            ))
            continue
        if kept and item.start > kept[-1].end:
            parsed.gaps.append(Gap(point_id, kept[-1].end, item.start))
        kept.append(item)
    parsed.series[point_id] = kept


def _span(item: Consumption, tz: ZoneInfo) -> str:
    """The interval in local time, as the file shows it (with the offset, which tells the two autumn 02:30 apart)."""
    return f"{item.start.astimezone(tz).isoformat()} .. {item.end.astimezone(tz).isoformat()}"


def _fmt(value: float) -> str:
    return f"{value:.10g}"


def _to_unit(kwh: float, unit: str) -> float:
    """An energy in kWh expressed in ``unit`` (Wh, kWh, MWh)."""
    return kwh / factor(unit)


# -- Enedis --------------------------------------------------------------------------------


def _enedis_points(inventory: Inventory) -> dict[str, Point]:
    return {p.enedis.prm: p for _, p in inventory.points() if p.enedis is not None}


def _step(text: str) -> timedelta:
    match = _STEP_RE.match(text.strip())
    if match is None:
        msg = f"step {text!r} is not PT10M, PT30M, PT60M..."
        raise ValueError(msg)
    count = int(match.group(1))
    step = timedelta(hours=count) if match.group(2).upper() == "H" else timedelta(minutes=count)
    if not timedelta(minutes=1) <= step <= timedelta(days=1):
        msg = f"step {text!r} is not between 1 minute and 1 day"
        raise ValueError(msg)
    return step


@dataclass
class _Row:
    line: int
    point_id: str
    kind: str  # "curve", "index" or "daily" (the energy of one local day)
    horodate: str
    value: float
    step: timedelta | None


def _meter_point(
    meter: str, points: dict[str, Point], forced: Point | None, what: str
) -> tuple[Point | None, str | None]:
    """The point a row's meter number (PRM or PCE) names, and a note when a spreadsheet dropped its leading zero.

    ``forced`` (``--point``) takes every row whose number is blank, mangled or its own; an
    empty number goes to the only point of its kind.
    """
    if forced is not None:
        own = next((m for m, p in points.items() if p.id == forced.id), "")
        if not meter or _spreadsheet_mangled(meter) or meter == own or (meter.isdigit() and meter.zfill(len(own)) == own):
            return forced, None
        return None, None
    if meter in points:
        return points[meter], None
    if meter.isdigit():
        for known, point in points.items():
            if known.isdigit() and len(known) > len(meter) and meter.zfill(len(known)) == known:
                return point, (f"{what} {meter!r} read as {known!r}: a spreadsheet dropped its leading zero "
                               "(format the column as text)")
    if not meter and len(points) == 1:
        return next(iter(points.values())), None
    return None, None


def _unknown_error(path: Path, unknown: dict[str, int], what: str, kind: str) -> str:
    names = ", ".join(sorted(repr(u) for u in unknown)[:5])
    why = next((w for u in sorted(unknown) if (w := _spreadsheet_mangled(u))), None)
    if why:
        return f"{path}: {what} {why}"
    return (f"{path}: {what} {names} is not the {what} of any {kind} point of the inventory "
            f"(add `{kind}: {{{'prm' if kind == 'enedis' else 'pce'}: ...}}` to the point, or give it with --point)")


_FIRST_YEAR, _LAST_YEAR = 1990, 2100
"""The years a utility's time may fall in: Linky and Gazpar data are recent; others are broken values."""
_MAX_POWER_W = 1e8
"""The highest average power a row may give (100 MW): more is a broken value, not a building's load."""
_MAX_INDEX_WH = 1e13
"""The highest index a row may give (10 GWh... ×1000): more is a broken value."""
_CONSUMPTION = {"", "cons", "consommation"}
"""``Grandeur métier`` values of consumption (production, ``PROD``, is not imported)."""
_ACTIVE = {"", "pa", "ea", "energie active", "puissance active", "energie active soutiree", "puissance active soutiree"}
"""``Grandeur physique`` values of active power or energy (``PA`` load curve, ``EA`` index)."""


def _preamble_meta(preamble: list[list[str]]) -> dict[str, str]:
    """The metadata of the customer area's preamble, keys normalised (:func:`_norm`).

    A row of names (``Identifiant PRM;...;Unite;Pas en minutes``) then a row of values.
    """
    for i, row in enumerate(preamble[:-1]):
        names = [_norm(c) for c in row]
        if "identifiant prm" in names:
            values = preamble[i + 1]
            meta = {name: values[k].strip() for k, name in enumerate(names) if k < len(values) and name}
            if "pas en minutes" in meta:
                meta["pas"] = _step_text(meta["pas en minutes"])
            return meta
    return {}


def _step_text(text: str) -> str:
    """``30`` (the preamble's ``Pas en minutes``) as ``PT30M``."""
    return f"PT{text.strip()}M" if text.strip().isdigit() else text


def parse_enedis(path: Path, inventory: Inventory, point_id: str | None = None) -> ParsedFile:
    """Read an Enedis "Mes mesures" CSV: load curves and daily indexes, per PRM of the inventory.

    Args:
        path: the file.
        inventory: the portfolio; each PRM is matched to its ``enedis`` point.
        point_id: the point every row goes to (``--point``), whatever (blank, mangled) PRM it shows;
            a row naming another PRM is still refused.

    Returns:
        The intervals of each point in its unit, and the problems by line. PRMs of no point
        (``unknown``) are rejected by line; the caller says so.

    Raises:
        DecodeError: the file cannot be read, has no Enedis header, or names no PRM of the inventory
            (the message names the file and the PRMs).
    """
    header, rows, preamble = _read_rows(path, _enedis_header)
    col = {_norm(name): i for i, name in enumerate(header)}
    if "valeur" not in col:  # the customer area's daily indexes: one per cadran, and their total
        col["valeur"] = col[_TOTAL_INDEX]
    if {"cadran", "identifiant classe temporelle"} & col.keys():
        # An SGE R64 export: each Horodate has one row per cadran (HP, HC...) of each grid, none the total.
        msg = (f"{path}: one index per cadran and grid (an R64 export), no total index: refused rather than summed "
               "by guess; download the customer area's daily indexes (their EAS T), the daily consumption or the "
               "load curve")
        raise DecodeError(msg)
    # The index download ends with a legend of the supplier's calendar ("Periode;Identifiant calendrier..."): no data.
    legend = next((i for i, (_, cells) in enumerate(rows) if cells and _norm(cells[0]) == "periode"), len(rows))
    rows = rows[:legend]
    meta = _preamble_meta(preamble)
    missing = [name for name, key in (("Identifiant PRM", "identifiant prm"), ("Unité", "unite"))
               if key not in col and key not in meta]
    if missing:
        msg = f"{path}: neither the header nor a preamble gives {', '.join(missing)}"
        raise DecodeError(msg)
    declared = _declared_kind(path, meta.get("type de donnees", ""))
    tz = inventory.organisation.tz
    points = _enedis_points(inventory)
    forced = _forced(inventory, point_id, "enedis")
    parsed = ParsedFile(path)
    good: list[_Row] = []
    for line, cells in rows:
        def cell(name: str, cells: list[str] = cells) -> str:
            index = col.get(name)
            value = cells[index] if index is not None and index < len(cells) else ""
            return value or meta.get(name, "")

        prm, unit = cell("identifiant prm"), cell("unite")
        point, note = _meter_point(prm, points, forced, "PRM")
        if note and note not in parsed.notes:
            parsed.notes.append(note)
        if point is None:
            parsed.unknown[prm] = parsed.unknown.get(prm, 0) + 1
            why = _spreadsheet_mangled(prm) or f"PRM {prm!r} is no enedis point of the inventory"
            if forced is not None and not _spreadsheet_mangled(prm):
                why = f"PRM {prm!r} is not the PRM of point {forced.id}"
            parsed.problems.append(Problem(ProblemKind.REJECTED, line, why))
            continue
        business, physical = cell("grandeur metier"), cell("grandeur physique")
        if _norm(business) not in _CONSUMPTION:
            parsed.problems.append(Problem(ProblemKind.IGNORED, line, f"Grandeur métier {business!r} is not consumption"))
            continue
        if _norm(physical) not in _ACTIVE:
            parsed.problems.append(Problem(ProblemKind.IGNORED, line,
                                           f"Grandeur physique {physical!r} is not active power or energy"))
            continue
        try:
            value = _number(cell("valeur"))
            if value < 0:
                msg = f"negative value {_fmt(value)} {unit}"
                raise ValueError(msg)
            if unit in ("VA", "kVA"):
                msg = f"unit {unit!r} is apparent power, not active power (W): rejected"
                raise ValueError(msg)
            if unit in ("W", "kW"):
                scale = 1000.0 if unit.startswith("k") else 1.0
                if value * scale > _MAX_POWER_W:
                    msg = f"{_fmt(value)} {unit} is not a plausible average power (above {_MAX_POWER_W / 1e6:g} MW)"
                    raise ValueError(msg)
                pas = cell("pas")
                good.append(_Row(line, point.id, "curve", cell("horodate"), value * scale,
                                 _step(_step_text(pas)) if pas else None))
            elif unit in ("Wh", "kWh"):
                scale = 1000.0 if unit == "kWh" else 1.0
                if value * scale > _MAX_INDEX_WH:
                    msg = f"{_fmt(value)} {unit} is not a plausible index"
                    raise ValueError(msg)
                per_day = declared == "daily" or (declared is None and _norm(cell("pas")) in _DAY_STEPS)
                good.append(_Row(line, point.id, "daily" if per_day else "index", cell("horodate"), value * scale, None))
            else:
                msg = f"unit {unit!r} is neither a power (W) nor an index (Wh)"
                raise ValueError(msg)
        except ValueError as exc:
            parsed.problems.append(Problem(ProblemKind.REJECTED, line, str(exc)))
    if not good and parsed.unknown:
        raise DecodeError(_unknown_error(path, parsed.unknown, "PRM", "enedis"))
    moments = _place(good, tz, parsed)
    by_point: dict[str, list[_Row]] = defaultdict(list)
    for row in good:
        if row.line in moments:
            by_point[row.point_id].append(row)
    for pid, point_rows in sorted(by_point.items()):
        point = inventory.point(pid)
        curve = [r for r in point_rows if r.kind == "curve"]
        indexes = [r for r in point_rows if r.kind == "index"]
        daily = [r for r in point_rows if r.kind == "daily"]
        raw: list[Consumption] = []
        if curve:
            for r in indexes + daily:
                what = "daily index" if r.kind == "index" else "daily consumption"
                parsed.problems.append(Problem(ProblemKind.IGNORED, r.line, f"{what} ignored: the file has the load curve"))
            inferred = _inferred_step([moments[r.line] for r in curve if r.step is None])
            if inferred is not None and any(r.step is None for r in curve):
                parsed.notes.append(f"no step (Pas) given: {inferred / timedelta(minutes=1):g} minutes taken, "
                                    "the most common time between rows")
            for r in curve:
                end = moments[r.line]
                step = r.step or inferred
                if step is None:
                    parsed.problems.append(Problem(ProblemKind.REJECTED, r.line,
                                                   "no step (Pas), and too few rows to tell it"))
                    continue
                kwh = r.value * (step / timedelta(hours=1)) / 1000.0
                raw.append(Consumption(end - step, end, _to_unit(kwh, point.unit), r.line))
        else:
            if indexes and declared is None:
                _check_rising(path, indexes, moments)
            raw = _index_intervals(indexes, moments, point, parsed)
            raw += _day_intervals(daily, moments, point, tz)
        parsed.meters[point.id] = point.enedis.prm if point.enedis is not None else "?"
        _settle(point.id, raw, parsed, point.unit, tz)
    return parsed


_TOTAL_INDEX = "eas t"
"""The column of the customer area's daily index download that totals its cadrans (``EAS F1``... ``EAS D4``), Wh."""


def _enedis_header(cells: list[str]) -> bool:
    """``Horodate`` with ``Valeur``, or with ``EAS T`` (the daily index download, one column per cadran)."""
    names = {_norm(c) for c in cells}
    return "horodate" in names and bool({"valeur", _TOTAL_INDEX} & names)


_DAY_STEPS = {"p1d", "p1j", "pt24h", "1440"}
"""``Pas`` values of one day: a row in Wh with that step is the energy of a day, not an index."""


def _declared_kind(path: Path, type_de_donnees: str) -> str | None:
    """The kind the preamble's ``Type de donnees`` declares: ``curve``, ``index``, ``daily`` or None (no preamble).

    Raises:
        DecodeError: a kind that is not consumption (maximum power) or not recognised: refused, not guessed.
    """
    kind = _norm(type_de_donnees)
    if not kind:
        return None
    if "puissance maximale" in kind:
        msg = f"{path}: {type_de_donnees!r} is no consumption (load curve, daily index or daily consumption)"
        raise DecodeError(msg)
    if "index" in kind:
        return "index"
    if "courbe" in kind:
        return "curve"
    if "consommation" in kind and ("quotidien" in kind or "journalier" in kind):
        return "daily"
    msg = (f"{path}: Type de donnees {type_de_donnees!r} is not recognised (load curve, daily index or daily "
           "consumption are read): refused rather than guessed")
    raise DecodeError(msg)


def _check_rising(path: Path, rows: list[_Row], moments: dict[int, datetime]) -> None:
    """Refuse Wh rows declared neither index nor daily energy (no ``Type de donnees``, no ``Pas``) that fall.

    An index never falls; values that fall are daily energies (or another kind of file), and
    reading them as indexes would give wrong figures: the file is refused, not guessed.
    """
    ordered = sorted(rows, key=lambda r: (moments[r.line], r.line))
    falls = [b.line for a, b in pairwise(ordered) if b.value < a.value]
    if falls:
        msg = (f"{path}: the Wh values fall at line{'s' if len(falls) > 1 else ''} {', '.join(map(str, falls[:5]))}: "
               "not daily indexes; daily "
               "consumptions need their step (Pas P1D) or the preamble's 'Type de donnees;Consommation quotidienne'"
               ": refused rather than guessed")
        raise DecodeError(msg)


def _day_intervals(rows: list[_Row], moments: dict[int, datetime], point: Point, tz: ZoneInfo) -> list[Consumption]:
    """Daily energies (Wh): each row is the local day its ``Horodate`` names, 00:00 to 24:00."""
    out: list[Consumption] = []
    for row in rows:
        day = moments[row.line].astimezone(tz).date()
        start = datetime.combine(day, time(0), tz).astimezone(UTC)
        end = datetime.combine(day + timedelta(days=1), time(0), tz).astimezone(UTC)
        out.append(Consumption(start, end, _to_unit(row.value / 1000.0, point.unit), row.line))
    return out


def _forced(inventory: Inventory, point_id: str | None, kind: str) -> Point | None:
    """The ``--point`` of an import: a point of the inventory bound to ``kind`` (enedis, grdf)."""
    if point_id is None:
        return None
    try:
        point = inventory.point(point_id)
    except KeyError:
        msg = f"point {point_id!r} is not in the inventory"
        raise DecodeError(msg) from None
    if getattr(point, kind) is None:
        msg = f"point {point_id!r} has no `{kind}:` binding in the inventory"
        raise DecodeError(msg)
    return point


def _inferred_step(ends: list[datetime]) -> timedelta | None:
    """The step of a load curve whose rows do not give it: the most common time between them (None: fewer than 2)."""
    ordered = sorted(set(ends))
    gaps = Counter(b - a for a, b in pairwise(ordered))
    if not gaps:
        return None
    step = gaps.most_common(1)[0][0]
    return step if timedelta(minutes=1) <= step <= timedelta(hours=1) else None


def _index_intervals(rows: list[_Row], moments: dict[int, datetime], point: Point, parsed: ParsedFile) -> list[Consumption]:
    """Successive daily indexes (Wh) → the consumption between them; a falling index is rejected."""
    ordered = sorted(rows, key=lambda r: (moments[r.line], r.line))
    out: list[Consumption] = []
    previous: _Row | None = None
    for row in ordered:
        if previous is not None and moments[row.line] == moments[previous.line]:
            kind = ProblemKind.DUPLICATE if row.value == previous.value else ProblemKind.CONFLICT
            parsed.problems.append(Problem(kind, row.line, f"index at {moments[row.line].isoformat()} also at line "
                                                           f"{previous.line}: line {previous.line} kept"))
            continue
        if previous is not None:
            if row.value < previous.value:
                why = f"index {_fmt(row.value)} Wh is below {_fmt(previous.value)} Wh of line {previous.line}"
                parsed.problems.append(Problem(ProblemKind.REJECTED, row.line, why))
                continue
            kwh = (row.value - previous.value) / 1000.0
            out.append(Consumption(moments[previous.line], moments[row.line], _to_unit(kwh, point.unit), row.line))
        previous = row
    return out


def _direction(rows: Sequence[_Row], naive: dict[int, datetime], tz: ZoneInfo) -> int:
    """1 when the file's naive times run forward, -1 backward (newest first), 0 unsorted.

    The times of the repeated hour are left out: they go back once in a file sorted forward.
    """
    forward = backward = 0
    last: dict[tuple[str, str], datetime] = {}
    for row in rows:
        moment = naive.get(row.line)
        if moment is None or _ambiguous(moment, tz):
            continue
        key = (row.point_id, row.kind)
        if key in last:
            forward += moment > last[key]
            backward += moment < last[key]
        last[key] = moment
    if forward >= 9 * backward and forward:
        return 1
    if backward >= 9 * forward and backward:
        return -1
    return 0


def _place(rows: Sequence[_Row], tz: ZoneInfo, parsed: ParsedFile) -> dict[int, datetime]:
    """The UTC instant of each row's Horodate (by line); rows that cannot be placed are rejected.

    A naive local time of the autumn change happens twice: in a file sorted oldest first the
    first row of it is the first (summer time) one, in a file sorted newest first the first row
    is the second (winter time) one; in an unsorted file the file order is a guess, reported.
    """
    out: dict[int, datetime] = {}
    naive: dict[int, datetime] = {}
    for row in rows:
        try:
            moment = _naive_or_aware(row.horodate)
        except ValueError:
            parsed.problems.append(Problem(ProblemKind.REJECTED, row.line, f"Horodate {row.horodate!r} is not a time"))
            continue
        if not _FIRST_YEAR <= moment.year <= _LAST_YEAR:
            parsed.problems.append(Problem(ProblemKind.REJECTED, row.line,
                                           f"Horodate {row.horodate!r} is not between {_FIRST_YEAR} and {_LAST_YEAR}"))
            continue
        if moment.tzinfo is not None:
            out[row.line] = moment.astimezone(UTC)
            continue
        if not _exists(moment, tz):
            parsed.problems.append(Problem(ProblemKind.REJECTED, row.line,
                                           f"local time {row.horodate} does not exist in {tz.key} (spring clock change)"))
            continue
        naive[row.line] = moment
    direction = _direction(rows, naive, tz)
    # Naive local times of the autumn change, per (point, kind, time): the values already given a fold.
    folds: dict[tuple[str, str, datetime], list[float]] = defaultdict(list)
    for row in rows:
        if row.line not in naive:
            continue
        moment = naive[row.line]
        fold = 0
        if _ambiguous(moment, tz):
            seen = folds[(row.point_id, row.kind, moment)]
            if row.value in seen:
                order = seen.index(row.value)  # a repeat: the duplicate check drops it
            elif len(seen) < 2:
                order = len(seen)
                seen.append(row.value)
                if direction == 0 and order == 1:
                    parsed.problems.append(Problem(
                        ProblemKind.AMBIGUOUS, row.line,
                        f"local time {row.horodate} happens twice and the file is not sorted: taken as the second "
                        "(winter time) by file order; a file with UTC offsets avoids the guess"))
            else:
                parsed.problems.append(Problem(ProblemKind.CONFLICT, row.line,
                                               f"local time {row.horodate} happens twice, and two other values have it"))
                continue
            fold = 1 - order if direction < 0 else order
        out[row.line] = moment.replace(tzinfo=tz, fold=fold).astimezone(UTC)
    return out


def write_enedis_load_curve(path: Path, prm: str, rows: Iterable[tuple[datetime, int, float]],
                            tz: ZoneInfo | None = None) -> None:
    """Write a load curve as the Enedis customer area does (``Horodate`` with its offset).

    Args:
        path: the file to write.
        prm: the meter's PRM.
        rows: (end of the interval (aware), step in minutes, average power in W).
        tz: the timezone of ``Horodate`` (Europe/Paris by default).
    """
    zone = tz or ZoneInfo("Europe/Paris")
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";", lineterminator="\n")
        writer.writerow(ENEDIS_HEADER)
        for end, minutes, watts in rows:
            local = end.astimezone(zone)
            day = local.date().isoformat()
            writer.writerow([prm, day, day, "PA", "CONS", "BRUT", "W", local.isoformat(), f"{watts:.10g}", "B",
                             f"PT{minutes}M", "", ""])


# -- GRDF ------------------------------------------------------------------------------------


def _grdf_points(inventory: Inventory) -> dict[str, Point]:
    return {p.grdf.pce: p for _, p in inventory.points() if p.grdf is not None}


_GRDF_PREFIXES: dict[str, tuple[str, ...]] = {
    "day": ("date",), "m3": ("volume",), "kwh": ("energie",), "coeff": ("coef",), "kind": ("type", "qualification"),
}
"""When no name matches exactly: the first column starting so (``Volume brut consommé (m3)``)."""


def _grdf_columns(header: list[str]) -> dict[str, int]:
    lowered = [_norm(name) for name in header]
    out: dict[str, int] = {}
    for key, names in _GRDF_COLUMNS.items():
        exact = next((i for i, name in enumerate(lowered) if name in names), None)
        if exact is None:
            starts = _GRDF_PREFIXES.get(key, ())
            exact = next((i for i, name in enumerate(lowered) if name.startswith(starts) and i not in out.values()), None)
        if exact is not None:
            out[key] = exact
    return out


def _preamble_pce(preamble: list[list[str]]) -> str:
    """The PCE a title row gives (``PCE;21987654321098``, ``N° PCE : GI123456``), or ``""``."""
    for row in preamble:
        words = re.split(r"[^0-9A-Za-z]+", " ".join(row))
        for i, word in enumerate(words):
            if word.lower() == "pce":
                number = next((w for w in words[i + 1:] if len(w) >= 6 and any(ch.isdigit() for ch in w)), "")
                if number:
                    return number
    return ""


def _gas_date(text: str, name: str) -> date:
    try:
        day = _naive_or_aware(text).date()
    except ValueError:
        msg = f"{name} {text!r} is not a date"
        raise ValueError(msg) from None
    if not _FIRST_YEAR <= day.year <= _LAST_YEAR:
        msg = f"{name} {text!r} is not between {_FIRST_YEAR} and {_LAST_YEAR}"
        raise ValueError(msg)
    return day


def _gas_days(day: str, start: str, end: str) -> tuple[date, date]:
    """The first and last gas days of a row.

    The reading period (``dateDebutReleve`` D to ``dateFinReleve`` E: gas days D to E-1) when
    the row gives it; else the gas day (``journeeGaziere``, ``Date de relevé``).
    """
    if start or end:
        if not (start and end):
            msg = f"{'dateFinReleve' if start else 'dateDebutReleve'} is empty (the reading period needs both dates)"
            raise ValueError(msg)
        first, after = _gas_date(start, "dateDebutReleve"), _gas_date(end, "dateFinReleve")
        if after <= first:
            msg = f"dateFinReleve {end!r} is not after dateDebutReleve {start!r}"
            raise ValueError(msg)
        return first, after - timedelta(days=1)
    if not day:
        msg = "no date: the gas day (journeeGaziere, Date de relevé) is empty, and no reading period"
        raise ValueError(msg)
    one = _gas_date(day, "gas day")
    return one, one


def parse_grdf(path: Path, inventory: Inventory, point_id: str | None = None) -> ParsedFile:
    """Read a GRDF daily export (customer area or ADICT column names), per PCE of the inventory.

    The PCE is the row's ``N° PCE``/``pce`` column; the customer area's export has none and names
    it in its title rows; else ``point_id`` (``--point``) or the inventory's only ``grdf`` point.

    Args:
        path: the file.
        inventory: the portfolio; each PCE is matched to its ``grdf`` point.
        point_id: the point every row goes to, whatever (blank, mangled) PCE it shows.

    Returns:
        The gas days of each point as intervals in its unit (m3 or kWh), and the problems by line.

    Raises:
        DecodeError: the file cannot be read, lacks the date or both amount columns, or names no PCE
            of the inventory (the message names the file and the PCEs).
    """
    header, rows, preamble = _read_rows(
        path, lambda cells: bool({"day", "start"} & set(_grdf_columns(cells))) and len(cells) > 2)
    col = _grdf_columns(header)
    if "m3" not in col and "kwh" not in col:
        msg = f"{path}: the header has neither a volume (m3) nor an energy (kWh) column"
        raise DecodeError(msg)
    title_pce = _preamble_pce(preamble)
    points = _grdf_points(inventory)
    forced = _forced(inventory, point_id, "grdf")
    if "pce" not in col and not title_pce and forced is None and len(points) != 1:
        msg = (f"{path}: no PCE column nor title row naming the PCE, and the inventory has {len(points)} grdf points: "
               "give the point with --point")
        raise DecodeError(msg)
    tz = inventory.organisation.tz
    parsed = ParsedFile(path)
    raw: dict[str, list[Consumption]] = defaultdict(list)
    rank: dict[int, int] = {}
    published: dict[int, float | None] = {}
    multi_day = False
    for line, cells in rows:
        def cell(key: str, cells: list[str] = cells) -> str:
            index = col.get(key)
            return cells[index] if index is not None and index < len(cells) else ""

        pce = cell("pce") or title_pce
        point, note = _meter_point(pce, points, forced, "PCE")
        if note and note not in parsed.notes:
            parsed.notes.append(note)
        if point is None:
            parsed.unknown[pce] = parsed.unknown.get(pce, 0) + 1
            why = _spreadsheet_mangled(pce) or f"PCE {pce!r} is no grdf point of the inventory"
            if forced is not None and not _spreadsheet_mangled(pce):
                why = f"PCE {pce!r} is not the PCE of point {forced.id}"
            parsed.problems.append(Problem(ProblemKind.REJECTED, line, why))
            continue
        try:
            first, last = _gas_days(cell("day"), cell("start"), cell("end"))
            amount = _gas_amount(point, cell("m3"), cell("kwh"), cell("coeff"))
        except ValueError as exc:
            parsed.problems.append(Problem(ProblemKind.REJECTED, line, str(exc)))
            continue
        if last > first:
            multi_day = True
        start = datetime.combine(first, _GAS_DAY_START, tz).astimezone(UTC)
        end = datetime.combine(last + timedelta(days=1), _GAS_DAY_START, tz).astimezone(UTC)
        parsed.meters[point.id] = point.grdf.pce if point.grdf is not None else pce
        # A published (definitive) reading wins over an estimated one of the same day, whatever their order.
        rank[line] = 1 if _norm(cell("kind")).startswith("estim") else 0
        published[line] = _published_kwh(cell("m3"), cell("kwh"), cell("coeff"))
        raw[point.id].append(Consumption(start, end, amount, line))
    if not raw and parsed.unknown:
        raise DecodeError(_unknown_error(path, parsed.unknown, "PCE", "grdf"))
    if multi_day:
        parsed.notes.append("records over several gas days (dateDebutReleve to dateFinReleve) are each one interval "
                            "from the first gas day's 06:00 to the end date's 06:00: their days are not told apart")
    for pid, items in sorted(raw.items()):
        _settle(pid, items, parsed, inventory.point(pid).unit, tz, rank)
        energies = [published.get(item.line or 0) for item in parsed.series[pid]]
        if energies and all(e is not None for e in energies):
            parsed.published_kwh[pid] = sum(e for e in energies if e is not None)
    return parsed


def _published_kwh(m3_text: str, kwh_text: str, coeff_text: str) -> float | None:
    """The energy a GRDF row publishes (kWh): its own, else volume × the day's coefficient; None when neither."""
    try:
        if kwh_text:
            return _number(kwh_text)
        if m3_text and coeff_text:
            return _number(m3_text) * _number(coeff_text)
    except ValueError:
        return None
    return None


def _gas_amount(point: Point, m3_text: str, kwh_text: str, coeff_text: str) -> float:
    """The day's amount in the point's unit: the volume for a gas_volume point, else the energy."""
    m3 = _number(m3_text) if m3_text else None
    kwh = _number(kwh_text) if kwh_text else None
    coeff = _number(coeff_text) if coeff_text else None
    for name, value in (("volume", m3), ("energy", kwh)):
        if value is not None and value < 0:
            msg = f"negative {name} {_fmt(value)}"
            raise ValueError(msg)
        if value is not None and value > _MAX_GAS_DAY_KWH:
            msg = f"{name} {_fmt(value)} is not plausible for a gas day"
            raise ValueError(msg)
    if point.quantity is Quantity.GAS_VOLUME:
        if m3 is None and kwh is not None and coeff:
            m3 = kwh / coeff
        if m3 is None:
            msg = "no volume (m3), and no energy with a conversion coefficient"
            raise ValueError(msg)
        return m3 / factor(point.unit)
    if kwh is None and m3 is not None and coeff:
        kwh = m3 * coeff
    if kwh is None:
        msg = "no energy (kWh), and no volume with a conversion coefficient"
        raise ValueError(msg)
    return _to_unit(kwh, point.unit)


def write_grdf_daily(path: Path, pce: str, rows: Iterable[tuple[date, float, float]]) -> None:
    """Write daily gas data as the GRDF customer area exports them (saved as ``;`` CSV, French dates).

    Args:
        path: the file to write.
        pce: the meter's PCE.
        rows: (gas day, volume in m3, conversion coefficient in kWh per m3); the energy is volume × coefficient.
    """
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";", lineterminator="\n")
        writer.writerow(GRDF_HEADER)
        index = 0.0
        for day, m3, coeff in rows:
            start, index = index, index + m3
            writer.writerow([pce, day.strftime("%d/%m/%Y"), "Définitive", _comma(start), _comma(index), _comma(m3),
                             _comma(round(m3 * coeff, 6)), _comma(coeff)])


def _comma(value: float) -> str:
    return f"{value:.10g}".replace(".", ",")
