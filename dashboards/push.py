"""Push the dashboards to a running Grafana through its HTTP API, with grafana-client.

The push is idempotent: folders and dashboards carry stable uids, a folder or
dashboard that exists is updated in place (never created twice), and one that
is already identical is left alone, so a re-run creates no duplicate and no
new dashboard version. The calls are those of the Grafana HTTP API:

- ``GET /api/datasources/uid/:uid``, then ``POST /api/datasources`` or ``PUT /api/datasources/uid/:uid``;
- ``GET /api/folders/:uid``, then ``POST /api/folders`` or ``PUT /api/folders/:uid``;
- ``GET /api/search?type=dash-db&tag=org:<prefix>`` to learn which of this organisation's dashboards exist
  (another commune's, in the same Grafana, have another ``org:`` tag);
- ``GET /api/dashboards/uid/:uid`` for those, then ``POST /api/dashboards/db``
  with ``{dashboard, folderUid, overwrite, message}``.

Sample config::

    url: https://grafana.mairie.example
    token: glsa_...            # a service-account token with the Editor role (Admin for the datasource)
    push_datasource: true

>>> GrafanaPushConfig(url="http://127.0.0.1:3000", token="t").timeout
datetime.timedelta(seconds=10)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import niquests
from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from dashboards.grafana import FOLDERS, Dashboard
from dashboards.provisioning import ProvisioningConfig, datasource_provisioning
from streams.errors import SinkError

__all__ = ["GrafanaPushConfig", "GrafanaPushError", "GrafanaPusher", "PushReport"]

logger = logging.getLogger(__name__)

_MESSAGE = "econome dashboards push"
_SEARCH_LIMIT = 5000


class GrafanaPushError(SinkError):
    """Grafana refused a call or could not be reached."""


class GrafanaPushConfig(BaseModel):
    """Where Grafana is and what to push.

    >>> GrafanaPushConfig(url="http://grafana:3000").push_datasource
    True
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(pattern=r"^https?://")
    """Base URL of Grafana (a sub-path is kept: ``https://host/grafana``)."""
    token: SecretStr | None = None
    """Service-account token, sent as ``Authorization: Bearer``."""
    timeout: timedelta = timedelta(seconds=10)
    """Timeout of every HTTP call."""
    verify_tls: bool = True
    """Check Grafana's certificate."""
    push_datasource: bool = True
    """Create or update the InfluxDB datasource too (needs the Admin role)."""
    influx_token: SecretStr | None = None
    """InfluxDB read token stored in the datasource's secure fields; left unchanged when None."""
    provisioning: ProvisioningConfig = Field(default_factory=ProvisioningConfig)
    """Datasource settings and the uid prefix of the folders: give its organisation
    (:meth:`ProvisioningConfig.for_organisation`), or a ``dashboards.uid_prefix``."""


