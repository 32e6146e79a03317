"""Login and logout. Sessions are Flask-Login's signed cookie (HttpOnly, SameSite=Lax,
Secure behind TLS via SESSION_COOKIE_SECURE)."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, request, session, url_for
from flask_login import current_user, login_user, logout_user

from .. import operators
from .forms import LoginForm
from .rendering import render

bp = Blueprint("auth", __name__)
FAILED = "Unknown username or wrong password."


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("overview.index"))
    form = LoginForm()
    if not form.validate_on_submit():
        return render("auth/login.html", form=form, status=422 if form.is_submitted() else 200)
    try:
        operator = operators.authenticate(form.username.data, form.password.data)
    except operators.LockedOut:
        form.form_errors.append("Too many failed attempts: this account is locked for a while.")
        return render("auth/login.html", form=form, status=429)
    if operator is None:
        form.form_errors.append(FAILED)
        return render("auth/login.html", form=form, status=401)
    session.clear()  # a fresh session: nothing from before the login survives it
    login_user(operators.signed_in(operator))
    return redirect(_safe_next(request.args.get("next")))


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an absolute or scheme-relative URL."""
    parts = urlsplit(target or "")
    if not target or parts.scheme or parts.netloc or not target.startswith("/") or "\\" in target:
        return url_for("overview.index")
    return target


@bp.route("/logout", methods=["POST"])
def logout():
    logout_user()  # CSRFProtect has already checked the token of this POST
    session.clear()
    flash("You are logged out.")
    return redirect(url_for("auth.login"))
