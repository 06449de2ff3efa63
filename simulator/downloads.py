"""The files an advisor downloads for the simulated commune: Linky load curves, Gazpar days, invoices.

For buildings with no meter of ours, only a Linky and a Gazpar (issue 14), the data come from
the utilities' customer areas and from the bills, never from a collector. :func:`write_utility_files`
writes, for a simulated period, the files :mod:`econome.cli_import` reads:

* ``enedis-<PRM>-<year>.csv``: per Linky (``enedis`` point) and local calendar year, the Enedis
  "Mes mesures" load curve, the 30-minute average power in W ending at ``Horodate``
  (:func:`streams.utility_files.write_enedis_load_curve`), as an advisor downloads it year by year;
* ``grdf-<PCE>.csv``: per Gazpar (``grdf`` point), the GRDF customer area's daily data, one row per
  gas day, the newest first (an order the importer takes like any other);
* ``factures.csv``: the invoice CSV of :mod:`streams.invoices` (``docs/invoices.md``): one bill per
  calendar month for every invoice account of the inventory, over the simulated period for a
  heating fuel no meter reads (the fuel oil :func:`simulator.utilities.invoiced_fuel` burns) and
  over the ``bill_years`` before the period (2015 to 2019 by default: the years an OPERAT
  reference year is chosen among) for every account, simulated for the billed buildings alone.
  An electricity or gas account bills what its building's Linky or Gazpar counts, in kWh; a fuel
  oil in litres (its ``conversion_kwh_per_unit``, else 10 kWh/L).

The amounts are the differences of the indexes :func:`simulator.export.write_readings_csv` writes
with the same start, seed and faults (:func:`simulator.utilities.utility_consumption`).

>>> import tempfile
>>> from datetime import UTC, datetime
>>> from inventory import load_inventory
>>> inv = load_inventory(Path("examples/commune.yaml"))
>>> files = write_utility_files(inv, Path(tempfile.mkdtemp()), datetime(2026, 1, 5, tzinfo=UTC),
...                             datetime(2026, 1, 7, tzinfo=UTC), bill_years=())
>>> [p.name for p in files.enedis], [p.name for p in files.grdf]
(['enedis-30001234567890-2026.csv', 'enedis-30001234567891-2026.csv'], ['grdf-21400000000012.csv'])
>>> files.invoices.read_text().splitlines()[1].split(";")[:5]  # the school's fuel oil of the whole day 6 January
['maternelle-aulnes-fioul', '2026-01-06', '2026-01-06', '30,3', 'L']
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from inventory import Building, Energy, Inventory, Point, Usage
from simulator.faults import Fault
from simulator.physics import _BOILER_EFFICIENCY, sample_history
from simulator.utilities import LOAD_CURVE_STEP, UtilityInterval, fuel_meters, invoiced_fuel, utility_consumption
from streams.units import energy_kwh_factor
from streams.utility_files import write_enedis_load_curve, write_grdf_daily

__all__ = ["BILL_YEARS", "INVOICE_HEADER", "UtilityFiles", "monthly_bounds", "write_utility_files"]

BILL_YEARS = range(2015, 2020)
"""Years billed for every invoice account: OPERAT's reference year is one of 2010-2019."""

INVOICE_HEADER = ("account", "start", "end", "consumption", "unit", "amount_eur", "estimated", "reference")
"""Columns of the invoice CSV written (``docs/invoices.md``)."""

_DEFAULT_FUEL_OIL_KWH_PER_L = 10.0
_PRICE_EUR = {Energy.ELECTRICITY: 0.19, Energy.NATURAL_GAS: 0.075, Energy.FUEL_OIL: 1.05}
"""Rough prices per billed unit (kWh, kWh, L) of 2015-2025, for the bills' amounts only."""


@dataclass(frozen=True, slots=True)
class UtilityFiles:
    """The files :func:`write_utility_files` wrote.

    Attributes:
        enedis: the Linky load curves (``econome import enedis``).
        grdf: the Gazpar daily files (``econome import grdf``).
        invoices: the invoice CSV (``econome import invoices``), or None without any bill.
        bills: the number of bills in it.
    """

    enedis: list[Path] = field(default_factory=list)
    grdf: list[Path] = field(default_factory=list)
    invoices: Path | None = None
    bills: int = 0


