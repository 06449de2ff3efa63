"""Incremental detection: advance hour by hour with a persisted state; ``econome detect`` is a replay.

Detection is a causal function of the history: what is said of hour *t*
depends only on readings up to the end of *t*. :func:`advance` processes the
hours after ``state.last_hour`` up to ``until`` and returns what changed
(alerts opened, extended or resolved, as :class:`~anomalies.events.AnomalyEvent`
records in their latest state) while updating the :class:`DetectorState`:

* the readings of the trailing history the rules and models are computed
  on (at most ``history`` + ``roll_every``, 428 days by default);
* per building, its models where they stopped (expected fits, forests and
  thresholds, their walk forward: :class:`~anomalies.detect.ModelProgress`):
  an advance in the same history computes and scores only the new hours and
  refits only at the refit hours among them;
* the alert lifecycle of every key (pending or open alerts, their start,
  active time, last active hour, the hour they opened);
* the rule alerts that suppress model alerts of the same building.

Each hour *h* of a building is computed over the readings since a start
``S(h)`` that only depends on *h*, on the state's origin and on the building:
the origin itself while the history is shorter than ``history``, then a
start that moves forward by ``roll_every`` steps at the building's own hour
of that period (:func:`~anomalies.detect.refit_phase`: the buildings of a
portfolio do not all start their history again in the same pass), so at most
``history + roll_every`` of readings is kept. The rules judge each hour over
the readings since ``S(h)``; at a roll the models carry on where they stood
(:meth:`~anomalies.detect.ModelProgress.moved`: the hours kept from before the
roll keep their values, but for those of a weather silence that began before
the new start, unknown there; the fits and forests are kept, later refits see
the readings since the new start only), rather than being walked again over
the whole new history. The hours of one advance are
grouped by their start and computed in one pass per group; since the rules
and models are causal, the result does not depend on how the hours were
chunked (tested by ``tests/unit/anomalies/test_incremental.py``). With
``DetectConfig.refit_spread`` the expected models are refitted at the
building's own hour of the week (:func:`~anomalies.detect.run_models`); a
replay (``econome detect``) runs this same code with the same settings, so it
refits on the same schedule. Readings that arrive for
hours already judged start the building's models again from ``S``.

An hour is processed once a reading at or after its end exists: ``until``
defaults to the hour of the latest reading, rounded down.

The state saves to a head ``.npz`` file and segment files (:meth:`DetectorState.save`, format 5, no
pickle): the readings of each closed span (:data:`SEGMENT_SPAN`, 28 days, ended a day before the last hour) go to a
segment file of their own, beside the head (:func:`segment_dir`: ``mairie.npz`` → ``mairie.seg/``), named by
its span and a digest of its content and written once; the head (versioned JSON metadata, the readings after
the last closed span, the models' arrays, the rule memo's and the clock columns') names the segments it uses
(and the prefix files holding the first 15/16 of the rows of its large arrays, kept while those rows do not
change) and is rewritten atomically, last, each save, so a crash leaves the previous head and its files whole;
segments no head names are deleted (:meth:`DetectorState.prune_segments`). A format-4 file (every reading in
the one file) loads as it is and its next save writes format 5; a
format-3 file loads without the clock columns, computed again once, a format-2
file without the rule memo, so its first advance judges every day again, and a
format-1 file without models, which its first advance computes again;
:meth:`DetectorState.load` refuses a corrupt or foreign file, or a segment missing or corrupt (its
archive's CRC), with a :class:`~streams.errors.DecodeError` naming it.

Sample config (``IncrementalConfig``)::

    incremental:
      history: 400d
      roll_every: 28d

>>> import tempfile
>>> from datetime import UTC, datetime, timedelta
>>> from pathlib import Path
>>> from anomalies.detect import read_readings_csv
>>> from inventory import load_inventory
>>> from simulator.export import write_readings_csv
>>> inv = load_inventory(Path("examples/commune.yaml"))
>>> start = datetime(2026, 1, 5, tzinfo=UTC)
>>> csv = Path(tempfile.mkdtemp()) / "readings.csv"
>>> _ = write_readings_csv(inv, csv, start, start + timedelta(days=3))
>>> readings = read_readings_csv(csv)
>>> config = DetectConfig(models=False)
>>> state = DetectorState.fresh(config)
>>> first = advance(inv, readings, state, until=start + timedelta(days=2), config=config)
>>> state.last_hour == start + timedelta(days=2)
True
>>> _ = advance(inv, readings, state, config=config)  # up to the hour of the last reading: the Gazpar's
>>> state.last_hour.isoformat()  # index closing the gas day of the 7th, at 6:00 in Paris
'2026-01-08T05:00:00+00:00'
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import zipfile
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from anomalies.detect import (
    AlertMemory,
    DayBoundMemo,
    DetectConfig,
    ExpectedSeries,
    ModelProgress,
    RuleSpan,
    building_findings,
    debounce,
    refit_phase,
)
from anomalies.events import AlertState, AnomalyEvent
from anomalies.expected import ExpectedFit
from anomalies.features import ClockCache, FloatArray, HourlyFrame, IntArray, PointSeries
from anomalies.iforest import IsolationForestDetector
from anomalies.lifecycle import AlertKey, AlertLifecycle, Track
from anomalies.rules import RuleMemo
from anomalies.thresholds import QuantileThreshold
from inventory import Duration, FrenchCalendar, Inventory, Usage
from streams.errors import ConfigError, DecodeError, ModelError

__all__ = [
    "FORMAT_VERSION",
    "SEGMENT_SPAN",
    "AdvanceResult",
    "DetectorState",
    "IncrementalConfig",
    "advance",
    "segment_dir",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 5
"""Version of the state file; each older version gets its own named loader (1: no models, computed again once;
2: no rule memo, every day judged again once; 3: no clock columns, computed again once; 4: every reading in the
one file, rewritten whole each pass, and no day-residual bounds, computed again once: read as it is, the next
save writes format 5)."""
_READ_VERSIONS = (1, 2, 3, 4, 5)
SEGMENT_SPAN = timedelta(days=28)
"""Span of one segment file: the readings of four closed weeks (aligned to the Unix epoch, a Thursday, 00:00 UTC).
Shorter spans make a smaller head but more files to read at each load: 7 days, 57 files for 400 days, cost
0.12-0.15 s of CPU to load 50 points, 28 days 0.07 s (one file in one piece: 0.04 s)."""
_SEGMENT_CLOSED_S = 86_400.0  # a span goes to a segment once it ended a day before the last hour: after the re-reads
_SEGMENT_FORMAT = 1
_SEGMENT_NAME = re.compile(r"^(\d{8}T\d{2}-\d{8}T\d{2}|prefix)-[0-9a-f]{16}\.npz$")
_PREFIX_MIN_BYTES = 64 * 1024  # a head array at least this large keeps its first rows in a prefix file
_PREFIX_HEAD_SHARE = 16  # ... all but 1/16 of them, written again once the rows after it are twice that
_PROGRESS_ARRAYS = ("expected", "scores", "flagged", "model_flag", "beyond", "rows")

_HOUR_S = 3600.0
_SPAN_MEMORY_S = 60 * 86_400.0  # resolved rule alerts older than this suppress no new model alert


class IncrementalConfig(BaseModel):
    """How much history incremental detection keeps and recomputes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    history: Duration = timedelta(days=400)
    """History every hour is computed on, at least (a year and a season: the models meet each season once)."""
    roll_every: Duration = Field(default=timedelta(days=28))
    """Step by which the start of that history moves forward once it is longer."""
    max_wait: Duration = Field(default=timedelta(hours=2))
    """How long the hours wait for a point that lags behind the others. An hour is processed once
    every point that reported within this time of the latest reading has a reading at or after
    its end: a counter read late would otherwise leave its hour unknown for ever in a live run,
    where a replay knows it. A point silent for longer does not hold detection back."""


