"""The live service's daily fetch of Linky and Gazpar data (Enedis Data Connect, GRDF ADICT).

Once a day at a local hour (``ECONOME_UTILITIES_AT``, 07:30 in the organisation's
timezone), for each point with ``enedis: {data_connect: true}`` or ``grdf: {adict: true}``:
fetch from the day after its last complete day up to yesterday (on the first run,
the last ``ECONOME_UTILITIES_BACKFILL_DAYS`` days, asked again from the same first
day until they come), and hand the intervals to
``deliver`` (:func:`streams.imports.deliver_consumption`: the delivery log, then
InfluxDB, which takes the same intervals again without change). The last
**complete** day is then kept per point in a small JSON state file
(``data_dir/utilities/state.json``, written atomically). A day is complete when
its intervals cover it whole (48 half-hours, 46 or 50 on a DST day; or one value
for the whole day, a gas day): a day the utility has not published yet (GRDF:
D+1 to D+3), or published in part (a Linky curve up to noon), is asked again.
A day still incomplete :data:`RECHECK_DAYS` days after it while later days came
whole is a gap the utility will not fill: logged at WARNING and left behind.

Enedis publishes a curve late some days, or answers a passing 404 for it
(bokub/linky#66, bokub/ha-linky#93): a Linky's daily consumption is read instead
of its curve only for a meter **known to have no curve**, one whose curve
endpoint gave nothing over :data:`NO_CURVE_DAYS` consecutive days (remembered
in the state as ``no_curve_since``, forgotten when a curve comes). Otherwise a
day without its curve is just not complete yet.

When yesterday is not complete for every point after the run, the run is made
again every ``retry_every`` (2 h) until ``retry_until`` (14:00 local): Enedis
often publishes after 07:30 (DomoticzLinky#59; ha-linky fetches at 06:50 and
09:50). Points not in the state file yet (first start, a building added) are
fetched at start, not at the next 07:30; the state's ``fetched`` list names the
points whose first fetch has been made, whatever its outcome (live detection
judges a utility point missing only after it, :func:`fetched_points`).

A point that fails (no consent, 5xx after the retries, a delivery error) is logged
at ERROR naming the point and its PRM/PCE, counted (``Sensor.on_utility_fetch``),
and retried at the next run (a retry the same day, else the next day) from the first
day not complete: when a client returns the intervals it read before a failing page
(``failed``), those are delivered and the point's last day moves past their complete days.
The other points go on. What a client sets aside (a page the utility will never have, a
malformed value) is logged at WARNING.
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

__all__ = ["NO_CURVE_DAYS", "RECHECK_DAYS", "DailyFetch", "Deliver", "PointFetcher", "complete_days", "fetched_points",
           "next_run"]

logger = logging.getLogger(__name__)

Deliver = Callable[[str, Sequence[Consumption], str], Awaitable[Any]]
"""``deliver(point_id, intervals, source)``: writes the intervals as the point's index (the delivery log, InfluxDB)."""

_STATE_VERSION = 1

NO_CURVE_DAYS = 7
"""Consecutive days the curve endpoint gave nothing before a Linky is read by its daily consumption."""

RECHECK_DAYS = 3
"""An incomplete day is asked again until this many days after it (while later days come whole)."""

_WHOLE = timedelta(hours=23)
"""One interval this long or longer is a whole day's value (a daily Linky value, a gas day, 23 h on a DST day)."""


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


class _EnedisFetcher(Protocol):
    async def fetch(self, point: Point, first: date, last: date, *, daily_if_no_curve: bool = True) -> _Fetched:
        ...


def complete_days(intervals: Sequence[Consumption], first: date, last: date, tz: ZoneInfo) -> set[date]:
    """The local days ``first`` to ``last`` that ``intervals`` cover whole.

    A day is the intervals starting on it: complete when they add up to its length (48 half-hours;
    46 or 50 on a DST day) or one of them is a whole day's value (:data:`_WHOLE`).

    >>> from datetime import UTC
    >>> tz = ZoneInfo("Europe/Paris")
    >>> start = datetime(2026, 3, 29, tzinfo=tz).astimezone(UTC)  # 23 h: the spring DST day
    >>> halves = [Consumption(start + timedelta(minutes=30 * k), start + timedelta(minutes=30 * k + 30), 1.0)
    ...           for k in range(46)]
    >>> sorted(complete_days(halves, date(2026, 3, 29), date(2026, 3, 30), tz))
    [datetime.date(2026, 3, 29)]
    >>> complete_days(halves[:45], date(2026, 3, 29), date(2026, 3, 29), tz)
    set()
    """
    covered: dict[date, timedelta] = {}
    whole: set[date] = set()
    for interval in intervals:
        day = interval.start.astimezone(tz).date()
        covered[day] = covered.get(day, timedelta(0)) + (interval.end - interval.start)
        if interval.end - interval.start >= _WHOLE:
            whole.add(day)
    out = set()
    day = first
    while day <= last:
        length = (datetime.combine(day + timedelta(days=1), time(), tzinfo=tz).astimezone(UTC)
                  - datetime.combine(day, time(), tzinfo=tz).astimezone(UTC))
        if day in whole or covered.get(day, timedelta(0)) >= length:
            out.add(day)
        day += timedelta(days=1)
    return out


