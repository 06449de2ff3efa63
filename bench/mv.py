"""Savings benchmark: our daily baseline against eemeter's CalTRACK daily model.

Data: the ``il-electricity-cdd-hdd-daily`` sample shipped inside the eemeter
PyPI package, a simulated meter whose loads drop by exactly 10 % after a
blackout (2016-12-26 to 2017-01-04). Baseline: the 365 days before the
blackout; reporting: the 400 days after it (see shared EEMETER.md).

eemeter 4.1.1 needs pytz and pandas < 3, so it runs in its own virtualenv,
created on first use under ``$ECONOME_CACHE`` (default ``~/.cache/econome``),
as a subprocess. Ours reads the same CSV files from that package, converts
°F to °C and runs :mod:`mv.baseline` and :mod:`mv.savings`.

    .venv/bin/python bench/mv.py

It also converts the sample to the one readings format (``timestamp,point,value``,
the daily consumption as a kWh index) and runs ``econome mv`` on it.

Then the hourly sample (``il-electricity-cdd-hdd-hourly``, the same meter
hour by hour): our hourly model (TOWT) is refused by Guideline 14, and
``econome mv --model towt`` falls back to the daily model on the same data
(:func:`mv.savings.avoided_consumption_hourly_or_daily`).

The last line printed is one JSON object with ``true_fraction``,
``ours_fraction``, ``ours_cli_fraction`` (``econome mv``), ``eemeter_fraction``, ``ours_cvrmse``, ``ours_nmbe``,
``hourly_cvrmse`` and ``hourly_fallback_fraction``.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mv.baseline import (  # noqa: E402 - after the path fix, so the bench runs from a checkout
    DailyChangePointBaseline,
    DailyObservations,
    HourlyObservations,
    TowtBaseline,
    daily_energy,
    hourly_temperature_matrix,
    weekday_day_types,
)
from mv.savings import avoided_consumption, avoided_consumption_hourly_or_daily  # noqa: E402

SAMPLE = "il-electricity-cdd-hdd-daily"
HOURLY_SAMPLE = "il-electricity-cdd-hdd-hourly"
EEMETER_SPEC = ["eemeter==4.1.1", "pytz", "pandas<3"]
BASELINE_DAYS = 365
REPORTING_DAYS = 400

EEMETER_SCRIPT = r"""
import json, logging, sys, warnings
warnings.simplefilter("ignore")
logging.disable(logging.CRITICAL)
from pathlib import Path
import pandas as pd
import eemeter.eemeter.samples as samples
from eemeter.eemeter import DailyBaselineData, DailyModel, DailyReportingData
from eemeter.eemeter.samples import load_sample

baseline_days, reporting_days = int(sys.argv[1]), int(sys.argv[2])
meter, temperature, meta = load_sample("il-electricity-cdd-hdd-daily")
start, end = meta["blackout_start_date"], meta["blackout_end_date"]
base = meter[(meter.index >= start - pd.Timedelta(days=baseline_days)) & (meter.index < start)]
rep = meter[(meter.index >= end) & (meter.index < end + pd.Timedelta(days=reporting_days))]
model = DailyModel().fit(DailyBaselineData.from_series(base, temperature, is_electricity_data=True))
result = model.predict(DailyReportingData.from_series(rep, temperature, is_electricity_data=True))
ok = result[["observed", "predicted"]].dropna()
print(json.dumps({
    "fraction": 1 - float(ok["observed"].sum()) / float(ok["predicted"].sum()),
    "days": len(ok),
    "samples_dir": str(Path(samples.__file__).parent),
    "blackout_start": start.date().isoformat(),
    "blackout_end": end.date().isoformat(),
    "annual_baseline_total_load": meta["annual_baseline_total_load"],
    "annual_reporting_total_load": meta["annual_reporting_total_load"],
}))
"""


def eemeter_python() -> Path:
    """The Python of eemeter's virtualenv, created on first use."""
    cache = Path(os.environ.get("ECONOME_CACHE", Path.home() / ".cache" / "econome"))
    venv = cache / "eemeter-4.1.1"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating eemeter virtualenv in {venv} (once)", flush=True)
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *EEMETER_SPEC], check=True)
    return python


