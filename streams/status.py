"""The state of the portfolio's data, per building: last reading, completeness, stale points.

``econome status`` shows it in a terminal. From InfluxDB it needs three
InfluxQL queries whatever the size of the portfolio (:func:`read_point_counts`):
the number of raw readings of every point over the last 24 hours and the last
7 days, and the time of its last reading, each ``GROUP BY "point"``.

Definitions (the ones the pipeline already uses, not new ones):

* **readings expected** over a window: the window divided by the point's
  expected interval, its ``poll_interval`` for a polled (Modbus) point. The
  inventory gives no interval for a pushed (MQTT) point: it is expected to
  report at least once per ``missing_push_after`` (30 min), the silence after
  which :class:`~streams.quality.QualityTracker` reports it missing;
* **completeness**: readings received over readings expected, each point's
  count capped at its expectation (a point polled twice as often does not hide
  a silent one); a building's is the sum over its points;
* **stale point**: no reading for longer than its silence limit
  (:meth:`~streams.quality.StalenessLimits.missing_after`: three poll
  intervals, or 30 min for a pushed point), or none at all in 7 days;
* **utility points** (a Linky, a Gazpar) are published a day late or more, and
  fetched once a day: their silence limit is :data:`~streams.quality.UTILITY_DELAY`
  (Enedis: day D is published on D+1 and fetched that morning, so its last reading,
  D+1 00:00, is at most 31.5 h old just before the next fetch: 2 days; GRDF's
  informative data come from D+1 to D+3 and gas day D ends at 06:00 on D+1: 4 days; a Gazpar
  with ``grdf: {publication: monthly}``, published once a month: 52 days, its last reading looked
  for that far back). They are
  expected at their step (a Linky's 30 min, a Gazpar's day) but not over the
  delay: nothing is expected of them in the last 24 hours, and 7 days less the
  delay over the last 7 days.

>>> from datetime import UTC, datetime, timedelta
>>> from pathlib import Path
>>> from inventory import load_inventory
>>> inv = load_inventory(Path("examples/commune.yaml"))
>>> now = datetime(2026, 1, 12, 10, tzinfo=UTC)
>>> building, point = next(iter(inv.points()))
>>> expected_readings(point, DAY, StalenessLimits())
1440.0
>>> counts = {point.id: PointCounts(720, 720, now - timedelta(minutes=1))}
>>> status = building_statuses(inv, counts, now)[0]
>>> status.id == building.id, status.completeness_24h < 1, point.id in status.stale_points
(True, True, False)
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from inventory import Building, Inventory, Point
from streams.influx import LONG_RP, RAW_MEASUREMENT, RAW_RP, InfluxConfig, InfluxQLClient, to_ms
from streams.quality import UTILITY_DELAY, StalenessLimits, utility_publication

__all__ = [
    "DAY",
    "WEEK",
    "BuildingStatus",
    "PointCounts",
    "PointStatus",
    "RawHistory",
    "building_statuses",
    "expected_readings",
    "raw_history",
    "raw_retention_policy",
    "read_point_counts",
    "worst_first",
]

DAY = timedelta(days=1)
WEEK = timedelta(days=7)
_UTILITY_STEP = {"enedis": timedelta(minutes=30), "grdf": timedelta(days=1)}


@dataclass(frozen=True, slots=True)
class PointCounts:
    """What InfluxDB holds of one point.

    Attributes:
        day: readings in the last 24 hours.
        week: readings in the last 7 days.
        last: time of its last reading in the last 7 days (``None``: none).
        step: the median time between two of its readings over the 7 days (``None``: not asked, or fewer than two).
    """

    day: int
    week: int
    last: datetime | None
    step: timedelta | None = None


def expected_readings(point: Point, window: timedelta, limits: StalenessLimits, step: timedelta | None = None) -> float:
    """Readings a point should give over ``window``: its poll interval, or the push silence limit, divides it.

    A utility point's step divides the window less its publication delay: ``step``, the one its readings show
    (:attr:`PointCounts.step`), else a Linky's 30 minutes and a Gazpar's day.
    """
    if point.is_utility:
        utility_step = step if step is not None and step > timedelta(0) else _UTILITY_STEP[point.protocol]
        return max(window - UTILITY_DELAY[utility_publication(point)], timedelta(0)) / utility_step
    interval = point.modbus.poll_interval if point.modbus is not None else limits.missing_push_after
    return window / interval



@dataclass(frozen=True, slots=True)
class PointStatus:
    """One point's figures (see the module docstring for the definitions).

    Attributes:
        id: the point's id.
        quantity: its quantity.
        last: its last reading in the last 7 days, if any.
        received_24h: readings in the last 24 hours.
        expected_24h: readings expected in 24 hours.
        received_7d: readings in the last 7 days.
        expected_7d: readings expected in 7 days.
        silent_after: its silence limit.
        stale: silent for longer than ``silent_after`` (or no reading in 7 days).
    """

    id: str
    quantity: str
    last: datetime | None
    received_24h: int
    expected_24h: float
    received_7d: int
    expected_7d: float
    silent_after: timedelta
    stale: bool

    def to_json(self, now: datetime) -> dict[str, Any]:
        """A JSON-safe dict (times in UTC ISO 8601, ages in seconds)."""
        return {
            "id": self.id,
            "quantity": self.quantity,
            "last_reading": None if self.last is None else self.last.isoformat(),
            "age_s": None if self.last is None else round((now - self.last).total_seconds()),
            "received_24h": self.received_24h,
            "expected_24h": round(self.expected_24h, 3),
            "received_7d": self.received_7d,
            "expected_7d": round(self.expected_7d, 3),
            "silent_after_s": self.silent_after.total_seconds(),
            "stale": self.stale,
        }


def _completeness(received: Sequence[tuple[int, float]]) -> float | None:
    expected = sum(e for _, e in received)
    if expected <= 0:
        return None
    return sum(min(float(r), e) for r, e in received) / expected


@dataclass(frozen=True, slots=True)
class BuildingStatus:
    """One building's figures; ``points`` is ``None`` when InfluxDB could not be read.

    Attributes:
        id: the building's id.
        name: its name.
        points: its points' figures, in the inventory's order.
        open_alerts: alerts open in the live service's register.
        worst_alert: the kind of the worst of them (highest score).
    """

    id: str
    name: str
    points: tuple[PointStatus, ...] | None
    open_alerts: int = 0
    worst_alert: str | None = None

    @property
    def last(self) -> datetime | None:
        """The building's last reading, any point."""
        times = [p.last for p in self.points or () if p.last is not None]
        return max(times) if times else None

    @property
    def completeness_24h(self) -> float | None:
        """Readings received over expected in the last 24 hours (``None``: unknown or nothing expected)."""
        return None if self.points is None else _completeness([(p.received_24h, p.expected_24h) for p in self.points])

    @property
    def completeness_7d(self) -> float | None:
        """The same over the last 7 days."""
        return None if self.points is None else _completeness([(p.received_7d, p.expected_7d) for p in self.points])

    @property
    def stale_points(self) -> list[str]:
        """Ids of its stale points."""
        return [p.id for p in self.points or () if p.stale]

    def problems(self, min_completeness: float) -> list[str]:
        """What is wrong with its data: stale points, a 24-hour completeness under ``min_completeness``."""
        out = []
        if self.stale_points:
            out.append(f"stale points: {', '.join(self.stale_points)}")
        day = self.completeness_24h
        if day is not None and day < min_completeness:
            out.append(f"24 h completeness {100 * day:.1f} % < {100 * min_completeness:.0f} %")
        return out

    def to_json(self, now: datetime, min_completeness: float, *, with_points: bool = False) -> dict[str, Any]:
        """A JSON-safe dict; with ``with_points``, each point's figures too."""
        last = self.last

        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "last_reading": None if last is None else last.isoformat(),
            "age_s": None if last is None else round((now - last).total_seconds()),
            "completeness_24h": rounded(self.completeness_24h),
            "completeness_7d": rounded(self.completeness_7d),
            "stale_points": self.stale_points,
            "open_alerts": self.open_alerts,
            "worst_alert": self.worst_alert,
            "problems": self.problems(min_completeness),
        }
        if with_points:
            out["points"] = None if self.points is None else [p.to_json(now) for p in self.points]
        return out


