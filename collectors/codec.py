"""Decode Modbus register words into numbers.

Registers are 16-bit words. A multi-register value is assembled high word first
(``word_order: big``, the Modbus convention) or low word first (``little``,
common on Schneider and Carlo Gavazzi meters); bytes inside a word are always
big-endian, as the protocol sends them.

>>> from inventory import DataType, RegisterSpec, WordOrder
>>> decode([0x4142, 0x0000], RegisterSpec(address=0, data_type=DataType.FLOAT32))
12.125
>>> decode([0x0001, 0x0000], RegisterSpec(address=0, data_type=DataType.UINT32, word_order=WordOrder.LITTLE))
1.0

A "no value" code declared on the spec, a NaN or an infinite result is never a
value: :func:`decode` raises :class:`DecodeError`, whose message starts with
``no value`` or ``not finite``.

>>> decode([0xFFFF], RegisterSpec(address=0, data_type=DataType.UINT16, no_value=(0xFFFF,)))
Traceback (most recent call last):
...
streams.errors.DecodeError: no value: 0xffff is a no-value code of this uint16 register
"""

from __future__ import annotations

import math
import struct

from inventory import DataType, RegisterSpec, WordOrder
from streams.errors import DecodeError

__all__ = ["decode", "encode"]

_STRUCT = {
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.INT64: ">q",
    DataType.UINT64: ">Q",
    DataType.FLOAT32: ">f",
    DataType.FLOAT64: ">d",
}


def decode(words: list[int] | tuple[int, ...], spec: RegisterSpec) -> float:
    """Decode the words of one value and apply scale and offset.

    Args:
        words: exactly ``spec.count`` register values (0..65535).
        spec: the register spec.

    Returns:
        ``raw * scale + offset``.

    Raises:
        DecodeError: wrong word count, a word out of range, or a NaN/inf float.
    """
    if len(words) != spec.count:
        msg = f"{spec.data_type.value} needs {spec.count} registers, got {len(words)}"
        raise DecodeError(msg)
    ordered = list(words) if spec.word_order is WordOrder.BIG else list(reversed(words))
    try:
        packed = struct.pack(f">{len(ordered)}H", *ordered)
    except struct.error as exc:
        msg = f"registers {list(words)} are not 16-bit words"
        raise DecodeError(msg) from exc
    if spec.no_value and int.from_bytes(packed, "big") in spec.no_value:
        msg = f"no value: {int.from_bytes(packed, 'big'):#x} is a no-value code of this {spec.data_type.value} register"
        raise DecodeError(msg)
    raw = struct.unpack(_STRUCT[spec.data_type], packed)[0]
    try:
        value = float(raw) * spec.scale + spec.offset
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        msg = f"not finite: {spec.data_type.value} registers {[f'{w:#06x}' for w in words]} decode to {value}"
        raise DecodeError(msg)
    return value


def encode(value: float, spec: RegisterSpec) -> list[int]:
    """Encode a value into register words: the inverse of :func:`decode`.

    Integer types are rounded to the nearest step of ``scale`` and wrap around
    at their width, as a meter's counter does.
    """
    raw = (value - spec.offset) / spec.scale
    fmt = _STRUCT[spec.data_type]
    if spec.data_type in (DataType.FLOAT32, DataType.FLOAT64):
        packed = struct.pack(fmt, raw)
    else:
        bits = spec.data_type.bits
        number = round(raw) % (1 << bits)
        if spec.data_type.value.startswith("int") and number >= 1 << (bits - 1):
            number -= 1 << bits
        packed = struct.pack(fmt, number)
    words = list(struct.unpack(f">{len(packed) // 2}H", packed))
    return words if spec.word_order is WordOrder.BIG else list(reversed(words))
