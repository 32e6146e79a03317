"""Read side shared by the pages, the JSON API and the CSV export.

Lists are keyset-paginated on ids, newest first: a cursor is the last id seen, so pages stay
stable while new rows arrive and cost the same at any depth (no OFFSET).
"""
from __future__ import annotations

import base64
import re
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Context, Decimal
from typing import Generic, Iterator, TypeVar

from sqlalchemy import (
    Select, String, and_, bindparam, case, exists, false, func, literal_column, or_, select,
    text, union_all,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import selectinload
from sqlalchemy.sql.util import ClauseAdapter

from . import errors, ledger_pool, rollups
from .accounts import HOUSE_KINDS, SYSTEM_USERNAME
from .extensions import db
from .inputs import parse_integer
from .limits import BIGINT_MAX, is_id
from .models import (
    Account, Asset, AuditEvent, BalanceShard, Hold, MovementRequest, Posting, StatusChange,
    Transaction, User, utcnow,
)

T = TypeVar("T")
MAX_PAGE = 200
COUNT_CAP = 10_000  # a count of matching rows stops here: "more than 10,000"
COUNT_BUDGET_MS = 40  # a count that takes longer is not shown
WORD_WINDOW = 2_000  # newest transactions read for a word before its index (_holding)
WORD_INDEX_BUDGET_MS = 60  # a word whose index takes longer is common: read newest first
QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE for a statement_timeout
CURSOR = re.compile(r"[A-Za-z0-9_-]{1,32}")  # url-safe base64 of "id:" and at most 19 digits


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class AccountBalance:
    """`balance` is what the account can move now (a wallet: available); `held`, what its
    open holds keep aside (holds.py). A wallet's user owns balance + held."""

    id: int
    name: str
    kind: str
    asset_code: str
    balance: int
    status: str
    held: int = 0

    @property
    def available(self) -> int:
        return self.balance

    @classmethod
    def of(cls, row) -> "AccountBalance":
        return cls(row[0], row[1], row[2], row[3], int(row[4]), row[5], int(row[6]))


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
    # What a player tells support: the first characters of a reference or a ticket, or words
    # of the description (a dashboard movement's reason).
    text: str | None = None
    # A leg of this amount, either sign, written in the asset's decimals ("12.50"): in `asset`,
    # or in each asset whose decimals can write it.
    amount: Decimal | None = None


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


def _open_holds(*, expired: bool):
    """The account's open holds, expired ones (not released yet: available, since a debit
    releases them first) or the others (held)."""
    due = Hold.expires_at <= bindparam("now")
    return (select(func.coalesce(func.sum(Hold.amount), 0))
            .where(Hold.account_id == Account.id, Hold.status == "open",
                   due if expired else ~due).scalar_subquery())


def _releasable():
    return _open_holds(expired=True)


def _held():
    return _open_holds(expired=False)


# Built once: the balance endpoint runs this on every call.
BALANCES = select(Account.id, Account.name, Account.kind, Account.asset_code,
                  Account.balance + _shard_total() + _releasable(), Account.status, _held()
                  ).order_by(Account.asset_code, Account.kind)
USER_BALANCES = BALANCES.where(Account.user_id == bindparam("user_id"))
# By kind, which is indexed: allow_negative would read every wallet to find the house accounts.
HOUSE_BALANCES = BALANCES.where(Account.kind.in_(HOUSE_KINDS))


def user_balances(user_id: int) -> list[AccountBalance]:
    """On PostgreSQL through the ledger's own connections: the balance endpoint is a tenth of
    a game's calls, and a session's statement cost more than the query."""
    balances = []
    if is_id(user_id):
        params, pool = {"user_id": user_id, "now": utcnow()}, ledger_pool.get()
        rows = (pool.fetchall(USER_BALANCES, params) if pool
                else db.session.execute(USER_BALANCES, params))
        balances = [AccountBalance.of(row) for row in rows]
    if not balances:
        get_user(user_id)  # UnknownUser, unless the user exists without accounts
    return balances


def house_balances() -> list[AccountBalance]:
    """Every house account (treasury, promotions, revenue, equity, holds) with its balance."""
    return [AccountBalance.of(row)
            for row in db.session.execute(HOUSE_BALANCES, {"now": utcnow()})]


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
        query = query.where(meta_text(key) == value)
    for key in ("reason_code", "ticket"):
        if getattr(filters, key):
            query = query.where(meta_text(key) == getattr(filters, key))
    if _searched(filters):
        query = query.where(_text_matches(filters.text))
    if filters.amount is not None:
        query = query.where(_moving(filters.amount, filters.asset, filters.since, filters.until))
    return query


def list_transactions(
    filters: TransactionFilters, cursor: str | None = None, limit: int = 50
) -> Page[Transaction]:
    limit = _limit(limit)
    before = decode_cursor(cursor)
    query = filtered_transactions(filters)
    if _searched(filters):
        query = select(Transaction).where(Transaction.id.in_(_text_page(filters, before, limit + 1)))
    query = (query.options(selectinload(Transaction.postings).selectinload(Posting.account))
             .order_by(Transaction.id.desc()).limit(limit + 1))
    if before is not None:
        query = query.where(Transaction.id < before)
    return _page(list(db.session.scalars(query)), limit)


def _text_page(filters: TransactionFilters, before: int | None, count: int):
    """The ids a page of a text search is among: the newest `count` below `before` whose
    reference starts with the text, as many whose ticket does (each planned on its own, with
    statistics that tell a rare start from a common one), and those holding its words."""
    others = filtered_transactions(replace(filters, text=None)).with_only_columns(Transaction.id)
    if before is not None:
        others = others.where(Transaction.id < before)
    starts, words = _text_searches(filters.text), _words(filters.text)
    newest = [others.where(start).order_by(Transaction.id.desc()).limit(count).subquery()
              for start in starts]
    held = [_holding(others, words, count)] if words else []
    return union_all(*(select(ids.c.id) for ids in newest), *held)


def _holding(others: Select, words: list[str], count: int) -> Select:
    """The newest `count` transactions holding the words. PostgreSQL cannot tell how many hold
    a word's start (it guessed 446 for 500,000), so it cannot choose between reading the newest
    rows until `count` match (fast for a common word, the whole ledger for a rare one) and
    reading every match from the words index (the reverse). In turn: the newest WORD_WINDOW
    rows (a word common among them ends here); the index within WORD_INDEX_BUDGET_MS (any word
    rare enough); else every row, newest first (a word common only among older rows)."""
    described = _described(words)
    if not _postgres():
        return others.where(described)
    found = _newest_holding(others, described, count, within=WORD_WINDOW)
    if len(found) < count:
        indexed = _from_the_words_index(others, described, count)
        found = _newest_holding(others, described, count) if indexed is None else indexed
    return select(Transaction.id).where(Transaction.id.in_(found))


def _newest_holding(others: Select, described, count: int,
                    within: int | None = None) -> list[int]:
    """Rows read newest first (the newest `within` of them), the words tested on each: the
    LIMIT or OFFSET 0 keeps the test out of the scan, where the index's guess would pick the
    index."""
    rows = others.add_columns(Transaction.description).order_by(Transaction.id.desc())
    rows = (rows.limit(within) if within else rows.offset(0)).subquery()
    window = select(rows.c.id).where(ClauseAdapter(rows).traverse(described))
    return list(db.session.scalars(window.order_by(rows.c.id.desc()).limit(count)))


def _from_the_words_index(others: Select, described, count: int) -> list[int] | None:
    """The newest `count` from the words index, or None when that takes longer than
    WORD_INDEX_BUDGET_MS (a common word: every match would be read)."""
    query = others.where(described).order_by(Transaction.id.desc()).limit(count)
    return _within(WORD_INDEX_BUDGET_MS, lambda: list(db.session.scalars(query)))


def count_transactions(filters: TransactionFilters, cap: int | None = None) -> int | None:
    """How many transactions match, counted up to cap + 1 (more than `cap` is all it says),
    when that is cheap: None when PostgreSQL needs more than COUNT_BUDGET_MS for it."""
    capped = (filtered_transactions(filters).with_only_columns(Transaction.id)
              .limit((cap or COUNT_CAP) + 1).subquery())
    counting = select(func.count()).select_from(capped)
    if not _postgres():
        return db.session.execute(counting).scalar_one()
    return _within(COUNT_BUDGET_MS, lambda: db.session.execute(counting).scalar_one())


def _within(budget_ms: int, read):
    """read() under a statement timeout of `budget_ms` (PostgreSQL), or None when it is
    cancelled; a savepoint keeps the session's transaction, timeout setting included."""
    try:
        with db.session.begin_nested():
            db.session.execute(text(f"SET LOCAL statement_timeout = {budget_ms}"))
            found = read()
            db.session.execute(text("SET LOCAL statement_timeout TO DEFAULT"))
    except OperationalError as error:
        if getattr(error.orig, "sqlstate", None) != QUERY_CANCELED:
            raise
        return None
    return found


def cursor_at(moment: datetime) -> str | None:
    """The cursor of a list that starts at the newest transaction created before `moment`
    (None: there is none). Ids grow with time, so "load more" goes on from there."""
    query = (select(Transaction.id).where(Transaction.created_at < moment)
             .order_by(Transaction.created_at.desc(), Transaction.id.desc()).limit(1))
    newest = db.session.execute(query).scalar()
    return None if newest is None else encode_cursor(newest + 1)


# ---------------------------------------------------------------- finding transactions

WORD = re.compile(r"[^\W_]+")  # a word as to_tsvector's parser splits them
MAX_WORDS = 8
SIMPLE = literal_column("'simple'::regconfig")  # no stemming: names, codes, any language
EXACT = Context(prec=80)  # wide enough that shifting a typed amount's point never rounds it


def _postgres() -> bool:
    return db.engine.dialect.name == "postgresql"


def _searched(filters: TransactionFilters) -> bool:
    return bool(filters.text and filters.text.strip())


def _text_matches(term: str):
    """A union of one indexed search each: under one OR the planner cannot tell a rare term
    from a common one, and walks the whole ledger newest first looking for a rare one."""
    words = _words(term)
    searches = _text_searches(term) + ([_described(words)] if words else [])
    return Transaction.id.in_(union_all(*(select(Transaction.id).where(search)
                                          for search in searches)))


def _text_searches(term: str) -> list:
    """The reference or the ticket starts with `term`."""
    term = term.strip()
    return [_reference_starts(term), _ticket_starts(term)]


def _words(term: str) -> list[str]:
    """The words the description must hold, each as the start of a word (the agent may still
    be typing)."""
    return WORD.findall(term)[:MAX_WORDS]


def _reference_starts(prefix: str):
    """Case-sensitive, as references are; an index range on both backends (migration 0011)."""
    if _postgres():
        return Transaction.reference_id.like(_escape_like(prefix) + "%", escape="\\")
    return Transaction.reference_id.op("GLOB")(re.sub(r"([*?\[])", r"[\1]", prefix) + "*")


def _ticket_starts(prefix: str):
    """Case-insensitive; "5512" also finds "#5512" and "#5512" finds "5512"."""
    prefix = prefix.lower()
    variants = {prefix, prefix[1:] if prefix.startswith("#") else "#" + prefix}
    ticket = _ticket_text()
    return or_(*(ticket.like(_escape_like(variant) + "%", escape="\\")
                 for variant in sorted(variants) if variant))


def _ticket_text():
    """lower(metadata ->> 'ticket'), written as migration 0011 indexes it."""
    if _postgres():
        return func.lower(Transaction.meta.op("->>", return_type=String)(
            literal_column("'ticket'")))
    return func.lower(meta_text("ticket"))


def _described(words: list[str]):
    """Each word starts a word of the description. On PostgreSQL the words index finds them;
    a row it does not pick (_holding) is first tested with ILIKE, which every match passes
    too and which costs a fraction of parsing the description into words."""
    contains = [Transaction.description.ilike("%" + _escape_like(word) + "%", escape="\\")
                for word in words]
    if _postgres():
        query = " & ".join(f"'{word}':*" for word in words)
        return and_(*contains, func.to_tsvector(SIMPLE, Transaction.description)
                    .op("@@")(func.to_tsquery(SIMPLE, query)))
    return and_(*contains)


def _moving(amount: Decimal, asset: str | None, since: datetime | None,
            until: datetime | None):
    """The transaction has a leg of `amount` (either sign) in the asset's smallest unit."""
    legs = [and_(Account.asset_code == code, Posting.amount.in_((units, -units)))
            for code, units in in_smallest_units(amount, asset)]
    if not legs:
        return false()
    within = [Posting.created_at >= since] if since else []  # a leg is stamped as its
    within += [Posting.created_at < until] if until else []  # transaction: one range, indexed
    return Transaction.id.in_(select(Posting.transaction_id)
                              .join(Account, Account.id == Posting.account_id)
                              .where(or_(*legs), *within))


def newest_moving(amount: Decimal, since: datetime, until: datetime,
                  limit: int) -> list[Transaction]:
    """The newest `limit` transactions created in [since, until) with a leg of `amount`
    (either sign, in the smallest unit of any asset that can write it), newest first.

    One newest-first range of the amount index per asset and sign, each stopping after
    `limit` legs: a common amount on a busy day has hundreds of thousands of legs, which
    _moving's exact id order has to collect and sort before the first page (the lookup's
    preview; the ledger's amount filter keeps that order for its pages)."""
    probes = [select(Posting.transaction_id, Posting.created_at)
              .join(Account, Account.id == Posting.account_id)
              .where(Posting.amount == signed, Account.asset_code == code,
                     Posting.created_at >= since, Posting.created_at < until)
              .order_by(Posting.created_at.desc()).limit(limit).subquery()
              for code, units in in_smallest_units(amount) for signed in (units, -units)]
    if not probes:
        return []
    legs = union_all(*(select(probe.c.transaction_id, probe.c.created_at)
                       for probe in probes)).subquery()
    newest = db.session.scalars(select(legs.c.transaction_id)
                                .order_by(legs.c.created_at.desc(), legs.c.transaction_id.desc()))
    ids = list(dict.fromkeys(newest))[:limit]  # a transaction's legs come together
    loading = selectinload(Transaction.postings).selectinload(Posting.account)
    found = db.session.scalars(select(Transaction).where(Transaction.id.in_(ids))
                               .options(loading))
    return sorted(found, key=lambda tx: (tx.created_at, tx.id), reverse=True)


def in_smallest_units(amount: Decimal, asset: str | None = None) -> list[tuple[str, int]]:
    """(asset, units) for `asset`, or each asset, whose decimals can write `amount` exactly:
    12.5 is 1250 in an asset of scale 2, and in no asset of scale 0."""
    query = select(Asset.code, Asset.scale).order_by(Asset.code)
    if asset:
        query = query.where(Asset.code == asset)
    found = []
    for code, scale in db.session.execute(query):
        units = abs(amount).scaleb(scale, context=EXACT)
        if units == units.to_integral_value() and 0 < units <= BIGINT_MAX:
            found.append((code, int(units)))
    return found


def get_transaction(tx_id: int) -> Transaction:
    loading = selectinload(Transaction.postings).selectinload(Posting.account).selectinload(Account.user)
    return _get(Transaction, tx_id, errors.UnknownTransaction, options=[loading])


ACCOUNT_OWNERS = select(Account.id, Account.user_id, Account.asset_code).where(
    Account.id.in_(bindparam("ids", expanding=True)))


def account_owners(account_ids: set[int]) -> dict[int, tuple[int, str]]:
    """account id -> (user id, asset) of each account, in one read (a batch's answer)."""
    rows = db.session.execute(ACCOUNT_OWNERS, {"ids": sorted(account_ids)})
    return {row.id: (row.user_id, row.asset_code) for row in rows}


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
    """What users hold in total, per asset: every transaction sums to zero per asset, so it is
    the opposite of what the house accounts hold (a few rows read instead of every wallet;
    `ledger verify` proves the sums)."""
    query = (select(Account.asset_code, func.sum(Account.balance + _shard_total()))
             .where(Account.kind.in_(HOUSE_KINDS)).group_by(Account.asset_code))
    return {asset: -int(total) for asset, total in db.session.execute(query)}


def volume_by_kind(day: date) -> list[VolumeRow]:
    """What each kind moved on one UTC day, per asset (rollups.py: exact, rolled up or not)."""
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for volume in rollups.volumes(day, day):
        total = totals[volume.asset_code, volume.kind]
        total[0] += volume.transactions
        total[1] += volume.amount
    return [VolumeRow(kind, asset, count, amount)
            for (asset, kind), (count, amount) in sorted(totals.items())]


def daily_volume(first_day: date, kinds: tuple[str, ...]) -> list[DailyVolume]:
    """Volume per UTC day and asset of the given kinds from `first_day`, oldest first."""
    totals: dict[tuple[date, str], int] = defaultdict(int)
    for volume in rollups.volumes(first_day, kinds=kinds):
        totals[volume.day, volume.asset_code] += volume.amount
    return [DailyVolume(day, asset, amount) for (day, asset), amount in sorted(totals.items())]


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


# ---------------------------------------------------------------- controls on transactions

# What approvals.py writes into a dashboard movement's metadata, shown as fields of their own.
CONTROL_FIELDS = ("reason_code", "ticket", "checker")
# No API caller may write these.
CONTROL_KEYS = (*CONTROL_FIELDS, "checker_id", "request_id", "bulk_grant")


def meta_text(name: str):
    """A metadata value as text (NULL when absent), on PostgreSQL and SQLite alike."""
    return Transaction.meta[name].as_string()


# ---------------------------------------------------------------- audit trail

@dataclass(frozen=True)
class AuditFilters:
    action: str | None = None
    outcome: str | None = None
    actor: str | None = None  # a prefix of the actor label: "operator:al", "api:", "cli:"
    operator_id: int | None = None
    object_type: str | None = None
    object_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def filtered_audit_events(filters: AuditFilters) -> Select:
    query = select(AuditEvent)
    for name in ("action", "outcome", "operator_id", "object_type", "object_id"):
        value = getattr(filters, name)
        if value is not None and value != "":
            query = query.where(getattr(AuditEvent, name) == value)
    if filters.actor:
        pattern = _escape_like(filters.actor.lower()) + "%"
        query = query.where(func.lower(AuditEvent.actor).like(pattern, escape="\\"))
    if filters.since:
        query = query.where(AuditEvent.created_at >= filters.since)
    if filters.until:
        query = query.where(AuditEvent.created_at < filters.until)
    return query


def list_audit_events(filters: AuditFilters, cursor: str | None = None,
                      limit: int = 50) -> Page[AuditEvent]:
    """Audit events newest first, keyset pages."""
    limit = _limit(limit)
    query = filtered_audit_events(filters).order_by(AuditEvent.id.desc()).limit(limit + 1)
    before = decode_cursor(cursor)
    if before is not None:
        query = query.where(AuditEvent.id < before)
    return _page(list(db.session.scalars(query)), limit)


# ---------------------------------------------------------------- a wallet's statement


@dataclass(frozen=True)
class KindTotal:
    kind: str
    count: int
    credits: int
    debits: int  # negative or 0

    @property
    def net(self) -> int:
        return self.credits + self.debits


@dataclass(frozen=True)
class Statement:
    """A wallet over a period: its postings are those after posting `after_id` up to and
    including `through_id`, a run of its balance_after chain, so opening + postings = closing
    holds exactly when the chain does (`ledger verify` checks it)."""

    account_id: int
    asset: str
    since: datetime | None
    until: datetime | None
    after_id: int  # the last posting before the period (0: none)
    through_id: int  # the last posting of the period (at most after_id: none)
    opening: int
    closing: int
    balance_now: int
    totals: list[KindTotal]

    @property
    def count(self) -> int:
        return sum(total.count for total in self.totals)

    @property
    def posted(self) -> int:
        return sum(total.net for total in self.totals)

    @property
    def adds_up(self) -> bool:
        return self.opening + self.posted == self.closing

    @property
    def ends_now(self) -> bool:
        return self.until is None

    @property
    def matches_balance_now(self) -> bool:
        return self.closing == self.balance_now


@dataclass(frozen=True)
class StatementLine:
    posting_id: int
    transaction_id: int
    created_at: datetime
    kind: str
    reference_id: str
    description: str
    actor: str  # the maker: operator:<name>, api:<key name> or system
    amount: int
    balance_after: int
    balance: int  # the opening plus every amount up to this one
    reason_code: str | None
    ticket: str | None
    checker: str | None

    @property
    def agrees(self) -> bool:
        return self.balance == self.balance_after


def wallet_account(user_id: int, asset: str) -> Account:
    query = select(Account).where(Account.user_id == user_id, Account.asset_code == asset,
                                  Account.kind == "wallet")
    account = db.session.scalars(query).first() if is_id(user_id) else None
    if account is None:
        raise errors.UnknownAccount(f"user {user_id} has no {asset} wallet", user_id=user_id,
                                    asset=asset)
    return account


def statement(account_id: int, since: datetime | None = None,
              until: datetime | None = None) -> Statement:
    """Opening balance at `since`, closing at `until` (now when None), totals per kind."""
    account = get_account(account_id)
    newest = (select(func.coalesce(func.max(Posting.id), 0))
              .where(Posting.account_id == account_id).scalar_subquery())
    # One statement, one snapshot: the balance now and the posting that made it.
    balance_now, last_id = db.session.execute(
        select(Account.balance, newest).where(Account.id == account_id)).one()
    after_id = _last_posting_before(account_id, since) if since else 0
    through_id = _last_posting_before(account_id, until) if until else last_id
    opening = _balance_after(after_id)
    closing = _balance_after(through_id) if through_id > after_id else opening
    return Statement(account_id, account.asset_code, since, until, after_id, through_id,
                     opening, closing, balance_now, _totals(account_id, after_id, through_id))


def _last_posting_before(account_id: int, moment: datetime) -> int:
    query = select(func.coalesce(func.max(Posting.id), 0)).where(
        Posting.account_id == account_id, Posting.created_at < moment)
    return db.session.execute(query).scalar_one()


def _balance_after(posting_id: int) -> int:
    if not posting_id:
        return 0
    return db.session.execute(select(Posting.balance_after)
                              .where(Posting.id == posting_id)).scalar_one()


def _in_statement(account_id: int, after_id: int, through_id: int) -> tuple:
    return (Posting.account_id == account_id, Posting.id > after_id, Posting.id <= through_id)


def _totals(account_id: int, after_id: int, through_id: int) -> list[KindTotal]:
    credit = func.sum(case((Posting.amount > 0, Posting.amount), else_=0))
    debit = func.sum(case((Posting.amount < 0, Posting.amount), else_=0))
    query = (select(Transaction.kind, func.count(), credit, debit)
             .join(Transaction, Transaction.id == Posting.transaction_id)
             .where(*_in_statement(account_id, after_id, through_id))
             .group_by(Transaction.kind).order_by(Transaction.kind))
    return [KindTotal(kind, count, int(credits), int(debits))
            for kind, count, credits, debits in db.session.execute(query)]


def statement_lines(period: Statement, limit: int | None = None) -> Iterator[StatementLine]:
    """The period's postings oldest first, each with the running balance (streamed)."""
    query = (select(Posting.id, Posting.transaction_id, Posting.created_at, Transaction.kind,
                    Transaction.reference_id, Transaction.description, Transaction.actor,
                    Posting.amount, Posting.balance_after,
                    *(meta_text(name) for name in CONTROL_FIELDS))
             .join(Transaction, Transaction.id == Posting.transaction_id)
             .where(*_in_statement(period.account_id, period.after_id, period.through_id))
             .order_by(Posting.id).limit(limit)
             .execution_options(yield_per=1000))
    balance = period.opening
    for row in db.session.execute(query):
        (posting_id, tx_id, created_at, kind, reference, description, actor, amount,
         balance_after, reason_code, ticket, checker) = row
        balance += amount
        yield StatementLine(posting_id, tx_id, created_at, kind, reference, description, actor,
                            amount, balance_after, balance, reason_code, ticket, checker)


# ---------------------------------------------------------------- holds

holds_table = Hold.__table__


@dataclass(frozen=True)
class HoldRow:
    """A hold as readers see it: an open hold past its expiry is `expired` (it can never be
    captured or voided), released by the sweeper or not."""

    id: int
    account_id: int
    user_id: int
    asset_code: str
    amount: int
    captured_amount: int | None
    status: str
    reference_id: str
    description: str
    hold_transaction_id: int
    settle_transaction_id: int | None
    created_at: datetime
    expires_at: datetime
    settled_at: datetime | None

    @classmethod
    def of(cls, row, now: datetime) -> "HoldRow":
        hold = cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})
        if hold.status == "open" and hold.expires_at <= now:
            return replace(hold, status="expired")
        return hold


