"""The ``econome alerts`` commands: list, acknowledge and mute the alerts of the live service.

::

    econome alerts list                       # open alerts: id, building, kind, since, cost, state, acked/muted,
                                              # and "mail failed to …" for a mail the server refused for good (5xx)
    econome alerts list --all --building gymnase-batum
    econome alerts ack 12 --by "M. Durand"    # listed in the digest as acknowledged, no longer reminded
    econome alerts mute gymnase-batum --inventory commune.yaml --until 2026-02-01 --why "travaux chaufferie"
    econome alerts mute ecole-jaures --inventory commune.yaml --kind water_leak --until "2026-01-20 18:00"
    econome alerts unmute gymnase-batum

They work on the service's register, ``$ECONOME_DATA_DIR/detect/alerts.sqlite``
(:mod:`anomalies.notify`), so what they change lasts across restarts and the
running service sees it at its next flush. ``--until DATE`` mutes through the
end of that local day; ``--until DATETIME`` without an offset is local time
of the organisation. Operator mutes add to the inventory's ``mute:`` windows
(which keep detection itself quiet). An unknown building, kind or alert id is a
one-line error naming it, exit 2; so is a mute when the register does not exist
(a shell without the service's ``ECONOME_DATA_DIR``: nobody would read it).

:func:`register` adds the sub-app to the main app.
"""

from __future__ import annotations

import getpass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer

from econome._common import EXIT_CONFIG, FIRST_DAY, LAST_DAY
from econome._common import load_or_exit as _load
from econome.settings import load_settings
from streams.errors import TelemetryError

if TYPE_CHECKING:
    from inventory import Inventory

__all__ = ["alerts_app", "register"]

alerts_app = typer.Typer(no_args_is_help=True, help="Alerts of the live service: list, acknowledge, mute.")


def register(app: typer.Typer) -> None:
    """Add ``alerts`` to an app.

    >>> app = typer.Typer()
    >>> register(app)
    >>> [g.name for g in app.registered_groups]
    ['alerts']
    """
    app.add_typer(alerts_app, name="alerts")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=EXIT_CONFIG)


def _register_path() -> Path:
    from anomalies.notify import alerts_path

    try:
        settings = load_settings()
    except TelemetryError as exc:
        raise _fail(str(exc)) from None
    return alerts_path(settings.data_dir)


def _operator(by: str | None) -> str:
    if by:
        return by
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


@alerts_app.command("list")
def list_command(
    all_: Annotated[bool, typer.Option("--all", help="Also the resolved alerts.")] = False,
    building: Annotated[str | None, typer.Option(help="Only this building.")] = None,
    inventory: Annotated[Path | None, typer.Option(help="Inventory, to check the building's id.")] = None,
) -> None:
    """The alerts of the register (open ones unless --all), oldest first."""
    from anomalies.notify import AlertRegister

    if inventory is not None and building is not None:
        _check_building(_load(inventory), building)
    path = _register_path()
    if not path.exists():
        typer.echo(f"no alert yet ({path} does not exist: the service has not run)")
        return
    reg = AlertRegister(path, read_only=True)  # a reader: never waits behind the service's writes
    now = datetime.now(UTC)
    mutes = reg.mutes(now)
    alerts = reg.alerts(include_resolved=all_, building=building)
    if building is not None and inventory is None and not reg.alerts(include_resolved=True, building=building):
        # A typo lists nothing, as a building without alerts does: say which it may be.
        known = sorted({a.building for a in reg.alerts(include_resolved=True)})
        typer.echo(f"note: no alert of building {building!r} was ever registered"
                   + (f" (buildings with alerts: {', '.join(known[:10])}{', ...' if len(known) > 10 else ''})"
                      if known else "")
                   + "; --inventory checks the id", err=True)
    failed: dict[int, list[str]] = {}
    for mail in reg.failed_mails():
        failed.setdefault(mail.alert_id, []).append(mail.recipient)
    typer.echo(f"{'id':>5}  {'building':<24} {'kind':<22} {'since':<16} {'cost':>8}  {'state':<9} acked/muted")
    for alert in alerts:
        event = alert.event
        since = event.start.astimezone(ZoneInfo(event.timezone))
        notes = []
        if alert.acked_by is not None:
            notes.append(f"acked by {alert.acked_by}")
        running = [m for m in mutes if m.covers(alert.building, alert.kind, now)]
        if running:
            notes.append(f"muted until {max(m.until for m in running).astimezone(since.tzinfo):%Y-%m-%d %H:%M}")
        elif alert.muted:
            notes.append("muted")
        if alert.id in failed:
            notes.append(f"mail failed to {', '.join(failed[alert.id])}")
        cost = f"{event.excess_eur:,.0f} €" if event.excess_eur > 0 else "-"
        typer.echo(
            f"{alert.id:>5}  {alert.building:<24} {alert.kind:<22} {since:%Y-%m-%d %H:%M} {cost:>8}  "
            f"{alert.state.value:<9} {', '.join(notes)}"
        )
    typer.echo(f"{len(alerts)} alerts")


