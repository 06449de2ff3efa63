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

from inventory import Building, Energy, Inventory, Renovation
from mv.baseline import G14_LIMITS
from mv.degreedays import DegreeDay, monthly_degree_days
from mv.savings import PerformanceGapAlert, SavingsReport, cost_of_inaction

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "ENERGY_LABELS",
    "BuildingYear",
    "EnergySeries",
    "building_month_report",
    "figure_png",
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
section { page-break-inside: avoid; }
footer { margin-top: 18px; color: #8a949e; font-size: 10px; border-top: 1px solid #d5dbe2; padding-top: 4px; }
@media print {
  body { max-width: none; padding: 0; font-size: 9.5pt; }
  header h1 { font-size: 16pt; }
  h2 { font-size: 12pt; break-after: avoid; }
  .kpi .v { font-size: 13pt; }
  table { font-size: 8pt; }
  th { font-size: 7.5pt; }
  th, td { padding: 3px 4px; }
  tr, img.chart, .kpi, .verdict, header, footer { break-inside: avoid; }
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
    """

    building: Building
    by_energy: dict[Energy, float]
    missing_days: int = 0
    avoided_kwh: tuple[tuple[Energy, float], ...] = ()


def figure_png(fig: Figure) -> str:
    """Render a figure to a base64 PNG ``<img>`` tag."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="chart" alt="graphique" src="data:image/png;base64,{data}">'


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
        "<footer>Econome : mesure et vérification des économies d'énergie (méthode ASHRAE Guideline 14, "
        "DJU base 18 °C méthode Météo-France). Rapport généré automatiquement.</footer></body></html>\n"
    )


def _num(value: float, decimals: int = 0) -> str:
    """French number formatting: narrow no-break space for thousands, comma for decimals."""
    if math.isnan(value):
        return "—"
    text = f"{value:,.{decimals}f}"
    return text.replace(",", "\u202f").replace(".", ",")


def _pct(value: float, decimals: int = 0) -> str:
    return "—" if math.isnan(value) else _num(100 * value, decimals) + " %"


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
    """
    start, end = _month_bounds(year, month)
    prev_start, prev_end = _month_bounds(year - 1, month)
    dju = monthly_degree_days(degree_days)
    hdd_now, _, gaps_now = dju.get((year, month), (math.nan, math.nan, 0))
    hdd_prev, _, _ = dju.get((year - 1, month), (math.nan, math.nan, 0))
    rows = []
    total_kwh = total_eur = total_co2 = 0.0
    for s in series:
        tariff = inventory.tariff(s.energy)
        now, missing = s.total(start, end)
        before, missing_before = s.total(prev_start, prev_end)
        before_ok = missing_before < (prev_end - prev_start).days
        change = (now - before) / before if before_ok and before else math.nan
        # Only the weather-dependent share should be corrected; without a model we
        # correct all of it for heating energies and nothing for electricity and water.
        corrected = math.nan
        if before_ok and before and s.energy not in (Energy.ELECTRICITY, Energy.WATER) and hdd_now and hdd_prev:
            corrected = (now / hdd_now) / (before / hdd_prev) - 1
        eur = now * tariff.price_eur_per_unit
        co2 = now * tariff.emission_kgco2e_per_unit
        if s.energy is not Energy.WATER:
            total_kwh += now
        total_eur += eur
        total_co2 += co2
        rows.append(
            f"<tr><td>{ENERGY_LABELS[s.energy]}</td><td>{_num(now)} {_unit(s.energy)}</td>"
            f"<td>{_num(before) if before_ok else '—'}</td><td>{_pct(change)}</td><td>{_pct(corrected)}</td>"
            f"<td>{_num(eur)} €</td><td>{_num(co2)}</td><td>{missing}</td></tr>"
        )
    month_name = f"{_MONTHS[month - 1]} {year}"
    kpis = "".join(
        [
            _kpi(f"{_num(total_kwh)} kWh", "énergie finale du mois"),
            _kpi(f"{_num(total_kwh / building.heated_area_m2, 1)} kWh/m²", "par m² chauffé"),
            _kpi(f"{_num(total_eur)} €", "coût TTC estimé (énergie + eau)"),
            _kpi(f"{_num(total_co2)} kgCO2e", "émissions"),
            _kpi(f"{_num(hdd_now)} DJU", f"base 18 °C ({_num(hdd_prev)} en {year - 1})"),
        ]
    )
    gap_note = f" {gaps_now} jour(s) sans température : DJU incomplets." if gaps_now else ""
    table = (
        "<table><tr><th>Énergie</th><th>Ce mois</th><th>Même mois N-1</th><th>Écart brut</th>"
        "<th>Écart corrigé du climat</th><th>Coût</th><th>kgCO2e</th><th>Jours manquants</th></tr>" + "".join(rows) + "</table>"
    )
    chart = figure_png(_daily_chart(series, start, end, temperature_c or {}))
    body = (
        f'<section><div class="kpis">{kpis}</div></section>'
        f"<section><h2>Consommations par énergie</h2>{table}"
        f'<p class="note">Écart corrigé du climat : consommation par DJU comparée à celle du même mois de '
        f"l'année précédente (énergies de chauffage seulement).{gap_note}</p></section>"
        f"<section><h2>Consommation journalière et température extérieure</h2>{chart}</section>"
    )
    org = inventory.organisation
    subtitle = f"{org.name} · {building.heated_area_m2:g} m² chauffés · usage {building.usage.value}"
    return render_page(f"{building.name} — rapport de {month_name}", body, subtitle)


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
    if not total.significant:
        css, verdict = "warn", f"Pas d'économie démontrable : {_pct(frac, 1)} ± {_pct(unc, 1)} ({conf} de confiance)."
    elif frac + unc >= promised:
        css, verdict = "ok", f"Économies mesurées : {_pct(frac, 1)} ± {_pct(unc, 1)} — la promesse de {_pct(promised)} est tenue."
    else:
        css, verdict = "bad", f"Économies mesurées : {_pct(frac, 1)} ± {_pct(unc, 1)}, en deçà des {_pct(promised)} promis."
    valued = report.valued(tariff)
    kpis = "".join(
        [
            _kpi(f"{_num(total.savings_kwh)} ± {_num(total.uncertainty_kwh)} kWh", "consommation évitée"),
            _kpi(f"{_num(valued['savings_eur'])} €", "dépense évitée (TTC)"),
            _kpi(f"{_num(valued['savings_kgco2e'] / 1000, 1)} tCO2e", "émissions évitées"),
            _kpi(f"{_pct(frac, 1)}", f"économie mesurée (promis {_pct(promised)})"),
        ]
    )
    alert_html = ""
    if alert is not None:
        alert_html = f'<div class="verdict bad"><b>Alerte écart de performance.</b> {html.escape(alert.description)}</div>'
    stats = report.stats
    max_cv, max_nmbe = G14_LIMITS[stats.resolution]
    g14 = "conforme" if report.g14_compliant else "non conforme (incertitude supérieure à 50 % des économies à 68 %)"
    method = (
        "<table>"
        f"<tr><td>Modèle de référence</td><td>{html.escape(report.model)}</td></tr>"
        f"<tr><td>Points de la période de référence</td><td>{stats.n} ({stats.resolution.value})</td></tr>"
        f"<tr><td>CV(RMSE)</td><td>{_pct(stats.cvrmse, 1)} (limite {_pct(max_cv)})</td></tr>"
        f"<tr><td>NMBE</td><td>{_pct(stats.nmbe, 2)} (limite ± {_pct(max_nmbe)})</td></tr>"
        f"<tr><td>R²</td><td>{_num(stats.r2, 3)}</td></tr>"
        f"<tr><td>Période de suivi</td><td>{total.start:%d/%m/%Y} — {total.end - timedelta(days=1):%d/%m/%Y} "
        f"({total.points} points)</td></tr>"
        f"<tr><td>Consommation de référence ajustée</td><td>{_num(total.adjusted_baseline_kwh)} kWh</td></tr>"
        f"<tr><td>Consommation mesurée</td><td>{_num(total.actual_kwh)} kWh</td></tr>"
        f"<tr><td>Critère ASHRAE Guideline 14</td><td>{g14}</td></tr>"
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
        "à la météo réelle de la période de suivi : l'hiver doux ou rigoureux est ainsi neutralisé. La bande grise "
        f"est l'incertitude à {conf} de confiance (ASHRAE Guideline 14).</p></section>"
        f"{signature}<section><h2>Méthode et qualité du modèle</h2>{method}</section>"
    )
    subtitle = (
        f"{inventory.organisation.name} · {renovation.description} · travaux du {renovation.date:%d/%m/%Y} · "
        f"compteur {ENERGY_LABELS[energy].lower()}"
    )
    return render_page(f"{building.name} — suivi de rénovation", body, subtitle)


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
    promise = ax.axhline(100 * promised, color="#ef8f00", ls="--", lw=2, label=f"Promesse ({100 * promised:.0f} %)")
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
) -> str:
    """The annual portfolio report with the ADEME/CEP indicators.

    Args:
        inventory: gives tariffs, the population and the commune's name.
        year: the year reported.
        buildings: each building's year.
        price_escalation: yearly price rise assumed in the cost of inaction.

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
        eur = sum(v * inventory.tariff(e).price_eur_per_unit for e, v in b.by_energy.items())
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
        cells = "".join(f"<td>{_num(b.by_energy.get(e, 0.0))}</td>" for e in energies)
        flag = " *" if b.missing_days else ""
        rows.append(
            f"<tr><td>{html.escape(b.building.name)}{flag}</td><td>{_num(area)}</td>{cells}<td>{_num(kwh)}</td>"
            f"<td>{_num(kwh / area)}</td><td>{_num(water)}</td><td>{_num(eur)}</td><td>{_num(co2 / 1000, 1)}</td>"
            f"<td>{_num(avoided) if b.avoided_kwh else '—'}</td></tr>"
        )
    head = "".join(f"<th>{ENERGY_LABELS[e]} (kWh)</th>" for e in energies)
    total_cells = "".join(f"<td>{_num(sum(b.by_energy.get(e, 0.0) for b in buildings))}</td>" for e in energies)
    table = (
        f"<table><tr><th>Bâtiment</th><th>m² chauffés</th>{head}<th>Total kWh</th><th>kWh/m²</th><th>Eau (m³)</th>"
        f"<th>Coût €</th><th>tCO2e</th><th>Évité €</th></tr>" + "".join(rows) + f'<tr class="total"><td>Patrimoine</td>'
        f"<td>{_num(tot_area)}</td>{total_cells}<td>{_num(tot_kwh)}</td>"
        f"<td>{_num(tot_kwh / tot_area if tot_area else math.nan)}</td><td>{_num(tot_water)}</td><td>{_num(tot_eur)}</td>"
        f"<td>{_num(tot_co2 / 1000, 1)}</td><td>{_num(tot_avoided)}</td></tr></table>"
    )
    kpis = "".join(
        [
            _kpi(f"{_num(tot_kwh / 1000)} MWh", "énergie finale"),
            _kpi(f"{_num(tot_kwh / tot_area if tot_area else math.nan)} kWh/m²", "intensité moyenne"),
            _kpi(f"{_num(tot_eur)} €", "dépense énergie + eau (TTC)"),
            _kpi(f"{_num(tot_eur / population, 2)} €/hab.", f"pour {_num(population)} habitants"),
            _kpi(f"{_num(tot_co2 / 1000, 1)} tCO2e", "émissions"),
            _kpi(f"{_num(tot_avoided)} €", "dépense évitée par les travaux suivis"),
        ]
    )
    price = (tot_eur - tot_water * inventory.tariff(Energy.WATER).price_eur_per_unit) / tot_kwh if tot_kwh else 0.0
    inaction = cost_of_inaction(tot_kwh, price, first_year=year, last_year=2030, price_escalation=price_escalation)
    inaction_total = inaction[-1][2] if inaction else 0.0
    charts = figure_png(_intensity_chart(intensities))
    body = (
        f'<section><div class="kpis">{kpis}</div></section>'
        f"<section><h2>Indicateurs par bâtiment</h2>{table}"
        "<p class=\"note\">* données incomplètes sur l'année. Coûts et émissions : tarifs et facteurs de l'inventaire "
        "(à défaut, valeurs indicatives nationales).</p></section>"
        f"<section><h2>Intensité énergétique (kWh/m² chauffé)</h2>{charts}</section>"
        f"<section><h2>Coût de l'inaction</h2>"
        f'<div class="verdict warn">Sans action, le patrimoine dépensera {_num(inaction_total)} € de plus d\'ici 2030 '
        f"que sur une trajectoire linéaire vers -40 % (objectif du décret tertiaire), avec des prix en hausse de "
        f"{_pct(price_escalation)} par an.</div>{figure_png(_inaction_chart(inaction))}</section>"
    )
    subtitle = f"{inventory.organisation.name} · {len(buildings)} bâtiments · {_num(tot_area)} m² chauffés"
    return render_page(f"Bilan énergétique {year} du patrimoine communal", body, subtitle)


def _intensity_chart(rows: list[tuple[str, float, str]]) -> Figure:
    # Imported here: matplotlib costs half a second, and most commands draw nothing.
    from matplotlib.figure import Figure
    rows = sorted(rows, key=lambda r: r[1])
    fig = Figure(figsize=(9, 0.32 * len(rows) + 0.8))
    ax = fig.add_subplot()
    ax.barh([r[0] for r in rows], [r[1] for r in rows], color="#2f6db5")
    for i, r in enumerate(rows):
        ax.text(r[1], i, f" {r[1]:.0f}", va="center", fontsize=8)
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