def _point_status(point: Point, counts: PointCounts | None, now: datetime, limits: StalenessLimits) -> PointStatus:
    counts = counts or PointCounts(0, 0, None)
    silent_after = limits.missing_after(point)
    return PointStatus(
        id=point.id, quantity=point.quantity.value, last=counts.last,
        received_24h=counts.day, expected_24h=expected_readings(point, DAY, limits, counts.step),
        received_7d=counts.week, expected_7d=expected_readings(point, WEEK, limits, counts.step),
        silent_after=silent_after, stale=counts.last is None or now - counts.last > silent_after,
    )  # fmt: skip


def building_statuses(
    inventory: Inventory,
    counts: Mapping[str, PointCounts] | None,
    now: datetime,
    limits: StalenessLimits | None = None,
    *,
    buildings: Sequence[Building] | None = None,
) -> list[BuildingStatus]:
    """Each building's figures, in the inventory's order.

    Args:
        inventory: the portfolio.
        counts: per point id, what InfluxDB holds (a point left out has no reading);
            ``None`` when InfluxDB could not be read.
        now: the time the counts were taken at.
        limits: the silence limits (the pipeline's defaults when None).
        buildings: only these buildings (all when None).
    """
    limits = limits or StalenessLimits()
    chosen = list(buildings) if buildings is not None else [b for _, b in inventory.buildings()]
    out = []
    for building in chosen:
        points = (
            None if counts is None
            else tuple(_point_status(p, counts.get(p.id), now, limits) for p in building.points)
        )  # fmt: skip
        out.append(BuildingStatus(building.id, building.name, points))
    return out


