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

from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.influx import InfluxConfig
from streams.validate import EventTimeConfig

__all__ = ["EconomeSettings"]


class EconomeSettings(BaseSettings):
    """Where Econome writes, and how it runs."""

    model_config = SettingsConfigDict(env_prefix="ECONOME_", env_file=".env", extra="ignore", frozen=True)

    influx_api: Literal["v1", "v2"] = "v1"
    """``v1`` for InfluxDB 1.x (``/write``), ``v2`` for 2.x/3.x through influxdb-client."""
    influx_url: str = "http://127.0.0.1:8086"
    """Base URL of InfluxDB."""
    influx_database: str = "econome"
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
    batch_size: int = 5000
    """Most points per write."""
    flush_interval_s: float = 1.0
    """Longest wait, in seconds, before queued points are written."""
    data_dir: Path = Path("var")
    """Where the delivery log (``delivery.sqlite``) and dead letters are kept."""
    buffer_max_rows: int = 2_000_000
    """Most rows the delivery log holds while InfluxDB is unreachable (a warning at 80 %)."""
    stop_timeout_s: float = Field(default=10.0, gt=0, le=300)
    """Longest a stop (SIGTERM) takes, in seconds, even with InfluxDB down and the delivery log full."""
    dead_letter_max_file_bytes: int = Field(default=10_000_000, ge=1024)
    """The dead-letter file is rotated before it grows past this many bytes."""
    dead_letter_keep_files: int = Field(default=5, ge=0)
    """Rotated dead-letter files kept (their counts are kept whatever happens to them)."""
    dead_letter_max_payload_bytes: int = Field(default=4096, ge=16)
    """Longest payload prefix kept in a dead letter (its full size and SHA-256 are kept too)."""
    lateness_s: float = 600.0
    """Allowed lateness of readings, in seconds of event time, before a window closes."""
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
    """Kafka bootstrap server, for the faust runner."""
    kafka_partitions: int = 12
    """Partitions of the readings topic (readings are keyed by building)."""
    kafka_session_timeout_s: float = 10.0
    """Consumer-group session timeout of the faust worker, in seconds."""
    log_level: str = "INFO"
    """Logging level of the ``econome`` command."""

    def influx(self) -> InfluxConfig:
        """The InfluxDB settings as the sink's config."""
        return InfluxConfig(
            api=self.influx_api,
            url=self.influx_url,
            database=self.influx_database,
            retention_policy=self.influx_retention_policy,
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
        """The secret values of these settings (InfluxDB password and token, a password in the URL)."""
        values = [s.get_secret_value() for s in (self.influx_password, self.influx_token) if s is not None]
        url_password = urlsplit(self.influx_url).password
        if url_password:
            values.append(unquote(url_password))
        return [v for v in values if v]

    @property
    def allowed_lateness(self) -> timedelta:
        """Allowed lateness as a duration."""
        return timedelta(seconds=self.lateness_s)

    @property
    def flush_interval(self) -> timedelta:
        """Flush interval as a duration."""
        return timedelta(seconds=self.flush_interval_s)
