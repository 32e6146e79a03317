"""Operator accounts of the dashboard: creation, password login, sessions, roles, CLI.

Passwords are stored as werkzeug hashes (scrypt). Failed logins are throttled per client
address and typed name (login_throttle.py); while throttled even the right password is refused,
so a guesser learns nothing from the answer. A login opens a session row (operator_sessions.py)
that logout, a new password and disabling end.
"""
from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass

import click
from flask.cli import AppGroup
from flask_login import UserMixin
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from . import audit_events, errors, login_throttle, operator_sessions
from .errors import DuplicateOperator, InvalidOperator, LockedOut, UnknownOperator
from .extensions import db
from .limits import is_id
from .models import OPERATOR_ROLES, Operator, utcnow

# What each role may do: viewers read; auditors read and browse the audit trail; operators read
# and move value; admins do everything.
ROLE_GRANTS = {"viewer": {"viewer"}, "auditor": {"viewer", "auditor"},
               "operator": {"viewer", "operator"}, "admin": set(OPERATOR_ROLES)}
APPROVER_ROLES = ("operator", "admin")  # the roles that move value may hold the approver right
MIN_PASSWORD_LENGTH = 10
DEMO_ADMIN = "admin"
USERNAME_CHARACTERS = set("abcdefghijklmnopqrstuvwxyz0123456789._-")
_dummy_hash: list[str] = []  # compared against for unknown usernames, to equalise timing


@dataclass(frozen=True)
class SignedIn(UserMixin):
    """The session's operator as plain values (Flask-Login's current_user)."""

    id: int
    username: str
    role: str
    session_token: str = ""
    can_approve: bool = False  # may approve or reject another operator's request

    def get_id(self) -> str:
        """What Flask-Login keeps in the cookie: the session's token, not the operator's id."""
        return self.session_token

    def has_role(self, role: str) -> bool:
        return role in ROLE_GRANTS[self.role]

    @property
    def label(self) -> str:
        return f"operator:{self.username}"


def open_session(operator: Operator) -> SignedIn:
    token = operator_sessions.start(operator.id)
    return SignedIn(operator.id, operator.username, operator.role, token, operator.can_approve)


# ---------------------------------------------------------------- management


def create_operator(username: str, password: str, role: str,
                    can_approve: bool | None = None) -> Operator:
    """A new operator; admins hold the approver right unless told otherwise."""
    username = _checked_username(username)
    _check_role(role)
    can_approve = role == "admin" if can_approve is None else can_approve
    _check_approver(role, can_approve)
    _check_password(password)
    if find_operator(username) is not None:
        raise DuplicateOperator(f"operator {username!r} already exists", field="username")
    operator = Operator(username=username, password_hash=generate_password_hash(password),
                        role=role, is_active=True, can_approve=can_approve, created_at=utcnow())
    db.session.add(operator)
    try:
        db.session.flush()
        audit_events.record("operator.created", object_type="operator", object_id=operator.id,
                            username=username, role=role, can_approve=can_approve)
        db.session.commit()
    except IntegrityError:  # created by a concurrent request since the check above
        db.session.rollback()
        raise DuplicateOperator(f"operator {username!r} already exists", field="username") from None
    return operator


def _check_role(role: str) -> None:
    if role not in OPERATOR_ROLES:
        raise InvalidOperator(f"role must be one of {', '.join(OPERATOR_ROLES)}", field="role")


def _check_approver(role: str, can_approve: bool) -> None:
    if can_approve and role not in APPROVER_ROLES:
        raise InvalidOperator(f"only {' and '.join(APPROVER_ROLES)}s may hold the approver right",
                              field="can_approve")


def set_role(operator_id: int, role: str) -> Operator:
    """A new role (open sessions read it at their next request); the approver right goes
    with a role that cannot move value."""
    _check_role(role)
    operator = get_operator(operator_id)
    before = operator.role
    if before != role:
        operator.role = role
        if operator.can_approve and role not in APPROVER_ROLES:
            operator.can_approve = False
        audit_events.record("operator.role_changed", object_type="operator",
                            object_id=operator.id, role=[before, role])
    db.session.commit()
    return operator


def set_approver(operator_id: int, can_approve: bool) -> Operator:
    operator = get_operator(operator_id)
    _check_approver(operator.role, can_approve)
    if operator.can_approve != can_approve:
        operator.can_approve = can_approve
        audit_events.record("operator.approver_changed", object_type="operator",
                            object_id=operator.id, can_approve=can_approve)
    db.session.commit()
    return operator


def _checked_username(username: str) -> str:
    username = normalised(username)
    if not 0 < len(username) <= 64 or not set(username) <= USERNAME_CHARACTERS:
        raise InvalidOperator("username: 1 to 64 of a-z, 0-9, '.', '_' and '-'", field="username")
    return username


def normalised(username: str) -> str:
    return (username or "").strip().lower()


def find_operator(username: str) -> Operator | None:
    query = select(Operator).where(Operator.username == normalised(username))
    return db.session.scalars(query).first()


