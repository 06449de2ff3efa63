"""OPERAT export: annual consumption per EFA for the Décret tertiaire.

Every tertiary building (or part of one) of 1,000 m² or more is an *EFA*
(entité fonctionnelle assujettie) and must declare on the ADEME OPERAT
platform, each year before 30 September, its final-energy consumption of the
year before, per energy, and once its reference year (2010 or later). The
objectives are -40 % in 2030, -50 % in 2040 and -60 % in 2050 against the
reference year (the "valeur relative" route).

Subjection (article R. 174-22 of the Code de la construction et de
l'habitation) is decided per site, not per building: every building of a site
whose tertiary buildings add up to 1,000 m² or more is subject, so a 650 m²
library beside a 1,200 m² town hall is. Places of worship are outside the
décret (R. 174-22 II) and count for nothing.

:func:`operat_rows` builds one row per building and :func:`write_operat_csv`
writes them as a ``;``-separated UTF-8 CSV (with a BOM, so Excel opens it
right), decimals with a comma and no thousands separator, as French
spreadsheets read them. The headers are ours: no import template of the
OPERAT platform was found published (its CSV mass import is downloaded from
within an account and changes between campaigns), so the columns follow the
fields of its consumption declaration and are mapped in ``docs/mv.md``;
:data:`COLUMNS` is the single place where they are named.

Consumption is raw final energy, as OPERAT wants it declared (gas in kWh
PCS, which is what ``conversion_kwh_per_unit`` of a gas meter gives), from the
meters, or from the invoices (:mod:`streams.invoices`) for an energy whose
meters do not cover the year in full while its invoices do; the column
:data:`SOURCE` says which.

The reference year of each building is the inventory's
``operat_reference_year``, else the one asked on the command line, else
(:func:`choose_reference_year`) the complete year 2010-2019 of its invoices
with the highest consumption per m² of floor area: the décret lets the owner
choose it (article R. 174-23 CCH), and the highest is the usual choice since
every later objective is a fraction of it.

Climate adjustment (:class:`ClimateAdjustment`): the arrêté du 10 avril 2020
(https://www.legifrance.gouv.fr/jorf/id/JORFTEXT000041842389, article 5,
"modalités d'ajustement des données de consommation d'énergie finale en
fonction des variations climatiques", as amended on 13 April 2022)
adjusts the heating and cooling consumption of both the reference year and
each year to the mean degree days 2000-2019 of the reference Météo-France
station; OPERAT does it on its side. To show the trajectory before declaring,
the export adjusts the year to the climate of the reference year instead,
which compares the two years the same way when the heating share is the same
(both sides of the comparison are multiplied by the same mean DJU)::

    adjusted = C × (1 − sh − sc) + C × sh × DJU(reference year) / DJU(year) + C × sc × DJC(reference year) / DJC(year)

with ``C`` the year's final energy, ``sh`` and ``sc`` the shares of it that
heating and cooling use, DJU and DJC the heating and cooling degree days, base
18 °C, by the professionals' method from the Météo-France Tn and Tx (:mod:`mv.degreedays`) of the inventory's
outdoor temperature (or ``--temperatures``). ``sh`` and ``sc`` are the heating
and cooling parts of the M&V daily model
(:class:`mv.baseline.DailyChangePointBaseline`, :func:`weather_shares`) of
each energy whose meters cover the year, else :data:`DEFAULT_HEATING_SHARE`
of that energy and no cooling, said as such in :data:`ADJUSTMENT_METHOD`. A
year without cooling degree days leaves its cooling as it is. Without the
temperatures of both years the adjusted column is left blank and the method
says why.

The code of the arrêté's station network and its mean DJU 2000-2019 are not
in our data: the adjusted figures are a preview, and the declaration keeps
the raw consumption. Given the station's mean DJU (``normal_dju``, from
``--normal-dju``), both years are also brought to it, as the arrêté does, in
the columns :data:`NORMAL_ADJUSTED_KWH`, :data:`NORMAL_REFERENCE_KWH` and
:data:`GAP_2030_NORMAL` (cooling left as it is: no normal DJC). The degree
days follow the *méthode des professionnels de l'énergie* of the arrêté's
annex III (:func:`mv.degreedays.professional_degree_days`), base 18 °C.

>>> from inventory import Building, Energy, Site
>>> b = Building(id="mairie", name="Hôtel de ville", usage="town_hall", floor_area_m2=1200, heated_area_m2=1100,
...              operat_id="EFA-0000001")
>>> site = Site(id="centre", name="Centre", buildings=[b])
>>> rows = operat_rows([site], 2025, {"mairie": {Energy.ELECTRICITY: 90000.0}}, 2019, {"mairie": {Energy.ELECTRICITY: 120000.0}})
>>> rows[0][EFA_ID], rows[0][OBJECTIVE_COLUMNS[2030]], rows[0][GAP_2030], rows[0][INTENSITY]
('EFA-0000001', '72000', '20,0', '75,0')
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Protocol

import numpy as np

from inventory import Building, BuildingUsage, Energy, Site
from mv.baseline import DailyChangePointBaseline, DailyObservations
from mv.degreedays import DailyTemperature, professional_degree_days
from streams.invoices import YearTotal

__all__ = [
    "ADJUSTED_KWH",
    "ADJUSTMENT_METHOD",
    "AREA",
    "COLUMNS",
    "COOLING_SHARE",
    "DEFAULT_HEATING_SHARE",
    "DJC_REFERENCE",
    "DJC_YEAR",
    "DJU_REFERENCE",
    "DJU_YEAR",
    "EFA_ID",
    "ENERGY_COLUMNS",
    "FIRST_REFERENCE_YEAR",
    "FROM_INVOICES",
    "FROM_METERS",
    "GAP_2030",
    "GAP_2030_ADJUSTED",
    "GAP_2030_NORMAL",
    "HEATING_SHARE",
    "INTENSITY",
    "MISSING_DAYS",
    "NORMAL_ADJUSTED_KWH",
    "NORMAL_DJU",
    "NORMAL_REFERENCE_KWH",
    "NOT_TERTIARY",
    "OBJECTIVE_COLUMNS",
    "OPERAT_ACTIVITY",
    "REFERENCE_CANDIDATES",
    "REFERENCE_MISSING_DAYS",
    "REFERENCE_SOURCE",
    "SOURCE",
    "SUBJECT",
    "SUBJECT_AREA_M2",
    "SUBJECT_SITE_AREA",
    "TRAJECTORY",
    "ClimateAdjustment",
    "YearFigures",
    "choose_reference_year",
    "operat_rows",
    "subject_buildings",
    "weather_shares",
    "write_operat_csv",
    "year_degree_days",
    "year_figures",
]

SUBJECT_AREA_M2 = 1000.0
"""Tertiary floor area of one site from which its buildings are subject to the Décret tertiaire."""

NOT_TERTIARY: frozenset[BuildingUsage] = frozenset({BuildingUsage.CHURCH})
"""Usages outside the décret: buildings for worship (article R. 174-22 II CCH)."""

FIRST_REFERENCE_YEAR = 2010
"""The earliest reference year the décret allows (article R. 174-23 CCH)."""

TRAJECTORY: dict[int, float] = {2030: 0.40, 2040: 0.50, 2050: 0.60}
"""Reductions against the reference year, by deadline (article R. 174-23 CCH)."""

REFERENCE_CANDIDATES = range(2010, 2020)
"""Years :func:`choose_reference_year` chooses from: the décret's first decade."""

