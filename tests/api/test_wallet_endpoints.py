"""The seed-compatible /wallet endpoints over real HTTP (Flask test client) on PostgreSQL."""
import pytest

from wallet_web import accounts, queries
from wallet_web.extensions import db
from wallet_web.models import Transaction


@pytest.fixture
def user(make_user) -> int:
    """A user holding 100 GOLD."""
    return make_user(balance=100)


def test_balance_lists_one_wallet_per_currency_and_the_gold_total(client, auth, user):
    response = client.get(f"/wallet/{user}/balance", headers=auth())
    assert response.status_code == 200
    body = response.json
    assert body["user_id"] == user and body["total_balance"] == 100
    assert (body["available_balance"], body["held_balance"]) == (100, 0)
    assert sorted(a["currency"] for a in body["accounts"]) == ["DIAMOND", "GOLD", "LOYALTY"]
    assert set(body["accounts"][0]) == {"id", "name", "currency", "balance", "available", "held"}


def test_topup_returns_200_success_with_the_receipt_and_the_balance_after(post_movement, user):
    response = post_movement("topup", user_id=user, amount=100, reference_id="top-1")
    assert response.status_code == 200
    body = response.json
    assert set(body) == {"id", "reference_id", "type", "status", "created_at", "balance"}
    assert (body["reference_id"], body["type"], body["status"], body["balance"]) == (
        "top-1", "topup", "success", 200)
    assert "Idempotent-Replayed" not in response.headers


def test_bonus_and_spend_in_another_currency(post_movement, wallet_of, user):
    assert post_movement("bonus", user_id=user, amount=7, reference_id="b", currency="DIAMOND",
                         description="welcome").json["balance"] == 7
    spent = post_movement("spend", user_id=user, amount=5, reference_id="s", currency="DIAMOND")
    assert (spent.status_code, spent.json["type"], spent.json["balance"]) == (200, "spend", 2)
    assert queries.account_balance(wallet_of(user, "DIAMOND")) == 2


def test_the_same_request_again_replays_the_identical_body_with_200(post_movement, wallet_of, user):
    first = post_movement("topup", user_id=user, amount=5, reference_id="again")
    second = post_movement("topup", user_id=user, amount=5, reference_id="again")
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert second.get_data() == first.get_data()
    assert queries.account_balance(wallet_of(user)) == 105


def test_the_same_reference_with_another_body_is_422_and_moves_nothing(
        post_movement, make_user, wallet_of, user):
    other = make_user()
    post_movement("topup", user_id=user, amount=5, reference_id="ref")
    for changed in ({"amount": 6}, {"user_id": other}, {"description": "other"}):
        response = post_movement("topup", **{"user_id": user, "amount": 5, "reference_id": "ref", **changed})
        assert response.status_code == 422
        assert response.json["error"]["code"] == "idempotency_key_reused"
    assert post_movement("spend", user_id=user, amount=5, reference_id="ref").status_code == 422
    assert queries.account_balance(wallet_of(user)) == 105
    assert queries.account_balance(wallet_of(other)) == 0


def test_spending_more_than_the_balance_is_422_insufficient_funds(post_movement, make_user):
    response = post_movement("spend", user_id=make_user(balance=50), amount=51, reference_id="too-much")
    assert response.status_code == 422
    error = response.json["error"]
    assert (error["code"], error["available"], error["requested"]) == ("insufficient_funds", 50, 51)


def test_unknown_user_is_404_user_not_found(post_movement, client, auth, user):
    missing = user + 1000
    response = post_movement("topup", user_id=missing, amount=1, reference_id="x")
    assert (response.status_code, response.json["error"]["code"]) == (404, "user_not_found")
    response = client.get(f"/wallet/{missing}/balance", headers=auth())
    assert (response.status_code, response.json["error"]["code"]) == (404, "user_not_found")
    response = client.get(f"/wallet/{2**64}/balance", headers=auth())  # not an id: no route
    assert (response.status_code, response.json["error"]["code"]) == (404, "not_found")


def test_unknown_currency_is_422(post_movement, user):
    response = post_movement("topup", user_id=user, amount=1, reference_id="x", currency="EUR")
    assert (response.status_code, response.json["error"]["code"]) == (422, "asset_not_found")


def test_a_frozen_wallet_is_423(post_movement, wallet_of, user):
    accounts.set_account_status(wallet_of(user), "frozen")
    response = post_movement("spend", user_id=user, amount=1, reference_id="frozen")
    assert (response.status_code, response.json["error"]["code"]) == (423, "account_frozen")


