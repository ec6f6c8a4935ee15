"""Logging set-up: one root handler, per-module loggers, the ids that matter on every record.

Code sets ids for the records that follow with :func:`bind` (a context manager over
contextvars), so a record logged while handling a plan carries its ``plan_id`` without every
call passing it. The trace id of the current OpenTelemetry span is added too.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

from opentelemetry import trace

CONTEXT_FIELDS = ("plan_id", "service", "environment", "event_id")

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("travi_log_context")


@contextlib.contextmanager
def bind(**ids: object) -> Iterator[None]:
    """Add ``ids`` to every record logged inside the block."""
    current = _context.get({})
    token = _context.set({**current, **{k: str(v) for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copy the bound ids and the current trace id onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = _context.get({})
        for field in CONTEXT_FIELDS:
            setattr(record, field, ids.get(field, getattr(record, field, None)))
        span_context = trace.get_current_span().get_span_context()
        record.trace_id = format(span_context.trace_id, "032x") if span_context.is_valid else None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the bound ids when they are set."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in (*CONTEXT_FIELDS, "trace_id"):
            value = getattr(record, field, None)
            if value:
                payload[field] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Readable lines for a terminal, with the bound ids appended."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = [f"{f}={getattr(record, f)}" for f in CONTEXT_FIELDS if getattr(record, f, None)]
        return f"{line} [{' '.join(ids)}]" if ids else line


class FetchTimeoutFilter(logging.Filter):
    """Drop faststream's report of a pull fetch that timed out.

    NOTE: faststream 0.7.8 suppresses ``nats.errors.TimeoutError`` around a pull fetch, but
    nats-py 2.16 can raise the plain ``asyncio.TimeoutError`` there when no message arrived.
    Faststream's supervisor then logs an ERROR with a traceback and restarts the fetch loop at
    once, so no message is lost and the record only alarms the reader.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (type(exc) is TimeoutError and "raised an exception" in record.getMessage())


def setup_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Install the single root handler; ``fmt`` is ``text``, ``json`` or ``auto`` (by terminal)."""
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if fmt == "text" else JsonFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(FetchTimeoutFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Faststream installs handlers of its own on these loggers; route them through the root.
    for name in ("faststream", "faststream.access", "faststream.access.nats"):
        library_logger = logging.getLogger(name)
        library_logger.handlers.clear()
        library_logger.propagate = True
    # Faststream logs each task callback at INFO ("callback for Task-N is being executed").
    logging.getLogger("faststream").setLevel(max(logging.WARNING, root.level))
    for name in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
