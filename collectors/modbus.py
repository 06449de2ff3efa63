"""Poll Modbus TCP meters: one connection per gateway, block reads, isolated failures.

A :class:`ModbusBus` owns the connection to one gateway (host:port) and
serializes its requests under a lock. A :class:`ModbusCollector` polls the
points of one gateway that share a poll interval: at construction it plans
*blocks*, runs of registers of one unit and table that are contiguous or
separated by at most ``max_gap`` registers, up to ``max_registers`` per request.
The collector only ever sends read function codes (3 and 4).

When a unit times out, the rest of that unit's blocks are skipped for this poll,
so a dead meter costs the other units of the gateway at most one timeout.

A register that holds a "no value" code of its profile or binding, a NaN or an
infinity is never emitted as a reading: it goes to the dead-letter store with
a reason naming gateway, unit, point and register, and is counted by the
sensor's ``on_dead_letter``. The log says so once when a point turns invalid
and once when it recovers.

Sample settings (``ECONOME_MODBUS_*``)::

    max_registers: 125   # per request, the protocol's limit
    max_gap: 8           # unused registers read to save a request
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from collectors.codec import decode
from inventory import Inventory, ModbusGateway, ModbusWorkarounds, Point, RegisterSpec, RegisterType
from streams.clock import Clock
from streams.deadletter import DeadLetter, DeadLetterStore
from streams.errors import CollectorError, DecodeError, DeviceError, DeviceTimeout
from streams.metrics import Sensor
from streams.record import Reading

__all__ = ["Block", "ModbusBus", "ModbusCollector", "ModbusCollectorConfig", "plan_blocks"]

logger = logging.getLogger(__name__)

_FUNCTIONS = {3: "read holding registers", 4: "read input registers"}


class ModbusCollectorConfig(BaseModel):
    """How requests are grouped."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_registers: int = Field(default=125, ge=1, le=125)
    """Most registers per request (125 is the protocol's limit for function 3/4)."""
    max_gap: int = Field(default=8, ge=0, le=124)
    """Most unused registers read between two values to save a request."""
    block_reads: bool = True
    """False reads every point on its own: for gateways that refuse reads spanning unmapped registers."""
    frames_kept: int = Field(default=32, ge=0, le=10_000)
    """Raw frames kept per gateway for diagnosing decode errors."""

    @classmethod
    def from_workarounds(cls, workarounds: ModbusWorkarounds) -> ModbusCollectorConfig:
        """The collector config for a gateway's ``workarounds:`` block."""
        return cls(max_registers=workarounds.max_registers, max_gap=workarounds.max_gap, block_reads=workarounds.block_reads)


