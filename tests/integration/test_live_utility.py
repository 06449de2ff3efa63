"""Live detection of buildings with only a Linky and a Gazpar, whose data reach InfluxDB days late (issue 14).

The demo commune's Linky-only school (lights left on at night for two weeks
from 24 November 2025) and its Linky + Gazpar hall (healthy), with the weather
station of the town hall, on a real InfluxDB 1.6.7. The weather is live; the
utilities' readings are written day by day as the daily fetch would
(:mod:`collectors.utilities.daily`): each morning the Linky's curve up to
midnight, the Gazpar's gas days three days late. A pass runs every morning on
a :class:`~streams.clock.ManualClock`; the alerts go through the alert register
and an SMTP server (aiosmtpd on loopback).
"""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from anomalies.alerts import EmailConfig
from anomalies.detect import DetectConfig
from anomalies.events import AlertState, AnomalyEvent, _sample_event
from anomalies.features import PointSeries
from anomalies.incremental import DetectorState
from anomalies.live import LiveConfig, LiveDetector, building_state_path, lag_groups
from anomalies.notify import MailOutbox
from inventory import Inventory, load_inventory
from simulator import default_fault_plan
from simulator.export import write_readings_csv
from streams.clock import ManualClock
from streams.history import read_readings_csv
from streams.influx import InfluxConfig, InfluxV1Writer, LineEncoder
from streams.record import Reading

