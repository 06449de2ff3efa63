"""A synthetic portfolio of many buildings, for load tests and partition balancing.

:func:`synthetic_portfolio` builds a valid :class:`~inventory.Inventory` of
``buildings`` buildings, each read on its own Modbus gateway (addresses in
10.0.0.0/8, never contacted). A building's points are, in order: an electricity
counter (kWh) every fifth point, otherwise an active power (W) or a room
temperature (degC) alternately; so aggregates of every kind are produced.
:func:`synthetic_readings` gives their values at one poll, the counters rising.

>>> inv = synthetic_portfolio(3, points=[4, 6, 5], seed=1)
>>> [len(b.points) for _, b in inv.buildings()]
[4, 6, 5]
>>> [r.point_id for r in synthetic_readings(inv.sites[0].buildings[0], 0)][:2]
['b0000-p000', 'b0000-p001']
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from inventory import Inventory
from inventory.model import Building
from streams.record import Reading

__all__ = ["synthetic_poll", "synthetic_portfolio", "synthetic_readings"]

_START = datetime(2026, 1, 5, tzinfo=UTC)


def _point(building: int, index: int, poll_s: int) -> dict[str, object]:
    pid = f"b{building:04d}-p{index:03d}"
    modbus = {"gateway": f"gw-{building:04d}", "unit": 1, "poll_interval": f"{poll_s}s",
              "register": {"address": 2 * index, "data_type": "uint32"}}  # fmt: skip
    if index % 5 == 0:
        return {"id": pid, "quantity": "active_energy", "unit": "kWh", "usage": "general", "cumulative": True,
                "energy": "electricity", "modbus": modbus}  # fmt: skip
    if index % 2:
        return {"id": pid, "quantity": "active_power", "unit": "W", "usage": "general", "modbus": modbus}
    return {"id": pid, "quantity": "temperature", "unit": "degC", "usage": "comfort", "modbus": modbus}


def synthetic_portfolio(
    buildings: int,
    *,
    points: int | Sequence[int] = 50,
    poll_intervals: Sequence[timedelta] = (timedelta(seconds=60),),
    seed: int = 0,
) -> Inventory:
    """A valid inventory of ``buildings`` buildings on ``buildings`` gateways.

    Args:
        buildings: how many buildings (one site per 100).
        points: points per building, the same for all or one count per building.
        poll_intervals: each building polls all its points at one of these, drawn with ``seed``.
        seed: the draw of poll intervals and building types.

    Returns:
        The inventory, validated like a loaded file.
    """
    rng = random.Random(seed)  # noqa: S311 - a reproducible portfolio, not cryptography
    counts = [points] * buildings if isinstance(points, int) else list(points)
    usages = ["school", "gymnasium", "town_hall", "library", "offices", "workshop", "nursery"]
    sites: list[dict[str, object]] = []
    gateways = []
    for b, count in enumerate(counts):
        if b % 100 == 0:
            sites.append({"id": f"site-{b // 100:03d}", "name": f"Site {b // 100}", "buildings": []})
        poll_s = int(rng.choice(poll_intervals).total_seconds())
        gateways.append({"id": f"gw-{b:04d}", "host": f"10.{b >> 16 & 255}.{b >> 8 & 255}.{b & 255}", "timeout": "1s"})
        building = {"id": f"b{b:04d}", "name": f"Bâtiment {b}", "usage": rng.choice(usages),
                    "floor_area_m2": 500 + 10 * (b % 100), "heated_area_m2": 450 + 10 * (b % 100),
                    "points": [_point(b, i, poll_s) for i in range(count)]}  # fmt: skip
        sites[-1]["buildings"].append(building)  # type: ignore[attr-defined]  # a list built just above
    body = {"organisation": {"name": "Intercommunalité de synthèse", "population": 90000, "school_holiday_zone": "B"},
            "modbus_gateways": gateways, "sites": sites}  # fmt: skip
    return Inventory.model_validate(body)


def synthetic_readings(building: Building, poll: int, at: datetime | None = None) -> list[Reading]:
    """The readings of every point of ``building`` at its ``poll``-th poll (time ``at``, by default from a fixed Monday).

    Values are a pure function of the point and the poll: counters rise by 0.1 to
    2 kWh a poll, powers and temperatures wander around a per-point level.
    """
    first = building.points[0].modbus
    assert first is not None  # noqa: S101 - every synthetic point is on Modbus
    return synthetic_poll(int(building.id[1:]), len(building.points), poll, at or _START + poll * first.poll_interval)


def synthetic_poll(building: int, points: int, poll: int, at: datetime) -> list[Reading]:
    """:func:`synthetic_readings` without the inventory: building number ``building`` with ``points`` points."""
    out = []
    for index in range(points):
        point_id = f"b{building:04d}-p{index:03d}"
        level = zlib.crc32(point_id.encode()) % 1000
        if index % 5 == 0:
            out.append(Reading(point_id, at, round(1000.0 + poll * (0.1 + level / 526), 3), "kWh"))
        elif index % 2:
            out.append(Reading(point_id, at, 200.0 + level * 5 + 50 * ((poll * 7 + level) % 11), "W"))
        else:
            out.append(Reading(point_id, at, round(17.0 + level / 250 + 0.1 * ((poll + level) % 9), 3), "degC"))
    return out
