"""/healthz and /readyz: unauthenticated probes; alive means the process answers, without the
database; ready means database up and schema at head."""
import socket
import threading
import time
from contextlib import contextmanager

import psycopg
import pytest
from alembic.script import ScriptDirectory

from tests.ops.support import HANG_GUARD_SECONDS, app_with, call, free_port
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


def refused_url() -> str:
    """A database URL on which nothing listens: every connection is refused at once."""
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere"


@contextmanager
def silent_database():
    """A port that accepts TCP connections and never answers, like a hung database: yields
    (url, connections()) where connections() takes the connections made since the last call."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        silent.setblocking(False)

        def connections() -> int:
            accepted = []
            while True:
                try:
                    accepted.append(silent.accept()[0])
                except BlockingIOError:
                    break
            for conn in accepted:
                conn.close()
            return len(accepted)

        port = silent.getsockname()[1]
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/hung", connections


def test_healthz_answers_while_the_database_refuses_connections():
    client = app_with(refused_url()).test_client()
    response = client.get("/healthz")
    assert (response.status_code, response.json) == (200, {"status": "ok"})


def test_healthz_never_opens_a_database_connection():
    """Liveness must not depend on the database: /healthz makes no connection attempt at all
    (so a hung database cannot slow it down), where /readyz makes one."""
    with silent_database() as (url, connections):
        client = app_with(url, DB_CONNECT_TIMEOUT_SECONDS=2).test_client()
        connections()  # from here on
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
        assert connections() == 0
        assert client.get("/readyz").status_code == 503
        assert connections() >= 1, "the probe's database is this port"


def test_a_server_started_while_the_database_is_down_is_alive_but_not_ready(gunicorn):
    server = gunicorn(DATABASE_URL=refused_url())  # start() waits for /healthz to answer 200
    ready = call(f"{server.base}/readyz")
    assert (ready.status, ready.json()["code"]) == (503, "database_unavailable")
    assert call(f"{server.base}/healthz").json() == {"status": "ok"}


def test_readyz_is_not_ready_and_answers_at_once_when_the_database_is_down():
    """A refused connection fails at once: the probe does not wait for the connect timeout
    (60 s here; the bound only stops a hang)."""
    app = app_with(refused_url(), DB_CONNECT_TIMEOUT_SECONDS=60)
    started = time.monotonic()
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["code"] == "database_unavailable"
    assert time.monotonic() - started < HANG_GUARD_SECONDS / 2


def test_readyz_gives_up_after_the_connect_timeout_on_a_silent_server():
    """A host that accepts TCP but never answers (a hung database) must not hang the probe:
    it waits the connect timeout, then answers 503."""
    with silent_database() as (url, _):
        app = app_with(url, DB_CONNECT_TIMEOUT_SECONDS=2)
        replies = []
        started = time.monotonic()
        probe = threading.Thread(target=lambda: replies.append(app.test_client().get("/readyz")),
                                 daemon=True)
        probe.start()
        probe.join(HANG_GUARD_SECONDS)
        assert replies, "the probe hung"
        assert replies[0].status_code == 503
        assert time.monotonic() - started > 1.5, "it waited for the connect timeout (2 s)"
