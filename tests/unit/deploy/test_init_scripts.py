"""The init scripts run as their images run them, on folders standing in for the volumes.

- ``influxdb/init/10-econome.sh`` runs as root: the influxdb:2.7 image's entrypoint starts as
  root and runs ``/docker-entrypoint-initdb.d`` in its init step, before ``exec gosu influxdb``
  (influxdata-docker, influxdb/2.7/entrypoint.sh; the Dockerfile sets no USER). It also runs as
  uid 1000 on a folder of its own (a bare VM, or an image that would step down first). The
  ``influx`` CLI is a stub on PATH that records its arguments (the boundary); the token volume
  is a fresh folder owned by root, as Docker makes it.
- ``init-secrets.sh`` runs as root on the host (it chowns), and each secret is then read as
  the uid of the container it is mounted in, through a hard link (a bind mount of one file
  ignores the folders above it on the host, as a hard link does).

Tests run as root here; ``setpriv`` switches user. Run as another user, every step runs as
that user and only the checks that need no other uid are made.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
ROOTED = os.geteuid() == 0
INFLUXDB_UID = 1000
GRAFANA_UID = 472
MOSQUITTO_UID = 1883
ECONOME_UID = int(re.search(r"useradd [^\n]*--uid (\d+)", (DEPLOY / "Dockerfile").read_text()).group(1))  # type: ignore[union-attr]

# Which uid each service's process has (the images' users; Econome's from the Dockerfile).
SERVICE_UID = {"mosquitto": MOSQUITTO_UID, "influxdb": INFLUXDB_UID, "grafana": GRAFANA_UID}

FAKE_INFLUX = """#!/bin/bash
# Stand-in for the influx CLI: records its arguments, answers like influx 2.7.
echo "$*" >> "$INFLUX_LOG"
case "$1 $2" in
    "bucket list") printf '0a1b2c3d4e5f6789\\t%s\\tinfinite\\t168h0m0s\\t0f0f\\n' "$DOCKER_INFLUXDB_INIT_BUCKET" ;;
    "v1 dbrp") [ "$3" = list ] && exit 0; echo "dbrp created" ;;
    "auth create")
        description="$(sed -n 's/.*--description \\([a-z]*\\) \\([a-z]*\\).*/\\1-\\2/p' <<< "$*")"
        printf '{\\n\\t"id": "09a8",\\n\\t"token": "tok-%s",\\n\\t"status": "active"\\n}\\n' "$description" ;;
    *) echo "unexpected: $*" >&2; exit 9 ;;
esac
"""


def _as(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] if ROOTED else []


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder every uid may enter (pytest's tmp_path is root's alone)."""
    with tempfile.TemporaryDirectory(prefix="econome-deploy-") as name:
        path = Path(name)
        path.chmod(0o755)
        yield path


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
    return doc


def _influx_init(
    shared_dir: Path, tokens: Path, uid: int = 0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    bin_dir = shared_dir / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "influx").write_text(FAKE_INFLUX)
    (bin_dir / "influx").chmod(0o755)
    log = shared_dir / "influx.log"
    log.touch()
    log.chmod(0o666)
    variables = {
        "DOCKER_INFLUXDB_INIT_ORG": "commune",
        "DOCKER_INFLUXDB_INIT_BUCKET": "econome",
        "ECONOME_INFLUX_DATABASE": "econome",
        "INFLUX_TOKENS_DIR": str(tokens),
    }
    if env is not None:
        variables = env
    full_env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "INFLUX_LOG": str(log), **variables}
    script = DEPLOY / "influxdb" / "init" / "10-econome.sh"
    # The image runs the scripts with bash; the repository's copy may not be readable by 1000.
    copy = shared_dir / script.name
    shutil.copy(script, copy)
    copy.chmod(0o755)
    as_user = _as(uid) if uid != 0 else []
    return subprocess.run([*as_user, str(copy)], env=full_env, capture_output=True, text=True, timeout=30, check=False)


def _readable_by(uid: int, path: Path) -> bool:
    done = subprocess.run([*_as(uid), "cat", str(path)], capture_output=True, timeout=10, check=False)
    return done.returncode == 0


