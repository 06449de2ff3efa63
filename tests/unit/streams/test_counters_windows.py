"""Property tests: counters to consumption, and windows."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from inventory import MeterReplacement
from streams.counters import CounterTracker
from streams.windows import WindowCalendar, WindowSize, split_interval, window_bounds

PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2026, 3, 28, 20, tzinfo=UTC)  # the DST change (29 March) is inside the generated spans

WRAPS = {"uint16": 65536.0, "uint32": 4294967296.0 * 0.01, "float": None}


@st.composite
def counter_history(
    draw: st.DrawFn,
) -> tuple[str, list[tuple[datetime, float]], list[float], list[MeterReplacement], bool]:
    """A meter's indexes, its true consumption up to each, its declared swaps, whether jumps are judged.

    Rollovers, swaps, gaps; undeclared resets only when jumps are not judged: a
    jump then a restart before the next reading cannot be told from a glitch
    then a restart (issue 13 review), so the tracker drops the jump.
    """
    kind = draw(st.sampled_from(sorted(WRAPS)))
    judge_jumps = draw(st.booleans())
    wrap = WRAPS[kind]
    span = wrap if wrap is not None else 1e9
    index = draw(st.floats(min_value=0, max_value=span * 0.9))
    ts = T0
    readings = [(ts, index)]
    true_total = 0.0
    totals = [0.0]
    reset_before = 0.0  # after an undeclared restart: the index before it
    swaps: list[MeterReplacement] = []
    for _ in range(draw(st.integers(min_value=1, max_value=60))):
        # Gaps from one poll to two days; increments small against the register range.
        ts += timedelta(seconds=draw(st.integers(min_value=1, max_value=2 * 86400)))
        increment = draw(st.floats(min_value=0, max_value=span / 8))
        event = draw(st.sampled_from(["normal"] * 8 + ["reset", "swap"]))
        if reset_before and event != "swap":
            # The reading after a restart confirms it only if it stays below the index before the restart.
            increment = min(increment, (reset_before - index) / 2)
        true_total += increment
        if event == "reset" and increment < index / 10 and index < span / 2 and not reset_before and not judge_jumps:
            # An undeclared restart from zero, seen as a fall below a tenth of the index, from the lower half of
            # the range. (A restart that climbs back above the old index before the next reading, or one from the
            # upper half, cannot be told from normal use or a rollover: declare it. Since issue 13's review a drop
            # waits for the next reading to confirm it: two restarts in a row make the first a glitch.)
            reset_before, index = index, increment
        elif event == "swap":
            new_initial = draw(st.floats(min_value=0, max_value=span / 4))
            swaps.append(MeterReplacement(at=ts - timedelta(microseconds=1), old_final=index, new_initial=new_initial))
            index = new_initial + increment
            reset_before = 0.0
        else:
            reset_before = 0.0
            index += increment
            if wrap is not None:
                index %= wrap
        readings.append((ts, index))
        totals.append(true_total)
    return kind, readings, totals, swaps, judge_jumps


@settings(max_examples=300, deadline=None)
@given(counter_history())
def test_interval_consumption_adds_up_to_true_consumption(
    history: tuple[str, list[tuple[datetime, float]], list[float], list[MeterReplacement], bool],
) -> None:
    kind, readings, totals, swaps, judge_jumps = history
    tracker = CounterTracker("p", unit_factor=1.0, wrap=WRAPS[kind], max_gap=timedelta(hours=1), replacements=swaps,
                             jump_factor=20.0 if judge_jumps else None)
    intervals = [tracker.update(ts, value) for ts, value in readings]
    total = sum(i.amount for i in intervals if i is not None)
    # Up to the tracker's base: a reading still pending (a drop or a jump) waits for the next one (issue 13 review).
    true_total = totals[[ts for ts, _ in readings].index(tracker.last_ts)]
    assert tracker.pending is None or tracker.pending[0] == readings[-1][0]
    assert abs(total - true_total) <= 1e-6 * max(1.0, true_total)
    # Intervals tile time from the first reading to the last, in order.
    spans = [(i.start, i.end) for i in intervals if i is not None]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert all(i.estimated for i in intervals if i is not None and i.end - i.start > timedelta(hours=1))


def test_duplicates_and_out_of_order_are_not_counted() -> None:
    tracker = CounterTracker("p", unit_factor=1.0)
    t = T0
    assert tracker.update(t, 10.0) is None
    assert tracker.update(t + timedelta(minutes=2), 12.0).amount == 2.0  # type: ignore[union-attr]
    assert tracker.update(t + timedelta(minutes=2), 12.0) is None
    assert tracker.last_rejection.value == "duplicate"  # type: ignore[union-attr]
    assert tracker.update(t + timedelta(minutes=1), 11.0) is None
    assert tracker.last_rejection.value == "out_of_order"  # type: ignore[union-attr]
    assert tracker.update(t + timedelta(minutes=3), 15.0).amount == 3.0  # type: ignore[union-attr]


def test_undeclared_reset_is_estimated_once_confirmed() -> None:
    tracker = CounterTracker("p", unit_factor=1.0, wrap=65536.0)
    tracker.update(T0, 1000.0)
    assert tracker.update(T0 + timedelta(minutes=1), 7.0) is None  # held: the next reading judges it
    interval = tracker.update(T0 + timedelta(minutes=2), 9.0)
    assert interval is not None
    assert (interval.start, interval.amount) == (T0, 9.0)  # 7 since zero, then 2
    assert interval.estimated
    assert tracker.resets == 1


@given(
    # hypothesis takes naive bounds and attaches the timezone itself.
    start=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),  # noqa: DTZ001
    minutes=st.integers(min_value=0, max_value=5 * 24 * 60),
    size=st.sampled_from(list(WindowSize)),
)
def test_windows_partition_time(start: datetime, minutes: int, size: WindowSize) -> None:
    start = start.replace(microsecond=start.microsecond // 1000 * 1000)  # readings carry milliseconds
    end = start + timedelta(minutes=minutes)
    pieces = list(split_interval(start, end, size, PARIS))
    assert abs(sum(share for _, _, share in pieces) - 1.0) < 1e-9
    # Consecutive, non-overlapping windows, each holding its own start.
    for (s1, e1, _), (s2, _, _) in itertools.pairwise(pieces):
        assert e1 == s2
        assert s1 < e1
    for w_start, w_end, _ in pieces:
        assert window_bounds(w_start, size, PARIS) == (w_start, w_end)
        assert window_bounds(w_end - timedelta(microseconds=1), size, PARIS) == (w_start, w_end)
    # The fast calendar agrees with the reference.
    cal = WindowCalendar(PARIS)
    s_ms, e_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    fast = cal.split_ms(s_ms, e_ms, size)
    assert [w for w, _ in fast] == [int(w.timestamp() * 1000) for w, _, _ in pieces]


@given(day=st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31)))
def test_days_are_local_midnight_to_midnight(day: date) -> None:
    start, end = window_bounds(datetime.combine(day, time(12), PARIS), WindowSize.DAY, PARIS)
    hours = (end - start).total_seconds() / 3600
    assert start.astimezone(PARIS).time() == time(0)
    assert end.astimezone(PARIS).date() == day + timedelta(days=1)
    last_sunday = lambda month: max(  # noqa: E731
        date(day.year, month, d) for d in range(25, 32) if date(day.year, month, d).weekday() == 6
    )
    expected = 23 if day == last_sunday(3) else 25 if day == last_sunday(10) else 24
    assert hours == expected
