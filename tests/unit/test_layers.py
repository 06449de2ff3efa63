"""Imports flow one way: inventory ← streams ← mv ← collectors / anomalies / dashboards ← econome."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

ALLOWED: dict[str, set[str]] = {
    "inventory": set(),
    "streams": {"inventory"},
    "mv": {"inventory", "streams"},
    "collectors": {"inventory", "streams"},
    "anomalies": {"inventory", "streams", "mv"},
    "dashboards": {"inventory", "streams", "mv"},
    "simulator": {"inventory", "streams"},
    "econome": {"inventory", "streams", "mv", "collectors", "anomalies", "dashboards", "simulator"},
}


def _imported_packages(path: Path) -> set[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update((alias.name.split(".")[0], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            found.add((node.module.split(".")[0], node.lineno))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_flow_one_way(package: str) -> None:
    ours = set(ALLOWED)
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name, line in sorted(_imported_packages(path)):
            if name in ours and name != package and name not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_a_wrong_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from econome.cli import main\n    return main\n", encoding="utf-8")
    assert ("econome", 2) in _imported_packages(module)
