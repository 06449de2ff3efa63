"""The files Grafana loads at start-up: datasource, dashboard providers and the dashboards.

:func:`write_provisioning` writes this tree (the layout Grafana expects under
``/etc/grafana/provisioning``)::

    <out>/datasources/<prefix>.yaml       the InfluxDB datasource, InfluxQL
    <out>/dashboards/<prefix>.yaml        one file provider per folder
    <out>/json/<prefix>/<folder>/<uid>.json   the generated dashboards

``<prefix>`` is the organisation's uid prefix (``organisation.grafana_prefix``,
else a slug of its name): two communes' trees built into one folder sit side
by side, and a build removes only the stale dashboards of its own prefix.

The provider paths are those Grafana sees (``grafana_root``), not those of
the machine that builds the tree. Secrets never enter the files: the
datasource reads its password or token through Grafana's ``$__env{...}`` or
``$__file{...}`` expansion.

Sample config (all fields have defaults)::

    grafana_root: /etc/grafana/provisioning
    influx_url: http://influxdb:8086
    database: econome
    auth: token               # or basic (InfluxDB 1.x user) or none
    token_file: /run/secrets/influxdb_grafana_token

>>> import tempfile
>>> from pathlib import Path
>>> from inventory import load_inventory
>>> inv = load_inventory(Path("examples/commune.yaml"))
>>> with tempfile.TemporaryDirectory() as out:
...     files = write_provisioning(inv, Path(out))
...     sorted(str(f.relative_to(out)) for f in files)[:3]  # doctest: +NORMALIZE_WHITESPACE
['dashboards/valmont.yaml', 'datasources/valmont.yaml',
 'json/valmont/batiments/valmont-bat-atelier.json']
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from dashboards.grafana import FOLDERS, Dashboard, DashboardConfig, generate_dashboards
from inventory import Inventory, Organisation

__all__ = ["ProvisioningConfig", "dashboard_json", "datasource_provisioning", "provider_provisioning", "write_provisioning"]


class ProvisioningConfig(BaseModel):
    """Where Grafana finds the files and how its datasource reaches InfluxDB.

    >>> ProvisioningConfig(auth="none").database
    'econome'
    >>> org = Organisation(name="Commune de Valmont", population=8400, school_holiday_zone="B")
    >>> ProvisioningConfig().for_organisation(org).datasource_name
    'Econome InfluxDB — Commune de Valmont'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    grafana_root: str = "/etc/grafana/provisioning"
    """The provisioning folder as Grafana sees it (inside its container or VM)."""
    datasource_name: str | None = None
    """Name of the datasource in Grafana, unique there; None: ``Econome InfluxDB — <organisation>``."""
    influx_url: str = "http://influxdb:8086"
    """InfluxDB URL as Grafana reaches it."""
    database: str = Field(default="econome", min_length=1)
    """InfluxQL database: the v1 database, or the DBRP name mapped to the bucket on 2.x/3.x."""
    auth: Literal["token", "basic", "none"] = "token"
    """``token``: 2.x/3.x API token sent as ``Authorization: Token``; ``basic``: a 1.x user."""
    token_file: str = "/run/secrets/influxdb_grafana_token"  # noqa: S105 - a path, not a secret
    """File holding the read-only token (``auth: token``), read by Grafana at start-up."""
    user: str = "grafana"
    """InfluxDB 1.x user (``auth: basic``)."""
    password_env: str = "GRAFANA_INFLUX_PASSWORD"  # noqa: S105 - a variable name, not a secret
    """Environment variable of Grafana holding that user's password (``auth: basic``)."""
    min_interval: str = "1m"
    """Shortest ``$__interval``: below the poll interval a point has no value."""
    dashboards: DashboardConfig = Field(default_factory=DashboardConfig)
    """How the dashboards are generated."""

    def for_organisation(self, organisation: Organisation) -> ProvisioningConfig:
        """This config with the names and uids it leaves unset taken from the organisation.

        Args:
            organisation: The inventory's organisation.

        Returns:
            A config whose datasource name and dashboards' prefix are set.
        """
        return self.model_copy(
            update={
                "datasource_name": self.datasource_name or f"Econome InfluxDB — {organisation.name}",
                "dashboards": self.dashboards.for_organisation(organisation),
            }
        )


