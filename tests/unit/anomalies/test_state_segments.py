"""The detection state's closed spans (28 days) in segment files written once (format 5), its head rewritten each pass."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from anomalies.detect import DetectConfig
from anomalies.features import PointSeries
from anomalies.incremental import FORMAT_VERSION, SEGMENT_SPAN, DetectorState, segment_dir
from anomalies.lifecycle import Track
from streams.errors import DecodeError

START = datetime(2026, 1, 5, tzinfo=UTC)
DAYS = 120


def _state(days: int = DAYS) -> DetectorState:
    """Three points over ``days``: a counter every 15 min, a sensor every 10 min with jitter (float64 times), the
    weather hourly; an open alert; the last hour processed at the end."""
    state = DetectorState.fresh(DetectConfig(models=False))
    rng = np.random.default_rng(3)
    t0, end = START.timestamp(), (START + timedelta(days=days)).timestamp()
    quarter = np.arange(t0, end, 900.0)
    sensor = np.arange(t0, end, 600.0) + rng.uniform(0, 1, size=int((end - t0) / 600.0)).round(6)
    hourly = np.arange(t0, end, 3600.0)
    state.readings = {
        "meter": PointSeries(quarter, np.cumsum(rng.uniform(0, 2, quarter.size))),
        "sensor": PointSeries(sensor, rng.normal(20, 1, sensor.size)),
        "weather": PointSeries(hourly, rng.normal(5, 3, hourly.size)),
        "silent": PointSeries(np.empty(0), np.empty(0)),
    }
    state.origin = START
    state.last_hour = START + timedelta(days=days)
    first = START + timedelta(days=2)
    state.tracks = {("b", "electricity", "night_baseload", ""): Track(first=first, last_active=first,
                                                                      active=timedelta(hours=4))}
    return state


def _next_hour(state: DetectorState) -> None:
    """One more hour of readings, as a pass merges them."""
    assert state.last_hour is not None
    t = state.last_hour.timestamp()
    for pid, s in state.readings.items():
        if s.times_s.size:
            new = np.arange(t, t + 3600.0, 900.0)
            state.readings[pid] = PointSeries(np.concatenate([s.times_s, new]),
                                              np.concatenate([s.values, np.full(new.size, 1.5)]))
    state.last_hour += timedelta(hours=1)


def _same(a: DetectorState, b: DetectorState) -> None:
    assert (a.last_hour, a.origin, a.tracks, a.config_digest) == (b.last_hour, b.origin, b.tracks, b.config_digest)
    assert sorted(a.readings) == sorted(b.readings)
    for pid, s in a.readings.items():
        assert s.times_s.tobytes() == b.readings[pid].times_s.tobytes(), pid
        assert s.values.tobytes() == b.readings[pid].values.tobytes(), pid


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in folder.iterdir()}


def test_closed_spans_are_written_once_and_the_head_is_what_a_pass_rewrites(tmp_path: Path) -> None:
    """A pass writes only its head (the readings after the last closed week, the lifecycle...): the segment files
    stay as they were, and the state reads back bit for bit, after each save and from another process's view."""
    path = tmp_path / "mairie.npz"
    state = _state()
    state.save(path)
    folder = segment_dir(path)
    segments = _files(folder)
    # The closed spans (ended a day before the last hour) are in segment files named by their span.
    closed = (START + timedelta(days=DAYS - 1)).timestamp() // SEGMENT_SPAN.total_seconds()
    assert len(segments) == closed - START.timestamp() // SEGMENT_SPAN.total_seconds()
    meta = json.loads(str(np.load(path, allow_pickle=False)["meta"]))
    assert meta["format_version"] == FORMAT_VERSION == 5
    assert sorted(e["name"] for e in meta["segments"]) == sorted(segments)
    total = sum(f.stat().st_size for f in folder.iterdir())
    assert path.stat().st_size < total / 2, "the head holds less than half of what the segments do"
    loaded = DetectorState.load(path)
    _same(loaded, state)
    for held in (state, loaded):  # the process that saved it, and one that read it
        _next_hour(held)
        before = path.stat().st_mtime_ns
        held.save(path)
        assert path.stat().st_mtime_ns != before
        assert _files(folder) == segments, "no segment written again, none deleted"
        _same(DetectorState.load(path), held)
    # A span whose readings changed (a late reading) is written again, under another name; the old one pruned.
    first_week = min(loaded.stored)
    s = loaded.readings["sensor"]
    late = first_week + 3600.0 + 0.5
    at = int(np.searchsorted(s.times_s, late))
    loaded.readings["sensor"] = PointSeries(np.insert(s.times_s, at, late), np.insert(s.values, at, 99.0))
    loaded.save(path)
    now = _files(folder)
    assert len(set(now) - set(segments)) == 1
    assert len(set(segments) - set(now)) == 1
    _same(DetectorState.load(path), loaded)
    # The history rolled past a span: its file is let go.
    loaded.readings = {pid: PointSeries(s.times_s[s.times_s >= first_week + SEGMENT_SPAN.total_seconds()],
                                        s.values[s.times_s >= first_week + SEGMENT_SPAN.total_seconds()])
                       for pid, s in loaded.readings.items()}
    loaded.save(path)
    assert len(_files(folder)) == len(now) - 1
    _same(DetectorState.load(path), loaded)


