"""Read replicas (wallet_web/replica.py) against a real streaming standby: a private primary and
a replica made from it with pg_basebackup -R, which logs every statement it runs, so a test
sees what the replica served. The marked reads go to the replica, writes and balances never; a
caller reads its own writes with replay paused; a stopped or lagging replica leaves the pages
and lists answering from the primary, and reads come back when it does."""
import subprocess
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import yaml
from flask_migrate import upgrade
from sqlalchemy import event

import seed
from tests.conftest import build_app, ensure_database
from tests.ops.private_pg import PrivateCluster
from tests.ops.support import app_with, poll_until
from tests.ops.test_metrics import grew, scrape, value
from wallet_web import ROOT_DIR, api_keys, operator_sessions, operators, replica
from wallet_web.extensions import db

ALICE = 2
FALLBACK, RETURN = "reads fall back to the primary", "reads return to the replica"
PATIENT = {"REPLICA_WAIT_MS": 5000, "REPLICA_MAX_LAG_SECONDS": 3600}  # a busy box may be slow


@dataclass
class Pair:
    primary: PrivateCluster
    standby: PrivateCluster
    token: str
    operator_id: int

    @property
    def url(self) -> str:
        return self.primary.url("wallet")

    @property
    def replica_url(self) -> str:
        return self.standby.url("wallet")

    def replica_log(self) -> str:
        return (self.standby.root / "log").read_text(errors="replace")

    def on_replica(self, statement: str):
        with psycopg.connect(self.replica_url.replace("+psycopg", ""), autocommit=True) as conn:
            return conn.execute(statement).fetchone()


@pytest.fixture(scope="module")
def pair():
    primary = PrivateCluster(wal_level="replica").init().allow_replication()
    try:
        token, operator_id = _prepared(primary.url("wallet"))
        standby = primary.standby(hot_standby_feedback="on", log_statement="all")
        try:
            yield Pair(primary, standby, token, operator_id)
        finally:
            standby.destroy()
    finally:
        primary.destroy()


def _prepared(url: str) -> tuple[str, int]:
    """Migrated and seeded; a write key and a viewer."""
    ensure_database(url)
    app = build_app(url)
    with app.app_context():
        upgrade()
        seed.seed_demo()
        token = api_keys.create_key("replica-test", "write")[1]
        operator_id = operators.create_operator("replica-viewer", "replica-test-pw", "viewer").id
        db.engine.dispose()
    return token, operator_id


@pytest.fixture
def served(pair):
    """served(**settings) -> (app, API client headers, dashboard client) on the pair."""
    apps = []

    def serve(**settings):
        app = app_with(pair.url, DATABASE_REPLICA_URL=pair.replica_url, **settings)
        apps.append(app)
        dashboard = app.test_client()
        with app.app_context():
            token = operator_sessions.start(pair.operator_id)
        with dashboard.session_transaction() as session:
            session["_user_id"], session["_fresh"] = token, True
        return app, {"Authorization": f"Bearer {pair.token}"}, dashboard

    yield serve
    for app in apps:
        with app.app_context():
            db.engine.dispose()  # the replica's engine goes with it


def top_up(client, key: dict, amount: int = 5) -> str:
    reference = f"rr-{uuid.uuid4().hex[:12]}"
    reply = client.post("/wallet/topup", headers=key,
                        json={"user_id": ALICE, "amount": amount, "reference_id": reference})
    assert reply.status_code == 200, reply.get_data(as_text=True)
    return reference


def listed(client, key: dict, reference: str) -> bool:
    reply = client.get(f"/api/v1/transactions?reference_id={reference}", headers=key)
    assert reply.status_code == 200
    return [tx["reference_id"] for tx in reply.get_json()["items"]] == [reference]


def messages(log_lines, text: str) -> list[dict]:
    return [line for line in log_lines() if line["msg"] == text]


def back_on_the_replica(client, key: dict, reference: str) -> None:
    """Until a read is served by the replica again (its background probe saw it fit)."""
    def served_by_replica():
        before = scrape(client)
        found = listed(client, key, reference)
        return found and grew(before, scrape(client), "wallet_db_reads_total",
                              target="replica", reason="caught_up") == 1

    poll_until(served_by_replica, "reads never came back to the replica", interval=0.2)


