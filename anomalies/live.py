"""Live detection: every hour, read the new readings from InfluxDB, detect, write, notify.

``econome run`` runs :meth:`LiveDetector.serve` as one more asyncio task
beside collection (one process, one deploy unit, one set of settings: a
separate service would need its own supervision and would gain nothing, since
detection reads InfluxDB, not the collectors, and runs in a worker thread).

A pass (:meth:`LiveDetector.run_pass`) does, in this order:

1. read the raw readings (measurement ``reading``, :data:`streams.influx.RAW_MEASUREMENT`)
   of the inventory's points from InfluxDB with InfluxQL, one time chunk at a
   time (:func:`read_readings`): since the state's last hour minus a margin
   (``features.max_gap`` + ``incremental.max_wait`` + 1 h: the readings around
   an hour boundary a counter needs, and points that lagged), or, on a first
   start, the last ``bootstrap`` (28 days) so that references have material;
2. :func:`anomalies.incremental.advance` up to the last whole hour (hours are
   processed once complete: a reading at or after their end, points lagging
   less than ``max_wait`` waited for), in a worker thread;
3. write the events that changed (measurement ``anomaly``) and the expected
   against observed consumption (measurement ``expected``) to InfluxDB;
4. ``notifier.queue(events, now)`` (see :class:`EventNotifier`);
5. save the :class:`~anomalies.incremental.DetectorState` atomically;
6. ``await notifier.flush(now)``.

Buildings read only through a utility's meters (a Linky, a Gazpar), whose data
reach InfluxDB a day or more late, are judged that late: :func:`building_lag`
gives each building 0 (a counter of ours, or no utility meter) or the largest
publication delay of its utility meters (:data:`streams.quality.UTILITY_DELAY`),
and each lag has its own state (:func:`lagged_state_path`: ``state.npz`` for 0,
as before, ``state.lag-48h.npz``…), advanced in the same pass up to the whole
hour ``lag`` before now, on the group's points and the weather station's
(docs/anomalies.md, "Live detection").

A pass that fails anywhere (InfluxDB down, a notifier failing, an SQLite error
of the alert register: a corrupt file, a full disk, a lock held over 30 s) is logged with
the server or file named and leaves the saved state where it was: the next pass replays
it from there, and the notifier's idempotent ``queue`` keeps a replayed event
once. After a restart or downtime the first pass catches up from the saved
state: every missed hour is processed once; an alert opened before comes back
ONGOING (not a new alert), one resolved meanwhile comes back RESOLVED.

On a first start (no state yet) the events of the bootstrap history are
written to InfluxDB (Grafana shows them), but only the alerts still open are
queued for notification: nobody wants a mail for a leak fixed three weeks ago.

One process at a time runs live detection on a data directory: ``econome
run`` takes :class:`anomalies.lock.DetectionLock` (``flock`` on ``<data_dir>/detect/live.lock``)
first; a second one exits 2 naming the directory and the first one's PID.
(A lock rather than rows claimed in SQLite: two detectors on one state file
would also overwrite each other's state.)

A state file that cannot be read, or that was built with other detection
settings, is moved aside (``state.npz.<reason>-<time>``, logged as an error)
and detection starts afresh with a bootstrap.

Sample config (``LiveConfig``, from ``ECONOME_DETECT_*`` in ``econome run``)::

    every: 1h        # ECONOME_DETECT_EVERY
    delay: 5min      # ECONOME_DETECT_DELAY: after the hour, so that its readings are flushed
    bootstrap: 28d   # ECONOME_DETECT_BOOTSTRAP

>>> from datetime import UTC, datetime
>>> next_run(datetime(2026, 1, 5, 10, 4, tzinfo=UTC), LiveConfig()).isoformat()
'2026-01-05T10:05:00+00:00'
>>> next_run(datetime(2026, 1, 5, 10, 5, tzinfo=UTC), LiveConfig()).isoformat()
'2026-01-05T11:05:00+00:00'
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from anomalies.alerts import building_lag, write_events
from anomalies.detect import DetectConfig, ExpectedSeries
from anomalies.events import AlertState, AnomalyEvent, Language
from anomalies.expected_sink import write_expected
from anomalies.incremental import DetectorState, IncrementalConfig, advance
from inventory import Duration, Inventory, Usage
from streams.errors import ConfigError, DecodeError, SinkError, TelemetryError
from streams.history import read_readings
from streams.influx import RAW_RP, InfluxConfig, InfluxQLClient, influxql_ident, make_writer

if TYPE_CHECKING:
    from streams.clock import Clock

__all__ = [
    "EventNotifier",
    "LiveConfig",
    "LiveDetector",
    "LoggingNotifier",
    "PassReport",
    "ResettableNotifier",
    "building_lag",
    "lag_groups",
    "lagged_state_path",
    "next_run",
    "read_readings",
    "state_lag",
]

logger = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR = timedelta(hours=1)
_LAG_NAME = re.compile(r"\.lag-(\d+)h\.npz$")



class LiveConfig(BaseModel):
    """When live detection runs and how much it reads."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    every: Duration = Field(default=timedelta(hours=1), ge=timedelta(minutes=1), le=timedelta(days=1))
    """Time between passes; passes fall on multiples of it since the epoch (UTC), plus ``delay``."""
    delay: Duration = Field(default=timedelta(minutes=5), ge=timedelta(0))
    """How long after the hour a pass runs, so that the hour's readings have reached InfluxDB."""
    bootstrap: Duration = Field(default=timedelta(days=28), ge=timedelta(hours=1), le=timedelta(days=800))
    """History read on a first start (no state yet), so that references and models have material."""
    read_chunk: Duration = Field(default=timedelta(days=1), ge=timedelta(minutes=1))
    """Time covered by one InfluxQL query: bounds the memory of one answer."""
    language: Language = "fr"
    """Language of the explanations written to InfluxDB (Grafana's annotations and tables)."""

    @model_validator(mode="after")
    def _delay_within(self) -> LiveConfig:
        if self.delay >= self.every:
            msg = f"detection delay ({self.delay}) must be shorter than its period ({self.every})"
            raise ConfigError(msg)
        return self


