"""Faults injected into the simulated commune, with their ground truth.

A :class:`Fault` names what goes wrong (its :class:`FaultKind`), in which
building, from ``start`` (included) to ``end`` (excluded), and with which
parameters. The building model applies faults both when it serves live values
and when it generates a history, so a detector can be scored against
``ground_truth.json``.

Kinds and parameters:

- ``heating_left_on``: the comfort setpoint is kept while the building is closed
  (the plan puts it on weekends and school holidays).
- ``setpoint_raised``: every setpoint is raised by ``delta_c`` (default 3 °C).
- ``lighting_left_on``: the lights stay fully on while the building is closed.
- ``baseload_creep``: the base load grows linearly to ``increase_pct`` (default 60 %) more at ``end``.
- ``water_leak``: a continuous extra flow of ``flow_m3_per_h`` (default 0.15), night included.
- ``stuck_counter``: the counter ``point`` keeps its value while consumption goes on,
  then jumps back to the true index at ``end``.
- ``dead_sensor``: the sensor ``point`` stops publishing (``mode: silent``) or repeats
  its last value (``mode: frozen``).
- ``consumption_excess``: the building's consumption of ``usage`` (default heating) is
  ``increase_pct`` (default 30 %) higher (a valve stuck open, a fouled boiler).
- ``sensor_drift``: the sensor ``point`` drifts by ``drift_c_per_day`` (default 0.5) per day.
- ``sensor_flatline``: the sensor ``point`` loses its daily cycle and reads a near-constant value.

The last three are used by the independent scenario family B (:mod:`simulator.family_b`);
the demo commune's simulator ignores them.

>>> from datetime import UTC, datetime
>>> leak = Fault(kind="water_leak", building="mairie",
...              start=datetime(2026, 2, 3, tzinfo=UTC), end=datetime(2026, 2, 10, tzinfo=UTC))
>>> leak.number("flow_m3_per_h")
0.15
>>> leak.active(datetime(2026, 2, 5, tzinfo=UTC))
True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from inventory import COUNTER_QUANTITIES, Building, FrenchCalendar, Inventory, Point, Quantity, Usage
from inventory.calendar import OpeningHours

__all__ = [
    "Fault",
    "FaultKind",
    "default_fault_plan",
    "read_ground_truth",
    "validate_faults",
    "write_ground_truth",
]


class FaultKind(str, Enum):
    """What goes wrong."""

    HEATING_LEFT_ON = "heating_left_on"
    SETPOINT_RAISED = "setpoint_raised"
    LIGHTING_LEFT_ON = "lighting_left_on"
    BASELOAD_CREEP = "baseload_creep"
    WATER_LEAK = "water_leak"
    STUCK_COUNTER = "stuck_counter"
    DEAD_SENSOR = "dead_sensor"
    CONSUMPTION_EXCESS = "consumption_excess"
    SENSOR_DRIFT = "sensor_drift"
    SENSOR_FLATLINE = "sensor_flatline"


POINT_FAULTS = frozenset({FaultKind.STUCK_COUNTER, FaultKind.DEAD_SENSOR, FaultKind.SENSOR_DRIFT, FaultKind.SENSOR_FLATLINE})
"""Kinds that concern one point rather than the whole building."""

DEAD_SENSOR_MODES = ("silent", "frozen")

_DEFAULT_PARAMS: dict[FaultKind, dict[str, float | str]] = {
    FaultKind.HEATING_LEFT_ON: {},
    FaultKind.SETPOINT_RAISED: {"delta_c": 3.0},
    FaultKind.LIGHTING_LEFT_ON: {},
    FaultKind.BASELOAD_CREEP: {"increase_pct": 60.0},
    FaultKind.WATER_LEAK: {"flow_m3_per_h": 0.15},
    FaultKind.STUCK_COUNTER: {},
    FaultKind.DEAD_SENSOR: {"mode": "silent"},
    FaultKind.CONSUMPTION_EXCESS: {"increase_pct": 30.0, "usage": "heating"},
    FaultKind.SENSOR_DRIFT: {"drift_c_per_day": 0.5},
    FaultKind.SENSOR_FLATLINE: {},
}


class Fault(BaseModel):
    """One injected fault: the ground truth a detector is scored against."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: FaultKind
    building: str
    start: AwareDatetime
    end: AwareDatetime
    point: str | None = None
    params: dict[str, float | str] = Field(default_factory=dict)
    description: str = ""

    @model_validator(mode="before")
    @classmethod
    def _default_params(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" in data:
            try:
                kind = FaultKind(data["kind"])
            except ValueError:
                return data  # the field validator reports the unknown kind
            data = {**data, "params": {**_DEFAULT_PARAMS[kind], **(data.get("params") or {})}}
        return data

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _consistent(self) -> Fault:
        if self.end <= self.start:
            msg = f"{self.kind.value} fault in {self.building}: end {self.end} is not after start {self.start}"
            raise ValueError(msg)
        if (self.kind in POINT_FAULTS) != (self.point is not None):
            need = "needs" if self.kind in POINT_FAULTS else "takes no"
            msg = f"{self.kind.value} fault in {self.building} {need} 'point'"
            raise ValueError(msg)
        known = _DEFAULT_PARAMS[self.kind]
        for name, value in self.params.items():
            if name not in known:
                msg = f"{self.kind.value} fault in {self.building}: unknown parameter {name!r}, known {sorted(known)}"
                raise ValueError(msg)
            if isinstance(known[name], float) and not isinstance(value, float | int):
                msg = f"{self.kind.value} fault in {self.building}: parameter {name!r} must be a number"
                raise ValueError(msg)
        if self.kind is FaultKind.DEAD_SENSOR and self.params["mode"] not in DEAD_SENSOR_MODES:
            msg = f"dead_sensor fault on {self.point}: mode must be one of {DEAD_SENSOR_MODES}"
            raise ValueError(msg)
        return self

    def number(self, name: str) -> float:
        """A numeric parameter, with its default filled in."""
        value = self.params[name]
        if isinstance(value, str):
            msg = f"parameter {name!r} of {self.kind.value} is not a number"
            raise TypeError(msg)
        return float(value)

    @property
    def mode(self) -> str:
        """The ``mode`` of a dead sensor (``silent`` or ``frozen``)."""
        return str(self.params.get("mode", ""))

    def active(self, moment: datetime) -> bool:
        """Tell whether the fault is under way at a moment (start included, end excluded)."""
        return self.start <= moment < self.end


_FAULT_LIST = TypeAdapter(list[Fault])


def write_ground_truth(path: Path, faults: Sequence[Fault]) -> None:
    """Write faults as a JSON list with ISO-8601 UTC times (``ground_truth.json``).

    Args:
        path: file to write (overwritten).
        faults: the faults, written in start order.
    """
    ordered = sorted(faults, key=lambda f: (f.start, f.building, f.kind.value))
    path.write_bytes(_FAULT_LIST.dump_json(ordered, indent=2) + b"\n")


def read_ground_truth(path: Path) -> list[Fault]:
    """Read faults written by :func:`write_ground_truth`.

    Raises:
        pydantic.ValidationError: when the file does not hold a list of faults.
    """
    return _FAULT_LIST.validate_json(path.read_bytes())


def validate_faults(inventory: Inventory, faults: Iterable[Fault]) -> None:
    """Check that every fault names a known building and a fitting point.

    Raises:
        ValueError: naming the first fault that does not fit the inventory.
    """
    buildings = {building.id for _, building in inventory.buildings()}
    for fault in faults:
        if fault.building not in buildings:
            msg = f"{fault.kind.value} fault names unknown building {fault.building!r}"
            raise ValueError(msg)
        if fault.point is None:
            continue
        try:
            owner = inventory.building_of(fault.point)
        except KeyError:
            msg = f"{fault.kind.value} fault names unknown point {fault.point!r}"
            raise ValueError(msg) from None
        if owner.id != fault.building:
            msg = f"{fault.kind.value} fault: point {fault.point} belongs to {owner.id}, not {fault.building}"
            raise ValueError(msg)
        point = inventory.point(fault.point)
        if fault.kind is FaultKind.STUCK_COUNTER and point.quantity not in COUNTER_QUANTITIES:
            msg = f"stuck_counter fault: point {point.id} is a {point.quantity.value}, not a counter"
            raise ValueError(msg)
        if fault.kind in {FaultKind.SENSOR_DRIFT, FaultKind.SENSOR_FLATLINE} and point.cumulative:
            msg = f"{fault.kind.value} fault: point {point.id} is a counter, not a sensor"
            raise ValueError(msg)
        if fault.kind is FaultKind.DEAD_SENSOR and point.mqtt is None:
            msg = f"dead_sensor fault: point {point.id} is not an MQTT sensor"
            raise ValueError(msg)


# --- the default yearly scenario ---------------------------------------------------------------

_HEATING_MONTHS = frozenset({1, 2, 3, 11, 12})
_MIN_CLOSED_GAP = timedelta(hours=40)
_SEPARATION = timedelta(days=2)


class _Planner:
    """Draws non-overlapping fault windows per building."""

    def __init__(self, inventory: Inventory, year: int, seed: int) -> None:
        self.inventory = inventory
        self.rng = np.random.default_rng([seed, year, 0xFA])
        self.tz = inventory.organisation.tz
        self.calendar = FrenchCalendar(inventory.organisation.school_holiday_zone)
        self.year_start = datetime(year, 1, 1, tzinfo=self.tz).astimezone(UTC)
        self.year_end = datetime(year + 1, 1, 1, tzinfo=self.tz).astimezone(UTC)
        self.taken: dict[str, list[tuple[datetime, datetime]]] = {}
        self.faults: list[Fault] = []

    def free(self, building: str, start: datetime, end: datetime) -> bool:
        return all(
            end + _SEPARATION <= s or start >= e + _SEPARATION for s, e in self.taken.get(building, [])
        )

    def add(self, fault: Fault) -> None:
        self.taken.setdefault(fault.building, []).append((fault.start, fault.end))
        self.faults.append(fault)

    def pick(self, items: Sequence[Any]) -> Any:
        return items[int(self.rng.integers(len(items)))]

    def random_window(self, min_days: float, max_days: float, months: frozenset[int] | None) -> tuple[datetime, datetime]:
        length = timedelta(days=float(self.rng.uniform(min_days, max_days)))
        span = (self.year_end - length - self.year_start).total_seconds()
        while True:
            start = self.year_start + timedelta(seconds=float(self.rng.uniform(0, span)))
            start = start.replace(minute=0, second=0, microsecond=0)
            if months is None or start.astimezone(self.tz).month in months:
                return start, start + length

    def closed_gaps(self, building: Building) -> list[tuple[datetime, datetime]]:
        hours = OpeningHours(building, self.tz, self.calendar)
        starts, ends = hours.intervals(self.year_start.timestamp(), self.year_end.timestamp())
        gaps: list[tuple[datetime, datetime]] = []
        for gap_start, gap_end in zip(ends[:-1].tolist(), starts[1:].tolist(), strict=True):
            if gap_end - gap_start >= _MIN_CLOSED_GAP.total_seconds():
                gaps.append((datetime.fromtimestamp(gap_start, UTC), datetime.fromtimestamp(gap_end, UTC)))
        return gaps


def _has(building: Building, quantities: set[Quantity], usage: Usage | None = None) -> list[Point]:
    return [p for p in building.points if p.quantity in quantities and (usage is None or p.usage is usage)]


def default_fault_plan(inventory: Inventory, year: int, seed: int = 0) -> list[Fault]:
    """Build a plausible year of faults across the portfolio.

    Several faults of each kind are spread over the buildings that can show them
    (a heating fault needs a heating meter, a leak a water meter...), never two
    at once in a building, with at least two days between them. A building read by
    Linky meters only (no meter of ours) gets lights left on at night and on weekends
    for the two weeks from the last Monday of November; the other buildings read only
    through the utilities get none.

    Args:
        inventory: the portfolio.
        year: the calendar year (local time) the faults fall in.
        seed: seed of the draw; the same seed gives the same plan.

    Returns:
        The faults, in start order.
    """
    plan = _Planner(inventory, year, seed)
    # Buildings read only through the utilities (a Linky, a Gazpar) are left out of the draws, so that
    # the other buildings' faults stay those of the earlier plans; one read by Linky meters alone
    # gets a fault of its own below, the others none (the healthy reference).
    utility_only = [b for _, b in inventory.buildings() if b.points and all(p.is_utility for p in b.points)]
    buildings = [b for _, b in inventory.buildings() if b not in utility_only]
    heated = [b for b in buildings if _has(b, {Quantity.HEAT_ENERGY, Quantity.GAS_VOLUME})]
    metered = [b for b in buildings if _has(b, {Quantity.ACTIVE_ENERGY, Quantity.ACTIVE_POWER})]
    watered = [b for b in buildings if _has(b, {Quantity.WATER_VOLUME, Quantity.WATER_FLOW})]
    lit = [b for b in buildings if _has(b, {Quantity.ACTIVE_ENERGY}, Usage.LIGHTING)] or metered

    def place(candidates: list[Building], count: int, draw: Any) -> None:
        placed = 0
        for _ in range(60 * count):
            if placed == count or not candidates:
                return
            building = plan.pick(candidates)
            fault = draw(building)
            if fault is not None and plan.free(building.id, fault.start, fault.end):
                plan.add(fault)
                placed += 1

    def heating_left_on(building: Building) -> Fault | None:
        gaps = [g for g in plan.closed_gaps(building) if g[0].astimezone(plan.tz).month in _HEATING_MONTHS]
        if not gaps:
            return None
        gap_start, gap_end = plan.pick(gaps)
        return Fault(
            kind=FaultKind.HEATING_LEFT_ON, building=building.id,
            start=gap_start + timedelta(hours=1), end=gap_end - timedelta(hours=4),
            description="comfort heating kept on while the building is closed",
        )

    def setpoint_raised(building: Building) -> Fault:
        start, end = plan.random_window(10, 25, _HEATING_MONTHS)
        delta = round(float(plan.rng.uniform(2.0, 4.0)), 1)
        return Fault(
            kind=FaultKind.SETPOINT_RAISED, building=building.id, start=start, end=end,
            params={"delta_c": delta}, description=f"heating setpoint raised by {delta} °C",
        )

    def lighting_left_on(building: Building) -> Fault:
        start, end = plan.random_window(1, 4, None)
        evening = start.astimezone(plan.tz).replace(hour=19, minute=0)
        return Fault(
            kind=FaultKind.LIGHTING_LEFT_ON, building=building.id, start=evening.astimezone(UTC),
            end=evening.astimezone(UTC) + (end - start), description="lights left on outside opening hours",
        )

    def baseload_creep(building: Building) -> Fault:
        start, end = plan.random_window(28, 56, None)
        pct = round(float(plan.rng.uniform(40, 100)))
        return Fault(
            kind=FaultKind.BASELOAD_CREEP, building=building.id, start=start, end=end,
            params={"increase_pct": float(pct)}, description=f"base load creeping up to +{pct} %",
        )

    def water_leak(building: Building) -> Fault:
        start, end = plan.random_window(3, 20, None)
        flow = round(float(plan.rng.uniform(0.05, 0.4)), 3)
        return Fault(
            kind=FaultKind.WATER_LEAK, building=building.id, start=start, end=end,
            params={"flow_m3_per_h": flow}, description=f"leak of {flow} m3/h",
        )

    def stuck_counter(building: Building) -> Fault | None:
        counters = [p for p in building.points if p.quantity in COUNTER_QUANTITIES]
        if not counters:
            return None
        point: Point = plan.pick(counters)
        start, end = plan.random_window(1, 7, None)
        return Fault(
            kind=FaultKind.STUCK_COUNTER, building=building.id, point=point.id, start=start, end=end,
            description=f"counter {point.id} stuck",
        )

    def dead_sensor(building: Building) -> Fault | None:
        sensors = [p for p in building.points if p.mqtt is not None and p.usage is not Usage.WEATHER]
        if not sensors:
            return None
        point: Point = plan.pick(sensors)
        mode = plan.pick(DEAD_SENSOR_MODES)
        start, end = plan.random_window(1, 5, None)
        return Fault(
            kind=FaultKind.DEAD_SENSOR, building=building.id, point=point.id, start=start, end=end,
            params={"mode": mode}, description=f"sensor {point.id} {mode}",
        )

    place(heated, 3, heating_left_on)
    place(heated, 2, setpoint_raised)
    place(lit, 3, lighting_left_on)
    place(metered, 2, baseload_creep)
    place(watered, 3, water_leak)
    place(buildings, 2, stuck_counter)
    place(buildings, 3, dead_sensor)
    for building in utility_only:
        fault = _utility_lighting_left_on(plan, building)
        if fault is not None:
            plan.add(fault)
    return sorted(plan.faults, key=lambda f: (f.start, f.building))


_UTILITY_FAULT_DAYS = 14


def _utility_lighting_left_on(plan: _Planner, building: Building) -> Fault | None:
    """Lights left on at night and through the weekends for two weeks, in a building read by Linky meters only.

    The fault must be seen from the 30-minute load curve alone. It starts on the last Monday
    of November at 18:00 local: four school weeks after the All Saints holidays give the
    rules their reference nights and weekends, and it ends before the Christmas holidays.
    """
    if not all(p.enedis is not None for p in building.points):
        return None
    last = datetime(plan.year_start.astimezone(plan.tz).year, 11, 30, 18, tzinfo=plan.tz)
    start = last - timedelta(days=last.weekday())
    return Fault(
        kind=FaultKind.LIGHTING_LEFT_ON, building=building.id, start=start.astimezone(UTC),
        end=(start + timedelta(days=_UTILITY_FAULT_DAYS)).astimezone(UTC),
        description="lights left on at night and on weekends (seen on the Linky load curve)",
    )
