"""One test per deployment defect of issue 13, read from the files an operator runs.

Docker and systemd do not run here: each test reads deploy/ and checks what the
image, the compose file or the unit would do on a fresh host. The scripts
themselves run in test_init_scripts.py.
"""

from __future__ import annotations

import configparser
import ipaddress
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from inventory import load_inventory

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*)|:\?[^}]*)?\}")
EXAMPLE = "./commune.example.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
    return doc


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Target → source of a service's volumes, ECONOME_CONFIG set as OPERATIONS.md says."""
    out = {}
    for volume in service.get("volumes", []):
        resolved = _INTERPOLATION.sub(lambda m: m.group(2) or (EXAMPLE if m.group(1) == "ECONOME_CONFIG" else ""), volume)
        source, target = resolved.split(":")[:2]
        out[target] = source
    return out


def _econome_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if "build" in s}


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string((DEPLOY / "systemd" / name).read_text(encoding="utf-8"))
    return parser


def test_dashboards_service_keeps_the_token_volume(compose: dict[str, Any]) -> None:
    # Its `volumes:` replaces the anchor's list: the token file the datasource names must be
    # mounted in this service as in Grafana, from the same volume.
    services = compose["services"]
    command = services["dashboards"]["command"]
    token_file = Path(command[command.index("--token-file") + 1])
    dash, grafana = _mounts(services["dashboards"]), _mounts(services["grafana"])
    folder = str(token_file.parent)
    assert folder in dash, f"dashboards does not mount {folder}"
    assert dash[folder] == grafana[folder] == "influx-tokens"
    # The token exists once InfluxDB is healthy (its health check waits for it).
    assert services["dashboards"]["depends_on"]["influxdb"]["condition"] == "service_healthy"
    assert token_file.name in services["influxdb"]["healthcheck"]["test"][1]


def test_named_volumes_of_the_econome_image_are_its_users(compose: dict[str, Any]) -> None:
    # A fresh named volume takes the owner of the image's folder it is mounted on, root when
    # the folder is not in the image: the econome user could then not write there.
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    chowned = set(re.findall(r"(/[\w/.-]+)", dockerfile.split("chown econome:econome", 1)[1].split("\n", 1)[0]))
    assert {"/var/lib/econome", "/provisioning"} <= chowned
    for name, service in _econome_services(compose).items():
        for volume in service["volumes"]:
            source, target, *mode = volume.split(":")
            if source in compose["volumes"] and mode != ["ro"]:
                assert target in chowned, f"{name}: volume {source} on {target}, a folder the image does not give econome"


def test_econome_gets_the_mosquitto_ca_of_its_inventory(compose: dict[str, Any]) -> None:
    inventory = load_inventory(DEPLOY / EXAMPLE)
    (broker,) = inventory.mqtt_brokers
    assert broker.tls
    assert broker.ca_file is not None
    mosquitto = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8")
    assert broker.host == "mosquitto"
    assert f"listener {broker.port}" in mosquitto
    ca_in_broker = _mounts(compose["services"]["mosquitto"])[re.search(r"^cafile (\S+)", mosquitto, re.M).group(1)]  # type: ignore[union-attr]
    for name, service in _econome_services(compose).items():
        if service["command"][:2] != ["econome", "run"]:
            continue
        assert _mounts(service).get(str(broker.ca_file)) == ca_in_broker, f"{name} lacks the broker's CA"
        env = service["environment"]
        secrets = set(service["secrets"])
        for variable in (broker.password_env, inventory.email.password_env if inventory.email else None):
            assert variable is not None
            secret = env[f"{variable}_FILE"]
            assert secret.removeprefix("/run/secrets/") in secrets, f"{name}: {variable}_FILE is not a secret it gets"


