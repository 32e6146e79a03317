"""The real server: gunicorn with gunicorn.conf.py, its workers, metrics across processes, a
worker killed with SIGKILL mid-stream, and a graceful stop on SIGTERM."""
import http.client
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.support import BIN, call
from wallet_web import ROOT_DIR

LOCK_ALICE = ("SELECT id FROM accounts WHERE user_id = 2 AND kind = 'wallet' "
              "AND asset_code = 'GOLD' FOR UPDATE")
TRANSIENT = (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException)


def metric_total(base: str, name: str, **labels) -> float:
    text = call(f"{base}/metrics").body.decode()
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())


def post_until_done(base: str, headers: dict, reference_id: str, amount: int,
                    deadline: float) -> tuple[int, int]:
    """POST one top-up, retrying the same reference_id through dropped connections and
    503s, as a client must: (final status, attempts)."""
    body = {"user_id": 2, "amount": amount, "reference_id": reference_id}
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        try:
            reply = call(f"{base}/wallet/topup", "POST", body, headers, timeout=5)
            if reply.status in (200, 201):
                return reply.status, attempts
        except TRANSIENT:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{reference_id} never succeeded")


def ledger_verify(database_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url, "WALLET_ENV": "test"}
    return subprocess.run([str(BIN / "flask"), "--app", "wsgi", "ledger", "verify"], cwd=ROOT_DIR,
                          env=env, capture_output=True, text=True, timeout=60)


def wallet_and_references(database_url: str, prefix: str) -> tuple[int, int, int]:
    """(alice's GOLD balance, transactions with the prefix, distinct prefixed references)."""
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        balance = conn.execute("SELECT balance FROM accounts WHERE user_id = 2 AND kind = "
                               "'wallet' AND asset_code = 'GOLD'").fetchone()[0]
        count, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT reference_id) FROM transactions "
            "WHERE reference_id LIKE %s", (prefix + "%",)).fetchone()
    return balance, count, distinct


def test_metrics_add_up_over_the_workers_and_every_log_line_is_json(
        gunicorn, bearer, database_url, tmp_path):
    # Sync workers serve one request at a time: while one waits on a locked wallet, the next
    # request must go to the other worker, so both write metric files.
    server = gunicorn(GUNICORN_WORKER_CLASS="sync", GUNICORN_WORKERS="2",
                      DB_LOCK_TIMEOUT_MS="20000")
    topup = lambda user_id, ref: call(f"{server.base}/wallet/topup", "POST",  # noqa: E731
                                      {"user_id": user_id, "amount": 1, "reference_id": ref},
                                      bearer, timeout=20)
    with psycopg.connect(database_url.replace("+psycopg", "")) as holder:
        holder.execute(LOCK_ALICE)
        with ThreadPoolExecutor(1) as blocked:
            waiting = blocked.submit(topup, 2, "mp-blocked")
            wait_for_a_lock_wait(database_url)
            assert topup(3, "mp-other-worker").status == 201
            holder.rollback()
            assert waiting.result().status == 201
    for n in range(20):
        assert topup(3, f"mp-{n}").status == 201
    metric_dir = tmp_path / f"metrics-{server.port}"
    writers = {path.stem.rsplit("_", 1)[-1] for path in metric_dir.glob("counter_*.db")}
    assert len(writers) == 2
    assert metric_total(server.base, "wallet_ledger_transactions_total", kind="topup") == 22
    assert metric_total(server.base, "wallet_http_requests_total", route="/wallet/topup",
                        status="201") == 22
    assert metric_total(server.base, "wallet_db_pool_checked_out_connections") == 0
    lines = [json.loads(line) for line in server.log_lines() if line.strip()]
    requests = [line for line in lines if line.get("msg") == "request"]
    assert len([line for line in requests if line["path"] == "/wallet/topup"]) == 22
    assert {line["api_key"] for line in requests if "api_key" in line} == {"ops-writer"}


def kill_workers_mid_request(server, database_url: str) -> list[int]:
    """SIGKILL every worker while a top-up is in flight: one waits on alice's wallet, which
    this session holds locked. The dead worker's database session still commits that top-up
    once the lock is released; only its answer is lost."""
    with psycopg.connect(database_url.replace("+psycopg", "")) as holder:
        holder.execute(LOCK_ALICE)
        wait_for_a_lock_wait(database_url)
        victims = server.worker_pids()
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        holder.rollback()
    return victims


def test_workers_killed_mid_stream_lose_nothing_and_apply_nothing_twice(
        gunicorn, bearer, database_url):
    server = gunicorn(GUNICORN_WORKERS="2", GUNICORN_THREADS="4")
    balance_before, _, _ = wallet_and_references(database_url, "crash-")
    amounts = {f"crash-{n}": n + 1 for n in range(160)}
    done, killed = [], []

    def kill_at(count: int):
        while len(done) < count:
            time.sleep(0.005)
        killed.extend(kill_workers_mid_request(server, database_url))

    deadline = time.monotonic() + 60
    killers = [threading.Thread(target=kill_at, args=(n,)) for n in (30, 90)]
    for killer in killers:
        killer.start()
    with ThreadPoolExecutor(6) as pool:
        done.extend(pool.map(
            lambda ref: post_until_done(server.base, bearer, ref, amounts[ref], deadline),
            amounts))
    for killer in killers:
        killer.join(10)

    assert len(killed) == 4 and not set(killed) & set(server.worker_pids())
    assert len(server.worker_pids()) == 2, "the master replaced the killed workers"
    assert sum(attempts for _, attempts in done) > len(amounts), "the kills cut requests short"
    assert 200 in {status for status, _ in done}, "a retry found its top-up already committed"
    balance_after, count, distinct = wallet_and_references(database_url, "crash-")
    assert count == distinct == len(amounts), "every request took effect exactly once"
    assert balance_after - balance_before == sum(amounts.values())
    verify = ledger_verify(database_url)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_sigterm_lets_an_in_flight_request_finish(gunicorn, bearer, database_url):
    server = gunicorn(GUNICORN_WORKERS="1", GUNICORN_THREADS="2", DB_LOCK_TIMEOUT_MS="20000")
    replies = []
    body = {"user_id": 2, "amount": 3, "reference_id": "in-flight"}
    with psycopg.connect(database_url.replace("+psycopg", "")) as holder:
        holder.execute(LOCK_ALICE)
        request = threading.Thread(target=lambda: replies.append(
            call(f"{server.base}/wallet/topup", "POST", body, bearer, timeout=30)))
        request.start()
        wait_for_a_lock_wait(database_url)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1)
        assert server.process.poll() is None, "the master waits for the request in flight"
        holder.rollback()
    request.join(20)
    assert replies and replies[0].status == 201
    assert server.process.wait(timeout=20) == 0


def wait_for_a_lock_wait(database_url: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    with psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True) as conn:
        while time.monotonic() < deadline:
            if conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND wait_event_type = 'Lock'").fetchone()[0]:
                return
            time.sleep(0.05)
    raise TimeoutError("the request never reached the locked wallet")
