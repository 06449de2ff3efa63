r"""The ``econome detect`` command: anomaly events from a history of readings.

::

    econome detect --inventory examples/commune.yaml --readings readings.csv --out events.jsonl
    econome detect --inventory examples/commune.yaml --readings readings.csv --out events.jsonl \\
        --from 2026-01-01 --language en --no-rule-events   # the forests alone
    ECONOME_INFLUX_URL=http://influx:8086 econome detect ... --influx      # also write to InfluxDB
    econome detect ... --influx-url http://127.0.0.1:8086 --influx-db econome
    econome detect --inventory examples/commune.yaml --readings today.csv --out new.jsonl --state detect.state.npz
    econome detect --inventory examples/commune.yaml --from-influx --from 2026-01-01 --out events.jsonl

With ``--state FILE`` the run resumes from FILE (when it exists) and saves
to it: a second run over more data writes only the alerts opened, extended
or resolved since (see :mod:`anomalies.incremental`); ``--reset-state``
starts afresh. ``--to`` then stops the hours processed.

The CSV has the columns ``timestamp`` (ISO 8601 with offset), ``point`` and
``value``, with points as in the inventory: counters as cumulative indexes,
sensors as instantaneous values (the one format of :mod:`streams.history`,
written by ``econome simulate`` and ``econome export``). With
``--from-influx`` the same readings are read from the InfluxDB of ``econome
run`` instead, from ``--since`` (default: ``--from`` minus 8 weeks of
history) to ``--until`` (default: ``--to``, or now). Each line of the output is one event (see
:meth:`anomalies.events.AnomalyEvent.to_json`). Advisors use it to backtest:
"how often would this have fired last year?".

With ``--influx`` (or ``--influx-url``/``--influx-db``, which imply it) the
events also go to InfluxDB (measurement ``anomaly``), with the expected
against observed consumption of every building × usage with a model
(measurement ``expected``, :mod:`anomalies.expected_sink`), for Grafana.
InfluxDB is the one of ``econome run``: the ``ECONOME_INFLUX_*`` settings
(API v1 or v2, credentials, TLS; see :mod:`econome.settings`);
``--influx-url`` replaces ``ECONOME_INFLUX_URL`` and ``--influx-db``
replaces ``ECONOME_INFLUX_DATABASE`` (v1) or ``ECONOME_INFLUX_BUCKET`` (v2).
Rewriting the same hours overwrites their points. Point ids the inventory
does not know are counted and named on stderr and ignored; the inventory's
points without any reading in a ``--readings`` file are named on stderr and their
missing data is not judged. ``--from-influx`` judges every point, as the live
service of ``econome run`` does: InfluxDB collects them all.
Exit codes: 2 a bad inventory or setting, 3 unreadable readings or none of a
point of the inventory, 4 InfluxDB refused or unreachable.

:func:`register` adds the command to the main app.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer

from econome._common import EXIT_CONFIG, atomic_path, plausible_day, writable_or_exit
from econome._common import load_or_exit as _load
from econome._progress import progress
from econome._readings import ReadingSource, influx_config
from streams.errors import SinkError, TelemetryError

if TYPE_CHECKING:
    from collections.abc import Callable

    from anomalies.detect import DetectConfig, ExpectedSeries
    from anomalies.events import AnomalyEvent, Language
    from anomalies.features import PointSeries
    from inventory import Inventory
    from streams.influx import InfluxConfig

__all__ = ["register"]

_EXIT_DATA = 3
_EXIT_SINK = 4


def register(app: typer.Typer) -> None:
    """Add ``detect`` to an app.

    >>> app = typer.Typer()
    >>> register(app)
    >>> [c.name for c in app.registered_commands]
    ['detect']
    """
    app.command("detect")(detect_command)




def _day(text: str | None, tz: object) -> datetime | None:
    if text is None:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError as exc:
        msg = f"{text!r} is not a date (YYYY-MM-DD)"
        raise typer.BadParameter(msg) from exc
    plausible_day(day, "date")
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)  # type: ignore[arg-type]  # a ZoneInfo


def _advance_state(
    inv: Inventory, data: dict[str, PointSeries], config: DetectConfig, path: Path, *, reset: bool,
    since: datetime | None, until: datetime | None, on_expected: Callable[[ExpectedSeries], None] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None, unjudged: frozenset[str] = frozenset(),
) -> list[AnomalyEvent]:
    """Resume from ``path`` (or start afresh), advance over the readings, save; the transitions."""
    from anomalies.incremental import DetectorState, advance

    try:
        state = DetectorState.fresh(config) if reset or not path.exists() else DetectorState.load(path)
        result = advance(inv, data, state, until, config=config, on_expected=on_expected, progress=on_progress,
                         unjudged=unjudged)
    except TelemetryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=_EXIT_DATA) from exc
    state.save(path)
    return [e for e in result.events if since is None or e.end > since]


def detect_command(
    inventory: Annotated[Path, typer.Option("--inventory", help="Inventory YAML file.")],
    out: Annotated[Path, typer.Option("--out", help="JSON-lines file of anomaly events.")],
    readings: Annotated[
        Path | None, typer.Option("--readings", help="CSV: timestamp,point,value (econome simulate, econome export).")
    ] = None,
    from_influx: Annotated[
        bool, typer.Option("--from-influx", help="Read the readings from InfluxDB (ECONOME_INFLUX_*), --since to --until.")
    ] = False,
    read_since: Annotated[str | None, typer.Option(
        "--since", help="With --from-influx: first local date read (default: --from minus 8 weeks of history).")] = None,
    read_until: Annotated[str | None, typer.Option(
        "--until", help="With --from-influx: local date read up to, excluded (default: --to, or now).")] = None,
    language: Annotated[str, typer.Option("--language", help="Language of the explanations: fr or en.")] = "fr",
    since: Annotated[str | None, typer.Option("--from", help="Keep events ending after this local date.")] = None,
    until: Annotated[str | None, typer.Option("--to", help="Keep events starting before this local date.")] = None,
    models: Annotated[
        bool, typer.Option("--models/--no-models", help="Fit the expected-consumption models and isolation forests.")
    ] = True,
    rule_events: Annotated[
        bool, typer.Option("--rule-events/--no-rule-events", help="Raise events from the rules.")
    ] = True,
    model_events: Annotated[
        bool, typer.Option("--model-events/--no-model-events", help="Raise events from the forests (consumption above expected).")
    ] = True,
    state: Annotated[Path | None, typer.Option(
        "--state", help="Resume from and save to this state file: only new transitions are written.")] = None,
    reset_state: Annotated[bool, typer.Option("--reset-state", help="Ignore an existing --state file.")] = False,
    influx: Annotated[
        bool, typer.Option("--influx", help="Also write the events and expected values to InfluxDB (ECONOME_INFLUX_*).")
    ] = False,
    influx_url: Annotated[str | None, typer.Option("--influx-url", help="InfluxDB URL (implies --influx).")] = None,
    influx_db: Annotated[
        str | None, typer.Option("--influx-db", help="InfluxDB database, or v2 bucket (implies --influx).")
    ] = None,
) -> None:
    """Detect anomalies in a history of readings and write them as JSON lines."""
    # Imported here: scikit-learn costs a second at start-up, and only this command needs it.
    from anomalies.detect import DetectConfig, detect, write_events_jsonl
    from inventory.bookings import BookingsError

    if language not in ("fr", "en"):
        msg = "--language must be fr or en"
        raise typer.BadParameter(msg)
    source = ReadingSource(readings, from_influx)
    writable_or_exit(out)
    if state is not None:
        writable_or_exit(state, "--state")
    inv = _load(inventory)
    tz = inv.organisation.tz
    if from_influx:
        source = ReadingSource(None, True, influx_config(influx_url, influx_db))
        data = source.load(inv, *_read_range(since, until, read_since, read_until, tz))
    else:  # the whole file
        data = source.load(inv, datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))
    # A file of counters and weather (econome simulate's default) says nothing of the sensors: not judged.
    # InfluxDB collects every point of the inventory: one without a reading there is missing data.
    unread = [] if from_influx else source.unread(inv, data)
    if unread:
        more = f", and {len(unread) - 5} more" if len(unread) > 5 else ""
        typer.echo(f"{len(unread)} point(s) have no reading in {source.where}: missing data not judged for them "
                   f"({', '.join(unread[:5])}{more})", err=True)
    sink = influx_config(influx_url, influx_db) if influx or influx_url or influx_db else None
    config = DetectConfig(models=models, rule_events=rule_events, model_events=model_events)
    expected: list[ExpectedSeries] = []
    hook = expected.append if sink is not None else None
    try:
        with progress("detect") as report:
            if state is None:
                events = detect(inv, data, config, start=_day(since, tz), end=_day(until, tz), on_expected=hook,
                                progress=report, unjudged=frozenset(unread))
            else:
                events = _advance_state(inv, data, config, state, reset=reset_state, since=_day(since, tz),
                                        until=_day(until, tz), on_expected=hook, on_progress=report,
                                        unjudged=frozenset(unread))
    except BookingsError as exc:
        # A booking calendar the inventory names, missing or hostile: one line, as the inventory's own errors.
        typer.echo(f"error: {inventory}: booking calendar {exc}", err=True)
        raise typer.Exit(code=EXIT_CONFIG) from None
    lang: Language = "en" if language == "en" else "fr"
    with atomic_path(out) as part:
        count = write_events_jsonl(events, part, lang)
    kinds = Counter(e.kind for e in events)
    typer.echo(f"{count} events written to {out}")
    if sink is not None:
        try:
            points = asyncio.run(_write_influx(sink, events, expected, lang))
        except SinkError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=_EXIT_SINK) from exc
        where = sink.bucket if sink.api == "v2" else sink.database
        typer.echo(f"{count} events and {points} expected points written to InfluxDB {sink.safe_url} ({where})")
    typer.echo(json.dumps(dict(sorted(kinds.items()))))


_HISTORY = timedelta(weeks=8)
"""History read before ``--from`` by default: the references and models need weeks of material."""


def _read_range(
    since: str | None, until: str | None, read_since: str | None, read_until: str | None, tz: ZoneInfo
) -> tuple[datetime, datetime]:
    """The UTC range read from InfluxDB: ``--since``/``--until``, else ``--from`` minus the history to ``--to`` or now."""
    end = _day(read_until or until, tz) or datetime.now(UTC)
    start = _day(read_since, tz)
    if start is None:
        begin = _day(since, tz)
        if begin is None:
            msg = "with --from-influx, give --since (or --from) to say from when to read"
            raise typer.BadParameter(msg)
        start = begin - _HISTORY
    if end <= start:
        msg = f"nothing to read: {start.isoformat()} is not before {end.isoformat()}"
        raise typer.BadParameter(msg)
    return start, end


async def _write_influx(
    config: InfluxConfig, events: list[AnomalyEvent], expected: list[ExpectedSeries], language: Language
) -> int:
    """Write the events and the expected series; return the expected points written."""
    from anomalies.alerts import write_events
    from anomalies.expected_sink import write_expected
    from streams.influx import InfluxV1Writer, make_writer

    writer = make_writer(config)
    try:
        if isinstance(writer, InfluxV1Writer):
            # Asked to write: an unreachable or refusing InfluxDB is an error even with nothing to write.
            await writer.ensure_database()
        await write_events(writer, events, language)
        return await write_expected(writer, expected, batch_size=config.batch_size)
    finally:
        await writer.close()
