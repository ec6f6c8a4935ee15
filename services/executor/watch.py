"""The watch period: a breach of a restored version soon after its plan completed escalates."""

from __future__ import annotations

import logging

from services.executor.events import EventSink, escalation
from services.executor.metrics import ESCALATIONS
from services.executor.repository import ExecutorRepository
from shared.contracts import BreachDetected, utc_now

logger = logging.getLogger(__name__)

ESCALATION_REASON = "watch_breach"


class WatchPeriod:
    """Raises EscalationRaised for each watched plan that a breach falls into."""

    def __init__(self, repo: ExecutorRepository, sink: EventSink) -> None:
        self.repo = repo
        self.sink = sink

    async def on_breach(self, breach: BreachDetected) -> int:
        """Escalate every completed plan of the breached service still in its watch period."""
        plans = await self.repo.watched_plans(
            breach.environment, breach.service, breach.version, breach.detected_at
        )
        for state in plans:
            plan = state.plan
            detail = (
                f"{plan.service} in {plan.environment} breached {breach.trigger} "
                f"({breach.measured:g} against {breach.threshold:g}) on the restored version "
                f"{plan.to_version} during the watch period after plan {plan.plan_id}"
            )
            await self.sink.send(*escalation(plan, ESCALATION_REASON, detail))
            await self.repo.mark_escalated(str(plan.plan_id), utc_now())
            ESCALATIONS.labels(reason=ESCALATION_REASON).inc()
            logger.warning("Escalated: %s.", detail)
        return len(plans)
