"""Hostile API input is a clear 4xx that changes nothing: forged cursors, digits that are not
ASCII, numbers posing as timestamps, duplicate JSON keys, NUL; and every API answer is
marked nosniff and no-store."""
import base64
import json

import pytest

from wallet_web import queries
from wallet_web.extensions import db
from wallet_web.models import Transaction

pytestmark = pytest.mark.both_backends


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def count_transactions() -> int:
    db.session.rollback()
    return db.session.query(Transaction).count()


def error_of(response) -> tuple[int, str]:
    return response.status_code, response.json["error"]["code"]


# ---------------------------------------------------------------- cursors


BAD_CURSORS = [
    cursor_of("id:9223372036854775808"),
    cursor_of("id:99999999999999999999999999"),
    cursor_of("id:0"),
    cursor_of("id:-1"),
    cursor_of("id:\u0661\u0662"),
    cursor_of("id:\uff11\uff12"),
    cursor_of("id:\u00b2"),
    cursor_of("id:+12"),
    cursor_of("id:1_0"),
    cursor_of("id:1") + "!!",
    cursor_of("id:1") + "\u00e9",
    "A" * 300,
    "A" * 5000,
    "garbage",
    "a",
]


@pytest.mark.parametrize("cursor", BAD_CURSORS)
def test_a_forged_cursor_is_400_invalid_cursor_on_every_list(client, auth, wallet_of, cursor):
    for path in ("/api/v1/transactions", f"/api/v1/accounts/{wallet_of(2)}/postings"):
        response = client.get(path, query_string={"cursor": cursor}, headers=auth())
        assert error_of(response) == (400, "invalid_cursor"), path


def test_a_cursor_at_the_largest_id_is_a_page(client, auth):
    response = client.get("/api/v1/transactions", headers=auth(),
                          query_string={"cursor": cursor_of("id:9223372036854775807")})
    assert response.status_code == 200 and len(response.json["items"]) == 5


# ---------------------------------------------------------------- digits that are not ASCII


@pytest.fixture
def twelve_users(make_user):
    for _ in range(9):
        make_user()  # ids 4..12


@pytest.mark.parametrize("term", ["\u00b2", "\u2460", "\uff11\uff12", "\u0661\u0662", "\u0967"])
def test_a_lookup_by_a_digit_that_is_not_ascii_finds_no_user_by_id(client, auth, twelve_users, term):
    response = client.get("/api/v1/users", query_string={"q": term}, headers=auth())
    assert response.status_code == 200 and response.json["items"] == []
    found = client.get("/api/v1/users?q=12", headers=auth()).json["items"]
    assert [user["id"] for user in found] == [12]


@pytest.mark.parametrize("value", ["\uff11\uff12", "\u0661\u0662", "1_0", " 12 ", "12 ", "12.0",
                                   "+12", "12\n", "0x10", "\u00b2"])
@pytest.mark.parametrize("name, path", [
    ("limit", "/api/v1/transactions"), ("user_id", "/api/v1/transactions"),
    ("account_id", "/api/v1/transactions"), ("limit", "/api/v1/users"),
    ("user_id", "/api/v1/transactions.csv"), ("limit", "/api/v1/accounts/1/postings"),
])
def test_a_query_integer_is_ascii_digits_only(client, auth, name, path, value):
    response = client.get(path, query_string={"q": "a", name: value}, headers=auth(),
                          buffered=True)
    assert error_of(response) == (422, "validation_error")
    assert response.json["error"]["field"] == name


def test_a_query_integer_in_ascii_digits_is_read(client, auth):
    response = client.get("/api/v1/transactions?user_id=2&limit=1", headers=auth())
    assert response.status_code == 200 and len(response.json["items"]) == 1


@pytest.mark.parametrize("path", ["/api/v1/users/\uff12", "/api/v1/users/\u0662",
                                  "/wallet/\u0662/balance", "/api/v1/transactions/\u0664",
                                  "/api/v1/accounts/\uff11", "/api/v1/users/9223372036854775808",
                                  "/api/v1/users/99999999999999999999999999", "/api/v1/users/0"])
def test_an_id_in_the_path_that_is_not_an_ascii_bigint_is_a_json_404(client, auth, path):
    response = client.get(path, headers=auth())
    assert response.status_code == 404 and response.json["error"]["code"] == "not_found"


def test_a_reversal_of_an_id_that_is_not_ascii_is_404_and_moves_nothing(client, auth):
    before = count_transactions()
    response = client.post("/api/v1/transactions/\u0664/reversal", json={"reference_id": "r"},
                           headers=auth())
    assert response.status_code == 404 and count_transactions() == before


def test_the_openapi_document_still_types_path_ids_as_bigints(client):
    parameters = client.get("/api/v1/openapi.json").json["paths"]["/api/v1/users/{user_id}"][
        "get"]["parameters"]
    assert parameters[0]["schema"] == {"type": "integer", "minimum": 1,
                                       "maximum": 2**63 - 1}


# ---------------------------------------------------------------- timestamps


@pytest.mark.parametrize("query", ["at=20250101", "at=0.5", "at=1700000000", "at=-1",
                                   "at=1e9", "at=%EF%BC%92025-01-01T00:00:00Z"])
