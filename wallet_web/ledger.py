"""THE ledger service: the only code that moves value.

Every movement is one database transaction that
  1. claims its reference_id (INSERT .. ON CONFLICT DO NOTHING: a concurrent duplicate waits
     for the first and then finds it, so it replays instead of failing),
  2. updates the touched wallets in ascending id order with one guarded UPDATE each
     (`balance + delta >= 0` is checked on the locked row itself: no stale read is possible),
  3. appends the postings with each wallet's balance after them,
  4. adds the house legs to one random shard of each house account (house accounts may go
     negative, so they are never locked as a whole and do not serialize the ledger),
and commits, or rolls back as a whole on the first error.
"""
from __future__ import annotations

import hashlib
import json
import random
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Iterator, NamedTuple

import psycopg
from blinker import Namespace
from flask import current_app
from sqlalchemy import Connection, and_, bindparam, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from . import errors, kinds, ledger_pool
from .extensions import WRITE_LOCK, db
from .limits import BALANCE_CEILING, HOUSE_SHARDS, SHARD_CEILING, is_id
from .models import (
    Account,
    Asset,
    BalanceShard,
    Posting,
    Transaction,
    User,
    utcnow,
)

ACCOUNT_CACHE_SIZE = 200_000
# Larger amounts take the engine's path, whose checks explain why they are refused.
DIRECT_MAX_AMOUNT = min(BALANCE_CEILING, SHARD_CEILING)

# Observers (metrics, logs) subscribe here; the ledger never depends on them.
events = Namespace()
transaction_posted = events.signal("transaction-posted")  # sender=kind; receipt=, asset=
transaction_refused = events.signal("transaction-refused")  # sender=kind; error=, asset=
wallets_locked = events.signal("wallets-locked")  # sender=kind; seconds= spent locking wallets

accounts = Account.__table__
shards = BalanceShard.__table__
transactions = Transaction.__table__
postings = Posting.__table__
users = User.__table__
assets = Asset.__table__


@dataclass(frozen=True)
class Actor:
    label: str
    operator_id: int | None = None
    api_key_id: int | None = None


SYSTEM = Actor("system")


@dataclass(frozen=True)
class Leg:
    account_id: int
    amount: int


@dataclass(frozen=True)
class PostedLeg:
    account_id: int
    amount: int
    balance_after: int | None


@dataclass(frozen=True)
class Receipt:
    id: int
    kind: str
    reference_id: str
    description: str
    created_at: datetime
    postings: tuple[PostedLeg, ...]
    replayed: bool = field(default=False, compare=False)

    def balance_after(self, account_id: int) -> int | None:
        return next((p.balance_after for p in self.postings if p.account_id == account_id), None)


# ---------------------------------------------------------------- flows


def move(kind: str, user_id: int, asset: str, amount: int, reference_id: str, *,
         source: str | None = None, **options) -> Receipt:
    """A movement between a user's wallet and the house account its kind names (kinds.py);
    `source` picks another of the kind's allowed house accounts (a bonus from the treasury)."""
    flow = kinds.get(kind)
    house = source or flow.house
    if house != flow.house and house not in flow.sources:
        allowed = " or ".join(flow.sources)
        raise errors.UnknownAccount(f"{kind} source must be {allowed}, not {source!r}")
    return _user_flow(kind, house, flow.sign, user_id, asset, amount, reference_id, **options)


def topup(user_id: int, asset: str, amount: int, reference_id: str, **options) -> Receipt:
    return move("topup", user_id, asset, amount, reference_id, **options)


def bonus(user_id: int, asset: str, amount: int, reference_id: str, **options) -> Receipt:
    return move("bonus", user_id, asset, amount, reference_id, **options)


def spend(user_id: int, asset: str, amount: int, reference_id: str, **options) -> Receipt:
    return move("spend", user_id, asset, amount, reference_id, **options)


