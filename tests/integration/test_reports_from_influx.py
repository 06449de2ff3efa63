"""Issue 13, must show: reports from collected data.

A simulated period of two buildings (the town hall, with the weather station,
and the renovated Curie school) is collected through the pipeline
(:class:`streams.pipeline.Pipeline` with its stream processor, a push source
emitting the simulator's readings as meters give them, on an accelerated
clock) into a real InfluxDB 1.6. Then ``econome mv``, ``econome report
building`` and ``econome report renovation`` run three ways: from InfluxDB
(``--from-influx``), from the CSV ``econome export`` wrote out of InfluxDB,
and from the CSV ``econome simulate`` wrote. Their figures agree within
rounding (the simulator's CSV keeps 5 decimals). The portfolio report, the
OPERAT export and ``econome detect`` (which sees a meter left silent for two
days) give the same from InfluxDB as from its export.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from econome.cli import app
from econome.localservers import free_port
from inventory import Inventory, load_inventory
from streams.aggregate import StreamProcessor, StreamSettings
from streams.buffer import DeliveryLog
from streams.clock import ManualClock
from streams.deadletter import DeadLetterStore
from streams.history import read_readings_csv
from streams.influx import InfluxConfig, InfluxV1Writer
from streams.pipeline import Ack, Pipeline
from streams.record import Reading
from streams.windows import WindowSize

ROOT = Path(__file__).resolve().parents[2]
BUILDINGS = ("mairie", "ecole-curie")
POINTS = ("mairie-elec-energy", "mairie-gas-volume", "station-meteo-temperature", "ecole-curie-gas-volume")
START, END = "2023-08-30", "2024-11-03"  # a year before the school's works (2024-09-01) and two months after
STEP = timedelta(hours=1)
SILENT = ("mairie-elec-energy", datetime(2024, 9, 10, tzinfo=UTC), datetime(2024, 9, 12, 6, tzinfo=UTC))
"""A meter silent for two days (a gateway down) while collected: ``econome detect`` must see it from InfluxDB."""
FEW_WINDOWS = StreamSettings(sizes=(WindowSize.HOUR, WindowSize.DAY))
"""The processor's 10-minute windows left out: for hourly readings they are most of the time spent, and no report reads them."""


def _two_buildings(path: Path) -> Path:
    """The example commune cut down to the town hall and the Curie school, and to ``POINTS``."""
    raw = yaml.safe_load((ROOT / "examples" / "commune.yaml").read_text(encoding="utf-8"))
    sites = []
    for site in raw["sites"]:
        kept = [{**b, "points": [p for p in b["points"] if p["id"] in POINTS]} for b in site["buildings"] if b["id"] in BUILDINGS]
        if kept:
            sites.append({**site, "buildings": kept})
    raw["sites"] = sites
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _silent(point: str, t: float) -> bool:
    return point == SILENT[0] and SILENT[1].timestamp() <= t < SILENT[2].timestamp()


