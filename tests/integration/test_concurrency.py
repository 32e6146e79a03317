"""Real threads against a real database; exact balances and invariants afterwards."""
import random
from collections import Counter

import pytest
from sqlalchemy import func, select

from tests.threads import run_at_once
from wallet_web import audit, errors, ledger, queries
from wallet_web.extensions import db
from wallet_web.models import Transaction




@pytest.mark.both_backends
def test_fifty_concurrent_spends_of_one_from_twenty_leave_exactly_zero(app, make_user, wallet_of):
    user = make_user(balance=20)
    calls = [lambda n=n: ledger.spend(user, "GOLD", 1, f"spend-{n}") for n in range(50)]

    results = run_at_once(app, calls)

    outcomes = Counter(type(r).__name__ for r in results)
    assert outcomes == {"Receipt": 20, "InsufficientFunds": 30}
    assert queries.account_balance(wallet_of(user)) == 0
    assert audit.verify().ok


@pytest.mark.both_backends
def test_twenty_identical_requests_make_one_transaction(app, make_user):
    user = make_user()
    calls = [lambda: ledger.topup(user, "GOLD", 7, "same-key", description="d")] * 20

    results = run_at_once(app, calls)

    assert all(isinstance(r, ledger.Receipt) for r in results), results
    assert len({r.id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert transactions_with_reference("same-key") == 1
    assert audit.verify().ok


@pytest.mark.both_backends
def test_one_key_with_different_payloads_at_once_gives_one_winner_and_conflicts(
        app, make_user, wallet_of):
    user = make_user()
    calls = [lambda n=n: ledger.topup(user, "GOLD", n + 1, "shared-key") for n in range(10)]

    results = run_at_once(app, calls)

    winners = [r for r in results if isinstance(r, ledger.Receipt)]
    conflicts = [r for r in results if isinstance(r, errors.IdempotencyConflict)]
    assert len(winners) == 1 and len(conflicts) == 9, results
    wallet = wallet_of(user)
    credited = next(p.amount for p in winners[0].postings if p.account_id == wallet)
    assert queries.account_balance(wallet) == credited
    assert transactions_with_reference("shared-key") == 1
    assert audit.verify().ok


@pytest.mark.both_backends
def test_opposite_transfers_in_parallel_never_deadlock(app, make_user, wallet_of):
    a, b = wallet_of(make_user(balance=1000)), wallet_of(make_user(balance=1000))

    def transfer(source, target, n):
        return lambda: ledger.post("adjustment", [ledger.Leg(source, -1), ledger.Leg(target, 1)],
                                   f"x-{source}-{n}")

    calls = [transfer(a, b, n) if n % 2 else transfer(b, a, n) for n in range(40)]
    results = run_at_once(app, calls)

    assert all(isinstance(r, ledger.Receipt) for r in results), results
    assert queries.account_balance(a) == queries.account_balance(b) == 1000
    assert audit.verify().ok


def test_concurrent_reversals_of_one_transaction_reverse_it_once(app, make_user, wallet_of):
    user = make_user(balance=100)
    spent = ledger.spend(user, "GOLD", 60, "s-1")
    calls = [lambda n=n: ledger.reverse(spent.id, f"rev-{n}") for n in range(10)]

    results = run_at_once(app, calls)

    assert Counter(type(r).__name__ for r in results) == {"Receipt": 1, "AlreadyReversed": 9}
    assert queries.account_balance(wallet_of(user)) == 100
    assert audit.verify().ok


def test_a_random_concurrent_workload_keeps_every_invariant(app, make_user, wallet_of):
    rng = random.Random(7)
    users = [make_user(balance=50) for _ in range(5)]
    plan = [(rng.choice(["topup", "bonus", "spend", "spend"]), rng.choice(users),
             rng.choice(["GOLD", "DIAMOND"]), rng.randint(1, 40)) for _ in range(200)]
    flows = {"topup": ledger.topup, "bonus": ledger.bonus, "spend": ledger.spend}
    calls = [lambda n=n, p=p: flows[p[0]](p[1], p[2], p[3], f"w-{n}") for n, p in enumerate(plan)]

    results = run_at_once_in_batches(app, calls, batch=25)

    expected = Counter({(u, "GOLD"): 50 for u in users})
    for (kind, user, asset, amount), result in zip(plan, results):
        if isinstance(result, ledger.Receipt):
            expected[(user, asset)] += -amount if kind == "spend" else amount
        else:
            assert isinstance(result, errors.InsufficientFunds), result
    for (user, asset), balance in expected.items():
        assert queries.account_balance(wallet_of(user, asset)) == balance
    assert audit.verify().ok


def transactions_with_reference(reference_id: str) -> int:
    return db.session.execute(
        select(func.count()).select_from(Transaction).filter_by(reference_id=reference_id)
    ).scalar_one()


def run_at_once_in_batches(app, calls, batch):
    results = []
    for start in range(0, len(calls), batch):
        results += run_at_once(app, calls[start:start + batch])
    return results
