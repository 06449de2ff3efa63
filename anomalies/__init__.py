"""Anomalies: baselines and savings, and the detection an advisor acts on.

Reading order for detection: ``features.py`` (hourly data per building ×
usage), ``rules.py`` (explained energy and data-quality rules),
``iforest.py`` and ``thresholds.py`` (the model and its decision),
``lifecycle.py`` (debouncing), ``events.py`` (the events and their cost),
``detect.py`` (the offline run), ``alerts.py`` (e-mail and InfluxDB).
"""

from __future__ import annotations

from anomalies.alerts import EmailAlerter, EmailConfig
from anomalies.detect import DetectConfig, detect, read_readings_csv
from anomalies.events import Alert, AlertState, AnomalyEvent, EventKind
from anomalies.iforest import IsolationForestConfig, IsolationForestDetector
from anomalies.lifecycle import AlertLifecycle, LifecycleConfig
from anomalies.rules import RulesConfig
from anomalies.thresholds import FixedThreshold, QuantileThreshold

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
