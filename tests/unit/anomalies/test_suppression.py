"""A rule alert explains, and so silences, a model alert of the same building and usage only."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from anomalies.detect import AlertMemory, debounce, events_from_findings
from anomalies.events import EventKind
from anomalies.features import HourlyFrame
from anomalies.lifecycle import AlertLifecycle
from anomalies.rules import Finding
from inventory import Building, Inventory, Usage, parse_inventory

from .test_main_meter import INVENTORY

START = datetime(2025, 1, 6, tzinfo=UTC)
N = 72


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return parse_inventory(INVENTORY)


@pytest.fixture(scope="module")
def building(inventory: Inventory) -> Building:
    return next(b for _, b in inventory.buildings())


def _finding(kind: EventKind, usage: Usage, first: int, last: int) -> Finding:
    state = np.zeros(N)
    state[first:last] = 1.0
    active = state == 1.0
    expected = np.full(N, 10.0)
    unit = "m3" if usage is Usage.WATER else "kWh"
    return Finding(
        qualified_name="anomalies.test", kind=kind, building="ecole", usage=usage, state=state,
        observed=expected + np.where(active, 20.0, 0.0), expected=expected, excess=np.where(active, 20.0, 0.0),
        unit=unit, excess_unit=unit, min_duration=timedelta(hours=2), clear_after=timedelta(hours=12),
    )


def _kinds(inventory: Inventory, building: Building, rule: Finding) -> list[tuple[str, str]]:
    model = _finding(EventKind.UNUSUAL_CONSUMPTION, Usage.HEATING, 10, 30)
    frame = HourlyFrame.build({}, counters=set(), start_s=START.timestamp(), hours=N)
    events = events_from_findings(inventory, building, frame, [rule, model])
    return sorted((e.kind, e.usage) for e in events)


def test_a_rule_alert_of_another_usage_does_not_silence_a_model_alert(inventory: Inventory, building: Building) -> None:
    stuck_water = _finding(EventKind.WATER_LEAK, Usage.WATER, 0, 60)
    assert _kinds(inventory, building, stuck_water) == [("unusual_consumption", "heating"), ("water_leak", "water")]


def test_a_rule_alert_of_the_same_usage_explains_the_model_alert(inventory: Inventory, building: Building) -> None:
    heating_rule = _finding(EventKind.CONSUMPTION_UNOCCUPIED, Usage.HEATING, 0, 60)
    assert _kinds(inventory, building, heating_rule) == [("consumption_unoccupied", "heating")]


def test_a_rule_alert_open_but_quiet_for_days_does_not_silence_a_new_model_alert(inventory: Inventory,
                                                                                building: Building) -> None:
    """A base-load alert waiting a week to resolve says nothing of an excess starting two and a half days later."""
    creep = replace(_finding(EventKind.BASELOAD_CREEP, Usage.HEATING, 0, 6), clear_after=timedelta(days=7))
    model = _finding(EventKind.UNUSUAL_CONSUMPTION, Usage.HEATING, 60, 70)
    frame = HourlyFrame.build({}, counters=set(), start_s=START.timestamp(), hours=N)
    events = events_from_findings(inventory, building, frame, [creep, model])
    assert sorted((e.kind, e.usage) for e in events) == [("baseload_creep", "heating"), ("unusual_consumption", "heating")]
    # The same rule alert active until the model's episode begins explains it.
    creep = replace(_finding(EventKind.BASELOAD_CREEP, Usage.HEATING, 0, 58), clear_after=timedelta(days=7))
    events = events_from_findings(inventory, building, frame, [creep, model])
    assert sorted((e.kind, e.usage) for e in events) == [("baseload_creep", "heating")]


def test_a_model_alert_waits_for_a_rule_of_its_usage_building_evidence(inventory: Inventory,
                                                                       building: Building) -> None:
    """The forest is sure at hour 12; the out-of-hours rule, active from 12, opens at 14: one event, the rule's."""
    model = replace(_finding(EventKind.UNUSUAL_CONSUMPTION, Usage.HEATING, 10, 30), min_duration=timedelta(hours=3))
    rule = replace(_finding(EventKind.CONSUMPTION_UNOCCUPIED, Usage.HEATING, 12, 30), min_duration=timedelta(hours=3))
    frame = HourlyFrame.build({}, counters=set(), start_s=START.timestamp(), hours=N)
    events = events_from_findings(inventory, building, frame, [rule, model])
    assert [(e.kind, e.usage) for e in events] == [("consumption_unoccupied", "heating")]
    assert events[0].detected_at == START + timedelta(hours=15)  # opened at hour 14
    # Without the rule, the same model finding opens at hour 12: the rule was what held it.
    alone = events_from_findings(inventory, building, frame, [model])
    assert [(e.kind, e.detected_at) for e in alone] == [("unusual_consumption", START + timedelta(hours=13))]


