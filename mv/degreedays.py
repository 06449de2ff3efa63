"""Degree days (DJU) from an outdoor temperature series, the Météo-France way.

The French *degré-jour unifié* (DJU) of heating for a day is
``max(0, 18 - (Tn + Tx) / 2)`` where Tn and Tx are the minimum and maximum
temperatures of the day, base 18 °C. Météo-France takes Tn over the 24 hours
from 18:00 UTC the day before to 18:00 UTC, and Tx over the 24 hours from
06:00 UTC to 06:00 UTC the next day; :func:`daily_temperatures` uses the same
windows. Cooling degree days are ``max(0, (Tn + Tx) / 2 - base)``.

A day whose windows hold fewer than ``min_coverage`` of their 24 hours of
samples is a *gap* (the hours of the Tn and Tx windows past the first or
last sample of the series are not counted: a series that ends at local
midnight keeps its last day): its temperatures are NaN and ``gap`` is true, so a report
can say which days are missing instead of silently counting zero degree days.

The daily *mean* of the samples over the local calendar day is also kept
(``mean_c``): the baseline models of :mod:`mv.baseline` regress energy
on it, since energy is aggregated over the same local day.

Sample CSVs read by :func:`read_temperature_csv`::

    timestamp,value                      date,tmin,tmax
    2025-01-01T00:00:00+00:00,3.2        2025-01-01,-1.5,6.0
    2025-01-01T01:00:00+00:00,2.9        2025-01-02,0.5,8.0

and Météo-France's daily climatological files as published on meteo.data.gouv.fr
(one file per département, every station of it, ``;``-separated, possibly
gzipped: ``Q_41_previous-1950-2023_RR-T-Vent.csv.gz``; columns documented with
the data set "Données climatologiques de base - quotidiennes")::

    NUM_POSTE;NOM_USUEL;LAT;LON;ALTI;AAAAMMJJ;RR;QRR;TN;QTN;HTN;QHTN;TX;QTX;...
    41018001;BLOIS;47.67;1.31;112;20120101;0.0;1;5.2;1;;;11.4;1;...

``TN`` and ``TX`` are the day's minimum and maximum (the Météo-France windows
above); the station is chosen by its ``NUM_POSTE`` when the file has several.

>>> from datetime import UTC, datetime, timedelta
>>> ts = [datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=h) for h in range(-6, 54)]
>>> days = daily_temperatures(ts, [5.0 + (h % 24) / 4 for h in range(-6, 54)])
>>> dd = degree_days(days)
>>> [(d.day.isoformat(), d.gap) for d in dd]
[('2024-12-31', True), ('2025-01-01', False), ('2025-01-02', False), ('2025-01-03', True)]
>>> dd[1].hdd  # 18 - (Tn 5.0 + Tx 10.75) / 2
10.125
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path

import numpy as np

from streams.errors import DecodeError

__all__ = [
    "DJU_BASE_C",
    "DailyTemperature",
    "DegreeDay",
    "daily_temperatures",
    "degree_days",
    "hourly_from_daily",
    "monthly_degree_days",
    "parse_timestamp",
    "professional_degree_days",
    "read_outdoor_temperatures",
    "read_series_csv",
    "read_temperature_csv",
]

DJU_BASE_C = 18.0
"""Base temperature of the French unified degree days (DJU)."""

_TN_START = timedelta(hours=-6)  # 18:00 UTC the day before
_TX_START = timedelta(hours=6)  # 06:00 UTC
_WINDOW = timedelta(hours=24)
_EARLIEST = date(1800, 1, 1)
"""No temperature before this in a file (Météo-France's oldest series start in the 19th century)."""
_LATEST = date(2100, 1, 1)
"""No temperature from this on in a file."""
_COLDEST_C, _HOTTEST_C = -90.0, 60.0
"""The outdoor temperatures a file may hold (°C): beyond, the column is in another unit (tenths) or garbled."""


@dataclass(frozen=True, slots=True)
class DailyTemperature:
    """Outdoor temperatures of one day.

    Attributes:
        day: the day (Météo-France UTC windows for Tn/Tx, local day for the mean).
        tmin_c: minimum temperature (NaN on a gap).
        tmax_c: maximum temperature (NaN on a gap).
        mean_c: mean of the samples over the local calendar day (NaN on a gap).
        coverage: fraction of the hours with at least one sample, worst of the windows.
        gap: true when coverage is below the threshold.
    """

    day: date
    tmin_c: float
    tmax_c: float
    mean_c: float
    coverage: float
    gap: bool

    @property
    def tmean_c(self) -> float:
        """The Météo-France daily mean, (Tn + Tx) / 2."""
        return (self.tmin_c + self.tmax_c) / 2


@dataclass(frozen=True, slots=True)
class DegreeDay:
    """Heating and cooling degree days of one day (NaN on a gap)."""

    day: date
    tmean_c: float
    hdd: float
    cdd: float
    gap: bool


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO 8601 timestamp or date into a UTC datetime.

    A naive timestamp is taken as UTC; a bare date is its midnight UTC.

    >>> parse_timestamp("2025-01-01T01:00:00+01:00")
    datetime.datetime(2025, 1, 1, 0, 0, tzinfo=datetime.timezone.utc)
    """
    text = text.strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        msg = f"invalid timestamp {text!r}"
        raise DecodeError(msg) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:  # year 1 at a positive offset is before year 1 in UTC
        msg = f"timestamp {text!r} is out of range"
        raise DecodeError(msg) from exc


def read_series_csv(path: Path) -> tuple[list[datetime], list[float]]:
    """Read a ``timestamp,value`` CSV (header required), skipping empty values.

    Args:
        path: the CSV file.

    Returns:
        Timestamps (UTC) and values, in file order.

    Raises:
        DecodeError: on a missing column or a value that is not a number.
    """
    stamps: list[datetime] = []
    values: list[float] = []
    reader = csv.DictReader(io.StringIO(_text(path), newline=""))
    if reader.fieldnames is None or not {"timestamp", "value"} <= set(reader.fieldnames):
        msg = f"{path}: expected columns 'timestamp,value', got {reader.fieldnames}"
        raise DecodeError(msg)
    for line, row in _rows(path, reader):
        raw = (row["value"] or "").strip()
        if not raw:
            continue
        try:
            value = float(raw)
        except ValueError as exc:
            msg = f"{path}:{line}: value {raw!r} is not a number"
            raise DecodeError(msg) from exc
        try:
            moment = parse_timestamp(row["timestamp"] or "")
        except DecodeError as exc:
            msg = f"{path}:{line}: {exc}"
            raise DecodeError(msg) from exc
        _check_day(path, line, moment.date())
        if not math.isnan(value):  # a NaN sample is no sample (daily_temperatures ignores it)
            _check_temperature(path, line, "value", value)
        stamps.append(moment)
        values.append(value)
    return stamps, values


def _rows(path: Path, reader: csv.DictReader[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """The rows of ``reader`` with their line; a row short of a column, or csv's own error, names the line."""
    try:
        for row in reader:
            line = reader.line_num
            if None in row.values():  # more cells than the header are ignored, as before
                given = sum(value is not None for key, value in row.items() if key is not None)
                msg = f"{path}:{line}: {given} column(s) where the header has {len(reader.fieldnames or [])}"
                raise DecodeError(msg)
            yield line, row
    except csv.Error as exc:
        msg = f"{path}:{reader.reader.line_num}: {exc} (a quote '\"' opened and never closed?)"
        raise DecodeError(msg) from exc


def _check_day(path: Path, line: int, day: date) -> None:
    if not _EARLIEST <= day < _LATEST:
        msg = f"{path}:{line}: day {day.isoformat()} is outside {_EARLIEST.isoformat()} .. {_LATEST.isoformat()}"
        raise DecodeError(msg)


def _check_temperature(path: Path, line: int, name: str, value: float) -> None:
    if not _COLDEST_C <= value <= _HOTTEST_C:
        msg = (f"{path}:{line}: {name} {value:g} is not an outdoor temperature in °C "
               f"({_COLDEST_C:g} .. {_HOTTEST_C:g}; a column in tenths of a degree?)")
        raise DecodeError(msg)


def read_temperature_csv(
    path: Path, tz: tzinfo = UTC, min_coverage: float = 0.75, station: str | None = None
) -> list[DailyTemperature]:
    """Read outdoor temperatures: sub-daily ``timestamp,value``, daily ``date,tmin,tmax``, or Météo-France's file.

    The daily forms give Tn and Tx; the mean is (Tn + Tx) / 2 and a row with an
    empty Tn or Tx is a gap. Météo-France's per-département file (module docstring)
    holds several stations: ``station`` is the ``NUM_POSTE`` of the one to read.

    Args:
        path: the CSV file (``.gz`` too), in °C.
        tz: timezone of the local calendar day (sub-daily form only).
        min_coverage: see :func:`daily_temperatures`.
        station: ``NUM_POSTE`` in a Météo-France file; needed when it has several stations.

    Returns:
        One record per day from the first to the last, gaps included.

    Raises:
        DecodeError: when the columns are not one of the forms, or the station is not
            given among several or not in the file (the message lists the stations).
    """
    daily, series = _read_outdoor(path, station)
    if daily is not None:
        return daily
    return daily_temperatures(*series, tz=tz, min_coverage=min_coverage)


def read_outdoor_temperatures(
    path: Path, tz: tzinfo = UTC, station: str | None = None
) -> tuple[list[DailyTemperature], tuple[list[datetime], list[float]]]:
    """The days of a temperature file (:func:`read_temperature_csv`) and an hourly series for the models.

    A sub-daily ``timestamp,value`` file gives its own samples; a daily file
    (Météo-France's, or ``date,tmin,tmax``) gives :func:`hourly_from_daily`, so
    that the models of :mod:`mv.baseline`, which read hourly temperatures, see
    each day's mean (Tn + Tx) / 2.

    Raises:
        DecodeError: as :func:`read_temperature_csv`.
    """
    daily, series = _read_outdoor(path, station)
    if daily is not None:
        return daily, hourly_from_daily(daily, tz)
    return daily_temperatures(*series, tz=tz), series


def _read_outdoor(
    path: Path, station: str | None
) -> tuple[list[DailyTemperature] | None, tuple[list[datetime], list[float]]]:
    """The days of a daily file, or (None, the samples) of a sub-daily one."""
    text = _text(path)
    first = text.split("\n", 1)[0]
    if ";" in first and {"NUM_POSTE", "AAAAMMJJ", "TN", "TX"} <= {c.strip() for c in first.split(";")}:
        return _read_meteo_france(path, text, station), ([], [])
    header = next(csv.reader(io.StringIO(first)), [])
    if {"date", "tmin", "tmax"} <= set(header):
        return _read_daily_csv(path), ([], [])
    return None, read_series_csv(path)


_COLDEST_HOUR = 5  # local time of Tn in the hourly profile of a day known by its Tn and Tx; Tx 12 hours later


def hourly_from_daily(days: Sequence[DailyTemperature], tz: tzinfo = UTC) -> tuple[list[datetime], list[float]]:
    """Hourly temperatures of days known by Tn and Tx: a cosine from Tn at 05:00 to Tx at 17:00 local.

    The 24 hours of a day average (Tn + Tx) / 2, the Météo-France mean; a gap
    gives no sample.

    >>> day = DailyTemperature(date(2025, 1, 6), 0.0, 10.0, 5.0, 1.0, False)
    >>> stamps, values = hourly_from_daily([day], UTC)
    >>> len(values), values[5], values[17], round(sum(values) / 24, 9)
    (24, 0.0, 10.0, 5.0)
    """
    stamps: list[datetime] = []
    values: list[float] = []
    for day in days:
        if day.gap:
            continue
        middle, swing = day.tmean_c, (day.tmax_c - day.tmin_c) / 2
        for hour in range(24):
            stamps.append(datetime(day.day.year, day.day.month, day.day.day, hour, tzinfo=tz).astimezone(UTC))
            values.append(middle - swing * math.cos(2 * math.pi * (hour - _COLDEST_HOUR) / 24))
    return stamps, values


def _text(path: Path) -> str:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # Météo-France publishes its files gzipped
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        msg = f"{path}: {exc}"
        raise DecodeError(msg) from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def _read_meteo_france(path: Path, text: str, station: str | None) -> list[DailyTemperature]:
    reader = csv.DictReader(io.StringIO(text), delimiter=";")
    names: dict[str, str] = {}
    rows: dict[date, tuple[float, float]] = {}
    for line, row in _rows(path, reader):
        number = (row.get("NUM_POSTE") or "").strip()
        if not number:
            continue
        names.setdefault(number, (row.get("NOM_USUEL") or "").strip())
        if station is not None and number != station:
            continue
        try:
            day = datetime.strptime(row["AAAAMMJJ"].strip(), "%Y%m%d").date()  # noqa: DTZ007 - a date, no time
            tmin = float(row["TN"].replace(",", ".")) if (row["TN"] or "").strip() else math.nan
            tmax = float(row["TX"].replace(",", ".")) if (row["TX"] or "").strip() else math.nan
        except (ValueError, AttributeError) as exc:
            msg = f"{path}:{line}: cannot read AAAAMMJJ {row.get('AAAAMMJJ')!r}, TN {row.get('TN')!r}, TX {row.get('TX')!r}"
            raise DecodeError(msg) from exc
        _check_day_temperatures(path, line, day, tmin, tmax, ("TN", "TX"))
        rows[day] = (tmin, tmax)
    listed = ", ".join(f"{n} {name}" for n, name in sorted(names.items()))
    if station is None and len(names) > 1:
        msg = f"{path}: {len(names)} stations in this Météo-France file, choose one with --station NUM_POSTE: {listed}"
        raise DecodeError(msg)
    if station is not None and station not in names:
        msg = f"{path}: no station {station} in this Météo-France file; its stations: {listed or 'none'}"
        raise DecodeError(msg)
    return _days_from(rows)


def _read_daily_csv(path: Path) -> list[DailyTemperature]:
    rows: dict[date, tuple[float, float]] = {}
    for line, row in _rows(path, csv.DictReader(io.StringIO(_text(path), newline=""))):
        try:
            day = date.fromisoformat(row["date"].strip())
            tmin = float(row["tmin"]) if row["tmin"].strip() else math.nan
            tmax = float(row["tmax"]) if row["tmax"].strip() else math.nan
        except ValueError as exc:
            msg = f"{path}:{line}: cannot read {row}"
            raise DecodeError(msg) from exc
        _check_day_temperatures(path, line, day, tmin, tmax, ("tmin", "tmax"))
        rows[day] = (tmin, tmax)
    return _days_from(rows)


def _check_day_temperatures(path: Path, line: int, day: date, tmin: float, tmax: float, names: tuple[str, str]) -> None:
    """A day in range, its Tn and Tx outdoor temperatures (NaN a gap), Tn not above Tx."""
    _check_day(path, line, day)
    for name, value in zip(names, (tmin, tmax), strict=True):
        if not math.isnan(value):
            _check_temperature(path, line, name, value)
    if tmin > tmax:
        msg = f"{path}:{line}: {names[0]} {tmin:g} is above {names[1]} {tmax:g} (columns swapped?)"
        raise DecodeError(msg)


def _days_from(rows: dict[date, tuple[float, float]]) -> list[DailyTemperature]:
    if not rows:
        return []
    out: list[DailyTemperature] = []
    day, last = min(rows), max(rows)
    while day <= last:
        tmin, tmax = rows.get(day, (math.nan, math.nan))
        gap = math.isnan(tmin) or math.isnan(tmax)
        out.append(DailyTemperature(day, tmin, tmax, (tmin + tmax) / 2, 0.0 if gap else 1.0, gap))
        day += timedelta(days=1)
    return out


def daily_temperatures(
    timestamps: Sequence[datetime],
    values_c: Sequence[float],
    tz: tzinfo = UTC,
    min_coverage: float = 0.75,
) -> list[DailyTemperature]:
    """Daily Tn, Tx and mean from a sub-daily outdoor temperature series.

    Args:
        timestamps: tz-aware sample times, in any order.
        values_c: temperatures in °C; NaN samples are ignored.
        tz: timezone of the local calendar day used for ``mean_c``.
        min_coverage: a day is a gap when any of its windows has fewer than
            this fraction of its 24 hours with a sample.

    Returns:
        One record per day, from the day of the first sample to the day of the last.
    """
    if len(timestamps) != len(values_c):
        msg = f"{len(timestamps)} timestamps for {len(values_c)} values"
        raise ValueError(msg)
    secs = np.array([t.timestamp() for t in timestamps], dtype=np.float64)
    vals = np.asarray(values_c, dtype=np.float64)
    keep = ~np.isnan(vals)
    secs, vals = secs[keep], vals[keep]
    if secs.size == 0:
        return []
    order = np.argsort(secs)
    secs, vals = secs[order], vals[order]
    first = datetime.fromtimestamp(secs[0], UTC).astimezone(tz).date()
    last = datetime.fromtimestamp(secs[-1], UTC).astimezone(tz).date()
    out: list[DailyTemperature] = []
    day = first
    while day <= last:
        utc_midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        local_midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
        # Météo-France's windows reach 6 hours past the day: at the ends of the series, their hours
        # outside it are not counted as missing, so a series ending at local midnight (econome export
        # --until) keeps its last day. The local day itself must be covered (a sensor dead at noon).
        tn, cov_n = _window(secs, vals, utc_midnight + _TN_START, np.min, span=True)
        tx, cov_x = _window(secs, vals, utc_midnight + _TX_START, np.max, span=True)
        mean, cov_m = _window(secs, vals, local_midnight, np.mean)
        coverage = min(cov_n, cov_x, cov_m)
        gap = coverage < min_coverage
        if gap:
            tn = tx = mean = math.nan
        out.append(DailyTemperature(day, tn, tx, mean, coverage, gap))
        day += timedelta(days=1)
    return out


def _window(
    secs: np.ndarray, vals: np.ndarray, start: datetime, reduce: object, *, span: bool = False
) -> tuple[float, float]:
    """The reduced value of the samples in ``[start, start + 24 h)`` and the fraction of its hours with one.

    With ``span``, only the hours of the window within the series (from the hour of its first sample
    to the hour of its last) are counted.
    """
    lo = np.searchsorted(secs, start.timestamp(), side="left")
    hi = np.searchsorted(secs, (start + _WINDOW).timestamp(), side="left")
    if hi <= lo:
        return math.nan, 0.0
    hours = np.unique(((secs[lo:hi] - start.timestamp()) // 3600).astype(np.int64))
    value = float(reduce(vals[lo:hi]))  # type: ignore[operator]  # numpy reducers are untyped callables here
    expected = 24
    if span:
        first_hour = max(0, int((secs[0] - start.timestamp()) // 3600))
        last_hour = min(23, int((secs[-1] - start.timestamp()) // 3600))
        expected = max(1, last_hour - first_hour + 1)
    return value, min(1.0, hours.size / expected)


def degree_days(
    days: Sequence[DailyTemperature], base_c: float = DJU_BASE_C, cooling_base_c: float | None = None
) -> list[DegreeDay]:
    """Heating (DJU) and cooling degree days of each day.

    Args:
        days: daily temperatures, e.g. from :func:`daily_temperatures`.
        base_c: heating base, 18 °C for the French DJU.
        cooling_base_c: cooling base; the heating base when not given.

    Returns:
        One record per input day; a gap gives NaN degree days.

    >>> d = DailyTemperature(date(2025, 1, 6), -2.0, 6.0, 1.5, 1.0, False)
    >>> degree_days([d])[0].hdd
    16.0
    """
    cbase = base_c if cooling_base_c is None else cooling_base_c
    out: list[DegreeDay] = []
    for d in days:
        tmean = d.tmean_c
        if d.gap or math.isnan(tmean):
            out.append(DegreeDay(d.day, math.nan, math.nan, math.nan, True))
            continue
        out.append(DegreeDay(d.day, tmean, max(0.0, base_c - tmean), max(0.0, tmean - cbase), False))
    return out


def professional_degree_days(tmin_c: float, tmax_c: float, base_c: float = DJU_BASE_C) -> tuple[float, float]:
    """Heating and cooling degree days of one day by the *méthode des professionnels de l'énergie* (COSTIC).

    The method annex III of the arrêté du 10 avril 2020 (as amended on 13 April 2022)
    names for the OPERAT climate adjustment. With ``S`` the base temperature, heating:
    ``S − (Tn + Tx) / 2`` when ``S > Tx``; 0 when ``S ≤ Tn``; else
    ``(S − Tn) × (0.08 + 0.42 × (S − Tn) / (Tx − Tn))``: a day crossing the base counts
    the part of it below, where the Météo-France method counts ``max(0, S − mean)``.
    Cooling is the mirror: ``(Tn + Tx) / 2 − S`` when ``S ≤ Tn``; 0 when ``S > Tx``; else
    ``(Tx − S) × (0.08 + 0.42 × (Tx − S) / (Tx − Tn))``.

    >>> professional_degree_days(2.0, 10.0)  # below the base all day: as Météo-France, 18 − 6
    (12.0, 0.0)
    >>> [round(x, 3) for x in professional_degree_days(12.0, 22.0)]  # 6 × (0.08 + 0.42 × 6 / 10); 4 × (0.08 + 0.42 × 4 / 10)
    [1.992, 0.992]
    """
    if base_c > tmax_c:
        heating, cooling = base_c - (tmin_c + tmax_c) / 2, 0.0
    elif base_c <= tmin_c:
        heating, cooling = 0.0, (tmin_c + tmax_c) / 2 - base_c
    else:
        span = tmax_c - tmin_c
        heating = (base_c - tmin_c) * (0.08 + 0.42 * (base_c - tmin_c) / span)
        cooling = (tmax_c - base_c) * (0.08 + 0.42 * (tmax_c - base_c) / span)
    return heating, cooling


def monthly_degree_days(days: Sequence[DegreeDay]) -> dict[tuple[int, int], tuple[float, float, int]]:
    """Monthly sums of heating and cooling degree days, and the number of gap days.

    Gap days add nothing to the sums; the count lets a report flag the month.

    >>> dd = [DegreeDay(date(2025, 1, i), 5.0, 13.0, 0.0, False) for i in (1, 2)]
    >>> monthly_degree_days(dd)
    {(2025, 1): (26.0, 0.0, 0)}
    """
    out: dict[tuple[int, int], tuple[float, float, int]] = {}
    for d in days:
        key = (d.day.year, d.day.month)
        hdd, cdd, gaps = out.get(key, (0.0, 0.0, 0))
        if d.gap:
            out[key] = (hdd, cdd, gaps + 1)
        else:
            out[key] = (hdd + d.hdd, cdd + d.cdd, gaps)
    return out
