"""Holds: two-phase movements for purchases (authorize, then capture or void; or expiry).

A hold moves the amount from the user's wallet to the asset's `holds` house account, so the
wallet's balance is what is available and the user's open holds are what is held. A capture
moves the captured part from the holds account to revenue and the rest back to the wallet, in
one transaction; a void or an expiry moves all of it back. Each step is a ledger transaction
with its own reference_id and the ledger's idempotency, written in one database transaction
with the hold row's change; capture, void and expiry lock the hold row first, so exactly one
of them settles a hold, and none after `expires_at` but the expiry.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import click
from flask.cli import AppGroup
from sqlalchemy import Connection, insert, select, update

from . import errors, ledger
from .ledger import SYSTEM, Actor, Leg
from .limits import is_id
from .models import Hold, utcnow

holds = Hold.__table__
DEFAULT_EXPIRY_SECONDS = 15 * 60
MAX_EXPIRY_SECONDS = 7 * 24 * 3600
SETTLED = {"captured": errors.HoldCaptured, "voided": errors.HoldVoided,
           "expired": errors.HoldExpired}
SWEEP_BATCH = 500


@dataclass(frozen=True)
class Step:
    """A hold after one of its steps, and that step's ledger receipt."""

    hold: object  # the holds row
    receipt: ledger.Receipt
    replayed: bool


# ---------------------------------------------------------------- the steps


def place(user_id: int, asset: str, amount: int, reference_id: str, *,
          expires_in_seconds: int | None = None, description: str = "",
          metadata: dict | None = None, actor: Actor = SYSTEM) -> Step:
    ledger.check_amount(amount)
    seconds = _expiry(expires_in_seconds)
    payload = {"kind": "hold", "user_id": user_id, "asset": asset, "amount": amount,
               "expires_in_seconds": seconds, "description": description, "metadata": metadata}
    return ledger.releasing_expired_holds(lambda: _place(
        user_id, asset, amount, reference_id, seconds, payload, description, metadata, actor))


def _place(user_id: int, asset: str, amount: int, reference_id: str, seconds: int,
           payload: dict, description: str, metadata: dict | None, actor: Actor) -> Step:
    with ledger.atomic() as conn:
        wallet, account, rules = ledger.wallet_and_house(conn, user_id, asset, "holds")
        receipt = ledger.post_on(conn, "hold", [Leg(wallet, -amount), Leg(account, amount)],
                                 reference_id, payload, description=description,
                                 metadata=metadata, actor=actor, rules=rules, asset=asset)
        if receipt.replayed:
            row = _one(conn, holds.c.hold_transaction_id == receipt.id)
        else:
            row = conn.execute(insert(holds).values(
                account_id=wallet, user_id=user_id, asset_code=asset, amount=amount,
                status="open", reference_id=reference_id, description=description,
                hold_transaction_id=receipt.id, created_at=receipt.created_at,
                expires_at=receipt.created_at + timedelta(seconds=seconds),
            ).returning(*holds.c)).one()
    return Step(row, receipt, receipt.replayed)


def capture(hold_id: int, reference_id: str, amount: int | None = None, *,
            description: str = "", actor: Actor = SYSTEM) -> Step:
    """Capture `amount` (default: all) of an open hold; the rest goes back in the same step."""
    if amount is not None:
        ledger.check_amount(amount)
    payload = {"kind": "capture", "hold_id": hold_id, "amount": amount,
               "description": description}
    return _settle(hold_id, reference_id, payload, "captured", actor, amount, description)


def void(hold_id: int, reference_id: str, *, description: str = "", actor: Actor = SYSTEM,
         metadata: dict | None = None) -> Step:
    payload = {"kind": "void", "hold_id": hold_id, "description": description}
    if metadata is not None:  # a dashboard release's controls (approvals.py)
        payload["metadata"] = metadata
    return _settle(hold_id, reference_id, payload, "voided", actor, None, description,
                   metadata=metadata)


def _settle(hold_id: int, reference_id: str, payload: dict, status: str, actor: Actor,
            amount: int | None, description: str, *, expiring: bool = False,
            metadata: dict | None = None) -> Step:
    with ledger.atomic() as conn:
        hold = _locked(conn, hold_id)
        if hold.status != "open":
            return _settled_before(conn, hold, reference_id, payload, actor)
        if utcnow() >= hold.expires_at and not expiring:
            raise errors.HoldExpired(f"hold {hold.id} expired at {hold.expires_at.isoformat()}",
                                     hold_id=hold.id, status="expired")
        captured = _captured(hold, amount) if status == "captured" else None
        legs, rules = _legs(conn, hold, captured)
        receipt = ledger.post_on(
            conn, "capture" if captured else "void", legs, reference_id, payload,
            description=description or _default_description(hold, status), metadata=metadata,
            actor=actor, rules=rules, asset=hold.asset_code)
        row = conn.execute(update(holds).where(holds.c.id == hold.id).values(
            status=status, captured_amount=captured, settle_transaction_id=receipt.id,
            settled_at=receipt.created_at).returning(*holds.c)).one()
    return Step(row, receipt, False)


