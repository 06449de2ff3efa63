"""Hourly data and features per building × usage, the input of every detector and rule.

Readings arrive as meters give them: counters are cumulative indexes, sensors
instantaneous values, at irregular times. :class:`HourlyFrame` turns them into
one row per UTC hour: the consumption of each counter in the hour (the index
interpolated at both hour boundaries, ``nan`` when a boundary falls in a gap
longer than ``max_gap`` or the index went backwards) and the mean of each
sensor. :class:`BuildingHours` adds what the building's schedule and the
French calendar say of each hour (open, pre-heating, public and school
holidays), the weather, the indoor temperature against the setpoint, and the
consumption per usage in kWh (gas m3 converted with the point's
``conversion_kwh_per_unit``) or m3 of water. :func:`build_features` gives the
residual features of one building × usage for the isolation forest.

Sample config (``FeatureConfig``)::

    features:
      heating_base_c: 16.0
      preheat: 4h

>>> import numpy as np
>>> frame = HourlyFrame.build({"m": PointSeries(np.array([0.0, 3600.0, 7200.0]), np.array([10.0, 12.0, 15.0]))},
...                           counters={"m"}, start_s=0.0, hours=2)
>>> frame.consumption["m"].tolist()
[2.0, 3.0]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from inventory import Building, Duration, Energy, FrenchCalendar, Inventory, Point, Quantity, Usage
from inventory.calendar import day_intervals, in_intervals

__all__ = [
    "FEATURE_NAMES",
    "BuildingHours",
    "FeatureConfig",
    "HourlyFrame",
    "PointSeries",
    "UsageSeries",
    "build_features",
    "outdoor_temperature",
    "schedule_masks",
    "sun_elevation_deg",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

_HOUR_S = 3600.0
_SAMPLES_PER_HOUR = 4  # the schedule is sampled every 15 min to get the open fraction of an hour


@dataclass(frozen=True, slots=True, eq=False)
class PointSeries:
    """Readings of one point, sorted by time.

    Attributes:
        times_s: UTC epoch seconds.
        values: the values, in the point's unit (a counter's index).
    """

    times_s: FloatArray
    values: FloatArray


class FeatureConfig(BaseModel):
    """How hours are described: degree-hour base, pre-heating allowance, night, site."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    heating_base_c: float = 16.0
    """Base of the heating degree-hours, ``max(0, base - outdoor)``."""
    preheat: Duration = timedelta(hours=4)
    """Hours before an opening where comfort heating is expected (pre-heating)."""
    max_gap: Duration = timedelta(hours=2)
    """A counter hour is unknown when a boundary falls in a longer gap between readings."""
    latitude_deg: float = Field(default=46.5, ge=-90, le=90)
    """Latitude of the portfolio, for daylight (the inventory has no coordinates)."""
    longitude_deg: float = Field(default=2.5, ge=-180, le=180)
    """Longitude of the portfolio, for daylight."""


@dataclass(frozen=True, slots=True, eq=False)
class HourlyFrame:
    """Counters and sensors on a grid of UTC hours.

    Attributes:
        start_s: start of the first hour, UTC epoch seconds (a whole hour).
        hours: number of hours.
        consumption: per counter, the increase of its index in each hour (``nan`` unknown).
        mean: per sensor, the mean of its readings in each hour (``nan`` when none).
    """

    start_s: float
    hours: int
    consumption: dict[str, FloatArray]
    mean: dict[str, FloatArray]

    @property
    def times_s(self) -> FloatArray:
        """Start of each hour, UTC epoch seconds."""
        result: FloatArray = self.start_s + _HOUR_S * np.arange(self.hours, dtype=np.float64)
        return result

    def time(self, hour: int) -> datetime:
        """Start of an hour of the grid as an aware UTC datetime."""
        return datetime.fromtimestamp(self.start_s + _HOUR_S * hour, UTC)

    @classmethod
    def build(
        cls,
        readings: Mapping[str, PointSeries],
        *,
        counters: Iterable[str],
        start_s: float | None = None,
        hours: int | None = None,
        max_gap: timedelta = timedelta(hours=2),
    ) -> HourlyFrame:
        """Aggregate readings to hours.

        Args:
            readings: per point, its sorted readings.
            counters: the points that are cumulative counters.
            start_s: first hour (default: the hour of the first reading).
            hours: number of hours (default: up to the last reading).
            max_gap: longest gap between two readings a counter boundary may fall in.

        Returns:
            The hourly frame.
        """
        counter_ids = set(counters)
        non_empty = [s for s in readings.values() if s.times_s.size]
        if start_s is None:
            start_s = math.floor(min(float(s.times_s[0]) for s in non_empty) / _HOUR_S) * _HOUR_S if non_empty else 0.0
        if hours is None:
            last = max((float(s.times_s[-1]) for s in non_empty), default=start_s)
            hours = max(1, math.ceil((last - start_s) / _HOUR_S))
        bounds = start_s + _HOUR_S * np.arange(hours + 1, dtype=np.float64)
        gap_s = max_gap.total_seconds()
        consumption: dict[str, FloatArray] = {}
        mean: dict[str, FloatArray] = {}
        for pid, series in readings.items():
            t, v = series.times_s, series.values
            if pid in counter_ids:
                consumption[pid] = _counter_hours(t, v, bounds, gap_s)
            else:
                mean[pid] = _sensor_hours(t, v, start_s, hours)
        return cls(start_s=start_s, hours=hours, consumption=consumption, mean=mean)


