"""Detection on the utilities' meters of the demo commune: a Linky's 30-min curve, a Gazpar's gas days (issue 14)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from anomalies.detect import DetectConfig, detect
from anomalies.features import HourlyFrame, PointSeries
from anomalies.rules import MissingDataRule, RulesConfig
from inventory import Inventory, load_inventory
from simulator import default_fault_plan
from simulator.export import write_readings_csv
from streams.history import read_readings_csv
from streams.quality import StalenessLimits

ROOT = Path(__file__).resolve().parents[3]
SCHOOL, HALL = "maternelle-aulnes", "salle-polyvalente"
GAZPAR = "salle-polyvalente-gazpar"


@pytest.fixture(scope="module")
def commune() -> Inventory:
    return load_inventory(ROOT / "examples" / "commune.yaml")


@pytest.fixture(scope="module")
def utility_commune(commune: Inventory) -> Inventory:
    """The two utility buildings and the weather station (the town hall with only it): a fast detection."""
    sites = []
    for site in commune.sites:
        kept = []
        for building in site.buildings:
            if building.id == "mairie":
                weather = [p for p in building.points if p.id == "station-meteo-temperature"]
                kept.append(building.model_copy(update={"points": weather, "zones": []}))
            elif building.id in {SCHOOL, HALL}:
                kept.append(building)
        if kept:
            sites.append(site.model_copy(update={"buildings": kept}))
    return commune.model_copy(update={"sites": sites})


def test_lights_left_on_are_found_once_from_the_linky_and_the_hall_raises_nothing(
    commune: Inventory, utility_commune: Inventory, tmp_path: Path
) -> None:
    faults = [f for f in default_fault_plan(commune, 2025, 1) if f.building in {SCHOOL, HALL}]
    assert [f.building for f in faults] == [SCHOOL]
    fault = faults[0]
    readings = tmp_path / "readings.csv"
    # Twelve weeks before the fault (the All Saints holidays among them), and four days after it.
    write_readings_csv(utility_commune, readings, datetime(2025, 9, 1, tzinfo=UTC), fault.end + timedelta(days=4),
                       step=timedelta(hours=1), seed=1, faults=faults, energy_only=True)
    series = read_readings_csv(readings)
    events = detect(utility_commune, series, DetectConfig())

    found = [e for e in events if e.building == SCHOOL]
    assert len(found) == 1, [(e.kind, e.start, e.end) for e in found]
    event = found[0]
    assert event.kind == "consumption_unoccupied"
    assert event.usage == "general"
    assert fault.start <= event.start < fault.start + timedelta(days=1)  # the first night
    assert fault.end - timedelta(days=1) <= event.end <= fault.end + timedelta(hours=36)
    # The hall, heated in the evenings and on weekends only, raises nothing: its Gazpar's day is never
    # spread into flat hours that an hourly rule would read as heating at night.
    assert [e for e in events if e.building == HALL] == []
    frame = HourlyFrame.build(series, counters=[GAZPAR, "salle-polyvalente-linky"])
    assert not np.isfinite(frame.consumption[GAZPAR]).any()
    assert np.isfinite(frame.consumption["salle-polyvalente-linky"]).mean() > 0.99


def _missing_hours(inventory: Inventory, point_id: str, step: timedelta, silent: timedelta) -> int:
    """Hours flagged missing when the point's last reading is ``silent`` before the frame's end."""
    start = datetime(2026, 1, 5, 5, tzinfo=UTC)  # 6:00 in Paris: the start of a gas day
    last = start + timedelta(days=10)
    times = np.arange(start.timestamp(), last.timestamp() + 1, step.total_seconds())
    series = PointSeries(times, np.linspace(1000.0, 2000.0, times.size))
    hours = int((last + silent - start) / timedelta(hours=1))
    frame = HourlyFrame.build({point_id: series}, counters=[point_id], start_s=start.timestamp(), hours=hours)
    point = inventory.point(point_id)
    finding = MissingDataRule().evaluate(inventory.building_of(point_id), point, series, frame,
                                         np.zeros(hours), RulesConfig())
    assert finding is not None
    return int((finding.state == 1.0).sum())


@pytest.mark.parametrize(
    ("point_id", "step", "late", "overdue"),
    [
        ("maternelle-aulnes-linky", timedelta(minutes=30), timedelta(hours=47), timedelta(hours=52)),
        (GAZPAR, timedelta(days=1), timedelta(hours=95), timedelta(hours=100)),
    ],
)
def test_missing_data_waits_for_the_utility_to_publish(
    commune: Inventory, point_id: str, step: timedelta, late: timedelta, overdue: timedelta
) -> None:
    # Enedis publishes day J on J+1, GRDF up to J+3: data not published yet are late, not missing.
    assert _missing_hours(commune, point_id, step, late) == 0
    assert _missing_hours(commune, point_id, step, overdue) > 0
    # A meter of ours with the same silence is missing long before.
    assert _missing_hours(commune, "mairie-elec-energy", timedelta(minutes=15), timedelta(hours=30)) > 0


def test_status_page_waits_for_the_utilities_too(commune: Inventory) -> None:
    limits = StalenessLimits()
    assert limits.missing_after(commune.point("maternelle-aulnes-linky")) == timedelta(days=2)
    assert limits.missing_after(commune.point(GAZPAR)) == timedelta(days=4)
    assert limits.missing_after(commune.point("mairie-elec-energy")) < timedelta(hours=1)


def test_a_gazpar_published_monthly_is_not_missing_for_weeks(commune: Inventory) -> None:
    # A professional (MM) Gazpar's daily data come once a month, between the 10th and the 20th.
    point = commune.point(GAZPAR)
    monthly = point.model_copy(update={"grdf": point.grdf.model_copy(update={"publication": "monthly"})})  # type: ignore[union-attr]
    building = commune.building_of(GAZPAR)
    building = building.model_copy(update={"points": [monthly if p.id == GAZPAR else p for p in building.points]})
    sites = [s.model_copy(update={"buildings": [building if b.id == building.id else b for b in s.buildings]})
             for s in commune.sites]
    inventory = commune.model_copy(update={"sites": sites})
    inventory._index = None
    assert _missing_hours(inventory, GAZPAR, timedelta(days=1), timedelta(days=40)) == 0
    assert _missing_hours(inventory, GAZPAR, timedelta(days=1), timedelta(days=80)) > 0
    assert _missing_hours(commune, GAZPAR, timedelta(days=1), timedelta(days=40)) > 0
