"""Detection benchmark: one simulated year of the demo commune with injected faults.

The simulator generates the year (15-minute readings, as meters give them:
cumulative indexes and instantaneous values) plus eight weeks of history
before it, with :func:`simulator.faults.default_fault_plan` faults and their
ground truth. The readings go through ``econome detect`` (the Typer command,
run in-process with the CLI runner) and, in the same run, through two
baselines on each meter's raw hourly consumption, debounced by the same alert
lifecycle (3 h minimum, 12 h to resolve):

* ``iforest_raw``: scikit-learn's IsolationForest (``contamination="auto"``)
  on the hourly consumption alone, fitted on the whole period;
* ``zscore_how``: a robust z-score (median, MAD) per hour of the week, |z| > 3.5.

Scoring is event-level. An event is compatible with the fault types its kind
can reveal (``heating_unoccupied`` → ``heating_left_on``...; a baseline event
on a heating meter → ``heating_left_on``, ``setpoint_raised``,
``stuck_counter``). It is a true positive for a fault type when it overlaps (up
to 48 h after its end) a fault of that type in the same building; it is a
false alert when it overlaps no fault at all; an event overlapping a fault of
another type is counted as ``misnamed``, neither. Recall: faults with at least
one compatible overlapping event. Delay: from the fault's start to the first
such event's ``detected_at`` (when the alert would have been sent), median in hours.

Development was done on year 2025, seed 1. Year 2026, seed 2 was the first
held-out run: it showed two generic faults (a stale-counter surprise summing
weeks of normal still hours over a school's summer, and night base-load
pumps mistaken for a creep when the heating season starts), which were
fixed; it is therefore no longer clean. The figures reported are for a
fresh year, 2027, seed 3 (the defaults), run once after those fixes::

    .venv/bin/python bench/detection.py                        # evaluation: 2027, seed 3
    .venv/bin/python bench/detection.py --year 2025 --seed 1   # development year

The last line printed is one JSON object with ``per_fault``,
``false_alerts_per_building_month`` and ``baselines``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import typer  # noqa: E402
from sklearn.ensemble import IsolationForest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from anomalies.detect import read_readings_csv  # noqa: E402
from anomalies.features import HourlyFrame  # noqa: E402
from anomalies.lifecycle import AlertLifecycle, LifecycleConfig  # noqa: E402
from econome.cli_detect import register  # noqa: E402
from inventory import Quantity, Usage, load_inventory  # noqa: E402
from simulator.export import write_readings_csv  # noqa: E402
from simulator.faults import Fault, FaultKind, default_fault_plan, write_ground_truth  # noqa: E402

CONFIG = ROOT / "examples" / "commune.yaml"
LEAD_IN = timedelta(weeks=8)
GRACE = timedelta(hours=48)
FAULTS = [k.value for k in FaultKind]

OUR_KINDS: dict[str, set[str]] = {
    "heating_unoccupied": {"heating_left_on"},
    "overheating": {"setpoint_raised"},
    "lighting_unoccupied": {"lighting_left_on"},
    "lighting_daylight": {"lighting_left_on"},
    "baseload_creep": {"baseload_creep"},
    "water_leak": {"water_leak"},
    "stale_counter": {"stuck_counter"},
    "frozen_sensor": {"dead_sensor"},
    "missing_data": {"dead_sensor"},
}
USAGE_FAULTS: dict[str, set[str]] = {
    "heating": {"heating_left_on", "setpoint_raised", "stuck_counter"},
    "general": {"lighting_left_on", "baseload_creep", "stuck_counter"},
    "lighting": {"lighting_left_on", "stuck_counter"},
    "water": {"water_leak", "stuck_counter"},
}


@dataclass(frozen=True)
class Ev:
    building: str
    usage: str
    kind: str
    start: datetime
    end: datetime
    detected_at: datetime
    compatible: frozenset[str]


def _ours(events_path: Path) -> list[Ev]:
    out = []
    for line in events_path.read_text(encoding="utf-8").splitlines():
        e = json.loads(line)
        kinds = OUR_KINDS.get(e["kind"]) or USAGE_FAULTS.get(e["usage"], set())
        out.append(
            Ev(e["building"], e["usage"], e["kind"], datetime.fromisoformat(e["start"]), datetime.fromisoformat(e["end"]),
               datetime.fromisoformat(e["detected_at"]), frozenset(kinds))
        )
    return out


def _debounce(building: str, usage: str, kind: str, frame: HourlyFrame, flags: np.ndarray) -> list[Ev]:
    life = AlertLifecycle(LifecycleConfig(min_duration=timedelta(hours=3), clear_after=timedelta(hours=12)))
    key = (building, usage, kind, "")
    out: list[Ev] = []
    opened: datetime | None = None
    for h in range(frame.hours):
        if not np.isfinite(flags[h]):
            continue
        t = life.observe(key, frame.time(h), bool(flags[h]))
        if t is None:
            continue
        if t.state.value == "open":
            opened = t.at + timedelta(hours=1)
        elif t.state.value == "resolved" and opened is not None:
            out.append(Ev(building, usage, kind, t.start, t.last_active, opened, frozenset(USAGE_FAULTS[usage])))
            opened = None
    for t in life.open_alerts():
        if opened is not None:
            out.append(Ev(building, usage, kind, t.start, t.last_active, opened, frozenset(USAGE_FAULTS[usage])))
    return out


def _baselines(csv_path: Path) -> dict[str, list[Ev]]:
    inv = load_inventory(CONFIG)
    readings = read_readings_csv(csv_path)
    counters = {p.id for _, p in inv.points() if p.cumulative}
    frame = HourlyFrame.build({k: v for k, v in readings.items() if k in counters}, counters=counters)
    how = ((np.floor(frame.times_s / 3600.0).astype(np.int64) + 72) % 168)
    result: dict[str, list[Ev]] = {"iforest_raw": [], "zscore_how": []}
    for building, point in inv.points():
        if point.id not in frame.consumption or point.quantity is Quantity.REACTIVE_ENERGY:
            continue
        usage = "water" if point.usage is Usage.WATER else point.usage.value
        if usage not in USAGE_FAULTS:
            continue
        y = frame.consumption[point.id]
        ok = np.isfinite(y)
        forest = IsolationForest(contamination="auto", random_state=0).fit(y[ok, None])
        flags = np.full(y.size, np.nan)
        flags[ok] = (forest.predict(y[ok, None]) == -1).astype(float)
        result["iforest_raw"] += _debounce(building.id, usage, "iforest_raw", frame, flags)
        z = np.full(y.size, np.nan)
        for h in range(168):
            sel = ok & (how == h)
            if sel.sum() < 4:
                continue
            med = float(np.median(y[sel]))
            mad = 1.4826 * float(np.median(np.abs(y[sel] - med)))
            scale = max(mad, 1e-6 + 0.01 * abs(med))
            z[sel] = (y[sel] - med) / scale
        zflags = np.where(np.isfinite(z), (np.abs(z) > 3.5).astype(float), np.nan)
        result["zscore_how"] += _debounce(building.id, usage, "zscore_how", frame, zflags)
    return result


def _matches(e: Ev, f: Fault) -> bool:
    return e.building == f.building and e.start < f.end + GRACE and f.start < e.end


def score(events: list[Ev], faults: list[Fault], buildings: int, months: float) -> dict[str, Any]:
    per_fault: dict[str, dict[str, float | int | None]] = {}
    false_alerts = sum(1 for e in events if not any(_matches(e, f) for f in faults))
    for kind in FAULTS:
        truth = [f for f in faults if f.kind.value == kind]
        compatible = [e for e in events if kind in e.compatible]
        tp = sum(1 for e in compatible if any(_matches(e, f) for f in truth))
        fp = sum(1 for e in compatible if not any(_matches(e, f) for f in faults))
        misnamed = len(compatible) - tp - fp
        delays = []
        for f in truth:
            hits = [e for e in compatible if _matches(e, f)]
            if hits:
                first = min(e.detected_at for e in hits)
                delays.append(max(0.0, (first - f.start).total_seconds() / 3600.0))
        per_fault[kind] = {
            "faults": len(truth),
            "detected": len(delays),
            "events": len(compatible),
            "tp": tp,
            "fp": fp,
            "misnamed": misnamed,
            "precision": round(tp / (tp + fp), 3) if tp + fp else 0.0,
            "recall": round(len(delays) / len(truth), 3) if truth else None,
            "delay_h": round(float(np.median(delays)), 1) if delays else None,
        }
    return {
        "per_fault": per_fault,
        "false_alerts": false_alerts,
        "false_alerts_per_building_month": round(false_alerts / (buildings * months), 3),
        "events": len(events),
    }


def _print(name: str, result: dict[str, Any]) -> None:
    print(f"\n== {name}: {result['events']} events, {result['false_alerts']} false alerts "
          f"= {result['false_alerts_per_building_month']} per building per month")
    print(f"{'fault':18} {'n':>3} {'found':>5} {'events':>6} {'tp':>4} {'fp':>4} {'misn.':>5} "
          f"{'precision':>9} {'recall':>6} {'delay_h':>7}")
    for kind, m in result["per_fault"].items():
        print(f"{kind:18} {m['faults']:>3} {m['detected']:>5} {m['events']:>6} {m['tp']:>4} {m['fp']:>4} {m['misnamed']:>5} "
              f"{m['precision']:>9} {m['recall']!s:>6} {m['delay_h']!s:>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--year", type=int, default=2027)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    inv = load_inventory(CONFIG)
    tz = inv.organisation.tz
    year_start = datetime(args.year, 1, 1, tzinfo=tz).astimezone(UTC)
    year_end = datetime(args.year + 1, 1, 1, tzinfo=tz).astimezone(UTC)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="econome-detect-"))
    work.mkdir(parents=True, exist_ok=True)
    faults = default_fault_plan(inv, args.year, args.seed)
    t0 = time.perf_counter()
    csv_path = work / "readings.csv"
    rows = write_readings_csv(inv, csv_path, year_start - LEAD_IN, year_end, seed=args.seed, faults=faults)
    write_ground_truth(work / "ground_truth.json", faults)
    print(f"simulated {args.year} (seed {args.seed}) + {LEAD_IN.days} days before: {rows} readings, "
          f"{len(faults)} faults, {time.perf_counter() - t0:.1f} s; files in {work}")
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    out = work / "events.jsonl"
    t0 = time.perf_counter()
    run = CliRunner().invoke(app, ["detect", "--inventory", str(CONFIG), "--readings", str(csv_path), "--out", str(out),
                                   "--from", f"{args.year}-01-01", "--language", "en"])
    if run.exit_code != 0:
        print(run.output, file=sys.stderr)
        raise SystemExit(run.exit_code)
    print(f"econome detect: {time.perf_counter() - t0:.1f} s; {run.output.strip()}")
    buildings = sum(1 for _ in inv.buildings())
    ours = [e for e in _ours(out) if e.start < year_end]
    result = score(ours, faults, buildings, 12.0)
    _print("econome detect (rules + isolation forest scores)", result)
    t0 = time.perf_counter()
    baselines = {}
    for name, events in _baselines(csv_path).items():
        events = [e for e in events if e.end > year_start and e.start < year_end]
        baselines[name] = score(events, faults, buildings, 12.0)
        _print(f"baseline {name}", baselines[name])
    print(f"baselines: {time.perf_counter() - t0:.1f} s")

    def summary(r: dict[str, Any]) -> dict[str, Any]:
        return {
            "per_fault": {k: {"precision": m["precision"], "recall": m["recall"], "delay_h": m["delay_h"]}
                          for k, m in r["per_fault"].items()},
            "false_alerts_per_building_month": r["false_alerts_per_building_month"],
        }

    final = {"year": args.year, "seed": args.seed, **summary(result),
             "baselines": {name: summary(r) for name, r in baselines.items()}}
    print(json.dumps(final))


if __name__ == "__main__":
    main()
