"""/api/v1 users and their lifecycle, assets and transactions over HTTP (Flask test client) on
PostgreSQL: what an integrator sends, what it gets back, and what bad input never creates."""
import pytest
from sqlalchemy import func, select

from wallet_web import audit
from wallet_web.extensions import db
from wallet_web.models import Account, Transaction, User

ASSETS = ["DIAMOND", "GOLD", "LOYALTY"]


@pytest.fixture
def post(client, auth):
    """post(path, body, key=write key) -> the response of POST /api/v1<path>."""
    def send(path: str, body: dict, key: str | None = None):
        return client.post(f"/api/v1{path}", json=body, headers=auth(key))
    return send


@pytest.fixture
def get(client, auth):
    """get(path) -> the response of GET /api/v1<path> with the write key."""
    return lambda path: client.get(f"/api/v1{path}", headers=auth())


@pytest.fixture
def player(post):
    """player(name, gold=0, **fields) -> the id of a user created over the API, topped up."""
    def create(name: str, gold: int = 0, **fields) -> int:
        user = post("/users", {"username": name, "email": f"{name}@example.com", **fields})
        assert user.status_code == 201, user.json
        if gold:
            topped = post("/transactions", {"kind": "topup", "user_id": user.json["id"],
                                            "asset": "GOLD", "amount": gold,
                                            "reference_id": f"fund-{name}"})
            assert topped.status_code == 201, topped.json
        return user.json["id"]
    return create


def users_named(username: str) -> int:
    db.session.rollback()
    return db.session.execute(select(func.count()).select_from(User)
                              .where(User.username == username)).scalar_one()


def user_count() -> int:
    db.session.rollback()
    return db.session.execute(select(func.count()).select_from(User)).scalar_one()


def wallets(detail: dict) -> dict[str, int]:
    return {account["asset"]: account["balance"] for account in detail["accounts"]}


def gold(get, user_id: int) -> int:
    return wallets(get(f"/users/{user_id}").json)["GOLD"]


# ---------------------------------------------------------------- creating users


def test_a_new_user_is_201_with_one_empty_wallet_per_asset(post):
    response = post("/users", {"username": "carol", "email": "carol@example.com",
                               "external_id": "game:4711"})

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers
    user = response.json
    assert (user["username"], user["email"], user["external_id"], user["status"]) == (
        "carol", "carol@example.com", "game:4711", "active")
    assert wallets(user) == {asset: 0 for asset in ASSETS}
    assert {a["kind"] for a in user["accounts"]} == {"wallet"}
    assert user["status_changes"] == []


def test_the_same_create_again_is_200_with_the_same_user_and_no_second_one(post):
    body = {"username": "carol", "email": "carol@example.com", "external_id": "game:4711"}
    first, again = post("/users", body), post("/users", body)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    assert users_named("carol") == 1


@pytest.mark.parametrize("other", [
    {"email": "other@example.com"},  # same username, other email
    {"external_id": "game:other"},  # same username, other external_id
    {"username": "dave", "email": "dave@example.com"},  # same external_id, other user
    {"username": "dave"},  # same email and external_id, other username
])
def test_a_create_conflicting_with_an_existing_user_is_409_user_exists(post, other):
    body = {"username": "carol", "email": "carol@example.com", "external_id": "game:4711"}
    post("/users", body)
    before = user_count()

    response = post("/users", {**body, **other})

    assert response.status_code == 409
    assert response.json["error"]["code"] == "user_exists"
    assert user_count() == before


def test_a_create_without_external_id_matching_a_user_that_has_one_is_409(post):
    """An external_id left out is not a wildcard: the request is not the same one."""
    post("/users", {"username": "carol", "email": "carol@example.com", "external_id": "g:1"})
    response = post("/users", {"username": "carol", "email": "carol@example.com"})
    assert (response.status_code, response.json["error"]["code"]) == (409, "user_exists")


