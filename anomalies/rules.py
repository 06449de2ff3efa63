"""Explicit, explained energy rules, one class per rule, listed in :data:`BUILDING_RULES` and :data:`QUALITY_RULES`.

Each rule reads a building's hours (:class:`~anomalies.features.BuildingHours`)
and says, for every hour, whether its anomaly is present (1), absent (0) or
unknown (``nan``), with what was observed, what was expected and the excess.
Rules only look back in time, so the hour at which an alert opens is the hour
at which a live pipeline would have known. The alert lifecycle
(:mod:`anomalies.lifecycle`) debounces these states into events.

Energy rules (:data:`BUILDING_RULES`, run in this order):

* :class:`OverheatingRule`: heating above the building's or zone's limits from the
  inventory (Code de l'énergie R241-26 where it applies: 19 °C occupied, 16 °C closed);
* :class:`HeatingUnoccupiedRule`: heating keeping comfort temperature at
  night, on weekends, public and school holidays, while the building is closed;
* :class:`LightingRule`: lights on in a closed building, or at full power in full daylight;
* :class:`NightBaseloadRule`: night base load creeping up compared with previous weeks;
* :class:`WaterLeakRule`: continuous night flow on a water meter.

Data-quality rules (:data:`QUALITY_RULES`, run first; the hours they flag are
blanked before the energy rules run): :class:`MissingDataRule`,
:class:`FrozenSensorRule`, :class:`StaleCounterRule`.

Sample config::

    rules:
      tolerance_c: 0.7
      max_overrun: 4h
      leak_min_flow_m3_h: 0.02
      baseload_increase: 0.12

>>> RulesConfig().tolerance_c
0.7
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from anomalies.events import EventKind
from anomalies.features import BuildingHours, HourlyFrame, PointSeries, UsageSeries
from inventory import R241_26_UNOCCUPIED_C, Building, ComfortTargets, Duration, Energy, Point, Quantity, Usage
from mv.degreedays import DJU_BASE_C
from streams.errors import DecodeError
from streams.quality import StalenessLimits

__all__ = [
    "BUILDING_RULES",
    "CLOSURE_LOOKAHEAD_H",
    "MEMO_FORMAT_VERSION",
    "QUALITY_RULES",
    "BuildingRule",
    "Finding",
    "FrozenSensorRule",
    "HeatingUnoccupiedRule",
    "LightingRule",
    "LostDailyCycleRule",
    "MissingDataRule",
    "NightBaseloadRule",
    "OverheatingRule",
    "QualityRule",
    "RuleMemo",
    "RulesConfig",
    "SensorDriftRule",
    "StaleCounterRule",
    "UnoccupiedConsumptionRule",
    "WaterLeakRule",
    "heater_active",
    "planned_closures",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
_T = TypeVar("_T")

_PREFIX = "anomalies.rules."


class RulesConfig(BaseModel):
    """Thresholds of the rules; the defaults follow French regulation and common practice."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tolerance_c: float = Field(default=0.7, ge=0)
    """Margin over a limit before an hour counts (sensor error, zone spread)."""
    comfort_margin_c: float = Field(default=1.0, ge=0)
    setpoint_margin_c: float = Field(default=2.0, ge=0)
    """Without a declared overheating limit, an occupied building heated more than this above its own
    occupied setpoint is overheating, even below the legal limit: a gymnasium declared at 15 °C held at
    19 °C had its thermostat raised (the margin the inventory gives buildings outside R241-26)."""
    """A closed building within this margin of its occupied setpoint is kept at comfort."""
    raised_setpoint_k: float = Field(default=1.5, gt=0)
    """An occupied building held, heater running, this far above its own usual held level (learnt from its
    past, :func:`_raised_setpoint`) and above its declared setpoint had its thermostat turned up, even
    within ``setpoint_margin_c``: each kelvin costs about 7 % of the heating. The ordinary day-to-day spread
    of a thermostat (a few tenths) stays under it, and four times the building's own spread is required."""
    raised_setpoint_reference_days: int = Field(default=28, ge=7)
    """Held days (occupied, heater running) of the past whose median is the building's usual held level."""
    max_overrun: Duration = timedelta(hours=4)
    """Longest heating overrun after closing (pumps, optimiser) the rules learn as ordinary cool-down."""
    max_recovery: Duration = timedelta(hours=8)
    """Longest morning recovery before opening the rules learn as ordinary."""
    cooldown_closings: int = Field(default=21, ge=3)
    """Closings (and openings) of the building's past whose median overrun (recovery) is learnt."""
    long_closure: Duration = timedelta(hours=96)
    """A closure this long (holidays) is held at the declared frost-protection setpoint."""
    daily_clear_after: Duration = timedelta(hours=36)
    """Quiet time before a rule whose physics is daily (nights, closed days) resolves: one fault, one episode."""
    overheating_memory: Duration = timedelta(hours=72)
    """A closed hour after an overheated occupied hour within this time is overheating, not heating left on."""
    night_hours: tuple[int, ...] = (1, 2, 3, 4)
    """Local hours (start of the hour) of the night base load and night flow."""
    lit_lux: float = Field(default=100.0, gt=0)
    """Indoor illuminance that means lights are on, at night."""
    lit_power_ratio: float = Field(default=1.3, gt=1)
    """Without a lighting meter, lux alone is not enough: electricity must exceed its closed level by this ratio."""
    dark_sun_deg: float = -3.0
    """Below this solar elevation it is dark outside."""
    daylight_sun_deg: float = 20.0
    """Above this solar elevation it is full daylight."""
    daylight_lux: float = Field(default=1000.0, gt=0)
    """Indoor illuminance that means enough daylight without lamps."""
    baseload_increase: float = Field(default=0.12, gt=0)
    """Relative rise of the night base load that is reported."""
    baseload_reference: tuple[int, int] = (35, 7)
    """Reference nights: from this many nights back to this many nights back."""
    baseload_creep_nights: int = Field(default=91, ge=28)
    """Nights back (to the near end of ``baseload_reference``) whose lower envelope is the reference of a
    slow creep: a base load rising over weeks drags a reference of the last weeks with it, not this one."""
    baseload_creep_increase: float = Field(default=0.04, gt=0)
    """Rise of the last week's base load over that envelope that is a slow creep (beyond the noise)..."""
    baseload_creep_noise: float = Field(default=4.0, gt=0)
    """... and over this many times the night-to-night noise of the base load (its own scatter)."""
    leak_min_flow_m3_h: float = Field(default=0.02, gt=0)
    """Smallest night flow above usual that is a leak."""
    leak_reference_nights: int = Field(default=14, ge=3)
    """Nights whose usual night flow is the reference."""
    missing_after: Duration = timedelta(hours=24)
    """A point silent for longer is missing: shorter gaps (a gateway reboot, a 4G outage) are for the status
    page, not for an alert."""
    missing_after_by_quantity: dict[str, Duration] = Field(default_factory=dict)
    """Per quantity (``temperature``, ``active_energy``…), a silence limit replacing ``missing_after``."""
    enedis_delay: Duration = timedelta(days=1)
    """Publication delay of a Linky (``enedis`` point), added to its silence limit: Enedis publishes a day's
    load curve the next day (J+1), so the last day is always missing until then."""
    grdf_delay: Duration = timedelta(days=3)
    """Publication delay of a Gazpar (``grdf`` point), added to its silence limit: GRDF publishes a gas day
    up to three days later (J+3, "données informatives" J+1 when they come)."""
    grdf_monthly_delay: Duration = timedelta(days=51)
    """Publication delay of a Gazpar published monthly (``grdf: {publication: monthly}``, professional MM
    meters): a month's daily data come between the 10th and the 20th of the next month."""
    missing_together: Duration = timedelta(hours=2)
    """Points of one building whose silences begin within this time of each other went silent together
    (one device, one gateway): one ``missing_data`` event, on the first of them, names them all."""
    stale_counter_surprise: float = Field(default=1e-4, gt=0, lt=1)
    """A run of still hours of a counter less likely than this (from its own history) is stuck."""
    frozen_run_quantile: float = Field(default=0.99, gt=0.5, lt=1)
    """Quantile of a sensor's own past constant runs (quantisation, thermal mass) a frozen run must exceed..."""
    frozen_run_factor: float = Field(default=1.5, ge=1)
    """... by this factor."""
    frozen_reference_days: int = Field(default=28, ge=7)
    """Days before a constant run whose runs give the sensor's usual run length."""
    frozen_min_runs: int = Field(default=10, ge=3)
    """Fewer past runs than this in the reference days: the usual run length is not known, the rule waits."""
    frozen_min_coupling: float = Field(default=0.2, gt=0)
    """Weakest plausible response (K per K) of an indoor temperature to a lasting change of the outdoor one:
    an outdoor 24 h mean that moved by ``step / coupling`` should have moved a sensor of that step."""
    heating_off_above_c: float = 15.0
    """Mean outdoor temperature of the last 24 h (°C) from which heating is not expected: a heating meter may
    stand still. Below the 18 °C base of the degree days (:data:`mv.degreedays.DJU_BASE_C`), since
    internal and solar gains heat a building the last degrees; 15 °C is the usual heating cut-off."""
    heating_restart_margin_c: float = Field(default=3.0, ge=0)
    """A heating counter still since heating was switched off (warm weather, out of season) is stuck only
    once the mean outdoor temperature of the last 72 h is this far below ``heating_off_above_c``."""
    consumption_reference_days: int = Field(default=28, ge=7)
    """Days before an hour whose closed and occupied levels a main meter is compared with."""
    consumption_history_days: int = Field(default=365, ge=28)
    """Days before an hour from which a main meter takes the level of a kind of closure not seen in the
    ``consumption_reference_days`` (holidays)."""
    consumption_comfort_share: float = Field(default=0.5, gt=0, le=1)
    """A main meter's closure counts when it exceeds comparable closures by this share of what holding the
    occupied setpoint instead of the closure's would add (heat loss per kelvin times the difference)..."""
    consumption_noise_z: float = Field(default=3.0, gt=0)
    """... and by this many robust standard deviations of earlier closures' own excess."""
    sensor_reference_days: int = Field(default=28, ge=7)
    """Days before an hour an indoor temperature sensor is compared with (its own past)."""
    drift_min_k: float = Field(default=4.0, gt=0)
    """Smallest deviation (K) of an indoor sensor's daily mean from its past that is a drift."""
    drift_history_days: int = Field(default=365, ge=28)
    """Days before an hour whose same-regime days (heated, unheated) show how the indoor temperature responded
    to weather colder or warmer than its ``sensor_reference_days``: a room held at its level whatever the
    weather (a pool hall, a thermostat) cannot have the weather explain a fall where it was held before."""
    cycle_collapse: float = Field(default=0.2, gt=0, lt=0.5)
    """An indoor sensor's range over 24 h below this share of its usual daily range has lost its cycle."""
    cycle_min_range_k: float = Field(default=1.0, gt=0)
    """A sensor whose usual daily range is below this (K) has no cycle to lose."""
    frozen_after: dict[str, Duration] = Field(default_factory=lambda: dict(StalenessLimits().stale_after))
    """Per quantity, how long a sensor may repeat the exact same value in any case (the learnt limit may be longer)."""
    frozen_transitions: int = Field(default=2, ge=1)
    """A 0/1 sensor (occupancy) repeating its value across this many schedule changes is frozen."""


@dataclass(frozen=True, slots=True, eq=False)
class Finding:
    """What a rule says of every hour, for one alert key.

    Attributes:
        qualified_name: the rule, e.g. ``anomalies.rules.water_leak``.
        kind: the event kind.
        building: building id.
        usage: the usage concerned.
        point: the point, for data-quality findings.
        state: per hour, 1 present, 0 absent, ``nan`` unknown.
        observed: per hour, what was measured (``unit``), ``nan`` where not applicable.
        expected: per hour, what was expected.
        excess: per hour, the excess consumption (kWh or m3) attributed to the anomaly.
        unit: unit of observed and expected.
        excess_unit: ``kWh`` or ``m3``.
        energy: the energy that prices the excess.
        origin: per hour, the hour index the anomaly began at (a stuck run, a gap), -1 if not known.
        facts: per-hour numbers for the explanation (averaged over the event's active hours; ``hours`` and
            ``weather_unknown_h``: their largest).
        constant_facts: numbers that hold for the whole finding.
        min_duration: active time before an alert opens.
        clear_after: quiet time before it resolves.
        forget_pending_after: quiet time before a pending (not yet open) alert is
            forgotten, when shorter than ``clear_after`` (``None``: ``clear_after``).
        chart_hours: the hours the event's chart draws (``None``: every hour), e.g. a leak's nights.
    """

    qualified_name: str
    kind: EventKind
    building: str
    usage: Usage
    state: FloatArray
    observed: FloatArray
    expected: FloatArray
    excess: FloatArray
    unit: str
    excess_unit: str = "kWh"
    energy: Energy | None = None
    point: str | None = None
    origin: IntArray | None = None
    facts: dict[str, FloatArray] = field(default_factory=dict)
    constant_facts: dict[str, Any] = field(default_factory=dict)
    min_duration: timedelta = timedelta(hours=3)
    clear_after: timedelta = timedelta(hours=24)
    forget_pending_after: timedelta | None = None
    chart_hours: BoolArray | None = None

    @property
    def active(self) -> BoolArray:
        """Hours where the anomaly is present."""
        result: BoolArray = self.state == 1.0
        return result



MEMO_FORMAT_VERSION = 2
"""Version of :meth:`RuleMemo.to_arrays`'s layout and of what it holds. A memo of another version is not read
(a cache: the next pass judges every day). 2: ``sensor_drift`` judges days of unknown weather, so the days a
version 1 memo holds are not what this code would say of them."""


@dataclass(eq=False, slots=True)
class _DriftDays:
    """What :class:`SensorDriftRule` computed for one point's complete days of a frame (see :class:`RuleMemo`)."""

    key: tuple[float, int, int, float]  # frame start, reference days, history days, drift_min_k
    digests: list[bytes]  # per day, a digest of the hourly inputs the day's judgement depends on
    flagged: BoolArray  # per day, left out of later days' references
    state: FloatArray  # per hour of those days
    deviation: FloatArray
    whole: bytes = b""  # one digest of the inputs of all those days but the last (:func:`_unit_digests`)
    fits_day: int = -1  # the last day judged, whose reference fits :attr:`fits` holds
    fits: dict[str, Any] = field(default_factory=dict)  # that day's fits of its reference (they hold for all its hours)


@dataclass(eq=False, slots=True)
class _CycleDays:
    """What :class:`LostDailyCycleRule` decided of one point's complete days of a frame (see :class:`RuleMemo`)."""

    key: tuple[float, int, float, float, bool]  # frame start, reference days, collapse, min range, heater metered
    digests: list[bytes]  # per day, a digest of the hourly inputs the day's judgement depends on
    ref: FloatArray  # per day, its reference range (nan: not judged)
    kept: BoolArray  # per day, whether the heater was kept on
    whole: bytes = b""  # one digest of the inputs of all those days but the last (:func:`_unit_digests`)


@dataclass(eq=False, slots=True)
class _PctDays:
    """What :func:`_causal_pct` computed at one site (see :class:`RuleMemo`)."""

    key: tuple[float, int, int, int]  # percentile, lookback days, hours per row, first local day
    digests: list[bytes]  # per local day, a digest of its masked values
    per_day: FloatArray  # per local day, the percentile of the days before it
    whole: bytes = b""  # one digest of the inputs of all those days but the last (:func:`_unit_digests`)


@dataclass(eq=False, slots=True)
class _NightDays:
    """What :class:`NightBaseloadRule` judged of a building's nights (see :class:`RuleMemo`)."""

    key: tuple[float, float, float, float, bool]  # frame start, reference nights, increase, main meter
    digests: list[bytes]  # per night, a digest of its inputs (day, base load, heating, excluded, service)
    arrays: tuple[npt.NDArray[Any], ...]  # per night: ratio, ratio against the last weeks, predicted, flagged, slope
    whole: bytes = b""  # one digest of the inputs of all those days but the last (:func:`_unit_digests`)


@dataclass(eq=False, slots=True)
class _LeakNights:
    """What :class:`WaterLeakRule` judged of a building's nights (see :class:`RuleMemo`)."""

    key: tuple[float, float, float]  # frame start, reference nights, minimum flow
    digests: list[bytes]  # per night, a digest of its inputs (day, hours, flows)
    table: FloatArray  # per night: level, usual, flagged, and the reference and whether a leak is open after it
    whole: bytes = b""  # one digest of the inputs of all those nights but the last (:func:`_unit_digests`)


class RuleMemo:
    """What the causal rules computed on earlier passes, reused while the hours they depend on are unchanged.

    A rule that looks back only (causal) says of an hour what it said on the
    earlier pass, as long as the frame starts at the same hour and the inputs
    of that hour and of every hour before it are the same. An hourly pass then
    judges only its new hours (and those of a day whose inputs changed: a late
    reading). Each entry holds, per complete day, a digest of the day's inputs:
    the first day whose digest differs and every day after it are recomputed,
    so the findings are those of the rule over the whole frame, whatever the
    memo holds (``tests/unit/anomalies/test_rule_memo.py``).

    :class:`SensorDriftRule` and :class:`LostDailyCycleRule` use it: their
    reference of earlier days depends on which of those days they flagged, day
    by day from the frame's start, so without it every pass judged the whole
    frame again (400 days) for its new hour. So do the causal percentiles of
    the energy rules (a heater's floor, a year's top): a day's percentile
    depends on the days before it only, kept while their values are unchanged
    (per day, a digest of them); and ``baseload_creep``'s nights, each judged
    against the nights before it, those it flagged left out; and ``water_leak``'s nights (each night's level, its
    median flow, against the nights before it, the leak nights left out). It lives in memory, with the
    detection state, which saves it (:meth:`to_arrays` and :meth:`from_arrays`: arrays, no pickle).

    Each entry also holds one digest of the inputs of all its days but the last: an hourly pass checks
    it rather than each day's digest (a memo without it, written before, is compared day by day once).
    ``sensor_drift``'s also holds the fits of the reference of the day it judged last (the weather's and
    use's effect, the longer past's response), which hold for that day's hours while the days before it
    are unchanged: the day going on is judged again each hour from them.

    Attributes:
        recomputed_days: days judged anew by the quality rules since the memo was made (what it did not spare).
        recomputed_percentile_days: likewise, days whose causal percentiles were computed anew.
        recomputed_nights: likewise, nights ``baseload_creep`` and ``water_leak`` judged anew.
    """

    def __init__(self) -> None:
        """An empty memo."""
        self._drift: dict[str, _DriftDays] = {}
        self._cycle: dict[str, _CycleDays] = {}
        self._pct: dict[tuple[str, ...], _PctDays] = {}
        self._nights: dict[tuple[str, ...], _NightDays] = {}
        self._leak: dict[str, _LeakNights] = {}
        self.recomputed_days = 0
        self.recomputed_percentile_days = 0
        self.recomputed_nights = 0

    def __len__(self) -> int:
        """Points with an entry."""
        return len(self._drift) + len(self._cycle) + len(self._pct) + len(self._nights) + len(self._leak)

    def to_arrays(self) -> dict[str, npt.NDArray[Any]]:
        """The memo as named arrays, for ``np.savez`` (no pickle): a JSON ``memo_meta`` and each entry's arrays.

        :meth:`from_arrays` reads them back; a memo read back spares what the memo saved did
        (``test_rule_memo.py``). Only entries are saved, not the ``recomputed_*`` counters.
        """
        meta: dict[str, Any] = {"format_version": MEMO_FORMAT_VERSION, "entries": []}
        arrays: dict[str, npt.NDArray[Any]] = {}
        tables: list[tuple[str, Mapping[Any, Any], tuple[str, ...]]] = [
            ("drift", self._drift, ("flagged", "state", "deviation")),
            ("cycle", self._cycle, ("ref", "kept")),
            ("pct", self._pct, ("per_day",)),
            ("nights", self._nights, ("ratio", "fast", "predicted", "flagged", "slope")),
            ("leak", self._leak, ("table",)),
        ]
        for kind, table, fields in tables:
            for name, entry in table.items():
                i = len(meta["entries"])
                meta["entries"].append({"kind": kind, "name": name if isinstance(name, str) else list(name),
                                        "key": list(entry.key), "whole": entry.whole.hex()})
                if isinstance(entry, _DriftDays) and entry.fits:
                    meta["entries"][-1]["fits"] = {"day": entry.fits_day, "values": entry.fits}
                arrays[f"memo{i}_digests"] = np.frombuffer(b"".join(entry.digests), dtype=np.uint8).reshape(-1, 16)
                values = entry.arrays if kind == "nights" else tuple(getattr(entry, f) for f in fields)
                for f, array in zip(fields, values, strict=True):
                    arrays[f"memo{i}_{f}"] = array
        arrays["memo_meta"] = np.array(json.dumps(meta))
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]]) -> RuleMemo:
        """A memo from :meth:`to_arrays`'s arrays (an ``np.load`` of them will do).

        Raises:
            DecodeError: the arrays are not a memo of a format version this code reads.
        """
        memo = cls()
        try:
            meta = json.loads(str(arrays["memo_meta"]))
            if meta.get("format_version") != MEMO_FORMAT_VERSION:
                version = meta.get("format_version")
                msg = f"unknown rule memo format_version {version!r} (this version reads {MEMO_FORMAT_VERSION})"
                raise DecodeError(msg)
            for i, e in enumerate(meta["entries"]):
                packed = np.ascontiguousarray(arrays[f"memo{i}_digests"], dtype=np.uint8).tobytes()
                digests = [packed[a : a + 16] for a in range(0, len(packed), 16)]
                key = tuple(e["key"])
                # Absent from a memo written before it: the first pass compares its days one by one, as it did.
                whole = bytes.fromhex(str(e.get("whole", "")))

                def field_(name: str, index: int = i) -> npt.NDArray[Any]:
                    return np.asarray(arrays[f"memo{index}_{name}"])

                if e["kind"] == "drift":
                    fits = e.get("fits") or {"day": -1, "values": {}}
                    memo._drift[str(e["name"])] = _DriftDays(
                        key, digests, field_("flagged").astype(np.bool_), field_("state"), field_("deviation"), whole,
                        int(fits["day"]), {str(k): _fit_value(str(k), v) for k, v in fits["values"].items()})
                elif e["kind"] == "cycle":
                    memo._cycle[str(e["name"])] = _CycleDays(key, digests, field_("ref"), field_("kept").astype(np.bool_),
                                                              whole)
                elif e["kind"] == "pct":
                    memo._pct[tuple(e["name"])] = _PctDays(key, digests, field_("per_day"), whole)
                elif e["kind"] == "nights":
                    night_arrays = tuple(field_(f) for f in ("ratio", "fast", "predicted", "flagged", "slope"))
                    memo._nights[tuple(e["name"])] = _NightDays(key, digests, night_arrays, whole)
                elif e["kind"] == "leak":
                    memo._leak[str(e["name"])] = _LeakNights(key, digests, field_("table").astype(np.float64), whole)
                else:
                    msg = f"unknown rule memo entry kind {e['kind']!r}"
                    raise DecodeError(msg)
        except DecodeError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            msg = f"not a readable rule memo ({type(exc).__name__}: {exc})"
            raise DecodeError(msg) from exc
        return memo


