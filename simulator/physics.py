"""A physically plausible model of every building of the portfolio, driven by the inventory.

Each building is one thermal zone (an RC model: heat-loss coefficient ``UA`` and
heat capacity ``C``) heated by a capacity-limited heater that follows the
schedule: the comfort setpoint from the pre-heat start to closing, the
setback setpoint otherwise, no heating outside the heating season (daily mean
above 15.5 °C) except where the usage needs it (swimming pool). Closed days
follow the schedule, public holidays and the school holidays of the zone, in
the organisation's timezone. Occupancy drives plug loads, people's heat, water
and hot water, CO2; daylight and occupancy drive lighting and illuminance. The
renovations that cover heating lower ``UA`` from their date. A building with no heating meter
and no invoices of a fuel is heated by electric convectors: its general electricity meter
counts the heat too.

The model runs on a fixed one-minute grid aligned to the Unix epoch, with inputs
constant over each minute. Counters (electricity, heat, gas, water) integrate
exactly within a minute, so a counter read at any instant is consistent with the
power around it. Random parts (weather noise, day-to-day activity, sensor noise)
are drawn from the seed and the grid index, never from a running generator, so
the stateful :class:`PortfolioModel` and the bulk :func:`generate_history` give
the same values for the same start, seed and faults.

>>> from datetime import UTC, datetime, timedelta
>>> from pathlib import Path
>>> from inventory import load_inventory
>>> inventory = load_inventory(Path("examples/commune.yaml"))
>>> start = datetime(2026, 1, 12, tzinfo=UTC)
>>> model = PortfolioModel(inventory, start, seed=7)
>>> before = model.value("mairie-gas-volume")
>>> model.advance(start + timedelta(days=1))
>>> model.value("mairie-gas-volume") > before
True
>>> history = generate_history(inventory, start, start + timedelta(days=1), timedelta(minutes=15), seed=7)
>>> history.values.shape
(96, 108)
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from inventory import (
    COUNTER_QUANTITIES,
    Building,
    BuildingUsage,
    Energy,
    FrenchCalendar,
    Inventory,
    Point,
    Quantity,
    Usage,
)
from inventory.calendar import OpeningHours
from simulator.faults import Fault, FaultKind, validate_faults
from simulator.weather import Weather

__all__ = [
    "GRID",
    "USAGE_PROFILES",
    "History",
    "PortfolioModel",
    "UsageProfile",
    "generate_history",
    "sample_history",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

GRID = timedelta(minutes=1)
"""The model's time step: inputs are constant over each minute of the epoch-aligned grid."""

_DT_S = GRID.total_seconds()
_CHUNK_STEPS = 7 * 24 * 60
_HEATING_LIMIT_C = 15.5
_DESIGN_OUTDOOR_C = -7.0
_OUTDOOR_CO2_PPM = 420.0
_CO2_TIME_CONSTANT_S = 40 * 60.0
_PERSON_GAINS_W = 80.0
_SOLAR_APERTURE = 0.03  # effective glazing per m² of floor, for solar gains
_DAYLIGHT_FACTOR = 0.02
_HOT_WATER_WH_PER_L = 52.3  # 4.186 kJ/(kg.K) x 45 K
_DHW_STANDBY_W_M2 = 0.5
_BOILER_EFFICIENCY = 0.9
_PUMPS_SHARE = 0.015  # electricity of the heating pumps per W of heat
_SECURITY_LIGHTING = 0.02


@dataclass(frozen=True, slots=True)
class UsageProfile:
    """Physical and behavioural parameters of a building usage.

    Areas are the building's floor area, except heat loss (heated area).
    """

    heat_loss_w_per_k_m2: float
    time_constant: timedelta
    preheat: timedelta
    base_load_w_m2: float
    plug_load_w_m2: float
    lighting_w_m2: float
    lighting_lux: float
    m2_per_person: float
    water_l_per_person_h: float
    hot_water_share: float
    co2_rise_ppm: float
    process_heat_w_m2: float = 0.0
    process_elec_w_m2: float = 0.0
    make_up_water_m3_per_h: float = 0.0
    always_heated: bool = False


_H = timedelta(hours=1)
_GENERIC = UsageProfile(2.2, 40 * _H, 3 * _H, 2.0, 5.0, 9.0, 300, 20, 0.6, 0.1, 600)

