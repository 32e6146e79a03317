"""Dashboard movements under the operator controls (four-eyes, daily limits, reason codes).

Every dashboard movement is first a movement request, written with its maker's daily-limit
check in one transaction that locks the maker's operator row, so one operator's concurrent
submissions are counted one after the other. Below the asset's approval threshold the request
is posted at once; at or above it, it waits (`pending`) for another operator with the approver
right. The ledger transaction takes the request's reference_id, so posting is exactly once
however often it is tried (double clicks, two checkers, a retry after a crash), and its
metadata carries the reason code, ticket, request id and checker.

    posting -> posted | failed                       (below the threshold)
    pending -> approving -> approved | failed        (approved)
    pending -> rejected | expired

A maker's day (UTC) counts every request in posting, posted, approving and approved, and
pending ones until they expire, at the amount asked for.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from . import audit_events, controls, errors, events, holds, kinds, ledger, queries
from .accounts import MAX_REASON, write_transaction
from .audit_events import Who
from .extensions import db
from .inputs import holds_nul
from .limits import is_id
from .models import (
    Asset, BulkGrant, BulkGrantTotal, MovementRequest, Operator, Transaction, utcnow,
)

requests = MovementRequest.__table__
operators = Operator.__table__
grants = BulkGrant.__table__
grant_totals = BulkGrantTotal.__table__
COUNTED = ("posting", "posted", "approving", "approved")
SETTLED = ("posted", "approved")
STUCK_AFTER = timedelta(minutes=1)  # a request still posting/approving this long was cut off


@dataclass(frozen=True)
class Intent:
    """What a maker asks for. A reversal's asset, amount and user come from the original."""

    kind: str
    reference_id: str
    reason_code: str
    description: str
    asset: str = ""
    amount: int = 0
    ticket: str | None = None
    user_id: int | None = None
    to_user_id: int | None = None
    reverses_id: int | None = None
    hold_id: int | None = None  # a release of a hold (kind "void")


@dataclass(frozen=True)
class Outcome:
    request_id: int
    status: str  # posted or pending
    receipt: ledger.Receipt | None = None
    replayed: bool = False


class Person(Protocol):
    """Who makes or decides: the signed-in operator (operators.SignedIn)."""

    id: int
    label: str


# ---------------------------------------------------------------- submitting


def submit(intent: Intent, maker: Person) -> Outcome:
    """Post the movement, or send it for approval; refusals are audited and raised."""
    who = Who(maker.label, operator_id=maker.id)
    try:
        intent = _checked(intent)
        found = _request(intent, maker, who)
    except errors.WalletError as error:
        audit_events.record_refusal("movement.submitted", who=who, **_refusal(intent, error))
        raise
    if isinstance(found, Outcome):
        return found
    row, again = found
    outcome = _post_now(row)  # a ledger refusal is recorded on the request (failed)
    # The sending that opened the request is the first, even when a copy reached the ledger first.
    return replace(outcome, replayed=again)


def _refusal(intent: Intent, error: errors.WalletError) -> dict:
    return {"kind": intent.kind, "user_id": intent.user_id, "asset": intent.asset or None,
            "amount": intent.amount or None, "reference_id": intent.reference_id,
            "error": error.code, "message": error.message}


def _checked(intent: Intent) -> Intent:
    description = (intent.description or "").strip()
    if not description or len(description) > MAX_REASON or holds_nul(description):
        raise errors.InvalidRequest(f"reason: 1 to {MAX_REASON} characters, required",
                                    field="description")
    intent = replace(intent, description=description,
                     reason_code=controls.check_reason_code(intent.reason_code),
                     ticket=controls.check_ticket(intent.ticket))
    if intent.kind == "reversal":
        intent = _reversal_facts(intent)
    elif intent.kind == "void":
        intent = _release_facts(intent)
    elif intent.kind not in kinds.OPERATOR_FORMS and intent.kind != "transfer":
        raise errors.InvalidRequest(f"{intent.kind!r} is not a dashboard movement", field="kind")
    ledger.check_amount(intent.amount)
    ledger.check_reference(intent.reference_id)
    _check_exist(intent)
    return intent


