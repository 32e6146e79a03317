"""The audit trail of people (auditors and admins): filters in the URL, keyset pages with
"load more", and the filtered trail as CSV (the download is itself recorded)."""
from __future__ import annotations

import json
from dataclasses import asdict

from flask import Blueprint, Response, abort, redirect, request, stream_with_context, url_for

from .. import exports, operators, queries
from .admin_forms import AuditFilterForm
from .permissions import can, login_required_everywhere
from .query_args import read_by_a_form
from .rendering import render

bp = login_required_everywhere(Blueprint("audit", __name__, url_prefix="/audit"))
AUDIT_PAGE = 50
FILTER_NAMES = ("action", "outcome", "actor", "operator_id", "object_type", "object_id",
                "since", "until")


@bp.before_request
def auditors_only():
    if not can("auditor"):
        abort(403, description="This needs the auditor role.")


@bp.route("")
@read_by_a_form(*FILTER_NAMES)
def index():
    form, filters = _filters()
    page = None
    if filters is not None:
        page = queries.list_audit_events(filters, request.args.get("cursor"), AUDIT_PAGE)
    partial = "audit/_rows.html" if request.args.get("rows") else "audit/_browser.html"
    return render("audit/index.html", partial, form=form, page=page, shared=_shared_args(),
                  details=details_text, status=200 if filters is not None else 422)


@bp.route("/events.csv")
@read_by_a_form(*FILTER_NAMES)
def export_csv():
    _, filters = _filters()
    if filters is None:
        return redirect(url_for("audit.index", **_shared_args()))
    exports.record_download("audit_events.csv", **asdict(filters))
    rows = stream_with_context(exports.audit_events_csv(filters))
    return Response(rows, mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=audit_events.csv"})


def _filters() -> tuple[AuditFilterForm, queries.AuditFilters | None]:
    """The filter form from the query string, and the filters (None when one is invalid)."""
    form = AuditFilterForm(request.args, operators.list_operators())
    if not form.validate():
        return form, None
    return form, queries.AuditFilters(
        action=form.action.data or None, outcome=form.outcome.data or None,
        actor=form.actor.data or None, operator_id=form.chosen_operator(),
        object_type=form.object_type.data or None, object_id=form.object_id.data or None,
        since=form.since.data, until=form.until.data)


def _shared_args() -> dict:
    """The filters as they are in the URL (for the CSV link and "load more")."""
    return {name: request.args[name] for name in FILTER_NAMES if request.args.get(name)}


def details_text(details: dict | None) -> list[tuple[str, str]]:
    """An event's details as (name, text) pairs; a change [before, after] reads before → after.
    The template escapes them."""
    def text(value) -> str:
        if isinstance(value, list) and len(value) == 2:
            return f"{text(value[0])} → {text(value[1])}"
        return value if isinstance(value, str) else json.dumps(value)
    return [(name, text(value)) for name, value in sorted((details or {}).items())]
