"""Many movements in one write: the batch API and bulk grants.

Each item is its own transaction with its own reference_id and exactly the idempotency of a
single movement (the same fingerprint: an item and a single request with one reference replay
each other). Items are independent (a refused one leaves the others posted) unless `atomic`.
The accounts of all items are looked up at once, and on PostgreSQL the whole batch is one
call of ledger_apply_batch (migration 0008), which claims the references, locks the wallets
in ascending id order across the batch and checks every item against the running balances.
On SQLite the items run one after another under the write lock, each in a savepoint.
"""
from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Sequence

from blinker import Namespace
from flask import current_app
from sqlalchemy import bindparam, select

from . import errors, kinds, ledger
from .ledger import SYSTEM, Actor, Leg, PostedLeg, Receipt
from .limits import HOUSE_SHARDS, is_id
from .models import utcnow

MAX_ITEMS = 1000  # per request; bulk grants post their rows in batches of this size

# Observers (metrics) get one signal per batch, not one per item.
batch_written = Namespace().signal("batch-written")  # sender="batch"; outcomes=, items=

# Binary parameters (%b): psycopg then sends the arrays without quoting each element.
APPLY_BATCH = (
    "SELECT * FROM ledger_apply_batch(%(kinds)b, %(references)b, %(fingerprints)b, "
    "%(descriptions)b, %(metadata)b::jsonb[], %(actor)s, %(operator_id)s, %(api_key_id)s, "
    "%(created_at)s, %(accounts1)b, %(amounts1)b, %(slots1)b, %(accounts2)b, %(amounts2)b, "
    "%(slots2)b, %(wallets)b, %(houses)b, %(shard)s, %(atomic)s)"
)


@dataclass(frozen=True)
class Item:
    kind: str
    user_id: int
    asset: str
    amount: int
    reference_id: str
    to_user_id: int | None = None
    description: str = ""
    metadata: dict | None = None


@dataclass(frozen=True)
class Outcome:
    """A receipt (posted, or replayed) or the error that refused the item."""

    receipt: Receipt | None = None
    error: errors.WalletError | None = None

    @property
    def status(self) -> int:
        if self.error is not None:
            return self.error.status
        return 200 if self.receipt.replayed else 201


@dataclass(frozen=True)
class _Plan:
    index: int
    item: Item
    legs: tuple[Leg, Leg]  # in the ledger's lock order
    rules: dict
    fingerprint: str


def post_many(items: Sequence[Item | errors.WalletError], *, actor: Actor = SYSTEM,
              atomic: bool = False) -> list[Outcome]:
    """One outcome per item, in order. An item may be the error the caller's own checks
    found (an invalid request body): it is refused with it, and stops an atomic batch."""
    outcomes = _post(items, actor, atomic)
    batch_written.send("batch", outcomes=outcomes, items=items)
    return outcomes


def _post(items: Sequence[Item], actor: Actor, atomic: bool) -> list[Outcome]:
    outcomes: list[Outcome | None] = [None] * len(items)
    with ledger.posting_connection() as conn:
        plans = _plan(conn, items, outcomes)
        if atomic and any(outcomes):
            plans = []
        _write(conn, plans, actor, atomic, outcomes)
    if _release_expired_holds(outcomes):
        _retry_short(items, outcomes, actor, atomic)
    if atomic and any(o.error for o in outcomes if o):
        outcomes = [_aborted(o) for o in outcomes]
    return outcomes


def _aborted(outcome: Outcome | None) -> Outcome:
    if outcome is not None and (outcome.error or outcome.receipt.replayed):
        return outcome
    return Outcome(error=errors.BatchAborted(
        "not posted: another item of this atomic batch was refused"))


# ---------------------------------------------------------------- planning


