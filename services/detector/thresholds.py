"""Thresholds of one environment and service: the defaults, then "<env>/*", then "<env>/<svc>"."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import DetectorSettings, TriggerThresholds


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Every value the detector compares against for one environment and service."""

    error_rate: float
    latency_ms: float
    health_check_failures: int
    budget_ratio: float
    timeout_ms: float
    timeout_rate: float
    window_seconds: float
    min_samples: int


FIELDS = tuple(Thresholds.__dataclass_fields__)


def resolve(settings: DetectorSettings, environment: str, service: str) -> Thresholds:
    """Return the thresholds of ``environment``/``service``; an override's ``None`` keeps the
    value below it."""
    values = {name: getattr(settings, name) for name in FIELDS}
    for key in (f"{environment}/*", f"{environment}/{service}"):
        override: TriggerThresholds | None = settings.overrides.get(key)
        if override is None:
            continue
        for name in FIELDS:
            value = getattr(override, name)
            if value is not None:
                values[name] = value
    return Thresholds(**values)
