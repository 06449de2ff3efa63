"""The delivery log's identity and the ``econome-seq`` header that carries its sequence numbers to the workers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.buffer import DeliveryLog
from streams.errors import DecodeError
from streams.faust_runner import LogSequence, decode_sequence, encode_sequence
from streams.record import Reading


def test_a_log_keeps_its_identity_and_a_new_log_gets_another(tmp_path: Path) -> None:
    log = DeliveryLog(tmp_path / "a.sqlite")
    log.append([Reading("p", datetime(2026, 1, 5, tzinfo=UTC), 1.0, "kWh")])
    first = log.log_id
    log.close()
    again = DeliveryLog(tmp_path / "a.sqlite")
    assert again.log_id == first
    assert again.readings_after(0, 10)[0][0] == 1
    again.close()
    other = DeliveryLog(tmp_path / "b.sqlite")
    assert other.log_id != first
    other.close()


@given(st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=50, unique=True))
def test_the_header_gives_back_the_numbers(numbers: list[int]) -> None:
    seqs = sorted(numbers)
    assert decode_sequence(encode_sequence(LogSequence("log", seqs))) == LogSequence("log", seqs)


@pytest.mark.parametrize("header", [b"", b"[1, 2]", b'{"log": 1, "seqs": [1]}', b'{"log": "a", "seqs": []}',
                                    b'{"log": "a", "seqs": [3, 0]}', b'{"log": "a"}'])
def test_a_malformed_header_is_a_decode_error(header: bytes) -> None:
    with pytest.raises(DecodeError, match="econome-seq header"):
        decode_sequence(header)
