"""Logging: plain text or one JSON object per line, each tagged with the exchange it belongs to.

The guard puts the exchange being served into a context variable (`exchange_context`) for as long
as it handles it; every log record made meanwhile on that thread carries its correlation id,
operation and agreement. What is logged stays metadata: the gateway's own log calls never pass
queried values, names or message bodies, and exceptions are logged as their type and frames
only (an exception's message may quote the request).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import traceback
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, TextIO

FORMATS = ("text", "json")

# The exchange (guard.middleware.Exchange, read duck-typed) being served by this thread, if any.
_current: ContextVar[object | None] = ContextVar("leis_exchange", default=None)


@contextmanager
def exchange_context(exchange: object) -> Iterator[None]:
    token = _current.set(exchange)
    try:
        yield
    finally:
        _current.reset(token)


def current_context() -> dict[str, str | None]:
    """correlation_id, operation and agreement of the exchange being served (None outside one)."""
    exchange = _current.get()
    if exchange is None:
        return {"correlation_id": None, "operation": None, "agreement": None}
    caller = getattr(exchange, "caller", None)
    return {
        "correlation_id": getattr(exchange, "correlation_id", None),
        "operation": getattr(exchange, "operation", None),
        "agreement": getattr(caller, "agreement_id", None),
    }


class ContextFilter(logging.Filter):
    """Adds correlation_id, operation and agreement to every record (for any formatter)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current_context().items():
            if not hasattr(record, key) or getattr(record, key) is None:
                setattr(record, key, value)
        return True


# Extra fields a log call may pass (`extra=`) that the JSON lines carry; all metadata.
EXTRA_FIELDS = ("result", "latency_ms", "status", "worker")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", None),
            "operation": getattr(record, "operation", None),
            "agreement": getattr(record, "agreement", None),
            "pid": record.process,
        }
        for key in EXTRA_FIELDS:
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = _exception(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None  # never the exception's message (see _exception)
        try:
            line = super().format(record)
        finally:
            record.exc_info, record.exc_text = saved
        correlation = getattr(record, "correlation_id", None)
        if correlation:
            line += f" [correlation {correlation}]"
        if record.exc_info and record.exc_info[0] is not None:
            line += "\n" + _exception(record.exc_info)
        return line


def _exception(exc_info) -> str:
    exc_type, _exc, tb = exc_info
    frames = "".join(f"  {f.filename}:{f.lineno} in {f.name}\n" for f in traceback.extract_tb(tb))
    return frames + exc_type.__qualname__


_HANDLER_MARK = "_leis_handler"


def setup_logging(log_format: str = "text", level: str | int = "INFO", stream: TextIO | None = None,
                  force: bool = False) -> None:
    """Configure the root logger: one handler on stderr (or `stream`) in `log_format`.

    Like `logging.basicConfig`, it leaves alone a root logger that someone else configured already
    (pytest's capture, an embedding application) unless `force`; its own handler it replaces."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    root = logging.getLogger()
    foreign = [h for h in root.handlers if not getattr(h, _HANDLER_MARK, False)]
    if foreign and not force:
        return
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else str(level).upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    for noisy in ("spyne", "zeep", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

