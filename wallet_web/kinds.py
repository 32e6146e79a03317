"""The one registry of movement kinds. Forms, routes, templates, the API, the overview and the
model's CHECK read it; adding a kind means an entry here, its flow in ledger.py, and a
migration for the database's CHECK (the migration writes the list out: history does not move).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    name: str
    title: str
    house: str | None = None  # the house account on the other side of a user's wallet
    sign: int = 0  # +1 credits the user's wallet, -1 debits it (transfer: the sender's)
    reversible: bool = True
    by_operator: bool = False  # a form on the dashboard's user page
    by_api: bool = False  # a kind of POST /api/v1/transactions
    charted: bool = True  # counted in the overview's volume chart
    sources: tuple[str, ...] = ()  # house accounts a caller may pick instead of `house`
    bulk: bool = False  # granted from an uploaded file (bulk.py)


KINDS = (
    Kind("topup", "Top up", house="treasury", sign=+1, by_operator=True, by_api=True, bulk=True),
    Kind("bonus", "Bonus", house="promotions", sign=+1, by_operator=True, by_api=True,
         sources=("promotions", "treasury"), bulk=True),
    Kind("spend", "Spend", house="revenue", sign=-1, by_operator=True, by_api=True),
    Kind("transfer", "Transfer", sign=-1, by_operator=True, by_api=True),
    Kind("reversal", "Reversal", reversible=False),
    Kind("genesis", "Genesis", reversible=False, charted=False),
    Kind("adjustment", "Adjustment"),
    # Two-phase movements (holds.py): into the holds account, then on to revenue or back.
    Kind("hold", "Hold", house="holds", sign=-1, reversible=False, charted=False),
    Kind("capture", "Capture", reversible=False),
    Kind("void", "Release", reversible=False, charted=False),
)
BY_NAME = {kind.name: kind for kind in KINDS}
NAMES = tuple(BY_NAME)
API_KINDS = tuple(kind.name for kind in KINDS if kind.by_api)
HOUSE_FLOWS = tuple(kind.name for kind in KINDS if kind.house and kind.by_api)  # user <-> house
OPERATOR_FORMS = tuple(kind.name for kind in KINDS if kind.by_operator and kind.house)
CHARTED = tuple(kind.name for kind in KINDS if kind.charted)
BULK_KINDS = tuple(kind.name for kind in KINDS if kind.bulk)


def get(name: str) -> Kind:
    return BY_NAME[name]


def title_of(name: str) -> str:
    kind = BY_NAME.get(name)
    return kind.title if kind else name


def is_reversible(name: str) -> bool:
    return BY_NAME[name].reversible
