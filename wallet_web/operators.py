"""Operator accounts of the dashboard: creation, password login with lockout, roles, CLI.

Passwords are stored as werkzeug hashes (scrypt). After LOGIN_MAX_FAILURES wrong passwords in
a row an account is locked for LOGIN_LOCKOUT_SECONDS; while locked even the right password is
refused, so a guesser learns nothing from the answer.
"""
from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass
from datetime import timedelta

import click
from flask import current_app
from flask.cli import AppGroup
from flask_login import UserMixin
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from . import errors
from .extensions import db
from .models import OPERATOR_ROLES, Operator, utcnow

ROLE_RANK = {"viewer": 0, "operator": 1, "admin": 2}
MIN_PASSWORD_LENGTH = 10
DEMO_ADMIN = "admin"
USERNAME_CHARACTERS = set("abcdefghijklmnopqrstuvwxyz0123456789._-")
_dummy_hash: list[str] = []  # compared against for unknown usernames, to equalise timing


class InvalidOperator(errors.LedgerError):
    code = "invalid_operator"
    status = 422


class DuplicateOperator(errors.LedgerError):
    code = "operator_exists"
    status = 409


class UnknownOperator(errors.NotFound):
    code = "operator_not_found"


class LockedOut(errors.LedgerError):
    code = "operator_locked"
    status = 429


@dataclass(frozen=True)
class SignedIn(UserMixin):
    """The session's operator as plain values (Flask-Login's current_user)."""

    id: int
    username: str
    role: str

    def has_role(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]

    @property
    def label(self) -> str:
        return f"operator:{self.username}"


def signed_in(operator: Operator) -> SignedIn:
    return SignedIn(operator.id, operator.username, operator.role)


# ---------------------------------------------------------------- management


def create_operator(username: str, password: str, role: str) -> Operator:
    username = _checked_username(username)
    if role not in OPERATOR_ROLES:
        raise InvalidOperator(f"role must be one of {', '.join(OPERATOR_ROLES)}", field="role")
    _check_password(password)
    if find_operator(username) is not None:
        raise DuplicateOperator(f"operator {username!r} already exists", field="username")
    operator = Operator(username=username, password_hash=generate_password_hash(password),
                        role=role, is_active=True, failed_logins=0, created_at=utcnow())
    db.session.add(operator)
    try:
        db.session.commit()
    except IntegrityError:  # created by a concurrent request since the check above
        db.session.rollback()
        raise DuplicateOperator(f"operator {username!r} already exists", field="username") from None
    return operator


def _checked_username(username: str) -> str:
    username = (username or "").strip().lower()
    if not 0 < len(username) <= 64 or not set(username) <= USERNAME_CHARACTERS:
        raise InvalidOperator("username: 1 to 64 of a-z, 0-9, '.', '_' and '-'", field="username")
    return username


def find_operator(username: str) -> Operator | None:
    query = select(Operator).where(Operator.username == (username or "").strip().lower())
    return db.session.scalars(query).first()


def get_operator(operator_id: int) -> Operator:
    operator = db.session.get(Operator, operator_id) if 0 < operator_id < 2**63 else None
    if operator is None:
        raise UnknownOperator(f"operator {operator_id} does not exist", operator_id=operator_id)
    return operator


def list_operators() -> list[Operator]:
    return list(db.session.scalars(select(Operator).order_by(Operator.username)))


def set_active(operator_id: int, active: bool) -> Operator:
    """Disabling ends the operator's sessions too: the session loader refuses inactive ones."""
    operator = get_operator(operator_id)
    operator.is_active = active
    if active:
        operator.failed_logins, operator.locked_until = 0, None
    db.session.commit()
    return operator


def set_password(operator_id: int, password: str) -> Operator:
    _check_password(password)
    operator = get_operator(operator_id)
    operator.password_hash = generate_password_hash(password)
    operator.failed_logins, operator.locked_until = 0, None
    db.session.commit()
    return operator


def _check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise InvalidOperator(f"password must have at least {MIN_PASSWORD_LENGTH} characters",
                              field="password")


def load_signed_in(operator_id: str) -> SignedIn | None:
    """Flask-Login's user loader: only active operators keep their session."""
    known = operator_id.isdigit() and int(operator_id) < 2**63
    operator = db.session.get(Operator, int(operator_id)) if known else None
    return signed_in(operator) if operator is not None and operator.is_active else None


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


def authenticate(username: str, password: str) -> Operator | None:
    """The operator for a right password; None for a wrong one; LockedOut while locked."""
    operator = find_operator(username)
    if operator is None or not operator.is_active:
        check_password_hash(_dummy(), password or "")
        return None
    if operator.locked_until is not None and operator.locked_until > utcnow():
        raise LockedOut("too many failed attempts; try again later")
    if not check_password_hash(operator.password_hash, password or ""):
        _record_failure(operator.id)
        return None
    if operator.failed_logins or operator.locked_until:
        operator.failed_logins, operator.locked_until = 0, None
        db.session.commit()
    return operator


def _record_failure(operator_id: int) -> None:
    # One UPDATE .. RETURNING: concurrent wrong guesses each count.
    failures = db.session.execute(
        update(Operator).where(Operator.id == operator_id)
        .values(failed_logins=Operator.failed_logins + 1).returning(Operator.failed_logins)
    ).scalar_one()
    if failures >= current_app.config["LOGIN_MAX_FAILURES"]:
        seconds = current_app.config["LOGIN_LOCKOUT_SECONDS"]
        db.session.execute(update(Operator).where(Operator.id == operator_id).values(
            locked_until=utcnow() + timedelta(seconds=seconds), failed_logins=0))
    db.session.commit()


def _dummy() -> str:
    if not _dummy_hash:
        _dummy_hash.append(generate_password_hash("not-a-password"))
    return _dummy_hash[0]


# ---------------------------------------------------------------- CLI


operators_cli = AppGroup("operators", help="Create, list and disable dashboard operators.")


@operators_cli.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(OPERATOR_ROLES), default="viewer", show_default=True)
def create_command(username: str, role: str) -> None:
    """Create an operator; the password is read from stdin when it is not a terminal."""
    password = _read_password()
    try:
        operator = create_operator(username, password, role)
    except errors.LedgerError as error:
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
    except errors.LedgerError as error:
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
