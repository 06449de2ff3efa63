"""The simulated gateways against a real pymodbus client on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from inventory import Inventory, load_inventory, parse_inventory
from simulator.modbus_server import ModbusSimulator
from simulator.physics import PortfolioModel
from streams.clock import ManualClock

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 1, 13, 9, 30, tzinfo=UTC)
DT = AsyncModbusTcpClient.DATATYPE

# A small portfolio with one meter of each encoding: the demo commune has no
# Schneider meter (int64 Wh) and no little-endian register.
PORTFOLIO = """
organisation: {name: Test, population: 100, school_holiday_zone: A}
modbus_gateways: [{id: gw, host: 127.0.0.1, port: 15999}]
sites:
- id: site
  name: Site
  buildings:
  - id: hall
    name: Hall
    usage: town_hall
    floor_area_m2: 800
    heated_area_m2: 700
    schedule: {weekly: {tue: ['08:00-18:00']}}
    points:
    - {id: hall-sdm, quantity: active_energy, unit: kWh, usage: general, cumulative: true, energy: electricity,
       modbus: {gateway: gw, unit: 1, profile: eastron-sdm630, field: import_active_energy}}
    - {id: hall-iem, quantity: active_energy, unit: Wh, usage: general, cumulative: true, energy: electricity,
       modbus: {gateway: gw, unit: 2, profile: schneider-iem3255, field: import_active_energy}}
    - {id: hall-iem-power, quantity: active_power, unit: kW, usage: general,
       modbus: {gateway: gw, unit: 2, profile: schneider-iem3255, field: total_active_power}}
    - {id: hall-gas, quantity: gas_volume, unit: m3, usage: heating, cumulative: true, energy: natural_gas,
       conversion_kwh_per_unit: 11.2, modbus: {gateway: gw, unit: 3, register: {address: 0, data_type: uint32, scale: 0.01}}}
    - {id: hall-water, quantity: water_volume, unit: m3, usage: water, cumulative: true, energy: water,
       modbus: {gateway: gw, unit: 4, register: {address: 10, register_type: input, data_type: uint32,
                                                 word_order: little, scale: 0.001}}}
    - {id: hall-heat, quantity: heat_energy, unit: kWh, usage: heating, cumulative: true, energy: heating_network,
       modbus: {gateway: gw, unit: 5, profile: mbus-heat-gateway, field: heat_energy}}
