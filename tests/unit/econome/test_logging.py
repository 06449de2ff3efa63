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


def test_short_values_are_not_redacted() -> None:
    assert RedactingFilter(["ab"]).redact("a cab") == "a cab"


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