def test_a_save_not_put_in_place_leaves_the_state_whole_and_its_segments_are_pruned(tmp_path: Path) -> None:
    """The live service's ``.next``: written with the segments of the state in place, which stays readable; the
    segments only the ``.next`` names are kept while it exists, then pruned as orphans once it is gone."""
    path = tmp_path / "ecole.npz"
    state = _state()
    state.save(path)
    before = _files(segment_dir(path))
    nxt = path.with_name(path.name + ".next")
    later = _state(DAYS + SEGMENT_SPAN.days)  # one segment more
    later.save(nxt, segments=segment_dir(path), prune=False)
    assert set(before) < set(_files(segment_dir(path)))
    assert DetectorState.prune_segments(path) == []  # both heads' segments kept
    _same(DetectorState.load(path), state)
    _same(DetectorState.load(nxt), later)
    (segment_dir(path) / "20260101T00-20260108T00-0123456789abcdef.npz.tmp").write_bytes(b"half")
    nxt.unlink()  # the pass failed before its events were written: .next dropped
    gone = DetectorState.prune_segments(path)
    assert gone
    assert _files(segment_dir(path)) == before
    _same(DetectorState.load(path), state)
    with pytest.raises(ValueError, match="beside"):
        state.save(path, segments=tmp_path / "elsewhere" / "x.seg")


def test_a_corrupt_or_missing_segment_is_named(tmp_path: Path) -> None:
    path = tmp_path / "gymnase.npz"
    _state().save(path)
    first = sorted(segment_dir(path).iterdir())[0]
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped bit in the values: the archive's CRC
    first.write_bytes(bytes(data))
    with pytest.raises(DecodeError, match=first.name):
        DetectorState.load(path)
    first.unlink()
    with pytest.raises(DecodeError, match=first.name):
        DetectorState.load(path)
    assert DetectorState.peek_last_hour(path) == START + timedelta(days=DAYS)  # econome status reads the head only


def _npy(header: str, data: bytes) -> bytes:
    """An ``.npy`` file of a hand-made header (what no CRC check catches: the archive's CRC is right)."""
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1") + data


@pytest.mark.parametrize(
    "header",
    [
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776,), }",  # 8 TiB claimed: no allocation
        "{'descr': '<x', 'fortran_order': False, 'shape': (2,), }",  # no such dtype
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1,,2), }",  # no such shape
        "{'descr': '<f8', 'fortran_order': False, 'shape': (,), }",
    ],
)
def test_a_hand_made_array_header_is_refused_naming_its_file(tmp_path: Path, header: str) -> None:
    import zipfile

    path = tmp_path / "gymnase.npz"
    _state().save(path)
    first = sorted(segment_dir(path).iterdir())[0]
    with zipfile.ZipFile(first) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    name = next(iter(members))
    members[name] = _npy(header, b"\0" * 16)
    with zipfile.ZipFile(first, "w") as archive:
        for member, raw in members.items():
            archive.writestr(member, raw)
    with pytest.raises(DecodeError, match=first.name):
        DetectorState.load(path)


@pytest.mark.parametrize("damage", ["flipped", "empty"])
def test_a_damaged_segment_is_written_again_by_the_next_save_of_its_content(tmp_path: Path, damage: str) -> None:
    """Segment files are named by their content: after ``--reset-state`` (or a state moved aside and begun
    afresh) the same content comes back under the same name, and must not name the damaged file again."""
    path = tmp_path / "gymnase.npz"
    _state().save(path)
    first = sorted(segment_dir(path).iterdir())[0]
    if damage == "flipped":
        data = bytearray(first.read_bytes())
        data[len(data) // 2] ^= 0xFF
        first.write_bytes(bytes(data))
    else:
        first.write_bytes(b"")  # a disk full at the wrong moment, a copy cut short: EOFError inside numpy
    with pytest.raises(DecodeError, match=first.name):
        DetectorState.load(path)
    _state().save(path)  # what --reset-state then the same readings give
    _same(DetectorState.load(path), _state())


def test_a_damaged_prefix_file_is_written_again(tmp_path: Path) -> None:
    """The same for a prefix file (the first rows of a large head array, named by their content)."""
    folder = tmp_path / "gymnase.seg"
    rows = np.arange(40_000, dtype=np.float64).reshape(-1, 4)
    named = DetectorState.fresh()._write_prefixes(folder, {"memo": rows.copy()})
    file = folder / named["memo"]["file"]
    file.write_bytes(b"")
    DetectorState.fresh()._write_prefixes(folder, {"memo": rows.copy()})
    with np.load(file) as blob:
        assert blob["a"].tobytes() == rows[: named["memo"]["rows"]].tobytes()


def test_a_format_4_file_is_read_and_rewritten_in_segments(tmp_path: Path) -> None:
    """Upgrading: a format-4 file (every reading in it) loads as it was and its next save writes format 5."""
    state = _state()
    path = tmp_path / "piscine.npz"
    state.save(path)
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k[0] not in "rtv" or not k[1:].isdigit()}
    meta = json.loads(str(arrays["meta"]))
    meta["format_version"] = 4
    del meta["segments"], meta["segment_dir"]
    meta["ms_times"] = []
    for i, pid in enumerate(meta["points"]):
        arrays[f"t{i}"], arrays[f"v{i}"] = state.readings[pid].times_s, state.readings[pid].values
    arrays["meta"] = np.array(json.dumps(meta))
    old = tmp_path / "v4" / "piscine.npz"
    old.parent.mkdir()
    np.savez(old, **arrays)
    upgraded = DetectorState.load(old)
    _same(upgraded, state)
    assert upgraded.stored == {}
    upgraded.save(old)
    assert json.loads(str(np.load(old, allow_pickle=False)["meta"]))["format_version"] == 5
    assert len(list(segment_dir(old).iterdir())) == len(state.stored) > 0
    _same(DetectorState.load(old), state)