def _fit_value(label: str, raw: Any) -> Any:
    """A fit of :class:`SensorDriftRule`'s memo read back from JSON: a regime history pair or a fit's 4 floats."""
    if label.startswith("regime"):
        return tuple(None if h is None else (float(h[0]), float(h[1]), float(h[2])) for h in raw)
    return tuple(float(x) for x in raw)


class BuildingRule(Protocol):
    """An energy rule on a building's hours."""

    name: str

    def evaluate(
        self, hours: BuildingHours, config: RulesConfig, earlier: Sequence[Finding], *, memo: RuleMemo | None = None
    ) -> list[Finding]:
        """Findings of the rule; ``earlier`` holds the findings of the rules run before it.

        ``memo`` holds what the rule computed on an earlier pass (:class:`RuleMemo`): the finding is the same
        with it or without it, only its cost changes.
        """
        ...


class QualityRule(Protocol):
    """A data-quality rule on one point."""

    name: str

    def evaluate(
        self,
        building: Building,
        point: Point,
        series: PointSeries,
        frame: HourlyFrame,
        open_frac: FloatArray,
        config: RulesConfig,
        *,
        outdoor_c: FloatArray | None = None,
        planned_closure_h: IntArray | None = None,
        memo: RuleMemo | None = None,
    ) -> Finding | None:
        """The finding for the point, if the rule applies to it.

        ``outdoor_c`` is the outdoor temperature per hour; ``planned_closure_h``, per hour, the planned
        length in hours of the closure it is in, read from the schedule ahead (0 when open); ``memo``, what
        the rule computed on an earlier pass over the same frame start (:class:`RuleMemo`), which changes
        nothing to the finding, only its cost.
        """
        ...


def _digests(rows: Iterable[np.ndarray[Any, Any]]) -> list[bytes]:
    """A digest of each row (a day's or a night's inputs), for :class:`RuleMemo` to find what changed."""
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]


def _whole_digest(units: np.ndarray[Any, Any]) -> bytes:
    """One digest of all the rows of ``units`` at once."""
    return hashlib.blake2b(np.ascontiguousarray(units).tobytes(), digest_size=16).digest()


def _column_digest(column: npt.NDArray[Any], length: int) -> bytes:
    """A digest of a column's first ``length`` values as float64 (as :func:`numpy.column_stack` lays them out)."""
    return hashlib.blake2b(np.ascontiguousarray(column[:length], dtype=np.float64).tobytes(), digest_size=16).digest()


@dataclass(frozen=True, slots=True, eq=False)
class _Units:
    """The units a memo keeps a digest of (a day's or a night's inputs), as rows laid out on demand.

    Attributes:
        count: how many units.
        rows: the rows of units ``a`` to ``b`` (each unit's bytes are what its digest is of).
        whole: one digest of the first ``k`` units at once (equal if and only if their rows are).
    """

    count: int
    rows: Callable[[int, int], np.ndarray[Any, Any]]
    whole: Callable[[int], bytes]

    @classmethod
    def of(cls, matrix: np.ndarray[Any, Any]) -> _Units:
        """The rows of a matrix, one unit each."""
        return cls(matrix.shape[0], lambda a, b: matrix[a:b], lambda k: _whole_digest(matrix[:k]))


def _unit_digests(
    units: _Units, done_digests: Sequence[bytes] | None, done_whole: bytes = b""
) -> tuple[list[bytes], int, bytes]:
    """Per unit (a day's or a night's inputs) its digest, and how many leading units a memo spares.

    ``done_digests`` are the units' digests at the memo's pass and ``done_whole`` one digest of all those
    units but the last (:attr:`_Units.whole`; the last, a day still going on, changes each hour). An hourly
    pass changes no earlier day: that one digest tells so, and only the units from the memo's last on get a
    digest of their own (hashing each of 400 days apart cost as much as some rules). Otherwise each unit is
    compared with its digest, as before; either way the count is :func:`_unchanged`'s.

    Returns:
        The digests of every unit, how many leading units have the digests they had at the memo's pass, and
        the digest of all the units but the last (for the memo's next pass).
    """
    count = units.count
    held = len(done_digests) if done_digests is not None else 0
    if done_digests is not None and done_whole and 0 < held <= count and units.whole(held - 1) == done_whole:
        tail = _digests(units.rows(held - 1, count))
        same = held if tail[0] == done_digests[-1] else held - 1
        whole = done_whole if count == held else units.whole(count - 1)
        return [*done_digests[: held - 1], *tail], same, whole
    digests = _digests(units.rows(0, count))
    same = _unchanged(done_digests, digests) if done_digests is not None else 0
    return digests, same, units.whole(max(0, count - 1))


def _unchanged(before: Sequence[bytes], now: Sequence[bytes]) -> int:
    """How many leading rows have the digests they had at the memo's pass."""
    same = 0
    for old, new in zip(before, now, strict=False):
        if old != new:
            break
        same += 1
    return same


def _nan(n: int) -> FloatArray:
    return np.full(n, np.nan)


def _state(known: BoolArray, condition: BoolArray) -> FloatArray:
    result: FloatArray = np.where(known, condition.astype(np.float64), np.nan)
    return result


def _pct(values: FloatArray, mask: BoolArray, q: float) -> float:
    chosen = values[mask & np.isfinite(values)]
    return float(np.percentile(chosen, q)) if chosen.size else math.nan


def _heat_at(
    observed: FloatArray, floor: FloatArray, indoor: FloatArray, outdoor: FloatArray, target: float | FloatArray
) -> FloatArray:
    """Heat needed to hold ``target`` instead of ``indoor``: heat loss scales with indoor minus outdoor."""
    heater = np.maximum(0.0, observed - floor)
    ratio = np.clip((target - outdoor) / np.maximum(indoor - outdoor, 1.0), 0.0, 1.0)
    result: FloatArray = floor + heater * np.nan_to_num(ratio, nan=1.0)
    return result


# --- causal references ---------------------------------------------------------------------------


def _day_bounds(local_day: IntArray, first_day: int, last_day: int) -> tuple[int, int]:
    """Hour indices of the days ``first_day`` (included) to ``last_day`` (excluded): local days never go back."""
    return int(np.searchsorted(local_day, first_day)), int(np.searchsorted(local_day, last_day))


def _day_matrix(values: FloatArray, local_day: IntArray) -> tuple[FloatArray, IntArray]:
    """The hours laid out one row per local day (23 to 25 hours, ``nan``-padded), and each hour's row."""
    row = local_day - local_day[0]
    starts = np.searchsorted(local_day, local_day[0] + np.arange(int(row[-1]) + 1))
    slot = np.arange(values.size) - starts[row]
    matrix = np.full((int(row[-1]) + 1, int(slot.max()) + 1), np.nan)
    matrix[row, slot] = values
    return matrix, row


_PCT_BLOCK = 1 << 20  # values sorted at once by _causal_pct (8 MB)


def _row_percentile(rows: FloatArray, q: float) -> FloatArray:
    """Per row, the ``q`` percentile of its finite values (``nan`` if none), exactly as :func:`numpy.percentile`."""
    ordered = np.sort(rows, axis=1)  # nan last
    count = np.isfinite(ordered).sum(axis=1)
    virtual = (count - 1) * (q / 100.0)
    below = np.floor(virtual)
    gamma = virtual - below
    lo = np.clip(below.astype(np.int64), 0, None)
    hi = np.clip(lo + 1, None, np.maximum(count - 1, 0))
    a = np.take_along_axis(ordered, lo[:, None], axis=1)[:, 0]
    b = np.take_along_axis(ordered, hi[:, None], axis=1)[:, 0]
    diff = b - a
    result: FloatArray = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
    result[count == 0] = np.nan
    return result


