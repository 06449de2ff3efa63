"""Issue 13 review: suspicious counter readings (drops, implausible jumps) wait for the next reading to judge them."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from inventory import MeterReplacement
from streams.aggregate import StreamProcessor
from streams.clock import ManualClock
from streams.counters import CounterTracker, Interval, Rejection, Verdict
from streams.history import PointSeries, hourly_consumption
from streams.metrics import PrometheusSensor
from streams.record import Reading
from tests.unit.streams.test_pipeline_backpressure import INV, FakeInflux, _pipeline, _stop, _until
from tests.unit.streams.test_pipeline_backpressure import T0 as PIPE_T0

T0 = datetime(2025, 12, 1, tzinfo=UTC)
UTC_ZONE = ZoneInfo("UTC")
STEP = timedelta(minutes=10)


def _feed(tracker: CounterTracker, values: list[float], start: int = 0) -> list[Interval | None]:
    return [tracker.update(T0 + (start + i) * STEP, v) for i, v in enumerate(values)]


def _steady(values: int = 8, base: float = 193800.0, per_step: float = 5.0) -> tuple[CounterTracker, list[float]]:
    """A tracker fed ``values`` readings of a meter that rises ``per_step`` every 10 minutes."""
    tracker = CounterTracker("elec", unit_factor=1.0)
    indexes = [base + per_step * i for i in range(values)]
    _feed(tracker, indexes)
    return tracker, indexes


def _total(intervals: list[Interval | None]) -> float:
    return sum(i.amount for i in intervals if i is not None)


def test_a_glitch_up_is_dropped_and_the_interval_spans_it() -> None:
    tracker, indexes = _steady()
    base = indexes[-1]
    n = len(indexes)
    assert tracker.update(T0 + n * STEP, base * 10) is None  # 193835 → 1938350: ×10
    assert tracker.last_rejection is Rejection.PENDING
    assert (tracker.last_value, tracker.pending) == (base, (T0 + n * STEP, base * 10))
    interval = tracker.update(T0 + (n + 1) * STEP, base + 1)
    assert interval is not None
    assert (interval.start, interval.end, interval.amount, interval.estimated) == (
        T0 + (n - 1) * STEP, T0 + (n + 1) * STEP, 1.0, True)
    judged = tracker.last_judgement
    assert judged is not None
    assert judged.verdict is Verdict.GLITCH
    assert tracker.verdicts[Verdict.GLITCH] == 1
    assert tracker.resets == 0
    assert judged.describe("mairie-elec-energy") == (
        f"mairie-elec-energy: reading {base * 10:.0f} at {(T0 + n * STEP).isoformat(timespec='minutes')} dropped as "
        f"a glitch (next reading {base + 1:.0f} continues from {base:.0f})")


def test_a_glitch_down_is_dropped() -> None:
    tracker, indexes = _steady()
    n = len(indexes)
    assert tracker.update(T0 + n * STEP, indexes[-1] / 10) is None
    interval = tracker.update(T0 + (n + 1) * STEP, indexes[-1] + 10)
    assert interval is not None
    assert interval.amount == 10.0
    assert tracker.last_judgement is not None
    assert tracker.last_judgement.verdict is Verdict.GLITCH
    assert tracker.resets == 0


def test_jitter_climbed_past_loses_and_doubles_nothing() -> None:
    tracker = CounterTracker("p", unit_factor=1.0)
    intervals = _feed(tracker, [20000.0, 20002.0, 20001.95, 20003.0, 20002.98, 20003.5, 20004.0])
    assert _total(intervals) == pytest.approx(4.0)
    assert tracker.verdicts[Verdict.JITTER] == 2
    assert tracker.verdicts[Verdict.GLITCH] == 0
    assert tracker.pending is None
    assert tracker.last_value == 20004.0


def test_a_confirmed_fall_to_near_zero_is_a_reset() -> None:
    tracker = CounterTracker("p", unit_factor=1.0)
    intervals = _feed(tracker, [5000.0, 5010.0, 3.0, 8.0, 12.0])
    assert intervals[2] is None
    assert intervals[3] is not None
    assert intervals[3].amount == 8.0
    assert intervals[3].estimated
    assert _total(intervals) == 22.0
    assert tracker.resets == 1
    assert tracker.last_judgement is None  # the reading after is judged on its own


def test_a_confirmed_drop_is_a_rebase_and_what_follows_counts() -> None:
    # The reviewer's gas meter: 2000 m3 down without a declared replacement, then it goes on consuming.
    tracker = CounterTracker("gas", unit_factor=11.2)
    intervals = _feed(tracker, [13400.0, 13416.0, 13432.0, 11432.0, 11440.0, 11450.0])
    assert intervals[3] is None
    assert intervals[4] is not None
    assert intervals[4].amount == pytest.approx(8 * 11.2)
    assert intervals[4].estimated
    assert _total(intervals) == pytest.approx((32 + 8 + 10) * 11.2)
    judged = tracker.last_judgement
    assert judged is None
    assert tracker.verdicts[Verdict.REBASE] == 1
    assert tracker.resets == 0
    assert (tracker.last_value, tracker.pending) == (11450.0, None)


def test_a_small_drop_confirmed_is_a_rebase() -> None:
    tracker = CounterTracker("p", unit_factor=1.0)
    intervals = _feed(tracker, [100.0, 110.0, 108.0, 108.0, 109.0])
    assert _total(intervals) == 11.0  # 10, then nothing for the 2 down, then 1
    assert tracker.verdicts[Verdict.REBASE] == 1


def test_a_boiler_starting_after_a_summer_at_rest_counts_whole_once_confirmed() -> None:
    tracker = CounterTracker("gas", unit_factor=11.2)
    summer = [5000.0 + 0.01 * i for i in range(30)]  # 0.001 m3 a reading: near zero
    heating = [summer[-1] + 4.0 * (i + 1) for i in range(6)]  # 4 m3 (45 kWh) every 10 minutes
    intervals = _feed(tracker, summer + heating)
    assert intervals[30] is None
    assert tracker.verdicts[Verdict.JUMP] == 1
    assert _total(intervals) == pytest.approx((heating[-1] - summer[0]) * 11.2)
    assert tracker.pending is None
    assert tracker.verdicts[Verdict.GLITCH] == 0
    # The rates the boiler set are now the history: its following readings are not held.
    assert all(i is not None for i in intervals[31:])


def test_a_boiler_restarting_every_morning_after_a_night_at_rest_is_not_held() -> None:
    tracker = CounterTracker("gas", unit_factor=1.0)
    index, values = 5000.0, []
    for _day in range(3):
        for step in range(144):  # 10-minute readings: 8 hours at rest, 16 hours at 4 m3 a reading
            index += 0.0 if step < 48 else 4.0
            values.append(index)
    intervals = _feed(tracker, values)
    held = [i for i, interval in enumerate(intervals) if interval is None]
    assert held == [0, 48]  # the first reading, and the first start only: the peak of the day before is remembered
    assert _total(intervals) == pytest.approx(values[-1] - values[0])


def test_a_rise_under_the_floor_or_without_history_is_not_held() -> None:
    young = CounterTracker("p", unit_factor=1.0)
    assert all(i is not None for i in _feed(young, [0.0, 0.0, 1000.0])[1:])  # no history yet
    rested = CounterTracker("p", unit_factor=1.0)
    assert all(i is not None for i in _feed(rested, [0.0] * 8 + [0.5])[1:])  # 0.5 under the 1.0 floor


def test_a_reading_below_both_drops_the_pending_one_and_is_judged_instead() -> None:
    tracker, indexes = _steady()
    n = len(indexes)
    assert tracker.update(T0 + n * STEP, 150000.0) is None
    assert tracker.update(T0 + (n + 1) * STEP, 100000.0) is None  # below both: the first was a glitch, this waits
    assert tracker.verdicts[Verdict.GLITCH] == 1
    assert tracker.last_judgement is not None
    assert tracker.last_judgement.describe("p").endswith("(next reading 100000 is below it and below 193835)")
    assert tracker.pending == (T0 + (n + 1) * STEP, 100000.0)
    interval = tracker.update(T0 + (n + 2) * STEP, 100005.0)  # confirms the second: a re-base
    assert interval is not None
    assert interval.amount == 5.0
    assert tracker.verdicts[Verdict.REBASE] == 1


def test_a_declared_replacement_after_a_pending_reading_confirms_it() -> None:
    swap = MeterReplacement(at=T0 + 2 * STEP + timedelta(minutes=5), old_final=95.0, new_initial=0.0)
    tracker = CounterTracker("p", unit_factor=1.0, replacements=[swap])
    intervals = _feed(tracker, [100.0, 110.0, 90.0, 2.0])  # 110 → 90 re-based, then swapped at 95 for a new meter
    assert intervals[2] is None
    assert _total(intervals) == 10.0 + (95.0 - 90.0) + 2.0
    assert tracker.verdicts[Verdict.REBASE] == 1


def test_plan_does_not_change_a_pending_tracker() -> None:
    tracker, indexes = _steady()
    n = len(indexes)
    tracker.update(T0 + n * STEP, 1.0)
    before = tracker.to_dict()
    step = tracker.plan(T0 + (n + 1) * STEP, indexes[-1] + 1)
    assert step.judged is not None
    assert tracker.to_dict() == before
    # A reading at or before the pending one is a duplicate or out of order, and keeps it pending.
    assert tracker.update(T0 + n * STEP, 2.0) is None
    assert tracker.last_rejection is Rejection.DUPLICATE
    assert tracker.pending == (T0 + n * STEP, 1.0)


def test_a_pending_reading_and_the_peak_rate_survive_a_restart() -> None:
    tracker, indexes = _steady()
    n = len(indexes)
    tracker.update(T0 + n * STEP, indexes[-1] * 10)
    restarted = CounterTracker("elec", unit_factor=1.0)
    restarted.load(json.loads(json.dumps(tracker.to_dict())))
    assert restarted.pending == tracker.pending
    assert (restarted.peak_rate, restarted.peak_ts, restarted.accepted) == (tracker.peak_rate, tracker.peak_ts, 7)
    interval = restarted.update(T0 + (n + 1) * STEP, indexes[-1] + 1)
    assert interval is not None
    assert interval.amount == 1.0
    assert restarted.verdicts[Verdict.GLITCH] == 1
    # A state saved before this change (no pending reading, "resets" counted) still loads.
    old = CounterTracker("elec", unit_factor=1.0)
    old.load({"last_ts": T0.timestamp(), "last_value": 5.0, "resets": 2, "rollovers": 1, "backward_steps": 3})
    assert (old.pending, old.resets, old.rollovers) == (None, 2, 1)
    assert old.update(T0 + STEP, 6.0) is not None


# -- the processor and the pipeline ----------------------------------------------------------------------------

ELEC = "mairie-elec-energy"
GLITCHED = [193800.0 + 5 * i for i in range(8)] + [1938350.0, 193845.0, 193850.0, 19385.5, 193860.0, 193000.0, 193004.0,
                                                   193003.99, 193005.0]
"""A steady meter, a ×10 glitch, a ÷10 glitch, re-based 860 kWh lower, then jitter: 60 + 4 + 1 kWh consumed."""


def _readings(start: datetime) -> list[Reading]:
    return [Reading(ELEC, start + i * timedelta(minutes=1), v, "kWh") for i, v in enumerate(GLITCHED)]


def test_the_processor_spreads_the_interval_across_a_dropped_reading_and_reports_judgements() -> None:
    proc = StreamProcessor(INV)
    result = proc.process(_readings(T0))
    assert [j.verdict for _, j in result.judged] == [Verdict.GLITCH, Verdict.GLITCH, Verdict.REBASE, Verdict.JITTER]
    assert {p for p, _ in result.judged} == {ELEC}
    assert not result.rejected
    ten = [r for r in proc.flush() if r.measurement == "agg_point" and dict(r.tags)["point"] == ELEC
           and dict(r.tags)["window"] == "10m"]
    assert sum(r.fields["kwh"] for r in ten) == pytest.approx(65.0)
    assert sum(r.fields["estimated"] for r in ten) == pytest.approx(10.0 + 10.0 + 4.0 + 1.0)  # the intervals across a held one


class _Meter:
    """A polled source giving the glitched readings once."""

    name = "elec-meter"
    interval = timedelta(minutes=1)

    def __init__(self, start: datetime) -> None:
        self.batches = [_readings(start)]

    async def poll(self) -> list[Reading]:
        return self.batches.pop() if self.batches else []


async def test_the_pipeline_counts_judgements_in_prometheus_and_warns_once_an_hour_per_point_and_verdict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="streams.pipeline")
    sensor = PrometheusSensor()
    clock = ManualClock(PIPE_T0)
    pipeline = _pipeline(tmp_path, FakeInflux(), max_rows=1000, clock=clock, sensor=sensor, processor=StreamProcessor(INV))
    task = asyncio.create_task(pipeline.run([_Meter(PIPE_T0 - timedelta(minutes=30))], []))
    await _until(lambda: sum(pipeline.stats.counter_judgements.values()) >= 4, step=lambda: clock.advance(timedelta(minutes=1)))
    await _stop(task)
    assert pipeline.stats.counter_judgements == {"glitch": 2, "rebase": 1, "jitter": 1}
    metrics = sensor.exposition().decode()
    assert f'econome_counter_judgements_total{{point="{ELEC}",verdict="glitch"}} 2.0' in metrics
    assert f'econome_counter_judgements_total{{point="{ELEC}",verdict="rebase"}} 1.0' in metrics
    told = [r for r in caplog.records if r.name == "streams.pipeline" and r.getMessage().startswith(ELEC + ":")]
    assert [r.levelno for r in told] == [logging.WARNING, logging.DEBUG, logging.WARNING, logging.DEBUG]
    assert "reading 1938350 at" in told[0].getMessage()
    assert "dropped as a glitch (next reading 193845 continues from 193835)" in told[0].getMessage()
    assert "re-based, the drop of 860 is not consumption" in told[2].getMessage()


def test_hourly_consumption_tells_five_judgements_per_counter_then_counts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="streams.history")
    values = [100.0 + i for i in range(8)]
    for _ in range(7):  # seven glitches down, each followed by a reading that continues
        values += [1.0, values[-1] + 1]
    values += [values[-1] + 1, 2.0]  # and a drop still held at the end: not counted
    times = np.array([(T0 + i * STEP).timestamp() for i in range(len(values))])
    hours, amounts = hourly_consumption(PointSeries(times, np.array(values)), CounterTracker("w", 1.0), UTC_ZONE)
    assert hours
    assert amounts.sum() == pytest.approx(values[-2] - values[0])
    told = [r.getMessage() for r in caplog.records if r.name == "streams.history"]
    assert len(told) == 6
    assert all(" dropped as a glitch (next reading " in line for line in told[:5])
    assert told[5] == "w: 2 more held readings judged (in all: 7 glitch)"
