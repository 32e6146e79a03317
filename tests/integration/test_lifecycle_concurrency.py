"""Users created, closed and paid at the same instant: real threads against a real database,
exact balances and `ledger verify` afterwards."""
from collections import Counter

import pytest
from sqlalchemy import func, select

from tests.api.conftest import at_once
from tests.threads import run_at_once
from wallet_web import accounts, api_keys, audit, errors, ledger, queries
from wallet_web.extensions import db
from wallet_web.models import Account, Asset, StatusChange, User

THREADS = 16




def kinds_of(results: list) -> Counter:
    return Counter(type(result).__name__ for result in results)


def wallets_per_user() -> dict[str, int]:
    """Every user but the system one, with how many wallets it has (0 for none)."""
    db.session.rollback()
    rows = db.session.execute(
        select(User.username, func.count(Account.id))
        .outerjoin(Account, (Account.user_id == User.id) & (Account.kind == "wallet"))
        .where(User.username != accounts.SYSTEM_USERNAME).group_by(User.username)).all()
    return dict(rows)


def asset_count() -> int:
    return db.session.execute(select(func.count()).select_from(Asset)).scalar_one()


def every_user_has_every_wallet() -> bool:
    return set(wallets_per_user().values()) == {asset_count()}


def changes_of(user_id: int) -> int:
    """How many status changes are recorded for the user."""
    return db.session.execute(select(func.count()).select_from(StatusChange)
                              .where(StatusChange.user_id == user_id)).scalar_one()


# ---------------------------------------------------------------- creating users


@pytest.mark.both_backends
def test_sixteen_identical_creates_at_once_make_one_user_with_all_its_wallets(app):
    create = lambda: accounts.register_user("carol", "carol@example.com", "game:7")

    results = run_at_once(app, [create] * THREADS)

    assert kinds_of(results) == {"Registration": THREADS}, results
    assert sum(result.created for result in results) == 1
    assert len({result.user_id for result in results}) == 1
    assert wallets_per_user()["carol"] == asset_count()
    assert every_user_has_every_wallet()


def test_sixteen_identical_creates_over_http_are_one_201_and_fifteen_200(app):
    key = api_keys.create_key("burst", "write")[1]
    body = {"username": "carol", "email": "carol@example.com", "external_id": "game:7"}
    post = lambda client, _: client.post("/api/v1/users", json=body,
                                         headers={"Authorization": f"Bearer {key}"})

    responses = at_once(app, THREADS, post)

    assert sorted(r.status_code for r in responses) == [200] * (THREADS - 1) + [201]
    assert len({r.json["id"] for r in responses}) == 1
    assert all(len(r.json["accounts"]) == asset_count() for r in responses)
    assert wallets_per_user()["carol"] == asset_count()


@pytest.mark.both_backends
@pytest.mark.parametrize("request_of, winners", [
    (lambda n: ("carol", f"carol{n}@example.com", None), 1),  # one username, many emails
    (lambda n: (f"carol{n}", f"carol{n}@example.com", "game:7"), 1),  # one external_id
    (lambda n: ("carol" if n % 2 else f"carol{n}", f"c{n % 3}@example.com", None), None),
], ids=["username", "external_id", "mixed"])
def test_conflicting_creates_at_once_never_half_create_a_user(app, request_of, winners):
    requests = [request_of(n) for n in range(THREADS)]
    calls = [lambda r=r: accounts.register_user(*r) for r in requests]

    results = run_at_once(app, calls)

    assert set(kinds_of(results)) <= {"Registration", "DuplicateUser"}, results
    registered = {r.user_id: request for r, request in zip(results, requests)
                  if isinstance(r, accounts.Registration)}
    for user_id, (username, email, external_id) in registered.items():
        user = queries.get_user(user_id)
        assert (user.username, user.email, user.external_id) == (username, email, external_id)
    assert sorted(wallets_per_user()) == sorted(
        ["alice", "bob"] + [username for username, _, _ in registered.values()])
    assert every_user_has_every_wallet()
    if winners is not None:
        assert len(registered) == winners
        assert sum(isinstance(r, errors.DuplicateUser) for r in results) == THREADS - winners


