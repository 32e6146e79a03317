"""/api/v1: lookups, keyset pages under concurrent inserts and their `limit`, filters,
reversal, balance at, a dashboard movement's controls (reason code, ticket, checker), CSV."""
import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from wallet_web import (
    accounts, approvals, audit_events, controls, exports, holds, ledger, operators, queries,
)
from wallet_web.api.openapi import OPERATIONS
from wallet_web.approvals import Intent
from wallet_web.extensions import db
from wallet_web.models import AuditEvent, Posting, utcnow

# README: "lists are newest first, keyset-paginated: pass next_cursor back as cursor; limit 1
# to 200". A new list must be added here, after its documentation.
LISTS = {"/api/v1/users", "/api/v1/accounts/<id:account_id>/postings", "/api/v1/transactions",
         "/api/v1/audit-events", "/api/v1/holds"}
MAX_LIMIT = 200


def test_users_are_found_by_id_username_or_email_prefix(client, auth, make_user):
    carol = make_user(name="carol")
    find = lambda q: [u["username"] for u in client.get(f"/api/v1/users?q={q}", headers=auth()).json["items"]]
    assert find(str(carol)) == ["carol"]
    assert find("CAR") == ["carol"]
    assert find("carol%40ex") == ["carol"]
    assert find("nobody") == []


def test_a_user_with_its_accounts_and_balances(client, auth, make_user):
    dora = make_user(balance=50, name="dora")
    body = client.get(f"/api/v1/users/{dora}", headers=auth()).json
    assert body["username"] == "dora"
    assert {a["asset"]: a["balance"] for a in body["accounts"]} == {"DIAMOND": 0, "GOLD": 50, "LOYALTY": 0}
    response = client.get(f"/api/v1/users/{dora + 1000}", headers=auth())
    assert (response.status_code, response.json["error"]["code"]) == (404, "user_not_found")


def test_an_account_with_its_exact_balance(client, auth, make_user, wallet_of):
    user = make_user(balance=100)
    body = client.get(f"/api/v1/accounts/{wallet_of(user)}", headers=auth()).json
    assert (body["user_id"], body["asset"], body["balance"], body["status"]) == (user, "GOLD", 100, "active")
    treasury = accounts.ensure_house_accounts("GOLD")["treasury"]
    before = client.get(f"/api/v1/accounts/{treasury}", headers=auth()).json
    ledger.topup(user, "GOLD", 30, "from-the-treasury")
    after = client.get(f"/api/v1/accounts/{treasury}", headers=auth()).json
    assert after["kind"] == "treasury" and after["balance"] == before["balance"] - 30
    assert after["balance"] == queries.account_balance(treasury)
    missing = client.get(f"/api/v1/accounts/{treasury + 10**6}", headers=auth())
    assert (missing.status_code, missing.json["error"]["code"]) == (404, "account_not_found")


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


# ---------------------------------------------------------------- limit, on every list


def list_operations():
    """Newest-first keyset lists (the event feed, oldest first from `after`, is
    tests/api/test_events_api.py's)."""
    return [op for op in OPERATIONS
            if op.method == "GET" and op.query is not None and "limit" in op.query.model_fields
            and "after" not in op.query.model_fields]


def test_every_list_is_a_documented_keyset_list():
    assert {op.path for op in list_operations()} == LISTS
    for op in list_operations():
        assert "cursor" in op.query.model_fields, op.path


@pytest.fixture
def crowded_lists(make_user, wallet_of) -> list[tuple[str, dict]]:
    """(path, query) of each list, each with MAX_LIMIT + 1 items to show (newest first)."""
    accounts.create_users_bulk([(f"crowd-{n}", f"crowd-{n}@example.test")
                                for n in range(MAX_LIMIT + 1)])
    user = make_user()
    for n in range(MAX_LIMIT + 1):
        ledger.topup(user, "GOLD", 1, f"crowd-{n}")
    for _ in range(MAX_LIMIT + 1):
        audit_events.record("logout", who=audit_events.Who("operator:crowd"))
    db.session.commit()
    held = make_user(balance=MAX_LIMIT + 1)
    for n in range(MAX_LIMIT + 1):
        holds.place(held, "GOLD", 1, f"crowd-hold-{n}")
    lists = {"/api/v1/users": ("/api/v1/users", {"q": "crowd-"}),
             "/api/v1/accounts/<id:account_id>/postings":
                 (f"/api/v1/accounts/{wallet_of(user)}/postings", {}),
             "/api/v1/transactions": ("/api/v1/transactions", {"user_id": user}),
             "/api/v1/audit-events": ("/api/v1/audit-events", {"actor": "operator:crowd"}),
             "/api/v1/holds": ("/api/v1/holds", {"user_id": held})}
    return [lists[op.path] for op in list_operations()]


