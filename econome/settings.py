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

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.influx import InfluxConfig

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
    lateness_s: float = 600.0
    """Allowed lateness of readings, in seconds of event time, before a window closes."""
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
