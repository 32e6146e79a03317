"""Accounts set-up and lifecycle: assets, the system user and its house accounts, users with
one wallet per asset, and a user's status (active, frozen, closed) with its recorded changes.
Moving value is ledger.py's alone; this module never touches a balance."""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import click
from email_validator import EmailNotValidError, validate_email
from flask.cli import AppGroup
from sqlalchemy import Connection, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from . import audit_events, errors, events
from .extensions import WRITE_LOCK, db
from .inputs import holds_nul
from .ledger import SYSTEM, Actor
from .limits import HOUSE_SHARDS, is_id
from .models import Account, Asset, BalanceShard, Hold, StatusChange, User, utcnow

HOUSE_KINDS = ("treasury", "promotions", "revenue", "equity", "holds")
SYSTEM_USERNAME = "system"
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
EXTERNAL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")
MAX_EMAIL = 255
MAX_REASON = 500
# action -> (statuses it applies to, the status it sets)
ACTIONS = {
    "freeze": (("active",), "frozen"),
    "unfreeze": (("frozen",), "active"),
    "close": (("active", "frozen"), "closed"),
}

accounts = Account.__table__
shards = BalanceShard.__table__
users = User.__table__
assets = Asset.__table__
status_changes = StatusChange.__table__
holds = Hold.__table__


@dataclass(frozen=True)
class Registration:
    user_id: int
    created: bool


@contextmanager
def write_transaction() -> Iterator[Connection]:
    """A real transaction; SQLite takes its write lock at BEGIN."""
    # End the caller's read-only session transaction first: it releases its pooled connection,
    # and on SQLite its snapshot, so reads after this write see it.
    db.session.rollback()
    with db.engine.connect() as conn:
        conn.execution_options(**{WRITE_LOCK: True})
        with conn.begin():
            yield conn


# ---------------------------------------------------------------- users


def register_user(username: str, email: str, external_id: str | None = None) -> Registration:
    """A new user with one wallet per asset, all in one transaction. The same request again
    (same username, email and external_id) finds that user (created=False); a username, email
    or external_id taken with other data is DuplicateUser."""
    check_user_fields(username, email, external_id)
    wanted = {"username": username, "email": email, "external_id": external_id}
    for attempt in range(2):
        try:
            with write_transaction() as conn:
                found = _existing(conn, wanted)
                if found is not None:
                    return Registration(found, created=False)
                user_id = _insert_users(conn, [wanted])[0]
                _open_wallets(conn, [user_id])
                audit_events.record("user.created", conn=conn, object_type="user",
                                    object_id=user_id, username=username)
                return Registration(user_id, created=True)
        except IntegrityError:  # a concurrent identical create won: look again
            if attempt:
                raise
    raise AssertionError("unreachable")


def check_user_fields(username, email, external_id) -> None:
    if not isinstance(username, str) or not USERNAME.fullmatch(username):
        raise errors.InvalidUser("username: 1 to 64 letters, digits, '.', '_' or '-', "
                                 "starting with a letter or digit", field="username")
    if external_id is not None and (not isinstance(external_id, str)
                                    or not EXTERNAL_ID.fullmatch(external_id)):
        raise errors.InvalidUser("external_id: 1 to 64 letters, digits, '.', '_', ':', '@' or "
                                 "'-', starting with a letter or digit", field="external_id")
    if not isinstance(email, str) or len(email) > MAX_EMAIL or holds_nul(email):
        raise errors.InvalidUser("email: not a valid address", field="email")
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError as error:
        raise errors.InvalidUser(f"email: {error}", field="email") from None


def _existing(conn, wanted: dict) -> int | None:
    keys = [users.c.username == wanted["username"], users.c.email == wanted["email"]]
    if wanted["external_id"] is not None:
        keys.append(users.c.external_id == wanted["external_id"])
    rows = conn.execute(select(users.c.id, users.c.username, users.c.email, users.c.external_id)
                        .where(or_(*keys))).all()
    if not rows:
        return None
    same = [row for row in rows if dict(row._mapping, id=None) == {**wanted, "id": None}]
    if len(rows) == 1 and same:
        return rows[0].id
    taken = sorted({name for row in rows for name in wanted
                    if getattr(row, name) is not None and getattr(row, name) == wanted[name]})
    raise errors.DuplicateUser(f"{' and '.join(taken)} already registered with other data",
                               fields=taken)


