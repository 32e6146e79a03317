"""Two gunicorn instances behind HAProxy (Debian's package) run with deploy/haproxy.cfg: a
concurrent workload through it is exact, a dashboard session works on either instance, and an
instance stopped with SIGTERM drains: every request took effect exactly once."""
import csv
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from tests.ops.support import (
    HANG_GUARD_SECONDS,
    Dashboard,
    call,
    free_port,
    json_records,
    poll_until,
)
from tests.ops.test_gunicorn import (
    LOCK_ALICE,
    ledger_verify,
    metric_total,
    post_until_done,
    wallet_and_references,
)
from wallet_web import ROOT_DIR, operators

CONFIG = Path(ROOT_DIR) / "deploy" / "haproxy.cfg"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"  # Debian's package (.ci/run)
TEMPLATE = re.compile(r"^(\s*)server-template (\S+) \S+ app:8000 (.*)$", re.MULTILINE)
DNS_ONLY = re.compile(r"\s*\b(resolvers|init-addr) \S+")
OPERATOR_PASSWORD = "balancer-test-password"


def local_config(text: str, port: int, servers: list, stats_socket: Path) -> str:
    """deploy/haproxy.cfg with this test's port and instances, and a stats socket to watch
    the health checks; nothing else changed."""
    assert text.count("bind :8000") == 1 and TEMPLATE.search(text), "the deploy file's shape"
    text = text.replace("bind :8000", f"bind 127.0.0.1:{port}")
    text = text.replace("global\n", f"global\n    stats socket {stats_socket} level admin\n", 1)

    def servers_of(template: re.Match) -> str:
        indent, prefix, params = template.groups()
        params = DNS_ONLY.sub("", params)
        return "\n".join(f"{indent}server {prefix}{n} 127.0.0.1:{server.port} {params}"
                         for n, server in enumerate(servers, 1))

    return TEMPLATE.sub(servers_of, text)


