"""Approvals: the four-eyes queue (movement requests by status, newest first, keyset pages) and
each request's page, where an operator with the approver right (never its maker) approves or
rejects it with a reason. Plain forms and redirects: deciding works without JavaScript."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask_login import current_user
from markupsafe import Markup

from .. import approvals, bulk, controls, errors, kinds, queries
from ..accounts import MAX_REASON
from .amounts import format_amount
from .forms import ApprovalFilterForm, DecisionForm
from .permissions import can, login_required_everywhere
from .query_args import read_by_a_form
from .rendering import render, timestamp

bp = login_required_everywhere(Blueprint("approvals", __name__, url_prefix="/approvals"))
bp.add_app_template_filter(controls.ticket_link, "ticket_link")
REQUESTS_PAGE = 25
DECISIONS = ("approve", "reject")


@bp.before_request
def operators_only():
    if not can("operator"):
        abort(403, description="This needs the operator role.")


def sent_for_approval(request_id: int, waiting: str) -> Markup:
    """A maker's confirmation with a link to the request, for a flash (which keeps Markup)."""
    return Markup('Sent for approval (request #{id}). {waiting} '
                  '<a href="{url}">View request #{id}</a>').format(
        id=request_id, waiting=waiting,
        url=url_for("approvals.request_page", request_id=request_id))


# ---------------------------------------------------------------- the queue


@bp.route("")
@read_by_a_form("status")
def index():
    approvals.expire_due()
    bulk.expire_due()
    form = ApprovalFilterForm(request.args)
    page = None
    if form.validate():
        status = form.status.data or "pending"
        page = queries.list_requests(None if status == "any" else status,
                                     request.args.get("cursor"), REQUESTS_PAGE)
    shared = {"status": request.args["status"]} if request.args.get("status") else {}
    partial = "approvals/_rows.html" if request.args.get("rows") else "approvals/_list.html"
    return render("approvals/index.html", partial, form=form, page=page, shared=shared,
                  names=_usernames(page.items if page else []), bulk_grants=bulk.pending(),
                  status=200 if page else 422)


def _usernames(rows: list) -> dict[int, str]:
    return queries.usernames({user_id for row in rows for user_id in (row.user_id, row.to_user_id)
                              if user_id is not None})


# ---------------------------------------------------------------- a request


@bp.route("/<id:request_id>")
def request_page(request_id: int):
    approvals.expire_due()
    return _request_page(request_id)


def _request_page(request_id: int, bound: DecisionForm | None = None, status: int = 200,
                  refusal: str | None = None):
    row = queries.get_request(request_id)
    forms = {decision: DecisionForm(decision, formdata=None) for decision in DECISIONS}
    if bound is not None:
        forms[bound.decision] = bound
    titles = {code.code: code.title for code in controls.list_reason_codes(active_only=False)}
    hold = queries.get_hold(row.hold_id) if row.hold_id else None  # as it is now
    return render("approvals/request.html", req=row, forms=forms, refusal=refusal, hold=hold,
                  names=_usernames([row]), reason_titles=titles, status=status)


@bp.route(f"/<id:request_id>/<any({', '.join(DECISIONS)}):decision>", methods=["POST"])
def decide(request_id: int, decision: str):
    if not current_user.can_approve:
        abort(403, description="This needs the approver right.")
    row = queries.get_request(request_id)
    form = DecisionForm(decision)
    if not form.validate_on_submit():
        return _request_page(request_id, form, status=422)
    try:
        flash(_decided(row, decision, form.reason.data))
    except errors.WalletError as error:
        return _refused(request_id, form, error)
    return redirect(url_for("approvals.request_page", request_id=request_id), 303)


def _decided(row, decision: str, reason: str) -> str:
    """Decide, and say what it did."""
    if decision == "reject":
        approvals.reject(row.id, current_user, reason)
        return f"Request #{row.id} rejected: nothing moved."
    receipt = approvals.approve(row.id, current_user, reason)
    return f"Request #{row.id} approved: {_what(row)} recorded as transaction #{receipt.id}."


def _what(row) -> str:
    if row.hold_id:
        return (f"Release of hold #{row.hold_id} ({format_amount(row.amount, row.asset_code)} "
                f"{row.asset_code})")
    return (f"{kinds.title_of(row.kind)} of {format_amount(row.amount, row.asset_code)} "
            f"{row.asset_code}")


def _refused(request_id: int, form: DecisionForm, error: errors.WalletError):
    if error.details.get("field") == "reason":
        form.reason.errors.append(f"Say why, in at most {MAX_REASON} characters.")
        return _request_page(request_id, form, status=422)
    refusal = _refusal(error, queries.get_request(request_id))
    return _request_page(request_id, form, status=error.status, refusal=refusal)


def _refusal(error: errors.WalletError, row) -> str:
    """What a refused decision says, from the request as it is now."""
    if isinstance(error, errors.RequestFailed):
        why = _not_posted(error.__cause__, row)
        return f"Approved, but it cannot be posted: {why}. Nothing moved."
    if isinstance(error, errors.RequestExpired):
        return (f"This request expired at {timestamp(row.expires_at)}: it can no longer be "
                "decided. Nothing moved.")
    if isinstance(error, errors.RequestDecided) and row.status == "failed":
        return (f"Request #{row.id} was already approved by {_name(row.checker)}, but it could "
                f"not be posted: {row.failure}. Nothing moved.")
    if isinstance(error, errors.SelfApproval):
        return "Your request: another operator must approve it. Nothing changed."
    if isinstance(error, errors.NotAnApprover):
        return "You do not have the approver right: nothing changed."
    return error.message[:1].upper() + error.message[1:] + "."


def _not_posted(cause: errors.WalletError | None, row) -> str:
    if isinstance(cause, errors.InsufficientFunds):
        return (f"not enough {row.asset_code}, the wallet holds "
                f"{format_amount(cause.details['available'], row.asset_code)}")
    if isinstance(cause, errors.AccountClosed):
        return "a user it moves value for is closed"
    if isinstance(cause, errors.AccountFrozen):
        return f"the {row.asset_code} wallet it takes from is frozen"
    if isinstance(cause, errors.HoldNotOpen):
        became = "released" if cause.details["status"] == "voided" else cause.details["status"]
        return f"hold #{row.hold_id} was {became} meanwhile"
    return row.failure or (cause.message if cause else "the ledger refused it")


def _name(label: str | None) -> str:
    return (label or "another operator").removeprefix("operator:")
