"""Anomaly events: what an advisor reads, with the excess in kWh, € and kgCO2e.

An :class:`AnomalyEvent` is one episode of one kind of anomaly in one building
and usage, from ``start`` to ``end``: what was expected against what was
observed, the excess priced with the inventory's tariffs and emission factors
(:func:`excess_cost`), the rule or model that found it, and the facts that
explain it. The explanation is written in French or English
(:func:`explain`), from the same facts, so one event can be sent to
recipients of both languages. :meth:`AnomalyEvent.alert` turns it into the
generic :class:`Alert` record (``qualified_name``, description, JSON-safe
``data``) that e-mail, InfluxDB and the JSON-lines output render.

>>> from datetime import UTC, datetime
>>> from inventory import Energy, load_inventory
>>> from pathlib import Path
>>> inv = load_inventory(Path("examples/commune.yaml"))
>>> cost = excess_cost(inv, Energy.NATURAL_GAS, "kWh", 412.0)
>>> round(cost.eur), round(cost.kgco2e)
(45, 94)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Literal
from zoneinfo import ZoneInfo

from inventory import Energy, Inventory
from streams.display import (
    amount,
    money,
    number,
    of_usage,
    percent,
    quantity,
    ratio_text,
    shared_digits,
    unit_label,
    usage_label,
)

__all__ = [
    "Alert",
    "AlertState",
    "AnomalyEvent",
    "ChartSeries",
    "Cost",
    "EventKind",
    "Language",
    "excess_cost",
    "explain",
]

Language = Literal["fr", "en"]


class AlertState(str, Enum):
    """Where an alert is in its life."""

    OPEN = "open"
    ONGOING = "ongoing"
    RESOLVED = "resolved"


class EventKind(str, Enum):
    """What an event says went wrong."""

    HEATING_UNOCCUPIED = "heating_unoccupied"
    OVERHEATING = "overheating"
    LIGHTING_UNOCCUPIED = "lighting_unoccupied"
    LIGHTING_DAYLIGHT = "lighting_daylight"
    BASELOAD_CREEP = "baseload_creep"
    WATER_LEAK = "water_leak"
    STALE_COUNTER = "stale_counter"
    FROZEN_SENSOR = "frozen_sensor"
    MISSING_DATA = "missing_data"
    CONSUMPTION_UNOCCUPIED = "consumption_unoccupied"
    SENSOR_DRIFT = "sensor_drift"
    LOST_DAILY_CYCLE = "lost_daily_cycle"
    UNUSUAL_CONSUMPTION = "unusual_consumption"


@dataclass(frozen=True, slots=True)
class Cost:
    """An excess in energy (kWh) or water (m3), priced."""

    kwh: float
    m3: float
    eur: float
    kgco2e: float


def excess_cost(inventory: Inventory, energy: Energy | None, unit: str, amount: float) -> Cost:
    """Price an excess with the inventory's tariff and emission factor.

    Args:
        inventory: gives the tariffs (``Inventory.tariff``).
        energy: the energy of the meter (water for a water meter); ``None`` prices nothing.
        unit: ``kWh`` or ``m3``.
        amount: the excess in that unit (negative values count as zero).

    Returns:
        The excess in kWh or m3, €, and kgCO2e.
    """
    amount = max(0.0, amount) if math.isfinite(amount) else 0.0
    kwh = amount if unit == "kWh" else 0.0
    m3 = amount if unit == "m3" else 0.0
    if energy is None or amount == 0.0:
        return Cost(kwh=kwh, m3=m3, eur=0.0, kgco2e=0.0)
    tariff = inventory.tariff(energy)
    return Cost(kwh=kwh, m3=m3, eur=amount * tariff.price_eur_per_unit, kgco2e=amount * tariff.emission_kgco2e_per_unit)


@dataclass(frozen=True, slots=True)
class Alert:
    """The generic alert record; e-mail, InfluxDB and JSON lines are renderings of it.

    Attributes:
        qualified_name: what raised it, e.g. ``anomalies.rules.water_leak``.
        description: one human sentence.
        data: JSON-safe details (numbers, strings, lists, dicts).
    """

    qualified_name: str
    description: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True, eq=False)
class ChartSeries:
    """Hourly observed and expected values around an event, for its chart.

    Attributes:
        times: start of each hour (UTC).
        observed: what the meter measured.
        expected: what was expected (equal to observed outside the anomaly).
        unit: unit of both.
    """

    times: list[datetime]
    observed: list[float]
    expected: list[float]
    unit: str


@dataclass(frozen=True, slots=True)
class AnomalyEvent:
    """One anomaly episode in one building and usage.

    Attributes:
        building: building id.
        building_name: its name, for people.
        usage: the usage concerned (``heating``, ``general``, ``lighting``, ``water``, ``comfort``...).
        kind: what went wrong (:class:`EventKind` value).
        qualified_name: the rule or model, e.g. ``anomalies.rules.heating_unoccupied``.
        source: ``rule`` or ``model``.
        start: first anomalous hour (UTC).
        end: end of the last anomalous hour (UTC); for an ongoing event, the last hour seen.
        detected_at: when the detector had enough evidence to open the alert.
        state: open, ongoing or resolved.
        score: how anomalous, 0 to 1, higher is worse.
        observed: what the meter measured over the event, in ``unit``.
        expected: what was expected over the event, in ``unit``.
        unit: unit of ``observed`` and ``expected`` (kWh, m3, degC, lx, h).
        excess_kwh: excess energy.
        excess_m3: excess water.
        excess_eur: excess cost.
        excess_kgco2e: excess emissions.
        point: the point concerned, for data-quality events.
        facts: JSON-safe numbers the explanation is made of.
        timezone: the organisation's timezone, for local times in explanations.
    """

    building: str
    building_name: str
    usage: str
    kind: str
    qualified_name: str
    source: Literal["rule", "model"]
    start: datetime
    end: datetime
    detected_at: datetime
    state: AlertState
    score: float
    observed: float
    expected: float
    unit: str
    excess_kwh: float = 0.0
    excess_m3: float = 0.0
    excess_eur: float = 0.0
    excess_kgco2e: float = 0.0
    point: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    timezone: str = "Europe/Paris"
    series: ChartSeries | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What makes two detections the same alert: building, usage, kind, point."""
        return (self.building, self.usage, self.kind, self.point or "")

    @property
    def duration(self) -> timedelta:
        """How long the event lasted (so far)."""
        return self.end - self.start

    def with_state(self, state: AlertState) -> AnomalyEvent:
        """A copy in another state."""
        return replace(self, state=state)

    def explanation(self, language: Language = "fr") -> str:
        """The explanation in French or English."""
        return explain(self, language)

    def digits(self, unit: str) -> int:
        """The decimals of this event's figures in ``unit`` (kWh, m3, kgCO2e), one for all of them.

        The expected, observed and excess amounts are shown together and must add
        up for the reader (:func:`streams.display.shared_digits`).
        """
        group = {"kWh": [self.excess_kwh], "m3": [self.excess_m3], "kgCO2e": [self.excess_kgco2e]}.get(unit, [])
        if unit == self.unit:
            group += [self.expected, self.observed]
        return shared_digits(group, unit)

    def to_json(self, language: Language = "fr") -> dict[str, Any]:
        """The JSON-lines record of ``econome detect`` (times in ISO 8601 UTC).

        >>> event = _sample_event()
        >>> sorted(event.to_json())[:6]
        ['building', 'building_name', 'detected_at', 'end', 'excess_eur', 'excess_kgco2e']
        """
        return {
            "building": self.building,
            "building_name": self.building_name,
            "usage": self.usage,
            "kind": self.kind,
            "qualified_name": self.qualified_name,
            "source": self.source,
            "state": self.state.value,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "detected_at": self.detected_at.isoformat(),
            "score": round(self.score, 4),
            "observed": round(self.observed, 3),
            "expected": round(self.expected, 3),
            "unit": self.unit,
            "excess_kwh": round(self.excess_kwh, 2),
            "excess_m3": round(self.excess_m3, 3),
            "excess_eur": round(self.excess_eur, 2),
            "excess_kgco2e": round(self.excess_kgco2e, 2),
            "point": self.point,
            "facts": self.facts,
            "explanation": self.explanation(language),
            "language": language,
        }

    def alert(self, language: Language = "fr") -> Alert:
        """The generic alert record of this event."""
        return Alert(qualified_name=self.qualified_name, description=self.explanation(language), data=self.to_json(language))


