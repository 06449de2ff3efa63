"""The ``econome`` command.

::

    econome check examples/commune.yaml      # validate and summarise an inventory
    econome run examples/commune.yaml        # collect, write to InfluxDB and detect anomalies until stopped
    econome worker examples/commune.yaml     # ECONOME_RUNNER=faust: one faust worker, aggregating from Kafka
    econome demo --duration 60               # simulated commune + live service on local servers, e-mails
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import email
import email.policy
import functools
import importlib
import logging
import os
import shutil
import signal
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Protocol
from zoneinfo import ZoneInfo

import typer
from typer._click.exceptions import UsageError  # the click typer vendors, which TyperGroup raises
from typer.core import TyperGroup

from econome._common import EXIT_CONFIG, atomic_path, writable_or_exit
from econome._common import load_or_exit as _load
from econome._logging import RedactingFilter, env_secrets, setup_logging
from econome._memory import long_lived_frozen, tune_malloc
from econome._progress import progress
from inventory import Inventory, Point

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from aiosmtpd.smtp import Envelope
    from typer._click.core import Command, Context  # the click typer vendors, which TyperGroup's methods take

    from anomalies.detect import DetectConfig
    from anomalies.live import PassReport
    from anomalies.lock import DetectionLock
    from econome.settings import EconomeSettings
    from simulator.downloads import UtilityFiles
    from simulator.faults import Fault
    from simulator.utilities import UtilityInterval
    from streams.faust_runner import KafkaForwarder
    from streams.imports import Consumption
from streams.clock import Clock, ScaledClock, SystemClock
from streams.deadletter import DeadLetterStore
from streams.errors import ConfigError, DecodeError, SinkError, TelemetryError
from streams.influx import (
    RAW_MEASUREMENT,
    RAW_RP,
    InfluxConfig,
    InfluxQLClient,
    InfluxV1Writer,
    make_writer,
    setup_v1,
    write_splitting,
)
from streams.metrics import PrometheusSensor, Sensor
from streams.pipeline import Pipeline
from streams.quality import QualityTracker

__all__ = ["app", "epoch_clock", "main", "seed_history"]

logger = logging.getLogger("econome")

_LAZY_COMMANDS = {
    "mv": "econome.cli_mv",
    "report": "econome.cli_mv",
    "dashboards": "econome.cli_dashboards",
    "detect": "econome.cli_detect",
    "export": "econome.cli_export",
    "import": "econome.cli_import",
    "alerts": "econome.cli_alerts",
    "status": "econome.cli_status",
}
"""The commands (and groups) of the ``econome.cli_*`` modules, by name: each module's ``register(app)`` adds them."""


class _LazyGroup(TyperGroup):
    """The ``econome`` group: a command of an ``econome.cli_*`` module is imported when it is looked up.

    ``econome detect`` on a CSV file thus imports neither the M&V reports (weasyprint), nor the
    settings, InfluxDB's client or the collectors of the other commands (issue 11: ``detect`` on a
    building-year under 5 s; the imports were 1.1 s of it). ``econome --help`` lists them all.
    """

    def list_commands(self, ctx: Context) -> list[str]:
        """The commands defined here, then the lazy ones."""
        return [*super().list_commands(ctx), *(name for name in _LAZY_COMMANDS if name not in self.commands)]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        """The command ``cmd_name``, its module registered first if it is a lazy one."""
        module = _LAZY_COMMANDS.get(cmd_name)
        if cmd_name not in self.commands and module is not None:
            sub = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)
            importlib.import_module(module).register(sub)
            for name, command in typer.main.get_group(sub).commands.items():
                self.commands.setdefault(name, command)
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: Context, args: list[str]) -> tuple[str | None, Command | None, list[str]]:
        """TyperGroup's, with the lazy commands among the suggestions for a mistyped one (it knows the loaded ones)."""
        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:
            if args and "Did you mean" not in exc.message:
                matches = difflib.get_close_matches(args[0], self.list_commands(ctx))
                if matches:
                    exc.message = f"{exc.message.rstrip('.')}. Did you mean {', '.join(repr(m) for m in matches)}?"
            raise


# No locals in tracebacks: they would show settings, clients and environment values.
app = typer.Typer(
    cls=_LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Energy and water telemetry for municipal buildings.",
)

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "examples" / "commune.yaml"
"""The sample commune of the source tree, wherever the command runs from (``simulate`` and ``demo``)."""
_FIRST_PASS_WAIT_S = 300.0
"""How long ``econome demo`` waits, once stopped, for its first detection pass to finish (wall seconds)."""



def _setup_logging(level: str, settings: EconomeSettings | None = None) -> RedactingFilter:
    """Log format and levels, with every secret of the settings and the environment redacted."""
    redactor = setup_logging(level, env_secrets())
    if settings is not None:
        redactor.add(settings.secrets())
        if settings.influx_username and settings.influx_password is not None:
            redactor.add_basic_auth(settings.influx_username, settings.influx_password.get_secret_value())
    return redactor


def _inventory_secrets(inv: Inventory) -> list[str]:
    """The passwords the inventory reads from the environment: its MQTT brokers' and its SMTP server's."""
    names = [b.password_env for b in inv.mqtt_brokers if b.password_env]
    if inv.email is not None and inv.email.password_env:
        names.append(inv.email.password_env)  # any name, e.g. SMTP_PASS, not only ECONOME_*PASSWORD*
    return env_secrets(names)


@app.command()
def check(config: Annotated[Path, typer.Argument(help="Inventory YAML file.")]) -> None:
    """Validate an inventory file and print a summary of the portfolio."""
    inv = _load(config)
    broken = _booking_file_problems(inv)
    if broken:
        for line in broken:
            typer.echo(f"error: {config}: {line}", err=True)
        raise typer.Exit(code=EXIT_CONFIG)
    buildings = [b for _, b in inv.buildings()]
    protocols = Counter(point.protocol for _, point in inv.points())
    quantities = Counter(point.quantity.value for _, point in inv.points())
    typer.echo(f"{config}: OK")
    typer.echo(
        f"organisation   {inv.organisation.name} ({inv.organisation.population} inhabitants, "
        f"{inv.organisation.timezone}, school zone {inv.organisation.school_holiday_zone})"
    )
    typer.echo(f"sites          {len(inv.sites)}")
    typer.echo(f"buildings      {len(buildings)}")
    typer.echo(
        f"floor area     {sum(b.floor_area_m2 for b in buildings):,.0f} m2 "
        f"(heated {sum(b.heated_area_m2 for b in buildings):,.0f} m2)"
    )
    typer.echo(f"points         {sum(protocols.values())}: " + ", ".join(f"{n} {p}" for p, n in sorted(protocols.items())))
    typer.echo(f"gateways       {len(inv.modbus_gateways)} Modbus, {len(inv.mqtt_brokers)} MQTT broker(s)")
    typer.echo("quantities     " + ", ".join(f"{q} {n}" for q, n in sorted(quantities.items())))
    renovated = [b.id for b in buildings if b.renovations]
    if renovated:
        typer.echo(f"renovated      {', '.join(renovated)}")
    problem = _smtp_password_problem(inv)
    if problem is not None:
        typer.echo(f"warning: {problem}", err=True)
    problem = _school_calendar_problem(inv, datetime.now(inv.organisation.tz).date())
    if problem is not None:
        typer.echo(f"warning: {problem}", err=True)
    for problem in _summed_utility_problems(inv):
        typer.echo(f"warning: {problem}", err=True)


