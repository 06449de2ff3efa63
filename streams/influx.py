r"""InfluxDB: line protocol, writers for the v1 and v2 APIs, and InfluxQL queries.

Econome writes with the v1 API (``/write``, database + retention policy) to
InfluxDB 1.x, and with ``influxdb-client`` (token, org, bucket) to 2.x/3.x. It
reads with InfluxQL, which all three versions answer (``/query``; on 2.x and
3.x through the DBRP mapping), so detectors and dashboards work everywhere.

Schema of raw readings (see the README for the full schema)::

    reading,building=<id>,point=<id>,quantity=<q>,usage=<u>,unit=<u>[,zone=<z>] value=<float>,quality="good" <ms>

Sample settings (see ``econome.settings``)::

    ECONOME_INFLUX_API=v1 ECONOME_INFLUX_URL=http://127.0.0.1:8086 ECONOME_INFLUX_DATABASE=econome

Credentials never travel in a URL: the v1 user and password go in an
``Authorization: Basic`` header (InfluxDB 1.x accepts it), the v2 token in an
``Authorization: Token`` header, so no URL that an HTTP library logs carries
them. Over HTTPS the server is verified against the system CAs, or ``ca_file``
(a private CA); ``cert_file``/``key_file`` give a client certificate;
``tls_insecure`` turns verification off and says so in its name.

>>> print(escape_tag("Salle du conseil"))
Salle\ du\ conseil
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import logging
import math
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from inventory import Inventory
from streams.errors import ConfigError, SinkError
from streams.record import Reading

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DOWNSAMPLE_MEASUREMENT",
    "LONG_RP",
    "RAW_MEASUREMENT",
    "RAW_RP",
    "InfluxConfig",
    "InfluxQLClient",
    "InfluxV1Writer",
    "InfluxV2Writer",
    "InfluxWriter",
    "LineEncoder",
    "RefusedWriteError",
    "RetryableSinkError",
    "escape_tag",
    "influxql_ident",
    "make_writer",
    "retention_policies",
    "safe_url",
    "setup_v1",
    "tls_context",
    "to_ms",
    "write_splitting",
]

logger = logging.getLogger(__name__)

RAW_MEASUREMENT = "reading"
RAW_RP = "raw"
LONG_RP = "long"
DOWNSAMPLE_MEASUREMENT = "reading_1h"


class InfluxConfig(BaseModel):
    """Where and how to write.

    ``api: v1`` talks to InfluxDB 1.x (and to 2.x/3.x v1-compatibility
    endpoints); ``api: v2`` uses influxdb-client with token, org and bucket.
    Secrets are :class:`~pydantic.SecretStr`, so no repr or dump shows them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    api: Literal["v1", "v2"] = "v1"
    url: str = "http://127.0.0.1:8086"
    database: str = Field(default="econome", pattern=r"^[A-Za-z0-9_.-]+$")
    retention_policy: str | None = None
    raw_retention_policy: str | None = None
    username: str | None = None
    """v1 user; sent with ``password`` in an ``Authorization: Basic`` header, never in the URL."""
    password: SecretStr | None = None
    token: SecretStr | None = None
    """v2/v3 API token (``Authorization: Token``); also used for InfluxQL queries when set."""
    org: str | None = None
    bucket: str | None = None
    raw_bucket: str | None = None
    ca_file: Path | None = None
    """PEM file of the CA(s) that signed the server's certificate (a private CA); the system CAs when unset."""
    cert_file: Path | None = None
    """PEM client certificate, for servers that require one (mutual TLS)."""
    key_file: Path | None = None
    """PEM private key of ``cert_file`` (when it is not in ``cert_file`` itself)."""
    tls_insecure: bool = False
    """Do not verify the server's certificate or host name. For tests only: anyone on the path can read the secrets."""
    timeout: timedelta = timedelta(seconds=10)
    gzip: bool = True
    """Compress writes (gzip level 1)."""
    batch_size: int = Field(default=5000, ge=1, le=100_000)

    @model_validator(mode="after")
    def _v2_needs(self) -> InfluxConfig:
        if self.api == "v2" and not (self.token is not None and self.token.get_secret_value() and self.org and self.bucket):
            msg = "InfluxDB api v2 needs token, org and bucket"
            raise ConfigError(msg)
        if self.key_file is not None and self.cert_file is None:
            msg = "InfluxDB key_file needs cert_file"
            raise ConfigError(msg)
        return self

    @property
    def safe_url(self) -> str:
        """The URL without any user or password it may carry, for messages."""
        return safe_url(self.url)

    def basic_auth(self) -> httpx.BasicAuth | None:
        """The v1 credentials as an ``Authorization: Basic`` header, or None."""
        import httpx  # lazily: `econome detect` reads no InfluxDB (issue 11)
        if not self.username:
            return None
        return httpx.BasicAuth(self.username, self.password.get_secret_value() if self.password else "")

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context of HTTPS connections: CA, client certificate, verification.

        Raises:
            ConfigError: a CA, certificate or key file cannot be read.
        """
        return tls_context(self.ca_file, self.cert_file, self.key_file, insecure=self.tls_insecure, what="InfluxDB")


def tls_context(
    ca_file: Path | None, cert_file: Path | None, key_file: Path | None, *, insecure: bool, what: str
) -> ssl.SSLContext:
    """A client TLS context trusting ``ca_file`` (or the system CAs), with an optional client certificate.

    Args:
        ca_file: PEM CA bundle; the system CAs when None.
        cert_file: PEM client certificate.
        key_file: its private key, when not in ``cert_file``.
        insecure: verify neither the certificate nor the host name.
        what: the service, named in error messages.

    Raises:
        ConfigError: a file cannot be read or is not PEM.
    """
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if cert_file is not None:
            context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    except (OSError, ssl.SSLError) as exc:
        files = ", ".join(str(f) for f in (ca_file, cert_file, key_file) if f is not None)
        msg = f"{what} TLS files ({files}) cannot be loaded: {exc}"
        raise ConfigError(msg) from exc
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def safe_url(url: str) -> str:
    """``url`` without the ``user:password@`` it may carry.

    >>> safe_url("https://econome:s3cret@influx.example:8086/")
    'https://influx.example:8086/'
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _unreachable(url: str, exc: BaseException) -> str:
    """Why a connection failed, naming the server; a TLS failure says so and how to fix it."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (
            f"InfluxDB {url} TLS certificate not trusted: {cause.verify_message or cause}; "
            "set ECONOME_INFLUX_CA_FILE to the CA that signed it"
        )
    if isinstance(cause, ssl.SSLError):
        return f"InfluxDB {url} TLS handshake failed: {cause}"
    return f"InfluxDB {url} unreachable: {exc}"


@functools.lru_cache(maxsize=1 << 18)
def escape_tag(value: str) -> str:
    """Escape a tag key or value for line protocol (commas, equals, spaces).

    Cached: tag values are the inventory's ids and enums, met again in every
    aggregate a window closes (300,000 lines at once for 3,000 buildings).
    """
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def influxql_ident(name: str) -> str:
    r"""A double-quoted InfluxQL identifier (measurement, retention policy, tag or field key).

    >>> print(influxql_ident('my "rp"'))
    "my \"rp\""
    """
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _escape_field_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_ms(ts: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime."""
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return delta // timedelta(milliseconds=1)