def create_user(username: str, email: str) -> int:
    """A new user with one wallet per asset, without the API's field rules (tests, seed)."""
    with write_transaction() as conn:
        taken = conn.execute(select(users.c.id).where(
            or_(users.c.username == username, users.c.email == email))).first()
        if taken is not None:
            raise errors.DuplicateUser("username or email already registered")
        user_id = _insert_users(conn, [{"username": username, "email": email}])[0]
        _open_wallets(conn, [user_id])
        return user_id


def ensure_user(username: str, email: str, *, open_wallets: bool = True) -> int:
    with write_transaction() as conn:
        user_id = conn.execute(select(users.c.id).where(users.c.username == username)).scalar()
        if user_id is None:
            user_id = _insert_users(conn, [{"username": username, "email": email}])[0]
        if open_wallets:
            _open_wallets(conn, [user_id])
        return user_id


def create_users_bulk(pairs: list[tuple[str, str]]) -> list[int]:
    """Many users with their wallets in one transaction (load-test data)."""
    with write_transaction() as conn:
        user_ids = _insert_users(conn, [{"username": u, "email": e} for u, e in pairs])
        _open_wallets(conn, user_ids)
        return user_ids


def _insert_users(conn, rows: list[dict]) -> list[int]:
    now = utcnow()
    rows = [{"external_id": None, **row, "status": "active", "created_at": now} for row in rows]
    result = conn.execute(insert(users).returning(*users.c, sort_by_parameter_order=True), rows)
    created = result.all()
    events.emit(conn, "user.created", [events.user_shown(row) for row in created])
    return [row.id for row in created]


def _open_wallets(conn, user_ids: list[int]) -> None:
    codes = conn.execute(select(assets.c.code).order_by(assets.c.code)).scalars().all()
    have = set(conn.execute(
        select(accounts.c.user_id, accounts.c.asset_code)
        .where(accounts.c.user_id.in_(user_ids), accounts.c.kind == "wallet")
    ).tuples())
    status = dict(conn.execute(select(users.c.id, users.c.status)
                               .where(users.c.id.in_(user_ids))).all())
    now = utcnow()
    rows = [  # a wallet opened later (a new asset) has its user's status
        {"user_id": uid, "asset_code": code, "kind": "wallet", "name": f"{code} wallet",
         "balance": 0, "allow_negative": False, "status": status[uid], "created_at": now}
        for uid in user_ids for code in codes if (uid, code) not in have
    ]
    if rows:
        conn.execute(insert(accounts), rows)


# ---------------------------------------------------------------- status


def change_status(user_id: int, action: str, reason: str, *, actor: Actor = SYSTEM) -> bool:
    """freeze, unfreeze or close a user and all its wallets, recording who, when and why.
    False when the user already has the status the action sets (nothing is recorded)."""
    allowed_from, status = ACTIONS[action]
    reason = _check_reason(reason)
    with write_transaction() as conn:
        user = _lock_user(conn, user_id)
        if user.status == status:
            return False
        if user.status not in allowed_from:
            raise errors.UserClosed(f"user {user_id} is closed: its status cannot change",
                                    user_id=user_id, status=user.status)
        wallets = conn.execute(select(accounts.c.id, accounts.c.asset_code, accounts.c.balance)
                               .where(accounts.c.user_id == user_id)
                               .order_by(accounts.c.id).with_for_update()).all()
        if status == "closed":
            _check_empty(conn, user_id, wallets)
        changed = conn.execute(update(users).where(users.c.id == user_id).values(status=status)
                               .returning(*users.c)).one()
        conn.execute(update(accounts).where(accounts.c.user_id == user_id).values(status=status))
        conn.execute(insert(status_changes).values(
            user_id=user_id, previous_status=user.status, status=status, reason=reason,
            actor=actor.label, operator_id=actor.operator_id, api_key_id=actor.api_key_id,
            created_at=utcnow()))
        events.emit(conn, "user.status_changed", {
            "user": events.user_shown(changed), "previous_status": user.status,
            "status": status, "reason": reason, "actor": actor.label})
        audit_events.record("user." + {"active": "unfrozen"}.get(status, status), conn=conn, object_type="user", object_id=user_id,
                            who=audit_events.Who(actor.label, actor.operator_id,
                                                 actor.api_key_id),
                            previous_status=user.status, reason=reason)
        return True


def _check_reason(reason) -> str:
    reason = reason.strip() if isinstance(reason, str) else ""
    if not reason or len(reason) > MAX_REASON or holds_nul(reason):
        raise errors.InvalidUser(f"reason: 1 to {MAX_REASON} characters, required",
                                 field="reason")
    return reason


