"""bin/entrypoint, the container's entrypoint, run as is against the local PostgreSQL:
wait for the database -> migrate -> seed -> exec gunicorn."""
import json
import os
import signal
import subprocess
from pathlib import Path

import psycopg

from tests.ops.support import (
    BIN,
    HANG_GUARD_SECONDS,
    admin_execute,
    call,
    free_port,
    poll_until,
    scratch_name,
    scratch_url,
    wait_until_ready,
)
from wallet_web import ROOT_DIR

ENTRYPOINT = Path(ROOT_DIR) / "bin" / "entrypoint"
DATABASE = scratch_name("entrypoint")


def entrypoint_env(tmp_path, port: int, **overrides) -> dict:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
           "DATABASE_URL": scratch_url("entrypoint"), "WALLET_ENV": "production",
           "SECRET_KEY": "entrypoint-test-secret-of-32-bytes", "METRICS_TOKEN": "scrape-secret",
           "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1",
           "GUNICORN_THREADS": "2", "DB_WAIT_SECONDS": "30",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    env.pop("TEST_DATABASE_URL", None)
    return {**env, **overrides}


def test_the_entrypoint_waits_for_the_database_then_migrates_seeds_and_serves(
        scratch_database, tmp_path):
    database_url = scratch_database("entrypoint", create=False)
    port = free_port()
    log_path = tmp_path / "entrypoint.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([str(ENTRYPOINT)], env=entrypoint_env(tmp_path, port),
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        poll_until(lambda: "waiting for the database" in log_path.read_text(),
                   "the entrypoint never said it waits")
        assert process.poll() is None, log_path.read_text()
        admin_execute(f'CREATE DATABASE "{DATABASE}"')  # the database comes up late
        base = f"http://127.0.0.1:{port}"
        wait_until_ready(base, process, log_path, seconds=2 * HANG_GUARD_SECONDS)
        ready = call(f"{base}/readyz")
        assert (ready.status, ready.json()["status"]) == (200, "ready")
        assert call(f"{base}/wallet/2/balance").status == 401
        assert call(f"{base}/metrics").status == 401
        scraper = {"Authorization": "Bearer scrape-secret"}
        assert call(f"{base}/metrics", headers=scraper).status == 200
    finally:
        process.send_signal(signal.SIGTERM)  # gunicorn itself: the script exec'd it
        assert process.wait(timeout=HANG_GUARD_SECONDS) == 0
    output = log_path.read_text()
    assert output.index("applying migrations") < output.index("seeding") < output.index(
        "starting gunicorn")
    assert "wk_" not in output, "no API key is printed in production"
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert {"entrypoint", "migrate", "seed", "gunicorn.error", "wallet_web.access"} <= {
        line["logger"] for line in lines}
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        assert conn.execute("SELECT username FROM users").fetchall() == [("system",)]
        assert conn.execute("SELECT count(*) FROM operators").fetchone() == (0,)


def test_the_entrypoint_gives_up_when_the_database_never_comes(tmp_path):
    """DB_WAIT_SECONDS=1 is honoured: the run ends well within the 30 s timeout below, where
    the default wait (60 s) would not."""
    env = entrypoint_env(tmp_path, free_port(), DB_WAIT_SECONDS="1",
                         DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x")
    result = subprocess.run([str(ENTRYPOINT)], env=env, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode != 0
    assert "database not reachable" in result.stderr


def test_the_entrypoint_needs_a_database_url(tmp_path):
    env = entrypoint_env(tmp_path, free_port())
    del env["DATABASE_URL"]
    result = subprocess.run([str(ENTRYPOINT)], env=env, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode != 0
    assert "DATABASE_URL must be set" in result.stderr
