"""Issue 13: every e-mail an advisor gets reads right (figures, words, French typography).

Each alert kind (open and resolved), the digest, from the demo commune's
simulated faults plus one synthetic event of each kind the simulation does
not raise. Figures are read back from the mail's text.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import numpy as np
import pytest

from anomalies.alerts import Digest, DigestEntry, EmailAlerter, EmailConfig
from anomalies.detect import DetectConfig, detect
from anomalies.events import AlertState, AnomalyEvent, EventKind, _sample_event
from anomalies.features import PointSeries
from inventory import Inventory, load_inventory
from simulator.physics import generate_history
from tests.reader_text import figure, problems, shown, visible_text
from tests.unit.anomalies.test_detect import START, _faults

ROOT = Path(__file__).resolve().parents[3]
TO = "cep@valmont.example"

# Kinds the demo's faults do not raise, with the facts their rule gives.
SYNTHETIC: dict[str, dict[str, object]] = {
    "lighting_daylight": {"lux": 1830.4},
    "baseload_creep": {"increase_pct": 38.2},
    "consumption_unoccupied": {},
    "sensor_drift": {"deviation_k": -4.6},
    "lost_daily_cycle": {"range_k": 0.3, "usual_range_k": 3.2},
}


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return load_inventory(ROOT / "examples" / "commune.yaml")


@pytest.fixture(scope="module")
def events(inventory: Inventory) -> list[AnomalyEvent]:
    history = generate_history(inventory, START, START + timedelta(days=42), timedelta(minutes=15), seed=11,
                               faults=_faults(inventory))
    seconds = history.times.astype("datetime64[ms]").astype(np.int64) / 1000.0
    readings = {
        pid: PointSeries(seconds[np.isfinite(col)], col[np.isfinite(col)])
        for pid, col in zip(history.point_ids, history.values.T, strict=True)
    }
    found = detect(inventory, readings, DetectConfig(models=True))
    sample = _sample_event()
    for kind, facts in SYNTHETIC.items():
        found.append(replace(sample, kind=kind, qualified_name=f"anomalies.rules.{kind}", facts=facts,
                             point="gymnase-batum-salle-temperature" if "k" in "".join(facts) else None))
    return found


@pytest.fixture(scope="module")
def alerter(inventory: Inventory) -> EmailAlerter:
    return EmailAlerter(EmailConfig(host="127.0.0.1", security="none", sender="econome@valmont.example"), inventory)


def _read(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    page = message.get_body(("html",))
    assert text is not None
    assert page is not None
    return f"{message['Subject']}\n{text.get_content()}", visible_text(page.get_content())


def test_the_demo_raises_every_kind(events: list[AnomalyEvent]) -> None:
    kinds = {e.kind for e in events}
    assert kinds == {k.value for k in EventKind}, kinds


def test_every_alert_and_resolution_mail_reads_right(events: list[AnomalyEvent], alerter: EmailAlerter) -> None:
    bad: dict[str, list[str]] = {}
    for event in events:
        for state in (AlertState.OPEN, AlertState.RESOLVED):
            text, page = _read(alerter.render([event.with_state(state)], TO))
            found = problems(text) + problems(page)
            if found:
                bad[f"{event.kind}/{state.value}"] = found
            who = "modèle de la consommation habituelle (" if event.source == "model" else "règle « "
            assert f"Détecté par\u00a0: {who}" in text, text
            _figures_add_up(event, text)
    assert not bad, "\n".join(f"{k}: {v}" for k, v in bad.items())
    # Every kind's mail has been read with figures (the consumption kinds) or without (the sensors).
    assert {e.kind for e in events if e.unit in ("kWh", "m3") and e.excess_kwh + e.excess_m3 > 0} >= {
        "water_leak", "heating_unoccupied", "unusual_consumption"}


def _figures_add_up(event: AnomalyEvent, text: str) -> None:
    """On the text of a mail: expected + excess = observed within the precision shown, one precision, a cost."""
    if not (event.unit in ("kWh", "m3") and event.excess_kwh + event.excess_m3 > 0):
        assert "Surconsommation" not in text, (event.kind, text)
        return
    (expected, step), (observed, step_observed), (excess, step_excess) = (
        shown(text, label) for label in ("Attendu", "Observé", "Surconsommation"))
    # Review round 2: "Attendu 4,2 m³ / Observé 23 m³ / Surconsommation 19 m³" (4,2 + 19 ≠ 23).
    assert step == step_observed == step_excess, (event.kind, text)
    assert 0 < excess <= observed, (event.kind, text)
    assert expected + excess == pytest.approx(observed, abs=1.5 * step + 1e-9), (event.kind, text)
    cost = re.search(r"^Coût\xa0: (<\xa0)?([\d\u202f]+)\xa0€$", text, re.MULTILINE)
    assert cost is not None, (event.kind, text)
    assert cost.group(1) or int(cost.group(2).replace("\u202f", "")) > 0, (event.kind, text)


def test_the_figures_add_up_at_every_size(alerter: EmailAlerter) -> None:
    # The review's leak, and amounts at each precision: whole, one decimal, two, and below what two decimals show.
    sample = _sample_event()
    for unit, observed, excess in (("m3", 23.17, 18.93), ("kWh", 1234.4, 1180.2), ("m3", 0.43, 0.39),
                                   ("m3", 0.061, 0.058), ("kWh", 250.0, 0.004)):
        fields = {"excess_m3": excess, "excess_kwh": 0.0} if unit == "m3" else {"excess_kwh": excess}
        event = replace(sample, unit=unit, observed=observed, expected=observed - excess, excess_eur=excess * 3.1,
                        **fields)
        text, page = _read(alerter.render([event], TO))
        assert not problems(text) + problems(page), problems(text) + problems(page)
        assert "\xa00\xa0" not in text.split("Surconsommation")[1].splitlines()[0], text
        _figures_add_up(event, text)


def test_the_leak_mail_claims_no_more_than_it_observed(events: list[AnomalyEvent]) -> None:
    leak = next(e for e in events if e.kind == "water_leak")
    assert 0 < leak.excess_m3 <= leak.observed
    assert leak.expected == pytest.approx(leak.observed - leak.excess_m3, abs=1e-6)
    # The chart draws the night flow: one connected line, no hour of it missing between nights.
    assert leak.series is not None
    observed = np.array(leak.series.observed)
    assert np.isfinite(observed).all()
    assert len(leak.series.times) >= 5 * 4  # at least four night hours a night over the five nights
    assert max(observed) == pytest.approx(0.1, abs=0.03)  # the simulated leak is 0.1 m3/h


def test_points_are_named_as_in_the_inventory(events: list[AnomalyEvent]) -> None:
    frozen = next(e for e in events if e.kind == "frozen_sensor")
    text = frozen.explanation("fr")
    assert "le capteur « CO2 Classes » (ecole-pasteur-classes-co2) répète la même valeur" in text, text
    assert "\u00a0ppm)" in text, text


def test_the_digest_reads_right(events: list[AnomalyEvent], alerter: EmailAlerter) -> None:
    data = [e for e in events if e.kind in ("missing_data", "stale_counter", "frozen_sensor")]
    energy = [e for e in events if e not in data]
    digest = Digest(
        date(2026, 2, 16),
        open=[DigestEntry(i, e.with_state(AlertState.OPEN)) for i, e in enumerate(energy[:6])],
        acknowledged=[DigestEntry(100 + i, e, acked_by="Jeanne") for i, e in enumerate(energy[6:8])],
        resolved=[DigestEntry(200 + i, e) for i, e in enumerate(energy[8:])],
        data_problems=[DigestEntry(300 + i, e) for i, e in enumerate(data)],
    )
    text, page = _read(alerter.render_digest(digest, TO))
    assert not problems(text) + problems(page), problems(text) + problems(page)
    eur = sum(e.event.excess_eur for e in (*digest.open, *digest.acknowledged))
    assert figure(text, "Total des alertes ouvertes") > 0
    assert f"{round(eur)}\xa0€" in text.replace("\u202f", "")
    # The open and acknowledged entries' kWh add up to the total, shown with one precision (review round 2).
    listed = [line for line in text.splitlines() if line.startswith("- #") and "kWh" in line
              and int(line[3:].split()[0]) < 200]
    entries = [shown(line.split(" — ")[-1], "") for line in listed]
    total, step = shown(text.split("Total des alertes ouvertes")[1], "")
    assert entries
    assert {s for _, s in entries} == {step}, text
    assert sum(v for v, _ in entries) == pytest.approx(total, abs=step * (0.5 * len(entries) + 0.5) + 1e-9), text


def test_the_checks_catch_what_issue_13_saw() -> None:
    leak = replace(_sample_event(), kind="water_leak", unit="m3", observed=2.4, excess_m3=11.4, facts={"flow_m3_h": 0.1},
                   start=datetime(2026, 2, 4, tzinfo=UTC), end=datetime(2026, 2, 9, tzinfo=UTC) + timedelta(hours=5))
    raw = "anomalies.rules.water_leak Score 1.00 usage town_hall 18.5 °C 2.4 m3 -0 %"
    assert len(problems(raw)) >= 6
    assert leak.excess_m3 > leak.observed  # what the test above refuses


def test_a_recipient_s_language_is_found_whatever_the_case_of_its_address(inventory: Inventory) -> None:
    """``languages: {energy.consultant@example.org: en}`` and an advisor written ``Energy.Consultant@Example.org``."""
    config = EmailConfig(host="127.0.0.1", security="none", sender="econome@valmont.example",
                         languages={"energy.consultant@example.org": "en"})
    message = EmailAlerter(config, inventory).render([_sample_event()], "Energy.Consultant@Example.org")
    assert str(message["Subject"]).startswith("[Econome] Alert: Gymnase Batum")
    assert message["To"] == "Energy.Consultant@Example.org"


def test_an_advisor_written_in_two_cases_gets_one_mail(inventory: Inventory) -> None:
    """``advisors: [Jean.Dupont@…, jean.dupont@…]`` is one mailbox: one recipient, the first spelling, in order."""
    config = EmailConfig(host="127.0.0.1", security="none", sender="econome@valmont.example")
    gym = inventory.building("gymnase-batum")
    twice = gym.model_copy(update={"advisors": ["Jean.Dupont@valmont.example", "cep@valmont.example",
                                               "jean.dupont@Valmont.example"]})
    changed = inventory.model_copy(update={"sites": [
        site.model_copy(update={"buildings": [twice if b.id == gym.id else b for b in site.buildings]})
        for site in inventory.sites]})
    assert EmailAlerter(config, changed).recipients_of("gymnase-batum") == [
        "Jean.Dupont@valmont.example", "cep@valmont.example"]