def _counter_hours(t: FloatArray, v: FloatArray, bounds: FloatArray, gap_s: float) -> FloatArray:
    out = np.full(bounds.size - 1, np.nan)
    if t.size < 2:
        return out
    index = np.interp(bounds, t, v)
    j = np.searchsorted(t, bounds, side="right")
    inside = (j > 0) & (j < t.size)
    jc = np.clip(j, 1, t.size - 1)
    exact = np.isin(bounds, t)
    ok = (inside & ((t[jc] - t[jc - 1]) <= gap_s)) | exact
    diff = np.diff(index)
    valid = ok[:-1] & ok[1:] & (diff >= 0)
    out[valid] = diff[valid]
    return out


def _sensor_hours(t: FloatArray, v: FloatArray, start_s: float, hours: int) -> FloatArray:
    out = np.full(hours, np.nan)
    keep = np.isfinite(v)
    bins = np.floor((t[keep] - start_s) / _HOUR_S).astype(np.int64)
    inside = (bins >= 0) & (bins < hours)
    bins, vals = bins[inside], v[keep][inside]
    counts = np.bincount(bins, minlength=hours)
    sums = np.bincount(bins, weights=vals, minlength=hours)
    has = counts > 0
    out[has] = sums[has] / counts[has]
    return out


def sun_elevation_deg(times_s: FloatArray, latitude_deg: float, longitude_deg: float) -> FloatArray:
    """Solar elevation angle (degrees) at UTC epoch times, within about a degree.

    >>> import numpy as np
    >>> from datetime import UTC, datetime
    >>> noon = datetime(2026, 6, 21, 11, 50, tzinfo=UTC).timestamp()
    >>> round(float(sun_elevation_deg(np.array([noon]), 46.5, 2.5)[0]))
    67
    """
    days = times_s / 86_400.0
    gamma = 2.0 * np.pi * (np.mod(days, 365.2422) - 79.0) / 365.2422  # rough, enough for "is it daylight"
    decl = np.radians(23.44) * np.sin(gamma)
    utc_hours = np.mod(times_s, 86_400.0) / 3600.0
    solar_hours = utc_hours + longitude_deg / 15.0
    hour_angle = np.radians(15.0 * (solar_hours - 12.0))
    lat = np.radians(latitude_deg)
    sin_el = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)
    result: FloatArray = np.degrees(np.arcsin(np.clip(sin_el, -1.0, 1.0)))
    return result


@dataclass(frozen=True, slots=True, eq=False)
class UsageSeries:
    """The consumption of one usage of a building, summed over its counters.

    Attributes:
        usage: heating, general electricity, lighting or water.
        unit: ``kWh`` or ``m3`` (water).
        energy: the energy that prices it (the first counter's).
        points: the counters summed.
        values: per hour, ``nan`` when any counter is unknown.
    """

    usage: Usage
    unit: str
    energy: Energy | None
    points: tuple[str, ...]
    values: FloatArray


def _to_kwh(point: Point) -> float:
    if point.quantity is Quantity.GAS_VOLUME:
        litres = 0.001 if point.unit == "L" else 1.0
        return (point.conversion_kwh_per_unit or 0.0) * litres
    if point.quantity is Quantity.WATER_VOLUME:
        return 0.001 if point.unit == "L" else 1.0
    return {"Wh": 0.001, "kWh": 1.0, "MWh": 1000.0}.get(point.unit, 1.0)


