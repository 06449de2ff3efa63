"""Two communes in one Grafana: uids, folders, datasources and links stay apart (issue 13).

Both inventories have the same building ids (the worst case): only the
organisation differs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from dashboards import generate_dashboards, write_provisioning
from dashboards.grafana import FOLDERS, Dashboard, DashboardConfig
from dashboards.provisioning import ProvisioningConfig, ProvisioningConflict, datasource_provisioning, provider_provisioning
from econome.cli_dashboards import register
from inventory import Inventory, InventoryError, Organisation, parse_inventory
from inventory.model import GRAFANA_PREFIX_PATTERN

ROOT = Path(__file__).resolve().parents[3]
TEXT = (ROOT / "examples" / "commune.yaml").read_text(encoding="utf-8")
VALMONT = "organisation: {name: Commune de Valmont, population: 8400, timezone: Europe/Paris, school_holiday_zone: B}"


def _commune(organisation: str) -> Inventory:
    assert VALMONT in TEXT
    return parse_inventory(TEXT.replace(VALMONT, organisation))


@pytest.fixture(scope="module")
def communes() -> tuple[Inventory, Inventory]:
    valmont = _commune(VALMONT)
    # A name whose slug would be another's is why grafana_prefix exists: here it is given.
    saint_ours = _commune(
        "organisation: {name: Saint-Ours-les-Roches, population: 1700, school_holiday_zone: A, grafana_prefix: st-ours}"
    )
    return valmont, saint_ours


def _own_database(inventory: Inventory) -> ProvisioningConfig:
    """Each commune's datasource reads its own database, as a shared Grafana requires."""
    return ProvisioningConfig(database=inventory.organisation.uid_prefix.replace("-", "_"))


def _linked(dashboard: Dashboard, everything: list[Dashboard]) -> set[str]:
    """The uids a dashboard's "dashboards" links list: those having every tag of the link."""
    out: set[str] = set()
    for link in dashboard.model["links"]:
        assert link["type"] == "dashboards"
        out |= {d.uid for d in everything if set(link["tags"]) <= set(d.model["tags"])}
    return out


def test_two_communes_share_one_grafana(communes: tuple[Inventory, Inventory], tmp_path: Path) -> None:
    valmont, saint_ours = communes
    a, b = generate_dashboards(valmont), generate_dashboards(saint_ours)
    assert a[0].uid == "valmont-patrimoine"
    assert b[0].uid == "st-ours-patrimoine"
    assert not {d.uid for d in a} & {d.uid for d in b}
    assert len({d.uid for d in a + b}) == len(a) + len(b)
    assert all(len(d.uid) <= 40 for d in a + b)

    configs = [ProvisioningConfig().for_organisation(inv.organisation) for inv in communes]
    folders = [{(p["folderUid"], p["folder"], p["name"]) for p in provider_provisioning(c)["providers"]} for c in configs]
    assert len(folders[0]) == len(folders[1]) == len(FOLDERS)
    for i in range(3):  # uid, title (Grafana refuses two folders of one title), provider name
        assert not {f[i] for f in folders[0]} & {f[i] for f in folders[1]}
    assert ("st-ours-batiments", "Saint-Ours-les-Roches — Bâtiments", "st-ours-batiments") in folders[1]
    sources = [datasource_provisioning(c)["datasources"][0] for c in configs]
    assert sources[0]["uid"] != sources[1]["uid"]
    assert sources[0]["name"] != sources[1]["name"]
    # Every panel of a commune queries its own datasource.
    for dashboards, source in ((a, sources[0]), (b, sources[1])):
        for dashboard in dashboards:
            for panel in dashboard.model["panels"]:
                if "datasource" in panel:
                    assert panel["datasource"]["uid"] == source["uid"], dashboard.uid

    # The links between dashboards resolve to the commune's own, all of them, in one Grafana.
    everything = a + b
    for own in (a, b):
        for dashboard in own:
            assert _linked(dashboard, everything) == {d.uid for d in own}, dashboard.uid

    # Both trees built into one provisioning folder: nothing overwritten, nothing removed.
    for inv in communes:
        write_provisioning(inv, tmp_path, _own_database(inv))
    write_provisioning(valmont, tmp_path, _own_database(valmont))  # a rebuild of one leaves the other's alone
    assert sorted(p.name for p in (tmp_path / "datasources").iterdir()) == ["st-ours.yaml", "valmont.yaml"]
    jsons = list((tmp_path / "json").rglob("*.json"))
    assert len(jsons) == len(a) + len(b)
    for inv, dashboards in ((valmont, a), (saint_ours, b)):
        prefix = inv.organisation.uid_prefix
        providers = yaml.safe_load((tmp_path / "dashboards" / f"{prefix}.yaml").read_text())["providers"]
        listed = set()
        for provider in providers:
            folder = tmp_path / provider["options"]["path"].removeprefix("/etc/grafana/provisioning/")
            listed |= {p.stem for p in folder.glob("*.json")}
        assert listed == {d.uid for d in dashboards}