@alerts_app.command("ack")
def ack_command(
    alert_id: Annotated[int, typer.Argument(help="The alert's id, as `econome alerts list` prints it.")],
    by: Annotated[str | None, typer.Option(help="Who acknowledges (default: the user).")] = None,
) -> None:
    """Acknowledge an alert: the digest lists it as acknowledged and stops reminding it."""
    from anomalies.notify import AlertRegister

    path = _register_path()
    if not path.exists():
        msg = f"no alert {alert_id}: {path} does not exist"
        raise _fail(msg)
    try:
        alert = AlertRegister(path).ack(alert_id, _operator(by), datetime.now(UTC))
    except (KeyError, OverflowError):  # OverflowError: past SQLite's 64-bit integers, no alert either
        msg = f"no alert {alert_id} in {path}"
        raise _fail(msg) from None
    typer.echo(f"alert {alert.id} ({alert.building}, {alert.kind}) acknowledged by {alert.acked_by}")


@alerts_app.command("mute")
def mute_command(
    building: Annotated[str, typer.Argument(help="The building's id.")],
    inventory: Annotated[Path, typer.Option(help="The inventory (checks the building; its timezone reads --until).")],
    until: Annotated[str, typer.Option(help="DATE (muted through that local day) or DATETIME (local unless offset).")],
    kind: Annotated[str | None, typer.Option(help="Only this kind of alert (default: all).")] = None,
    why: Annotated[str, typer.Option(help="Why, for the others.")] = "",
    by: Annotated[str | None, typer.Option(help="Who mutes (default: the user).")] = None,
) -> None:
    """Mute a building's alert mails (or one kind of them) until a date: no mail, no digest line."""
    from anomalies.events import EventKind
    from anomalies.notify import AlertRegister

    inv = _load(inventory)
    _check_building(inv, building)
    if kind is not None and kind not in {k.value for k in EventKind}:
        msg = f"unknown kind of alert {kind!r}; one of {', '.join(k.value for k in EventKind)}"
        raise _fail(msg)
    end = _until(until, inv.organisation.tz)
    now = datetime.now(UTC)
    if end <= now:
        msg = f"--until {until} is already past"
        raise _fail(msg)
    path = _register_path()
    if not path.exists():
        # Most likely a shell without the service's ECONOME_DATA_DIR: a register made here would be read by nobody.
        msg = (f"no alert register {path}: set ECONOME_DATA_DIR to the service's data directory "
               "(econome run makes it when it starts, with live detection on)")
        raise _fail(msg)
    mute = AlertRegister(path).mute(building, kind, end, _operator(by), why, now)
    what = f"{kind} alerts" if kind else "alerts"
    local = mute.until.astimezone(inv.organisation.tz)
    typer.echo(f"{what} of {building} muted until {local:%Y-%m-%d %H:%M %Z} by {mute.by}")


@alerts_app.command("unmute")
def unmute_command(
    building: Annotated[str, typer.Argument(help="The building's id.")],
    kind: Annotated[str | None, typer.Option(help="Only the mutes of this kind.")] = None,
) -> None:
    """Remove a building's operator mutes (the inventory's mute: windows stay)."""
    from anomalies.notify import AlertRegister

    path = _register_path()
    removed = AlertRegister(path).unmute(building, kind) if path.exists() else 0
    if removed == 0:
        raise _fail(f"no mute on building {building}" + (f" for {kind}" if kind else ""))
    typer.echo(f"{removed} mutes of {building} removed")


def _check_building(inv: Inventory, building: str) -> None:
    try:
        inv.building(building)
    except KeyError:
        msg = f"unknown building {building!r} (not in the inventory)"
        raise _fail(msg) from None


def _until(text: str, tz: ZoneInfo) -> datetime:
    """The end of a mute: a date mutes through that local day; a naive datetime is local."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        if not FIRST_DAY <= day <= LAST_DAY:  # 9999-12-31 + 1 day overflowed
            msg = f"--until {text!r} is outside {FIRST_DAY} .. {LAST_DAY}"
            raise _fail(msg) from None
        return datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        msg = f"--until {text!r} is neither a date (2026-02-01) nor a date and time (2026-02-01 18:00)"
        raise _fail(msg) from None
    if not FIRST_DAY <= moment.date() <= LAST_DAY:
        msg = f"--until {text!r} is outside {FIRST_DAY} .. {LAST_DAY}"
        raise _fail(msg) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(UTC)
