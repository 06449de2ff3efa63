"""What the offline commands make of their readings file: unknown ids, malformed rows, points never read (issue 13 review)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from econome.cli import app

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "examples" / "commune.yaml"
SENSOR = "mairie-bureaux-temperature"


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``econome simulate``'s default file (counters and weather), run outside the source tree without --config."""
    where = tmp_path_factory.mktemp("elsewhere")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(where)
        result = CliRunner().invoke(app, ["simulate", "--out", "recent.csv", "--start", "2025-01-06", "--end", "2025-01-10"])
    assert result.exit_code == 0, result.output
    return where / "recent.csv"


def _detect(readings: Path, out: Path) -> tuple[int, str, str, list[dict[str, object]]]:
    result = CliRunner().invoke(app, ["detect", "--inventory", str(CONFIG), "--readings", str(readings),
                                      "--out", str(out), "--no-models"])
    events = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return result.exit_code, result.stdout, result.stderr, events


def test_simulate_then_detect_judges_only_the_points_read(simulated: Path, tmp_path: Path) -> None:
    code, _, stderr, events = _detect(simulated, tmp_path / "e.jsonl")
    assert code == 0, stderr
    # The sensors the file never held are named, not reported missing (the review saw 64 false alerts).
    assert "point(s) have no reading in" in stderr
    assert SENSOR in stderr or "more)" in stderr
    assert [e for e in events if e["kind"] == "missing_data"] == []

    # A sensor that the file holds, then goes silent, is still judged.
    lines = simulated.read_text().splitlines()
    first = [line.split(",")[0] for line in lines[1:] if line.split(",")[1] == "station-meteo-temperature"][:12]
    with_sensor = tmp_path / "with-sensor.csv"
    with_sensor.write_text("\n".join([*lines, *(f"{t},{SENSOR},19.5" for t in first)]) + "\n")
    code, _, stderr, events = _detect(with_sensor, tmp_path / "e2.jsonl")
    assert code == 0, stderr
    missing = [e for e in events if e["kind"] == "missing_data"]
    assert missing
    assert {e["point"] for e in missing} == {SENSOR}


def test_unknown_point_ids_are_named_and_none_known_exits_3(simulated: Path, tmp_path: Path) -> None:
    lines = simulated.read_text().splitlines()
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("\n".join([lines[0], *(",".join([t, "X" + p, v]) for t, p, v in (x.split(",") for x in lines[1:]))]) + "\n")
    code, _, stderr, events = _detect(wrong, tmp_path / "e.jsonl")
    assert code == 3
    assert "44 point id(s) not in the inventory, ignored: Xatelier-elec-energy" in stderr
    assert "and 39 more" in stderr
    assert "holds no reading of a point of the inventory" in stderr
    assert events == []

    some = tmp_path / "some.csv"
    some.write_text("\n".join([*lines, "2025-01-06T00:00:00+00:00,Xnobody,1.0"]) + "\n")
    for command in (["detect", "--inventory", str(CONFIG), "--out", str(tmp_path / "x.jsonl"), "--no-models"],
                    ["report", "operat", "--config", str(CONFIG), "--year", "2025", "--reference-year", "2024",
                     "--allow-incomplete", "--out", str(tmp_path / "o.csv")]):
        result = CliRunner().invoke(app, [*command, "--readings", str(some)])
        assert result.exit_code == 0, result.stderr
        assert "1 point id(s) not in the inventory, ignored: Xnobody" in result.stderr


