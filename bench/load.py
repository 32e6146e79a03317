"""Closed-loop HTTP load generator: each client sends its next request when the last finished.

    python bench/load.py --base http://127.0.0.1:8000 --scenario mixed \
        --clients 64 --duration 15 --users users.json --out outcome.json   (key: $BENCH_API_KEY)

Scenarios: hot-treasury (top-ups spread over all users), hot-wallet (spends of 1 on one
wallet, --hot-user), mixed (45% top-up, 10% bonus, 35% spend, 10% balance reads),
hold-capture (a purchase: POST /api/v1/holds, then capture all of it: two requests),
batch (POST /api/v1/transactions/batch of --batch-size items, random users, half top-ups and
half spends, not atomic: each item is its own movement).
Every request (every batch item) has a fresh uuid reference_id. The outcome file holds the
latency figures, the movements posted and, for the conservation check, each user's sum of
posted movements, plus the references whose outcome is unknown (lost connection, 5xx; every
item of a batch whose answer was lost) so the caller can look them up.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sys
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import aiohttp

SCENARIOS = ("hot-treasury", "hot-wallet", "mixed", "hold-capture", "batch")
MIXED_WEIGHTS = (("topup", 45), ("bonus", 10), ("spend", 35), ("balance", 10))
SIGN = {"topup": +1, "bonus": +1, "spend": -1, "hold": -1, "capture": 0}  # a full capture
AMOUNT_RANGE = {"topup": (1, 1000), "bonus": (1, 100), "spend": (1, 100), "hold": (1, 100)}
REQUEST_TIMEOUT = 30
# /wallet/* answers a new movement with 200 as the original did, /api/v1 with 201; every
# reference is new, so a replay (200 on /api/v1) is never expected.
POSTED = {"topup": 200, "bonus": 200, "spend": 200, "hold": 201, "capture": 201}
BATCH_POSTED = 201  # an item of a batch answered as /api/v1 does
BATCH_SIZE = 500


@dataclass(frozen=True)
class Call:
    kind: str  # topup, bonus, spend, balance, hold or capture
    user_id: int
    amount: int = 0
    reference_id: str = ""
    hold_id: int = 0  # a capture's


@dataclass(frozen=True)
class Batch:
    """One POST /api/v1/transactions/batch: its items, each a top-up or a spend."""

    items: tuple[Call, ...]
    kind: str = "batch"


@dataclass
class Outcome:
    """What a run observed: latencies and statuses per request, the movements posted, and
    per user the sum of its postings. A batch's items have their own statuses; `refused`
    counts requests, or items of a batch, refused for insufficient funds; `errors` every other
    answer that is not a success (a batch request, or one of its items)."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    item_statuses: Counter = field(default_factory=Counter)
    moves: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    unknown: list[dict] = field(default_factory=list)
    movements: int = 0
    refused: int = 0
    errors: int = 0

    def record(self, call: Call | Batch, status: int | None, code: str | None, seconds: float,
               body: dict | None = None) -> None:
        self.latencies.append(seconds)
        self.statuses[f"{call.kind}:{status}"] += 1
        self._count(status, code)
        if call.kind == "batch":
            self._record_items(call.items, status, body)
        elif call.kind != "balance":
            self._record_movement(call, status, POSTED[call.kind])

    def _count(self, status: int | None, code: str | None) -> None:
        if code == "insufficient_funds":
            self.refused += 1
        elif status not in (200, 201):
            self.errors += 1

    def _record_movement(self, call: Call, status: int | None, posted: int) -> None:
        delta = SIGN[call.kind] * call.amount
        if status == posted:
            self.moves[call.user_id] += delta
            self.movements += 1
        elif status is None or status >= 500:
            self.unknown.append({"reference_id": call.reference_id, "user_id": call.user_id,
                                 "delta": delta})

    def _record_items(self, items: tuple[Call, ...], status: int | None, body: dict | None) -> None:
        if status is None or status >= 500:  # lost: each item may or may not be in the ledger
            for item in items:
                self._record_movement(item, None, BATCH_POSTED)
            return
        if status != 200:  # the request was refused whole: nothing posted
            return
        for item, answer in zip(items, body["items"], strict=True):
            code = (answer.get("error") or {}).get("code")
            self.item_statuses[f"{item.kind}:{answer['status']}"] += 1
            self._count(answer["status"], code)
            self._record_movement(item, answer["status"], BATCH_POSTED)


class CallMaker:
    """Picks the next request of a scenario."""

    def __init__(self, scenario: str, users: list[int], hot_user: int | None, seed: int | None,
                 batch_size: int = BATCH_SIZE):
        self.scenario, self.users, self.hot_user = scenario, users, hot_user
        self.batch_size = batch_size
        self.random = random.Random(seed)
        kinds, weights = zip(*MIXED_WEIGHTS)
        self.mixed_kinds = self.random.choices(kinds, weights, k=10_000)  # a fixed-ratio deck
        self.dealt = 0

    def next(self) -> Call | Batch:
        if self.scenario == "batch":
            return self._batch()
        if self.scenario == "hot-wallet":
            return Call("spend", self.hot_user, 1, self._reference())
        kind = {"hot-treasury": "topup", "hold-capture": "hold"}.get(self.scenario)
        kind = kind or self._mixed_kind()
        user = self.random.choice(self.users)
        if kind == "balance":
            return Call(kind, user)
        return Call(kind, user, self.random.randint(*AMOUNT_RANGE[kind]), self._reference())

    def _batch(self) -> Batch:
        """Half top-ups, half spends, in random order, each of a random user."""
        half = self.batch_size // 2
        kinds = ["topup"] * half + ["spend"] * (self.batch_size - half)
        self.random.shuffle(kinds)
        return Batch(tuple(Call(kind, self.random.choice(self.users),
                                self.random.randint(*AMOUNT_RANGE[kind]), self._reference())
                           for kind in kinds))

    def _mixed_kind(self) -> str:
        self.dealt += 1
        return self.mixed_kinds[self.dealt % len(self.mixed_kinds)]

    @staticmethod
    def _reference() -> str:
        return f"bench-{uuid.uuid4()}"


