"""Benchmark: Modbus block reads against one request per point, on a loopback gateway.

A pymodbus TCP server in a child process plays an RS-485 gateway with ten
Eastron SDM630 meters (every value of the profile: voltages, currents,
powers, power factors, energies, demand and THD). The
Modbus collector polls every value of every meter, first with block reads,
then with one request per point, in the same run. It prints, for both:
requests per poll, requests per second, registers per second, time per poll
and the collector's CPU seconds per 1,000 points polled (the server's CPU is
in the other process and not counted).

Run: ``.venv/bin/python bench/collectors.py [--meters 10] [--polls 30]``.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import sys
import time
from datetime import timedelta
from pathlib import Path

# This file is named like the package it measures; drop its folder from the path
# so that ``import collectors`` finds the package, not this script.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != _HERE]

from collectors.codec import encode  # noqa: E402
from collectors.modbus import ModbusBus, ModbusCollector, ModbusCollectorConfig  # noqa: E402
from inventory import Inventory, Quantity, load_profiles, parse_inventory  # noqa: E402
from streams.clock import SystemClock  # noqa: E402

PROFILE = "eastron-sdm630"
QUANTITY_OF_UNIT = {
    "V": Quantity.VOLTAGE,
    "A": Quantity.CURRENT,
    "W": Quantity.ACTIVE_POWER,
    "VA": Quantity.APPARENT_POWER,
    "var": Quantity.REACTIVE_POWER,
    "1": Quantity.POWER_FACTOR,
    "Hz": Quantity.FREQUENCY,
    "kWh": Quantity.ACTIVE_ENERGY,
    "kvarh": Quantity.REACTIVE_ENERGY,
    "%": Quantity.HARMONIC_DISTORTION,
}
PLAUSIBLE = {
    "V": 231.4,
    "A": 12.5,
    "W": 8200.0,
    "VA": 8900.0,
    "var": 1500.0,
    "1": 0.93,
    "Hz": 50.01,
    "kWh": 48213.7,
    "kvarh": 9120.2,
    "%": 3.2,
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _inventory(port: int, meters: int) -> Inventory:
    profile = load_profiles()[PROFILE]
    points = []
    for unit in range(1, meters + 1):
        for field, spec in profile.registers.items():
            quantity = QUANTITY_OF_UNIT[spec.unit or "1"]
            cumulative = quantity in (Quantity.ACTIVE_ENERGY, Quantity.REACTIVE_ENERGY)
            points.append(
                f"      - {{id: m{unit}-{field.replace('_', '-')}, quantity: {quantity.value}, unit: '{spec.unit}', "
                f"usage: general, cumulative: {str(cumulative).lower()}, "
                f"modbus: {{gateway: gw, unit: {unit}, profile: {PROFILE}, field: {field}, poll_interval: 10s}}}}"
            )
    return parse_inventory(
        "organisation: {name: Bench, population: 1, school_holiday_zone: B}\n"
        f"modbus_gateways: [{{id: gw, host: 127.0.0.1, port: {port}, timeout: 2s}}]\n"
        "sites:\n  - id: s\n    name: S\n    buildings:\n      - id: b\n        name: B\n        usage: offices\n"
        "        floor_area_m2: 100\n        heated_area_m2: 100\n        points:\n" + "\n".join("  " + p for p in points)
    )


def _serve(port: int, meters: int) -> None:
    """Child process: a gateway with ``meters`` SDM630 on unit ids 1..meters."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType as SimType
    from pymodbus.simulator import SimData, SimDevice

    profile = load_profiles()[PROFILE]
    registers = [0] * 0x160
    for spec in profile.registers.values():
        words = encode(PLAUSIBLE[spec.unit or "1"], spec)
        registers[spec.address : spec.address + len(words)] = words
    devices = [
        SimDevice(id=unit, simdata=[SimData(0, values=registers, datatype=SimType.REGISTERS)]) for unit in range(1, meters + 1)
    ]

    async def main() -> None:
        server = ModbusTcpServer(devices, address=("127.0.0.1", port))
        await server.serve_forever()

    asyncio.run(main())


async def _measure(inv: Inventory, block_reads: bool, polls: int) -> dict[str, float]:
    config = ModbusCollectorConfig(block_reads=block_reads, frames_kept=0)
    bus = ModbusBus(inv.gateway("gw"), frames_kept=0)
    points = [p for _, p in inv.points()]
    collector = ModbusCollector(inv, bus, points, timedelta(seconds=10), SystemClock(), config)
    registers_per_poll = sum(block.count for block in collector.blocks)
    try:
        await collector.poll()  # connect and warm up
        requests_before = bus.requests
        cpu0, wall0 = time.process_time(), time.perf_counter()
        polled = 0
        for _ in range(polls):
            readings = await collector.poll()
            assert len(readings) == len(points), f"{len(points) - len(readings)} points missing"  # noqa: S101
            polled += len(readings)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        bus.close()
    requests = bus.requests - requests_before
    return {
        "requests_per_poll": requests / polls,
        "requests_per_s": requests / wall,
        "registers_per_s": registers_per_poll * polls / wall,
        "ms_per_poll": wall / polls * 1000,
        "cpu_s_per_1000_points": cpu / polled * 1000,
        "points_per_poll": polled / polls,
    }


def main() -> None:
    """Run both modes and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=10)
    parser.add_argument("--polls", type=int, default=30)
    args = parser.parse_args()
    port = _free_port()
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(port, args.meters), daemon=True)
    server.start()
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    inv = _inventory(port, args.meters)
    try:
        block = asyncio.run(_measure(inv, True, args.polls))
        single = asyncio.run(_measure(inv, False, args.polls))
    finally:
        server.terminate()
        server.join(5)
    print(
        f"gateway: {args.meters} x {PROFILE} ({len(load_profiles()[PROFILE].registers)} values each), "
        f"{args.polls} polls per mode, cpu count {os.cpu_count()}"
    )
    print(f"{'':<28}{'block reads':>14}{'one per point':>16}")
    for key, label in [
        ("points_per_poll", "points per poll"),
        ("requests_per_poll", "requests per poll"),
        ("requests_per_s", "requests/s"),
        ("registers_per_s", "registers/s"),
        ("ms_per_poll", "ms per poll"),
        ("cpu_s_per_1000_points", "CPU s per 1000 points"),
    ]:
        print(f"{label:<28}{block[key]:>14.4g}{single[key]:>16.4g}")
    speedup = single["ms_per_poll"] / block["ms_per_poll"]
    print(f"requests: {single['requests_per_poll'] / block['requests_per_poll']:.1f}x fewer; poll {speedup:.1f}x faster")
    print(
        json.dumps(
            {
                "requests_block": block["requests_per_poll"],
                "requests_per_point": single["requests_per_poll"],
                "speedup": round(speedup, 2),
                "cpu_s_per_1000_points": round(block["cpu_s_per_1000_points"], 5),
                "cpu_s_per_1000_points_per_point_reads": round(single["cpu_s_per_1000_points"], 5),
            }
        )
    )


if __name__ == "__main__":
    main()
