"""Utility meters (Linky, Gazpar): their data imported from files, or fetched from the Enedis and GRDF APIs.

The file formats are read and written in :mod:`streams.utility_files` (so that the
simulator, which may import only ``inventory`` and ``streams``, writes the
demo's files with the same code); :mod:`collectors.utilities.enedis` and
:mod:`collectors.utilities.grdf` give each utility's part under its name, and
:func:`streams.imports.deliver_consumption` writes what they read.
``econome import enedis|grdf`` runs both.

The APIs: :mod:`collectors.utilities.dataconnect` (Enedis Data Connect),
:mod:`collectors.utilities.adict` (GRDF ADICT), :mod:`collectors.utilities.daily`
(the live service's daily fetch, delivered with the same function).

>>> from collectors.utilities import enedis, grdf
>>> enedis.parse is parse_enedis, grdf.parse is parse_grdf
(True, True)
"""

from __future__ import annotations

from streams.utility_files import parse_enedis, parse_grdf

__all__ = ["parse_enedis", "parse_grdf"]
