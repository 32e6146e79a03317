"""Admin: operators (list, create, their own page: role, approver right, daily limits, disable,
enable), API keys (create, shown once; revoke), and the operator controls' policies per asset
and reason codes. Every change is audited by the service that makes it."""
from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask_login import current_user

from .. import api_keys, approvals, controls, errors, operators, queries
from .admin_forms import NewOperatorForm, PolicyForm, ReasonCodeForm, RoleForm, limits_form
from .forms import ApiKeyForm
from .permissions import can, login_required_everywhere
from .rendering import is_htmx, render

bp = login_required_everywhere(Blueprint("admin", __name__, url_prefix="/admin"))


@bp.before_request
def admins_only():
    if not can("admin"):
        abort(403, description="This needs the admin role.")


@bp.route("")
def index():
    """Where the navigation's Admin link lands."""
    return redirect(url_for("admin.operators_page"))


def _show(form, error: errors.WalletError) -> None:
    """A service's refusal next to the field it names, else above the form."""
    field = getattr(form, error.details.get("field") or "", None)
    (field.errors if field is not None else form.form_errors).append(error.message)


# ---------------------------------------------------------------- operators


@bp.route("/operators")
def operators_page():
    return _operators(NewOperatorForm(formdata=None))


def _operators(form: NewOperatorForm, status: int = 200):
    return render("admin/operators.html", form=form, operators=operators.list_operators(),
                  status=status)


@bp.route("/operators", methods=["POST"])
def create_operator():
    form = NewOperatorForm()
    if form.validate_on_submit():
        try:
            created = operators.create_operator(form.username.data, form.password.data,
                                                form.role.data, form.can_approve.data)
            flash(f"Operator {created.username} ({created.role}) created.")
            return redirect(url_for("admin.operators_page"), 303)
        except errors.WalletError as error:
            _show(form, error)
    return _operators(form, 422)


@bp.route("/operators/<id:operator_id>/<any(disable, enable):change>", methods=["POST"])
def set_operator_active(operator_id: int, change: str):
    if operator_id == current_user.id:
        abort(403, description="You cannot disable your own account.")
    changed = operators.set_active(operator_id, change == "enable")
    flash(f"Operator {changed.username} {change}d.")
    return redirect(url_for("admin.operators_page"), 303)


# ---------------------------------------------------------------- one operator


@dataclass(frozen=True)
class Usage:
    """An operator's day in one asset: what they moved against the limit that applies."""

    asset: str
    used: int
    limit: int
    own: bool  # their own limit, not the asset policy's

    @property
    def left(self) -> int:
        return max(self.limit - self.used, 0)


@bp.route("/operators/<id:operator_id>")
def operator_page(operator_id: int):
    return _operator(operator_id)


def _operator(operator_id: int, *, role: RoleForm | None = None, limits=None,
              problem: str | None = None, status: int = 200):
    operator = operators.get_operator(operator_id)
    assets = queries.list_asset_codes()
    own = controls.operator_limits(operator_id)
    role = role or RoleForm(formdata=None, role=operator.role)
    limits = limits or limits_form(assets, formdata=None, data=own)
    policies = {policy.asset: policy for policy in controls.list_policies()}
    daily = controls.daily_limits(operator_id, list(policies.values()))
    usage = [Usage(asset, approvals.used_today(operator_id, asset), daily[asset], asset in own)
             for asset in assets]
    return render("admin/operator.html", operator=operator, role_form=role, limits_form=limits,
                  usage=usage, policies=policies, problem=problem,
                  approver_roles=operators.APPROVER_ROLES, status=status)


def _to_operator(operator_id: int, message: str):
    flash(message)
    return redirect(url_for("admin.operator_page", operator_id=operator_id), 303)


@bp.route("/operators/<id:operator_id>/role", methods=["POST"])
def set_operator_role(operator_id: int):
    form = RoleForm()
    if not form.validate_on_submit():
        return _operator(operator_id, role=form, status=422)
    if operator_id == current_user.id and form.role.data != "admin":
        abort(403, description="You cannot remove your own admin role.")
    changed = operators.set_role(operator_id, form.role.data)
    return _to_operator(operator_id, f"Operator {changed.username} has the {changed.role} role.")


