"""Issue 12, the live pass's CPU: what was made cheaper gives what it gave before, bit for bit.

A steady hourly pass recomputes its rules over the kept history; this round
cut what they recomputed for nothing (docs/anomalies.md, "Live pass at
scale"). Each shortcut is checked here against the plain computation it
replaces: the rolling statistics against numpy's own ``nanmean``/``nanmax``
over each window; what the quality rules compute per building once (not per
sensor) against a fresh computation when an input array changes in place; the
state file's quick ``.npy`` reading against ``np.load``; the merge of a pass's
readings against sorting them all; a counter's hours against the set lookup;
the rules with a memo on frames under a day. The rule memo's one digest of its
unchanged days and ``sensor_drift``'s kept fits are in ``test_rule_memo.py``.
"""

from __future__ import annotations

import zipfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from anomalies.features import HourlyFrame, PointSeries, _counter_hours, schedule_masks
from anomalies.incremental import _Members, _merge
from anomalies.rules import (
    LostDailyCycleRule,
    RuleMemo,
    RulesConfig,
    SensorDriftRule,
    _long_runs,
    _per_building,
    _quantisation_step,
    _rolling_uncached,
    _runs,
)
from inventory import FrenchCalendar, Inventory, parse_inventory

from .one_building import OUTDOOR, one_building_yaml
from .test_rules_drift import HALL, HOUR_S, START, _autumn_progress, _outdoor, _times


def _windows_plain(values: np.ndarray, window: int, how: str) -> np.ndarray:
    """The rolling statistic as it was computed: numpy's nan-functions on each window with 3/4 of it known."""
    out = np.full(values.size, np.nan)
    if values.size < window:
        return out
    view = np.lib.stride_tricks.sliding_window_view(values, window)
    ok = np.isfinite(view).sum(axis=1) >= 0.75 * window
    rows = view[ok]
    with np.errstate(all="ignore"):
        if how == "range":
            stat = np.nanmax(rows, axis=1) - np.nanmin(rows, axis=1) if rows.size else np.empty(0)
        else:
            stat = np.nanmean(rows, axis=1) if rows.size else np.empty(0)
    out[window - 1 :][ok] = stat
    return out


