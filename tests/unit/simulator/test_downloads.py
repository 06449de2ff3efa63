"""The simulated downloads of the Linky/Gazpar buildings read back by the importers (issue 14)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from inventory import Inventory
from simulator.downloads import write_utility_files
from simulator.export import write_readings_csv
from simulator.utilities import UtilityInterval, invoiced_fuel, utility_consumption
from streams.invoices import read_invoice_file
from streams.utility_files import parse_enedis, parse_grdf

PARIS = ZoneInfo("Europe/Paris")
START, END = datetime(2025, 12, 30, 12, tzinfo=PARIS), datetime(2026, 1, 2, 6, 10, tzinfo=PARIS)


def test_the_readings_csv_gives_the_same_intervals_as_utility_consumption(commune: Inventory, tmp_path: Path) -> None:
    given: list[dict[str, list[UtilityInterval]]] = []
    write_readings_csv(commune, tmp_path / "r.csv", START, END, step=timedelta(hours=1), seed=5, on_utility=given.append)
    expected = utility_consumption(commune, START, END, seed=5)
    assert set(given[0]) == set(expected) == {"maternelle-aulnes-linky", "salle-polyvalente-linky", "salle-polyvalente-gazpar"}
    for point, intervals in expected.items():
        assert [(i.start, i.end) for i in given[0][point]] == [(i.start, i.end) for i in intervals]
        assert [i.amount for i in given[0][point]] == pytest.approx([i.amount for i in intervals], abs=1e-9)


def test_the_files_read_back_whole_by_the_importers(commune: Inventory, tmp_path: Path) -> None:
    files = write_utility_files(commune, tmp_path, START, END, seed=5, bill_years=())
    curves = utility_consumption(commune, START, END, seed=5)
    # One Enedis file a year and PRM, across New Year.
    assert [p.name for p in files.enedis] == [f"enedis-{prm}-{year}.csv" for prm in ("30001234567890", "30001234567891")
                                              for year in (2025, 2026)]
    for point in ("maternelle-aulnes-linky", "salle-polyvalente-linky"):
        read = [c for path in files.enedis for c in parse_enedis(path, commune).series.get(point, [])]
        assert len(read) == len(curves[point]) == (datetime(2026, 1, 2, 6, tzinfo=PARIS) - START) // timedelta(minutes=30)
        assert sum(c.amount for c in read) == pytest.approx(sum(i.amount for i in curves[point]), rel=1e-6)
    gas = parse_grdf(files.grdf[0], commune)
    assert gas.problems == []
    assert gas.gaps == []
    days = gas.series["salle-polyvalente-gazpar"]
    assert [c.start.astimezone(PARIS).day for c in days] == [31, 1]  # the whole gas days, from 6:00 to 6:00
    assert [c.amount for c in days] == pytest.approx([i.amount for i in curves["salle-polyvalente-gazpar"]], rel=1e-6)
    # The school's fuel oil of the whole days (31 December, 1 January), in litres at 10 kWh/L, a bill a month.
    assert files.invoices is not None
    bills = read_invoice_file(files.invoices, commune)
    assert bills.rejected == []
    fuel = invoiced_fuel(commune, datetime(2025, 12, 31, tzinfo=PARIS), datetime(2026, 1, 2, tzinfo=PARIS), seed=5)
    assert [(b.account, b.start.isoformat(), b.end.isoformat(), b.unit) for b in bills.invoices] == [
        ("maternelle-aulnes-fioul", "2025-12-31", "2025-12-31", "L"),
        ("maternelle-aulnes-fioul", "2026-01-01", "2026-01-01", "L"),
    ]
    assert [b.consumption for b in bills.invoices] == pytest.approx(
        [m.amount / 10.0 for m in fuel["maternelle-aulnes-fioul"]], abs=0.051)


@pytest.mark.parametrize("years", ["2015-20x", "2019-2015", "1890-1891"])
def test_simulate_refuses_bill_years_it_cannot_read(years: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from econome.cli import app

    result = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path / "r.csv"), "--utility-files", str(tmp_path),
                                      "--bill-years", years])
    assert result.exit_code == 2
    assert f"--bill-years {years!r}: expected FIRST-LAST, e.g. 2015-2019, or none" in result.output
    assert not (tmp_path / "r.csv").exists()