@dataclass(eq=False)
class DetectorState:
    """Where incremental detection stands (see the module docstring).

    Attributes:
        config_digest: digest of the detection settings the state was built with.
        origin: first hour of the history, ``None`` before any reading.
        last_hour: end of the hours processed (exclusive), ``None`` before any.
        readings: per point, the kept readings.
        tracks: per key, its pending or open alert.
        memory: per key, when its alert opened and whether it is suppressed.
        spans: recent rule alerts, for model suppression.
        rule_memo: what the rules computed on earlier passes, saved with the state (format 3): the
            first pass after a start judges only its new days, as the passes of a running service do
            (the findings are the same either way).
        models: per building, the start of the history its models were run on (seconds) and, per usage,
            where they stopped (:class:`~anomalies.detect.ModelProgress`): the next advance in the same
            history resumes them, computing and scoring only the new hours (refits only at the refit
            hours among them). Held in memory between the passes of a running service.
        clock: per building, its hours' schedule and calendar columns, computed a week past the
            frame's end (:class:`~anomalies.features.ClockCache`): the next passes on the same history
            start slice them. Saved with the state (format 4): the live service, which loads each
            building's state at each pass, does not compute them again each pass.
        stored: by start (seconds), the segment files of closed spans this state was read from or last saved
            to, with their readings' counts per point: a span whose readings are still those is not written
            again (format 5).
        stored_span: per point, the readings those segments hold, in time order (views of :attr:`readings`'
            arrays, which are never modified in place: one copy in memory).
    """

    config_digest: str
    origin: datetime | None = None
    last_hour: datetime | None = None
    readings: dict[str, PointSeries] = field(default_factory=dict)
    tracks: dict[AlertKey, Track] = field(default_factory=dict)
    memory: dict[AlertKey, AlertMemory] = field(default_factory=dict)
    spans: list[RuleSpan] = field(default_factory=list)
    rule_memo: RuleMemo = field(default_factory=RuleMemo, repr=False)
    models: dict[str, tuple[float, dict[Usage, ModelProgress]]] = field(default_factory=dict)
    clock: ClockCache = field(default_factory=ClockCache, repr=False)
    stored: dict[float, _Segment] = field(default_factory=dict, repr=False)
    stored_span: dict[str, tuple[FloatArray, FloatArray]] = field(default_factory=dict, repr=False)
    stored_prefixes: dict[str, tuple[str, np.ndarray[Any, Any]]] = field(default_factory=dict, repr=False)

    @classmethod
    def fresh(cls, config: DetectConfig | None = None, incremental: IncrementalConfig | None = None) -> DetectorState:
        """An empty state for these settings."""
        return cls(config_digest=_digest(config or DetectConfig(), incremental or IncrementalConfig()))

    def part(self, building_id: str, points: Collection[str]) -> DetectorState:
        """The state of one building: what a state of several buildings holds of it (the live service's split).

        The same settings, origin and last hour (so the building's histories start where they did), the
        readings of ``points`` (its own and the weather station's), its alerts' lifecycle, its rule spans and
        its models. The rule memo is left empty: a cache, whose first advance judges the building's days
        again once, with the same findings (``test_rule_memo.py``); the clock columns are computed again.
        The arrays are shared with this state, not copied.

        Args:
            building_id: the building.
            points: the points whose readings it keeps.

        Returns:
            A new state.
        """
        return DetectorState(
            config_digest=self.config_digest, origin=self.origin, last_hour=self.last_hour,
            readings={pid: s for pid, s in self.readings.items() if pid in points},
            tracks={k: t for k, t in self.tracks.items() if k[0] == building_id},
            memory={k: m for k, m in self.memory.items() if k[0] == building_id},
            spans=[s for s in self.spans if s.building == building_id],
            models={b: m for b, m in self.models.items() if b == building_id},
        )

    def save(self, path: Path, *, segments: Path | None = None, prune: bool = True) -> None:
        """Write the state to ``path`` (``.npz``) and its closed spans to segment files, atomically.

        The readings of each closed span (:data:`SEGMENT_SPAN`, ended a day before :attr:`last_hour`) go to a
        segment file of their own in ``segments`` (default :func:`segment_dir`), named by its span and the
        digest of its content and written once: a span whose readings are those of the segment this state was
        read from or last saved to is not written again. The head file at ``path`` holds the rest (the
        readings after the last closed span, the models, the rule memo, the clock columns, the alerts'
        lifecycle, the last hour) and names its segments; the first rows of its large arrays go to prefix files
        the same way (:meth:`_write_prefixes`). The head is written last, to a temporary file put in place, so a
        crash leaves the previous head and the files it names whole.

        Args:
            path: the head file.
            segments: the folder of the segment files, beside ``path`` (the live service saves its next state
                to ``<building>.npz.next`` with the segments of ``<building>.npz``).
            prune: delete the segment files no head of ``path``'s name names (:meth:`prune_segments`); the live
                service prunes once ``.next`` is put in place.
        """
        folder = segments or segment_dir(path)
        if folder.parent != path.parent:
            msg = f"{folder}: the segments of {path} go beside it"
            raise ValueError(msg)
        stored, tail = self._write_segments(folder)
        points = sorted(self.readings)
        meta: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "config_digest": self.config_digest,
            "origin": _ts(self.origin),
            "last_hour": _ts(self.last_hour),
            "points": points,
            "segment_dir": folder.name,
            "segments": [{"name": seg.name, "start": seg.start_s, "end": seg.end_s} for seg in stored],
            "tracks": [
                {"key": list(k), "first": t.first.timestamp(), "last_active": t.last_active.timestamp(),
                 "active_s": t.active.total_seconds(), "state": None if t.state is None else t.state.value}
                for k, t in sorted(self.tracks.items())
            ],
            "memory": [
                {"key": list(k), "opened": _ts(m.opened), "suppressed": m.suppressed}
                for k, m in sorted(self.memory.items())
            ],
            "spans": [
                {"building": s.building, "start": s.start.timestamp(), "last_active": s.last_active.timestamp(),
                 "opened": s.opened.timestamp(), "resolved": _ts(s.resolved), "usage": s.usage}
                for s in self.spans
            ],
        }
        arrays: dict[str, Any] = {}
        meta["models"] = _models_meta(self.models, arrays)
        ms_times: list[int] = []  # points whose times are whole milliseconds, kept as runs of steps (``r<i>``)
        for i, pid in enumerate(points):
            times, values = tail[pid]
            runs = _step_runs(times)
            if runs is not None:
                arrays[f"r{i}"] = runs
                ms_times.append(i)
            else:
                arrays[f"t{i}"] = times
            arrays[f"v{i}"] = values
        meta["ms_times"] = ms_times
        arrays.update(self.rule_memo.to_arrays())
        arrays.update(self.clock.to_arrays())
        arrays["meta"] = np.array(json.dumps(meta))
        deflated = {"meta", "memo_meta", "clock_meta", *(f"r{i}" for i in ms_times), *(f"t{i}" for i in range(len(points)))}
        # An .npz (np.load reads it): the metadata and the times deflated at level 1, the rest (readings'
        # values, models, rule memo: floats that deflate by a third at most) stored as they are. Deflating
        # everything was most of a pass's CPU (about 0.4 s per building of 50 points and 400 days,
        # bench/live.py), for a file 30 % smaller.
        meta["prefixes"] = self._write_prefixes(folder, arrays)
        arrays["meta"] = np.array(json.dumps(meta))
        _write_npz(path, arrays, deflated)
        self.stored = {seg.start_s: seg for seg in stored}
        if prune:
            self.prune_segments(path)

    def _write_prefixes(self, folder: Path, arrays: dict[str, Any]) -> dict[str, Any]:
        """Move the first rows of the head's large arrays to prefix files, written once; ``arrays`` keeps the rest.

        The models' walk-forward arrays, the rule memo's days and the clock columns grow at their end from a
        pass to the next: the rows a prefix file holds, when they are still those (compared with a copy, bit
        for bit), are not written again. Returns, per array name, its prefix file and rows.
        """
        named: dict[str, Any] = {}
        kept: dict[str, tuple[str, np.ndarray[Any, Any]]] = {}
        for name, array in list(arrays.items()):
            if not isinstance(array, np.ndarray) or array.ndim == 0 or array.dtype.hasobject:
                continue
            held = self.stored_prefixes.get(name)
            rows = 0 if held is None else held[1].shape[0]
            if (held is not None and array.shape[0] >= rows and array.shape[1:] == held[1].shape[1:]
                    and array.dtype == held[1].dtype and array.shape[0] - rows <= max(2 * rows // _PREFIX_HEAD_SHARE, 1)
                    and np.ascontiguousarray(array[:rows]).tobytes() == held[1].tobytes()):
                file = held[0]
            elif array.nbytes >= _PREFIX_MIN_BYTES:
                rows = array.shape[0] - array.shape[0] // _PREFIX_HEAD_SHARE
                prefix = np.ascontiguousarray(array[:rows])
                digest = hashlib.sha256(f"{prefix.dtype.str}{prefix.shape}".encode() + prefix.tobytes()).hexdigest()[:16]
                file = f"prefix-{digest}.npz"
                if not _holds(folder / file, prefix):
                    folder.mkdir(parents=True, exist_ok=True)
                    _write_npz(folder / file, {"a": prefix}, ())
                held = (file, prefix.copy())
            else:
                continue
            kept[name] = (file, held[1])
            named[name] = {"file": file, "rows": rows}
            arrays[name] = array[rows:]
        self.stored_prefixes = kept
        return named

    def _write_segments(self, folder: Path) -> tuple[list[_Segment], dict[str, tuple[FloatArray, FloatArray]]]:
        """The segments of the closed spans (written when new) and, per point, its readings after them.

        The usual pass changes no closed span: one comparison per point of the readings the stored segments hold
        with the same span of the current ones says so; otherwise each span is compared on its own.
        """
        tail = {pid: (s.times_s, s.values) for pid, s in self.readings.items()}
        if self.last_hour is None:
            self.stored_span = {}
            return [], tail
        span_s = SEGMENT_SPAN.total_seconds()
        closed_s = math.floor((self.last_hour.timestamp() - _SEGMENT_CLOSED_S) / span_s) * span_s
        firsts = [float(s.times_s[0]) for s in self.readings.values() if s.times_s.size and s.times_s[0] < closed_s]
        if not firsts:
            self.stored_span = {}
            return [], tail
        first_s = math.floor(min(firsts) / span_s) * span_s
        weeks = round((closed_s - first_s) / span_s)
        edges = first_s + span_s * np.arange(weeks + 1, dtype=np.float64)
        cuts = {pid: np.searchsorted(s.times_s, edges) for pid, s in self.readings.items()}
        empty = np.empty(0, dtype=np.float64)

        def current(pid: str, i: int, j: int) -> tuple[FloatArray, FloatArray]:
            if pid not in cuts:
                return empty, empty
            lo, hi = int(cuts[pid][i]), int(cuts[pid][j])
            return self.readings[pid].times_s[lo:hi], self.readings[pid].values[lo:hi]

        old = self.stored
        unchanged = False
        if old:
            i_lo = round((min(old) - first_s) / span_s)
            i_hi = round((max(seg.end_s for seg in old.values()) - first_s) / span_s)
            if 0 <= i_lo < i_hi <= weeks:
                unchanged = all(
                    _same_bits(now[0], held[0]) and _same_bits(now[1], held[1])
                    for pid in {*cuts, *self.stored_span}
                    for now, held in [(current(pid, i_lo, i_hi), self.stored_span.get(pid, (empty, empty)))])
        offsets = self._stored_offsets() if old and not unchanged else {}
        stored: list[_Segment] = []
        for i in range(weeks):
            start_s = float(edges[i])
            known = old.get(start_s)
            if unchanged and known is not None:
                stored.append(known)
                continue
            week = {pid: pair for pid in sorted(cuts) for pair in [current(pid, i, i + 1)] if pair[0].size}
            if not week:
                continue
            if known is not None and known.counts == {pid: t.size for pid, (t, _) in week.items()} and all(
                    _same_bits(t, held_t[at:at + t.size]) and _same_bits(v, held_v[at:at + t.size])
                    for pid, (t, v) in week.items()
                    for held_t, held_v in [self.stored_span[pid]] for at in [offsets[start_s][pid]]):
                stored.append(known)
            else:
                stored.append(_write_segment(folder, start_s, start_s + span_s, week))
        self.stored_span = {pid: current(pid, 0, weeks) for pid in cuts}
        for pid, s in self.readings.items():
            lo = int(cuts[pid][weeks])
            tail[pid] = (s.times_s[lo:], s.values[lo:])
        return stored, tail

    def _stored_offsets(self) -> dict[float, dict[str, int]]:
        """Per stored segment and point, where its readings start in :attr:`stored_span`."""
        at: dict[str, int] = {}
        offsets: dict[float, dict[str, int]] = {}
        for start_s in sorted(self.stored):
            seg = self.stored[start_s]
            offsets[start_s] = {pid: at.get(pid, 0) for pid in seg.counts}
            for pid, count in seg.counts.items():
                at[pid] = at.get(pid, 0) + count
        return offsets

    @staticmethod
    def prune_segments(path: Path) -> list[Path]:
        """Delete the segment files of ``path`` that none of its heads names (a crash's orphans, the spans let go).

        The heads are ``path`` and ``<path>.next`` (the live service's next state, not yet put in place). A head
        that cannot be read names nothing; a file moved aside (``.unreadable-<time>``...) keeps only its head.

        Returns:
            The files deleted.
        """
        folder = segment_dir(path)
        if not folder.is_dir():
            return []
        used: set[str] = set()
        for head in (path, path.with_name(path.name + ".next")):
            if not head.exists():
                continue
            try:
                with np.load(head, allow_pickle=False) as data:
                    meta = json.loads(str(data["meta"]))
            except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError, MemoryError):
                continue
            if isinstance(meta, dict) and meta.get("segment_dir") == folder.name:
                used.update(str(seg["name"]) for seg in meta.get("segments", []))
                used.update(str(e["file"]) for e in meta.get("prefixes", {}).values())
        gone = []
        for file in folder.iterdir():
            if file.name not in used and (_SEGMENT_NAME.match(file.name) or file.name.endswith(".tmp")):
                file.unlink(missing_ok=True)
                gone.append(file)
        if gone:
            logger.debug("%d segment files of %s no head names deleted", len(gone), path)
        return gone

    @classmethod
    def load(cls, path: Path) -> DetectorState:
        """Read a state written by :meth:`save`, whatever format version this code reads.

        Raises:
            DecodeError: the file is not a state file, is corrupt, or has an unknown format version.
        """
        try:
            with np.load(path, allow_pickle=False) as archive:
                data = _Members(archive)
                meta = json.loads(str(data["meta"]))
                version = meta.get("format_version")
                if version not in _READ_VERSIONS:
                    msg = f"{path}: unknown detection state format_version {version!r} (this version reads {FORMAT_VERSION})"
                    raise DecodeError(msg)
                if version == FORMAT_VERSION:
                    return cls._load_v5(meta, data, path)
                loader = {1: cls._load_v1, 2: cls._load_v2, 3: cls._load_v3, 4: cls._load_v4}[version]
                return loader(meta, data)
        except DecodeError:
            raise
        except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile, EOFError, MemoryError,
                ModelError) as exc:
            msg = (f"{path}: not a readable detection state ({type(exc).__name__}: {exc}); "
                   "remove it (or use --reset-state) to start afresh")
            raise DecodeError(msg) from exc

    @staticmethod
    def peek_last_hour(path: Path) -> datetime | None:
        """The ``last_hour`` of a state file, read without loading its readings (``econome status``).

        Raises:
            DecodeError: the file is not a readable state file of a known format version.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError, MemoryError) as exc:
            msg = f"{path}: not a readable detection state ({type(exc).__name__}: {exc})"
            raise DecodeError(msg) from exc
        if not isinstance(meta, dict) or meta.get("format_version") not in _READ_VERSIONS:
            version = meta.get("format_version") if isinstance(meta, dict) else None
            msg = f"{path}: unknown detection state format_version {version!r} (this version reads {FORMAT_VERSION})"
            raise DecodeError(msg)
        last = meta.get("last_hour")
        return None if last is None else _dt(last)

    @classmethod
    def _load_v5(cls, meta: dict[str, Any], data: Any, path: Path) -> DetectorState:
        """Version 5: version 4 with the closed spans' readings and the large arrays' first rows in other files.

        The segment files the head names hold the readings of the closed spans, its prefix files the first rows
        of its large arrays (models, rule memo, clock columns).
        """
        folder_name = str(meta["segment_dir"])
        if not folder_name or folder_name != Path(folder_name).name or folder_name in {".", ".."}:
            msg = f"{path}: segment folder {folder_name!r} is not a name beside the file"
            raise DecodeError(msg)
        folder = path.parent / folder_name
        prefixes: dict[str, tuple[str, np.ndarray[Any, Any]]] = {}
        for name, e in meta["prefixes"].items():
            file = folder / str(e["file"])
            try:
                with np.load(file, allow_pickle=False) as blob:
                    prefix = _Members(blob)["a"]
            except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError, MemoryError) as exc:
                msg = f"{file}: not a readable detection state prefix ({type(exc).__name__}: {exc})"
                raise DecodeError(msg) from exc
            if prefix.shape[0] != int(e["rows"]):
                msg = f"{file}: holds {prefix.shape[0]} rows, its state names {e['rows']}"
                raise DecodeError(msg)
            prefixes[str(name)] = (file.name, prefix)
        state = cls._load_v4(meta, _Joined(data, {k: v for k, (_, v) in prefixes.items()}))
        state.stored_prefixes = prefixes  # read from their files, joined by copy: the state shares none of them
        parts: dict[str, list[tuple[FloatArray, FloatArray]]] = {pid: [] for pid in state.readings}
        for e in meta["segments"]:
            file = folder / str(e["name"])
            start_s, end_s = float(e["start"]), float(e["end"])
            series = _read_segment(file, start_s, end_s)
            for pid, pair in series.items():
                if pid not in parts:
                    msg = f"{file}: point {pid!r} is not one of {path}'s"
                    raise DecodeError(msg)
                parts[pid].append(pair)
            state.stored[start_s] = _Segment(file.name, start_s, end_s, {pid: int(t.size) for pid, (t, _) in series.items()})
        for pid, tail in state.readings.items():
            pieces = [*parts[pid], (tail.times_s, tail.values)]
            times = np.concatenate([t for t, _ in pieces]) if len(pieces) > 1 else tail.times_s
            values = np.concatenate([v for _, v in pieces]) if len(pieces) > 1 else tail.values
            state.readings[pid] = PointSeries(times, values)
            # What the segments hold, as views of the readings (one copy in memory): the next save compares with them.
            held = sum(t.size for t, _ in parts[pid])
            state.stored_span[pid] = (times[:held], values[:held])
        return state

    @classmethod
    def _load_v4(cls, meta: dict[str, Any], data: Any) -> DetectorState:
        """Version 4: version 3 and the clock columns (:attr:`clock`), so a load does not compute them again."""
        state = cls._load_v3(meta, data)
        state.clock = ClockCache.from_arrays(data)
        return state

    @classmethod
    def _load_v3(cls, meta: dict[str, Any], data: Any) -> DetectorState:
        """Version 3: version 2 with times as runs of whole-millisecond steps (``r<i>``, else ``t<i>``) and the rule memo."""
        ms_times = set(meta["ms_times"])
        readings = {}
        for i, pid in enumerate(meta["points"]):
            if i in ms_times:
                times = _times_of_runs(np.asarray(data[f"r{i}"], dtype=np.int64))
            else:
                times = np.asarray(data[f"t{i}"], dtype=np.float64)
            readings[pid] = PointSeries(times, np.asarray(data[f"v{i}"], dtype=np.float64))
        state = cls._load_v1(meta, data, readings)
        state.models = _models_from(meta["models"], data)
        if "memo_meta" in data.files:
            try:
                state.rule_memo = RuleMemo.from_arrays(data)
            except DecodeError as exc:
                # A cache: a memo this version cannot read (its format changed) only costs one whole judgement.
                logger.warning("rule memo of the detection state not read (%s): the next pass judges every day", exc)
        return state

    @classmethod
    def _load_v2(cls, meta: dict[str, Any], data: Any) -> DetectorState:
        """Version 2: version 1 and the models (:attr:`models`); no rule memo (the first advance judges every day)."""
        state = cls._load_v1(meta, data)
        state.models = _models_from(meta["models"], data)
        return state

    @classmethod
    def _load_v1(cls, meta: dict[str, Any], data: Any, readings: dict[str, PointSeries] | None = None) -> DetectorState:
        """Version 1: no models; the first advance computes them again from the history, as every advance did."""
        if readings is None:
            readings = {
                pid: PointSeries(np.asarray(data[f"t{i}"], dtype=np.float64),
                                 np.asarray(data[f"v{i}"], dtype=np.float64))
                for i, pid in enumerate(meta["points"])
            }
        tracks = {
            _akey(t["key"]): Track(
                first=_dt(t["first"]), last_active=_dt(t["last_active"]), active=timedelta(seconds=t["active_s"]),
                state=None if t["state"] is None else AlertState(t["state"]),
            )
            for t in meta["tracks"]
        }
        memory = {
            _akey(m["key"]): AlertMemory(opened=None if m["opened"] is None else _dt(m["opened"]),
                                         suppressed=bool(m["suppressed"]))
            for m in meta["memory"]
        }
        spans = [
            RuleSpan(str(s["building"]), _dt(s["start"]), _dt(s["last_active"]), _dt(s["opened"]),
                     None if s["resolved"] is None else _dt(s["resolved"]), str(s.get("usage", "")))
            for s in meta["spans"]
        ]
        origin, last = meta["origin"], meta["last_hour"]
        return cls(
            config_digest=str(meta["config_digest"]),
            origin=None if origin is None else _dt(origin),
            last_hour=None if last is None else _dt(last),
            readings=readings, tracks=tracks, memory=memory, spans=spans,
        )


@dataclass(frozen=True, slots=True, eq=False)
class AdvanceResult:
    """What one :func:`advance` changed.

    Attributes:
        events: per alert opened, extended or resolved in the new hours, its event in its latest state.
        state: the state, updated in place.
        hours: how many hours were processed.
    """

    events: list[AnomalyEvent]
    state: DetectorState
    hours: int


@dataclass(frozen=True, slots=True, eq=False)
class _Segment:
    """A segment file: the span it holds and, per point with readings in ``[start_s, end_s)``, how many."""

    name: str
    start_s: float
    end_s: float
    counts: dict[str, int]


# The shapes numpy writes: (), (3,), (3, 4)...; anything else is left to numpy, which says what is wrong.
_NPY_HEADER = re.compile(r"\{'descr': '([<>|=]?[A-Za-z]\d*)', 'fortran_order': False, 'shape': \((|\d+,|\d+(?:, \d+)+)\), \}\s*")


class _Archive(Mapping[str, Any]):
    """The arrays of an ``np.load`` of an ``.npz`` (``files``, as numpy's), read as a subclass says."""

    def __init__(self, data: Any) -> None:
        self._data = data
        self.files: list[str] = list(data.files)

    def __getitem__(self, name: str) -> Any:
        return self._data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def __contains__(self, name: object) -> bool:
        return name in self.files


class _Members(_Archive):
    """The arrays of an ``np.load`` of an ``.npz``, each read with a quick parse of its ``.npy`` header.

    A head holds hundreds of small arrays: numpy parses each header with :func:`ast.literal_eval` (a third of
    reading them). The headers numpy writes (a plain dtype, C order) are read with a pattern instead; any
    other member is read by numpy. The arrays are the same (values, dtype, shape, writable); the archive's
    CRC is checked as numpy checks it.
    """

    def __getitem__(self, name: str) -> Any:
        if name not in self.files:
            return self._data[name]  # numpy's KeyError
        try:
            raw = self._data.zip.read(f"{name}.npy")
        except KeyError:
            return self._data[name]  # a member not named as numpy names arrays: numpy reads it
        quick = _quick_array(raw)
        return quick if quick is not None else self._data[name]


def _quick_array(raw: bytes) -> np.ndarray[Any, Any] | None:
    """The array of an ``.npy`` file's bytes whose header numpy wrote for a plain dtype in C order, else None."""
    if raw[:6] != b"\x93NUMPY" or len(raw) < 10:
        return None
    if raw[6] == 1:
        size, start = int.from_bytes(raw[8:10], "little"), 10
    elif raw[6] in (2, 3) and len(raw) >= 12:
        size, start = int.from_bytes(raw[8:12], "little"), 12
    else:
        return None
    found = _NPY_HEADER.fullmatch(raw[start : start + size].decode("latin1"))
    if found is None:
        return None
    try:
        dtype = np.dtype(found.group(1))
    except TypeError:
        return None  # numpy says what is wrong
    if dtype.hasobject or dtype.itemsize == 0:
        return None
    shape = tuple(int(x) for x in found.group(2).split(",") if x.strip())
    count = math.prod(shape)
    if len(raw) - start - size != count * dtype.itemsize:
        # Not handed to numpy: a header claiming 2**40 rows would have it allocate them (MemoryError).
        msg = f"array of shape {shape} holds {len(raw) - start - size} bytes, not {count * dtype.itemsize}"
        raise ValueError(msg)
    return np.frombuffer(bytearray(raw[start + size :]), dtype=dtype, count=count).reshape(shape)


class _Joined(_Archive):
    """A head's arrays (an ``np.load``) with their first rows from the prefix files joined back."""

    def __init__(self, data: Any, prefixes: dict[str, np.ndarray[Any, Any]]) -> None:
        super().__init__(data)
        self._prefixes = prefixes

    def __getitem__(self, name: str) -> Any:
        rest = self._data[name]
        prefix = self._prefixes.get(name)
        return rest if prefix is None else np.concatenate([prefix, rest])


def _same_bits(a: FloatArray, b: FloatArray) -> bool:
    """Whether two float64 arrays hold the same values bit for bit (NaN, -0.0 included)."""
    return a.size == b.size and bool(np.array_equal(a.view(np.int64), b.view(np.int64)))


def segment_dir(path: Path) -> Path:
    """The folder of the segment files of the state file ``path``, beside it.

    >>> segment_dir(Path("detect/state/mairie.npz")).as_posix()
    'detect/state/mairie.seg'
    >>> segment_dir(Path("detect.state")).as_posix()
    'detect.state.seg'
    """
    name = path.name.removesuffix(".npz") if path.name.endswith(".npz") else path.name
    return path.with_name(name + ".seg")


def _write_npz(path: Path, arrays: dict[str, Any], deflated: Collection[str]) -> None:
    """Write ``arrays`` as an ``.npz`` at ``path`` atomically (a temporary file, synced, put in place)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for name, array in arrays.items():
                member: str | zipfile.ZipInfo = f"{name}.npy"
                if name not in deflated:
                    member = zipfile.ZipInfo(f"{name}.npy")
                    member.compress_type = zipfile.ZIP_STORED
                with archive.open(member, "w", force_zip64=True) as out:
                    np.lib.format.write_array(out, np.asanyarray(array), allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def _write_segment(folder: Path, start_s: float, end_s: float,
                   week: dict[str, tuple[FloatArray, FloatArray]]) -> _Segment:
    """The segment of ``week``, written to ``folder`` unless a file of its content is there already.

    One ``.npz`` of four members: its metadata (span, points, counts), the times of the points whose times are
    whole milliseconds as runs of steps (:func:`_step_runs`), the others' as float64, and the values; named
    ``<start>-<end>-<digest of the content>.npz`` (UTC hours), so a name stands for one content.
    """
    points = sorted(week)
    runs_of: list[IntArray] = []
    raw: list[FloatArray] = []
    counts, n_runs = [], []
    for pid in points:
        times = week[pid][0]
        runs = _step_runs(times)
        counts.append(int(times.size))
        if runs is None:
            raw.append(times)
            n_runs.append(-1)
        else:
            runs_of.append(runs)
            n_runs.append(int(runs.shape[0]))
    meta = {"segment_format": _SEGMENT_FORMAT, "start": start_s, "end": end_s, "points": points,
            "counts": counts, "runs": n_runs}
    arrays = {
        "meta": np.array(json.dumps(meta)),
        "runs": np.concatenate(runs_of) if runs_of else np.empty((0, 2), dtype=np.int64),
        "times": np.concatenate(raw) if raw else np.empty(0, dtype=np.float64),
        "values": np.concatenate([week[pid][1] for pid in points]).astype(np.float64, copy=False),
    }
    digest = hashlib.sha256()
    for name in ("meta", "runs", "times", "values"):
        digest.update(np.ascontiguousarray(arrays[name]).tobytes() if name != "meta" else str(arrays[name]).encode())
    name = f"{_dt(start_s):%Y%m%dT%H}-{_dt(end_s):%Y%m%dT%H}-{digest.hexdigest()[:16]}.npz"
    file = folder / name
    if not _readable_segment(file, start_s, end_s):
        folder.mkdir(parents=True, exist_ok=True)
        _write_npz(file, arrays, {"meta", "runs", "times"})
    return _Segment(name, start_s, end_s, {pid: int(t.size) for pid, (t, _) in week.items()})


def _holds(file: Path, prefix: np.ndarray[Any, Any]) -> bool:
    """Whether the prefix file ``file`` is there and holds ``prefix``.

    A corrupt file of the same content's name is written again, not named by the next head as it is (after
    ``--reset-state``, or a state moved aside and started afresh, the same content comes back).
    """
    if not file.exists():
        return False
    try:
        with np.load(file, allow_pickle=False) as blob:
            held = blob["a"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile, EOFError, MemoryError):
        return False
    return bool(held.dtype == prefix.dtype and held.shape == prefix.shape and held.tobytes() == prefix.tobytes())


def _readable_segment(file: Path, start_s: float, end_s: float) -> bool:
    """Whether the segment file ``file`` is there and reads (its archive's CRC); see :func:`_holds`."""
    if not file.exists():
        return False
    try:
        _read_segment(file, start_s, end_s)
    except DecodeError:
        return False
    return True


def _read_segment(file: Path, start_s: float, end_s: float) -> dict[str, tuple[FloatArray, FloatArray]]:
    """The readings of a segment file :func:`_write_segment` wrote, for the span its head names, by point.

    Raises:
        DecodeError: the file is missing, corrupt (the archive's CRC), of another format or another span.
    """
    try:
        with np.load(file, allow_pickle=False) as archive:
            data = _Members(archive)
            meta = json.loads(str(data["meta"]))
            if not isinstance(meta, dict) or meta.get("segment_format") != _SEGMENT_FORMAT:
                msg = f"{file}: unknown detection state segment format {meta.get('segment_format')!r}"
                raise DecodeError(msg)
            if (float(meta["start"]), float(meta["end"])) != (start_s, end_s):
                msg = f"{file}: holds {_dt(meta['start'])} to {_dt(meta['end'])}, its state names {_dt(start_s)} to {_dt(end_s)}"
                raise DecodeError(msg)
            runs = np.asarray(data["runs"], dtype=np.int64)
            raw = np.asarray(data["times"], dtype=np.float64)
            values = np.asarray(data["values"], dtype=np.float64)
    except DecodeError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile, EOFError, MemoryError) as exc:
        msg = (f"{file}: not a readable detection state segment ({type(exc).__name__}: {exc}); "
               "remove the state (or use --reset-state) to start afresh")
        raise DecodeError(msg) from exc
    # The times of the points kept as runs, decoded in one go: their steps summed over every point, each
    # point's from its own start (integer milliseconds: the same values as _times_of_runs point by point).
    summed = np.cumsum(np.repeat(runs[:, 0], runs[:, 1])) if runs.size else np.empty(0, dtype=np.int64)
    week: dict[str, tuple[FloatArray, FloatArray]] = {}
    at_run = at_step = at_raw = at_value = 0
    for pid, count, n in zip(meta["points"], meta["counts"], meta["runs"], strict=True):
        if n < 0:
            times = raw[at_raw:at_raw + count]
            at_raw += count
        else:
            steps = int(runs[at_run:at_run + n, 1].sum())
            base = summed[at_step - 1] if at_step else 0
            times = (summed[at_step:at_step + steps] - base) / 1000.0
            at_run += n
            at_step += steps
        if times.size != count or at_value + count > values.size:
            msg = f"{file}: the readings of {pid!r} do not add up"
            raise DecodeError(msg)
        week[str(pid)] = (times, values[at_value:at_value + count])
        at_value += count
    return week


