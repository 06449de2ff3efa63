"""The portfolio model: organisation, sites, buildings, zones, points, schedules.

Every model is a frozen pydantic v2 model that forbids unknown keys, so a typo in
the YAML is an error rather than a silently ignored setting.  Cross-references
(duplicate ids, unknown gateway, zone or profile) are checked on the whole
:class:`Inventory` and reported with the path of the offending field.

Sample (one point, see ``examples/commune.yaml`` for a whole commune)::

    organisation: {name: Commune de Valmont, population: 8400, school_holiday_zone: B}
    modbus_gateways: [{id: gw-mairie, host: 192.0.2.10, port: 502}]
    sites:
      - id: centre
        name: Centre-bourg
        buildings:
          - id: mairie
            name: Hôtel de ville
            usage: town_hall
            floor_area_m2: 900
            heated_area_m2: 850
            points:
              - id: mairie-elec
                quantity: active_energy
                unit: kWh
                usage: general
                cumulative: true
                energy: electricity
                modbus: {gateway: gw-mairie, unit: 1, profile: eastron-sdm630,
                         field: import_active_energy}
"""

from __future__ import annotations

import email.utils
import hashlib
import ipaddress
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from inventory.defaults import DEFAULT_TARIFFS_BY_NAME, EnergyTariff
from inventory.profiles import DeviceProfile, RegisterSpec, RegisterType, load_profiles

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
"""Ids are lowercase slugs: they become InfluxDB tags and Grafana variables."""
ID_MAX_LENGTH = 100
"""Longest id: InfluxDB refuses a series key (measurement and tags) over 64 KiB, so a point id of 100,000
characters passed `econome check` and then had every reading refused."""
GRAFANA_PREFIX_PATTERN = r"^[a-z0-9][a-z0-9-]{0,23}$"
"""A Grafana uid prefix: lowercase letters, digits and dashes, at most 24 characters."""

Loc = tuple[str | int, ...]


class _Frozen(BaseModel):
    # ``allow_inf_nan=False``: YAML's .nan and .inf are refused in every float field.
    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False, allow_inf_nan=False)


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|h|d)\s*$")
_DURATION_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "min": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
}


def parse_duration(value: object) -> object:
    """Parse ``"90s"``, ``"15min"``, ``"1h"`` or ``"500ms"`` into a timedelta.

    Bare numbers are refused: a duration must say its unit.

    >>> parse_duration("15min")
    datetime.timedelta(seconds=900)
    """
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match is None:
            msg = f"invalid duration {value!r}: use e.g. '500ms', '30s', '15min', '1h', '2d'"
            raise ValueError(msg)
        try:
            return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        except OverflowError as exc:
            # timedelta refuses more than 999,999,999 days with OverflowError, which
            # pydantic would not turn into a validation error.
            msg = f"duration {value!r} is too long"
            raise ValueError(msg) from exc
    if isinstance(value, int | float) and not isinstance(value, bool):
        msg = f"duration {value!r} has no unit: write e.g. '{value}s'"
        raise ValueError(msg)
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def format_duration(value: timedelta) -> str:
    """Write a timedelta the way the inventory does: ``"100ms"``, ``"30s"``, ``"1d"``.

    >>> format_duration(timedelta(days=1))
    '1d'
    """
    for unit in ("d", "h", "min", "s", "ms"):
        count = value / _DURATION_UNITS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{value.total_seconds():g}s"


def bounded(low: timedelta, high: timedelta) -> AfterValidator:
    """A validator refusing durations outside ``[low, high]``, with a message in inventory units."""

    def check(value: timedelta) -> timedelta:
        if not low <= value <= high:
            msg = f"{format_duration(value)} is outside {format_duration(low)}..{format_duration(high)}"
            raise ValueError(msg)
        return value

    return AfterValidator(check)


# Bounds of the durations of the inventory. A timeout of 0 would fail every
# request; an interval of years is a typo (issue 10), not a schedule.
PollInterval = Annotated[Duration, bounded(timedelta(milliseconds=100), timedelta(days=1))]
"""A point's poll interval: 100 ms to 1 day."""
Timeout = Annotated[Duration, bounded(timedelta(milliseconds=10), timedelta(seconds=60))]
"""A request timeout: 10 ms to 60 s (and shorter than the poll interval of its points)."""
Backoff = Annotated[Duration, bounded(timedelta(milliseconds=10), timedelta(hours=1))]
"""A reconnection delay: 10 ms to 1 h."""
RequestDelay = Annotated[Duration, bounded(timedelta(0), timedelta(seconds=10))]
"""A pause between two requests on RS-485: 0 to 10 s."""
Keepalive = Annotated[Duration, bounded(timedelta(seconds=1), timedelta(seconds=65535))]
"""An MQTT keepalive: 1 s to 65,535 s, the protocol's 16-bit limit."""


def _dated(low: date, high: date) -> AfterValidator:
    """A validator refusing dates outside ``[low, high]``: year 1 or 9999 is a typo, not a plan."""

    def check(value: date) -> date:
        if not low <= value <= high:
            msg = f"date {value.isoformat()} is outside {low.isoformat()}..{high.isoformat()}"
            raise ValueError(msg)
        return value

    return AfterValidator(check)


# Closures and mute windows are the operating calendar, inside the event-time
# window readings may carry (2000 to 2100); a renovation may be older.
CalendarDate = Annotated[date, _dated(date(2000, 1, 1), date(2099, 12, 31))]
"""A date of the operating calendar (closure, mute window): 2000-01-01 to 2099-12-31."""
HistoryDate = Annotated[date, _dated(date(1900, 1, 1), date(2099, 12, 31))]
"""A date of a building's history (renovation): 1900-01-01 to 2099-12-31."""


class Quantity(str, Enum):
    """What a point measures."""

    ACTIVE_ENERGY = "active_energy"
    ACTIVE_POWER = "active_power"
    HEAT_ENERGY = "heat_energy"
    HEAT_POWER = "heat_power"
    GAS_VOLUME = "gas_volume"
    WATER_VOLUME = "water_volume"
    WATER_FLOW = "water_flow"
    REACTIVE_ENERGY = "reactive_energy"
    APPARENT_POWER = "apparent_power"
    REACTIVE_POWER = "reactive_power"
    POWER_FACTOR = "power_factor"
    FREQUENCY = "frequency"
    HARMONIC_DISTORTION = "harmonic_distortion"
    VOLTAGE = "voltage"
    CURRENT = "current"
    TEMPERATURE = "temperature"
    SETPOINT = "setpoint"
    HUMIDITY = "humidity"
    OCCUPANCY = "occupancy"
    ILLUMINANCE = "illuminance"
    CO2 = "co2"
    STATE = "state"


