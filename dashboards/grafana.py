"""Grafana dashboards generated from the inventory, with InfluxQL queries only.

Three kinds of dashboard come out of one :class:`~inventory.Inventory`:

- **Vue d'ensemble du patrimoine** (one): energy per building and per m²
  over the period, a ranking, the open anomalies and the data completeness
  of every meter and sensor;
- **one per building**: consumption by usage with the opening hours shaded,
  expected against observed consumption per metered usage (with the residual),
  indoor temperatures against the setpoints, heating energy against the
  outdoor temperature, water night flow, electric power, anomaly annotations;
- **Réception des travaux** (one per renovated building): before and after
  the works, split at a date the user can move.

Every query is InfluxQL, so the dashboards work on InfluxDB 1.x, on 2.x
through a DBRP mapping and on 3.x. They read the schema of ``streams``:
``reading`` (raw values), ``point_status`` (completeness), ``agg_point``,
``agg_usage``, ``agg_building`` (window aggregates tagged ``window`` = 10m,
1h or 1d), ``anomaly`` and ``expected`` (hourly expected against observed
consumption, written by ``econome detect --influx``). Every dashboard has a ``building`` variable and a
``period`` variable (the aggregation window); uids are derived from the
inventory ids, so they are stable across runs and installations. Every uid
(dashboards, folders, datasource) starts with the organisation's prefix
(``organisation.grafana_prefix``, else a slug of its name), folder titles name
the organisation, and the dashboards' links follow its tag: several communes
share one Grafana without one's dashboards replacing or listing another's.
Labels are French and say their unit.

Sample config (all fields have defaults)::

    datasource_uid: valmont-influxdb     # default: <prefix>-influxdb
    uid_prefix: valmont                  # default: from the inventory's organisation
    default_range: now-7d
    default_period: 1h

>>> from pathlib import Path
>>> from inventory import load_inventory
>>> inv = load_inventory(Path("examples/commune.yaml"))
>>> [d.uid for d in generate_dashboards(inv)][:3]
['valmont-patrimoine', 'valmont-bat-mairie', 'valmont-bat-bibliotheque']
"""

# InfluxQL text for Grafana, built from inventory ids (slugs checked by ID_PATTERN), never from user input.
# ruff: noqa: S608

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from inventory import Building, Inventory, Organisation, Point, Quantity, Usage
from inventory.model import GRAFANA_PREFIX_PATTERN, WEEKDAYS

__all__ = [
    "EXPECTED_TITLE",
    "FOLDERS",
    "Dashboard",
    "DashboardConfig",
    "Folder",
    "QueryRef",
    "building_dashboard",
    "commissioning_dashboard",
    "generate_dashboards",
    "interpolate",
    "iter_queries",
    "portfolio_dashboard",
]

JSON = dict[str, Any]
Period = Literal["10m", "1h", "1d"]

SCHEMA_VERSION = 39
"""Dashboard schema of Grafana 10.4 / 11: what the generated JSON follows."""

_UID_MAX = 40  # Grafana refuses longer uids.


class DashboardConfig(BaseModel):
    """How the dashboards are generated.

    >>> from inventory import Organisation
    >>> org = Organisation(name="Commune de Valmont", population=8400, school_holiday_zone="B")
    >>> DashboardConfig().for_organisation(org).datasource_uid
    'valmont-influxdb'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    datasource_uid: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9_-]{1,40}$")
    """Uid of the InfluxDB (InfluxQL) datasource every panel uses; None: ``<uid_prefix>-influxdb``."""
    uid_prefix: str | None = Field(default=None, pattern=GRAFANA_PREFIX_PATTERN)
    """Prefix of every dashboard and folder uid; None: the organisation's (:attr:`Organisation.uid_prefix`)."""
    organisation: str | None = None
    """Name in the folder titles; None: the organisation's name."""
    default_range: str = "now-7d"
    """Time range a dashboard opens on (Grafana syntax)."""
    default_period: Period = "1h"
    """Aggregation window selected when a dashboard opens."""
    refresh: str = "5m"
    """Auto-refresh interval."""
    raw_retention_policy: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_]+$")
    """Retention policy of raw readings and point status (``raw`` after ``econome influx setup``)."""

    def for_organisation(self, organisation: Organisation) -> DashboardConfig:
        """This config with what it leaves unset taken from the organisation.

        Args:
            organisation: The inventory's organisation.

        Returns:
            A config whose prefix, datasource uid and organisation name are set.
        """
        prefix = self.uid_prefix or organisation.uid_prefix
        return self.model_copy(
            update={
                "uid_prefix": prefix,
                "datasource_uid": self.datasource_uid or f"{prefix}-influxdb",
                "organisation": self.organisation or organisation.name,
            }
        )

    @property
    def prefix(self) -> str:
        """The uid prefix of a config given its organisation (:meth:`for_organisation`)."""
        if self.uid_prefix is None:
            msg = "DashboardConfig.uid_prefix is unset: call for_organisation() first"
            raise ValueError(msg)
        return self.uid_prefix

    @property
    def organisation_tag(self) -> str:
        """The tag of this organisation's dashboards: ``org:<prefix>``.

        Not the bare prefix: with ``grafana_prefix: econome`` it would be the tag every
        commune's dashboards carry, and links and ``dashboards push`` would reach them all.

        >>> DashboardConfig(uid_prefix="econome").organisation_tag
        'org:econome'
        """
        return f"org:{self.prefix}"

    @property
    def datasource(self) -> str:
        """The datasource uid: ``datasource_uid``, else ``<prefix>-influxdb``."""
        return self.datasource_uid or f"{self.prefix}-influxdb"

    def folder_uid(self, folder: Folder) -> str:
        """The uid of a folder: ``<prefix>-<key>``."""
        return f"{self.prefix}-{folder.key}"

    def folder_title(self, folder: Folder) -> str:
        """The title of a folder, which names the organisation: Grafana refuses two folders of one title."""
        return f"{self.organisation or 'Econome'} — {folder.title}"


@dataclass(frozen=True, slots=True)
class Folder:
    """A Grafana folder the dashboards are filed in."""

    key: str
    title: str


