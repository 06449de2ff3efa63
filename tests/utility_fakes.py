"""A local HTTP server answering as Enedis Data Connect and GRDF ADICT do (collectors/utilities), with their pitfalls.

Formats as documented in :mod:`collectors.utilities.dataconnect` and :mod:`collectors.utilities.adict`.
Pitfalls served: a load-curve request over more than 7 days is refused (400), a 429 then a
success for one PRM, a 403 no-consent for another PRM, a PRM without load curve (404 no_data_found,
daily only), a PRM refusing periods before its activation (400 ADAM-ERR0123), a PRM whose later
pages fail (502), a PCE refused with HTTP 200 and a ``statut_restitution`` line (no access right),
the autumn DST day (25 hours: the local hour 02:00-03:00 stamped twice), a 503 then a success and
an NDJSON answer with a line that is not JSON, a ``statut_restitution`` refusal and a GDA status line.

Values are functions of UTC time (:func:`linky_watts`, :func:`gazpar_m3`) so that tests compute what
they expect from the same instants, not from the server's answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from aiohttp import web

PARIS = ZoneInfo("Europe/Paris")
CLIENT_ID = "econome-test-id"
CLIENT_SECRET = "s3cret-client-value"  # noqa: S105 - the fake server's test credential
PRM_OK = "12345678901234"
PRM_429 = "22345678901234"
PRM_NO_CONSENT = "40345678901234"
PRM_DAILY_ONLY = "52345678901234"
"""Load-curve collection off: Enedis answers the curve with 404 no_data_found (bokub/linky#45)."""
PRM_ACTIVATED = "62345678901234"
"""Put in service on :attr:`FakeUtilities.activated`: earlier periods are refused with 400 ADAM-ERR0123."""
PRM_FLAKY = "72345678901234"
"""Curve pages starting on or after :attr:`FakeUtilities.broken_from` answer 502 (every try)."""
PCE_OK = "GI123456"
PCE_503 = "23000000000000"
PCE_NO_CONSENT = "GI403403"
PCE_NO_RIGHT = "GI100010"
"""Answered HTTP 200 with a ``statut_restitution`` refusal: no access right."""
COEFF = 11.2


def linky_watts(end: datetime) -> float:
    """Average power (W) of the half hour ending at ``end`` (UTC)."""
    return 800.0 + 40.0 * (end.hour % 12) + 7.0 * (end.minute // 30) + float(end.day)


def linky_daily_wh(day: date) -> float:
    """The Wh of a local day for :data:`PRM_DAILY_ONLY`."""
    return 10_000.0 + 100.0 * day.day


def gazpar_m3(day: date) -> float:
    """The m3 of a gas day."""
    return 5.0 + (day.day % 7) * 0.5


def _local_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=PARIS).astimezone(UTC)


@dataclass
class FakeUtilities:
    """The server's state: what was asked, and until when data are published."""

    enedis_until: date
    """The last local day Enedis has published (J+1: yesterday)."""
    grdf_until: date
    """The last gas day GRDF has published (J+1 to J+3)."""
    enedis_api: str = "2026"
    activated: date = date(2026, 11, 20)
    broken_from: date = date(2026, 11, 26)
    log: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    tokens: int = 0
    valid_from: int = 1
    """Tokens numbered below are expired (a 401): :meth:`expire_tokens`."""
    _once: set[str] = field(default_factory=set)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/oauth2/v3/token", self._enedis_token)
        app.router.add_get("/mesure_synchrone_auto/v2/courbe_de_charge_consommation", self._curve)
        app.router.add_get("/mesure_synchrone_auto/v2/consommation_quotidienne", self._daily)
        app.router.add_get("/metering_data_clc/v5/consumption_load_curve", self._curve)
        app.router.add_get("/metering_data_dc/v5/daily_consumption", self._daily)
        app.router.add_post("/grdf/access_token", self._grdf_token)
        app.router.add_get("/adict/v2/pce/{pce}/donnees_consos_informatives", self._adict)
        return app

    async def _token(self, request: web.Request, scope: str | None) -> web.Response:
        form = await request.post()
        if (form.get("grant_type"), form.get("client_id"), form.get("client_secret")) != (
            "client_credentials", CLIENT_ID, CLIENT_SECRET,
        ) or (scope is not None and form.get("scope") != scope):
            return web.json_response({"error": "invalid_client"}, status=401)
        self.tokens += 1
        return web.json_response({"access_token": f"token-{self.tokens}", "token_type": "Bearer", "expires_in": 3599})

    async def _enedis_token(self, request: web.Request) -> web.Response:
        return await self._token(request, None)

    async def _grdf_token(self, request: web.Request) -> web.Response:
        return await self._token(request, "/adict/v2")

    def expire_tokens(self) -> None:
        """Every token given so far is refused from now on."""
        self.valid_from = self.tokens + 1

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        return header.startswith("Bearer token-") and int(header.removeprefix("Bearer token-")) >= self.valid_from

    def _range(self, request: web.Request) -> tuple[str, date, date]:
        q = request.query
        if "pointId" in q:
            return q["pointId"], date.fromisoformat(q["dateDebut"]), date.fromisoformat(q["dateFin"])
        return q["usage_point_id"], date.fromisoformat(q["start"]), date.fromisoformat(q["end"])

    def _refusal(self, request: web.Request, prm: str) -> web.Response | None:
        self.log.append((request.path, dict(request.query)))
        if not self._authorised(request):
            return web.json_response({"error": "invalid_token"}, status=401)
        if prm == PRM_NO_CONSENT:
            return web.json_response({"error": "ADAM-ERR0069", "error_description": "no consent for this usage point"},
                                     status=403)
        if prm == PRM_429 and request.path not in self._once:
            self._once.add(request.path)
            return web.json_response({"error": "quota"}, status=429, headers={"Retry-After": "0"})
        return None

    def _body(self, unit: str, step: str | None, points: list[dict[str, str]]) -> dict[str, object]:
        if self.enedis_api == "v5":
            readings = [{"value": p["v"], "date": p["d"], **({"interval_length": p["p"]} if "p" in p else {}),
                         "measure_type": "B"} for p in points]
            return {"meter_reading": {"usage_point_id": "x", "quality": "BRUT",
                                      "reading_type": {"unit": unit, "measurement_kind": "power", "aggregate": "average"},
                                      "interval_reading": readings}}
        return {"idPrm": "x", "etapeMetier": "BRUT", "modeCalcul": "MESURE",
                "grandeur": [{"grandeurMetier": "CONS", "grandeurPhysique": "PA", "unite": unit, "points": points},
                             {"grandeurMetier": "PROD", "grandeurPhysique": "PA", "unite": unit,
                              "points": [{"v": "99999", "d": p["d"], "p": "PT30M", "n": "B"} for p in points[:2]]}],
                **({"pas": step} if step else {})}

    async def _curve(self, request: web.Request) -> web.Response:
        prm, start, end = self._range(request)
        refused = self._refusal(request, prm)
        if refused is not None:
            return refused
        if (end - start).days > 7:
            return web.json_response({"error": "ADAM-ERR0025", "error_description": "period over 7 days"}, status=400)
        if prm == PRM_DAILY_ONLY:
            return web.json_response({"error": "no_data_found",
                                      "error_description": "no measure found for this usage point"}, status=404)
        if prm == PRM_ACTIVATED and start < self.activated:
            return web.json_response({"error": "ADAM-ERR0123", "error_description": "The requested period cannot be "
                                      "anterior to the meter's last activation date"}, status=400)
        if prm == PRM_FLAKY and start >= self.broken_from:
            return web.Response(status=502, text="Bad Gateway")
        points = []
        t = _local_midnight(start)
        stop = _local_midnight(min(end, self.enedis_until + timedelta(days=1)))
        while t < stop:
            t += timedelta(minutes=30)
            # Stamped at the interval's end, in local time without offset: the autumn change repeats 02:xx.
            points.append({"v": str(round(linky_watts(t))), "d": t.astimezone(PARIS).strftime("%Y-%m-%d %H:%M:%S"),
                           "p": "PT30M", "n": "B"})
        return web.json_response(self._body("W", None, points))

    async def _daily(self, request: web.Request) -> web.Response:
        prm, start, end = self._range(request)
        refused = self._refusal(request, prm)
        if refused is not None:
            return refused
        points = []
        day = start
        while day < end and day <= self.enedis_until:
            points.append({"v": str(round(linky_daily_wh(day))), "d": day.isoformat()})
            day += timedelta(days=1)
        return web.json_response(self._body("Wh", "P1D", points))

    async def _adict(self, request: web.Request) -> web.Response:
        pce = request.match_info["pce"]
        self.log.append((request.path, dict(request.query)))
        if not self._authorised(request):
            return web.json_response({"error": "invalid_token"}, status=401)
        if pce == PCE_NO_CONSENT:
            return web.json_response({"code": "403", "message": "Aucun droit d'accès"}, status=403)
        if pce == PCE_NO_RIGHT:
            return web.Response(text=json.dumps({"statut_restitution": {
                "code": "1000", "message": "Absence de droit d'accès pour ce PCE"}}) + "\n")
        if pce == PCE_503 and request.path not in self._once:
            self._once.add(request.path)
            return web.Response(status=503, text="Service Unavailable")
        first = date.fromisoformat(request.query["date_debut"])
        last = date.fromisoformat(request.query["date_fin"])
        lines = [json.dumps({"code_statut_traitement": "0000", "message_retour_traitement": "Traitement effectué"})]
        day = first
        while day <= min(last, self.grdf_until):
            m3 = gazpar_m3(day)
            lines.append(json.dumps({
                "pce": {"id_pce": pce},
                "periode": {"valeur": None, "date_debut": first.isoformat(), "date_fin": last.isoformat()},
                "consommation": {
                    "date_debut_consommation": f"{day}T06:00:00+01:00",
                    "date_fin_consommation": f"{day + timedelta(days=1)}T06:00:00+01:00",
                    "flag_retour_zero": None, "volume_brut": m3,
                    "coeff_calcul": {"coeff_pta": None, "valeur_pcs": None, "coeff_conversion": COEFF},
                    "volume_converti": None, "energie": round(m3 * COEFF, 3), "type_qualif_conso": "Mesuré",
                    "sens_flux_gaz": "Consommation", "statut_conso": "Provisoire",
                    "journee_gaziere": day.isoformat(), "type_conso": "Informative Journalier",
                },
                "statut_restitution": None,
            }))
            if day == first:
                lines.append('{"consommation": {"journee_gaziere": "2026-')  # a line cut short
            day += timedelta(days=1)
        if last > self.grdf_until:
            lines.append(json.dumps({"pce": {"id_pce": pce}, "statut_restitution": {
                "code": "1000", "message": f"Absence de données après le {self.grdf_until}"}}))
        return web.Response(text="\n".join(lines) + "\n", content_type="application/x-ndjson")


async def serve(fake: FakeUtilities) -> tuple[web.AppRunner, str]:
    """Start ``fake`` on a free loopback port; returns the runner (to clean up) and the base URL."""
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # aiohttp keeps the bound port there
    return runner, f"http://127.0.0.1:{port}"


class ServedInThread:
    """:class:`FakeUtilities` on its own event loop in a thread, for a test that runs ``econome`` as a subprocess."""

    def __init__(self, fake: FakeUtilities) -> None:
        import asyncio
        import threading

        self.fake = fake
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="fake-utilities", daemon=True)
        self.url = ""
        self._runner: web.AppRunner | None = None

    def _main(self) -> None:
        import asyncio

        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._runner, self.url = await serve(self.fake)
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()
        if self._runner is not None:
            self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def __enter__(self) -> ServedInThread:
        self._thread.start()
        assert self._ready.wait(10), "the fake utility server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


INVENTORY = f"""
organisation: {{name: Commune test, population: 1200, school_holiday_zone: A}}
sites:
  - id: s1
    name: Site
    buildings:
      - id: mairie
        name: Mairie
        usage: town_hall
        floor_area_m2: 500
        heated_area_m2: 450
        points:
          - {{id: mairie-linky, quantity: active_energy, unit: kWh, usage: general, cumulative: true,
             enedis: {{prm: "{PRM_OK}", data_connect: true}}}}
          - {{id: mairie-gazpar, quantity: gas_volume, unit: m3, usage: heating, cumulative: true,
             conversion_kwh_per_unit: 11.2, grdf: {{pce: "{PCE_OK}", adict: true}}}}
"""
"""A town hall with a Linky and a Gazpar, both fetched daily (``econome run`` tests)."""
