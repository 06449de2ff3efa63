"""Which Kafka partition carries each building: balanced by load, stable, the same in every process.

The faust runner's source topic is keyed by building (:mod:`streams.faust_runner`).
Left to Kafka's key hash, the demo's buildings land unevenly (3/3/4/2 on 4
partitions: two workers split the work 65/35, issue 15). So the producer side
(:class:`~streams.faust_runner.KafkaForwarder` and
:func:`~streams.faust_runner.publish`) sends each building's batches to the
partition of a :class:`PartitionMap`, chosen here.

**Load.** A building's load is the readings per second of its points
(:func:`point_rate`): a Modbus point gives one reading per ``poll_interval``;
an MQTT point one per :data:`MQTT_INTERVAL` (the inventory does not say how often
a device publishes; one a minute is the common setting of the gateways we read);
a Linky (Enedis) point 48 a day (the 30-minute load curve), a Gazpar (GRDF) point
one a day.

**Balance.** Buildings are placed largest load first, each on the partition
with the least load so far (greedy longest-processing-time; ties go to the
lower partition, then the buildings' ids order them), so the partitions end up
with nearly equal loads. That is what the workers need: faust's assignor
(``faust.assignor.CopartitionedAssignor``) gives each of N workers
``partitions // N`` or one more partitions, round robin on a first assignment
and sticky after (a worker keeps an arbitrary subset of what it had), so which
partitions a worker holds is not known in advance, only how many. When every
partition carries about the same load, every worker does too, whatever set it
holds, provided the partition count is a multiple of the worker count.
**The documented partition count is 12** (``ECONOME_KAFKA_PARTITIONS``): it
splits evenly over 1, 2, 3, 4, 6 and 12 workers. :func:`worst_worker_spread`
gives the worst spread over every set a worker may hold.

**Stable, deterministic.** The map depends only on the inventory and the
partition count, so every process computes the same one. Adding a building
would reshuffle a greedy placement, and a building that changes partition
leaves its state behind (the faust table is partitioned like the topic), so the
forwarder keeps the map in a file (:func:`stored_partition_map`): buildings
already there keep their partition, new ones go to the least loaded partitions,
and removed ones are dropped.

>>> loads = {"a": 3.0, "b": 2.0, "c": 2.0, "d": 1.0}
>>> pmap = balance(loads, 2)
>>> sorted(pmap.assignment.items())
[('a', 0), ('b', 1), ('c', 1), ('d', 0)]
>>> pmap.partition_loads(loads)
[4.0, 4.0]
>>> grown = balance({**loads, "e": 1.0}, 2, keep=pmap)
>>> grown.assignment["e"], all(grown.assignment[b] == p for b, p in pmap.assignment.items())
(0, True)
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from inventory import Inventory
from inventory.model import Point
from streams.errors import ConfigError

__all__ = [
    "DEFAULT_PARTITIONS",
    "ENEDIS_INTERVAL",
    "GRDF_INTERVAL",
    "MQTT_INTERVAL",
    "PartitionMap",
    "assign_partitions",
    "balance",
    "building_loads",
    "point_rate",
    "spread",
    "stored_partition_map",
    "worker_loads",
    "worst_worker_spread",
]

logger = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 12
"""Partitions of the source topic: a multiple of 1, 2, 3, 4 and 6 workers."""
MQTT_INTERVAL = timedelta(minutes=1)
"""How often an MQTT point is assumed to publish (the inventory does not say)."""
ENEDIS_INTERVAL = timedelta(minutes=30)
"""A Linky's load curve step: 48 readings a day."""
GRDF_INTERVAL = timedelta(days=1)
"""A Gazpar's daily consumption: one reading a day."""

_MAP_FORMAT_VERSION = 1


def point_rate(point: Point) -> float:
    """Readings per second the point brings.

    >>> from inventory.model import Point
    >>> p = Point.model_validate({"id": "p", "quantity": "active_power", "unit": "W", "usage": "general",
    ...     "modbus": {"gateway": "gw", "unit": 1, "register": {"address": 0, "data_type": "uint16"},
    ...                "poll_interval": "30s"}})
    >>> point_rate(p)
    0.0333...
    """
    if point.modbus is not None:
        interval = point.modbus.poll_interval
    elif point.mqtt is not None:
        interval = MQTT_INTERVAL
    elif point.enedis is not None:
        interval = ENEDIS_INTERVAL
    else:
        interval = GRDF_INTERVAL
    return 1.0 / interval.total_seconds()


def building_loads(inventory: Inventory) -> dict[str, float]:
    """Readings per second of every building of the inventory (a building without points: 0)."""
    loads = {building.id: 0.0 for _, building in inventory.buildings()}
    for building, point in inventory.points():
        loads[building.id] += point_rate(point)
    return loads


