"""PostgreSQL restarted under load (a private cluster): while it is down the API answers 503
JSON at once, and afterwards the same workers recover by themselves; every retried request
took effect exactly once."""
import threading
import time

import pytest
from flask_migrate import upgrade

import seed
from tests.conftest import build_app, ensure_database
from tests.ops.private_pg import PrivateCluster
from tests.ops.support import HANG_GUARD_SECONDS, Dashboard, Gunicorn, call, poll_until
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
        deadline = time.monotonic() + 2 * HANG_GUARD_SECONDS
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                reply = call(f"{self.base}/wallet/topup", "POST", body, self.headers)
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

    def wait_for(self, count: int, since: float, what: str, statuses=None) -> None:
        """Until `count` replies (with one of `statuses`, if given) to requests sent after
        `since`."""
        poll_until(lambda: len([reply for reply in self.since(since)
                                if statuses is None or reply[2] in statuses]) >= count, what)


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
            load.wait_for(10, time.monotonic(), "the load never got going", {200, 201})
            cluster.stop()
            down_since = time.monotonic()  # pg_ctl -w: the server is down from here on
            load.wait_for(6, down_since, "no answer while the database was down")
            assert call(f"{server.base}/readyz").status == 503
            status, content_type, page = dashboard.get("/")
            assert (status, content_type.split(";")[0]) == (503, "text/html")
            assert "temporarily unavailable" in page and "Traceback" not in page
            restarting = time.monotonic()
            cluster.start()
            up_since = time.monotonic()
            load.wait_for(10, up_since, "the service did not recover", {200, 201})
        # Every request sent and answered while the database was down got a 503 JSON answer
        # (a request that hung would time out in the client: status 0).
        while_down = [reply for reply in load.since(down_since)
                      if reply[0] + reply[1] < restarting]
        assert len(while_down) >= 6
        assert {status for _, _, status, _ in while_down} == {503}
        assert {body["error"]["code"] for _, _, _, body in while_down} == {"database_unavailable"}
        assert not [reply for reply in load.replies if reply[2] not in (200, 201, 503)]
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
