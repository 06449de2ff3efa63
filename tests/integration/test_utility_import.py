"""``econome import enedis|grdf`` on a real InfluxDB 1.6.7 (issue 14).

One test runs the whole story, since each import costs a few seconds: the
autumn load curve (mixed steps, unsorted, duplicates, naive local times of the
25-hour day), its re-import (every series byte-identical), an overlapping
second file (same indexes in the overlap, continuity after), an older file
imported last (later data re-anchored, their consumption unchanged), and a
Gazpar file into the same building (the building's totals keep the Linky).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from typer.testing import CliRunner

from dashboards.grafana import generate_dashboards, interpolate, iter_queries
from econome.cli import app
from inventory import load_inventory
from streams.influx import InfluxConfig, InfluxQLClient, to_ms
from streams.utility_files import write_enedis_load_curve, write_grdf_daily

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "cases"
INVENTORY = CASES / "enedis" / "inventory.yaml"
PARIS = ZoneInfo("Europe/Paris")
LINKY = "salle-fetes-linky"


def _local_day(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=PARIS).timestamp() * 1000)


def _rows(config: InfluxConfig, statement: str) -> list[list[Any]]:
    """The rows InfluxDB answers (one event loop per call: the CLI under test runs its own)."""
    return [row for series in _series(config, [statement])[0] for row in series["values"]]


def _series(config: InfluxConfig, statements: list[str]) -> list[list[dict[str, Any]]]:
    async def run() -> list[list[dict[str, Any]]]:
        client = InfluxQLClient(config)
        try:
            return [await client.query(statement) for statement in statements]
        finally:
            await client.close()

    return asyncio.run(run())


def _everything(config: InfluxConfig) -> str:
    """Every point of every measurement, as JSON: two calls give the same text when nothing changed."""
    names = sorted(str(row[0]) for row in _rows(config, "SHOW MEASUREMENTS"))
    dump = _series(config, [f'SELECT * FROM "{name}" GROUP BY *' for name in names])  # noqa: S608 - test names
    return json.dumps(dict(zip(names, dump, strict=True)), sort_keys=True)


def _daily(config: InfluxConfig, point: str) -> dict[int, float]:
    return _sums(config, point, "1d", 0, 4_000_000_000_000)  # 1970 to 2096


def _sums(config: InfluxConfig, point: str, window: str, start_ms: int, end_ms: int) -> dict[int, float]:
    """The ``sum`` of a point's aggregates of one window size in ``[start_ms, end_ms)``."""
    statement = (f"SELECT \"sum\" FROM agg_point WHERE point = '{point}' AND \"window\" = '{window}' "  # noqa: S608 - test values
                 f"AND time >= {start_ms}ms AND time < {end_ms}ms")
    rows = _rows(config, statement)
    return {int(row[0]): float(row[1]) for row in rows}


def _index(config: InfluxConfig, point: str) -> dict[int, float]:
    rows = _rows(config, f"SELECT \"value\" FROM reading WHERE point = '{point}'")  # noqa: S608 - test values
    return {int(row[0]): float(row[1]) for row in rows}


