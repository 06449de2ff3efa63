r"""The ``econome mv`` and ``econome report`` commands: savings and reports from the readings.

::

    econome mv --readings readings.csv --point ecole-curie-gas-volume --config examples/commune.yaml \\
        --baseline 2023-09-01/2024-09-01 --reporting 2024-09-01/2025-09-01
    econome mv --from-influx --point ecole-curie-gas-volume --config examples/commune.yaml --baseline ... --reporting ...
    econome report building   --config examples/commune.yaml --readings FILE --building mairie --month 2025-01 --out m.pdf
    econome report renovation --config examples/commune.yaml --from-influx --building ecole-curie --out r.html
    econome report portfolio  --config examples/commune.yaml --readings FILE --year 2025 --out p.pdf
    econome report operat     --config examples/commune.yaml --readings FILE --year 2025 --reference-year 2024 --out o.csv
    econome report operat     --config my-commune.yaml --invoices factures.csv --year 2025 --temperatures dju.csv --out o.csv

The readings come from ``--readings FILE.csv`` (``timestamp,point,value``, the
one format of :mod:`streams.history`, written by ``econome simulate`` and
``econome export``) or ``--from-influx`` (the InfluxDB of ``econome run``,
``ECONOME_INFLUX_*``, read over the periods asked plus a day on each side,
counters' indexes just outside them, and the hourly aggregates past the raw
readings' retention: :mod:`econome._readings`). ``report operat`` refuses a
reference year with days without data (exit 3) unless ``--allow-incomplete``.
Counters become hourly consumption as the pipeline computes it
(:func:`streams.history.hourly_consumption`), in kWh (a gas meter's m3
converted with its ``conversion_kwh_per_unit``; water in m3). The outdoor
temperature is the inventory's weather point (or ``--temperature-point``); a
commune without a weather sensor gives ``--temperatures FILE``, Météo-France's
daily file (``--station NUM_POSTE``), whose days the models see as hourly
temperatures (:func:`mv.degreedays.hourly_from_daily`). ``report portfolio``
needs none: without it, it measures no renovation savings.
Periods are ``START/END`` dates, the end excluded.

``report portfolio`` and ``report operat`` also take the bills
(:mod:`streams.invoices`, ``docs/invoices.md``): ``--invoices FILE``, or with
``--from-influx`` those ``econome import invoices`` stored. A year of an
energy comes from the meters when they cover it in full, else from the bills
when they do; the OPERAT export chooses each building's reference year and
adjusts the year to its climate (:mod:`dashboards.operat`), the portfolio adds
the consumption per calendar year back to the first bill.

:func:`register` adds the commands to the main app.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import numpy as np
import typer

from dashboards.operat import (
    DEFAULT_HEATING_SHARE,
    ENERGY_COLUMNS,
    FIRST_REFERENCE_YEAR,
    FROM_INVOICES,
    FROM_METERS,
    INTERNAL_REF,
    ClimateAdjustment,
    YearFigures,
    choose_reference_year,
    operat_rows,
    subject_buildings,
    weather_shares,
    write_operat_csv,
    year_degree_days,
    year_figures,
)
from dashboards.pdf import report_pdf
from dashboards.reports import (
    ENERGY_LABELS,
    BuildingYear,
    EnergySeries,
    YearlyConsumption,
    building_month_report,
    portfolio_report,
    renovation_report,
)
from econome._common import FIRST_DAY, LAST_DAY, atomic_path, plausible_day, writable_or_exit
from econome._common import load_or_exit as _load
from econome._progress import current, with_progress
from econome._readings import ReadingSource, load_invoices, local_range
from inventory import Building, Energy, FrenchCalendar, Inventory, Point, Quantity, Usage
from mv.baseline import (
    DailyChangePointBaseline,
    DailyObservations,
    HourlyObservations,
    TowtBaseline,
    classify_days,
    daily_energy,
    hourly_temperature_matrix,
    weekday_day_types,
)
from mv.degreedays import (
    DailyTemperature,
    daily_temperatures,
    degree_days,
    read_outdoor_temperatures,
    read_temperature_csv,
)
from mv.savings import HourlyFallback, SavingsReport, avoided_consumption, avoided_consumption_hourly_or_daily, performance_gap
from streams.aggregate import counter_tracker
from streams.counters import CounterTracker
from streams.errors import ConfigError, InsufficientData, TelemetryError
from streams.history import PointSeries, hourly_consumption, unmeasured_days
from streams.invoices import YearTotal, yearly_totals

__all__ = ["register"]

_EXIT_DATA = 3


def register(app: typer.Typer) -> None:
    """Add ``mv`` and the ``report`` group to an app.

    >>> app = typer.Typer()
    >>> register(app)
    >>> sorted(c.name or "" for c in app.registered_commands), [g.name for g in app.registered_groups]
    (['mv'], ['report'])
    """
    app.command("mv")(mv)
    reports = typer.Typer(no_args_is_help=True, help="Write HTML or PDF reports and the OPERAT export, from CSV or InfluxDB.")
    reports.command("building")(report_building)
    reports.command("renovation")(report_renovation)
    reports.command("portfolio")(report_portfolio)
    reports.command("operat")(report_operat)
    app.add_typer(reports, name="report")


def _fail(message: str, code: int = _EXIT_DATA) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


def _period(text: str) -> tuple[date, date]:
    try:
        start, end = (date.fromisoformat(part.strip()) for part in text.split("/"))
    except ValueError as exc:
        msg = f"period {text!r} must be START/END dates, e.g. 2024-01-01/2025-01-01"
        raise typer.BadParameter(msg) from exc
    if end <= start:
        msg = f"period {text!r} ends before it starts"
        raise typer.BadParameter(msg)
    return plausible_day(start, "period"), plausible_day(end, "period")




Series = tuple[list[datetime], list[float]]


def _stamps(series: PointSeries) -> list[datetime]:
    return [datetime.fromtimestamp(t, UTC) for t in series.times_s.tolist()]


def _temperature(readings: dict[str, PointSeries], point_id: str, source: ReadingSource) -> Series:
    series = readings.get(point_id)
    if series is None:
        msg = f"no reading of the outdoor temperature {point_id} in {source.where}"
        raise _fail(msg)
    return _stamps(series), series.values.tolist()


def _to_report_unit(point: Point) -> float:
    """Report units (kWh, water m3) per canonical unit (kWh, m3) of a counter."""
    if point.quantity is Quantity.GAS_VOLUME and point.conversion_kwh_per_unit:
        return point.conversion_kwh_per_unit
    return 1.0


def _consumption(series: PointSeries, tracker: CounterTracker, tz: ZoneInfo, per_unit: float) -> Series:
    """Hourly consumption of a counter, in report units, as the pipeline computes it."""
    hours, amounts = hourly_consumption(series, tracker, tz)
    return hours, (amounts * per_unit).tolist()


def _daily_observations(
    consumption: Series, temperature: Series, tz: tzinfo, types: Any, unmeasured: Collection[date] = ()
) -> DailyObservations:
    days, energy = daily_energy(*consumption, tz=tz)
    if unmeasured:  # see _point_series: a missing Linky day was a day of savings
        energy = np.where(np.array([day in unmeasured for day in days], dtype=bool), np.nan, energy)
    matrix = hourly_temperature_matrix(*temperature, days, tz=tz)
    return DailyObservations.build(days, energy, matrix, types(days))


def _hourly_observations(
    consumption: Series, temperature: Series, tz: tzinfo, unmeasured: Collection[date] = ()
) -> HourlyObservations:
    def by_hour(stamps: list[datetime], values: list[float], mean: bool) -> dict[datetime, float]:
        sums: dict[datetime, float] = {}
        counts: dict[datetime, int] = {}
        for moment, value in zip(stamps, values, strict=True):
            hour = moment.replace(minute=0, second=0, microsecond=0)
            sums[hour] = sums.get(hour, 0.0) + value
            counts[hour] = counts.get(hour, 0) + 1
        return {h: v / counts[h] if mean else v for h, v in sums.items()}

    energy = by_hour(*consumption, mean=False)
    temps = by_hour(*temperature, mean=True)
    if not energy:
        msg = "no consumption"
        raise InsufficientData([msg])
    first, last = min(energy), max(energy)
    hours = [first + timedelta(hours=i) for i in range(int((last - first) / timedelta(hours=1)) + 1)]
    return HourlyObservations(
        tuple(hours),
        np.array([math.nan if h.astimezone(tz).date() in unmeasured else energy.get(h, math.nan) for h in hours]),
        np.array([temps.get(h, math.nan) for h in hours]),
        tz=tz,
    )


def _day_types(inv: Inventory | None, building: Building | None) -> Any:
    if inv is not None and building is not None:
        calendar = FrenchCalendar(inv.organisation.school_holiday_zone)
        return lambda days: classify_days(days, building, calendar)
    return weekday_day_types


def _at(day: date, tz: tzinfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz)


ReadingsOpt = Annotated[
    Path | None, typer.Option(help="CSV timestamp,point,value of the readings (econome simulate, econome export).")
]
FromInfluxOpt = Annotated[
    bool, typer.Option("--from-influx", help="Read the readings from InfluxDB (ECONOME_INFLUX_*) over the periods asked.")
]
InvoicesOpt = Annotated[Path | None, typer.Option(
    help="Invoice CSV (docs/invoices.md); with --from-influx the invoices `econome import invoices` stored are read.")]


TempPointOpt = Annotated[
    str | None, typer.Option(help="Point of the outdoor temperature (default: the inventory's weather point).")
]


TemperaturesOpt = Annotated[Path | None, typer.Option(
    help="Outdoor temperatures from a file, instead of a weather point (a commune without a weather sensor): "
         "Météo-France's daily file of the département (meteo.data.gouv.fr, NUM_POSTE;...;AAAAMMJJ;...;TN;...;TX, "
         ".csv or .csv.gz), daily date,tmin,tmax, or timestamp,value.")]
StationOpt = Annotated[str | None, typer.Option(help="NUM_POSTE of the station in a Météo-France file of several stations.")]


@dataclasses.dataclass(frozen=True, slots=True)
class _Outdoor:
    """Where a command takes the outdoor temperature: a point of the readings, or a file's days and hourly series."""

    point: str | None = None
    days: list[DailyTemperature] | None = None
    hourly: Series | None = None

    def points(self) -> list[str]:
        return [self.point] if self.point is not None else []

    def series(self, data: dict[str, PointSeries], source: ReadingSource) -> Series:
        """The hourly temperatures; exit 3 when the point has no reading."""
        if self.hourly is not None:
            return self.hourly
        assert self.point is not None  # noqa: S101 - _outdoor gives a point or a file
        return _temperature(data, self.point, source)

    def series_or_none(self, data: dict[str, PointSeries]) -> Series | None:
        return self.hourly if self.hourly is not None else _temperature_or_none(data, self.point)

    def daily(self, data: dict[str, PointSeries], source: ReadingSource, tz: tzinfo) -> list[DailyTemperature]:
        """The days' Tn, Tx and mean: the file's own, else from the point's readings."""
        return self.days if self.days is not None else _daily_temps(self.series(data, source), tz)