def _locked(conn: Connection, hold_id: int):
    row = None
    if is_id(hold_id):
        row = conn.execute(select(holds).where(holds.c.id == hold_id).with_for_update()).first()
    if row is None:
        raise errors.UnknownHold(f"hold {hold_id} does not exist", hold_id=hold_id)
    return row


def _settled_before(conn: Connection, hold, reference_id: str, payload: dict, actor: Actor):
    """The step that settled the hold, sent again (a replay); any other step is refused with
    what the hold became."""
    settled = ledger.transaction_by_reference(conn, reference_id)
    if settled is not None and settled.id == hold.settle_transaction_id:
        receipt = ledger.replay(conn, reference_id, ledger.fingerprint_of(payload), actor)
        return Step(hold, receipt, True)
    raise SETTLED[hold.status](f"hold {hold.id} is {hold.status}", hold_id=hold.id,
                               status=hold.status)


def _captured(hold, amount: int | None) -> int:
    captured = hold.amount if amount is None else amount
    if captured > hold.amount:
        raise errors.CaptureExceedsHold(f"cannot capture {captured}: hold {hold.id} holds "
                                        f"{hold.amount}", hold_id=hold.id, held=hold.amount,
                                        requested=captured)
    return captured


def _legs(conn: Connection, hold, captured: int | None) -> tuple[list[Leg], dict]:
    """Out of the holds account: the captured part to revenue, the rest back to the wallet;
    and the accounts' rules (cached, so the write needs no lookup)."""
    _, account, rules = ledger.wallet_and_house(conn, hold.user_id, hold.asset_code, "holds")
    legs = [Leg(account, -hold.amount)]
    if captured:
        _, revenue, more = ledger.wallet_and_house(conn, hold.user_id, hold.asset_code,
                                                   "revenue")
        rules = {**rules, **more}
        legs.append(Leg(revenue, captured))
    if hold.amount - (captured or 0):
        legs.append(Leg(hold.account_id, hold.amount - (captured or 0)))
    return legs, rules


def _default_description(hold, status: str) -> str:
    verb = {"captured": "Capture", "voided": "Release", "expired": "Expiry"}[status]
    return f"{verb} of hold {hold.id}"


def _expiry(seconds) -> int:
    if seconds is None:
        return DEFAULT_EXPIRY_SECONDS
    if type(seconds) is not int or not 1 <= seconds <= MAX_EXPIRY_SECONDS:
        raise errors.InvalidExpiry(f"expires_in_seconds must be 1 to {MAX_EXPIRY_SECONDS} "
                                   "(7 days)", field="expires_in_seconds")
    return seconds


def _one(conn: Connection, condition):
    return conn.execute(select(holds).where(condition)).one()


# ---------------------------------------------------------------- expiry


def expire_due(limit: int = SWEEP_BATCH) -> int:
    """Release every open hold past its expiry (a void by `system` under the reference
    `hold:<id>:expiry`); safe to run beside itself and beside captures. How many it released."""
    released = 0
    while True:
        due = _due(limit)
        for hold_id in due:
            released += _expire(hold_id)
        if len(due) < limit:
            return released


def release_expired(wallet_id: int) -> int:
    """Release the wallet's expired open holds now (a spend found it short); how many were
    due (released here or, at the same time, by the sweeper)."""
    with ledger.atomic() as conn:
        due = list(conn.execute(select(holds.c.id).where(
            holds.c.account_id == wallet_id, holds.c.status == "open",
            holds.c.expires_at <= utcnow())).scalars())
    for hold_id in due:
        _expire(hold_id)
    return len(due)


def release_expired_of(wallet_ids: set[int]) -> int:
    """release_expired for several wallets (a batch found them short): one read when none
    of them has an expired hold."""
    with ledger.atomic() as conn:
        due = list(conn.execute(select(holds.c.id).where(
            holds.c.account_id.in_(sorted(wallet_ids)), holds.c.status == "open",
            holds.c.expires_at <= utcnow())).scalars())
    for hold_id in due:
        _expire(hold_id)
    return len(due)


def _due(limit: int) -> list[int]:
    with ledger.atomic() as conn:
        return list(conn.execute(select(holds.c.id).where(
            holds.c.status == "open", holds.c.expires_at <= utcnow(),
        ).order_by(holds.c.expires_at).limit(limit)).scalars())


def _expire(hold_id: int) -> int:
    payload = {"kind": "void", "hold_id": hold_id, "expiry": True}
    try:
        step = _settle(hold_id, f"hold:{hold_id}:expiry", payload, "expired", SYSTEM, None, "",
                       expiring=True)
    except errors.HoldNotOpen:  # captured or voided in the meantime
        return 0
    return 0 if step.replayed else 1


# ---------------------------------------------------------------- CLI


holds_cli = AppGroup("holds", help="Two-phase movements.")


@holds_cli.command("expire")
def expire_command() -> None:
    """Release every expired open hold (idempotent; safe to run at the same time twice)."""
    click.echo(f"released {expire_due()} expired hold(s)")