@pytest.mark.parametrize("seed", range(8))
def test_rolling_means_and_ranges_are_numpy_s_bit_for_bit(seed: int) -> None:
    """Random series with gaps (up to half of them), infinite values, zeros (signed in half of them: the ranges
    are then taken on the windows' rows), repeated values, magnitudes from 1e-3 to 1e3 (and spread from 1e-9 to 1e9
    within a series: the means of 8 to 128 values are summed along the series in numpy's order for a row): every
    window's mean and range has the bits numpy's nanmean and nanmax - nanmin give it."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(100, 3000))
    values = np.round(rng.normal(15.0, 5.0, n), int(rng.integers(0, 3))) * 10.0 ** int(rng.integers(-3, 4))
    values[rng.random(n) < 0.5 * rng.random()] = np.nan
    values[rng.random(n) < 0.02] = -0.0 if seed % 2 else 0.0
    values[int(rng.integers(n))] = np.inf
    values[int(rng.integers(n))] = -np.inf
    if seed >= 4:
        # Magnitudes spread per value (1e-6 to 1e6): a sum in another order than numpy's would not keep its bits.
        values *= 10.0 ** rng.integers(-6, 7, n)
    for window in (1, 3, 8, 24, 25, 72, 128, 129):
        for how in ("mean", "range"):
            got = _rolling_uncached(values, window, how)
            assert got.tobytes() == _windows_plain(values, window, how).tobytes(), (window, how)


@pytest.fixture(scope="module")
def hall() -> tuple[Inventory, dict[str, PointSeries]]:
    inventory = parse_inventory(one_building_yaml(OUTDOOR + HALL, name="Piscine", usage="swimming_pool"))
    times = _times()
    rng = np.random.default_rng(43)
    hour = (times / HOUR_S) % 24
    indoor = 28.0 + 0.2 * np.cos(2.0 * np.pi * (hour - 16.0) / 24.0) + rng.normal(0, 0.1, times.size)
    indoor -= 6.0 * _autumn_progress(times)
    return inventory, {"b1-hall": PointSeries(times, indoor), "b1-outdoor": PointSeries(times, _outdoor(times, rng))}


def test_what_a_building_s_sensors_share_is_computed_again_when_an_input_changes_in_place(
    hall: tuple[Inventory, dict[str, PointSeries]],
) -> None:
    """``sensor_drift`` computes the building's weather, use and closure columns once for all its sensors and
    keeps them while its inputs are the same: an outdoor temperature array changed in place (the same object,
    other values) must give the finding a fresh computation gives, not the one kept."""
    inventory, readings = hall
    building = next(b for _, b in inventory.buildings())
    point = next(p for p in building.points if p.id == "b1-hall")
    hours = 24 * 150
    end_s = START.timestamp() + hours * HOUR_S
    cut = {pid: PointSeries(s.times_s[s.times_s <= end_s], s.values[s.times_s <= end_s]) for pid, s in readings.items()}
    frame = HourlyFrame.build(cut, counters=set(), start_s=START.timestamp(), hours=hours)
    calendar = FrenchCalendar(inventory.organisation.school_holiday_zone)
    open_frac, _ = schedule_masks(building, calendar, inventory.organisation.tz, frame.times_s, timedelta(hours=4))
    rule, config = SensorDriftRule(), RulesConfig()

    def deviation(outdoor: np.ndarray) -> np.ndarray:
        finding = rule.evaluate(building, point, cut["b1-hall"], frame, open_frac, config, outdoor_c=outdoor)
        assert finding is not None
        return finding.facts["deviation_k"]

    outdoor = frame.mean["b1-outdoor"].copy()
    before = deviation(outdoor)
    assert np.isfinite(before).any()
    outdoor[: hours // 2] -= 8.0  # a colder first half, in place
    changed = deviation(outdoor)
    fresh = deviation(outdoor.copy())  # another object with the same values
    assert changed.tobytes() == fresh.tobytes()
    assert changed.tobytes() != before.tobytes()  # the change counts


def _npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


def test_the_state_s_quick_array_reading_gives_numpy_s_arrays(tmp_path: Path) -> None:
    """The head, prefix and segment files are read member by member with a quick parse of the ``.npy`` header
    numpy writes: every kind of array the state holds (floats, integers, booleans, a 0-d JSON string, 2-D, empty,
    big-endian, Fortran order) comes back as ``np.load`` gives it (values, dtype, shape, writable)."""
    rng = np.random.default_rng(5)
    arrays = {
        "f": rng.normal(size=1000), "i": rng.integers(0, 10**12, size=(40, 2)), "b": rng.random(77) < 0.5,
        "u8": rng.integers(0, 255, size=(12, 16)).astype(np.uint8), "meta": np.array('{"format_version": 5, "é": 1}'),
        "empty": np.empty((0, 2)), "big": rng.normal(size=9).astype(">f8"), "fortran": np.asfortranarray(rng.normal(size=(5, 3))),
    }
    path = _npz(tmp_path / "a.npz", arrays)
    with np.load(path, allow_pickle=False) as data:
        members = _Members(data)
        assert sorted(members) == sorted(arrays)
        for name in arrays:
            mine, numpy_s = members[name], data[name]
            assert (mine.dtype, mine.shape) == (numpy_s.dtype, numpy_s.shape), name
            assert mine.tobytes() == numpy_s.tobytes(), name
            assert mine.flags.writeable
        with pytest.raises(KeyError):
            members["absent"]


def test_a_corrupt_member_is_refused_as_numpy_refuses_it(tmp_path: Path) -> None:
    """A flipped bit in a member's data fails the archive's CRC, as it does through ``np.load``."""
    path = _npz(tmp_path / "a.npz", {"f": np.arange(5000, dtype=np.float64)})
    raw = bytearray(path.read_bytes())
    raw[2000] ^= 0x01
    path.write_bytes(bytes(raw))
    with np.load(path, allow_pickle=False) as data, pytest.raises(zipfile.BadZipFile):
        _Members(data)["f"]


def _merge_plain(old: PointSeries, new: PointSeries) -> PointSeries:
    """Both series sorted together (stable: a time held keeps its first value), each time once: as it was done."""
    times = np.concatenate([old.times_s, new.times_s])
    values = np.concatenate([old.values, new.values])
    order = np.argsort(times, kind="stable")
    times, values = times[order], values[order]
    keep = np.concatenate([[True], times[1:] != times[:-1]])
    return PointSeries(times[keep], values[keep])


def test_merging_a_pass_s_readings_sorts_only_the_tail_and_gives_the_whole_sort() -> None:
    """A pass's readings (a re-read margin and the new hour) merged into the held ones: the held readings before
    the earliest new one keep their place, the rest is sorted with the new ones; the result is the sort of them
    all, value for value, also when the held ones are out of order or repeated (readings as a file gave them)
    or a time is not a number."""
    rng = np.random.default_rng(11)
    for case in range(600):
        held = np.sort(rng.integers(0, 300, int(rng.integers(1, 200))).astype(np.float64))
        if case % 3:
            held = np.unique(held)
        if case % 17 == 0:
            rng.shuffle(held)
        if case % 23 == 0:
            held[int(rng.integers(held.size))] = np.nan
        new = rng.integers(int(rng.integers(0, 300)), 320, int(rng.integers(1, 30))).astype(np.float64)
        if case % 29 == 0:
            new[int(rng.integers(new.size))] = np.nan
        old_series = PointSeries(held, rng.normal(size=held.size))
        new_series = PointSeries(new, rng.normal(size=new.size))
        got, expected = _merge(old_series, new_series), _merge_plain(old_series, new_series)
        assert got.times_s.tobytes() == expected.times_s.tobytes(), case
        assert got.values.tobytes() == expected.values.tobytes(), case


def _counter_hours_plain(t: np.ndarray, v: np.ndarray, bounds: np.ndarray, gap_s: float) -> np.ndarray:
    """A counter's hourly consumption as it was computed: a boundary read exactly found by ``np.isin``."""
    out = np.full(bounds.size - 1, np.nan)
    if t.size < 2:
        return out
    index = np.interp(bounds, t, v)
    j = np.searchsorted(t, bounds, side="right")
    jc = np.clip(j, 1, t.size - 1)
    ok = ((j > 0) & (j < t.size) & ((t[jc] - t[jc - 1]) <= gap_s)) | np.isin(bounds, t)
    diff = np.diff(index)
    valid = ok[:-1] & ok[1:] & (diff >= 0)
    out[valid] = diff[valid]
    return out


