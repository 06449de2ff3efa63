"""Live detection (:mod:`anomalies.live`) on a real InfluxDB 1.6.7: reader, passes, crash replay, catch-up, ``econome run``.

Ten simulated January days of the demo town hall alone (family A), with a
water leak from Thursday 18:00 to Saturday noon (local), are written to
InfluxDB as the pipeline writes them (:class:`streams.influx.LineEncoder`,
raw readings). Detection then runs live on them: a pass at a time ``now``
reads only what InfluxDB holds before ``now``.

VictoriaMetrics (the v2 write target of other tests) does not answer InfluxQL
``SELECT`` (its ``/query`` only lists databases), so the reader is tested on
InfluxDB 1.6.7 only; on 2.x it goes through the same ``/query`` with DBRP.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from anomalies.detect import DetectConfig
from anomalies.events import AlertState, AnomalyEvent
from anomalies.expected import ExpectedConfig
from anomalies.features import PointSeries
from anomalies.incremental import DetectorState, segment_dir
from anomalies.live import LiveConfig, LiveDetector, building_state_path, read_readings
from econome.localservers import free_port
from inventory import Inventory, load_inventory
from simulator.faults import Fault, FaultKind
from simulator.physics import generate_history
from streams.clock import ManualClock
from streams.errors import SinkError
from streams.influx import InfluxConfig, InfluxQLClient, InfluxV1Writer, LineEncoder
from streams.record import Reading

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 1, 5, tzinfo=UTC)
END = START + timedelta(days=10)
# Rules, and an expected model that fits after 4 days (the default waits 14): expected values get written.
CONFIG = DetectConfig(model_events=False, expected=ExpectedConfig(
    min_history=timedelta(days=4), refit_every=timedelta(days=1), min_days=3, min_days_per_type=1))
LIVE = LiveConfig(bootstrap=timedelta(days=5), held=0)  # each pass loads and saves the state, as at scale


@pytest.fixture(scope="module")
def town_hall(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Inventory]:
    folder = tmp_path_factory.mktemp("live")
    data = yaml.safe_load((ROOT / "examples" / "commune.yaml").read_text(encoding="utf-8"))
    data["sites"] = [data["sites"][0]]
    data["sites"][0]["buildings"] = [b for b in data["sites"][0]["buildings"] if b["id"] == "mairie"]
    path = folder / "mairie.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path, load_inventory(path)


@pytest.fixture(scope="module")
def readings(town_hall: tuple[Path, Inventory]) -> dict[str, PointSeries]:
    inv = town_hall[1]
    tz = inv.organisation.tz
    leak = Fault(kind=FaultKind.WATER_LEAK, building="mairie", start=datetime(2026, 1, 8, 18, tzinfo=tz),
                 end=datetime(2026, 1, 10, 12, tzinfo=tz), params={"flow_m3_per_h": 0.1})
    history = generate_history(inv, START, END, timedelta(minutes=15), seed=11, faults=[leak])
    seconds = history.times.astype("datetime64[ms]").astype(np.int64) / 1000.0
    return {pid: PointSeries(seconds[np.isfinite(col)], col[np.isfinite(col)])
            for pid, col in zip(history.point_ids, history.values.T, strict=True)}


async def _fill(inv: Inventory, readings: dict[str, PointSeries], config: InfluxConfig) -> None:
    """Write the readings as the pipeline does: line protocol of the LineEncoder, raw."""
    encoder = LineEncoder(inv)
    units = {p.id: p.unit for _, p in inv.points()}
    lines = [
        encoder.encode(Reading(pid, datetime.fromtimestamp(t, UTC), v, units[pid]))
        for pid, s in readings.items() for t, v in zip(s.times_s.tolist(), s.values.tolist(), strict=True)
    ]
    writer = InfluxV1Writer(config)
    try:
        await writer.ensure_database()
        for i in range(0, len(lines), 5000):
            await writer.write(lines[i:i + 5000], raw=True)
    finally:
        await writer.close()


def _rows(config: InfluxConfig, statement: str) -> list[list[Any]]:
    response = httpx.get(f"{config.url}/query", params={"db": config.database, "q": statement, "epoch": "ms"}, timeout=30)
    response.raise_for_status()
    result = response.json()["results"][0]
    assert "error" not in result, result
    return [row for series in result.get("series", []) for row in series["values"]]


class RecordingNotifier:
    """A notifier that records what it is handed; it can fail once after recording (a crash after ``queue``)."""

    def __init__(self) -> None:
        self.queued: list[list[AnomalyEvent]] = []
        self.flushed: list[datetime] = []
        self.fail_next_queue = False

    def queue(self, events: Sequence[AnomalyEvent], now: datetime) -> None:
        self.queued.append(list(events))
        if self.fail_next_queue:
            self.fail_next_queue = False
            msg = "outbox: disk full"
            raise SinkError(msg)

    async def flush(self, now: datetime) -> int:
        self.flushed.append(now)
        return 0


def _ids(events: Sequence[AnomalyEvent]) -> list[tuple[str, str, str, str, datetime, AlertState]]:
    return [(*e.key, e.start, e.state) for e in events]


def _at(day: int, hour: int, minute: int = 5) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


async def test_reader_round_trips_what_the_pipeline_writes(
    influxdb_server: Any, unique_name: str, town_hall: tuple[Path, Inventory], readings: dict[str, PointSeries]
) -> None:
    """Readings written with the project's encoder and writer come back identical, chunk boundaries included."""
    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    inv = town_hall[1]
    await _fill(inv, readings, config)
    client = InfluxQLClient(config)
    try:
        # A chunk that does not divide the range: readings at chunk edges are read once.
        back = await read_readings(client, inv, START, END, chunk=timedelta(hours=7, minutes=30))
        part = await read_readings(client, inv, START + timedelta(days=2), START + timedelta(days=3))
    finally:
        await client.close()
    assert set(back) == set(readings)
    for pid, series in readings.items():
        np.testing.assert_array_equal(back[pid].times_s, series.times_s, err_msg=pid)
        np.testing.assert_array_equal(back[pid].values, series.values, err_msg=pid)
    day = (START + timedelta(days=2)).timestamp(), (START + timedelta(days=3)).timestamp()
    for pid, series in readings.items():
        inside = (series.times_s >= day[0]) & (series.times_s < day[1])
        np.testing.assert_array_equal(part[pid].times_s, series.times_s[inside], err_msg=pid)


