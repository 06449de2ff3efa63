"""Small excesses and near-zero expected values, as the mails write them (issue 13 review).

The review read "+0 kWh de chaleur ≈ 0 €", "Surconsommation : 0 kWh / Coût : 0 €", a digest
"2 kWh, 0 €", and "supérieure de 8 608 % à l'attendu".
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from anomalies.alerts import Digest, DigestEntry, EmailAlerter, EmailConfig
from anomalies.events import AnomalyEvent, _sample_event, explain
from inventory import load_inventory

ROOT = Path(__file__).resolve().parents[3]
INV = load_inventory(ROOT / "examples" / "commune.yaml")
NB, NNB = "\u00a0", "\u202f"


def _text(events: list[AnomalyEvent], language: str, digest: bool = False) -> str:
    cfg = EmailConfig(host="127.0.0.1", security="none", sender="e@x.fr", languages={"en@x.fr": "en"})
    alerter = EmailAlerter(cfg, INV)
    to = "en@x.fr" if language == "en" else "cep@x.fr"
    if digest:
        message = alerter.render_digest(Digest(date(2026, 1, 12), open=[DigestEntry(i, e) for i, e in enumerate(events)]), to)
    else:
        message = alerter.render(events, to)
    return str(message["Subject"]) + "\n" + message.get_body(("plain",)).get_content()


def test_a_small_excess_keeps_a_decimal_and_a_cost_under_a_euro_is_not_zero() -> None:
    small = replace(_sample_event(), observed=4.2, expected=3.4, excess_kwh=0.8, excess_eur=0.09, excess_kgco2e=0.18)
    assert explain(small, "fr").endswith(f"+0,8{NB}kWh de chaleur ≈ <{NB}1{NB}€ ≈ 0,2{NB}kgCO₂e")
    assert explain(small, "en").endswith(f"+0.8{NB}kWh of heat ≈ <{NB}1{NB}€ ≈ 0.2{NB}kgCO₂e")
    mail = _text([small], "fr")
    for row in (f"Attendu{NB}: 3,4{NB}kWh", f"Observé{NB}: 4,2{NB}kWh", f"0,8{NB}kWh", f"<{NB}1{NB}€"):
        assert row in mail, row
    assert f" 0{NB}€" not in mail
    assert f" 0{NB}kWh" not in mail
    digest = _text([small, replace(small, building="mairie", building_name="Mairie")], "fr", digest=True)
    assert f"1,6{NB}kWh" in digest  # the total of the two
    assert f" 0{NB}€" not in digest
    # Large amounts stay whole.
    big = _sample_event()
    assert explain(big, "fr").endswith(f"+412{NB}kWh de chaleur ≈ 45{NB}€ ≈ 94{NB}kgCO₂e")


@pytest.mark.parametrize(("observed", "expected", "fr", "en"), [
    (1688.0, 19.0, f"égale à 89{NB}fois l'attendu", "89 times the expected value"),
    (13.0, 4.0, f"égale à 3,2{NB}fois l'attendu", "3.2 times the expected value"),
    (1100.0, 688.0, f"supérieure de 60{NB}% à l'attendu", "60% above expected"),
])
def test_an_excess_over_a_small_expected_value_reads_as_times(observed: float, expected: float, fr: str, en: str) -> None:
    event = replace(_sample_event(), kind="unusual_consumption", source="model", observed=observed, expected=expected,
                    facts={"closed_share": 0.9, "outdoor_c": 4.2})
    assert fr in explain(event, "fr")
    assert en in explain(event, "en")
    assert ("%" in explain(event, "fr")) == (observed <= 3 * expected)
    assert f"8{NNB}784" not in _text([event], "fr")
