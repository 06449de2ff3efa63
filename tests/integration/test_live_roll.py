"""Live detection across a rolled history: the models carried on give a replay's events and expected values."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from anomalies.detect import refit_phase
from anomalies.features import PointSeries
from anomalies.incremental import DetectorState, IncrementalConfig, advance
from anomalies.live import LiveDetector, building_state_path
from inventory import Inventory
from streams.influx import InfluxConfig

from .test_live_detection import (  # noqa: F401  (readings, town_hall: fixtures)
    CONFIG,
    LIVE,
    START,
    RecordingNotifier,
    _at,
    _fill,
    _rows,
    readings,
    town_hall,
)

ROLLED = IncrementalConfig(history=timedelta(days=6), roll_every=timedelta(days=2))  # a roll within the ten days


async def test_live_passes_across_a_roll_give_a_replay_s_events_and_expected_values(
    influxdb_server: Any, unique_name: str, town_hall: tuple[Path, Inventory],  # noqa: F811
    readings: dict[str, PointSeries], tmp_path: Path,  # noqa: F811
) -> None:
    """Hourly passes on InfluxDB around the town hall's roll, each loading and saving its state file."""
    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    inv = town_hall[1]
    await _fill(inv, readings, config)
    roll = START + timedelta(days=6, hours=refit_phase("mairie") % 48)
    state_path = tmp_path / "detect" / "state.npz"
    detector = LiveDetector(inv, config, state_path, RecordingNotifier(), config=CONFIG, live=LIVE,
                            incremental=ROLLED)
    live: dict[Any, Any] = {}
    last = None
    for tick in [_at(9, 3), *(roll + timedelta(hours=h, minutes=5) for h in range(-2, 3)), _at(14, 20)]:
        report = await detector.tick(tick)
        assert report is not None
        last = report.last_hour
        live.update({(e.key, e.start): e.to_json("en") for e in report.events})
    held = DetectorState.load(building_state_path(state_path, "mairie"))
    start_s, progress = held.models["mairie"]
    assert start_s == (roll - timedelta(days=6)).timestamp(), "the history rolled"
    assert all(p.fit.fits > 1 for p in progress.values()), "fitted before the roll, refitted after"

    expected: dict[str, list[Any]] = {}
    replay = advance(inv, readings, DetectorState.fresh(CONFIG, ROLLED), last, config=CONFIG, incremental=ROLLED,
                     on_expected=lambda s: expected.setdefault(s.usage.value, []).append(s))
    assert live == {(e.key, e.start): e.to_json("en") for e in replay.events}
    rows = _rows(config, 'SELECT "expected", "usage" FROM "expected"')
    compared = 0
    for usage, parts in expected.items():
        stored = {int(r[0]): r[1] for r in rows if r[2] == usage}
        times, values = np.concatenate([s.times_s for s in parts]), np.concatenate([s.expected for s in parts])
        for t, value in zip(times.tolist(), values.tolist(), strict=True):
            if int(t * 1000) in stored:
                assert stored[int(t * 1000)] == value, (usage, t)
                compared += 1
    assert compared > 24 * 3 * len(expected), "the hours after the roll were compared"