FOLDERS: tuple[Folder, ...] = (
    Folder("patrimoine", "Patrimoine"),
    Folder("batiments", "Bâtiments"),
    Folder("travaux", "Réception des travaux"),
)
"""The folders, by key; the folder uid is ``<uid_prefix>-<key>``, its title ``<organisation> — <title>``."""


@dataclass(frozen=True, slots=True)
class Dashboard:
    """A generated dashboard: its uid, its folder key and its JSON model."""

    uid: str
    title: str
    folder: str
    model: JSON


@dataclass(frozen=True, slots=True)
class QueryRef:
    """One InfluxQL query of a dashboard and where it sits."""

    dashboard_uid: str
    where: str
    """``panel 3 «Titre» A``, ``variable building`` or ``annotation «Anomalies»``."""
    query: str


# --------------------------------------------------------------------------- labels

_USAGE_FR: dict[Usage, str] = {
    Usage.HEATING: "Chauffage",
    Usage.LIGHTING: "Éclairage",
    Usage.DHW: "Eau chaude sanitaire",
    Usage.VENTILATION: "Ventilation",
    Usage.COOLING: "Climatisation",
    Usage.GENERAL: "Électricité générale",
    Usage.WATER: "Eau",
    Usage.COMFORT: "Confort",
    Usage.WEATHER: "Météo",
    Usage.OTHER: "Autres",
}
_ENERGY_USAGES = (Usage.HEATING, Usage.DHW, Usage.VENTILATION, Usage.COOLING, Usage.LIGHTING, Usage.GENERAL, Usage.OTHER)
_WEEKDAY_FR = ("lun", "mar", "mer", "jeu", "ven", "sam", "dim")
_PERIOD_FR: dict[str, str] = {"10m": "10 minutes", "1h": "1 heure", "1d": "1 jour"}
_UNIT_KWH_M2 = "suffix: kWh/m²"
_UNIT_CO2 = "suffix: kgCO₂e"


def _uid(config: DashboardConfig, *parts: str) -> str:
    uid = "-".join((config.prefix, *parts))
    if len(uid) <= _UID_MAX:
        return uid
    # A long building id keeps a readable head and a stable hash tail.
    digest = hashlib.sha1(uid.encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{uid[: _UID_MAX - 9]}-{digest}"


# --------------------------------------------------------------------------- JSON pieces


class _Builder:
    """Accumulates panels of one dashboard and lays them out on the 24-column grid."""

    def __init__(self, config: DashboardConfig, tz: str) -> None:
        self.config = config
        self.tz = tz
        self.panels: list[JSON] = []
        self._x = 0
        self._y = 0
        self._row_h = 0

    @property
    def ds(self) -> JSON:
        return {"type": "influxdb", "uid": self.config.datasource}

    def tzc(self) -> str:
        """The time-zone clause: days and hours start at local midnight, as the aggregates do."""
        return f"tz('{self.tz}')"

    def target(self, ref: str, query: str, *, alias: str = "", table: bool = False) -> JSON:
        out: JSON = {
            "datasource": self.ds,
            "query": query,
            "rawQuery": True,
            "refId": ref,
            "resultFormat": "table" if table else "time_series",
        }
        if alias:
            out["alias"] = alias
        return out

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y},
                "id": len(self.panels) + 1,
                "panels": [],
                "title": title,
                "type": "row",
            }
        )
        self._y += 1

    def add(self, panel: JSON, w: int, h: int) -> None:
        if self._x + w > 24:
            self._newline()
        panel["gridPos"] = {"h": h, "w": w, "x": self._x, "y": self._y}
        panel["id"] = len(self.panels) + 1
        self._x += w
        self._row_h = max(self._row_h, h)
        self.panels.append(panel)

    def _newline(self) -> None:
        if self._x:
            self._y += self._row_h
        self._x = 0
        self._row_h = 0

    # ---- panel kinds

    def _base(self, kind: str, title: str, description: str, targets: list[JSON], unit: str) -> JSON:
        return {
            "datasource": self.ds,
            "description": description,
            "fieldConfig": {"defaults": {"unit": unit, "decimals": None}, "overrides": []},
            "options": {},
            "targets": targets,
            "title": title,
            "type": kind,
        }

    def stat(self, title: str, description: str, target: JSON, unit: str, *, w: int = 6, decimals: int = 0) -> JSON:
        panel = self._base("stat", title, description, [target], unit)
        panel["fieldConfig"]["defaults"]["decimals"] = decimals
        panel["options"] = {
            "colorMode": "value",
            "graphMode": "none",
            "reduceOptions": {"calcs": ["sum"], "fields": "", "values": False},
            "textMode": "value",
        }
        self.add(panel, w, 4)
        return panel

    def timeseries(
        self,
        title: str,
        description: str,
        targets: list[JSON],
        unit: str,
        *,
        bars: bool = False,
        stack: bool = False,
        w: int = 12,
        h: int = 9,
    ) -> JSON:
        panel = self._base("timeseries", title, description, targets, unit)
        panel["fieldConfig"]["defaults"]["decimals"] = 1
        panel["fieldConfig"]["defaults"]["custom"] = {
            "drawStyle": "bars" if bars else "line",
            "fillOpacity": 80 if bars else 10,
            "lineWidth": 1,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"group": "A", "mode": "normal" if stack else "none"},
        }
        panel["options"] = {
            "legend": {"calcs": ["sum"] if bars else ["mean"], "displayMode": "table", "placement": "bottom"},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
        self.add(panel, w, h)
        return panel

    def table(self, title: str, description: str, target: JSON, *, sort_by: str, desc: bool, w: int = 12, h: int = 9) -> JSON:
        panel = self._base("table", title, description, [target], "none")
        panel["fieldConfig"]["defaults"]["decimals"] = 1
        panel["options"] = {"cellHeight": "sm", "footer": {"show": False}, "showHeader": True}
        panel["transformations"] = [
            {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": {}}},
            {"id": "sortBy", "options": {"sort": [{"desc": desc, "field": sort_by}]}},
        ]
        self.add(panel, w, h)
        return panel

    def bargauge(self, title: str, description: str, target: JSON, unit: str, *, w: int = 12, h: int = 9) -> JSON:
        panel = self._base("bargauge", title, description, [target], unit)
        panel["fieldConfig"]["defaults"]["decimals"] = 0
        panel["options"] = {
            "displayMode": "gradient",
            "orientation": "horizontal",
            "reduceOptions": {"calcs": ["sum"], "fields": "", "values": False},
            "showUnfilled": True,
        }
        self.add(panel, w, h)
        return panel

    def text(self, title: str, content: str, *, w: int = 24, h: int = 5) -> JSON:
        panel: JSON = {"options": {"content": content, "mode": "markdown"}, "title": title, "type": "text"}
        self.add(panel, w, h)
        return panel


def _rename(panel: JSON, names: Mapping[str, str]) -> None:
    """Give series French display names (series are named after tag values)."""
    for raw, label in sorted(names.items()):
        panel["fieldConfig"]["overrides"].append(
            {"matcher": {"id": "byName", "options": raw}, "properties": [{"id": "displayName", "value": label}]}
        )


def _custom_var(name: str, label: str, values: Sequence[str], current: str, texts: Mapping[str, str]) -> JSON:
    return {
        "current": {"selected": True, "text": texts.get(current, current), "value": current},
        "hide": 0,
        "label": label,
        "name": name,
        "options": [{"selected": v == current, "text": texts.get(v, v), "value": v} for v in values],
        "query": ",".join(values),
        "type": "custom",
    }


def _period_var(config: DashboardConfig) -> JSON:
    var = _custom_var("period", "Pas d'agrégation", ["10m", "1h", "1d"], config.default_period, _PERIOD_FR)
    var["description"] = "Fenêtre des agrégats (agg_*) et pas des graphiques."
    return var


def _constant_building_var(building: Building) -> JSON:
    return {
        "description": f"{building.name}: le tableau de bord est généré pour ce bâtiment.",
        "hide": 2,
        "label": "Bâtiment",
        "name": "building",
        "query": building.id,
        "skipUrlSync": False,
        "type": "constant",
    }


def _tags(config: DashboardConfig) -> list[str]:
    # The organisation's tag keeps the "Tableaux Econome" links within its own dashboards.
    return ["econome", config.organisation_tag]


def _dashboard(
    config: DashboardConfig,
    uid: str,
    title: str,
    tags: list[str],
    builder: _Builder,
    variables: list[JSON],
    annotations: list[JSON],
    *,
    time_from: str | None = None,
) -> JSON:
    builtin: JSON = {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }
    return {
        "annotations": {"list": [builtin, *annotations]},
        "description": "Généré par Econome depuis l'inventaire : ne pas modifier à la main.",
        "editable": False,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "asDropdown": True,
                "icon": "external link",
                "includeVars": False,
                "keepTime": True,
                "tags": _tags(config),
                "title": "Tableaux Econome",
                "type": "dashboards",
            }
        ],
        "panels": builder.panels,
        "refresh": config.refresh,
        "schemaVersion": SCHEMA_VERSION,
        "tags": [*_tags(config), *tags],
        "templating": {"list": variables},
        "time": {"from": time_from or config.default_range, "to": "now"},
        "timepicker": {},
        "timezone": builder.tz,
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "monday",
    }


