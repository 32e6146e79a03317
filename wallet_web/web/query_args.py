"""Query arguments the dashboard reads without a form (q, cursor, asset, rows, next): one NUL
in any of them is the 400 page before a view runs, since PostgreSQL text cannot hold it. The
fields of a form read from the query string are left to the form, which says so inline."""
from __future__ import annotations

from flask import abort, current_app, request

from ..api.errors import is_api_path
from ..inputs import holds_nul


def read_by_a_form(*names: str):
    """View decorator: these query arguments are fields of the view's QueryForm."""
    def mark(view):
        view.form_query_args = frozenset(names)
        return view
    return mark


def refuse_nul() -> None:
    """App-wide before_request (the API refuses NUL itself, with 422)."""
    if is_api_path(request.path):
        return
    view = current_app.view_functions.get(request.endpoint)
    form_args = getattr(view, "form_query_args", frozenset())
    if any(holds_nul(name, value) for name, value in request.args.items(multi=True)
           if name not in form_args):
        abort(400, description="The address holds a NUL character, which no page accepts.")
