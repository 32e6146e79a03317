"""API keys: creation, revocation, bearer authentication and the scope check for views.

A key is shown once, at creation; only its sha256 hash and a short display prefix are stored.
Scopes: `read`, and `write` which implies read.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import click
from flask import current_app, g, request
from flask.cli import AppGroup
from sqlalchemy import Connection, bindparam, or_, select, update
from sqlalchemy.exc import DBAPIError

from . import audit_events, errors, ledger
from .errors import InsufficientScope, InvalidKeyRequest, Unauthenticated, UnknownApiKey
from .extensions import WRITE_LOCK, db
from .limits import is_id
from .models import API_SCOPES, ApiKey, utcnow

TOKEN_PREFIX = "wk_"
DISPLAY_PREFIX_LENGTH = 10  # "wk_" and 7 characters: enough to tell keys apart in a list
TOUCH_INTERVAL = timedelta(seconds=60)
DEMO_KEY_NAME = "demo"
CACHE_SIZE = 10_000
log = logging.getLogger(__name__)

api_keys = ApiKey.__table__
LOOKUP = select(api_keys.c.id, api_keys.c.name, api_keys.c.scope, api_keys.c.last_used_at).where(
    api_keys.c.key_hash == bindparam("key_hash"), api_keys.c.revoked_at.is_(None))


@dataclass(frozen=True)
class Caller:
    """The authenticated key's columns: plain values, no ORM object on the request path."""

    id: int
    name: str
    scope: str
    last_used_at: datetime | None

    def allows(self, scope: str) -> bool:
        return scope == "read" or self.scope == "write"

    @functools.cached_property  # the Caller is cached with its key: built once
    def actor(self) -> ledger.Actor:
        return ledger.Actor(f"api:{self.name}", api_key_id=self.id)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ---------------------------------------------------------------- management (CLI, dashboard)


def create_key(name: str, scope: str = "read") -> tuple[ApiKey, str]:
    """A new key and its plaintext token, which is never stored and cannot be shown again."""
    name = (name or "").strip()
    if not 0 < len(name) <= 64:
        raise InvalidKeyRequest("name must be 1 to 64 characters", field="name")
    if scope not in API_SCOPES:
        raise InvalidKeyRequest(f"scope must be one of {', '.join(API_SCOPES)}", field="scope")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(name=name, scope=scope, prefix=token[:DISPLAY_PREFIX_LENGTH],
                 key_hash=hash_token(token), created_at=utcnow())
    db.session.add(key)
    db.session.flush()
    audit_events.record("api_key.created", object_type="api_key", object_id=key.id, name=name,
                        scope=scope, prefix=key.prefix)
    db.session.commit()
    return key, token


