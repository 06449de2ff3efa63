"""A building with only a main gas meter and an outdoor temperature: the expected model and the forest detect.

The series come from a small generator of this test, not from the simulator:
heating proportional to the degree hours below 16 °C, at comfort from 06:00
to 17:00 on open days and in setback otherwise, plus hot water, with
multiplicative noise; the school closes in school holidays.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from anomalies.detect import MATERIAL_KINDS, DetectConfig, building_findings, detect, has_own_meter, run_models
from anomalies.events import AnomalyEvent
from anomalies.features import BuildingHours, HourlyFrame, PointSeries
from inventory import FrenchCalendar, Inventory, Usage, parse_inventory

TZ = ZoneInfo("Europe/Paris")
START = datetime(2025, 1, 1, tzinfo=TZ)
DAYS = 365
KWH_PER_M3 = 10.0

INVENTORY = """
organisation: {name: Test, population: 1000, timezone: Europe/Paris, school_holiday_zone: B}
mqtt_brokers:
- {id: default, host: 127.0.0.1, port: 1883}
sites:
- id: s
  name: Site
  buildings:
  - id: ecole
    name: École du test
    usage: school
    floor_area_m2: 1000
    heated_area_m2: 900
    schedule:
      weekly:
        mon: ['08:00-17:00']
        tue: ['08:00-17:00']
        wed: ['08:00-17:00']
        thu: ['08:00-17:00']
        fri: ['08:00-17:00']
      closed_on_school_holidays: true
    points:
    - id: gaz
      name: Compteur gaz
      quantity: gas_volume
      unit: m3
      usage: heating
      serves: [dhw]
      cumulative: true
      energy: natural_gas
      conversion_kwh_per_unit: 10.0
      mqtt: {topic: t/gaz}
    - id: meteo
      name: Température extérieure
      quantity: temperature
      unit: degC
      usage: weather
      mqtt: {topic: t/meteo}