@dataclass
class PushReport:
    """What a push did, by uid."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    """Econome dashboards in Grafana that this push does not have (left alone)."""

    def summary(self) -> str:
        """One line for the CLI.

        >>> PushReport(created=["a"], unchanged=["b", "c"]).summary()
        '1 created, 0 updated, 2 unchanged, 0 stale'
        """
        counts = (len(self.created), len(self.updated), len(self.unchanged), len(self.stale))
        return "{} created, {} updated, {} unchanged, {} stale".format(*counts)


def _comparable(model: dict[str, Any]) -> dict[str, Any]:
    """A dashboard without the fields Grafana rewrites on every save."""
    return {k: v for k, v in model.items() if k not in {"id", "version", "iteration"}}


class GrafanaPusher:
    """Pushes folders, the datasource and dashboards; see the module docstring for the calls.

    Use it as a context manager so its HTTP session is closed.

    Args:
        config: Where Grafana is.

    Example::

        with GrafanaPusher(GrafanaPushConfig(url="http://grafana:3000", token="...")) as pusher:
            print(pusher.push(generate_dashboards(inventory)).summary())
    """

    def __init__(self, config: GrafanaPushConfig) -> None:
        self.config = config
        token = config.token.get_secret_value() if config.token else None
        # grafana-client is untyped: keep it behind Any at this one boundary.
        api_class: Any = GrafanaApi
        self._api: Any = api_class.from_url(url=config.url, credential=token, timeout=config.timeout.total_seconds())
        self._api.client.verify = config.verify_tls

    def __enter__(self) -> GrafanaPusher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session."""
        self._api.client.s.close()

    def _call(self, what: str, fn: Any, *args: Any, missing_ok: bool = False, **kwargs: Any) -> Any:
        """Run one grafana-client call; None for a 404 when ``missing_ok``; errors become GrafanaPushError."""
        try:
            return fn(*args, **kwargs)
        except GrafanaClientError as exc:
            if missing_ok and exc.status_code == 404:
                return None
            msg = f"Grafana {self.config.url} refused {what}: {exc.status_code} {exc.message}"
            raise GrafanaPushError(msg) from exc
        except GrafanaException as exc:
            msg = f"Grafana {self.config.url} failed on {what}: {exc.message}"
            raise GrafanaPushError(msg) from exc
        except niquests.exceptions.RequestException as exc:
            msg = f"Grafana {self.config.url} unreachable ({what}): {exc}"
            raise GrafanaPushError(msg) from exc

    def push(self, dashboards: Sequence[Dashboard]) -> PushReport:
        """Push the datasource (if configured), the folders, then every dashboard.

        Args:
            dashboards: The generated dashboards.

        Returns:
            What was created, updated or left unchanged.

        Raises:
            GrafanaPushError: Grafana refused a call or is unreachable.
        """
        report = PushReport()
        if self.config.push_datasource:
            self._push_datasource(report)
        folder_uids = self._push_folders(report)
        existing = self._call(
            "search",
            self._api.search.search_dashboards,
            type_="dash-db",
            tag=self.config.provisioning.dashboards.organisation_tag,  # this organisation's, not another's
            limit=_SEARCH_LIMIT,
        )
        existing_uids = {hit["uid"] for hit in existing}
        for dashboard in dashboards:
            self._push_dashboard(dashboard, folder_uids[dashboard.folder], dashboard.uid in existing_uids, report)
        ours = {d.uid for d in dashboards}
        report.stale = sorted(existing_uids - ours)
        return report

    def _push_datasource(self, report: PushReport) -> None:
        source = dict(datasource_provisioning(self.config.provisioning)["datasources"][0])
        source.pop("editable", None)
        secure = source.pop("secureJsonData", {})
        if self.config.influx_token is not None:
            value = self.config.influx_token.get_secret_value()
            secure = {"httpHeaderValue1": f"Token {value}"} if "httpHeaderValue1" in secure else {"password": value}
            source["secureJsonData"] = secure
        uid = source["uid"]
        current = self._call(f"GET datasource {uid}", self._api.datasource.get_datasource_by_uid, uid, missing_ok=True)
        if current is None:
            self._call(f"POST datasource {uid}", self._api.datasource.create_datasource, source)
            report.created.append(uid)
            logger.info("datasource %s created", uid)
            return
        keys = ("name", "type", "url", "access", "jsonData", "user")
        same = all(current.get(k) == source.get(k) for k in keys if k in source) and "secureJsonData" not in source
        if same:
            report.unchanged.append(uid)
            return
        self._call(f"PUT datasource {uid}", self._api.datasource.update_datasource_by_uid, uid, source)
        report.updated.append(uid)
        logger.info("datasource %s updated", uid)

    def _push_folders(self, report: PushReport) -> dict[str, str]:
        dashboards = self.config.provisioning.dashboards
        uids: dict[str, str] = {}
        for folder in FOLDERS:
            uid, title = dashboards.folder_uid(folder), dashboards.folder_title(folder)
            uids[folder.key] = uid
            current = self._call(f"GET folder {uid}", self._api.folder.get_folder, uid, missing_ok=True)
            if current is None:
                self._call(f"POST folder {uid}", self._api.folder.create_folder, title, uid=uid)
                report.created.append(uid)
                logger.info("folder %s created", uid)
            elif current.get("title") != title:
                self._call(
                    f"PUT folder {uid}",
                    self._api.folder.update_folder,
                    uid,
                    title=title,
                    version=current.get("version"),
                    overwrite=True,
                )
                report.updated.append(uid)
            else:
                report.unchanged.append(uid)
        return uids

    def _push_dashboard(self, dashboard: Dashboard, folder_uid: str, exists: bool, report: PushReport) -> None:
        uid = dashboard.uid
        if exists:
            current = self._call(f"GET dashboard {uid}", self._api.dashboard.get_dashboard, uid, missing_ok=True)
            if current is not None:
                same_folder = current.get("meta", {}).get("folderUid") == folder_uid
                if same_folder and _comparable(current.get("dashboard", {})) == _comparable(dashboard.model):
                    report.unchanged.append(uid)
                    return
            else:
                exists = False
        body = {
            "dashboard": {**dashboard.model, "id": None},
            "folderUid": folder_uid,
            "message": _MESSAGE,
            # The uid is ours: overwrite updates in place rather than creating a copy.
            "overwrite": True,
        }
        self._call(f"POST dashboard {uid}", self._api.dashboard.update_dashboard, body)
        (report.updated if exists else report.created).append(uid)
        logger.info("dashboard %s %s", uid, "updated" if exists else "created")
