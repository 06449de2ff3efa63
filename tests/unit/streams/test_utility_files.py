"""The Enedis and GRDF file readers: each pitfall of the published formats, totals computed by hand.

The fixtures of ``tests/cases/enedis`` and ``tests/cases/grdf`` hold constant
powers per day, so each day's energy is power × hours, written out below.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from inventory import Inventory, Point, load_inventory
from streams.aggregate import counter_tracker
from streams.errors import DecodeError
from streams.utility_files import (
    ENEDIS_HEADER,
    ParsedFile,
    ProblemKind,
    parse_enedis,
    parse_grdf,
    write_enedis_load_curve,
    write_grdf_daily,
)

CASES = Path(__file__).resolve().parents[2] / "cases"
PARIS = ZoneInfo("Europe/Paris")
LINKY = "salle-fetes-linky"


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return load_inventory(CASES / "enedis" / "inventory.yaml")


def _by_local_day(parsed: ParsedFile, point: str) -> dict[date, float]:
    days: dict[date, float] = {}
    for item in parsed.series[point]:
        day = (item.end - timedelta(seconds=1)).astimezone(PARIS).date()
        days[day] = days.get(day, 0.0) + item.amount
    return days


def _kinds(parsed: ParsedFile) -> dict[int | None, ProblemKind]:
    return {p.line: p.kind for p in parsed.problems}


def test_autumn_load_curve_mixed_steps_unsorted_duplicates_and_the_25_hour_day(inventory: Inventory) -> None:
    parsed = parse_enedis(CASES / "enedis" / "load-curve-autumn.csv", inventory)
    days = _by_local_day(parsed, LINKY)
    assert days == pytest.approx({
        date(2026, 10, 24): 24 * 2.0,  # 60-minute steps at 2000 W
        # 30-minute steps at 1000 W for 25 hours, but the second 02:00-03:00 (winter time) at 1100 W
        date(2026, 10, 25): 24 * 1.0 + 1 * 1.1,
        date(2026, 10, 26): 24 * 0.6,  # 10-minute steps at 600 W
        date(2026, 10, 27): 24 * 1.5,
    })
    items = parsed.series[LINKY]
    assert [i.end - i.start for i in items[:2]] == [timedelta(hours=1)] * 2
    assert all(a.end == b.start for a, b in pairwise(items))  # sorted, no gap, no overlap
    assert len(items) == 24 + 50 + 144 + 48
    assert parsed.gaps == []
    # Line 202 repeats line 57; line 269 gives 3000 W where line 133 gave 2000 W: the first is kept.
    # The file is not sorted: the second 02:00 and 02:30 (winter time) are told by file order, reported.
    assert _kinds(parsed) == {202: ProblemKind.DUPLICATE, 269: ProblemKind.CONFLICT,
                              215: ProblemKind.AMBIGUOUS, 255: ProblemKind.AMBIGUOUS}
    conflict = next(p for p in parsed.problems if p.kind is ProblemKind.CONFLICT)
    assert "3 kWh here, 2 kWh at line 133: line 133 kept" in conflict.message


def test_naive_fall_back_times_keep_both_hours(inventory: Inventory) -> None:
    parsed = parse_enedis(CASES / "enedis" / "load-curve-autumn.csv", inventory)
    low, high = datetime(2026, 10, 24, 23, tzinfo=UTC), datetime(2026, 10, 25, 2, tzinfo=UTC)
    ends = [i.end for i in parsed.series[LINKY] if low < i.end <= high]
    # 02:00 and 02:30 local happen twice: four half hours, at 00:00, 00:30, 01:00, 01:30 UTC, then 02:00 UTC (03:00 CET).
    assert [e.strftime("%H:%M") for e in ends] == ["23:30", "00:00", "00:30", "01:00", "01:30", "02:00"]


def test_spring_offsets_missing_day_and_rejected_rows(inventory: Inventory) -> None:
    parsed = parse_enedis(CASES / "enedis" / "load-curve-spring.csv", inventory)
    assert _by_local_day(parsed, LINKY) == pytest.approx({
        date(2026, 3, 28): 24 * 0.8,
        date(2026, 3, 29): 23 * 1.2,  # the spring day has 23 hours
        date(2026, 3, 31): 24 * 0.5,
    })
    [gap] = parsed.gaps
    assert (gap.start, gap.end) == (datetime(2026, 3, 30, tzinfo=PARIS), datetime(2026, 3, 31, tzinfo=PARIS))
    assert _kinds(parsed) == {13: ProblemKind.REJECTED, 14: ProblemKind.REJECTED, 15: ProblemKind.REJECTED}
    messages = [p.message for p in sorted(parsed.problems, key=lambda p: p.line or 0)]
    assert messages == ["negative value -500 W", "'n/a' is not a number",
                        "PRM '99999999999999' is no enedis point of the inventory"]


def test_daily_indexes_give_the_differences(inventory: Inventory) -> None:
    parsed = parse_enedis(CASES / "enedis" / "daily-index.csv", inventory)
    items = parsed.series[LINKY]
    # Indexes in Wh, unsorted, Jan 8 missing: the Jan 7 → Jan 9 interval holds both days.
    assert [(i.start.astimezone(PARIS).day, i.end.astimezone(PARIS).day, i.amount) for i in items] == [
        (5, 6, 41.0), (6, 7, 41.0), (7, 9, 82.0), (9, 10, 38.5), (10, 11, 41.0)
    ]


def test_naive_spring_time_that_does_not_exist_is_rejected(inventory: Inventory, tmp_path: Path) -> None:
    path = tmp_path / "spring.csv"
    row = ["12345678901234", "", "", "PA", "CONS", "BRUT", "W", "2026-03-29 02:30:00", "1000", "B", "PT30M", "", ""]
    path.write_text(";".join(ENEDIS_HEADER) + "\n" + ";".join(row) + "\n", encoding="utf-8")
    parsed = parse_enedis(path, inventory)
    assert parsed.series == {}
    [problem] = parsed.problems
    assert problem.kind is ProblemKind.REJECTED
    assert problem.message == "local time 2026-03-29 02:30:00 does not exist in Europe/Paris (spring clock change)"


def test_unknown_prm_and_missing_header_name_the_file(inventory: Inventory, tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    write_enedis_load_curve(other, "99999999999999", [(datetime(2026, 1, 5, 8, tzinfo=UTC), 30, 100.0)])
    with pytest.raises(DecodeError, match=r"other\.csv: PRM '99999999999999' is not the PRM of any enedis point"):
        parse_enedis(other, inventory)
    empty = tmp_path / "empty.csv"
    empty.write_text("date,value\n2026-01-01,3\n", encoding="utf-8")
    with pytest.raises(DecodeError, match=r"empty\.csv: no header line found"):
        parse_enedis(empty, inventory)


def test_a_quote_never_closed_is_an_error_naming_the_line(inventory: Inventory, tmp_path: Path) -> None:
    # Hostile-input round: csv's field size limit raised its own error, which the CLI reported without a line.
    path = tmp_path / "quote.csv"
    row = ["12345678901234", "", "", "PA", "CONS", "BRUT", "W", "2026-01-05 08:00:00", '"1000', "B", "PT30M", "", ""]
    path.write_text(";".join(ENEDIS_HEADER) + "\n" + ";".join(row) + "\n" + "99\n" * 70_000, encoding="utf-8")
    with pytest.raises(DecodeError, match=r"quote\.csv:\d+: field larger than field limit .*a quote '\"' opened and never"):
        parse_enedis(path, inventory)
    with pytest.raises(DecodeError, match=r"quote\.csv:\d+: field larger than field limit"):
        parse_grdf(path, inventory)


def test_the_writer_round_trips_through_the_reader(inventory: Inventory, tmp_path: Path) -> None:
    path = tmp_path / "written.csv"
    start = datetime(2026, 10, 25, tzinfo=PARIS).astimezone(UTC)
    rows = [(start + timedelta(minutes=10 * (k + 1)), 10, 300.0 + k) for k in range(6 * 25)]
    write_enedis_load_curve(path, "12345678901234", rows)
    parsed = parse_enedis(path, inventory)
    assert [i.end for i in parsed.series[LINKY]] == [end for end, _, _ in rows]
    assert sum(i.amount for i in parsed.series[LINKY]) == pytest.approx(sum(w / 6000 for _, _, w in rows))
    assert parsed.problems == []


def test_grdf_gas_days_duplicates_conflicts_and_a_missing_day(inventory: Inventory) -> None:
    parsed = parse_grdf(CASES / "grdf" / "daily.csv", inventory)
    items = parsed.series["salle-fetes-gazpar"]
    assert [(i.start.astimezone(PARIS).day, i.amount) for i in items] == [
        (22, 10.0), (23, 4.5), (24, 12.5), (25, 10.5), (27, 16.0), (28, 8.0)
    ]
    assert all(i.start.astimezone(PARIS).hour == 6 and i.end.astimezone(PARIS).hour == 6 for i in items)
    assert items[2].end - items[2].start == timedelta(hours=25)  # the gas day of the autumn change
    [gap] = parsed.gaps
    assert gap.start == datetime(2026, 10, 26, 6, tzinfo=PARIS)
    assert _kinds(parsed) == {7: ProblemKind.DUPLICATE, 9: ProblemKind.REJECTED, 10: ProblemKind.CONFLICT,
                              11: ProblemKind.REJECTED}


def test_grdf_adict_columns_and_energy_from_the_coefficient(inventory: Inventory) -> None:
    parsed = parse_grdf(CASES / "grdf" / "adict.csv", inventory)
    # A kWh point: the energy as given, or the volume × coefficient when the energy is missing (Mar 29).
    assert [i.amount for i in parsed.series["bibliotheque-gazpar"]] == pytest.approx([123.2, 9 * 11.2, 112.0])
    first = parsed.series["bibliotheque-gazpar"][0]
    assert first.end - first.start == timedelta(hours=23)  # 06:00 on Mar 28 to 06:00 on Mar 29, the spring change


def test_grdf_writer_round_trips(inventory: Inventory, tmp_path: Path) -> None:
    path = tmp_path / "gaz.csv"
    write_grdf_daily(path, "21987654321098", [(date(2026, 1, d), 3.25 * d, 11.2) for d in range(1, 8)])
    parsed = parse_grdf(path, inventory)
    assert [i.amount for i in parsed.series["salle-fetes-gazpar"]] == pytest.approx([3.25 * d for d in range(1, 8)])
    assert parsed.problems == []


def _enedis_file(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """A file of (Unité, Horodate, Valeur, Pas) rows for the test PRM."""
    lines = [";".join(ENEDIS_HEADER)]
    lines += [f"12345678901234;;;PA;CONS;BRUT;{unit};{when};{value};B;{step};;" for unit, when, value, step in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_overlaps_unknown_steps_and_units_and_french_dates(inventory: Inventory, tmp_path: Path) -> None:
    path = _enedis_file(tmp_path / "mixed.csv", [
        ("W", "05/01/2026 09:00", "1000", "PT60M"),   # line 2: 08:00-09:00 local
        ("W", "05/01/2026 08:30", "1000", "PT30M"),   # line 3: 08:00-08:30, kept (sorted first: it ends first)
        ("W", "05/01/2026 09:30", "1000", "PT60M"),   # line 4: 08:30-09:30, kept; line 2 overlaps both
        ("W", "05/01/2026 10:00", "1000", "P1D"),     # line 5: an unknown step
        ("VAR", "05/01/2026 10:00", "1000", "PT30M"),  # line 6: an unknown unit
        ("Wh", "2026-01-05", "5000", ""),             # line 7: a daily index, the file has the load curve
    ])
    parsed = parse_enedis(path, inventory)
    assert [(i.line, i.start.astimezone(PARIS).strftime("%d/%m %H:%M"), i.amount) for i in parsed.series[LINKY]] == [
        (3, "05/01 08:00", 0.5), (4, "05/01 08:30", 1.0)
    ]
    assert _kinds(parsed) == {2: ProblemKind.OVERLAP, 5: ProblemKind.REJECTED,
                              6: ProblemKind.REJECTED, 7: ProblemKind.IGNORED}


def test_a_utility_counter_never_holds_a_jump(inventory: Inventory) -> None:
    tracker = counter_tracker(inventory, inventory.point(LINKY))
    night, t = 0.0, datetime(2026, 1, 5, tzinfo=UTC)
    tracker.update(t, night)
    for k in range(12):  # six hours of a quiet night, then the heating starts at 40 times the rate
        night += 0.1
        assert tracker.update(t + timedelta(minutes=30 * (k + 1)), night) is not None
    interval = tracker.update(t + timedelta(hours=6, minutes=30), night + 4.0)
    assert interval is not None
    assert interval.amount == pytest.approx(4.0)
    assert not interval.estimated


def test_the_readme_inventory_lines_load() -> None:
    text = (CASES.parent.parent / "README.md").read_text(encoding="utf-8")
    start = text.index("### Linky and Gazpar files")
    block = text[text.index("```yaml\n", start) + 8:text.index("```", text.index("```yaml\n", start) + 8)]
    points = [Point.model_validate(item) for item in yaml.safe_load(block)]
    assert [(p.protocol, p.enedis.prm if p.enedis else p.grdf.pce if p.grdf else None) for p in points] == [
        ("enedis", "12345678901234"), ("grdf", "21987654321098")
    ]


# -- review of issue 14 (K2): the shapes of the real downloads -----------------------------------


def test_the_customer_area_preamble_gives_prm_unit_and_step(inventory: Inventory) -> None:
    # Line 1 names, line 2 values (PRM, W, "Pas en minutes" 30), line 3 "Horodate;Valeur", newest first.
    parsed = parse_enedis(CASES / "enedis" / "mes-mesures-preamble.csv", inventory)
    items = parsed.series[LINKY]
    assert len(items) == 48
    assert all(i.end - i.start == timedelta(minutes=30) for i in items)
    assert items[0].start == datetime(2026, 1, 5, tzinfo=PARIS)
    assert sum(i.amount for i in items) == pytest.approx(12 * 1.2 + 12 * 0.8)
    assert parsed.problems == []
    assert parsed.meters == {LINKY: "12345678901234"}


def test_header_names_without_accents_read_as_with_them(inventory: Inventory) -> None:
    plain = parse_enedis(CASES / "enedis" / "load-curve-no-accents.csv", inventory)
    accented = parse_enedis(CASES / "enedis" / "load-curve-spring.csv", inventory)
    assert plain.series == accented.series
    assert plain.problems == accented.problems


def test_production_reactive_and_apparent_rows_are_not_consumption(inventory: Inventory, tmp_path: Path) -> None:
    path = tmp_path / "prod.csv"
    lines = [";".join(ENEDIS_HEADER)]
    for physical, business, unit, watts in (("PA", "PROD", "W", 5000), ("PA", "CONS", "W", 1000),
                                            ("ERC", "CONS", "VAr", 300), ("PA", "CONS", "VA", 1500),
                                            ("PA", "CONS", "kW", 1e306)):
        lines.append(f"12345678901234;;;{physical};{business};BRUT;{unit};2026-11-02T00:30:00+01:00;{watts};B;PT30M;;")
    lines.append("12345678901234;;;PA;CONS;BRUT;W;0001-01-01T00:10:00+00:00;100;B;PT30M;;")  # line 7: would overflow
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    parsed = parse_enedis(path, inventory)
    assert [(i.line, i.amount) for i in parsed.series[LINKY]] == [(3, 0.5)]  # the CONS row, 1000 W for 30 minutes
    assert _kinds(parsed) == {2: ProblemKind.IGNORED, 4: ProblemKind.IGNORED, 5: ProblemKind.REJECTED,
                              6: ProblemKind.REJECTED, 7: ProblemKind.REJECTED}
    messages = {p.line: p.message for p in parsed.problems}
    assert messages[5] == "unit 'VA' is apparent power, not active power (W): rejected"
    assert messages[6] == "1e+306 kW is not a plausible average power (above 100 MW)"
    assert messages[7] == "Horodate '0001-01-01T00:10:00+00:00' is not between 1990 and 2100"


def test_naive_autumn_times_newest_first_are_placed_by_the_file_order(inventory: Inventory, tmp_path: Path) -> None:
    # 25/10/2026 from 04:00 down to 01:30 local, newest first: the first 02:30 met is the winter one.
    ends = [datetime(2026, 10, 25, 3, tzinfo=UTC) - timedelta(minutes=30 * k) for k in range(8)]
    lines = [";".join(ENEDIS_HEADER)]
    for k, end in enumerate(ends):
        local = end.astimezone(PARIS).strftime("%d/%m/%Y %H:%M")
        lines.append(f"12345678901234;;;PA;CONS;BRUT;W;{local};{1000 - 100 * k};B;PT30M;;")
    path = tmp_path / "desc.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    parsed = parse_enedis(path, inventory)
    assert [(i.end, i.amount) for i in parsed.series[LINKY]] == [(e, (1000 - 100 * k) / 2000) for k, e in enumerate(ends)][::-1]
    assert parsed.problems == []


def test_the_customer_area_gas_export_names_the_pce_in_its_title(inventory: Inventory) -> None:
    parsed = parse_grdf(CASES / "grdf" / "customer-area.csv", inventory)
    # 27/10: the definitive 16 m3 of line 11 wins over the estimated 15 m3 of line 10 before it.
    assert [(i.start.astimezone(PARIS).day, i.amount) for i in parsed.series["salle-fetes-gazpar"]] == [
        (22, 10.0), (23, 4.5), (24, 12.5), (25, 10.5), (27, 16.0)
    ]
    assert _kinds(parsed) == {10: ProblemKind.CONFLICT}
    assert parsed.meters == {"salle-fetes-gazpar": "21987654321098"}


def test_a_meter_number_a_spreadsheet_changed(inventory: Inventory, tmp_path: Path) -> None:
    rounded = tmp_path / "excel.csv"
    write_grdf_daily(rounded, "2,19877E+13", [(date(2026, 1, d), 3.0, 11.2) for d in range(1, 4)])
    with pytest.raises(DecodeError, match=r"excel\.csv: PCE '2,19877E\+13' is a number in scientific notation: "
                                          r"a spreadsheet rounded .* give the point with --point"):
        parse_grdf(rounded, inventory)
    parsed = parse_grdf(rounded, inventory, point_id="salle-fetes-gazpar")
    assert [i.amount for i in parsed.series["salle-fetes-gazpar"]] == [3.0, 3.0, 3.0]
    # Without a PCE anywhere, the inventory's only point of a kind takes the rows: here two grdf points.
    bare = tmp_path / "bare.csv"
    bare.write_text("Date de relevé;Volume consommé (m3);Type de relevé\n01/01/2026;3;Définitive\n", encoding="utf-8")
    with pytest.raises(DecodeError, match=r"bare\.csv: no PCE column .* 2 grdf points: give the point with --point"):
        parse_grdf(bare, inventory)


def test_a_prm_that_lost_its_leading_zero(tmp_path: Path) -> None:
    text = (CASES / "enedis" / "inventory.yaml").read_text(encoding="utf-8").replace("'12345678901234'", "'01234567890123'")
    (tmp_path / "inv.yaml").write_text(text, encoding="utf-8")
    inv = load_inventory(tmp_path / "inv.yaml")
    path = write_curve = tmp_path / "zero.csv"
    write_enedis_load_curve(write_curve, "1234567890123", [(datetime(2026, 1, 5, 8, tzinfo=UTC), 30, 1000.0)])
    parsed = parse_enedis(path, inv)
    assert [i.amount for i in parsed.series[LINKY]] == [0.5]
    assert parsed.notes == ["PRM '1234567890123' read as '01234567890123': a spreadsheet dropped its leading zero "
                            "(format the column as text)"]


def test_a_published_gas_day_is_measured_and_a_missing_one_estimated(inventory: Inventory) -> None:
    tracker = counter_tracker(inventory, inventory.point("salle-fetes-gazpar"))
    day = datetime(2026, 10, 24, 6, tzinfo=PARIS).astimezone(UTC)
    tracker.update(day, 0.0)
    autumn = tracker.update(day + timedelta(hours=25), 10.0)  # the 25-hour gas day of Oct 25
    assert autumn is not None
    assert not autumn.estimated
    after_gap = tracker.update(day + timedelta(hours=25 + 48), 30.0)  # one gas day missing
    assert after_gap is not None
    assert after_gap.estimated


def test_a_preamble_without_the_step_takes_the_time_between_rows(inventory: Inventory, tmp_path: Path) -> None:
    # The 8-column preamble some downloads have (no "Pas en minutes"): 30 minutes between rows, one missing.
    path = tmp_path / "nostep.csv"
    rows = ["2026-01-05T00:30:00+01:00;1200", "2026-01-05T01:00:00+01:00;800", "2026-01-05T02:00:00+01:00;600"]
    path.write_text("\n".join([
        "Identifiant PRM;Type de donnees;Date de debut;Date de fin;Grandeur physique;Grandeur metier;Etape metier;Unite",
        "12345678901234;Courbe de charge;2026-01-05;2026-01-06;Energie active;Consommation;Comptage Brut;W",
        "Horodate;Valeur", *rows]) + "\n", encoding="utf-8")
    parsed = parse_enedis(path, inventory)
    assert [(i.end - i.start, i.amount) for i in parsed.series[LINKY]] == [(timedelta(minutes=30), a) for a in (0.6, 0.4, 0.3)]
    assert parsed.notes == ["no step (Pas) given: 30 minutes taken, the most common time between rows"]
    [gap] = parsed.gaps
    assert gap.end - gap.start == timedelta(minutes=30)


def test_daily_consumptions_are_days_not_indexes(inventory: Inventory) -> None:
    # "Consommation quotidienne" (Wh per day): each row is its local day, 00:00 to 24:00; Oct 26 missing, Oct 24 twice.
    parsed = parse_enedis(CASES / "enedis" / "daily-consumption-preamble.csv", inventory)
    items = parsed.series[LINKY]
    assert [(i.start, i.end, i.amount) for i in items] == [
        (datetime(2026, 10, 24, tzinfo=PARIS), datetime(2026, 10, 25, tzinfo=PARIS), 81.0),
        (datetime(2026, 10, 25, tzinfo=PARIS), datetime(2026, 10, 26, tzinfo=PARIS), 40.5),  # 25 hours
        (datetime(2026, 10, 27, tzinfo=PARIS), datetime(2026, 10, 28, tzinfo=PARIS), 36.0),
    ]
    assert items[1].end - items[1].start == timedelta(hours=25)
    assert [(g.start, g.end) for g in parsed.gaps] == [(datetime(2026, 10, 26, tzinfo=PARIS),
                                                        datetime(2026, 10, 27, tzinfo=PARIS))]
    assert _kinds(parsed) == {7: ProblemKind.DUPLICATE}
    # The 13-column shape with Pas P1D: the same reading, values going down included.
    p1d = parse_enedis(CASES / "enedis" / "daily-consumption-p1d.csv", inventory)
    assert [(i.start.astimezone(PARIS).day, i.end - i.start, i.amount) for i in p1d.series[LINKY]] == [
        (1, timedelta(days=1), 81.0), (2, timedelta(days=1), 81.0), (3, timedelta(days=1), 36.0),
        (4, timedelta(days=1), 36.0)]
    assert p1d.problems == []


def test_an_enedis_file_of_an_unknown_kind_is_refused(inventory: Inventory, tmp_path: Path) -> None:
    # Wh values without a step nor a type that fall: daily energies read as indexes would be wrong figures.
    source = (CASES / "enedis" / "daily-consumption-p1d.csv").read_text(encoding="utf-8")
    no_step = tmp_path / "no-step.csv"
    no_step.write_text(source.replace(";P1D;", ";;"), encoding="utf-8")
    with pytest.raises(DecodeError, match=r"no-step.csv: the Wh values fall at line 4: not daily indexes"):
        parse_enedis(no_step, inventory)
    other = tmp_path / "other.csv"
    other.write_text((CASES / "enedis" / "daily-consumption-preamble.csv").read_text(encoding="utf-8")
                     .replace("Consommation quotidienne", "Energie mensuelle"), encoding="utf-8")
    with pytest.raises(DecodeError, match=r"'Energie mensuelle' is not recognised .*refused rather than guessed"):
        parse_enedis(other, inventory)
    # Daily indexes keep working (rising values, no step): test_daily_indexes_give_the_differences.


def test_grdf_reading_periods_over_several_gas_days(inventory: Inventory, tmp_path: Path) -> None:
    header = ("pce;journeeGaziere;dateDebutReleve;dateFinReleve;indexDebut;indexFin;volumeBrutConsomme;energieConsomme;"
              "coeffConversion;qualificationReleve\n")
    path = tmp_path / "publiees.csv"
    path.write_text(header
                    + "21987654321098;2023-02-28;2023-01-01;2023-03-01;0;600;600;6720;11.2;Mesuré\n"
                    + "21987654321098;;2023-03-01;2023-05-01;600;900;300;3360;11.2;Mesuré\n"
                    + "21987654321098;;;;900;910;10;112;11.2;Mesuré\n"
                    + "21987654321098;;2023-05-01;;910;920;10;112;11.2;Mesuré\n", encoding="utf-8")
    parsed = parse_grdf(path, inventory)
    assert [(i.start, i.end, i.amount) for i in parsed.series["salle-fetes-gazpar"]] == [
        (datetime(2023, 1, 1, 6, tzinfo=PARIS), datetime(2023, 3, 1, 6, tzinfo=PARIS), 600.0),
        (datetime(2023, 3, 1, 6, tzinfo=PARIS), datetime(2023, 5, 1, 6, tzinfo=PARIS), 300.0),
    ]
    messages = {p.line: p.message for p in parsed.problems}
    assert messages == {4: "no date: the gas day (journeeGaziere, Date de relevé) is empty, and no reading period",
                        5: "dateFinReleve is empty (the reading period needs both dates)"}
    assert any("one interval from the first gas day's 06:00" in note for note in parsed.notes)


def test_a_file_larger_than_the_limit_is_refused_before_it_is_read(
    tmp_path: Path, inventory: Inventory, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 2 GB export would be read whole and held as rows several times its size: refused, naming its size.

    The Enedis and GRDF files are read at most 256 MB, the invoice files 64 MB (the limits lowered here to
    try a small file through the parsers themselves).
    """
    import streams.invoices
    import streams.utility_files
    from streams.utility_files import read_limited

    assert streams.utility_files.MAX_UTILITY_FILE_BYTES == 256_000_000
    assert streams.invoices.MAX_INVOICE_FILE_BYTES == 64_000_000
    monkeypatch.setattr(streams.utility_files, "MAX_UTILITY_FILE_BYTES", 1000)
    monkeypatch.setattr(streams.invoices, "MAX_INVOICE_FILE_BYTES", 10)
    with pytest.raises(DecodeError, match=r"load-curve-autumn\.csv: .* MB, above the 0\.0 MB read at once"):
        parse_enedis(CASES / "enedis" / "load-curve-autumn.csv", inventory)
    bills = tmp_path / "bills.csv"
    bills.write_text("account;start;end;consumption;unit;amount_eur\n", encoding="utf-8")
    with pytest.raises(DecodeError, match=r"bills\.csv: .* MB, above the 0\.0 MB read at once"):
        streams.invoices.read_invoice_file(bills, inventory)

    path = tmp_path / "huge.csv"
    path.write_bytes(b"x" * 2_600_000)
    with pytest.raises(DecodeError, match=r"huge\.csv: 2\.6 MB, above the 2\.5 MB read at once: split it"):
        read_limited(path, 2_500_000)
    assert read_limited(path, 2_600_000) == b"x" * 2_600_000
    with pytest.raises(DecodeError, match="cannot be read"):
        read_limited(tmp_path / "absent.csv", 2_500_000)
    # A pipe nobody writes to would block the import for ever; a device fills the limit: both refused at once.
    import os

    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(DecodeError, match=r"pipe\.csv: not a regular file"):
        read_limited(fifo, 2_500_000)
    with pytest.raises(DecodeError, match=r"/dev/zero: not a regular file"):
        read_limited(Path("/dev/zero"), 2_500_000)


