"""Hostile API input is a clear 4xx that changes nothing: forged cursors, digits that are not
ASCII, numbers posing as timestamps, duplicate JSON keys, NUL; and every API answer is
marked nosniff and no-store."""
import base64
import json

import pytest

from wallet_web import ledger, queries
from wallet_web.api.openapi import OPERATIONS
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
    "aWQ6eA",  # "id:x"
    "\x00",
    "a\x00b",
    cursor_of("id:1") + "\x00",
]


@pytest.fixture
def list_paths(make_user, wallet_of) -> list[str]:
    """Every keyset list of the API (from the route registry), its path filled."""
    account = wallet_of(make_user())
    paths = [op.path.replace("<id:account_id>", str(account)) for op in OPERATIONS
             if op.method == "GET" and op.query is not None and "cursor" in op.query.model_fields]
    assert len(paths) >= 3
    return paths


@pytest.mark.parametrize("cursor", BAD_CURSORS)
def test_a_forged_cursor_is_400_invalid_cursor_on_every_list(client, auth, list_paths, cursor):
    for path in list_paths:
        response = client.get(path, query_string={"cursor": cursor}, headers=auth())
        assert error_of(response) == (400, "invalid_cursor"), path


def test_a_cursor_at_the_largest_id_is_a_page(client, auth):
    response = client.get("/api/v1/transactions", headers=auth(),
                          query_string={"cursor": cursor_of("id:9223372036854775807")})
    assert response.status_code == 200 and len(response.json["items"]) == count_transactions()


# ---------------------------------------------------------------- digits that are not ASCII


@pytest.fixture
def twelve_users(make_user):
    """Users up to id 12 exist: a digit that is not ASCII must not read as their ids."""
    while make_user() < 12:
        pass


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
    ("user_id", "/api/v1/transactions.csv"), ("limit", "/api/v1/accounts/<account>/postings"),
])
def test_a_query_integer_is_ascii_digits_only(client, auth, make_user, wallet_of, name, path,
                                              value):
    path = path.replace("<account>", str(wallet_of(make_user())))
    response = client.get(path, query_string={"q": "a", name: value}, headers=auth(),
                          buffered=True)
    assert error_of(response) == (422, "validation_error")
    assert response.json["error"]["field"] == name


def test_a_query_integer_in_ascii_digits_is_read(client, auth, make_user):
    response = client.get(f"/api/v1/transactions?user_id={make_user(balance=5)}&limit=1",
                          headers=auth())
    assert response.status_code == 200 and len(response.json["items"]) == 1


@pytest.mark.parametrize("path", ["/api/v1/users/\uff12", "/api/v1/users/\u0662",
                                  "/wallet/\u0662/balance", "/api/v1/transactions/\u0664",
                                  "/api/v1/accounts/\uff11", "/api/v1/users/9223372036854775808",
                                  "/api/v1/users/99999999999999999999999999", "/api/v1/users/0"])
def test_an_id_in_the_path_that_is_not_an_ascii_bigint_is_a_json_404(client, auth, path):
    response = client.get(path, headers=auth())
    assert response.status_code == 404 and response.json["error"]["code"] == "not_found"


@pytest.mark.parametrize("external_id", ["a%00b", "%00", "game:%E2%80%AE", "x" * 65, "-x", "a%20b"])
def test_an_external_id_no_user_can_have_is_a_json_404_user_not_found(client, auth, external_id):
    response = client.get(f"/api/v1/users/by-external-id/{external_id}", headers=auth())
    assert error_of(response) == (404, "user_not_found")


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
def test_a_balance_at_a_bare_number_is_422(client, auth, make_user, wallet_of, query):
    response = client.get(f"/api/v1/accounts/{wallet_of(make_user())}/balance?{query}",
                          headers=auth())
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
    '{"user_id": A, "amount": 1, "amount": 1000000, "reference_id": "dup-1"}',
    '{"user_id": B, "user_id": A, "amount": 1, "reference_id": "dup-2"}',
    '{"user_id": A, "amount": 1, "reference_id": "dup-3", "reference_id": "dup-4"}',
    '{"user_id": A, "amount": 1, "reference_id": "dup-5", "currency": "GOLD", "currency": "DIAMOND"}',
])
def test_a_repeated_json_key_is_400_and_moves_nothing(client, auth, make_user, wallet_of, raw):
    a, b = make_user(balance=100), make_user(balance=100)
    before = count_transactions()
    response = client.post("/wallet/topup", data=raw.replace("A", str(a)).replace("B", str(b)),
                           content_type="application/json", headers=auth())
    assert error_of(response) == (400, "malformed_json")
    assert "repeat" in response.json["error"]["message"]
    assert count_transactions() == before
    assert queries.account_balance(wallet_of(a)) == queries.account_balance(wallet_of(b)) == 100