class LineEncoder:
    """Encode readings as line protocol, with tags taken from the inventory.

    The tag set of each point is built once; encoding a reading is then one
    f-string.
    """

    def __init__(self, inventory: Inventory, measurement: str = RAW_MEASUREMENT) -> None:
        self.measurement = escape_tag(measurement)
        self._prefix: dict[str, str] = {}
        for building, point in inventory.points():
            tags = {
                "building": building.id,
                "point": point.id,
                "quantity": point.quantity.value,
                "unit": point.unit,
                "usage": point.usage.value,
            }
            if point.zone:
                tags["zone"] = point.zone
            tagstr = ",".join(f"{k}={escape_tag(v)}" for k, v in sorted(tags.items()))
            self._prefix[point.id] = f"{self.measurement},{tagstr} "

    def knows(self, point_id: str) -> bool:
        """Tell whether the point is in the inventory."""
        return point_id in self._prefix

    def encode(self, reading: Reading) -> str:
        """One line for one reading.

        Raises:
            KeyError: the point is not in the inventory.
            ValueError: the value is not finite.
        """
        if not math.isfinite(reading.value):
            msg = f"point {reading.point_id}: value {reading.value} is not finite"
            raise ValueError(msg)
        return (
            f"{self._prefix[reading.point_id]}value={float(reading.value)!r},"
            f"quality={_escape_field_string(reading.quality.value)} {to_ms(reading.ts)}"
        )