def test_the_size_limits_are_the_256_and_64_mb_the_readme_names(tmp_path: Path) -> None:
    """A file a little above 256 MB (Enedis, GRDF) or 64 MB (invoices) is refused, the message naming those limits.

    The limits were 256 and 64 MiB: a 260 MB file was read, and the message named a limit of 268.4 MB.
    """
    import streams.invoices
    from streams.utility_files import MAX_UTILITY_FILE_BYTES, read_limited

    for limit, size, said in ((MAX_UTILITY_FILE_BYTES, 260_000_000, "260.0 MB, above the 256.0 MB"),
                              (streams.invoices.MAX_INVOICE_FILE_BYTES, 65_000_000, "65.0 MB, above the 64.0 MB")):
        path = tmp_path / f"{size}.csv"
        with path.open("wb") as handle:
            handle.truncate(size)  # sparse: refused on its size, never read
        with pytest.raises(DecodeError, match=rf"{size}\.csv: {re.escape(said)} read at once"):
            read_limited(path, limit)


_EXCEL_GRDF = [
    ";Données de consommation GRDF",
    ";PCE;21987654321098",
    ";",
    ";Date de relevé;Index de début (m³);Index de fin (m³);Volume consommé (m³);Energie consommée (kWh);"
    "Coefficient de conversion;Température locale (°C);Type de relevé",
    ";05/01/2026;10{s}020;10{s}120;100;1{s}122,5;11,225;2;Définitive",
    ";06/01/2026;10{s}120;10{s}220,5;100,5;1{s}128,1;11,225;1;Définitive",
]