def get_hold(hold_id: int) -> HoldRow:
    row = None
    if is_id(hold_id):
        row = db.session.execute(select(holds_table).where(holds_table.c.id == hold_id)).first()
    if row is None:
        raise errors.UnknownHold(f"hold {hold_id} does not exist", hold_id=hold_id)
    return HoldRow.of(row, utcnow())


def list_holds(user_id: int | None = None, status: str | None = None, asset: str | None = None,
               cursor: str | None = None, limit: int = 50) -> Page[HoldRow]:
    """Holds newest first; `open` means capturable (not expired), `expired` includes open
    holds past their expiry that the sweeper has not released yet."""
    limit, now, table = _limit(limit), utcnow(), holds_table
    query = select(table).order_by(table.c.id.desc()).limit(limit + 1)
    if user_id is not None:
        query = query.where(table.c.user_id == user_id)
    if asset:
        query = query.where(table.c.asset_code == asset)
    if status == "open":
        query = query.where(table.c.status == "open", table.c.expires_at > now)
    elif status == "expired":
        query = query.where(or_(table.c.status == "expired",
                                (table.c.status == "open") & (table.c.expires_at <= now)))
    elif status:
        query = query.where(table.c.status == status)
    before = decode_cursor(cursor)
    if before is not None:
        query = query.where(table.c.id < before)
    return _page([HoldRow.of(row, now) for row in db.session.execute(query)], limit)