@dataclass(frozen=True, slots=True)
class BlockItem:
    """A point inside a block."""

    point: Point
    spec: RegisterSpec


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: a run of registers of one unit and one table."""

    unit: int
    register_type: RegisterType
    address: int
    count: int
    items: tuple[BlockItem, ...]


def plan_blocks(items: Sequence[tuple[int, Point, RegisterSpec]], max_registers: int, max_gap: int) -> list[Block]:
    """Group registers into as few requests as the limits allow.

    Args:
        items: (unit id, point, register spec) triples.
        max_registers: the most registers one request may read.
        max_gap: the most unused registers a block may span between two values.

    Returns:
        Blocks ordered by unit, table and address.
    """
    groups: dict[tuple[int, RegisterType], list[BlockItem]] = {}
    for unit, point, spec in items:
        groups.setdefault((unit, spec.register_type), []).append(BlockItem(point, spec))
    blocks: list[Block] = []
    for (unit, register_type), members in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1].value)):
        members.sort(key=lambda m: m.spec.address)
        current: list[BlockItem] = []
        start = end = 0
        for member in members:
            m_start, m_end = member.spec.address, member.spec.address + member.spec.count
            if current and (m_start - end > max_gap or max(end, m_end) - start > max_registers):
                blocks.append(Block(unit, register_type, start, end - start, tuple(current)))
                current = []
            if not current:
                start, end = m_start, m_end
            current.append(member)
            end = max(end, m_end)
        if current:
            blocks.append(Block(unit, register_type, start, end - start, tuple(current)))
    return blocks


@dataclass
class UnitStatus:
    """Health of one unit id on a gateway."""

    up: bool = True
    errors: int = 0
    last_error: str = ""
    last_success_monotonic: float | None = None


@dataclass
class ModbusBus:
    """The connection to one Modbus TCP gateway; requests are serialized.

    Attributes:
        gateway: the gateway from the inventory.
        frames: the last raw frames sent and received, kept for diagnosing a
            decode error when DEBUG logging is off.
    """

    gateway: ModbusGateway
    frames_kept: int = 32
    frames: deque[tuple[str, bytes]] = field(init=False)
    requests: int = field(default=0, init=False)
    _client: AsyncModbusTcpClient | None = field(default=None, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    _backoff: float = field(default=0.0, init=False)
    _next_connect: float = field(default=0.0, init=False)
    _last_answer: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        """Prepare the frame buffer."""
        self.frames = deque(maxlen=self.frames_kept)

    @property
    def name(self) -> str:
        """``gateway-id@host:port``, for logs."""
        return f"{self.gateway.id}@{self.gateway.host}:{self.gateway.port}"

    def _trace(self, sending: bool, data: bytes) -> bytes:
        self.frames.append(("tx" if sending else "rx", bytes(data)))
        return data

    async def _connected(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        now = time.monotonic()
        if now < self._next_connect:
            msg = f"gateway {self.name} unreachable, next attempt in {self._next_connect - now:.1f}s"
            raise DeviceError(msg)
        if self._client is not None:
            self._client.close()
        timeout = self.gateway.timeout.total_seconds()
        client = AsyncModbusTcpClient(
            self.gateway.host,
            port=self.gateway.port,
            timeout=timeout,
            retries=0,
            # We reconnect ourselves, with our own backoff and logging.
            reconnect_delay=0,
            reconnect_delay_max=0,
            trace_packet=self._trace if self.frames_kept else None,
        )
        try:
            ok = await asyncio.wait_for(client.connect(), timeout)
        except (TimeoutError, OSError, ModbusException) as exc:
            client.close()
            ok = False
            reason = repr(exc)
        else:
            reason = "connection refused"
        if not ok:
            client.close()
            self._schedule_reconnect()
            msg = f"gateway {self.name}: cannot connect ({reason})"
            raise DeviceError(msg)
        self._backoff = 0.0
        self._client = client
        return client

    def _schedule_reconnect(self) -> None:
        low = self.gateway.reconnect_min.total_seconds()
        high = self.gateway.reconnect_max.total_seconds()
        self._backoff = min(high, max(low, self._backoff * 2))
        self._next_connect = time.monotonic() + self._backoff

    async def read(self, unit: int, register_type: RegisterType, address: int, count: int) -> list[int]:
        """Read registers; never writes.

        Raises:
            DeviceTimeout: no answer within the gateway's timeout.
            DeviceError: an exception response or a connection failure.
        """
        where = f"gateway {self.name} unit {unit} {register_type.value} {address}+{count}"
        async with self._lock:
            client = await self._connected()
            delay = self.gateway.workarounds.request_delay.total_seconds()
            if delay:
                # RS-485 gateways need a silent interval between two requests.
                await asyncio.sleep(max(0.0, self._last_answer + delay - time.monotonic()))
            self.requests += 1
            timeout = self.gateway.timeout.total_seconds()
            try:
                if register_type is RegisterType.HOLDING:
                    call = client.read_holding_registers(address, count=count, device_id=unit)
                else:
                    call = client.read_input_registers(address, count=count, device_id=unit)
                response = await asyncio.wait_for(call, timeout * 1.5)
            except TimeoutError as exc:
                raise self._no_answer(client, where, timeout) from exc
            except ModbusException as exc:
                if "No response" in str(exc) or "timeout" in str(exc).lower():
                    raise self._no_answer(client, where, timeout) from exc
                if not client.connected:
                    self._schedule_reconnect()
                msg = f"{where}: {exc}"
                raise DeviceError(msg) from exc
            # pymodbus's second failure mode: an exception response returned, not raised.
            if response.isError():
                msg = f"{where}: exception response code {getattr(response, 'exception_code', '?')}"
                raise DeviceError(msg)
            self._last_answer = time.monotonic()
            # pymodbus decodes an answer by its own function code: a gateway answering with
            # the other table's function would pass the other table's registers for ours.
            expected = 3 if register_type is RegisterType.HOLDING else 4
            function = getattr(response, "function_code", expected)
            if function != expected:
                msg = f"{where}: answer of function {function} ({_FUNCTIONS.get(function, 'not a read')}), not {expected}"
                raise DeviceError(msg)
            registers = list(response.registers)
            if len(registers) != count:
                # Longer than asked is out of the protocol too: which registers it holds is unknown.
                msg = f"{where}: {'short' if len(registers) < count else 'long'} answer of {len(registers)} registers"
                raise DeviceError(msg)
            return registers

    def _no_answer(self, client: AsyncModbusTcpClient, where: str, timeout: float) -> CollectorError:
        if not client.connected:
            return DeviceError(f"{where}: connection closed by the gateway before a whole answer")
        # What came back since the request (kept when frames are traced): pymodbus drops an answer
        # for another unit id or transaction, or one it cannot frame, and waits for the timeout.
        received: list[bytes] = []
        for direction, frame in reversed(self.frames):
            if direction == "tx":
                break
            received.insert(0, frame)
        if received:
            got = b"".join(received)
            return DeviceTimeout(
                f"{where}: no usable answer in {timeout}s, received {got[:64].hex()} "
                "(another unit id or transaction, or not a Modbus TCP frame)"
            )
        return DeviceTimeout(f"{where}: no answer in {timeout}s")

    def close(self) -> None:
        """Close the connection."""
        if self._client is not None:
            self._client.close()
            self._client = None


class ModbusCollector:
    """Polls the points of one gateway that share one poll interval.

    It is a *polled* collector: the scheduler calls :meth:`poll` every
    :attr:`interval` (with jitter) and emits what it returns.
    """

    kind = "modbus"

    def __init__(
        self,
        inventory: Inventory,
        bus: ModbusBus,
        points: Sequence[Point],
        interval: timedelta,
        clock: Clock,
        config: ModbusCollectorConfig | None = None,
        sensor: Sensor | None = None,
        dead_letters: DeadLetterStore | None = None,
    ) -> None:
        self.bus = bus
        # Without a store given, invalid values are still kept (in memory) and counted.
        self.dead_letters = dead_letters if dead_letters is not None else DeadLetterStore()
        self.sensor = sensor or Sensor()
        self.interval = interval
        self.clock = clock
        self.config = config or ModbusCollectorConfig()
        triples = []
        for point in points:
            if point.modbus is None or point.modbus.gateway != bus.gateway.id:
                msg = f"point {point.id} is not on gateway {bus.gateway.id}"
                raise ValueError(msg)
            triples.append((point.modbus.unit, point, inventory.register_of(point)))
        if self.config.block_reads:
            self.blocks = plan_blocks(triples, self.config.max_registers, self.config.max_gap)
        else:
            self.blocks = [
                Block(unit, spec.register_type, spec.address, spec.count, (BlockItem(point, spec),))
                for unit, point, spec in sorted(triples, key=lambda t: (t[0], t[2].register_type.value, t[2].address))
            ]
        self.units: dict[int, UnitStatus] = {block.unit: UnitStatus() for block in self.blocks}
        self.errors = 0
        self.decode_errors = 0
        self._invalid: set[str] = set()

    @property
    def name(self) -> str:
        """Task name: ``modbus:<gateway>:<interval>``."""
        return f"modbus:{self.bus.gateway.id}:{int(self.interval.total_seconds())}s"

    @staticmethod
    def example_params() -> dict[str, object]:
        """Parameters for the conformance test (a gateway and a point on it)."""
        return {"gateway": "gw-test", "unit": 1, "profile": "eastron-sdm630", "field": "import_active_energy"}

    async def poll(self) -> list[Reading]:
        """Read every block once; failing units are recorded and skipped.

        Returns:
            The readings decoded in this poll, stamped with the clock's time
            when each block's answer arrived.
        """
        readings: list[Reading] = []
        failed_units: set[int] = set()
        poll_started = time.perf_counter()
        requests_before = self.bus.requests
        for block in self.blocks:
            if block.unit in failed_units:
                continue
            started = time.perf_counter()
            try:
                words = await self.bus.read(block.unit, block.register_type, block.address, block.count)
            except CollectorError as exc:
                failed_units.add(block.unit)
                self._down(block.unit, exc)
                continue
            except Exception as exc:  # one unit's bug must not stop the others (issue 10)
                failed_units.add(block.unit)
                self._down(block.unit, self._unexpected(block, exc))
                continue
            ts = self.clock.now()
            self._up(block.unit)
            logger.debug(
                "gateway %s unit %s %s %s+%s read in %.1f ms",
                self.bus.name,
                block.unit,
                block.register_type.value,
                block.address,
                block.count,
                (time.perf_counter() - started) * 1000,
            )
            try:
                readings.extend(self._decode_block(block, words, ts))
            except Exception as exc:  # e.g. an OSError of the dead-letter store: this block only
                failed_units.add(block.unit)
                self._down(block.unit, self._unexpected(block, exc))
        elapsed = time.perf_counter() - poll_started
        self.sensor.on_poll(self.name, elapsed, self.bus.requests - requests_before)
        logger.debug("%s polled %s blocks in %.1f ms", self.name, len(self.blocks), elapsed * 1000)
        return readings

    def _decode_block(self, block: Block, words: list[int], ts: datetime) -> list[Reading]:
        out = []
        for item in block.items:
            offset = item.spec.address - block.address
            item_words = words[offset : offset + item.spec.count]
            try:
                value = decode(item_words, item.spec)
            except DecodeError as exc:
                self._reject(block, item, item_words, exc)
                continue
            if item.point.id in self._invalid:
                self._invalid.discard(item.point.id)
                logger.info(
                    "meter %s gateway %s unit %s register %s: valid again",
                    item.point.id,
                    self.bus.name,
                    block.unit,
                    item.spec.address,
                )
            out.append(Reading(item.point.id, ts, value, item.point.unit))
        return out

    def _reject(self, block: Block, item: BlockItem, words: list[int], exc: DecodeError) -> None:
        """Dead-letter a value that is no value (a no-value code, NaN, Inf); never emit it."""
        self.decode_errors += 1
        where = (
            f"gateway {self.bus.name} unit {block.unit} point {item.point.id} "
            f"{item.spec.register_type.value} register {item.spec.address}"
        )
        payload = " ".join(f"{w:04x}" for w in words)
        self.dead_letters.add(
            DeadLetter.now("modbus", f"{self.bus.gateway.id}/{block.unit}/{item.point.id}", payload, f"{exc}; {where}")
        )
        # Log once when the point turns invalid; repeats at DEBUG (a meter can stay so for days).
        level = logging.DEBUG if item.point.id in self._invalid else logging.WARNING
        self._invalid.add(item.point.id)
        logger.log(
            level,
            "meter %s gateway %s unit %s register %s: %s; dead-lettered; last frames %s",
            item.point.id,
            self.bus.name,
            block.unit,
            item.spec.address,
            exc,
            [f"{d}:{f.hex()}" for d, f in list(self.bus.frames)[-4:]],
        )

    def _unexpected(self, block: Block, exc: Exception) -> DeviceError:
        """An unexpected exception of one block, as a device error naming the gateway, unit and registers."""
        error = DeviceError(
            f"gateway {self.bus.name} unit {block.unit} {block.register_type.value} {block.address}+{block.count}: "
            f"unexpected {exc!r}"
        )
        error.__cause__ = exc
        return error

    def _down(self, unit: int, exc: CollectorError) -> None:
        status = self.units[unit]
        status.errors += 1
        self.errors += 1
        status.last_error = str(exc)
        self.sensor.on_device_error(self.bus.gateway.id, unit)
        if status.up:
            status.up = False
            self.sensor.on_device_state(self.bus.gateway.id, unit, up=False)
            logger.error("gateway %s unit %s down: %s", self.bus.name, unit, exc)
        else:
            logger.debug("gateway %s unit %s still down: %s", self.bus.name, unit, exc)

    def _up(self, unit: int) -> None:
        status = self.units[unit]
        first = status.last_success_monotonic is None
        status.last_success_monotonic = time.monotonic()
        if first:
            self.sensor.on_device_state(self.bus.gateway.id, unit, up=True)
        if not status.up:
            status.up = True
            self.sensor.on_device_state(self.bus.gateway.id, unit, up=True)
            logger.info("gateway %s unit %s recovered", self.bus.name, unit)

    def close(self) -> None:
        """Nothing to release: the bus is shared and closed by its owner."""