def _plan(conn, items: Sequence[Item], outcomes: list) -> list[_Plan]:
    """Legs, rules and fingerprint of every item that passes the checks a single movement
    makes before writing; the others get their error in `outcomes`."""
    first_of: dict[str, int] = {}
    for index, item in enumerate(items):
        if isinstance(item, errors.WalletError):  # refused by the caller's own checks
            outcomes[index] = Outcome(error=item)
            continue
        try:
            _check(item)
            first = first_of.get(item.reference_id)
            if first is not None:
                raise errors.DuplicateReference(
                    f"reference_id {item.reference_id!r} repeats items[{first}] of this batch",
                    item=first)
            first_of[item.reference_id] = index
        except errors.LedgerError as error:
            outcomes[index] = Outcome(error=error)
    wallets = _wallets(conn, [item for item, out in zip(items, outcomes) if out is None])
    plans = []
    for index, item in enumerate(items):
        if outcomes[index] is not None:
            continue
        try:
            plans.append(_plan_one(conn, index, item, wallets))
        except errors.LedgerError as error:
            outcomes[index] = Outcome(error=error)
    return plans


def _check(item: Item) -> None:
    if item.kind not in kinds.API_KINDS:
        raise errors.LedgerError(f"kind must be one of {', '.join(kinds.API_KINDS)}")
    ledger.check_amount(item.amount)
    ledger.check_reference(item.reference_id)
    for user in (item.user_id, item.to_user_id):
        if user is not None and not is_id(user):
            raise errors.UnknownUser(f"user {user!r} does not exist", user_id=user)
    ledger.check_counterparty(item.kind, item.user_id, item.to_user_id)


def _plan_one(conn, index: int, item: Item, wallets: dict) -> _Plan:
    wallet, wallet_rule = _wallet_of(conn, wallets, item.user_id, item.asset)
    if item.kind == "transfer":
        target, target_rule = _wallet_of(conn, wallets, item.to_user_id, item.asset)
        legs = [Leg(wallet, -item.amount), Leg(target, item.amount)]
        rules = {wallet: wallet_rule, target: target_rule}
        payload = ledger.transfer_payload(item.user_id, item.to_user_id, item.asset, item.amount,
                                          item.description, item.metadata)
    else:
        flow = kinds.get(item.kind)
        house = ledger.cached(_cache(), (flow.house, item.asset), ledger.find_house, conn,
                               flow.house, item.asset)
        legs = [Leg(house.id, -flow.sign * item.amount), Leg(wallet, flow.sign * item.amount)]
        rules = {wallet: wallet_rule, house.id: house}
        payload = ledger.flow_payload(item.kind, item.user_id, item.asset, item.amount,
                                      item.description, item.metadata)
    ledger.check_ceilings(conn, legs, rules)
    first, second = ledger.lock_order(legs, rules)
    return _Plan(index, item, (first, second), rules, ledger.fingerprint_of(payload))


def _cache() -> dict:
    return current_app.extensions.setdefault("ledger_accounts", {})


def _wallets(conn, items: list[Item]) -> dict:
    """(user id, asset) -> the wallet's rules row, for every wallet the items name: from the
    ledger's account cache, the rest in one query."""
    cache = _cache()
    wanted = {(user, item.asset) for item in items for user in (item.user_id, item.to_user_id)
              if user is not None}
    found = {pair: cache[("wallet", *pair)] for pair in wanted if ("wallet", *pair) in cache}
    missing = wanted - found.keys()
    if missing:
        rows = conn.execute(WALLETS_OF, {"users": sorted({user for user, _ in missing}),
                                         "assets": sorted({asset for _, asset in missing})})
        if len(cache) > ledger.ACCOUNT_CACHE_SIZE:
            cache.clear()
        for row in rows:
            pair = (row.user_id, row.asset_code)
            if pair in missing:
                found[pair] = cache[("wallet", *pair)] = row
    return found


WALLETS_OF = select(*ledger.RULE_COLUMNS, ledger.accounts.c.user_id).where(
    ledger.accounts.c.kind == "wallet",
    ledger.accounts.c.user_id.in_(bindparam("users", expanding=True)),
    ledger.accounts.c.asset_code.in_(bindparam("assets", expanding=True)))


def _wallet_of(conn, wallets: dict, user_id: int, asset: str):
    row = wallets.get((user_id, asset))
    if row is None:
        ledger.raise_missing_wallet(conn, user_id, asset)
    return row.id, row


# ---------------------------------------------------------------- writing


