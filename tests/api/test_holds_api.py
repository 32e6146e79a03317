"""Holds over HTTP as a shop uses them: a purchase (hold, deliver, capture 80 of 100, 20 back),
a failed delivery (void), an abandoned cart (expiry, then the sweeper), every step retried
after a timeout, and every refusal with its status and code."""
from datetime import timedelta

import pytest
from sqlalchemy import update

from wallet_web import audit, holds
from wallet_web.extensions import db
from wallet_web.models import Hold, utcnow


@pytest.fixture
def shop(client, auth):
    """shop(method, path, **json) -> the response, with the write key."""
    def call(method: str, path: str, key: str | None = None, **body):
        if method == "GET":
            return client.get(path, headers=auth(key))
        return client.post(path, json=body, headers=auth(key))
    return call


def hold_of(shop, user: int, amount: int = 100, reference: str = "cart-1:hold", **extra):
    return shop("POST", "/api/v1/holds", user_id=user, asset="GOLD", amount=amount,
                reference_id=reference, **extra)


def expire(hold_id: int) -> None:
    db.session.execute(update(Hold).where(Hold.id == hold_id)
                       .values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()


def balance(shop, user: int) -> dict:
    body = shop("GET", f"/wallet/{user}/balance").json
    return {key: body[key] for key in ("total_balance", "available_balance", "held_balance")}


def test_a_purchase_holds_100_captures_80_and_gives_20_back(shop, make_user):
    user = make_user(balance=150)

    placed = hold_of(shop, user, description="Sword of dawn")

    assert placed.status_code == 201, placed.text
    assert placed.json | {"id": 0, "created_at": 0, "expires_at": 0, "hold_transaction_id": 0,
                          "account_id": 0} == {
        "id": 0, "user_id": user, "account_id": 0, "asset": "GOLD", "amount": 100,
        "captured_amount": None, "status": "open", "reference_id": "cart-1:hold",
        "description": "Sword of dawn", "created_at": 0, "expires_at": 0, "settled_at": None,
        "hold_transaction_id": 0, "settle_transaction_id": None, "available": 50, "held": 100}
    assert balance(shop, user) == {"total_balance": 150, "available_balance": 50,
                                   "held_balance": 100}

    captured = shop("POST", f"/api/v1/holds/{placed.json['id']}/capture",
                    reference_id="cart-1:capture", amount=80)

    assert captured.status_code == 201, captured.text
    assert (captured.json["status"], captured.json["captured_amount"]) == ("captured", 80)
    assert (captured.json["available"], captured.json["held"]) == (70, 0)
    assert balance(shop, user) == {"total_balance": 70, "available_balance": 70,
                                   "held_balance": 0}
    assert audit.verify().ok


def test_a_failed_delivery_voids_and_the_wallet_gets_everything_back(shop, make_user):
    user = make_user(balance=150)
    placed = hold_of(shop, user).json

    voided = shop("POST", f"/api/v1/holds/{placed['id']}/void", reference_id="cart-1:void")

    assert voided.status_code == 201, voided.text
    assert (voided.json["status"], voided.json["available"], voided.json["held"]) == (
        "voided", 150, 0)


def test_an_abandoned_cart_expires_is_refused_and_the_sweeper_gives_it_back(shop, make_user):
    user = make_user(balance=150)
    placed = hold_of(shop, user, expires_in_seconds=60).json
    expire(placed["id"])

    read = shop("GET", f"/api/v1/holds/{placed['id']}")
    captured = shop("POST", f"/api/v1/holds/{placed['id']}/capture", reference_id="late")

    assert (read.json["status"], read.json["available"], read.json["held"]) == ("expired", 150, 0)
    assert balance(shop, user) == {"total_balance": 150, "available_balance": 150,
                                   "held_balance": 0}
    assert captured.status_code == 409 and captured.json["error"]["code"] == "hold_expired"
    assert holds.expire_due() == 1
    assert shop("GET", f"/api/v1/holds/{placed['id']}").json["settle_transaction_id"]
    assert audit.verify().ok


def test_every_step_retried_after_a_timeout_answers_its_first_result(shop, make_user):
    user = make_user(balance=150)
    first = hold_of(shop, user)
    again = hold_of(shop, user)
    path = f"/api/v1/holds/{first.json['id']}/capture"
    captured = shop("POST", path, reference_id="cap", amount=80)
    captured_again = shop("POST", path, reference_id="cap", amount=80)

    assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (200, "true")
    assert again.json["id"] == first.json["id"]
    assert (captured_again.status_code, captured_again.headers.get("Idempotent-Replayed")) == (
        200, "true")
    assert captured_again.json["settle_transaction_id"] == captured.json["settle_transaction_id"]
    assert balance(shop, user)["total_balance"] == 70


@pytest.mark.parametrize("step, body, status, code", [
    ("capture", {"reference_id": "c2"}, 409, "hold_captured"),
    ("void", {"reference_id": "v2"}, 409, "hold_captured"),
    ("capture", {"reference_id": "cap", "amount": 79}, 422, "idempotency_key_reused"),
])
def test_a_step_on_a_captured_hold_is_refused_with_its_status(shop, make_user, step, body,
                                                              status, code):
    user = make_user(balance=150)
    placed = hold_of(shop, user).json
    shop("POST", f"/api/v1/holds/{placed['id']}/capture", reference_id="cap", amount=80)

    response = shop("POST", f"/api/v1/holds/{placed['id']}/{step}", **body)

    assert (response.status_code, response.json["error"]["code"]) == (status, code)
    assert balance(shop, user)["total_balance"] == 70


def test_a_capture_above_the_held_amount_is_422_and_moves_nothing(shop, make_user):
    user = make_user(balance=150)
    placed = hold_of(shop, user).json

    response = shop("POST", f"/api/v1/holds/{placed['id']}/capture", reference_id="c",
                    amount=101)

    assert (response.status_code, response.json["error"]["code"]) == (422,
                                                                      "capture_exceeds_hold")
    assert shop("GET", f"/api/v1/holds/{placed['id']}").json["status"] == "open"


def test_holding_more_than_is_available_is_422_and_a_frozen_wallet_423(shop, client, auth,
                                                                        make_user):
    user = make_user(balance=50)

    short = hold_of(shop, user, amount=51)
    client.post(f"/api/v1/users/{user}/freeze", json={"reason": "Fraud check"}, headers=auth())
    frozen = hold_of(shop, user, amount=5, reference="h2")

    assert (short.status_code, short.json["error"]["code"]) == (422, "insufficient_funds")
    assert (frozen.status_code, frozen.json["error"]["code"]) == (423, "account_frozen")


@pytest.mark.parametrize("seconds", [0, 604801, "60", 1.5])
def test_an_expiry_outside_one_second_to_seven_days_is_422(shop, make_user, seconds):
    response = hold_of(shop, make_user(balance=50), amount=5, expires_in_seconds=seconds)

    assert response.status_code == 422, response.text


def test_an_unknown_hold_is_404_and_a_read_key_cannot_capture(shop, make_user, read_key):
    placed = hold_of(shop, make_user(balance=50), amount=5).json

    missing = shop("POST", "/api/v1/holds/999999/void", reference_id="v")
    forbidden = shop("POST", f"/api/v1/holds/{placed['id']}/capture", key=read_key,
                     reference_id="c")

    assert (missing.status_code, missing.json["error"]["code"]) == (404, "hold_not_found")
    assert forbidden.status_code == 403
    assert shop("GET", f"/api/v1/holds/{placed['id']}", key=read_key).json["status"] == "open"


def test_holds_are_listed_by_user_status_and_asset_in_keyset_pages(shop, make_user):
    user, other = make_user(balance=100), make_user(balance=100)
    ids = [hold_of(shop, user, amount=5, reference=f"h{n}").json["id"] for n in range(5)]
    hold_of(shop, other, amount=5, reference="other")
    shop("POST", f"/api/v1/holds/{ids[0]}/void", reference_id="v")

    first = shop("GET", f"/api/v1/holds?user_id={user}&status=open&limit=2").json
    rest = shop("GET", f"/api/v1/holds?user_id={user}&status=open&limit=2"
                f"&cursor={first['next_cursor']}").json
    voided = shop("GET", f"/api/v1/holds?user_id={user}&status=voided&asset=GOLD").json

    assert [h["id"] for h in first["items"] + rest["items"]] == ids[:0:-1]
    assert [h["id"] for h in voided["items"]] == [ids[0]]
    assert shop("GET", "/api/v1/holds?cursor=forged").status_code == 400
    assert shop("GET", "/api/v1/holds?status=pending").status_code == 422


def test_users_and_accounts_report_available_and_held(shop, make_user):
    user = make_user(balance=100)
    placed = hold_of(shop, user, amount=30).json

    wallet = next(a for a in shop("GET", f"/api/v1/users/{user}").json["accounts"]
                  if a["asset"] == "GOLD")
    account = shop("GET", f"/api/v1/accounts/{placed['account_id']}").json

    assert (wallet["available"], wallet["held"]) == (70, 30)
    assert (account["balance"], account["available"], account["held"]) == (70, 70, 30)


def test_the_csv_names_the_hold_of_each_hold_capture_and_void_posting(shop, client, auth,
                                                                       make_user):
    import csv
    import io
    user = make_user(balance=150)
    captured = hold_of(shop, user).json["id"]
    shop("POST", f"/api/v1/holds/{captured}/capture", reference_id="c", amount=80)
    voided = hold_of(shop, user, amount=10, reference="h2").json["id"]
    shop("POST", f"/api/v1/holds/{voided}/void", reference_id="v")

    text = client.get("/api/v1/transactions.csv", headers=auth()).get_data(as_text=True)

    rows = list(csv.DictReader(io.StringIO(text)))
    by_kind = {(row["kind"], row["hold_id"]) for row in rows if row["kind"] in ("hold", "capture",
                                                                               "void")}
    assert by_kind == {("hold", str(captured)), ("capture", str(captured)),
                       ("hold", str(voided)), ("void", str(voided))}
    assert {row["hold_id"] for row in rows if row["kind"] == "topup"} == {""}
