"""Money limits and the reference namespace as an integrator meets them, on both backends."""
import pytest

from wallet_web import accounts, api_keys, assets, audit, queries
from wallet_web.limits import BIGINT_MAX

pytestmark = pytest.mark.both_backends


def test_a_topup_of_the_largest_bigint_is_422_amount_too_large_and_nothing_moves(
        post_movement, client, auth, make_user, wallet_of):
    treasury = accounts.ensure_house_accounts("GOLD")["treasury"]
    before = queries.account_balance(treasury)
    user = make_user(balance=1030)
    response = post_movement("topup", user_id=user, amount=BIGINT_MAX, reference_id="huge")

    assert response.status_code == 422
    assert response.json["error"] == {
        "code": "amount_too_large", "asset": "GOLD", "max_amount": 10**9,
        "requested": BIGINT_MAX,
        "message": f"{BIGINT_MAX} is above the GOLD maximum of 1000000000 per movement"}
    spent = post_movement("spend", user_id=user, amount=30, reference_id="after")
    assert (spent.status_code, spent.json["balance"]) == (200, 1000)
    house = client.get(f"/api/v1/accounts/{treasury}", headers=auth()).json
    assert house["balance"] == queries.account_balance(treasury) == before - 1030
    assert audit.verify().ok


def test_a_credit_beyond_the_wallets_maximum_is_422_balance_limit(post_movement, make_user):
    user = make_user(balance=900)
    assets.set_limits("GOLD", max_amount=500, max_balance=1000)
    response = post_movement("bonus", user_id=user, amount=101, reference_id="b-1")
    assert response.status_code == 422
    assert response.json["error"]["code"] == "balance_limit"
    assert response.json["error"]["max_balance"] == 1000
    assert post_movement("bonus", user_id=user, amount=100, reference_id="b-2").json["balance"] == 1000


def test_another_keys_reference_is_409_reference_taken_and_reveals_nothing(
        post_movement, write_key, make_user, wallet_of):
    user = make_user(balance=100)
    other_key = api_keys.create_key("other-integration", "write")[1]
    first = post_movement("spend", user_id=user, amount=10, reference_id="order-7")

    taken = post_movement("spend", key=other_key, user_id=user, amount=10, reference_id="order-7")
    altered = post_movement("spend", key=other_key, user_id=user, amount=99, reference_id="order-7")

    for response in (taken, altered):
        assert response.status_code == 409
        assert response.json == {"error": {
            "code": "reference_taken",
            "message": "reference_id 'order-7' is taken by another caller"}}
    replay = post_movement("spend", user_id=user, amount=10, reference_id="order-7")
    assert (replay.status_code, replay.get_data()) == (200, first.get_data())
    assert queries.account_balance(wallet_of(user)) == 90
