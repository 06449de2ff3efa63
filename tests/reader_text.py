"""What a reader of a mail or a report must never see: one list, for the content tests and the pictures test.

Advisors forward mails and reports to elected officials: module paths, rule
ids, the detector's score, English enum values, point ids and raw Python
values are internal names, not French. :func:`visible_text` keeps what a
browser shows of an HTML page (no style, script, attribute or ``data:`` URI,
but image ``alt`` texts); :func:`internal_names` lists what of it is forbidden.

    from ..reader_text import internal_names, visible_text
    assert not internal_names(visible_text(html), inventory)
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from inventory import BuildingUsage, Energy, Inventory, Usage

_ALSO_FRENCH = {"restaurant", "ventilation"}
"""Enum values that are French words too."""

FORBIDDEN: tuple[tuple[str, str], ...] = (
    (r"\banomalies\.|\brules\.|\bmodels?\.\w", "a module path"),
    (r"\bScore\b", "the detector's score"),
    (r"\b[a-z]+_[a-z_]+\b", "a snake_case name (rule id, enum value, model parameter)"),
    (r"\bm3\b", "m3 instead of m³"),
    (r"\d\.\d", "a decimal point instead of a comma"),
    (r"(?<![\w-])[-−]0(?:,0+)?(?![\d,])", "a negative zero"),
    (r"\b(?:nan|NaN|None|inf|True|False)\b", "a raw Python value"),
    (r"\b(?:daily|hourly|changepoint|towt)\b", "a model's internal name"),
    (
        # Not inside a dashed id (creche-water-volume): see internal_names on point ids.
        r"(?<![\w-])(?:"
        + "|".join(sorted({e.value for enum in (BuildingUsage, Usage, Energy) for e in enum} - _ALSO_FRENCH))
        + r")(?![\w-])",
        "an enum value (English)",
    ),
)
"""(regular expression, what it is) of each kind of internal name."""


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


def internal_names(text: str, inventory: Inventory | None = None) -> list[str]:
    """The internal names in a text a reader sees: ``'what: "match" in "line"'``, one per finding.

    With an inventory, its building ids that carry a dash (``gymnase-batum``; ``mairie`` is also a
    French word) are internal names too: a building has a name. Point ids are not: a mail about a
    sensor names the point the technician must find, by its id when it has no name.
    """
    patterns = list(FORBIDDEN)
    if inventory is not None:
        ids = {b.id for _, b in inventory.buildings() if "-" in b.id}
        patterns.append(("|".join(rf"\b{re.escape(i)}\b" for i in sorted(ids, key=len, reverse=True)), "an inventory id"))
    found: list[str] = []
    for line in text.splitlines():
        for pattern, what in patterns:
            found.extend(f'{what}: "{m.group(0)}" in "{line.strip()}"' for m in re.finditer(pattern, line))
    return found
