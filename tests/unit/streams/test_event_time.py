"""Issue 10, event time and the processor: hostile times and values never stop or bloat the processing.

Edge checks (too old, too far ahead, before 2000, duplicate timestamps), bounded
window and counter arithmetic (a 56-year gap, year 1, year 9999) and the
quarantine of a reading that makes the processor raise.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from econome.settings import EconomeSettings
from inventory import Quantity, parse_inventory
from streams.aggregate import StreamProcessor, StreamSettings
from streams.clock import ManualClock
from streams.counters import CounterTracker, Rejection
from streams.errors import EventTimeError
from streams.record import Reading
from streams.validate import HISTORY, EventTimeConfig, Validator
from streams.windows import WindowCalendar, WindowSize, split_interval, window_bounds

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
PARIS_CAL = WindowCalendar(ZoneInfo("Europe/Paris"))

INVENTORY = parse_inventory("""
organisation: {name: Test, population: 100, timezone: Europe/Paris, school_holiday_zone: B}
mqtt_brokers:
- {id: default, host: 127.0.0.1, port: 1883, client_id: test}
sites:
- id: s
  name: S
  buildings:
  - id: b
    name: B
    usage: school
    floor_area_m2: 100
    heated_area_m2: 100
    points:
    - {id: elec, quantity: active_energy, unit: kWh, usage: general, cumulative: true, energy: electricity,
       mqtt: {topic: t/elec, format: plain}}
    - {id: elec-history, quantity: active_energy, unit: kWh, usage: lighting, cumulative: true, energy: electricity,
       backfill: true, mqtt: {topic: t/history, format: plain}}
    - {id: temp, quantity: temperature, unit: degC, usage: comfort, mqtt: {topic: t/temp, format: plain}}
    - {id: state, quantity: state, unit: '1', usage: general, mqtt: {topic: t/state, format: plain}}
