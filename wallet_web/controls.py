"""Operator controls: per-asset policies (approval threshold, operator daily limit), each
operator's own limits, the reason codes and ticket references that every dashboard movement
carries, and the `flask policy` and `flask reason-codes` commands. Every change is audited.
The requests these rules apply to are approvals.py's.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import click
from flask.cli import AppGroup
from sqlalchemy import select

from . import audit_events, errors
from .extensions import db
from .inputs import holds_nul
from .limits import BALANCE_CEILING, DEFAULT_APPROVAL_THRESHOLD, DEFAULT_OPERATOR_DAILY_LIMIT
from .models import Asset, OperatorLimit, Policy, ReasonCode, utcnow

TICKET_ID = re.compile(r"#?[A-Za-z0-9][A-Za-z0-9._/-]{0,63}")  # SUP-1234, #5512, JIRA/OPS-9
MAX_TICKET = 300
REASON_CODE = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_REASON_TITLE = 128
DEFAULT_REASON_CODES = (
    ("goodwill", "Goodwill"),
    ("compensation", "Compensation for an outage or a bug"),
    ("fraud_recovery", "Fraud recovery"),
    ("correction", "Correction of an earlier mistake"),
    ("promotion", "Promotion or event prize"),
    ("purchase_support", "Purchase support (a player's purchase by hand)"),
)


@dataclass(frozen=True)
class AssetPolicy:
    asset: str
    approval_threshold: int
    operator_daily_limit: int
    updated_at: datetime | None = None  # None: the defaults, never changed
    updated_by: str | None = None


# ---------------------------------------------------------------- policies


def policy_for(asset: str) -> AssetPolicy:
    return _policy(asset, db.session.get(Policy, asset))


def list_policies() -> list[AssetPolicy]:
    """Every asset's policy, in one query."""
    rows = db.session.execute(select(Asset.code, Policy).outerjoin(
        Policy, Policy.asset_code == Asset.code).order_by(Asset.code))
    return [_policy(code, row) for code, row in rows]


def _policy(asset: str, row: Policy | None) -> AssetPolicy:
    if row is None:
        return AssetPolicy(asset, DEFAULT_APPROVAL_THRESHOLD, DEFAULT_OPERATOR_DAILY_LIMIT)
    return AssetPolicy(asset, row.approval_threshold, row.operator_daily_limit,
                       row.updated_at, row.updated_by)


def set_policy(asset: str, approval_threshold: int, operator_daily_limit: int) -> AssetPolicy:
    if db.session.get(Asset, asset) is None:
        raise errors.UnknownAsset(f"asset {asset!r} does not exist", asset=asset)
    _check_amount("approval_threshold", approval_threshold, minimum=1)
    _check_amount("operator_daily_limit", operator_daily_limit, minimum=0)
    before = policy_for(asset)
    if (before.approval_threshold, before.operator_daily_limit) == (
            approval_threshold, operator_daily_limit) and before.updated_at is not None:
        return before
    who = audit_events.current_actor()
    row = db.session.get(Policy, asset) or Policy(asset_code=asset)
    row.approval_threshold, row.operator_daily_limit = approval_threshold, operator_daily_limit
    row.updated_at, row.updated_by = utcnow(), who.label
    db.session.add(row)
    audit_events.record("policy.changed", who=who, object_type="asset", object_id=asset,
                        approval_threshold=[before.approval_threshold, approval_threshold],
                        operator_daily_limit=[before.operator_daily_limit, operator_daily_limit])
    db.session.commit()
    return policy_for(asset)


def _check_amount(field: str, value, minimum: int) -> None:
    if type(value) is not int or not minimum <= value <= BALANCE_CEILING:
        raise errors.InvalidPolicy(f"{field} must be a whole number from {minimum} to "
                                   f"{BALANCE_CEILING:,}", field=field)


# ---------------------------------------------------------------- operator limits


def daily_limit_of(operator_id: int, asset: str) -> int:
    return daily_limits(operator_id, [policy_for(asset)])[asset]


def daily_limits(operator_id: int, policies: list[AssetPolicy]) -> dict[str, int]:
    """The operator's daily limit in each policy's asset: its own, else the policy's."""
    own = operator_limits(operator_id)
    return {policy.asset: own.get(policy.asset, policy.operator_daily_limit)
            for policy in policies}


def operator_limits(operator_id: int) -> dict[str, int]:
    """The operator's own limits by asset (assets missing here use the policy's)."""
    rows = db.session.scalars(select(OperatorLimit).where(OperatorLimit.operator_id == operator_id))
    return {row.asset_code: row.daily_limit for row in rows}


