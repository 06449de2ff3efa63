"""Linky files of the Enedis customer area: load curves (average W per 10, 30 or 60 minutes) and daily indexes (Wh).

The format, its source and its pitfalls (mixed steps, clock changes, duplicates)
are documented in :mod:`streams.utility_files`. Sample use::

    parsed = parse(Path("mes-mesures.csv"), inventory)   # per point: intervals in the point's unit
    for point_id, intervals in parsed.series.items():
        await deliver_consumption(inventory, influx, point_id, intervals, data_dir=Path("var"), source="mes-mesures.csv")

>>> HEADER[:2]
('Identifiant PRM', 'Date de début')
"""

from __future__ import annotations

from streams.utility_files import ENEDIS_HEADER as HEADER
from streams.utility_files import parse_enedis as parse
from streams.utility_files import write_enedis_load_curve as write_load_curve

__all__ = ["HEADER", "parse", "write_load_curve"]
