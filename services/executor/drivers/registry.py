"""Choose the driver and the traffic control of a service from the executor's settings."""

from __future__ import annotations

from dataclasses import dataclass

from services.executor.drivers.base import DeploymentDriver, TrafficControl, number_option
from services.executor.drivers.command import CommandDriver
from services.executor.drivers.git import GitDriver
from services.executor.drivers.http import HttpDriver
from services.executor.drivers.noop import NoopDriver
from services.executor.drivers.releases import ReleasesDriver
from services.executor.drivers.traffic import CommandTraffic, HttpTraffic, NoTraffic
from services.executor.errors import ConfigurationError
from shared.names import validate_name
from shared.settings import DriverConfig, ExecutorSettings

DRIVERS: dict[str, type[DeploymentDriver]] = {
    "none": NoopDriver,
    "releases": ReleasesDriver,
    "command": CommandDriver,
    "http": HttpDriver,
    "git": GitDriver,
}
TRAFFIC: dict[str, type[TrafficControl]] = {
    "none": NoTraffic,
    "http": HttpTraffic,
    "command": CommandTraffic,
}


@dataclass(frozen=True)
class Adapters:
    """The driver and traffic control of one service, with its configuration."""

    config: DriverConfig
    driver: DeploymentDriver
    traffic: TrafficControl
    # Pause between two health probes of verify_health, seconds.
    health_interval: float = 1.0


def config_for(
    settings: ExecutorSettings, environment: str, service: str
) -> tuple[str, DriverConfig]:
    """Return the key and configuration of a service: "<env>/<svc>", then "<svc>", then none."""
    for key in (f"{environment}/{service}", service):
        if key in settings.services:
            return key, settings.services[key]
    return "default", DriverConfig()


def build_adapters(settings: ExecutorSettings, environment: str, service: str) -> Adapters:
    """Build the driver and traffic control of a service; raises ConfigurationError."""
    key, config = config_for(settings, environment, service)
    where = f'TRAVI_EXECUTOR__SERVICES["{key}"]'
    driver = DRIVERS[config.driver](config.options, f"{where}.options")
    traffic = TRAFFIC[config.traffic](config.traffic_options, f"{where}.traffic_options")
    interval = number_option(config.options, "health_interval_seconds", 1.0, f"{where}.options")
    return Adapters(config, driver, traffic, interval)


def validate_all(settings: ExecutorSettings) -> None:
    """Build every configured service's adapters once, so a bad setting fails at start-up."""
    for key in settings.services:
        environment, _, service = key.rpartition("/")
        try:
            validate_name(service, "service")
            if environment:
                validate_name(environment, "environment")
        except ValueError as exc:
            raise ConfigurationError(
                f'invalid key "{key}" in TRAVI_EXECUTOR__SERVICES: {exc}. '
                'Use "<env>/<svc>" or "<svc>".'
            ) from exc
        build_adapters(settings, environment or "default", service)