def test_a_counter_s_hours_are_those_of_the_set_lookup() -> None:
    """Counters read every 15 minutes (boundaries read exactly), at random times, with a time repeated, a frame
    starting before or after the readings: the hourly consumption is the one found with ``np.isin``."""
    rng = np.random.default_rng(3)
    for case in range(400):
        size = int(rng.integers(0, 160))
        t = np.sort(rng.choice(np.arange(0, 40 * 3600, 900), size=size, replace=False).astype(np.float64))
        if case % 5 == 0:
            t = np.sort(rng.uniform(0, 40 * 3600, size))
        if case % 7 == 0 and t.size > 3:
            t[2] = t[1]
        v = np.cumsum(rng.uniform(0, 2, t.size))
        bounds = float(rng.integers(-3, 3)) * 3600 + 3600.0 * np.arange(int(rng.integers(1, 45)) + 1)
        got = _counter_hours(t, v, bounds, 7200.0)
        assert got.tobytes() == _counter_hours_plain(t, v, bounds, 7200.0).tobytes(), case


@pytest.mark.parametrize("hours", [1, 23, 24, 25, 49])
def test_a_frame_of_less_than_a_few_days_is_judged_with_a_memo_as_without(
    hall: tuple[Inventory, dict[str, PointSeries]], hours: int,
) -> None:
    """The first hours of a state (under a day: no complete day for the memo's digests) and the first days:
    ``sensor_drift`` and ``lost_daily_cycle`` give, pass after pass with their memo, what they give without."""
    inventory, readings = hall
    building = next(b for _, b in inventory.buildings())
    point = next(p for p in building.points if p.id == "b1-hall")
    memo = RuleMemo()
    for length in range(max(1, hours - 2), hours + 1):
        end_s = START.timestamp() + length * HOUR_S
        cut = {pid: PointSeries(s.times_s[s.times_s <= end_s], s.values[s.times_s <= end_s])
               for pid, s in readings.items()}
        frame = HourlyFrame.build(cut, counters=set(), start_s=START.timestamp(), hours=length)
        for rule in (SensorDriftRule(), LostDailyCycleRule()):
            got = rule.evaluate(building, point, cut["b1-hall"], frame, np.ones(length), RulesConfig(),
                                outdoor_c=frame.mean["b1-outdoor"], memo=memo)
            plain = rule.evaluate(building, point, cut["b1-hall"], frame, np.ones(length), RulesConfig(),
                                  outdoor_c=frame.mean["b1-outdoor"])
            assert got is not None
            assert plain is not None
            assert got.state.tobytes() == plain.state.tobytes()


