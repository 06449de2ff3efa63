"""Alert delivery: e-mail to each building's advisors (HTML + text + inline chart), and InfluxDB annotations.

:class:`EmailAlerter` renders an :class:`~anomalies.events.AnomalyEvent` as
one e-mail (plain text and HTML, with an inline PNG chart of observed against
expected over the event, made with matplotlib), renders each recipient's daily
:class:`Digest`, and sends mails over SMTP (TLS and authentication from
:class:`EmailConfig`). Recipients are the building's ``advisors`` in the
inventory (``default_recipients`` when it has none), each in their language.
The service does not call it directly: :class:`anomalies.notify.MailOutbox`
keeps every mail durably until the server accepted it (see ``docs/alerts.md``).

Alerts are sent on transitions only: the lifecycle does the debouncing, the
outbox sends one mail per opened alert and one resolution notice.

:func:`anomaly_line` encodes an event for InfluxDB (measurement ``anomaly``,
tags building, usage, kind, state; fields score, excess_kwh, excess_eur,
excess_kgco2e, explanation, end_ms; time = start) so that Grafana can
annotate its panels; :func:`write_events` writes a batch.

The settings are the inventory's ``email:`` section (:class:`inventory.EmailSettings`)::

    email:
      host: smtp.example.org
      security: starttls                    # or ssl; none only for a local relay, written by name
      port: 587                             # default: 587 starttls, 465 ssl, 25 none
      username: econome
      password_env: ECONOME_SMTP_PASSWORD   # the variable's name, never the password
      ca_file: /etc/econome/smtp-ca.pem     # a private CA; the system CAs when absent
      sender: econome@valmont.example
      default_recipients: [services-techniques@valmont.example]
      language: fr
      languages: {energy.consultant@example.org: en}
      digest_hour: 7                        # local hour of the organisation's timezone
      send_resolved: true

>>> from anomalies.events import _sample_event
>>> line = anomaly_line(_sample_event(), "en")
>>> line.split(" ")[0]
'anomaly,building=gymnase-batum,kind=heating_unoccupied,usage=heating'
"""

from __future__ import annotations

import asyncio
import html
import io
import logging
import os
import smtplib
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.dates import DateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from anomalies.events import AlertState, AnomalyEvent, ChartSeries, Language
from inventory import Building, EmailSettings, Inventory, Point
from streams.display import amount as display_amount
from streams.display import number, shared_digits, unit_label, usage_label
from streams.errors import ConfigError, SinkError
from streams.influx import InfluxWriter, escape_tag, tls_context, to_ms
from streams.quality import UTILITY_DELAY, utility_publication

__all__ = [
    "ANOMALY_MEASUREMENT",
    "DATA_PROBLEM_KINDS",
    "Digest",
    "DigestEntry",
    "EmailAlerter",
    "EmailConfig",
    "anomaly_line",
    "building_lag",
    "email_config",
    "format_number",
    "late_note",
    "render_chart",
    "utility_action",
    "write_events",
]

logger = logging.getLogger(__name__)

ANOMALY_MEASUREMENT = "anomaly"


def email_config(inventory: Inventory) -> EmailConfig:
    """The e-mail settings of an inventory.

    Raises:
        ConfigError: the inventory has no ``email:`` section.
    """
    if inventory.email is None:
        msg = "the inventory has no email: section (SMTP server, sender, security); see docs/alerts.md"
        raise ConfigError(msg)
    return EmailConfig.of(inventory.email)


