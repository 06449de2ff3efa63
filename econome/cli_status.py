"""The ``econome status`` command: what a technical service checks first, in a terminal, without Grafana.

::

    econome status commune.yaml                          # one line per building, worst first
    econome status commune.yaml --building ecole-jaures  # that building, with each of its points
    econome status commune.yaml --json                   # one JSON object, for scripts and monitoring
    econome status commune.yaml --min-completeness 0.95

It reads the settings of ``econome run`` (``ECONOME_INFLUX_*``,
``ECONOME_DATA_DIR``; see :mod:`econome.settings`) and shows:

- per building: its last reading (local time of the organisation, and age),
  its completeness over the last 24 hours and 7 days, its stale points by
  name, and its open alerts (count and the kind of the worst, by score) from
  the live service's register (``data_dir/detect/alerts.sqlite``,
  :mod:`anomalies.notify`); definitions in :mod:`streams.status`;
- the delivery log (``data_dir/delivery.sqlite``): rows waiting for InfluxDB
  and the age of the oldest reading waiting; the dead letters kept
  (``data_dir/dead-letters.jsonl`` and its rotations); the last hour live
  detection processed (``data_dir/detect/*.npz``), a problem when it is more
  than two periods plus the delay behind (``2 * ECONOME_DETECT_EVERY +
  ECONOME_DETECT_DELAY``, with detection enabled);
- the mail outbox (``data_dir/detect/alerts.sqlite``): mails pending, the
  oldest, the last error, mails failed for good; a problem when a pending
  mail has an error (the server refuses or is down), or a mail failed to an
  address still a recipient of the inventory, about an alert not acknowledged
  (``econome alerts ack`` or fixing the address ends the problem), or a daily
  digest the server did not take was not sent since.

Local files are only read, never written, so the command is safe beside a
running ``econome run``. InfluxDB answers three InfluxQL queries whatever the
size of the portfolio (1.x, and 2.x through its DBRP mapping).

Exit codes: 0 all is well; 1 a building has stale points or a 24-hour
completeness under ``--min-completeness`` (default 0.9), or detection is
behind, or alert mails are not delivered (``service_problems`` in ``--json``); 2 a bad inventory,
setting or ``--building``; 4 InfluxDB unreachable or refusing the queries
(named), after printing what the local files tell.

:func:`register` adds the command to the main app.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from econome._common import EXIT_CONFIG
from econome._common import load_or_exit as _load
from econome.settings import load_settings
from streams.buffer import DeliveryLog
from streams.deadletter import DeadLetterStore
from streams.errors import SinkError, TelemetryError
from streams.influx import InfluxQLClient
from streams.quality import StalenessLimits
from streams.status import BuildingStatus, PointCounts, building_statuses, raw_retention_policy, read_point_counts, worst_first

if TYPE_CHECKING:
    from collections.abc import Collection
    from zoneinfo import ZoneInfo

    from inventory import Inventory
    from streams.influx import InfluxConfig

__all__ = ["register"]

EXIT_PROBLEMS = 1
EXIT_INFLUX = 4
_STALE_SHOWN = 2  # stale points named on a building's line; --building names them all


def register(app: typer.Typer) -> None:
    """Add ``status`` to an app.

    >>> app = typer.Typer()
    >>> register(app)
    >>> [c.name for c in app.registered_commands]
    ['status']
    """
    app.command("status")(status_command)


def _age(delta: timedelta) -> str:
    """A short age: ``45 s``, ``12 min``, ``3 h 05 min``, ``2 d 4 h``.

    >>> _age(timedelta(hours=3, minutes=5))
    '3 h 05 min'
    """
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return f"in {_age(-delta)}"
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def _when(moment: datetime | None, now: datetime, tz: ZoneInfo) -> str:
    if moment is None:
        return "none in 7 d"
    return f"{moment.astimezone(tz):%Y-%m-%d %H:%M} ({_age(now - moment)})"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


# -- the local files ----------------------------------------------------------------------


def _delivery(path: Path, now: datetime) -> tuple[str, dict[str, Any]]:
    if not path.exists():
        return f"delivery log   {path}: absent (econome run has not run with this ECONOME_DATA_DIR)", {
            "path": str(path), "exists": False}  # fmt: skip
    try:
        depth = DeliveryLog.inspect(path)
    except SinkError as exc:
        return f"delivery log   {exc}", {"path": str(path), "exists": True, "error": str(exc)}
    data: dict[str, Any] = {
        "path": str(path), "exists": True, "rows_waiting": depth.rows, "readings_waiting": depth.readings,
        "lines_waiting": depth.lines, "oldest_waiting": None if depth.oldest is None else depth.oldest.isoformat(),
        "oldest_age_s": None if depth.oldest is None else round((now - depth.oldest).total_seconds()),
    }  # fmt: skip
    line = f"delivery log   {depth.rows} rows waiting for InfluxDB"
    if depth.rows:
        line += f" ({depth.readings} readings, {depth.lines} aggregate lines"
        if depth.oldest is not None:
            line += f"; oldest reading {_age(now - depth.oldest)} old"
        line += ")"
    return f"{line}  [{path}]", data


def _dead_letters(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        counts = DeadLetterStore.stored_counts(path)
    except OSError as exc:
        return f"dead letters   {path}: not readable ({exc})", {"path": str(path), "error": str(exc)}
    total = sum(counts.values())
    detail = f" ({', '.join(f'{source} {n}' for source, n in sorted(counts.items()))})" if total else ""
    return f"dead letters   {total}{detail}  [{path}]", {"path": str(path), "count": total, "by_source": dict(counts)}


def _detection(
    folder: Path, now: datetime, tz: ZoneInfo, late_after: timedelta | None = None,
    inventory: Inventory | None = None, lagged_every: timedelta = timedelta(0),
) -> tuple[list[str], list[dict[str, Any]]]:
    """The detection lines and JSON; a state whose last hour is more than ``late_after`` (+ its lag) old is a problem.

    A building judged a day or more late is advanced once per ``lagged_every`` (``ECONOME_DETECT_LAGGED_EVERY``):
    it may be behind by that much more.

    The live service keeps one state per building (``detect/state/<building>.npz``):
    one line sums them up (the oldest last hour, the buildings behind; each building's lag from ``inventory``,
    :func:`anomalies.alerts.building_lag`); a state file of its own in
    ``detect/`` (an ``econome detect`` state, or one from before per-building states) gets a line of its own.
    """
    files = sorted(folder.glob("*.npz")) if folder.is_dir() else []
    per_building = sorted((folder / "state").glob("*.npz")) if (folder / "state").is_dir() else []
    if not files and not per_building:
        return [f"detection      no state in {folder}: live detection has not run yet"], []
    # Imported only when there is a state to read: it brings scikit-learn, seconds of start-up.
    from anomalies.alerts import building_lag
    from anomalies.incremental import DetectorState
    from anomalies.live import state_lag

    lags = {b.id: building_lag(b) for _, b in inventory.buildings()} if inventory is not None else {}
    if inventory is not None:  # the state of a building taken out of the inventory is no longer advanced
        per_building = [p for p in per_building if p.stem in lags]
    lines: list[str] = []
    data: list[dict[str, Any]] = []
    behind: list[tuple[str, str]] = []
    for path in [*files, *per_building]:
        try:
            last = DetectorState.peek_last_hour(path)
        except TelemetryError as exc:
            lines.append(f"detection      {exc}")
            data.append({"path": str(path), "error": str(exc)})
            continue
        # A state of buildings judged late (a Linky, a Gazpar: anomalies.live.lag_groups) is behind by its lag more.
        lag = lags.get(path.stem, timedelta(0)) if path.parent != folder else state_lag(path)
        if lag >= timedelta(days=1):
            lag += lagged_every  # advanced once a day, at its own hour
        late = late_after is not None and last is not None and now - last > late_after + lag
        because = "2 periods + delay" + (f" + the utilities' {_age(lag)}" if lag else "")
        problem = f"behind: more than {_age(late_after + lag)} ({because})" if late and late_after else None
        data.append({"path": str(path), "last_hour": None if last is None else last.isoformat(),
                     "lag_s": None if last is None else (now - last).total_seconds(), "problem": problem})
        if path.parent != folder:
            if problem:
                behind.append((path.stem, problem))
            continue
        shown = "no hour yet" if last is None else f"{last.astimezone(tz):%Y-%m-%d %H:%M} ({_age(now - last)} ago)"
        lines.append(f"detection      last hour processed up to {shown}{'  PROBLEM ' + problem if problem else ''}"
                     f"  [{path}]")
    hours = [(datetime.fromisoformat(d["last_hour"]), Path(d["path"]).stem) for d in data
             if d.get("last_hour") and Path(d["path"]).parent != folder]
    if per_building:
        if hours:
            oldest, who = min(hours)
            shown = f"{oldest.astimezone(tz):%Y-%m-%d %H:%M} ({_age(now - oldest)} ago, {who})"
        else:
            shown = "no hour yet"
        problem = ""
        if behind:
            named = ", ".join(b for b, _ in behind[:5]) + (", ..." if len(behind) > 5 else "")
            problem = f"  PROBLEM {len(behind)} behind ({named}): {behind[0][1]}"
        many = "s" if len(per_building) != 1 else ""
        lines.append(f"detection      {len(per_building)} building{many}, last hour processed up to {shown} at the "
                     f"oldest{problem}  [{folder / 'state'}]")
    return lines, data


def _outbox(path: Path, now: datetime, tz: ZoneInfo, recipients: Collection[str]) -> tuple[str, dict[str, Any]]:
    """The outbox line and JSON: pending mails, the oldest, the last error, failed mails.

    ``problem`` is set when mails are failing (a pending mail with an error) or failed for good to one of
    ``recipients`` (the inventory's addresses) about an alert nobody acknowledged: a failed mail is never
    sent again, so it kept the exit code at 1 for ever, the address fixed and the alert seen.
    """
    if not path.exists():
        return f"outbox         no mail yet (no {path})", {"path": str(path), "pending": 0, "failed": 0, "problem": None}
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)) as db:
            pending, oldest = db.execute("SELECT COUNT(*), MIN(created) FROM outbox WHERE status = 'pending'").fetchone()
            failed = db.execute("SELECT COUNT(*) FROM outbox WHERE status = 'failed'").fetchone()[0]
            wanted = {r.casefold() for r in recipients}
            unfixed = [r for (r,) in db.execute("SELECT o.recipient FROM outbox o JOIN alerts a ON a.id = o.alert_id"
                                                " WHERE o.status = 'failed' AND a.acked_by IS NULL")
                       if r.casefold() in wanted]
            row = db.execute("SELECT last_error FROM outbox WHERE status IN ('pending', 'failed')"
                             " AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1").fetchone()
            digests = _digests_not_delivered(db)
    except sqlite3.Error as exc:
        message = f"{path}: not readable ({exc})"
        return f"outbox         PROBLEM {message}", {"path": str(path), "error": message, "problem": message}
    error = row[0] if row else None
    problems = []
    if unfixed:
        problems.append(f"{len(unfixed)} failed for good (to {', '.join(sorted(set(unfixed))[:3])})")
    if pending and error:
        problems.append("mails not delivered")
    if digests:
        problems.append(f"{len(digests)} digest{'' if len(digests) == 1 else 's'} not delivered")
        error = error or digests[0][1]
    problem = ", ".join(problems) or None
    since = "" if oldest is None else f", oldest {_when(datetime.fromisoformat(oldest), now, tz)}"
    line = f"outbox         {pending} pending{since}, {failed} failed"
    if error:
        line += f", last error: {error}"
    if problem:
        line += f"  PROBLEM {problem}"
    data = {"path": str(path), "pending": pending, "oldest": oldest, "failed": failed, "last_error": error,
            "digests_not_delivered": len(digests), "problem": problem}
    return f"{line}  [{path}]", data


def _digests_not_delivered(db: sqlite3.Connection) -> list[tuple[str, str]]:
    """(recipient, error) of each daily digest the server did not take and that was not sent since, newest first.

    A register written before digest failures were recorded has no such table: none known.
    """
    try:
        rows = db.execute(
            "SELECT f.recipient, f.error FROM digest_failures f LEFT JOIN digests d"
            " ON d.recipient = f.recipient AND d.local_date = f.local_date WHERE d.recipient IS NULL ORDER BY f.at DESC"
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    return [(str(r), str(e)) for r, e in rows]


def _alerts(path: Path) -> tuple[str, dict[str, Any], dict[str, tuple[int, str]]]:
    """The status line, the JSON and, per building, (open alerts, kind of the worst)."""
    from anomalies.notify import AlertRegister

    if not path.exists():
        return (f"alerts         live detection has not run yet (no {path})",
                {"path": str(path), "exists": False}, {})  # fmt: skip
    try:
        alerts = AlertRegister(path, read_only=True).alerts()
    except sqlite3.Error as exc:
        message = f"{path}: not readable ({exc})"
        return f"alerts         {message}", {"path": str(path), "exists": True, "error": message}, {}
    per_building: dict[str, tuple[int, str]] = {}
    worst: dict[str, tuple[float, float]] = {}
    for alert in alerts:
        event = alert.event
        count, kind = per_building.get(alert.building, (0, event.kind))
        rank = (event.score, event.excess_eur)
        if alert.building not in worst or rank > worst[alert.building]:
            worst[alert.building], kind = rank, event.kind
        per_building[alert.building] = (count + 1, kind)
    line = f"alerts         {len(alerts)} open in {len(per_building)} building{'' if len(per_building) == 1 else 's'}  [{path}]"
    return line, {"path": str(path), "exists": True, "open": len(alerts)}, per_building


# -- InfluxDB ------------------------------------------------------------------------------


async def _influx_counts(config: InfluxConfig, now: datetime, last_within: timedelta,
                         utility: list[str] | None = None) -> dict[str, PointCounts]:
    client = InfluxQLClient(config)
    try:
        policy = await raw_retention_policy(client, config)
        return await read_point_counts(client, now, retention_policy=policy, last_within=last_within, steps_of=utility or ())
    finally:
        await client.close()


# -- output --------------------------------------------------------------------------------


def _building_line(s: BuildingStatus, width: int, now: datetime, tz: ZoneInfo) -> str:
    if s.points is None:
        reading, day, week, stale = "?", "?", "?", "?"
    else:
        reading, day, week = _when(s.last, now, tz), _percent(s.completeness_24h), _percent(s.completeness_7d)
        names = s.stale_points
        stale = ", ".join(names[:_STALE_SHOWN]) + (f" (+{len(names) - _STALE_SHOWN})" if len(names) > _STALE_SHOWN else "")
        stale = stale or "-"
    alerts = f"{s.open_alerts} {s.worst_alert}" if s.open_alerts else "-"
    return f"{s.id:<{width}}  {reading:<28} {day:>8} {week:>8}  {stale:<40} {alerts}"


def _points_table(s: BuildingStatus, now: datetime, tz: ZoneInfo) -> list[str]:
    if s.points is None:
        return []
    width = max((len(p.id) for p in s.points), default=5)
    out = ["", f"{'point':<{width}}  {'quantity':<16} {'last reading':<28} {'24 h received/expected':>24} "
               f"{'7 d received/expected':>24}  stale after"]  # fmt: skip
    for p in s.points:
        day = f"{p.received_24h}/{p.expected_24h:g}"
        week = f"{p.received_7d}/{p.expected_7d:g}"
        flag = f"{_age(p.silent_after)}" + ("  STALE" if p.stale else "")
        out.append(f"{p.id:<{width}}  {p.quantity:<16} {_when(p.last, now, tz):<28} {day:>24} {week:>24}  {flag}")
    return out


def status_command(
    inventory: Annotated[Path, typer.Argument(help="Inventory YAML file.")],
    building: Annotated[str | None, typer.Option("--building", help="Only this building, with its points.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead of text.")] = False,
    min_completeness: Annotated[
        float,
        typer.Option(
            "--min-completeness",
            min=0.0,
            max=1.0,
            help="24-hour completeness under which a building is a problem (exit 1).",
        ),
    ] = 0.9,
) -> None:
    """Per building: last reading, completeness over 24 h and 7 days, stale points, open alerts; delivery log depth."""
    from anomalies.notify import alerts_path

    inv = _load(inventory)
    try:
        settings = load_settings()
    except TelemetryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=EXIT_CONFIG) from None
    chosen = None
    if building is not None:
        try:
            chosen = [inv.building(building)]
        except KeyError:
            typer.echo(f"error: unknown building {building!r} (not in {inventory})", err=True)
            raise typer.Exit(code=EXIT_CONFIG) from None
    tz = inv.organisation.tz
    now = datetime.now(UTC)
    data_dir = settings.data_dir
    delivery_line, delivery = _delivery(data_dir / "delivery.sqlite", now)
    letters_line, letters = _dead_letters(data_dir / "dead-letters.jsonl")
    late_after = 2 * settings.detect_every + settings.detect_delay
    lagged = settings.detect_lagged_every if settings.detect_lagged_every > settings.detect_every else timedelta(0)
    detection_lines, detection = _detection(data_dir / "detect", now, tz, late_after if settings.detect_enabled else None,
                                            inv, lagged)
    alerts_line, alerts, per_building = _alerts(alerts_path(data_dir))
    recipients = set() if inv.email is None else {
        *inv.email.default_recipients, *(a for _, b in inv.buildings() for a in b.advisors)}
    outbox_line, outbox = _outbox(alerts_path(data_dir), now, tz, recipients)
    service_problems = [f"detection: {d['problem']}" for d in detection if d.get("problem")]
    if outbox.get("problem"):
        service_problems.append(f"outbox: {outbox['problem']}")

    config = settings.influx()
    where = config.bucket if config.api == "v2" else config.database
    influx_error: str | None = None
    counts: dict[str, PointCounts] | None = None
    try:
        # A point silent longer than a week by design (a Gazpar published monthly) is looked for further back.
        limits = StalenessLimits()
        last_within = max((limits.missing_after(p) for _, p in inv.points()), default=timedelta(0))
        counts = asyncio.run(_influx_counts(config, now, last_within, [p.id for _, p in inv.points() if p.is_utility]))
    except SinkError as exc:
        influx_error = str(exc) if config.safe_url in str(exc) else f"InfluxDB {config.safe_url}: {exc}"
    statuses = [
        _with_alerts(s, per_building) for s in building_statuses(inv, counts, now, buildings=chosen)
    ]  # fmt: skip
    ordered = worst_first(statuses, min_completeness)
    troubled = [s for s in ordered if s.problems(min_completeness)]
    code = EXIT_INFLUX if influx_error else EXIT_PROBLEMS if troubled or service_problems else 0

    if as_json:
        typer.echo(json.dumps({
            "time": now.isoformat(), "organisation": inv.organisation.name, "timezone": str(tz),
            "min_completeness": min_completeness,
            "influxdb": {"url": config.safe_url, "database": where, "error": influx_error},
            "delivery_log": delivery, "dead_letters": letters, "detection": detection, "alerts": alerts,
            "outbox": outbox, "service_problems": service_problems,
            "buildings": [s.to_json(now, min_completeness, with_points=chosen is not None) for s in ordered],
            "problems": {s.id: s.problems(min_completeness) for s in troubled},
            "exit_code": code,
        }, ensure_ascii=False))  # fmt: skip
        raise typer.Exit(code=code)

    typer.echo(f"{inv.organisation.name}: status at {now.astimezone(tz):%Y-%m-%d %H:%M %Z}")
    for line in (delivery_line, letters_line, *detection_lines, alerts_line, outbox_line):
        typer.echo(line)
    if influx_error is not None:
        typer.echo(f"influxdb       {influx_error}")
        typer.echo(f"error: {influx_error}", err=True)
    else:
        typer.echo(f"influxdb       {config.safe_url} ({where}): readings of {len(counts or {})} points in the last 7 days")
    width = max([len("building"), *(len(s.id) for s in ordered)])
    typer.echo("")
    typer.echo(f"{'building':<{width}}  {'last reading':<28} {'24 h':>8} {'7 d':>8}  {'stale points':<40} open alerts")
    for s in ordered:
        typer.echo(_building_line(s, width, now, tz))
    if chosen is not None:
        for line in _points_table(ordered[0], now, tz):
            typer.echo(line)
    typer.echo("")
    if influx_error is not None:
        typer.echo(f"{len(ordered)} buildings: readings unknown (InfluxDB not read)")
    else:
        typer.echo(
            f"{len(ordered)} buildings, {len(troubled)} with stale points or a 24 h completeness under "
            f"{100 * min_completeness:.0f} %"
        )
    raise typer.Exit(code=code)


def _with_alerts(status: BuildingStatus, per_building: dict[str, tuple[int, str]]) -> BuildingStatus:
    if status.id not in per_building:
        return status
    count, kind = per_building[status.id]
    return replace(status, open_alerts=count, worst_alert=kind)
