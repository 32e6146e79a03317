"""The embedded default under load (issue 16): SQLite, the project's gunicorn.conf.py, the mixed
scenario at 16 clients, conservation and `ledger verify` after it.

    .venv/bin/python bench/sqlite.py                      # 16 clients, 15 s, 1,000 users
    .venv/bin/python bench/sqlite.py --clients 4,16 --duration 10

A fresh SQLite file in a temporary directory each run: migrations, seed.py --users N, a write
key, and every user funded with one batch request per 500 users. Saves
bench/results/sqlite-<timestamp>.json.
"""
from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

from bench import database, load, scenarios  # noqa: E402
from bench.common import BENCH, BIN, ROOT, flask, run_app_command  # noqa: E402
from bench.cpu import CpuMeter  # noqa: E402
from bench.server import Gunicorn  # noqa: E402

OPENING_BALANCE = 1_000_000
FUNDING_BATCH = 500


def build(directory: Path, users: int) -> tuple[str, str]:
    """A migrated, seeded SQLite file and a write key."""
    url = f"sqlite:///{directory / 'bench.sqlite3'}"
    flask(url, "db", "upgrade")
    run_app_command(url, str(BIN / "python"), str(ROOT / "seed.py"), "--users", str(users))
    return url, database.create_write_key(url, "bench")


def path_of(url: str) -> str:
    return url.removeprefix("sqlite:///")


def synthetic_users(url: str) -> list[int]:
    with sqlite3.connect(path_of(url)) as conn:
        return [row[0] for row in conn.execute(
            "SELECT id FROM users WHERE username LIKE ? ORDER BY id",
            (database.SYNTHETIC_PREFIX + "%",))]


def gold_balances(url: str) -> dict[int, int]:
    with sqlite3.connect(path_of(url)) as conn:
        return dict(conn.execute("SELECT user_id, balance FROM accounts "
                                 "WHERE kind = 'wallet' AND asset_code = 'GOLD'"))


def committed(url: str, references: list[str]) -> set[str]:
    with sqlite3.connect(path_of(url)) as conn:
        return {ref for ref in references if conn.execute(
            "SELECT 1 FROM transactions WHERE reference_id = ?", (ref,)).fetchone()}


def fund(base: str, key: str, users: list[int]) -> None:
    async def send_all():
        headers = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            for start in range(0, len(users), FUNDING_BATCH):
                items = [{"kind": "topup", "user_id": user, "asset": "GOLD",
                          "amount": OPENING_BALANCE, "reference_id": f"bench-fund-{user}"}
                         for user in users[start:start + FUNDING_BATCH]]
                async with session.post(f"{base}/api/v1/transactions/batch",
                                        json={"items": items}) as response:
                    answer = await response.json()
                    if response.status != 200 or answer["counts"].get("posted") != len(items):
                        raise RuntimeError(f"funding failed: {response.status} {answer}")
    load.run_coroutine(send_all())


def level(bench: scenarios.Bench, clients: int, seconds: float, warmup: float) -> dict:
    before = gold_balances(bench.url)
    outcomes = [scenarios.run_load(bench, "mixed", clients, warmup)] if warmup else []
    with CpuMeter(bench.server.pid) as meter:
        measured = scenarios.run_load(bench, "mixed", clients, seconds)
    outcomes.append(measured)
    after = gold_balances(bench.url)
    figures = measured["summary"]
    figures["cpu_s"] = meter.report(loadgen=figures.pop("loadgen_cpu_s"))
    figures["conservation"] = scenarios.check_conservation(bench.url, before, after, outcomes,
                                                           committed)
    return figures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="16", help="client levels, e.g. 4,16")
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--users", type=int, default=1000)
    args = parser.parse_args(argv)
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results = {"run_id": run_id, "database": "sqlite", "levels": {}}
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as directory:
        url, key = build(Path(directory), args.users)
        with Gunicorn(url) as server:
            results["workers"] = len(server.worker_pids())
            users = synthetic_users(url)
            fund(server.base, key, users)
            bench = scenarios.open_bench(url, key, server, users)
            for clients in (int(n) for n in args.clients.split(",")):
                figures = level(bench, clients, args.duration, args.warmup)
                results["levels"][str(clients)] = figures
                print(f"sqlite mixed @{clients}: {figures['ok_per_s']:,.0f} ok/s, p99 "
                      f"{figures['latency_ms'].get('p99')} ms, {figures['errors']} errors, "
                      f"conserved {figures['conservation']['ok']}, gunicorn CPU "
                      f"{figures['cpu_s']['gunicorn']} s", flush=True)
        results["verify"] = database.verify(url)
    print(f"ledger verify: {results['verify']['ok']}")
    path = BENCH / "results" / f"sqlite-{run_id}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"saved {path.relative_to(ROOT)}")
    exact = results["verify"]["ok"] and all(
        figures["conservation"]["ok"] for figures in results["levels"].values())
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
