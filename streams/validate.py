"""Validate readings: physical range, NaN, unit; flag or reject.

A value outside what the quantity can physically be (a negative counter index,
an occupancy of 3, a temperature of 400 °C) is rejected to the dead-letter
output with its reason. A value that is possible but implausible for a
building (35 °C in a classroom... is possible; 55 °C is suspect) is kept and
flagged ``Quality.SUSPECT``. Ranges are in the point's canonical unit.

>>> from datetime import UTC, datetime
>>> v = Validator()
>>> v.check(Reading("t", datetime(2026, 1, 1, tzinfo=UTC), 21.0, "degC"), Quantity.TEMPERATURE, "degC")[0].quality
<Quality.GOOD: 'good'>
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from inventory import Quantity
from streams.record import Quality, Reading
from streams.units import factor

__all__ = ["RANGES", "Range", "Validator"]


@dataclass(frozen=True, slots=True)
class Range:
    """Hard limits (reject outside) and plausible limits (flag outside), canonical unit."""

    low: float
    high: float
    plausible_low: float
    plausible_high: float


_INF = math.inf
RANGES: dict[Quantity, Range] = {
    Quantity.ACTIVE_ENERGY: Range(0, 1e12, 0, 1e10),
    Quantity.REACTIVE_ENERGY: Range(0, 1e12, 0, 1e10),
    Quantity.HEAT_ENERGY: Range(0, 1e12, 0, 1e10),
    Quantity.GAS_VOLUME: Range(0, 1e11, 0, 1e9),
    Quantity.WATER_VOLUME: Range(0, 1e11, 0, 1e9),
    Quantity.ACTIVE_POWER: Range(-1e9, 1e9, -1e6, 1e7),
    Quantity.HEAT_POWER: Range(-1e9, 1e9, 0, 2e7),
    Quantity.APPARENT_POWER: Range(0, 1e9, 0, 1e7),
    Quantity.REACTIVE_POWER: Range(-1e9, 1e9, -1e7, 1e7),
    Quantity.POWER_FACTOR: Range(-1, 1, -1, 1),
    Quantity.FREQUENCY: Range(0, 1000, 45, 65),
    Quantity.HARMONIC_DISTORTION: Range(0, 1000, 0, 100),
    Quantity.WATER_FLOW: Range(0, 1e5, 0, 500),
    Quantity.VOLTAGE: Range(0, 1e5, 0, 1000),
    Quantity.CURRENT: Range(-1e5, 1e5, -1e4, 1e4),
    Quantity.TEMPERATURE: Range(-80, 150, -35, 50),
    Quantity.SETPOINT: Range(-20, 100, 5, 35),
    Quantity.HUMIDITY: Range(0, 100, 5, 100),
    Quantity.OCCUPANCY: Range(0, 1, 0, 1),
    Quantity.ILLUMINANCE: Range(0, 2e5, 0, 1.5e5),
    Quantity.CO2: Range(0, 1e5, 300, 5000),
    Quantity.STATE: Range(-_INF, _INF, -_INF, _INF),
}


class Validator:
    """Checks readings against their point's quantity and unit."""

    def __init__(self, ranges: dict[Quantity, Range] | None = None) -> None:
        self.ranges = {**RANGES, **(ranges or {})}

    def check(self, reading: Reading, quantity: Quantity, unit: str) -> tuple[Reading, str | None]:
        """Return the reading (flagged if suspect) and ``None``, or the reason to reject it."""
        if reading.unit != unit:
            return reading, f"point {reading.point_id}: unit {reading.unit!r}, the inventory says {unit!r}"
        if not math.isfinite(reading.value):
            return reading, f"point {reading.point_id}: value {reading.value} is not a number"
        limits = self.ranges[quantity]
        value = reading.value * factor(unit)
        if not limits.low <= value <= limits.high:
            return reading, (
                f"point {reading.point_id}: {reading.value} {unit} is outside the physical range of {quantity.value}"
            )
        if not limits.plausible_low <= value <= limits.plausible_high and reading.quality is Quality.GOOD:
            return replace(reading, quality=Quality.SUSPECT), None
        return reading, None
