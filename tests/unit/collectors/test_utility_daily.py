"""The live service's daily fetch of Linky and Gazpar data: once a day, resumed from the last day, one failure isolated."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from collectors.utilities.adict import AdictClient
from collectors.utilities.daily import DailyFetch
from collectors.utilities.dataconnect import DataConnectClient
from inventory import parse_inventory
from streams.clock import ManualClock
from streams.imports import Consumption
from streams.metrics import PrometheusSensor
from tests import utility_fakes as fk

YAML = f"""
organisation: {{name: Commune test, population: 1200, school_holiday_zone: A}}
sites:
  - id: s1
    name: Site
    buildings:
      - id: mairie
        name: Mairie
        usage: town_hall
        floor_area_m2: 500
        heated_area_m2: 450
        points:
          - {{id: linky-ok, quantity: active_energy, unit: kWh, usage: general, cumulative: true,
             enedis: {{prm: "{fk.PRM_OK}", data_connect: true}}}}
          - {{id: linky-refused, quantity: active_energy, unit: kWh, usage: general, cumulative: true,
             enedis: {{prm: "{fk.PRM_NO_CONSENT}", data_connect: true}}}}
          - {{id: linky-files, quantity: active_energy, unit: kWh, usage: general, cumulative: true,
             enedis: {{prm: "{fk.PRM_DAILY_ONLY}"}}}}
          - {{id: gazpar, quantity: gas_volume, unit: m3, usage: heating, cumulative: true, conversion_kwh_per_unit: 11.2,
             grdf: {{pce: "{fk.PCE_OK}", adict: true}}}}
