"""Tables and their constraints. Transactions and postings are append-only."""
from datetime import date, datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db
from .kinds import NAMES as TRANSACTION_KINDS
from .limits import (
    BALANCE_CEILING, DEFAULT_APPROVAL_THRESHOLD, DEFAULT_MAX_AMOUNT, DEFAULT_MAX_BALANCE,
    DEFAULT_OPERATOR_DAILY_LIMIT, SHARD_CEILING,
)

BigId = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER only
JsonDoc = JSON().with_variant(JSONB(), "postgresql")

ACCOUNT_KINDS = ("wallet", "treasury", "promotions", "revenue", "equity", "holds")
HOLD_STATUSES = ("open", "captured", "voided", "expired")
OPERATOR_ROLES = ("viewer", "auditor", "operator", "admin")
API_SCOPES = ("read", "write")
SESSION_END_REASONS = ("logout", "password_changed", "disabled")
# A dashboard movement's request: `posting` -> `posted` (below the approval threshold), or
# `pending` -> `approving` -> `approved`, or `rejected` / `expired`; `failed` when the ledger
# refused it. Only counted statuses use up the maker's daily limit.
AUDIT_OUTCOMES = ("done", "refused")
REQUEST_STATUSES = ("posting", "posted", "pending", "approving", "approved", "rejected",
                    "expired", "failed")
USER_STATUSES = ("active", "frozen", "closed")  # frozen: credits only; closed: nothing
# A bulk grant (bulk.py): draft -> pending -> posting | rejected | expired, or draft -> posting;
# posting -> done.
BULK_STATUSES = ("draft", "pending", "posting", "done", "rejected", "expired")
BULK_ROW_OUTCOMES = ("posted", "replayed", "refused")
SUBMITTED_FILE = ("pending", "posting", "done")  # one grant per file in these (bulk.py)
# What integrations are told (events.py, docs/events.md).
EVENT_TYPES = ("transaction.posted", "user.created", "user.status_changed", "approval.decided")
DELIVERY_STATUSES = ("pending", "delivered", "failed")
CHAINS = ("ledger", "audit")  # transactions with their postings; audit events (chain.py)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _integers(*columns: str) -> tuple[CheckConstraint, ...]:
    """SQLite only: an integer that overflows silently becomes a float; refuse any non-integer."""
    return tuple(
        CheckConstraint(f"{column} IS NULL OR typeof({column}) = 'integer'",
                        name=f"{column}_is_integer").ddl_if(dialect="sqlite")
        for column in columns
    )


def _lowered_prefix(name: str, column: str) -> Index:
    """LIKE 'abc%' on lower(column) as an index range, whatever the collation."""
    lowered = text(f"lower({column})")
    return Index(name, lowered, postgresql_ops={lowered.text: "text_pattern_ops"})


def _postgres_only(*indexes: Index) -> tuple[Index, ...]:
    return tuple(index.ddl_if(dialect="postgresql") for index in indexes)