@dataclass(frozen=True, slots=True)
class PartitionMap:
    """Building id → partition, over ``partitions`` partitions.

    Attributes:
        partitions: the partition count of the topic the map is for.
        assignment: each building's partition, in ``range(partitions)``.
    """

    partitions: int
    assignment: Mapping[str, int]

    def partition_of(self, building_id: str) -> int:
        """The building's partition.

        Raises:
            ConfigError: the building is not in the map.
        """
        try:
            return self.assignment[building_id]
        except KeyError:
            msg = f"building {building_id} has no partition in the map ({len(self.assignment)} buildings)"
            raise ConfigError(msg) from None

    def partition_loads(self, loads: Mapping[str, float]) -> list[float]:
        """The load of each partition, in partition order."""
        out = [0.0] * self.partitions
        for building_id, partition in self.assignment.items():
            out[partition] += loads.get(building_id, 0.0)
        return out

    def to_json(self) -> str:
        """The map as JSON, buildings sorted (the format :meth:`from_json` reads)."""
        body = {"format_version": _MAP_FORMAT_VERSION, "partitions": self.partitions,
                "buildings": dict(sorted(self.assignment.items()))}  # fmt: skip
        return json.dumps(body, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "<map>") -> PartitionMap:
        """Read a map written by :meth:`to_json`.

        Raises:
            ConfigError: the text is not such a map; the message names ``source`` and the building.
        """
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"{source}: not JSON ({exc})"
            raise ConfigError(msg) from exc
        if not isinstance(body, dict) or body.get("format_version") != _MAP_FORMAT_VERSION:
            msg = f"{source}: not a partition map of format {_MAP_FORMAT_VERSION}"
            raise ConfigError(msg)
        partitions, buildings = body.get("partitions"), body.get("buildings")
        if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1:
            msg = f"{source}: 'partitions' must be a positive integer, got {partitions!r}"
            raise ConfigError(msg)
        if not isinstance(buildings, dict):
            msg = f"{source}: 'buildings' must map building ids to partitions"
            raise ConfigError(msg)
        for building_id, partition in buildings.items():
            if not isinstance(partition, int) or isinstance(partition, bool) or not 0 <= partition < partitions:
                msg = f"{source}: building {building_id}: partition {partition!r} is not in 0..{partitions - 1}"
                raise ConfigError(msg)
        return cls(partitions, dict(buildings))


def balance(loads: Mapping[str, float], partitions: int, *, keep: PartitionMap | None = None) -> PartitionMap:
    """Place buildings on partitions, largest load first, each on the least loaded partition.

    Args:
        loads: readings per second by building id.
        partitions: the partition count.
        keep: a previous map: its buildings still in ``loads`` keep their partition
            (its partition count must be ``partitions``); only the others are placed.

    Returns:
        The map of every building of ``loads``.

    Raises:
        ConfigError: ``partitions`` is below 1, or ``keep`` is for another partition count.
    """
    if partitions < 1:
        msg = f"the partition count must be at least 1, got {partitions}"
        raise ConfigError(msg)
    if keep is not None and keep.partitions != partitions:
        msg = f"the stored partition map is for {keep.partitions} partitions, the topic has {partitions}"
        raise ConfigError(msg)
    kept = {b: p for b, p in (keep.assignment.items() if keep else ()) if b in loads}
    totals = [0.0] * partitions
    for building_id, partition in kept.items():
        totals[partition] += loads[building_id]
    # A heap of (load, partition): the least loaded partition first, the lower index on a tie.
    heap = [(total, partition) for partition, total in enumerate(totals)]
    heapq.heapify(heap)
    assignment = dict(kept)
    placed = sorted((b for b in loads if b not in kept), key=lambda b: (-loads[b], b))
    for building_id in placed:
        total, partition = heapq.heappop(heap)
        assignment[building_id] = partition
        heapq.heappush(heap, (total + loads[building_id], partition))
    _refine(assignment, loads, partitions, set(placed))
    return PartitionMap(partitions, assignment)