@pytest.mark.parametrize("prefix", ["Valmont_41", "a" * 25, "-valmont"])
def test_grafana_prefix_is_checked_at_load(prefix: str) -> None:
    with pytest.raises(InventoryError) as info:
        _commune(f"organisation: {{name: Valmont, population: 8400, school_holiday_zone: B, grafana_prefix: '{prefix}'}}")
    assert "<inventory>:6 organisation.grafana_prefix:" in str(info.value), str(info.value)
    assert _commune(VALMONT.replace("B}", "B, grafana_prefix: " + "a" * 24 + "}")).organisation.uid_prefix == "a" * 24


def test_an_explicit_config_prefix_wins(communes: tuple[Inventory, Inventory]) -> None:
    valmont, _ = communes
    (first, *_) = generate_dashboards(valmont, DashboardConfig(uid_prefix="mairie41"))
    assert first.uid == "mairie41-patrimoine"
    assert first.model["tags"][:2] == ["econome", "org:mairie41"]


def test_no_two_default_datasources(communes: tuple[Inventory, Inventory], tmp_path: Path) -> None:
    # Grafana refuses to start when two provisioned datasources of one organisation are default.
    for inv in communes:
        write_provisioning(inv, tmp_path, _own_database(inv))
    sources = [yaml.safe_load(p.read_text())["datasources"][0] for p in (tmp_path / "datasources").iterdir()]
    assert len(sources) == 2
    assert not any(s["isDefault"] for s in sources)


def test_grafana_prefix_econome_keeps_the_uids_of_before(tmp_path: Path) -> None:
    kept = _commune(VALMONT.replace("school_holiday_zone: B}", "school_holiday_zone: B, grafana_prefix: econome}"))
    uids = [d.uid for d in generate_dashboards(kept)]
    assert uids[:2] == ["econome-patrimoine", "econome-bat-mairie"]
    assert uids[-1] == "econome-travaux-ecole-curie"
    panels = generate_dashboards(kept)[0].model["panels"]
    assert all(p["datasource"]["uid"] == "econome-influxdb" for p in panels if "datasource" in p)


def test_a_build_removes_the_unprefixed_layout_of_before(communes: tuple[Inventory, Inventory], tmp_path: Path) -> None:
    valmont, _ = communes
    header = "# Generated by `econome dashboards build`: edit the inventory, not this file.\n"
    old_source = header + "apiVersion: 1\ndatasources:\n- isDefault: true\n  name: Econome InfluxDB\n  uid: econome-influxdb\n"
    old_providers = header + "providers:\n- options:\n    path: /etc/grafana/provisioning/json/patrimoine\n"
    for sub, text in (("datasources", old_source), ("dashboards", old_providers)):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "econome.yaml").write_text(text)
    old = tmp_path / "json" / "batiments" / "econome-bat-mairie.json"
    old.parent.mkdir(parents=True)
    old.write_text("{}")
    hand_made = tmp_path / "datasources" / "other.yaml"
    hand_made.write_text("apiVersion: 1\n")
    write_provisioning(valmont, tmp_path)
    assert sorted(p.name for p in (tmp_path / "datasources").iterdir()) == ["other.yaml", "valmont.yaml"]
    assert sorted(p.name for p in (tmp_path / "dashboards").iterdir()) == ["valmont.yaml"]
    assert not old.exists()
    # A commune whose prefix is econome keeps its files when another builds beside it.
    kept = _commune(VALMONT.replace("Commune de Valmont", "Commune de Kept").replace("B}", "B, grafana_prefix: econome}"))
    write_provisioning(kept, tmp_path, ProvisioningConfig(database="kept"))
    write_provisioning(valmont, tmp_path)
    assert (tmp_path / "datasources" / "econome.yaml").exists()
    assert (tmp_path / "dashboards" / "econome.yaml").exists()
    assert list((tmp_path / "json" / "econome" / "batiments").glob("*.json"))


