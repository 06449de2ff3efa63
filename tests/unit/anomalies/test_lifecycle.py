from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from anomalies.events import AlertState
from anomalies.lifecycle import AlertLifecycle, LifecycleConfig
from inventory import MuteWindow

KEY = ("mairie", "water", "water_leak", "")
T0 = datetime(2026, 3, 2, tzinfo=UTC)


def _run(life: AlertLifecycle, states: list[bool | None]) -> list[tuple[AlertState, int]]:
    out = []
    for h, active in enumerate(states):
        t = life.observe(KEY, T0 + timedelta(hours=h), active)
        if t is not None:
            out.append((t.state, h))
    return out


def test_short_blip_never_opens() -> None:
    life = AlertLifecycle(LifecycleConfig(min_duration=timedelta(hours=3), clear_after=timedelta(hours=2)))
    assert _run(life, [True, True, False, False, False, False]) == []


def test_flapping_is_one_alert_resolved_once() -> None:
    life = AlertLifecycle(LifecycleConfig(min_duration=timedelta(hours=3), clear_after=timedelta(hours=4)))
    states: list[bool | None] = [h % 3 != 2 for h in range(30)] + [False] * 6
    assert _run(life, states) == [(AlertState.OPEN, 3), (AlertState.ONGOING, 4), (AlertState.RESOLVED, 33)]


def test_unknown_hours_neither_extend_nor_resolve() -> None:
    life = AlertLifecycle(LifecycleConfig(min_duration=timedelta(hours=1), clear_after=timedelta(hours=2)))
    assert _run(life, [True, None, None, None, None, True]) == [(AlertState.OPEN, 0), (AlertState.RESOLVED, 5)]


def test_mute_window_silences_a_building() -> None:
    mutes = {"mairie": [MuteWindow(start=date(2026, 3, 2), end=date(2026, 3, 2), reason="travaux chaufferie")]}
    life = AlertLifecycle(LifecycleConfig(min_duration=timedelta(hours=2)), mutes=mutes)
    assert _run(life, [True] * 10) == []
    assert life.muted("mairie", T0)
    assert not life.muted("mairie", T0 + timedelta(days=1))


def test_close_resolves_quiet_alerts() -> None:
    life = AlertLifecycle(LifecycleConfig(min_duration=timedelta(hours=1), clear_after=timedelta(hours=2)))
    _run(life, [True, True])
    assert [t.state for t in life.open_alerts()] == [AlertState.ONGOING]
    assert [t.state for t in life.close(T0 + timedelta(hours=10))] == [AlertState.RESOLVED]


def test_pending_blips_days_apart_are_forgotten_but_an_open_alert_outlasts_a_weekend() -> None:
    """``forget_pending_after``: two 3-hour blips 70 h apart never open a 4-hour alert; an open one quiet 62 h stays."""
    config = LifecycleConfig(min_duration=timedelta(hours=4), clear_after=timedelta(hours=72),
                             forget_pending_after=timedelta(hours=48))
    blips: list[bool | None] = [True] * 3 + [False] * 67 + [True] * 3 + [False] * 80
    assert _run(AlertLifecycle(config), blips) == []
    # Without the shorter limit the blips add up.
    assert _run(AlertLifecycle(config.model_copy(update={"forget_pending_after": None})), blips)[0] == (AlertState.OPEN, 70)
    # Open on Friday, quiet through the weekend (62 h), active again on Monday: one alert.
    week: list[bool | None] = [True] * 10 + [False] * 62 + [True] * 10 + [False] * 73
    assert _run(AlertLifecycle(config), week) == [(AlertState.OPEN, 3), (AlertState.ONGOING, 4), (AlertState.RESOLVED, 154)]


def test_an_open_alert_outlasting_a_mute_window_stays_one_alert() -> None:
    """Works muted two days (``mute:``) while an open fault goes on: no resolution at their end, no second alert.

    The muted hours are not quiet hours: a fault that stopped during the works resolves ``clear_after``
    after their end.
    """
    mutes = {"mairie": [MuteWindow(start=date(2026, 3, 3), end=date(2026, 3, 4), reason="travaux chaufferie")]}
    config = LifecycleConfig(min_duration=timedelta(hours=3), clear_after=timedelta(hours=24))
    life = AlertLifecycle(config, mutes=mutes, timezone=ZoneInfo("UTC"))  # muted hours 24 to 71
    goes_on: list[bool | None] = [True] * 96 + [False] * 30
    assert _run(life, goes_on) == [(AlertState.OPEN, 2), (AlertState.ONGOING, 3), (AlertState.RESOLVED, 120)]
    life = AlertLifecycle(config, mutes=mutes, timezone=ZoneInfo("UTC"))
    stops_in_the_works: list[bool | None] = [True] * 30 + [False] * 70
    assert _run(life, stops_in_the_works) == [(AlertState.OPEN, 2), (AlertState.ONGOING, 3), (AlertState.RESOLVED, 96)]
    assert life.close(T0 + timedelta(hours=100)) == []