def transfer(from_user: int, to_user: int, asset: str, amount: int, reference_id: str, *,
             description: str = "", metadata: dict | None = None,
             actor: Actor = SYSTEM) -> Receipt:
    """From one user's wallet to another's, same asset. Both wallets are locked in ascending
    id order like every other movement, so opposite transfers cannot deadlock."""
    check_amount(amount)
    check_counterparty("transfer", from_user, to_user)
    payload = transfer_payload(from_user, to_user, asset, amount, description, metadata)

    def post() -> Receipt:
        with posting_connection() as conn:
            source, source_rule = _wallet(conn, from_user, asset)
            target, target_rule = _wallet(conn, to_user, asset)
            return _post(conn, "transfer", [Leg(source, -amount), Leg(target, amount)],
                         reference_id, payload, description=description, metadata=metadata,
                         actor=actor, rules={source: source_rule, target: target_rule})

    with _announced("transfer", asset) as announce:
        return announce.posted(releasing_expired_holds(post))


def reverse(
    transaction_id: int, reference_id: str, *, description: str = "", actor: Actor = SYSTEM,
    metadata: dict | None = None,
) -> Receipt:
    payload = {"kind": "reversal", "reverses": transaction_id, "description": description}
    if metadata is not None:  # only then: earlier reversals' fingerprints stay valid
        payload["metadata"] = metadata
    with _announced("reversal") as announce:
        with posting_connection() as conn:
            original = _load_receipt(conn, transactions.c.id == transaction_id)
            if original is None:
                raise errors.UnknownTransaction(f"transaction {transaction_id} does not exist")
            if not kinds.is_reversible(original.kind):
                raise errors.NotReversible(f"a {original.kind} transaction cannot be reversed")
            legs = [Leg(p.account_id, -p.amount) for p in original.postings]
            receipt = _post(
                conn, "reversal", legs, reference_id, payload,
                description=description or f"Reversal of transaction {transaction_id}",
                actor=actor, reverses_id=transaction_id, metadata=metadata,
            )
        return announce.posted(receipt)


def post(kind: str, legs: list[Leg], reference_id: str, **options) -> Receipt:
    """Post arbitrary balanced legs (genesis, adjustments)."""
    payload = {"kind": kind, "legs": sorted([leg.account_id, leg.amount] for leg in legs)}
    payload.update(description=options.get("description", ""), metadata=options.get("metadata"))
    with _announced(kind) as announce:
        with posting_connection() as conn:
            receipt = _post(conn, kind, legs, reference_id, payload, **options)
        return announce.posted(receipt)


def _user_flow(
    kind: str, house_kind: str, sign: int, user_id: int, asset: str, amount: int,
    reference_id: str, *, description: str = "", metadata: dict | None = None,
    actor: Actor = SYSTEM,
) -> Receipt:
    check_amount(amount)
    payload = flow_payload(kind, user_id, asset, amount, description, metadata)

    def post() -> Receipt:
        known = _known_wallet_and_house(user_id, asset, house_kind)
        if known is not None and amount <= DIRECT_MAX_AMOUNT:
            wallet_id, house_id, rules = known
            legs = [Leg(house_id, -sign * amount), Leg(wallet_id, sign * amount)]
            return _post_direct(kind, legs, reference_id, payload, rules,
                                description=description, metadata=metadata, actor=actor)
        with posting_connection() as conn:
            wallet_id, house_id, rules = _wallet_and_house(conn, user_id, asset, house_kind)
            legs = [Leg(house_id, -sign * amount), Leg(wallet_id, sign * amount)]
            return _post(conn, kind, legs, reference_id, payload, description=description,
                         metadata=metadata, actor=actor, rules=rules)

    with _announced(kind, asset) as announce:
        return announce.posted(releasing_expired_holds(post))


def flow_payload(kind: str, user_id: int, asset: str, amount: int, description: str,
                 metadata: dict | None) -> dict:
    """What a user movement's fingerprint is made of (single and batch alike)."""
    return {"kind": kind, "user_id": user_id, "asset": asset, "amount": amount,
            "description": description, "metadata": metadata}


