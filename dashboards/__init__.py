"""Dashboards: Grafana dashboards generated from the inventory, their provisioning files and reports.

Reading order: :mod:`dashboards.grafana` (the dashboards and their InfluxQL),
:mod:`dashboards.provisioning` (the files Grafana loads at start-up),
:mod:`dashboards.push` (the same, pushed through the HTTP API; imported on
demand because it pulls in grafana-client); then the reports,
:mod:`dashboards.reports` (HTML) and :mod:`dashboards.pdf` (the same as PDF).
"""

from __future__ import annotations

from dashboards.grafana import (
    Dashboard,
    DashboardConfig,
    generate_dashboards,
    iter_queries,
)
from dashboards.provisioning import ProvisioningConfig, write_provisioning

__all__ = [
    "Dashboard",
    "DashboardConfig",
    "ProvisioningConfig",
    "generate_dashboards",
    "iter_queries",
    "write_provisioning",
]
