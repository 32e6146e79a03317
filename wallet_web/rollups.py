"""The overview's volumes per UTC day, kind and asset, without summing the ledger on each load.

The sweeper rolls transactions into `volume_days` in the events' (xid, id) order, only as far
as the feed's read rule lets it (events.py: nothing can later commit behind that position),
and moves `volume_position` in the same database transaction. A reader adds, in one statement
(one snapshot), the rolled-up days and the transactions whose events come after the position:
the figures are exact whether the sweeper ran a second ago or never.
"""
from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import Connection, func, select, tuple_, union_all, update
from sqlalchemy.dialects import postgresql, sqlite

from . import events, replica
from .extensions import WRITE_LOCK, db
from .models import Account, Posting, Transaction, VolumeDay, VolumePosition, utcnow

volume_days = VolumeDay.__table__
position = VolumePosition.__table__
transactions = Transaction.__table__
postings = Posting.__table__
accounts = Account.__table__
CHUNK = 5_000  # events per database transaction of the rollup
SWEEP_LIMIT = 50_000  # events per sweeper pass


@dataclass(frozen=True)
class Volume:
    day: date
    kind: str
    asset_code: str
    transactions: int
    amount: int


def utc_day(column, dialect_name: str):
    if dialect_name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)  # SQLite stores UTC text


def as_date(value) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def moved(dialect_name: str, *conditions):
    """Per UTC day, kind and asset: the transactions with a positive leg in the asset, and the
    sum of those legs (a transaction's legs sum to zero, so this is what it moved)."""
    day = utc_day(transactions.c.created_at, dialect_name)
    return (select(day.label("day"), transactions.c.kind, accounts.c.asset_code,
                   func.count(func.distinct(transactions.c.id)).label("transactions"),
                   func.sum(postings.c.amount).label("amount"))
            .select_from(transactions.join(postings, postings.c.transaction_id == transactions.c.id)
                         .join(accounts, accounts.c.id == postings.c.account_id))
            .where(postings.c.amount > 0, *conditions)
            .group_by(day, transactions.c.kind, accounts.c.asset_code))


# ---------------------------------------------------------------- the sweeper's job


def roll(limit: int | None = None) -> int:
    """Roll up what has committed; how many events were read (at most about `limit`)."""
    done = 0
    while limit is None or done < limit:
        size = CHUNK if limit is None else min(CHUNK, limit - done)
        read = _roll_chunk(size)
        done += read
        if read < size:
            break
    return done


def roll_count() -> int:
    return roll(limit=SWEEP_LIMIT)


def _roll_chunk(size: int) -> int:
    with db.engine.connect() as conn:
        conn.execution_options(**{WRITE_LOCK: True})  # SQLite: BEGIN IMMEDIATE
        with conn.begin():
            at = conn.execute(select(position).with_for_update()).one()
            read = conn.execute(events.visible_after(
                events.events, (at.after_xid, at.after_id), conn.dialect, events.events.c.xid,
                events.events.c.id, events.events.c.transaction_id, limit=size)).all()
            if not read:
                return 0
            ids = [row.transaction_id for row in read if row.transaction_id is not None]
            if ids:
                _add(conn, conn.execute(moved(conn.dialect.name,
                                              transactions.c.id.in_(ids))).all())
            conn.execute(update(position).values(after_xid=read[-1].xid, after_id=read[-1].id,
                                                 rolled_at=utcnow()))
            return len(read)


def _add(conn: Connection, rows) -> None:
    if not rows:
        return
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[conn.dialect.name]
    statement = insert(volume_days)
    statement = statement.on_conflict_do_update(
        index_elements=[volume_days.c.day, volume_days.c.kind, volume_days.c.asset_code],
        set_={"transactions": volume_days.c.transactions + statement.excluded.transactions,
              "amount": volume_days.c.amount + statement.excluded.amount})
    conn.execute(statement, [{"day": as_date(row.day), "kind": row.kind,
                              "asset_code": row.asset_code, "transactions": row.transactions,
                              "amount": int(row.amount)} for row in rows])


# ---------------------------------------------------------------- reading


def volumes(first_day: date, last_day: date | None = None,
            kinds: tuple[str, ...] | None = None) -> list[Volume]:
    """Every (day, kind, asset) volume from `first_day` (to `last_day`), exact: the rolled-up
    days plus the transactions after the rollup's position, in one snapshot."""
    with _snapshot() as conn:
        at = tuple(conn.execute(select(position.c.after_xid, position.c.after_id)).one())
        after = select(events.events.c.transaction_id).where(
            events.past(events.events, at), events.events.c.transaction_id.is_not(None))
        rolled = select(volume_days.c.day, volume_days.c.kind, volume_days.c.asset_code,
                        volume_days.c.transactions, volume_days.c.amount).where(
            volume_days.c.day >= first_day)
        live = moved(conn.dialect.name, transactions.c.id.in_(after),
                     transactions.c.created_at >= _start_of(first_day))
        if last_day is not None:
            rolled = rolled.where(volume_days.c.day <= last_day)
            live = live.where(transactions.c.created_at < _start_of(last_day + timedelta(days=1)))
        if kinds is not None:
            rolled = rolled.where(volume_days.c.kind.in_(kinds))
            live = live.where(transactions.c.kind.in_(kinds))
        rows = conn.execute(union_all(rolled, live)).all()
    totals: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for day, kind, asset, count, amount in rows:
        total = totals[as_date(day), kind, asset]
        total[0] += count
        total[1] += int(amount)
    return [Volume(day, kind, asset, count, amount)
            for (day, kind, asset), (count, amount) in sorted(totals.items())]


@contextmanager
def _snapshot():
    """A read-only transaction whose statements see one snapshot (SQLite's always do)."""
    with replica.engine_for_reads().connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=timezone.utc)


# ---------------------------------------------------------------- proof


def mismatches(conn: Connection) -> list[tuple]:
    """(day, kind, asset, rolled up, from the ledger) where the rollup and the transactions up
    to its position disagree: `ledger verify`'s check."""
    at = conn.execute(select(position)).one()
    rolled_ids = select(events.events.c.transaction_id).where(
        tuple_(events.events.c.xid, events.events.c.id) <= tuple_(at.after_xid, at.after_id),
        events.events.c.transaction_id.is_not(None))
    ledger = {(as_date(row.day), row.kind, row.asset_code): (row.transactions, int(row.amount))
              for row in conn.execute(moved(conn.dialect.name,
                                            transactions.c.id.in_(rolled_ids)))}
    rolled = {(as_date(row.day), row.kind, row.asset_code): (row.transactions, int(row.amount))
              for row in conn.execute(select(volume_days))}
    return [(*key, rolled.get(key), ledger.get(key)) for key in sorted(ledger.keys() | rolled.keys())
            if rolled.get(key) != ledger.get(key)]