def _outdoor(
    inv: Inventory | None, override: str | None, path: Path | None, station: str | None, tz: tzinfo,
    *, required: bool = True,
) -> _Outdoor:
    """The outdoor temperature: ``--temperature-point``, else ``--temperatures``, else the inventory's weather point.

    Exit 2 when none is there and ``required``, or both options are given.
    """
    if override is not None and path is not None:
        msg = "give --temperature-point or --temperatures, not both"
        raise _fail(msg, 2)
    if override is not None:
        return _Outdoor(point=override)
    if path is not None:
        try:
            days, hourly = read_outdoor_temperatures(path, tz=tz, station=station)
        except (OSError, TelemetryError, ValueError) as exc:
            msg = f"--temperatures {path}: {exc}"
            raise _fail(msg, 2) from exc
        return _Outdoor(days=days, hourly=hourly)
    weather = _weather_or_none(inv) if inv is not None else None
    if weather is None and required:
        msg = ("no outdoor temperature: give --temperatures FILE (Météo-France's daily file, with --station), "
               "--temperature-point, or --config with a weather point")
        raise _fail(msg, 2)
    return _Outdoor(point=weather)


def _tracker(inv: Inventory | None, point_id: str) -> tuple[CounterTracker, float]:
    """The point's counter tracker and report units per canonical unit; a bare kWh counter without inventory."""
    if inv is None:
        return CounterTracker(point_id, 1.0, max_gap=timedelta(hours=1)), 1.0
    try:
        point = inv.point(point_id)
    except KeyError as exc:
        msg = f"no point {point_id!r} in the inventory"
        raise _fail(msg, 2) from exc
    if not point.cumulative:
        msg = f"point {point_id} is not a counter"
        raise _fail(msg, 2)
    return counter_tracker(inv, point), _to_report_unit(point)