class InfluxWriter(Protocol):
    """Writes line-protocol batches; raises :class:`SinkError` on failure."""

    async def write(self, lines: list[str], *, raw: bool = False) -> None:
        """Write one batch (millisecond precision); ``raw`` marks raw readings."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class RetryableSinkError(SinkError):
    """The write may succeed later (server down, overloaded, 5xx)."""


class RefusedWriteError(SinkError):
    """InfluxDB refused what a batch holds, not the request itself (400, 413).

    400: a line it cannot parse, a field-type conflict, a time out of range; 413:
    a batch too large. Other lines of the batch may have been stored: InfluxDB answers a partial write
    with 400 too. Writes are idempotent, so :func:`write_splitting` writes the halves
    again until the refused lines are isolated.
    """

    status: int

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# Statuses that say "something in this batch", so that a smaller batch may pass.
_SPLITTABLE = frozenset({400, 413})


def _refuses_lines(status: int, body: str) -> bool:
    """Whether a 400 or 413 refuses lines of the batch, so that bisecting it finds them.

    InfluxDB's 400 is a JSON error (``{"error": ...}`` in 1.x and 3.x, ``{"code", "message"}``
    in 2.x). A 400 of another body comes from something else on the way (a proxy; plain HTTP
    sent to an HTTPS port): it refuses every request, and bisecting would dead-letter every
    line. A 413 (too large) is the batch's size whoever says it.
    """
    if status == 413:
        return True
    try:
        answer = json.loads(body)
    except ValueError:
        return False
    return isinstance(answer, dict) and any(isinstance(answer.get(key), str) for key in ("error", "message"))


def _not_influxdb(msg: str) -> str:
    return f"{msg} (not an InfluxDB error: a proxy, or plain HTTP sent to an HTTPS port?); the readings are kept"


async def write_splitting(writer: InfluxWriter, lines: list[str], *, raw: bool = False) -> list[tuple[str, str]]:
    """Write ``lines``; where InfluxDB refuses the batch, bisect it to find the lines it refuses.

    Works with any writer (v1 or v2): a refused batch is split in halves, each
    written again, down to single lines. ``k`` bad lines among ``n`` cost about
    ``2 k log2(n)`` requests; lines written twice overwrite themselves.

    Args:
        writer: the InfluxDB writer.
        lines: line protocol.
        raw: raw readings (see :meth:`InfluxWriter.write`).

    Returns:
        The refused lines, each with InfluxDB's reason; every other line is written.

    Raises:
        RetryableSinkError: InfluxDB is unreachable (write the whole batch again later).
        SinkError: InfluxDB refused the request itself (authentication, unknown database).
    """
    if not lines:
        return []
    try:
        await writer.write(lines, raw=raw)
    except RefusedWriteError as exc:
        if len(lines) == 1:
            return [(lines[0], str(exc))]
        middle = len(lines) // 2
        first = await write_splitting(writer, lines[:middle], raw=raw)
        return first + await write_splitting(writer, lines[middle:], raw=raw)
    return []


class InfluxV1Writer:
    """Writer for the v1 HTTP API (``POST /write``).

    A batch is joined, compressed and posted in a worker thread (a synchronous
    client), so a write goes out and its answer is read while the event loop is
    busy: with the asynchronous client a request took ten turns of the loop or
    more, and during a burst each turn lasted as long as validating and storing
    a few thousand readings, so nothing was written until the burst was over
    (issue 15). ``max_inflight`` writes of the pipeline are as many threads.
    Daemon threads, not ``asyncio.to_thread``'s executor: a post still blocked on
    a server that never answers when the process stops is abandoned (its lines
    stay unacknowledged in the delivery log), where the executor, joined at exit,
    held the exit for the client's whole timeout, past the stop bound.
    """

    def __init__(self, config: InfluxConfig) -> None:
        self.config = config
        import httpx  # lazily: `econome detect` reads no InfluxDB (issue 11)

        self._client = _http_client(config)
        self._sync = httpx.Client(**_client_settings(config))
        params: dict[str, str] = {"db": config.database, "precision": "ms"}
        if config.retention_policy:
            params["rp"] = config.retention_policy
        self._params = params
        self._raw_params = {**params, "rp": config.raw_retention_policy} if config.raw_retention_policy else None

    async def ensure_database(self) -> None:
        """Create the database if it does not exist, and find the ``raw`` retention policy.

        When ``econome influx setup`` has created a ``raw`` retention policy and
        none is configured, raw readings go there.

        Raises:
            RetryableSinkError: InfluxDB is unreachable or answers 429/5xx.
            SinkError: InfluxDB refused the statement (e.g. 403: the user is not an admin).
        """
        await _influxql_post(self._client, f'CREATE DATABASE "{self.config.database}"')
        if self._raw_params is None:
            policies = await retention_policies(self._client, self.config.database)
            if RAW_RP in policies:
                self._raw_params = {**self._params, "rp": RAW_RP}

    async def write(self, lines: list[str], *, raw: bool = False) -> None:
        """Write one batch; gzip-compressed when configured.

        Args:
            lines: line protocol, millisecond precision.
            raw: raw readings, for the short retention policy when there is one.
        """
        import httpx  # lazily: `econome detect` reads no InfluxDB (issue 11)
        if not lines:
            return
        params = self._raw_params if raw and self._raw_params is not None else self._params
        try:
            response = await _in_daemon_thread(self._post, lines, params)
            if response.status_code == 404 and "database not found" in response.text:
                # InfluxDB was down when we started, or the database was dropped: create it once.
                try:
                    await self.ensure_database()
                except SinkError as exc:
                    # A user without admin rights (403), or InfluxDB failing (5xx): the request is
                    # refused, not the lines; they stay in the delivery log (review finding 4).
                    msg = f"InfluxDB {self.config.safe_url}: database {self.config.database!r} not found and not created: {exc}"
                    raise RetryableSinkError(msg) from exc
                response = await _in_daemon_thread(self._post, lines, params)
        except httpx.TimeoutException as exc:
            msg = f"InfluxDB {self.config.safe_url} timed out writing {len(lines)} points"
            raise RetryableSinkError(msg) from exc
        except httpx.HTTPError as exc:
            raise RetryableSinkError(_unreachable(self.config.safe_url, exc)) from exc
        _check_status(response, self.config.safe_url, len(lines))

    def _post(self, lines: list[str], params: dict[str, str]) -> httpx.Response:
        """Join, compress and post a batch (in a worker thread); the response is read whole."""
        body = ("\n".join(lines) + "\n").encode()
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.config.gzip:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        return self._sync.post("/write", params=params, content=body, headers=headers)

    async def close(self) -> None:
        """Close the HTTP clients."""
        self._sync.close()
        await self._client.aclose()


def _check_status(response: httpx.Response, url: str, count: int) -> None:
    page = "text/html" in response.headers.get("content-type", "")
    if response.status_code == 204 or (response.status_code == 200 and not page):
        return
    detail = response.text[:300]
    if page and response.status_code == 200:
        # InfluxDB answers a write 204, never with a page: a login page or a web app took the request.
        msg = f"InfluxDB {url} answered 200 with an HTML page to a write of {count} points: {detail}"
        raise RetryableSinkError(_not_influxdb(msg))
    msg = f"InfluxDB {url} answered {response.status_code} to a write of {count} points: {detail}"
    if response.status_code == 429 or response.status_code >= 500:
        raise RetryableSinkError(msg)
    if response.status_code in _SPLITTABLE:
        if not _refuses_lines(response.status_code, response.text):
            raise RetryableSinkError(_not_influxdb(msg))
        raise RefusedWriteError(msg, response.status_code)
    # 401, 403, 404...: the request was refused, not its lines (a rotated password, a
    # missing database or permission). The readings stay in the delivery log, with
    # back-pressure, until an operator fixes it; dead-lettering them would lose them.
    raise RetryableSinkError(msg)


_Result = TypeVar("_Result")


async def _in_daemon_thread(fun: Callable[..., _Result], *args: Any) -> _Result:
    """``fun(*args)`` in a daemon thread of its own; cancelling the wait abandons the call, and the exit never waits for it."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_Result] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            result, error = fun(*args), None
        except BaseException as exc:  # handed to the waiting coroutine
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    threading.Thread(target=run, name="influx-write", daemon=True).start()
    return await future


