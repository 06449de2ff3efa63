r"""What a reader of a mail or a report must never see: the one list of the content tests and the pictures test.

Advisors forward mails and reports to elected officials: module paths, rule
ids, the detector's score, English enum values, raw Python values and wrong
French typography ("12345 kWh", "-5 %", "5°C", "2.4 m3") must not reach them.
Point ids stay allowed: a mail about a sensor names the point the technician
must find, by its id when it has no name. Used by
``tests/unit/anomalies/test_mail_content.py``,
``tests/unit/dashboards/test_report_content.py`` and
``tests/integration/test_pictures.py``; ``tests/unit/test_reader_text.py`` checks
what it catches and what it lets through.

:func:`visible_text` keeps what a browser shows of an HTML page (no style,
script, attribute or ``data:`` URI, but image ``alt`` texts); :func:`problems`
lists what of it is forbidden; :func:`figure` reads a French number back.

>>> problems("Observé\xa0: 2,4\xa0m³ au point creche-water-volume")
[]
>>> [p.split(":")[0] for p in problems("Score : 1.00")]
["the detector's score", 'a decimal point instead of a comma']
"""

from __future__ import annotations

import importlib.util
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType

from anomalies.events import EventKind
from inventory import BuildingUsage, Energy, Inventory, Usage

_ALSO_FRENCH = {"restaurant", "ventilation"}
"""Enum values that are French words too."""
_ENGLISH = {"comfort", "school", "nursery", "gymnasium", "library", "offices", "workshop", "occupied", "unoccupied",
            "hourly", "daily", "monthly", "changepoint", "towt"}  # fmt: skip
"""English words of enums and model names a French reader could only read as code."""
_ENUMS = sorted(({e.value for e in (*EventKind, *BuildingUsage, *Energy, *Usage)} - _ALSO_FRENCH) | _ENGLISH)

FORBIDDEN: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), what)
    for pattern, what in (
        (r"\banomalies\.|\brules\.|\bmodels?\.\w|\bmv\.\w", "a module path"),
        (r"\bScore\b", "the detector's score"),
        (r"\biforest\b|\bIsolationForest\b", "a detector's class name"),
        (r"\b[a-z]+_[a-z_]+\b", "a snake_case name (rule id, enum value, model parameter)"),
        (r"\bterms=|\btowt\(|\bdaily-changepoint", "a model's description string"),
        (r"\bm3\b", "m3 instead of m³"),
        (r"\d\.\d", "a decimal point instead of a comma"),
        (r"(?<![\w/-])[-−]0(?:,0*)?(?![\d,])", "a negative zero"),
        (r"(?<![\w/-])-\d", "a hyphen for a minus sign"),
        (r"\b(?:nan|NaN|None|inf|True|False)\b", "a raw Python value"),
        # Not inside a dashed id (creche-water-volume), a mail address or a path: point ids are allowed.
        (r"(?<![\w.@/-])(?:" + "|".join(map(re.escape, _ENUMS)) + r")(?![\w@-])", "an enum value (English)"),
        (r"\d (?:kWh|MWh|€|°C|m³|m²|%|kgCO|tCO|DJU|h\b)", "a breaking space before a unit"),
        (r"(?<![\w/:#.,-])(?!(?:19|20)\d\d(?!\d))\d{4,}(?![\d/:])", "no thousands separator"),
        (r"\d°C", "no space before °C"),
    )
)
"""(regular expression, what it is) of each kind of forbidden text."""


def problems(text: str, inventory: Inventory | None = None) -> list[str]:
    """What a reader must not see in a text: ``'what: "match" in "line"'``, one per finding.

    With an inventory, its building ids that carry a dash (``gymnase-batum``; ``mairie`` is also a
    French word) are forbidden too, outside a point id: a building has a name.
    """
    patterns = list(FORBIDDEN)
    if inventory is not None:
        ids = sorted((b.id for _, b in inventory.buildings() if "-" in b.id), key=len, reverse=True)
        alternatives = "|".join(re.escape(i) for i in ids)
        patterns.append((re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])"), "a building id"))
    found: list[str] = []
    for line in text.splitlines():
        for pattern, what in patterns:
            found.extend(f'{what}: "{m.group(0)}" in "{line.strip()}"' for m in pattern.finditer(line))
    return found


class _Visible(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "head"):
            self._hidden += 1
        for name, value in attrs:
            if name in ("alt", "title") and value and tag != "html":
                self.parts.append(value)
        if tag in ("br", "p", "div", "tr", "td", "th", "li", "h1", "h2", "h3", "section", "header", "footer"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head"):
            self._hidden = max(0, self._hidden - 1)
        elif tag in ("td", "th", "p", "div", "tr"):
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def visible_text(page: str) -> str:
    """The text a browser shows of an HTML page (cells and paragraphs on lines of their own), with image alt texts."""
    parser = _Visible()
    parser.feed(page)
    parser.close()
    return re.sub(r"[ \t]*\n\s*", "\n", "".join(parser.parts)).strip()


def shown(text: str, label: str) -> tuple[float, float]:
    r"""The number after ``label`` (:func:`figure`) and the precision it is shown with (0.1 for one decimal).

    "< 0,01 m³" reads as (0.01, 0.01): a figure too small to show.

    >>> shown("Attendu : 4,2 m³", "Attendu"), shown("Observé : 23 m³", "Observé")
    ((4.2, 0.1), (23.0, 1.0))
    """
    match = re.search(re.escape(label) + r"\s*:?\s*<?\s*([−-]?\d[\d\u202f\xa0]*(?:,(\d+))?)", text)
    if match is None:
        msg = f"no {label!r} in {text!r}"
        raise AssertionError(msg)
    decimals = len(match.group(2) or "")
    value = float(match.group(1).replace("\u202f", "").replace("\xa0", "").replace(",", ".").replace("−", "-"))
    return value, 10.0**-decimals


def figure(text: str, label: str) -> float:
    r"""The number after ``label :`` in a French text, or after ``label`` on the line before (a table's cell).

    >>> figure("Observé\xa0: 1\u202f234,5\xa0m³", "Observé"), figure("Coût\n1\u202f852\xa0€", "Coût")
    (1234.5, 1852.0)
    """
    match = re.search(re.escape(label) + r"\s*:?\s*([−-]?\d[\d\u202f\xa0]*(?:,\d+)?)", text)
    if match is None:
        msg = f"no {label!r} in {text!r}"
        raise AssertionError(msg)
    return float(match.group(1).replace("\u202f", "").replace("\xa0", "").replace(",", ".").replace("−", "-"))


def pictures_module() -> ModuleType:
    """``docs/pictures.py`` (the README pictures' script, not a package), loaded once for the tests that use it."""
    name = "econome_docs_pictures"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "docs" / "pictures.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
