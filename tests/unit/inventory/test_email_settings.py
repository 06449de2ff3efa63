"""The inventory's ``email:`` section: security explicit, errors naming the field and its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from anomalies.alerts import EmailConfig, email_config
from inventory import InventoryError, load_inventory, parse_inventory
from streams.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
BASE = (ROOT / "examples" / "commune.yaml").read_text(encoding="utf-8")
LINE = BASE.count("\n") + 1  # the line of "email:" appended below


def _with_email(section: str) -> str:
    return BASE + "email:\n" + section


def test_security_missing_names_the_field_and_line() -> None:
    with pytest.raises(InventoryError) as info:
        parse_inventory(_with_email("  host: smtp.valmont.example\n  sender: econome@valmont.example\n"), "c.yaml")
    assert info.value.lines() == [f"c.yaml:{LINE} email.security: missing required key"]


@pytest.mark.parametrize(
    ("section", "path", "words"),
    [
        ("  host: h\n  security: clear\n  sender: e@v.example\n", "email.security", "'none', 'starttls' or 'ssl'"),
        ("  host: h\n  security: ssl\n  sender: nobody\n", "email.sender", "not an e-mail address"),
        ("  host: h\n  security: ssl\n  sender: e@v.example\n  username: econome\n", "email", "password_env"),
        ("  host: h\n  security: none\n  sender: e@v.example\n  ca_file: ca.pem\n", "email", "need security"),
        ("  host: h\n  security: ssl\n  sender: e@v.example\n  digest_hour: 24\n", "email.digest_hour", "23"),
        ("  host: h\n  security: ssl\n  sender: e@v.example\n  password: x\n", "email.password", "unknown key"),
    ],
)
def test_a_broken_section_names_the_field(section: str, path: str, words: str) -> None:
    with pytest.raises(InventoryError) as info:
        parse_inventory(_with_email(section), "c.yaml")
    [line] = info.value.lines()
    assert line.startswith("c.yaml:")
    assert f" {path}: " in line
    assert words in line


def test_defaults_and_none_only_by_name() -> None:
    inv = parse_inventory(_with_email("  host: relay.local\n  security: none\n  sender: econome@valmont.example\n"))
    config = email_config(inv)
    assert (config.port, config.security, config.digest_hour, config.send_resolved) == (25, "none", 7, True)
    tls = EmailConfig(host="smtp.example.org", security="ssl", sender="e@v.example")
    assert tls.port == 465


def test_no_section_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no email: section"):
        email_config(load_inventory(ROOT / "examples" / "commune.yaml"))


@pytest.mark.parametrize(
    "advisor",
    ['"a@x.fr\\r\\nBcc: x@y.fr"', "Jean Dupont", '"a@x.fr; b@y.fr"', '"Jean <a@x.fr>"', '"a@b@x.fr"', '"a@x.fr,b@y.fr"'],
)
def test_a_malformed_advisor_is_an_error_naming_its_line(advisor: str) -> None:
    text = BASE.replace("    advisors: [cep@valmont.example]", f"    advisors: [{advisor}]", 1)
    line = text.splitlines().index(f"    advisors: [{advisor}]") + 1
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "c.yaml")
    [problem] = info.value.lines()
    assert problem.startswith(f"c.yaml:{line} ")
    assert "advisors[0]: " in problem
    assert "not an e-mail address" in problem


@pytest.mark.parametrize(
    ("section", "path"),
    [
        (
            "  host: h\n  security: ssl\n  sender: e@v.example\n  default_recipients: [Jean Dupont]\n",
            "email.default_recipients[0]",
        ),
        ("  host: h\n  security: ssl\n  sender: e@v.example\n  languages: {\"a@x.fr; b@y.fr\": en}\n", "email.languages"),
        ("  host: h\n  security: ssl\n  sender: \"e@v.example\\nBcc: x@y.fr\"\n", "email.sender"),
    ],
)
def test_malformed_addresses_of_the_email_section_are_errors(section: str, path: str) -> None:
    with pytest.raises(InventoryError) as info:
        parse_inventory(_with_email(section), "c.yaml")
    [problem] = info.value.lines()
    assert f" {path}" in problem
    assert "not an e-mail address" in problem


def test_a_clear_login_to_a_remote_host_is_refused_naming_the_fields_and_lines() -> None:
    section = "  host: smtp.valmont.example\n  security: none\n  sender: e@v.example\n"
    login = "  username: econome\n  password_env: ECONOME_SMTP_PASSWORD\n"
    with pytest.raises(InventoryError) as info:
        parse_inventory(_with_email(section + login), "c.yaml")
    lines = info.value.lines()
    assert [line.split(" ")[:2] for line in lines] == [
        [f"c.yaml:{LINE + 4}", "email.username:"],
        [f"c.yaml:{LINE + 5}", "email.password_env:"],
    ]
    assert all("in clear to smtp.valmont.example" in line for line in lines)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1"])
def test_a_login_without_tls_to_a_local_relay_is_allowed(host: str) -> None:
    section = f"  host: '{host}'\n  security: none\n  sender: e@v.example\n"
    login = "  username: econome\n  password_env: ECONOME_SMTP_PASSWORD\n"
    config = email_config(parse_inventory(_with_email(section + login)))
    assert (config.host, config.username) == (host, "econome")
