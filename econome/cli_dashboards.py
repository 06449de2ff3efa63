"""The ``econome dashboards`` commands: build the Grafana provisioning tree, or push it.

::

    econome dashboards build examples/commune.yaml --out deploy/grafana/provisioning
    econome dashboards push examples/commune.yaml --url https://grafana.example --token "$GRAFANA_TOKEN"

``build`` writes the files Grafana loads at start-up (datasource, dashboard
providers, one JSON per dashboard); ``push`` sends the folders, the
datasource and the dashboards through Grafana's HTTP API, and can be re-run:
nothing is duplicated, unchanged dashboards are left alone.

:func:`register` adds the group to the main app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import SecretStr, ValidationError

from dashboards.grafana import DashboardConfig, generate_dashboards
from dashboards.provisioning import ProvisioningConfig, ProvisioningConflict, write_provisioning
from econome._common import load_or_exit as _load
from streams.errors import TelemetryError

__all__ = ["register"]

_EXIT_CONFIG = 2
_EXIT_GRAFANA = 1
_TOKEN_FILE = ProvisioningConfig().token_file

ConfigArg = Annotated[Path, typer.Argument(help="Inventory YAML file.")]
DatasourceUid = Annotated[
    str | None, typer.Option(help="Uid of the InfluxDB datasource the panels use (default: <prefix>-influxdb).")
]
InfluxUrl = Annotated[str, typer.Option(help="InfluxDB URL as Grafana reaches it.")]
Database = Annotated[
    str,
    typer.Option(
        envvar="ECONOME_INFLUX_DATABASE",
        help="InfluxQL database (DBRP name on InfluxDB 2.x/3.x); each commune sharing a Grafana needs its own.",
    ),
]
Auth = Annotated[str, typer.Option(help="Datasource authentication: token (2.x/3.x), basic (1.x user) or none.")]


def register(app: typer.Typer) -> None:
    """Add the ``dashboards`` group (``build``, ``push``) to an app.

    >>> app = typer.Typer()
    >>> register(app)
    >>> [g.name for g in app.registered_groups]
    ['dashboards']
    """
    group = typer.Typer(no_args_is_help=True, help="Grafana dashboards generated from the inventory.")
    group.command("build")(build)
    group.command("push")(push)
    app.add_typer(group, name="dashboards")


def _provisioning(
    grafana_root: str,
    influx_url: str,
    database: str,
    auth: str,
    datasource_uid: str | None,
    token_file: str = _TOKEN_FILE,
    raw_retention_policy: str | None = None,
) -> ProvisioningConfig:
    if auth not in ("token", "basic", "none"):
        typer.echo(f"error: --auth must be token, basic or none, not {auth!r}", err=True)
        raise typer.Exit(code=_EXIT_CONFIG)
    mode: Literal["token", "basic", "none"] = auth  # type: ignore[assignment]  # checked just above
    try:
        return ProvisioningConfig(
            grafana_root=grafana_root,
            influx_url=influx_url,
            database=database,
            auth=mode,
            token_file=token_file,
            dashboards=DashboardConfig(datasource_uid=datasource_uid, raw_retention_policy=raw_retention_policy),
        )
    except ValidationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=_EXIT_CONFIG) from exc


def build(
    config: ConfigArg,
    out: Annotated[Path, typer.Option(help="Folder to write (mounted as /etc/grafana/provisioning).")] = Path(
        "deploy/grafana/provisioning"
    ),
    grafana_root: Annotated[str, typer.Option(help="Where Grafana sees that folder.")] = "/etc/grafana/provisioning",
    influx_url: InfluxUrl = "http://influxdb:8086",
    database: Database = "econome",
    auth: Auth = "token",
    datasource_uid: DatasourceUid = None,
    token_file: Annotated[str, typer.Option(help="File Grafana reads the InfluxDB token from (auth token).")] = _TOKEN_FILE,
    raw_retention_policy: Annotated[
        str | None, typer.Option(help="Retention policy of raw readings: 'raw' after `econome influx setup` (1.x).")
    ] = None,
) -> None:
    """Write the provisioning tree: datasource, dashboard providers and the dashboards' JSON."""
    inv = _load(config)
    settings = _provisioning(grafana_root, influx_url, database, auth, datasource_uid, token_file, raw_retention_policy)
    try:
        written = write_provisioning(inv, out, settings)
    except ProvisioningConflict as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=_EXIT_CONFIG) from exc
    dashboards = sum(1 for p in written if p.suffix == ".json")
    prefix = settings.for_organisation(inv.organisation).dashboards.prefix
    typer.echo(f"wrote {len(written)} files to {out}: {dashboards} dashboards, datasource and providers (uid prefix {prefix})")


def push(
    config: ConfigArg,
    url: Annotated[str, typer.Option(help="Grafana base URL.")],
    token: Annotated[str, typer.Option(help="Service-account token (Editor; Admin to push the datasource).")],
    datasource: Annotated[bool, typer.Option(help="Create or update the InfluxDB datasource too.")] = True,
    influx_url: InfluxUrl = "http://influxdb:8086",
    database: Database = "econome",
    auth: Auth = "token",
    influx_token: Annotated[str | None, typer.Option(help="InfluxDB read token stored in the datasource.")] = None,
    datasource_uid: DatasourceUid = None,
    timeout: Annotated[float, typer.Option(help="Seconds before a Grafana call is given up.")] = 10.0,
) -> None:
    """Push folders, the datasource and every dashboard through Grafana's HTTP API (idempotent)."""
    from datetime import timedelta

    from dashboards.push import GrafanaPushConfig, GrafanaPusher

    inv = _load(config)
    settings = _provisioning("/etc/grafana/provisioning", influx_url, database, auth, datasource_uid).for_organisation(
        inv.organisation
    )
    try:
        push_config = GrafanaPushConfig(
            url=url,
            token=SecretStr(token),
            timeout=timedelta(seconds=timeout),
            push_datasource=datasource,
            influx_token=SecretStr(influx_token) if influx_token else None,
            provisioning=settings,
        )
    except ValidationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=_EXIT_CONFIG) from exc
    try:
        with GrafanaPusher(push_config) as pusher:
            report = pusher.push(generate_dashboards(inv, settings.dashboards))
    except TelemetryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=_EXIT_GRAFANA) from exc
    typer.echo(f"pushed to {url}: {report.summary()}")
    for uid in report.stale:
        typer.echo(f"  not in this inventory (left in Grafana): {uid}")