async def test_passes_open_one_alert_replay_after_a_crash_and_catch_up_a_resolution(
    influxdb_server: Any, unique_name: str, town_hall: tuple[Path, Inventory], readings: dict[str, PointSeries],
    tmp_path: Path,
) -> None:
    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    inv = town_hall[1]
    await _fill(inv, readings, config)
    state_path = tmp_path / "detect" / "state.npz"
    state_path.parent.mkdir()
    notifier = RecordingNotifier()
    detector = LiveDetector(inv, config, state_path, notifier, config=CONFIG, live=LIVE)

    # 1. First start on Friday 03:05: the leak (since Friday 00:00 UTC) opens, once, and reaches InfluxDB.
    first = await detector.tick(_at(9, 3))
    assert first is not None
    assert first.since == _at(4, 3, 0)
    assert first.last_hour == _at(9, 3, 0)
    assert [(e.kind, e.building, e.state) for e in first.events] == [("water_leak", "mairie", AlertState.OPEN)]
    assert _ids(notifier.queued[0]) == _ids(first.events)
    assert len(notifier.queued) == 1
    assert notifier.flushed == [_at(9, 3)]
    stored = _rows(config, 'SELECT "state", "kind" FROM "anomaly"')
    assert [(r[0], r[1], r[2]) for r in stored] == [(int(first.events[0].start.timestamp() * 1000), "open", "water_leak")]
    assert first.expected_points > 0
    assert len(_rows(config, 'SELECT "expected" FROM "expected"')) == first.expected_points
    assert DetectorState.load(building_state_path(state_path, "mairie")).last_hour == _at(9, 3, 0)

    # 2. Again within the same hour: no new hour, nothing changes, nothing queued.
    second = await detector.tick(_at(9, 3, 45))
    assert second is not None
    assert (second.hours, second.events, second.notified) == (0, [], [])
    assert len(notifier.queued) == 1
    assert len(_rows(config, 'SELECT "state" FROM "anomaly"')) == 1

    # 3. A crash after queue, before the state is saved: the pass fails, the saved state has not moved...
    notifier.fail_next_queue = True
    assert await detector.tick(_at(10, 2)) is None
    assert DetectorState.load(building_state_path(state_path, "mairie")).last_hour == _at(9, 3, 0)
    crashed = notifier.queued[-1]
    assert crashed, "the leak is ongoing: the crashed pass queued it"
    # ... so the replay hands the notifier the very same events again: its queue must be idempotent.
    replay = await detector.tick(_at(10, 2))
    assert replay is not None
    assert _ids(notifier.queued[-1]) == _ids(crashed)
    assert all(e.state is AlertState.ONGOING for e in crashed)
    assert DetectorState.load(building_state_path(state_path, "mairie")).last_hour == _at(10, 2, 0)

    # 4. Down from Saturday 02:05 to Wednesday 00:05 (a new process): every missed hour once, the resolution reported.
    later = RecordingNotifier()
    restarted = LiveDetector(inv, config, state_path, later, config=CONFIG, live=LIVE)
    caught = await restarted.tick(_at(14, 0))
    assert caught is not None
    assert caught.hours == (_at(14, 0, 0) - _at(10, 2, 0)) // timedelta(hours=1)
    leak = [e for e in caught.events if e.kind == "water_leak"]
    assert [(e.start, e.state) for e in leak] == [(first.events[0].start, AlertState.RESOLVED)]
    assert not [e for e in caught.events if e.state is AlertState.OPEN], "an alert opened before is not new"
    assert _ids(later.queued[0]) == _ids(caught.events)
    stored = _rows(config, 'SELECT "state" FROM "anomaly"')
    assert [r[1] for r in stored] == ["resolved"]
    # The building's segment files (closed 28-day spans: none in these ten days) are those its head names and no
    # other (the crashed pass's .next gone, nothing orphaned); the head holds the rest (format 5).
    head = building_state_path(state_path, "mairie")
    named = {e["name"] for e in json.loads(str(np.load(head, allow_pickle=False)["meta"]))["segments"]}
    folder = segment_dir(head)
    assert ({f.name for f in folder.iterdir()} if folder.exists() else set()) == named
    assert not head.with_name(head.name + ".next").exists()