UNITS: dict[Quantity, frozenset[str]] = {
    Quantity.ACTIVE_ENERGY: frozenset({"Wh", "kWh", "MWh"}),
    Quantity.ACTIVE_POWER: frozenset({"W", "kW"}),
    Quantity.HEAT_ENERGY: frozenset({"Wh", "kWh", "MWh"}),
    Quantity.HEAT_POWER: frozenset({"W", "kW"}),
    Quantity.GAS_VOLUME: frozenset({"m3", "L"}),
    Quantity.WATER_VOLUME: frozenset({"m3", "L"}),
    Quantity.WATER_FLOW: frozenset({"m3/h", "L/h", "L/min"}),
    Quantity.REACTIVE_ENERGY: frozenset({"varh", "kvarh"}),
    Quantity.APPARENT_POWER: frozenset({"VA", "kVA"}),
    Quantity.REACTIVE_POWER: frozenset({"var", "kvar"}),
    Quantity.POWER_FACTOR: frozenset({"1"}),
    Quantity.FREQUENCY: frozenset({"Hz"}),
    Quantity.HARMONIC_DISTORTION: frozenset({"%"}),
    Quantity.VOLTAGE: frozenset({"V"}),
    Quantity.CURRENT: frozenset({"A"}),
    Quantity.TEMPERATURE: frozenset({"degC"}),
    Quantity.SETPOINT: frozenset({"degC"}),
    Quantity.HUMIDITY: frozenset({"%"}),
    Quantity.OCCUPANCY: frozenset({"1"}),
    Quantity.ILLUMINANCE: frozenset({"lx"}),
    Quantity.CO2: frozenset({"ppm"}),
    Quantity.STATE: frozenset({"1"}),
}
"""Units accepted per quantity; ``"1"`` is dimensionless (0/1 or a ratio)."""

COUNTER_QUANTITIES = frozenset(
    {Quantity.ACTIVE_ENERGY, Quantity.REACTIVE_ENERGY, Quantity.HEAT_ENERGY, Quantity.GAS_VOLUME, Quantity.WATER_VOLUME}
)


class Usage(str, Enum):
    """The end use a point serves, as an advisor splits a bill."""

    HEATING = "heating"
    LIGHTING = "lighting"
    DHW = "dhw"
    VENTILATION = "ventilation"
    COOLING = "cooling"
    GENERAL = "general"
    WATER = "water"
    COMFORT = "comfort"
    WEATHER = "weather"
    OTHER = "other"


class BuildingUsage(str, Enum):
    """Building types of a French municipal portfolio."""

    SCHOOL = "school"
    NURSERY = "nursery"
    GYMNASIUM = "gymnasium"
    SWIMMING_POOL = "swimming_pool"
    TOWN_HALL = "town_hall"
    LIBRARY = "library"
    OFFICES = "offices"
    CULTURAL_CENTRE = "cultural_centre"
    WORKSHOP = "workshop"
    RESTAURANT = "restaurant"
    CHURCH = "church"
    OTHER = "other"


class Energy(str, Enum):
    """Energies (and water) that carry a tariff and an emission factor."""

    ELECTRICITY = "electricity"
    NATURAL_GAS = "natural_gas"
    HEATING_NETWORK = "heating_network"
    FUEL_OIL = "fuel_oil"
    WOOD_PELLETS = "wood_pellets"
    WATER = "water"


class Weekday(str, Enum):
    """Days of the weekly schedule, Monday first as in ``date.weekday()``."""

    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


WEEKDAYS = list(Weekday)

DEFAULT_TARIFFS: dict[Energy, EnergyTariff] = {Energy(k): v for k, v in DEFAULT_TARIFFS_BY_NAME.items()}


class TimeRange(_Frozen):
    """An opening interval within one day, start included, end excluded."""

    start: time
    end: time

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        if isinstance(data, str):
            parts = data.split("-")
            if len(parts) != 2:
                msg = f"opening hours {data!r} must look like '08:00-18:00'"
                raise ValueError(msg)
            end = parts[1].strip()
            # "24:00", as a timetable writes the end of the day (a hall open until midnight): 00:00 here.
            return {"start": parts[0].strip(), "end": "00:00" if end in ("24:00", "24:00:00") else end}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.end <= self.start and self.end != time(0):
            msg = f"opening hours end {self.end} is not after start {self.start}"
            raise ValueError(msg)
        return self

    def contains(self, moment: time) -> bool:
        """Tell whether a local wall-clock time falls in this range."""
        if self.end == time(0):
            return moment >= self.start
        return self.start <= moment < self.end


class Closure(_Frozen):
    """An exceptional closure, both dates included (works, bridge day, strike)."""

    start: CalendarDate
    end: CalendarDate
    reason: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> Closure:
        if self.end < self.start:
            msg = f"closure ends {self.end} before it starts {self.start}"
            raise ValueError(msg)
        return self


