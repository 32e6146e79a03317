"""Dashboard sessions kept in the database, so that they can be ended: by logging out, by a new
password, by disabling the operator, after SESSION_IDLE_MINUTES without a request and
SESSION_LIFETIME_HOURS after the login.

The signed cookie holds a random token (Flask-Login's user id); the table holds only its sha256,
so a copy of the table opens no session.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import bindparam, select, update

from .api_keys import hash_token
from .extensions import db
from .models import Operator, OperatorSession, utcnow

TOUCH_INTERVAL = timedelta(seconds=60)
MAX_TOKEN_LENGTH = 128

sessions = OperatorSession.__table__
operators = Operator.__table__
LIVE = (
    select(sessions.c.id, sessions.c.last_seen_at, operators.c.id, operators.c.username,
           operators.c.role, operators.c.can_approve)
    .join_from(sessions, operators, sessions.c.operator_id == operators.c.id)
    .where(sessions.c.token_hash == bindparam("token_hash"), sessions.c.ended_at.is_(None),
           operators.c.is_active.is_(True),
           sessions.c.last_seen_at > bindparam("idle_since"),
           sessions.c.created_at > bindparam("born_after"))
)


@dataclass(frozen=True)
class LiveSession:
    id: int
    last_seen_at: datetime
    operator_id: int
    username: str
    role: str
    can_approve: bool


def start(operator_id: int) -> str:
    """A new session of the operator; returns its token, for the cookie only."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    db.session.add(OperatorSession(token_hash=hash_token(token), operator_id=operator_id,
                                   created_at=now, last_seen_at=now))
    db.session.commit()
    return token


def find_live(token: str) -> LiveSession | None:
    """The live session of a token, with its operator: one SELECT on the unique token hash.
    last_seen_at is written at most once per TOUCH_INTERVAL, so most requests do not write."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    now = utcnow()
    with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT")
        row = conn.execute(LIVE, {"token_hash": hash_token(token), **_limits(now)}).first()
        if row is None:
            return None
        live = LiveSession(*row)
        if now - live.last_seen_at >= TOUCH_INTERVAL:
            _touch(conn, live.id, now)
    return live


def _limits(now: datetime) -> dict:
    config = current_app.config
    return {"idle_since": now - timedelta(minutes=config["SESSION_IDLE_MINUTES"]),
            "born_after": now - timedelta(hours=config["SESSION_LIFETIME_HOURS"])}


def _touch(conn, session_id: int, now: datetime) -> None:
    # The WHERE makes concurrent requests of one session write once, not once each.
    conn.execute(update(sessions).where(
        sessions.c.id == session_id, sessions.c.last_seen_at <= now - TOUCH_INTERVAL,
    ).values(last_seen_at=now))
    if conn.in_transaction() and conn.dialect.name != "postgresql":
        conn.commit()


def end(token: str, reason: str) -> None:
    """Ends one session (logout)."""
    db.session.execute(_ending(reason).where(sessions.c.token_hash == hash_token(token)))
    db.session.commit()


def end_all(operator_id: int, reason: str) -> None:
    """Ends every session of the operator, in the caller's transaction (it commits)."""
    db.session.execute(_ending(reason).where(sessions.c.operator_id == operator_id))


def _ending(reason: str):
    return update(sessions).where(sessions.c.ended_at.is_(None)).values(
        ended_at=utcnow(), end_reason=reason)
