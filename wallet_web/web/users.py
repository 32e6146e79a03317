"""Account lookup, the user page (balances, sparkline, history) and the movement forms."""
from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, current_app, flash, redirect, request, url_for
from flask_login import current_user

from .. import errors, ledger, queries
from .charts import sparkline
from .forms import MOVEMENT_KINDS, MOVEMENT_TITLES, MovementForm, new_reference
from .permissions import can, login_required_everywhere, role_required
from .rendering import is_htmx, render

bp = login_required_everywhere(Blueprint("users", __name__, url_prefix="/users"))
HISTORY_PAGE = 20
DEFAULT_ASSET = "GOLD"  # the forms and the history open on it when the user has that wallet
FLOWS = {"topup": ledger.topup, "bonus": ledger.bonus, "spend": ledger.spend}
# What the history link carries to the page: only these, since url_for would also read
# arguments such as _external, _scheme or user_id from a query string passed through.
HISTORY_ARGS = ("asset", "cursor")


@dataclass(frozen=True)
class Done:
    """What a successful (or replayed) movement shows."""

    kind: str
    asset: str
    amount: int
    transaction_id: int
    balance: int | None
    replayed: bool

    @property
    def message(self) -> str:
        """The same confirmation for a replay (the receipt is the original's), and a note."""
        text = (f"{MOVEMENT_TITLES[self.kind]} of {self.amount:,} {self.asset} recorded as "
                f"transaction #{self.transaction_id}. New {self.asset} balance: {self.balance:,}.")
        return text + (" This form was sent more than once; it was recorded once."
                       if self.replayed else "")


# ---------------------------------------------------------------- lookup


@bp.route("")
def search():
    term = request.args.get("q", "").strip()
    transaction = queries.find_transaction_by_reference(term) if term else None
    if transaction is not None and not is_htmx():
        return redirect(url_for("ledger.transaction", tx_id=transaction.id))
    found = queries.find_users(term, limit=10)
    return render("users/search.html", "users/_results.html",
                  q=term, users=found, transaction=transaction)


# ---------------------------------------------------------------- user page


@bp.route("/<id:user_id>")
def user(user_id: int):
    return render("users/user.html", **_page_context(user_id, _movement_forms(None)))


@bp.route("/<id:user_id>/history")
def history(user_id: int):
    if not is_htmx():
        kept = {name: request.args[name] for name in HISTORY_ARGS if request.args.get(name)}
        return redirect(url_for("users.user", user_id=user_id, **kept))
    accounts = queries.user_balances(user_id)
    context = _history_context(accounts, request.args.get("asset"), request.args.get("cursor"))
    partial = "users/_history_rows.html" if request.args.get("rows") else "users/_history.html"
    return render(partial, user=queries.get_user(user_id), **context)


def _page_context(user_id: int, forms: dict, asset: str | None = None) -> dict:
    found = queries.get_user(user_id)
    accounts = queries.user_balances(user_id)
    asset = asset or request.args.get("asset")
    history = _history_context(accounts, asset, request.args.get("cursor"))
    return {"user": found, "balances": _with_sparklines(accounts), "forms": forms, **history}


def _with_sparklines(accounts: list[queries.AccountBalance]) -> list[dict]:
    return [{"account": account,
             "sparkline": sparkline([balance for _, balance in queries.balance_series(account.id)])}
            for account in accounts]


def _history_context(accounts: list[queries.AccountBalance], asset: str | None,
                     cursor: str | None) -> dict:
    wallets = {a.asset_code: a for a in accounts if a.kind == "wallet"}
    if asset not in wallets:
        asset = DEFAULT_ASSET if DEFAULT_ASSET in wallets else next(iter(wallets), None)
    page = queries.account_postings(wallets[asset].id, cursor, HISTORY_PAGE) if asset else None
    return {"history_asset": asset, "wallets": wallets, "history": page, "cursor": cursor}


