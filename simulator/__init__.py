"""Emulated meters and sensors of the demo commune, with ground-truth faults.

The :class:`PortfolioModel` computes every point of an inventory from a
physical model of each building (weather, schedule, holidays, heating,
lighting, water, CO2); :func:`generate_history` produces the same values in
bulk for a year of training data. :class:`Simulator` serves them live: a real
pymodbus TCP server per Modbus gateway and an MQTT publisher, on a real or
accelerated clock. Faults (:class:`Fault`, :func:`default_fault_plan`) are
applied in both and written to ``ground_truth.json``.

Reading order: ``weather.py``, ``physics.py``, ``faults.py``, ``modbus_server.py``,
``mqtt_publisher.py``, ``runner.py``. ``family_b.py`` is a second, independent scenario
family (its own weather, thermal model and real-data quirks) that detection is scored
on and never tuned to; see ``docs/simulator.md``.

>>> from datetime import UTC, datetime, timedelta
>>> from pathlib import Path
>>> from inventory import load_inventory
>>> inventory = load_inventory(Path("examples/commune.yaml"))
>>> faults = default_fault_plan(inventory, 2026, seed=3)
>>> start = datetime(2026, 1, 5, tzinfo=UTC)
>>> history = generate_history(inventory, start, start + timedelta(days=2), timedelta(hours=1), faults=faults)
>>> len(history.times)
48
"""

from __future__ import annotations

from simulator.faults import Fault, FaultKind, default_fault_plan, read_ground_truth, validate_faults, write_ground_truth
from simulator.modbus_server import ModbusSimulator, UnitBehaviour, encode_value
from simulator.mqtt_publisher import MqttPublisher
from simulator.physics import GRID, USAGE_PROFILES, History, PortfolioModel, UsageProfile, generate_history
from simulator.runner import Simulator
from simulator.weather import Weather

__all__ = [
    "GRID",
    "USAGE_PROFILES",
    "Fault",
    "FaultKind",
    "History",
    "ModbusSimulator",
    "MqttPublisher",
    "PortfolioModel",
    "Simulator",
    "UnitBehaviour",
    "UsageProfile",
    "Weather",
    "default_fault_plan",
    "encode_value",
    "generate_history",
    "read_ground_truth",
    "validate_faults",
    "write_ground_truth",
]
