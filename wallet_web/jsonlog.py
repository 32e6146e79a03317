"""Log records as one JSON object per line, with the current request's id.

Kept apart from observability.py so that gunicorn's master can use it for its own messages
without importing prometheus-client before the metrics directory exists."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

from flask import g, has_request_context


class JsonFormatter(logging.Formatter):
    """`extra={"fields": {...}}` adds keys; the request id joins every line of one request."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "msg": record.getMessage(),
        }
        if has_request_context() and "request_id" in g:
            entry["request_id"] = g.request_id
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