async def send(session: aiohttp.ClientSession, base: str,
               call: Call | Batch) -> tuple[int | None, str | None, dict | None]:
    """(HTTP status, error code, body of a success) of one call; Nones when no answer came."""
    try:
        async with _request(session, base, call) as response:
            payload = await response.read()
            body = json.loads(payload) if response.status in (200, 201) else None
            return response.status, _error_code(response.status, payload), body
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return None, None, None


def _request(session: aiohttp.ClientSession, base: str, call: Call | Batch):
    if call.kind == "batch":
        return session.post(f"{base}/api/v1/transactions/batch", json={"atomic": False, "items": [
            {"kind": item.kind, "user_id": item.user_id, "asset": "GOLD", "amount": item.amount,
             "reference_id": item.reference_id} for item in call.items]})
    if call.kind == "balance":
        return session.get(f"{base}/wallet/{call.user_id}/balance")
    if call.kind == "hold":
        return session.post(f"{base}/api/v1/holds", json={
            "user_id": call.user_id, "asset": "GOLD", "amount": call.amount,
            "reference_id": call.reference_id})
    if call.kind == "capture":
        return session.post(f"{base}/api/v1/holds/{call.hold_id}/capture",
                            json={"reference_id": call.reference_id})
    body = {"user_id": call.user_id, "amount": call.amount, "reference_id": call.reference_id}
    return session.post(f"{base}/wallet/{call.kind}", json=body)


def _error_code(status: int, payload: bytes) -> str | None:
    if status < 400:
        return None
    try:
        return json.loads(payload)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


async def client_loop(session, base: str, maker: CallMaker, outcome: Outcome, until: float) -> None:
    while (now := time.perf_counter()) < until:
        call = maker.next()
        status, code, body = await send(session, base, call)
        outcome.record(call, status, code, time.perf_counter() - now, body)
        if call.kind == "hold" and status == POSTED["hold"]:  # delivered: capture all of it
            capture = Call("capture", call.user_id, call.amount, call.reference_id + ":capture",
                           body["id"])
            started = time.perf_counter()
            status, code, _ = await send(session, base, capture)
            outcome.record(capture, status, code, time.perf_counter() - started)


async def drive(base: str, key: str, maker: CallMaker, clients: int, duration: float) -> tuple[Outcome, float]:
    """Runs `clients` closed loops for `duration` seconds; returns the outcome and the seconds."""
    outcome = Outcome()
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
        start = time.perf_counter()
        until = start + duration
        await asyncio.gather(*(client_loop(session, base, maker, outcome, until)
                               for _ in range(clients)))
        return outcome, time.perf_counter() - start


def percentile(sorted_values: list[float], share: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), math.ceil(share * len(sorted_values))))
    return sorted_values[rank - 1]


def summary(outcome: Outcome, elapsed: float) -> dict:
    latencies = sorted(outcome.latencies)
    ok = sum(n for key, n in outcome.statuses.items() if key.endswith((":200", ":201")))
    total = len(latencies)
    ms = {f"p{int(share * 100)}": round(percentile(latencies, share) * 1000, 2)
          for share in (0.5, 0.95, 0.99)} if latencies else {}
    if latencies:
        ms["max"] = round(latencies[-1] * 1000, 2)
    return {
        "requests": total, "ok": ok, "refused": outcome.refused,
        "errors": outcome.errors, "seconds": round(elapsed, 2),
        "requests_per_s": round(total / elapsed, 1), "ok_per_s": round(ok / elapsed, 1),
        "movements": outcome.movements, "movements_per_s": round(outcome.movements / elapsed, 1),
        "latency_ms": ms, "statuses": dict(sorted(outcome.statuses.items())),
        "item_statuses": dict(sorted(outcome.item_statuses.items())),  # a batch's items
        "loadgen_cpu_s": round(time.process_time(), 2),  # the whole process, start-up included
    }


def run_coroutine(coroutine):
    """asyncio.run on a thread of its own, so callers that already run an event loop (a
    test session with Playwright's) can drive the load too."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


def run(base: str, key: str, scenario: str, users: list[int], clients: int, duration: float,
        hot_user: int | None = None, seed: int | None = None, batch_size: int = BATCH_SIZE) -> dict:
    maker = CallMaker(scenario, users, hot_user, seed, batch_size)
    outcome, elapsed = run_coroutine(drive(base, key, maker, clients, duration))
    return {"summary": summary(outcome, elapsed),
            "moves": {str(user): delta for user, delta in outcome.moves.items()},
            "unknown": outcome.unknown}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True)
    parser.add_argument("--key", default=os.environ.get("BENCH_API_KEY"),
                        help="write API key (default: $BENCH_API_KEY, kept off the process list)")
    parser.add_argument("--scenario", choices=SCENARIOS, required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--users", required=True, help="JSON file: list of user ids")
    parser.add_argument("--hot-user", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help=f"items per request of the batch scenario (default {BATCH_SIZE})")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    with open(args.users) as file:
        users = json.load(file)
    result = run(args.base, args.key, args.scenario, users, args.clients, args.duration,
                 args.hot_user, args.seed, args.batch_size)
    with open(args.out, "w") as file:
        json.dump(result, file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