def test_a_malformed_row_exits_3_naming_the_line(simulated: Path, tmp_path: Path) -> None:
    lines = simulated.read_text().splitlines()
    for bad, error in (("2025-01-06T00:00:00+00:00,mairie-elec-energy", "2 column(s), expected 3"),
                       ("2025-01-06T00:00:00+00:00;mairie-elec-energy;3.0", "1 column(s), expected 3"),
                       ("2025-01-06T00:00:00+00:00,mairie-elec-energy,", "mairie-elec-energy has an empty value"),
                       # Review round 2: nan and inf were dropped silently.
                       ("2025-01-06T00:00:00+00:00,mairie-elec-energy,nan", "value 'nan' of mairie-elec-energy is not a"),
                       ("2025-01-06T00:00:00+00:00,mairie-elec-energy,-inf", "value '-inf' of mairie-elec-energy is not a")):
        path = tmp_path / "bad.csv"
        path.write_text("\n".join([*lines[:10], bad, *lines[10:]]) + "\n")
        code, _, stderr, _ = _detect(path, tmp_path / "e.jsonl")
        assert code == 3
        assert f"{path}:11: {error}" in stderr


def test_a_hostile_readings_file_exits_3_in_one_line(simulated: Path, tmp_path: Path) -> None:
    # Hostile-input round: each gave a Python traceback (exit 1) or ran for ever.
    lines = simulated.read_text().splitlines()
    for bad, error in (("0001-01-01T00:00:00+01:00,mairie-elec-energy,3.0", "is outside 2000-01-01 .. 2100-01-01"),
                       ("1970-01-01T00:00:00+00:00,mairie-elec-energy,3.0", "is outside 2000-01-01 .. 2100-01-01"),
                       ("2025-01-06T00:00:00+00:00,mairie-elec-energy," + "9" * 300_000, "line longer than 65,536")):
        path = tmp_path / "bad.csv"
        path.write_text("\n".join([*lines[:10], bad, *lines[10:]]) + "\n")
        code, _, stderr, _ = _detect(path, tmp_path / "e.jsonl")
        assert (code, stderr.count("\n")) == (3, 1), stderr
        assert stderr.startswith(f"error: {path}:11: ")
        assert error in stderr
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("\n".join([*lines[:10], "2025-01-06T00:00:00+00:00,salle-f\xeates,3.0", *lines[10:]]).encode("latin-1"))
    code, _, stderr, _ = _detect(latin1, tmp_path / "e.jsonl")
    assert (code, stderr) == (3, f"error: {latin1}:11: not UTF-8 text (invalid continuation byte): save the file as CSV UTF-8\n")
    code, _, stderr, _ = _detect(tmp_path, tmp_path / "e.jsonl")  # a folder
    assert (code, stderr) == (3, f"error: {tmp_path}: cannot be read: Is a directory\n")
    nul = tmp_path / "nul.csv"
    nul.write_text("\n".join([*lines, "2025-01-06T00:00:00+00:00,mairie\x00x,3.0"]) + "\n")
    code, _, stderr, _ = _detect(nul, tmp_path / "e.jsonl")
    assert code == 0, stderr
    assert "1 point id(s) not in the inventory, ignored: 'mairie\\x00x'" in stderr


def test_a_file_saved_by_excel_with_a_bom_is_read(simulated: Path, tmp_path: Path) -> None:
    # Review round 2: Excel's "CSV UTF-8" (and our OPERAT export) starts with a BOM, which was refused.
    plain, bom = tmp_path / "plain.jsonl", tmp_path / "bom.jsonl"
    with_bom = tmp_path / "bom.csv"
    with_bom.write_bytes(b"\xef\xbb\xbf" + simulated.read_bytes())
    assert _detect(simulated, plain)[0] == 0
    code, _, stderr, _ = _detect(with_bom, bom)
    assert code == 0, stderr
    assert bom.read_text() == plain.read_text()


def test_the_live_path_still_reports_a_sensor_that_never_published(simulated: Path) -> None:
    # econome run's live detection calls advance() with every point judged: a dead sensor raises missing data.
    from anomalies.detect import DetectConfig
    from anomalies.incremental import DetectorState, advance
    from inventory import load_inventory
    from streams.history import read_readings_csv

    config = DetectConfig(models=False)
    result = advance(load_inventory(CONFIG), read_readings_csv(simulated), DetectorState.fresh(config), config=config)
    silent = {e.point for e in result.events if e.kind == "missing_data"}
    assert SENSOR in silent