class EventNotifier(Protocol):
    """What a pass hands its events to: the Protocol of ``anomalies.notify.Notifier`` (structural, so any fits)."""

    def queue(self, events: Sequence[AnomalyEvent], now: datetime) -> None:
        """Record durably the events a pass changed; idempotent (the same event queued twice is kept once)."""
        ...

    async def flush(self, now: datetime) -> int:
        """Send what is queued and due; returns how many were sent; never raises for a server down."""
        ...


@runtime_checkable
class ResettableNotifier(Protocol):
    """A notifier that keeps open alerts (``anomalies.notify.MailOutbox``), told when detection cannot resolve them."""

    def reset(self, now: datetime, *, everything: bool, buildings: Collection[str] | None = None) -> int:
        """Close the open alerts of every building (``everything``; of ``buildings`` when given), or of buildings gone."""
        ...


class LoggingNotifier:
    """The notifier of a run with no e-mail configured: it logs each alert opened or resolved, and sends nothing.

    >>> import asyncio
    >>> asyncio.run(LoggingNotifier().flush(datetime(2026, 1, 5, tzinfo=UTC)))
    0
    """

    def queue(self, events: Sequence[AnomalyEvent], now: datetime) -> None:
        """Log the alerts opened and resolved (INFO); ongoing ones at DEBUG."""
        for event in events:
            level = logging.DEBUG if event.state is AlertState.ONGOING else logging.INFO
            logger.log(level, "alert %s: building %s, %s %s since %s (no e-mail configured)",
                       event.state.value, event.building, event.usage, event.kind, event.start.isoformat())

    async def flush(self, now: datetime) -> int:
        """Nothing to send."""
        return 0


@dataclass(frozen=True, slots=True, eq=False)
class PassReport:
    """What one pass did.

    Attributes:
        since: start of the readings read.
        until: end of the hours asked for (the last whole hour).
        readings: readings read from InfluxDB.
        hours: hours processed.
        events: the events that changed (written to InfluxDB).
        notified: the events queued for notification.
        expected_points: expected-consumption points written.
        last_hour: end of the hours processed so far (the state's), None before any.
        lag: how far behind ``now`` the hours of this report's buildings are judged (0: live meters).
        groups: with buildings judged at several lags, each lag's report (this one adds them up: its
            ``since``, ``until`` and ``last_hour`` are the smallest lag's, its counts and events all of them).
    """

    since: datetime
    until: datetime
    readings: int
    hours: int
    events: list[AnomalyEvent]
    notified: list[AnomalyEvent]
    expected_points: int
    last_hour: datetime | None
    lag: timedelta = timedelta(0)
    groups: tuple[PassReport, ...] = field(default=())