def mv(
    point: Annotated[str, typer.Option(help="The counter (without --config: a kWh index).")],
    baseline: Annotated[str, typer.Option(help="Reference period START/END (end excluded).")],
    reporting: Annotated[str, typer.Option(help="Reporting period START/END (end excluded).")],
    readings: ReadingsOpt = None,
    from_influx: FromInfluxOpt = False,
    temperature_point: TempPointOpt = None,
    temperatures: TemperaturesOpt = None,
    station: StationOpt = None,
    model: Annotated[str, typer.Option(help="'daily' (change-point, default) or 'towt' (hourly).")] = "daily",
    timezone: Annotated[str, typer.Option(help="Timezone of the local day (without --config).")] = "Europe/Paris",
    config: Annotated[Path | None, typer.Option(help="Inventory: the point's unit, the day types, the tariff.")] = None,
    building: Annotated[str | None, typer.Option(help="Building id in the inventory, for the day types.")] = None,
    energy: Annotated[Energy | None, typer.Option(help="Energy, to value the savings in € and kgCO2e.")] = None,
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999, help="Confidence level of the uncertainty.")] = 0.9,
) -> None:
    """Weather-normalised savings of a meter between a baseline and a reporting period, as JSON."""
    base_start, base_end = _period(baseline)
    rep_start, rep_end = _period(reporting)
    source = ReadingSource(readings, from_influx)
    inv = _load(config) if config is not None else None
    bld = None
    if inv is not None and building is not None:
        try:
            bld = inv.building(building)
        except KeyError as exc:
            msg = f"no building {building!r} in {config}"
            raise _fail(msg, 2) from exc
    tz = ZoneInfo(inv.organisation.timezone if inv is not None else timezone)
    tracker, per_unit = _tracker(inv, point)
    outdoor = _outdoor(inv, temperature_point, temperatures, station, tz)
    span = local_range(tz, min(base_start, rep_start), max(base_end, rep_end))
    data = source.load(inv, *span, [point, *outdoor.points()])
    if point not in data:
        msg = f"no reading of {point} in {source.where}"
        raise _fail(msg)
    series = _consumption(data[point], tracker, tz, per_unit)
    holes = unmeasured_days(data[point], tz)
    temps = outdoor.series(data, source)
    fallback: HourlyFallback | None = None
    try:
        if model == "towt":
            hourly = _hourly_observations(series, temps, tz, holes)
            towt = TowtBaseline().fit(hourly.select(_at(base_start, tz), _at(base_end, tz)))
            hourly_rep = hourly.select(_at(rep_start, tz), _at(rep_end, tz))
            if towt.g14_failures():
                # The daily model on the same data, used when it alone passes Guideline 14 (issue 13).
                obs = _daily_observations(series, temps, tz, _day_types(inv, bld), holes)
                daily = DailyChangePointBaseline().fit(obs.select(base_start, base_end))
                report, fallback = avoided_consumption_hourly_or_daily(
                    towt, hourly_rep, daily, obs.select(rep_start, rep_end), confidence=confidence
                )
            else:
                report = avoided_consumption(towt, hourly_rep, confidence=confidence)
        elif model == "daily":
            obs = _daily_observations(series, temps, tz, _day_types(inv, bld), holes)
            daily = DailyChangePointBaseline().fit(obs.select(base_start, base_end))
            report = avoided_consumption(daily, obs.select(rep_start, rep_end), confidence=confidence)
        else:
            msg = f"unknown model {model!r}: use 'daily' or 'towt'"
            raise typer.BadParameter(msg)
    except InsufficientData as exc:
        typer.echo(json.dumps({"error": "insufficient data", "reasons": exc.reasons}))
        raise typer.Exit(code=_EXIT_DATA) from exc
    except TelemetryError as exc:
        typer.echo(json.dumps({"error": str(exc)}))
        raise typer.Exit(code=_EXIT_DATA) from exc
    tariff = inv.tariff(energy) if inv is not None and energy is not None else None
    out = report.to_dict(tariff)
    out["baseline"] = f"{base_start}/{base_end}"
    out["reporting"] = f"{rep_start}/{rep_end}"
    out["model_requested"] = model
    out["fallback"] = fallback.to_dict() if fallback is not None else None
    if fallback is not None:
        typer.echo(
            "note: the hourly model fails ASHRAE Guideline 14 (" + "; ".join(fallback.hourly_failures)
            + "); the savings come from the daily model, which passes",
            err=True,
        )
    typer.echo(json.dumps(_json_safe(out), ensure_ascii=False))


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


# --- reports -------------------------------------------------------------------------------------------------


def _energy_points(building: Building) -> dict[Energy, list[Point]]:
    """Metered points per energy; the general meter only, when there is one, so sub-meters do not count twice."""
    out: dict[Energy, list[Point]] = {}
    for point in building.points:
        if point.energy is not None and point.cumulative:
            out.setdefault(point.energy, []).append(point)
    for energy, points in out.items():
        general = [p for p in points if p.usage in (Usage.GENERAL, Usage.WATER)]
        out[energy] = general or points
    return out


def _point_series(inv: Inventory, data: dict[str, PointSeries], point: Point) -> tuple[list[date], np.ndarray] | None:
    """Daily consumption of a counter, in report units (kWh, water m3); None when it has no reading."""
    series = data.get(point.id)
    if series is None:
        return None
    tz = inv.organisation.tz
    days, energy = daily_energy(*_consumption(series, counter_tracker(inv, point), tz, _to_report_unit(point)), tz=tz)
    # A day its readings leave uncovered is not measured, whatever the gap's spread puts there: a Linky's day
    # missing from its file read as a measured day of almost nothing (a false saving in the monthly report).
    holes = unmeasured_days(series, tz)
    if holes:
        energy = np.where(np.array([day in holes for day in days], dtype=bool), np.nan, energy)
    return days, energy


def _building_series(inv: Inventory, building: Building, data: dict[str, PointSeries]) -> list[EnergySeries]:
    out: list[EnergySeries] = []
    for energy, points in _energy_points(building).items():
        loaded = [series for point in points if (series := _point_series(inv, data, point)) is not None]
        if not loaded:
            continue
        days = sorted({day for point_days, _ in loaded for day in point_days})
        where = {day: i for i, day in enumerate(days)}
        total = np.zeros(len(days))
        for point_days, values in loaded:
            # A day one of the energy's meters read gives no figure (NaN): a second Linky whose file starts
            # mid-month left the first one alone counted as the whole building, every day "measured".
            known = np.full(len(days), np.nan)
            known[[where[day] for day in point_days]] = values
            total += known
        out.append(EnergySeries(energy, tuple(days), total))
    return out