DEFAULT_HEATING_SHARE: dict[Energy, float] = {
    Energy.NATURAL_GAS: 0.8,
    Energy.FUEL_OIL: 0.8,
    Energy.WOOD_PELLETS: 0.9,
    Energy.HEATING_NETWORK: 0.9,
    Energy.ELECTRICITY: 0.0,
}
"""Share of an energy taken as heating when no meter covers the year (a default of ours, said in
the export): fuels heat, and also give hot water and cooking; electricity is taken as not heating
(a building heated by electricity needs meters, or its share declared with ``--heating-share``)."""

EFA_ID = "Identifiant EFA OPERAT"
INTERNAL_REF = "Référence interne"
NAME = "Nom de l'EFA"
ADDRESS = "Adresse"
ACTIVITY = "Catégorie d'activité"
AREA = "Surface de plancher (m²)"
SUBJECT = "Assujettie (≥ 1000 m² sur le site)"
SUBJECT_SITE_AREA = "Surface tertiaire du site (m²)"
YEAR = "Année de consommation"
REFERENCE_YEAR = "Année de référence"
REFERENCE_KWH = "Consommation de l'année de référence (kWh EF)"
TOTAL_KWH = "Consommation totale (kWh EF)"
INTENSITY = "Consommation surfacique (kWh EF/m²)"
GAP_2030 = "Réduction restant à faire pour 2030, consommation brute (%)"
GAP_2030_ADJUSTED = "Réduction restant à faire pour 2030, consommation ajustée au climat (%)"
MISSING_DAYS = "Jours sans données (année de consommation)"
REFERENCE_MISSING_DAYS = "Jours sans données (année de référence)"
SOURCE = "Source des consommations de l'année"
REFERENCE_SOURCE = "Source des consommations de référence"
DJU_YEAR = "DJU de l'année (base 18)"
DJU_REFERENCE = "DJU de l'année de référence (base 18)"
HEATING_SHARE = "Part chauffage (%)"
COOLING_SHARE = "Part refroidissement (%)"
DJC_YEAR = "DJC de l'année (base 18)"
DJC_REFERENCE = "DJC de l'année de référence (base 18)"
ADJUSTED_KWH = "Consommation ajustée au climat de l'année de référence (kWh EF)"
ADJUSTMENT_METHOD = "Méthode d'ajustement climatique"
NORMAL_DJU = "DJU normaux 2000-2019 de la station (base 18)"
NORMAL_ADJUSTED_KWH = "Consommation de l'année ajustée aux DJU normaux (kWh EF)"
NORMAL_REFERENCE_KWH = "Consommation de référence ajustée aux DJU normaux (kWh EF)"
GAP_2030_NORMAL = "Réduction restant à faire pour 2030, consommations ajustées aux DJU normaux (%)"