def _booking_file_problems(inv: Inventory) -> list[str]:
    """Booking calendars given as files that cannot be read or parsed, one line each naming building and file.

    Detection reads them at every pass: a missing file failed every pass of the whole portfolio (``econome run``)
    and stopped ``econome detect`` with a traceback, while ``econome check`` said OK. A URL is not fetched here
    (it may be reachable only from the service; a failing one keeps its last copy).
    """
    from inventory.bookings import BookingLoader, BookingsError

    loader = BookingLoader(inv.source_dir)
    problems = []
    for _, building in inv.buildings():
        bookings = building.schedule.bookings
        if bookings is None or bookings.ical.startswith(("http://", "https://")):
            continue
        try:
            loader.calendar(bookings.ical)
        except BookingsError as exc:
            problems.append(f"building {building.id}: schedule.bookings.ical: {exc}")
    return problems


def _summed_utility_problems(inv: Inventory) -> list[str]:
    """Buildings whose reports sum a Linky or Gazpar with a meter of ours of the same energy (one may be behind the other).

    The reports count an energy as the sum of its general meters (of all its meters when none is
    general): a Linky added to a building already metered by Modbus doubled its electricity.

    >>> from inventory import load_inventory
    >>> _summed_utility_problems(load_inventory(Path("examples/commune.yaml")))
    []
    """
    from inventory import Usage

    out: list[str] = []
    for _, building in inv.buildings():
        by_energy: dict[str, list[Point]] = {}
        for point in building.points:
            if point.energy is not None and point.cumulative:
                by_energy.setdefault(point.energy.value, []).append(point)
        for energy, points in by_energy.items():
            summed = [p for p in points if p.usage in (Usage.GENERAL, Usage.WATER)] or points
            utility = [p for p in summed if p.is_utility]
            if utility and len(utility) < len(summed):
                named = " and ".join(f"{p.id} ({p.protocol})" if p.is_utility else p.id for p in summed)
                out.append(f"building {building.id}: its {energy.replace('_', ' ')} is the sum of {named}: if one "
                           "meter is behind the other, the reports count it twice (give the one not to count "
                           "another usage than general, e.g. other)")
    return out


def _school_calendar_problem(inv: Inventory, today: date) -> str | None:
    """Why school holidays will be missed in the next 120 days (their dates unknown), or None.

    >>> from inventory import load_inventory
    >>> inv = load_inventory(Path("examples/commune.yaml"))
    >>> _school_calendar_problem(inv, date(2026, 12, 1)) is None
    True
    >>> print(_school_calendar_problem(inv, date(2040, 1, 1)))  # doctest: +ELLIPSIS
    school-holiday dates of zone ... are not known for 2040 ...
    """
    from inventory.calendar import unknown_school_days

    if not any(b.schedule.closed_on_school_holidays for _, b in inv.buildings()):
        return None
    zone = inv.organisation.school_holiday_zone
    missing = unknown_school_days(zone, today, 120)
    if not missing:
        return None
    years = ", ".join(str(y) for y in missing)
    return (f"school-holiday dates of zone {zone} are not known for {years} (vacances-scolaires-france): "
            "buildings closed in school holidays will count as open then; upgrade the package")


def _smtp_password_problem(inv: Inventory) -> str | None:
    """Why no mail could be sent for want of the SMTP password (``email.password_env`` unset or empty), or None.

    Checked at start (``econome run`` exits 2, ``econome check`` warns), not weeks later at the first mail.
    An empty variable is no password: the compose stack's ``secrets/smtp_password`` is an empty file until
    the operator writes it, and the entrypoint exports it as it is.
    """
    if inv.email is None or inv.email.password_env is None or os.environ.get(inv.email.password_env, "").strip():
        return None
    name = inv.email.password_env
    # Blanks alone are no password either: a secret file holding a newline, an editor's space.
    state = ("is empty" if not os.environ[name] else "holds only blanks") if name in os.environ else "is not set"
    return (f"email.password_env: the SMTP password variable {name} {state}, so no alert mail could be sent "
            f"to {inv.email.host}; set {name} in the service's environment")