def _warn_insecure(config: InfluxConfig) -> None:
    if config.tls_insecure and _https(config.url):
        logger.warning("InfluxDB %s: TLS verification is off (tls_insecure); credentials can be intercepted", config.safe_url)


def _http_client(config: InfluxConfig) -> httpx.AsyncClient:
    """An HTTP client with the config's credentials in headers and its TLS settings."""
    import httpx  # lazily: `econome detect` reads no InfluxDB (issue 11)
    _warn_insecure(config)
    return httpx.AsyncClient(**_client_settings(config))


def _client_settings(config: InfluxConfig) -> dict[str, Any]:
    """URL, timeout, credentials (in headers) and TLS settings of a client, synchronous or not."""
    headers = {"Authorization": f"Token {config.token.get_secret_value()}"} if config.token is not None else {}
    return {
        "base_url": config.url,
        "timeout": config.timeout.total_seconds(),
        "auth": config.basic_auth(),
        "headers": headers,
        # Plain HTTP has no TLS to set up: loading the system CAs costs 20-30 ms of CPU a client, and a live pass
        # opens several clients per chunk of buildings (issue 12).
        "verify": config.ssl_context() if _https(config.url) else False,
    }


def _https(url: str) -> bool:
    """Whether a URL is HTTPS (its scheme, case-insensitive).

    >>> _https("HTTPS://influx:8086"), _https("http://127.0.0.1:8086")
    (True, False)
    """
    return url.strip().lower().startswith("https://")