"""


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=fk.PARIS).astimezone(UTC)


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Let the fetch task work (it talks to the local server) until ``condition`` holds; 10 s at most."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def _ran_on(state_path: Path, day: str) -> bool:
    return bool(json.loads(state_path.read_text())["last_run"] == day)


async def _idle() -> None:
    """Give the task its chances to run (it has nothing to do)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_daily_fetch_once_a_day_resumes_and_isolates_a_failing_point(tmp_path: Path) -> None:
    inv = parse_inventory(YAML)
    fake = fk.FakeUtilities(enedis_until=date(2026, 11, 29), grdf_until=date(2026, 11, 27))
    runner, url = await fk.serve(fake)
    delivered: list[tuple[str, list[Consumption], str]] = []

    async def deliver(point_id: str, intervals: Sequence[Consumption], source: str) -> None:
        delivered.append((point_id, list(intervals), source))

    def fetcher(clock: ManualClock, sensor: PrometheusSensor) -> DailyFetch:
        fast = {"backoff": timedelta(milliseconds=5), "retries": 2}
        return DailyFetch(
            inv, tmp_path / "utilities" / "state.json", clock, deliver,
            enedis=DataConnectClient(fk.CLIENT_ID, fk.CLIENT_SECRET, url=url, **fast),  # type: ignore[arg-type]
            grdf=AdictClient(fk.CLIENT_ID, fk.CLIENT_SECRET, url=f"{url}/adict/v2", token_url=f"{url}/grdf/access_token",
                             **fast),  # type: ignore[arg-type]
            backfill_days=30, sensor=sensor, retry_every=timedelta(hours=12),  # no retry the same day (a test below)
        )  # fmt: skip

    clock = ManualClock(datetime(2026, 11, 30, 5, tzinfo=UTC))  # 06:00 in Paris
    sensor = PrometheusSensor()
    fetch = fetcher(clock, sensor)
    task = asyncio.create_task(fetch.serve(), name="utility-fetch")
    try:
        await _idle()
        clock.advance(timedelta(hours=1))  # 07:00: not yet
        await _idle()
        assert (fetch.runs, delivered) == (0, [])

        clock.advance(timedelta(minutes=30))  # 07:30: the day's run, 30 days back
        await _until(lambda: fetch.runs == 1, "the first run")
        by_point = {p: (i, s) for p, i, s in delivered}
        assert set(by_point) == {"linky-ok", "gazpar"}  # the refused one failed, the file-only one is not fetched
        linky, source = by_point["linky-ok"]
        assert source == "enedis-api"
        assert (linky[0].start, linky[-1].end, len(linky)) == (_midnight(date(2026, 10, 31)), _midnight(date(2026, 11, 30)),
                                                               30 * 48)
        gas, _ = by_point["gazpar"]
        assert [i.amount for i in gas] == [fk.gazpar_m3(date(2026, 10, 31) + timedelta(days=n)) for n in range(28)]
        metrics = sensor.exposition().decode()
        assert 'econome_utility_fetch_failures_total{api="enedis",point="linky-refused"} 1.0' in metrics
        assert 'econome_utility_fetch_ok{api="enedis",point="linky-ok"} 1.0' in metrics
        assert not any(q.get("pointId") == fk.PRM_DAILY_ONLY for _, q in fake.log)
        state = json.loads((tmp_path / "utilities" / "state.json").read_text())
        assert state["points"] == {"linky-ok": {"last_day": "2026-11-29"}, "gazpar": {"last_day": "2026-11-27"},
                                   "linky-refused": {"from": "2026-10-31"}}

        clock.advance(timedelta(hours=2))  # later the same day: no second run
        await _idle()
        assert (fetch.runs, len(delivered)) == (1, 2)

        # The next day Enedis has published 11-30, GRDF two more gas days.
        fake.enedis_until, fake.grdf_until = date(2026, 11, 30), date(2026, 11, 29)
        delivered.clear()
        clock.advance(timedelta(hours=22))  # 12-01 07:30
        await _until(lambda: fetch.runs == 2, "the second run")
        by_point = {p: (i, s) for p, i, s in delivered}
        assert [(i.start, i.end) for i in by_point["linky-ok"][0]][::47] == [
            (_midnight(date(2026, 11, 30)), _midnight(date(2026, 11, 30)) + timedelta(minutes=30)),
            (_midnight(date(2026, 12, 1)) - timedelta(minutes=30), _midnight(date(2026, 12, 1))),
        ]
        assert [i.amount for i in by_point["gazpar"][0]] == [fk.gazpar_m3(date(2026, 11, 28)), fk.gazpar_m3(date(2026, 11, 29))]
        refused = [q for _, q in fake.log if q.get("pointId") == fk.PRM_NO_CONSENT]
        assert [q["dateDebut"] for q in refused] == ["2026-10-31", "2026-10-31"]  # retried from the same day
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    # A restart the same day does not fetch again; the next day it resumes from the state file.
    delivered.clear()
    clock.advance(timedelta(hours=1))
    again = fetcher(clock, PrometheusSensor())
    task = asyncio.create_task(again.serve(), name="utility-fetch-2")
    try:
        await _idle()
        assert (again.runs, delivered) == (0, [])
        fake.enedis_until = date(2026, 12, 1)
        clock.advance(timedelta(hours=23))  # 12-02 07:30
        await _until(lambda: again.runs == 1, "the run after the restart")
        linky = next(i for p, i, _ in delivered if p == "linky-ok")
        assert (linky[0].start, len(linky)) == (_midnight(date(2026, 12, 1)), 48)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for client in (fetch.enedis, fetch.grdf, again.enedis, again.grdf):
            await client.close()  # type: ignore[union-attr]
        await runner.cleanup()


async def test_a_run_stopped_midway_is_finished_at_the_next_start(tmp_path: Path) -> None:
    inv = parse_inventory(YAML)
    fake = fk.FakeUtilities(enedis_until=date(2026, 11, 29), grdf_until=date(2026, 11, 27))
    runner, url = await fk.serve(fake)
    delivered: list[str] = []
    stuck = asyncio.Event()

    async def deliver(point_id: str, intervals: Sequence[Consumption], source: str) -> None:
        if point_id == "gazpar" and not stuck.is_set():  # the service stops while the Gazpar's data are delivered
            stuck.set()
            await asyncio.Event().wait()
        delivered.append(point_id)

    clock = ManualClock(datetime(2026, 11, 30, 7, tzinfo=UTC))  # 08:00 in Paris: the day's run is due at once
    clients: list[DataConnectClient | AdictClient] = []

    def fetcher() -> DailyFetch:
        enedis = DataConnectClient(fk.CLIENT_ID, fk.CLIENT_SECRET, url=url)
        grdf = AdictClient(fk.CLIENT_ID, fk.CLIENT_SECRET, url=f"{url}/adict/v2", token_url=f"{url}/grdf/access_token")
        clients.extend([enedis, grdf])
        return DailyFetch(inv, tmp_path / "state.json", clock, deliver, enedis=enedis, grdf=grdf)

    try:
        first = asyncio.create_task(fetcher().serve(), name="utility-fetch")
        await asyncio.wait_for(stuck.wait(), 10)
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        assert delivered == ["linky-ok"]
        state = json.loads((tmp_path / "state.json").read_text())
        assert state["last_run"] is None
        assert state["points"]["linky-ok"] == {"last_day": "2026-11-29"}

        delivered.append("-restart-")
        again = fetcher()
        task = asyncio.create_task(again.serve(), name="utility-fetch-2")
        await _until(lambda: again.runs == 1, "the run after the restart")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert delivered == ["linky-ok", "-restart-", "gazpar"]  # linky-ok is not fetched twice
    finally:
        for client in clients:
            await client.close()
        await runner.cleanup()


