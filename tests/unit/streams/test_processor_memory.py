"""The processor's windows cost the garbage collector nothing per point (issue 15).

A full collection walks every tracked object; at 3,000 buildings one object
per point and window made 450,000 of them after three minutes, seconds per
collection. The windows now keep their figures in arrays, and the state they
save is the same as before.
"""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime, timedelta

from simulator.portfolio import synthetic_poll, synthetic_portfolio
from streams.aggregate import StreamProcessor, StreamSettings
from streams.clock import ManualClock
from streams.validate import Validator

BUILDINGS = 40  # 2,000 points
START = datetime(2026, 1, 5, 7, 55, tzinfo=UTC)


def _poll(proc: StreamProcessor, minute: int) -> None:
    for b in range(BUILDINGS):
        result = proc.process(synthetic_poll(b, 50, minute, START + timedelta(minutes=minute, seconds=b % 10)))
        assert not result.rejected


def test_new_windows_of_2000_points_add_a_few_tracked_objects_and_save_the_same_state() -> None:
    proc = StreamProcessor(synthetic_portfolio(BUILDINGS, points=50), StreamSettings(allowed_lateness=timedelta(seconds=75)))
    _poll(proc, 0)
    gc.collect()
    before = len(gc.get_objects())
    _poll(proc, 10)  # 08:05: a new 10-minute and a new hour window for all 2,000 points
    gc.collect()
    added = len(gc.get_objects()) - before
    assert len(proc.windows) == 5
    assert added < 100, f"{added} tracked objects for 2 windows of 2,000 points"  # one per point and window: 4,000

    # The saved state: one [sum, estimated, count, min, max] per point and window, as before; it loads back whole.
    state = json.loads(json.dumps(proc.to_dict()))
    counts = {(size, start): len(points) for size, start, points in state["windows"]}
    assert sorted(counts.values()) == [2000] * 5
    sample = state["windows"][0][2]["b0000-p001"]  # a power point: one reading in its window
    assert sample[2] == 1
    assert sample[0] == sample[3] == sample[4]
    again = StreamProcessor(proc.inventory, proc.settings)
    again.load(state)
    assert again.to_dict() == state
    # Both go on alike: the same aggregates when the windows close.
    for p in (proc, again):
        _poll(p, 20)
    assert [r.line() for r in proc.advance()] == [r.line() for r in again.advance()] != []


def test_the_duplicate_check_of_2000_points_adds_a_few_tracked_objects() -> None:
    inventory = synthetic_portfolio(BUILDINGS, points=50)
    points = {p.id: p for _, p in inventory.points()}
    validator = Validator.for_inventory(inventory, ManualClock(START + timedelta(minutes=30)))
    gc.collect()
    before = len(gc.get_objects())
    for minute in (0, 1):
        for b in range(BUILDINGS):
            for reading in synthetic_poll(b, 50, minute, START + timedelta(minutes=minute)):
                assert validator.check(reading, points[reading.point_id].quantity, reading.unit)[1] is None
    gc.collect()
    added = len(gc.get_objects()) - before
    assert len(validator._seen) == 2000
    assert added < 100, f"{added} tracked objects for the recent times of 2,000 points"  # 3 per point: 6,000
    # It still refuses what it refused: the same time again, with another value.
    again = synthetic_poll(3, 50, 7, START + timedelta(minutes=1))[1]
    assert "duplicate timestamp" in str(validator.check(again, points[again.point_id].quantity, again.unit)[1])
