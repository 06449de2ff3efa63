"""The TLS settings of an MQTT broker in the inventory (issue 10)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from inventory import MqttBroker


def test_tls_defaults_to_the_system_cas() -> None:
    broker = MqttBroker(host="mqtt.valmont.fr", tls=True)
    assert (broker.ca_file, broker.cert_file, broker.key_file, broker.tls_insecure) == (None, None, None, False)


def test_private_ca_and_client_certificate() -> None:
    broker = MqttBroker.model_validate(
        {"host": "h", "tls": True, "ca_file": "/etc/econome/ca.crt", "cert_file": "c.pem", "key_file": "k.pem"}
    )
    assert broker.ca_file == Path("/etc/econome/ca.crt")
    assert broker.key_file == Path("k.pem")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ca_file": "ca.crt"}, "ca_file need tls: true"),
        ({"tls_insecure": True}, "tls_insecure need tls: true"),
        ({"tls": True, "key_file": "k.pem"}, "key_file needs cert_file"),
        ({"tls": True, "tls_insecure": True, "ca_file": "ca.crt"}, "give one or the other"),
        ({"tls": True, "ca_fle": "ca.crt"}, "Extra inputs are not permitted"),
    ],
)
def test_inconsistent_tls_settings_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MqttBroker.model_validate({"host": "h", **fields})
