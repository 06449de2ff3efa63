"""Enedis Data Connect: a Linky's load curve (or daily consumption) fetched through the API.

The customer gives the consent once on the Enedis site; the application then
reads the meter with a client-credentials token (``POST /oauth2/v3/token``).

Two generations of the metering API are spoken (``api``):

* ``2026`` (the default): the "Data Connect 2026" APIs that replaced v5 on
  2026-09-28, v5 being switched off a few weeks later:
  ``GET /mesure_synchrone_auto/v2/courbe_de_charge_consommation?pointId&dateDebut&dateFin``
  and ``.../consommation_quotidienne``, answering
  ``{"grandeur": [{"grandeurMetier": "CONS", "unite": "W", "points": [{"v", "d", "p", "n"}]}]}``;
* ``v5``: ``GET /metering_data_clc/v5/consumption_load_curve?usage_point_id&start&end``
  and ``/metering_data_dc/v5/daily_consumption``, answering
  ``{"meter_reading": {"reading_type": {"unit": "W", "aggregate": "average"},
  "interval_reading": [{"value", "date", "interval_length", "measure_type"}]}}``.

In both, a load-curve value is the average power in W over the interval (10, 30 or
60 minutes, ``PT30M``), stamped at the interval's END in French local time
(``2026-11-20 00:30:00``); a daily value is the day's energy in Wh, stamped with
the day. End dates are excluded. A load-curve call covers at most 7 days: longer
ranges are paged. With the load-curve collection off, Enedis answers HTTP 404
``{"error": "no_data_found"}`` (bokub/linky#45, bokub/ha-linky#29, bokub/conso-api#77):
the daily consumption is read instead, but only when asked (``daily_if_no_curve``): Enedis
answers the same 404, or an empty curve, for a curve not published yet (bokub/linky#66,
bokub/ha-linky#93), and the daily fetch asks for the daily consumption only for a meter
whose curve gave nothing for 7 consecutive days (:mod:`collectors.utilities.daily`); a period before the meter's last activation
is refused with HTTP 400 ``ADAM-ERR0123`` (bokub/conso-api#114). Those pages are
reported as gaps and the others read. A 403 is a missing, expired or revoked consent (:class:`NoConsent`),
except ``900908`` (the application is not subscribed to that API on DataHub).

Sources: the Enedis DataHub documentation of Data Connect (metering_data v5, the
catalogue "Courbe de consommation: puissance moyenne par intervalle, 30 min par
défaut"), its 2026 migration as documented by the MyElectricalData gateway
(``docs/enedis-api``: endpoints, format, end-stamped points, 403 900908), and
the v5 sample of the Quoalise formalism (``formalisme/enedis.md``). No maintained
PyPI client fits: ``enedis-data-connect`` had its last release in 2024-04 and is
synchronous; hence this small httpx client.

Example (an ``httpx.MockTransport`` standing for Enedis):

>>> import asyncio, httpx, json
>>> from datetime import date
>>> def answer(request):
...     if request.url.path.endswith("/token"):
...         return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
...     points = [{"v": "1000", "d": "2026-11-20 00:30:00", "p": "PT30M", "n": "B"}]
...     return httpx.Response(200, json={"grandeur": [{"grandeurMetier": "CONS", "unite": "W", "points": points}]})
>>> client = DataConnectClient("id", "secret", url="http://enedis.test", transport=httpx.MockTransport(answer))
>>> result = asyncio.run(client.load_curve("12345678901234", date(2026, 11, 20), date(2026, 11, 20)))
>>> [(i.start.isoformat(), i.amount) for i in result.intervals]
[('2026-11-19T23:00:00+00:00', 0.5)]
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import httpx

from collectors.utilities._api import NoConsent, TokenClient, UtilityApiError
from inventory import Point
from streams.imports import Consumption
from streams.units import factor

__all__ = ["ENEDIS_TZ", "PRODUCTION_URL", "DataConnectClient", "FetchResult"]

logger = logging.getLogger(__name__)

PRODUCTION_URL = "https://gw.ext.prod.api.enedis.fr"
"""The production gateway of Enedis' APIs (the sandbox is ``https://gw.ext.prod-sandbox.api.enedis.fr``)."""

ENEDIS_TZ = ZoneInfo("Europe/Paris")
"""Enedis stamps its data in French local time."""

_MAX_CURVE_DAYS = 7
_MAX_DAILY_DAYS = 365
_STEP = re.compile(r"^PT(\d+)([MH])$")
_PATHS = {
    "2026": ("/mesure_synchrone_auto/v2/courbe_de_charge_consommation", "/mesure_synchrone_auto/v2/consommation_quotidienne"),
    "v5": ("/metering_data_clc/v5/consumption_load_curve", "/metering_data_dc/v5/daily_consumption"),
}


