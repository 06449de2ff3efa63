from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from anomalies.alerts import anomaly_line
from anomalies.events import _sample_event, excess_cost
from inventory import Energy, load_inventory

ROOT = Path(__file__).resolve().parents[3]


def test_excess_cost_uses_tariffs_and_factors() -> None:
    inv = load_inventory(ROOT / "examples" / "commune.yaml")
    gas = excess_cost(inv, Energy.NATURAL_GAS, "kWh", 100.0)
    assert (gas.kwh, gas.eur, gas.kgco2e) == pytest.approx((100.0, 11.0, 22.7))
    water = excess_cost(inv, Energy.WATER, "m3", 10.0)
    assert (water.kwh, water.m3, water.eur) == pytest.approx((0.0, 10.0, 43.0))
    assert excess_cost(inv, Energy.ELECTRICITY, "kWh", -5.0).eur == 0.0


def test_json_record_has_the_required_fields() -> None:
    record = json.loads(json.dumps(_sample_event().to_json("en")))
    required = ("building", "usage", "kind", "start", "end", "score", "excess_kwh", "excess_eur", "excess_kgco2e", "explanation")
    assert set(required) <= set(record)
    assert record["start"] == "2026-01-10T17:00:00+00:00"


def test_explanations_in_both_languages() -> None:
    event = _sample_event()
    assert event.explanation("fr").startswith("Gymnase Batum\u00a0: le chauffage a maintenu le confort (19,2\u00a0°C")
    assert "sam. 10/01 18:00 → lun. 12/01 06:00" in event.explanation("fr")
    assert "+412\u00a0kWh of heat ≈ 45\u00a0€ ≈ 94\u00a0kgCO₂e" in event.explanation("en")


def test_influx_line_tags_fields_and_time() -> None:
    event = replace(_sample_event(), facts={"indoor_c": 19.2})
    line = anomaly_line(event, "en")
    head, fields, stamp = line.split(" ", 1)[0], line.split(" ", 1)[1].rsplit(" ", 1)[0], line.rsplit(" ", 1)[1]
    assert head == "anomaly,building=gymnase-batum,kind=heating_unoccupied,usage=heating"
    assert "excess_kwh=412.0" in fields
    assert 'explanation="Gymnase Batum: heating kept' in fields
    assert f"end_ms={int(event.end.timestamp() * 1000)}i" in fields
    assert fields.endswith('state="open"')
    assert int(stamp) == int(event.start.timestamp() * 1000)