ROOT = Path(__file__).resolve().parents[2]
SCHOOL, HALL = "maternelle-aulnes", "salle-polyvalente"
LINKY, GAZPAR = "maternelle-aulnes-linky", "salle-polyvalente-gazpar"
HISTORY_START = datetime(2025, 9, 1, tzinfo=UTC)
FIRST_PASS = datetime(2025, 11, 20, 7, 5, tzinfo=UTC)  # 08:05 in Valmont, after the morning's fetch
LAST_PASS = datetime(2025, 12, 15, 7, 5, tzinfo=UTC)


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        self.messages.append(email.message_from_bytes(raw, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[int, _Inbox]]:
    inbox, port = _Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def hamlet() -> Inventory:
    """The school, the hall and the weather station (the town hall with only it)."""
    commune = load_inventory(ROOT / "examples" / "commune.yaml")
    sites = []
    for site in commune.sites:
        kept = []
        for building in site.buildings:
            if building.id == "mairie":
                weather = [p for p in building.points if p.id == "station-meteo-temperature"]
                kept.append(building.model_copy(update={"points": weather, "zones": []}))
            elif building.id in {SCHOOL, HALL}:
                kept.append(building)
        if kept:
            sites.append(site.model_copy(update={"buildings": kept}))
    return commune.model_copy(update={"sites": sites})


def _lines(inv: Inventory, readings: dict[str, PointSeries], keep: dict[str, tuple[float, float]]) -> list[str]:
    """Line protocol of the readings of each point within ``keep[point] = (after, up_to]`` seconds."""
    encoder = LineEncoder(inv)
    units = {p.id: p.unit for _, p in inv.points()}
    lines = []
    for pid, (after, up_to) in keep.items():
        series = readings[pid]
        inside = (series.times_s > after) & (series.times_s <= up_to)
        lines += [encoder.encode(Reading(pid, datetime.fromtimestamp(t, UTC), v, units[pid]))
                  for t, v in zip(series.times_s[inside].tolist(), series.values[inside].tolist(), strict=True)]
    return lines


async def test_utility_buildings_are_judged_once_their_data_are_published_and_mailed_once(
    influxdb_server: Any, unique_name: str, hamlet: Inventory, tmp_path: Path, smtp: tuple[int, _Inbox]
) -> None:
    inv = hamlet
    assert {str(lag): ids for lag, ids in lag_groups(inv).items()} == {
        "0:00:00": ["mairie"], "2 days, 0:00:00": [SCHOOL], "4 days, 0:00:00": [HALL]}
    tz = inv.organisation.tz
    [fault] = [f for f in default_fault_plan(inv, 2025, 1) if f.building in {SCHOOL, HALL}]
    csv = tmp_path / "readings.csv"
    write_readings_csv(inv, csv, HISTORY_START, LAST_PASS + timedelta(days=1), step=timedelta(hours=1), seed=1,
                       faults=[fault], energy_only=True)
    readings = read_readings_csv(csv)
    utility = [pid for _, p in inv.points() if p.is_utility for pid in [p.id]]
    assert sorted(utility) == sorted([LINKY, "salle-polyvalente-linky", GAZPAR])

    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    writer = InfluxV1Writer(config)
    await writer.ensure_database()
    port, inbox = smtp
    clock = ManualClock(FIRST_PASS)
    outbox = MailOutbox(tmp_path / "detect" / "alerts.sqlite", EmailConfig.model_validate(
        {"host": "127.0.0.1", "port": port, "security": "none", "sender": "econome@valmont.example"}), inv, clock)
    state_path = tmp_path / "detect" / "state.npz"
    detector = LiveDetector(inv, config, state_path, outbox, config=DetectConfig(),
                            live=LiveConfig(every=timedelta(days=1), bootstrap=FIRST_PASS - HISTORY_START, held=0))
    written = dict.fromkeys(readings, -np.inf)
    events: list[tuple[datetime, AnomalyEvent]] = []
    try:
        # The weather station is live: all of it is there, and a pass reads only what is before its ``now``.
        await writer.write(_lines(inv, readings, {"station-meteo-temperature": (-np.inf, np.inf)}), raw=True)
        now = FIRST_PASS
        while now <= LAST_PASS:
            # The morning's fetch: the Linky's curve up to midnight, the Gazpar's gas days three days late.
            midnight = datetime.combine(now.astimezone(tz).date(), datetime.min.time(), tz).timestamp()
            cutoff = {pid: midnight - (3 * 86_400 if pid == GAZPAR else 0) for pid in utility}
            await writer.write(_lines(inv, readings, {pid: (written[pid], cutoff[pid]) for pid in utility}), raw=True)
            written.update(cutoff)
            report = await detector.run_pass(now)
            assert [(g.lag, g.until) for g in report.groups] == [
                (timedelta(0), now.replace(minute=0)), (timedelta(days=2), now.replace(minute=0) - timedelta(days=2)),
                (timedelta(days=4), now.replace(minute=0) - timedelta(days=4))]
            events += [(now, e) for e in report.events]
            now += timedelta(days=1)
            clock.advance(timedelta(days=1))
    finally:
        await writer.close()

    # The school's lights: one alert, first seen from data published a day late, judged two days after the hour
    # (a daily pass covers 24 hours: the alert opened within it comes ongoing, and its first sight is mailed)...
    school = [(at, e) for at, e in events if e.building == SCHOOL]
    assert {(e.kind, e.start) for _, e in school} == {("consumption_unoccupied", school[0][1].start)}, [
        (at, e.kind, e.state, e.start) for at, e in school]
    at, alert = school[0]
    assert alert.state is not AlertState.RESOLVED
    assert fault.start <= alert.start < fault.start + timedelta(days=1)  # the first night
    assert timedelta(days=2) <= at - alert.start <= timedelta(days=4)
    # ... and resolved once the lights are off again.
    resolved = [(at, e) for at, e in school if e.state is AlertState.RESOLVED]
    assert [e.start for _, e in resolved] == [alert.start]
    assert fault.end - timedelta(days=1) <= resolved[0][1].end <= fault.end + timedelta(hours=36)
    assert resolved[0][0] > fault.end + timedelta(days=2)
    # The healthy hall raises nothing, and no meter is called missing while its utility has not published.
    assert [(e.building, e.kind) for _, e in events if e.building != SCHOOL] == []
    assert not [e for _, e in events if e.kind == "missing_data"]

    # One opening mail and one resolution mail, naming the period and why it comes late, not "now".
    mails = [m for m in inbox.messages if "maternelle des Aulnes" in str(m["Subject"])]
    assert [str(m["Subject"]).split("\u00a0:")[0] for m in mails] == ["[Econome] Alerte", "[Econome] Résolu"]
    body = mails[0].get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert f"{alert.start.astimezone(tz):%d/%m/%Y %H:%M}" in text
    assert "Relevés du Linky (Enedis), publiés avec retard" in text
    assert "cette alerte porte sur la période indiquée ci-dessous, jusqu’à 2\u00a0jours avant ce message" in text
    html_part = mails[0].get_body(("html",))
    assert html_part is not None
    assert "publiés avec retard" in html_part.get_content()
    assert "en ce moment" not in text.lower()
    assert "actuellement" not in text.lower()

    # One state per building, each up to its own lag before the last pass.
    assert DetectorState.peek_last_hour(building_state_path(state_path, "mairie")) == LAST_PASS.replace(minute=0)
    assert DetectorState.peek_last_hour(building_state_path(state_path, SCHOOL)) == (
        LAST_PASS.replace(minute=0) - timedelta(days=2))
    assert DetectorState.peek_last_hour(building_state_path(state_path, HALL)) == (
        LAST_PASS.replace(minute=0) - timedelta(days=4))
    assert sorted(p.name for p in state_path.parent.glob("state*")) == ["state"]


@pytest.mark.parametrize("lag0_state", [True, False])
async def test_a_fresh_lag_group_closes_the_open_alerts_of_its_buildings_only(
    influxdb_server: Any, unique_name: str, hamlet: Inventory, tmp_path: Path, lag0_state: bool
) -> None:
    """Upgrading (the live meters' state kept, the utilities' made afresh) closes as reset the open alerts of
    the utility buildings (no state judges them where they were), not those of the live meters' buildings;
    all states made afresh close them all, as a single state did."""
    now = datetime(2026, 1, 12, 10, 5, tzinfo=UTC)
    outbox = MailOutbox(tmp_path / "detect" / "alerts.sqlite", None, hamlet, ManualClock(now))
    outbox.queue([replace(_sample_event(), building=b, state=AlertState.OPEN) for b in (HALL, "mairie")],
                 now - timedelta(days=1))
    state_path = tmp_path / "detect" / "state.npz"
    if lag0_state:
        state = DetectorState.fresh(DetectConfig())
        state.last_hour = now.replace(minute=0) - timedelta(hours=1)
        state.save(state_path)
    # A database nobody wrote to yet: nothing to read, not a failure.
    detector = LiveDetector(hamlet, InfluxConfig(url=influxdb_server.url, database=unique_name), state_path, outbox)
    report = await detector.run_pass(now)
    assert [a.building for a in outbox.register.alerts()] == (["mairie"] if lag0_state else [])
    # Each lag group's first start reads its bootstrap before the hours it judges.
    bootstrap = LiveConfig().bootstrap
    assert [(g.lag, g.since) for g in report.groups[1:]] == [
        (lag, now.replace(minute=0) - lag - bootstrap) for lag in (timedelta(days=2), timedelta(days=4))]
    assert building_state_path(state_path, SCHOOL).exists()
    # The former state file of the live meters' buildings (before a state per building) was split, then moved
    # aside: the town hall kept its open alert, as its last hour (the mairie's state, not a fresh one).
    assert not state_path.exists()
    kept = now.replace(minute=0) - timedelta(hours=1) if lag0_state else None  # nothing to read: not advanced
    assert DetectorState.peek_last_hour(building_state_path(state_path, "mairie")) == kept
    assert len(list(state_path.parent.glob("state.npz.split-*"))) == int(lag0_state)


async def test_a_building_judged_late_is_advanced_once_a_day_at_its_hour_with_the_events_of_hourly_advances(
    influxdb_server: Any, unique_name: str, hamlet: Inventory, tmp_path: Path,
) -> None:
    """Hourly passes: the Linky-only school (2 days late) is advanced once a day, at its own hour, not 24 times.

    Its data come once a day; a pass over 3,000 such buildings advances about 1/24 of them
    (``LiveConfig.lagged_every``). Run beside a detector advancing it at every pass (``lagged_every=0``), from the
    same readings: at the school's hour both stand at the same last hour with the same alerts (kind, start, state);
    the town hall (no utility meter) is advanced at every pass either way.
    """
    from anomalies.detect import refit_phase
    from anomalies.live import LoggingNotifier

    [fault] = [f for f in default_fault_plan(hamlet, 2025, 1) if f.building == SCHOOL]
    first = datetime.combine((fault.start + timedelta(days=3)).date(), datetime.min.time(), UTC) + timedelta(minutes=5)
    # The last pass falls on the school's own hour (UTC), 26 to 49 passes after the first.
    hour = (refit_phase(SCHOOL) - int(first.timestamp() // 3600)) % 24
    last = first + timedelta(hours=24 + hour)
    csv = tmp_path / "readings.csv"
    write_readings_csv(hamlet, csv, HISTORY_START, last, step=timedelta(hours=1), seed=1, faults=[fault],
                       energy_only=True)
    readings = read_readings_csv(csv)
    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    writer = InfluxV1Writer(config)
    await writer.ensure_database()
    try:
        await writer.write(_lines(hamlet, readings, dict.fromkeys(readings, (-np.inf, np.inf))), raw=True)
    finally:
        await writer.close()
    runs: dict[str, tuple[list[datetime | None], dict[tuple[str, datetime], AlertState], list[datetime | None]]] = {}
    for name, every in (("daily", timedelta(days=1)), ("hourly", timedelta(0))):
        state_path = tmp_path / name / "state.npz"
        detector = LiveDetector(hamlet, config, state_path, LoggingNotifier(), config=DetectConfig(),
                                live=LiveConfig(bootstrap=first - HISTORY_START, held=0, lagged_every=every))
        school_last: list[datetime | None] = []
        town_hall_last: list[datetime | None] = []
        alerts: dict[tuple[str, datetime], AlertState] = {}
        now = first
        while now <= last:
            report = await detector.run_pass(now)
            alerts.update({(e.kind, e.start): e.state for e in report.events if e.building == SCHOOL})
            school_last.append(DetectorState.peek_last_hour(building_state_path(state_path, SCHOOL)))
            town_hall_last.append(DetectorState.peek_last_hour(building_state_path(state_path, "mairie")))
            now += timedelta(hours=1)
        runs[name] = (school_last, alerts, town_hall_last)
    daily, hourly = runs["daily"], runs["hourly"]
    # Every pass advances the hourly run's school; the daily run's at its first start and at its hour alone.
    assert len(set(hourly[0])) == len(hourly[0])
    moves = [i for i in range(1, len(daily[0])) if daily[0][i] != daily[0][i - 1]]
    assert len(moves) == 2, daily[0]  # a day apart: passes 24 + hour - 24 and 24 + hour
    assert [(daily[0][i].hour - refit_phase(SCHOOL)) % 24 for i in moves] == [0, 0]  # type: ignore[union-attr]
    assert daily[0][-1] == hourly[0][-1] == last.replace(minute=0) - timedelta(days=2)
    assert daily[1] == hourly[1]
    assert ("consumption_unoccupied", AlertState.RESOLVED) not in {(k, s) for (k, _), s in daily[1].items()}
    assert any(kind == "consumption_unoccupied" for kind, _ in daily[1]), daily[1]
    assert daily[2] == hourly[2]
    assert len(set(daily[2])) == len(daily[2])  # the town hall, judged at once, advanced at every pass
