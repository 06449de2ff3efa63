"""The readings CSV read in blocks (issue 11): the row by row reader's arrays bit for bit, and its errors.

``read_readings_csv`` reads a plain file (no quote, LF or CRLF, three fields a
row, finite values) in blocks with str methods, and sends anything else to the
row by row (csv) reader from the start of the file. The block reading must
never accept what the row reader refuses, nor read a row otherwise.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from streams.errors import DecodeError
from streams.history import (
    CSV_MAX_LINE,
    PointSeries,
    _NotPlain,
    _point_series,
    _read_csv_rows,
    _read_plain_csv,
    read_readings_csv,
)

PARIS = ZoneInfo("Europe/Paris")
GOOD = "timestamp,point,value\n2026-01-05T00:00:00+00:00,a,1\n"
# Notations float() takes: exponents, blanks around, signs, -0, underscores, an Arabic-Indic digit (not hex: float refuses it).
NOTATIONS = ("1e3", " 12.5 ", "-0", "0", "1_000.5", "+5", "1E-3", ".5", "5.", "\t7", "\u0663", "0.1",
             "1.7976931348623157e308", "4.9e-324", "123456789012345678901234567890", "-2.5e-3", "00012", "1_0.0_1",
             "-1.5E+2", "3.14159265358979323846264338327950288")


def _rows_reader(path: Path) -> dict[str, PointSeries]:
    return _point_series(path, *_read_csv_rows(path))


def _plain_reader(path: Path) -> dict[str, PointSeries]:
    return _point_series(path, *_read_plain_csv(path))


def _assert_same(got: dict[str, PointSeries], want: dict[str, PointSeries]) -> None:
    assert list(got) == list(want)  # the same points, in the same order
    for point, series in want.items():
        assert got[point].times_s.dtype == got[point].values.dtype == np.float64
        assert got[point].times_s.tobytes() == series.times_s.tobytes(), point
        assert got[point].values.tobytes() == series.values.tobytes(), point


def _stamp(moment: datetime, form: int) -> str:
    """One instant written in one of the ways the exports give it (local offsets across a DST change, Z...)."""
    local = moment.astimezone(PARIS)
    return (local.isoformat(), moment.isoformat(), moment.isoformat().replace("+00:00", "Z"),
            local.isoformat(sep=" "), (local + timedelta(microseconds=500_000)).isoformat())[form]


def _varied_body(seed: int) -> str:
    """Rows of several points around the spring DST change, unsorted, some repeated (the same or another notation)."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible file, not cryptography
    points = ("gymnase-elec-energy", "station-meteo-temperature", "salle-\u00e9clairage", " spaced id ", "nul\x00id")
    start = datetime(2026, 3, 28, 20, tzinfo=UTC)  # 2026-03-29 02:00 in Paris is 03:00: +01:00 then +02:00
    lines = []
    for step in range(900):
        moment = start + timedelta(minutes=5 * step)
        for number, point in enumerate(points):
            if (step + number) % 7 == 0:
                continue  # not every point at every time
            value = rng.choice(NOTATIONS) if rng.random() < 0.3 else repr(round(rng.uniform(-50, 5e4), rng.randint(0, 6)))
            lines.append(f"{_stamp(moment, rng.randrange(5))},{point},{value}")
            if rng.random() < 0.05:  # a row repeated: the same text, or the same instant and number written otherwise
                again = value if rng.random() < 0.5 else repr(float(value))
                lines.append(f"{_stamp(moment, rng.randrange(4))},{point},{again}")
    # One reading written -0 and 0 (the same number): the first in the file is kept, its sign with it.
    lines += ["2026-03-29T00:00:00+00:00,zero,-0", "2026-03-29T01:00:00+01:00,zero,0.0"]
    rng.shuffle(lines)
    for _ in range(40):  # blank lines, runs of them
        lines.insert(rng.randrange(len(lines)), "" if rng.random() < 0.7 else "\n")
    return "\n".join(lines)


@pytest.mark.parametrize("bom", [False, True])
@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
@pytest.mark.parametrize("last_line_end", [False, True])
@pytest.mark.parametrize("header", ["timestamp,point,value", " timestamp , point ,value,unit"])
def test_the_block_reading_gives_the_row_readers_arrays_bit_for_bit(
    tmp_path: Path, bom: bool, line_end: str, last_line_end: bool, header: str
) -> None:
    text = header + "\n" + _varied_body(seed=11) + ("\n" if last_line_end else "")
    path = tmp_path / "r.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.replace("\n", line_end).encode())
    assert path.stat().st_size > 3 * CSV_MAX_LINE  # blocks of half that: rows cut across them
    plain = _plain_reader(path)  # no fallback: the block reading vouches for this file
    _assert_same(plain, _rows_reader(path))
    _assert_same(read_readings_csv(path), plain)
    assert plain["nul\x00id"].values.size
    assert plain[" spaced id "].values.size
    rows = sum(1 for line in text.split("\n")[1:] if line)
    assert 0 < rows - sum(s.values.size for s in plain.values()) < rows // 10  # the repeated rows kept once