def _opening_hours(building: Building, tz: str) -> list[JSON]:
    """Query-free annotations that shade the weekly opening hours (Grafana time regions).

    Days that share a range become one cron region, so a Monday-to-Friday
    school makes two annotations rather than ten.
    """
    by_range: dict[tuple[time, time], list[int]] = {}
    for day_index, day in enumerate(WEEKDAYS):
        for rng in building.schedule.opening_hours(day):
            by_range.setdefault((rng.start, rng.end), []).append(day_index)
    out: list[JSON] = []
    for (start, end), days in sorted(by_range.items()):
        start_d = timedelta(hours=start.hour, minutes=start.minute)
        end_d = timedelta(hours=24) if end == time(0) else timedelta(hours=end.hour, minutes=end.minute)
        minutes = int((end_d - start_d).total_seconds() // 60)
        cron_days = ",".join(str(d + 1) for d in days)  # cron: 1 = Monday
        label = ",".join(_WEEKDAY_FR[d] for d in days)
        out.append(
            {
                "datasource": {"type": "datasource", "uid": "grafana"},
                "enable": True,
                "hide": True,
                "iconColor": "rgba(115, 191, 105, 0.12)",
                "name": f"Ouvert {label} {start:%H:%M}-{end:%H:%M}",
                "target": {
                    "queryType": "timeRegions",
                    "refId": "Anno",
                    "timeRegion": {
                        "cronExpr": f"{start.minute} {start.hour} * * {cron_days}",
                        "duration": f"{minutes}m",
                        "mode": "cron",
                        "timezone": tz,
                    },
                },
            }
        )
    return out


def _anomaly_annotation(ds: JSON, building_filter: str) -> JSON:
    return {
        "datasource": ds,
        "enable": True,
        "hide": False,
        "iconColor": "red",
        "name": "Anomalies",
        "query": (
            f'SELECT "explanation", "score", "excess_kwh", "end_ms" FROM "anomaly" WHERE {building_filter} AND $timeFilter'
        ),
        "tagsColumn": "kind,usage,state",
        "textColumn": "explanation",
        "timeEndColumn": "end_ms",
        "titleColumn": "",
    }


# --------------------------------------------------------------------------- portfolio


def portfolio_dashboard(inventory: Inventory, config: DashboardConfig | None = None) -> Dashboard:
    """The portfolio overview: who consumes what, per m², and can the figures be trusted.

    Args:
        inventory: The portfolio.
        config: Generation settings; defaults when None.

    Returns:
        The dashboard, filed in the ``patrimoine`` folder.

    >>> from pathlib import Path
    >>> from inventory import load_inventory
    >>> d = portfolio_dashboard(load_inventory(Path("examples/commune.yaml")))
    >>> d.uid, [v["name"] for v in d.model["templating"]["list"]]
    ('valmont-patrimoine', ['building', 'period'])
    """
    config = (config or DashboardConfig()).for_organisation(inventory.organisation)
    org = inventory.organisation
    b = _Builder(config, org.timezone)
    sel = '"building" =~ /^$building$/'
    agg = f"""FROM "agg_building" WHERE {sel} AND "window" = '$period' AND $timeFilter"""

    b.row("Sur la période")
    for title, field, unit, desc in (
        ("Énergie (kWh)", "kwh", "kwatth", "Énergie finale de tous les usages des bâtiments choisis."),
        ("Coût (€)", "eur", "currencyEUR", "Coût au tarif de l'inventaire."),
        ("Émissions (kgCO₂e)", "kgco2e", _UNIT_CO2, "Émissions de gaz à effet de serre."),
        ("Eau (m³)", "m3", "m3", "Volume d'eau consommé."),
    ):
        b.stat(title, desc, b.target("A", f'SELECT sum("{field}") {agg}'), unit)

    b.row("Comparaison des bâtiments")
    p = b.bargauge(
        "Énergie par bâtiment (kWh)",
        "Somme des agrégats de la période choisie.",
        b.target("A", f'SELECT sum("kwh") {agg} GROUP BY "building"', alias="$tag_building"),
        "kwatth",
    )
    p = b.bargauge(
        "Énergie par m² chauffé (kWh/m²)",
        "Énergie rapportée à la surface chauffée de l'inventaire : l'indicateur du décret tertiaire.",
        b.target("A", f'SELECT sum("kwh_per_m2") {agg} GROUP BY "building"', alias="$tag_building"),
        _UNIT_KWH_M2,
    )
    p = b.table(
        "Classement des bâtiments (kWh/m²)",
        "Du plus consommateur au plus sobre, par m² chauffé.",
        b.target(
            "A",
            'SELECT sum("kwh_per_m2") AS "kWh/m²", sum("kwh") AS "kWh", sum("eur") AS "€", '
            f'sum("kgco2e") AS "kgCO₂e", sum("m3") AS "Eau m³" {agg} GROUP BY "building"',
            table=True,
        ),
        sort_by="kWh/m²",
        desc=True,
        w=24,
    )
    p["transformations"][0]["options"]["renameByName"] = {"building": "Bâtiment"}
    names = {bld.id: bld.name for _, bld in inventory.buildings()}
    p["fieldConfig"]["overrides"].append(
        {
            "matcher": {"id": "byName", "options": "building"},
            "properties": [
                {
                    "id": "mappings",
                    "value": [{"options": {k: {"text": v} for k, v in sorted(names.items())}, "type": "value"}],
                }
            ],
        }
    )
    p = b.timeseries(
        "Énergie par bâtiment dans le temps (kWh)",
        "Un bâton par pas d'agrégation.",
        [
            b.target(
                "A",
                f'SELECT sum("kwh") {agg} GROUP BY time($period), "building" fill(none) {b.tzc()}',
                alias="$tag_building",
            )
        ],
        "kwatth",
        bars=True,
        stack=True,
        w=24,
    )
    _rename(p, names)

    b.row("Anomalies et qualité des données")
    b.table(
        "Anomalies ouvertes",
        "Anomalies non résolues (état open ou ongoing) commencées avant la fin de la période, avec leur coût.",
        b.target(
            "A",
            'SELECT last("score") AS "Score", last("excess_kwh") AS "Surconsommation kWh", '
            'last("excess_eur") AS "Surcoût €", last("explanation") AS "Explication" '
            f"""FROM "anomaly" WHERE {sel} AND "state" != 'resolved' AND time <= ${{__to}}ms """
            'GROUP BY "building", "usage", "kind"',
            table=True,
        ),
        sort_by="Surcoût €",
        desc=True,
    )
    p = b.table(
        "Complétude des données par compteur et capteur (%)",
        "Part du temps où le point a donné une valeur (point_status, toutes les 5 minutes). "
        "Figé : la valeur ne bouge plus. Âge : secondes depuis la dernière lecture (-1 : jamais lu).",
        b.target(
            "A",
            'SELECT 100 * (1 - mean("missing")) AS "Complétude %", 100 * mean("stale") AS "Figé %", '
            f'last("age_s") AS "Âge s" FROM "point_status" WHERE {sel} AND $timeFilter GROUP BY "building", "point"',
            table=True,
        ),
        sort_by="Complétude %",
        desc=False,
    )
    p["fieldConfig"]["overrides"].append(
        {
            "matcher": {"id": "byName", "options": "Complétude %"},
            "properties": [
                {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                {
                    "id": "thresholds",
                    "value": {
                        "mode": "absolute",
                        "steps": [
                            {"color": "red", "value": None},
                            {"color": "orange", "value": 90},
                            {"color": "green", "value": 98},
                        ],
                    },
                },
            ],
        }
    )
    b.stat(
        "Points muets (dernier état)",
        "Points sans lecture récente au dernier contrôle de complétude.",
        b.target(
            "A",
            'SELECT sum("missing") FROM (SELECT last("missing") AS "missing" FROM "point_status" '
            f'WHERE {sel} AND $timeFilter GROUP BY "point")',
        ),
        "none",
    )

    # The inventory's buildings, not the tag values of "reading": a building known from imported Linky/Gazpar
    # files older than the raw retention (or any building 90 days after its last reading) would drop out.
    ids = [bld.id for _, bld in inventory.buildings()]
    building_var: JSON = {
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "description": "Les bâtiments de l'inventaire.",
        "hide": 0,
        "includeAll": True,
        "label": "Bâtiment",
        "multi": True,
        "name": "building",
        "options": [
            {"selected": True, "text": "All", "value": "$__all"},
            *({"selected": False, "text": i, "value": i} for i in ids),
        ],
        "query": ",".join(ids),
        "type": "custom",
    }
    uid = _uid(config, "patrimoine")
    title = f"{org.name} — Vue d'ensemble du patrimoine"
    model = _dashboard(
        config,
        uid,
        title,
        ["patrimoine"],
        b,
        [building_var, _period_var(config)],
        [_anomaly_annotation(b.ds, sel)],
    )
    return Dashboard(uid, title, "patrimoine", model)


# --------------------------------------------------------------------------- one building


def _points(building: Building, quantity: Quantity, usage: Usage | None = None) -> list[Point]:
    return [p for p in building.points if p.quantity is quantity and (usage is None or p.usage is usage)]


def _refs() -> Iterator[str]:
    for i in range(26):
        yield chr(ord("A") + i)


_COUNTER_QUANTITIES = (Quantity.ACTIVE_ENERGY, Quantity.HEAT_ENERGY, Quantity.GAS_VOLUME)
EXPECTED_TITLE = "Consommation attendue / observée"
"""Title of the panels of expected against observed consumption, followed by the usage and unit."""


def _metered_usages(building: Building) -> list[Usage]:
    """The usages a counter of the building measures (with those a shared meter also serves), water last."""
    found: set[Usage] = set()
    for point in building.points:
        if not point.cumulative:
            continue
        if point.quantity is Quantity.WATER_VOLUME:
            found.add(Usage.WATER)
        elif point.quantity in _COUNTER_QUANTITIES:
            found.update(u for u in (point.usage, *point.serves) if u in _ENERGY_USAGES)
    return [u for u in (*_ENERGY_USAGES, Usage.WATER) if u in found]


def _expected_panel(b: _Builder, sel: str, usage: Usage) -> None:
    """Expected against observed consumption of one usage, with the residual, from the ``expected`` measurement.

    ``econome detect --influx`` writes one point per hour (anomalies.expected_sink); the sums
    per ``$period`` make hours, days or (at 10 minutes) the hours themselves.
    """
    water = usage is Usage.WATER
    unit, label = ("m3", "m³") if water else ("kwatth", "kWh")
    p = b.timeseries(
        f"{EXPECTED_TITLE} — {_USAGE_FR[usage]} ({label})",
        "Ce que le bâtiment aurait dû consommer (modèle de détection : météo, horaires, calendrier) "
        "face à ce qu'il a consommé ; l'écart observé − attendu en barres. Vide tant que le modèle "
        "n'a pas assez d'historique, et les heures sans relevé n'ont ni observé ni écart.",
        [
            b.target(
                "A",
                'SELECT sum("expected") AS "Attendu", sum("observed") AS "Observé", sum("residual") AS "Écart" '
                f"""FROM "expected" WHERE {sel} AND "usage" = '{usage.value}' AND $timeFilter """
                f"GROUP BY time($period) fill(none) {b.tzc()}",
                alias="$col",
            )
        ],
        unit,
    )
    overrides = p["fieldConfig"]["overrides"]
    for name, color in (("Attendu", "blue"), ("Observé", "red")):
        overrides.append(
            {
                "matcher": {"id": "byName", "options": name},
                "properties": [{"id": "color", "value": {"fixedColor": color, "mode": "fixed"}}],
            }
        )
    overrides.append(
        {
            "matcher": {"id": "byName", "options": "Écart"},
            "properties": [
                {"id": "custom.drawStyle", "value": "bars"},
                {"id": "custom.fillOpacity", "value": 60},
                {"id": "color", "value": {"fixedColor": "orange", "mode": "fixed"}},
            ],
        }
    )


_TO_LITRES = {"m3": 1000.0, "L": 1.0}
_TO_KW = {"W": 0.001, "kW": 1.0}


def building_dashboard(inventory: Inventory, building: Building, config: DashboardConfig | None = None) -> Dashboard:
    """The dashboard of one building; its panels follow the points the building has.

    Args:
        inventory: The portfolio (for the timezone and the weather points).
        building: The building.
        config: Generation settings; defaults when None.

    Returns:
        The dashboard, filed in the ``batiments`` folder.

    >>> from pathlib import Path
    >>> from inventory import load_inventory
    >>> inv = load_inventory(Path("examples/commune.yaml"))
    >>> d = building_dashboard(inv, inv.building("mairie"))
    >>> d.uid, d.title
    ('valmont-bat-mairie', 'Hôtel de ville — Bâtiment')
    """
    config = (config or DashboardConfig()).for_organisation(inventory.organisation)
    tz = inventory.organisation.timezone
    b = _Builder(config, tz)
    sel = "\"building\" = '$building'"
    usages = sorted({p.usage for p in building.points if p.usage in _ENERGY_USAGES}, key=_ENERGY_USAGES.index)

    b.row(f"{building.name} — {building.heated_area_m2:g} m² chauffés")
    agg = f"""FROM "agg_building" WHERE {sel} AND "window" = '$period' AND $timeFilter"""
    for title, field, unit in (
        ("Énergie (kWh)", "kwh", "kwatth"),
        ("Énergie par m² chauffé (kWh/m²)", "kwh_per_m2", _UNIT_KWH_M2),
        ("Coût (€)", "eur", "currencyEUR"),
        ("Eau (m³)", "m3", "m3"),
    ):
        b.stat(title, "Somme sur la période.", b.target("A", f'SELECT sum("{field}") {agg}'), unit, decimals=1)

    if usages:
        p = b.timeseries(
            "Consommation par usage (kWh)",
            "Énergie par usage et par pas d'agrégation ; les heures d'ouverture sont ombrées.",
            [
                b.target(
                    "A",
                    f'SELECT sum("kwh") FROM "agg_usage" WHERE {sel} AND "window" = \'$period\' AND $timeFilter '
                    f'GROUP BY time($period), "usage" fill(none) {b.tzc()}',
                    alias="$tag_usage",
                )
            ],
            "kwatth",
            bars=True,
            stack=True,
            w=24,
        )
        _rename(p, {u.value: _USAGE_FR[u] for u in usages})

    for usage in _metered_usages(building):
        _expected_panel(b, sel, usage)

    temps = _points(building, Quantity.TEMPERATURE, Usage.COMFORT)
    if temps:
        occ, unocc = building.heating_setpoint_occupied_c, building.heating_setpoint_unoccupied_c
        targets = [
            b.target(
                "A",
                f"""SELECT mean("value") FROM "reading" WHERE {sel} AND "quantity" = 'temperature' """
                f"""AND "usage" = 'comfort' AND $timeFilter GROUP BY time($__interval), "zone" fill(none)""",
                alias="$tag_zone",
            )
        ]
        if _points(building, Quantity.SETPOINT):
            targets.append(
                b.target(
                    "B",
                    f"""SELECT mean("value") FROM "reading" WHERE {sel} AND "quantity" = 'setpoint' """
                    """AND $timeFilter GROUP BY time($__interval), "zone" fill(none)""",
                    alias="Consigne $tag_zone",
                )
            )
        p = b.timeseries(
            "Températures intérieures et consignes (°C)",
            f"Moyenne par zone. Lignes pointillées : consigne d'occupation {occ:g} °C et "
            f"d'inoccupation {unocc:g} °C (inventaire) ; les heures d'ouverture sont ombrées.",
            targets,
            "celsius",
        )
        panel_defaults = p["fieldConfig"]["defaults"]
        panel_defaults["custom"]["thresholdsStyle"] = {"mode": "dashed"}
        panel_defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [
                {"color": "transparent", "value": None},
                {"color": "blue", "value": unocc},
                {"color": "orange", "value": occ},
            ],
        }
        _rename(p, {z.id: z.name for z in building.zones})

    if any(p.usage is Usage.HEATING for p in building.points):
        p = b.timeseries(
            "Chauffage et température extérieure",
            "Énergie de chauffage par pas (barres, kWh) et température extérieure moyenne (ligne, °C, axe de droite).",
            [
                b.target(
                    "A",
                    f"""SELECT sum("kwh") FROM "agg_usage" WHERE {sel} AND "usage" = 'heating' AND "window" = '$period' """
                    f"AND $timeFilter GROUP BY time($period) fill(none) {b.tzc()}",
                    alias="Chauffage (kWh)",
                ),
                b.target(
                    "B",
                    """SELECT mean("value") FROM "reading" WHERE "usage" = 'weather' AND "quantity" = 'temperature' """
                    f"AND $timeFilter GROUP BY time($period) fill(none) {b.tzc()}",
                    alias="Température extérieure (°C)",
                ),
            ],
            "kwatth",
            bars=True,
        )
        p["fieldConfig"]["overrides"].append(
            {
                "matcher": {"id": "byFrameRefID", "options": "B"},
                "properties": [
                    {"id": "unit", "value": "celsius"},
                    {"id": "custom.axisPlacement", "value": "right"},
                    {"id": "custom.drawStyle", "value": "line"},
                    {"id": "custom.fillOpacity", "value": 0},
                    {"id": "color", "value": {"fixedColor": "blue", "mode": "fixed"}},
                ],
            }
        )

    water = _points(building, Quantity.WATER_VOLUME)
    if water:
        hourly, nightly = [], []
        for ref, point in zip(_refs(), water, strict=False):
            inner = (
                f'SELECT non_negative_difference(last("value")) * {_TO_LITRES[point.unit]:g} AS "flow" FROM "reading" '
                f"""WHERE {sel} AND "point" = '{point.id}' AND $timeFilter GROUP BY time(1h) {b.tzc()}"""
            )
            hourly.append(b.target(ref, inner, alias=point.name or point.id))
            nightly.append(
                b.target(
                    ref,
                    f'SELECT min("flow") FROM ({inner}) WHERE $timeFilter GROUP BY time(1d) {b.tzc()}',
                    alias=point.name or point.id,
                )
            )
        b.timeseries(
            "Débit d'eau horaire (L/h)",
            "Litres par heure au compteur ; les heures d'ouverture sont ombrées.",
            hourly,
            "litreh",
            bars=True,
        )
        p = b.timeseries(
            "Débit minimal nocturne (L/h)",
            "Plus petit débit horaire de chaque jour, atteint la nuit quand le bâtiment est fermé. "
            "Au-dessus de zéro nuit après nuit : fuite ou chasse d'eau qui coule.",
            nightly,
            "litreh",
            bars=True,
        )
        p["fieldConfig"]["defaults"]["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": "green", "value": None}, {"color": "red", "value": 5}],
        }
        p["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"] = {"mode": "line"}

    power = _points(building, Quantity.ACTIVE_POWER)
    if power:
        b.timeseries(
            "Puissance électrique appelée (kW)",
            "Moyenne par intervalle d'affichage.",
            [
                b.target(
                    ref,
                    f'SELECT mean("value") * {_TO_KW[point.unit]:g} FROM "reading" WHERE {sel} '
                    f"""AND "point" = '{point.id}' AND $timeFilter GROUP BY time($__interval) fill(none)""",
                    alias=point.name or point.id,
                )
                for ref, point in zip(_refs(), power, strict=False)
            ],
            "kwatt",
        )

    co2 = _points(building, Quantity.CO2)
    if co2:
        p = b.timeseries(
            "Qualité de l'air (CO₂, ppm)",
            "Concentration moyenne par zone ; au-delà de 1 000 ppm il faut aérer.",
            [
                b.target(
                    "A",
                    f"""SELECT mean("value") FROM "reading" WHERE {sel} AND "quantity" = 'co2' AND $timeFilter """
                    'GROUP BY time($__interval), "zone" fill(none)',
                    alias="$tag_zone",
                )
            ],
            "ppm",
        )
        _rename(p, {z.id: z.name for z in building.zones})

    b.table(
        "Anomalies du bâtiment",
        "Les anomalies de la période et celles qui restent ouvertes, avec leur état (open, ongoing, resolved).",
        b.target(
            "A",
            'SELECT last("state") AS "État", last("score") AS "Score", last("excess_kwh") AS "Surconsommation kWh", '
            'last("excess_eur") AS "Surcoût €", last("explanation") AS "Explication" '
            f'FROM "anomaly" WHERE {sel} AND time <= ${{__to}}ms '
            """AND ("end_ms" >= ${__from} OR "state" != 'resolved') GROUP BY "usage", "kind\"""",
            table=True,
        ),
        sort_by="Surcoût €",
        desc=True,
    )
    b.table(
        "Complétude des données (%)",
        "Part du temps où chaque point a donné une valeur ; figé : la valeur ne bouge plus.",
        b.target(
            "A",
            'SELECT 100 * (1 - mean("missing")) AS "Complétude %", 100 * mean("stale") AS "Figé %" '
            f'FROM "point_status" WHERE {sel} AND $timeFilter GROUP BY "point"',
            table=True,
        ),
        sort_by="Complétude %",
        desc=False,
    )

    uid = _uid(config, "bat", building.id)
    title = f"{building.name} — Bâtiment"
    model = _dashboard(
        config,
        uid,
        title,
        ["batiment", building.usage.value],
        b,
        [_constant_building_var(building), _period_var(config)],
        [_anomaly_annotation(b.ds, sel), *_opening_hours(building, tz)],
    )
    return Dashboard(uid, title, "batiments", model)


