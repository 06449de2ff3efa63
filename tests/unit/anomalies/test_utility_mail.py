"""A silent Linky or Gazpar is not a sensor with a flat battery: its missing-data mail says what to check (review F3)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from anomalies.alerts import EmailAlerter, EmailConfig
from anomalies.events import AlertState, _sample_event
from inventory import Inventory, load_inventory

ROOT = Path(__file__).resolve().parents[3]
SCHOOL, LINKY, GAZPAR = "maternelle-aulnes", "maternelle-aulnes-linky", "salle-polyvalente-gazpar"


def _with_apis(inv: Inventory) -> Inventory:
    """The demo commune with its school's Linky read through Data Connect (the hall's Gazpar stays file-fed)."""
    sites = []
    for site in inv.sites:
        buildings = []
        for building in site.buildings:
            points = [p.model_copy(update={"enedis": p.enedis.model_copy(update={"data_connect": True})})
                      if p.id == LINKY and p.enedis is not None else p for p in building.points]
            buildings.append(building.model_copy(update={"points": points}))
        sites.append(site.model_copy(update={"buildings": buildings}))
    return inv.model_copy(update={"sites": sites})


def _mail(inv: Inventory, building: str, point: str, language: str) -> tuple[str, str]:
    config = EmailConfig.model_validate(
        {"host": "127.0.0.1", "security": "none", "sender": "econome@valmont.example", "language": language})
    event = replace(_sample_event(), building=building, kind="missing_data", point=point, state=AlertState.OPEN,
                    series=None, facts={})
    message = EmailAlerter(config, inv).render([event], "cep@valmont.example")
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None
    assert html is not None
    return text.get_content(), html.get_content()


@pytest.mark.parametrize("language", ["fr", "en"])
def test_a_silent_linky_or_gazpar_gets_its_own_advice(language: str) -> None:
    inv = _with_apis(load_inventory(ROOT / "examples" / "commune.yaml"))
    linky_text, linky_html = _mail(inv, SCHOOL, LINKY, language)
    gas_text, _ = _mail(inv, "salle-polyvalente", GAZPAR, language)
    sensor_text, _ = _mail(inv, "gymnase-batum", "gymnase-batum-elec-power", language)
    if language == "fr":
        assert "consentement (PRM 30001234567890) est toujours valide" in linky_text
        assert "dernière erreur de la relève quotidienne" in linky_text
        assert "consentement (PRM 30001234567890)" in linky_html
        assert "econome import grdf FICHIER" in gas_text
        assert "PCE 21400000000012" in gas_text
        assert "Vérifier le capteur, sa pile et la passerelle." in sensor_text  # a sensor of ours: as before
        for text in (linky_text, gas_text):
            assert "pile" not in text
    else:
        assert "check that the consent for PRM 30001234567890 is still valid" in linky_text
        assert "econome import grdf FILE" in gas_text
        assert "Check the sensor, its battery and the gateway." in sensor_text
        for text in (linky_text, gas_text):
            assert "battery" not in text
