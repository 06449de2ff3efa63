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

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from inventory import Building, Duration, Energy, FrenchCalendar, Inventory, Point, Quantity, Usage
from inventory.bookings import booked_intervals
from inventory.calendar import day_intervals, in_intervals
from mv.baseline import BaselineConfig, DailyChangePointBaseline, DailyObservations, DailyParams, classify_days
from streams.errors import InsufficientData, ModelError
from streams.history import PointSeries

__all__ = [
    "CLOCK_AHEAD_H",
    "FEATURE_LOOKBACK",
    "FEATURE_NAMES",
    "BuildingHours",
    "ClockCache",
    "FeatureConfig",
    "HourlyFrame",
    "PointSeries",
    "UsageSeries",
    "build_features",
    "building_bookings",
    "energy_per_unit",
    "expected_setpoints",
    "outdoor_temperature",
    "schedule_masks",
    "sun_elevation_deg",
    "usage_shares",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

_HOUR_S = 3600.0
_SAMPLES_PER_HOUR = 4  # the schedule is sampled every 15 min to get the open fraction of an hour


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
    split_min_days: int = Field(default=14, ge=7, le=365)
    """A meter serving heating and another usage with no declared ``split`` gives all its
    consumption to its own usage until this many complete days with weather are seen."""
    split_refit: Duration = timedelta(days=7)
    """How often the learnt split of such a meter is fitted again (on the days before)."""


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
    # A boundary read exactly is the reading just before ``j`` (the readings are sorted): no set lookup.
    exact = (j > 0) & (t[np.maximum(j - 1, 0)] == bounds)
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


def energy_per_unit(point: Point) -> float:
    """What one unit of a counter is worth in the unit of its usage's series (kWh; m³ for water)."""
    return _to_kwh(point)


def _to_kwh(point: Point) -> float:
    if point.quantity is Quantity.GAS_VOLUME:
        litres = 0.001 if point.unit == "L" else 1.0
        return (point.conversion_kwh_per_unit or 0.0) * litres
    if point.quantity is Quantity.WATER_VOLUME:
        return 0.001 if point.unit == "L" else 1.0
    return {"Wh": 0.001, "kWh": 1.0, "MWh": 1000.0}.get(point.unit, 1.0)


CONSUMPTION_USAGES = (Usage.HEATING, Usage.GENERAL, Usage.LIGHTING, Usage.WATER)
"""The usages with a consumption series (and so an isolation forest)."""


OPEN_AFTER_HOURS = 48
"""Hours of the schedule after a frame that :attr:`BuildingHours.open_after` describes."""


@dataclass(eq=False)
class BuildingHours:
    """Everything the rules and the features know of one building, hour by hour.

    Attributes:
        building: the building.
        frame: the hourly frame of the whole portfolio.
        open_frac: fraction of each hour the building is open (weekly hours and bookings).
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
        setpoint_c: the heating setpoint expected in each hour (:func:`expected_setpoints`):
            occupied setpoint when open or pre-heating, setback at night on open days,
            weekend setpoint on closed days, frost protection in closures longer than
            48 hours, ``nan`` outside the heating season (no heating expected).
        heating_in_season: the local day is in the building's heating season
            (every day when it declares none).
        day_open: the hour's whole local day has open time, from the schedule and
            bookings (known in advance: a frame ending at 7:00 knows that the day
            opens at 8:00).
        usages: consumption per usage; a meter that serves several usages is shared
            between them (:func:`usage_shares`).
        open_after: open fraction of the :data:`OPEN_AFTER_HOURS` hours after the frame, from the
            schedule and bookings (known in advance): how long the closure the frame ends in still
            lasts, which a frame ending at 3:00 cannot read from its own hours (empty: not known).
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
    setpoint_c: FloatArray
    heating_in_season: BoolArray
    day_open: BoolArray
    usages: dict[Usage, UsageSeries] = field(default_factory=dict)
    open_after: FloatArray = field(default_factory=lambda: np.zeros(0))

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
        booked: Sequence[tuple[datetime, datetime]] | None = None,
        calendars: ClockCache | None = None,
    ) -> BuildingHours:
        """Describe the hours of one building.

        Args:
            inventory: the portfolio (weather points, tariffs, the folder booking calendars are relative to).
            building: the building.
            frame: the hourly data.
            calendar: holidays of the organisation's zone.
            config: feature settings.
            blank: per point, hours whose data must be ignored (a stuck counter, a frozen sensor).
            booked: the building's booked intervals (UTC); by default read from its booking
                calendar (:func:`inventory.bookings.booked_intervals`) when it has one.
            calendars: what the hours owe to the clock alone (schedule, holidays, setpoints, sun), kept
                across calls on the same frame start (:class:`ClockCache`); the hours are the same with it.

        Returns:
            The building's hours.

        Raises:
            inventory.bookings.BookingsError: the booking calendar cannot be used.
        """
        config = config or FeatureConfig()
        tz = inventory.organisation.tz
        if booked is None:
            booked = building_bookings(inventory, building, frame)
        booked_now = booked

        def clock(first_s: float, hours: int) -> dict[str, npt.NDArray[Any]]:
            return _clock_columns(building, calendar, tz, first_s + _HOUR_S * np.arange(hours, dtype=np.float64),
                                  config, booked_now)

        if calendars is None:
            at = clock(frame.start_s, frame.hours)
        else:
            at = calendars.get(building, "hours", frame.start_s, frame.hours,
                               (str(tz), calendar.zone, config, tuple(booked)), clock)
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
            open_frac=at["open_frac"],
            preheat=at["preheat"],
            public_holiday=at["public_holiday"],
            school_holiday=at["school_holiday"],
            local_hour=at["local_hour"],
            hour_of_week=at["hour_of_week"],
            local_day=at["local_day"],
            outdoor_c=outdoor_temperature(inventory, frame, blank),
            indoor_c=_nanmean([sensor(p) for p in indoor], frame.hours),
            illuminance_lx=_nanmax([sensor(p) for p in lux], frame.hours),
            sun_deg=at["sun_deg"],
            setpoint_c=at["setpoint_c"],
            heating_in_season=at["heating_in_season"],
            day_open=at["day_open"],
            open_after=schedule_masks(building, calendar, tz, frame.start_s + _HOUR_S * (
                frame.hours + np.arange(OPEN_AFTER_HOURS, dtype=np.float64)), config.preheat, booked=booked)[0],
        )
        shares = usage_shares(building, frame, hours.outdoor_c, hours.local_day, calendar, config, blank)
        # A served usage outside CONSUMPTION_USAGES (hot water) gets a series of its own.
        served = {u for p in building.points if p.cumulative and p.serves for u in (p.usage, *p.serves)}
        for usage in (*CONSUMPTION_USAGES, *sorted(served - set(CONSUMPTION_USAGES), key=lambda u: u.value)):
            series = _usage_series(building, usage, frame, blank, shares)
            if series is not None:
                hours.usages[usage] = series
        return hours


CLOCK_AHEAD_H = 168
"""Hours past a frame's end a :class:`ClockCache` computes at once: a live pass of one new hour recomputes the
clock's columns once a week, not each hour."""


def _clock_columns(
    building: Building,
    calendar: FrenchCalendar,
    tz: ZoneInfo,
    times: FloatArray,
    config: FeatureConfig,
    booked: Sequence[tuple[datetime, datetime]],
) -> dict[str, npt.NDArray[Any]]:
    """The columns of :class:`BuildingHours` that depend on the hour alone (given the schedule and bookings)."""
    open_frac, preheat = schedule_masks(building, calendar, tz, times, config.preheat, booked=booked)
    local = [datetime.fromtimestamp(float(s), tz) for s in times]
    local_hour = np.array([m.hour for m in local], dtype=np.int64)
    weekday = np.array([m.weekday() for m in local], dtype=np.int64)
    days = [m.date() for m in local]
    holidays_pub = {d: calendar.is_public_holiday(d) for d in set(days)}
    holidays_school = {d: calendar.is_school_holiday(d) for d in set(days)}
    setpoint, in_season = expected_setpoints(building, calendar, tz, times, open_frac, preheat, booked=booked)
    local_day = np.array([d.toordinal() for d in days], dtype=np.int64)
    return {
        "open_frac": open_frac,
        "preheat": preheat,
        "public_holiday": np.array([holidays_pub[d] for d in days], dtype=np.bool_),
        "school_holiday": np.array([holidays_school[d] for d in days], dtype=np.bool_),
        "local_hour": local_hour,
        "hour_of_week": weekday * 24 + local_hour,
        "local_day": local_day,
        "sun_deg": sun_elevation_deg(times + _HOUR_S / 2, config.latitude_deg, config.longitude_deg),
        "setpoint_c": setpoint,
        "heating_in_season": in_season,
        "day_open": open_days(building, calendar, tz, local_day, booked=booked),
    }


@dataclass(slots=True, eq=False)
class _ClockEntry:
    building: Building | None  # None: read back from a file, stands for the building of ``digest``
    key: tuple[object, ...]
    start_s: float
    hours: int
    columns: dict[str, npt.NDArray[Any]]
    digest: str = ""


class ClockCache:
    """Per building, the hour-by-hour columns that depend on the clock alone, kept between passes.

    The schedule's open fraction and pre-heating, the holidays, the local hours and days, the expected
    setpoints, the open days and the sun depend on each hour and the building's schedule and bookings, never
    on where the frame ends (each of those functions reads the schedule past both ends). A live pass on a
    frame one hour longer than the last would compute them again for 400 days; the cache computes them
    :data:`CLOCK_AHEAD_H` hours past the frame's end and gives the hours of what it holds while the building
    object and the key (timezone, holiday zone, settings, bookings) are the same and the frame starts on its
    hours; the hours past its end (a frame longer by more than the week ahead, a history rolled forward) are
    computed from there. The columns equal those computed on the frame itself
    (``tests/unit/anomalies/test_clock_cache.py``). One entry per building and use.

    :meth:`to_arrays` and :meth:`from_arrays` save it with the detection state (a live service that loads
    each building's state at each pass would otherwise compute them every pass): an entry read back stands
    for its building while a digest of the building (its whole model) and of the key is the same, the
    building object then taken as its own.
    """

    def __init__(self) -> None:
        """An empty cache."""
        self._entries: dict[tuple[str, str], _ClockEntry] = {}
        self.computed = 0
        """How many times columns were computed whole (not taken from the cache)."""
        self.extended = 0
        """How many times an entry was extended by the hours past its end."""

    def get(
        self,
        building: Building,
        use: str,
        start_s: float,
        hours: int,
        key: tuple[object, ...],
        compute: Callable[[float, int], dict[str, npt.NDArray[Any]]],
    ) -> dict[str, npt.NDArray[Any]]:
        """The columns of ``hours`` hours from ``start_s``: copies of the cached ones, computed where missing.

        An entry of the same building and key that starts at or before ``start_s``, on its hour grid, gives
        the hours it holds; the hours past its end are computed from there (with :data:`CLOCK_AHEAD_H` more)
        and the entry then starts at ``start_s``: a frame a week longer, or the history rolled forward
        (:mod:`anomalies.incremental`), computes its new hours only, not 400 days again.

        Args:
            building: the building; another object (an inventory read again) computes them again, even
                if equal (comparing a building's points each pass would cost more than it spares), but for
                an entry read back by :meth:`from_arrays`, compared once by digest.
            use: which columns (a building may keep several, e.g. its frame's and the schedule around it).
            start_s: the first hour (UTC seconds).
            hours: how many hours.
            key: what else the columns depend on; another key computes them again.
            compute: the columns of the ``n`` hours from a given first hour (UTC seconds), ``compute(first_s, n)``.

        Returns:
            Per column, its first ``hours`` values (a copy: the caller may change it).
        """
        entry = self._entries.get((building.id, use))
        if entry is not None and entry.building is None:
            # Read back from a state file: the same building and key, by digest, or nothing.
            if entry.digest == _clock_digest(building, key):
                entry.building, entry.key = building, key
            else:
                entry = None
        first = -1
        if entry is not None and entry.building is building and entry.key == key:
            offset_h = (start_s - entry.start_s) / _HOUR_S
            if offset_h.is_integer() and 0 <= offset_h <= entry.hours:
                first = int(offset_h)
        if entry is None or first < 0:
            total = hours + CLOCK_AHEAD_H
            entry = _ClockEntry(building, key, start_s, total, compute(start_s, total))
            self._entries[(building.id, use)] = entry
            self.computed += 1
            first = 0
        elif first + hours > entry.hours:
            # An hour's columns depend on the hour alone: the hours past the entry's end are computed from there.
            more = first + hours + CLOCK_AHEAD_H - entry.hours
            tail = compute(entry.start_s + entry.hours * _HOUR_S, more)
            columns = {name: np.concatenate([column[first:], tail[name]]) for name, column in entry.columns.items()}
            entry = _ClockEntry(building, key, start_s, entry.hours - first + more, columns, entry.digest)
            self._entries[(building.id, use)] = entry
            self.extended += 1
            first = 0
        return {name: column[first : first + hours].copy() for name, column in entry.columns.items()}

    def to_arrays(self) -> dict[str, npt.NDArray[Any]]:
        """The cache as named arrays (no pickle): a JSON ``clock_meta`` and each entry's columns (``clock<i>_<name>``)."""
        entries: list[dict[str, Any]] = []
        arrays: dict[str, npt.NDArray[Any]] = {}
        for (building_id, use), entry in sorted(self._entries.items()):
            # An entry read back keeps its digest (checked when it was taken); a computed one gets its own.
            digest = entry.digest
            if not digest and entry.building is not None:
                digest = _clock_digest(entry.building, entry.key)
            i = len(entries)
            entries.append({"building": building_id, "use": use, "digest": digest, "start_s": entry.start_s,
                            "hours": entry.hours, "columns": sorted(entry.columns)})
            for name, column in entry.columns.items():
                arrays[f"clock{i}_{name}"] = column
        arrays["clock_meta"] = np.array(json.dumps({"entries": entries}))
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]]) -> ClockCache:
        """A cache from :meth:`to_arrays`'s arrays (an ``np.load`` of them will do); empty without ``clock_meta``.

        Raises:
            ValueError, KeyError, TypeError: the arrays are not such a cache.
        """
        cache = cls()
        if "clock_meta" not in arrays:
            return cache
        for i, e in enumerate(json.loads(str(arrays["clock_meta"]))["entries"]):
            columns = {name: np.asarray(arrays[f"clock{i}_{name}"]) for name in e["columns"]}
            cache._entries[(str(e["building"]), str(e["use"]))] = _ClockEntry(
                None, (), float(e["start_s"]), int(e["hours"]), columns, digest=str(e["digest"]))
        return cache


