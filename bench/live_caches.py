"""What the live pass's kept caches spare: one-hour advances with them and without, alternating, in one process.

``bench/live.py`` times a pass in a child process of its own; on a loaded machine its CPU time varies by
±10 % from run to run, more than these caches spare. Here the same state (``--buildings`` of about 50
points, 400 days, as ``bench/live.py`` builds it) advances hour after hour, one hour with what the
state keeps between passes (the clock columns, ``ClockCache``; the day-residual bounds, ``DayBoundMemo``;
the rules' rolling statistics kept by input), the next with them dropped (computed afresh, as before
issue 12's fourth round), and the CPU time of each ``advance`` is printed::

    .venv/bin/python bench/live_caches.py [--buildings 2] [--hours 8]

The last line printed is one JSON object: per mode, the CPU seconds of each hour and their median.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_HERE = str(Path(__file__).resolve().parent)
# bench/streams.py would shadow the streams package.
sys.path[:] = [str(ROOT), *(p for p in sys.path if str(Path(p or ".").resolve()) != _HERE)]

import numpy as np  # noqa: E402

from anomalies import rules  # noqa: E402
from anomalies.detect import DetectConfig  # noqa: E402
from anomalies.features import ClockCache, PointSeries  # noqa: E402
from anomalies.incremental import DetectorState, IncrementalConfig, advance  # noqa: E402
from inventory import load_inventory  # noqa: E402
from simulator.physics import generate_history  # noqa: E402

_HOUR = timedelta(hours=1)


def main() -> None:
    """Build the state, advance hour by hour alternating the modes, print."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--buildings", type=int, default=2)
    parser.add_argument("--hours", type=int, default=8, help="hours advanced (half of them with the caches)")
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("bench_live", ROOT / "bench" / "live.py")
    if spec is None or spec.loader is None:
        msg = "bench/live.py not found"
        raise SystemExit(msg)
    live = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(live)
    config, inc = DetectConfig(), IncrementalConfig()
    last_hour = live.PASS_HOUR_END - _HOUR
    start = last_hour - timedelta(days=400)
    with tempfile.TemporaryDirectory() as tmp:
        inv = load_inventory(live._portfolio(args.buildings, 50, Path(tmp)))
    history = generate_history(inv, start, last_hour + (args.hours + 3) * _HOUR, timedelta(minutes=15), seed=1)
    seconds = history.times.astype("datetime64[ms]").astype(np.int64) / 1000.0
    state = DetectorState.fresh(config, inc)
    state.readings = {pid: PointSeries(seconds[np.isfinite(c)], c[np.isfinite(c)])
                      for pid, c in zip(history.point_ids, history.values.T, strict=True)}
    state.origin = start
    state.last_hour = last_hour - _HOUR
    advance(inv, {}, state, until=last_hour, config=config, incremental=inc)  # the models, as bench/live.py
    advance(inv, {}, state, until=last_hour + _HOUR, config=config, incremental=inc)  # the caches filled
    kept_rolling = rules._rolling
    cpu: dict[str, list[float]] = {"kept": [], "dropped": []}
    for k in range(2, args.hours + 2):
        mode = "kept" if k % 2 == 0 else "dropped"
        if mode == "dropped":
            state.clock = ClockCache()
            for _, usages in state.models.values():
                for usage, progress in list(usages.items()):
                    usages[usage] = dataclasses.replace(progress, day_bound=None)
            rules._rolling = rules._rolling_uncached
        t0 = time.process_time()
        advance(inv, {}, state, until=last_hour + k * _HOUR, config=config, incremental=inc)
        cpu[mode].append(round(time.process_time() - t0, 3))
        rules._rolling = kept_rolling
        print(f"hour {k - 1}: {mode:7} {cpu[mode][-1]:.3f} s CPU ({args.buildings} buildings)", flush=True)
    print(json.dumps({m: {"cpu_s": v, "median_s": round(float(np.median(v)), 3),
                          "median_per_building_s": round(float(np.median(v)) / args.buildings, 3)}
                      for m, v in cpu.items()}))


if __name__ == "__main__":
    main()
