"""Expected against observed: the ``on_expected`` hook of detect() and the line protocol of the ``expected`` measurement."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml

from anomalies.detect import DetectConfig, ExpectedSeries, detect, read_readings_csv
from anomalies.expected_sink import EXPECTED_MEASUREMENT, expected_lines, write_expected
from anomalies.features import PointSeries
from inventory import Inventory, Usage, load_inventory
from simulator.export import write_readings_csv

ROOT = Path(__file__).resolve().parents[3]
START = datetime(2026, 1, 5, tzinfo=UTC)


def _series(observed: list[float], expected: list[float], building: str = "mairie") -> ExpectedSeries:
    times = START.timestamp() + 3600.0 * np.arange(len(observed))
    return ExpectedSeries(building, Usage.HEATING, "kWh", times, np.array(observed), np.array(expected))


def test_one_line_per_hour_with_an_expected_value() -> None:
    lines = expected_lines(_series([12.0, 5.0, np.nan, 7.5], [10.0, np.nan, 3.0, 8.0]))
    t0 = int(START.timestamp() * 1000)
    assert lines == [
        f"expected,building=mairie,usage=heating expected=10.0,observed=12.0,residual=2.0 {t0}",
        # the second hour has no expected value: nothing is written for it
        f"expected,building=mairie,usage=heating expected=3.0 {t0 + 2 * 3_600_000}",  # consumption unknown
        f"expected,building=mairie,usage=heating expected=8.0,observed=7.5,residual=-0.5 {t0 + 3 * 3_600_000}",
    ]
    assert all(line.startswith(f"{EXPECTED_MEASUREMENT},") for line in lines)


def test_tags_are_escaped() -> None:
    (line,) = expected_lines(_series([1.0], [1.0], building="salle des fêtes"))
    assert line.startswith(r"expected,building=salle\ des\ fêtes,usage=heating ")


class _ListWriter:
    """An in-memory writer: the batches it was given."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def write(self, lines: list[str], *, raw: bool = False) -> None:
        assert not raw  # expected values are aggregates, never raw readings
        self.batches.append(list(lines))

    async def close(self) -> None:
        return None


async def test_write_expected_batches_every_line_once() -> None:
    one = _series([1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    two = _series([1.0, 2.0, np.nan], [np.nan, 2.0, 2.0], building="ecole-curie")
    writer = _ListWriter()
    assert await write_expected(writer, [one, two], batch_size=2) == 5
    assert [len(b) for b in writer.batches] == [2, 2, 1]
    assert [line for b in writer.batches for line in b] == expected_lines(one) + expected_lines(two)


def test_between_cuts_to_the_hours_starting_in_range() -> None:
    series = _series([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    cut = series.between(START + timedelta(hours=1), START + timedelta(hours=3))
    assert cut.observed.tolist() == [2.0, 3.0]
    assert cut.times_s.tolist() == [START.timestamp() + 3600.0, START.timestamp() + 7200.0]
    assert series.between(None, None).expected.tolist() == series.expected.tolist()


@pytest.fixture(scope="module")
def one_building() -> tuple[Inventory, dict[str, PointSeries]]:
    """The town hall of the demo commune (and its weather station), three simulated weeks."""
    data = yaml.safe_load((ROOT / "examples" / "commune.yaml").read_text(encoding="utf-8"))
    data["sites"] = [data["sites"][0]]
    data["sites"][0]["buildings"] = [b for b in data["sites"][0]["buildings"] if b["id"] == "mairie"]
    folder = Path(tempfile.mkdtemp())
    (folder / "mairie.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    inv = load_inventory(folder / "mairie.yaml")
    write_readings_csv(inv, folder / "readings.csv", START, START + timedelta(weeks=3))
    return inv, read_readings_csv(folder / "readings.csv")


def test_detect_hands_every_modelled_usage_its_hours(one_building: tuple[Inventory, dict[str, PointSeries]]) -> None:
    inv, readings = one_building
    got: list[ExpectedSeries] = []
    detect(inv, readings, on_expected=got.append)
    assert sorted((s.building, s.usage.value) for s in got) == [("mairie", "general"), ("mairie", "heating"), ("mairie", "water")]
    for series in got:
        assert series.unit == ("m3" if series.usage is Usage.WATER else "kWh")
        # The last hour has no reading at or after its end yet: not processed (anomalies.incremental).
        assert series.times_s.size == series.observed.size == series.expected.size == 21 * 24 - 1
        assert np.all(np.diff(series.times_s) == 3600.0)
        assert series.times_s[0] == START.timestamp()
        # Observed is the building's consumption: there is some, and never a negative hour.
        observed = series.observed[np.isfinite(series.observed)]
        assert observed.size > 0.9 * series.observed.size
        assert observed.sum() > 0
        assert (observed >= 0).all()


def test_detect_cuts_the_series_to_the_requested_range(one_building: tuple[Inventory, dict[str, PointSeries]]) -> None:
    inv, readings = one_building
    whole: list[ExpectedSeries] = []
    cut: list[ExpectedSeries] = []
    detect(inv, readings, on_expected=whole.append)
    since, until = START + timedelta(days=15), START + timedelta(days=17)
    detect(inv, readings, start=since, end=until, on_expected=cut.append)
    for a, b in zip(whole, cut, strict=True):
        keep = (a.times_s >= since.timestamp()) & (a.times_s < until.timestamp())
        assert b.times_s.tolist() == a.times_s[keep].tolist()
        np.testing.assert_array_equal(b.observed, a.observed[keep])
        np.testing.assert_array_equal(b.expected, a.expected[keep])


def test_no_model_no_expected_series(one_building: tuple[Inventory, dict[str, PointSeries]]) -> None:
    inv, readings = one_building
    got: list[ExpectedSeries] = []
    detect(inv, readings, DetectConfig(models=False), on_expected=got.append)
    assert got == []
