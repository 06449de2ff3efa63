"""Live bench: one steady-state hourly detection pass over a synthetic portfolio, read from a real InfluxDB 1.6.7.

The portfolio is ``--buildings`` clones of the demo commune's archetypes
(``examples/commune.yaml``: town hall, schools, gymnasium, pool, ...), each
with its meters (counters: electricity, gas or heat, water; power) and as
many extra zones (temperature, occupancy, illuminance sensors) as bring it to
about ``--points`` points; ids, zones and Modbus gateways are made unique per
clone, and one weather station serves them all. The simulator
(:func:`simulator.physics.generate_history`) generates ``--history`` of
readings every ``--step`` (15 min by default; real meters polled every minute
give 15 times more readings per point).

What a running service holds is built directly, not round-tripped through
InfluxDB: the :class:`~anomalies.incremental.DetectorState` gets the
simulated history up to the hour before the pass (readings, origin), then
advances that hour (which computes the models the state keeps: expected fits,
forests and their walk forward, and the rule memo, as the pass before would
have left them; its CPU time is printed: what a first pass after a start
without models costs), and is saved as the service saves it.
InfluxDB gets only what the two passes read: the raw readings (as the pipeline
writes them, :class:`streams.influx.LineEncoder`) from ``last_hour`` minus the
pass's margin to the second pass's time (5 minutes past the hour after the new one).

Each measure runs in a child process (this script with ``--child``), so its
wall time, CPU time and peak RSS (``ru_maxrss`` of the child) are its own:

* ``read``, the baseline: what the pass reads of InfluxDB (InfluxQL, the same
  :func:`anomalies.live.read_readings` call), and nothing else;
* ``pass``: :meth:`anomalies.live.LiveDetector.run_pass` of the steady state,
  the second pass of a process: read, advance one hour, write events and
  expected values to InfluxDB, queue to a
  :class:`~anomalies.live.LoggingNotifier`, save the state, flush. The load of
  the state file (``state_load``) and the first pass after it (``first_pass``:
  what a restart costs, with the models and the rule memo read from the file,
  plus what a process pays once, the school-holiday data) are timed apart.

It prints the per-building cost and a linear extrapolation to 3,000 buildings
(clearly an extrapolation: only ``--buildings`` were measured), and the state
file size per building. The issue's goal is 60 s and 2 GB per pass at 3,000
buildings of about 50 points, on one core. ``--profile`` runs the passes once
more, the steady-state one under cProfile (CPU time), and prints where its time
goes (docs/anomalies.md "Live pass at scale" has the figures)::

    .venv/bin/python bench/live.py [--buildings 4] [--points 50] [--history 400] [--repeat 1] [--profile [--profile-out FILE]]

``--repeat R`` measures the steady pass R times (each child loads the same saved states, runs the first pass and
the steady one) and reports the run of median CPU time, all R CPU times beside it (``cpu_s_runs``): one pass of
2 buildings is under a second of CPU, and the noise of a shared machine is of that order.

The last line printed is one JSON object with every measure.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_HERE = str(Path(__file__).resolve().parent)
# bench/streams.py would shadow the streams package.
sys.path[:] = [str(ROOT), *(p for p in sys.path if str(Path(p or ".").resolve()) != _HERE)]

TARGET_BUILDINGS = 3000
# The pass: 5 minutes past the hour that ends here (a Tuesday of the heating season).
PASS_HOUR_END = datetime(2027, 1, 12, 10, tzinfo=UTC)
PASS_DELAY = timedelta(minutes=5)
_HOUR = timedelta(hours=1)


# --- the portfolio ------------------------------------------------------------------------------------------


def _rename(value: str, suffix: str) -> str:
    return f"{value}{suffix}"


def _portfolio(buildings: int, points: int, out: Path) -> Path:
    """``buildings`` clones of the commune's archetypes, ~``points`` points each, as one inventory YAML."""
    import yaml

    raw = yaml.safe_load((ROOT / "examples" / "commune.yaml").read_text(encoding="utf-8"))
    archetypes = [b for site in raw["sites"] for b in site["buildings"]]
    gateways = {g["id"]: g for g in raw["modbus_gateways"]}
    new_gateways: list[dict[str, Any]] = []
    clones: list[dict[str, Any]] = []
    port = 20000
    for i in range(buildings):
        b = copy.deepcopy(archetypes[i % len(archetypes)])
        sfx = f"-{i:04d}"
        b["id"] = _rename(b["id"], sfx)
        used_gw: dict[str, str] = {}
        kept = []
        for p in b.get("points", []):
            if p.get("usage") == "weather":
                if i:  # one weather station for the whole portfolio
                    continue
                kept.append(p)
                continue
            p["id"] = _rename(p["id"], sfx)
            for key in ("zone", "submeter_of"):
                if key in p:
                    p[key] = _rename(p[key], sfx)
            for key in ("add", "subtract"):
                if key in p:
                    p[key] = [_rename(x, sfx) for x in p[key]]
            if "modbus" in p:
                gw = p["modbus"]["gateway"]
                if gw not in used_gw:
                    used_gw[gw] = _rename(gw, sfx)
                    new_gateways.append({**gateways[gw], "id": used_gw[gw], "port": port})
                    port += 1
                p["modbus"]["gateway"] = used_gw[gw]
            if "mqtt" in p:
                p["mqtt"] = {"topic": f"bench/{p['id']}", "format": "plain"}
            kept.append(p)
        for vm in b.get("virtual_meters", []):
            vm["id"] = _rename(vm["id"], sfx)
            for key in ("add", "subtract"):
                vm[key] = [_rename(x, sfx) for x in vm.get(key, [])]
        zones = b.get("zones") or []
        for z in zones:
            z["id"] = _rename(z["id"], sfx)
        template = [p for p in kept if p.get("zone") == (zones[0]["id"] if zones else None) and "mqtt" in p]
        extra = 0
        while template and len(kept) < points:
            zid = f"zx{extra}{sfx}"
            zones.append({"id": zid, "name": f"Zone {extra}"})
            for p in template:
                if len(kept) >= points:
                    break
                q = copy.deepcopy(p)
                q["id"] = f"{b['id']}-zx{extra}-{q['quantity']}"
                q["zone"] = zid
                q["mqtt"] = {"topic": f"bench/{q['id']}", "format": "plain"}
                kept.append(q)
            extra += 1
        b["zones"] = zones
        b["points"] = kept
        clones.append(b)
    raw["modbus_gateways"] = new_gateways
    raw["sites"] = [{"id": "bench", "name": "Bench", "buildings": clones}]
    path = out / "portfolio.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


