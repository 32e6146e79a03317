"""The original flow end to end against a real server process (gunicorn) on the test database,
and bodies sent chunked (without Content-Length) through it."""
import http.client
import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest

from wallet_web import api_keys, queries
from wallet_web.extensions import db

HANG_GUARD_SECONDS = 60  # a socket timeout that only a hang reaches, even on a busy box


def _call(base: str, token: str, method: str, path: str, body: dict | None = None):
    request = urllib.request.Request(
        base + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=HANG_GUARD_SECONDS) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_original_flow_balance_topup_bonus_spend(live_server, app, make_user):
    token = api_keys.create_key("e2e", "write")[1]
    user = make_user(balance=100)
    status, before = _call(live_server, token, "GET", f"/wallet/{user}/balance")
    assert (status, before["total_balance"]) == (200, 100)
    for kind, amount in (("topup", 100), ("bonus", 50), ("spend", 30)):
        status, receipt = _call(live_server, token, "POST", f"/wallet/{kind}",
                                {"user_id": user, "amount": amount, "reference_id": f"e2e-{kind}"})
        assert (status, receipt["type"], receipt["status"]) == (200, kind, "success")
    status, after = _call(live_server, token, "GET", f"/wallet/{user}/balance")
    assert after["total_balance"] == receipt["balance"] == 220
    status, replay = _call(live_server, token, "POST", "/wallet/spend",
                           {"user_id": user, "amount": 30, "reference_id": "e2e-spend"})
    assert (status, replay) == (200, receipt)
    assert _call(live_server, "wk_wrong", "GET", f"/wallet/{user}/balance")[0] == 401


# ---------------------------------------------------------------- chunked bodies


def _post_chunked(base: str, token: str, path: str, body: bytes, chunk: int = 8192):
    """POST with Transfer-Encoding: chunked (no Content-Length), as a streaming client sends."""
    address = urlsplit(base)
    conn = http.client.HTTPConnection(address.hostname, address.port, timeout=HANG_GUARD_SECONDS)
    try:
        pieces = (body[start:start + chunk] for start in range(0, len(body), chunk))
        conn.request("POST", path, body=pieces, encode_chunked=True, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json",
            "Transfer-Encoding": "chunked"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _moved(reference_id: str) -> bool:
    db.session.rollback()
    return queries.find_transaction_by_reference(reference_id) is not None


@pytest.mark.both_backends
@pytest.mark.parametrize("tail", [b" " * 70_000, b" " * 65_600 + b"garbage"])
def test_a_chunked_body_over_the_limit_is_413_and_moves_nothing(live_server, app, make_user, tail):
    token = api_keys.create_key("chunked", "write")[1]
    body = json.dumps({"user_id": make_user(), "amount": 5,
                       "reference_id": "chunked-big"}).encode() + tail
    status, reply = _post_chunked(live_server, token, "/wallet/topup", body)
    assert (status, reply["error"]["code"]) == (413, "request_entity_too_large")
    assert not _moved("chunked-big")


@pytest.mark.both_backends
def test_a_small_chunked_body_still_works(live_server, app, make_user):
    token = api_keys.create_key("chunked", "write")[1]
    body = json.dumps({"user_id": make_user(balance=100), "amount": 5,
                       "reference_id": "chunked-small"}).encode()
    status, reply = _post_chunked(live_server, token, "/wallet/topup", body + b" " * 30_000, 100)
    assert (status, reply["balance"]) == (200, 105)
    assert _moved("chunked-small")
