"""Explain a balance: one wallet over a period, from the opening balance through every posting
(with its running balance, reason code, ticket, maker and checker) to the closing balance,
with totals per kind and the checks that the numbers add up. Printable, and as CSV."""
from __future__ import annotations

from flask import Blueprint, Response, redirect, request, stream_with_context, url_for

from .. import controls, exports, queries, replica
from ..models import utcnow
from .admin_forms import StatementForm
from .permissions import login_required_everywhere
from .query_args import read_by_a_form
from .rendering import render
from .users import DEFAULT_ASSET

bp = login_required_everywhere(Blueprint("explain", __name__, url_prefix="/users"))
LINES_SHOWN = 2000  # beyond this the page says so and points to the CSV
FILTER_NAMES = ("asset", "since", "until")


@bp.route("/<id:user_id>/explain")
@replica.reads
@read_by_a_form(*FILTER_NAMES)
def balance(user_id: int):
    user = queries.get_user(user_id)
    form, period = _period(user_id)
    lines = list(queries.statement_lines(period, LINES_SHOWN)) if period else []
    return render("users/explain.html", "users/_explain_statement.html", user=user, form=form,
                  period=period, lines=lines, lines_agree=all(line.agrees for line in lines),
                  ticket_link=controls.ticket_link, shared=_shared_args(), printed_at=utcnow(),
                  status=200 if period else 422)


@bp.route("/<id:user_id>/explain.csv")
@replica.reads
@read_by_a_form(*FILTER_NAMES)
def balance_csv(user_id: int):
    queries.get_user(user_id)
    _, period = _period(user_id)
    if period is None:
        return redirect(url_for("explain.balance", user_id=user_id, **_shared_args()))
    exports.record_download("statement.csv", user_id=user_id, asset=period.asset,
                            since=period.since, until=period.until)
    name = f"statement-{user_id}-{period.asset}.csv"
    return Response(stream_with_context(exports.statement_csv(period)), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename={name}"})


def _period(user_id: int) -> tuple[StatementForm, queries.Statement | None]:
    """The form from the query string, and the statement (None when a field is invalid)."""
    wallets = [row.asset_code for row in queries.user_balances(user_id) if row.kind == "wallet"]
    default = DEFAULT_ASSET if DEFAULT_ASSET in wallets else next(iter(wallets), None)
    form = StatementForm(request.args, wallets, default)
    if not form.validate():
        return form, None
    account = queries.wallet_account(user_id, form.asset.data)
    return form, queries.statement(account.id, form.since.data, form.until.data)


def _shared_args() -> dict:
    return {name: request.args[name] for name in FILTER_NAMES if request.args.get(name)}
