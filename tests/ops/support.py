"""Real processes for the operations tests: a gunicorn server and a small HTTP client."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from wallet_web import ROOT_DIR

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict

    def json(self):
        return json.loads(self.body)


def call(url: str, method: str = "GET", body: dict | None = None, headers: dict | None = None,
         timeout: float = 10) -> Reply:
    request = urllib.request.Request(
        url, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.read(), dict(error.headers))


def wait_until_ready(base: str, process: subprocess.Popen, log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()}")
        try:
            if call(f"{base}/healthz", timeout=1).status == 200:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"server did not start:\n{log.read_text()}")


class Gunicorn:
    """`gunicorn wsgi:app -c gunicorn.conf.py` on a free port, its log in a file."""

    def __init__(self, database_url: str, tmp_path: Path, **env: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"gunicorn-{self.port}.log"
        self.env = {**os.environ, "DATABASE_URL": database_url, "WALLET_ENV": "test",
                    "SECRET_KEY": "ops-test", "GUNICORN_BIND": f"127.0.0.1:{self.port}",
                    "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / f"metrics-{self.port}"), **env}
        self.process: subprocess.Popen | None = None

    def start(self) -> "Gunicorn":
        self._log = open(self.log_path, "wb")  # a file, so a chatty server never blocks
        self.process = subprocess.Popen(
            [str(BIN / "gunicorn"), "wsgi:app", "-c", "gunicorn.conf.py"], cwd=ROOT_DIR,
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        wait_until_ready(self.base, self.process, self.log_path)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def log_lines(self) -> list[str]:
        return self.log_path.read_text().splitlines()

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]


def app_with(database_url: str, **settings):
    """The test app on `database_url` with some settings changed (create_app reads them)."""
    from tests.conftest import _config_dict
    from wallet_web import create_app

    return create_app({**_config_dict(), "SQLALCHEMY_DATABASE_URI": database_url, **settings})


def scratch_name(name: str) -> str:
    """ops_<name>_<this suite's test database>: runs on different test databases (other
    sessions, CI) never share a scratch database."""
    from sqlalchemy.engine import make_url

    from tests.conftest import PG_URL

    return f"ops_{name}_{make_url(PG_URL).database}"[:63]


def admin_execute(statement: str) -> None:
    """Run one statement on the test server's `postgres` database (CREATE/DROP DATABASE)."""
    import psycopg

    from tests.conftest import PG_URL

    admin_url = PG_URL.replace("+psycopg", "").rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(statement)


def scratch_url(name: str) -> str:
    from tests.conftest import PG_URL

    return PG_URL.rsplit("/", 1)[0] + f"/{scratch_name(name)}"
