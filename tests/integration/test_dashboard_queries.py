"""Every query of every generated dashboard, run against a real InfluxDB 1.6.7 holding an hour of demo data.

The demo (``econome demo``, 20 s at x180: one simulated hour) writes the
database ``econome_demo``. Each panel query, template-variable query and
annotation query is interpolated as Grafana would (``$timeFilter`` over the
demo hour from the top of its first hour, ``$__interval`` at the datasource's minimum of 1 min, ``$building``
from the variable's own query, ``$period`` at its default, ``$reception`` in
the middle of the demo hour as a user would type it) and must return at
least one series. The demo seeds a simulated week before its hour (the live
detector's bootstrap), injects a water leak (library) and heating left on at
night (town hall), and its live detection writes the events, so the anomaly
panels have data too; the range opens at the first anomaly, in the nights
before the demo hour. The anomaly queries of the healthy buildings' dashboards
(the same generated queries) must run without error and may be empty, as may every query of
the two buildings read only through Enedis and GRDF (their data come a day late or more).
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboards.grafana import Dashboard, QueryRef, generate_dashboards, interpolate, iter_queries
from inventory import load_inventory

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "econome_demo"
INTERVAL = timedelta(minutes=1)  # the datasource's timeInterval: Grafana never goes below it

DASHBOARDS: list[Dashboard] = generate_dashboards(load_inventory(ROOT / "examples" / "commune.yaml"))
# The demo writes no expected values (its history is too short for a model): the panels on the
# "expected" measurement are run against values written for them in test_expected_influx.py.
QUERIES: list[QueryRef] = [ref for d in DASHBOARDS for ref in iter_queries(d) if 'FROM "expected"' not in ref.query]
_BY_UID = {d.uid: d for d in DASHBOARDS}
UTILITY_ONLY = frozenset(
    b.id for _, b in load_inventory(ROOT / "examples" / "commune.yaml").buildings() if all(p.is_utility for p in b.points)
)
"""Buildings with only a Linky and a Gazpar: their data are imported a day late, never in the demo's live hour."""
_FROM = re.compile(r'FROM\s+"(\w+)"')


@dataclass(frozen=True)
class DemoData:
    url: str
    start: datetime
    end: datetime
    measurements: frozenset[str]
    buildings: tuple[str, ...]
    readings_start: datetime
    """Top of the hour of the first live reading: where the demo hour's aggregates start."""
    flagged: frozenset[str]
    """Buildings with anomaly events (the demo's faulty ones)."""