def _refine(assignment: dict[str, int], loads: Mapping[str, float], partitions: int, movable: set[str]) -> None:
    """Narrow the gap between the heaviest and the lightest partition by moving or swapping movable buildings.

    Greedy placement leaves gaps when buildings are few and alike (the demo's 14
    buildings on 4 partitions: 31/31/29/26 readings a minute); one move or swap
    at a time, the best one between the two extremes, closes them (30/30/30/27).
    Each step lowers the sum of squared partition loads, so it ends.
    """
    totals = [0.0] * partitions
    members: list[list[str]] = [[] for _ in range(partitions)]
    for building_id, partition in sorted(assignment.items()):
        totals[partition] += loads[building_id]
        if building_id in movable:
            members[partition].append(building_id)
    for _ in range(100 * partitions):
        hi = max(range(partitions), key=lambda p: (totals[p], -p))
        lo = min(range(partitions), key=lambda p: (totals[p], p))
        gap = totals[hi] - totals[lo]
        best: tuple[float, str, str | None] | None = None
        lo_loads = sorted({loads[c]: c for c in reversed(members[lo])}.items())
        for b in members[hi]:
            # Moving a load d from hi to lo leaves the two |gap - 2d| apart; it helps when 0 < d < gap.
            candidates: list[tuple[float, str | None]] = [(loads[b], None)]
            candidates += [(loads[b] - load_c, c) for load_c, c in lo_loads if 0 < loads[b] - load_c < gap]
            for moved, c in candidates:
                if 0 < moved < gap and (best is None or abs(gap - 2 * moved) < best[0] - 1e-12):
                    best = (abs(gap - 2 * moved), b, c)
        if best is None or best[0] >= gap - 1e-12:
            return
        _, b, c = best
        members[hi].remove(b)
        members[lo].append(b)
        assignment[b] = lo
        totals[hi] -= loads[b]
        totals[lo] += loads[b]
        if c is not None:
            members[lo].remove(c)
            members[hi].append(c)
            assignment[c] = hi
            totals[lo] -= loads[c]
            totals[hi] += loads[c]


def assign_partitions(
    inventory: Inventory, partitions: int = DEFAULT_PARTITIONS, *, keep: PartitionMap | None = None
) -> PartitionMap:
    """The balanced map of the inventory's buildings: :func:`balance` of :func:`building_loads`."""
    return balance(building_loads(inventory), partitions, keep=keep)


def stored_partition_map(inventory: Inventory, partitions: int, path: Path) -> PartitionMap:
    """The map kept in ``path``, extended to the inventory's new buildings (the file is created or updated).

    Buildings of the file keep their partition, so their state stays with them;
    new buildings are balanced onto the least loaded partitions; buildings no
    longer in the inventory are dropped. Only one process (the forwarder) should
    write the file.

    Raises:
        ConfigError: the file is not a partition map, or is for another partition count.
    """
    previous: PartitionMap | None = None
    if path.exists():
        previous = PartitionMap.from_json(path.read_text(encoding="utf-8"), str(path))
        if previous.partitions != partitions:
            msg = (f"{path}: the map is for {previous.partitions} partitions, the topic has {partitions}; "
                   "a building that changes partition loses its state: keep the count, or start a new topic and map")  # fmt: skip
            raise ConfigError(msg)
    pmap = assign_partitions(inventory, partitions, keep=previous)
    if previous is None or dict(previous.assignment) != dict(pmap.assignment):
        added = sorted(set(pmap.assignment) - set(previous.assignment if previous else ()))
        logger.info("partition map %s: %s buildings placed, %s in all", path, len(added), len(pmap.assignment))
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside then renamed: a crash leaves the old map or the new one, never half of one.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(pmap.to_json())
        Path(tmp).replace(path)
    return pmap


def worker_loads(pmap: PartitionMap, loads: Mapping[str, float], workers: Iterable[Iterable[int]]) -> list[float]:
    """The load of each worker, given the partitions each holds."""
    per_partition = pmap.partition_loads(loads)
    return [sum(per_partition[p] for p in held) for held in workers]


def spread(values: Sequence[float]) -> float:
    """How far the largest value is above the smallest, as a fraction of the smallest (0.1: 10 %).

    >>> spread([100.0, 110.0])
    0.1
    """
    low = min(values)
    if low <= 0:
        return 0.0 if max(values) <= 0 else float("inf")
    return round(max(values) / low - 1, 12)


def worst_worker_spread(pmap: PartitionMap, loads: Mapping[str, float], workers: int) -> float:
    """The worst :func:`spread` between two workers, over every way faust may hand out the partitions.

    Each worker holds ``partitions // workers`` partitions or one more (faust's
    capacity rule); the worst case puts the heaviest such set against the lightest.
    """
    per_partition = sorted(pmap.partition_loads(loads))
    small, extra = divmod(pmap.partitions, workers)
    if small == 0:
        return float("inf")  # a worker holds nothing
    # The heaviest worker: the heaviest (small + 1 if any worker has one more) partitions; the lightest: the lightest `small`.
    heaviest = sum(per_partition[-(small + (1 if extra else 0)) :])
    lightest = sum(itertools.islice(per_partition, small))
    return spread([lightest, heaviest])