@pytest.mark.parametrize(("encoding", "bom", "separator"), [
    ("cp1252", "", "\u00a0"),  # "CSV (séparateur: point-virgule)" of an older Excel
    ("utf-8", "\ufeff", "\u202f"),  # "CSV UTF-8" of a French Windows 10+ Excel: narrow no-break thousands
])
def test_a_grdf_export_saved_by_excel_is_read_to_the_kwh(
    inventory: Inventory, tmp_path: Path, encoding: str, bom: str, separator: str
) -> None:
    # wp-reports review: the GRDF export as Excel saves it: column A empty, title rows, CRLF, decimal commas and
    # the thousands separator of the French locale; U+202F made every row "not a number" (the invoices read it).
    path = tmp_path / "grdf.csv"
    path.write_bytes((bom + "\r\n".join(row.format(s=separator) for row in _EXCEL_GRDF) + "\r\n").encode(encoding))
    parsed = parse_grdf(path, inventory)
    assert not parsed.problems
    (start, end), = [(s[0].start, s[-1].end) for s in parsed.series.values()]
    assert start == datetime(2026, 1, 5, 5, tzinfo=UTC)  # 06:00 in Paris
    assert end == datetime(2026, 1, 7, 5, tzinfo=UTC)
    assert [c.amount for c in parsed.series["salle-fetes-gazpar"]] == [100.0, 100.5]  # m3
    assert parsed.published_kwh["salle-fetes-gazpar"] == pytest.approx(1122.5 + 1128.1)


