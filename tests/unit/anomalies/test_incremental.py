"""Incremental detection: no look-ahead, chunking invariance, persisted state, ``econome detect --state``.

Five simulated winter weeks of the demo commune (family A) with the faults of ``test_detect``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from anomalies.detect import DetectConfig, detect
from anomalies.events import AlertState, AnomalyEvent
from anomalies.features import PointSeries
from anomalies.incremental import DetectorState, IncrementalConfig, advance, segment_dir
from econome.cli_detect import register
from inventory import Inventory, load_inventory
from simulator.physics import generate_history
from streams.errors import ConfigError, DecodeError

from .test_detect import _faults

ROOT = Path(__file__).resolve().parents[3]
START = datetime(2026, 1, 5, tzinfo=UTC)
DAYS = 35
RULES = DetectConfig(models=False)


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return load_inventory(ROOT / "examples" / "commune.yaml")


@pytest.fixture(scope="module")
def readings(inventory: Inventory) -> dict[str, PointSeries]:
    history = generate_history(inventory, START, START + timedelta(days=DAYS), timedelta(minutes=15), seed=11,
                               faults=_faults(inventory))
    seconds = history.times.astype("datetime64[ms]").astype(np.int64) / 1000.0
    return {
        pid: PointSeries(seconds[np.isfinite(col)], col[np.isfinite(col)])
        for pid, col in zip(history.point_ids, history.values.T, strict=True)
    }


@pytest.fixture(scope="module")
def whole(inventory: Inventory, readings: dict[str, PointSeries]) -> list[AnomalyEvent]:
    return detect(inventory, readings, RULES)


def _cut(readings: dict[str, PointSeries], at: datetime, since: datetime | None = None) -> dict[str, PointSeries]:
    """Readings up to ``at`` included (and after ``since``, excluded)."""
    hi, lo = at.timestamp(), -np.inf if since is None else since.timestamp()
    return {p: PointSeries(s.times_s[(s.times_s <= hi) & (s.times_s > lo)], s.values[(s.times_s <= hi) & (s.times_s > lo)])
            for p, s in readings.items()}


def _id(e: AnomalyEvent) -> tuple[str, str, str, str, datetime]:
    return (e.building, e.usage, e.kind, e.point or "", e.start)


def _as_known_at(events: list[AnomalyEvent], at: datetime) -> dict[tuple[str, str, str, str, datetime], AnomalyEvent]:
    return {_id(e): e for e in events if e.detected_at <= at}


def _check_known_at(whole: list[AnomalyEvent], cut: list[AnomalyEvent], at: datetime) -> None:
    """``cut`` (detection on readings up to ``at``) is what ``whole`` knew at ``at``."""
    known = _as_known_at(whole, at)
    got = {_id(e): e for e in cut}
    assert set(got) == set(known), (at, sorted(set(known) ^ set(got), key=str))
    for key, event in got.items():
        full = known[key]
        assert event.detected_at == full.detected_at, key
        assert event.end <= at, key
        if full.end <= at and event.state is AlertState.RESOLVED:
            assert event.end == full.end, key
        if full.end > at:  # resolved after `at`: still open then
            assert event.state is not AlertState.RESOLVED, key


# Hours inside the faults of test_detect: stuck counter, water leak, lighting, heating, dead sensors, setpoint.
CUTS = [datetime(2026, 1, 21, 3, tzinfo=UTC), datetime(2026, 1, 25, 6, tzinfo=UTC), datetime(2026, 1, 28, 12, tzinfo=UTC),
        datetime(2026, 1, 29, 2, tzinfo=UTC), datetime(2026, 2, 4, 3, tzinfo=UTC), datetime(2026, 2, 5, 18, tzinfo=UTC)]


@pytest.mark.parametrize("at", CUTS, ids=lambda d: d.strftime("%m%d%H"))
def test_no_look_ahead(inventory: Inventory, readings: dict[str, PointSeries], whole: list[AnomalyEvent],
                       at: datetime) -> None:
    """Detection up to hour h gives the events detection over the whole series knew at h."""
    cut = detect(inventory, _cut(readings, at), RULES)
    assert cut, "the cut falls inside faults: something is open"
    _check_known_at(whole, cut, at)


MODELS = DetectConfig(model_events=True)
SPREAD = DetectConfig(model_events=True, refit_spread=True)  # each building's weekly refit at its own hour


@pytest.fixture(scope="module")
def whole_models(inventory: Inventory, readings: dict[str, PointSeries]) -> list[AnomalyEvent]:
    return detect(inventory, readings, MODELS)


@pytest.mark.parametrize("at", [datetime(2026, 1, 29, 2, tzinfo=UTC), datetime(2026, 2, 5, 18, tzinfo=UTC)],
                         ids=lambda d: d.strftime("%m%d%H"))
def test_no_look_ahead_with_the_models(inventory: Inventory, readings: dict[str, PointSeries],
                                       whole_models: list[AnomalyEvent], at: datetime) -> None:
    """With the expected model and the forest on (and their events): detection up to h is what the whole knew at h."""
    assert any(e.source == "model" for e in whole_models), "the forest raised nothing: the test would prove little"
    cut = detect(inventory, _cut(readings, at), MODELS)
    _check_known_at(whole_models, cut, at)


def _replay(inventory: Inventory, readings: dict[str, PointSeries], bounds: list[datetime],
            config: DetectConfig = RULES) -> tuple[dict[Any, dict[str, Any]], list[list[AnomalyEvent]]]:
    """Advance through ``bounds``, feeding only the readings since the previous bound; the latest of every alert."""
    state = DetectorState.fresh(config)
    latest: dict[Any, dict[str, Any]] = {}
    runs = []
    previous: datetime | None = None
    for bound in bounds:
        result = advance(inventory, _cut(readings, bound, previous), state, bound, config=config)
        runs.append(result.events)
        for event in result.events:
            latest[_id(event)] = event.to_json("en")
        previous = bound
    return latest, runs


def _single(events: list[AnomalyEvent]) -> dict[Any, dict[str, Any]]:
    return {_id(e): e.to_json("en") for e in events}


def test_chunks_of_days_give_the_same_events(inventory: Inventory, readings: dict[str, PointSeries],
                                             whole: list[AnomalyEvent]) -> None:
    end = START + timedelta(days=DAYS) - timedelta(hours=1)
    for days in (1, 7, 30):
        # Days of one day from day 24 on (the dead sensors, the lights, the leak), to keep the test short.
        first = 24 if days == 1 else days
        bounds = [min(end, START + timedelta(days=d)) for d in range(first, DAYS + days, days)]
        latest, _ = _replay(inventory, readings, bounds)
        assert latest == _single(whole), days


def test_hour_by_hour_gives_the_same_events(inventory: Inventory, readings: dict[str, PointSeries],
                                            whole: list[AnomalyEvent]) -> None:
    """Hour by hour through the opening of the stuck counter (20 Jan, 08:00 UTC)."""
    until = datetime(2026, 1, 21, tzinfo=UTC)
    bounds = [datetime(2026, 1, 20, 4, tzinfo=UTC) + timedelta(hours=h) for h in range(0, 20)]
    bounds.append(START + timedelta(days=DAYS) - timedelta(hours=1))
    latest, runs = _replay(inventory, readings, bounds)
    assert latest == _single(whole)
    opened = [e for run in runs[:-1] for e in run if e.state is AlertState.OPEN]
    assert any(e.kind == "stale_counter" and e.detected_at <= until for e in opened)


def test_models_chunked_like_one_pass(inventory: Inventory, readings: dict[str, PointSeries]) -> None:
    """With the forests (and their events), two advances give what one does, scores included."""
    config = DetectConfig(model_events=True)
    end = START + timedelta(days=DAYS) - timedelta(hours=1)
    one, _ = _replay(inventory, readings, [end], config)
    two, _ = _replay(inventory, readings, [START + timedelta(days=24, hours=7), end], config)
    assert one == two


def _stepped_with_expected(inventory: Inventory, readings: dict[str, PointSeries], bounds: list[datetime],
                           state: DetectorState, config: DetectConfig, after: Any = None,
                           incremental: IncrementalConfig | None = None,
                           ) -> tuple[dict[Any, dict[str, Any]], dict[Any, list[np.ndarray]]]:
    """Advance through ``bounds``: the latest of every alert, and each building × usage's expected series."""
    latest: dict[Any, dict[str, Any]] = {}
    series: dict[Any, list[np.ndarray]] = {}

    def keep(found: Any) -> None:
        parts = series.setdefault((found.building, found.usage), [np.empty(0)] * 3)
        series[(found.building, found.usage)] = [np.concatenate([a, b]) for a, b in
                                                 zip(parts, (found.times_s, found.observed, found.expected), strict=True)]

    previous: datetime | None = None
    for bound in bounds:
        result = advance(inventory, _cut(readings, bound, previous), state, bound, config=config, on_expected=keep,
                         incremental=incremental)
        latest.update({_id(e): e.to_json("en") for e in result.events})
        if after is not None:
            after(bound, state)
        previous = bound
    return latest, series


