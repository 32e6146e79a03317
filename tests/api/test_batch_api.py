"""POST /api/v1/transactions/batch over HTTP: who may call it, the envelope's limits, each
item checked on its own, the atomic answer, the route's own body limit, an item answered as
GET /api/v1/transactions/<id> answers; then a daily-reward run of 2,000 players from a
client process that is killed midway (SIGKILL) and run again, against a real gunicorn."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from wallet_web import accounts, api_keys, audit, queries
from wallet_web.extensions import db
from wallet_web.models import Account, Posting, Transaction

from .conftest import at_once

URL = "/api/v1/transactions/batch"
CLIENT = Path(__file__).with_name("batch_client.py")


def item(kind: str, user_id: int, amount: int, reference_id: str, **fields) -> dict:
    return {"kind": kind, "user_id": user_id, "asset": "GOLD", "amount": amount,
            "reference_id": reference_id, **fields}


def posted(*references: str) -> int:
    db.session.rollback()  # the ledger committed on its own connections
    return db.session.execute(select(func.count()).select_from(Transaction)
                              .where(Transaction.reference_id.in_(references))).scalar_one()


def gold(user_id: int) -> int:
    db.session.rollback()
    return next(a.balance for a in queries.user_balances(user_id)
                if a.asset_code == "GOLD" and a.kind == "wallet")


def codes(body: dict) -> list:
    """Per item: 201 / 200, or the error's code."""
    return [i["error"]["code"] if i["error"] else i["status"] for i in body["items"]]


# ---------------------------------------------------------------- the envelope


def test_a_batch_needs_a_key_with_write_scope(client, auth, read_key, make_user):
    body = {"items": [item("topup", make_user(), 5, "w-1")]}

    anonymous = client.post(URL, json=body)
    reader = client.post(URL, json=body, headers=auth(read_key))

    assert (anonymous.status_code, anonymous.json["error"]["code"]) == (401, "unauthorized")
    assert (reader.status_code, reader.json["error"]["code"]) == (403, "insufficient_scope")
    assert posted("w-1") == 0


def test_a_batch_holds_1_to_1000_items(client, auth, make_user):
    user = make_user()
    many = lambda count: [item("topup", user, 1, f"n-{n}") for n in range(count)]

    empty = client.post(URL, json={"items": []}, headers=auth())
    too_many = client.post(URL, json={"items": many(1001)}, headers=auth())
    most = client.post(URL, json={"items": many(1000)}, headers=auth())

    for refused in (empty, too_many):
        assert refused.status_code == 422, refused.json
        assert (refused.json["error"]["code"], refused.json["error"]["field"]) == (
            "validation_error", "items")
    assert most.status_code == 200
    assert most.json["counts"] == {"posted": 1000, "replayed": 0, "refused": 0}
    assert gold(user) == 1000


def test_the_envelope_itself_must_be_valid(client, auth, make_user):
    user = make_user()
    good = item("topup", user, 5, "e-1")

    for body in ({"items": [good], "atomic": "yes"}, {"items": [good], "colour": "red"},
                 {"items": good}, {"items": [good, 5]}, {}):
        response = client.post(URL, json=body, headers=auth())
        assert (response.status_code, response.json["error"]["code"]) == (
            422, "validation_error"), body
    malformed = client.post(URL, data=b'{"items": [', content_type="application/json",
                            headers=auth())
    assert (malformed.status_code, malformed.json["error"]["code"]) == (400, "malformed_json")
    assert posted("e-1") == 0


def test_an_invalid_item_is_refused_alone_and_the_others_are_posted(client, auth, make_user):
    alice, bob = make_user(balance=100), make_user()
    items = [
        item("topup", alice, 5, "i-1"),
        item("gift", alice, 5, "i-2"),
        item("topup", alice, 0, "i-3"),
        {"kind": "topup", "user_id": alice, "asset": "GOLD", "amount": 5},
        item("topup", alice, 5, "i-5", colour="red"),
        item("topup", alice, "5", "i-6"),
        item("transfer", alice, 5, "i-7"),
        item("spend", bob, 5, "i-8"),
        item("transfer", alice, 30, "i-9", to_user_id=bob),
    ]

    response = client.post(URL, json={"items": items}, headers=auth())

    assert response.status_code == 200
    body = response.json
    assert codes(body) == [201, *["validation_error"] * 5, "invalid_transfer",
                           "insufficient_funds", 201]
    assert [i["status"] for i in body["items"]] == [201, *[422] * 7, 201]
    fields = [i["error"]["field"] for i in body["items"][1:6]]
    assert fields == ["kind", "amount", "reference_id", "colour", "amount"]
    assert all(i["transaction"] is None for i in body["items"][1:8])
    assert (body["atomic"], body["counts"]) == (False, {"posted": 2, "replayed": 0, "refused": 7})
    assert (gold(alice), gold(bob)) == (75, 30)
    assert posted(*[f"i-{n}" for n in range(2, 9)]) == 0