ENERGY_COLUMNS: dict[Energy, str] = {
    Energy.ELECTRICITY: "Électricité (kWh EF)",
    Energy.NATURAL_GAS: "Gaz naturel réseau (kWh PCS)",
    Energy.HEATING_NETWORK: "Réseau de chaleur (kWh)",
    Energy.FUEL_OIL: "Fioul domestique (kWh)",
    Energy.WOOD_PELLETS: "Bois - granulés (kWh)",
}
"""Declared energies; water is not declared on OPERAT."""

OBJECTIVE_COLUMNS: dict[int, str] = {
    year: f"Objectif {year} (kWh EF, -{fraction:.0%})".replace("%", " %") for year, fraction in TRAJECTORY.items()
}

COLUMNS: list[str] = [
    EFA_ID,
    INTERNAL_REF,
    NAME,
    ADDRESS,
    ACTIVITY,
    AREA,
    SUBJECT_SITE_AREA,
    SUBJECT,
    YEAR,
    *ENERGY_COLUMNS.values(),
    TOTAL_KWH,
    INTENSITY,
    REFERENCE_YEAR,
    REFERENCE_KWH,
    *OBJECTIVE_COLUMNS.values(),
    GAP_2030,
    MISSING_DAYS,
    REFERENCE_MISSING_DAYS,
    SOURCE,
    REFERENCE_SOURCE,
    DJU_YEAR,
    DJU_REFERENCE,
    HEATING_SHARE,
    DJC_YEAR,
    DJC_REFERENCE,
    COOLING_SHARE,
    ADJUSTED_KWH,
    GAP_2030_ADJUSTED,
    NORMAL_DJU,
    NORMAL_ADJUSTED_KWH,
    NORMAL_REFERENCE_KWH,
    GAP_2030_NORMAL,
    ADJUSTMENT_METHOD,
]
"""Headers of the export, in order."""

OPERAT_ACTIVITY: dict[BuildingUsage, str] = {
    BuildingUsage.SCHOOL: "Enseignement primaire",
    BuildingUsage.NURSERY: "Petite enfance (crèche, halte-garderie)",
    BuildingUsage.GYMNASIUM: "Sport - salle multisport, gymnase",
    BuildingUsage.SWIMMING_POOL: "Sport - piscine",
    BuildingUsage.TOWN_HALL: "Bureaux - administration (mairie)",
    BuildingUsage.LIBRARY: "Culture - bibliothèque, médiathèque",
    BuildingUsage.OFFICES: "Bureaux",
    BuildingUsage.CULTURAL_CENTRE: "Culture - salle polyvalente, salle des fêtes",
    BuildingUsage.WORKSHOP: "Logistique - atelier, entrepôt",
    BuildingUsage.RESTAURANT: "Restauration collective",
    BuildingUsage.CHURCH: "Culte",
    BuildingUsage.OTHER: "À préciser",
}
"""Our building usages to OPERAT activity categories; a proposal the advisor checks
against the platform's list (its sub-categories are finer than ours)."""