def _readme_sample() -> str:
    """The sample output of ``econome import`` in the README."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    intro = "then every row set aside with its line:\n\n```\n"
    start = text.index(intro) + len(intro)
    return text[start:text.index("```", start)]


def _run(runner: CliRunner, kind: str, path: Path) -> str:
    result = runner.invoke(app, ["import", kind, str(path), "--inventory", str(INVENTORY)])
    assert result.exit_code == 0, result.output
    return result.output


def test_imports_are_exact_idempotent_and_continuous(
    influxdb_server, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECONOME_INFLUX_URL", influxdb_server.url)
    monkeypatch.setenv("ECONOME_INFLUX_DATABASE", unique_name)
    monkeypatch.setenv("ECONOME_DATA_DIR", str(tmp_path / "var"))
    runner = CliRunner()
    influx = InfluxConfig(url=influxdb_server.url, database=unique_name)
    # 1. The autumn file: 60, 30 and 10-minute steps, shuffled, a duplicate, a conflict, the 25-hour day.
    out = _run(runner, "enedis", CASES / "enedis" / "load-curve-autumn.csv")
    assert f"{LINKY} (PRM 12345678901234): 2026-10-24 00:00 -> 2026-10-28 00:00 (Europe/Paris), 266 intervals, 123.500 kWh" in out
    assert "index 0.000 -> 123.500 kWh" in out
    assert "gaps: 0" in out
    assert "rows set aside: 2 ambiguous, 1 conflict, 1 duplicate" in out
    assert "load-curve-autumn.csv:269: conflict:" in out
    daily = _daily(influx, LINKY)
    expected = {_local_day(2026, 10, 24): 48.0, _local_day(2026, 10, 25): 25.1,
                _local_day(2026, 10, 26): 14.4, _local_day(2026, 10, 27): 36.0}
    assert daily.keys() == expected.keys()
    for day, kwh in expected.items():
        assert daily[day] == pytest.approx(kwh)
    by_hour = _sums(influx, LINKY, "1h", _local_day(2026, 10, 25), _local_day(2026, 10, 26))
    assert len(by_hour) == 25  # the autumn day has 25 hours, none merged or lost
    first_2h = int(datetime(2026, 10, 25, 0, tzinfo=UTC).timestamp() * 1000)  # 02:00 summer time
    # The two hours from 02:00 local: each holds one half hour at 1000 W and one at 1100 W (the file's
    # second 02:00 and 02:30, winter time, end at 03:00 and 03:30 summer time).
    assert by_hour[first_2h] == pytest.approx(1.05)
    assert by_hour[first_2h + 3_600_000] == pytest.approx(1.05)
    index = _index(influx, LINKY)
    assert min(index.values()) == 0.0
    assert max(index.values()) == pytest.approx(123.5)
    assert len(index) == 267

    # 2. Importing it again changes nothing, anywhere.
    before = _everything(influx)
    again = _run(runner, "enedis", CASES / "enedis" / "load-curve-autumn.csv")
    assert again == out
    assert _everything(influx) == before

    # 3. An overlapping file, written by the simulator's writer: Oct 27 again (same values) and Oct 28.
    overlap = tmp_path / "overlap.csv"
    start = datetime(2026, 10, 27, tzinfo=PARIS).astimezone(UTC)
    rows = [(start + timedelta(minutes=30 * (k + 1)), 30, 1500.0 if k < 48 else 700.0) for k in range(96)]
    write_enedis_load_curve(overlap, "12345678901234", rows)
    out = _run(runner, "enedis", overlap)
    assert "index 87.500 -> 140.300 kWh" in out
    after = _index(influx, LINKY)
    assert {t: v for t, v in after.items() if t in index} == pytest.approx(index)
    assert max(after.values()) == pytest.approx(123.5 + 16.8)
    assert (_daily(influx, LINKY))[_local_day(2026, 10, 28)] == pytest.approx(16.8)

    # 4. An older file last: the later data are re-anchored, their consumption kept; the spring day has 23 hours.
    # Its PRM 99999999999999 row is an error (exit 2) once the rest is imported.
    result = runner.invoke(app, ["import", "enedis", str(CASES / "enedis" / "load-curve-spring.csv"),
                                 "--inventory", str(INVENTORY)])
    assert result.exit_code == 2, result.output
    out = result.output
    # The README shows this very output (paths and server aside).
    shown = out.replace(f"{CASES / 'enedis'}/", "")
    shown = shown.replace(f"{influxdb_server.url} ({unique_name})", "http://127.0.0.1:8086 (econome)")
    assert shown == _readme_sample()
    assert "142 intervals, 58.800 kWh" in out
    assert "gaps: 1\n    2026-03-30 00:00 -> 2026-03-31 00:00" in out
    assert "later readings re-anchored by +58.800 kWh" in out
    assert "load-curve-spring.csv:15: rejected: PRM '99999999999999' is no enedis point of the inventory" in out
    shifted = _index(influx, LINKY)
    assert {t: v - 58.8 for t, v in shifted.items() if t in after} == pytest.approx(after)
    daily = _daily(influx, LINKY)
    assert daily[_local_day(2026, 3, 29)] == pytest.approx(27.6)
    # The missing day is no measured zero: no reading inside it, the interval across it is the processor's
    # counter gap, spread and flagged estimated, as a live counter's gap is.
    day = _local_day(2026, 3, 30)
    assert not [t for t in shifted if day < t < day + 86_400_000]
    [[_, kwh, estimated]] = _rows(influx, f"SELECT \"sum\", estimated FROM agg_point WHERE point = '{LINKY}' "  # noqa: S608
                                          f"AND \"window\" = '1d' AND time = {day}ms")
    assert kwh == estimated > 0
    assert daily[_local_day(2026, 10, 25)] == pytest.approx(25.1)
    assert len(_sums(influx, LINKY, "1h", _local_day(2026, 3, 29), _local_day(2026, 3, 30))) == 23
    # The missing day shows in the building dashboard's "Complétude des données" panel, run as Grafana would.
    assert _completeness(influx, day + 1, day + 86_400_000 - 1) == {LINKY: 0.0}  # the day after its 00:00 reading
    assert _completeness(influx, _local_day(2026, 3, 29), day - 1) == {LINKY: 100.0}
    before_day = _rows(influx, f"SELECT missing, age_s FROM point_status WHERE point = '{LINKY}' "  # noqa: S608
                               f"AND time >= {day - 300_000}ms AND time <= {day + 600_000}ms")
    # Every 5 minutes: 25 minutes after the 23:30 reading, the 00:00 reading that ends Mar 29, then the gap.
    assert [row[1:] for row in before_day] == [[0, 1500], [0, 0], [1, 300], [1, 600]]

    # 5. The Gazpar of the same building: its gas days add to the building's total, the Linky's share stays.
    # Several files in one command; one that names no PCE of the inventory is reported, the others imported.
    stray = tmp_path / "stray.csv"
    stray.write_text("N° PCE;Date de relevé;Volume consommé (m3)\n11111111111111;01/10/2026;3\n", encoding="utf-8")
    files = [str(CASES / "grdf" / "daily.csv"), str(stray), str(CASES / "grdf" / "adict.csv")]
    result = runner.invoke(app, ["import", "grdf", *files, "--inventory", str(INVENTORY)])
    assert result.exit_code == 2, result.output
    out = result.output
    assert f"error: {stray}: PCE '11111111111111' is not the PCE of any grdf point" in out
    assert "bibliotheque-gazpar (PCE GI123456): 2026-03-28 06:00 -> 2026-03-31 06:00 (Europe/Paris), 3 intervals, 336.000 kWh" \
        in out
    assert "salle-fetes-gazpar (PCE 21987654321098)" in out
    # The file's published kWh (61.5 m3 at its 11.22 kWh/m3) beside the inventory constant's: 0.2 % apart.
    assert "6 intervals, 61.500 m3 (690.030 kWh published by the file; 688.800 kWh at the inventory's 11.2 kWh/m3)" \
        in out
    assert "warning:" not in out
    assert "2026-10-26 06:00 -> 2026-10-27 06:00" in out
    gas = _daily(influx, "salle-fetes-gazpar")
    assert sum(gas.values()) == pytest.approx(61.5)
    day = _local_day(2026, 10, 26)
    statement = f"SELECT kwh FROM agg_building WHERE building = 'salle-fetes' AND \"window\" = '1d' AND time = {day}ms"  # noqa: S608
    building = _rows(influx, statement)
    assert building[0][1] == pytest.approx(14.4 + 11.2 * gas[_local_day(2026, 10, 26)])


def _completeness(config: InfluxConfig, start_ms: int, end_ms: int) -> dict[str, float]:
    """The building dashboard's data-completeness panel over ``[start_ms, end_ms]``: Complétude % per point."""
    (dashboard,) = [d for d in generate_dashboards(load_inventory(INVENTORY)) if d.uid == "test-bat-salle-fetes"]
    (query,) = [r.query for r in iter_queries(dashboard) if "Complétude des données" in r.where]
    statement = interpolate(query, start=datetime.fromtimestamp(start_ms / 1000, UTC),
                            end=datetime.fromtimestamp(end_ms / 1000, UTC), interval=timedelta(minutes=1),
                            variables={"building": "salle-fetes"})
    (series,) = _series(config, [statement])
    return {s["tags"]["point"]: s["values"][0][1] for s in series}


