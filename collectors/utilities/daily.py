"""The live service's daily fetch of Linky and Gazpar data (Enedis Data Connect, GRDF ADICT).

Once a day at a local hour (``ECONOME_UTILITIES_AT``, 07:30 in the organisation's
timezone), for each point with ``enedis: {data_connect: true}`` or ``grdf: {adict: true}``:
fetch from the day after its last fetched day up to yesterday (on the first run,
the last ``ECONOME_UTILITIES_BACKFILL_DAYS`` days, asked again from the same first
day until they come), and hand the intervals to
``deliver`` (:func:`streams.imports.deliver_consumption`: the delivery log, then
InfluxDB). The last day that came with data is then kept per point in a small JSON
state file (``data_dir/utilities/state.json``, written atomically); a day the
utility has not published yet (GRDF: D+1 to D+3) is asked again the next day.

A point that fails (no consent, 5xx after the retries, a delivery error) is logged
at ERROR naming the point and its PRM/PCE, counted (``Sensor.on_utility_fetch``),
and retried the next day from the first day not delivered: when a client returns
the intervals it read before a failing page (``failed``), those are delivered and
the point's last day moves past them. The other points go on. What a client sets
aside (a page the utility will never have, a malformed value) is logged at WARNING.
A run missed while the service was stopped is made at its next start.

>>> from datetime import time
>>> next_run(datetime(2026, 12, 1, 6, tzinfo=UTC), time(7, 30), ZoneInfo("Europe/Paris")).isoformat()
'2026-12-01T06:30:00+00:00'
>>> next_run(datetime(2026, 12, 1, 7, tzinfo=UTC), time(7, 30), ZoneInfo("Europe/Paris")).isoformat()
'2026-12-02T06:30:00+00:00'
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from collectors.utilities._api import NoConsent
from inventory import Inventory, Point
from streams.clock import Clock
from streams.imports import Consumption
from streams.metrics import Sensor

__all__ = ["DailyFetch", "Deliver", "PointFetcher", "next_run"]

logger = logging.getLogger(__name__)

Deliver = Callable[[str, Sequence[Consumption], str], Awaitable[Any]]
"""``deliver(point_id, intervals, source)``: writes the intervals as the point's index (the delivery log, InfluxDB)."""

_STATE_VERSION = 1


class _Fetched(Protocol):
    intervals: list[Consumption]
    problems: list[str]
    failed: str | None


class PointFetcher(Protocol):
    """What :class:`DailyFetch` needs of a client.

    :class:`~collectors.utilities.dataconnect.DataConnectClient` and :class:`~collectors.utilities.adict.AdictClient`.
    """

    async def fetch(self, point: Point, first: date, last: date) -> _Fetched:
        """The point's consumption over the local days ``first`` to ``last``, in its unit."""
        ...


def next_run(now: datetime, at: time, tz: ZoneInfo) -> datetime:
    """The first instant at or after ``now`` when the local clock reads ``at``, in UTC."""
    local = now.astimezone(tz)
    candidate = datetime.combine(local.date(), at, tzinfo=tz)
    if candidate.astimezone(UTC) < now:
        candidate = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=tz)
    return candidate.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class _Outcome:
    point_id: str
    ok: bool
    last_day: date | None
    message: str


