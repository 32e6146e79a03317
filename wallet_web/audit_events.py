"""The audit trail of people: every operator and admin action, and every refused attempt,
as an append-only row (database triggers refuse UPDATE and DELETE, as on the ledger).

A change and its event are written in one database transaction: `record` adds the event to
the caller's connection (or to the session, which the caller commits). A refusal rolls the
change back, so `record_refusal` writes its event in a transaction of its own.

Who did it, from where and in which request come from the request context: the signed-in
operator, else the API key, else the command line.
"""
from __future__ import annotations

import getpass
from dataclasses import dataclass

from flask import g, has_request_context, request
from flask_login import current_user
from sqlalchemy import Connection, insert

from .extensions import db
from .models import AuditEvent, utcnow

audit_events = AuditEvent.__table__

# The actions recorded, one place: the audit page's filter and the tests read this.
ACTIONS = (
    "login.succeeded", "login.failed", "login.locked_out", "logout",
    "movement.submitted", "movement.posted", "movement.failed",
    "approval.requested", "approval.approved", "approval.rejected", "approval.expired",
    "approval.failed", "approval.refused",
    "bulk.uploaded", "bulk.submitted", "bulk.finished", "bulk.refused",
    "user.created", "user.frozen", "user.unfrozen", "user.closed",
    "operator.created", "operator.disabled", "operator.enabled", "operator.role_changed",
    "operator.approver_changed", "operator.password_set", "operator.limit_changed",
    "api_key.created", "api_key.revoked",
    "policy.changed", "reason_code.added", "reason_code.changed",
    "export.downloaded", "access.denied",
    "webhook.created", "webhook.enabled", "webhook.disabled", "webhook.redelivered",
)


@dataclass(frozen=True)
class Who:
    label: str
    operator_id: int | None = None
    api_key_id: int | None = None


def current_actor() -> Who:
    """The operator signed in, else the API key of the request, else the command line."""
    if has_request_context():
        if current_user and current_user.is_authenticated:
            return Who(current_user.label, operator_id=current_user.id)
        caller = g.get("api_key")
        if caller is not None:
            return Who(f"api:{caller.name}", api_key_id=caller.id)
        return Who("anonymous")
    return Who(f"cli:{_os_user()}")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's arbitrary user)
        return "unknown"


def _row(action: str, outcome: str, who: Who | None, object_type: str | None,
         object_id, details: dict) -> dict:
    assert action in ACTIONS, action
    who = who or current_actor()
    in_request = has_request_context()
    return {
        "created_at": utcnow(), "action": action, "outcome": outcome, "actor": who.label[:128],
        "operator_id": who.operator_id, "api_key_id": who.api_key_id,
        "address": (request.remote_addr or "")[:64] or None if in_request else None,
        "request_id": g.get("request_id") if in_request else None,
        "object_type": object_type, "object_id": None if object_id is None else str(object_id),
        "details": {key: value for key, value in details.items() if value is not None} or None,
    }


def record(action: str, *, conn: Connection | None = None, who: Who | None = None,
           object_type: str | None = None, object_id=None, **details) -> None:
    """An action done, in the caller's transaction: `conn`, or the session (caller commits)."""
    row = _row(action, "done", who, object_type, object_id, details)
    if conn is not None:
        conn.execute(insert(audit_events), row)
    else:
        db.session.execute(insert(audit_events), row)


def record_refusal(action: str, *, who: Who | None = None, object_type: str | None = None,
                   object_id=None, **details) -> None:
    """An attempt that was refused: written and committed at once, on its own connection
    (whatever the caller's transaction held has been rolled back)."""
    row = _row(action, "refused", who, object_type, object_id, details)
    with db.engine.begin() as conn:
        conn.execute(insert(audit_events), row)
