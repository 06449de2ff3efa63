"""Dashboards: planned, see the issues."""

from __future__ import annotations

__all__: list[str] = []
