"""Surviving the database: bounded waits on PostgreSQL, and a retryable 503 when it fails.

Every PostgreSQL connection starts with a connect timeout (a database that is down gives a
fast error, not a hang), a statement timeout, a lock timeout (a wallet row locked by a stuck
session cannot queue requests forever) and an idle-in-transaction timeout. An outage or a
timeout then surfaces as 503 with Retry-After: JSON on API paths, a standalone HTML page
elsewhere (it must not need the database to render).
"""
from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass

import psycopg
from flask import Flask, Response, current_app, request
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from .api.errors import error_response, is_api_path
from .extensions import db

log = logging.getLogger(__name__)
# Statements the server gave up on and rolled back: retrying the same request is safe.
TIMEOUT_SQLSTATES = {"57014": "statement timeout", "55P03": "lock timeout",
                     "40P01": "deadlock detected", "40001": "serialization failure"}
# "database is locked": SQLite waited busy_timeout for a lock, or could not wait at all
# (extended codes such as SQLITE_BUSY_SNAPSHOT keep the primary code in their low byte).
SQLITE_LOCK_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
RETRY_AFTER = {"database_unavailable": "2", "database_timeout": "1"}
MESSAGES = {
    "database_unavailable": "The database is unavailable. Retry the same request shortly.",
    "database_timeout": "The database did not answer in time ({reason}). Retry the same "
                        "request shortly; nothing was changed.",
}


@dataclass(frozen=True)
class DatabaseTrouble:
    """What a failed database call means for the client: a code and a reason."""

    code: str
    reason: str


def classify(error: Exception) -> DatabaseTrouble | None:
    """database_timeout, database_unavailable, or None for an error that is a bug."""
    if isinstance(error, PoolTimeout):
        return DatabaseTrouble("database_timeout", "no free database connection")
    original = getattr(error, "orig", error)
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate in TIMEOUT_SQLSTATES:
        return DatabaseTrouble("database_timeout", TIMEOUT_SQLSTATES[sqlstate])
    if isinstance(original, sqlite3.OperationalError) and _sqlite_locked(original):
        return DatabaseTrouble("database_timeout", "database is locked")
    invalidated = isinstance(error, DBAPIError) and error.connection_invalidated
    if invalidated or isinstance(original, psycopg.OperationalError):
        return DatabaseTrouble("database_unavailable", "connection failed")
    return None


def _sqlite_locked(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in SQLITE_LOCK_CODES


def session_options(config: Mapping) -> str:
    """The libpq `options` that set the server-side timeouts of every new connection."""
    settings = {
        "statement_timeout": config["DB_STATEMENT_TIMEOUT_MS"],
        "lock_timeout": config["DB_LOCK_TIMEOUT_MS"],
        "idle_in_transaction_session_timeout": config["DB_IDLE_IN_TRANSACTION_TIMEOUT_MS"],
    }
    return " ".join(f"-c {name}={int(value)}" for name, value in settings.items())


def configure_connections(engine: Engine, config: Mapping) -> None:
    if engine.dialect.name != "postgresql":
        return
    options = session_options(config)
    connect_timeout = int(config["DB_CONNECT_TIMEOUT_SECONDS"])

    @event.listens_for(engine, "do_connect")
    def add_timeouts(_dialect, _record, _cargs, cparams):
        cparams["options"] = f"{cparams.get('options', '')} {options}".strip()
        cparams.setdefault("connect_timeout", connect_timeout)


def database_error(error: Exception) -> Response:
    """The app-wide handler: a retryable 503 for an outage or a timeout, else the error."""
    trouble = classify(error)
    if trouble is None:
        raise error  # a bug, not an outage: the usual 500 and its logged traceback
    log.warning("database trouble", extra={"fields": {
        "code": trouble.code, "reason": trouble.reason,
        "error": type(getattr(error, "orig", error)).__name__}})
    message = MESSAGES[trouble.code].format(reason=trouble.reason)
    respond = _json_page if is_api_path(request.path) else _html_page
    response = respond(trouble.code, message)
    response.headers["Retry-After"] = RETRY_AFTER[trouble.code]
    return response


def _json_page(code: str, message: str) -> Response:
    return error_response(503, {"code": code, "message": message})


def _html_page(code: str, message: str) -> Response:
    # Not render_template: its context processors (Flask-Login's current_user) would query the
    # database that just failed.
    template = current_app.jinja_env.get_template("errors/503.html")
    return Response(template.render(message=message, code=code), 503, mimetype="text/html")


def init_app(app: Flask) -> None:
    with app.app_context():
        configure_connections(db.engine, app.config)
    for exception in (DBAPIError, PoolTimeout, psycopg.OperationalError):
        app.register_error_handler(exception, database_error)
