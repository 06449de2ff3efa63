from __future__ import annotations

import pytest

from inventory import UNITS, DataType, WordOrder, load_profiles

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