class Asset(db.Model):
    """A currency. `max_amount` bounds what one movement moves into or out of a wallet,
    `max_balance` what a wallet may hold (wallet_web/limits.py)."""

    __tablename__ = "assets"
    __table_args__ = (
        CheckConstraint(f"max_amount BETWEEN 1 AND max_balance AND max_balance <= {BALANCE_CEILING}",
                        name="limits_in_range"),
        *_integers("max_amount", "max_balance"),
    )
    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    scale: Mapped[int] = mapped_column(SmallInteger, default=0)  # decimals shown; amounts stay integers
    max_amount: Mapped[int] = mapped_column(BigInteger, default=DEFAULT_MAX_AMOUNT,
                                            server_default=str(DEFAULT_MAX_AMOUNT))
    max_balance: Mapped[int] = mapped_column(BigInteger, default=DEFAULT_MAX_BALANCE,
                                             server_default=str(DEFAULT_MAX_BALANCE))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(db.Model):
    """A player (or the `system` user owning the house accounts). `status` is the lifecycle;
    each wallet carries the same status, which is what the write step checks."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_in("status", USER_STATUSES), name="status_known"),
        Index("ix_users_status_id", "status", "id"),
        *_postgres_only(*(_lowered_prefix(f"ix_users_{column}_prefix", column)  # the lookup
                          for column in ("username", "email", "external_id"))),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    external_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    accounts: Mapped[list["Account"]] = relationship(back_populates="user", order_by="Account.id")


class Account(db.Model):
    """A user's wallet per asset, or a house account owned by the `system` user.

    Wallets keep their exact balance in `balance`, updated under a row lock. House accounts
    (allow_negative) are never locked: their balance is `balance` plus their BalanceShard rows.
    """

    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("user_id", "asset_code", "kind", name="uq_accounts_owner_asset_kind"),
        CheckConstraint("allow_negative OR balance >= 0", name="balance_non_negative"),
        CheckConstraint("kind <> 'wallet' OR NOT allow_negative", name="wallets_never_negative"),
        CheckConstraint(_in("kind", ACCOUNT_KINDS), name="kind_known"),
        CheckConstraint(_in("status", USER_STATUSES), name="status_known"),
        # A house account's balance lives in its shards: the column stays 0.
        CheckConstraint(f"balance <= {BALANCE_CEILING} AND (NOT allow_negative OR balance = 0)",
                        name="balance_within_ceiling"),
        *_integers("balance"),
        Index("ix_accounts_kind_asset_code", "kind", "asset_code"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    asset_code: Mapped[str] = mapped_column(ForeignKey("assets.code"))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128))
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    allow_negative: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(back_populates="accounts")
    asset: Mapped[Asset] = relationship()


class BalanceShard(db.Model):
    """Part of a house account's balance; each posting adds to one shard picked at random."""

    __tablename__ = "balance_shards"
    __table_args__ = (
        CheckConstraint(f"balance BETWEEN -{SHARD_CEILING} AND {SHARD_CEILING}",
                        name="balance_within_ceiling"),
        *_integers("balance"),
    )
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)