CONSUMPTION_USAGES = (Usage.HEATING, Usage.GENERAL, Usage.LIGHTING, Usage.WATER)
"""The usages with a consumption series (and so an isolation forest)."""


@dataclass(eq=False)
class BuildingHours:
    """Everything the rules and the features know of one building, hour by hour.

    Attributes:
        building: the building.
        frame: the hourly frame of the whole portfolio.
        open_frac: fraction of each hour the building is open.
        preheat: the hour lies in the pre-heating allowance before an opening.
        public_holiday: the local day is a public holiday.
        school_holiday: the local day is in the school holidays of the zone.
        local_hour: local wall-clock hour (0-23).
        hour_of_week: local hour of the week, Monday 00:00 = 0.
        local_day: local date ordinal of each hour.
        outdoor_c: outdoor temperature (mean of the weather points).
        indoor_c: mean of the building's indoor temperature sensors.
        illuminance_lx: the highest indoor illuminance.
        sun_deg: solar elevation at mid-hour.
        usages: consumption per usage.
        setpoint_c: the setpoint of each hour (occupied or unoccupied, per the schedule).
    """

    building: Building
    frame: HourlyFrame
    open_frac: FloatArray
    preheat: BoolArray
    public_holiday: BoolArray
    school_holiday: BoolArray
    local_hour: IntArray
    hour_of_week: IntArray
    local_day: IntArray
    outdoor_c: FloatArray
    indoor_c: FloatArray
    illuminance_lx: FloatArray
    sun_deg: FloatArray
    usages: dict[Usage, UsageSeries] = field(default_factory=dict)

    @property
    def occupied(self) -> BoolArray:
        """Hours open at least half of the time."""
        result: BoolArray = self.open_frac >= 0.5
        return result

    @property
    def closed(self) -> BoolArray:
        """Hours entirely closed and outside the pre-heating allowance."""
        result: BoolArray = (self.open_frac == 0.0) & ~self.preheat
        return result

    @property
    def setpoint_c(self) -> FloatArray:
        """The setpoint the schedule asks for in each hour."""
        b = self.building
        result: FloatArray = np.where(
            self.occupied | self.preheat, b.heating_setpoint_occupied_c, b.heating_setpoint_unoccupied_c
        )
        return result

    @classmethod
    def build(
        cls,
        inventory: Inventory,
        building: Building,
        frame: HourlyFrame,
        calendar: FrenchCalendar,
        config: FeatureConfig | None = None,
        *,
        blank: Mapping[str, BoolArray] | None = None,
    ) -> BuildingHours:
        """Describe the hours of one building.

        Args:
            inventory: the portfolio (weather points, tariffs).
            building: the building.
            frame: the hourly data.
            calendar: holidays of the organisation's zone.
            config: feature settings.
            blank: per point, hours whose data must be ignored (a stuck counter, a frozen sensor).

        Returns:
            The building's hours.
        """
        config = config or FeatureConfig()
        tz = inventory.organisation.tz
        times = frame.times_s
        open_frac, preheat = schedule_masks(building, calendar, tz, times, config.preheat)
        local = [datetime.fromtimestamp(float(s), tz) for s in times]
        local_hour = np.array([m.hour for m in local], dtype=np.int64)
        weekday = np.array([m.weekday() for m in local], dtype=np.int64)
        days = [m.date() for m in local]
        holidays_pub = {d: calendar.is_public_holiday(d) for d in set(days)}
        holidays_school = {d: calendar.is_school_holiday(d) for d in set(days)}
        blank = blank or {}

        def sensor(pid: str) -> FloatArray:
            values = frame.mean.get(pid, np.full(frame.hours, np.nan)).copy()
            if pid in blank:
                values[blank[pid]] = np.nan
            return values

        indoor = [p.id for p in building.points if p.quantity is Quantity.TEMPERATURE and p.usage is not Usage.WEATHER]
        lux = [p.id for p in building.points if p.quantity is Quantity.ILLUMINANCE]
        hours = cls(
            building=building,
            frame=frame,
            open_frac=open_frac,
            preheat=preheat,
            public_holiday=np.array([holidays_pub[d] for d in days], dtype=np.bool_),
            school_holiday=np.array([holidays_school[d] for d in days], dtype=np.bool_),
            local_hour=local_hour,
            hour_of_week=weekday * 24 + local_hour,
            local_day=np.array([d.toordinal() for d in days], dtype=np.int64),
            outdoor_c=outdoor_temperature(inventory, frame, blank),
            indoor_c=_nanmean([sensor(p) for p in indoor], frame.hours),
            illuminance_lx=_nanmax([sensor(p) for p in lux], frame.hours),
            sun_deg=sun_elevation_deg(times + _HOUR_S / 2, config.latitude_deg, config.longitude_deg),
        )
        for usage in CONSUMPTION_USAGES:
            series = _usage_series(building, usage, frame, blank)
            if series is not None:
                hours.usages[usage] = series
        return hours


