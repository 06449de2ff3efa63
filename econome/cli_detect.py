r"""The ``econome detect`` command: anomaly events from a history of readings.

::

    econome detect --inventory examples/commune.yaml --readings readings.csv --out events.jsonl
    econome detect --inventory examples/commune.yaml --readings readings.csv --out events.jsonl \\
        --from 2026-01-01 --language en --no-rule-events   # the forests alone

The CSV has the columns ``timestamp`` (ISO 8601 with offset), ``point`` and
``value``, with points as in the inventory: counters as cumulative indexes,
sensors as instantaneous values. Each line of the output is one event (see
:meth:`anomalies.events.AnomalyEvent.to_json`). Advisors use it to backtest:
"how often would this have fired last year?".

:func:`register` adds the command to the main app.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from econome._common import load_or_exit as _load
from streams.errors import TelemetryError

if TYPE_CHECKING:
    from anomalies.events import Language

__all__ = ["register"]

_EXIT_DATA = 3


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
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)  # type: ignore[arg-type]  # a ZoneInfo


def detect_command(
    inventory: Annotated[Path, typer.Option("--inventory", help="Inventory YAML file.")],
    readings: Annotated[Path, typer.Option("--readings", help="CSV: timestamp,point,value.")],
    out: Annotated[Path, typer.Option("--out", help="JSON-lines file of anomaly events.")],
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
) -> None:
    """Detect anomalies in a history of readings and write them as JSON lines."""
    # Imported here: scikit-learn costs a second at start-up, and only this command needs it.
    from anomalies.detect import DetectConfig, detect, read_readings_csv, write_events_jsonl

    if language not in ("fr", "en"):
        msg = "--language must be fr or en"
        raise typer.BadParameter(msg)
    inv = _load(inventory)
    if not readings.exists():
        typer.echo(f"error: {readings}: no such file", err=True)
        raise typer.Exit(code=_EXIT_DATA)
    try:
        data = read_readings_csv(readings)
    except TelemetryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=_EXIT_DATA) from exc
    tz = inv.organisation.tz
    config = DetectConfig(models=models, rule_events=rule_events, model_events=model_events)
    events = detect(inv, data, config, start=_day(since, tz), end=_day(until, tz))
    lang: Language = "en" if language == "en" else "fr"
    count = write_events_jsonl(events, out, lang)
    kinds = Counter(e.kind for e in events)
    typer.echo(f"{count} events written to {out}")
    typer.echo(json.dumps(dict(sorted(kinds.items()))))