class ReplayedMeters:
    """A push source: the simulated readings of ``POINTS`` but ``SILENT``, three simulated days per emit, the clock following."""

    name = "replayed-meters"

    def __init__(self, inv: Inventory, simulated: Path, clock: ManualClock) -> None:
        units = {p.id: p.unit for _, p in inv.points()}
        series = read_readings_csv(simulated)
        self.readings = sorted(
            (Reading(pid, datetime.fromtimestamp(t, UTC), v, units[pid])
             for pid in POINTS for t, v in zip(series[pid].times_s.tolist(), series[pid].values.tolist(), strict=True)
             if not _silent(pid, t)),
            key=lambda r: r.ts,
        )
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    async def start(self, emit: Callable[[list[Reading], Ack | None], None]) -> None:
        self._task = asyncio.create_task(self._replay(emit), name="replay")

    async def _replay(self, emit: Callable[[list[Reading], Ack | None], None]) -> None:
        batch_span = timedelta(days=3)  # well within the validator's max_age (7 days) of the clock
        i = 0
        while i < len(self.readings):
            until = self.readings[i].ts + batch_span
            batch = []
            while i < len(self.readings) and self.readings[i].ts < until:
                batch.append(self.readings[i])
                i += 1
            self.clock.advance(batch[-1].ts + STEP - self.clock.now())  # the clock a meter's reading is read at
            emit(batch, None)
            await asyncio.sleep(0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def _collect(inv: Inventory, simulated: Path, config: InfluxConfig, data_dir: Path) -> int:
    """Run the pipeline until every replayed reading is written to InfluxDB; how many were."""
    clock = ManualClock(datetime.fromisoformat(START).replace(tzinfo=UTC) - timedelta(days=1))
    source = ReplayedMeters(inv, simulated, clock)
    writer = InfluxV1Writer(config)
    await writer.ensure_database()
    log = DeliveryLog(data_dir / "delivery.sqlite")
    pipeline = Pipeline(inv, writer, clock, DeadLetterStore(), log, processor=StreamProcessor(inv, FEW_WINDOWS),
                        flush_interval=timedelta(milliseconds=50))
    task = asyncio.create_task(pipeline.run([], [source]), name="pipeline")
    deadline = time.monotonic() + 60
    try:
        while sum(pipeline.stats.per_point.values()) < len(source.readings) and time.monotonic() < deadline \
                and not task.done():
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await writer.close()
        log.close()
    assert pipeline.stats.rejected == 0
    assert pipeline.stats.aggregates > 0  # the stream processor ran too
    return sum(pipeline.stats.per_point.values())


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _numbers(html: str) -> list[float]:
    """The figures of a report, in order."""
    text = re.sub(r"<[^>]+>", " ", html).replace("\u202f", "").replace("\xa0", "")
    return [float(n.replace(",", ".")) for n in re.findall(r"-?\d+(?:,\d+)?", text)]


def test_mv_and_reports_from_influxdb_equal_those_from_csv(
    influxdb_server: Any, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _two_buildings(tmp_path / "two.yaml")
    inv = load_inventory(config)
    influx = InfluxConfig(url=influxdb_server.url, database=unique_name)
    monkeypatch.setenv("ECONOME_INFLUX_URL", influxdb_server.url)
    monkeypatch.setenv("ECONOME_INFLUX_DATABASE", unique_name)
    monkeypatch.setenv("ECONOME_DATA_DIR", str(tmp_path / "data"))

    simulated, exported = tmp_path / "simulated.csv", tmp_path / "exported.csv"
    _run("simulate", "--config", str(config), "--out", str(simulated), "--start", START, "--end", END)
    collected = asyncio.run(_collect(inv, simulated, influx, tmp_path))
    out = _run("export", "--config", str(config), "--since", START, "--until", END, "--out", str(exported))
    assert f"wrote {collected} readings" in out

    # The export holds what was collected: the simulator's readings, counters as indexes.
    sim, back = read_readings_csv(simulated), read_readings_csv(exported)
    assert set(back) == set(POINTS)
    for point in POINTS:
        kept = [not _silent(point, t) for t in sim[point].times_s.tolist()]
        assert back[point].times_s.tolist() == sim[point].times_s[kept].tolist()
        assert back[point].values == pytest.approx(sim[point].values[kept], abs=1e-5)

    sources = {"influx": ["--from-influx"], "export": ["--readings", str(exported)], "simulate": ["--readings", str(simulated)]}
    common = ["--config", str(config)]

    savings = {
        name: json.loads(_run("mv", *src, *common, "--point", "ecole-curie-gas-volume", "--building", "ecole-curie",
                              "--baseline", "2023-09-01/2024-09-01", "--reporting", "2024-09-01/2024-11-01"))
        for name, src in sources.items()
    }
    assert savings["influx"]["significant"]
    assert savings["influx"]["savings_kwh"] > 0  # the works
    assert savings["influx"]["baseline_points"] == 366
    for name in ("export", "simulate"):
        for key in ("savings_kwh", "adjusted_baseline_kwh", "actual_kwh", "savings_uncertainty_kwh", "cvrmse", "nmbe"):
            assert savings[name][key] == pytest.approx(savings["influx"][key], rel=1e-6), (name, key)
        assert savings[name]["baseline_points"] == savings["influx"]["baseline_points"]
        assert savings[name]["model"] == savings["influx"]["model"]

    pages = {}
    for name, src in sources.items():
        page = tmp_path / f"month-{name}.html"
        _run("report", "building", *src, *common, "--building", "mairie", "--month", "2024-10", "--out", str(page))
        pages[name] = page.read_text(encoding="utf-8")
    assert "octobre 2024" in pages["influx"]
    figures = _numbers(pages["influx"])
    assert len(figures) > 20
    for name in ("export", "simulate"):
        assert _numbers(pages[name]) == pytest.approx(figures, abs=1), name

    # The portfolio report and the OPERAT export, from InfluxDB and from its export.
    yearly: dict[str, tuple[str, str]] = {}
    for name in ("influx", "export"):
        portfolio, operat = tmp_path / f"portfolio-{name}.html", tmp_path / f"operat-{name}.csv"
        _run("report", "portfolio", *sources[name], *common, "--year", "2024", "--out", str(portfolio))
        _run("report", "operat", *sources[name], *common, "--year", "2024", "--reference-year", "2023", "--allow-incomplete",
             "--out", str(operat))
        yearly[name] = portfolio.read_text(encoding="utf-8"), operat.read_text(encoding="utf-8-sig")
    assert _numbers(yearly["export"][0]) == pytest.approx(_numbers(yearly["influx"][0]), abs=1)
    assert yearly["export"][1] == yearly["influx"][1]
    assert ";ecole-curie;" in yearly["influx"][1]

    # detect: the same events from InfluxDB over a month as from that month's export.
    month = tmp_path / "month.csv"
    _run("export", "--config", str(config), "--since", "2024-09-01", "--until", "2024-10-01", "--out", str(month))
    events = {}
    for name, src in {"influx": ["--from-influx", "--since", "2024-09-01", "--until", "2024-10-01"],
                      "export": ["--readings", str(month)]}.items():
        _run("detect", "--inventory", str(config), *src, "--no-models", "--out", str(tmp_path / f"{name}.jsonl"))
        events[name] = (tmp_path / f"{name}.jsonl").read_text(encoding="utf-8")
    assert events["influx"] == events["export"]
    seen = [json.loads(line) for line in events["influx"].splitlines()]
    assert any(e["kind"] == "missing_data" and e["building"] == "mairie" for e in seen), seen
    # --building keeps that building's points and the weather station's.
    school = tmp_path / "school.csv"
    _run("export", "--config", str(config), "--since", "2024-09-01", "--until", "2024-10-01", "--building", "ecole-curie",
         "--out", str(school))
    assert set(read_readings_csv(school)) == {"ecole-curie-gas-volume", "station-meteo-temperature"}

    summaries = {}
    for name, src in sources.items():
        out = _run("report", "renovation", *src, *common, "--building", "ecole-curie",
                   "--reporting", "2024-09-01/2024-11-01", "--out", str(tmp_path / f"reno-{name}.html"))
        summaries[name] = json.loads(out.splitlines()[-1])
    assert summaries["influx"]["savings_kwh"] == pytest.approx(savings["influx"]["savings_kwh"], rel=0.05)
    for name in ("export", "simulate"):
        assert summaries[name]["savings_kwh"] == pytest.approx(summaries["influx"]["savings_kwh"], rel=1e-6)
        assert summaries[name]["savings_eur"] == pytest.approx(summaries["influx"]["savings_eur"], rel=1e-6)


async def _create(config: InfluxConfig) -> None:
    writer = InfluxV1Writer(config)
    try:
        await writer.ensure_database()
    finally:
        await writer.close()


def test_export_and_reading_influx_fail_clearly(
    influxdb_server: Any, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = str(ROOT / "examples" / "commune.yaml")
    monkeypatch.setenv("ECONOME_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ECONOME_INFLUX_DATABASE", unique_name)
    runner = CliRunner()

    # Nothing in the range: exit 3, saying so, and no file left behind.
    monkeypatch.setenv("ECONOME_INFLUX_URL", influxdb_server.url)
    asyncio.run(_create(InfluxConfig(url=influxdb_server.url, database=unique_name)))
    out = tmp_path / "x.csv"
    result = runner.invoke(app, ["export", "--config", config, "--since", "2025-01-01", "--until", "2025-02-01",
                                 "--out", str(out)])
    assert result.exit_code == 3, result.output
    assert "holds no reading" in result.output
    assert not out.exists()
    result = runner.invoke(app, ["report", "building", "--config", config, "--from-influx", "--building", "mairie",
                                 "--month", "2025-01", "--out", str(tmp_path / "m.html")])
    assert result.exit_code == 3, result.output
    assert "holds no reading of mairie-elec-energy" in result.output
    result = runner.invoke(app, ["detect", "--inventory", config, "--from-influx", "--since", "2025-01-01",
                                 "--out", str(tmp_path / "e.jsonl")])
    assert result.exit_code == 3, result.output
    assert "holds no reading of a point of the inventory between" in result.output

    result = runner.invoke(app, ["export", "--config", config, "--since", "2025-01-01", "--until", "2025-02-01",
                                 "--building", "nope", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "no building 'nope'" in result.output

    # A file that cannot be written: a bad option (exit 2), naming it, before reading InfluxDB.
    result = runner.invoke(app, ["export", "--config", config, "--since", "2025-01-01", "--until", "2025-02-01",
                                 "--out", str(tmp_path / "no-such-folder" / "x.csv")])
    assert result.exit_code == 2, result.output
    assert "does not exist" in result.output
    assert "no-such-folder" in result.output

    # InfluxDB unreachable: exit 4, as econome status.
    monkeypatch.setenv("ECONOME_INFLUX_URL", f"http://127.0.0.1:{free_port()}")
    result = runner.invoke(app, ["export", "--config", config, "--since", "2025-01-01", "--until", "2025-02-01",
                                 "--out", str(out)])
    assert result.exit_code == 4, result.output
    assert "127.0.0.1" in result.output
    assert not out.exists()
    result = runner.invoke(app, ["mv", "--config", config, "--from-influx", "--point", "mairie-gas-volume",
                                 "--baseline", "2024-01-01/2024-12-01", "--reporting", "2024-12-01/2025-01-01"])
    assert result.exit_code == 4, result.output