def outdoor_temperature(inventory: Inventory, frame: HourlyFrame, blank: Mapping[str, BoolArray] | None = None) -> FloatArray:
    """Outdoor temperature per hour: the mean of the portfolio's weather temperature points.

    Args:
        inventory: gives the weather points.
        frame: the hourly data.
        blank: per point, hours whose data must be ignored (a frozen sensor).

    Returns:
        Degrees Celsius per hour, ``nan`` where no weather point is known.
    """
    blank = blank or {}
    columns = []
    for _, point in inventory.points():
        if point.usage is Usage.WEATHER and point.quantity is Quantity.TEMPERATURE:
            values = frame.mean.get(point.id, np.full(frame.hours, np.nan)).copy()
            if point.id in blank:
                values[blank[point.id]] = np.nan
            columns.append(values)
    return _nanmean(columns, frame.hours)


def _nanmean(columns: list[FloatArray], n: int) -> FloatArray:
    if not columns:
        return np.full(n, np.nan)
    stack = np.vstack(columns)
    counts = np.isfinite(stack).sum(axis=0)
    sums = np.nansum(stack, axis=0)
    result: FloatArray = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return result


def _nanmax(columns: list[FloatArray], n: int) -> FloatArray:
    if not columns:
        return np.full(n, np.nan)
    stack = np.vstack(columns)
    has = np.isfinite(stack).any(axis=0)
    result: FloatArray = np.where(has, np.max(np.where(np.isfinite(stack), stack, -np.inf), axis=0), np.nan)
    return result


_ENERGY_COUNTERS = frozenset({Quantity.ACTIVE_ENERGY, Quantity.HEAT_ENERGY, Quantity.GAS_VOLUME})


def _usage_series(building: Building, usage: Usage, frame: HourlyFrame, blank: Mapping[str, BoolArray]) -> UsageSeries | None:
    if usage is Usage.WATER:
        points = [p for p in building.points if p.cumulative and p.quantity is Quantity.WATER_VOLUME]
    else:
        points = [
            p for p in building.points
            if p.cumulative and p.usage is usage and p.quantity in _ENERGY_COUNTERS
        ]
    points = [p for p in points if p.id in frame.consumption]
    if not points:
        return None
    total = np.zeros(frame.hours)
    for point in points:
        values = frame.consumption[point.id] * _to_kwh(point)
        if point.id in blank:
            values = np.where(blank[point.id], np.nan, values)
        total = total + values
    unit = "m3" if usage is Usage.WATER else "kWh"
    return UsageSeries(usage=usage, unit=unit, energy=points[0].energy, points=tuple(p.id for p in points), values=total)


def schedule_masks(
    building: Building, calendar: FrenchCalendar, tz: ZoneInfo, times: FloatArray, preheat: timedelta
) -> tuple[FloatArray, BoolArray]:
    """Open fraction of each hour and the pre-heating allowance, from opening intervals per local day.

    Args:
        building: gives the schedule.
        calendar: public and school holidays.
        tz: the organisation's timezone.
        times: start of each hour, UTC epoch seconds.
        preheat: length of the pre-heating allowance before each opening.

    Returns:
        The open fraction of each hour (sampled every 15 min) and the pre-heating hours.
    """
    if times.size == 0:
        return np.zeros(0), np.zeros(0, dtype=np.bool_)
    first = datetime.fromtimestamp(float(times[0]), tz).date() - timedelta(days=1)
    last = datetime.fromtimestamp(float(times[-1]), tz).date() + timedelta(days=2)
    starts: list[float] = []
    ends: list[float] = []
    day = first
    while day <= last:
        for s, e in day_intervals(building.schedule, day, calendar, tz):
            starts.append(s)
            ends.append(e)
        day += timedelta(days=1)
    order = np.argsort(starts)
    s_arr = np.asarray(starts, dtype=np.float64)[order]
    e_arr = np.asarray(ends, dtype=np.float64)[order]
    offsets = (np.arange(_SAMPLES_PER_HOUR) + 0.5) * _HOUR_S / _SAMPLES_PER_HOUR
    samples = times[:, None] + offsets[None, :]
    open_frac = in_intervals(samples, s_arr, e_arr).mean(axis=1)
    lead = preheat.total_seconds()
    warming = in_intervals(samples, s_arr - lead, s_arr).any(axis=1)
    return open_frac, warming & (open_frac < 1.0)


