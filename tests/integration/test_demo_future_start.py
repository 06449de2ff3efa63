"""``econome demo --start`` after today: its utility files are imported against the demo's clock (review2).

The demo writes the Linky and Gazpar files of the week before its start and imports them before its clock
runs; dated after the system's now, they were refused as "in the future" and the demo stopped.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from econome.cli import import_utility_files
from inventory import load_inventory
from simulator.downloads import write_utility_files
from streams.influx import InfluxConfig

COMMUNE = Path(__file__).resolve().parents[2] / "examples" / "commune.yaml"


def test_a_demo_starting_after_today_imports_its_utility_files(influxdb_server: Any, unique_name: str,
                                                                  tmp_path: Path) -> None:
    inv = load_inventory(COMMUNE)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=40)
    files = write_utility_files(inv, tmp_path / "files", start - timedelta(days=3), start - timedelta(minutes=1),
                                seed=0, bill_years=())
    config = InfluxConfig(url=influxdb_server.url, database=unique_name)
    lines = asyncio.run(import_utility_files(inv, config, files, tmp_path, now=start))
    imported = {line.split(":")[0] for line in lines}
    assert imported == {path.name for path in [*files.enedis, *files.grdf, *filter(None, [files.invoices])]}
    assert all(", 0 intervals" not in line for line in lines)
