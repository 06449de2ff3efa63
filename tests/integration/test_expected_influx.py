"""Expected against observed in InfluxDB: ``econome detect --influx-url`` on real servers, and the Grafana panels' queries.

``econome detect`` runs as a real process on simulated months of the demo
town hall (family A) and writes the ``expected`` measurement to InfluxDB
1.6.7 (v1 API) and to VictoriaMetrics (v2 write API). The number of points
must equal the hours that have an expected value in the same detection run
in-process, and a second run must overwrite them, not add any. The Grafana
panels «Consommation attendue / observée» of every building dashboard are
then run against InfluxDB holding expected values written for every
building, and must return exactly the values written.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from anomalies.detect import ExpectedSeries, detect, read_readings_csv
from anomalies.expected_sink import expected_lines
from dashboards.grafana import EXPECTED_TITLE, generate_dashboards, interpolate, iter_queries
from inventory import Usage, load_inventory
from simulator.export import write_readings_csv

ROOT = Path(__file__).resolve().parents[2]
# From October: the walk-forward model first fits in the heating season. The run is long
# enough for today's forest to fit once (it needs far more than its 14 days, issue 11).
START = datetime(2025, 10, 6, tzinfo=UTC)
END = START + timedelta(weeks=19)


def _env(**extra: str) -> dict[str, str]:
    """This process's environment without any ECONOME_* setting of the machine, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECONOME_")}
    return {**env, "ECONOME_LOG_LEVEL": "WARNING", **extra}


@pytest.fixture(scope="module")
def town_hall(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[tuple[str, str], list[ExpectedSeries]]]:
    """An inventory of the demo town hall alone, 19 simulated weeks of its readings, and in-process expected series."""
    folder = tmp_path_factory.mktemp("expected")
    data = yaml.safe_load((ROOT / "examples" / "commune.yaml").read_text(encoding="utf-8"))
    data["sites"] = [data["sites"][0]]
    data["sites"][0]["buildings"] = [b for b in data["sites"][0]["buildings"] if b["id"] == "mairie"]
    inventory = folder / "mairie.yaml"
    inventory.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    readings = folder / "readings.csv"
    write_readings_csv(load_inventory(inventory), readings, START, END)
    series: dict[tuple[str, str], list[ExpectedSeries]] = {}
    detect(load_inventory(inventory), read_readings_csv(readings),
           on_expected=lambda s: series.setdefault((s.building, s.usage.value), []).append(s))
    return inventory, readings, series


def _detect(inventory: Path, readings: Path, out: Path, env: dict[str, str], *options: str) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "econome.cli", "detect", "--inventory", str(inventory), "--readings", str(readings),
         "--out", str(out), *options],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert run.returncode == 0, f"econome detect failed ({run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    return run.stdout