"""

HOLIDAY_FAULT = (datetime(2025, 2, 15, tzinfo=TZ), datetime(2025, 2, 22, tzinfo=TZ))  # 2nd week of the winter holidays
PLUS_30 = (datetime(2025, 11, 17, tzinfo=TZ), datetime(2025, 11, 24, tzinfo=TZ))


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return parse_inventory(INVENTORY)


def _open(day: date, calendar: FrenchCalendar) -> bool:
    return day.weekday() < 5 and not calendar.is_school_holiday(day) and not calendar.is_public_holiday(day)


def _generate(seed: int = 4) -> tuple[dict[str, PointSeries], np.ndarray]:
    """Hourly gas index (m3) and outdoor temperature for a year, with the two faults; also the kWh per hour."""
    rng = np.random.default_rng(seed)
    calendar = FrenchCalendar("B")
    n = DAYS * 24
    start_s = START.astimezone(UTC).timestamp()
    times = start_s + 3600.0 * np.arange(n)
    local = [datetime.fromtimestamp(t, TZ) for t in times]
    doy = np.array([m.timetuple().tm_yday for m in local], dtype=np.float64)
    hod = np.array([m.hour for m in local], dtype=np.float64)
    weather = np.zeros(n)
    for i in range(1, n):  # weather fronts: an AR(1) anomaly of a few degrees
        weather[i] = 0.995 * weather[i - 1] + rng.normal(0, 0.3)
    outdoor = 11.0 - 8.0 * np.cos(2 * np.pi * (doy - 20) / 365) + 3.5 * np.sin(2 * np.pi * (hod - 9) / 24) + weather
    need = np.maximum(0.0, 16.0 - outdoor)
    is_open = np.array([_open(m.date(), calendar) for m in local])
    comfort = is_open & (hod >= 6) & (hod < 17)
    holiday_fault = np.array([HOLIDAY_FAULT[0] <= m < HOLIDAY_FAULT[1] for m in local]) & (hod >= 6) & (hod < 17)
    heating = np.where(comfort | holiday_fault, 3.0 * need + 4.0 * (need > 0), 0.8 * need)
    dhw = np.where(is_open & (hod >= 7) & (hod < 18), 2.0, 0.3)
    kwh = (heating + dhw) * (1 + rng.normal(0, 0.08, n)).clip(0.5)
    kwh = np.where(np.array([PLUS_30[0] <= m < PLUS_30[1] for m in local]), 1.3 * kwh, kwh)
    index = np.concatenate([[1000.0], 1000.0 + np.cumsum(kwh / KWH_PER_M3)])
    index_times = start_s + 3600.0 * np.arange(n + 1)
    readings = {
        "gaz": PointSeries(index_times, index),
        "meteo": PointSeries(times + 600.0, outdoor + rng.normal(0, 0.1, n)),
    }
    return readings, kwh


@pytest.fixture(scope="module")
def readings() -> dict[str, PointSeries]:
    return _generate()[0]


@pytest.fixture(scope="module")
def events(inventory: Inventory, readings: dict[str, PointSeries]) -> list[AnomalyEvent]:
    return detect(inventory, readings, DetectConfig())


def _overlaps(event: AnomalyEvent, span: tuple[datetime, datetime]) -> bool:
    return event.start < span[1] and span[0] < event.end


def test_heating_kept_on_through_a_school_holiday_is_detected(events: list[AnomalyEvent]) -> None:
    # Found by the out-of-hours rule or the forest (a model alert is not raised over an open rule alert).
    hits = [e for e in events if _overlaps(e, HOLIDAY_FAULT) and e.usage == "heating"]
    assert hits, [(e.kind, e.start) for e in events]
    assert any(e.kind in {"unusual_consumption", "consumption_unoccupied"} and e.excess_kwh > 0 for e in hits)
    assert len(hits) == 1  # one fault, one episode across its nights


def test_a_week_of_30_percent_more_is_detected(events: list[AnomalyEvent]) -> None:
    hits = [e for e in events if _overlaps(e, PLUS_30)]
    assert any(e.kind == "unusual_consumption" and e.excess_kwh > 0 for e in hits), [(e.kind, e.start) for e in events]


def test_at_most_one_event_a_month_elsewhere(events: list[AnomalyEvent]) -> None:
    elsewhere = [e for e in events if not _overlaps(e, HOLIDAY_FAULT) and not _overlaps(e, PLUS_30)]
    per_month: dict[tuple[int, int], int] = {}
    for e in elsewhere:
        month = e.start.astimezone(TZ)
        per_month[month.year, month.month] = per_month.get((month.year, month.month), 0) + 1
    assert len(elsewhere) <= 12, [(e.kind, e.start.isoformat(), round(e.excess_kwh)) for e in elsewhere]
    assert max(per_month.values(), default=0) <= 2, per_month


def test_model_events_explain_which_residual_how_large_and_since_when(events: list[AnomalyEvent]) -> None:
    event = next(e for e in events if e.kind == "unusual_consumption" and _overlaps(e, PLUS_30))
    fr, en = event.explanation("fr"), event.explanation("en")
    for part in ("% above expected", "since", "kWh"):  # English writes 60%
        assert part in en
    for part in ("\u00a0% à l'attendu", "depuis"):
        assert part in fr
    for internal in ("iforest", "isolation", "residual"):
        assert internal not in en.lower()


def _hours(inventory: Inventory, readings: dict[str, PointSeries], days: int) -> BuildingHours:
    cut = START.astimezone(UTC).timestamp() + days * 86_400.0
    short = {k: PointSeries(s.times_s[s.times_s <= cut], s.values[s.times_s <= cut]) for k, s in readings.items()}
    frame = HourlyFrame.build(short, counters={"gaz"}, start_s=START.astimezone(UTC).timestamp(), hours=days * 24)
    building = next(b for _, b in inventory.buildings())
    return BuildingHours.build(inventory, building, frame, FrenchCalendar("B"))


def test_forest_fits_from_day_14_although_rules_blanked_hours(inventory: Inventory, readings: dict[str, PointSeries]) -> None:
    hours = _hours(inventory, readings, 35)
    excluded = np.zeros(hours.frame.hours, dtype=np.bool_)
    for day in range(1, 35, 7):  # two days a week flagged by rules (28 % of the hours), from the first week
        excluded[day * 24 : (day + 2) * 24] = True
    run = next(r for r in run_models(hours, excluded, DetectConfig()) if r.usage is Usage.HEATING)
    first = int(np.flatnonzero(np.isfinite(run.scores))[0])
    assert first == 14 * 24
    assert run.fits >= 1
    assert run.expected_fits >= 1


def test_refits_continue_while_an_alert_is_open(inventory: Inventory, readings: dict[str, PointSeries]) -> None:
    hours = _hours(inventory, readings, 120)
    excluded = np.zeros(hours.frame.hours, dtype=np.bool_)
    excluded[30 * 24 : 110 * 24] = True  # an alert open from day 30 to day 110: those hours are never reference
    run = next(r for r in run_models(hours, excluded, DetectConfig()) if r.usage is Usage.HEATING)
    # Forest every 28 days from day 14 (14, 42, 70, 98) and expected model every week (15 refits): none skipped.
    assert run.fits == 4
    assert run.expected_fits == len(range(14 * 24, 120 * 24, 7 * 24))
    assert np.isfinite(run.scores[14 * 24 :]).mean() > 0.95


def test_feature_rows_from_a_start_are_those_of_the_whole_series(inventory: Inventory, readings: dict[str, PointSeries]) -> None:
    # run_models builds each refit block's rows alone: they must be the rows of the whole series, bit for bit.
    from anomalies.features import FEATURE_LOOKBACK, build_features

    hours = _hours(inventory, readings, 60)
    usage = next(iter(hours.usages))
    n = hours.frame.hours
    expected = np.random.default_rng(3).gamma(2.0, 5.0, size=n)
    expected[200:230] = np.nan  # a gap in the expected values, as before a model's first fit
    whole = build_features(hours, usage, expected)
    for start, stop in [(0, 500), (FEATURE_LOOKBACK - 5, 700), (600, 900), (1000, n)]:
        part = build_features(hours, usage, expected[:stop], start=start)
        assert part.shape == (stop - start, whole.shape[1])
        assert np.array_equal(part, whole[start:stop], equal_nan=True), (start, stop)


def test_thirty_percent_more_for_a_week_is_one_alert(events: list[AnomalyEvent]) -> None:
    """The fault hides in the noise for a day: the model alert bridges it (``model_clear_after``)."""
    hits = [e for e in events if _overlaps(e, PLUS_30)]
    assert [e.kind for e in hits] == ["unusual_consumption"], [(e.kind, e.start, e.end) for e in hits]


def test_no_trivial_consumption_alert(events: list[AnomalyEvent]) -> None:
    """An alert is worth an advisor's time: never a few kWh over days on a building burning ~140 kWh a day."""
    consumption = [e for e in events if e.kind in {k.value for k in MATERIAL_KINDS}]
    assert consumption
    assert min(e.excess_kwh for e in consumption) >= 10.0, [(e.kind, e.start, e.excess_kwh) for e in consumption]


