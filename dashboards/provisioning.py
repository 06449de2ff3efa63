"""The files Grafana loads at start-up: datasource, dashboard providers and the dashboards.

:func:`write_provisioning` writes this tree (the layout Grafana expects under
``/etc/grafana/provisioning``)::

    <out>/datasources/econome.yaml        the InfluxDB datasource, InfluxQL
    <out>/dashboards/econome.yaml         one file provider per folder
    <out>/json/<folder>/<uid>.json        the generated dashboards

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
...     sorted(str(f.relative_to(out)) for f in files)[:3]
['dashboards/econome.yaml', 'datasources/econome.yaml', 'json/batiments/econome-bat-atelier.json']
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from dashboards.grafana import FOLDERS, Dashboard, DashboardConfig, generate_dashboards
from inventory import Inventory

__all__ = ["ProvisioningConfig", "dashboard_json", "datasource_provisioning", "provider_provisioning", "write_provisioning"]


class ProvisioningConfig(BaseModel):
    """Where Grafana finds the files and how its datasource reaches InfluxDB.

    >>> ProvisioningConfig(auth="none").database
    'econome'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    grafana_root: str = "/etc/grafana/provisioning"
    """The provisioning folder as Grafana sees it (inside its container or VM)."""
    datasource_name: str = "Econome InfluxDB"
    """Name of the datasource in Grafana."""
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


def datasource_provisioning(config: ProvisioningConfig) -> dict[str, Any]:
    """The datasource provisioning document (``apiVersion: 1``).

    Args:
        config: Where InfluxDB is and how to authenticate.

    Returns:
        The YAML document as a dict.

    >>> ds = datasource_provisioning(ProvisioningConfig())["datasources"][0]
    >>> ds["type"], ds["jsonData"]["httpHeaderName1"]
    ('influxdb', 'Authorization')
    """
    json_data: dict[str, Any] = {"dbName": config.database, "httpMode": "GET", "timeInterval": config.min_interval}
    secure: dict[str, str] = {}
    source: dict[str, Any] = {
        "access": "proxy",
        "editable": False,
        "isDefault": True,
        "name": config.datasource_name,
        "type": "influxdb",
        "uid": config.dashboards.datasource_uid,
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
        config: Where Grafana sees the JSON files.

    Returns:
        The YAML document as a dict.

    >>> [p["folderUid"] for p in provider_provisioning(ProvisioningConfig())["providers"]]
    ['econome-patrimoine', 'econome-batiments', 'econome-travaux']
    """
    prefix = config.dashboards.uid_prefix
    providers = [
        {
            "allowUiUpdates": False,
            "disableDeletion": False,
            "folder": folder.title,
            "folderUid": f"{prefix}-{folder.key}",
            "name": f"{prefix}-{folder.key}",
            "options": {"path": f"{config.grafana_root.rstrip('/')}/json/{folder.key}"},
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
    config = config or ProvisioningConfig()
    written: list[Path] = []
    for sub, doc in (("datasources", datasource_provisioning(config)), ("dashboards", provider_provisioning(config))):
        path = out / sub / "econome.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_yaml(doc), encoding="utf-8")
        written.append(path)
    dashboards = generate_dashboards(inventory, config.dashboards)
    wanted = {out / "json" / d.folder / f"{d.uid}.json": d for d in dashboards}
    for folder in FOLDERS:
        (out / "json" / folder.key).mkdir(parents=True, exist_ok=True)
        for stale in (out / "json" / folder.key).glob("*.json"):
            if stale not in wanted:
                stale.unlink()
    for path, dashboard in wanted.items():
        path.write_text(dashboard_json(dashboard), encoding="utf-8")
        written.append(path)
    return sorted(written)