USAGE_PROFILES: dict[BuildingUsage, UsageProfile] = {
    BuildingUsage.SCHOOL: UsageProfile(2.4, 55 * _H, 3 * _H, 1.5, 4.0, 9.0, 300, 8, 1.0, 0.15, 900),
    BuildingUsage.NURSERY: UsageProfile(2.2, 50 * _H, 3 * _H, 2.0, 6.0, 8.0, 300, 12, 4.0, 0.3, 700),
    BuildingUsage.GYMNASIUM: UsageProfile(1.8, 30 * _H, 3 * _H, 1.0, 1.5, 10.0, 400, 40, 6.0, 0.5, 400),
    BuildingUsage.SWIMMING_POOL: UsageProfile(
        2.6, 40 * _H, 2 * _H, 4.0, 4.0, 10.0, 300, 15, 8.0, 0.6, 300,
        process_heat_w_m2=35.0, process_elec_w_m2=11.0, make_up_water_m3_per_h=0.5, always_heated=True,
    ),
    BuildingUsage.TOWN_HALL: UsageProfile(2.2, 45 * _H, 2.5 * _H, 2.5, 8.0, 8.0, 300, 20, 0.6, 0.1, 600),
    BuildingUsage.LIBRARY: UsageProfile(2.0, 45 * _H, 2.5 * _H, 2.0, 5.0, 10.0, 400, 25, 0.4, 0.05, 500),
    BuildingUsage.OFFICES: UsageProfile(2.0, 45 * _H, 2.5 * _H, 2.5, 9.0, 8.0, 300, 15, 0.6, 0.1, 600),
    BuildingUsage.CULTURAL_CENTRE: UsageProfile(2.3, 35 * _H, 3 * _H, 1.5, 5.0, 12.0, 300, 10, 0.5, 0.05, 800),
    BuildingUsage.WORKSHOP: UsageProfile(2.6, 25 * _H, 2 * _H, 2.0, 10.0, 8.0, 300, 50, 2.0, 0.3, 300),
    BuildingUsage.RESTAURANT: UsageProfile(2.3, 35 * _H, 2 * _H, 6.0, 25.0, 10.0, 300, 5, 2.0, 0.4, 800),
    BuildingUsage.CHURCH: UsageProfile(3.0, 80 * _H, 6 * _H, 0.3, 0.5, 4.0, 150, 30, 0.0, 0.0, 300),
    BuildingUsage.OTHER: _GENERIC,
}
"""Default parameters per building usage (French municipal stock, order of magnitude)."""


def _stream(*parts: object) -> int:
    return zlib.crc32(":".join(str(p) for p in parts).encode())