def revoke_key(key_id: int) -> ApiKey:
    key = db.session.get(ApiKey, key_id) if is_id(key_id) else None
    if key is None:
        raise UnknownApiKey(f"API key {key_id} does not exist", api_key_id=key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        audit_events.record("api_key.revoked", object_type="api_key", object_id=key.id,
                            name=key.name)
        db.session.commit()
    _forget(key.id)
    return key


def list_keys() -> list[ApiKey]:
    return list(db.session.scalars(select(ApiKey).order_by(ApiKey.id)))


def ensure_demo_key() -> str:
    """One line for seed.py: a new demo write key, or a note that it exists (its plaintext
    cannot be recovered from the hash, and rotating it on every seed would break saved
    scripts, so an existing demo key is kept)."""
    existing = db.session.scalars(select(ApiKey).where(
        ApiKey.name == DEMO_KEY_NAME, ApiKey.revoked_at.is_(None))).first()
    if existing is not None:
        return (f"demo API key exists ({existing.prefix}...); for a new one: "
                f"flask --app wsgi api-keys revoke {existing.id} && python seed.py")
    _, token = create_key(DEMO_KEY_NAME, "write")
    return f"demo API key (write scope, shown once): {token}"


# ---------------------------------------------------------------- the request path


def authenticate(token: str) -> Caller | None:
    """The live key for a token. A found key is remembered by this process for
    API_KEY_CACHE_SECONDS, so the hot path does not query per request; a revocation applies
    at once in the process that made it and within that time in every other one."""
    if not token or len(token) > 128:
        return None
    key_hash = hash_token(token)
    cache = current_app.extensions.setdefault("api_key_cache", {})
    caller, expires = cache.get(key_hash, (None, 0.0))
    if expires > time.monotonic():
        return caller
    caller = _load_caller(key_hash)
    if caller is not None:
        if len(cache) > CACHE_SIZE:
            cache.clear()
        cache[key_hash] = (caller, time.monotonic() + current_app.config["API_KEY_CACHE_SECONDS"])
    return caller


def _forget(key_id: int) -> None:
    cache = current_app.extensions.get("api_key_cache", {})
    for key_hash, (caller, _) in list(cache.items()):
        if caller.id == key_id:
            cache.pop(key_hash, None)


def _load_caller(key_hash: str) -> Caller | None:
    """One SELECT on the unique hash index; last_used_at is written at most once per
    TOUCH_INTERVAL, so most lookups do not write."""
    with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT")
        row = conn.execute(LOOKUP, {"key_hash": key_hash}).first()
        conn.rollback()  # ends SQLite's read transaction before any write
        if row is None:
            return None
        caller = Caller(*row)
        now = utcnow()
        if caller.last_used_at is None or now - caller.last_used_at >= TOUCH_INTERVAL:
            _touch(conn, caller.id, now)
    return caller


def _touch(conn: Connection, key_id: int, now: datetime) -> None:
    """Best effort, in its own short write transaction: a request never fails over its key's
    last_used_at. On SQLite the write must not upgrade a read transaction: under WAL that fails
    at once (SQLITE_BUSY_SNAPSHOT, which busy_timeout does not retry) when another connection
    wrote since the read began, whereas BEGIN IMMEDIATE waits for the write lock."""
    # The WHERE makes concurrent requests of one key write once, not once each.
    statement = update(api_keys).where(
        api_keys.c.id == key_id,
        or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at <= now - TOUCH_INTERVAL),
    ).values(last_used_at=now)
    conn.execution_options(**{WRITE_LOCK: True})  # PostgreSQL: autocommit, one round trip
    try:
        with conn.begin():
            conn.execute(statement)
    except DBAPIError as error:
        log.warning("api key last_used_at not updated", extra={"fields": {
            "api_key_id": key_id, "error": type(getattr(error, "orig", error)).__name__}})


def bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require_scope(scope: str):
    """View decorator: 401 without a valid key, 403 when the key lacks `scope`."""
    def decorate(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            check_scope(scope)
            return view(*args, **kwargs)
        return guarded
    return decorate


def check_scope(scope: str) -> Caller:
    token = bearer_token()
    if token is None:
        raise Unauthenticated("an API key is required: Authorization: Bearer <key>")
    caller = authenticate(token)
    if caller is None:
        raise Unauthenticated("the API key is not valid or has been revoked")
    if not caller.allows(scope):
        raise InsufficientScope(f"this key has scope {caller.scope!r}; {scope!r} is needed",
                                required_scope=scope)
    g.api_key = caller
    g.actor_label = caller.actor.label
    return caller


def current_actor() -> ledger.Actor:
    return g.api_key.actor


# ---------------------------------------------------------------- CLI


api_keys_cli = AppGroup("api-keys", help="Create, revoke and list API keys.")


@api_keys_cli.command("create")
@click.argument("name")
@click.option("--scope", type=click.Choice(API_SCOPES), default="read", show_default=True)
def create_command(name: str, scope: str) -> None:
    """Create a key; it is printed once, alone on the last line."""
    try:
        key, token = create_key(name, scope)
    except errors.WalletError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"created API key {key.id} {key.name!r} scope={key.scope}; store it now, "
               "it cannot be shown again:")
    click.echo(token)


@api_keys_cli.command("revoke")
@click.argument("key_id", type=int)
def revoke_command(key_id: int) -> None:
    """Revoke a key by id; requests with it get 401 from then on."""
    try:
        key = revoke_key(key_id)
    except errors.WalletError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"revoked API key {key.id} {key.name!r}")


@api_keys_cli.command("list")
def list_command() -> None:
    """Keys with id, prefix, scope, last use and revocation."""
    for key in list_keys():
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        used = f"{key.last_used_at:%Y-%m-%d %H:%M:%S}" if key.last_used_at else "never"
        click.echo(f"{key.id}\t{key.prefix}...\t{key.scope}\t{state}\tlast used {used}\t{key.name}")
