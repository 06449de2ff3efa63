"""The value axis of a mail's chart writes every tick exactly, in the reader's typography (issue 13 review)."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from anomalies.alerts import _local_numbers


def _labels(ticks: list[float], language: str) -> list[str]:
    fig = Figure()
    ax = fig.add_subplot()
    ax.set_ylim(min(ticks), max(ticks))
    ax.set_yticks(ticks)
    _local_numbers(ax, language)  # type: ignore[arg-type]
    formatter = ax.yaxis.get_major_formatter()
    return [formatter(t, i) for i, t in enumerate(ax.get_yticks())]


@pytest.mark.parametrize(
    ("ticks", "language", "expected"),
    [
        # The leak chart of the review: 0.025 steps were written "0,02 0,05 0,08" (rounded to 2 decimals).
        ([0.0, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15], "fr", ["0,000", "0,025", "0,050", "0,075", "0,100", "0,125", "0,150"]),
        ([0.0, 0.5, 1.0, 1.5], "fr", ["0,0", "0,5", "1,0", "1,5"]),
        ([0.0, 2.5, 5.0, 7.5], "fr", ["0,0", "2,5", "5,0", "7,5"]),
        ([0.0, 1000.0, 2000.0, 3000.0], "fr", ["0", "1\u202f000", "2\u202f000", "3\u202f000"]),
        ([0.0, 0.025, 0.05], "en", ["0.000", "0.025", "0.050"]),
        ([0.0, 1000.0, 2000.0], "en", ["0", "1,000", "2,000"]),
        ([0.0, 0.2, 0.4], "fr", ["0,0", "0,2", "0,4"]),
    ],
)
def test_every_tick_is_written_exactly(ticks: list[float], language: str, expected: list[str]) -> None:
    labels = _labels(ticks, language)
    assert labels == expected
    # What the reader sees is the tick's value: read back, each label is its tick.
    for label, tick in zip(labels, ticks, strict=True):
        text = label.replace("\u202f", "").replace(",", "." if language == "fr" else "")
        assert float(text) == pytest.approx(tick)