def test_marked_reads_are_served_by_the_replica_and_see_the_callers_own_write(pair, served):
    app, key, dashboard = served(**PATIENT)
    client = app.test_client()
    earlier = _transaction_id(client, key, top_up(client, key))
    reference = top_up(client, key)  # a write: the replica is read-only, it would refuse it
    before, log_before = scrape(client), pair.replica_log()

    assert listed(client, key, reference)  # read-your-writes, on the replica
    page = dashboard.get(f"/ledger?reference_id={reference}")
    assert page.status_code == 200 and reference in page.get_data(as_text=True)
    assert dashboard.get(f"/ledger/{earlier}").status_code == 200
    assert dashboard.get("/").status_code == 200
    assert dashboard.get(f"/users/{ALICE}/explain").status_code == 200
    csv = client.get(f"/api/v1/transactions.csv?reference_id={reference}", headers=key)
    assert csv.status_code == 200 and reference in csv.get_data(as_text=True)
    for path in ("/api/v1/users", "/api/v1/holds", "/api/v1/audit-events",
                 "/api/v1/accounts/1/postings"):
        assert client.get(path, headers=key).status_code == 200, path

    after, replica_ran = scrape(client), pair.replica_log()[len(log_before):]
    assert grew(before, after, "wallet_db_reads_total", target="replica",
                reason="caught_up") == 10
    assert value(after, "wallet_db_reads_total", target="primary", reason="behind") == 0
    assert reference in replica_ran, "the list, the ledger page and the CSV ran there"
    assert "volume_days" in replica_ran, "the overview's aggregates ran there"
    assert "pg_last_wal_replay_lsn" in replica_ran


def test_writes_balances_and_the_event_feed_stay_on_the_primary(pair, served):
    app, key, dashboard = served(**PATIENT)
    client = app.test_client()
    before, log_before = scrape(client), pair.replica_log()

    top_up(client, key)
    assert client.get(f"/wallet/{ALICE}/balance", headers=key).status_code == 200
    assert client.get(f"/api/v1/users/{ALICE}", headers=key).status_code == 200
    assert client.get("/api/v1/events", headers=key).status_code == 200
    assert dashboard.get(f"/users/{ALICE}").status_code == 200

    replica_ran = pair.replica_log()[len(log_before):]
    assert not [table for table in ("accounts", "transactions", "events", "users")
                if table in replica_ran], "nothing of theirs ran on the replica"
    after = scrape(client)
    assert sum(grew(before, after, "wallet_db_reads_total", target=target, reason=reason)
               for target, reason in (("replica", "caught_up"), ("primary", "behind"),
                                      ("primary", "lagging"), ("primary", "down"))) == 0


def test_with_replay_paused_a_top_up_is_read_back_from_the_primary_until_replay_resumes(
        pair, served, log_lines):
    app, key, dashboard = served(REPLICA_WAIT_MS=300, REPLICA_MAX_LAG_SECONDS=3600)
    client = app.test_client()
    with replay_paused(pair):
        before = scrape(client)
        reference = top_up(client, key)
        assert listed(client, key, reference), "the caller reads its own top-up"
        page = dashboard.get(f"/ledger?reference_id={reference}")
        assert page.status_code == 200 and reference in page.get_data(as_text=True)
        assert grew(before, scrape(client), "wallet_db_reads_total", target="primary",
                    reason="behind") == 2
        assert client.get("/readyz").get_json()["status"] == "ready"
    back_on_the_replica(client, key, reference)
    assert messages(log_lines, FALLBACK) == [], "behind within REPLICA_MAX_LAG_SECONDS is quiet"


def test_a_stopped_replica_leaves_the_reads_to_the_primary_until_it_returns(
        pair, served, log_lines):
    app, key, dashboard = served(**PATIENT)
    client = app.test_client()
    before_stop = top_up(client, key)
    assert listed(client, key, before_stop)
    pair.standby.stop()
    try:
        before = scrape(client)
        while_down = top_up(client, key)
        for _ in range(3):
            assert listed(client, key, while_down) and listed(client, key, before_stop)
        page = dashboard.get(f"/ledger?reference_id={while_down}")
        assert page.status_code == 200 and while_down in page.get_data(as_text=True)
        assert dashboard.get("/").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.get_json() | {"revision": None} == {"status": "ready", "replica": "down",
                                                         "revision": None}
        assert grew(before, scrape(client), "wallet_db_reads_total", target="primary",
                    reason="down") == 8
        [fell_back] = messages(log_lines, FALLBACK)
        assert fell_back["replica"] == "down" and fell_back["level"] == "WARNING"
    finally:
        pair.standby.start()
    back_on_the_replica(client, key, while_down)
    [returned] = messages(log_lines, RETURN)
    assert returned["was"] == "down"
    assert len(messages(log_lines, FALLBACK)) == 1


