"""French default tariffs and emission factors.

These defaults let a commune start before it has typed in its own contracts.
Replace them in the ``energies:`` block of the inventory as soon as the bills
are at hand: an advisor's € figures are only as good as these prices.

Emission factors (kgCO2e per kWh of final energy, or per m3 of water) are those
of the arrêté du 31 mars 2021 relatif au diagnostic de performance énergétique
(DPE), annexe 3, used by OPERAT and by most French advisors; they match the
ADEME Base Empreinte values for the same energies. Water is the ADEME Base
Empreinte factor for drinking water distributed in France.

Natural gas is counted in kWh PCS (higher heating value: what GRDF and the bills
give, ``conversion_kwh_per_unit`` of a gas meter), while the DPE's factor is per kWh
PCI (lower heating value, about 1.11 times fewer kWh): applied to kWh PCS, it counts
about 11 % more emissions than a PCS factor would. That is the cautious convention of
French carbon accounting (every boiler taken as non-condensing); a commune reporting with
a PCS factor sets its own in ``energies``.

Prices are indicative all-taxes-included averages for a small commune in 2025:
electricity from the CRE "Tarif Bleu" for communes (≤ 10 employees, ≤ 36 kVA),
natural gas from the CRE "prix repère" of the gas supply, heating networks from
the Enquête annuelle des réseaux de chaleur (SNCU/Amorce), fuel oil and wood
pellets from the Pégase price series of the Ministry of Ecological Transition
(SDES), water from the Observatoire SISPEA (drinking water + sanitation,
120 m3 reference bill).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EnergyTariff(BaseModel):
    """Price and emission factor of one energy, per unit: kWh of final energy, or m3 of water (the inventory refuses another)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    price_eur_per_unit: float = Field(ge=0)
    emission_kgco2e_per_unit: float = Field(ge=0)
    unit: str = "kWh"
    source: str = ""


# Keys are the values of ``inventory.model.Energy``; kept as strings here so
# this module stays free of the model it serves.
DEFAULT_TARIFFS_BY_NAME: dict[str, EnergyTariff] = {
    "electricity": EnergyTariff(
        price_eur_per_unit=0.25,
        emission_kgco2e_per_unit=0.064,
        source="price: CRE Tarif Bleu communes 2025 (indicative); factor: DPE arrêté 31/03/2021",
    ),
    "natural_gas": EnergyTariff(
        price_eur_per_unit=0.11,
        emission_kgco2e_per_unit=0.227,
        source="price: CRE prix repère gaz 2025 (indicative); factor: DPE arrêté 31/03/2021",
    ),
    "heating_network": EnergyTariff(
        price_eur_per_unit=0.10,
        emission_kgco2e_per_unit=0.101,
        source="price: SNCU/Amorce survey (indicative); factor: national average of the arrêté réseaux",
    ),
    "fuel_oil": EnergyTariff(
        price_eur_per_unit=0.12,
        emission_kgco2e_per_unit=0.324,
        source="price: SDES Pégase (indicative); factor: DPE arrêté 31/03/2021",
    ),
    "wood_pellets": EnergyTariff(
        price_eur_per_unit=0.08,
        emission_kgco2e_per_unit=0.030,
        source="price: SDES Pégase (indicative); factor: DPE arrêté 31/03/2021",
    ),
    "water": EnergyTariff(
        price_eur_per_unit=4.3,
        emission_kgco2e_per_unit=0.132,
        unit="m3",
        source="price: Observatoire SISPEA (indicative); factor: ADEME Base Empreinte, eau potable",
    ),
}
