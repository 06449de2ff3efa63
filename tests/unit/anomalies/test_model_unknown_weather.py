"""A week of excess heating while the weather station is silent for days (issue 11, family B 2026/181).

The school of ``test_main_meter`` (a main gas meter and an outdoor
temperature) and the generator of ``test_model_guards``: six weeks of autumn,
a cool spell in the last ten days as cold as the coldest day of the weeks
before, and the station silent for four days of the last week. Without a
temperature in its 24 hours an hour had no expected value, so neither the
forest nor the days' test could see anything there; it is now expected at the
coldest day of the four weeks before the silence, an excess claimed only above
even that.
"""

from __future__ import annotations

from datetime import UTC, timedelta

import numpy as np
import pytest

from anomalies.detect import DetectConfig, ModelProgress, ModelRun, detect, run_models
from anomalies.events import AnomalyEvent, explain
from anomalies.features import BuildingHours, HourlyFrame, PointSeries
from inventory import FrenchCalendar, Inventory, Usage, parse_inventory

from .test_main_meter import INVENTORY
from .test_model_guards import DAYS, LAST_WEEK, START, _autumn, _generate

SILENT = (LAST_WEEK[0] + 24, LAST_WEEK[0] + 5 * 24)  # 4 days of the last week's 7


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return parse_inventory(INVENTORY)


def _silenced(readings: dict[str, PointSeries], silent: tuple[int, int] = SILENT) -> dict[str, PointSeries]:
    """The weather station's readings without those of the silent hours."""
    meteo = readings["meteo"]
    lo, hi = (START.astimezone(UTC).timestamp() + 3600.0 * h for h in silent)
    keep = (meteo.times_s < lo) | (meteo.times_s >= hi)
    return {**readings, "meteo": PointSeries(meteo.times_s[keep], meteo.values[keep])}


def _week(factor: float) -> dict[str, PointSeries]:
    daily_c = _autumn()
    daily_c[DAYS - 10 :] = daily_c.min()  # a cool spell, as cold as the coldest day before it
    n = DAYS * 24
    heating = np.where(np.arange(n) >= LAST_WEEK[0], factor, 1.0)
    return _silenced(_generate(daily_c, np.zeros(n), heating_factor=heating))


def _known(values: np.ndarray | None) -> np.ndarray:
    assert values is not None
    return values


def _in_last_week(events: list[AnomalyEvent]) -> list[AnomalyEvent]:
    lo = START.astimezone(UTC).timestamp() + LAST_WEEK[0] * 3600.0
    return [e for e in events if e.kind == "unusual_consumption" and e.end.timestamp() > lo]


def test_a_week_of_excess_heating_while_the_station_is_silent_is_found(inventory: Inventory) -> None:
    """+30 % heating for a week, the station silent for 4 of its days: one alert through them, saying so.

    Before, the alert (from the first day's hours, each above its expected
    value by its own size) ended before the silence, and the silent days were
    never seen nor counted. Expected at the coldest day of the four weeks
    before, they stand out of the model's uncertainty by their days, so the
    alert runs through them and counts their excess over that bound.
    """
    found = _in_last_week(detect(inventory, _week(1.3), DetectConfig(rule_events=False)))
    lo, hi = (START.astimezone(UTC).timestamp() + 3600.0 * h for h in SILENT)
    through = [e for e in found if e.start.timestamp() < lo and e.end.timestamp() >= hi - 3600.0]
    assert through, [(e.start, e.end) for e in found]
    text = explain(through[0], "en")
    assert "outdoor temperature unknown for 4\u00a0days: expected at the coldest of the last 4 weeks, 8\u00a0°C" in text, text
    assert "température extérieure inconnue depuis 4\u00a0jours\u00a0: attendu au plus froid des 4 dernières semaines" in (
        explain(through[0], "fr"))
    # The excess is counted over the bounded expected values: under what a known, milder weather would give.
    assert through[0].excess_kwh is not None
    assert 0 < through[0].excess_kwh <= through[0].observed - through[0].expected + 1e-6


def test_the_same_silent_days_without_excess_raise_nothing(inventory: Inventory) -> None:
    """The same weeks and silence without the excess: the silent days are under their bounded expected value."""
    assert _in_last_week(detect(inventory, _week(1.0), DetectConfig())) == []