def _lock_user(conn, user_id: int):
    user = None
    if is_id(user_id):
        user = conn.execute(select(users.c.id, users.c.username, users.c.status)
                            .where(users.c.id == user_id).with_for_update()).first()
    if user is None:
        raise errors.UnknownUser(f"user {user_id} does not exist", user_id=user_id)
    if user.username == SYSTEM_USERNAME:
        raise errors.InvalidUser("the system user owns the house accounts: its status is fixed",
                                 user_id=user_id)
    return user


def _check_empty(conn, user_id: int, wallets) -> None:
    """Nothing in the wallets and nothing held for the user (open holds, holds.py)."""
    held = {row.asset_code: row.balance for row in wallets if row.balance}
    open_holds = conn.execute(select(holds.c.asset_code, func.sum(holds.c.amount))
                              .where(holds.c.user_id == user_id, holds.c.status == "open")
                              .group_by(holds.c.asset_code))
    for asset, amount in open_holds:
        held[asset] = held.get(asset, 0) + int(amount)
    if held:
        holdings = ", ".join(f"{amount:,} {asset}" for asset, amount in sorted(held.items()))
        raise errors.BalanceNotZero(f"user {user_id} still holds {holdings}: every balance "
                                    "must be zero to close",
                                    user_id=user_id, balances=held)


def set_account_status(account_id: int, status: str) -> None:
    """One account's status (a house account taken out of service, tests)."""
    if status not in ("active", "frozen"):
        raise errors.UnknownStatus("status must be active or frozen")
    with write_transaction() as conn:
        done = conn.execute(update(accounts).where(accounts.c.id == account_id)
                            .values(status=status)).rowcount
        if not done:
            raise errors.UnknownAccount(f"account {account_id} does not exist")


# ---------------------------------------------------------------- assets and house accounts


def ensure_asset(code: str, name: str, scale: int = 0) -> None:
    with write_transaction() as conn:
        if conn.execute(select(assets.c.code).where(assets.c.code == code)).first() is None:
            conn.execute(insert(assets).values(code=code, name=name, scale=scale,
                                               created_at=utcnow()))


def ensure_system_user() -> int:
    return ensure_user(SYSTEM_USERNAME, "system@wallet.internal", open_wallets=False)


def ensure_house_accounts(asset: str) -> dict[str, int]:
    """The house accounts (HOUSE_KINDS) of the system user for one asset."""
    system_id = ensure_system_user()
    with write_transaction() as conn:
        existing = dict(conn.execute(
            select(accounts.c.kind, accounts.c.id)
            .where(accounts.c.user_id == system_id, accounts.c.asset_code == asset)
        ).all())
        for kind in HOUSE_KINDS:
            if kind not in existing:
                existing[kind] = _open_house_account(conn, system_id, asset, kind)
        return existing


def _open_house_account(conn, system_id: int, asset: str, kind: str) -> int:
    account_id = conn.execute(
        insert(accounts).values(
            user_id=system_id, asset_code=asset, kind=kind, name=f"{kind.title()} {asset}",
            balance=0, allow_negative=True, status="active", created_at=utcnow(),
        ).returning(accounts.c.id)
    ).scalar_one()
    conn.execute(insert(shards), [
        {"account_id": account_id, "shard": n, "balance": 0} for n in range(HOUSE_SHARDS)
    ])
    return account_id


# ---------------------------------------------------------------- CLI


users_cli = AppGroup("users", help="Create users and change their status.")


@users_cli.command("create")
@click.argument("username")
@click.argument("email")
@click.option("--external-id", help="your own id for the player (unique)")
def create_command(username: str, email: str, external_id: str | None) -> None:
    """Create a user with one wallet per asset; the user id is printed last."""
    try:
        registered = register_user(username, email, external_id)
    except errors.WalletError as error:
        raise click.ClickException(error.message) from None
    if not registered.created:
        click.echo("This user already exists with these details.")
    click.echo(registered.user_id)


def _status_command(action: str, help_text: str):
    @click.argument("user_id", type=click.IntRange(min=1))
    @click.option("--reason", required=True, help="why (recorded with the change)")
    def command(user_id: int, reason: str) -> None:
        try:
            changed = change_status(user_id, action, reason, actor=Actor("cli"))
        except errors.WalletError as error:
            raise click.ClickException(error.message) from None
        click.echo(f"user {user_id}: {ACTIONS[action][1]}" + ("" if changed else " (unchanged)"))

    users_cli.command(action, help=help_text)(command)


for _action, _help in (("freeze", "Freeze a user: debits refused, credits still land."),
                       ("unfreeze", "Unfreeze a frozen user."),
                       ("close", "Close a user whose wallets are all empty.")):
    _status_command(_action, _help)
