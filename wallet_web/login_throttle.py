"""Failed dashboard logins, counted in the database so that every worker sees the same counts.

Two counts per client address: for each typed name (LOGIN_MAX_FAILURES), and over all names
(LOGIN_MAX_FAILURES_PER_ADDRESS). A count that reaches its limit within LOGIN_LOCKOUT_SECONDS
locks for LOGIN_LOCKOUT_SECONDS. Names are counted whether an operator has them or not, so the
answers never tell which names exist, and failures from one address never lock an operator
out of another. Names are stored only as sha256: people type passwords into the name field.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import case, delete, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite

from .extensions import db
from .models import LoginThrottle, UTCDateTime, utcnow

ANY_NAME = ""  # the name_hash of an address's count over all names
MAX_ADDRESS_LENGTH = 64

throttles = LoginThrottle.__table__
INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def name_hash(username: str) -> str:
    return hashlib.sha256(username.encode()).hexdigest()


def is_locked(address: str, username: str) -> bool:
    locked = select(throttles.c.address).where(
        throttles.c.address == _clipped(address),
        throttles.c.name_hash.in_((name_hash(username), ANY_NAME)),
        throttles.c.locked_until > utcnow(),
    ).limit(1)
    return db.session.execute(locked).first() is not None


def record_failure(address: str, username: str) -> None:
    config = current_app.config
    now = utcnow()
    _count(_clipped(address), name_hash(username), config["LOGIN_MAX_FAILURES"], now)
    _count(_clipped(address), ANY_NAME, config["LOGIN_MAX_FAILURES_PER_ADDRESS"], now)
    db.session.commit()


def _count(address: str, key: str, limit: int, now: datetime) -> None:
    window = timedelta(seconds=current_app.config["LOGIN_LOCKOUT_SECONDS"])
    if _add_failure(address, key, now, window) >= limit:  # lock, and count again from zero
        db.session.execute(update(throttles).where(
            throttles.c.address == address, throttles.c.name_hash == key,
        ).values(failures=0, locked_until=now + window))


def _add_failure(address: str, key: str, now: datetime, window: timedelta) -> int:
    """The count after this failure, by one upsert (so concurrent failures each count); a
    count whose window has passed starts again at one."""
    stale = throttles.c.window_started_at <= now - window
    insert = INSERT[db.engine.dialect.name](throttles).values(
        address=address, name_hash=key, failures=1, window_started_at=now)
    return db.session.execute(insert.on_conflict_do_update(
        index_elements=[throttles.c.address, throttles.c.name_hash],
        set_={"failures": case((stale, 1), else_=throttles.c.failures + 1),
              "window_started_at": case((stale, literal(now, UTCDateTime())),
                                        else_=throttles.c.window_started_at)},
    ).returning(throttles.c.failures)).scalar_one()


def forget_name_at(address: str, username: str) -> None:
    """After a right password, that name's count at that address starts again (the caller
    commits); the address's count over all names does not: a login of one's own must not
    reset a guesser's count."""
    db.session.execute(delete(throttles).where(
        throttles.c.address == _clipped(address), throttles.c.name_hash == name_hash(username)))


def forget_name(username: str) -> None:
    """Unlocks a name at every address: a new password, an enabled operator (the caller
    commits)."""
    db.session.execute(delete(throttles).where(throttles.c.name_hash == name_hash(username)))


def _clipped(address: str) -> str:
    return (address or "")[:MAX_ADDRESS_LENGTH]