def _ids(page: dict) -> list[int]:
    return [item["id"] for item in page["items"]]


def test_limits_1_and_200_are_honoured_on_every_list(client, auth, crowded_lists):
    for url, filters in crowded_lists:
        def get(url=url, filters=filters, **query):
            return client.get(url, query_string={**filters, **query}, headers=auth()).json
        one = get(limit=1)
        assert len(one["items"]) == 1 and one["next_cursor"], url
        full = get(limit=MAX_LIMIT)
        assert len(full["items"]) == MAX_LIMIT and full["next_cursor"], url
        assert _ids(full)[0] == _ids(one)[0] and _ids(full) == sorted(_ids(full), reverse=True)
        rest = get(limit=MAX_LIMIT, cursor=full["next_cursor"])
        assert len(rest["items"]) == 1 and rest["next_cursor"] is None, url
        assert _ids(rest)[0] < _ids(full)[-1]


@pytest.mark.parametrize("limit", ["0", str(MAX_LIMIT + 1), "-1", "abc", "", "1.5", "10**3"])
def test_a_limit_outside_1_to_200_is_422_validation_error_on_every_list(
        client, auth, make_user, wallet_of, limit):
    account = wallet_of(make_user())
    for op in list_operations():
        path = op.path.replace("<id:account_id>", str(account))
        response = client.get(path, query_string={"limit": limit}, headers=auth())
        assert response.status_code == 422, (op.path, response.get_data(as_text=True)[:300])
        error = response.json["error"]
        assert (error["code"], error["field"]) == ("validation_error", "limit"), op.path


# ---------------------------------------------------------------- transactions