def test_a_learnt_share_of_the_gas_meter_raises_no_model_alert(inventory: Inventory,
                                                               readings: dict[str, PointSeries]) -> None:
    """Hot water is only a learnt share of the heating gas meter: no model events of its own, but an expected series."""
    days = 60
    cut = START.astimezone(UTC).timestamp() + days * 86_400.0
    short = {k: PointSeries(s.times_s[s.times_s <= cut], s.values[s.times_s <= cut]) for k, s in readings.items()}
    frame = HourlyFrame.build(short, counters={"gaz"}, start_s=START.astimezone(UTC).timestamp(), hours=days * 24)
    building = next(b for _, b in inventory.buildings())
    found = building_findings(inventory, building, short, frame, FrenchCalendar("B"), DetectConfig())
    assert {f.usage for f in found.models} == {Usage.HEATING}
    assert {s.usage for s in found.expected} == {Usage.HEATING, Usage.DHW}
    assert has_own_meter(building, BuildingHours.build(inventory, building, frame, FrenchCalendar("B")).usages[Usage.HEATING])


# At local midnight (UTC+1), and at 7:00 on a school day, before it opens: the day is known open from its schedule.
@pytest.mark.parametrize("cut", [30 * 24 - 1, 49 * 24 - 1, 36 * 24 + 6])
def test_expected_model_and_forest_are_causal(inventory: Inventory, readings: dict[str, PointSeries], cut: int) -> None:
    """run_models on the hours up to h gives, for those hours, what it gives on the whole series (models on).

    The whole series holds the two faults after h (the holiday week, 15 Feb) or not: whatever follows h, the
    expected values, the forest's scores and flags and the beyond-the-fit hours before h are the same, bit for bit.
    A day's type (open, closed, holiday) comes from its whole day's schedule, so a frame cut at 7:00 expects the
    day's first hours as an open day's, as the whole series does.
    """
    days = 70
    start_s = START.astimezone(UTC).timestamp()
    building = next(b for _, b in inventory.buildings())

    def hours_up_to(n: int) -> BuildingHours:
        end = start_s + n * 3600.0
        short = {k: PointSeries(s.times_s[s.times_s <= end], s.values[s.times_s <= end]) for k, s in readings.items()}
        frame = HourlyFrame.build(short, counters={"gaz"}, start_s=start_s, hours=n)
        return BuildingHours.build(inventory, building, frame, FrenchCalendar("B"))

    whole = {r.usage: r for r in run_models(hours_up_to(days * 24), np.zeros(days * 24, dtype=np.bool_), DetectConfig())}
    part = {r.usage: r for r in run_models(hours_up_to(cut), np.zeros(cut, dtype=np.bool_), DetectConfig())}
    assert set(part) == set(whole)
    assert np.isfinite(part[Usage.HEATING].scores).any()  # the forest did run (hot water is a learnt share: none)
    for usage, run in part.items():
        full = whole[usage]
        assert np.isfinite(run.expected).any(), usage
        for name in ("expected", "scores", "flagged", "residual", "ratio", "beyond_fit"):
            assert np.array_equal(getattr(run, name), getattr(full, name)[:cut], equal_nan=name != "beyond_fit"), name