def _clock_digest(building: Building, key: tuple[object, ...]) -> str:
    """What a cached entry stands for: the building's whole model and the key (their ``repr``s are complete)."""
    text = building.model_dump_json() + "\n" + repr(key)
    return hashlib.sha256(text.encode()).hexdigest()


def building_bookings(inventory: Inventory, building: Building, frame: HourlyFrame) -> list[tuple[datetime, datetime]]:
    """The booked intervals of a building over a frame (with a day either side, for pre-heating).

    Args:
        inventory: gives the timezone and the folder booking calendars are relative to.
        building: the building.
        frame: the hours of interest.

    Returns:
        Sorted, disjoint UTC intervals; empty when the building has no booking calendar.

    Raises:
        inventory.bookings.BookingsError: the booking calendar cannot be used.
    """
    if building.schedule.bookings is None:
        return []
    start = frame.time(0) - timedelta(days=1)
    end = frame.time(0) + timedelta(hours=frame.hours) + timedelta(days=1)
    return booked_intervals(building, inventory.source_dir, start, end, inventory.organisation.tz)


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


def _usage_series(
    building: Building,
    usage: Usage,
    frame: HourlyFrame,
    blank: Mapping[str, BoolArray],
    shares: Mapping[str, Mapping[Usage, FloatArray]] | None = None,
) -> UsageSeries | None:
    shares = shares or {}
    if usage is Usage.WATER:
        points = [p for p in building.points if p.cumulative and p.quantity is Quantity.WATER_VOLUME]
    else:
        points = [
            p for p in building.points
            if p.cumulative and p.quantity in _ENERGY_COUNTERS and (p.usage is usage or usage in p.serves)
        ]
    points = [p for p in points if p.id in frame.consumption]
    if not points:
        return None
    total = np.zeros(frame.hours)
    for point in points:
        values = frame.consumption[point.id] * _to_kwh(point)
        if point.id in blank:
            values = np.where(blank[point.id], np.nan, values)
        if usage is not Usage.WATER and point.id in shares:
            values = values * shares[point.id][usage]
        total = total + values
    unit = "m3" if usage is Usage.WATER else "kWh"
    return UsageSeries(usage=usage, unit=unit, energy=points[0].energy, points=tuple(p.id for p in points), values=total)