def test_an_atomic_batch_with_a_refused_item_answers_422_and_posts_nothing(
        client, auth, make_user):
    alice, bob = make_user(balance=10), make_user()
    items = [item("topup", alice, 5, "a-1"), item("spend", bob, 1, "a-2"),
             item("transfer", alice, 15, "a-3", to_user_id=bob)]

    response = client.post(URL, json={"items": items, "atomic": True}, headers=auth())

    assert response.status_code == 422
    body = response.json
    assert body["atomic"] is True
    assert codes(body) == ["batch_aborted", "insufficient_funds", "batch_aborted"]
    assert [i["status"] for i in body["items"]] == [424, 422, 424]
    assert all(i["transaction"] is None for i in body["items"])
    assert body["counts"] == {"posted": 0, "replayed": 0, "refused": 3}
    assert (gold(alice), gold(bob)) == (10, 0) and posted("a-1", "a-2", "a-3") == 0
    fixed = client.post(URL, json={"items": [items[0], items[2]], "atomic": True},
                        headers=auth())
    assert (fixed.status_code, codes(fixed.json)) == (200, [201, 201])
    assert (gold(alice), gold(bob)) == (0, 15)


def test_an_invalid_item_stops_an_atomic_batch_before_anything_is_written(
        client, auth, make_user):
    user = make_user()
    items = [item("topup", user, 5, "a-4"), item("gift", user, 1, "a-5")]

    response = client.post(URL, json={"items": items, "atomic": True}, headers=auth())

    assert (response.status_code, codes(response.json)) == (
        422, ["batch_aborted", "validation_error"])
    assert gold(user) == 0 and posted("a-4") == 0


# ---------------------------------------------------------------- body limits


def padded(body: dict, size: int) -> bytes:
    """The JSON of `body` made `size` bytes long with whitespace (still valid JSON)."""
    raw = json.dumps(body).encode()
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


def test_the_batch_route_takes_bodies_up_to_its_own_limit(client, auth, app, make_user):
    user = make_user()
    small_limit, batch_limit = app.config["MAX_CONTENT_LENGTH"], app.config["MAX_BATCH_BODY"]
    body = {"items": [item("topup", user, 5, "b-1")]}

    def post(url: str, data: bytes):
        return client.post(url, data=data, content_type="application/json", headers=auth())

    big = post(URL, padded(body, small_limit * 4))
    at_limit = post(URL, padded({"items": [item("topup", user, 5, "b-2")]}, batch_limit))
    over = post(URL, padded({"items": [item("topup", user, 5, "b-3")]}, batch_limit + 1))
    single = post("/api/v1/transactions", padded(item("topup", user, 5, "b-4"), small_limit + 1))
    seed_route = post("/wallet/topup", padded({"user_id": user, "amount": 5,
                                               "reference_id": "b-5"}, small_limit + 1))

    assert (big.status_code, codes(big.json)) == (200, [201])
    assert (at_limit.status_code, codes(at_limit.json)) == (200, [201])
    for refused in (over, single, seed_route):
        assert refused.status_code == 413 and refused.is_json
        assert refused.json["error"]["code"] == "request_entity_too_large"
    assert posted("b-1", "b-2") == 2 and posted("b-3", "b-4", "b-5") == 0


# ---------------------------------------------------------------- the answer


def test_each_item_answers_what_get_transaction_answers(client, auth, make_user):
    alice, bob = make_user(balance=100), make_user()
    items = [item("topup", alice, 10, "s-1", description="Starter pack",
                  metadata={"order": "A-17", "store": "ios"}),
             item("bonus", bob, 3, "s-2"), item("spend", alice, 40, "s-3"),
             item("transfer", alice, 25, "s-4", to_user_id=bob, metadata={"gift": "yes"})]

    first = client.post(URL, json={"items": items}, headers=auth()).json
    again = client.post(URL, json={"items": items}, headers=auth()).json

    for answered in first["items"]:
        stored = client.get(f"/api/v1/transactions/{answered['transaction']['id']}",
                            headers=auth())
        assert answered["transaction"] == stored.json
    assert [i["status"] for i in again["items"]] == [200] * 4
    assert [i["transaction"] for i in again["items"]] == [i["transaction"] for i in first["items"]]
    assert again["counts"] == {"posted": 0, "replayed": 4, "refused": 0}
    single = client.post("/api/v1/transactions", json=items[3], headers=auth())
    assert (single.status_code, single.json) == (200, first["items"][3]["transaction"])


