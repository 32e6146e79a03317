"""Read side shared by the pages, the JSON API and the CSV export.

Lists are keyset-paginated on ids, newest first: a cursor is the last id seen, so pages stay
stable while new rows arrive and cost the same at any depth (no OFFSET).
"""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Generic, TypeVar

from sqlalchemy import Select, bindparam, exists, func, or_, select
from sqlalchemy.orm import selectinload

from . import errors
from .accounts import SYSTEM_USERNAME
from .extensions import db
from .inputs import parse_integer
from .limits import is_id
from .models import (
    Account, Asset, BalanceShard, MovementRequest, Posting, StatusChange, Transaction, User, utcnow,
)

T = TypeVar("T")
MAX_PAGE = 200
CURSOR = re.compile(r"[A-Za-z0-9_-]{1,32}")  # url-safe base64 of "id:" and at most 19 digits


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class AccountBalance:
    id: int
    name: str
    kind: str
    asset_code: str
    balance: int
    status: str


@dataclass(frozen=True)
class PostingRow:
    id: int
    transaction_id: int
    kind: str
    reference_id: str
    description: str
    actor: str
    amount: int
    balance_after: int | None
    created_at: datetime


@dataclass(frozen=True)
class TransactionFilters:
    user_id: int | None = None
    account_id: int | None = None
    asset: str | None = None
    kind: str | None = None
    reference_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    metadata: str | None = None  # "key:value"
    reason_code: str | None = None  # a dashboard movement's (approvals.py keeps it in metadata)
    ticket: str | None = None