"""


@pytest.fixture
def portfolio() -> Inventory:
    return parse_inventory(PORTFOLIO)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def served(portfolio: Inventory, clock: ManualClock) -> AsyncIterator[tuple[ModbusSimulator, PortfolioModel]]:
    model = PortfolioModel(portfolio, START, seed=3)
    server = ModbusSimulator(portfolio, model, clock=clock, ports={"gw": 0})
    await server.start()
    yield server, model
    await server.stop()


@pytest.fixture
async def client(served: tuple[ModbusSimulator, PortfolioModel]) -> AsyncIterator[AsyncModbusTcpClient]:
    server, _ = served
    modbus = AsyncModbusTcpClient("127.0.0.1", port=server.port("gw"), timeout=0.5, retries=0)
    assert await modbus.connect()
    yield modbus
    modbus.close()


async def test_registers_decode_to_the_model_values(
    served: tuple[ModbusSimulator, PortfolioModel], client: AsyncModbusTcpClient, clock: ManualClock
) -> None:
    _, model = served
    clock.advance(timedelta(hours=2, seconds=17))  # reads advance the model to the clock
    rr = await client.read_input_registers(0x48, count=2, device_id=1)
    assert not rr.isError()
    sdm = client.convert_from_registers(rr.registers, DT.FLOAT32)
    assert model.now == clock.now()
    assert sdm == pytest.approx(model.value("hall-sdm"), rel=1e-6)

    rr = await client.read_holding_registers(3203, count=4, device_id=2)
    assert client.convert_from_registers(rr.registers, DT.INT64) == round(model.value("hall-iem"))
    rr = await client.read_holding_registers(3059, count=2, device_id=2)
    power_kw = client.convert_from_registers(rr.registers, DT.FLOAT32)
    assert power_kw == pytest.approx(model.value("hall-iem-power"), rel=1e-5)
    assert isinstance(power_kw, float)
    assert 1 < power_kw < 100

    rr = await client.read_holding_registers(0, count=2, device_id=3)
    gas_raw = client.convert_from_registers(rr.registers, DT.UINT32)
    assert gas_raw == round(model.value("hall-gas") / 0.01)

    rr = await client.read_input_registers(10, count=2, device_id=4)
    water_raw = client.convert_from_registers(rr.registers, DT.UINT32, word_order="little")
    assert water_raw == round(model.value("hall-water") / 0.001)

    rr = await client.read_holding_registers(0, count=8, device_id=5)
    assert client.convert_from_registers(rr.registers[0:2], DT.UINT32) == round(model.value("hall-heat"))
    volume = client.convert_from_registers(rr.registers[2:4], DT.UINT32)
    assert isinstance(volume, int)
    assert volume > 0
    flow = client.convert_from_registers(rr.registers[6:7], DT.INT16)
    assert isinstance(flow, int)
    assert 300 <= flow <= 800


async def test_profile_registers_are_plausible(client: AsyncModbusTcpClient) -> None:
    rr = await client.read_input_registers(0, count=12, device_id=1)
    values = client.convert_from_registers(rr.registers, DT.FLOAT32)
    assert isinstance(values, list)
    volts, amps = values[0:3], values[3:6]
    assert all(220 < v < 240 for v in volts)
    assert all(0 < a < 200 for a in amps)
    rr = await client.read_input_registers(0x46, count=2, device_id=1)
    assert client.convert_from_registers(rr.registers, DT.FLOAT32) == pytest.approx(50, abs=0.1)


async def test_counter_increases_with_time(client: AsyncModbusTcpClient, clock: ManualClock) -> None:
    first = await client.read_input_registers(0x48, count=2, device_id=1)
    clock.advance(timedelta(hours=1))
    second = await client.read_input_registers(0x48, count=2, device_id=1)
    before = client.convert_from_registers(first.registers, DT.FLOAT32)
    after = client.convert_from_registers(second.registers, DT.FLOAT32)
    assert isinstance(before, float)
    assert isinstance(after, float)
    assert 0.5 < after - before < 100  # kWh in one hour in an 800 m2 town hall


async def test_wrong_table_and_address_answer_illegal_address(client: AsyncModbusTcpClient) -> None:
    rr = await client.read_holding_registers(0x48, count=2, device_id=1)  # SDM630 energy is an input register
    assert rr.isError()
    assert rr.exception_code == 2
    rr = await client.read_input_registers(0x200, count=2, device_id=1)
    assert rr.isError()
    assert rr.exception_code == 2


async def test_writes_are_refused(client: AsyncModbusTcpClient) -> None:
    rr = await client.write_register(0, 1, device_id=3)
    assert rr.isError()


async def test_unit_answering_exceptions(served: tuple[ModbusSimulator, PortfolioModel], client: AsyncModbusTcpClient) -> None:
    server, _ = served
    server.set_unit_behaviour("gw", 1, "exception")
    rr = await client.read_input_registers(0x48, count=2, device_id=1)
    assert rr.isError()
    assert rr.exception_code == 4
    rr = await client.read_holding_registers(0, count=2, device_id=3)  # the other units still answer
    assert not rr.isError()
    server.set_unit_behaviour("gw", 1, "ok")
    rr = await client.read_input_registers(0x48, count=2, device_id=1)
    assert not rr.isError()


async def test_unit_timing_out(served: tuple[ModbusSimulator, PortfolioModel], client: AsyncModbusTcpClient) -> None:
    server, _ = served
    server.set_unit_behaviour("gw", 3, "timeout")
    with pytest.raises(ModbusIOException):
        await client.read_holding_registers(0, count=2, device_id=3)
    server.set_unit_behaviour("gw", 3, "ok")
    assert await client.connect()
    rr = await client.read_holding_registers(0, count=2, device_id=3)
    assert not rr.isError()


async def test_unknown_unit_times_out(client: AsyncModbusTcpClient) -> None:
    with pytest.raises(ModbusIOException):
        await client.read_holding_registers(0, count=2, device_id=77)


async def test_every_gateway_of_the_commune_is_served() -> None:
    commune = load_inventory(ROOT / "examples" / "commune.yaml")
    model = PortfolioModel(commune, START)
    server = ModbusSimulator(commune, model, ports={gw.id: 0 for gw in commune.modbus_gateways})
    await server.start()
    try:
        for _, point in commune.points():
            if point.modbus is None:
                continue
            spec = commune.register_of(point)
            client = AsyncModbusTcpClient("127.0.0.1", port=server.port(point.modbus.gateway), timeout=1, retries=0)
            await client.connect()
            read = client.read_input_registers if spec.register_type.value == "input" else client.read_holding_registers
            rr = await read(spec.address, count=spec.count, device_id=point.modbus.unit)
            client.close()
            assert not rr.isError(), point.id
    finally:
        await server.stop()
