"""CSV downloads, streamed in constant memory: the ledger (one row per posting), the audit
trail of people, and a wallet's statement. Each download is itself audited."""
import csv
import hashlib
import io
import re
import unicodedata
from dataclasses import asdict, dataclass, replace
from datetime import datetime, time, timezone
from typing import Iterable, Iterator

from sqlalchemy import Select, and_, false, func, null, select
from sqlalchemy.orm import aliased

from . import audit_events, chain, events, replica, verify_export
from .extensions import db
from .inputs import FORMULA_STARTS
from .models import (
    Account, AuditEvent, ChainEntry, ChainHead, Hold, Posting, Transaction, User, utcnow,
)
from .moments import moment
from .queries import (
    CONTROL_FIELDS, AuditFilters, Statement, TransactionFilters, filtered_audit_events,
    filtered_transactions, meta_text, statement_lines,
)

HEADER = verify_export.HEADER  # the verifier reads it with the standard library alone
assert verify_export.CONTROL_FIELDS == CONTROL_FIELDS
AUDIT_HEADER = ("id", "created_at", "action", "outcome", "actor", "operator_id", "api_key_id",
                "address", "request_id", "object_type", "object_id", "details")
STATEMENT_HEADER = ("entry", "posting_id", "transaction_id", "created_at", "kind",
                    "reference_id", "amount", "balance", "reason_code", "ticket", "maker",
                    "checker", "description")
ROWS_PER_CHUNK = 1000


def neutralise(text: str | None) -> str:
    """Prefix a quote so spreadsheets show a text cell instead of running a formula. Leading
    whitespace counts too (tab, CR, LF, space, ideographic space...): spreadsheets may trim it
    and then read what follows, and some read full-width ＝ as =. Text that starts with a quote
    gets one too, so that removing one leading quote always gives the text back
    (verify_export.unneutralise)."""
    text = text or ""
    first = text[:1]
    quoted = first and (first in FORMULA_STARTS or first.isspace() or first == "'")
    return "'" + text if quoted else text


def record_download(export: str, **filters) -> None:
    """The `export.downloaded` event with the filters asked for, committed before the first
    row is sent."""
    audit_events.record("export.downloaded", object_type="export", object_id=export,
                        filters=_given(filters))
    db.session.commit()


# ---------------------------------------------------------------- the ledger


@dataclass(frozen=True)
class Span:
    """The rows of one ledger export, fixed when it starts: sealed entries up to `through`
    (from `first` to `last` when the export is complete), then, unless a through_seq was
    asked for, the transactions not sealed yet."""

    filters: TransactionFilters
    complete: bool
    through: int
    first: int | None
    last: int | None
    unsealed: bool
    position: tuple[int, int]  # the sealer's, when the head was read
    head: chain.Head


def ledger_span(filters: TransactionFilters, through_seq: int | None = None) -> Span:
    """An export filtered by time alone is complete: every entry of the seq span of the
    sealed transactions in that time (with the few inside the span created just outside it).
    Any other filter proves the rows' integrity, not completeness."""
    stored = db.session.execute(select(ChainHead).filter_by(chain="ledger")).scalar_one()
    head = chain.Head("ledger", stored.seq, stored.hash, stored.sealed_at)
    through = stored.seq if through_seq is None else min(through_seq, stored.seq)
    complete = replace(filters, since=None, until=None) == TransactionFilters()
    first, last = _seq_span(filters, through) if complete else (None, None)
    return Span(filters, complete, through, first, last, through_seq is None,
                (stored.after_xid, stored.after_id), head)


def _seq_span(filters: TransactionFilters, through: int) -> tuple[int | None, int | None]:
    if filters.since is None and filters.until is None:
        return (1, through) if through > 0 else (None, None)
    return db.session.execute(
        select(func.min(ChainEntry.seq), func.max(ChainEntry.seq))
        .where(ChainEntry.chain == "ledger", ChainEntry.seq <= through,
               ChainEntry.entry_id.in_(_matching(filters)))).one()


def ledger_rows(span: Span) -> Iterator[tuple]:
    """One row per posting: sealed entries in seq order, then unsealed transactions by id;
    postings by id within a transaction. A complete span's entries are consecutive: each one's
    previous hash is the entry before's, carried here instead of looked up per row."""
    carried = _hash_before(span.first) if span.complete else None
    entry = previous = None
    for row in _execute(_sealed_rows(span)):
        *cells, seq, looked_up, sealed = row
        if span.complete and seq != entry:
            entry, previous, carried = seq, carried, sealed
        yield (*_cells(cells), seq, (previous if span.complete else looked_up) or chain.GENESIS,
               sealed)
    if span.unsealed:
        for row in _execute(_unsealed_rows(span)):
            yield (*_cells(row), "", "", "")


def _execute(query) -> Iterator:
    return db.session.execute(query.execution_options(yield_per=ROWS_PER_CHUNK))


