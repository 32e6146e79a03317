"""The audit trail as CSV: one row per posting, streamed in constant memory."""
import csv
import io
from typing import Iterable, Iterator

from sqlalchemy import select

from .extensions import db
from .models import Account, Posting, Transaction, User
from .queries import TransactionFilters, filtered_transactions

HEADER = ("transaction_id", "created_at", "kind", "reference_id", "account_id", "account",
          "user_id", "username", "asset", "amount", "balance_after", "description", "actor")
FORMULA_STARTS = "=+-@\uff1d\uff0b\uff0d\uff20"  # and their full-width forms
ROWS_PER_CHUNK = 1000


def neutralise(text: str) -> str:
    """Prefix a quote so spreadsheets show a text cell instead of running a formula. Leading
    whitespace counts too (tab, CR, LF, space, ideographic space...): spreadsheets may trim it
    and then read what follows, and some read full-width ＝ as =."""
    first = text[:1]
    return "'" + text if first and (first in FORMULA_STARTS or first.isspace()) else text


def audit_rows(filters: TransactionFilters) -> Iterator[tuple]:
    query = (
        select(Posting.transaction_id, Transaction.created_at, Transaction.kind,
               Transaction.reference_id, Posting.account_id, Account.name, User.id,
               User.username, Account.asset_code, Posting.amount, Posting.balance_after,
               Transaction.description, Transaction.actor)
        .join(Transaction, Transaction.id == Posting.transaction_id)
        .join(Account, Account.id == Posting.account_id)
        .join(User, User.id == Account.user_id)
        .order_by(Posting.id)
    )
    if filters != TransactionFilters():
        matching = filtered_transactions(filters).with_only_columns(Transaction.id)
        query = query.where(Posting.transaction_id.in_(matching))
    for row in db.session.execute(query.execution_options(yield_per=ROWS_PER_CHUNK)):
        yield _cells(row)


def _cells(row) -> tuple:
    (tx_id, created_at, kind, reference, account_id, account, user_id, username, asset,
     amount, balance_after, description, actor) = row
    when = created_at.isoformat(timespec="microseconds").replace("+00:00", "Z")
    return (tx_id, when, kind, neutralise(reference), account_id, neutralise(account), user_id,
            neutralise(username), asset, amount, "" if balance_after is None else balance_after,
            neutralise(description), neutralise(actor))


def audit_csv(filters: TransactionFilters) -> Iterator[str]:
    """CSV text in chunks of ROWS_PER_CHUNK rows, header first."""
    return _csv_chunks(audit_rows(filters))


def _csv_chunks(rows: Iterable[tuple]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADER)
    for count, row in enumerate(rows, start=1):
        writer.writerow(row)
        if count % ROWS_PER_CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
