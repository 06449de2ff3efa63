"""The Modbus collector against a real pymodbus TCP server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from collectors.codec import encode
from collectors.modbus import ModbusBus, ModbusCollector, ModbusCollectorConfig
from econome.localservers import free_port
from inventory import Inventory, RegisterSpec, parse_inventory
from streams.clock import SystemClock
from streams.metrics import PrometheusSensor

GOOD_UNITS = (1, 2)
EXCEPTION_UNIT = 7
SLOW_UNIT = 9
TIMEOUT_S = 0.4


def _inventory(port: int, units: tuple[int, ...]) -> Inventory:
    points = []
    for unit in units:
        points.append(f"""
          - id: u{unit}-energy
            quantity: active_energy
            unit: kWh
            usage: general
            cumulative: true
            modbus: {{gateway: gw, unit: {unit}, profile: eastron-sdm630, field: import_active_energy}}
          - id: u{unit}-power
            quantity: active_power
            unit: W
            usage: general
            modbus: {{gateway: gw, unit: {unit}, profile: eastron-sdm630, field: total_active_power}}
          - id: u{unit}-voltage
            quantity: voltage
            unit: V
            usage: general
            modbus: {{gateway: gw, unit: {unit}, profile: eastron-sdm630, field: voltage_l1}}
          - id: u{unit}-water
            quantity: water_volume
            unit: m3
            usage: water
            cumulative: true
            modbus: {{gateway: gw, unit: {unit}, register: {{address: 1000, data_type: uint32, scale: 0.001}}}}""")
    return parse_inventory(f"""
organisation: {{name: Test, population: 100, school_holiday_zone: C}}
modbus_gateways: [{{id: gw, host: 127.0.0.1, port: {port}, timeout: {int(TIMEOUT_S * 1000)}ms,
                   reconnect_min: 100ms, reconnect_max: 1s}}]
sites:
  - id: s
    name: S
    buildings:
      - id: b
        name: B
        usage: offices
        floor_area_m2: 100
        heated_area_m2: 100
        points:{"".join(points)}