def _rows(url: str, database: str, statement: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/query", params={"db": database, "q": statement, "epoch": "ms"}, timeout=30)
    response.raise_for_status()
    result = response.json()["results"][0]
    assert "error" not in result, result
    rows = []
    for s in result.get("series", []):
        for values in s["values"]:
            rows.append({**s.get("tags", {}), **dict(zip(s["columns"], values, strict=True))})
    return rows


def _hours(series: list[ExpectedSeries]) -> int:
    return sum(int(np.isfinite(s.expected).sum()) for s in series)


def test_detect_writes_one_point_per_expected_hour_and_a_second_run_overwrites(
    influxdb_server: Any, unique_name: str, town_hall: Any, tmp_path: Path
) -> None:
    inventory, readings, series = town_hall
    wanted = {key: _hours(s) for key, s in series.items()}
    assert set(wanted) == {("mairie", "heating"), ("mairie", "general"), ("mairie", "water")}
    assert all(n > 0 for n in wanted.values()), wanted
    counts = (
        'SELECT count("expected") AS "n", sum("expected") AS "e", sum("residual") AS "r" '
        'FROM "expected" GROUP BY "building", "usage"'
    )
    stdout = _detect(inventory, readings, tmp_path / "events.jsonl", _env(), "--influx-url", influxdb_server.url,
                     "--influx-db", unique_name)
    assert f"{sum(wanted.values())} expected points written to InfluxDB" in stdout
    first = _rows(influxdb_server.url, unique_name, counts)
    assert {(r["building"], r["usage"]): r["n"] for r in first} == wanted
    for row in first:
        (one,) = series[(row["building"], row["usage"])]
        assert math.isclose(row["e"], float(np.nansum(one.expected)), rel_tol=1e-9)
        ok = np.isfinite(one.expected) & np.isfinite(one.observed)
        assert math.isclose(row["r"], float(np.sum(one.observed[ok] - one.expected[ok])), rel_tol=1e-6, abs_tol=1e-6)
    # The events of the run go to the same database, as the JSON lines file has them.
    events = (tmp_path / "events.jsonl").read_text(encoding="utf-8").splitlines()
    anomaly = _rows(influxdb_server.url, unique_name, 'SELECT count("score") FROM "anomaly"')
    assert (anomaly[0]["count"] if anomaly else 0) == len(events)

    # Again, now with the InfluxDB of the ECONOME_INFLUX_* settings, as `econome run` takes it:
    # the same hours are overwritten, none is added.
    env = _env(ECONOME_INFLUX_URL=influxdb_server.url, ECONOME_INFLUX_DATABASE=unique_name)
    _detect(inventory, readings, tmp_path / "again.jsonl", env, "--influx")
    assert _rows(influxdb_server.url, unique_name, counts) == first


@pytest.fixture(scope="module")
def one_day(town_hall: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first day of the town hall's readings: too short for any model or event."""
    _, readings, _ = town_hall
    short = tmp_path_factory.mktemp("one-day") / "readings.csv"
    stop = (START + timedelta(days=1)).isoformat()
    with readings.open(encoding="utf-8") as source, short.open("w", encoding="utf-8") as target:
        for line in source:
            if line.startswith("timestamp") or datetime.fromisoformat(line.split(",", 1)[0]) < datetime.fromisoformat(stop):
                target.write(line)
    return short


def test_detect_without_influx_options_contacts_no_influxdb(town_hall: Any, one_day: Path, tmp_path: Path) -> None:
    inventory, _, _ = town_hall
    # An unreachable InfluxDB in the settings: without --influx it is never contacted.
    stdout = _detect(inventory, one_day, tmp_path / "events.jsonl", _env(ECONOME_INFLUX_URL="http://127.0.0.1:9"))
    assert "InfluxDB" not in stdout


def test_detect_with_an_unreachable_influxdb_is_one_error_line(town_hall: Any, one_day: Path, tmp_path: Path) -> None:
    inventory, _, _ = town_hall
    run = subprocess.run(
        [sys.executable, "-m", "econome.cli", "detect", "--inventory", str(inventory), "--readings", str(one_day),
         "--out", str(tmp_path / "events.jsonl"), "--influx-url", "http://127.0.0.1:9"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120, check=False,
    )
    assert run.returncode == 4, run.stderr
    assert "Traceback" not in run.stderr
    assert "127.0.0.1:9" in run.stderr


def test_detect_with_an_invalid_influx_url_exits_2(town_hall: Any, one_day: Path, tmp_path: Path) -> None:
    inventory, _, _ = town_hall
    run = subprocess.run(
        [sys.executable, "-m", "econome.cli", "detect", "--inventory", str(inventory), "--readings", str(one_day),
         "--out", str(tmp_path / "events.jsonl"), "--influx-url", "ftp://influx"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120, check=False,
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert "influx_url" in run.stderr


def _vm_export(url: str, match: str) -> list[dict[str, Any]]:
    httpx.get(f"{url}/internal/force_flush", timeout=10)
    deadline = time.monotonic() + 15
    while True:
        response = httpx.post(f"{url}/api/v1/export", data={"match[]": match}, timeout=10)
        rows = [json.loads(line) for line in response.text.splitlines() if line]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.3)


def test_detect_writes_expected_through_the_v2_api(victoriametrics_server: Any, unique_name: str, town_hall: Any,
                                                   tmp_path: Path) -> None:
    inventory, readings, series = town_hall
    env = _env(ECONOME_INFLUX_API="v2", ECONOME_INFLUX_TOKEN="t0ken", ECONOME_INFLUX_ORG="valmont",  # noqa: S106 - ignored by VictoriaMetrics
               ECONOME_INFLUX_BUCKET="unused")
    _detect(inventory, readings, tmp_path / "events.jsonl", env, "--influx-url", victoriametrics_server.url,
            "--influx-db", unique_name)
    # VictoriaMetrics names a field <measurement>_<field>; it keeps no label of the bucket.
    (row,) = _vm_export(victoriametrics_server.url, 'expected_expected{building="mairie",usage="heating"}')
    (one,) = series[("mairie", "heating")]
    finite = np.isfinite(one.expected)
    assert row["metric"]["building"] == "mairie"
    assert len(row["values"]) == int(finite.sum())
    assert row["timestamps"] == [round(t * 1000) for t in one.times_s[finite].tolist()]
    np.testing.assert_allclose(row["values"], one.expected[finite])


def test_grafana_panels_return_the_expected_values_written(influxdb_server: Any, unique_name: str) -> None:
    inv = load_inventory(ROOT / "examples" / "commune.yaml")
    tz = inv.organisation.tz
    start = datetime(2026, 1, 12, tzinfo=tz)  # two local days, Monday and Tuesday
    times = start.timestamp() + 3600.0 * np.arange(48)
    written: dict[tuple[str, str], ExpectedSeries] = {}
    lines: list[str] = []
    dashboards = [d for d in generate_dashboards(inv) if d.folder == "batiments"]
    panels = []
    for dashboard in dashboards:
        building = dashboard.model["templating"]["list"][0]["query"]
        for ref in iter_queries(dashboard):
            if EXPECTED_TITLE not in ref.where:
                continue
            usage = next(u for u in Usage if f"\"usage\" = '{u.value}'" in ref.query)
            rng = np.random.default_rng(len(panels))
            observed = rng.uniform(1.0, 50.0, 48).round(3)
            observed[5] = np.nan  # an unknown hour: expected only
            expected = rng.uniform(1.0, 50.0, 48).round(3)
            expected[7] = np.nan  # no model value: no point at all
            one = ExpectedSeries(building, usage, "kWh", times, observed, expected)
            written[(building, usage.value)] = one
            lines += expected_lines(one)
            panels.append((dashboard, ref, one))
    assert len(panels) >= 2 * len(dashboards)  # every building has at least two metered usages
    response = httpx.post(f"{influxdb_server.url}/query", params={"q": f'CREATE DATABASE "{unique_name}"'}, timeout=30)
    response.raise_for_status()
    response = httpx.post(f"{influxdb_server.url}/write", params={"db": unique_name, "precision": "ms"},
                          content="\n".join(lines), timeout=30)
    assert response.status_code == 204, response.text

    # Grafana sends the range in UTC milliseconds.
    t0, t1 = start.astimezone(UTC), (start + timedelta(hours=48) - timedelta(milliseconds=1)).astimezone(UTC)
    step = timedelta(minutes=1)
    days_ms = [round(start.timestamp() * 1000), round((start + timedelta(days=1)).timestamp() * 1000)]
    for dashboard, ref, one in panels:
        variables = {"building": dashboard.model["templating"]["list"][0]["query"], "period": "1h"}
        statement = interpolate(ref.query, start=t0, end=t1, interval=step, variables=variables)
        rows = _rows(influxdb_server.url, unique_name, statement)
        assert [r["time"] for r in rows] == [round(t * 1000) for t in times[np.isfinite(one.expected)].tolist()], ref.where
        for row, h in zip(rows, np.flatnonzero(np.isfinite(one.expected)).tolist(), strict=True):
            assert row["Attendu"] == pytest.approx(one.expected[h])
            if math.isfinite(one.observed[h]):
                assert row["Observé"] == pytest.approx(one.observed[h])
                assert row["Écart"] == pytest.approx(one.observed[h] - one.expected[h])
            else:
                assert row["Observé"] is None
                assert row["Écart"] is None
        # By local day: the sums of what was written, day by day.
        daily = interpolate(ref.query, start=t0, end=t1, interval=step, variables={**variables, "period": "1d"})
        days = _rows(influxdb_server.url, unique_name, daily)
        assert [d["time"] for d in days] == days_ms
        for d, sl in zip(days, (slice(0, 24), slice(24, 48)), strict=True):
            assert d["Attendu"] == pytest.approx(float(np.nansum(one.expected[sl])))
            # observed is written only for hours with an expected value
            observed = np.where(np.isfinite(one.expected), one.observed, np.nan)
            assert d["Observé"] == pytest.approx(float(np.nansum(observed[sl])))
