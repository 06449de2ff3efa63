"""Write simulated history in the one readings CSV format (:mod:`streams.history`).

``timestamp,point,value``: counters as cumulative indexes, sensors as their
instantaneous values, as meters give them. This is the file ``econome
simulate`` writes, and that ``econome detect``, ``econome mv`` and ``econome
report`` read (as they read what ``econome export`` takes out of InfluxDB).

>>> from pathlib import Path
>>> from datetime import UTC, datetime, timedelta
>>> from inventory import load_inventory
>>> import tempfile
>>> inv = load_inventory(Path("examples/commune.yaml"))
>>> out = Path(tempfile.mkdtemp()) / "readings.csv"
>>> rows = write_readings_csv(inv, out, datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 6, tzinfo=UTC), energy_only=True)
>>> out.read_text().splitlines()[0]
'timestamp,point,value'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import numpy as np

from inventory import Inventory, Quantity, Usage
from simulator.faults import Fault
from simulator.physics import sample_history
from simulator.utilities import UtilityInterval, last_reading, reading_times
from streams.history import CSV_HEADER

__all__ = ["without_renovations", "write_readings_csv"]


def without_renovations(inv: Inventory) -> Inventory:
    """The same portfolio with no works done: the null case of a renovation follow-up."""
    sites = []
    for site in inv.sites:
        buildings = [b.model_copy(update={"renovations": []}) for b in site.buildings]
        sites.append(site.model_copy(update={"buildings": buildings}))
    return inv.model_copy(update={"sites": sites})


def write_readings_csv(
    inv: Inventory,
    path: Path,
    start: datetime,
    end: datetime,
    *,
    step: timedelta = timedelta(minutes=15),
    seed: int = 3,
    faults: Sequence[Fault] = (),
    physics: Inventory | None = None,
    energy_only: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    on_utility: Callable[[dict[str, list[UtilityInterval]]], None] | None = None,
) -> int:
    """Simulate ``[start, end)`` and write every reading to one long CSV, as meters give them.

    Utility meters are written when their utility publishes them (:mod:`simulator.utilities`):
    a Linky's index every 30 minutes, a Gazpar's at the start of each gas day (6:00 local),
    whatever ``step``, up to the end of the interval in progress at ``end`` (the last gas
    day whole, as the utility's own file for the period gives it). The columns are
    ``timestamp`` (ISO 8601 with offset), ``point`` and ``value``: counters are cumulative
    indexes, sensors instantaneous values; a sensor that did not publish (a silent dead
    sensor) has no row (the format of :mod:`streams.history`).

    Args:
        inv: the portfolio.
        path: the file to write (overwritten).
        start: first timestamp (aware).
        end: end, excluded.
        step: time between readings (of the points that are not utility meters).
        seed: simulator seed.
        faults: faults to inject.
        physics: the portfolio that drives the simulation, when it differs
            from ``inv`` (e.g. :func:`without_renovations`).
        energy_only: write only the counters and the outdoor temperature
            (what ``econome mv`` and ``econome report`` use).
        progress: called with ``(phase, done, total)`` while simulating, then while writing.
        on_utility: called with each utility point's consumption per published interval lying
            wholly in ``[start, end)`` (as :func:`simulator.utilities.utility_consumption` gives it),
            the differences of the indexes written: for the utilities' files, without simulating again.

    Returns:
        The number of rows written.

    >>> import tempfile
    >>> from datetime import UTC
    >>> from inventory import load_inventory
    >>> inv = load_inventory(Path("examples/commune.yaml"))
    >>> out = Path(tempfile.mkdtemp()) / "readings.csv"
    >>> write_readings_csv(inv, out, datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 5, 1, tzinfo=UTC)) > 0
    True
    >>> out.read_text().splitlines()[1].split(",")[:2]
    ['2026-01-05T00:00:00+00:00', 'mairie-elec-energy']
    """
    if start.tzinfo is None or end.tzinfo is None:
        msg = "start and end must be timezone-aware"
        raise ValueError(msg)
    if step <= timedelta(0) or end <= start:
        msg = f"need start < end and a positive step, got {start} .. {end} by {step}"
        raise ValueError(msg)
    step_s = step.total_seconds()
    grid = start.timestamp() + step_s * np.arange(math.ceil((end.timestamp() - start.timestamp()) / step_s))
    # Utility meters are read when the utility publishes (simulator.utilities), not on the grid, up to
    # the end of the interval in progress at `end` (a year's file holds the gas day of 31 December).
    tz = inv.organisation.tz
    utility = {
        p.id: np.array([t.timestamp() for t in reading_times(p, tz, start, last_reading(p, tz, end))])
        for _, p in inv.points() if p.is_utility
    }
    instants = np.unique(np.concatenate([grid, *utility.values()]))
    history = sample_history(physics or inv, instants, seed=seed, faults=faults, progress=progress)
    stamps = [t.isoformat() for t in history.datetimes()]
    if on_utility is not None:
        row = {t: i for i, t in enumerate(instants.tolist())}
        curves: dict[str, list[UtilityInterval]] = {}
        for pid, times in utility.items():
            column = history.column(pid)
            inside = [t for t in times.tolist() if t <= end.timestamp()]
            curves[pid] = [
                UtilityInterval(datetime.fromtimestamp(lo, UTC), datetime.fromtimestamp(hi, UTC),
                                float(column[row[hi]] - column[row[lo]]))
                for lo, hi in pairwise(inside)
            ]
        on_utility(curves)
    kept = {
        p.id for _, p in inv.points()
        if not energy_only or p.cumulative or (p.quantity is Quantity.TEMPERATURE and p.usage is Usage.WEATHER)
    }
    write = np.zeros(history.values.shape, dtype=np.bool_)
    on_grid = np.isin(instants, grid)
    for c, pid in enumerate(history.point_ids):
        if pid in utility:
            write[:, c] = np.isin(instants, utility[pid])
        elif pid in kept:
            write[:, c] = on_grid
    write &= np.isfinite(history.values)
    ids = history.point_ids
    count = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        handle.write(",".join(CSV_HEADER) + "\n")
        for done, (stamp, row, mask) in enumerate(zip(stamps, history.values.tolist(), write.tolist(), strict=True)):
            if progress is not None and done % 1000 == 0:
                progress("writing the CSV", done, len(stamps))
            lines = [f"{stamp},{ids[c]},{round(row[c], 5)}\n" for c, w in enumerate(mask) if w]
            handle.writelines(lines)
            count += len(lines)
    if progress is not None:
        progress("writing the CSV", len(stamps), len(stamps))
    return count
