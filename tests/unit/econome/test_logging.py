"""The redacting log filter of the ``econome`` command."""

from __future__ import annotations

import base64
import io
import logging

import pytest

from econome._logging import RedactingFilter, env_secrets


def _handler(redactor: RedactingFilter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(redactor)
    logger = logging.getLogger(f"test.redact.{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_secrets_in_messages_arguments_and_tracebacks_are_replaced() -> None:
    redactor = RedactingFilter(["pw-0123456789"])
    redactor.add_basic_auth("admin", "pw-0123456789")
    logger, stream = _handler(redactor)
    logger.info("POST http://influx/write?u=admin&p=%s", "pw-0123456789")
    basic = base64.b64encode(b"admin:pw-0123456789").decode()
    logger.debug("headers: Authorization: Basic %s", basic)
    try:
        raise ValueError("login pw-0123456789 refused")  # noqa: EM101 - the test's message
    except ValueError:
        logger.exception("failed")
    text = stream.getvalue()
    assert "pw-0123456789" not in text
    assert basic not in text
    assert "p=***" in text
    assert "Basic ***" in text
    assert "ValueError: login *** refused" in text


def test_short_secrets_are_redacted_as_whole_tokens_only() -> None:
    redactor = RedactingFilter(["ab", "7"])
    # Where it stands alone (a query value, a quoted or spaced word) it is replaced...
    assert redactor.redact("POST /write?u=admin&p=ab") == "POST /write?u=admin&p=***"
    assert redactor.redact("password 'ab' refused, pin 7") == "password '***' refused, pin ***"
    # ...but not inside words or numbers, which it would otherwise shred.
    assert redactor.redact("a cab at 17:07") == "a cab at 17:07"
    # Its base64 form (4 characters) is replaced anywhere.
    assert base64.b64encode(b"ab").decode() not in redactor.redact("Basic " + base64.b64encode(b"ab").decode())


def test_env_secrets_take_named_and_secret_looking_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECONOME_SMTP_PASSWORD", "smtp-secret")
    monkeypatch.setenv("ECONOME_INFLUX_TOKEN_FILE", "/run/secrets/token")
    monkeypatch.setenv("SENSORS_PW", "mqtt-secret")
    monkeypatch.setenv("ECONOME_LOG_LEVEL", "DEBUG")
    found = env_secrets(["SENSORS_PW"])
    assert "smtp-secret" in found
    assert "mqtt-secret" in found
    assert "/run/secrets/token" not in found
    assert "DEBUG" not in found


def test_the_inventory_s_smtp_password_variable_is_a_secret_whatever_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """``email.password_env: SMTP_PASS`` (not an ``ECONOME_*PASSWORD*`` name): its value is redacted from the logs."""
    from pathlib import Path

    from econome.cli import _inventory_secrets
    from inventory import parse_inventory

    root = Path(__file__).resolve().parents[3]
    text = (root / "examples" / "commune.yaml").read_text(encoding="utf-8") + (
        "email:\n  host: smtp.valmont.example\n  security: starttls\n  sender: econome@valmont.example\n"
        "  username: econome\n  password_env: SMTP_PASS\n")
    monkeypatch.setenv("SMTP_PASS", "hunter2-smtp")
    assert "hunter2-smtp" in _inventory_secrets(parse_inventory(text))
