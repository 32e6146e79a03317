"""API fixtures: a test client and keys of each scope, on the shared `app` fixture."""
import pytest

from wallet_web import api_keys


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def write_key(app) -> str:
    return api_keys.create_key("test-writer", "write")[1]


@pytest.fixture
def read_key(app) -> str:
    return api_keys.create_key("test-reader", "read")[1]


@pytest.fixture
def auth(write_key):
    """auth(key=write key) -> the Authorization header for that key."""
    def headers(key: str | None = None) -> dict:
        return {"Authorization": f"Bearer {key or write_key}"}
    return headers


@pytest.fixture
def post_movement(client, auth):
    """post_movement(kind, **fields) -> the response of POST /wallet/<kind>."""
    def post(kind: str, key: str | None = None, **fields):
        return client.post(f"/wallet/{kind}", json=fields, headers=auth(key))
    return post