@pytest.mark.parametrize("fields, field", [
    ({"username": "x" * 65}, "username"),
    ({"username": ""}, "username"),
    ({"username": "has space"}, "username"),
    ({"username": "-dash-first"}, "username"),
    ({"username": "émile"}, "username"),
    ({"username": "a\x00b"}, "username"),
    ({"username": 7}, "username"),
    ({"external_id": "g" * 65}, "external_id"),
    ({"external_id": ""}, "external_id"),
    ({"external_id": "a/b"}, "external_id"),
    ({"external_id": "id with space"}, "external_id"),
    ({"external_id": 4711}, "external_id"),
    ({"email": "not-an-address"}, "email"),
    ({"email": "a@b"}, "email"),
    ({"email": "two@@example.com"}, "email"),
    ({"email": "x" * 250 + "@example.com"}, "email"),
    ({"email": None}, "email"),
    ({"role": "admin"}, "role"),
])
def test_a_create_with_bad_fields_is_422_naming_the_field_and_creates_nothing(post, fields,
                                                                              field):
    before = user_count()
    body = {"username": "carol", "email": "carol@example.com", **fields}

    response = post("/users", body)

    assert response.status_code == 422, response.json
    assert field in response.json["error"]["message"]
    assert user_count() == before


def test_the_longest_allowed_username_and_external_id_are_accepted(post):
    response = post("/users", {"username": "u" * 64, "email": "long@example.com",
                               "external_id": "e" * 64})
    assert response.status_code == 201
    assert (response.json["username"], response.json["external_id"]) == ("u" * 64, "e" * 64)


def test_creating_a_user_needs_the_write_scope(post, read_key):
    response = post("/users", {"username": "carol", "email": "c@example.com"}, key=read_key)
    assert (response.status_code, response.json["error"]["code"]) == (403, "insufficient_scope")
    assert users_named("carol") == 0


# ---------------------------------------------------------------- finding users


def test_a_user_is_found_by_external_id(get, player):
    carol = player("carol", external_id="shop:c@1")

    found = get("/users/by-external-id/shop:c@1")

    assert (found.status_code, found.json["id"], found.json["username"]) == (200, carol, "carol")
    assert set(wallets(found.json)) == set(ASSETS)
    missing = get("/users/by-external-id/shop:nobody")
    assert (missing.status_code, missing.json["error"]["code"]) == (404, "user_not_found")


def test_an_unknown_user_is_404(get, post):
    found = get("/users/999999")
    assert (found.status_code, found.json["error"]["code"]) == (404, "user_not_found")
    frozen = post("/users/999999/freeze", {"reason": "fraud"})
    assert (frozen.status_code, frozen.json["error"]["code"]) == (404, "user_not_found")