def subject_buildings(sites: Sequence[Site]) -> dict[str, float]:
    """The buildings subject to the Décret tertiaire, with the tertiary floor area of their site.

    A building is subject when the tertiary buildings of its site add up to
    :data:`SUBJECT_AREA_M2` or more (article R. 174-22 CCH: "bâtiment, partie de
    bâtiment ou ensemble de bâtiments situés sur une même unité foncière ou un même
    site"); buildings of :data:`NOT_TERTIARY` usages are neither counted nor subject.

    Args:
        sites: the inventory's sites.

    Returns:
        The tertiary floor area (m²) of the site of each subject building, by building id.

    >>> from inventory import Building, Site
    >>> def b(i, area): return Building(id=i, name=i, usage="library", floor_area_m2=area, heated_area_m2=area)
    >>> subject_buildings([Site(id="centre", name="Centre", buildings=[b("mairie", 400), b("bibli", 650)]),
    ...                    Site(id="nord", name="Nord", buildings=[b("ecole", 900)])])
    {'mairie': 1050.0, 'bibli': 1050.0}
    """
    subject: dict[str, float] = {}
    for site in sites:
        tertiary = [b for b in site.buildings if b.usage not in NOT_TERTIARY]
        area = sum(b.floor_area_m2 for b in tertiary)
        if area >= SUBJECT_AREA_M2:
            subject.update((b.id, area) for b in tertiary)
    return subject


@dataclass(frozen=True, slots=True)
class ClimateAdjustment:
    """The year's consumption brought to the climate of the reference year (module docstring).

    Attributes:
        heating_share: ``sh``, the share of the year's final energy used by heating.
        dju_year: heating degree days of the year (base 18 °C).
        dju_reference: the same of the reference year.
        method: how the shares were obtained, written in the export.
        cooling_share: ``sc``, the share used by cooling.
        djc_year: cooling degree days of the year (base 18 °C); NaN when unknown.
        djc_reference: the same of the reference year.
        normal_dju: the station's mean DJU 2000-2019 (``--normal-dju``): both years are then also
            brought to it, as the arrêté does; None for the preview only.

    >>> ClimateAdjustment(0.5, 2000.0, 2500.0, "défaut").adjusted(100_000.0)  # 50 000 + 50 000 × 2500 / 2000
    112500.0
    >>> ClimateAdjustment(0.5, 2000.0, 2500.0, "", 0.1, 200.0, 100.0).adjusted(100_000.0)  # + 10 000 × 100 / 200
    107500.0
    """

    heating_share: float
    dju_year: float
    dju_reference: float
    method: str
    cooling_share: float = 0.0
    djc_year: float = math.nan
    djc_reference: float = math.nan
    normal_dju: float | None = None

    def to_normal(self, kwh: float, dju: float) -> float:
        """``C × (1 − sh) + C × sh × DJU normaux / DJU``: a year of ``dju`` brought to the normal climate.

        The cooling part is left as it is (no normal DJC given).

        >>> ClimateAdjustment(0.5, 2000.0, 2500.0, "", normal_dju=2200.0).to_normal(100_000.0, 2000.0)
        105000.0
        """
        normal = self.normal_dju if self.normal_dju is not None else dju
        return kwh * (1 - self.heating_share) + kwh * self.heating_share * normal / dju

    @property
    def cooling_ratio(self) -> float:
        """``DJC(reference) / DJC(year)``; 1 (the cooling left as it is) when either is unknown or the year has none."""
        if math.isfinite(self.djc_year) and math.isfinite(self.djc_reference) and self.djc_year > 0:
            return self.djc_reference / self.djc_year
        return 1.0

    def adjusted(self, kwh: float) -> float:
        """``C × (1 − sh − sc) + C × sh × DJU(ref) / DJU(year) + C × sc × DJC(ref) / DJC(year)``."""
        rest = kwh * (1 - self.heating_share - self.cooling_share)
        return (rest + kwh * self.heating_share * self.dju_reference / self.dju_year
                + kwh * self.cooling_share * self.cooling_ratio)