async def _influxql_post(client: httpx.AsyncClient, statement: str) -> None:
    import httpx  # lazily: `econome detect` reads no InfluxDB (issue 11)
    try:
        response = await client.post("/query", params={"q": statement})
    except httpx.HTTPError as exc:
        msg = f"{_unreachable(safe_url(str(client.base_url)), exc)} (running {statement!r})"
        raise RetryableSinkError(msg) from exc
    if response.status_code == 429 or response.status_code >= 500:
        msg = f"InfluxDB {safe_url(str(client.base_url))} failed {statement!r}: {response.status_code} {response.text[:200]}"
        raise RetryableSinkError(msg)
    if response.status_code != 200 or "error" in response.text[:200]:
        msg = f"InfluxDB {safe_url(str(client.base_url))} refused {statement!r}: {response.status_code} {response.text[:200]}"
        raise SinkError(msg)


class InfluxV2Writer:
    """Writer for InfluxDB 2.x/3.x through ``influxdb-client`` (token, org, bucket).

    The client is synchronous; each batch is written in a worker thread so the
    event loop never blocks.
    """

    def __init__(self, config: InfluxConfig) -> None:
        # Imported here: influxdb-client takes half a second to import, and only v2 writes need it.
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.service.write_service import WriteService

        self.config = config
        _warn_insecure(config)
        self._client = InfluxDBClient(
            url=config.url,
            token=config.token.get_secret_value() if config.token else "",
            org=config.org or "",
            timeout=int(config.timeout.total_seconds() * 1000),
            enable_gzip=config.gzip,
            verify_ssl=not config.tls_insecure,
            ssl_context=config.ssl_context() if _https(config.url) else None,
        )
        self._write_service = WriteService(self._client.api_client)  # type: ignore[no-untyped-call]  # influxdb-client is untyped

    async def write(self, lines: list[str], *, raw: bool = False) -> None:
        """Write one batch in a worker thread; raw readings to ``raw_bucket`` when set."""
        if lines:
            bucket = (self.config.raw_bucket if raw else None) or self.config.bucket or ""
            await _in_daemon_thread(self._write_sync, lines, bucket)  # abandoned, not waited for, at exit

    def _write_sync(self, lines: list[str], bucket: str) -> None:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            # The write service rather than write_api.write: it gives the answer's status and headers.
            _, status, headers = self._write_service.post_write_with_http_info(  # type: ignore[no-untyped-call]  # untyped
                org=self.config.org or "",
                bucket=bucket,
                body="\n".join(lines).encode(),
                precision=WritePrecision.MS,
                content_type="text/plain; charset=utf-8",
                _return_http_data_only=False,
            )
        except ApiException as exc:
            if not exc.status:
                # influxdb-client turns a TLS failure into status 0: nothing was answered, retry later.
                raise RetryableSinkError(_unreachable(self.config.safe_url, exc)) from exc
            msg = f"InfluxDB {self.config.safe_url} answered {exc.status} to a write of {len(lines)} points: {exc.reason}"
            if exc.status is None or exc.status == 429 or exc.status >= 500:
                raise RetryableSinkError(msg) from exc
            if exc.status in _SPLITTABLE:
                body = str(exc.body or "")
                if not _refuses_lines(exc.status, body):
                    raise RetryableSinkError(_not_influxdb(f"{msg} {body[:300]}".rstrip())) from exc
                raise RefusedWriteError(f"{msg} {body[:300]}".rstrip(), exc.status) from exc
            raise RetryableSinkError(msg) from exc  # refused request (401, 403, 404): keep the readings
        except (Urllib3Error, OSError) as exc:
            raise RetryableSinkError(_unreachable(self.config.safe_url, exc)) from exc
        if status != 204 and "text/html" in str(dict(headers or {}).get("Content-Type", "")):
            # InfluxDB answers a write 204, never with a page: a login page or a web app took the request.
            msg = f"InfluxDB {self.config.safe_url} answered {status} with an HTML page to a write of {len(lines)} points"
            raise RetryableSinkError(_not_influxdb(msg))

    async def close(self) -> None:
        """Close the client."""
        await asyncio.to_thread(self._client.close)