def _uniform(seed: int, stream: int, keys: IntArray) -> FloatArray:
    """Counter-based uniform noise in [0, 1): a splitmix64 hash of (seed, stream, key)."""
    x = keys.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    x = x + np.uint64(((seed & 0xFFFFFFFF) << 32) | (stream & 0xFFFFFFFF))
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    result: FloatArray = (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return result


def _uniform_scalar(seed: int, stream: int) -> float:
    return float(_uniform(seed, stream, np.zeros(1, dtype=np.int64))[0])


def _window(t: FloatArray, fault: Fault) -> BoolArray:
    result: BoolArray = (t >= fault.start.timestamp()) & (t < fault.end.timestamp())
    return result


@dataclass(frozen=True, slots=True)
class _Channels:
    """Per-minute physical quantities of one building over a chunk."""

    outdoor_c: FloatArray
    indoor_c: FloatArray
    setpoint_c: FloatArray
    heat_w: FloatArray
    dhw_w: FloatArray
    elec_w: FloatArray
    light_w: FloatArray
    light_fraction: FloatArray
    water_l_h: FloatArray
    co2_ppm: FloatArray
    occupied: FloatArray
    outdoor_lux: FloatArray
    heater_w: FloatArray


class _BuildingPlan:
    """Constants and calendar of one building."""

    def __init__(self, building: Building, inventory: Inventory, calendar: FrenchCalendar, faults: list[Fault]) -> None:
        self.building = building
        self.profile = USAGE_PROFILES.get(building.usage, _GENERIC)
        self.hours = OpeningHours(building, inventory.organisation.tz, calendar)
        self.faults = faults
        self.ua_w_k = self.profile.heat_loss_w_per_k_m2 * building.heated_area_m2
        self.capacity_j_k = self.ua_w_k * self.profile.time_constant.total_seconds()
        self.heater_max_w = 1.2 * self.ua_w_k * (building.heating_setpoint_occupied_c + 2.0 - _DESIGN_OUTDOOR_C)
        # Renovations that cover heating (or say nothing) cut the heat-loss coefficient
        # from local midnight of their date; the heater is left as it was.
        self.renovations: list[tuple[float, float]] = []
        for renovation in building.renovations:
            if renovation.usages and Usage.HEATING not in renovation.usages:
                continue
            when = datetime.combine(renovation.date, datetime.min.time(), tzinfo=inventory.organisation.tz)
            self.renovations.append((when.timestamp(), 1.0 - renovation.promised_savings_pct / 100.0))

    def ua(self, t: FloatArray) -> FloatArray:
        factor = np.ones_like(t)
        for when, keep in self.renovations:
            factor = np.where(t >= when, factor * keep, factor)
        result: FloatArray = self.ua_w_k * factor
        return result


@dataclass(frozen=True, slots=True)
class _Chunk:
    """What one run of the engine computed: values per grid minute."""

    t: FloatArray  # start of each minute, epoch seconds
    values: FloatArray  # (n, P): rate per hour for counters, value otherwise
    base: FloatArray  # (P,): counter index at the start of the chunk
    before: FloatArray  # (n, P): counter increase from the chunk start to the start of each minute

    def counter(self, rows: IntArray, elapsed_h: FloatArray) -> FloatArray:
        """Counter indexes at ``elapsed_h`` hours into the minutes ``rows`` (monotone in time)."""
        result: FloatArray = self.base + (self.before[rows] + self.values[rows] * elapsed_h[:, None])
        return result


class _Engine:
    """Steps every building of the portfolio on the one-minute grid, in chunks."""

    def __init__(self, inventory: Inventory, start: datetime, seed: int, faults: Sequence[Fault]) -> None:
        if start.tzinfo is None:
            msg = "start must be timezone-aware"
            raise ValueError(msg)
        validate_faults(inventory, faults)
        self.inventory = inventory
        self.seed = seed
        self.weather = Weather(seed)
        self.start_s = start.timestamp()
        self.k_next = math.floor(self.start_s / _DT_S)
        calendar = FrenchCalendar(inventory.organisation.school_holiday_zone)
        building_faults = [f for f in faults if f.kind not in {FaultKind.STUCK_COUNTER, FaultKind.DEAD_SENSOR}]
        self.plans = [
            _BuildingPlan(b, inventory, calendar, [f for f in building_faults if f.building == b.id])
            for _, b in inventory.buildings()
        ]
        self.plan_index = {plan.building.id: i for i, plan in enumerate(self.plans)}
        self.points: list[Point] = [p for _, p in inventory.points()]
        self.index = {p.id: i for i, p in enumerate(self.points)}
        self.is_counter: BoolArray = np.array([p.quantity in COUNTER_QUANTITIES for p in self.points], dtype=np.bool_)
        self.point_faults = [f for f in faults if f.point is not None]
        self.held: dict[int, float] = {}
        self.indoor_c = np.array([p.building.heating_setpoint_unoccupied_c + 1.0 for p in self.plans])
        self.co2_ppm = np.full(len(self.plans), _OUTDOOR_CO2_PPM)
        self.counters = np.array([self._initial_index(p) for p in self.points])
        self.extractors = [self._extractor(self.inventory.building_of(p.id), p) for p in self.points]
        self.point_plan = [self.plan_index[self.inventory.building_of(p.id).id] for p in self.points]

    def _initial_index(self, point: Point) -> float:
        if point.quantity not in COUNTER_QUANTITIES:
            return 0.0
        u = _uniform_scalar(self.seed, _stream(point.id, "index"))
        if point.quantity in {Quantity.ACTIVE_ENERGY, Quantity.HEAT_ENERGY}:
            kwh = 5_000.0 + 200_000.0 * u
            return kwh * {"Wh": 1000.0, "kWh": 1.0, "MWh": 0.001}[point.unit]
        m3 = 100.0 + 5_000.0 * u
        return m3 * (1000.0 if point.unit == "L" else 1.0)

    # -- per-point mapping from building channels -------------------------------------------

    def _extractor(self, building: Building, point: Point) -> Callable[[_Channels, IntArray], FloatArray]:
        q = point.quantity
        seed = self.seed
        stream = _stream(point.id, "noise")
        zone_u = _uniform_scalar(seed, _stream(building.id, point.zone or "-", "zone"))

        def noise(k: IntArray) -> FloatArray:
            return _uniform(seed, stream, k) - 0.5

        # A building with no heating meter and no invoices of a fuel is heated by electric
        # convectors on its general meter: that meter carries the heat too.
        electric_heating = not any(
            p.cumulative and (p.usage is Usage.HEATING or Usage.HEATING in p.serves) for p in building.points
        ) and all(a.energy is Energy.ELECTRICITY for a in building.invoices)

        def energy_source(ch: _Channels) -> FloatArray:
            if electric_heating and point.usage is Usage.GENERAL and q is Quantity.ACTIVE_ENERGY:
                return ch.elec_w + ch.heat_w
            if point.usage is Usage.LIGHTING:
                return ch.light_w
            if point.usage is Usage.DHW:
                return ch.dhw_w
            if point.usage is Usage.HEATING and q in {Quantity.ACTIVE_ENERGY, Quantity.ACTIVE_POWER}:
                return ch.heat_w  # direct electric heating
            if q in {Quantity.ACTIVE_ENERGY, Quantity.ACTIVE_POWER}:
                return ch.elec_w
            return ch.heat_w

        energy_scale = {"Wh": 1.0, "kWh": 1e-3, "MWh": 1e-6, "W": 1.0, "kW": 1e-3}
        volume_scale = {"m3": 1e-3, "L": 1.0, "m3/h": 1e-3, "L/h": 1.0, "L/min": 1.0 / 60.0}
        match q:
            case Quantity.ACTIVE_ENERGY | Quantity.HEAT_ENERGY | Quantity.ACTIVE_POWER | Quantity.HEAT_POWER:
                scale = energy_scale[point.unit]
                return lambda ch, k: energy_source(ch) * scale
            case Quantity.GAS_VOLUME:
                per_unit_wh = 1000.0 * (point.conversion_kwh_per_unit or 11.2)

                def gas(ch: _Channels, k: IntArray) -> FloatArray:
                    heat = ch.dhw_w if point.usage is Usage.DHW else ch.heat_w
                    result: FloatArray = heat / _BOILER_EFFICIENCY / per_unit_wh
                    return result

                return gas
            case Quantity.WATER_VOLUME | Quantity.WATER_FLOW:
                scale = volume_scale[point.unit]
                return lambda ch, k: ch.water_l_h * scale
            case Quantity.TEMPERATURE:
                if point.usage is Usage.WEATHER:
                    return lambda ch, k: ch.outdoor_c + 0.2 * noise(k)
                offset = -0.7 + 1.0 * zone_u if point.zone else 0.0
                return lambda ch, k: ch.indoor_c + offset + 0.15 * noise(k)
            case Quantity.SETPOINT:
                return lambda ch, k: ch.setpoint_c
            case Quantity.HUMIDITY:
                return lambda ch, k: 45.0 + 8.0 * ch.occupied - 0.8 * (ch.indoor_c - 20.0) + 4.0 * noise(k)
            case Quantity.OCCUPANCY:
                return lambda ch, k: ch.occupied
            case Quantity.ILLUMINANCE:
                plan = self.plans[self.plan_index[building.id]]
                factor = 0.01 + 0.02 * zone_u
                lux = plan.profile.lighting_lux
                return lambda ch, k: (ch.outdoor_lux * factor + ch.light_fraction * lux) * (1.0 + 0.04 * noise(k))
            case Quantity.CO2:
                return lambda ch, k: ch.co2_ppm + 20.0 * noise(k)
            case Quantity.VOLTAGE:
                return lambda ch, k: 230.0 + 4.0 * noise(k)
            case Quantity.CURRENT:
                return lambda ch, k: ch.elec_w / (3 * 230.0 * 0.95)
            case Quantity.STATE:
                return lambda ch, k: (ch.heater_w > 0).astype(np.float64)
        msg = f"point {point.id}: quantity {q.value} is not simulated"  # pragma: no cover - enum is exhaustive
        raise ValueError(msg)

    # -- stepping -------------------------------------------------------------------------------

    def run(self, n: int) -> _Chunk:
        """Compute the next ``n`` grid minutes and move the state past them."""
        k: IntArray = self.k_next + np.arange(n, dtype=np.int64)
        t: FloatArray = k.astype(np.float64) * _DT_S
        outdoor = self.weather.temperature_c(t)
        daily_mean = self.weather.daily_mean_c(t)
        irradiance = self.weather.irradiance_w_m2(t)
        outdoor_lux = self.weather.illuminance_lx(t)
        pre = [self._prepare(plan, t, k, outdoor, daily_mean, irradiance, outdoor_lux) for plan in self.plans]
        n_b = len(self.plans)
        free_c = np.empty((n, n_b))
        setpoint = np.empty((n, n_b))
        decay = np.empty((n, n_b))
        gain = np.empty((n, n_b))
        heater_max = np.empty((n, n_b))
        co2_target = np.empty((n, n_b))
        for b, prep in enumerate(pre):
            free_c[:, b], setpoint[:, b], decay[:, b], gain[:, b], heater_max[:, b], co2_target[:, b] = prep.loop_inputs
        indoor = np.empty((n, n_b))
        heater = np.empty((n, n_b))
        co2 = np.empty((n, n_b))
        co2_decay = math.exp(-_DT_S / _CO2_TIME_CONSTANT_S)
        temp = self.indoor_c.copy()
        ppm = self.co2_ppm.copy()
        # The heater is the one non-linear part (it cannot cool, and it has a
        # maximum power), so time is stepped here, all buildings at once.
        for i in range(n):
            natural = free_c[i] + (temp - free_c[i]) * decay[i]
            power = np.minimum(np.maximum((setpoint[i] - natural) * gain[i], 0.0), heater_max[i])
            temp = natural + power / gain[i]
            ppm = ppm * co2_decay + co2_target[i] * (1.0 - co2_decay)
            indoor[i] = temp
            heater[i] = power
            co2[i] = ppm
        self.indoor_c = temp
        self.co2_ppm = ppm
        channels = [
            prep.finish(indoor[:, b], heater[:, b], co2[:, b]) for b, prep in enumerate(pre)
        ]
        values = np.empty((n, len(self.points)))
        for p, extract in enumerate(self.extractors):
            values[:, p] = extract(channels[self.point_plan[p]], k)
        rates = np.where(self.is_counter, values, 0.0)
        # Sums are grouped as base + (partial sum) so that rounding can never make
        # a counter step back, within a chunk or across chunks.
        totals = np.cumsum(rates * (_DT_S / 3600.0), axis=0)
        before = np.vstack([np.zeros((1, totals.shape[1])), totals[:-1]])
        chunk = _Chunk(t=t, values=values, base=self.counters, before=before)
        self.counters = self.counters + totals[-1]
        self.k_next += n
        self._capture_held(chunk)
        return chunk

    def _prepare(
        self,
        plan: _BuildingPlan,
        t: FloatArray,
        k: IntArray,
        outdoor: FloatArray,
        daily_mean: FloatArray,
        irradiance: FloatArray,
        outdoor_lux: FloatArray,
    ) -> _Prepared:
        building, prof = plan.building, plan.profile
        floor_m2 = building.floor_area_m2
        occupied = plan.hours.mask(t)
        comfort = plan.hours.mask(t, prof.preheat)
        setpoint = np.zeros_like(t)
        light_forced = np.zeros(t.shape, dtype=np.bool_)
        creep = np.zeros_like(t)
        leak_l_h = np.zeros_like(t)
        for fault in plan.faults:
            window = _window(t, fault)
            match fault.kind:
                case FaultKind.HEATING_LEFT_ON:
                    comfort = comfort | window
                case FaultKind.SETPOINT_RAISED:
                    setpoint += np.where(window, fault.number("delta_c"), 0.0)
                case FaultKind.LIGHTING_LEFT_ON:
                    light_forced |= window & ~occupied
                case FaultKind.BASELOAD_CREEP:
                    span = (fault.end - fault.start).total_seconds()
                    progress = (t - fault.start.timestamp()) / span
                    creep += np.where(window, fault.number("increase_pct") / 100.0 * progress, 0.0)
                case FaultKind.WATER_LEAK:
                    leak_l_h += np.where(window, 1000.0 * fault.number("flow_m3_per_h"), 0.0)
                case _:  # pragma: no cover - point faults are applied on the outputs
                    pass
        setpoint += np.where(comfort, building.heating_setpoint_occupied_c, building.heating_setpoint_unoccupied_c)
        occ = occupied.astype(np.float64)
        day = np.floor_divide(k, 1440)
        activity = 0.85 + 0.3 * _uniform(self.seed, _stream(building.id, "activity"), day)
        jitter = 1.0 + 0.08 * (_uniform(self.seed, _stream(building.id, "elec"), k) - 0.5)
        people = occ * activity * floor_m2 / prof.m2_per_person
        indoor_daylight = outdoor_lux * _DAYLIGHT_FACTOR
        light_fraction = np.where(
            # Occupants rarely switch off: at least half the lights stay on however bright it is.
            occupied, np.clip(1.0 - indoor_daylight / (2.0 * prof.lighting_lux), 0.5, 1.0), _SECURITY_LIGHTING
        )
        light_fraction = np.where(light_forced, 1.0, light_fraction)
        light_w = prof.lighting_w_m2 * floor_m2 * light_fraction
        base_w = prof.base_load_w_m2 * floor_m2 * (1.0 + creep) * jitter
        plug_w = prof.plug_load_w_m2 * floor_m2 * occ * activity * jitter
        process_elec_w = prof.process_elec_w_m2 * floor_m2
        gains = base_w + plug_w + light_w + people * _PERSON_GAINS_W + irradiance * floor_m2 * _SOLAR_APERTURE
        ua = plan.ua(t)
        decay = np.exp(-_DT_S * ua / plan.capacity_j_k)
        gain = ua / (1.0 - decay)
        heating_on = (daily_mean < _HEATING_LIMIT_C) | prof.always_heated
        heater_max = np.where(heating_on, plan.heater_max_w, 0.0)
        co2_target = _OUTDOOR_CO2_PPM + prof.co2_rise_ppm * occ * activity
        water_l_h = people * prof.water_l_per_person_h + 1000.0 * prof.make_up_water_m3_per_h + leak_l_h
        # Leaks and pool make-up water are cold: only people draw hot water.
        hot_l_h = people * prof.water_l_per_person_h * prof.hot_water_share
        dhw_w = hot_l_h * _HOT_WATER_WH_PER_L + _DHW_STANDBY_W_M2 * building.heated_area_m2
        return _Prepared(
            loop_inputs=(outdoor + gains / ua, setpoint, decay, gain, heater_max, co2_target),
            outdoor_c=outdoor,
            setpoint_c=setpoint,
            occupied=occ,
            light_w=light_w,
            light_fraction=light_fraction,
            other_elec_w=base_w + plug_w + process_elec_w,
            water_l_h=water_l_h,
            dhw_w=dhw_w,
            process_heat_w=prof.process_heat_w_m2 * building.heated_area_m2,
            outdoor_lux=outdoor_lux,
        )

    def _capture_held(self, chunk: _Chunk) -> None:
        """Remember the value of stuck counters and frozen sensors when their fault starts."""
        chunk_end = chunk.t[-1] + _DT_S
        for f, fault in enumerate(self.point_faults):
            capture = max(fault.start.timestamp(), self.start_s)
            if f in self.held or not (chunk.t[0] <= capture < chunk_end) or capture >= fault.end.timestamp():
                continue
            p = self.index[fault.point or ""]
            i = math.floor(capture / _DT_S) - math.floor(chunk.t[0] / _DT_S)
            value = chunk.values[i, p]
            if self.is_counter[p]:
                elapsed_h = np.array([(capture - chunk.t[i]) / 3600.0])
                value = chunk.counter(np.array([i]), elapsed_h)[0, p]
            self.held[f] = float(value)

    def override(self, p: int, t_s: float) -> float | None:
        """The held value (or ``nan`` when silent) of point ``p`` at a time, if a point fault runs."""
        for f, fault in enumerate(self.point_faults):
            if self.index[fault.point or ""] == p and fault.start.timestamp() <= t_s < fault.end.timestamp():
                return math.nan if fault.mode == "silent" else self.held[f]
        return None

    def apply_point_faults(self, times_s: FloatArray, values: FloatArray) -> None:
        """Overwrite sampled values (rows: ``times_s``) where a point fault is active."""
        for f, fault in enumerate(self.point_faults):
            window = _window(times_s, fault)
            if not window.any():
                continue
            p = self.index[fault.point or ""]
            if fault.mode == "silent":
                values[window, p] = np.nan
            else:
                values[window, p] = self.held[f]


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A building's inputs to the thermal loop and what it needs to finish the chunk."""

    loop_inputs: tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]
    outdoor_c: FloatArray
    setpoint_c: FloatArray
    occupied: FloatArray
    light_w: FloatArray
    light_fraction: FloatArray
    other_elec_w: FloatArray
    water_l_h: FloatArray
    dhw_w: FloatArray
    process_heat_w: float
    outdoor_lux: FloatArray

    def finish(self, indoor_c: FloatArray, heater_w: FloatArray, co2_ppm: FloatArray) -> _Channels:
        heat_w = heater_w + self.dhw_w + self.process_heat_w
        return _Channels(
            outdoor_c=self.outdoor_c,
            indoor_c=indoor_c,
            setpoint_c=self.setpoint_c,
            heat_w=heat_w,
            dhw_w=self.dhw_w,
            elec_w=self.other_elec_w + self.light_w + _PUMPS_SHARE * heat_w,
            light_w=self.light_w,
            light_fraction=self.light_fraction,
            water_l_h=self.water_l_h,
            co2_ppm=co2_ppm,
            occupied=self.occupied,
            outdoor_lux=self.outdoor_lux,
            heater_w=heater_w,
        )


