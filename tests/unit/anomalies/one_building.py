"""A one-building inventory for the rule tests: the YAML they all need, with the parts each test varies."""

from __future__ import annotations

WEEKDAYS = """          weekly:
            mon: ['08:00-18:00']
            tue: ['08:00-18:00']
            wed: ['08:00-18:00']
            thu: ['08:00-18:00']
            fri: ['08:00-18:00']
"""
"""Open Monday to Friday, 8:00-18:00 (the ``schedule:`` block's lines)."""
OUTDOOR = "          - {id: b1-outdoor, quantity: temperature, unit: degC, usage: weather, mqtt: {topic: t/b1/outdoor}}\n"
"""The outdoor thermometer (a ``points:`` line)."""


def one_building_yaml(
    points: str,
    *,
    name: str = "Ecole",
    usage: str = "school",
    floor_area_m2: float = 500,
    heated_area_m2: float = 450,
    extra: str = "",
    schedule: str = WEEKDAYS,
) -> str:
    """The YAML of a commune (school holiday zone A) with one building ``b1``, for :func:`inventory.parse_inventory`.

    Args:
        points: the ``points:`` lines (10-space indent, as :data:`OUTDOOR`).
        name: the building's name.
        usage: its usage.
        floor_area_m2: floor area.
        heated_area_m2: heated area.
        extra: more building lines (8-space indent): setpoints, heating season.
        schedule: the ``schedule:`` lines (10-space indent), as :data:`WEEKDAYS`.
    """
    return f"""
organisation: {{name: Commune test, population: 1200, school_holiday_zone: A}}
mqtt_brokers:
  - {{host: 127.0.0.1}}
sites:
  - id: s1
    name: Site
    buildings:
      - id: b1
        name: {name}
        usage: {usage}
        floor_area_m2: {floor_area_m2}
        heated_area_m2: {heated_area_m2}
{extra}        schedule:
{schedule}        points:
{points}"""