class EmailConfig(EmailSettings):
    """The inventory's ``email:`` section (:class:`inventory.EmailSettings`), with its TLS context and password.

    >>> EmailConfig(host="smtp.example.org", security="starttls", sender="econome@valmont.example").port
    587
    """

    @classmethod
    def of(cls, settings: EmailSettings) -> EmailConfig:
        """The config of an inventory's ``email:`` section."""
        if isinstance(settings, EmailConfig):
            return settings
        return cls.model_validate(settings.model_dump())

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context of ``starttls`` and ``ssl``: CA, client certificate, verification.

        Raises:
            ConfigError: a CA, certificate or key file cannot be read.
        """
        return tls_context(self.ca_file, self.cert_file, self.key_file, insecure=self.tls_insecure, what="SMTP")

    def password(self) -> str | None:
        """The SMTP password, read from ``password_env``.

        Raises:
            ConfigError: ``password_env`` names a variable that is not set, or empty (no password).
        """
        if self.password_env is None:
            return None
        value = os.environ.get(self.password_env)
        if not value:
            msg = f"SMTP password variable {self.password_env} is {'not set' if value is None else 'empty'}"
            raise ConfigError(msg)
        return value


_LABELS: dict[Language, dict[str, str]] = {
    "fr": {
        "building": "Bâtiment", "usage": "Usage", "start": "Début", "end": "Fin", "expected": "Attendu",
        "observed": "Observé", "excess": "Surconsommation", "cost": "Coût", "co2": "Émissions", "rule": "Détecté par",
        "rule_of": "règle « {kind} »", "model_of": "modèle de la consommation habituelle ({usage})",
        "chart_obs": "observé", "chart_exp": "attendu", "night_flow": "débit de nuit", "open": "Alerte",
        "ongoing": "Alerte en cours",
        "resolved": "Résolu", "digest": "Synthèse des alertes", "todo": "Que faire\u00a0?", "footer":
        "Econome — un courriel quand une alerte s'ouvre, un quand elle se termine, et une synthèse quotidienne.",
    },
    "en": {
        "building": "Building", "usage": "Usage", "start": "Start", "end": "End", "expected": "Expected",
        "observed": "Observed", "excess": "Excess", "cost": "Cost", "co2": "Emissions", "rule": "Detected by",
        "rule_of": "rule '{kind}'", "model_of": "model of the usual consumption ({usage})",
        "chart_obs": "observed", "chart_exp": "expected", "night_flow": "night flow", "open": "Alert", "ongoing": "Ongoing alert",
        "resolved": "Resolved", "digest": "Alert digest", "todo": "What to do?", "footer":
        "Econome — one mail when an alert opens, one when it ends, and a daily digest.",
    },
}

_KIND_TITLES: dict[str, dict[Language, str]] = {
    "heating_unoccupied": {"fr": "chauffage en inoccupation", "en": "heating while closed"},
    "overheating": {"fr": "surchauffe", "en": "overheating"},
    "lighting_unoccupied": {"fr": "éclairage en inoccupation", "en": "lights on while closed"},
    "lighting_daylight": {"fr": "éclairage en plein jour", "en": "lights on in daylight"},
    "baseload_creep": {"fr": "dérive du talon de nuit", "en": "night base load creep"},
    "water_leak": {"fr": "fuite d'eau probable", "en": "probable water leak"},
    "stale_counter": {"fr": "compteur bloqué", "en": "stuck meter"},
    "frozen_sensor": {"fr": "capteur figé", "en": "frozen sensor"},
    "missing_data": {"fr": "données manquantes", "en": "missing data"},
    "unusual_consumption": {"fr": "consommation inhabituelle", "en": "unusual consumption"},
    "consumption_unoccupied": {"fr": "consommation bâtiment fermé", "en": "consumption while closed"},
    "sensor_drift": {"fr": "capteur déréglé", "en": "drifting sensor"},
    "lost_daily_cycle": {"fr": "capteur sans cycle journalier", "en": "sensor without a daily cycle"},
}

_ACTIONS: dict[str, dict[Language, str]] = {
    "heating_unoccupied": {
        "fr": "Vérifier la programmation du régulateur (réduit de nuit, week-end, vacances) et les dérogations manuelles.",
        "en": "Check the controller's schedule (night, weekend and holiday setback) and any manual override.",
    },
    "overheating": {
        "fr": "Ramener la consigne à 19\u00a0°C en occupation et 16\u00a0°C en inoccupation\u202f; "
        "vérifier les robinets thermostatiques.",
        "en": "Bring the setpoint back to 19 °C occupied and 16 °C unoccupied; check the thermostatic valves.",
    },
    "lighting_unoccupied": {
        "fr": "Vérifier les horloges et détecteurs d'éclairage, et la dernière sortie (ménage, associations).",
        "en": "Check the lighting timers and sensors, and who left last (cleaning, associations).",
    },
    "lighting_daylight": {
        "fr": "Régler les capteurs de luminosité ou sensibiliser les occupants.",
        "en": "Adjust the daylight sensors or brief the occupants.",
    },
    "baseload_creep": {
        "fr": "Chercher l'équipement ajouté ou resté en marche la nuit (ventilation, chauffe-eau, serveur, froid).",
        "en": "Look for equipment added or left running at night (ventilation, water heater, server, fridge).",
    },
    "water_leak": {
        "fr": "Relever le compteur la nuit, vérifier chasses d'eau, groupes de sécurité et réseau enterré.",
        "en": "Read the meter at night, check toilets, safety valves and buried pipes.",
    },
    "stale_counter": {
        "fr": "Vérifier le compteur et sa liaison (impulsions, passerelle, M-Bus).",
        "en": "Check the meter and its link (pulses, gateway, M-Bus).",
    },
    "frozen_sensor": {"fr": "Vérifier le capteur et sa pile.", "en": "Check the sensor and its battery."},
    "consumption_unoccupied": {
        "fr": "Vérifier ce qui reste en marche bâtiment fermé (chauffage, ventilation, éclairage, équipements).",
        "en": "Check what keeps running while the building is closed (heating, ventilation, lights, equipment).",
    },
    "sensor_drift": {
        "fr": "Vérifier l'emplacement du capteur (soleil, radiateur, courant d'air) et le comparer à un thermomètre.",
        "en": "Check where the sensor sits (sun, radiator, draught) and compare it with a thermometer.",
    },
    "lost_daily_cycle": {
        "fr": "Vérifier que le capteur est bien dans la pièce et qu'il mesure encore.",
        "en": "Check that the sensor is still in the room and still measuring.",
    },
    "missing_data": {
        "fr": "Vérifier le capteur, sa pile et la passerelle.",
        "en": "Check the sensor, its battery and the gateway.",
    },
}


def utility_action(point: Point, language: Language) -> str:
    """What to check when a Linky or a Gazpar is silent: the consent, the publication, the daily fetch or the import.

    Not the sensor, battery and gateway of a meter of ours (:data:`_ACTIONS`).

    >>> from inventory import Point
    >>> linky = Point.model_validate({"id": "l", "quantity": "active_energy", "unit": "kWh", "usage": "general",
    ...                               "cumulative": True, "enedis": {"prm": "12345678901234", "data_connect": True}})
    >>> utility_action(linky, "en").split(";")[0]
    'On the Enedis customer area, check that the consent for PRM 12345678901234 is still valid and that the data are published'
    """
    if point.enedis is not None:
        meter, api, area = f"PRM {point.enedis.prm}", point.enedis.data_connect, "Enedis"
        command = "econome import enedis"
    elif point.grdf is not None:
        meter, api, area = f"PCE {point.grdf.pce}", point.grdf.adict, "GRDF"
        command = "econome import grdf"
    else:  # pragma: no cover - called for utility points only
        return _ACTIONS["missing_data"][language]
    if language == "fr":
        if api:
            return (f"Vérifier sur l’espace client {area} que le consentement ({meter}) est toujours valide et que les "
                    "données sont publiées ; la dernière erreur de la relève quotidienne est dans le journal du "
                    "service (ERROR « utility fetch ») et la fraîcheur du point dans « econome status ».")
        return (f"Télécharger les dernières données ({meter}) sur l’espace client {area} et les importer "
                f"({command} FICHIER --inventory …) ; « econome status » donne la dernière relevée.")
    if api:
        return (f"On the {area} customer area, check that the consent for {meter} is still valid and that the data are "
                "published; the daily fetch's last error is in the service's log (ERROR \"utility fetch\") and the "
                "point's freshness in \"econome status\".")
    return (f"Download the latest data ({meter}) from the {area} customer area and import them "
            f"({command} FILE --inventory …); \"econome status\" gives the last reading.")


def render_chart(series: ChartSeries, event: AnomalyEvent, language: Language = "fr") -> bytes:
    r"""A PNG chart of observed against expected over the event, the event shaded.

    Uses matplotlib's object API (no pyplot), so it is safe in worker threads.
    An hourly series is drawn as steps; a series of selected hours (a leak's
    night hours) as one line through them, a dot per hour, so that the nights
    read as one flow and not as dashes. An hour without data is a gap.

    >>> from anomalies.events import _sample_event
    >>> event = _sample_event()
    >>> render_chart(event.series, event)[:4]
    b'\x89PNG'
    """
    labels = _LABELS[language]
    tz = ZoneInfo(event.timezone)
    # Matplotlib dates are days since its epoch, 1970-01-01 by default.
    times = np.array([t.timestamp() / 86_400.0 for t in series.times])
    hourly = times.size < 2 or bool(np.all(np.diff(times) <= 1.0 / 24 + 1e-9))
    fig = Figure(figsize=(8.0, 3.2), dpi=100)
    ax = fig.add_subplot()
    ax.axvspan(event.start.timestamp() / 86_400.0, event.end.timestamp() / 86_400.0, color="#f6d3cf", alpha=0.6, linewidth=0)
    for values, color, name in (
        (series.expected, "#2b6cb0", labels["chart_exp"]),
        (series.observed, "#c53030", labels["chart_obs"]),
    ):
        if hourly:
            ax.step(times, values, where="post", color=color, linewidth=1.6, label=name)
        else:
            ax.plot(times, values, color=color, linewidth=1.6, marker=".", markersize=4, label=name)
    unit = unit_label(series.unit) + ("/h" if series.unit in ("kWh", "m3") else "")
    ax.set_ylabel(f"{labels['night_flow']} ({unit})" if event.kind == "water_leak" else unit)
    ax.xaxis_date(tz)
    _local_numbers(ax, language)
    ax.xaxis.set_major_formatter(DateFormatter("%d/%m %Hh", tz=tz))  # type: ignore[no-untyped-call]  # matplotlib leaves it unannotated
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", frameon=False)
    for label in ax.get_xticklabels():
        label.set_rotation(20)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _local_numbers(ax: Axes, language: Language) -> None:
    """The value axis in the reader's typography ("0,10", not "0.10"), to the decimals its ticks need."""
    digits = _tick_digits(np.asarray(ax.get_yticks(), dtype=np.float64))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: number(value, digits, language)))


