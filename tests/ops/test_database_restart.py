"""PostgreSQL restarted under load (a private cluster): while it is down the API answers 503
JSON at once, and afterwards the same workers recover by themselves; every retried request
took effect exactly once."""
import http.cookiejar
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from flask_migrate import upgrade

import seed
from tests.conftest import build_app, ensure_database
from tests.ops.private_pg import PrivateCluster
from tests.ops.support import Gunicorn, call
from tests.ops.test_gunicorn import TRANSIENT, ledger_verify, wallet_and_references
from wallet_web import api_keys, operators
from wallet_web.extensions import db


@pytest.fixture
def cluster():
    cluster = PrivateCluster().init()
    yield cluster
    cluster.destroy()


def prepared_database(url: str) -> str:
    """Migrated and seeded; returns a write key."""
    ensure_database(url)
    app = build_app(url)
    with app.app_context():
        upgrade()
        seed.seed_demo()
        token = api_keys.create_key("restart-load", "write")[1]
        operators.create_operator("oncall", OPERATOR_PASSWORD, "viewer")
        db.engine.dispose()
    return token


OPERATOR_PASSWORD = "restart-test-password"


class Dashboard:
    """A browser-like client: a cookie jar, the login form with its CSRF token."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str) -> tuple[int, str, str]:
        try:
            with self.opener.open(self.base + path, timeout=10) as response:
                return response.status, response.headers["Content-Type"], response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers["Content-Type"], error.read().decode()

    def log_in(self, username: str, password: str) -> None:
        _, _, page = self.get("/login")
        tag = re.search(r'<input[^>]*name="csrf_token"[^>]*>', page).group(0)
        token = re.search(r'value="([^"]+)"', tag).group(1)
        form = urllib.parse.urlencode({"csrf_token": token, "username": username,
                                       "password": password}).encode()
        with self.opener.open(self.base + "/login", data=form, timeout=10) as response:
            assert response.url.rstrip("/") == self.base, "redirected to the overview"


class Load:
    """Client threads posting top-ups with fresh reference_ids, each retried (same id) until
    it succeeds; every reply is recorded with its time and duration."""

    def __init__(self, base: str, token: str, threads: int = 3):
        self.base, self.headers = base, {"Authorization": f"Bearer {token}"}
        self.replies: list[tuple[float, float, int, dict | None]] = []
        self.references: dict[str, int] = {}
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(n,)) for n in range(threads)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_):
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)

    def _client(self, client: int) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            reference, amount = f"restart-{client}-{n}", 1 + n % 7
            self.references[reference] = amount
            self._until_done(reference, amount)

    def _until_done(self, reference: str, amount: int) -> None:
        body = {"user_id": 2, "amount": amount, "reference_id": reference}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                reply = call(f"{self.base}/wallet/topup", "POST", body, self.headers, timeout=10)
            except TRANSIENT:
                self.replies.append((started, time.monotonic() - started, 0, None))
                continue
            is_json = reply.headers.get("Content-Type") == "application/json"
            payload = reply.json() if is_json else None
            self.replies.append((started, time.monotonic() - started, reply.status, payload))
            if reply.status in (200, 201):
                return
            time.sleep(0.1)

    def since(self, moment: float) -> list:
        return [reply for reply in self.replies if reply[0] >= moment]


def wait_for_success(load: Load, since: float, seconds: float = 20) -> float:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(status in (200, 201) for _, _, status, _ in load.since(since)):
            return time.monotonic()
        time.sleep(0.1)
    raise TimeoutError("the service did not recover")


def test_a_database_restart_under_load_gives_503s_then_recovers_without_a_restart(
        cluster, tmp_path):
    url = cluster.url("ops_restart")
    token = prepared_database(url)
    server = Gunicorn(url, tmp_path, GUNICORN_WORKERS="2", GUNICORN_THREADS="4",
                      DB_CONNECT_TIMEOUT_SECONDS="2").start()
    try:
        workers = server.worker_pids()
        balance_before, _, _ = wallet_and_references(url, "restart-")
        dashboard = Dashboard(server.base)
        dashboard.log_in("oncall", OPERATOR_PASSWORD)
        with Load(server.base, token) as load:
            wait_for_success(load, time.monotonic())
            time.sleep(1)
            cluster.stop()
            down_since = time.monotonic()
            time.sleep(3)
            assert call(f"{server.base}/readyz").status == 503
            status, content_type, page = dashboard.get("/")
            assert (status, content_type.split(";")[0]) == (503, "text/html")
            assert "temporarily unavailable" in page and "Traceback" not in page
            restarting = time.monotonic()
            cluster.start()
            up_since = time.monotonic()
            recovered_at = wait_for_success(load, up_since)
            time.sleep(1)
        while_down = [reply for reply in load.since(down_since + 0.5)
                      if reply[0] + reply[1] < restarting]
        assert while_down, "requests were made while the database was down"
        assert {status for _, _, status, _ in while_down} == {503}
        assert {body["error"]["code"] for _, _, _, body in while_down} == {"database_unavailable"}
        assert max(seconds for _, seconds, _, _ in while_down) < 5, "no request hung"
        assert not [reply for reply in load.replies if reply[2] not in (200, 201, 503)]
        assert recovered_at - up_since < 10
        assert server.worker_pids() == workers, "recovered without restarting a worker"
        assert call(f"{server.base}/readyz").status == 200
        assert dashboard.get("/")[0] == 200, "the operator's session survived the outage"
    finally:
        server.stop()
    balance_after, count, distinct = wallet_and_references(url, "restart-")
    assert count == distinct == len(load.references), "every request took effect exactly once"
    assert balance_after - balance_before == sum(load.references.values())
    verify = ledger_verify(url)
    assert verify.returncode == 0, verify.stdout + verify.stderr
