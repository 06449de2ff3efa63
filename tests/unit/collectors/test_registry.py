"""Conformance of every registered collector kind (STYLE 2)."""

from __future__ import annotations

import inspect

import pytest

from collectors import BUILTIN_COLLECTORS, available_kinds, load_collector
from inventory import MqttBinding
from inventory.model import ModbusBinding


def test_builtin_kinds_are_available() -> None:
    assert set(BUILTIN_COLLECTORS) <= set(available_kinds())
    with pytest.raises(KeyError, match="unknown collector kind 'bacnet'"):
        load_collector("bacnet")


@pytest.mark.parametrize("kind", sorted(BUILTIN_COLLECTORS))
def test_collector_conforms(kind: str) -> None:
    cls = load_collector(kind)
    assert cls.kind == kind
    params = cls.example_params()
    # The example parameters are a valid binding of that kind.
    binding = {"modbus": ModbusBinding, "mqtt": MqttBinding}[kind]
    binding.model_validate(params)
    polled = hasattr(cls, "poll")
    pushed = hasattr(cls, "start") and hasattr(cls, "stop")
    assert polled != pushed, "a collector is either polled or push, never both"
    for name in ("poll",) if polled else ("start", "stop"):
        assert inspect.iscoroutinefunction(getattr(cls, name)), f"{kind}.{name} must be async"
