from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors.codec import decode, encode
from inventory import DataType, RegisterSpec, WordOrder
from streams.errors import DecodeError

# (register words, data type, word order) -> expected value; values worked out by hand.
TABLE = [
    ([0x0001], DataType.INT16, WordOrder.BIG, 1),
    ([0xFFFF], DataType.INT16, WordOrder.BIG, -1),
    ([0xFFFF], DataType.UINT16, WordOrder.BIG, 65535),
    ([0x8000], DataType.INT16, WordOrder.LITTLE, -32768),
    ([0x0001, 0x0000], DataType.UINT32, WordOrder.BIG, 65536),
    ([0x0001, 0x0000], DataType.UINT32, WordOrder.LITTLE, 1),
    ([0xFFFF, 0xFFFE], DataType.INT32, WordOrder.BIG, -2),
    ([0xFFFE, 0xFFFF], DataType.INT32, WordOrder.LITTLE, -2),
    ([0x0000, 0x0000, 0x0001, 0x0000], DataType.UINT64, WordOrder.BIG, 65536),
    ([0x0000, 0x0000, 0x0001, 0x0000], DataType.UINT64, WordOrder.LITTLE, 1 << 32),
    ([0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF], DataType.INT64, WordOrder.BIG, -1),
    ([0x0000, 0x0000, 0x0000, 0x8000], DataType.INT64, WordOrder.LITTLE, -(1 << 63)),
    ([0x4142, 0x0000], DataType.FLOAT32, WordOrder.BIG, 12.125),
    ([0x0000, 0x4142], DataType.FLOAT32, WordOrder.LITTLE, 12.125),
    ([0xC0A0, 0x0000], DataType.FLOAT32, WordOrder.BIG, -5.0),
    ([0x4029, 0x0000, 0x0000, 0x0000], DataType.FLOAT64, WordOrder.BIG, 12.5),
    ([0x0000, 0x0000, 0x0000, 0x4029], DataType.FLOAT64, WordOrder.LITTLE, 12.5),
]


@pytest.mark.parametrize(("words", "data_type", "order", "expected"), TABLE)
def test_decode_table(words: list[int], data_type: DataType, order: WordOrder, expected: float) -> None:
    spec = RegisterSpec(address=0, data_type=data_type, word_order=order)
    assert decode(words, spec) == expected
    assert encode(expected, spec) == words


def test_scale_and_offset() -> None:
    spec = RegisterSpec(address=0, data_type=DataType.INT16, scale=0.1, offset=-40)
    assert decode([215], spec) == pytest.approx(-18.5)
    assert encode(-18.5, spec) == [215]


def test_wrong_count_and_nan() -> None:
    with pytest.raises(DecodeError, match="needs 2 registers, got 1"):
        decode([1], RegisterSpec(address=0, data_type=DataType.UINT32))
    with pytest.raises(DecodeError, match="decode to nan"):
        decode([0x7FC0, 0x0000], RegisterSpec(address=0, data_type=DataType.FLOAT32))


def test_counter_wraps_at_its_width() -> None:
    spec = RegisterSpec(address=0, data_type=DataType.UINT32)
    assert decode(encode(2**32 + 5, spec), spec) == 5


@given(
    data_type=st.sampled_from([t for t in DataType if not t.value.startswith("float")]),
    order=st.sampled_from(list(WordOrder)),
    # Readings are floats: counters are exact up to 2**53 (9e15 Wh), far beyond any meter.
    raw=st.integers(min_value=-(2**53), max_value=2**53),
)
def test_integer_round_trip(data_type: DataType, order: WordOrder, raw: int) -> None:
    spec = RegisterSpec(address=0, data_type=data_type, word_order=order)
    bits = data_type.bits
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if data_type.value.startswith("int") else (0, (1 << bits) - 1)
    value = min(max(raw, lo), hi)
    words = encode(value, spec)
    assert len(words) == spec.count
    assert all(0 <= w <= 0xFFFF for w in words)
    assert decode(words, spec) == value


@given(order=st.sampled_from(list(WordOrder)), value=st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_float32_round_trip(order: WordOrder, value: float) -> None:
    spec = RegisterSpec(address=0, data_type=DataType.FLOAT32, word_order=order)
    out = decode(encode(value, spec), spec)
    assert out == value or (math.isclose(out, value) and value != 0)


# Issue 10: (words, data type, word order, no-value codes) -> refused, whatever the scale.
NO_VALUE_TABLE = [
    ([0xFFFF], DataType.UINT16, WordOrder.BIG, (0xFFFF,)),
    ([0x8000], DataType.INT16, WordOrder.BIG, (0x8000,)),
    ([0xFFFF, 0xFFFF], DataType.UINT32, WordOrder.BIG, (0xFFFFFFFF,)),
    ([0x7FFF, 0xFFFF], DataType.INT32, WordOrder.BIG, (0x7FFFFFFF,)),
    ([0xFFFF, 0x7FFF], DataType.INT32, WordOrder.LITTLE, (0x7FFFFFFF,)),
    ([0x8000, 0, 0, 0], DataType.INT64, WordOrder.BIG, (0x8000000000000000,)),
    ([0x7FC0, 0x0000], DataType.FLOAT32, WordOrder.BIG, (0x7FC00000,)),
]


@pytest.mark.parametrize(("words", "data_type", "order", "codes"), NO_VALUE_TABLE)
def test_no_value_codes_are_refused(words: list[int], data_type: DataType, order: WordOrder, codes: tuple[int, ...]) -> None:
    spec = RegisterSpec(address=0, data_type=data_type, word_order=order, scale=0.1, no_value=codes)
    with pytest.raises(DecodeError, match=rf"^no value: {codes[0]:#x} is a no-value code of this {data_type.value}"):
        decode(words, spec)
    # The same words without the declaration decode (or, for the NaN, are refused as not finite).
    plain = spec.model_copy(update={"no_value": None})
    if data_type is DataType.FLOAT32:
        with pytest.raises(DecodeError, match=r"^not finite"):
            decode(words, plain)
    else:
        assert math.isfinite(decode(words, plain))


@pytest.mark.parametrize("words", [[0x7F80, 0x0000], [0xFF80, 0x0000], [0xFFC0, 0x0000]])
def test_inf_and_nan_floats_are_refused(words: list[int]) -> None:
    with pytest.raises(DecodeError, match=r"^not finite"):
        decode(words, RegisterSpec(address=0, data_type=DataType.FLOAT32))


def test_a_large_float64_times_scale_is_refused() -> None:
    spec = RegisterSpec(address=0, data_type=DataType.FLOAT64, scale=1e10)
    with pytest.raises(DecodeError, match="decode to inf"):
        decode(encode(1e300, RegisterSpec(address=0, data_type=DataType.FLOAT64)), spec)