class PortfolioModel:
    """The stateful model of every point, for live serving.

    Call :meth:`advance` with the current time, then read :meth:`value`. Time only
    moves forward. Values at a moment equal those of :func:`generate_history`
    started at the same ``start`` with the same seed and faults.

    Args:
        inventory: the portfolio.
        start: the simulated time the model starts at (aware).
        seed: seed of every random part.
        faults: faults to inject.

    Raises:
        ValueError: when ``start`` is naive or a fault does not fit the inventory.
    """

    def __init__(self, inventory: Inventory, start: datetime, *, seed: int = 0, faults: Sequence[Fault] = ()) -> None:
        self.inventory = inventory
        self.faults = tuple(faults)
        self._engine = _Engine(inventory, start, seed, self.faults)
        self._now = start.astimezone(UTC)
        self._current = self._engine.run(1)

    @property
    def now(self) -> datetime:
        """The simulated time of the values."""
        return self._now

    @property
    def point_ids(self) -> list[str]:
        """Every point id, in inventory order."""
        return [p.id for p in self._engine.points]

    def advance(self, to: datetime) -> None:
        """Move the model to a later time; an earlier time is ignored.

        Args:
            to: the new simulated time (aware).
        """
        if to <= self._now:
            return
        target_k = math.floor(to.timestamp() / _DT_S)
        missing = target_k - (self._engine.k_next - 1)
        while missing > 0:
            step = min(missing, _CHUNK_STEPS)
            self._current = self._engine.run(step)
            missing -= step
        self._now = to.astimezone(UTC)

    def _raw(self, p: int) -> float:
        last = self._current.values.shape[0] - 1
        if not self._engine.is_counter[p]:
            return float(self._current.values[last, p])
        elapsed_h = np.array([(self._now.timestamp() - float(self._current.t[last])) / 3600.0])
        return float(self._current.counter(np.array([last]), elapsed_h)[0, p])

    def value(self, point_id: str) -> float:
        """The value of a point now, in the point's unit.

        Counters give their index, sensors their reading. A stuck counter or a
        frozen sensor gives its held value, a silent dead sensor ``nan``.

        Raises:
            KeyError: for an unknown point.
        """
        p = self._engine.index[point_id]
        held = self._engine.override(p, self._now.timestamp())
        return self._raw(p) if held is None else held

    def rate(self, point_id: str) -> float:
        """The true rate of a counter now, in the point's unit per hour (kWh/h = kW, m3/h...).

        Raises:
            KeyError: for an unknown point.
            ValueError: when the point is not a counter.
        """
        p = self._engine.index[point_id]
        if not self._engine.is_counter[p]:
            msg = f"point {point_id} is not a counter"
            raise ValueError(msg)
        return float(self._current.values[-1, p])

    def is_reporting(self, point_id: str) -> bool:
        """Tell whether a sensor publishes now (false while a silent dead-sensor fault runs)."""
        return not math.isnan(self.value(point_id))


