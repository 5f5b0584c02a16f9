"""Request ids, structured logs and Prometheus metrics (no web framework: the HTTP middleware
that sets the request id and counts requests is `billfold.api.request_context`)."""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

request_id_var: ContextVar[str] = ContextVar("billfold_request_id", default="")
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # whole value: use fullmatch

REGISTRY = CollectorRegistry()
HTTP_REQUESTS = Counter(
    "billfold_http_requests_total",
    "HTTP requests by route, method and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "billfold_http_request_duration_seconds",
    "HTTP request latency by route",
    ["method", "route"],
    registry=REGISTRY,
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id of the request being served."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            payload["request_id"] = rid
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("billfold")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