async def retention_policies(client: httpx.AsyncClient, database: str) -> dict[str, str]:
    """Retention policies of a v1 database: name → duration (``client`` carries the credentials)."""
    import httpx  # lazily: `econome detect` reads no InfluxDB (issue 11)
    try:
        response = await client.get("/query", params={"q": f'SHOW RETENTION POLICIES ON "{database}"'})
    except httpx.HTTPError as exc:
        msg = f"{_unreachable(safe_url(str(client.base_url)), exc)} (listing retention policies)"
        raise RetryableSinkError(msg) from exc
    if response.status_code != 200:
        msg = f"InfluxDB {safe_url(str(client.base_url))} answered {response.status_code} listing retention policies"
        raise (RetryableSinkError if response.status_code == 429 or response.status_code >= 500 else SinkError)(msg)
    try:
        payload = response.json()
    except ValueError as exc:
        msg = f"InfluxDB {safe_url(str(client.base_url))} answered no JSON listing retention policies"
        raise RetryableSinkError(msg) from exc
    out: dict[str, str] = {}
    for result in payload.get("results", []):
        for series in result.get("series", []):
            for row in series.get("values", []):
                out[str(row[0])] = str(row[1])
    return out


async def setup_v1(config: InfluxConfig, raw_days: int, long_days: int) -> list[str]:
    """Retention and downsampling on InfluxDB 1.x; returns the statements run.

    * ``long`` (default policy, ``long_days``): aggregates, anomalies and the
      hourly downsampling of raw readings — at least 5 years (Décret BACS);
    * ``raw`` (``raw_days``): raw readings and point status;
    * a continuous query keeps the hourly mean, min and max of every raw point
      in ``long.reading_1h``.

    Running it again alters the durations; it creates nothing twice.
    """
    if long_days < 1826:
        msg = f"aggregates must be kept at least 5 years (1826 days), not {long_days}"
        raise ValueError(msg)
    if raw_days < 1:
        msg = "raw readings must be kept at least one day"
        raise ValueError(msg)
    db = config.database
    async with _http_client(config) as client:
        await _influxql_post(client, f'CREATE DATABASE "{db}"')
        existing = await retention_policies(client, db)
        statements = []
        for name, days, default in ((LONG_RP, long_days, True), (RAW_RP, raw_days, False)):
            verb = "ALTER" if name in existing else "CREATE"
            statement = f'{verb} RETENTION POLICY "{name}" ON "{db}" DURATION {days}d REPLICATION 1'
            statements.append(statement + (" DEFAULT" if default else ""))
        statements.append(f'DROP CONTINUOUS QUERY "cq_reading_1h" ON "{db}"')
        statements.append(
            f'CREATE CONTINUOUS QUERY "cq_reading_1h" ON "{db}" BEGIN '  # noqa: S608 - db matches a safe pattern
            f'SELECT mean("value") AS "mean", min("value") AS "min", max("value") AS "max" '
            f'INTO "{db}"."{LONG_RP}"."{DOWNSAMPLE_MEASUREMENT}" FROM "{db}"."{RAW_RP}"."{RAW_MEASUREMENT}" '
            f"GROUP BY time(1h), * END"
        )
        for statement in statements:
            if statement.startswith("DROP CONTINUOUS QUERY"):
                try:
                    await _influxql_post(client, statement)
                except SinkError:
                    continue  # it did not exist yet
                continue
            await _influxql_post(client, statement)
    return statements