def choose_reference_year(
    building: Building, years: Mapping[Energy, Mapping[int, YearTotal]], metered: Collection[Energy] = (),
) -> int | None:
    """The complete year of :data:`REFERENCE_CANDIDATES` with the highest consumption per m², from invoices.

    A year is a candidate when every declared energy the invoices give for it is
    complete (:attr:`streams.invoices.YearTotal.complete`), every energy of the building's
    meters is billed in full that year too, and it has some consumption: the rule
    :func:`year_figures` applies, so the export never refuses the year chosen.

    Args:
        building: its floor area divides.
        years: its invoiced years per energy (:func:`streams.invoices.yearly_totals`).
        metered: the energies of its meters (a year the bills do not cover for them is left out:
            the meters rarely go back to 2010-2019).

    Returns:
        The year, None when no candidate is complete.

    >>> from inventory import Building
    >>> b = Building(id="b", name="b", usage="library", floor_area_m2=100, heated_area_m2=100)
    >>> choose_reference_year(b, {Energy.ELECTRICITY: {2012: YearTotal(9000.0, 0), 2013: YearTotal(9500.0, 3),
    ...                                                 2014: YearTotal(9200.0, 0)}})
    2014
    """
    best: tuple[float, int] | None = None
    for year in REFERENCE_CANDIDATES:
        totals = [y[year] for e, y in years.items() if e in ENERGY_COLUMNS and year in y]
        unbilled = [e for e in metered if e in ENERGY_COLUMNS and year not in years.get(e, {})]
        if not totals or unbilled or not all(t.complete for t in totals):
            continue
        per_m2 = sum(t.amount for t in totals) / building.floor_area_m2
        if per_m2 > 0 and (best is None or per_m2 > best[0]):
            best = (per_m2, year)
    return None if best is None else best[1]


FROM_METERS = "compteurs"
"""Source of a figure taken from the meters."""
FROM_INVOICES = "factures"
"""Source of a figure taken from the invoices."""


class _DailySeries(Protocol):
    """A building's daily consumption of one energy (``dashboards.reports.EnergySeries``)."""

    @property
    def energy(self) -> Energy: ...

    def total(self, start: date, end: date) -> tuple[float, int]: ...


@dataclass
class YearFigures:
    """One calendar year of the buildings, per energy: meters where they cover it, else invoices.

    Attributes:
        totals: kWh (water m3) per energy of each building id with data.
        missing: the most days one of its energies lacks, per building id with data.
        absent: the building ids without any data in the year.
        sources: :data:`FROM_METERS` or :data:`FROM_INVOICES`, per building id and energy.
        energy_missing: days without data per building id and energy.
    """

    totals: dict[str, dict[Energy, float]] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)
    sources: dict[str, dict[Energy, str]] = field(default_factory=dict)
    energy_missing: dict[str, dict[Energy, int]] = field(default_factory=dict)

    def source(self, building_id: str) -> str:
        """Where the building's figures come from, e.g. ``compteurs + factures``."""
        return " + ".join(sorted(set(self.sources.get(building_id, {}).values())))


