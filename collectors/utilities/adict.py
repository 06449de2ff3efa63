r"""GRDF ADICT: a Gazpar's daily consumption fetched through the API.

The customer gives the consent once on the GRDF site (``droit d'accès``); the
application then reads the meter with a client-credentials token from GRDF's
OpenID server (``POST https://sofit-sso-oidc.grdf.fr/openam/oauth2/realms/externeGrdf/access_token``,
form ``grant_type=client_credentials, client_id, client_secret, scope=/adict/v2``).

``GET {url}/pce/{pce}/donnees_consos_informatives?date_debut=YYYY-MM-DD&date_fin=YYYY-MM-DD``
answers NDJSON: one JSON object a line, each either a day's record (the shape of
``lowatt-grdf``'s ``tests/test_api.py``, snake_case)

.. code-block:: json

    {"pce": {"id_pce": "23000000000000"},
     "periode": {"date_debut": "2021-08-16", "date_fin": "2021-08-19"},
     "consommation": {"date_debut_consommation": "2021-08-16T06:00:00+02:00",
                      "date_fin_consommation": "2021-08-17T06:00:00+02:00",
                      "volume_brut": 1, "energie": 8,
                      "coeff_calcul": {"coeff_pta": null, "valeur_pcs": null, "coeff_conversion": 11.16},
                      "type_qualif_conso": "Mesuré", "statut_conso": "Provisoire",
                      "journee_gaziere": "2021-08-16", "type_conso": "Informative Journalier"},
     "statut_restitution": null}

or a refusal for the request (HTTP 200 all the same): ``{"statut_restitution":
{"code": "1000", "message": "..."}}``, or a GDA status line ``{"code_statut_traitement": ...}``.
A line that is not JSON, a record without a usable day or amount, and a refusal
are reported by line number; the other lines are used. A refusal for lack of an
access right (its message names the ``droit d'accès``) with no record at all fails
the point as :class:`~collectors.utilities._api.NoConsent`; any other refusal with
no record (e.g. no data published yet) leaves the days to be asked again.

A record is the gas day ``journee_gaziere`` D, which runs from 06:00 on D to 06:00
on D+1, French local time: the interval ``[D 06:00, D+1 06:00)``. Its amount is
``volume_brut`` (m3) for a ``gas_volume`` point, ``energie`` (kWh) for an energy
point (``energie`` is the volume times ``coeff_calcul.coeff_conversion``, the
conversion coefficient of the day). A 1M (household) meter's informative data are
published from D+1 to D+3; an MM (professional) meter's informative daily data of
month M-1 come once a month, between the 10th and the 20th of month M (Jeedom GRDF
plugin's table): see ``grdf.publication`` in the inventory. The record's
``date_debut_consommation``/``date_fin_consommation`` are not used as the bounds,
their time of day varying with the meter's frequency.

Sources: the GRDF ADICT API portal (``sites.grdf.fr/web/portail-api-grdf-adict``)
as used by ``lowatt-grdf`` (token endpoint and form, NDJSON answers,
``donnees_consos_informatives`` parameters), its staging request catalogue, the
Jeedom GRDF plugin's table of publication delays, and a client's notes on
``statut_restitution`` refusals sent with HTTP 200 and GDA lines mixed in the
stream. No maintained PyPI client fits: ``lowatt-grdf`` (MIT) had its last release
in 2025-04 and is synchronous (requests); hence this small httpx client.

Example (an ``httpx.MockTransport`` standing for GRDF):

>>> import asyncio, httpx, json
>>> from datetime import date
>>> def answer(request):
...     if request.url.path.endswith("/access_token"):
...         return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
...     day = {"journee_gaziere": "2026-11-20", "volume_brut": 6.0, "energie": 67.0,
...            "coeff_calcul": {"coeff_conversion": 11.17}}
...     return httpx.Response(200, text=json.dumps({"consommation": day, "statut_restitution": None}) + "\n")
>>> client = AdictClient("id", "secret", url="http://grdf.test/adict/v2", token_url="http://grdf.test/access_token",
...                      transport=httpx.MockTransport(answer))
>>> result = asyncio.run(client.informative("GI123456", date(2026, 11, 20), date(2026, 11, 20)))
>>> [(r.day.isoformat(), r.volume_m3, r.energy_kwh) for r in result.records]
[('2026-11-20', 6.0, 67.0)]
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

from collectors.utilities._api import NoConsent, TokenClient, UtilityApiError
from inventory import Point, Quantity
from streams.imports import Consumption
from streams.units import factor

__all__ = ["API_URL", "GRDF_TZ", "TOKEN_URL", "AdictClient", "AdictRecord", "AdictResult"]

logger = logging.getLogger(__name__)

API_URL = "https://api.grdf.fr/adict/v2"
"""The ADICT API, version 2."""
TOKEN_URL = "https://sofit-sso-oidc.grdf.fr/openam/oauth2/realms/externeGrdf/access_token"  # noqa: S105 - a URL, not a password
"""GRDF's OpenID token endpoint."""
GRDF_TZ = ZoneInfo("Europe/Paris")
"""Gas days are French local days starting at 06:00."""
_GAS_DAY_START = 6
_NO_RIGHT = re.compile(r"droit|habilit|consentement|autoris", re.IGNORECASE)
"""A ``statut_restitution`` message about the access right (``Absence de droit d'accès pour ce PCE``)."""
_NO_DATA = re.compile(r"absence de donn|aucune donn|pas de donn", re.IGNORECASE)
"""A ``statut_restitution`` message saying nothing is published (yet) for the period."""
_MAX_DAYS = 365


