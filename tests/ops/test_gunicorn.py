"""The real server: gunicorn with gunicorn.conf.py, its workers, metrics across processes (and
a killed worker's dropped by child_exit), JSON log lines, workers killed with SIGKILL
mid-stream, and a graceful stop on SIGTERM."""
import http.client
import os
import signal
import subprocess
import threading
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.support import (
    BIN,
    HANG_GUARD_SECONDS,
    call,
    json_records,
    poll_until,
    replayed,
    took_effect,
)
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
                    deadline: float) -> tuple[bool, int]:
    """POST one top-up, retrying the same reference_id through dropped connections and
    503s, as a client must: (answered as a replay, attempts)."""
    body = {"user_id": 2, "amount": amount, "reference_id": reference_id}
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        try:
            reply = call(f"{base}/wallet/topup", "POST", body, headers)
            if reply.status in (200, 201):
                return replayed(reply), attempts
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


def test_metrics_add_up_over_the_workers(gunicorn, bearer, database_url, tmp_path):
    # Sync workers serve one request at a time: while one waits on a locked wallet, the next
    # request must go to the other worker, so both write metric files. (gunicorn turns "sync"
    # into gthread when threads > 1, hence one thread.)
    server = gunicorn(GUNICORN_WORKER_CLASS="sync", GUNICORN_WORKERS="2", GUNICORN_THREADS="1",
                      DB_LOCK_TIMEOUT_MS="20000")
    assert "Using worker: sync" in server.log_path.read_text()
    topup = lambda user_id, ref: call(f"{server.base}/wallet/topup", "POST",  # noqa: E731
                                      {"user_id": user_id, "amount": 1, "reference_id": ref},
                                      bearer)
    with psycopg.connect(database_url.replace("+psycopg", "")) as holder:
        holder.execute(LOCK_ALICE)
        with ThreadPoolExecutor(1) as blocked:
            waiting = blocked.submit(topup, 2, "mp-blocked")
            wait_for_a_lock_wait(database_url)
            assert took_effect(topup(3, "mp-other-worker"))
            holder.rollback()
            assert took_effect(waiting.result())
    for n in range(20):
        assert took_effect(topup(3, f"mp-{n}"))
    metric_dir = tmp_path / f"metrics-{server.port}"
    writers = {path.stem.rsplit("_", 1)[-1] for path in metric_dir.glob("counter_*.db")}
    assert len(writers) == 2
    assert metric_total(server.base, "wallet_ledger_transactions_total", kind="topup") == 22
    assert metric_total(server.base, "wallet_http_requests_total", route="/wallet/topup") == 22
    assert metric_total(server.base, "wallet_db_pool_checked_out_connections") == 0


def test_a_killed_workers_gauge_is_dropped_and_its_counters_stay(
        gunicorn, bearer, database_url, tmp_path):
    """child_exit: a worker killed while it held a database connection no longer counts in
    the pool gauge (summed over live workers), and what it counted before stays in the totals."""
    server = gunicorn(GUNICORN_WORKERS="1", GUNICORN_THREADS="2", DB_LOCK_TIMEOUT_MS="20000")
    for n in range(3):
        body = {"user_id": 3, "amount": 1, "reference_id": f"before-kill-{n}"}
        assert took_effect(call(f"{server.base}/wallet/topup", "POST", body, bearer))
    [victim] = server.worker_pids()
    body = {"user_id": 2, "amount": 1, "reference_id": "killed-in-flight"}
    with psycopg.connect(database_url.replace("+psycopg", "")) as holder, \
            ThreadPoolExecutor(1) as blocked:
        holder.execute(LOCK_ALICE)
        cut_short = blocked.submit(call, f"{server.base}/wallet/topup", "POST", body, bearer)
        wait_for_a_lock_wait(database_url)
        gauge = "wallet_db_pool_checked_out_connections"
        assert metric_total(server.base, gauge) >= 1, "the waiting request holds a connection"
        os.kill(victim, signal.SIGKILL)
        holder.rollback()
        assert isinstance(cut_short.exception(), TRANSIENT)
    server.wait_for_workers(1, gone={victim})
    assert call(f"{server.base}/healthz").status == 200
    assert metric_total(server.base, gauge) == 0
    metric_dir = tmp_path / f"metrics-{server.port}"
    assert not list(metric_dir.glob(f"gauge_live*_{victim}.db")), "child_exit removed them"
    assert (metric_dir / f"counter_{victim}.db").exists()
    assert metric_total(server.base, "wallet_ledger_transactions_total", kind="topup") == 3
    assert metric_total(server.base, "wallet_http_requests_total", route="/wallet/topup") == 3


