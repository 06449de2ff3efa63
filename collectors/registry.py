"""The collector registry: one explicit mapping from ``kind`` to ``"module:Class"``.

Classes are imported only when asked for, and importing a collector module
registers nothing. Third parties add kinds through the ``econome.collectors``
entry-point group; a built-in kind cannot be overridden.

>>> load_collector("modbus").__name__
'ModbusCollector'
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

__all__ = ["BUILTIN_COLLECTORS", "available_kinds", "load_collector"]

BUILTIN_COLLECTORS: dict[str, str] = {
    "modbus": "collectors.modbus:ModbusCollector",
    "mqtt": "collectors.mqtt:MqttCollector",
}

ENTRY_POINT_GROUP = "econome.collectors"


def _table() -> dict[str, str]:
    table = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**table, **BUILTIN_COLLECTORS}


def available_kinds() -> list[str]:
    """Every kind that can be loaded, sorted."""
    return sorted(_table())


def load_collector(kind: str) -> type:
    """Import and return the class of a collector kind.

    Raises:
        KeyError: no such kind.
    """
    target = _table().get(kind)
    if target is None:
        msg = f"unknown collector kind {kind!r}: known {available_kinds()}"
        raise KeyError(msg)
    module_name, _, class_name = target.partition(":")
    cls: type = getattr(importlib.import_module(module_name), class_name)
    return cls