def _tick_digits(ticks: npt.NDArray[np.float64], most: int = 6) -> int:
    """The fewest decimals that write every tick exactly (0.025 needs 3, not 2: "0,03" would be wrong).

    >>> [_tick_digits(np.array(ticks)) for ticks in ([0.0, 0.025, 0.05], [0.0, 2.5, 5.0], [0.0, 1000.0])]
    [3, 1, 0]
    """
    finite = ticks[np.isfinite(ticks)]
    for digits in range(most + 1):
        tolerance = 1e-9 * max(1.0, float(np.abs(finite).max(initial=0.0)))
        if np.allclose(np.round(finite, digits), finite, rtol=0.0, atol=tolerance):
            return digits
    return most


def _fmt_when(event: AnomalyEvent, which: str) -> str:
    moment = event.start if which == "start" else event.end
    return f"{moment.astimezone(ZoneInfo(event.timezone)):%d/%m/%Y %H:%M}"


def _amount(value: float, unit: str, language: Language = "en", digits: int | None = None) -> str:
    r"""A quantity with its unit (:func:`streams.display.amount`): under 10 a decimal, "< 1 €".

    >>> _amount(12345.67, "m3", "fr"), _amount(2.44, "m3", "en"), _amount(0.4, "kWh"), _amount(0.2, "€", "fr")
    ('12\u202f346\xa0m³', '2.4\xa0m³', '0.4\xa0kWh', '<\xa01\xa0€')
    """
    return display_amount(value, unit, language, digits)


def _detected_by(event: AnomalyEvent, language: Language) -> str:
    labels = _LABELS[language]
    if event.source == "model":
        return labels["model_of"].format(usage=usage_label(event.usage, language))
    return labels["rule_of"].format(kind=_kind_title(event.kind, language))


def _kind_title(kind: str, language: Language) -> str:
    return _KIND_TITLES.get(kind, {}).get(language, kind.replace("_", " "))