def test_a_single_movement_and_an_item_of_one_reference_replay_each_other(
        client, auth, make_user):
    user = make_user()
    single = client.post("/api/v1/transactions", json=item("topup", user, 7, "x-1"),
                         headers=auth())

    batch = client.post(URL, json={"items": [item("topup", user, 7, "x-1"),
                                             item("topup", user, 8, "x-1b"),
                                             item("topup", user, 9, "x-1")]},
                        headers=auth()).json
    other_key = api_keys.create_key("other-integrator", "write")[1]
    taken = client.post(URL, json={"items": [item("topup", user, 7, "x-1")]},
                        headers=auth(other_key)).json

    assert single.status_code == 201
    assert codes(batch) == [200, 201, "duplicate_reference"]
    assert batch["items"][0]["transaction"] == single.json
    assert codes(taken) == ["reference_taken"] and taken["items"][0]["status"] == 409
    assert gold(user) == 15


def test_overlapping_batches_at_once_all_answer_200_and_add_up(app, auth, make_user):
    rng = random.Random(3)
    users = [make_user(balance=100) for _ in range(4)]

    def random_item(tag: str) -> dict:
        source, target = rng.sample(users, 2)
        kind = rng.choice(["topup", "spend", "transfer", "transfer"])
        extra = {"to_user_id": target} if kind == "transfer" else {}
        return item(kind, source, rng.randint(1, 80), tag, **extra)

    bodies = [{"items": [random_item(f"c{n}-{k}") for k in range(30)], "atomic": n == 3}
              for n in range(4)]

    responses = at_once(app, 4, lambda client, n: client.post(URL, json=bodies[n],
                                                               headers=auth()))

    assert [r.status_code for r in responses[:3]] == [200] * 3
    assert responses[3].status_code in (200, 422)
    expected = {user: 100 for user in users}
    for body, response in zip(bodies, responses):
        for sent, answered in zip(body["items"], response.json["items"]):
            assert answered["status"] in (201, 422, 424), answered
            if answered["status"] == 201:
                sign = 1 if sent["kind"] == "topup" else -1
                expected[sent["user_id"]] += sign * sent["amount"]
                if sent["kind"] == "transfer":
                    expected[sent["to_user_id"]] += sent["amount"]
    assert {user: gold(user) for user in users} == expected
    assert audit.verify().ok


# ---------------------------------------------------------------- a reward run, killed and rerun


def rewarded(prefix: str) -> int:
    db.session.rollback()
    return db.session.execute(select(func.count()).select_from(Transaction).where(
        Transaction.reference_id.startswith(prefix))).scalar_one()


def references_of(prefix: str) -> set[str]:
    db.session.rollback()
    return set(db.session.execute(select(Transaction.reference_id).where(
        Transaction.reference_id.startswith(prefix))).scalars())


def wait_for(condition, process, seconds: float = 120) -> None:
    """Polls until condition() holds; the deadline only stops a run that never gets there."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "the client posted nothing in time"
        time.sleep(0.02)


def run_client(base: str, token: str, players_file: Path, prefix: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(CLIENT), base, str(players_file), prefix],
                            env={**os.environ, "WALLET_TOKEN": token},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_reward_run_killed_midway_and_run_again_rewards_every_player_once(
        live_server, app, tmp_path):
    """A daily run over 100,000 players, scaled to 2,000 (4 batches of 500) for the suite."""
    players = accounts.create_users_bulk([(f"player-{n}", f"player-{n}@example.test")
                                          for n in range(2000)])
    players_file = tmp_path / "players.txt"
    players_file.write_text("\n".join(map(str, players)))
    token = api_keys.create_key("daily-rewards", "write")[1]
    prefix = "reward:2026-11-27:"

    first = run_client(live_server, token, players_file, prefix)
    wait_for(lambda: rewarded(prefix) >= 500, first)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    before_rerun = references_of(prefix)  # a batch still in flight may land after this

    rerun = run_client(live_server, token, players_file, prefix)
    out, err = rerun.communicate(timeout=300)

    assert first.returncode == -signal.SIGKILL
    assert rerun.returncode == 0, out + err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[-1] == {"done": True} and len(lines) == 5
    statuses = dict(zip(players, [s for line in lines[:-1] for s in line["statuses"]]))
    assert set(statuses.values()) <= {200, 201}
    assert {player for player, s in statuses.items() if s == 200} >= {
        int(reference.removeprefix(prefix)) for reference in before_rerun}
    assert sum(s == 200 for s in statuses.values()) >= 500
    assert_rewarded_once(players, prefix)
    assert audit.verify().ok


def assert_rewarded_once(players: list[int], prefix: str) -> None:
    """One transaction per reference, crediting 10 to its own player's wallet; every wallet 10."""
    db.session.rollback()
    credited = db.session.execute(
        select(Transaction.reference_id, Account.user_id, Posting.amount)
        .join(Posting, Posting.transaction_id == Transaction.id)
        .join(Account, Account.id == Posting.account_id)
        .where(Transaction.reference_id.startswith(prefix), Account.kind == "wallet")).all()
    assert sorted(credited) == sorted((f"{prefix}{p}", p, 10) for p in players)
    balances = dict(db.session.execute(
        select(Account.user_id, Account.balance).where(
            Account.user_id.in_(players), Account.asset_code == "GOLD")).all())
    assert balances == {player: 10 for player in players}