def usage_shares(
    building: Building,
    frame: HourlyFrame,
    outdoor_c: FloatArray,
    local_day: IntArray,
    calendar: FrenchCalendar,
    config: FeatureConfig | None = None,
    blank: Mapping[str, BoolArray] | None = None,
) -> dict[str, dict[Usage, FloatArray]]:
    """Hour-by-hour share of each usage of the meters that serve several (``serves``).

    A declared ``split`` is used as is, every hour. Left out, a meter serving
    heating and another usage is split the way an energy advisor reads a
    gas bill: the part of its daily consumption that follows the heating
    degree days is heating, the weather-independent base is the other usage.
    That is the daily change-point baseline of :mod:`mv.baseline`, fitted on
    the meter's days *before* the current one (refitted every
    ``config.split_refit`` on the last year), so a share never depends on
    later data. In hour ``h`` of a day, the heating share is
    ``H / (H + B)`` with ``H = slope · HDD`` (the degree hours of that day up
    to ``h``) and ``B`` the intercept of the day's type. Until
    ``config.split_min_days`` complete days are seen, or when no fit can be
    made, everything goes to the meter's own usage. A meter whose usages do
    not include heating cannot be split from the weather: everything goes to
    its own usage unless a split is declared.

    Args:
        building: the building.
        frame: the hourly data.
        outdoor_c: outdoor temperature per hour.
        local_day: local date ordinal of each hour.
        calendar: holidays, for the day types of the baseline.
        config: gives the minimum days and the refit period.
        blank: per point, hours whose data must be ignored.

    Returns:
        Per meter that serves several usages, per usage, the share of each hour (summing to 1).
    """
    config = config or FeatureConfig()
    blank = blank or {}
    out: dict[str, dict[Usage, FloatArray]] = {}
    for point in building.points:
        if not point.serves or not point.cumulative or point.id not in frame.consumption:
            continue
        usages = (point.usage, *point.serves)
        if point.split is not None:
            out[point.id] = {u: np.full(frame.hours, point.split[u]) for u in usages}
            continue
        shares = {u: np.full(frame.hours, 1.0 if u is point.usage else 0.0) for u in usages}
        if Usage.HEATING in usages:
            values = frame.consumption[point.id].copy()
            if point.id in blank:
                values[blank[point.id]] = np.nan
            heating = _learnt_heating_share(building, values, outdoor_c, local_day, calendar, config)
            other = next(u for u in usages if u is not Usage.HEATING)
            learnt = np.isfinite(heating)
            shares[Usage.HEATING] = np.where(learnt, heating, shares[Usage.HEATING])
            shares[other] = np.where(learnt, 1.0 - heating, shares[other])
            for u in usages:
                if u not in (Usage.HEATING, other):
                    shares[u] = np.where(learnt, 0.0, shares[u])
        out[point.id] = shares
    return out


