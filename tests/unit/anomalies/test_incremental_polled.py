"""Incremental detection on readings as a live pipeline stamps them: polled off the hour, passed hour by hour.

A live service (``anomalies.live``) runs :func:`anomalies.incremental.advance` once an hour on the
readings InfluxDB holds. Its meters are polled every 15 minutes at whatever minute the poll
scheduler chose (:06, :21, :36, :51), not on the hour as a generated history is, and each pass
processes one hour that ends in the night. Two bugs made such a service blind while replays of
generated histories were fine:

- a pass cut the readings at the end of its last hour, so a counter had no reading after it and
  the hour's consumption stayed unknown, for every hour (no leak, no heating fault, ever);
- the heating rules took the last hour of a frame for the eve of an opening (the closure seemed to
  end with the frame), so a night hour was never judged while it was the newest.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from anomalies.detect import DetectConfig, detect
from anomalies.events import AlertState, AnomalyEvent
from anomalies.features import PointSeries
from anomalies.incremental import DetectorState, advance
from inventory import Inventory, load_inventory
from simulator import Fault, FaultKind
from simulator.physics import generate_history

ROOT = Path(__file__).resolve().parents[3]
RULES = DetectConfig(models=False)


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return load_inventory(ROOT / "examples" / "commune.yaml")


def _faults(inv: Inventory) -> list[Fault]:
    tz = inv.organisation.tz
    return [
        Fault(kind=FaultKind.HEATING_LEFT_ON, building="mairie",
              start=datetime(2026, 1, 26, 18, tzinfo=tz), end=datetime(2026, 1, 27, 7, tzinfo=tz)),
        Fault(kind=FaultKind.WATER_LEAK, building="bibliotheque",
              start=datetime(2026, 1, 26, 20, tzinfo=tz), end=datetime(2026, 1, 27, 8, tzinfo=tz)),
    ]


@pytest.fixture(scope="module")
def polled(inventory: Inventory) -> dict[str, PointSeries]:
    """Three weeks and a half, every point sampled every 15 min from 6 min past the hour."""
    tz = inventory.organisation.tz
    start = datetime(2026, 1, 5, 0, 6, tzinfo=tz)
    history = generate_history(inventory, start, datetime(2026, 1, 28, 12, tzinfo=tz), timedelta(minutes=15),
                               faults=_faults(inventory))
    seconds = history.times.astype("datetime64[ms]").astype(np.int64) / 1000.0
    return {
        pid: PointSeries(seconds[np.isfinite(col)], col[np.isfinite(col)])
        for pid, col in zip(history.point_ids, history.values.T, strict=True)
    }


def _upto(readings: dict[str, PointSeries], since: float, until: float) -> dict[str, PointSeries]:
    return {p: PointSeries(s.times_s[(s.times_s >= since) & (s.times_s < until)],
                           s.values[(s.times_s >= since) & (s.times_s < until)]) for p, s in readings.items()}


def _key(event: AnomalyEvent) -> tuple[str, str, str, str, datetime]:
    return (event.building, event.usage, event.kind, event.point or "", event.start)


def _faulty(events: list[AnomalyEvent]) -> list[AnomalyEvent]:
    return [e for e in events if (e.building, e.kind) in {("mairie", "heating_unoccupied"),
                                                           ("bibliotheque", "water_leak")}]


def test_hourly_passes_on_polled_meters_see_the_night_faults_as_a_replay_does(
    inventory: Inventory, polled: dict[str, PointSeries]
) -> None:
    """Passes at 5 past every hour, each on the readings stamped before it, open both faults during the night."""
    tz = inventory.organisation.tz
    state = DetectorState.fresh(RULES)
    first = datetime(2026, 1, 26, 17, 5, tzinfo=tz)
    advance(inventory, _upto(polled, -np.inf, first.timestamp()), state, first, config=RULES)
    latest: dict[Any, AnomalyEvent] = {}
    opened: dict[str, datetime] = {}
    now = first
    while now < datetime(2026, 1, 27, 9, 5, tzinfo=tz):
        now += timedelta(hours=1)
        assert state.last_hour is not None
        since = (state.last_hour - timedelta(hours=6)).timestamp()
        result = advance(inventory, _upto(polled, since, now.timestamp()), state, now, config=RULES)
        for event in _faulty(result.events):
            latest[_key(event)] = event
            if event.state is AlertState.OPEN:
                opened.setdefault(event.building, now)
    # Both faults open while they run, as one alert each.
    assert set(opened) == {"mairie", "bibliotheque"}, latest
    assert opened["mairie"] < datetime(2026, 1, 27, 7, tzinfo=tz)
    assert opened["bibliotheque"] < datetime(2026, 1, 27, 8, tzinfo=tz)
    assert len(latest) == 2, latest
    # A replay of the same readings in one go knew the same alerts, from the same hour.
    replay = {_key(e): e for e in _faulty(detect(inventory, _upto(polled, -np.inf, now.timestamp()), RULES))}
    assert set(replay) == set(latest)
    for key, event in latest.items():
        assert event.detected_at == replay[key].detected_at, key