# --- explanations -----------------------------------------------------------------------------

_DAYS = {
    "fr": ["lun.", "mar.", "mer.", "jeu.", "ven.", "sam.", "dim."],
    "en": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
}

def _when(moment: datetime, tz: ZoneInfo, language: Language) -> str:
    local = moment.astimezone(tz)
    day = _DAYS[language][local.weekday()]
    return f"{day} {local:%d/%m %H:%M}"


def _span(event: AnomalyEvent, language: Language) -> str:
    tz = ZoneInfo(event.timezone)
    return f"{_when(event.start, tz, language)} → {_when(event.end, tz, language)}"


def _money(event: AnomalyEvent, language: Language) -> str:
    if event.excess_eur <= 0 and event.excess_kwh <= 0 and event.excess_m3 <= 0:
        return ""
    # Small amounts keep a decimal and a cost under a euro reads "< 1 €": "+0 kWh ≈ 0 €" would read as none.
    if event.excess_kwh > 0:
        size = "+" + amount(event.excess_kwh, "kWh", language, event.digits("kWh"))
    else:
        size = "+" + amount(event.excess_m3, "m3", language, event.digits("m3"))
    if event.usage == "heating" and event.excess_kwh > 0:
        size += " " + ("de chaleur" if language == "fr" else "of heat")
    co2 = amount(event.excess_kgco2e, "kgCO2e", language)
    return f"{_colon(language)} {size} ≈ {money(event.excess_eur, language)} ≈ {co2}"


