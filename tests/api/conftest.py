"""API fixtures: a test client, keys of each scope, and a real gunicorn on the test database."""
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from tests.conftest import _config_dict
from wallet_web import ROOT_DIR, api_keys, create_app
from wallet_web.extensions import db


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


@pytest.fixture
def app_with(database_url):
    """app_with(**settings) -> another app on the test database with those settings changed
    (create_app reads them); its connections are closed at the end."""
    made = []

    def make(**settings):
        made.append(create_app({**_config_dict(), "SQLALCHEMY_DATABASE_URI": database_url,
                                **settings}))
        return made[-1]

    yield make
    for other in made:
        with other.app_context():
            db.engine.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_server(app, database_url, tmp_path):
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "WALLET_ENV": "test",
           "SECRET_KEY": "live-server-test"}
    log = open(tmp_path / "gunicorn.log", "wb")  # a file, so a chatty server never blocks
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    server = subprocess.Popen([gunicorn, "--bind", f"127.0.0.1:{port}", "--workers", "2",
                               "--threads", "4", "wsgi:app"], cwd=ROOT_DIR, env=env,
                              stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, server, tmp_path / "gunicorn.log")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _wait_until_up(base: str, server, log_path, seconds: float = 120):
    """Polls until gunicorn answers; the deadline only stops a server that never comes up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(log_path.read_text())
        try:
            urllib.request.urlopen(f"{base}/api/v1/openapi.json", timeout=2)
            return
        except OSError:  # refused, reset, or a slow first answer on a loaded machine
            time.sleep(0.2)
    raise TimeoutError("gunicorn did not start")


def at_once(app, count: int, request) -> list:
    """request(client, n) from `count` threads released together, each with its own client
    (and so its own connections); the responses in thread order."""
    start, responses = threading.Barrier(count), [None] * count

    def run(n):
        client = app.test_client()
        start.wait()
        responses[n] = request(client, n)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return responses
