"""Events for integrations: a transactional outbox and the feed that reads it.

An event row is written in the database transaction of the change it tells of, so it exists
exactly when the change does: a transaction's `transaction.posted` by the ledger's functions
in the same statement (PostgreSQL, migration 0014) or a trigger on `transactions` (SQLite,
0010), the others by `emit` on the caller's connection.

The feed's order is (xid, id): xid is the id of the database transaction that wrote the row.
A reader only returns rows whose xid is below the oldest transaction still running when its
statement started (PostgreSQL's pg_snapshot_xmin). Every transaction below that bound has
ended, so no row can appear there later: a cursor (xid, id) that has passed a position never
has to look back, and a row that committed late (a lower id after a higher one) is held back
until it is visible rather than skipped. The cost is latency, not loss: a long write delays
the feed until it ends. On SQLite writers take turns, so ids commit in order and xid is 0.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Connection, insert, literal, select, text, tuple_
from sqlalchemy.orm import selectinload

from . import errors
from .extensions import db
from .models import EVENT_TYPES, Event, Posting, Transaction, utcnow
from .moments import moment

events = Event.__table__
MAX_LIMIT = 1000
CURSOR = re.compile(r"([0-9]{1,19})-([0-9]{1,19})")
START = (0, 0)
# The oldest transaction still running when the statement started (PostgreSQL).
VISIBLE_BELOW = text("(pg_snapshot_xmin(pg_current_snapshot())::text)::bigint")


@dataclass(frozen=True)
class Feed:
    items: list[dict]
    next_cursor: str


def emit(conn: Connection, type_: str, data: dict | list[dict]) -> None:
    """Event(s) of `type_` with `data` as the API shows it, in the caller's transaction."""
    assert type_ in EVENT_TYPES and type_ != "transaction.posted", type_
    rows = data if isinstance(data, list) else [data]
    now = utcnow()
    conn.execute(insert(events), [{"type": type_, "created_at": now, "data": row} for row in rows])


def user_shown(row) -> dict:
    """A users row as GET /api/v1/users shows it."""
    from .api.schemas import UserOut
    return UserOut.model_validate(row).model_dump(mode="json")


def decision(object_type: str, row, verdict: str) -> dict:
    """An approval decision on a movement request or a bulk grant (approval.decided)."""
    return {"object": object_type, "id": row.id, "decision": verdict,
            "maker": row.maker, "checker": row.checker, "reason": row.decision_reason,
            "decided_at": moment(row.decided_at),
            **{name: getattr(row, name) for name in ("kind", "user_id", "to_user_id", "amount",
                                                      "reference_id", "rows_total")
               if hasattr(row, name)},
            **({"asset": row.asset_code} if hasattr(row, "asset_code") else {})}


def encode_cursor(position: tuple[int, int]) -> str:
    return f"{position[0]}-{position[1]}"


def decode_cursor(cursor: str | None) -> tuple[int, int]:
    if cursor is None:
        return START
    found = CURSOR.fullmatch(cursor) if cursor.isascii() else None
    if found is None or int(found[1]) >= 2**63 or int(found[2]) >= 2**63:
        raise errors.InvalidCursor("after: pass back a next_cursor this API returned",
                                   field="after")
    return int(found[1]), int(found[2])


def past(table, position: tuple[int, int]):
    """Rows of `table` (events, audit_events) after `position` in (xid, id) order."""
    return tuple_(table.c.xid, table.c.id) > tuple_(*map(literal, position))


def visible(query, table, dialect):
    """`query` on `table` without rows an older writer may still commit below (PostgreSQL)."""
    return query.where(table.c.xid < VISIBLE_BELOW) if dialect.name == "postgresql" else query


def visible_after(table, position: tuple[int, int], dialect, *columns, limit: int):
    """The next visible rows of `table` after `position`, in feed order."""
    query = (select(*columns or (table,)).where(past(table, position))
             .order_by(table.c.xid, table.c.id).limit(limit))
    return visible(query, table, dialect)


def after(position: tuple[int, int], *, types: tuple[str, ...] = (), limit: int = 100,
          conn: Connection | None = None) -> list:
    """The visible events after `position`, in feed order (rows with .id, .xid, .type...)."""
    bind = conn if conn is not None else db.session
    dialect = conn.dialect if conn is not None else db.session.get_bind().dialect
    query = visible_after(events, position, dialect, limit=limit)
    if types:
        query = query.where(events.c.type.in_(types))
    return list(bind.execute(query))


def end(conn: Connection) -> tuple[int, int]:
    """The position of the last visible event: a reader starting there sees what comes next."""
    query = visible(select(events.c.xid, events.c.id)
                    .order_by(events.c.xid.desc(), events.c.id.desc()).limit(1), events, conn.dialect)
    last = conn.execute(query).first()
    return tuple(last) if last else START


def feed(cursor: str | None, types: tuple[str, ...] = (), limit: int = 100) -> Feed:
    """A page of the feed for the API: `next_cursor` is where the next call starts (the same
    cursor when nothing new is visible yet)."""
    position = decode_cursor(cursor)
    rows = after(position, types=types, limit=min(limit, MAX_LIMIT))
    if rows:
        position = (rows[-1].xid, rows[-1].id)
    return Feed(items=render(rows), next_cursor=encode_cursor(position))


def render(rows) -> list[dict]:
    """Events as the API and the webhooks send them: {id, type, created_at, data}."""
    wanted = [row.transaction_id for row in rows if row.transaction_id is not None]
    shown = transactions_as_shown(wanted) if wanted else {}
    return [{"id": row.id, "type": row.type, "created_at": moment(row.created_at),
             "data": shown[row.transaction_id] if row.transaction_id is not None else row.data}
            for row in rows]


def transactions_as_shown(tx_ids: list[int]) -> dict[int, dict]:
    """Transactions as GET /api/v1/transactions/<id> shows them (they never change)."""
    from .api.schemas import (
        transaction_out,  # the API's shape; the API imports this module
    )
    query = (select(Transaction).where(Transaction.id.in_(tx_ids))
             .options(selectinload(Transaction.postings).selectinload(Posting.account)))
    return {tx.id: transaction_out(tx).model_dump(mode="json")
            for tx in db.session.scalars(query)}
