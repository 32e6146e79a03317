"""API keys: every API route needs one (the routes come from the app's URL map, so a new one is
covered without editing this file), scopes, revocation (also by another process, through the
per-process cache), last use, and the CLI."""
import types
from datetime import timedelta

import pytest
from flask import url_for
from sqlalchemy import inspect, text

from wallet_web import accounts, api_keys, holds, ledger
from wallet_web.api.errors import is_api_path
from wallet_web.api.openapi import OPERATIONS
from wallet_web.extensions import db
from wallet_web.models import ApiKey

# The API routes that need no key: README, "the OpenAPI document and the docs page are public:
# they hold no data". Each must still be a route (checked below), so the list cannot rot.
PUBLIC = {("GET", "/api/v1/openapi.json"), ("GET", "/api/docs")}
BAD_HEADERS = [None, "Bearer", "Bearer ", "Bearer wk_not-a-key", "Basic dXNlcjpwdw==",
               "wk_not-a-key"]
# A valid value for each required body field of a write route, so that a route whose key
# check went missing would really change something.
BODY_EXAMPLES = {"amount": 1, "reference_id": "route-probe", "currency": "GOLD",
                 "asset": "GOLD", "kind": "topup", "username": "route_probe",
                 "email": "route-probe@example.com", "reason": "route probe"}


def api_routes(app) -> list[tuple[str, object]]:
    """(method, rule) of every route under /wallet and /api, HEAD and OPTIONS aside."""
    return sorted(((method, rule) for rule in app.url_map.iter_rules() if is_api_path(rule.rule)
                   for method in rule.methods - {"HEAD", "OPTIONS"}),
                  key=lambda route: (route[1].rule, route[0]))


def protected_routes(app) -> list[tuple[str, object]]:
    return [(method, rule) for method, rule in api_routes(app) if (method, rule.rule) not in PUBLIC]


def is_write(method: str) -> bool:
    return method != "GET"  # README: every POST needs the write scope, every GET read


def every_row() -> dict:
    """Every row of every table: a refused request must leave all of them as they were."""
    db.session.rollback()
    tables = inspect(db.engine).get_table_names()
    return {table: db.session.execute(text(f"SELECT * FROM {table} ORDER BY 1")).all()
            for table in tables}


@pytest.fixture
def call(app, client, make_user, wallet_of):
    """call(method, rule, headers) -> the response of that route with its path filled from
    real rows (a user, its wallet, one of its transactions) and, for a write, a body that
    would succeed."""
    user = make_user(balance=100)
    values = {"user_id": user, "account_id": wallet_of(user),
              "tx_id": ledger.topup(user, "GOLD", 5, "route-probe-target").id,
              "external_id": _user_with_external_id(),
              "hold_id": holds.place(user, "GOLD", 1, "route-probe-hold").hold.id}
    operations = {op.endpoint: op for op in OPERATIONS}

    def send(method: str, rule, headers: dict):
        with app.test_request_context():
            path = url_for(rule.endpoint, **{name: values[name] for name in rule.arguments})
        body = _valid_body(operations.get(rule.endpoint), user)
        return client.open(path, method=method, json=body if is_write(method) else None,
                           headers=headers, buffered=True)
    return send


def _user_with_external_id() -> str:
    accounts.register_user("route_owner", "route-owner@example.com", "game:route-owner")
    return "game:route-owner"


def _valid_body(operation, user_id: int) -> dict:
    if operation is None or operation.body is None:
        return {}
    examples = {**BODY_EXAMPLES, "user_id": user_id,
                "items": [{"kind": "topup", "user_id": user_id, "asset": "GOLD", "amount": 1,
                           "reference_id": "route-probe-item"}]}
    return {name: examples[name] for name, field in operation.body.model_fields.items()
            if field.is_required()}


def assert_error(response, status: int, code: str, route):
    assert response.status_code == status, (route, response.get_data(as_text=True)[:300])
    assert response.is_json and set(response.json) == {"error"}, route
    assert response.json["error"]["code"] == code, route
    assert response.json["error"]["message"], route


def test_the_public_api_routes_exist_and_need_no_key(app, client):
    routes = {(method, rule.rule) for method, rule in api_routes(app)}
    for method, path in sorted(PUBLIC):
        assert (method, path) in routes, f"{method} {path} is on the allow-list but not a route"
        assert client.open(path, method=method).status_code == 200


def test_every_protected_route_is_found(app):
    routes = protected_routes(app)
    assert len(routes) >= 14  # the 14 documented when this test was written
    assert {("POST", "/wallet/topup"), ("GET", "/api/v1/transactions.csv"),
            ("POST", "/api/v1/transactions/<id:tx_id>/reversal")} <= {
        (method, rule.rule) for method, rule in routes}


@pytest.mark.parametrize("header", BAD_HEADERS)
def test_every_protected_route_without_a_valid_key_is_401_and_changes_nothing(
        app, call, header):
    before = every_row()
    for method, rule in protected_routes(app):
        response = call(method, rule, {"Authorization": header} if header is not None else {})
        assert_error(response, 401, "unauthorized", (method, rule.rule))
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), rule.rule
    assert every_row() == before


def test_every_protected_route_refuses_a_revoked_key_with_401(app, call):
    key, token = api_keys.create_key("revoked", "write")
    headers = {"Authorization": f"Bearer {token}"}
    assert call("GET", _rule(app, "/wallet/<id:user_id>/balance"), headers).status_code == 200
    api_keys.revoke_key(key.id)  # the key is in this process's cache: revoking drops it
    before = every_row()
    for method, rule in protected_routes(app):
        assert_error(call(method, rule, headers), 401, "unauthorized", (method, rule.rule))
    assert every_row() == before