def _rows(event: AnomalyEvent, language: Language) -> list[tuple[str, str]]:
    labels = _LABELS[language]
    rows = [
        (labels["building"], event.building_name),
        (labels["usage"], usage_label(event.usage, language)),
        (labels["start"], _fmt_when(event, "start")),
        (labels["end"], _fmt_when(event, "end")),
    ]
    # Shown together, they take one precision so that expected + excess reads as observed (review round 2).
    if event.unit in ("kWh", "m3"):
        digits = event.digits(event.unit)
        rows += [
            (labels["expected"], _amount(event.expected, event.unit, language, digits)),
            (labels["observed"], _amount(event.observed, event.unit, language, digits)),
        ]
    if event.excess_kwh > 0:
        rows.append((labels["excess"], _amount(event.excess_kwh, "kWh", language, event.digits("kWh"))))
    if event.excess_m3 > 0:
        rows.append((labels["excess"], _amount(event.excess_m3, "m3", language, event.digits("m3"))))
    if event.excess_eur > 0:
        rows += [(labels["cost"], _amount(event.excess_eur, "€", language)),
                 (labels["co2"], _amount(event.excess_kgco2e, "kgCO2e", language))]
    rows.append((labels["rule"], _detected_by(event, language)))
    return rows


def _subject(event: AnomalyEvent, language: Language) -> str:
    r"""The subject of an alert mail; French typography in French (no-break space before the colon and the euro).

    >>> from anomalies.events import _sample_event
    >>> _subject(_sample_event(), "fr")
    '[Econome] Alerte\xa0: Gymnase Batum — chauffage en inoccupation — 45\xa0€'
    >>> _subject(_sample_event(), "en")
    '[Econome] Alert: Gymnase Batum — heating while closed — 45\xa0€'
    """
    labels = _LABELS[language]
    money = f" — {_amount(event.excess_eur, '€', language)}" if event.excess_eur >= 1 else ""
    kind = _kind_title(event.kind, language)
    return f"[Econome] {_colon(labels[event.state.value], language)} {event.building_name} — {kind}{money}"


def building_lag(building: Building) -> timedelta:
    """How long after an hour live detection judges this building's data: 0, or its utilities' publication delay.

    A building with a counter of ours (Modbus, MQTT), or with no utility meter, is judged at once (0). A building
    whose every counter is a utility's (a Linky, a Gazpar) waits for the largest publication delay of its
    utility points (:data:`streams.quality.UTILITY_DELAY`: Enedis 2 days, GRDF 4 days, a monthly Gazpar 52).
    Live detection (:mod:`anomalies.live`) groups the buildings by it; alert mails say it (:func:`late_note`).
    """
    utility = [p for p in building.points if p.is_utility]
    if not utility or any(p.cumulative and not p.is_utility for p in building.points):
        return timedelta(0)
    return max(UTILITY_DELAY[utility_publication(p)] for p in utility)


def late_note(building: Building, language: Language) -> str | None:
    r"""For a building read only through a utility's meters, why its alert comes days after the fact; else None.

    Live detection judges such a building once its data are published (:mod:`anomalies.live`): the mail says
    that the alert is about the period it gives, not about the time it is read.

    >>> from pathlib import Path
    >>> from inventory import load_inventory
    >>> inv = load_inventory(Path("examples/commune.yaml"))
    >>> note = late_note(inv.building("salle-polyvalente"), "fr")
    >>> note.split(": ")[0]
    'Relevés du Linky (Enedis) et du Gazpar (GRDF), publiés avec retard\xa0'
    >>> note.split(": ")[1]
    'cette alerte porte sur la période indiquée ci-dessous, jusqu’à 4\xa0jours avant ce message.'
    >>> late_note(inv.building("maternelle-aulnes"), "en")
    'Readings of the Linky (Enedis), published late: this alert is about the period shown below, up to 2 days before this mail.'
    >>> late_note(inv.building("mairie"), "fr") is None  # meters of ours
    True
    """
    lag = building_lag(building)
    if not lag:
        return None
    days = lag.days
    utility = [p for p in building.points if p.is_utility]
    fr = {"enedis": "du Linky (Enedis)", "grdf": "du Gazpar (GRDF)"}
    en = {"enedis": "Linky (Enedis)", "grdf": "Gazpar (GRDF)"}
    kinds = sorted({p.protocol for p in utility})
    if language == "fr":
        sources = " et ".join(fr[k] for k in kinds)
        return (f"Relevés {sources}, publiés avec retard\u00a0: cette alerte porte sur la période indiquée ci-dessous, "
                f"jusqu’à {days}\u00a0jours avant ce message.")
    sources = " and ".join(en[k] for k in kinds)
    return (f"Readings of the {sources}, published late: this alert is about the period shown below, "
            f"up to {days} days before this mail.")


def _text(events: Sequence[AnomalyEvent], language: Language, notes: Sequence[str | None] = (),
          actions: Sequence[str | None] = ()) -> str:
    labels = _LABELS[language]
    parts = []
    for i, event in enumerate(events):
        lines = [event.explanation(language), ""]
        note = notes[i] if i < len(notes) else None
        if note:
            lines += [note, ""]
        lines += [f"{_colon(name, language)} {value}" for name, value in _rows(event, language)]
        action = (actions[i] if i < len(actions) else None) or _ACTIONS.get(event.kind, {}).get(language)
        if action:
            lines += ["", f"{labels['todo']} {action}"]
        parts.append("\n".join(lines))
    return ("\n\n" + "-" * 60 + "\n\n").join(parts) + f"\n\n-- \n{labels['footer']}\n"


