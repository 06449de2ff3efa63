"""Process settings, read from ``ECONOME_*`` environment variables (or a ``.env`` file).

Secrets (``ECONOME_INFLUX_PASSWORD``, ``ECONOME_INFLUX_TOKEN``) are
:class:`~pydantic.SecretStr`: no repr, dump or log of the settings shows them,
and :meth:`EconomeSettings.secrets` lists them for the log redaction of the
``econome`` command.

>>> EconomeSettings().influx_api
'v1'
>>> EconomeSettings(influx_password="s3cret").influx_password
SecretStr('**********')
"""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from collectors.utilities import adict, dataconnect
from inventory import Duration, InventoryError
from inventory.loader import read_yaml
from streams.errors import ConfigError
from streams.influx import InfluxConfig
from streams.validate import EventTimeConfig

if TYPE_CHECKING:
    from anomalies.detect import DetectConfig

__all__ = ["EconomeSettings", "load_detect_config", "load_settings"]

ENV_PREFIX = "ECONOME_"


class EconomeSettings(BaseSettings):
    """Where Econome writes, and how it runs."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True)

    influx_api: Literal["v1", "v2"] = "v1"
    """``v1`` for InfluxDB 1.x (``/write``), ``v2`` for 2.x/3.x through influxdb-client."""
    influx_url: str = "http://127.0.0.1:8086"
    """Base URL of InfluxDB."""
    influx_database: str = Field(default="econome", pattern=r"^[A-Za-z0-9_.-]+$")
    """v1 database (and the InfluxQL database/DBRP name on 2.x/3.x)."""
    influx_retention_policy: str | None = None
    """v1 retention policy for raw points; the database default when unset."""
    influx_username: str | None = None
    """v1 user, if authentication is on; sent in an ``Authorization: Basic`` header, never in the URL."""
    influx_password: SecretStr | None = None
    """v1 password (give ``ECONOME_INFLUX_PASSWORD_FILE`` to the deploy entrypoint instead)."""
    influx_token: SecretStr | None = None
    """v2/v3 API token, sent in an ``Authorization: Token`` header."""
    influx_org: str | None = None
    """v2 organisation."""
    influx_bucket: str | None = None
    """v2 bucket."""
    influx_gzip: bool = True
    """Compress writes with gzip."""
    influx_ca_file: Path | None = None
    """PEM CA bundle that signed InfluxDB's HTTPS certificate (e.g. the private CA of ``deploy/init-secrets.sh``);
    the system CAs when unset."""
    influx_cert_file: Path | None = None
    """PEM client certificate for InfluxDB, when its proxy requires mutual TLS."""
    influx_key_file: Path | None = None
    """PEM private key of ``influx_cert_file``, when not in the same file."""
    influx_tls_insecure: bool = False
    """``ECONOME_INFLUX_TLS_INSECURE=true`` skips the verification of InfluxDB's certificate and host name.
    For tests only: anyone on the path could read the credentials."""
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    """Most points per write."""
    flush_interval_s: float = Field(default=1.0, gt=0, le=3600)
    """Longest wait, in seconds, before queued points are written."""
    data_dir: Path = Path("var")
    """Where the delivery log (``delivery.sqlite``) and dead letters are kept."""
    buffer_max_rows: int = Field(default=2_000_000, ge=1, le=1_000_000_000)
    """Most rows the delivery log holds while InfluxDB is unreachable (a warning at 80 %)."""
    stop_timeout_s: float = Field(default=10.0, gt=0, le=300)
    """Longest a stop (SIGTERM) takes, in seconds, even with InfluxDB down and the delivery log full."""
    dead_letter_max_file_bytes: int = Field(default=10_000_000, ge=1024)
    """The dead-letter file is rotated before it grows past this many bytes."""
    dead_letter_keep_files: int = Field(default=5, ge=0, le=10_000)
    """Rotated dead-letter files kept (their counts are kept whatever happens to them)."""
    dead_letter_max_payload_bytes: int = Field(default=4096, ge=16, le=10_000_000)
    """Longest payload prefix kept in a dead letter (its full size and SHA-256 are kept too)."""
    lateness_s: float = Field(default=600.0, ge=0, le=86_400)
    """Allowed lateness of readings, in seconds of event time, before a window closes (at most a day:
    closed windows are kept two days for late corrections)."""
    max_age_s: float = Field(default=7 * 86_400.0, gt=0, le=36_500 * 86_400.0)
    """How old, in seconds, a reading of a live point may be when it arrives; older ones are
    dead-lettered. Seven days covers a gateway replaying a long week-end outage of its link;
    a point declared ``backfill: true`` in the inventory is exempt (issue 10)."""
    max_future_s: float = Field(default=300.0, ge=0, le=86_400.0)
    """How far, in seconds, a reading's time may be ahead of this machine's clock (device
    clock skew); later ones are dead-lettered. Times before 2000 or from 2100 on always are."""
    runner: Literal["inprocess", "faust"] = "inprocess"
    """Where aggregates are computed: in this process, or by the faust runner over Kafka."""
    kafka_url: str = "kafka://127.0.0.1:9092"
    """Kafka bootstrap servers, for the faust runner: ``kafka://HOST:PORT``, several comma-separated
    (``kafka://k1:9092,k2:9092``). Plaintext only: no TLS or SASL (deploy/OPERATIONS.md, "Scaling out")."""
    kafka_partitions: int = Field(default=12, ge=1, le=10_000)
    """Partitions of the readings topic (readings are keyed by building)."""
    kafka_topic: str = Field(default="econome-readings", pattern=r"^[A-Za-z0-9._-]{1,249}$")
    """The readings topic: ``econome run`` (runner faust) publishes to it, every ``econome worker`` reads it."""
    kafka_group: str = Field(default="econome", pattern=r"^[A-Za-z0-9._-]{1,200}$")
    """The workers' faust app id, which is their consumer group (and names the state table's changelog topic)."""
    kafka_session_timeout_s: float = Field(default=6.0, gt=0, le=3600)
    """Consumer-group session timeout of a worker, in seconds: how long the partitions of a killed worker wait
    before another takes them over. 6 s is the least a Kafka broker accepts by default
    (``group.min.session.timeout.ms``)."""
    kafka_heartbeat_interval_s: float = Field(default=1.0, gt=0, le=3600)
    """How often a worker tells the group it is alive, in seconds (a third of the session timeout at most)."""
    kafka_rebalance_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    """How long a rebalance waits for the group's members to rejoin, in seconds."""
    kafka_commit_interval_s: float = Field(default=1.0, gt=0, le=3600)
    """How often a worker commits the offsets it has handled, in seconds; what a killed worker handled since
    its last commit is delivered again to its successor, which skips it (see the README, "exactly-once effect")."""
    kafka_fix_end_offsets: bool = True
    """Read the state table's changelog end offsets from a fetch's high watermark before a worker recovers
    the table: Tansu's ListOffsets answers too low (defect B1). One extra fetch per partition at start on a
    real Kafka, where it changes nothing."""
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """``econome worker``: serve its Prometheus metrics on ECONOME_WORKER_METRICS_HOST:PORT/metrics (one port per
    worker on a host)."""
    worker_metrics_host: str = Field(default="127.0.0.1", min_length=1)
    """``econome worker``: the address its metrics listen on; 127.0.0.1 on a bare host, 0.0.0.0 in a container or
    for a Prometheus on another host."""
    worker_web_port: int | None = Field(default=None, ge=1, le=65535)
    """``econome worker``: serve faust's web views on 127.0.0.1:PORT; off when unset."""
    detect_enabled: bool = True
    """Run live anomaly detection in ``econome run`` (:mod:`anomalies.live`): every ``detect_every`` it reads the
    new readings from InfluxDB, writes events and expected values back, and hands the alerts to the notifier."""
    detect_every: Duration = Field(default=timedelta(hours=1), ge=timedelta(minutes=1), le=timedelta(days=1))
    """Time between detection passes, e.g. ``1h`` (passes fall on its multiples, plus ``detect_delay``)."""
    detect_delay: Duration = Field(default=timedelta(minutes=5), ge=timedelta(0))
    """How long after the hour a pass runs, e.g. ``5min``, so that the hour's readings have reached InfluxDB."""
    detect_bootstrap: Duration = Field(default=timedelta(days=28), ge=timedelta(hours=1), le=timedelta(days=800))
    """History read on a first start (no state in ``data_dir/detect/``), e.g. ``28d``."""
    detect_chunk: int = Field(default=100, ge=1, le=10_000)
    """Buildings whose readings a pass reads from InfluxDB together (their states are still advanced one at a time)."""
    detect_held: int = Field(default=30, ge=0)
    """A portfolio of at most this many buildings keeps its detection states in memory between passes (faster);
    a larger one loads and saves each building's state at each pass, so a pass's memory is one building's."""
    detect_lagged_every: Duration = Field(default=timedelta(days=1), ge=timedelta(0), le=timedelta(days=7))
    """A building judged a day or more late (only a Linky's or a Gazpar's data) is advanced once per this period,
    at its own hour, e.g. ``1d``; ``0s``: at every pass (``anomalies.live.LiveConfig.lagged_every``)."""
    detect_config: Path | None = None
    """A YAML file of detection settings (:class:`anomalies.detect.DetectConfig`: ``rules:``, ``models:``,
    ``expected:``, ``materiality:``...), e.g. ``/etc/econome/detect.yaml``; the defaults when unset. A broken
    file is a ``file:line field: message`` error at the start of ``econome run`` (see :func:`load_detect_config`).
    Changing it makes the saved detection state obsolete: detection starts afresh with a bootstrap."""
    enedis_client_id: str | None = None
    """Enedis Data Connect application id: the points with ``enedis: {data_connect: true}`` are fetched daily."""
    enedis_client_secret: SecretStr | None = None
    """Its secret (never logged)."""
    enedis_url: str = dataconnect.PRODUCTION_URL
    """Enedis API gateway (``https://gw.ext.prod-sandbox.api.enedis.fr`` for the sandbox)."""
    enedis_api: Literal["2026", "v5"] = "2026"
    """Generation of Enedis' metering API: ``2026`` (Data Connect 2026, since 2026-09-28) or ``v5`` (metering_data v5)."""
    grdf_client_id: str | None = None
    """GRDF ADICT application id: the points with ``grdf: {adict: true}`` are fetched daily."""
    grdf_client_secret: SecretStr | None = None
    """Its secret (never logged)."""
    grdf_url: str = adict.API_URL
    """GRDF ADICT API."""
    grdf_token_url: str = adict.TOKEN_URL
    """GRDF's OpenID token endpoint."""
    utilities_at: time = time(7, 30)
    """Local time (organisation's timezone) of the daily fetch of Linky and Gazpar data, e.g. ``07:30``:
    Enedis publishes day D on D+1 morning, GRDF its informative data from D+1 to D+3."""
    utilities_backfill_days: int = Field(default=30, ge=1, le=1095)
    """Days fetched on a point's first daily fetch."""
    utilities_retry_every: timedelta = Field(default=timedelta(hours=2), gt=timedelta(0))
    """Wait before the daily fetch runs again while yesterday is not complete for every point (Enedis often
    publishes after 07:30), e.g. ``PT2H`` or ``7200`` (seconds)."""
    utilities_retry_until: time = time(14, 0)
    """Local time after which the day's fetch is not run again (the next run is the next morning's)."""
    log_level: str = "INFO"
    """Logging level of the ``econome`` command: DEBUG, INFO, WARNING, ERROR or CRITICAL."""

    @field_validator("influx_url", "enedis_url", "grdf_url", "grdf_token_url")
    @classmethod
    def _url(cls, url: str) -> str:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number in 0-65535
        except ValueError as exc:
            msg = f"not a valid URL ({exc}); e.g. http://127.0.0.1:8086"
            raise ValueError(msg) from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            msg = "must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:8086"
            raise ValueError(msg)
        return url

    @field_validator("kafka_url")
    @classmethod
    def _kafka_url(cls, url: str) -> str:
        from streams.errors import ConfigError
        from streams.kafka_url import kafka_servers

        if not url.startswith("kafka://"):
            msg = "must be kafka://HOST:PORT[,HOST:PORT...], e.g. kafka://127.0.0.1:9092"
            raise ValueError(msg)
        try:
            kafka_servers(url)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return url

    @field_validator("enedis_client_id", "enedis_client_secret", "grdf_client_id", "grdf_client_secret", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        # The deploy files pass an empty id and an empty secret file when no point is fetched through an API.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("data_dir", mode="before")
    @classmethod
    def _named_folder(cls, value: object) -> object:
        # Path("") is ".": a variable left empty put the delivery log, the detection state, the alert register and
        # its lock in whatever folder the service started in, a second start elsewhere with none of them.
        if isinstance(value, str) and not value.strip():
            msg = "is empty: name the service's data folder (unset, it is ./var)"
            raise ValueError(msg)
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, level: str) -> str:
        if level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            msg = "must be DEBUG, INFO, WARNING, ERROR or CRITICAL"
            raise ValueError(msg)
        return level.upper()

    @model_validator(mode="after")
    def _consistent(self) -> EconomeSettings:
        if self.influx_api == "v2":
            missing = [
                f"{ENV_PREFIX}INFLUX_{name.upper()}"
                for name, value in (
                    ("token", self.influx_token.get_secret_value() if self.influx_token else None),
                    ("org", self.influx_org),
                    ("bucket", self.influx_bucket),
                )
                if not value
            ]
            if missing:
                msg = f"{ENV_PREFIX}INFLUX_API=v2 needs {', '.join(missing)}"
                raise ValueError(msg)
        if self.influx_key_file is not None and self.influx_cert_file is None:
            msg = f"{ENV_PREFIX}INFLUX_KEY_FILE needs {ENV_PREFIX}INFLUX_CERT_FILE"
            raise ValueError(msg)
        for api in ("enedis", "grdf"):
            if (getattr(self, f"{api}_client_id") is None) != (getattr(self, f"{api}_client_secret") is None):
                msg = f"{ENV_PREFIX}{api.upper()}_CLIENT_ID and {ENV_PREFIX}{api.upper()}_CLIENT_SECRET go together"
                raise ValueError(msg)
        if self.kafka_heartbeat_interval_s * 3 > self.kafka_session_timeout_s:
            msg = (f"{ENV_PREFIX}KAFKA_HEARTBEAT_INTERVAL_S ({self.kafka_heartbeat_interval_s}) must be at most a third "
                   f"of {ENV_PREFIX}KAFKA_SESSION_TIMEOUT_S ({self.kafka_session_timeout_s})")
            raise ValueError(msg)
        if self.detect_delay >= self.detect_every:
            msg = (f"{ENV_PREFIX}DETECT_DELAY ({self.detect_delay}) must be shorter than "
                   f"{ENV_PREFIX}DETECT_EVERY ({self.detect_every})")
            raise ValueError(msg)
        return self

    def influx(self) -> InfluxConfig:
        """The InfluxDB settings as the sink's config."""
        return InfluxConfig(
            api=self.influx_api,
            url=self.influx_url,
            database=self.influx_database,
            # Raw readings only: aggregates stay in the database's default policy (`econome influx setup`:
            # 5 years), which a 90-day `raw` policy for every write would cut (issue 14 review).
            raw_retention_policy=self.influx_retention_policy,
            username=self.influx_username,
            password=self.influx_password,
            token=self.influx_token,
            org=self.influx_org,
            bucket=self.influx_bucket,
            batch_size=self.batch_size,
            gzip=self.influx_gzip,
            ca_file=self.influx_ca_file,
            cert_file=self.influx_cert_file,
            key_file=self.influx_key_file,
            tls_insecure=self.influx_tls_insecure,
        )

    def event_time(self) -> EventTimeConfig:
        """The event-time window readings are checked against at the edge."""
        return EventTimeConfig(max_age=timedelta(seconds=self.max_age_s), max_future=timedelta(seconds=self.max_future_s))

    def secrets(self) -> list[str]:
        """The secret values of these settings.

        InfluxDB password and token, a password in the URL, the Enedis and GRDF client secrets.
        """
        values = [
            s.get_secret_value()
            for s in (self.influx_password, self.influx_token, self.enedis_client_secret, self.grdf_client_secret)
            if s is not None
        ]
        url_password = urlsplit(self.influx_url).password
        if url_password:
            values.append(unquote(url_password))
        return [v for v in values if v]

    def enedis_client(self) -> dataconnect.DataConnectClient | None:
        """The Data Connect client, or None without credentials."""
        if self.enedis_client_id is None or self.enedis_client_secret is None:
            return None
        return dataconnect.DataConnectClient(
            self.enedis_client_id, self.enedis_client_secret.get_secret_value(), url=self.enedis_url, api=self.enedis_api
        )

    def grdf_client(self) -> adict.AdictClient | None:
        """The ADICT client, or None without credentials."""
        if self.grdf_client_id is None or self.grdf_client_secret is None:
            return None
        return adict.AdictClient(
            self.grdf_client_id, self.grdf_client_secret.get_secret_value(), url=self.grdf_url, token_url=self.grdf_token_url
        )

    @property
    def utilities_state_path(self) -> Path:
        """The daily utility fetch's state: ``data_dir/utilities/state.json``."""
        return self.data_dir / "utilities" / "state.json"

    @property
    def detect_state_path(self) -> Path:
        """The live detection state path, ``data_dir/detect/state.npz``.

        Each building's state is ``data_dir/detect/state/<building>.npz`` (a file of this name is from before).
        """
        return self.data_dir / "detect" / "state.npz"

    @property
    def allowed_lateness(self) -> timedelta:
        """Allowed lateness as a duration."""
        return timedelta(seconds=self.lateness_s)

    @property
    def flush_interval(self) -> timedelta:
        """Flush interval as a duration."""
        return timedelta(seconds=self.flush_interval_s)


def _describe(exc: ValidationError, prefix: str = ENV_PREFIX) -> str:
    """One line naming each faulty ``ECONOME_*`` variable; never the value (it may be a secret)."""
    problems = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["loc"]:
            problems.append(f"{prefix}{str(error['loc'][0]).upper()}: {message}")
        else:
            problems.append(message)
    return "invalid settings: " + "; ".join(problems)


def load_settings() -> EconomeSettings:
    """The settings of the environment (and ``.env``), checked.

    Raises:
        ConfigError: a setting is invalid; the one-line message names each
            faulty ``ECONOME_*`` variable and why, never its value.
    """
    try:
        settings = EconomeSettings()
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    try:
        # Built once here so that every cross-field rule fails now, not in the middle of a run.
        settings.influx()
        settings.event_time()
    except ValidationError as exc:
        raise ConfigError(_describe(exc, f"{ENV_PREFIX}INFLUX_")) from None
    except ValueError as exc:
        msg = f"invalid settings: {exc}"
        raise ConfigError(msg) from None
    return settings


_MAX_DETECT_CONFIG_BYTES = 1024 * 1024


def load_detect_config(path: Path) -> DetectConfig:
    r"""The detection settings of ``ECONOME_DETECT_CONFIG``: a YAML mapping validated as ``DetectConfig``.

    Every problem reads ``file:line field: message`` (the line of the deepest key known), as the inventory's;
    the file is read as the inventory is (:func:`inventory.loader.read_yaml`): a duplicate key is an error
    naming both lines, not a silent override.

    Raises:
        ConfigError: the file is missing, too large, not YAML, not a mapping, or a field is unknown or invalid.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "detect.yaml").write_text("models: false\nrules:\n  leak_min_flow_m3_h: 0.05\n", encoding="utf-8")
    >>> load_detect_config(folder / "detect.yaml").rules.leak_min_flow_m3_h
    0.05
    >>> _ = (folder / "bad.yaml").write_text("models: false\nrules:\n  leak_min_flow: 0.05\n", encoding="utf-8")
    >>> load_detect_config(folder / "bad.yaml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streams.errors.ConfigError: ECONOME_DETECT_CONFIG: .../bad.yaml:3 rules.leak_min_flow: Extra inputs are not permitted
    """
    # Imported here: the detection package costs a second or two, and only this setting needs it.
    from anomalies.detect import DetectConfig

    where = f"{ENV_PREFIX}DETECT_CONFIG: {path}"
    try:
        if path.stat().st_size > _MAX_DETECT_CONFIG_BYTES:
            msg = f"{where}: larger than {_MAX_DETECT_CONFIG_BYTES:,} bytes"
            raise ConfigError(msg)
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"{where}: cannot read: {exc.strerror or exc}"
        raise ConfigError(msg) from None
    except UnicodeDecodeError:
        msg = f"{where}: not UTF-8"
        raise ConfigError(msg) from None
    try:
        # The inventory's loading: duplicate keys, alias bombs, huge integers refused, each naming its line.
        data, lines = read_yaml(text, str(path), allow_empty=True)
    except InventoryError as exc:
        msg = f"{ENV_PREFIX}DETECT_CONFIG: " + "; ".join(exc.lines())
        raise ConfigError(msg) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        msg = f"{where}:1: the top level must be a mapping of DetectConfig fields (rules:, models:, expected:...)"
        raise ConfigError(msg)
    try:
        return DetectConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            known = next((loc[:n] for n in range(len(loc), 0, -1) if loc[:n] in lines), ())
            at = lines.get(known, 1)
            field = ".".join(str(part) for part in loc) or "(top level)"
            problems.append(f"{path}:{at} {field}: {str(error['msg']).removeprefix('Value error, ')}")
        msg = f"{ENV_PREFIX}DETECT_CONFIG: " + "; ".join(problems)
        raise ConfigError(msg) from None
