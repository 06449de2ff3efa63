"""The stream record: one reading of one point.

>>> from datetime import UTC, datetime
>>> r = Reading("mairie-elec-energy", datetime(2026, 1, 5, 8, tzinfo=UTC), 1234.5, "kWh")
>>> r.quality
<Quality.GOOD: 'good'>
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

__all__ = ["Quality", "Reading"]


class Quality(str, Enum):
    """How far a reading can be trusted.

    ``GOOD`` is a fresh value decoded without trouble; ``STALE`` a value that has
    not changed for longer than its quantity allows; ``SUSPECT`` a value outside
    its plausible range, kept for inspection; ``ESTIMATED`` a value the pipeline
    computed (a gap spread, a virtual meter).
    """

    GOOD = "good"
    STALE = "stale"
    SUSPECT = "suspect"
    ESTIMATED = "estimated"


@dataclass(frozen=True, slots=True)
class Reading:
    """A value of a point at an instant.

    Attributes:
        point_id: id of the point in the inventory.
        ts: timezone-aware UTC time of the measurement (the device's time when
            it sends one, else the time it was received).
        value: the decoded value, in ``unit``.
        unit: the unit of the value, as in the inventory (``kWh``, ``degC``...).
        quality: how far the value can be trusted.
    """

    point_id: str
    ts: datetime
    value: float
    unit: str
    quality: Quality = Quality.GOOD

    def __post_init__(self) -> None:
        """Refuse naive timestamps: they break windows at DST changes."""
        if self.ts.tzinfo is None or self.ts.utcoffset() is None:
            msg = f"reading of {self.point_id} has a naive timestamp {self.ts.isoformat()}"
            raise ValueError(msg)
