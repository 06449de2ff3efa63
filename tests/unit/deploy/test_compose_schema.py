"""The compose file against the Compose Specification's JSON schema (tests/cases/compose-spec/)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = ROOT / "tests" / "cases" / "compose-spec" / "compose-spec.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def _errors(validator: jsonschema.Draft202012Validator, doc: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_compose_file_follows_the_compose_specification(validator: jsonschema.Draft202012Validator) -> None:
    doc = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text(encoding="utf-8"))
    assert _errors(validator, doc) == []


def test_the_schema_check_catches_a_broken_file(validator: jsonschema.Draft202012Validator) -> None:
    doc = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text(encoding="utf-8"))
    broken = copy.deepcopy(doc)
    broken["services"]["grafana"]["depends_on"]["dashboards"]["condition"] = "service_finished"
    broken["services"]["econome"]["restart"] = ["always"]
    broken["volumes"]["econome-data"] = "local"
    errors = _errors(validator, broken)
    assert any(e.startswith("services/grafana") for e in errors), errors
    assert any(e.startswith("services/econome/restart") for e in errors), errors
    assert any(e.startswith("volumes/econome-data") for e in errors), errors