""")
POINTS = {p.id: p for _, p in INVENTORY.points()}


def _edge(clock: ManualClock | None = None) -> Validator:
    return Validator.for_inventory(INVENTORY, clock or ManualClock(NOW))


def _check(validator: Validator, reading: Reading) -> str | None:
    point = POINTS[reading.point_id]
    return validator.check(reading, point.quantity, point.unit)[1]


# -- the edge: event time ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (datetime(1970, 1, 1, tzinfo=UTC), "is outside 2000"),
        (datetime(1, 1, 1, tzinfo=UTC), "is outside 2000"),
        (datetime(9999, 12, 31, 23, 59, tzinfo=UTC), "is outside 2000"),
        (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))), "is outside 2000"),
        (NOW - timedelta(days=8), "ECONOME_MAX_AGE_S"),
        (NOW + timedelta(minutes=6), "ECONOME_MAX_FUTURE_S"),
    ],
)
def test_edge_rejects_times_outside_the_window_with_the_reason(ts: datetime, expected: str) -> None:
    reason = _check(_edge(), Reading("temp", ts, 20.0, "degC"))
    assert reason is not None
    assert expected in reason
    assert reason.startswith("point temp: ")


def test_edge_accepts_live_input_inside_the_window() -> None:
    validator = _edge()
    for i, ts in enumerate([NOW - timedelta(days=6, hours=23), NOW, NOW + timedelta(minutes=4)]):
        assert _check(validator, Reading("temp", ts, 20.0 + i, "degC")) is None


def test_backfill_point_accepts_old_times_but_never_1970() -> None:
    validator = _edge()
    assert _check(validator, Reading("elec-history", NOW - timedelta(days=400), 10.0, "kWh")) is None
    assert "ECONOME_MAX_AGE_S" in (_check(validator, Reading("elec", NOW - timedelta(days=400), 10.0, "kWh")) or "")
    assert "is outside 2000" in (_check(validator, Reading("elec-history", datetime(1970, 1, 1, tzinfo=UTC), 1.0, "kWh")) or "")
    assert "ECONOME_MAX_FUTURE_S" in (_check(validator, Reading("elec-history", NOW + timedelta(hours=1), 1.0, "kWh")) or "")


def test_the_window_follows_the_clock() -> None:
    clock = ManualClock(NOW)
    validator = _edge(clock)
    ahead = Reading("temp", NOW + timedelta(minutes=30), 20.0, "degC")
    assert _check(validator, ahead) is not None
    clock.advance(timedelta(minutes=26))
    assert _check(validator, ahead) is None


def test_settings_give_the_event_time_window(monkeypatch: pytest.MonkeyPatch) -> None:
    assert EconomeSettings().event_time() == EventTimeConfig()
    assert EventTimeConfig().max_age == timedelta(days=7)
    assert EventTimeConfig().max_future == timedelta(minutes=5)
    monkeypatch.setenv("ECONOME_MAX_AGE_S", "3600")
    monkeypatch.setenv("ECONOME_MAX_FUTURE_S", "0")
    config = EconomeSettings().event_time()
    assert (config.max_age, config.max_future) == (timedelta(hours=1), timedelta(0))
    for bad in ("0", "inf", "nan", "-5"):
        monkeypatch.setenv("ECONOME_MAX_AGE_S", bad)
        with pytest.raises(ValueError, match="max_age_s"):
            EconomeSettings()


# -- the edge: duplicate timestamps ---------------------------------------------------------


def test_same_timestamp_same_value_is_a_counted_duplicate() -> None:
    validator = _edge()
    reading = Reading("temp", NOW, 20.5, "degC")
    assert _check(validator, reading) is None
    reason = _check(validator, reading)
    assert reason is not None
    assert "same value, stored once" in reason
    assert validator.duplicates == 1


def test_same_timestamp_different_value_is_dead_lettered_not_overwritten() -> None:
    validator = _edge()
    assert _check(validator, Reading("temp", NOW, 20.5, "degC")) is None
    reason = _check(validator, Reading("temp", NOW, 21.0, "degC"))
    assert reason == (f"point temp: duplicate timestamp {NOW.isoformat()} with a different value (21.0, 20.5 already stored)")
    assert validator.duplicates == 0
    assert _check(validator, Reading("temp", NOW + timedelta(seconds=1), 21.0, "degC")) is None


def test_an_earlier_time_again_with_another_value_is_dead_lettered() -> None:
    # #10 review, finding 6: t1, t2, then t1 again must not overwrite t1 in InfluxDB.
    validator = _edge()
    t1, t2 = NOW - timedelta(minutes=2), NOW - timedelta(minutes=1)
    assert _check(validator, Reading("temp", t1, 20.0, "degC")) is None
    assert _check(validator, Reading("temp", t2, 21.0, "degC")) is None
    reason = _check(validator, Reading("temp", t1, 99.0, "degC"))
    assert reason == f"point temp: duplicate timestamp {t1.isoformat()} with a different value (99.0, 20.0 already stored)"
    assert "same value, stored once" in (_check(validator, Reading("temp", t1, 20.0, "degC")) or "")
    assert validator.duplicates == 1
    # A time between the two, not seen before, is a reading of its own.
    assert _check(validator, Reading("temp", t1 + timedelta(seconds=30), 22.0, "degC")) is None
    assert validator.unchecked == 0


def test_times_in_the_same_millisecond_are_one_influxdb_point() -> None:
    validator = _edge()
    assert _check(validator, Reading("temp", NOW + timedelta(microseconds=100), 20.0, "degC")) is None
    reason = _check(validator, Reading("temp", NOW + timedelta(microseconds=900), 21.0, "degC"))
    assert reason is not None
    assert "different value" in reason
    assert _check(validator, Reading("temp", NOW + timedelta(microseconds=1000), 21.0, "degC")) is None


def test_duplicate_memory_is_bounded_by_the_points_and_the_history() -> None:
    validator = _edge()
    for i in range(5000):
        for point, unit in (("temp", "degC"), ("elec", "kWh")):
            assert _check(validator, Reading(point, NOW - timedelta(seconds=i), float(i % 100), unit)) is None
    assert set(validator._seen) == set(POINTS)  # the inventory's points, from the start
    assert all(len(validator._seen[p].times) == len(validator._seen[p].values) == HISTORY for p in ("temp", "elec"))


def test_a_reading_older_than_the_history_is_accepted_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    validator = _edge()
    start = NOW - timedelta(hours=1)
    for i in range(HISTORY + 10):
        assert _check(validator, Reading("temp", start + timedelta(seconds=i), 20.0, "degC")) is None
    # The oldest remembered time is start + 10 s: one at start + 10 s is still checked...
    assert _check(validator, Reading("temp", start + timedelta(seconds=10), 30.0, "degC")) is not None
    assert validator.unchecked == 0
    # ...one before it is not: it is accepted, counted and logged once at WARNING.
    for _ in range(3):
        assert _check(validator, Reading("temp", start + timedelta(seconds=5), 30.0, "degC")) is None
    assert validator.unchecked == 3
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "not checked for an overwrite" in r.message]
    assert len(warnings) == 1
    assert "point temp" in warnings[0].message


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, HISTORY - 1), st.integers(0, 3)), max_size=200))
def test_within_the_history_no_two_accepted_readings_share_a_millisecond(steps: list[tuple[int, int]]) -> None:
    # At most HISTORY distinct times, in any order: every check is exact.
    validator = _edge()
    stored: dict[datetime, float] = {}
    for second, value in steps:
        ts = NOW - timedelta(seconds=second)
        reason = _check(validator, Reading("temp", ts, float(value), "degC"))
        if ts in stored:
            assert reason is not None
            assert ("same value" in reason) == (stored[ts] == value)
        else:
            assert reason is None
            stored[ts] = float(value)
    assert validator.unchecked == 0


def test_unknown_points_are_not_remembered() -> None:
    validator = _edge()
    for i in range(100):
        validator.check(Reading(f"nope-{i}", NOW, 1.0, "degC"), Quantity.TEMPERATURE, "degC")
    assert set(validator._seen) == set(POINTS)  # the inventory's, from the start


# -- bounded windows and counters ---------------------------------------------------------------


@pytest.mark.parametrize(
    "ts",
    [datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, tzinfo=UTC)],
)
def test_windows_of_extreme_times_raise_a_typed_error_not_overflow(ts: datetime) -> None:
    for size in WindowSize:
        with pytest.raises(EventTimeError, match="years 2 to 9998"):
            window_bounds(ts, size, PARIS_CAL.tz)
        with pytest.raises(EventTimeError, match="years 2 to 9998"):
            PARIS_CAL.bounds_ms(int(ts.timestamp() * 1000), size)


def test_a_56_year_interval_is_refused_not_cut_into_millions_of_windows() -> None:
    start, end = datetime(1970, 1, 1, tzinfo=UTC), NOW
    with pytest.raises(EventTimeError, match="more than 20000 windows of 10m"):
        PARIS_CAL.split_ms(int(start.timestamp() * 1000), int(end.timestamp() * 1000), WindowSize.TEN_MINUTES)
    with pytest.raises(EventTimeError, match="more than 20000 windows of 10m"):
        list(split_interval(start, end, WindowSize.TEN_MINUTES, PARIS_CAL.tz))
    # 31 days still split: the default counter spread.
    pieces = PARIS_CAL.split_ms(int((NOW - timedelta(days=31)).timestamp() * 1000), int(NOW.timestamp() * 1000),
                                WindowSize.TEN_MINUTES)  # fmt: skip
    assert len(pieces) == 31 * 144
    assert math.isclose(sum(share for _, share in pieces), 1.0)


def test_counter_gap_longer_than_the_spread_rebases_instead_of_spreading() -> None:
    tracker = CounterTracker("elec", unit_factor=1.0)
    tracker.update(datetime(1970, 1, 1, tzinfo=UTC), 100.0)
    assert tracker.update(NOW, 150.0) is None
    assert tracker.last_rejection is Rejection.GAP
    assert tracker.last_ts == NOW
    interval = tracker.update(NOW + timedelta(minutes=10), 151.0)
    assert interval is not None
    assert interval.amount == 1.0
    assert interval.start == NOW


def test_processor_dead_letters_an_unexplained_counter_gap_and_goes_on() -> None:
    proc = StreamProcessor(INVENTORY)
    old = datetime(2001, 1, 1, tzinfo=UTC)  # within the absolute bounds: only the gap bound stops it
    result = proc.process([
        Reading("elec", old, 100.0, "kWh"),
        Reading("elec", NOW, 150.0, "kWh"),
        Reading("elec", NOW + timedelta(minutes=10), 151.0, "kWh"),
    ])  # fmt: skip
    assert [r.ts for r in result.accepted] == [old, NOW + timedelta(minutes=10)]
    [(reading, reason)] = result.rejected
    assert reading.ts == NOW
    assert "counter gap" in reason
    assert "50.0 kWh not spread" in reason
    # The first reading and the last interval: a handful of windows, not 25 years of them.
    assert len(proc.windows) <= 6
    sums = [r.fields["sum"] for r in proc.flush() if r.measurement == "agg_point" and ("window", "1d") in r.tags]
    assert sums == [1.0]


def test_processor_rejects_year_1_and_year_9999_without_raising() -> None:
    proc = StreamProcessor(INVENTORY)
    result = proc.process([
        Reading("elec", datetime(1, 1, 1, tzinfo=UTC), 1.0, "kWh"),
        Reading("temp", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), 20.0, "degC"),
        Reading("elec", datetime(1970, 1, 1, tzinfo=UTC), 1.0, "kWh"),
        Reading("elec", NOW, 2.0, "kWh"),
    ])  # fmt: skip
    assert [r.ts for r in result.accepted] == [NOW]
    assert len(result.rejected) == 3
    assert all("is outside 2000" in reason for _, reason in result.rejected)


def test_max_spread_is_bounded() -> None:
    with pytest.raises(ValueError, match="at most 90 days"):
        StreamSettings(max_spread=timedelta(days=91))


# -- poison pills -------------------------------------------------------------------------------


def test_a_reading_that_makes_the_processor_raise_is_quarantined_and_state_is_untouched() -> None:
    proc = StreamProcessor(INVENTORY)
    proc.process([Reading("elec", NOW, 1.0, "kWh"), Reading("state", NOW, 1e308, "1")])
    before = proc.to_dict()
    # A value that is not a number (a JSON string let through) and a sum that would overflow.
    result = proc.process([
        Reading("temp", NOW, "21", "degC"),  # type: ignore[arg-type]  # a decoder bug, on purpose
        Reading("state", NOW + timedelta(seconds=1), 1e308, "1"),
    ])  # fmt: skip
    assert result.accepted == []
    reasons = [reason for _, reason in result.rejected]
    assert reasons[0].startswith("processor raised TypeError: ")
    assert reasons[1].startswith("processor raised ArithmeticError: the 10m sum of point state would not be finite")
    assert proc.to_dict() == before
    # Processing goes on with the next reading.
    after = proc.process([Reading("elec", NOW + timedelta(minutes=5), 2.0, "kWh")])
    assert [r.value for r in after.accepted] == [2.0]


# -- the property: any input is accepted or rejected with a reason, in bounded memory ----------------

# hypothesis takes naive bounds and attaches the time zones itself.
_FIRST = datetime.min.replace(tzinfo=UTC).replace(tzinfo=None)
_LAST = datetime.max.replace(tzinfo=UTC).replace(tzinfo=None)
_TIMES = st.one_of(
    st.datetimes(min_value=_FIRST, max_value=_LAST, timezones=st.just(UTC)),
    st.datetimes(min_value=_FIRST + timedelta(days=1), max_value=_LAST - timedelta(days=1),
                 timezones=st.sampled_from([timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))])),
    st.integers(min_value=-40 * 86_400, max_value=3600).map(lambda s: NOW + timedelta(seconds=s)),
    st.integers(min_value=-400, max_value=0).map(lambda d: NOW + timedelta(days=d)),
    st.integers(min_value=0, max_value=5).map(lambda s: NOW + timedelta(seconds=s)),  # one window: sums may overflow
    st.sampled_from([datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC),
                     datetime(1, 1, 1, 12, tzinfo=timezone(timedelta(hours=12)))]),
)  # fmt: skip
# The processor's own bounds opened to the whole datetime range, so that windows and counters meet year 1 and 9999.
_OPEN = StreamSettings(
    event_time=EventTimeConfig(earliest=datetime(1, 1, 1, tzinfo=UTC), latest=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))
)
_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324]),
    st.floats(min_value=0, max_value=1e6),
)
_READINGS = st.lists(
    st.tuples(st.sampled_from(sorted(POINTS)), _TIMES, _VALUES).map(lambda t: Reading(t[0], t[1], t[2], POINTS[t[0]].unit)),
    max_size=40,
)
# What stays after advance(): windows from the retention horizon to the newest reading.
_RETAINED = 3 * (2 * 144 + 2 * 24 + 3 + 8)


def test_a_reading_whose_local_day_starts_before_year_2_is_quarantined_not_raised_when_its_window_closes() -> None:
    """Hypothesis found it: 0002-01-01 00:00 UTC is inside years 2 to 9998, but its local day starts in year 1;
    the reading was accepted and its day window raised EventTimeError at the next ``advance``."""
    proc = StreamProcessor(INVENTORY, _OPEN)
    result = proc.process([Reading("state", datetime(2, 1, 1, tzinfo=UTC), 0.0, POINTS["state"].unit)])
    assert len(result.rejected) == 1
    assert "outside what windows can hold" in result.rejected[0][1]
    assert proc.advance() == []
    assert proc.flush() == []


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_READINGS, st.sampled_from(["edge", "processor", "processor-unbounded"]))
def test_any_readings_are_accepted_or_rejected_with_a_reason_in_bounded_memory(readings: list[Reading], mode: str) -> None:
    edge = _edge()
    raised: set[str] = set()
    with_edge = mode == "edge"
    proc = StreamProcessor(INVENTORY, _OPEN if mode == "processor-unbounded" else None)
    for reading in readings:
        if with_edge:
            checked, reason = edge.check(reading, POINTS[reading.point_id].quantity, POINTS[reading.point_id].unit)
            if reason is not None:
                assert reason.startswith(f"point {reading.point_id}: ")
                continue
            reading = checked
        before = len(proc.windows)
        result = proc.process([reading])
        outcomes = len(result.accepted) + len(result.rejected) + len(result.ignored)
        assert outcomes == 1
        assert all(reason for _, reason in result.rejected + result.ignored)
        # One reading opens at most 31 days of windows of each size, and advancing expires them.
        assert len(proc.windows) - before <= 31 * (144 + 24 + 1) + 3
        for record in proc.advance():
            assert all(math.isfinite(v) for v in record.fields.values()), record
        assert len(proc.windows) <= _RETAINED
        raised.update(reason.split(":")[0] for _, reason in result.rejected if reason.startswith("processor raised"))
    for record in proc.flush():
        assert all(math.isfinite(v) for v in record.fields.values()), record
    event(f"quarantined: {sorted(raised)}")
