"""The alert state machine: open → ongoing → resolved, with dedup, minimum duration and flap suppression.

Detectors and rules say, hour after hour, whether an anomaly is active for a
key (building, usage, kind, point). :class:`AlertLifecycle` turns those
observations into few transitions:

* **dedup**: one key has at most one alert at a time; repeated detections
  only extend it;
* **minimum duration**: an alert opens once the anomaly has been active for
  ``min_duration`` (counted over active hours, short gaps included);
* **gate**: the caller may hold an alert pending past its minimum duration
  (an excess not yet material, see :mod:`anomalies.detect`): the gate is
  asked at each active observation, with the track so far, so the decision
  depends on earlier hours only;
* **flap suppression**: an open alert resolves only after ``clear_after``
  without any active observation, so an anomaly that comes and goes stays one
  alert; a pending one is forgotten after the same quiet time;
* **muting**: observations inside a building's mute windows (works, known
  events, from ``mute:`` in the inventory) are ignored, and an open alert's
  quiet time leaves them out: a fault open before the works and still there
  after them stays one alert (no resolution at their end, no second opening);
  one that stopped during them resolves ``clear_after`` after their end.

Observations may be unknown (``None``): no data says nothing either way.

Sample config::

    lifecycle:
      min_duration: 3h
      clear_after: 24h

>>> from datetime import UTC, datetime, timedelta
>>> life = AlertLifecycle(LifecycleConfig(min_duration=timedelta(hours=2), clear_after=timedelta(hours=3)))
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> states = [life.observe(("b", "water", "leak", ""), t0 + timedelta(hours=h), h % 2 == 0) for h in range(8)]
>>> [(t.state.value, t.at.hour) for t in states if t is not None]
[('open', 2), ('ongoing', 4)]
>>> [t.state.value for t in life.close(t0 + timedelta(hours=20))]
['resolved']
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from anomalies.events import AlertState
from inventory import Duration, MuteWindow

__all__ = ["AlertKey", "AlertLifecycle", "Gate", "LifecycleConfig", "Track", "Transition"]

logger = logging.getLogger(__name__)

AlertKey = tuple[str, str, str, str]
"""(building, usage, kind, point or "")."""

_STEP = timedelta(hours=1)

Gate = Callable[["Track", datetime], bool]
"""Whether a pending alert whose minimum duration is reached may open, given its track and the hour."""


class LifecycleConfig(BaseModel):
    """Debouncing of one kind of alert."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_duration: Duration = timedelta(hours=3)
    """Active time before an alert opens."""
    clear_after: Duration = timedelta(hours=24)
    """Quiet time before an open alert resolves (and a pending one is forgotten)."""
    forget_pending_after: Duration | None = None
    """Quiet time before a pending alert is forgotten, when shorter than ``clear_after``
    (``None``: ``clear_after``): an open fault outlasts a weekend, short blips days apart
    do not add up to one."""
    step: Duration = _STEP

    def quiet_limit(self, opened: bool) -> timedelta:
        """Quiet time that ends an alert: open (resolved) or still pending (forgotten)."""
        if opened or self.forget_pending_after is None:
            return self.clear_after
        return min(self.clear_after, self.forget_pending_after)
    """Time one observation stands for (the hourly grid)."""


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of state of one alert.

    Attributes:
        key: the alert.
        state: the new state.
        at: when it changed (the observation that made it change).
        start: first active observation of the episode.
        last_active: end of the last active observation (the event's end).
    """

    key: AlertKey
    state: AlertState
    at: datetime
    start: datetime
    last_active: datetime


@dataclass(slots=True)
class Track:
    """Where one key's alert stands: what :meth:`AlertLifecycle.tracks` exports and :meth:`~AlertLifecycle.restore` loads.

    Attributes:
        first: first active observation of the episode.
        last_active: end of the last active observation.
        active: active time so far.
        state: ``None`` while pending, else open or ongoing.
    """

    first: datetime
    last_active: datetime
    active: timedelta
    state: AlertState | None = None


class AlertLifecycle:
    """Debounces observations of many keys into open / ongoing / resolved transitions.

    Args:
        config: the default debouncing.
        per_kind: debouncing per kind (the key's third part), overriding the default.
        mutes: per building id, its mute windows.
        timezone: the organisation's timezone, in which mute dates are read.
    """

    def __init__(
        self,
        config: LifecycleConfig | None = None,
        per_kind: Mapping[str, LifecycleConfig] | None = None,
        mutes: Mapping[str, Sequence[MuteWindow]] | None = None,
        timezone: ZoneInfo | None = None,
    ) -> None:
        self.config = config or LifecycleConfig()
        self.per_kind = dict(per_kind or {})
        self.mutes = {k: list(v) for k, v in (mutes or {}).items()}
        self.timezone = timezone or ZoneInfo("Europe/Paris")
        self._tracks: dict[AlertKey, Track] = {}

    def _config(self, key: AlertKey) -> LifecycleConfig:
        return self.per_kind.get(key[2], self.config)

    def muted(self, building: str, at: datetime) -> bool:
        """Tell whether a building's alerts are muted at a moment."""
        windows = self.mutes.get(building)
        if not windows:
            return False
        day = at.astimezone(self.timezone).date()
        return any(w.start <= day <= w.end for w in windows)

    def tracking(self, key: AlertKey) -> bool:
        """Tell whether a key has an alert open or pending."""
        return key in self._tracks

    def state(self, key: AlertKey) -> AlertState | None:
        """The state of an alert (``None``: no alert, or still pending)."""
        track = self._tracks.get(key)
        return None if track is None else track.state

    def observe(self, key: AlertKey, at: datetime, active: bool | None, gate: Gate | None = None) -> Transition | None:
        """Feed one observation, in time order for a key.

        Args:
            key: the alert key.
            at: start of the observed step.
            active: whether the anomaly is present, ``None`` when unknown.
            gate: asked, at an active observation of a pending alert past its minimum
                duration, whether it may open; refused, it stays pending.

        Returns:
            The transition it caused, if any.
        """
        if active and self.muted(key[0], at):
            active = None
        config = self._config(key)
        track = self._tracks.get(key)
        if not active:
            if track is None or active is None:
                return None
            if not self._ended(key, track, at, config):
                return None
            del self._tracks[key]
            if track.state is None:
                return None
            logger.info("alert %s resolved at %s", key, at)
            return Transition(key, AlertState.RESOLVED, at, track.first, track.last_active)
        end = at + config.step
        if track is None:
            track = Track(first=at, last_active=end, active=timedelta())
            self._tracks[key] = track
        elif self._ended(key, track, at, config):
            # Quiet for long enough: the previous episode is over and a new one starts.
            previous = track
            self._tracks[key] = Track(first=at, last_active=end, active=config.step)
            if previous.state is not None:
                return Transition(key, AlertState.RESOLVED, at, previous.first, previous.last_active)
            track = self._tracks[key]
            return self._maybe_open(key, track, at, config, gate)
        track.active += config.step
        track.last_active = end
        if track.state is None:
            return self._maybe_open(key, track, at, config, gate)
        if track.state is AlertState.OPEN:
            track.state = AlertState.ONGOING
            return Transition(key, AlertState.ONGOING, at, track.first, track.last_active)
        return None

    def _ended(self, key: AlertKey, track: Track, at: datetime, config: LifecycleConfig) -> bool:
        """Whether a track has been quiet long enough at ``at`` to end; an open alert's mute windows are not quiet."""
        quiet = at - track.last_active
        if track.state is not None:
            quiet -= self._muted_time(key[0], track.last_active, at)
        return quiet >= config.quiet_limit(track.state is not None)

    def _muted_time(self, building: str, since: datetime, until: datetime) -> timedelta:
        """How much of ``since`` .. ``until`` a building's mute windows cover (local days, overlaps counted once)."""
        windows = self.mutes.get(building)
        if not windows or until <= since:
            return timedelta(0)
        spans = sorted(w.span(self.timezone) for w in windows)
        total, reached = timedelta(0), since
        for lo, hi in spans:
            lo, hi = max(lo, reached), min(hi, until)
            if hi > lo:
                total += hi - lo
                reached = hi
        return total

    def _maybe_open(
        self, key: AlertKey, track: Track, at: datetime, config: LifecycleConfig, gate: Gate | None
    ) -> Transition | None:
        if track.active < config.min_duration:
            return None
        if gate is not None and not gate(track, at):
            return None
        track.state = AlertState.OPEN
        logger.info("alert %s opened at %s", key, at)
        return Transition(key, AlertState.OPEN, at, track.first, track.last_active)

    def track(self, key: AlertKey) -> Track | None:
        """A copy of a key's pending or open alert, if any."""
        track = self._tracks.get(key)
        return None if track is None else replace(track)

    def tracks(self) -> dict[AlertKey, Track]:
        """A copy of every pending or open alert, to persist (see :mod:`anomalies.incremental`)."""
        return {key: replace(track) for key, track in self._tracks.items()}

    def restore(self, key: AlertKey, track: Track) -> None:
        """Resume a key from a :meth:`tracks` entry (a copy is kept)."""
        self._tracks[key] = replace(track)

    def open_alerts(self) -> list[Transition]:
        """The alerts open or ongoing now, as their latest state."""
        return [
            Transition(key, t.state, t.last_active, t.first, t.last_active)
            for key, t in self._tracks.items()
            if t.state is not None
        ]

    def close(self, at: datetime) -> list[Transition]:
        """Resolve the alerts quiet since ``clear_after`` at ``at``; forget quiet pending ones.

        Args:
            at: the current time.

        Returns:
            The resolved transitions.
        """
        out: list[Transition] = []
        for key, track in list(self._tracks.items()):
            if self._ended(key, track, at, self._config(key)):
                del self._tracks[key]
                if track.state is not None:
                    out.append(Transition(key, AlertState.RESOLVED, at, track.first, track.last_active))
        return out
