"""The InfluxDB clients set up TLS for HTTPS only (a live pass opens several per chunk of buildings, issue 12)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from streams.errors import ConfigError
from streams.influx import InfluxConfig, InfluxQLClient, make_writer


def test_plain_http_clients_load_no_certificates(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With a CA file that cannot be read, an ``http://`` client is made (no TLS to set up), an ``https://`` one not.

    Loading the system CAs cost 20-30 ms of CPU per client, three clients a pass (bench/live.py's profile).
    """
    calls: list[object] = []
    real = ssl.create_default_context

    def counted(*args: object, **kwargs: object) -> ssl.SSLContext:
        calls.append(kwargs.get("cafile"))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    missing = tmp_path / "missing-ca.pem"

    async def make(url: str) -> None:
        for api in ("v1", "v2"):
            config = InfluxConfig(url=url, api=api, ca_file=missing, token="t" if api == "v2" else None,
                                  org="o" if api == "v2" else None, bucket="b" if api == "v2" else None)
            client, writer = InfluxQLClient(config), make_writer(config)
            await client.close()
            await writer.close()

    asyncio.run(make("http://127.0.0.1:8086"))
    assert calls == []
    with pytest.raises(ConfigError, match=r"missing-ca\.pem"):
        asyncio.run(make("HTTPS://127.0.0.1:8086"))


@pytest.mark.parametrize("url", ["https://influx:8086", "HTTPS://influx:8086", "Https://u:p@influx:8086"])
def test_an_insecure_https_client_warns_whatever_the_case_of_its_scheme(url: str, caplog: pytest.LogCaptureFixture) -> None:
    """``tls_insecure`` on an HTTPS URL (its scheme in any case, as ``_https`` reads it) logs its warning."""

    async def make() -> None:
        await InfluxQLClient(InfluxConfig(url=url, tls_insecure=True)).close()

    with caplog.at_level("WARNING", logger="streams.influx"):
        asyncio.run(make())
    assert [r.getMessage() for r in caplog.records if "TLS verification is off" in r.getMessage()]