def _check_exist(intent: Intent) -> None:
    """What the request row refers to (a foreign key would say it as a 500)."""
    if db.session.get(Asset, intent.asset) is None:
        raise errors.UnknownAsset(f"asset {intent.asset!r} does not exist", asset=intent.asset)
    for user_id in (intent.user_id, intent.to_user_id):
        if user_id is not None:
            queries.get_user(user_id)


def _reversal_facts(intent: Intent) -> Intent:
    """The user, asset and amount a reversal moves back: its wallet legs' (a house-only
    transaction: its credited legs')."""
    original = db.session.get(Transaction, intent.reverses_id) if is_id(intent.reverses_id) else None
    if original is None:
        raise errors.UnknownTransaction(f"transaction {intent.reverses_id} does not exist")
    if not kinds.is_reversible(original.kind):
        raise errors.NotReversible(f"a {original.kind} transaction cannot be reversed")
    legs = original.postings
    wallets = [leg for leg in legs if leg.account.kind == "wallet"] or legs
    credited = [leg for leg in legs if leg.amount > 0]
    return replace(intent, user_id=wallets[0].account.user_id,
                   asset=wallets[0].account.asset_code,
                   amount=sum(leg.amount for leg in credited))


def _release_facts(intent: Intent) -> Intent:
    """The user, asset and amount a release of a hold gives back: the hold's."""
    hold = queries.get_hold(intent.hold_id)
    if hold.status != "open" and _by_reference(intent.reference_id) is None:  # else: a replay
        raise holds.SETTLED[hold.status](f"hold {hold.id} is {hold.status}", hold_id=hold.id,
                                         status=hold.status)
    return replace(intent, user_id=hold.user_id, asset=hold.asset_code, amount=hold.amount)


def _fingerprint(intent: Intent) -> str:
    return ledger.fingerprint_of({
        "kind": intent.kind, "user_id": intent.user_id, "to_user_id": intent.to_user_id,
        "reverses_id": intent.reverses_id, "hold_id": intent.hold_id, "asset": intent.asset,
        "amount": intent.amount,
        "description": intent.description, "reason_code": intent.reason_code,
        "ticket": intent.ticket})


def _request(intent: Intent, maker: Person, who: Who):
    """An Outcome when there is nothing to post, else (the request to post, sent again?)."""
    fingerprint = _fingerprint(intent)
    existing = _by_reference(intent.reference_id)
    if existing is not None:
        return _again(existing, maker, fingerprint)
    threshold = controls.policy_for(intent.asset).approval_threshold
    limit = controls.daily_limit_of(maker.id, intent.asset)
    pending = intent.amount >= threshold
    try:
        row = _open(intent, maker, who, fingerprint, limit, pending)
    except IntegrityError:  # the same form, sent twice at once: the other one wrote it
        existing = _by_reference(intent.reference_id)
        if existing is None:
            raise
        return _again(existing, maker, fingerprint)
    return Outcome(row.id, "pending") if pending else (row, False)


def _by_reference(reference_id: str):
    db.session.rollback()  # a fresh snapshot
    return db.session.execute(select(requests).where(
        requests.c.reference_id == reference_id)).first()


def _again(row, maker: Person, fingerprint: str):
    """The same reference sent again: the first request's outcome, never a second one."""
    if row.maker_id != maker.id:
        raise errors.ReferenceTaken(f"reference_id {row.reference_id!r} is taken by another caller")
    if row.fingerprint != fingerprint:
        raise errors.IdempotencyConflict(
            f"reference_id {row.reference_id!r} was already used for a different request")
    if row.status in ("pending", "approving"):
        return Outcome(row.id, "pending", replayed=True)
    if row.status == "posting":  # in flight (the ledger waits for it), or cut off: completes it
        return row, True
    if row.status in SETTLED:
        return Outcome(row.id, "posted", _post(row), replayed=True)  # the ledger replays
    raise errors.RequestDecided(f"request #{row.id} was already {row.status}"
                                + (f": {row.failure}" if row.failure else ""),
                                request_id=row.id, status=row.status)


