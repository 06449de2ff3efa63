from __future__ import annotations

import doctest
import importlib

import pytest

import anomalies

MODULES = ["alerts", "detect", "events", "expected_sink", "features", "iforest", "lifecycle", "live", "rules", "thresholds"]


def test_all_is_sorted_and_exported() -> None:
    assert anomalies.__all__ == sorted(anomalies.__all__)
    for name in anomalies.__all__:
        assert hasattr(anomalies, name)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The examples read examples/commune.yaml relative to the repository root, as CI runs them.
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parents[3])
    module = importlib.import_module(f"anomalies.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
