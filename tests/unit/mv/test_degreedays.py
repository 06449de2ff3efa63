from __future__ import annotations

import gzip
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mv.degreedays import (
    DailyTemperature,
    daily_temperatures,
    degree_days,
    monthly_degree_days,
    read_temperature_csv,
)
from streams.errors import DecodeError


def _hourly(start: datetime, hours: int, value: float) -> tuple[list[datetime], list[float]]:
    stamps = [start + timedelta(hours=h) for h in range(hours)]
    return stamps, [value] * hours


def test_dju_base_18_from_tn_tx() -> None:
    days = [DailyTemperature(date(2025, 1, 6), -2.0, 6.0, 1.0, 1.0, False)]
    dd = degree_days(days)[0]
    assert dd.hdd == pytest.approx(16.0)  # 18 - (-2 + 6) / 2
    assert dd.cdd == 0.0


def test_cooling_degree_days_and_zero_heating_when_warm() -> None:
    dd = degree_days([DailyTemperature(date(2025, 7, 1), 20.0, 30.0, 25.0, 1.0, False)])[0]
    assert dd.hdd == 0.0
    assert dd.cdd == pytest.approx(7.0)


def test_meteo_france_windows() -> None:
    # Tn is taken from 18:00 UTC the day before: a cold evening on 31 Dec counts for 1 Jan.
    stamps, values = _hourly(datetime(2024, 12, 31, 0, tzinfo=UTC), 24 * 3, 10.0)
    values = [(-5.0 if stamps[i] == datetime(2024, 12, 31, 20, tzinfo=UTC) else v) for i, v in enumerate(values)]
    days = {d.day: d for d in daily_temperatures(stamps, values)}
    assert days[date(2025, 1, 1)].tmin_c == -5.0
    assert days[date(2024, 12, 31)].tmin_c == 10.0  # 20:00 UTC on 31 Dec is after its Tn window
    assert days[date(2024, 12, 31)].mean_c < 10.0  # but inside its calendar-day mean


def test_gap_is_flagged_not_counted_as_zero() -> None:
    stamps, values = _hourly(datetime(2025, 1, 1, tzinfo=UTC), 24 * 5, 5.0)
    keep = [(t, v) for t, v in zip(stamps, values, strict=True) if t.date() != date(2025, 1, 3)]
    days = daily_temperatures([t for t, _ in keep], [v for _, v in keep])
    by_day = {d.day: d for d in days}
    assert by_day[date(2025, 1, 3)].gap
    assert not by_day[date(2025, 1, 2)].gap or by_day[date(2025, 1, 2)].coverage < 1
    dd = {d.day: d for d in degree_days(days)}
    assert math.isnan(dd[date(2025, 1, 3)].hdd)
    monthly = monthly_degree_days(list(dd.values()))
    assert monthly[(2025, 1)][2] >= 1


def test_a_series_ending_at_local_midnight_keeps_its_last_day() -> None:
    # Review round 2: `econome export --until 2026-01-01` ends at local midnight; Météo-France's Tx window of
    # 31 December reaches 06:00 UTC on 1 January, so the day was a gap and December lost a day of DJU.
    paris = ZoneInfo("Europe/Paris")
    start, end = datetime(2025, 12, 1, tzinfo=paris), datetime(2026, 1, 1, tzinfo=paris)
    stamps = [start + timedelta(minutes=15 * i) for i in range(int((end - start) / timedelta(minutes=15)))]
    values = [4.0 + (i % 96) / 16 for i in range(len(stamps))]
    days = {d.day: d for d in daily_temperatures(stamps, values, tz=paris)}
    assert sorted(days) == [date(2025, 12, d) for d in range(1, 32)]
    assert not days[date(2025, 12, 31)].gap
    assert days[date(2025, 12, 31)].mean_c == pytest.approx(sum(values[-96:]) / 96)
    assert days[date(2025, 12, 31)].tmax_c == max(values[-96 + 28:])  # its Tx window from 06:00 UTC
    # A sensor that dies at noon still leaves its day a gap: the local day itself must be covered.
    noon = [(t, v) for t, v in zip(stamps, values, strict=True) if t < datetime(2025, 12, 31, 12, tzinfo=paris)]
    last = daily_temperatures([t for t, _ in noon], [v for _, v in noon], tz=paris)[-1]
    assert (last.day, last.gap) == (date(2025, 12, 31), True)


def test_read_hourly_and_daily_csv(tmp_path: Path) -> None:
    hourly = tmp_path / "t.csv"
    rows = [f"{(datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=h)).isoformat()},{h % 24 / 2}" for h in range(24 * 3)]
    hourly.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    days = read_temperature_csv(hourly)
    assert [d.day for d in days] == [date(2025, 1, 1), date(2025, 1, 2), date(2025, 1, 3)]
    assert not days[1].gap
    assert days[1].tmax_c == pytest.approx(11.5)

    daily = tmp_path / "d.csv"
    daily.write_text("date,tmin,tmax\n2025-01-01,-1,5\n2025-01-03,,4\n")
    got = read_temperature_csv(daily)
    assert [d.gap for d in got] == [False, True, True]
    assert degree_days(got)[0].hdd == pytest.approx(16.0)