_REQUESTS_USED = (
    select(func.coalesce(func.sum(requests.c.amount), 0))
    .where(requests.c.maker_id == bindparam("maker_id"),
           requests.c.asset_code == bindparam("asset"),
           requests.c.created_at >= bindparam("day_start"),
           or_(requests.c.status.in_(COUNTED),
               and_(requests.c.status == "pending", requests.c.expires_at > bindparam("now"))))
)
# A bulk grant counts when it posts without a checker (bulk.py); an approved one does not.
_BULK_USED = (
    select(func.coalesce(func.sum(grant_totals.c.total), 0))
    .join_from(grant_totals, grants, grants.c.id == grant_totals.c.grant_id)
    .where(grants.c.maker_id == bindparam("maker_id"),
           grant_totals.c.asset_code == bindparam("asset"),
           grants.c.submitted_at >= bindparam("day_start"),
           grants.c.status.in_(("posting", "done")), grants.c.needs_approval.is_(False))
)
USED_TODAY = select(_REQUESTS_USED.scalar_subquery() + _BULK_USED.scalar_subquery())


def _open(intent: Intent, maker: Person, who: Who, fingerprint: str, limit: int, pending: bool):
    """The request row, within the maker's daily limit: checked and written in one
    transaction holding the maker's operator row, so concurrent submissions queue."""
    now = utcnow()
    with write_transaction() as conn:  # SQLite: the database's write lock from BEGIN
        lock_maker(conn, maker.id)
        check_daily_limit(conn, maker.id, intent.asset, intent.amount, limit, now)
        expires = now + timedelta(hours=current_app.config["APPROVAL_EXPIRY_HOURS"])
        row = conn.execute(insert(requests).values(
            reference_id=intent.reference_id, fingerprint=fingerprint, kind=intent.kind,
            status="pending" if pending else "posting", user_id=intent.user_id,
            to_user_id=intent.to_user_id, reverses_id=intent.reverses_id,
            hold_id=intent.hold_id, asset_code=intent.asset,
            amount=intent.amount, description=intent.description, reason_code=intent.reason_code,
            ticket=intent.ticket, maker_id=maker.id, maker=maker.label, created_at=now,
            expires_at=expires if pending else None,
        ).returning(*requests.c)).one()
        audit_events.record("approval.requested" if pending else "movement.submitted", conn=conn,
                            who=who, object_type="request", object_id=row.id,
                            **_summary(row))
    return row


def lock_maker(conn, maker_id: int) -> None:
    """Hold the maker's operator row, so that one maker's submissions are counted in turn."""
    conn.execute(select(operators.c.id).where(operators.c.id == maker_id)
                 .with_for_update(key_share=True))  # NO KEY UPDATE: an FK to it does not wait


def check_daily_limit(conn, maker_id: int, asset: str, amount: int, limit: int,
                      now: datetime) -> None:
    """DailyLimitExceeded unless `amount` more fits the maker's day (lock_maker first)."""
    used = conn.execute(USED_TODAY, {"maker_id": maker_id, "asset": asset,
                                     "day_start": _day_start(now), "now": now}).scalar_one()
    if used + amount > limit:
        left = max(limit - used, 0)
        raise errors.DailyLimitExceeded(
            f"above your daily {asset} limit: {left:,} of {limit:,} left today (UTC)",
            asset=asset, limit=limit, used=used, left=left)


def _summary(row) -> dict:
    return {"kind": row.kind, "user_id": row.user_id, "to_user_id": row.to_user_id,
            "reverses_id": row.reverses_id, "hold_id": row.hold_id, "asset": row.asset_code,
            "amount": row.amount,
            "reason_code": row.reason_code, "ticket": row.ticket,
            "reference_id": row.reference_id}


def used_today(operator_id: int, asset: str) -> int:
    """What the operator has used of today's limit in `asset`."""
    now = utcnow()
    return db.session.execute(USED_TODAY, {"maker_id": operator_id, "asset": asset,
                                           "day_start": _day_start(now), "now": now}).scalar_one()


def _day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


# ---------------------------------------------------------------- posting


