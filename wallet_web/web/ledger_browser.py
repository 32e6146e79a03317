"""Ledger browser: filtered transactions (filters in the URL), a transaction page with its
postings, reason code, ticket, maker and checker, the hold it belongs to (a hold, capture or
release), the admin's reversal (through the operator controls), and the CSV audit trail with
its manifest (the API's code and format; each download is audited)."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

from flask import Blueprint, Response, flash, redirect, request, stream_with_context, url_for
from flask_login import current_user

from .. import approvals, audit_events, controls, errors, exports, kinds, queries, replica
from ..api.schemas import ExportManifest
from ..extensions import db
from ..inputs import parse_integer
from ..limits import BIGINT_MAX
from . import approvals as approvals_pages
from .amounts import format_amount, scale_of
from .forms import LedgerFilterForm, LedgerJumpForm, ReversalForm, new_reference
from .permissions import login_required_everywhere, role_required
from .query_args import read_by_a_form
from .rendering import is_htmx, render

bp = login_required_everywhere(Blueprint("ledger", __name__, url_prefix="/ledger"))
LEDGER_PAGE = 25
FILTER_NAMES = ("q", "amount", "kind", "asset", "user_id", "reference_id", "since", "until",
                "reason_code", "ticket")


@bp.route("")
@replica.reads
@read_by_a_form(*FILTER_NAMES, "start")
def index():
    form, filters = _filters()
    jump = LedgerJumpForm(request.args)
    page = matching = None
    if filters is not None and jump.validate():
        cursor = request.args.get("cursor") or _start_cursor(jump)
        page = queries.list_transactions(filters, cursor, LEDGER_PAGE)
        matching = None if request.args.get("rows") else queries.count_transactions(filters)
    partial = "ledger/_rows.html" if request.args.get("rows") else "ledger/_browser.html"
    transactions = page.items if page else []
    return render("ledger/index.html", partial, form=form, jump=jump, page=page,
                  matching=matching, count_cap=queries.COUNT_CAP, shared=_shared_args(),
                  transactions=transactions, owners=owner_names(transactions),
                  status=200 if page else 422)


def _start_cursor(jump: LedgerJumpForm) -> str | None:
    """The cursor of a list jumped to the end of a UTC day (none before it: an empty page)."""
    if jump.start.data is None:
        return None
    day_after = datetime.combine(jump.start.data + timedelta(days=1), time(), timezone.utc)
    return queries.cursor_at(day_after) or queries.encode_cursor(1)


def owner_names(transactions: list) -> dict[int, str]:
    """Usernames of the wallets the transactions touch, in one query."""
    return queries.usernames({leg.account.user_id for tx in transactions for leg in tx.postings
                              if leg.account.kind == "wallet"})


@bp.route("/transactions.csv")
@read_by_a_form(*FILTER_NAMES)
def export_csv():
    filters, through_seq = _export_filters()
    if filters is None:
        return redirect(url_for("ledger.index", **_shared_args()))
    _record_export(None, through_seq)
    rows = stream_with_context(exports.audit_csv(filters, through_seq))
    name = exports.ledger_filename(filters)
    return Response(rows, mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename={name}"})


@bp.route("/transactions.manifest.json")
@read_by_a_form(*FILTER_NAMES)
def export_manifest():
    """The CSV's manifest (the API's): verify the pair offline with verify_export."""
    filters, through_seq = _export_filters()
    if filters is None:
        return redirect(url_for("ledger.index", **_shared_args()))
    _record_export("manifest.json", through_seq)
    manifest = exports.ledger_manifest(filters, through_seq)
    csv_url = url_for("ledger.export_csv", **_shared_args(), through_seq=manifest["through_seq"])
    name = exports.ledger_filename(filters, "manifest.json")
    return Response(ExportManifest(**manifest, csv_url=csv_url).model_dump_json(),
                    mimetype="application/json",
                    headers={"Content-Disposition": f"attachment; filename={name}"})


def _export_filters() -> tuple[queries.TransactionFilters | None, int | None]:
    """The filters and through_seq of an export (filters None when one is invalid)."""
    _, filters = _filters()
    given = request.args.get("through_seq")
    through_seq = None if given is None else parse_integer(given)
    if given is not None and (through_seq is None or not 0 <= through_seq <= BIGINT_MAX):
        return None, None
    return filters, through_seq


def _record_export(object_id: str | None, through_seq: int | None) -> None:
    pinned = {} if through_seq is None else {"through_seq": through_seq}
    audit_events.record("export.downloaded", object_type="transactions", object_id=object_id,
                        filters={**_shared_args(), **pinned})
    db.session.commit()  # recorded before the first byte: a download cut short still counts


def _filters() -> tuple[LedgerFilterForm, queries.TransactionFilters | None]:
    """The filter form from the query string, and the filters (None when one is invalid)."""
    form = LedgerFilterForm(request.args, queries.list_asset_codes(),
                            controls.list_reason_codes(active_only=False))
    if not form.validate() or not _writable_amount(form):
        return form, None
    return form, queries.TransactionFilters(
        kind=form.kind.data or None, asset=form.asset.data or None, user_id=form.user_id.data,
        reference_id=(form.reference_id.data or "").strip() or None,
        since=_utc(form.since.data), until=_utc(form.until.data),
        reason_code=form.reason_code.data or None, ticket=form.ticket.data or None,
        text=form.q.data or None, amount=form.amount.data)


def _writable_amount(form: LedgerFilterForm) -> bool:
    """An amount the chosen asset (or any asset) can write; else an error beside it."""
    amount, asset = form.amount.data, form.asset.data or None
    if amount is None or queries.in_smallest_units(amount, asset):
        return True
    if amount == 0:
        form.amount.errors.append("Enter an amount above 0.")
    elif asset:
        form.amount.errors.append(f"{asset} amounts have at most {scale_of(asset)} decimals.")
    else:
        form.amount.errors.append("No asset has that many decimals.")
    return False


def _utc(value):
    return None if value is None else value.replace(tzinfo=timezone.utc)


def _shared_args() -> dict:
    """The filters as they are in the URL (for the CSV link and "load more")."""
    return {name: request.args[name] for name in FILTER_NAMES if request.args.get(name)}


@bp.route("/<id:tx_id>")
@replica.reads
def transaction(tx_id: int):
    form = ReversalForm(controls.list_reason_codes(), formdata=None)
    return render("ledger/transaction.html", **_transaction_context(tx_id, form))


def _transaction_context(tx_id: int, form: ReversalForm) -> dict:
    found = queries.get_transaction(tx_id)
    reversal = queries.reversal_of(tx_id)
    reversible = kinds.is_reversible(found.kind) and reversal is None
    titles = {code.code: code.title for code in controls.list_reason_codes(active_only=False)}
    hold = queries.hold_of(tx_id)
    return {"tx": found, "reversal": reversal, "reversible": reversible, "form": form,
            "reverses": queries.get_transaction(found.reverses_id) if found.reverses_id else None,
            "meta": controls_of(found), "reason_titles": titles, "hold": hold,
            "names": queries.usernames({hold.user_id}) if hold else {}}


def controls_of(tx) -> dict:
    """The reason code, ticket, request and checker of an operator's movement (approvals.py
    writes them into its metadata); an API caller's metadata may use the same keys."""
    return (tx.meta or {}) if tx.operator_id is not None else {}