def fetched_points(state_path: Path) -> frozenset[str] | None:
    """The points whose first daily fetch has completed, from the fetch's state file; None when it has none."""
    try:
        data = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("fetched"), list):
        return None
    return frozenset(str(p) for p in data["fetched"])


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
    no_curve_since: date | None = None
    """A Linky whose curve endpoint gave nothing from that day on (None: it gave a curve, or not a Linky)."""


class DailyFetch:
    """Fetches the utility points of an inventory once a day and delivers their data.

    Args:
        inventory: the portfolio; its utility points with ``data_connect``/``adict`` are fetched.
        state_path: the JSON state file (last complete day per point, last run, points fetched once).
        clock: time source and waits.
        deliver: see :data:`Deliver`.
        enedis: the Data Connect client; None when not configured (those points are skipped, logged once).
        grdf: the ADICT client; likewise.
        at: the local hour of the daily run.
        backfill_days: the days fetched on a point's first run.
        sensor: metric hooks.
        retry_every: the wait before the run is made again when yesterday is not complete for every point.
        retry_until: the local hour after which no such retry is made (the next run is tomorrow's).
    """

    def __init__(
        self,
        inventory: Inventory,
        state_path: Path,
        clock: Clock,
        deliver: Deliver,
        *,
        enedis: _EnedisFetcher | None = None,
        grdf: PointFetcher | None = None,
        at: time = time(7, 30),
        backfill_days: int = 30,
        sensor: Sensor | None = None,
        retry_every: timedelta = timedelta(hours=2),
        retry_until: time = time(14, 0),
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
        self.retry_every = retry_every
        self.retry_until = retry_until
        self.tz = inventory.organisation.tz
        self.runs = 0
        """Runs made by this object (the daily ones and their retries)."""
        self.complete = True
        """Whether the last run got yesterday whole for every point."""

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

    def _new_points(self) -> list[str]:
        """The points the state file does not know yet (a first start, a building added)."""
        known = self._read_state()["points"]
        return [p.id for p in self.points() if p.id not in known]

    async def run_once(self) -> list[_Outcome]:
        """One run: every API point from the day after its last complete day to yesterday (local).

        The outcomes; ``self.complete`` then tells whether yesterday came whole for every point.
        """
        today = self.clock.now().astimezone(self.tz).date()
        yesterday = today - timedelta(days=1)
        state = self._read_state()
        fetched = set(state.get("fetched") or []) if isinstance(state.get("fetched"), list) else set()
        outcomes = []
        self.complete = True
        for point in self.points():
            entry = state["points"].get(point.id) or {}
            try:
                last_day = date.fromisoformat(entry["last_day"]) if entry.get("last_day") else None
                pending = date.fromisoformat(entry["from"]) if entry.get("from") else None
                since = date.fromisoformat(entry["no_curve_since"]) if entry.get("no_curve_since") else None
            except (TypeError, ValueError):
                last_day = pending = since = None
            # After its last complete day; else from the first day a failed first run asked; else the backfill.
            first = last_day + timedelta(days=1) if last_day else pending or today - timedelta(days=self.backfill_days)
            if first > yesterday:
                fetched.add(point.id)
                continue
            outcome = await self._point(point, first, yesterday, since)
            outcomes.append(outcome)
            fetched.add(point.id)  # asked once: from now on its silence is judged (a refused consent too)
            new: dict[str, str] = {}
            if outcome.last_day is not None:
                new["last_day"] = outcome.last_day.isoformat()
            elif last_day is not None:
                new["last_day"] = last_day.isoformat()
            else:
                new["from"] = first.isoformat()
            if outcome.no_curve_since is not None:
                new["no_curve_since"] = outcome.no_curve_since.isoformat()
            state["points"][point.id] = new
            if (outcome.last_day or last_day or first - timedelta(days=1)) < yesterday:
                self.complete = False
            state["fetched"] = sorted(fetched)
            # Written after each point: a stop in the middle of a run loses nothing already delivered,
            # and the run, not marked done, is made again at the next start.
            self._write_state(state)
        state["fetched"] = sorted(fetched)
        state["last_run"] = today.isoformat()
        self._write_state(state)
        self.runs += 1
        return outcomes

    def _last_day(self, point: Point, meter: str, intervals: Sequence[Consumption], first: date, last: date) -> date | None:
        """The last day up to which every day is complete or given up (:data:`RECHECK_DAYS`); None: none."""
        whole = complete_days(intervals, first, last, self.tz)
        done: date | None = None
        day = first
        while day <= last:
            if day not in whole:
                if day > last - timedelta(days=RECHECK_DAYS) or not any(d > day for d in whole):
                    break
                logger.warning("utility fetch: point %s (%s): %s still incomplete %d days after: left as a gap",
                               point.id, meter, day, (last - day).days + 1)
            done = day
            day += timedelta(days=1)
        return done

    async def _point(self, point: Point, first: date, last: date, since: date | None = None) -> _Outcome:
        api, client, meter = (
            ("enedis", self.enedis, f"PRM {point.enedis.prm}") if point.enedis is not None
            else ("grdf", self.grdf, f"PCE {point.grdf.pce}" if point.grdf is not None else "?")
        )  # fmt: skip
        if client is None:
            message = (f"point {point.id} ({meter}): no {api} API credentials "
                       f"(ECONOME_{api.upper()}_CLIENT_ID / _CLIENT_SECRET): not fetched")
            logger.error("utility fetch: %s", message)
            self.sensor.on_utility_fetch(point.id, api, ok=False)
            return _Outcome(point.id, False, None, message, since)
        no_curve_since: date | None = None
        try:
            if api == "enedis" and self.enedis is not None:
                # The daily consumption only for a meter known to have no curve: a curve may come late.
                no_curve = (last - (since or first)).days + 1 >= NO_CURVE_DAYS
                result = await self.enedis.fetch(point, first, last, daily_if_no_curve=no_curve)
                curve = any(i.end - i.start < _WHOLE for i in result.intervals)
                if curve:
                    no_curve_since = None
                elif result.failed is not None and not result.intervals:
                    no_curve_since = since
                else:
                    no_curve_since = since or first
            else:
                assert self.grdf is not None  # noqa: S101  # client is not None
                result = await self.grdf.fetch(point, first, last)
            for problem in result.problems:
                logger.warning("utility fetch: point %s (%s): %s", point.id, meter, problem)
            if result.intervals:
                await self.deliver(point.id, result.intervals, f"{api}-api")
        except asyncio.CancelledError:
            raise
        except NoConsent as exc:
            logger.error("utility fetch: point %s (%s): %s; retried tomorrow from %s", point.id, meter, exc, first)
            self.sensor.on_utility_fetch(point.id, api, ok=False)
            return _Outcome(point.id, False, None, str(exc), since)
        except Exception as exc:
            # Whatever one meter's failure (the API, the delivery), the other points are fetched.
            logger.error("utility fetch: point %s (%s) failed from %s to %s: %r; retried tomorrow", point.id, meter,
                         first, last, exc)
            self.sensor.on_utility_fetch(point.id, api, ok=False)
            return _Outcome(point.id, False, None, repr(exc), since)
        last_day = self._last_day(point, meter, result.intervals, first, last) if result.intervals else None
        if result.failed is not None:
            # Pages before the failure were delivered: the next run starts after their complete days.
            logger.error("utility fetch: point %s (%s) failed after %s: %s; retried later", point.id, meter,
                         last_day, result.failed)
            self.sensor.on_utility_fetch(point.id, api, ok=False)
            return _Outcome(point.id, False, last_day, result.failed, no_curve_since)
        self.sensor.on_utility_fetch(point.id, api, ok=True)
        if last_day is None:
            logger.info("utility fetch: point %s (%s): no complete day from %s to %s yet", point.id, meter, first, last)
            said = f"{len(result.intervals)} intervals, no complete day yet" if result.intervals else "nothing yet"
            return _Outcome(point.id, True, None, said, no_curve_since)
        logger.info("utility fetch: point %s (%s): %d intervals, complete up to %s", point.id, meter,
                    len(result.intervals), last_day)
        return _Outcome(point.id, True, last_day, f"{len(result.intervals)} intervals", no_curve_since)

    async def serve(self) -> None:
        """Run every day at ``at`` (and now if today's run was missed, or a point was never fetched) until cancelled.

        When yesterday did not come whole for every point, the run is made again every ``retry_every``
        until ``retry_until`` (local).
        """
        points = self.points()
        if not points:
            return
        logger.info("utility fetch: %d point(s) fetched daily at %s (%s)", len(points), self.at, self.tz.key)
        retry_at: datetime | None = None
        while True:
            now = self.clock.now()
            today = now.astimezone(self.tz).date()
            due = datetime.combine(today, self.at, tzinfo=self.tz).astimezone(UTC)
            last_run = self._read_state().get("last_run")
            run = (now >= due and last_run != today.isoformat()) or bool(self._new_points()) or (
                retry_at is not None and now >= retry_at)
            if not run:
                wake = next_run(now + timedelta(seconds=1), self.at, self.tz)
                if retry_at is not None:
                    wake = min(wake, retry_at)
                await self.clock.sleep(max(wake - now, timedelta(seconds=1)))
                continue
            retry_at = None
            try:
                await self.run_once()
            except OSError as exc:
                # The state file cannot be written (a full disk...): said, and tried again tomorrow.
                logger.error("utility fetch: run failed: %r; tried again at the next %s", exc, self.at)
                await self.clock.sleep(next_run(now + timedelta(seconds=1), self.at, self.tz) - now)
                continue
            limit = datetime.combine(today, self.retry_until, tzinfo=self.tz).astimezone(UTC)
            later = self.clock.now() + self.retry_every
            if not self.complete and later <= limit:
                logger.info("utility fetch: yesterday not complete for every point: run again at %s",
                            later.astimezone(self.tz).strftime("%H:%M"))
                retry_at = later