def test_a_gas_volume_gazpar_warns_when_grdf_kwh_differ_from_the_constant(
    influxdb_server, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECONOME_INFLUX_URL", influxdb_server.url)
    monkeypatch.setenv("ECONOME_INFLUX_DATABASE", unique_name)
    monkeypatch.setenv("ECONOME_DATA_DIR", str(tmp_path / "var"))
    gas = tmp_path / "gaz.csv"
    write_grdf_daily(gas, "21987654321098", [(date(2026, 11, d), 10.0, 10.5) for d in range(2, 6)])
    result = CliRunner().invoke(app, ["import", "grdf", str(gas), "--inventory", str(INVENTORY)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "4 intervals, 40.000 m3 (420.000 kWh published by the file; 448.000 kWh at the inventory's 11.2 kWh/m3)" in out
    assert ("warning: " f"{gas}: salle-fetes-gazpar: the inventory's 11.2 kWh/m3 gives 448.000 kWh, +6.7% from the "
            "420.000 kWh the file publishes") in out
    assert ("{id: salle-fetes-gazpar, quantity: heat_energy, unit: kWh, usage: heating, cumulative: true, "
            "energy: natural_gas, grdf: {pce: '21987654321098'}}") in out
    # The snippet loads, and that point imports GRDF's kWh.
    text = INVENTORY.read_text(encoding="utf-8").replace(
        "      quantity: gas_volume\n      unit: m3\n      usage: heating\n      cumulative: true\n"
        "      energy: natural_gas\n      conversion_kwh_per_unit: 11.2\n",
        "      quantity: heat_energy\n      unit: kWh\n      usage: heating\n      cumulative: true\n"
        "      energy: natural_gas\n")
    assert "quantity: heat_energy\n      unit: kWh\n      usage: heating\n      cumulative: true\n      energy: natural_gas\n" \
           "      grdf: {pce: '21987654321098'}" in text
    kwh_inventory = tmp_path / "inventory.yaml"
    kwh_inventory.write_text(text, encoding="utf-8")
    monkeypatch.setenv("ECONOME_INFLUX_DATABASE", f"{unique_name}_kwh")
    result = CliRunner().invoke(app, ["import", "grdf", str(gas), "--inventory", str(kwh_inventory)])
    assert result.exit_code == 0, result.output
    assert "4 intervals, 420.000 kWh\n" in result.output
    assert "warning:" not in result.output


def test_an_unknown_prm_names_the_file_and_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECONOME_DATA_DIR", str(tmp_path))
    stray = tmp_path / "other.csv"
    write_enedis_load_curve(stray, "99999999999999", [(datetime(2026, 1, 5, 8, tzinfo=UTC), 30, 100.0)])
    result = CliRunner().invoke(app, ["import", "enedis", str(stray), "--inventory", str(INVENTORY)])
    assert result.exit_code == 2
    assert f"{stray}: PRM '99999999999999' is not the PRM of any enedis point of the inventory" in result.output


def test_influxdb_down_exits_4(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECONOME_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ECONOME_INFLUX_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ECONOME_INFLUX_TIMEOUT", "1s")
    result = CliRunner().invoke(app, ["import", "grdf", str(CASES / "grdf" / "daily.csv"), "--inventory", str(INVENTORY)])
    assert result.exit_code == 4, result.output
    assert "127.0.0.1:9" in result.output


class _WritesFail(BaseHTTPRequestHandler):
    """A proxy to InfluxDB that answers 503 to every write while ``failing``: InfluxDB going down mid-import."""

    target = ""
    failing = True

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        if self.path.startswith("/write") and type(self).failing:
            self.send_response(503)
            self.end_headers()
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        response = httpx.request(self.command, type(self).target + self.path, content=body, headers=headers, timeout=10)
        self.send_response(response.status_code)
        for key, value in response.headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.content)))
        self.end_headers()
        self.wfile.write(response.content)

    do_GET = do_POST = _forward

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def test_influxdb_down_mid_import_loses_nothing(
    influxdb_server, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = type("Handler", (_WritesFail,), {"target": influxdb_server.url, "failing": True})
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=proxy.serve_forever, name="influx-proxy", daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("ECONOME_INFLUX_URL", f"http://127.0.0.1:{proxy.server_address[1]}")
        monkeypatch.setenv("ECONOME_INFLUX_DATABASE", unique_name)
        monkeypatch.setenv("ECONOME_DATA_DIR", str(tmp_path / "var"))
        influx = InfluxConfig(url=influxdb_server.url, database=unique_name)
        files = [str(CASES / "grdf" / "daily.csv"), str(CASES / "grdf" / "adict.csv")]
        result = CliRunner().invoke(app, ["import", "grdf", *files, "--inventory", str(INVENTORY)])
        assert result.exit_code == 4, result.output
        assert "bibliotheque-gazpar" not in result.output  # the command stopped at the first file
        assert f"rows wait in {tmp_path / 'var' / 'imports.sqlite'}: the next `econome import` writes them" in result.output
        assert _index(influx, "salle-fetes-gazpar") == {}
        handler.failing = False  # InfluxDB is back: the next import, of another file, writes the first one's too
        _run(CliRunner(), "grdf", CASES / "grdf" / "adict.csv")
        assert max(_index(influx, "salle-fetes-gazpar").values()) == pytest.approx(61.5)
        assert max(_index(influx, "bibliotheque-gazpar").values()) == pytest.approx(336.0)
        assert sum(_daily(influx, "salle-fetes-gazpar").values()) == pytest.approx(61.5)
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join()


def test_a_file_without_a_usable_row_exits_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECONOME_DATA_DIR", str(tmp_path))
    negative = tmp_path / "negative.csv"
    write_enedis_load_curve(negative, "12345678901234", [(datetime(2026, 1, 5, 8, tzinfo=UTC), 30, -100.0)])
    result = CliRunner().invoke(app, ["import", "enedis", str(negative), "--inventory", str(INVENTORY)])
    assert result.exit_code == 3
    assert f"{negative}:2: rejected: negative value -100 W" in result.output
    assert f"error: {negative}: no usable row" in result.output


async def test_a_two_month_interval_is_spread_over_its_days(influxdb_server, unique_name: str, tmp_path: Path) -> None:
    """An invoice of 61 days: longer than the processor spreads (31 days), yet every day gets its share."""
    from inventory import load_inventory
    from streams.imports import Consumption, deliver_consumption

    inventory = load_inventory(INVENTORY)
    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    start, end = datetime(2025, 11, 1, tzinfo=PARIS), datetime(2026, 1, 1, tzinfo=PARIS)
    report = await deliver_consumption(inventory, config, "bibliotheque-gazpar", [Consumption(start, end, 6100.0)],
                                       data_dir=tmp_path, source="invoice")
    assert (report.intervals, report.waiting) == (1, 0)
    client = InfluxQLClient(config)
    try:
        series = await client.query("SELECT \"sum\" FROM agg_point WHERE \"window\" = '1d'")
    finally:
        await client.close()
    days = [row[1] for row in series[0]["values"]]
    assert len(days) == 61
    assert sum(days) == pytest.approx(6100.0)
    assert days == pytest.approx([100.0] * 61, rel=0.05)  # 100 kWh a day, pro rata of the hours (DST aside)


async def test_intervals_after_the_fetch_s_clock_are_logged_and_not_written(
    influxdb_server, unique_name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """The daily fetch delivers with its own clock as now: what ends past it is named in the log, not written."""
    import logging

    from inventory import load_inventory
    from streams.imports import Consumption, deliver_consumption

    inventory = load_inventory(INVENTORY)
    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    day = datetime(2026, 1, 5, tzinfo=PARIS)
    days = [Consumption(day + timedelta(days=k), day + timedelta(days=k + 1), 10.0) for k in range(3)]
    with caplog.at_level(logging.WARNING, logger="streams.imports"):
        report = await deliver_consumption(inventory, config, LINKY, days, data_dir=tmp_path, source="enedis-api",
                                           status=False, now=day + timedelta(days=2, hours=6))
    assert (report.intervals, report.in_future, report.future_from) == (2, 1, days[2].start)
    assert f"enedis-api: point {LINKY}: 1 intervals end after now" in caplog.text
    client = InfluxQLClient(config)
    try:
        series = await client.query(f"SELECT last(\"value\") FROM reading WHERE point = '{LINKY}'")  # noqa: S608
    finally:
        await client.close()
    assert series[0]["values"][0][0] == to_ms(days[1].end)  # the last reading: the second day's end


async def test_a_finer_file_inside_a_coarser_interval_keeps_the_indexes(
    influxdb_server, unique_name: str, tmp_path: Path
) -> None:
    """A 30-minute file starting half-way through a 60-minute interval InfluxDB holds: same indexes, no shift."""
    from inventory import load_inventory
    from streams.imports import Consumption, deliver_consumption

    inventory = load_inventory(INVENTORY)
    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    t0 = datetime(2026, 1, 5, 8, tzinfo=PARIS)
    hours = [Consumption(t0 + timedelta(hours=k), t0 + timedelta(hours=k + 1), 2.0) for k in range(4)]
    await deliver_consumption(inventory, config, LINKY, hours, data_dir=tmp_path, source="hourly")
    before = await asyncio.to_thread(_index, config, LINKY)
    halves = [Consumption(t0 + timedelta(minutes=90 + 30 * k), t0 + timedelta(minutes=120 + 30 * k), 1.0) for k in range(3)]
    report = await deliver_consumption(inventory, config, LINKY, halves, data_dir=tmp_path, source="half-hourly")
    assert report.anchor == pytest.approx(3.0)  # 08:00 + 1 h 30 at 2 kWh an hour
    assert report.shifted == 0
    after = await asyncio.to_thread(_index, config, LINKY)
    assert {t: after[t] for t in before} == pytest.approx(before)
    assert after[int((t0 + timedelta(minutes=150)).timestamp() * 1000)] == pytest.approx(5.0)
    assert sum((await asyncio.to_thread(_daily, config, LINKY)).values()) == pytest.approx(8.0)
    # The same consumption in half hours over hours: equal but for float rounding (8e-15 kWh after 23 hours),
    # which moves no later reading and changes no stored one, to the last bit.
    t1, point = datetime(2026, 1, 6, tzinfo=PARIS), "bibliotheque-gazpar"  # a point with no reading yet
    hours = [Consumption(t1 + timedelta(hours=k), t1 + timedelta(hours=k + 1), 0.3) for k in range(24)]
    await deliver_consumption(inventory, config, point, hours, data_dir=tmp_path, source="hourly")
    before = await asyncio.to_thread(_index, config, point)
    halves = [Consumption(t1 + timedelta(minutes=30 * k), t1 + timedelta(minutes=30 * (k + 1)), 0.15) for k in range(46)]
    report = await deliver_consumption(inventory, config, point, halves, data_dir=tmp_path, source="half-hourly")
    assert report.shifted == 0
    after = await asyncio.to_thread(_index, config, point)
    assert {t: after[t] for t in before} == before


def test_a_file_with_a_missing_day_leaves_that_days_data_alone(
    influxdb_server, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECONOME_INFLUX_URL", influxdb_server.url)
    monkeypatch.setenv("ECONOME_INFLUX_DATABASE", unique_name)
    monkeypatch.setenv("ECONOME_DATA_DIR", str(tmp_path / "var"))
    influx = InfluxConfig(url=influxdb_server.url, database=unique_name)
    runner = CliRunner()
    start = datetime(2026, 1, 5, tzinfo=PARIS).astimezone(UTC)
    # Three days at 30 minutes, the middle one at 2000 W; re-downloaded later without it.
    rows = [(start + timedelta(minutes=30 * (k + 1)), 30, 2000.0 if 48 <= k < 96 else 1000.0 + k) for k in range(144)]
    full, holed = tmp_path / "full.csv", tmp_path / "holed.csv"
    write_enedis_load_curve(full, "12345678901234", rows)
    write_enedis_load_curve(holed, "12345678901234", rows[:48] + rows[96:])
    _run(runner, "enedis", full)
    before = _everything(influx)
    out = _run(runner, "enedis", holed)
    assert "gaps: 1\n    2026-01-06 00:00 -> 2026-01-07 00:00" in out
    assert _everything(influx) == before  # Jan 6's readings and aggregates untouched, Jan 7 continues from them
    # The full file again changes nothing either.
    again = _run(runner, "enedis", full)
    assert "later readings re-anchored" not in again
    assert _everything(influx) == before
    # A broken value is rejected by line; one file failing unexpectedly is named, without a traceback.
    broken = tmp_path / "broken.csv"
    broken.write_text(full.read_text(encoding="utf-8").replace(";2000;", ";1e306;", 1), encoding="utf-8")
    result = runner.invoke(app, ["import", "enedis", str(broken), "--inventory", str(INVENTORY)])
    assert result.exit_code == 0, result.output
    assert "broken.csv:50: rejected: 1e+306 W is not a plausible average power (above 100 MW)" in result.output
    # A PCE a spreadsheet rounded: the error says so and suggests --point, which imports the file.
    excel = tmp_path / "excel.csv"
    write_grdf_daily(excel, "2,19877E+13", [(date(2026, 1, 5), 3.0, 11.2), (date(2026, 1, 6), 4.0, 11.2)])
    result = runner.invoke(app, ["import", "grdf", str(excel), "--inventory", str(INVENTORY)])
    assert result.exit_code == 2, result.output
    assert "PCE '2,19877E+13' is a number in scientific notation" in result.output
    result = runner.invoke(app, ["import", "grdf", str(excel), "--inventory", str(INVENTORY), "--point", "salle-fetes-gazpar"])
    assert result.exit_code == 0, result.output
    assert "salle-fetes-gazpar (PCE 21987654321098): 2026-01-05 06:00 -> 2026-01-07 06:00 (Europe/Paris), 2 intervals, 7.000 m3" \
        in result.output
    # Two rows whose year was typed 2062: the file's other rows are imported, those are named, not written.
    future = tmp_path / "future.csv"
    later = datetime(2062, 1, 5, tzinfo=PARIS).astimezone(UTC)
    typed = [(later, 30, 1000.0), (later + timedelta(minutes=30), 30, 1000.0)]
    write_enedis_load_curve(future, "12345678901234", [*rows[:4], *typed])
    result = runner.invoke(app, ["import", "enedis", str(future), "--inventory", str(INVENTORY)])
    assert result.exit_code == 3, result.output
    named = rf"{LINKY}: 2 intervals from 2062-01-04 23:30 end after now \(lines \d+, \d+\): not imported"
    assert re.search(named, result.output), result.output
    assert _index(influx, LINKY)
    assert max(_index(influx, LINKY)) < int(datetime(2030, 1, 1, tzinfo=UTC).timestamp() * 1000)
    unreadable = tmp_path / "dir.csv"
    unreadable.mkdir()
    result = runner.invoke(app, ["import", "enedis", str(unreadable), "--inventory", str(INVENTORY)])
    assert result.exit_code in (2, 3), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert str(unreadable) in result.output


def test_lines_influxdb_refuses_are_not_called_written(
    influxdb_server, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECONOME_INFLUX_URL", influxdb_server.url)
    monkeypatch.setenv("ECONOME_INFLUX_DATABASE", unique_name)
    monkeypatch.setenv("ECONOME_DATA_DIR", str(tmp_path / "var"))
    # An integer `value` stored first in the shard: InfluxDB refuses the float readings (field type conflict).
    start = datetime(2026, 1, 5, tzinfo=PARIS).astimezone(UTC)
    httpx.post(f"{influxdb_server.url}/query", params={"q": f'CREATE DATABASE "{unique_name}"'}, timeout=10).raise_for_status()
    line = f"reading,point={LINKY} value=1i {int(start.timestamp() * 1000) - 60_000}"
    httpx.post(f"{influxdb_server.url}/write", params={"db": unique_name, "precision": "ms"}, content=line,
               timeout=10).raise_for_status()
    path = tmp_path / "day.csv"
    write_enedis_load_curve(path, "12345678901234", [(start + timedelta(minutes=30 * (k + 1)), 30, 1000.0) for k in range(4)])
    result = CliRunner().invoke(app, ["import", "enedis", str(path), "--inventory", str(INVENTORY)])
    assert result.exit_code == 4, result.output
    assert "aggregates written to" not in result.output
    assert re.search(rf"error: {re.escape(str(path))}: {LINKY}: InfluxDB refused [1-9]\d* lines \(.*field type conflict.*\); "
                     "they are in the dead letters of ", result.output), result.output
