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

Meters answer a value they do not have (a phase not wired, a sensor absent,
a measurement not ready) with a "no value" code rather than an exception. A
profile declares the codes its maker's table documents, per data type, and a
register (or a custom ``register:`` binding) may declare its own::

    no_value: {int16: [0x8000], uint32: [0xFFFFFFFF]}    # profile level
    flow_temperature: {address: 6, data_type: int16, no_value: [0x7FFF]}

A code is the raw register content read as an unsigned number of the type's
width, after word order: ``0x8000`` for an int16 of -32768, ``0x7FC00000`` for
a float32 quiet NaN. A register's own ``no_value`` replaces the profile's
codes for its type (``no_value: []`` declares none). A reading equal to a code
is never a value: the collector sends it to the dead-letter store.
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

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    address: int = Field(ge=0, le=65535)
    register_type: RegisterType = RegisterType.HOLDING
    data_type: DataType = DataType.UINT16
    word_order: WordOrder = WordOrder.BIG
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    no_value: tuple[int, ...] | None = None
    """Raw codes meaning "no value" (unsigned, after word order); None defers to the profile."""

    @model_validator(mode="after")
    def _fits(self) -> RegisterSpec:
        if self.address + self.data_type.words - 1 > 65535:
            msg = f"{self.data_type.value} at {self.address} runs past register 65535"
            raise ValueError(msg)
        if self.scale == 0:
            msg = "scale must not be 0"
            raise ValueError(msg)
        _check_codes(self.data_type, self.no_value or ())
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
    no_value: dict[DataType, tuple[int, ...]] = Field(default_factory=dict)
    """The maker's "no value" codes per data type, for every register that declares none."""

    @model_validator(mode="after")
    def _codes_fit(self) -> DeviceProfile:
        for data_type, codes in self.no_value.items():
            _check_codes(data_type, codes)
        return self

    def resolve(self, field: str) -> RegisterSpec:
        """A register of the profile with the profile's "no value" codes filled in.

        Raises:
            KeyError: no such field.
        """
        spec = self.registers[field]
        if spec.no_value is None and spec.data_type in self.no_value:
            spec = spec.model_copy(update={"no_value": self.no_value[spec.data_type]})
        return spec


def _check_codes(data_type: DataType, codes: tuple[int, ...]) -> None:
    top = (1 << data_type.bits) - 1
    for code in codes:
        if not 0 <= code <= top:
            msg = f"no_value code {code:#x} does not fit a {data_type.value} (0..{top:#x})"
            raise ValueError(msg)


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