# ---------------------------------------------------------------- cursors


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The last id a cursor names; InvalidCursor unless it is one encode_cursor could make."""
    if not cursor:
        return None
    last_id = _cursor_id(cursor) if CURSOR.fullmatch(cursor) else None
    if not is_id(last_id):
        raise errors.InvalidCursor("cursor is not one this API returned")
    return last_id


def _cursor_id(cursor: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        return None
    prefix, _, digits = text.partition(":")
    return parse_integer(digits) if prefix == "id" else None


def _page(rows: list, limit: int, id_of=lambda row: row.id) -> Page:
    more = len(rows) > limit
    items = rows[:limit]
    return Page(items, encode_cursor(id_of(items[-1])) if more else None)


def _limit(limit: int) -> int:
    return max(1, min(int(limit), MAX_PAGE))


# ---------------------------------------------------------------- users and accounts


def find_users(term: str, limit: int = 20) -> list[User]:
    """A user by exact id, else by username or email prefix (case-insensitive)."""
    term = (term or "").strip()
    if not term:
        return []
    user_id = parse_integer(term)
    if is_id(user_id):
        user = db.session.get(User, user_id)
        if user is not None:
            return [user]
    pattern = _escape_like(term.lower()) + "%"
    query = (select(User).where(or_(func.lower(User.username).like(pattern, escape="\\"),
                                    func.lower(User.email).like(pattern, escape="\\")))
             .order_by(User.username).limit(_limit(limit)))
    return list(db.session.scalars(query))


def list_users(q: str | None = None, status: str | None = None, cursor: str | None = None,
               limit: int = 50) -> Page[User]:
    """Users newest first, optionally by status and by an id or a username, email or
    external_id prefix (case-insensitive); keyset pages. The system user is not listed."""
    limit = _limit(limit)
    query = select(User).where(User.username != SYSTEM_USERNAME)
    if status:
        query = query.where(User.status == status)
    term = (q or "").strip()
    if term:
        query = query.where(_matching(term))
    before = decode_cursor(cursor)
    if before is not None:
        query = query.where(User.id < before)
    return _page(list(db.session.scalars(query.order_by(User.id.desc()).limit(limit + 1))), limit)


def _matching(term: str):
    pattern = _escape_like(term.lower()) + "%"
    prefixes = [func.lower(column).like(pattern, escape="\\")
                for column in (User.username, User.email, User.external_id)]
    user_id = parse_integer(term)
    return or_(User.id == user_id, *prefixes) if is_id(user_id) else or_(*prefixes)


def user_by_external_id(external_id: str) -> User:
    user = db.session.scalars(select(User).where(User.external_id == external_id)).first()
    if user is None:
        raise errors.UnknownUser(f"no user has external_id {external_id!r}",
                                 external_id=external_id)
    return user


def status_changes(user_id: int, limit: int = 20) -> list[StatusChange]:
    query = (select(StatusChange).where(StatusChange.user_id == user_id)
             .order_by(StatusChange.id.desc()).limit(limit))
    return list(db.session.scalars(query))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _get(model, row_id: int, missing: type[errors.NotFound], **options):
    row = db.session.get(model, row_id, **options) if is_id(row_id) else None
    if row is None:
        name = model.__name__.lower()
        raise missing(f"{name} {row_id} does not exist", **{f"{name}_id": row_id})
    return row


def get_user(user_id: int) -> User:
    return _get(User, user_id, errors.UnknownUser)


def count_users_named(prefix: str) -> int:
    query = select(func.count()).select_from(User).where(User.username.startswith(prefix))
    return db.session.execute(query).scalar_one()


def _shard_total():
    return (select(func.coalesce(func.sum(BalanceShard.balance), 0))
            .where(BalanceShard.account_id == Account.id).scalar_subquery())


# Built once: the balance endpoint runs this on every call.
BALANCES = select(Account.id, Account.name, Account.kind, Account.asset_code,
                  Account.balance + _shard_total(), Account.status
                  ).order_by(Account.asset_code, Account.kind)
USER_BALANCES = BALANCES.where(Account.user_id == bindparam("user_id"))
HOUSE_BALANCES = BALANCES.where(Account.allow_negative)


def user_balances(user_id: int) -> list[AccountBalance]:
    balances = []
    if is_id(user_id):
        rows = db.session.execute(USER_BALANCES, {"user_id": user_id})
        balances = [AccountBalance(*row) for row in rows]
    if not balances:
        get_user(user_id)  # UnknownUser, unless the user exists without accounts
    return balances


def house_balances() -> list[AccountBalance]:
    return [AccountBalance(*row) for row in db.session.execute(HOUSE_BALANCES)]


def get_account(account_id: int) -> Account:
    return _get(Account, account_id, errors.UnknownAccount)


def account_balance(account_id: int) -> int:
    """Exact balance: the cached column plus, for house accounts, their shards."""
    query = select(Account.balance + _shard_total()).where(Account.id == account_id)
    balance = db.session.execute(query).scalar()
    if balance is None:
        raise errors.UnknownAccount(f"account {account_id} does not exist", account_id=account_id)
    return balance


def balance_at(account_id: int, at: datetime) -> int:
    """Balance after the last posting at or before `at` (house accounts: sum of postings)."""
    account = get_account(account_id)
    if account.allow_negative:
        query = select(func.coalesce(func.sum(Posting.amount), 0)).where(
            Posting.account_id == account_id, Posting.created_at <= at)
        return db.session.execute(query).scalar_one()
    query = (select(Posting.balance_after)
             .where(Posting.account_id == account_id, Posting.created_at <= at)
             .order_by(Posting.created_at.desc(), Posting.id.desc()).limit(1))
    return db.session.execute(query).scalar() or 0


def account_postings(account_id: int, cursor: str | None = None, limit: int = 50) -> Page[PostingRow]:
    get_account(account_id)
    limit = _limit(limit)
    query = (select(Posting.id, Posting.transaction_id, Transaction.kind, Transaction.reference_id,
                    Transaction.description, Transaction.actor, Posting.amount,
                    Posting.balance_after, Posting.created_at)
             .join(Transaction, Transaction.id == Posting.transaction_id)
             .where(Posting.account_id == account_id)
             .order_by(Posting.id.desc()).limit(limit + 1))
    before = decode_cursor(cursor)
    if before is not None:
        query = query.where(Posting.id < before)
    return _page([PostingRow(*row) for row in db.session.execute(query)], limit)


# ---------------------------------------------------------------- transactions


def _touching(*conditions):
    """EXISTS a posting of the transaction on an account matching the conditions."""
    return exists().where(Posting.transaction_id == Transaction.id,
                          Account.id == Posting.account_id, *conditions)


def filtered_transactions(filters: TransactionFilters) -> Select:
    query = select(Transaction)
    if filters.kind:
        query = query.where(Transaction.kind == filters.kind)
    if filters.reference_id:
        query = query.where(Transaction.reference_id == filters.reference_id)
    if filters.since:
        query = query.where(Transaction.created_at >= filters.since)
    if filters.until:
        query = query.where(Transaction.created_at < filters.until)
    if filters.user_id is not None:
        query = query.where(_touching(Account.user_id == filters.user_id))
    if filters.account_id is not None:
        query = query.where(_touching(Account.id == filters.account_id))
    if filters.asset:
        query = query.where(_touching(Account.asset_code == filters.asset))
    if filters.metadata:
        key, _, value = filters.metadata.partition(":")
        query = query.where(Transaction.meta[key].as_string() == value)
    for key in ("reason_code", "ticket"):
        if getattr(filters, key):
            query = query.where(Transaction.meta[key].as_string() == getattr(filters, key))
    return query


def list_transactions(
    filters: TransactionFilters, cursor: str | None = None, limit: int = 50
) -> Page[Transaction]:
    limit = _limit(limit)
    query = (filtered_transactions(filters)
             .options(selectinload(Transaction.postings).selectinload(Posting.account))
             .order_by(Transaction.id.desc()).limit(limit + 1))
    before = decode_cursor(cursor)
    if before is not None:
        query = query.where(Transaction.id < before)
    return _page(list(db.session.scalars(query)), limit)


def get_transaction(tx_id: int) -> Transaction:
    loading = selectinload(Transaction.postings).selectinload(Posting.account).selectinload(Account.user)
    return _get(Transaction, tx_id, errors.UnknownTransaction, options=[loading])


def find_transaction_by_reference(reference_id: str) -> Transaction | None:
    query = select(Transaction).where(Transaction.reference_id == reference_id)
    return db.session.scalars(query).first()


def reversal_of(tx_id: int) -> Transaction | None:
    return db.session.scalars(select(Transaction).where(Transaction.reverses_id == tx_id)).first()


# ---------------------------------------------------------------- dashboard figures


@dataclass(frozen=True)
class VolumeRow:
    kind: str
    asset_code: str
    count: int
    amount: int


@dataclass(frozen=True)
class DailyVolume:
    day: date
    asset_code: str
    amount: int


def list_asset_codes() -> list[str]:
    return list(db.session.scalars(select(Asset.code).order_by(Asset.code)))


def wallet_totals() -> dict[str, int]:
    """What users hold in total, per asset."""
    query = (select(Account.asset_code, func.coalesce(func.sum(Account.balance), 0))
             .where(Account.kind == "wallet").group_by(Account.asset_code))
    return {asset: int(total) for asset, total in db.session.execute(query)}


def _moved():
    """A transaction's volume in an asset: the sum of its positive legs (legs sum to zero)."""
    return (select(Transaction.kind, Account.asset_code,
                   func.count(func.distinct(Transaction.id)), func.sum(Posting.amount))
            .join(Posting, Posting.transaction_id == Transaction.id)
            .join(Account, Account.id == Posting.account_id)
            .where(Posting.amount > 0))


