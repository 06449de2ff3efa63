"""Run the simulated commune: the model on a clock, its Modbus gateways and its MQTT sensors.

:class:`Simulator` starts the model at ``clock.now()``, serves every Modbus
gateway (values computed at read time) and, when a broker is given, publishes
the MQTT sensors. Two named tasks run on the event loop: ``simulator-model``
advances the model every ``tick`` of simulated time and ``simulator-mqtt``
publishes. It runs in real time with a ``SystemClock`` or accelerated with a
``ScaledClock`` (speed 60: one simulated minute per second; up to 3600, where
publishing skips intervals rather than falling behind).

>>> import asyncio
>>> from datetime import UTC, datetime, timedelta
>>> from pathlib import Path
>>> from inventory import load_inventory
>>> from streams.clock import ScaledClock
>>> inventory = load_inventory(Path("examples/commune.yaml"))
>>> async def demo() -> bool:
...     clock = ScaledClock(datetime(2026, 1, 12, 8, tzinfo=UTC), speed=600)
...     simulator = Simulator(inventory, clock, seed=1, modbus_ports={g.id: 0 for g in inventory.modbus_gateways})
...     await simulator.start()
...     await asyncio.sleep(0.2)
...     moved = simulator.model.now > datetime(2026, 1, 12, 8, tzinfo=UTC)
...     await simulator.stop()
...     return moved
>>> asyncio.run(demo())
True
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from inventory import Inventory
from simulator.faults import Fault
from simulator.modbus_server import ModbusSimulator
from simulator.mqtt_publisher import MqttPublisher
from simulator.physics import PortfolioModel
from streams.clock import Clock

__all__ = ["Simulator"]

logger = logging.getLogger(__name__)


class Simulator:
    """The demo commune's meters and sensors, served from the building model.

    Args:
        inventory: the portfolio to simulate.
        clock: the simulated time (``SystemClock``, ``ScaledClock``, ``ManualClock``).
        seed: seed of the model's random parts.
        faults: faults to inject (see :mod:`simulator.faults`).
        modbus_ports: port per gateway id, overriding the inventory (0: a free port).
        mqtt: ``(host, port)`` of the broker to publish to; None publishes nothing.
        host: address the Modbus gateways listen on.
        tick: simulated time between two model steps.
        mqtt_topic_prefix: prepended to every published topic.
        mqtt_client_id: MQTT client id of the publisher.
        model_start: the simulated time the building model starts from (default: the clock's now). Give the
            start of a history written before (:func:`simulator.generate_history`, same seed and faults) so that
            the live counters continue its indexes instead of starting again from their initial value.
    """

    def __init__(
        self,
        inventory: Inventory,
        clock: Clock,
        *,
        seed: int = 0,
        faults: Sequence[Fault] = (),
        modbus_ports: Mapping[str, int] | None = None,
        mqtt: tuple[str, int] | None = None,
        host: str = "127.0.0.1",
        tick: timedelta = timedelta(seconds=10),
        mqtt_topic_prefix: str = "",
        mqtt_client_id: str = "econome-simulator",
        model_start: datetime | None = None,
    ) -> None:
        if tick <= timedelta(0):
            msg = f"tick must be positive, got {tick}"
            raise ValueError(msg)
        self.inventory = inventory
        self.clock = clock
        self.tick = tick
        self.model = PortfolioModel(inventory, model_start or clock.now(), seed=seed, faults=faults)
        self.modbus = ModbusSimulator(inventory, self.model, clock=clock, ports=modbus_ports, host=host)
        self.mqtt: MqttPublisher | None = None
        if mqtt is not None:
            self.mqtt = MqttPublisher(
                inventory, self.model, clock, mqtt[0], mqtt[1], client_id=mqtt_client_id, topic_prefix=mqtt_topic_prefix
            )
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Serve the Modbus gateways, connect to the broker and start the tasks.

        Raises:
            OSError: when a Modbus port cannot be bound.
            ConnectionError: when the broker cannot be reached.
        """
        await self.modbus.start()
        if self.mqtt is not None:
            try:
                await self.mqtt.start()
            except ConnectionError:
                await self.modbus.stop()
                raise
        self._spawn("simulator-model", self._advance_forever())
        if self.mqtt is not None:
            self._spawn("simulator-mqtt", self.mqtt.run())
        logger.info("simulator started at %s", self.model.now.isoformat())

    def _spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def _advance_forever(self) -> None:
        while True:
            self.model.advance(self.clock.now())
            await self.clock.sleep(self.tick)

    async def stop(self) -> None:
        """Cancel the tasks, then close the MQTT connection and the Modbus servers."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                logger.error("simulator task %s failed: %s", task.get_name(), task.exception())
        if self.mqtt is not None:
            await self.mqtt.stop()
        await self.modbus.stop()
        logger.info("simulator stopped at %s", self.model.now.isoformat())