def test_a_date_option_in_year_1_or_9999_exits_2_naming_it(simulated: Path, tmp_path: Path) -> None:
    # Hostile-input round: each was an OverflowError or "year 10000 is out of range" traceback (exit 1).
    readings = ["--readings", str(simulated)]
    for command, error in (
        (["detect", "--inventory", str(CONFIG), *readings, "--out", str(tmp_path / "e.jsonl"), "--from", "0001-01-01"],
         "date 0001-01-01 is outside 1990-01-01 .. 2099-12-31"),
        (["detect", "--inventory", str(CONFIG), "--from-influx", "--out", str(tmp_path / "e.jsonl"), "--since", "0001-01-01"],
         "date 0001-01-01 is outside"),
        (["mv", "--config", str(CONFIG), *readings, "--point", "mairie-elec-energy", "--baseline", "0001-01-01/2025-01-01",
          "--reporting", "2025-01-01/9999-12-31"], "period 0001-01-01 is outside"),
        (["report", "building", "--config", str(CONFIG), *readings, "--building", "mairie", "--month", "9999-12",
          "--out", str(tmp_path / "r.html")], "--month 9999-12-01 is outside"),
        (["export", "--config", str(CONFIG), "--since", "0001-01-01", "--until", "2025-01-01", "--out", str(tmp_path / "x.csv")],
         "--since 0001-01-01 is outside"),
        (["report", "operat", "--config", str(CONFIG), *readings, "--year", "9999", "--out", str(tmp_path / "o.csv")],
         "less than or equal to 2099"),
        (["report", "portfolio", "--config", str(CONFIG), *readings, "--year", "2025", "--reference-year", "9999",
          "--out", str(tmp_path / "p.html")], "less than or equal to 2099"),
    ):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        assert error in " ".join(result.output.replace("│", " ").split()), (command, result.output)
        assert not isinstance(result.exception, (OverflowError, ValueError)), command


def test_a_point_silent_for_years_between_two_rows_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Hostile-input round: one row of 2001 in a 2025 file made `econome detect` run 68 s instead of 2, silently.
    # Here the other point's rows span the gap: a history with a long silence, named, not refused.
    from datetime import UTC, datetime

    from econome._readings import ReadingSource

    path = tmp_path / "stray.csv"
    path.write_text("timestamp,point,value\n2023-01-01T00:00:00+00:00,a,1\n2023-01-01T01:00:00+00:00,a,2\n"
                    "2025-01-01T00:00:00+00:00,a,3\n2025-01-01T01:00:00+00:00,a,4\n2023-01-01T00:00:00+00:00,b,1\n"
                    "2024-06-01T00:00:00+00:00,b,2\n2025-03-01T00:00:00+00:00,b,3\n")
    t = datetime(2025, 1, 1, tzinfo=UTC)
    data = ReadingSource(path, from_influx=False).load(None, t, t)
    assert data["a"].values.tolist() == [1.0, 2.0, 3.0, 4.0]  # named, not dropped
    assert capsys.readouterr().err == (f"warning: {path}: 2 point(s) without a row for more than a year: a (2023-01-01 to "
                                       "2025-01-01), b (2023-01-01 to 2024-06-01); a stray row makes the commands cover "
                                       "every hour between\n")