def _write(conn, plans: list[_Plan], actor: Actor, atomic: bool, outcomes: list) -> None:
    if not plans:
        return
    started = time.perf_counter()
    created_at = utcnow()
    if conn.dialect.name == "postgresql":
        taken, refused = _write_in_database(conn, plans, actor, atomic, created_at, outcomes)
    else:
        taken, refused = _write_statements(conn, plans, actor, atomic, created_at, outcomes)
    ledger.wallets_locked.send("batch", seconds=time.perf_counter() - started)
    _replay(conn, taken, actor, outcomes)
    _refuse(conn, refused, outcomes)


def _write_in_database(conn, plans, actor, atomic, created_at, outcomes):
    wallets = sorted({leg.account_id for plan in plans for leg in plan.legs
                      if not plan.rules[leg.account_id].allow_negative})
    houses = sorted({leg.account_id for plan in plans for leg in plan.legs
                     if plan.rules[leg.account_id].allow_negative})
    slot = {account: number for number, account in enumerate(wallets, 1)}
    slot.update({account: -number for number, account in enumerate(houses, 1)})
    first = [plan.legs[0] for plan in plans]
    second = [plan.legs[1] for plan in plans]
    params = {
        "kinds": [plan.item.kind for plan in plans],
        "references": [plan.item.reference_id for plan in plans],
        "fingerprints": [plan.fingerprint for plan in plans],
        "descriptions": [plan.item.description for plan in plans],
        "metadata": _encoded_metadata(plans),
        "actor": actor.label, "operator_id": actor.operator_id, "api_key_id": actor.api_key_id,
        "created_at": created_at,
        "accounts1": [leg.account_id for leg in first], "amounts1": [leg.amount for leg in first],
        "slots1": [slot[leg.account_id] for leg in first],
        "accounts2": [leg.account_id for leg in second], "amounts2": [leg.amount for leg in second],
        "slots2": [slot[leg.account_id] for leg in second],
        "wallets": wallets, "houses": houses, "shard": random.randrange(HOUSE_SHARDS),
        "atomic": atomic,
    }
    tx_ids, states, refused_by, seen, balances1, balances2 = conn.exec_driver_sql(
        APPLY_BATCH, params).one()
    taken, refused = [], []
    for plan, tx_id, state, account, balance, b1, b2 in zip(
            plans, tx_ids, states, refused_by, seen, balances1, balances2):
        if state == "p":
            legs = (PostedLeg(plan.legs[0].account_id, plan.legs[0].amount, b1),
                    PostedLeg(plan.legs[1].account_id, plan.legs[1].amount, b2))
            outcomes[plan.index] = Outcome(Receipt(tx_id, plan.item.kind, plan.item.reference_id,
                                                   plan.item.description, created_at, legs))
        elif state in ("t", "c"):  # c: taken with another payload (an atomic batch stops)
            taken.append(plan)
        elif state == "r":
            leg = next(leg for leg in plan.legs if leg.account_id == account)
            refused.append((plan, leg, balance))
        else:
            outcomes[plan.index] = _aborted(None)
    return taken, refused


def _encoded_metadata(plans: list[_Plan]) -> list[str | None]:
    """Each item's metadata as JSON; items sharing one dict (a bulk grant's) encode it once."""
    encoded: dict[int, str] = {}
    for plan in plans:
        metadata = plan.item.metadata
        if metadata is not None and id(metadata) not in encoded:
            encoded[id(metadata)] = json.dumps(metadata)
    return [None if plan.item.metadata is None else encoded[id(plan.item.metadata)]
            for plan in plans]


def _write_statements(conn, plans, actor, atomic, created_at, outcomes):
    """SQLite: one savepoint per item inside the write lock; an atomic batch is undone whole.
    A taken reference is replayed at once, so that an atomic batch can still be undone."""
    whole = conn.begin_nested()
    for plan in plans:
        outcomes[plan.index] = _write_one(conn, plan, actor, created_at)
    if atomic and any(outcomes[plan.index].error for plan in plans):
        whole.rollback()
        for plan in plans:
            outcomes[plan.index] = _aborted(outcomes[plan.index])
    else:
        whole.commit()
    return [], []