def year_figures(
    buildings: Iterable[tuple[str, Collection[Energy]]],
    series: Mapping[str, Sequence[_DailySeries]],
    invoiced: Mapping[str, Mapping[Energy, Mapping[int, YearTotal]]],
    year: int,
    only: Collection[str] | None = None,
    energies: Collection[Energy] = tuple(ENERGY_COLUMNS),
) -> YearFigures:
    """The year of each building and energy: the meters when they cover it in full, else complete invoices.

    Else whichever has data, its missing days counted.

    Args:
        buildings: each building id with its metered energies.
        series: its daily consumption per energy, from the meters.
        invoiced: its invoiced years (:func:`streams.invoices.yearly_totals`).
        year: the calendar year.
        only: the building ids wanted (all when None).
        energies: the energies wanted (by default the declared ones).

    Returns:
        The figures and where they come from.
    """
    start, end = date(year, 1, 1), date(year + 1, 1, 1)
    whole = (end - start).days
    out = YearFigures()
    for building_id, metered_energies in buildings:
        if only is not None and building_id not in only:
            continue
        by_energy = {s.energy: s for s in series.get(building_id, [])}
        bills = invoiced.get(building_id, {})
        # An energy known from its bills only supplies the building within their span (streams.invoices.yearly_totals).
        used = [e for e in energies if e in metered_energies or year in bills.get(e, {})]
        if not used:
            if any(e in bills for e in energies):  # billed, but not in that year: no data for it
                out.absent.append(building_id)
            continue
        gaps: list[int] = []
        for energy in used:
            metered = by_energy[energy].total(start, end) if energy in by_energy else (0.0, whole)
            billed = bills.get(energy, {}).get(year)
            if metered[1] == 0 or (metered[1] < whole and not (billed and billed.complete)):
                figure, source, missing = metered[0], FROM_METERS, metered[1]
            elif billed is not None and billed.missing_days < whole:
                figure, source, missing = billed.amount, FROM_INVOICES, billed.missing_days
            else:
                gaps.append(whole)
                continue
            out.totals.setdefault(building_id, {})[energy] = figure
            out.sources.setdefault(building_id, {})[energy] = source
            out.energy_missing.setdefault(building_id, {})[energy] = missing
            gaps.append(missing)
        if min(gaps) == whole:
            out.absent.append(building_id)
        else:
            out.missing[building_id] = max(gaps)
    return out


def year_degree_days(days: Sequence[DailyTemperature], year: int) -> tuple[float, float]:
    """Heating (DJU) and cooling (DJC) degree days, base 18 °C, of a calendar year.

    Each day by the *méthode des professionnels de l'énergie* of the arrêté's annex III
    (:func:`mv.degreedays.professional_degree_days`) from its Tn and Tx. A few days
    missing are counted at the mean of the others; NaN when over a tenth of the year's
    days lack temperatures.
    """
    known = [professional_degree_days(d.tmin_c, d.tmax_c) for d in days if d.day.year == year and not d.gap]
    whole = (date(year + 1, 1, 1) - date(year, 1, 1)).days
    if len(known) < 0.9 * whole:
        return math.nan, math.nan
    return sum(h for h, _ in known) * whole / len(known), sum(c for _, c in known) * whole / len(known)


def weather_shares(model: DailyChangePointBaseline, obs: DailyObservations) -> tuple[float, float] | None:
    """The heating and the cooling parts of the days of ``obs`` in a fitted daily model: ``sh`` and ``sc``.

    The heating part is what the model predicts less its prediction of the same days
    with no temperature below its heating balance point (no heating degree days);
    the cooling part likewise above its cooling balance point. Each over the whole.

    Returns:
        ``(sh, sc)``, each in [0, 1]; None when the model predicts nothing.
    """
    p = model.params
    temp = obs.temperature_c
    predicted = model.predict(obs)
    total = float(np.nansum(predicted))
    if total <= 0:
        return None

    def part(balance: float | None, heating: bool) -> float:
        if balance is None:
            return 0.0
        flat_temp = np.maximum(temp, balance) if heating else np.minimum(temp, balance)  # NaN samples stay NaN
        flat = DailyObservations.build(obs.days, obs.energy_kwh, flat_temp, obs.day_types)
        return min(max(float(np.nansum(predicted - model.predict(flat))) / total, 0.0), 1.0)

    return part(p.heating_balance_c, heating=True), part(p.cooling_balance_c, heating=False)


def _decimal(value: float, digits: int) -> str:
    # A comma and no thousands separator: a ";" CSV opened by a French Excel or LibreOffice (issue 14).
    return f"{value:.{digits}f}".replace(".", ",")


