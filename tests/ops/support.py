"""Real processes for the operations tests: a gunicorn server and small HTTP clients.

Every wait here polls for an event under a generous deadline: the tests share a 2-core box
with other work, so a deadline only stops a hang and never times a promise."""
from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wallet_web import ROOT_DIR

BIN = Path(sys.executable).parent
HANG_GUARD_SECONDS = 60  # a deadline that only a hang reaches, even on a busy box
REPLAYED = "Idempotent-Replayed"


class FlaskProcess:
    """A background command (`flask --app wsgi ...`) as its compose service runs it, on a
    database, its output in a log file."""

    def __init__(self, args: list[str], database_url: str, log_path, **env: str):
        self.log_path = log_path
        self._log = open(log_path, "ab")
        env = {**os.environ, "DATABASE_URL": database_url, "WALLET_ENV": "test",
               "SECRET_KEY": "ops-test", **env}
        self.process = subprocess.Popen([str(BIN / "flask"), "--app", "wsgi", *args],
                                        cwd=ROOT_DIR, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT)

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
        self._log.close()
        return self.process.returncode

    def log(self) -> str:
        return Path(self.log_path).read_text()


def flask_processes(args: list[str], log_path, **defaults: str):
    """A fixture body: start(url, **env) -> a running FlaskProcess; all SIGKILLed at the end."""
    started = []

    def start(url: str, **env: str) -> FlaskProcess:
        started.append(FlaskProcess(args, url, log_path, **{**defaults, **env}))
        return started[-1]

    yield start
    for process in started:
        process.stop(signal.SIGKILL)


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
         timeout: float = 30) -> Reply:
    request = urllib.request.Request(
        url, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.read(), dict(error.headers))


def status_of(reply) -> int:
    """The status of a Reply or of a Flask test response."""
    return getattr(reply, "status_code", None) or reply.status


def took_effect(reply) -> bool:
    """A movement this request posted: the seed-compatible API answers it 201 (or 200, as the
    original service did), and never with Idempotent-Replayed."""
    return status_of(reply) in (200, 201) and reply.headers.get(REPLAYED) != "true"


def replayed(reply) -> bool:
    """A movement answered with the stored transaction of its reference_id."""
    return status_of(reply) == 200 and reply.headers.get(REPLAYED) == "true"


def json_records(lines: list[str]) -> list[dict]:
    """Each non-empty line as the JSON object it must be."""
    records = []
    for line in filter(str.strip, lines):
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
        assert isinstance(record, dict), f"not a JSON object: {line!r}"
        records.append(record)
    return records


def poll_until(condition: Callable[[], object], what: str,
               seconds: float = HANG_GUARD_SECONDS, interval: float = 0.05):
    """condition()'s first truthy value; TimeoutError(what) when the deadline passes first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(what)


def wait_until_ready(base: str, process: subprocess.Popen, log: Path,
                     seconds: float = HANG_GUARD_SECONDS) -> None:
    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()}")
        try:
            return call(f"{base}/healthz", timeout=5).status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    try:
        poll_until(answers, "server did not start", seconds, interval=0.2)
    except TimeoutError:
        raise TimeoutError(f"server did not start:\n{log.read_text()}") from None


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
        try:
            wait_until_ready(self.base, self.process, self.log_path)
        except BaseException:
            self.stop()  # a server that never got ready must not outlive the test
            raise
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
        """The master's children: live workers, and killed ones not yet reaped."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def wait_for_workers(self, count: int, gone: set[int] = frozenset()) -> list[int]:
        """Once `count` workers run and none of `gone` is among them (reaped and replaced)."""
        def replaced():
            pids = self.worker_pids()
            return pids if len(pids) == count and not gone & set(pids) else None

        return poll_until(replaced, f"the master did not get back to {count} workers")

    def wait_for_log(self, text: str) -> None:
        poll_until(lambda: text in self.log_path.read_text(), f"{text!r} never logged")


class Dashboard:
    """A browser-like client of the dashboard: a cookie jar, the login form with its CSRF
    token."""

    def __init__(self, base: str):
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))
        self.csrf_token = None

    def get(self, path: str) -> tuple[int, str, str]:
        try:
            with self.opener.open(self.base + path, timeout=30) as response:
                return response.status, response.headers["Content-Type"], response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers["Content-Type"], error.read().decode()

    def post_login(self, username: str, password: str) -> tuple[int, str]:
        """(status, final URL) of the login form posted with its CSRF token."""
        _, _, page = self.get("/login")
        tag = re.search(r'<input[^>]*name="csrf_token"[^>]*>', page).group(0)
        self.csrf_token = re.search(r'value="([^"]+)"', tag).group(1)
        form = urllib.parse.urlencode({"csrf_token": self.csrf_token, "username": username,
                                       "password": password}).encode()
        try:
            with self.opener.open(self.base + "/login", data=form, timeout=30) as response:
                return response.status, response.url
        except urllib.error.HTTPError as error:
            return error.code, error.url

    def log_in(self, username: str, password: str) -> None:
        status, url = self.post_login(username, password)
        assert (status, url.rstrip("/")) == (200, self.base), "redirected to the overview"


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