def _rows_from(source, transaction_of) -> Select:
    """A CSV row's columns per posting of the transactions `source` names."""
    placed, settled = aliased(Hold), aliased(Hold)  # the hold a hold, capture or void belongs to
    return (
        select(Posting.transaction_id, Transaction.created_at, Transaction.kind,
               Transaction.reference_id, Posting.account_id, Account.name, Account.user_id,
               User.username, Account.asset_code, Posting.amount, Posting.balance_after,
               Transaction.description, Transaction.actor,
               *(meta_text(name) for name in CONTROL_FIELDS),
               func.coalesce(placed.id, settled.id))
        .select_from(source)
        .join(Transaction, Transaction.id == transaction_of)
        .join(Posting, Posting.transaction_id == Transaction.id)
        .join(Account, Account.id == Posting.account_id)
        .join(User, User.id == Account.user_id)
        .outerjoin(placed, placed.hold_transaction_id == Transaction.id)
        .outerjoin(settled, settled.settle_transaction_id == Transaction.id)
    )


def _sealed_rows(span: Span) -> Select:
    entry = aliased(ChainEntry)
    query = (_rows_from(entry, entry.entry_id).where(entry.chain == "ledger",
                                                     entry.seq <= span.through)
             .order_by(entry.seq, Posting.id))
    if span.complete:
        if span.first is None:
            return query.add_columns(entry.seq, null(), entry.hash).where(false())
        return (query.add_columns(entry.seq, null(), entry.hash)  # ledger_rows carries it
                .where(entry.seq.between(span.first, span.last)))
    previous = aliased(ChainEntry)
    return (query.add_columns(entry.seq, previous.hash, entry.hash)
            .outerjoin(previous, and_(previous.chain == "ledger", previous.seq == entry.seq - 1))
            .where(Transaction.id.in_(_matching(span.filters))))


def _hash_before(first: int | None) -> str | None:
    """The hash of the entry before `first` (None before the first entry: GENESIS)."""
    if first is None or first <= 1:
        return None
    return db.session.execute(select(ChainEntry.hash).where(
        ChainEntry.chain == "ledger", ChainEntry.seq == first - 1)).scalar_one()


def _unsealed_rows(span: Span) -> Select:
    posted = events.events
    query = (_rows_from(posted, posted.c.transaction_id)
             .where(posted.c.type == "transaction.posted",
                    events.past(posted, span.position))
             .order_by(Transaction.id, Posting.id))
    if span.filters != TransactionFilters():
        query = query.where(Transaction.id.in_(_matching(span.filters)))
    return query


def _matching(filters: TransactionFilters) -> Select:
    return filtered_transactions(filters).with_only_columns(Transaction.id)


def _cells(row) -> tuple:
    (tx_id, created_at, kind, reference, account_id, account, user_id, username, asset,
     amount, balance_after, description, actor, *controls, hold_id) = row
    return (tx_id, moment(created_at), kind, neutralise(reference), account_id,
            neutralise(account), user_id, neutralise(username), asset, amount,
            "" if balance_after is None else balance_after, neutralise(description),
            neutralise(actor), *(neutralise(chain.cell_text(value)) for value in controls),
            "" if hold_id is None else hold_id)


def audit_csv(filters: TransactionFilters, through_seq: int | None = None) -> Iterator[str]:
    """CSV text in chunks of ROWS_PER_CHUNK rows, header first; the span is read now."""
    with replica.reading():
        span = ledger_span(filters, through_seq)
    return replica.streaming(_csv_chunks(HEADER, ledger_rows(span)))


# ---------------------------------------------------------------- its manifest


@dataclass
class Tally:
    """What a manifest says of the rows it hashed."""

    rows: int = 0
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    hash_before_first: str | None = None
    hash_after_last: str | None = None

    def count(self, rows: Iterable[tuple]) -> Iterator[tuple]:
        for row in rows:
            seq, previous, sealed = row[-3:]
            self.rows += 1
            if seq != self.last_seq:
                self.entries += 1
                self.first_seq = self.first_seq or seq
                self.hash_before_first = self.hash_before_first or previous
            self.last_seq, self.hash_after_last = seq, sealed
            yield row


@replica.reads
def ledger_manifest(filters: TransactionFilters, through_seq: int | None = None) -> dict:
    """The manifest of the export with these filters, pinned to the sealed entries it holds:
    the CSV's bytes are made by the same generator and hashed here. The caller adds csv_url,
    the CSV's address with `through_seq` set to the one answered here."""
    span = replace(ledger_span(filters, through_seq), unsealed=False)
    tally, digest = Tally(), hashlib.sha256()
    for chunk in _csv_chunks(HEADER, tally.count(ledger_rows(span))):
        digest.update(chunk.encode("utf-8"))
    return {
        "format": verify_export.FORMAT, "chain": "ledger", "complete": span.complete,
        "statement": _statement(span, tally), "filters": given_filters(filters),
        "through_seq": tally.last_seq or span.through, **asdict(tally),
        "unsealed_rows": _unsealed_count(span), "csv_sha256": digest.hexdigest(),
        "chain_head": {"seq": span.head.seq, "hash": span.head.hash,
                       "sealed_at": moment(span.head.sealed_at) if span.head.sealed_at else None},
        "generated_at": moment(utcnow()),
    }


