"""Read side at scale: p95 time of pages deep in the history, and the full CSV export.

Times are taken by one sequential client on a kept-alive connection (so they are the server's
time plus a local round trip); each figure is over `samples` requests after a short warm-up.
"""
from __future__ import annotations

import json
import random
import re
import threading
import time

import aiohttp
import psutil

from wallet_web.queries import encode_cursor  # the API's own cursor, to start deep in a list

from .common import connect, flask
from . import load
from .load import percentile

WARMUP = 5
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
OPERATOR, PASSWORD = "bench-viewer", "bench-viewer-password-1"


class Timer:
    def __init__(self):
        self.seconds: list[float] = []
        self.statuses: dict[int, int] = {}

    def add(self, status: int, seconds: float) -> None:
        self.seconds.append(seconds)
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1  # as JSON keeps them

    def figures(self) -> dict:
        ordered = sorted(self.seconds[WARMUP:] or self.seconds)
        ms = lambda share: round(percentile(ordered, share) * 1000, 2)  # noqa: E731
        return {"samples": len(ordered), "p50_ms": ms(0.5), "p95_ms": ms(0.95),
                "max_ms": round(ordered[-1] * 1000, 2), "statuses": self.statuses}


async def timed(session: aiohttp.ClientSession, url: str, timer: Timer,
                headers: dict | None = None) -> tuple[int, bytes]:
    started = time.perf_counter()
    async with session.get(url, allow_redirects=False, headers=headers) as response:
        body = await response.read()
    timer.add(response.status, time.perf_counter() - started)
    return response.status, body


async def each(session, urls: list[str], headers: dict | None = None) -> dict:
    timer = Timer()
    for url in urls:
        await timed(session, url, timer, headers)
    return timer.figures()


async def walk(session, first_url: str, samples: int) -> dict:
    """Follows next_cursor page after page from a deep starting point."""
    timer, url = Timer(), first_url
    for _ in range(samples + WARMUP):
        status, body = await timed(session, url, timer)
        cursor = json.loads(body).get("next_cursor") if status == 200 else None
        if not cursor:
            break
        url = re.sub(r"cursor=[^&]*", f"cursor={cursor}", url)
    return timer.figures()


def deep_points(url: str, whale_user: int) -> dict:
    """A posting id half-way into the whale's wallet history, a transaction id half-way into
    the ledger, and the whale's GOLD wallet."""
    with connect(url) as conn:
        wallet = conn.execute("SELECT id FROM accounts WHERE user_id = %s AND kind = 'wallet' "
                              "AND asset_code = 'GOLD'", (whale_user,)).fetchone()[0]
        posting, depth = conn.execute(
            "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY id), COUNT(*) / 2 FROM postings "
            "WHERE account_id = %s", (wallet,)).fetchone()
        tx, tx_depth = conn.execute("SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY id), "
                                    "COUNT(*) / 2 FROM transactions").fetchone()
    return {"wallet": wallet, "posting": posting, "posting_depth": depth,
            "transaction": tx, "transaction_depth": tx_depth}


async def api_pages(base: str, key: str, users: list[int], deep: dict, samples: int) -> dict:
    picks = random.Random(7).choices(users, k=samples + WARMUP)
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        return {
            "api_user": await each(session, [f"{base}/api/v1/users/{u}" for u in picks]),
            "balance": await each(session, [f"{base}/wallet/{u}/balance" for u in picks]),
            "api_account_postings_deep": await walk(
                session, f"{base}/api/v1/accounts/{deep['wallet']}/postings?limit=50&cursor="
                         f"{encode_cursor(deep['posting'])}", samples),
            "api_transactions_deep": await walk(
                session, f"{base}/api/v1/transactions?limit=50&cursor="
                         f"{encode_cursor(deep['transaction'])}", samples),
        }


def create_operator(url: str) -> str | None:
    """An admin for the dashboard (every page is theirs to see); None, or the reason when the
    dashboard has no operators."""
    try:
        flask(url, "operators", "create", OPERATOR, "--role", "admin", stdin=PASSWORD + "\n")
        return None
    except RuntimeError as error:
        return str(error).strip().splitlines()[-1]