def test_transactions_are_filtered_and_paged(client, auth, post_movement, make_user):
    user = make_user(balance=50)
    for n in range(5):
        post_movement("bonus", user_id=user, amount=1, reference_id=f"bonus-{n}", currency="LOYALTY")
    post_movement("spend", user_id=user, amount=10, reference_id="spend-0")
    get = lambda q: client.get(f"/api/v1/transactions?{q}", headers=auth()).json
    assert [t["kind"] for t in get(f"user_id={user}")["items"]] == ["spend"] + ["bonus"] * 5 + ["topup"]
    assert [t["reference_id"] for t in get("kind=spend")["items"]] == ["spend-0"]
    assert len(get(f"asset=LOYALTY&user_id={user}")["items"]) == 5
    assert get("reference_id=bonus-2")["items"][0]["postings"][0]["asset"] == "LOYALTY"
    ids, cursor = [], ""
    while True:
        page = get(f"user_id={user}&limit=2&cursor={cursor}")
        ids += [t["id"] for t in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert len(ids) == 7 and ids == sorted(ids, reverse=True)
    assert get("since=2999-01-01T00:00:00Z")["items"] == []
    assert len(get(f"until=2999-01-01T00:00:00%2B02:00&user_id={user}")["items"]) == 7
    naive = client.get("/api/v1/transactions?since=2020-01-01T00:00:00", headers=auth())
    assert naive.status_code == 422 and naive.json["error"]["field"] == "since"
    assert client.get("/api/v1/transactions?kind=gift", headers=auth()).status_code == 422


def test_one_transaction_with_its_postings(client, auth, post_movement, make_user):
    made = post_movement("topup", user_id=make_user(), amount=9, reference_id="one").json
    body = client.get(f"/api/v1/transactions/{made['id']}", headers=auth()).json
    assert body["kind"] == "topup" and body["actor"] == "api:test-writer" and body["api_key_id"]
    assert sorted(p["amount"] for p in body["postings"]) == [-9, 9]
    missing = client.get(f"/api/v1/transactions/{made['id'] + 10**6}", headers=auth())
    assert (missing.status_code, missing.json["error"]["code"]) == (404, "transaction_not_found")


def test_reversal_is_created_then_replayed_then_refused_under_another_reference(
        client, auth, post_movement, make_user, wallet_of):
    user = make_user(balance=100)
    made = post_movement("topup", user_id=user, amount=40, reference_id="to-undo").json
    url = f"/api/v1/transactions/{made['id']}/reversal"
    first = client.post(url, json={"reference_id": "undo-1"}, headers=auth())
    assert first.status_code == 201 and first.json["reverses_id"] == made["id"]
    again = client.post(url, json={"reference_id": "undo-1"}, headers=auth())
    assert again.status_code == 200 and again.get_data() == first.get_data()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = client.post(url, json={"reference_id": "undo-2"}, headers=auth())
    assert (other.status_code, other.json["error"]["code"]) == (409, "already_reversed")
    assert queries.account_balance(wallet_of(user)) == 100
    genesis = queries.find_transaction_by_reference("seed:genesis:GOLD").id
    refused = client.post(f"/api/v1/transactions/{genesis}/reversal", json={"reference_id": "g"},
                          headers=auth())
    assert (refused.status_code, refused.json["error"]["code"]) == (422, "not_reversible")
    missing = client.post(f"/api/v1/transactions/{made['id'] + 10**6}/reversal",
                          json={"reference_id": "m"}, headers=auth())
    assert (missing.status_code, missing.json["error"]["code"]) == (404, "transaction_not_found")


def _after(moment: datetime) -> None:
    """Returns once the clock shows a later time than `moment` (at once on any real clock; the
    deadline only stops a clock that stands still)."""
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    while utcnow() <= moment:
        assert datetime.now(UTC) < deadline


def test_balance_at_a_point_in_time_comes_from_the_stored_balance_after(
        client, auth, post_movement, make_user, wallet_of):
    user = make_user(balance=100)
    url = f"/api/v1/accounts/{wallet_of(user)}/balance"
    first = post_movement("topup", user_id=user, amount=10, reference_id="t-1").json
    _after(datetime.fromisoformat(first["created_at"]))  # the next movement is strictly later
    second = post_movement("topup", user_id=user, amount=20, reference_id="t-2").json
    at = lambda moment: client.get(url, query_string={"at": moment}, headers=auth()).json["balance"]
    just_before = (datetime.fromisoformat(first["created_at"]) - timedelta(microseconds=1)).isoformat()
    assert at(just_before) == 100
    assert at(first["created_at"]) == 110  # "at or before": the posting at that instant counts
    assert at(second["created_at"]) == 130
    assert client.get(url, headers=auth()).json["balance"] == 130
    assert at("2000-01-01T00:00:00Z") == 0
    response = client.get(url, query_string={"at": "yesterday"}, headers=auth())
    assert (response.status_code, response.json["error"]["field"]) == (422, "at")


# ---------------------------------------------------------------- a dashboard movement's controls


@pytest.fixture
def dashboard_movements(make_user):
    """A movement posted at once with a ticket, one approved by a checker, and one by API."""
    controls.set_policy("GOLD", 1_000, 100_000)
    maker = operators.create_operator("mia", "correct horse battery", "operator")
    checker = operators.create_operator("cole", "correct horse battery", "operator", True)
    as_maker = operators.SignedIn(maker.id, maker.username, maker.role)
    as_checker = operators.SignedIn(checker.id, checker.username, checker.role, "", True)
    user = make_user()
    ticketed = approvals.submit(Intent("topup", "web-1", "compensation", "Outage", "GOLD", 10,
                                       ticket="SUP-1", user_id=user), as_maker).receipt
    pending = approvals.submit(Intent("topup", "web-2", "goodwill", "Big", "GOLD", 1_000,
                                      user_id=user), as_maker)
    approved = approvals.approve(pending.request_id, as_checker, "Fine")
    by_api = ledger.topup(user, "GOLD", 5, "api-1")
    return {"ticketed": ticketed.id, "approved": approved.id, "api": by_api.id}


def test_a_transaction_shows_its_reason_code_ticket_and_checker(client, auth,
                                                                 dashboard_movements):
    def controls_of(name: str) -> tuple:
        body = client.get(f"/api/v1/transactions/{dashboard_movements[name]}",
                          headers=auth()).json
        return body["reason_code"], body["ticket"], body["checker"]

    assert controls_of("ticketed") == ("compensation", "SUP-1", None)
    assert controls_of("approved") == ("goodwill", None, "operator:cole")
    assert controls_of("api") == (None, None, None)


def test_transactions_are_filtered_by_reason_code_and_ticket(client, auth, dashboard_movements):
    def ids(query: str) -> list[int]:
        response = client.get(f"/api/v1/transactions?{query}", headers=auth())
        assert response.status_code == 200, query
        return [item["id"] for item in response.json["items"]]

    assert ids("reason_code=goodwill") == [dashboard_movements["approved"]]
    assert ids("ticket=SUP-1") == [dashboard_movements["ticketed"]]
    assert ids("reason_code=goodwill&ticket=SUP-1") == []
    assert ids("reason_code=nothing_like_it") == []
    too_long = client.get("/api/v1/transactions?reason_code=" + "x" * 33, headers=auth())
    assert (too_long.status_code, too_long.json["error"]["field"]) == (422, "reason_code")


def test_the_csv_ends_with_the_controls_and_takes_their_filters(client, auth,
                                                                dashboard_movements):
    response = client.get("/api/v1/transactions.csv?reason_code=goodwill", headers=auth())
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][-7:] == ["reason_code", "ticket", "checker", "hold_id", "chain_seq",
                            "chain_prev_hash", "chain_hash"]
    assert tuple(rows[0]) == exports.HEADER
    assert {int(row[0]) for row in rows[1:]} == {dashboard_movements["approved"]}
    assert {tuple(row[-7:-4]) for row in rows[1:]} == {("goodwill", "", "operator:cole")}
    everything = list(csv.DictReader(io.StringIO(
        client.get("/api/v1/transactions.csv", headers=auth()).get_data(as_text=True))))
    ticketed = [row for row in everything
                if int(row["transaction_id"]) == dashboard_movements["ticketed"]]
    assert {(row["reason_code"], row["ticket"], row["checker"]) for row in ticketed} == {
        ("compensation", "SUP-1", "")}