def _colon(language: Language) -> str:
    # French typography: a no-break space before the colon.
    return "\u00a0:" if language == "fr" else ":"


# Decimals of each fact in the explanations; "signed" ones carry their sign (+4,6 / −4,6).
_FACT_DIGITS: dict[str, int] = {
    "indoor_c": 1, "limit_c": 0, "lux": 0, "increase_pct": 0, "flow_m3_h": 2, "hours": 0,
    "deviation_k": 1, "range_k": 1, "usual_range_k": 1,
}  # fmt: skip
_SIGNED_FACTS = frozenset({"deviation_k"})


def _fact_text(name: str, value: object, language: Language) -> object:
    """A fact as the explanation writes it: numbers in the language's typography, the rest as it is."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    digits = _FACT_DIGITS.get(name)
    if digits is None:  # a sensor's raw value: as many decimals as it needs to read well
        digits = 0 if abs(value) >= 100 else 1
    text = number(float(value), digits, language)
    if name in _SIGNED_FACTS and round(float(value), digits) > 0:
        text = "+" + text
    return text


_TEMPLATES: dict[str, dict[Language, str]] = {
    "heating_unoccupied": {
        "fr": "le chauffage a maintenu le confort ({indoor_c}\u00a0°C en moyenne) alors que le bâtiment était fermé ({closed})",
        "en": "heating kept comfort ({indoor_c}\u00a0°C on average) while the building was closed ({closed})",
    },
    "overheating": {
        "fr": "température intérieure de {indoor_c}\u00a0°C en chauffage, au-dessus de la limite de {limit_c}\u00a0°C "
        "({basis_fr}, {occupancy_fr})",
        "en": "indoor temperature of {indoor_c}\u00a0°C while heating, above the {limit_c}\u00a0°C limit "
        "({basis_en}, {occupancy_en})",
    },
    "lighting_unoccupied": {
        "fr": "éclairage allumé dans le bâtiment fermé",
        "en": "lights on in the closed building",
    },
    "lighting_daylight": {
        "fr": "éclairage à pleine puissance en plein jour ({lux}\u00a0lx mesurés)",
        "en": "lights at full power in full daylight ({lux}\u00a0lx measured)",
    },
    "baseload_creep": {
        "fr": "la consommation talon de nuit a augmenté de {increase_pct}\u00a0% par rapport aux semaines précédentes",
        "en": "the night base load rose by {increase_pct}\u00a0% compared with the previous weeks",
    },
    "water_leak": {
        "fr": "débit d'eau continu la nuit ({flow_m3_h}\u00a0m³/h au-dessus de l'habitude)\u00a0: fuite probable",
        "en": "continuous night water flow ({flow_m3_h} m³/h above usual): probable leak",
    },
    "stale_counter": {
        "fr": "le compteur {point} ne bouge plus alors qu'il devrait avancer (compteur bloqué ou mal relevé)",
        "en": "meter {point} stands still while it should move (stuck or badly read counter)",
    },
    "frozen_sensor": {
        "fr": "le capteur {point} répète la même valeur ({value}) depuis {hours}\u00a0h",
        "en": "sensor {point} repeats the same value ({value}) for {hours}\u00a0h",
    },
    "missing_data": {
        "fr": "aucune donnée du point {point} pendant {hours}\u00a0h",
        "en": "no data from point {point} for {hours}\u00a0h",
    },
    "consumption_unoccupied": {
        "fr": "consommation {of_usage} bâtiment fermé proche de celle d'un jour d'occupation "
        "(chauffage ou équipements laissés en marche\u202f?)",
        "en": "{usage_name} consumption in the closed building close to that of an occupied day "
        "(heating or equipment left on?)",
    },
    "sensor_drift": {
        "fr": "le capteur {point} s'écarte de {deviation_k}\u00a0°C de ses valeurs habituelles "
        "(capteur déréglé, déplacé ou en panne\u202f?)",
        "en": "sensor {point} is {deviation_k}\u00a0°C away from its usual values (drifting, moved or failing sensor?)",
    },
    "lost_daily_cycle": {
        "fr": "le capteur {point} ne varie plus que de {range_k}\u00a0°C par jour au lieu de {usual_range_k}\u00a0°C "
        "en temps normal (capteur bloqué ou hors de la pièce\u202f?)",
        "en": "sensor {point} varies by only {range_k}\u00a0°C a day instead of the usual {usual_range_k}\u00a0°C "
        "(stuck sensor, or not in the room?)",
    },
}


def explain(event: AnomalyEvent, language: Language = "fr") -> str:
    r"""One sentence an advisor can act on, in French or English.

    >>> text = explain(_sample_event(), "en")
    >>> text.split(" while ")[0]
    'Gymnase Batum: heating kept comfort (19.2\xa0°C on average)'
    >>> text.split(" while ")[1].split(": +")[0]
    'the building was closed (Sat 10/01 18:00 → Mon 12/01 06:00)'
    >>> text.split(": +")[1]
    '412\xa0kWh of heat ≈ 45\xa0€ ≈ 94\xa0kgCO₂e'
    """
    if event.kind == EventKind.UNUSUAL_CONSUMPTION.value:
        return f"{event.building_name}{_colon(language)} {_explain_model(event, language)}{_money(event, language)}"
    template = _TEMPLATES.get(event.kind, {"fr": event.kind, "en": event.kind})[language]
    facts: dict[str, Any] = {
        "closed": _span(event, language),
        "point": _point_text(event, language),
        "usage_name": usage_label(event.usage, language),
        "of_usage": of_usage(event.usage, language),
        **{name: _fact_text(name, value, language) for name, value in event.facts.items()},
    }
    value, unit = event.facts.get("value"), event.facts.get("point_unit")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(unit, str):
        facts["value"] = f"{facts['value']}\u00a0{unit_label(unit)}"
    silent = _silent_points(event)
    if len(silent) > 1:  # one device or gateway gone silent: every point of it is named, not only the first
        template = _MISSING_MANY[language]
        facts["count"] = len(silent)
        facts["points"] = ", ".join(silent)
    occupied = bool(facts.get("occupied", True))
    facts.setdefault("occupancy_fr", "bâtiment occupé" if occupied else "bâtiment inoccupé")
    facts.setdefault("occupancy_en", "occupied" if occupied else "unoccupied")
    regulated = bool(facts.get("regulated", True))
    facts.setdefault("basis_fr", "Code de l'énergie R241-26" if regulated else "consigne déclarée à l'inventaire")
    facts.setdefault("basis_en", "French Code de l'énergie R241-26" if regulated else "setpoint declared in the inventory")
    try:
        body = template.format(**facts)
    except (KeyError, ValueError):
        body = template
    if event.kind != "heating_unoccupied":
        body += f" ({_span(event, language)})"
    return f"{event.building_name}{_colon(language)} {body}{_money(event, language)}"


def _point_text(event: AnomalyEvent, language: Language) -> str:
    """The point as an advisor knows it: its name from the inventory, then its id to find it there.

    >>> _point_text(replace(_sample_event(), point="b1-co2", facts={"point_name": "CO2 Classes"}), "fr")
    '« CO2 Classes » (b1-co2)'
    """
    name = event.facts.get("point_name")
    if not event.point or not isinstance(name, str) or not name:
        return event.point or ""
    return f"« {name} » ({event.point})" if language == "fr" else f"'{name}' ({event.point})"


_MISSING_MANY: dict[str, str] = {
    "fr": "aucune donnée de {count} points partis ensemble (même appareil ou passerelle\u202f?)\u00a0: {points}, "
    "pendant {hours}\u00a0h",
    "en": "no data from {count} points that went silent together (same device or gateway?): {points}, "
    "for {hours} h",
}


def _silent_points(event: AnomalyEvent) -> list[str]:
    """Every point a ``missing_data`` event stands for: its own, then those silent with it (fact ``silent_with``).

    >>> _silent_points(replace(_sample_event(), kind="missing_data", point="b1-temp",
    ...                        facts={"silent_with": "b1-co2, b1-hum", "hours": 50.0}))
    ['b1-temp', 'b1-co2', 'b1-hum']
    """
    if event.kind != EventKind.MISSING_DATA.value:
        return []
    others = [p.strip() for p in str(event.facts.get("silent_with", "")).split(",") if p.strip()]
    return [p for p in [event.point or "", *others] if p]


def _explain_model(event: AnomalyEvent, language: Language) -> str:
    r"""Which residual, how large and since when, in an advisor's words (a model event).

    The facts are the share of the event's hours the building was closed
    (``closed_share``) and the mean outdoor temperature (``outdoor_c``); the
    size is the observed against the expected consumption over its hours.
    When the weather station was silent over some of its hours
    (``weather_unknown_h``, the longest silence), they were expected at the
    coldest day of the weeks before (``weather_bound_c``), and it says so
    (the last example).

    >>> event = replace(_sample_event(), kind="unusual_consumption", source="model",
    ...                 facts={"closed_share": 0.9, "outdoor_c": 4.2})
    >>> text = _explain_model(event, "en")
    >>> text.split(", mostly")[0]
    'heating consumption 60% above expected for the weather (4\xa0°C outside) and the opening hours'
    >>> text.split(", mostly")[1]
    ' while the building was closed (nights, weekends, holidays), since Sat 10/01 18:00 (until Mon 12/01 06:00)'

    >>> silent = replace(event, facts={"closed_share": 0.2, "outdoor_c": 6.0, "weather_unknown_h": 80.0,
    ...                                "weather_bound_c": -2.4})
    >>> _explain_model(silent, "en").split(" and the opening")[0].split("; ")[1]
    'outdoor temperature unknown for 3\xa0days: expected at the coldest of the last 4 weeks, -2\xa0°C)'
    """
    usage = usage_label(event.usage, language)
    share = (event.observed - event.expected) / event.expected if event.expected > 0 else math.nan
    closed = event.facts.get("closed_share")
    outdoor = event.facts.get("outdoor_c")
    weather = isinstance(outdoor, (int, float)) and math.isfinite(outdoor) and event.usage == "heating"
    unknown_h, bound_c = event.facts.get("weather_unknown_h"), event.facts.get("weather_bound_c")
    # Hours the station was silent for were expected at a bounded weather (anomalies.expected.unknown_weather).
    silent = (isinstance(unknown_h, (int, float)) and math.isfinite(unknown_h)
              and isinstance(bound_c, (int, float)) and math.isfinite(bound_c))
    tz = ZoneInfo(event.timezone)
    since, until = _when(event.start, tz, language), _when(event.end, tz, language)
    # Against a near-zero expected value a percentage is absurd ("+8 608 %"): "89 fois l'attendu".
    times = ratio_text(event.observed, event.expected, language)
    if language == "fr":
        size = (
            f"égale à {times} l'attendu" if times
            else f"supérieure de {percent(share, 0, language)} à l'attendu" if math.isfinite(share)
            else "au-dessus de l'attendu"
        )
        basis = (
            f"pour la météo ({quantity(float(outdoor or 0.0), 'degC', 0, language)} dehors) et l'horaire"
            if weather else "pour l'horaire et le calendrier"
        )
        if silent:
            unknown = (f"température extérieure inconnue depuis {_silent_days(float(unknown_h or 0.0), language)}"
                       f"\u00a0: attendu au plus froid des {_UNKNOWN_WEEKS} dernières semaines, "
                       f"{quantity(float(bound_c or 0.0), 'degC', 0, language)}")
            basis = (basis.replace(" dehors)", f" dehors\u202f; {unknown})") if weather
                     else f"pour la météo ({unknown}) et l'horaire")
        where = _where(closed, ("surtout bâtiment fermé (nuits, week-ends, vacances)", "pendant les heures d'ouverture",
                                "de jour comme de nuit"))
        return f"consommation {of_usage(event.usage, language)} {size} {basis}, {where}, depuis {since} (jusqu'à {until})"
    size = (
        f"{times} the expected value" if times
        else f"{percent(share, 0, language)} above expected" if math.isfinite(share)
        else "above expected"
    )
    basis = (
        f"for the weather ({quantity(float(outdoor or 0.0), 'degC', 0, language)} outside) and the opening hours"
        if weather else "for the opening hours and calendar"
    )
    if silent:
        unknown = (f"outdoor temperature unknown for {_silent_days(float(unknown_h or 0.0), language)}: expected at "
                   f"the coldest of the last {_UNKNOWN_WEEKS} weeks, {quantity(float(bound_c or 0.0), 'degC', 0, language)}")
        basis = (basis.replace(" outside)", f" outside; {unknown})") if weather
                 else f"for the weather ({unknown}) and the opening hours")
    where = _where(closed, ("mostly while the building was closed (nights, weekends, holidays)", "during opening hours",
                            "day and night"))
    return f"{usage} consumption {size} {basis}, {where}, since {since} (until {until})"


_UNKNOWN_WEEKS = 4  # anomalies.expected.unknown_weather's 28 days


def _silent_days(hours: float, language: Language) -> str:
    r"""How long the weather station was silent, in days (in hours under two days).

    >>> _silent_days(80.0, "fr"), _silent_days(30.0, "en")
    ('3\xa0jours', '30\xa0hours')
    """
    if hours < 48:
        return f"{round(hours)}\u00a0{'heures' if language == 'fr' else 'hours'}"
    return f"{round(hours / 24)}\u00a0{'jours' if language == 'fr' else 'days'}"


def _where(closed_share: object, phrases: tuple[str, str, str]) -> str:
    """Closed hours, opening hours, or both, from the share of the event's hours the building was closed."""
    if not isinstance(closed_share, (int, float)) or not math.isfinite(closed_share):
        return phrases[2]
    if closed_share >= 0.7:
        return phrases[0]
    if closed_share <= 0.3:
        return phrases[1]
    return phrases[2]