def _query(url: str, statement: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/query", params={"db": DATABASE, "q": statement, "epoch": "ms"}, timeout=30)
    response.raise_for_status()
    result: dict[str, Any] = response.json()["results"][0]
    return result


def _measurements(url: str) -> set[str]:
    return {row[0] for row in _values(url, "SHOW MEASUREMENTS")}


def _values(url: str, statement: str) -> list[list[Any]]:
    series = _query(url, statement).get("series", [])
    return [row for s in series for row in s["values"]]


@pytest.fixture(scope="module")
def demo(influxdb_server: Any, tmp_path_factory: pytest.TempPathFactory) -> DemoData:
    """One simulated hour of the demo commune in InfluxDB, run once for the module."""
    workdir = tmp_path_factory.mktemp("demo")
    command = [sys.executable, "-m", "econome.cli", "demo", "--duration", "20", "--speed", "180"]
    run = subprocess.run(
        [*command, "--influx-url", influxdb_server.url, "--workdir", str(workdir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, f"econome demo failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    url = influxdb_server.url
    # The live hour starts where the demo says (readings before it are the seeded history).
    started = re.search(r"simulated time starts (\S+) at", run.stdout)
    assert started, run.stdout[-3000:]
    live_start = int(datetime.fromisoformat(started[1]).timestamp())
    first = _values(url, f'SELECT first("value") FROM "reading" WHERE time >= {live_start}s')[0][0]  # noqa: S608
    last = _values(url, 'SELECT last("value") FROM "reading"')[0][0]
    measurements = frozenset(row[0] for row in _values(url, "SHOW MEASUREMENTS"))
    buildings = tuple(row[1] for row in _values(url, 'SHOW TAG VALUES FROM "reading" WITH KEY = "building"'))
    # The dashboard's time range starts at the top of the first hour: aggregates are stamped
    # at their window start, so the 1h window holding the first readings starts before them.
    start = datetime.fromtimestamp(first / 1000, UTC).replace(minute=0, second=0, microsecond=0)
    # The demo's water leaks were detected in the night before its hour: a person looking at
    # the morning would open the range from that night, where the anomalies start.
    anomalies = _values(url, 'SELECT first("score") FROM "anomaly"') if "anomaly" in _measurements(url) else []
    if anomalies:
        start = min(start, datetime.fromtimestamp(anomalies[0][0] / 1000, UTC))
    return DemoData(
        url=url,
        start=start,
        end=datetime.fromtimestamp(last / 1000, UTC),
        measurements=measurements,
        buildings=buildings,
        readings_start=datetime.fromtimestamp(first / 1000, UTC).replace(minute=0, second=0, microsecond=0),
        flagged=frozenset(row[1] for row in _values(url, 'SHOW TAG VALUES FROM "anomaly" WITH KEY = "building"')),
    )


def _variables(dashboard: Dashboard, demo: DemoData) -> dict[str, str | list[str]]:
    """Values Grafana would give the dashboard's variables when it opens on the demo hour."""
    out: dict[str, str | list[str]] = {}
    for var in dashboard.model["templating"]["list"]:
        name = var["name"]
        if var["type"] == "query":
            # includeAll with the default "All": every value the variable's own query returns.
            out[name] = list(demo.buildings)
        elif var["type"] == "constant":
            out[name] = var["query"]
        elif var["type"] == "custom" and var["current"]["value"] == ["$__all"]:
            out[name] = [o["value"] for o in var["options"] if o["value"] != "$__all"]
        elif var["type"] == "custom":
            out[name] = var["current"]["value"]
        elif var["type"] == "textbox" and name == "reception":
            # The works are placed in the middle of the demo hour so both sides hold data.
            middle = demo.readings_start + (demo.end - demo.readings_start) / 2
            out[name] = middle.strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            out[name] = var["query"]
    return out


def test_demo_holds_raw_readings_and_status(demo: DemoData) -> None:
    assert {"reading", "point_status", "agg_point", "agg_usage", "agg_building", "anomaly"} <= demo.measurements
    assert demo.flagged == {"mairie", "bibliotheque"}
    assert demo.end - demo.start >= timedelta(minutes=50)
    assert len(demo.buildings) == 14  # the Linky/Gazpar buildings have their seeded week, not the live hour


def test_every_dashboard_has_queries() -> None:
    assert len(DASHBOARDS) == 16
    assert {ref.dashboard_uid for ref in QUERIES} == set(_BY_UID)


@pytest.mark.parametrize("ref", QUERIES, ids=[f"{r.dashboard_uid}:{r.where}" for r in QUERIES])
def test_query_returns_data(ref: QueryRef, demo: DemoData) -> None:
    dashboard = _BY_UID[ref.dashboard_uid]
    statement = interpolate(ref.query, start=demo.start, end=demo.end, interval=INTERVAL, variables=_variables(dashboard, demo))
    assert not re.search(r"\$\w|\$\{", statement), f"variable left in {statement}"
    result = _query(demo.url, statement)
    assert "error" not in result, f"{ref.where}: InfluxDB refused {statement!r}: {result.get('error')}"
    if result.get("series"):
        return
    healthy = [b for b in demo.buildings if b not in demo.flagged and f"\"building\" = '{b}'" in statement]
    if 'FROM "anomaly"' in statement and healthy:
        return  # a healthy building's anomaly panel: empty is right; the faulty buildings' run the same query
    if any(f"\"building\" = '{b}'" in statement for b in UTILITY_ONLY):
        return  # read through Enedis and GRDF only, a day late or more: nothing yet in the live hour
    missing = sorted(set(_FROM.findall(statement)) - demo.measurements)
    where = f"{ref.dashboard_uid} {ref.where}"
    detail = f"missing measurements {missing}" if missing else "measurements present but no series in the demo hour"
    pytest.fail(f"{where} returned no series ({detail}):\n{statement}")
