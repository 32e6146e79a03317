"""GET /api/v1/events: every change an integration cares about, in order, from a cursor that
never misses an event and never returns one twice, also when writers commit out of id order."""
import threading
import time

import psycopg
from psycopg.types.json import Jsonb
import pytest

from wallet_web import events
from wallet_web.models import EVENT_TYPES

URL = "/api/v1/events"
SEEDED = 8  # the seed's events: three users and five transactions


@pytest.fixture
def read(client, auth, read_key):
    """read(**params) -> the JSON page, asserting 200."""
    def get(**params):
        response = client.get(URL, query_string=params, headers=auth(read_key))
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        return response.json
    return get


def follow(read, cursor=None, expect: int = 0, **params) -> tuple[list[dict], str]:
    """Every event after `cursor`, page by page, and the cursor to go on from; with `expect`,
    waits (up to 10 s) until that many have come. An event shows once no older write runs on
    the database server, and other tests' databases share the server."""
    seen, deadline = [], time.monotonic() + 10
    while True:
        page = read(**({"after": cursor} if cursor else {}), **params)
        seen += page["items"]
        cursor = page["next_cursor"]
        if not page["items"]:
            if len(seen) >= expect or time.monotonic() > deadline:
                return seen, cursor
            time.sleep(0.05)


def psql(database_url: str) -> psycopg.Connection:
    return psycopg.connect(database_url.replace("+psycopg", ""))


def write_event(conn: psycopg.Connection, who: str) -> None:
    """An event written in `conn`'s transaction, left open."""
    conn.execute("INSERT INTO events (type, created_at, data) VALUES ('user.created', now(), %s)",
                 (Jsonb({"who": who}),))


@pytest.mark.both_backends
def test_a_top_up_is_an_event_whose_data_is_the_transaction_as_the_api_shows_it(
        client, auth, read):
    _, start = follow(read, expect=SEEDED)
    posted = client.post("/api/v1/transactions", headers=auth(), json={
        "kind": "topup", "user_id": 2, "asset": "GOLD", "amount": 250, "reference_id": "ev-1"})
    assert posted.status_code == 201
    seen, _ = follow(read, start, expect=1)
    assert [event["type"] for event in seen] == ["transaction.posted"]
    shown = client.get(f"/api/v1/transactions/{posted.json['id']}", headers=auth()).json
    assert seen[0]["data"] == shown
    assert set(seen[0]) == {"id", "type", "created_at", "data"}


@pytest.mark.both_backends
def test_user_created_and_frozen_are_events_with_the_user_as_it_was_then(client, auth, read):
    _, start = follow(read, expect=SEEDED)
    created = client.post("/api/v1/users", headers=auth(), json={
        "username": "evie", "email": "evie@example.com", "external_id": "game:ev"})
    assert created.status_code == 201
    user_id = created.json["id"]
    frozen = client.post(f"/api/v1/users/{user_id}/freeze", headers=auth(),
                         json={"reason": "chargeback"})
    assert frozen.status_code == 200
    seen, _ = follow(read, start, expect=2)
    assert [event["type"] for event in seen] == ["user.created", "user.status_changed"]
    assert seen[0]["data"]["id"] == user_id and seen[0]["data"]["status"] == "active"
    change = seen[1]["data"]
    assert (change["user"]["status"], change["previous_status"], change["status"],
            change["reason"]) == ("frozen", "active", "frozen", "chargeback")


@pytest.mark.both_backends
def test_paging_one_at_a_time_sees_each_event_once_in_order_and_types_filter(client, auth, read):
    for n in range(5):
        assert client.post("/api/v1/transactions", headers=auth(), json={
            "kind": "bonus", "user_id": 2, "asset": "GOLD", "amount": 1 + n,
            "reference_id": f"page-{n}"}).status_code == 201
    everything, _ = follow(read, expect=SEEDED + 5)
    one_by_one, _ = follow(read, limit=1)
    assert one_by_one == everything
    ids = [event["id"] for event in everything]
    assert len(ids) == len(set(ids))
    only_money, _ = follow(read, types="transaction.posted")
    assert {event["type"] for event in only_money} == {"transaction.posted"}
    assert [event["data"]["reference_id"] for event in only_money][-5:] == [
        f"page-{n}" for n in range(5)]