def monthly_bounds(start: datetime, end: datetime, tz: object) -> list[datetime]:
    """``start``, each local first of a month inside ``(start, end)``, then ``end``; aware UTC.

    >>> from zoneinfo import ZoneInfo
    >>> [b.isoformat() for b in monthly_bounds(datetime(2025, 1, 15, tzinfo=UTC), datetime(2025, 3, 1, tzinfo=UTC),
    ...                                       ZoneInfo("Europe/Paris"))]
    ['2025-01-15T00:00:00+00:00', '2025-01-31T23:00:00+00:00', '2025-02-28T23:00:00+00:00', '2025-03-01T00:00:00+00:00']
    """
    bounds = [start.astimezone(UTC)]
    month = start.astimezone(tz).replace(day=1, hour=0, minute=0, second=0, microsecond=0)  # type: ignore[arg-type]  # a tzinfo
    while True:
        month = (month + timedelta(days=32)).replace(day=1)
        if month >= end:
            break
        bounds.append(month.astimezone(UTC))
    bounds.append(end.astimezone(UTC))
    return bounds


def _billing_meter(building: Building, energy: Energy) -> Point | None:
    """The utility meter an account of ``energy`` bills: the building's Linky or Gazpar of that energy."""
    for point in building.points:
        if point.is_utility and point.energy is energy:
            return point
    return None


def _billed_buildings(inventory: Inventory) -> Inventory | None:
    """The buildings with invoice accounts, and the weather station: a faster simulation of their bills."""
    sites = []
    for site in inventory.sites:
        kept = []
        for building in site.buildings:
            if building.invoices:
                kept.append(building)
            elif any(p.usage is Usage.WEATHER for p in building.points):
                weather = [p for p in building.points if p.usage is Usage.WEATHER]
                kept.append(building.model_copy(update={"points": weather, "zones": []}))
        if kept:
            sites.append(site.model_copy(update={"buildings": kept}))
    if not any(b.invoices for s in sites for b in s.buildings):
        return None
    return inventory.model_copy(update={"sites": sites})


def _monthly_bills(inventory: Inventory, start: datetime, end: datetime, *, seed: int) -> dict[str, list[UtilityInterval]]:
    """The kWh per month of every invoice account over ``[start, end)``, in one simulation.

    A heating fuel no meter reads bills the heat of :func:`simulator.utilities.fuel_meters` over the boiler's
    efficiency (as :func:`simulator.utilities.invoiced_fuel`); an electricity or gas account what its building's
    Linky or Gazpar counts.
    """
    physics, fuels = fuel_meters(inventory)
    meters: dict[str, tuple[str, float]] = {account: (meter, 1.0 / _BOILER_EFFICIENCY) for account, meter in fuels.items()}
    for _, building in inventory.buildings():
        for account in building.invoices:
            meter = _billing_meter(building, account.energy)
            if meter is not None and account.id not in meters:
                meters[account.id] = (meter.id, energy_kwh_factor(meter) or 1.0)
    if not meters:
        return {}
    bounds = monthly_bounds(start, end, inventory.organisation.tz)
    history = sample_history(physics, np.array([b.timestamp() for b in bounds]), seed=seed)
    out: dict[str, list[UtilityInterval]] = {}
    for account_id, (meter_id, kwh) in meters.items():
        column = history.column(meter_id)
        out[account_id] = [UtilityInterval(lo, hi, float(column[i + 1] - column[i]) * kwh)
                        for i, (lo, hi) in enumerate(pairwise(bounds))]
    return out


def _bill_rows(inventory: Inventory, bills: dict[str, list[UtilityInterval]]) -> list[list[str]]:
    tz = inventory.organisation.tz
    accounts = {a.id: a for _, b in inventory.buildings() for a in b.invoices}
    rows: list[list[str]] = []
    for account_id, months in sorted(bills.items()):
        account = accounts[account_id]
        for n, month in enumerate(months, start=1):
            if account.energy is Energy.FUEL_OIL:
                quantity, unit = month.amount / (account.conversion_kwh_per_unit or _DEFAULT_FUEL_OIL_KWH_PER_L), "L"
            else:
                quantity, unit = month.amount, "kWh"
            first = month.start.astimezone(tz).date()
            last = (month.end.astimezone(tz) - timedelta(microseconds=1)).date()  # the last day billed, included
            amount = quantity * _PRICE_EUR.get(account.energy, 0.1)
            rows.append([account_id, first.isoformat(), last.isoformat(), f"{quantity:.1f}".replace(".", ","), unit,
                         f"{amount:.2f}".replace(".", ","), "non", f"F-{first:%Y%m}-{n:03d}"])
    return rows


def _local_midnight(moment: datetime, tz: ZoneInfo, *, up: bool) -> datetime:
    """The local midnight at or after (``up``) or at or before ``moment``."""
    local = moment.astimezone(tz)
    day = local.date()
    midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
    if up and midnight < local:
        midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz)
    return midnight


