"""Log records as one JSON object per line, with the current request's id.

Kept apart from observability.py so that gunicorn's master can use it for its own messages
without importing prometheus-client before the metrics directory exists."""
from __future__ import annotations

import io
import json
import logging
import os
import select
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
        request_id = g.get("request_id") if has_request_context() else None
        if request_id is not None:
            entry["request_id"] = request_id
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class LineHandler(logging.StreamHandler):
    """Writes each record with one os.write on the stream's file descriptor, without the
    handler's lock: a line of at most PIPE_BUF bytes reaches a pipe (or a file opened for
    appending) whole, whichever thread writes it. That lock was the most contended one of an
    API request. A longer line (a traceback), or a stream without a descriptor, goes through
    the stream under the lock, as StreamHandler writes it (a short line written meanwhile by
    another thread may then land inside it)."""

    def __init__(self, stream=None):
        super().__init__(stream)
        try:
            self.fd: int | None = self.stream.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            self.fd = None

    def handle(self, record: logging.LogRecord) -> bool:
        if not self.filter(record):
            return False
        try:
            line = (self.format(record) + "\n").encode()
        except Exception:  # noqa: BLE001 - logging never raises into the caller
            self.handleError(record)
            return True
        try:
            if self.fd is not None and len(line) <= select.PIPE_BUF:
                os.write(self.fd, line)
            else:
                with self.lock:
                    self.stream.write(line.decode())
                    self.flush()
        except Exception:  # noqa: BLE001
            self.handleError(record)
        return True
