"""Forms of the admin pages (policies, reason codes, an operator's page), the audit trail's
filters and a wallet's statement period. The ranges and formats are the services' to check
(controls.py, operators.py): a form asks for presence and whole numbers, and shows the
service's refusal next to the field it names."""
from __future__ import annotations

from datetime import timezone

from wtforms import BooleanField, SelectChoice, SelectField, SelectMultipleField, StringField
from wtforms.fields import DateTimeLocalField
from wtforms.validators import (
    DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError,
)
from wtforms.widgets import CheckboxInput, ListWidget

from ..audit_events import ACTIONS
from ..limits import BALANCE_CEILING
from ..models import OPERATOR_ROLES
from ..models import AUDIT_OUTCOMES, EVENT_TYPES
from .forms import (
    DATETIME_FORMATS, OperatorForm, PostedForm, QueryForm, WholeNumberField, none_if_empty, strip,
)

WHOLE = {"inputmode": "numeric", "autocomplete": "off"}


class UtcDateTimeField(DateTimeLocalField):
    """A date and time read as UTC, the dashboard's only time zone; to the microsecond when
    given so (a posting's own time, to start a period exactly there)."""

    def __init__(self, label: str, **kwargs):
        super().__init__(label, [Optional()], format=[*DATETIME_FORMATS, "%Y-%m-%dT%H:%M:%S.%f"],
                         **kwargs)

    def process_formdata(self, valuelist):
        super().process_formdata(valuelist)
        if self.data is not None:
            self.data = self.data.replace(tzinfo=timezone.utc)


class NewOperatorForm(OperatorForm):
    can_approve = BooleanField("Approver: may approve other operators' requests")


class PolicyForm(PostedForm):
    """One asset's policy; its fields are prefixed with the asset, so every asset's form can
    be on one page."""

    approval_threshold = WholeNumberField("Approval from", [InputRequired("Enter an amount.")],
                                          render_kw=WHOLE)
    operator_daily_limit = WholeNumberField("Operator daily limit",
                                            [InputRequired("Enter an amount.")], render_kw=WHOLE)

    def __init__(self, asset: str, **kwargs):
        super().__init__(prefix=asset, **kwargs)
        self.asset = asset


class ReasonCodeForm(PostedForm):
    code = StringField("Code", [InputRequired("Enter a code.")], filters=[strip],
                       render_kw={"autocomplete": "off", "placeholder": "goodwill"})
    title = StringField("Title", [InputRequired("Enter a title.")], filters=[strip],
                        render_kw={"autocomplete": "off"})


class RoleForm(PostedForm):
    role = SelectField("Role", choices=[SelectChoice(role) for role in OPERATOR_ROLES])


def limits_form(assets: list[str], **kwargs) -> PostedForm:
    """An operator's own daily limit per asset; left empty, the asset's policy applies. The
    range is checked here too, so that one refused value changes no asset's limit."""
    class LimitsForm(PostedForm):
        pass

    within = NumberRange(0, BALANCE_CEILING, f"From 0 to {BALANCE_CEILING:,}.")
    for asset in assets:
        setattr(LimitsForm, asset, WholeNumberField(f"Own {asset} limit", [Optional(), within],
                                                     render_kw=WHOLE))
    return LimitsForm(prefix="limit", **kwargs)


class AuditFilterForm(QueryForm):
    """The audit trail's filters, kept in the URL."""

    action = SelectField("Action", [Optional()], choices=[SelectChoice("", "Any action")]
                         + [SelectChoice(action) for action in ACTIONS])
    outcome = SelectField("Outcome", [Optional()], choices=[SelectChoice("", "Any outcome")]
                          + [SelectChoice(outcome) for outcome in AUDIT_OUTCOMES])
    actor = StringField("Actor starts with", [Optional(), Length(max=128)], filters=[strip],
                        render_kw={"autocomplete": "off", "placeholder": "operator:, api:, cli:"})
    operator_id = SelectField("Operator", [Optional()], coerce=str, filters=[strip])
    object_type = StringField("Object type", [Optional(), Length(max=32)], filters=[strip],
                              render_kw={"autocomplete": "off", "placeholder": "operator, user…"})
    object_id = StringField("Object id", [Optional(), Length(max=128)], filters=[strip],
                            render_kw={"autocomplete": "off"})
    since = UtcDateTimeField("From (UTC)")
    until = UtcDateTimeField("Until (UTC)")

    def __init__(self, formdata, operators: list):
        super().__init__(formdata)
        self.operator_id.choices = [SelectChoice("", "Anyone")] + [
            SelectChoice(str(operator.id), operator.username) for operator in operators]

    def validate_until(self, field) -> None:
        _after_since(self, field)

    def chosen_operator(self) -> int | None:
        return int(self.operator_id.data) if self.operator_id.data else None  # a choice's id


class StatementForm(QueryForm):
    """Which wallet of the user, and the period (UTC); no `until` means up to now."""

    asset = SelectField("Asset")
    since = UtcDateTimeField("From (UTC)")
    until = UtcDateTimeField("Until (UTC)")

    def __init__(self, formdata, assets: list[str], default: str | None):
        super().__init__(formdata)
        self.asset.choices = [SelectChoice(code) for code in assets]
        if not self.asset.raw_data:
            self.asset.data = default

    def validate_until(self, field) -> None:
        _after_since(self, field)


def _after_since(form, field) -> None:
    if field.data and form.since.data and field.data <= form.since.data:
        raise ValidationError("Until must be later than From.")


class CheckboxesField(SelectMultipleField):
    """A choice of several, as a list of checkboxes (templates/admin/_webhook_form.html)."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class WebhookForm(PostedForm):
    """A new webhook endpoint. Presence and the listed event types only: what a receiver's URL
    and description may be is webhooks.create_endpoint's to say, next to the field it names."""

    url = StringField("URL", [DataRequired("Enter the receiver's URL.")], filters=[strip],
                      render_kw={"autocomplete": "off", "inputmode": "url",
                                 "placeholder": "https://hooks.example.com/wallet"})
    event_types = CheckboxesField("Event types",
                                  choices=[SelectChoice(name) for name in EVENT_TYPES])
    description = StringField("Description (optional)", [Optional()],
                              filters=[strip, none_if_empty], render_kw={"autocomplete": "off"})

    def validate_event_types(self, field) -> None:
        # Not DataRequired: its `required` flag would mark every checkbox as needed.
        if not field.data:
            raise ValidationError("Choose at least one event type.")
