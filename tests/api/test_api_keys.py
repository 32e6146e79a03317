"""API keys: bearer auth on every route, scopes, revocation, last use, and the CLI."""
from datetime import timedelta

import pytest

from wallet_web import api_keys
from wallet_web.extensions import db
from wallet_web.models import ApiKey

PROTECTED = [("GET", "/wallet/2/balance"), ("POST", "/wallet/topup"), ("GET", "/api/v1/users?q=a"),
             ("GET", "/api/v1/transactions"), ("GET", "/api/v1/transactions.csv"),
             ("POST", "/api/v1/transactions/1/reversal")]


@pytest.mark.parametrize("method, url", PROTECTED)
@pytest.mark.parametrize("header", [None, "Bearer", "Bearer wk_not-a-key", "Basic dXNlcjpwdw=="])
def test_without_a_valid_key_every_route_is_401_with_www_authenticate(client, method, url, header):
    response = client.open(url, method=method, json={},
                           headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_read_key_reads_but_cannot_write(client, auth, read_key):
    assert client.get("/wallet/2/balance", headers=auth(read_key)).status_code == 200
    response = client.post("/wallet/topup", json={"user_id": 2, "amount": 1, "reference_id": "r"},
                           headers=auth(read_key))
    assert response.status_code == 403 and response.json["error"]["code"] == "insufficient_scope"
    assert client.post("/api/v1/transactions/1/reversal", json={"reference_id": "r"},
                       headers=auth(read_key)).status_code == 403


def test_a_write_key_also_reads(client, auth):
    assert client.get("/api/v1/users/2", headers=auth()).status_code == 200


def test_a_revoked_key_is_refused(client, auth, app):
    key, token = api_keys.create_key("short-lived", "read")
    assert client.get("/wallet/2/balance", headers=auth(token)).status_code == 200
    api_keys.revoke_key(key.id)
    assert client.get("/wallet/2/balance", headers=auth(token)).status_code == 401


def test_only_the_hash_and_a_short_prefix_are_stored(app):
    key, token = api_keys.create_key("stored", "write")
    assert token.startswith("wk_") and len(token) > 40
    row = db.session.get(ApiKey, key.id)
    assert row.key_hash == api_keys.hash_token(token) and token not in row.key_hash
    assert token.startswith(row.prefix) and len(row.prefix) < 16


def test_bad_names_and_scopes_are_refused(app):
    with pytest.raises(api_keys.InvalidKeyRequest):
        api_keys.create_key("x", "admin")
    with pytest.raises(api_keys.InvalidKeyRequest):
        api_keys.create_key("  ", "read")
    with pytest.raises(api_keys.UnknownApiKey):
        api_keys.revoke_key(12345)


def test_last_used_at_is_written_at_most_once_a_minute(client, auth, app):
    app.config["API_KEY_CACHE_SECONDS"] = 0  # every request looks the key up
    key, token = api_keys.create_key("clock", "read")
    client.get("/wallet/2/balance", headers=auth(token))
    first = _last_used(key.id)
    assert first is not None
    client.get("/wallet/2/balance", headers=auth(token))
    assert _last_used(key.id) == first
    _set_last_used(key.id, first - timedelta(seconds=61))
    client.get("/wallet/2/balance", headers=auth(token))
    assert _last_used(key.id) > first


def _last_used(key_id):
    db.session.rollback()
    return db.session.get(ApiKey, key_id, populate_existing=True).last_used_at


def _set_last_used(key_id, when):
    db.session.get(ApiKey, key_id).last_used_at = when
    db.session.commit()


def test_cli_creates_a_key_alone_on_the_last_line_and_it_works(app, client):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["api-keys", "create", "game-server", "--scope", "write"])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    assert token.startswith("wk_") and " " not in token
    response = client.post("/wallet/topup", json={"user_id": 2, "amount": 1, "reference_id": "cli"},
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201


def test_cli_lists_and_revokes(app, client):
    runner = app.test_cli_runner()
    token = runner.invoke(args=["api-keys", "create", "to-revoke"]).output.strip().splitlines()[-1]
    key_id = next(k.id for k in api_keys.list_keys() if k.name == "to-revoke")
    listing = runner.invoke(args=["api-keys", "list"]).output
    assert "to-revoke" in listing and "read" in listing and token not in listing
    assert runner.invoke(args=["api-keys", "revoke", str(key_id)]).exit_code == 0
    assert "revoked" in runner.invoke(args=["api-keys", "list"]).output
    assert client.get("/wallet/2/balance", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert runner.invoke(args=["api-keys", "revoke", "999"]).exit_code != 0


def test_cli_refuses_an_unknown_scope(app):
    result = app.test_cli_runner().invoke(args=["api-keys", "create", "x", "--scope", "admin"])
    assert result.exit_code != 0


def test_seed_prints_a_demo_key_once_then_keeps_it(app, capsys):
    first = api_keys.ensure_demo_key()
    token = first.split()[-1]
    assert token.startswith("wk_") and api_keys.authenticate(token).scope == "write"
    second = api_keys.ensure_demo_key()
    assert "exists" in second and token not in second
    assert api_keys.authenticate(token) is not None


def test_a_key_revoked_by_another_process_is_refused_once_the_cache_expires(client, auth, app):
    import time

    from sqlalchemy import text
    app.config["API_KEY_CACHE_SECONDS"] = 0.3
    key, token = api_keys.create_key("elsewhere", "read")
    assert client.get("/wallet/2/balance", headers=auth(token)).status_code == 200
    with db.engine.begin() as conn:  # as another worker's revoke_key would
        conn.execute(text("UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP WHERE id = :id"),
                     {"id": key.id})
    assert client.get("/wallet/2/balance", headers=auth(token)).status_code == 200  # cached
    time.sleep(0.35)
    assert client.get("/wallet/2/balance", headers=auth(token)).status_code == 401
