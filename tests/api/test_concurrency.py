"""Identical requests arriving at the same instant: one movement, the rest replay it."""
import threading

from sqlalchemy import func, select

from wallet_web import queries
from wallet_web.extensions import db
from wallet_web.models import Transaction

from .conftest import at_once

CLIENTS = 20


def test_twenty_identical_topups_at_once_move_value_once(app, auth, make_user, wallet_of):
    user = make_user(balance=100)
    body = {"user_id": user, "amount": 25, "reference_id": "burst-1"}
    responses = at_once(app, CLIENTS, lambda c, _: c.post("/wallet/topup", json=body, headers=auth()))
    assert [r.status_code for r in responses] == [200] * CLIENTS
    assert len({r.get_data() for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == CLIENTS - 1
    assert queries.account_balance(wallet_of(user)) == 125
    count = select(func.count()).where(Transaction.reference_id == "burst-1")
    assert db.session.execute(count).scalar_one() == 1


def test_twenty_spends_with_one_reference_but_different_amounts_move_once(
        app, auth, make_user, wallet_of):
    user = make_user(balance=100)

    def spend(amount):
        return lambda c: c.post("/wallet/spend", headers=auth(),
                                json={"user_id": user, "amount": amount, "reference_id": "mixed"})
    amounts = iter([1, 2] * (CLIENTS // 2))
    lock = threading.Lock()

    def request(client, _):
        with lock:
            amount = next(amounts)
        return spend(amount)(client)

    responses = at_once(app, CLIENTS, request)
    created = [r for r in responses
               if r.status_code == 200 and "Idempotent-Replayed" not in r.headers]
    assert len(created) == 1
    winner = created[0].json
    for r in responses:
        assert r.status_code in (200, 422)
        if r.status_code == 422:
            assert r.json["error"]["code"] == "idempotency_key_reused"
        else:
            assert r.json == winner
    assert queries.account_balance(wallet_of(user)) == winner["balance"]  # exactly one spend
    assert winner["balance"] in (98, 99)