@dataclass(frozen=True, slots=True, eq=False)
class History:
    """Values of every point at regular times.

    Attributes:
        times: sample times, ``datetime64[ms]`` in UTC.
        point_ids: the columns of ``values``, in inventory order.
        values: shape ``(len(times), len(point_ids))``, in each point's unit;
            ``nan`` where a sensor did not publish.
    """

    times: npt.NDArray[np.datetime64]
    point_ids: tuple[str, ...]
    values: FloatArray

    def column(self, point_id: str) -> FloatArray:
        """The series of one point."""
        result: FloatArray = self.values[:, self.point_ids.index(point_id)]
        return result

    def datetimes(self) -> list[datetime]:
        """The sample times as aware UTC datetimes."""
        millis = self.times.astype("datetime64[ms]").astype(np.int64).tolist()
        return [datetime.fromtimestamp(ms / 1000.0, UTC) for ms in millis]

    def rows(self) -> Iterator[tuple[datetime, str, float]]:
        """Every ``(time, point_id, value)``, time by time, skipping missing values."""
        for moment, row in zip(self.datetimes(), self.values.tolist(), strict=True):
            for point_id, value in zip(self.point_ids, row, strict=True):
                if not math.isnan(value):
                    yield moment, point_id, value


def generate_history(
    inventory: Inventory,
    start: datetime,
    end: datetime,
    step: timedelta,
    *,
    seed: int = 0,
    faults: Iterable[Fault] = (),
    progress: Callable[[str, int, int], None] | None = None,
) -> History:
    """Generate the values of every point from ``start`` (included) to ``end`` (excluded).

    A year of the demo commune at 15-minute steps takes a few seconds.

    Args:
        inventory: the portfolio.
        start: first sample time (aware).
        end: end of the period (aware, excluded).
        step: time between samples.
        seed: seed of every random part.
        faults: faults to inject.
        progress: called after each chunk of simulated time with ``("simulating", done, total)``
            in simulation steps.

    Returns:
        The sampled values; counters are exact at each sample time, sensors give
        the value of the grid minute holding the sample time.

    Raises:
        ValueError: on naive times, an empty period or a non-positive step.
    """
    if start.tzinfo is None or end.tzinfo is None:
        msg = "start and end must be timezone-aware"
        raise ValueError(msg)
    if step <= timedelta(0) or end <= start:
        msg = f"need start < end and a positive step, got {start} .. {end} by {step}"
        raise ValueError(msg)
    step_s = step.total_seconds()
    start_s = start.timestamp()
    count = math.ceil((end.timestamp() - start_s) / step_s)
    sample_s = start_s + step_s * np.arange(count, dtype=np.float64)
    return sample_history(inventory, sample_s, seed=seed, faults=faults, progress=progress)