def _models_meta(models: dict[str, tuple[float, dict[Usage, ModelProgress]]], arrays: dict[str, Any]) -> list[Any]:
    """The models' JSON part; their arrays go into ``arrays`` (``m<j>_<name>``)."""
    entries: list[Any] = []
    for building, (window_s, usages) in sorted(models.items()):
        for usage, p in usages.items():
            j = len(entries)
            for name in _PROGRESS_ARRAYS:
                arrays[f"m{j}_{name}"] = getattr(p, name)
            forest = None
            if p.forest is not None and p.forest.fitted:
                forest, trees = p.forest.to_arrays()
                for name, values in trees.items():
                    arrays[f"m{j}_forest_{name}"] = values
            threshold = None
            if p.threshold is not None:
                threshold = p.threshold.to_dict()
                arrays[f"m{j}_threshold_scores"] = np.asarray(threshold.pop("scores"), dtype=np.float64)
            day_bound = None
            if p.day_bound is not None:
                # The day-residual bounds computed so far, with the digest of their inputs: a loaded state computes
                # only the new hours' bounds, as a process that held it does (format 5).
                day_bound = {"hours": p.day_bound.hours, "digest": p.day_bound.digest.hex()}
                arrays[f"m{j}_day_bound"] = p.day_bound.values
            entries.append({
                "building": building, "usage": usage.value, "window_s": window_s, "hours": p.hours,
                "fit": p.fit.to_dict(), "forest": forest, "threshold": threshold, "forest_fits": p.forest_fits,
                "last_fit_at": p.last_fit_at, "in_sample": p.in_sample, "day_bound": day_bound,
            })
    return entries