def _post_now(row) -> Outcome:
    """Post a request below the threshold and record its outcome."""
    try:
        receipt = _post(row)
    except errors.WalletError as error:
        _finish(row.id, "posting", "failed", "movement.failed", failure=error.message,
                who=Who(row.maker, operator_id=row.maker_id), error=error.code)
        raise
    _finish(row.id, "posting", "posted", "movement.posted", transaction_id=receipt.id,
            who=Who(row.maker, operator_id=row.maker_id))
    return Outcome(row.id, "posted", receipt, receipt.replayed)


def _post(row, checker: Person | None = None) -> ledger.Receipt:
    """The ledger movement of a request, under its reference, as its maker's."""
    checked_by = (checker.label, checker.id) if checker else (row.checker, row.checker_id)
    metadata = {"reason_code": row.reason_code, "request_id": str(row.id)}
    if row.ticket:
        metadata["ticket"] = row.ticket
    if checked_by[0]:
        metadata.update(checker=checked_by[0], checker_id=str(checked_by[1]))
    options = dict(description=row.description, actor=ledger.Actor(row.maker, row.maker_id))
    if row.kind == "void":
        return holds.void(row.hold_id, row.reference_id, metadata=metadata, **options).receipt
    if row.kind == "reversal":
        return ledger.reverse(row.reverses_id, row.reference_id, metadata=metadata, **options)
    options["metadata"] = metadata
    if row.kind == "transfer":
        return ledger.transfer(row.user_id, row.to_user_id, row.asset_code, row.amount,
                               row.reference_id, **options)
    return ledger.move(row.kind, row.user_id, row.asset_code, row.amount, row.reference_id,
                       **options)


def _finish(request_id: int, was: str, status: str, action: str, *, who: Who,
            transaction_id: int | None = None, failure: str | None = None, **details) -> bool:
    """Move a request from `was` to `status` (once: False when another got there first)."""
    with write_transaction() as conn:
        changed = conn.execute(update(requests).where(
            requests.c.id == request_id, requests.c.status == was,
        ).values(status=status, transaction_id=transaction_id, failure=failure)).rowcount
        if changed:
            audit_events.record(action, conn=conn, who=who, object_type="request",
                                object_id=request_id, transaction_id=transaction_id,
                                failure=failure, **details)
    return bool(changed)


# ---------------------------------------------------------------- deciding


def approve(request_id: int, checker: Person, reason: str) -> ledger.Receipt:
    """Post a pending request as approved by `checker` (never its maker)."""
    row = _claim(request_id, checker, reason, "approving", "approved")
    who = Who(checker.label, operator_id=checker.id)
    try:
        receipt = _post(row, checker)
    except errors.WalletError as error:
        _finish(row.id, "approving", "failed", "approval.failed", who=who, failure=error.message,
                error=error.code)
        raise errors.RequestFailed(f"request #{row.id} was approved but cannot be posted: "
                                   f"{error.message}. Nothing moved.",
                                   **{**error.details, "request_id": row.id, "status": "failed",
                                      "reason": error.code, "failure": error.message}) from error
    _finish(row.id, "approving", "approved", "approval.approved", who=who,
            transaction_id=receipt.id)
    return receipt


def reject(request_id: int, checker: Person, reason: str) -> None:
    _claim(request_id, checker, reason, "rejected", "rejected", audit="approval.rejected")


def _claim(request_id: int, checker: Person, reason: str, status: str, verb: str,
           audit: str | None = None):
    """The request, moved from pending to `status` by this checker (and `audit` recorded in
    the same transaction), or the refusal, audited."""
    who = Who(checker.label, operator_id=checker.id)
    try:
        row = queries.get_request(request_id)
        check_checker(row.maker_id, checker, request_id=row.id)
        reason = checked_decision_reason(reason)
        now = utcnow()
        with write_transaction() as conn:
            claimed = conn.execute(update(requests).where(
                requests.c.id == row.id, requests.c.status == "pending",
                requests.c.expires_at > now,
            ).values(status=status, checker_id=checker.id, checker=checker.label,
                     decision_reason=reason, decided_at=now).returning(*requests.c)).first()
            if claimed is not None:
                events.emit(conn, "approval.decided", events.decision(
                    "movement_request", claimed, "rejected" if status == "rejected" else "approved"))
            if claimed is not None and audit:
                audit_events.record(audit, conn=conn, who=who, object_type="request",
                                    object_id=row.id, reason=reason)
        if claimed is None:
            _refuse_decided(row.id, verb)
        return claimed
    except errors.WalletError as error:
        audit_events.record_refusal("approval.refused", who=who, object_type="request",
                                    object_id=request_id, attempted=verb, error=error.code,
                                    message=error.message)
        raise


