"""CSV downloads, streamed in constant memory: the ledger (one row per posting), the audit
trail of people, and a wallet's statement. Each download is itself audited."""
import csv
import io
import json
from datetime import datetime
from typing import Iterable, Iterator

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from . import audit_events
from .extensions import db
from .inputs import FORMULA_STARTS
from .models import Account, AuditEvent, Hold, Posting, Transaction, User
from .moments import moment
from .queries import (
    CONTROL_FIELDS, AuditFilters, Statement, TransactionFilters, filtered_audit_events,
    filtered_transactions, meta_text, statement_lines,
)

HEADER = ("transaction_id", "created_at", "kind", "reference_id", "account_id", "account",
          "user_id", "username", "asset", "amount", "balance_after", "description", "actor",
          *CONTROL_FIELDS, "hold_id")
AUDIT_HEADER = ("id", "created_at", "action", "outcome", "actor", "operator_id", "api_key_id",
                "address", "request_id", "object_type", "object_id", "details")
STATEMENT_HEADER = ("entry", "posting_id", "transaction_id", "created_at", "kind",
                    "reference_id", "amount", "balance", "reason_code", "ticket", "maker",
                    "checker", "description")
ROWS_PER_CHUNK = 1000


def neutralise(text: str | None) -> str:
    """Prefix a quote so spreadsheets show a text cell instead of running a formula. Leading
    whitespace counts too (tab, CR, LF, space, ideographic space...): spreadsheets may trim it
    and then read what follows, and some read full-width ＝ as =."""
    text = text or ""
    first = text[:1]
    return "'" + text if first and (first in FORMULA_STARTS or first.isspace()) else text


def record_download(export: str, **filters) -> None:
    """The `export.downloaded` event with the filters asked for, committed before the first
    row is sent."""
    given = {name: moment(value) if isinstance(value, datetime) else value
             for name, value in filters.items() if value is not None and value != ""}
    audit_events.record("export.downloaded", object_type="export", object_id=export,
                        filters=given)
    db.session.commit()


# ---------------------------------------------------------------- the ledger


def audit_rows(filters: TransactionFilters) -> Iterator[tuple]:
    placed, settled = aliased(Hold), aliased(Hold)  # the hold a hold, capture or void belongs to
    query = (
        select(Posting.transaction_id, Transaction.created_at, Transaction.kind,
               Transaction.reference_id, Posting.account_id, Account.name, User.id,
               User.username, Account.asset_code, Posting.amount, Posting.balance_after,
               Transaction.description, Transaction.actor,
               *(meta_text(name) for name in CONTROL_FIELDS),
               func.coalesce(placed.id, settled.id))
        .join(Transaction, Transaction.id == Posting.transaction_id)
        .join(Account, Account.id == Posting.account_id)
        .join(User, User.id == Account.user_id)
        .outerjoin(placed, placed.hold_transaction_id == Transaction.id)
        .outerjoin(settled, settled.settle_transaction_id == Transaction.id)
        .order_by(Posting.id)
    )
    if filters != TransactionFilters():
        matching = filtered_transactions(filters).with_only_columns(Transaction.id)
        query = query.where(Posting.transaction_id.in_(matching))
    for row in db.session.execute(query.execution_options(yield_per=ROWS_PER_CHUNK)):
        yield _cells(row)


def _cells(row) -> tuple:
    (tx_id, created_at, kind, reference, account_id, account, user_id, username, asset,
     amount, balance_after, description, actor, *controls, hold_id) = row
    return (tx_id, moment(created_at), kind, neutralise(reference), account_id,
            neutralise(account), user_id, neutralise(username), asset, amount,
            "" if balance_after is None else balance_after, neutralise(description),
            neutralise(actor), *(neutralise(value) for value in controls),
            "" if hold_id is None else hold_id)


def audit_csv(filters: TransactionFilters) -> Iterator[str]:
    """CSV text in chunks of ROWS_PER_CHUNK rows, header first."""
    return _csv_chunks(HEADER, audit_rows(filters))


# ---------------------------------------------------------------- the audit trail of people


def audit_event_rows(filters: AuditFilters) -> Iterator[tuple]:
    query = filtered_audit_events(filters).order_by(AuditEvent.id.desc())
    for event in db.session.scalars(query.execution_options(yield_per=ROWS_PER_CHUNK)):
        details = json.dumps(event.details, sort_keys=True) if event.details else ""
        yield (event.id, moment(event.created_at), event.action, event.outcome,
               neutralise(event.actor), event.operator_id or "", event.api_key_id or "",
               neutralise(event.address), neutralise(event.request_id),
               neutralise(event.object_type), neutralise(event.object_id), neutralise(details))


def audit_events_csv(filters: AuditFilters) -> Iterator[str]:
    """The filtered audit trail, newest first as on the page."""
    return _csv_chunks(AUDIT_HEADER, audit_event_rows(filters))


# ---------------------------------------------------------------- a wallet's statement


def statement_rows(period: Statement) -> Iterator[tuple]:
    """An opening row, one row per posting with its running balance, a closing row."""
    yield ("opening", "", "", _edge(period.since), "", "", "", period.opening, "", "", "", "", "")
    for line in statement_lines(period):
        yield ("posting", line.posting_id, line.transaction_id, moment(line.created_at),
               line.kind, neutralise(line.reference_id), line.amount, line.balance,
               neutralise(line.reason_code), neutralise(line.ticket), neutralise(line.actor),
               neutralise(line.checker), neutralise(line.description))
    yield ("closing", "", "", _edge(period.until), "", "", period.posted, period.closing,
           "", "", "", "", "")


def _edge(value: datetime | None) -> str:
    return moment(value) if value else ""


def statement_csv(period: Statement) -> Iterator[str]:
    return _csv_chunks(STATEMENT_HEADER, statement_rows(period))


def _csv_chunks(header: tuple[str, ...], rows: Iterable[tuple]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for count, row in enumerate(rows, start=1):
        writer.writerow(row)
        if count % ROWS_PER_CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
