"""Reading InfluxDB 1.6 for the offline commands: past the raw retention, and a meter read once a week (issue 13 review)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from econome._readings import ReadingSource
from econome.cli import app
from inventory import load_inventory
from streams.aggregate import counter_tracker
from streams.history import PointSeries, hourly_consumption, read_readings_csv, write_readings_csv
from streams.influx import InfluxConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "examples" / "commune.yaml"
INV = load_inventory(CONFIG)
COUNTER, SENSOR, WATER = "mairie-elec-energy", "station-meteo-temperature", "mairie-water-volume"


def _write(url: str, database: str, lines: list[str], policy: str | None = None) -> None:
    params = {"db": database, "precision": "ms", **({"rp": policy} if policy else {})}
    response = httpx.post(f"{url}/write", params=params, content="\n".join(lines), timeout=30)
    assert response.status_code == 204, response.text[:300]


def _hours(series: PointSeries) -> dict[datetime, float]:
    hours, amounts = hourly_consumption(series, counter_tracker(INV, INV.point(COUNTER)), INV.organisation.tz)
    return dict(zip(hours, amounts.tolist(), strict=True))


def _days(hours: dict[datetime, float], lo: datetime, hi: datetime) -> dict[str, float]:
    out: dict[str, float] = {}
    for hour, amount in hours.items():
        if lo <= hour < hi:
            day = hour.astimezone(INV.organisation.tz).date().isoformat()
            out[day] = out.get(day, 0.0) + amount
    return out


def test_past_the_raw_retention_the_hourly_aggregates_are_read(
    influxdb_server: Any, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The review: after `econome influx setup --raw-days 90`, every --from-influx command and export read
    # only the last 90 days, silently. Here raw readings are kept one day; four days are asked for.
    monkeypatch.setenv("ECONOME_INFLUX_URL", influxdb_server.url)
    monkeypatch.setenv("ECONOME_INFLUX_DATABASE", unique_name)
    runner = CliRunner()
    setup = runner.invoke(app, ["influx", "setup", "--raw-days", "1"])
    assert setup.exit_code == 0, setup.output
    now = datetime.now(UTC)
    cut = (now - timedelta(days=1)).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = (now - timedelta(days=4)).replace(minute=0, second=0, microsecond=0)
    rng = np.random.default_rng(4)
    steps = int((now - start) / timedelta(minutes=15))
    times = [start + timedelta(minutes=15 * i, seconds=7) for i in range(steps)]
    index = 48000.0 + np.cumsum(rng.uniform(0.5, 4.0, steps))
    temps = 5 + 3 * np.sin(np.arange(steps) / 20)
    truth = {COUNTER: PointSeries(np.array([t.timestamp() for t in times]), index)}

    # What `econome run` leaves: raw readings since the cut, and the continuous query's hourly aggregates before.
    raw = [f"reading,point={p} value={v!r} {int(t.timestamp() * 1000)}"
           for t, i, c in zip(times, index.tolist(), temps.tolist(), strict=True) if t >= cut
           for p, v in ((COUNTER, i), (SENSOR, c))]
    _write(influxdb_server.url, unique_name, raw, "raw")
    hourly = []
    for h in range(int((cut - start) / timedelta(hours=1))):
        lo = start + timedelta(hours=h)
        sel = [k for k, t in enumerate(times) if lo <= t < lo + timedelta(hours=1)]
        for point, values in ((COUNTER, index[sel]), (SENSOR, temps[sel])):
            hourly.append(f"reading_1h,point={point} mean={float(values.mean())!r},min={float(values.min())!r},"
                          f"max={float(values.max())!r} "
                          f"{int(lo.timestamp() * 1000)}")
    _write(influxdb_server.url, unique_name, hourly, "long")

    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    source = ReadingSource(None, True, config)
    data = source.load(INV, start, now + timedelta(hours=1))
    assert f"before {cut.isoformat()} the hourly aggregates of long.reading_1h are read" in capsys.readouterr().err
    assert data[COUNTER].times_s[0] < cut.timestamp()  # not only what the raw policy still holds
    assert data[SENSOR].times_s[0] < cut.timestamp()
    # The same consumption per day as the raw readings (within one 15-minute step at a day's edge).
    lo, hi = start + timedelta(hours=2), cut - timedelta(hours=1)
    ours, true = _days(_hours(data[COUNTER]), lo, now), _days(_hours(truth[COUNTER]), lo, now)
    assert ours.keys() == true.keys()
    for day, amount in true.items():
        assert ours[day] == pytest.approx(amount, abs=4.0), day
    whole = sum(a for h, a in _hours(data[COUNTER]).items() if lo <= h < hi)
    assert whole == pytest.approx(sum(a for h, a in _hours(truth[COUNTER]).items() if lo <= h < hi), abs=4.0)

    # The command says what it read; so does export, whose file starts at --since, not at the cut.
    since = start.isoformat()
    out = tmp_path / "export.csv"
    result = runner.invoke(app, ["export", "--config", str(CONFIG), "--since", since, "--until", now.isoformat(),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    note = f"InfluxDB keeps raw readings 1 day (retention policy 'raw'): before {cut.isoformat()}"
    assert note in result.stderr
    assert "the hourly aggregates of long.reading_1h are read" in result.stderr
    exported = read_readings_csv(out)
    assert exported[COUNTER].times_s[0] < start.timestamp() + 3601
    assert _days(_hours(exported[COUNTER]), lo, now) == pytest.approx(ours)

    # Without the aggregates (a database set up but never downsampled), a warning names the retention.
    monkeypatch.setenv("ECONOME_INFLUX_DATABASE", unique_name + "b")
    assert runner.invoke(app, ["influx", "setup", "--raw-days", "1"]).exit_code == 0
    _write(influxdb_server.url, unique_name + "b", raw, "raw")
    result = runner.invoke(app, ["export", "--config", str(CONFIG), "--since", since, "--until", now.isoformat(),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    lost = "InfluxDB keeps raw readings 1 day (retention policy 'raw'): none before"
    assert f"{lost} {cut.isoformat()}, and long.reading_1h holds none before then either" in result.stderr


def test_a_meter_read_weekly_gives_the_same_consumption_from_influxdb_as_from_csv(
    influxdb_server: Any, unique_name: str, tmp_path: Path
) -> None:
    # The review: a water meter read on Mondays at 08:00 lost its first days from InfluxDB (the index
    # before the range was more than the day of margin away).
    tz = INV.organisation.tz
    mondays = [datetime(2025, 9, 1, 8, tzinfo=tz) + timedelta(weeks=w) for w in range(10)]
    values = [1200.0 + 6.0 * w + (w % 3) for w in range(10)]
    csv = tmp_path / "weekly.csv"
    write_readings_csv(csv, [[(t.astimezone(UTC), WATER, v) for t, v in zip(mondays, values, strict=True)]])
    httpx.post(f"{influxdb_server.url}/query", params={"q": f'CREATE DATABASE "{unique_name}"'}, timeout=10)
    _write(influxdb_server.url, unique_name, [f"reading,point={WATER} value={v!r} {int(t.timestamp() * 1000)}"
                                              for t, v in zip(mondays, values, strict=True)])
    first, end = datetime(2025, 10, 1, tzinfo=tz), datetime(2025, 11, 1, tzinfo=tz)  # a Wednesday to a Saturday
    tracker = lambda: counter_tracker(INV, INV.point(WATER))  # noqa: E731
    sources = {"csv": ReadingSource(csv, False),
               "influx": ReadingSource(None, True, InfluxConfig(url=influxdb_server.url, database=unique_name))}
    months = {}
    for name, source in sources.items():
        series = source.load(INV, first - timedelta(days=1), end + timedelta(days=1), [WATER])[WATER]
        hours, amounts = hourly_consumption(series, tracker(), tz)
        months[name] = sum(a for h, a in zip(hours, amounts.tolist(), strict=True) if first <= h < end)
    assert months["csv"] > 20
    assert months["influx"] == pytest.approx(months["csv"], rel=1e-9)


def test_the_index_before_the_range_is_found_past_the_raw_retention(
    influxdb_server: Any, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Review round 2: a weekly index older than the raw retention (left only in long.reading_1h) was lost
    # when the range itself was within the raw retention: the first week's consumption vanished.
    monkeypatch.setenv("ECONOME_INFLUX_URL", influxdb_server.url)
    monkeypatch.setenv("ECONOME_INFLUX_DATABASE", unique_name)
    assert CliRunner().invoke(app, ["influx", "setup", "--raw-days", "1"]).exit_code == 0
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    old, recent = now - timedelta(hours=30), now - timedelta(hours=2)
    # The continuous query's aggregate of the hour holding the old index (its raw copy expired).
    _write(influxdb_server.url, unique_name,
           [f"reading_1h,point={WATER} mean=1000.0,min=1000.0,max=1000.0 {int(old.timestamp() * 1000)}"], "long")
    _write(influxdb_server.url, unique_name, [f"reading,point={WATER} value=1100.0 {int(recent.timestamp() * 1000)}"],
           "raw")
    source = ReadingSource(None, True, InfluxConfig(url=influxdb_server.url, database=unique_name))
    start = now - timedelta(hours=19)  # after the cut of the raw retention (now - 1 day)
    series = source.load(INV, start, now + timedelta(hours=1), [WATER])[WATER]
    assert series.values.tolist() == [1000.0, 1100.0]
    assert series.times_s[0] == (old + timedelta(hours=1)).timestamp()  # an hourly maximum stands at its hour's end


def test_detect_from_influx_reports_a_sensor_that_died_before_since(
    influxdb_server: Any, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Review round 2: "points never read are not judged" (meant for simulate's counters-only CSV) also applied
    # to InfluxDB, which collects every point: a sensor dead before --since was never reported.
    monkeypatch.setenv("ECONOME_INFLUX_URL", influxdb_server.url)
    monkeypatch.setenv("ECONOME_INFLUX_DATABASE", unique_name)
    httpx.post(f"{influxdb_server.url}/query", params={"q": f'CREATE DATABASE "{unique_name}"'}, timeout=10)
    dead, alive = "mairie-bureaux-temperature", SENSOR
    first = datetime(2025, 1, 3, tzinfo=UTC)
    _write(influxdb_server.url, unique_name,
           [f"reading,point={dead} value=19.5 {int((first + timedelta(hours=h)).timestamp() * 1000)}" for h in range(60)]
           + [f"reading,point={alive} value=4.5 {int((first + timedelta(hours=h)).timestamp() * 1000)}"
              for h in range(24 * 13)])
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(app, ["detect", "--inventory", str(CONFIG), "--from-influx", "--since", "2025-01-06",
                                      "--until", "2025-01-16", "--no-models", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "not judged" not in result.stderr
    missing = {e["point"] for e in map(json.loads, out.read_text().splitlines()) if e["kind"] == "missing_data"}
    assert dead in missing
    assert alive not in missing

    # A CSV (simulate's counters-only file) still says which points it does not judge.
    csv = tmp_path / "alive.csv"
    write_readings_csv(csv, [[(first + timedelta(hours=h), alive, 4.5) for h in range(24 * 13)]])
    result = CliRunner().invoke(app, ["detect", "--inventory", str(CONFIG), "--readings", str(csv), "--no-models",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "missing data not judged for them" in result.stderr
    assert dead in result.stderr
    assert not [e for e in map(json.loads, out.read_text().splitlines()) if e["kind"] == "missing_data"]