def test_users_come_in_keyset_pages_newest_first(get, player):
    made = [player(f"pager{n}") for n in range(5)]
    seen, cursor = [], ""
    while True:
        page = get(f"/users?q=pager&limit=2&cursor={cursor}").json
        seen += [user["id"] for user in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
        player(f"pager-late{len(seen)}")  # arrives mid-walk: neither repeated nor skipping
    assert seen == made[::-1]


def test_users_are_filtered_by_status_and_by_text(get, post, player):
    carol, dave, erin = (player(name, external_id=f"ext-{name}") for name in
                         ("carol", "dave", "erin"))
    post(f"/users/{dave}/freeze", {"reason": "chargeback"})

    listed = lambda query: [u["id"] for u in get(f"/users?{query}").json["items"]]

    assert listed("status=frozen") == [dave]
    assert carol in listed("status=active") and dave not in listed("status=active")
    assert listed("q=ERI") == [erin]
    assert listed("q=ext-car") == [carol]
    assert listed("q=dave%40example") == [dave]
    assert listed("q=d&status=active") == []
    assert get("/users?status=deleted").status_code == 422


# ---------------------------------------------------------------- freeze, unfreeze, close


def test_a_frozen_user_is_refused_every_debit_with_423_but_credits_land(get, post, player):
    carol, dave = player("carol", gold=100), player("dave", gold=100)

    frozen = post(f"/users/{carol}/freeze", {"reason": "chargeback on order 17"})
    spend = post("/transactions", {"kind": "spend", "user_id": carol, "asset": "GOLD",
                                   "amount": 10, "reference_id": "s-1"})
    send = post("/transactions", {"kind": "transfer", "user_id": carol, "to_user_id": dave,
                                  "asset": "GOLD", "amount": 10, "reference_id": "t-out"})
    topup = post("/transactions", {"kind": "topup", "user_id": carol, "asset": "GOLD",
                                   "amount": 5, "reference_id": "top-1"})
    receive = post("/transactions", {"kind": "transfer", "user_id": dave, "to_user_id": carol,
                                     "asset": "GOLD", "amount": 7, "reference_id": "t-in"})

    assert (frozen.status_code, frozen.json["status"]) == (200, "frozen")
    assert {a["status"] for a in frozen.json["accounts"]} == {"frozen"}
    for refused in (spend, send):
        assert refused.status_code == 423
        assert refused.json["error"]["code"] == "account_frozen"
        assert refused.json["error"]["status"] == "frozen"
        assert "frozen" in refused.json["error"]["message"]
    assert (topup.status_code, receive.status_code) == (201, 201)
    assert (gold(get, carol), gold(get, dave)) == (112, 93)


def test_the_seed_compatible_spend_of_a_frozen_user_is_423_too(post, post_movement, player):
    carol = player("carol", gold=100)
    post(f"/users/{carol}/freeze", {"reason": "review"})

    spend = post_movement("spend", user_id=carol, amount=1, reference_id="w-s")
    bonus = post_movement("bonus", user_id=carol, amount=1, reference_id="w-b")

    assert (spend.status_code, spend.json["error"]["code"]) == (423, "account_frozen")
    assert (bonus.status_code, bonus.json["balance"]) == (200, 101)


def test_an_unfrozen_user_can_spend_again(get, post, player):
    carol = player("carol", gold=100)
    post(f"/users/{carol}/freeze", {"reason": "review"})

    unfrozen = post(f"/users/{carol}/unfreeze", {"reason": "review passed"})
    spend = post("/transactions", {"kind": "spend", "user_id": carol, "asset": "GOLD",
                                   "amount": 40, "reference_id": "s-1"})

    assert (unfrozen.status_code, unfrozen.json["status"]) == (200, "active")
    assert {a["status"] for a in unfrozen.json["accounts"]} == {"active"}
    assert spend.status_code == 201
    assert gold(get, carol) == 60


def test_closing_a_user_with_a_balance_is_409_balance_not_zero_and_changes_nothing(get, post,
                                                                                  player):
    carol = player("carol", gold=30)

    refused = post(f"/users/{carol}/close", {"reason": "player asked"})

    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "balance_not_zero"
    assert refused.json["error"]["balances"] == {"GOLD": 30}
    user = get(f"/users/{carol}").json
    assert (user["status"], user["status_changes"]) == ("active", [])


def test_a_closed_user_is_refused_everything_naming_the_status(get, post, player):
    carol, dave = player("carol", gold=30), player("dave", gold=30)
    post("/transactions", {"kind": "spend", "user_id": carol, "asset": "GOLD", "amount": 30,
                           "reference_id": "empty-it"})

    closed = post(f"/users/{carol}/close", {"reason": "player asked"})
    attempts = [
        {"kind": "topup", "user_id": carol},
        {"kind": "bonus", "user_id": carol},
        {"kind": "spend", "user_id": carol},
        {"kind": "transfer", "user_id": dave, "to_user_id": carol},
        {"kind": "transfer", "user_id": carol, "to_user_id": dave},
    ]
    refused = [post("/transactions", {"asset": "GOLD", "amount": 1, "reference_id": f"c-{n}",
                                      **attempt}) for n, attempt in enumerate(attempts)]

    assert (closed.status_code, closed.json["status"]) == (200, "closed")
    for response in refused:
        assert response.status_code == 423, response.json
        assert response.json["error"]["code"] == "account_closed"
        assert "closed" in response.json["error"]["message"]
    assert (gold(get, carol), gold(get, dave)) == (0, 30)


@pytest.mark.parametrize("action", ["freeze", "unfreeze"])
def test_a_closed_user_cannot_be_frozen_or_unfrozen(get, post, player, action):
    carol = player("carol")
    post(f"/users/{carol}/close", {"reason": "gone"})

    response = post(f"/users/{carol}/{action}", {"reason": "try again"})

    assert (response.status_code, response.json["error"]["code"]) == (409, "user_closed")
    assert get(f"/users/{carol}").json["status"] == "closed"


def test_closing_a_closed_user_again_is_200_and_records_nothing_more(post, player):
    carol = player("carol")
    post(f"/users/{carol}/close", {"reason": "gone"})

    again = post(f"/users/{carol}/close", {"reason": "gone, really"})

    assert (again.status_code, again.json["status"]) == (200, "closed")
    assert [c["reason"] for c in again.json["status_changes"]] == ["gone"]


def test_status_changes_are_recorded_with_who_when_and_why_newest_first(post, player):
    carol = player("carol")
    post(f"/users/{carol}/freeze", {"reason": "chargeback"})
    post(f"/users/{carol}/freeze", {"reason": "again"})  # already frozen: not recorded
    post(f"/users/{carol}/unfreeze", {"reason": "cleared"})

    closed = post(f"/users/{carol}/close", {"reason": "player asked"}).json

    changes = [(c["previous_status"], c["status"], c["reason"], c["actor"])
               for c in closed["status_changes"]]
    assert changes == [("active", "closed", "player asked", "api:test-writer"),
                       ("frozen", "active", "cleared", "api:test-writer"),
                       ("active", "frozen", "chargeback", "api:test-writer")]
    times = [c["created_at"] for c in closed["status_changes"]]
    assert times == sorted(times, reverse=True) and all(times)


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   "}, {"reason": "r" * 501},
                                  {"reason": 5}, {"reason": "ok", "by": "me"}])