""")


def _registers(unit: int) -> list[int]:
    regs = [0] * 1100
    for address, value, spec in [
        (0x0000, 230.0 + unit, RegisterSpec(address=0, data_type="float32")),  # type: ignore[arg-type]
        (0x0034, 1500.0 * unit, RegisterSpec(address=0, data_type="float32")),  # type: ignore[arg-type]
        (0x0048, 12345.5 + unit, RegisterSpec(address=0, data_type="float32")),  # type: ignore[arg-type]
        (1000, 4321.123, RegisterSpec(address=0, data_type="uint32", scale=0.001)),  # type: ignore[arg-type]
    ]:
        words = encode(value, spec)
        regs[address : address + len(words)] = words
    return regs


class FakeGateway:
    """A Modbus TCP gateway with healthy meters, one answering exceptions and one that hangs."""

    def __init__(self) -> None:
        self.requests: list[tuple[int, int, int, int]] = []

    async def _record(
        self, unit: int, fc: int, start: int, address: int, count: int, regs: list[int], values: object
    ) -> ExcCodes | None:
        self.requests.append((unit, fc, address, count))
        if unit == EXCEPTION_UNIT:
            return ExcCodes.GATEWAY_NO_RESPONSE
        if unit == SLOW_UNIT:
            await asyncio.sleep(TIMEOUT_S * 4)
        return None

    def devices(self) -> list[SimDevice]:
        out = []
        for unit in (*GOOD_UNITS, EXCEPTION_UNIT, SLOW_UNIT):

            async def action(
                fc: int, start: int, address: int, count: int, regs: list[int], values: object, unit: int = unit
            ) -> ExcCodes | None:
                return await self._record(unit, fc, start, address, count, regs, values)

            out.append(
                SimDevice(id=unit, simdata=[SimData(0, values=_registers(unit), datatype=SimType.REGISTERS)], action=action)
            )
        return out


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[FakeGateway, int]]:
    fake = FakeGateway()
    port = free_port()
    server = ModbusTcpServer(fake.devices(), address=("127.0.0.1", port))
    task = asyncio.create_task(server.serve_forever())
    await asyncio.sleep(0.1)
    yield fake, port
    await server.shutdown()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _collector(inv: Inventory) -> tuple[ModbusCollector, ModbusBus]:
    bus = ModbusBus(inv.gateway("gw"))
    points = [p for _, p in inv.points()]
    return ModbusCollector(inv, bus, points, timedelta(seconds=10), SystemClock()), bus


async def test_reads_and_decodes_in_blocks(gateway: tuple[FakeGateway, int]) -> None:
    fake, port = gateway
    collector, bus = _collector(_inventory(port, GOOD_UNITS))
    try:
        readings = await collector.poll()
    finally:
        bus.close()
    values = {r.point_id: r.value for r in readings}
    assert values["u1-voltage"] == 231.0
    assert values["u2-power"] == 3000.0
    assert values["u2-energy"] == 12347.5
    assert values["u1-water"] == pytest.approx(4321.123)
    assert all(r.ts.tzinfo is UTC for r in readings)
    # Per unit, with the default max_gap of 8: voltage (0x00), power (0x34), energy (0x48)
    # are 18+ registers apart, and water (1000) is in the holding table: four requests.
    assert len(fake.requests) == bus.requests == 2 * 4
    assert {fc for _, fc, _, _ in fake.requests} == {3, 4}


async def test_wider_gap_merges_power_and_energy(gateway: tuple[FakeGateway, int]) -> None:
    fake, port = gateway
    inv = _inventory(port, GOOD_UNITS)
    bus = ModbusBus(inv.gateway("gw"))
    collector = ModbusCollector(
        inv, bus, [p for _, p in inv.points()], timedelta(seconds=10), SystemClock(), ModbusCollectorConfig(max_gap=20)
    )
    try:
        readings = await collector.poll()
    finally:
        bus.close()
    assert len(readings) == 8
    assert sorted((a, c) for u, _, a, c in fake.requests if u == 1) == [(0, 2), (52, 22), (1000, 2)]


async def test_failing_units_do_not_hold_up_the_others(gateway: tuple[FakeGateway, int]) -> None:
    fake, port = gateway
    inv = _inventory(port, (EXCEPTION_UNIT, SLOW_UNIT, *GOOD_UNITS))
    collector, bus = _collector(inv)
    try:
        started = datetime.now(UTC)
        readings = await collector.poll()
        second = await collector.poll()
    finally:
        bus.close()
    got = {r.point_id for r in readings}
    assert got == {f"u{u}-{k}" for u in GOOD_UNITS for k in ("energy", "power", "voltage", "water")}
    assert {r.point_id for r in second} == got
    # The hanging unit cost one timeout, not one per block; the exception unit one request.
    first_good = min(r.ts for r in readings)
    assert (first_good - started).total_seconds() < TIMEOUT_S * 1.5 + 0.5
    assert not collector.units[EXCEPTION_UNIT].up
    assert not collector.units[SLOW_UNIT].up
    assert collector.units[1].up
    assert "exception response code 11" in collector.units[EXCEPTION_UNIT].last_error
    assert "no answer" in collector.units[SLOW_UNIT].last_error
    assert {fc for _, fc, _, _ in fake.requests} <= {3, 4}, "the collector only reads"
    slow_requests = [r for r in fake.requests if r[0] == SLOW_UNIT]
    assert len(slow_requests) == 2  # one per poll, the rest of its blocks skipped


async def test_unreachable_gateway_backs_off() -> None:
    inv = _inventory(free_port(), GOOD_UNITS)
    collector, bus = _collector(inv)
    try:
        assert await collector.poll() == []
        assert await collector.poll() == []
    finally:
        bus.close()
    assert not collector.units[1].up
    assert "cannot connect" in collector.units[1].last_error or "next attempt" in collector.units[1].last_error


async def test_device_state_is_exposed_as_metrics(gateway: tuple[FakeGateway, int]) -> None:
    _, port = gateway
    inv = _inventory(port, (1, EXCEPTION_UNIT))
    sensor = PrometheusSensor()
    bus = ModbusBus(inv.gateway("gw"))
    collector = ModbusCollector(inv, bus, [p for _, p in inv.points()], timedelta(seconds=10), SystemClock(), sensor=sensor)
    try:
        await collector.poll()
        await collector.poll()
    finally:
        bus.close()
    text = sensor.exposition().decode()
    assert 'econome_device_up{device="gw/1"} 1.0' in text
    assert f'econome_device_up{{device="gw/{EXCEPTION_UNIT}"}} 0.0' in text
    assert f'econome_device_errors_total{{device="gw/{EXCEPTION_UNIT}"}} 2.0' in text
    assert 'econome_modbus_requests_total{collector="modbus:gw:10s"} 10.0' in text