def _refit_hours(inventory: Inventory, config: DetectConfig) -> dict[str, list[int]]:
    """Per building, the hours of the history (from START) its expected models are refitted at."""
    from anomalies.detect import refit_phase
    from anomalies.expected import refit_hours

    step = round(config.expected.refit_every / timedelta(hours=1))
    start_h = round(START.timestamp() / 3600)
    return {b.id: refit_hours(DAYS * 24, config.expected, (refit_phase(b.id) - start_h) % step)
            for _, b in inventory.buildings()}


@pytest.fixture(scope="module")
def one_pass_models(inventory: Inventory, readings: dict[str, PointSeries]) -> tuple[dict[Any, Any], dict[Any, Any]]:
    config = SPREAD
    end = START + timedelta(days=DAYS) - timedelta(hours=1)
    return _stepped_with_expected(inventory, readings, [end], DetectorState.fresh(config), config)


def _same_series(got: dict[Any, list[np.ndarray]], want: dict[Any, list[np.ndarray]]) -> None:
    assert set(got) == set(want)
    for key, arrays in want.items():
        for name, a, b in zip(("times", "observed", "expected"), got[key], arrays, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{key} {name}")


def test_models_resumed_hour_by_hour_give_one_pass_s_values(inventory: Inventory, readings: dict[str, PointSeries],
                                                             one_pass_models: Any) -> None:
    """The models held in the state between advances: each hour only scored, a refit only at its building's hour.

    Hour by hour across the town hall's third weekly refit (each building refits at its own hour of the week,
    ``refit_spread``), the events, the observed and the expected consumption are those of one pass; a
    building's models are the very objects of the hour before (reused, not refitted) but at its refit hours.
    """
    config = SPREAD
    end = START + timedelta(days=DAYS) - timedelta(hours=1)
    one, one_series = one_pass_models
    refits = _refit_hours(inventory, config)
    assert len({hours[1] % 168 for hours in refits.values()}) > 3, "the buildings refit at hours of their own"
    refit = START + timedelta(hours=refits["mairie"][2])
    hourly = [refit + timedelta(hours=h) for h in range(-2, 4)]
    seen: list[tuple[datetime, dict[Any, Any]]] = []

    def models(bound: datetime, state: DetectorState) -> None:
        held = {(b, u): (p.hours, p.fit.last, p.forest) for b, (_, usages) in state.models.items()
                for u, p in usages.items()}
        assert held, "models are held in the state"
        assert {h for h, _, _ in held.values()} == {round((bound - START) / timedelta(hours=1))}
        seen.append((bound, held))

    stepped, stepped_series = _stepped_with_expected(inventory, readings, [*hourly, end],
                                                     DetectorState.fresh(config), config, after=models)
    assert any(e["source"] == "model" for e in one.values()), "the forest raised something to compare"
    assert stepped == one
    _same_series(stepped_series, one_series)
    changed = set()
    for (_, held_before), (bound, held) in itertools.pairwise(seen[:len(hourly)]):
        hour = round((bound - START) / timedelta(hours=1)) - 1  # the hour this advance computed
        for key, (_, fit, forest) in held.items():
            if key not in held_before or held_before[key][1] is None:
                continue
            assert forest is held_before[key][2], (bound, key)  # the forest is refitted every 28 days only
            if hour in refits[key[0]]:
                changed.add(key[0])
            else:
                assert fit is held_before[key][1], (bound, key)
    assert "mairie" in changed, "the town hall's refit hour refits its expected models"


def test_models_saved_in_the_state_file_resume_as_held(tmp_path: Path, inventory: Inventory,
                                                       readings: dict[str, PointSeries], one_pass_models: Any) -> None:
    """Saved and loaded between advances (format 2: expected fits, forests, thresholds, walk-forward arrays), the
    models resume where they stopped: across the town hall's refit, one pass's events and expected series, bit for bit.
    A format-1 file (no models) still loads; its first advance computes the models again from the history."""
    config = SPREAD
    end = START + timedelta(days=DAYS) - timedelta(hours=1)
    refit = START + timedelta(hours=_refit_hours(inventory, config)["mairie"][2])
    path = tmp_path / "state.npz"
    holder = {"state": DetectorState.fresh(config)}
    loaded: list[int] = []
    day_bounds: list[int] = []
    prefixes: list[set[str]] = []  # the first rows of the models' arrays and the memo's, in files of their own

    forests: dict[Any, Any] = {}

    def round_trip(bound: datetime, state: DetectorState) -> None:
        # The advance resumed the loaded forests (none is refitted in these hours), did not grow new ones.
        for b, (_, usages) in state.models.items():
            for u, p in usages.items():
                if forests.get((b, u)) is not None:
                    assert p.forest is forests[(b, u)], (bound, b, u)
        state.save(path)
        prefixes.append({f.name for f in segment_dir(path).glob("prefix-*")})
        back = DetectorState.load(path)
        forests.clear()
        forests.update({(b, u): p.forest for b, (_, usages) in back.models.items() for u, p in usages.items()})
        assert set(back.models) == set(state.models)
        for b, (_, usages) in state.models.items():  # the day-residual bounds come with the file (format 5)
            for u, p in usages.items():
                kept = back.models[b][1][u].day_bound
                assert (kept is None) == (p.day_bound is None), (b, u)
                if kept is not None and p.day_bound is not None:
                    assert (kept.hours, kept.digest) == (p.day_bound.hours, p.day_bound.digest), (b, u)
                    assert kept.values.tobytes() == p.day_bound.values.tobytes(), (b, u)
                    day_bounds.append(kept.hours)
        loaded.append(sum(len(u) for _, u in back.models.values()))
        state.models, state.readings = back.models, back.readings
        holder["state"] = state

    bounds = [refit - timedelta(hours=2), refit, refit + timedelta(hours=1), end]
    stepped, series = _stepped_with_expected(inventory, readings, bounds, holder["state"], config, after=round_trip)
    assert all(loaded), "the models were saved and loaded"
    assert day_bounds, "and their day-residual bounds"
    assert all(prefixes)
    assert all(a & b for a, b in itertools.pairwise(prefixes)), "a save keeps the prefix files whose rows are unchanged"
    assert stepped == one_pass_models[0]
    _same_series(series, one_pass_models[1])
    # Formats 2 (models, no rule memo, float64 times) and 1 (neither): the file as those versions wrote it.
    back = DetectorState.load(path)
    with np.load(path, allow_pickle=False) as data:
        model_arrays = {k: data[k] for k in data.files if k.startswith("m") and not k.startswith("memo")}
    for version in (2, 1):
        meta = json.loads(str(np.load(path, allow_pickle=False)["meta"]))
        meta["format_version"] = version
        del meta["ms_times"]
        arrays: dict[str, Any] = model_arrays.copy() if version == 2 else {}
        if version == 1:
            del meta["models"]
        for i, pid in enumerate(meta["points"]):
            arrays[f"t{i}"], arrays[f"v{i}"] = back.readings[pid].times_s, back.readings[pid].values
        arrays["meta"] = np.array(json.dumps(meta))
        old = tmp_path / f"v{version}.npz"
        np.savez_compressed(old, **arrays)
        older = DetectorState.load(old)
        assert older.last_hour == holder["state"].last_hour
        assert DetectorState.peek_last_hour(old) == older.last_hour
        assert len(older.rule_memo) == 0
        for pid, series in back.readings.items():
            np.testing.assert_array_equal(older.readings[pid].times_s, series.times_s, err_msg=pid)
            np.testing.assert_array_equal(older.readings[pid].values, series.values, err_msg=pid)
        if version == 2:
            assert set(older.models) == set(back.models)
    v1 = older
    assert v1.models == {}
    # A reading new to the state in an hour already judged (a meter's late delivery): that building's models
    # start again from the history's start; the others resume.
    state = holder["state"]
    point = next(p for p in inventory.building("mairie").points if p.usage.value != "weather")
    late_s = (end - timedelta(hours=10)).timestamp() + 7.0
    series = _cut(readings, end + timedelta(hours=1), since=end)
    value = float(np.interp(late_s, readings[point.id].times_s, readings[point.id].values))
    series[point.id] = PointSeries(np.concatenate([[late_s], series[point.id].times_s]),
                                   np.concatenate([[value], series[point.id].values]))
    forests_before = {b: {u: p.forest for u, p in usages.items()} for b, (_, usages) in state.models.items()}
    advance(inventory, series, state, end + timedelta(hours=1), config=config)
    for b, (_, usages) in state.models.items():
        for u, p in usages.items():
            if forests_before[b].get(u) is not None:
                assert (p.forest is forests_before[b][u]) is (b != "mairie"), (b, u)


def test_rolled_histories_chunked_like_one_pass(inventory: Inventory, readings: dict[str, PointSeries]) -> None:
    """A history of 10 days rolled every 4 (each building at its own hour of them): advancing by days and by hours
    across the rolls gives one pass's events (the start of an hour's history depends on the hour alone)."""
    inc = IncrementalConfig(history=timedelta(days=10), roll_every=timedelta(days=4))
    end = START + timedelta(days=20)  # three weeks: every building's history rolls once or twice
    one = advance(inventory, _cut(readings, end), DetectorState.fresh(RULES, inc), end, config=RULES,
                  incremental=inc).events
    # The town hall's first roll is at day 11, 22:00 (its 46th hour of the 96): hour by hour across it.
    roll = START + timedelta(days=10, hours=46)
    bounds = [START + timedelta(days=11), *(roll + timedelta(hours=h) for h in range(-2, 3)), end]
    state = DetectorState.fresh(RULES, inc)
    latest: dict[Any, dict[str, Any]] = {}
    previous: datetime | None = None
    for bound in bounds:
        for event in advance(inventory, _cut(readings, bound, previous), state, bound, config=RULES,
                             incremental=inc).events:
            latest[_id(event)] = event.to_json("en")
        previous = bound
    assert latest == _single(one)
    first_kept = min(float(s.times_s[0]) for s in state.readings.values() if s.times_s.size)
    assert first_kept > (START + timedelta(days=3)).timestamp(), "the histories rolled"


def test_models_carry_on_across_a_rolled_history(inventory: Inventory, readings: dict[str, PointSeries]) -> None:
    """Histories of 21 days rolled every 7: at a roll a building's models carry on where they stood.

    Hour by hour across the town hall's first roll gives one pass's events and expected values. After its two
    rolls, the hours its history kept from before the first roll hold the values of a history that never
    rolled (they were not walked again from the new start), and the forest fitted at day 14 is still the one
    in use, as without a roll (a forest is refitted every 28 days): the models were not started again.
    """
    rolled = IncrementalConfig(history=timedelta(days=21), roll_every=timedelta(days=7))
    end = START + timedelta(days=DAYS) - timedelta(hours=1)
    state = DetectorState.fresh(MODELS, rolled)
    one, one_series = _stepped_with_expected(inventory, readings, [end], state, MODELS, incremental=rolled)
    roll = START + timedelta(days=21, hours=94)  # the town hall's first roll: hour 94 of its 168 (refit_phase)
    hourly = [roll + timedelta(hours=h) for h in range(-2, 3)]
    stepped, stepped_series = _stepped_with_expected(inventory, readings, [*hourly, end],
                                                     DetectorState.fresh(MODELS, rolled), MODELS, incremental=rolled)
    assert stepped == one
    _same_series(stepped_series, one_series)
    plain = DetectorState.fresh(MODELS)
    _stepped_with_expected(inventory, readings, [end], plain, MODELS)
    start_s, carried = state.models["mairie"]
    moved = round((start_s - START.timestamp()) / 3600)
    kept = round((roll - START) / timedelta(hours=1)) - moved  # hours of the last history before the first roll
    assert moved > 7 * 24, "the town hall's history rolled twice"
    assert kept > 0
    forests = 0
    for usage, progress in carried.items():
        before = plain.models["mairie"][1][usage]
        for name in ("expected", "scores", "flagged", "rows"):
            np.testing.assert_array_equal(getattr(progress, name)[:kept], getattr(before, name)[moved:moved + kept],
                                          err_msg=f"{usage} {name}")
        assert progress.forest_fits == before.forest_fits
        if before.forest is not None:
            forests += 1
            assert progress.forest is not None
            rows = before.rows[np.isfinite(before.rows).all(axis=1)]
            np.testing.assert_array_equal(progress.forest.score_many(rows), before.forest.score_many(rows))
    assert forests, "a forest was fitted: the test would prove little"


def test_a_weather_silence_across_a_roll_leaves_its_hours_unknown_as_the_new_history_has_them(
        inventory: Inventory, readings: dict[str, PointSeries]) -> None:
    """The station silent from 30 h before the town hall's sixth history start to 30 h after it, histories of 15 days
    rolled every 3: before the roll its silent hours are expected at a bounded weather (the coldest day before
    the silence); the history after the roll holds no temperature before them, so, carried over, they are
    unknown, as that history has them, not plain expected values that fits, day bounds and features would read."""
    from anomalies.detect import refit_phase
    from inventory import Usage

    rolled = IncrementalConfig(history=timedelta(days=15), roll_every=timedelta(days=3))
    start = START + timedelta(hours=refit_phase("mairie") % 72 + 72 * 5)
    roll = start + timedelta(days=15)
    lo, hi = (start - timedelta(hours=30)).timestamp(), (start + timedelta(hours=30)).timestamp()
    weather = {p.id for _, p in inventory.points() if p.usage is Usage.WEATHER}
    gapped = {pid: s if pid not in weather else PointSeries(s.times_s[(s.times_s < lo) | (s.times_s >= hi)],
                                                            s.values[(s.times_s < lo) | (s.times_s >= hi)])
              for pid, s in readings.items()}
    state = DetectorState.fresh(MODELS, rolled)
    advance(inventory, _cut(gapped, roll - timedelta(hours=1)), state, roll - timedelta(hours=1), config=MODELS,
            incremental=rolled)
    before_s, before = state.models["mairie"]
    advance(inventory, _cut(gapped, roll + timedelta(hours=1), roll - timedelta(hours=1)), state,
            roll + timedelta(hours=1), config=MODELS, incremental=rolled)
    after_s, after = state.models["mairie"]
    assert after_s == start.timestamp(), "the town hall's history rolled to the start in the silence"
    moved = round((after_s - before_s) / 3600)
    silent = slice(0, 24)  # hours of the new history whose 24 hours the station was silent for
    bounded = [u for u, p in before.items() if np.isfinite(p.expected[moved:][silent]).all()]
    assert bounded, "no model expected the silent hours at a bound before the roll: the test would prove little"
    for usage in bounded:
        assert np.isnan(after[usage].expected[silent]).all(), usage
        assert np.isnan(after[usage].rows[silent]).all(), usage
        assert not after[usage].model_flag[silent].any(), usage


def test_a_growing_file_sent_again_after_rolls_gives_one_pass_s_values(inventory: Inventory,
                                                                         readings: dict[str, PointSeries]) -> None:
    """Each run given every reading so far (a growing export, ``econome detect --state``), histories rolled.

    The readings before the history the state keeps come again each run: they are not late readings (they
    change no hour still computed), so the models carry on across the rolls as in one pass, rather than
    starting again from the history's start (every building's expected values changed, a model alert opened).
    """
    rolled = IncrementalConfig(history=timedelta(days=21), roll_every=timedelta(days=7))
    end = START + timedelta(days=DAYS) - timedelta(hours=1)
    one, one_series = _stepped_with_expected(inventory, readings, [end], DetectorState.fresh(MODELS, rolled), MODELS,
                                             incremental=rolled)
    state = DetectorState.fresh(MODELS, rolled)
    latest: dict[Any, dict[str, Any]] = {}
    series: dict[Any, list[np.ndarray]] = {}

    def keep(s: Any) -> None:
        got = series.setdefault((s.building, s.usage), [np.empty(0), np.empty(0), np.empty(0)])
        for i, values in enumerate((s.times_s, s.observed, s.expected)):
            got[i] = np.concatenate([got[i], values])

    second = START + timedelta(days=32)  # every building's history rolled, its first readings no longer kept
    for bound in (second, end):
        result = advance(inventory, _cut(readings, bound), state, bound, config=MODELS, on_expected=keep,
                         incremental=rolled)
        latest.update({_id(e): e.to_json("en") for e in result.events})
        if bound == second:
            assert min(s.times_s[0] for s in state.readings.values() if s.times_s.size) > START.timestamp() + 86400
    assert latest == one
    _same_series(series, one_series)


def test_saved_state_resumes_without_re_alerting_and_reports_resolution_once(tmp_path: Path, inventory: Inventory,
                                                 readings: dict[str, PointSeries], whole: list[AnomalyEvent]) -> None:
    """Stop inside the stuck counter, resume from the file: nothing re-opens, its resolution comes once."""
    split = datetime(2026, 1, 21, 12, tzinfo=UTC)
    end = START + timedelta(days=DAYS) - timedelta(hours=1)
    state = DetectorState.fresh(RULES)
    first = advance(inventory, _cut(readings, split), state, split, config=RULES).events
    path = tmp_path / "state.npz"
    state.save(path)
    resumed = DetectorState.load(path)
    second = advance(inventory, _cut(readings, end, split), resumed, end, config=RULES).events
    stuck = [e.state for e in first if e.kind == "stale_counter"]
    assert stuck in ([AlertState.OPEN], [AlertState.ONGOING])
    assert not [e for e in second if e.state is AlertState.OPEN and e.detected_at <= split]
    assert [e.state for e in second if e.kind == "stale_counter"] == [AlertState.RESOLVED]
    merged = {_id(e): e.to_json("en") for e in [*first, *second]}
    assert merged == _single(whole)
    # Nothing new: a third advance over the same readings reports nothing.
    assert advance(inventory, readings, resumed, end, config=RULES).events == []


def test_corrupt_or_foreign_state_is_named(tmp_path: Path) -> None:
    path = tmp_path / "state.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(DecodeError, match=r"state\.npz"):
        DetectorState.load(path)
    DetectorState.fresh(RULES).save(path)
    assert DetectorState.load(path).last_hour is None


def test_state_of_other_settings_is_refused(inventory: Inventory, readings: dict[str, PointSeries]) -> None:
    with pytest.raises(ConfigError, match="other detection settings"):
        advance(inventory, readings, DetectorState.fresh(RULES), config=DetectConfig())


def test_detect_command_with_state_reports_only_new_transitions(tmp_path: Path, inventory: Inventory,
                                                                readings: dict[str, PointSeries]) -> None:
    app = typer.Typer()
    register(app)
    state, out = tmp_path / "state.npz", tmp_path / "events.jsonl"
    lines: list[list[dict[str, Any]]] = []
    for at in (datetime(2026, 1, 21, 12, tzinfo=UTC), datetime(2026, 1, 26, tzinfo=UTC)):
        csv = tmp_path / "readings.csv"
        with csv.open("w") as handle:
            handle.write("timestamp,point,value\n")
            for pid, s in _cut(readings, at).items():
                for t, v in zip(s.times_s.tolist(), s.values.tolist(), strict=True):
                    handle.write(f"{datetime.fromtimestamp(t, UTC).isoformat()},{pid},{v!r}\n")
        result = CliRunner().invoke(app, ["--inventory", str(ROOT / "examples" / "commune.yaml"), "--readings", str(csv),
                                          "--out", str(out), "--state", str(state), "--no-models"])
        assert result.exit_code == 0, result.output
        lines.append([json.loads(x) for x in out.read_text().splitlines()])
    first_keys = {(e["building"], e["kind"], e["start"]) for e in lines[0]}
    assert ("bibliotheque", "stale_counter") in {(b, k) for b, k, _ in first_keys}
    # The stuck counter opened in the first run: the second run only reports its resolution.
    again = [e for e in lines[1] if (e["building"], e["kind"], e["start"]) in first_keys]
    assert again
    assert all(e["state"] != "open" for e in again)
    assert any(e["building"] == "gymnase-batum" and e["kind"] == "heating_unoccupied" for e in lines[1])
    state.write_bytes(b"\x00garbage")
    bad = CliRunner().invoke(app, ["--inventory", str(ROOT / "examples" / "commune.yaml"), "--readings", str(csv),
                                   "--out", str(out), "--state", str(state), "--no-models"])
    assert bad.exit_code == 3
    assert "state.npz" in bad.output


def test_a_lagging_point_holds_the_hours_back_and_a_silent_one_does_not(
    inventory: Inventory, readings: dict[str, PointSeries], whole: list[AnomalyEvent]
) -> None:
    """A counter read late must not leave its hours unknown for ever: the live run waits for it."""
    at = START + timedelta(days=20, hours=10)
    lagging = next(p.id for _, p in inventory.points() if p.cumulative)
    late = _cut(readings, at)
    late[lagging] = _cut({lagging: readings[lagging]}, at - timedelta(minutes=90))[lagging]
    state = DetectorState.fresh(RULES)
    seen = {_id(e): e for e in advance(inventory, late, state, config=RULES).events}
    assert state.last_hour is not None
    assert state.last_hour <= at - timedelta(minutes=90)
    # It catches up: the two advances report what one pass over the whole series reports.
    rest = _cut(readings, START + timedelta(days=DAYS), since=at - timedelta(minutes=90))
    seen.update({_id(e): e for e in advance(inventory, rest, state, config=RULES).events})
    assert {k: e.to_json("en") for k, e in seen.items()} == {_id(e): e.to_json("en") for e in whole}
    # A point silent for longer than max_wait does not hold the others back.
    silent = _cut(readings, at)
    silent[lagging] = _cut({lagging: readings[lagging]}, at - timedelta(hours=5))[lagging]
    state = DetectorState.fresh(RULES)
    advance(inventory, silent, state, config=RULES)
    assert state.last_hour == at.replace(minute=0)


def _same(a: object, b: object, where: str) -> None:
    """Equal field by field, arrays element by element (nan equal to nan), recursively through dataclasses."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            _same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, dict):
        assert isinstance(b, dict), where
        assert list(a) == list(b), where
        for k in a:
            _same(a[k], b[k], f"{where}[{k}]")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple), where
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("building_id", ["mairie", "centre-culturel", "ecole-jaures"])
def test_a_building_s_own_frame_gives_the_findings_of_the_portfolio_frame(
    inventory: Inventory, readings: dict[str, PointSeries], building_id: str
) -> None:
    """``advance`` builds one building's hourly frame at a time (its points and the weather's), not the portfolio's.

    Every finding, score, expected series and typical consumption (models on) is the same, bit for bit, as from
    the frame of every point of the commune: the memory saved changes no event. The weather station is the town
    hall's; the cultural centre has a sub-meter and a virtual meter; the school has the most points.
    """
    from anomalies.detect import building_findings
    from anomalies.features import HourlyFrame
    from inventory import FrenchCalendar, Usage

    config = DetectConfig(model_events=True)
    counters = {p.id for _, p in inventory.points() if p.cumulative}
    start_s = START.timestamp()
    hours = DAYS * 24
    calendar = FrenchCalendar(inventory.organisation.school_holiday_zone)
    portfolio = HourlyFrame.build(readings, counters=counters, start_s=start_s, hours=hours)
    building = next(b for _, b in inventory.buildings() if b.id == building_id)
    weather = [p.id for _, p in inventory.points() if p.usage is Usage.WEATHER]
    own = {pid: readings[pid] for pid in [*weather, *(p.id for p in building.points)] if pid in readings}
    assert len(own) < len(readings) / 3
    frame = HourlyFrame.build(own, counters=counters & set(own), start_s=start_s, hours=hours)
    full = building_findings(inventory, building, readings, portfolio, calendar, config)
    alone = building_findings(inventory, building, own, frame, calendar, config)
    assert full.rules, "the commune's faults give this building findings to compare"
    assert full.expected, "and an expected model"
    _same(full, alone, building_id)


def test_state_file_is_an_npz_with_the_rule_memo_and_times_kept_exactly(tmp_path: Path, inventory: Inventory,
                                                                          readings: dict[str, PointSeries]) -> None:
    """Format 4 (as 3) is an ``.npz`` whatever writes it: metadata and times deflated (times as runs of millisecond
    steps), values, memo and clock columns stored; ``np.savez_compressed`` of its arrays reads back the same; times
    that are not whole milliseconds (a CSV's microseconds) are kept as float64, bit for bit."""
    import zipfile

    state = DetectorState.fresh(RULES)
    advance(inventory, _cut(readings, START + timedelta(days=3)), state, config=RULES)
    odd = sorted(state.readings)[0]
    state.readings[odd] = PointSeries(state.readings[odd].times_s + 1e-6, state.readings[odd].values)
    path = tmp_path / "state.npz"
    state.save(path)
    with zipfile.ZipFile(path) as archive:
        kinds = {i.filename: i.compress_type for i in archive.infolist()}
    assert kinds["meta.npy"] == kinds["r1.npy"] == kinds["t0.npy"] == zipfile.ZIP_DEFLATED
    assert kinds["v0.npy"] == kinds["memo0_digests.npy"] == kinds["clock0_open.npy"] == zipfile.ZIP_STORED
    assert "r0.npy" not in kinds
    with np.load(path, allow_pickle=False) as new:
        arrays = {k: new[k] for k in new.files}
    assert arrays["r1"].shape[0] < 20 < state.readings[sorted(state.readings)[1]].times_s.size
    old = tmp_path / "old.npz"
    np.savez_compressed(old, **arrays)
    for back in (DetectorState.load(path), DetectorState.load(old)):
        assert back.last_hour == state.last_hour
        assert back.tracks == state.tracks
        assert list(back.readings) == sorted(state.readings)
        assert len(back.rule_memo) == len(state.rule_memo) > 0
        for pid, series in state.readings.items():
            np.testing.assert_array_equal(back.readings[pid].times_s, series.times_s, err_msg=pid)
            np.testing.assert_array_equal(back.readings[pid].values, series.values, err_msg=pid)


def test_the_rule_memo_saved_with_the_state_spares_the_first_pass_after_a_load(
        tmp_path: Path, inventory: Inventory, readings: dict[str, PointSeries], caplog: pytest.LogCaptureFixture) -> None:
    """A service restarted from its file judges only the new day, as it would have without stopping; a memo
    that cannot be read (another memo format) only costs a whole judgement, with the same events."""
    split = START + timedelta(days=20)
    end = split + timedelta(days=1)
    kept = DetectorState.fresh(RULES)
    advance(inventory, _cut(readings, split), kept, split, config=RULES)
    path = tmp_path / "state.npz"
    kept.save(path)
    loaded = DetectorState.load(path)
    days_before = kept.rule_memo.recomputed_days
    held = advance(inventory, _cut(readings, end, split), kept, end, config=RULES).events
    spared = kept.rule_memo.recomputed_days - days_before
    resumed = advance(inventory, _cut(readings, end, split), loaded, end, config=RULES).events
    assert [e.to_json("en") for e in resumed] == [e.to_json("en") for e in held]
    assert loaded.rule_memo.recomputed_days == spared
    assert loaded.clock.computed == 0  # the clock columns came with the file too (format 4)
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    memo_meta = json.loads(str(arrays["memo_meta"]))
    memo_meta["format_version"] = -1
    arrays["memo_meta"] = np.array(json.dumps(memo_meta))
    np.savez(path, **arrays)
    with caplog.at_level("WARNING", logger="anomalies.incremental"):
        unread = DetectorState.load(path)
    assert len(unread.rule_memo) == 0
    assert "rule memo of the detection state not read" in caplog.text
    again = advance(inventory, _cut(readings, end, split), unread, end, config=RULES).events
    assert [e.to_json("en") for e in again] == [e.to_json("en") for e in held]
    assert unread.rule_memo.recomputed_days > 10 * max(spared, 1)


def test_a_state_split_per_building_resumes_as_the_whole_one(tmp_path: Path, inventory: Inventory,
                                                              readings: dict[str, PointSeries],
                                                              one_pass_models: Any) -> None:
    """The live service's upgrade: a state of every building, split into one file per building
    (:meth:`DetectorState.part`) inside the stuck counter and the leak, each advanced on its own readings (its
    points and the weather's), gives the events and expected values of never splitting, models and forests
    included; nothing re-opens and each building's file holds only its own points, alerts and models."""
    config = SPREAD
    split = datetime(2026, 1, 28, 12, tzinfo=UTC)
    end = START + timedelta(days=DAYS) - timedelta(hours=1)
    kept, kept_series = one_pass_models  # one pass to the end: what advancing in two chunks gives (tested above)
    state = DetectorState.fresh(config)
    before, before_series = _stepped_with_expected(inventory, readings, [split], state, config)
    assert any(e["state"] != "resolved" for e in before.values())
    weather = [p.id for _, p in inventory.points() if p.usage.value == "weather"]
    latest = dict(before)
    series = dict(before_series)
    for _, building in inventory.buildings():
        points = [*weather, *(p.id for p in building.points)]
        path = tmp_path / f"{building.id}.npz"
        state.part(building.id, points).save(path)
        part = DetectorState.load(path)
        assert set(part.readings) <= set(points)
        assert {k[0] for k in part.tracks} <= {building.id}
        assert set(part.models) <= {building.id}
        mine = {pid: s for pid, s in _cut(readings, end, split).items() if pid in points}

        def keep(found: Any) -> None:
            key = (found.building, found.usage)
            series[key] = [np.concatenate([a, b]) for a, b in
                           zip(series[key], (found.times_s, found.observed, found.expected), strict=True)]

        result = advance(inventory, mine, part, end, config=config, on_expected=keep, judged={building.id})
        assert not [e for e in result.events if e.state is AlertState.OPEN and e.detected_at <= split]
        latest.update({_id(e): e.to_json("en") for e in result.events})
    assert latest == kept
    _same_series(series, kept_series)


def test_a_state_of_the_release_before_a_new_setting_loads_with_it_at_its_default() -> None:
    """The digest of the default settings is the one the release before ``model_water_open_hours`` (173848d)
    wrote in every state file: with it counted in, the upgrade moved every building's state aside and closed
    its open alerts as reset; so does ``model_beyond_reference`` (twelfth round). Set otherwise, the setting is
    another setting."""
    assert DetectorState.fresh(DetectConfig()).config_digest == "161602139bbef699"
    for counted in (DetectConfig(model_water_open_hours=True), DetectConfig(model_beyond_reference=3.0),
                    DetectConfig(model_beyond_reference=None)):
        assert DetectorState.fresh(counted).config_digest != DetectorState.fresh(DetectConfig()).config_digest