def test_a_status_change_without_a_valid_reason_is_422_and_changes_nothing(get, post, player,
                                                                           body):
    carol = player("carol")
    response = post(f"/users/{carol}/freeze", body)
    assert response.status_code == 422, response.json
    assert get(f"/users/{carol}").json["status"] == "active"


def test_status_changes_need_the_write_scope(client, get, post, player, read_key):
    carol = player("carol")
    as_reader = post(f"/users/{carol}/freeze", {"reason": "x"}, key=read_key)
    anonymous = client.post(f"/api/v1/users/{carol}/freeze", json={"reason": "x"})
    assert (as_reader.status_code, anonymous.status_code) == (403, 401)
    assert get(f"/users/{carol}").json["status"] == "active"


def test_the_system_user_cannot_be_frozen(post):
    response = post("/users/1/freeze", {"reason": "no"})
    assert (response.status_code, response.json["error"]["code"]) == (422, "invalid_user")


# ---------------------------------------------------------------- assets


def test_assets_list_code_name_scale_and_limits(get):
    response = get("/assets")
    assert response.status_code == 200
    assert response.json["items"] == [
        {"code": "DIAMOND", "name": "Diamonds", "scale": 0, "max_amount": 10**9,
         "max_balance": 10**12},
        {"code": "GOLD", "name": "Gold Coins", "scale": 0, "max_amount": 10**9,
         "max_balance": 10**12},
        {"code": "LOYALTY", "name": "Loyalty Points", "scale": 0, "max_amount": 10**9,
         "max_balance": 10**12},
    ]


# ---------------------------------------------------------------- transactions


def test_a_transaction_is_201_then_200_replayed_then_422_for_another_body(get, post, player):
    carol = player("carol")
    body = {"kind": "topup", "user_id": carol, "asset": "GOLD", "amount": 100,
            "reference_id": "order-1", "metadata": {"order": "A-1"}}

    first, again = post("/transactions", body), post("/transactions", body)
    reused = [post("/transactions", {**body, **changed}) for changed in (
        {"amount": 101}, {"kind": "bonus"}, {"metadata": {"order": "A-2"}}, {"description": "x"})]

    assert (first.status_code, again.status_code) == (201, 200)
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    for response in reused:
        assert response.status_code == 422
        assert response.json["error"]["code"] == "idempotency_key_reused"
    assert gold(get, carol) == 100


def test_a_wallet_topup_sent_again_through_v1_replays_it(post, post_movement, player):
    """One idempotency for both APIs: the same movement under the same reference is a replay."""
    carol = player("carol")
    post_movement("topup", user_id=carol, amount=5, reference_id="shared")
    response = post("/transactions", {"kind": "topup", "user_id": carol, "asset": "GOLD",
                                      "amount": 5, "reference_id": "shared"})
    other = post("/transactions", {"kind": "bonus", "user_id": carol, "asset": "GOLD",
                                   "amount": 5, "reference_id": "shared"})
    assert (response.status_code, response.headers["Idempotent-Replayed"]) == (200, "true")
    assert (other.status_code, other.json["error"]["code"]) == (422, "idempotency_key_reused")
    db.session.rollback()
    assert db.session.execute(select(func.count()).select_from(Transaction)
                              .where(Transaction.reference_id == "shared")).scalar_one() == 1