def test_every_line_gunicorn_writes_is_json(gunicorn, bearer, database_url):
    """Start, requests (answered, refused, unknown, timed out), a worker killed and replaced,
    and the stop: gunicorn's own messages and the app's lines are all JSON objects."""
    server = gunicorn(GUNICORN_WORKERS="1", DB_LOCK_TIMEOUT_MS="300")
    body = {"user_id": 3, "amount": 1, "reference_id": "json-lines"}
    posted = call(f"{server.base}/wallet/topup", "POST", body, bearer)
    assert took_effect(posted)
    assert call(f"{server.base}/wallet/3/balance").status == 401
    assert call(f"{server.base}/no/such/page").status == 404
    with psycopg.connect(database_url.replace("+psycopg", "")) as holder:
        holder.execute(LOCK_ALICE)
        body = {"user_id": 2, "amount": 1, "reference_id": "json-lines-locked"}
        assert call(f"{server.base}/wallet/topup", "POST", body, bearer).status == 503
    [victim] = server.worker_pids()
    os.kill(victim, signal.SIGKILL)
    server.wait_for_workers(1, gone={victim})
    # Answered by the new worker: it has booted (a worker still booting may miss SIGTERM).
    assert call(f"{server.base}/healthz").status == 200
    server.stop()
    lines = json_records(server.log_lines())
    assert all({"ts", "level", "logger", "msg"} <= line.keys() for line in lines)
    assert {"gunicorn.error", "wallet_web.access", "wallet_web.resilience"} <= {
        line["logger"] for line in lines}, "the test saw every kind of line"
    assert any(str(victim) in line["msg"] and line["level"] == "ERROR" for line in lines)
    assert any(line["msg"] == "Shutting down: Master" for line in lines)
    movements = [line for line in lines if line.get("path") == "/wallet/topup"]
    assert [(line["status"], line["api_key"]) for line in movements] == [
        (posted.status, "ops-writer"), (503, "ops-writer")], "one line per request, naming the key"


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
        poll_until(lambda: len(done) >= count, f"{count} top-ups never completed",
                   interval=0.005)
        killed.extend(kill_workers_mid_request(server, database_url))

    deadline = time.monotonic() + 2 * HANG_GUARD_SECONDS
    killers = [threading.Thread(target=kill_at, args=(n,)) for n in (30, 90)]
    for killer in killers:
        killer.start()
    with ThreadPoolExecutor(6) as pool:
        done.extend(pool.map(
            lambda ref: post_until_done(server.base, bearer, ref, amounts[ref], deadline),
            amounts))
    for killer in killers:
        killer.join(HANG_GUARD_SECONDS)

    assert len(killed) == 4
    server.wait_for_workers(2, gone=set(killed))  # the master replaced the killed workers
    assert sum(attempts for _, attempts in done) > len(amounts), "the kills cut requests short"
    assert any(was_replay for was_replay, _ in done), "a retry found its top-up committed"
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
        server.wait_for_log("Handling signal: term")
        assert server.process.poll() is None, "the master waits for the request in flight"
        holder.rollback()
    request.join(HANG_GUARD_SECONDS)
    assert replies and took_effect(replies[0])
    assert server.process.wait(timeout=HANG_GUARD_SECONDS) == 0


def wait_for_a_lock_wait(database_url: str) -> None:
    with psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True) as conn:
        poll_until(lambda: conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'").fetchone()[0],
            "the request never reached the locked wallet")