AVAILABLE_AND_HELD = select(Account.balance + _releasable(), _held()).where(
    Account.id == bindparam("account_id"))


def wallet_available_and_held(account_id: int) -> tuple[int, int]:
    """(available, held) of a wallet now: held counts open holds not expired; expired ones not
    released yet are available (a debit releases them first, ledger.releasing_expired_holds).
    One statement on a connection of its own: it answers every hold step."""
    with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT")
        row = conn.execute(AVAILABLE_AND_HELD, {"account_id": account_id, "now": utcnow()}).one()
    return int(row[0]), int(row[1])


def hold_of(tx_id: int) -> HoldRow | None:
    """The hold a transaction places or settles (capture, release, expiry)."""
    row = db.session.execute(select(holds_table).where(or_(
        holds_table.c.hold_transaction_id == tx_id,
        holds_table.c.settle_transaction_id == tx_id))).first()
    return None if row is None else HoldRow.of(row, utcnow())


def pending_releases(hold_ids: list[int]) -> dict[int, int]:
    """hold id -> the request its dashboard release waits in for approval."""
    if not hold_ids:
        return {}
    table = movement_requests
    rows = db.session.execute(select(table.c.hold_id, table.c.id).where(
        table.c.hold_id.in_(hold_ids), table.c.status == "pending",
        table.c.expires_at > utcnow()))
    return {hold_id: request_id for hold_id, request_id in rows}
