"""The hash chain: transactions with their postings (chain `ledger`) and audit events (chain
`audit`) sealed in sequence after they commit, hash_n = sha256(hash_{n-1} || canonical bytes
of entry n), hash_0 = 64 zeros. The canonical form is defined once, in verify_export.py, which
an auditor runs offline on an export (docs/audit.md).

Sealing is never on the write path: writers neither read nor lock anything here. A sealer
locks its chain's head row (one sealer per chain at a time), reads the next source rows in
(xid, id) order below the oldest writer still running (events.py: a row that commits late is
held back, never skipped), appends their entries and moves the head, one transaction per
chunk. A long writer delays sealing; sealing never delays a writer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from sqlalchemy import Connection, func, insert, select, update

from . import events
from .extensions import WRITE_LOCK, db
from .models import CHAINS, Account, AuditEvent, ChainEntry, ChainHead, Posting, Transaction, utcnow
from .moments import moment
from .queries import CONTROL_FIELDS, meta_text
from .verify_export import GENESIS, audit_entry_bytes, chain_hash, ledger_entry_bytes

SWEEP_LIMIT = 50_000  # entries per chain and sweeper pass
CHUNK = 1000
entries_table = ChainEntry.__table__
heads_table = ChainHead.__table__
audit_table = AuditEvent.__table__
POSTED = ("transaction.posted",)


@dataclass(frozen=True)
class Head:
    chain: str
    seq: int
    hash: str
    sealed_at: datetime | None


def cell_text(value) -> str:
    """Text as the CSV and the canonical form hold it: None is ""."""
    return "" if value is None else str(value)


def details_text(details: dict | None) -> str:
    """An audit event's details as the audit CSV writes them."""
    return json.dumps(details, sort_keys=True) if details else ""


# ---------------------------------------------------------------- what each chain seals


def ledger_sources(conn: Connection, position: tuple[int, int], size: int) -> list[tuple]:
    """(xid, id, transaction id) of the next `transaction.posted` events after `position`."""
    rows = events.after(position, types=POSTED, limit=size, conn=conn)
    return [(row.xid, row.id, row.transaction_id) for row in rows]


def audit_sources(conn: Connection, position: tuple[int, int], size: int) -> list[tuple]:
    """(xid, id, id) of the next audit events after `position`, as events.after reads."""
    query = events.visible_after(audit_table, position, conn.dialect, audit_table.c.xid,
                                 audit_table.c.id, audit_table.c.id, limit=size)
    return [tuple(row) for row in conn.execute(query)]


def load_transactions(conn: Connection, ids: list[int]) -> dict[int, tuple]:
    """transaction id -> (its canonical fields, its postings' canonical fields)."""
    found = {row[0]: (_transaction_fields(row), []) for row in conn.execute(
        select(Transaction.id, Transaction.created_at, Transaction.kind, Transaction.reference_id,
               Transaction.description, Transaction.actor,
               *(meta_text(name) for name in CONTROL_FIELDS))
        .where(Transaction.id.in_(ids)))}
    for row in conn.execute(
            select(Posting.transaction_id, Posting.account_id, Account.user_id,
                   Account.asset_code, Posting.amount, Posting.balance_after)
            .join(Account, Account.id == Posting.account_id)
            .where(Posting.transaction_id.in_(ids)).order_by(Posting.transaction_id, Posting.id)):
        if row[0] in found:
            found[row[0]][1].append(tuple(row[1:]))
    return found


def _transaction_fields(row) -> tuple:
    tx_id, created_at, kind, reference, description, actor, *controls = row
    return (tx_id, moment(created_at), kind, reference, cell_text(description), cell_text(actor),
            *(cell_text(value) for value in controls))


def load_audit_events(conn: Connection, ids: list[int]) -> dict[int, tuple]:
    """audit event id -> its canonical fields."""
    c = audit_table.c
    return {row.id: (row.id, moment(row.created_at), row.action, row.outcome,
                     cell_text(row.actor), row.operator_id, row.api_key_id,
                     cell_text(row.address), cell_text(row.request_id),
                     cell_text(row.object_type), cell_text(row.object_id),
                     details_text(row.details))
            for row in conn.execute(select(audit_table).where(c.id.in_(ids)))}


@dataclass(frozen=True)
class Chain:
    name: str
    noun: str
    sources: Callable[[Connection, tuple[int, int], int], list[tuple]]
    load: Callable[[Connection, list[int]], dict[int, tuple]]
    encode: Callable[[int, tuple], bytes]
    unsealed: Callable[[Connection, tuple[int, int]], int]


def _unsealed_transactions(conn: Connection, position: tuple[int, int]) -> int:
    table = events.events
    return conn.execute(select(func.count()).where(
        table.c.type == POSTED[0], events.past(table, position))).scalar_one()


def _unsealed_audit_events(conn: Connection, position: tuple[int, int]) -> int:
    return conn.execute(select(func.count()).where(events.past(audit_table, position))).scalar_one()


CHAIN = {
    "ledger": Chain("ledger", "transaction", ledger_sources, load_transactions,
                    lambda seq, found: ledger_entry_bytes(seq, *found), _unsealed_transactions),
    "audit": Chain("audit", "audit event", audit_sources, load_audit_events,
                   audit_entry_bytes, _unsealed_audit_events),
}
assert tuple(CHAIN) == CHAINS


# ---------------------------------------------------------------- sealing


