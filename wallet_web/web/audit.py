"""The audit trail of people (admins and auditors): filters, keyset pages, CSV."""
from __future__ import annotations

from flask import Blueprint

from .permissions import login_required_everywhere, role_required
from .rendering import render

bp = login_required_everywhere(Blueprint("audit", __name__, url_prefix="/audit"))


@bp.route("")
@role_required("auditor")
def index():
    return render("audit/index.html")