def dashboard_urls(base: str, picks: list[int], deep: dict) -> dict[str, list[str]]:
    """Every page of the dashboard that lists or shows data (issue 15: p95 <= 50 ms each), the
    user pages for random users, the ledger deep in its history."""
    count = len(picks)
    same = lambda path: [f"{base}{path}"] * count  # noqa: E731
    transactions = random.Random(13).choices(range(1, deep["transaction"] * 2), k=count)
    return {
        "dashboard_overview": same("/"),
        "dashboard_users_list": same("/users"),
        "dashboard_user_page": [f"{base}/users/{u}" for u in picks],
        "dashboard_user_all_assets": [f"{base}/users/{u}?asset=all" for u in picks],
        "dashboard_explain_balance": [f"{base}/users/{u}/explain" for u in picks],
        "dashboard_ledger": same("/ledger"),
        "dashboard_ledger_deep": same(f"/ledger?cursor={encode_cursor(deep['transaction'])}"),
        "dashboard_ledger_search": [f"{base}/ledger?q=bench-{n:x}" for n in range(count)],
        "dashboard_transaction": [f"{base}/ledger/{tx}" for tx in transactions],
        "dashboard_audit": same("/audit"),
        "dashboard_approvals": same("/approvals"),
        "dashboard_bulk": same("/bulk"),
        "dashboard_admin_operators": same("/admin/operators"),
        "dashboard_admin_api_keys": same("/admin/api-keys"),
        "dashboard_admin_policies": same("/admin/policies"),
        "dashboard_admin_webhooks": same("/admin/webhooks"),
    }


async def dashboard_pages(base: str, users: list[int], deep: dict, samples: int) -> dict:
    picks = random.Random(11).choices(users, k=samples + WARMUP)
    jar = aiohttp.CookieJar(unsafe=True)  # the session cookie on 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        note = await _login(session, base)
        if note:
            return {"skipped": note}
        figures = {name: await each(session, urls)
                   for name, urls in dashboard_urls(base, picks, deep).items()}
        lookups = [f"{base}/users?q={term}" for term in lookup_terms(picks)]
        figures["dashboard_lookup"] = await each(session, lookups, {"HX-Request": "true"})
        return figures


def lookup_terms(picks: list[int]) -> list[str]:
    """What an agent types: a user's name prefix, a reference prefix, an amount on a date."""
    today = time.strftime("%Y-%m-%d", time.gmtime())
    kinds = (lambda u: f"load-{u % 1000}", lambda u: f"bench-{u % 16:x}",
             lambda u: f"{u % 1000}%20{today}")
    return [kinds[n % 3](user) for n, user in enumerate(picks)]


async def _login(session, base: str) -> str | None:
    async with session.get(f"{base}/login") as response:
        page = await response.text()
        if response.status != 200:
            return f"GET /login answered {response.status}: no dashboard"
    token = CSRF.search(page)
    if token is None:
        return "no CSRF token on /login"
    form = {"username": OPERATOR, "password": PASSWORD, "csrf_token": token.group(1)}
    async with session.post(f"{base}/login", data=form, allow_redirects=False) as response:
        return None if response.status in (302, 303) else f"login answered {response.status}"


class RssWatch:
    """Peak RSS growth of each gunicorn worker while a download runs."""

    def __init__(self, pids: list[int]):
        self.processes = [psutil.Process(pid) for pid in pids]
        self.baseline = {p.pid: p.memory_info().rss for p in self.processes}
        self.peak = dict(self.baseline)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self.stopped.wait(0.05):
            for process in self.processes:
                try:
                    self.peak[process.pid] = max(self.peak[process.pid], process.memory_info().rss)
                except psutil.Error:
                    pass

    def cpu_seconds(self) -> float:
        return sum(p.cpu_times().user + p.cpu_times().system for p in self.processes)

    def growth_mb(self) -> float:
        return round(max(self.peak[p] - self.baseline[p] for p in self.baseline) / 2**20, 1)


async def csv_export(base: str, key: str, worker_pids: list[int]) -> dict:
    watch = RssWatch(worker_pids)
    cpu_before = watch.cpu_seconds()
    watch.thread.start()
    lines = size = 0
    started = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=1800)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"},
                                     timeout=timeout) as session:
        async with session.get(f"{base}/api/v1/transactions.csv") as response:
            status = response.status
            async for chunk in response.content.iter_chunked(1 << 16):
                lines += chunk.count(b"\n")
                size += len(chunk)
    seconds = time.perf_counter() - started
    watch.stopped.set()
    watch.thread.join()
    worker_cpu = watch.cpu_seconds() - cpu_before
    rows = max(lines - 1, 0)  # minus the header
    return {"status": status, "rows": rows, "mb": round(size / 2**20, 1),
            "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
            "worker_cpu_s": round(worker_cpu, 2),
            "rows_per_worker_cpu_s": round(rows / worker_cpu) if worker_cpu else None,
            "worker_rss_growth_mb": watch.growth_mb(),
            "worker_rss_baseline_mb": round(max(watch.baseline.values()) / 2**20, 1)}


def measure(url: str, base: str, key: str, users: list[int], worker_pids: list[int],
            whale_user: int, samples: int) -> dict:
    deep = deep_points(url, whale_user)
    results = {"deep_points": deep, **load.run_coroutine(api_pages(base, key, users, deep, samples))}
    skipped = create_operator(url)
    dashboard = ({"skipped": f"operators create failed: {skipped}"} if skipped
                 else load.run_coroutine(dashboard_pages(base, users, deep, samples)))
    results["dashboard"] = dashboard
    results["csv_export"] = load.run_coroutine(csv_export(base, key, worker_pids))
    return results