def test_a_clash_is_named_the_same_whichever_reading(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(GOOD + "2026-01-05T00:15:00+00:00,a,2\n2026-01-05T01:00:00+01:00,a,-0\n")
    _read_plain_csv(path)  # plain: the clash is found after the reading, by the same code
    with pytest.raises(DecodeError, match=r"r\.csv:4: a at 2026-01-05T00:00:00\+00:00 is -0, but line 2 gives it 1"):
        read_readings_csv(path)


def test_of_rows_at_one_time_the_first_in_the_file_is_kept(tmp_path: Path) -> None:
    """-0 and 0 are one number: the reading kept is the file's first, its sign with it, however the rows mix."""
    rows = [f"2026-01-05T{m // 60:02d}:{m % 60:02d}:00+00:00,{p},{m}" for m in range(300) for p in ("a", "b", "c")]
    for at in range(len(rows), -1, -3):
        rows.insert(at, "2026-01-05T00:00:00Z,z," + ("-0" if at == 0 else "0"))
    path = tmp_path / "r.csv"
    path.write_text("timestamp,point,value\n" + "\n".join(rows) + "\n")
    plain = _plain_reader(path)
    _assert_same(plain, _rows_reader(path))
    assert plain["z"].values.size == 1
    assert np.signbit(plain["z"].values[0])


def _exact_error(path: Path) -> str:
    with pytest.raises(DecodeError) as caught:
        _rows_reader(path)
    return str(caught.value)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ('2026-01-05T00:15:00+00:00,a,"1,5"\n', r"r\.csv:3: value '1,5' of a is not a number"),
        ("2026-01-05T00:15:00+00:00,a\r,2\n", r"r\.csv:3: 2 column\(s\), expected 3"),  # a CR alone ends a line
        ("2026-01-05T00:15:00+00:00,a,2\r\r\n2026-01-05T00:30:00+00:00,a\n",
         r"r\.csv:5: 2 column\(s\), expected 3"),
        ("\n\n2026-01-05T00:15:00+00:00,a,2,3\n", r"r\.csv:5: 4 column\(s\), expected 3"),
        # a row too many fields, the next too few: in threes, the fields would make two good rows
        ("2026-01-05T00:15:00+00:00,a,2,2026-01-05T00:30:00+00:00\na,3\n", r"r\.csv:3: 4 column\(s\), expected 3"),
        ("2026-01-05T00:15:00+00:00,a\n2026-01-05T00:30:00+00:00,a,3,4\n", r"r\.csv:3: 2 column\(s\), expected 3"),
        (" \n", r"r\.csv:3: 1 column\(s\), expected 3"),
        ("2026-01-05T00:15:00+00:00,a,\n", r"r\.csv:3: a has an empty value"),
        ("2026-01-05T00:15:00+00:00,a,x\n", r"r\.csv:3: value 'x' of a is not a number"),
        ("2026-01-05T00:15:00+00:00,a,0x10\n", r"r\.csv:3: value '0x10' of a is not a number"),
        ("2026-01-05T00:15:00+00:00,a,nan\n", r"r\.csv:3: value 'nan' of a is not a finite number"),
        ("2026-01-05T00:15:00+00:00,a,-inf\n", r"r\.csv:3: value '-inf' of a is not a finite number"),
        ("2026-01-05T00:15:00+00:00,a,1e999\n", r"r\.csv:3: value '1e999' of a is not a finite number"),
        ("2026-01-05T00:15:00,a,2\n", r"r\.csv:3: timestamp .* has no UTC offset"),
        ("2026-01-05X00:15:00+00:00+,a,2\n", r"r\.csv:3: bad timestamp"),
        ("1970-01-01T00:00:00+00:00,a,2\n", r"r\.csv:3: timestamp .* is outside 2000-01-01"),
        ("2026-01-05T00:15:00+00:00, ,2\n", r"r\.csv:3: the row has no point id"),
        # a finite number too long for a line: the block reading alone would take it
        ("2026-01-05T00:15:00+00:00,a," + "0" * 70_000 + "\n", r"r\.csv:3: line longer than 65,536 characters"),
        ("2026-01-05T00:15:00+00:00,a,2\n" * 600 + "2026-01-05T00:15:00+00:00,a,2" + "0" * 70_000,
         r"r\.csv:603: line longer than 65,536 characters"),
    ],
)
def test_what_the_block_reading_cannot_vouch_for_gets_the_row_readers_error(
    tmp_path: Path, body: str, error: str
) -> None:
    path = tmp_path / "r.csv"
    path.write_text(GOOD + body, encoding="utf-8", newline="")
    with pytest.raises(_NotPlain):
        _read_plain_csv(path)
    with pytest.raises(DecodeError, match=error) as caught:
        read_readings_csv(path)
    assert str(caught.value) == _exact_error(path)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"\ntimestamp,point,value\n2026-01-05T00:00:00+00:00,a,1\n", r"r\.csv: the header must be"),
        (b"\r\n" + GOOD.encode(), r"r\.csv: the header must be"),
        (b"timestamp;point;value\n", r"r\.csv: the header must be"),
        (b"timestamp,point,value\rx\n2026-01-05T00:00:00+00:00,a,1\n", r"r\.csv:2: 1 column\(s\)"),  # a CR alone
        (GOOD.encode() + "2026-01-05T00:15:00+00:00,\u00e9,2\n".encode("latin-1"), r"r\.csv:3: not UTF-8 text"),
        (b"\xef\xbb\xbf\xef\xbb\xbf" + GOOD.encode(), r"r\.csv: the header must be"),  # one BOM is taken, not two
    ],
)
def test_a_header_or_bytes_the_block_reading_refuses_get_the_row_readers_error(
    tmp_path: Path, raw: bytes, error: str
) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(raw)
    with pytest.raises(_NotPlain):
        _read_plain_csv(path)
    with pytest.raises(DecodeError, match=error) as caught:
        read_readings_csv(path)
    assert str(caught.value) == _exact_error(path)


