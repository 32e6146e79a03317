"""Bulk grants: upload a file, check its preview, submit it under the operator controls,
follow its progress and read (or download) each row's outcome. Posting runs on the server
(bulk.py), so closing the tab changes nothing."""
from __future__ import annotations

import csv
import io

from flask import Blueprint, Response, abort, flash, redirect, request, stream_with_context, url_for
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge

from .. import bulk, bulk_csv, controls, errors, exports
from ..inputs import allow_large_body, parse_integer
from .forms import ControlledForm, DecisionForm, UploadForm
from .errors import error_page
from .permissions import can, login_required_everywhere
from .rendering import render

bp = login_required_everywhere(Blueprint("bulk", __name__, url_prefix="/bulk"))
allow_large_body("/bulk", "MAX_UPLOAD_BODY")
DECISIONS = ("approve", "reject")
ROWS_PAGE = 200
MAX_LINE = 2**31 - 1  # a line number is an INTEGER column
TOO_LARGE = f"The file is larger than {bulk_csv.MAX_BYTES // (1024 * 1024)} MB: split it in two."
RESULT_COLUMNS = ("line", "user", "user_id", "asset", "amount", "reason", "outcome",
                  "transaction_id", "error", "message")


@bp.before_request
def operators_only():
    if not can("operator"):
        abort(403, description="This needs the operator role.")


@bp.errorhandler(RequestEntityTooLarge)
def too_large(error):
    """Raised while CSRF protection reads the form, before this blueprint's own checks: the
    upload page with its message for an operator, the plain error page for anyone else."""
    if not can("operator"):
        return error_page(error)
    return _index(UploadForm(formdata=None), upload_error=TOO_LARGE, status=413)


@bp.route("")
def index():
    return _index(UploadForm(formdata=None))


def _index(form: UploadForm, upload_error: str | None = None, preview=None, status: int = 200):
    return render("bulk/index.html", form=form, upload_error=upload_error, preview=preview,
                  grants=bulk.recent(), status=status)


@bp.route("", methods=["POST"])
def upload():
    form = UploadForm()
    file = request.files.get("file")
    if not form.validate_on_submit() or file is None or not file.filename:
        return _index(form, upload_error=None if file and file.filename else "Choose a CSV file.",
                      status=422)
    try:
        found = bulk.preview(file.read(bulk_csv.MAX_BYTES + 1), file.filename, form.kind.data,
                             current_user)
    except errors.InvalidUpload as error:
        return _index(form, upload_error=error.message, status=422)
    if found.grant_id is None:
        return _index(form, preview=found, status=422)
    return redirect(url_for("bulk.grant_page", grant_id=found.grant_id), 303)


@bp.route("/<id:grant_id>")
def grant_page(grant_id: int):
    bulk.expire_due()
    return _grant_page(grant_id)


def _grant_page(grant_id: int, submit_form: ControlledForm | None = None,
                decision: DecisionForm | None = None, refusal: str | None = None,
                status: int = 200):
    grant = bulk.get(grant_id)
    decisions = {name: DecisionForm(name, formdata=None) for name in DECISIONS}
    if decision is not None:
        decisions[decision.decision] = decision
    return render(
        "bulk/grant.html", grant=grant, totals=bulk.totals_of(grant_id),
        thresholds={t.asset_code: controls.policy_for(t.asset_code).approval_threshold
                    for t in bulk.totals_of(grant_id)},
        largest=bulk.largest(grant_id), earlier=[g for g in bulk.earlier_grants(grant.file_sha256)
                                                 if g.id != grant.id],
        submit_form=submit_form or ControlledForm(controls.list_reason_codes(), formdata=None),
        decisions=decisions, refusal=refusal, rows=_rows(grant), status=status)


def _rows(grant) -> dict:
    if grant.status not in ("posting", "done"):
        return {}
    refused = request.args.get("refused") == "1"
    after = parse_integer(request.args.get("after", "")) or 0
    after = after if 0 <= after <= MAX_LINE else 0
    items = bulk.outcomes(grant.id, refused_only=refused, after=after, limit=ROWS_PAGE).all()
    more = items[-1].line if len(items) == ROWS_PAGE else None
    return {"items": items, "refused_only": refused, "more": more}


@bp.route("/<id:grant_id>/submit", methods=["POST"])
def submit(grant_id: int):
    form = ControlledForm(controls.list_reason_codes())
    if not form.validate_on_submit():
        return _grant_page(grant_id, submit_form=form, status=422)
    try:
        status = bulk.submit(grant_id, current_user, form.reason_code.data, form.ticket.data,
                             form.reason.data)
    except errors.WalletError as error:
        if form.explain(error):
            return _grant_page(grant_id, submit_form=form, status=422)
        return _grant_page(grant_id, submit_form=form, refusal=_sentence(error.message),
                           status=error.status)
    flash(f"Bulk grant #{grant_id} sent for approval: another operator must approve it."
          if status == "pending" else f"Bulk grant #{grant_id} is being posted.")
    return redirect(url_for("bulk.grant_page", grant_id=grant_id), 303)


@bp.route(f"/<id:grant_id>/<any({', '.join(DECISIONS)}):decision>", methods=["POST"])
def decide(grant_id: int, decision: str):
    if not current_user.can_approve:
        abort(403, description="This needs the approver right.")
    form = DecisionForm(decision)
    if not form.validate_on_submit():
        return _grant_page(grant_id, decision=form, status=422)
    try:
        (bulk.approve if decision == "approve" else bulk.reject)(
            grant_id, current_user, form.reason.data)
    except errors.WalletError as error:
        return _grant_page(grant_id, decision=form, refusal=_sentence(error.message),
                           status=error.status)
    flash(f"Bulk grant #{grant_id} approved: it is being posted." if decision == "approve"
          else f"Bulk grant #{grant_id} rejected: nothing moved.")
    return redirect(url_for("bulk.grant_page", grant_id=grant_id), 303)


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


@bp.route("/<id:grant_id>/progress")
def progress(grant_id: int):
    """The progress fragment htmx polls; once the grant is done the page reloads whole."""
    grant = bulk.get(grant_id)
    headers = {"HX-Refresh": "true"} if grant.status != "posting" else {}
    return render("bulk/_progress.html", "bulk/_progress.html", grant=grant)[0], 200, headers


@bp.route("/<id:grant_id>/result.csv")
def result_csv(grant_id: int):
    grant = bulk.get(grant_id)
    exports.record_download("bulk_grant.csv", grant_id=grant_id)
    name = f"bulk-grant-{grant.id}-result.csv"
    return Response(stream_with_context(_result_lines(grant.id)), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename={name}"})


def _result_lines(grant_id: int):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(RESULT_COLUMNS)
    for row in bulk.outcomes(grant_id):
        writer.writerow([row.line, exports.neutralise(row.user_ref), row.user_id, row.asset_code,
                         row.amount, exports.neutralise(row.reason), row.status or "not posted",
                         row.transaction_id or "", row.error_code or "",
                         exports.neutralise(row.message or "")])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
