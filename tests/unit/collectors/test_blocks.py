from __future__ import annotations

from collectors.modbus import plan_blocks
from inventory import DataType, Point, Quantity, RegisterSpec, RegisterType, Usage


def _point(i: int) -> Point:
    return Point(
        id=f"p{i}",
        quantity=Quantity.ACTIVE_POWER,
        unit="W",
        usage=Usage.GENERAL,
        modbus={"gateway": "gw", "unit": 1, "register": {"address": 0}},  # type: ignore[arg-type]
    )


def _spec(address: int, data_type: DataType = DataType.FLOAT32, rt: RegisterType = RegisterType.INPUT) -> RegisterSpec:
    return RegisterSpec(address=address, data_type=data_type, register_type=rt)


def test_contiguous_and_small_gaps_make_one_block() -> None:
    items = [(1, _point(i), _spec(a)) for i, a in enumerate([0, 2, 4, 10, 12])]
    blocks = plan_blocks(items, max_registers=125, max_gap=8)
    assert [(b.address, b.count) for b in blocks] == [(0, 14)]


def test_gap_too_large_splits() -> None:
    items = [(1, _point(i), _spec(a)) for i, a in enumerate([0, 2, 0x48, 0x156])]
    blocks = plan_blocks(items, max_registers=125, max_gap=8)
    assert [(b.address, b.count) for b in blocks] == [(0, 4), (0x48, 2), (0x156, 2)]


def test_max_registers_splits() -> None:
    items = [(1, _point(i), _spec(2 * i)) for i in range(100)]
    blocks = plan_blocks(items, max_registers=125, max_gap=0)
    assert [b.count for b in blocks] == [124, 76]
    assert sum(len(b.items) for b in blocks) == 100


def test_units_and_tables_are_separate() -> None:
    items = [
        (1, _point(0), _spec(0)),
        (2, _point(1), _spec(0)),
        (1, _point(2), _spec(2, rt=RegisterType.HOLDING)),
    ]
    blocks = plan_blocks(items, max_registers=125, max_gap=8)
    assert [(b.unit, b.register_type) for b in blocks] == [
        (1, RegisterType.HOLDING),
        (1, RegisterType.INPUT),
        (2, RegisterType.INPUT),
    ]
