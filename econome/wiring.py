"""Build the collectors and the pipeline from an inventory and settings."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from collectors.modbus import ModbusBus, ModbusCollector, ModbusCollectorConfig
from collectors.mqtt import MqttCollector
from inventory import Inventory, Point
from streams.clock import Clock
from streams.deadletter import DeadLetterStore
from streams.metrics import Sensor

if TYPE_CHECKING:
    from anomalies.detect import DetectConfig
    from anomalies.live import EventNotifier, LiveDetector, PassReport
    from econome.settings import EconomeSettings

logger = logging.getLogger(__name__)

__all__ = ["build_collectors", "build_live_detector", "close_buses", "with_endpoints"]


def build_collectors(
    inventory: Inventory,
    clock: Clock,
    dead_letters: DeadLetterStore,
    modbus_config: ModbusCollectorConfig | None = None,
    mqtt_client_suffix: str = "",
    sensor: Sensor | None = None,
) -> tuple[list[ModbusCollector], list[MqttCollector], list[ModbusBus]]:
    """One Modbus collector per gateway and poll interval, one MQTT collector per broker.

    Returns:
        The polled collectors, the push collectors and the Modbus buses (to close).
    """
    groups: dict[tuple[str, timedelta], list[Point]] = defaultdict(list)
    for _, point in inventory.points():
        if point.modbus is not None:
            groups[(point.modbus.gateway, point.modbus.poll_interval)].append(point)
    configs = {
        gw.id: modbus_config or ModbusCollectorConfig.from_workarounds(gw.workarounds) for gw in inventory.modbus_gateways
    }
    buses = {gw.id: ModbusBus(gw, frames_kept=configs[gw.id].frames_kept) for gw in inventory.modbus_gateways}
    polled = [
        ModbusCollector(inventory, buses[gateway], points, interval, clock, configs[gateway], sensor, dead_letters)
        for (gateway, interval), points in sorted(groups.items())
    ]
    pushed = [
        MqttCollector(inventory, broker, clock, dead_letters, client_id=broker.client_id + mqtt_client_suffix)
        for broker in inventory.mqtt_brokers
    ]
    return polled, pushed, list(buses.values())


def close_buses(buses: list[ModbusBus]) -> None:
    """Close every Modbus connection."""
    for bus in buses:
        bus.close()


def with_endpoints(
    inventory: Inventory, modbus_ports: dict[str, int], mqtt: tuple[str, int] | None, host: str = "127.0.0.1"
) -> Inventory:
    """A copy of the inventory with gateways and brokers moved to local ports (demo, tests)."""
    gateways = [
        gw.model_copy(update={"host": host, "port": modbus_ports[gw.id]}) if gw.id in modbus_ports else gw
        for gw in inventory.modbus_gateways
    ]
    brokers = inventory.mqtt_brokers
    if mqtt is not None:
        brokers = [b.model_copy(update={"host": mqtt[0], "port": mqtt[1]}) for b in brokers]
    return inventory.model_copy(update={"modbus_gateways": gateways, "mqtt_brokers": brokers})


def build_live_detector(
    inventory: Inventory,
    settings: EconomeSettings,
    clock: Clock,
    notifier: EventNotifier | None = None,
    *,
    config: DetectConfig | None = None,
    on_pass: Callable[[PassReport | None], None] | None = None,
) -> LiveDetector:
    """The live detection of ``econome run``: the settings' InfluxDB, ``ECONOME_DETECT_*``, the state in ``data_dir``.

    Detection settings are those of the ``ECONOME_DETECT_CONFIG`` file when set
    (:func:`econome.settings.load_detect_config`), else :class:`~anomalies.detect.DetectConfig`'s defaults,
    as ``econome detect``'s.
    Buildings with only utility meters (a Linky, a Gazpar) are judged their publication delay late, on states
    of their own beside it (:func:`anomalies.live.lag_groups`).
    Alerts go to the alert register of ``data_dir`` (``econome alerts``, ``econome status``) and, when the
    inventory has an ``email:`` section, by e-mail to each building's advisors.

    Args:
        inventory: the portfolio.
        settings: the process settings.
        clock: the service's clock (operator actions, digests).
        notifier: what alerts are handed to; the register and e-mail outbox of ``data_dir`` when None.
        config: detection settings, overriding ``ECONOME_DETECT_CONFIG`` (``econome demo``).
        on_pass: called after every pass with its report (None for a failed pass).

    Raises:
        ConfigError: the ``ECONOME_DETECT_CONFIG`` file is missing or invalid (naming the file and line).
    """
    # Imported here: scikit-learn costs a second at start-up, and only detection needs it.
    from anomalies.detect import DetectConfig
    from anomalies.live import LiveConfig, LiveDetector
    from anomalies.notify import MailOutbox, alerts_path
    from econome.settings import load_detect_config

    if config is None:
        config = load_detect_config(settings.detect_config) if settings.detect_config is not None else DetectConfig()

    if notifier is None:
        path = alerts_path(settings.data_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        notifier = MailOutbox(path, inventory.email, inventory, clock)
        if inventory.email is None:
            logger.warning(
                "the inventory has no email: section: alerts are registered (econome alerts list) and written "
                "to InfluxDB, but no mail is sent (see docs/alerts.md)"
            )
    live = LiveConfig(every=settings.detect_every, delay=settings.detect_delay, bootstrap=settings.detect_bootstrap,
                      chunk=settings.detect_chunk, held=settings.detect_held, lagged_every=settings.detect_lagged_every)
    return LiveDetector(inventory, settings.influx(), settings.detect_state_path, notifier, config=config, live=live,
                        on_pass=on_pass)
