"""/healthz and /readyz: unauthenticated probes; ready means database up and schema at head."""
import socket
import time

import psycopg
import pytest
from alembic.script import ScriptDirectory

from tests.conftest import build_app
from tests.ops.support import app_with, free_port
from wallet_web import MIGRATIONS_DIR

HEAD = ScriptDirectory(MIGRATIONS_DIR).get_revision("head")


def test_healthz_answers_without_a_key(client):
    response = client.get("/healthz")
    assert (response.status_code, response.json) == (200, {"status": "ok"})


def test_readyz_is_ready_when_the_schema_is_at_the_migrations_head(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ready", "revision": [HEAD.revision]}


@pytest.fixture
def pending_migration(database_url):
    """The database one revision behind the code, as after deploying new code unmigrated."""
    with psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = %s", (HEAD.down_revision,))
        yield
        conn.execute("UPDATE alembic_version SET version_num = %s", (HEAD.revision,))


def test_readyz_is_not_ready_while_a_migration_is_pending(client, pending_migration):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["code"] == "migrations_pending"
    assert response.headers["Retry-After"]


def test_readyz_is_not_ready_and_answers_at_once_when_the_database_is_down():
    app = build_app(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere")
    started = time.monotonic()
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["code"] == "database_unavailable"
    assert time.monotonic() - started < 3


def test_readyz_gives_up_after_the_connect_timeout_on_a_silent_server():
    """A host that accepts TCP but never answers (a hung database) must not hang the probe."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        app = app_with(f"postgresql+psycopg://postgres@127.0.0.1:{port}/hung",
                       DB_CONNECT_TIMEOUT_SECONDS=2)
        started = time.monotonic()
        response = app.test_client().get("/readyz")
        assert response.status_code == 503
        assert 1.5 < time.monotonic() - started < 8, "bounded by the connect timeout"
