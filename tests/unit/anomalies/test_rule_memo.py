"""Issue 12, part R: a rule judging only the new hours says what it says over the whole history.

An hourly pass runs the rules over the frame from its window start to the new
hour; :class:`anomalies.rules.RuleMemo` keeps what ``sensor_drift`` computed
of the complete days on the earlier pass, so the pass judges only the days
whose inputs changed (the new hour's day, or the day of a late reading) and
those after them. The finding must be the one the rule gives without a memo,
hour by hour, value for value: the pool hall of ``test_rules_drift`` whose
sensor drifts 6 K over three weeks (days flagged, left out of later
references, so a day's judgement depends on every day before it).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from anomalies.detect import DetectConfig, building_findings
from anomalies.features import BuildingHours, HourlyFrame, PointSeries, schedule_masks
from anomalies.rules import (
    MEMO_FORMAT_VERSION,
    Finding,
    LostDailyCycleRule,
    RuleMemo,
    RulesConfig,
    SensorDriftRule,
    WaterLeakRule,
)
from inventory import FrenchCalendar, Inventory, Usage, parse_inventory
from streams.errors import DecodeError

from .one_building import OUTDOOR, one_building_yaml
from .test_rules import INVENTORY as LEAK_INVENTORY
from .test_rules import START as LEAK_START
from .test_rules_drift import DRIFT_FROM, EVERY_DAY, HALL, HOUR_S, START, _autumn_progress, _outdoor, _times
from .test_rules_instrumentation import INDOOR, _indoor, _open
from .test_rules_instrumentation import _outdoor as _school_outdoor

HEATING_GAS = """          - {id: b1-heat, quantity: gas_volume, unit: m3, usage: heating, cumulative: true,
             conversion_kwh_per_unit: 10.0, mqtt: {topic: t/b1/heat}}