def test_the_customer_area_daily_index_export_is_read_from_its_total_column(inventory: Inventory, tmp_path: Path) -> None:
    # wp-reports review: the "Index" download of "Mes mesures" has no Valeur column but one index per cadran of the
    # supplier's (EAS F1..F10) and the distributor's (EAS D1..D4) grids and their total EAS T, in Wh, then a
    # legend of the calendar ("Periode;..."). It was refused "no header line found", while the README lists it.
    path = tmp_path / "index.csv"
    head = "Horodate;Type de releve;" + ";".join(f"EAS F{i}" for i in range(1, 11)) + ";EAS D1;EAS D2;EAS D3;EAS D4;EAS T"

    def row(day: int, hp: int, hc: int) -> str:
        return (f"2026-01-{day:02d}T00:00:00+01:00;Arrêté quotidien;{hp};{hc};;;;;;;;;{hp};{hc};;;{hp + hc}")

    path.write_text("\n".join([
        "Identifiant PRM;Type de donnees;Date de debut;Date de fin;Grandeur physique;Grandeur metier;Etape metier;Unite",
        "12345678901234;Index;05/01/2026;08/01/2026;Energie active;Consommation;Comptage Brut;Wh",
        head,
        row(5, 3_000_000, 1_000_000),
        row(6, 3_020_000, 1_010_000),  # 30 kWh on the 5th
        row(7, 3_020_000, 1_035_500),  # 25.5 kWh on the 6th, all in off-peak hours
        "Periode;Identifiant calendrier fournisseur;Libelle calendrier fournisseur;Identifiant classe temporelle 1;"
        "Libelle classe temporelle 1;Cadran classe temporelle 1",
        "Du 2026-01-05T00:00:00+01:00 au;AA000000;Option Heures Creuses;HP;Heures Pleines;EAS F1",
    ]) + "\n", encoding="utf-8")
    parsed = parse_enedis(path, inventory)
    assert not parsed.problems
    series = parsed.series[LINKY]
    assert [(c.start.astimezone(PARIS).day, c.amount) for c in series] == [(5, 30.0), (6, 25.5)]  # kWh