def volume_by_kind(since: datetime) -> list[VolumeRow]:
    query = (_moved().where(Transaction.created_at >= since)
             .group_by(Transaction.kind, Account.asset_code)
             .order_by(Account.asset_code, Transaction.kind))
    return [VolumeRow(kind, asset, count, int(amount)) for kind, asset, count, amount
            in db.session.execute(query)]


def daily_volume(since: datetime, kinds: tuple[str, ...]) -> list[DailyVolume]:
    """Volume per UTC day and asset of the given kinds since `since`, oldest first."""
    day = _utc_day(Transaction.created_at)
    query = (select(day, Account.asset_code, func.sum(Posting.amount))
             .join(Posting, Posting.transaction_id == Transaction.id)
             .join(Account, Account.id == Posting.account_id)
             .where(Posting.amount > 0, Transaction.created_at >= since,
                    Transaction.kind.in_(kinds))
             .group_by(day, Account.asset_code).order_by(day))
    return [DailyVolume(_as_date(when), asset, int(amount))
            for when, asset, amount in db.session.execute(query)]


def _utc_day(column):
    if db.engine.dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)  # SQLite stores UTC text


def _as_date(value) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def balance_series(account_id: int, points: int = 60) -> list[tuple[datetime, int]]:
    """The wallet's balance after each of its last `points` postings, oldest first."""
    query = (select(Posting.created_at, Posting.balance_after)
             .where(Posting.account_id == account_id, Posting.balance_after.is_not(None))
             .order_by(Posting.id.desc()).limit(points))
    return [(when, balance) for when, balance in reversed(db.session.execute(query).all())]


def usernames(user_ids: set[int]) -> dict[int, str]:
    """Usernames of many users in one query (a page of transactions names their owners)."""
    if not user_ids:
        return {}
    query = select(User.id, User.username).where(User.id.in_(sorted(user_ids)))
    return {user_id: username for user_id, username in db.session.execute(query)}


# ---------------------------------------------------------------- movement requests

movement_requests = MovementRequest.__table__


def get_request(request_id: int):
    """A movement request (a row, read afresh: its status moves under other sessions)."""
    db.session.rollback()
    row = None
    if is_id(request_id):
        row = db.session.execute(select(movement_requests)
                                 .where(movement_requests.c.id == request_id)).first()
    if row is None:
        raise errors.UnknownRequest(f"request {request_id} does not exist", request_id=request_id)
    return row


def list_requests(status: str | None = "pending", cursor: str | None = None,
                  limit: int = 25) -> Page:
    """Movement requests newest first; `pending` lists those not expired yet."""
    limit = _limit(limit)
    table = movement_requests
    query = select(table).order_by(table.c.id.desc()).limit(limit + 1)
    if status == "pending":
        query = query.where(table.c.status == "pending", table.c.expires_at > utcnow())
    elif status:
        query = query.where(table.c.status == status)
    before = decode_cursor(cursor)
    if before is not None:
        query = query.where(table.c.id < before)
    return _page(list(db.session.execute(query)), limit)


def pending_count(decider_id: int | None = None) -> int:
    """Requests waiting for a decision (by `decider_id`: not the ones they made)."""
    query = select(func.count()).select_from(movement_requests).where(
        movement_requests.c.status == "pending", movement_requests.c.expires_at > utcnow())
    if decider_id is not None:
        query = query.where(movement_requests.c.maker_id != decider_id)
    return db.session.execute(query).scalar_one()