def test_the_stack_has_no_loopback_inventory(compose: dict[str, Any]) -> None:
    text = (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")
    uses = re.findall(r"\$\{ECONOME_CONFIG([^}]*)\}", text)
    assert uses
    assert all(u.startswith(":?") for u in uses), f"ECONOME_CONFIG must be required, not defaulted: {uses}"
    # What compose prints when it is unset (OPERATIONS.md quotes it), naming a file that exists.
    assert set(uses) == {":?set ECONOME_CONFIG to your inventory, see commune.example.yaml"}
    assert (DEPLOY / EXAMPLE).is_file()
    guide = (DEPLOY / "OPERATIONS.md").read_text(encoding="utf-8")
    assert "`set ECONOME_CONFIG to your inventory, see\ncommune.example.yaml`" in guide
    assert "examples/commune.yaml" not in text
    inventory = load_inventory(DEPLOY / EXAMPLE)
    hosts = [g.host for g in inventory.modbus_gateways] + [b.host for b in inventory.mqtt_brokers]
    hosts += [inventory.email.host] if inventory.email else []
    for host in hosts:
        assert host != "localhost"
        try:
            assert not ipaddress.ip_address(host).is_loopback, host
        except ValueError:
            continue


# [section] key of Grafana 11's conf/defaults.ini for the GF_<SECTION>_<KEY> variables the stack sets.
GRAFANA_SETTINGS = {
    ("security", "admin_password"),
    ("server", "root_url"),
    ("users", "allow_sign_up"),
    ("users", "default_language"),
    ("auth.anonymous", "enabled"),
    ("analytics", "reporting_enabled"),
}


def _grafana_setting(variable: str) -> tuple[str, str] | None:
    name = variable.removeprefix("GF_").removesuffix("__FILE").lower()
    for section, key in GRAFANA_SETTINGS:
        if name == f"{section.replace('.', '_')}_{key}":
            return section, key
    return None


def test_grafana_variables_are_grafana_settings(compose: dict[str, Any]) -> None:
    env = compose["services"]["grafana"]["environment"]
    for variable in env:
        assert variable.startswith("GF_")
        assert _grafana_setting(variable) is not None, f"{variable} is not a Grafana setting"
    assert env["GF_USERS_DEFAULT_LANGUAGE"] == "fr-FR"
    assert _grafana_setting("GF_DEFAULT_LOCALE") is None


# What a fresh Debian 12 host has: the Grafana package's provisioning folders, and what
# systemd makes for a unit (StateDirectory=). Nothing else may be named writable.
FRESH = {"/etc/grafana/provisioning", "/etc/grafana/provisioning/datasources", "/etc/grafana/provisioning/dashboards"}


@pytest.mark.parametrize("name", ["econome.service", "econome-dashboards.service"])
def test_systemd_writable_paths_exist_on_a_fresh_host(name: str) -> None:
    service = _unit(name)["Service"]
    state = {f"/var/lib/{d}" for d in service.get("StateDirectory", "").split()}
    for path in service.get("ReadWritePaths", "").split():
        if path.startswith("-"):
            continue  # systemd ignores a missing path written with '-'
        assert path in FRESH | state, f"{name}: ReadWritePaths={path} is missing on a fresh host"


def test_dashboards_unit_owns_what_it_writes() -> None:
    service = _unit("econome-dashboards.service")["Service"]
    out = re.search(r"--out (\S+)", service["ExecStart"]).group(1)  # type: ignore[union-attr]
    pre = service["ExecStartPre"]
    assert pre.startswith("+/usr/bin/install -d -o econome -g grafana")
    made = set(pre.split()[8:])
    # Every folder a build creates or writes in (run here on an empty folder) is made the unit's.
    from dashboards.provisioning import write_provisioning
    from inventory import load_inventory

    with tempfile.TemporaryDirectory() as built:
        write_provisioning(load_inventory(ROOT / "examples" / "commune.yaml"), Path(built))
        top = {f"{out}/{p.name}" for p in Path(built).iterdir()}
    assert top == {f"{out}/{sub}" for sub in ("alerting", "dashboards", "datasources", "json", "plugins")}
    assert top <= made
    assert service["User"] == "econome"
    assert service["Group"] == "grafana"


def test_units_can_read_the_inventory_folder() -> None:
    # OPERATIONS.md makes /etc/econome 750 root:econome: a unit reading the inventory needs that group.
    guide = (DEPLOY / "OPERATIONS.md").read_text(encoding="utf-8")
    made = re.search(r"install -d -m 750 -o root -g (\w+) /etc/econome ", guide)
    assert made is not None
    for name in ("econome.service", "econome-dashboards.service"):
        service = _unit(name)["Service"]
        assert "/etc/econome/commune.yaml" in service["ExecStart"]
        groups = {service["Group"], *service.get("SupplementaryGroups", "").split()}
        assert made.group(1) in groups, f"{name} cannot enter /etc/econome"


def test_the_image_installs_every_package() -> None:
    # pip install . quietly leaves out a package the build context lacks; `mv` was, and anomalies imports it.
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (DEPLOY / "Dockerfile").read_text(encoding="utf-8"), flags=re.MULTILINE))
    assert packages == copied


def test_live_alert_service_has_a_writable_data_dir(compose: dict[str, Any]) -> None:
    # Live detection keeps its state and the alert register in ECONOME_DATA_DIR/detect/.
    service = _unit("econome.service")["Service"]
    text = (DEPLOY / "systemd" / "econome.service").read_text(encoding="utf-8")
    env = dict(re.findall(r"^Environment=(\w+)=(\S+)$", text, flags=re.MULTILINE))  # configparser keeps the last only
    assert {"ECONOME_INFLUX_TOKEN_FILE", "ECONOME_MQTT_PASSWORD_FILE"} <= set(env)
    data_dir = env["ECONOME_DATA_DIR"]
    assert data_dir == f"/var/lib/{service['StateDirectory']}"
    assert data_dir in service["ReadWritePaths"].split()
    econome = compose["services"]["econome"]
    target = econome["environment"]["ECONOME_DATA_DIR"]
    assert f"econome-data:{target}" in econome["volumes"]


def test_the_unit_gives_econome_the_passwords_of_the_example_inventory() -> None:
    # The bare VM installs deploy/commune.example.yaml: each password_env it names must reach the service.
    inventory = load_inventory(DEPLOY / EXAMPLE)
    wanted = {b.password_env for b in inventory.mqtt_brokers} | {inventory.email.password_env if inventory.email else None}
    text = (DEPLOY / "systemd" / "econome.service").read_text(encoding="utf-8")
    credentials = dict(re.findall(r"^LoadCredential=([\w-]+):(\S+)$", text, flags=re.MULTILINE))
    files = dict(re.findall(r"^Environment=(\w+)_FILE=%d/([\w-]+)$", text, flags=re.MULTILINE))
    for variable in wanted:
        assert variable is not None
        assert variable in files, f"econome.service does not set {variable}_FILE"
        assert files[variable] in credentials, f"{variable}_FILE names no credential"
        assert credentials[files[variable]].startswith("/etc/econome/credentials/")