def test_an_index_per_cadran_file_is_refused_naming_the_cadrans(inventory: Inventory, tmp_path: Path) -> None:
    # wp-reports review: an SGE R64 export gives each day one index per cadran (HP, HC...) of each grid in rows of
    # their own; read as one index a row it was refused as "not daily indexes; daily consumptions need their step".
    head = ("Identifiant PRM;Date de début;Date de fin;Grandeur physique;Grandeur metier;Etape metier;Unite;Horodate;"
            "Contexte de relève;Type de releve;Motif de relève;Grille;Identifiant calendrier;Libellé calendrier;"
            "Identifiant classe temporelle;Libellé classe temporelle;Cadran;Valeur;Indice de vraisemblance")
    rows = [head] + [f"12345678901234;2026-01-05;2026-01-07;EA;CONS;BRUT;Wh;2026-01-0{d}T00:00:00+01:00;COLLECTE;"
                     f"ARRETE;;DISTRIBUTEUR;DI000002;Cal;{c};{c};;{v + 1000 * d};"
                     for d in (5, 6, 7) for c, v in (("HP", 3_000_000), ("HC", 1_000_000))]
    path = tmp_path / "r64.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(DecodeError, match="one index per cadran") as info:
        parse_enedis(path, inventory)
    assert "EAS T" in str(info.value)
