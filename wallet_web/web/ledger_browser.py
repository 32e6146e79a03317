"""Ledger browser: filtered transactions (filters in the URL), a transaction page with its
postings, the admin's reversal, and the CSV audit trail (the API's code and format)."""
from __future__ import annotations

from datetime import timezone

from flask import Blueprint, Response, redirect, request, stream_with_context, url_for
from flask_login import current_user

from .. import errors, exports, kinds, ledger, queries
from .forms import LedgerFilterForm, ReversalForm, new_reference
from .permissions import login_required_everywhere, role_required
from .query_args import read_by_a_form
from .rendering import render

bp = login_required_everywhere(Blueprint("ledger", __name__, url_prefix="/ledger"))
LEDGER_PAGE = 25
FILTER_NAMES = ("kind", "asset", "user_id", "reference_id", "since", "until")


@bp.route("")
@read_by_a_form(*FILTER_NAMES)
def index():
    form, filters = _filters()
    page = None
    if filters is not None:
        page = queries.list_transactions(filters, request.args.get("cursor"), LEDGER_PAGE)
    partial = "ledger/_rows.html" if request.args.get("rows") else "ledger/_browser.html"
    transactions = page.items if page else []
    return render("ledger/index.html", partial, form=form, page=page, shared=_shared_args(),
                  transactions=transactions, owners=owner_names(transactions),
                  status=200 if filters else 422)


def owner_names(transactions: list) -> dict[int, str]:
    """Usernames of the wallets the transactions touch, in one query."""
    return queries.usernames({leg.account.user_id for tx in transactions for leg in tx.postings
                              if leg.account.kind == "wallet"})


@bp.route("/transactions.csv")
@read_by_a_form(*FILTER_NAMES)
def export_csv():
    _, filters = _filters()
    if filters is None:
        return redirect(url_for("ledger.index", **_shared_args()))
    rows = stream_with_context(exports.audit_csv(filters))
    return Response(rows, mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=transactions.csv"})


def _filters() -> tuple[LedgerFilterForm, queries.TransactionFilters | None]:
    """The filter form from the query string, and the filters (None when one is invalid)."""
    form = LedgerFilterForm(request.args, queries.list_asset_codes())
    if not form.validate():
        return form, None
    return form, queries.TransactionFilters(
        kind=form.kind.data or None, asset=form.asset.data or None, user_id=form.user_id.data,
        reference_id=(form.reference_id.data or "").strip() or None,
        since=_utc(form.since.data), until=_utc(form.until.data))


def _utc(value):
    return None if value is None else value.replace(tzinfo=timezone.utc)


def _shared_args() -> dict:
    """The filters as they are in the URL (for the CSV link and "load more")."""
    return {name: request.args[name] for name in FILTER_NAMES if request.args.get(name)}


@bp.route("/<id:tx_id>")
def transaction(tx_id: int):
    context = _transaction_context(tx_id, ReversalForm(formdata=None))
    return render("ledger/transaction.html", **context)


def _transaction_context(tx_id: int, form: ReversalForm) -> dict:
    found = queries.get_transaction(tx_id)
    reversal = queries.reversal_of(tx_id)
    reversible = kinds.is_reversible(found.kind) and reversal is None
    return {"tx": found, "reversal": reversal, "reversible": reversible, "form": form,
            "reverses": queries.get_transaction(found.reverses_id) if found.reverses_id else None}


@bp.route("/<id:tx_id>/reversal", methods=["POST"])
@role_required("admin")
def reverse(tx_id: int):
    queries.get_transaction(tx_id)
    form = ReversalForm()
    if form.validate_on_submit():
        actor = ledger.Actor(label=current_user.label, operator_id=current_user.id)
        try:
            receipt = ledger.reverse(tx_id, form.reference_id.data,
                                     description=form.reason.data.strip(), actor=actor)
            return redirect(url_for("ledger.transaction", tx_id=receipt.id), 303)
        except errors.WalletError as error:
            form.form_errors.append(error.message)
    if form.reference_id.errors or form.form_errors:  # refused: the next try is a new request
        form.reference_id.data = new_reference()
    return render("ledger/transaction.html", status=422, **_transaction_context(tx_id, form))