def _models_from(entries: list[Any], data: Any) -> dict[str, tuple[float, dict[Usage, ModelProgress]]]:
    models: dict[str, tuple[float, dict[Usage, ModelProgress]]] = {}
    # The forests' arrays (``m<j>_forest_<name>``) by model, in one scan of the file's names: a scan per model
    # was quadratic in the portfolio (thousands of models, hundreds of thousands of names).
    trees: dict[str, dict[str, str]] = {}
    for name in data.files:
        head, sep, tail = name.partition("_forest_")
        if sep and head.startswith("m") and head[1:].isdigit():
            trees.setdefault(head, {})[tail] = name
    for j, e in enumerate(entries):
        forest = None
        if e["forest"] is not None:
            forest = IsolationForestDetector.from_arrays(
                e["forest"], {tail: data[name] for tail, name in trees.get(f"m{j}", {}).items()})
        threshold = None
        if e["threshold"] is not None:
            threshold = QuantileThreshold.from_dict({**e["threshold"],
                                                     "scores": data[f"m{j}_threshold_scores"].tolist()})
        arrays = {name: np.asarray(data[f"m{j}_{name}"]) for name in _PROGRESS_ARRAYS}
        bound = e.get("day_bound")  # format 5; before, computed again by the first advance
        day_bound = None if bound is None else DayBoundMemo(
            int(bound["hours"]), bytes.fromhex(str(bound["digest"])), np.asarray(data[f"m{j}_day_bound"], dtype=np.float64))
        progress = ModelProgress(hours=int(e["hours"]), expected=arrays["expected"], scores=arrays["scores"],
                                 flagged=arrays["flagged"], model_flag=arrays["model_flag"], beyond=arrays["beyond"],
                                 rows=arrays["rows"], fit=ExpectedFit.from_dict(e["fit"]), forest=forest,
                                 threshold=threshold, forest_fits=int(e["forest_fits"]),
                                 last_fit_at=int(e["last_fit_at"]), in_sample=int(e["in_sample"]), day_bound=day_bound)
        _, usages = models.setdefault(str(e["building"]), (float(e["window_s"]), {}))
        usages[Usage(e["usage"])] = progress
    return models