def lag_groups(inventory: Inventory) -> dict[timedelta, list[str]]:
    """The buildings by :func:`building_lag`, smallest lag first, in the inventory's order.

    >>> from pathlib import Path
    >>> from inventory import load_inventory
    >>> groups = lag_groups(load_inventory(Path("examples/commune.yaml")))
    >>> {str(lag): ids for lag, ids in groups.items() if lag}
    {'2 days, 0:00:00': ['maternelle-aulnes'], '4 days, 0:00:00': ['salle-polyvalente']}
    """
    groups: dict[timedelta, list[str]] = {}
    for _, building in inventory.buildings():
        groups.setdefault(building_lag(building), []).append(building.id)
    return dict(sorted(groups.items()))


def lagged_state_path(state_path: Path, lag: timedelta) -> Path:
    """The state file of the buildings judged ``lag`` late: ``state.npz`` for 0, else ``state.lag-48h.npz``.

    >>> lagged_state_path(Path("detect/state.npz"), timedelta(days=2)).as_posix()
    'detect/state.lag-48h.npz'
    """
    if not lag:
        return state_path
    hours = int(lag / _HOUR)
    return state_path.with_name(f"{state_path.stem}.lag-{hours}h{state_path.suffix}")


def state_lag(path: Path) -> timedelta:
    """The lag of a state file named by :func:`lagged_state_path` (``econome status``): 0 for any other name.

    >>> state_lag(Path("detect/state.lag-96h.npz")), state_lag(Path("detect/state.npz"))
    (datetime.timedelta(days=4), datetime.timedelta(0))
    """
    found = _LAG_NAME.search(path.name)
    return timedelta(hours=int(found.group(1))) if found else timedelta(0)


@dataclass(eq=False)
class _Group:
    """The buildings judged at one lag, with their state."""

    lag: timedelta
    buildings: frozenset[str] | None  # None: every building of the inventory (one group)
    points: list[str] | None  # the points read: the buildings' and the weather's; None: every point
    state_path: Path
    state: DetectorState | None = None  # as last saved; None when it must be read again from the file


def next_run(now: datetime, config: LiveConfig) -> datetime:
    """The first pass time after ``now``: a multiple of ``every`` since the epoch, plus ``delay``."""
    slots = (now - config.delay - _EPOCH) // config.every
    return _EPOCH + (slots + 1) * config.every + config.delay


