"""The dashboard's actions (its POST routes but login and logout): what each needs, who may
take it (the README's role table), and how to see that it took effect or changed nothing, and
that a refusal was recorded in the audit trail."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from flask import Flask, url_for
from sqlalchemy import select

from wallet_web import accounts, api_keys, bulk, controls, holds, operators, queries, webhooks
from wallet_web.extensions import db
from wallet_web.models import AuditEvent, MovementRequest

from .conftest import OPENING, PASSWORD, REASON_CODE, Customer, gold_of, request_row, threshold
from .webhook_records import add_delivery, add_endpoint, delivery, disable_after_failures, endpoint

ROLES = ("viewer", "auditor", "operator", "admin")


@dataclass(frozen=True)
class World:
    """Real records for the actions to act on, made for the test (no seeded id)."""

    user_id: int  # a user holding OPENING GOLD
    topup_id: int  # the user's opening top-up, which an admin may reverse
    empty_user_id: int  # an active user holding nothing: a transfer's recipient, one to close
    frozen_user_id: int
    active_operator_id: int
    disabled_operator_id: int
    key_id: int
    request_id: int  # another operator's top-up of the user, waiting for approval
    colleague_id: int  # an operator without the approver right
    approver_id: int  # an operator holding it
    hold_user_id: int  # a user holding HOLDER_GOLD, HELD of it in an open hold
    hold_id: int
    grant_id: int  # a colleague's draft bulk grant of one row to the user
    webhook_id: int  # an active webhook endpoint
    disabled_webhook_id: int  # one disabled after failing too long
    delivery_id: int  # a failed delivery to the active endpoint


RETIRED_CODE = "fraud_recovery"  # retired in the world, for an admin to restore
HOLDER_GOLD, HELD = 50, 20


def make_world(customer: Customer, make_user, make_request) -> World:
    empty, frozen = make_user(name="emma"), make_user(name="fred")
    accounts.change_status(frozen, "freeze", "Frozen for the test")
    active = operators.create_operator("target-active", PASSWORD, "viewer")
    disabled = operators.create_operator("target-disabled", PASSWORD, "viewer")
    operators.set_active(disabled.id, False)
    colleague = operators.create_operator("target-colleague", PASSWORD, "operator")
    approver = operators.create_operator("target-approver", PASSWORD, "operator", True)
    controls.set_reason_code_active(RETIRED_CODE, False)
    key, _ = api_keys.create_key("target-key", "read")
    holder = make_user(balance=HOLDER_GOLD, name="holly")
    hold = holds.place(holder, "GOLD", HELD, "matrix-hold", expires_in_seconds=3600).hold
    grant = bulk.preview(f"user_id,asset,amount\n{customer.id},GOLD,5\n".encode(), "matrix.csv",
                         "bonus", operators.open_session(colleague))
    webhook = add_endpoint("https://matrix.example.com/active")
    failing = add_endpoint("https://matrix.example.com/failing")
    disable_after_failures(failing, "Failing for the test")
    return World(customer.id, customer.opening_id, empty, frozen, active.id, disabled.id, key.id,
                 make_request(customer.id), colleague.id, approver.id, holder, hold.id,
                 grant.grant_id, webhook, failing, add_delivery(webhook, status="failed"))


def status_of(user_id: int) -> str:
    db.session.rollback()
    return queries.get_user(user_id).status


def registered(username: str) -> bool:
    db.session.rollback()
    return username in [user.username for user in queries.find_users(username)]


def operator_is_active(operator_id: int) -> bool:
    db.session.rollback()
    return operators.get_operator(operator_id).is_active


def operator_of(operator_id: int):
    db.session.rollback()
    return operators.get_operator(operator_id)


def own_limits(operator_id: int) -> dict[str, int]:
    db.session.rollback()
    return controls.operator_limits(operator_id)


def gold_policy() -> tuple[int, int]:
    db.session.rollback()
    policy = controls.policy_for("GOLD")
    return policy.approval_threshold, policy.operator_daily_limit


def reason_code_active(code: str) -> bool | None:
    db.session.rollback()
    return {row.code: row.active for row in controls.list_reason_codes(active_only=False)}.get(code)


def key_is_revoked(key_id: int) -> bool:
    db.session.rollback()
    return next(key for key in api_keys.list_keys() if key.id == key_id).revoked_at is not None


def webhook_added(url: str) -> bool:
    db.session.rollback()
    return [endpoint.url for endpoint in webhooks.list_endpoints()].count(url) == 1


def movement(kind: str, amount: int = 5) -> dict:
    return {f"{kind}-asset": "GOLD", f"{kind}-amount": str(amount), f"{kind}-reason": "Matrix",
            f"{kind}-reason_code": REASON_CODE, f"{kind}-reference_id": f"web-matrix-{kind}"}


def released(world: World) -> bool:
    db.session.rollback()
    return (queries.get_hold(world.hold_id).status == "voided"
            and gold_of(world.hold_user_id) == HOLDER_GOLD)


def _release(world: World) -> dict:
    prefix = f"release-{world.hold_id}"
    return {f"{prefix}-reason": "Matrix", f"{prefix}-reason_code": REASON_CODE,
            f"{prefix}-reference_id": "web-matrix-release"}


def decided(request_id: int, status: str) -> bool:
    return request_row(request_id).status == status


def _decision(decision: str, status: str, moves: bool) -> Action:
    """The world's request decided: approved, it credits the user its amount (threshold())."""
    return Action("approvals.decide",
                  lambda w: {"request_id": w.request_id, "decision": decision},
                  {f"{decision}-reason": "Matrix"}, 303,
                  lambda w: decided(w.request_id, status)
                  and gold_of(w.user_id) == OPENING + (threshold() if moves else 0))