def _write_one(conn, plan: _Plan, actor: Actor, created_at) -> Outcome:
    item = plan.item
    claim = dict(kind=item.kind, reference_id=item.reference_id, fingerprint=plan.fingerprint,
                 description=item.description, metadata=item.metadata, actor=actor.label,
                 operator_id=actor.operator_id, api_key_id=actor.api_key_id, reverses_id=None,
                 created_at=created_at)
    savepoint = conn.begin_nested()
    try:
        tx_id, balances = ledger.apply_statements(conn, claim, list(plan.legs), plan.rules)
        receipt = None
        if tx_id is None:
            receipt = ledger.replay(conn, item.reference_id, plan.fingerprint, actor)
    except errors.LedgerError as error:
        savepoint.rollback()
        return Outcome(error=error)
    savepoint.commit()
    if receipt is not None:
        return Outcome(receipt)
    legs = tuple(PostedLeg(leg.account_id, leg.amount, balances.get(leg.account_id))
                 for leg in plan.legs)
    return Outcome(Receipt(tx_id, item.kind, item.reference_id, item.description, created_at,
                           legs))


def _replay(conn, taken: list[_Plan], actor: Actor, outcomes: list) -> None:
    """Items whose reference was already taken: the stored receipt, or why not (two reads)."""
    if not taken:
        return
    rows = {row.reference_id: row for row in conn.execute(
        select(ledger.transactions).where(ledger.transactions.c.reference_id.in_(
            [plan.item.reference_id for plan in taken])))}
    legs: dict[int, list[PostedLeg]] = {row.id: [] for row in rows.values()}
    postings = ledger.postings
    for posting in conn.execute(
            select(postings.c.transaction_id, postings.c.account_id, postings.c.amount,
                   postings.c.balance_after)
            .where(postings.c.transaction_id.in_(list(legs))).order_by(postings.c.id)):
        legs[posting.transaction_id].append(PostedLeg(*posting[1:]))
    for plan in taken:
        original = rows[plan.item.reference_id]
        try:
            ledger.check_replay(original, plan.fingerprint, actor)
        except errors.LedgerError as error:
            outcomes[plan.index] = Outcome(error=error)
            continue
        outcomes[plan.index] = Outcome(Receipt(
            original.id, original.kind, original.reference_id, original.description,
            original.created_at, tuple(legs[original.id]), replayed=True))


def _refuse(conn, refused: list[tuple[_Plan, Leg, int | None]], outcomes: list) -> None:
    """Why each refused item was refused, from one read of the accounts' facts and the
    wallet's balance when the batch checked the item (later items may have changed it)."""
    if not refused:
        return
    facts = {row.id: row._asdict() for row in conn.execute(
        REFUSAL_FACTS, {"ids": sorted({leg.account_id for _, leg, _ in refused})})}
    for plan, leg, balance in refused:
        then = facts[leg.account_id] if balance is None else {**facts[leg.account_id],
                                                               "balance": balance}
        outcomes[plan.index] = Outcome(error=ledger.refusal(SimpleNamespace(**then), leg))


REFUSAL_FACTS = ledger.ACCOUNT_FACTS.where(
    ledger.accounts.c.id.in_(bindparam("ids", expanding=True)))


# ---------------------------------------------------------------- expired holds


def _release_expired_holds(outcomes: list[Outcome]) -> bool:
    """Wallets short only because of holds past their expiry get them released (as a single
    movement does); True when one was, so that those items are tried once more."""
    short = {o.error.details["account_id"] for o in outcomes
             if o is not None and isinstance(o.error, errors.InsufficientFunds)}
    if not short:
        return False
    from .holds import release_expired_of  # holds.py builds on the ledger
    return bool(release_expired_of(short))


def _retry_short(items: Sequence[Item], outcomes: list, actor: Actor, atomic: bool) -> None:
    """Once more: an atomic batch whole, else the items that were short."""
    again = range(len(items)) if atomic else [
        index for index, o in enumerate(outcomes) if isinstance(o.error, errors.InsufficientFunds)]
    retried = _post([items[index] for index in again], actor, atomic)
    for index, outcome in zip(again, retried):
        outcomes[index] = outcome


def counts(outcomes: list[Outcome]) -> dict[str, int]:
    """posted / replayed / refused."""
    tally = Counter("refused" if o.error else "replayed" if o.receipt.replayed else "posted"
                    for o in outcomes)
    return {name: tally.get(name, 0) for name in ("posted", "replayed", "refused")}
