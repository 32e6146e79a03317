"""One load level of a scenario: warm-up, measured run in a separate process, then the
conservation check against the database, and the CPU each process group used."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass

import aiohttp

from . import conservation, database, load
from .common import BENCH, BIN, ROOT, database_name
from .cpu import CpuMeter
from .server import Gunicorn

HOT_WALLET_FUNDING = 10**9  # spends of 1: lasts far longer than any run
DRAIN_REQUESTS, DRAIN_SUCCESSES = 64, 40


@dataclass
class Bench:
    url: str
    key: str
    server: Gunicorn
    users: list[int]
    users_file: str


def open_bench(url: str, key: str, server: Gunicorn, users: list[int]) -> Bench:
    handle, path = tempfile.mkstemp(prefix="bench-users-", suffix=".json")
    with os.fdopen(handle, "w") as file:
        json.dump(users, file)
    return Bench(url, key, server, users, path)


def run_load(bench: Bench, scenario: str, clients: int, seconds: float,
             hot_user: int | None = None, batch_size: int | None = None) -> dict:
    """bench/load.py in its own process; returns its outcome."""
    with tempfile.NamedTemporaryFile(prefix="bench-outcome-", suffix=".json") as out:
        command = [str(BIN / "python"), str(BENCH / "load.py"), "--base", bench.server.base,
                   "--scenario", scenario, "--clients", str(clients), "--duration", str(seconds),
                   "--users", bench.users_file, "--out", out.name]
        if hot_user is not None:
            command += ["--hot-user", str(hot_user)]
        if batch_size is not None:
            command += ["--batch-size", str(batch_size)]
        env = {**os.environ, "BENCH_API_KEY": bench.key}
        subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=seconds + 120)
        with open(out.name) as file:
            return json.load(file)


def run_level(bench: Bench, scenario: str, clients: int, seconds: float, warmup: float,
              hot_user: int | None = None, batch_size: int | None = None) -> dict:
    before = database.gold_balances(bench.url)
    figures, outcomes = measure_level(bench, scenario, clients, seconds, warmup, hot_user,
                                      batch_size)
    after = database.gold_balances(bench.url)
    figures["conservation"] = check_conservation(bench.url, before, after, outcomes)
    if hot_user is not None:
        figures["hot_wallet"] = hot_wallet_figures(bench.url, hot_user, before, after)
    return figures


def measure_level(bench: Bench, scenario: str, clients: int, seconds: float, warmup: float,
                  hot_user: int | None = None, batch_size: int | None = None) -> tuple[dict, list]:
    """Warm-up, then the measured run with the CPU of each process group: its figures, and
    the raw outcomes of both runs (for a conservation check)."""
    load_args = (hot_user, batch_size)
    outcomes = [run_load(bench, scenario, clients, warmup, *load_args)] if warmup > 0 else []
    with CpuMeter(bench.server.pid, database_name(bench.url)) as meter:
        measured = run_load(bench, scenario, clients, seconds, *load_args)
    outcomes.append(measured)
    figures = measured["summary"]
    figures["cpu_s"] = meter.report(loadgen=figures.pop("loadgen_cpu_s"))
    figures["cpu_ms_per_request"] = per_request(figures["cpu_s"], figures["requests"])
    if scenario == "batch":  # hundreds of movements per request
        figures["cpu_ms_per_movement"] = per_request(figures["cpu_s"], figures["movements"])
    return figures, outcomes


def per_request(cpu_s: dict, requests: int) -> dict:
    """CPU milliseconds per request (or per movement) of each group: comparable across runs
    on a noisy box."""
    return {group: round(cpu_s[group] * 1000 / max(requests, 1), 3)
            for group in ("gunicorn", "postgres", "loadgen")}


def check_conservation(url: str, before: dict, after: dict, outcomes: list[dict],
                       committed_references=database.committed_references) -> dict:
    """`committed_references(url, references)`: which of them the ledger holds (PostgreSQL's
    by default)."""
    moves: dict[str, int] = {}
    unknown: list[dict] = []
    for outcome in outcomes:
        for user, delta in outcome["moves"].items():
            moves[user] = moves.get(user, 0) + delta
        unknown += outcome["unknown"]
    committed = committed_references(url, [call["reference_id"] for call in unknown])
    expected = conservation.expected_moves(moves, unknown, committed)
    wrong = conservation.mismatches(before, after, expected)
    return {"ok": not wrong, "users_moved": len(expected), "unknown_outcomes": len(unknown),
            "mismatches": wrong[:10]}


def hot_wallet_figures(url: str, user: int, before: dict, after: dict) -> dict:
    lowest = database.lowest_balance_after(url, database.gold_wallet_of(url, user))
    return {"start": before[user], "end": after[user], "lowest_balance_after": lowest,
            "never_negative": after[user] >= 0 and (lowest is None or lowest >= 0)}


def fund(bench: Bench, user: int, amount: int, reference: str) -> None:
    async def topup():
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {bench.key}"}) as session:
            return await load.send(session, bench.server.base,
                                   load.Call("topup", user, amount, reference))
    status, code, _ = load.run_coroutine(topup())
    if status != load.POSTED["topup"]:
        raise RuntimeError(f"funding user {user} failed: {status} {code}")


def drain(bench: Bench, user: int) -> dict:
    """The original service's bug: N concurrent spends that the balance covers only partly.
    Exactly balance // amount must succeed, the rest be refused, and nothing go below zero."""
    balance = database.gold_balances(bench.url)[user]
    amount = balance // DRAIN_SUCCESSES
    calls = [load.Call("spend", user, amount, f"bench-drain-{os.urandom(8).hex()}")
             for _ in range(DRAIN_REQUESTS)]

    async def burst():
        connector = aiohttp.TCPConnector(limit=DRAIN_REQUESTS)
        headers = {"Authorization": f"Bearer {bench.key}"}
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            return await asyncio.gather(*(load.send(session, bench.server.base, c) for c in calls))

    answers = load.run_coroutine(burst())
    end = database.gold_balances(bench.url)[user]
    succeeded = sum(1 for status, _, _ in answers if status == load.POSTED["spend"])
    refused = sum(1 for _, code, _ in answers if code == "insufficient_funds")
    exact = succeeded == balance // amount and end == balance - succeeded * amount
    return {"requests": DRAIN_REQUESTS, "balance": balance, "amount": amount,
            "succeeded": succeeded, "refused": refused, "end": end,
            "ok": exact and refused == DRAIN_REQUESTS - succeeded and end >= 0}
