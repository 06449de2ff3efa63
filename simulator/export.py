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

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from inventory import Inventory, Quantity, Usage
from simulator.faults import Fault
from simulator.physics import generate_history
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
) -> int:
    """Simulate ``[start, end)`` and write every reading to one long CSV, as meters give them.

    The columns are ``timestamp`` (ISO 8601 with offset), ``point`` and ``value``:
    counters are cumulative indexes, sensors instantaneous values; a sensor that
    did not publish (a silent dead sensor) has no row (the format of :mod:`streams.history`).

    Args:
        inv: the portfolio.
        path: the file to write (overwritten).
        start: first timestamp (aware).
        end: end, excluded.
        step: time between readings.
        seed: simulator seed.
        faults: faults to inject.
        physics: the portfolio that drives the simulation, when it differs
            from ``inv`` (e.g. :func:`without_renovations`).
        energy_only: write only the counters and the outdoor temperature
            (what ``econome mv`` and ``econome report`` use).
        progress: called with ``(phase, done, total)`` while simulating, then while writing.

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
    history = generate_history(physics or inv, start, end, step, seed=seed, faults=faults, progress=progress)
    stamps = [t.isoformat() for t in history.datetimes()]
    kept = {
        p.id for _, p in inv.points()
        if not energy_only or p.cumulative or (p.quantity is Quantity.TEMPERATURE and p.usage is Usage.WEATHER)
    }
    ids = [pid if pid in kept else "" for pid in history.point_ids]
    count = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        handle.write(",".join(CSV_HEADER) + "\n")
        for done, (stamp, row) in enumerate(zip(stamps, history.values.tolist(), strict=True)):
            if progress is not None and done % 1000 == 0:
                progress("writing the CSV", done, len(stamps))
            lines = [f"{stamp},{pid},{round(v, 5)}\n" for pid, v in zip(ids, row, strict=True) if pid and v == v]
            handle.writelines(lines)
            count += len(lines)
    if progress is not None:
        progress("writing the CSV", len(stamps), len(stamps))
    return count
