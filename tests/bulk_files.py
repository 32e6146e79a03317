"""What the bulk-grant tests share (service, pages, command line, browser): CSV files made in
memory, players made many at a time, operators as the service sees them, the ledger
transactions of one file, and waits that poll a grant under a deadline that only a hang
reaches (posting runs on a thread of its own)."""
import time
from typing import NamedTuple

from sqlalchemy import func, select

from wallet_web import accounts, bulk, operators
from wallet_web.extensions import db
from wallet_web.models import Operator, Transaction

HEADER = "username,asset,amount,reason"
PASSWORD = "correct horse battery"
HANG_GUARD_SECONDS = 60
REASON = "Outage 2024-05-01"


def csv_file(*rows: str, header: str = HEADER) -> bytes:
    """A file as a spreadsheet saves it: CRLF line ends, a final line end."""
    return "".join(f"{line}\r\n" for line in (header, *rows)).encode()


class Player(NamedTuple):
    id: int
    name: str


def grant_file(players: list[Player], amount: int = 10, asset: str = "GOLD",
               reason: str = REASON) -> bytes:
    """One row per player, named by username: `amount` of `asset` each."""
    return csv_file(*(f"{player.name},{asset},{amount},{reason}" for player in players))


def players(count: int, prefix: str = "player") -> list[Player]:
    """`count` new users with their wallets, in one write."""
    names = [f"{prefix}{n}" for n in range(count)]
    ids = accounts.create_users_bulk([(name, f"{name}@example.test") for name in names])
    return [Player(*pair) for pair in zip(ids, names, strict=True)]


def person(name: str, role: str = "operator", approver: bool = False) -> operators.SignedIn:
    """A new operator, as the service sees the signed-in one. Service and command-line tests
    never log in: no password hash to compute (0.1 s each), as tests/ops/conftest.py does."""
    made = Operator(username=name, password_hash="not-used", role=role, is_active=True,
                    can_approve=approver)
    db.session.add(made)
    db.session.commit()
    return operators.SignedIn(made.id, made.username, made.role, can_approve=approver)


def wait_for(grant_id: int, *statuses: str, seconds: float = HANG_GUARD_SECONDS):
    """The grant once its status is one of `statuses` (default: done)."""
    statuses = statuses or ("done",)
    deadline = time.monotonic() + seconds
    while True:
        grant = bulk.get(grant_id)  # a fresh snapshot: get() rolls the session back
        if grant.status in statuses:
            return grant
        if time.monotonic() > deadline:
            raise TimeoutError(f"bulk grant #{grant_id} still {grant.status}, not {statuses}")
        time.sleep(0.02)


def moved_by(sha256: str) -> int:
    """How many ledger transactions carry a reference of this file (bulk:<hash>:<line>)."""
    db.session.rollback()
    prefix = bulk.reference_of(sha256, 0)[:-1]
    return db.session.execute(select(func.count()).select_from(Transaction).where(
        Transaction.reference_id.startswith(prefix, autoescape=True))).scalar_one()
