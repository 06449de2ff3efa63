"""The Kafka bootstrap address of the faust runner's settings (``ECONOME_KAFKA_URL``).

One or several bootstrap servers, comma-separated, plaintext: ``kafka://k1:9092,k2:9092``.
Kept apart from :mod:`streams.faust_runner` so that checking the settings does not import faust.
"""

from __future__ import annotations

import re

from streams.errors import ConfigError

_SERVER = re.compile(r"(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})")

__all__ = ["kafka_servers"]


def kafka_servers(url: str) -> list[str]:
    """The bootstrap servers of ``kafka://HOST:PORT[,HOST:PORT...]`` (``kafka://`` optional), as ``host:port``.

    Raises:
        ConfigError: a server is not ``HOST:PORT`` with a port number.

    >>> kafka_servers("kafka://k1:9092,k2:9093")
    ['k1:9092', 'k2:9093']
    """
    servers = []
    for item in url.removeprefix("kafka://").split(","):
        server = item.strip().removeprefix("kafka://")
        match = _SERVER.fullmatch(server)
        if match is None or not 0 < int(match["port"]) < 65536:
            msg = f"{server!r} of {url!r} is not HOST:PORT; e.g. kafka://k1:9092,k2:9092"
            raise ConfigError(msg)
        servers.append(server)
    return servers