@dataclass(slots=True)
class FetchResult:
    """Intervals fetched for one meter, and the values set aside, each named by its date.

    In kWh from :meth:`DataConnectClient.load_curve`, in the point's unit from :meth:`DataConnectClient.fetch`.
    """

    intervals: list[Consumption] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    failed: str | None = None
    """Why the pages after the intervals were not read (a transient failure): they are asked again later."""


class _NoData(UtilityApiError):
    """Enedis will never have data for the page.

    None collected (404 ``no_data_found``), or a period before the meter's last activation (400 ``ADAM-ERR0123``).
    """


class DataConnectClient:
    """Reads Linky meters through Enedis Data Connect.

    Args:
        client_id: the application's id (``ECONOME_ENEDIS_CLIENT_ID``).
        client_secret: its secret (``ECONOME_ENEDIS_CLIENT_SECRET``).
        url: the API gateway (``ECONOME_ENEDIS_URL``); the token is ``{url}/oauth2/v3/token``.
        api: ``2026`` or ``v5`` (see the module docstring).
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
        url: str = PRODUCTION_URL,
        api: Literal["2026", "v5"] = "2026",
        timeout: timedelta = timedelta(seconds=30),
        retries: int = 4,
        backoff: timedelta = timedelta(seconds=2),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.api = api
        self._http = TokenClient(
            "Enedis Data Connect", f"{self.url}/oauth2/v3/token", client_id, client_secret,
            timeout=timeout, retries=retries, backoff=backoff, transport=transport,
        )  # fmt: skip

    @property
    def requests(self) -> int:
        """Requests sent so far."""
        return self._http.requests

    async def close(self) -> None:
        """Close the connections."""
        await self._http.close()

    async def fetch(self, point: Point, first: date, last: date, *, daily_if_no_curve: bool = True) -> FetchResult:
        """The consumption of ``point``'s Linky over the local days ``first`` to ``last``, in the point's unit.

        The load curve when Enedis has one (its collection is on); when the whole range has no curve, the
        daily consumption if ``daily_if_no_curve``, else nothing: the live daily fetch asks for it only for a
        meter known to have no curve, a curve published late (bokub/linky#66) or a passing 404 (bokub/ha-linky#93)
        must not be replaced for good by one 24-hour value (:mod:`collectors.utilities.daily`).

        Raises:
            NoConsent: no valid consent for the PRM.
            UtilityApiError: Enedis refused or failed after the retries.
        """
        if point.enedis is None:
            msg = f"point {point.id} has no 'enedis' binding"
            raise ValueError(msg)
        prm = point.enedis.prm
        result = await self.load_curve(prm, first, last)
        if not result.intervals and daily_if_no_curve and result.failed is None:
            logger.info("point %s PRM %s: no load curve from %s to %s, reading the daily consumption", point.id, prm,
                        first, last)
            result = await self.daily(prm, first, last)
        per_kwh = 1.0 / factor(point.unit)
        result.intervals = [Consumption(i.start, i.end, i.amount * per_kwh) for i in result.intervals]
        return result

    async def load_curve(self, prm: str, first: date, last: date) -> FetchResult:
        """The load curve over the local days ``first`` to ``last`` as intervals in kWh, sorted, duplicates dropped.

        Page by page (7 days): a page Enedis will never have (no curve collected, before the meter's
        activation) is a gap named in ``problems`` and the next pages are read; a page that fails otherwise
        (after the retries) ends the reading there, the pages before it kept and the failure in ``failed``.

        Raises:
            NoConsent: no valid consent for the PRM.
            UtilityApiError: the first page failed (other than for good).
        """
        out = FetchResult()
        for start, end in _pages(first, last, _MAX_CURVE_DAYS):
            try:
                body = await self._get(_PATHS[self.api][0], prm, start, end)
            except _NoData as exc:
                out.problems.append(f"no load curve from {start} to {end - timedelta(days=1)}: {exc}")
                continue
            except NoConsent:
                raise
            except UtilityApiError as exc:
                if not out.intervals:
                    raise
                out.failed = str(exc)
                break
            _curve(self.api, body, out)
        out.intervals = _dedup(out.intervals)
        return out

    async def daily(self, prm: str, first: date, last: date) -> FetchResult:
        """The daily consumption over the local days ``first`` to ``last`` as day-long intervals in kWh."""
        out = FetchResult()
        for start, end in _pages(first, last, _MAX_DAILY_DAYS):
            try:
                body = await self._get(_PATHS[self.api][1], prm, start, end)
            except _NoData as exc:
                out.problems.append(f"no daily consumption from {start} to {end - timedelta(days=1)}: {exc}")
                continue
            for value, stamp, _ in _readings(self.api, body, out):
                try:
                    day = date.fromisoformat(stamp[:10])
                    wh = float(value)
                except (TypeError, ValueError):
                    out.problems.append(f"daily value {value!r} of {stamp!r} is not a number and a date")
                    continue
                out.intervals.append(Consumption(_local(day), _local(day + timedelta(days=1)), wh / 1000.0))
        out.intervals = _dedup(out.intervals)
        return out

    async def _get(self, path: str, prm: str, start: date, end: date) -> Any:
        if self.api == "v5":
            params = {"usage_point_id": prm, "start": start.isoformat(), "end": end.isoformat()}
        else:
            params = {"pointId": prm, "dateDebut": start.isoformat(), "dateFin": end.isoformat()}
        what = f"PRM {prm} {path.rsplit('/', 1)[-1]} {start}..{end}"
        response = await self._http.get(f"{self.url}{path}", params, what)
        if response.status_code == 403:
            if "900908" in response.text:
                msg = f"Enedis Data Connect: {what}: the application is not subscribed to this API on DataHub (403 900908)"
                raise UtilityApiError(msg)
            msg = (f"Enedis Data Connect: {what}: no consent for PRM {prm} (HTTP 403): the customer must give (or renew) "
                   "the consent on the Enedis site")
            raise NoConsent(msg)
        # Refused for good: no curve collected (bokub/linky#45, bokub/conso-api#77), before activation (conso-api#114).
        if (response.status_code == 404 and "no_data_found" in response.text) or (
            response.status_code == 400 and "ADAM-ERR0123" in response.text
        ):
            msg = f"HTTP {response.status_code} {response.text[:200]!r}"
            raise _NoData(msg)
        if response.status_code != 200:
            msg = f"Enedis Data Connect: {what}: HTTP {response.status_code} {response.text[:200]!r}"
            raise UtilityApiError(msg)
        try:
            return response.json()
        except ValueError as exc:
            msg = f"Enedis Data Connect: {what}: the answer is not JSON"
            raise UtilityApiError(msg) from exc


def _pages(first: date, last: date, days: int) -> list[tuple[date, date]]:
    """``[start, end)`` date ranges of at most ``days`` covering ``first`` to ``last`` included."""
    out = []
    start = first
    while start <= last:
        end = min(start + timedelta(days=days), last + timedelta(days=1))
        out.append((start, end))
        start = end
    return out


def _local(day: date) -> datetime:
    """A local day's start (midnight in France) in UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=ENEDIS_TZ).astimezone(UTC)


def _readings(api: str, body: Any, out: FetchResult) -> list[tuple[Any, str, Any]]:
    """``(value, date, step)`` of each reading of an answer, in the answer's order."""
    rows: list[tuple[Any, str, Any]] = []
    if api == "v5":
        reading = body.get("meter_reading", {}) if isinstance(body, dict) else {}
        unit = (reading.get("reading_type") or {}).get("unit")
        for item in reading.get("interval_reading") or []:
            rows.append((item.get("value"), str(item.get("date", "")), item.get("interval_length")))
        units = {unit} if unit else set()
    else:
        grandeurs = body.get("grandeur") or [] if isinstance(body, dict) else []
        units = set()
        for grandeur in grandeurs:
            if grandeur.get("grandeurMetier", "CONS") != "CONS":
                continue  # production of a PRM with solar panels: not its consumption
            units.add(grandeur.get("unite"))
            for item in grandeur.get("points") or []:
                rows.append((item.get("v"), str(item.get("d", "")), item.get("p") or body.get("pas")))
    if units - {"W", "Wh", None}:
        out.problems.append(f"unexpected unit(s) {sorted(str(u) for u in units)}: values set aside")
        return []
    return rows


def _curve(api: str, body: Any, out: FetchResult) -> None:
    """Append the answer's load-curve intervals (kWh) to ``out``.

    A repeated local hour (the autumn DST change) is read in order: its second pass is the later UTC hour.
    """
    previous: datetime | None = None
    for value, stamp, step in _readings(api, body, out):
        match = _STEP.match(str(step or "PT30M"))
        try:
            naive = datetime.fromisoformat(stamp)
            watts = float(value)
            if match is None or naive.tzinfo is not None:
                raise ValueError(stamp)
        except (TypeError, ValueError):
            out.problems.append(f"load-curve value {value!r} at {stamp!r} (step {step!r}) is malformed")
            continue
        length = timedelta(minutes=int(match[1]) * (60 if match[2] == "H" else 1))
        end = naive.replace(tzinfo=ENEDIS_TZ).astimezone(UTC)
        later = naive.replace(tzinfo=ENEDIS_TZ, fold=1).astimezone(UTC)
        if previous is not None and end <= previous < later:
            end = later
        previous = end
        out.intervals.append(Consumption(end - length, end, watts * length.total_seconds() / 3600.0 / 1000.0))


def _dedup(intervals: list[Consumption]) -> list[Consumption]:
    """Sorted by start, the first of intervals with the same start kept (pages may overlap a reading)."""
    seen: dict[datetime, Consumption] = {}
    for interval in intervals:
        seen.setdefault(interval.start, interval)
    return [seen[start] for start in sorted(seen)]
