"""Dashboard forms: fields, validators and their messages (CSRF from FlaskForm)."""
from __future__ import annotations

import re
import uuid
from decimal import Decimal

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField, Form, HiddenField, IntegerField, PasswordField, SelectChoice, SelectField,
    StringField,
)
from wtforms.fields import DateField, DateTimeLocalField
from wtforms.validators import (
    DataRequired, InputRequired, Length, NumberRange, Optional, StopValidation, ValidationError,
)
from wtforms.widgets import TextInput

from .. import errors
from ..accounts import MAX_REASON
from ..controls import MAX_TICKET
from ..inputs import holds_nul, parse_integer
from ..kinds import BULK_KINDS, NAMES as TRANSACTION_KINDS, title_of
from ..limits import BIGINT_MAX
from ..models import API_SCOPES, OPERATOR_ROLES, USER_STATUSES
from .amounts import format_amount

DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]
NUL_MESSAGE = "This holds a NUL character, which cannot be stored: remove it."


def new_reference() -> str:
    """Generated when a form is rendered: posting the same form twice replays, never repeats."""
    return "web-" + uuid.uuid4().hex


def strip(text):
    return text.strip() if isinstance(text, str) else text


def none_if_empty(text):
    return text or None


def refuse_nul(form, field) -> None:
    """First validator of every field: PostgreSQL text cannot hold NUL."""
    if holds_nul(*(value for value in field.raw_data or () if isinstance(value, str))):
        raise StopValidation(NUL_MESSAGE)


class RefusesNul:
    """Base of every dashboard form: each field refuses NUL before any other check, with an
    inline message, so no field ever takes one to the database."""

    class Meta:
        def bind_field(self, form, unbound_field, options):
            field = super().bind_field(form, unbound_field, options)
            field.validators = [refuse_nul, *field.validators]
            return field


class PostedForm(RefusesNul, FlaskForm):
    """A form sent with POST (and its CSRF token)."""


class QueryForm(RefusesNul, Form):
    """A form read from the query string (GET, no CSRF), so a filtered view can be shared."""


class WholeNumberField(IntegerField):
    """A whole number (an amount in the asset's smallest unit, an id) in ASCII digits;
    "1,500" reads as 1500."""

    widget = TextInput()

    def process_formdata(self, valuelist):
        text = valuelist[0].replace(",", "").replace(" ", "").replace("_", "") if valuelist else ""
        self.data = parse_integer(text) if text else None  # left empty: InputRequired says so
        if text and self.data is None:
            raise ValueError("Enter a whole number, like 1500 (no decimals).")

    def pre_validate(self, form):
        if self.process_errors:  # unreadable: the range check would only repeat the problem
            raise StopValidation()


class LoginForm(PostedForm):
    username = StringField("Username", [DataRequired(), Length(max=64)],
                           render_kw={"autocomplete": "username", "autofocus": True})
    password = PasswordField("Password", [DataRequired(), Length(max=256)],
                             render_kw={"autocomplete": "current-password"})


def reason_code_choices(codes, blank: str) -> list[SelectChoice]:
    """A select's reason codes (rows of controls.list_reason_codes), `blank` first."""
    return [SelectChoice("", blank)] + [
        SelectChoice(code.code, code.title + ("" if code.active else " (retired)"))
        for code in codes]


class ControlledForm(PostedForm):
    """A dashboard movement: a reason code from the admins' list, the reason in words, an
    optional ticket, and the reference generated with the form. Which codes are in use and
    what a ticket may be is the service's to say (controls.py), next to these fields."""

    reason_code = SelectField("Reason code", [DataRequired("Choose a reason code.")],
                              validate_choice=False)
    reason = StringField("Reason", [DataRequired("Say why (it is recorded)."),
                                    Length(max=MAX_REASON)], render_kw={"autocomplete": "off"})
    ticket = StringField("Ticket (optional)", [Optional(), Length(max=MAX_TICKET)],
                         filters=[strip],
                         render_kw={"autocomplete": "off", "placeholder": "SUP-1234 or https://…"})
    reference_id = HiddenField("Reference", [DataRequired(), Length(max=128)])

    def __init__(self, reason_codes: list, **kwargs):
        super().__init__(**kwargs)
        self.reason_code.choices = reason_code_choices(reason_codes, "Choose…")
        if not self.reference_id.data:
            self.reference_id.data = new_reference()

    def explain(self, error: errors.WalletError) -> bool:
        """A refusal of the operator controls, next to its field; False for another error."""
        if isinstance(error, errors.InvalidReasonCode):
            self.reason_code.errors.append("Choose a reason code from the list: this one is "
                                           "retired or unknown.")
        elif isinstance(error, errors.InvalidTicket):
            self.ticket.errors.append("Enter a ticket id such as SUP-1234, or an http:// or "
                                      "https:// link.")
        elif isinstance(error, errors.DailyLimitExceeded):
            details, asset = error.details, error.details["asset"]
            self.amount_errors().append(
                f"Above your daily {asset} limit: {format_amount(details['left'], asset)} of "
                f"{format_amount(details['limit'], asset)} left today (UTC).")
        elif error.details.get("field") == "description":  # the reason, said in words
            self.reason.errors.append(f"Say why, in at most {MAX_REASON} characters.")
        else:
            return False
        return True

    def amount_errors(self) -> list:
        return self.form_errors  # a reversal's amount is the original's: no field of its own