def seal(limit: int | None = None) -> dict[str, int]:
    """Seal what has committed, chain by chain; how many entries each chain got (at most
    `limit` each)."""
    return {name: _seal_chain(CHAIN[name], limit) for name in CHAINS}


def seal_count() -> int:
    """The sweeper's job: entries sealed in this pass (a backlog, after an upgrade, is sealed
    over several passes so that the other jobs are not kept waiting)."""
    return sum(seal(limit=SWEEP_LIMIT).values())


def _seal_chain(chain: Chain, limit: int | None) -> int:
    sealed = 0
    while limit is None or sealed < limit:
        size = CHUNK if limit is None else min(CHUNK, limit - sealed)
        added = _seal_chunk(chain, size)
        sealed += added
        if added < size:
            break
    return sealed


def _seal_chunk(chain: Chain, size: int) -> int:
    with db.engine.connect() as conn:
        conn.execution_options(**{WRITE_LOCK: True})  # SQLite: BEGIN IMMEDIATE, one sealer
        with conn.begin():
            head = conn.execute(select(heads_table).where(heads_table.c.chain == chain.name)
                                .with_for_update()).one()
            sources = chain.sources(conn, (head.after_xid, head.after_id), size)
            if not sources:
                return 0
            rows = _new_entries(conn, chain, head, [entry_id for _, _, entry_id in sources])
            conn.execute(insert(entries_table), rows)
            conn.execute(update(heads_table).where(heads_table.c.chain == chain.name).values(
                seq=rows[-1]["seq"], hash=rows[-1]["hash"], after_xid=sources[-1][0],
                after_id=sources[-1][1], sealed_at=rows[-1]["sealed_at"]))
            return len(rows)


def _new_entries(conn: Connection, chain: Chain, head, entry_ids: list[int]) -> list[dict]:
    found = chain.load(conn, entry_ids)
    missing = [entry_id for entry_id in entry_ids if entry_id not in found]
    if missing:  # append-only tables: only someone bypassing the triggers gets here
        raise RuntimeError(f"cannot seal {chain.noun} {missing[0]}: its row is gone")
    now, seq, previous, rows = utcnow(), head.seq, head.hash, []
    for entry_id in entry_ids:
        seq += 1
        previous = chain_hash(previous, chain.encode(seq, found[entry_id]))
        rows.append({"chain": chain.name, "seq": seq, "entry_id": entry_id, "hash": previous,
                     "sealed_at": now})
    return rows


# ---------------------------------------------------------------- reading and checking


def heads(conn: Connection | None = None) -> list[Head]:
    bind = conn if conn is not None else db.session
    rows = bind.execute(select(heads_table).order_by(heads_table.c.chain))
    return [Head(row.chain, row.seq, row.hash, row.sealed_at) for row in rows]


def head(chain: str, conn: Connection | None = None) -> Head:
    return next(found for found in heads(conn) if found.chain == chain)


def pending() -> dict[str, int]:
    """Rows committed but not sealed yet, per chain: the next seal takes them, except those
    an earlier writer still running holds back."""
    with db.engine.connect() as conn:
        stored = conn.execute(select(heads_table)).all()
        return {row.chain: CHAIN[row.chain].unsealed(conn, (row.after_xid, row.after_id))
                for row in stored}


@dataclass(frozen=True)
class ChainCheck:
    chain: str
    entries: int
    head: Head
    unsealed: int
    problem: str | None = None


def check(conn: Connection, name: str) -> ChainCheck:
    """Recompute chain `name` from its rows, CHUNK entries at a time; the first entry that
    does not match, if any, and how many source rows are not sealed yet."""
    chain = CHAIN[name]
    stored = conn.execute(select(heads_table).where(heads_table.c.chain == name)).one()
    found = Head(name, stored.seq, stored.hash, stored.sealed_at)
    unsealed = chain.unsealed(conn, (stored.after_xid, stored.after_id))
    checked, previous = 0, GENESIS
    for batch in _entry_batches(conn, name):
        contents = chain.load(conn, [entry.entry_id for entry in batch])
        for entry in batch:
            problem = _entry_problem(chain, entry, checked + 1, previous, contents)
            if problem:
                return ChainCheck(name, checked, found, unsealed,
                                  f"seq {entry.seq}, {chain.noun} {entry.entry_id}: {problem}")
            checked, previous = checked + 1, entry.hash
    if (found.seq, found.hash) != (checked, previous):
        problem = (f"the head says seq {found.seq} {found.hash}, the entries end at seq "
                   f"{checked} {previous}")
        return ChainCheck(name, checked, found, unsealed, problem)
    return ChainCheck(name, checked, found, unsealed)


def _entry_batches(conn: Connection, name: str):
    after = 0
    while True:
        batch = conn.execute(select(entries_table).where(
            entries_table.c.chain == name, entries_table.c.seq > after)
            .order_by(entries_table.c.seq).limit(CHUNK)).all()
        if not batch:
            return
        yield batch
        after = batch[-1].seq


def _entry_problem(chain: Chain, entry, seq: int, previous: str, contents: dict) -> str | None:
    if entry.seq != seq:
        return f"the chain jumps from seq {seq - 1} to {entry.seq} (entries deleted)"
    if entry.entry_id not in contents:
        return f"the {chain.noun} is gone from its table (deleted)"
    recomputed = chain_hash(previous, chain.encode(entry.seq, contents[entry.entry_id]))
    if recomputed != entry.hash:
        return (f"its rows no longer give the sealed hash (recomputed {recomputed[:12]}…, "
                f"sealed {entry.hash[:12]}…): a row was changed after it was sealed")
    return None