def set_operator_limit(operator_id: int, asset: str, daily_limit: int | None) -> None:
    """The operator's own daily limit for `asset`; None goes back to the asset's policy."""
    if db.session.get(Asset, asset) is None:
        raise errors.UnknownAsset(f"asset {asset!r} does not exist", asset=asset)
    if daily_limit is not None:
        _check_amount("daily_limit", daily_limit, minimum=0)
    who = audit_events.current_actor()
    row = db.session.get(OperatorLimit, (operator_id, asset))
    before = row.daily_limit if row is not None else None
    if before == daily_limit:
        return
    if daily_limit is None:
        if row is not None:
            db.session.delete(row)
    else:
        row = row or OperatorLimit(operator_id=operator_id, asset_code=asset)
        row.daily_limit, row.updated_at, row.updated_by = daily_limit, utcnow(), who.label
        db.session.add(row)
    audit_events.record("operator.limit_changed", who=who, object_type="operator",
                        object_id=operator_id, asset=asset, daily_limit=[before, daily_limit])
    db.session.commit()


# ---------------------------------------------------------------- reason codes and tickets


def list_reason_codes(active_only: bool = True) -> list[ReasonCode]:
    query = select(ReasonCode).order_by(ReasonCode.code)
    if active_only:
        query = query.where(ReasonCode.active.is_(True))
    return list(db.session.scalars(query))


def ensure_reason_codes() -> None:
    """The starting list (seed.py; migration 0006 wrote the same list into existing databases)."""
    for code, title in DEFAULT_REASON_CODES:
        if db.session.get(ReasonCode, code) is None:
            db.session.add(ReasonCode(code=code, title=title, active=True, created_at=utcnow()))
    db.session.commit()


def check_reason_code(code) -> str:
    row = db.session.get(ReasonCode, code) if isinstance(code, str) and code else None
    if row is None or not row.active:
        raise errors.InvalidReasonCode("choose a reason code from the list", field="reason_code",
                                       reason_code=code if isinstance(code, str) else None)
    return row.code


def add_reason_code(code: str, title: str) -> ReasonCode:
    code, title = (code or "").strip().lower(), (title or "").strip()
    if not REASON_CODE.fullmatch(code):
        raise errors.InvalidReasonCode("code: 1 to 32 of a-z, 0-9 and _, starting with a letter",
                                       field="code")
    if not 0 < len(title) <= MAX_REASON_TITLE or holds_nul(title):
        raise errors.InvalidReasonCode(f"title: 1 to {MAX_REASON_TITLE} characters", field="title")
    if db.session.get(ReasonCode, code) is not None:
        raise errors.InvalidReasonCode(f"reason code {code!r} already exists", field="code")
    row = ReasonCode(code=code, title=title, active=True, created_at=utcnow())
    db.session.add(row)
    audit_events.record("reason_code.added", object_type="reason_code", object_id=code,
                        title=title)
    db.session.commit()
    return row


def set_reason_code_active(code: str, active: bool) -> ReasonCode:
    """Retire a code (it stays on the movements that carry it) or bring it back."""
    row = db.session.get(ReasonCode, code) if isinstance(code, str) else None
    if row is None:
        raise errors.InvalidReasonCode(f"no reason code {code!r}", field="code")
    if row.active != active:
        row.active = active
        audit_events.record("reason_code.changed", object_type="reason_code", object_id=code,
                            active=active)
        db.session.commit()
    return row


def check_ticket(ticket) -> str | None:
    """A ticket reference: an id such as SUP-1234 or an http(s) URL; empty means none."""
    text = ticket.strip() if isinstance(ticket, str) else ""
    if not text:
        return None
    if TICKET_ID.fullmatch(text) or _is_web_address(text):
        return text
    raise errors.InvalidTicket("ticket: an id such as SUP-1234, or an http(s):// link",
                               field="ticket")


def _is_web_address(text: str) -> bool:
    if len(text) > MAX_TICKET or not text.isprintable() or " " in text or not text.isascii():
        return False
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def ticket_link(ticket: str | None) -> str | None:
    """Where a ticket reference links to: itself when it is a web address."""
    return ticket if ticket and _is_web_address(ticket) else None


# ---------------------------------------------------------------- CLI


policy_cli = AppGroup("policy", help="Approval thresholds and operator daily limits per asset.")


@policy_cli.command("set")
@click.argument("asset")
@click.option("--approval-threshold", type=int, help="Dashboard movements of at least this "
              "amount need a second operator's approval.")
@click.option("--operator-daily-limit", type=int, help="What one operator may move per UTC "
              "day in this asset, requests awaiting approval included.")
def set_command(asset: str, approval_threshold: int | None,
                operator_daily_limit: int | None) -> None:
    """Change an asset's policy (an option left out keeps its value)."""
    current = policy_for(asset)
    try:
        changed = set_policy(
            asset,
            current.approval_threshold if approval_threshold is None else approval_threshold,
            current.operator_daily_limit if operator_daily_limit is None else operator_daily_limit)
    except errors.WalletError as error:
        raise click.ClickException(error.message) from None
    click.echo(_describe(changed))


@policy_cli.command("show")
def show_command() -> None:
    """Every asset's policy."""
    for policy in list_policies():
        click.echo(_describe(policy))


def _describe(policy: AssetPolicy) -> str:
    return (f"{policy.asset}: approval from {policy.approval_threshold:,}, "
            f"operator daily limit {policy.operator_daily_limit:,}")