def make_writer(config: InfluxConfig) -> InfluxV1Writer | InfluxV2Writer:
    """The writer for the configured API."""
    return InfluxV1Writer(config) if config.api == "v1" else InfluxV2Writer(config)


def _series_of(payload: Any, url: str, statement: str) -> list[dict[str, Any]]:
    """The series of an InfluxQL answer, each a dict with ``columns`` and ``values`` (rows as long as ``columns``).

    Raises:
        SinkError: an InfluxQL error, or an answer of another shape (a server that is not InfluxDB).
    """
    results = payload.get("results", []) if isinstance(payload, dict) else None
    series: list[dict[str, Any]] = []
    problem = None if isinstance(results, list) else f"JSON {str(payload)[:80]}"
    for result in results or []:
        if not isinstance(result, dict):
            problem = f"a result {str(result)[:80]}"
            break
        if "error" in result:
            msg = f"InfluxQL error in {statement!r}: {result['error']}"
            raise SinkError(msg)
        found = result.get("series", [])
        problem = None if isinstance(found, list) else f"series {str(found)[:80]}"
        for one in found if problem is None else []:
            problem = _series_problem(one)
            if problem is not None:
                break
            series.append(one)
        if problem is not None:
            break
    if problem is not None:
        msg = f"InfluxDB {url} answered {statement!r} with {problem}, not an InfluxQL answer"
        raise SinkError(msg)
    return series


def _series_problem(one: Any) -> str | None:
    """What makes ``one`` no InfluxQL series; None when it is one (``values`` then set, ``[]`` when absent)."""
    if not isinstance(one, dict) or not isinstance(one.get("columns"), list):
        return f"a series without columns {str(one)[:80]}"
    if not isinstance(one.get("tags", {}), dict):
        return f"tags {str(one['tags'])[:80]}"
    values = one.setdefault("values", [])
    width = len(one["columns"])
    if not isinstance(values, list) or not all(isinstance(row, list) and len(row) == width for row in values):
        return f"rows that do not match the columns {str(one['columns'])[:80]}"
    return None