def _html(events: Sequence[AnomalyEvent], cids: Sequence[str | None], language: Language, title: str,
          notes: Sequence[str | None] = (), actions: Sequence[str | None] = ()) -> str:
    labels = _LABELS[language]
    blocks = []
    for i, (event, cid) in enumerate(zip(events, cids, strict=True)):
        note = notes[i] if i < len(notes) else None
        late = f'<p style="color:#4a5568;margin:0 0 12px 0">{html.escape(note)}</p>' if note else ""
        rows = "".join(
            f'<tr><th style="text-align:left;padding:4px 12px 4px 0;color:#4a5568;font-weight:600">{html.escape(k)}</th>'
            f'<td style="padding:4px 0">{html.escape(v)}</td></tr>'
            for k, v in _rows(event, language)
        )
        chart = (
            f'<img src="cid:{cid[1:-1]}" alt="{html.escape(labels["chart_obs"])} / {html.escape(labels["chart_exp"])}" '
            'width="800" style="max-width:100%;border:1px solid #e2e8f0;margin:12px 0">'
            if cid else ""
        )
        action = (actions[i] if i < len(actions) else None) or _ACTIONS.get(event.kind, {}).get(language, "")
        todo = (
            f'<p style="background:#ebf8ff;border-left:4px solid #3182ce;padding:8px 12px;margin:12px 0">'
            f'<b>{html.escape(labels["todo"])}</b> {html.escape(action)}</p>' if action else ""
        )
        blocks.append(
            f'<div style="margin-bottom:28px"><p style="font-size:17px;line-height:1.4;margin:0 0 12px 0">'
            f"<b>{html.escape(event.explanation(language))}</b></p>{late}{chart}"
            f'<table style="border-collapse:collapse;font-size:14px">{rows}</table>{todo}</div>'
        )
    body = "".join(blocks)
    return (
        f'<!DOCTYPE html><html lang="{language}"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
        '<body style="font-family:Helvetica,Arial,sans-serif;color:#1a202c;max-width:840px;margin:24px auto;padding:0 16px">'
        f'<h2 style="color:#c53030;margin:0 0 16px 0">{html.escape(title)}</h2>{body}'
        f'<p style="color:#718096;font-size:12px;border-top:1px solid #e2e8f0;padding-top:8px">'
        f"{html.escape(labels['footer'])}</p></body></html>"
    )