@dataclass(frozen=True)
class Action:
    endpoint: str
    values: Callable[[World], dict]  # the route's arguments, from the world's records
    form: dict | Callable[[World], dict]
    status: int  # the answer to a successful post
    took_effect: Callable[[World], bool]

    def path(self, app: Flask, world: World) -> str:
        with app.test_request_context():
            return url_for(self.endpoint, **self.values(world))

    def data(self, world: World) -> dict:
        return self.form(world) if callable(self.form) else self.form

    def rule_values(self, world: World) -> dict:
        """The values of the route's `any(...)` arguments: which variant of the rule this is."""
        return {name: value for name, value in self.values(world).items()
                if isinstance(value, str)}


def _movement(kind: str, change: int) -> Action:
    return Action("users.movement", lambda w: {"user_id": w.user_id, "kind": kind},
                  movement(kind), 303, lambda w: gold_of(w.user_id) == OPENING + change)


def _transfer(world: World) -> dict:
    return {**movement("transfer"), "transfer-to_user_id": str(world.empty_user_id)}


def _status(action: str, user: Callable[[World], int], status: str) -> Action:
    return Action("users.change_status", lambda w: {"user_id": user(w), "action": action},
                  {f"{action}-reason": "Matrix", f"{action}-confirm": "y"}, 303,
                  lambda w: status_of(user(w)) == status)


