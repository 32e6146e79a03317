"""The benchmark suite in one command (see bench/README.md).

    .venv/bin/python bench/run.py                 # full: 1, 8, 32, 64 clients x 15 s, 1M postings
    .venv/bin/python bench/run.py --quick         # smoke: ~2 minutes
    .venv/bin/python bench/run.py --scenarios mixed --clients 8,64 --duration 10

It rebuilds the bench database (its schema is dropped), seeds it, starts gunicorn, drives the
write scenarios from a separate process, checks conservation after each level, measures the
database's own limit with pgbench, fills the history and measures the read side; then runs
`ledger verify`, saves bench/results/<timestamp>.json and rewrites the table in bench/README.md.
Exit status 1 when an exactness check fails (conservation, ledger verify, the drain check);
performance targets are reported, not enforced.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

from bench import ceiling, database, fill_history, pgbench, readside, report, scenarios  # noqa: E402
from bench.common import BENCH, DEFAULT_URL, ROOT, connect  # noqa: E402
from bench.load import BATCH_SIZE, SCENARIOS  # noqa: E402
from bench.server import Gunicorn  # noqa: E402
from bench.targets import evaluate  # noqa: E402

OPENING_BALANCE = 1_000_000  # every user's GOLD, so that the mixed scenario's spends are covered
WHALE_USER = 2  # the first synthetic user (the bench seeds as production: no alice): a tenth of
# the generated history, for deep per-account pages
# batch runs only when named: it has its own client levels, and the 8-to-64-clients target
# (bench/targets.py) reads every scenario of a run at 8 and 64 clients.
DEFAULT_SCENARIOS = tuple(name for name in SCENARIOS if name != "batch")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short smoke run (~2 minutes)")
    parser.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                        help=f"of {', '.join(SCENARIOS)} (default: all but batch)")
    parser.add_argument("--clients", help="client levels, e.g. 1,8,32,64")
    parser.add_argument("--batch-clients", default="4",
                        help="client levels of the batch scenario (default 4)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help=f"items per request of the batch scenario (default {BATCH_SIZE})")
    parser.add_argument("--duration", type=float, help="seconds per level")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up before each level")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--postings", type=int,
                        help="postings in the ledger for the read side (0: no read side)")
    parser.add_argument("--samples", type=int, help="requests per read-side figure")
    parser.add_argument("--pgbench-seconds", type=int, help="0: no pgbench")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--no-gunicorn-conf", action="store_true",
                        help="ignore gunicorn.conf.py: -k gthread -w 2 --threads 8")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite bench/README.md")
    parser.add_argument("--ceiling", type=Path, default=ceiling.DEFAULT_DIR,
                        help="the ceiling app's directory: after each level of "
                             f"{' and '.join(ceiling.SCENARIOS)}, the same level against it "
                             "(skipped when the directory is missing)")
    parser.add_argument("--no-ceiling", action="store_true", help="do not run the ceiling app")
    args = parser.parse_args(argv)
    quick = {"clients": "8,64", "duration": 4, "warmup": 1, "postings": 100_000, "samples": 100,
             "pgbench_seconds": 5}
    full = {"clients": "1,8,32,64", "duration": 15, "warmup": 3, "postings": 1_000_000,
            "samples": 300, "pgbench_seconds": 10}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.client_levels = [int(n) for n in args.clients.split(",")]
    args.batch_client_levels = [int(n) for n in args.batch_clients.split(",")]
    args.scenario_names = [name for name in args.scenarios.split(",") if name]
    unknown = set(args.scenario_names) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return args


def environment(url: str, server: str) -> dict:
    with connect(url) as conn:
        postgres = conn.execute("SHOW server_version").fetchone()[0]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return {"cpus": psutil.cpu_count(), "cpu_model": _cpu_model(), "postgres": postgres,
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "commit": commit + ("+dirty" if dirty else ""),
            "server": server, "loadavg_before": [round(x, 2) for x in os.getloadavg()]}


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def write_scenarios(bench: scenarios.Bench, args, results: dict,
                    stack: scenarios.Bench | None = None) -> None:
    """Each scenario's levels; with `stack` (the ceiling app), each level of the scenarios it
    speaks is run against it right after, so both meet the same neighbours on this box."""
    hot_user, drain_user = bench.users[0], bench.users[-1]
    for scenario in args.scenario_names:
        if scenario == "hot-wallet":
            scenarios.fund(bench, hot_user, scenarios.HOT_WALLET_FUNDING, f"bench-fund-{time.time()}")
        batch = scenario == "batch"
        for clients in args.batch_client_levels if batch else args.client_levels:
            level = scenarios.run_level(bench, scenario, clients, args.duration, args.warmup,
                                        hot_user if scenario == "hot-wallet" else None,
                                        args.batch_size if batch else None)
            results["scenarios"].setdefault(scenario, {})[str(clients)] = level
            movements = f"{level['movements_per_s']:,.0f} movements/s, " if batch else ""
            _progress(f"{scenario} @{clients}: {level['ok_per_s']:,.0f} ok/s, {movements}"
                      f"p99 {level['latency_ms'].get('p99')} ms, {level['errors']} errors, "
                      f"conserved {level['conservation']['ok']}")
            if stack is not None and scenario in ceiling.SCENARIOS:
                ceiling_level(stack, scenario, clients, args, results)
    if "hot-wallet" in args.scenario_names:
        results["drain"] = scenarios.drain(bench, drain_user)
        _progress(f"drain: {results['drain']}")


def ceiling_level(stack: scenarios.Bench, scenario: str, clients: int, args,
                  results: dict) -> None:
    level, _ = scenarios.measure_level(stack, scenario, clients, args.duration, args.warmup)
    results["ceiling"].setdefault(scenario, {})[str(clients)] = level
    ratio = ceiling.ratio(results["scenarios"][scenario][str(clients)], level)
    results["ceiling_ratio"].setdefault(scenario, {})[str(clients)] = ratio
    _progress(f"ceiling {scenario} @{clients}: {level['ok_per_s']:,.0f} ok/s, p99 "
              f"{level['latency_ms'].get('p99')} ms, {level['errors']} errors; project/ceiling "
              f"{ratio}")


def database_limit(bench: scenarios.Bench, args, results: dict) -> None:
    results["pgbench"] = pgbench.run(bench.url, bench.server.pid, seconds=args.pgbench_seconds)
    treasury = results["scenarios"].get("hot-treasury", {})
    if treasury:
        clients = max(treasury, key=int)
        ratio = treasury[clients]["ok_per_s"] / results["pgbench"]["tps"]
        results["http_db_ratio"] = {"clients": int(clients), "ratio": round(ratio, 2)}
    _progress(f"pgbench: {results['pgbench']['tps']:,.0f} tps")


def read_side(bench: scenarios.Bench, args, results: dict) -> None:
    started = time.perf_counter()
    missing = args.postings - database.count_postings(bench.url)
    fill_history.fill_history(bench.url, max(missing, 0), WHALE_USER)
    database.analyze(bench.url)  # statistics of the filled history, as autovacuum would gather
    results["fill_seconds"] = round(time.perf_counter() - started, 1)
    results["postings_at_read"] = database.count_postings(bench.url)
    started = time.perf_counter()
    results["verify"]["after_fill"] = database.verify(bench.url)
    results["verify_seconds"] = round(time.perf_counter() - started, 1)
    _progress(f"history: {results['postings_at_read']:,} postings, verify "
              f"{results['verify']['after_fill']['ok']}")
    started = time.perf_counter()
    results["sweep_passes"] = database.sweep_until_done(bench.url)
    results["sweep_seconds"] = round(time.perf_counter() - started, 1)
    _progress(f"sweeper: {results['sweep_passes']} passes in {results['sweep_seconds']} s")
    results["read_side"] = readside.measure(bench.url, bench.server.base, bench.key, bench.users,
                                            bench.server.worker_pids(), WHALE_USER, args.samples)


def main(argv: list[str]) -> int:
    args = parse(argv)
    url = args.database_url
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    _progress(f"rebuilding {url.rsplit('/', 1)[-1]} with {args.users:,} users")
    key = database.rebuild(url, args.users)
    fill_history.fund_users(url, OPENING_BALANCE)
    database.analyze(url)
    users = database.synthetic_user_ids(url)
    results = {"run_id": run_id, "mode": "quick" if args.quick else "full", "scenarios": {},
               "verify": {}, "settings": {k: str(v) if isinstance(v, Path) else v
                            for k, v in vars(args).items() if k != "database_url"}}
    try:
        with Gunicorn(url, use_config=not args.no_gunicorn_conf) as server, \
                _ceiling(url, key, args) as stack_server:
            results["environment"] = environment(url, " ".join(server.command[1:]))
            results["environment"]["workers"] = len(server.worker_pids())
            bench = scenarios.open_bench(url, key, server, users)
            stack = None
            if stack_server is not None:
                stack = scenarios.open_bench(url, key, stack_server, ceiling.users_for(users))
                results.update(ceiling={}, ceiling_ratio={},
                               ceiling_users=len(stack.users))
            write_scenarios(bench, args, results, stack)
            if args.pgbench_seconds:
                database_limit(bench, args, results)
            results["verify"]["after_writes"] = database.verify(url)
            _progress(f"ledger verify after writes: {results['verify']['after_writes']['ok']}")
            if args.postings:
                read_side(bench, args, results)
    except BaseException as error:  # keep what was measured, then fail loudly
        results["aborted"] = repr(error)
        save(results)
        raise
    return finish(results, args)


def _ceiling(url: str, key: str, args):
    if args.no_ceiling or not args.ceiling.is_dir():
        return contextlib.nullcontext()
    return ceiling.Ceiling(url, args.ceiling, key, use_config=not args.no_gunicorn_conf)


def save(results: dict) -> Path:
    path = BENCH / "results" / f"{results['run_id']}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
    return path


def finish(results: dict, args) -> int:
    path = save(results)
    if not args.no_readme:
        report.update_readme(results)
    print(report.markdown(results))
    print(f"saved {path.relative_to(ROOT)}")
    exact = evaluate(results)["exact: conservation, ledger verify, 64 spends on a balance for 40"]
    return 0 if exact["result"] == "pass" else 1


def _progress(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
