"""/api/v1: lookups, keyset pages under concurrent inserts, filters, reversal, balance at, CSV."""
import csv
import io
import time
from datetime import datetime, timezone

from sqlalchemy import func, select

from wallet_web import ledger
from wallet_web.extensions import db
from wallet_web.models import Posting


def test_users_are_found_by_id_username_or_email_prefix(client, auth, make_user):
    carol = make_user(name="carol")
    find = lambda q: [u["username"] for u in client.get(f"/api/v1/users?q={q}", headers=auth()).json["items"]]
    assert find(str(carol)) == ["carol"]
    assert find("CAR") == ["carol"]
    assert find("bob%40ex") == ["bob"]
    assert find("nobody") == []
    assert client.get("/api/v1/users", headers=auth()).status_code == 422


def test_a_user_with_its_accounts_and_balances(client, auth):
    body = client.get("/api/v1/users/3", headers=auth()).json
    assert body["username"] == "bob"
    assert {a["asset_code"]: a["balance"] for a in body["accounts"]} == {"DIAMOND": 0, "GOLD": 50, "LOYALTY": 0}
    assert client.get("/api/v1/users/999", headers=auth()).status_code == 404


def test_an_account_with_its_exact_balance(client, auth, wallet_of):
    body = client.get(f"/api/v1/accounts/{wallet_of(2)}", headers=auth()).json
    assert (body["user_id"], body["asset_code"], body["balance"], body["status"]) == (2, "GOLD", 100, "active")
    treasury = client.get("/api/v1/accounts/1", headers=auth()).json
    assert treasury["kind"] == "treasury" and treasury["balance"] == 10**12 - 150
    assert client.get("/api/v1/accounts/999999", headers=auth()).json["error"]["code"] == "account_not_found"


def test_postings_pages_stay_stable_while_new_rows_arrive(client, auth, make_user, wallet_of):
    user = make_user()
    for n in range(7):
        ledger.topup(user, "GOLD", n + 1, f"p-{n}")
    url = f"/api/v1/accounts/{wallet_of(user)}/postings?limit=3"
    seen, cursor = [], None
    while True:
        page = client.get(url + (f"&cursor={cursor}" if cursor else ""), headers=auth()).json
        seen += [item["amount"] for item in page["items"]]
        ledger.topup(user, "GOLD", 100 + len(seen), f"late-{len(seen)}")  # arrives mid-walk
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [7, 6, 5, 4, 3, 2, 1]
    newest = client.get(url, headers=auth()).json["items"][0]
    assert newest["amount"] > 100 and newest["balance_after"] == sum(range(1, 8)) + 3 * 100 + 3 + 6 + 7


def test_an_invalid_cursor_is_400(client, auth, wallet_of):
    for cursor in ("garbage", "aWQ6eA", "%00"):
        response = client.get(f"/api/v1/accounts/{wallet_of(2)}/postings?cursor={cursor}", headers=auth())
        assert response.status_code in (400, 422)
    response = client.get("/api/v1/transactions?cursor=garbage", headers=auth())
    assert (response.status_code, response.json["error"]["code"]) == (400, "invalid_cursor")