_SPLIT_MIN_SPREAD_K = 6.0
"""The daily mean outdoor temperatures of the days a split is learnt from must span this much."""


def _learnt_heating_share(
    building: Building,
    values: FloatArray,
    outdoor_c: FloatArray,
    local_day: IntArray,
    calendar: FrenchCalendar,
    config: FeatureConfig,
) -> FloatArray:
    """Heating share per hour from a daily change-point baseline fitted on earlier days; ``nan`` before any fit."""
    n = values.size
    share = np.full(n, np.nan)
    if n == 0:
        return share
    ordinals, day_of_hour = np.unique(local_day, return_inverse=True)
    ndays = ordinals.size
    days = [date.fromordinal(int(o)) for o in ordinals]
    energy = np.full(ndays, np.nan)
    temps = np.full((ndays, 25), np.nan)  # 25: the day the clocks go back
    for d in range(ndays):
        idx = np.flatnonzero(day_of_hour == d)
        temps[d, : idx.size] = outdoor_c[idx]
        # A day counts only when all its hours are known: 23 to 25 of them.
        if idx.size >= 23 and np.isfinite(values[idx]).all():
            energy[d] = float(values[idx].sum())
    types = classify_days(days, building, calendar)
    # Only the heating term matters to the split: a cooling balance point out of reach (no
    # cooling degree days) and a 1 K grid keep each weekly fit to a few milliseconds.
    fit_config = BaselineConfig(
        min_span=timedelta(days=config.split_min_days),
        min_coverage=0.5,
        min_days_per_type=config.split_min_days,
        cooling_balance_c=(60.0, 60.0),
        balance_step_c=1.0,
    )
    refit_days = max(1, round(config.split_refit / timedelta(days=1)))
    params: DailyParams | None = None
    last_fit = -refit_days
    for d in range(ndays):
        if d - last_fit >= refit_days:
            lo = max(0, d - 365)
            obs = DailyObservations.build(days[lo:d], energy[lo:d], temps[lo:d], types[lo:d])
            usable = obs.usable()
            # Base load and heating slope can only be told apart across different weather: on
            # days all equally cold the fit would take any split (issue 11).
            spread = float(np.ptp(obs.daily_mean_c[usable])) if usable.any() else 0.0
            if int(usable.sum()) >= config.split_min_days and spread >= _SPLIT_MIN_SPREAD_K:
                try:
                    params = DailyChangePointBaseline(fit_config).fit(obs).params
                    last_fit = d
                except (InsufficientData, ModelError):
                    pass  # keep the previous fit; try again tomorrow
        if params is None:
            continue
        idx = np.flatnonzero(day_of_hour == d)
        kind = params.type_map.get(types[d], types[d])
        base = max(0.0, params.intercept.get(kind, 0.0))
        if params.heating_balance_c is None:
            share[idx] = 0.0
            continue
        slope = params.heating_slope.get(kind, 0.0)
        dh = np.maximum(0.0, params.heating_balance_c - outdoor_c[idx])
        known = np.isfinite(dh)
        # Degree hours of the day so far, hour by hour: the share of hour h never looks past h.
        sofar = np.cumsum(np.where(known, dh, 0.0)) / np.maximum(np.cumsum(known), 1)
        heat = slope * sofar
        total = heat + base
        share[idx] = np.where(np.cumsum(known) > 0, np.where(total > 0, heat / np.where(total > 0, total, 1.0), 0.0), np.nan)
    return share


