"""OPERAT export: annual consumption per EFA for the Décret tertiaire.

Every tertiary building (or part of one) of 1,000 m² or more is an *EFA*
(entité fonctionnelle assujettie) and must declare on the ADEME OPERAT
platform, each year before 30 September, its final-energy consumption of the
year before, per energy, and once its reference year (2010 or later). The
objectives are -40 % in 2030, -50 % in 2040 and -60 % in 2050 against the
reference year (the "valeur relative" route).

:func:`operat_rows` builds one row per building and :func:`write_operat_csv`
writes them as a ``;``-separated UTF-8 CSV (with a BOM, so Excel opens it
right), one column per field of the platform's consumption declaration. The
mapping and what must still be entered by hand are in ``docs/mv.md``;
:data:`COLUMNS` is the single place where the headers are named.

Consumption is raw metered final energy, as OPERAT wants it: the platform
applies its own climate correction (with its DJU) on its side. Gas is in kWh
PCS, which is what ``conversion_kwh_per_unit`` of a gas meter gives.

>>> import io
>>> from inventory import Building, Energy
>>> b = Building(id="mairie", name="Hôtel de ville", usage="town_hall", floor_area_m2=1200, heated_area_m2=1100)
>>> rows = operat_rows([b], 2025, {"mairie": {Energy.ELECTRICITY: 90000.0}}, 2019, {"mairie": {Energy.ELECTRICITY: 120000.0}})
>>> rows[0][OBJECTIVE_COLUMNS[2030]], rows[0][GAP_2030]
('72000', '20.0')
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from inventory import Building, BuildingUsage, Energy

__all__ = [
    "COLUMNS",
    "ENERGY_COLUMNS",
    "GAP_2030",
    "MISSING_DAYS",
    "OBJECTIVE_COLUMNS",
    "OPERAT_ACTIVITY",
    "REFERENCE_MISSING_DAYS",
    "SUBJECT_AREA_M2",
    "TRAJECTORY",
    "operat_rows",
    "write_operat_csv",
]

SUBJECT_AREA_M2 = 1000.0
"""Floor area from which a tertiary building is subject to the Décret tertiaire."""

TRAJECTORY: dict[int, float] = {2030: 0.40, 2040: 0.50, 2050: 0.60}
"""Reductions against the reference year, by deadline (article R. 174-23 CCH)."""

EFA_ID = "Identifiant EFA OPERAT"
INTERNAL_REF = "Référence interne"
NAME = "Nom de l'EFA"
ADDRESS = "Adresse"
ACTIVITY = "Catégorie d'activité"
AREA = "Surface de plancher (m²)"
SUBJECT = "Assujettie (≥ 1000 m²)"
YEAR = "Année de consommation"
REFERENCE_YEAR = "Année de référence"
REFERENCE_KWH = "Consommation de l'année de référence (kWh EF)"
TOTAL_KWH = "Consommation totale (kWh EF)"
INTENSITY = "Consommation surfacique (kWh EF/m²)"
GAP_2030 = "Réduction restant à faire pour 2030 (%)"
MISSING_DAYS = "Jours sans données (année de consommation)"
REFERENCE_MISSING_DAYS = "Jours sans données (année de référence)"

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


def operat_rows(
    buildings: Sequence[Building],
    year: int,
    consumption: Mapping[str, Mapping[Energy, float]],
    reference_year: int,
    reference: Mapping[str, Mapping[Energy, float]],
    *,
    efa_ids: Mapping[str, str] | None = None,
    addresses: Mapping[str, str] | None = None,
    only_subject: bool = False,
    missing_days: Mapping[str, int] | None = None,
    reference_missing_days: Mapping[str, int] | None = None,
    without_data: Collection[str] = (),
) -> list[dict[str, str]]:
    """One row per building: the year's consumption per energy, the reference and the trajectory.

    Args:
        buildings: the EFAs (one building, one EFA).
        year: the year declared.
        consumption: kWh per energy of each building id for ``year``.
        reference_year: the chosen reference year.
        reference: kWh per energy of each building id for the reference year.
        efa_ids: OPERAT's identifier of each building id, once known.
        addresses: address of each building id.
        only_subject: keep only buildings of 1,000 m² or more.
        missing_days: days of ``year`` without data of each building id (its most incomplete energy).
        reference_missing_days: the same for the reference year.
        without_data: building ids without any data in ``year``: their consumption columns are
            left blank, not written as a 0 kWh declaration.

    Returns:
        Rows keyed by :data:`COLUMNS`, values already formatted (integers for kWh).
    """
    rows: list[dict[str, str]] = []
    for building in buildings:
        subject = building.floor_area_m2 >= SUBJECT_AREA_M2
        if only_subject and not subject:
            continue
        used = consumption.get(building.id, {})
        ref = reference.get(building.id, {})
        total = sum(used.get(e, 0.0) for e in ENERGY_COLUMNS)
        ref_total = sum(ref.get(e, 0.0) for e in ENERGY_COLUMNS)
        row = {
            EFA_ID: (efa_ids or {}).get(building.id, ""),
            INTERNAL_REF: building.id,
            NAME: building.name,
            ADDRESS: (addresses or {}).get(building.id, ""),
            ACTIVITY: OPERAT_ACTIVITY[building.usage],
            AREA: f"{building.floor_area_m2:.0f}",
            SUBJECT: "oui" if subject else "non",
            YEAR: str(year),
            TOTAL_KWH: f"{total:.0f}",
            INTENSITY: f"{total / building.floor_area_m2:.1f}",
            REFERENCE_YEAR: str(reference_year) if ref_total else "",
            REFERENCE_KWH: f"{ref_total:.0f}" if ref_total else "",
        }
        for energy, column in ENERGY_COLUMNS.items():
            row[column] = f"{used.get(energy, 0.0):.0f}"
        for deadline, fraction in TRAJECTORY.items():
            row[OBJECTIVE_COLUMNS[deadline]] = f"{ref_total * (1 - fraction):.0f}" if ref_total else ""
        target = ref_total * (1 - TRAJECTORY[2030])
        row[GAP_2030] = f"{100 * max(total - target, 0.0) / total:.1f}" if ref_total and total else ""
        # Not an OPERAT field: how far the sums can be trusted (a year with days missing is under-counted).
        days = (missing_days or {}).get(building.id)
        reference_days = (reference_missing_days or {}).get(building.id)
        row[MISSING_DAYS] = "" if days is None else str(days)
        row[REFERENCE_MISSING_DAYS] = "" if reference_days is None or not ref_total else str(reference_days)
        if building.id in without_data:
            for column in (TOTAL_KWH, INTENSITY, GAP_2030, *ENERGY_COLUMNS.values()):
                row[column] = ""
        rows.append(row)
    return rows


def write_operat_csv(rows: Sequence[Mapping[str, str]], path: Path | None = None) -> str:
    """Write the rows as OPERAT-style CSV (``;`` separator, UTF-8 with BOM).

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