def worst_first(statuses: Sequence[BuildingStatus], min_completeness: float) -> list[BuildingStatus]:
    """Buildings with problems first, then by 24-hour and 7-day completeness, stale points and open alerts."""

    def key(s: BuildingStatus) -> tuple[bool, float, float, int, int, str]:
        day, week = s.completeness_24h, s.completeness_7d
        return (
            not s.problems(min_completeness), 1.0 if day is None else day, 1.0 if week is None else week,
            -len(s.stale_points), -s.open_alerts, s.id,
        )  # fmt: skip

    return sorted(statuses, key=key)


async def raw_retention_policy(client: InfluxQLClient, config: InfluxConfig) -> str | None:
    """Where the pipeline writes raw readings, as :class:`~streams.influx.InfluxV1Writer` chooses it.

    The configured raw policy; else, on 1.x, ``raw`` when ``econome influx
    setup`` made it; else the configured policy (``None``: the database's
    default, and on 2.x the bucket's DBRP mapping).

    Raises:
        SinkError: InfluxDB is unreachable or refused to list the policies.
    """
    if config.raw_retention_policy:
        return config.raw_retention_policy
    if config.api == "v1":
        series = await client.query(f"SHOW RETENTION POLICIES ON {_ident(config.database)}")
        if RAW_RP in {str(row[0]) for s in series for row in s.get("values", [])}:
            return RAW_RP
    return config.retention_policy


@dataclass(frozen=True, slots=True)
class RawHistory:
    """Where raw readings are, for how long, and where the older ones survive as hourly aggregates.

    After ``econome influx setup`` raw readings are kept ``raw_days`` in the
    ``raw`` policy, and a continuous query keeps their hourly mean, min and max
    in ``long.reading_1h`` (:func:`streams.influx.setup_v1`).

    Attributes:
        policy: the raw readings' retention policy (None: the database's default).
        kept: how long raw readings are kept (None: forever, or unknown on 2.x).
        downsampled: the policy holding ``reading_1h``, when there is one.
    """

    policy: str | None
    kept: timedelta | None = None
    downsampled: str | None = None

    def raw_from(self, now: datetime) -> datetime | None:
        """The first whole hour from which raw readings are all still kept (None: all of them)."""
        if self.kept is None:
            return None
        moment = now - self.kept
        hour = moment.replace(minute=0, second=0, microsecond=0)
        return hour if hour == moment else hour + timedelta(hours=1)


_UNITS = {"h": "hours", "m": "minutes", "s": "seconds"}


def _duration(text: str) -> timedelta | None:
    """An InfluxDB policy duration (``2160h0m0s``; ``0s`` is forever)."""
    total = timedelta(0)
    for amount, unit in re.findall(r"(\d+)([hms])", text):
        total += timedelta(**{_UNITS[unit]: int(amount)})
    return total or None


