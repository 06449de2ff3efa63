"""Golden files of the generated dashboards, and the rules every dashboard follows.

Regenerate the golden files after an intended change with::

    ECONOME_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/dashboards/test_grafana.py

then review the diff of tests/cases/dashboards/ before committing it.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import dashboards
from dashboards.grafana import (
    FOLDERS,
    Dashboard,
    DashboardConfig,
    building_dashboard,
    commissioning_dashboard,
    generate_dashboards,
    interpolate,
    iter_queries,
)
from dashboards.provisioning import ProvisioningConfig, dashboard_json, datasource_provisioning, write_provisioning
from inventory import Inventory, load_inventory

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "tests" / "cases" / "dashboards"
UPDATE = os.environ.get("ECONOME_UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="module")
def commune() -> Inventory:
    return load_inventory(ROOT / "examples" / "commune.yaml")


@pytest.fixture(scope="module")
def generated(commune: Inventory) -> list[Dashboard]:
    return generate_dashboards(commune)


def test_exported_members() -> None:
    assert dashboards.__all__ == sorted(dashboards.__all__)
    assert {"generate_dashboards", "write_provisioning", "iter_queries"} <= set(dashboards.__all__)


def test_golden_files(generated: list[Dashboard]) -> None:
    expected = {f"{d.uid}.json": dashboard_json(d) for d in generated}
    if UPDATE:
        for stale in GOLDEN.glob("*.json"):
            if stale.name not in expected:
                stale.unlink()
        for name, text in expected.items():
            (GOLDEN / name).write_text(text, encoding="utf-8")
    on_disk = sorted(p.name for p in GOLDEN.glob("*.json"))
    assert on_disk == sorted(expected), "golden files differ from the generated set: run with ECONOME_UPDATE_GOLDEN=1"
    for name, text in expected.items():
        golden = (GOLDEN / name).read_text(encoding="utf-8")
        assert text == golden, f"{name} differs from its golden file: review, then run with ECONOME_UPDATE_GOLDEN=1"


def test_one_overview_one_per_building_and_commissioning(commune: Inventory, generated: list[Dashboard]) -> None:
    buildings = [b for _, b in commune.buildings()]
    renovated = [b.id for b in buildings if b.renovations]
    uids = [d.uid for d in generated]
    assert uids[0] == "valmont-patrimoine"
    assert uids[1 : 1 + len(buildings)] == [building_dashboard(commune, b).uid for b in buildings]
    assert all(u.startswith("valmont-bat-") for u in uids[1 : 1 + len(buildings)])
    assert "valmont-bat-mairie" in uids
    assert uids[1 + len(buildings) :] == [f"valmont-travaux-{b}" for b in renovated]
    assert renovated == ["ecole-curie"]
    assert len(set(uids)) == len(uids)
    assert all(len(u) <= 40 for u in uids)
    assert {d.folder for d in generated} == {f.key for f in FOLDERS}


def test_uids_are_stable_and_fit_grafana(commune: Inventory) -> None:
    first = [d.model for d in generate_dashboards(commune)]
    again = [d.model for d in generate_dashboards(commune)]
    assert first == again
    long_id = commune.building("mairie").model_copy(update={"id": "hotel-de-ville-annexe-des-services-techniques"})
    uid = building_dashboard(commune, long_id).uid
    assert len(uid) == 40
    assert uid == building_dashboard(commune, long_id).uid
    assert uid.startswith("valmont-bat-hotel-de")


def test_panels_use_influxql_on_the_datasource_with_units(generated: list[Dashboard]) -> None:
    for dashboard in generated:
        model = dashboard.model
        assert model["uid"] == dashboard.uid
        assert model["timezone"] == "Europe/Paris"
        names = [v["name"] for v in model["templating"]["list"]]
        assert names[:2] == ["building", "period"], dashboard.uid
        ids = [p["id"] for p in model["panels"]]
        assert len(set(ids)) == len(ids)
        for panel in model["panels"]:
            if panel["type"] in ("row", "text"):
                continue
            assert panel["datasource"] == {"type": "influxdb", "uid": "valmont-influxdb"}
            if panel["type"] != "table":
                assert panel["fieldConfig"]["defaults"]["unit"], f"{dashboard.uid}: {panel['title']} has no unit"
            for target in panel["targets"]:
                assert target["rawQuery"] is True
                assert target["query"].startswith("SELECT ")
                assert "from(bucket" not in target["query"]  # no Flux: InfluxQL works on 1.x, 2.x (DBRP) and 3.x
                # Anomaly tables also keep anomalies started before the range and still open.
                in_range = "$timeFilter" in target["query"] or "${__to}" in target["query"]
                assert in_range, f"{dashboard.uid}: {panel['title']} ignores the time range"
        refs = list(iter_queries(dashboard))
        assert refs
        assert all(r.dashboard_uid == dashboard.uid for r in refs)


def test_labels_are_french_with_units(generated: list[Dashboard]) -> None:
    titles = [p["title"] for d in generated for p in d.model["panels"]]
    assert "Énergie par m² chauffé (kWh/m²)" in titles
    assert "Températures intérieures et consignes (°C)" in titles
    assert "Débit minimal nocturne (L/h)" in titles
    english = re.compile(r"\b(Energy|Temperature|Water|Building|Consumption)\b")
    assert not [t for t in titles if english.search(t)]


def test_building_dashboard_follows_the_inventory(commune: Inventory) -> None:
    mairie = building_dashboard(commune, commune.building("mairie")).model
    titles = [p["title"] for p in mairie["panels"]]
    assert "Qualité de l'air (CO₂, ppm)" not in titles  # the town hall has no CO2 sensor
    jaures = building_dashboard(commune, commune.building("ecole-jaures")).model
    assert "Qualité de l'air (CO₂, ppm)" in [p["title"] for p in jaures["panels"]]
    temps = next(p for p in mairie["panels"] if p["title"].startswith("Températures"))
    steps = [s["value"] for s in temps["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert steps == [None, 16.0, 19.0]  # the setpoints of the inventory, as dashed lines
    regions = [a for a in mairie["annotations"]["list"] if a.get("target", {}).get("queryType") == "timeRegions"]
    crons = sorted((a["target"]["timeRegion"]["cronExpr"], a["target"]["timeRegion"]["duration"]) for a in regions)
    # Mon-Fri 08:30-12:00 and 13:30-17:30, Saturday 09:00-12:00
    assert crons == [("0 9 * * 6", "180m"), ("30 13 * * 1,2,3,4,5", "240m"), ("30 8 * * 1,2,3,4,5", "210m")]
    assert all(a["target"]["timeRegion"]["timezone"] == "Europe/Paris" for a in regions)
    anomalies = [a for a in mairie["annotations"]["list"] if a["name"] == "Anomalies"]
    assert anomalies[0]["query"].startswith('SELECT "explanation"')


def test_commissioning_splits_at_the_works(commune: Inventory) -> None:
    curie = commissioning_dashboard(commune, commune.building("ecole-curie")).model
    reception = next(v for v in curie["templating"]["list"] if v["name"] == "reception")
    assert reception["type"] == "textbox"
    assert reception["query"] == "2024-09-01T00:00:00+02:00"
    queries = [t["query"] for p in curie["panels"] for t in p.get("targets", [])]
    assert sum("time < '$reception'" in q for q in queries) == sum("time >= '$reception'" in q for q in queries) > 0
    with pytest.raises(ValueError, match="mairie has no renovation"):
        commissioning_dashboard(commune, commune.building("mairie"))


def test_interpolate_as_grafana() -> None:
    t0 = datetime(2026, 1, 5, 8, tzinfo=UTC)
    common: dict[str, Any] = {"start": t0, "end": t0 + timedelta(hours=1), "interval": timedelta(minutes=1)}
    assert interpolate("$__interval ${period}", variables={"period": "1h"}, **common) == "1m 1h"
    assert interpolate("/^$b$/", variables={"b": ["a.b"]}, **common) == r"/^a\.b$/"
    assert interpolate("'$b'", variables={"b": "mairie"}, **common) == "'mairie'"
    with pytest.raises(KeyError):
        interpolate("$nope", variables={}, **common)


def test_config_is_frozen_and_strict() -> None:
    with pytest.raises(ValueError, match="extra"):
        DashboardConfig(colour="blue")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="pattern"):
        DashboardConfig(uid_prefix="Not A Slug")


def test_provisioning_tree(commune: Inventory, tmp_path: Path) -> None:
    stale = tmp_path / "json" / "valmont" / "batiments" / "valmont-bat-demolished.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    other = tmp_path / "json" / "autre-commune" / "batiments" / "autre-commune-bat-mairie.json"
    other.parent.mkdir(parents=True)
    other.write_text("{}")
    written = write_provisioning(commune, tmp_path)
    assert not stale.exists()
    assert other.exists()  # another commune's tree in the same folder is left alone
    # One per building, the portfolio, and the works follow-up of ecole-curie.
    assert len([p for p in written if p.suffix == ".json"]) == len(list(commune.buildings())) + 2
    providers = yaml.safe_load((tmp_path / "dashboards" / "valmont.yaml").read_text())
    assert providers["apiVersion"] == 1
    for provider in providers["providers"]:
        assert provider["type"] == "file"
        folder = provider["options"]["path"].removeprefix("/etc/grafana/provisioning/")
        assert list((tmp_path / folder).glob("*.json")), folder
    source = yaml.safe_load((tmp_path / "datasources" / "valmont.yaml").read_text())["datasources"][0]
    assert source["uid"] == "valmont-influxdb"
    assert source["name"] == "Econome InfluxDB — Commune de Valmont"
    assert source["jsonData"]["dbName"] == "econome"
    assert source["secureJsonData"]["httpHeaderValue1"] == "Token $__file{/run/secrets/influxdb_grafana_token}"
    tree = tmp_path / "json" / "valmont"
    model = json.loads((tree / "patrimoine" / "valmont-patrimoine.json").read_text())
    assert model["uid"] == "valmont-patrimoine"


def test_datasource_auth_modes() -> None:
    named = DashboardConfig(uid_prefix="valmont")
    basic = datasource_provisioning(ProvisioningConfig(auth="basic", dashboards=named))["datasources"][0]
    assert basic["user"] == "grafana"
    assert basic["secureJsonData"] == {"password": "$__env{GRAFANA_INFLUX_PASSWORD}"}
    none = datasource_provisioning(ProvisioningConfig(auth="none", dashboards=named))["datasources"][0]
    assert "secureJsonData" not in none


def test_cli_build(tmp_path: Path) -> None:
    import typer

    from econome.cli_dashboards import register

    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(
        app, ["dashboards", "build", str(ROOT / "examples" / "commune.yaml"), "--out", str(tmp_path), "--auth", "basic"]
    )
    assert result.exit_code == 0, result.output
    assert "16 dashboards" in result.output  # 14 buildings, the portfolio, one works follow-up
    assert "(uid prefix valmont)" in result.output
    assert (tmp_path / "json" / "valmont" / "travaux" / "valmont-travaux-ecole-curie.json").exists()
    bad = CliRunner().invoke(app, ["dashboards", "build", str(ROOT / "examples" / "commune.yaml"), "--auth", "kerberos"])
    assert bad.exit_code == 2


def test_portfolio_lists_every_building_of_the_inventory(commune: Inventory, generated: list[Dashboard]) -> None:
    # Issue 14 review: the list came from the raw "reading" tags, so a building known only from Linky/Gazpar
    # files older than the raw retention never appeared, and every building dropped out 90 days after its last reading.
    portfolio = next(d for d in generated if d.uid == "valmont-patrimoine")
    var = next(v for v in portfolio.model["templating"]["list"] if v["name"] == "building")
    assert var["type"] == "custom"
    ids = [b.id for _, b in commune.buildings()]
    assert var["query"].split(",") == ids
    assert [o["value"] for o in var["options"]] == ["$__all", *ids]
    utility_only = [b.id for _, b in commune.buildings() if all(p.is_utility for p in b.points)]
    assert utility_only == ["maternelle-aulnes", "salle-polyvalente"]  # listed above, readings or not
    for dashboard in generated:
        for templ in dashboard.model["templating"]["list"]:
            assert 'FROM "reading"' not in str(templ.get("query", "")), dashboard.uid
