"""Econome: the command line and the wiring of the pipeline."""

from __future__ import annotations

__all__: list[str] = []