# --- the parent: build, fill, measure ------------------------------------------------------------------------


def _print_head(path: Path) -> None:
    """What a building's head file holds (the part rewritten each pass), by kind of member, in kB."""
    import zipfile

    kinds: dict[str, int] = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            letters = name[:len(name) - len(name.lstrip("abcdefghijklmnopqrstuvwxyz"))]
            kind = {"r": "readings", "t": "readings", "v": "readings", "m": "models"}.get(letters, letters)
            kinds[kind] = kinds.get(kind, 0) + info.compress_size
    print(f"head {path.name}: {path.stat().st_size / 1e3:.0f} kB: "
          + ", ".join(f"{k} {v / 1e3:.0f}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])), flush=True)


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: its size and modification time (ns), by path."""
    return {str(f): (f.stat().st_size, f.stat().st_mtime_ns) for f in folder.rglob("*") if f.is_file()}


def _measure(argv: list[str]) -> dict[str, Any]:
    """Run one child; its own figures come back as a JSON last line, its peak RSS from the kernel."""
    wrapper = (
        "import json, resource, subprocess, sys;"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "sys.stderr.write(r.stderr); sys.stdout.write(r.stdout);"
        "print(json.dumps({'rc': r.returncode, 'maxrss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))"
    )
    done = subprocess.run([sys.executable, "-c", wrapper, sys.executable, *argv], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    lines = done.stdout.strip().splitlines()
    outer = json.loads(lines[-1]) if lines else {"rc": done.returncode, "maxrss_kb": 0}
    if outer["rc"] != 0 or len(lines) < 2:
        sys.stderr.write(done.stdout + done.stderr)
        msg = f"child {argv[1:3]} exited with {outer['rc']}"
        raise SystemExit(msg)
    result: dict[str, Any] = json.loads(lines[-2])
    result["peak_rss_mb"] = round(outer["maxrss_kb"] / 1024, 1)
    for line in lines[:-2]:
        print("    " + line, flush=True)
    return result


def _fill_influx(inventory: Any, readings: dict[str, Any], url: str, database: str, since: datetime,
                 until: datetime) -> int:
    """Write what the pass reads, as the pipeline writes it (line protocol of the LineEncoder)."""
    from streams.influx import InfluxConfig, InfluxV1Writer, LineEncoder
    from streams.record import Reading

    encoder = LineEncoder(inventory)
    units = {p.id: p.unit for _, p in inventory.points()}
    lo, hi = since.timestamp(), until.timestamp()
    lines = []
    for pid, s in readings.items():
        inside = (s.times_s >= lo) & (s.times_s < hi)
        for t, v in zip(s.times_s[inside].tolist(), s.values[inside].tolist(), strict=True):
            lines.append(encoder.encode(Reading(pid, datetime.fromtimestamp(t, UTC), v, units[pid])))

    async def write() -> None:
        writer = InfluxV1Writer(InfluxConfig(url=url, database=database))
        try:
            await writer.ensure_database()
            for i in range(0, len(lines), 5000):
                await writer.write(lines[i:i + 5000], raw=True)
        finally:
            await writer.close()

    asyncio.run(write())
    return len(lines)


def main() -> None:
    """Build the portfolio and its state, fill InfluxDB, measure, print."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--buildings", type=int, default=4)
    parser.add_argument("--points", type=int, default=50, help="about this many points per building")
    parser.add_argument("--history", type=int, default=400, help="days of history the state holds (400: steady state)")
    parser.add_argument("--step", type=int, default=15, help="minutes between two readings of a point")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="also run the pass under cProfile")
    parser.add_argument("--profile-out", type=Path, help="with --profile, also write the pass's pstats file here")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure the steady pass this many times, each in a new child from the same states; "
                             "the run of median CPU time is reported")
    parser.add_argument("--held", type=int, default=0,
                        help="LiveConfig.held: 0 (a large portfolio) loads and saves each building's state per pass")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        _child(args.child)
        return

    import numpy as np

    from anomalies.detect import DetectConfig
    from anomalies.features import PointSeries
    from anomalies.incremental import DetectorState, IncrementalConfig, advance
    from anomalies.live import building_state_path
    from econome.localservers import start_influxdb
    from inventory import Usage, load_inventory
    from simulator.physics import generate_history

    config, inc = DetectConfig(), IncrementalConfig()
    last_hour = PASS_HOUR_END - timedelta(hours=1)
    now = PASS_HOUR_END + PASS_DELAY
    margin = config.features.max_gap + inc.max_wait + timedelta(hours=1)  # LiveDetector._margin
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        path = _portfolio(args.buildings, args.points, out)
        inv = load_inventory(path)
        n_points = sum(1 for _ in inv.points())
        started = time.perf_counter()
        start = last_hour - timedelta(days=args.history)
        history = generate_history(inv, start, now + _HOUR, timedelta(minutes=args.step), seed=args.seed)
        seconds = history.times.astype("datetime64[ms]").astype(np.int64) / 1000.0
        readings = {pid: PointSeries(seconds[np.isfinite(col)], col[np.isfinite(col)])
                    for pid, col in zip(history.point_ids, history.values.T, strict=True)}
        del history
        total = sum(s.times_s.size for s in readings.values())
        print(f"{args.buildings} buildings, {n_points} points, {args.history} days every {args.step} min: "
              f"{total} readings simulated in {time.perf_counter() - started:.0f} s", flush=True)
        # The state a service holds after the pass of the hour before (see the module docstring): one file per
        # building (anomalies.live.building_state_path), each built and advanced on its own, one at a time.
        state_path = out / "state.npz"
        weather = [p.id for _, p in inv.points() if p.usage is Usage.WEATHER]
        cut = (last_hour + PASS_DELAY).timestamp()
        warm_cpu = 0.0
        state_bytes = 0
        for _, building in inv.buildings():
            state = DetectorState.fresh(config, inc)
            for pid in [*weather, *(p.id for p in building.points)]:
                s = readings[pid]
                keep = s.times_s < cut
                state.readings[pid] = PointSeries(s.times_s[keep].copy(), s.values[keep].copy())
            state.origin = start
            # The models a running service holds (expected fits, forests, their walk forward) and the rule memo:
            # what the pass of the hour before left, computed here by advancing that hour; the measured pass
            # resumes them.
            state.last_hour = last_hour - timedelta(hours=1)
            warm = time.process_time()
            advance(inv, {}, state, until=last_hour, config=config, incremental=inc, judged={building.id})
            warm_cpu += time.process_time() - warm
            assert state.last_hour == last_hour  # noqa: S101
            own_path = building_state_path(state_path, building.id)
            own_path.parent.mkdir(parents=True, exist_ok=True)
            state.save(own_path)
            del state
        state_bytes = sum(size for size, _ in _files(state_path.with_suffix("")).values())
        _print_head(building_state_path(state_path, next(b.id for _, b in inv.buildings())))
        print(f"models of the state computed by the pass of the hour before: {warm_cpu:.1f} s CPU "
              f"(what the first pass after a start without models costs)", flush=True)
        saved = out / "state-before-the-pass"
        shutil.copytree(state_path.with_suffix(""), saved)
        state_mb = state_bytes / 1e6
        print(f"state files: {state_mb:.1f} MB ({state_mb / args.buildings:.2f} MB per building)", flush=True)
        with start_influxdb(data_dir=out / "influxdb") as server:
            database = "bench"
            lines = _fill_influx(inv, readings, server.url, database, last_hour - margin, now + _HOUR)
            del readings
            print(f"InfluxDB {server.url}: {lines} readings written (from {last_hour - margin:%H:%M} to "
                  f"{now + _HOUR:%H:%M} UTC, what the two passes read)", flush=True)
            common = [str(path), server.url, database, str(state_path), now.isoformat(), str(args.held)]
            me = str(Path(__file__).resolve())
            read = _measure([me, "--child", "read", *common])
            print(f"read the hour from InfluxDB only (baseline): {read}", flush=True)
            runs = []
            for run in range(args.repeat):
                if run:
                    shutil.rmtree(state_path.with_suffix(""))  # the pass before saved the states one hour on
                    shutil.copytree(saved, state_path.with_suffix(""))
                runs.append(_measure([me, "--child", "pass", *common]))
                print(f"steady-state pass (read + advance + write + notify + save): {runs[-1]}", flush=True)
            # The run of median CPU time stands for the pass (a shared machine's noise is of the order of the pass).
            live = sorted(runs, key=lambda r: r["cpu_s"])[(len(runs) - 1) // 2]
            live["cpu_s_runs"] = [r["cpu_s"] for r in runs]
            profile: dict[str, Any] | None = None
            if args.profile:
                shutil.rmtree(state_path.with_suffix(""))  # the pass above saved the states one hour on
                shutil.copytree(saved, state_path.with_suffix(""))
                dump = [str(args.profile_out.resolve())] if args.profile_out else []
                profile = _measure([me, "--child", "profile", *common, *dump])
    per_building = {
        "pass_wall_s": round(live["wall_s"] / args.buildings, 3),
        "pass_cpu_s": round(live["cpu_s"] / args.buildings, 3),
        "rss_mb": round((live["peak_rss_mb"] - live["fixed_rss_mb"]) / args.buildings, 2),
        "state_mb": round(state_mb / args.buildings, 3),
        "written_mb_per_pass": round(live["written_mb_per_pass"] / args.buildings, 3),
    }
    scale = TARGET_BUILDINGS / args.buildings
    extrapolation = {
        "pass_wall_s": round(live["wall_s"] * scale),
        "pass_cpu_s": round(live["cpu_s"] * scale),
        "state_gb": round(state_mb * scale / 1000, 1),
        "written_gb_per_hour": round(live["written_mb_per_pass"] * scale / 1000, 1),
        "read_wall_s": round(read["wall_s"] * scale, 1),
        # What the states would hold in memory for every building at once (readings and rule memo, a floor):
        # what a pass holds with LiveConfig.held above the portfolio's size.
        "held_state_gb": round(live["readings_and_memo_held_mb"] * scale / 1024, 1),
    }
    if args.held < args.buildings:
        # States loaded and saved one building at a time: the peak does not grow with the buildings (compare
        # --buildings 2 and 8), but for the chunk's readings read at once (LiveConfig.chunk, 100 buildings).
        extrapolation["peak_rss_gb"] = round(live["peak_rss_mb"] / 1024, 2)
    else:
        extrapolation["peak_rss_gb"] = round(
            (live["fixed_rss_mb"] + per_building["rss_mb"] * TARGET_BUILDINGS) / 1024, 1)
    print(f"per building: {per_building}", flush=True)
    print(f"EXTRAPOLATION (linear, from {args.buildings} measured) to {TARGET_BUILDINGS} buildings: {extrapolation} "
          "(goal: 60 s, 2 GB)", flush=True)
    print(json.dumps({"buildings": args.buildings, "points": n_points, "history_days": args.history,
                      "step_min": args.step, "readings": total, "state_mb": round(state_mb, 1), "read": read,
                      "pass": live, "per_building": per_building,
                      f"extrapolated_to_{TARGET_BUILDINGS}": extrapolation, "profile": profile}))


# --- the children ---------------------------------------------------------------------------------------------


def _child(argv: list[str]) -> None:
    """``--child read|pass|profile INVENTORY URL DATABASE STATE NOW HELD [PSTATS]``: one measure, a JSON last line."""
    what, inventory_path, url, database, state_path, when, held, *dump = argv
    now = datetime.fromisoformat(when)
    if what == "read":
        asyncio.run(_child_read(Path(inventory_path), url, database, Path(state_path), now))
    else:
        asyncio.run(_child_pass(Path(inventory_path), url, database, Path(state_path), now, int(held),
                                profile=what == "profile", dump=Path(dump[0]) if dump else None))


def _timed() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(t0: tuple[float, float]) -> dict[str, float]:
    return {"wall_s": round(time.perf_counter() - t0[0], 2), "cpu_s": round(time.process_time() - t0[1], 2)}


async def _child_read(inventory_path: Path, url: str, database: str, state_path: Path, now: datetime) -> None:
    from anomalies.features import FeatureConfig
    from anomalies.incremental import DetectorState, IncrementalConfig
    from anomalies.live import building_state_path, read_readings
    from inventory import load_inventory
    from streams.influx import InfluxConfig, InfluxQLClient

    inv = load_inventory(inventory_path)
    last = DetectorState.peek_last_hour(building_state_path(state_path, next(b.id for _, b in inv.buildings())))
    assert last is not None  # noqa: S101
    # What the steady-state pass (the second of the process, the state held in memory) reads: from the margin
    # before the last hour processed by the first pass (LiveDetector._margin: max_gap + max_wait + 1 h).
    since = last + _HOUR - (FeatureConfig().max_gap + IncrementalConfig().max_wait + _HOUR)
    t0 = _timed()
    client = InfluxQLClient(InfluxConfig(url=url, database=database))
    try:
        got = await read_readings(client, inv, since, now + _HOUR)
    finally:
        await client.close()
    print(json.dumps({**_since(t0), "readings": sum(s.times_s.size for s in got.values())}))


async def _child_pass(inventory_path: Path, url: str, database: str, state_path: Path, now: datetime, held: int, *,
                      profile: bool, dump: Path | None = None) -> None:
    import cProfile
    import io
    import pstats

    from anomalies.incremental import DetectorState
    from anomalies.live import LiveConfig, LiveDetector, LoggingNotifier, building_state_path
    from inventory import load_inventory
    from streams.influx import InfluxConfig

    inv = load_inventory(inventory_path)
    import sklearn.tree  # noqa: F401  (what every pass imports once: the fixed part of the peak RSS)

    fixed_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Loading every building's state once (what each pass does when the states are not held), timed apart, and
    # what they would hold in memory for every building at once (readings and rule memo), one at a time here.
    held_mb = 0.0
    t0 = _timed()
    for _, building in inv.buildings():
        state = DetectorState.load(building_state_path(state_path, building.id))
        held_mb += (sum(s.times_s.nbytes + s.values.nbytes for s in state.readings.values())
                    + sum(a.nbytes for a in state.rule_memo.to_arrays().values())) / 2**20
        del state
    load = _since(t0)
    detector = LiveDetector(inv, InfluxConfig(url=url, database=database), state_path, LoggingNotifier(),
                            live=LiveConfig(held=held))
    # The first pass after a start: the state as loaded (models and rule memo from the file), and what a process
    # pays once (the school-holiday data, imports). Timed apart; the steady-state pass is the next hour's.
    t0 = _timed()
    await detector.run_pass(now)
    warm = _since(t0)
    profiler = cProfile.Profile(time.process_time) if profile else None  # CPU time: the machine is shared
    if profiler is not None:
        # cProfile sees only its own thread: run the pass's worker-thread step (advance) inline to profile it.
        async def inline(func: Any, /, *args: Any, **kwargs: Any) -> Any:
            return func(*args, **kwargs)

        asyncio.to_thread = inline
    files = _files(state_path.with_suffix(""))
    t0 = _timed()
    if profiler is not None:
        profiler.enable()
    report = await detector.run_pass(now + _HOUR)
    if profiler is not None:
        profiler.disable()
    figures = _since(t0)
    # What the steady pass wrote of the states: the files it made or changed (heads, segments).
    after = _files(state_path.with_suffix(""))
    figures["written_mb_per_pass"] = round(
        sum(size for name, (size, stamp) in after.items() if files.get(name) != (size, stamp)) / 1e6, 3)
    if profiler is not None:
        if dump is not None:
            profiler.dump_stats(dump)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(45)
        # The models' and the state's own steps, whatever their rank (the rules fill the list above).
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(
            r"anomalies/(detect|incremental|features|expected|iforest)\.py|streams/history", 25)
        print("\n".join(line for line in text.getvalue().splitlines() if line.strip())[:20000])
    print(json.dumps({**figures, "state_load": load, "first_pass": warm, "hours": report.hours, "events": len(report.events),
                      "readings": report.readings, "expected_points": report.expected_points,
                      "fixed_rss_mb": round(fixed_mb, 1), "readings_and_memo_held_mb": round(held_mb, 1),
                      "rusage_self_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


if __name__ == "__main__":
    main()
