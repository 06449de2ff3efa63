"""Live detection without a database: the schedule on an injected clock, settings, a corrupt state, no e-mail.

InfluxDB is a closed loopback port here, so every pass fails fast (as with
InfluxDB down); what is tested is when passes run and what survives a failure.
The passes on a real InfluxDB are in ``tests/integration/test_live_detection.py``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from anomalies.detect import DetectConfig
from anomalies.events import AlertState
from anomalies.incremental import DetectorState
from anomalies.live import LiveConfig, LiveDetector, LoggingNotifier, building_lag, lag_groups, lagged_state_path, next_run
from econome.localservers import free_port
from inventory import Inventory, load_inventory
from streams.clock import ManualClock
from streams.influx import InfluxConfig

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return load_inventory(ROOT / "examples" / "commune.yaml")


def _down() -> InfluxConfig:
    return InfluxConfig(url=f"http://127.0.0.1:{free_port()}", database="econome")


@pytest.mark.parametrize(
    ("now", "every", "delay", "expected"),
    [
        ("10:04:59", "1h", "5min", "10:05:00"),
        ("10:05:00", "1h", "5min", "11:05:00"),
        ("23:59:00", "1h", "5min", "00:05:00"),
        ("10:16:00", "15min", "1min", "10:31:00"),
        ("10:00:00", "1h", "0s", "11:00:00"),
    ],
)
def test_next_run_falls_on_the_period_plus_the_delay(now: str, every: str, delay: str, expected: str) -> None:
    config = LiveConfig.model_validate({"every": every, "delay": delay})
    at = datetime.fromisoformat(f"2026-01-05T{now}+00:00")
    got = next_run(at, config)
    assert got > at
    assert got.time().isoformat() == expected


def test_a_delay_not_shorter_than_the_period_is_refused() -> None:
    with pytest.raises(ValueError, match="delay"):
        LiveConfig.model_validate({"every": "1h", "delay": "1h"})


async def test_serve_runs_at_start_then_at_each_period_and_delay(inventory: Inventory, tmp_path: Path) -> None:
    """A pass at start (catch-up), then at 10:05, 11:05; three hours down at once give one pass, not three."""
    clock = ManualClock(datetime(2026, 1, 5, 10, 4, tzinfo=UTC))
    passes: asyncio.Queue[datetime] = asyncio.Queue()
    detector = LiveDetector(inventory, _down(), tmp_path / "detect" / "state.npz",
                            on_pass=lambda _report: passes.put_nowait(clock.now()))
    task = asyncio.create_task(detector.serve(clock), name="live-detection")
    try:
        seen = [await asyncio.wait_for(passes.get(), timeout=60)]
        for step in (timedelta(minutes=1), timedelta(minutes=30), timedelta(minutes=30), timedelta(hours=3)):
            clock.advance(step)
            if clock.now().minute == 5:
                seen.append(await asyncio.wait_for(passes.get(), timeout=60))
        assert passes.empty()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [t.strftime("%H:%M") for t in seen] == ["10:04", "10:05", "11:05", "14:05"]
    assert detector.failures == 4  # InfluxDB down: every pass failed, none stopped the schedule


async def test_a_failed_pass_names_the_server_once_and_saves_nothing(
    inventory: Inventory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _down()
    state = tmp_path / "state.npz"
    detector = LiveDetector(inventory, config, state)
    with caplog.at_level(logging.DEBUG, logger="anomalies.live"):
        assert await detector.tick(datetime(2026, 1, 5, 10, 5, tzinfo=UTC)) is None
        assert await detector.tick(datetime(2026, 1, 5, 11, 5, tzinfo=UTC)) is None
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, "a repeat is logged at DEBUG"
    assert config.url in errors[0].getMessage()
    assert not state.exists()


async def test_an_unreadable_state_is_moved_aside_and_detection_starts_afresh(
    inventory: Inventory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state.npz"
    state.write_bytes(b"not a zip file")
    detector = LiveDetector(inventory, _down(), state)
    with caplog.at_level(logging.ERROR, logger="anomalies.live"):
        await detector.tick(datetime(2026, 1, 5, 10, 5, tzinfo=UTC))
    moved = list(tmp_path.glob("state.npz.unreadable-*"))
    assert [p.read_bytes() for p in moved] == [b"not a zip file"]
    assert not state.exists()
    assert str(state) in caplog.text


async def test_a_state_of_other_detection_settings_is_moved_aside_and_detection_starts_afresh(
    inventory: Inventory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What an upgrade that changes a detection default does (OPERATIONS "Upgrades"): the state is kept aside, not read."""
    state = tmp_path / "state.npz"
    DetectorState.fresh(DetectConfig(model_day_min_share=0.3)).save(state)
    saved = state.read_bytes()
    detector = LiveDetector(inventory, _down(), state)
    with caplog.at_level(logging.ERROR, logger="anomalies.live"):
        await detector.tick(datetime(2026, 1, 5, 10, 5, tzinfo=UTC))
    moved = list(tmp_path.glob("state.npz.other-settings-*"))
    assert [p.read_bytes() for p in moved] == [saved]
    assert not state.exists()
    assert "built with other detection settings" in caplog.text
    assert str(state) in caplog.text


