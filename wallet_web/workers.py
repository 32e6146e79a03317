"""What the background workers (`sweep --every`, `events deliver`) share: they stop cleanly on
SIGTERM or SIGINT, and a pass that meets the database away is logged and tried again at the
next tick instead of ending the process."""
from __future__ import annotations

import logging
import signal
import threading
from typing import Callable, TypeVar

from sqlalchemy.exc import DBAPIError

from .extensions import db

T = TypeVar("T")


def stop_on_signals() -> threading.Event:
    """An event that SIGTERM and SIGINT set: the worker ends its pass, then exits."""
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    return stopping


def through_outages(work: Callable[[], T], log: logging.Logger, failed: str) -> T | None:
    """work(), or None when the database is away (logged as `failed`)."""
    try:
        return work()
    except DBAPIError as error:
        db.session.rollback()
        log.warning(failed, extra={"fields": {"error": type(error.orig).__name__}})
        return None
    finally:
        db.session.remove()