def get_operator(operator_id: int) -> Operator:
    operator = db.session.get(Operator, operator_id) if is_id(operator_id) else None
    if operator is None:
        raise UnknownOperator(f"operator {operator_id} does not exist", operator_id=operator_id)
    return operator


def list_operators() -> list[Operator]:
    return list(db.session.scalars(select(Operator).order_by(Operator.username)))


def set_active(operator_id: int, active: bool) -> Operator:
    """Disabling ends the operator's sessions; enabling unlocks their name."""
    operator = get_operator(operator_id)
    if operator.is_active != active:
        audit_events.record("operator.enabled" if active else "operator.disabled",
                            object_type="operator", object_id=operator.id)
    operator.is_active = active
    if active:
        login_throttle.forget_name(operator.username)
    else:
        operator_sessions.end_all(operator.id, "disabled")
    db.session.commit()
    return operator


def set_password(operator_id: int, password: str) -> Operator:
    """A new password ends the operator's sessions and unlocks their name."""
    _check_password(password)
    operator = get_operator(operator_id)
    operator.password_hash = generate_password_hash(password)
    operator_sessions.end_all(operator.id, "password_changed")
    audit_events.record("operator.password_set", object_type="operator", object_id=operator.id)
    login_throttle.forget_name(operator.username)
    db.session.commit()
    return operator


def _check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise InvalidOperator(f"password must have at least {MIN_PASSWORD_LENGTH} characters",
                              field="password")


def load_signed_in(session_token: str) -> SignedIn | None:
    """Flask-Login's user loader: the operator of a live session, only while active."""
    live = operator_sessions.find_live(session_token)
    if live is None:
        return None
    return SignedIn(live.operator_id, live.username, live.role, session_token, live.can_approve)


def ensure_demo_admin() -> str:
    """One line for seed.py in development: a demo admin with a random password, shown once."""
    existing = find_operator(DEMO_ADMIN)
    if existing is not None:
        return (f"demo operator {DEMO_ADMIN!r} exists; for a new password: "
                f"flask --app wsgi operators set-password {DEMO_ADMIN}")
    password = secrets.token_urlsafe(12)
    create_operator(DEMO_ADMIN, password, "admin")
    return f"demo dashboard login (admin role, shown once): {DEMO_ADMIN} / {password}"


# ---------------------------------------------------------------- login


def authenticate(username: str, password: str, address: str) -> Operator | None:
    """The operator for a right password from the client `address`; None for a wrong one, an
    unknown name or a disabled operator, all counted alike; LockedOut while throttled."""
    username = normalised(username)
    if login_throttle.is_locked(address, username):
        raise LockedOut("too many failed attempts; try again later")
    operator = find_operator(username)
    known = operator is not None and operator.is_active
    hashed = operator.password_hash if known else _dummy()  # the same work for every name
    if not check_password_hash(hashed, password or "") or not known:
        login_throttle.record_failure(address, username)
        return None
    login_throttle.forget_name_at(address, username)
    db.session.commit()
    return operator


def _dummy() -> str:
    if not _dummy_hash:
        _dummy_hash.append(generate_password_hash("not-a-password"))
    return _dummy_hash[0]


# ---------------------------------------------------------------- CLI


operators_cli = AppGroup("operators", help="Create, list and disable dashboard operators.")


@operators_cli.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(OPERATOR_ROLES), default="viewer", show_default=True)
@click.option("--approver/--no-approver", default=None,
              help="May approve other operators' requests (default: admins only).")
def create_command(username: str, role: str, approver: bool | None) -> None:
    """Create an operator; the password is read from stdin when it is not a terminal."""
    password = _read_password()
    try:
        operator = create_operator(username, password, role, approver)
    except errors.WalletError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"created operator {operator.id} {operator.username!r} role={operator.role}")


def _read_password() -> str:
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return sys.stdin.readline().rstrip("\r\n")


@operators_cli.command("list")
def list_command() -> None:
    """Operators with id, role and state."""
    for operator in list_operators():
        state = "active" if operator.is_active else "disabled"
        click.echo(f"{operator.id}\t{operator.username}\t{operator.role}\t{state}")


@operators_cli.command("set-password")
@click.argument("username")
def set_password_command(username: str) -> None:
    """Set a new password (read from stdin when it is not a terminal); unlocks the account."""
    operator = _named(username)
    try:
        set_password(operator.id, _read_password())
    except errors.WalletError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"new password set for operator {operator.username!r}")


def _named(username: str) -> Operator:
    operator = find_operator(username)
    if operator is None:
        raise click.ClickException(f"operator {username!r} does not exist")
    return operator


@operators_cli.command("disable")
@click.argument("username")
def disable_command(username: str) -> None:
    """Disable an operator: no login, and open sessions end at their next request."""
    operator = _named(username)
    set_active(operator.id, False)
    click.echo(f"disabled operator {operator.username!r}")
