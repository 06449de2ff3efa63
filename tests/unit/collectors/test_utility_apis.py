"""Enedis Data Connect and GRDF ADICT clients against a local server answering in their documented formats."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from collectors.utilities._api import NoConsent, UtilityApiError
from collectors.utilities.adict import AdictClient
from collectors.utilities.dataconnect import DataConnectClient
from inventory import Point
from tests import utility_fakes as fk

FAST = {"backoff": timedelta(milliseconds=5), "retries": 3, "timeout": timedelta(seconds=5)}


@pytest.fixture
async def server() -> AsyncIterator[tuple[fk.FakeUtilities, str]]:
    fake = fk.FakeUtilities(enedis_until=date(2026, 11, 30), grdf_until=date(2026, 11, 28))
    runner, url = await fk.serve(fake)
    try:
        yield fake, url
    finally:
        await runner.cleanup()


def _point(binding: dict[str, Any], **fields: Any) -> Point:
    base = {"id": "p", "quantity": "active_energy", "unit": "Wh", "usage": "general", "cumulative": True}
    return Point.model_validate({**base, **fields, **binding})


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=fk.PARIS).astimezone(UTC)


@pytest.mark.parametrize("api", ["2026", "v5"])
async def test_load_curve_pages_by_7_days_and_reads_the_autumn_dst_day(server: tuple[fk.FakeUtilities, str], api: str) -> None:
    fake, url = server
    fake.enedis_api = api
    client = DataConnectClient(fk.CLIENT_ID, fk.CLIENT_SECRET, url=url, api=api, **FAST)  # type: ignore[arg-type]
    try:
        first, last = date(2026, 10, 20), date(2026, 10, 29)  # 10 days, 2026-10-25 has 25 hours
        result = await client.fetch(_point({"enedis": {"prm": fk.PRM_OK}}), first, last)
    finally:
        await client.close()
    calls = [q for path, q in fake.log if "courbe" in path or "load_curve" in path]
    assert len(calls) == 2, calls  # 7 days, then 3
    assert result.problems == []
    intervals = result.intervals
    assert len(intervals) == 10 * 48 + 2
    assert intervals[0].start == _midnight(first)
    assert intervals[-1].end == _midnight(last + timedelta(days=1))
    assert all(a.end == b.start for a, b in itertools.pairwise(intervals)), "a gap or an overlap"
    assert all(i.end - i.start == timedelta(minutes=30) for i in intervals)
    # Wh = W x 0.5 h, from the instants (the server's production values are not the consumption)
    for interval in intervals:
        assert interval.amount == pytest.approx(round(fk.linky_watts(interval.end)) * 0.5)
    dst_day = [i for i in intervals if _midnight(date(2026, 10, 25)) <= i.start < _midnight(date(2026, 10, 26))]
    assert len(dst_day) == 50


async def test_429_is_retried_then_a_403_names_the_missing_consent(server: tuple[fk.FakeUtilities, str]) -> None:
    fake, url = server
    client = DataConnectClient(fk.CLIENT_ID, fk.CLIENT_SECRET, url=url, **FAST)  # type: ignore[arg-type]
    try:
        result = await client.load_curve(fk.PRM_429, date(2026, 11, 1), date(2026, 11, 3))
        assert len(result.intervals) == 3 * 48
        assert [p for p, _ in fake.log].count("/mesure_synchrone_auto/v2/courbe_de_charge_consommation") == 2
        with pytest.raises(NoConsent, match=rf"no consent for PRM {fk.PRM_NO_CONSENT} \(HTTP 403\)"):
            await client.load_curve(fk.PRM_NO_CONSENT, date(2026, 11, 1), date(2026, 11, 3))
        assert fake.tokens == 1  # one token for every call
        fake.expire_tokens()  # Enedis revokes it early: a 401, a new token, the same answer
        again = await client.load_curve(fk.PRM_OK, date(2026, 11, 1), date(2026, 11, 1))
        assert (len(again.intervals), fake.tokens) == (48, 2)
    finally:
        await client.close()


async def test_no_load_curve_falls_back_to_the_daily_consumption(server: tuple[fk.FakeUtilities, str]) -> None:
    _, url = server
    client = DataConnectClient(fk.CLIENT_ID, fk.CLIENT_SECRET, url=url, **FAST)  # type: ignore[arg-type]
    try:
        point = _point({"enedis": {"prm": fk.PRM_DAILY_ONLY}}, unit="kWh")
        result = await client.fetch(point, date(2026, 11, 28), date(2026, 12, 2))  # Enedis has up to 11-30
    finally:
        await client.close()
    days = [date(2026, 11, 28), date(2026, 11, 29), date(2026, 11, 30)]
    assert [(i.start, i.end) for i in result.intervals] == [(_midnight(d), _midnight(d + timedelta(days=1))) for d in days]
    assert [i.amount for i in result.intervals] == pytest.approx([fk.linky_daily_wh(d) / 1000 for d in days])


async def test_adict_ndjson_gas_days_retries_and_bad_lines(server: tuple[fk.FakeUtilities, str]) -> None:
    fake, url = server
    client = AdictClient(fk.CLIENT_ID, fk.CLIENT_SECRET, url=f"{url}/adict/v2", token_url=f"{url}/grdf/access_token",
                         **FAST)  # type: ignore[arg-type]
    first, last = date(2026, 11, 25), date(2026, 11, 30)  # GRDF has up to 11-28
    try:
        volume = await client.fetch(_point({"grdf": {"pce": fk.PCE_503}}, quantity="gas_volume", unit="m3",
                                           conversion_kwh_per_unit=11.0), first, last)
        energy = await client.fetch(_point({"grdf": {"pce": fk.PCE_OK}}, quantity="heat_energy", unit="kWh"), first, last)
        with pytest.raises(NoConsent, match=f"PCE {fk.PCE_NO_CONSENT}"):
            await client.fetch(_point({"grdf": {"pce": fk.PCE_NO_CONSENT}}, quantity="heat_energy", unit="kWh"), first, last)
    finally:
        await client.close()
    days = [first + timedelta(days=n) for n in range(4)]
    assert [(i.start, i.end) for i in volume.intervals] == [
        (datetime(d.year, d.month, d.day, 6, tzinfo=fk.PARIS).astimezone(UTC),
         datetime(d.year, d.month, d.day, 6, tzinfo=fk.PARIS).astimezone(UTC) + timedelta(days=1)) for d in days
    ]
    assert [i.amount for i in volume.intervals] == pytest.approx([fk.gazpar_m3(d) for d in days])
    assert [i.amount for i in energy.intervals] == pytest.approx([fk.gazpar_m3(d) * fk.COEFF for d in days])
    assert {r.coefficient_kwh_per_m3 for r in energy.records} == {fk.COEFF}  # coeff_calcul.coeff_conversion
    assert [p for p, _ in fake.log].count(f"/adict/v2/pce/{fk.PCE_503}/donnees_consos_informatives") == 2  # 503, retried
    assert len(volume.problems) == 2
    assert "line 3: not JSON" in volume.problems[0]
    assert "GRDF refused: 1000 Absence de données" in volume.problems[1]


async def test_a_refused_secret_is_named_nowhere(server: tuple[fk.FakeUtilities, str], caplog: pytest.LogCaptureFixture) -> None:
    _, url = server
    wrong = "wrong-secret-value-123"
    client = DataConnectClient(fk.CLIENT_ID, wrong, url=url, **FAST)  # type: ignore[arg-type]
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(UtilityApiError, match="token refused: HTTP 401") as info:
            await client.load_curve(fk.PRM_OK, date(2026, 11, 1), date(2026, 11, 1))
    finally:
        await client.close()
    assert wrong not in str(info.value)
    assert wrong not in caplog.text


async def test_enedis_pages_refused_for_good_are_gaps_and_a_failing_page_keeps_the_earlier_ones(
    server: tuple[fk.FakeUtilities, str],
) -> None:
    fake, url = server
    client = DataConnectClient(fk.CLIENT_ID, fk.CLIENT_SECRET, url=url, **FAST)  # type: ignore[arg-type]
    try:
        # Put in service on 11-20: the pages from 11-01, 11-08 and 11-15 are refused (400 ADAM-ERR0123).
        activated = await client.load_curve(fk.PRM_ACTIVATED, date(2026, 11, 1), date(2026, 11, 30))
        # Pages from 11-12 and 11-19 answer, the one from 11-26 fails (502) after the retries.
        flaky = await client.load_curve(fk.PRM_FLAKY, date(2026, 11, 12), date(2026, 11, 30))
    finally:
        await client.close()
    assert (activated.intervals[0].start, activated.intervals[-1].end, activated.failed) == (
        _midnight(date(2026, 11, 22)), _midnight(date(2026, 12, 1)), None)
    assert len(activated.intervals) == 9 * 48
    assert [p.split(":")[0] for p in activated.problems] == [
        "no load curve from 2026-11-01 to 2026-11-07", "no load curve from 2026-11-08 to 2026-11-14",
        "no load curve from 2026-11-15 to 2026-11-21"]
    assert all("ADAM-ERR0123" in p for p in activated.problems)
    assert (flaky.intervals[0].start, flaky.intervals[-1].end) == (_midnight(date(2026, 11, 12)), _midnight(date(2026, 11, 26)))
    assert flaky.failed is not None
    assert "HTTP 502" in flaky.failed
    assert "2026-11-26" in flaky.failed
    assert len([q for _, q in fake.log if q.get("pointId") == fk.PRM_FLAKY]) == 2 + 4  # 502 tried 1 + 3 retries


async def test_an_unreachable_api_is_named_by_its_url() -> None:
    token_url = "http://127.0.0.1:9/grdf/access_token?realm=x"  # noqa: S105 - a URL; port 9: nobody listens
    client = AdictClient(fk.CLIENT_ID, fk.CLIENT_SECRET, url="http://127.0.0.1:9/adict/v2",
                         token_url=token_url, **{**FAST, "retries": 0})  # type: ignore[arg-type]
    try:
        with pytest.raises(UtilityApiError,
                           match=r"token: ConnectError .* on POST http://127.0.0.1:9/grdf/access_token after 1 tries"):
            await client.informative(fk.PCE_OK, date(2026, 11, 1), date(2026, 11, 2))
    finally:
        await client.close()