class Operator(db.Model):
    __tablename__ = "operators"
    __table_args__ = (CheckConstraint(_in("role", OPERATOR_ROLES), name="role_known"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    can_approve: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(db.Model):
    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint(_in("scope", API_SCOPES), name="scope_known"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


def _finding_indexes() -> tuple[Index, ...]:
    """PostgreSQL only (migration 0011): a ticket's first characters and the description's
    words, expressions that queries.py writes the same way."""
    return _postgres_only(
        _lowered_prefix("ix_transactions_ticket_prefix", "metadata ->> 'ticket'"),
        Index("ix_transactions_description_words",
              text("to_tsvector('simple'::regconfig, description)"), postgresql_using="gin"))


def _unique_transaction_keys() -> tuple:
    """A transaction's reference and the transaction it reverses are unique. SQLite: unique
    constraints, and an index for a reference's prefix (GLOB, 0011). PostgreSQL, where every
    movement writes each index (0014): the reference's one index serves its prefix too
    (text_pattern_ops), and the reversal's holds reversals only."""
    sqlite = (UniqueConstraint("reference_id", name="uq_transactions_reference_id"),
              UniqueConstraint("reverses_id", name="uq_transactions_reverses_id"),
              Index("ix_transactions_reference_id_prefix", "reference_id"))
    return (*(key.ddl_if(dialect="sqlite") for key in sqlite), *_postgres_only(
        Index("ix_transactions_reference_id_unique", "reference_id", unique=True,
              postgresql_ops={"reference_id": "text_pattern_ops"}),
        Index("ix_transactions_reverses_id_unique", "reverses_id", unique=True,
              postgresql_where=text("reverses_id IS NOT NULL"))))


def _sqlite_only_keys(*keys: tuple[str, str]) -> tuple[ForeignKeyConstraint, ...]:
    """Foreign keys that PostgreSQL does not check: each movement's check would lock the one
    row all movements share (the house account, the caller's API key: migration 0012) or
    query for the transaction it has just inserted (a posting's: 0014). Those rows are never
    deleted, and `ledger verify` checks every reference."""
    return tuple(ForeignKeyConstraint([column], [target]).ddl_if(dialect="sqlite")
                 for column, target in keys)


class Transaction(db.Model):
    __tablename__ = "transactions"
    __table_args__ = (
        CheckConstraint(_in("kind", TRANSACTION_KINDS), name="kind_known"),
        *_sqlite_only_keys(("api_key_id", "api_keys.id")),
        *_unique_transaction_keys(),
        Index("ix_transactions_created_at", "created_at"),
        Index("ix_transactions_kind_created_at", "kind", "created_at"),
        *_finding_indexes(),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    reference_id: Mapped[str] = mapped_column(String(128))  # unique: _unique_transaction_keys
    fingerprint: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    meta: Mapped[dict | None] = mapped_column("metadata", JsonDoc)
    actor: Mapped[str] = mapped_column(String(128))
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    api_key_id: Mapped[int | None] = mapped_column(BigId)  # _sqlite_only_keys
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("transactions.id"))  # unique too
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    postings: Mapped[list["Posting"]] = relationship(back_populates="transaction", order_by="Posting.id")


class Posting(db.Model):
    """One leg. `balance_after` is the wallet's balance after it; NULL on house accounts."""

    __tablename__ = "postings"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_non_zero"),
        CheckConstraint(f"amount BETWEEN -{SHARD_CEILING} AND {SHARD_CEILING}",
                        name="amount_within_ceiling"),
        CheckConstraint(f"balance_after BETWEEN 0 AND {BALANCE_CEILING}",
                        name="balance_after_within_ceiling"),
        *_integers("amount", "balance_after"),
        Index("ix_postings_account_id_id", "account_id", "id"),
        Index("ix_postings_account_id_created_at", "account_id", "created_at"),
        Index("ix_postings_transaction_id", "transaction_id"),
        *_sqlite_only_keys(("account_id", "accounts.id"), ("transaction_id", "transactions.id")),
        Index("ix_postings_amount_created_at", "amount", "created_at"),  # an amount on a date
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(BigId)  # _sqlite_only_keys
    account_id: Mapped[int] = mapped_column(BigId)  # _sqlite_only_keys
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    transaction: Mapped[Transaction] = relationship(back_populates="postings")
    account: Mapped[Account] = relationship(primaryjoin="Posting.account_id == Account.id",
                                            foreign_keys=account_id)


class StatusChange(db.Model):
    """Who changed a user's status, when and why (append-only)."""

    __tablename__ = "status_changes"
    __table_args__ = (
        CheckConstraint(_in("status", USER_STATUSES), name="status_known"),
        Index("ix_status_changes_user_id_id", "user_id", "id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    previous_status: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(128))
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OperatorSession(db.Model):
    """A dashboard login. The cookie holds a random token; only its sha256 is stored."""

    __tablename__ = "operator_sessions"
    __table_args__ = (
        CheckConstraint(_in("end_reason", SESSION_END_REASONS), name="end_reason_known"),
        Index("ix_operator_sessions_operator_id", "operator_id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(16))


class LoginThrottle(db.Model):
    """Failed logins from one client address: for one typed name (`name_hash`, its sha256), or
    over all names (`name_hash` empty)."""

    __tablename__ = "login_throttles"
    __table_args__ = (Index("ix_login_throttles_name_hash", "name_hash"),)
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    name_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ReasonCode(db.Model):
    """Why an operator moves value: the list admins keep; a code is retired, never deleted."""

    __tablename__ = "reason_codes"
    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    title: Mapped[str] = mapped_column(String(128))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Policy(db.Model):
    """Per asset: the amount from which a dashboard movement needs a checker, and what one
    operator may move per UTC day (operators may have their own, OperatorLimit)."""

    __tablename__ = "policies"
    __table_args__ = (
        CheckConstraint(f"approval_threshold BETWEEN 1 AND {BALANCE_CEILING}",
                        name="approval_threshold_in_range"),
        CheckConstraint(f"operator_daily_limit BETWEEN 0 AND {BALANCE_CEILING}",
                        name="operator_daily_limit_in_range"),
        *_integers("approval_threshold", "operator_daily_limit"),
    )
    asset_code: Mapped[str] = mapped_column(ForeignKey("assets.code"), primary_key=True)
    approval_threshold: Mapped[int] = mapped_column(BigInteger, default=DEFAULT_APPROVAL_THRESHOLD)
    operator_daily_limit: Mapped[int] = mapped_column(BigInteger,
                                                      default=DEFAULT_OPERATOR_DAILY_LIMIT)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(128))


class OperatorLimit(db.Model):
    """One operator's own daily limit for an asset, instead of the asset policy's."""

    __tablename__ = "operator_limits"
    __table_args__ = (
        CheckConstraint(f"daily_limit BETWEEN 0 AND {BALANCE_CEILING}", name="daily_limit_in_range"),
        *_integers("daily_limit"),
    )
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), primary_key=True)
    asset_code: Mapped[str] = mapped_column(ForeignKey("assets.code"), primary_key=True)
    daily_limit: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(128))


class MovementRequest(db.Model):
    """A dashboard movement as its maker asked for it. Its reference_id is the transaction's
    (so a transaction finds its reason code, ticket, maker and checker by reference), and the
    sum of a maker's counted requests of a day is what the daily limit bounds."""

    __tablename__ = "movement_requests"
    __table_args__ = (
        CheckConstraint(_in("status", REQUEST_STATUSES), name="status_known"),
        CheckConstraint(_in("kind", TRANSACTION_KINDS), name="kind_known"),
        CheckConstraint(f"amount BETWEEN 1 AND {BALANCE_CEILING}", name="amount_in_range"),
        *_integers("amount"),
        Index("ix_movement_requests_maker_id_asset_code_created_at",
              "maker_id", "asset_code", "created_at"),
        Index("ix_movement_requests_status_id", "status", "id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    reference_id: Mapped[str] = mapped_column(String(128), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    to_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("transactions.id"))
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("holds.id"))  # a release (void)
    asset_code: Mapped[str] = mapped_column(ForeignKey("assets.code"))
    amount: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str] = mapped_column(Text, default="")
    reason_code: Mapped[str] = mapped_column(ForeignKey("reason_codes.code"))
    ticket: Mapped[str | None] = mapped_column(String(300))
    maker_id: Mapped[int] = mapped_column(ForeignKey("operators.id"))
    maker: Mapped[str] = mapped_column(String(128))  # the maker's actor label
    checker_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    checker: Mapped[str | None] = mapped_column(String(128))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    failure: Mapped[str | None] = mapped_column(Text)
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("transactions.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEvent(db.Model):
    """What a person (or key, or command) did or tried: append-only like the ledger."""

    __tablename__ = "audit_events"
    __table_args__ = (
        CheckConstraint(_in("outcome", AUDIT_OUTCOMES), name="outcome_known"),
        Index("ix_audit_events_action_id", "action", "id"),
        Index("ix_audit_events_operator_id_id", "operator_id", "id"),
        Index("ix_audit_events_created_at", "created_at"),
        Index("ix_audit_events_xid_id", "xid", "id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    action: Mapped[str] = mapped_column(String(48))
    outcome: Mapped[str] = mapped_column(String(8), default="done")
    actor: Mapped[str] = mapped_column(String(128))
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    address: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    object_type: Mapped[str | None] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict | None] = mapped_column(JsonDoc)
    xid: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))  # events.py


class Event(db.Model):
    """What an integration is told, written in the transaction of the change it tells of.
    A transaction's event is written by a trigger (migration 0010) and rendered from the
    transaction when read; any other event carries its `data` as it was then. `xid` is the
    writing database transaction's id: readers take rows in (xid, id) order (events.py)."""

    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint(_in("type", EVENT_TYPES), name="type_known"),
        CheckConstraint("(transaction_id IS NULL) <> (data IS NULL)", name="transaction_or_data"),
        Index("ix_events_xid_id", "xid", "id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    xid: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    type: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    transaction_id: Mapped[int | None] = mapped_column(BigInteger)
    data: Mapped[dict | None] = mapped_column(JsonDoc)


class WebhookEndpoint(db.Model):
    """A receiver of events. `after_xid`/`after_id` is how far the worker has read the event
    feed for it; the secret signs every delivery and is shown once."""

    __tablename__ = "webhook_endpoints"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    event_types: Mapped[list] = mapped_column(JsonDoc)
    secret: Mapped[str] = mapped_column(String(128))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))
    after_xid: Mapped[int] = mapped_column(BigInteger)
    after_id: Mapped[int] = mapped_column(BigInteger)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookDelivery(db.Model):
    """One event for one endpoint: pending until a 2xx (delivered) or until retries run out
    (failed)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(_in("status", DELIVERY_STATUSES), name="status_known"),
        UniqueConstraint("endpoint_id", "event_id"),
        # What the worker claims: an endpoint's pending deliveries, earliest due first.
        Index("ix_webhook_deliveries_due", "endpoint_id", "next_attempt_at",
              postgresql_where=text("status = 'pending'"), sqlite_where=text("status = 'pending'")),
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id"))
    event_id: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    give_up_at: Mapped[datetime] = mapped_column(UTCDateTime)  # then failed (retries run out)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(300))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ChainEntry(db.Model):
    """Entry `seq` of a hash chain: hash = sha256(previous hash || canonical bytes of the
    entry) (chain.py, docs/audit.md). Append-only."""

    __tablename__ = "chain_entries"
    __table_args__ = (
        CheckConstraint(_in("chain", CHAINS), name="chain_known"),
        UniqueConstraint("chain", "entry_id"),
    )
    chain: Mapped[str] = mapped_column(String(8), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    entry_id: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    sealed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChainHead(db.Model):
    """The last sealed entry of a chain and how far the sealer has read its source."""

    __tablename__ = "chain_heads"
    __table_args__ = (CheckConstraint(_in("chain", CHAINS), name="chain_known"),)
    chain: Mapped[str] = mapped_column(String(8), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    after_xid: Mapped[int] = mapped_column(BigInteger)
    after_id: Mapped[int] = mapped_column(BigInteger)
    sealed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class VolumeDay(db.Model):
    """The overview's volumes per UTC day, kind and asset: transactions with a positive leg in
    the asset and the sum of those legs, rolled up by the sweeper from the transactions whose
    events come up to VolumePosition (rollups.py). Derived from the ledger, which `ledger verify`
    proves it against; readers add the transactions after the position."""

    __tablename__ = "volume_days"
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    asset_code: Mapped[str] = mapped_column(String(16), primary_key=True)
    transactions: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(Numeric(38, 0).with_variant(BigInteger, "sqlite"))


class VolumePosition(db.Model):
    """How far, in the events' (xid, id) order, the volume rollup has read (one row)."""

    __tablename__ = "volume_position"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    after_xid: Mapped[int] = mapped_column(BigInteger)
    after_id: Mapped[int] = mapped_column(BigInteger)
    rolled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Hold(db.Model):
    """A two-phase movement (holds.py): the amount sits in the asset's `holds` account from
    the hold transaction until its capture, void or expiry transaction (`settle_…`)."""

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint(_in("status", HOLD_STATUSES), name="status_known"),
        CheckConstraint(f"amount BETWEEN 1 AND {BALANCE_CEILING}", name="amount_in_range"),
        CheckConstraint("captured_amount IS NULL OR captured_amount BETWEEN 1 AND amount",
                        name="captured_within_amount"),
        *_integers("amount", "captured_amount"),
        Index("ix_holds_user_id_id", "user_id", "id"),
        Index("ix_holds_open_account_id", "account_id", "expires_at",
              postgresql_where=text("status = 'open'"), sqlite_where=text("status = 'open'")),
        Index("ix_holds_open_expires_at", "expires_at",
              postgresql_where=text("status = 'open'"), sqlite_where=text("status = 'open'")),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))  # the wallet
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    asset_code: Mapped[str] = mapped_column(ForeignKey("assets.code"))
    amount: Mapped[int] = mapped_column(BigInteger)
    captured_amount: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    reference_id: Mapped[str] = mapped_column(String(128))  # the hold transaction's
    description: Mapped[str] = mapped_column(Text, default="")
    hold_transaction_id: Mapped[int] = mapped_column(ForeignKey("transactions.id"), unique=True)
    settle_transaction_id: Mapped[int | None] = mapped_column(ForeignKey("transactions.id"),
                                                              unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class BulkGrant(db.Model):
    """An uploaded file of grants (bulk.py): a draft once its preview is clean, then pending
    (four-eyes) or posting, then done; its rows' references come from the file's hash, so the
    same file never moves anything twice."""

    __tablename__ = "bulk_grants"
    __table_args__ = (
        CheckConstraint(_in("status", BULK_STATUSES), name="status_known"),
        CheckConstraint(_in("kind", TRANSACTION_KINDS), name="kind_known"),
        Index("ix_bulk_grants_file_sha256", "file_sha256"),
        Index("uq_bulk_grants_submitted_file", "file_sha256", unique=True,  # a file goes once
              postgresql_where=text(f"status IN {SUBMITTED_FILE}"),
              sqlite_where=text(f"status IN {SUBMITTED_FILE}")),
        Index("ix_bulk_grants_status_id", "status", "id"),
        Index("ix_bulk_grants_maker_id_submitted_at", "maker_id", "submitted_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    file_sha256: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255))
    user_column: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    rows_total: Mapped[int] = mapped_column(Integer)
    rows_done: Mapped[int] = mapped_column(Integer, default=0)
    posted: Mapped[int] = mapped_column(Integer, default=0)
    replayed: Mapped[int] = mapped_column(Integer, default=0)
    refused: Mapped[int] = mapped_column(Integer, default=0)
    description: Mapped[str | None] = mapped_column(Text)
    reason_code: Mapped[str | None] = mapped_column(ForeignKey("reason_codes.code"))
    ticket: Mapped[str | None] = mapped_column(String(300))
    needs_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    maker_id: Mapped[int] = mapped_column(ForeignKey("operators.id"))
    maker: Mapped[str] = mapped_column(String(128))
    checker_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    checker: Mapped[str | None] = mapped_column(String(128))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))  # the submission's X-Request-Id
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a poster's lease
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class BulkGrantTotal(db.Model):
    __tablename__ = "bulk_grant_totals"
    __table_args__ = (*_integers("total"),)
    grant_id: Mapped[int] = mapped_column(ForeignKey("bulk_grants.id"), primary_key=True)
    asset_code: Mapped[str] = mapped_column(ForeignKey("assets.code"), primary_key=True)
    rows: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(BigInteger)


class BulkGrantRow(db.Model):
    """A row of the file as previewed, user resolved; `line` is the file's line number."""

    __tablename__ = "bulk_grant_rows"
    __table_args__ = (
        CheckConstraint(f"amount BETWEEN 1 AND {BALANCE_CEILING}", name="amount_in_range"),
        *_integers("amount"),
    )
    grant_id: Mapped[int] = mapped_column(ForeignKey("bulk_grants.id"), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)  # found at preview; the ledger checks again
    user_ref: Mapped[str] = mapped_column(String(64))  # as the file wrote it
    asset_code: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text, default="")


class BulkGrantOutcome(db.Model):
    """What posting a row did: written once, with the grant's progress, after the batch."""

    __tablename__ = "bulk_grant_outcomes"
    __table_args__ = (CheckConstraint(_in("status", BULK_ROW_OUTCOMES), name="status_known"),)
    grant_id: Mapped[int] = mapped_column(ForeignKey("bulk_grants.id"), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    transaction_id: Mapped[int | None] = mapped_column(BigInteger)
    error_code: Mapped[str | None] = mapped_column(String(48))
    message: Mapped[str | None] = mapped_column(Text)
