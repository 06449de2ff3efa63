r"""The ``econome mv`` and ``econome report`` commands: savings and reports from CSV files.

::

    econome mv --consumption gas.csv --temperature meteo.csv \\
        --baseline 2023-09-01/2024-09-01 --reporting 2024-09-01/2025-09-01
    econome report building   --config examples/commune.yaml --data DIR --building mairie --month 2025-01 --out m.html
    econome report renovation --config examples/commune.yaml --data DIR --building ecole-curie --out r.html
    econome report portfolio  --config examples/commune.yaml --data DIR --year 2025 --out p.html
    econome report operat     --config examples/commune.yaml --data DIR --year 2025 --reference-year 2024 --out o.csv

CSV files are ``timestamp,value``: consumption per interval starting at the
timestamp (kWh; a gas meter's m3 are converted with its
``conversion_kwh_per_unit``; water in m3), outdoor temperature in °C. For the
reports, ``--data DIR`` holds one ``<point-id>.csv`` per metered point and the
outdoor temperature in the file of the inventory's weather point (or ``--temperature``).
Periods are ``START/END`` dates, the end excluded.

:func:`register` adds the commands to the main app.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import numpy as np
import typer

from dashboards.operat import operat_rows, write_operat_csv
from dashboards.reports import BuildingYear, EnergySeries, building_month_report, portfolio_report, renovation_report
from econome._common import load_or_exit as _load
from econome._progress import current, with_progress
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
from mv.degreedays import DailyTemperature, degree_days, read_series_csv, read_temperature_csv
from mv.savings import SavingsReport, avoided_consumption, performance_gap
from streams.errors import InsufficientData, TelemetryError

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
    reports = typer.Typer(no_args_is_help=True, help="Write HTML reports and the OPERAT export from CSV files.")
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
    return start, end




def _series(path: Path) -> tuple[list[datetime], list[float]]:
    if not path.exists():
        msg = f"{path}: no such file"
        raise _fail(msg)
    try:
        return read_series_csv(path)
    except TelemetryError as exc:
        raise _fail(str(exc)) from exc


def _daily_observations(
    consumption: tuple[list[datetime], list[float]],
    temperature: Path,
    tz: tzinfo,
    types: Any,
) -> DailyObservations:
    days, energy = daily_energy(*consumption, tz=tz)
    with temperature.open(encoding="utf-8") as handle:
        header = handle.readline()
    if "tmin" in header:
        daily = {d.day: d.tmean_c for d in read_temperature_csv(temperature)}
        matrix = np.array([daily.get(d, math.nan) for d in days])[:, None]
    else:
        stamps, values = _series(temperature)
        matrix = hourly_temperature_matrix(stamps, values, days, tz=tz)
    return DailyObservations.build(days, energy, matrix, types(days))


def _hourly_observations(consumption: tuple[list[datetime], list[float]], temperature: Path, tz: tzinfo) -> HourlyObservations:
    def by_hour(stamps: list[datetime], values: list[float], mean: bool) -> dict[datetime, float]:
        sums: dict[datetime, float] = {}
        counts: dict[datetime, int] = {}
        for moment, value in zip(stamps, values, strict=True):
            hour = moment.replace(minute=0, second=0, microsecond=0)
            sums[hour] = sums.get(hour, 0.0) + value
            counts[hour] = counts.get(hour, 0) + 1
        return {h: v / counts[h] if mean else v for h, v in sums.items()}

    energy = by_hour(*consumption, mean=False)
    temps = by_hour(*_series(temperature), mean=True)
    first, last = min(energy), max(energy)
    hours = [first + timedelta(hours=i) for i in range(int((last - first) / timedelta(hours=1)) + 1)]
    return HourlyObservations(
        tuple(hours),
        np.array([energy.get(h, math.nan) for h in hours]),
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


def mv(
    consumption: Annotated[Path, typer.Option(help="CSV timestamp,value of the consumption per interval, kWh.")],
    temperature: Annotated[Path, typer.Option(help="CSV timestamp,value of the outdoor temperature, °C (or date,tmin,tmax).")],
    baseline: Annotated[str, typer.Option(help="Reference period START/END (end excluded).")],
    reporting: Annotated[str, typer.Option(help="Reporting period START/END (end excluded).")],
    model: Annotated[str, typer.Option(help="'daily' (change-point, default) or 'towt' (hourly).")] = "daily",
    timezone: Annotated[str, typer.Option(help="Timezone of the local day.")] = "Europe/Paris",
    config: Annotated[Path | None, typer.Option(help="Inventory, for the day types and the tariff.")] = None,
    building: Annotated[str | None, typer.Option(help="Building id in the inventory, for the day types.")] = None,
    energy: Annotated[Energy | None, typer.Option(help="Energy, to value the savings in € and kgCO2e.")] = None,
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999, help="Confidence level of the uncertainty.")] = 0.9,
) -> None:
    """Weather-normalised savings of a meter between a baseline and a reporting period, as JSON."""
    base_start, base_end = _period(baseline)
    rep_start, rep_end = _period(reporting)
    inv = _load(config) if config is not None else None
    bld = None
    if inv is not None and building is not None:
        try:
            bld = inv.building(building)
        except KeyError as exc:
            msg = f"no building {building!r} in {config}"
            raise _fail(msg, 2) from exc
    tz: tzinfo = ZoneInfo(inv.organisation.timezone if inv is not None else timezone)
    series = _series(consumption)
    if not temperature.exists():
        msg = f"{temperature}: no such file"
        raise _fail(msg)
    try:
        if model == "towt":
            hourly = _hourly_observations(series, temperature, tz)
            towt = TowtBaseline().fit(hourly.select(_at(base_start, tz), _at(base_end, tz)))
            report = avoided_consumption(towt, hourly.select(_at(rep_start, tz), _at(rep_end, tz)), confidence=confidence)
        elif model == "daily":
            obs = _daily_observations(series, temperature, tz, _day_types(inv, bld))
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


def _point_series(data: Path, point: Point, tz: tzinfo) -> tuple[list[date], np.ndarray] | None:
    path = data / f"{point.id}.csv"
    if not path.exists():
        return None
    stamps, values = _series(path)
    factor = point.conversion_kwh_per_unit if point.quantity is Quantity.GAS_VOLUME and point.conversion_kwh_per_unit else 1.0
    if point.unit in ("Wh", "L"):
        factor /= 1000
    elif point.unit == "MWh":
        factor *= 1000
    days, energy = daily_energy(stamps, [v * factor for v in values], tz=tz)
    return days, energy


def _building_series(inv: Inventory, building: Building, data: Path) -> list[EnergySeries]:
    tz = inv.organisation.tz
    out: list[EnergySeries] = []
    for energy, points in _energy_points(building).items():
        total: dict[date, float] = {}
        for point in points:
            loaded = _point_series(data, point, tz)
            if loaded is None:
                continue
            for day, value in zip(loaded[0], loaded[1].tolist(), strict=True):
                total[day] = total.get(day, 0.0) + value
        if total:
            days = sorted(total)
            out.append(EnergySeries(energy, tuple(days), np.array([total[d] for d in days])))
    return out


def _temperature_path(inv: Inventory, data: Path, temperature: Path | None) -> Path:
    if temperature is not None:
        return temperature
    for _, point in inv.points():
        if point.quantity is Quantity.TEMPERATURE and point.usage is Usage.WEATHER and (data / f"{point.id}.csv").exists():
            return data / f"{point.id}.csv"
    msg = f"no outdoor temperature: give --temperature, or put the weather point's CSV in {data}"
    raise _fail(msg)


def _daily_temps(path: Path, tz: tzinfo) -> list[DailyTemperature]:
    try:
        return read_temperature_csv(path, tz=tz)
    except TelemetryError as exc:
        raise _fail(str(exc)) from exc


def _building(inv: Inventory, building_id: str) -> Building:
    try:
        return inv.building(building_id)
    except KeyError as exc:
        msg = f"no building {building_id!r} in the inventory"
        raise _fail(msg, 2) from exc


ConfigOpt = Annotated[Path, typer.Option(help="Inventory YAML file.")]
DataOpt = Annotated[Path, typer.Option(help="Directory of <point-id>.csv files.")]
TempOpt = Annotated[Path | None, typer.Option(help="Outdoor temperature CSV (default: the weather point's file).")]
OutOpt = Annotated[Path, typer.Option(help="File to write.")]


@with_progress("report building")
def report_building(
    config: ConfigOpt,
    data: DataOpt,
    building: Annotated[str, typer.Option(help="Building id.")],
    month: Annotated[str, typer.Option(help="Month, YYYY-MM.")],
    out: OutOpt,
    temperature: TempOpt = None,
) -> None:
    """Monthly report of one building (HTML)."""
    inv = _load(config)
    bld = _building(inv, building)
    try:
        year, mon = (int(x) for x in month.split("-"))
        date(year, mon, 1)
    except ValueError as exc:
        msg = f"month {month!r} must be YYYY-MM"
        raise typer.BadParameter(msg) from exc
    series = _building_series(inv, bld, data)
    if not series:
        msg = f"no consumption CSV for building {building} in {data}"
        raise _fail(msg)
    temps = _daily_temps(_temperature_path(inv, data, temperature), inv.organisation.tz)
    current()("writing the report", 0, 1)
    page = building_month_report(inv, bld, year, mon, series, degree_days(temps), {t.day: t.mean_c for t in temps})
    out.write_text(page, encoding="utf-8")
    current()("writing the report", 1, 1)
    typer.echo(f"wrote {out}")


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
    data: DataOpt,
    building: Annotated[str, typer.Option(help="Building id.")],
    out: OutOpt,
    temperature: TempOpt = None,
    renovation: Annotated[int, typer.Option(help="Index of the renovation in the building's list (default: the last).")] = -1,
    point: Annotated[str | None, typer.Option(help="Meter to analyse (default: the one of the renovated usage).")] = None,
    baseline: Annotated[
        str | None, typer.Option(help="Reference period START/END (default: the 365 days before the works).")
    ] = None,
    reporting: Annotated[str | None, typer.Option(help="Reporting period START/END (default: from the works on).")] = None,
    gap_months: Annotated[int, typer.Option(min=1, help="Months below the promise before the performance-gap alert.")] = 3,
) -> None:
    """Follow-up report of a renovation: savings against the promise (HTML)."""
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
    loaded = _point_series(data, meter, tz)
    if loaded is None:
        msg = f"no {meter.id}.csv in {data}"
        raise _fail(msg)
    temp_path = _temperature_path(inv, data, temperature)
    base_start, base_end = _period(baseline) if baseline else (works.date - timedelta(days=365), works.date)
    rep_start, rep_end = _period(reporting) if reporting else (works.date, loaded[0][-1] + timedelta(days=1))
    calendar = FrenchCalendar(inv.organisation.school_holiday_zone)
    days, energy = loaded
    stamps, values = _series(temp_path)
    matrix = hourly_temperature_matrix(stamps, values, days, tz=tz)
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
    out.write_text(page, encoding="utf-8")
    typer.echo(f"wrote {out}")
    summary = result.to_dict(inv.tariff(meter.energy))
    summary.pop("monthly")
    summary["performance_gap"] = alert.description if alert is not None else None
    typer.echo(json.dumps(_json_safe(summary), ensure_ascii=False))


def _year_totals(inv: Inventory, data: Path, year: int) -> tuple[dict[str, dict[Energy, float]], dict[str, int]]:
    start, end = date(year, 1, 1), date(year + 1, 1, 1)
    totals: dict[str, dict[Energy, float]] = {}
    missing: dict[str, int] = {}
    for _, bld in current().track(inv.buildings(), f"reading consumption {year}"):
        for s in _building_series(inv, bld, data):
            total, gaps = s.total(start, end)
            if gaps < (end - start).days:
                totals.setdefault(bld.id, {})[s.energy] = total
                missing[bld.id] = missing.get(bld.id, 0) + gaps
    return totals, missing


def _avoided(
    inv: Inventory, bld: Building, data: Path, temp: tuple[list[datetime], list[float]], year: int
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
        loaded = _point_series(data, meter, tz)
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


@with_progress("report portfolio")
def report_portfolio(
    config: ConfigOpt,
    data: DataOpt,
    year: Annotated[int, typer.Option(help="Year reported.")],
    out: OutOpt,
    temperature: TempOpt = None,
    price_escalation: Annotated[float, typer.Option(help="Yearly price rise for the cost of inaction.")] = 0.04,
) -> None:
    """Annual portfolio report with the ADEME/CEP indicators (HTML)."""
    inv = _load(config)
    totals, missing = _year_totals(inv, data, year)
    if not totals:
        msg = f"no consumption in {year} in {data}"
        raise _fail(msg)
    temp = _series(_temperature_path(inv, data, temperature))
    rows = []
    for _, bld in current().track(inv.buildings(), "savings per building"):
        if bld.id in totals:
            avoided = tuple(_avoided(inv, bld, data, temp, year)) if bld.renovations else ()
            rows.append(BuildingYear(bld, totals[bld.id], missing.get(bld.id, 0), avoided))
    out.write_text(portfolio_report(inv, year, rows, price_escalation=price_escalation), encoding="utf-8")
    typer.echo(f"wrote {out}")


@with_progress("report operat")
def report_operat(
    config: ConfigOpt,
    data: DataOpt,
    year: Annotated[int, typer.Option(help="Year declared.")],
    reference_year: Annotated[int, typer.Option(help="Reference year of the trajectory.")],
    out: OutOpt,
    only_subject: Annotated[bool, typer.Option(help="Keep only buildings of 1,000 m² or more.")] = False,
) -> None:
    """OPERAT export (Décret tertiaire): annual consumption per EFA and the trajectory (CSV)."""
    inv = _load(config)
    totals, _ = _year_totals(inv, data, year)
    reference, _ = _year_totals(inv, data, reference_year)
    addresses = {bld.id: site.address for site, bld in inv.buildings()}
    rows = operat_rows(
        [b for _, b in inv.buildings()], year, totals, reference_year, reference, addresses=addresses, only_subject=only_subject
    )
    write_operat_csv(rows, out)
    typer.echo(f"wrote {out} ({len(rows)} EFA)")
