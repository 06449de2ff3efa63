"""Alert e-mails through a real SMTP server (aiosmtpd on loopback, in-process).

A weekend of heating left on in the gymnasium is simulated and detected; the
alert mail reaches the advisor with its chart and the event's figures. A
flapping anomaly yields one mail, not one per flap.
"""

from __future__ import annotations

import base64
import email
import email.policy
import logging
import re
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from anomalies.alerts import EmailAlerter, EmailConfig, write_events
from anomalies.detect import DetectConfig, detect
from anomalies.events import AlertState, AnomalyEvent
from anomalies.features import PointSeries
from anomalies.lifecycle import AlertLifecycle, LifecycleConfig
from inventory import Energy, Inventory, load_inventory
from simulator.faults import Fault, FaultKind
from simulator.physics import generate_history
from streams.errors import SinkError
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
    config = EmailConfig(host="127.0.0.1", port=controller.port, security="none", sender="econome@valmont.example")
    alerter = EmailAlerter(config, inventory)

    sent = await alerter.notify(event)

    assert sent == 1
    assert len(inbox.messages) == 1
    message = inbox.messages[0]
    assert message["To"] == "cep@valmont.example"
    assert message["Subject"].startswith("[Econome] Alerte\u00a0: Gymnase Batum")
    text, html, images = _parts(message)
    kwh = f"{event.excess_kwh:,.0f}".replace(",", "\u202f")
    eur = f"{event.excess_eur:,.0f}".replace(",", "\u202f")
    co2 = f"{event.excess_kgco2e:,.0f}".replace(",", "\u202f")
    for body in (text, html):
        assert f"+{kwh}\u00a0kWh" in body
        assert f"{eur}\u00a0€" in body
        assert f"{co2}\u00a0kgCO₂e" in body
        assert "fermé" in body
    assert len(images) == 1
    cid, png = images[0]
    assert png.startswith(b"\x89PNG")
    assert f"cid:{cid.strip('<>')}" in html
    assert re.search(r"Gymnase Batum\xa0: le chauffage a maintenu le confort \(1\d,\d\xa0°C", text)


async def test_flapping_fault_sends_one_mail(
    smtp_server: tuple[Controller, _Inbox], inventory: Inventory, weekend_event: AnomalyEvent
) -> None:
    controller, inbox = smtp_server
    alerter = EmailAlerter(EmailConfig(
        host="127.0.0.1", port=controller.port, security="none", sender="econome@valmont.example", send_resolved=False
    ), inventory)
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


# --- TLS and authentication (issue 10: secrets and TLS) -----------------------------------------

SMTP_USER = "econome"
SMTP_PASSWORD = "smtp-Pa55-" + "9f3b2c71"
SMTP_PASSWORD_ENV = "ECONOME_TEST_SMTP_PASSWORD"  # noqa: S105 - a variable name


def _authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (SMTP_USER.encode(), SMTP_PASSWORD.encode())
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@pytest.fixture(scope="module")
def smtp_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("smtp-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


@contextmanager
def _tls_smtp(ca: trustme.CA, security: str) -> Iterator[tuple[Controller, _Inbox]]:
    """aiosmtpd with a certificate of the test's private CA: STARTTLS required, or implicit TLS; AUTH required."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    inbox = _Inbox()
    common: dict[str, Any] = {"authenticator": _authenticator, "auth_required": True}
    if security == "starttls":
        controller = Controller(
            inbox, hostname="127.0.0.1", port=_free_port(), tls_context=server_ctx, require_starttls=True, **common
        )
    else:
        controller = Controller(
            inbox, hostname="127.0.0.1", port=_free_port(), ssl_context=server_ctx, auth_require_tls=False, **common
        )
    controller.start()
    try:
        yield controller, inbox
    finally:
        controller.stop()


def _our_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    # aiosmtpd's own logger ("mail.log") is the server's, not Econome's output.
    return [r for r in caplog.records if not r.name.startswith("mail.log")]


def _assert_no_password(text: str) -> None:
    for form in (SMTP_PASSWORD, base64.b64encode(SMTP_PASSWORD.encode()).decode()):
        assert form not in text


# aiosmtpd counts only STARTTLS as TLS for AUTH; over implicit TLS, AUTH must be allowed "without TLS".
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
@pytest.mark.parametrize("security", ["starttls", "ssl"])
async def test_smtp_tls_with_private_ca_and_auth(
    security: str,
    smtp_ca: tuple[trustme.CA, Path],
    inventory: Inventory,
    weekend_event: AnomalyEvent,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sent with ca_file; refused with a clear error naming the host without it; sent with tls_insecure.

    Logging is captured at DEBUG, and stdout/stderr too: the password never shows.
    """
    ca, ca_path = smtp_ca
    monkeypatch.setenv(SMTP_PASSWORD_ENV, SMTP_PASSWORD)
    caplog.set_level(logging.DEBUG)
    event = replace(weekend_event, state=AlertState.OPEN)
    with _tls_smtp(ca, security) as (controller, inbox):
        base = EmailConfig(
            host="127.0.0.1", port=controller.port, security=security,
            username=SMTP_USER, password_env=SMTP_PASSWORD_ENV, sender="econome@valmont.example",
        )  # fmt: skip

        assert await EmailAlerter(base.model_copy(update={"ca_file": ca_path}), inventory).notify(event) == 1
        assert len(inbox.messages) == 1

        with pytest.raises(SinkError) as info:
            await EmailAlerter(base, inventory).notify(event)
        assert f"SMTP 127.0.0.1:{controller.port} TLS certificate not trusted" in str(info.value)
        assert "ca_file" in str(info.value)
        assert any("TLS certificate not trusted" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
        assert len(inbox.messages) == 1

        assert await EmailAlerter(base.model_copy(update={"tls_insecure": True}), inventory).notify(event) == 1
        assert len(inbox.messages) == 2

    out, err = capfd.readouterr()
    _assert_no_password(out + err)
    _assert_no_password("\n".join(r.getMessage() for r in _our_records(caplog)))


async def test_smtp_wrong_password_error_carries_no_secret(
    smtp_ca: tuple[trustme.CA, Path],
    inventory: Inventory,
    weekend_event: AnomalyEvent,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A refused login gives the server's answer and the user, never the password tried."""
    ca, ca_path = smtp_ca
    wrong = "wrong-" + SMTP_PASSWORD
    monkeypatch.setenv(SMTP_PASSWORD_ENV, wrong)
    caplog.set_level(logging.DEBUG)
    with _tls_smtp(ca, "starttls") as (controller, inbox):
        config = EmailConfig(
            host="127.0.0.1", port=controller.port, security="starttls", ca_file=ca_path,
            username=SMTP_USER, password_env=SMTP_PASSWORD_ENV, sender="econome@valmont.example",
        )  # fmt: skip
        with pytest.raises(SinkError) as info:
            await EmailAlerter(config, inventory).notify(replace(weekend_event, state=AlertState.OPEN))
    text = str(info.value)
    assert f"SMTP 127.0.0.1:{controller.port} refused the login of {SMTP_USER}: 535" in text
    assert info.value.__cause__ is None  # smtplib's exception holds the credentials; it is not chained
    assert not inbox.messages
    for secret in (wrong, SMTP_PASSWORD):
        assert secret not in text
        assert secret not in "\n".join(r.getMessage() for r in _our_records(caplog))