ACTIONS = {
    "top up": _movement("topup", +5),
    "bonus": _movement("bonus", +5),
    "spend": _movement("spend", -5),
    "transfer": Action(
        "users.transfer", lambda w: {"user_id": w.user_id}, _transfer, 303,
        lambda w: (gold_of(w.user_id), gold_of(w.empty_user_id)) == (OPENING - 5, 5)),
    "release a hold": Action(
        "users.release", lambda w: {"user_id": w.hold_user_id, "hold_id": w.hold_id}, _release,
        303, released),
    "register a user": Action(
        "users.create_user", lambda w: {},
        {"username": "newcomer", "email": "newcomer@example.com"}, 303,
        lambda w: registered("newcomer")),
    "freeze a user": _status("freeze", lambda w: w.user_id, "frozen"),
    "unfreeze a user": _status("unfreeze", lambda w: w.frozen_user_id, "active"),
    "close a user": _status("close", lambda w: w.empty_user_id, "closed"),
    "reverse": Action(
        "ledger.reverse", lambda w: {"tx_id": w.topup_id},
        {"reason": "Matrix", "reason_code": REASON_CODE, "confirm": "y",
         "reference_id": "web-matrix-reversal"}, 303,
        lambda w: queries.reversal_of(w.topup_id) is not None and gold_of(w.user_id) == 0),
    "create an operator": Action(
        "admin.create_operator", lambda w: {},
        {"username": "newop", "password": "long enough pass", "role": "viewer"}, 303,
        lambda w: getattr(operators.find_operator("newop"), "role", None) == "viewer"),
    "disable an operator": Action(
        "admin.set_operator_active",
        lambda w: {"operator_id": w.active_operator_id, "change": "disable"}, {}, 303,
        lambda w: not operator_is_active(w.active_operator_id)),
    "enable an operator": Action(
        "admin.set_operator_active",
        lambda w: {"operator_id": w.disabled_operator_id, "change": "enable"}, {}, 303,
        lambda w: operator_is_active(w.disabled_operator_id)),
    "create an API key": Action(
        "admin.create_key", lambda w: {}, {"name": "new-key", "scope": "read"}, 201,
        lambda w: [key.name for key in api_keys.list_keys()].count("new-key") == 1),
    "revoke an API key": Action(
        "admin.revoke_key", lambda w: {"key_id": w.key_id}, {}, 303,
        lambda w: key_is_revoked(w.key_id)),
    "change an operator's role": Action(
        "admin.set_operator_role", lambda w: {"operator_id": w.active_operator_id},
        {"role": "auditor"}, 303, lambda w: operator_of(w.active_operator_id).role == "auditor"),
    "grant the approver right": Action(
        "admin.set_operator_approver",
        lambda w: {"operator_id": w.colleague_id, "change": "grant"}, {}, 303,
        lambda w: operator_of(w.colleague_id).can_approve),
    "revoke the approver right": Action(
        "admin.set_operator_approver",
        lambda w: {"operator_id": w.approver_id, "change": "revoke"}, {}, 303,
        lambda w: not operator_of(w.approver_id).can_approve),
    "set an operator's daily limits": Action(
        "admin.set_operator_limits", lambda w: {"operator_id": w.colleague_id},
        {"limit-GOLD": "1000"}, 303, lambda w: own_limits(w.colleague_id) == {"GOLD": 1000}),
    "set an asset's policy": Action(
        "admin.set_policy", lambda w: {},
        {"asset": "GOLD", "GOLD-approval_threshold": "5000",
         "GOLD-operator_daily_limit": "60000"}, 303,
        lambda w: gold_policy() == (5000, 60000)),
    "add a reason code": Action(
        "admin.add_reason_code", lambda w: {}, {"code": "matrix", "title": "Matrix"}, 303,
        lambda w: reason_code_active("matrix") is True),
    "retire a reason code": Action(
        "admin.set_reason_code_active", lambda w: {"change": "retire"}, {"code": "promotion"},
        303, lambda w: reason_code_active("promotion") is False),
    "restore a reason code": Action(
        "admin.set_reason_code_active", lambda w: {"change": "restore"}, {"code": RETIRED_CODE},
        303, lambda w: reason_code_active(RETIRED_CODE) is True),
    "add a webhook endpoint": Action(
        "admin.create_webhook", lambda w: {},
        {"url": "https://matrix.example.com/new", "event_types": "user.created"}, 201,
        lambda w: webhook_added("https://matrix.example.com/new")),
    "disable a webhook endpoint": Action(
        "admin.set_webhook_active", lambda w: {"endpoint_id": w.webhook_id, "change": "disable"},
        {}, 303, lambda w: not endpoint(w.webhook_id).active),
    "enable a webhook endpoint": Action(
        "admin.set_webhook_active",
        lambda w: {"endpoint_id": w.disabled_webhook_id, "change": "enable"}, {}, 303,
        lambda w: endpoint(w.disabled_webhook_id).active),
    "redeliver a webhook delivery": Action(
        "admin.redeliver_webhook",
        lambda w: {"endpoint_id": w.webhook_id, "delivery_id": w.delivery_id}, {}, 303,
        lambda w: delivery(w.webhook_id, w.delivery_id).status == "pending"),
    # Admins hold the approver right unless told otherwise; operators only when given it.
    "approve a request": _decision("approve", "approved", moves=True),
    "reject a request": _decision("reject", "rejected", moves=False),
}

MAY = {  # the README's role table
    "viewer": set(),
    "auditor": set(),  # reads, and the audit trail: no action
    "operator": {"top up", "bonus", "spend", "transfer", "release a hold", "register a user",
                 "freeze a user", "unfreeze a user"},
    "admin": set(ACTIONS),
}


def lowest_role_allowed(name: str) -> str:
    return next(role for role in ROLES if name in MAY[role])


# Written by every login and request whatever it does: not part of what an action changes. The
# audit trail records refusals too: tests look at it on its own (refusals()).
UNTRACKED = {"operator_sessions", "login_throttles", "audit_events"}


def changed_nothing_but_refused_requests(before: dict) -> bool:
    """Nothing changed since `before` but the requests the service refused after writing
    them (approvals.py records a ledger refusal on its request, as failed)."""
    after = snapshot()
    added = [row for row in after.pop("movement_requests")
             if row not in before["movement_requests"]]
    failed = MovementRequest.__table__.c.keys().index("status")
    return ({name: rows for name, rows in before.items() if name != "movement_requests"} == after
            and all(row[failed] == "failed" for row in added))


def refusals(action: str = "access.denied") -> list[AuditEvent]:
    """The refused attempts of the audit trail, oldest first."""
    db.session.rollback()
    return list(db.session.scalars(select(AuditEvent).filter_by(action=action, outcome="refused")
                                   .order_by(AuditEvent.id)))


def snapshot() -> dict[str, list[tuple]]:
    """Every row of every table an action could change (the ledger, users, operators, keys)."""
    db.session.rollback()
    return {table.name: [tuple(row) for row in db.session.execute(
                select(table).order_by(*table.primary_key.columns))]
            for table in db.metadata.sorted_tables if table.name not in UNTRACKED}
