"""Utility meters (Linky, Gazpar): their data fetched from the Enedis and GRDF APIs, or imported from files.

Modules: :mod:`collectors.utilities.dataconnect` (Enedis Data Connect),
:mod:`collectors.utilities.adict` (GRDF ADICT), :mod:`collectors.utilities.daily`
(the live service's daily fetch).
"""

from __future__ import annotations

__all__: list[str] = []
