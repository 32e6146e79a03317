"""Login and logout. The session cookie (HttpOnly, SameSite=Lax, Secure in production) holds
the token of a session row, which logout ends (wallet_web/operator_sessions.py)."""
from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

from flask import Blueprint, current_app, flash, redirect, request, session, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError

from .. import audit_events, operator_sessions, operators
from ..audit_events import Who
from ..extensions import db
from .errors import error_page
from .forms import LoginForm
from .rendering import render

bp = Blueprint("auth", __name__)
FAILED = "Unknown username or wrong password."
THROTTLED = "Too many failed attempts: login is locked here for a while. Try again later."
COOKIE_NOT_KEPT = ("Your browser did not keep the session cookie: this dashboard needs HTTPS, "
                   "or SESSION_COOKIE_SECURE=0 for plain HTTP.")
PRINTABLE_ASCII = re.compile(r"[!-~]+")  # no space, no control character, nothing beyond ASCII


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("overview.index"))
    form = LoginForm()
    if not form.validate_on_submit():
        return render("auth/login.html", form=form, status=422 if form.is_submitted() else 200)
    try:
        operator = operators.authenticate(form.username.data, form.password.data,
                                          request.remote_addr or "")
    except operators.LockedOut:
        audit_events.record_refusal("login.locked_out", who=_typed(form.username.data))
        return _refused(form, THROTTLED, 429)
    if operator is None:
        audit_events.record_refusal("login.failed", who=_typed(form.username.data))
        return _refused(form, FAILED, 401)
    session.clear()  # a fresh session: nothing from before the login survives it
    signed_in = operators.open_session(operator)
    login_user(signed_in)
    audit_events.record("login.succeeded", who=Who(signed_in.label, operator_id=operator.id))
    db.session.commit()
    return redirect(_safe_next(request.args.get("next")))


def _typed(username: str) -> Who:
    """Who a failed login names: a known operator, or nobody (a name typed by mistake may be
    a password, so an unknown one is not stored)."""
    known = operators.find_operator(username)
    return Who(f"operator:{known.username}", operator_id=known.id) if known else Who("unknown")


def _refused(form: LoginForm, message: str, status: int):
    form.form_errors.append(message)
    return render("auth/login.html", form=form, status=status)


@bp.errorhandler(CSRFError)
def csrf_refused(error: CSRFError):
    """A login posted without any session cookie: the browser dropped it (a Secure cookie over
    plain HTTP), which the generic "form expired" page would misdescribe."""
    cookie = current_app.config["SESSION_COOKIE_NAME"]
    if request.endpoint != "auth.login" or cookie in request.cookies:
        return error_page(error)
    return _refused(LoginForm(), COOKIE_NOT_KEPT, 400)


def _safe_next(target: str | None) -> str:
    """A path on this site, also in every percent-decoding a proxy or browser might apply;
    anything else leads to the overview."""
    target = target or ""
    if PRINTABLE_ASCII.fullmatch(target) and all(map(_is_local_path, _decodings(target))):
        return target
    return url_for("overview.index")


def _decodings(target: str) -> list[str]:
    forms = [target]
    while unquote(forms[-1]) != forms[-1]:  # ends: each decoding that changes it shortens it
        forms.append(unquote(forms[-1]))
    return forms


def _is_local_path(form: str) -> bool:
    # Browsers drop tabs and newlines inside a URL ("/\t/x" is "//x") and read "\" as "/";
    # URL parsers fold look-alikes such as a fullwidth slash (NFKC). So every decoded form must
    # stay printable and start with exactly one "/".
    visible = unicodedata.normalize("NFKC", form)
    compact = visible.replace(" ", "")
    return (visible.isprintable() and compact.startswith("/")
            and not compact.startswith("//") and "\\" not in compact)


@bp.route("/logout", methods=["POST"])
def logout():
    if current_user.is_authenticated:  # CSRFProtect has already checked the token of this POST
        audit_events.record("logout")
        operator_sessions.end(current_user.session_token, "logout")  # commits both
    logout_user()
    session.clear()
    flash("You are logged out.")
    return redirect(url_for("auth.login"))