@dataclass(frozen=True, slots=True)
class AdictRecord:
    """One gas day of a PCE: ``volume_m3`` and ``energy_kwh`` (either may be unknown), the day's coefficient."""

    day: date
    volume_m3: float | None
    energy_kwh: float | None
    coefficient_kwh_per_m3: float | None
    line: int

    @property
    def start(self) -> datetime:
        """06:00 local on the gas day, in UTC."""
        return gas_day_start(self.day)

    @property
    def end(self) -> datetime:
        """06:00 local the next day, in UTC."""
        return gas_day_start(self.day + timedelta(days=1))


@dataclass(slots=True)
class AdictResult:
    """What one or more ADICT answers held: the records, sorted by day, and the lines set aside."""

    records: list[AdictRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    intervals: list[Consumption] = field(default_factory=list)
    """Filled by :meth:`AdictClient.fetch`: the records as intervals in the point's unit."""
    failed: str | None = None
    """Always None: an ADICT request covers up to a year, a failure fails the whole fetch."""


def gas_day_start(day: date) -> datetime:
    """When the gas day ``day`` starts: 06:00 French local time, in UTC.

    >>> gas_day_start(date(2026, 11, 20)).isoformat()
    '2026-11-20T05:00:00+00:00'
    """
    return datetime(day.year, day.month, day.day, _GAS_DAY_START, tzinfo=GRDF_TZ).astimezone(UTC)


class AdictClient:
    """Reads Gazpar meters through GRDF ADICT.

    Args:
        client_id: the application's id (``ECONOME_GRDF_CLIENT_ID``).
        client_secret: its secret (``ECONOME_GRDF_CLIENT_SECRET``).
        url: the API (``ECONOME_GRDF_URL``), e.g. ``https://api.grdf.fr/adict/v2``.
        token_url: the token endpoint (``ECONOME_GRDF_TOKEN_URL``).
        scope: the scope asked with the token (the API's path).
        timeout: of each request.
        retries: further tries of a 429/5xx answer.
        backoff: the first wait before a retry (doubling).
        transport: an httpx transport (tests).
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        url: str = API_URL,
        token_url: str = TOKEN_URL,
        scope: str = "/adict/v2",
        timeout: timedelta = timedelta(seconds=30),
        retries: int = 4,
        backoff: timedelta = timedelta(seconds=2),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = TokenClient(
            "GRDF ADICT", token_url, client_id, client_secret, token_form={"scope": scope},
            timeout=timeout, retries=retries, backoff=backoff, transport=transport,
        )  # fmt: skip

    @property
    def requests(self) -> int:
        """Requests sent so far."""
        return self._http.requests

    async def close(self) -> None:
        """Close the connections."""
        await self._http.close()

    async def fetch(self, point: Point, first: date, last: date) -> AdictResult:
        """The gas days ``first`` to ``last`` of ``point``'s Gazpar, as intervals in the point's unit.

        Raises:
            NoConsent: no valid access right for the PCE.
            UtilityApiError: GRDF refused or failed after the retries.
        """
        if point.grdf is None:
            msg = f"point {point.id} has no 'grdf' binding"
            raise ValueError(msg)
        result = await self.informative(point.grdf.pce, first, last)
        volume = point.quantity is Quantity.GAS_VOLUME
        per_unit = 1.0 / factor(point.unit)
        for record in result.records:
            amount = record.volume_m3 if volume else record.energy_kwh
            if amount is None:
                result.problems.append(f"line {record.line}: gas day {record.day} has no "
                                       f"{'volume_brut' if volume else 'energie'}")
                continue
            result.intervals.append(Consumption(record.start, record.end, amount * per_unit))
        return result

    async def informative(self, pce: str, first: date, last: date) -> AdictResult:
        """The informative daily data of the gas days ``first`` to ``last``, one record a day (the last line wins)."""
        out = AdictResult()
        by_day: dict[date, AdictRecord] = {}
        start = first
        while start <= last:
            end = min(start + timedelta(days=_MAX_DAYS - 1), last)
            what = f"PCE {pce} donnees_consos_informatives {start}..{end}"
            response = await self._http.get(
                f"{self.url}/pce/{pce}/donnees_consos_informatives",
                {"date_debut": start.isoformat(), "date_fin": end.isoformat()}, what,
            )  # fmt: skip
            if response.status_code == 403:
                msg = (f"GRDF ADICT: {what}: no access right for PCE {pce} (HTTP 403): the customer must give (or renew) "
                       "the consent on the GRDF site")
                raise NoConsent(msg)
            if response.status_code != 200:
                msg = f"GRDF ADICT: {what}: HTTP {response.status_code} {response.text[:200]!r}"
                raise UtilityApiError(msg)
            refusals: list[str] = []
            records = _parse(response.text, what, out.problems, refusals)
            no_right = [r for r in refusals if _NO_RIGHT.search(r)]
            if no_right and not records:
                # HTTP 200 with a refusal line: GRDF's way of saying the access right is missing or revoked.
                msg = (f"GRDF ADICT: {what}: no access right for PCE {pce} ({no_right[0]}): the customer must give "
                       "(or renew) the consent on the GRDF site")
                raise NoConsent(msg)
            if refusals and not records and not any(_NO_DATA.search(r) for r in refusals):
                msg = f"GRDF ADICT: {what}: refused: {refusals[0]}"
                raise UtilityApiError(msg)
            for record in records:
                if first <= record.day <= last:
                    by_day[record.day] = record
            start = end + timedelta(days=1)
        out.records = [by_day[day] for day in sorted(by_day)]
        return out


def _number(value: object) -> float | None:
    if value is None or value == "":
        return None
    return float(value)  # type: ignore[arg-type]  # a str or a number; anything else raises TypeError, caught


def _parse(text: str, what: str, problems: list[str], refusals: list[str] | None = None) -> list[AdictRecord]:
    """The records of an NDJSON answer; each line set aside is named in ``problems``, each refusal in ``refusals``."""
    refusals = [] if refusals is None else refusals
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            problems.append(f"{what}: line {number}: not JSON: {line[:80]!r}")
            continue
        if not isinstance(item, dict) or "code_statut_traitement" in item:
            continue  # a GDA processing status, not data
        status = item.get("statut_restitution")
        data = item.get("consommation")
        if not data:
            if isinstance(status, dict) and status.get("code"):
                refusal = f"{status.get('code')} {status.get('message', '')}".strip()
                refusals.append(refusal)
                problems.append(f"{what}: line {number}: GRDF refused: {refusal}")
            else:
                problems.append(f"{what}: line {number}: no 'consommation'")
            continue
        coefficients = data.get("coeff_calcul")
        try:
            record = AdictRecord(
                day=date.fromisoformat(str(data["journee_gaziere"])[:10]),
                volume_m3=_number(data.get("volume_brut")),
                energy_kwh=_number(data.get("energie")),
                coefficient_kwh_per_m3=_number(coefficients.get("coeff_conversion"))
                if isinstance(coefficients, dict) else None,
                line=number,
            )
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"{what}: line {number}: unusable record ({type(exc).__name__}: {exc})")
            continue
        if record.volume_m3 is None and record.energy_kwh is not None and record.coefficient_kwh_per_m3:
            record = AdictRecord(record.day, record.energy_kwh / record.coefficient_kwh_per_m3, record.energy_kwh,
                                 record.coefficient_kwh_per_m3, number)
        if any(v is not None and v < 0 for v in (record.volume_m3, record.energy_kwh)):
            problems.append(f"{what}: line {number}: negative consumption on gas day {record.day}")
            continue
        out.append(record)
    return out