@pytest.mark.parametrize(("stray", "edge"), [("2090-01-01T00:00:00+00:00", "last"), ("2001-06-01T00:00:00+00:00", "first")])
def test_a_stray_row_stretching_the_file_by_years_is_refused_naming_it(tmp_path: Path, stray: str, edge: str) -> None:
    """One row of 2090 (or 2001) beside two points' year of 2025: `econome detect` walked every hour to it (one of
    2090 beside a year: longer than 5 minutes). A point that starts years before the others, row after row, is
    a history and is read."""
    rows = [f"2025-01-{d:02d}T{h:02d}:00:00+00:00,{p},{d * 24 + h}" for p in ("a", "b") for d in range(1, 8)
            for h in range(24)]
    path = tmp_path / "stray.csv"
    for strays in ([f"{stray},a,1"], [f"{stray},a,1", f"{stray},b,1"]):  # one point's clock, or a gateway's
        path.write_text("timestamp,point,value\n" + "\n".join([*rows, *strays]) + "\n")
        result = CliRunner().invoke(app, ["detect", "--inventory", str(CONFIG), "--readings", str(path),
                                          "--out", str(tmp_path / "e.jsonl")])
        assert result.exit_code == 3, result.output
        assert f"the {edge} row of a, at {stray}" in result.output
        assert "Traceback" not in result.output
    history = tmp_path / "history.csv"
    early = [f"2022-{m:02d}-01T00:00:00+00:00,a,{m}" for m in range(1, 13)] + [f"2023-{m:02d}-01T00:00:00+00:00,a,{m}"
                                                                             for m in range(1, 13)]
    history.write_text("timestamp,point,value\n" + "\n".join([*early, *rows]) + "\n")
    from datetime import UTC, datetime

    from econome._readings import ReadingSource

    t = datetime(2025, 1, 1, tzinfo=UTC)
    assert ReadingSource(history, from_influx=False).load(None, t, t)["a"].times_s.size == 24 + 7 * 24


@pytest.mark.parametrize(("calendar", "error"), [
    (None, "hall.ics: cannot read the booking calendar: No such file or directory"),
    ("RRULE:FREQ=SECONDLY", "hall.ics: event UID bomb 'Bomb': RRULE FREQ=SECONDLY repeats 86,400 times a day: "
                            "a booking recurs at most 96 times a day"),
])
def test_a_missing_or_hostile_booking_calendar_is_one_error_of_check_and_detect(
    tmp_path: Path, calendar: str | None, error: str
) -> None:
    # Claims review: `econome check` said OK, and `econome detect` stopped with a traceback of 128 lines (exit 1).
    text = CONFIG.read_text(encoding="utf-8").replace(
        "    advisors: [cep@valmont.example]\n    schedule:\n      weekly:",
        "    advisors: [cep@valmont.example]\n    schedule:\n      bookings: {ical: hall.ics}\n      weekly:", 1)
    inventory = tmp_path / "commune.yaml"
    inventory.write_text(text, encoding="utf-8")
    if calendar is not None:
        (tmp_path / "hall.ics").write_text(
            "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//t//t//EN\nBEGIN:VEVENT\nUID:bomb\nSUMMARY:Bomb\n"
            f"DTSTART:20250106T080000Z\nDTEND:20250106T090000Z\n{calendar}\nEND:VEVENT\nEND:VCALENDAR\n")
    readings = tmp_path / "r.csv"
    readings.write_text("timestamp,point,value\n" + "".join(
        f"2025-01-06T{h:02d}:00:00+00:00,mairie-elec-energy,{h}\n" for h in range(6)))
    check = CliRunner().invoke(app, ["check", str(inventory)])
    assert check.exit_code == 2, check.output
    assert check.stderr.splitlines() == [
        f"error: {inventory}: building mairie: schedule.bookings.ical: {tmp_path / error.split(': ', 1)[0]}: "
        + error.split(": ", 1)[1]]
    detect = CliRunner().invoke(app, ["detect", "--inventory", str(inventory), "--readings", str(readings),
                                      "--out", str(tmp_path / "e.jsonl"), "--no-models"])
    assert detect.exit_code == 2, detect.output
    assert detect.stderr.splitlines()[-1].startswith(f"error: {inventory}: booking calendar {tmp_path / 'hall.ics'}: ")
    assert error.split(": ", 1)[1] in detect.stderr