def check_checker(maker_id: int, checker: Person, **details) -> None:
    """May `checker` decide what `maker_id` asked for? (Never the maker, an approver only.)"""
    if maker_id == checker.id:
        raise errors.SelfApproval("you made this request: another operator must decide it",
                                  **details)
    rights = db.session.execute(select(operators.c.can_approve, operators.c.is_active)
                                .where(operators.c.id == checker.id)).first()
    if rights is None or not (rights.can_approve and rights.is_active):
        raise errors.NotAnApprover("you do not have the approver right", **details)


def checked_decision_reason(reason) -> str:
    reason = reason.strip() if isinstance(reason, str) else ""
    if not reason or len(reason) > MAX_REASON or holds_nul(reason):
        raise errors.InvalidRequest(f"reason: 1 to {MAX_REASON} characters, required",
                                    field="reason")
    return reason


def _refuse_decided(request_id: int, verb: str):
    expire_due()
    row = queries.get_request(request_id)
    status = "approved" if row.status == "approving" else row.status
    by = f" by {row.checker.removeprefix('operator:')}" if row.checker else ""
    if status == "expired":
        raise errors.RequestExpired(f"request #{row.id} expired at "
                                    f"{row.expires_at:%Y-%m-%d %H:%M} UTC: it cannot be {verb}",
                                    request_id=row.id, status=status)
    raise errors.RequestDecided(f"request #{row.id} was already {status}{by}",
                                request_id=row.id, status=status)


def expire_due() -> int:
    """Mark every pending request past its expiry as expired (audited); how many."""
    return expire_pending(requests, "request")


def expire_pending(table, object_type: str) -> int:
    """Expire the rows of `table` (requests, bulk grants) pending past their expires_at."""
    now = utcnow()
    with write_transaction() as conn:
        expired = conn.execute(update(table).where(
            table.c.status == "pending", table.c.expires_at <= now,
        ).values(status="expired", decided_at=now).returning(table.c.id)).all()
        for (row_id,) in expired:
            audit_events.record("approval.expired", conn=conn, who=Who("system"),
                                object_type=object_type, object_id=row_id)
    return len(expired)


def settle_stuck() -> int:
    """Finish requests a crash left posting or approving: the post is idempotent by
    reference, so it either finds the transaction or makes it now."""
    cutoff = utcnow() - STUCK_AFTER
    db.session.rollback()
    stuck = db.session.execute(select(requests).where(
        requests.c.status.in_(("posting", "approving")),
        func.coalesce(requests.c.decided_at, requests.c.created_at) < cutoff)).all()
    for row in stuck:
        try:
            if row.status == "posting":
                _post_now(row)
            else:
                _settle_approval(row)
        except errors.WalletError:
            pass  # recorded as failed by _post_now / _settle_approval
    return len(stuck)


def _settle_approval(row) -> None:
    who = Who(row.checker, operator_id=row.checker_id)
    try:
        receipt = _post(row)
    except errors.WalletError as error:
        _finish(row.id, "approving", "failed", "approval.failed", who=who, failure=error.message,
                error=error.code)
        return
    _finish(row.id, "approving", "approved", "approval.approved", who=who,
            transaction_id=receipt.id)


# ---------------------------------------------------------------- CLI


approvals_cli = AppGroup("approvals", help="Four-eyes approval requests.")


@approvals_cli.command("sweep")
def sweep_command() -> None:
    """Expire pending requests past their time and finish any a crash cut off."""
    expired, settled = expire_due(), settle_stuck()
    click.echo(f"expired {expired} request(s); settled {settled} cut-off request(s)")