def test_metadata_is_stored_returned_and_filterable_by_key_and_value(get, post, player):
    carol = player("carol")
    tagged = {"A-1": {"order": "A-1", "shop": "eu"}, "A-2": {"order": "A-2", "shop": "eu"},
              "B-1": {"order": "B-1", "shop": "us"}}
    for reference, metadata in tagged.items():
        created = post("/transactions", {"kind": "topup", "user_id": carol, "asset": "GOLD",
                                         "amount": 1, "reference_id": reference,
                                         "metadata": metadata})
        assert created.json["metadata"] == metadata
    found = lambda query: [t["reference_id"] for t in get(f"/transactions?{query}").json["items"]]

    assert found("metadata=order:A-2") == ["A-2"]
    assert found("metadata=shop:eu") == ["A-2", "A-1"]
    assert found(f"metadata=shop:us&user_id={carol}") == ["B-1"]
    assert found("metadata=shop:asia") == []
    assert found("metadata=order:A") == []  # a value, not a prefix
    assert get(f"/transactions/{get('/transactions?metadata=order:B-1').json['items'][0]['id']}"
               ).json["metadata"] == tagged["B-1"]
    assert get("/transactions?metadata=no-colon").status_code == 422


@pytest.mark.parametrize("metadata", [
    {"order": 17},
    {"order": None},
    {"order": {"nested": "x"}},
    {"order": ["a"]},
    {"order": "v" * 201},
    {"k" * 41: "v"},
    {"bad key": "v"},
    {"": "v"},
    {f"k{n}": "v" for n in range(17)},
    ["order", "A-1"],
    "order:A-1",
])
def test_metadata_must_be_a_small_object_of_string_values(get, post, player, metadata):
    carol = player("carol")
    response = post("/transactions", {"kind": "topup", "user_id": carol, "asset": "GOLD",
                                      "amount": 1, "reference_id": "m", "metadata": metadata})
    assert response.status_code == 422, response.json
    assert "metadata" in response.json["error"]["message"]
    assert gold(get, carol) == 0


def test_the_largest_allowed_metadata_is_accepted(post, player):
    carol = player("carol")
    metadata = {f"{n:02d}" + "k" * 38: "v" * 200 for n in range(16)}
    response = post("/transactions", {"kind": "topup", "user_id": carol, "asset": "GOLD",
                                      "amount": 1, "reference_id": "m", "metadata": metadata})
    assert (response.status_code, response.json["metadata"]) == (201, metadata)


def test_a_transfer_is_one_transaction_with_two_postings_and_is_reversible(get, post, player):
    carol, dave = player("carol", gold=100), player("dave", gold=10)

    sent = post("/transactions", {"kind": "transfer", "user_id": carol, "to_user_id": dave,
                                  "asset": "GOLD", "amount": 30, "reference_id": "gift-1",
                                  "description": "birthday"})

    assert sent.status_code == 201, sent.json
    legs = sorted((leg["user_id"], leg["amount"], leg["balance_after"])
                  for leg in sent.json["postings"])
    assert legs == sorted([(carol, -30, 70), (dave, 30, 40)])
    assert (sent.json["kind"], sent.json["description"]) == ("transfer", "birthday")
    assert (gold(get, carol), gold(get, dave)) == (70, 40)

    reversal = post(f"/transactions/{sent.json['id']}/reversal", {"reference_id": "undo-gift"})

    assert reversal.status_code == 201
    assert (gold(get, carol), gold(get, dave)) == (100, 10)
    assert audit.verify().ok


def test_a_transfer_never_overdraws_the_sender(get, post, player):
    carol, dave = player("carol", gold=20), player("dave")
    response = post("/transactions", {"kind": "transfer", "user_id": carol, "to_user_id": dave,
                                      "asset": "GOLD", "amount": 21, "reference_id": "t"})
    assert (response.status_code, response.json["error"]["code"]) == (422, "insufficient_funds")
    assert (gold(get, carol), gold(get, dave)) == (20, 0)


