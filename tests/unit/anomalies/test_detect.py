"""Rules end to end on six simulated winter weeks with one fault of each kind the rules see quickly."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from anomalies.detect import DetectConfig, detect, read_readings_csv
from anomalies.events import AnomalyEvent
from anomalies.features import PointSeries
from econome.cli_detect import register
from inventory import Inventory, load_inventory
from simulator.export import write_readings_csv
from simulator.faults import Fault, FaultKind
from simulator.physics import generate_history
from streams.errors import DecodeError

ROOT = Path(__file__).resolve().parents[3]
START = datetime(2026, 1, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return load_inventory(ROOT / "examples" / "commune.yaml")


def _faults(inv: Inventory) -> list[Fault]:
    tz = inv.organisation.tz
    return [
        Fault(kind=FaultKind.HEATING_LEFT_ON, building="gymnase-batum",
              start=datetime(2026, 1, 24, 20, tzinfo=tz), end=datetime(2026, 1, 26, 4, tzinfo=tz)),
        Fault(kind=FaultKind.SETPOINT_RAISED, building="creche", start=datetime(2026, 2, 2, 0, tzinfo=tz),
              end=datetime(2026, 2, 9, tzinfo=tz), params={"delta_c": 3.0}),
        Fault(kind=FaultKind.LIGHTING_LEFT_ON, building="ecole-jaures",
              start=datetime(2026, 1, 28, 19, tzinfo=tz), end=datetime(2026, 1, 30, 7, tzinfo=tz)),
        Fault(kind=FaultKind.WATER_LEAK, building="mairie", start=datetime(2026, 2, 3, 10, tzinfo=tz),
              end=datetime(2026, 2, 10, tzinfo=tz), params={"flow_m3_per_h": 0.1}),
        Fault(kind=FaultKind.STUCK_COUNTER, building="bibliotheque", point="bibliotheque-elec-energy",
              start=datetime(2026, 1, 20, 9, tzinfo=tz), end=datetime(2026, 1, 22, 9, tzinfo=tz)),
        Fault(kind=FaultKind.DEAD_SENSOR, building="atelier", point="atelier-atelier-temperature",
              start=datetime(2026, 1, 27, 9, tzinfo=tz), end=datetime(2026, 1, 29, 9, tzinfo=tz), params={"mode": "silent"}),
        Fault(kind=FaultKind.DEAD_SENSOR, building="ecole-pasteur", point="ecole-pasteur-classes-co2",
              start=datetime(2026, 2, 4, 9, tzinfo=tz), end=datetime(2026, 2, 6, 9, tzinfo=tz), params={"mode": "frozen"}),
    ]


@pytest.fixture(scope="module")
def events(inventory: Inventory) -> list[AnomalyEvent]:
    history = generate_history(inventory, START, START + timedelta(days=42), timedelta(minutes=15), seed=11,
                               faults=_faults(inventory))
    seconds = history.times.astype("datetime64[ms]").astype(np.int64) / 1000.0
    readings = {
        pid: PointSeries(seconds[np.isfinite(col)], col[np.isfinite(col)])
        for pid, col in zip(history.point_ids, history.values.T, strict=True)
    }
    return detect(inventory, readings, DetectConfig(models=False))


EXPECTED = {
    ("gymnase-batum", "heating_unoccupied"),
    ("creche", "overheating"),
    ("ecole-jaures", "lighting_unoccupied"),
    ("mairie", "water_leak"),
    ("bibliotheque", "stale_counter"),
    ("atelier", "missing_data"),
    ("ecole-pasteur", "frozen_sensor"),
}


def test_each_fault_is_found_once_and_nothing_else(events: list[AnomalyEvent]) -> None:
    found = Counter((e.building, e.kind) for e in events)
    assert set(found) == EXPECTED, found
    assert all(count == 1 for key, count in found.items() if key[1] != "overheating"), found


def test_events_are_explained_and_priced(events: list[AnomalyEvent], inventory: Inventory) -> None:
    by_kind = {e.kind: e for e in events}
    heating = by_kind["heating_unoccupied"]
    assert heating.excess_kwh > 50
    assert heating.excess_eur > 5
    assert heating.excess_kgco2e > 10
    assert heating.detected_at - heating.start <= timedelta(hours=6)
    leak = by_kind["water_leak"]
    assert leak.excess_m3 > 1
    assert leak.excess_kwh == 0
    assert leak.excess_eur == pytest.approx(leak.excess_m3 * 4.3)
    assert "fuite" in leak.explanation("fr")
    assert "leak" in leak.explanation("en")
    stuck = by_kind["stale_counter"]
    assert stuck.point == "bibliotheque-elec-energy"
    assert stuck.start <= datetime(2026, 1, 20, 9, tzinfo=UTC)
    assert stuck.detected_at <= datetime(2026, 1, 20, 14, tzinfo=UTC)


def test_detect_command_writes_json_lines(tmp_path: Path, inventory: Inventory) -> None:
    csv = tmp_path / "readings.csv"
    write_readings_csv(inventory, csv, START, START + timedelta(days=3), seed=2, faults=[
        Fault(kind=FaultKind.DEAD_SENSOR, building="mairie", point="mairie-bureaux-temperature",
              start=START + timedelta(days=1), end=START + timedelta(days=2))])
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(app, ["detect", "--inventory", str(ROOT / "examples" / "commune.yaml"),
                                      "--readings", str(csv), "--out", str(out), "--no-models", "--language", "en"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["building"], r["kind"], r["point"]) for r in records] == [("mairie", "missing_data", "mairie-bureaux-temperature")]
    assert {"start", "end", "score", "excess_kwh", "excess_eur", "excess_kgco2e", "explanation"} <= set(records[0])


def test_bad_csv_is_a_decode_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,point,value\n2026-01-01T00:00:00,mairie-elec-energy,1\n")
    with pytest.raises(DecodeError, match="no UTC offset"):
        read_readings_csv(path)