def _sample_event() -> AnomalyEvent:
    """A weekend of heating in a closed gymnasium, for examples and tests."""
    start = datetime(2026, 1, 10, 17, tzinfo=UTC)
    return AnomalyEvent(
        building="gymnase-batum", building_name="Gymnase Batum", usage="heating", kind="heating_unoccupied",
        qualified_name="anomalies.rules.heating_unoccupied", source="rule", start=start,
        end=start + timedelta(hours=36), detected_at=start + timedelta(hours=3), state=AlertState.OPEN, score=0.9,
        observed=1100.0, expected=688.0, unit="kWh", excess_kwh=412.0, excess_eur=45.32, excess_kgco2e=93.5,
        facts={"indoor_c": 19.2},
        series=_sample_series(start),
    )


def _sample_series(start: datetime) -> ChartSeries:
    """Observed vs expected heat over the sample weekend, with a day either side."""
    times = [start + timedelta(hours=h) for h in range(-24, 60)]
    observed, expected = [], []
    for moment in times:
        hour = moment.hour
        base = 28.0 + 10.0 * math.cos((hour - 6) / 24 * 2 * math.pi)
        inside = start <= moment < start + timedelta(hours=36)
        observed.append(round(base + (11.0 if inside else 0.0), 2))
        expected.append(round(base if inside else observed[-1], 2))
    return ChartSeries(times=times, observed=observed, expected=expected, unit="kWh")
