from __future__ import annotations

import pytest
from pydantic import ValidationError

from inventory import UNITS, DataType, DeviceProfile, RegisterSpec, WordOrder, load_profiles
from inventory.profiles import PROFILE_DIR

PROFILES = load_profiles()
KNOWN_UNITS = set().union(*UNITS.values())


def test_issue_3_profiles_are_shipped() -> None:
    assert {
        "eastron-sdm630",
        "schneider-iem3255",
        "socomec-diris-a40",
        "carlo-gavazzi-em24",
        "mbus-heat-gateway",
        "pulse-counter-4ch",
    } <= set(PROFILES)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_is_consistent(name: str) -> None:
    profile = PROFILES[name]
    assert len(profile.source) > 40, "a profile cites the register table it comes from"
    taken: dict[tuple[str, int], str] = {}
    for field, spec in profile.registers.items():
        assert spec.unit is None or spec.unit in KNOWN_UNITS, f"{field}: unit {spec.unit}"
        for address in range(spec.address, spec.address + spec.count):
            key = (spec.register_type.value, address)
            assert key not in taken, f"{field} overlaps {taken.get(key)}"
            taken[key] = field


def test_word_orders_of_the_makers() -> None:
    # Carlo Gavazzi sends the least significant word first; Eastron floats are high word first.
    assert {s.word_order for s in PROFILES["carlo-gavazzi-em24"].registers.values()} == {WordOrder.LITTLE}
    assert {s.data_type for s in PROFILES["eastron-sdm630"].registers.values()} == {DataType.FLOAT32}
    assert PROFILES["schneider-iem3255"].registers["import_active_energy"].data_type is DataType.INT64


def test_issue_10_profiles_declare_no_value_codes() -> None:
    schneider = PROFILES["schneider-iem3255"]
    assert schneider.resolve("import_active_energy").no_value == (0x8000000000000000,)
    assert PROFILES["socomec-diris-a40"].resolve("voltage_l1").no_value == (0xFFFFFFFF,)
    assert PROFILES["mbus-heat-gateway"].resolve("flow_temperature").no_value == (0x8000,)
    # Eastron floats have no code: NaN/Inf are refused by the decoder anyway.
    assert PROFILES["eastron-sdm630"].resolve("voltage_l1").no_value is None
    for profile in PROFILES.values():
        if profile.no_value:
            assert "no value" in (PROFILE_DIR / f"{profile.name}.yaml").read_text(encoding="utf-8").lower()


def test_register_no_value_overrides_the_profile_and_must_fit() -> None:
    profile = DeviceProfile.model_validate(
        {
            "name": "t",
            "maker": "m",
            "model": "x",
            "source": "s",
            "no_value": {"int16": [0x8000]},
            "registers": {"a": {"address": 0, "data_type": "int16"}, "b": {"address": 1, "data_type": "int16", "no_value": []}},
        }
    )
    assert profile.resolve("a").no_value == (0x8000,)
    assert profile.resolve("b").no_value == ()
    with pytest.raises(ValidationError, match="no_value code 0x10000 does not fit a int16"):
        RegisterSpec(address=0, data_type=DataType.INT16, no_value=(0x10000,))