def schedule_masks(
    building: Building,
    calendar: FrenchCalendar,
    tz: ZoneInfo,
    times: FloatArray,
    preheat: timedelta,
    *,
    booked: Sequence[tuple[datetime, datetime]] = (),
) -> tuple[FloatArray, BoolArray]:
    """Open fraction of each hour and the pre-heating allowance, from opening intervals per local day.

    A booked interval is open time, on top of the weekly hours (a hall booked on
    a Saturday night, a gymnasium on a public holiday); the days of an
    exceptional closure stay closed, bookings or not.

    Args:
        building: gives the schedule.
        calendar: public and school holidays.
        tz: the organisation's timezone.
        times: start of each hour, UTC epoch seconds.
        preheat: length of the pre-heating allowance before each opening.
        booked: booked intervals (aware datetimes), e.g. from :func:`building_bookings`.

    Returns:
        The open fraction of each hour (sampled every 15 min) and the pre-heating hours.
    """
    if times.size == 0:
        return np.zeros(0), np.zeros(0, dtype=np.bool_)
    s_arr, e_arr = _open_intervals(building, calendar, tz, float(times[0]), float(times[-1]) + _HOUR_S, booked)
    offsets = (np.arange(_SAMPLES_PER_HOUR) + 0.5) * _HOUR_S / _SAMPLES_PER_HOUR
    samples = times[:, None] + offsets[None, :]
    open_frac = in_intervals(samples, s_arr, e_arr).mean(axis=1)
    lead = preheat.total_seconds()
    warming = in_intervals(samples, s_arr - lead, s_arr).any(axis=1)
    return open_frac, warming & (open_frac < 1.0)


