"""Fixtures of the operations tests: API keys and a live gunicorn on the seeded test database."""
import io
import json
import logging

import pytest

from tests.ops.support import Gunicorn, admin_execute, scratch_name, scratch_url
from wallet_web import api_keys
from wallet_web.jsonlog import JsonFormatter


@pytest.fixture
def write_key(app) -> str:
    return api_keys.create_key("ops-writer", "write")[1]


@pytest.fixture
def bearer(write_key) -> dict:
    return {"Authorization": f"Bearer {write_key}"}


@pytest.fixture
def gunicorn(app, database_url, tmp_path):
    """start(**env) -> a running Gunicorn; all are stopped after the test."""
    servers = []

    def start(**env: str) -> Gunicorn:
        server = Gunicorn(database_url, tmp_path, **env).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def operator_session(app, client):
    """A dashboard session of operator `ops-admin`, as Flask-Login keeps it in the cookie."""
    from wallet_web import operator_sessions
    from wallet_web.extensions import db
    from wallet_web.models import OPERATOR_ROLES, Operator

    operator = Operator(username="ops-admin", password_hash="not-used", role=OPERATOR_ROLES[-1])
    db.session.add(operator)
    db.session.commit()
    with client.session_transaction() as session:
        session["_user_id"] = operator_sessions.start(operator.id)
        session["_fresh"] = True
    return operator


@pytest.fixture
def log_lines():
    """lines() -> the JSON objects the app's loggers wrote during the test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("wallet_web")
    logger.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)


@pytest.fixture
def scratch_database():
    """create(name, create=True) -> the URL of an empty database ops_<name>_<suite database>
    (or only its name, when create=False); all are dropped after the test."""
    names = []

    def create(name: str, *, create: bool = True) -> str:
        names.append(scratch_name(name))
        admin_execute(f'DROP DATABASE IF EXISTS "{names[-1]}" WITH (FORCE)')
        if create:
            admin_execute(f'CREATE DATABASE "{names[-1]}"')
        return scratch_url(name)

    yield create
    for name in names:
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
