r"""The README's pictures: every e-mail and report of the simulated communes, as their readers see them.

    scripts/pictures                     # writes docs/img/mail-*.png and docs/img/report-*.png
    scripts/pictures --keep /tmp/pics    # also keeps the HTML, the .eml and the PDF files

One command, from a checkout (it needs Chromium: ``scripts/install`` installs it):

* **E-mails.** The alert mail of every kind of :class:`anomalies.events.EventKind`,
  each from a real detection (:func:`anomalies.detect.detect`: rules, and models on the demo's winter)
  on simulated readings with injected faults, sent through
  :class:`anomalies.notify.MailOutbox` to a local SMTP catcher as ``econome run``
  would send it:

  - a winter of the demo commune (``examples/commune.yaml``, :mod:`simulator.physics`)
    with one fault of each kind it simulates (:func:`winter_faults`), then the
    resolution notice of the gymnasium's heating and the daily digest;
  - a winter of family B's commune (``examples/family_b.yaml``, :mod:`simulator.family_b`)
    for the kinds only that simulator injects (:func:`family_b_faults`): heating left on
    in a school with a gas meter only (``consumption_unoccupied``), a drifting and a
    flat-lined temperature sensor (``sensor_drift``, ``lost_daily_cycle``);
  - lights at full power in full daylight (``lighting_daylight``), which no
    simulator injects: the demo commune's spring readings with the gymnasium's
    lighting meter and illuminance sensor rewritten as its lamps at full power
    would make them over twelve days (:func:`daylight_readings`), then detected.

  The script fails if a kind has no mail.
* **Reports.** ``econome simulate`` writes the commune's history as one readings CSV;
  ``econome report building|renovation|portfolio`` writes each report twice,
  ``--out X.html`` and ``--out X.pdf``.
* **Pictures.** Headless Chromium renders each mail's HTML (its inline chart
  made a ``data:`` URI) and each report's HTML to a PNG 900 px wide, the whole
  page; pypdfium2 renders each page of each PDF to a PNG.
* **Manifest.** :data:`MANIFEST` beside the PNG files: each one's SHA-256 and the text it
  shows (the mail's subject and visible text, the report's, the PDF page's), which
  ``tests/unit/test_readme_pictures.py`` checks without rendering anything again.

:func:`screenshot`, :func:`pdf_page_pngs`, :func:`mail_html` and the builders
are used by ``tests/integration/test_pictures.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import email
import email.policy
import hashlib
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from anomalies.alerts import EmailConfig  # noqa: E402 - after the path fix, so the script runs from a checkout
from anomalies.detect import DetectConfig, detect  # noqa: E402
from anomalies.events import AlertState, AnomalyEvent, EventKind  # noqa: E402
from anomalies.features import PointSeries  # noqa: E402
from anomalies.notify import MailOutbox  # noqa: E402
from dashboards.chromium import find_chromium  # noqa: E402
from inventory import Inventory, load_inventory  # noqa: E402
from simulator.family_b import FAMILY_B_CONFIG, simulate_family_b  # noqa: E402
from simulator.faults import Fault, FaultKind  # noqa: E402
from simulator.physics import USAGE_PROFILES, History, generate_history  # noqa: E402
from streams.clock import ManualClock  # noqa: E402
from tests.reader_text import visible_text  # noqa: E402

CONFIG = ROOT / "examples" / "commune.yaml"
MANIFEST = "pictures.json"
"""Beside the PNG files: each picture's SHA-256 and the text it shows, which ``tests/unit/test_readme_pictures.py``
checks as the content tests check a fresh mail or report (the pictures are not rendered again there)."""
WIDTH_PX = 900
"""Width of the browser window: a mail is at most 840 px wide, a report 960 px."""
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
    "--force-device-scale-factor=1",
    # Take the picture once the page and its images are loaded and drawn, not at the first paint.
    "--virtual-time-budget=5000", "--run-all-compositor-stages-before-draw",
)  # fmt: skip
RECIPIENT = "cep@valmont.example"
"""The advisor whose mails are shown (French)."""
FAMILY_B_RECIPIENT = "energie@saint-remy.example"
"""The advisor of family B's commune (``examples/family_b.yaml``)."""

