"""Read replicas (DATABASE_REPLICA_URL): reads that tolerate a little staleness go to a
streaming replica, and every caller still reads its own writes (docs/scaling.md#read-replicas).

Views and exports mark their reads with `reads` (a decorator), `reading()` or `streaming()`.
Inside, the session's statements and `engine_for_reads()` use one engine chosen per request:
the replica once it has replayed the WAL that the primary had flushed when the request's first
read ran (every commit acknowledged before it, by any caller on any instance), waiting up to
REPLICA_WAIT_MS for that; otherwise the primary. Writes never go there: flushes,
INSERT/UPDATE/DELETE and every later statement of a session transaction that wrote use the
primary, and the ledger's own connections (ledger_pool.py) never pass through here.

A replica that is down, behind past the wait, or lagging beyond REPLICA_MAX_LAG_SECONDS is left
aside: reads go to the primary at once while one background probe per process looks again, at
most once per PROBE_SECONDS. Without DATABASE_REPLICA_URL, a marked view costs one dictionary
lookup and nothing else is installed.
"""
from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from blinker import Namespace
from flask import Flask, current_app, g
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction

from .extensions import configure_engine, db

EXTENSION = "replica"
log = logging.getLogger(__name__)
signals = Namespace()
read_routed = signals.signal("read-routed")  # sender="replica" or "primary"; reason=
lag_measured = signals.signal("lag-measured")  # sender="replica"; seconds= behind, 0 caught up

UP, BEHIND, LAGGING, DOWN = "up", "behind", "lagging", "down"
ANNOUNCED = (LAGGING, DOWN)  # a fallback an operator hears of; BEHIND is the metric's alone
PROBE_SECONDS = 1.0
POLL_SECONDS = 0.005
# The lag is measured from the last replayed commit, which after an idle spell is old although
# the replica is only one commit behind: give it this long to catch up before believing it.
LAG_GRACE_SECONDS = 0.05
CONNECT_TIMEOUT_SECONDS = 2  # the shortest libpq and psycopg honour

FLUSHED = text("SELECT pg_current_wal_flush_lsn()::text")
REPLAYED = text(
    "SELECT pg_is_in_recovery(), "
    "coalesce(pg_last_wal_replay_lsn() >= CAST(:target AS pg_lsn), false), "
    "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8")

# Keys in flask.g and Session.info.
IN_SCOPE, CHOSEN, WROTE = "replica_scope", "replica_chosen", "replica_wrote"


class NotAStandby(Exception):
    """The replica's server replays no WAL (promoted, or a primary): it is not a replica."""


class Replica:
    """One process's view of the replica: its engine, its state, the choice for a request."""

    def __init__(self, engine: Engine, primary: Engine, max_lag: float, wait: float):
        self.engine, self.primary = engine, primary
        self.max_lag, self.wait = max_lag, wait
        self.state, self.lag, self.checked_at = UP, 0.0, 0.0
        self.announced: str | None = None  # the fallback logged, until the return is
        self._probing = False
        self._lock = threading.Lock()

    def choose(self) -> Engine:
        """The engine of this request's reads; a replica left aside is probed in the
        background, never while a request waits."""
        if self.state == UP:
            state = self.settle(*self.check())
        else:
            self._probe_soon()
            state = self.state
        if state == UP:
            read_routed.send("replica", reason="caught_up")
            return self.engine
        read_routed.send("primary", reason=state)
        return self.primary

    def check(self) -> tuple[str, float, str]:
        """(state, lag, why): UP once the replica has replayed what the primary has flushed.
        A failing primary raises, as it would for the request's own statements."""
        with _autocommit(self.primary) as conn:
            target = conn.execute(FLUSHED).scalar_one()
        try:
            return self._await_replay(target)
        except (OperationalError, PoolTimeout, NotAStandby) as error:
            return DOWN, math.nan, type(getattr(error, "orig", error)).__name__

    def _await_replay(self, target: str) -> tuple[str, float, str]:
        started = time.monotonic()
        with _autocommit(self.engine) as conn:
            while True:
                in_recovery, replayed, lag = conn.execute(REPLAYED, {"target": target}).one()
                if not in_recovery:
                    raise NotAStandby()
                if replayed:
                    return UP, 0.0, ""
                lag = math.nan if lag is None else lag  # nothing replayed since it started
                waited = time.monotonic() - started
                lagging = lag > self.max_lag
                if waited >= self.wait or (lagging and waited >= LAG_GRACE_SECONDS):
                    return (LAGGING if lagging else BEHIND), lag, f"{lag:.1f} s behind"
                time.sleep(POLL_SECONDS)

    def settle(self, state: str, lag: float, why: str = "") -> str:
        with self._lock:
            previous, self.state, self.checked_at = self.state, state, time.monotonic()
            announced, fell_back = self.announced, state in ANNOUNCED and state != previous
            if fell_back or state == UP:
                self.announced = state if fell_back else None
        if state != DOWN:
            self.lag = lag
            lag_measured.send("replica", seconds=lag)
        if fell_back:
            log.warning("reads fall back to the primary", extra={"fields": {
                "replica": state, "reason": why,
                "lag_seconds": round(lag, 3) if math.isfinite(lag) else None}})
        elif state == UP and announced:
            log.info("reads return to the replica", extra={"fields": {"replica": state,
                                                                      "was": announced}})
        return state

    def _probe_soon(self) -> None:
        with self._lock:
            if self._probing or time.monotonic() - self.checked_at < PROBE_SECONDS:
                return
            self._probing = True
        threading.Thread(target=self._probe, name="replica-probe", daemon=True).start()

    def _probe(self) -> None:
        try:
            self.settle(*self.check())
        except (OperationalError, PoolTimeout):
            pass  # the primary is failing: the requests' own statements report it
        finally:
            with self._lock:
                self._probing, self.checked_at = False, time.monotonic()