def test_transactions_are_filtered_and_paged(client, auth, post_movement):
    for n in range(5):
        post_movement("bonus", user_id=3, amount=1, reference_id=f"bonus-{n}", currency="LOYALTY")
    post_movement("spend", user_id=3, amount=10, reference_id="spend-0")
    get = lambda q: client.get(f"/api/v1/transactions?{q}", headers=auth()).json
    assert [t["kind"] for t in get("user_id=3")["items"]] == ["spend"] + ["bonus"] * 5 + ["topup"]
    assert [t["reference_id"] for t in get("kind=spend")["items"]] == ["spend-0"]
    assert len(get("asset=LOYALTY")["items"]) == 5 + 1  # and its genesis
    assert get("reference_id=bonus-2")["items"][0]["postings"][0]["asset_code"] == "LOYALTY"
    ids, cursor = [], ""
    while True:
        page = get(f"user_id=3&limit=2&cursor={cursor}")
        ids += [t["id"] for t in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert len(ids) == 7 and ids == sorted(ids, reverse=True)
    assert get("since=2999-01-01T00:00:00Z")["items"] == []
    assert len(get("until=2999-01-01T00:00:00%2B02:00&user_id=3")["items"]) == 7
    naive = client.get("/api/v1/transactions?since=2020-01-01T00:00:00", headers=auth())
    assert naive.status_code == 422 and naive.json["error"]["field"] == "since"
    assert client.get("/api/v1/transactions?kind=gift", headers=auth()).status_code == 422


def test_one_transaction_with_its_postings(client, auth, post_movement):
    made = post_movement("topup", user_id=2, amount=9, reference_id="one").json
    body = client.get(f"/api/v1/transactions/{made['id']}", headers=auth()).json
    assert body["kind"] == "topup" and body["actor"] == "api:test-writer" and body["api_key_id"]
    assert sorted(p["amount"] for p in body["postings"]) == [-9, 9]
    assert client.get("/api/v1/transactions/999999", headers=auth()).status_code == 404


def test_reversal_is_created_then_replayed_then_refused_under_another_reference(client, auth, post_movement, wallet_of):
    made = post_movement("topup", user_id=2, amount=40, reference_id="to-undo").json
    url = f"/api/v1/transactions/{made['id']}/reversal"
    first = client.post(url, json={"reference_id": "undo-1"}, headers=auth())
    assert first.status_code == 201 and first.json["reverses_id"] == made["id"]
    again = client.post(url, json={"reference_id": "undo-1"}, headers=auth())
    assert again.status_code == 200 and again.get_data() == first.get_data()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = client.post(url, json={"reference_id": "undo-2"}, headers=auth())
    assert (other.status_code, other.json["error"]["code"]) == (409, "already_reversed")
    assert client.get(f"/api/v1/accounts/{wallet_of(2)}", headers=auth()).json["balance"] == 100
    genesis = client.post("/api/v1/transactions/1/reversal", json={"reference_id": "g"}, headers=auth())
    assert (genesis.status_code, genesis.json["error"]["code"]) == (422, "not_reversible")
    missing = client.post("/api/v1/transactions/999999/reversal", json={"reference_id": "m"}, headers=auth())
    assert missing.status_code == 404


def test_balance_at_a_point_in_time_comes_from_the_stored_balance_after(client, auth, post_movement, wallet_of):
    post_movement("topup", user_id=2, amount=10, reference_id="t-1")
    time.sleep(0.01)
    middle = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    time.sleep(0.01)
    post_movement("topup", user_id=2, amount=20, reference_id="t-2")
    url = f"/api/v1/accounts/{wallet_of(2)}/balance"
    assert client.get(f"{url}?at={middle}", headers=auth()).json["balance"] == 110
    assert client.get(url, headers=auth()).json["balance"] == 130
    assert client.get(f"{url}?at=2000-01-01T00:00:00Z", headers=auth()).json["balance"] == 0
    assert client.get(f"{url}?at=yesterday", headers=auth()).status_code == 422


def test_the_csv_has_one_row_per_posting_and_neutralised_formulas(client, auth, post_movement):
    post_movement("topup", user_id=2, amount=5, reference_id="=HYPERLINK(\"x\")",
                  description="+cmd|' /C calc'!A0")
    post_movement("spend", user_id=2, amount=1, reference_id="@SUM(1)", description="-2+3")
    response = client.get("/api/v1/transactions.csv", headers=auth())
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == db.session.execute(select(func.count()).select_from(Posting)).scalar_one()
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "@", "\t", "\r")), value
            assert not value.startswith("-") or value.lstrip("-").isdigit(), value
    formula = [r for r in rows if "HYPERLINK" in r["reference_id"]]
    assert formula[0]["reference_id"].startswith("'=") and formula[0]["description"].startswith("'+")


def test_the_csv_takes_the_same_filters(client, auth, post_movement):
    post_movement("bonus", user_id=3, amount=2, reference_id="only", currency="DIAMOND")
    text = client.get("/api/v1/transactions.csv?asset=DIAMOND", headers=auth()).get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][0] == "transaction_id" and len(rows) == 1 + 2 + 2  # genesis and bonus legs
    assert {r[8] for r in rows[1:]} == {"DIAMOND"}
