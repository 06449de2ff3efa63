"""Live detection: every hour, read the new readings from InfluxDB, detect, write, notify.

``econome run`` runs :meth:`LiveDetector.serve` as one more asyncio task
beside collection (one process, one deploy unit, one set of settings: a
separate service would need its own supervision and would gain nothing, since
detection reads InfluxDB, not the collectors, and runs in a worker thread).

Each building has a state file of its own (:func:`building_state_path`:
``detect/state/<building>.npz`` beside ``detect/state.npz``). A pass
(:meth:`LiveDetector.run_pass`) takes the buildings a chunk at a time
(``LiveConfig.chunk``, those reading from the same time together) and, per chunk:

1. reads the raw readings (measurement ``reading``, :data:`streams.influx.RAW_MEASUREMENT`)
   of the chunk's points and the weather station's from InfluxDB with InfluxQL, one time chunk at a
   time (:func:`read_readings`): since the state's last hour minus a margin
   (``features.max_gap`` + ``incremental.max_wait`` + 1 h: the readings around
   an hour boundary a counter needs, and points that lagged), or, on a building's first
   start, the last ``bootstrap`` (28 days) so that references have material;
2. per building, one at a time: loads its state, runs :func:`anomalies.incremental.advance`
   up to the last whole hour (hours are processed once complete: a reading at or after their
   end, points lagging less than ``max_wait`` waited for) in a worker thread, saves the state
   beside its file (``<building>.npz.next``, its closed 28-day spans in the segment files of
   ``<building>.seg/``, written once: :meth:`~anomalies.incremental.DetectorState.save`) and drops
   it, so a pass holds one building's state (a portfolio of at most ``LiveConfig.held`` buildings
   keeps them in memory instead);
3. writes the events that changed (measurement ``anomaly``) and the expected
   against observed consumption (measurement ``expected``) to InfluxDB;
4. ``notifier.queue(events, now)`` (see :class:`EventNotifier`);
5. puts the chunk's saved states in place (atomic renames) and deletes the segment files their
   heads no longer name;

and then ``await notifier.flush(now)``, also after a pass that failed (InfluxDB down), so that the
mails queued before and the digest at its hour do not wait for the database.

Buildings read only through a utility's meters (a Linky, a Gazpar), whose data
reach InfluxDB a day or more late, are judged that late: :func:`building_lag`
gives each building 0 (a counter of ours, or no utility meter) or the largest
publication delay of its utility meters (:data:`streams.quality.UTILITY_DELAY`),
and its hours are judged up to the whole hour ``lag`` before now
(docs/anomalies.md, "Live detection"). A state file of a whole lag group, from before
per-building states (:func:`lagged_state_path`: ``state.npz`` for 0, ``state.lag-48h.npz``…),
is split into per-building files on first sight and moved aside (``.split-<time>``).

A pass that fails anywhere (InfluxDB down, a notifier failing, an SQLite error
of the alert register: a corrupt file, a full disk, a lock held over 30 s) is logged with
the server or file named and leaves the saved states of the chunk that failed (and of those
after it) where they were: the next pass replays them from there, and the notifier's idempotent ``queue`` keeps a replayed event
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
settings (or whose segment files are missing or corrupt), is moved aside
(``<building>.npz.<reason>-<time>``, logged as an error; its segment files are deleted with the next
save, so the file moved aside is kept for the record, not to be read again) and detection of that
building starts afresh with a bootstrap.

Sample config (``LiveConfig``, from ``ECONOME_DETECT_*`` in ``econome run``)::

    every: 1h        # ECONOME_DETECT_EVERY
    delay: 5min      # ECONOME_DETECT_DELAY: after the hour, so that its readings are flushed
    bootstrap: 28d   # ECONOME_DETECT_BOOTSTRAP
    chunk: 100       # ECONOME_DETECT_CHUNK: buildings read from InfluxDB together
    held: 30         # ECONOME_DETECT_HELD: up to this many buildings, their states stay in memory between passes

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

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from anomalies.alerts import building_lag, write_events
from anomalies.detect import DetectConfig, ExpectedSeries, refit_phase
from anomalies.events import AlertState, AnomalyEvent, Language
from anomalies.expected_sink import write_expected
from anomalies.features import PointSeries
from anomalies.incremental import DetectorState, IncrementalConfig, advance, segment_dir
from inventory import Duration, Inventory, Usage
from inventory.bookings import BookingsError
from streams.errors import ConfigError, DecodeError, SinkError, TelemetryError
from streams.history import read_readings
from streams.influx import RAW_RP, InfluxConfig, InfluxQLClient, influxql_ident, make_writer

if TYPE_CHECKING:
    from streams.clock import Clock

__all__ = [
    "DigestNotifier",
    "EventNotifier",
    "LiveConfig",
    "LiveDetector",
    "LoggingNotifier",
    "PassReport",
    "ResettableNotifier",
    "building_lag",
    "building_state_path",
    "lag_groups",
    "lagged_due",
    "lagged_state_path",
    "next_run",
    "read_readings",
    "state_lag",
]

logger = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)
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
    chunk: int = Field(default=100, ge=1)
    """Buildings whose readings are read from InfluxDB together; their states are still advanced one at a time."""
    held: int = Field(default=30, ge=0)
    """A portfolio of at most this many buildings keeps their states in memory between passes (faster passes);
    a larger one loads and saves each building's state at each pass, so a pass's memory is one building's."""
    lagged_every: Duration = Field(default=timedelta(days=1), ge=timedelta(0), le=timedelta(days=7))
    """A building judged a day or more late (its data from a Linky or a Gazpar, published once a day) is advanced
    once per this period, at its own hour (:func:`lagged_due`), not at every pass: a pass advances about 1/24 of
    such buildings, a building's advance costing as much for one hour as for a day. Its alerts come up to this
    period later. 0 (``0s``; or at most ``every``): at every pass."""

    @model_validator(mode="after")
    def _delay_within(self) -> LiveConfig:
        if self.delay >= self.every:
            msg = f"detection delay ({self.delay}) must be shorter than its period ({self.every})"
            raise ConfigError(msg)
        return self