def open_days(
    building: Building,
    calendar: FrenchCalendar,
    tz: ZoneInfo,
    local_day: IntArray,
    *,
    booked: Sequence[tuple[datetime, datetime]] = (),
) -> BoolArray:
    """Per hour, whether its whole local day has open time (weekly hours or bookings).

    The schedule is read over whole local days, so the answer for an hour does
    not depend on where the frame ends: live detection at 7:00 and a replay of
    the whole year give the day the same type.

    Args:
        building: gives the schedule.
        calendar: public and school holidays.
        tz: the organisation's timezone.
        local_day: local date ordinal of each hour.
        booked: booked intervals (aware datetimes).

    Returns:
        One flag per hour.
    """
    if local_day.size == 0:
        return np.zeros(0, dtype=np.bool_)
    first = date.fromordinal(int(local_day[0]))
    last = date.fromordinal(int(local_day[-1]))
    start_s = datetime(first.year, first.month, first.day, tzinfo=tz).timestamp()
    end_s = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=tz).timestamp()
    starts, ends = _open_intervals(building, calendar, tz, start_s, end_s, booked)
    opened: set[int] = set()
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        lo, hi = max(s, start_s), min(e, end_s)
        if hi <= lo:
            continue
        day = datetime.fromtimestamp(lo, tz).date()
        # An interval may span midnight (a booked evening): every local day it touches is open.
        while datetime.combine(day, datetime.min.time(), tzinfo=tz).timestamp() < hi:
            opened.add(day.toordinal())
            day += timedelta(days=1)
    result: BoolArray = np.isin(local_day, np.array(sorted(opened), dtype=np.int64))
    return result