def operat_rows(
    sites: Sequence[Site],
    year: int,
    consumption: Mapping[str, Mapping[Energy, float]],
    reference_year: int | Mapping[str, int],
    reference: Mapping[str, Mapping[Energy, float]],
    *,
    only_subject: bool = False,
    missing_days: Mapping[str, int] | None = None,
    reference_missing_days: Mapping[str, int] | None = None,
    without_data: Collection[str] = (),
    sources: Mapping[str, str] | None = None,
    reference_sources: Mapping[str, str] | None = None,
    adjustments: Mapping[str, ClimateAdjustment | str] | None = None,
) -> list[dict[str, str]]:
    """One row per building: the year's consumption per energy, the reference and the trajectory.

    Args:
        sites: the inventory's sites; each building is an EFA, its ``operat_id`` its identifier.
        year: the year declared.
        consumption: kWh per energy of each building id for ``year``.
        reference_year: the chosen reference year, of all buildings or per building id.
        reference: kWh per energy of each building id for its reference year.
        only_subject: keep only the buildings subject to the décret (per site, :func:`subject_buildings`).
        missing_days: days of ``year`` without data of each building id (its most incomplete energy).
        reference_missing_days: the same for the reference year.
        without_data: building ids without any data in ``year``: their consumption columns are
            left blank, not written as a 0 kWh declaration.
        sources: where each building's figures of ``year`` come from (e.g. "compteurs", "factures").
        reference_sources: the same for its reference year.
        adjustments: the climate adjustment of each building, or why there is none.

    Returns:
        Rows keyed by :data:`COLUMNS`, values already formatted (integers for kWh, decimal commas).
    """
    subject = subject_buildings(sites)
    rows: list[dict[str, str]] = []
    for site in sites:
        site_area = sum(b.floor_area_m2 for b in site.buildings if b.usage not in NOT_TERTIARY)
        for building in site.buildings:
            if only_subject and building.id not in subject:
                continue
            ref_year = reference_year if isinstance(reference_year, int) else reference_year.get(building.id)
            row = _row(building, site.address, site_area, building.id in subject, year, consumption,
                       ref_year, reference, missing_days, reference_missing_days, without_data)
            _climate(row, building.id, (adjustments or {}).get(building.id), year, consumption, without_data)
            row[SOURCE] = (sources or {}).get(building.id, "") if building.id not in without_data else ""
            row[REFERENCE_SOURCE] = (reference_sources or {}).get(building.id, "") if row[REFERENCE_KWH] else ""
            rows.append(row)
    return rows


def _climate(
    row: dict[str, str],
    building_id: str,
    adjustment: ClimateAdjustment | str | None,
    year: int,
    consumption: Mapping[str, Mapping[Energy, float]],
    without_data: Collection[str],
) -> None:
    """Fill the climate columns; the 2030 gap is then of the adjusted consumption."""
    for column in (DJU_YEAR, DJU_REFERENCE, HEATING_SHARE, DJC_YEAR, DJC_REFERENCE, COOLING_SHARE, ADJUSTED_KWH,
                   GAP_2030_ADJUSTED, NORMAL_DJU, NORMAL_ADJUSTED_KWH, NORMAL_REFERENCE_KWH, GAP_2030_NORMAL,
                   ADJUSTMENT_METHOD):
        row[column] = ""
    if building_id in without_data or not row[REFERENCE_KWH]:
        return
    if not isinstance(adjustment, ClimateAdjustment):
        row[ADJUSTMENT_METHOD] = adjustment or "non ajustée"
        return
    if not (math.isfinite(adjustment.dju_year) and adjustment.dju_year > 0):
        row[ADJUSTMENT_METHOD] = f"non ajustée : pas de DJU en {year}"
        return
    used = consumption.get(building_id, {})
    total = sum(used.get(e, 0.0) for e in ENERGY_COLUMNS)
    adjusted = adjustment.adjusted(total)
    row[DJU_YEAR] = _decimal(adjustment.dju_year, 0)
    row[DJU_REFERENCE] = _decimal(adjustment.dju_reference, 0)
    row[HEATING_SHARE] = _decimal(100 * adjustment.heating_share, 1)
    row[COOLING_SHARE] = _decimal(100 * adjustment.cooling_share, 1)
    if math.isfinite(adjustment.djc_year) and math.isfinite(adjustment.djc_reference):
        row[DJC_YEAR] = _decimal(adjustment.djc_year, 0)
        row[DJC_REFERENCE] = _decimal(adjustment.djc_reference, 0)
    row[ADJUSTED_KWH] = f"{adjusted:.0f}"
    row[ADJUSTMENT_METHOD] = adjustment.method
    target = float(row[OBJECTIVE_COLUMNS[2030]])
    row[GAP_2030_ADJUSTED] = _decimal(100 * max(adjusted - target, 0.0) / adjusted, 1) if adjusted else ""
    if adjustment.normal_dju is None:
        row[ADJUSTMENT_METHOD] += (" ; aperçu : l'année ramenée au climat de l'année de référence (DJU normaux "
                                   "2000-2019 de la station non fournis : --normal-dju)")
        return
    if not (math.isfinite(adjustment.dju_reference) and adjustment.dju_reference > 0):
        return
    # The arrêté's way: both years brought to the station's mean DJU 2000-2019, the same shares for both.
    year_normal = adjustment.to_normal(total, adjustment.dju_year)
    reference_normal = adjustment.to_normal(float(row[REFERENCE_KWH]), adjustment.dju_reference)
    normal_target = reference_normal * (1 - TRAJECTORY[2030])
    row[NORMAL_DJU] = _decimal(adjustment.normal_dju, 0)
    row[NORMAL_ADJUSTED_KWH] = f"{year_normal:.0f}"
    row[NORMAL_REFERENCE_KWH] = f"{reference_normal:.0f}"
    row[GAP_2030_NORMAL] = (_decimal(100 * max(year_normal - normal_target, 0.0) / year_normal, 1)
                            if year_normal else "")
    row[ADJUSTMENT_METHOD] += (f" ; DJU normaux 2000-2019 de la station : {adjustment.normal_dju:.0f} "
                               "(--normal-dju) : l'année et la référence y sont ramenées, comme l'arrêté, "
                               "part froid non ajustée")