# --------------------------------------------------------------------------- commissioning


def commissioning_dashboard(inventory: Inventory, building: Building, config: DashboardConfig | None = None) -> Dashboard:
    """Before and after the latest works on a renovated building.

    The split date is the ``reception`` text variable: it opens on the date of
    the works in the inventory, and the user can move it to the actual
    commissioning date. The comparison is not weather-normalised (the outdoor
    temperature of both periods is shown beside it); ``econome report
    renovation`` gives the normalised savings.

    Args:
        inventory: The portfolio (for the timezone).
        building: A building with at least one renovation.
        config: Generation settings; defaults when None.

    Returns:
        The dashboard, filed in the ``travaux`` folder.

    Raises:
        ValueError: the building has no renovation.

    >>> from pathlib import Path
    >>> from inventory import load_inventory
    >>> inv = load_inventory(Path("examples/commune.yaml"))
    >>> commissioning_dashboard(inv, inv.building("ecole-curie")).uid
    'valmont-travaux-ecole-curie'
    """
    if not building.renovations:
        msg = f"building {building.id} has no renovation to commission"
        raise ValueError(msg)
    config = (config or DashboardConfig()).for_organisation(inventory.organisation)
    org = inventory.organisation
    b = _Builder(config, org.timezone)
    works = max(building.renovations, key=lambda r: r.date)
    split = datetime(works.date.year, works.date.month, works.date.day, tzinfo=org.tz).isoformat()
    usages = works.usages or [Usage.HEATING]
    sel = "\"building\" = '$building'"
    before, after = "time < '$reception'", "time >= '$reception'"
    usage_re = "|".join(u.value for u in usages)
    usage_fr = ", ".join(_USAGE_FR[u].lower() for u in usages)

    b.text(
        "Travaux",
        f"**{works.description}** — réception le {works.date:%d/%m/%Y}, usages : {usage_fr}.\n\n"
        f"Économie promise par le bureau d'études : **{works.promised_savings_pct:g} %**. "
        "Les panneaux comparent la période choisie avant et après la date de réception "
        "(variable *Date de réception*, modifiable). La comparaison n'est pas corrigée du climat : "
        "la température extérieure des deux périodes est affichée à côté ; "
        "`econome report renovation` donne les économies corrigées (IPMVP).",
        h=4,
    )
    energy = (
        f'SELECT mean("kwh") FROM "agg_usage" WHERE {sel} AND "usage" =~ /^({usage_re})$/ '
        "AND \"window\" = '1h' AND {split} AND $timeFilter"
    )
    b.stat(
        "Puissance moyenne avant (kW)",
        f"Énergie moyenne par heure ({usage_fr}) avant la réception.",
        b.target("A", energy.format(split=before)),
        "kwatt",
        w=8,
        decimals=1,
    )
    b.stat(
        "Puissance moyenne après (kW)",
        f"Énergie moyenne par heure ({usage_fr}) après la réception.",
        b.target("A", energy.format(split=after)),
        "kwatt",
        w=8,
        decimals=1,
    )
    ratio = b.stat(
        "Après / avant (%)",
        f"Consommation après rapportée à avant ; objectif {100 - works.promised_savings_pct:g} % "
        f"(économie promise {works.promised_savings_pct:g} %).",
        b.target("A", energy.format(split=before), alias="avant"),
        "percentunit",
        w=8,
        decimals=0,
    )
    ratio["targets"].append(b.target("B", energy.format(split=after), alias="apres"))
    ratio["transformations"] = [
        {"id": "joinByField", "options": {"mode": "outer"}},
        {
            "id": "calculateField",
            "options": {
                "alias": "Après / avant",
                "binary": {"left": "apres", "operator": "/", "right": "avant"},
                "mode": "binary",
                "replaceFields": True,
            },
        },
    ]
    target_ratio = 1 - works.promised_savings_pct / 100
    ratio["fieldConfig"]["defaults"]["thresholds"] = {
        "mode": "absolute",
        "steps": [
            {"color": "green", "value": None},
            {"color": "orange", "value": round(target_ratio, 4)},
            {"color": "red", "value": 1},
        ],
    }
    series = (
        f'SELECT sum("kwh") FROM "agg_usage" WHERE {sel} AND "usage" =~ /^({usage_re})$/ '
        "AND \"window\" = '$period' AND {split} AND $timeFilter GROUP BY time($period) fill(none) " + b.tzc()
    )
    b.timeseries(
        f"Consommation avant / après travaux (kWh, {usage_fr})",
        "Énergie par pas d'agrégation, en deux couleurs de part et d'autre de la date de réception.",
        [
            b.target("A", series.format(split=before), alias="Avant travaux"),
            b.target("B", series.format(split=after), alias="Après travaux"),
        ],
        "kwatth",
        bars=True,
        w=24,
    )
    outdoor = (
        """SELECT mean("value") FROM "reading" WHERE "usage" = 'weather' AND "quantity" = 'temperature' """
        "AND {split} AND $timeFilter"
    )
    b.stat(
        "Température extérieure moyenne avant (°C)",
        "Pour juger si l'hiver d'après était plus doux.",
        b.target("A", outdoor.format(split=before)),
        "celsius",
        decimals=1,
    )
    b.stat(
        "Température extérieure moyenne après (°C)",
        "Pour juger si l'hiver d'après était plus doux.",
        b.target("A", outdoor.format(split=after)),
        "celsius",
        decimals=1,
    )
    if _points(building, Quantity.TEMPERATURE, Usage.COMFORT):
        indoor = (
            f"""SELECT mean("value") FROM "reading" WHERE {sel} AND "quantity" = 'temperature' """
            "AND \"usage\" = 'comfort' AND {split} AND $timeFilter"
        )
        b.stat(
            "Température intérieure moyenne avant (°C)",
            "Le confort doit être tenu : une économie obtenue en chauffant moins n'est pas un gain des travaux.",
            b.target("A", indoor.format(split=before)),
            "celsius",
            decimals=1,
        )
        b.stat(
            "Température intérieure moyenne après (°C)",
            "Le confort doit être tenu : une économie obtenue en chauffant moins n'est pas un gain des travaux.",
            b.target("A", indoor.format(split=after)),
            "celsius",
            decimals=1,
        )

    reception: JSON = {
        "current": {"selected": False, "text": split, "value": split},
        "description": "Date de réception (RFC 3339) : sépare l'avant de l'après.",
        "hide": 0,
        "label": "Date de réception",
        "name": "reception",
        "options": [{"selected": True, "text": split, "value": split}],
        "query": split,
        "type": "textbox",
    }
    uid = _uid(config, "travaux", building.id)
    title = f"{building.name} — Réception des travaux du {works.date:%d/%m/%Y}"
    start = (datetime(works.date.year, works.date.month, works.date.day, tzinfo=org.tz) - timedelta(days=365)).isoformat()
    model = _dashboard(
        config,
        uid,
        title,
        ["travaux", building.usage.value],
        b,
        [_constant_building_var(building), _period_var(config), reception],
        [_anomaly_annotation(b.ds, sel)],
        time_from=start,
    )
    return Dashboard(uid, title, "travaux", model)


