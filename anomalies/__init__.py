"""Anomalies: the detection an advisor acts on (baselines and savings live in :mod:`mv`).

Reading order for detection: ``features.py`` (hourly data per building ×
usage), ``rules.py`` (explained energy and data-quality rules),
``iforest.py`` and ``thresholds.py`` (the model and its decision),
``lifecycle.py`` (debouncing), ``events.py`` (the events and their cost),
``detect.py`` (the offline run), ``alerts.py`` (e-mail and InfluxDB),
``expected_sink.py`` (expected against observed consumption in InfluxDB).
"""

from __future__ import annotations

import importlib
from typing import Any

# Names are imported on first use: ``mv.baseline`` (savings) should not
# pay for scikit-learn, which only the detectors need.
_WHERE = {
    "Alert": "anomalies.events",
    "AlertLifecycle": "anomalies.lifecycle",
    "AlertState": "anomalies.events",
    "AnomalyEvent": "anomalies.events",
    "DetectConfig": "anomalies.detect",
    "EmailAlerter": "anomalies.alerts",
    "EmailConfig": "anomalies.alerts",
    "EventKind": "anomalies.events",
    "FixedThreshold": "anomalies.thresholds",
    "IsolationForestConfig": "anomalies.iforest",
    "IsolationForestDetector": "anomalies.iforest",
    "LifecycleConfig": "anomalies.lifecycle",
    "QuantileThreshold": "anomalies.thresholds",
    "RulesConfig": "anomalies.rules",
    "detect": "anomalies.detect",
    "read_readings_csv": "anomalies.detect",
}


def __getattr__(name: str) -> Any:
    """Import an exported name from its module on first use (PEP 562)."""
    module = _WHERE.get(name)
    if module is None:
        msg = f"module 'anomalies' has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Alert",
    "AlertLifecycle",
    "AlertState",
    "AnomalyEvent",
    "DetectConfig",
    "EmailAlerter",
    "EmailConfig",
    "EventKind",
    "FixedThreshold",
    "IsolationForestConfig",
    "IsolationForestDetector",
    "LifecycleConfig",
    "QuantileThreshold",
    "RulesConfig",
    "detect",
    "read_readings_csv",
]