class _Runtime:
    """A pipeline with its collectors, writer and buses, ready to run."""

    def __init__(
        self, inv: Inventory, settings: EconomeSettings, clock: Clock, mqtt_suffix: str = "", sensor: Sensor | None = None
    ) -> None:
        self.dead_letters = DeadLetterStore(
            settings.data_dir / "dead-letters.jsonl",
            max_file_bytes=settings.dead_letter_max_file_bytes,
            keep_files=settings.dead_letter_keep_files,
            max_payload_bytes=settings.dead_letter_max_payload_bytes,
            sensor=sensor,
        )
        # The service's modules (settings, collectors, pipeline) only for the commands that run it: the offline
        # commands, `econome detect` above all, do not import them (issue 11).
        from econome.wiring import build_collectors
        from streams.aggregate import StreamProcessor, StreamSettings
        from streams.buffer import DeliveryLog

        self.writer = make_writer(settings.influx())
        self.polled, self.pushed, self.buses = build_collectors(
            inv, clock, self.dead_letters, mqtt_client_suffix=mqtt_suffix, sensor=sensor
        )
        self.log = DeliveryLog(settings.data_dir / "delivery.sqlite", max_rows=settings.buffer_max_rows)
        stream_settings = StreamSettings(allowed_lateness=settings.allowed_lateness)
        self.forwarder: KafkaForwarder | None = None
        if settings.runner == "faust":
            from streams.faust_runner import KafkaForwarder

            # Readings go to Kafka; `econome worker` processes (any number, anywhere) aggregate them.
            # The building -> partition map is kept beside the delivery log: a building added later
            # moves no other (a moved building would lose its state in the workers' table).
            self.forwarder = KafkaForwarder(
                inv,
                settings.kafka_url,
                topic=settings.kafka_topic,
                partitions=settings.kafka_partitions,
                map_path=settings.data_dir / "partitions.json",
            )
        self.pipeline = Pipeline(
            inv,
            self.writer,
            clock,
            self.dead_letters,
            self.log,
            processor=StreamProcessor(inv, stream_settings) if settings.runner == "inprocess" else None,
            forwarder=self.forwarder,
            batch_size=settings.batch_size,
            flush_interval=settings.flush_interval,
            quality=QualityTracker(inv, clock.now()),
            sensor=sensor,
            stop_timeout=timedelta(seconds=settings.stop_timeout_s),
            event_time=settings.event_time(),
        )

    async def serve(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then flush and release everything."""
        from econome.wiring import close_buses

        if isinstance(self.writer, InfluxV1Writer):
            try:
                await self.writer.ensure_database()
            except SinkError as exc:
                # Collect anyway, whether InfluxDB is down, failing (5xx) or refuses CREATE DATABASE
                # (a user without admin rights, whose database exists or is made by an admin):
                # readings wait in the delivery log; the writer tries to create the database again
                # when a write finds it missing (review finding 5).
                logger.error("%s; collecting anyway: readings wait in the delivery log, writes are retried", exc)
        # Kafka is not waited for either: the pipeline's forward step connects (ERROR once while it cannot),
        # and the readings wait in the delivery log meanwhile. A topic of another partition count stops the run.
        task = asyncio.create_task(self.pipeline.run(self.polled, self.pushed), name="pipeline")
        stopper = asyncio.create_task(stop.wait(), name="stop-signal")
        config_error: ConfigError | None = None
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not task.done():
                task.cancel()
            try:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            except* ConfigError as group:  # from the pipeline's TaskGroup
                config_error = next(e for e in _leaves(group) if isinstance(e, ConfigError))
            close_buses(self.buses)
            if self.forwarder is not None:
                await self.forwarder.stop()
            await self.writer.close()
            self.log.close()
        if config_error is not None:
            raise config_error


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    return [leaf for e in group.exceptions for leaf in (_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])]


def _install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def _settings_or_exit() -> EconomeSettings:
    """The checked settings; an invalid one is a one-line error naming its ECONOME_* variable, exit 2."""
    try:
        from econome.settings import load_settings

        return load_settings()
    except TelemetryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Inventory YAML file.")],
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics.")] = None,
    speed: Annotated[float, typer.Option(
        min=1.0, help="Run the clock this many times faster than the wall clock (demos and tests with a simulator).")] = 1.0,
    start: Annotated[str | None, typer.Option(
        help="With --speed: the clock's start, ISO 8601 with offset (default: now).")] = None,
    epoch: Annotated[float | None, typer.Option(
        help="With --speed: the wall time (UNIX seconds) at which the clock reads --start (default: when the "
             "command starts). Processes given the same --start, --speed and --epoch share one simulated "
             "timeline, across restarts too.")] = None,
    runner: Annotated[str | None, typer.Option(
        help="inprocess: aggregate here (the default, one process does everything); faust: collect and forward "
             "the readings to Kafka, where `econome worker` processes aggregate (default: ECONOME_RUNNER).")] = None,
) -> None:
    """Collect every point of the inventory, write to InfluxDB, and detect anomalies every hour, until stopped.

    InfluxDB is set with ECONOME_INFLUX_* variables, live detection with ECONOME_DETECT_* (see ``econome.settings``
    and ``anomalies.live``).
    """
    settings = _settings_or_exit()
    if runner is not None:
        if runner not in ("inprocess", "faust"):
            typer.echo(f"error: --runner must be inprocess or faust, not {runner!r}", err=True)
            raise typer.Exit(code=EXIT_CONFIG)
        settings = settings.model_copy(update={"runner": runner})
    redactor = _setup_logging(settings.log_level, settings)
    tune_malloc()
    inv = _load(config)
    redactor.add(_inventory_secrets(inv))
    clock = _run_clock(speed, start, epoch)
    if settings.detect_enabled and settings.detect_config is not None:
        _detect_config_or_exit(settings.detect_config)
    password_problem = _smtp_password_problem(inv) if settings.detect_enabled else None
    if password_problem is not None:
        typer.echo(f"error: {password_problem}", err=True)
        raise typer.Exit(code=2)
    _data_dir_or_exit(settings.data_dir)
    # Taken with detection off too: two runs on one data directory would share its delivery log and the
    # processors' state (each poll's readings delivered twice, counters' last values overwritten).
    lock, lock_error = _detection_lock_or_exit(settings.data_dir)
    _utilities_credentials_or_exit(inv, settings)

    async def main() -> None:
        stop = asyncio.Event()
        _install_signals(stop)
        if duration is not None:
            asyncio.get_running_loop().call_later(duration, stop.set)
        sensor = PrometheusSensor() if metrics_port else None
        if sensor is not None and metrics_port:
            sensor.serve(metrics_port)
        runtime = _Runtime(inv, settings, clock, sensor=sensor)
        detection = _start_detection(inv, settings, clock, broken=lock_error) if settings.detect_enabled else None
        if detection is not None:
            detection.add_done_callback(functools.partial(_detection_died, stop, died))
        utilities = _start_utilities(inv, settings, clock, sensor, runtime.pipeline.quality)
        try:
            # What lives to the end (the inventory, the processor's per-point state) is out of the collector's
            # full walks: at 3,000 buildings they took seconds each, some in the middle of a burst (issue 15).
            with long_lived_frozen() as frozen:
                logger.info("%s objects built at start frozen out of the garbage collector's walks", frozen)
                await runtime.serve(stop)
        finally:
            if utilities is not None:
                utilities.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await utilities
            if detection is not None and not detection.done():  # a dead one was reported by _detection_died
                detection.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await detection
        stats = runtime.pipeline.stats
        typer.echo(f"stopped: {stats.written} points written, {stats.rejected} dead letters")

    died: list[BaseException] = []
    try:
        asyncio.run(main())
    except ConfigError as exc:  # the topic's partitions differ from ECONOME_KAFKA_PARTITIONS: as `econome worker`
        typer.echo(f"error: {redactor.redact(str(exc))}", err=True)
        raise typer.Exit(code=EXIT_CONFIG) from exc
    except TelemetryError as exc:
        typer.echo(f"error: {redactor.redact(str(exc))}", err=True)
        raise typer.Exit(code=1) from exc
    finally:
        if lock is not None:
            lock.release()
    if died:
        typer.echo(f"error: live detection stopped: {redactor.redact(repr(died[0]))}; exiting so that the "
                   "supervisor restarts the service", err=True)
        raise typer.Exit(code=1)


@app.command()
def worker(
    config: Annotated[Path, typer.Argument(help="Inventory YAML file.")],
    metrics_port: Annotated[int | None, typer.Option(
        min=1, max=65535,
        help="Serve Prometheus metrics on --metrics-host:PORT/metrics (default: ECONOME_WORKER_METRICS_PORT).")] = None,
    metrics_host: Annotated[str | None, typer.Option(
        help="The address the metrics listen on: 0.0.0.0 for a Prometheus on another host or container "
             "(default: ECONOME_WORKER_METRICS_HOST, 127.0.0.1).")] = None,
    web_port: Annotated[int | None, typer.Option(
        min=1, max=65535,
        help="Serve faust's web views on 127.0.0.1:PORT (default: ECONOME_WORKER_WEB_PORT; off when unset).")] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
) -> None:
    """Run one faust worker: aggregate the readings of Kafka's topic and write the aggregates to InfluxDB, until stopped.

    Start as many as needed, on any machine, with the same settings (ECONOME_KAFKA_*, ECONOME_INFLUX_*): they share
    the topic's partitions (buildings) through their consumer group. ``econome run`` with ECONOME_RUNNER=faust
    collects and publishes the readings they read.
    """
    settings = _settings_or_exit()
    redactor = _setup_logging(settings.log_level, settings)
    inv = _load(config)
    port = metrics_port if metrics_port is not None else settings.worker_metrics_port
    host = metrics_host if metrics_host is not None else settings.worker_metrics_host
    web = web_port if web_port is not None else settings.worker_web_port
    _data_dir_or_exit(settings.data_dir)
    faust_dir = settings.data_dir / "faust"
    try:
        faust_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        typer.echo(f"error: ECONOME_DATA_DIR: cannot create {faust_dir}: {exc.strerror or exc}", err=True)
        raise typer.Exit(code=EXIT_CONFIG) from None

    async def main() -> None:
        from streams.aggregate import StreamSettings
        from streams.faust_runner import InfluxAggregateSink, ensure_topic, make_app

        stop = asyncio.Event()
        _install_signals(stop)
        if duration is not None:
            asyncio.get_running_loop().call_later(duration, stop.set)
        sensor = PrometheusSensor() if port else None
        if sensor is not None and port:
            try:
                sensor.serve(port, addr=host)
            except OSError as exc:  # taken, or an address not of this host
                msg = f"cannot serve metrics on {host}:{port} (--metrics-host/--metrics-port): {exc.strerror or exc}"
                raise ConfigError(msg) from exc
        # The worker creates the topic if the forwarder has not yet, and refuses a partition count that differs.
        await ensure_topic(settings.kafka_url, settings.kafka_topic, settings.kafka_partitions)
        # A few quick tries, then the runner's own: it writes the batch again until InfluxDB takes it.
        sink = InfluxAggregateSink(settings.influx(), attempts=3)
        if isinstance(sink.writer, InfluxV1Writer):
            try:
                await sink.writer.ensure_database()
            except SinkError as exc:
                logger.error("%s; starting anyway: aggregate writes are retried", exc)
        runner = make_app(
            inv,
            settings.kafka_url,
            app_id=settings.kafka_group,
            partitions=settings.kafka_partitions,
            sink=sink,
            settings=StreamSettings(allowed_lateness=settings.allowed_lateness),
            topic=settings.kafka_topic,
            data_dir=faust_dir,
            session_timeout=timedelta(seconds=settings.kafka_session_timeout_s),
            heartbeat_interval=timedelta(seconds=settings.kafka_heartbeat_interval_s),
            rebalance_timeout=timedelta(seconds=settings.kafka_rebalance_timeout_s),
            commit_interval=timedelta(seconds=settings.kafka_commit_interval_s),
            fix_end_offsets=settings.kafka_fix_end_offsets,
            web_port=web,
            sensor=sensor,
        )
        await runner.start()
        logger.info("worker of group %s started on %s, topic %s", settings.kafka_group, settings.kafka_url, settings.kafka_topic)
        try:
            # The inventory and the app live to the end: out of the collector's full walks, as in econome run.
            with long_lived_frozen() as frozen:
                logger.info("%s objects built at start frozen out of the garbage collector's walks", frozen)
                await stop.wait()
        finally:
            await runner.stop()
            await sink.close()
        stats = runner.stats
        typer.echo(f"stopped: {stats.batches} batches, {stats.records} aggregates written, "
                   f"{stats.redelivered} replayed messages skipped, {stats.rebalances} rebalances")

    try:
        asyncio.run(main())
    except ConfigError as exc:  # the topic's partitions differ from ECONOME_KAFKA_PARTITIONS; the metrics port is taken
        typer.echo(f"error: {redactor.redact(str(exc))}", err=True)
        raise typer.Exit(code=EXIT_CONFIG) from exc
    except TelemetryError as exc:  # Kafka unreachable (the message names its URL)
        typer.echo(f"error: {redactor.redact(str(exc))}", err=True)
        raise typer.Exit(code=1) from exc


def _detection_died(stop: asyncio.Event, died: list[BaseException], task: asyncio.Task[None]) -> None:
    """The ``live-detection`` task ended while ``econome run`` runs: log it at ERROR and stop the run (exit 1).

    Its passes catch their failures, so an end that is not a cancellation is a bug or a broken start
    (the detection settings, the state's folder): better a restart by the supervisor than collection
    going on with no detection and nothing said.
    """
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None:
        exc = RuntimeError("the live-detection task returned")
    logger.error("live detection died: %r; stopping econome run (exit 1) for the supervisor to restart it", exc,
                 exc_info=exc)
    died.append(exc)
    stop.set()


def _run_clock(speed: float, start: str | None, epoch: float | None = None) -> Clock:
    """The wall clock, or with ``--speed`` a scaled clock from ``--start`` (at ``--epoch``); exit 2 on a bad start."""
    if speed == 1.0 and start is None and epoch is None:
        return SystemClock()
    try:
        origin = datetime.fromisoformat(start) if start else datetime.now(UTC)
        if origin.tzinfo is None:
            msg = "no UTC offset"
            raise ValueError(msg)
    except ValueError as exc:
        typer.echo(f"error: --start {start!r}: {exc} (ISO 8601 with an offset, e.g. 2026-01-05T06:30:00+01:00)", err=True)
        raise typer.Exit(code=2) from None
    return epoch_clock(origin, speed, epoch)


def epoch_clock(start: datetime, speed: float, epoch: float | None = None) -> ScaledClock:
    """A clock ``speed`` times faster than the wall clock that reads ``start`` at wall time ``epoch`` (UNIX seconds).

    Two processes (a simulator and ``econome run --speed --start --epoch``) built with the same three values
    share one simulated timeline: each reads ``start + (time.time() - epoch) * speed``, to the precision of
    their wall clocks. Without ``epoch``, the clock reads ``start`` now.

    >>> from datetime import UTC, datetime
    >>> clock = epoch_clock(datetime(2026, 1, 5, tzinfo=UTC), 3600.0, time.time() - 2.0)
    >>> round((clock.now() - datetime(2026, 1, 5, tzinfo=UTC)).total_seconds() / 3600.0)
    2
    """
    if epoch is None:
        return ScaledClock(start, speed)
    return ScaledClock(start + timedelta(seconds=(time.time() - epoch) * speed), speed)


def _data_dir_or_exit(data_dir: Path) -> None:
    """Make ``ECONOME_DATA_DIR`` (delivery log, dead letters): a file there, or a folder that cannot be made, exits 2."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        typer.echo(f"error: ECONOME_DATA_DIR {data_dir} cannot be used as a folder: {exc.strerror or exc}", err=True)
        raise typer.Exit(code=2) from None


def _detection_lock_or_exit(data_dir: Path) -> tuple[DetectionLock | None, TelemetryError | None]:
    """Take the data directory's lock, detection on or off: a second ``econome run`` on it exits 2 naming a PID.

    A lock file that cannot be made (its folder is not writable) is returned as the error that live
    detection dies of at its start (logged, exit 1), as any broken start of detection.
    """
    from anomalies.lock import DetectionLock, LockHeld

    lock = DetectionLock(data_dir)
    try:
        lock.acquire()
    except LockHeld as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    except TelemetryError as exc:
        return None, exc
    return lock, None


def _detect_config_or_exit(path: Path) -> None:
    """Check the ``ECONOME_DETECT_CONFIG`` file before anything starts: exit 2 naming its file and line."""
    from econome.settings import load_detect_config

    try:
        load_detect_config(path)
    except TelemetryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None


def _start_detection(
    inv: Inventory,
    settings: EconomeSettings,
    clock: Clock,
    *,
    config: DetectConfig | None = None,
    on_pass: Callable[[PassReport | None], None] | None = None,
    broken: Exception | None = None,
) -> asyncio.Task[None]:
    """Live detection as a task beside collection: one process and one deploy unit (see ``anomalies.live``).

    ``config`` and ``on_pass`` are those of :func:`econome.wiring.build_live_detector` (``econome demo``);
    ``broken``, what detection cannot start for (its lock file cannot be made): the task dies of it.
    """

    async def detection() -> None:
        if broken is not None:
            raise broken
        from econome.wiring import build_live_detector

        # Built in a worker thread: importing scikit-learn takes seconds, which would hold collection back.
        detector = await asyncio.to_thread(
            functools.partial(build_live_detector, inv, settings, clock, config=config, on_pass=on_pass)
        )
        detector.unjudged = functools.partial(_not_fetched_yet, inv, settings.utilities_state_path)
        await detector.serve(clock)

    return asyncio.create_task(detection(), name="live-detection")


def _not_fetched_yet(inv: Inventory, state_path: Path) -> frozenset[str]:
    """The Linky/Gazpar points fetched daily whose first fetch is not made (:func:`collectors.utilities.daily.fetched_points`).

    Live detection does not judge their missing data: on a first start, or for a building just added, the fetch
    (made at start) has not run yet, and their silence is no "données manquantes".
    """
    from collectors.utilities.daily import fetched_points

    fetched = fetched_points(state_path) or frozenset()
    return frozenset(p.id for _, p in inv.points()
                     if ((p.enedis is not None and p.enedis.data_connect) or (p.grdf is not None and p.grdf.adict))
                     and p.id not in fetched)


def _utilities_credentials_or_exit(inv: Inventory, settings: EconomeSettings) -> None:
    """Exit 2 when points are to be fetched through Enedis Data Connect or GRDF ADICT without its credentials."""
    for api, flag, client_id in (("enedis", "data_connect", settings.enedis_client_id),
                                 ("grdf", "adict", settings.grdf_client_id)):
        points = [p.id for _, p in inv.points() if getattr(getattr(p, api), flag, False)]
        if points and client_id is None:
            typer.echo(f"error: points {', '.join(points)} have {api}.{flag}: true but ECONOME_{api.upper()}_CLIENT_ID "
                       f"and ECONOME_{api.upper()}_CLIENT_SECRET are not set", err=True)
            raise typer.Exit(code=2)


def _start_utilities(
    inv: Inventory, settings: EconomeSettings, clock: Clock, sensor: Sensor | None,
    quality: QualityTracker | None = None,
) -> asyncio.Task[None] | None:
    """The daily fetch of Linky and Gazpar data (:mod:`collectors.utilities.daily`) as a task, when a point asks for it.

    What it delivers is told to ``quality`` (the pipeline's missing-point check), the readings not going
    through the pipeline.
    """
    from collectors.utilities.daily import DailyFetch
    from streams.imports import deliver_consumption

    async def deliver(point_id: str, intervals: Sequence[Consumption], source: str) -> object:
        # The run's own status loop writes these points' point_status (with their publication delay).
        report = await deliver_consumption(inv, settings.influx(), point_id, intervals,
                                           data_dir=settings.data_dir, source=source, status=False, now=clock.now())
        if quality is not None and report.last is not None:
            quality.delivered(point_id, report.last)
        return report

    enedis, grdf = settings.enedis_client(), settings.grdf_client()
    fetch = DailyFetch(inv, settings.utilities_state_path, clock, deliver, enedis=enedis, grdf=grdf,
                       at=settings.utilities_at, backfill_days=settings.utilities_backfill_days, sensor=sensor,
                       retry_every=settings.utilities_retry_every, retry_until=settings.utilities_retry_until)
    if not fetch.points():
        return None

    async def serve() -> None:
        try:
            await fetch.serve()
        finally:
            for client in (enedis, grdf):
                if client is not None:
                    await client.close()

    task = asyncio.create_task(serve(), name="utility-fetch")
    task.add_done_callback(_utilities_died)
    return task


def _utilities_died(task: asyncio.Task[None]) -> None:
    """The daily fetch ended by a bug (its points' failures are caught): logged at ERROR, collection goes on."""
    if not task.cancelled() and task.exception() is not None:
        logger.error("the daily utility fetch died: %r; Linky/Gazpar data are no longer fetched until a restart",
                     task.exception(), exc_info=task.exception())


async def count_per_point(config: InfluxConfig, inv: Inventory, since: datetime | None = None) -> dict[str, int]:
    """InfluxQL ``count(value)`` of raw readings, per point (since ``since`` when given)."""
    where = f" WHERE time >= {int(since.timestamp())}s" if since is not None else ""
    client = InfluxQLClient(config)
    try:
        series = await client.query(f'SELECT count("value") FROM "{RAW_MEASUREMENT}"{where} GROUP BY "point"')  # noqa: S608 - InfluxQL, constant
    finally:
        await client.close()
    counts = {point.id: 0 for _, point in inv.points()}
    for s in series:
        point = s.get("tags", {}).get("point")
        if point in counts:
            counts[point] = int(s["values"][0][1])
    return counts


DEMO_HISTORY = timedelta(days=8)
"""Simulated history written into the demo's InfluxDB before it starts: the live detector's bootstrap."""


@app.command()
def demo(
    config: Annotated[Path, typer.Option(help="Inventory of the simulated commune.")] = DEFAULT_CONFIG,
    duration: Annotated[float, typer.Option(help="Seconds to run before stopping and counting.")] = 60.0,
    speed: Annotated[float, typer.Option(help="Simulated seconds per real second.")] = 60.0,
    start: Annotated[str | None, typer.Option(
        help="Simulated start, ISO 8601 (default: 06:30 local, the most recent Wednesday to Friday of December to "
             "February, Christmas fortnight left out).")] = None,
    influx_url: Annotated[str | None, typer.Option(help="Use this InfluxDB 1.x instead of starting one.")] = None,
    workdir: Annotated[Path | None, typer.Option(help="Where local servers keep their data, and the e-mails.")] = None,
    faults: Annotated[bool, typer.Option(help="Inject a water leak and heating left on at night, and e-mail them.")] = True,
    bill_years: Annotated[str, typer.Option(
        help="Years of invoices imported for every invoice account, FIRST-LAST, or none.")] = "2019",
) -> None:
    """Run the simulated commune and the live service (collection, detection, e-mails) on local servers.

    Starts Mosquitto, InfluxDB 1.x (unless --influx-url) and an SMTP catcher
    (aiosmtpd) on free loopback ports. Writes the simulated week before the
    start into InfluxDB (the live detector's bootstrap, as a commune's past),
    then runs the pipeline and ``econome run``'s live detection (rules only,
    the advisors' mails to the catcher) on one accelerated clock. Prints what
    flows every few seconds and each e-mail's subject as it arrives; keeps
    each mail as ``WORKDIR/mail/NNN.eml``. Stops after --duration or on
    Ctrl-C (letting the first detection pass finish), then prints the number
    of readings InfluxDB holds for every point since the start; exit 1 if a
    point has none.

    The Linky and Gazpar points are not collected live (Enedis and GRDF publish
    a day late or more): the simulator writes the week's files an advisor would
    download (Enedis load curves, GRDF daily data, the invoice CSV, with the bills
    of --bill-years) into ``WORKDIR/utility-files`` and the demo imports them as
    ``econome import enedis|grdf|invoices`` does, printing what each brought.

    With --faults (the default), the library leaks water and the town hall
    keeps its heating on at night, both since two evenings before the start:
    one alert e-mail per fault, none for the other buildings. The events and
    expected values go to InfluxDB for Grafana. The default start is in winter
    (see ``_demo_morning``), when heating left on at night is a visible fault.
    """
    from econome.localservers import free_port, start_influxdb, start_mosquitto
    from econome.settings import EconomeSettings
    from econome.wiring import with_endpoints

    _setup_logging("WARNING")
    inv = _load(config)
    years = _bill_years_or_exit(bill_years)
    base = workdir or Path(tempfile.mkdtemp(prefix="econome-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    sim_start = datetime.fromisoformat(start) if start else _demo_morning(inv.organisation.tz)
    if sim_start.tzinfo is None:
        sim_start = sim_start.replace(tzinfo=inv.organisation.tz)
    history_start = sim_start - DEMO_HISTORY
    # A demo starts afresh: no detector state, alert register or mails of a previous one in the same workdir.
    for old in (base / "detect", base / "mail"):
        shutil.rmtree(old, ignore_errors=True)
    servers: list[_Stoppable] = []
    local = inv
    counts: dict[str, int] = {}
    try:
        broker = start_mosquitto(base / "mosquitto")
        servers.append(broker)
        typer.echo(f"mosquitto      {broker.url} (pid {broker.pid})")
        if influx_url is None:
            influx = start_influxdb(base / "influxdb")
            servers.append(influx)
            influx_url = influx.url
            typer.echo(f"influxdb 1.x   {influx.url} (pid {influx.pid})")
        catcher = _MailCatcher(base / "mail", free_port())
        catcher.start()
        servers.append(catcher)
        typer.echo(f"smtp catcher   127.0.0.1:{catcher.port} (mails kept in {catcher.folder})")
        ports = {gw.id: free_port() for gw in inv.modbus_gateways}
        local = _demo_inventory(with_endpoints(inv, ports, (broker.host, broker.port)), catcher.port)
        settings = EconomeSettings(
            influx_api="v1", influx_url=influx_url, influx_database="econome_demo", data_dir=base, flush_interval_s=0.5,
            detect_bootstrap=DEMO_HISTORY,
        )
        typer.echo(f"modbus         {', '.join(f'{g}:{p}' for g, p in ports.items())}")
        injected = _demo_faults(local, sim_start, duration * speed) if faults else []
        for fault in injected:
            typer.echo(f"fault          {fault.kind.value} in {fault.building} from "
                       f"{fault.start.astimezone(inv.organisation.tz):%a %d %b %H:%M}")
        seeded = asyncio.run(seed_history(local, settings.influx(), history_start, sim_start, faults=injected))
        typer.echo(f"history        {seeded} simulated readings from {history_start:%a %d %b %H:%M} written to InfluxDB")
        from simulator.downloads import write_utility_files

        # Published before the start: the live service never sees a Linky/Gazpar reading (none at the start itself).
        files = write_utility_files(local, base / "utility-files", history_start, sim_start - timedelta(minutes=1),
                                    faults=injected, seed=0, bill_years=years)
        for line in asyncio.run(import_utility_files(local, settings.influx(), files, base, now=sim_start)):
            typer.echo(f"imported       {line}")
        typer.echo(f"simulated time starts {sim_start.isoformat()} at x{speed:g}; running {duration:g} s")
        asyncio.run(_demo(local, settings, sim_start, speed, duration, ports, (broker.host, broker.port), injected,
                          model_start=history_start))
        counts = asyncio.run(count_per_point(settings.influx(), local, since=sim_start))
    except TelemetryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    finally:
        for server in reversed(servers):
            server.stop()
    typer.echo(f"e-mails: {len(catcher.received)} received, kept in {catcher.folder}")
    _print_counts(local, counts)
    if any(n == 0 for pid, n in counts.items() if not local.point(pid).is_utility):
        raise typer.Exit(code=1)


class _Stoppable(Protocol):
    def stop(self) -> None: ...


class _MailCatcher:
    """The demo's SMTP server (aiosmtpd, loopback): prints each mail's subject and keeps it as ``NNN.eml``."""

    def __init__(self, folder: Path, port: int) -> None:
        from aiosmtpd.controller import Controller

        self.folder = folder
        self.port = port
        self.received: list[tuple[str, str]] = []
        """(recipient, subject) of every mail, in order of arrival."""
        folder.mkdir(parents=True, exist_ok=True)
        self._controller = Controller(self, hostname="127.0.0.1", port=port)

    def start(self) -> None:
        """Listen (in a thread of its own)."""
        self._controller.start()

    def stop(self) -> None:
        """Stop listening."""
        self._controller.stop()

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        """Keep the mail and print its subject, once per recipient."""
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        subject = str(message.get("Subject", ""))
        path = self.folder / f"{len(list(self.folder.glob('*.eml'))) + 1:03d}.eml"
        path.write_bytes(content)
        for recipient in envelope.rcpt_tos:
            self.received.append((recipient, subject))
            typer.echo(f"  mail \u2192 {recipient}: {subject}")
        return "250 OK"


def _demo_inventory(inv: Inventory, smtp_port: int) -> Inventory:
    """The demo commune with an ``email:`` section pointing at the catcher (no TLS, written by name)."""
    from inventory.model import EmailSettings

    mail = EmailSettings(host="127.0.0.1", port=smtp_port, security="none", sender="econome@valmont.example",
                         default_recipients=["services-techniques@valmont.example"], language="fr", digest_hour=7,
                         timeout=timedelta(seconds=5))
    return inv.model_copy(update={"email": mail})


def _demo_faults(inv: Inventory, sim_start: datetime, sim_seconds: float) -> list[Fault]:
    """A water leak in the library and heating kept on at night in the town hall, from two evenings before the start.

    Both last until after the demo, so each is one alert, open at the start: two nights, because an alert opens
    once its excess is material (``MaterialityConfig``) and a heating night is judged once its closure has ended.
    The first detection pass (a bootstrap over the seeded history) opens them and e-mails each once.
    """
    from simulator.faults import Fault, FaultKind

    tz = inv.organisation.tz
    local = sim_start.astimezone(tz)
    eve = datetime(local.year, local.month, local.day, 18, tzinfo=tz) - timedelta(days=2)
    end = sim_start + timedelta(seconds=sim_seconds) + timedelta(hours=2)
    wanted = [(FaultKind.WATER_LEAK, "bibliotheque"), (FaultKind.HEATING_LEFT_ON, "mairie")]
    known = {b.id for _, b in inv.buildings()}
    return [Fault(kind=kind, building=building, start=eve, end=end) for kind, building in wanted if building in known]


async def seed_history(
    inv: Inventory,
    config: InfluxConfig,
    start: datetime,
    end: datetime,
    *,
    faults: Sequence[Fault] = (),
    seed: int = 0,
    step: timedelta = timedelta(minutes=15),
) -> int:
    """Write the simulated readings of ``[start, end)`` into InfluxDB as the pipeline writes them (raw, line protocol).

    The utility points (Linky, Gazpar) are left out: they come from their files (:func:`import_utility_files`).

    The history a live detector's bootstrap reads on its first start, for a simulated commune that has no past:
    :func:`simulator.generate_history` (give the same ``seed`` and ``faults`` as the live
    :class:`simulator.Simulator`, built with ``model_start=start``, so that its counters continue these indexes),
    encoded by :class:`streams.influx.LineEncoder` and written by the project's writer to the raw readings.

    Returns:
        The number of readings written.

    Raises:
        SinkError: InfluxDB is unreachable or refused a write.
    """
    from simulator.physics import generate_history
    from streams.influx import LineEncoder
    from streams.record import Reading

    history = await asyncio.to_thread(generate_history, inv, start, end, step, seed=seed, faults=faults)
    encoder = LineEncoder(inv)
    units = {p.id: p.unit for _, p in inv.points()}
    stamps = history.datetimes()
    # A Linky or a Gazpar comes from its utility's files (import_utility_files), never from a collector.
    utility = {p.id for _, p in inv.points() if p.is_utility}
    lines = [
        encoder.encode(Reading(pid, ts, value, units[pid]))
        for ts, row in zip(stamps, history.values.tolist(), strict=True)
        for pid, value in zip(history.point_ids, row, strict=True)
        if value == value and pid not in utility  # a silent sensor (nan) has none
    ]
    writer = make_writer(config)
    try:
        if isinstance(writer, InfluxV1Writer):
            await writer.ensure_database()
        for i in range(0, len(lines), config.batch_size):
            await writer.write(lines[i:i + config.batch_size], raw=True)
    finally:
        await writer.close()
    return len(lines)


async def import_utility_files(inv: Inventory, config: InfluxConfig, files: UtilityFiles, data_dir: Path,
                               now: datetime | None = None) -> list[str]:
    """Import the simulated downloads as ``econome import enedis|grdf|invoices`` does; one line per file and point.

    ``now`` is the demo's clock at its start, after which no interval may end (a ``--start`` after today:
    its files are dated after the system's now); the system's time when None.

    The load curves and gas days are read by :func:`streams.utility_files.parse_enedis` and
    :func:`~streams.utility_files.parse_grdf` and written as each point's index through the import's
    delivery log (:func:`streams.imports.deliver_consumption`); the bills by
    :func:`streams.invoices.read_invoice_file` into the ``invoice`` measurement.

    Raises:
        SinkError: InfluxDB is unreachable or refused a line.
        DecodeError: a file the simulator wrote does not parse (a bug).
    """
    from streams.imports import deliver_consumption
    from streams.invoices import ensure_invoice_policy, invoice_config, invoice_lines, read_invoice_file
    from streams.utility_files import parse_enedis, parse_grdf

    out: list[str] = []
    parsers = [(path, parse_enedis) for path in files.enedis] + [(path, parse_grdf) for path in files.grdf]
    for path, parse in parsers:
        parsed = parse(path, inv)
        if parsed.problems or parsed.unknown:
            msg = f"{path}: {len(parsed.problems)} rows set aside, meters of no point {sorted(parsed.unknown)}"
            raise DecodeError(msg)
        for point_id, items in sorted(parsed.series.items()):
            report = await deliver_consumption(inv, config, point_id, items, data_dir=data_dir, source=str(path),
                                               now=now)
            if report.refused or report.waiting or report.too_old or report.in_future:
                msg = (f"{path}: {point_id}: {report.refused} lines refused, {report.waiting} waiting, {report.too_old} too old, "
                       f"{report.in_future} in the future")
                raise SinkError(msg)
            out.append(f"{path.name}: {point_id}, {report.intervals} intervals, {report.amount:.1f} {report.unit}, "
                       f"{report.readings} readings")
    if files.invoices is not None:
        bills = read_invoice_file(files.invoices, inv)
        if bills.rejected:
            msg = f"{files.invoices}: {len(bills.rejected)} rows rejected, e.g. {bills.rejected[0]}"
            raise DecodeError(msg)
        writer = make_writer(invoice_config(config))
        try:
            if isinstance(writer, InfluxV1Writer):
                await writer.ensure_database()
                await ensure_invoice_policy(config)
            refused = await write_splitting(writer, invoice_lines(bills.invoices, inv.organisation.tz))
        finally:
            await writer.close()
        if refused:
            msg = f"{files.invoices}: InfluxDB refused {len(refused)} invoices: {refused[0][1]}"
            raise SinkError(msg)
        accounts = sorted({i.account for i in bills.invoices})
        out.append(f"{files.invoices.name}: {len(bills.invoices)} invoices of {', '.join(accounts)}")
    return out


def _demo_morning(tz: ZoneInfo, today: date | None = None) -> datetime:
    """06:30 local on the most recent Wednesday to Friday of the heating season's core, before today.

    December to February, Christmas fortnight (20 December to 4 January) left out: heating runs every night, so
    that heating left on at night is a fault detection can see, and the two evenings before (when the demo's faults
    start) are working days' evenings. In winter it is a day of the past week (Grafana shows it); otherwise one of
    last winter. Other seasons are a ``--start`` away (docs/alerts.md says what they show).

    >>> paris = ZoneInfo("Europe/Paris")
    >>> _demo_morning(paris, date(2026, 12, 1)).isoformat()
    '2026-02-27T06:30:00+01:00'
    >>> _demo_morning(paris, date(2027, 1, 22)).isoformat()
    '2027-01-21T06:30:00+01:00'
    """
    day = (today or datetime.now(tz).date()) - timedelta(days=1)
    while not (day.weekday() in (2, 3, 4) and _heating_core(day)):
        day -= timedelta(days=1)
    return datetime(day.year, day.month, day.day, 6, 30, tzinfo=tz)


def _heating_core(day: date) -> bool:
    """December to February, but for 20 December to 4 January."""
    if day.month == 12:
        return day.day < 20
    if day.month == 1:
        return day.day > 4
    return day.month == 2


async def _demo(
    inv: Inventory,
    settings: EconomeSettings,
    sim_start: datetime,
    speed: float,
    duration: float,
    ports: dict[str, int],
    mqtt: tuple[str, int],
    faults: Sequence[Fault] = (),
    *,
    model_start: datetime | None = None,
) -> None:
    """The pipeline and ``econome run``'s live detection (rules only) beside the simulator, on one clock."""
    from anomalies.detect import DetectConfig
    from simulator import Simulator

    clock = ScaledClock(sim_start, speed)
    simulator = Simulator(inv, clock, modbus_ports=ports, mqtt=mqtt, faults=faults, model_start=model_start)
    if model_start is not None:
        # Through the seeded history (a second or so): the live counters continue its indexes.
        await asyncio.to_thread(simulator.model.advance, sim_start - timedelta(minutes=1))
    await simulator.start()
    stop = asyncio.Event()
    _install_signals(stop)
    asyncio.get_running_loop().call_later(duration, stop.set)
    runtime = _Runtime(inv, settings, clock, mqtt_suffix="-demo")
    passes: list[object] = []
    detection = _start_detection(inv, settings, clock, config=DetectConfig(models=False), on_pass=passes.append)
    serving = asyncio.create_task(runtime.serve(stop), name="serve")
    stats = runtime.pipeline.stats
    total_points = sum(1 for _ in inv.points())
    started = time.monotonic()
    try:
        while not serving.done():
            await asyncio.wait({serving}, timeout=5)
            typer.echo(
                f"  t+{time.monotonic() - started:5.1f}s  simulated "
                f"{clock.now().astimezone(inv.organisation.tz):%a %d %b %H:%M}  "
                f"readings {stats.received:>6}  written {sum(stats.per_point.values()):>6}  "
                f"points seen {len(stats.per_point):>3}/{total_points}  "
                f"dead letters {stats.rejected}"
            )
        serving.result()
        # The first pass (the bootstrap over the seeded history) may outlast a short demo: let it finish and mail.
        waited = time.monotonic()
        while not passes and not detection.done() and time.monotonic() - waited < _FIRST_PASS_WAIT_S:
            await asyncio.wait({detection}, timeout=0.5)
    finally:
        detection.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await detection
        await simulator.stop()
    typer.echo(
        f"flowed: {stats.received} readings, {sum(stats.per_point.values())} written, "
        f"{stats.aggregates} aggregates, {stats.rejected} dead letters, {stats.polls_skipped} polls skipped (delivery log full)"
    )


def _print_counts(inv: Inventory, counts: dict[str, int]) -> None:
    typer.echo("")
    typer.echo(f"{'point':<44} {'building':<24} {'readings in InfluxDB':>20}")
    for building, point in inv.points():
        shown = "imported, not live" if point.is_utility and not counts[point.id] else counts[point.id]
        typer.echo(f"{point.id:<44} {building.id:<24} {shown:>20}")
    empty = [p for p, n in counts.items() if n == 0 and not inv.point(p).is_utility]
    utility = sum(1 for _, p in inv.points() if p.is_utility)
    typer.echo(f"{len(counts)} points, {sum(counts.values())} readings; points with no reading: {len(empty)}"
               + (f" ({utility} Linky/Gazpar points come from Enedis and GRDF a day late or more, not live)"
                  if utility else ""))


influx_app = typer.Typer(no_args_is_help=True, help="InfluxDB administration.")
app.add_typer(influx_app, name="influx")


@influx_app.command("setup")
def influx_setup(
    raw_days: Annotated[int, typer.Option(min=1, help="Days raw readings are kept.")] = 90,
    long_days: Annotated[int, typer.Option(min=1826, help="Days aggregates are kept (5 years at least).")] = 1830,
) -> None:
    """Set up retention and downsampling: raw readings N days, aggregates at least 5 years.

    InfluxDB 1.x: retention policies ``raw`` and ``long`` (default) and a
    continuous query keeping hourly raw means in ``long.reading_1h``. Settings
    come from the ECONOME_INFLUX_* variables.
    """
    settings = _settings_or_exit()
    config = settings.influx()
    if config.api != "v1":
        typer.echo(
            "InfluxDB 2.x/3.x: give the bucket its retention (e.g. `influx bucket update --retention 1830d`), "  # noqa: S608 - a message, not a query
            f"make a raw bucket with `--retention {raw_days}d`, set ECONOME_INFLUX_RAW_BUCKET, and map both "
            "for InfluxQL with `influx v1 dbrp create` (see deploy/OPERATIONS.md)"
        )
        raise typer.Exit(code=2)
    try:
        statements = asyncio.run(setup_v1(config, raw_days, long_days))
    except TelemetryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    for statement in statements:
        typer.echo(statement)
    typer.echo(f"raw readings go to retention policy '{RAW_RP}' from the next start of `econome run`")


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="CSV file of the readings (timestamp,point,value).")],
    config: Annotated[Path, typer.Option(help="Inventory of the simulated commune.")] = DEFAULT_CONFIG,
    start: Annotated[str, typer.Option(help="First day, ISO 8601.")] = "2023-09-01",
    end: Annotated[str, typer.Option(help="End day (excluded), ISO 8601.")] = "2026-01-01",
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 3,
    step_minutes: Annotated[int, typer.Option(min=1, help="Minutes between two readings of a point.")] = 60,
    without_renovations: Annotated[bool, typer.Option(help="Simulate as if no works were done (null case).")] = False,
    all_points: Annotated[bool, typer.Option(help="Write every point, not only counters and weather.")] = False,
    utility_files: Annotated[Path | None, typer.Option(
        help="Also write the files an advisor downloads into this folder: Enedis load curves of the Linkys, GRDF "
             "daily data of the Gazpars, the invoice CSV (econome import enedis|grdf|invoices).")] = None,
    bill_years: Annotated[str, typer.Option(
        help="With --utility-files: years billed for every invoice account, FIRST-LAST (before --start).")] = "2015-2019",
    faults: Annotated[bool, typer.Option(
        help="Inject the faults of simulator.default_fault_plan (seeded by --seed) for each year simulated.")] = False,
) -> None:
    """Write the simulated commune's readings as one CSV (timestamp,point,value), for econome detect, mv and report.

    With --utility-files DIR, also the files of the buildings read through the utilities
    (docs/simulator.md): ``enedis-<PRM>-<year>.csv``, ``grdf-<PCE>.csv`` and ``factures.csv``.
    """
    from simulator.export import without_renovations as _no_works
    from simulator.export import write_readings_csv

    writable_or_exit(out)
    inv = _load(config)
    years = _bill_years_or_exit(bill_years)
    tz = inv.organisation.tz
    first = datetime.fromisoformat(start).replace(tzinfo=tz)
    last = datetime.fromisoformat(end).replace(tzinfo=tz)
    physics = _no_works(inv) if without_renovations else None
    injected: list[Fault] = []
    if faults:
        from simulator.faults import default_fault_plan

        for year in range(first.year, last.year + 1):
            injected += [f for f in default_fault_plan(inv, year, seed) if f.start < last and f.end > first]
        for fault in injected:
            typer.echo(f"fault {fault.kind.value} in {fault.building} from {fault.start.astimezone(tz):%Y-%m-%d %H:%M} "
                       f"to {fault.end.astimezone(tz):%Y-%m-%d %H:%M}")
    curves: list[dict[str, list[UtilityInterval]]] = []
    with progress("simulate") as report, atomic_path(out) as part:
        rows = write_readings_csv(inv, part, first, last, step=timedelta(minutes=step_minutes), seed=seed,
                                  physics=physics, energy_only=not all_points, progress=report, faults=injected,
                                  on_utility=curves.append)
    typer.echo(f"wrote {rows} readings to {out}")
    if utility_files is not None:
        from simulator.downloads import write_utility_files

        # The load curves and gas days are the differences of the indexes of the readings CSV.
        files = write_utility_files(inv, utility_files, first, last, seed=seed, physics=physics, bill_years=years,
                                    faults=injected, curves=curves[0])
        _echo_utility_files(files)


def _bill_years_or_exit(text: str) -> range:
    """``2015-2019`` as the years 2015 to 2019; ``none`` as no year; exit 2 otherwise."""
    if text.strip().lower() == "none":
        return range(0)
    first, _, last = text.partition("-")
    try:
        years = range(int(first), int(last or first) + 1)
    except ValueError:
        years = range(0)
    if not years or not 1990 <= years[0] <= years[-1] <= 2100:
        typer.echo(f"error: --bill-years {text!r}: expected FIRST-LAST, e.g. 2015-2019, or none", err=True)
        raise typer.Exit(code=EXIT_CONFIG)
    return years


def _echo_utility_files(files: UtilityFiles) -> None:
    for path in files.enedis:
        typer.echo(f"wrote Enedis load curve {path}")
    for path in files.grdf:
        typer.echo(f"wrote GRDF daily data {path}")
    if files.invoices is not None:
        typer.echo(f"wrote {files.bills} invoices to {files.invoices}")


_BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Environment variables by which an operator sets the BLAS threads; one set is left to rule."""


def one_blas_thread() -> None:
    """Run numpy's BLAS on one thread, unless the environment sets its threads.

    Detection and the baselines solve small least-squares problems (a few hundred rows, a dozen columns),
    thousands of times: BLAS threads only wait for each other. On the 2-core machine, ``econome detect`` on
    one building-year spent 7.4 s of CPU in 5.3 s with them, 5.3 s in 5.3 s without, and 0.7 s more wall
    time with them while another process ran (``bench/detect_speed.py``). The live service's one core per
    pass is then one core.
    """
    import os

    if any(os.environ.get(name) for name in _BLAS_THREAD_VARIABLES):
        return
    # scikit-learn's dependency too, pinned in deploy/constraints.txt; it ships no type hints.
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    threadpool_limits(limits=1, user_api="blas")


def main() -> None:
    """Entry point of the ``econome`` console script."""
    one_blas_thread()
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