def test_links_of_a_commune_of_prefix_econome_stay_its_own(communes: tuple[Inventory, Inventory]) -> None:
    valmont, _ = communes
    kept = _commune(VALMONT.replace("Commune de Valmont", "Commune de Kept").replace("B}", "B, grafana_prefix: econome}"))
    a, b = generate_dashboards(valmont), generate_dashboards(kept)
    for own in (a, b):
        for dashboard in own:
            assert _linked(dashboard, a + b) == {d.uid for d in own}, dashboard.uid


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("Commune de Valmont", "valmont"),
        ("Commune de La Rochelle", "la-rochelle"),
        ("Ville d'Écully", "ecully"),
        ("Communauté de communes du Val de Loire", "cc-val-de-loire"),
        ("Communauté de communes du Pays de Sèvre", "cc-pays-de-sevre"),
        ("Communauté de communes de Valmont", "cc-valmont"),
        ("Communauté d'agglomération du Grand Avignon", "ca-grand-avignon"),
        ("Communauté urbaine de Dunkerque", "cu-dunkerque"),
        ("Métropole de Lyon", "metropole-lyon"),
        ("Syndicat mixte des eaux du Lot", "sm-eaux-du-lot"),
        ("Syndicat intercommunal de Valmont", "si-valmont"),
        ("Syndicat des eaux du Lot", "syndicat-eaux-du-lot"),
    ],
)
def test_default_prefix_leaves_out_the_collectivity_designation(name: str, prefix: str) -> None:
    assert Organisation(name=name, population=1, school_holiday_zone="A").uid_prefix == prefix


def test_long_names_keep_distinct_prefixes() -> None:
    names = [
        "Syndicat intercommunal des eaux de la région de Saint-Germain-en-Laye",
        "Syndicat intercommunal des eaux de la région de Saint-Germain-en-Brie",
        "Saint-Rémy-de-Provence-sur-les-Hauts-Plateaux",
        "Saint-Rémy-de-Provence-sur-les-Hauts-Plateaux-Est",
    ]
    prefixes = [Organisation(name=n, population=1, school_holiday_zone="A").uid_prefix for n in names]
    assert len(set(prefixes)) == len(names), prefixes
    for prefix in prefixes:
        assert re.fullmatch(GRAFANA_PREFIX_PATTERN, prefix), prefix
        assert re.fullmatch(r"[a-z0-9-]{4,19}-[0-9a-f]{4}", prefix), prefix  # a readable start and a hash
    assert prefixes[2].startswith("saint-remy-de")


def _org(name: str, extra: str = "") -> Inventory:
    return _commune(f"organisation: {{name: {name}, population: 5000, school_holiday_zone: B{extra}}}")


def test_a_build_refuses_another_organisation_s_files(tmp_path: Path) -> None:
    first = _org("Commune de Valmont")
    second = _org("Ville de Valmont")  # another organisation, the same default prefix
    assert first.organisation.uid_prefix == second.organisation.uid_prefix == "valmont"
    write_provisioning(first, tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(ProvisioningConflict) as info:
        write_provisioning(second, tmp_path, ProvisioningConfig(database="ville"))
    message = str(info.value)
    assert "'Commune de Valmont'" in message
    assert "'Ville de Valmont'" in message
    assert "grafana_prefix" in message
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before  # nothing written
    # The command says so and exits 2.
    inventory = tmp_path / "ville.yaml"
    inventory.write_text(TEXT.replace(VALMONT, VALMONT.replace("Commune de", "Ville de")))
    app = typer.Typer()
    register(app)
    done = CliRunner().invoke(app, ["dashboards", "build", str(inventory), "--out", str(tmp_path), "--database", "ville"])
    assert done.exit_code == 2, done.output
    assert "belongs to 'Commune de Valmont', not to 'Ville de Valmont'" in done.output
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p != inventory} == before
    # Its own rebuild is fine.
    write_provisioning(first, tmp_path)
    # A file of the first builds with prefixes, whose header did not name the organisation yet:
    # the datasource's name does.
    source = tmp_path / "datasources" / "valmont.yaml"
    text = source.read_text()
    source.write_text(text.replace("# Organisation: Commune de Valmont\n", ""))
    assert "name: Econome InfluxDB — Commune de Valmont\n" in source.read_text()
    with pytest.raises(ProvisioningConflict, match="belongs to 'Commune de Valmont'"):
        write_provisioning(second, tmp_path, ProvisioningConfig(database="ville"))
    write_provisioning(first, tmp_path)
    assert source.read_text() == text