def _step_runs(times_s: FloatArray) -> IntArray | None:
    """Times as runs of equal steps in milliseconds, ``[[step, count], ...]`` (the first step from 0), or None.

    None when a time is not a whole number of milliseconds (a CSV's microseconds): kept as float64 then.
    Readings every 15 minutes over 400 days are a few runs instead of 38,400 floats, read back bit for bit:

    >>> times = np.array([1.5, 901.5, 1801.5, 1802.25])
    >>> runs = _step_runs(times)
    >>> runs.tolist()
    [[1500, 1], [900000, 2], [750, 1]]
    >>> bool(np.array_equal(_times_of_runs(runs), times))
    True
    >>> _step_runs(np.array([0.0001])) is None
    True
    """
    ms = np.rint(times_s * 1000.0).astype(np.int64)
    if not np.array_equal(ms / 1000.0, times_s):
        return None
    steps = np.diff(ms, prepend=np.int64(0))
    if steps.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], steps[1:] != steps[:-1]]))
    counts = np.diff(np.append(starts, steps.size))
    return np.stack([steps[starts], counts], axis=1)


def _times_of_runs(runs: IntArray) -> FloatArray:
    """The times :func:`_step_runs` encoded, in seconds."""
    if runs.size == 0:
        return np.empty(0, dtype=np.float64)
    return np.cumsum(np.repeat(runs[:, 0], runs[:, 1])) / 1000.0


