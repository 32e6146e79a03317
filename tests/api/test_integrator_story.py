"""What an integrator's script does, over real HTTP against a running server (gunicorn on the
test database): the original seed flow unchanged, and a player's whole life through /api/v1."""
import json
import urllib.error
import urllib.request

import pytest

from wallet_web import api_keys, audit


class Api:
    """A client as an integrator writes one: urllib, a bearer token, JSON in and out."""

    def __init__(self, base: str, token: str):
        self.base, self.token = base, token

    def call(self, method: str, path: str, body: dict | None = None):
        """(status, JSON body, headers) of one request."""
        request = urllib.request.Request(
            self.base + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read()), response.headers
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read()), error.headers

    def get(self, path: str):
        return self.call("GET", path)[:2]

    def post(self, path: str, body: dict):
        return self.call("POST", path, body)[:2]


@pytest.fixture
def api(live_server, app) -> Api:
    return Api(live_server, api_keys.create_key("integrator", "write")[1])


def test_the_original_flow_answers_200_and_success_at_every_step(api):
    status, before = api.get("/wallet/2/balance")
    assert status == 200
    receipts = {}
    for kind, amount in (("topup", 100), ("bonus", 50), ("spend", 30)):
        status, receipts[kind], headers = api.call("POST", f"/wallet/{kind}", {
            "user_id": 2, "amount": amount, "reference_id": f"seed-flow-{kind}"})
        assert (status, receipts[kind]["status"], receipts[kind]["type"]) == (200, "success", kind)
        assert "Idempotent-Replayed" not in headers
    status, after = api.get("/wallet/2/balance")

    assert status == 200
    assert after["total_balance"] - before["total_balance"] == 120
    assert [receipts[kind]["balance"] for kind in receipts] == [200, 250, 220]
    status, replay, headers = api.call("POST", "/wallet/spend", {
        "user_id": 2, "amount": 30, "reference_id": "seed-flow-spend"})
    assert (status, replay, headers["Idempotent-Replayed"]) == (200, receipts["spend"], "true")
    assert api.get("/wallet/2/balance")[1]["total_balance"] == after["total_balance"]


def test_a_player_is_created_funded_generous_frozen_unfrozen_and_closed(api):
    def move(kind: str, user_id: int, amount: int, reference: str, **fields):
        return api.post("/api/v1/transactions", {"kind": kind, "user_id": user_id,
                                                 "asset": "GOLD", "amount": amount,
                                                 "reference_id": reference, **fields})

    def gold(user_id: int) -> int:
        accounts = api.get(f"/api/v1/users/{user_id}")[1]["accounts"]
        return next(a["balance"] for a in accounts if a["asset"] == "GOLD")

    # The script creates its player and the friend; a retry after a timeout is harmless.
    player = {"username": "ninja_42", "email": "ninja42@example.com", "external_id": "game:42"}
    status, created = api.post("/api/v1/users", player)
    assert (status, created["status"]) == (201, "active")
    assert sorted(a["asset"] for a in created["accounts"]) == ["DIAMOND", "GOLD", "LOYALTY"]
    assert api.post("/api/v1/users", player) == (200, created)
    ninja = created["id"]
    status, friend = api.post("/api/v1/users", {"username": "friend", "email": "f@example.com"})
    assert status == 201
    friend = friend["id"]
    assert api.get("/api/v1/users/by-external-id/game:42")[1]["id"] == ninja

    # It tops up the player (tagged with its order), who spends and gives to the friend.
    status, topup = move("topup", ninja, 500, "order-9001", metadata={"order": "9001"})
    assert status == 201
    assert move("topup", ninja, 500, "order-9001", metadata={"order": "9001"}) == (200, topup)
    assert move("spend", ninja, 50, "match-1")[0] == 201
    status, gift = move("transfer", ninja, 200, "gift-1", to_user_id=friend)
    assert (status, len(gift["postings"])) == (201, 2)
    assert (gold(ninja), gold(friend)) == (250, 200)

    # Support freezes the player mid-way: its spends and gifts are refused, credits land.
    status, frozen = api.post(f"/api/v1/users/{ninja}/freeze", {"reason": "chargeback 9001"})
    assert (status, frozen["status"]) == (200, "frozen")
    for refused in (move("spend", ninja, 10, "match-2"),
                    move("transfer", ninja, 10, "gift-2", to_user_id=friend)):
        assert (refused[0], refused[1]["error"]["code"]) == (423, "account_frozen")
    assert move("bonus", ninja, 25, "sorry-bonus")[0] == 201
    assert move("transfer", friend, 25, "gift-back", to_user_id=ninja)[0] == 201
    assert gold(ninja) == 300

    # Cleared: the player spends again, empties its wallet, and closes the account.
    status, active = api.post(f"/api/v1/users/{ninja}/unfreeze", {"reason": "chargeback won"})
    assert (status, active["status"]) == (200, "active")
    status, early = api.post(f"/api/v1/users/{ninja}/close", {"reason": "player asked"})
    assert (status, early["error"]["code"], early["error"]["balances"]) == (
        409, "balance_not_zero", {"GOLD": 300})
    assert move("spend", ninja, 300, "cash-out")[0] == 201
    status, closed = api.post(f"/api/v1/users/{ninja}/close", {"reason": "player asked"})
    assert (status, closed["status"]) == (200, "closed")
    refused = move("topup", ninja, 1, "late-topup")
    assert (refused[0], refused[1]["error"]["code"]) == (423, "account_closed")

    # What is left to read: the history of the account, and the order found by its tag.
    history = [(c["status"], c["reason"], c["actor"]) for c in closed["status_changes"]]
    assert history == [("closed", "player asked", "api:integrator"),
                       ("active", "chargeback won", "api:integrator"),
                       ("frozen", "chargeback 9001", "api:integrator")]
    status, tagged = api.get("/api/v1/transactions?metadata=order:9001")
    assert [t["id"] for t in tagged["items"]] == [topup["id"]]
    assert tagged["items"][0]["metadata"] == {"order": "9001"}
    assert api.get("/api/v1/users?status=closed")[1]["items"][0]["id"] == ninja
    assert (gold(ninja), gold(friend)) == (0, 175)
    assert audit.verify().ok
