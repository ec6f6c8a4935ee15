"""The time from a breach to the executing plan, split by stage.

Usage: .venv/bin/python bench/breach_trace.py [--breaches 60] [--database-url URL] [--services all]

Runs the breach part of bench/recovery.py with timestamps added around the stages of the path:
the planner's handler and decision, each JetStream publish, the executor's command handler and
claim, and the first step. For each stage it prints the median and p90 time since the breach was
published, in milliseconds. The wrappers add a little time of their own, so read the gaps between
stages rather than the total, which bench/recovery.py measures without them.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import recovery  # noqa: E402 - a sibling script, found through the path set above.

import services.executor.events as executor_events  # noqa: E402
import services.planner.service as planner_service  # noqa: E402
from services.executor.commands import CommandHandler  # noqa: E402
from services.executor.repository import ExecutorRepository  # noqa: E402
from services.executor.runner import PlanRunner  # noqa: E402
from services.planner.planning import Planner  # noqa: E402
from shared.bus import publish as bus_publish  # noqa: E402
from shared.logs import setup_logging  # noqa: E402

# Stage name and time, per measured service, in the order they happened.
marks: dict[str, list[tuple[str, float]]] = {}


def mark(service: str | None, stage: str) -> None:
    """Record that ``service``'s breach reached ``stage`` now; other services are ignored."""
    if service and service.startswith("svc-"):
        marks.setdefault(service, []).append((stage, time.perf_counter()))


def wrap(owner: Any, name: str, stage: str, service_of: Callable[..., str | None]) -> None:
    """Replace the coroutine function ``owner.name`` with one that marks its start and end."""
    original = getattr(owner, name)

    @functools.wraps(original)
    async def marked(*args: Any, **kwargs: Any) -> Any:
        service = service_of(*args, **kwargs)
        mark(service, f"{stage} started")
        try:
            return await original(*args, **kwargs)
        finally:
            mark(service, f"{stage} ended")

    setattr(owner, name, marked)


def _published_service(_broker: Any, subject: str, event: Any, **_kwargs: Any) -> str | None:
    plan = getattr(event, "plan", None)
    return plan.service if plan is not None else subject.rsplit(".", 1)[-1]


def install_marks() -> None:
    """Wrap the stages of the breach path."""
    wrap(Planner, "handle_breach", "planner handler", lambda _self, breach, _subject: breach.service)
    wrap(Planner, "_decide_breach", "planner decision", lambda _self, breach, _subject: breach.service)
    wrap(
        CommandHandler,
        "__call__",
        "executor command",
        lambda _self, body, _msg: body.get("plan", {}).get("service"),
    )
    wrap(ExecutorRepository, "claim", "executor claim", lambda _self, plan, **_kwargs: plan.service)
    wrap(
        PlanRunner,
        "_run_step",
        "first step",
        lambda self, name: self.state.plan.service if name == "validate_target" else None,
    )

    async def publish(broker: Any, subject: str, event: Any, **kwargs: Any) -> None:
        service = _published_service(broker, subject, event)
        mark(service, f"publish {type(event).__name__} started")
        try:
            await bus_publish(broker, subject, event, **kwargs)
        finally:
            mark(service, f"publish {type(event).__name__} ended")

    planner_service.publish = publish
    executor_events.publish = publish

    original_publish = recovery.publish

    async def publish_breach(broker: Any, subject: str, event: Any, **kwargs: Any) -> None:
        if ".production." in subject:
            mark(event.service, "breach published")
        await original_publish(broker, subject, event, **kwargs)

    recovery.publish = publish_breach

    original_wait = recovery._wait_for

    async def wait_for(arrivals: dict[str, float], key: str, timeout: float = 10.0) -> None:
        await original_wait(arrivals, key, timeout)
        if key in arrivals and key.startswith("svc-"):
            marks.setdefault(key, []).append(("step event received", arrivals[key]))

    recovery._wait_for = wait_for


def report() -> None:
    """Print each stage's median and p90 time since its breach was published."""
    offsets: dict[str, list[float]] = {}
    for stages in marks.values():
        published = dict(stages)["breach published"]
        seen = set()
        for stage, at in stages:
            # Stages before the breach, such as the setup's deployment records, are left out.
            if at >= published and stage not in seen:
                seen.add(stage)
                offsets.setdefault(stage, []).append((at - published) * 1000)
    rows = sorted(offsets.items(), key=lambda item: statistics.median(item[1]))
    for stage, values in rows:
        print(
            f"{stage:38s} p50 {statistics.median(values):6.2f} ms   "
            f"p90 {recovery.percentile(values, 0.9):6.2f} ms"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--breaches", type=int, default=60)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--gap", type=float, default=0.2,
                        help="Seconds between a plan's outcome and the next breach.")
    parser.add_argument("--services", type=recovery.parse_services, default=recovery.SERVICES,
                        help="Services in the process, comma-separated, or 'all'.")
    args = parser.parse_args()
    setup_logging("WARNING", "text")
    install_marks()
    latencies, _baseline = await recovery.breach_to_executing(
        args.breaches, args.database_url, args.services, args.gap
    )
    print(
        f"breach to executing, {len(latencies)} breaches with marks: "
        f"p50 {recovery.percentile(latencies, 0.5):.1f} ms, "
        f"p99 {recovery.percentile(latencies, 0.99):.1f} ms"
    )
    report()


if __name__ == "__main__":
    asyncio.run(main())