def test_bad_csv_is_a_decode_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,value\n2025-01-01T00:00:00Z,warm\n")
    with pytest.raises(DecodeError, match="not a number"):
        read_temperature_csv(path)


def test_meteo_france_departement_file_by_station(tmp_path: Path) -> None:
    # Review 14-M2 #6: the per-département file of meteo.data.gouv.fr, several stations, gzipped as published.
    header = "NUM_POSTE;NOM_USUEL;LAT;LON;ALTI;AAAAMMJJ;RR;QRR;TN;QTN;HTN;QHTN;TX;QTX\n"
    rows = ["41018001;BLOIS;47.67;1.31;112;20120101;0.0;1;5.2;1;;;11.4;1\n",
            "41018001;BLOIS;47.67;1.31;112;20120103;0.0;1;;;;;9;1\n",
            "41018001;BLOIS;47.67;1.31;112;20120102;0.0;1;-1;1;;;3;1\n",
            "41269001;ROMORANTIN;47.32;1.69;82;20120101;0.0;1;1;1;;;2;1\n"]
    path = tmp_path / "Q_41_previous-1950-2023_RR-T-Vent.csv.gz"
    path.write_bytes(gzip.compress((header + "".join(rows)).encode()))
    with pytest.raises(DecodeError, match="2 stations in this Météo-France file, choose one with --station NUM_POSTE: "
                                          "41018001 BLOIS, 41269001 ROMORANTIN"):
        read_temperature_csv(path)
    with pytest.raises(DecodeError, match="no station 41000000 in this Météo-France file"):
        read_temperature_csv(path, station="41000000")
    days = read_temperature_csv(path, station="41018001")
    assert [(d.day, d.tmin_c, d.tmax_c) for d in days[:2]] == [(date(2012, 1, 1), 5.2, 11.4), (date(2012, 1, 2), -1, 3)]
    assert [d.gap for d in days] == [False, False, True]
    assert degree_days(days)[1].hdd == pytest.approx(17.0)
    one = tmp_path / "mf.csv"
    one.write_text(header + rows[3], encoding="utf-8")
    assert [d.tmax_c for d in read_temperature_csv(one)] == [2.0]


def test_a_hostile_temperature_file_is_one_error_naming_the_line(tmp_path: Path) -> None:
    """Hostile-input round: each of these was a traceback (year 1 or 9999 after 12 s of looping, a short row,
    a BOM, Windows-1252 bytes) or taken silently (inf, 1e308, Tn above Tx) by ``econome mv --temperatures``."""
    path = tmp_path / "t.csv"
    hourly = "timestamp,value\n2025-01-01T00:00:00+00:00,1.5\n"
    daily = "date,tmin,tmax\n2025-01-01,1,8\n"
    meteo = ("NUM_POSTE;NOM_USUEL;AAAAMMJJ;TN;TX\n41097001;BLOIS;20250101;1,5;8,2\n")
    for text, error in (
        (hourly + "0001-01-01T00:00:00+01:00,2\n", r"t\.csv:3: timestamp '0001-01-01T00:00:00\+01:00' is out of range"),
        (hourly + "9999-12-31T23:00:00+00:00,2\n", r"t\.csv:3: day 9999-12-31 is outside 1800-01-01 \.\. 2100-01-01"),
        (hourly + "2025-01-01T01:00:00+00:00,inf\n", r"t\.csv:3: value inf is not an outdoor temperature in °C"),
        (hourly + "2025-01-01T01:00:00+00:00\n", r"t\.csv:3: 1 column\(s\) where the header has 2"),
        (hourly + '2025-01-01T01:00:00+00:00,"' + "1" * 140_000, r"t\.csv:3: field larger than field limit"),
        (daily + "2025-01-02,1\n", r"t\.csv:3: 2 column\(s\) where the header has 3"),
        (daily + "2025-01-02,1,1e308\n", r"t\.csv:3: tmax 1e\+308 is not an outdoor temperature"),
        (daily + "2025-01-02,20,1\n", r"t\.csv:3: tmin 20 is above tmax 1"),
        (daily + "9999-12-31,1,2\n", r"t\.csv:3: day 9999-12-31 is outside"),
        (meteo + "41097001;BLOIS;00010101;1;2\n", r"t\.csv:3: day 0001-01-01 is outside"),
        (meteo + "41097001;BLOIS;20250102;82;95\n", r"t\.csv:3: TN 82 is not an outdoor temperature in °C .*tenths"),
    ):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(DecodeError, match=error):
            read_temperature_csv(path)
    # Excel's BOM and Windows-1252 (a station name with an accent) are read.
    path.write_bytes(b"\xef\xbb\xbf" + daily.encode())
    assert [(d.tmin_c, d.tmax_c) for d in read_temperature_csv(path)] == [(1.0, 8.0)]
    path.write_bytes("NUM_POSTE;NOM_USUEL;AAAAMMJJ;TN;TX\n41097001;ORLÉANS;20250101;-1,5;4\n".encode("cp1252"))
    assert [(d.tmin_c, d.tmax_c) for d in read_temperature_csv(path)] == [(-1.5, 4.0)]
    path.write_bytes((hourly + "2025-01-01T01:00:00+00:00,é\n").encode("cp1252"))
    with pytest.raises(DecodeError, match=r"t\.csv:3: value 'é' is not a number"):
        read_temperature_csv(path)