class HAProxy:
    """`haproxy -db` in the foreground on a free port, its log in a file."""

    def __init__(self, servers: list, tmp_path: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.socket_path = tmp_path / "haproxy.sock"
        self.config_path = tmp_path / "haproxy.cfg"
        self.config_path.write_text(local_config(CONFIG.read_text(), self.port, servers,
                                                 self.socket_path))
        self.log_path = tmp_path / "haproxy.log"
        self.names = {server.port: f"app{n}" for n, server in enumerate(servers, 1)}
        self.process = None

    def start(self) -> "HAProxy":
        assert Path(HAPROXY).exists(), "haproxy missing: apt-get install haproxy (.ci/run does)"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen([HAPROXY, "-db", "-f", str(self.config_path)],
                                        stdout=self._log, stderr=subprocess.STDOUT)
        self.wait_for("ready", {"UP"}, *self.names.values())
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=HANG_GUARD_SECONDS)
        self._log.close()

    def command(self, line: str) -> str:
        """One command of HAProxy's runtime API, and its answer."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            return b"".join(iter(lambda: sock.recv(65536), b"")).decode()

    def take_out(self, server) -> None:
        """No new request for this instance, in either backend (as an orchestrator would)."""
        for backend in ("ready", "live"):
            self.command(f"set server {backend}/{self.name_of(server)} state maint")

    def states(self, backend: str) -> dict[str, str]:
        """Each server's health in a backend ("UP", "DOWN", "MAINT", ...), from `show stat`."""
        rows = csv.DictReader(self.command("show stat").lstrip("# ").splitlines())
        return {row["svname"]: row["status"].split()[0] for row in rows
                if row["pxname"] == backend and row["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_for(self, backend: str, states: set[str], *names: str) -> None:
        def reached():
            if self.process.poll() is not None:
                raise RuntimeError(f"haproxy exited:\n{self.log_path.read_text()}")
            try:
                current = self.states(backend)
            except OSError:  # the socket is not there yet
                return False
            return all(current.get(name) in states for name in names)

        poll_until(reached, f"{names} never {states} in {backend}", interval=0.2)

    def name_of(self, server) -> str:
        return self.names[server.port]


@pytest.fixture
def balanced(gunicorn, tmp_path):
    """Two instances on the test database and HAProxy in front: (haproxy, [a, b])."""
    servers = [gunicorn(GUNICORN_WORKERS="1", GUNICORN_THREADS="4", PROXY_FIX_X_FOR="1",
                        DB_LOCK_TIMEOUT_MS="20000") for _ in range(2)]
    balancer = HAProxy(servers, tmp_path).start()
    yield balancer, servers
    balancer.stop()


def served_requests(server, path: str) -> int:
    """How many requests for `path` the instance logged."""
    return sum(record.get("path") == path for record in json_records(server.log_lines()))


def test_a_concurrent_workload_through_the_balancer_is_exact_and_spread_over_both(
        balanced, bearer, make_user, database_url):
    balancer, servers = balanced
    users = [make_user(balance=100_000) for _ in range(4)]
    expected = dict.fromkeys(users, 100_000)
    bodies = []
    for n in range(120):
        payer, payee = users[n % 4], users[(n + 1) % 4]
        kind, amount = ("topup", "spend", "transfer")[n % 3], 1 + n % 50
        body = {"kind": kind, "user_id": payer, "asset": "GOLD", "amount": amount,
                "reference_id": f"lb-{n}"}
        if kind == "transfer":
            body["to_user_id"] = payee
            expected[payee] += amount
        expected[payer] += amount if kind == "topup" else -amount
        bodies.append(body)

    post = lambda body: call(f"{balancer.base}/api/v1/transactions", "POST", body, bearer)
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(post, bodies))

    assert [reply.status for reply in replies] == [201] * len(bodies), "no errors"

    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        balances = dict(conn.execute(
            "SELECT user_id, balance FROM accounts WHERE kind = 'wallet' AND asset_code = "
            "'GOLD' AND user_id = ANY(%s)", (users,)).fetchall())
        count, distinct = conn.execute("SELECT count(*), count(DISTINCT reference_id) FROM "
                                       "transactions WHERE reference_id LIKE 'lb-%'").fetchone()
    assert balances == expected
    assert count == distinct == len(bodies)
    served = [served_requests(server, "/api/v1/transactions") for server in servers]
    assert sum(served) == len(bodies) and min(served) > 0, served
    verify = ledger_verify(database_url)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # Each instance counts its own requests; through the balancer /metrics is not served.
    assert call(f"{balancer.base}/metrics").status == 404
    assert [metric_total(server.base, "wallet_http_requests_total",
                         route="/api/v1/transactions") for server in servers] == served


def test_a_dashboard_session_from_one_instance_works_on_the_other_and_ends_on_both(
        balanced, app):
    balancer, (first, second) = balanced
    operators.create_operator("lb-oncall", OPERATOR_PASSWORD, "viewer")
    dashboard = Dashboard(balancer.base)
    dashboard.log_in("lb-oncall", OPERATOR_PASSWORD)
    pages = {}
    for server in (first, second):  # the same cookie, straight to each instance
        dashboard.base = server.base
        status, _, pages[server.port] = dashboard.get("/")
        assert status == 200 and "lb-oncall" in pages[server.port]
    # A CSRF token of a page from the first instance is good on the second: logout there.
    token = re.search(r'name="csrf_token" value="([^"]+)"', pages[first.port]).group(1)
    form = urllib.parse.urlencode({"csrf_token": token}).encode()
    with dashboard.opener.open(f"{second.base}/logout", data=form, timeout=30) as response:
        assert response.status == 200 and response.url.endswith("/login")
    dashboard.base = first.base
    status, _, page = dashboard.get("/")
    assert status == 200 and "lb-oncall" not in page and 'name="password"' in page


@pytest.mark.parametrize("taken_out_first", [False, True], ids=["stopped", "taken-out-then-stopped"])
def test_an_instance_stopped_with_sigterm_drains_and_every_request_lands_exactly_once(
        balanced, bearer, database_url, taken_out_first):
    """Clients retry a failed top-up with its reference_id. Stopped while in the pool, the
    instance finishes what it was serving and a request queued in its backlog may fail (the
    retry lands once); taken out of the balancer first, no request fails at all."""
    balancer, (stopping, staying) = balanced
    balance_before, _, _ = wallet_and_references(database_url, "drain-")
    amounts = {f"drain-{n}": 1 + n % 9 for n in range(90)}
    deadline = time.monotonic() + 2 * HANG_GUARD_SECONDS
    with psycopg.connect(database_url.replace("+psycopg", "")) as holder, \
            ThreadPoolExecutor(6) as pool:
        holder.execute(LOCK_ALICE)  # the first requests wait on alice's wallet, in flight
        done = pool.map(lambda ref: post_until_done(balancer.base, bearer, ref, amounts[ref],
                                                    deadline), amounts)
        poll_until(lambda: requests_waiting_on_a_lock(database_url) >= 6,
                   "six requests never waited on the lock")
        if taken_out_first:
            balancer.take_out(stopping)
        stopping.process.send_signal(signal.SIGTERM)
        stopping.wait_for_log("Handling signal: term")
        assert stopping.process.poll() is None, "the instance waits for its requests in flight"
        holder.rollback()
        outcomes = list(done)
    assert stopping.process.wait(timeout=HANG_GUARD_SECONDS) == 0
    balancer.wait_for("ready", {"DOWN", "MAINT"}, balancer.name_of(stopping))

    balance_after, count, distinct = wallet_and_references(database_url, "drain-")
    assert count == distinct == len(amounts), "every request took effect exactly once"
    assert balance_after - balance_before == sum(amounts.values())
    drained = after_term(stopping, "/wallet/topup")
    assert drained and all(line["status"] == 200 for line in drained), "in flight, then done"
    if taken_out_first:
        assert [attempts for _, attempts in outcomes] == [1] * len(amounts), "none failed"
        assert served_requests(staying, "/wallet/topup") == len(amounts) - len(drained)
    verify = ledger_verify(database_url)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def requests_waiting_on_a_lock(database_url: str) -> int:
    with psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND wait_event_type = 'Lock'").fetchone()[0]


def after_term(server, path: str) -> list[dict]:
    """The instance's request lines for `path` logged after it received SIGTERM."""
    records = json_records(server.log_lines())
    term = next(n for n, record in enumerate(records) if record["msg"] == "Handling signal: term")
    return [record for record in records[term:] if record.get("path") == path]