class MovementForm(ControlledForm):
    asset = SelectField("Asset", [DataRequired()])
    # Entered in the smallest unit, as stored: 12345 of an asset shown with 2 decimals is 123.45.
    amount = WholeNumberField("Amount (smallest unit)",
                              [InputRequired("Enter an amount."),
                               NumberRange(min=1, message="Enter an amount above zero.")],
                              render_kw={"inputmode": "numeric", "autocomplete": "off"})

    def __init__(self, kind: str, assets: list[str], reason_codes: list, **kwargs):
        super().__init__(reason_codes, prefix=kind, **kwargs)
        self.kind = kind
        self.asset.choices = [SelectChoice(code) for code in assets]

    def amount_errors(self) -> list:
        return self.amount.errors


class ReversalForm(ControlledForm):
    confirm = BooleanField("I confirm this reversal moves the amounts back",
                           [DataRequired("Tick to confirm the reversal.")])


class ReleaseForm(ControlledForm):
    """Release an open hold back to the user's wallet: the amount is the hold's (no field)."""

    def __init__(self, hold_id: int, reason_codes: list, **kwargs):
        super().__init__(reason_codes, prefix=f"release-{hold_id}", **kwargs)
        self.hold_id = hold_id


class UploadForm(PostedForm):
    """A bulk file: which movement its rows are (the file itself is read by the view)."""

    kind = SelectField("Grant as", [DataRequired()])

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.kind.choices = [SelectChoice(name, title_of(name)) for name in BULK_KINDS]


class DecisionForm(PostedForm):
    """Approve or reject another operator's request, saying why."""

    reason = StringField("Reason", [DataRequired("Say why (it is recorded)."),
                                    Length(max=MAX_REASON)], render_kw={"autocomplete": "off"})

    def __init__(self, decision: str, **kwargs):
        super().__init__(prefix=decision, **kwargs)
        self.decision = decision
        self.reason.label.text = f"Why {decision}"


class TransferForm(MovementForm):
    """A transfer from the page's user to another: `to_user_id` is set by choosing a lookup
    result (a hidden input then); without JavaScript `to` takes a user id or exact username."""

    to_user_id = WholeNumberField("To user id", [Optional(),
                                                 NumberRange(1, BIGINT_MAX, "No such user.")])
    to = StringField("To user", [Length(max=128)], filters=[strip],
                     render_kw={"type": "search", "autocomplete": "off",
                                "placeholder": "User id, name or email"})

    def __init__(self, assets: list[str], reason_codes: list, **kwargs):
        super().__init__("transfer", assets, reason_codes, **kwargs)
        self.recipient = None  # the User the form is addressed to, once the view knows it

    def validate_to(self, field) -> None:
        if self.to_user_id.data is None and not field.data and not self.to_user_id.errors:
            raise ValidationError("Choose who receives the transfer.")


class NewUserForm(PostedForm):
    """Presence only: the format rules are accounts.register_user's, shown on their field."""

    username = StringField("Username", [DataRequired("Enter a username.")], filters=[strip],
                           render_kw={"autocomplete": "off"})
    email = StringField("Email", [DataRequired("Enter an email address.")], filters=[strip],
                        render_kw={"autocomplete": "off", "type": "email"})
    external_id = StringField("External id (optional)", [Optional()],
                              filters=[strip, none_if_empty], render_kw={"autocomplete": "off"})


STATUS_TITLES = {"freeze": "Freeze", "unfreeze": "Unfreeze", "close": "Close"}
STATUS_CONFIRMATIONS = {
    "freeze": "I confirm: debits from this user's wallets are refused until unfrozen",
    "unfreeze": "I confirm: this user's wallets accept debits again",
    "close": "I confirm: closing is final, no movement will ever be possible",
}


class StatusForm(PostedForm):
    """Freeze, unfreeze or close a user: a recorded reason and an explicit confirmation."""

    reason = StringField("Reason", [DataRequired("Say why (it is recorded)."),
                                    Length(max=MAX_REASON)], render_kw={"autocomplete": "off"})
    confirm = BooleanField("I confirm", [DataRequired("Tick to confirm.")])

    def __init__(self, action: str, **kwargs):
        super().__init__(prefix=action, **kwargs)
        self.action = action
        self.title = STATUS_TITLES[action]
        self.confirm.label.text = STATUS_CONFIRMATIONS[action]


