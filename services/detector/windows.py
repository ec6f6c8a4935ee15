"""Sliding event-time windows of requests, and the P95 they report.

A window covers the ``window_seconds`` that end at the newest event time it has seen (its
``end``, which :meth:`RequestWindow.add_many` may cap at the reader's clock), so
``(end - window_seconds, end]``. It keeps each request as ``(at, latency_ms,
flags)`` in a heap ordered by time, which lets requests arrive out of order and still expire
exactly, and it keeps running counts of requests, errors, timeouts and requests slower than the
latency threshold. Memory is bounded: past ``max_samples`` the oldest requests are dropped first.

P95 method: nearest rank. With the ``n`` latencies sorted ascending, P95 is the one at rank
``ceil(0.95 * n)`` (1-based), so it is always an observed latency. Because of that definition,
"P95 exceeds T" holds exactly when more than ``n - ceil(0.95 * n)`` requests are slower than
``T``, so the window decides a latency breach from a running count in constant time, and sorts
only to report the measured P95.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable

ERROR = 1
TIMEOUT = 2
SLOW = 4


def nearest_rank(count: int, percentile: int = 95) -> int:
    """Return the 1-based rank of the ``percentile`` in ``count`` sorted values."""
    return (percentile * count + 99) // 100


def percentile_nearest_rank(values: Iterable[float], percentile: int = 95) -> float:
    """Return the nearest-rank ``percentile`` of ``values``; raise ValueError when empty."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values to take a percentile of")
    return ordered[nearest_rank(len(ordered), percentile) - 1]


class RequestWindow:
    """Requests of one environment, service and version over a sliding event-time window."""

    __slots__ = (
        "window_seconds", "max_samples", "latency_threshold", "timeout_ms",
        "end", "count", "errors", "timeouts", "slow", "_heap",
    )

    def __init__(
        self,
        window_seconds: float,
        max_samples: int,
        latency_threshold: float,
        timeout_ms: float,
    ) -> None:
        self.window_seconds = window_seconds
        self.max_samples = max_samples
        self.latency_threshold = latency_threshold
        self.timeout_ms = timeout_ms
        self.end = float("-inf")
        self.count = 0
        self.errors = 0
        self.timeouts = 0
        self.slow = 0
        self._heap: list[tuple[float, float, int]] = []

    def add_many(
        self, requests: Iterable[tuple[float, float, bool, bool]], latest_end: float = math.inf
    ) -> None:
        """Add ``(at, latency_ms, is_error, timed_out)`` requests, then expire and trim.

        The end follows the newest ``at`` but stops at ``latest_end`` (the reader's clock), so a
        producer whose clock runs ahead cannot expire the requests of the others. Its own
        requests stay until the end passes them by ``window_seconds``.
        """
        heap = self._heap
        push = heapq.heappush
        threshold = self.latency_threshold
        timeout_ms = self.timeout_ms
        end = self.end
        errors = timeouts = slow = added = 0
        for at, latency, is_error, timed_out in requests:
            flags = 0
            if is_error:
                flags = ERROR
                errors += 1
            if timed_out or latency >= timeout_ms:
                flags |= TIMEOUT
                timeouts += 1
            if latency > threshold:
                flags |= SLOW
                slow += 1
            if at > end:
                end = at
            push(heap, (at, latency, flags))
            added += 1
        self.end = max(self.end, min(end, latest_end))
        self.count += added
        self.errors += errors
        self.timeouts += timeouts
        self.slow += slow
        self.advance(self.end)

    def advance(self, end: float) -> None:
        """Move the window's end to ``end`` (if later), drop expired requests, trim to size."""
        if end > self.end:
            self.end = end
        horizon = self.end - self.window_seconds
        heap = self._heap
        while heap and (heap[0][0] <= horizon or self.count > self.max_samples):
            self._forget(heapq.heappop(heap)[2])

    def _forget(self, flags: int) -> None:
        self.count -= 1
        if flags & ERROR:
            self.errors -= 1
        if flags & TIMEOUT:
            self.timeouts -= 1
        if flags & SLOW:
            self.slow -= 1

    @property
    def error_rate(self) -> float:
        """Share of failed requests; 0 when the window is empty."""
        return self.errors / self.count if self.count else 0.0

    @property
    def timeout_rate(self) -> float:
        """Share of requests that timed out; 0 when the window is empty."""
        return self.timeouts / self.count if self.count else 0.0

    @property
    def p95_exceeds_threshold(self) -> bool:
        """Whether the nearest-rank P95 latency is above ``latency_threshold``."""
        return self.count > 0 and self.slow > self.count - nearest_rank(self.count)

    def p95(self) -> float:
        """Return the nearest-rank P95 latency (sorts the window: call it to report, not to
        decide); raise ValueError when the window is empty."""
        return percentile_nearest_rank(item[1] for item in self._heap)

    def latencies(self) -> list[float]:
        """Return the latencies in the window, in no particular order."""
        return [item[1] for item in self._heap]


class HealthChecks:
    """Consecutive failures per health check of one environment, service and version.

    Results count in the order they arrive; a success resets its check's count. A result whose
    ``check_id`` was seen among the last ``remembered_ids`` ids counts once.

    NOTE: a streak does not expire with time while its window lives, but a restart rebuilds it
    only from the results of the last window, so a long streak can restart shorter.
    """

    __slots__ = ("failures", "_seen", "_order", "remembered_ids")

    def __init__(self, remembered_ids: int = 1024) -> None:
        self.failures: dict[str, int] = {}
        self._seen: set[str] = set()
        self._order: list[str] = []
        self.remembered_ids = remembered_ids

    def record(self, check: str, ok: bool, check_id: str | None) -> bool:
        """Count one result; return False when its ``check_id`` was already counted."""
        if check_id is not None:
            if check_id in self._seen:
                return False
            self._seen.add(check_id)
            self._order.append(check_id)
            if len(self._order) > 2 * self.remembered_ids:
                dropped = self._order[: self.remembered_ids]
                del self._order[: self.remembered_ids]
                self._seen.difference_update(dropped)
        self.failures[check] = 0 if ok else self.failures.get(check, 0) + 1
        return True


class Budget:
    """The newest budget observation, by event time, of one environment, service and version."""

    __slots__ = ("at", "spent", "budget")

    def __init__(self) -> None:
        self.at = float("-inf")
        self.spent = 0.0
        self.budget = 0.0

    def record(self, at: float, spent: float, budget: float) -> bool:
        """Keep the observation if it is the newest; return whether it was kept."""
        if at < self.at:
            return False
        self.at, self.spent, self.budget = at, spent, budget
        return True

    @property
    def ratio(self) -> float | None:
        """``spent / budget``, or None before the first observation."""
        return self.spent / self.budget if self.budget > 0 else None