class EmailAlerter:
    """Renders anomaly events as e-mails to each building's advisors, and sends them over SMTP.

    Args:
        config: SMTP and mail settings.
        inventory: gives each building's advisors.
    """

    def __init__(self, config: EmailConfig, inventory: Inventory) -> None:
        self.config = config
        self.inventory = inventory
        self.sent = 0

    def recipients(self, event: AnomalyEvent) -> list[str]:
        """The advisors of the event's building (or the default recipients)."""
        return self.recipients_of(event.building)

    def recipients_of(self, building: str) -> list[str]:
        """The advisors of a building, or the default recipients when it has none (or is unknown)."""
        try:
            advisors = list(self.inventory.building(building).advisors)
        except KeyError:
            advisors = []
        # One mailbox written twice in two cases (``Jean.Dupont@…``, ``jean.dupont@…``) gets one mail, to the
        # first spelling.
        first: dict[str, str] = {}
        for address in advisors or self.config.default_recipients:
            first.setdefault(address.casefold(), address)
        return list(first.values())

    def _late_note(self, building_id: str, language: Language) -> str | None:
        try:
            building = self.inventory.building(building_id)
        except KeyError:
            return None
        return late_note(building, language)

    def _action(self, event: AnomalyEvent, language: Language) -> str | None:
        """A silent Linky or Gazpar's own advice (:func:`utility_action`); None: the kind's."""
        if event.kind != "missing_data" or not event.point:
            return None
        point = next((p for _, p in self.inventory.points() if p.id == event.point), None)
        return utility_action(point, language) if point is not None and point.is_utility else None

    def language(self, recipient: str) -> Language:
        """The language of one recipient: ``languages`` names it in any case (``Jean.Dupont@…`` is ``jean.dupont@…``).

        Addresses are written by hand in two places (a building's ``advisors``, ``languages``); one mailbox.
        """
        if recipient in self.config.languages:
            return self.config.languages[recipient]
        wanted = recipient.casefold()
        return next((lang for address, lang in self.config.languages.items() if address.casefold() == wanted),
                    self.config.language)

    def render(self, events: Sequence[AnomalyEvent], recipient: str, *, digest: bool = False) -> EmailMessage:
        r"""The e-mail for one recipient: plain text, HTML and one inline chart per event.

        >>> from pathlib import Path
        >>> from inventory import load_inventory
        >>> from anomalies.events import _sample_event
        >>> config = EmailConfig(host="127.0.0.1", security="none", sender="econome@valmont.example")
        >>> alerter = EmailAlerter(config, load_inventory(Path("examples/commune.yaml")))
        >>> message = alerter.render([_sample_event()], "cep@valmont.example")
        >>> message["Subject"]
        '[Econome] Alerte\xa0: Gymnase Batum — chauffage en inoccupation — 45\xa0€'
        """
        language = self.language(recipient)
        title = _LABELS[language]["digest"] if digest else _subject(events[0], language).removeprefix("[Econome] ")
        message = EmailMessage()
        message["Subject"] = f"[Econome] {title}" if digest else _subject(events[0], language)
        message["From"] = self.config.sender
        message["To"] = recipient
        notes = [self._late_note(e.building, language) for e in events]
        actions = [self._action(e, language) for e in events]
        message.set_content(_text(events, language, notes, actions))
        cids: list[str | None] = [make_msgid(domain="econome") if e.series is not None else None for e in events]
        message.add_alternative(_html(events, cids, language, title, notes, actions), subtype="html")
        html_part = message.get_body(("html",))
        if html_part is None:  # pragma: no cover - added just above
            msg = "the HTML part is missing"
            raise RuntimeError(msg)
        for event, cid in zip(events, cids, strict=True):
            if cid is not None and event.series is not None:
                png = render_chart(event.series, event, language)
                name = f"{event.building}-{event.kind}.png"
                html_part.add_related(png, maintype="image", subtype="png", cid=cid, filename=name)
        return message

    def render_digest(self, digest: Digest, recipient: str) -> EmailMessage:
        r"""One recipient's daily digest: open alerts with their cost, acknowledged ones, resolved ones, data problems.

        French mails follow French typography: a non-breaking space before ``:``
        (narrow before ``;``, ``?``, ``!``) and as the thousands separator, a decimal comma.

        >>> from datetime import date
        >>> from pathlib import Path
        >>> from inventory import load_inventory
        >>> from anomalies.events import _sample_event
        >>> config = EmailConfig(host="127.0.0.1", security="none", sender="econome@valmont.example")
        >>> alerter = EmailAlerter(config, load_inventory(Path("examples/commune.yaml")))
        >>> digest = Digest(date(2026, 1, 12), open=[DigestEntry(7, _sample_event())])
        >>> alerter.render_digest(digest, "cep@valmont.example")["Subject"]
        '[Econome] Synthèse du 12/01/2026\xa0: 1 alerte ouverte, 45\xa0€'
        """
        language = self.language(recipient)
        text, html_body, subject = _digest_parts(digest, language)
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self.config.sender
        message["To"] = recipient
        message.set_content(text)
        message.add_alternative(html_body, subtype="html")
        return message

    async def notify(self, event: AnomalyEvent) -> int:
        """Send one transition now, to the building's recipients; returns the mails sent.

        Resolved events are sent only with ``send_resolved``; ongoing ones never
        (the alert was sent when it opened). The service sends through
        :class:`anomalies.notify.MailOutbox` instead, which keeps mails durably until sent.

        Raises:
            SinkError: the server could not be reached or refused the mails.
        """
        if event.state is AlertState.ONGOING or (event.state is AlertState.RESOLVED and not self.config.send_resolved):
            return 0
        recipients = self.recipients(event)
        if not recipients:
            logger.warning("no recipient for alert %s in building %s", event.kind, event.building)
            return 0
        messages = [self.render([event], r) for r in recipients]
        await asyncio.to_thread(self.deliver, messages)
        return len(messages)

    def deliver(
        self,
        messages: Sequence[EmailMessage],
        on_sent: Callable[[int], None] | None = None,
        on_refused: Callable[[int, int, str], None] | None = None,
    ) -> None:
        """Send messages over one SMTP session (blocking: call it in a worker thread).

        Args:
            messages: the mails, in order.
            on_sent: called with a message's index as soon as the server accepted it.
            on_refused: called with a message's index, the server's SMTP reply code (4xx: try again later,
                5xx: refused for good) and its answer when the server refused that message alone (a recipient,
                its content, its size); the others are still sent.
                Without it, such a refusal raises.

        Raises:
            SinkError: the server could not be reached, refused the login, our sender or the TLS handshake
                (the message names the server, never the password).
        """
        cfg = self.config
        timeout = cfg.timeout.total_seconds()
        password = cfg.password() if cfg.username else None
        context = cfg.ssl_context() if cfg.security != "none" else None
        try:
            smtp: smtplib.SMTP
            if cfg.security == "ssl":
                smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=timeout, context=context)
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=timeout)
            with smtp:
                if cfg.security == "starttls":
                    smtp.starttls(context=context)
                if cfg.username:
                    smtp.login(cfg.username, password or "")
                for index, message in enumerate(messages):
                    try:
                        smtp.send_message(message)
                    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
                        if on_refused is None or _refuses_every_mail(exc):
                            raise
                        answer = _redact(f"SMTP {cfg.host}:{cfg.port} refused the mail: {exc}", password)
                        on_refused(index, _refusal_code(exc), answer)
                        continue
                    self.sent += 1
                    if on_sent is not None:
                        on_sent(index)
        except ssl.SSLCertVerificationError as exc:
            msg = (
                f"SMTP {cfg.host}:{cfg.port} TLS certificate not trusted: {exc.verify_message or exc}; "
                "set ca_file to the CA that signed it"
            )
            logger.error("%s", msg)
            raise SinkError(msg) from None
        except smtplib.SMTPSenderRefused as exc:
            # Our sender refused (the relay's account or policy changed): every mail alike, kept for when it is fixed.
            msg = (f"SMTP {cfg.host}:{cfg.port} refused the sender {cfg.sender}: {exc.smtp_code} "
                   f"{_text_of(exc.smtp_error)}; check the relay's account and the email.sender")
            raise SinkError(_redact(msg, password)) from None
        except smtplib.SMTPAuthenticationError as exc:
            # The server's answer only; never the credentials, nor the exception chain that holds them.
            msg = f"SMTP {cfg.host}:{cfg.port} refused the login of {cfg.username}: {exc.smtp_code} {_text_of(exc.smtp_error)}"
            raise SinkError(_redact(msg, password)) from None
        except (smtplib.SMTPException, OSError) as exc:
            msg = f"SMTP {cfg.host}:{cfg.port} could not send the alert mail: {exc}"
            if isinstance(exc, ssl.SSLError):
                logger.error("%s", msg)
            raise SinkError(_redact(msg, password)) from exc


_SIZE_EXCEEDED = 552
"""The answer to ``MAIL FROM:<…> SIZE=n`` of a mail too large for the server: that mail's refusal alone."""


