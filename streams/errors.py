"""The exception tree of Econome.

::

    TelemetryError
    ├── ConfigError (also ValueError)      settings that cannot be used
    ├── CollectorError                     a device could not be read
    │   ├── DeviceTimeout (also TimeoutError)
    │   └── DeviceError                    exception response, refused connection
    ├── DecodeError (also ValueError)      a payload or register block that does not decode
    ├── EventTimeError (also ValueError)   a reading time windows or counters cannot hold
    ├── SinkError                          InfluxDB refused or could not be reached
    └── ModelError
        ├── InsufficientData               too little data to fit, with the reasons
        └── NotFitted

The inventory loader raises :class:`inventory.InventoryError` (a ``ValueError``),
since ``inventory`` imports nothing of ours; the CLI reports both alike.
Third-party exceptions (pymodbus, paho, httpx, influxdb-client, smtplib) are
translated where we call the library, always chained with ``raise ... from``.
"""

from __future__ import annotations

__all__ = [
    "CollectorError",
    "ConfigError",
    "DecodeError",
    "DeviceError",
    "DeviceTimeout",
    "EventTimeError",
    "InsufficientData",
    "ModelError",
    "NotFitted",
    "SinkError",
    "TelemetryError",
]


class TelemetryError(Exception):
    """Root of every error Econome raises on purpose."""


class ConfigError(TelemetryError, ValueError):
    """Settings that cannot be used."""


class CollectorError(TelemetryError):
    """A device could not be read."""


class DeviceTimeout(CollectorError, TimeoutError):
    """A device did not answer in time."""


class DeviceError(CollectorError):
    """A device answered with an error, or refused the connection."""


class DecodeError(TelemetryError, ValueError):
    """A payload or a register block does not decode."""


class EventTimeError(TelemetryError, ValueError):
    """A reading time that windows or counters cannot hold (out of range, or a span too long to cut)."""


class SinkError(TelemetryError):
    """The time-series database refused a write or could not be reached."""


class ModelError(TelemetryError):
    """A model cannot be fitted or used."""


class InsufficientData(ModelError):
    """Too little data to fit a model; ``reasons`` says what is missing."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(reasons))


class NotFitted(ModelError):
    """A model was used before it was fitted."""