async def raw_history(client: InfluxQLClient, config: InfluxConfig) -> RawHistory:
    """Where raw readings are, how long they are kept, and where the hourly aggregates are (InfluxDB 1.x).

    On 2.x (the DBRP mapping) only the policy is known: raw readings are taken as kept.

    Raises:
        SinkError: InfluxDB is unreachable or refused to list the policies.
    """
    policy = await raw_retention_policy(client, config)
    if config.api != "v1":
        return RawHistory(policy)
    series = await client.query(f"SHOW RETENTION POLICIES ON {_ident(config.database)}")
    rows = {str(row[0]): row for s in series for row in s.get("values", [])}
    chosen = policy or next((name for name, row in rows.items() if row[-1] is True), None)
    kept = _duration(str(rows[chosen][1])) if chosen in rows else None
    downsampled = LONG_RP if LONG_RP in rows and chosen != LONG_RP else None
    return RawHistory(policy, kept, downsampled)


def _ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _per_point(series: list[dict[str, Any]]) -> dict[str, tuple[int, Any]]:
    """``{point: (time ms, value)}`` of a ``GROUP BY "point"`` answer of one row per series."""
    out: dict[str, tuple[int, Any]] = {}
    for s in series:
        point = s.get("tags", {}).get("point")
        if point and s.get("values"):
            row = s["values"][0]
            out[str(point)] = (int(row[0]), row[1])
    return out


async def read_point_counts(
    client: InfluxQLClient, now: datetime, *, retention_policy: str | None = None, last_within: timedelta = WEEK,
    steps_of: Collection[str] = (),
) -> dict[str, PointCounts]:
    """Per point, its readings over the 24 hours and 7 days before ``now``, and its last one: three queries.

    With ``steps_of`` (the utility points), a fourth gives their step: the median time between two of their
    readings over the 7 days (a Linky's 30 minutes, or a day when it is read by its daily consumption).

    Windows are ``(now - window, now]``: a reading dated after ``now`` is not counted.

    Args:
        client: the InfluxQL client.
        now: the end of the windows.
        retention_policy: where raw readings are (:func:`raw_retention_policy`).
        last_within: how far back the last reading is looked for (longer than 7 days when a point
            may be silent longer: a Gazpar published monthly).
        steps_of: the points whose step is read (:attr:`PointCounts.step`).

    Raises:
        SinkError: InfluxDB is unreachable or refused a query (the message names it).
    """
    source = _ident(RAW_MEASUREMENT)
    if retention_policy:
        source = f"{_ident(retention_policy)}.{source}"
    end = to_ms(now)

    def since(window: timedelta) -> str:
        return f'FROM {source} WHERE time > {to_ms(now - window)}ms AND time <= {end}ms GROUP BY "point"'

    day = _per_point(await client.query(f'SELECT count("value") {since(DAY)}'))
    week = _per_point(await client.query(f'SELECT count("value") {since(WEEK)}'))
    last = _per_point(await client.query(f'SELECT last("value") {since(max(last_within, WEEK))}'))
    steps: dict[str, tuple[int, Any]] = {}
    if steps_of:
        # The points by a regex (a point id is a tag value), "/" escaped for InfluxQL.
        chosen = "|".join(re.escape(p).replace("/", "\\/") for p in sorted(steps_of))
        inner = (f'SELECT elapsed("value", 1s) FROM {source} '  # noqa: S608 - quoted source, integer times, escaped ids
                 f'WHERE time > {to_ms(now - WEEK)}ms AND time <= {end}ms AND "point" =~ /^({chosen})$/ GROUP BY "point"')
        steps = _per_point(await client.query(f'SELECT median("elapsed") FROM ({inner}) GROUP BY "point"'))  # noqa: S608
    out: dict[str, PointCounts] = {}
    for point in week.keys() | last.keys():
        ms = last[point][0] if point in last else None
        out[point] = PointCounts(
            day=int(day[point][1] or 0) if point in day else 0,
            week=int(week[point][1] or 0) if point in week else 0,
            last=None if ms is None else datetime.fromtimestamp(ms / 1000, UTC),
            step=timedelta(seconds=float(steps[point][1])) if steps.get(point, (0, None))[1] else None,
        )
    return out
