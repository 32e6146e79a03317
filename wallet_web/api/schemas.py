"""Request and response models: the one source of truth for validation and the OpenAPI document.

Bodies are validated strictly (JSON integers only: no "100" or 100.5 for an amount). Query
values arrive as text: an integer there is ASCII digits (inputs.parse_integer), a timestamp an
ISO 8601 date-time with an offset (pydantic alone would also read " 12 ", "1_0" or "12.0" as
12, and a bare number as Unix time).
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasChoices, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.json_schema import WithJsonSchema

from ..inputs import ASSET_CODE, parse_integer
from ..limits import BIGINT_MAX
from ..accounts import EXTERNAL_ID, MAX_REASON, USERNAME
from ..audit_events import ACTIONS
from ..batch import MAX_ITEMS
from ..controls import MAX_TICKET
from ..kinds import API_KINDS, HOUSE_FLOWS, NAMES as TRANSACTION_KINDS
from ..holds import DEFAULT_EXPIRY_SECONDS, MAX_EXPIRY_SECONDS
from ..models import AUDIT_OUTCOMES, EVENT_TYPES, HOLD_STATUSES, USER_STATUSES
from ..queries import CONTROL_FIELDS, CONTROL_KEYS, MAX_PAGE

ISO_DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")


def _encodable(text: str) -> str:
    text.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError, a ValueError: 422
    return text


def _ascii_integer(value: object) -> object:
    if not isinstance(value, str):
        return value
    number = parse_integer(value)
    if number is None:
        raise ValueError("must be a whole number in ASCII digits")
    return number


def _iso_date_time(value: object) -> object:
    if isinstance(value, str) and not ISO_DATE_TIME.match(value):
        raise ValueError("must be an ISO 8601 date-time with an offset, like 2025-01-01T00:00:00Z")
    return value


def _utc(moment: datetime) -> datetime:
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("timestamp is out of range") from None


# PostgreSQL text cannot hold NUL; the pattern also tells the OpenAPI document so.
Text = Annotated[str, Field(pattern=r"^[^\x00]*$"), AfterValidator(_encodable)]
Id = Annotated[int, Field(ge=1, le=BIGINT_MAX)]
Amount = Annotated[int, Field(ge=1, le=BIGINT_MAX, description="integer, in the asset's smallest unit")]
AssetCode = Annotated[str, Field(pattern=f"^{ASSET_CODE}$", examples=["GOLD"])]
ReferenceId = Annotated[Text, Field(min_length=1, max_length=128,
                                    description="idempotency key: the same request may be retried with it")]
Description = Annotated[Text, Field(max_length=500)]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_date_time), AfterValidator(_utc)]
QueryInteger = BeforeValidator(_ascii_integer)
QueryId = Annotated[Id, QueryInteger]
Limit = Annotated[int, Field(ge=1, le=MAX_PAGE), QueryInteger]
# Opaque, so not Text: any value this API did not return, of any length or with a NUL, is
# 400 invalid_cursor (queries.decode_cursor), never a 422.
Cursor = Annotated[str, Field(description="`next_cursor` of the previous page")]
Kind = Literal[TRANSACTION_KINDS]
UserStatus = Literal[USER_STATUSES]
Username = Annotated[str, Field(pattern=f"^{USERNAME.pattern}$", examples=["player_1"])]
ExternalId = Annotated[str, Field(pattern=f"^{EXTERNAL_ID.pattern}$", examples=["game:4711"],
                                  description="your own id for the player (unique)")]
Email = Annotated[Text, Field(min_length=3, max_length=255, examples=["player@example.com"])]
AssetField = Annotated[str, Field(validation_alias=AliasChoices("asset", "asset_code"))]
Reason = Annotated[Text, Field(min_length=1, max_length=MAX_REASON)]
METADATA_KEY = r"^[A-Za-z0-9_.-]{1,40}$"
MetadataValue = Annotated[Text, Field(max_length=200)]


def _no_control_keys(metadata: dict) -> dict:
    reserved = sorted(set(metadata) & set(CONTROL_KEYS))
    if reserved:
        raise ValueError(f"{', '.join(reserved)}: reserved for the dashboard's controls")
    return metadata


Metadata = Annotated[dict[Annotated[str, Field(pattern=METADATA_KEY)], MetadataValue],
                     Field(max_length=16, description="up to 16 string values, "
                           "keys of letters, digits, '_', '.', '-' (1-40), values up to 200; "
                           f"not {', '.join(CONTROL_KEYS)} (the dashboard's controls)"),
                     AfterValidator(_no_control_keys)]


class Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class Query(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# ---------------------------------------------------------------- errors


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str = Field(examples=["insufficient_funds"])
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


# ---------------------------------------------------------------- /wallet (seed-compatible)


class MovementRequest(Body):
    user_id: Id
    amount: Amount
    reference_id: ReferenceId
    description: Description = ""
    currency: AssetCode = "GOLD"


class MovementResponse(Out):
    """As the original service answered: 200 and "success", a replay too (told apart by
    `Idempotent-Replayed: true`)."""

    id: int
    reference_id: str
    type: Literal[HOUSE_FLOWS]
    status: Literal["success"] = "success"
    created_at: datetime
    balance: int = Field(description="the user's wallet balance in this currency after the movement")


class WalletAccount(Out):
    id: int
    name: str
    currency: str
    balance: int = Field(description="what the user owns in this currency: available + held")
    available: int = Field(description="what can be spent now")
    held: int = Field(description="kept aside by open holds")


class WalletBalance(Out):
    user_id: int
    total_balance: int = Field(description="what the user owns in GOLD (the original "
                               "single-currency total): available_balance + held_balance")
    available_balance: int = Field(description="GOLD that can be spent now")
    held_balance: int = Field(description="GOLD kept aside by open holds")
    accounts: list[WalletAccount]


# ---------------------------------------------------------------- /api/v1


class UserQuery(Query):
    q: Annotated[Text, Field(max_length=255, description="an id, or a username, email or "
                             "external_id prefix (case-insensitive)")] | None = None
    status: UserStatus | None = None
    cursor: Cursor | None = None
    limit: Limit = 50


class UserCreate(Body):
    username: Username
    email: Email
    external_id: ExternalId | None = None


class StatusChangeRequest(Body):
    reason: Reason


class PageQuery(Query):
    cursor: Cursor | None = None
    limit: Limit = 50


class TransactionFilter(Query):
    user_id: QueryId | None = None
    account_id: QueryId | None = None
    asset: AssetCode | None = None
    kind: Kind | None = None
    reference_id: Annotated[Text, Field(max_length=128)] | None = None
    metadata: Annotated[Text, Field(pattern=r"^[A-Za-z0-9_.-]{1,40}:", max_length=241,
                                    description="key:value, transactions whose metadata "
                                    "holds that value under that key")] | None = None
    reason_code: Annotated[Text, Field(max_length=32, description="a dashboard movement's "
                                       "reason code")] | None = None
    ticket: Annotated[Text, Field(max_length=MAX_TICKET, description="a dashboard movement's "
                                  "ticket reference, exactly")] | None = None
    since: Timestamp | None = Field(None, description="created at or after (ISO 8601 with offset)")
    until: Timestamp | None = Field(None, description="created before (ISO 8601 with offset)")


class TransactionQuery(TransactionFilter, PageQuery):
    pass


class AuditEventFilter(Query):
    action: Literal[ACTIONS] | None = None
    outcome: Literal[AUDIT_OUTCOMES] | None = None
    actor: Annotated[Text, Field(max_length=128, description="a prefix of the actor label, like "
                                 "operator:alice, api: or cli: (case-insensitive)")] | None = None
    operator_id: QueryId | None = Field(None, description="events of this operator")
    object_type: Annotated[Text, Field(max_length=32, examples=["operator"])] | None = None
    object_id: Annotated[Text, Field(max_length=128)] | None = None
    since: Timestamp | None = Field(None, description="at or after (ISO 8601 with offset)")
    until: Timestamp | None = Field(None, description="before (ISO 8601 with offset)")


class AuditEventQuery(AuditEventFilter, PageQuery):
    pass


class BalanceAtQuery(Query):
    at: Timestamp | None = Field(None, description="point in time (ISO 8601 with offset); now if absent")


class ReversalRequest(Body):
    reference_id: ReferenceId
    description: Description = ""


class UserOut(Out):
    id: int
    username: str
    email: str
    external_id: str | None
    status: UserStatus
    created_at: datetime


class UserPage(BaseModel):
    items: list[UserOut]
    next_cursor: str | None


class StatusChangeOut(Out):
    previous_status: str
    status: str
    reason: str
    actor: str
    created_at: datetime


class AccountBalanceOut(Out):
    id: int
    name: str
    kind: str
    asset: AssetField
    balance: int = Field(description="what the account can move now (a wallet: available)")
    held: int = Field(description="kept aside by the wallet's open holds (0 for house accounts)")
    available: int = Field(description="the same as balance, named for holds' readers")
    status: str


class UserDetail(UserOut):
    accounts: list[AccountBalanceOut]
    status_changes: list[StatusChangeOut] = Field(description="newest first")


class TransactionRequest(Body):
    kind: Literal[API_KINDS]
    user_id: Id = Field(description="the wallet credited or debited; a transfer's sender")
    to_user_id: Id | None = Field(None, description="a transfer's recipient (transfer only)")
    asset: AssetCode
    amount: Amount
    reference_id: ReferenceId
    description: Description = ""
    metadata: Metadata | None = None


class AssetOut(Out):
    code: str
    name: str
    scale: int = Field(description="decimals to show: amounts are integers of 10**-scale units")
    max_amount: int
    max_balance: int


class AssetList(BaseModel):
    items: list[AssetOut]


class AccountOut(Out):
    id: int
    user_id: int
    name: str
    kind: str
    asset: AssetField
    status: str
    allow_negative: bool
    balance: int = Field(description="exact; a wallet's is what it can spend now (available)")
    available: int
    held: int = Field(description="kept aside by a wallet's open holds (0 for house accounts)")
    created_at: datetime


class PostingOut(Out):
    id: int
    transaction_id: int
    kind: str
    reference_id: str
    description: str
    actor: str
    amount: int
    balance_after: int | None
    created_at: datetime


class PostingPage(BaseModel):
    items: list[PostingOut]
    next_cursor: str | None


class BalanceAt(BaseModel):
    account_id: int
    at: datetime
    balance: int


class LegOut(BaseModel):
    account_id: int
    user_id: int
    asset: AssetField
    amount: int
    balance_after: int | None


class TransactionOut(BaseModel):
    id: int
    kind: str
    reference_id: str
    description: str
    actor: str
    api_key_id: int | None
    operator_id: int | None
    reverses_id: int | None
    metadata: dict[str, str] | None
    reason_code: str | None = Field(description="a dashboard movement's reason code (metadata)")
    ticket: str | None = Field(description="a dashboard movement's ticket reference (metadata)")
    checker: str | None = Field(description="who approved a dashboard movement (metadata)")
    created_at: datetime
    postings: list[LegOut]


def transaction_out(tx) -> TransactionOut:
    """A Transaction row (with its postings and their accounts loaded) as the API shows it."""
    legs = [LegOut(account_id=p.account_id, user_id=p.account.user_id, asset=p.account.asset_code,
                   amount=p.amount, balance_after=p.balance_after) for p in tx.postings]
    controls = {name: (tx.meta or {}).get(name) for name in CONTROL_FIELDS}
    return TransactionOut(id=tx.id, kind=tx.kind, reference_id=tx.reference_id,
                          description=tx.description, actor=tx.actor, api_key_id=tx.api_key_id,
                          operator_id=tx.operator_id, reverses_id=tx.reverses_id, metadata=tx.meta,
                          **controls, created_at=tx.created_at, postings=legs)


class TransactionPage(BaseModel):
    items: list[TransactionOut]
    next_cursor: str | None


class ReversalResponse(BaseModel):
    id: int
    reference_id: str
    type: Literal["reversal"] = "reversal"
    status: Literal["completed"] = "completed"
    reverses_id: int
    created_at: datetime


class AuditEventOut(Out):
    id: int
    created_at: datetime
    action: str
    outcome: Literal[AUDIT_OUTCOMES]
    actor: str = Field(description="operator:<name>, api:<key name>, cli:<user>, system, "
                       "unknown or anonymous")
    operator_id: int | None
    api_key_id: int | None
    address: str | None = Field(description="the client address")
    request_id: str | None = Field(description="the X-Request-ID of the request that did it")
    object_type: str | None
    object_id: str | None
    details: dict[str, Any] | None


class AuditEventPage(BaseModel):
    items: list[AuditEventOut]
    next_cursor: str | None


# ---------------------------------------------------------------- holds


HoldStatus = Literal[HOLD_STATUSES]


# Each item is checked on its own (one bad item does not refuse the others), so the envelope
# takes any object; what an item must be is TransactionRequest's schema.
BatchItem = Annotated[dict[str, Any], WithJsonSchema({
    "type": "object", "description": "a TransactionRequest (POST /api/v1/transactions), "
    "checked on its own: an invalid item is refused alone, with its error in the answer"})]


class BatchRequest(Body):
    items: list[BatchItem] = Field(min_length=1, max_length=MAX_ITEMS,
                                   description="each one a TransactionRequest, its own "
                                   "transaction with its own reference_id")
    atomic: bool = Field(False, description="all or nothing: when one item is refused, "
                         "none is posted (the answer is 422, the others `batch_aborted`)")


class BatchItemOut(BaseModel):
    status: int = Field(description="201 posted, 200 replayed, else the error's HTTP status")
    transaction: TransactionOut | None = None
    error: ErrorDetail | None = None


class BatchCounts(BaseModel):
    posted: int
    replayed: int
    refused: int


class BatchResponse(BaseModel):
    error: ErrorDetail | None = Field(None, description="only when an atomic batch was refused "
                                      "(HTTP 422): `batch_refused`, nothing was posted")
    atomic: bool
    counts: BatchCounts
    items: list[BatchItemOut] = Field(description="one per item, in the order sent")


class HoldRequest(Body):
    user_id: Id
    asset: AssetCode
    amount: Amount
    reference_id: ReferenceId
    expires_in_seconds: Annotated[int, Field(ge=1, le=MAX_EXPIRY_SECONDS, description=(
        "after this the hold can no longer be captured or voided and is released "
        f"(default {DEFAULT_EXPIRY_SECONDS}, at most 7 days)"))] | None = None
    description: Description = ""
    metadata: Metadata | None = None


class CaptureRequest(Body):
    reference_id: ReferenceId
    amount: Amount | None = Field(None, description="at most the held amount (default: all "
                                  "of it); the rest goes back to the wallet in the same step")
    description: Description = ""


class VoidRequest(Body):
    reference_id: ReferenceId
    description: Description = ""


class HoldOut(Out):
    id: int
    user_id: int
    account_id: int = Field(description="the wallet the amount was held from")
    asset: AssetField
    amount: int
    captured_amount: int | None
    status: HoldStatus = Field(description="`expired` as soon as expires_at passes, released "
                               "or not")
    reference_id: str
    description: str
    created_at: datetime
    expires_at: datetime
    settled_at: datetime | None
    hold_transaction_id: int
    settle_transaction_id: int | None = Field(description="the capture, void or expiry")


class HoldDetail(HoldOut):
    available: int = Field(description="what the wallet can spend now")
    held: int = Field(description="the user's open holds in this asset")


class HoldQuery(Query):
    user_id: QueryId | None = None
    status: HoldStatus | None = None
    asset: AssetCode | None = None
    cursor: Cursor | None = None
    limit: Limit = 50


class HoldPage(BaseModel):
    items: list[HoldOut]
    next_cursor: str | None


# ---------------------------------------------------------------- events


EventType = Literal[EVENT_TYPES]


def _event_types(value):
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class EventQuery(Query):
    after: Annotated[str, Field(description="`next_cursor` of the previous call; without it, "
                                "the feed from its start")] | None = None
    types: Annotated[tuple[EventType, ...], BeforeValidator(_event_types), WithJsonSchema({
        "type": "string", "description": "comma-separated event types, e.g. "
        "transaction.posted,user.status_changed; without it, all"})] = ()
    limit: Annotated[int, Field(ge=1, le=1000), QueryInteger] = 100


class EventOut(BaseModel):
    id: int = Field(description="unique: receivers dedupe on it")
    type: EventType
    created_at: datetime
    data: dict[str, Any] = Field(description="the object as the API shows it (a transaction as "
                                 "GET /api/v1/transactions/<id>)")


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str = Field(description="pass it as `after` next time, also when items is "
                             "empty: it never skips an event and never repeats one")


# ---------------------------------------------------------------- the verifiable export


Hash = Annotated[str, Field(pattern="^[0-9a-f]{64}$")]
Seq = Annotated[int, Field(ge=0, le=BIGINT_MAX)]


class ExportFilter(TransactionFilter):
    through_seq: Annotated[Seq, QueryInteger] | None = Field(
        None, description="the last ledger chain entry to include; with it, no later entry "
        "and no transaction not sealed yet is in the file (the manifest sets it)")


class ChainHeadOut(BaseModel):
    seq: Seq
    hash: Hash
    sealed_at: datetime | None


class ExportManifest(BaseModel):
    format: Literal["wallet-ledger-export-v1"]
    chain: Literal["ledger"]
    complete: bool = Field(description="true when filtered by time alone: every entry from "
                           "first_seq to last_seq is in the file; false: the rows' integrity "
                           "only")
    statement: str = Field(description="what verifying the file against this manifest proves")
    filters: dict[str, Any]
    through_seq: Seq
    first_seq: Seq | None
    last_seq: Seq | None
    rows: int = Field(ge=0, description="CSV rows after the header, one per posting")
    entries: int = Field(ge=0, description="chain entries (transactions)")
    unsealed_rows: int = Field(ge=0, description="rows matching the filters that are not "
                               "sealed yet, so not in the file: seal, then export again")
    csv_sha256: Hash
    hash_before_first: Hash | None
    hash_after_last: Hash | None
    chain_head: ChainHeadOut
    generated_at: datetime
    csv_url: str = Field(description="the CSV these bytes are, with through_seq pinned; verify "
                         "with python -m wallet_web.verify_export FILE MANIFEST (docs/audit.md)")
