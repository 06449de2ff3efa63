"""Measurement and verification: degree days, weather-normalised baselines, savings.

Reading order: ``degreedays.py`` (DJU from outdoor temperatures),
``baseline.py`` (daily change-point and hourly TOWT models, ASHRAE
Guideline 14 statistics), ``savings.py`` (avoided energy with its
uncertainty, in kWh, € and kgCO2e). ``anomalies`` uses the same baselines as
the expected consumption of a building; ``dashboards`` reports the savings.
"""
