r"""What an advisor must never read in a French e-mail or report (issue 13): the checks the content tests share.

>>> problems("Observé\xa0: 2,4\xa0m³")
[]
>>> problems("Score : 1.00 (anomalies.rules.water_leak), usage town_hall, 2.4 m3, -0 %")[:3]
['internal name: anomalies.', 'internal name: rules.', 'internal name: Score']
"""

from __future__ import annotations

import html
import re

from anomalies.events import EventKind
from inventory import BuildingUsage, Energy, Usage

_INTERNAL = ["anomalies.", "rules.", "iforest", "Score", "usage ", "mv.savings", "daily-changepoint", "towt(", "terms="]
# Enum values an advisor could only read as code: those with an underscore, and the English words of usages.
_ENUMS = sorted(
    {e.value for e in (*EventKind, *BuildingUsage, *Energy, *Usage) if "_" in e.value}
    | {"heating", "lighting", "general", "water", "comfort", "electricity", "school", "nursery", "gymnasium", "library",
       "offices", "workshop", "occupied", "unoccupied", "hourly", "daily", "monthly"}
)  # fmt: skip
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("enum value", re.compile(r"(?<![\w.@/-])(?:" + "|".join(map(re.escape, _ENUMS)) + r")(?![\w@-])")),
    ("m3 instead of m³", re.compile(r"\bm3\b")),
    ("decimal point", re.compile(r"\d\.\d")),
    ("minus zero", re.compile(r"(?<![\w/-])[-−]0(?:,0*)?(?![\d,])")),
    ("hyphen for a minus sign", re.compile(r"(?<![\w/-])-\d")),
    ("breaking space before a unit", re.compile(r"\d (?:kWh|MWh|€|°C|m³|m²|%|kgCO|tCO|DJU|h\b)")),
    ("no thousands separator", re.compile(r"(?<![\w/:#.,-])(?!(?:19|20)\d\d(?!\d))\d{4,}(?![\d/:])")),
    ("no space before °C", re.compile(r"\d°C")),
]


def problems(text: str) -> list[str]:
    """The defects of a French text: internal names, English enum values, wrong typography."""
    found = [f"internal name: {name}" for name in _INTERNAL if name in text]
    for label, pattern in _PATTERNS:
        found += [f"{label}: {text[max(0, m.start() - 30) : m.end() + 30]!r}" for m in pattern.finditer(text)]
    return found


def visible_text(page: str) -> str:
    """What a reader sees of an HTML page: no style sheet, no tags, no embedded images, entities decoded."""
    page = re.sub(r"<style>.*?</style>", " ", page, flags=re.DOTALL)
    page = re.sub(r"<title>.*?</title>", " ", page, flags=re.DOTALL)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def figure(text: str, label: str) -> float:
    r"""The number after ``label :`` in a French text ("Observé\xa0: 1\u202f234,5\xa0m³" → 1234.5).

    >>> figure("Observé\xa0: 1\u202f234,5\xa0m³", "Observé")
    1234.5
    """
    match = re.search(re.escape(label) + r"\s*:\s*([−-]?[\d\u202f\xa0]+(?:,\d+)?)", text)
    if match is None:
        msg = f"no {label!r} in {text!r}"
        raise AssertionError(msg)
    return float(match.group(1).replace("\u202f", "").replace("\xa0", "").replace(",", ".").replace("−", "-"))
