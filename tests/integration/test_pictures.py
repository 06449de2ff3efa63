"""The README's pictures (``scripts/pictures``, ``docs/pictures.py``) with a real headless Chromium.

A heating fault and a water leak are simulated and detected; their alert mails
and the daily digest go through the mail outbox to a local SMTP server;
``econome simulate`` (three buildings) and ``econome report building|renovation|portfolio``
write the monthly, renovation and annual reports as HTML and PDF. Chromium renders
the mails and the reports, pypdfium2 the PDF's pages: each picture has the expected
size, is not blank, and shows its chart. The renovation report shows the savings
of the command's JSON, in the HTML and in the PDF; the annual report's columns add
up to its totals.
What Chromium was given to show holds no internal name (``tests/reader_text.py``,
the one list the content tests use too), and the figures each alert mail shows
add up: excess at most observed, expected plus excess equal to observed within
the one precision they are shown with, a cost. Chromium missing fails the test: ``scripts/install`` installs it.

Every other kind of alert mail (``scripts/pictures`` makes one of each) is
checked, as text, by ``tests/unit/anomalies/test_mail_content.py``.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pypdfium2  # type: ignore[import-untyped]  # no py.typed
import pytest
import yaml
from PIL import Image

from inventory import load_inventory
from simulator.faults import Fault, FaultKind
from streams.display import percent

from ..reader_text import figure, pictures_module, problems, shown, visible_text

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "examples" / "commune.yaml"
A4_AT_96_DPI = (794, 1123)
ALERTS = ("mail-heating-unoccupied", "mail-water-leak")



@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Mails and a report, their HTML and their pictures."""
    pictures = pictures_module()
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

    # The reports of three of the commune's buildings (the twelve would take a minute to simulate): the
    # renovated school needs a year before its works (2024-09-01) and some after.
    config = out / "commune.yaml"
    doc = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    for site in doc["sites"]:
        site["buildings"] = [b for b in site["buildings"] if b["id"] in ("mairie", "ecole-curie", "gymnase-batum")]
    doc["sites"] = [site for site in doc["sites"] if site["buildings"]]
    config.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    data = out / "readings.csv"
    pictures.econome("simulate", "--config", str(config), "--out", str(data), "--start", "2023-09-01", "--end", "2026-02-01")
    reports = {"report": ["building", "--building", "gymnase-batum", "--month", "2026-01"],
               "report-renovation": ["renovation", "--building", "ecole-curie"],
               "report-portfolio": ["portfolio", "--year", "2025"]}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        files = pictures.report_files(config, data, out, reports)
    summary = json.loads(next(line for line in printed.getvalue().splitlines() if line.startswith("{")))
    pdf_pages = {}
    for name, (html_path, pdf_path) in files.items():
        pages[name] = html_path.read_text(encoding="utf-8")
        pdf_pages[name] = pictures.pdf_page_pngs(pdf_path.read_bytes(), out / f"{name}-pdf")
    shots = {name: pictures.screenshot(page, out / f"{name}.png") for name, page in pages.items()}
    return {"inventory": inv, "mails": mails, "pages": pages, "shots": shots, "pdf_pages": pdf_pages["report"],
            "all_pdf_pages": pdf_pages, "pdf_text": {name: _pdf_text(pdf) for name, (_, pdf) in files.items()},
            "renovation": summary}  # fmt: skip


def _pdf_text(path: Path) -> str:
    document = pypdfium2.PdfDocument(path)
    try:
        return "\n".join(document[i].get_textpage().get_text_range() for i in range(len(document)))
    finally:
        document.close()


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