def test_two_communes_cannot_share_one_database(tmp_path: Path) -> None:
    valmont = _org("Commune de Valmont")
    loire = _org("Communauté de communes du Val de Loire")
    write_provisioning(valmont, tmp_path)
    with pytest.raises(ProvisioningConflict) as info:
        write_provisioning(loire, tmp_path)
    message = str(info.value)
    assert "'Commune de Valmont' already reads InfluxDB database 'econome'" in message
    assert "--database" in message
    assert "ECONOME_INFLUX_DATABASE" in message
    assert not (tmp_path / "datasources" / "cc-val-de-loire.yaml").exists()
    # Review round 2: the same server written otherwise (a trailing slash, upper case, the default port) is no other.
    url = ProvisioningConfig().influx_url
    scheme, rest = url.split("://", 1)
    for same in (url + "/", f"{scheme.upper()}://{rest.upper()}", url.replace(":8086", ":8086/")):
        with pytest.raises(ProvisioningConflict, match="already reads InfluxDB database 'econome'"):
            write_provisioning(loire, tmp_path, ProvisioningConfig(influx_url=same))
    write_provisioning(valmont, tmp_path / "http", ProvisioningConfig(influx_url="http://influx:80/"))
    with pytest.raises(ProvisioningConflict):
        write_provisioning(loire, tmp_path / "http", ProvisioningConfig(influx_url="HTTP://Influx"))
    # Another InfluxDB, or another database, is fine; ECONOME_INFLUX_DATABASE sets the command's.
    write_provisioning(loire, tmp_path / "other", ProvisioningConfig(influx_url="http://influx-loire:8086"))
    inventory = tmp_path / "loire.yaml"
    inventory.write_text(TEXT.replace(VALMONT, VALMONT.replace("Commune de Valmont", "Communauté de communes du Val de Loire")))
    app = typer.Typer()
    register(app)
    args = ["dashboards", "build", str(inventory), "--out", str(tmp_path)]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2, refused.output
    assert "already reads InfluxDB database 'econome'" in refused.output
    done = CliRunner().invoke(app, args, env={"ECONOME_INFLUX_DATABASE": "val_de_loire"})
    assert done.exit_code == 0, done.output
    source = yaml.safe_load((tmp_path / "datasources" / "cc-val-de-loire.yaml").read_text())["datasources"][0]
    assert source["jsonData"]["dbName"] == "val_de_loire"


def _grafana_applies(state: list[dict[str, Any]], folder: Path) -> list[dict[str, Any]]:
    """Grafana's datasource provisioning at start-up, on its table of datasources (the boundary).

    As Grafana does (pkg/services/provisioning/datasources): every file's ``deleteDatasources``
    first, by name and orgId; then each datasource is looked up by name and updated, or inserted,
    which fails on a uid already taken; two default datasources in one organisation fail too.
    """
    docs = [yaml.safe_load(p.read_text()) for p in sorted((folder / "datasources").glob("*.yaml"))]
    table = [dict(row) for row in state]
    for doc in docs:
        for gone in doc.get("deleteDatasources", []):
            table = [r for r in table if (r["name"], r.get("orgId", 1)) != (gone["name"], gone["orgId"])]
    for doc in docs:
        for source in doc.get("datasources", []):
            same = [r for r in table if r["name"] == source["name"]]
            if same:
                same[0].update(source)
            elif any(r["uid"] == source["uid"] for r in table):
                msg = f"data source with the same uid already exists: {source['uid']}"
                raise RuntimeError(msg)
            else:
                table.append(dict(source))
    if sum(1 for r in table if r.get("isDefault")) > 1:
        msg = "datasource.yaml config is invalid. Only one datasource per organization can be marked as default"
        raise RuntimeError(msg)
    return table


@pytest.mark.parametrize("prefix", ["econome", None])
def test_an_upgraded_grafana_starts_without_the_old_datasource(prefix: str | None, tmp_path: Path) -> None:
    # What Grafana's database holds after a build made before prefixes.
    before = [{"name": "Econome InfluxDB", "orgId": 1, "uid": "econome-influxdb", "isDefault": True, "type": "influxdb"}]
    extra = f", grafana_prefix: {prefix}" if prefix else ""
    inv = _org("Commune de Valmont", extra)
    write_provisioning(inv, tmp_path)
    doc = yaml.safe_load((tmp_path / "datasources" / f"{inv.organisation.uid_prefix}.yaml").read_text())
    assert doc["deleteDatasources"] == [{"name": "Econome InfluxDB", "orgId": 1}]
    table = _grafana_applies(before, tmp_path)
    assert [r["name"] for r in table] == ["Econome InfluxDB — Commune de Valmont"]
    assert table[0]["uid"] == f"{prefix or 'valmont'}-influxdb"
    assert not table[0]["isDefault"]
    assert _grafana_applies(table, tmp_path) == table  # the next start changes nothing
