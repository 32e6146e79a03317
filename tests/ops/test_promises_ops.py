"""Operations promises of docs/operations.md that need a process, a database or a signal: the
documented defaults, the log level, the timeouts of the CLI, the cost of /readyz, the 503 log
line and page, gunicorn's worker timeout and SIGTERM, the metrics directory, and a backup taken
while the service writes."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from itertools import count
from pathlib import Path

import psycopg
from sqlalchemy import event

from tests.ops.support import (
    BIN,
    HANG_GUARD_SECONDS,
    app_with,
    call,
    poll_until,
    took_effect,
)
from tests.ops.test_backup_restore import libpq
from tests.ops.test_gunicorn import (
    LOCK_ALICE,
    TRANSIENT,
    ledger_verify,
    wait_for_a_lock_wait,
)
from tests.ops.test_resilience import down_app, ops_app, wallet_row_locked  # noqa: F401
from wallet_web import ROOT_DIR, ledger
from wallet_web.extensions import db
from wallet_web.observability import configure_logging

ROOT = Path(ROOT_DIR)
CLEAN_ENV = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}


# ------------------------------------------------------------ documented defaults


def documented_defaults() -> dict[str, str]:
    """NAME -> default of the rows of docs/operations.md's configuration table whose default is
    a plain value (`10`, or `10`, `5` for a row naming two variables)."""
    text = (ROOT / "docs" / "operations.md").read_text()
    table = text.split("## Configuration (environment variables)", 1)[1].split("\n## ", 1)[0]
    defaults = {}
    for row in re.findall(r"^\| (.+?) \| (.+?) \|", table, re.M):
        names = re.findall(r"`([A-Z_]+)`", row[0])
        values = re.findall(r"`([^`]+)`", row[1])
        if names and re.fullmatch(r"(`[^`]+`(, )?)+", row[1]) and len(values) == len(names):
            defaults.update(zip(names, values))
    return defaults


def run_clean(code: str) -> dict:
    """What `code` prints as JSON, run from the repository in an environment without any of
    the service's variables."""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=CLEAN_ENV,
                            capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


APP_DEFAULTS = """
import json
from wallet_web import create_app
config = create_app().config
engine = config["SQLALCHEMY_ENGINE_OPTIONS"]
print(json.dumps({**{key: config[key] for key in config if key.isupper() and
                     isinstance(config[key], (int, float, str))},
                  "DB_POOL_SIZE": engine["pool_size"], "DB_MAX_OVERFLOW": engine["max_overflow"],
                  "DB_POOL_TIMEOUT_SECONDS": engine["pool_timeout"]}))
"""
GUNICORN_DEFAULTS = """
import json, os, runpy, shutil
conf = runpy.run_path("gunicorn.conf.py")
metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
shutil.rmtree(metrics_dir)
print(json.dumps({"bind": conf["bind"], "GUNICORN_WORKER_CLASS": conf["worker_class"],
                  "GUNICORN_WORKERS": conf["workers"], "GUNICORN_THREADS": conf["threads"],
                  "GUNICORN_TIMEOUT": conf["timeout"],
                  "GUNICORN_GRACEFUL_TIMEOUT": conf["graceful_timeout"],
                  "GUNICORN_KEEPALIVE": conf["keepalive"], "GUNICORN_BACKLOG": conf["backlog"],
                  "LOG_LEVEL": conf["loglevel"], "metrics_dir": metrics_dir}))
"""


def same(documented: str, actual) -> bool:
    if isinstance(actual, str):
        return documented.lower() == actual.lower()
    return float(documented.replace(",", "")) == actual


def test_every_documented_default_is_the_one_used_when_the_variable_is_absent():
    documented = documented_defaults()
    app = run_clean(APP_DEFAULTS)
    conf = run_clean(GUNICORN_DEFAULTS)
    actual = {**{name: app[name] for name in documented if name in app},
              **{name: conf[name] for name in documented if name in conf}}
    entrypoint = (ROOT / "bin" / "entrypoint").read_text()
    actual["DB_WAIT_SECONDS"] = float(
        re.search(r"""environ\.get\("DB_WAIT_SECONDS", "(\d+)"\)""", entrypoint).group(1))
    port = int(conf["bind"].rsplit(":", 1)[1])
    actual["PORT"] = port
    actual["GUNICORN_BIND"] = conf["bind"].replace(f":{port}", ":$PORT")
    wrong = {name: (documented[name], actual.get(name)) for name in documented
             if name not in actual or not same(documented[name], actual[name])}
    assert not wrong, "documented default != actual default"
    assert len(actual) >= 25, sorted(actual)  # the table was parsed, not skipped
    assert conf["metrics_dir"].startswith("/tmp/")  # "a temp dir (gunicorn)"


