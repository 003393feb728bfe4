"""Operations: metrics (`metrics`), logs (`logs`), readiness (`readiness`), `config check` (`checks`).

`exchange_scope` is the one call the guard makes around every SOAP exchange: the exchange is the
logging context while it is served; at its end one access-log line and the request metrics.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Iterator

from . import metrics
from .logs import exchange_context

access_log = logging.getLogger("leis_gateway.access")


def exchange_result(exchange: object) -> str:
    """The LEXS ResultCode of the answer, or `Fault:<code>` (what `leis_requests_total` counts)."""
    notes = getattr(exchange, "notes", {}) or {}
    if "fault" in notes:
        return f"Fault:{notes['fault']}"
    return str(notes.get("result_code") or "unknown")


@contextmanager
def exchange_scope(exchange: object) -> Iterator[None]:
    """Around one exchange of the guard: log context, then metrics and an access-log line."""
    with exchange_context(exchange):
        try:
            yield
        finally:
            received_at = getattr(exchange, "received_at", None)
            seconds = time.monotonic() - received_at if received_at is not None else 0.0
            operation = getattr(exchange, "operation", None) or "unparsed"
            result = exchange_result(exchange)
            metrics.observe_exchange(operation, result, seconds)
            access_log.info("%s %s %.1f ms", operation, result, seconds * 1000,
                            extra={"result": result, "latency_ms": round(seconds * 1000, 1)})
