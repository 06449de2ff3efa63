from __future__ import annotations

from inventory import Point, Usage


def test_a_meter_serving_several_usages_can_key_a_set() -> None:
    # The MQTT publisher and the collectors key dicts by point: a dict field must not break that.
    point = Point(id="gaz", quantity="gas_volume", unit="m3", usage="heating", cumulative=True,
                  conversion_kwh_per_unit=11.2, mqtt={"topic": "t/gaz"}, serves=["dhw"],
                  split={"heating": 0.8, "dhw": 0.2})
    assert {point: 1}[point] == 1
    assert point.serves == (Usage.DHW,)