def _metered(building: Building) -> list[str]:
    return [p.id for points in _energy_points(building).values() for p in points]


def _daily_temps(temperature: Series, tz: tzinfo) -> list[DailyTemperature]:
    return daily_temperatures(*temperature, tz=tz)


def _building(inv: Inventory, building_id: str) -> Building:
    try:
        return inv.building(building_id)
    except KeyError as exc:
        msg = f"no building {building_id!r} in the inventory"
        raise _fail(msg, 2) from exc


ConfigOpt = Annotated[Path, typer.Option(help="Inventory YAML file.")]
OutOpt = Annotated[Path, typer.Option(help="File to write: a PDF when it ends in .pdf, else HTML.")]


def _write_report(page: str, out: Path) -> None:
    """Write a report's page: a PDF (WeasyPrint) when ``out`` ends in ``.pdf``, else the HTML."""
    if out.suffix.lower() == ".pdf":
        try:
            content = report_pdf(page)
        except ConfigError as exc:
            raise _fail(str(exc), 1) from exc
    else:
        content = page.encode("utf-8")
    with atomic_path(out) as part:
        part.write_bytes(content)
    typer.echo(f"wrote {out}")


@with_progress("report building")
def report_building(
    config: ConfigOpt,
    building: Annotated[str, typer.Option(help="Building id.")],
    month: Annotated[str, typer.Option(help="Month, YYYY-MM.")],
    out: OutOpt,
    readings: ReadingsOpt = None,
    from_influx: FromInfluxOpt = False,
    temperature_point: TempPointOpt = None,
    temperatures: TemperaturesOpt = None,
    station: StationOpt = None,
) -> None:
    """Monthly report of one building (HTML, or PDF when --out ends in .pdf)."""
    writable_or_exit(out)
    source = ReadingSource(readings, from_influx)
    inv = _load(config)
    bld = _building(inv, building)
    try:
        year, mon = (int(x) for x in month.split("-"))
        first = date(year, mon, 1)
    except ValueError as exc:
        msg = f"month {month!r} must be YYYY-MM"
        raise typer.BadParameter(msg) from exc
    plausible_day(first, "--month")
    outdoor = _outdoor(inv, temperature_point, temperatures, station, inv.organisation.tz)
    # The month and, for the comparison, the same month a year before.
    span = local_range(inv.organisation.tz, date(year - 1, mon, 1), (first + timedelta(days=31)).replace(day=1))
    data = source.load(inv, *span, [*_metered(bld), *outdoor.points()])
    series = _building_series(inv, bld, data)
    if not series:
        msg = f"no consumption of building {building} in {source.where}"
        raise _fail(msg)
    temps = outdoor.daily(data, source, inv.organisation.tz)
    current()("writing the report", 0, 1)
    try:
        page = building_month_report(inv, bld, year, mon, series, degree_days(temps), {t.day: t.mean_c for t in temps})
    except InsufficientData as exc:  # a month without data: no report of "0 kWh, 0 €"
        raise _fail(str(exc)) from exc
    _write_report(page, out)
    current()("writing the report", 1, 1)


def _renovation_meter(building: Building, renovation_usages: list[Usage], point_id: str | None) -> Point:
    candidates = [p for p in building.points if p.energy is not None and p.cumulative and p.energy is not Energy.WATER]
    if point_id is not None:
        for p in candidates:
            if p.id == point_id:
                return p
        msg = f"no energy meter {point_id!r} in building {building.id}"
        raise _fail(msg, 2)
    for p in candidates:
        if p.usage in renovation_usages:
            return p
    for p in candidates:
        if p.usage is Usage.GENERAL:
            return p
    msg = f"building {building.id} has no energy meter"
    raise _fail(msg)


@with_progress("report renovation")
def report_renovation(
    config: ConfigOpt,
    building: Annotated[str, typer.Option(help="Building id.")],
    out: OutOpt,
    readings: ReadingsOpt = None,
    from_influx: FromInfluxOpt = False,
    temperature_point: TempPointOpt = None,
    temperatures: TemperaturesOpt = None,
    station: StationOpt = None,
    renovation: Annotated[int, typer.Option(help="Index of the renovation in the building's list (default: the last).")] = -1,
    point: Annotated[str | None, typer.Option(help="Meter to analyse (default: the one of the renovated usage).")] = None,
    baseline: Annotated[
        str | None, typer.Option(help="Reference period START/END (default: the 365 days before the works).")
    ] = None,
    reporting: Annotated[str | None, typer.Option(help="Reporting period START/END (default: from the works on).")] = None,
    gap_months: Annotated[int, typer.Option(min=1, help="Months below the promise before the performance-gap alert.")] = 3,
) -> None:
    """Follow-up report of a renovation: savings against the promise (HTML, or PDF when --out ends in .pdf)."""
    writable_or_exit(out)
    source = ReadingSource(readings, from_influx)
    inv = _load(config)
    bld = _building(inv, building)
    if not bld.renovations:
        msg = f"building {building} has no renovation in the inventory"
        raise _fail(msg, 2)
    try:
        works = bld.renovations[renovation]
    except IndexError as exc:
        msg = f"building {building} has {len(bld.renovations)} renovation(s)"
        raise _fail(msg, 2) from exc
    meter = _renovation_meter(bld, works.usages, point)
    assert meter.energy is not None  # noqa: S101 - _renovation_meter keeps energy meters only
    tz = inv.organisation.tz
    outdoor = _outdoor(inv, temperature_point, temperatures, station, tz)
    base_start, base_end = _period(baseline) if baseline else (works.date - timedelta(days=365), works.date)
    # The reference period and the reporting one (by default from the works up to today).
    asked = _period(reporting) if reporting else (works.date, datetime.now(tz).date() + timedelta(days=1))
    data = source.load(inv, *local_range(tz, min(base_start, asked[0]), max(base_end, asked[1])), [meter.id, *outdoor.points()])
    loaded = _point_series(inv, data, meter)
    if loaded is None:
        msg = f"no reading of {meter.id} in {source.where}"
        raise _fail(msg)
    rep_start, rep_end = _period(reporting) if reporting else (works.date, loaded[0][-1] + timedelta(days=1))
    calendar = FrenchCalendar(inv.organisation.school_holiday_zone)
    days, energy = loaded
    matrix = hourly_temperature_matrix(*outdoor.series(data, source), days, tz=tz)
    obs = DailyObservations.build(days, energy, matrix, classify_days(days, bld, calendar))
    current()("fitting the baseline, savings", 0, 2)
    try:
        model = DailyChangePointBaseline().fit(obs.select(base_start, base_end))
        reporting_obs = obs.select(rep_start, rep_end)
        result = avoided_consumption(model, reporting_obs)
    except InsufficientData as exc:
        raise _fail("insufficient data: " + "; ".join(exc.reasons)) from exc
    except TelemetryError as exc:
        raise _fail(str(exc)) from exc
    alert = performance_gap(result, works, building_id=bld.id, months=gap_months)
    base_obs = obs.select(base_start, base_end)
    current()("fitting the baseline, savings", 2, 2)
    page = renovation_report(
        inv,
        bld,
        works,
        meter.energy,
        result,
        alert,
        baseline_points=(base_obs.daily_mean_c, base_obs.energy_kwh),
        reporting_points=(reporting_obs.daily_mean_c, reporting_obs.energy_kwh),
    )
    _write_report(page, out)
    summary = result.to_dict(inv.tariff(meter.energy))
    summary.pop("monthly")
    summary["performance_gap"] = alert.description if alert is not None else None
    typer.echo(json.dumps(_json_safe(summary), ensure_ascii=False))


