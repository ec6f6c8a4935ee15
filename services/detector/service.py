"""Wiring of the detector service: the metrics consumer, the breach publisher and HTTP routes."""

from __future__ import annotations

from pathlib import Path

from services.detector.api import build_router
from services.detector.consumer import MetricsConsumer
from services.detector.publisher import BreachPublisher
from services.detector.triggers import Detector
from shared.service import Service, ServiceContext

MIGRATIONS = Path(__file__).with_name("migrations")


def create(context: ServiceContext) -> Service:
    """Build the detector; its consumer starts after the broker, so it can publish breaches."""
    settings = context.settings
    detector = Detector(settings.detector)
    publisher = BreachPublisher(
        context.broker,
        timeout=settings.publish_timeout_seconds,
        tracer_provider=context.tracer_provider,
    )
    consumer = MetricsConsumer(settings, detector, publisher, context.broker)
    router = build_router(settings, context.auth, context.broker, publisher, detector)
    service = Service(name="detector", migrations=MIGRATIONS, router=router)
    service.on_start += [publisher.start, consumer.start]
    service.on_stop += [publisher.stop, consumer.stop]
    service.consumer = consumer  # type: ignore[attr-defined] - reached by tests and benchmarks
    return service