@pytest.mark.parametrize("fields, field", [
    ({"amount": "5"}, "amount"),
    ({"amount": 5.5}, "amount"),
    ({"amount": 0}, "amount"),
    ({"amount": -3}, "amount"),
    ({"amount": 2**63}, "amount"),
    ({"amount": True}, "amount"),
    ({"user_id": "2"}, "user_id"),
    ({"user_id": 0}, "user_id"),
    ({"reference_id": ""}, "reference_id"),
    ({"reference_id": "x" * 129}, "reference_id"),
    ({"reference_id": "nul\x00byte"}, "reference_id"),
    ({"currency": "gold"}, "currency"),
    ({"description": "d" * 501}, "description"),
    ({"surprise": 1}, "surprise"),
])
def test_invalid_fields_are_422_naming_the_field_and_the_reason(post_movement, user, fields, field):
    body = {"user_id": user, "amount": 5, "reference_id": "v", **fields}
    response = post_movement("topup", **body)
    assert response.status_code == 422
    error = response.json["error"]
    assert (error["code"], error["field"]) == ("validation_error", field)
    assert error["reason"] and field in [problem["field"] for problem in error["errors"]]


def test_a_missing_field_is_422(client, auth, user):
    response = client.post("/wallet/topup", json={"user_id": user, "amount": 5}, headers=auth())
    assert (response.status_code, response.json["error"]["field"]) == (422, "reference_id")
    response = client.post("/wallet/topup", json=[1, 2], headers=auth())  # JSON, not an object
    assert (response.status_code, response.json["error"]["code"]) == (422, "validation_error")


def test_every_problem_is_listed_in_errors(client, auth):
    response = client.post("/wallet/topup", json={"amount": "5", "surprise": 1}, headers=auth())
    assert response.status_code == 422
    fields = {problem["field"] for problem in response.json["error"]["errors"]}
    assert {"user_id", "amount", "reference_id", "surprise"} <= fields


# README: 400 malformed_json when the "body is not JSON": NaN and Infinity are not JSON
# (RFC 8259), though Python's and pydantic's parsers read them.
@pytest.mark.parametrize("raw", [b"{", b"", b"{'user_id': 2}", b'{"reference_id": "\\ud800"}',
                                 b"\xff\xfe", b"NaN", b"Infinity", b"-Infinity",
                                 b'{"user_id": 2, "amount": NaN, "reference_id": "nan"}',
                                 b'{"user_id": 2, "amount": Infinity, "reference_id": "inf"}',
                                 b'{"user_id": 2, "amount": 1, "reference_id": "x"} trailing',
                                 b'\xef\xbb\xbf{"user_id": 2, "amount": 1, "reference_id": "bom"}'])
def test_malformed_json_is_400(client, auth, raw):
    response = client.post("/wallet/topup", data=raw, content_type="application/json", headers=auth())
    assert (response.status_code, response.json["error"]["code"]) == (400, "malformed_json")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_json_is_415(client, auth, content_type):
    headers = auth() | ({"Content-Type": content_type} if content_type else {})
    response = client.post("/wallet/topup", data=b'{"user_id": 2}', headers=headers)
    assert (response.status_code, response.json["error"]["code"]) == (415, "unsupported_media_type")


def test_a_body_over_the_limit_is_413(client, auth, app):
    too_big = b'{"description": "' + b"x" * app.config["MAX_CONTENT_LENGTH"] + b'"}'
    response = client.post("/wallet/topup", data=too_big, content_type="application/json", headers=auth())
    assert response.status_code == 413 and response.json["error"]["code"] == "request_entity_too_large"


def test_unknown_paths_and_methods_under_the_api_get_json_errors(client, auth):
    missing = client.get("/wallet/nothing/here", headers=auth())
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"
    assert client.get("/api/v2/users").json["error"]["code"] == "not_found"
    wrong = client.get("/wallet/topup", headers=auth())
    assert wrong.status_code == 405 and wrong.json["error"]["code"] == "method_not_allowed"
    assert "POST" in wrong.headers["Allow"]


def test_each_movement_records_the_key_that_made_it(post_movement, app, user):
    receipt = post_movement("topup", user_id=user, amount=1, reference_id="who").json
    tx = db.session.get(Transaction, receipt["id"])
    assert tx.actor == "api:test-writer" and tx.api_key_id is not None