def test_a_replica_lagging_beyond_the_limit_is_left_at_once_and_taken_back_when_current(
        pair, served, log_lines):
    app, key, _ = served(REPLICA_WAIT_MS=5000, REPLICA_MAX_LAG_SECONDS=1)
    client = app.test_client()
    with replay_paused(pair):
        reference = top_up(client, key)
        poll_until(lambda: pair.on_replica(
            "SELECT now() - pg_last_xact_replay_timestamp() > interval '1.5 s'")[0],
            "the replica never fell 1.5 s behind")
        before = scrape(client)
        started = time.monotonic()
        assert listed(client, key, reference)
        assert time.monotonic() - started < 5, "it did not wait REPLICA_WAIT_MS"
        assert listed(client, key, reference)
        after = scrape(client)
        assert grew(before, after, "wallet_db_reads_total", target="primary",
                    reason="lagging") == 2
        assert value(after, "wallet_db_replica_lag_seconds") > 1
        [fell_back] = messages(log_lines, FALLBACK)
        assert fell_back["replica"] == "lagging" and fell_back["lag_seconds"] > 1
    back_on_the_replica(client, key, reference)
    assert messages(log_lines, RETURN)[0]["was"] == "lagging"
    assert value(scrape(client), "wallet_db_replica_lag_seconds") == 0


@contextmanager
def replay_paused(pair):
    pair.on_replica("SELECT pg_wal_replay_pause()")
    try:
        poll_until(lambda: pair.on_replica("SELECT pg_get_wal_replay_pause_state()")[0]
                   == "paused", "replay never paused")
        yield
    finally:
        pair.on_replica("SELECT pg_wal_replay_resume()")


def _transaction_id(client, key: dict, reference: str) -> int:
    reply = client.get(f"/api/v1/transactions?reference_id={reference}", headers=key)
    return reply.get_json()["items"][0]["id"]


# ---------------------------------------------------------------- settings and deployment

UNUSED_PRIMARY = "postgresql+psycopg://postgres@127.0.0.1:1/none"  # create_app connects to none


@pytest.mark.parametrize("settings, message", [
    ({"DATABASE_REPLICA_URL": "replica-host:5432"}, "DATABASE_REPLICA_URL is not a database URL"),
    ({"DATABASE_REPLICA_URL": "mysql://u:secret@h/db"},
     r"DATABASE_REPLICA_URL must be a postgresql\+psycopg:// URL"),
    ({"REPLICA_MAX_LAG_SECONDS": "0"}, "REPLICA_MAX_LAG_SECONDS must be seconds above 0"),
    ({"REPLICA_MAX_LAG_SECONDS": "soon"}, "REPLICA_MAX_LAG_SECONDS must be seconds above 0"),
    ({"REPLICA_WAIT_MS": "0.2"}, "REPLICA_WAIT_MS must be whole milliseconds, 0 or more"),
    ({"REPLICA_WAIT_MS": "-1"}, "REPLICA_WAIT_MS must be whole milliseconds, 0 or more"),
])
def test_a_bad_replica_setting_stops_the_start_with_its_name(settings, message):
    with pytest.raises(RuntimeError, match=message) as refused:
        app_with(UNUSED_PRIMARY, **settings)
    assert "secret" not in str(refused.value)


def test_a_replica_of_a_sqlite_primary_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="needs a PostgreSQL DATABASE_URL"):
        app_with(f"sqlite:///{tmp_path / 'w.sqlite3'}",
                 DATABASE_REPLICA_URL="postgresql+psycopg://postgres@127.0.0.1:5432/x")


def test_without_a_replica_a_marked_read_runs_only_its_own_statements(app, client, bearer):
    ran = []
    event.listen(db.engine, "before_cursor_execute", lambda *a: ran.append(a[2]))
    assert client.get("/api/v1/transactions", headers=bearer).status_code == 200
    assert ran and not [sql for sql in ran if "wal_" in sql]
    assert replica.EXTENSION not in app.extensions
    assert client.get("/readyz").get_json().keys() == {"status", "revision"}


def test_compose_offers_a_streaming_standby_of_the_db_service():
    compose = yaml.safe_load((Path(ROOT_DIR) / "docker-compose.yml").read_text())
    db_service, standby = compose["services"]["db"], compose["services"]["db-replica"]
    assert standby["image"] == db_service["image"]
    assert standby["profiles"] == ["replica"], "started only when asked for"
    shell, flag, script = standby["entrypoint"]
    script = script.replace("$$", "$")  # compose's escape
    subprocess.run([shell, "-n", flag, script], check=True)
    assert "pg_basebackup -h db " in script and " -R " in script
    assert "exec postgres -c hot_standby_feedback=on" in script
    assert standby["environment"]["PGPASSWORD"].startswith("${POSTGRES_PASSWORD")
    mounts = dict(mount.split(":")[:2] for mount in db_service["volumes"])
    allowing = mounts["./deploy/postgres/allow-replication.sh"]
    assert allowing.startswith("/docker-entrypoint-initdb.d/")
    line = (Path(ROOT_DIR) / "deploy/postgres/allow-replication.sh").read_text().splitlines()[-1]
    subprocess.run(["sh", "-n", "-c", line], check=True)
    assert "host replication ${POSTGRES_USER} all scram-sha-256" in line
    app_environment = compose["services"]["app"]["environment"]
    assert app_environment["DATABASE_REPLICA_URL"] == "${DATABASE_REPLICA_URL:-}", "optional"
