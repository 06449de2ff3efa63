"""Serve the inventory's Modbus gateways as real pymodbus TCP servers on loopback.

Every gateway of the inventory becomes one ``ModbusTcpServer``; every unit id
behind it becomes one pymodbus ``SimDevice`` whose holding and input blocks
cover the registers of its points. A unit bound to a device profile also serves
the profile's other registers (voltages, currents, frequency, export energy,
heat-meter volume and temperatures) with plausible values derived from the
same meter. Registers are encoded at read time from the :class:`PortfolioModel`
(data type, word order, scale and offset of the register spec); integer
counters wrap at their register width like real meters, and writes are refused.

Tests can make a unit fail: ``timeout`` (the gateway never answers) or
``exception`` (it answers Modbus exception 0x04, device failure). A unit id the
gateway does not know also times out, as behind a real RS-485 gateway.

>>> import asyncio
>>> from datetime import UTC, datetime
>>> from pathlib import Path
>>> from inventory import load_inventory
>>> from simulator.physics import PortfolioModel
>>> inventory = load_inventory(Path("examples/commune.yaml"))
>>> model = PortfolioModel(inventory, datetime(2026, 1, 12, 9, tzinfo=UTC))
>>> async def serve() -> int:
...     server = ModbusSimulator(inventory, model, ports={g.id: 0 for g in inventory.modbus_gateways})
...     await server.start()
...     server.set_unit_behaviour("gw-centre", 1, "timeout")
...     port = server.port("gw-centre")
...     await server.stop()
...     return port
>>> asyncio.run(serve()) > 0
True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from pymodbus.client import ModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimDataType
from pymodbus.simulator import SimData, SimDevice

from inventory import DataType, Inventory, ModbusGateway, Point, RegisterSpec, RegisterType, load_profiles
from simulator.physics import PortfolioModel
from streams.clock import Clock

__all__ = ["ModbusSimulator", "UnitBehaviour", "encode_value"]

logger = logging.getLogger(__name__)

_FLOATS = frozenset({DataType.FLOAT32, DataType.FLOAT64})
_SIGNED = frozenset({DataType.INT16, DataType.INT32, DataType.INT64})
_TO_BASE = {"W": 1.0, "kW": 1e3, "Wh": 1.0, "kWh": 1e3, "MWh": 1e6, "m3": 1.0, "L": 1e-3}
_HEAT_WH_PER_M3 = 1163.0 * 20.0  # water through a heat meter at a 20 K flow/return difference
_READ_INPUT = 4


class UnitBehaviour(str, Enum):
    """How a simulated unit answers."""

    OK = "ok"
    TIMEOUT = "timeout"
    EXCEPTION = "exception"


def encode_value(value: float, spec: RegisterSpec) -> list[int]:
    """Encode a decoded value into register words, as the meter would hold it.

    The raw number is ``(value - offset) / scale``; integers are rounded and
    wrap around at the register width (an uint32 counter at 2**32 rolls to 0).

    Args:
        value: the value in the register's unit.
        spec: where and how the register holds it.

    Returns:
        ``spec.count`` 16-bit words.

    >>> from inventory import RegisterSpec
    >>> encode_value(2**32 * 0.01 + 0.05, RegisterSpec(address=0, data_type="uint32", scale=0.01))
    [0, 5]
    """
    raw = (value - spec.offset) / spec.scale if math.isfinite(value) else 0.0
    data_type = ModbusTcpClient.DATATYPE[spec.data_type.name]
    order: Literal["big", "little"] = "little" if spec.word_order.value == "little" else "big"
    if spec.data_type in _FLOATS:
        return ModbusTcpClient.convert_to_registers(float(raw), data_type, word_order=order)
    bits = spec.data_type.bits
    number = round(raw) % (1 << bits)
    if spec.data_type in _SIGNED and number >= 1 << (bits - 1):
        number -= 1 << bits
    return ModbusTcpClient.convert_to_registers(number, data_type, word_order=order)


@dataclass(frozen=True, slots=True)
class _Register:
    name: str
    spec: RegisterSpec
    read: Callable[[], float]


class _Unit:
    """One unit id behind a gateway: its registers and its behaviour."""

    def __init__(self, gateway: str, unit: int) -> None:
        self.gateway = gateway
        self.unit = unit
        self.behaviour = UnitBehaviour.OK
        self.registers: dict[RegisterType, list[_Register]] = {RegisterType.HOLDING: [], RegisterType.INPUT: []}

    def add(self, register: _Register) -> None:
        self.registers[register.spec.register_type].append(register)

    def block(self, register_type: RegisterType) -> list[SimData]:
        regs = sorted(self.registers[register_type], key=lambda r: r.spec.address)
        if not regs:
            # pymodbus needs a non-empty block; an invalid cell answers "illegal address".
            return [SimData(0, datatype=SimDataType.INVALID)]
        return [
            SimData(r.spec.address, count=r.spec.count, values=0, datatype=SimDataType.REGISTERS, readonly=True)
            for r in regs
        ]


class ModbusSimulator:
    """Every Modbus gateway of the inventory, served from the model.

    Args:
        inventory: the portfolio whose gateways and points are served.
        model: the model the values come from.
        clock: when given, the model is advanced to ``clock.now()`` before each read.
        ports: port per gateway id (``0`` picks a free one); default the inventory's.
        host: address to listen on.
    """

    def __init__(
        self,
        inventory: Inventory,
        model: PortfolioModel,
        *,
        clock: Clock | None = None,
        ports: Mapping[str, int] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.inventory = inventory
        self.model = model
        self.clock = clock
        self.host = host
        self._ports = {gw.id: (ports or {}).get(gw.id, gw.port) for gw in inventory.modbus_gateways}
        self._units: dict[tuple[str, int], _Unit] = {}
        self._servers: dict[str, ModbusTcpServer] = {}
        self._build()

    # -- register maps ----------------------------------------------------------------------------

    def _build(self) -> None:
        by_unit: dict[tuple[str, int], list[Point]] = {}
        for _, point in self.inventory.points():
            if point.modbus is not None:
                by_unit.setdefault((point.modbus.gateway, point.modbus.unit), []).append(point)
        for (gateway, unit_id), points in by_unit.items():
            unit = _Unit(gateway, unit_id)
            bound: dict[str, Point] = {}
            for point in points:
                spec = self.inventory.register_of(point)
                unit.add(_Register(point.id, spec, self._reader(point.id)))
                if point.modbus is not None and point.modbus.field is not None:
                    bound[point.modbus.field] = point
            profile_name = next((p.modbus.profile for p in points if p.modbus and p.modbus.profile), None)
            if profile_name is not None:
                profile = load_profiles()[profile_name]
                for field, spec in profile.registers.items():
                    if field not in bound:
                        unit.add(_Register(field, spec, self._derived(field, spec, points)))
            self._units[(gateway, unit_id)] = unit

    def _reader(self, point_id: str) -> Callable[[], float]:
        return lambda: self.model.value(point_id)

    def _derived(self, field: str, spec: RegisterSpec, points: list[Point]) -> Callable[[], float]:
        """A plausible value for a profile register no point is bound to."""
        counter = next((p for p in points if p.cumulative or p.quantity.value.endswith("energy")), None)
        power = next((p for p in points if p.quantity.value.endswith("power")), None)
        model = self.model
        unit = spec.unit or ""

        def power_w() -> float:
            if power is not None:
                return model.value(power.id) * _TO_BASE.get(power.unit, 1.0)
            if counter is not None:
                return model.rate(counter.id) * _TO_BASE.get(counter.unit, 1.0)
            return 0.0

        def volts() -> float:
            return 230.0 + 2.5 * math.sin(model.now.timestamp() / 5400.0 + spec.address)

        if unit == "V":
            return volts
        if unit == "A":
            return lambda: power_w() / (3.0 * volts() * 0.95)
        if unit == "Hz":
            return lambda: 50.0 + 0.03 * math.sin(model.now.timestamp() / 600.0)
        if unit in {"W", "kW"}:
            return lambda: power_w() / _TO_BASE[unit]
        if unit in {"Wh", "kWh", "MWh"}:
            if "export" in field or counter is None:
                return lambda: 0.0
            source = counter
            return lambda: model.value(source.id) * _TO_BASE.get(source.unit, 1.0) / _TO_BASE[unit]
        if unit == "m3" and counter is not None:
            source = counter
            return lambda: model.value(source.id) * _TO_BASE.get(source.unit, 1.0) / _HEAT_WH_PER_M3
        if unit == "degC":
            hot, cool = (70.0, 40.0) if "flow" in field else (50.0, 35.0)
            return lambda: hot if power_w() > 1000.0 else cool
        return lambda: 0.0

    # -- serving ----------------------------------------------------------------------------------

    def _action(self, unit: _Unit) -> Callable[..., object]:
        async def action(
            function_code: int,
            start_address: int,
            address: int,
            count: int,
            current_registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            if unit.behaviour is UnitBehaviour.TIMEOUT:
                # With ignore_missing_devices the server sends nothing: the client times out.
                msg = f"unit {unit.unit} on {unit.gateway} made silent"
                raise NoSuchIdException(msg)
            if unit.behaviour is UnitBehaviour.EXCEPTION:
                return ExcCodes.DEVICE_FAILURE
            if self.clock is not None:
                self.model.advance(self.clock.now())
            kind = RegisterType.INPUT if function_code == _READ_INPUT else RegisterType.HOLDING
            end = address + count
            for register in unit.registers[kind]:
                first = register.spec.address
                if first < end and first + register.spec.count > address:
                    words = encode_value(register.read(), register.spec)
                    offset = first - start_address
                    current_registers[offset : offset + len(words)] = words
            return None

        return action

    def _devices(self, gateway: ModbusGateway) -> list[SimDevice]:
        devices: list[SimDevice] = []
        for (gateway_id, unit_id), unit in sorted(self._units.items()):
            if gateway_id != gateway.id:
                continue
            blocks = (
                [SimData(0, values=False, datatype=SimDataType.BITS)],
                [SimData(0, values=False, datatype=SimDataType.BITS)],
                unit.block(RegisterType.HOLDING),
                unit.block(RegisterType.INPUT),
            )
            devices.append(SimDevice(id=unit_id, simdata=blocks, action=self._action(unit)))  # type: ignore[arg-type]  # pymodbus types the action as a bare Callable alias
        # Id 0 catches every unit id not configured; it must cover all addresses so
        # that the request reaches its action, which silences the answer.
        catch_all = [SimData(0, count=65535, values=0, datatype=SimDataType.REGISTERS)]
        devices.append(SimDevice(id=0, simdata=catch_all, action=_unknown_unit))
        return devices

    async def start(self) -> None:
        """Listen on every gateway's port.

        Raises:
            OSError: when a port cannot be bound.
        """
        for gateway in self.inventory.modbus_gateways:
            server = ModbusTcpServer(
                self._devices(gateway), address=(self.host, self._ports[gateway.id]), ignore_missing_devices=True
            )
            try:
                await server.serve_forever(background=True)
            except RuntimeError as exc:
                await self.stop()
                msg = f"cannot serve Modbus gateway {gateway.id} on {self.host}:{self._ports[gateway.id]}"
                raise OSError(msg) from exc
            self._servers[gateway.id] = server
            listener = server.transport
            sockets = getattr(listener, "sockets", None)
            if sockets:
                self._ports[gateway.id] = int(sockets[0].getsockname()[1])
            units = sorted(u for g, u in self._units if g == gateway.id)
            logger.info("serving Modbus gateway %s on %s:%s, units %s", gateway.id, self.host, self.port(gateway.id), units)

    async def stop(self) -> None:
        """Close every listener and connection."""
        servers, self._servers = self._servers, {}
        for gateway_id, server in servers.items():
            await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus leaves shutdown unannotated
            logger.info("stopped Modbus gateway %s", gateway_id)

    def port(self, gateway_id: str) -> int:
        """The port a gateway listens on (the bound one once started)."""
        return self._ports[gateway_id]

    def set_unit_behaviour(self, gateway_id: str, unit: int, behaviour: UnitBehaviour | str) -> None:
        """Make a unit answer normally, time out, or answer a Modbus exception.

        Raises:
            KeyError: when the gateway has no such unit.
        """
        target = self._units[(gateway_id, unit)]
        target.behaviour = UnitBehaviour(behaviour)
        logger.info("Modbus unit %s on %s now behaves %s", unit, gateway_id, target.behaviour.value)


async def _unknown_unit(
    function_code: int,
    start_address: int,
    address: int,
    count: int,
    current_registers: list[int],
    set_values: list[int] | list[bool] | None,
) -> ExcCodes | None:
    msg = f"no unit answers function {function_code} at {address}"
    raise NoSuchIdException(msg)