def _all_series(inv: Inventory, data: dict[str, PointSeries], what: str) -> dict[str, list[EnergySeries]]:
    """Daily consumption per energy of every building, computed once for all the years a command sums."""
    return {bld.id: _building_series(inv, bld, data) for _, bld in current().track(inv.buildings(), f"reading {what}")}


def _avoided(
    inv: Inventory, bld: Building, data: dict[str, PointSeries], temp: Series, year: int
) -> list[tuple[Energy, float]]:
    """Savings of the building's renovations over the year; none when the model cannot be trusted."""
    out: list[tuple[Energy, float]] = []
    tz = inv.organisation.tz
    calendar = FrenchCalendar(inv.organisation.school_holiday_zone)
    for works in bld.renovations:
        start = max(works.date, date(year, 1, 1))
        end = date(year + 1, 1, 1)
        if start >= end:
            continue
        meter = _renovation_meter(bld, works.usages, None)
        loaded = _point_series(inv, data, meter)
        if loaded is None or meter.energy is None:
            continue
        days, energy = loaded
        obs = DailyObservations.build(
            days, energy, hourly_temperature_matrix(*temp, days, tz=tz), classify_days(days, bld, calendar)
        )
        try:
            model = DailyChangePointBaseline().fit(obs.select(works.date - timedelta(days=365), works.date))
            result: SavingsReport = avoided_consumption(model, obs.select(start, end))
        except TelemetryError as exc:
            print(f"warning: no savings for {bld.id}: {exc}", file=sys.stderr)
            continue
        if result.total.significant:
            out.append((meter.energy, result.total.savings_kwh))
    return out


def _all_metered(inv: Inventory) -> list[str]:
    return [pid for _, bld in inv.buildings() for pid in _metered(bld)]


@with_progress("report portfolio")
def report_portfolio(
    config: ConfigOpt,
    year: Annotated[int, typer.Option(min=FIRST_DAY.year, max=LAST_DAY.year, help="Year reported.")],
    out: OutOpt,
    readings: ReadingsOpt = None,
    from_influx: FromInfluxOpt = False,
    invoices: InvoicesOpt = None,
    temperature_point: TempPointOpt = None,
    temperatures: TemperaturesOpt = None,
    station: StationOpt = None,
    price_escalation: Annotated[float, typer.Option(help="Yearly price rise for the cost of inaction.")] = 0.04,
    reference_year: Annotated[int | None, typer.Option(
        min=FIRST_REFERENCE_YEAR, max=LAST_DAY.year,
        help="Reference year of the cost of inaction (Décret tertiaire, 2010 or later) for the buildings without "
             "operat_reference_year; default: the complete year 2010-2019 of their invoices with the highest "
             f"consumption per m², else the earliest year from {FIRST_REFERENCE_YEAR} on that the subject "
             "buildings' data cover in full.")] = None,
) -> None:
    """Annual portfolio report with the ADEME/CEP indicators (HTML, or PDF when --out ends in .pdf).

    Each energy's year comes from the meters, or from the invoices when the meters do
    not cover it in full and the invoices do. The cost of inaction counts only the
    buildings subject to the Décret tertiaire (1,000 m² of tertiary floor area on their
    site), against 60 % of their consumption of the reference year. With invoices, a
    yearly follow-up gives each building's consumption per energy and calendar year back
    to the first invoiced year, the source of each figure marked.
    """
    writable_or_exit(out)
    source = _source(readings, from_influx, invoices)
    inv = _load(config)
    bills = load_invoices(inv, invoices, source)
    invoiced = yearly_totals(bills)
    # Outdoor temperatures serve only the renovation savings: a commune without any is reported all the same.
    outdoor = _outdoor(inv, temperature_point, temperatures, station, inv.organisation.tz, required=False)
    # The year, the reference years of the renovations whose savings it counts, and the décret's reference year.
    works = [w.date for _, b in inv.buildings() for w in b.renovations if w.date < date(year + 1, 1, 1)]
    earliest = date(min(reference_year or FIRST_REFERENCE_YEAR, year), 1, 1)
    first_billed = min((b.start.year for b in bills), default=year)
    first = min([date(year, 1, 1), earliest, date(first_billed, 1, 1), *(d - timedelta(days=365) for d in works)])
    points = [*_all_metered(inv), *outdoor.points()]
    data = _load_span(source, inv, first, date(year + 1, 1, 1), points, required=not bills)
    built = _all_series(inv, data, f"consumption {year}")
    every = tuple(Energy)
    declared = year_figures(_metered_energies(inv), built, invoiced, year, energies=every)
    totals = declared.totals
    # Days without data summed over the energies, as the report counts them.
    missing = {b: sum(gaps.values()) for b, gaps in declared.energy_missing.items()}
    if not totals:
        msg = f"no consumption in {year} in {source.where if source is not None else invoices}"
        raise _fail(msg)
    subject = subject_buildings(inv.sites)
    note = ""
    asked = reference_year is not None
    if reference_year is None:
        reference_year = _full_reference_year(inv, built, year, {b for b in subject if b in totals})
        note = (f" (la première année complète depuis {FIRST_REFERENCE_YEAR} dans les données)" if reference_year < year
                else f" (aucune année complète avant {year} dans les données\u00a0: l'année elle-même)")
    own: dict[str, int] = {}
    for _, bld in inv.buildings():
        # The inventory's year first, then --reference-year, then the invoices' choice.
        chosen = bld.operat_reference_year or (
            None if asked else choose_reference_year(bld, invoiced.get(bld.id, {}), _energy_points(bld)))
        if chosen is not None and chosen != reference_year:
            own[bld.id] = chosen
    references = {y: year_figures(_metered_energies(inv), built, invoiced, y).totals for y in {reference_year, *own.values()}}
    year_of = {b: own.get(b, reference_year) for b in totals}
    effective = {year_of[b] for b in subject if b in totals}
    if own and len(effective) == 1:
        reference_year = effective.pop()
        note = " (celle de l'inventaire, ou l'année complète 2010-2019 des factures la plus consommatrice par m²)"
    elif own_subject := {b: y for b, y in own.items() if b in subject and b in totals}:
        # Only the buildings the cost of inaction counts, by the names the readers know.
        names = {bld.id: bld.name for _, bld in inv.buildings()}
        listed = ", ".join(f"{names[b]} {y}" for b, y in sorted(own_subject.items(), key=lambda item: names[item[0]]))
        note += f" ; pour {listed} : leur propre année de référence (inventaire ou factures)"
    # Without outdoor temperatures (a commune known from its bills only) no renovation savings are measured.
    temp = outdoor.series_or_none(data)
    if temp is None and any(b.renovations for _, b in inv.buildings()) and source is not None:
        which = f"no reading of the outdoor temperature {outdoor.point} in {source.where}" if outdoor.point else (
            "no outdoor temperature (no weather point, no --temperatures)")
        typer.echo(f"warning: {which}: no renovation savings measured", err=True)
    rows = []
    for _, bld in current().track(inv.buildings(), "savings per building"):
        if bld.id in totals:
            avoided = (tuple(_avoided(inv, bld, data, temp, year)) if bld.renovations and temp is not None else ())
            ref_totals = references[year_of[bld.id]].get(bld.id, {})
            ref_kwh = sum(kwh for e, kwh in ref_totals.items() if e in ENERGY_COLUMNS)
            billed = frozenset(e for e, src in declared.sources.get(bld.id, {}).items() if src == FROM_INVOICES)
            # The bills' own amounts are the cost of the energies they give, when every bill of the year has one.
            paid = [(e, invoiced[bld.id][e][year].amount_eur) for e in sorted(billed, key=list(Energy).index)]
            rows.append(BuildingYear(bld, totals[bld.id], missing.get(bld.id, 0), avoided, bld.id in subject,
                                     ref_kwh or None, billed, tuple((e, eur) for e, eur in paid if eur is not None)))
    follow_up = _follow_up(inv, built, invoiced, first_billed, year) if bills else []
    page = portfolio_report(inv, year, rows, price_escalation=price_escalation, reference_year=reference_year,
                            reference_note=note, yearly=follow_up)
    _write_report(page, out)