def run_eemeter() -> dict[str, object]:
    out = subprocess.run(
        [str(eemeter_python()), "-c", EEMETER_SCRIPT, str(BASELINE_DAYS), str(REPORTING_DAYS)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def read_gz(path: Path) -> list[tuple[datetime, float]]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        return [(datetime.fromisoformat(ts), float(v)) for ts, v in reader if v]


def run_ours(samples_dir: Path, blackout_start: date, blackout_end: date) -> dict[str, float | str]:
    meter = read_gz(samples_dir / f"{SAMPLE}.csv.gz")
    temps_f = read_gz(samples_dir / "il-tempF.csv.gz")
    # The files carry the local offset (-06:00): a meter day is a local day,
    # so temperatures are grouped by the same local day.
    tz = meter[0][0].tzinfo
    if tz is None:
        msg = "sample timestamps carry no UTC offset"
        raise SystemExit(msg)
    days = [ts.date() for ts, _ in meter]
    energy = [v for _, v in meter]
    stamps = [ts for ts, _ in temps_f]
    temps_c = [(v - 32) * 5 / 9 for _, v in temps_f]
    matrix = hourly_temperature_matrix(stamps, temps_c, days, tz=tz)
    obs = DailyObservations.build(days, energy, matrix, weekday_day_types(days))
    baseline = obs.select(blackout_start - timedelta(days=BASELINE_DAYS), blackout_start)
    reporting = obs.select(blackout_end, blackout_end + timedelta(days=REPORTING_DAYS))
    model = DailyChangePointBaseline().fit(baseline)
    report = avoided_consumption(model, reporting)
    return {
        "fraction": report.total.savings_fraction,
        "uncertainty_fraction": report.total.savings_uncertainty_fraction,
        "cvrmse": report.stats.cvrmse,
        "nmbe": report.stats.nmbe,
        "model": report.model,
        "baseline_days": report.stats.n,
        "reporting_days": report.total.points,
    }


def run_cli(samples_dir: Path, blackout_start: date, blackout_end: date) -> dict[str, object]:
    """The same sample through ``econome mv``: converted to the one readings format (a kWh index, °C)."""
    from typer.testing import CliRunner

    from econome.cli import app

    meter = read_gz(samples_dir / f"{SAMPLE}.csv.gz")
    temps_f = read_gz(samples_dir / "il-tempF.csv.gz")
    work = Path(tempfile.mkdtemp(prefix="econome-mv-bench-"))
    readings = work / "readings.csv"
    index = 0.0
    with readings.open("w", encoding="utf-8") as handle:
        handle.write("timestamp,point,value\n")
        for ts, kwh in meter:  # a daily consumption becomes the index at the start of the day, and one at the end
            handle.write(f"{ts.isoformat()},meter,{index!r}\n")
            index += kwh
        handle.write(f"{(meter[-1][0] + timedelta(days=1)).isoformat()},meter,{index!r}\n")
        handle.writelines(f"{ts.isoformat()},temperature,{(v - 32) * 5 / 9!r}\n" for ts, v in temps_f)
    baseline = f"{blackout_start - timedelta(days=BASELINE_DAYS)}/{blackout_start}"
    reporting = f"{blackout_end}/{blackout_end + timedelta(days=REPORTING_DAYS)}"
    result = CliRunner().invoke(app, [
        "mv", "--readings", str(readings), "--point", "meter", "--temperature-point", "temperature",
        "--timezone", "Etc/GMT+6",  # the sample's -06:00, as a zone
        "--baseline", baseline, "--reporting", reporting,
    ])
    if result.exit_code != 0:
        msg = f"econome mv failed ({result.exit_code}): {result.output}"
        raise SystemExit(msg)
    out: dict[str, object] = json.loads(result.output)
    return out


def run_hourly(samples_dir: Path, blackout_start: date, blackout_end: date) -> dict[str, float | str]:
    """The hourly sample through ``econome mv --model towt``'s path: TOWT, refused, then the daily fallback."""
    meter = read_gz(samples_dir / f"{HOURLY_SAMPLE}.csv.gz")
    temps_f = read_gz(samples_dir / "il-tempF.csv.gz")
    tz = meter[0][0].tzinfo
    if tz is None:
        msg = "sample timestamps carry no UTC offset"
        raise SystemExit(msg)
    stamps = [ts for ts, _ in meter]
    energy = [v for _, v in meter]
    temp_at = {ts.astimezone(UTC): (v - 32) * 5 / 9 for ts, v in temps_f}
    hours = tuple(ts.astimezone(UTC) for ts in stamps)
    hourly = HourlyObservations(hours, np.array(energy), np.array([temp_at.get(h, np.nan) for h in hours]), tz=tz)
    bounds = (blackout_start - timedelta(days=BASELINE_DAYS), blackout_start, blackout_end,
              blackout_end + timedelta(days=REPORTING_DAYS))  # fmt: skip
    at = [datetime(d.year, d.month, d.day, tzinfo=tz) for d in bounds]
    towt = TowtBaseline().fit(hourly.select(at[0], at[1]))
    days, day_energy = daily_energy(stamps, energy, tz=tz)
    matrix = hourly_temperature_matrix([ts for ts, _ in temps_f], [(v - 32) * 5 / 9 for _, v in temps_f], days, tz=tz)
    obs = DailyObservations.build(days, day_energy, matrix, weekday_day_types(days))
    daily = DailyChangePointBaseline().fit(obs.select(blackout_start - timedelta(days=BASELINE_DAYS), blackout_start))
    report, fallback = avoided_consumption_hourly_or_daily(
        towt, hourly.select(at[2], at[3]), daily, obs.select(blackout_end, blackout_end + timedelta(days=REPORTING_DAYS))
    )
    return {
        "hourly_cvrmse": towt.stats.cvrmse,
        "hourly_refused": "; ".join(fallback.hourly_failures) if fallback is not None else "",
        "fraction": report.total.savings_fraction,
        "uncertainty_fraction": report.total.savings_uncertainty_fraction,
        "model": report.model,
    }


def main() -> None:
    t0 = time.perf_counter()
    theirs = run_eemeter()
    t1 = time.perf_counter()
    start = date.fromisoformat(str(theirs["blackout_start"]))
    end = date.fromisoformat(str(theirs["blackout_end"]))
    ours = run_ours(Path(str(theirs["samples_dir"])), start, end)
    t2 = time.perf_counter()
    cli = run_cli(Path(str(theirs["samples_dir"])), start, end)
    t3 = time.perf_counter()
    true_fraction = 1 - float(str(theirs["annual_reporting_total_load"])) / float(str(theirs["annual_baseline_total_load"]))
    ours_fraction = float(ours["fraction"])
    eemeter_fraction = float(str(theirs["fraction"]))
    print(f"sample            {SAMPLE}: baseline {BASELINE_DAYS} days before {start}, reporting {REPORTING_DAYS} days from {end}")
    print(f"true saving       {true_fraction:.2%}")
    print(
        f"ours              {ours_fraction:.2%} ± {float(ours['uncertainty_fraction']):.2%} (90 %), "
        f"error {ours_fraction - true_fraction:+.2%}  [{ours['model']}]  {t2 - t1:.1f}s"
    )
    print(f"ours, econome mv  {float(str(cli['savings_fraction'])):.2%} (the sample as a readings CSV)  {t3 - t2:.1f}s")
    print(
        f"eemeter 4.1.1     {eemeter_fraction:.2%}, error {eemeter_fraction - true_fraction:+.2%}"
        f"  [CalTRACK daily]  {t1 - t0:.1f}s"
    )
    print(
        f"ours CV(RMSE)     {float(ours['cvrmse']):.1%}   NMBE {float(ours['nmbe']):+.2%}"
        f"   ({ours['baseline_days']} baseline days)"
    )
    hourly = run_hourly(Path(str(theirs["samples_dir"])), start, end)
    print(f"hourly sample     {HOURLY_SAMPLE}: our hourly model (TOWT) refused: {hourly['hourly_refused'] or 'no'}")
    print(
        f"  daily fallback  {float(hourly['fraction']):.2%} ± {float(hourly['uncertainty_fraction']):.2%} (90 %), "
        f"error {float(hourly['fraction']) - true_fraction:+.2%}  [{hourly['model']}]"
    )
    goal = abs(ours_fraction - true_fraction) <= 0.015 and abs(ours_fraction - true_fraction) <= abs(
        eemeter_fraction - true_fraction
    )
    print(f"goal (within 1.5 points and no further than eemeter): {'met' if goal else 'NOT met'}")
    print(
        json.dumps(
            {
                "true_fraction": round(true_fraction, 6),
                "ours_fraction": round(ours_fraction, 6),
                "ours_cli_fraction": round(float(str(cli["savings_fraction"])), 6),
                "eemeter_fraction": round(eemeter_fraction, 6),
                "ours_cvrmse": round(float(ours["cvrmse"]), 6),
                "ours_nmbe": round(float(ours["nmbe"]), 6),
                "hourly_cvrmse": round(float(hourly["hourly_cvrmse"]), 6),
                "hourly_fallback_fraction": round(float(hourly["fraction"]), 6),
            }
        )
    )


if __name__ == "__main__":
    main()