MAILED_KINDS = tuple(kind.value for kind in EventKind)
"""Every kind of alert can be mailed: the pictures show the alert mail of each."""

REPORTS: dict[str, list[str]] = {
    "report-building-month": ["building", "--building", "mairie", "--month", "2026-01"],
    "report-renovation": ["renovation", "--building", "ecole-curie"],
    "report-portfolio": ["portfolio", "--year", "2025", "--invoices", "{downloads}/factures.csv"],
}
"""Name of the picture → arguments of ``econome report`` on the simulated history (:data:`SIMULATE`);
``{downloads}`` is the folder of the simulated downloads (the bills: the school heated by fuel oil)."""
SIMULATE = ["--start", "2023-09-01", "--end", "2026-02-01"]
"""The history ``econome simulate`` writes for the reports: a year before ecole-curie's works (2024-09-01) to January 2026."""


# --- rendering ---------------------------------------------------------------------------------------------


def chromium() -> str:
    """The Chromium executable: :func:`dashboards.chromium.find_chromium`.

    Raises:
        FileNotFoundError: none found (``scripts/install`` installs Debian's ``chromium``, else Playwright's).
    """
    return find_chromium()  # ECONOME_CHROMIUM, Debian's chromium, then Playwright's


def screenshot(page: str, out: Path, *, width: int = WIDTH_PX, height: int = 3000) -> Path:
    """Render an HTML page with headless Chromium to a PNG of the whole page, ``width`` pixels wide.

    Chromium's ``--screenshot`` takes the window only: the window is made tall, the
    blank bottom cropped; a page that reaches the window's bottom is taken again in
    a window twice as tall.

    Args:
        page: the HTML document; its images must be ``data:`` URIs (nothing is fetched).
        out: the PNG to write.
        width: window width, pixels.
        height: first window height tried, pixels.

    Returns:
        ``out``.
    """
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="econome-chromium-") as tmp:
        source = Path(tmp) / "page.html"
        source.write_text(page, encoding="utf-8")
        shot = Path(tmp) / "shot.png"
        while True:
            profile = Path(tmp) / f"profile-{height}"
            command = [
                chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                f"--screenshot={shot}", source.as_uri(),
            ]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603 - our own arguments
            if done.returncode != 0 or not shot.exists():
                msg = f"chromium failed ({done.returncode}) on {out.name}: {done.stderr[-2000:]}"
                raise RuntimeError(msg)
            with Image.open(shot) as image:
                rgb = image.convert("RGB")
            bottom = _content_bottom(rgb)
            if bottom < rgb.height - 8 or height >= 32_000:
                break
            height *= 2
            shot.unlink()
        rgb.crop((0, 0, rgb.width, min(rgb.height, bottom + 24))).save(out, optimize=True)
    return out


def _content_bottom(image: Any) -> int:
    """The last row of an image that is not all background (the bottom-right pixel's colour)."""
    pixels = np.asarray(image)
    background = pixels[-1, -1]
    rows = np.flatnonzero((pixels != background).any(axis=(1, 2)))
    return int(rows[-1]) + 1 if rows.size else 0


def pdf_page_texts(pdf: bytes) -> list[str]:
    """The text of each page of a PDF (pypdfium2), page order."""
    import pypdfium2  # type: ignore[import-untyped]  # no py.typed

    document = pypdfium2.PdfDocument(pdf)
    try:
        return [str(document[index].get_textpage().get_text_range()) for index in range(len(document))]
    finally:
        document.close()