def _metered_energies(inv: Inventory) -> list[tuple[str, list[Energy]]]:
    return [(bld.id, list(_energy_points(bld))) for _, bld in inv.buildings()]


def _follow_up(
    inv: Inventory, built: dict[str, list[EnergySeries]], invoiced: dict[str, dict[Energy, dict[int, YearTotal]]],
    first: int, last: int,
) -> list[YearlyConsumption]:
    """Each building's consumption per energy and calendar year, from the meters or the invoices."""
    years = {y: year_figures(_metered_energies(inv), built, invoiced, y, energies=tuple(Energy)) for y in range(first, last + 1)}
    out: list[YearlyConsumption] = []
    for _, bld in inv.buildings():
        energies = sorted({e for d in years.values() for e in d.totals.get(bld.id, {})}, key=list(Energy).index)
        for energy in energies:
            cells = {
                y: (d.totals[bld.id][energy], d.sources[bld.id][energy], d.energy_missing[bld.id][energy] == 0)
                for y, d in years.items() if energy in d.totals.get(bld.id, {})
            }
            out.append(YearlyConsumption(bld, energy, cells))
    return out


def _full_reference_year(inv: Inventory, built: dict[str, list[EnergySeries]], year: int, subject: set[str]) -> int:
    """The earliest year from 2010 whose data cover in full every subject building with data in ``year``."""
    for candidate in range(FIRST_REFERENCE_YEAR, year):
        gaps, absent = _operat_missing_days(inv, built, candidate)
        if subject and not subject & set(absent) and all(gaps.get(b, 1) == 0 for b in subject):
            return candidate
    return year


def _source(readings: Path | None, from_influx: bool, invoices: Path | None) -> ReadingSource | None:
    """The meters' readings; none when only ``--invoices`` is given."""
    if readings is None and not from_influx and invoices is not None:
        return None
    return ReadingSource(readings, from_influx)


def _load_span(
    source: ReadingSource | None, inv: Inventory, first: date, end: date, points: list[str], *, required: bool
) -> dict[str, PointSeries]:
    if source is None or not points:
        return {}
    return source.load(inv, *local_range(inv.organisation.tz, first, end), points, required=required)


def _heating_shares(text: list[str]) -> dict[Energy, float]:
    shares = dict(DEFAULT_HEATING_SHARE)
    for item in text:
        name, _, value = item.partition("=")
        try:
            share = float(value)
            energy = Energy(name.strip())
        except ValueError as exc:
            msg = f"--heating-share {item!r}: write ENERGY=FRACTION, e.g. electricity=0.6"
            raise typer.BadParameter(msg) from exc
        if not 0 <= share <= 1:
            msg = f"--heating-share {item!r}: the fraction is between 0 and 1"
            raise typer.BadParameter(msg)
        shares[energy] = share
    return shares


def _model_shares(
    inv: Inventory, bld: Building, series: EnergySeries, temperature: Series, year: int
) -> tuple[float, float] | None:
    """The heating and cooling parts of the year in the M&V daily model of the meters; None when it cannot be fitted."""
    tz = inv.organisation.tz
    start, end = date(year, 1, 1), date(year + 1, 1, 1)
    keep = [i for i, d in enumerate(series.days) if start <= d < end]
    days = [series.days[i] for i in keep]
    calendar = FrenchCalendar(inv.organisation.school_holiday_zone)
    try:
        obs = DailyObservations.build(days, series.values[keep], hourly_temperature_matrix(*temperature, days, tz=tz),
                                      classify_days(days, bld, calendar))
        return weather_shares(DailyChangePointBaseline().fit(obs), obs)
    except TelemetryError:
        return None


