"""Where a request's CPU goes, per layer: py-spy samples every gunicorn worker while the load
generator drives one scenario, and each sample is charged to the layer of its innermost frame.

    .venv/bin/python bench/profile.py --scenario hot-treasury --clients 64 --duration 20
    .venv/bin/python bench/profile.py --ceiling          # the same against the ceiling app

Uses the bench database as bench/run.py left it (run that first; nothing is rebuilt) and
prints a Markdown table: layer, share of the workers' CPU samples, CPU ms per request. The
collapsed stacks are kept in bench/results/profile-<scenario>-<target>.txt for a closer look
(e.g. `grep wallet_web` or any flame-graph tool).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

from bench import ceiling, database, scenarios  # noqa: E402
from bench.common import BENCH, BIN, DEFAULT_URL  # noqa: E402
from bench.server import Gunicorn  # noqa: E402

SAMPLES_PER_S = 250
# (layer, what a frame's file path contains), first match wins: the innermost frame's layer.
LAYERS = (
    ("app: API auth, validation, routes", ("wallet_web/api/", "wallet_web/api_keys.py",
                                           "wallet_web/inputs.py")),
    ("app: ledger service", ("wallet_web/ledger.py", "wallet_web/accounts.py",
                             "wallet_web/kinds.py", "wallet_web/limits.py")),
    ("app: logs, metrics, request ids", ("wallet_web/observability.py", "wallet_web/jsonlog.py",
                                         "prometheus_client/")),
    ("app: other", ("wallet_web/",)),
    ("ceiling app", ("ceiling/app.py",)),
    ("pydantic", ("pydantic",)),
    ("SQLAlchemy", ("sqlalchemy/",)),
    ("psycopg (driver, pool)", ("psycopg",)),
    ("logging", ("logging/",)),
    ("json", ("json/",)),
    ("Flask", ("flask/", "flask_sqlalchemy/", "flask_login/", "flask_wtf/", "blinker/")),
    ("werkzeug (request, response, routing)", ("werkzeug/",)),
    ("gunicorn (HTTP parsing, workers)", ("gunicorn/",)),
    ("Python (threads, sockets, selectors)", ("threading.py", "socket.py", "selectors.py",
                                              "concurrent/", "queue.py", "ssl.py")),
)


def layer_of(frame: str) -> str:
    for name, needles in LAYERS:
        if any(needle in frame for needle in needles):
            return name
    return "other"


def charge(collapsed: str) -> Counter:
    """Samples per layer from py-spy's raw output: `frame;frame;...;innermost count`."""
    layers = Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            layers[layer_of(stack.rsplit(";", 1)[-1])] += int(count)
    return layers


def record(pids: list[int], seconds: float) -> list[subprocess.Popen]:
    """One py-spy per worker, started before the load; each writes collapsed stacks."""
    spies = []
    for pid in pids:
        out = tempfile.NamedTemporaryFile(prefix=f"profile-{pid}-", suffix=".txt", delete=False)
        spies.append(subprocess.Popen(
            [str(BIN / "py-spy"), "record", "--pid", str(pid), "--duration", str(int(seconds)),
             "--rate", str(SAMPLES_PER_S), "--format", "raw", "--gil", "--nonblocking", "--output",
             out.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        spies[-1].out = out.name
    return spies


def table(layers: Counter, requests: int) -> str:
    total = sum(layers.values()) or 1
    ms_per_sample = 1000 / SAMPLES_PER_S
    rows = ["| Layer | share of worker CPU | CPU ms per request |", "|---|---:|---:|"]
    for name, samples in layers.most_common():
        rows.append(f"| {name} | {samples / total:.1%} "
                    f"| {samples * ms_per_sample / max(requests, 1):.3f} |")
    rows.append(f"| **all** | 100% | {total * ms_per_sample / max(requests, 1):.3f} |")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="hot-treasury", choices=ceiling.SCENARIOS)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--ceiling", action="store_true", help="profile the ceiling app instead")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    args = parser.parse_args(argv)
    url = args.database_url
    key = database.create_write_key(url, "profile")
    users = database.synthetic_user_ids(url)
    server = ceiling.Ceiling(url, ceiling.DEFAULT_DIR, key) if args.ceiling else Gunicorn(url)
    with server:
        bench = scenarios.open_bench(url, key, server,
                                     ceiling.users_for(users) if args.ceiling else users)
        scenarios.run_load(bench, args.scenario, args.clients, 3)  # warm caches and pools
        spies = record(server.worker_pids(), args.duration)
        outcome = scenarios.run_load(bench, args.scenario, args.clients, args.duration)
        for spy in spies:
            spy.wait(timeout=args.duration + 60)
    collapsed = "\n".join(Path(spy.out).read_text() for spy in spies)
    target = "ceiling" if args.ceiling else "project"
    kept = BENCH / "results" / f"profile-{args.scenario}-{target}.txt"
    kept.write_text(collapsed)
    summary = outcome["summary"]
    print(f"{target}, {args.scenario} @{args.clients}: {summary['ok_per_s']:,.0f} ok/s, "
          f"{summary['requests']:,} requests, {summary['errors']} errors; stacks in {kept}")
    print(table(charge(collapsed), summary["requests"]))
    print(json.dumps({"ok_per_s": summary["ok_per_s"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