def test_a_csv_download_is_recorded_with_its_filters(client, auth, make_user):
    user = make_user(balance=5)
    response = client.get(f"/api/v1/transactions.csv?user_id={user}&kind=topup"
                          "&since=2020-01-01T00:00:00Z", headers=auth())
    assert response.status_code == 200
    db.session.rollback()
    [download] = db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "export.downloaded")).all()
    assert (download.actor, download.object_type, download.object_id) == (
        "api:test-writer", "export", "transactions.csv")
    assert download.api_key_id is not None
    assert download.details == {"filters": {"user_id": user, "kind": "topup",
                                            "since": "2020-01-01T00:00:00.000000Z"}}
    refused = client.get("/api/v1/transactions.csv?kind=gift", headers=auth())
    assert refused.status_code == 422
    db.session.rollback()
    assert db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "export.downloaded")).all() == [download]


def test_the_csv_has_one_row_per_posting_and_neutralised_formulas(client, auth, post_movement, make_user):
    user = make_user(balance=100)
    post_movement("topup", user_id=user, amount=5, reference_id="=HYPERLINK(\"x\")",
                  description="+cmd|' /C calc'!A0")
    post_movement("spend", user_id=user, amount=1, reference_id="@SUM(1)", description="-2+3")
    # The API refuses these keys; code that posts directly could still write them.
    ledger.bonus(user, "GOLD", 1, "meta",
                 metadata={"reason_code": "=1+1", "ticket": "@A1", "checker": "+cmd"})
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
    controls = next(r for r in rows if r["reference_id"] == "meta")
    assert (controls["reason_code"], controls["ticket"], controls["checker"]) == (
        "'=1+1", "'@A1", "'+cmd")


def test_the_csv_takes_the_same_filters(client, auth, post_movement, make_user):
    user = make_user()
    post_movement("bonus", user_id=user, amount=2, reference_id="only", currency="DIAMOND")
    text = client.get(f"/api/v1/transactions.csv?asset=DIAMOND&user_id={user}",
                      headers=auth()).get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][0] == "transaction_id" and len(rows) == 1 + 2  # the bonus's two legs
    assert {r[8] for r in rows[1:]} == {"DIAMOND"}


@pytest.mark.parametrize("key", ["reason_code", "ticket", "checker", "checker_id", "request_id"])
def test_api_metadata_may_not_claim_the_dashboards_controls(client, auth, make_user, key):
    user = make_user()

    response = client.post("/api/v1/transactions", headers=auth(), json={
        "kind": "topup", "user_id": user, "asset": "GOLD", "amount": 5,
        "reference_id": f"spoof-{key}", "metadata": {key: "operator:boss"}})

    assert response.status_code == 422, response.text
    assert key in response.json["error"]["message"] + str(response.json["error"])
    assert queries.find_transaction_by_reference(f"spoof-{key}") is None