@contextmanager
def _autocommit(engine: Engine) -> Iterator[Connection]:
    """A pooled connection without BEGIN and ROLLBACK around its one-statement checks."""
    with engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


# ---------------------------------------------------------------- marking reads


@contextmanager
def reading() -> Iterator[None]:
    """The session's reads in this block may come from the replica."""
    if EXTENSION not in current_app.extensions:
        yield
        return
    outer = g.get(IN_SCOPE, False)
    setattr(g, IN_SCOPE, True)
    try:
        yield
    finally:
        setattr(g, IN_SCOPE, outer)


def reads(view):
    """Decorator: the function's reads (a view's rendered page too) may come from the replica."""
    @functools.wraps(view)
    def routed(*args, **kwargs):
        with reading():
            return view(*args, **kwargs)
    return routed


def streaming(chunks: Iterable[str]) -> Iterator[str]:
    """A streamed body whose reads, run as it is sent, may come from the replica."""
    with reading():
        yield from chunks


def engine_for_reads() -> Engine:
    """The engine for a read on a connection of its own: the request's choice inside a marked
    block, else the primary."""
    replica = current_app.extensions.get(EXTENSION)
    if replica is None or not g.get(IN_SCOPE):
        return db.engine
    if CHOSEN not in g:
        setattr(g, CHOSEN, replica.choose())
    return g.get(CHOSEN)


def status() -> dict:
    """For /readyz: the replica's state as this process last saw it (nothing without one)."""
    replica = current_app.extensions.get(EXTENSION)
    return {} if replica is None else {"replica": replica.state}


# ---------------------------------------------------------------- the session's statements


def _route(state: ORMExecuteState) -> None:
    """do_orm_execute: a read inside a marked block, in a transaction that wrote nothing,
    goes to the request's chosen engine."""
    if not g.get(IN_SCOPE):
        return
    session = state.session
    if state.is_insert or state.is_update or state.is_delete:
        session.info[WROTE] = True
    elif not (session.info.get(WROTE) or session.new or session.dirty or session.deleted):
        state.bind_arguments["bind"] = engine_for_reads()


def _flushed(session: Session, _context) -> None:
    session.info[WROTE] = True


def _ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(WROTE, None)


def _install_routing() -> None:
    """Once per process, on the session factory every app shares (extensions.db)."""
    if not event.contains(db.session, "do_orm_execute", _route):
        event.listen(db.session, "do_orm_execute", _route)
        event.listen(db.session, "after_flush", _flushed)
        event.listen(db.session, "after_transaction_end", _ended)


def _choose_afresh() -> None:
    """before_request: tests reuse one app context for many requests. Not at teardown: a
    streamed body is sent after it (stream_with_context), and keeps the view's choice."""
    g.pop(CHOSEN, None)


def init_app(app: Flask, primary: Engine) -> None:
    """With DATABASE_REPLICA_URL (checked by create_app): the replica's engine, with the
    primary's pool settings and server-side timeouts, disposed with the primary's."""
    url = app.config["DATABASE_REPLICA_URL"]
    if not url:
        return
    from .resilience import configure_connections  # resilience imports the API, which imports us

    options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    connect_args = {**options.get("connect_args", {}), "connect_timeout": CONNECT_TIMEOUT_SECONDS}
    engine = create_engine(url, **{**options, "connect_args": connect_args})
    configure_engine(engine, app.config)
    configure_connections(engine, app.config)
    event.listen(primary, "engine_disposed", lambda _engine: engine.dispose())
    app.extensions[EXTENSION] = Replica(engine, primary, app.config["REPLICA_MAX_LAG_SECONDS"],
                                        app.config["REPLICA_WAIT_MS"] / 1000)
    app.before_request(_choose_afresh)
    _install_routing()
