"""The daily Linky/Gazpar fetch in deploy/: compose, systemd, .env examples and the settings they make."""

from __future__ import annotations

import os
import re
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from econome.settings import load_settings
from streams.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in [n for n in os.environ if n.startswith("ECONOME_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no developer's .env
    return monkeypatch


def _entrypoint_env(env: dict[str, str]) -> dict[str, str]:
    """The ECONOME_* variables the deploy entrypoint hands to econome (it reads the *_FILE secrets)."""
    out = subprocess.run(
        ["sh", str(DEPLOY / "entrypoint.sh"), "env"], env={"PATH": os.environ["PATH"], **env},
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout  # fmt: skip
    return dict(line.split("=", 1) for line in out.splitlines() if line.startswith("ECONOME_"))


def test_compose_passes_the_ids_and_the_secret_files(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
    econome = compose["services"]["econome"]
    env = econome["environment"]
    for api in ("enedis", "grdf"):
        secret = f"{api}_client_secret"
        assert secret in econome["secrets"]
        assert compose["secrets"][secret]["file"] == f"./secrets/{secret}"
        assert env[f"ECONOME_{api.upper()}_CLIENT_SECRET_FILE"] == f"/run/secrets/{secret}"
        assert f"[ -e secrets/{secret} ] || : > secrets/{secret}" in (DEPLOY / "init-secrets.sh").read_text()
        assert env[f"ECONOME_{api.upper()}_CLIENT_ID"] == f"${{{api.upper()}_CLIENT_ID:-}}"
    example = dict(line.split("=", 1) for line in (DEPLOY / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert {"ENEDIS_CLIENT_ID", "GRDF_CLIENT_ID", "UTILITIES_AT"} <= set(example)
    assert env["ECONOME_UTILITIES_AT"] == "${UTILITIES_AT:-07:30}"

    # As compose starts it with the example's empty ids and init-secrets.sh's empty files: no API, no error.
    (tmp_path / "empty").write_text("")
    passed = _entrypoint_env({"ECONOME_ENEDIS_CLIENT_ID": "", "ECONOME_ENEDIS_CLIENT_SECRET_FILE": str(tmp_path / "empty"),
                              "ECONOME_GRDF_CLIENT_ID": "", "ECONOME_GRDF_CLIENT_SECRET_FILE": str(tmp_path / "empty")})
    for name, value in passed.items():
        clean_env.setenv(name, value)
    settings = load_settings()
    assert (settings.enedis_client(), settings.grdf_client()) == (None, None)

    # Once the operator writes an id and its secret: a client, the secret redacted from the logs.
    (tmp_path / "enedis").write_text("the-enedis-secret\n")
    passed = _entrypoint_env({"ECONOME_ENEDIS_CLIENT_ID": "app-1", "ECONOME_ENEDIS_CLIENT_SECRET_FILE": str(tmp_path / "enedis")})
    for name, value in passed.items():
        clean_env.setenv(name, value)
    settings = load_settings()
    assert settings.enedis_client() is not None
    assert "the-enedis-secret" in settings.secrets()
    assert "the-enedis-secret" not in repr(settings)


def test_an_id_without_its_secret_is_a_settings_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ECONOME_GRDF_CLIENT_ID", "app-2")
    with pytest.raises(ConfigError, match="ECONOME_GRDF_CLIENT_ID and ECONOME_GRDF_CLIENT_SECRET go together"):
        load_settings()


def test_systemd_loads_the_secrets_as_credentials_and_the_guide_creates_them(clean_env: pytest.MonkeyPatch) -> None:
    unit = (DEPLOY / "systemd" / "econome.service").read_text()
    guide = (DEPLOY / "OPERATIONS.md").read_text()
    for api in ("enedis", "grdf"):
        credential = f"{api}-client-secret"
        assert re.search(rf"^LoadCredential={credential}:/etc/econome/credentials/{credential}$", unit, re.MULTILINE)
        assert f"Environment=ECONOME_{api.upper()}_CLIENT_SECRET_FILE=%d/{credential}" in unit
        assert f"install -m 600 -o econome /dev/null /etc/econome/credentials/{credential}" in guide
    lines = (DEPLOY / "systemd" / "econome.env.example").read_text().splitlines()
    assert {"#ECONOME_ENEDIS_CLIENT_ID=", "#ECONOME_GRDF_CLIENT_ID="} <= set(lines)
    for line in lines:
        if line.startswith("ECONOME_UTILITIES_"):
            clean_env.setenv(*line.split("=", 1))
    settings = load_settings()
    assert (str(settings.utilities_at), settings.utilities_backfill_days) == ("07:30:00", 30)
    assert (settings.utilities_retry_every, str(settings.utilities_retry_until)) == (timedelta(hours=2), "14:00:00")


def test_the_upgrade_steps_create_every_secret_file_the_service_needs(tmp_path: Path) -> None:
    """An upgrade from before the Linky/Gazpar fetch: compose and systemd refuse to start without its secret files."""
    guide = (DEPLOY / "OPERATIONS.md").read_text()
    upgrades = guide.split("## Upgrades", 1)[1].split("\n## ", 1)[0]
    assert "./init-secrets.sh" in upgrades
    # Every credential the unit loads is in the upgrade loop, created only when missing.
    unit = (DEPLOY / "systemd" / "econome.service").read_text()
    loaded = re.findall(r"^LoadCredential=([\w-]+):/etc/econome/credentials/\1$", unit, re.MULTILINE)
    (loop,) = re.findall(r"^ *for c in ([\w -]+); do$", upgrades, re.MULTILINE)
    assert sorted(loop.split()) == sorted(loaded)
    assert "[ -e /etc/econome/credentials/$c ] || install -m 600 -o econome /dev/null /etc/econome/credentials/$c" in upgrades
    # Every secret file compose reads and does not generate is made (empty) by init-secrets.sh, which keeps the others.
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
    script = (DEPLOY / "init-secrets.sh").read_text()
    for name in ("enedis_client_secret", "grdf_client_secret", "smtp_password"):
        assert compose["secrets"][name]["file"] == f"./secrets/{name}"
        assert f"[ -e secrets/{name} ] || : > secrets/{name}" in script
    # The loop run on an old install (the first three credentials there, one with content): the two new ones appear
    # empty, the old ones are left as they were.
    store = tmp_path / "credentials"
    store.mkdir()
    (store / "influx-token").write_text("token\n")
    for old in ("mqtt-password", "smtp-password"):
        (store / old).write_text("")
    (block,) = re.findall(r"^ *(for c in .*?done)$", upgrades, re.MULTILINE | re.DOTALL)
    script_text = block.replace("/etc/econome/credentials", str(store)).replace(" -o econome", "")
    subprocess.run(["sh", "-c", script_text], check=True, timeout=10)
    assert sorted(p.name for p in store.iterdir()) == sorted(loaded)
    assert (store / "influx-token").read_text() == "token\n"
    assert (store / "enedis-client-secret").read_text() == ""
