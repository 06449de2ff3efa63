"""The one list of what a reader must not see (tests/reader_text.py) catches what either earlier list caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from inventory import load_inventory
from tests.reader_text import figure, problems, visible_text

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "text",
    [
        # Caught by the content tests' list only, before the merge.
        "Surconsommation : 12345 kWh",
        "Variation : -5 %",
        "Température : 5°C",
        "Détecté par iforest",
        "Total : 12 kWh",  # a breaking space before the unit
        "Modèle : towt(terms=3)",
        "usage town_hall",
        "Usage : heating",
        "Jours : occupied",
        # Caught by the pictures test's list only.
        "Modèle : None",
        "Écart : nan",
        "Modèle : daily",
        "anomalies.rules.water_leak",
        "Module : mv.savings",
        # Both.
        "Score 1.00",
        "2,4 m3",
        "18.5 °C",
        "−0 %",
        "-0,0 %",
        "règle water_leak",
    ],
)
def test_every_forbidden_text_is_caught(text: str) -> None:
    assert problems(text), text


@pytest.mark.parametrize(
    "text",
    [
        "Observé\xa0: 2,4\xa0m³, attendu\xa0: 0,4\xa0m³",
        "Surconsommation\xa0: 12\u202f345\xa0kWh, soit 1\u202f852\xa0€",
        "Compteur creche-water-volume figé depuis le 22/01/2026 00:00",  # point ids stay allowed
        "Sonde atelier-atelier-temperature : 18,5\xa0°C",
        "Bilan 2025, année de référence 2024",
        "Variation\xa0: −5\xa0%",
        "Écrire à cep@valmont.example",
        "Le restaurant scolaire, la ventilation",
    ],
)
def test_what_a_reader_may_see_passes(text: str) -> None:
    assert problems(text) == []


def test_building_ids_are_caught_with_the_inventory_but_not_point_ids() -> None:
    inv = load_inventory(ROOT / "examples" / "commune.yaml")
    assert problems("Bâtiment gymnase-batum", inv)
    assert problems("Compteur gymnase-batum-salle-temperature", inv) == []
    assert problems("Bâtiment Gymnase Batum", inv) == []


def test_visible_text_and_figures() -> None:
    page = ('<html><head><title>x.y</title><style>p{margin:0.5em}</style></head><body>'
            '<table><tr><th>Observé</th><td>: 1&#8239;234,5&nbsp;m³</td></tr></table>'
            '<img alt="Graphique" src="data:image/png;base64,AAA.B"></body></html>')  # fmt: skip
    text = visible_text(page)
    assert "0.5" not in text
    assert "AAA" not in text
    assert "Graphique" in text
    assert figure(text, "Observé") == 1234.5
