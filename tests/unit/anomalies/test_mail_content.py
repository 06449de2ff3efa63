"""Issue 13: every e-mail an advisor gets reads right (figures, words, French typography).

Each alert kind (open and resolved), the digest, from the demo commune's
simulated faults plus one synthetic event of each kind the simulation does
not raise. Figures are read back from the mail's text.
"""

from __future__ import annotations

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
from tests.reader_text import figure, problems, visible_text
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
            if event.unit in ("kWh", "m3") and event.excess_kwh + event.excess_m3 > 0:
                observed, excess = figure(text, "Observé"), figure(text, "Surconsommation")
                assert 0 < excess <= observed, (event.kind, text)
                assert figure(text, "Attendu") == pytest.approx(observed - excess, abs=1.01), text
    assert not bad, "\n".join(f"{k}: {v}" for k, v in bad.items())


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


def test_the_checks_catch_what_issue_13_saw() -> None:
    leak = replace(_sample_event(), kind="water_leak", unit="m3", observed=2.4, excess_m3=11.4, facts={"flow_m3_h": 0.1},
                   start=datetime(2026, 2, 4, tzinfo=UTC), end=datetime(2026, 2, 9, tzinfo=UTC) + timedelta(hours=5))
    raw = "anomalies.rules.water_leak Score 1.00 usage town_hall 18.5 °C 2.4 m3 -0 %"
    assert len(problems(raw)) >= 6
    assert leak.excess_m3 > leak.observed  # what the test above refuses