def _ts(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(float(seconds), UTC)


def _akey(parts: list[str]) -> AlertKey:
    b, u, k, p = (str(x) for x in parts)
    return (b, u, k, p)


_ADDED_SETTINGS = ("model_water_open_hours", "model_beyond_reference")
"""Detection settings added since states were first written, left out of the digest while at their default: a
state written by the release before one of them still loads (they act on each pass's findings, not on what the
state holds). Counted in, an upgrade moved every building's state aside and closed its open alerts as reset."""


def _digest(config: DetectConfig, incremental: IncrementalConfig) -> str:
    fields = type(config).model_fields
    added = {name for name in _ADDED_SETTINGS if getattr(config, name) == fields[name].default}
    text = config.model_dump_json(exclude=added) + incremental.model_dump_json()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _merge(old: PointSeries | None, new: PointSeries) -> PointSeries:
    """Readings of both, by time; a time already held keeps its first value."""
    if old is None or old.times_s.size == 0:
        return new
    if new.times_s.size == 0:
        return old
    # The held readings before the earliest new one keep their place (held readings are in time order, each
    # time once): only those after it are sorted with the new ones, as sorting them all would place them
    # (a pass re-reads a few hours; sorting 400 days of readings per point for them was most of the merge).
    held, first = old.times_s, float(new.times_s.min())
    cut = int(np.searchsorted(held, first)) if math.isfinite(first) else 0
    if cut and not (bool((held[1:cut] > held[: cut - 1]).all()) and (cut == held.size or held[cut - 1] < held[cut:].min())):
        cut = 0  # not in time order, each time once (readings as a file gave them): all sorted together
    times = np.concatenate([old.times_s[cut:], new.times_s])
    values = np.concatenate([old.values[cut:], new.values])
    order = np.argsort(times, kind="stable")
    times, values = times[order], values[order]
    keep = np.concatenate([[True], times[1:] != times[:-1]])
    return PointSeries(np.concatenate([old.times_s[:cut], times[keep]]), np.concatenate([old.values[:cut], values[keep]]))


def _adds_before(old: PointSeries | None, new: PointSeries, before_s: float, since_s: float = -math.inf) -> bool:
    """Whether ``new`` holds a reading from ``since_s`` to ``before_s`` that ``old`` does not (a late reading).

    A reading before ``since_s`` (the start of the readings the state keeps) is read by no hour still computed.
    """
    early = new.times_s[(new.times_s < before_s) & (new.times_s >= since_s)]
    if early.size == 0:
        return False
    if old is None or old.times_s.size == 0:
        return True
    at = np.minimum(np.searchsorted(old.times_s, early), old.times_s.size - 1)
    return bool((old.times_s[at] != early).any())


def _roll_shift_s(building_id: str, inc: IncrementalConfig) -> float:
    """When, within each ``roll_every``, a building's history moves forward: its own hour (not all at once).

    The pass that moves it judges the building's rules again over the whole history (its models carry on):
    at its own hour of the 28 days, about 3,000 / 672 buildings of a large portfolio pay it in a pass.
    """
    roll_h = max(1, round(inc.roll_every.total_seconds() / _HOUR_S))
    return float(refit_phase(building_id) % roll_h) * _HOUR_S


def _window(origin_s: float, hour_s: float, inc: IncrementalConfig, shift_s: float = 0.0) -> tuple[float, float]:
    """Start of the history hour ``hour_s`` is computed on, and the first hour after it with another start.

    Fixed by the hour, never by the chunking: the origin while the hour is less than ``history`` + ``shift``
    after it, then a start that moves forward by ``roll_every``, ``shift`` after the origin's grid (each
    building its own, :func:`_roll_shift_s`), so that an hour is between ``history`` and ``history`` +
    ``roll_every`` after its start.

    >>> inc = IncrementalConfig(history=timedelta(hours=10), roll_every=timedelta(hours=4))
    >>> [tuple(int(x // 3600) for x in _window(0.0, h * 3600.0, inc)) for h in (9, 13, 14)]
    [(0, 14), (0, 14), (4, 18)]
    >>> [tuple(int(x // 3600) for x in _window(0.0, h * 3600.0, inc, 3600.0)) for h in (10, 11, 15)]
    [(0, 11), (1, 15), (5, 19)]
    """
    history_s, roll_s = inc.history.total_seconds(), inc.roll_every.total_seconds()
    first_roll = origin_s + shift_s + history_s
    if hour_s < first_roll and shift_s:
        return origin_s, first_roll
    epoch = max(0, math.floor((hour_s - first_roll) / roll_s))
    start = origin_s + shift_s + epoch * roll_s
    return start, start + history_s + roll_s


def _cut_end(series: PointSeries, stop_s: float, counter: bool) -> int:
    """Where a pass's readings of a point end: at ``stop_s`` included, and for a counter its first reading after.

    A counter's consumption in the last hour needs its index at the hour's end, interpolated between the
    readings on either side (a meter polled at :06, :21, :36 and :51 has none at :00): the hour is
    processed only once that reading exists (see :func:`advance`), so it is kept, as a replay over the
    whole history keeps it. Without it every pass left its last hour's consumption unknown, and a live
    service passing hour by hour never saw a counter's hours at all.
    """
    end = int(np.searchsorted(series.times_s, stop_s, side="right"))
    if counter and end < series.times_s.size and (end == 0 or series.times_s[end - 1] != stop_s):
        end += 1
    return end


def advance(
    inventory: Inventory,
    readings: dict[str, PointSeries],
    state: DetectorState,
    until: datetime | None = None,
    *,
    config: DetectConfig | None = None,
    incremental: IncrementalConfig | None = None,
    on_expected: Callable[[ExpectedSeries], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    unjudged: Collection[str] = frozenset(),
    judged: Collection[str] | None = None,
) -> AdvanceResult:
    """Process the hours after ``state.last_hour`` up to ``until``.

    Args:
        inventory: the portfolio; readings of unknown points are ignored.
        readings: new readings (readings the state already holds, by time, are ignored).
        state: the state; updated in place.
        until: end of the hours to process (a whole hour); default: the hour of the latest reading, rounded
            down, held back by points lagging less than ``IncrementalConfig.max_wait`` behind it.
        config: detection settings (those the state was built with).
        incremental: history settings.
        on_expected: called per building × usage with a model with its observed and expected
            consumption over the hours processed (for :mod:`anomalies.expected_sink`).
        progress: called after each building of each window with ``("detecting — <building>", done, total)``
            in building-hours.
        unjudged: points whose missing data is not judged (``econome detect`` on a file that never
            held them); the live service judges every point, so a dead sensor raises missing data.
        judged: the buildings judged (all the inventory's when None): live detection judges buildings whose
            data come late (a Linky, a Gazpar) on a state of their own (:mod:`anomalies.live`), the weather
            station's readings read with theirs.

    Returns:
        The events that changed, and the state.

    Raises:
        ConfigError: the state was built with other settings.
    """
    config = config or DetectConfig()
    inc = incremental or IncrementalConfig()
    if state.config_digest != _digest(config, inc):
        msg = "the detection state was built with other detection settings; start afresh (--reset-state)"
        raise ConfigError(msg)
    points = {p.id: p for _, p in inventory.points()}
    judged_s = None if state.last_hour is None else state.last_hour.timestamp()
    margin_s = config.features.max_gap.total_seconds() + _HOUR_S
    buildings = [b for _, b in inventory.buildings() if judged is None or b.id in judged]
    # Readings before the history the state keeps (a growing file given again) change no hour still computed:
    # not late, or every run after a roll would start the models again from S instead of carrying them on.
    kept_s = -math.inf if state.last_hour is None or state.origin is None else min(
        (_window(state.origin.timestamp(), state.last_hour.timestamp(), inc, _roll_shift_s(b.id, inc))[0]
         for b in buildings), default=-math.inf) - margin_s
    late: set[str] = set()  # points with readings new to the state in hours already judged
    for pid, series in readings.items():
        if pid in points and series.times_s.size:
            old = state.readings.get(pid)
            if judged_s is not None and state.models and _adds_before(old, series, judged_s, kept_s):
                late.add(pid)
            state.readings[pid] = _merge(old, series)
    if late:
        # Late readings of hours already judged change those hours: the building's models start again from
        # the start of their history, as a replay that had them all along would have computed them.
        weather_late = any(points[pid].usage is Usage.WEATHER for pid in late)
        for _, building in inventory.buildings():
            if weather_late or any(p.id in late for p in building.points):
                state.models.pop(building.id, None)
    known = {b.id for _, b in inventory.buildings()}
    state.models = {b: m for b, m in state.models.items() if b in known}
    held = [s for s in state.readings.values() if s.times_s.size]
    if not held:
        return AdvanceResult([], state, 0)
    if state.origin is None:
        state.origin = _dt(math.floor(min(float(s.times_s[0]) for s in held) / _HOUR_S) * _HOUR_S)
    origin_s = state.origin.timestamp()
    lasts = [float(s.times_s[-1]) for s in held]
    newest = max(lasts)
    waited = min(t for t in lasts if t >= newest - inc.max_wait.total_seconds())
    end_s = math.floor(waited / _HOUR_S) * _HOUR_S
    if until is not None:
        end_s = min(end_s, math.floor(until.timestamp() / _HOUR_S) * _HOUR_S)
    first_s = origin_s if state.last_hour is None else state.last_hour.timestamp()
    if end_s <= first_s:
        return AdvanceResult([], state, 0)
    calendar = FrenchCalendar(inventory.organisation.school_holiday_zone)
    life = AlertLifecycle(mutes={b.id: b.mute for _, b in inventory.buildings()}, timezone=inventory.organisation.tz)
    for key, track in state.tracks.items():
        life.restore(key, track)
    latest: dict[tuple[AlertKey, datetime], AnomalyEvent] = {}
    counters = {pid for pid, p in points.items() if p.cumulative}
    weather = [pid for pid, p in points.items() if p.usage is Usage.WEATHER]
    total_hours = round((end_s - first_s) / _HOUR_S)
    for done_here, building in enumerate(buildings, start=1):
        shift_s = _roll_shift_s(building.id, inc)
        ids = [pid for pid in [*weather, *(p.id for p in building.points)] if pid in state.readings]
        group_s = first_s
        while group_s < end_s:
            # The hours sharing this building's window start, computed in one pass.
            window_s, next_roll = _window(origin_s, group_s, inc, shift_s)
            stop_s = min(end_s, next_roll)
            # One building's hourly frame at a time (its points and the weather's, all its findings read):
            # the same columns as a frame of the whole portfolio, without holding hours × every point at once.
            own = {
                pid: PointSeries(s.times_s[lo:hi], s.values[lo:hi])
                for pid in ids for s in [state.readings[pid]]
                for lo, hi in [(int(np.searchsorted(s.times_s, window_s - margin_s)), _cut_end(s, stop_s, pid in counters))]
            }
            n = round((stop_s - window_s) / _HOUR_S)
            first_hour = round((group_s - window_s) / _HOUR_S)
            logger.debug("detection of %s over %s hours, hours %d to %d observed", building.id, n, first_hour, n)
            frame = HourlyFrame.build(own, counters=counters & set(own), start_s=window_s, hours=n,
                                      max_gap=config.features.max_gap)
            before = state.models.get(building.id)
            resumed: dict[Usage, ModelProgress] = {}
            if before is not None and before[0] == window_s:
                resumed = before[1]
            elif before is not None and before[0] < window_s:
                # The history rolled forward: the models carry on from where they stood at the roll (their
                # later refits see the new history only), rather than walking the whole new history again.
                moved_h = round((window_s - before[0]) / _HOUR_S)
                resumed = {u: p.moved(moved_h) for u, p in before[1].items() if p.hours > moved_h}
            if any(p.hours != first_hour for p in resumed.values()):
                resumed = {}  # not where these hours start: computed again from the history's start
            found = building_findings(inventory, building, own, frame, calendar, config, unjudged=unjudged,
                                      memo=state.rule_memo, models=resumed if config.models else None,
                                      clock=state.clock)
            if config.models:
                state.models[building.id] = (window_s, resumed)
            if on_expected is not None:
                for expected_series in found.expected:
                    on_expected(expected_series.between(_dt(group_s), _dt(stop_s)))
            rules = found.rules if config.rule_events else []
            for event in debounce(inventory, building, frame, [*rules, *found.models], first_hour=first_hour,
                                  life=life, memory=state.memory, spans=state.spans, scores=found.scores,
                                  typical=found.typical, materiality=config.materiality, flagged=found.flagged):
                latest[((event.building, event.usage, event.kind, event.point or ""), event.start)] = event
            group_s = stop_s
        if progress is not None:
            progress(f"detecting — {building.id}", total_hours * done_here, total_hours * len(buildings))
    state.last_hour = _dt(end_s)
    state.tracks = life.tracks()
    state.spans = [s for s in state.spans if s.resolved is None or s.resolved.timestamp() > end_s - _SPAN_MEMORY_S]
    # What the next hours need: from the earliest of the buildings' next windows (the weather's readings serve all).
    keep_s = min((_window(origin_s, end_s, inc, _roll_shift_s(b.id, inc))[0] for b in buildings),
                 default=origin_s) - margin_s
    for pid, s in list(state.readings.items()):
        lo = int(np.searchsorted(s.times_s, keep_s))
        if lo:
            state.readings[pid] = PointSeries(s.times_s[lo:], s.values[lo:])
    events = sorted(latest.values(), key=lambda e: (e.start, e.building, e.kind))
    return AdvanceResult(events, state, round((end_s - first_s) / _HOUR_S))