def lagged_due(building_id: str, last_hour: datetime | None, until: datetime, step: timedelta) -> bool:
    """Whether a building judged late is advanced up to ``until`` by this pass (``LiveConfig.lagged_every``).

    Due on a first start, once ``step`` or more is waiting (a restart after a downtime, a first day), and at its
    own hour of the ``step`` (:func:`~anomalies.detect.refit_phase`, UTC), so that a portfolio's buildings are
    spread over the hours, not all advanced in one pass. An advance of a day gives what 24 hourly advances give
    (``tests/unit/anomalies/test_incremental.py``): only the alerts' time moves.

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 1, 5, 10, tzinfo=UTC)
    >>> [lagged_due("mairie", last, t, timedelta(days=1)) for last in (None, t - timedelta(days=1), t - _HOUR)]
    [True, True, False]
    """
    if last_hour is None or until - last_hour >= step:
        return True
    hours = max(1, int(step / _HOUR))
    return (int(until.timestamp() // 3600) - refit_phase(building_id)) % hours == 0 and until > last_hour


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


@runtime_checkable
class DigestNotifier(Protocol):
    """A notifier with daily digests (``anomalies.notify.MailOutbox``): it says when they next fall due."""

    def next_digest(self, now: datetime) -> datetime | None:
        """The next time the digests fall due after ``now``; None: never."""
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


def building_state_path(state_path: Path, building_id: str) -> Path:
    """The state file of one building: ``detect/state.npz`` gives ``detect/state/<building>.npz``.

    >>> building_state_path(Path("detect/state.npz"), "mairie").as_posix()
    'detect/state/mairie.npz'
    """
    return state_path.with_suffix("") / f"{building_id}.npz"


@dataclass(eq=False)
class _Group:
    """The buildings judged at one lag; each has a state file of its own (:func:`building_state_path`)."""

    lag: timedelta
    buildings: list[str]
    legacy_path: Path  # the state file of the whole group before per-building states: split on first sight


@dataclass(eq=False)
class _Tally:
    """What a group's chunks did, added up for its :class:`PassReport`."""

    readings: int = 0
    hours: int = 0
    points: int = 0
    events: list[AnomalyEvent] = field(default_factory=list)
    notified: list[AnomalyEvent] = field(default_factory=list)
    last_hours: list[datetime] = field(default_factory=list)


def _next(path: Path) -> Path:
    """Where a building's advanced state waits until its pass has written and queued its events."""
    return path.with_name(path.name + ".next")


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
        state_path: e.g. ``<data_dir>/detect/state.npz``: each building's state goes to ``detect/state/<building>.npz``
            (:func:`building_state_path`); a state file of this name (from before) is split on first sight.
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
        self._flush_failures = 0  # flushes failed in a row outside a pass (after a failed pass, at the digest hour)
        self._weather = [p.id for _, p in inventory.points() if p.usage is Usage.WEATHER]
        self.groups = self._make_groups()
        self._reset_checked = False  # whether the alerts of buildings left out of the inventory were closed
        self._calendar_down: set[str] = set()  # buildings whose booking calendar failed their last pass
        # A small portfolio keeps its buildings' states in memory between passes (with the caches they carry:
        # the clock columns, the models' bounds); a large one loads and saves each building's at each pass.
        self._holds = sum(len(g.buildings) for g in self.groups) <= self.live.held
        self._held: dict[str, DetectorState] = {}
        self._policy: str | None = None

    def _make_groups(self) -> list[_Group]:
        lags = lag_groups(self.inventory)
        if set(lags) <= {timedelta(0)}:
            return [_Group(timedelta(0), [b.id for _, b in self.inventory.buildings()], self.state_path)]
        return [_Group(lag, ids, lagged_state_path(self.state_path, lag)) for lag, ids in lags.items()]

    def _points_of(self, building_id: str) -> list[str]:
        """The points a building's state reads: its own, then the weather station's."""
        own = [p.id for p in self.inventory.building(building_id).points]
        return [*own, *(w for w in self._weather if w not in own)]

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

    def _split_legacy(self, group: _Group, now: datetime) -> None:
        """A state file of the whole group (before per-building states): split into one file per building, once.

        Each building keeps its history, models and open alerts (:meth:`DetectorState.part`), so the upgrade
        neither alerts again nor closes anything; the group file is then moved aside (``.split-<time>``).
        A building that already has its own file keeps it.
        """
        if not group.legacy_path.exists():
            return
        old = self._load_state(group.legacy_path, now)  # unreadable or other settings: moved aside, fresh
        if old.last_hour is not None:
            for building_id in group.buildings:
                path = building_state_path(self.state_path, building_id)
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    old.part(building_id, self._points_of(building_id)).save(path)
        if group.legacy_path.exists():
            moved = self._move_aside(group.legacy_path, "split", now)
            logger.info("detection state %s split into one file per building under %s; moved to %s (it can be "
                        "deleted)", group.legacy_path, building_state_path(self.state_path, "x").parent, moved)

    def _margin(self) -> timedelta:
        """How far before the last hour processed a pass reads again: boundary readings and lagging points."""
        return self.config.features.max_gap + self.incremental.max_wait + _HOUR

    def _since(self, last_hour: datetime | None, group: _Group, now: datetime) -> datetime:
        """Where a building's pass reads from: a margin before its last hour, or its bootstrap on a first start.

        A first start reads ``bootstrap`` of history before the hours it judges: a monthly Gazpar's 52 days
        of lag would otherwise leave it nothing to judge, for ever.
        """
        if last_hour is None:
            return _floor_hour(now - group.lag - self.live.bootstrap)
        return last_hour - self._margin()

    def _peek_last(self, building_id: str) -> datetime | None:
        """A building's last hour processed, from its held state or its file's head alone (None: a first start)."""
        held = self._held.get(building_id)
        if held is not None:
            return held.last_hour
        path = building_state_path(self.state_path, building_id)
        try:
            return DetectorState.peek_last_hour(path) if path.exists() else None
        except DecodeError:
            return None  # moved aside when loaded

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
            SinkError: InfluxDB is unreachable or refused a query or a write; the saved states of the chunk of
                buildings that failed (and of those after it) have not moved.
            TelemetryError: another failure of the pass; likewise.
        """
        try:
            reports = [await self._group_pass(group, now) for group in self.groups]
        except Exception:
            # What earlier passes (and groups) queued, and the digest at its hour, do not wait for InfluxDB:
            # a day of it down would otherwise hold back every mail, the digest that says so included.
            await self._flush_quietly(now)
            raise
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

    async def _flush_quietly(self, now: datetime) -> None:
        """Flush after a failed pass (or at the digest hour between passes); a failure is logged, never raised."""
        try:
            await self.notifier.flush(now)
        except Exception as exc:  # the pass's error is the one raised; the flush is tried again at the next pass
            self._flush_failures += 1
            level = logging.ERROR if self._flush_failures == 1 else logging.DEBUG  # a register down: once, not hourly
            logger.log(level, "flushing the alert mails failed: %s: %s", type(exc).__name__, exc)
        else:
            self._flush_failures = 0

    async def _group_pass(self, group: _Group, now: datetime) -> PassReport:
        """The group's buildings, a chunk at a time (those reading from the same time together).

        A group judged a day or more late advances only the buildings due (:func:`lagged_due`).
        """
        self._split_legacy(group, now)
        until = _floor_hour(now - group.lag)
        by_since: dict[datetime, list[str]] = {}
        step = self.live.lagged_every if group.lag >= _DAY and self.live.lagged_every > self.live.every else None
        for building_id in group.buildings:
            last = self._peek_last(building_id)
            if step is not None and not lagged_due(building_id, last, until, step):
                continue
            by_since.setdefault(self._since(last, group, now), []).append(building_id)
        total = _Tally()
        for since, ids in sorted(by_since.items()):
            for i in range(0, len(ids), self.live.chunk):
                await self._chunk_pass(group, ids[i:i + self.live.chunk], since, until, now, total)
        return PassReport(since=min(by_since, default=until), until=until, readings=total.readings,
                          hours=total.hours, events=total.events, notified=total.notified,
                          expected_points=total.points, last_hour=min(total.last_hours, default=None), lag=group.lag)

    async def _read(self, client: InfluxQLClient, since: datetime, now: datetime,
                    points: list[str]) -> dict[str, PointSeries]:
        try:
            if self._policy is None:
                self._policy = (await self._raw_policy(client)) or ""
            return await read_readings(client, self.inventory, since, now, chunk=self.live.read_chunk,
                                       retention_policy=self._policy or None, points=points)
        except SinkError as exc:
            # A first start before the pipeline has created the database: nothing to read yet, not a failure.
            if "database not found" not in str(exc):
                raise
            logger.debug("no readings yet: %s", exc)
            return {}

    async def _chunk_pass(self, group: _Group, chunk: list[str], since: datetime, until: datetime, now: datetime,
                          total: _Tally) -> None:
        """Read a chunk's readings, then load, advance and save each building's state in turn; write, queue.

        One building's state is in memory at a time (unless the portfolio is small enough to hold them all,
        ``LiveConfig.held``): the memory of a pass is bounded by a building, not the portfolio. Each state is
        saved to ``<building>.npz.next`` and put in place only once the chunk's events are written and queued:
        a failure before leaves the saved states where they were, and the next pass replays them.
        """
        points = list(dict.fromkeys(pid for b in chunk for pid in self._points_of(b)))
        events: list[AnomalyEvent] = []
        notified: list[AnomalyEvent] = []
        expected: list[ExpectedSeries] = []
        fresh: list[str] = []
        done: list[tuple[str, DetectorState | None]] = []
        unjudged = frozenset(self.unjudged()) if self.unjudged is not None else frozenset()
        self._policy = None
        client = InfluxQLClient(self.influx)
        try:
            readings = await self._read(client, since, now, points)
            total.readings += sum(s.times_s.size for s in readings.values())
            for building_id in chunk:
                path = building_state_path(self.state_path, building_id)
                state = self._held.pop(building_id, None) or self._load_state(path, now)
                first_start = state.last_hour is None
                own_since = self._since(state.last_hour, group, now)
                mine = self._points_of(building_id)
                # What this building's own pass would have read: from its own margin (or bootstrap) on.
                cut = own_since.timestamp()
                got = {pid: PointSeries(s.times_s[lo:], s.values[lo:]) for pid in mine if pid in readings
                       for s in [readings[pid]] for lo in [int(np.searchsorted(s.times_s, cut))]}
                if own_since < since:  # its file was not what its peek said (moved aside): read its bootstrap
                    got.update(await self._read(client, own_since, now, mine))
                # A point the state holds no reading of (a Linky fetched for the first time, its backfill delivered
                # for hours already judged): read from the bootstrap back, as a first start does, or the state would
                # see it silent from its first hour and call it missing.
                unseen = [pid for pid in mine if pid not in state.readings or state.readings[pid].times_s.size == 0]
                if unseen and not first_start:
                    back = _floor_hour(now - group.lag - self.live.bootstrap)
                    got.update(await self._read(client, back, now, unseen))
                mine_expected: list[ExpectedSeries] = []
                try:
                    result = await asyncio.to_thread(
                        advance, self.inventory, got, state, until, config=self.config, incremental=self.incremental,
                        on_expected=mine_expected.append, judged=frozenset({building_id}), unjudged=unjudged,
                    )
                except BookingsError as exc:
                    # Its calendar (a URL down with no copy kept yet, a hostile event) holds back this building
                    # alone: its saved state stays where it was, replayed once the calendar reads again; the others
                    # are judged (one calendar failed the passes of every building before).
                    if building_id not in self._calendar_down:
                        logger.error("live detection of building %s held back: booking calendar %s", building_id, exc)
                        self._calendar_down.add(building_id)
                    else:
                        logger.debug("live detection of building %s still held back: %s", building_id, exc)
                    del got, state
                    continue
                if building_id in self._calendar_down:
                    logger.info("booking calendar of building %s reads again: detection catches up", building_id)
                    self._calendar_down.discard(building_id)
                del got
                expected += mine_expected
                events += result.events
                # A first start notifies what is still open, not the history's resolved alerts (written above).
                notified += [e for e in result.events if not (first_start and e.state is AlertState.RESOLVED)]
                if first_start:
                    fresh.append(building_id)
                total.hours = max(total.hours, result.hours)
                if state.last_hour is not None:
                    total.last_hours.append(state.last_hour)
                path.parent.mkdir(parents=True, exist_ok=True)
                state.save(_next(path), segments=segment_dir(path), prune=False)
                done.append((building_id, state if self._holds else None))
                del state
            del readings
            if events or expected:
                total.points += await self._write(events, expected)
            if isinstance(self.notifier, ResettableNotifier):
                # A fresh state (first start, settings changed, state lost) will never resolve the register's open
                # alerts of its building, nor will detection of a building left out of the inventory: close them
                # as reset.
                if fresh:
                    self.notifier.reset(now, everything=True, buildings=fresh)
                if not self._reset_checked:
                    self.notifier.reset(now, everything=False)
                    self._reset_checked = True
            if notified:
                self.notifier.queue(notified, now)
        except BaseException:
            for building_id, _ in done:
                _next(building_state_path(self.state_path, building_id)).unlink(missing_ok=True)
            raise
        finally:
            await client.close()
        for building_id, held in done:
            path = building_state_path(self.state_path, building_id)
            _next(path).replace(path)
            DetectorState.prune_segments(path)  # the weeks the state let go, a failed pass's segments
            if held is not None:
                self._held[building_id] = held
        total.events += events
        total.notified += notified

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
        logger.info("live detection: a pass every %s at %s past, a state per building under %s", self.live.every,
                    self.live.delay, building_state_path(self.state_path, "x").parent)
        for group in self.groups:
            if group.lag:
                logger.info("live detection of %s (utility meters only): hours judged %s late",
                            ", ".join(sorted(group.buildings)), group.lag)
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        await self.tick(clock.now())
        while True:
            now = clock.now()
            wake = next_run(now, self.live)
            digest = self.notifier.next_digest(now) if isinstance(self.notifier, DigestNotifier) else None
            if digest is not None and wake - digest > _HOUR:
                # Passes far apart (ECONOME_DETECT_EVERY=1d runs at 00:05 UTC): the digest would never be due at a
                # pass, or hours late; flush at its hour. With hourly passes, the pass after it sends it.
                await clock.sleep(digest - now)
                await self._flush_quietly(clock.now())
                now = clock.now()
                if now < wake:
                    continue
            await clock.sleep(wake - now)  # a pass overdue once the digest is flushed (a clock that jumped): at once
            await self.tick(clock.now())
