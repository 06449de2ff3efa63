"""Collectors: poll Modbus TCP meters and subscribe to MQTT sensors.

Classes are not imported here, so that importing the package costs nothing and
registers nothing; see :mod:`collectors.registry`.
"""

from __future__ import annotations

from collectors.registry import BUILTIN_COLLECTORS, available_kinds, load_collector

__all__ = ["BUILTIN_COLLECTORS", "available_kinds", "load_collector"]