# --------------------------------------------------------------------------- all, and reading them back


def generate_dashboards(inventory: Inventory, config: DashboardConfig | None = None) -> list[Dashboard]:
    """Every dashboard of the portfolio: overview, then each building, then each renovated building.

    Args:
        inventory: The portfolio.
        config: Generation settings; defaults when None.

    Returns:
        The dashboards in a stable order, with unique uids.

    >>> from pathlib import Path
    >>> from inventory import load_inventory
    >>> len(generate_dashboards(load_inventory(Path("examples/commune.yaml"))))
    16
    """
    config = (config or DashboardConfig()).for_organisation(inventory.organisation)
    out = [portfolio_dashboard(inventory, config)]
    buildings = [bld for _, bld in inventory.buildings()]
    out += [building_dashboard(inventory, bld, config) for bld in buildings]
    out += [commissioning_dashboard(inventory, bld, config) for bld in buildings if bld.renovations]
    if config.raw_retention_policy:
        for dashboard in out:
            _qualify_raw(dashboard.model, config.raw_retention_policy)
    return out


_RAW_MEASUREMENTS = ('"reading"', '"point_status"')


def _qualify_raw(node: object, policy: str) -> None:
    """Prefix raw measurements with their retention policy in every query string, in place.

    Aggregates live in the default (long) policy and keep their plain names.
    """
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and key in ("query", "definition", "rawSql") and "FROM" in value:
                for name in _RAW_MEASUREMENTS:
                    value = value.replace(f"FROM {name}", f'FROM "{policy}".{name}')
                node[key] = value
            else:
                _qualify_raw(value, policy)
    elif isinstance(node, list):
        for item in node:
            _qualify_raw(item, policy)