def _adjustment(
    inv: Inventory, bld: Building, year: int, declared: YearFigures, built: dict[str, list[EnergySeries]],
    temps: dict[int, list[DailyTemperature]], temperature: Series | None, reference_year: int,
    shares: dict[Energy, float],
) -> ClimateAdjustment | str:
    dju_year, djc_year = year_degree_days(temps.get(year, []), year)
    dju_reference, djc_reference = year_degree_days(temps.get(reference_year, []), reference_year)
    missing = [str(y) for y, d in ((year, dju_year), (reference_year, dju_reference)) if math.isnan(d)]
    if missing:
        return f"non ajustée : températures extérieures de {' et '.join(missing)} manquantes ou incomplètes"
    used = {e: kwh for e, kwh in declared.totals.get(bld.id, {}).items() if kwh > 0}
    if not used:
        return "non ajustée : pas de consommation"
    series = {s.energy: s for s in built.get(bld.id, [])}
    heating = cooling = 0.0
    how: dict[str, list[str]] = {}
    for energy, kwh in used.items():
        found = None
        if declared.sources[bld.id].get(energy) == FROM_METERS and temperature is not None and energy in series:
            found = _model_shares(inv, bld, series[energy], temperature, year)
        label = "modèle M&V des compteurs" if found is not None else "part par défaut"
        sh, sc = found if found is not None else (shares[energy], 0.0)
        cold = f", froid {100 * sc:.0f}\u00a0%" if sc >= 0.005 else ""
        how.setdefault(label, []).append(f"{ENERGY_LABELS[energy].lower()} {100 * sh:.0f}\u00a0%{cold}")
        heating += kwh * sh
        cooling += kwh * sc
    parts = "; ".join(f"{label} ({', '.join(names)})" for label, names in how.items())
    formula = f"C×(1−sh−sc) + C×sh×DJU {reference_year}/DJU {year} + C×sc×DJC {reference_year}/DJC {year}"
    total = sum(used.values())
    return ClimateAdjustment(heating / total, dju_year, dju_reference, f"{formula} ; parts : {parts}",
                             cooling / total, djc_year, djc_reference)


@with_progress("report operat")
def report_operat(
    config: ConfigOpt,
    year: Annotated[int, typer.Option(min=FIRST_DAY.year, max=LAST_DAY.year, help="Year declared.")],
    out: Annotated[Path, typer.Option(help="CSV file to write (a name ending in .csv): the OPERAT import format.")],
    reference_year: Annotated[int | None, typer.Option(
        min=FIRST_REFERENCE_YEAR, max=LAST_DAY.year,
        help="Reference year of the buildings without operat_reference_year in the inventory (2010 or later); default: "
             "the complete year 2010-2019 of their invoices with the highest consumption per m².")] = None,
    readings: ReadingsOpt = None,
    from_influx: FromInfluxOpt = False,
    invoices: InvoicesOpt = None,
    temperatures: Annotated[Path | None, typer.Option(
        help="Outdoor temperatures for the climate adjustment of years the readings do not hold: "
             "Météo-France's daily file of the département (meteo.data.gouv.fr, NUM_POSTE;...;AAAAMMJJ;...;TN;...;TX, "
             ".csv or .csv.gz), daily date,tmin,tmax, or timestamp,value.")] = None,
    station: Annotated[str | None, typer.Option(
        help="NUM_POSTE of the station in a Météo-France file of several stations.")] = None,
    normal_dju: Annotated[float | None, typer.Option(
        min=1, help="The station's mean DJU 2000-2019 (Météo-France, or shown by OPERAT): the year and the "
                    "reference are then both brought to it, as the arrêté does (extra columns).")] = None,
    heating_share: Annotated[list[str] | None, typer.Option(
        help="Share of an energy taken as heating where no meter covers the year, ENERGY=FRACTION "
             "(repeat; default gas and fuel 0.8, pellets and heating network 0.9, electricity 0).")] = None,
    only_subject: Annotated[bool, typer.Option(
        help="Keep only the buildings subject to the décret (1,000 m² of tertiary floor area on their site).")] = False,
    allow_incomplete: Annotated[bool, typer.Option(
        help="Export even when the reference year has days without data (flagged in the CSV).")] = False,
) -> None:
    """OPERAT export (Décret tertiaire): annual consumption per EFA and the trajectory (CSV).

    Each energy's year comes from the meters, or from the invoices when the meters do
    not cover it in full and the invoices do. Days without data in either year are
    counted per building in the CSV and on stderr; a reference year with days missing,
    or without any data for a building that has data in the declared year, is refused
    (exit 3) unless --allow-incomplete: its total would be too low and the whole
    trajectory wrong. A building without any data in a year has that year's columns
    left blank. The year's consumption adjusted to the reference year's climate, and
    how, are in the last columns.
    """
    if out.suffix.lower() != ".csv":
        msg = f"--out {out}: the OPERAT export is a CSV file, give a name ending in .csv"
        raise _fail(msg, 2)
    writable_or_exit(out)
    shares = _heating_shares(heating_share or [])
    source = _source(readings, from_influx, invoices)
    inv = _load(config)
    bills = load_invoices(inv, invoices, source)
    invoiced = yearly_totals(bills)
    tz, points = inv.organisation.tz, _all_metered(inv)
    weather = _weather_or_none(inv)
    with_weather = [*points, weather] if weather else points
    chosen: dict[str, int | None] = {}
    for _, bld in inv.buildings():
        chosen[bld.id] = (bld.operat_reference_year or reference_year
                          or choose_reference_year(bld, invoiced.get(bld.id, {}), _energy_points(bld)))
    data = _load_span(source, inv, date(year, 1, 1), date(year + 1, 1, 1), with_weather, required=not bills)
    built = _all_series(inv, data, f"consumption {year}")
    declared = year_figures(_metered_energies(inv), built, invoiced, year)
    year_temperature = _temperature_or_none(data, weather)
    temps = _temperatures(temperatures, tz, station)
    if year_temperature is not None and year not in temps:
        temps[year] = daily_temperatures(*year_temperature, tz=tz)
    reference = YearFigures()
    reference_years = sorted({y for y in chosen.values() if y is not None})
    for ref in reference_years:
        ref_data = _load_span(source, inv, date(ref, 1, 1), date(ref + 1, 1, 1), with_weather, required=False)
        ref_built = _all_series(inv, ref_data, f"consumption {ref}")
        part = year_figures(_metered_energies(inv), ref_built, invoiced, ref, [b for b, y in chosen.items() if y == ref])
        reference.totals.update(part.totals)
        reference.missing.update(part.missing)
        reference.absent.extend(part.absent)
        reference.sources.update(part.sources)
        ref_temperature = _temperature_or_none(ref_data, weather)
        if ref_temperature is not None and ref not in temps:
            temps[ref] = daily_temperatures(*ref_temperature, tz=tz)
    where = source.where if source is not None else str(invoices)
    _warn_missing(f"{year}", declared.missing, declared.absent, where)
    for ref in reference_years:
        of_year = {b for b, y in chosen.items() if y == ref}
        _warn_missing(f"{ref} (reference year)", {b: n for b, n in reference.missing.items() if b in of_year},
                      [b for b in reference.absent if b in of_year], where)
    # A reference year known only from estimated bills may be far from what was used.
    for building_id, ref in sorted((b, y) for b, y in chosen.items() if y is not None):
        from_bills = [e for e, src in reference.sources.get(building_id, {}).items() if src == FROM_INVOICES]
        if from_bills and all(invoiced[building_id][e][ref].estimated for e in from_bills):
            typer.echo(f"warning: {building_id}: the reference year {ref} is known only from estimated bills "
                       "(estimated index): check it against read ones", err=True)
    # An energy billed only from after the reference year is taken as not supplied then: said, it may be bills not entered.
    for building_id, ref in sorted((b, y) for b, y in chosen.items() if y is not None):
        lacking = sorted(e.value for e in declared.totals.get(building_id, {})
                         if building_id in reference.totals and e not in reference.totals[building_id])
        if lacking:
            typer.echo(f"warning: {building_id}: no {', '.join(lacking)} in the reference year {ref} (its bills start "
                       "later: counted as not supplied then; if it was, enter those bills)", err=True)
    # A building declared without any reference data has no trajectory: as incomplete as one missing days.
    unreferenced = sorted(b for b in reference.absent if b not in declared.absent)
    unchosen = sorted(b for b, y in chosen.items() if y is None and b in declared.totals)
    if unchosen:
        typer.echo(f"warning: no reference year for {len(unchosen)} building(s) (no operat_reference_year, no "
                   f"--reference-year, no complete invoiced year 2010-2019): {', '.join(unchosen)}", err=True)
    if (any(reference.missing.values()) or unreferenced) and not allow_incomplete:
        without = f" ({', '.join(unreferenced)} without any)" if unreferenced else ""
        years = ", ".join(str(y) for y in reference_years)
        msg = (f"the reference year {years} has days without data{without} (above): its consumption "
               "would be too low and the trajectory wrong; choose a complete reference year, or pass "
               "--allow-incomplete to export it flagged")
        raise _fail(msg)
    adjustments: dict[str, ClimateAdjustment | str] = {}
    for _, bld in current().track(inv.buildings(), "climate adjustment"):
        chosen_year = chosen[bld.id]
        if chosen_year is not None and bld.id in declared.totals and bld.id in reference.totals:
            found = _adjustment(inv, bld, year, declared, built, temps, year_temperature, chosen_year, shares)
            adjustments[bld.id] = (dataclasses.replace(found, normal_dju=normal_dju)
                                   if isinstance(found, ClimateAdjustment) else found)
    rows = operat_rows(
        inv.sites, year, declared.totals, {b: y for b, y in chosen.items() if y is not None}, reference.totals,
        only_subject=only_subject, missing_days=declared.missing, reference_missing_days=reference.missing,
        without_data=declared.absent, sources={b: declared.source(b) for b in declared.totals},
        reference_sources={b: reference.source(b) for b in reference.totals}, adjustments=adjustments,
    )
    subject = subject_buildings(inv.sites)
    unidentified = sorted(b.id for _, b in inv.buildings() if b.id in subject and not b.operat_id
                          and any(r[INTERNAL_REF] == b.id for r in rows))
    if unidentified:
        typer.echo(f"warning: {len(unidentified)} subject building(s) without operat_id in the inventory, exported "
                   f"with an empty EFA identifier (give the one of the OPERAT platform): {', '.join(unidentified)}",
                   err=True)
    with atomic_path(out) as part_path:
        write_operat_csv(rows, part_path)
    typer.echo(f"wrote {out} ({len(rows)} EFA)")


