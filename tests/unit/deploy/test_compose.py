"""Static checks of deploy/: Docker is not available here, so the stack is parsed, not started.

What is checked: the compose YAML structure, that every mounted file exists in
the repository (or is created by init-secrets.sh), that every ECONOME_*
variable is an Econome setting and is documented, the Mosquitto/InfluxDB/Grafana
wiring, the systemd units, and the operations guide's sections.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from econome.settings import EconomeSettings

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
_DEFAULT = re.compile(r"\$\{(\w+)(?::?-([^}]*)|:\?[^}]*)?\}")
# The variables the stack requires (`${NAME:?message}`), as an operator following OPERATIONS.md sets them.
REQUIRED = {"ECONOME_CONFIG": "./commune.example.yaml"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
    return doc


def _resolve(text: str) -> str:
    """Compose interpolation with the defaults, as `docker compose config` does without an .env."""
    return _DEFAULT.sub(lambda m: m.group(2) or REQUIRED.get(m.group(1), ""), text)


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for volume in service.get("volumes", []):
        source, target = _resolve(volume).split(":")[:2]
        if source.startswith((".", "/")):
            out.append((source, target))
    return out


def _volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    out = {}
    for volume in service.get("volumes", []):
        source, target = _resolve(volume).split(":")[:2]
        if not source.startswith((".", "/")):
            out[source] = target
    return out


def _env_names(text: str) -> set[str]:
    return set(re.findall(r"\b(ECONOME_[A-Z0-9_]+)\b", text))


def test_services_and_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {
        "mosquitto",
        "influxdb",
        "econome",
        "dashboards",
        "grafana",
        "kafka",
        "econome-faust",
        "econome-worker",
    }
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        image = service.get("image", "")
        if "build" not in service:
            assert re.search(r":\d+\.\d+", image), f"{name}: pin the image version, not {image!r}"
        assert service.get("networks") or service.get("network_mode") == "none", f"{name} is on no explicit network"
    assert services["influxdb"]["image"].startswith("influxdb:2.")
    assert services["grafana"]["image"].startswith("grafana/grafana-oss:")
    assert services["kafka"]["profiles"] == services["econome-faust"]["profiles"] == ["kafka"]
    assert services["econome-worker"]["profiles"] == ["kafka"]
    assert "profiles" not in services["econome"]
    assert compose["networks"]["backend"]["internal"] is True
    assert services["influxdb"]["networks"] == ["backend"]  # InfluxDB is never published
    assert "ports" not in services["influxdb"]
    declared = set(compose["volumes"])
    for name, service in services.items():
        assert set(_volume_mounts(service)) <= declared, name
        assert set(service.get("secrets", [])) <= set(compose["secrets"]), name


def test_econome_runs_the_inventory(compose: dict[str, Any]) -> None:
    econome = compose["services"]["econome"]
    assert econome["command"][:3] == ["econome", "run", "/config/commune.yaml"]
    assert ("./commune.example.yaml", "/config/commune.yaml") in _bind_mounts(econome)
    build = econome["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for copied in re.findall(r"^COPY (\S+)", dockerfile, flags=re.MULTILINE):
        assert (ROOT / copied).exists(), f"Dockerfile copies missing {copied}"


def test_kafka_roles_forwarder_and_scalable_workers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")  # a real Kafka: Tansu keeps everything in memory
    forwarder, worker = services["econome-faust"], services["econome-worker"]
    assert forwarder["command"][:3] == ["econome", "run", "/config/commune.yaml"]
    assert forwarder["environment"]["ECONOME_RUNNER"] == "faust"
    assert worker["command"][:3] == ["econome", "worker", "/config/commune.yaml"]
    # Both sides agree on the broker and the partitions, which the broker's default for new topics matches.
    for key in ("ECONOME_KAFKA_URL", "ECONOME_KAFKA_PARTITIONS"):
        assert forwarder["environment"][key] == worker["environment"][key], key
    assert worker["environment"]["ECONOME_KAFKA_PARTITIONS"] == services["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"]
    # `--scale econome-worker=N`: no published port, no container name, nothing shared on disk.
    assert "ports" not in worker
    # Its metrics reach a Prometheus of the backend network: bound to every address, the port exposed.
    port = worker["command"][worker["command"].index("--metrics-port") + 1]
    assert worker["expose"] == [port]
    assert worker["environment"]["ECONOME_WORKER_METRICS_HOST"] == "0.0.0.0"  # noqa: S104 - a container's
    assert "container_name" not in worker
    assert "econome-data" not in _volume_mounts(worker)
    assert ("./commune.example.yaml", "/config/commune.yaml") in _bind_mounts(worker)


def test_every_file_variable_points_to_what_the_service_mounts(compose: dict[str, Any]) -> None:
    """deploy/entrypoint.sh exits 2 on an ECONOME_*_FILE it cannot read: each must be a secret or a volume the service mounts."""
    checked = 0
    for name, service in compose["services"].items():
        if "econome" not in " ".join(map(str, service.get("command", []))) and not name.startswith("econome"):
            continue
        secrets = {f"/run/secrets/{secret}" for secret in service.get("secrets", [])}
        targets = [target for _, target in _bind_mounts(service)] + list(_volume_mounts(service).values())
        for key, value in service.get("environment", {}).items():
            if not (key.startswith("ECONOME_") and key.endswith("_FILE")):
                continue
            path = _resolve(str(value))
            mounted = path in secrets or any(path.startswith(target.rstrip("/") + "/") for target in targets)
            assert mounted, f"service {name}: {key}={path} is neither a secret it mounts nor under one of its volumes"
            checked += 1
    assert checked >= 6  # econome's and econome-faust's five, the worker's token


def test_kafka_keeps_its_log_on_the_volume(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert _volume_mounts(kafka)["kafka-data"] == kafka["environment"]["KAFKA_LOG_DIRS"]


def test_every_mounted_file_exists_or_is_a_generated_secret(compose: dict[str, Any]) -> None:
    script = (DEPLOY / "init-secrets.sh").read_text()
    sources = [src for service in compose["services"].values() for src, _ in _bind_mounts(service)]
    sources += [secret["file"] for secret in compose["secrets"].values()]
    assert sources
    for source in sources:
        if source.startswith("./secrets/"):
            name = source.removeprefix("./secrets/")
            assert name in script, f"{source} is mounted but init-secrets.sh does not create it"
            continue
        assert (DEPLOY / source).exists(), f"{source} is mounted but missing from the repository"
    assert (DEPLOY / ".gitignore").read_text().split() == ["secrets/"]


def test_econome_variables_are_settings_and_documented(compose: dict[str, Any]) -> None:
    fields = {f"ECONOME_{name.upper()}" for name in EconomeSettings.model_fields}
    guide = (DEPLOY / "OPERATIONS.md").read_text()
    documented = _env_names(guide)
    planned: set[str] = set()
    texts = [(DEPLOY / "docker-compose.yml").read_text()]
    texts += [p.read_text() for p in (DEPLOY / "systemd").iterdir()]
    used = set().union(*(_env_names(t) for t in texts))
    # ECONOME_MQTT_PASSWORD and ECONOME_SMTP_PASSWORD are the inventory's password_env;
    # ECONOME_CONFIG/VERSION are compose-level.
    compose_level = {"ECONOME_CONFIG", "ECONOME_VERSION", "ECONOME_MQTT_PASSWORD", "ECONOME_SMTP_PASSWORD"}
    for name in sorted(used):
        base = name.removesuffix("_FILE")
        assert base in fields | planned | compose_level, f"{name} is not an Econome setting"
        assert base in documented, f"{base} is not documented in OPERATIONS.md"
    # Settings added later are documented in econome/settings.py; the guide must at least cover these.
    assert {f"ECONOME_INFLUX_{k}" for k in ("API", "URL", "DATABASE", "TOKEN", "ORG", "BUCKET")} <= documented


def test_mosquitto_has_auth_and_tls(compose: dict[str, Any]) -> None:
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    settings = dict(line.split(None, 1) for line in conf.splitlines() if line and not line.startswith("#"))
    assert settings["allow_anonymous"] == "false"
    assert settings["listener"] == "8883"
    mounts = dict((t, s) for s, t in _bind_mounts(compose["services"]["mosquitto"]))
    assert mounts[settings["password_file"]] == "./secrets/mosquitto_passwd"
    assert mounts[settings["acl_file"]] == "./mosquitto/acl"
    for key in ("cafile", "certfile", "keyfile"):
        assert settings[key].startswith("/mosquitto/certs/"), key
        assert Path(settings[key]).name in (DEPLOY / "init-secrets.sh").read_text()
    for key in ("cafile", "certfile", "keyfile"):
        assert mounts[settings[key]] == f"./secrets/tls/{Path(settings[key]).name}"
    assert compose["services"]["mosquitto"]["ports"] == ["${MQTT_BIND:-0.0.0.0}:8883:8883"]
    acl = (DEPLOY / "mosquitto" / "acl").read_text()
    assert "user econome\ntopic read #" in acl


def test_influxdb_setup_maps_dbrp_and_tokens(compose: dict[str, Any]) -> None:
    influx = compose["services"]["influxdb"]
    env = influx["environment"]
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert env["DOCKER_INFLUXDB_INIT_PASSWORD_FILE"].startswith("/run/secrets/")
    assert ("./influxdb/init", "/docker-entrypoint-initdb.d") in _bind_mounts(influx)
    script = (DEPLOY / "influxdb" / "init" / "10-econome.sh").read_text()
    assert "influx v1 dbrp create" in script
    assert "econome.token" in script
    assert "grafana.token" in script
    assert (DEPLOY / "influxdb" / "init" / "10-econome.sh").stat().st_mode & 0o111
    econome_env = compose["services"]["econome"]["environment"]
    assert econome_env["ECONOME_INFLUX_DATABASE"] == env["ECONOME_INFLUX_DATABASE"] == "econome"
    assert econome_env["ECONOME_INFLUX_TOKEN_FILE"].startswith(_volume_mounts(influx)["influx-tokens"])


def test_grafana_loads_the_generated_provisioning(compose: dict[str, Any], tmp_path: Path) -> None:
    import typer

    from econome.cli_dashboards import register

    services = compose["services"]
    grafana, dashboards = services["grafana"], services["dashboards"]
    assert _volume_mounts(grafana)["grafana-provisioning"] == "/etc/grafana/provisioning"
    assert grafana["volumes"][0].endswith(":ro")
    assert grafana["depends_on"]["dashboards"]["condition"] == "service_completed_successfully"
    command = dashboards["command"]
    assert command[:3] == ["econome", "dashboards", "build"]
    out = command[command.index("--out") + 1]
    assert _volume_mounts(dashboards)["grafana-provisioning"] == out
    # Run the very command of the one-shot service, into a temporary folder.
    args = [a.replace("/config/commune.yaml", str(ROOT / "examples" / "commune.yaml")) for a in command[1:]]
    args[args.index(out)] = str(tmp_path)
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    prefix = "valmont"  # the organisation's (Commune de Valmont)
    source = yaml.safe_load((tmp_path / "datasources" / f"{prefix}.yaml").read_text())["datasources"][0]
    token_file = re.search(r"\$__file\{([^}]+)\}", source["secureJsonData"]["httpHeaderValue1"])
    assert token_file is not None
    assert token_file.group(1).startswith(_volume_mounts(grafana)["influx-tokens"])
    assert source["url"] == "http://influxdb:8086"
    # The volume hides the image's provisioning folders: the build makes those Grafana reads at start.
    assert all((tmp_path / sub).is_dir() for sub in ("alerting", "plugins", "datasources", "dashboards"))
    providers = yaml.safe_load((tmp_path / "dashboards" / f"{prefix}.yaml").read_text())["providers"]
    for provider in providers:
        path = provider["options"]["path"]
        assert path.startswith(f"/etc/grafana/provisioning/json/{prefix}/")
        assert list((tmp_path / path.removeprefix("/etc/grafana/provisioning/")).glob("*.json"))


def test_systemd_units() -> None:
    units = {}
    for path in (DEPLOY / "systemd").glob("econome*.[sp]*"):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
        parser.read_string(path.read_text())
        units[path.name] = parser
    assert set(units) == {"econome.service", "econome-dashboards.service", "econome-dashboards.path", "econome-worker@.service"}
    worker = units["econome-worker@.service"]["Service"]
    # The instance name is the metrics port: econome-worker@9111 serves :9111/metrics.
    assert worker["ExecStart"].endswith("econome worker /etc/econome/commune.yaml --metrics-port %i")
    assert worker["User"] == "econome"
    assert worker["NoNewPrivileges"] == "yes"
    assert "%i" in worker["StateDirectory"]  # one folder per instance
    main = units["econome.service"]
    assert "econome run /etc/econome/commune.yaml" in main["Service"]["ExecStart"]
    assert main["Service"]["User"] == "econome"
    assert main["Service"]["NoNewPrivileges"] == "yes"
    assert main["Install"]["WantedBy"] == "multi-user.target"
    assert "dashboards build" in units["econome-dashboards.service"]["Service"]["ExecStart"]
    assert units["econome-dashboards.path"]["Path"]["Unit"] == "econome-dashboards.service"
    entrypoint = main["Service"]["ExecStart"].split()[0]
    assert (ROOT / entrypoint.removeprefix("/opt/econome/")).exists()


def test_operations_guide_covers_the_brief() -> None:
    guide = (DEPLOY / "OPERATIONS.md").read_text()
    headings = re.findall(r"^## (.+)$", guide, flags=re.MULTILINE)
    for needed in ("Secrets", "Backups", "Upgrades", "Network segmentation of the Modbus gateways", "Scaling out"):
        assert needed in headings
    assert "not** been started" in guide  # says honestly that the stack was not run here