def transfer_payload(from_user: int, to_user: int, asset: str, amount: int, description: str,
                     metadata: dict | None) -> dict:
    return {"kind": "transfer", "user_id": from_user, "to_user_id": to_user, "asset": asset,
            "amount": amount, "description": description, "metadata": metadata}


def releasing_expired_holds(post):
    """post(); when a wallet lacks funds only because its expired holds are not released yet
    (the sweeper runs every minute), release them and post once more. Only refusals pay."""
    try:
        return post()
    except errors.InsufficientFunds as error:
        from .holds import release_expired  # holds.py builds on this module
        if not release_expired(error.details["account_id"]):
            raise
        return post()


# ---------------------------------------------------------------- the core


class _announced:
    """Sends transaction_refused for a domain error and transaction_posted for the receipt."""

    def __init__(self, kind: str, asset: str | None = None):
        self.kind, self.asset = kind, asset

    def __enter__(self):
        return self

    def __exit__(self, exc_type, error, _tb):
        if isinstance(error, errors.LedgerError):
            transaction_refused.send(self.kind, error=error, asset=self.asset)
        return False

    def posted(self, receipt: Receipt) -> Receipt:
        transaction_posted.send(self.kind, receipt=receipt, asset=self.asset)
        return receipt


@contextmanager
def atomic() -> Iterator[Connection]:
    """A real transaction for a movement that must commit with other rows (holds.py): every
    statement on it, ledger writes (post_on) included, commits or rolls back together."""
    db.session.rollback()
    with db.engine.connect() as conn:
        conn.execution_options(**{WRITE_LOCK: True})  # SQLite: BEGIN IMMEDIATE
        conn.info[ATOMIC] = True
        conn.begin()  # not a context manager: a refusal rolls back and still reads (_apply)
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.info.pop(ATOMIC, None)


def transaction_by_reference(conn: Connection, reference_id: str):
    return conn.execute(select(transactions).where(
        transactions.c.reference_id == reference_id)).one_or_none()


def replay(conn: Connection, reference_id: str, fingerprint: str, actor: Actor) -> Receipt:
    """The receipt of the transaction a reference names, when `fingerprint` and `actor` are
    the ones it was posted with (else IdempotencyConflict / ReferenceTaken)."""
    return _replay(conn, reference_id, fingerprint, None, actor)


def post_on(conn: Connection, kind: str, legs: list[Leg], reference_id: str, payload: dict,
            **options) -> Receipt:
    """Post balanced legs on the caller's atomic() connection (announced like any movement)."""
    with _announced(kind, options.pop("asset", None)) as announce:
        return announce.posted(_post(conn, kind, legs, reference_id, payload, **options))


def wallet_and_house(conn: Connection, user_id: int, asset: str, house_kind: str):
    """(wallet id, house account id, the rules of both) for post_on's `rules`."""
    return _wallet_and_house(conn, user_id, asset, house_kind)


@contextmanager
def posting_connection() -> Iterator[Connection]:
    """Where transfers run. On PostgreSQL each statement commits by itself, because the one
    that writes (ledger_apply) is atomic on its own; everything before it only reads."""
    db.session.rollback()
    with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT")
        else:
            conn.execution_options(**{WRITE_LOCK: True})
        with conn.begin():
            yield conn


RULE_COLUMNS = (accounts.c.id, accounts.c.kind, accounts.c.asset_code, accounts.c.allow_negative)


class AccountRule(NamedTuple):
    """RULE_COLUMNS of an account read on the ledger pool (the engine's rows have the same
    attributes): what the ledger caches of it."""
    id: int
    kind: str
    asset_code: str
    allow_negative: bool