def test_a_balance_at_a_bare_number_is_422(client, auth, wallet_of, query):
    response = client.get(f"/api/v1/accounts/{wallet_of(2)}/balance?{query}", headers=auth())
    assert error_of(response) == (422, "validation_error")
    assert response.json["error"]["field"] == "at"


@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize("value", ["0.5", "20250101", "1700000000"])
def test_a_transaction_filter_by_a_bare_number_is_422(client, auth, name, value):
    for path in ("/api/v1/transactions", "/api/v1/transactions.csv"):
        response = client.get(f"{path}?{name}={value}", headers=auth(), buffered=True)
        assert error_of(response) == (422, "validation_error") and response.json["error"]["field"] == name


@pytest.mark.parametrize("value", ["2025-01-01T00:00:00Z", "2025-01-01T00:00:00%2B02:00",
                                   "2025-01-01T00:00Z", "2025-01-01 00:00:00.123456-05:00"])
def test_an_iso_8601_date_time_with_an_offset_is_read(client, auth, value):
    response = client.get(f"/api/v1/transactions?since={value}", headers=auth())
    assert response.status_code == 200


# ---------------------------------------------------------------- duplicate JSON keys


@pytest.mark.parametrize("raw", [
    '{"user_id": 2, "amount": 1, "amount": 1000000, "reference_id": "dup-1"}',
    '{"user_id": 3, "user_id": 2, "amount": 1, "reference_id": "dup-2"}',
    '{"user_id": 2, "amount": 1, "reference_id": "dup-3", "reference_id": "dup-4"}',
    '{"user_id": 2, "amount": 1, "reference_id": "dup-5", "currency": "GOLD", "currency": "DIAMOND"}',
])
def test_a_repeated_json_key_is_400_and_moves_nothing(client, auth, wallet_of, raw):
    before = count_transactions()
    response = client.post("/wallet/topup", data=raw, content_type="application/json",
                           headers=auth())
    assert error_of(response) == (400, "malformed_json")
    assert "repeat" in response.json["error"]["message"]
    assert count_transactions() == before and queries.account_balance(wallet_of(2)) == 100


def test_a_repeated_key_in_a_reversal_is_400(client, auth):
    raw = '{"reference_id": "undo-1", "reference_id": "undo-2"}'
    response = client.post("/api/v1/transactions/4/reversal", data=raw,
                           content_type="application/json", headers=auth())
    assert error_of(response) == (400, "malformed_json")
    assert count_transactions() == 5


@pytest.mark.parametrize("raw", [b"[" * 60_000, b'{"a":' * 12_000, b"\xff" * 10, b"{" * 3])
def test_a_deeply_nested_or_undecodable_body_is_a_4xx(client, auth, raw):
    response = client.post("/wallet/topup", data=raw, content_type="application/json",
                           headers=auth())
    assert response.status_code in (400, 422)
    assert response.json["error"]["code"] in ("malformed_json", "validation_error")


def test_a_body_without_repeated_keys_still_works(client, auth):
    body = json.dumps({"user_id": 2, "amount": 1, "reference_id": "single"})
    response = client.post("/wallet/topup", data=body, content_type="application/json",
                           headers=auth())
    assert response.status_code == 201


# ---------------------------------------------------------------- NUL stays a 422


@pytest.mark.parametrize("path", ["/api/v1/users?q=a%00b", "/api/v1/transactions?reference_id=%00",
                                  "/api/v1/transactions.csv?reference_id=a%00"])
def test_a_nul_in_a_query_stays_a_422_validation_error(client, auth, path):
    assert error_of(client.get(path, headers=auth(), buffered=True)) == (422, "validation_error")


# ---------------------------------------------------------------- response headers


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/wallet/2/balance", None),
    ("POST", "/wallet/topup", {"user_id": 2, "amount": 1, "reference_id": "hdr"}),
    ("POST", "/wallet/topup", {"user_id": 2}),
    ("POST", "/wallet/spend", {"user_id": 2, "amount": 10**6, "reference_id": "hdr-2"}),
    ("GET", "/api/v1/transactions?cursor=garbage", None),
    ("GET", "/api/v1/nowhere", None),
    ("GET", "/wallet", None),
    ("GET", "/api", None),
    ("DELETE", "/wallet/topup", None),
    ("GET", "/api/v1/openapi.json", None),
    ("GET", "/api/docs", None),
    ("GET", "/api/v1/transactions.csv", None),
])
def test_every_api_answer_is_nosniff_and_no_store(client, auth, method, path, body):
    response = client.open(path, method=method, json=body, headers=auth(), buffered=True)
    assert response.headers["X-Content-Type-Options"] == "nosniff", response.status_code
    assert response.headers["Cache-Control"] == "no-store"


def test_an_unauthenticated_or_oversized_request_is_nosniff_and_no_store_too(client, auth, app):
    unauthenticated = client.get("/wallet/2/balance")
    too_big = client.post("/wallet/topup", headers=auth(), content_type="application/json",
                          data=b" " * (app.config["MAX_CONTENT_LENGTH"] + 1))
    assert (unauthenticated.status_code, too_big.status_code) == (401, 413)
    for response in (unauthenticated, too_big):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
