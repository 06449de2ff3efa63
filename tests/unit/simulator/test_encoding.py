from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client import ModbusTcpClient

from inventory import DataType, RegisterSpec, WordOrder
from simulator.modbus_server import encode_value

DT = ModbusTcpClient.DATATYPE


@pytest.mark.parametrize(
    ("value", "spec", "words"),
    [
        (1234.5, RegisterSpec(address=0, data_type=DataType.FLOAT32), [0x449A, 0x5000]),
        (1234.5, RegisterSpec(address=0, data_type=DataType.FLOAT32, word_order=WordOrder.LITTLE), [0x5000, 0x449A]),
        (70000, RegisterSpec(address=0, data_type=DataType.UINT32), [0x0001, 0x1170]),
        (-2, RegisterSpec(address=0, data_type=DataType.INT16), [0xFFFE]),
        (21.5, RegisterSpec(address=0, data_type=DataType.INT16, scale=0.1), [215]),
        (2**32 + 3, RegisterSpec(address=0, data_type=DataType.UINT32), [0, 3]),  # counter wraps
        (12.34, RegisterSpec(address=0, data_type=DataType.UINT32, scale=0.01), [0, 1234]),
        (5_000_000_123, RegisterSpec(address=0, data_type=DataType.INT64), [0, 1, 0x2A05, 0xF27B]),
        (10.0, RegisterSpec(address=0, data_type=DataType.UINT16, offset=5.0), [5]),
    ],
)
def test_encode_table(value: float, spec: RegisterSpec, words: list[int]) -> None:
    assert encode_value(value, spec) == words


@given(
    st.integers(min_value=0, max_value=2**32 - 1),
    st.sampled_from([0.001, 0.01, 1.0]),
    st.sampled_from(list(WordOrder)),
)
def test_uint32_round_trip(raw: int, scale: float, order: WordOrder) -> None:
    spec = RegisterSpec(address=0, data_type=DataType.UINT32, scale=scale, word_order=order)
    words = encode_value(raw * scale, spec)
    assert ModbusTcpClient.convert_from_registers(words, DT.UINT32, word_order=order.value) == raw


@given(st.floats(min_value=-1e30, max_value=1e30, allow_nan=False))
def test_float32_round_trip(value: float) -> None:
    spec = RegisterSpec(address=0, data_type=DataType.FLOAT32)
    decoded = ModbusTcpClient.convert_from_registers(encode_value(value, spec), DT.FLOAT32)
    assert isinstance(decoded, float)
    assert math.isclose(decoded, value, rel_tol=1e-6, abs_tol=1e-38)


@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_int64_round_trip(raw: int) -> None:
    # Values are floats in the model: int64 registers are exact up to 2**53 (9e15 Wh).
    spec = RegisterSpec(address=0, data_type=DataType.INT64)
    assert ModbusTcpClient.convert_from_registers(encode_value(raw, spec), DT.INT64) == raw
