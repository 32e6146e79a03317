"""The original flow end to end against a real server process (gunicorn) on the test database."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from wallet_web import ROOT_DIR, api_keys


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


def _wait_until_up(base: str, server, log_path, seconds: float = 30):
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


def _call(base: str, token: str, method: str, path: str, body: dict | None = None):
    request = urllib.request.Request(
        base + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_original_flow_balance_topup_bonus_spend(live_server, app):
    token = api_keys.create_key("e2e", "write")[1]
    status, before = _call(live_server, token, "GET", "/wallet/2/balance")
    assert status == 200
    for kind, amount in (("topup", 100), ("bonus", 50), ("spend", 30)):
        status, receipt = _call(live_server, token, "POST", f"/wallet/{kind}",
                                {"user_id": 2, "amount": amount, "reference_id": f"e2e-{kind}"})
        assert (status, receipt["type"], receipt["status"]) == (201, kind, "completed")
    status, after = _call(live_server, token, "GET", "/wallet/2/balance")
    assert after["total_balance"] - before["total_balance"] == 120
    assert after["total_balance"] == receipt["balance"] == 220
    status, replay = _call(live_server, token, "POST", "/wallet/spend",
                           {"user_id": 2, "amount": 30, "reference_id": "e2e-spend"})
    assert (status, replay) == (200, receipt)
    assert _call(live_server, "wk_wrong", "GET", "/wallet/2/balance")[0] == 401
