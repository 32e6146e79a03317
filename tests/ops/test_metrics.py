"""/metrics in one process (the plain registry); tests/ops/test_gunicorn.py covers the
multiprocess mode under gunicorn."""
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.support import app_with, replayed, took_effect
from wallet_web import ledger_pool
from wallet_web.extensions import db


def scrape(client) -> dict:
    """{(sample name, sorted labels): value} of one /metrics answer."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def grew(before: dict, after: dict, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_requests_are_counted_by_route_template_and_status(client, bearer):
    before = scrape(client)
    for user_id in (2, 3):
        assert client.get(f"/wallet/{user_id}/balance", headers=bearer).status_code == 200
    assert client.get("/wallet/2/balance").status_code == 401
    after = scrape(client)
    route = "/wallet/<id:user_id>/balance"
    assert grew(before, after, "wallet_http_requests_total", route=route, method="GET",
                status="200") == 2
    assert grew(before, after, "wallet_http_requests_total", route=route, method="GET",
                status="401") == 1
    assert grew(before, after, "wallet_http_request_duration_seconds_count", route=route,
                method="GET", status="200") == 2
    assert not any("/wallet/2/balance" in str(key) for key in after)


def test_unknown_paths_share_one_label(client):
    before = scrape(client)
    client.get("/no/such/page-1")
    client.get("/no/such/page-2")
    after = scrape(client)
    assert grew(before, after, "wallet_http_requests_total", route="unmatched", method="GET",
                status="404") == 2


def test_ledger_movements_replays_and_refusals_are_counted(client, bearer):
    before = scrape(client)
    topup = {"user_id": 2, "amount": 5, "reference_id": "metrics-topup"}
    assert took_effect(client.post("/wallet/topup", json=topup, headers=bearer))
    assert replayed(client.post("/wallet/topup", json=topup, headers=bearer))
    overdraft = {"user_id": 3, "amount": 10**6, "reference_id": "metrics-spend"}
    assert client.post("/wallet/spend", json=overdraft, headers=bearer).status_code == 422
    after = scrape(client)
    assert grew(before, after, "wallet_ledger_transactions_total", kind="topup", asset="GOLD") == 1
    assert grew(before, after, "wallet_ledger_idempotent_replays_total", kind="topup") == 1
    assert grew(before, after, "wallet_ledger_insufficient_funds_total", kind="spend",
                asset="GOLD") == 1
    assert grew(before, after, "wallet_ledger_refusals_total", kind="spend",
                code="insufficient_funds") == 1
    assert grew(before, after, "wallet_ledger_lock_wait_seconds_count", kind="topup") == 2
    assert grew(before, after, "wallet_ledger_lock_wait_seconds_sum", kind="topup") > 0


def test_the_pool_gauge_counts_connections_in_use(app, client):
    idle = value(scrape(client), "wallet_db_pool_checked_out_connections")
    with db.engine.connect(), db.engine.connect():
        busy = value(scrape(client), "wallet_db_pool_checked_out_connections")
    assert busy - idle == 2
    assert value(scrape(client), "wallet_db_pool_checked_out_connections") == idle


def test_the_pool_gauge_counts_the_ledger_pools_connections_too(app, client):
    """A movement of known accounts holds a ledger pool connection, not the engine's."""
    pool = ledger_pool.get()
    idle = value(scrape(client), "wallet_db_pool_checked_out_connections")
    with pool.connection():
        busy = value(scrape(client), "wallet_db_pool_checked_out_connections")
    assert busy - idle == 1
    assert value(scrape(client), "wallet_db_pool_checked_out_connections") == idle


@pytest.fixture
def guarded_client(database_url):
    return app_with(database_url, METRICS_TOKEN="scrape-secret").test_client()


def test_a_metrics_token_guards_the_endpoint_when_set(guarded_client):
    assert guarded_client.get("/metrics").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert guarded_client.get("/metrics", headers=wrong).status_code == 401
    right = {"Authorization": "Bearer scrape-secret"}
    assert guarded_client.get("/metrics", headers=right).status_code == 200


def production_client(database_url, **settings):
    return app_with(database_url, WALLET_ENV="production", SECRET_KEY="s" * 32,
                    **settings).test_client()


def test_production_without_a_metrics_token_refuses_to_serve_metrics(database_url):
    response = production_client(database_url, METRICS_TOKEN=None).get("/metrics")
    assert response.status_code == 403
    assert "set METRICS_TOKEN" in response.get_data(as_text=True)
    assert "wallet_http_requests" not in response.get_data(as_text=True)


def test_production_with_a_metrics_token_needs_it(database_url):
    client = production_client(database_url, METRICS_TOKEN="scrape-secret")
    assert client.get("/metrics").status_code == 401
    right = {"Authorization": "Bearer scrape-secret"}
    assert client.get("/metrics", headers=right).status_code == 200
