"""The API push against an in-process fake Grafana that checks every call against the documented HTTP API.

The fake follows the Grafana HTTP API reference (folder, dashboard, search and
data source APIs): paths, methods, bodies and status codes. Any call outside
those is recorded as unknown and fails the test.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import typer
from pydantic import SecretStr
from typer.testing import CliRunner

from dashboards.grafana import DashboardConfig, generate_dashboards
from dashboards.provisioning import ProvisioningConfig
from dashboards.push import GrafanaPushConfig, GrafanaPusher, GrafanaPushError
from econome.cli_dashboards import register
from econome.localservers import free_port
from inventory import Inventory, load_inventory, parse_inventory

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "glsa_test_token"  # noqa: S105 - the fake accepts only this one


@dataclass
class FakeGrafana:
    """State of the fake: what Grafana would hold, and every call it received."""

    calls: list[tuple[str, str]] = field(default_factory=list)
    bodies: list[tuple[str, str, Any]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_id: int = 1

    def count(self, method: str, prefix: str) -> int:
        return sum(1 for m, p in self.calls if m == method and p.startswith(prefix))


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGrafana

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        fake = self.fake
        url = urlparse(self.path)
        path, query = url.path, parse_qs(url.query)
        fake.calls.append((method, path))
        length = int(self.headers.get("Content-Length") or 0)
        body: Any = json.loads(self.rfile.read(length)) if length else None
        fake.bodies.append((method, path, body))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, {"message": "Unauthorized"})
            return
        if body is not None and self.headers.get("Content-Type", "").split(";")[0] != "application/json":
            fake.problems.append(f"{method} {path}: body is not application/json")
        parts = path.strip("/").split("/")
        route = (method, *parts[:3])
        if route[:3] == ("GET", "api", "search"):
            self._search(query)
        elif route[:3] == ("GET", "api", "folders") and len(parts) == 3:
            self._get(fake.folders, parts[2], "Folder not found")
        elif route[:3] == ("POST", "api", "folders") and len(parts) == 2:
            self._create_folder(body)
        elif route[:3] == ("PUT", "api", "folders") and len(parts) == 3:
            self._update_folder(parts[2], body)
        elif route == ("GET", "api", "dashboards", "uid") and len(parts) == 4:
            self._get_dashboard(parts[3])
        elif route == ("POST", "api", "dashboards", "db") and len(parts) == 3:
            self._save_dashboard(body)
        elif route == ("GET", "api", "datasources", "uid") and len(parts) == 4:
            self._get(fake.datasources, parts[3], "Data source not found")
        elif route[:3] == ("POST", "api", "datasources") and len(parts) == 2:
            self._create_datasource(body)
        elif route == ("PUT", "api", "datasources", "uid") and len(parts) == 4:
            self._update_datasource(parts[3], body)
        else:
            fake.unknown.append(f"{method} {self.path}")
            self._send(404, {"message": "Not found"})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # ---- documented endpoints

    def _get(self, table: dict[str, dict[str, Any]], uid: str, missing: str) -> None:
        if uid in table:
            self._send(200, table[uid])
        else:
            self._send(404, {"message": missing})

    def _search(self, query: dict[str, list[str]]) -> None:
        hits = [
            {
                "folderUid": d["folderUid"],
                "id": d["dashboard"]["id"],
                "tags": d["dashboard"].get("tags", []),
                "title": d["dashboard"]["title"],
                "type": "dash-db",
                "uid": uid,
            }
            for uid, d in sorted(self.fake.dashboards.items())
        ]
        if query.get("type") not in (None, ["dash-db"]):
            self.fake.problems.append(f"search type {query.get('type')}")
        for tag in query.get("tag", []):
            hits = [h for h in hits if tag in h["tags"]]
        self._send(200, hits)

    def _create_folder(self, body: dict[str, Any]) -> None:
        if set(body) - {"uid", "title", "parentUid", "description"} or "title" not in body:
            self.fake.problems.append(f"POST /api/folders body {body}")
        uid = body.get("uid") or f"gen{self.fake.next_id}"
        if uid in self.fake.folders:
            self._send(409, {"message": "a folder with the same uid already exists"})
            return
        folder = {"id": self.fake.next_id, "title": body["title"], "uid": uid, "url": f"/dashboards/f/{uid}/", "version": 1}
        self.fake.next_id += 1
        self.fake.folders[uid] = folder
        self._send(200, folder)

    def _update_folder(self, uid: str, body: dict[str, Any]) -> None:
        if uid not in self.fake.folders:
            self._send(404, {"message": "Folder not found"})
            return
        if set(body) - {"title", "version", "overwrite", "uid", "description"}:
            self.fake.problems.append(f"PUT /api/folders/{uid} body {body}")
        folder = self.fake.folders[uid]
        folder.update(title=body.get("title", folder["title"]), version=folder["version"] + 1)
        self._send(200, folder)

    def _get_dashboard(self, uid: str) -> None:
        stored = self.fake.dashboards.get(uid)
        if stored is None:
            self._send(404, {"message": "Dashboard not found"})
            return
        meta = {"folderUid": stored["folderUid"], "provisioned": False, "slug": uid, "version": stored["dashboard"]["version"]}
        self._send(200, {"dashboard": stored["dashboard"], "meta": meta})

    def _save_dashboard(self, body: dict[str, Any]) -> None:
        allowed = {"dashboard", "folderUid", "folderId", "message", "overwrite"}
        if set(body) - allowed or "dashboard" not in body:
            self.fake.problems.append(f"POST /api/dashboards/db keys {sorted(body)}")
        dashboard = dict(body["dashboard"])
        uid = dashboard.get("uid")
        if not uid or len(uid) > 40 or not dashboard.get("title"):
            self._send(400, {"message": "bad dashboard", "status": "bad-request"})
            return
        folder_uid = body.get("folderUid")
        if folder_uid not in self.fake.folders:
            self._send(400, {"message": "folder not found", "status": "not-found"})
            return
        existing = self.fake.dashboards.get(uid)
        if existing is not None and not body.get("overwrite"):
            self._send(412, {"message": "A dashboard with the same uid already exists", "status": "name-exists"})
            return
        dashboard["id"] = existing["dashboard"]["id"] if existing else self.fake.next_id
        dashboard["version"] = existing["dashboard"]["version"] + 1 if existing else 1
        self.fake.next_id += 1
        self.fake.dashboards[uid] = {"dashboard": dashboard, "folderUid": folder_uid}
        saved = {"id": dashboard["id"], "slug": uid, "status": "success", "uid": uid, "url": f"/d/{uid}/"}
        self._send(200, {**saved, "version": dashboard["version"]})

    def _create_datasource(self, body: dict[str, Any]) -> None:
        if not {"name", "type", "access", "url"} <= set(body):
            self.fake.problems.append(f"POST /api/datasources body {sorted(body)}")
        if any(d["name"] == body["name"] for d in self.fake.datasources.values()):
            self._send(409, {"message": "data source with the same name already exists"})
            return
        stored = {k: v for k, v in body.items() if k != "secureJsonData"}
        stored["id"] = self.fake.next_id
        stored["secureJsonFields"] = {k: True for k in body.get("secureJsonData", {})}
        self.fake.next_id += 1
        self.fake.datasources[body["uid"]] = stored
        self._send(200, {"datasource": stored, "id": stored["id"], "message": "Datasource added", "name": body["name"]})

    def _update_datasource(self, uid: str, body: dict[str, Any]) -> None:
        if uid not in self.fake.datasources:
            self._send(404, {"message": "Data source not found"})
            return
        self.fake.datasources[uid].update({k: v for k, v in body.items() if k != "secureJsonData"})
        self._send(200, {"datasource": self.fake.datasources[uid], "message": "Datasource updated"})


@pytest.fixture
def grafana() -> Iterator[tuple[str, FakeGrafana]]:
    fake = FakeGrafana()
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), name="fake-grafana", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert not fake.unknown, f"calls outside the Grafana HTTP API: {fake.unknown}"
    assert not fake.problems, fake.problems


@pytest.fixture(scope="module")
def commune() -> Inventory:
    return load_inventory(ROOT / "examples" / "commune.yaml")


def _for(config: GrafanaPushConfig, inventory: Inventory) -> GrafanaPushConfig:
    return config.model_copy(update={"provisioning": config.provisioning.for_organisation(inventory.organisation)})


def _push(url: str, inventory: Inventory, **kwargs: Any) -> Any:
    config = _for(GrafanaPushConfig(url=url, token=SecretStr(TOKEN), **kwargs), inventory)
    with GrafanaPusher(config) as pusher:
        return pusher.push(generate_dashboards(inventory, config.provisioning.dashboards))


def test_first_push_creates_folders_datasource_and_dashboards(grafana: tuple[str, FakeGrafana], commune: Inventory) -> None:
    url, fake = grafana
    report = _push(url, commune, influx_token=SecretStr("influx-read"))
    assert sorted(fake.folders) == ["valmont-batiments", "valmont-patrimoine", "valmont-travaux"]
    assert fake.folders["valmont-batiments"]["title"] == "Commune de Valmont — Bâtiments"
    assert len(fake.dashboards) == 16
    assert fake.dashboards["valmont-bat-mairie"]["folderUid"] == "valmont-batiments"
    assert fake.dashboards["valmont-travaux-ecole-curie"]["folderUid"] == "valmont-travaux"
    source = fake.datasources["valmont-influxdb"]
    assert source["type"] == "influxdb"
    assert source["jsonData"]["dbName"] == "econome"
    assert source["secureJsonFields"] == {"httpHeaderValue1": True}
    posted = [b for m, p, b in fake.bodies if (m, p) == ("POST", "/api/datasources")]
    assert posted[0]["secureJsonData"] == {"httpHeaderValue1": "Token influx-read"}
    saves = [b for m, p, b in fake.bodies if (m, p) == ("POST", "/api/dashboards/db")]
    assert len(saves) == 16
    assert all(s["overwrite"] is True and s["dashboard"]["id"] is None and s["folderUid"] for s in saves)
    assert len(report.created) == 16 + 3 + 1
    assert fake.count("GET", "/api/search") == 1


def test_rerun_creates_no_duplicate_and_no_new_version(grafana: tuple[str, FakeGrafana], commune: Inventory) -> None:
    url, fake = grafana
    _push(url, commune)
    versions = {uid: d["dashboard"]["version"] for uid, d in fake.dashboards.items()}
    before = len(fake.calls)
    report = _push(url, commune)
    again = fake.calls[before:]
    assert ("POST", "/api/dashboards/db") not in again
    assert ("POST", "/api/folders") not in again
    assert ("POST", "/api/datasources") not in again
    assert len(fake.dashboards) == 16
    assert len(fake.folders) == 3
    assert {uid: d["dashboard"]["version"] for uid, d in fake.dashboards.items()} == versions
    assert len(report.unchanged) == 16 + 3 + 1
    assert report.created == report.updated == []


def test_changed_dashboards_are_updated_in_place(grafana: tuple[str, FakeGrafana], commune: Inventory) -> None:
    url, fake = grafana
    _push(url, commune)
    fake.folders["valmont-travaux"]["title"] = "Renamed by hand"
    changed = ProvisioningConfig(dashboards=DashboardConfig(refresh="15m"), influx_url="http://influx.lan:8086")
    report = _push(url, commune, provisioning=changed)
    assert len(fake.dashboards) == 16
    assert all(d["dashboard"]["version"] == 2 for d in fake.dashboards.values())
    assert fake.dashboards["valmont-patrimoine"]["dashboard"]["refresh"] == "15m"
    assert fake.folders["valmont-travaux"]["title"] == "Commune de Valmont — Réception des travaux"
    assert fake.datasources["valmont-influxdb"]["url"] == "http://influx.lan:8086"
    assert sorted(report.updated)[:2] == ["valmont-bat-atelier", "valmont-bat-bibliotheque"]
    assert len(report.updated) == 16 + 1 + 1
    assert ("PUT", "/api/folders/valmont-travaux") in fake.calls
    assert ("PUT", "/api/datasources/uid/valmont-influxdb") in fake.calls


def test_foreign_econome_dashboards_are_reported_not_deleted(grafana: tuple[str, FakeGrafana], commune: Inventory) -> None:
    url, fake = grafana
    folder = {"id": 99, "title": "Commune de Valmont — Bâtiments", "uid": "valmont-batiments", "version": 1}
    fake.folders["valmont-batiments"] = folder
    tags = ["econome", "org:valmont"]
    fake.dashboards["valmont-bat-demolie"] = {
        "dashboard": {"id": 100, "tags": tags, "title": "Démolie", "uid": "valmont-bat-demolie", "version": 3},
        "folderUid": "valmont-batiments",
    }
    # Another commune's dashboard in the same Grafana is not this inventory's to report.
    fake.dashboards["autre-commune-bat-mairie"] = {
        "dashboard": {"id": 101, "tags": ["econome", "org:autre"], "title": "M", "uid": "autre-commune-bat-mairie", "version": 1},
        "folderUid": "autre-commune-batiments",
    }
    report = _push(url, commune, push_datasource=False)
    assert report.stale == ["valmont-bat-demolie"]
    assert "valmont-bat-demolie" in fake.dashboards
    assert not any(p.startswith("/api/datasources") for _, p in fake.calls)


def test_a_commune_of_prefix_econome_reports_only_its_own_stale(grafana: tuple[str, FakeGrafana], commune: Inventory) -> None:
    # With grafana_prefix: econome, the organisation's tag must not be the tag all communes carry.
    url, fake = grafana
    text = (ROOT / "examples" / "commune.yaml").read_text(encoding="utf-8")
    old = "name: Commune de Valmont, population: 8400, timezone: Europe/Paris, school_holiday_zone: B}"
    assert old in text
    kept = parse_inventory(text.replace(old, old.replace("Valmont", "Kept").replace("B}", "B, grafana_prefix: econome}")))
    _push(url, commune, push_datasource=False)
    first = _push(url, kept, push_datasource=False)
    assert len(fake.dashboards) == 32  # 16 per commune
    assert first.stale == []
    gone = fake.dashboards.pop("econome-bat-mairie")
    fake.dashboards["econome-bat-demolie"] = {**gone, "dashboard": {**gone["dashboard"], "uid": "econome-bat-demolie"}}
    assert _push(url, kept, push_datasource=False).stale == ["econome-bat-demolie"]
    assert _push(url, commune, push_datasource=False).stale == []


def test_refused_token_is_a_push_error(grafana: tuple[str, FakeGrafana], commune: Inventory) -> None:
    url, _ = grafana
    config = _for(GrafanaPushConfig(url=url, token=SecretStr("wrong")), commune)
    refused = "refused GET datasource valmont-influxdb: 401"
    with GrafanaPusher(config) as pusher, pytest.raises(GrafanaPushError, match=refused):
        pusher.push(generate_dashboards(commune))


def test_unreachable_grafana_is_a_push_error(commune: Inventory) -> None:
    config = _for(GrafanaPushConfig(url=f"http://127.0.0.1:{free_port()}", token=SecretStr(TOKEN)), commune)
    with GrafanaPusher(config) as pusher, pytest.raises(GrafanaPushError, match=r"unreachable|failed"):
        pusher.push(generate_dashboards(commune))


def test_cli_push_twice(grafana: tuple[str, FakeGrafana]) -> None:
    url, fake = grafana
    app = typer.Typer()
    register(app)
    args = ["dashboards", "push", str(ROOT / "examples" / "commune.yaml"), "--url", url, "--token", TOKEN]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "20 created, 0 updated, 0 unchanged" in first.output
    second = CliRunner().invoke(app, args)
    assert "0 created, 0 updated, 20 unchanged" in second.output
    assert len(fake.dashboards) == 16
    refused = CliRunner().invoke(app, [*args[:-1], "nope"])
    assert refused.exit_code == 1
    assert "401" in refused.output
