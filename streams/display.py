r"""How numbers, units and names are written for people: the e-mails (:mod:`anomalies`) and the reports (:mod:`dashboards`).

One module, so that an alert mail and a monthly report write "18,5 °C" the
same way. French follows French typography (numbers from Babel's CLDR data):
a decimal comma, a narrow no-break space (U+202F) between thousands, a
no-break space between a number and its unit, "m³" and "°C", a true minus
sign (U+2212), and never "−0". English keeps the point and a comma per thousand.

Internal names never reach a reader: the inventory's enum values
(``town_hall``, ``heating``, ``natural_gas``) have labels here.

>>> number(-0.04, 1), number(12345.678, 1), number(12345.678, 1, "en")
('0,0', '12\u202f345,7', '12,345.7')
>>> quantity(18.46, "degC", 1), quantity(2.4, "m3", 1)
('18,5\xa0°C', '2,4\xa0m³')
>>> percent(-0.12), percent(-0.001), percent(0.304, 1)
('−12\xa0%', '0\xa0%', '30,4\xa0%')
>>> building_usage_label("town_hall"), usage_label("water")
('mairie', 'eau')
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

from babel.numbers import format_decimal

from inventory import BuildingUsage, Energy, Usage

__all__ = [
    "Language",
    "amount",
    "amounts",
    "building_usage_label",
    "energy_label",
    "money",
    "number",
    "of_usage",
    "percent",
    "quantity",
    "ratio_text",
    "shared_digits",
    "unit_label",
    "usage_label",
]

Language = Literal["fr", "en"]

_LOCALES: dict[Language, str] = {"fr": "fr_FR", "en": "en_GB"}
_MINUS = "\u2212"
_NBSP = "\u00a0"

_UNITS: dict[str, str] = {
    "m3": "m³",
    "m3/h": "m³/h",
    "degC": "°C",
    "kgCO2e": "kgCO₂e",
    "tCO2e": "tCO₂e",
    "m2": "m²",
    "kWh/m2": "kWh/m²",
}

_USAGES: dict[Language, dict[str, str]] = {
    "fr": {
        Usage.HEATING: "chauffage", Usage.LIGHTING: "éclairage", Usage.DHW: "eau chaude sanitaire",
        Usage.VENTILATION: "ventilation", Usage.COOLING: "climatisation", Usage.GENERAL: "électricité",
        Usage.WATER: "eau", Usage.COMFORT: "confort", Usage.WEATHER: "météo", Usage.OTHER: "autre",
    },
    "en": {
        Usage.HEATING: "heating", Usage.LIGHTING: "lighting", Usage.DHW: "hot water",
        Usage.VENTILATION: "ventilation", Usage.COOLING: "cooling", Usage.GENERAL: "electricity",
        Usage.WATER: "water", Usage.COMFORT: "comfort", Usage.WEATHER: "weather", Usage.OTHER: "other",
    },
}  # fmt: skip

# "la consommation d'eau", "de chauffage": French elides "de" before a vowel.
_OF_USAGE_FR: dict[str, str] = {Usage.WATER: "d'eau", Usage.DHW: "d'eau chaude sanitaire", Usage.LIGHTING: "d'éclairage"}

_BUILDING_USAGES: dict[Language, dict[str, str]] = {
    "fr": {
        BuildingUsage.SCHOOL: "école", BuildingUsage.NURSERY: "crèche", BuildingUsage.GYMNASIUM: "gymnase",
        BuildingUsage.SWIMMING_POOL: "piscine", BuildingUsage.TOWN_HALL: "mairie",
        BuildingUsage.LIBRARY: "bibliothèque", BuildingUsage.OFFICES: "bureaux",
        BuildingUsage.CULTURAL_CENTRE: "salle culturelle", BuildingUsage.WORKSHOP: "ateliers",
        BuildingUsage.RESTAURANT: "restaurant scolaire", BuildingUsage.CHURCH: "église", BuildingUsage.OTHER: "autre",
    },
    "en": {
        BuildingUsage.SCHOOL: "school", BuildingUsage.NURSERY: "nursery", BuildingUsage.GYMNASIUM: "gymnasium",
        BuildingUsage.SWIMMING_POOL: "swimming pool", BuildingUsage.TOWN_HALL: "town hall",
        BuildingUsage.LIBRARY: "library", BuildingUsage.OFFICES: "offices",
        BuildingUsage.CULTURAL_CENTRE: "cultural centre", BuildingUsage.WORKSHOP: "workshop",
        BuildingUsage.RESTAURANT: "canteen", BuildingUsage.CHURCH: "church", BuildingUsage.OTHER: "other",
    },
}  # fmt: skip

_ENERGIES: dict[Language, dict[str, str]] = {
    "fr": {
        Energy.ELECTRICITY: "électricité", Energy.NATURAL_GAS: "gaz naturel", Energy.HEATING_NETWORK: "réseau de chaleur",
        Energy.FUEL_OIL: "fioul", Energy.WOOD_PELLETS: "granulés bois", Energy.WATER: "eau",
    },
    "en": {
        Energy.ELECTRICITY: "electricity", Energy.NATURAL_GAS: "natural gas", Energy.HEATING_NETWORK: "district heating",
        Energy.FUEL_OIL: "fuel oil", Energy.WOOD_PELLETS: "wood pellets", Energy.WATER: "water",
    },
}  # fmt: skip


def number(value: float, digits: int = 0, language: Language = "fr") -> str:
    r"""A number rounded to ``digits`` decimals, as the language writes it; "—" when unknown.

    A value that rounds to zero is written without a sign: "−0" reads as a loss.

    >>> number(-1234.5), number(-1234.5, 0, "en"), number(math.nan)
    ('−1\u202f234', '-1,234', '—')
    """
    if not math.isfinite(value):
        return "—"
    rounded = round(value, digits)
    if rounded == 0:
        rounded = 0.0  # drops the sign of -0.0
    pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "")
    text = format_decimal(rounded, format=pattern, locale=_LOCALES[language], decimal_quantization=True)
    return text.replace("-", _MINUS) if language == "fr" else text


def unit_label(unit: str) -> str:
    """The unit as printed: ``m3`` is m³, ``degC`` is °C; others as they are.

    >>> unit_label("m3"), unit_label("kWh")
    ('m³', 'kWh')
    """
    return _UNITS.get(unit, unit)


def quantity(value: float, unit: str, digits: int = 0, language: Language = "fr") -> str:
    r"""A number and its unit, joined by a no-break space (in both languages, so the unit never wraps alone).

    >>> quantity(1234.0, "kWh"), quantity(1234.0, "kWh", 0, "en")
    ('1\u202f234\xa0kWh', '1,234\xa0kWh')
    """
    return f"{number(value, digits, language)}{_NBSP}{unit_label(unit)}"


def money(eur: float, language: Language = "fr") -> str:
    r"""A cost to the euro; under one euro "< 1 €", never "0 €" for a cost that exists.

    >>> money(1234.4), money(0.3), money(0.3, "en"), money(0.0)
    ('1 234 €', '< 1 €', '< 1 €', '0 €')
    """
    if math.isfinite(eur) and 0 < abs(eur) < 0.5:  # it would round to "0 €"
        return f"<{_NBSP}{quantity(1.0, '€', 0, language)}"
    return quantity(eur, "€", 0, language)


def shared_digits(values: Iterable[float], unit: str = "") -> int:
    r"""The decimals of figures shown together (an expected, observed and excess; a table's column and its total).

    One precision for the group, so that 4,2 + 19,0 reads as 23,2 and not
    "4,2 + 19 = 23": chosen from the smallest non-zero figure, so that it never
    reads 0 either. From 10 whole numbers; from 0,05 one decimal; below, two.
    Temperatures always keep one decimal.

    >>> shared_digits([4.24, 23.2, 18.96], "m3"), shared_digits([1234.0, 56.0]), shared_digits([0.04, 12.0])
    (1, 0, 2)
    >>> shared_digits([0.0, 120.0]), shared_digits([]), shared_digits([30.0], "degC")
    (0, 0, 1)
    """
    if unit == "degC":
        return 1
    present = [abs(v) for v in values if math.isfinite(v) and v != 0]
    if not present:
        return 0
    smallest = min(present)
    return 0 if smallest >= 10 else 1 if smallest >= 0.05 else 2


def amount(value: float, unit: str, language: Language = "fr", digits: int | None = None) -> str:
    r"""A consumption, cost or emission as the e-mails and reports write it, so that a small one never reads "0".

    Alone, its decimals are :func:`shared_digits` of itself (under 10 one
    decimal, under 0,05 two, under 0,005 "< 0,01"); figures shown together pass
    their ``digits`` (:func:`amounts`). Euros go through :func:`money`.

    >>> amount(3.46, "kWh"), amount(1234.5, "kWh"), amount(2.44, "m3"), amount(12.34, "m3"), amount(0.4, "€")
    ('3,5\xa0kWh', '1\u202f234\xa0kWh', '2,4\xa0m³', '12\xa0m³', '<\xa01\xa0€')
    >>> amount(0.04, "m3"), amount(0.001, "m3"), amount(19.0, "m3", digits=1)
    ('0,04\xa0m³', '<\xa00,01\xa0m³', '19,0\xa0m³')
    """
    if unit == "€":
        return money(value, language)
    if digits is None:
        digits = shared_digits([value], unit)
    smallest = 10.0**-digits
    if math.isfinite(value) and 0 < abs(value) < smallest / 2 and unit != "degC":  # it would round to 0
        return f"<{_NBSP}{quantity(smallest, unit, digits, language)}"
    return quantity(value, unit, digits, language)


def amounts(values: Sequence[float], unit: str, language: Language = "fr") -> list[str]:
    r"""Figures shown together (meant to add up), with one precision: :func:`shared_digits`.

    >>> amounts([4.24, 23.17, 18.93], "m3")
    ['4,2\xa0m³', '23,2\xa0m³', '18,9\xa0m³']
    """
    digits = shared_digits(values, unit)
    return [amount(v, unit, language, digits) for v in values]


def ratio_text(observed: float, expected: float, language: Language = "fr") -> str | None:
    r"""An excess over a small expected value as "x times", where a percentage would be absurd (``None`` otherwise).

    Above three times the expected value (+200 %), "+8 608 %" tells a reader
    less than "87 fois l'attendu".

    >>> ratio_text(1688.0, 19.0), ratio_text(10.0, 2.5, "en"), ratio_text(12.0, 10.0)
    ('89 fois', '4.0 times', None)
    """
    if not (math.isfinite(observed) and math.isfinite(expected)) or expected <= 0 or observed <= 3 * expected:
        return None
    times = observed / expected
    text = number(times, 0 if times >= 10 else 1, language)
    return f"{text}{_NBSP}fois" if language == "fr" else f"{text} times"


def percent(fraction: float, digits: int = 0, language: Language = "fr", *, signed: bool = False) -> str:
    r"""A fraction as a percentage: French "−12 %" (no-break space), English "-12%"; "—" when unknown.

    Args:
        fraction: 0.12 for 12 %.
        digits: decimals.
        language: fr or en.
        signed: write "+" before a positive value (a change).

    >>> percent(0.125, 1, signed=True), percent(0.5, 0, "en")
    ('+12,5\xa0%', '50%')
    """
    if not math.isfinite(fraction):
        return "—"
    text = number(100.0 * fraction, digits, language)
    if signed and round(100.0 * fraction, digits) > 0:
        text = "+" + text
    return f"{text}{_NBSP}%" if language == "fr" else f"{text}%"


def usage_label(usage: str, language: Language = "fr") -> str:
    """What a point's usage (:class:`inventory.Usage` value) is called.

    >>> usage_label("general"), usage_label("dhw", "en")
    ('électricité', 'hot water')
    """
    known: dict[str, str] = _USAGES[language]
    return known.get(usage, usage.replace("_", " "))


def of_usage(usage: str, language: Language = "fr") -> str:
    """``consumption of <usage>`` in French needs "d'" before a vowel: "d'eau", "de chauffage".

    >>> of_usage("water"), of_usage("heating")
    ("d'eau", 'de chauffage')
    """
    if language == "fr":
        elided: dict[str, str] = _OF_USAGE_FR
        return elided.get(usage, f"de {usage_label(usage, language)}")
    return usage_label(usage, language)


def building_usage_label(usage: str, language: Language = "fr") -> str:
    """What a building's usage (:class:`inventory.BuildingUsage` value) is called.

    >>> building_usage_label("swimming_pool", "en")
    'swimming pool'
    """
    known: dict[str, str] = _BUILDING_USAGES[language]
    return known.get(usage, usage.replace("_", " "))


def energy_label(energy: str, language: Language = "fr") -> str:
    """What an energy (:class:`inventory.Energy` value) is called, in lower case.

    >>> energy_label("natural_gas")
    'gaz naturel'
    """
    known: dict[str, str] = _ENERGIES[language]
    return known.get(energy, energy.replace("_", " "))