def test_the_defaults_quoted_elsewhere_agree_with_the_table():
    documented = documented_defaults()
    quoted = []
    for name in ("README.md", "docs/security.md", "docs/operations.md"):
        quoted += re.findall(r"`([A-Z_]+)` \(?(?:default )?(\d[\d,]*)\b", (ROOT / name).read_text())
    quoted = [(name, value) for name, value in quoted if name in documented]
    assert len(quoted) >= 4
    assert [(name, value) for name, value in quoted if not same(documented[name], float(
        value.replace(",", "")))] == []


# ------------------------------------------------------------ logs


def test_log_level_warning_drops_the_request_lines_and_keeps_the_warnings(
        database_url, log_lines, write_key):
    app = app_with(database_url, LOG_LEVEL="WARNING", DB_LOCK_TIMEOUT_MS=300)
    try:
        client = app.test_client()
        headers = {"Authorization": f"Bearer {write_key}"}
        assert client.get("/healthz").status_code == 200
        body = {"user_id": 2, "amount": 1, "reference_id": "quiet-topup"}
        assert took_effect(client.post("/wallet/topup", json=body, headers=headers))
        with wallet_row_locked(database_url, 2):
            locked = {"user_id": 2, "amount": 1, "reference_id": "quiet-locked"}
            assert client.post("/wallet/topup", json=locked, headers=headers).status_code == 503
        lines = log_lines()
        assert [line["msg"] for line in lines] == ["database trouble"]
    finally:
        configure_logging("INFO")
        with app.app_context():
            db.engine.dispose()


def test_the_503_warning_says_database_trouble_and_names_the_drivers_error_class(
        ops_app, database_url, log_lines):  # noqa: F811
    client, headers = ops_app(DB_LOCK_TIMEOUT_MS=300)
    with wallet_row_locked(database_url, 2):
        response = client.post("/wallet/topup", headers=headers,
                               json={"user_id": 2, "amount": 5, "reference_id": "warned"})
    assert response.status_code == 503
    warning = next(line for line in log_lines() if line["level"] == "WARNING")
    assert warning["msg"] == "database trouble"
    assert warning["error"] == psycopg.errors.LockNotAvailable.__name__


# ------------------------------------------------------------ timeouts, probes, 503 page


def test_the_statement_timeout_also_ends_a_cli_command_stuck_on_a_lock(database_url):
    env = {**os.environ, "DATABASE_URL": database_url, "WALLET_ENV": "test",
           "DB_STATEMENT_TIMEOUT_MS": "200", "DB_LOCK_TIMEOUT_MS": "0"}  # only the statement one
    verify = [str(BIN / "flask"), "--app", "wsgi", "ledger", "verify"]
    with psycopg.connect(libpq(database_url)) as holder:
        holder.execute("LOCK TABLE postings IN ACCESS EXCLUSIVE MODE")
        stuck = subprocess.run(verify, cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=HANG_GUARD_SECONDS)
        holder.rollback()
    assert stuck.returncode != 0
    assert "statement timeout" in stuck.stdout + stuck.stderr
    passed = subprocess.run(verify, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=HANG_GUARD_SECONDS)
    assert passed.returncode == 0, passed.stdout + passed.stderr


def test_readyz_costs_one_select(app, database_url):
    ready = app_with(database_url, DB_PING_IDLE_SECONDS=3600)
    statements = []
    with ready.app_context():
        event.listen(db.engine, "before_cursor_execute",
                     lambda _conn, _cursor, statement, *_: statements.append(statement))
    client = ready.test_client()
    for _ in range(3):
        statements.clear()
        assert client.get("/readyz").status_code == 200
        assert len(statements) == 1 and statements[0].lstrip().upper().startswith("SELECT")
    with ready.app_context():
        db.engine.dispose()


def test_the_dashboards_503_page_reloads_itself(down_app):  # noqa: F811
    client = down_app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = "1"
    response = client.get("/")
    assert response.status_code == 503
    page = response.get_data(as_text=True)
    # A meta refresh without a URL reloads the same page; no script is needed (nor allowed by
    # the dashboard's Content-Security-Policy).
    [delay] = re.findall(r'<meta http-equiv="refresh" content="(\d+)">', page)
    assert 1 <= int(delay) <= 60
    assert "<script" not in page


# ------------------------------------------------------------ gunicorn


def serves(base: str) -> bool:
    try:
        return call(f"{base}/healthz", timeout=5).status == 200
    except TRANSIENT:
        return False