@pytest.mark.parametrize(
    "raw",
    [
        GOOD.replace(",a,", ',"a",') + '2026-01-05T00:15:00+00:00,"a",2\n',  # quoted fields
        GOOD.replace("\n", "\r") + "2026-01-05T00:15:00+00:00,a,2\r",  # an old Mac export: CR alone
        "timestamp,point,value," + "u" * 40_000 + "\n" + GOOD.split("\n", 1)[1],  # a header over a block
        "timestamp,point,value",  # a header alone, no line end
        'timestamp,point,value,"\n' + GOOD.split("\n", 1)[1],  # a quote left open: the rows are the header's
    ],
)
def test_a_valid_file_the_block_reading_refuses_is_read_row_by_row(tmp_path: Path, raw: str) -> None:
    path = tmp_path / "r.csv"
    path.write_text(raw, encoding="utf-8", newline="")
    with pytest.raises(_NotPlain):
        _read_plain_csv(path)
    _assert_same(read_readings_csv(path), _rows_reader(path))


# Hostile pieces put anywhere in a plain file: the block reading refuses the file or reads it as the rows do.
PIECES = st.sampled_from([
    '"', '"a"', "\r", "\r\n", ",", "\n", "\n\n", " ", "\t", "nan", "inf", "x", "1e999", "_", ".", "+", "-", "Z", "T",
    "+01:00", "1970-01-01T00:00:00+00:00", "2026-01-05T00:00:00", "\x00", "\ufeff", "\u2028", "\x85", "0" * 70_000,
    "2026-01-05T00:15:00+00:00,a,2\n", "2026-01-05T00:00:00Z,a,1\n", "2026-01-05T00:00:00+00:00,a,3\n",
])


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.tuples(st.integers(min_value=0, max_value=10_000), PIECES), max_size=4),
       latin1=st.booleans())
def test_the_block_reading_never_takes_what_the_row_reader_refuses(
    tmp_path: Path, cuts: list[tuple[int, str]], latin1: bool
) -> None:
    text = GOOD + "".join(f"2026-01-05T{h:02d}:{m:02d}:00+01:00,{p},{h * 60 + m}.25\n"
                          for h in range(1, 4) for m in range(0, 60, 15) for p in ("a", "b"))
    for at, piece in cuts:
        at %= len(text) + 1
        text = text[:at] + piece + text[at:]
    path = tmp_path / "r.csv"
    path.write_bytes(text.encode("latin-1" if latin1 and max(map(ord, text)) < 256 else "utf-8"))
    want = _outcome(_rows_reader, path)
    event("the row reader refuses the file" if isinstance(want, str) else "the row reader reads the file")
    try:
        columns, parsed = _read_plain_csv(path)
    except _NotPlain:
        event("the block reading refuses the file")
        return
    got = _outcome(lambda p: _point_series(p, columns, parsed), path)
    if isinstance(want, str):  # only a clash, found after the reading by the same code
        assert got == want, f"the block reading took a file the row reader refuses: {want}"
        assert want.endswith("keep one of the two rows")
    else:
        assert not isinstance(got, str), got
        _assert_same(got, want)


def _outcome(read: Callable[[Path], dict[str, PointSeries]], path: Path) -> dict[str, PointSeries] | str:
    try:
        return read(path)
    except DecodeError as exc:
        return str(exc)