async def test_a_first_start_notifies_only_what_is_still_open(
    influxdb_server: Any, unique_name: str, town_hall: tuple[Path, Inventory], readings: dict[str, PointSeries],
    tmp_path: Path,
) -> None:
    """The bootstrap history's resolved alerts reach InfluxDB (Grafana), not the advisors' inboxes."""
    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    inv = town_hall[1]
    await _fill(inv, readings, config)
    notifier = RecordingNotifier()
    detector = LiveDetector(inv, config, tmp_path / "state.npz", notifier, config=CONFIG,
                            live=LiveConfig(bootstrap=timedelta(days=9)))
    report = await detector.tick(_at(14, 0))
    assert report is not None
    assert [(e.kind, e.state) for e in report.events] == [("water_leak", AlertState.RESOLVED)]
    assert report.notified == []
    assert notifier.queued == []
    assert [r[1] for r in _rows(config, 'SELECT "state" FROM "anomaly"')] == ["resolved"]


async def test_influxdb_down_fails_the_pass_naming_it_and_the_next_one_catches_up(
    influxdb_server: Any, unique_name: str, town_hall: tuple[Path, Inventory], readings: dict[str, PointSeries],
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    inv = town_hall[1]
    state_path = tmp_path / "state.npz"
    down = InfluxConfig(url=f"http://127.0.0.1:{free_port()}", database=unique_name)
    notifier = RecordingNotifier()
    with caplog.at_level(logging.ERROR, logger="anomalies.live"):
        assert await LiveDetector(inv, down, state_path, notifier, config=CONFIG, live=LIVE).tick(_at(9, 12)) is None
    assert down.url in caplog.text
    assert not building_state_path(state_path, "mairie").exists()
    assert notifier.queued == []
    up = InfluxConfig(url=influxdb_server.url, database=unique_name)
    await _fill(inv, readings, up)
    report = await LiveDetector(inv, up, state_path, notifier, config=CONFIG, live=LIVE).tick(_at(9, 12))
    assert report is not None
    assert [(e.kind, e.state) for e in report.events] == [("water_leak", AlertState.ONGOING)]  # opened at 03:00
    assert _ids(notifier.queued[0]) == _ids(report.events)


async def test_a_building_whose_booking_calendar_fails_holds_back_itself_alone(
    influxdb_server: Any, unique_name: str, readings: dict[str, PointSeries], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Claims review: the library's calendar missing (a URL down before any copy was kept is the same error) failed
    # every pass, so the town hall's leak was never queued.
    data = yaml.safe_load((ROOT / "examples" / "commune.yaml").read_text(encoding="utf-8"))
    data["sites"] = [data["sites"][0]]
    buildings = {b["id"]: b for b in data["sites"][0]["buildings"]}
    buildings["bibliotheque"]["schedule"]["bookings"] = {"ical": "library.ics"}
    data["sites"][0]["buildings"] = [buildings["bibliotheque"], buildings["mairie"]]  # the library judged first
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    inv = load_inventory(path)
    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    await _fill(inv, readings, config)
    state_path = tmp_path / "detect" / "state.npz"
    notifier = RecordingNotifier()
    detector = LiveDetector(inv, config, state_path, notifier, config=CONFIG, live=LIVE)
    with caplog.at_level(logging.INFO, logger="anomalies.live"):
        first = await detector.tick(_at(9, 3))
        assert first is not None
        assert [(e.building, e.kind, e.state) for e in notifier.queued[0]] == [("mairie", "water_leak", AlertState.OPEN)]
        assert not building_state_path(state_path, "bibliotheque").exists()
        [held] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "building bibliotheque held back: booking calendar" in held.getMessage()
        assert "library.ics" in held.getMessage()
        (tmp_path / "library.ics").write_text("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//t//t//EN\nEND:VCALENDAR\n")
        assert await detector.tick(_at(9, 4)) is not None
    assert building_state_path(state_path, "bibliotheque").exists()
    assert "booking calendar of building bibliotheque reads again" in caplog.text


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECONOME_")}
    return {**env, **extra}


async def test_econome_run_starts_live_detection_and_logs_its_first_pass(
    influxdb_server: Any, mqtt_server: Any, unique_name: str, town_hall: tuple[Path, Inventory],
    readings: dict[str, PointSeries], tmp_path: Path,
) -> None:
    """``econome run`` on a scaled clock: its first pass catches up on what InfluxDB holds, writes, saves its state."""
    path, inv = town_hall
    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    await _fill(inv, readings, config)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for gw in data["modbus_gateways"]:
        gw.update(port=free_port(), timeout="500ms")  # no device answers: collection logs it and goes on
    data["mqtt_brokers"][0].update(port=mqtt_server.port, client_id=f"{unique_name}-run")
    local = tmp_path / "mairie.yaml"
    local.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    env = _env(ECONOME_INFLUX_URL=influxdb_server.url, ECONOME_INFLUX_DATABASE=unique_name,
               ECONOME_DATA_DIR=str(tmp_path / "var"), ECONOME_DETECT_BOOTSTRAP="5d", ECONOME_LOG_LEVEL="INFO")
    process = subprocess.Popen(
        [sys.executable, "-m", "econome.cli", "run", str(local), "--speed", "10", "--start", _at(9, 3).isoformat()],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    seen: list[str] = []
    try:
        assert process.stdout is not None
        loop = asyncio.get_running_loop()
        line = ""
        while "live detection pass" not in line:
            line = await asyncio.wait_for(loop.run_in_executor(None, process.stdout.readline), timeout=120)
            assert line, "econome run ended before its first detection pass:\n" + "".join(seen[-40:])
            seen.append(line)
        process.send_signal(signal.SIGTERM)
        rest, _ = await loop.run_in_executor(None, process.communicate)
        seen.append(rest)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    out = "".join(seen)
    assert process.returncode == 0, out[-3000:]
    assert "1 opened" in line, line
    assert "hours processed (up to 2026-01-09T03:00:00+00:00)" in line, line
    assert DetectorState.load(tmp_path / "var" / "detect" / "state" / "mairie.npz").last_hour == _at(9, 3, 0)
    assert [r[1] for r in _rows(config, 'SELECT "state" FROM "anomaly"')] == ["open"]



async def test_a_fresh_state_closes_the_register_s_open_alerts_as_reset(
    influxdb_server: Any, unique_name: str, town_hall: tuple[Path, Inventory], readings: dict[str, PointSeries],
    tmp_path: Path,
) -> None:
    """A lost state (or other settings) starts afresh: the register's open leak would otherwise stay open for ever."""
    from anomalies.notify import MailOutbox

    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    inv = town_hall[1]
    await _fill(inv, readings, config)
    state_path = tmp_path / "detect" / "state.npz"
    outbox = MailOutbox(tmp_path / "detect" / "alerts.sqlite", None, inv, ManualClock(_at(9, 3)))
    assert await LiveDetector(inv, config, state_path, outbox, config=CONFIG, live=LIVE).tick(_at(9, 3)) is not None
    [leak] = outbox.register.alerts()
    assert leak.kind == "water_leak"

    # The state lost; the leak ends (Saturday noon) while detection starts afresh on Wednesday.
    building_state_path(state_path, "mairie").unlink()
    fresh = LiveDetector(inv, config, state_path, outbox, config=CONFIG, live=LiveConfig(bootstrap=timedelta(days=1)))
    assert await fresh.tick(_at(14, 0)) is not None
    assert outbox.register.alerts() == []
    [closed] = outbox.register.alerts(include_resolved=True)
    assert (closed.id, closed.closed, closed.resolved_at) == (leak.id, "reset", _at(14, 0))

    # A pass on the saved state closes nothing more.
    assert await fresh.tick(_at(14, 1)) is not None
    assert outbox.register.alert(leak.id).resolved_at == _at(14, 0)


async def test_an_sqlite_error_of_the_register_fails_the_pass_naming_the_file_and_the_next_one_recovers(
    influxdb_server: Any, unique_name: str, town_hall: tuple[Path, Inventory], readings: dict[str, PointSeries],
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    from anomalies.notify import AlertRegister, MailOutbox

    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    inv = town_hall[1]
    await _fill(inv, readings, config)
    register = tmp_path / "detect" / "alerts.sqlite"
    outbox = MailOutbox(register, None, inv, ManualClock(_at(9, 3)))
    for leftover in register.parent.glob("alerts.sqlite*"):
        leftover.unlink()
    register.write_bytes(b"not a database, a corrupt file " * 200)
    detector = LiveDetector(inv, config, tmp_path / "detect" / "state.npz", outbox, config=CONFIG, live=LIVE)
    with caplog.at_level(logging.ERROR, logger="anomalies.live"):
        assert await detector.tick(_at(9, 3)) is None  # caught: the task lives on
    assert str(register) in caplog.text
    assert not (tmp_path / "detect" / "state" / "mairie.npz").exists()  # the pass is replayed from the old state
    assert not list((tmp_path / "detect").glob("state/*.next"))
    register.unlink()
    AlertRegister(register)  # the operator restores the file
    report = await detector.tick(_at(9, 4))
    assert report is not None
    assert [a.kind for a in outbox.register.alerts()] == ["water_leak"]


def test_econome_run_exits_1_when_live_detection_dies(tmp_path: Path, town_hall: tuple[Path, Inventory]) -> None:
    """The live-detection task dying (here: its folder is a file) stops the run, logged, exit 1: not silent."""
    path, _ = town_hall
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for gw in data["modbus_gateways"]:
        gw.update(port=free_port(), timeout="500ms")
    data["mqtt_brokers"][0].update(port=free_port())
    local = tmp_path / "mairie.yaml"
    local.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "detect").write_text("a file where a folder should be", encoding="utf-8")
    env = _env(ECONOME_INFLUX_URL=f"http://127.0.0.1:{free_port()}", ECONOME_DATA_DIR=str(tmp_path / "var"))
    done = subprocess.run([sys.executable, "-m", "econome.cli", "run", str(local), "--duration", "120"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "live detection died" in done.stderr
    assert "live detection stopped" in done.stderr


@pytest.mark.parametrize("held", [30, 0])
async def test_a_small_portfolio_keeps_its_states_in_memory_and_a_large_one_reads_them_each_pass(
    influxdb_server: Any, unique_name: str, town_hall: tuple[Path, Inventory], readings: dict[str, PointSeries],
    tmp_path: Path, held: int,
) -> None:
    """``LiveConfig.held``: up to that many buildings, a pass goes on from the state held in memory (its file lost
    meanwhile does not matter); above, each pass reads each building's file (lost: a fresh start, a bootstrap)."""
    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    inv = town_hall[1]
    await _fill(inv, readings, config)
    state_path = tmp_path / "detect" / "state.npz"
    detector = LiveDetector(inv, config, state_path, RecordingNotifier(), config=CONFIG,
                            live=LiveConfig(bootstrap=timedelta(days=5), held=held))
    first = await detector.tick(_at(9, 3))
    assert first is not None
    building_state_path(state_path, "mairie").unlink()
    again = await detector.tick(_at(9, 4))
    assert again is not None
    if held:
        assert _at(9, 3, 0) - timedelta(hours=6) < again.since < _at(9, 3, 0)  # the margin before the last hour
    else:
        assert again.since == _at(4, 4, 0)  # a fresh start: the bootstrap again, before 04:05
    assert building_state_path(state_path, "mairie").exists()


async def test_a_corrupt_segment_is_moved_aside_once_and_the_live_pass_prunes_to_what_its_head_names(
    influxdb_server: Any, unique_name: str, town_hall: tuple[Path, Inventory], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """45 days of a town hall, a 40-day bootstrap: the state has closed 28-day spans in segment files.

    A flipped bit in one of them is found by the next pass (the state moved aside, detection afresh); the
    fresh state's save gives the same span the same name and writes it again, so the passes after it load
    the state and nothing more is moved aside. After every pass the folder holds exactly the files its head
    names: the live pass prunes the others once its next state is in place.
    """
    inv = town_hall[1]
    start = datetime(2026, 1, 5, tzinfo=UTC)
    history = generate_history(inv, start, start + timedelta(days=45), timedelta(minutes=15), seed=11)
    seconds = history.times.astype("datetime64[ms]").astype(np.int64) / 1000.0
    readings = {pid: PointSeries(seconds[np.isfinite(col)], col[np.isfinite(col)])
                for pid, col in zip(history.point_ids, history.values.T, strict=True)}
    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    await _fill(inv, readings, config)
    state_path = tmp_path / "detect" / "state.npz"
    state_path.parent.mkdir()
    detector = LiveDetector(inv, config, state_path, RecordingNotifier(), config=CONFIG,
                            live=LiveConfig(bootstrap=timedelta(days=40), held=0))
    head = building_state_path(state_path, "mairie")

    def named() -> set[str]:
        with np.load(head) as data:
            meta = json.loads(str(data["meta"]))
        return {str(s["name"]) for s in meta["segments"]} | {str(e["file"]) for e in meta["prefixes"].values()}

    at = datetime(2026, 2, 14, 3, 5, tzinfo=UTC)
    assert await detector.tick(at) is not None
    spans = sorted(f for f in segment_dir(head).iterdir() if not f.name.startswith("prefix-"))
    assert spans, "40 days of bootstrap close at least one 28-day span"
    assert {f.name for f in segment_dir(head).iterdir()} == named()
    data = bytearray(spans[-1].read_bytes())
    data[len(data) // 2] ^= 0xFF
    spans[-1].write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, logger="anomalies.live"):
        for hour in range(1, 4):
            assert await detector.tick(at + timedelta(hours=hour)) is not None
            DetectorState.load(head)  # loads: the damaged span was written again
            assert {f.name for f in segment_dir(head).iterdir()} == named()
    assert len(list(head.parent.glob(f"{head.name}.unreadable-*"))) == 1
    assert spans[-1].name in caplog.text
