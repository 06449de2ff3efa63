"""What every command shares: loading the inventory or exiting with its errors."""

from __future__ import annotations

from pathlib import Path

import typer

from inventory import Inventory, InventoryError, load_inventory

EXIT_CONFIG = 2
"""Exit code of a command given a configuration it cannot use."""


def load_or_exit(path: Path) -> Inventory:
    """Load an inventory, or print every problem (file:line path: message) and exit 2."""
    try:
        return load_inventory(path)
    except InventoryError as exc:
        for line in exc.lines():
            typer.echo(line, err=True)
        raise typer.Exit(code=EXIT_CONFIG) from exc
