"""The README's pictures (``scripts/pictures``, ``docs/pictures.py``) with a real headless Chromium.

A heating fault and a water leak are simulated and detected; their alert mails
and the daily digest go through the mail outbox to a local SMTP server;
``econome simulate`` and ``econome report building`` write a monthly report as
HTML and PDF. Chromium renders the mails and the report, pypdfium2 the PDF's
pages: each picture has the expected size, is not blank, and shows its chart.
What Chromium was given to show holds no internal name (``tests/reader_text.py``,
the one list the content tests use too), and the figures each alert mail shows
add up: excess at most observed, expected plus excess equal to observed within
rounding, a cost. Chromium missing fails the test: ``scripts/install`` installs it.

Every other kind of alert mail (``scripts/pictures`` makes one of each) is
checked, as text, by ``tests/unit/anomalies/test_mail_content.py``.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image

from inventory import load_inventory
from simulator.faults import Fault, FaultKind

from ..reader_text import figure, problems, visible_text

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "examples" / "commune.yaml"
A4_AT_96_DPI = (794, 1123)
ALERTS = ("mail-heating-unoccupied", "mail-water-leak")


def _pictures() -> ModuleType:
    spec = importlib.util.spec_from_file_location("econome_docs_pictures", ROOT / "docs" / "pictures.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Mails and a report, their HTML and their pictures."""
    pictures = _pictures()
    out = tmp_path_factory.mktemp("pictures")
    inv = load_inventory(CONFIG)
    tz = inv.organisation.tz
    faults = [
        Fault(kind=FaultKind.HEATING_LEFT_ON, building="gymnase-batum",
              start=datetime(2026, 1, 17, 20, tzinfo=tz), end=datetime(2026, 1, 19, 5, tzinfo=tz)),
        Fault(kind=FaultKind.WATER_LEAK, building="ecole-jaures",
              start=datetime(2026, 1, 20, tzinfo=tz), end=datetime(2026, 1, 26, tzinfo=tz)),
    ]  # fmt: skip
    events = pictures.simulated_events(
        inv, faults, datetime(2025, 12, 22, tzinfo=UTC), datetime(2026, 1, 27, tzinfo=UTC),
        since=datetime(2026, 1, 12, tzinfo=UTC), models=False,
    )  # fmt: skip
    wanted = {("gymnase-batum", "heating_unoccupied"), ("ecole-jaures", "water_leak")}
    shown = [e for e in events if (e.building, e.kind) in wanted]
    assert sorted(e.kind for e in shown) == ["heating_unoccupied", "water_leak"], [(e.building, e.kind) for e in events]
    mails = {m.name: m.message for m in pictures.sent_mails(inv, shown, datetime(2026, 1, 27, 4, tzinfo=UTC))}
    pages = {name: pictures.mail_html(mails[name]) for name in (*ALERTS, "mail-digest")}

    data = out / "readings.csv"
    pictures.econome("simulate", "--config", str(CONFIG), "--out", str(data), "--start", "2025-12-01", "--end", "2026-02-01")
    month = ["building", "--building", "gymnase-batum", "--month", "2026-01"]
    html_path, pdf_path = pictures.report_files(CONFIG, data, out, {"report": month})["report"]
    pages["report"] = html_path.read_text(encoding="utf-8")
    shots = {name: pictures.screenshot(page, out / f"{name}.png") for name, page in pages.items()}
    return {"inventory": inv, "mails": mails, "pages": pages, "shots": shots,
            "pdf_pages": pictures.pdf_page_pngs(pdf_path.read_bytes(), out / "report-pdf")}  # fmt: skip


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def _share_near(pixels: np.ndarray, colour: str, tolerance: int = 40) -> float:
    """Share of the pixels within ``tolerance`` (per channel) of a ``#rrggbb`` colour."""
    target = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return float((np.abs(pixels - target).max(axis=2) <= tolerance).mean())


def _not_blank(pixels: np.ndarray) -> None:
    background = pixels[-1, -1]
    drawn = (pixels != background).any(axis=2)
    assert drawn.mean() > 0.05, "almost nothing drawn"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100, "too few colours: no text or chart"
    # Drawn from the top to the bottom, not only a strip: every fifth of the page has something.
    for fifth in np.array_split(drawn, 5):
        assert fifth.any()


def test_mails_and_report_rendered_by_chromium(rendered: dict[str, Any]) -> None:
    shots = rendered["shots"]
    assert "Gymnase Batum" in rendered["mails"]["mail-heating-unoccupied"]["Subject"]
    assert "Gymnase Batum" in visible_text(rendered["pages"]["mail-digest"])

    for name in ALERTS:
        alert = _rgb(shots[name])
        assert alert.shape[1] == 900
        assert 600 <= alert.shape[0] <= 1600
        _not_blank(alert)
        # The inline chart (a cid: image made a data: URI) is drawn: its red "observed" line (below the red
        # title) and the shaded event.
        assert _share_near(alert[150:], "#c53030", 30) > 0.002, name
        assert _share_near(alert, "#fae5e2", 6) > 0.02, name  # #f6d3cf at 60 % over white

    digest = _rgb(shots["mail-digest"])
    assert digest.shape[1] == 900
    assert 200 <= digest.shape[0] <= 1600
    _not_blank(digest)

    report = _rgb(shots["report"])
    assert report.shape[1] == 900
    assert 600 <= report.shape[0] <= 3000
    _not_blank(report)
    assert _share_near(report, "#2f6db5", 30) > 0.01  # the header's rule and the gas bars of the chart

    assert 1 <= len(rendered["pdf_pages"]) <= 2
    for page in rendered["pdf_pages"]:
        pixels = _rgb(page)
        assert (pixels.shape[1], pixels.shape[0]) == A4_AT_96_DPI
        assert (pixels != 255).any(axis=2).mean() > 0.02
    first = _rgb(rendered["pdf_pages"][0])
    assert _share_near(first, "#2f6db5", 30) > 0.005


def test_what_chromium_shows_has_no_internal_name(rendered: dict[str, Any]) -> None:
    found = {
        name: problems(visible_text(page), rendered["inventory"]) for name, page in rendered["pages"].items()
    }
    assert all(visible_text(page) for page in rendered["pages"].values())
    assert not any(found.values()), "\n".join(f"{name}: {line}" for name, lines in found.items() for line in lines)


@pytest.mark.parametrize(("name", "unit", "rounding"), [("mail-heating-unoccupied", "kWh", 1.0), ("mail-water-leak", "m³", 0.1)])
def test_the_figures_chromium_shows_add_up(rendered: dict[str, Any], name: str, unit: str, rounding: float) -> None:
    """What the reader sees in the mail's table: excess ≤ observed, expected + excess = observed, a cost."""
    text = visible_text(rendered["pages"][name])
    observed, expected, excess = (figure(text, label) for label in ("Observé", "Attendu", "Surconsommation"))
    assert 0 < excess <= observed, text
    # Each figure is rounded to its last digit: the sum is off by at most one unit of it.
    assert expected + excess == pytest.approx(observed, abs=rounding * 1.01), text
    assert re.search(rf"Observé\n[\d\u202f]+(?:,\d)?\xa0{unit}\n", text), text
    cost = figure(text, "Coût")
    assert cost > 0, text
    assert re.search(r"Coût\n[\d\u202f]+\xa0€\n", text), text
    subject = str(rendered["mails"][name]["Subject"])
    assert subject.endswith(f"{cost:.0f}\xa0€"), subject  # the subject and the table agree