def write_manifest(folder: Path, texts: dict[str, str]) -> Path:
    """Write :data:`MANIFEST` in ``folder``: for each PNG named in ``texts``, its SHA-256 and its text."""
    entries = {
        name: {"sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest(), "text": text}
        for name, text in sorted(texts.items())
    }
    path = folder / MANIFEST
    path.write_text(json.dumps(entries, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path


def pdf_page_pngs(pdf: bytes, stem: Path, *, dpi: int = 96) -> list[Path]:
    """Render each page of a PDF to ``<stem>-p<N>.png`` (pypdfium2); returns the files, page order."""
    import pypdfium2  # type: ignore[import-untyped]  # no py.typed

    document = pypdfium2.PdfDocument(pdf)
    try:
        out = []
        for index in range(len(document)):
            page = document[index]
            path = stem.with_name(f"{stem.name}-p{index + 1}.png")
            page.render(scale=dpi / 72).to_pil().convert("RGB").save(path, optimize=True)
            page.close()
            out.append(path)
        return out
    finally:
        document.close()


def mail_html(message: EmailMessage) -> str:
    """A mail's HTML part as a mail client shows it: each ``cid:`` image replaced by a ``data:`` URI of its part."""
    body = message.get_body(("html",))
    if body is None:
        msg = f"mail {message['Subject']!r} has no HTML part"
        raise ValueError(msg)
    page = str(body.get_content())
    for part in message.walk():
        cid = part.get("Content-ID")
        if cid and part.get_content_maintype() == "image":
            payload = part.get_payload(decode=True)
            data = base64.b64encode(payload if isinstance(payload, bytes) else b"").decode("ascii")
            page = page.replace(f"cid:{str(cid).strip('<>')}", f"data:{part.get_content_type()};base64,{data}")
    return page


# --- the mails -------------------------------------------------------------------------------------------------


def winter_faults(inv: Inventory) -> list[Fault]:
    """One fault of each kind in January 2026, in buildings that can show it."""
    tz = inv.organisation.tz

    def at(year: int, month: int, day: int, hour: int) -> datetime:
        return datetime(year, month, day, hour, tzinfo=tz)

    def fault(kind: FaultKind, building: str, start: datetime, end: datetime, **extra: Any) -> Fault:
        return Fault(kind=kind, building=building, start=start, end=end, **extra)

    return [
        fault(FaultKind.HEATING_LEFT_ON, "gymnase-batum", at(2026, 1, 17, 20), at(2026, 1, 19, 5)),
        fault(FaultKind.WATER_LEAK, "ecole-jaures", at(2026, 1, 20, 0), at(2026, 1, 26, 0)),
        fault(FaultKind.BASELOAD_CREEP, "mairie", at(2025, 12, 1, 0), at(2026, 1, 26, 0), params={"increase_pct": 80.0}),
        fault(FaultKind.SETPOINT_RAISED, "bibliotheque", at(2026, 1, 13, 0), at(2026, 1, 24, 0), params={"delta_c": 3.5}),
        fault(FaultKind.LIGHTING_LEFT_ON, "centre-culturel", at(2026, 1, 21, 19), at(2026, 1, 23, 19)),
        fault(FaultKind.STUCK_COUNTER, "creche", at(2026, 1, 22, 0), at(2026, 1, 26, 0), point="creche-water-volume"),
        fault(FaultKind.DEAD_SENSOR, "atelier", at(2026, 1, 22, 0), at(2026, 1, 26, 0), point="atelier-atelier-temperature"),
        fault(
            FaultKind.DEAD_SENSOR,
            "ecole-pasteur",
            at(2026, 1, 21, 9),
            at(2026, 1, 24, 9),
            point="ecole-pasteur-classes-co2",
            params={"mode": "frozen"},
        ),
    ]


def family_b_faults(inv: Inventory) -> list[Fault]:
    """The faults only family B simulates, in January 2027.

    They give ``consumption_unoccupied``, ``sensor_drift`` and ``lost_daily_cycle``.
    """
    tz = inv.organisation.tz

    def at(month: int, day: int, hour: int = 0) -> datetime:
        return datetime(2027, month, day, hour, tzinfo=tz)

    return [
        Fault(kind=FaultKind.HEATING_LEFT_ON, building="maternelle-bourg", start=at(1, 15, 18), end=at(1, 25, 6)),
        Fault(kind=FaultKind.SENSOR_DRIFT, building="eglise-saint-remy", point="eglise-saint-remy-nef-temperature",
              start=at(1, 2), end=at(1, 27), params={"drift_c_per_day": 0.5}),
        Fault(kind=FaultKind.SENSOR_FLATLINE, building="multi-accueil", point="multi-accueil-vie-temperature",
              start=at(1, 12), end=at(1, 27)),
    ]  # fmt: skip


def family_b_events(since: datetime = datetime(2027, 1, 5, tzinfo=UTC)) -> tuple[Inventory, list[AnomalyEvent]]:
    """Family B's commune, October 2026 to January 2027 with :func:`family_b_faults` (no quirks), detected (rules)."""
    inv = load_inventory(FAMILY_B_CONFIG)
    history = simulate_family_b(inv, datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 27, tzinfo=UTC), seed=5,
                                faults=family_b_faults(inv), quirks=False)  # fmt: skip
    readings = {pid: PointSeries(history.times_s[np.isfinite(v)], v[np.isfinite(v)]) for pid, v in history.values.items()}
    return inv, detect(inv, readings, DetectConfig(models=False), start=since)


DAYLIGHT_BUILDING = "gymnase-batum"
DAYLIGHT_DAYS = (datetime(2026, 5, 11, tzinfo=UTC), datetime(2026, 5, 23, tzinfo=UTC))
"""The gymnasium's lamps at full power in full daylight over these days (:func:`daylight_readings`)."""


def daylight_readings(inv: Inventory, history: History) -> History:
    """The history with the gymnasium's lamps at full power whenever they are on over :data:`DAYLIGHT_DAYS`.

    No simulator injects this fault (family A's ``lighting_left_on`` concerns closed hours, family B
    has no lighting meter): the readings are rewritten as the lamps would make them. Each lit hour of
    the lighting meter counts its highest hourly consumption before the window (all lamps on), and the
    illuminance sensor gains the light of the lamps it lacked (the usage's lamp illuminance times the
    share of lamps that were off).
    """
    building = inv.building(DAYLIGHT_BUILDING)
    meter = next(p.id for p in building.points if p.usage.value == "lighting" and p.cumulative)
    sensor = next(p.id for p in building.points if p.quantity.value == "illuminance")
    values = history.values.copy()
    light, lux = history.point_ids.index(meter), history.point_ids.index(sensor)
    window = (history.times >= np.datetime64(DAYLIGHT_DAYS[0].replace(tzinfo=None))) & (
        history.times < np.datetime64(DAYLIGHT_DAYS[1].replace(tzinfo=None))
    )
    step = np.diff(values[:, light], prepend=values[0, light])
    full = float(np.nanmax(step[~window][1:]))
    lit = window & (step > 0.1 * full)
    values[:, lux] += np.where(lit, (1.0 - step / full) * USAGE_PROFILES[building.usage].lighting_lux, 0.0)
    step = np.where(lit, full, step)
    values[:, light] = values[0, light] + np.cumsum(step) - step[0]
    return History(history.times, history.point_ids, values)


def daylight_events(inv: Inventory) -> list[AnomalyEvent]:
    """Detection (rules) on the demo commune's spring, March to May 2026, with :func:`daylight_readings`."""
    history = generate_history(inv, datetime(2026, 3, 1, tzinfo=UTC), DAYLIGHT_DAYS[1], timedelta(hours=1), seed=4)
    return detect(inv, _point_series(daylight_readings(inv, history)), DetectConfig(models=False),
                  start=DAYLIGHT_DAYS[0] - timedelta(days=7))  # fmt: skip


def simulated_events(
    inv: Inventory,
    faults: Sequence[Fault],
    start: datetime,
    end: datetime,
    *,
    since: datetime | None = None,
    models: bool = True,
    seed: int = 4,
) -> list[AnomalyEvent]:
    """The events detection raises on the simulated commune over ``[start, end)`` (hourly readings), faults injected.

    ``since`` keeps the events that end after it (the history before it serves as reference).
    """
    history = generate_history(inv, start, end, timedelta(hours=1), seed=seed, faults=list(faults))
    return detect(inv, _point_series(history), DetectConfig(models=models), start=since or start)


def _point_series(history: History) -> dict[str, PointSeries]:
    seconds = history.times.astype("datetime64[ms]").astype(np.int64) / 1000.0
    return {
        pid: PointSeries(seconds[np.isfinite(col)], col[np.isfinite(col)])
        for pid, col in zip(history.point_ids, history.values.T, strict=True)
    }


class _Catcher:
    """A local SMTP server (aiosmtpd, loopback, its own thread) that keeps every mail."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[EmailMessage] = []
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)  # noqa: S101 - the default policy makes EmailMessage
        self.messages.append(message)
        return "250 OK"


@contextmanager
def _catcher() -> Iterator[_Catcher]:
    catcher = _Catcher()
    catcher.controller.start()
    try:
        yield catcher
    finally:
        catcher.controller.stop()


@dataclass(frozen=True)
class Mail:
    """A mail as sent, under the name of its picture."""

    name: str
    message: EmailMessage

    @property
    def kind(self) -> str | None:
        """The kind of alert of an alert mail (``mail-water-leak`` → ``water_leak``); ``None`` for the others."""
        kind = self.name.removeprefix("mail-").replace("-", "_")
        return kind if kind in MAILED_KINDS else None


def sent_mails(
    inv: Inventory,
    events: Sequence[AnomalyEvent],
    now: datetime,
    *,
    kinds: Collection[str] | None = None,
    notices: bool = True,
    recipient: str = RECIPIENT,
) -> list[Mail]:
    """The mails :class:`~anomalies.notify.MailOutbox` sends the advisor for these events, as ``econome run`` would.

    At ``now`` (over an hour before the digest hour) each event is queued as it opened and sent: one
    alert mail per kind (the first event of each kind, of ``kinds`` when given); with ``notices``, half
    an hour later the resolution notice of the heating left on (else of the first resolved event); then,
    at the digest hour, the daily digest of all of them. The alert register is a fresh one, in a
    temporary folder. The mails shown are those to ``recipient``.

    Returns:
        ``mail-<kind>`` for each kind, then ``mail-resolved`` and ``mail-digest`` with ``notices``.
    """
    config = EmailConfig(
        host="127.0.0.1", port=25, security="none", sender="econome@valmont.example",
        default_recipients=[recipient], language="fr", digest_hour=7, timeout=timedelta(seconds=10),
    )  # fmt: skip
    chosen: dict[str, AnomalyEvent] = {}
    for event in events:
        if kinds is None or event.kind in kinds:
            chosen.setdefault(event.kind, event)
    mails: list[Mail] = []
    with _catcher() as catcher, tempfile.TemporaryDirectory(prefix="econome-pictures-") as tmp:
        outbox = MailOutbox(Path(tmp) / "alerts.sqlite", config.model_copy(update={"port": catcher.port}), inv, ManualClock(now))

        def send(name: str, batch: list[AnomalyEvent], at: datetime) -> None:
            before = len(catcher.messages)
            outbox.queue(batch, at)
            asyncio.run(outbox.flush(at))
            mine = [m for m in catcher.messages[before:] if m["To"] == recipient]
            if not mine:
                msg = f"no mail {name} to {recipient}"
                raise RuntimeError(msg)
            mails.append(Mail(name, mine[0]))

        for kind, event in chosen.items():
            send(f"mail-{kind.replace('_', '-')}", [event.with_state(AlertState.OPEN)], now)
        if not notices:
            return mails
        ended = [e for e in chosen.values() if e.state is AlertState.RESOLVED]
        resolved = next((e for e in ended if e.kind == "heating_unoccupied"), ended[0] if ended else None)
        if resolved is not None:
            send("mail-resolved", [resolved], now + timedelta(minutes=30))
        local = (now + timedelta(minutes=30)).astimezone(inv.organisation.tz)
        if local.hour >= config.digest_hour:
            msg = f"{now} is too close to the digest hour: the digest would go with the other mails"
            raise ValueError(msg)
        send("mail-digest", [], local.replace(hour=config.digest_hour, minute=10).astimezone(UTC))
    return mails


def missing_kinds(mails: Sequence[Mail]) -> list[str]:
    """The kinds of :data:`MAILED_KINDS` that have no alert mail among ``mails``, sorted."""
    return sorted(set(MAILED_KINDS) - {m.kind for m in mails if m.kind})


# --- the reports ---------------------------------------------------------------------------------------------


def econome(*args: str) -> None:
    """Run an ``econome`` command in this process.

    Raises:
        RuntimeError: it exited non-zero.
    """
    code = _run(list(args))
    if code:
        msg = f"econome {' '.join(args)} failed (exit {code})"
        raise RuntimeError(msg)


def report_files(config: Path, data: Path, out: Path, reports: dict[str, list[str]]) -> dict[str, tuple[Path, Path]]:
    """Write each report as HTML and PDF with ``econome report``; returns name → (HTML, PDF)."""
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, args in reports.items():
        html_path, pdf_path = out / f"{name}.html", out / f"{name}.pdf"
        for path in (html_path, pdf_path):
            econome("report", args[0], "--config", str(config), "--readings", str(data), *args[1:], "--out", str(path))
        files[name] = (html_path, pdf_path)
    return files


def _run(args: list[str]) -> int:
    from econome.cli import app

    try:
        # Not standalone: click returns the code of a typer.Exit instead of leaving the process.
        result = app(args, standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0)
    return int(result) if isinstance(result, int) else 0


# --- the script --------------------------------------------------------------------------------------------------


def _log(text: str, started: float) -> None:
    print(f"[{time.monotonic() - started:5.1f} s] {text}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Build every picture; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="folder of the PNG files (docs/img)")
    parser.add_argument("--keep", type=Path, default=None, help="also keep the HTML, .eml and PDF files here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    chromium()  # fail now, not after a minute of simulation
    inv = load_inventory(CONFIG)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="econome-pictures-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)

        faults = winter_faults(inv)
        first, end, since = (datetime(*d, tzinfo=UTC) for d in ((2025, 9, 1), (2026, 1, 27), (2026, 1, 12)))
        events = simulated_events(inv, faults, first, end, since=since)
        _log(f"demo commune's winter: {len(events)} events, kinds {sorted({e.kind for e in events})}", started)
        mails = sent_mails(inv, events, datetime(2026, 1, 27, 4, tzinfo=UTC))
        mailed = {e.kind for e in events}
        daylight = [e for e in daylight_events(inv) if e.kind == "lighting_daylight"]
        _log(f"demo commune's spring, lamps at full power in daylight: {len(daylight)} lighting_daylight events", started)
        mails += sent_mails(inv, daylight, datetime(2026, 5, 23, 4, tzinfo=UTC), notices=False)
        mailed |= {e.kind for e in daylight}
        inv_b, events_b = family_b_events()
        left = set(MAILED_KINDS) - mailed
        _log(f"family B's winter: {len(events_b)} events, kinds {sorted({e.kind for e in events_b})}", started)
        mails += sent_mails(
            inv_b, events_b, datetime(2027, 1, 27, 4, tzinfo=UTC), kinds=left, notices=False, recipient=FAMILY_B_RECIPIENT
        )
        missing = missing_kinds(mails)
        if missing:
            print(
                f"error: no alert mail of {', '.join(missing)}: detection raised none on the simulated readings", file=sys.stderr
            )
            return 1
        texts: dict[str, str] = {}
        for mail in mails:
            page = mail_html(mail.message)
            (work / f"{mail.name}.html").write_text(page, encoding="utf-8")
            (work / f"{mail.name}.eml").write_bytes(mail.message.as_bytes())
            screenshot(page, args.out / f"{mail.name}.png")
            texts[f"{mail.name}.png"] = f"{mail.message['Subject']}\n{visible_text(page)}"
            _log(f"{mail.name}.png: {mail.message['Subject']}", started)

        data = work / "readings.csv"
        downloads = work / "downloads"
        econome("simulate", "--config", str(CONFIG), "--out", str(data), *SIMULATE, "--utility-files", str(downloads))
        _log("simulated history and downloads written", started)
        reports = {name: [arg.replace("{downloads}", str(downloads)) for arg in args] for name, args in REPORTS.items()}
        for name, (html_path, pdf_path) in report_files(CONFIG, data, work, reports).items():
            page = html_path.read_text(encoding="utf-8")
            screenshot(page, args.out / f"{name}.png")
            texts[f"{name}.png"] = visible_text(page)
            pages = pdf_page_pngs(pdf_path.read_bytes(), args.out / f"{name}-pdf")
            texts.update((png.name, text) for png, text in zip(pages, pdf_page_texts(pdf_path.read_bytes()), strict=True))
            _log(f"{name}.png and {len(pages)} PDF page(s)", started)
        write_manifest(args.out, texts)
    print(f"pictures and {MANIFEST} written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