def _causal_pct(
    values: FloatArray,
    mask: BoolArray,
    local_day: IntArray,
    q: float,
    lookback_days: int,
    *,
    memo: RuleMemo | None = None,
    site: tuple[str, ...] = (),
) -> FloatArray:
    """Per hour, the ``q`` percentile of ``values[mask]`` over the ``lookback_days`` local days before its day.

    The hour's own day is left out, so the reference of an hour never holds it
    or any later hour. Computed once per day, for all days at once; with a
    ``memo``, only for the days after the first whose values changed since the
    last call at the same ``site`` (an hourly pass: its new hour's day).
    """
    if values.size == 0:
        return _nan(0)
    matrix, row = _day_matrix(np.where(mask & np.isfinite(values), values, np.nan), local_day)
    days, width = matrix.shape
    per_day = np.empty(days)
    first = 0
    digests: list[bytes] = []
    digest_all = b""
    if memo is not None:
        key = (float(q), int(lookback_days), width, int(local_day[0]))
        done = memo._pct.get(site)
        if done is None or done.key != key:
            done = None
        digests, same, digest_all = _unit_digests(_Units.of(matrix), *((done.digests, done.whole) if done else (None,)))
        if done is not None:
            # A day's percentile depends on the days before it only: those up to the first changed one hold.
            first = min(same + 1, done.per_day.size, days)
            per_day[:first] = done.per_day[:first]
    padded = np.concatenate([np.full((lookback_days, width), np.nan), matrix])
    windows = np.lib.stride_tricks.sliding_window_view(padded, lookback_days, axis=0)[:days]
    # Rows are independent: a block of days at a time bounds the copy a year's lookback makes (a year of
    # days x a year of hours is 30 MB, sorted twice that), with the same percentiles.
    step = max(1, _PCT_BLOCK // max(1, width * lookback_days))
    for i in range(first, days, step):
        block = windows[i : i + step]
        per_day[i : i + block.shape[0]] = _row_percentile(block.reshape(block.shape[0], width * lookback_days), q)
    if memo is not None:
        memo.recomputed_percentile_days += days - first
        memo._pct[site] = _PctDays(key, digests, per_day.copy(), digest_all)
    result: FloatArray = per_day[row]
    return result


def heater_active(
    hours: BuildingHours, lookback_days: int = 28, *, memo: RuleMemo | None = None
) -> tuple[BoolArray, FloatArray]:
    """Hours where the heating generator runs, beyond hot water and process heat, from earlier days only.

    The floor is the 10th percentile of the heating meter over the occupied,
    resp. unoccupied, hours of the ``lookback_days`` days before (hot water,
    standby, pool process heat); the heater runs when the meter is above the
    floor by 5 % of the meter's 99th percentile over the year before. Lookback:
    a year (28 days for the floor); an hour never depends on later hours.

    Returns:
        The active hours (``False`` where unknown) and the floor (kWh/h) of each hour (``nan`` unknown).
    """
    heat = hours.usages[Usage.HEATING].values
    occ = hours.occupied
    day = hours.local_day
    site = (hours.building.id, "heater", str(lookback_days))
    floor = np.where(occ, _causal_pct(heat, occ, day, 10, lookback_days, memo=memo, site=(*site, "occupied")),
                     _causal_pct(heat, ~occ, day, 10, lookback_days, memo=memo, site=(*site, "unoccupied")))
    scale = _causal_pct(heat, np.ones(heat.shape, dtype=np.bool_), day, 99, 365, memo=memo, site=(*site, "top"))
    active: BoolArray = np.isfinite(heat) & np.isfinite(floor) & (heat > floor + 0.05 * scale)
    return active, floor


def _runs(mask: BoolArray) -> tuple[IntArray, IntArray]:
    """Per hour in a run of ``mask``: hours since the run began, and the run's length (0 outside runs)."""
    n = mask.size
    since = np.zeros(n, dtype=np.int64)
    length = np.zeros(n, dtype=np.int64)
    on = np.asarray(mask, dtype=np.bool_)
    if not on.any():
        return since, length
    # The runs' starts and ends found at once (this walked the frame hour by hour in Python, 16 times a pass).
    edges = np.diff(np.concatenate([[0], on.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    inside = np.flatnonzero(on)
    run = np.repeat(np.arange(starts.size), stops - starts)
    since[inside] = inside - starts[run]
    length[inside] = (stops - starts)[run]
    return since, length


def _learnt_margins(hours: BuildingHours, heater: BoolArray, config: RulesConfig) -> tuple[IntArray, IntArray]:
    """Per hour, how long heating typically runs on after closing, and starts before opening, in hours.

    From the building's own past (:attr:`RulesConfig.cooldown_closings` closings
    and openings before the hour): after each closing, the hours the heater
    still runs (pump or optimiser overrun, the ordinary cool-down); before each
    opening, the hours it already runs (the morning recovery). The median is
    taken, so nights with heating left on do not teach it; capped by
    ``max_overrun`` and ``max_recovery``. Lookback: the last closings, about three weeks.
    """
    n = heater.size
    closed = hours.open_frac == 0.0
    overrun_cap = int(config.max_overrun / timedelta(hours=1))
    recovery_cap = int(config.max_recovery / timedelta(hours=1))
    heated_closed = closed & heater
    since, length = _runs(heated_closed)
    # After a closing at h, the heated closed run starting at h; before an opening at h, the one ending at h - 1.
    closing = np.flatnonzero(closed[1:] & ~closed[:-1]) + 1
    opening = np.flatnonzero(~closed[1:] & closed[:-1]) + 1
    overrun_k = np.where(heated_closed[closing], np.minimum(length[closing], overrun_cap), 0)
    recovery_k = np.where(heated_closed[opening - 1], np.minimum(since[opening - 1] + 1, recovery_cap), 0)
    # An optimum-start controller leads the opening by a time that grows with the gap between the comfort setpoint
    # and the weather (a cold morning needs a longer recovery): the recovery is learnt per kelvin of that gap.
    gap = np.maximum(_MIN_RECOVERY_GAP_K, _comfort(hours).setpoint_c - _trailing_mean(hours.outdoor_c, 24))
    overrun = np.zeros(n, dtype=np.int64)
    recovery = np.zeros(n, dtype=np.int64)
    window = config.cooldown_closings

    def medians(counts: FloatArray) -> FloatArray:
        padded = np.concatenate([np.full(window - 1, np.nan), counts])
        views = np.lib.stride_tricks.sliding_window_view(padded, window)
        enough = np.isfinite(views).sum(axis=1) >= 3
        result = np.full(counts.size, np.nan)
        result[enough] = np.nanmedian(views[enough], axis=1)
        return result

    for known_at, counts, out in ((closing + overrun_cap, overrun_k, overrun), (opening, recovery_k, recovery)):
        if counts.size < 3:
            continue
        plain = medians(counts.astype(np.float64))
        per_k = medians(counts / gap[known_at]) if out is recovery else np.full(counts.size, np.nan)
        until = np.append(known_at[1:], n)
        for start, stop, median, median_k in zip(known_at.tolist(), until.tolist(), plain.tolist(), per_k.tolist(),
                                                 strict=True):
            if start >= n:
                continue
            if math.isfinite(median):
                out[start:stop] = int(median)
            if math.isfinite(median_k):
                here = gap[start:stop]
                # Colder than usual, a longer lead; never shorter than the plain median (nor where the weather is unknown).
                longer = np.minimum(recovery_cap, np.ceil(median_k * np.nan_to_num(here) - 1e-6)).astype(np.int64)
                out[start:stop] = np.where(np.isfinite(here), np.maximum(out[start:stop], longer), out[start:stop])
    return overrun, recovery


_MIN_RECOVERY_GAP_K = 2.0
"""Least gap (K) between the comfort setpoint and the weather a recovery is learnt per kelvin of."""


_cooling_kept: list[tuple[BuildingHours, BoolArray, RulesConfig, BoolArray]] = []
_cooling_lock = threading.Lock()


def _cooling_down(hours: BuildingHours, heater: BoolArray, config: RulesConfig) -> BoolArray:
    """Closed hours of the ordinary cool-down after closing and of the recovery before opening (learnt).

    The last result is kept for the same hours, heater and settings: ``overheating`` and ``heating_unoccupied``
    ask for it with the same heater (:func:`heater_active`), and learning the margins walks every closing of
    the frame. A copy is returned, the values the same.
    """
    with _cooling_lock:
        for kept_hours, kept_heater, kept_config, kept in _cooling_kept:
            if kept_hours is hours and kept_config is config and np.array_equal(kept_heater, heater):
                return kept.copy()
    result = _cooling_down_uncached(hours, heater, config)
    with _cooling_lock:
        _cooling_kept[:] = [(hours, heater.copy(), config, result.copy())]
    return result


def _cooling_down_uncached(hours: BuildingHours, heater: BoolArray, config: RulesConfig) -> BoolArray:
    closed = hours.open_frac == 0.0
    # The closure's end comes from the schedule, known in advance: a frame ending in the night must not
    # take its own last hour for the eve of an opening (a live pass would then never judge it).
    n = closed.size
    since, length = _runs(np.concatenate([closed, hours.open_after == 0.0]))
    since, length = since[:n], length[:n]
    overrun, recovery = _learnt_margins(hours, heater, config)
    until = length - since
    result: BoolArray = closed & ((since < overrun) | (until <= recovery))
    return result


def _held(indoor: FloatArray, window: int = 3, max_fall_k_h: float = 0.1) -> BoolArray:
    """Hours where the indoor temperature is held (it fell by less than ``max_fall_k_h`` per hour over ``window`` hours).

    A building cooling down after closing loses temperature hour after hour;
    one held at a setpoint does not.
    """
    before = np.concatenate([np.full(window, np.nan), indoor[:-window]]) if indoor.size > window else _nan(indoor.size)
    result: BoolArray = np.isfinite(before) & (indoor - before > -max_fall_k_h * window)
    return result


def _closure_setpoint(hours: BuildingHours, comfort: ComfortTargets, config: RulesConfig) -> tuple[FloatArray, FloatArray]:
    """Per closed hour, the setpoint the building should hold and its limit (``nan`` when open).

    The setpoint is the declared one for the kind of closure, known from the
    schedule: the setback at night (closures under 24 h), the weekend setpoint
    for closed days, the frost-protection setpoint for closures longer than
    ``long_closure`` where the inventory declares it. Where the R241-26 limits
    apply (``comfort.regulated``) the limit is at most 16 °C from 24 h of
    closure on; elsewhere it is the declared setpoint. The tolerance is added.

    A thermostat or a building management system is programmed per day of
    the week: the closed hours of a day the building opens (the evening before
    a closed Wednesday or a weekend, the small hours before reopening) follow
    that day's program, the night setback, and only the closed days themselves
    the weekend or frost-protection setpoint (as :func:`anomalies.features.expected_setpoints`
    says). Holding the night setback on a Friday evening is no overheating.
    """
    closed = hours.open_frac == 0.0
    _, length = _runs(closed)
    long_h = int(config.long_closure / timedelta(hours=1))
    frost_declared = "heating_frost_protection_c" in hours.building.model_fields_set
    long_setpoint = comfort.frost_c if frost_declared else comfort.weekend_c
    night = (length < 24) | hours.day_open
    setpoint = np.where(night, comfort.setback_c, np.where(length < long_h, comfort.weekend_c, long_setpoint))
    limit = setpoint.astype(np.float64)
    if comfort.regulated:
        limit = np.where(length >= 24, np.minimum(limit, R241_26_UNOCCUPIED_C), limit)
    setpoint = np.where(closed, setpoint, np.nan)
    limit = np.where(closed, limit + config.tolerance_c, np.nan)
    return setpoint, limit


def _comfort(hours: BuildingHours) -> ComfortTargets:
    """The building's comfort targets, or its zone's when all its indoor sensors are in one zone."""
    zones = {p.zone for p in hours.building.points if p.quantity is Quantity.TEMPERATURE and p.usage is not Usage.WEATHER}
    return hours.building.comfort(zones.pop() if len(zones) == 1 else None)


def _occupied_limit(hours: BuildingHours, comfort: ComfortTargets, config: RulesConfig) -> float:
    """The occupied overheating limit: the declared one, else the lower of the legal one and the own setpoint's.

    Where no overheating limit is declared (building or zone), a building is held
    to its own occupied setpoint plus ``setpoint_margin_c`` as well as to R241-26:
    each kelvin above its target costs about 7 % of its heating, whatever the law
    allows. An undeclared setpoint is 19 °C, so this changes nothing there.
    """
    zones = {p.zone for p in hours.building.points if p.quantity is Quantity.TEMPERATURE and p.usage is not Usage.WEATHER}
    zone = next((z for z in hours.building.zones if len(zones) == 1 and z.id in zones), None)
    if (zone is not None and zone.overheating_limit_c is not None) or hours.building.overheating_limit_c is not None:
        return comfort.limit_c
    return min(comfort.limit_c, comfort.setpoint_c + config.setpoint_margin_c)


_WARMED_H = 12
"""Hours a room keeps the heat it took in from outdoor air at least as warm as itself (an afternoon's, through the
evening and the first half of the night): one time constant of a light building, well under a heavy one's."""


def _warmed_by_weather(indoor: FloatArray, outdoor: FloatArray | None, window: int = _WARMED_H) -> BoolArray:
    """Hours whose indoor temperature the outdoor air reached or passed within the last ``window`` hours.

    >>> _warmed_by_weather(np.array([18.0, 18.0, 18.0, 18.0]), np.array([19.0, 12.0, 12.0, 12.0]), window=2).tolist()
    [True, True, False, False]
    """
    if outdoor is None:
        return np.zeros(indoor.size, dtype=np.bool_)
    peak = outdoor.copy()
    for k in range(1, min(window, outdoor.size)):
        np.fmax(peak[k:], outdoor[:-k], out=peak[k:])
    result: BoolArray = peak >= indoor  # nan on either side compares False: not warmed
    return result


def _recent(mask: BoolArray, window: int) -> BoolArray:
    """Hours that have ``mask`` true within the last ``window`` hours (included)."""
    counts = np.convolve(mask.astype(np.float64), np.ones(window))[: mask.size]
    result: BoolArray = counts > 0
    return result


def _occupied_overheating(hours: BuildingHours, comfort: ComfortTargets, config: RulesConfig, heater: BoolArray) -> BoolArray:
    limit = _occupied_limit(hours, comfort, config)
    result: BoolArray = hours.occupied & heater & (hours.indoor_c > limit + config.tolerance_c)
    return result


_RAISED_LEVEL_HOURS = 16
"""Held hours (about two occupied days) whose median is the building's current held level."""
_RAISED_MIN_DAYS = 10
"""Fewer held days of the past than this: the usual held level is not known, the check waits."""
_RAISED_LOOKBACK_DAYS = 120
"""Held days older than this are not the building's usual level any more (another season)."""


def _raised_setpoint(
    hours: BuildingHours, comfort: ComfortTargets, config: RulesConfig, held: BoolArray
) -> tuple[BoolArray, FloatArray]:
    """Occupied hours held above the building's own usual held level: its thermostat was turned up.

    While the heater runs, a thermostat-held room is at or below its setpoint,
    so the indoor temperature of the occupied, heated, held hours (``held``)
    reads the setpoint actually programmed. The current level is the median of
    the last ``_RAISED_LEVEL_HOURS`` such hours (about two days: held for days,
    not an afternoon); the usual level is the median of the daily medians of the
    last ``raised_setpoint_reference_days`` held days before the hour's day that
    were not themselves raised (a raise lasting weeks does not become usual),
    within ``_RAISED_LOOKBACK_DAYS``. An hour is raised when the current level
    exceeds the usual one by ``raised_setpoint_k`` and four robust standard
    deviations of the usual days, and exceeds the declared occupied setpoint by
    ``tolerance_c`` (a building brought back up to its declared setpoint is
    repaired, not raised). Causal: an hour depends on itself and earlier hours.

    Returns:
        The raised hours (among ``held``) and the usual held level of each hour (``nan`` where unknown).
    """
    n = held.size
    raised = np.zeros(n, dtype=np.bool_)
    usual = _nan(n)
    if not held.any():
        return raised, usual
    indoor = hours.indoor_c
    idx = np.flatnonzero(held)
    values = indoor[idx]
    level_all = _nan(n)
    # The median of the last _RAISED_LEVEL_HOURS held values at each held hour: the first ones over fewer values,
    # then all the full windows at once (a row's median is computed as a lone window's: the same values).
    head = min(values.size, _RAISED_LEVEL_HOURS - 1)
    for j in range(head):
        level_all[idx[j]] = float(np.median(values[: j + 1]))
    if values.size > head:
        windows = np.lib.stride_tricks.sliding_window_view(values, _RAISED_LEVEL_HOURS)
        level_all[idx[head:]] = np.median(windows, axis=1)
    day = hours.local_day
    past_days: list[int] = []  # the unraised held days, oldest first
    past_medians: list[float] = []  # and their medians
    k = config.raised_setpoint_reference_days
    # Local days never go back: a day's held hours are a run of ``idx``, its hours a run of the frame.
    held_days, firsts = np.unique(day[idx], return_index=True)
    lasts = np.append(firsts[1:], idx.size)
    day_lo = np.searchsorted(day, held_days, side="left")
    day_hi = np.searchsorted(day, held_days, side="right")
    for d, first, last, lo, hi in zip(held_days.tolist(), firsts.tolist(), lasts.tolist(), day_lo.tolist(),
                                      day_hi.tolist(), strict=True):
        at_day = idx[first:last]
        since = bisect.bisect_left(past_days, d - _RAISED_LOOKBACK_DAYS)
        recent = past_medians[max(since, len(past_medians) - k) :]
        if len(recent) >= _RAISED_MIN_DAYS:
            ref = np.asarray(recent)
            centre = float(np.median(ref))
            spread = 1.4826 * float(np.median(np.abs(ref - centre)))
            threshold = max(config.raised_setpoint_k, 4.0 * spread)
            usual[lo:hi] = centre
            raised[at_day] = (level_all[at_day] > centre + threshold) & (
                level_all[at_day] > comfort.setpoint_c + config.tolerance_c
            )
        if not raised[at_day].any():
            past_days.append(int(d))
            past_medians.append(float(np.median(indoor[at_day])))
    return raised, usual


class OverheatingRule:
    """Heating above the building's (or zone's) limits, from the inventory (:meth:`inventory.Building.comfort`).

    Occupied, the limit is the declared overheating limit or, without one, the
    lower of the own setpoint plus ``setpoint_margin_c`` (2 K) and 19 °C where
    the R241-26 limits apply (``regulated``): a pool held at 27 °C is not
    overheating, a gymnasium declared at 15 °C held at 19 °C is (its thermostat
    was raised; :func:`_occupied_limit`). Closed, it is the setpoint of the
    closure (:func:`_closure_setpoint`: setback at night, weekend setpoint,
    declared frost protection in long closures; at most 16 °C from 24 h of
    closure where regulated). Only hours where the heater runs count (a sunny
    afternoon is not heating). A closed hour counts when the indoor
    temperature is held there (not the ordinary cool-down: the heating
    overrun after closing and the recovery before opening are learnt from the
    building's own past) and either the occupied hours of the last days were
    overheated too or the temperature sits below comfort (a setback set too
    high); a closed building held at comfort is :class:`HeatingUnoccupiedRule`'s.
    Hours where the heater is idle above the limit say nothing (sun, people):
    they neither extend nor end an episode; nor do the days out of the
    building's declared heating season (``heating_season``), when a warm room
    is the weather's doing and what the heating meter counts is hot water,
    nor the hours after outdoor air as warm as the room within the last
    :data:`_WARMED_H` hours (the mass gives the afternoon's heat back).

    Lookback: a year for the heater's scale, 28 days for its floor, three
    weeks of closings for the cool-down, 72 h of memory.
    """

    name = "overheating"

    def evaluate(
        self, hours: BuildingHours, config: RulesConfig, earlier: Sequence[Finding], *, memo: RuleMemo | None = None
    ) -> list[Finding]:
        """Hours of heating above the limits."""
        if Usage.HEATING not in hours.usages or not np.isfinite(hours.indoor_c).any():
            return []
        heat = hours.usages[Usage.HEATING]
        comfort = _comfort(hours)
        heater, floor = heater_active(hours, memo=memo)
        indoor, outdoor = hours.indoor_c, hours.outdoor_c
        occ_over = _occupied_overheating(hours, comfort, config, heater)
        heating_weather = _heating_weather(hours, config)
        held = hours.occupied & heater & _held(indoor) & np.isfinite(indoor) & hours.heating_in_season & heating_weather
        raised, usual = _raised_setpoint(hours, comfort, config, held)
        occ_over = occ_over | raised
        memory = _recent(occ_over, int(config.overheating_memory / timedelta(hours=1)))
        _, closed_limit = _closure_setpoint(hours, comfort, config)
        closed = hours.closed & ~_cooling_down(hours, heater, config)
        below_comfort = indoor < comfort.setpoint_c - config.comfort_margin_c
        unocc_over = closed & heater & _held(indoor) & (indoor > closed_limit) & (memory | below_comfort)
        limit = np.where(hours.occupied, _occupied_limit(hours, comfort, config), closed_limit - config.tolerance_c)
        over = (indoor > limit + config.tolerance_c) | raised
        # A raised thermostat's excess is the heat beyond holding the building's usual level.
        limit = np.where(raised & np.isfinite(usual), np.minimum(limit, usual), limit)
        # An idle heater above the limit cannot tell (gains); a running one below it can.
        known = (hours.occupied | closed) & np.isfinite(indoor) & np.isfinite(heat.values) & np.isfinite(floor)
        known &= heater | ~over
        # Out of the declared heating season a warm room is the weather's and the occupants' doing: what a
        # heating meter still counts then is hot water or a learnt share of a shared meter, not a heater
        # holding the room warm. Heating really run out of season is excess consumption, for the model.
        known &= hours.heating_in_season
        # Nor, with or without a declared season, in heating-free weather: a day whose last 24 h are above
        # the building's balance point needs no heat, so what keeps it warm is the weather (a summer
        # afternoon at 27 °C is no heater's doing), whatever a meter also counting hot water shows.
        known &= heating_weather
        # Nor when the outdoor air was as warm as the room within the last hours: the envelope and the mass
        # took in the afternoon's heat and give it back for hours, and no heater is needed to hold the room
        # there (a crèche at 18.6 °C on a May Saturday whose afternoon reached 20 °C, its weekend setpoint 17 °C,
        # a shared meter's hot-water standby read as the heater running).
        warmed = _warmed_by_weather(indoor, outdoor)
        known &= ~warmed
        condition = (occ_over | unocc_over) & hours.heating_in_season & heating_weather & ~warmed
        expected = np.where(condition, _heat_at(heat.values, np.nan_to_num(floor), indoor, outdoor, limit), np.nan)
        excess = np.where(condition, np.maximum(0.0, heat.values - expected), 0.0)
        return [
            Finding(
                qualified_name=_PREFIX + "overheating", kind=EventKind.OVERHEATING, building=hours.building.id,
                usage=Usage.HEATING, state=_state(known, condition), observed=heat.values, expected=expected,
                excess=np.nan_to_num(excess), unit=heat.unit, energy=heat.energy,
                facts={"indoor_c": indoor, "limit_c": limit, "occupied": hours.occupied.astype(np.float64)},
                constant_facts={"regulated": comfort.regulated},
                # A raised thermostat overheats every open day: an open alert quiet through a weekend is
                # not repaired; a few hours' blips days apart do not add up to an alert.
                min_duration=timedelta(hours=4), clear_after=timedelta(hours=_PAST_WEEKEND_H),
                forget_pending_after=timedelta(hours=48),
            )
        ]


class HeatingUnoccupiedRule:
    """Heating keeping comfort in a closed building: nights, weekends, public and school holidays.

    An hour counts when the building is closed (outside the pre-heating
    allowance, the learnt heating overrun after closing and the learnt
    recovery before opening), the heater runs, the indoor temperature is held
    within ``comfort_margin_c`` of the occupied setpoint and above the
    closure's setpoint (:func:`_closure_setpoint`), unless the occupied hours
    of the last days were overheated (a setpoint problem, reported by
    :class:`OverheatingRule`). A closed hour at comfort with the heater idle
    (sun, thermal mass) says nothing, so heating kept on through a two-week
    holiday is one episode, not one per night. The expected heat is the heat
    needed to hold the closure's setpoint instead. Days out of the building's
    declared heating season (``heating_season``) are not judged: the heating
    is off, and a shared meter counts hot water; nor are hours after 24 h
    above the building's balance point (as :class:`OverheatingRule`): a
    heater left on has nothing to do there, but where the last 6 h were
    clearly below it (a warm spring day's cold night needs heat).

    Lookback: a year for the heater's scale, 28 days for its floor, three
    weeks of closings for the cool-down, 72 h of memory.
    """

    name = "heating_unoccupied"

    def evaluate(
        self, hours: BuildingHours, config: RulesConfig, earlier: Sequence[Finding], *, memo: RuleMemo | None = None
    ) -> list[Finding]:
        """Closed hours heated to comfort."""
        if Usage.HEATING not in hours.usages or not np.isfinite(hours.indoor_c).any():
            return []
        heat = hours.usages[Usage.HEATING]
        comfort = _comfort(hours)
        heater, floor = heater_active(hours, memo=memo)
        indoor, outdoor = hours.indoor_c, hours.outdoor_c
        memory = _recent(
            _occupied_overheating(hours, comfort, config, heater), int(config.overheating_memory / timedelta(hours=1))
        )
        setpoint, limit = _closure_setpoint(hours, comfort, config)
        closed = hours.closed & ~_cooling_down(hours, heater, config)
        at_comfort = (indoor >= comfort.setpoint_c - config.comfort_margin_c) & (indoor > limit)
        # Out of the declared heating season the heating circuit is off: a closed room at comfort is the
        # weather's doing, and what the meter counts is hot water (a tank reheating on a summer weekend).
        # Heating really run out of season is excess consumption, for the model (issue 11).
        closed &= hours.heating_in_season
        # Nor, season or not, in heating-free weather (as OverheatingRule): a closed room at comfort after 24 h
        # above the building's balance point is warm from the weather, and a heater left on there has nothing
        # to do (a crèche on a 23 °C Sunday of May, its shared meter counting the hot water's standby). Unless
        # the last hours were cold: a warm Easter's nights at 9 °C need heat, and a heater left on at comfort
        # through them was a fault judged as an 11-hour event of a fortnight's holidays.
        closed &= _heating_weather(hours, config) | _cold_hours(hours, config)
        condition = closed & heater & at_comfort & _held(indoor) & ~memory
        known = closed & np.isfinite(indoor) & np.isfinite(heat.values) & np.isfinite(floor) & (heater | ~at_comfort)
        target = np.where(np.isfinite(setpoint), setpoint, comfort.setback_c)
        expected = np.where(condition, _heat_at(heat.values, np.nan_to_num(floor), indoor, outdoor, target), np.nan)
        excess = np.where(condition, np.maximum(0.0, heat.values - expected), 0.0)
        return [
            Finding(
                qualified_name=_PREFIX + "heating_unoccupied", kind=EventKind.HEATING_UNOCCUPIED, building=hours.building.id,
                usage=Usage.HEATING, state=_state(known, condition), observed=heat.values, expected=expected,
                excess=np.nan_to_num(excess), unit=heat.unit, energy=heat.energy, facts={"indoor_c": indoor},
                min_duration=timedelta(hours=4), clear_after=config.daily_clear_after,
            )
        ]


class LightingRule:
    """Lights on in a closed building, or at full power in full daylight.

    A closed hour is lit when the lighting meter is above its closed-hours
    level by 30 % of the way to its occupied level, or, in the dark, when an
    indoor illuminance sensor reads at least ``lit_lux``. Full daylight: the
    lighting meter at 90 % of its highest level while the sun is high and the
    illuminance sensors read ``daylight_lux``. The levels are learnt from
    the 28 days before each day, the highest level from the year before.

    Lookback: 28 days (a year for the highest level).
    """

    name = "lighting"

    def evaluate(
        self, hours: BuildingHours, config: RulesConfig, earlier: Sequence[Finding], *, memo: RuleMemo | None = None
    ) -> list[Finding]:
        """Closed hours lit, and occupied hours lit in full daylight."""
        n = hours.frame.hours
        closed = hours.open_frac == 0.0
        light = hours.usages.get(Usage.LIGHTING)
        general = hours.usages.get(Usage.GENERAL)
        lux = hours.illuminance_lx
        day, lookback = hours.local_day, 28
        dark = hours.sun_deg < config.dark_sun_deg
        lit_sensor = dark & (lux >= config.lit_lux)
        known_sensor = dark & np.isfinite(lux)
        general_closed = _nan(n)
        if general is not None:
            # Typical closed-hour electricity at the same local hour stands for "lights off".
            for h in range(24):
                at_h = hours.local_hour == h
                general_closed[at_h] = _causal_pct(general.values, closed & at_h, day, 30, lookback, memo=memo,
                                                   site=(hours.building.id, "lighting", "closed", str(h)))[at_h]
            # A lux sensor alone may be frozen on a daytime value: the meter must agree that lamps draw power.
            lit_sensor &= general.values > config.lit_power_ratio * general_closed
        findings: list[Finding] = []
        meter: UsageSeries | None
        if light is not None:
            site = (hours.building.id, "lighting", light.usage.value)
            base = _causal_pct(light.values, closed, day, 10, lookback, memo=memo, site=(*site, "base"))
            level = _causal_pct(light.values, hours.occupied, day, 90, lookback, memo=memo, site=(*site, "level"))
            lit_meter = np.isfinite(light.values) & (light.values > base + 0.3 * (level - base))
            known = closed & (np.isfinite(light.values) | known_sensor)
            meter = light
            expected = base
        else:
            lit_meter = np.zeros(n, dtype=np.bool_)
            known = closed & known_sensor
            meter = general
            expected = general_closed
        condition = closed & (lit_meter | lit_sensor)
        if meter is not None:
            observed = meter.values
            excess = np.where(condition, np.maximum(0.0, observed - expected), 0.0)
            unit, energy = meter.unit, meter.energy
            usage = meter.usage
        else:
            observed, excess, unit, energy, usage = _nan(n), np.zeros(n), "lx", None, Usage.LIGHTING
        findings.append(
            Finding(
                qualified_name=_PREFIX + "lighting_unoccupied", kind=EventKind.LIGHTING_UNOCCUPIED,
                building=hours.building.id, usage=usage if light is not None else Usage.LIGHTING,
                state=_state(known, condition), observed=observed, expected=expected, excess=np.nan_to_num(excess),
                unit=unit, energy=energy, min_duration=timedelta(hours=2), clear_after=timedelta(hours=12),
            )
        )
        if light is not None:
            # Full power is the lamps' installed power: a year's top, not the last weeks' (short winter days).
            top = _causal_pct(light.values, hours.occupied, day, 99, 365, memo=memo, site=(*site, "top"))
            sunny = hours.occupied & (hours.sun_deg > config.daylight_sun_deg) & np.isfinite(lux)
            full = sunny & (light.values >= 0.9 * top) & (lux >= config.daylight_lux)
            half = np.where(full, 0.5 * light.values, np.nan)
            findings.append(
                Finding(
                    qualified_name=_PREFIX + "lighting_daylight", kind=EventKind.LIGHTING_DAYLIGHT,
                    building=hours.building.id, usage=Usage.LIGHTING, state=_state(sunny, full),
                    observed=light.values, expected=half, excess=np.nan_to_num(np.where(full, light.values - half, 0.0)),
                    unit=light.unit, energy=light.energy, facts={"lux": lux}, min_duration=timedelta(hours=3),
                    clear_after=timedelta(hours=24),
                )
            )
        return findings


class NightBaseloadRule:
    """Night base load creeping up compared with previous weeks.

    Each night's median electricity over the night hours is compared with
    the base load predicted from the reference nights (by default from 35 to
    7 nights back, flagged nights left out) plus the heating pumps: night
    electricity is regressed on the night's heating over every earlier night,
    so that pumps in a cold spell or at the start of the heating season are
    not taken for a creep. A night counts when the median ratio of the last
    three nights exceeds ``1 + baseload_increase``. Nights with lights left
    on are left out.

    Without a heating meter, a main meter may carry the heating itself
    (convectors, heat pumps), whose night consumption follows the setback and
    the weather in no linear way. There the base load is judged where it is
    weather-independent: the night's **minimum** hour, on nights without
    heating only (outside the declared heating season, or after 24 hours
    whose mean outdoor temperature is at least ``heating_off_above_c``),
    against the reference nights without heating. Nights with heating are
    unknown: they neither raise nor resolve a creep.

    Reference nights and the pumps' slope come from nights in the same
    heating service state only (:func:`_heating_in_service`): circulation
    pumps run all season, heat or not, so the base steps up on the season's
    first day with nothing left on.

    Lookback: every earlier night for the pumps' slope (kept as a running fit), 35 nights for the base.
    """

    name = "baseload_creep"

    def evaluate(
        self, hours: BuildingHours, config: RulesConfig, earlier: Sequence[Finding], *, memo: RuleMemo | None = None
    ) -> list[Finding]:
        """Nights whose base load is above the previous weeks'."""
        elec = hours.usages.get(Usage.GENERAL)
        if elec is None:
            return []
        n = hours.frame.hours
        heat = hours.usages.get(Usage.HEATING)
        main_meter = heat is None
        heat_v = heat.values if heat is not None else np.zeros(n)
        lit = np.zeros(n, dtype=np.bool_)
        for finding in earlier:
            if finding.kind is EventKind.LIGHTING_UNOCCUPIED:
                lit |= finding.active
        night = np.isin(hours.local_hour, config.night_hours) & (hours.open_frac == 0.0)
        if not night.any():
            return []
        days = np.unique(hours.local_day[night])
        # One row per night: its night hours' electricity and heating, computed for all nights at once.
        nights = hours.local_day[night]
        e_rows, _ = _day_matrix(elec.values[night], nights)
        h_rows, _ = _day_matrix(heat_v[night], nights)
        present = np.isin(nights[0] + np.arange(e_rows.shape[0]), days)
        e_rows, h_rows = e_rows[present], h_rows[present]
        enough = (np.isfinite(e_rows).sum(axis=1) >= 2) & (np.isfinite(h_rows).sum(axis=1) >= 2)
        night_e = np.full(days.size, np.nan)
        night_h = np.full(days.size, np.nan)
        night_e[enough] = np.nanmedian(e_rows[enough], axis=1)
        night_h[enough] = np.nanmedian(h_rows[enough], axis=1)
        excluded = np.zeros(days.size, dtype=np.bool_)
        np.logical_or.at(excluded, np.searchsorted(days, nights), lit[night])
        if main_meter:
            # The main meter carries the heating: its base load is the night's lowest hour on nights without
            # heating (out of season, or a warm last day), the only nights it does not depend on the weather.
            night_e[enough] = np.nanmin(e_rows[enough], axis=1)
            heating_free = ~_in_season(hours.building, hours.frame.times_s) | (
                _trailing_mean(hours.outdoor_c, 24) >= config.heating_off_above_c)
            free_rows, _ = _day_matrix(heating_free[night].astype(np.float64), nights)
            free = np.nanmin(free_rows[present], axis=1) == 1.0
            excluded |= ~free
        service = _heating_in_service(hours, days, nights, night, night_h, main_meter)
        far, near = config.baseload_reference
        ratio = np.full(days.size, np.nan)
        fast = np.full(days.size, np.nan)  # against the last weeks: a jump
        predicted = np.full(days.size, np.nan)
        flagged = np.zeros(days.size, dtype=np.bool_)
        slopes = np.zeros(days.size)
        # A night's judgement depends on its own inputs and on the nights before it (and on which of them were
        # flagged): a memo holds the nights up to the first whose inputs changed since the last pass.
        inputs = np.column_stack([days.astype(np.float64), night_e, night_h, excluded, service.astype(np.float64)])
        key = (hours.frame.start_s, float(far), float(near), float(config.baseload_increase), main_meter)
        site = (hours.building.id, self.name)
        done = memo._nights.get(site) if memo is not None else None
        if done is not None and done.key != key:
            done = None
        digests, first, digest_all = _unit_digests(_Units.of(inputs), *((done.digests, done.whole) if done else (None,)))
        if done is not None:
            for mine, kept in zip((ratio, fast, predicted, flagged, slopes), done.arrays, strict=True):
                mine[:first] = kept[:first]
        for i in range(first, days.size):
            day = int(days[i])
            if not np.isfinite(night_e[i]) or excluded[i]:
                continue
            # Reference nights in the same heating service state only: circulation pumps and boiler auxiliaries
            # run all season, heat or not, so the base load steps up when the season starts (nothing left on).
            same = service == service[i]
            ref = (days >= day - far) & (days <= day - near) & np.isfinite(night_e) & ~flagged & ~excluded & same
            if ref.sum() < 10:
                continue
            # The pumps' share of heat is stable: its slope is fitted on every earlier night (a
            # reference month without heating cannot give it); the base is the reference's.
            history = (days < day - near) & np.isfinite(night_e) & ~flagged & ~excluded & same
            slope = _slope(night_h[history], night_e[history])
            slopes[i] = slope
            predicted[i] = float(np.median(night_e[ref] - slope * night_h[ref])) + slope * night_h[i]
            ratio[i] = night_e[i] / predicted[i] if predicted[i] > 0 else np.nan
            fast[i] = ratio[i]
            recent = fast[max(0, i - 2): i + 1]
            recent = recent[np.isfinite(recent)]
            flagged[i] = recent.size >= 2 and float(np.median(recent)) > 1.0 + config.baseload_increase
            if not flagged[i]:
                envelope = _creep_envelope(days, night_e - slope * night_h, i, flagged, excluded | ~same, config)
                if math.isfinite(envelope):
                    # A slow creep: the base load of the last week against what it was before it began.
                    predicted[i] = envelope + slope * night_h[i]
                    ratio[i] = night_e[i] / predicted[i] if predicted[i] > 0 else np.nan
                    flagged[i] = True
        if memo is not None:
            memo.recomputed_nights += days.size - first
            memo._nights[site] = _NightDays(key, digests, tuple(a.copy() for a in (ratio, fast, predicted, flagged, slopes)),
                                            digest_all)
        step = _night_steps(days, night_e, night_h, slopes, predicted, flagged, excluded, config.baseload_increase)
        night_idx = np.flatnonzero(night)
        of_night = np.searchsorted(days, hours.local_day[night_idx])
        known = np.isfinite(ratio[of_night])
        h_known, i_known = night_idx[known], of_night[known]
        in_days = np.isin(hours.local_day, days)
        of_day = np.clip(np.searchsorted(days, hours.local_day), 0, days.size - 1)
        findings: list[Finding] = []
        # A step of the base load from one night to the next is something switched on and left on (lights,
        # equipment): its own name and advice. A rise with no single step is a creep.
        for name, kind, mine in (
            ("baseload_creep", EventKind.BASELOAD_CREEP, flagged & ~step),
            ("night_load_step", EventKind.LIGHTING_UNOCCUPIED, flagged & step),
        ):
            state = _nan(n)
            expected = _nan(n)
            increase = _nan(n)
            excess = np.zeros(n)
            state[h_known] = mine[i_known].astype(np.float64)
            expected[h_known] = predicted[i_known]
            increase[h_known] = 100.0 * (ratio[i_known] - 1.0)
            hit = in_days & mine[of_day]
            excess[hit] = np.maximum(0.0, night_e[of_day[hit]] - predicted[of_day[hit]])
            # The raised base runs day and night: the excess is counted every hour of a flagged day, so the
            # observed and expected are too (review round 2: "Attendu 170, Observé 201, Surconsommation 234
            # kWh", the observed summed at night only). No more than the meter read in an hour, and what was
            # expected is what was read less the excess, as for a leak, so that the three add up.
            measured = np.isfinite(elec.values)
            excess[hit] = np.where(measured[hit], np.minimum(excess[hit], np.maximum(elec.values[hit], 0.0)), 0.0)
            expected[hit] = np.where(measured[hit], elec.values[hit] - excess[hit], np.nan)
            findings.append(
                Finding(
                    qualified_name=_PREFIX + name, kind=kind, building=hours.building.id,
                    usage=Usage.GENERAL, state=state, observed=np.where(night | hit, elec.values, np.nan),
                    expected=expected, excess=excess, unit=elec.unit, energy=elec.energy,
                    facts={"increase_pct": increase}, min_duration=timedelta(hours=3), clear_after=timedelta(hours=48),
                    chart_hours=night,
                )
            )
        return findings


_STEP_WEEK = 7
"""Nights on each side of a candidate step whose base loads are compared (a week: every day of use once)."""
_STEP_MIN_NIGHTS = 3
"""Known nights needed in a week before a candidate step for its base to be known."""
_STEP_SHARE = 0.5
"""Share of a rise above the reference that must have happened in one step for the rise to be that step."""
_STEP_RESUME_DAYS = 35
"""A flagged episode within this many days (the reference's far end) of the last one, that cannot be judged, keeps
its name: one rise, split by nights that could not be judged (heating nights on a main meter)."""
_STEP_NOISE = 4.0
"""A step stands out of the night-to-night scatter by this many standard deviations of the jump."""
_MEDIAN_VARIANCE = math.pi / 2.0
"""Variance of the median of ``k`` normal values, in units of ``sigma ** 2 / k``."""


def _night_steps(
    days: IntArray, night_e: FloatArray, night_h: FloatArray, slopes: FloatArray, predicted: FloatArray,
    flagged: BoolArray, excluded: BoolArray, increase: float,
) -> BoolArray:
    """Per night, whether its flagged episode is a step of the base load (something left on), not a creep.

    Decided at the episode's first flagged night ``i`` from the nights up to
    it, and kept for the episode (flagged nights at most two days apart).
    For each candidate break ``b`` in the week up to ``i``, the base (night
    load less the heating pumps' share) of the nights from ``b`` to ``i`` is
    compared with the week before ``b`` (the jump) and that week with the
    week before it (the pace the base was already moving at). A step is a
    jump that carries at least half of the rise above the reference the
    night was flagged against, and more than twice the week-on-week pace
    before it: a creep rises as much every week, so no single break holds
    most of it. The jump must also be as large as a quick rise must be
    (``increase``, ``baseload_increase``, of the base before it) and stand
    out of the night-to-night scatter (four standard deviations of a
    difference of medians, the best of seven breaks): the first weeks of a
    creep, a few percent above a flat past, do not. Without two known
    calm weeks before any break, an episode within ``_STEP_RESUME_DAYS`` of
    the previous one keeps its name (one rise split by nights that could not
    be judged); otherwise the rise is a creep.
    """
    step = np.zeros(days.size, dtype=np.bool_)
    usable = np.isfinite(night_e) & np.isfinite(night_h) & ~excluded
    last_flag = -(10**9)
    current = False
    for i in np.flatnonzero(flagged).tolist():
        day = int(days[i])
        if day - last_flag > 2:
            verdict = _is_step(days, night_e - slopes[i] * night_h, usable, flagged, i,
                               float(predicted[i] - slopes[i] * night_h[i]), increase)
            if verdict is not None:
                current = verdict
            else:
                # No two calm weeks before a break: the rise goes on from an episode of the last weeks (the
                # nights between unknown or flagged) and keeps its name; without one it is a creep.
                current = current and day - last_flag <= _STEP_RESUME_DAYS
        step[i] = current
        last_flag = day
    return step


def _is_step(
    days: IntArray, base: FloatArray, usable: BoolArray, flagged: BoolArray, i: int, reference: float, least: float
) -> bool | None:
    """Whether the rise of night ``i`` above ``reference`` is a step (see :func:`_night_steps`); ``None``: unknown."""
    day = int(days[i])
    rise = float(base[i]) - reference
    judged = False
    for b in range(day - _STEP_WEEK + 1, day + 1):
        after = usable & (days >= b) & (days <= day)
        before = usable & ~flagged & (days >= b - _STEP_WEEK) & (days < b)
        earlier = usable & ~flagged & (days >= b - 2 * _STEP_WEEK) & (days < b - _STEP_WEEK)
        if not after.any() or before.sum() < _STEP_MIN_NIGHTS or earlier.sum() < _STEP_MIN_NIGHTS:
            continue
        judged = True
        level = float(np.median(base[before]))
        jump = float(np.median(base[after])) - level
        pace = max(0.0, level - float(np.median(base[earlier])))
        # The noise of the jump, a difference of two medians, from the night-to-night scatter before it.
        calm = base[before | earlier]
        sigma = 1.4826 * float(np.median(np.abs(np.diff(calm)))) / math.sqrt(2.0)
        noise = sigma * math.sqrt(_MEDIAN_VARIANCE / int(after.sum()) + _MEDIAN_VARIANCE / int(before.sum()))
        material = jump > least * level
        if material and jump >= _STEP_SHARE * rise and jump > 2.0 * pace and jump > _STEP_NOISE * noise:
            return True
    return False if judged else None


def _heating_in_service(
    hours: BuildingHours, days: IntArray, nights: IntArray, night: BoolArray, night_h: FloatArray, main_meter: bool
) -> BoolArray:
    """Per night, whether the heating is in service (its circulation pumps run, heat or not).

    The declared ``heating_season`` where there is one; else, with a heating
    meter, whether it delivered heat (above 5 % of its highest night so far)
    on one of the last seven nights; else (a main meter alone) one state.
    """
    if hours.building.heating_season is not None:
        rows, _ = _day_matrix(_in_season(hours.building, hours.frame.times_s)[night].astype(np.float64), nights)
        present = np.isin(nights[0] + np.arange(rows.shape[0]), days)
        result: BoolArray = np.nanmax(rows[present], axis=1) == 1.0
        return result
    if main_meter:
        return np.ones(days.size, dtype=np.bool_)
    top = np.fmax.accumulate(np.where(np.isfinite(night_h), night_h, -np.inf))
    ran = np.isfinite(night_h) & (night_h > 0.05 * top)
    service = np.zeros(days.size, dtype=np.bool_)
    for i, day in enumerate(days.tolist()):
        service[i] = bool(ran[(days > day - 7) & (days <= day)].any())
    return service


def _creep_envelope(
    days: IntArray, base: FloatArray, i: int, flagged: BoolArray, excluded: BoolArray, config: RulesConfig
) -> float:
    """The base load before a slow creep began, if the last week's base load is a creep above it, else ``nan``.

    The reference is the lower envelope (25th percentile) of the base load of
    the nights from ``baseload_creep_nights`` back to the near end of
    ``baseload_reference`` (flagged nights left out): a base load rising over
    weeks stays above it, where the last weeks' median follows the rise. The
    last week's median (the nights of the seven days up to night ``i``) is a
    creep when above the envelope by ``baseload_creep_increase`` and by
    ``baseload_creep_noise`` times the noise of that median, from the
    night-to-night scatter of the reference nights (robust, from consecutive
    differences, so that a slow trend in them does not count as noise).
    """
    day = int(days[i])
    known = np.isfinite(base) & ~excluded
    ref = known & ~flagged & (days >= day - config.baseload_creep_nights) & (days <= day - config.baseload_reference[1])
    week = known & (days > day - 7) & (days <= day)
    if ref.sum() < 28 or week.sum() < 4:
        return math.nan
    envelope = float(np.percentile(base[ref], 25))
    if envelope <= 0:
        return math.nan
    noise = 1.4826 * float(np.median(np.abs(np.diff(base[ref])))) / math.sqrt(2.0)
    current = float(np.median(base[week]))
    rise = current - envelope
    # The noise of a median of k nights is about 1.25 / sqrt(k) that of one night.
    limit = max(config.baseload_creep_increase * envelope, config.baseload_creep_noise * noise * 1.25 / math.sqrt(week.sum()))
    return envelope if rise > limit else math.nan


def _slope(x: FloatArray, y: FloatArray) -> float:
    """Least-squares slope of ``y`` on ``x``, not below zero (0 without spread in ``x``)."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 5 or float(np.ptp(x)) <= 1e-9:
        return 0.0
    dx = x - x.mean()
    b = float(np.dot(dx, y - y.mean()) / np.dot(dx, dx))
    return max(0.0, b)


class WaterLeakRule:
    """Continuous night flow on a water meter: a leak.

    Each night hour (building closed) is compared with the usual night flow,
    the median of the night levels over the previous ``leak_reference_nights``
    nights (leak nights left out): a flow above it by ``leak_min_flow_m3_h``
    (or 10 % for a pool's make-up water) counts. While a leak is open the
    usual flow is frozen at its pre-leak value, so a leak nobody repairs stays
    one open alert for as long as the night flow stays above it. The excess is
    the leak flow, counted day and night, but never more in an hour than the
    meter measured in it (an hour without data counts none): what an e-mail
    claims was lost was observed (issue 13). Observed and expected cover the
    same hours as the excess, expected being what the meter would have read
    without the leak; the chart draws the night hours only (``chart_hours``).

    Lookback: ``leak_reference_nights`` nights, and the open leak's frozen reference.
    """

    name = "water_leak"

    def evaluate(
        self, hours: BuildingHours, config: RulesConfig, earlier: Sequence[Finding], *, memo: RuleMemo | None = None
    ) -> list[Finding]:
        """Night hours with a flow above the usual night flow."""
        water = hours.usages.get(Usage.WATER)
        if water is None:
            return []
        n = hours.frame.hours
        night = np.isin(hours.local_hour, config.night_hours) & (hours.open_frac == 0.0)
        days = np.unique(hours.local_day[night])
        # Each night's hours, and the nights each reference covers, found once: local days never go back, so
        # a night's hours are a run of the night hours and a reference's nights a run of ``days`` (the loop
        # used to scan every hour of the frame per night).
        night_idx = np.flatnonzero(night)
        night_day = hours.local_day[night_idx]
        bounds = np.searchsorted(night_day, np.append(days, days[-1] + 1 if days.size else 0))
        of_night = np.repeat(np.arange(days.size), np.diff(bounds))  # per night hour, its night
        night_flow = water.values[night_idx]
        # A night's judgement depends on its own hours and flows and on the nights before it (which of them were
        # leak nights, the reference the last left): a memo holds the nights up to the first whose inputs changed
        # since the last pass, and what the loop carried after each of them.
        width = int(np.diff(bounds).max()) if days.size else 0
        slot = np.arange(night_idx.size) - bounds[of_night]
        inputs = np.full((days.size, 2 + 2 * width), np.nan)
        inputs[:, 0] = days
        inputs[:, 1] = np.diff(bounds)
        inputs[of_night, 2 + slot] = night_idx
        inputs[of_night, 2 + width + slot] = night_flow
        key = (hours.frame.start_s, float(config.leak_reference_nights), float(config.leak_min_flow_m3_h))
        done = memo._leak.get(hours.building.id) if memo is not None else None
        if done is not None and done.key != key:
            done = None
        digests, first, digest_all = _unit_digests(_Units.of(inputs), *((done.digests, done.whole) if done else (None,)))
        table = np.full((days.size, 5), np.nan)  # level, usual, flagged, reference and leak open after the night
        table[:, 2] = 0.0
        if done is not None and first:
            table[:first] = done.table[:first]
        level, usual = table[:, 0], table[:, 1]
        # The pre-leak reference, frozen while a leak is open: an unrepaired leak never becomes
        # the usual flow (issue 11: it was silently resolved after about 11 nights).
        reference = float(table[first - 1, 3]) if first else math.nan
        leak_open = bool(table[first - 1, 4]) if first else False
        flagged = np.zeros(days.size, dtype=np.bool_)
        flagged[:first] = table[:first, 2] == 1.0
        bounds_l = bounds.tolist()
        ref_from = np.searchsorted(days, days - config.leak_reference_nights).tolist()
        for i in range(first, days.size):
            values = night_flow[bounds_l[i] : bounds_l[i + 1]]
            if np.isfinite(values).any():
                level[i] = float(np.nanmedian(values))
            lo = ref_from[i]
            ref = np.isfinite(level[lo:i]) & ~flagged[lo:i]
            if not leak_open and ref.sum() >= 3:
                reference = float(np.median(level[lo:i][ref]))
            # After a long leak the window holds only leak nights: the reference before it serves until
            # three ordinary nights are known again.
            if math.isfinite(reference):
                usual[i] = reference
                threshold = usual[i] + max(config.leak_min_flow_m3_h, 0.1 * usual[i])
                flagged[i] = bool(np.isfinite(level[i]) and level[i] > threshold)
                if np.isfinite(level[i]):
                    leak_open = flagged[i]  # a night without data neither opens nor closes the leak
            table[i, 2:] = (float(flagged[i]), reference, float(leak_open))
        if memo is not None:
            memo.recomputed_nights += days.size - first
            memo._leak[hours.building.id] = _LeakNights(key, digests, table.copy(), digest_all)
        # Each night hour against its night's usual flow, all nights at once (the values the loop wrote night
        # by night: the same threshold, ``max`` taking the minimum flow unless a tenth of the usual is above it).
        usual_h = usual[of_night]
        tenth = 0.1 * usual_h
        threshold_h = usual_h + np.where(tenth > config.leak_min_flow_m3_h, tenth, config.leak_min_flow_m3_h)
        judged = np.isfinite(usual_h)
        state = _nan(n)
        expected = _nan(n)
        flow = _nan(n)
        read = judged & np.isfinite(night_flow)
        state[night_idx[read]] = (night_flow[read] > threshold_h[read]).astype(np.float64)
        expected[night_idx[judged]] = usual_h[judged]
        flow[night_idx[judged]] = night_flow[judged] - usual_h[judged]
        # The leak runs day and night: carry the last night's excess flow forward over the next day.
        # Each hour takes the excess of the last night hour with a known flow at or before it (0 before any).
        setter = night & np.isfinite(flow)
        excess_at = np.where(state == 1.0, np.maximum(0.0, np.where(setter, flow, 0.0)), 0.0)
        last_set = np.maximum.accumulate(np.where(setter, np.arange(n), -1)) if n else np.zeros(0, dtype=np.int64)
        carried = np.where(last_set >= 0, excess_at[np.maximum(last_set, 0)], 0.0)
        # No more than the meter read in the hour (issue 13: 11.4 m3 claimed of 2.4 m3 observed, the
        # excess counted day and night, the observed at night only).
        measured = np.isfinite(water.values)
        excess = np.where(measured, np.minimum(carried, np.maximum(water.values, 0.0)), 0.0)
        # By day, what was expected is what was read less the leak; at night, the usual night flow.
        expected = np.where(night, expected, np.where(measured, water.values - excess, np.nan))
        return [
            Finding(
                qualified_name=_PREFIX + "water_leak", kind=EventKind.WATER_LEAK, building=hours.building.id,
                usage=Usage.WATER, state=state, observed=water.values.copy(), expected=expected,
                excess=excess, unit="m3", excess_unit="m3", energy=water.energy or Energy.WATER,
                facts={"flow_m3_h": flow}, min_duration=timedelta(hours=3), clear_after=timedelta(hours=30),
                chart_hours=night,
            )
        ]


# --- data quality --------------------------------------------------------------------------------


def _quality(
    name: str, kind: EventKind, building: Building, point: Point, state: FloatArray, origin: IntArray, **kw: Any
) -> Finding:
    n = state.size
    return Finding(
        qualified_name=_PREFIX + name, kind=kind, building=building.id, usage=point.usage, point=point.id, state=state,
        observed=_nan(n), expected=_nan(n), excess=np.zeros(n), unit="h", origin=origin,
        min_duration=timedelta(hours=1), clear_after=timedelta(hours=6), **kw,
    )


def _silent_runs(frame: HourlyFrame, point_id: str) -> IntArray | None:
    """Per hour, the first hour of the silence it is in (-1 with data), from the hourly frame; ``None`` if absent."""
    values = frame.mean.get(point_id)
    if values is None:
        values = frame.consumption.get(point_id)
    if values is None:
        return None
    silent = ~np.isfinite(values)
    since, _ = _runs(silent)
    result: IntArray = np.where(silent, np.arange(values.size) - since, -1)
    return result


def _missing_limit(point: Point, config: RulesConfig) -> timedelta:
    limit = config.missing_after_by_quantity.get(point.quantity.value, config.missing_after)
    # Data a utility has not published yet are late, not missing.
    if point.enedis is not None:
        return limit + config.enedis_delay
    if point.grdf is not None:
        return limit + (config.grdf_monthly_delay if point.grdf.publication == "monthly" else config.grdf_delay)
    return limit


class MissingDataRule:
    """A point silent for longer than its limit: the hours of the gap past that delay, one event per gap.

    The limit is ``missing_after_by_quantity`` for the point's quantity, else
    ``missing_after`` (24 h): a gateway reboot or a 4G outage of a few hours
    is a data problem for the status page, not an alert. A utility's meter
    gets its publication delay on top (``enedis_delay`` one day for a Linky,
    ``grdf_delay`` three days for a Gazpar, whose readings are also a gas day apart). The alert resolves
    at the first hour with data again (``clear_after`` of one hour). Points
    of the building that went silent together (silences beginning within
    ``missing_together``, read from the hourly frame: one device or gateway)
    make one event, on the first of them in the inventory's order, whose
    facts name the others (``silent_with``) and count them (``points_silent``);
    the others stay quiet for those hours.

    Lookback: the current gap (of this point and of the building's other points).
    """

    name = "missing_data"

    def evaluate(
        self,
        building: Building,
        point: Point,
        series: PointSeries,
        frame: HourlyFrame,
        open_frac: FloatArray,
        config: RulesConfig,
        *,
        outdoor_c: FloatArray | None = None,
        planned_closure_h: IntArray | None = None,
        memo: RuleMemo | None = None,
    ) -> Finding | None:
        """Gaps of the point's readings (``outdoor_c`` is not used)."""
        n = frame.hours
        after = _missing_limit(point, config).total_seconds()
        times = frame.times_s
        state = np.zeros(n)
        origin = np.full(n, -1, dtype=np.int64)
        t = series.times_s
        edges = np.concatenate([[frame.start_s - 1.0], t, [frame.start_s + 3600.0 * n + after]])
        gaps = np.flatnonzero(np.diff(edges) > after)
        for g in gaps.tolist():
            last, nxt = edges[g], edges[g + 1]
            # An hour is missing once the silence has lasted `after` by its end.
            sel = (times + 3600.0 >= last + after) & (times < nxt)
            state[sel] = 1.0
            origin[sel] = max(0, int((last - frame.start_s) // 3600.0) + 1)
        if not (state == 1.0).any():
            return _replace_missing(_quality(self.name, EventKind.MISSING_DATA, building, point, state, origin))
        facts: dict[str, FloatArray] = {}
        silent_with: set[str] = set()
        mine = _silent_runs(frame, point.id)
        if mine is not None:
            together_h = config.missing_together / timedelta(hours=1)
            hour = np.arange(n)
            count = np.where(state == 1.0, 1.0, np.nan)
            earlier = True
            for other in building.points:
                if other.id == point.id:
                    earlier = False
                    continue
                theirs = _silent_runs(frame, other.id)
                if theirs is None:
                    continue
                long_h = _missing_limit(other, config) / timedelta(hours=1)
                # Their silence began with ours, and has lasted long enough to be reported itself.
                joint = (state == 1.0) & (theirs >= 0) & (mine >= 0) & (np.abs(theirs - mine) <= together_h) & (
                    hour - theirs + 1 >= long_h
                )
                if not joint.any():
                    continue
                if earlier:
                    state[joint] = 0.0  # reported on the earlier point
                else:
                    silent_with.add(other.id)
                    count[joint] += 1.0
            facts["points_silent"] = count
        hours = np.where(state == 1.0, (times + 3600.0 - (frame.start_s + 3600.0 * origin)) / 3600.0, np.nan)
        facts["hours"] = hours
        finding = _quality(self.name, EventKind.MISSING_DATA, building, point, state, origin, facts=facts)
        if silent_with and (state == 1.0).any():
            finding = replace(finding, constant_facts={"silent_with": ", ".join(sorted(silent_with))})
        return _replace_missing(finding)


def _replace_missing(finding: Finding) -> Finding:
    """Missing data resolves as soon as data comes back."""
    return replace(finding, clear_after=timedelta(hours=1))


def _quantisation_step(values: FloatArray, *, rising: bool = False) -> FloatArray:
    """Per reading, the smallest non-zero change between consecutive readings so far (``inf`` before any): the step.

    With ``rising`` (a counter's index) only increases count: a reset is not a step.
    """
    if values.size == 0:
        return np.empty(0)
    # In one array, in place: a pass runs it over every reading of every sensor (38,000 a point).
    result: FloatArray = np.empty(values.size)
    result[0] = np.inf
    change = result[1:]
    np.subtract(values[1:], values[:-1], out=change)
    if not rising:
        np.abs(change, out=change)
    change[~(change > 1e-9)] = np.inf  # NaN and changes too small to be a step; an infinite one stays infinite
    np.minimum.accumulate(change, out=change)
    return result


class FrozenSensorRule:
    """A sensor repeating the exact same value for longer than its own past and the physics allow.

    A 0/1 sensor (occupancy) is frozen when it keeps its value across
    ``frozen_transitions`` changes of the building's schedule.

    An analog sensor is frozen once a constant run lasts longer than both the
    quantity's limit in ``frozen_after`` and ``frozen_run_factor`` times the
    ``frozen_run_quantile`` of the sensor's own constant runs that ended in
    the ``frozen_reference_days`` before the run began (a thermometer with
    0.5 °C steps in a massive church legitimately holds one value for a day;
    with fewer than ``frozen_min_runs`` such runs the rule waits), and only
    while the physics says it should have moved since the run began: the
    building's schedule changed, another sensor of the same quantity in the
    building moved by two of this sensor's steps (its quantisation, the
    smallest change seen in its readings), or, for a temperature, the outdoor
    mean of the last 24 h moved by ``step / frozen_min_coupling``. Counters
    are :class:`StaleCounterRule`'s.

    Lookback: ``frozen_reference_days`` (28) days before the current run, and the run.
    """

    name = "frozen_sensor"

    def evaluate(
        self,
        building: Building,
        point: Point,
        series: PointSeries,
        frame: HourlyFrame,
        open_frac: FloatArray,
        config: RulesConfig,
        *,
        outdoor_c: FloatArray | None = None,
        planned_closure_h: IntArray | None = None,
        memo: RuleMemo | None = None,
    ) -> Finding | None:
        """Runs of identical readings that the sensor's past and the physics do not explain."""
        if point.cumulative:
            return None
        limit = config.frozen_after.get(point.quantity.value)
        binary = point.quantity in {Quantity.OCCUPANCY, Quantity.STATE}
        if limit is None and not binary:
            return None
        n = frame.hours
        times = frame.times_s
        state = np.where(np.isfinite(frame.mean.get(point.id, _nan(n))), 0.0, np.nan)
        origin = np.full(n, -1, dtype=np.int64)
        value_at = _nan(n)
        usual_at = _nan(n)
        t, v = series.times_s, series.values
        if t.size < 2:
            return None
        # A 0/1 sensor's runs are judged on the schedule's changes alone: no step (never read for one).
        step = np.empty(0) if binary else _quantisation_step(v)
        # The schedule's changes and the weather: the building's, the same for each of its sensors (computed once).
        changes = _per_building("frozen_sensor", (n, open_frac), lambda: _schedule_changes(n, open_frac))
        change_at, to_open, flips = changes["change_at"], changes["to_open"], changes["flips"]
        out24 = None
        if outdoor_c is not None and point.quantity is Quantity.TEMPERATURE:
            out24 = _per_building("frozen_sensor_weather", (outdoor_c,),
                                  lambda: {"out24": _trailing_mean(outdoor_c, 24)})["out24"]
        peers = [
            frame.mean[p.id] for p in building.points
            if p.id != point.id and p.quantity is point.quantity and p.usage is not Usage.WEATHER and p.id in frame.mean
        ]
        held = _Thermostat.of(building, point, frame, out24, change_at, to_open) if _indoor_sensor(point) else None
        args = _FrozenArgs(t, v, step, limit, binary, flips, out24, peers, held, frame.start_s, n)
        band_args = replace(args, band=True)
        # Per reading after the first, whether it continues the run of the one before: the same value.
        self._runs(v[1:] == v[:-1], args, config, state, origin, value_at, usual_at)
        if not binary and limit is not None:
            # A dead probe reads a constant plus its converter's noise: quantised, it dithers between two adjacent
            # steps and no single value lasts (issue 11: a church sensor at 6.0/6.5 °C for two weeks). Runs within
            # one step are found on two grids of two-step cells offset by one step: two adjacent steps share a
            # cell of one of them. The step is infinite until the first change, finite after (a running minimum):
            # the levels are computed from there on, in place.
            known = int(np.argmax(np.isfinite(step))) if math.isfinite(step[-1]) else step.size
            level = _nan(v.size)
            np.round(v[known:] / step[known:], out=level[known:])
            # A gap ends such a run: hours not read are no hours read within one step (a gap is missing_data's).
            unbroken = (step[1:] == step[:-1]) & ((t[1:] - t[:-1]) <= _BAND_GAP_S)
            for offset in (0.5, -0.5):
                cell = level + offset
                cell /= 2.0
                np.floor(cell, out=cell)
                within = cell[1:] == cell[:-1]
                within &= np.isfinite(cell[1:])
                within &= unbroken
                self._runs(within, band_args, config, state, origin, value_at, usual_at)
        hours = np.where(state == 1.0, (times + 3600.0 - (frame.start_s + 3600.0 * origin)) / 3600.0, np.nan)
        facts = {"hours": hours, "value": value_at}
        if np.isfinite(usual_at).any():
            facts["usual_run_h"] = usual_at
        return _quality(self.name, EventKind.FROZEN_SENSOR, building, point, state, origin, facts=facts)

    @classmethod
    def _runs(
        cls, within: BoolArray, a: _FrozenArgs, config: RulesConfig, state: FloatArray, origin: IntArray,
        value_at: FloatArray, usual_at: FloatArray,
    ) -> None:
        """Flag, in place, the runs that last too long while they should move.

        ``within`` says, for each reading after the first, whether it continues the run of the one before.
        """
        t, v, n = a.t, a.v, a.n
        ref_s = 86_400.0 * config.frozen_reference_days
        # Only runs of two readings or more within the frame, and for an analog sensor only those longer than
        # the quantity's limit, can be frozen: the others (nearly all the runs of a noisy sensor) are left out
        # at once rather than one by one, so the loop's cost follows the long runs, not the readings.
        long_starts, long_ends = _long_runs(within)
        if long_starts.size == 0:
            return
        first_t, last_t = t[long_starts], t[long_ends]
        candidate = (last_t >= a.start_s) & (first_t < a.start_s + 3600.0 * n)
        if not a.binary:
            assert a.limit is not None  # noqa: S101 - checked by the caller
            candidate &= (last_t - first_t) >= a.limit.total_seconds()
        else:
            # A 0/1 sensor's run is frozen only if the schedule changed often enough strictly inside it: the
            # count of changes only grows, so its total over the run tells at once.
            lo_h = np.clip((first_t - a.start_s) // 3600.0, 0, None).astype(np.int64) + 1
            hi_h = np.minimum(n - 1, (last_t - a.start_s) // 3600.0).astype(np.int64) - 1
            inside = candidate & (hi_h > lo_h)
            candidate = inside.copy()
            candidate[inside] = a.flips[hi_h[inside]] - a.flips[lo_h[inside]] >= config.frozen_transitions
        if not candidate.any():
            return  # nearly always: the run lengths below are for the candidates' usual run
        starts = np.flatnonzero(np.concatenate([[True], ~within]))
        ends = np.concatenate([starts[1:], [t.size]]) - 1
        chosen = np.searchsorted(starts, long_starts[candidate]).tolist()
        # A run lasts until the first reading of the next value; the last run is still going on.
        run_end_t = np.concatenate([t[starts[1:]], [np.inf]])
        run_len_h = (run_end_t - t[starts]) / 3600.0
        for i in chosen:
            s, e = int(starts[i]), int(ends[i])
            t0, t1 = float(t[s]), float(t[e])
            h0 = int((t0 - a.start_s) // 3600.0)
            h1 = min(n - 1, int((t1 - a.start_s) // 3600.0))
            if h1 < 0 or h0 >= n:
                continue
            if a.binary:
                # Changes strictly inside the run: the sensor rightly changes in the hour the schedule does.
                lo, hi = max(h0, 0) + 1, h1 - 1
                if hi <= lo:
                    continue
                seen = a.flips[lo: hi + 1] - a.flips[lo]
                frozen = np.flatnonzero(seen >= config.frozen_transitions)
                if frozen.size == 0:
                    continue
                first = lo + int(frozen[0])
            else:
                assert a.limit is not None  # noqa: S101 - checked by the caller
                if t1 - t0 < a.limit.total_seconds():
                    continue
                # The sensor's usual run length: its runs that ended before this one began (the runs end in
                # time order: those of the reference period are a slice of them).
                past_lo = int(np.searchsorted(run_end_t[:i], t0 - ref_s, side="right"))
                past_hi = int(np.searchsorted(run_end_t[:i], t0, side="right"))
                if past_hi - past_lo < config.frozen_min_runs or (a.band and t0 - float(t[0]) < ref_s):
                    continue
                usual_h = float(np.quantile(run_len_h[past_lo:past_hi], config.frozen_run_quantile))
                allowed_s = max(a.limit.total_seconds(), config.frozen_run_factor * usual_h * 3600.0)
                if t1 - t0 < allowed_s:
                    continue
                lo = max(h0, 0)
                should = cls._should_move(lo, h1, float(a.step[s]), float(v[s]), a, config)
                late = max(0, int((t0 + allowed_s - a.start_s) // 3600.0))
                moving = np.flatnonzero(should[max(late - lo, 0):])
                if moving.size == 0:
                    continue
                first = max(late, lo) + int(moving[0])
                usual_at[first: h1 + 1] = np.fmax(usual_at[first: h1 + 1], usual_h)
            fresh = state[first: h1 + 1] != 1.0
            origin[first: h1 + 1] = np.where(fresh, max(h0, 0), np.minimum(origin[first: h1 + 1], max(h0, 0)))
            value_at[first: h1 + 1] = np.where(fresh, float(v[s]), value_at[first: h1 + 1])
            state[first: h1 + 1] = 1.0

    @staticmethod
    def _should_move(lo: int, hi: int, step: float, value: float, a: _FrozenArgs, config: RulesConfig) -> BoolArray:
        """Per hour ``lo..hi``, whether something since ``lo`` should have moved the sensor reading ``value`` (cumulative).

        A room a thermostat holds at one of its declared setpoints (:class:`_Thermostat`) is not moved by the
        weather, nor by a change of schedule to a state whose setpoint it already reads.
        """
        counted = a.flips[lo: hi + 1] - a.flips[lo]
        held = a.held.at(lo, hi, step, value) if a.held is not None else None
        # A run within one step may wander by that step: moving it out takes a step more.
        width = 2.0 * step if a.band else step
        if held is not None:
            kept = np.where(held.flip_counts, held.change_at, 0.0)
            counted = np.cumsum(kept) - kept[0]
        should = counted >= 1
        if a.out24 is not None and math.isfinite(step):
            seg = a.out24[lo: hi + 1]
            base = seg[np.isfinite(seg)]
            if base.size:
                moved = np.maximum.accumulate(np.abs(np.nan_to_num(seg, nan=float(base[0])) - float(base[0])))
                by_weather = moved >= width / config.frozen_min_coupling
                if held is not None:
                    by_weather &= ~held.by_thermostat
                should |= by_weather
        for peer in a.peers:
            seg = peer[lo: hi + 1]
            known = np.isfinite(seg)
            if not known.any():
                continue
            top = np.maximum.accumulate(np.where(known, seg, -np.inf))
            bottom = np.minimum.accumulate(np.where(known, seg, np.inf))
            # Without a learnt step, any move of a peer counts.
            need = step + width if math.isfinite(step) else 0.0
            should |= (top - bottom) > need
        result: BoolArray = np.maximum.accumulate(should) if should.size else should
        return result


@dataclass(frozen=True)
class _FrozenArgs:
    """What :meth:`FrozenSensorRule._runs` needs of a sensor and its building."""

    t: FloatArray
    v: FloatArray
    step: FloatArray
    limit: timedelta | None
    binary: bool
    flips: FloatArray
    out24: FloatArray | None
    peers: list[FloatArray]
    held: _Thermostat | None
    start_s: float
    n: int
    band: bool = False


@dataclass(frozen=True)
class _Held:
    by_thermostat: BoolArray
    flip_counts: BoolArray
    change_at: FloatArray


_BAND_GAP_S = 3600.0
"""Longest interval between readings within one run of a sensor's readings within one step."""
_HELD_TOLERANCE_K = 0.7
"""A room within this (plus the sensor's step) of a setpoint may be held there by its thermostat."""


@dataclass(frozen=True)
class _Thermostat:
    """The declared setpoints a thermostat holds an indoor sensor's room at, hour by hour.

    In its heating season and with the weather colder than the room, a room held at a setpoint reads it
    whatever the weather does (issue 11: a church held at frost protection for days, a constant 6.5 °C, was
    taken for a frozen sensor as the weather changed); a change of schedule moves it only to a setpoint it
    does not already read (a room pre-heated to comfort stays there when the doors open).
    """

    heated: BoolArray
    out24: FloatArray | None
    change_at: FloatArray
    to_open: BoolArray
    occupied_c: float
    closed_c: tuple[float, ...]

    @classmethod
    def of(
        cls, building: Building, point: Point, frame: HourlyFrame, out24: FloatArray | None, change_at: FloatArray,
        to_open: BoolArray,
    ) -> _Thermostat:
        comfort = building.comfort(point.zone)
        heated = _per_building("frozen_sensor_season", (building, frame.start_s, frame.hours),
                               lambda: {"heated": _in_season(building, frame.times_s)})["heated"]
        return cls(heated, out24, change_at, to_open, comfort.setpoint_c, (comfort.setback_c, comfort.weekend_c, comfort.frost_c))

    def at(self, lo: int, hi: int, step: float, value: float) -> _Held:
        """Hours ``lo..hi`` a thermostat may hold ``value``, and the schedule changes that should still move it."""
        tol = _HELD_TOLERANCE_K + (step if math.isfinite(step) else 0.0)
        near_open = abs(value - self.occupied_c) <= tol
        near_closed = min(abs(value - c) for c in self.closed_c) <= tol
        heated = self.heated[lo: hi + 1].copy()
        if self.out24 is not None:
            # Heating holds a room only from below: weather warmer than the room moves it.
            heated &= ~(self.out24[lo: hi + 1] >= value)
        to_open = self.to_open[lo: hi + 1]
        already = heated & np.where(to_open, near_open, near_closed)
        return _Held(heated & (near_open or near_closed), ~already, self.change_at[lo: hi + 1])


def _long_runs(within: BoolArray) -> tuple[IntArray, IntArray]:
    """The first and last reading of each run of two readings or more (``within[k]``: reading k + 1 continues k's run).

    Found from the readings that continue the one before alone (a noisy sensor has few), rather than from every
    run's start and end (:meth:`FrozenSensorRule._runs` did so for every reading of every sensor, each pass).
    """
    held = np.flatnonzero(within)
    if held.size == 0:
        return held, held
    cut = np.flatnonzero(np.diff(held) > 1)
    return np.concatenate([held[:1], held[cut + 1]]), np.concatenate([held[cut], held[-1:]]) + 1


def _schedule_changes(n: int, open_frac: FloatArray) -> dict[str, npt.NDArray[Any]]:
    """Per hour, whether the schedule changed, whether to open, and the changes so far.

    Only changes between hours fully open and fully closed count; a half-open hour says nothing.
    """
    definite = np.flatnonzero((open_frac == 0.0) | (open_frac == 1.0))
    change_at = np.zeros(n)
    to_open = np.zeros(n, dtype=np.bool_)
    if definite.size > 1:
        moved = open_frac[definite][1:] != open_frac[definite][:-1]
        change_at[definite[1:][moved]] = 1.0
        to_open[definite[1:][moved]] = open_frac[definite[1:][moved]] == 1.0
    return {"change_at": change_at, "to_open": to_open, "flips": np.cumsum(change_at)}


def _serves_heating(point: Point) -> bool:
    """A counter whose consumption stops when heating is off: a heating meter, or a main gas or heat meter."""
    return point.usage is Usage.HEATING or Usage.HEATING in point.serves or (
        point.usage is Usage.GENERAL and point.quantity in {Quantity.GAS_VOLUME, Quantity.HEAT_ENERGY}
    )


def _in_season(building: Building, times_s: FloatArray) -> BoolArray:
    """Hours inside the building's declared heating season (all hours without one); days are UTC days."""
    season = building.heating_season
    if season is None:
        return np.ones(times_s.size, dtype=np.bool_)
    days, day_of_hour = np.unique(np.floor(times_s / 86_400.0).astype(np.int64), return_inverse=True)
    inside = np.array([season.contains(date.fromordinal(d + _EPOCH_ORDINAL)) for d in days.tolist()], dtype=np.bool_)
    result: BoolArray = inside[day_of_hour]
    return result


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_TEMPERATURE_BANDS = (3.0, 6.0, 9.0, 11.0, 13.0)
"""Edges (°C, mean of the last 6 h) of the weather classes in which a heating counter learns how often it stands still."""
_THERMOSTAT_H = 6
"""Hours of outdoor temperature a heating thermostat responds to (the building's inertia)."""


def _trailing_mean(values: FloatArray, window: int) -> FloatArray:
    """Mean of the known values over the last ``window`` hours (included), ``nan`` with fewer than half known."""
    known = np.isfinite(values)
    sums = np.convolve(np.where(known, values, 0.0), np.ones(window))[: values.size]
    counts = np.convolve(known.astype(np.float64), np.ones(window))[: values.size]
    result: FloatArray = np.where(counts >= window / 2, sums / np.maximum(counts, 1.0), np.nan)
    return result


def _earlier_counts(classes: IntArray, mask: BoolArray | FloatArray) -> FloatArray:
    """Per hour, how many earlier hours of the same class have ``mask`` true (the hour itself excluded).

    With a float ``mask``, the sum of its values over those hours.
    """
    order = np.argsort(classes, kind="stable")
    sorted_mask = mask[order].astype(np.float64)
    running = np.cumsum(sorted_mask) - sorted_mask
    sorted_classes = classes[order]
    # Restart the running count at the first hour of each class.
    first = np.concatenate([[True], sorted_classes[1:] != sorted_classes[:-1]])
    running -= np.maximum.accumulate(np.where(first, running, 0.0))
    result: FloatArray = np.empty(classes.size)
    result[order] = running
    return result


_LONG_CLOSURE_H = 24
"""Hours closed after which a closure is not a night: weekend, holidays (frost protection)."""


def _counter_step(series: PointSeries, times: FloatArray) -> FloatArray:
    """Per hour, the counter's step (its index resolution) learnt from its readings up to the hour's end."""
    per_reading = _quantisation_step(series.values, rising=True)
    idx = np.searchsorted(series.times_s, times + 3600.0, side="right") - 1
    result: FloatArray = np.where(idx >= 0, per_reading[np.clip(idx, 0, None)] if per_reading.size else np.inf, np.inf)
    return result


_PRIOR_H = 24.0
"""Weight (hours) of the even-odds prior on a class's chance of a still hour."""
_COOL_DOWN_H = 48
"""Hours of closure after which a building has cooled to frost protection (Art. R241-26: closures past 48 h)."""


_REFERENCE_SETPOINT_C = 19.0
"""Occupied setpoint (°C) at which ``heating_off_above_c`` is the balance point: R241-26's, an undeclared setpoint's."""


def _heating_weather(hours: BuildingHours, config: RulesConfig) -> BoolArray:
    """Hours a heater can be what holds the building warm: the last 24 h below its balance point.

    The balance point is ``heating_off_above_c`` for a building held at 19 °C, higher by as many kelvin
    as its occupied setpoint is higher (a pool hall at 27 °C needs heat up to about 23 °C outdoors).
    Hours without a known outdoor temperature count as heating weather.
    """
    outdoor = hours.outdoor_c
    n = hours.frame.hours
    if outdoor is None or not np.isfinite(outdoor).any():
        return np.ones(n, dtype=np.bool_)
    warm: BoolArray = _trailing_mean(outdoor, 24) >= _balance_point_c(hours, config)  # nan compares False
    return ~warm


def _balance_point_c(hours: BuildingHours, config: RulesConfig) -> float:
    """The outdoor temperature (°C) above which the building held at its occupied setpoint needs no heat."""
    return config.heating_off_above_c + max(0.0, hours.building.heating_setpoint_occupied_c - _REFERENCE_SETPOINT_C)


def _cold_hours(hours: BuildingHours, config: RulesConfig) -> BoolArray:
    """Hours whose last 6 h were clearly below the building's balance point (by ``heating_restart_margin_c``).

    A warm day's mean says nothing of its night: after a 23 °C afternoon, a night at 9 °C needs heat to hold
    a room at 19 °C. Unknown weather: none.
    """
    outdoor = hours.outdoor_c
    if outdoor is None:
        return np.zeros(hours.frame.hours, dtype=np.bool_)
    below = _balance_point_c(hours, config) - config.heating_restart_margin_c
    result: BoolArray = _trailing_mean(outdoor, _THERMOSTAT_H) < below  # nan compares False
    return result


def _heat_demand(
    building: Building,
    times: FloatArray,
    open_frac: FloatArray,
    closed_since: IntArray,
    outdoor_c: FloatArray | None,
    config: RulesConfig,
) -> tuple[BoolArray, BoolArray, BoolArray]:
    """Hours of clear heat demand, hours heating is off, and hours cold enough to restart it.

    A building held at setpoint ``s`` needs heat below a balance point: ``heating_off_above_c`` for a building
    held at 19 °C, lower by as many kelvin as the setpoint held is lower (heat losses follow indoor minus
    outdoor; gains stay): lower for an occupied setpoint below 19 °C (a gymnasium held at 15 °C needs no heat
    on mild days a 19 °C building still heats), then for the setback or closure. The setpoint held is the
    occupied one while open, the setback at night, the weekend setpoint through the first 48 h of a longer
    closure and frost protection after. Demand is clear when both the last 24 h and the last 6 h (a mild,
    sunny afternoon stops the burner) are ``heating_restart_margin_c`` below that balance point, inside the
    declared ``heating_season``. Heating is off (switched off, or idle) where demand is not clear; heating
    switched off is switched on again once the last 72 h are clearly below the balance point.

    Without an outdoor temperature, every in-season hour is demand.
    """
    season = _in_season(building, times)
    if outdoor_c is None:
        return season, ~season, np.ones(times.size, dtype=np.bool_)
    occupied = building.heating_setpoint_occupied_c
    setback = building.heating_setpoint_unoccupied_c
    weekend = building.heating_setpoint_weekend_c if building.heating_setpoint_weekend_c is not None else setback
    held = np.where(
        open_frac > 0.0, occupied,
        np.where(closed_since < _LONG_CLOSURE_H, setback,
                 np.where(closed_since < _COOL_DOWN_H, weekend, building.heating_frost_protection_c)),
    )
    # Issue 11: a hall held at 15 °C judged against a 19 °C building's balance point had its meter "stuck" on
    # mild spring days. A setpoint above 19 °C keeps the usual cut-off (a pool's meter also heats its water).
    balance = config.heating_off_above_c - max(0.0, _REFERENCE_SETPOINT_C - occupied)
    below = balance - np.maximum(0.0, occupied - held) - config.heating_restart_margin_c
    mean24 = _trailing_mean(outdoor_c, 24)
    mean6 = _trailing_mean(outdoor_c, _THERMOSTAT_H)
    mean72 = _trailing_mean(outdoor_c, 72)
    demand: BoolArray = season & (mean24 < below) & (mean6 < below)
    cold: BoolArray = mean72 < below
    return demand, ~demand, cold


class StaleCounterRule:
    """A counter standing still while its own history says it should move.

    For each hour of the week (open hours) or kind of closure (nights, and
    closures past 24 h: weekends, holidays), the counter's history *before*
    the hour gives the chance of a still hour (smoothed, running counts: the
    rule never learns from later hours) and the usual consumption rate. The
    index moves by whole steps (its resolution: the smallest rise seen in its
    readings so far, 1 m3 of gas, a pulse weight, 0.1 MWh), so each still
    hour adds the smaller of its surprise and the steps the usual rate would
    have made in it (no step in an hour with a Poisson rate of ``r`` steps has
    probability ``exp(-r)``): a coarse counter at low load is not stuck until
    it should have made about ten steps. A run of still hours is stuck once it is less
    likely than ``stale_counter_surprise``: an electricity meter that never
    stops is stuck after two or three hours, a water meter still every night
    only when it stands still through hours it always moves in. The hour
    after the run (the catch-up jump) is flagged too, so other rules skip it.

    The catch-up is evidence of its own: a counter still for at least three
    hours whose next hour counts more than 1.5 times its largest hour before
    the run (two weeks of past at least; no meter draws more than its
    installed power) was stuck, and the jump is what it should have counted
    meanwhile. That hour is flagged, the event dating from the run's start,
    whatever the surprise (a gas counter stuck over a weekend closure, when
    heating is not expected to run).

    A counter serving heating (:func:`_serves_heating`) is expected to stand
    still whenever heat demand is not clear (:func:`_heat_demand`): the
    balance point is ``heating_off_above_c`` for a building held at 19 °C
    (lower by as many kelvin as a declared occupied setpoint is lower), lower
    by as many kelvin as the setpoint held then (setback, weekend, frost
    protection past 48 h of closure) is lower, and demand is clear only when
    the last 24 h and the last 6 h (a mild, sunny afternoon stops the burner)
    are ``heating_restart_margin_c`` below it, inside the declared
    ``heating_season``. Other hours add no surprise and are left out of its
    history, which it learns per weather band (mean of the last 6 h) and kind
    of closure rather than per hour of the week, with an even-odds prior
    worth a day of hours (a band seen a few hours is not confident). A run
    that began while heating was off (mild or warm weather: also a seasonal
    switch-off nobody declared) adds surprise only once the last 72 h are
    clearly below the balance point: until then heating not yet switched back
    on is the likelier story. A run that began in a closure (the heater
    coasts down to the lower setpoint, possibly all closure long) adds
    surprise only in open hours, or past 48 h of closure when the weather is
    cold enough for frost protection.

    Lookback: the counter's whole past (running counts, kept as state), and
    the current still run.
    """

    name = "stale_counter"

    def evaluate(
        self,
        building: Building,
        point: Point,
        series: PointSeries,
        frame: HourlyFrame,
        open_frac: FloatArray,
        config: RulesConfig,
        *,
        outdoor_c: FloatArray | None = None,
        planned_closure_h: IntArray | None = None,
        memo: RuleMemo | None = None,
    ) -> Finding | None:
        """Runs of still hours of a counter, with the catch-up hour.

        Args:
            building: the building.
            point: the counter.
            series: its readings.
            frame: the hourly frame.
            open_frac: fraction of each hour the building is open.
            config: thresholds.
            outdoor_c: outdoor temperature per hour (``nan`` unknown); without it heating is always expected.
            planned_closure_h: not used by this rule.
            memo: not used by this rule (it judges every hour of the frame).

        Returns:
            The finding, or ``None`` for a point that is not a counter.
        """
        if not point.cumulative or point.id not in frame.consumption:
            return None
        cons = frame.consumption[point.id]
        n = cons.size
        times = frame.times_s
        # Open hours are compared hour of the week by hour of the week; closed hours form two classes,
        # nights (closed under 24 h: setback) and longer closures (weekends, holidays: frost protection),
        # where a still water meter is the rule.
        closed_since, _ = _runs(open_frac == 0.0)
        closure = np.where(open_frac > 0.0, 1, np.where(closed_since < _LONG_CLOSURE_H, 0, 2))
        how = np.where(open_frac > 0.0, (np.floor(times / 3600.0).astype(np.int64) + 72) % 168, 168 + closure // 2)
        known = np.isfinite(cons)
        still = known & (cons == 0.0)
        expected = np.ones(n, dtype=np.bool_)
        switched_off = np.zeros(n, dtype=np.bool_)
        cold = np.ones(n, dtype=np.bool_)
        heating = _serves_heating(point)
        if heating:
            # Issue 11: heat meters standing still without heat demand were most false alerts.
            expected, switched_off, cold = _heat_demand(building, times, open_frac, closed_since, outdoor_c, config)
            if outdoor_c is not None:
                # A heating counter's stillness follows the weather more than the hour of the week.
                mean6 = _trailing_mean(outdoor_c, _THERMOSTAT_H)
                band = np.digitize(np.nan_to_num(mean6, nan=99.0), _TEMPERATURE_BANDS)
                how = closure * 10 + band
        counted = known & expected
        zeros = _earlier_counts(how, still & counted)
        total = _earlier_counts(how, counted)
        # A class seen for few hours says little. A heating counter's weather classes fill by season
        # (a mild band seen a few winter hours, then all spring): its even-odds prior weighs a day of
        # hours. Other counters keep one hour a side (their classes fill a week at a time).
        prior = _PRIOR_H if heating else 2.0
        p_still = (zeros + 0.5 * prior) / (total + prior)
        # The index moves by whole steps (1 m3 of gas, a pulse, 0.1 MWh): at the usual rate of the
        # hour's class, a still hour is as likely as no step in it (Poisson), whatever the still
        # frequency says; a coarse counter at low load stands still for hours.
        step = _counter_step(series, times)
        rate = _earlier_counts(how, np.where(counted, cons, 0.0)) / np.maximum(total, 1.0)
        steps = np.where((total > 0) & np.isfinite(step), rate / step, np.inf)
        # Only hours in which the counter usually moves add to the surprise: weeks of still
        # hours where stillness is common (a school in summer) must not add up to an alert.
        cost = np.where(expected & (p_still < 0.5), np.minimum(-np.log(p_still), steps), 0.0)
        limit = -math.log(config.stale_counter_surprise)
        state = np.where(known, 0.0, np.nan)
        origin = np.full(n, -1, dtype=np.int64)
        is_open = open_frac > 0.0
        # The most the counter ever counted in one hour before each hour (its installed power, in practice).
        peak = _running_peak(cons, known)
        h = 0
        while h < n:
            if not still[h]:
                h += 1
                continue
            start = h
            surprise = 0.0
            stuck_from = -1
            # The last hour the counter moved tells whether heating was off then (no clear demand).
            off_at_start = bool(switched_off[start - 1]) if start > 0 else bool(switched_off[start])
            # A heater stops when the building closes: it coasts down to the setback or frost protection
            # (the cool-down) and may stay off all closure long. Only open hours, or hours of a
            # closure past the cool-down in weather cold enough for frost protection, tell a stuck counter.
            closed_at_start = heating and not bool(is_open[start])
            while h < n and (still[h] or not known[h]):
                counts = still[h] and (not off_at_start or cold[h])
                if counts and closed_at_start and not is_open[h]:
                    counts = bool(closed_since[h] >= _COOL_DOWN_H)
                if counts:
                    surprise += float(cost[h])
                if stuck_from < 0 and surprise >= limit:
                    stuck_from = h
                h += 1
            if stuck_from >= 0:
                state[stuck_from:h] = 1.0
                origin[start:h] = start
                if h < n:
                    state[h] = 1.0  # the catch-up jump
                    origin[h] = start
            elif h < n and h - start >= _CATCH_UP_MIN_RUN_H and still[h - 1] and known[h] and (
                cons[h] > _CATCH_UP_FACTOR * peak[start]
            ):
                # No hour draws more than the installed power: a jump far above any hour of the counter's past,
                # right after it stood still, is what it should have counted meanwhile. The index was stuck
                # (a frozen register, a gateway repeating its last value), whatever the heat demand said.
                state[h] = 1.0
                origin[start : h + 1] = start
                peak = _running_peak(cons, known & (state != 1.0))
        return _quality(self.name, EventKind.STALE_COUNTER, building, point, state, origin)


_CATCH_UP_FACTOR = 1.5
"""A first hour after a still run counting this many times the counter's largest hour before the run is a catch-up."""
_CATCH_UP_MIN_RUN_H = 3
"""Still hours before a catch-up jump that make a stuck index (a shorter pause is a burner cycling, a meter's step)."""
_CATCH_UP_HISTORY_H = 14 * 24
"""Known hours of a counter's past before its largest hour stands for its installed power."""


def _running_peak(cons: FloatArray, known: BoolArray) -> FloatArray:
    """Per hour, the largest consumption of the known hours strictly before it; ``inf`` with a short past."""
    values = np.where(known, cons, -np.inf)
    before = np.concatenate([[-np.inf], np.maximum.accumulate(values)[:-1]]) if values.size else values
    seen = np.concatenate([[0], np.cumsum(known)[:-1]]) if values.size else np.zeros(0)
    result: FloatArray = np.where(seen >= _CATCH_UP_HISTORY_H, before, np.inf)
    return result


class UnoccupiedConsumptionRule:
    """Consumption out of hours on a main meter, for buildings without the sensors of the other rules.

    Runs on the heating meter of a building without indoor temperature, and
    on the general meter (electricity, or a main gas meter) of a building
    with neither a heating nor a lighting sub-meter. It judges **closures**,
    not hours: a closure (a night, a weekend, a holiday) is cut in pieces of
    at most 24 h from its start, and each piece is compared, as it goes, with
    what earlier closures of the same kind took in the same weather. Single
    closed hours say little: a building set back on a cold night may draw
    what it draws open (occupants and lights heat it then), and a thermostat
    cycles.

    The closed hours (outside the pre-heating allowance and the overrun and
    recovery learnt from the building's past, as for heating) of the
    ``consumption_reference_days`` days before a day, flagged hours left out,
    are fitted as ``level[kind] + slope * degree_hours``: the degree-hours
    below 16 °C of the last 24 h mean outdoor temperature (a building's mass
    follows the last day's weather), one slope for the building (its heat
    loss per kelvin, ``UA``) and one level per kind of closure, whose
    setpoint differs: a night (under 24 h) at the setback, a closed day at
    the weekend setpoint, a long closure (``long_closure``, holidays) at
    frost protection where declared (:func:`_closure_setpoint`). A kind not
    seen in the reference days (holidays come a few times a year) takes its
    level from the ``consumption_history_days`` before; a kind never seen
    borrows the level of a shorter closure, whose setpoint is at least as high.

    A piece of closure counts, from its sixth judged hour, when its mean
    consumption so far exceeds what comparable closures took by more than
    both:

    * ``consumption_comfort_share`` of what holding the occupied setpoint
      instead of the closure's would add: ``slope * (occupied - closure
      setpoint)``, heat losses being proportional to indoor minus outdoor
      temperature (heating kept at comfort, not a cold night);
    * ``consumption_noise_z`` robust standard deviations of the earlier
      pieces' own excess (their spread around the fit).

    Open hours are unknown: heating kept on every night of a week, or through
    two weeks of holidays, is one episode (it resolves after
    ``daily_clear_after`` of closures consuming as usual).

    Lookback: ``consumption_reference_days`` days (28); ``consumption_history_days``
    (365) for the level of a kind of closure not seen in them.
    """

    name = "consumption_unoccupied"

    def evaluate(
        self, hours: BuildingHours, config: RulesConfig, earlier: Sequence[Finding], *, memo: RuleMemo | None = None
    ) -> list[Finding]:
        """Closures consuming clearly more than comparable earlier closures."""
        series: list[UsageSeries] = []
        if Usage.HEATING in hours.usages and not np.isfinite(hours.indoor_c).any():
            series.append(hours.usages[Usage.HEATING])
        if Usage.GENERAL in hours.usages and Usage.HEATING not in hours.usages and Usage.LIGHTING not in hours.usages:
            series.append(hours.usages[Usage.GENERAL])
        return [self._one(hours, s, config, memo) for s in series]

    def _one(self, hours: BuildingHours, series: UsageSeries, config: RulesConfig, memo: RuleMemo | None) -> Finding:
        y = series.values
        n = y.size
        day = hours.local_day
        closed_all = hours.open_frac == 0.0
        kind, held = _closure_kinds(hours, config)
        x = np.maximum(0.0, _HDH_BASE_C - _trailing_mean(hours.outdoor_c, _INERTIA_H))
        site = (hours.building.id, "unoccupied", series.usage.value)
        floor = _causal_pct(y, closed_all, day, 10, config.consumption_reference_days, memo=memo, site=(*site, "floor"))
        scale = _causal_pct(y, np.ones(n, dtype=np.bool_), day, 99, 365, memo=memo, site=(*site, "top"))
        running = np.isfinite(y) & np.isfinite(floor) & (y > floor + _RUNNING_SHARE * scale)
        judged = hours.closed & ~_cooling_down(hours, running, config) & np.isfinite(y) & np.isfinite(x)
        # The first hour a counter is read again after a gap holds all the gap used: not that hour's consumption.
        judged &= np.concatenate([[True], np.isfinite(y[:-1])]) if n else judged
        # After a long closure (cooled to frost protection) the building's mass recharges over the days that follow,
        # as long as it took to cool down: the first closures after reopening draw more heat than usual ones.
        # Only a long closure held colder than the nights (frost protection) leaves anything to store back.
        if held[2] < held[0]:
            judged &= ~_recharging(closed_all, int(config.long_closure / timedelta(hours=1)))
        comfort_c = _comfort(hours).setpoint_c
        since, _ = _runs(closed_all)
        closure = np.cumsum(closed_all & (since == 0))
        piece = np.cumsum(closed_all & (since % 24 == 0))  # a closure cut in pieces of at most 24 h
        # Heating is on in the declared season, while the last day was colder than the heating cut-off.
        mean24 = _trailing_mean(hours.outdoor_c, 24)
        regime = _in_season(hours.building, hours.frame.times_s) & (mean24 < config.heating_off_above_c)
        # A closure held below the occupied setpoint heats only below its own, lower cut-off: a closure of the
        # heating regime above it (a mild autumn weekend) may not heat at all, so it tells nothing of a heated one.
        heated_alike = ~regime | (mean24 < _closure_cutoff_c(held, config)[kind])
        state = _nan(n)
        expected = _nan(n)
        flagged = np.zeros(n, dtype=np.bool_)
        sums: dict[int, list[float]] = {}  # per piece: judged hours, consumption, expected, margin
        for d in np.unique(day[judged]).tolist():
            lo, hi = _day_bounds(day, d - config.consumption_reference_days, d)
            a, b = _day_bounds(day, d, d + 1)
            if hi - lo < 24 * _MIN_DAYS:
                continue
            first, _ = _day_bounds(day, d - config.consumption_history_days, d)
            usual = _nan(b - a)
            margin = _nan(b - a)
            typical: dict[int, tuple[FloatArray, FloatArray]] = {}  # per regime: earlier pieces' centre and spread
            regime_of = np.zeros(b - a, dtype=np.int64)
            for r in np.unique(regime[a:b][judged[a:b]]).tolist():
                # Heating on and heating off are not comparable: closures are judged against closures of their regime.
                comparable = judged & ~flagged & (regime == r) & heated_alike
                ref = comparable[lo:hi]
                if ref.sum() < _MIN_KIND_H:
                    continue
                # The heat-loss slope from nights and closed days, frequent and steady; a holiday is one long piece.
                # Heating adds to what a closed building draws anyway: no closure is expected below the base load of
                # the comparable closures (a line through cold nights runs below it in mild ones, unheated at setback).
                base = max(0.0, float(np.percentile(y[lo:hi][ref], 10)))
                steady = ref & (kind[lo:hi] < 2)
                slope = _shared_slope(x[lo:hi][steady], y[lo:hi][steady], kind[lo:hi][steady])
                today = judged[a:b] & (regime[a:b] == r)
                weather = float(x[a:b][today].mean())
                levels = _kind_levels(x[first:hi], y[first:hi], kind[first:hi], comparable[first:hi], lo - first, slope,
                                      weather)
                centre, spread = _piece_spread(x[lo:hi], y[lo:hi], kind[lo:hi], piece[lo:hi], ref, levels, slope,
                                               base)
                if not np.isfinite(spread).any():
                    continue
                typical[int(r)] = centre, spread
                # Weather colder than any reference closure (the first cold days of autumn) is not extrapolated to.
                coldest = float(x[lo:hi][ref].max()) + _WEATHER_BAND_K
                for j in np.flatnonzero(today & (x[a:b] <= coldest)).tolist():
                    k = int(kind[a + j])
                    source = next((kk for kk in range(k, -1, -1) if math.isfinite(levels[kk])), -1)
                    if source < 0:
                        continue
                    usual[j] = max(base, float(levels[source] + slope * x[a + j]))
                    setpoint = max(float(held[k]), float(held[source]))
                    margin[j] = config.consumption_comfort_share * slope * max(0.0, comfort_c - setpoint)
                    regime_of[j] = int(r)
            for h in range(a, b):
                if not math.isfinite(usual[h - a]):
                    continue
                acc = sums.setdefault(int(piece[h]), [0.0, 0.0, 0.0, 0.0])
                acc[0] += 1.0
                acc[1] += float(y[h])
                acc[2] += float(usual[h - a])
                acc[3] += float(margin[h - a])
                expected[h] = usual[h - a]
                if acc[0] < _MIN_PIECE_H:
                    continue
                # Earlier pieces as far into them as this one: a piece so far of the small hours is colder
                # than a whole day, whatever the day's mean weather.
                centres, spreads = typical[int(regime_of[h - a])]
                at = min(int(acc[0]), _PIECE_H) - 1
                centre_h, spread_h = float(centres[kind[h], at]), float(spreads[kind[h], at])
                if not math.isfinite(spread_h):
                    continue
                above = (acc[1] - acc[2]) / acc[0] - centre_h
                # Below a twentieth of the meter's busiest hours no heater or equipment was left running.
                floor_h = _RUNNING_SHARE * float(scale[h]) if math.isfinite(scale[h]) else 0.0
                hit = above > max(acc[3] / acc[0], config.consumption_noise_z * spread_h, floor_h)
                state[h] = 1.0 if hit else 0.0
                if hit:  # the whole closure is the fault's (its quiet pieces too): no reference for later closures
                    flagged[closure == closure[h]] = True
        excess = np.where(state == 1.0, np.maximum(0.0, y - expected), 0.0)
        return Finding(
            qualified_name=_PREFIX + "consumption_unoccupied", kind=EventKind.CONSUMPTION_UNOCCUPIED,
            building=hours.building.id, usage=series.usage, state=state, observed=y, expected=expected,
            excess=np.nan_to_num(excess), unit=series.unit, excess_unit=series.unit, energy=series.energy,
            min_duration=timedelta(hours=4), clear_after=config.daily_clear_after,
        )


_HDH_BASE_C = 16.0
"""Base of the heating degree-hours the main-meter rules regress consumption on."""
_INERTIA_H = 24
"""Hours of outdoor temperature whose mean a building's heating follows, for a main meter's closures."""
_WEATHER_BAND_K = 2.0
"""Kelvin of degree-hours past the coldest reference closure a main meter's closure may still be judged at."""
_RUNNING_SHARE = 0.05
"""Share of a meter's busiest hours (99th percentile of the year) below which nothing was left running."""
_MIN_DAYS = 14
"""Days of a main meter's past before its closures are judged (two weeks of nights and weekends)."""
_MIN_PIECE_H = 6
"""Judged hours of a piece of closure before it is judged (a thermostat cycles within fewer)."""
_MIN_KIND_H = 24
"""Fewest reference hours of a kind of closure for its level to be known."""
_MIN_PIECES = 5
"""Fewest earlier pieces of closure for their spread to be known."""
_PIECE_H = 24
"""Longest piece of a closure (hours): a closure is judged a day at a time."""


def _recharging(closed: BoolArray, long_h: int) -> BoolArray:
    """Closed hours within :data:`_COOL_DOWN_H` after the end of a closure of at least ``long_h`` hours.

    A building closed long enough to cool to frost protection has lost the heat stored in its mass; it takes
    about as long to store it back as it took to lose it (one time constant), and the first nights and closed
    days after reopening draw more heat than the closures it is compared with.

    >>> closed = np.array([True] * 100 + [False] * 10 + [True] * 14 + [False] * 10 + [True] * 20)
    >>> r = _recharging(closed, 96)
    >>> int(r[110:124].sum()), int(r[134:].sum()), bool(r[:100].any())  # 48 h after the 100 h closure ends
    (14, 14, False)
    """
    _, length = _runs(closed)
    n = closed.size
    ends = np.flatnonzero(closed[:-1] & ~closed[1:] & (length[:-1] >= long_h)) + 1 if n > 1 else np.zeros(0, dtype=np.int64)
    after = np.zeros(n + 1, dtype=np.int64)
    np.add.at(after, ends, 1)
    np.add.at(after, np.minimum(ends + _COOL_DOWN_H, n), -1)
    result: BoolArray = closed & (np.cumsum(after)[:n] > 0)
    return result


def _closure_kinds(hours: BuildingHours, config: RulesConfig) -> tuple[IntArray, FloatArray]:
    """Per hour, the kind of closure it belongs to (0 a night, 1 closed days, 2 a long closure), and per kind its setpoint.

    Kinds and setpoints as in :func:`_closure_setpoint`: the setback at night, the weekend setpoint on closed
    days, frost protection in closures from ``long_closure`` on where the inventory declares it.
    """
    comfort = _comfort(hours)
    _, length = _runs(hours.open_frac == 0.0)
    long_h = int(config.long_closure / timedelta(hours=1))
    frost_declared = "heating_frost_protection_c" in hours.building.model_fields_set
    held = np.array([comfort.setback_c, comfort.weekend_c, comfort.frost_c if frost_declared else comfort.weekend_c])
    kind: IntArray = np.where(length < 24, 0, np.where(length < long_h, 1, 2)).astype(np.int64)
    return kind, held


def _closure_cutoff_c(held: FloatArray, config: RulesConfig) -> FloatArray:
    """Per kind of closure, the mean outdoor temperature of the last 24 h below which it is heated.

    ``heating_off_above_c`` sits below the degree days' base (:data:`mv.degreedays.DJU_BASE_C`) by
    what gains heat; a closure held at a lower setpoint starts heating that much below its own setpoint.
    """
    cutoff: FloatArray = np.minimum(config.heating_off_above_c, held - (DJU_BASE_C - config.heating_off_above_c))
    return cutoff


def _shared_slope(x: FloatArray, y: FloatArray, kind: IntArray) -> float:
    """Non-negative slope of ``y`` on ``x`` with one level per kind (the building's heat loss per kelvin)."""
    dx = np.zeros(x.size)
    dy = np.zeros(y.size)
    for k in np.unique(kind).tolist():
        this = kind == k
        dx[this] = x[this] - x[this].mean()
        dy[this] = y[this] - y[this].mean()
    spread = float(np.dot(dx, dx))
    if x.size < _MIN_KIND_H or spread <= 1e-9:
        return 0.0
    return max(0.0, float(np.dot(dx, dy)) / spread)


def _kind_levels(
    x: FloatArray, y: FloatArray, kind: IntArray, ref: BoolArray, recent: int, slope: float, weather: float
) -> FloatArray:
    """Per kind of closure, its level: the median of ``y - slope * x``.

    Over the hours from ``recent`` on, or else over all of them in comparable
    weather (``x`` within twice :data:`_WEATHER_BAND_K` of ``weather``);
    ``nan`` for a kind with fewer than :data:`_MIN_KIND_H` reference hours in either.
    """
    levels = np.full(3, np.nan)
    near = np.abs(x - weather) <= 2 * _WEATHER_BAND_K
    for k in range(3):
        for start, close in ((recent, np.ones(x.size, dtype=np.bool_)), (0, near)):
            pick = ref[start:] & close[start:] & (kind[start:] == k)
            if pick.sum() >= _MIN_KIND_H:
                levels[k] = float(np.median(y[start:][pick] - slope * x[start:][pick]))
                break
    return levels


def _piece_spread(
    x: FloatArray, y: FloatArray, kind: IntArray, piece: IntArray, ref: BoolArray, levels: FloatArray, slope: float,
    base: float,
) -> tuple[FloatArray, FloatArray]:
    """Per kind of closure and number ``k`` of judged hours into a piece (1 to 24), earlier pieces' residual so far.

    Each earlier piece (of at least :data:`_MIN_PIECE_H` judged hours) gives
    the mean residual (against the fit, never below the ``base`` load) of its first ``k``
    judged hours, or of all of them if shorter (a night's judged hours end before a closed day's). Returns the
    median and robust SD per kind (rows) and ``k`` (columns), from the pieces
    of that kind, or with fewer than :data:`_MIN_PIECES` of them, for closed
    days and long closures, from both; ``nan`` with too few.
    """
    centre = np.full((3, _PIECE_H), np.nan)
    spread = np.full((3, _PIECE_H), np.nan)
    usable = ref & np.isfinite(levels[kind])
    if not usable.any():
        return centre, spread
    residual = y[usable] - np.maximum(base, levels[kind[usable]] + slope * x[usable])
    ids = piece[usable]
    start = np.concatenate([[True], ids[1:] != ids[:-1]])
    group = np.cumsum(start) - 1
    first = np.flatnonzero(start)
    count = np.arange(ids.size) - first[group] + 1
    total = np.cumsum(residual)
    before = np.concatenate([[0.0], total])[first][group]
    so_far = np.full((first.size, _PIECE_H), np.nan)
    so_far[group, np.minimum(count, _PIECE_H) - 1] = (total - before) / count
    # A piece that ended stands for its whole mean from there on.
    reached = np.where(np.isfinite(so_far), np.arange(_PIECE_H), 0)
    so_far = so_far[np.arange(first.size)[:, None], np.maximum.accumulate(reached, axis=1)]
    long_enough = np.bincount(group) >= _MIN_PIECE_H
    piece_kind = kind[usable][first]
    if long_enough.sum() < _MIN_PIECES:
        return centre, spread
    # The spread of all earlier pieces as far in (the most pieces), at least that of the kind's own.
    pooled = so_far[long_enough]
    pooled_spread = 1.4826 * np.median(np.abs(pooled - np.median(pooled, axis=0)), axis=0)
    for k in range(3):
        # Nights end at the morning recovery; closed days and long closures both run whole days from closing.
        for chosen in (piece_kind == k, (piece_kind >= 1) if k >= 1 else piece_kind == k):
            rows = so_far[long_enough & chosen]
            if rows.shape[0] >= _MIN_PIECES:
                centre[k] = np.median(rows, axis=0)
                spread[k] = np.maximum(pooled_spread, 1.4826 * np.median(np.abs(rows - centre[k]), axis=0))
                break
    return centre, spread


# --- a lone indoor temperature sensor ------------------------------------------------------------


def _indoor_sensor(point: Point) -> bool:
    return point.quantity is Quantity.TEMPERATURE and point.usage is not Usage.WEATHER and not point.cumulative


_shared_kept: dict[str, tuple[tuple[object, ...], Any]] = {}
_shared_lock = threading.Lock()


def _same_input(kept: object, now: object) -> bool:
    """Whether an input of :func:`_per_building` is what it was.

    The same object, an equal number or string of the same type, or an array of the same bits.
    """
    if kept is now:
        return True
    if isinstance(kept, (int, float, str)) and type(kept) is type(now):
        return bool(kept == now)
    if isinstance(kept, np.ndarray) and isinstance(now, np.ndarray):
        return (kept.dtype == now.dtype and kept.shape == now.shape
                and bool(np.array_equal(np.ascontiguousarray(kept).view(np.uint8), np.ascontiguousarray(now).view(np.uint8))))
    return False


def _per_building(name: str, inputs: tuple[object, ...], compute: Callable[[], _T]) -> _T:
    """What ``compute`` gives for ``inputs``, computed once for all the points of a building that ask for it.

    The quality rules run point by point, and an indoor sensor's rules each computed again what depends on its
    building alone (the outdoor temperature's means, the schedule's closures, the heating season, day by day
    over the whole frame): the same for its 10 to 20 sensors (issue 12, live pass at scale). The last result of
    each ``name`` is kept with its inputs (arrays by value, bit for bit, numbers and strings by value, anything
    else by identity) and given again while they are the same; its arrays are read-only, so that no caller
    changes them.
    """
    with _shared_lock:
        kept = _shared_kept.get(name)
        if kept is not None and len(kept[0]) == len(inputs) and all(
                _same_input(a, b) for a, b in zip(kept[0], inputs, strict=True)):
            result: _T = kept[1]
            return result
    value = compute()
    for array in value.values() if isinstance(value, dict) else ():
        if isinstance(array, np.ndarray):
            array.setflags(write=False)
    held = tuple(x.copy() if isinstance(x, np.ndarray) else x for x in inputs)
    with _shared_lock:
        _shared_kept[name] = (held, value)
    return value


_ROLLING_KEPT_MAX = 8
_rolling_kept: OrderedDict[tuple[bytes, int, str], FloatArray] = OrderedDict()
_rolling_lock = threading.Lock()


def _rolling(values: FloatArray, window: int, how: str) -> FloatArray:
    """Max minus min (``how="range"``) or mean (``"mean"``) of the last ``window`` hours, ``nan`` with under 3/4 known.

    The last few results are kept by the digest of their input: the quality rules of a building's points
    roll the same outdoor temperature for each indoor sensor (issue 12, live pass at scale: a third of the
    rules' time), now rolled once per frame. A copy is returned, the values the same.
    """
    key = (hashlib.blake2b(np.ascontiguousarray(values, dtype=np.float64).tobytes(), digest_size=16).digest(),
           window, how)
    with _rolling_lock:
        kept = _rolling_kept.get(key)
        if kept is not None:
            _rolling_kept.move_to_end(key)
            return kept.copy()
    out = _rolling_uncached(values, window, how)
    with _rolling_lock:
        _rolling_kept[key] = out.copy()
        while len(_rolling_kept) > _ROLLING_KEPT_MAX:
            _rolling_kept.popitem(last=False)
    return out


def _window_counts(mask: BoolArray, window: int) -> IntArray:
    """How many of each ``window`` consecutive values (the rows of a sliding window over ``mask``) are true."""
    ends = np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])
    result: IntArray = ends[window:] - ends[:-window]
    return result


def _window_extreme(values: FloatArray, window: int, extreme: np.ufunc) -> FloatArray:
    """Per window of ``window`` consecutive values (the rows of a sliding window), ``extreme`` (fmax, fmin) of them."""
    span, level = 1, values
    while 2 * span <= window:
        level = extreme(level[:-span], level[span:])  # each entry now covers 2 * span values
        span *= 2
    count = values.size - window + 1
    result: FloatArray = extreme(level[:count], level[window - span : window - span + count])
    return result


_PAIRWISE_MIN = 8
_PAIRWISE_BLOCK = 128
"""Rows of 8 to 128 values numpy sums in eight running sums, added pairwise, then the rest one by one."""


def _window_sums(values: FloatArray, window: int) -> FloatArray:
    """Per window of ``window`` consecutive values (8 to 128), their sum in numpy's own order for such a row.

    ``np.sum`` of a row of 8 to 128 values keeps eight running sums (value ``j``, then ``j + 8``...), adds them
    pairwise, then adds the values past the last multiple of 8 one by one; done here for every window at once,
    along the series, rather than row by row (a window of 24 over 9,600 hours was 0.4 ms, per indoor sensor
    and pass): the same additions in the same order, so the same sums
    (``test_pass_cpu.py::test_rolling_means_and_ranges_are_numpy_s_bit_for_bit``).
    """
    count = values.size - window + 1
    sums = [values[j : j + count] for j in range(_PAIRWISE_MIN)]
    at = _PAIRWISE_MIN
    while at < window - window % _PAIRWISE_MIN:
        sums = [part + values[at + j : at + j + count] for j, part in enumerate(sums)]
        at += _PAIRWISE_MIN
    total: FloatArray = ((sums[0] + sums[1]) + (sums[2] + sums[3])) + ((sums[4] + sums[5]) + (sums[6] + sums[7]))
    for k in range(at, window):
        total = total + values[k : k + count]
    return total


def _rolling_uncached(values: FloatArray, window: int, how: str) -> FloatArray:
    n = values.size
    out = _nan(n)
    if n < window:
        return out
    # Counted from running sums rather than per window: the same counts, without a window-sized temporary.
    ok = _window_counts(np.isfinite(values), window) >= 0.75 * window
    with np.errstate(all="ignore"):
        if how == "range" and not bool(((values == 0.0) & np.signbit(values)).any()):
            # Each window's largest and smallest known value by doubling spans (a window of 24 is two of 16):
            # the same values as nanmax and nanmin of its row, since they are unique (no -0.0 beside 0.0, NaN
            # left out by fmax and fmin), without laying out the rows.
            top, bottom = _window_extreme(values, window, np.fmax), _window_extreme(values, window, np.fmin)
            stat = top[ok] - bottom[ok]
        elif how == "range":
            rows = np.lib.stride_tricks.sliding_window_view(values, window)[ok]
            stat = np.nanmax(rows, axis=1) - np.nanmin(rows, axis=1) if rows.size else np.empty(0)
        else:
            # np.nanmean's own steps (NaN read as 0, each row summed, over its count of values not NaN) on the
            # same rows, NaN replaced once before the rows are laid out rather than in their copy: the same sums.
            nan = np.isnan(values)
            known = _window_counts(~nan, window)[ok]
            if _PAIRWISE_MIN <= window <= _PAIRWISE_BLOCK:
                stat = _window_sums(np.where(nan, 0.0, values), window)[ok] / known
            else:
                rows = np.lib.stride_tricks.sliding_window_view(np.where(nan, 0.0, values), window)[ok]
                stat = np.sum(rows, axis=1) / known if rows.size else np.empty(0)
    tail = out[window - 1:]
    tail[ok] = stat
    return out


def _heating_expected(building: Building, frame: HourlyFrame, outdoor_c: FloatArray | None, config: RulesConfig) -> BoolArray:
    heated = _in_season(building, frame.times_s)
    if outdoor_c is not None:
        mean24 = _trailing_mean(outdoor_c, 24)
        heated &= np.isfinite(mean24) & (mean24 < config.heating_off_above_c)
    return heated


def _setback_share(heat: FloatArray, open_frac: FloatArray) -> FloatArray:
    """Per 24-hour block of the frame, the heater's mean heat per closed hour over its mean heat per open hour.

    ``nan`` without 3 known hours of each or without heat while open. A heater
    that sets back at night runs under 1; one holding comfort around the clock
    at 1 or more (nights are colder, and no people or sun help).
    """
    blocks = heat.size // 24
    h = heat[: 24 * blocks].reshape(blocks, 24)
    o = open_frac[: 24 * blocks].reshape(blocks, 24)
    known = np.isfinite(h)
    closed, opened = (o == 0.0) & known, (o > 0.0) & known
    c_n, o_n = closed.sum(axis=1), opened.sum(axis=1)
    c_mean = np.where(closed, h, 0.0).sum(axis=1) / np.maximum(c_n, 1)
    o_mean = np.where(opened, h, 0.0).sum(axis=1) / np.maximum(o_n, 1)
    ok = (c_n >= 3) & (o_n >= 3) & (o_mean > 0)
    result: FloatArray = np.where(ok, c_mean / np.where(ok, o_mean, 1.0), np.nan)
    return result


class LostDailyCycleRule:
    """An indoor temperature sensor whose daily cycle collapses: stuck with noise, or unplugged from the room.

    A heated building in use swings every day (setback at night, people,
    sun). At each hour the range of the sensor over the last 24 h is compared
    with its usual daily range, the median over the ``sensor_reference_days``
    days before (days in use and heated, flagged days left out): below
    ``cycle_collapse`` of it the cycle is lost, above twice that it is there,
    in between the rule cannot tell. Only while the building is in use (open
    in the last 24 h) and heated (heating season, mean outdoor temperature of
    the last 24 h below ``heating_off_above_c``). Exact repeats are
    :class:`FrozenSensorRule`'s.

    Where the heating is metered, a flat day may be heating kept on at comfort
    (for the heating rules to judge, on the sensor's hours), or a sensor that
    no longer measures the room. The heater tells them apart, once per day:
    its closed-to-open ratio (mean heat per closed hour over mean heat per open
    hour, per 24 h block) is below 1 while it sets back, and at 1 or more when
    it holds comfort around the clock (nights are colder). A flat sensor is
    lost only while the heater, over the last complete day in use, still
    keeps at least a third of its usual setback (the ratio at most
    ``1 - (1 - usual) / 3``, the usual ratio being the median of the
    reference days that showed the cycle; a day's ratio wanders with the
    weather, so only a heater that gave up most of its setback counts as
    kept on); otherwise the rule says nothing and the heating rules judge.
    Where the usual ratio is above 0.9 (no setback to speak of) it cannot tell. A sensor found lost stays lost while it
    stays flat through hours the rule cannot judge otherwise (a weekend, not
    in use): its readings there are not the room's either, and the heating
    rules must not take them for heating kept on.

    Lookback: ``sensor_reference_days`` days (28).
    """

    name = "lost_daily_cycle"

    def evaluate(
        self,
        building: Building,
        point: Point,
        series: PointSeries,
        frame: HourlyFrame,
        open_frac: FloatArray,
        config: RulesConfig,
        *,
        outdoor_c: FloatArray | None = None,
        planned_closure_h: IntArray | None = None,
        memo: RuleMemo | None = None,
    ) -> Finding | None:
        """Hours where the sensor's last 24 h are flat against its usual daily range."""
        if not _indoor_sensor(point) or point.id not in frame.mean:
            return None
        x = frame.mean[point.id]
        n = x.size
        amp = _rolling(x, 24, "range")

        def heated_in_use() -> dict[str, BoolArray]:
            in_use = _trailing_mean(np.where(open_frac > 0.0, 1.0, 0.0), 24) > 0.0
            return {"heated_in_use": in_use & _heating_expected(building, frame, outdoor_c, config)}

        # In use and heated: the building's, the same for each of its indoor sensors (computed once).
        usable = _per_building("lost_daily_cycle", (building, frame.start_s, n, open_frac, outdoor_c,
                                                    config.heating_off_above_c), heated_in_use)["heated_in_use"]
        usable = usable & np.isfinite(amp)
        meters = [frame.consumption[p.id] for p in building.points if _serves_heating(p) and p.id in frame.consumption]
        block_ratio = _setback_share(np.sum(meters, axis=0), open_frac) if meters else None
        # One reference value per day: the range at the day's last hour.
        day_end = (np.arange(n) % 24) == 23
        days = -(-n // 24)
        # Per day, the reference range (nan: the day is not judged) and whether the heater was kept on: with
        # the hourly inputs, all a day's judgement is. A memo holds them for the complete days whose inputs
        # (digest) did not change since the last pass: the loop redoes only the days after.
        ref_d = _nan(days)
        kept_d = np.zeros(days, dtype=np.bool_)
        inputs = [amp, usable] if block_ratio is None else [amp, usable, np.repeat(block_ratio, 24)]
        block = np.column_stack([column[: 24 * (n // 24)] for column in inputs])
        key = (frame.start_s, int(config.sensor_reference_days), float(config.cycle_collapse),
               float(config.cycle_min_range_k), block_ratio is not None)
        done = memo._cycle.get(point.id) if memo is not None else None
        if done is not None and done.key != key:
            done = None
        # One row per complete day: its 24 hours' inputs.
        digests, first_day, digest_all = _unit_digests(
            _Units.of(block.reshape(n // 24, 24 * block.shape[1])), *((done.digests, done.whole) if done else (None,)))
        if done is not None:
            ref_d[:first_day] = done.ref[:first_day]
            kept_d[:first_day] = done.kept[:first_day]
        state, usual, flagged, kept_on = self._hours(amp, usable, ref_d, kept_d, config)  # the memo's days
        ref_h = int(config.sensor_reference_days) * 24
        last_ratio = math.nan  # the heater's ratio over the last complete day in use
        if block_ratio is not None and first_day > 1:
            seen = block_ratio[: first_day - 1]
            finite = np.flatnonzero(np.isfinite(seen))
            last_ratio = float(seen[finite[-1]]) if finite.size else math.nan
        for k in range(first_day, days):
            a = 24 * k
            b = min(n, a + 24)
            if block_ratio is not None and 0 < k <= block_ratio.size and math.isfinite(block_ratio[k - 1]):
                last_ratio = float(block_ratio[k - 1])
            lo = max(0, a - ref_h)
            sel = day_end[lo:a] & usable[lo:a] & ~flagged[lo:a]
            if sel.sum() < 7:
                continue
            ref = float(np.median(amp[lo:a][sel]))
            if ref < config.cycle_min_range_k:
                continue
            if block_ratio is not None:
                # The heater's usual ratio: the reference days whose sensor showed the cycle (days ending in the block).
                shown = sel & (amp[lo:a] >= 2 * config.cycle_collapse * ref)
                ratios = block_ratio[(np.flatnonzero(shown) + lo) // 24]
                ratios = ratios[np.isfinite(ratios)]
                if ratios.size < 5 or not math.isfinite(last_ratio):
                    continue
                gap = 1.0 - float(np.median(ratios))
                if gap < 0.1:
                    continue  # a heater that does not set back cannot tell a flat room from a flat sensor
                kept_d[k] = last_ratio > 1.0 - gap / 3.0
            ref_d[k] = ref
            # The day's hours, as _hours gives them from its reference (flagged: left out of later references).
            day_state, day_usual, day_flagged, day_kept = self._hours(
                amp[a:b], usable[a:b], ref_d[k : k + 1], kept_d[k : k + 1], config
            )
            state[a:b], usual[a:b], flagged[a:b], kept_on[a:b] = day_state, day_usual, day_flagged, day_kept
        if memo is not None:
            memo.recomputed_days += (n // 24) - min(first_day, n // 24)
            memo._cycle[point.id] = _CycleDays(key, digests, ref_d[: n // 24].copy(), kept_d[: n // 24].copy(),
                                               digest_all)
        if block_ratio is not None:
            # Found flat, it stays lost while flat through hours not in use (weekends), not once the heater
            # holds comfort around the clock (then a flat room is real): an hour not judged, flat, the heater
            # not kept on, takes the state of the last hour before its run of such hours when that was lost.
            still_flat = amp < 2 * config.cycle_collapse * usual
            carried = np.isnan(state) & still_flat & ~kept_on
            hour = np.arange(n)
            before = np.maximum.accumulate(np.where(carried, -1, hour))
            state = np.where(carried & (before >= 0) & (state[np.maximum(before, 0)] == 1.0), 1.0, state)
        finding = _quality(
            self.name, EventKind.LOST_DAILY_CYCLE, building, point, state, np.full(n, -1, dtype=np.int64),
            facts={"range_k": amp, "usual_range_k": usual},
        )
        return replace(finding, min_duration=timedelta(hours=48), clear_after=timedelta(hours=24))

    @staticmethod
    def _hours(
        amp: FloatArray, usable: BoolArray, ref_d: FloatArray, kept_d: BoolArray, config: RulesConfig
    ) -> tuple[FloatArray, FloatArray, BoolArray, BoolArray]:
        """State, usual range, flagged and kept-on hours (over ``amp``'s hours, from the first day's) of the days judged.

        A day's reference ``ref_d`` (``nan``: not judged) says which of its hours are lost (below
        ``cycle_collapse`` of it), there (above twice that) or cannot tell; with the heater kept on
        (``kept_d``), its lost hours are kept on instead.
        """
        n = amp.size
        ref = np.repeat(ref_d, 24)[:n]
        kept = np.repeat(kept_d, 24)[:n]
        judged = np.isfinite(ref)
        with np.errstate(invalid="ignore"):
            low = amp < config.cycle_collapse * ref
            there = amp >= 2 * config.cycle_collapse * ref
        kept_on = judged & kept & low
        lost = judged & ~kept & low
        can_tell = usable & (lost | there)
        state = np.where(judged, _state(can_tell, lost), np.nan)
        usual = np.where(judged, ref, np.nan)
        flagged = judged & can_tell & lost
        return state, usual, flagged, kept_on


class SensorDriftRule:
    """An indoor temperature sensor drifting out of its usual range (compared with its own past).

    At each hour the mean of the last 24 h is compared with what the
    ``sensor_reference_days`` days before predict from what the heating and
    the weather explain: the sensor's daily means regressed on the outdoor
    means over the last 24 h and, separately, over the last 72 h (a building
    lags the weather by its thermal mass: a deviation counts only if neither
    explains it), with a slope from 0 to 0.5 K per K when heated (a building
    is colder in a cold week) or to 1 K per K when unheated (out of its
    declared heating season, or outdoor above the 18 °C degree-day base: it
    floats with the weather), and on the share of the last 24 h the building
    was in use (heated to comfort rather than set back: weekends and holidays
    are colder), with a robust level (flagged days left out). Weather colder
    or warmer than any reference day may explain up to that slope beyond it.
    A fall is judged against the room's own longer past too
    (``drift_history_days``, same regime): the slope is bounded by that
    past's plus a thermostat's droop, and colder weather explains only what
    the room did when it was that cold before; heating holds a room from
    below only, so a rise keeps the steepest plausible response. A room
    held at its level whatever the weather (a pool hall) cannot have the
    weather explain a fall. A reference that floated with the weather (a
    pool hall above its setpoint in a hot summer) does not explain the fall
    of an hour heated again either: that hour is held from below at the
    level the room's heated past shows for its weather.
    A deviation beyond ``drift_min_k`` and five times the usual scatter of
    the daily means counts; below half of that it does not; in between the
    rule cannot tell. Nor can it during a closure the schedule plans longer
    than a weekend (holidays at frost protection: the building cools for
    days; ``planned_closure_h``, known from the closure's first hour) and
    the two days after it (warming up again), which its reference leaves
    out too, unless several such closures fill most of its reference (a
    church, a hall used once a week: closed is its ordinary state). Nor on a
    day in a use or heating state its reference holds fewer than 3 days of
    (the first service after weeks closed, the first days of the heating
    season): the day then joins the reference, which relearns; unless a
    judged day of the ``_TREND_DAYS`` (10) before was kept out of the
    reference for its deviation (an open deviation freezes the reference).
    Days serve as reference only when clearly near it and not moving away
    from it day after day (Kendall's tau of the last 10 days' deviations,
    one-sided, p < 0.01, beyond a quarter of ``drift_min_k``): a slow
    drift's first days do not drag the reference along. Out of the declared
    heating season, while most reference days are heated, an hour is taken as
    in range, rise or fall: the room floats once the heating is off, which
    heated days do not tell, and those days join the reference until it
    floats too.

    Lookback: ``sensor_reference_days`` days (28).
    """

    name = "sensor_drift"

    def evaluate(
        self,
        building: Building,
        point: Point,
        series: PointSeries,
        frame: HourlyFrame,
        open_frac: FloatArray,
        config: RulesConfig,
        *,
        outdoor_c: FloatArray | None = None,
        planned_closure_h: IntArray | None = None,
        memo: RuleMemo | None = None,
    ) -> Finding | None:
        """Hours where the sensor's last 24 h are far from what its past, the weather and the schedule predict."""
        if not _indoor_sensor(point) or point.id not in frame.mean:
            return None
        x = frame.mean[point.id]
        n = x.size
        mean24 = _rolling(x, 24, "mean")
        # What depends on the building alone, the same for each of its indoor sensors: computed once.
        shared = _per_building("sensor_drift", (building, frame.start_s, n, open_frac, outdoor_c, planned_closure_h),
                               lambda: _drift_context(building, frame, n, open_frac, outdoor_c, planned_closure_h))
        out24, out72, use24 = shared["out24"], shared["out72"], shared["use24"]
        long_closure, after_long_closure = shared["long_closure"], shared["after_long_closure"]
        closure_starts, free, off_season, cap = shared["closure_starts"], shared["free"], shared["off_season"], shared["cap"]
        # One reference value per day: the last 24 h at the day's last hour, computed once per day.
        ends = np.arange(23, n, 24)
        y_d, o_d, o72_d, u_d, free_d = mean24[ends], out24[ends], out72[ends], use24[ends], free[ends]
        usable_d = np.isfinite(y_d) & np.isfinite(o_d) & np.isfinite(u_d)
        long_d = after_long_closure[ends]
        flagged_d = np.zeros(ends.size, dtype=np.bool_)
        state = _nan(n)
        deviation = _nan(n)
        ref_days = int(config.sensor_reference_days)
        hist_days = int(config.drift_history_days)
        # A day's judgement depends on these hourly inputs of it and of the days before it (and on which of
        # those days were flagged): the days a memo holds up to the first whose inputs changed are not redone.
        columns = [mean24, out24, out72, use24, free, long_closure, after_long_closure]
        key = (frame.start_s, ref_days, hist_days, float(config.drift_min_k))
        done = memo._drift.get(point.id) if memo is not None else None
        if done is not None and done.key != key:
            done = None
        known: dict[tuple[int, int], bytes] = shared["prefix_digests"]

        def days_digest(days: int) -> bytes:
            # Column by column (the building's columns digested once for all its sensors): equal if and only
            # if the days' rows are.
            parts = [_column_digest(mean24, 24 * days)]
            for i, column in enumerate(columns[1:], start=1):
                if (i, days) not in known:
                    known[i, days] = _column_digest(column, 24 * days)
                parts.append(known[i, days])
            return hashlib.blake2b(b"".join(parts), digest_size=16).digest()

        # One row per complete day (those ending at ``ends``): its 24 hours' inputs, laid out as one row.
        units = _Units(ends.size, lambda a, b: np.column_stack([c[24 * a : 24 * b] for c in columns]).reshape(
            b - a, 24 * len(columns)), days_digest)
        digests, first_day, digest_all = _unit_digests(units, *((done.digests, done.whole) if done else (None,)))
        if done is not None:
            flagged_d[:first_day] = done.flagged[:first_day]
            state[: first_day * 24] = done.state[: first_day * 24]
            deviation[: first_day * 24] = done.deviation[: first_day * 24]
        # A day's fits of its reference (the weather's and use's effect, the longer past's response) depend on
        # the days before it only: those of the day the memo's pass judged last (a day still going on, judged
        # again each hour) hold while the days before it are unchanged.
        reuse: dict[str, Any] = {}
        reuse_day = -1
        if done is not None and 0 <= done.fits_day <= first_day:
            reuse, reuse_day = done.fits, done.fits_day
        fits: dict[str, Any] = {}
        fits_day = -1

        def fitted(label: str, fit: Callable[..., Any], *args: Any) -> Any:
            value = reuse[label] if fits_day == reuse_day and label in reuse else fit(*args)
            fits[label] = value
            return value

        for j in range(first_day, -(-n // 24)):
            a = 24 * j
            b = min(n, a + 24)
            fits, fits_day = {}, j
            lo = max(0, j - ref_days)
            hlo = max(0, j - hist_days)
            # A building that lives closed (a church, a hall used once a week) has its long closures in its
            # reference: they are its ordinary state, judged as any other.
            # Habitual means several separate long closures (a weekly pattern), not one holiday.
            habitual = (
                bool(long_d[lo:j].mean() >= 0.5) and int(closure_starts[lo * 24 : a].sum()) >= _MIN_REGIME_DAYS
                if j > lo
                else False
            )
            sel = usable_d[lo:j] & ~flagged_d[lo:j] & (habitual | ~long_d[lo:j])
            if sel.sum() < 7:
                continue
            ref_use = u_d[lo:j][sel]
            # The effect of use is learnt only from enough days in use and out of use; a day in a state the
            # reference has too few of (the first service after weeks closed) is not judged.
            seen_use = int((ref_use > 0).sum()) >= _MIN_REGIME_DAYS and int((ref_use == 0).sum()) >= _MIN_REGIME_DAYS
            ref_unheated = bool(free_d[lo:j][sel].mean() >= 0.5)
            max_slope = _MAX_FREE_SLOPE if ref_unheated else _MAX_INDOOR_SLOPE
            # A building lags the weather by up to days (its thermal mass): the weather of the last 24 h and
            # that of the last 72 h each explain the reference; a deviation counts only if neither explains it.
            far = np.ones(b - a, dtype=np.bool_)
            near = np.zeros(b - a, dtype=np.bool_)
            dev = np.full(b - a, np.inf)
            # The room's own longer past (same heating regime, flagged days and holidays left out): how it
            # followed the weather, and how cold that weather went. Heating holds a room from below only, so
            # this bounds what the weather explains of a fall; a rise keeps the steepest plausible response
            # (a heated room floats above its setpoint in a warm spell, once the heating stops).
            hist_sel = usable_d[hlo:lo] & ~flagged_d[hlo:lo] & (habitual | ~long_d[hlo:lo])
            ref_y, ref_u = y_d[lo:j][sel], ref_use if seen_use else np.zeros(ref_use.size)
            for o_index, (o_ref, o_all) in enumerate(((o_d, out24), (o72_d, out72))):
                ref_out = o_ref[lo:j][sel]
                # Weather unknown (the station silent for days): what the reference predicts is taken at its least
                # telling weather, its coldest day for a fall and its warmest for a rise. A room its heating holds
                # at its level (slope ~0) is judged as if the weather were known; a floating one gets the
                # reference's whole weather span as tolerance (issue 11: a pool hall's drift, unjudged through the
                # 4 days its weather station was silent, was missed).
                # (The day's hours only: the same values as over the whole frame, sliced.)
                o_day = o_all[a:b]
                o_now = np.where(np.isfinite(o_day), o_day, float(ref_out.min()))
                o_warm = np.where(np.isfinite(o_day), o_day, float(ref_out.max()))
                heated_h, free_h = fitted(f"regime{o_index}", _regime_history, y_d[hlo:lo], o_ref[hlo:lo],
                                          u_d[hlo:lo] if seen_use else None, free_d[hlo:lo], hist_sel)
                # A fall: the reference's slope is bounded by the one its longer past shows in the same regime
                # (plus a thermostat's droop), so a drift that happens to come with cooling weeks is not taken
                # for the weather's doing; weather colder than the reference explains what the room did when
                # it was that cold before, and up to the steepest plausible response (0.5 K per K heated,
                # 1 K per K unheated) only beyond anything it has seen (a building is colder in a cold snap).
                own = free_h if ref_unheated else heated_h
                fit_cap = min(max_slope, own[0] + _DROOP_K_PER_K) if own is not None else max_slope
                level, slope, use_k, scatter = fitted(f"fall{o_index}", _explain_indoor, ref_y, ref_out, ref_u, fit_cap)
                fall_limit = np.full(b - a, max(config.drift_min_k, 5.0 * scatter))
                colder = _colder_allowance(
                    o_now, float(ref_out.min()), np.maximum(0.0, cap[a:b] - slope), slope, heated_h, free_h, free[a:b]
                )
                fall = np.minimum(0.0, mean24[a:b] - level - slope * o_now - use_k * use24[a:b] + colder)
                if ref_unheated and heated_h is not None:
                    # The reference floated with the weather (a hot summer), but an hour now heated is held from
                    # below: at most at the level the room's heated past shows for this weather, less its droop.
                    hd = hist_sel & ~free_d[hlo:lo] & np.isfinite(o_ref[hlo:lo])
                    h_use = u_d[hlo:lo][hd] if seen_use else np.zeros(int(hd.sum()))
                    h_level, h_slope, h_use_k, h_scatter = fitted(
                        f"held{o_index}", _explain_indoor, y_d[hlo:lo][hd], o_ref[hlo:lo][hd], h_use,
                        min(_MAX_INDOOR_SLOPE, heated_h[0] + _DROOP_K_PER_K))
                    held_fall = np.minimum(0.0, mean24[a:b] - h_level - h_slope * o_now - h_use_k * use24[a:b])
                    heated_now = ~free[a:b]
                    fall = np.where(heated_now, np.minimum(fall, held_fall), fall)
                    fall_limit = np.where(heated_now, np.maximum(fall_limit, 5.0 * h_scatter), fall_limit)
                # A rise: weather warmer than any reference day may explain up to the steepest plausible response.
                if fit_cap < max_slope:
                    level, slope, use_k, scatter = fitted(f"rise{o_index}", _explain_indoor, ref_y, ref_out, ref_u, max_slope)
                rise_limit = max(config.drift_min_k, 5.0 * scatter)
                warmer = np.maximum(0.0, o_warm - float(ref_out.max())) * np.maximum(0.0, cap[a:b] - slope)
                rise = np.maximum(0.0, mean24[a:b] - level - slope * o_warm - use_k * use24[a:b] - warmer)
                if not ref_unheated:
                    # Issue 11: a reference held by its heating tells how warm the heating kept the room, not
                    # where it floats once the declared season has ended and the heating is off: above it (a
                    # church at frost protection all winter, then a mild April) or below it (a crèche held at
                    # comfort, once its heating is switched off in May). Such hours count as in range and
                    # join the reference, until it floats with the weather itself.
                    rise = np.where(off_season[a:b], 0.0, rise)
                    fall = np.where(off_season[a:b], 0.0, fall)
                this = np.where(fall < 0, fall, rise)
                limit = np.where(fall < 0, fall_limit, rise_limit)
                far &= np.abs(this) > limit
                near |= np.abs(this) < 0.5 * limit
                dev = np.where(np.abs(this) < np.abs(dev), this, dev)
            if seen_use:
                known_use = np.ones(b - a, dtype=np.bool_)
            else:
                # Only hours in the use state that most reference days share (and the same share) are judged.
                usual_use = float(np.median(ref_use))
                known_use = np.abs(use24[a:b] - usual_use) < 1e-9
            # Heated or floating with the weather: a regime the reference has too few days of is not judged
            # (the first days of the heating season after a summer).
            ref_free = int(free_d[lo:j][sel].sum())
            known_use &= np.where(free[a:b], ref_free, int(sel.sum()) - ref_free) >= _MIN_REGIME_DAYS
            dev = np.where(np.isfinite(dev), dev, np.nan)
            can_tell = np.isfinite(dev) & (far | near) & (habitual | ~after_long_closure[a:b]) & known_use
            state[a:b] = _state(can_tell, far)
            deviation[a:b] = np.where(known_use, dev, np.nan)
            if j < ends.size and ends[j] < b and known_use[ends[j] - a]:
                # Only days clearly in the usual range serve as reference: a slow drift's first days, neither
                # near nor far yet, must not drag the reference along with them; nor those still near but
                # moving away day after day (issue 11: a pool hall's drift widened its reference to 5-8 K).
                flagged_d[j] = not bool(near[ends[j] - a]) or _trending_away(
                    deviation[ends[max(0, j - _TREND_DAYS + 1) : j + 1]], 0.25 * config.drift_min_k
                )
            elif j < ends.size and ends[j] < b and bool(
                (flagged_d[max(0, j - _TREND_DAYS) : j] & np.isfinite(deviation[ends[max(0, j - _TREND_DAYS) : j]])).any()
            ):
                # A day not judged (a use state the reference lacks: a weekend) while the sensor was away from its
                # reference in the days before (a judged day kept out, with a deviation) stays out of it too: an open
                # deviation freezes the reference, as an open leak does (issue 11: a pool hall's drifting weekends
                # joined it and hid the drift).
                flagged_d[j] = True
        if memo is not None:
            memo.recomputed_days += ends.size - first_day
            whole = ends.size * 24
            memo._drift[point.id] = _DriftDays(key, digests, flagged_d.copy(), state[:whole].copy(),
                                               deviation[:whole].copy(), digest_all, fits_day, fits)
        finding = _quality(
            self.name, EventKind.SENSOR_DRIFT, building, point, state, np.full(n, -1, dtype=np.int64),
            facts={"deviation_k": deviation},
        )
        return replace(finding, min_duration=timedelta(hours=24), clear_after=timedelta(hours=24))


def _drift_context(
    building: Building, frame: HourlyFrame, n: int, open_frac: FloatArray, outdoor_c: FloatArray | None,
    planned_closure_h: IntArray | None,
) -> dict[str, Any]:
    """What :class:`SensorDriftRule` needs of a building's hours, whatever the sensor: weather, use, closures, season."""
    out24 = _rolling(outdoor_c, 24, "mean") if outdoor_c is not None else np.zeros(n)
    out72 = _rolling(outdoor_c, 72, "mean") if outdoor_c is not None else np.zeros(n)
    out72 = np.where(np.isfinite(out72), out72, out24)
    use24 = _trailing_mean(np.where(open_frac > 0.0, 1.0, 0.0), 24)
    # Closed longer than a weekend (holidays: frost protection), a building cools for days, then warms
    # up again once reopened: colder than any weekend of its past, for reasons that are not the sensor's.
    # The schedule tells from a closure's first hour how long it is planned to last; without it, a closure
    # is known to be long once it has lasted beyond a weekend.
    if planned_closure_h is not None:
        long_closure = planned_closure_h >= _PAST_WEEKEND_H
    else:
        long_closure = _runs(open_frac == 0.0)[0] >= _PAST_WEEKEND_H
    after_long_closure = _recent(long_closure, _WARM_UP_H)
    closure_starts = long_closure & ~np.concatenate([[False], long_closure[:-1]])
    # Unheated (out of the declared heating season, or outdoor above the degree-day base), a building's
    # indoor floats with the weather, up to 1 K per K; heated, the heating damps it to 0.5 K per K.
    free = out24 >= DJU_BASE_C
    off_season = np.zeros(n, dtype=np.bool_)
    if building.heating_season is not None:
        season = building.heating_season
        days, day_of_hour = np.unique(frame.times_s // 86400.0, return_inverse=True)
        out_of_season = np.array([not season.contains(datetime.fromtimestamp(d * 86400.0, UTC).date())
                                  for d in days.tolist()], dtype=np.bool_)
        off_season = out_of_season[day_of_hour]
        free = free | off_season
    cap = np.where(free, _MAX_FREE_SLOPE, _MAX_INDOOR_SLOPE)
    return {"out24": out24, "out72": out72, "use24": use24, "long_closure": long_closure,
            "after_long_closure": after_long_closure, "closure_starts": closure_starts, "free": free,
            "off_season": off_season, "cap": cap, "prefix_digests": {}}


_TREND_DAYS = 10
"""Days of daily deviations from the reference on which a sensor's trend away from it is tested."""
_TREND_P = 0.01
"""Significance of a monotone trend of the daily deviations (Kendall's tau, one-sided) that keeps a day out."""


def _trending_away(deviations: FloatArray, floor_k: float) -> bool:
    """Whether the last daily deviation continues a monotone trend away from the reference: a drift's first days.

    Kendall's tau of the known daily deviations (at least 5 of the last ``_TREND_DAYS``) against time,
    one-sided in the direction of the last one, below ``_TREND_P``, the last one beyond ``floor_k``: the
    weather's deviations come and go, a drifting sensor moves one way day after day.
    """
    last = float(deviations[-1])
    known = np.isfinite(deviations)
    if not math.isfinite(last) or abs(last) < floor_k or int(known.sum()) < 5:
        return False
    # scipy.stats takes half a second to import: only when a trend is tested, not whenever rules are imported.
    from scipy.stats import kendalltau  # type: ignore[import-untyped]  # scipy ships no stubs (as in mv/savings.py)

    result = kendalltau(np.flatnonzero(known), deviations[known], alternative="less" if last < 0 else "greater")
    return bool(result.pvalue < _TREND_P)


_PAST_WEEKEND_H = 72
"""Hours closed beyond any weekend (Friday evening to Monday morning is about 62 h): holidays, frost protection."""
CLOSURE_LOOKAHEAD_H = _PAST_WEEKEND_H
"""Hours of schedule read before and after a frame to tell whether each of its closures is long (:func:`planned_closures`)."""


def planned_closures(open_frac: FloatArray, margin: int = CLOSURE_LOOKAHEAD_H) -> IntArray:
    """Per hour, the planned length of the closure it is in (0 when open), from the schedule around a frame.

    ``open_frac`` is the schedule's open share over the frame plus ``margin``
    hours before and after it (the schedule is known in advance: weekly
    hours, holidays, closures, bookings); the result covers the frame. A
    closure running past the margin counts at least ``margin`` hours, so
    whether it is longer than ``margin`` is the same whatever the frame.

    >>> planned_closures(np.array([1.0, 0, 0, 0, 0, 0, 1, 0, 0]), margin=2)
    array([5, 5, 5, 5, 0])
    """
    _, length = _runs(open_frac == 0.0)
    result: IntArray = length[margin : open_frac.size - margin]
    return result
_WARM_UP_H = 48
"""Hours a building takes to warm up again after a long closure."""
_MAX_INDOOR_SLOPE = 0.5
"""Steepest plausible response (K per K) of a heated building's indoor daily mean to the outdoor one."""
_MAX_FREE_SLOPE = 1.0
"""Steepest plausible response (K per K) of an unheated building's indoor daily mean: it follows the weather."""
_MIN_REGIME_DAYS = 3
"""Reference days needed in use and out of use before the effect of use is learnt."""


_MIN_HISTORY_DAYS = 14
"""Days of a heating regime the longer past needs before its response to the weather replaces the steepest plausible one."""
_COVERED_DAYS = 3
"""Days of the longer past at least as cold (warm) as an hour's weather before that weather counts as seen."""

_MIN_HISTORY_SPREAD_K = 5.0
"""Range of outdoor daily means (K) those days must span for their slope to be learnt."""
_DROOP_K_PER_K = 0.1
"""A thermostat's droop: a proportional controller lets a held room fall by its band (about 2 K) over the whole
load range (about 25 K of outdoor temperature), so a room held in its past may follow the weather this much."""

RegimeHistory = tuple[float, float, float] | None
"""Of the longer past in one heating regime: the learnt slope (K per K), and the coldest and warmest outdoor means
seen on at least :data:`_COVERED_DAYS` days; ``None`` with under :data:`_MIN_HISTORY_DAYS` days, or spanning
under :data:`_MIN_HISTORY_SPREAD_K`."""


def _regime_history(
    indoor: FloatArray, outdoor: FloatArray, use: FloatArray | None, free: BoolArray, sel: BoolArray
) -> tuple[RegimeHistory, RegimeHistory]:
    """The longer past's response to the weather, heated (first) and unheated (second): see :data:`RegimeHistory`."""
    result: list[RegimeHistory] = []
    for regime, cap in ((False, _MAX_INDOOR_SLOPE), (True, _MAX_FREE_SLOPE)):
        days = sel & (free == regime) & np.isfinite(outdoor)
        if int(days.sum()) < _MIN_HISTORY_DAYS:
            result.append(None)
            continue
        o = outdoor[days]
        u = use[days] if use is not None else np.zeros(o.size)
        _, slope, _, _ = _explain_indoor(indoor[days], o, u, cap)
        ordered = np.sort(o)
        if ordered[-_COVERED_DAYS] - ordered[_COVERED_DAYS - 1] < _MIN_HISTORY_SPREAD_K:
            result.append(None)
            continue
        result.append((slope, float(ordered[_COVERED_DAYS - 1]), float(ordered[-_COVERED_DAYS])))
    return result[0], result[1]


def _colder_allowance(
    now: FloatArray,
    ref_min: float,
    spare: FloatArray,
    slope: float,
    heated: RegimeHistory,
    free_history: RegimeHistory,
    free: BoolArray,
) -> FloatArray:
    """How much weather colder than the reference days (coldest ``ref_min``) may explain of a fall, per hour (K).

    Down to the outdoor temperatures the longer past of the hour's regime has
    seen, its own response beyond the reference's ``slope``; beyond them (or
    without such a past), ``spare`` (the steepest plausible response beyond
    that slope) per kelvin.

    >>> held = (0.0, -2.0, 30.0)  # held at its level from -2 °C to 30 °C outdoors
    >>> _colder_allowance(np.array([5.0, -6.0]), 12.0, np.full(2, 0.5), 0.0, held, None, np.zeros(2, bool))
    array([0., 2.])
    """
    colder: FloatArray = np.maximum(0.0, ref_min - now) * spare
    for regime, history in ((False, heated), (True, free_history)):
        if history is None:
            continue
        seen_slope, coldest, _ = history
        own = np.maximum(0.0, np.minimum(seen_slope, slope + spare) - slope)
        seen = np.maximum(0.0, ref_min - np.maximum(now, coldest))
        unseen = np.maximum(0.0, np.minimum(ref_min, coldest) - now)
        colder = np.where(free == regime, seen * own + unseen * spare, colder)
    return colder


def _explain_indoor(
    indoor: FloatArray, outdoor: FloatArray, use: FloatArray, max_slope: float = _MAX_INDOOR_SLOPE
) -> tuple[float, float, float, float]:
    """Level, outdoor slope (0 to ``max_slope``), in-use effect (K, not below 0) and robust scatter of daily means."""
    design = np.column_stack([outdoor - outdoor.mean(), use - use.mean()])
    coef = np.linalg.lstsq(design, indoor - indoor.mean(), rcond=None)[0]
    slope = min(max_slope, max(0.0, float(coef[0])))
    use_k = max(0.0, float(coef[1]))
    resid = indoor - slope * outdoor - use_k * use
    level = float(np.median(resid))
    scatter = 1.4826 * float(np.median(np.abs(resid - level)))
    return level, slope, use_k, scatter


BUILDING_RULES: tuple[BuildingRule, ...] = (
    OverheatingRule(),
    HeatingUnoccupiedRule(),
    LightingRule(),
    NightBaseloadRule(),
    WaterLeakRule(),
    UnoccupiedConsumptionRule(),
)
"""The energy rules, in the order they run."""

QUALITY_RULES: tuple[QualityRule, ...] = (
    MissingDataRule(), FrozenSensorRule(), StaleCounterRule(), SensorDriftRule(), LostDailyCycleRule()
)
"""The data-quality rules, run before the energy rules."""