class MuteWindow(_Frozen):
    """A period when a building's anomaly alerts are muted (works, a known event), both dates included."""

    start: CalendarDate
    end: CalendarDate
    reason: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> MuteWindow:
        if self.end < self.start:
            msg = f"mute window ends {self.end} before it starts {self.start}"
            raise ValueError(msg)
        return self

    def span(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """The window's instants: local midnight of its first day to local midnight after its last.

        >>> MuteWindow(start=date(2026, 3, 28), end=date(2026, 3, 29)).span(ZoneInfo("Europe/Paris"))[1].isoformat()
        '2026-03-30T00:00:00+02:00'
        """
        return (datetime.combine(self.start, time(0), tzinfo=tz),
                datetime.combine(self.end + timedelta(days=1), time(0), tzinfo=tz))


class Bookings(_Frozen):
    """The booking calendar of a hall or a gymnasium: each booked event is open time.

    Communes manage their rooms in a booking calendar; its iCalendar export (a
    ``.ics`` file, or the calendar's URL) says when the building is used, on top
    of its weekly hours.
    """

    ical: str = Field(min_length=1)
    """A ``.ics`` file (relative to the inventory file) or an ``http(s)://`` URL."""


class Schedule(_Frozen):
    """Weekly opening hours, exceptional closures and the holiday policy.

    A day left out of ``weekly`` is closed all day, unless a booking opens it.
    """

    weekly: dict[Weekday, list[TimeRange]] = Field(default_factory=dict)
    closures: list[Closure] = Field(default_factory=list)
    closed_on_public_holidays: bool = True
    closed_on_school_holidays: bool = False
    bookings: Bookings | None = None

    def opening_hours(self, day: Weekday) -> list[TimeRange]:
        """Opening ranges of a weekday (empty when closed)."""
        return self.weekly.get(day, [])

    def weekly_open_hours(self) -> float:
        """Hours open in a normal week, for a summary."""
        total = timedelta()
        for ranges in self.weekly.values():
            for rng in ranges:
                end = timedelta(hours=24) if rng.end == time(0) else _as_delta(rng.end)
                total += end - _as_delta(rng.start)
        return total.total_seconds() / 3600


def _as_delta(moment: time) -> timedelta:
    return timedelta(hours=moment.hour, minutes=moment.minute, seconds=moment.second)


class Renovation(_Frozen):
    """Works on a building, with the savings promised by the design office."""

    date: HistoryDate
    description: str
    promised_savings_pct: float = Field(ge=0, le=100)
    usages: list[Usage] = Field(default_factory=list)


_MONTH_DAY_RE = re.compile(r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")


def _month_day(value: object) -> object:
    if isinstance(value, str):
        match = _MONTH_DAY_RE.match(value.strip())
        if match is None:
            msg = f"{value!r} is not a month and day: write e.g. '10-15' for 15 October"
            raise ValueError(msg)
        month, day = int(match.group(1)), int(match.group(2))
        try:
            date(2000, month, day)  # a leap year: 02-29 is a day
        except ValueError as exc:
            msg = f"{value!r} is not a day of the year"
            raise ValueError(msg) from exc
        return (month, day)
    return value


MonthDay = Annotated[tuple[int, int], BeforeValidator(_month_day)]
"""A day of the year, written ``"MM-DD"``."""


class HeatingSeason(_Frozen):
    """The months heating runs, both days included (``start: "10-15"``, ``end: "05-15"``).

    Outside the season heating is off whatever the weather: a heating meter
    standing still then is expected, and consumption is a fault.
    """

    start: MonthDay
    end: MonthDay

    def contains(self, day: date) -> bool:
        """Tell whether heating is in season on a day."""
        key = (day.month, day.day)
        if self.start <= self.end:
            return self.start <= key <= self.end
        return key >= self.start or key <= self.end


R241_26_OCCUPIED_C = 19.0
"""Code de l'énergie, art. R241-26: the upper limit of the mean heating temperature while occupied."""
R241_26_UNOCCUPIED_C = 16.0
"""Art. R241-26: the limit when unoccupied for 24 to 48 hours."""
R241_26_LONG_UNOCCUPIED_C = 8.0
"""Art. R241-26: the limit when unoccupied for more than 48 hours."""

EXEMPT_FROM_R241_26 = frozenset({BuildingUsage.SWIMMING_POOL, BuildingUsage.NURSERY})
"""Building types the R241-26 limits do not fit by default (pools are heated far above 19 °C;
crèches for young children are held warmer): set ``heating_limits_regulated`` to override."""


class Zone(_Frozen):
    """A part of a building: a classroom wing, a hall, a pool hall.

    A zone may differ from its building: a pool hall in a sports centre, a
    crèche wing in a school. Its fields left out take the building's.
    """

    id: str = Field(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)
    name: str
    heated_area_m2: float | None = Field(default=None, gt=0)
    usage: BuildingUsage | None = None
    heating_setpoint_occupied_c: float | None = Field(default=None, ge=5, le=35)
    overheating_limit_c: float | None = Field(default=None, ge=5, le=40)
    heating_limits_regulated: bool | None = None


@dataclass(frozen=True, slots=True)
class ComfortTargets:
    """The indoor temperatures expected of a building or one of its zones, resolved.

    Attributes:
        setpoint_c: heating setpoint while occupied.
        setback_c: setpoint at night on open days.
        weekend_c: setpoint on closed days (weekends).
        frost_c: frost-protection setpoint of long closures (holidays).
        limit_c: the indoor temperature above which heating while occupied is overheating.
        regulated: whether the R241-26 limits apply (19 °C occupied, 16 °C and 8 °C unoccupied).
        usage: the building type of the zone (or the building).
    """

    setpoint_c: float
    setback_c: float
    weekend_c: float
    frost_c: float
    limit_c: float
    regulated: bool
    usage: BuildingUsage


class ModbusBinding(_Frozen):
    """Where a point is read on Modbus TCP.

    Either ``profile`` and ``field`` (a register of a shipped device profile) or
    ``register`` (a raw register spec) is given, never both.
    """

    gateway: str
    unit: int = Field(ge=0, le=247)
    profile: str | None = None
    field: str | None = None
    raw_register: RegisterSpec | None = Field(default=None, alias="register")
    scale: float | None = None
    """Multiplies the profile's scale: the pulse weight of a pulse counter, a CT ratio."""
    poll_interval: PollInterval = timedelta(seconds=60)

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_source(self) -> ModbusBinding:
        if self.raw_register is not None and (self.profile or self.field):
            msg = "give either 'register' or 'profile' + 'field', not both"
            raise ValueError(msg)
        if self.raw_register is None and not (self.profile and self.field):
            msg = "give 'register', or both 'profile' and 'field'"
            raise ValueError(msg)
        if self.scale is not None and (self.scale == 0 or self.raw_register is not None):
            msg = "'scale' multiplies a profile field's scale and must not be 0; a raw 'register' has its own scale"
            raise ValueError(msg)
        return self


class PayloadFormat(str, Enum):
    """How an MQTT payload is decoded.

    ``plain`` is a bare number (or true/false, ON/OFF); ``json`` takes ``field``
    (a dot path) from a JSON object; ``zigbee2mqtt`` is a Zigbee2MQTT device
    state (``{"temperature": 19.2, "occupancy": true, "illuminance_lux": 310}``);
    ``chirpstack_v4`` and ``ttn_v3`` are LoRaWAN uplink events, where ``field``
    is read in the decoded object (``object`` for ChirpStack v4,
    ``uplink_message.decoded_payload`` for The Things Stack v3) and the time in
    the event (``time``, ``received_at``).
    """

    PLAIN = "plain"
    JSON = "json"
    ZIGBEE2MQTT = "zigbee2mqtt"
    CHIRPSTACK_V4 = "chirpstack_v4"
    TTN_V3 = "ttn_v3"


_MAX_TOPIC_BYTES = 65_535
"""Longest MQTT topic, in UTF-8 bytes (a two-byte length prefix)."""


class MqttBinding(_Frozen):
    """Which MQTT topic carries a point, and how to decode it."""

    broker: str = "default"
    topic: str = Field(min_length=1)
    format: PayloadFormat = PayloadFormat.PLAIN
    field: str | None = None
    timestamp_field: str | None = None

    @model_validator(mode="after")
    def _field_for_json(self) -> MqttBinding:
        if self.format is not PayloadFormat.PLAIN and not self.field:
            msg = f"format '{self.format.value}' needs 'field', the path of the value (e.g. 'temperature')"
            raise ValueError(msg)
        if "\0" in self.topic:
            # MQTT 3.1.1 §1.5.3: the broker drops the connection at the SUBSCRIBE, every topic of the broker with it.
            msg = f"topic {self.topic[:80]!r} holds a NUL character, which MQTT forbids"
            raise ValueError(msg)
        size = len(self.topic.encode("utf-8", "surrogatepass"))
        if size > _MAX_TOPIC_BYTES:
            msg = f"topic {self.topic[:40]!r}... is {size} bytes long, more than MQTT's {_MAX_TOPIC_BYTES}"
            raise ValueError(msg)
        levels = self.topic.split("/")
        if "#" in self.topic and (levels[-1] != "#" or self.topic.count("#") > 1):
            msg = f"topic {self.topic!r}: '#' may only be the last level"
            raise ValueError(msg)
        if any("+" in level and level != "+" for level in levels):
            msg = f"topic {self.topic!r}: '+' must fill a whole level"
            raise ValueError(msg)
        return self

    @property
    def is_pattern(self) -> bool:
        """Tell whether the topic has wildcards."""
        return "+" in self.topic or "#" in self.topic


class EnedisBinding(_Frozen):
    """A Linky meter, read from Enedis.

    Load curves (average power per 10, 30 or 60 minutes) and daily indexes are imported from
    the files of the Enedis customer area, or fetched through the Data Connect API.

    The point is the meter's consumption, an ``active_energy`` counter: imported load curves
    become a cumulative index (:mod:`collectors.utilities`).
    """

    prm: str = Field(pattern=r"^\d{14}$")
    """The PRM (point de référence mesure), also called PDL: the 14 digits on the bill and on the meter."""
    data_connect: bool = False
    """Fetch the data daily through Enedis Data Connect (the customer's consent is given once
    on the Enedis site); left out, the data come from imported files only."""


class GrdfBinding(_Frozen):
    """A Gazpar meter, read from GRDF.

    Daily consumption in m3 and kWh, with the conversion coefficient, is imported from the
    files of the GRDF customer area, or fetched through the ADICT API.

    The point is the meter's consumption: a ``gas_volume`` counter in m3 (the kWh follow
    the day's coefficient when GRDF gives it), or an energy counter in kWh.
    """

    pce: str = Field(pattern=r"^(?:\d{14}|GI\d{6})$")
    """The PCE (point de comptage et d'estimation): 14 digits, or GI and 6 digits on older contracts."""
    adict: bool = False
    """Fetch the data daily through the GRDF ADICT API (the customer's consent is given once
    on the GRDF site); left out, the data come from imported files only."""
    publication: Literal["daily", "monthly"] = "daily"
    """When GRDF publishes the meter's daily data: ``daily`` (a 1M household meter: from D+1 to D+3)
    or ``monthly`` (an MM professional meter: the days of month M-1 between the 10th and the 20th
    of month M). It sets how long the point may be silent before it is reported missing."""


class MeterReplacement(_Frozen):
    """A counter swapped for a new one, or reset by a technician.

    The consumption across the swap is ``(old_final - last index) + (index - new_initial)``.
    """

    at: AwareDatetime
    old_final: float = Field(ge=0)
    new_initial: float = Field(default=0.0, ge=0)
    reason: str = ""


class VirtualMeter(_Frozen):
    """A meter computed from others: sums and differences of counters of the building.

    Example: heating = boiler gas - domestic hot water.
    """

    id: str = Field(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)
    name: str = ""
    usage: Usage
    energy: Energy | None = None
    add: list[str] = Field(min_length=1)
    subtract: list[str] = Field(default_factory=list)


class Point(_Frozen):
    """A measured point: a meter register or a sensor value."""

    id: str = Field(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)
    name: str = ""
    zone: str | None = None
    quantity: Quantity
    unit: str
    usage: Usage
    cumulative: bool = False
    energy: Energy | None = None
    conversion_kwh_per_unit: float | None = Field(default=None, gt=0)
    modbus: ModbusBinding | None = None
    mqtt: MqttBinding | None = None
    enedis: EnedisBinding | None = None
    grdf: GrdfBinding | None = None
    replacements: tuple[MeterReplacement, ...] = ()
    serves: tuple[Usage, ...] = ()
    """Other usages this meter also serves: one gas meter for heating and hot water is
    ``usage: heating, serves: [dhw]``."""
    split: dict[Usage, float] | None = None
    """Declared yearly shares of ``usage`` and ``serves`` (summing to 1). Left out for a meter
    that serves several usages, the split is learnt: the part that follows the weather is
    heating, the rest the other usages."""
    submeter_of: str | None = None
    """The counter this one is part of (a lighting sub-meter of the general meter)."""
    backfill: bool = False
    """The point's source replays history (a gateway emptying its buffer, an import of past
    readings): its old event times are accepted, instead of being dead-lettered as older
    than ``ECONOME_MAX_AGE_S``. Times before 2000 or from 2100 on are refused all the same."""

    @model_validator(mode="after")
    def _consistent(self) -> Point:
        allowed = UNITS[self.quantity]
        if self.unit not in allowed:
            msg = f"unit {self.unit!r} does not fit {self.quantity.value}: use one of {sorted(allowed)}"
            raise ValueError(msg)
        if self.cumulative and self.quantity not in COUNTER_QUANTITIES:
            msg = f"{self.quantity.value} cannot be a cumulative counter"
            raise ValueError(msg)
        bindings = [b for b in (self.modbus, self.mqtt, self.enedis, self.grdf) if b is not None]
        if len(bindings) != 1:
            msg = "give exactly one binding: 'modbus', 'mqtt', 'enedis' (a Linky) or 'grdf' (a Gazpar)"
            raise ValueError(msg)
        if self.enedis is not None and not (self.quantity is Quantity.ACTIVE_ENERGY and self.cumulative):
            msg = "an 'enedis' point is the Linky's consumption: quantity active_energy, cumulative: true"
            raise ValueError(msg)
        if self.grdf is not None and not (
            self.cumulative and self.quantity in {Quantity.GAS_VOLUME, Quantity.HEAT_ENERGY}
        ):
            msg = "a 'grdf' point is the Gazpar's consumption: quantity gas_volume (m3) or heat_energy (kWh), cumulative: true"
            raise ValueError(msg)
        if self.replacements and not self.cumulative:
            msg = "only a cumulative counter can have replacements"
            raise ValueError(msg)
        if self.quantity is Quantity.GAS_VOLUME and self.conversion_kwh_per_unit is None:
            msg = "a gas volume needs 'conversion_kwh_per_unit' (e.g. 11.2 kWh PCS per m3)"
            raise ValueError(msg)
        if self.usage in self.serves or len(set(self.serves)) != len(self.serves):
            msg = f"'serves' {[u.value for u in self.serves]} repeats a usage (the point's usage is {self.usage.value})"
            raise ValueError(msg)
        if self.split is not None:
            served = {self.usage, *self.serves}
            if set(self.split) != served:
                msg = f"'split' must give a share for each of {sorted(u.value for u in served)}"
                raise ValueError(msg)
            if any(not 0 <= share <= 1 for share in self.split.values()) or abs(sum(self.split.values()) - 1) > 1e-6:
                msg = f"the shares of 'split' must be between 0 and 1 and sum to 1, got {sum(self.split.values()):g}"
                raise ValueError(msg)
        return self

    def __hash__(self) -> int:
        # Points key sets and dicts; ``split`` is a dict, so the default hash of a frozen model
        # (over every field) would fail. Ids are unique in an inventory, and equal points have equal ids.
        return hash(self.id)

    @property
    def protocol(self) -> Literal["modbus", "mqtt", "enedis", "grdf"]:
        """The protocol of the binding."""
        if self.modbus is not None:
            return "modbus"
        if self.mqtt is not None:
            return "mqtt"
        return "enedis" if self.enedis is not None else "grdf"

    @property
    def is_utility(self) -> bool:
        """Tell whether the point comes from a utility (Enedis, GRDF), a day late or more, not from a live collector."""
        return self.enedis is not None or self.grdf is not None


_ADDRESS_RE = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")


def _address(value: str) -> str:
    """One bare e-mail address: one ``@``, no whitespace, CR/LF, display name or list separator.

    >>> _address("cep@valmont.example")
    'cep@valmont.example'
    >>> _address("a@x.fr; b@y.fr")
    Traceback (most recent call last):
    ...
    ValueError: 'a@x.fr; b@y.fr' is not an e-mail address (one bare address: name@domain.tld)
    """
    if not _ADDRESS_RE.match(value) or value.count("@") != 1 or email.utils.parseaddr(value) != ("", value):
        msg = f"{value!r} is not an e-mail address (one bare address: name@domain.tld)"
        raise ValueError(msg)
    return value


Address = Annotated[str, AfterValidator(_address)]
"""An e-mail address (``name@domain.tld``), without display name."""


class InvoiceAccount(_Frozen):
    """A supply contract whose invoices are imported (``econome import invoices``).

    Invoices give consumption per invoiced period, for any energy or water, back to years
    no meter recorded: they feed the yearly follow-up and the OPERAT reference year.
    """

    id: str = Field(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)
    """The account's id, the ``account`` column of the invoice file."""
    energy: Energy
    name: str = ""
    reference: str | None = None
    """The contract or delivery-point reference printed on the invoices (PRM, PCE, contract number)."""
    conversion_kwh_per_unit: float | None = Field(default=None, gt=0)
    """kWh per invoiced unit, for invoices in m3, litres of fuel oil or tonnes of pellets."""


class Building(_Frozen):
    """A building with its schedule, renovations, zones and points."""

    id: str = Field(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)
    name: str
    usage: BuildingUsage
    floor_area_m2: float = Field(gt=0)
    heated_area_m2: float = Field(gt=0)
    year_built: int | None = Field(default=None, ge=1000, le=2100)
    operat_id: str | None = Field(default=None, pattern=r"^\S(?:.*\S)?$", max_length=64)
    """The identifier the OPERAT platform gave the building's EFA (entité fonctionnelle
    assujettie), written in the OPERAT export; left out, the export's identifier column is blank."""
    operat_reference_year: int | None = Field(default=None, ge=2010, le=2100)
    """The Décret tertiaire reference year the owner chose (2010 or later, article R. 174-23 CCH; a
    later year for a building that opened later); left out, ``econome report operat`` takes its
    ``--reference-year``, else the complete year 2010-2019 of the building's invoices with the
    highest consumption per m²."""
    advisors: list[Address] = Field(default_factory=list)
    """E-mail addresses of the building's energy advisors (one address each, no display name)."""
    heating_setpoint_occupied_c: float = Field(default=19.0, ge=5, le=35)
    heating_setpoint_unoccupied_c: float = Field(default=16.0, ge=5, le=35)
    """Setpoint at night on open days (the setback)."""
    heating_setpoint_weekend_c: float | None = Field(default=None, ge=5, le=35)
    """Setpoint on closed days; left out, the night setpoint."""
    heating_frost_protection_c: float = Field(default=R241_26_LONG_UNOCCUPIED_C, ge=3, le=16)
    """Setpoint of closures and holidays longer than 48 hours."""
    heating_season: HeatingSeason | None = None
    """When heating runs at all; left out, whenever the weather calls for it."""
    overheating_limit_c: float | None = Field(default=None, ge=5, le=40)
    """Indoor temperature above which heating while occupied is overheating; left out, the
    R241-26 limit of 19 °C where it applies, else the setpoint plus 2 °C."""
    heating_limits_regulated: bool | None = None
    """Whether the R241-26 limits apply; left out, decided by the building type
    (:data:`EXEMPT_FROM_R241_26`)."""
    schedule: Schedule = Field(default_factory=Schedule)
    mute: list[MuteWindow] = Field(default_factory=list)
    renovations: list[Renovation] = Field(default_factory=list)
    zones: list[Zone] = Field(default_factory=list)
    points: list[Point] = Field(default_factory=list)
    virtual_meters: list[VirtualMeter] = Field(default_factory=list)
    invoices: list[InvoiceAccount] = Field(default_factory=list)
    """Supply contracts whose invoices are imported."""

    @model_validator(mode="after")
    def _areas(self) -> Building:
        if self.heated_area_m2 > self.floor_area_m2:
            msg = f"heated_area_m2 {self.heated_area_m2} exceeds floor_area_m2 {self.floor_area_m2}"
            raise ValueError(msg)
        zones = {zone.id for zone in self.zones}
        for target in (None, *zones):
            comfort = self.comfort(target)
            if comfort.regulated and comfort.limit_c > R241_26_OCCUPIED_C:
                where = f"zone {target!r}" if target else "the building"
                msg = (
                    f"the overheating limit of {where}, {comfort.limit_c:g} °C, is above the R241-26 limit of "
                    f"{R241_26_OCCUPIED_C:g} °C: set 'heating_limits_regulated: false' if the law does not apply"
                )
                raise ValueError(msg)
        return self

    def comfort(self, zone: str | None = None) -> ComfortTargets:
        """The setpoints and overheating limit of the building, or of one of its zones.

        >>> b = Building(id="piscine", name="Piscine", usage="swimming_pool", floor_area_m2=900,
        ...              heated_area_m2=900, heating_setpoint_occupied_c=27)
        >>> b.comfort().regulated, b.comfort().limit_c
        (False, 29.0)
        """
        found = next((z for z in self.zones if z.id == zone), None) if zone is not None else None
        usage = (found.usage if found is not None else None) or self.usage
        setpoint = (found.heating_setpoint_occupied_c if found is not None else None) or self.heating_setpoint_occupied_c
        regulated = found.heating_limits_regulated if found is not None else None
        if regulated is None:
            regulated = self.heating_limits_regulated
        if regulated is None or (found is not None and found.usage is not None and found.heating_limits_regulated is None):
            regulated = usage not in EXEMPT_FROM_R241_26
        limit = found.overheating_limit_c if found is not None else None
        if limit is None:
            limit = self.overheating_limit_c
        if limit is None:
            limit = R241_26_OCCUPIED_C if regulated else setpoint + 2.0
        return ComfortTargets(
            setpoint_c=setpoint,
            setback_c=self.heating_setpoint_unoccupied_c,
            weekend_c=self.heating_setpoint_weekend_c if self.heating_setpoint_weekend_c is not None
            else self.heating_setpoint_unoccupied_c,
            frost_c=self.heating_frost_protection_c,
            limit_c=limit,
            regulated=regulated,
            usage=usage,
        )


class Site(_Frozen):
    """A group of buildings at one address."""

    id: str = Field(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)
    name: str
    address: str = ""
    buildings: list[Building] = Field(default_factory=list)


_ARTICLE = r"(?:de\s+la\s+|de\s+l['’]\s*|du\s+|des\s+|de\s+|d['’]\s*)?"
_DE = r"(?:de\s+|d['’]\s*)"
_DESIGNATIONS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    # A commune's article is part of its name (Commune de La Rochelle): only « de » goes.
    (re.compile(rf"^(?:{words})\s+{_ARTICLE if short else _DE}", re.IGNORECASE), short)
    for words, short in (
        (r"communaut[ée]\s+de\s+communes", "cc-"),
        (r"communaut[ée]\s+d['’]\s*agglom[ée]ration", "ca-"),
        (r"communaut[ée]\s+urbaine", "cu-"),
        (r"m[ée]tropole", "metropole-"),
        (r"syndicat\s+mixte", "sm-"),
        (r"syndicat\s+intercommunal", "si-"),
        (r"syndicat", "syndicat-"),
        (r"commune|ville", ""),
    )
)
"""French collectivity designations and what stands for them in a Grafana prefix: « Commune de »
and « Ville de » go (``valmont``), an intercommunality keeps a short mark (``cc-val-de-loire``), so
that « Communauté de communes de Valmont » and « Commune de Valmont » differ."""
_PREFIX_MAX = 24


def _prefix_slug(name: str) -> str:
    """The default Grafana prefix of an organisation name; see :attr:`Organisation.uid_prefix`."""
    name = name.strip()
    short = ""
    for pattern, mark in _DESIGNATIONS:
        rest = pattern.sub("", name, count=1)
        if rest != name and rest.strip():
            name, short = rest, mark
            break
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = short + re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    if len(slug) <= _PREFIX_MAX:
        return slug.strip("-") or "econome"
    # Cut at a word and add a hash of the whole name: two long names sharing their start stay apart.
    digest = hashlib.sha256(slug.encode()).hexdigest()[:4]
    head = slug[: _PREFIX_MAX - 5]
    if "-" in head[8:]:
        head = head[: head.rindex("-")]
    return f"{head.rstrip('-')}-{digest}"


class Organisation(_Frozen):
    """The commune or intercommunality that owns the portfolio."""

    name: str
    population: int = Field(gt=0)
    timezone: str = "Europe/Paris"
    school_holiday_zone: Literal["A", "B", "C"]
    grafana_prefix: str | None = Field(default=None, pattern=GRAFANA_PREFIX_PATTERN)
    """Prefix of the Grafana dashboard and folder uids, so that several organisations share one
    Grafana; None: a slug of ``name`` without a leading « Commune de » or « Ville de », an
    intercommunality's designation shortened (``Communauté de communes du Val de Loire`` →
    ``cc-val-de-loire``), see :attr:`uid_prefix`."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            msg = f"unknown timezone {value!r}"
            raise ValueError(msg) from exc
        return value

    @property
    def tz(self) -> ZoneInfo:
        """The organisation's timezone."""
        return ZoneInfo(self.timezone)

    @property
    def uid_prefix(self) -> str:
        """The prefix of its Grafana uids: ``grafana_prefix``, else a slug of ``name`` (24 characters at most).

        « Commune de » or « Ville de » is left out and an intercommunality's designation becomes a
        short mark (``cc-``, ``ca-``, ``cu-``, ``metropole-``, ``sm-``, ``si-``, ``syndicat-``), so that
        uids stay short (40 characters at most) and readable. A slug longer than 24 characters is
        cut at a word and ends in 4 hexadecimal digits of a hash of the whole slug.

        >>> Organisation(name="Commune d'Écully", population=1, school_holiday_zone="A").uid_prefix
        'ecully'
        >>> Organisation(name="Saint-Ours-les-Roches", population=1, school_holiday_zone="A").uid_prefix
        'saint-ours-les-roches'
        >>> Organisation(name="Communauté de communes du Val de Loire", population=1, school_holiday_zone="A").uid_prefix
        'cc-val-de-loire'
        """
        if self.grafana_prefix:
            return self.grafana_prefix
        return _prefix_slug(self.name)


class ModbusWorkarounds(_Frozen):
    """Quirks of a gateway and the meters behind it, in one explicit place.

    The defaults suit a well-behaved Modbus TCP meter. An RS-485 gateway often
    needs a pause between requests; some gateways refuse a read that spans an
    unmapped register, which ``max_gap: 0`` or ``block_reads: false`` avoids.
    """

    max_registers: int = Field(default=125, ge=1, le=125)
    max_gap: int = Field(default=8, ge=0, le=124)
    block_reads: bool = True
    request_delay: RequestDelay = timedelta(0)


class ModbusGateway(_Frozen):
    """A Modbus TCP endpoint (a meter or an RS-485 gateway)."""

    id: str = Field(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)
    host: str
    port: int = Field(default=502, ge=1, le=65535)
    timeout: Timeout = timedelta(seconds=1)
    reconnect_min: Backoff = timedelta(seconds=1)
    reconnect_max: Backoff = timedelta(seconds=60)
    workarounds: ModbusWorkarounds = Field(default_factory=ModbusWorkarounds)

    @model_validator(mode="after")
    def _backoff(self) -> ModbusGateway:
        if self.reconnect_max < self.reconnect_min:
            msg = "reconnect_max must not be below reconnect_min"
            raise ValueError(msg)
        return self


class MqttBroker(_Frozen):
    """An MQTT broker the sensors publish to.

    With ``tls: true`` the broker's certificate is checked against the system's
    CAs, or against ``ca_file`` (PEM) when given, such as the private CA that
    ``deploy/init-secrets.sh`` creates. ``cert_file`` (and ``key_file`` when the
    key is not in the same PEM) authenticate Econome to a broker that requires a
    client certificate. ``tls_insecure: true`` turns every check of the broker's
    certificate off (chain and host name): the link is encrypted but not
    authenticated, for tests only. Relative paths are taken from the working
    directory.
    """

    id: str = Field(default="default", pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)
    host: str
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password_env: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False
    client_id: str = "econome"
    keepalive: Keepalive = timedelta(seconds=30)

    @model_validator(mode="after")
    def _tls_options(self) -> MqttBroker:
        given = [name for name in ("ca_file", "cert_file", "key_file") if getattr(self, name) is not None]
        if self.tls_insecure:
            given.append("tls_insecure")
        if given and not self.tls:
            msg = f"{', '.join(given)} need tls: true"
            raise ValueError(msg)
        if self.key_file is not None and self.cert_file is None:
            msg = "key_file needs cert_file"
            raise ValueError(msg)
        if self.tls_insecure and self.ca_file is not None:
            msg = "tls_insecure skips the certificate check, so ca_file would be ignored: give one or the other"
            raise ValueError(msg)
        return self


SmtpTimeout = Annotated[Duration, bounded(timedelta(seconds=1), timedelta(minutes=5))]
"""An SMTP timeout: 1 s to 5 min."""


MailLanguage = Literal["fr", "en"]
"""A language mails are written in."""
_DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}


