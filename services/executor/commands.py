"""The entry point of execute and cancel commands on their shared durable consumer."""

from __future__ import annotations

import logging
from typing import Any

from faststream.nats import NatsBroker, NatsMessage
from pydantic import ValidationError

from services.executor.executor import Executor
from services.executor.metrics import INVALID_COMMANDS
from shared.bus import CANCEL_SUBJECT, EXECUTE_SUBJECT, dead_letter, describe_validation_error
from shared.contracts import CancelPlan, ExecutePlan
from shared.logs import bind

logger = logging.getLogger(__name__)

CONSUMER = "executor-commands"


class CommandHandler:
    """Validates a command by its subject and passes it to the executor."""

    def __init__(self, broker: NatsBroker, executor: Executor) -> None:
        self.broker = broker
        self.executor = executor

    async def __call__(self, body: dict[str, Any], msg: NatsMessage) -> None:
        subject = msg.raw_message.subject
        model = {EXECUTE_SUBJECT: ExecutePlan, CANCEL_SUBJECT: CancelPlan}.get(subject)
        if model is None:
            await self._reject(subject, msg, f"no executor command is published on {subject}")
            return
        try:
            command = model.model_validate(body)
        except ValidationError as exc:
            await self._reject(subject, msg, describe_validation_error(exc))
            return
        with bind(
            plan_id=command.plan.plan_id,
            service=command.plan.service,
            environment=command.plan.environment,
            event_id=command.event_id,
        ):
            if isinstance(command, ExecutePlan):
                await self.executor.execute(command)
            else:
                await self.executor.cancel(command)

    async def _reject(self, subject: str, msg: NatsMessage, error: str) -> None:
        INVALID_COMMANDS.labels(subject=subject).inc()
        await dead_letter(self.broker, CONSUMER, subject, msg.body, error)