@pytest.mark.parametrize("parties, status, code", [
    (lambda carol, dave: {"to_user_id": carol}, 422, "invalid_transfer"),  # to itself
    (lambda carol, dave: {"to_user_id": None}, 422, "invalid_transfer"),  # to nobody
    (lambda carol, dave: {"to_user_id": 999999}, 404, "user_not_found"),
    (lambda carol, dave: {"user_id": 999999, "to_user_id": carol}, 404, "user_not_found"),
], ids=["self", "no-recipient", "unknown-recipient", "unknown-sender"])
def test_a_transfer_to_itself_nobody_or_from_nobody_is_refused(get, post, player, parties,
                                                               status, code):
    carol, dave = player("carol", gold=50), player("dave")
    body = {"kind": "transfer", "user_id": carol, "asset": "GOLD", "amount": 5,
            "reference_id": "t", **parties(carol, dave)}

    response = post("/transactions", body)

    assert (response.status_code, response.json["error"]["code"]) == (status, code)
    assert (gold(get, carol), gold(get, dave)) == (50, 0)


def test_to_user_id_is_refused_on_a_movement_that_is_not_a_transfer(get, post, player):
    carol, dave = player("carol"), player("dave")
    response = post("/transactions", {"kind": "topup", "user_id": carol, "to_user_id": dave,
                                      "asset": "GOLD", "amount": 5, "reference_id": "t"})
    assert (response.status_code, response.json["error"]["code"]) == (422, "invalid_transfer")
    assert (gold(get, carol), gold(get, dave)) == (0, 0)


@pytest.mark.parametrize("change, status", [
    ({"asset": "NOPE"}, 422),
    ({"asset": "gold"}, 422),
    ({"asset": ""}, 422),
    ({"user_id": 999999}, 404),
    ({"user_id": 0}, 422),
    ({"user_id": "7"}, 422),
    ({"amount": 0}, 422),
    ({"amount": -5}, 422),
    ({"amount": 1.5}, 422),
    ({"amount": "10"}, 422),
    ({"amount": 10**9 + 1}, 422),
    ({"amount": 2**63}, 422),
    ({"kind": "reversal"}, 422),
    ({"kind": "genesis"}, 422),
    ({"kind": "adjustment"}, 422),
    ({"reference_id": ""}, 422),
    ({"reference_id": "r" * 129}, 422),
    ({"description": "d" * 501}, 422),
    ({"currency": "GOLD"}, 422),
])
def test_bad_transaction_input_is_refused_and_moves_nothing(get, post, player, change, status):
    carol = player("carol", gold=50)
    db.session.rollback()
    before = db.session.execute(select(func.count()).select_from(Transaction)).scalar_one()

    response = post("/transactions", {"kind": "spend", "user_id": carol, "asset": "GOLD",
                                      "amount": 5, "reference_id": "bad", **change})

    assert response.status_code == status, response.json
    assert "error" in response.json
    db.session.rollback()
    assert db.session.execute(select(func.count()).select_from(Transaction)).scalar_one() == before
    assert gold(get, carol) == 50


def test_an_unknown_asset_names_the_asset(post, player):
    carol = player("carol")
    response = post("/transactions", {"kind": "topup", "user_id": carol, "asset": "NOPE",
                                      "amount": 5, "reference_id": "t"})
    assert (response.status_code, response.json["error"]["code"]) == (422, "asset_not_found")
    assert response.json["error"]["asset"] == "NOPE"


def test_every_user_created_over_the_api_has_all_its_wallets(post, player):
    for name in ("carol", "dave", "erin"):
        player(name)
    post("/users", {"username": "carol", "email": "carol@example.com"})  # replay
    post("/users", {"username": "bad name", "email": "x@example.com"})  # refused
    db.session.rollback()
    per_user = db.session.execute(
        select(User.username, func.count(Account.id)).join(Account, Account.user_id == User.id)
        .where(Account.kind == "wallet").group_by(User.username)).all()
    assert dict(per_user) == {name: len(ASSETS) for name in ("alice", "bob", "carol", "dave",
                                                             "erin")}
    assert users_named("bad name") == 0
