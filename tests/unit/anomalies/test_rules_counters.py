"""Stuck counters told by their catch-up: the jump when a stuck index moves again.

Synthetic series through a one-building inventory and :func:`anomalies.detect.detect`: no simulator, no servers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from anomalies.detect import DetectConfig, detect
from anomalies.events import AnomalyEvent
from anomalies.features import PointSeries
from inventory import parse_inventory

from .one_building import OUTDOOR, one_building_yaml

GAS = """          - {id: b1-gas, quantity: gas_volume, unit: m3, usage: heating, cumulative: true,
             conversion_kwh_per_unit: 10.0, mqtt: {topic: t/b1/gas}}
"""
START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
HOUR_S = 3600.0
DAYS = 42
SATURDAY = START + timedelta(days=33)  # the fifth Saturday


def _heating(weekend_off: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times, hourly gas (m3) and outdoor (°C) of a school heated in winter: 2.5 m3/h open, 1.2 m3/h set back,
    a 4 m3/h boost on Monday mornings; with ``weekend_off`` the boiler stops from Saturday to Monday 05:00."""
    times = START.timestamp() + HOUR_S * np.arange(24 * DAYS + 1, dtype=np.float64)
    hours = times[:-1]
    rng = np.random.default_rng(3)
    day = np.floor((hours - hours[0]) / 86_400.0).astype(int)
    hour = (hours / HOUR_S) % 24
    weekday = day % 7
    outdoor = 4.0 + 3.0 * np.sin(day / 4.0) + 3.0 * np.cos(2.0 * np.pi * (hour - 15.0) / 24.0)
    is_open = (weekday < 5) & (hour >= 7) & (hour < 17)
    gas = np.where(is_open, 2.5, 1.2) * (1.0 + 0.1 * rng.random(hours.size))
    gas = np.where((weekday == 0) & (hour >= 5) & (hour < 7), 4.0, gas)
    if weekend_off:
        gas = np.where(weekday >= 5, 0.0, gas)
    return times, gas, np.concatenate([outdoor, outdoor[-1:]])


def _stale(times: np.ndarray, gas: np.ndarray, outdoor: np.ndarray) -> list[AnomalyEvent]:
    inventory = parse_inventory(one_building_yaml(OUTDOOR + GAS))
    readings = {
        "b1-gas": PointSeries(times, np.concatenate([[500.0], 500.0 + np.cumsum(gas)])),
        "b1-outdoor": PointSeries(times, outdoor),
    }
    return [e for e in detect(inventory, readings, DetectConfig(models=False)) if e.kind == "stale_counter"]


def test_gas_counter_stuck_over_a_weekend_closure_is_found_by_its_catch_up() -> None:
    """Stuck 25 h from Saturday 06:00, when a closed building's heater may coast and stillness proves nothing;
    on Sunday 07:00 the index jumps by the 25 h it missed, far above any hour before: one event from Saturday."""
    times, gas, outdoor = _heating(weekend_off=False)
    stuck = int((SATURDAY + timedelta(hours=6) - START) / timedelta(hours=1))
    resumes = stuck + 25
    gas[resumes] += gas[stuck:resumes].sum()
    gas[stuck:resumes] = 0.0
    events = _stale(times, gas, outdoor)
    assert len(events) == 1, [(e.point, e.start, e.end) for e in events]
    assert events[0].point == "b1-gas"
    assert events[0].start == START + timedelta(hours=stuck)
    assert events[0].detected_at <= START + timedelta(hours=resumes + 1)


def test_boiler_stopped_every_weekend_restarting_at_its_usual_rate_is_no_stuck_counter() -> None:
    """The boiler switched off every weekend: still for two days, then Monday's boost, as every Monday: no event."""
    times, gas, outdoor = _heating(weekend_off=True)
    assert _stale(times, gas, outdoor) == []