# ---------------------------------------------------------------- transfers


@pytest.mark.both_backends
def test_opposite_transfers_at_once_never_deadlock_and_leave_exact_balances(
        app, make_user, wallet_of):
    carol, dave = make_user(balance=1000), make_user(balance=1000)
    plan = [(carol, dave, n + 1) if n % 2 else (dave, carol, n + 1) for n in range(40)]
    calls = [lambda n=n, p=p: ledger.transfer(p[0], p[1], "GOLD", p[2], f"x-{n}")
             for n, p in enumerate(plan)]

    results = run_at_once(app, calls)

    assert kinds_of(results) == {"Receipt": len(plan)}, results
    assert all(len(result.postings) == 2 for result in results)
    sent_by = Counter()
    for source, _, amount in plan:
        sent_by[source] += amount
    assert queries.account_balance(wallet_of(carol)) == 1000 - sent_by[carol] + sent_by[dave]
    assert queries.account_balance(wallet_of(dave)) == 1000 - sent_by[dave] + sent_by[carol]
    assert audit.verify().ok


def test_opposite_transfers_over_http_at_once_all_land(app, make_user, wallet_of):
    carol, dave = make_user(balance=500), make_user(balance=500)
    key = api_keys.create_key("burst", "write")[1]

    def send(client, n):
        source, target = (carol, dave) if n % 2 else (dave, carol)
        return client.post("/api/v1/transactions", headers={"Authorization": f"Bearer {key}"},
                           json={"kind": "transfer", "user_id": source, "to_user_id": target,
                                 "asset": "GOLD", "amount": 10 + n % 2, "reference_id": f"t-{n}"})

    responses = at_once(app, 20, send)

    assert [r.status_code for r in responses] == [201] * 20, [r.json for r in responses]
    assert queries.account_balance(wallet_of(carol)) == 500 - 10 * 11 + 10 * 10
    assert queries.account_balance(wallet_of(dave)) == 500 - 10 * 10 + 10 * 11
    assert audit.verify().ok


# ---------------------------------------------------------------- closing


@pytest.mark.both_backends
def test_a_close_racing_with_a_credit_refuses_the_close_or_the_credit(app, make_user, wallet_of):
    """Never a closed user holding value: the close sees the credit (409 balance_not_zero),
    or the credit sees the close (refused, account_closed). Twelve races, either order."""
    for race in range(12):
        user = make_user()
        credit = lambda user=user: ledger.topup(user, "GOLD", 10, f"credit-{user}")
        close = lambda user=user: accounts.change_status(user, "close", "player asked")

        if race % 2:  # which thread starts first
            credited, closed = run_at_once(app, [credit, close])
        else:
            closed, credited = run_at_once(app, [close, credit])

        status = queries.get_user(user).status
        balance = queries.account_balance(wallet_of(user))
        if closed is True:
            assert isinstance(credited, errors.AccountClosed), credited
            assert (status, balance, changes_of(user)) == ("closed", 0, 1)
        else:
            assert isinstance(closed, errors.BalanceNotZero), closed
            assert isinstance(credited, ledger.Receipt), credited
            assert (status, balance, changes_of(user)) == ("active", 10, 0)
    assert audit.verify().ok


@pytest.mark.both_backends
def test_a_freeze_racing_with_spends_refuses_every_spend_after_it(app, make_user, wallet_of):
    user = make_user(balance=100)
    spends = [lambda n=n: ledger.spend(user, "GOLD", 1, f"spend-{n}") for n in range(10)]
    freeze = lambda: accounts.change_status(user, "freeze", "suspicious")

    results = run_at_once(app, spends[:5] + [freeze] + spends[5:])

    assert results[5] is True
    spent = [result for result in results if isinstance(result, ledger.Receipt)]
    assert kinds_of(results) - Counter({"bool": 1}) == Counter(
        {"Receipt": len(spent), "AccountFrozen": 10 - len(spent)}), results
    assert queries.account_balance(wallet_of(user)) == 100 - len(spent)
    with pytest.raises(errors.AccountFrozen):
        ledger.spend(user, "GOLD", 1, "after-the-freeze")
    assert audit.verify().ok