def _is_loopback(host: str) -> bool:
    """Whether a host name or address is this machine (no DNS lookup: ``localhost`` by name).

    >>> [_is_loopback(h) for h in ("localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]", "relay.local", "10.0.0.1")]
    [True, True, True, True, True, False, False]
    """
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class EmailSettings(_Frozen):
    """The inventory's ``email:`` section: the SMTP server, the sender, recipients and languages, the digest hour.

    ``security`` has no default: ``starttls`` (port 587) or ``ssl`` (implicit
    TLS, 465), or ``none`` (a local relay, 25) only when written by name, so
    that no forgotten line sends passwords and mails in clear. The password is
    never in the file: ``password_env`` names the variable that holds it.
    A login (``username``, ``password_env``) with ``security: none`` is refused
    unless ``host`` is this machine (``localhost``, ``127.0.0.0/8``, ``::1``):
    the password would cross the network in clear.
    ``anomalies.alerts.EmailConfig`` adds the TLS context and the password lookup.
    """

    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    """Left out, 587 for ``starttls``, 465 for ``ssl``, 25 for ``none``."""
    security: Literal["none", "starttls", "ssl"]
    username: str | None = None
    password_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Name of the environment variable holding the SMTP password (never the password itself)."""
    ca_file: Path | None = None
    """PEM CA bundle that signed the server's certificate (a private CA); the system CAs when unset."""
    cert_file: Path | None = None
    """PEM client certificate, for relays that authenticate clients by certificate."""
    key_file: Path | None = None
    """PEM private key of ``cert_file``, when not in the same file."""
    tls_insecure: bool = False
    """Do not verify the server's certificate or host name. For tests only."""
    sender: Address
    """The From address."""
    default_recipients: list[Address] = Field(default_factory=list)
    """Recipients of the buildings with no ``advisors``."""
    language: MailLanguage = "fr"
    """Language of the mails, unless ``languages`` names the recipient."""
    languages: dict[Address, MailLanguage] = Field(default_factory=dict)
    """Per recipient address, its language."""
    digest_hour: int = Field(default=7, ge=0, le=23)
    """Local hour (organisation's timezone) from which each recipient's daily digest is sent."""
    send_resolved: bool = True
    """Send a resolution notice when an alert resolves."""
    timeout: SmtpTimeout = timedelta(seconds=10)
    """Longest wait for the SMTP server, per operation."""

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("port") is None:
            # Without a valid security the error is about security alone, not also a missing port.
            security = data.get("security")
            return {**data, "port": _DEFAULT_PORTS.get(security, 25) if isinstance(security, str) else 25}
        return data

    @field_validator("username", "password_env")
    @classmethod
    def _no_clear_login_to_a_remote_host(cls, value: str | None, info: ValidationInfo) -> str | None:
        # security: none sends the login and password in clear: only to a relay on this machine.
        host = info.data.get("host")
        if value is not None and info.data.get("security") == "none" and host and not _is_loopback(host):
            msg = (f"a login with security: none would send the password in clear to {host}; "
                   "use starttls or ssl, or a relay on this machine (localhost, 127.0.0.1, ::1)")
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> EmailSettings:
        if (self.username is None) != (self.password_env is None):
            msg = "username and password_env go together: give both, or neither for a relay without login"
            raise ValueError(msg)
        tls_options = [n for n in ("ca_file", "cert_file", "key_file") if getattr(self, n) is not None]
        if self.tls_insecure:
            tls_options.append("tls_insecure")
        if tls_options and self.security == "none":
            msg = f"{', '.join(tls_options)} need security: starttls or ssl"
            raise ValueError(msg)
        if self.key_file is not None and self.cert_file is None:
            msg = "key_file needs cert_file"
            raise ValueError(msg)
        return self


