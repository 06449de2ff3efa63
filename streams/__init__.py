"""Streams: the reading record, errors, clocks, dead letters, the InfluxDB sink and the runner."""

from __future__ import annotations

from streams.clock import Clock, ManualClock, ScaledClock, SystemClock
from streams.deadletter import DeadLetter, DeadLetterStore
from streams.errors import (
    CollectorError,
    ConfigError,
    DecodeError,
    DeviceError,
    DeviceTimeout,
    InsufficientData,
    ModelError,
    NotFitted,
    SinkError,
    TelemetryError,
)
from streams.record import Quality, Reading

__all__ = [
    "Clock",
    "CollectorError",
    "ConfigError",
    "DeadLetter",
    "DeadLetterStore",
    "DecodeError",
    "DeviceError",
    "DeviceTimeout",
    "InsufficientData",
    "ManualClock",
    "ModelError",
    "NotFitted",
    "Quality",
    "Reading",
    "ScaledClock",
    "SinkError",
    "SystemClock",
    "TelemetryError",
]