def sample_history(
    inventory: Inventory,
    sample_s: FloatArray,
    *,
    seed: int = 0,
    faults: Iterable[Fault] = (),
    progress: Callable[[str, int, int], None] | None = None,
) -> History:
    """The values of every point at given instants, as :func:`generate_history` gives them on a regular grid.

    The model starts at the first instant: the same seed, faults and first instant give the
    same values whatever the other instants (a utility meter read every 30 minutes or once a
    day, beside a grid of 15 minutes).

    Args:
        inventory: the portfolio.
        sample_s: sample instants, UTC epoch seconds, increasing (at least one).
        seed: seed of every random part.
        faults: faults to inject.
        progress: as for :func:`generate_history`.

    Returns:
        The sampled values.

    Raises:
        ValueError: when the instants are empty or not increasing.
    """
    if sample_s.size == 0 or (np.diff(sample_s) <= 0).any():
        msg = "sample instants must be increasing, at least one"
        raise ValueError(msg)
    engine = _Engine(inventory, datetime.fromtimestamp(float(sample_s[0]), UTC), seed, tuple(faults))
    count = sample_s.size
    sample_k = np.floor(sample_s / _DT_S).astype(np.int64)
    out = np.empty((count, len(engine.points)))
    last_k = int(sample_k[-1])
    j = 0
    first_k0 = engine.k_next
    while engine.k_next <= last_k:
        first_k = engine.k_next
        chunk = engine.run(min(_CHUNK_STEPS, last_k - first_k + 1))
        j_end = int(np.searchsorted(sample_k, engine.k_next, side="left"))
        rows = sample_k[j:j_end] - first_k
        elapsed_h = (sample_s[j:j_end] - chunk.t[rows]) / 3600.0
        out[j:j_end] = np.where(engine.is_counter, chunk.counter(rows, elapsed_h), chunk.values[rows])
        j = j_end
        if progress is not None:
            progress("simulating", engine.k_next - first_k0, last_k + 1 - first_k0)
    engine.apply_point_faults(sample_s, out)
    times = (np.round(sample_s * 1000.0).astype(np.int64)).astype("datetime64[ms]")
    return History(times=times, point_ids=tuple(p.id for p in engine.points), values=out)