FEATURE_NAMES = (
    "residual",
    "residual_ratio",
    "residual_ratio_24h",
    "same_sign_hours",
    "hour_of_week_sin",
    "hour_of_week_cos",
    "open_frac",
    "outdoor_c",
)
"""Columns of :func:`build_features`, in order."""

_SAME_SIGN_CAP = 168  # a week of one sign is as persistent as it gets
_LEVEL_SHARE = 0.25  # share of the usual level added to the expected value below a ratio


def build_features(
    hours: BuildingHours, usage: Usage, expected: FloatArray, config: FeatureConfig | None = None
) -> FloatArray:
    """Residual features of one building × usage, one row per hour (columns: :data:`FEATURE_NAMES`).

    The residual is observed − expected (:mod:`anomalies.expected`). Its ratio
    divides it by the expected value plus a quarter of the usual level (the
    mean expected value of the last 168 hours), so that an hour expected near
    zero (a night, a summer day of heating) does not give an infinite ratio.
    Persistence is the mean ratio of the last 24 hours (18 known at least)
    and the number of consecutive hours the residual has kept its sign
    (positive above, negative below, capped at 168). The hour of the week is
    encoded on a circle (Sunday night next to Monday morning).
    Every column looks back only. Rows with a missing value keep ``nan``;
    detectors skip them. A building without any outdoor temperature gets a
    constant in its place, so that it still has rows.

    Args:
        hours: the building's hours.
        usage: a usage with a consumption series.
        expected: the expected consumption of each hour (``nan`` unknown).
        config: feature settings (unused by the residual features, kept for the signature of callers).

    Returns:
        An ``(hours, len(FEATURE_NAMES))`` array.

    Raises:
        KeyError: when the building has no counter for the usage.

    >>> import numpy as np
    >>> _same_sign_run(np.array([0.5, 1.0, 2.0, -1.0, -3.0])).tolist()
    [0.0, 1.0, 2.0, -0.0, -1.0]
    """
    del config
    y = hours.usages[usage].values
    n = y.size
    residual = y - expected
    level = _trailing_mean(np.maximum(expected, 0.0), 168, 24)
    ratio = residual / (np.maximum(expected, 0.0) + _LEVEL_SHARE * level + 1e-9)
    ratio = np.where(np.isfinite(level) & (level > 0), ratio, np.nan)
    ratio24 = _trailing_mean(ratio, 24, 18)
    how = hours.hour_of_week.astype(np.float64)
    outdoor = hours.outdoor_c if np.isfinite(hours.outdoor_c).any() else np.zeros(n)
    columns = [
        residual,
        ratio,
        ratio24,
        _same_sign_run(residual),
        np.sin(2 * np.pi * how / 168.0),
        np.cos(2 * np.pi * how / 168.0),
        hours.open_frac,
        outdoor,
    ]
    result: FloatArray = np.column_stack(columns)
    return result


def _trailing_mean(x: FloatArray, width: int, min_known: int) -> FloatArray:
    """Mean of the last ``width`` values up to and including each one (``nan`` with fewer known)."""
    n = x.size
    known = np.isfinite(x)
    kernel = np.ones(width)
    counts = np.convolve(known.astype(np.float64), kernel)[:n]
    sums = np.convolve(np.where(known, x, 0.0), kernel)[:n]
    result: FloatArray = np.where(counts >= min_known, sums / np.maximum(counts, 1), np.nan)
    return result


def _same_sign_run(residual: FloatArray) -> FloatArray:
    """Signed count of the consecutive earlier hours with the residual's sign (``nan`` where unknown)."""
    n = residual.size
    if n == 0:
        return np.zeros(0)
    known = np.isfinite(residual)
    sign = np.sign(np.where(known, residual, 0.0))
    # A run breaks on a change of sign, an unknown hour or a zero residual.
    breaks = np.ones(n, dtype=np.bool_)
    breaks[1:] = (sign[1:] != sign[:-1]) | ~known[1:] | ~known[:-1] | (sign[1:] == 0)
    index = np.arange(n)
    run_start = np.maximum.accumulate(np.where(breaks, index, 0))
    result: FloatArray = np.where(known, sign * np.minimum(index - run_start, _SAME_SIGN_CAP), np.nan)
    return result
