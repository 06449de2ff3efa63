"""Normalise units: every energy to kWh, every volume to m3, power to W.

Conversion factors come from pint, once per point at start-up; the hot path
only multiplies. Gas volumes become kWh through the point's
``conversion_kwh_per_unit`` (the PCS coefficient of the gas bill).

>>> canonical_unit("MWh"), factor("MWh")
('kWh', 1000.0)
>>> factor("L")
0.001
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from inventory import Point, Quantity

if TYPE_CHECKING:
    import pint

__all__ = ["CANONICAL", "canonical_unit", "energy_kwh_factor", "factor"]

# Our unit spellings → pint's.
_PINT = {
    "Wh": "watt_hour", "kWh": "kilowatt_hour", "MWh": "megawatt_hour",
    "varh": "volt_ampere * hour", "kvarh": "kilovolt_ampere * hour",
    "W": "watt", "kW": "kilowatt", "VA": "volt_ampere", "kVA": "kilovolt_ampere",
    "var": "volt_ampere", "kvar": "kilovolt_ampere",
    "m3": "meter ** 3", "L": "liter", "m3/h": "meter ** 3 / hour", "L/h": "liter / hour", "L/min": "liter / minute",
    "V": "volt", "A": "ampere", "Hz": "hertz", "degC": "degree_Celsius", "lx": "lux",
    "ppm": "ppm", "%": "percent", "1": "dimensionless",
}  # fmt: skip

CANONICAL: dict[str, str] = {
    "Wh": "kWh", "kWh": "kWh", "MWh": "kWh", "varh": "kvarh", "kvarh": "kvarh",
    "W": "W", "kW": "W", "VA": "VA", "kVA": "VA", "var": "var", "kvar": "var",
    "m3": "m3", "L": "m3", "m3/h": "m3/h", "L/h": "m3/h", "L/min": "m3/h",
}  # fmt: skip
"""Canonical unit of each unit; units not listed are kept as they are."""


@cache
def _registry() -> pint.UnitRegistry:  # type: ignore[type-arg]  # pint's registry generic has no public parameter
    # Imported here: pint takes a third of a second to import, and only a point's first conversion needs it.
    import pint

    return pint.UnitRegistry()


def canonical_unit(unit: str) -> str:
    """The unit aggregates are expressed in."""
    return CANONICAL.get(unit, unit)


@cache
def factor(unit: str) -> float:
    """Multiply a value in ``unit`` by this to get it in :func:`canonical_unit`.

    Raises:
        KeyError: an unknown unit.
    """
    target = canonical_unit(unit)
    if target == unit:
        return 1.0
    ureg = _registry()
    value = ureg.Quantity(1.0, _PINT[unit]).to(_PINT[target]).magnitude
    return float(f"{value:.12g}")  # drop binary noise: 0.0010000000000000002 -> 0.001


def energy_kwh_factor(point: Point) -> float | None:
    """KWh per unit of a counter's value, or None when it is not an energy (water).

    Gas volumes use the point's ``conversion_kwh_per_unit`` (per m3), after
    bringing litres to m3.
    """
    if point.quantity in (Quantity.ACTIVE_ENERGY, Quantity.HEAT_ENERGY):
        return factor(point.unit)
    if point.quantity is Quantity.GAS_VOLUME:
        return factor(point.unit) * (point.conversion_kwh_per_unit or 0.0)
    return None