@pytest.mark.both_backends
def test_an_empty_page_hands_back_a_cursor_that_waits_for_the_next_event(client, auth, read):
    _, cursor = follow(read, expect=SEEDED)
    page = read(after=cursor)
    assert page == {"items": [], "next_cursor": cursor}
    client.post("/api/v1/transactions", headers=auth(), json={
        "kind": "topup", "user_id": 2, "asset": "GOLD", "amount": 5, "reference_id": "later"})
    later, _ = follow(read, cursor, expect=1)
    assert [event["type"] for event in later] == ["transaction.posted"]


@pytest.mark.parametrize("params, status, code", [
    ({"after": "nonsense"}, 400, "invalid_cursor"),
    ({"after": "1-"}, 400, "invalid_cursor"),
    ({"after": "99999999999999999999-1"}, 400, "invalid_cursor"),
    ({"after": "１-1"}, 400, "invalid_cursor"),
    ({"types": "transaction.exploded"}, 422, "validation_error"),
    ({"limit": "0"}, 422, "validation_error"),
    ({"limit": "1001"}, 422, "validation_error"),
])
def test_a_bad_cursor_type_or_limit_is_a_clear_error(client, auth, read_key, params, status, code):
    response = client.get(URL, query_string=params, headers=auth(read_key))
    assert response.status_code == status, response.json
    assert response.json["error"]["code"] == code


def test_the_feed_needs_a_key(client):
    assert client.get(URL).status_code == 401


def test_every_event_type_is_documented_in_the_api_schema(client):
    schema = client.get("/api/v1/openapi.json").json["components"]["schemas"]["EventOut"]
    assert set(schema["properties"]["type"]["enum"]) == set(EVENT_TYPES)


def test_an_event_that_commits_after_a_later_one_is_neither_skipped_nor_repeated(
        app, database_url, read):
    """Writer A takes the lower id but commits last: a reader that went by id alone would
    pass it while A is open and never see it."""
    _, cursor = follow(read, expect=SEEDED)
    with psql(database_url) as slow, psql(database_url) as fast:
        write_event(slow, "slow")
        write_event(fast, "fast")
        fast.commit()
        held, cursor_meanwhile = follow(read, cursor)
        assert held == []  # the later event waits for the earlier writer to end
        assert cursor_meanwhile == cursor
        slow.commit()
    seen, _ = follow(read, cursor, expect=2)
    assert [event["data"]["who"] for event in seen] == ["slow", "fast"]


def test_a_rolled_back_writer_leaves_no_event_and_does_not_block_the_feed(
        app, database_url, read):
    _, cursor = follow(read, expect=SEEDED)
    with psql(database_url) as gone, psql(database_url) as kept:
        write_event(gone, "gone")
        write_event(kept, "kept")
        kept.commit()
        gone.rollback()
    seen, _ = follow(read, cursor, expect=1)
    assert [event["data"]["who"] for event in seen] == ["kept"]


def test_a_reader_following_concurrent_writers_gets_every_event_exactly_once(
        app, auth, read, read_key):
    """Eight threads top up while a reader follows the cursor; afterwards the reader has seen
    each transaction's event once, and as many events as transactions were posted."""
    _, cursor = follow(read, expect=SEEDED)
    done = threading.Event()
    posted: list[int] = []
    seen: list[dict] = []

    def write(worker: int):
        own = app.test_client()
        for n in range(25):
            answer = own.post("/api/v1/transactions", headers=auth(), json={
                "kind": "topup", "user_id": 2 + n % 2, "asset": "GOLD", "amount": 1,
                "reference_id": f"race-{worker}-{n}"})
            assert answer.status_code == 201, answer.json
            posted.append(answer.json["id"])

    def follow_live():
        nonlocal cursor
        late = time.monotonic() + 60
        reader = app.test_client()
        while True:
            finished = done.is_set()
            page = reader.get(URL, query_string={"after": cursor, "limit": 7},
                              headers=auth(read_key)).json
            seen.extend(page["items"])
            cursor = page["next_cursor"]
            if finished and not page["items"] and (len(seen) >= 200 or time.monotonic() > late):
                return

    writers = [threading.Thread(target=write, args=(worker,)) for worker in range(8)]
    follower = threading.Thread(target=follow_live)
    follower.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    follower.join(timeout=60)
    ids = [event["id"] for event in seen]
    assert len(ids) == len(set(ids)) == 200
    assert sorted(event["data"]["id"] for event in seen) == sorted(posted)


def test_events_decode_cursor_round_trips():
    assert events.decode_cursor(events.encode_cursor((123, 456))) == (123, 456)
