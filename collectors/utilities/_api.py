"""What the Enedis and GRDF API clients share: an OAuth2 client-credentials token, retries, errors.

Both utilities give a machine-to-machine access token for a ``client_id`` and
``client_secret`` (OAuth2 client credentials, RFC 6749 section 4.4) and answer
429 (quota) or 5xx when busy: :class:`TokenClient` keeps the token until it
expires and retries those answers with an exponential backoff (honouring a
``Retry-After`` header in seconds), at most ``retries`` times. Every request has
a timeout. Secrets are never put in an error message or a log line.

The fetchers return :class:`streams.imports.Consumption` intervals, which
:func:`streams.imports.deliver_consumption` writes as files' are written.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import httpx

from streams.errors import CollectorError

__all__ = ["NoConsent", "TokenClient", "UtilityApiError"]

logger = logging.getLogger(__name__)

_RETRIED = frozenset({429, 500, 502, 503, 504})


class UtilityApiError(CollectorError):
    """A utility API refused or failed a request (after the retries); the message names the meter, never a secret."""


class NoConsent(UtilityApiError):
    """The customer's consent for this meter is missing, expired or revoked (HTTP 403 or the API's own code)."""


class TokenClient:
    """An httpx client that gets and renews an OAuth2 client-credentials token, and retries 429/5xx.

    Args:
        name: the API, for messages (``Enedis Data Connect``).
        token_url: the token endpoint.
        client_id: the application's id.
        client_secret: its secret.
        token_form: extra form fields of the token request (GRDF's ``scope``).
        timeout: of each request.
        retries: further tries of a 429/5xx answer or a transport error.
        backoff: the first wait; each next one doubles (with up to 10 % jitter).
        transport: an httpx transport (tests); the network when None.
    """

    def __init__(
        self,
        name: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        token_form: Mapping[str, str] | None = None,
        timeout: timedelta = timedelta(seconds=30),
        retries: int = 4,
        backoff: timedelta = timedelta(seconds=2),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self._token_url = token_url
        self._form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret,
                      **(token_form or {})}
        self._retries = retries
        self._backoff = backoff
        self._http = httpx.AsyncClient(timeout=timeout.total_seconds(), transport=transport)
        self._token: str | None = None
        self._expires = 0.0
        self.requests = 0
        """Requests sent, token requests included (for tests and logs)."""

    async def close(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def _send(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        """One request, retried on 429/5xx and transport errors; the last answer whatever its status."""
        delay = self._backoff.total_seconds()
        for attempt in range(self._retries + 1):
            self.requests += 1
            try:
                response = await self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                if attempt == self._retries:
                    # The URL without its query (the form, with the secret, is in the body and never shown).
                    where = httpx.URL(url).copy_with(query=None)
                    msg = f"{self.name}: {what}: {type(exc).__name__} ({exc}) on {method} {where} after {attempt + 1} tries"
                    raise UtilityApiError(msg) from exc
                wait = delay
            else:
                if response.status_code not in _RETRIED or attempt == self._retries:
                    return response
                wait = _retry_after(response, delay)
            logger.debug("%s: %s: retry %d in %.1f s", self.name, what, attempt + 1, wait)
            await asyncio.sleep(wait * (1 + random.random() / 10))  # noqa: S311 - jitter, not crypto
            delay *= 2
        msg = "unreachable"  # pragma: no cover - the loop returns or raises
        raise AssertionError(msg)

    async def _access_token(self) -> str:
        if self._token is not None and time.monotonic() < self._expires:
            return self._token
        response = await self._send("POST", self._token_url, "token", data=self._form)
        if response.status_code != 200:
            # The body may echo the client id, never the secret; it is cut all the same.
            msg = f"{self.name}: token refused: HTTP {response.status_code} {response.text[:200]!r}"
            raise UtilityApiError(msg)
        try:
            body = response.json()
            token = str(body["access_token"])
            lifetime = float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError) as exc:
            msg = f"{self.name}: token answer without access_token"
            raise UtilityApiError(msg) from exc
        self._token = token
        self._expires = time.monotonic() + max(lifetime - 60, 0)
        return token

    async def get(self, url: str, params: Mapping[str, str], what: str) -> httpx.Response:
        """GET with the bearer token; a 401 renews the token once.

        Returns:
            The answer after the retries, whatever its status (the caller reads its API's errors).
        """
        for renewed in (False, True):
            headers = {"Authorization": f"Bearer {await self._access_token()}", "Accept": "application/json"}
            response = await self._send("GET", url, what, params=params, headers=headers)
            if response.status_code != 401 or renewed:
                return response
            self._token = None
        return response  # pragma: no cover - the loop returns


def _retry_after(response: httpx.Response, default: float) -> float:
    """The answer's ``Retry-After`` in seconds (at most 5 min), else ``default``."""
    try:
        return min(float(response.headers.get("Retry-After", "")), 300.0)
    except ValueError:
        return default