def iter_queries(dashboard: Dashboard) -> Iterator[QueryRef]:
    """Every InfluxQL query of a dashboard: panel targets, query variables, annotations.

    Args:
        dashboard: A generated (or loaded) dashboard.

    Yields:
        One :class:`QueryRef` per query, in panel order.

    >>> from pathlib import Path
    >>> from inventory import load_inventory
    >>> d = portfolio_dashboard(load_inventory(Path("examples/commune.yaml")))
    >>> next(iter_queries(d)).where  # its building list is the inventory's: no query
    'annotation «Anomalies»'
    """
    model = dashboard.model
    for var in model.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            yield QueryRef(dashboard.uid, f"variable {var['name']}", var["query"])
    for anno in model.get("annotations", {}).get("list", []):
        if anno.get("datasource", {}).get("type") == "influxdb" and anno.get("query"):
            yield QueryRef(dashboard.uid, f"annotation «{anno['name']}»", anno["query"])
    for panel in model.get("panels", []):
        for target in panel.get("targets", []):
            if target.get("rawQuery"):
                yield QueryRef(dashboard.uid, f"panel {panel['id']} «{panel['title']}» {target['refId']}", target["query"])


_VAR_RE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}")
_REGEX_SPECIALS = re.compile(r"[\\^$*+?.()|\[\]{}/]")