@pytest.mark.parametrize("uid", [0, INFLUXDB_UID], ids=["root-as-influxdb-2.7", "uid-1000"])
def test_influx_init_writes_the_tokens(uid: int, shared_dir: Path, compose: dict[str, Any]) -> None:
    if uid != 0 and not ROOTED:
        pytest.skip("another uid needs root to switch to")  # the root case runs as this user
    tokens = shared_dir / "influx-tokens"
    tokens.mkdir()  # a fresh volume: root's, 755
    if uid != 0:
        os.chown(tokens, uid, uid)  # a folder of its own
    done = _influx_init(shared_dir, tokens, uid)
    assert done.returncode == 0, done.stderr
    assert f"tokens in {tokens}" in done.stdout
    assert (tokens / "econome.token").read_text() == "tok-econome-writer\n"
    assert (tokens / "grafana.token").read_text() == "tok-grafana-reader\n"
    calls = (shared_dir / "influx.log").read_text().splitlines()
    assert "v1 dbrp create --org commune --db econome --rp autogen --bucket-id 0a1b2c3d4e5f6789 --default" in calls
    assert any(c.startswith("auth create") and "--write-bucket 0a1b2c3d4e5f6789" in c and "econome writer" in c for c in calls)
    grafana_call = next(c for c in calls if "grafana reader" in c)
    assert "--write-bucket" not in grafana_call
    for token in tokens.iterdir():
        assert stat.S_IMODE(token.stat().st_mode) == 0o444, token  # read by others, written by nobody
    if ROOTED:
        assert (tokens / "econome.token").stat().st_uid == uid
        # Econome (the econome and dashboards services) and Grafana read their token from the volume.
        assert _readable_by(ECONOME_UID, tokens / "econome.token")
        assert _readable_by(GRAFANA_UID, tokens / "grafana.token")
    # The compose file mounts the volume where the script writes by default, in every reader.
    script = (DEPLOY / "influxdb" / "init" / "10-econome.sh").read_text()
    target = re.search(r'"\$\{INFLUX_TOKENS_DIR:-([^}]+)\}"', script)
    assert target is not None
    for name in ("influxdb", "econome", "grafana"):
        assert any(v.startswith(f"influx-tokens:{target.group(1)}") for v in compose["services"][name]["volumes"]), name
    # A second run (a restart after a failed setup) keeps the tokens and maps nothing twice.
    (shared_dir / "influx.log").write_text("")
    assert _influx_init(shared_dir, tokens, uid).returncode == 0
    assert not [c for c in (shared_dir / "influx.log").read_text().splitlines() if c.startswith("auth create")]


def test_influx_init_makes_a_folder_others_can_enter(shared_dir: Path) -> None:
    # Run by hand (bare VM) with a folder that does not exist yet: created under umask 077, it
    # must still let Econome's and Grafana's users reach their token.
    tokens = shared_dir / "new" / "influx-tokens"
    done = _influx_init(shared_dir, tokens)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o755
    if ROOTED:
        assert _readable_by(GRAFANA_UID, tokens / "grafana.token")


def test_influx_init_says_why_when_the_folder_is_not_its_own(shared_dir: Path) -> None:
    tokens = shared_dir / "influx-tokens"
    tokens.mkdir()  # root's
    if not ROOTED:
        tokens.chmod(0o555)  # not ours to write, as root's volume is not uid 1000's
    done = _influx_init(shared_dir, tokens, INFLUXDB_UID if ROOTED else 0)
    assert done.returncode == 1
    assert f"econome init: {tokens} is not writable by" in done.stderr
    assert f"uid {INFLUXDB_UID if ROOTED else os.geteuid()}" in done.stderr
    assert not list(tokens.iterdir())


def test_compose_lets_the_image_run_the_init_scripts_as_root(compose: dict[str, Any]) -> None:
    influx = compose["services"]["influxdb"]
    # The entrypoint of influxdb:2.7 (read for this test) runs the init scripts before it steps down.
    assert re.fullmatch(r"influxdb:2\.7\.\d+", influx["image"])
    assert "user" not in influx
    assert "entrypoint" not in influx
    assert "influx-tokens-owner" not in compose["services"]  # the chown one-shot was of no use


@pytest.mark.parametrize("missing", ["DOCKER_INFLUXDB_INIT_ORG", "DOCKER_INFLUXDB_INIT_BUCKET"])
def test_influx_init_names_a_missing_variable(missing: str, shared_dir: Path) -> None:
    env = {"DOCKER_INFLUXDB_INIT_ORG": "commune", "DOCKER_INFLUXDB_INIT_BUCKET": "econome"}
    env["INFLUX_TOKENS_DIR"] = str(shared_dir / "t")
    del env[missing]
    done = _influx_init(shared_dir, shared_dir / "t", env=env)
    assert done.returncode != 0
    assert f"{missing}: set {missing} to" in done.stderr


def test_init_secrets_gives_each_container_its_secrets(shared_dir: Path, compose: dict[str, Any]) -> None:
    deploy = shared_dir / "deploy"
    deploy.mkdir()
    shutil.copy(DEPLOY / "init-secrets.sh", deploy)
    env = {"PATH": "/usr/bin:/bin", "MQTT_HOSTNAME": "mqtt.valmont.example", "HOME": str(shared_dir)}
    script = ["bash", str(deploy / "init-secrets.sh")]
    done = subprocess.run(script, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    secrets = deploy / "secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    links = shared_dir / "mounted"
    links.mkdir(mode=0o755)
    checked = 0
    for name, service in compose["services"].items():
        uid = ECONOME_UID if "build" in service else SERVICE_UID.get(name)
        files = [compose["secrets"][s]["file"] for s in service.get("secrets", [])]
        files += [v.split(":")[0] for v in service.get("volumes", []) if v.startswith("./secrets/")]
        for source in files:
            assert uid is not None, f"{name} gets {source} but its uid is unknown here"
            path = deploy / source
            assert path.is_file(), source
            mode = stat.S_IMODE(path.stat().st_mode)
            if path.suffix != ".crt":
                assert mode & 0o077 == 0, f"{source} is readable by others ({mode:o})"
            if ROOTED:
                link = links / f"{name}-{path.name}"
                os.link(path, link)  # the file as the container sees it
                assert _readable_by(uid, link), f"{name} (uid {uid}) cannot read {source}"
            checked += 1
    assert checked >= 10
    assert "ca.key" not in (DEPLOY / "docker-compose.yml").read_text()  # the CA's key stays on the host