def _local_year(moment: datetime, tz: object) -> int:
    """The local calendar year an interval ending at ``moment`` belongs to (midnight ends the day before)."""
    return (moment.astimezone(tz) - timedelta(microseconds=1)).year  # type: ignore[arg-type]  # a tzinfo


def write_utility_files(
    inventory: Inventory,
    folder: Path,
    start: datetime,
    end: datetime,
    *,
    seed: int = 3,
    faults: Sequence[Fault] = (),
    physics: Inventory | None = None,
    bill_years: Sequence[int] = BILL_YEARS,
    curves: dict[str, list[UtilityInterval]] | None = None,
) -> UtilityFiles:
    """Write the Enedis, GRDF and invoice files of the simulated ``[start, end)`` into ``folder``.

    Args:
        inventory: the portfolio (its ``enedis``/``grdf`` points and invoice accounts).
        folder: where to write (created; files of the same names are overwritten).
        start: start of the simulated period (aware).
        end: its end (aware), excluded.
        seed: simulator seed (the same as the readings CSV's).
        faults: faults to inject (the same as the readings CSV's).
        physics: the portfolio that drives the simulation, when it differs from ``inventory``.
        bill_years: years every invoice account is billed for, by month (none: only the fuels no meter reads,
            over the period).
        curves: the utility points' intervals when already simulated (``on_utility`` of
            :func:`simulator.export.write_readings_csv`); else simulated here.

    Returns:
        The files written.

    Raises:
        ValueError: on a naive or empty period.
    """
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        msg = f"need an aware period with start < end, got {start} .. {end}"
        raise ValueError(msg)
    folder.mkdir(parents=True, exist_ok=True)
    tz = inventory.organisation.tz
    files = UtilityFiles()
    utility = [p for _, p in inventory.points() if p.is_utility]
    if curves is None:
        curves = utility_consumption(inventory, start, end, seed=seed, faults=faults, physics=physics) if utility else {}
    hours = LOAD_CURVE_STEP / timedelta(hours=1)
    for point in utility:
        intervals = curves[point.id]
        if point.enedis is not None:
            factor = energy_kwh_factor(point) or 1.0
            by_year: dict[int, list[tuple[datetime, int, float]]] = defaultdict(list)
            for item in intervals:
                watts = item.amount * factor * 1000.0 / hours
                by_year[_local_year(item.end, tz)].append((item.end, int(LOAD_CURVE_STEP.total_seconds() // 60), watts))
            for year, rows in sorted(by_year.items()):
                path = folder / f"enedis-{point.enedis.prm}-{year}.csv"
                write_enedis_load_curve(path, point.enedis.prm, rows, tz)
                files.enedis.append(path)
        elif point.grdf is not None:
            coeff = point.conversion_kwh_per_unit or 11.2
            kwh = energy_kwh_factor(point) or 1.0
            # A gas_volume point counts m3; a heat_energy one kWh, written as m3 over the coefficient.
            volume = 1.0 if kwh == coeff else kwh / coeff
            days: list[tuple[date, float, float]] = [
                (item.start.astimezone(tz).date(), item.amount * volume, coeff) for item in intervals
            ]
            path = folder / f"grdf-{point.grdf.pce}.csv"
            write_grdf_daily(path, point.grdf.pce, days)
            # Newest day first (the indexes still grow with time): an order the importer takes like any other.
            header, *lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            path.write_text(header + "".join(reversed(lines)), encoding="utf-8")
            files.grdf.append(path)
    billed = _billed_buildings(inventory)
    bills: dict[str, list[UtilityInterval]] = {}
    if billed is None:
        return files
    # Bills are of whole local days: the period's days that are whole.
    first_day = _local_midnight(start, tz, up=True)
    end_day = _local_midnight(end, tz, up=False)
    if first_day < end_day:
        ids = {b.id for _, b in billed.buildings()}
        bills.update(invoiced_fuel(billed, first_day, end_day, seed=seed,
                                   faults=[f for f in faults if f.building in ids]))
    years = sorted(y for y in bill_years if datetime(y + 1, 1, 1, tzinfo=tz) <= start)  # never over the period
    if years:
        first = datetime(years[0], 1, 1, tzinfo=tz)
        last = datetime(years[-1] + 1, 1, 1, tzinfo=tz)
        past = _monthly_bills(billed, first, last, seed=seed)
        for account, months in past.items():
            kept = [m for m in months if m.start.astimezone(tz).year in years]
            bills[account] = [*kept, *bills.get(account, [])]
    bill_rows = _bill_rows(inventory, bills)
    if bill_rows:
        path = folder / "factures.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter=";", lineterminator="\n")
            writer.writerow(INVOICE_HEADER)
            writer.writerows(bill_rows)
        return UtilityFiles(files.enedis, files.grdf, path, len(bill_rows))
    return files
