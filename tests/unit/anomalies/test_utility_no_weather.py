"""Detection where the review of issue 14 doubted it: a Linky beside a Gazpar, and a commune without a weather sensor.

``consumption_unoccupied`` judges a general meter only without a heating meter beside it, and needs
the outdoor temperature: the Linky of a Gazpar-heated hall, and any meter of a commune without a
weather point, are left to the expected-consumption rule (``unusual_consumption``), which finds the
lights left on all the same from the 30-minute data (docs/anomalies.md).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from anomalies.detect import DetectConfig, detect
from inventory import Inventory, load_inventory
from simulator import default_fault_plan
from simulator.export import write_readings_csv
from simulator.faults import Fault
from streams.history import read_readings_csv

ROOT = Path(__file__).resolve().parents[3]
SCHOOL, HALL = "maternelle-aulnes", "salle-polyvalente"


@pytest.fixture(scope="module")
def commune() -> Inventory:
    return load_inventory(ROOT / "examples" / "commune.yaml")


def _utility_buildings(commune: Inventory, *, weather: bool) -> Inventory:
    """The Linky-only school and the Linky+Gazpar hall, with the town hall's weather station or without."""
    sites = []
    for site in commune.sites:
        kept = []
        for building in site.buildings:
            if building.id == "mairie" and weather:
                station = [p for p in building.points if p.id == "station-meteo-temperature"]
                kept.append(building.model_copy(update={"points": station, "zones": []}))
            elif building.id in {SCHOOL, HALL}:
                kept.append(building)
        if kept:
            sites.append(site.model_copy(update={"buildings": kept}))
    return commune.model_copy(update={"sites": sites})


def _events(inventory: Inventory, faults: list[Fault], tmp_path: Path) -> list[tuple[str, str, str, datetime, datetime]]:
    readings = tmp_path / "readings.csv"
    write_readings_csv(inventory, readings, datetime(2025, 9, 1, tzinfo=UTC), faults[0].end + timedelta(days=4),
                       step=timedelta(hours=1), seed=1, faults=faults, energy_only=True)
    events = detect(inventory, read_readings_csv(readings), DetectConfig())
    return [(e.building, e.kind, e.usage or "", e.start, e.end) for e in events]


def test_lights_left_on_behind_a_linky_are_found_without_the_unoccupied_rule(commune: Inventory, tmp_path: Path) -> None:
    school = next(f for f in default_fault_plan(commune, 2025, 1) if f.building == SCHOOL)
    hall = school.model_copy(update={"building": HALL})  # the same lights left on, in the Gazpar-heated hall

    found = _events(_utility_buildings(commune, weather=True), [school, hall], tmp_path)
    in_hall = [e for e in found if e[0] == HALL]
    assert [(b, kind, usage) for b, kind, usage, _, _ in in_hall] == [(HALL, "unusual_consumption", "general")]
    assert hall.start <= in_hall[0][3] < hall.start + timedelta(days=1)
    assert ("consumption_unoccupied", "general") in {(kind, usage) for b, kind, usage, _, _ in found if b == SCHOOL}

    # No weather point: the unoccupied rule judges nothing; the school's fault is found all the same.
    blind = _events(_utility_buildings(commune, weather=False), [school], tmp_path)
    assert not [e for e in blind if e[1] == "consumption_unoccupied"]
    in_school = [e for e in blind if e[0] == SCHOOL]
    assert [(kind, usage) for _, kind, usage, _, _ in in_school] == [("unusual_consumption", "general")]
    assert in_school[0][3] < school.end
    assert in_school[0][4] > school.start
    assert in_school[0][3].date() == school.start.date()