def _row(
    building: Building,
    address: str,
    site_area: float,
    subject: bool,
    year: int,
    consumption: Mapping[str, Mapping[Energy, float]],
    reference_year: int | None,
    reference: Mapping[str, Mapping[Energy, float]],
    missing_days: Mapping[str, int] | None,
    reference_missing_days: Mapping[str, int] | None,
    without_data: Collection[str],
) -> dict[str, str]:
    used = consumption.get(building.id, {})
    ref = reference.get(building.id, {}) if reference_year is not None else {}
    total = sum(used.get(e, 0.0) for e in ENERGY_COLUMNS)
    ref_total = sum(ref.get(e, 0.0) for e in ENERGY_COLUMNS)
    row = {
        EFA_ID: building.operat_id or "",
        INTERNAL_REF: building.id,
        NAME: building.name,
        ADDRESS: address,
        ACTIVITY: OPERAT_ACTIVITY[building.usage],
        AREA: f"{building.floor_area_m2:.0f}",
        SUBJECT_SITE_AREA: f"{site_area:.0f}",
        SUBJECT: "oui" if subject else "non",
        YEAR: str(year),
        TOTAL_KWH: f"{total:.0f}",
        INTENSITY: _decimal(total / building.floor_area_m2, 1),
        REFERENCE_YEAR: str(reference_year) if ref_total else "",
        REFERENCE_KWH: f"{ref_total:.0f}" if ref_total else "",
    }
    for energy, column in ENERGY_COLUMNS.items():
        row[column] = f"{used.get(energy, 0.0):.0f}"
    for deadline, fraction in TRAJECTORY.items():
        row[OBJECTIVE_COLUMNS[deadline]] = f"{ref_total * (1 - fraction):.0f}" if ref_total else ""
    target = ref_total * (1 - TRAJECTORY[2030])
    row[GAP_2030] = _decimal(100 * max(total - target, 0.0) / total, 1) if ref_total and total else ""
    # Not an OPERAT field: how far the sums can be trusted (a year with days missing is under-counted).
    days = (missing_days or {}).get(building.id)
    reference_days = (reference_missing_days or {}).get(building.id)
    row[MISSING_DAYS] = "" if days is None else str(days)
    row[REFERENCE_MISSING_DAYS] = "" if reference_days is None or not ref_total else str(reference_days)
    if building.id in without_data:
        for column in (TOTAL_KWH, INTENSITY, GAP_2030, *ENERGY_COLUMNS.values()):
            row[column] = ""
    return row


def write_operat_csv(rows: Sequence[Mapping[str, str]], path: Path | None = None) -> str:
    """Write the rows as OPERAT-style CSV (``;`` separator, decimal commas, UTF-8 with BOM).

    Args:
        rows: from :func:`operat_rows`.
        path: where to write; None only returns the text.

    Returns:
        The CSV text (without the BOM).
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, delimiter=";", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    text = buffer.getvalue()
    if path is not None:
        path.write_text(text, encoding="utf-8-sig")
    return text
