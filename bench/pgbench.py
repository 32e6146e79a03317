"""The database's own limit for the same transfer: pgbench running bench/transfer.sql."""
from __future__ import annotations

import re
import subprocess

from .common import BENCH, connect, database_name, libpq_url
from .cpu import CpuMeter, children_cpu

WALLETS = """
    CREATE SCHEMA IF NOT EXISTS bench;
    DROP TABLE IF EXISTS bench.wallets;
    CREATE TABLE bench.wallets AS
        SELECT row_number() OVER (ORDER BY a.id) AS n, a.id AS account_id
        FROM accounts a JOIN users u ON u.id = a.user_id
        WHERE a.kind = 'wallet' AND a.asset_code = 'GOLD' AND u.username LIKE 'load-%%';
    ALTER TABLE bench.wallets ADD PRIMARY KEY (n);
    ANALYZE bench.wallets"""


def prepare(url: str) -> tuple[int, int]:
    """bench.wallets (n -> GOLD wallet id of synthetic user n); (users, GOLD Treasury id)."""
    with connect(url) as conn:
        conn.execute(WALLETS)
        users = conn.execute("SELECT COUNT(*) FROM bench.wallets").fetchone()[0]
        treasury = conn.execute("SELECT id FROM accounts WHERE kind = 'treasury' "
                                "AND asset_code = 'GOLD'").fetchone()[0]
    return users, treasury


def run(url: str, gunicorn_pid: int, clients: int = 8, threads: int = 2, seconds: int = 10) -> dict:
    users, treasury = prepare(url)
    command = ["pgbench", "-n", "-M", "prepared", "-f", str(BENCH / "transfer.sql"),
               "-c", str(clients), "-j", str(threads), "-T", str(seconds),
               "-D", f"users={users}", "-D", f"treasury={treasury}", libpq_url(url)]
    children_before = children_cpu()
    with CpuMeter(gunicorn_pid, database_name(url)) as meter:
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    client_cpu = children_cpu() - children_before
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{done.stdout}\n{done.stderr}")
    return {"command": " ".join(command[:-1]) + " <url>", "clients": clients,
            "tps": _number(r"tps = ([\d.]+) \(without initial", done.stdout),
            "latency_ms": _number(r"latency average = ([\d.]+) ms", done.stdout),
            "failed": _number(r"number of failed transactions: (\d+)", done.stdout) or 0,
            "cpu_s": meter.report(pgbench=client_cpu)} | _per_transfer(meter, done.stdout)


def _per_transfer(meter: CpuMeter, output: str) -> dict:
    transfers = _number(r"number of transactions actually processed: (\d+)", output) or 0
    return {"transfers": int(transfers),
            "postgres_cpu_ms_per_transfer": round(meter.used["postgres"] * 1000 / max(transfers, 1), 3)}


def _number(pattern: str, text: str) -> float | None:
    found = re.search(pattern, text)
    return float(found.group(1)) if found else None
