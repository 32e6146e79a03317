"""The overview's daily volumes (rollups.py): whatever part the sweeper has rolled up, the
figures equal a sum over the ledger itself, on both backends; `ledger verify` proves the
rolled-up part and finds a rollup that disagrees."""
import random
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from tests.visibility import until_none_left, until_some
from tests.web.conftest import Clock
from wallet_web import audit, ledger, queries, rollups, sweeper
from wallet_web.extensions import db

FIRST_DAY = date(2026, 11, 1)


@pytest.fixture
def ledger_clock(monkeypatch):
    """The clock the ledger stamps transactions with, late in a UTC day."""
    clock = Clock(datetime(2026, 11, 1, 23, 0, tzinfo=timezone.utc))
    monkeypatch.setattr(ledger, "utcnow", clock)
    return clock


def not_rolled_up() -> int:
    """Events after the rollup's position."""
    return db.session.execute(text(
        "SELECT COUNT(*) FROM events e, volume_position v "
        "WHERE e.xid > v.after_xid OR (e.xid = v.after_xid AND e.id > v.after_id)")).scalar()


def roll_all() -> int:
    db.session.rollback()  # nor may this session's own transaction hold the bound back
    return until_none_left(rollups.roll, not_rolled_up)


def from_the_ledger(first_day: date) -> dict[tuple, tuple[int, int]]:
    """(day, kind, asset) -> (transactions, amount), summed over every posting."""
    rows = db.session.execute(text(
        "SELECT t.id, t.kind, t.created_at, a.asset_code, p.amount FROM transactions t "
        "JOIN postings p ON p.transaction_id = t.id JOIN accounts a ON a.id = p.account_id "
        "WHERE p.amount > 0"))
    found: dict[tuple, list] = defaultdict(lambda: [set(), 0])
    for tx, kind, created_at, asset, amount in rows:
        moment = created_at if isinstance(created_at, datetime) else datetime.fromisoformat(created_at)
        day = (moment.astimezone(timezone.utc) if moment.tzinfo else moment).date()
        if day >= first_day:
            found[day, kind, asset][0].add(tx)
            found[day, kind, asset][1] += amount
    return {key: (len(ids), amount) for key, (ids, amount) in found.items()}


def shown(first_day: date) -> dict[tuple, tuple[int, int]]:
    return {(v.day, v.kind, v.asset_code): (v.transactions, v.amount)
            for v in rollups.volumes(first_day)}


def some_days_of_movements(make_user, clock, days: int = 3, batch: str = "a") -> None:
    """Top-ups, bonuses, spends and transfers in two assets, spread over `days` UTC days."""
    pick = random.Random(batch)
    users = [make_user(balance=10_000), make_user(balance=10_000, asset="DIAMOND"), make_user()]
    for day in range(days):
        for n in range(8):
            user, asset = pick.choice([(users[0], "GOLD"), (users[1], "DIAMOND")])
            move = pick.choice([ledger.topup, ledger.bonus, ledger.spend])
            move(user, asset, pick.randint(1, 50), f"{batch}-day{day}-{n}")
        ledger.transfer(users[0], users[2], "GOLD", 7, f"{batch}-day{day}-transfer")
        clock.advance(timedelta(hours=2))  # over midnight: the next UTC day


@pytest.mark.both_backends
def test_volumes_are_exact_before_during_and_after_the_rollup(app, make_user, ledger_clock):
    some_days_of_movements(make_user, ledger_clock)
    expected = from_the_ledger(FIRST_DAY)
    assert len({day for day, _, _ in expected}) == 3
    assert shown(FIRST_DAY) == expected  # nothing rolled up: all from the ledger

    db.session.rollback()
    assert 0 < until_some(lambda: rollups.roll(limit=10)) <= 10  # part of it
    assert shown(FIRST_DAY) == expected
    some_days_of_movements(make_user, ledger_clock, days=1, batch="b")  # after the position
    expected = from_the_ledger(FIRST_DAY)
    assert shown(FIRST_DAY) == expected

    assert roll_all() > 0  # all of it
    assert rollups.roll() == 0  # and again: nothing new, nothing added twice
    assert shown(FIRST_DAY) == expected
    assert db.session.execute(text("SELECT COUNT(*) FROM volume_days")).scalar() > 0
    assert audit.verify().ok


@pytest.mark.both_backends
def test_the_overview_queries_read_days_and_kinds_from_the_rollup(app, make_user, ledger_clock):
    some_days_of_movements(make_user, ledger_clock)
    roll_all()
    expected = from_the_ledger(FIRST_DAY)
    second = FIRST_DAY + timedelta(days=1)
    day_rows = {(row.kind, row.asset_code): (row.count, row.amount)
                for row in queries.volume_by_kind(second)}
    assert day_rows == {(kind, asset): figures for (day, kind, asset), figures in expected.items()
                        if day == second}
    charted = {(row.day, row.asset_code): row.amount
               for row in queries.daily_volume(FIRST_DAY, ("topup", "bonus"))}
    summed = defaultdict(int)
    for (day, kind, asset), (_, amount) in expected.items():
        if kind in ("topup", "bonus"):
            summed[day, asset] += amount
    assert charted == dict(summed)


def test_the_sweeper_rolls_the_volumes_up(app, make_user):
    make_user(balance=90)
    db.session.rollback()
    assert until_some(lambda: sweeper.sweep_once()["volumes_rolled"]) >= 1
    roll_all()
    assert sweeper.sweep_once()["volumes_rolled"] == 0


def test_verify_finds_a_rollup_that_disagrees_with_the_ledger(app, make_user):
    make_user(balance=90)
    roll_all()
    assert audit.verify().ok
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE volume_days SET amount = amount + 1"))
    report = audit.verify()
    assert not report.ok and audit.ROLLUP_CHECK in report.failures
