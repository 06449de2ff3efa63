"""scripts/install's decisions, on Debian and (with a fake apt-cache, the boundary) on Ubuntu; the PDF packages.

The script is sourced (its ``main`` runs only when executed): each function is called in a
clean environment. Ubuntu cannot be run here: the fake apt-cache answers ``apt-cache policy``
as Ubuntu 24.04's would for a package it lacks (``chromium``: only the snap's transitional
``chromium-browser``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
INSTALL = ROOT / "scripts" / "install"
PACKAGES = ROOT / "deploy" / "debian-packages.txt"
FAKE_APT_CACHE = """#!/bin/sh
# apt-cache policy PKG: a candidate for the packages of $FAKE_APT, "(none)" for those of
# $FAKE_APT_NONE, nothing for the others (as apt-cache for a name it does not know).
echo "$*" >> "$FAKE_LOG"
[ "$1" = policy ] || exit 100
for p in $FAKE_APT; do [ "$p" = "$2" ] && printf '%s:\\n  Installed: (none)\\n  Candidate: 1.0-1\\n' "$2" && exit 0; done
for p in $FAKE_APT_NONE; do [ "$p" = "$2" ] && printf '%s:\\n  Installed: (none)\\n  Candidate: (none)\\n' "$2" && exit 0; done
echo "N: Unable to locate package $2" >&2
"""
FAKE_RECORDER = """#!/bin/sh
echo "$0 $*" >> "$FAKE_LOG"
"""


def _source(call: str, tmp_path: Path, apt: str = "", none: str = "", path: str = "/usr/bin:/bin") -> str:
    fake = tmp_path / "fake-bin"
    fake.mkdir(exist_ok=True)
    (fake / "apt-cache").write_text(FAKE_APT_CACHE)
    for name in ("apt-get", "sudo"):
        (fake / name).write_text(FAKE_RECORDER)
    for script in fake.iterdir():
        script.chmod(0o755)
    log = tmp_path / "calls.log"
    log.touch()
    env = {"PATH": f"{fake}:{path}", "FAKE_APT": apt, "FAKE_APT_NONE": none, "FAKE_LOG": str(log)}
    command = ["bash", "-c", f"set -euo pipefail; source {INSTALL}; {call}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert not [c for c in log.read_text().splitlines() if not c.startswith("policy ")], "sourcing ran apt or sudo"
    return done.stdout


def test_chromium_comes_from_apt_on_debian_and_from_playwright_on_ubuntu(tmp_path: Path) -> None:
    assert _source("chromium_route", tmp_path, apt="chromium mosquitto").strip() == "apt"
    # Ubuntu 24.04: no package chromium; chromium-browser installs the snap.
    assert _source("chromium_route", tmp_path, apt="chromium-browser mosquitto").strip() == "playwright"
    assert _source("chromium_route", tmp_path, none="chromium").strip() == "playwright"
    script = INSTALL.read_text(encoding="utf-8")
    assert "python -m playwright install --with-deps chromium" in script
    assert ".[dev,chromium]" in script  # the extra of pyproject.toml that brings playwright
    assert "chromium-browser" not in script.split("main() {", 1)[1]  # never the snap


def test_apt_installs_only_what_it_has(tmp_path: Path) -> None:
    out = _source("installable mosquitto victoria-metrics chromium", tmp_path, apt="mosquitto victoria-metrics")
    assert out.split() == ["mosquitto", "victoria-metrics"]


def test_the_pdf_libraries_are_found_without_sbin_on_the_path(tmp_path: Path) -> None:
    # A normal Debian user's PATH has no /sbin, where ldconfig is: the libraries must still be seen.
    assert not shutil.which("ldconfig", path="/usr/bin:/bin")
    assert _source("missing_pdf_packages", tmp_path).split() == []
    assert "libharfbuzz-subset.so.0 (" in _source("shared_libraries", tmp_path)
    listed = tmp_path / "packages.txt"
    listed.write_text("# a comment\nlibpango-1.0-0 libpango-1.0.so.0\nlibnothing9 libnothing.so.9\nfonts-none /no/such.ttf\n")
    assert _source(f"PDF_PACKAGES={listed}; missing_pdf_packages", tmp_path).split() == ["libnothing9", "fonts-none"]


def _listed() -> list[str]:
    lines = PACKAGES.read_text(encoding="utf-8").splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]


def test_the_image_installs_the_pdf_packages() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    assert "COPY deploy/debian-packages.txt /tmp/debian-packages.txt" in dockerfile
    awk = re.search(r"apt-get install -y --no-install-recommends \$\(awk '([^']+)' /tmp/debian-packages.txt\)", dockerfile)
    assert awk is not None
    # The Dockerfile's own extraction, run on the list, gives every package.
    done = subprocess.run(["awk", awk.group(1), str(PACKAGES)], capture_output=True, text=True, timeout=10, check=True)
    assert done.stdout.split() == _listed()
    assert dockerfile.index("debian-packages.txt") < dockerfile.index("pip install -c deploy/constraints.txt .")
    assert 'PDF_PACKAGES="$ROOT/deploy/debian-packages.txt"' in INSTALL.read_text(encoding="utf-8")


def test_the_list_has_what_weasyprint_loads() -> None:
    import weasyprint

    ffi = (Path(weasyprint.__file__).parent / "text" / "ffi.py").read_text(encoding="utf-8")
    calls = re.findall(r"= _dlopen\((.*?)\)\n", ffi, flags=re.DOTALL)
    assert len(calls) >= 5
    listed = _listed()
    # The Debian packages the list brings in: its own and their dependencies (apt's lists, no network).
    depends = subprocess.run(
        ["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks",
         "--no-replaces", "--no-enhances", *listed],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    closure = {line.split(":")[0] for line in depends.splitlines() if line and not line.startswith(" ")}
    checked = []
    for call in calls:
        soname = re.search(r"'(lib[\w.+-]+\.so\.\d+)'", call)
        assert soname is not None, call
        owner = subprocess.run(["dpkg", "-S", soname.group(1)], capture_output=True, text=True, timeout=30, check=False)
        if "allow_fail=True" in call and owner.returncode != 0:
            continue  # optional and absent from this Debian (harfbuzz-vector)
        assert owner.returncode == 0, f"{soname.group(1)}: no Debian package here"
        package = owner.stdout.split(":")[0]
        assert package in closure, f"WeasyPrint loads {soname.group(1)} of {package}, which the list does not bring"
        checked.append(package)
    assert {"libpango-1.0-0", "libpangoft2-1.0-0", "libharfbuzz-subset0", "libfontconfig1"} <= set(checked)
    assert "fonts-dejavu-core" in listed  # a font: the slim image has none


def test_the_script_is_bash_that_parses() -> None:
    done = subprocess.run(["bash", "-n", str(INSTALL)], capture_output=True, text=True, timeout=10, check=False)
    assert done.returncode == 0, done.stderr


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "deploy" / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def test_the_python_dependencies_are_those_the_figures_were_measured_with() -> None:
    """scripts/install and the image install at deploy/constraints.txt's versions; this environment has them.

    Detection's events move with numpy, scipy and scikit-learn (a fresh install that took newer ones gave
    other figures than the README's): an install that ignored the pins fails here.
    """
    from importlib.metadata import version

    pins = _pins()
    for name in ("numpy", "scipy", "scikit-learn", "holidays", "vacances-scolaires-france", "icalendar"):
        assert version(name) == pins[name], name
    assert '-m pip install -q -c deploy/constraints.txt -e ".[dev]"' in INSTALL.read_text(encoding="utf-8")
    assert "pip install -c deploy/constraints.txt ." in (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