class CrossReferenceError(ValueError):
    """Inventory-wide problems, each with the path of the offending field."""

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{_fmt(loc)}: {msg}" for loc, msg in problems))


def _fmt(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class Inventory(_Frozen):
    """The whole portfolio, as loaded from one YAML file."""

    organisation: Organisation
    energies: dict[Energy, EnergyTariff] = Field(default_factory=lambda: dict(DEFAULT_TARIFFS))
    modbus_gateways: list[ModbusGateway] = Field(default_factory=list)
    mqtt_brokers: list[MqttBroker] = Field(default_factory=list)
    sites: list[Site]
    email: EmailSettings | None = None
    """SMTP and alert mail settings; left out, no mail is sent."""
    _index: dict[str, tuple[Building, Point]] | None = PrivateAttr(default=None)
    _source_dir: Path | None = PrivateAttr(default=None)

    @field_validator("energies")
    @classmethod
    def _complete_energies(cls, value: dict[Energy, EnergyTariff]) -> dict[Energy, EnergyTariff]:
        # A tariff without `unit` is per the energy's own unit (water's m3, not the model's kWh default).
        given = {energy: tariff if "unit" in tariff.model_fields_set
                 else tariff.model_copy(update={"unit": DEFAULT_TARIFFS[energy].unit})
                 for energy, tariff in value.items()}
        return {**DEFAULT_TARIFFS, **given}

    @model_validator(mode="after")
    def _cross_check(self) -> Inventory:
        problems = _cross_references(self)
        if problems:
            raise CrossReferenceError(problems)
        return self

    @property
    def source_dir(self) -> Path:
        """The folder of the inventory file, where relative paths (booking calendars) start.

        The working directory for an inventory parsed from text.
        """
        return self._source_dir if self._source_dir is not None else Path.cwd()

    def located_at(self, path: Path) -> Inventory:
        """Record the file this inventory was read from (relative paths start at its folder)."""
        self._source_dir = path.resolve().parent
        return self

    def buildings(self) -> Iterator[tuple[Site, Building]]:
        """Every building with its site."""
        for site in self.sites:
            for building in site.buildings:
                yield site, building

    def points(self) -> Iterator[tuple[Building, Point]]:
        """Every point with its building."""
        for site in self.sites:
            for building in site.buildings:
                for point in building.points:
                    yield building, point

    def point(self, point_id: str) -> Point:
        """The point with this id; KeyError if none."""
        return self._point_index()[point_id][1]

    def building_of(self, point_id: str) -> Building:
        """The building that holds a point; KeyError if none."""
        return self._point_index()[point_id][0]

    def building(self, building_id: str) -> Building:
        """The building with this id; KeyError if none."""
        for _, building in self.buildings():
            if building.id == building_id:
                return building
        raise KeyError(building_id)

    def gateway(self, gateway_id: str) -> ModbusGateway:
        """The Modbus gateway with this id; KeyError if none."""
        for gateway in self.modbus_gateways:
            if gateway.id == gateway_id:
                return gateway
        raise KeyError(gateway_id)

    def broker(self, broker_id: str) -> MqttBroker:
        """The MQTT broker with this id; KeyError if none."""
        for broker in self.mqtt_brokers:
            if broker.id == broker_id:
                return broker
        raise KeyError(broker_id)

    def register_of(self, point: Point) -> RegisterSpec:
        """The register spec of a Modbus point, resolved through its profile."""
        if point.modbus is None:
            msg = f"point {point.id} has no Modbus binding"
            raise ValueError(msg)
        if point.modbus.raw_register is not None:
            return point.modbus.raw_register
        spec = load_profiles()[point.modbus.profile or ""].resolve(point.modbus.field or "")
        if point.modbus.scale is not None:
            spec = spec.model_copy(update={"scale": spec.scale * point.modbus.scale})
        return spec

    def tariff(self, energy: Energy) -> EnergyTariff:
        """Price and emission factor of an energy."""
        return self.energies[energy]

    def _point_index(self) -> dict[str, tuple[Building, Point]]:
        if self._index is None:
            self._index = {point.id: (building, point) for building, point in self.points()}
        return self._index


def _cross_references(inv: Inventory) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    gateways = _unique(inv.modbus_gateways, ("modbus_gateways",), problems, "gateway")
    timeouts = {gw.id: gw.timeout for gw in inv.modbus_gateways}
    brokers = _unique(inv.mqtt_brokers, ("mqtt_brokers",), problems, "broker")
    endpoints: dict[tuple[str, int], str] = {}
    for i, gw in enumerate(inv.modbus_gateways):
        if (gw.host, gw.port) in endpoints:
            problems.append(
                (
                    ("modbus_gateways", i, "port"),
                    f"gateway {gw.id} uses {gw.host}:{gw.port}, already used by {endpoints[(gw.host, gw.port)]}",
                )
            )
        endpoints.setdefault((gw.host, gw.port), gw.id)
    for energy, tariff in inv.energies.items():
        # The reports multiply kWh (water: m3) by the price and the factor: a gas price per m3 cost 11 times too much.
        expected = DEFAULT_TARIFFS[energy].unit
        if tariff.unit.replace("³", "3") != expected:
            problems.append((("energies", energy.value, "unit"),
                             f"unit {tariff.unit!r}: the price and emission factor of {energy.value} are per {expected}, "
                             f"as the reports count it (a gas price per m3 is divided by the kWh per m3 of the bills, "
                             f"about 11)"))
    _unique(inv.sites, ("sites",), problems, "site")
    building_ids: set[str] = set()
    operat_ids: dict[str, str] = {}
    point_ids: set[str] = set()
    topics: dict[tuple[str, str], str] = {}
    utility_ids: dict[tuple[str, str], str] = {}
    accounts: set[str] = set()
    registers: dict[tuple[str, int, int, RegisterType], str] = {}
    profiles = load_profiles()
    for s, site in enumerate(inv.sites):
        for b, building in enumerate(site.buildings):
            bloc: Loc = ("sites", s, "buildings", b)
            if building.id in building_ids:
                problems.append(((*bloc, "id"), f"duplicate building id {building.id!r}"))
            building_ids.add(building.id)
            if building.operat_id is not None:
                if building.operat_id in operat_ids:
                    problems.append(((*bloc, "operat_id"), f"building {building.id} has the operat_id "
                                     f"{building.operat_id!r} of building {operat_ids[building.operat_id]}"))
                operat_ids.setdefault(building.operat_id, building.id)
            zones = _unique(building.zones, (*bloc, "zones"), problems, "zone")
            counters = {p.id for p in building.points if p.cumulative}
            for p, point in enumerate(building.points):
                if point.submeter_of is not None and (point.submeter_of not in counters or not point.cumulative):
                    problems.append(
                        ((*bloc, "points", p, "submeter_of"), f"{point.submeter_of!r} is not a counter of building {building.id}")
                    )
            for v, virtual in enumerate(building.virtual_meters):
                vloc: Loc = (*bloc, "virtual_meters", v)
                if virtual.id in point_ids or virtual.id in counters:
                    problems.append(((*vloc, "id"), f"virtual meter id {virtual.id!r} is already a point id"))
                for side in ("add", "subtract"):
                    for i, ref in enumerate(getattr(virtual, side)):
                        if ref not in counters:
                            problems.append(((*vloc, side, i), f"{ref!r} is not a counter of building {building.id}"))
            for p, point in enumerate(building.points):
                ploc: Loc = (*bloc, "points", p)
                if point.id in point_ids:
                    problems.append(((*ploc, "id"), f"duplicate point id {point.id!r}"))
                point_ids.add(point.id)
                if point.zone is not None and point.zone not in zones:
                    problems.append(((*ploc, "zone"), f"unknown zone {point.zone!r} in building {building.id}"))
                if point.modbus is not None:
                    problems.extend(_check_modbus(point, ploc, gateways, timeouts, profiles, registers))
                if point.mqtt is not None:
                    if point.mqtt.broker not in brokers:
                        problems.append(((*ploc, "mqtt", "broker"), f"unknown MQTT broker {point.mqtt.broker!r}"))
                    key = (point.mqtt.broker, point.mqtt.topic)
                    if key in topics and point.mqtt.field is None:
                        problems.append(((*ploc, "mqtt", "topic"), f"topic already bound to point {topics[key]}"))
                    topics.setdefault(key, point.id)
                for kind, number in (("enedis", point.enedis and point.enedis.prm), ("grdf", point.grdf and point.grdf.pce)):
                    if number:
                        field = "prm" if kind == "enedis" else "pce"
                        if (kind, number) in utility_ids:
                            taken = utility_ids[(kind, number)]
                            problems.append(((*ploc, kind, field), f"{field.upper()} {number} is already point {taken}"))
                        utility_ids.setdefault((kind, number), point.id)
            for a, account in enumerate(building.invoices):
                if account.id in accounts:
                    problems.append(((*bloc, "invoices", a, "id"), f"duplicate invoice account id {account.id!r}"))
                accounts.add(account.id)
    return problems


def _check_modbus(
    point: Point,
    ploc: Loc,
    gateways: set[str],
    timeouts: dict[str, timedelta],
    profiles: dict[str, DeviceProfile],
    registers: dict[tuple[str, int, int, RegisterType], str],
) -> list[tuple[Loc, str]]:
    assert point.modbus is not None  # noqa: S101 - caller checked
    binding = point.modbus
    problems: list[tuple[Loc, str]] = []
    if binding.gateway not in gateways:
        problems.append(((*ploc, "modbus", "gateway"), f"unknown Modbus gateway {binding.gateway!r}"))
    elif binding.poll_interval <= timeouts[binding.gateway]:
        problems.append(
            (
                (*ploc, "modbus", "poll_interval"),
                f"poll_interval {binding.poll_interval} is not longer than the timeout of gateway {binding.gateway}",
            )
        )
    spec = binding.raw_register
    if binding.profile is not None:
        profile = profiles.get(binding.profile)
        if profile is None:
            problems.append(
                ((*ploc, "modbus", "profile"), f"unknown device profile {binding.profile!r}: known {sorted(profiles)}")
            )
            return problems
        spec = profile.registers.get(binding.field or "")
        if spec is None:
            problems.append(
                (
                    (*ploc, "modbus", "field"),
                    f"profile {profile.name} has no field {binding.field!r}: known {sorted(profile.registers)}",
                )
            )
            return problems
        if spec.unit is not None and spec.unit != point.unit:
            problems.append(((*ploc, "unit"), f"profile field {binding.field} gives {spec.unit}, point says {point.unit}"))
    assert spec is not None  # noqa: S101 - the binding validator guarantees one source
    key = (binding.gateway, binding.unit, spec.address, spec.register_type)
    if key in registers:
        problems.append(((*ploc, "modbus"), f"same register as point {registers[key]}"))
    registers.setdefault(key, point.id)
    return problems


def _unique(items: list[Any], loc: Loc, problems: list[tuple[Loc, str]], what: str) -> set[str]:
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item.id in seen:
            problems.append(((*loc, i, "id"), f"duplicate {what} id {item.id!r}"))
        seen.add(item.id)
    return seen