class OperatorForm(PostedForm):
    username = StringField("Username", [DataRequired(), Length(max=64)],
                           render_kw={"autocomplete": "off"})
    password = PasswordField("Password", [DataRequired(), Length(min=10, max=256)],
                             render_kw={"autocomplete": "new-password"})
    role = SelectField("Role", choices=[SelectChoice(role) for role in OPERATOR_ROLES])


class ApiKeyForm(PostedForm):
    name = StringField("Name", [DataRequired(), Length(max=64)], render_kw={"autocomplete": "off"})
    scope = SelectField("Scope", choices=[SelectChoice(scope) for scope in API_SCOPES])


class UserFilterForm(QueryForm):
    """The users list's filters, kept in the URL."""

    q = StringField("Search", [Optional(), Length(max=128)], filters=[strip],
                    render_kw={"type": "search", "autocomplete": "off",
                               "placeholder": "User id, or a name, email or external id prefix"})
    status = SelectField("Status", [Optional()], choices=[SelectChoice("", "Any status")]
                         + [SelectChoice(status) for status in USER_STATUSES])


AMOUNT_TEXT = re.compile(r"\d{1,19}(?:\.\d{1,18})?")


def parse_amount_text(text: str) -> Decimal | None:
    """An amount as read to an agent, in the asset's decimals: "12.50", "1,250"; None if not."""
    digits = text.replace(",", "").replace(" ", "")
    return Decimal(digits) if AMOUNT_TEXT.fullmatch(digits) else None


class AmountTextField(StringField):
    """An amount in the asset's decimals (a filter: the ledger turns it into smallest units)."""

    def __init__(self, label: str, **kwargs):
        super().__init__(label, [Optional()], render_kw={"inputmode": "decimal",
                                                        "autocomplete": "off",
                                                        "placeholder": "12.50"}, **kwargs)

    def process_formdata(self, valuelist):
        text = valuelist[0].strip() if valuelist else ""
        self.raw_text = text
        self.data = parse_amount_text(text) if text else None
        if text and self.data is None:
            raise ValueError("Enter an amount such as 12.50 or 1,250 (digits, one point).")

    def _value(self):
        return getattr(self, "raw_text", "") or ("" if self.data is None else str(self.data))


class LedgerJumpForm(QueryForm):
    """Where the ledger's list starts: the newest transaction before the end of a UTC day."""

    start = DateField("Jump to date (UTC)", [Optional()])


class LedgerFilterForm(QueryForm):
    """The ledger's filters, kept in the URL."""

    kind = SelectField("Kind", [Optional()], choices=[SelectChoice("", "Any kind")]
                       + [SelectChoice(kind) for kind in TRANSACTION_KINDS])
    q = StringField("Reference, ticket or words", [Optional(), Length(max=128)],
                    filters=[strip], render_kw={"type": "search", "autocomplete": "off",
                                                "placeholder": "web-3f2, SUP-1234, goodwill"})
    amount = AmountTextField("Amount (either sign)")
    asset = SelectField("Asset", [Optional()])
    user_id = WholeNumberField("User id", [Optional(), NumberRange(1, BIGINT_MAX, "No such id.")],
                               render_kw={"inputmode": "numeric"})
    reference_id = StringField("Reference (exact)", [Optional(), Length(max=128)])
    since = DateTimeLocalField("From (UTC)", [Optional()], format=DATETIME_FORMATS)
    until = DateTimeLocalField("Until (UTC)", [Optional()], format=DATETIME_FORMATS)
    reason_code = SelectField("Reason code", [Optional()])
    ticket = StringField("Ticket (exact)", [Optional(), Length(max=MAX_TICKET)], filters=[strip])

    def __init__(self, formdata, assets: list[str], reason_codes: list):
        """`reason_codes`: every code, retired ones too (they stay on their movements)."""
        super().__init__(formdata)
        self.asset.choices = [SelectChoice("", "Any asset")] + [SelectChoice(c) for c in assets]
        self.reason_code.choices = reason_code_choices(reason_codes, "Any reason code")


REQUEST_FILTERS = ("pending", "approved", "rejected", "expired", "failed")


class ApprovalFilterForm(QueryForm):
    """The approvals list's status filter, kept in the URL (pending when absent)."""

    status = SelectField("Status", [Optional()], default="pending",
                         choices=[SelectChoice(status) for status in REQUEST_FILTERS]
                         + [SelectChoice("any", "Any status")])