"""

ONSET_H = int((DRIFT_FROM + timedelta(days=18) - START) / timedelta(hours=1))  # the drift found since hours


@pytest.fixture(scope="module")
def hall() -> tuple[Inventory, dict[str, PointSeries]]:
    inventory = parse_inventory(one_building_yaml(OUTDOOR + HALL, name="Piscine", usage="swimming_pool",
                                                  schedule=EVERY_DAY))
    times = _times()
    rng = np.random.default_rng(41)
    outdoor = _outdoor(times, rng)
    hour = (times / HOUR_S) % 24
    indoor = 28.0 + 0.2 * np.cos(2.0 * np.pi * (hour - 16.0) / 24.0) + rng.normal(0, 0.1, times.size)
    indoor -= 6.0 * _autumn_progress(times)
    return inventory, {"b1-hall": PointSeries(times, indoor), "b1-outdoor": PointSeries(times, outdoor)}


def _drift(inventory: Inventory, readings: dict[str, PointSeries], hours: int,
           memo: RuleMemo | None) -> tuple[np.ndarray, np.ndarray]:
    """The rule over the frame from START, ``hours`` long, with the readings up to its end (state, deviation)."""
    end_s = START.timestamp() + hours * HOUR_S
    cut = {pid: PointSeries(s.times_s[s.times_s <= end_s], s.values[s.times_s <= end_s]) for pid, s in readings.items()}
    frame = HourlyFrame.build(cut, counters=set(), start_s=START.timestamp(), hours=hours)
    building = next(b for _, b in inventory.buildings())
    point = next(p for p in building.points if p.id == "b1-hall")
    calendar = FrenchCalendar(inventory.organisation.school_holiday_zone)
    open_frac, _ = schedule_masks(building, calendar, inventory.organisation.tz, frame.times_s, timedelta(hours=4))
    finding = SensorDriftRule().evaluate(building, point, cut["b1-hall"], frame, open_frac, RulesConfig(),
                                         outdoor_c=frame.mean["b1-outdoor"], memo=memo)
    assert finding is not None
    return finding.state, finding.facts["deviation_k"]


def test_drift_judging_only_the_new_hours_gives_the_findings_over_the_whole_history(
    hall: tuple[Inventory, dict[str, PointSeries]],
) -> None:
    """Hour after hour across a day boundary, in the drift: the same states and deviations as without a memo,
    each pass judging one day (the new hour's) instead of every day since the frame's start."""
    inventory, readings = hall
    memo = RuleMemo()
    first = ONSET_H - 3  # 3 hours before midnight UTC
    _drift(inventory, readings, first, memo)
    assert memo.recomputed_days == first // 24  # the first pass judges every complete day
    for hours in range(first + 1, first + 6):
        before = memo.recomputed_days
        state, deviation = _drift(inventory, readings, hours, memo)
        expected_state, expected_deviation = _drift(inventory, readings, hours, None)
        np.testing.assert_array_equal(state, expected_state)
        np.testing.assert_array_equal(deviation, expected_deviation)
        assert memo.recomputed_days - before == (1 if hours % 24 == 0 else 0)  # a day completed: judged once
    assert (state == 1.0).any()  # the drift is found (the memo carries findings, not only silence)
    assert np.nanmin(deviation) < -4.0


def test_a_late_reading_in_a_past_day_rejudges_that_day_and_the_days_after(
    hall: tuple[Inventory, dict[str, PointSeries]],
) -> None:
    """The memo holds a digest of each day's inputs: readings arriving late for a past day (here a day's
    sensor readings shifted 3 K, as a late batch of another value would) make it judge again from that day
    on, so the finding is still the rule's over the whole history."""
    inventory, readings = hall
    memo = RuleMemo()
    _drift(inventory, readings, ONSET_H, memo)
    late_day = (ONSET_H // 24) - 20
    hall_series = readings["b1-hall"]
    changed = hall_series.values.copy()
    in_day = (hall_series.times_s >= START.timestamp() + late_day * 86_400.0) & (
        hall_series.times_s < START.timestamp() + (late_day + 1) * 86_400.0)
    changed[in_day] -= 3.0
    late = {**readings, "b1-hall": PointSeries(hall_series.times_s, changed)}
    before = memo.recomputed_days
    state, deviation = _drift(inventory, late, ONSET_H + 1, memo)
    expected_state, expected_deviation = _drift(inventory, late, ONSET_H + 1, None)
    np.testing.assert_array_equal(state, expected_state)
    np.testing.assert_array_equal(deviation, expected_deviation)
    # The day itself and every day since (the days before it are not judged again).
    assert memo.recomputed_days - before == (ONSET_H + 1) // 24 - late_day
    _, unchanged_deviation = _drift(inventory, readings, ONSET_H + 1, None)
    assert not np.array_equal(deviation, unchanged_deviation, equal_nan=True)  # the late readings count


# --- lost_daily_cycle: a school's sensor stuck with noise, its gas heater still setting back ---------------------


SCHOOL_START = datetime(2025, 11, 3, tzinfo=UTC)
FLAT_FROM = datetime(2025, 12, 1, 10, tzinfo=UTC)
FLAT_UNTIL = datetime(2025, 12, 6, tzinfo=UTC)


@pytest.fixture(scope="module")
def school() -> tuple[Inventory, dict[str, PointSeries]]:
    inventory = parse_inventory(one_building_yaml(OUTDOOR + INDOOR + HEATING_GAS))
    times = SCHOOL_START.timestamp() + HOUR_S * np.arange(24 * 40 + 1, dtype=np.float64)
    rng = np.random.default_rng(8)
    use = _open(inventory, times)
    indoor = _indoor(times, use, rng)
    flat = (times >= FLAT_FROM.timestamp()) & (times < FLAT_UNTIL.timestamp())
    indoor[flat] = 18.3 + rng.normal(0, 0.05, int(flat.sum()))  # stuck, with a little noise: not frozen
    outdoor = _school_outdoor(times, rng)
    hdh = np.maximum(0.0, 16.0 - outdoor[:-1])
    gas = np.where(use[:-1] > 0, 0.6 * hdh + 1.0, 0.15 * hdh) + 0.1 * rng.random(times.size - 1)  # set back at night
    return inventory, {
        "b1-indoor": PointSeries(times, indoor), "b1-outdoor": PointSeries(times, outdoor),
        "b1-heat": PointSeries(times, np.concatenate([[100.0], 100.0 + np.cumsum(gas / 10.0)])),
    }


def _cycle(inventory: Inventory, readings: dict[str, PointSeries], hours: int, memo: RuleMemo | None,
           start_day: int = 0) -> Finding:
    """The rule over the frame from SCHOOL_START (or ``start_day`` days later) to ``hours`` after SCHOOL_START,
    with the readings up to its end."""
    end_s = SCHOOL_START.timestamp() + hours * HOUR_S
    start_s = SCHOOL_START.timestamp() + start_day * 86_400.0
    cut = {pid: PointSeries(s.times_s[s.times_s <= end_s], s.values[s.times_s <= end_s]) for pid, s in readings.items()}
    frame = HourlyFrame.build(cut, counters={"b1-heat"}, start_s=start_s, hours=hours - 24 * start_day)
    building = next(b for _, b in inventory.buildings())
    point = next(p for p in building.points if p.id == "b1-indoor")
    calendar = FrenchCalendar(inventory.organisation.school_holiday_zone)
    open_frac, _ = schedule_masks(building, calendar, inventory.organisation.tz, frame.times_s, timedelta(hours=4))
    finding = LostDailyCycleRule().evaluate(building, point, cut["b1-indoor"], frame, open_frac, RulesConfig(),
                                            outdoor_c=frame.mean["b1-outdoor"], memo=memo)
    assert finding is not None
    return finding


def test_lost_cycle_judging_only_the_new_hours_gives_the_findings_over_the_whole_history(
    school: tuple[Inventory, dict[str, PointSeries]],
) -> None:
    """Hour after hour across a day boundary while the sensor is flat: the same states and ranges as without a
    memo (its flat days flagged, left out of later references), each pass judging the new hour's day only."""
    inventory, readings = school
    memo = RuleMemo()
    first = int((datetime(2025, 12, 4, tzinfo=UTC) - SCHOOL_START) / timedelta(hours=1)) - 3
    _cycle(inventory, readings, first, memo)
    assert memo.recomputed_days == first // 24
    for hours in range(first + 1, first + 6):
        before = memo.recomputed_days
        found = _cycle(inventory, readings, hours, memo)
        expected = _cycle(inventory, readings, hours, None)
        np.testing.assert_array_equal(found.state, expected.state)
        assert found.facts.keys() == expected.facts.keys()
        for name in found.facts:
            np.testing.assert_array_equal(found.facts[name], expected.facts[name])
        assert memo.recomputed_days - before == (1 if hours % 24 == 0 else 0)
    assert (found.state == 1.0).any()  # the flat sensor is found lost: the memo carries the flagged days
    # A late reading on the first flat day: judged again from that day on, still the rule's finding.
    late_day = int((FLAT_FROM - SCHOOL_START) / timedelta(days=1))
    shifted = readings["b1-indoor"].values.copy()
    shifted[int(late_day * 24 + 12)] += 2.0
    late = {**readings, "b1-indoor": PointSeries(readings["b1-indoor"].times_s, shifted)}
    before = memo.recomputed_days
    found = _cycle(inventory, late, first + 6, memo)
    np.testing.assert_array_equal(found.state, _cycle(inventory, late, first + 6, None).state)
    assert memo.recomputed_days - before == (first + 6) // 24 - late_day
    # The frame's start moved (every roll_every, a live pass's history moves on): every day is judged again.
    before = memo.recomputed_days
    moved = _cycle(inventory, late, first + 7, memo, start_day=1)
    np.testing.assert_array_equal(moved.state, _cycle(inventory, late, first + 7, None, start_day=1).state)
    assert memo.recomputed_days - before == (first + 7) // 24 - 1


# --- the energy rules' causal percentiles, through building_findings ------------------------------------------


ELEC = """          - {id: b1-elec, quantity: active_energy, unit: kWh, usage: general, cumulative: true,
             mqtt: {topic: t/b1/elec}}
"""
LIGHTS = """          - {id: b1-lights, quantity: active_energy, unit: kWh, usage: lighting, cumulative: true,
             mqtt: {topic: t/b1/lights}}
"""


def _whole_school() -> tuple[Inventory, dict[str, PointSeries]]:
    """The school of the test below, its readings."""
    inventory = parse_inventory(one_building_yaml(OUTDOOR + INDOOR + HEATING_GAS + LIGHTS + ELEC))
    times = SCHOOL_START.timestamp() + HOUR_S * np.arange(24 * 56 + 1, dtype=np.float64)
    rng = np.random.default_rng(9)
    use = _open(inventory, times)
    outdoor = _school_outdoor(times, rng)
    hdh = np.maximum(0.0, 16.0 - outdoor[:-1])
    night = (use[:-1] == 0)
    heat_kept = night & (times[:-1] >= datetime(2025, 12, 8, tzinfo=UTC).timestamp()) & (
        times[:-1] < datetime(2025, 12, 12, tzinfo=UTC).timestamp())
    gas = np.where((use[:-1] > 0) | heat_kept, 0.6 * hdh + 1.0, 0.15 * hdh) + 0.1 * rng.random(times.size - 1)
    lamps_left = night & (times[:-1] >= datetime(2025, 12, 1, tzinfo=UTC).timestamp()) & (
        times[:-1] < datetime(2025, 12, 5, tzinfo=UTC).timestamp())
    lights = np.where((use[:-1] == 1.0) | lamps_left, 3.0, 0.2) + 0.05 * rng.random(times.size - 1)  # open only
    base = np.where(times[:-1] >= datetime(2025, 12, 14, tzinfo=UTC).timestamp(), 1.5, 1.0)
    elec = base + lights + np.where(use[:-1] == 1.0, 4.0, 0.0) + 0.1 * rng.random(times.size - 1)
    readings = {
        "b1-indoor": PointSeries(times, _indoor(times, use, rng)), "b1-outdoor": PointSeries(times, outdoor),
        "b1-heat": PointSeries(times, np.concatenate([[100.0], 100.0 + np.cumsum(gas / 10.0)])),
        "b1-lights": PointSeries(times, np.concatenate([[10.0], 10.0 + np.cumsum(lights)])),
        "b1-elec": PointSeries(times, np.concatenate([[50.0], 50.0 + np.cumsum(elec)])),
    }
    return inventory, readings


def _findings(inventory: Inventory, readings: dict[str, PointSeries], hours: int, memo: RuleMemo | None) -> list[Finding]:
    """Every rule's findings on the frame from SCHOOL_START, ``hours`` long, with the readings up to its end."""
    building = next(b for _, b in inventory.buildings())
    calendar = FrenchCalendar(inventory.organisation.school_holiday_zone)
    end_s = SCHOOL_START.timestamp() + hours * HOUR_S
    cut = {pid: PointSeries(s.times_s[s.times_s <= end_s], s.values[s.times_s <= end_s])
           for pid, s in readings.items()}
    frame = HourlyFrame.build(cut, counters={"b1-heat", "b1-lights", "b1-elec"}, start_s=SCHOOL_START.timestamp(),
                              hours=hours)
    return building_findings(inventory, building, cut, frame, calendar, DetectConfig(models=False), memo=memo).rules


def test_every_rule_of_a_building_with_a_memo_gives_the_findings_without_it() -> None:
    """A school with a gas heater, an indoor sensor, a lighting meter and a main electricity meter, its lamps
    left on through the nights of one week, its heating kept on through another's, its night base load up by
    half from mid-December: every finding of every rule (quality and energy: heater floors, lighting levels,
    a year's tops are causal percentiles kept per day; base-load nights judged one after the other) is the
    same with the memo of the earlier passes as without it, pass after pass, while the percentiles are
    computed for at most the new day (none within a day: a day's percentile depends on the days before it
    only); and after late readings for a past day."""
    inventory, readings = _whole_school()
    memo = RuleMemo()
    first = int((datetime(2025, 12, 21, tzinfo=UTC) - SCHOOL_START) / timedelta(hours=1)) - 2
    _findings(inventory, readings, first, memo)
    assert memo.recomputed_percentile_days > 0
    active: set[str] = set()
    for hours in range(first + 1, first + 5):
        if hours == first + 4:
            # Late readings of the gas meter for a past day (the heater idle all day): that day's and every
            # later day's percentiles are computed again, the days before it kept; likewise the nights.
            gas_times, gas_index = readings["b1-heat"].times_s, readings["b1-heat"].values.copy()
            idle = (gas_times >= datetime(2025, 12, 2, tzinfo=UTC).timestamp()) & (
                gas_times < datetime(2025, 12, 3, tzinfo=UTC).timestamp())
            gas_index[idle] = gas_index[np.flatnonzero(idle)[0] - 1]
            gas_index[np.flatnonzero(idle)[-1] + 1 :] -= gas_index[np.flatnonzero(idle)[-1] + 1] - gas_index[idle][-1]
            readings["b1-heat"] = PointSeries(gas_times, gas_index)
            # And of the electricity meter: the nights of the 15th to the 17th at the old base load after all.
            elec_times, elec_index = readings["b1-elec"].times_s, readings["b1-elec"].values
            lower = (elec_times > datetime(2025, 12, 15, tzinfo=UTC).timestamp()) & (
                elec_times <= datetime(2025, 12, 18, tzinfo=UTC).timestamp())
            readings["b1-elec"] = PointSeries(elec_times, elec_index - 0.5 * np.cumsum(lower))
        before = memo.recomputed_percentile_days
        got, expected = _findings(inventory, readings, hours, memo), _findings(inventory, readings, hours, None)
        assert [f.qualified_name for f in got] == [f.qualified_name for f in expected]
        for mine, theirs in zip(got, expected, strict=True):
            for name in ("state", "observed", "expected", "excess"):
                np.testing.assert_array_equal(getattr(mine, name), getattr(theirs, name), err_msg=mine.qualified_name)
            assert mine.facts.keys() == theirs.facts.keys()
            for name in mine.facts:
                np.testing.assert_array_equal(mine.facts[name], theirs.facts[name])
            if (mine.state == 1.0).any():
                active.add(mine.qualified_name)
        if hours < first + 4:
            assert memo.recomputed_percentile_days - before <= len(memo._pct)  # at most the new day, per percentile
    # Findings with active hours are compared (the memo carries findings, not only silence): the lamps left
    # on, and a rule on the heater's causal floor (the heating kept on through the nights).
    assert "anomalies.rules.lighting_unoccupied" in active, active
    assert active & {"anomalies.rules.baseload_creep", "anomalies.rules.night_load_step"}, active
    assert memo.recomputed_nights > 0
    assert active & {"anomalies.rules.heating_unoccupied", "anomalies.rules.overheating"}, active


def test_a_memo_saved_and_read_back_spares_what_the_memo_did(tmp_path: Path) -> None:
    """``RuleMemo.to_arrays`` through ``np.savez`` (no pickle) and ``from_arrays``: the next pass gives the
    findings of the rules without a memo, judging no more days than with the memo kept in memory; a file of
    another format version is refused, naming it."""
    inventory, readings = _whole_school()
    first = int((datetime(2025, 12, 21, tzinfo=UTC) - SCHOOL_START) / timedelta(hours=1)) - 2
    kept = RuleMemo()
    _findings(inventory, readings, first, kept)
    path = tmp_path / "memo.npz"
    np.savez(path, **kept.to_arrays())
    with np.load(path, allow_pickle=False) as data:
        read = RuleMemo.from_arrays(data)
    assert len(read) == len(kept) > 0
    counters = ("recomputed_days", "recomputed_percentile_days", "recomputed_nights")
    before = [getattr(kept, c) for c in counters]
    got = _findings(inventory, readings, first + 3, read)
    _findings(inventory, readings, first + 3, kept)
    for mine, theirs in zip(got, _findings(inventory, readings, first + 3, None), strict=True):
        np.testing.assert_array_equal(mine.state, theirs.state, err_msg=mine.qualified_name)
        np.testing.assert_array_equal(mine.expected, theirs.expected, err_msg=mine.qualified_name)
    assert [getattr(read, c) for c in counters] == [getattr(kept, c) - b for c, b in zip(counters, before, strict=True)]
    assert read.recomputed_days <= 2  # the new day of the indoor sensor's two rules, not the 48 days before
    arrays = kept.to_arrays()
    version = f'"format_version": {MEMO_FORMAT_VERSION}'
    arrays["memo_meta"] = np.array(str(arrays["memo_meta"]).replace(version, '"format_version": 99'))
    with pytest.raises(DecodeError, match="format_version 99"):
        RuleMemo.from_arrays(arrays)


def test_a_memo_of_the_previous_release_is_read_and_spares_the_same_days(tmp_path: Path) -> None:
    """A memo written before its entries held one digest of all their days at once (``whole``, this round: a
    pass checks its unchanged days with it instead of a digest per day) is read as it is: its first pass
    compares day by day, judges no more days than the memo of this release, gives the findings without a
    memo, and leaves the one digest for the next pass, which spares the same again."""
    inventory, readings = _whole_school()
    first = int((datetime(2025, 12, 21, tzinfo=UTC) - SCHOOL_START) / timedelta(hours=1)) - 2
    kept = RuleMemo()
    _findings(inventory, readings, first, kept)
    arrays = kept.to_arrays()
    meta = json.loads(str(arrays["memo_meta"]))
    assert all(bytes.fromhex(e["whole"]) for e in meta["entries"])  # this release writes it
    for e in meta["entries"]:
        del e["whole"]
    path = tmp_path / "memo.npz"
    np.savez(path, **{**arrays, "memo_meta": np.array(json.dumps(meta))})
    with np.load(path, allow_pickle=False) as data:
        old = RuleMemo.from_arrays(data)
    counters = ("recomputed_days", "recomputed_percentile_days", "recomputed_nights")
    for hours in (first + 1, first + 2):
        before = [getattr(kept, c) for c in counters]
        got, expected = _findings(inventory, readings, hours, old), _findings(inventory, readings, hours, None)
        _findings(inventory, readings, hours, kept)
        for mine, theirs in zip(got, expected, strict=True):
            np.testing.assert_array_equal(mine.state, theirs.state, err_msg=mine.qualified_name)
            np.testing.assert_array_equal(mine.expected, theirs.expected, err_msg=mine.qualified_name)
        spared = [getattr(kept, c) - b for c, b in zip(counters, before, strict=True)]
        assert [getattr(old, c) for c in counters] == spared, hours
        for c in counters:
            setattr(old, c, 0)
    again = json.loads(str(old.to_arrays()["memo_meta"]))
    assert all(bytes.fromhex(e["whole"]) for e in again["entries"])


def _leak_plain(hours: BuildingHours, config: RulesConfig) -> dict[str, np.ndarray]:
    """``water_leak`` as it was before its memo (night by night over the whole frame): state, expected, flow."""
    water = hours.usages[Usage.WATER]
    n = hours.frame.hours
    night = np.isin(hours.local_hour, config.night_hours) & (hours.open_frac == 0.0)
    days = np.unique(hours.local_day[night])
    level = np.full(days.size, np.nan)
    flagged = np.zeros(days.size, dtype=np.bool_)
    state, expected, flow = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    reference, leak_open = math.nan, False
    for i, day in enumerate(days):
        idx = np.flatnonzero(night & (hours.local_day == day))
        values = water.values[idx]
        finite = np.isfinite(values)
        if finite.any():
            level[i] = float(np.nanmedian(values))
        window = (days >= day - config.leak_reference_nights) & (np.arange(days.size) < i)
        ref = window & np.isfinite(level) & ~flagged
        if not leak_open and ref.sum() >= 3:
            reference = float(np.median(level[ref]))
        if not math.isfinite(reference):
            continue
        threshold = reference + max(config.leak_min_flow_m3_h, 0.1 * reference)
        state[idx[finite]] = (values[finite] > threshold).astype(np.float64)
        expected[idx] = reference
        flow[idx] = values - reference
        flagged[i] = bool(np.isfinite(level[i]) and level[i] > threshold)
        if np.isfinite(level[i]):
            leak_open = flagged[i]
    return {"state": state, "expected": np.where(night, expected, np.nan), "flow": flow}


def _same_bits(mine: np.ndarray, theirs: np.ndarray) -> bool:
    return mine.dtype == theirs.dtype and mine.shape == theirs.shape and mine.tobytes() == theirs.tobytes()


def test_water_leak_judging_only_the_new_nights_gives_the_findings_over_the_whole_history() -> None:
    """A town hall's water meter with two leaks (one repaired after five nights, one still open) and a night
    without data: ``water_leak`` with the memo of its earlier passes (kept in memory, or saved and read back)
    gives, bit for bit, its finding without a memo and the night-by-night loop of before, hour after hour
    across a night, judging only the new hour's night; a late reading of a past night judges that night and
    the nights after it again."""
    inventory = parse_inventory(LEAK_INVENTORY)
    building = next(b for _, b in inventory.buildings())
    calendar = FrenchCalendar(inventory.organisation.school_holiday_zone)
    days = 50
    times = LEAK_START.timestamp() + HOUR_S * np.arange(24 * days + 1, dtype=np.float64)
    local_hour = ((times[:-1] / HOUR_S) + 2) % 24
    rng = np.random.default_rng(12)
    water = np.where((local_hour >= 7) & (local_hour < 20), 0.1 + 0.2 * rng.random(times.size - 1),
                     0.01 + 0.01 * rng.random(times.size - 1))
    water[20 * 24 + 18 : 25 * 24 + 10] += 0.12  # repaired after five nights
    water[44 * 24 + 18 :] += 0.08  # still open
    index = np.concatenate([[1000.0], 1000.0 + np.cumsum(water)])
    unread = (times > LEAK_START.timestamp() + HOUR_S * (30 * 24 + 22)) & (
        times < LEAK_START.timestamp() + HOUR_S * (31 * 24 + 6))  # one night without data
    readings = {"b1-water": PointSeries(times[~unread], index[~unread]),
                "b1-outdoor": PointSeries(times, 12.0 + 4.0 * np.cos(2.0 * np.pi * (times / HOUR_S - 13.0) / 24.0))}
    config = RulesConfig()

    def judged(hours_n: int, memo: RuleMemo | None) -> tuple[Finding, dict[str, np.ndarray]]:
        end_s = LEAK_START.timestamp() + hours_n * HOUR_S
        cut = {pid: PointSeries(s.times_s[s.times_s <= end_s], s.values[s.times_s <= end_s])
               for pid, s in readings.items()}
        frame = HourlyFrame.build(cut, counters={"b1-water"}, start_s=LEAK_START.timestamp(), hours=hours_n)
        hours = BuildingHours.build(inventory, building, frame, calendar)
        (finding,) = WaterLeakRule().evaluate(hours, config, [], memo=memo)
        return finding, _leak_plain(hours, config)

    def check(hours_n: int, memo: RuleMemo) -> None:
        mine, plain = judged(hours_n, memo)
        alone, _ = judged(hours_n, None)
        for name in ("state", "observed", "expected", "excess"):
            assert _same_bits(getattr(mine, name), getattr(alone, name)), (hours_n, name)
        assert _same_bits(mine.facts["flow_m3_h"], alone.facts["flow_m3_h"])
        assert _same_bits(mine.state, plain["state"])
        assert _same_bits(mine.facts["flow_m3_h"], plain["flow"])
        night = mine.chart_hours
        assert night is not None
        assert _same_bits(np.where(night, mine.expected, np.nan), plain["expected"])

    memo = RuleMemo()
    first = 47 * 24 - 4  # 4 hours before midnight UTC, through the night
    check(first, memo)
    full = memo.recomputed_nights
    assert full > 40  # the first pass judges every night
    for hours_n in range(first + 1, first + 8):
        before = memo.recomputed_nights
        check(hours_n, memo)
        assert memo.recomputed_nights - before <= 1, hours_n  # the new hour's night, if it is a night hour
    mine, _ = judged(first + 7, None)
    assert (mine.state == 1.0)[-3 * 24 :].any()  # the leak still open, and the one repaired
    assert (mine.state == 1.0)[20 * 24 : 26 * 24].any()
    # Saved and read back (no pickle): the next pass spares the same nights.
    path_arrays = memo.to_arrays()
    read = RuleMemo.from_arrays(path_arrays)
    check(first + 8, read)
    assert read.recomputed_nights <= 1
    # A late reading of a past night (day 10): that night and every later one are judged again.
    late = readings["b1-water"]
    moved = late.values.copy()
    moved[(late.times_s > LEAK_START.timestamp() + HOUR_S * (10 * 24 + 23))] += 0.05
    readings["b1-water"] = PointSeries(late.times_s, moved)
    before = read.recomputed_nights
    check(first + 9, read)
    assert read.recomputed_nights - before >= 35