class DailyFetch:
    """Fetches the utility points of an inventory once a day and delivers their data.

    Args:
        inventory: the portfolio; its utility points with ``data_connect``/``adict`` are fetched.
        state_path: the JSON state file (last fetched day per point, last run).
        clock: time source and waits.
        deliver: see :data:`Deliver`.
        enedis: the Data Connect client; None when not configured (those points are skipped, logged once).
        grdf: the ADICT client; likewise.
        at: the local hour of the daily run.
        backfill_days: the days fetched on a point's first run.
        sensor: metric hooks.
    """

    def __init__(
        self,
        inventory: Inventory,
        state_path: Path,
        clock: Clock,
        deliver: Deliver,
        *,
        enedis: PointFetcher | None = None,
        grdf: PointFetcher | None = None,
        at: time = time(7, 30),
        backfill_days: int = 30,
        sensor: Sensor | None = None,
    ) -> None:
        self.inventory = inventory
        self.state_path = state_path
        self.clock = clock
        self.deliver = deliver
        self.enedis = enedis
        self.grdf = grdf
        self.at = at
        self.backfill_days = backfill_days
        self.sensor = sensor or Sensor()
        self.tz = inventory.organisation.tz
        self.runs = 0
        """Daily runs made by this object."""

    def points(self) -> list[Point]:
        """The points fetched through an API, in the inventory's order."""
        return [p for _, p in self.inventory.points()
                if (p.enedis is not None and p.enedis.data_connect) or (p.grdf is not None and p.grdf.adict)]

    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"version": _STATE_VERSION, "last_run": None, "points": {}}
        except (OSError, ValueError) as exc:
            # A broken state costs a backfill, not the service: say so and start again.
            logger.error("utility fetch state %s unreadable (%s): starting afresh with a %d-day backfill",
                         self.state_path, exc, self.backfill_days)
            return {"version": _STATE_VERSION, "last_run": None, "points": {}}
        if not isinstance(data, dict) or not isinstance(data.get("points"), dict):
            return {"version": _STATE_VERSION, "last_run": None, "points": {}}
        return data

    def _write_state(self, state: dict[str, Any]) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.state_path)

    async def run_once(self) -> list[_Outcome]:
        """One daily run: every API point from the day after its last fetched day to yesterday (local)."""
        today = self.clock.now().astimezone(self.tz).date()
        yesterday = today - timedelta(days=1)
        state = self._read_state()
        outcomes = []
        for point in self.points():
            entry = state["points"].get(point.id) or {}
            try:
                last_day = date.fromisoformat(entry["last_day"]) if entry.get("last_day") else None
                pending = date.fromisoformat(entry["from"]) if entry.get("from") else None
            except (TypeError, ValueError):
                last_day = pending = None
            # After its last fetched day; else from the first day a failed first run asked; else the backfill.
            first = last_day + timedelta(days=1) if last_day else pending or today - timedelta(days=self.backfill_days)
            if first > yesterday:
                continue
            outcome = await self._point(point, first, yesterday)
            outcomes.append(outcome)
            if outcome.last_day is not None:
                state["points"][point.id] = {"last_day": outcome.last_day.isoformat()}
            elif last_day is None:
                state["points"][point.id] = {"from": first.isoformat()}
            # Written after each point: a stop in the middle of a run loses nothing already delivered,
            # and the run, not marked done, is made again at the next start.
            self._write_state(state)
        state["last_run"] = today.isoformat()
        self._write_state(state)
        self.runs += 1
        return outcomes

    async def _point(self, point: Point, first: date, last: date) -> _Outcome:
        api, client, meter = (
            ("enedis", self.enedis, f"PRM {point.enedis.prm}") if point.enedis is not None
            else ("grdf", self.grdf, f"PCE {point.grdf.pce}" if point.grdf is not None else "?")
        )  # fmt: skip
        if client is None:
            message = (f"point {point.id} ({meter}): no {api} API credentials "
                       f"(ECONOME_{api.upper()}_CLIENT_ID / _CLIENT_SECRET): not fetched")
            logger.error("utility fetch: %s", message)
            self.sensor.on_utility_fetch(point.id, api, ok=False)
            return _Outcome(point.id, False, None, message)
        try:
            result = await client.fetch(point, first, last)
            for problem in result.problems:
                logger.warning("utility fetch: point %s (%s): %s", point.id, meter, problem)
            if result.intervals:
                await self.deliver(point.id, result.intervals, f"{api}-api")
        except asyncio.CancelledError:
            raise
        except NoConsent as exc:
            logger.error("utility fetch: point %s (%s): %s; retried tomorrow from %s", point.id, meter, exc, first)
            self.sensor.on_utility_fetch(point.id, api, ok=False)
            return _Outcome(point.id, False, None, str(exc))
        except Exception as exc:
            # Whatever one meter's failure (the API, the delivery), the other points are fetched.
            logger.error("utility fetch: point %s (%s) failed from %s to %s: %r; retried tomorrow", point.id, meter,
                         first, last, exc)
            self.sensor.on_utility_fetch(point.id, api, ok=False)
            return _Outcome(point.id, False, None, repr(exc))
        # The day of the last interval's start: a Linky day ends at midnight, a gas day at 06:00 the next day.
        last_day = (min(max(i.start for i in result.intervals).astimezone(self.tz).date(), last)
                    if result.intervals else None)
        if result.failed is not None:
            # Pages before the failure were delivered: tomorrow starts after them.
            logger.error("utility fetch: point %s (%s) failed after %s: %s; retried tomorrow", point.id, meter,
                         last_day, result.failed)
            self.sensor.on_utility_fetch(point.id, api, ok=False)
            return _Outcome(point.id, False, last_day, result.failed)
        self.sensor.on_utility_fetch(point.id, api, ok=True)
        if last_day is None:
            logger.info("utility fetch: point %s (%s): nothing published from %s to %s yet", point.id, meter, first, last)
            return _Outcome(point.id, True, None, "nothing yet")
        logger.info("utility fetch: point %s (%s): %d intervals up to %s", point.id, meter, len(result.intervals), last_day)
        return _Outcome(point.id, True, last_day, f"{len(result.intervals)} intervals")

    async def serve(self) -> None:
        """Run every day at ``at`` (and now if today's run was missed) until cancelled."""
        points = self.points()
        if not points:
            return
        logger.info("utility fetch: %d point(s) fetched daily at %s (%s)", len(points), self.at, self.tz.key)
        while True:
            now = self.clock.now()
            today = now.astimezone(self.tz).date()
            due = datetime.combine(today, self.at, tzinfo=self.tz).astimezone(UTC)
            last_run = self._read_state().get("last_run")
            if not (now >= due and last_run != today.isoformat()):
                await self.clock.sleep(next_run(now + timedelta(seconds=1), self.at, self.tz) - now)
                continue
            try:
                await self.run_once()
            except OSError as exc:
                # The state file cannot be written (a full disk...): said, and tried again tomorrow.
                logger.error("utility fetch: run failed: %r; tried again at the next %s", exc, self.at)
                await self.clock.sleep(next_run(now + timedelta(seconds=1), self.at, self.tz) - now)
