"""The bare-VM steps of OPERATIONS.md and the health of the compose services, as written (issue 13 review).

The documented command that runs ``influxdb/init/10-econome.sh`` by hand is taken from the guide
and run, with its variables, against a stub ``influx`` CLI (the boundary); the example settings
load as Econome loads them.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from econome.settings import EconomeSettings
from streams.influx import RAW_RP

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
GUIDE = (DEPLOY / "OPERATIONS.md").read_text(encoding="utf-8")
SCRIPT = DEPLOY / "influxdb" / "init" / "10-econome.sh"
STUB = """#!/bin/sh
case "$1 $2" in
    "bucket list") printf '0a1b\\t%s\\n' "$DOCKER_INFLUXDB_INIT_BUCKET" ;;
    "auth create") echo '{"token": "tok"}' ;;
esac
"""


def _unit(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string((DEPLOY / "systemd" / name).read_text(encoding="utf-8"))
    return parser["Service"]


def _script_variables() -> tuple[set[str], set[str]]:
    """The environment variables the init script reads: (required under set -u, with a default)."""
    text = SCRIPT.read_text(encoding="utf-8")
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "set -euo pipefail" in code
    used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", code))
    defaulted = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):-", code))
    return used - defaulted, defaulted


def test_the_documented_init_command_sets_what_the_script_needs(tmp_path: Path) -> None:
    (line,) = [line for line in GUIDE.splitlines() if line.rstrip().endswith("bash deploy/influxdb/init/10-econome.sh")]
    words = shlex.split(line)
    assignments = dict(w.split("=", 1) for w in words if re.match(r"^[A-Z_][A-Z0-9_]*=", w))
    required, defaulted = _script_variables()
    assert required == {"DOCKER_INFLUXDB_INIT_ORG", "DOCKER_INFLUXDB_INIT_BUCKET"}
    assert required | defaulted <= set(assignments)
    assert {"INFLUX_HOST", "INFLUX_TOKEN"} <= set(assignments)  # the influx CLI, logged in by the image otherwise
    # Run it as written (the tokens folder in a temporary place).
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "influx").write_text(STUB)
    (stub / "influx").chmod(0o755)
    tokens = assignments["INFLUX_TOKENS_DIR"]
    env = {**assignments, "INFLUX_TOKENS_DIR": str(tmp_path / "tokens"), "PATH": f"{stub}:/usr/bin:/bin"}
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "tokens").iterdir()) == ["econome.token", "grafana.token"]
    # The tokens are then copied where the units read them: not left in a tmpfs /run folder.
    assert not tokens.startswith("/run/")
    copies = dict(re.findall(rf"install -m \d+ -o root -g \w+ {re.escape(tokens)}/(\S+) (\S+)", GUIDE))
    credential = re.search(r"LoadCredential=influx-token:(\S+)", (DEPLOY / "systemd" / "econome.service").read_text())
    assert credential is not None
    assert copies["econome.token"] == credential.group(1)
    override = next(line for line in GUIDE.splitlines() if line.startswith("ExecStart=/opt/econome/.venv/bin/econome dashboards"))
    assert f"--token-file {copies['grafana.token']}" in override
    assert "--auth token" in override


def test_the_example_settings_are_those_of_debian_s_influxdb(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = (DEPLOY / "systemd" / "econome.env.example").read_text(encoding="utf-8").splitlines()
    env = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    commented = dict(line[1:].split("=", 1) for line in lines if re.match(r"^#ECONOME_[A-Z_]+=", line))
    assert env["ECONOME_INFLUX_API"] == "v1"  # Debian's influxdb package is InfluxDB 1.6.7
    assert commented["ECONOME_INFLUX_API"] == "v2"
    assert {"ECONOME_INFLUX_ORG", "ECONOME_INFLUX_BUCKET"} <= set(commented)
    for name in [n for n in os.environ if n.startswith("ECONOME_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ECONOME_INFLUX_TOKEN", "")  # the empty credential of the guide, read by the entrypoint
    settings = EconomeSettings()
    assert settings.influx().api == "v1"
    assert settings.influx_retention_policy == RAW_RP
    # The dashboards unit reads the same file: its database, the raw retention policy, no token on 1.x.
    service = _unit("econome-dashboards.service")
    assert service["EnvironmentFile"] == "/etc/econome/econome.env"
    assert "--database" not in service["ExecStart"]  # ECONOME_INFLUX_DATABASE of that file
    assert "--auth none" in service["ExecStart"]
    assert f"--raw-retention-policy {RAW_RP}" in service["ExecStart"]
    assert "install -m 600 /dev/null /etc/econome/credentials/influx-token" in GUIDE


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
    return doc


def test_the_guide_says_which_services_report_healthy(compose: dict[str, Any]) -> None:
    services = {n: s for n, s in compose["services"].items() if "profiles" not in s and s.get("restart") != "no"}
    checked = {n for n, s in services.items() if "healthcheck" in s}
    assert checked == {"influxdb", "econome", "grafana"}
    sentence = GUIDE.split("`docker compose ps`:", 1)[1].split("**healthy**", 1)[0]
    assert set(re.findall(r"`([\w-]+)`", sentence)) == checked
    unchecked = GUIDE.split("**healthy**", 1)[1].split("**running**", 1)[0]
    assert set(re.findall(r"`([\w-]+)`", unchecked)) == set(services) - checked
    econome = compose["services"]["econome"]
    port = econome["command"][econome["command"].index("--metrics-port") + 1]
    assert f"127.0.0.1:{port}/metrics" in " ".join(econome["healthcheck"]["test"])
    assert "/api/health" in compose["services"]["grafana"]["healthcheck"]["test"][1]


def test_the_guide_says_how_to_apply_an_edited_inventory(compose: dict[str, Any]) -> None:
    run = re.search(r"^docker compose run --rm (\S+)", GUIDE, flags=re.MULTILINE)
    restart = re.search(r"^docker compose restart ([\w ]+?)\s+#", GUIDE, flags=re.MULTILINE)
    assert run is not None
    assert restart is not None
    one_shot = compose["services"][run.group(1)]
    assert one_shot["command"][:3] == ["econome", "dashboards", "build"]
    assert "/config/commune.yaml" in one_shot["command"]
    # Grafana reloads the datasource only at start; econome reads the inventory at start.
    assert set(restart.group(1).split()) == {"grafana", "econome"}