def test_a_building_s_shared_columns_are_kept_for_equal_inputs_and_read_only() -> None:
    """What a building's sensors share is computed once for inputs of equal values (numbers computed again, arrays
    copied: other objects), again for an input of other values, and cannot be changed by a caller."""
    computed: list[int] = []

    def compute() -> dict[str, np.ndarray]:
        computed.append(1)
        return {"twice": 2.0 * hours_open}

    hours_open = np.linspace(0.0, 1.0, 500)
    start = float(np.float64(1.7e9))
    first = _per_building("test-shared", (start, 500 * 24 // 24, hours_open), compute)
    again = _per_building("test-shared", (float(str(start)), int("500"), hours_open.copy()), compute)
    assert again is first
    assert len(computed) == 1
    with pytest.raises(ValueError, match="read-only"):
        first["twice"][0] = 1.0
    changed = hours_open.copy()
    changed[7] = -0.0 if changed[7] == 0.0 else 0.0
    _per_building("test-shared", (start, 500, changed), compute)
    assert len(computed) == 2


def _runs_plain(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``rules._runs`` as it was: the frame walked hour by hour."""
    since, length = np.zeros(mask.size, dtype=np.int64), np.zeros(mask.size, dtype=np.int64)
    h = 0
    while h < mask.size:
        if not mask[h]:
            h += 1
            continue
        start = h
        while h < mask.size and mask[h]:
            h += 1
        since[start:h] = np.arange(h - start)
        length[start:h] = h - start
    return since, length


@pytest.mark.parametrize("share", [0.0, 0.3, 0.9, 1.0])
def test_runs_of_hours_found_at_once_are_those_walked_hour_by_hour(share: float) -> None:
    """Hours since a run began and the run's length, for masks of every density, runs at both ends included."""
    rng = np.random.default_rng(int(share * 10))
    for size in (0, 1, 2, 500):
        mask = rng.random(size) < share
        for got, expected in zip(_runs(mask), _runs_plain(mask), strict=True):
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected)


def _quantisation_step_plain(values: np.ndarray, *, rising: bool = False) -> np.ndarray:
    """``rules._quantisation_step`` as it was (new arrays at each step)."""
    change = np.diff(values) if rising else np.abs(np.diff(values))
    change = np.where(np.isfinite(change) & (change > 1e-9), change, np.inf)
    return np.concatenate([[np.inf], np.minimum.accumulate(change)]) if change.size else np.array([np.inf])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frozen_sensor_s_steps_and_long_runs_are_those_of_every_run(seed: int) -> None:
    """``frozen_sensor``'s per-reading work done in place and from the repeated readings alone gives, bit for bit,
    the steps of the plain computation (NaN, infinities, resets of a counter) and the runs of two readings or more
    among every run's start and end."""
    rng = np.random.default_rng(seed)
    for size in (1, 2, 3, 1000):
        values = np.round(rng.normal(20.0, 0.3, size), 1)
        values[rng.random(size) < 0.3] = values[0]  # repeats, runs
        values[rng.random(size) < 0.02] = rng.choice([np.nan, np.inf, -np.inf], size=1)
        for rising in (False, True):
            got, plain = _quantisation_step(values, rising=rising), _quantisation_step_plain(values, rising=rising)
            assert got.tobytes() == plain.tobytes()
        change = np.concatenate([[True], values[1:] != values[:-1]])
        starts = np.flatnonzero(change)
        ends = np.concatenate([starts[1:], [size]]) - 1
        long = ends > starts
        first, last = _long_runs(values[1:] == values[:-1])
        np.testing.assert_array_equal(first, starts[long])
        np.testing.assert_array_equal(last, ends[long])
