from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from inventory import InventoryError, load_inventory, parse_inventory

ROOT = Path(__file__).resolve().parents[3]

EXAMPLE = ROOT / "examples" / "commune.yaml"

MINIMAL = """\
organisation: {name: Commune test, population: 1200, school_holiday_zone: A}
modbus_gateways:
  - {id: gw1, host: 127.0.0.1, port: 1502}
mqtt_brokers:
  - {host: 127.0.0.1}
sites:
  - id: s1
    name: Site
    buildings:
      - id: b1
        name: École
        usage: school
        floor_area_m2: 500
        heated_area_m2: 450
        points:
          - id: b1-elec
            quantity: active_energy
            unit: kWh
            usage: general
            cumulative: true
            modbus: {gateway: gw1, unit: 1, profile: eastron-sdm630, field: import_active_energy}
          - id: b1-temp
            quantity: temperature
            unit: degC
            usage: comfort
            mqtt: {topic: t/b1/temp}
"""


def _error(text: str) -> InventoryError:
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, source="commune.yaml")
    return info.value


def test_example_commune_loads() -> None:
    inv = load_inventory(EXAMPLE)
    buildings = [b for _, b in inv.buildings()]
    assert len(buildings) >= 12
    assert {b.usage.value for b in buildings} >= {"school", "gymnasium", "swimming_pool", "town_hall", "library"}
    assert any(b.renovations for b in buildings)
    protocols = {p.protocol for _, p in inv.points()}
    assert protocols == {"modbus", "mqtt", "enedis", "grdf"}


def test_minimal_inventory_defaults() -> None:
    inv = parse_inventory(MINIMAL)
    assert inv.organisation.timezone == "Europe/Paris"
    assert inv.point("b1-elec").modbus is not None
    assert inv.point("b1-elec").modbus.poll_interval == timedelta(seconds=60)  # type: ignore[union-attr]
    assert inv.register_of(inv.point("b1-elec")).address == 0x0048
    assert inv.building_of("b1-temp").id == "b1"
    # French defaults fill the energies the file does not give.
    assert inv.tariff(inv.point("b1-elec").energy or __import__("inventory").Energy.ELECTRICITY).price_eur_per_unit > 0


def test_wrong_field_names_line_and_path() -> None:
    text = MINIMAL.replace("unit: 1, profile", "unit: -1, profile")
    err = _error(text)
    assert len(err.problems) == 1
    line = err.lines()[0]
    assert line.startswith("commune.yaml:21 sites[0].buildings[0].points[0].modbus.unit: ")
    assert "greater than or equal to 0" in line


def test_unknown_key_is_an_error() -> None:
    err = _error(MINIMAL.replace("usage: school", "usage: school\n        colour: red"))
    assert err.lines() == ["commune.yaml:13 sites[0].buildings[0].colour: unknown key"]


def test_duplicate_point_id_names_the_second() -> None:
    err = _error(MINIMAL.replace("id: b1-temp", "id: b1-elec"))
    assert err.lines() == ["commune.yaml:22 sites[0].buildings[0].points[1].id: duplicate point id 'b1-elec'"]


def test_duplicate_yaml_key() -> None:
    err = _error(MINIMAL.replace("unit: degC", "unit: degC\n            unit: degC"))
    assert "duplicate key (first at line 24)" in err.lines()[0]
    assert err.problems[0].line == 25


def test_unknown_gateway_and_profile_field() -> None:
    text = MINIMAL.replace("gateway: gw1", "gateway: gw2").replace("field: import_active_energy", "field: nope")
    lines = _error(text).lines()
    assert any("modbus.gateway: unknown Modbus gateway 'gw2'" in line for line in lines)
    assert any("modbus.field: profile eastron-sdm630 has no field 'nope'" in line for line in lines)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("unit: kWh", "unit: m3", "unit 'm3' does not fit active_energy"),
        ("usage: comfort", "usage: comfort\n            cumulative: true", "temperature cannot be a cumulative counter"),
        ("heated_area_m2: 450", "heated_area_m2: 4500", "heated_area_m2 4500.0 exceeds floor_area_m2 500.0"),
        ("school_holiday_zone: A", "school_holiday_zone: D", "Input should be 'A', 'B' or 'C'"),
        ("population: 1200", "population: 1200, timezone: Mars/Olympus", "unknown timezone 'Mars/Olympus'"),
        ("mqtt: {topic: t/b1/temp}", "mqtt: {topic: t/#/temp}", "may only be the last level"),
        ("mqtt: {topic: t/b1/temp}", "mqtt: {topic: t/b+/temp}", "must fill a whole level"),
        ("mqtt: {topic: t/b1/temp}", "mqtt: {topic: t/b1/temp, format: ttn_v3}", "needs 'field'"),
        ("mqtt: {topic: t/b1/temp}", 'mqtt: {topic: "t/b1\\0/temp"}', "holds a NUL character"),
        ("mqtt: {topic: t/b1/temp}", "mqtt: {topic: t/" + "é" * 32_767 + "}", "is 65536 bytes long, more than MQTT's 65535"),
        ("port: 1502}", "port: 1502, timeout: 3}", "duration 3 has no unit"),
    ],
)
def test_domain_rules(old: str, new: str, expected: str) -> None:
    assert old in MINIMAL
    err = _error(MINIMAL.replace(old, new))
    assert any(expected in line for line in err.lines()), err.lines()


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    err = _error("organisation: [unclosed")
    assert "not valid YAML" in str(err)
    with pytest.raises(InventoryError, match="cannot read"):
        load_inventory(tmp_path / "missing.yaml")


def test_a_tariff_per_m3_of_gas_is_refused_naming_the_energy() -> None:
    # wp-reports review: `unit: m3` on a gas price (1.2 €/m3, as a bill gives it) loaded, and the reports
    # multiplied each kWh by it: the month's gas cost 11 times too much, the emissions too.
    err = _error("energies:\n  natural_gas: {price_eur_per_unit: 1.2, emission_kgco2e_per_unit: 2.5, unit: m3}\n" + MINIMAL)
    assert len(err.lines()) == 1
    line = err.lines()[0]
    assert line.startswith("commune.yaml:2 energies.natural_gas")
    assert "per kWh" in line
    assert "'m3'" in line
    # Water is priced per m3, whether the file says so or not; a gas tariff per kWh loads.
    inv = parse_inventory("energies:\n  water: {price_eur_per_unit: 4.1, emission_kgco2e_per_unit: 0.1}\n"
                          "  natural_gas: {price_eur_per_unit: 0.1, emission_kgco2e_per_unit: 0.2, unit: kWh}\n" + MINIMAL)
    from inventory import Energy
    assert inv.tariff(Energy.WATER).unit == "m3"
    assert inv.tariff(Energy.NATURAL_GAS).price_eur_per_unit == 0.1
    err = _error("energies:\n  water: {price_eur_per_unit: 4.1, emission_kgco2e_per_unit: 0.1, unit: L}\n" + MINIMAL)
    assert "per m3" in err.lines()[0]
