"""Admin: operators (list, create, disable, enable) and API keys (create, shown once; revoke)."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, url_for
from flask_login import current_user

from .. import api_keys, errors, operators
from .forms import ApiKeyForm, OperatorForm
from .permissions import can, login_required_everywhere
from .rendering import render

bp = login_required_everywhere(Blueprint("admin", __name__, url_prefix="/admin"))


@bp.before_request
def admins_only():
    if not can("admin"):
        abort(403, description="This needs the admin role.")


@bp.route("")
def index():
    """Where the navigation's Admin link lands."""
    return redirect(url_for("admin.operators_page"))


# ---------------------------------------------------------------- operators


@bp.route("/operators")
def operators_page():
    return _operators(OperatorForm(formdata=None))


def _operators(form: OperatorForm, status: int = 200):
    return render("admin/operators.html", form=form, operators=operators.list_operators(),
                  status=status)


@bp.route("/operators", methods=["POST"])
def create_operator():
    form = OperatorForm()
    if form.validate_on_submit():
        try:
            created = operators.create_operator(
                form.username.data, form.password.data, form.role.data)
            flash(f"Operator {created.username} ({created.role}) created.")
            return redirect(url_for("admin.operators_page"), 303)
        except errors.WalletError as error:
            _show(form, error)
    return _operators(form, 422)


def _show(form: OperatorForm, error: errors.WalletError) -> None:
    field = getattr(form, error.details.get("field") or "", None)
    (field.errors if field is not None else form.form_errors).append(error.message)


@bp.route("/operators/<id:operator_id>/<any(disable, enable):change>", methods=["POST"])
def set_operator_active(operator_id: int, change: str):
    if operator_id == current_user.id:
        abort(403, description="You cannot disable your own account.")
    changed = operators.set_active(operator_id, change == "enable")
    flash(f"Operator {changed.username} {change}d.")
    return redirect(url_for("admin.operators_page"), 303)


# ---------------------------------------------------------------- API keys


@bp.route("/api-keys")
def keys_page():
    return _keys(ApiKeyForm(formdata=None))


def _keys(form: ApiKeyForm, status: int = 200, created: tuple | None = None):
    body, code = render("admin/api_keys.html", form=form, keys=api_keys.list_keys(),
                        created=created, status=status)
    # The page may hold a key's only display: keep it out of every cache.
    return body, code, {"Cache-Control": "no-store"}


@bp.route("/api-keys", methods=["POST"])
def create_key():
    form = ApiKeyForm()
    if not form.validate_on_submit():
        return _keys(form, 422)
    try:
        key, token = api_keys.create_key(form.name.data, form.scope.data)
    except errors.WalletError as error:
        form.name.errors.append(error.message)
        return _keys(form, 422)
    return _keys(ApiKeyForm(formdata=None), 201, created=(key, token))


@bp.route("/api-keys/<id:key_id>/revoke", methods=["POST"])
def revoke_key(key_id: int):
    revoked = api_keys.revoke_key(key_id)
    flash(f"API key {revoked.name} ({revoked.prefix}…) revoked.")
    return redirect(url_for("admin.keys_page"), 303)