@pytest.mark.parametrize(("name", "unit"), [("mail-heating-unoccupied", "kWh"), ("mail-water-leak", "m³")])
def test_the_figures_chromium_shows_add_up(rendered: dict[str, Any], name: str, unit: str) -> None:
    """What the reader sees in the mail's table: excess ≤ observed, expected + excess = observed, a cost."""
    text = visible_text(rendered["pages"][name])
    (observed, step), (expected, step_expected), (excess, step_excess) = (
        shown(text, label) for label in ("Observé", "Attendu", "Surconsommation"))
    assert 0 < excess <= observed, text
    # One precision for the three (review round 2: "4,2 / 23 / 19 m³"); each is rounded to it.
    assert step == step_expected == step_excess, text
    assert expected + excess == pytest.approx(observed, abs=1.5 * step + 1e-9), text
    assert re.search(rf"Observé\n[\d\u202f]+(?:,\d+)?\xa0{unit}\n", text), text
    cost = figure(text, "Coût")
    assert cost > 0, text
    assert re.search(r"Coût\n[\d\u202f]+\xa0€\n", text), text
    subject = str(rendered["mails"][name]["Subject"])
    assert subject.endswith(f"{cost:.0f}\xa0€"), subject  # the subject and the table agree


def _thousands(text: str) -> float:
    return float(text.replace("\u202f", "").replace("\xa0", "").replace(",", ".").replace("−", "-"))


def test_the_renovation_and_portfolio_reports_show_the_cli_figures(rendered: dict[str, Any]) -> None:
    """Both reports, as Chromium shows the HTML and as the PDF prints: the savings of the CLI's JSON, totals that add up."""
    summary = rendered["renovation"]
    for name in ("report-renovation", "report-portfolio"):
        _not_blank(_rgb(rendered["shots"][name]))
        assert 1 <= len(rendered["all_pdf_pages"][name]) <= 3
        for page in rendered["all_pdf_pages"][name]:
            assert (_rgb(page).shape[1], _rgb(page).shape[0]) == A4_AT_96_DPI
    text = visible_text(rendered["pages"]["report-renovation"])
    saved = re.search(r"\n([\d\u202f]+) ± ([\d\u202f]+)\xa0kWh\nconsommation évitée", text)
    assert saved is not None, text
    assert _thousands(saved.group(1)) == round(summary["savings_kwh"])
    assert _thousands(saved.group(2)) == round(summary["savings_uncertainty_kwh"])
    share = percent(summary["savings_fraction"], 1)
    assert f"{share}\néconomie mesurée" in text, text
    assert f"{round(summary['savings_eur']):,}".replace(",", "\u202f") + "\xa0€\ndépense évitée" in text
    baseline, actual = figure(text, "Consommation de référence ajustée"), figure(text, "Consommation mesurée")
    assert baseline - actual == pytest.approx(_thousands(saved.group(1)), abs=1.0)  # the figures add up
    printed = rendered["pdf_text"]["report-renovation"]
    assert saved.group(1).replace("\u202f", "") in printed.replace("\u202f", "").replace(" ", "")
    assert share.split("\xa0")[0] in printed

    page = rendered["pages"]["report-portfolio"]
    rows = [[visible_text(c) for c in re.findall(r"<td>(.*?)</td>", row)]
            for row in re.findall(r"<tr[^>]*>(<td>.*?)</tr>", page)]
    # building, m², electricity, gas, total, kWh/m², water, €, tCO2e, avoided €
    table = [row for row in rows if len(row) == 10]
    assert len(table) == 4, rows  # three buildings and the total
    *buildings, total = table
    for column in (1, 2, 3, 4, 6, 7):  # whole numbers: the sum is off by at most half a unit per building
        assert sum(_thousands(b[column]) for b in buildings) == pytest.approx(_thousands(total[column]),
                                                                              abs=0.5 * len(buildings) + 1e-9), column
    assert sum(_thousands(b[8]) for b in buildings) == pytest.approx(_thousands(total[8]), abs=0.05 * len(buildings))
    for row in table:  # electricity + gas = total, per building
        assert _thousands(row[2]) + _thousands(row[3]) == pytest.approx(_thousands(row[4]), abs=1.0), row
    printed = rendered["pdf_text"]["report-portfolio"].replace("\u202f", "").replace(" ", "")
    assert total[4].replace("\u202f", "") in printed  # the PDF prints the same total
    assert not problems(visible_text(page), rendered["inventory"])