async def test_a_failed_page_or_a_refusal_never_blocks_a_point(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    inv = parse_inventory(f"""
organisation: {{name: Commune test, population: 1200, school_holiday_zone: A}}
sites:
  - id: s1
    name: Site
    buildings:
      - id: ecole
        name: École
        usage: school
        floor_area_m2: 500
        heated_area_m2: 450
        points:
          - {{id: linky-new, quantity: active_energy, unit: kWh, usage: general, cumulative: true,
             enedis: {{prm: "{fk.PRM_ACTIVATED}", data_connect: true}}}}
          - {{id: linky-flaky, quantity: active_energy, unit: kWh, usage: general, cumulative: true,
             enedis: {{prm: "{fk.PRM_FLAKY}", data_connect: true}}}}
          - {{id: gazpar-no-right, quantity: gas_volume, unit: m3, usage: heating, cumulative: true,
             conversion_kwh_per_unit: 11.2, grdf: {{pce: "{fk.PCE_NO_RIGHT}", adict: true}}}}
""")
    fake = fk.FakeUtilities(enedis_until=date(2026, 11, 30), grdf_until=date(2026, 11, 28), broken_from=date(2026, 11, 22))
    runner, url = await fk.serve(fake)
    delivered: dict[str, list[Consumption]] = {}

    async def deliver(point_id: str, intervals: Sequence[Consumption], source: str) -> None:
        delivered.setdefault(point_id, []).extend(intervals)

    fast = {"backoff": timedelta(milliseconds=5), "retries": 1}
    sensor = PrometheusSensor()
    clock = ManualClock(datetime(2026, 12, 1, 7, tzinfo=UTC))
    fetch = DailyFetch(
        inv, tmp_path / "state.json", clock, deliver,
        enedis=DataConnectClient(fk.CLIENT_ID, fk.CLIENT_SECRET, url=url, **fast),  # type: ignore[arg-type]
        grdf=AdictClient(fk.CLIENT_ID, fk.CLIENT_SECRET, url=f"{url}/adict/v2", token_url=f"{url}/grdf/access_token",
                         **fast),  # type: ignore[arg-type]
        backfill_days=30, sensor=sensor,
    )  # fmt: skip
    caplog.set_level(logging.INFO)
    try:
        outcomes = {o.point_id: o for o in await fetch.run_once()}  # from 11-01 to 11-30
        # Activated on 11-20: its earlier pages are gaps, the later ones delivered; the point is fetched.
        new = delivered["linky-new"]
        assert (new[0].start, new[-1].end, outcomes["linky-new"].ok) == (_midnight(date(2026, 11, 22)),
                                                                          _midnight(date(2026, 12, 1)), True)
        # Pages up to 11-25 answered, then a 502: those delivered, the point failed, resumed after them.
        flaky = delivered["linky-flaky"]
        assert (flaky[0].start, flaky[-1].end, outcomes["linky-flaky"].ok) == (_midnight(date(2026, 11, 1)),
                                                                                _midnight(date(2026, 11, 22)), False)
        # HTTP 200 with a "no access right" statut_restitution: a failure, not "nothing yet".
        assert not outcomes["gazpar-no-right"].ok
        assert "gazpar-no-right" not in delivered
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("linky-new" in w and "no load curve from 2026-11-15 to 2026-11-21" in w and "ADAM-ERR0123" in w
                   for w in warnings), warnings
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any("gazpar-no-right" in e and "no access right" in e and "Absence de droit" in e for e in errors), errors
        assert any("linky-flaky" in e and "HTTP 502" in e for e in errors), errors
        metrics = sensor.exposition().decode()
        assert 'econome_utility_fetch_failures_total{api="grdf",point="gazpar-no-right"} 1.0' in metrics
        assert 'econome_utility_fetch_failures_total{api="enedis",point="linky-flaky"} 1.0' in metrics
        state = json.loads((tmp_path / "state.json").read_text())["points"]
        assert state == {"linky-new": {"last_day": "2026-11-30"}, "linky-flaky": {"last_day": "2026-11-21"},
                         "gazpar-no-right": {"from": "2026-11-01"}}

        # The next day the gateway works again: the flaky point resumes at 11-22, the day after its last.
        fake.broken_from, fake.enedis_until = date(2027, 1, 1), date(2026, 12, 1)
        fake.log.clear()
        clock.advance(timedelta(days=1))
        outcomes = {o.point_id: o for o in await fetch.run_once()}
        assert [q["dateDebut"] for _, q in fake.log if q.get("pointId") == fk.PRM_FLAKY] == ["2026-11-22", "2026-11-29"]
        assert outcomes["linky-flaky"].ok
        assert delivered["linky-flaky"][-1].end == _midnight(date(2026, 12, 2))
    finally:
        for client in (fetch.enedis, fetch.grdf):
            await client.close()  # type: ignore[union-attr]
        await runner.cleanup()


class _LateCurve(fk.FakeUtilities):
    """Enedis publishing ``curve_until`` behind the daily values, the curve stamped up to ``partial_until`` only."""

    curve_until: date = date(2026, 12, 1)
    partial_until: str | None = None

    async def _curve(self, request: web.Request) -> web.Response:
        prm, start, _ = self._range(request)
        if prm == fk.PRM_OK and start > self.curve_until:
            self.log.append((request.path, dict(request.query)))  # a passing 404 (bokub/linky#66, ha-linky#93)
            return web.json_response({"error": "no_data_found", "error_description": "no measure found"}, status=404)
        response = await super()._curve(request)
        if self.partial_until is not None and response.status == 200:
            body = json.loads(response.body)  # type: ignore[arg-type]
            points = body["grandeur"][0]["points"]
            body["grandeur"][0]["points"] = [p for p in points if p["d"] <= self.partial_until]
            return web.json_response(body)
        return response


LINKY_ONLY = f"""
organisation: {{name: Commune test, population: 1200, school_holiday_zone: A}}
sites:
  - id: s1
    name: Site
    buildings:
      - id: ecole
        name: École
        usage: school
        floor_area_m2: 500
        heated_area_m2: 450
        points:
          - {{id: linky, quantity: active_energy, unit: kWh, usage: general, cumulative: true,
             enedis: {{prm: "{fk.PRM_OK}", data_connect: true}}}}
          - {{id: linky-daily, quantity: active_energy, unit: kWh, usage: general, cumulative: true,
             enedis: {{prm: "{fk.PRM_DAILY_ONLY}", data_connect: true}}}}
"""


async def test_a_late_or_partial_curve_is_asked_again_never_replaced_by_a_daily_value(tmp_path: Path) -> None:
    """A curve 404 or half a day published: no 24-hour value, the day asked again until whole (same day, then later)."""
    inv = parse_inventory(LINKY_ONLY)
    fake = _LateCurve(enedis_until=date(2026, 12, 2), grdf_until=date(2026, 12, 2))
    runner, url = await fk.serve(fake)
    delivered: list[tuple[str, list[Consumption]]] = []

    async def deliver(point_id: str, intervals: Sequence[Consumption], source: str) -> None:
        delivered.append((point_id, list(intervals)))

    state_path = tmp_path / "state.json"
    # The school's Linky was fetched up to 12-01; the daily-only one has had no curve since 11-27.
    state_path.write_text(json.dumps({"version": 1, "last_run": "2026-12-02", "fetched": ["linky", "linky-daily"],
                                      "points": {"linky": {"last_day": "2026-12-01"},
                                                 "linky-daily": {"last_day": "2026-12-01", "no_curve_since": "2026-11-26"}}}))
    clock = ManualClock(datetime(2026, 12, 3, 5, tzinfo=UTC))  # 06:00 in Paris
    client = DataConnectClient(fk.CLIENT_ID, fk.CLIENT_SECRET, url=url, retries=0)
    fetch = DailyFetch(inv, state_path, clock, deliver, enedis=client)
    task = asyncio.create_task(fetch.serve(), name="utility-fetch")
    try:
        clock.advance(timedelta(minutes=90))  # 07:30: the curve of 12-02 answers 404
        await _until(lambda: fetch.runs == 1, "the 07:30 run")
        by_point = dict(delivered)
        assert "linky" not in by_point  # no daily value in place of the curve
        assert [(i.start, i.end) for i in by_point["linky-daily"]] == [(_midnight(date(2026, 12, 2)),
                                                                         _midnight(date(2026, 12, 3)))]
        state = json.loads(state_path.read_text())
        assert state["points"]["linky"]["last_day"] == "2026-12-01"
        assert state["points"]["linky-daily"] == {"last_day": "2026-12-02", "no_curve_since": "2026-11-26"}
        assert not fetch.complete

        delivered.clear()
        fake.curve_until, fake.partial_until = date(2026, 12, 2), "2026-12-02 12:00:00"  # published up to noon
        clock.advance(timedelta(hours=2))  # 09:30: the retry
        await _until(lambda: fetch.runs == 2, "the 09:30 retry")
        (point_id, halves), = delivered
        assert (point_id, len(halves), halves[-1].end) == ("linky", 24, _midnight(date(2026, 12, 2)) + timedelta(hours=12))
        assert json.loads(state_path.read_text())["points"]["linky"]["last_day"] == "2026-12-01"  # not done

        delivered.clear()
        fake.partial_until = None  # the rest of the day at last
        clock.advance(timedelta(hours=2))  # 11:30
        await _until(lambda: fetch.runs == 3, "the 11:30 retry")
        (point_id, halves), = delivered
        assert (point_id, len(halves), halves[0].start) == ("linky", 48, _midnight(date(2026, 12, 2)))
        assert sum(i.amount for i in halves) == pytest.approx(
            sum(fk.linky_watts(_midnight(date(2026, 12, 2)) + timedelta(minutes=30 * k)) for k in range(1, 49)) / 2000)
        assert json.loads(state_path.read_text())["points"]["linky"] == {"last_day": "2026-12-02"}
        assert fetch.complete

        clock.advance(timedelta(hours=2))  # 13:30: yesterday whole, no more retry until tomorrow 07:30
        await _idle()
        assert fetch.runs == 3
        clock.advance(timedelta(hours=18))
        await _until(lambda: fetch.runs == 4, "the next day's run")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()
        await runner.cleanup()


async def test_a_meter_without_curve_is_read_daily_after_a_week_and_new_points_are_fetched_at_start(
    tmp_path: Path,
) -> None:
    inv = parse_inventory(LINKY_ONLY)
    fake = fk.FakeUtilities(enedis_until=date(2026, 12, 2), grdf_until=date(2026, 12, 2))
    runner, url = await fk.serve(fake)
    delivered: dict[str, list[Consumption]] = {}

    async def deliver(point_id: str, intervals: Sequence[Consumption], source: str) -> None:
        delivered.setdefault(point_id, []).extend(intervals)

    state_path = tmp_path / "state.json"
    # linky was fetched this morning; linky-daily was just added to the inventory, at 10:00.
    state_path.write_text(json.dumps({"version": 1, "last_run": "2026-12-03", "fetched": ["linky"],
                                      "points": {"linky": {"last_day": "2026-12-02"}}}))
    clock = ManualClock(datetime(2026, 12, 3, 9, tzinfo=UTC))
    client = DataConnectClient(fk.CLIENT_ID, fk.CLIENT_SECRET, url=url, retries=0)
    fetch = DailyFetch(inv, state_path, clock, deliver, enedis=client, backfill_days=3)
    task = asyncio.create_task(fetch.serve(), name="utility-fetch")
    try:
        await _until(lambda: fetch.runs == 1, "the new point's fetch at start")
        assert "linky" not in delivered
        state = json.loads(state_path.read_text())
        # 3 days without curve is not yet a meter without one: nothing, asked again.
        assert (state["fetched"], state["points"]["linky-daily"]) == (["linky", "linky-daily"],
                                                                       {"from": "2026-11-30", "no_curve_since": "2026-11-30"})
        assert "linky-daily" not in delivered
        for day in (4, 5, 6, 7):  # the 7th day without curve: the daily consumption, from the first day asked
            clock.advance(timedelta(days=1))
            fake.enedis_until = date(2026, 12, day - 1)
            await _until(functools.partial(_ran_on, state_path, f"2026-12-0{day}"), f"the run of 12-0{day}")
        days = [(i.start, i.end - i.start) for i in delivered["linky-daily"]]
        assert days[0] == (_midnight(date(2026, 11, 30)), timedelta(days=1))
        assert len(days) == 7
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()
        await runner.cleanup()
