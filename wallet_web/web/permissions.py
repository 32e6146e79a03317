"""Who may do what on the dashboard: every page needs a login; actions need a role."""
from __future__ import annotations

import functools
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, redirect, request, url_for
from flask_login import current_user

from .rendering import is_htmx


def unauthorized() -> Response:
    """Flask-Login's handler: to the login page, coming back here afterwards."""
    target = url_for("auth.login", next=_return_path())
    if is_htmx():  # an XHR would follow a redirect and swap the login page into a fragment
        return Response(status=401, headers={"HX-Redirect": target})
    return redirect(target)


def _return_path() -> str | None:
    """Where to go after logging in: the page itself, or the page an htmx fragment belongs
    to; never a form's POST target (it could not be fetched with GET)."""
    if is_htmx():
        current = urlsplit(request.headers.get("HX-Current-URL", ""))
        return current.path + (f"?{current.query}" if current.query else "") or None
    return request.full_path.rstrip("?") if request.method == "GET" else None


def login_required_everywhere(blueprint: Blueprint) -> Blueprint:
    @blueprint.before_request
    def require_login():
        if not current_user.is_authenticated:
            return unauthorized()
        return None

    return blueprint


def can(role: str) -> bool:
    return current_user.is_authenticated and current_user.has_role(role)


def role_required(role: str):
    """View decorator: 403 unless the operator has `role` or a higher one."""
    def decorate(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            if not can(role):
                abort(403, description=f"This needs the {role} role.")
            return view(*args, **kwargs)
        return guarded
    return decorate
