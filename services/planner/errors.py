"""Errors of the planner: requests it rejects and plans it cannot find or change."""

from __future__ import annotations

from shared.errors import Conflict, NotFound, TraviError


class PlannerError(TraviError):
    """Base of the planner's errors; ``status_code`` is the HTTP status that reports it."""

    status_code = 400


class RollbackRejected(PlannerError):
    """A manual rollback that may not run, with the request field at fault and the fix."""

    def __init__(self, field: str, value: object, hint: str, *, status_code: int = 422) -> None:
        self.field = field
        self.value = value
        self.hint = hint
        self.status_code = status_code
        value_text = "" if value is None else f" {value!r}"
        super().__init__(f"rejected {field}{value_text}: {hint}")


class PlanNotFound(PlannerError, NotFound):
    """No plan has the given id."""

    status_code = 404

    def __init__(self, plan_id: str) -> None:
        self.plan_id = plan_id
        super().__init__(f"plan {plan_id} not found: list plans with 'travi rollback list'")


class PlanConflict(PlannerError, Conflict):
    """The plan, or another plan of the same service, is in a state that forbids the request."""

    status_code = 409


class DeploymentRejected(RollbackRejected):
    """A deployment record that the planner does not store, with the field at fault and the fix."""
