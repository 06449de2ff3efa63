"""Linky history older than the raw retention, on a real InfluxDB 1.6.7 (issue 14).

After ``econome influx setup`` InfluxDB refuses raw readings older than the
``raw`` policy keeps; the two or three years of load curve Enedis gives then
go to the hourly rows of ``long.reading_1h``, as the continuous query would
have written them, with their aggregates in the ``long`` policy. One test
runs the story: an old file, its re-import (every series of every policy
unchanged), ``econome export`` reading it back, a newer file continuing the
index, and a file older than the long policy set aside.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from econome.cli import app
from inventory import load_inventory
from streams.history import PointSeries, read_readings, read_readings_csv
from streams.influx import InfluxConfig, InfluxQLClient
from streams.status import raw_history
from streams.utility_files import write_enedis_load_curve, write_grdf_daily

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "tests" / "cases" / "enedis" / "inventory.yaml"
PARIS = ZoneInfo("Europe/Paris")
LINKY = "salle-fetes-linky"
PRM = "12345678901234"
GAS, GAS_PCE = "salle-fetes-gazpar", "21987654321098"
HOUR_MS = 3_600_000


def _series(config: InfluxConfig, statements: list[str]) -> list[list[dict[str, Any]]]:
    async def run() -> list[list[dict[str, Any]]]:
        client = InfluxQLClient(config)
        try:
            return [await client.query(statement) for statement in statements]
        finally:
            await client.close()

    return asyncio.run(run())


def _rows(config: InfluxConfig, statement: str) -> list[list[Any]]:
    return [row for series in _series(config, [statement])[0] for row in series["values"]]


def _everything(config: InfluxConfig) -> str:
    """Every point of every measurement of every retention policy, as JSON."""
    names = sorted(str(row[0]) for row in _rows(config, "SHOW MEASUREMENTS"))
    policies = sorted(str(row[0]) for row in _rows(config, f'SHOW RETENTION POLICIES ON "{config.database}"'))
    keys = [f'"{rp}"."{name}"' for rp in policies for name in names]
    dump = _series(config, [f"SELECT * FROM {key} GROUP BY *" for key in keys])  # noqa: S608 - test names
    return json.dumps(dict(zip(keys, dump, strict=True)), sort_keys=True)


def _curve(first_day: datetime, days: int) -> list[tuple[datetime, int, float]]:
    """A 30-minute load curve from local midnight: a different power every half hour (W)."""
    start = first_day.astimezone(UTC)
    return [(start + timedelta(minutes=30 * (k + 1)), 30, 400.0 + 10.0 * (k % 48) + 3.0 * (k // 48)) for k in range(48 * days)]


def _local_days(rows: list[tuple[datetime, int, float]], lag: timedelta = timedelta(0)) -> dict[str, float]:
    """kWh per local day of the intervals (each dated by its end less ``lag``)."""
    out: dict[str, float] = defaultdict(float)
    for end, minutes, watts in rows:
        out[(end - lag - timedelta(milliseconds=1)).astimezone(PARIS).date().isoformat()] += watts * minutes / 60 / 1000
    return dict(out)


async def _read_back(config: InfluxConfig, start: datetime, end: datetime) -> PointSeries:
    client = InfluxQLClient(config)
    try:
        history = await raw_history(client, config)
        return (await read_readings(client, load_inventory(INVENTORY), start, end, points=[LINKY], history=history))[LINKY]
    finally:
        await client.close()


def _import(runner: CliRunner, path: Path, code: int = 0) -> str:
    result = runner.invoke(app, ["import", "enedis", str(path), "--inventory", str(INVENTORY)])
    assert result.exit_code == code, result.output
    return result.output


def test_history_older_than_the_raw_retention_is_kept_and_read_back(
    influxdb_server, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECONOME_INFLUX_URL", influxdb_server.url)
    monkeypatch.setenv("ECONOME_INFLUX_DATABASE", unique_name)
    monkeypatch.setenv("ECONOME_DATA_DIR", str(tmp_path / "var"))
    influx = InfluxConfig(url=influxdb_server.url, database=unique_name)
    runner = CliRunner()
    assert runner.invoke(app, ["influx", "setup", "--raw-days", "30"]).exit_code == 0
    today = datetime.now(PARIS).replace(hour=0, minute=0, second=0, microsecond=0)

    # 1. Three weeks of load curve from 400 days ago: all older than the raw policy keeps.
    old_start = (today - timedelta(days=400)).replace(hour=0)
    old_rows = _curve(old_start, 21)
    old_file = tmp_path / "old.csv"
    write_enedis_load_curve(old_file, PRM, old_rows)
    total = sum(w * m / 60 / 1000 for _, m, w in old_rows)
    out = _import(runner, old_file)
    assert f"1008 intervals, {total:.3f} kWh" in out
    assert f"index 0.000 -> {total:.3f} kWh; 0 readings and " in out
    told = "  505 hourly rows written to long.reading_1h, 1008 intervals older than the raw retention kept in them only\n"
    assert told in out
    assert f"```\n{told}```" in (ROOT / "README.md").read_text(encoding="utf-8")  # the README shows that line
    assert not (tmp_path / "var" / "imports.sqlite").exists()
    assert _rows(influx, f"SELECT count(\"value\") FROM \"raw\".reading WHERE point = '{LINKY}'") == []  # noqa: S608
    # The hourly rows are the continuous query's: mean, min and max of the readings of each UTC hour,
    # at the hour's start, with the readings' tags.
    hours = _series(influx, [f"SELECT \"mean\", \"min\", \"max\" FROM \"long\".reading_1h WHERE point = '{LINKY}' GROUP BY *"])[0]  # noqa: S608
    [series] = hours
    assert series["tags"] == {"building": "salle-fetes", "point": LINKY, "quantity": "active_energy", "unit": "kWh",
                              "usage": "general"}
    assert len(series["values"]) == 21 * 24 + 1  # and the hour of the last reading
    index = [0.0]
    for _, minutes, watts in sorted(old_rows):
        index.append(index[-1] + watts * minutes / 60 / 1000)
    hour_ms = int(old_start.timestamp() * 1000) + 5 * HOUR_MS
    [[_, mean, low, high]] = [row for row in series["values"] if row[0] == hour_ms]
    assert (low, high) == pytest.approx((index[10], index[11]))
    assert mean == pytest.approx((index[10] + index[11]) / 2)
    # The aggregates, in the long policy, give each local day of the file.
    days = _rows(influx, f"SELECT \"sum\" FROM agg_point WHERE point = '{LINKY}' AND \"window\" = '1d'")  # noqa: S608
    expected = _local_days(old_rows)
    assert {datetime.fromtimestamp(t / 1000, PARIS).date().isoformat(): kwh for t, kwh in days} == pytest.approx(expected)

    # The Gazpar of the same building, over the same weeks: one reading a gas day, its hourly row at 05:00 or 06:00 UTC.
    gas_file = tmp_path / "gas.csv"
    gas_days = [((old_start + timedelta(days=d)).date(), 2.0 + 0.5 * (d % 7), 11.2) for d in range(21)]
    write_grdf_daily(gas_file, GAS_PCE, gas_days)
    result = runner.invoke(app, ["import", "grdf", str(gas_file), "--inventory", str(INVENTORY)])
    assert result.exit_code == 0, result.output
    gas_total = sum(m3 for _, m3, _ in gas_days)
    assert "21 intervals older than the raw retention kept in them only" in result.output
    gas = _rows(influx, f"SELECT \"sum\" FROM agg_point WHERE point = '{GAS}' AND \"window\" = '1d'")  # noqa: S608
    assert sum(kwh for _, kwh in gas) == pytest.approx(gas_total)
    assert len(_rows(influx, f"SELECT \"max\" FROM \"long\".reading_1h WHERE point = '{GAS}'")) == 22  # noqa: S608
    # The building's days hold both meters (the Linky's kWh and the gas at 11.2 kWh per m3).
    building = _rows(influx, "SELECT kwh FROM agg_building WHERE building = 'salle-fetes' AND \"window\" = '1d'")
    assert sum(kwh for _, kwh in building) == pytest.approx(total + 11.2 * gas_total)

    # 2. Importing them again changes nothing in any policy.
    before = _everything(influx)
    assert f"index 0.000 -> {total:.3f} kWh; 0 readings and " in _import(runner, old_file)
    assert runner.invoke(app, ["import", "grdf", str(gas_file), "--inventory", str(INVENTORY)]).output == result.output
    assert _everything(influx) == before
    # Each hour of the building holds both meters exactly (its 10-minute windows of that period spread the
    # other meter's hour evenly: hourly rows are all that is left of it).
    def hourly(measurement: str, where: str, field: str) -> dict[int, float]:
        statement = f"SELECT \"{field}\" FROM {measurement} WHERE {where} AND \"window\" = '1h'"  # noqa: S608 - test values
        return {int(t): float(v) for t, v in _rows(influx, statement)}

    linky_h, gas_h = hourly("agg_point", f"point = '{LINKY}'", "sum"), hourly("agg_point", f"point = '{GAS}'", "sum")
    building_h = hourly("agg_building", "building = 'salle-fetes'", "kwh")
    assert building_h == pytest.approx({t: linky_h.get(t, 0.0) + 11.2 * gas_h.get(t, 0.0) for t in linky_h.keys() | gas_h.keys()})
    tens: dict[int, float] = defaultdict(float)
    for t, kwh in _rows(influx, "SELECT kwh FROM agg_building WHERE building = 'salle-fetes' AND \"window\" = '10m'"):
        tens[int(t) - int(t) % HOUR_MS] += kwh
    assert tens == pytest.approx(building_h)  # the 10-minute windows add up to the hours

    # 3. `econome export` reads it back from the hourly rows: each hour's first index at its start, so the
    # index at each local midnight, and every day's kWh, are the file's.
    csv_path = tmp_path / "export.csv"
    result = runner.invoke(app, ["export", "--config", str(INVENTORY), "--since", old_start.date().isoformat(),
                                 "--until", (old_start + timedelta(days=22)).date().isoformat(), "--out", str(csv_path)])
    assert result.exit_code == 0, result.output
    back = read_readings_csv(csv_path)[LINKY]
    at = {datetime.fromtimestamp(t, UTC): v for t, v in zip(back.times_s.tolist(), back.values.tolist(), strict=True)}
    midnights = [old_start + timedelta(days=d) for d in range(22)]  # local midnights (a clock change in between)
    midnights = [m.astimezone(PARIS).replace(hour=0).astimezone(UTC) for m in midnights]
    read_days = {a.astimezone(PARIS).date().isoformat(): at[b] - at[a] for a, b in itertools.pairwise(midnights)}
    assert read_days == pytest.approx(_local_days(old_rows))
    assert max(back.values.tolist()) == pytest.approx(total)
    # `detect`, `mv` and `report --from-influx` read through read_readings: the same indexes.
    series = asyncio.run(_read_back(influx, midnights[0], midnights[-1] + timedelta(hours=1)))
    assert dict(zip(series.times_s.tolist(), series.values.tolist(), strict=True)) == {
        t.timestamp(): v for t, v in at.items() if t <= midnights[-1]}

    # 4. A newer file, inside the raw retention, continues the index from the old file's last one.
    new_rows = _curve(today - timedelta(days=3), 2)
    new_file = tmp_path / "new.csv"
    write_enedis_load_curve(new_file, PRM, new_rows)
    out = _import(runner, new_file)
    added = sum(w * m / 60 / 1000 for _, m, w in new_rows)
    assert f"index {total:.3f} -> {total + added:.3f} kWh; 97 readings and " in out
    raw = _rows(influx, f"SELECT \"value\" FROM \"raw\".reading WHERE point = '{LINKY}'")  # noqa: S608
    assert (min(v for _, v in raw), max(v for _, v in raw)) == pytest.approx((total, total + added))
    # Its hourly rows are written too: the continuous query never goes back to a day published late.
    recent = _rows(influx, f"SELECT \"max\" FROM \"long\".reading_1h WHERE point = '{LINKY}' "  # noqa: S608
                           f"AND time >= {int((today - timedelta(days=3)).timestamp() * 1000)}ms")
    assert len(recent) == 2 * 24 + 1
    assert max(v for _, v in recent) == pytest.approx(total + added)
    # Both files again, the old one last: the Linky's readings, hourly rows and aggregates do not move.
    linky = [f"SELECT * FROM \"{rp}\".\"{name}\" WHERE point = '{LINKY}' GROUP BY *"  # noqa: S608 - test names
             for rp, name in (("raw", "reading"), ("long", "reading_1h"), ("long", "agg_point"))]
    before_linky = json.dumps(_series(influx, linky))
    _import(runner, new_file)
    assert "later readings re-anchored" not in _import(runner, old_file)
    assert json.dumps(_series(influx, linky)) == before_linky

    # 5. Older than the long policy keeps (1830 days): set aside, exit 3.
    ancient = tmp_path / "ancient.csv"
    write_enedis_load_curve(ancient, PRM, _curve(today - timedelta(days=1900), 1))
    out = _import(runner, ancient, code=3)
    assert "48 intervals before " in out
    assert "not imported: InfluxDB's retention policies do not keep them" in out
    assert math.isclose(max(v for _, v in _rows(influx, f"SELECT \"value\" FROM \"raw\".reading WHERE point = '{LINKY}'")),  # noqa: S608
                        total + added, rel_tol=1e-12)


def _hourly_and_daily(config: InfluxConfig) -> tuple[dict[int, list[float]], dict[int, float]]:
    hours = {int(row[0]): row[1:] for row in _rows(config, f"SELECT \"mean\", \"min\", \"max\" FROM \"long\".reading_1h "  # noqa: S608
                                                                   f"WHERE point = '{LINKY}'")}
    days = {int(row[0]): float(row[1]) for row in _rows(config, f"SELECT \"sum\" FROM agg_point WHERE point = '{LINKY}' "  # noqa: S608
                                                                  "AND \"window\" = '1d'")}
    return hours, days


async def test_an_older_file_after_a_newer_one_moves_the_hourly_rows(influxdb_server, unique_name: str, tmp_path: Path) -> None:
    """Six old days imported in two files, the later one first, end as the six days imported at once."""
    from inventory import load_inventory
    from streams.imports import Consumption, deliver_consumption
    from streams.influx import setup_v1

    inventory = load_inventory(INVENTORY)
    whole, parts = (InfluxConfig(url=influxdb_server.url, database=unique_name + suffix) for suffix in ("w", "p"))
    for config in (whole, parts):
        await setup_v1(config, 30, 1830)
    start = (datetime.now(PARIS) - timedelta(days=200)).replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
    items = [Consumption(start + timedelta(minutes=30 * k), start + timedelta(minutes=30 * (k + 1)), 0.2 + 0.01 * (k % 48))
             for k in range(48 * 6)]
    await deliver_consumption(inventory, whole, LINKY, items, data_dir=tmp_path / "w", source="whole")
    later = await deliver_consumption(inventory, parts, LINKY, items[144:], data_dir=tmp_path / "p", source="later")
    assert (later.readings, later.hourly_only) == (0, 144)
    earlier = await deliver_consumption(inventory, parts, LINKY, items[:144], data_dir=tmp_path / "p", source="earlier")
    first_half = math.fsum(i.amount for i in items[:144])
    assert earlier.shift == pytest.approx(first_half)
    assert earlier.shifted == 3 * 24  # the later file's hours but the one it shares with the earlier file
    (hours_w, days_w), (hours_p, days_p) = [await asyncio.to_thread(_hourly_and_daily, c) for c in (whole, parts)]
    assert hours_p.keys() == hours_w.keys()
    for hour, row in hours_w.items():
        assert hours_p[hour] == pytest.approx(row), hour
    assert days_p == pytest.approx(days_w)
    # The whole file again over the two parts: nothing moves; the hourly rows keep their values to the last bit
    # (the aggregates of the later days, computed from other indexes, may differ by float rounding).
    again = await deliver_consumption(inventory, parts, LINKY, items, data_dir=tmp_path / "p", source="whole")
    assert again.shifted == 0
    hours_again, days_again = await asyncio.to_thread(_hourly_and_daily, parts)
    assert hours_again == hours_p
    assert days_again == pytest.approx(days_p)
    # The file again without its third day: that day's hourly rows stay, the days after continue from them.
    holed = await deliver_consumption(inventory, parts, LINKY, items[:96] + items[144:], data_dir=tmp_path / "p",
                                      source="holed")
    assert holed.shifted == 0
    hours_holed, days_holed = await asyncio.to_thread(_hourly_and_daily, parts)
    assert hours_holed.keys() == hours_p.keys()
    for hour, row in hours_p.items():
        assert hours_holed[hour] == pytest.approx(row), hour
    assert days_holed == pytest.approx(days_p)