def _open_intervals(
    building: Building,
    calendar: FrenchCalendar,
    tz: ZoneInfo,
    start_s: float,
    end_s: float,
    booked: Sequence[tuple[datetime, datetime]],
) -> tuple[FloatArray, FloatArray]:
    """Merged opening intervals (weekly hours and bookings, minus closures) around ``[start_s, end_s)``."""
    first = datetime.fromtimestamp(start_s, tz).date() - timedelta(days=1)
    last = datetime.fromtimestamp(end_s, tz).date() + timedelta(days=1)
    spans: list[tuple[float, float]] = []
    day = first
    while day <= last:
        spans.extend(day_intervals(building.schedule, day, calendar, tz))
        day += timedelta(days=1)
    closures = [
        (
            datetime.combine(c.start, datetime.min.time(), tzinfo=tz).timestamp(),
            datetime.combine(c.end + timedelta(days=1), datetime.min.time(), tzinfo=tz).timestamp(),
        )
        for c in building.schedule.closures
    ]
    for b_start, b_end in booked:
        pieces = [(b_start.timestamp(), b_end.timestamp())]
        for c_start, c_end in closures:
            pieces = [p for s, e in pieces for p in ((s, min(e, c_start)), (max(s, c_end), e)) if p[1] > p[0]]
        spans.extend(pieces)
    merged: list[list[float]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    if not merged:
        return np.empty(0), np.empty(0)
    arr = np.asarray(merged, dtype=np.float64)
    return arr[:, 0], arr[:, 1]


_LONG_CLOSURE_DAYS = 3
"""A run of this many closed days is unoccupied for more than 48 hours (R241-26: frost protection)."""


def expected_setpoints(
    building: Building,
    calendar: FrenchCalendar,
    tz: ZoneInfo,
    times: FloatArray,
    open_frac: FloatArray,
    preheat: BoolArray,
    *,
    booked: Sequence[tuple[datetime, datetime]] = (),
) -> tuple[FloatArray, BoolArray]:
    """The heating setpoint expected in each hour, from the building's comfort targets.

    - outside the heating season (``heating_season``): ``nan``, no heating expected;
    - open (at least half the hour) or pre-heating: the occupied setpoint;
    - other hours of a day the building opens: the night setback;
    - a closed day: the weekend setpoint, or frost protection when the closed
      days around it last more than 48 hours (holidays, long closures), as
      art. R241-26 allows 8 °C then.

    Whether a day is open comes from the schedule and the bookings, never from
    data, so the value of an hour is the same whatever the data after it.

    Args:
        building: gives the schedule, the season and the setpoints (:meth:`~inventory.Building.comfort`).
        calendar: public and school holidays.
        tz: the organisation's timezone.
        times: start of each hour, UTC epoch seconds.
        open_frac: open fraction of each hour (:func:`schedule_masks`).
        preheat: the pre-heating hours (:func:`schedule_masks`).
        booked: booked intervals, the same as given to :func:`schedule_masks`.

    Returns:
        The setpoint of each hour (°C, ``nan`` out of season) and whether the hour is in the heating season.
    """
    n = times.size
    if n == 0:
        return np.zeros(0), np.zeros(0, dtype=np.bool_)
    comfort = building.comfort()
    local_days = [datetime.fromtimestamp(float(s), tz).date() for s in times]
    first, last = min(local_days), max(local_days)
    # Look a few days past both ends: a long closure is long whatever part of it the frame holds.
    margin = timedelta(days=_LONG_CLOSURE_DAYS)
    lo = datetime.combine(first - margin, datetime.min.time(), tzinfo=tz).timestamp()
    hi = datetime.combine(last + margin + timedelta(days=1), datetime.min.time(), tzinfo=tz).timestamp()
    starts, ends = _open_intervals(building, calendar, tz, lo, hi, booked)
    span_days = [first - margin + timedelta(days=i) for i in range((last - first).days + 2 * margin.days + 1)]
    is_open_day = []
    for day in span_days:
        d0 = datetime.combine(day, datetime.min.time(), tzinfo=tz).timestamp()
        d1 = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=tz).timestamp()
        is_open_day.append(bool(np.any((starts < d1) & (ends > d0))))
    run_length = [0] * len(span_days)
    i = 0
    while i < len(span_days):
        if is_open_day[i]:
            i += 1
            continue
        j = i
        while j < len(span_days) and not is_open_day[j]:
            j += 1
        for k in range(i, j):
            run_length[k] = j - i
        i = j
    index = {day: k for k, day in enumerate(span_days)}
    season = building.heating_season
    in_season = np.array([season is None or season.contains(d) for d in local_days], dtype=np.bool_)
    open_day = np.array([is_open_day[index[d]] for d in local_days], dtype=np.bool_)
    long_closed = np.array([run_length[index[d]] >= _LONG_CLOSURE_DAYS for d in local_days], dtype=np.bool_)
    closed_day_c = np.where(long_closed, comfort.frost_c, comfort.weekend_c)
    setpoint = np.where((open_frac >= 0.5) | preheat, comfort.setpoint_c, np.where(open_day, comfort.setback_c, closed_day_c))
    result: FloatArray = np.where(in_season, setpoint, np.nan)
    return result, in_season


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
FEATURE_LOOKBACK = 24 + 168 + _SAME_SIGN_CAP
"""Hours a feature row looks back at most: the mean ratio of 24 hours, of ratios against a 168-hour level; the sign run."""


