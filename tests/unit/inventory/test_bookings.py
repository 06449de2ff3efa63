"""Issue 11, item 6: bookings of halls and gyms read from an iCalendar file or URL."""

from __future__ import annotations

import http.server
import logging
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from anomalies.features import schedule_masks
from inventory import Building, FrenchCalendar
from inventory.bookings import BookingLoader, BookingsError, booked_intervals

PARIS = ZoneInfo("Europe/Paris")

# Europe/Paris moves to summer time on 2026-03-29; New York did on 2026-03-08.
CALENDAR = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Econome tests//EN
BEGIN:VEVENT
UID:weekly-judo
SUMMARY:Judo club
DTSTART;TZID=Europe/Paris:20260319T180000
DTEND;TZID=Europe/Paris:20260319T200000
RRULE:FREQ=WEEKLY;COUNT=4
EXDATE;TZID=Europe/Paris:20260326T180000
END:VEVENT
BEGIN:VEVENT
UID:visitors
SUMMARY:Visit from the twin town
DTSTART;TZID=America/New_York:20260321T090000
DTEND;TZID=America/New_York:20260321T110000
END:VEVENT
BEGIN:VEVENT
UID:utc-meeting
SUMMARY:Association meeting
DTSTART:20260328T100000Z
DTEND:20260328T120000Z
END:VEVENT
BEGIN:VEVENT
UID:fair
SUMMARY:Spring fair
DTSTART;VALUE=DATE:20260329
DTEND;VALUE=DATE:20260330
END:VEVENT
BEGIN:VEVENT
UID:concert
SUMMARY:Concert
DTSTART:20260404T200000
DTEND:20260404T230000
END:VEVENT
BEGIN:VEVENT
UID:cancelled
SUMMARY:Cancelled party
STATUS:CANCELLED
DTSTART:20260405T200000
DTEND:20260405T230000
END:VEVENT
END:VCALENDAR
""".replace("\n", "\r\n")


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]  # year, month, day, hour given positionally


EXPECTED = [
    (_utc(2026, 3, 19, 17), _utc(2026, 3, 19, 19)),  # 18:00 CET
    (_utc(2026, 3, 21, 13), _utc(2026, 3, 21, 15)),  # 09:00 EDT
    (_utc(2026, 3, 28, 10), _utc(2026, 3, 28, 12)),  # UTC
    (_utc(2026, 3, 28, 23), _utc(2026, 3, 29, 22)),  # all day on the 23-hour day
    # 26 March is an EXDATE
    (_utc(2026, 4, 2, 16), _utc(2026, 4, 2, 18)),  # 18:00 CEST, after the change
    (_utc(2026, 4, 4, 18), _utc(2026, 4, 4, 21)),  # floating 20:00 = Paris time
    (_utc(2026, 4, 9, 16), _utc(2026, 4, 9, 18)),
]

HALL = Building.model_validate(
    {
        "id": "salle",
        "name": "Salle des fêtes",
        "usage": "cultural_centre",
        "floor_area_m2": 600,
        "heated_area_m2": 550,
        "schedule": {
            "weekly": {},
            "bookings": {"ical": "calendars/hall.ics"},
            "closures": [{"start": "2026-04-09", "end": "2026-04-10"}],
        },
    }
)


@pytest.fixture
def inventory_dir(tmp_path: Path) -> Path:
    (tmp_path / "calendars").mkdir()
    (tmp_path / "calendars" / "hall.ics").write_text(CALENDAR, encoding="utf-8", newline="")
    return tmp_path


def test_rrule_exdate_tzid_utc_all_day_and_floating_events_across_dst(inventory_dir: Path) -> None:
    got = booked_intervals(HALL, inventory_dir, _utc(2026, 3, 1), _utc(2026, 5, 1), PARIS, loader=BookingLoader(inventory_dir))
    assert got == EXPECTED


def test_booked_hours_are_open_hours_and_closures_still_close(inventory_dir: Path) -> None:
    booked = booked_intervals(HALL, inventory_dir, _utc(2026, 3, 1), _utc(2026, 5, 1), PARIS, loader=BookingLoader(inventory_dir))
    times = np.arange(_utc(2026, 3, 15).timestamp(), _utc(2026, 4, 15).timestamp(), 3600.0)
    open_frac, preheat = schedule_masks(HALL, FrenchCalendar("C"), PARIS, times, timedelta(hours=2), booked=booked)
    open_hours = {datetime.fromtimestamp(float(t), UTC) for t in times[open_frac == 1.0]}
    expected: set[datetime] = set()
    for start, end in EXPECTED[:-1]:  # the judo of 9 April falls in a closure
        moment = start
        while moment < end:
            expected.add(moment)
            moment += timedelta(hours=1)
    assert open_hours == expected
    assert set(open_frac.tolist()) == {0.0, 1.0}  # bookings here start and end on the hour
    # Pre-heating before a booking: the two hours before the concert.
    warm = {datetime.fromtimestamp(float(t), UTC) for t in times[preheat]}
    assert {_utc(2026, 4, 4, 16), _utc(2026, 4, 4, 17)} <= warm
    assert _utc(2026, 4, 9, 15) not in warm  # no booking that day: the closure removed it


BROKEN = CALENDAR.replace("DTSTART;TZID=America/New_York:20260321T090000", "DTSTART;TZID=America/New_York:2026032T090000")


def test_a_broken_event_names_the_file_and_the_event(inventory_dir: Path) -> None:
    (inventory_dir / "calendars" / "hall.ics").write_text(BROKEN, encoding="utf-8")
    with pytest.raises(BookingsError) as info:
        booked_intervals(HALL, inventory_dir, _utc(2026, 3, 1), _utc(2026, 5, 1), PARIS, loader=BookingLoader(inventory_dir))
    message = str(info.value)
    assert message.startswith(str(inventory_dir / "calendars" / "hall.ics") + ": ")
    assert "UID visitors" in message
    assert "'Visit from the twin town'" in message
    assert "DTSTART" in message


def test_a_broken_rule_names_the_event(inventory_dir: Path) -> None:
    (inventory_dir / "calendars" / "hall.ics").write_text(CALENDAR.replace("FREQ=WEEKLY;COUNT=4", "FREQ=FORTNIGHTLY"))
    with pytest.raises(BookingsError, match=r"hall\.ics: event UID weekly-judo 'Judo club'"):
        BookingLoader(inventory_dir).intervals("calendars/hall.ics", PARIS, _utc(2026, 3, 1), _utc(2026, 5, 1))


@pytest.mark.parametrize("text", ["not a calendar\r\n", "BEGIN:VEVENT\r\nUID:x\r\nEND:VEVENT\r\n", ""])
def test_a_file_that_is_no_calendar_names_the_file(inventory_dir: Path, text: str) -> None:
    (inventory_dir / "calendars" / "hall.ics").write_text(text)
    with pytest.raises(BookingsError, match=r"hall\.ics: not an iCalendar file"):
        BookingLoader(inventory_dir).calendar("calendars/hall.ics")


def test_a_missing_file_names_the_file_resolved_from_the_inventory_folder(tmp_path: Path) -> None:
    with pytest.raises(BookingsError) as info:
        booked_intervals(HALL, tmp_path, _utc(2026, 3, 1), _utc(2026, 5, 1), PARIS, loader=BookingLoader(tmp_path))
    assert str(info.value).startswith(f"{tmp_path / 'calendars' / 'hall.ics'}: cannot read the booking calendar")


def test_an_edited_file_is_read_again(inventory_dir: Path) -> None:
    loader = BookingLoader(inventory_dir)
    assert len(loader.intervals("calendars/hall.ics", PARIS, _utc(2026, 3, 1), _utc(2026, 5, 1))) == len(EXPECTED)
    path = inventory_dir / "calendars" / "hall.ics"
    path.write_text(CALENDAR.replace("COUNT=4", "COUNT=1"), encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert len(loader.intervals("calendars/hall.ics", PARIS, _utc(2026, 3, 1), _utc(2026, 5, 1))) == len(EXPECTED) - 2


class _Handler(http.server.BaseHTTPRequestHandler):
    body: bytes = b""
    status: int = 200

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Type", "text/calendar")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def calendar_server() -> Iterator[tuple[str, type[_Handler], http.server.HTTPServer]]:
    handler = type("Handler", (_Handler,), {"body": CALENDAR.encode(), "status": 200})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="ics-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hall.ics", handler, server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_an_unreachable_url_keeps_the_last_good_copy(
    tmp_path: Path, calendar_server: tuple[str, type[_Handler], http.server.HTTPServer], caplog: pytest.LogCaptureFixture
) -> None:
    url, handler, server = calendar_server
    cache = tmp_path / "cache"
    first = BookingLoader(tmp_path, cache_dir=cache, timeout=timedelta(seconds=2))
    assert first.intervals(url, PARIS, _utc(2026, 3, 1), _utc(2026, 5, 1)) == EXPECTED
    # The server now answers with an error, then disappears: a new process keeps the copy on disk.
    handler.status = 503
    with caplog.at_level(logging.WARNING, logger="inventory.bookings"):
        assert BookingLoader(tmp_path, cache_dir=cache).intervals(url, PARIS, _utc(2026, 3, 1), _utc(2026, 5, 1)) == EXPECTED
    assert any("using the last good copy" in r.getMessage() and url in r.getMessage() for r in caplog.records)
    handler.status = 200
    handler.body = b"<html>maintenance</html>"
    assert BookingLoader(tmp_path, cache_dir=cache).intervals(url, PARIS, _utc(2026, 3, 1), _utc(2026, 5, 1)) == EXPECTED
    server.shutdown()
    server.server_close()
    assert BookingLoader(tmp_path, cache_dir=cache).intervals(url, PARIS, _utc(2026, 3, 1), _utc(2026, 5, 1)) == EXPECTED
    # With no copy at all, the failure is an error naming the URL.
    with pytest.raises(BookingsError, match="no copy is kept") as info:
        BookingLoader(tmp_path, cache_dir=tmp_path / "empty").calendar(url)
    assert str(info.value).startswith(url)


def test_a_url_is_fetched_again_only_after_the_refresh_period(
    tmp_path: Path, calendar_server: tuple[str, type[_Handler], http.server.HTTPServer]
) -> None:
    url, handler, _ = calendar_server
    now = [_utc(2026, 3, 1)]
    loader = BookingLoader(tmp_path, cache_dir=tmp_path / "cache", refresh=timedelta(hours=1), now=lambda: now[0])
    assert len(loader.intervals(url, PARIS, _utc(2026, 3, 1), _utc(2026, 5, 1))) == len(EXPECTED)
    handler.body = CALENDAR.replace("COUNT=4", "COUNT=1").encode()
    now[0] += timedelta(minutes=59)
    assert len(loader.intervals(url, PARIS, _utc(2026, 3, 1), _utc(2026, 5, 1))) == len(EXPECTED)
    now[0] += timedelta(minutes=2)
    assert len(loader.intervals(url, PARIS, _utc(2026, 3, 1), _utc(2026, 5, 1))) == len(EXPECTED) - 2


@pytest.mark.parametrize(("event", "message"), [
    # Hostile-input round: these three ran for minutes (and gigabytes) before any answer.
    ("RRULE:FREQ=SECONDLY", r"RRULE FREQ=SECONDLY repeats 86,400 times a day: a booking recurs at most 96 times a day"),
    ("RRULE:FREQ=MINUTELY;INTERVAL=5", r"RRULE FREQ=MINUTELY;INTERVAL=5 repeats 288 times a day"),
    ("RRULE:FREQ=HOURLY;BYMINUTE=" + ",".join(map(str, range(60))), r"RRULE FREQ=HOURLY;BYMINUTE=0,1,.* repeats 1,440 times"),
    ("RRULE:FREQ=DAILY;INTERVAL=0", r"RRULE INTERVAL=0: must be a whole number from 1"),
    # A traceback (OverflowError), and ends before starts read as a booking of the hours between.
    ("DURATION:P99999999D", r"date value out of range"),
    ("DTEND;TZID=Europe/Paris:20260401T090000", r"DTEND 2026-04-01T09:00:00\+02:00 is before DTSTART 2026-04-01T18:00:00"),
    ("DURATION:-PT2H", r"DURATION -PT2H is negative"),
    ("DTEND;TZID=Europe/Paris:20260401T200000\nDTEND;TZID=Europe/Paris:20260401T210000", r"DTEND given 2 times"),
])
def test_a_hostile_event_names_the_event_and_answers_at_once(inventory_dir: Path, event: str, message: str) -> None:
    hostile = ("BEGIN:VEVENT\nUID:hostile\nSUMMARY:Bomb\nDTSTART;TZID=Europe/Paris:20260401T180000\n"
               f"{event}\nEND:VEVENT\nEND:VCALENDAR")
    (inventory_dir / "calendars" / "hall.ics").write_text(CALENDAR.replace("END:VCALENDAR", hostile))
    with pytest.raises(BookingsError, match=r"hall\.ics: event UID hostile 'Bomb': " + message):
        BookingLoader(inventory_dir).intervals("calendars/hall.ics", PARIS, _utc(2026, 1, 1), _utc(2027, 1, 1))


def test_a_booking_every_quarter_hour_is_still_read(inventory_dir: Path) -> None:
    quarter = ("BEGIN:VEVENT\nUID:q\nDTSTART;TZID=Europe/Paris:20260401T180000\nDURATION:PT5M\n"
               "RRULE:FREQ=HOURLY;BYMINUTE=0,15,30,45;COUNT=8\nEND:VEVENT\nEND:VCALENDAR")
    (inventory_dir / "calendars" / "hall.ics").write_text(CALENDAR.replace("END:VCALENDAR", quarter))
    spans = BookingLoader(inventory_dir).intervals("calendars/hall.ics", PARIS, _utc(2026, 4, 1), _utc(2026, 4, 2))
    assert [(s.isoformat(), e.isoformat()) for s, e in spans][:2] == [
        ("2026-04-01T16:00:00+00:00", "2026-04-01T16:05:00+00:00"), ("2026-04-01T16:15:00+00:00", "2026-04-01T16:20:00+00:00")]
    assert len(spans) == 8


def test_an_unknown_time_zone_is_read_as_the_organisations_and_said(
    inventory_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Hostile-input round: TZID=Mars/Olympus was read as the organisation's time without a word.
    mars = ("BEGIN:VEVENT\nUID:mars\nSUMMARY:Mars\nDTSTART;TZID=Mars/Olympus:20260401T180000\n"
            "DTEND;TZID=Mars/Olympus:20260401T200000\nEND:VEVENT\nEND:VCALENDAR")
    (inventory_dir / "calendars" / "hall.ics").write_text(CALENDAR.replace("END:VCALENDAR", mars))
    with caplog.at_level(logging.WARNING, logger="inventory.bookings"):
        spans = BookingLoader(inventory_dir).intervals("calendars/hall.ics", PARIS, _utc(2026, 4, 1), _utc(2026, 4, 2))
    assert spans == [(_utc(2026, 4, 1, 16), _utc(2026, 4, 1, 18))]  # 18:00-20:00 CEST
    warned = [r.getMessage() for r in caplog.records]
    assert any("event UID mars 'Mars': DTSTART TZID 'Mars/Olympus' is no time zone known" in m for m in warned), warned
