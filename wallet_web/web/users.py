"""Users: the list and the as-you-type lookup, a new user, the user page (balances available
and held, sparkline, open holds, history, status), the movement and transfer forms and the
release of a hold (sent through the operator controls: posted at once, or sent for approval),
and freeze / unfreeze / close."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from datetime import date, datetime, time, timedelta, timezone

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask_login import current_user

from .. import accounts, approvals, controls, errors, kinds, ledger, queries
from ..inputs import parse_integer
from ..models import Transaction, User, utcnow
from . import approvals as approvals_pages
from .amounts import format_amount
from .charts import sparkline
from .forms import (
    MovementForm, NewUserForm, ReleaseForm, StatusForm, TransferForm, UserFilterForm,
    new_reference, parse_amount_text,
)
from .ledger_browser import owner_names
from .permissions import can, login_required_everywhere, role_required
from .rendering import is_htmx, render

bp = login_required_everywhere(Blueprint("users", __name__, url_prefix="/users"))
HISTORY_PAGE = 20
DEFAULT_ASSET = "GOLD"  # the forms and the history open on it when the user has that wallet
ALL_ASSETS = "all"  # the history's view of every wallet at once (its `asset` argument)
# What the history link carries to the page: only these, since url_for would also read
# arguments such as _external, _scheme or user_id from a query string passed through.
HISTORY_ARGS = ("asset", "cursor")
USERS_PAGE = 25
HOLDS_SHOWN = 50  # the newest open holds on the user page
LIST_ARGS = ("q", "status")  # what "load more" and "back to the newest" keep
STATUS_ROLES = {"freeze": "operator", "unfreeze": "operator", "close": "admin"}
STATUS_DONE = {
    "freeze": "frozen: debits are refused until it is unfrozen; credits still land.",
    "unfreeze": "unfrozen: its wallets accept debits again.",
    "close": "closed: no movement is possible any more.",
}


@dataclass(frozen=True)
class Done:
    """What an accepted (or replayed) movement shows: posted, or sent for approval."""

    kind: str
    asset: str
    amount: int
    request_id: int
    replayed: bool
    transaction_id: int | None = None  # None: waiting for another operator's approval
    balance: int | None = None
    recipient: str | None = None  # a transfer's receiving username

    @property
    def pending(self) -> bool:
        return self.transaction_id is None

    @property
    def what(self) -> str:
        to = f" to {self.recipient}" if self.recipient else ""
        return (f"{kinds.title_of(self.kind)} of {format_amount(self.amount, self.asset)} "
                f"{self.asset}{to}")

    @property
    def message(self) -> str:
        """The same confirmation for a replay (the receipt is the original's), and a note."""
        if self.pending:
            text = f"Sent for approval (request #{self.request_id}). {self.waiting}"
        else:
            text = (f"{self.what} recorded as transaction #{self.transaction_id}. "
                    f"New {self.asset} balance: {format_amount(self.balance, self.asset)}.")
        return text + (" This form was sent more than once; it was recorded once."
                       if self.replayed else "")

    @property
    def waiting(self) -> str:
        return (f"{self.what} waits for another operator with the approver right; "
                "nothing has moved yet.")


@dataclass(frozen=True)
class Released:
    """What an accepted release of a hold shows: posted, or sent for approval."""

    hold_id: int
    asset: str
    amount: int
    request_id: int
    replayed: bool
    transaction_id: int | None = None  # None: waiting for another operator's approval

    @classmethod
    def of(cls, hold: queries.HoldRow, outcome: approvals.Outcome) -> "Released":
        receipt = outcome.receipt
        return cls(hold.id, hold.asset_code, hold.amount, outcome.request_id, outcome.replayed,
                   receipt.id if receipt else None)

    @property
    def pending(self) -> bool:
        return self.transaction_id is None

    @property
    def message(self) -> str:
        if self.pending:
            text = f"Sent for approval (request #{self.request_id}). {self.waiting}"
        else:
            text = (f"Released hold #{self.hold_id}: {format_amount(self.amount, self.asset)} "
                    f"{self.asset} back to the wallet.")
        return text + (" This form was sent more than once; it was recorded once."
                       if self.replayed else "")

    @property
    def waiting(self) -> str:
        return (f"The release of hold #{self.hold_id} ({format_amount(self.amount, self.asset)} "
                f"{self.asset}) waits for another operator with the approver right; nothing "
                "has moved yet.")


NOT_OPEN = {
    "captured": "was captured: its amount went to revenue, so it cannot be released",
    "voided": "was already released: its amount is back in the wallet",
    "expired": "has expired: its amount is available in the wallet again",
}


@bp.app_template_filter("age")
def age(since: datetime) -> str:
    """How long ago, roughly: "40 s", "3 min", "2 h 5 min", "1 d 4 h"."""
    return _duration(utcnow() - since)


@bp.app_template_filter("time_left")
def time_left(until: datetime) -> str:
    return _duration(until - utcnow())


def _duration(span) -> str:
    seconds = max(int(span.total_seconds()), 0)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


# ---------------------------------------------------------------- lookup


LOOKUP_USERS = 8
LOOKUP_TRANSACTIONS = 8
# "12.50 2026-11-20", "12.50 on 2026-11-20" or "2026-11-20 12.50": an amount on a UTC day.
AMOUNT_ON_DAY = re.compile(r"(?P<amount>[\d,.]+)\s+(?:on\s+)?(?P<day>\d{4}-\d{2}-\d{2})"
                           r"|(?P<day_first>\d{4}-\d{2}-\d{2})\s+(?P<amount_last>[\d,.]+)",
                           re.IGNORECASE)


@bp.route("")
def search():
    """The users list; for htmx, the as-you-type lookup (or the list's next rows)."""
    term = request.args.get("q", "").strip()
    transaction = queries.find_transaction_by_reference(term) if term else None
    if transaction is not None and not is_htmx():
        return redirect(url_for("ledger.transaction", tx_id=transaction.id))
    if is_htmx() and not request.args.get("rows"):
        return _lookup(term, transaction)
    form = UserFilterForm(request.args)
    page = None
    if form.validate():
        page = queries.list_users(form.q.data, form.status.data or None,
                                  request.args.get("cursor"), USERS_PAGE)
    shared = {name: request.args[name] for name in LIST_ARGS if request.args.get(name)}
    return render("users/search.html", "users/_list_rows.html", form=form, page=page,
                  shared=shared, status=200 if page else 422)


def _lookup(term: str, exact: Transaction | None):
    """The transaction with exactly this reference, users by id, name or email, then
    transactions by a reference's or ticket's start, words, or an amount on a day."""
    filters = _lookup_filters(term)
    found = []
    if filters is not None and filters.amount is not None:
        found = queries.newest_moving(filters.amount, filters.since, filters.until,
                                      LOOKUP_TRANSACTIONS)
    elif filters is not None:
        found = queries.list_transactions(filters, limit=LOOKUP_TRANSACTIONS).items
    others = [tx for tx in found if exact is None or tx.id != exact.id]
    return render("users/_results.html", q=term, transaction=exact, transactions=others,
                  users=queries.find_users(term, limit=LOOKUP_USERS),
                  ledger_args=_ledger_args(filters),
                  owners=owner_names(others + ([exact] if exact else [])))


def _lookup_filters(term: str) -> queries.TransactionFilters | None:
    """What the lookup finds transactions by: an amount on a UTC day, else the text."""
    if not term:
        return None
    match = AMOUNT_ON_DAY.fullmatch(term)
    amount = parse_amount_text(match["amount"] or match["amount_last"]) if match else None
    day = _day(match["day"] or match["day_first"]) if match else None
    if amount is None or day is None:
        return queries.TransactionFilters(text=term)
    return queries.TransactionFilters(amount=amount, since=day, until=day + timedelta(days=1))


def _day(text: str) -> datetime | None:
    try:
        return datetime.combine(date.fromisoformat(text), time(), timezone.utc)
    except ValueError:
        return None


def _ledger_args(filters: queries.TransactionFilters | None) -> dict:
    """The same search in the ledger's filters (its times are UTC, minutes)."""
    if filters is None:
        return {}
    if filters.amount is None:
        return {"q": filters.text}
    return {"amount": str(filters.amount), "since": f"{filters.since:%Y-%m-%dT%H:%M}",
            "until": f"{filters.until:%Y-%m-%dT%H:%M}"}


# ---------------------------------------------------------------- new user


@bp.route("/new")
@role_required("operator")
def new_user():
    return render("users/new.html", form=NewUserForm(formdata=None))


@bp.route("/new", methods=["POST"])
@role_required("operator")
def create_user():
    form = NewUserForm()
    if form.validate_on_submit():
        try:
            registered = accounts.register_user(form.username.data, form.email.data,
                                                form.external_id.data)
        except (errors.InvalidUser, errors.DuplicateUser) as error:
            _explain_registration(form, error)
        else:
            flash(f"User {form.username.data} created with one wallet per asset."
                  if registered.created else
                  f"User {form.username.data} already exists with these details: "
                  "nothing new was created.")
            return redirect(url_for("users.user", user_id=registered.user_id), 303)
    return render("users/new.html", form=form, status=422)


def _explain_registration(form: NewUserForm, error: errors.WalletError) -> None:
    if isinstance(error, errors.DuplicateUser):
        taken = error.details.get("fields", [])
        for name in taken:
            form[name].errors.append("Already registered for another user.")
        form.form_errors.append(f"A user with this {' and '.join(taken).replace('_', ' ')} "
                                "already exists with other details: nothing was created.")
        return
    name = error.details.get("field") or ""
    field = getattr(form, name, None)
    if field is None:
        form.form_errors.append(error.message)
    else:  # "email: ..." next to the email field says the field twice
        field.errors.append(error.message.removeprefix(f"{name}: "))


# ---------------------------------------------------------------- user page


@bp.route("/<id:user_id>")
def user(user_id: int):
    return render("users/user.html", **_page_context(user_id))


@bp.route("/<id:user_id>/history")
def history(user_id: int):
    if not is_htmx():
        kept = {name: request.args[name] for name in HISTORY_ARGS if request.args.get(name)}
        return redirect(url_for("users.user", user_id=user_id, **kept))
    accounts = queries.user_balances(user_id)
    context = _history_context(accounts, request.args.get("asset"), request.args.get("cursor"))
    partial = "users/_history_rows.html" if request.args.get("rows") else "users/_history.html"
    return render(partial, user=queries.get_user(user_id), **context)


def _page_context(user_id: int, *, movement: MovementForm | None = None,
                  transfer: TransferForm | None = None, status: StatusForm | None = None,
                  release: ReleaseForm | None = None, hold_refusal: str | None = None,
                  asset: str | None = None) -> dict:
    """The user page. A bound form (refused) replaces its fresh copy, and is shown even where
    a fresh one would not be (a closed user's refused movement)."""
    found = queries.get_user(user_id)
    accounts_ = queries.user_balances(user_id)
    asset = asset or request.args.get("asset")
    history = _history_context(accounts_, asset, request.args.get("cursor"))
    asset = None if asset == ALL_ASSETS else asset  # the forms open on one asset
    choices = Choices()
    forms = _movement_forms(found, movement, asset, choices)
    transfer = transfer or _transfer_form(found, asset, choices)
    return {"user": found, "balances": _with_sparklines(accounts_), "forms": forms,
            "transfer": transfer, "limits": _limits() if forms or transfer else [],
            "status_forms": _status_forms(found, status),
            "status_changes": queries.status_changes(user_id),
            **_holds_context(user_id, release, hold_refusal, choices), **history}


class Choices:
    """The asset codes and active reason codes that a page's forms offer, read once a page."""

    @cached_property
    def assets(self) -> list[str]:
        return queries.list_asset_codes()

    @cached_property
    def codes(self) -> list:
        return controls.list_reason_codes()


def _holds_context(user_id: int, bound: ReleaseForm | None = None,
                   refusal: str | None = None, choices: Choices | None = None) -> dict:
    """The open holds, newest first, each with its release form (for operators) or the
    request its release waits in."""
    page = queries.list_holds(user_id=user_id, status="open", limit=HOLDS_SHOWN)
    forms = {}
    if can("operator"):
        codes = (choices or Choices()).codes
        forms = {hold.id: ReleaseForm(hold.id, codes, formdata=None) for hold in page.items}
    if bound is not None:
        forms[bound.hold_id] = bound
    return {"open_holds": page.items, "more_holds": page.next_cursor is not None,
            "release_forms": forms, "hold_refusal": refusal,
            "pending_releases": queries.pending_releases([hold.id for hold in page.items])}


@dataclass(frozen=True)
class AssetLimit:
    """What the signed-in operator may still move in an asset today, and from what amount a
    movement waits for approval."""

    asset: str
    approval_threshold: int
    left_today: int


def _limits() -> list[AssetLimit]:
    policies = controls.list_policies()
    limits = controls.daily_limits(current_user.id, policies)
    used = {policy.asset: approvals.used_today(current_user.id, policy.asset)
            for policy in policies}
    return [AssetLimit(policy.asset, policy.approval_threshold,
                       max(limits[policy.asset] - used[policy.asset], 0)) for policy in policies]


def _with_sparklines(accounts: list[queries.AccountBalance]) -> list[dict]:
    return [{"account": account,
             "sparkline": sparkline([balance for _, balance in queries.balance_series(account.id)])}
            for account in accounts]


@dataclass(frozen=True)
class HistoryLine:
    """A row of the user's history: a posting and the asset of its wallet."""

    asset: str
    posting: queries.PostingRow


def _history_context(accounts: list[queries.AccountBalance], asset: str | None,
                     cursor: str | None) -> dict:
    wallets = {a.asset_code: a for a in accounts if a.kind == "wallet"}
    if asset != ALL_ASSETS and asset not in wallets:
        asset = DEFAULT_ASSET if DEFAULT_ASSET in wallets else next(iter(wallets), None)
    page = None
    if asset is not None:
        shown = list(wallets.values()) if asset == ALL_ASSETS else [wallets[asset]]
        page = _history_page(shown, cursor)
    return {"history_asset": asset, "all_assets": ALL_ASSETS, "wallets": wallets,
            "history": page, "cursor": cursor}


def _history_page(wallets: list[queries.AccountBalance],
                  cursor: str | None) -> queries.Page[HistoryLine]:
    """The newest postings of these wallets, merged: posting ids grow across accounts, so one
    cursor pages them all, and each wallet's newest page holds its part of the merged one."""
    pages = {wallet.asset_code: queries.account_postings(wallet.id, cursor, HISTORY_PAGE)
             for wallet in wallets}
    lines = sorted((HistoryLine(asset, row) for asset, page in pages.items() for row in page.items),
                   key=lambda line: line.posting.id, reverse=True)
    more = len(lines) > HISTORY_PAGE or any(page.next_cursor for page in pages.values())
    lines = lines[:HISTORY_PAGE]
    return queries.Page(lines, queries.encode_cursor(lines[-1].posting.id) if more else None)


def _movement_forms(user: User, bound: MovementForm | None, asset: str | None = None,
                    choices: Choices | None = None) -> dict:
    forms = {}
    if can("operator") and user.status != "closed":
        choices = choices or Choices()
        forms = {kind: MovementForm(kind, choices.assets, choices.codes, formdata=None,
                                    data={"asset": asset or DEFAULT_ASSET})
                 for kind in kinds.OPERATOR_FORMS}
    if bound is not None:
        forms[bound.kind] = bound
    return forms


def _movement_form(kind: str, **kwargs) -> MovementForm:
    """The form of `kind`: bound to the request's form data unless formdata=None."""
    return MovementForm(kind, queries.list_asset_codes(), controls.list_reason_codes(), **kwargs)


def _transfer_form(user: User, asset: str | None = None,
                   choices: Choices | None = None) -> TransferForm | None:
    if not can("operator") or user.status == "closed":
        return None
    return _new_transfer_form(choices, formdata=None, data={"asset": asset or DEFAULT_ASSET})


def _new_transfer_form(choices: Choices | None = None, **kwargs) -> TransferForm:
    """Bound to the request's form data unless formdata=None."""
    choices = choices or Choices()
    return TransferForm(choices.assets, choices.codes, **kwargs)


def _status_forms(user: User, bound: StatusForm | None) -> dict:
    """The changes this user's status allows and this operator's role may make."""
    forms = {action: StatusForm(action, formdata=None)
             for action, (allowed_from, _) in accounts.ACTIONS.items()
             if user.status in allowed_from and can(STATUS_ROLES[action])}
    if bound is not None:
        forms[bound.action] = bound
    return forms


# ---------------------------------------------------------------- movements


@bp.route(f"/<id:user_id>/<any({', '.join(kinds.OPERATOR_FORMS)}):kind>", methods=["POST"])
@role_required("operator")
def movement(user_id: int, kind: str):
    queries.get_user(user_id)
    form = _movement_form(kind)
    done = _post(form, user_id) if form.validate_on_submit() else None
    if done is None:
        return _failed(user_id, form)
    return _succeeded(user_id, form, done)


def _post(form: MovementForm, user_id: int) -> Done | None:
    """Sends the movement through the operator controls; a refusal becomes an error on the form."""
    try:
        outcome = approvals.submit(_intent(form, user_id), current_user)
    except errors.WalletError as error:
        form.reference_id.data = None  # a refused request keeps its reference: send a new one
        _explain(form, error)
        return None
    wallet = outcome.receipt and next(leg.balance_after for leg in outcome.receipt.postings
                                      if leg.balance_after is not None)
    return _done(form, outcome, wallet)


def _intent(form: MovementForm, user_id: int, to_user_id: int | None = None) -> approvals.Intent:
    return approvals.Intent(form.kind, form.reference_id.data, form.reason_code.data,
                            form.reason.data, form.asset.data, form.amount.data,
                            form.ticket.data or None, user_id=user_id, to_user_id=to_user_id)


def _done(form: MovementForm, outcome: approvals.Outcome, balance: int | None,
          recipient: str | None = None) -> Done:
    receipt = outcome.receipt
    return Done(form.kind, form.asset.data, form.amount.data, outcome.request_id,
                outcome.replayed, receipt.id if receipt else None, balance, recipient)


def _actor() -> ledger.Actor:
    return ledger.Actor(label=current_user.label, operator_id=current_user.id)


def _explain(form: MovementForm, error: errors.WalletError) -> None:
    """The refusal next to the field it is about."""
    if not (form.explain(error) or _explain_resent(form, error)):
        _explain_ledger(form, error)


def _explain_resent(form: MovementForm | ReleaseForm, error: errors.WalletError) -> bool:
    """A form sent again after its request was decided, or with other values; False for
    another error."""
    if isinstance(error, errors.RequestDecided):
        form.form_errors.append(f"This form was already sent: request #"
                                f"{error.details['request_id']} was {error.details['status']}. "
                                "Nothing moved; check the values and send again.")
    elif isinstance(error, (errors.IdempotencyConflict, errors.ReferenceTaken)):
        form.form_errors.append("This form was already sent with other values; nothing moved. "
                                "Check the values and send again.")
    else:
        return False
    return True


def _explain_ledger(form: MovementForm, error: errors.WalletError) -> None:
    asset = form.asset.data
    if isinstance(error, errors.InsufficientFunds):
        form.amount.errors.append(f"Not enough {asset}: the wallet holds "
                                  f"{format_amount(error.details['available'], asset)}.")
    elif isinstance(error, errors.AmountTooLarge):
        form.amount.errors.append(f"Above the {asset} maximum of "
                                  f"{format_amount(error.details['max_amount'], asset)} "
                                  "per movement.")
    elif isinstance(error, errors.BalanceLimit):
        form.amount.errors.append(f"The wallet would hold more than the {asset} maximum of "
                                  f"{format_amount(error.details['max_balance'], asset)}.")
    elif isinstance(error, errors.InvalidAmount):
        form.amount.errors.append(error.message)
    elif isinstance(error, errors.UnknownAsset):
        form.asset.errors.append(error.message)
    elif isinstance(error, errors.AccountClosed):
        form.form_errors.append("This user is closed: nothing was moved.")
    elif isinstance(error, errors.AccountFrozen):
        form.form_errors.append(f"This {form.asset.data} wallet is frozen: nothing was moved.")
    else:
        form.form_errors.append(error.message)


def _failed(user_id: int, form: MovementForm):
    if form.reference_id.data is None or form.reference_id.errors:  # refused: a fresh one
        form.reference_id.data = new_reference()
    if is_htmx():
        return render("users/_movement_form.html", user=queries.get_user(user_id), form=form,
                      status=422)
    return render("users/user.html", status=422,
                  **_page_context(user_id, movement=form, asset=form.asset.data))


def _succeeded(user_id: int, form: MovementForm, done: Done):
    if not is_htmx():
        return _back_with(done, user_id)
    fresh = _movement_form(form.kind, formdata=None, data={"asset": done.asset})
    return render("users/_movement_done.html", form=fresh, done=done,
                  **_page_context(user_id, asset=done.asset))


def _back_with(done: Done, user_id: int):
    """Without JavaScript: the confirmation as a flash on the user's page."""
    flash(approvals_pages.sent_for_approval(done.request_id, done.waiting) if done.pending
          else done.message)
    return redirect(url_for("users.user", user_id=user_id, asset=done.asset), 303)


# ---------------------------------------------------------------- holds


@bp.route("/<id:user_id>/holds/<id:hold_id>/release", methods=["POST"])
@role_required("operator")
def release(user_id: int, hold_id: int):
    hold = _hold_of(user_id, hold_id)
    form = ReleaseForm(hold.id, controls.list_reason_codes())
    if not form.validate_on_submit():
        return _release_refused(user_id, form)
    try:
        outcome = approvals.submit(_release_intent(form), current_user)
    except errors.WalletError as error:
        form.reference_id.data = None  # a refused request keeps its reference: send a new one
        return _release_refused(user_id, form, _explain_release(form, error))
    return _released(user_id, Released.of(hold, outcome))


def _hold_of(user_id: int, hold_id: int) -> queries.HoldRow:
    hold = queries.get_hold(hold_id)
    if hold.user_id != user_id:
        raise errors.UnknownHold(f"user {user_id} has no hold {hold_id}", hold_id=hold_id)
    return hold


def _release_intent(form: ReleaseForm) -> approvals.Intent:
    return approvals.Intent("void", form.reference_id.data, form.reason_code.data,
                            form.reason.data, ticket=form.ticket.data or None,
                            hold_id=form.hold_id)


def _explain_release(form: ReleaseForm, error: errors.WalletError) -> str | None:
    """What a hold no longer open became (its form is gone); else None, the refusal next to
    its field."""
    if isinstance(error, errors.HoldNotOpen):
        return (f"Hold #{form.hold_id} {NOT_OPEN[error.details['status']]}. "
                "Nothing moved.")
    if not (form.explain(error) or _explain_resent(form, error)):
        form.form_errors.append(error.message)
    return None


def _release_refused(user_id: int, form: ReleaseForm, refusal: str | None = None):
    if form.reference_id.data is None or form.reference_id.errors:  # refused: a fresh one
        form.reference_id.data = new_reference()
    if is_htmx():
        return render("users/_hold.html", status=422, user=queries.get_user(user_id),
                      hold=queries.get_hold(form.hold_id), form=form, refusal=refusal)
    return render("users/user.html", status=422, **_page_context(
        user_id, release=None if refusal else form, hold_refusal=refusal))


def _released(user_id: int, done: Released):
    if not is_htmx():
        flash(approvals_pages.sent_for_approval(done.request_id, done.waiting) if done.pending
              else done.message)
        return redirect(url_for("users.user", user_id=user_id, asset=done.asset), 303)
    return render("users/_released.html", hold=queries.get_hold(done.hold_id), released=done,
                  pending=done.request_id if done.pending else None,
                  **_page_context(user_id, asset=done.asset))


# ---------------------------------------------------------------- transfers


@bp.route("/<id:user_id>/transfer", methods=["POST"])
@role_required("operator")
def transfer(user_id: int):
    queries.get_user(user_id)
    form = _new_transfer_form()
    done = _post_transfer(form, user_id) if form.validate_on_submit() else None
    if done is None:
        if form.recipient is None and not form.to.errors:
            form.recipient = _chosen(form.to_user_id.data, user_id)
        if form.reference_id.data is None or form.reference_id.errors:
            form.reference_id.data = new_reference()
        return _transfer_answer(user_id, form, status=422)
    if not is_htmx():
        return _back_with(done, user_id)
    return render("users/_transfer_done.html", done=done,
                  **_page_context(user_id, asset=done.asset))  # a fresh form, new balances


def _post_transfer(form: TransferForm, user_id: int) -> Done | None:
    form.recipient = _recipient(form, user_id)
    if form.recipient is None:
        return None
    try:
        outcome = approvals.submit(_intent(form, user_id, form.recipient.id), current_user)
    except errors.WalletError as error:
        form.reference_id.data = None  # a refused request keeps its reference: send a new one
        _explain_transfer(form, error, user_id)
        return None
    sent = outcome.receipt and next(leg.balance_after for leg in outcome.receipt.postings
                                    if leg.amount < 0)
    return _done(form, outcome, sent, recipient=form.recipient.username)


def _recipient(form: TransferForm, user_id: int) -> User | None:
    """The chosen user (to_user_id), else the one `to` names by id or exact username or
    email; None with the reason on the form."""
    if form.to_user_id.data is not None:
        found = _chosen(form.to_user_id.data, None)
        if found is None:
            form.to_user_id.errors.append(f"No user #{form.to_user_id.data}.")
        return found
    term = form.to.data.lower()
    found = next((user for user in queries.find_users(term, limit=10)
                  if term in (str(user.id), user.username.lower(), user.email.lower())), None)
    if found is None or found.username == accounts.SYSTEM_USERNAME:
        form.to.errors.append(f"No user is “{form.to.data}”: pick one from the list, "
                              "or enter a user id.")
        return None
    return found


def _chosen(to_user_id: int | None, sender_id: int | None) -> User | None:
    """The user a lookup result names: not the system user, nor the sender (to pick)."""
    if to_user_id is None or to_user_id == sender_id:
        return None
    try:
        found = queries.get_user(to_user_id)
    except errors.UnknownUser:
        return None
    return None if found.username == accounts.SYSTEM_USERNAME else found


def _explain_transfer(form: TransferForm, error: errors.WalletError, user_id: int) -> None:
    recipient = form.recipient.username
    if isinstance(error, errors.InvalidTransfer):
        form.recipient = None  # the picker opens again, with the reason
        form.to.errors.append("A user cannot transfer to themselves: choose another user.")
    elif isinstance(error, errors.AccountClosed) and not _sender_refused(error, user_id):
        form.form_errors.append(f"{recipient} is closed: the transfer cannot land; "
                                "nothing was moved.")
    elif type(error) is errors.AccountFrozen:  # a frozen wallet refuses debits only: the sender's
        form.form_errors.append(f"This user's {form.asset.data} wallet is frozen: "
                                "nothing can be sent from it; nothing was moved.")
    elif isinstance(error, errors.BalanceLimit):
        maximum = format_amount(error.details["max_balance"], form.asset.data)
        form.amount.errors.append(f"{recipient}'s wallet would hold more than the "
                                  f"{form.asset.data} maximum of {maximum}.")
    else:
        _explain(form, error)  # a ledger refusal the transfer shares with the other movements


def _sender_refused(error: errors.WalletError, user_id: int) -> bool:
    account_id = error.details.get("account_id")
    return account_id is not None and queries.get_account(account_id).user_id == user_id


def _transfer_answer(user_id: int, form: TransferForm, status: int):
    if is_htmx():
        return render("users/_transfer_form.html", user=queries.get_user(user_id),
                      transfer=form, status=status)
    return render("users/user.html", status=status,
                  **_page_context(user_id, transfer=form, asset=form.asset.data))


@bp.route("/<id:user_id>/recipients")
def recipients(user_id: int):
    """The transfer form's as-you-type lookup: the results, each a button that chooses."""
    if not is_htmx():
        return redirect(url_for("users.user", user_id=user_id))
    sender = queries.get_user(user_id)
    term = request.args.get("transfer-to", "").strip()
    found = [user for user in queries.find_users(term, limit=10)
             if user.id != sender.id and user.username != accounts.SYSTEM_USERNAME]
    return render("users/_recipient_results.html", user=sender, q=term, users=found)


@bp.route("/<id:user_id>/recipient")
def recipient(user_id: int):
    """The transfer form's recipient: the chosen user (`pick`), or the lookup again."""
    if not is_htmx():
        return redirect(url_for("users.user", user_id=user_id))
    sender = queries.get_user(user_id)
    form = _new_transfer_form(formdata=None)
    picked = parse_integer(request.args.get("pick", ""))
    form.recipient = _chosen(picked, sender.id)
    if picked is not None and form.recipient is None:
        form.to.errors = ["That user cannot receive this transfer: choose another."]
    return render("users/_recipient.html", user=sender, transfer=form)


# ---------------------------------------------------------------- status


@bp.route(f"/<id:user_id>/<any({', '.join(accounts.ACTIONS)}):action>", methods=["POST"])
def change_status(user_id: int, action: str):
    if not can(STATUS_ROLES[action]):  # the role depends on the action
        abort(403, description=f"This needs the {STATUS_ROLES[action]} role.")
    found = queries.get_user(user_id)
    form = StatusForm(action)
    if form.validate_on_submit():
        try:
            changed = accounts.change_status(user_id, action, form.reason.data, actor=_actor())
        except errors.WalletError as error:
            _explain_status(form, error)
        else:
            flash(f"User {found.username} " + (STATUS_DONE[action] if changed else
                  f"was already {accounts.ACTIONS[action][1]}: nothing changed."))
            return redirect(url_for("users.user", user_id=user_id), 303)
    return render("users/user.html", status=422, **_page_context(user_id, status=form))


def _explain_status(form: StatusForm, error: errors.WalletError) -> None:
    if isinstance(error, errors.BalanceNotZero):
        held = ", ".join(f"{format_amount(amount, asset)} {asset}"
                         for asset, amount in sorted(error.details["balances"].items()))
        form.form_errors.append(f"Balances must be zero to close: this user still holds {held}. "
                                "Move it out first; nothing changed.")
    elif isinstance(error, errors.UserClosed):
        form.form_errors.append("This user is closed: its status cannot change.")
    elif error.details.get("field") == "reason":
        form.reason.errors.append(f"Say why, in at most {accounts.MAX_REASON} characters.")
    else:
        form.form_errors.append(error.message)
