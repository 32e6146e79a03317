"""The ledger's own connections on PostgreSQL, for the one statement a single movement needs.

A movement whose accounts are already known (ledger.py caches them) is one call of the
server-side ledger_apply in autocommit. Through SQLAlchemy that call paid for a session, a
pool checkout with isolation-level switching, an execution context and a result object: more
CPU than the statement itself. Here it is a psycopg connection from psycopg_pool, opened in
autocommit once, with the same server-side timeouts as every other connection (resilience.py),
and the statement prepared on the server. Everything else (reads, refusals' explanations,
replays, holds, batches, SQLite) keeps the SQLAlchemy engine.

The pool is opened by the first movement of each process (after gunicorn forks), holds at most
LEDGER_POOL_SIZE connections, and pings a connection that sat idle longer than
DB_PING_IDLE_SECONDS before lending it, as the engine does; a connection that broke is
discarded when it comes back, and the request fails with the usual 503.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

import psycopg
from flask import Flask, current_app
from psycopg_pool import ConnectionPool
from sqlalchemy import event
from sqlalchemy.engine import Compiled, Engine
from sqlalchemy.sql import Executable

from .resilience import session_options

EXTENSION = "ledger_pool"
_opening = threading.Lock()


class LedgerPool:
    def __init__(self, conninfo: str, config, engine: Engine):
        """`engine`: the app's, whose dialect compiles statements and whose disposal (which
        closes this pool too) renews every connection when one was lost."""
        self.conninfo, self.config, self.engine = conninfo, config, engine
        self.compiled: dict[Executable, Compiled] = {}
        self.idle_seconds = config["DB_PING_IDLE_SECONDS"]
        self.pool: ConnectionPool | None = None
        self.lent = self.returned = _nothing  # observers (the pool gauge) replace them

    def watch(self, lent, returned) -> None:
        """Calls lent() when a connection is lent and returned() when it comes back."""
        self.lent, self.returned = lent, returned

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        pool = self.pool
        if pool is None:
            with _opening:
                pool = self.pool = self.pool or self._open()
        with pool.connection() as conn:
            self.lent()
            try:
                yield conn
                conn.last_used = time.monotonic()  # read by _check_if_idle
            finally:
                self.returned()

    def fetchone(self, query: str, params: dict) -> tuple:
        """One statement on a pooled connection through the connection's own cursor (a new
        cursor copies the connection's adapters), answered in binary."""
        with self._cursor() as cursor:
            cursor.execute(query, params, binary=True)
            return cursor.fetchone()

    def fetchall(self, statement: Executable, params: dict) -> list[tuple]:
        """A SQLAlchemy statement's rows, compiled once for this pool's connections."""
        compiled = self.compiled.get(statement)
        if compiled is None:
            compiled = self.compiled[statement] = statement.compile(dialect=self.engine.dialect)
        with self._cursor() as cursor:
            cursor.execute(compiled.string, compiled.construct_params(params), binary=True)
            return cursor.fetchall()

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor]:
        """A lost connection means the server went away or was restarted: every other
        connection of both pools is lost too, so both are renewed, as the engine renews its
        own when it meets one (one failed request, not one per pooled connection)."""
        with self.connection() as conn:
            try:
                yield conn.ledger_cursor
            except psycopg.OperationalError:
                if conn.broken:
                    self.engine.dispose()
                raise

    def close(self) -> None:
        """Closes the connections; the next movement opens a new pool."""
        with _opening:
            pool, self.pool = self.pool, None
        if pool is not None:
            pool.close()

    def _open(self) -> ConnectionPool:
        """No reset callback: with one the pool hands every returned connection to its worker
        thread, a thread switch per movement."""
        config = self.config
        return ConnectionPool(
            self.conninfo, min_size=1, max_size=config["LEDGER_POOL_SIZE"], open=True,
            timeout=config["SQLALCHEMY_ENGINE_OPTIONS"].get("pool_timeout", 30), name=EXTENSION,
            kwargs={"autocommit": True, "prepare_threshold": 0,
                    "options": session_options(config),
                    "connect_timeout": int(config["DB_CONNECT_TIMEOUT_SECONDS"])},
            configure=self._configure, check=self._check_if_idle)

    @staticmethod
    def _configure(conn: psycopg.Connection) -> None:
        conn.ledger_cursor = conn.cursor()

    def _check_if_idle(self, conn: psycopg.Connection) -> None:
        last_used = getattr(conn, "last_used", None)
        if last_used is not None and time.monotonic() - last_used >= self.idle_seconds:
            conn.execute("SELECT 1")  # raises for a dead connection: the pool replaces it


def _nothing() -> None:
    pass


def init_app(app: Flask, engine: Engine) -> None:
    """On PostgreSQL: the app's ledger pool, closed whenever the engine is disposed (tests,
    a worker's reconnect after an outage), so both drop their connections together."""
    if engine.dialect.name != "postgresql":
        return
    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    app.extensions[EXTENSION] = holder = LedgerPool(conninfo, app.config, engine)
    event.listen(engine, "engine_disposed", lambda _engine: holder.close())
    event.listen(engine, "handle_error", lambda context: _lost_by_engine(context, holder))


def _lost_by_engine(context, holder: LedgerPool) -> None:
    """The engine met a lost connection (it renews its own pool): so has this pool."""
    if context.is_disconnect:
        holder.close()


def get() -> LedgerPool | None:
    """The app's ledger pool; None on SQLite."""
    return current_app.extensions.get(EXTENSION)
