"""The dashboard's actions (its POST routes but login and logout): what each needs, who may
take it (the README's role table), and how to see that it took effect or changed nothing."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from flask import Flask, url_for
from sqlalchemy import select

from wallet_web import accounts, api_keys, operators, queries
from wallet_web.extensions import db

from .conftest import OPENING, PASSWORD, Customer, gold_of

ROLES = ("viewer", "operator", "admin")


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


def make_world(customer: Customer, make_user) -> World:
    empty, frozen = make_user(name="emma"), make_user(name="fred")
    accounts.change_status(frozen, "freeze", "Frozen for the test")
    active = operators.create_operator("target-active", PASSWORD, "viewer")
    disabled = operators.create_operator("target-disabled", PASSWORD, "viewer")
    operators.set_active(disabled.id, False)
    key, _ = api_keys.create_key("target-key", "read")
    return World(customer.id, customer.opening_id, empty, frozen, active.id, disabled.id, key.id)


def status_of(user_id: int) -> str:
    db.session.rollback()
    return queries.get_user(user_id).status


def registered(username: str) -> bool:
    db.session.rollback()
    return username in [user.username for user in queries.find_users(username)]


def operator_is_active(operator_id: int) -> bool:
    db.session.rollback()
    return operators.get_operator(operator_id).is_active


def key_is_revoked(key_id: int) -> bool:
    db.session.rollback()
    return next(key for key in api_keys.list_keys() if key.id == key_id).revoked_at is not None


def movement(kind: str, amount: int = 5) -> dict:
    return {f"{kind}-asset": "GOLD", f"{kind}-amount": str(amount), f"{kind}-reason": "Matrix",
            f"{kind}-reference_id": f"web-matrix-{kind}"}


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
    "register a user": Action(
        "users.create_user", lambda w: {},
        {"username": "newcomer", "email": "newcomer@example.com"}, 303,
        lambda w: registered("newcomer")),
    "freeze a user": _status("freeze", lambda w: w.user_id, "frozen"),
    "unfreeze a user": _status("unfreeze", lambda w: w.frozen_user_id, "active"),
    "close a user": _status("close", lambda w: w.empty_user_id, "closed"),
    "reverse": Action(
        "ledger.reverse", lambda w: {"tx_id": w.topup_id},
        {"reason": "Matrix", "confirm": "y", "reference_id": "web-matrix-reversal"}, 303,
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
}

MAY = {  # the README's role table
    "viewer": set(),
    "operator": {"top up", "bonus", "spend", "transfer", "register a user", "freeze a user",
                 "unfreeze a user"},
    "admin": set(ACTIONS),
}


def lowest_role_allowed(name: str) -> str:
    return next(role for role in ROLES if name in MAY[role])


# Written by every login and request whatever it does: not part of what an action changes.
UNTRACKED = {"operator_sessions", "login_throttles"}


def snapshot() -> dict[str, list[tuple]]:
    """Every row of every table an action could change (the ledger, users, operators, keys)."""
    db.session.rollback()
    return {table.name: [tuple(row) for row in db.session.execute(
                select(table).order_by(*table.primary_key.columns))]
            for table in db.metadata.sorted_tables if table.name not in UNTRACKED}
