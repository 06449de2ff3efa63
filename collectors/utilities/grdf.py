"""Gazpar files of the GRDF customer area: daily volume (m3) and energy (kWh) with the conversion coefficient.

The format, its source and our choice of the gas day (06:00 to 06:00 local
time) are documented in :mod:`streams.utility_files`. Sample use::

    parsed = parse(Path("consommations.csv"), inventory)   # per point: gas days in m3 or kWh

>>> HEADER[0]
'N° PCE'
"""

from __future__ import annotations

from streams.utility_files import GRDF_HEADER as HEADER
from streams.utility_files import parse_grdf as parse
from streams.utility_files import write_grdf_daily as write_daily

__all__ = ["HEADER", "parse", "write_daily"]
