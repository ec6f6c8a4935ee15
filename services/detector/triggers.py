"""The five triggers: apply observations to windows, evaluate, and decide which breaches fire.

Every evaluation has one of four outcomes. ``no_data`` means too few requests in the window
(below ``min_samples``), and ``invalid`` means observations of the message were rejected.
Neither counts as a pass or a breach. A trigger fires when it enters breach, and re-arms only
after an evaluation that passes, so a window that stays in breach fires once. Cooldowns are the
planner's.

Request triggers (``error_rate``, ``latency``, ``timeout``) are evaluated after each message for
the window it touched. ``health_check`` is evaluated after each health-check result, so a
failure streak that ends inside one batch still counts, and ``budget_exceeded`` after each
budget observation. The module does no I/O: the consumer feeds it messages in stream order and
publishes what fires.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.detector.observations import ParsedMessage
from services.detector.thresholds import Thresholds, resolve
from services.detector.windows import Budget, HealthChecks, RequestWindow
from shared.settings import DetectorSettings

PASS = "pass"
BREACH = "breach"
NO_DATA = "no_data"
INVALID = "invalid"
OUTCOMES = (PASS, BREACH, NO_DATA, INVALID)
REQUEST_TRIGGERS = ("error_rate", "latency", "timeout")
TRIGGERS_BY_KIND = {
    "request": REQUEST_TRIGGERS,
    "health_check": ("health_check",),
    "budget": ("budget_exceeded",),
}
# Identifies breach events: the same crossing, replayed after a restart, gets the same event_id.
BREACH_NAMESPACE = uuid.UUID("3f0b7c1e-8a52-4d7f-9d6e-2c1b5a4e7f10")

WindowKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Decision:
    """A breach that fired, or a trigger that re-armed, with everything needed to explain it."""

    environment: str
    service: str
    version: str
    trigger: str
    outcome: str
    fired: bool
    measured: float
    threshold: float
    samples: int
    window_seconds: float
    detail: str
    event_id: uuid.UUID
    check: str | None = None


@dataclass(slots=True)
class Window:
    """All state of one environment, service and version."""

    key: WindowKey
    thresholds: Thresholds
    requests: RequestWindow
    health: HealthChecks = field(default_factory=HealthChecks)
    budget: Budget = field(default_factory=Budget)
    # Triggers that fired and have not passed since ("health_check:<check>" per check). A
    # trigger missing from the set is armed.
    fired: set[str] = field(default_factory=set)
    last_outcomes: dict[str, str] = field(default_factory=dict)
    last_arrival: float = 0.0
    # The window's end when the last message arrived; idle windows advance from it.
    end_at_arrival: float = float("-inf")


class Detector:
    """Windows of every environment, service and version, and the trigger decisions on them."""

    def __init__(self, settings: DetectorSettings) -> None:
        self.settings = settings
        self.windows: dict[WindowKey, Window] = {}
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self._thresholds: dict[tuple[str, str], Thresholds] = {}

    def thresholds(self, environment: str, service: str) -> Thresholds:
        """Return (and cache) the thresholds of ``environment``/``service``."""
        key = (environment, service)
        found = self._thresholds.get(key)
        if found is None:
            found = self._thresholds[key] = resolve(self.settings, environment, service)
        return found

    def window(self, key: WindowKey, arrival: float) -> Window:
        """Return the window of ``key``, created if new; evict the least recently used."""
        window = self.windows.pop(key, None)
        if window is None:
            thresholds = self.thresholds(key[0], key[1])
            requests = RequestWindow(
                thresholds.window_seconds,
                self.settings.max_samples_per_window,
                thresholds.latency_ms,
                thresholds.timeout_ms,
            )
            window = Window(key, thresholds, requests)
            while len(self.windows) >= self.settings.max_windows:
                self.windows.pop(next(iter(self.windows)))
        window.last_arrival = arrival
        self.windows[key] = window
        return window

    def apply(self, message: ParsedMessage, sequence: int, arrival: float) -> list[Decision]:
        """Apply one validated message and return the breaches that fired and the re-arms.

        ``sequence`` is the message's stream sequence (it makes breach ids deterministic);
        ``arrival`` is the wall clock when it was read, in seconds since the epoch.
        """
        self._count_invalid(message)
        if not message.accepted:
            return []
        window = self.window((message.environment, message.service, message.version), arrival)
        decisions: list[Decision] = []
        if message.requests:
            window.requests.add_many(message.requests, latest_end=arrival)
            self._evaluate_requests(window, sequence, decisions)
        for at, check, ok, check_id in message.health_checks:
            if window.health.record(check, ok, check_id):
                window.requests.advance(min(at, arrival))
                self._evaluate_health(window, check, sequence, decisions)
        for at, spent, budget in message.budgets:
            if window.budget.record(at, spent, budget):
                window.requests.advance(min(at, arrival))
                self._evaluate_budget(window, sequence, decisions)
        window.end_at_arrival = window.requests.end
        return decisions

    def _count_invalid(self, message: ParsedMessage) -> None:
        if not message.rejections:
            return
        triggers: set[str] = set()
        for rejection in message.rejections:
            triggers.update(TRIGGERS_BY_KIND.get(rejection.kind or "", ("unknown",)))
        for trigger in triggers:
            self.outcomes[trigger, INVALID] += 1

    def advance_idle(self, now: float, idle_after: float, sequence: int = 0) -> list[Decision]:
        """Advance windows that received nothing for ``idle_after`` seconds by the wall-clock
        time since, re-evaluate them, and drop those left empty for two window lengths.

        A window's end follows event time while traffic flows. This moves it on when traffic
        stops, so old requests expire and the window reports ``no_data`` instead of its last state.
        ``sequence`` (the last applied stream sequence) makes the ids of breaches found here unique.
        """
        decisions: list[Decision] = []
        for key, window in list(self.windows.items()):
            idle = now - window.last_arrival
            if idle < idle_after:
                continue
            requests = window.requests
            if window.end_at_arrival > float("-inf"):
                requests.advance(window.end_at_arrival + idle)
            if requests.count == 0 and idle >= 2 * window.thresholds.window_seconds:
                del self.windows[key]
                continue
            self._evaluate_requests(window, sequence, decisions)
        return decisions

    def _evaluate_requests(self, window: Window, sequence: int, out: list[Decision]) -> None:
        requests = window.requests
        limits = window.thresholds
        outcomes = self.outcomes
        last = window.last_outcomes
        if requests.count < limits.min_samples:
            for trigger in REQUEST_TRIGGERS:
                outcomes[trigger, NO_DATA] += 1
                last[trigger] = NO_DATA
            return
        # Decide with running counts; build the explanation only when the state changes.
        for trigger, breached in (
            ("error_rate", requests.error_rate > limits.error_rate),
            ("latency", requests.p95_exceeds_threshold),
            ("timeout", requests.timeout_rate > limits.timeout_rate),
        ):
            outcome = BREACH if breached else PASS
            outcomes[trigger, outcome] += 1
            last[trigger] = outcome
            if breached != (trigger in window.fired):
                self._request_transition(window, trigger, breached, sequence, out)

    def _request_transition(
        self, window: Window, trigger: str, breached: bool, sequence: int, out: list[Decision]
    ) -> None:
        requests = window.requests
        limits = window.thresholds
        count = requests.count
        if trigger == "error_rate":
            measure, threshold = (lambda: requests.error_rate), limits.error_rate
            describe = lambda value: (  # noqa: E731 - a short explanation, built only here
                f"{requests.errors} of {count} requests failed "
                f"({value:.3f} > {limits.error_rate:.3f})")
        elif trigger == "latency":
            measure, threshold = requests.p95, limits.latency_ms
            describe = lambda value: (  # noqa: E731
                f"P95 latency (nearest rank) of {count} requests is "
                f"{value:.1f} ms > {limits.latency_ms:.1f} ms")
        else:
            measure, threshold = (lambda: requests.timeout_rate), limits.timeout_rate
            describe = lambda value: (  # noqa: E731
                f"{requests.timeouts} of {count} requests timed out at or past "
                f"{limits.timeout_ms:.0f} ms or were flagged "
                f"(share {value:.3f} > {limits.timeout_rate:.3f})")
        self._decide(window, trigger, breached, measure=measure, threshold=threshold,
                     samples=count, sequence=sequence, out=out, describe=describe, record=False)

    def _evaluate_health(
        self, window: Window, check: str, sequence: int, out: list[Decision]
    ) -> None:
        failures = window.health.failures[check]
        limit = window.thresholds.health_check_failures
        self._decide(
            window, "health_check", failures >= limit,
            measure=lambda: float(failures), threshold=float(limit), samples=failures,
            sequence=sequence, out=out,
            describe=lambda _value: f"health check {check!r} failed {failures} times in a row "
                                    f"(the limit is {limit})",
            check=check,
        )

    def _evaluate_budget(self, window: Window, sequence: int, out: list[Decision]) -> None:
        budget = window.budget
        ratio = budget.ratio or 0.0
        limit = window.thresholds.budget_ratio
        self._decide(
            window, "budget_exceeded", ratio >= limit,
            measure=lambda: ratio, threshold=limit, samples=1, sequence=sequence, out=out,
            describe=lambda _value: f"spent {budget.spent:g} of a budget of {budget.budget:g} "
                                    f"(ratio {ratio:.3f} >= {limit:g})",
        )

    def _record(
        self, window: Window, trigger: str, outcome: str, state_key: str | None = None
    ) -> None:
        self.outcomes[trigger, outcome] += 1
        window.last_outcomes[state_key or trigger] = outcome

    def _decide(
        self,
        window: Window,
        trigger: str,
        breached: bool,
        *,
        measure: Callable[[], float],
        threshold: float,
        samples: int,
        sequence: int,
        out: list[Decision],
        describe: Callable[[float], str],
        check: str | None = None,
        record: bool = True,
    ) -> None:
        """Record the outcome; on entering breach or passing again, append a decision.

        ``measure`` runs only when the trigger fires, because the P95 sorts the window.
        """
        state_key = f"{trigger}:{check}" if check is not None else trigger
        if record:
            self._record(window, trigger, BREACH if breached else PASS, state_key)
        if breached == (state_key in window.fired):
            return
        if breached:
            window.fired.add(state_key)
        else:
            window.fired.discard(state_key)
        measured = float(measure()) if breached else 0.0
        detail = describe(measured) if breached else "passed again, so the trigger re-armed"
        out.append(
            self._decision(window, trigger, breached, measured, threshold, samples, sequence,
                           detail, check)
        )

    def _decision(
        self,
        window: Window,
        trigger: str,
        fired: bool,
        measured: float,
        threshold: float,
        samples: int,
        sequence: int,
        detail: str,
        check: str | None,
    ) -> Decision:
        environment, service, version = window.key
        end = window.requests.end
        if end > float("-inf"):
            ending = datetime.fromtimestamp(end, UTC).isoformat(timespec="milliseconds")
            detail = f"{detail}; window of {window.thresholds.window_seconds:g} s ending {ending}"
        name = f"{environment}/{service}/{version}/{trigger}/{check or ''}/{sequence}"
        return Decision(
            environment=environment,
            service=service,
            version=version,
            trigger=trigger,
            outcome=BREACH if fired else PASS,
            fired=fired,
            measured=measured,
            threshold=threshold,
            samples=samples,
            window_seconds=window.thresholds.window_seconds,
            detail=detail,
            event_id=uuid.uuid5(BREACH_NAMESPACE, name),
            check=check,
        )