# Two lookups on unique/narrow indexes (an OR of both would need table statistics to be
# planned well, and on a fresh bulk load it scanned every wallet of the asset).
WALLET_OF = select(*RULE_COLUMNS).where(
    accounts.c.user_id == bindparam("user_id"), accounts.c.asset_code == bindparam("asset"),
    accounts.c.kind == "wallet",
)
HOUSE_OF = select(*RULE_COLUMNS).where(
    accounts.c.kind == bindparam("house_kind"), accounts.c.asset_code == bindparam("asset"),
)
RULES = select(*RULE_COLUMNS).where(accounts.c.id.in_(bindparam("ids", expanding=True)))
CLAIM = {
    name: dialect.insert(transactions).on_conflict_do_nothing().returning(transactions.c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


def _asset_limit(column):
    return select(column).where(assets.c.code == accounts.c.asset_code).scalar_subquery()


# The statements below are the SQLite copy of ledger_apply (migrations 0002, 0003, 0005): a change
# to one is a change to both, and tests/integration/test_ledger_rules.py runs on both.
_after = accounts.c.balance + bindparam("leg_amount")
WALLET_UPDATE = (  # a debit may leave a wallet above a lowered max_balance; a credit may not
    update(accounts)  # a frozen wallet takes credits only, a closed one nothing
    .where(accounts.c.id == bindparam("leg_account"),
           or_(accounts.c.status == "active",
               and_(accounts.c.status == "frozen", bindparam("leg_amount") > 0)),
           bindparam("leg_size") <= _asset_limit(assets.c.max_amount), _after >= 0,
           or_(bindparam("leg_amount") < 0, _after <= _asset_limit(assets.c.max_balance)))
    .values(balance=_after)
    .returning(accounts.c.balance)
)
ACTIVE_ACCOUNT = select(accounts.c.id).where(accounts.c.id == bindparam("leg_account"),
                                             accounts.c.status == "active")
SHARD_UPDATE = (
    update(shards)
    .where(shards.c.account_id == bindparam("leg_account"), shards.c.shard == bindparam("leg_shard"),
           shards.c.balance + bindparam("leg_amount") >= -SHARD_CEILING,
           shards.c.balance + bindparam("leg_amount") <= SHARD_CEILING,
           ACTIVE_ACCOUNT.exists())
    .values(balance=shards.c.balance + bindparam("leg_amount"))
)
# Driver SQL (psycopg placeholders): this statement runs on every transfer on PostgreSQL,
# and skipping SQLAlchemy's statement compilation halves its client-side cost.
APPLY = (
    "SELECT transaction_id, balances FROM ledger_apply(%(kind)s, %(reference_id)s, "
    "%(fingerprint)s, %(description)s, %(metadata)s::jsonb, %(actor)s, %(operator_id)s, "
    "%(api_key_id)s, %(reverses_id)s, %(created_at)s, %(accounts)s::bigint[], "
    "%(amounts)s::bigint[], %(wallet)s::boolean[], %(shard)s)"
)
REFUSED = "WL001"  # SQLSTATE raised by ledger_apply when a wallet refuses a leg
ATOMIC = "ledger_atomic"  # conn.info key: the connection is in atomic()'s real transaction


def _post(
    conn: Connection, kind: str, legs: list[Leg], reference_id: str, payload: dict, *,
    description: str = "", metadata: dict | None = None, actor: Actor = SYSTEM,
    reverses_id: int | None = None, rules: dict | None = None,
) -> Receipt:
    check_reference(reference_id)
    for leg in legs:
        check_amount(abs(leg.amount))
    rules = rules or _account_rules(conn, {leg.account_id for leg in legs})
    _check_balanced(legs, rules)
    check_ceilings(conn, legs, rules)
    ordered = lock_order(legs, rules)
    claim = _claim(kind, reference_id, payload, description, metadata, actor, reverses_id)
    started = time.perf_counter()
    tx_id, balances = _apply(conn, claim, ordered, rules)
    wallets_locked.send(kind, seconds=time.perf_counter() - started)
    if tx_id is None:
        return _replay(conn, reference_id, claim["fingerprint"], reverses_id, actor)
    return _receipt(tx_id, claim, ordered, balances)


def _post_direct(kind: str, legs: list[Leg], reference_id: str, payload: dict, rules: dict, *,
                 description: str, metadata: dict | None, actor: Actor) -> Receipt:
    """_post on PostgreSQL for legs whose accounts' rules are cached and whose amounts are
    within the ceilings: one ledger_apply on a ledger_pool connection. A refusal's
    explanation and a replay read through the engine, as _post's do."""
    check_reference(reference_id)
    _check_balanced(legs, rules)
    ordered = lock_order(legs, rules)
    claim = _claim(kind, reference_id, payload, description, metadata, actor)
    started = time.perf_counter()
    try:
        tx_id, balances = ledger_pool.get().fetchone(APPLY, _apply_params(claim, ordered, rules))
    except psycopg.Error as error:
        if error.sqlstate != REFUSED:
            raise
        refused = int(error.diag.message_detail)
        with posting_connection() as conn:
            _raise_refusal(conn, next(leg for leg in ordered if leg.account_id == refused))
    wallets_locked.send(kind, seconds=time.perf_counter() - started)
    if tx_id is None:
        with posting_connection() as conn:
            return _replay(conn, reference_id, claim["fingerprint"], None, actor)
    return _receipt(tx_id, claim, ordered, _balances(ordered, balances))


def _claim(kind: str, reference_id: str, payload: dict, description: str,
           metadata: dict | None, actor: Actor, reverses_id: int | None = None) -> dict:
    """The transaction row's values (ledger_apply's first arguments)."""
    return dict(
        kind=kind, reference_id=reference_id, fingerprint=fingerprint_of(payload),
        description=description, metadata=metadata, actor=actor.label,
        operator_id=actor.operator_id, api_key_id=actor.api_key_id, reverses_id=reverses_id,
        created_at=utcnow(),
    )


def _receipt(tx_id: int, claim: dict, ordered: list[Leg], balances: dict[int, int]) -> Receipt:
    posted = tuple(PostedLeg(leg.account_id, leg.amount, balances.get(leg.account_id))
                   for leg in ordered)
    return Receipt(tx_id, claim["kind"], claim["reference_id"], claim["description"],
                   claim["created_at"], posted)


def lock_order(legs: list[Leg], rules: dict) -> list[Leg]:
    """Wallets by ascending id, then house legs: one global order, so no deadlock."""
    return sorted(legs, key=lambda leg: (rules[leg.account_id].allow_negative, leg.account_id))


def _account_rules(conn: Connection, account_ids: set[int]) -> dict[int, tuple]:
    """kind, asset_code and allow_negative per account: facts that never change."""
    rules = {row.id: row for row in conn.execute(RULES, {"ids": list(account_ids)})}
    missing = account_ids - rules.keys()
    if missing:
        raise errors.UnknownAccount(f"account {min(missing)} does not exist")
    return rules


def _check_balanced(legs: list[Leg], rules: dict[int, tuple]) -> None:
    if len(legs) < 2:
        raise errors.UnbalancedTransaction("a transaction needs at least two legs")
    if len(legs) == 2 and legs[0].amount == -legs[1].amount and (  # a movement: at a glance
            rules[legs[0].account_id].asset_code == rules[legs[1].account_id].asset_code):
        return
    totals: dict[str, int] = defaultdict(int)
    for leg in legs:
        totals[rules[leg.account_id].asset_code] += leg.amount
    unbalanced = {asset: total for asset, total in totals.items() if total != 0}
    if unbalanced:
        raise errors.UnbalancedTransaction("legs do not sum to zero", totals=unbalanced)


def check_ceilings(conn, legs: list[Leg], rules: dict[int, tuple]) -> None:
    """Amounts the database could not even add up safely are refused here; the asset's own
    (lower, settable) limits are checked by the write itself."""
    for leg in legs:
        rule = rules[leg.account_id]
        ceiling = SHARD_CEILING if rule.allow_negative else BALANCE_CEILING
        if abs(leg.amount) > ceiling:
            _raise_too_large(conn, leg, rule.asset_code)


def _apply(conn, claim: dict, legs: list[Leg], rules) -> tuple[int | None, dict[int, int]]:
    """Claim the reference and write the legs: (transaction id, wallet balances after), or
    (None, {}) when the reference (or the reversal) is already taken. Every leg is refused
    on a frozen account, and a wallet leg also below zero."""
    if conn.dialect.name == "postgresql":
        return _apply_in_database(conn, claim, legs, rules)
    return apply_statements(conn, claim, legs, rules)


def _apply_params(claim: dict, legs: list[Leg], rules) -> dict:
    """The arrays go as array literals: psycopg would otherwise inspect every element of a
    list to choose its type, on every call (the SQL casts them)."""
    return {
        **claim, "metadata": None if claim["metadata"] is None else json.dumps(claim["metadata"]),
        "accounts": _array(leg.account_id for leg in legs),
        "amounts": _array(leg.amount for leg in legs),
        "wallet": _array("f" if rules[leg.account_id].allow_negative else "t" for leg in legs),
        "shard": random.randrange(HOUSE_SHARDS),
    }


def _array(values) -> str:
    return "{" + ",".join(map(str, values)) + "}"


def _balances(legs: list[Leg], balances: list) -> dict[int, int]:
    """ledger_apply's balances (one per leg, NULL for house legs) by wallet."""
    return {leg.account_id: b for leg, b in zip(legs, balances) if b is not None}


def _apply_in_database(conn, claim: dict, legs: list[Leg], rules):
    try:
        tx_id, balances = conn.exec_driver_sql(APPLY, _apply_params(claim, legs, rules)).one()
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) != REFUSED:
            raise
        refused = int(error.orig.diag.message_detail)
        if conn.info.get(ATOMIC):  # the error aborted the transaction: nothing to keep of it
            conn.rollback()
        _raise_refusal(conn, next(leg for leg in legs if leg.account_id == refused))
    if tx_id is None:
        return None, {}
    return tx_id, _balances(legs, balances)


def apply_statements(conn, claim: dict, legs: list[Leg], rules):
    tx_id = conn.execute(CLAIM[conn.dialect.name], claim).scalar()
    if tx_id is None:
        return None, {}
    shard = random.randrange(HOUSE_SHARDS)
    balances = {}
    for leg in legs:
        params = {"leg_account": leg.account_id, "leg_amount": leg.amount,
                  "leg_size": abs(leg.amount)}
        if rules[leg.account_id].allow_negative:
            if not _add_to_a_shard(conn, params, shard):
                _raise_refusal(conn, leg)
            continue
        balance = conn.execute(WALLET_UPDATE, params).scalar()
        if balance is None:
            _raise_refusal(conn, leg)
        balances[leg.account_id] = balance
    conn.execute(insert(postings), [
        {"transaction_id": tx_id, "account_id": leg.account_id, "amount": leg.amount,
         "balance_after": balances.get(leg.account_id), "created_at": claim["created_at"]}
        for leg in legs
    ])
    return tx_id, balances


def _add_to_a_shard(conn, params: dict, first: int) -> bool:
    """The leg on the random shard or, when that one is near its ceiling (rare), on the next
    one that stays within it. False when none can take it, or the account is frozen."""
    for step in range(HOUSE_SHARDS):
        shard = (first + step) % HOUSE_SHARDS
        if conn.execute(SHARD_UPDATE, {**params, "leg_shard": shard}).rowcount == 1:
            return True
        if step == 0 and conn.execute(ACTIVE_ACCOUNT, params).first() is None:
            return False
    return False


def _replay(conn, reference_id: str, fingerprint: str, reverses_id: int | None,
            actor: Actor) -> Receipt:
    original = conn.execute(select(transactions).where(
        transactions.c.reference_id == reference_id)).one_or_none()
    if original is None:  # the conflict was on reverses_id: reversed under another reference
        raise errors.AlreadyReversed(f"transaction {reverses_id} is already reversed")
    check_replay(original, fingerprint, actor)
    return replace(_receipt_of(conn, original), replayed=True)


def check_replay(original, fingerprint: str, actor: Actor) -> None:
    """May this caller replay `original` (a transactions row) with a request of `fingerprint`?"""
    reference_id = original.reference_id
    if (original.actor, original.operator_id, original.api_key_id) != (
            actor.label, actor.operator_id, actor.api_key_id):
        raise errors.ReferenceTaken(f"reference_id {reference_id!r} is taken by another caller")
    if original.fingerprint != fingerprint:
        raise errors.IdempotencyConflict(
            f"reference_id {reference_id!r} was already used for a different request",
            transaction_id=original.id,
        )


ACCOUNT_FACTS = (
    select(accounts.c.id, accounts.c.status, accounts.c.balance, accounts.c.allow_negative,
           accounts.c.asset_code, assets.c.max_amount, assets.c.max_balance)
    .join(assets, assets.c.code == accounts.c.asset_code)
)
REFUSAL_FACTS = ACCOUNT_FACTS.where(accounts.c.id == bindparam("account_id"))


def _raise_refusal(conn, leg: Leg):
    """Why the write refused a leg (only refusals pay for this read)."""
    raise refusal(conn.execute(REFUSAL_FACTS, {"account_id": leg.account_id}).one(), leg)


def refusal(facts, leg: Leg) -> errors.LedgerError:
    """The error for a leg the write refused, from its account's REFUSAL_FACTS row."""
    account = leg.account_id
    if facts.status == "closed":
        return errors.AccountClosed(f"account {account} is closed", account_id=account,
                                    status=facts.status)
    if facts.status != "active" and (leg.amount < 0 or facts.allow_negative):
        return errors.AccountFrozen(f"account {account} is frozen: it takes credits only"
                                    if not facts.allow_negative else f"account {account} is frozen",
                                    account_id=account, status=facts.status)
    if facts.allow_negative:
        return errors.BalanceLimit(
            f"house account {account} cannot take {leg.amount:+}: every shard is at its ceiling",
            account_id=account, requested=leg.amount)
    if abs(leg.amount) > facts.max_amount:
        return too_large(leg, facts.asset_code, facts.max_amount)
    if leg.amount < 0:
        return errors.InsufficientFunds(
            f"account {account} holds {facts.balance}, needs {-leg.amount}",
            account_id=account, available=facts.balance, requested=-leg.amount)
    return errors.BalanceLimit(
        f"account {account} holds {facts.balance}; {leg.amount} more would exceed the "
        f"{facts.asset_code} maximum balance of {facts.max_balance}",
        account_id=account, balance=facts.balance, max_balance=facts.max_balance,
        requested=leg.amount)


def _raise_too_large(conn, leg: Leg, asset: str):
    max_amount = conn.execute(select(assets.c.max_amount).where(assets.c.code == asset)).scalar_one()
    raise too_large(leg, asset, max_amount)


def too_large(leg: Leg, asset: str, max_amount: int) -> errors.AmountTooLarge:
    return errors.AmountTooLarge(
        f"{abs(leg.amount)} is above the {asset} maximum of {max_amount} per movement",
        asset=asset, max_amount=max_amount, requested=abs(leg.amount))


def _load_receipt(conn, condition) -> Receipt | None:
    tx = conn.execute(select(transactions).where(condition)).one_or_none()
    return None if tx is None else _receipt_of(conn, tx)


def _receipt_of(conn, tx) -> Receipt:
    legs = conn.execute(
        select(postings.c.account_id, postings.c.amount, postings.c.balance_after)
        .where(postings.c.transaction_id == tx.id).order_by(postings.c.id)
    )
    return Receipt(tx.id, tx.kind, tx.reference_id, tx.description, tx.created_at,
                   tuple(PostedLeg(*row) for row in legs))


def _known_wallet_and_house(user_id: int, asset: str, house_kind: str):
    """_wallet_and_house without the engine, when the ledger pool can post the movement
    (PostgreSQL): the house account from the cache, the wallet from the cache or, the first
    time this process sees it, read on the pool. None when either is not found that way (the
    engine's path then finds it, or explains why it does not exist)."""
    pool = ledger_pool.get()
    if pool is None:
        return None
    cache = current_app.extensions.setdefault("ledger_accounts", {})
    house = cache.get((house_kind, asset))
    wallet = cache.get(("wallet", user_id, asset))
    if wallet is None and house is not None and is_id(user_id):
        rows = pool.fetchall(WALLET_OF, {"user_id": user_id, "asset": asset})
        if rows:
            wallet = cached(cache, ("wallet", user_id, asset), AccountRule._make, rows[0])
    if wallet is None or house is None:
        return None
    return wallet.id, house.id, {wallet.id: wallet, house.id: house}


def _wallet_and_house(conn, user_id: int, asset: str, house_kind: str):
    """(wallet id, house account id, rules of both). Accounts are never deleted and these
    facts never change (status is checked by the write itself), so they are cached per app."""
    wallet_id, wallet = _wallet(conn, user_id, asset)
    cache = current_app.extensions.setdefault("ledger_accounts", {})
    house = cached(cache, (house_kind, asset), find_house, conn, house_kind, asset)
    return wallet_id, house.id, {wallet_id: wallet, house.id: house}


def _wallet(conn, user_id: int, asset: str):
    if not is_id(user_id):
        raise errors.UnknownUser(f"user {user_id!r} does not exist", user_id=user_id)
    cache = current_app.extensions.setdefault("ledger_accounts", {})
    wallet = cached(cache, ("wallet", user_id, asset), _find_wallet, conn, user_id, asset)
    return wallet.id, wallet


def cached(cache: dict, key: tuple, find, *args):
    row = cache.get(key)
    if row is None:
        row = cache[key] = find(*args)
        if len(cache) > ACCOUNT_CACHE_SIZE:
            cache.clear()
    return row


def _find_wallet(conn, user_id: int, asset: str):
    row = conn.execute(WALLET_OF, {"user_id": user_id, "asset": asset}).first()
    if row is None:
        raise_missing_wallet(conn, user_id, asset)
    return row


def find_house(conn, house_kind: str, asset: str):
    row = conn.execute(HOUSE_OF, {"house_kind": house_kind, "asset": asset}).first()
    if row is None:
        raise errors.UnknownAccount(f"no {house_kind} account for {asset}")
    return row


def raise_missing_wallet(conn, user_id: int, asset: str):
    if conn.execute(select(users.c.id).where(users.c.id == user_id)).first() is None:
        raise errors.UnknownUser(f"user {user_id} does not exist", user_id=user_id)
    if conn.execute(select(assets.c.code).where(assets.c.code == asset)).first() is None:
        raise errors.UnknownAsset(f"asset {asset!r} does not exist", asset=asset)
    raise errors.UnknownAccount(f"user {user_id} has no {asset} wallet", user_id=user_id)


# ---------------------------------------------------------------- rules


def check_amount(amount) -> None:
    """A positive integer; how large it may be is the asset's limit (AmountTooLarge)."""
    if type(amount) is not int:
        raise errors.InvalidAmount("amount must be an integer number of the asset's smallest unit")
    if amount < 1:
        raise errors.InvalidAmount("amount must be at least 1")


def check_counterparty(kind: str, user_id: int, to_user_id: int | None) -> None:
    """A transfer names its recipient, another user; no other movement names one."""
    if kind != "transfer":
        if to_user_id is not None:
            raise errors.InvalidTransfer(f"to_user_id is for transfers, not {kind}",
                                         field="to_user_id")
    elif to_user_id is None:
        raise errors.InvalidTransfer("a transfer needs to_user_id", field="to_user_id")
    elif to_user_id == user_id:
        raise errors.InvalidTransfer("a transfer needs two different users", user_id=user_id)


def check_reference(reference_id) -> None:
    if not isinstance(reference_id, str) or not 0 < len(reference_id) <= 128:
        raise errors.LedgerError("reference_id must be a string of 1 to 128 characters")


def fingerprint_of(payload: dict) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