def test_the_silent_days_are_expected_for_an_excess_only_and_fit_nothing(inventory: Inventory) -> None:
    """The bounded values stay out of the expected series and of every fit and reference.

    Their hours have no value in ``expected`` (Grafana's series, the reports),
    a bounded one in ``bounded`` and the residual, a forest score; and what the
    bounded hours consumed changes nothing after them: the same expected values,
    forest scores and day bounds with +30 % on them as without (the first 23
    silent hours, expected from the temperatures their 24 hours hold, are
    ordinary hours).
    """
    n = DAYS * 24
    hour = np.arange(n)
    lo, hi = 20 * 24, 24 * 24  # silent days with forest refits after them (weekly here)
    config = DetectConfig(refit_every=timedelta(days=7))

    def run(factor: float) -> ModelRun:
        factors = np.where((hour >= lo + 23) & (hour < hi), factor, 1.0)
        readings = _silenced(_generate(_autumn(), np.zeros(n), heating_factor=factors), (lo, hi))
        frame = HourlyFrame.build(readings, counters={"gaz"}, start_s=START.astimezone(UTC).timestamp(), hours=n)
        building = next(b for _, b in inventory.buildings())
        hours = BuildingHours.build(inventory, building, frame, FrenchCalendar("B"))
        return next(r for r in run_models(hours, np.zeros(n, dtype=bool), config) if r.usage is Usage.HEATING)

    plain, excess = run(1.0), run(1.3)
    given, observed, bound_c = _known(excess.bounded), _known(excess.observed), _known(excess.weather_bound_c)
    bounded = np.isfinite(given)
    # From the station's 24th silent hour to its last; before, the hours use the temperatures their 24 hours hold.
    assert np.array_equal(np.flatnonzero(bounded), np.arange(lo + 23, hi))
    assert np.isfinite(excess.expected[lo : lo + 23]).all()
    assert np.isnan(excess.expected[bounded]).all()
    assert np.isfinite(excess.scores[bounded]).all()  # scored as if the bound had been the weather
    assert np.allclose(excess.residual[bounded], observed[bounded] - given[bounded])
    assert np.isfinite(bound_c[bounded]).all()
    assert np.isnan(bound_c[~bounded]).all()
    after = slice(hi, n)
    # The same up to rounding (a refit's sums run over a year of days, these ones included as unusable).
    assert np.allclose(plain.expected[after], excess.expected[after], rtol=1e-9, atol=0.0, equal_nan=True)
    assert np.allclose(plain.scores[after], excess.scores[after], rtol=1e-9, atol=0.0, equal_nan=True)
    assert np.array_equal(plain.flagged[after], excess.flagged[after], equal_nan=True)
    assert np.allclose(_known(plain.day_bound)[after], _known(excess.day_bound)[after], rtol=1e-9, atol=0.0,
                       equal_nan=True)
    assert np.isfinite(_known(plain.day_bound)[after]).any()
    assert excess.fits > 2  # the forest was fitted again after the silence
    assert np.isfinite(plain.scores[after]).any()


def test_a_run_resumed_in_the_silence_gives_the_one_pass_s_values(inventory: Inventory) -> None:
    """A live pass resumed during the silence (its models kept) gives the values of one pass over the whole history."""
    n = DAYS * 24
    readings = _week(1.3)
    start_s = START.astimezone(UTC).timestamp()
    building = next(b for _, b in inventory.buildings())

    def hours_to(k: int) -> BuildingHours:
        cut = start_s + 3600.0 * k
        short = {p: PointSeries(s.times_s[s.times_s <= cut], s.values[s.times_s <= cut]) for p, s in readings.items()}
        frame = HourlyFrame.build(short, counters={"gaz"}, start_s=start_s, hours=k)
        return BuildingHours.build(inventory, building, frame, FrenchCalendar("B"))

    def heating(runs: list[ModelRun]) -> ModelRun:
        return next(r for r in runs if r.usage is Usage.HEATING)

    whole = heating(run_models(hours_to(n), np.zeros(n, dtype=bool), DetectConfig()))
    progress: dict[Usage, ModelProgress] = {}
    k = SILENT[0] + 40  # a bounded hour, in the middle of a refit's week
    run_models(hours_to(k), np.zeros(k, dtype=bool), DetectConfig(), progress)
    resumed = heating(run_models(hours_to(n), np.zeros(n, dtype=bool), DetectConfig(), progress))
    assert np.isfinite(_known(whole.bounded)[k:]).any()
    for name in ("expected", "bounded", "residual", "scores", "day_residual", "day_bound"):
        assert np.array_equal(getattr(whole, name), getattr(resumed, name), equal_nan=True), name


@pytest.mark.parametrize(("mean_c", "cooling"), [(8.0, False), (25.0, True)])
def test_a_model_with_a_cooling_term_has_no_bounded_value(mean_c: float, cooling: bool) -> None:
    """The coldest day bounds a heating model from above; a cooling model draws more in hot weather: no bound."""
    from anomalies.expected import ExpectedConfig, ExpectedConsumption

    days = 35
    day_of = np.repeat(np.arange(days), 24)
    local_hour = np.tile(np.arange(24), days)
    outdoor = mean_c + 4.0 * np.sin(day_of / 3.0) + 3.0 * np.sin(2 * np.pi * (local_hour - 9) / 24)
    need = np.maximum(0.0, outdoor - 22.0) if cooling else np.maximum(0.0, 16.0 - outdoor)
    y = 1.0 + 2.0 * need + 0.01 * np.sin(np.arange(days * 24))
    outdoor[-72:] = np.nan  # the station silent for the last 3 days
    open_frac = np.where(((day_of % 7) < 5) & (local_hour >= 8) & (local_hour < 17), 1.0, 0.0)
    model = ExpectedConsumption(y, outdoor, open_frac, np.zeros(days * 24, dtype=bool), local_hour, day_of,
                                ExpectedConfig())
    assert model.refit(28 * 24, np.zeros(28 * 24, dtype=bool))
    assert model.last is not None
    assert (model.last.params.cooling_balance_c is not None) is cooling
    silent = np.isfinite(model.weather_bound_c)
    assert np.array_equal(np.flatnonzero(silent), np.arange(days * 24 - 49, days * 24))  # the 24th silent hour on
    bounded = model.predict_bounded(0, days * 24)
    assert np.isnan(model.predict(0, days * 24)[silent]).all()
    if cooling:
        assert np.isnan(bounded[silent]).all()
    else:
        # The coldest day (24-hour mean) before the silence: at most the coldest whole one, above the coldest hour.
        coldest = float(np.min([np.mean(outdoor[h - 23 : h + 1]) for h in range(23, days * 24 - 72)]))
        assert np.nanmin(outdoor) < model.weather_bound_c[-1] <= coldest + 1e-9
        assert np.isfinite(bounded[silent]).all()
        assert np.array_equal(bounded[~silent], model.predict(0, days * 24)[~silent], equal_nan=True)
