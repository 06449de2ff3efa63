"""Materiality: a consumption alert opens only once its excess is worth an advisor's time, deciding causally.

Hand-made findings on a two-day hourly grid: what the debouncing does with
them does not depend on any rule or model.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from anomalies.detect import DetectConfig, MaterialityConfig, events_from_findings
from anomalies.events import AnomalyEvent, EventKind
from anomalies.features import HourlyFrame
from anomalies.lifecycle import AlertLifecycle, LifecycleConfig, Track
from anomalies.rules import Finding
from inventory import Building, Inventory, Usage, parse_inventory

from .test_main_meter import INVENTORY

START = datetime(2025, 1, 6, tzinfo=UTC)
N = 48
TYPICAL_KWH = 10.0  # the usage's typical hourly consumption


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return parse_inventory(INVENTORY)


@pytest.fixture(scope="module")
def building(inventory: Inventory) -> Building:
    return next(b for _, b in inventory.buildings())


def _frame() -> HourlyFrame:
    return HourlyFrame.build({}, counters=set(), start_s=START.timestamp(), hours=N)


def _finding(first: int, last: int, excess_kwh: float, kind: EventKind = EventKind.CONSUMPTION_UNOCCUPIED,
             expected_kwh: float = 1.0) -> Finding:
    """Active from hour ``first`` to ``last`` (excluded) with a constant excess over ``expected_kwh``."""
    state = np.zeros(N)
    state[first:last] = 1.0
    active = state == 1.0
    expected = np.full(N, expected_kwh)
    return Finding(
        qualified_name="anomalies.test", kind=kind, building="ecole", usage=Usage.HEATING, state=state,
        observed=expected + np.where(active, excess_kwh, 0.0), expected=expected,
        excess=np.where(active, excess_kwh, 0.0), unit="kWh", min_duration=timedelta(hours=2),
        clear_after=timedelta(hours=24),
    )


def _events(inventory: Inventory, building: Building, finding: Finding,
            materiality: MaterialityConfig | None = None) -> list[AnomalyEvent]:
    typical = {Usage.HEATING: np.full(N, TYPICAL_KWH)}
    return events_from_findings(inventory, building, _frame(), [finding], typical=typical,
                                materiality=materiality or DetectConfig().materiality)


def test_a_trivial_excess_is_not_an_alert(inventory: Inventory, building: Building) -> None:
    """Six hours at 0.5 kWh over a usage that burns 10 kWh an hour: 3 kWh, nobody's time."""
    finding = _finding(20, 26, 0.5)
    assert _events(inventory, building, finding) == []
    # The same finding opens as soon as its minimum duration is reached when materiality is off.
    events = _events(inventory, building, finding, MaterialityConfig(enabled=False))
    assert [e.detected_at for e in events] == [START + timedelta(hours=22)]


def test_opens_at_the_first_hour_its_excess_is_material(inventory: Inventory, building: Building) -> None:
    """2 kWh an hour: the 3 % of a 240 kWh day (7.2 kWh) is reached at the 4th active hour, not the 2nd."""
    events = _events(inventory, building, _finding(10, 30, 2.0))
    assert len(events) == 1
    assert events[0].detected_at == START + timedelta(hours=14)  # opened at hour 13, reported at its end
    assert events[0].start == START + timedelta(hours=10)  # the episode still starts at its first hour
    assert events[0].excess_kwh == pytest.approx(40.0)


def test_small_against_what_was_expected_is_not_material(inventory: Inventory, building: Building) -> None:
    """2 kWh over 30 kWh expected (7 %) stays pending, however long it lasts."""
    assert _events(inventory, building, _finding(10, 40, 2.0, EventKind.UNUSUAL_CONSUMPTION, expected_kwh=30.0)) == []
    assert _events(inventory, building, _finding(10, 40, 4.0, EventKind.UNUSUAL_CONSUMPTION, expected_kwh=30.0))


def test_sensor_and_data_kinds_are_not_held_back(inventory: Inventory, building: Building) -> None:
    """A stuck counter has no excess: it opens at its minimum duration."""
    events = _events(inventory, building, _finding(20, 26, 0.0, EventKind.STALE_COUNTER))
    assert [e.detected_at for e in events] == [START + timedelta(hours=22)]


def test_without_a_typical_consumption_only_the_ratio_applies(inventory: Inventory, building: Building) -> None:
    finding = _finding(20, 26, 0.5, expected_kwh=1.0)
    events = events_from_findings(inventory, building, _frame(), [finding], typical={},
                                  materiality=MaterialityConfig())
    assert [e.detected_at for e in events] == [START + timedelta(hours=22)]


def test_the_lifecycle_keeps_a_refused_alert_pending_and_its_track_persistable() -> None:
    life = AlertLifecycle(LifecycleConfig(min_duration=timedelta(hours=2)))
    key = ("b", "heating", "unusual_consumption", "")
    allowed: list[bool] = [False, False, True]

    def gate(track: Track, at: datetime) -> bool:
        del track, at
        return allowed.pop(0)

    states = [life.observe(key, START + timedelta(hours=h), True, gate) for h in range(4)]
    assert [None if t is None else t.state.value for t in states] == [None, None, None, "open"]
    track = life.track(key)
    assert track is not None
    assert track.first == START
    # The track resumes in another lifecycle as it was (anomalies.incremental saves it).
    other = AlertLifecycle(LifecycleConfig(min_duration=timedelta(hours=2)))
    other.restore(key, track)
    assert other.state(key) is not None


def test_a_small_steady_excess_opens_once_its_total_is_material(inventory: Inventory, building: Building) -> None:
    """0.5 kWh an hour is 5 % of the usual rate, but after 15 hours it is 7.5 kWh: more than 3 % of a day."""
    events = _events(inventory, building, _finding(10, 40, 0.5))
    assert [e.detected_at for e in events] == [START + timedelta(hours=25)]  # 15th active hour (24), reported at its end



def test_overheating_that_costs_a_few_kwh_is_no_alert(inventory: Inventory, building: Building) -> None:
    """Overheating is worth an e-mail for the heat it wastes above the limit: 0.1 kWh/h for a day of a building
    burning 10 kWh/h is not; 2 kWh/h is, although it is under 10 % of the heat expected (a limit breach is
    judged in kelvins by its rule, only its total cost here)."""
    assert _events(inventory, building, _finding(10, 34, 0.1, EventKind.OVERHEATING, expected_kwh=30.0)) == []
    hot = _events(inventory, building, _finding(10, 34, 2.0, EventKind.OVERHEATING, expected_kwh=30.0))
    assert [e.kind for e in hot] == ["overheating"]