def _escape_regex(value: str) -> str:
    return _REGEX_SPECIALS.sub(lambda m: "\\" + m.group(0), value)


def interpolate(
    query: str,
    *,
    start: datetime,
    end: datetime,
    interval: timedelta,
    variables: Mapping[str, str | Sequence[str]],
) -> str:
    """Substitute Grafana's variables in an InfluxQL query, as the InfluxDB datasource does.

    ``$timeFilter`` becomes ``time >= <ms>ms and time <= <ms>ms``; ``$__interval``
    a duration such as ``1m``; a list value (multi-value or *All*) becomes a
    regex group ``(a|b)`` with each value regex-escaped, as Grafana formats
    multi-value variables for InfluxQL.

    Args:
        query: The query with Grafana variables.
        start: Start of the dashboard time range (aware).
        end: End of the time range (aware).
        interval: The ``$__interval`` Grafana would compute for the panel.
        variables: Template variables by name.

    Returns:
        The query InfluxDB receives.

    Raises:
        KeyError: the query uses a variable that is not given.

    >>> from datetime import UTC
    >>> t0 = datetime(2026, 1, 5, 8, tzinfo=UTC)
    >>> interpolate(
    ...     "WHERE b =~ /^$building$/ AND $timeFilter GROUP BY time($__interval)",
    ...     start=t0, end=t0 + timedelta(hours=1), interval=timedelta(seconds=30),
    ...     variables={"building": ["mairie", "ecole-curie"]},
    ... )
    'WHERE b =~ /^(mairie|ecole-curie)$/ AND time >= 1767600000000ms and time <= 1767603600000ms GROUP BY time(30s)'
    """
    epoch = datetime(1970, 1, 1, tzinfo=start.tzinfo)
    start_ms = (start - epoch) // timedelta(milliseconds=1)
    end_ms = (end - epoch) // timedelta(milliseconds=1)
    builtins = {
        "timeFilter": f"time >= {start_ms}ms and time <= {end_ms}ms",
        "__from": str(start_ms),
        "__to": str(end_ms),
        "__interval": _duration(interval),
        "__interval_ms": str(interval // timedelta(milliseconds=1)),
    }

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in builtins:
            return builtins[name]
        val = variables[name]
        if isinstance(val, str):
            return val
        escaped = [_escape_regex(v) for v in val]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"

    return _VAR_RE.sub(value, query)


def _duration(interval: timedelta) -> str:
    ms = interval // timedelta(milliseconds=1)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0 and ms >= size:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
