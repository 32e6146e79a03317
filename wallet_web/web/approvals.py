"""Approvals: the four-eyes queue (pending requests, approve / reject) and each request's page."""
from __future__ import annotations

from flask import Blueprint

from .. import queries
from .permissions import login_required_everywhere, role_required
from .rendering import render

bp = login_required_everywhere(Blueprint("approvals", __name__, url_prefix="/approvals"))


@bp.route("")
@role_required("operator")
def index():
    return render("approvals/index.html", page=queries.list_requests("pending"))
