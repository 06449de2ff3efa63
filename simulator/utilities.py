"""The utilities' meters of the simulated commune: a Linky's load curve, a Gazpar's gas days.

A Linky (a point with an ``enedis`` binding) is published by Enedis as a load curve: one
value per interval of :data:`LOAD_CURVE_STEP` (30 minutes, the default step of the
customer-area "Mes mesures" export and of Data Connect ``consumption_load_curve``). A Gazpar
(a ``grdf`` binding) is published by GRDF once per gas day, which runs from
:data:`GAS_DAY_START` (6:00 local) to 6:00 the next day. The simulator reads their indexes at
those instants only (:func:`reading_times`), never every minute: the readings CSV holds what
the utilities publish, and a daily counter is not judged per hour.

Sources: a Gazpar's daily reading is "arrêté à 6 heures du matin" and sent once a day
(https://www.compteur-gaz.com/consommation-gaz/); a Linky's load curve has the meter's native
30-minute step, and a day's figures land the next morning
(https://glama.ai/mcp/servers/mgcrea/mcp-edf/tools/edf_get_electricity_load_curve, a client of
the EDF/Enedis data), hence the publication delays of :class:`anomalies.rules.RulesConfig`.

:func:`utility_consumption` gives each point's consumption per published interval: what the
writers of the utilities' file formats (Enedis CSV, GRDF export) put in their files.
:func:`invoiced_fuel` gives, per month, the fuel a building heated by an unmetered fuel burns:
what its invoices bill.

>>> from datetime import UTC, datetime
>>> from pathlib import Path
>>> from inventory import load_inventory
>>> inv = load_inventory(Path("examples/commune.yaml"))
>>> days = utility_consumption(inv, datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 8, tzinfo=UTC))
>>> [(i.start.hour, i.end.hour) for i in days["salle-polyvalente-gazpar"]]  # 6:00 Paris is 5:00 UTC in winter
[(5, 5), (5, 5)]
>>> len(days["maternelle-aulnes-linky"])  # three days of 48 half-hours
144
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import numpy as np

from inventory import Energy, Inventory, Point, Quantity, Usage
from simulator.faults import Fault
from simulator.physics import _BOILER_EFFICIENCY, sample_history

__all__ = [
    "GAS_DAY_START",
    "LOAD_CURVE_STEP",
    "UtilityInterval",
    "fuel_meters",
    "invoiced_fuel",
    "last_reading",
    "reading_times",
    "utility_consumption",
]

LOAD_CURVE_STEP = timedelta(minutes=30)
"""Step of a Linky's load curve: intervals aligned on the half-hour."""

GAS_DAY_START = time(6)
"""Local start of a GRDF gas day ("journée gazière", 6:00 to 6:00)."""


@dataclass(frozen=True, slots=True)
class UtilityInterval:
    """A utility meter's consumption over one published interval, in the point's unit.

    Attributes:
        start: start of the interval (aware UTC).
        end: end of the interval (aware UTC), excluded.
        amount: the consumption (kWh for a Linky point in kWh, m3 for a Gazpar in m3).
    """

    start: datetime
    end: datetime
    amount: float


