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
from streams.deadletter import DeadLetterStore
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


# Issue 10: "no value" codes, NaN and Inf read from a meter are never emitted as good readings.
SENTINEL_UNIT = 5
NAN = [0x7FC0, 0x0000]
PLUS_INF = [0x7F80, 0x0000]


def _sentinel_inventory(port: int) -> Inventory:
    def point(pid: str, quantity: str, unit: str, binding: str) -> str:
        return f"""
          - id: {pid}
            quantity: {quantity}
            unit: {unit}
            usage: general
            modbus: {{gateway: gw, unit: {SENTINEL_UNIT}, {binding}}}"""

    points = "".join(
        [
            point("m-voltage", "voltage", "V", "profile: eastron-sdm630, field: voltage_l1"),  # NaN
            point("m-current", "current", "A", "profile: eastron-sdm630, field: current_l1"),  # +Inf
            point("m-power", "active_power", "W", "profile: eastron-sdm630, field: total_active_power"),  # good
            point("m-flow", "water_flow", "L/h", "register: {address: 1000, data_type: uint16, no_value: [0xFFFF]}"),
            point("m-temp", "temperature", "degC", "register: {address: 1001, data_type: int16, scale: 0.1}"),  # good
            point("m-energy", "active_energy", "Wh", "profile: schneider-iem3255, field: import_active_energy"),
        ]
    )
    return parse_inventory(f"""
organisation: {{name: Test, population: 100, school_holiday_zone: C}}
modbus_gateways: [{{id: gw, host: 127.0.0.1, port: {port}, timeout: 400ms}}]
sites:
  - id: s
    name: S
    buildings:
      - id: b
        name: B
        usage: offices
        floor_area_m2: 100
        heated_area_m2: 100
        points:{points}
""")


def _sentinel_registers() -> list[int]:
    regs = [0] * 3300
    regs[0x0000:0x0002] = NAN
    regs[0x0006:0x0008] = PLUS_INF
    regs[0x0034:0x0036] = encode(1500.0, RegisterSpec(address=0, data_type="float32"))  # type: ignore[arg-type]
    regs[1000] = 0xFFFF
    regs[1001] = encode(19.5, RegisterSpec(address=0, data_type="int16", scale=0.1))[0]  # type: ignore[arg-type]
    # The profile's INT64 no-value code, 0x8000000000000000 (iEM3255 energy).
    regs[3203:3207] = [0x8000, 0x0000, 0x0000, 0x0000]
    return regs


async def test_no_value_codes_nan_and_inf_are_dead_lettered_not_emitted() -> None:
    port = free_port()
    device = SimDevice(id=SENTINEL_UNIT, simdata=[SimData(0, values=_sentinel_registers(), datatype=SimType.REGISTERS)])
    server = ModbusTcpServer([device], address=("127.0.0.1", port))
    task = asyncio.create_task(server.serve_forever())
    await asyncio.sleep(0.1)
    inv = _sentinel_inventory(port)
    sensor = PrometheusSensor()
    store = DeadLetterStore(sensor=sensor)
    bus = ModbusBus(inv.gateway("gw"))
    points = [p for _, p in inv.points()]
    collector = ModbusCollector(inv, bus, points, timedelta(seconds=10), SystemClock(), sensor=sensor, dead_letters=store)
    try:
        first = await collector.poll()
        second = await collector.poll()
    finally:
        bus.close()
        await server.shutdown()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    for readings in (first, second):
        assert {r.point_id: r.value for r in readings} == {"m-power": 1500.0, "m-temp": pytest.approx(19.5)}
    assert store.count == 8  # four invalid points, two polls
    reasons = {letter.key: letter.reason for letter in store.recent}
    assert set(reasons) == {f"gw/{SENTINEL_UNIT}/m-{name}" for name in ("voltage", "current", "flow", "energy")}
    where = f"gateway gw@127.0.0.1:{port} unit {SENTINEL_UNIT} point"
    assert reasons[f"gw/{SENTINEL_UNIT}/m-voltage"].startswith("not finite: float32 registers ['0x7fc0', '0x0000'] decode to nan")
    assert f"{where} m-voltage input register 0" in reasons[f"gw/{SENTINEL_UNIT}/m-voltage"]
    assert "decode to inf" in reasons[f"gw/{SENTINEL_UNIT}/m-current"]
    assert reasons[f"gw/{SENTINEL_UNIT}/m-flow"] == (
        f"no value: 0xffff is a no-value code of this uint16 register; {where} m-flow holding register 1000"
    )
    assert reasons[f"gw/{SENTINEL_UNIT}/m-energy"].startswith("no value: 0x8000000000000000 is a no-value code of this int64")
    assert {letter.payload for letter in store.recent if letter.key.endswith("m-flow")} == {"ffff"}
    assert "econome_dead_letters_total 8.0" in sensor.exposition().decode()