class InfluxQLClient:
    """Runs InfluxQL queries (``GET /query``) on InfluxDB 1.x, 2.x or 3.x."""

    def __init__(self, config: InfluxConfig) -> None:
        self.config = config
        self._client = _http_client(config)

    async def query(self, statement: str) -> list[dict[str, Any]]:
        """Run one statement and return its series.

        Each series is a dict with ``name``, ``tags`` (may be absent),
        ``columns`` and ``values``; times are epoch milliseconds.

        Raises:
            SinkError: the server is unreachable or refused the query.
        """
        import httpx  # lazily: `econome detect` reads no InfluxDB (issue 11)

        params = {"db": self.config.bucket if self.config.api == "v2" else self.config.database, "q": statement, "epoch": "ms"}
        try:
            response = await self._client.get("/query", params=params)
        except httpx.HTTPError as exc:
            raise RetryableSinkError(_unreachable(self.config.safe_url, exc)) from exc
        if response.status_code != 200:
            msg = f"InfluxDB refused {statement!r}: {response.status_code} {response.text[:300]}"
            raise SinkError(msg)
        try:
            payload = response.json()
        except ValueError as exc:  # a proxy's HTML page, a body cut short
            msg = f"InfluxDB {self.config.safe_url} answered {statement!r} with what is not JSON: {response.text[:100]!r}"
            raise SinkError(msg) from exc
        return _series_of(payload, self.config.safe_url, statement)

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def select_range(
        self,
        measurement: str,
        field: str,
        start: datetime,
        end: datetime,
        *,
        group_by: str,
        chunk: timedelta = timedelta(days=1),
        retention_policy: str | None = None,
        where: str | None = None,
    ) -> AsyncIterator[tuple[str, list[tuple[int, float]]]]:
        """The values of one field in ``[start, end)``, per value of a tag, one time chunk at a time.

        One query per ``chunk`` of time (``SELECT "field" FROM "rp"."measurement"
        WHERE time >= … AND time < … GROUP BY "tag"``), so that no answer holds
        more than a chunk of the range: memory stays bounded whatever the range.
        Null values are left out.

        Args:
            measurement: the measurement, e.g. :data:`RAW_MEASUREMENT`.
            field: the field, e.g. ``value``.
            start: first time included (aware).
            end: end, excluded.
            group_by: the tag the rows are grouped by, e.g. ``point``.
            chunk: time covered by one query.
            retention_policy: the retention policy; the database's default when None.
            where: an InfluxQL condition ANDed with the time range, e.g. ``("point" = 'a' OR "point" = 'b')``.

        Yields:
            Per chunk and tag value: the tag value and its ``(epoch ms, value)`` rows, in time order.

        Raises:
            SinkError: the server is unreachable, refused a query, or cut an answer short
                (``max-row-limit``: use a shorter ``chunk``).
        """
        if chunk <= timedelta(0):
            msg = f"chunk must be positive, not {chunk}"
            raise ValueError(msg)
        source = influxql_ident(measurement)
        if retention_policy:
            source = f"{influxql_ident(retention_policy)}.{source}"
        lo = start
        while lo < end:
            hi = min(lo + chunk, end)
            statement = (
                f"SELECT {influxql_ident(field)} FROM {source} "  # noqa: S608 - identifiers quoted, times are integers
                f"WHERE time >= {to_ms(lo)}ms AND time < {to_ms(hi)}ms{f' AND {where}' if where else ''} "
                f"GROUP BY {influxql_ident(group_by)}"
            )
            for series in await self.query(statement):
                if series.get("partial"):
                    msg = (f"InfluxDB {self.config.safe_url} cut short the answer to {statement!r} "
                           "(max-row-limit): read shorter chunks")
                    raise SinkError(msg)
                key = str(series.get("tags", {}).get(group_by, ""))
                try:
                    column = series["columns"].index(field)
                    rows = [(int(row[0]), float(row[column])) for row in series["values"] if row[column] is not None]
                except (ValueError, TypeError, OverflowError) as exc:
                    msg = f"InfluxDB {self.config.safe_url} answered {statement!r} with a row that is no time and number: {exc}"
                    raise SinkError(msg) from exc
                yield key, rows
            lo = hi