def test_without_model_events_the_forest_still_runs_and_feeds_the_closure_gate(
    inventory: Inventory, readings: dict[str, PointSeries],
) -> None:
    """``--no-model-events`` still fits the forest, whose flags ``consumption_unoccupied`` waits for; ``--no-models`` not.

    So "rules alone" in the bench (``--no-model-events``) is rules corroborated by the forest (README, "Anomalies").
    """
    days = 30
    cut = START.astimezone(UTC).timestamp() + days * 86_400.0
    short = {k: PointSeries(s.times_s[s.times_s <= cut], s.values[s.times_s <= cut]) for k, s in readings.items()}
    frame = HourlyFrame.build(short, counters={"gaz"}, start_s=START.astimezone(UTC).timestamp(), hours=days * 24)
    building = next(b for _, b in inventory.buildings())
    quiet = building_findings(inventory, building, short, frame, FrenchCalendar("B"), DetectConfig(model_events=False))
    assert quiet.models == []
    assert any(np.isfinite(f).any() for f in quiet.flagged.values())
    off = building_findings(inventory, building, short, frame, FrenchCalendar("B"), DetectConfig(models=False))
    assert off.flagged == {}
    # The witness is an hour flagged *above* expected: an hour the building drew less than usual is none,
    # though the forest flags such hours too.
    runs = run_models(BuildingHours.build(inventory, building, frame, FrenchCalendar("B"), DetectConfig().features),
                      np.zeros(frame.hours, dtype=bool), DetectConfig())
    assert any(((run.flagged == 1.0) & (run.residual < 0)).any() for run in runs)
    witnessed = 0
    for series in quiet.expected:
        witness = quiet.flagged[series.usage]
        above = series.observed > series.expected  # False where the expected value is unknown (nan)
        assert not ((witness == 1.0) & ~above).any()
        witnessed += int((witness == 1.0).sum())
    assert witnessed > 0
