"""``ECONOME_DETECT_CONFIG``: a DetectConfig YAML file, with errors naming the file and line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from econome.settings import load_detect_config
from streams.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def test_a_valid_file_sets_the_detection_settings(tmp_path: Path) -> None:
    path = tmp_path / "detect.yaml"
    path.write_text("models: false\nrules:\n  leak_min_flow_m3_h: 0.05\n", encoding="utf-8")
    config = load_detect_config(path)
    assert config.models is False
    assert config.rules.leak_min_flow_m3_h == 0.05


@pytest.mark.parametrize(("text", "expected"), [
    ("models: false\nrules:\n  leak_min_flow_m3_h: -1\n", ":3 rules.leak_min_flow_m3_h: Input should be greater than 0"),
    ("models: false\n\nmodelz: true\n", ":3 modelz: Extra inputs are not permitted"),
    ("models: [\n", "not valid YAML"),
    ("- models\n", ":1: the top level must be a mapping"),
    ("models: false\nrules:\n  leak_min_flow_m3_h: 0.05\nmodels: true\n", ":4 models: duplicate key (first at line 1)"),
    ("rules:\n  leak_min_flow_m3_h: 0.05\n  leak_min_flow_m3_h: 5\n",
     ":3 rules.leak_min_flow_m3_h: duplicate key (first at line 2)"),
])
def test_a_broken_file_is_one_error_naming_file_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "detect.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_detect_config(path)
    assert str(caught.value).startswith(f"ECONOME_DETECT_CONFIG: {path}")
    assert expected in str(caught.value)


def test_econome_run_refuses_to_start_on_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "detect.yaml"
    path.write_text("rules:\n  no_such_rule: 1\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "econome.cli", "run", "examples/commune.yaml", "--duration", "1"],
        cwd=ROOT, env={"PATH": "/usr/bin:/bin", "ECONOME_DETECT_CONFIG": str(path), "ECONOME_DATA_DIR": str(tmp_path)},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"ECONOME_DETECT_CONFIG: {path}:2 rules.no_such_rule: Extra inputs are not permitted" in result.stderr


def test_an_empty_file_keeps_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "detect.yaml"
    path.write_text("# nothing changed yet\n", encoding="utf-8")
    assert load_detect_config(path).models is True