def test_a_read_key_gets_403_on_every_write_route_and_changes_nothing(app, call, read_key):
    headers = {"Authorization": f"Bearer {read_key}"}
    writes = [(method, rule) for method, rule in protected_routes(app) if is_write(method)]
    assert len(writes) >= 4
    call("GET", _rule(app, "/wallet/<id:user_id>/balance"), headers)  # its first use is recorded
    before = every_row()
    for method, rule in writes:
        response = call(method, rule, headers)
        assert_error(response, 403, "insufficient_scope", (method, rule.rule))
        assert response.json["error"]["required_scope"] == "write"
    assert every_row() == before


def test_a_read_key_reads_every_read_route(app, call, read_key):
    headers = {"Authorization": f"Bearer {read_key}"}
    for method, rule in protected_routes(app):
        if not is_write(method):
            response = call(method, rule, headers)
            assert response.status_code == 200, (rule.rule, response.get_data(as_text=True)[:300])


def test_a_write_key_passes_the_key_check_of_every_route(app, call, write_key):
    for method, rule in protected_routes(app):
        response = call(method, rule, {"Authorization": f"Bearer {write_key}"})
        assert response.status_code not in (401, 403) and response.status_code < 500, (
            method, rule.rule, response.get_data(as_text=True)[:300])


def _rule(app, path: str):
    return next(rule for rule in app.url_map.iter_rules() if rule.rule == path)


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


@pytest.fixture
def balance_url(make_user) -> str:
    return f"/wallet/{make_user()}/balance"


def test_last_used_at_is_written_at_most_once_a_minute(client, auth, app, balance_url):
    app.config["API_KEY_CACHE_SECONDS"] = 0  # every request looks the key up
    key, token = api_keys.create_key("clock", "read")
    client.get(balance_url, headers=auth(token))
    first = _last_used(key.id)
    assert first is not None
    client.get(balance_url, headers=auth(token))
    assert _last_used(key.id) == first
    _set_last_used(key.id, first - timedelta(seconds=61))
    client.get(balance_url, headers=auth(token))
    assert _last_used(key.id) > first


def _last_used(key_id):
    db.session.rollback()
    return db.session.get(ApiKey, key_id, populate_existing=True).last_used_at


def _set_last_used(key_id, when):
    db.session.get(ApiKey, key_id).last_used_at = when
    db.session.commit()


def test_cli_creates_a_key_alone_on_the_last_line_and_it_works(app, client, make_user):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["api-keys", "create", "game-server", "--scope", "write"])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    assert token.startswith("wk_") and " " not in token
    body = {"user_id": make_user(), "amount": 1, "reference_id": "cli"}
    response = client.post("/wallet/topup", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and response.json["status"] == "success"


def test_cli_lists_and_revokes(app, client, balance_url):
    runner = app.test_cli_runner()
    token = runner.invoke(args=["api-keys", "create", "to-revoke"]).output.strip().splitlines()[-1]
    key_id = next(k.id for k in api_keys.list_keys() if k.name == "to-revoke")
    listing = runner.invoke(args=["api-keys", "list"]).output
    assert "to-revoke" in listing and "read" in listing and token not in listing
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get(balance_url, headers=headers).status_code == 200  # now in the cache
    assert runner.invoke(args=["api-keys", "revoke", str(key_id)]).exit_code == 0
    assert "revoked" in runner.invoke(args=["api-keys", "list"]).output
    assert client.get(balance_url, headers=headers).status_code == 401
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


# ---------------------------------------------------------------- the key cache, on a clock


@pytest.fixture
def clock(monkeypatch):
    """The key cache's clock, moved by hand: clock.now += seconds. Only api_keys sees it."""
    fake = types.SimpleNamespace(now=1000.0)
    monkeypatch.setattr(api_keys, "time", types.SimpleNamespace(monotonic=lambda: fake.now))
    return fake


def _revoke_as_another_process_would(key_id: int) -> None:
    """Another worker's revoke_key: the row changes, this process's cache does not hear of it."""
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP WHERE id = :id"),
                     {"id": key_id})


def test_a_key_revoked_by_another_process_works_until_the_cache_window_ends(
        client, auth, app, clock, balance_url):
    app.config["API_KEY_CACHE_SECONDS"] = 30
    key, token = api_keys.create_key("elsewhere", "read")
    assert client.get(balance_url, headers=auth(token)).status_code == 200
    _revoke_as_another_process_would(key.id)
    clock.now += 29.5
    assert client.get(balance_url, headers=auth(token)).status_code == 200  # still cached
    clock.now += 0.5  # exactly the window: the key is looked up again
    response = client.get(balance_url, headers=auth(token))
    assert (response.status_code, response.json["error"]["code"]) == (401, "unauthorized")


def test_without_a_cache_window_a_revocation_elsewhere_applies_at_once(
        client, auth, app, clock, balance_url):
    app.config["API_KEY_CACHE_SECONDS"] = 0
    key, token = api_keys.create_key("uncached", "read")
    assert client.get(balance_url, headers=auth(token)).status_code == 200
    _revoke_as_another_process_would(key.id)
    assert client.get(balance_url, headers=auth(token)).status_code == 401


def test_a_revocation_in_this_process_applies_at_once_whatever_the_window(
        client, auth, app, clock, balance_url):
    app.config["API_KEY_CACHE_SECONDS"] = 3600
    key, token = api_keys.create_key("short-lived", "read")
    assert client.get(balance_url, headers=auth(token)).status_code == 200
    api_keys.revoke_key(key.id)
    assert client.get(balance_url, headers=auth(token)).status_code == 401
