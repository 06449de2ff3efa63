"""Two communes in one Grafana: uids, folders, datasources and links stay apart (issue 13).

Both inventories have the same building ids (the worst case): only the
organisation differs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dashboards import generate_dashboards, write_provisioning
from dashboards.grafana import FOLDERS, Dashboard, DashboardConfig
from dashboards.provisioning import ProvisioningConfig, datasource_provisioning, provider_provisioning
from inventory import Inventory, InventoryError, parse_inventory

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
        write_provisioning(inv, tmp_path)
    write_provisioning(valmont, tmp_path)  # a rebuild of one leaves the other's alone
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
    assert first.model["tags"][:2] == ["econome", "mairie41"]


def test_no_two_default_datasources(communes: tuple[Inventory, Inventory], tmp_path: Path) -> None:
    # Grafana refuses to start when two provisioned datasources of one organisation are default.
    for inv in communes:
        write_provisioning(inv, tmp_path)
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
    kept = _commune(VALMONT.replace("school_holiday_zone: B}", "school_holiday_zone: B, grafana_prefix: econome}"))
    write_provisioning(kept, tmp_path)
    write_provisioning(valmont, tmp_path)
    assert (tmp_path / "datasources" / "econome.yaml").exists()
    assert (tmp_path / "dashboards" / "econome.yaml").exists()
    assert list((tmp_path / "json" / "econome" / "batiments").glob("*.json"))