def _warn_missing(which: str, days: dict[str, int], none: list[str], where: str) -> None:
    short = {b: n for b, n in days.items() if n}
    if short:
        listed = ", ".join(f"{b} {n} days" for b, n in sorted(short.items()))
        typer.echo(f"warning: {which} incomplete in {where}: {listed} without data", err=True)
    if none:
        typer.echo(f"warning: no data in {which} in {where} for {len(none)} building(s), "
                   f"their columns left blank: {', '.join(none)}", err=True)


def _weather_or_none(inv: Inventory) -> str | None:
    for _, point in inv.points():
        if point.quantity is Quantity.TEMPERATURE and point.usage is Usage.WEATHER:
            return point.id
    return None


def _temperature_or_none(data: dict[str, PointSeries], point_id: str | None) -> Series | None:
    series = data.get(point_id) if point_id is not None else None
    if series is None or not series.times_s.size:
        return None
    return _stamps(series), series.values.tolist()


def _temperatures(path: Path | None, tz: tzinfo, station: str | None = None) -> dict[int, list[DailyTemperature]]:
    """``--temperatures`` (``--station`` in a Météo-France file), per year."""
    if path is None:
        return {}
    try:
        days = read_temperature_csv(path, tz=tz, station=station)
    except (OSError, TelemetryError, ValueError) as exc:
        msg = f"--temperatures {path}: {exc}"
        raise _fail(msg, 2) from exc
    out: dict[int, list[DailyTemperature]] = {}
    for day in days:
        out.setdefault(day.day.year, []).append(day)
    return out


def _operat_missing_days(
    inv: Inventory, built: dict[str, list[EnergySeries]], year: int
) -> tuple[dict[str, int], list[str]]:
    """Per building with data in the year, the most days one of its declared energies lacks; the buildings without any."""
    start, end = date(year, 1, 1), date(year + 1, 1, 1)
    whole = (end - start).days
    out: dict[str, int] = {}
    absent: list[str] = []
    for _, bld in inv.buildings():
        energies = [e for e in _energy_points(bld) if e in ENERGY_COLUMNS]
        if not energies:
            continue
        series = {s.energy: s for s in built.get(bld.id, [])}
        gaps = [series[e].total(start, end)[1] if e in series else whole for e in energies]
        if min(gaps) == whole:
            absent.append(bld.id)
        else:
            out[bld.id] = max(gaps)
    return out, absent
