"""A meter serving heating and hot water with a learnt split: the expected model and the forest judge the whole meter.

The learnt split (:func:`anomalies.features.usage_shares`) is a weather model
itself, refitted as days go by; everything goes to heating until it has seen
enough weather. A model of its heating share models a model's output: its
residual holds the split's changes of mind. The whole meter is what was
measured. Uses the school of ``test_main_meter`` (one gas meter, ``serves: [dhw]``).
"""

from __future__ import annotations

from datetime import UTC

import numpy as np
import pytest

from anomalies.detect import DetectConfig, judged_series, run_models
from anomalies.features import BuildingHours, HourlyFrame, PointSeries
from inventory import FrenchCalendar, Inventory, Usage, parse_inventory

from .test_main_meter import INVENTORY, START, _generate

DAYS = 70


@pytest.fixture(scope="module")
def generated() -> tuple[dict[str, PointSeries], np.ndarray]:
    return _generate()


def _hours(inventory: Inventory, readings: dict[str, PointSeries]) -> BuildingHours:
    start_s = START.astimezone(UTC).timestamp()
    cut = start_s + DAYS * 86_400.0
    short = {k: PointSeries(s.times_s[s.times_s <= cut], s.values[s.times_s <= cut]) for k, s in readings.items()}
    frame = HourlyFrame.build(short, counters={"gaz"}, start_s=start_s, hours=DAYS * 24)
    building = next(b for _, b in inventory.buildings())
    return BuildingHours.build(inventory, building, frame, FrenchCalendar("B"))


def test_the_heating_model_judges_the_whole_gas_meter(generated: tuple[dict[str, PointSeries], np.ndarray]) -> None:
    readings, kwh = generated
    hours = _hours(parse_inventory(INVENTORY), readings)
    split = hours.usages[Usage.HEATING].values
    learnt = np.isfinite(split) & (split < 0.99 * kwh[: split.size])
    assert learnt.sum() > 24 * 20  # the split has been learnt: heating is a share of the meter
    runs = {r.usage: r for r in run_models(hours, np.zeros(hours.frame.hours, dtype=np.bool_), DetectConfig())}
    heating = runs[Usage.HEATING]
    assert heating.observed is not None
    np.testing.assert_allclose(heating.observed, kwh[: split.size], rtol=1e-6)
    np.testing.assert_allclose(heating.residual, heating.observed - heating.expected, rtol=1e-9)
    # Hot water, a share of another usage's meter, keeps its own series (expected values for reports only).
    dhw = runs[Usage.DHW]
    assert dhw.observed is not None
    np.testing.assert_array_equal(dhw.observed, hours.usages[Usage.DHW].values)


def test_a_declared_split_stays_a_share(generated: tuple[dict[str, PointSeries], np.ndarray]) -> None:
    """A declared split is a fixed share of the meter, not a model: the usage is judged on its share."""
    readings, kwh = generated
    declared = INVENTORY.replace("serves: [dhw]", "serves: [dhw]\n      split: {heating: 0.8, dhw: 0.2}")
    hours = _hours(parse_inventory(declared), readings)
    series = judged_series(hours, Usage.HEATING)
    np.testing.assert_allclose(series.values, 0.8 * kwh[: series.values.size], rtol=1e-6)