@bp.route("/operators/<id:operator_id>/approver/<any(grant, revoke):change>", methods=["POST"])
def set_operator_approver(operator_id: int, change: str):
    try:
        changed = operators.set_approver(operator_id, change == "grant")
    except errors.InvalidOperator as error:  # a role that cannot move value cannot approve
        return _operator(operator_id, problem=error.message, status=422)
    held = "holds" if changed.can_approve else "no longer holds"
    return _to_operator(operator_id, f"Operator {changed.username} {held} the approver right.")


@bp.route("/operators/<id:operator_id>/limits", methods=["POST"])
def set_operator_limits(operator_id: int):
    operator = operators.get_operator(operator_id)
    assets = queries.list_asset_codes()
    form = limits_form(assets)
    if form.validate_on_submit():
        try:
            changed = _save_limits(operator_id, form, assets)
            return _to_operator(operator_id, f"Daily limits of {operator.username}: "
                                f"{changed or 'no'} change{'' if changed == 1 else 's'}.")
        except errors.WalletError as error:
            _show(form, error)
    return _operator(operator_id, limits=form, status=422)


def _save_limits(operator_id: int, form, assets: list[str]) -> int:
    """Only the assets whose limit changed, so each change is audited once. The form checked
    every value first: one refused value leaves every limit as it was."""
    own = controls.operator_limits(operator_id)
    changed = [asset for asset in assets if form[asset].data != own.get(asset)]
    for asset in changed:
        controls.set_operator_limit(operator_id, asset, form[asset].data)
    return len(changed)


# ---------------------------------------------------------------- policies and reason codes


@bp.route("/policies")
def policies_page():
    return _policies()


def _policy_form(policy: controls.AssetPolicy) -> PolicyForm:
    return PolicyForm(policy.asset, formdata=None, approval_threshold=policy.approval_threshold,
                      operator_daily_limit=policy.operator_daily_limit)


def _policies(bound: PolicyForm | None = None, reason_form: ReasonCodeForm | None = None,
              status: int = 200):
    policies = controls.list_policies()
    forms = {policy.asset: _policy_form(policy) for policy in policies}
    if bound is not None:
        forms[bound.asset] = bound
    return render("admin/policies.html", policies=policies, forms=forms,
                  reason_form=reason_form or ReasonCodeForm(formdata=None),
                  reason_codes=controls.list_reason_codes(active_only=False), status=status)


@bp.route("/policies", methods=["POST"])
def set_policy():
    asset = request.form.get("asset", "")
    if asset not in queries.list_asset_codes():
        abort(404, description=f"No asset {asset!r}.")
    form = PolicyForm(asset)
    if form.validate_on_submit():
        try:
            changed = controls.set_policy(asset, form.approval_threshold.data,
                                          form.operator_daily_limit.data)
            return _policy_saved(changed)
        except errors.InvalidPolicy as error:
            _show(form, error)
    if is_htmx():
        return render("admin/_policy.html", policy=controls.policy_for(asset), form=form,
                      status=422)
    return _policies(bound=form, status=422)


def _policy_saved(policy: controls.AssetPolicy):
    if is_htmx():
        return render("admin/_policy.html", policy=policy, form=_policy_form(policy), saved=True)
    flash(f"Policy of {policy.asset} saved.")
    return redirect(url_for("admin.policies_page"), 303)


@bp.route("/reason-codes", methods=["POST"])
def add_reason_code():
    form = ReasonCodeForm()
    if form.validate_on_submit():
        try:
            added = controls.add_reason_code(form.code.data, form.title.data)
            flash(f"Reason code {added.code} added.")
            return redirect(url_for("admin.policies_page"), 303)
        except errors.InvalidReasonCode as error:
            _show(form, error)
    return _policies(reason_form=form, status=422)


@bp.route("/reason-codes/<any(retire, restore):change>", methods=["POST"])
def set_reason_code_active(change: str):
    changed = controls.set_reason_code_active(request.form.get("code", ""), change == "restore")
    flash(f"Reason code {changed.code} {change}d.")
    return redirect(url_for("admin.policies_page"), 303)


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