def test_the_logging_notifier_logs_opened_and_resolved_alerts(caplog: pytest.LogCaptureFixture) -> None:
    from anomalies.events import _sample_event

    event = _sample_event()
    with caplog.at_level(logging.INFO, logger="anomalies.live"):
        LoggingNotifier().queue([event, event.with_state(AlertState.RESOLVED), event.with_state(AlertState.ONGOING)],
                                datetime(2026, 1, 5, tzinfo=UTC))
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [f"alert {event.state.value}", "alert resolved"]


def test_buildings_wait_for_their_utilities_unless_they_have_a_meter_of_ours(inventory: Inventory) -> None:
    """Lag of a building: 0 with a live counter, else the largest publication delay of its utility meters."""
    school, hall, town_hall = (inventory.building(b) for b in ("maternelle-aulnes", "salle-polyvalente", "mairie"))
    assert building_lag(school) == timedelta(days=2)  # a Linky alone
    assert building_lag(hall) == timedelta(days=4)  # a Linky and a Gazpar: the Gazpar's
    assert building_lag(town_hall) == timedelta(0)
    gazpar = next(p for p in hall.points if p.grdf is not None)
    monthly = gazpar.model_copy(update={"grdf": gazpar.grdf.model_copy(update={"publication": "monthly"})})  # type: ignore[union-attr]
    assert building_lag(hall.model_copy(update={"points": [monthly if p is gazpar else p for p in hall.points]})) == (
        timedelta(days=52))
    # A Linky beside meters of ours: judged at once, with its live meters.
    mixed = town_hall.model_copy(update={"points": [*town_hall.points, *school.points]})
    assert building_lag(mixed) == timedelta(0)
    groups = lag_groups(inventory)
    assert groups[timedelta(days=2)] == ["maternelle-aulnes"]
    assert groups[timedelta(days=4)] == ["salle-polyvalente"]
    assert "mairie" in groups[timedelta(0)]
    assert lagged_state_path(Path("d/state.npz"), timedelta(days=4)) == Path("d/state.lag-96h.npz")
    assert lagged_state_path(Path("d/state.npz"), timedelta(0)) == Path("d/state.npz")


def test_status_counts_a_lagged_state_behind_only_past_its_lag(tmp_path: Path) -> None:
    """``econome status``: the Linky buildings' state two days old is on time, the Gazpar one six days old is not."""
    from anomalies.detect import DetectConfig
    from anomalies.incremental import DetectorState
    from econome.cli_status import _detection

    now = datetime(2026, 1, 12, 10, 7, tzinfo=UTC)
    hour = now.replace(minute=0)
    for name, age in (("state.npz", timedelta(hours=1)), ("state.lag-48h.npz", timedelta(days=2, hours=1)),
                      ("state.lag-96h.npz", timedelta(days=6))):
        state = DetectorState.fresh(DetectConfig())
        state.last_hour = hour - age
        state.save(tmp_path / name)
    lines, data = _detection(tmp_path, now, UTC, timedelta(hours=2, minutes=5))
    problems = {Path(d["path"]).name: d["problem"] for d in data}
    assert problems["state.npz"] is None
    assert problems["state.lag-48h.npz"] is None
    assert problems["state.lag-96h.npz"] is not None
    assert "the utilities' 4 d" in problems["state.lag-96h.npz"]
    assert sum("PROBLEM" in line for line in lines) == 1
