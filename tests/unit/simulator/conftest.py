from __future__ import annotations

from pathlib import Path

import pytest

from inventory import Inventory, load_inventory

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def commune() -> Inventory:
    return load_inventory(ROOT / "examples" / "commune.yaml")