def _refuses_every_mail(exc: smtplib.SMTPException) -> bool:
    """Whether a refusal is of our sender, so of every mail alike, rather than of one mail.

    A ``MAIL FROM`` refusal is about the sender (a relay's account or policy), not the mail, but for a 552
    (the ``SIZE`` the command declares).

    >>> _refuses_every_mail(smtplib.SMTPSenderRefused(553, b"not owned by user", "econome@valmont.example"))
    True
    >>> _refuses_every_mail(smtplib.SMTPSenderRefused(552, b"too big", "econome@valmont.example"))
    False
    >>> _refuses_every_mail(smtplib.SMTPDataError(554, b"spam"))
    False
    """
    return isinstance(exc, smtplib.SMTPSenderRefused) and exc.smtp_code != _SIZE_EXCEEDED


def _refusal_code(exc: smtplib.SMTPException) -> int:
    """The SMTP reply code of a refused mail; of several refused recipients, the lowest (a 4xx is worth a retry).

    >>> _refusal_code(smtplib.SMTPRecipientsRefused({"a@x.example": (550, b"no"), "b@x.example": (451, b"later")}))
    451
    >>> _refusal_code(smtplib.SMTPDataError(554, b"spam"))
    554
    """
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [int(code) for code, _ in exc.recipients.values()]
        return min(codes) if codes else 0
    return int(getattr(exc, "smtp_code", 0) or 0)


# --- the daily digest ------------------------------------------------------------------------------

DATA_PROBLEM_KINDS = frozenset({"missing_data", "stale_counter", "frozen_sensor"})
"""Kinds of alert that are about the data, not the building: their own section of the digest."""


@dataclass(frozen=True, slots=True)
class DigestEntry:
    """One alert in a digest.

    Attributes:
        alert_id: its id in the alert register (as ``econome alerts list`` prints it).
        event: its last event.
        acked_by: who acknowledged it, if anyone.
    """

    alert_id: int
    event: AnomalyEvent
    acked_by: str | None = None


@dataclass(frozen=True, slots=True)
class Digest:
    """What one recipient's digest of one local day says.

    Attributes:
        day: the local date of the digest.
        open: open alerts not acknowledged, with their cost.
        acknowledged: open alerts someone acknowledged (no reminder, only listed).
        resolved: alerts resolved since the previous digest.
        data_problems: open alerts about the data (missing data, stuck meters, frozen sensors).
        closed: alerts closed since the previous digest without a resolution: detection restarted from
            a fresh state, or the building left the inventory (``anomalies.notify``).
    """

    day: date
    open: Sequence[DigestEntry] = ()
    acknowledged: Sequence[DigestEntry] = ()
    resolved: Sequence[DigestEntry] = ()
    data_problems: Sequence[DigestEntry] = ()
    closed: Sequence[DigestEntry] = ()

    def is_empty(self) -> bool:
        """Whether there is nothing to say."""
        return not (self.open or self.acknowledged or self.resolved or self.data_problems or self.closed)


_DIGEST_LABELS: dict[Language, dict[str, str]] = {
    "fr": {
        "title": "Synthèse du {day}", "open": "Alertes ouvertes", "acknowledged": "Alertes prises en compte",
        "resolved": "Résolues depuis la dernière synthèse", "data": "Problèmes de données", "since": "depuis le",
        "total": "Total des alertes ouvertes", "acked_by": "prise en compte par", "none": "Rien à signaler.",
        "one_open": "alerte ouverte", "many_open": "alertes ouvertes", "point": "point", "ended": "terminée le",
        "no_open": "aucune alerte ouverte",
        "closed": "Closes sans résolution (détection redémarrée)",
    },
    "en": {
        "title": "Digest of {day}", "open": "Open alerts", "acknowledged": "Acknowledged alerts",
        "resolved": "Resolved since the last digest", "data": "Data problems", "since": "since",
        "total": "Total of the open alerts", "acked_by": "acknowledged by", "none": "Nothing to report.",
        "one_open": "open alert", "many_open": "open alerts", "point": "point", "ended": "ended",
        "no_open": "no open alert",
        "closed": "Closed without a resolution (detection restarted)",
    },
}


def format_number(value: float, digits: int, language: Language) -> str:
    r"""A number as the language writes it (:func:`streams.display.number`).

    >>> format_number(12345.678, 1, "fr"), format_number(12345.678, 1, "en")
    ('12\u202f345,7', '12,345.7')
    """
    return number(value, digits, language)


def _colon(label: str, language: Language) -> str:
    # French typography: a no-break space before the colon.
    return f"{label}\u00a0:" if language == "fr" else f"{label}:"


def _cost(event: AnomalyEvent, language: Language, digits: Mapping[str, int] | None = None) -> str:
    """The excess of an event; ``digits`` per unit when it is listed with others and a total (a digest)."""
    parts = []
    for value, unit in ((event.excess_kwh, "kWh"), (event.excess_m3, "m3"), (event.excess_eur, "€"),
                        (event.excess_kgco2e, "kgCO2e")):
        if value > 0:
            shown = (digits or {}).get(unit, event.digits(unit))
            parts.append(_amount(value, unit, language, shown))
    return ", ".join(parts)


def _digest_digits(entries: Sequence[DigestEntry]) -> dict[str, int]:
    """One precision per unit for a digest's excesses and their total, so that the total adds up (review round 2)."""
    out: dict[str, int] = {}
    for unit, field in (("kWh", "excess_kwh"), ("m3", "excess_m3"), ("kgCO2e", "excess_kgco2e")):
        values = [float(getattr(e.event, field)) for e in entries]
        out[unit] = shared_digits([*values, sum(values)], unit)
    return out


