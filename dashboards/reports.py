"""HTML reports for the économe de flux and the elected officials, with embedded charts.

Three reports, each a single self-contained HTML page (charts are matplotlib
PNGs embedded in base64, the CSS has an A4 print layout with page numbers:
:func:`dashboards.pdf.report_pdf` prints it to PDF, as a browser would):

* :func:`building_month_report`: a building's month, per energy, against the
  same month of the year before, corrected by degree days (DJU).
* :func:`renovation_report`: the follow-up of a renovation: "what we would
  have consumed" against what was metered, savings by month against the
  promise, the Guideline 14 statistics and the performance-gap alert.
* :func:`portfolio_report`: the annual portfolio report with the ADEME/CEP
  indicators (kWh, kWh/m², €, €/inhabitant, kgCO2e, avoided €) and the
  cost of inaction to 2030.

Reports are written in French, for their readers. ``econome report ...``
(:mod:`econome.cli_mv`) writes them from CSV files.

>>> from datetime import date
>>> html = render_page("Essai", "<p>corps</p>")
>>> html.startswith("<!DOCTYPE html>") and "@page" in html
True
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from dashboards.operat import FROM_INVOICES, SUBJECT_AREA_M2, TRAJECTORY
from inventory import Building, Energy, Inventory, Renovation
from mv.baseline import G14_LIMITS, FitStats, Resolution
from mv.degreedays import DegreeDay, monthly_degree_days
from mv.savings import PerformanceGapAlert, SavingsReport, cost_of_inaction
from streams.display import amount, building_usage_label, number, percent, quantity, shared_digits
from streams.errors import InsufficientData

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "ENERGY_LABELS",
    "BuildingYear",
    "EnergySeries",
    "YearlyConsumption",
    "building_month_report",
    "figure_png",
    "model_text",
    "portfolio_report",
    "render_page",
    "renovation_report",
]

FloatArray = npt.NDArray[np.float64]

ENERGY_LABELS: dict[Energy, str] = {
    Energy.ELECTRICITY: "Électricité",
    Energy.NATURAL_GAS: "Gaz naturel",
    Energy.HEATING_NETWORK: "Réseau de chaleur",
    Energy.FUEL_OIL: "Fioul",
    Energy.WOOD_PELLETS: "Granulés bois",
    Energy.WATER: "Eau",
}
_COLORS: dict[Energy, str] = {
    Energy.ELECTRICITY: "#f2a900",
    Energy.NATURAL_GAS: "#2f6db5",
    Energy.HEATING_NETWORK: "#c0392b",
    Energy.FUEL_OIL: "#6d4c41",
    Energy.WOOD_PELLETS: "#558b2f",
    Energy.WATER: "#00acc1",
}
_MONTHS = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
]

_CSS = """
@page { size: A4; margin: 14mm 14mm 16mm;
        @bottom-right { content: "page " counter(page) " sur " counter(pages); font: 8pt "DejaVu Sans", sans-serif;
                        color: #8a949e; } }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", Arial, sans-serif; color: #1d2733; margin: 0 auto; max-width: 960px;
       padding: 18px; font-size: 13px; }
header { border-bottom: 3px solid #2f6db5; margin-bottom: 14px; padding-bottom: 6px; }
header h1 { font-size: 22px; margin: 0 0 4px 0; }
header p { margin: 0; color: #56616d; }
h2 { font-size: 16px; margin: 18px 0 8px; color: #2f6db5; }
.kpis { display: flex; flex-wrap: wrap; gap: 8px; }
.kpi { flex: 1 1 140px; border: 1px solid #d5dbe2; border-radius: 6px; padding: 8px 10px; background: #f7f9fb; }
.kpi .v { font-size: 19px; font-weight: bold; }
.kpi .l { color: #56616d; font-size: 11px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0; }
th, td { border-bottom: 1px solid #e1e6eb; padding: 4px 6px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #eef2f6; font-size: 12px; }
tr.total td { font-weight: bold; border-top: 2px solid #1d2733; }
.verdict { border-radius: 6px; padding: 10px 12px; margin: 8px 0; font-size: 14px; }
.ok { background: #e6f4ea; border-left: 6px solid #2e7d32; }
.warn { background: #fff4e0; border-left: 6px solid #ef8f00; }
.bad { background: #fdecea; border-left: 6px solid #c62828; }
.note { color: #56616d; font-size: 11px; }
img.chart { width: 100%; margin: 4px 0; }
footer { margin-top: 18px; color: #8a949e; font-size: 10px; border-top: 1px solid #d5dbe2; padding-top: 4px; }
@media print {
  body { max-width: none; padding: 0; font-size: 9.5pt; }
  header h1 { font-size: 16pt; }
  h2 { font-size: 12pt; break-after: avoid; }
  .kpi .v { font-size: 13pt; }
  table { font-size: 8pt; }
  th { font-size: 7.5pt; }
  th, td { padding: 3px 4px; }
  /* A long section (a table of many buildings) runs onto the next page; a row, a chart, a KPI box does not. */
  thead { display: table-header-group; }
  tr, img.chart, .kpi, .kpis, .verdict, header, footer { break-inside: avoid; }
  img.chart { width: 100%; height: auto; max-height: 120mm; object-fit: contain; }
}
"""


@dataclass(frozen=True, slots=True, eq=False)
class EnergySeries:
    """Daily consumption of one energy of a building.

    Attributes:
        energy: the energy (water in m3, the others in kWh of final energy).
        days: the days, increasing.
        values: consumption of each day (NaN when unknown).
    """

    energy: Energy
    days: tuple[date, ...]
    values: FloatArray

    def total(self, start: date, end: date) -> tuple[float, int]:
        """Sum from ``start`` included to ``end`` excluded, and the number of days missing."""
        total = 0.0
        missing = (end - start).days
        for day, value in zip(self.days, self.values.tolist(), strict=True):
            if start <= day < end and not math.isnan(value):
                total += value
                missing -= 1
        return total, missing


@dataclass(frozen=True, slots=True)
class BuildingYear:
    """One building's year, for the portfolio report.

    Attributes:
        building: the building.
        by_energy: consumption per energy (kWh, water in m3).
        missing_days: days without data, over all energies.
        avoided_kwh: savings measured on its renovations over the year, per energy.
        subject: whether the Décret tertiaire applies to it (decided per site, see
            :func:`dashboards.operat.subject_buildings`).
        reference_kwh: its final energy of the reference year, when known.
        invoiced: the energies whose figures come from the invoices.
    """

    building: Building
    by_energy: dict[Energy, float]
    missing_days: int = 0
    avoided_kwh: tuple[tuple[Energy, float], ...] = ()
    subject: bool = False
    reference_kwh: float | None = None
    invoiced: frozenset[Energy] = frozenset()
    """The energies whose figures come from the invoices, not the meters (marked ᶠ)."""
    billed_eur: tuple[tuple[Energy, float], ...] = ()
    """The bills' amounts (€) of the energies from the invoices whose bills all give one: the cost of those."""

    def cost_eur(self, inventory: Inventory, *, water: bool = True) -> float:
        """The year's cost: the bills' amounts where given, else consumption × the inventory's tariff."""
        billed = dict(self.billed_eur)
        return sum(billed[e] if e in billed else v * inventory.tariff(e).price_eur_per_unit
                   for e, v in self.by_energy.items() if water or e is not Energy.WATER)


_BILLED = "\u1da0"
"""Mark of a figure from the invoices."""


@dataclass(frozen=True, slots=True)
class YearlyConsumption:
    """One building's energy over the calendar years, for the portfolio's yearly follow-up.

    Attributes:
        building: the building.
        energy: the energy (water in m3, the others in kWh).
        years: per year, the consumption, its source (``compteurs`` or ``factures``) and
            whether the year is complete.
    """

    building: Building
    energy: Energy
    years: dict[int, tuple[float, str, bool]]


def yearly_section(rows: Sequence[YearlyConsumption], first: int, last: int) -> str:
    """The yearly follow-up table: per building and energy, each calendar year's consumption and its source.

    A figure from invoices is marked ᶠ, an incomplete year *.
    """
    years = range(first, last + 1)
    head = "".join(f"<th>{y}</th>" for y in years)
    body = []
    for r in rows:
        unit = "m³" if r.energy is Energy.WATER else "kWh"
        cells = []
        for y in years:
            if y not in r.years:
                cells.append("<td>—</td>")
                continue
            value, source, complete = r.years[y]
            mark = (_BILLED if source == FROM_INVOICES else "") + ("" if complete else " *")
            cells.append(f"<td>{_num(value)}{mark}</td>")
        body.append(f"<tr><td>{html.escape(r.building.name)}</td><td>{ENERGY_LABELS[r.energy]} ({unit})</td>"
                    + "".join(cells) + "</tr>")
    return (
        "<section><h2>Suivi pluriannuel</h2>"
        f"<table><thead><tr><th>Bâtiment</th><th>Énergie</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        '<p class="note">ᶠ\u00a0: d\'après les factures (chaque facture répartie sur les années au prorata de ses '
        "jours), là où les compteurs ne couvrent pas l'année ; sinon d'après les compteurs. "
        "*\u00a0: année incomplète (des jours sans donnée ni facture).</p></section>"
    )


def figure_png(fig: Figure) -> str:
    """Render a figure to a base64 PNG ``<img>`` tag, its numeric axes in French typography ("2,5", "1 000")."""
    _french_axes(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="chart" alt="graphique" src="data:image/png;base64,{data}">'


def _french_axes(fig: Figure) -> None:
    # Imported here: matplotlib costs half a second, and most commands draw nothing.
    from matplotlib.axis import Axis
    from matplotlib.ticker import FuncFormatter, ScalarFormatter

    def formatter(axis: Axis) -> FuncFormatter:
        def text(value: float, _: int | None) -> str:
            ticks = np.asarray(axis.get_majorticklocs(), dtype=np.float64)
            step = float(np.min(np.abs(np.diff(ticks)))) if ticks.size > 1 else 1.0
            return _num(value, max(0, math.ceil(-math.log10(step))) if 0 < step < 1 else 0)

        return FuncFormatter(text)

    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            # Numbers only: dates and category labels keep their own formatter.
            if type(axis.get_major_formatter()) is ScalarFormatter:
                axis.set_major_formatter(formatter(axis))


def render_page(title: str, body: str, subtitle: str = "") -> str:
    """A complete printable HTML page.

    Args:
        title: page title and heading (escaped here).
        body: the HTML body, already escaped.
        subtitle: a line under the title (escaped here).

    Returns:
        The HTML document.
    """
    esc = html.escape
    return (
        '<!DOCTYPE html>\n<html lang="fr"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>{body}"
        "<footer>Econome\u00a0: mesure et vérification des économies d'énergie (méthode ASHRAE Guideline 14, "
        "DJU base 18\u00a0°C méthode Météo-France). Rapport généré automatiquement.</footer></body></html>\n"
    )


def _num(value: float, decimals: int = 0) -> str:
    """French number formatting (:func:`streams.display.number`); "—" when unknown."""
    return number(value, decimals, "fr")


def _pct(value: float, decimals: int = 0, *, signed: bool = False) -> str:
    return percent(value, decimals, "fr", signed=signed)


def _q(value: float, unit: str, decimals: int = 0) -> str:
    """A number and its unit, French typography (:func:`streams.display.quantity`)."""
    return "—" if not math.isfinite(value) else quantity(value, unit, decimals, "fr")


def _amount(value: float, unit: str, digits: int | None = None) -> str:
    """A consumption or cost (:func:`streams.display.amount`): under 10 a decimal, "< 1 €"; "—" when unknown."""
    return "—" if not math.isfinite(value) else amount(value, unit, "fr", digits)


def _kpi(value: str, label: str) -> str:
    return f'<div class="kpi"><div class="v">{html.escape(value)}</div><div class="l">{html.escape(label)}</div></div>'


def _month_bounds(year: int, month: int) -> tuple[date, date]:
    return date(year, month, 1), date(year + (month == 12), month % 12 + 1, 1)


def _unit(energy: Energy) -> str:
    return "m³" if energy is Energy.WATER else "kWh"


def building_month_report(
    inventory: Inventory,
    building: Building,
    year: int,
    month: int,
    series: Sequence[EnergySeries],
    degree_days: Sequence[DegreeDay],
    temperature_c: dict[date, float] | None = None,
) -> str:
    """The monthly report of one building.

    A month partly without data says, per energy, how many of its days were
    metered; its change against the year before is not computed on a part of a month.

    Args:
        inventory: gives tariffs and the commune's name.
        building: the building.
        year: year of the month.
        month: the month (1-12).
        series: daily consumption per energy, covering the month and, for the
            comparison, the same month a year before.
        degree_days: daily DJU over the same span.
        temperature_c: daily mean outdoor temperature, for the chart.

    Returns:
        The HTML page.

    Raises:
        InsufficientData: no energy has a single day of data in the month ("0 kWh, 0 €" would be a lie).
    """
    start, end = _month_bounds(year, month)
    prev_start, prev_end = _month_bounds(year - 1, month)
    n_days = (end - start).days
    covered = [s for s in series if s.total(start, end)[1] < n_days]
    if not covered:
        msg = f"building {building.id}: no consumption data in {year}-{month:02d} (no day of any meter in that month)"
        raise InsufficientData([msg])
    dju = monthly_degree_days(degree_days)
    hdd_now, _, gaps_now = dju.get((year, month), (math.nan, math.nan, 0))
    hdd_prev, _, _ = dju.get((year - 1, month), (math.nan, math.nan, 0))
    # A month under way is compared with the same days of the year before, not with a whole month.
    dju_days = {d.day.day for d in degree_days if (d.day.year, d.day.month) == (year, month) and not d.gap}
    same_days_prev = sum(d.hdd for d in degree_days
                         if (d.day.year, d.day.month) == (year - 1, month) and not d.gap and d.day.day in dju_days)
    if len(dju_days) < n_days and dju_days:
        dju_label = f"base 18\u00a0°C, sur {len(dju_days)}\u00a0jours ({_num(same_days_prev)} les mêmes jours de {year - 1})"
    else:
        dju_label = f"base 18\u00a0°C ({_num(hdd_prev)} en {year - 1})"
    rows = []
    partial: list[str] = []
    corrected_days: list[str] = []
    figures: list[tuple[Energy, float, float, float, float, float, float, int]] = []
    total_kwh = total_eur = total_co2 = 0.0
    for s in covered:
        tariff = inventory.tariff(s.energy)
        now, missing = s.total(start, end)
        before, missing_before = s.total(prev_start, prev_end)
        # A change is only meaningful between two whole months.
        comparable = missing == 0 and missing_before == 0 and before > 0
        change = (now - before) / before if comparable else math.nan
        # Only the weather-dependent share should be corrected; without a model we
        # correct all of it for heating energies and nothing for electricity and water.
        corrected = math.nan
        if comparable and s.energy not in (Energy.ELECTRICITY, Energy.WATER):
            # On the days of the month that have consumption and DJU in both years: 31 days of gas over
            # 30 days of DJU (the last day's temperature missing) flipped the sign (review round 2).
            corrected, n_corrected = _climate_corrected(s, degree_days, year, month)
            if 0 < n_corrected < n_days:
                corrected_days.append(f"{ENERGY_LABELS[s.energy].lower()} sur {n_corrected}\u00a0jours")
        eur = now * tariff.price_eur_per_unit
        co2 = now * tariff.emission_kgco2e_per_unit
        if s.energy is not Energy.WATER:
            total_kwh += now
        total_eur += eur
        total_co2 += co2
        if missing:
            partial.append(f"{ENERGY_LABELS[s.energy].lower()}\u00a0: {n_days - missing} jours mesurés sur {n_days}")
        prev_days = (prev_end - prev_start).days
        if 0 < missing_before < prev_days:
            measured = prev_days - missing_before
            partial.append(f"{ENERGY_LABELS[s.energy].lower()} en {year - 1}\u00a0: {measured} jours mesurés sur {prev_days}")
        before_shown = before if missing_before < prev_days else math.nan
        figures.append((s.energy, now, before_shown, change, corrected, eur, co2, missing))
    # The figures of a column and their total take one precision, so that they add up (review round 2).
    kwh = [f[1] for f in figures if f[0] is not Energy.WATER]
    digits = {"kWh": shared_digits([*kwh, total_kwh], "kWh"),
              "kWh_before": shared_digits([f[2] for f in figures if f[0] is not Energy.WATER], "kWh"),
              "m3": shared_digits([f[1] for f in figures if f[0] is Energy.WATER], "m3"),
              "m3_before": shared_digits([f[2] for f in figures if f[0] is Energy.WATER], "m3"),
              "kgCO2e": shared_digits([*(f[6] for f in figures), total_co2], "kgCO2e")}
    for energy, now, before, change, corrected, eur, co2, missing in figures:
        unit = "m3" if energy is Energy.WATER else "kWh"
        rows.append(
            f"<tr><td>{ENERGY_LABELS[energy]}</td><td>{_amount(now, unit, digits[unit])}</td>"
            f"<td>{_amount(before, unit, digits[unit + '_before'])}</td><td>{_pct(change, signed=True)}</td>"
            f"<td>{_pct(corrected, signed=True)}</td><td>{_amount(eur, '€')}</td>"
            f"<td>{_num(co2, digits['kgCO2e'])}</td><td>{n_days - missing}/{n_days}</td></tr>"
        )
    month_name = f"{_MONTHS[month - 1]} {year}"
    kpis = "".join(
        [
            _kpi(_amount(total_kwh, "kWh", digits["kWh"]), "énergie finale du mois"),
            _kpi(_q(total_kwh / building.heated_area_m2, "kWh/m2", 1), "par m² chauffé"),
            _kpi(_amount(total_eur, "€"), "coût TTC estimé (énergie + eau)"),
            _kpi(_amount(total_co2, "kgCO2e", digits["kgCO2e"]), "émissions"),
            _kpi(_q(hdd_now, "DJU"), dju_label),
        ]
    )
    gap_note = f" {gaps_now}\u00a0jour(s) sans température\u00a0: DJU incomplets." if gaps_now else ""
    if corrected_days:
        gap_note += (" Écart corrigé calculé sur les seuls jours ayant consommation et DJU les deux années\u00a0: "
                     + ", ".join(corrected_days) + ".")
    # An energy of the building that no meter gives this month is out of the totals: say so, or "énergie
    # finale du mois" reads as the building's (a school heated by fuel oil known from its bills only).
    counted = {s.energy for s in covered}
    metered = {p.energy for p in building.points if p.energy is not None and p.cumulative}
    billed = {account.energy for account in building.invoices}
    absent = [f"{ENERGY_LABELS[e].lower()} ("
              + ("aucune donnée de compteur ce mois" if e in metered else "connu par les factures seulement") + ")"
              for e in Energy if e in (metered | billed) - counted]
    coverage = ""
    if absent:
        coverage += ('<div class="verdict warn">Hors de ce rapport\u00a0: ' + html.escape(", ".join(absent))
                     + ".</div>")
    if partial:
        coverage += (
            '<div class="verdict warn">Données incomplètes\u00a0: les totaux ne comptent que les jours mesurés ('
            + html.escape("\u202f; ".join(partial))
            + ")\u00a0; l'écart à l'année précédente n'est pas calculé sur un mois partiel.</div>"
        )
    table = (
        "<table><thead><tr><th>Énergie</th><th>Ce mois</th><th>Même mois N-1</th><th>Écart brut</th>"
        "<th>Écart corrigé du climat</th><th>Coût</th><th>kgCO₂e</th><th>Jours mesurés</th></tr></thead>"
        "<tbody>" + "".join(rows) + "</tbody></table>"
    )
    chart = figure_png(_daily_chart(covered, start, end, temperature_c or {}))
    body = (
        f'{coverage}<section><div class="kpis">{kpis}</div></section>'
        f"<section><h2>Consommations par énergie</h2>{table}"
        f'<p class="note">Écart corrigé du climat\u00a0: consommation par DJU comparée à celle du même mois de '
        f"l'année précédente (énergies de chauffage seulement).{gap_note}</p></section>"
        f"<section><h2>Consommation journalière et température extérieure</h2>{chart}</section>"
    )
    org = inventory.organisation
    usage = building_usage_label(building.usage.value, "fr")
    subtitle = f"{org.name} · {_q(building.heated_area_m2, 'm2')} chauffés · {usage[:1].upper()}{usage[1:]}"
    return render_page(f"{building.name} — rapport de {month_name}", body, subtitle)


def _climate_corrected(
    series: EnergySeries, degree_days: Sequence[DegreeDay], year: int, month: int
) -> tuple[float, int]:
    """The change of consumption per DJU against the same month a year before, and the days it is computed on.

    Only the days of the month (the same day numbers in both years) with consumption and DJU in
    both years count, so that both ratios divide the same days' consumption by the same days' DJU.
    """
    hdd = {d.day: d.hdd for d in degree_days if not d.gap and math.isfinite(d.hdd)}
    used = {d: v for d, v in zip(series.days, series.values.tolist(), strict=True) if math.isfinite(v)}
    start, end = _month_bounds(year, month)
    sums = [0.0, 0.0, 0.0, 0.0]  # consumption now, DJU now, consumption before, DJU before
    count = 0
    for offset in range((end - start).days):
        day = start + timedelta(days=offset)
        try:
            before = day.replace(year=year - 1)
        except ValueError:  # 29 February
            continue
        if day in used and day in hdd and before in used and before in hdd:
            sums[0] += used[day]
            sums[1] += hdd[day]
            sums[2] += used[before]
            sums[3] += hdd[before]
            count += 1
    if not (count and sums[1] > 0 and sums[2] > 0 and sums[3] > 0):
        return math.nan, count
    return (sums[0] / sums[1]) / (sums[2] / sums[3]) - 1, count


def _daily_chart(series: Sequence[EnergySeries], start: date, end: date, temperature_c: dict[date, float]) -> Figure:
    # Imported here: matplotlib costs half a second, and most commands draw nothing.
    from matplotlib.figure import Figure
    fig = Figure(figsize=(9, 3.4))
    ax = fig.add_subplot()
    days = [start + timedelta(days=i) for i in range((end - start).days)]
    x = np.array(days, dtype="datetime64[D]")
    bottom = np.zeros(len(days))
    for s in series:
        if s.energy is Energy.WATER:
            continue
        index = {d: v for d, v in zip(s.days, s.values.tolist(), strict=True)}
        vals = np.array([index.get(d, math.nan) for d in days])
        vals = np.nan_to_num(vals)
        ax.bar(x, vals, bottom=bottom, color=_COLORS[s.energy], label=ENERGY_LABELS[s.energy], width=0.8)
        bottom += vals
    ax.set_ylabel("kWh / jour")
    ax.grid(axis="y", alpha=0.3)
    if temperature_c:
        ax2 = ax.twinx()
        ax2.plot(x, [temperature_c.get(d, math.nan) for d in days], color="#444", marker=".", lw=1.2, label="T ext.")
        ax2.set_ylabel("°C")
        ax2.legend(loc="upper right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    return fig


def renovation_report(
    inventory: Inventory,
    building: Building,
    renovation: Renovation,
    energy: Energy,
    report: SavingsReport,
    alert: PerformanceGapAlert | None,
    baseline_points: tuple[FloatArray, FloatArray] | None = None,
    reporting_points: tuple[FloatArray, FloatArray] | None = None,
) -> str:
    """The follow-up report of a renovation.

    Args:
        inventory: gives tariffs and the commune's name.
        building: the renovated building.
        renovation: the works and their promise.
        energy: the energy of the analysed meter.
        report: savings since the works (from :func:`mv.savings.avoided_consumption`).
        alert: the performance-gap alert, if any.
        baseline_points: (daily mean temperature, daily energy) of the reference
            period, for the signature chart.
        reporting_points: the same for the reporting period.

    Returns:
        The HTML page.
    """
    tariff = inventory.tariff(energy)
    total = report.total
    promised = renovation.promised_savings_pct / 100
    frac, unc = total.savings_fraction, total.savings_uncertainty_fraction
    conf = _pct(total.confidence)
    measured = f"{_pct(frac, 1)} ± {_pct(unc, 1)}"
    if not total.significant:
        css, verdict = "warn", f"Pas d'économie démontrable\u00a0: {measured} ({conf} de confiance)."
    elif frac >= promised:
        css, verdict = "ok", f"Économies mesurées\u00a0: {measured} — la promesse de {_pct(promised)} est tenue."
    elif frac + unc >= promised:
        css, verdict = "ok", (
            f"Économies mesurées\u00a0: {measured} — compatibles avec la promesse de {_pct(promised)}, "
            "dans la marge d'incertitude."
        )
    else:
        css, verdict = "bad", f"Économies mesurées\u00a0: {measured}, en deçà des {_pct(promised)} promis."
    g14_verdict = _g14_verdict(report)
    if not report.g14_compliant:
        # Said at the top, not only in the method table: a figure that G14 does not back is indicative.
        why = g14_verdict.removeprefix("non conforme, ")
        verdict += f" Résultat indicatif, non conforme à l'ASHRAE Guideline 14\u00a0: {why}."
        css = "bad" if css == "bad" else "warn"
    valued = report.valued(tariff)
    kpis = "".join(
        [
            _kpi(f"{_num(total.savings_kwh)} ± {_q(total.uncertainty_kwh, 'kWh')}", "consommation évitée"),
            _kpi(_q(valued["savings_eur"], "€"), "dépense évitée (TTC)"),
            _kpi(_q(valued["savings_kgco2e"] / 1000, "tCO2e", 1), "émissions évitées"),
            _kpi(f"{_pct(frac, 1)}", f"économie mesurée (promis {_pct(promised)})"),
        ]
    )
    alert_html = ""
    if alert is not None:
        alert_html = f'<div class="verdict bad"><b>Alerte écart de performance.</b> {html.escape(_gap_text(alert))}</div>'
    stats = report.stats
    lines = _g14_lines(stats, "")
    if report.monthly_stats is not None:
        lines += _g14_lines(report.monthly_stats, " des sommes mensuelles")
    method = (
        "<table>"
        f"<tr><td>Modèle de référence</td><td>{html.escape(model_text(report.model))}</td></tr>"
        f"<tr><td>Période de référence</td><td>{_num(stats.n)} {_RESOLUTION_UNITS[stats.resolution]}</td></tr>"
        + "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in lines)
        + f"<tr><td>R²</td><td>{_num(stats.r2, 3)}</td></tr>"
        f"<tr><td>Période de suivi</td><td>{total.start:%d/%m/%Y} — {total.end - timedelta(days=1):%d/%m/%Y} "
        f"({_num(total.points)} {_RESOLUTION_UNITS[stats.resolution]})</td></tr>"
        f"<tr><td>Consommation de référence ajustée</td><td>{_q(total.adjusted_baseline_kwh, 'kWh')}</td></tr>"
        f"<tr><td>Consommation mesurée</td><td>{_q(total.actual_kwh, 'kWh')}</td></tr>"
        f"<tr><td>Critère ASHRAE Guideline 14</td><td>{html.escape(g14_verdict)}</td></tr>"
        "</table>"
    )
    charts = figure_png(_cumulative_chart(report)) + figure_png(_monthly_savings_chart(report, promised))
    signature = ""
    if baseline_points is not None and reporting_points is not None:
        signature = (
            "<section><h2>Signature énergétique : avant et après travaux</h2>"
            + figure_png(_signature_chart(baseline_points, reporting_points, renovation.date))
            + "</section>"
        )
    body = (
        f'<div class="verdict {css}">{html.escape(verdict)}</div>{alert_html}'
        f'<section><div class="kpis">{kpis}</div></section>'
        f"<section><h2>Ce que nous aurions consommé sans les travaux</h2>{charts}"
        '<p class="note">La consommation de référence ajustée est le modèle de la période de référence appliqué '
        "à la météo réelle de la période de suivi\u00a0: l'hiver doux ou rigoureux est ainsi neutralisé. La bande grise "
        f"est l'incertitude à {conf} de confiance (ASHRAE Guideline 14).</p></section>"
        f"{signature}<section><h2>Méthode et qualité du modèle</h2>{method}</section>"
    )
    subtitle = (
        f"{inventory.organisation.name} · {renovation.description} · travaux du {renovation.date:%d/%m/%Y} · "
        f"compteur {ENERGY_LABELS[energy].lower()}"
    )
    return render_page(f"{building.name} — suivi de rénovation", body, subtitle)


_RESOLUTION_UNITS = {Resolution.DAILY: "jours", Resolution.HOURLY: "heures", Resolution.MONTHLY: "mois"}


def _g14_lines(stats: FitStats, of: str) -> list[tuple[str, str]]:
    """CV(RMSE) and NMBE, each with its limit and whether it is within it, so no figure contradicts the verdict."""
    max_cv, max_nmbe = G14_LIMITS[stats.resolution]

    def within(ok: bool) -> str:
        return "dans la limite" if ok else "au-delà de la limite"

    return [
        (f"CV(RMSE){of}", f"{_pct(stats.cvrmse, 1)} — {within(stats.cvrmse <= max_cv)} de {_pct(max_cv)}"),
        (f"NMBE{of}", f"{_pct(stats.nmbe, 2, signed=True)} — {within(abs(stats.nmbe) <= max_nmbe)} de ± {_pct(max_nmbe)}"),
    ]


def _g14_verdict(report: SavingsReport) -> str:
    """"conforme" exactly when the report is Guideline 14 compliant, and why not otherwise."""
    stats = report.stats
    max_cv, max_nmbe = G14_LIMITS[stats.resolution]
    daily_ok = stats.cvrmse <= max_cv and abs(stats.nmbe) <= max_nmbe
    if report.g14_compliant:
        if daily_ok:
            return "conforme"
        return "conforme sur les sommes mensuelles (les jours, plus dispersés, dépassent leurs limites)"
    if not report.g14_model_ok:
        return "non conforme, le modèle de référence dépasse les limites de CV(RMSE) ou de NMBE"
    if report.total.savings_kwh <= 0:
        return "non conforme, aucune économie mesurée"
    return "non conforme, incertitude supérieure à 50\u00a0% des économies (à 68\u00a0% de confiance)"


def model_text(model: str) -> str:
    r"""A baseline's description (``describe()`` of :mod:`mv.baseline`) in plain French.

    >>> model_text("daily-changepoint(terms=hdd, split=intercept, heating_balance=15.5C)")
    "modèle journalier en fonction des degrés-jours de chauffage (base 15,5\xa0°C), distinguant les jours d'occupation"
    >>> model_text("towt(knots=5,10,15,20,25C)")
    "modèle horaire selon l'heure de la semaine et la température extérieure"
    """
    name, _, rest = model.partition("(")
    params = dict(part.strip().split("=", 1) for part in rest.rstrip(")").split(",") if "=" in part)
    if name == "towt":
        return "modèle horaire selon l'heure de la semaine et la température extérieure"
    if name != "daily-changepoint":
        return "modèle de référence"
    terms = []
    for key, what in (("heating_balance", "de chauffage"), ("cooling_balance", "de climatisation")):
        if key in params:
            base = quantity(float(params[key].rstrip("C")), "degC", 1 if "." in params[key] else 0)
            terms.append(f"{what} (base {base})")
    text = "modèle journalier " + (
        "en fonction des degrés-jours " + " et ".join(terms) if terms else "à consommation constante"
    )
    split = params.get("split", "none")
    if split == "intercept":
        text += ", distinguant les jours d'occupation"
    elif split == "intercept+heating":
        text += ", distinguant les jours d'occupation (talon et chauffage)"
    return text


def _gap_text(alert: PerformanceGapAlert) -> str:
    """The performance-gap alert in French, from its data (its description is the English log line)."""
    data = alert.data
    months = ", ".join(f"{m[5:]}/{m[:4]}" for m in data.get("months", []))
    return (
        f"Économies de {_pct(float(data['measured_fraction']))} sur les derniers mois jugés ({months}), "
        f"en deçà des {_pct(float(data['promised_fraction']))} promis."
    )


def _cumulative_chart(report: SavingsReport) -> Figure:
    # Imported here: matplotlib costs half a second, and most commands draw nothing.
    from matplotlib.figure import Figure
    base, actual = report.cumulative()
    days = np.array(report.days, dtype="datetime64[D]")
    fig = Figure(figsize=(9, 3.4))
    ax = fig.add_subplot()
    # The uncertainty of a running total grows like the one of the whole period.
    frac = report.total.savings_uncertainty_fraction
    ax.plot(days, base / 1000, color="#c62828", lw=2, label="Ce que nous aurions consommé (référence ajustée)")
    ax.plot(days, actual / 1000, color="#2e7d32", lw=2, label="Consommation réelle")
    ax.fill_between(days, base * (1 - frac) / 1000, base * (1 + frac) / 1000, color="#bbb", alpha=0.5, lw=0)
    ax.set_ylabel("MWh cumulés")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    return fig


def _monthly_savings_chart(report: SavingsReport, promised: float) -> Figure:
    # Imported here: matplotlib costs half a second, and most commands draw nothing.
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    fig = Figure(figsize=(9, 2.8))
    ax = fig.add_subplot()
    months = report.monthly
    mean_base = float(np.mean([m.adjusted_baseline_kwh for m in months])) if months else 0.0
    labels = [f"{m.start:%m/%y}" for m in months]
    fracs = [100 * m.savings_fraction for m in months]
    errs = [100 * m.savings_uncertainty_fraction for m in months]
    # Months with little consumption (summer for heating) give meaningless percentages:
    # drawn in grey and clipped, as the performance-gap alert ignores them too.
    judged = [m.adjusted_baseline_kwh >= 0.5 * mean_base for m in months]
    colors = ["#2f6db5" if j else "#c9ced4" for j in judged]
    top = max(100 * promised + 30, *(f + e for f, e, j in zip(fracs, errs, judged, strict=True) if j), 0.0)
    low = min(-30.0, *(f - e for f, e, j in zip(fracs, errs, judged, strict=True) if j))
    shown = [min(max(f, low), top) for f in fracs]
    ax.bar(labels, shown, yerr=[e if j else 0 for e, j in zip(errs, judged, strict=True)], color=colors, capsize=3)
    promise = ax.axhline(100 * promised, color="#ef8f00", ls="--", lw=2, label=f"Promesse ({_pct(promised)})")
    ax.axhline(0, color="#1d2733", lw=0.8)
    handles = [
        promise,
        Patch(color="#2f6db5", label="Économie mensuelle mesurée"),
        Patch(color="#c9ced4", label="Mois de faible consommation (non jugé)"),
    ]
    ax.set_ylabel("% de la référence")
    ax.set_ylim(low, top)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3, fontsize=8, frameon=False)
    ax.tick_params(axis="x", labelsize=7, rotation=45)
    return fig


def _signature_chart(baseline: tuple[FloatArray, FloatArray], reporting: tuple[FloatArray, FloatArray], when: date) -> Figure:
    # Imported here: matplotlib costs half a second, and most commands draw nothing.
    from matplotlib.figure import Figure
    fig = Figure(figsize=(9, 3.0))
    ax = fig.add_subplot()
    ax.scatter(baseline[0], baseline[1], s=8, color="#c62828", alpha=0.5, label="Avant travaux (référence)")
    ax.scatter(reporting[0], reporting[1], s=8, color="#2e7d32", alpha=0.5, label=f"Après le {when:%d/%m/%Y}")
    ax.set_xlabel("Température extérieure moyenne du jour (°C)")
    ax.set_ylabel("kWh / jour")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def portfolio_report(
    inventory: Inventory,
    year: int,
    buildings: Sequence[BuildingYear],
    *,
    price_escalation: float = 0.04,
    reference_year: int | None = None,
    reference_note: str = "",
    yearly: Sequence[YearlyConsumption] = (),
) -> str:
    """The annual portfolio report with the ADEME/CEP indicators.

    The cost of inaction counts only the buildings subject to the Décret tertiaire
    that have a reference consumption, against the décret's 2030 objective: −40 %
    of that reference, not of the year's consumption.

    Args:
        inventory: gives tariffs, the population and the commune's name.
        year: the year reported.
        buildings: each building's year.
        price_escalation: yearly price rise assumed in the cost of inaction.
        reference_year: the reference year of the subject buildings' ``reference_kwh``.
        reference_note: how the reference year was chosen, printed beside it.
        yearly: the yearly follow-up (:func:`yearly_section`), from the first year it holds to ``year``.

    Returns:
        The HTML page.
    """
    population = inventory.organisation.population
    energies = [e for e in Energy if e is not Energy.WATER and any(b.by_energy.get(e) for b in buildings)]
    rows = []
    tot_kwh = tot_eur = tot_co2 = tot_area = tot_avoided = tot_water = 0.0
    intensities: list[tuple[str, float, str]] = []
    for b in buildings:
        kwh = sum(b.by_energy.get(e, 0.0) for e in energies)
        eur = b.cost_eur(inventory)
        co2 = sum(v * inventory.tariff(e).emission_kgco2e_per_unit for e, v in b.by_energy.items())
        avoided = sum(v * inventory.tariff(e).price_eur_per_unit for e, v in b.avoided_kwh)
        water = b.by_energy.get(Energy.WATER, 0.0)
        area = b.building.heated_area_m2
        tot_kwh += kwh
        tot_eur += eur
        tot_co2 += co2
        tot_area += area
        tot_avoided += avoided
        tot_water += water
        intensities.append((b.building.name, kwh / area, b.building.usage.value))
        cells = "".join(f"<td>{_num(b.by_energy.get(e, 0.0))}{_BILLED if e in b.invoiced else ''}</td>" for e in energies)
        flag = " *" if b.missing_days else ""
        rows.append(
            f"<tr><td>{html.escape(b.building.name)}{flag}</td><td>{_num(area)}</td>{cells}<td>{_num(kwh)}</td>"
            f"<td>{_num(kwh / area)}</td><td>{_num(water)}{_BILLED if Energy.WATER in b.invoiced else ''}</td>"
            f"<td>{_num(eur)}{_BILLED if b.billed_eur else ''}</td><td>{_num(co2 / 1000, 1)}</td>"
            f"<td>{_num(avoided) if b.avoided_kwh else '—'}</td></tr>"
        )
    head = "".join(f"<th>{ENERGY_LABELS[e]} (kWh)</th>" for e in energies)
    total_cells = "".join(f"<td>{_num(sum(b.by_energy.get(e, 0.0) for b in buildings))}</td>" for e in energies)
    table = (
        # A <thead>: on paper the header row is printed again at the top of every page the table runs onto.
        f"<table><thead><tr><th>Bâtiment</th><th>m² chauffés</th>{head}<th>Total kWh</th><th>kWh/m²</th>"
        f"<th>Eau (m³)</th><th>Coût €</th><th>tCO₂e</th><th>Évité €</th></tr></thead><tbody>" + "".join(rows)
        + f'<tr class="total"><td>Patrimoine</td>'
        f"<td>{_num(tot_area)}</td>{total_cells}<td>{_num(tot_kwh)}</td>"
        f"<td>{_num(tot_kwh / tot_area if tot_area else math.nan)}</td><td>{_num(tot_water)}</td><td>{_num(tot_eur)}</td>"
        f"<td>{_num(tot_co2 / 1000, 1)}</td><td>{_num(tot_avoided)}</td></tr></tbody></table>"
    )
    kpis = "".join(
        [
            _kpi(_q(tot_kwh / 1000, "MWh"), "énergie finale"),
            _kpi(_q(tot_kwh / tot_area if tot_area else math.nan, "kWh/m2"), "intensité moyenne"),
            _kpi(_q(tot_eur, "€"), "dépense énergie + eau (TTC)"),
            _kpi(_q(tot_eur / population, "€/hab.", 2), f"pour {_num(population)} habitants"),
            _kpi(_q(tot_co2 / 1000, "tCO2e", 1), "émissions"),
            _kpi(_q(tot_avoided, "€"), "dépense évitée par les travaux suivis"),
        ]
    )
    inaction_html = _inaction_section(inventory, year, buildings, energies, price_escalation, reference_year,
                                      reference_note)
    charts = figure_png(_intensity_chart(intensities))
    incomplete = "* données incomplètes sur l'année. " if any(b.missing_days for b in buildings) else ""
    if any(b.invoiced for b in buildings):
        incomplete += f"{_BILLED}\u00a0: d'après les factures. "
    if any(b.billed_eur for b in buildings):
        incomplete += (f"Coût {_BILLED}\u00a0: montants des factures (au prorata des jours de l'année) pour les "
                       "énergies venant des factures, tarifs de l'inventaire pour les autres. ")
    body = (
        f'<section><div class="kpis">{kpis}</div></section>'
        f"<section><h2>Indicateurs par bâtiment</h2>{table}"
        f"<p class=\"note\">{incomplete}Coûts et émissions\u00a0: tarifs et facteurs de l'inventaire "
        "(à défaut, valeurs indicatives nationales).</p></section>"
        f"<section><h2>Intensité énergétique (kWh/m² chauffé)</h2>{charts}</section>"
        + inaction_html
    )
    first_year = min((y for r in yearly for y in r.years), default=None)
    if first_year is not None:
        body += yearly_section(yearly, first_year, year)
    subtitle = f"{inventory.organisation.name} · {len(buildings)} bâtiments · {_q(tot_area, 'm2')} chauffés"
    return render_page(f"Bilan énergétique {year} du patrimoine communal", body, subtitle)


def _inaction_section(
    inventory: Inventory,
    year: int,
    buildings: Sequence[BuildingYear],
    energies: Sequence[Energy],
    price_escalation: float,
    reference_year: int | None,
    reference_note: str,
) -> str:
    """The cost of inaction of the buildings subject to the décret, against their reference year (issue 14)."""
    head = "<section><h2>Coût de l'inaction</h2>"
    subject = [b for b in buildings if b.subject]
    counted = [b for b in subject if b.reference_kwh]
    scope = (f"{len(subject)} bâtiment(s) sur {len(buildings)} assujetti(s) au décret tertiaire "
             f"({_q(SUBJECT_AREA_M2, 'm2')} tertiaires ou plus sur leur site)")
    if reference_year is None or not counted:
        why = "aucun n'a de consommation de référence" if subject else "aucun objectif ne s'applique"
        return f'{head}<p class="note">{scope} : {why}, coût de l\'inaction non calculé.</p></section>'
    kwh = sum(b.by_energy.get(e, 0.0) for b in counted for e in energies)
    # The price of a kWh: the bills' amounts where they give it, else the tariffs (water left out).
    eur = sum(b.cost_eur(inventory, water=False) for b in counted)
    reference = sum(b.reference_kwh or 0.0 for b in counted)
    target = reference * (1 - TRAJECTORY[2030])
    price = eur / kwh if kwh else 0.0
    inaction = cost_of_inaction(kwh, price, first_year=year, last_year=2030, price_escalation=price_escalation,
                                target_kwh=target)
    total = inaction[-1][2] if inaction else 0.0
    missing = len(subject) - len(counted)
    left_out = f" ({missing} sans consommation de référence, non comptés)" if missing else ""
    figures = (
        f"{scope}{left_out} : {_q(kwh / 1000, 'MWh')} en {year}, {_q(reference / 1000, 'MWh')} en "
        f"{reference_year}, année de référence{reference_note} ; objectif 2030 du décret : "
        f"{_q(target / 1000, 'MWh')} (la référence {_pct(-TRAJECTORY[2030])})."
    )
    if kwh <= target:
        return f'{head}<div class="verdict ok">{figures} Ils sont déjà sous l\'objectif 2030.</div></section>'
    return (
        f'{head}<div class="verdict warn">{figures} Sans action, ils dépenseront {_q(total, "€")} de plus '
        f"d'ici 2030 que sur une trajectoire linéaire vers cet objectif, avec des prix en hausse de "
        f"{_pct(price_escalation)} par an.</div>{figure_png(_inaction_chart(inaction))}</section>"
    )


def _intensity_chart(rows: list[tuple[str, float, str]]) -> Figure:
    # Imported here: matplotlib costs half a second, and most commands draw nothing.
    from matplotlib.figure import Figure
    rows = sorted(rows, key=lambda r: r[1])
    fig = Figure(figsize=(9, 0.32 * len(rows) + 0.8))
    ax = fig.add_subplot()
    ax.barh([r[0] for r in rows], [r[1] for r in rows], color="#2f6db5")
    for i, r in enumerate(rows):
        ax.text(r[1], i, f" {_num(r[1])}", va="center", fontsize=8)
    ax.set_xlabel("kWh/m²/an")
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    return fig


def _inaction_chart(rows: list[tuple[int, float, float]]) -> Figure:
    # Imported here: matplotlib costs half a second, and most commands draw nothing.
    from matplotlib.figure import Figure
    fig = Figure(figsize=(9, 2.6))
    ax = fig.add_subplot()
    years = [str(r[0]) for r in rows]
    ax.bar(years, [r[2] / 1000 for r in rows], color="#c62828")
    ax.set_ylabel("k€ cumulés")
    ax.grid(axis="y", alpha=0.3)
    return fig
