"""Alert e-mails through a real SMTP server (aiosmtpd on loopback, in-process).

A weekend of heating left on in the gymnasium is simulated and detected; the
alert mail reaches the advisor with its chart and the event's figures. A
flapping anomaly yields one mail, not one per flap.
"""

from __future__ import annotations

import email
import email.policy
import re
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from anomalies.alerts import EmailAlerter, EmailConfig, write_events
from anomalies.detect import DetectConfig, detect
from anomalies.events import AlertState, AnomalyEvent
from anomalies.features import PointSeries
from anomalies.lifecycle import AlertLifecycle, LifecycleConfig
from inventory import Energy, Inventory, load_inventory
from simulator.faults import Fault, FaultKind
from simulator.physics import generate_history
from streams.influx import InfluxConfig, InfluxQLClient, InfluxV1Writer, make_writer

ROOT = Path(__file__).resolve().parents[2]


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        self.messages.append(email.message_from_bytes(raw, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[tuple[Controller, _Inbox]]:
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield controller, inbox
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return load_inventory(ROOT / "examples" / "commune.yaml")


@pytest.fixture(scope="module")
def weekend_event(inventory: Inventory) -> AnomalyEvent:
    tz = inventory.organisation.tz
    fault = Fault(
        kind=FaultKind.HEATING_LEFT_ON, building="gymnase-batum",
        start=datetime(2026, 1, 17, 20, tzinfo=tz), end=datetime(2026, 1, 19, 5, tzinfo=tz),
    )
    start = datetime(2025, 12, 22, tzinfo=UTC)
    history = generate_history(inventory, start, start + timedelta(days=35), timedelta(minutes=15), seed=4, faults=[fault])
    seconds = history.times.astype("datetime64[ms]").astype(np.int64) / 1000.0
    readings = {
        pid: PointSeries(seconds[np.isfinite(col)], col[np.isfinite(col)])
        for pid, col in zip(history.point_ids, history.values.T, strict=True)
    }
    events = detect(inventory, readings, DetectConfig(models=False))
    found = [e for e in events if e.building == "gymnase-batum" and e.kind == "heating_unoccupied"]
    assert len(found) == 1, [(e.building, e.kind, e.start) for e in events]
    return found[0]


def _parts(message: EmailMessage) -> tuple[str, str, list[tuple[str, bytes]]]:
    text = html = ""
    images = []
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "text/plain":
            text = part.get_content()
        elif kind == "text/html":
            html = part.get_content()
        elif kind == "image/png":
            images.append((str(part["Content-ID"]), part.get_payload(decode=True)))
    return text, html, images


async def test_alert_mail_has_chart_and_figures(
    smtp_server: tuple[Controller, _Inbox], inventory: Inventory, weekend_event: AnomalyEvent
) -> None:
    controller, inbox = smtp_server
    event = replace(weekend_event, state=AlertState.OPEN)  # as sent when the lifecycle opened it
    assert event.excess_kwh > 100
    gas = inventory.tariff(Energy.NATURAL_GAS)
    assert event.excess_eur == pytest.approx(event.excess_kwh * gas.price_eur_per_unit)
    assert event.excess_kgco2e == pytest.approx(event.excess_kwh * gas.emission_kgco2e_per_unit)
    alerter = EmailAlerter(EmailConfig(host="127.0.0.1", port=controller.port, sender="econome@valmont.example"), inventory)

    sent = await alerter.notify(event)

    assert sent == 1
    assert len(inbox.messages) == 1
    message = inbox.messages[0]
    assert message["To"] == "cep@valmont.example"
    assert message["Subject"].startswith("[Econome] Alerte: Gymnase Batum")
    text, html, images = _parts(message)
    kwh = f"{event.excess_kwh:,.0f}".replace(",", "\u202f")
    eur = f"{event.excess_eur:,.0f}".replace(",", "\u202f")
    co2 = f"{event.excess_kgco2e:,.0f}".replace(",", "\u202f")
    for body in (text, html):
        assert f"+{kwh} kWh" in body
        assert f"{eur} €" in body
        assert f"{co2} kgCO2e" in body
        assert "fermé" in body
    assert len(images) == 1
    cid, png = images[0]
    assert png.startswith(b"\x89PNG")
    assert f"cid:{cid.strip('<>')}" in html
    assert re.search(r"Gymnase Batum: le chauffage a maintenu le confort \(1\d\.\d °C", text)


async def test_flapping_fault_sends_one_mail(
    smtp_server: tuple[Controller, _Inbox], inventory: Inventory, weekend_event: AnomalyEvent
) -> None:
    controller, inbox = smtp_server
    alerter = EmailAlerter(EmailConfig(host="127.0.0.1", port=controller.port, send_resolved=False), inventory)
    life = AlertLifecycle(LifecycleConfig(min_duration=timedelta(hours=2), clear_after=timedelta(hours=6)))
    key = ("gymnase-batum", "heating", "heating_unoccupied", "")
    t0 = datetime(2026, 1, 17, 19, tzinfo=UTC)
    transitions = []
    for hour in range(48):
        flapping = hour < 36 and hour % 3 != 2  # on two hours, off one, for a day and a half
        transition = life.observe(key, t0 + timedelta(hours=hour), flapping)
        if transition is not None:
            transitions.append(transition)
    for transition in transitions:
        await alerter.notify(replace(weekend_event, state=transition.state, start=transition.start, end=transition.last_active))

    assert [t.state for t in transitions] == [AlertState.OPEN, AlertState.ONGOING, AlertState.RESOLVED]
    assert len(inbox.messages) == 1


async def test_events_are_written_to_influxdb_for_grafana(
    influxdb_server: Any, unique_name: str, weekend_event: AnomalyEvent
) -> None:
    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    writer = make_writer(config)
    client = InfluxQLClient(config)
    try:
        assert isinstance(writer, InfluxV1Writer)
        await writer.ensure_database()
        assert await write_events(writer, [weekend_event.with_state(AlertState.OPEN)], "en") == 1
        # The same event written again as it resolves overwrites its point: one series, one row.
        assert await write_events(writer, [weekend_event], "en") == 1
        series = await client.query(
            'SELECT "score", "excess_kwh", "excess_eur", "explanation", "end_ms", "state" FROM "anomaly" GROUP BY *'
        )
    finally:
        await writer.close()
        await client.close()
    assert len(series) == 1
    tags = {"building": "gymnase-batum", "kind": "heating_unoccupied", "usage": "heating"}
    assert series[0]["tags"] == tags
    assert len(series[0]["values"]) == 1
    row = dict(zip(series[0]["columns"], series[0]["values"][0], strict=True))
    assert row["state"] == "resolved"
    assert row["time"] == int(weekend_event.start.timestamp() * 1000)
    assert row["end_ms"] == int(weekend_event.end.timestamp() * 1000)
    assert row["excess_kwh"] == pytest.approx(weekend_event.excess_kwh)
    assert row["explanation"].startswith("Gymnase Batum: heating kept comfort")
