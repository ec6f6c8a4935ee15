"""The statistics document, built from summed counts. No I/O.

Definitions, as served by ``GET /api/admin/rollback/stats``:

- ``successRate`` is completed / (completed + failed); cancelled plans count in neither. It is
  null when no plan is completed or failed.
- ``avgDurationMs`` is the mean duration of final plans (completed, failed or cancelled) that
  have both a start and an end, with the end not before the start. It is null when no plan
  qualifies. Durations are summed in whole milliseconds.
- The time range (``since`` inclusive, ``until`` exclusive) selects plans by creation time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from services.stats.models import COUNT_FIELDS


@dataclass
class Totals:
    """Counts summed over any number of groups, with the split by trigger and trigger type."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_FIELDS, 0))
    by_trigger: dict[str, int] = field(default_factory=dict)
    by_type: dict[str, int] = field(default_factory=dict)

    def add(self, trigger: str, trigger_type: str, counts: Mapping[str, int]) -> None:
        """Add the counts of one group of plans with this trigger and trigger type."""
        for name in COUNT_FIELDS:
            self.counts[name] += int(counts.get(name, 0) or 0)
        total = int(counts.get("total", 0) or 0)
        if total:
            self.by_trigger[trigger] = self.by_trigger.get(trigger, 0) + total
            self.by_type[trigger_type] = self.by_type.get(trigger_type, 0) + total


def _finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return value


def stats_document(totals: Totals) -> dict[str, object]:
    """Return the statistics with exactly the documented fields, never NaN or infinity."""
    counts = totals.counts
    decided = counts["completed"] + counts["failed"]
    success_rate = counts["completed"] / decided if decided > 0 else None
    average = counts["duration_sum_ms"] / counts["duration_count"] if counts["duration_count"] > 0 else None
    return {
        "total": counts["total"],
        "pending": counts["pending"],
        "inProgress": counts["in_progress"],
        "completed": counts["completed"],
        "failed": counts["failed"],
        "cancelled": counts["cancelled"],
        "automaticCount": totals.by_type.get("automatic", 0),
        "manualCount": totals.by_type.get("manual", 0),
        "avgDurationMs": _finite_or_none(round(average, 3) if average is not None else None),
        "successRate": _finite_or_none(success_rate),
        "triggerBreakdown": dict(sorted(totals.by_trigger.items())),
    }


def day_start(day: date) -> datetime:
    """Return midnight UTC at the start of ``day``."""
    return datetime.combine(day, time.min, tzinfo=UTC)


@dataclass(frozen=True)
class RangePlan:
    """How to sum a time range: whole days from the daily counts, edges from the plans.

    ``first_day`` and ``end_day`` bound the whole days (end exclusive; None is unbounded).
    ``partial`` lists the [start, end) spans inside the first and last day that are read
    from the plans themselves, so the cost depends on the plans of at most two days.
    """

    first_day: date | None
    end_day: date | None
    partial: tuple[tuple[datetime, datetime], ...]

    @property
    def has_whole_days(self) -> bool:
        """Whether any whole day lies inside the range."""
        if self.first_day is None or self.end_day is None:
            return True
        return self.first_day < self.end_day


def plan_range(since: datetime | None, until: datetime | None) -> RangePlan:
    """Split [since, until) into whole UTC days and the partial days at its edges."""
    partial: list[tuple[datetime, datetime]] = []
    first_day: date | None = None
    end_day: date | None = None
    if since is not None:
        since = since.astimezone(UTC)
        first_day = since.date()
        if since != day_start(first_day):
            first_day += timedelta(days=1)
            edge_end = day_start(first_day)
            partial.append((since, edge_end if until is None else min(edge_end, until)))
    if until is not None:
        until = until.astimezone(UTC)
        end_day = until.date()
        if until != day_start(end_day):
            edge_start = day_start(end_day)
            start = edge_start if since is None else max(edge_start, since)
            if not partial or partial[0] != (start, until):
                partial.append((start, until))
    if first_day is not None and end_day is not None and end_day < first_day:
        end_day = first_day
    spans = tuple((start, end) for start, end in partial if start < end)
    return RangePlan(first_day, end_day, tuple(dict.fromkeys(spans)))


def add_all(totals: Totals, groups: Iterable[tuple[str, str, Mapping[str, int]]]) -> Totals:
    """Add ``(trigger, trigger_type, counts)`` groups to ``totals`` and return it."""
    for trigger, trigger_type, counts in groups:
        totals.add(trigger, trigger_type, counts)
    return totals