def given_filters(filters: TransactionFilters) -> dict:
    """The filters asked for, times as text (as they go back into a URL)."""
    return _given(asdict(filters))


def _given(filters: dict) -> dict:
    return {name: moment(value) if isinstance(value, datetime) else value
            for name, value in filters.items() if value is not None and value != ""}


def _unsealed_count(span: Span) -> int:
    query = _unsealed_rows(span).order_by(None).subquery()
    return db.session.execute(select(func.count()).select_from(query)).scalar_one()


def _statement(span: Span, tally: Tally) -> str:
    if not span.complete:
        return ("Filtered export: each entry's hash can be recomputed from its rows and the "
                "previous hash it carries, which proves that these rows are as they were "
                "sealed. It does not prove completeness: entries matching the filters could "
                "be left out without any hash showing it.")
    if tally.last_seq is None:
        return "No sealed entry falls in this range: the file holds the header only."
    chosen = (" The range was chosen by time; entries are whole and contiguous by seq, so a "
              "few near its edges may have been created just outside the times asked for."
              if span.filters != TransactionFilters() else "")
    return (f"Complete export of the ledger chain from seq {tally.first_seq} to "
            f"{tally.last_seq}: every sealed entry in that span is in the file, each with all "
            f"its postings. Recomputing each entry's hash from its rows links "
            f"hash_before_first to hash_after_last; compare hash_after_last with a head "
            f"published for seq {tally.last_seq} to prove that nothing in the span was "
            f"changed, removed, added or reordered since it was sealed.{chosen} Account names, "
            f"usernames and hold ids are labels: shown, not sealed.")


# ---------------------------------------------------------------- its file name

NAME_STEM_MAX = 120  # characters before ".csv" or ".manifest.json"
NAME_VALUE_MAX = 32  # characters of one filter value in the name
UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def ledger_filename(filters: TransactionFilters, extension: str = "csv") -> str:
    """The export's download name after its filters and time range, the same for the API and
    the dashboard: transactions_user-7_GOLD_topup_2026-11-01_to_2026-11-30.csv. Only
    [A-Za-z0-9._-] and at most NAME_STEM_MAX characters before the extension, whatever the
    filter values hold, so it is safe in a Content-Disposition header. through_seq is left
    out: a manifest and the CSV its csv_url pins share one stem."""
    period = _period(filters.since, filters.until)
    room = NAME_STEM_MAX - len(period) - 1  # the period is kept whole
    head = "_".join(["transactions", *_filter_parts(filters)])[:room].rstrip("._-")
    return "_".join(part for part in (head, period) if part) + "." + extension


def _filter_parts(filters: TransactionFilters) -> list[str]:
    labelled = (("user-", filters.user_id), ("account-", filters.account_id),
                ("", filters.asset), ("", filters.kind), ("ref-", filters.reference_id),
                ("reason-", filters.reason_code), ("ticket-", filters.ticket),
                ("meta-", filters.metadata), ("q-", filters.text), ("amount-", filters.amount))
    return [label + _name_safe(str(value)) for label, value in labelled
            if value is not None and value != ""]


def _name_safe(text: str) -> str:
    """Accents dropped, other characters outside [A-Za-z0-9._-] (quotes, slashes, CR/LF,
    spaces...) made one "-", bounded; a value with nothing left is named by its hash."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    safe = UNSAFE_IN_NAME.sub("-", ascii_text).strip("._-")[:NAME_VALUE_MAX].strip("._-")
    return safe or hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:8]


def _period(since: datetime | None, until: datetime | None) -> str:
    if since and until:
        return f"{_name_moment(since)}_to_{_name_moment(until)}"
    if since:
        return f"from_{_name_moment(since)}"
    return f"until_{_name_moment(until)}" if until else ""


def _name_moment(value: datetime) -> str:
    """A UTC day, or a UTC moment (ISO 8601 basic time: no colon) when not at midnight."""
    utc = value.astimezone(timezone.utc) if value.tzinfo else value
    return utc.strftime("%Y-%m-%d" if utc.time() == time(0) else "%Y-%m-%dT%H%M%SZ")


# ---------------------------------------------------------------- the audit trail of people


def audit_event_rows(filters: AuditFilters) -> Iterator[tuple]:
    query = filtered_audit_events(filters).order_by(AuditEvent.id.desc())
    for event in db.session.scalars(query.execution_options(yield_per=ROWS_PER_CHUNK)):
        details = chain.details_text(event.details)
        yield (event.id, moment(event.created_at), event.action, event.outcome,
               neutralise(event.actor), event.operator_id or "", event.api_key_id or "",
               neutralise(event.address), neutralise(event.request_id),
               neutralise(event.object_type), neutralise(event.object_id), neutralise(details))


def audit_events_csv(filters: AuditFilters) -> Iterator[str]:
    """The filtered audit trail, newest first as on the page."""
    return replica.streaming(_csv_chunks(AUDIT_HEADER, audit_event_rows(filters)))


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
    return replica.streaming(_csv_chunks(STATEMENT_HEADER, statement_rows(period)))


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
