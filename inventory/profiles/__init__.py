"""Modbus device profiles: register maps of meters found in municipal buildings.

A profile is a YAML file in this folder. It names the device, cites the maker's
register table it was taken from, and maps field names to register specs::

    name: eastron-sdm630
    maker: Eastron
    model: SDM630 Modbus V2
    source: Eastron SDM630 Modbus protocol, input registers (3X)
    registers:
      import_active_energy: {address: 0x0048, register_type: input,
                             data_type: float32, unit: kWh}

Addresses are the 0-based offsets sent on the wire (register 30073 in the
maker's 1-based table is offset 0x0048).
"""

from __future__ import annotations

from enum import Enum
from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class RegisterType(str, Enum):
    """Modbus register table."""

    HOLDING = "holding"
    INPUT = "input"


class DataType(str, Enum):
    """How register words encode a number."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    @property
    def words(self) -> int:
        """Number of 16-bit registers the type occupies."""
        return {"16": 1, "32": 2, "64": 4}[self.value[-2:]]

    @property
    def bits(self) -> int:
        """Width in bits."""
        return 16 * self.words


class WordOrder(str, Enum):
    """Order of the 16-bit words of a multi-register value."""

    BIG = "big"
    LITTLE = "little"


class RegisterSpec(BaseModel):
    """One value on a Modbus device: where it is and how to decode it.

    The decoded value is ``raw * scale + offset``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: int = Field(ge=0, le=65535)
    register_type: RegisterType = RegisterType.HOLDING
    data_type: DataType = DataType.UINT16
    word_order: WordOrder = WordOrder.BIG
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None

    @model_validator(mode="after")
    def _fits(self) -> RegisterSpec:
        if self.address + self.data_type.words - 1 > 65535:
            msg = f"{self.data_type.value} at {self.address} runs past register 65535"
            raise ValueError(msg)
        if self.scale == 0:
            msg = "scale must not be 0"
            raise ValueError(msg)
        return self

    @property
    def count(self) -> int:
        """Number of registers to read."""
        return self.data_type.words


class DeviceProfile(BaseModel):
    """A device's register map, with the document it comes from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    maker: str
    model: str
    source: str
    registers: dict[str, RegisterSpec]


PROFILE_DIR = Path(__file__).parent


@cache
def load_profiles() -> dict[str, DeviceProfile]:
    """Load every shipped profile, keyed by name."""
    profiles: dict[str, DeviceProfile] = {}
    for path in sorted(PROFILE_DIR.glob("*.yaml")):
        with path.open(encoding="utf-8") as fh:
            profile = DeviceProfile.model_validate(yaml.safe_load(fh))
        profiles[profile.name] = profile
    return profiles


__all__ = ["PROFILE_DIR", "DataType", "DeviceProfile", "RegisterSpec", "RegisterType", "WordOrder", "load_profiles"]