def _floor_hour(moment: datetime) -> datetime:
    return _EPOCH + ((moment - _EPOCH) // _HOUR) * _HOUR


class LiveDetector:
    """Incremental detection on the readings InfluxDB holds, with a durable state (see the module docstring).

    Args:
        inventory: the portfolio.
        influx: the InfluxDB the pipeline writes to (read from, and written to).
        state_path: the state file (``.npz``), e.g. ``<data_dir>/detect/state.npz``.
        notifier: what the events are handed to; :class:`LoggingNotifier` by default.
        config: detection settings.
        live: schedule and reading settings.
        incremental: history settings of the state.
        on_pass: called after every pass with its report (None for a failed pass).
        unjudged: called at each pass: the points whose missing data is not judged yet (the live service:
            Linky/Gazpar points whose first daily fetch has not completed, so a first start or a building
            just added raises no "données manquantes" before its data could come).
    """

    def __init__(
        self,
        inventory: Inventory,
        influx: InfluxConfig,
        state_path: Path,
        notifier: EventNotifier | None = None,
        *,
        config: DetectConfig | None = None,
        live: LiveConfig | None = None,
        incremental: IncrementalConfig | None = None,
        on_pass: Callable[[PassReport | None], None] | None = None,
        unjudged: Callable[[], Collection[str]] | None = None,
    ) -> None:
        self.inventory = inventory
        self.unjudged = unjudged
        self.influx = influx
        self.state_path = state_path
        self.notifier: EventNotifier = notifier if notifier is not None else LoggingNotifier()
        self.config = config or DetectConfig()
        self.live = live or LiveConfig()
        self.incremental = incremental or IncrementalConfig()
        self.on_pass = on_pass
        self.failures = 0
        self.groups = self._make_groups()
        self._reset_checked = False  # whether the alerts of buildings left out of the inventory were closed

    def _make_groups(self) -> list[_Group]:
        lags = lag_groups(self.inventory)
        if set(lags) <= {timedelta(0)}:
            return [_Group(timedelta(0), None, None, self.state_path)]
        weather = [p.id for _, p in self.inventory.points() if p.usage is Usage.WEATHER]
        groups = []
        for lag, ids in lags.items():
            own = [p.id for b in (self.inventory.building(i) for i in ids) for p in b.points]
            points = [*own, *(w for w in weather if w not in own)]
            groups.append(_Group(lag, frozenset(ids), points, lagged_state_path(self.state_path, lag)))
        return groups

    # --- state ------------------------------------------------------------------------------

    def _fresh(self) -> DetectorState:
        return DetectorState.fresh(self.config, self.incremental)

    @staticmethod
    def _move_aside(path: Path, reason: str, now: datetime) -> Path:
        target = path.with_name(f"{path.name}.{reason}-{now:%Y%m%dT%H%M%S}")
        path.replace(target)
        return target

    def _load_state(self, path: Path, now: datetime) -> DetectorState:
        """The saved state; a fresh one when there is none, or when it cannot be used (moved aside, logged)."""
        if not path.exists():
            return self._fresh()
        try:
            state = DetectorState.load(path)
        except DecodeError as exc:
            moved = self._move_aside(path, "unreadable", now)
            logger.error("%s; moved to %s, detection starts afresh from %s of history", exc, moved, self.live.bootstrap)
            return self._fresh()
        if state.config_digest != self._fresh().config_digest:
            moved = self._move_aside(path, "other-settings", now)
            logger.error("detection state %s was built with other detection settings; moved to %s, "
                         "detection starts afresh from %s of history", path, moved, self.live.bootstrap)
            return self._fresh()
        return state

    def _margin(self) -> timedelta:
        """How far before the last hour processed a pass reads again: boundary readings and lagging points."""
        return self.config.features.max_gap + self.incremental.max_wait + _HOUR

    # --- a pass -----------------------------------------------------------------------------

    async def _raw_policy(self, client: InfluxQLClient) -> str | None:
        """Where the pipeline writes raw readings: the ``raw`` retention policy when ``econome influx setup`` made it."""
        if self.influx.raw_retention_policy:
            return self.influx.raw_retention_policy
        if self.influx.api != "v1":
            return None
        series = await client.query(f"SHOW RETENTION POLICIES ON {influxql_ident(self.influx.database)}")
        names = {str(row[0]) for s in series for row in s.get("values", [])}
        return RAW_RP if RAW_RP in names else None

    async def run_pass(self, now: datetime) -> PassReport:
        """Read, detect, write, queue, save, flush (see the module docstring), for each lag group in turn.

        Args:
            now: the current time (the injected clock's).

        Returns:
            What the pass did (with several lag groups, their sum and each one's report in ``groups``).

        Raises:
            SinkError: InfluxDB is unreachable or refused a query or a write; the saved state of the group
                that failed (and of those after it) has not moved.
            TelemetryError: another failure of the pass; likewise.
        """
        reports = [await self._group_pass(group, now) for group in self.groups]
        await self.notifier.flush(now)
        if len(reports) == 1:
            return reports[0]
        first = reports[0]
        return PassReport(
            since=first.since, until=first.until, readings=sum(r.readings for r in reports),
            hours=sum(r.hours for r in reports), events=[e for r in reports for e in r.events],
            notified=[e for r in reports for e in r.notified], expected_points=sum(r.expected_points for r in reports),
            last_hour=first.last_hour, lag=first.lag, groups=tuple(reports),
        )

    async def _group_pass(self, group: _Group, now: datetime) -> PassReport:
        state = group.state if group.state is not None else self._load_state(group.state_path, now)
        group.state = None  # until this pass has saved it: a failure below reloads the saved one
        first_start = state.last_hour is None
        until = _floor_hour(now - group.lag)
        # A first start reads ``bootstrap`` of history before the hours it judges: a monthly Gazpar's 52 days of
        # lag would otherwise leave it nothing to judge, for ever.
        since = (_floor_hour(now - group.lag - self.live.bootstrap) if state.last_hour is None
                 else state.last_hour - self._margin())
        client = InfluxQLClient(self.influx)
        try:
            policy = await self._raw_policy(client)
            readings = await read_readings(client, self.inventory, since, now, chunk=self.live.read_chunk,
                                           retention_policy=policy, points=group.points)
            # A point the state holds no reading of (a Linky fetched for the first time, its backfill delivered
            # for hours already judged): read from the bootstrap back, as a first start does, or the state would
            # see it silent from its first hour and call it missing.
            unseen = [pid for pid in (group.points if group.points is not None
                                      else [p.id for _, p in self.inventory.points()])
                      if pid not in state.readings or state.readings[pid].times_s.size == 0]
            if unseen and state.last_hour is not None:
                back = _floor_hour(now - group.lag - self.live.bootstrap)
                readings.update(await read_readings(client, self.inventory, back, now, chunk=self.live.read_chunk,
                                                    retention_policy=policy, points=unseen))
        except SinkError as exc:
            # A first start before the pipeline has created the database: nothing to read yet, not a failure.
            if "database not found" not in str(exc):
                raise
            logger.debug("no readings yet: %s", exc)
            readings = {}
        finally:
            await client.close()
        count = sum(s.times_s.size for s in readings.values())
        expected: list[ExpectedSeries] = []
        result = await asyncio.to_thread(
            advance, self.inventory, readings, state, until, config=self.config, incremental=self.incremental,
            on_expected=expected.append, judged=group.buildings,
            unjudged=frozenset(self.unjudged()) if self.unjudged is not None else frozenset(),
        )
        points = 0
        if result.events or expected:
            points = await self._write(result.events, expected)
        # A first start notifies what is still open, not the history's resolved alerts (written to InfluxDB above).
        notified = [e for e in result.events if not (first_start and e.state is AlertState.RESOLVED)]
        if isinstance(self.notifier, ResettableNotifier):
            # A fresh state (first start, settings changed, state lost) will never resolve the register's open
            # alerts of its buildings, nor will detection of a building left out of the inventory: close them
            # as reset (a building moved into a new lag group too: its old state no longer judges it).
            if first_start:
                self.notifier.reset(now, everything=True, buildings=group.buildings)
            if not self._reset_checked:
                self.notifier.reset(now, everything=False)
                self._reset_checked = True
        if notified:
            self.notifier.queue(notified, now)
        state.save(group.state_path)
        group.state = state
        return PassReport(since=since, until=until, readings=count, hours=result.hours, events=result.events,
                          notified=notified, expected_points=points, last_hour=state.last_hour, lag=group.lag)

    async def _write(self, events: list[AnomalyEvent], expected: list[ExpectedSeries]) -> int:
        writer = make_writer(self.influx)
        try:
            await write_events(writer, events, self.live.language)
            return await write_expected(writer, expected, batch_size=self.influx.batch_size)
        finally:
            await writer.close()

    async def tick(self, now: datetime) -> PassReport | None:
        """One pass that never raises (but for cancellation): a failure is logged and retried next time.

        The first failure is logged as an ERROR naming the server, repeats at DEBUG, the recovery at INFO.
        """
        started = time.monotonic()
        report: PassReport | None = None
        try:
            report = await self.run_pass(now)
        except TelemetryError as exc:
            self._failed(exc)
        except (OSError, ValueError, RuntimeError) as exc:
            # A notifier's or a disk's failure: the service goes on collecting, the pass is replayed.
            self._failed(exc)
        except sqlite3.Error as exc:
            # The alert register (a corrupt file, a full disk, a lock held too long): named, replayed next pass.
            where = getattr(getattr(self.notifier, "register", None), "path", "the notifier's SQLite file")
            self._failed(SinkError(f"alert register {where}: {type(exc).__name__}: {exc}"))
        else:
            if self.failures:
                logger.info("live detection works again after %d failed passes", self.failures)
            self.failures = 0
            opened = sum(e.state is AlertState.OPEN for e in report.events)
            resolved = sum(e.state is AlertState.RESOLVED for e in report.events)
            logger.info(
                "live detection pass at %s: %d readings read, %d hours processed (up to %s), %d events "
                "(%d opened, %d resolved), %d notified, %d expected points written, in %.1f s",
                now.isoformat(), report.readings, report.hours,
                report.last_hour.isoformat() if report.last_hour else "none", len(report.events), opened, resolved,
                len(report.notified), report.expected_points, time.monotonic() - started,
            )
        if self.on_pass is not None:
            self.on_pass(report)
        return report

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        if self.failures == 1:
            logger.error("live detection pass failed, retried at the next one (state kept at its last save): %s", exc)
        else:
            logger.debug("live detection pass failed again (%d in a row): %s", self.failures, exc)

    async def serve(self, clock: Clock) -> None:
        """Run a pass now (catching up after downtime), then one every ``every`` at ``delay`` past; until cancelled.

        Args:
            clock: the clock passes are timed by (``ScaledClock`` in the demo and tests).
        """
        logger.info("live detection: a pass every %s at %s past, state %s", self.live.every, self.live.delay,
                    self.state_path)
        for group in self.groups:
            if group.lag:
                logger.info("live detection of %s (utility meters only): hours judged %s late, state %s",
                            ", ".join(sorted(group.buildings or ())), group.lag, group.state_path)
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        await self.tick(clock.now())
        while True:
            now = clock.now()
            await clock.sleep(next_run(now, self.live) - now)
            await self.tick(clock.now())
