"""Write simulated history as CSV files: one ``<point-id>.csv`` (``timestamp,value``) per point.

Counters become the consumption of each interval (starting at the timestamp),
instantaneous points their value; the outdoor temperature of the weather station
is written like any point. These are the files ``econome mv`` and
``econome report`` read offline.

>>> from pathlib import Path
>>> from datetime import UTC, datetime, timedelta
>>> from inventory import load_inventory
>>> import tempfile
>>> inv = load_inventory(Path("examples/commune.yaml"))
>>> out = Path(tempfile.mkdtemp())
>>> paths = write_history_csvs(inv, out, datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 6, tzinfo=UTC))
>>> (out / "mairie-gas-volume.csv").read_text().splitlines()[0]
'timestamp,value'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from inventory import Inventory, Quantity, Usage
from simulator.faults import Fault
from simulator.physics import generate_history

__all__ = ["without_renovations", "write_history_csvs", "write_readings_csv"]


def without_renovations(inv: Inventory) -> Inventory:
    """The same portfolio with no works done: the null case of a renovation follow-up."""
    sites = []
    for site in inv.sites:
        buildings = [b.model_copy(update={"renovations": []}) for b in site.buildings]
        sites.append(site.model_copy(update={"buildings": buildings}))
    return inv.model_copy(update={"sites": sites})


def write_history_csvs(
    inv: Inventory,
    out: Path,
    start: datetime,
    end: datetime,
    *,
    step: timedelta = timedelta(hours=1),
    seed: int = 3,
    faults: Sequence[Fault] = (),
    physics: Inventory | None = None,
    energy_only: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[Path]:
    """Simulate ``[start, end)`` and write one CSV per point.

    Args:
        inv: the portfolio whose points are written.
        out: the folder to write to (created if missing).
        start: first timestamp (aware).
        end: end, excluded.
        step: interval of the rows.
        seed: simulator seed.
        faults: faults to inject.
        physics: the portfolio that drives the simulation, when it differs
            from ``inv`` (e.g. :func:`without_renovations`).
        energy_only: write only counters and the outdoor temperature.
        progress: called with ``(phase, done, total)`` while simulating, then per point written.

    Returns:
        The files written.
    """
    history = generate_history(physics or inv, start, end, step, seed=seed, faults=faults, progress=progress)
    stamps = [t.isoformat() for t in history.datetimes()]
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    points = [point for _, point in inv.points()]
    for done, point in enumerate(points):
        if progress is not None:
            progress("writing CSV files", done, len(points))
        column = history.column(point.id)
        if point.cumulative:
            rows = zip(stamps[:-1], np.diff(column).tolist(), strict=True)
        elif not energy_only or (point.quantity is Quantity.TEMPERATURE and point.usage is Usage.WEATHER):
            rows = zip(stamps, column.tolist(), strict=True)
        else:
            continue
        path = out / f"{point.id}.csv"
        with path.open("w", encoding="utf-8") as handle:
            handle.write("timestamp,value\n")
            handle.writelines(f"{ts},{'' if np.isnan(v) else round(v, 4)}\n" for ts, v in rows)
        written.append(path)
    if progress is not None:
        progress("writing CSV files", len(points), len(points))
    return written


def write_readings_csv(
    inv: Inventory,
    path: Path,
    start: datetime,
    end: datetime,
    *,
    step: timedelta = timedelta(minutes=15),
    seed: int = 3,
    faults: Sequence[Fault] = (),
) -> int:
    """Simulate ``[start, end)`` and write every reading to one long CSV, as meters give them.

    The columns are ``timestamp`` (ISO 8601 with offset), ``point`` and ``value``:
    counters are cumulative indexes, sensors instantaneous values; a sensor that
    did not publish (a silent dead sensor) has no row. This is the file
    ``econome detect`` reads.

    Args:
        inv: the portfolio.
        path: the file to write (overwritten).
        start: first timestamp (aware).
        end: end, excluded.
        step: time between readings.
        seed: simulator seed.
        faults: faults to inject.

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
    history = generate_history(inv, start, end, step, seed=seed, faults=faults)
    stamps = [t.isoformat() for t in history.datetimes()]
    ids = history.point_ids
    count = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        handle.write("timestamp,point,value\n")
        for stamp, row in zip(stamps, history.values.tolist(), strict=True):
            lines = [f"{stamp},{pid},{round(v, 5)}\n" for pid, v in zip(ids, row, strict=True) if v == v]
            handle.writelines(lines)
            count += len(lines)
    return count