def test_gunicorn_replaces_a_worker_that_stays_silent_for_the_timeout(gunicorn):
    server = gunicorn(GUNICORN_WORKER_CLASS="sync", GUNICORN_THREADS="1", GUNICORN_WORKERS="1",
                      GUNICORN_TIMEOUT="3")
    assert "Using worker: sync" in server.log_path.read_text()
    [silent] = server.worker_pids()
    os.kill(silent, signal.SIGSTOP)
    try:
        [replacement] = server.wait_for_workers(1, gone={silent})
        poll_until(lambda: serves(server.base), "the new worker never served", interval=0.2)
    finally:
        try:
            os.kill(silent, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert replacement != silent
    assert f"WORKER TIMEOUT (pid:{silent})" in server.log_path.read_text()


def refused_or_unserved(base: str) -> bool:
    """True once a new connection is refused, or accepted and never answered."""
    try:
        call(f"{base}/healthz", timeout=3)
    except TRANSIENT:
        return True
    return False


def test_after_sigterm_gunicorn_serves_no_new_connection_and_finishes_the_one_in_flight(
        gunicorn, bearer, database_url):
    server = gunicorn(GUNICORN_WORKERS="1", GUNICORN_THREADS="4", DB_LOCK_TIMEOUT_MS="90000",
                      GUNICORN_GRACEFUL_TIMEOUT="120")
    replies = []
    body = {"user_id": 2, "amount": 3, "reference_id": "in-flight-at-stop"}
    with psycopg.connect(libpq(database_url)) as holder:
        holder.execute(LOCK_ALICE)
        request = threading.Thread(target=lambda: replies.append(
            call(f"{server.base}/wallet/topup", "POST", body, bearer, timeout=HANG_GUARD_SECONDS)))
        request.start()
        wait_for_a_lock_wait(database_url)
        assert serves(server.base), "a second connection is served before SIGTERM"
        server.process.send_signal(signal.SIGTERM)
        server.wait_for_log("Handling signal: term")
        poll_until(lambda: refused_or_unserved(server.base),
                   "new connections were still served after SIGTERM", interval=0.2)
        assert server.process.poll() is None and request.is_alive(), "still in flight"
        holder.rollback()
    request.join(HANG_GUARD_SECONDS)
    assert replies and took_effect(replies[0])
    assert server.process.wait(timeout=HANG_GUARD_SECONDS) == 0


def test_a_stale_metrics_file_is_removed_when_gunicorn_starts(gunicorn, tmp_path):
    metrics_dir = tmp_path / "stale-metrics"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_999999.db"
    stale.write_bytes(b"left over by a previous run")
    server = gunicorn(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), GUNICORN_WORKERS="1")
    assert not stale.exists()
    assert call(f"{server.base}/metrics").status == 200


# ------------------------------------------------------------ backup while writing


def test_pg_dump_while_top_ups_run_restores_a_ledger_that_verifies(
        app, make_user, database_url, scratch_database, tmp_path):
    users = [make_user(balance=100) for _ in range(4)]
    stop = threading.Event()
    commits: list[float] = []  # when each top-up returned
    errors: list[BaseException] = []
    references = count()

    def write(user_id: int) -> None:
        try:
            with app.app_context():
                while not stop.is_set():
                    ledger.topup(user_id, "GOLD", 1, f"live-dump-{next(references)}")
                    commits.append(time.monotonic())
        except BaseException as error:  # noqa: BLE001  reported by the test below
            errors.append(error)

    writers = [threading.Thread(target=write, args=(user,)) for user in users]
    for writer in writers:
        writer.start()
    restored = None
    try:
        poll_until(lambda: len(commits) >= 20, "the writers never got going")
        for attempt in range(5):  # until a dump overlapped commits (nearly always the first)
            dump = tmp_path / f"live-{attempt}.dump"
            started = time.monotonic()
            subprocess.run(["pg_dump", "--format=custom", "--file", str(dump),
                            libpq(database_url)], check=True, timeout=HANG_GUARD_SECONDS)
            ended = time.monotonic()
            if sum(started < at < ended for at in commits) >= 2:
                restored = dump
                break
    finally:
        stop.set()
        for writer in writers:
            writer.join(HANG_GUARD_SECONDS)
    assert not errors, errors
    assert restored is not None, "no dump ran while top-ups committed"
    restored_url = scratch_database("live_restored")
    subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", "--dbname",
                    libpq(restored_url), str(restored)], check=True, timeout=HANG_GUARD_SECONDS)
    verify = ledger_verify(restored_url)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    with psycopg.connect(libpq(restored_url)) as conn:
        copied = conn.execute("SELECT count(*) FROM transactions WHERE reference_id LIKE "
                              "'live-dump-%'").fetchone()[0]
    assert 0 < copied < len(commits), "the copy holds the top-ups up to its snapshot"