def build_features(
    hours: BuildingHours, usage: Usage, expected: FloatArray, config: FeatureConfig | None = None, *, start: int = 0
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
        expected: the expected consumption of each hour (``nan`` unknown); rows are built up to its length.
        config: feature settings (unused by the residual features, kept for the signature of callers).
        start: first hour wanted: the rows of hours ``start`` … only, computed from the
            :data:`FEATURE_LOOKBACK` hours before it on (the same values as the whole series' rows).

    Returns:
        An ``(len(expected) - start, len(FEATURE_NAMES))`` array.

    Raises:
        KeyError: when the building has no counter for the usage.

    >>> import numpy as np
    >>> _same_sign_run(np.array([0.5, 1.0, 2.0, -1.0, -3.0])).tolist()
    [0.0, 1.0, 2.0, -0.0, -1.0]
    """
    del config
    # Every column looks back at most FEATURE_LOOKBACK hours: the rows from ``start`` on need no earlier hours.
    lo, end = max(0, start - FEATURE_LOOKBACK), expected.size
    y = hours.usages[usage].values[lo:end]
    expected = expected[lo:]
    n = y.size
    residual = y - expected
    level = _trailing_mean(np.maximum(expected, 0.0), 168, 24)
    ratio = residual / (np.maximum(expected, 0.0) + _LEVEL_SHARE * level + 1e-9)
    ratio = np.where(np.isfinite(level) & (level > 0), ratio, np.nan)
    ratio24 = _trailing_mean(ratio, 24, 18)
    how = hours.hour_of_week[lo:end].astype(np.float64)
    outdoor = hours.outdoor_c[lo:end] if np.isfinite(hours.outdoor_c).any() else np.zeros(n)
    columns = [
        residual,
        ratio,
        ratio24,
        _same_sign_run(residual),
        np.sin(2 * np.pi * how / 168.0),
        np.cos(2 * np.pi * how / 168.0),
        hours.open_frac[lo:end],
        outdoor,
    ]
    result: FloatArray = np.column_stack(columns)[start - lo :]
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