def test_a_repeated_key_in_a_reversal_is_400(client, auth, make_user):
    made = ledger.topup(make_user(), "GOLD", 5, "to-reverse")
    before = count_transactions()
    raw = '{"reference_id": "undo-1", "reference_id": "undo-2"}'
    response = client.post(f"/api/v1/transactions/{made.id}/reversal", data=raw,
                           content_type="application/json", headers=auth())
    assert error_of(response) == (400, "malformed_json")
    assert count_transactions() == before


@pytest.mark.parametrize("raw", [b"[" * 60_000, b'{"a":' * 12_000, b"\xff" * 10, b"{" * 3])
def test_a_deeply_nested_or_undecodable_body_is_400_malformed_json(client, auth, raw):
    response = client.post("/wallet/topup", data=raw, content_type="application/json",
                           headers=auth())
    assert error_of(response) == (400, "malformed_json")


def test_a_body_without_repeated_keys_still_works(client, auth, make_user):
    body = json.dumps({"user_id": make_user(), "amount": 1, "reference_id": "single"})
    response = client.post("/wallet/topup", data=body, content_type="application/json",
                           headers=auth())
    assert (response.status_code, response.json["status"]) == (200, "success")


# ---------------------------------------------------------------- NUL stays a 422


@pytest.mark.parametrize("path", ["/api/v1/users?q=a%00b", "/api/v1/transactions?reference_id=%00",
                                  "/api/v1/transactions.csv?reference_id=a%00"])
def test_a_nul_in_a_query_stays_a_422_validation_error(client, auth, path):
    assert error_of(client.get(path, headers=auth(), buffered=True)) == (422, "validation_error")


# ---------------------------------------------------------------- response headers


USER = "<user>"  # a user of the test's own, filled in at run time


@pytest.mark.parametrize("method, path, body", [
    ("GET", f"/wallet/{USER}/balance", None),
    ("POST", "/wallet/topup", {"user_id": USER, "amount": 1, "reference_id": "hdr"}),
    ("POST", "/wallet/topup", {"user_id": USER}),
    ("POST", "/wallet/spend", {"user_id": USER, "amount": 10**6, "reference_id": "hdr-2"}),
    ("GET", "/api/v1/transactions?cursor=garbage", None),
    ("GET", "/api/v1/nowhere", None),
    ("GET", "/wallet", None),
    ("GET", "/api", None),
    ("DELETE", "/wallet/topup", None),
    ("GET", "/api/v1/openapi.json", None),
    ("GET", "/api/docs", None),
    ("GET", "/api/v1/transactions.csv", None),
])
def test_every_api_answer_is_nosniff_and_no_store(client, auth, make_user, method, path, body):
    user = make_user()
    path = path.replace(USER, str(user))
    body = body and {name: user if value == USER else value for name, value in body.items()}
    response = client.open(path, method=method, json=body, headers=auth(), buffered=True)
    assert response.headers["X-Content-Type-Options"] == "nosniff", response.status_code
    assert response.headers["Cache-Control"] == "no-store"


def test_an_unauthenticated_or_oversized_request_is_nosniff_and_no_store_too(
        client, auth, app, make_user):
    unauthenticated = client.get(f"/wallet/{make_user()}/balance")
    too_big = client.post("/wallet/topup", headers=auth(), content_type="application/json",
                          data=b" " * (app.config["MAX_CONTENT_LENGTH"] + 1))
    assert (unauthenticated.status_code, too_big.status_code) == (401, 413)
    for response in (unauthenticated, too_big):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