def datasource_provisioning(config: ProvisioningConfig) -> dict[str, Any]:
    """The datasource provisioning document (``apiVersion: 1``).

    Args:
        config: Where InfluxDB is and how to authenticate, given its organisation.

    Returns:
        The YAML document as a dict.

    >>> ds = datasource_provisioning(ProvisioningConfig(dashboards=DashboardConfig(uid_prefix="valmont")))["datasources"][0]
    >>> ds["type"], ds["uid"], ds["jsonData"]["httpHeaderName1"]
    ('influxdb', 'valmont-influxdb', 'Authorization')
    """
    json_data: dict[str, Any] = {"dbName": config.database, "httpMode": "GET", "timeInterval": config.min_interval}
    secure: dict[str, str] = {}
    source: dict[str, Any] = {
        "access": "proxy",
        "editable": False,
        # Panels name their datasource by uid; Grafana refuses two default datasources in one
        # organisation, which two communes' provisioning files would otherwise both claim.
        "isDefault": False,
        "name": config.datasource_name or f"Econome InfluxDB — {config.dashboards.organisation or config.dashboards.prefix}",
        "type": "influxdb",
        "uid": config.dashboards.datasource,
        "url": config.influx_url,
    }
    if config.auth == "token":
        # InfluxQL on 2.x/3.x authenticates with the token in a header (DBRP mapping on the database name).
        json_data["httpHeaderName1"] = "Authorization"
        secure["httpHeaderValue1"] = f"Token $__file{{{config.token_file}}}"
    elif config.auth == "basic":
        source["user"] = config.user
        secure["password"] = f"$__env{{{config.password_env}}}"
    source["jsonData"] = json_data
    if secure:
        source["secureJsonData"] = secure
    return {"apiVersion": 1, "datasources": [source]}


def provider_provisioning(config: ProvisioningConfig) -> dict[str, Any]:
    """The dashboard providers document: one file provider per folder, with a stable folder uid.

    Args:
        config: Where Grafana sees the JSON files, given its organisation (a uid prefix at least).

    Returns:
        The YAML document as a dict.

    >>> config = ProvisioningConfig(dashboards=DashboardConfig(uid_prefix="valmont", organisation="Valmont"))
    >>> [(p["folderUid"], p["folder"]) for p in provider_provisioning(config)["providers"]][0]
    ('valmont-patrimoine', 'Valmont — Patrimoine')
    """
    dashboards = config.dashboards
    providers = [
        {
            "allowUiUpdates": False,
            "disableDeletion": False,
            "folder": dashboards.folder_title(folder),
            "folderUid": dashboards.folder_uid(folder),
            "name": dashboards.folder_uid(folder),
            "options": {"path": f"{config.grafana_root.rstrip('/')}/json/{dashboards.prefix}/{folder.key}"},
            "orgId": 1,
            "type": "file",
            "updateIntervalSeconds": 60,
        }
        for folder in FOLDERS
    ]
    return {"apiVersion": 1, "providers": providers}


def dashboard_json(dashboard: Dashboard) -> str:
    r"""The dashboard as Grafana loads it: sorted keys, two-space indent, UTF-8, final newline.

    The text is stable, so a golden file diffs cleanly.

    >>> from dashboards.grafana import Dashboard
    >>> dashboard_json(Dashboard("u", "T", "patrimoine", {"uid": "u", "title": "Té"}))
    '{\n  "title": "Té",\n  "uid": "u"\n}\n'
    """
    return json.dumps(dashboard.model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _yaml(doc: dict[str, Any]) -> str:
    header = "# Generated by `econome dashboards build`: edit the inventory, not this file.\n"
    return header + yaml.safe_dump(doc, sort_keys=True, allow_unicode=True, default_flow_style=False)


def write_provisioning(inventory: Inventory, out: Path, config: ProvisioningConfig | None = None) -> list[Path]:
    """Write the provisioning tree for an inventory.

    Dashboards of a previous build that the inventory no longer has are
    removed, so Grafana (``disableDeletion: false``) drops them too.

    Args:
        inventory: The portfolio.
        out: The folder to write (created if missing).
        config: Datasource and paths; defaults when None.

    Returns:
        The files written, sorted.
    """
    config = (config or ProvisioningConfig()).for_organisation(inventory.organisation)
    prefix = config.dashboards.prefix
    written: list[Path] = []
    for sub, doc in (("datasources", datasource_provisioning(config)), ("dashboards", provider_provisioning(config))):
        path = out / sub / f"{prefix}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_yaml(doc), encoding="utf-8")
        written.append(path)
    dashboards = generate_dashboards(inventory, config.dashboards)
    wanted = {out / "json" / prefix / d.folder / f"{d.uid}.json": d for d in dashboards}
    for folder in FOLDERS:
        (out / "json" / prefix / folder.key).mkdir(parents=True, exist_ok=True)
        for stale in (out / "json" / prefix / folder.key).glob("*.json"):
            if stale not in wanted:
                stale.unlink()
    for path, dashboard in wanted.items():
        path.write_text(dashboard_json(dashboard), encoding="utf-8")
        written.append(path)
    _remove_unprefixed_layout(out)
    return sorted(written)


def _remove_unprefixed_layout(out: Path) -> None:
    """Remove what a build made before uids had a prefix, which Grafana would load beside the new tree.

    That layout had ``datasources/econome.yaml`` (named ``Econome InfluxDB``), ``dashboards/econome.yaml``
    and ``json/<folder>/*.json``; files of the ``econome`` prefix (``grafana_prefix: econome``) are kept.
    """
    for folder in FOLDERS:
        for old in (out / "json" / folder.key).glob("*.json"):
            old.unlink()
    for sub, old_marker in (("datasources", "name: Econome InfluxDB\n"), ("dashboards", "/json/patrimoine\n")):
        path = out / sub / "econome.yaml"
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            if text.startswith("# Generated by `econome dashboards build`") and old_marker in text:
                path.unlink()