def test_a_rule_blip_only_delays_the_model_alert(inventory: Inventory, building: Building) -> None:
    """A rule of the usage active two hours (12, 13) and never opening: the model opens 6 h after its last hour."""
    model = replace(_finding(EventKind.UNUSUAL_CONSUMPTION, Usage.HEATING, 10, 30), min_duration=timedelta(hours=3))
    blip = replace(_finding(EventKind.CONSUMPTION_UNOCCUPIED, Usage.HEATING, 12, 14), min_duration=timedelta(hours=3))
    frame = HourlyFrame.build({}, counters=set(), start_s=START.timestamp(), hours=N)
    events = events_from_findings(inventory, building, frame, [blip, model])
    assert [(e.kind, e.usage) for e in events] == [("unusual_consumption", "heating")]
    # Last rule hour 13; hours 13 … 18 are within six hours of it: the model opens at hour 19.
    assert events[0].detected_at == START + timedelta(hours=20)
    assert events[0].start == START + timedelta(hours=10)  # the episode still starts when the excess did
    # A rule of another usage holds nothing back.
    water = replace(blip, usage=Usage.WATER, unit="m3", excess_unit="m3")
    events = events_from_findings(inventory, building, frame, [water, model])
    assert ("unusual_consumption", START + timedelta(hours=13)) in [(e.kind, e.detected_at) for e in events]


def _closed_heating(inventory: Inventory, building: Building, flagged: np.ndarray | None) -> list[tuple[str, str]]:
    rule = _finding(EventKind.CONSUMPTION_UNOCCUPIED, Usage.HEATING, 10, 30)
    frame = HourlyFrame.build({}, counters=set(), start_s=START.timestamp(), hours=N)
    events = events_from_findings(inventory, building, frame, [rule],
                                  flagged=None if flagged is None else {Usage.HEATING: flagged})
    return [(e.kind, e.start.isoformat()) for e in events]


def test_a_main_meter_s_closure_alert_waits_for_the_forest_to_find_its_hours_unusual_too(
    inventory: Inventory, building: Building,
) -> None:
    """``consumption_unoccupied`` (a main meter's closures, no indoor temperature) opens only with the forest.

    The forest scored the episode's hours and flagged none: a cold weekend at its setback, not a heater
    left on (issue 11, family B: the maternelle's weekends); no alert. One flagged hour of the episode
    (up to the hour asked: causal) and it opens, from its first active hour. No forest score at all (its
    first 14 days, or models off): the rule decides alone.
    """
    quiet = np.zeros(N)
    assert _closed_heating(inventory, building, quiet) == []
    witnessed = quiet.copy()
    witnessed[20] = 1.0
    opened = [("consumption_unoccupied", (START + timedelta(hours=10)).isoformat())]
    assert _closed_heating(inventory, building, witnessed) == opened
    after = quiet.copy()
    after[40] = 1.0  # after the episode: no witness of it
    assert _closed_heating(inventory, building, after) == []
    assert _closed_heating(inventory, building, np.full(N, np.nan)) == _closed_heating(inventory, building, None) != []


@pytest.mark.parametrize("witness", [12, 20, 29, 40])
def test_the_closure_gate_hour_by_hour_gives_one_pass_s_events(inventory: Inventory, building: Building,
                                                               witness: int) -> None:
    """Fed an hour at a time (findings and forest flags known up to it), the gate opens as in one pass.

    The forest's one flag before the rule's minimum duration, inside the episode, at its last hour, or in
    its quiet time after it (no active hour left to open at: no alert).
    """
    rule = _finding(EventKind.CONSUMPTION_UNOCCUPIED, Usage.HEATING, 10, 30)
    flagged = np.zeros(N)
    flagged[witness] = 1.0
    frame = HourlyFrame.build({}, counters=set(), start_s=START.timestamp(), hours=N)
    whole = events_from_findings(inventory, building, frame, [rule], flagged={Usage.HEATING: flagged})
    life = AlertLifecycle(mutes={building.id: building.mute}, timezone=inventory.organisation.tz)
    memory: dict[Any, AlertMemory] = {}
    latest = {}
    for h in range(N):
        known = np.arange(N) <= h
        cut = replace(rule, state=np.where(known, rule.state, np.nan))
        for event in debounce(inventory, building, frame, [cut], first_hour=h, life=life, memory=memory, spans=[],
                              flagged={Usage.HEATING: np.where(known, flagged, np.nan)}):
            latest[event.start] = (event.state, event.detected_at)
    assert latest == {e.start: (e.state, e.detected_at) for e in whole}
    assert bool(whole) is (witness < 30)


def test_an_alert_open_across_a_mute_window_counts_no_excess_of_its_days(inventory: Inventory,
                                                                        building: Building) -> None:
    """Works muted for a day (``mute:``) in a leak's episode: the event's excess, observed and expected leave out
    the day's 24 hours (the lifecycle ignores them; the figures counted them, so the mail's cost did)."""
    from datetime import date

    from inventory import MuteWindow

    leak = _finding(EventKind.WATER_LEAK, Usage.WATER, 0, 60)
    frame = HourlyFrame.build({}, counters=set(), start_s=START.timestamp(), hours=N)
    [plain] = events_from_findings(inventory, building, frame, [leak])
    works = building.model_copy(update={"mute": [MuteWindow(start=date(2025, 1, 7), end=date(2025, 1, 7))]})
    [muted] = events_from_findings(inventory, works, frame, [leak])
    assert (plain.excess_m3, plain.observed, plain.expected) == (60 * 20.0, 60 * 30.0, 60 * 10.0)
    # 7 January in Paris is 6 January 23:00 to 7 January 23:00 UTC: hours 23 to 46 of the frame.
    assert (muted.excess_m3, muted.observed, muted.expected) == (36 * 20.0, 36 * 30.0, 36 * 10.0)
    assert muted.start == plain.start
