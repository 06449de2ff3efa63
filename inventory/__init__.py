"""The portfolio model: sites, buildings, zones, points, schedules, renovations, tariffs.

This package imports nothing else of Econome. Everything downstream reads the
portfolio through :func:`load_inventory` and the models exported here.
"""

from __future__ import annotations

from inventory.calendar import FrenchCalendar, building_is_open, is_open
from inventory.defaults import EnergyTariff
from inventory.loader import InventoryError, Problem, load_inventory, parse_inventory
from inventory.model import (
    COUNTER_QUANTITIES,
    UNITS,
    Building,
    BuildingUsage,
    Closure,
    CrossReferenceError,
    Duration,
    Energy,
    Inventory,
    MeterReplacement,
    ModbusBinding,
    ModbusGateway,
    ModbusWorkarounds,
    MqttBinding,
    MqttBroker,
    MuteWindow,
    Organisation,
    PayloadFormat,
    Point,
    Quantity,
    Renovation,
    Schedule,
    Site,
    TimeRange,
    Usage,
    VirtualMeter,
    Weekday,
    Zone,
    parse_duration,
)
from inventory.profiles import DataType, DeviceProfile, RegisterSpec, RegisterType, WordOrder, load_profiles

__all__ = [
    "COUNTER_QUANTITIES",
    "UNITS",
    "Building",
    "BuildingUsage",
    "Closure",
    "CrossReferenceError",
    "DataType",
    "DeviceProfile",
    "Duration",
    "Energy",
    "EnergyTariff",
    "FrenchCalendar",
    "Inventory",
    "InventoryError",
    "MeterReplacement",
    "ModbusBinding",
    "ModbusGateway",
    "ModbusWorkarounds",
    "MqttBinding",
    "MqttBroker",
    "MuteWindow",
    "Organisation",
    "PayloadFormat",
    "Point",
    "Problem",
    "Quantity",
    "RegisterSpec",
    "RegisterType",
    "Renovation",
    "Schedule",
    "Site",
    "TimeRange",
    "Usage",
    "VirtualMeter",
    "Weekday",
    "WordOrder",
    "Zone",
    "building_is_open",
    "is_open",
    "load_inventory",
    "load_profiles",
    "parse_duration",
    "parse_inventory",
]
