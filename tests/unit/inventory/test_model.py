from __future__ import annotations

from inventory import Point, Usage


def test_a_meter_serving_several_usages_can_key_a_set() -> None:
    # The MQTT publisher and the collectors key dicts by point: a dict field must not break that.
    point = Point(id="gaz", quantity="gas_volume", unit="m3", usage="heating", cumulative=True,
                  conversion_kwh_per_unit=11.2, mqtt={"topic": "t/gaz"}, serves=["dhw"],
                  split={"heating": 0.8, "dhw": 0.2})
    assert {point: 1}[point] == 1
    assert point.serves == (Usage.DHW,)


def test_opening_hours_may_end_at_24_00_as_a_timetable_writes_midnight() -> None:
    """A hall open until midnight is written "18:00-24:00" (it was refused as no time of day); the same as 00:00."""
    from datetime import time

    from inventory.model import TimeRange

    evening = TimeRange.model_validate("18:00-24:00")
    assert evening == TimeRange.model_validate("18:00-00:00")
    assert evening.contains(time(23, 59))
    assert not evening.contains(time(17, 59))
    assert TimeRange.model_validate("00:00-24:00").contains(time(3))  # a care home, day and night