@bp.route("/<id:tx_id>/reversal", methods=["POST"])
@role_required("admin")
def reverse(tx_id: int):
    queries.get_transaction(tx_id)
    form = ReversalForm(controls.list_reason_codes())
    if form.validate_on_submit():
        try:
            outcome = approvals.submit(_reversal(form, tx_id), current_user)
        except errors.WalletError as error:
            form.reference_id.data = None  # a refused request keeps its reference
            _explain(form, error)
        else:
            return _reversal_sent(tx_id, outcome)
    if form.reference_id.data is None or form.reference_id.errors:
        form.reference_id.data = new_reference()  # the next try is a new request
    return render("ledger/transaction.html", "ledger/_reversal.html", status=422,
                  **_transaction_context(tx_id, form))


def _reversal(form: ReversalForm, tx_id: int) -> approvals.Intent:
    return approvals.Intent("reversal", form.reference_id.data, form.reason_code.data,
                            form.reason.data, ticket=form.ticket.data or None, reverses_id=tx_id)


def _explain(form: ReversalForm, error: errors.WalletError) -> None:
    if not form.explain(error):
        form.form_errors.append(error.message)


def _reversal_sent(tx_id: int, outcome: approvals.Outcome):
    if is_htmx():
        return _reversal_confirmed(tx_id, outcome)
    if outcome.status == "pending":
        flash(_waiting(tx_id, outcome))
        return redirect(url_for("ledger.transaction", tx_id=tx_id), 303)
    flash(f"Transaction #{tx_id} reversed by transaction #{outcome.receipt.id}. "
          f"{_what(queries.get_transaction(tx_id))} moved back.")
    return redirect(url_for("ledger.transaction", tx_id=outcome.receipt.id), 303)


def _reversal_confirmed(tx_id: int, outcome: approvals.Outcome):
    """The confirmation in place of the form, and the facts again (now "Reversed by")."""
    context = _transaction_context(tx_id, ReversalForm(controls.list_reason_codes(),
                                                       formdata=None))
    waiting = _waiting(tx_id, outcome) if outcome.status == "pending" else None
    return render("ledger/_reversal_done.html", sent=outcome, what=_what(context["tx"]),
                  sent_for_approval=waiting, **context)


def _waiting(tx_id: int, outcome: approvals.Outcome):
    return approvals_pages.sent_for_approval(
        outcome.request_id, f"The reversal of transaction #{tx_id} waits for another "
                            "operator with the approver right; nothing has moved yet.")


def _what(tx) -> str:
    """A transaction in words, "Top up of 1,250 GOLD": what its legs credit (one asset)."""
    credits = [leg for leg in tx.postings if leg.amount > 0]
    asset = credits[0].account.asset_code
    total = format_amount(sum(leg.amount for leg in credits), asset)
    return f"{kinds.title_of(tx.kind)} of {total} {asset}"