def _movement_forms(bound: MovementForm | None, asset: str | None = None) -> dict:
    if not can("operator"):
        return {}
    assets = queries.list_asset_codes()
    forms = {kind: MovementForm(kind, assets, formdata=None, data={"asset": asset or DEFAULT_ASSET})
             for kind in MOVEMENT_KINDS}
    if bound is not None:
        forms[bound.kind] = bound
    return forms


# ---------------------------------------------------------------- movements


@bp.route("/<id:user_id>/<any(topup, bonus, spend):kind>", methods=["POST"])
@role_required("operator")
def movement(user_id: int, kind: str):
    queries.get_user(user_id)
    form = MovementForm(kind, queries.list_asset_codes())
    done = _post(form, user_id) if form.validate_on_submit() else None
    if done is None:
        return _failed(user_id, form)
    return _succeeded(user_id, form, done)


def _post(form: MovementForm, user_id: int) -> Done | None:
    """Posts the movement through the ledger; a refusal becomes an error on the form."""
    limit = current_app.config["OPERATOR_SPEND_LIMIT"]
    if not can("admin") and form.amount.data > limit:
        form.amount.errors.append(f"Above your limit of {limit:,} per transaction: ask an admin.")
        return None
    actor = ledger.Actor(label=current_user.label, operator_id=current_user.id)
    try:
        receipt = FLOWS[form.kind](user_id, form.asset.data, form.amount.data,
                                   form.reference_id.data, description=form.reason.data.strip(),
                                   actor=actor)
    except errors.LedgerError as error:
        _explain(form, error)
        return None
    wallet = next(leg.balance_after for leg in receipt.postings if leg.balance_after is not None)
    return Done(form.kind, form.asset.data, form.amount.data, receipt.id, wallet, receipt.replayed)


def _explain(form: MovementForm, error: errors.LedgerError) -> None:
    if isinstance(error, errors.InsufficientFunds):
        form.amount.errors.append(
            f"Not enough {form.asset.data}: the wallet holds {error.details['available']:,}.")
    elif isinstance(error, errors.AmountTooLarge):
        form.amount.errors.append(f"Above the {form.asset.data} maximum of "
                                  f"{error.details['max_amount']:,} per movement.")
    elif isinstance(error, errors.BalanceLimit):
        form.amount.errors.append(f"The wallet would hold more than the {form.asset.data} "
                                  f"maximum of {error.details['max_balance']:,}.")
    elif isinstance(error, errors.InvalidAmount):
        form.amount.errors.append(error.message)
    elif isinstance(error, errors.UnknownAsset):
        form.asset.errors.append(error.message)
    elif isinstance(error, errors.AccountFrozen):
        form.form_errors.append(f"This {form.asset.data} wallet is frozen: nothing was moved.")
    elif isinstance(error, (errors.IdempotencyConflict, errors.ReferenceTaken)):
        form.reference_id.data = None  # a fresh reference for the corrected values
        form.form_errors.append("This form was already sent with other values; nothing moved. "
                                "Check the values and send again.")
    else:
        form.form_errors.append(error.message)


def _failed(user_id: int, form: MovementForm):
    if form.reference_id.data is None or form.reference_id.errors:  # refused: a fresh one
        form.reference_id.data = new_reference()
    if is_htmx():
        return render("users/_movement_form.html", user=queries.get_user(user_id), form=form,
                      status=422)
    return render("users/user.html", status=422,
                  **_page_context(user_id, _movement_forms(form), form.asset.data))


def _succeeded(user_id: int, form: MovementForm, done: Done):
    if not is_htmx():
        flash(done.message)
        return redirect(url_for("users.user", user_id=user_id, asset=done.asset), 303)
    fresh = _movement_forms(None, done.asset)[form.kind]
    return render("users/_movement_done.html", form=fresh, done=done,
                  **_page_context(user_id, {}, done.asset))