def _entry_line(entry: DigestEntry, language: Language, section: str, digits: Mapping[str, int] | None = None) -> str:
    event = entry.event
    labels = _DIGEST_LABELS[language]
    tz = ZoneInfo(event.timezone)
    kind = _kind_title(event.kind, language)
    line = f"#{entry.alert_id} {event.building_name} — {kind}"
    if event.point:
        line += f" ({labels['point']} {event.point})"
    line += f", {labels['since']} {event.start.astimezone(tz):%d/%m %H:%M}"
    if section == "resolved":
        line += f", {labels['ended']} {event.end.astimezone(tz):%d/%m %H:%M}"
    cost = _cost(event, language, digits)
    if cost and section != "data":
        line += f" — {cost}"
    if entry.acked_by:
        line += f" ({labels['acked_by']} {entry.acked_by})"
    return line


def _digest_parts(digest: Digest, language: Language) -> tuple[str, str, str]:
    """Plain text, HTML and subject of a digest."""
    labels = _DIGEST_LABELS[language]
    title = labels["title"].format(day=f"{digest.day:%d/%m/%Y}")
    n_open = len(digest.open) + len(digest.acknowledged)
    eur = sum(e.event.excess_eur for e in (*digest.open, *digest.acknowledged))
    kwh = sum(e.event.excess_kwh for e in (*digest.open, *digest.acknowledged))
    co2 = sum(e.event.excess_kgco2e for e in (*digest.open, *digest.acknowledged))
    digits = _digest_digits([*digest.open, *digest.acknowledged])  # the entries that the total sums
    if n_open:
        summary = f"{n_open} {labels['one_open'] if n_open == 1 else labels['many_open']}"
        if eur >= 1:
            summary += f", {_amount(eur, '€', language)}"
    else:
        summary = labels["no_open"]
    subject = f"[Econome] {_colon(title, language)} {summary}"
    sections = [
        ("open", labels["open"], digest.open),
        ("acknowledged", labels["acknowledged"], digest.acknowledged),
        ("resolved", labels["resolved"], digest.resolved),
        ("data", labels["data"], digest.data_problems),
        ("closed", labels["closed"], digest.closed),
    ]
    text_parts = [title, ""]
    html_parts = [f'<h2 style="margin:0 0 16px 0">{html.escape(title)}</h2>']
    for section, heading, entries in sections:
        if not entries:
            continue
        lines = [_entry_line(e, language, section, digits if section in ("open", "acknowledged") else None)
                 for e in entries]
        text_parts += [_colon(heading, language), *(f"- {line}" for line in lines), ""]
        items = "".join(f'<li style="margin:4px 0">{html.escape(line)}</li>' for line in lines)
        html_parts.append(f"<h3>{html.escape(heading)}</h3><ul>{items}</ul>")
    if n_open:
        totals = ", ".join(
            part for part in (
                _amount(kwh, "kWh", language, digits["kWh"]) if kwh > 0 else "",
                _amount(eur, "€", language) if eur > 0 else "",
                _amount(co2, "kgCO2e", language, digits["kgCO2e"]) if co2 > 0 else "",
            ) if part
        )
        if totals:
            text_parts += [f"{_colon(labels['total'], language)} {totals}", ""]
            html_parts.append(f"<p><b>{html.escape(_colon(labels['total'], language))}</b> {html.escape(totals)}</p>")
    if digest.is_empty():
        text_parts += [labels["none"], ""]
        html_parts.append(f"<p>{html.escape(labels['none'])}</p>")
    footer = _LABELS[language]["footer"]
    text = "\n".join(text_parts) + f"\n-- \n{footer}\n"
    body = "".join(html_parts)
    html_doc = (
        f'<!DOCTYPE html><html lang="{language}"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
        '<body style="font-family:Helvetica,Arial,sans-serif;color:#1a202c;max-width:840px;margin:24px auto;padding:0 16px">'
        f'{body}<p style="color:#718096;font-size:12px;border-top:1px solid #e2e8f0;padding-top:8px">'
        f"{html.escape(footer)}</p></body></html>"
    )
    return text, html_doc, subject


def _text_of(answer: bytes | str) -> str:
    return answer.decode(errors="replace") if isinstance(answer, bytes) else answer


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def anomaly_line(event: AnomalyEvent, language: Language = "fr") -> str:
    """The InfluxDB line of an event: measurement ``anomaly``, time = start (ms).

    The state is a field, not a tag: writing the event again as it goes from
    open to ongoing to resolved overwrites the same point instead of adding a
    series per state.
    """
    tags = {"building": event.building, "kind": event.kind, "usage": event.usage}
    tagstr = ",".join(f"{k}={escape_tag(v)}" for k, v in sorted(tags.items()))
    explanation = event.explanation(language).replace("\\", "\\\\").replace('"', '\\"')
    fields = (
        f"score={float(event.score)!r},excess_kwh={float(event.excess_kwh)!r},excess_eur={float(event.excess_eur)!r},"
        f'excess_kgco2e={float(event.excess_kgco2e)!r},explanation="{explanation}",end_ms={to_ms(event.end)}i,'
        f'state="{event.state.value}"'
    )
    return f"{ANOMALY_MEASUREMENT},{tagstr} {fields} {to_ms(event.start)}"


async def write_events(writer: InfluxWriter, events: Iterable[AnomalyEvent], language: Language = "fr") -> int:
    """Write events to InfluxDB through a :mod:`streams.influx` writer; returns how many.

    Raises:
        SinkError: the database refused the write or could not be reached.
    """
    lines = [anomaly_line(e, language) for e in events]
    await writer.write(lines)
    return len(lines)