def reading_times(point: Point, tz: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """The instants in ``[start, end]`` at which a utility publishes the point's index (both ends included).

    Args:
        point: a point with an ``enedis`` or ``grdf`` binding.
        tz: the organisation's timezone (gas days are local).
        start: first instant (aware).
        end: last instant (aware), included.

    Returns:
        The instants, aware UTC, in order.

    Raises:
        ValueError: when the point is not a utility point.
    """
    if point.enedis is not None:
        step = LOAD_CURVE_STEP.total_seconds()
        first = np.ceil(start.timestamp() / step) * step
        stamps = np.arange(first, end.timestamp() + 1e-6, step)
        return [datetime.fromtimestamp(float(s), UTC) for s in stamps]
    if point.grdf is not None:
        out: list[datetime] = []
        day = start.astimezone(tz).date() - timedelta(days=1)
        while True:
            moment = datetime.combine(day, GAS_DAY_START, tzinfo=tz)
            if moment > end:
                return out
            if moment >= start:
                out.append(moment.astimezone(UTC))
            day += timedelta(days=1)
    msg = f"point {point.id} is not read from a utility (no 'enedis' or 'grdf' binding)"
    raise ValueError(msg)


_HEATING_FUELS = frozenset({Energy.NATURAL_GAS, Energy.FUEL_OIL, Energy.WOOD_PELLETS, Energy.HEATING_NETWORK})


def fuel_meters(inventory: Inventory) -> tuple[Inventory, dict[str, str]]:
    """The portfolio with a simulated heat meter for each building heated by a fuel no meter reads.

    A building with an invoice account of a heating fuel (fuel oil, pellets, gas, a heating network)
    and no heating meter gets a heat meter of the model only (its heating and hot water).

    Returns:
        The portfolio to simulate, and per invoice account id the id of its simulated heat meter.
    """
    data = inventory.model_dump(exclude_none=True)
    meters: dict[str, str] = {}
    for site in data["sites"]:
        for building in site["buildings"]:
            heated = any(p.get("usage") == Usage.HEATING.value or Usage.HEATING.value in p.get("serves", ())
                         for p in building["points"] if p.get("cumulative"))
            fuels = [a for a in building.get("invoices", []) if Energy(a["energy"]) in _HEATING_FUELS]
            if heated or not fuels:
                continue
            # The fuel's heat as a meter of the model only (a utility binding keeps it off every collector).
            meter = f"{fuels[0]['id']}-simulated-heat"
            building["points"].append({
                "id": meter, "name": "fuel (simulated)", "quantity": Quantity.HEAT_ENERGY.value, "unit": "kWh",
                "usage": Usage.HEATING.value, "cumulative": True, "energy": fuels[0]["energy"],
                "grdf": {"pce": f"GI{len(meters):06d}"},
            })
            meters[fuels[0]["id"]] = meter
    return (Inventory.model_validate(data) if meters else inventory), meters


def invoiced_fuel(
    inventory: Inventory,
    start: datetime,
    end: datetime,
    *,
    seed: int = 3,
    faults: Sequence[Fault] = (),
) -> dict[str, list[UtilityInterval]]:
    """The heat of buildings heated by a fuel that no meter reads, per calendar month: what their invoices bill.

    A building with an invoice account of a heating fuel (fuel oil, pellets, gas, a heating network)
    and no heating meter burns, in the model, what its heating and hot water need (the heat of a
    heating meter, over the boiler's efficiency). The months are local, clipped to ``[start, end)``;
    the amounts are kWh of final energy (divide by the account's ``conversion_kwh_per_unit`` for
    litres or tonnes). The same simulation as the readings CSV: the other points are unchanged.

    Args:
        inventory: the portfolio.
        start: start of the period (aware).
        end: end of the period (aware), excluded.
        seed: simulator seed.
        faults: faults to inject.

    Returns:
        Per invoice account id, its months in order.

    Raises:
        ValueError: on a naive or empty period.
    """
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        msg = f"need an aware period with start < end, got {start} .. {end}"
        raise ValueError(msg)
    physics, meters = fuel_meters(inventory)
    if not meters:
        return {}
    tz = inventory.organisation.tz
    bounds = [start.astimezone(UTC)]
    month = start.astimezone(tz).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    while True:
        month = (month + timedelta(days=32)).replace(day=1)
        if month >= end:
            break
        bounds.append(month.astimezone(UTC))
    bounds.append(end.astimezone(UTC))
    history = sample_history(physics, np.array([b.timestamp() for b in bounds]), seed=seed, faults=faults)
    out: dict[str, list[UtilityInterval]] = {}
    for account, meter in meters.items():
        heat = history.column(meter)
        out[account] = [
            UtilityInterval(lo, hi, float(heat[i + 1] - heat[i]) / _BOILER_EFFICIENCY)
            for i, (lo, hi) in enumerate(pairwise(bounds))
        ]
    return out


def last_reading(point: Point, tz: ZoneInfo, end: datetime) -> datetime:
    """The utility's first reading instant at or after ``end``: the end of the interval in progress at ``end``.

    A file of the utility for a period ends with the whole interval the period ends in: a year's GRDF
    export holds the gas day of 31 December, which ends on 1 January at 6:00.

    Raises:
        ValueError: when the point is not a utility point.
    """
    return reading_times(point, tz, end, end + timedelta(days=2))[0]


def utility_consumption(
    inventory: Inventory,
    start: datetime,
    end: datetime,
    *,
    points: Sequence[str] | None = None,
    seed: int = 3,
    faults: Sequence[Fault] = (),
    physics: Inventory | None = None,
) -> dict[str, list[UtilityInterval]]:
    """Each utility point's consumption per published interval lying wholly in ``[start, end)``.

    The same simulation as :func:`simulator.export.write_readings_csv` with the same start,
    seed and faults: the amounts are the differences of the indexes that file holds.

    Args:
        inventory: the portfolio.
        start: start of the period (aware).
        end: end of the period (aware), excluded.
        points: the utility points (default: all of the inventory).
        seed: simulator seed.
        faults: faults to inject.
        physics: the portfolio that drives the simulation, when it differs from ``inventory``.

    Returns:
        Per point id, its intervals in order (an interval ends at a reading instant).

    Raises:
        ValueError: on a naive or empty period, or a point that is not a utility point.
    """
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        msg = f"need an aware period with start < end, got {start} .. {end}"
        raise ValueError(msg)
    tz = inventory.organisation.tz
    chosen = [inventory.point(pid) for pid in points] if points is not None else [
        p for _, p in inventory.points() if p.is_utility
    ]
    times = {p.id: reading_times(p, tz, start, end) for p in chosen}
    instants = sorted({start.astimezone(UTC), *(t for ts in times.values() for t in ts)})
    history = sample_history(
        physics or inventory, np.array([t.timestamp() for t in instants]), seed=seed, faults=faults
    )
    row = {t: i for i, t in enumerate(instants)}
    out: dict[str, list[UtilityInterval]] = {}
    for point in chosen:
        column = history.column(point.id)
        stamps = times[point.id]
        out[point.id] = [
            UtilityInterval(lo, hi, float(column[row[hi]] - column[row[lo]]))
            for lo, hi in pairwise(stamps)
        ]
    return out
