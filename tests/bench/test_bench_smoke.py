"""The benchmark suite's pieces, cheaply: the load generator against a live gunicorn, the
conservation check (it must catch a movement no request accounts for), the drain check, the
batch scenario's per-item bookkeeping, and the SQL history fill keeping every ledger invariant."""
import json
import subprocess
import sys

import pytest

from bench import conservation, database, fill_history, load, scenarios
from bench.common import BENCH, ROOT
from bench.server import Gunicorn
from wallet_web import api_keys, audit, ledger

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def bench(app, database_url, make_user):
    users = [make_user(balance=100_000) for _ in range(3)]
    key = api_keys.create_key("bench-smoke", "write")[1]
    with Gunicorn(database_url) as server:
        yield scenarios.open_bench(database_url, key, server, users)


def test_load_run_is_conserved_and_an_unaccounted_movement_is_caught(bench):
    before = database.gold_balances(bench.url)
    outcome = scenarios.run_load(bench, "mixed", clients=4, seconds=2)
    after = database.gold_balances(bench.url)

    summary = outcome["summary"]
    assert summary["requests"] > 20 and summary["errors"] == 0
    assert set(summary["statuses"]) <= {"topup:200", "bonus:200", "spend:200", "balance:200"}
    expected = conservation.expected_moves(outcome["moves"], outcome["unknown"], set())
    assert conservation.mismatches(before, after, expected) == []

    stray = bench.users[1]
    ledger.topup(stray, "GOLD", 7, "bench-smoke-stray")  # moved, but by no request of the run
    found = conservation.mismatches(before, database.gold_balances(bench.url), expected)
    assert found == [{"user_id": stray, "moved": expected.get(stray, 0) + 7,
                      "expected": expected.get(stray, 0)}]


def test_the_hold_capture_run_is_conserved_and_leaves_no_open_hold(bench):
    before = database.gold_balances(bench.url)
    outcome = scenarios.run_load(bench, "hold-capture", clients=4, seconds=2)
    after = database.gold_balances(bench.url)

    summary = outcome["summary"]
    assert summary["errors"] == 0 and summary["statuses"]["hold:201"] > 10
    assert summary["statuses"]["capture:201"] == summary["statuses"]["hold:201"]
    expected = conservation.expected_moves(outcome["moves"], outcome["unknown"], set())
    assert conservation.mismatches(before, after, expected) == []
    assert audit.verify().ok


def test_the_batch_level_is_conserved_and_counts_the_items_it_posted(bench):
    level = scenarios.run_level(bench, "batch", clients=2, seconds=2, warmup=0, batch_size=20)

    assert level["conservation"]["ok"] and level["errors"] == 0
    assert level["statuses"] == {"batch:200": level["requests"]} and level["requests"] > 5
    assert level["movements"] > 0
    assert level["movements"] + level["refused"] == 20 * level["requests"]
    assert set(level["item_statuses"]) <= {"topup:201", "spend:201", "spend:422"}
    assert level["cpu_ms_per_movement"]["gunicorn"] < level["cpu_ms_per_request"]["gunicorn"]
    assert audit.verify().ok


def test_a_batch_answer_is_counted_item_by_item_and_a_lost_one_is_looked_up():
    items = (load.Call("topup", 1, 5, "a"), load.Call("spend", 2, 3, "b"))
    answered = {"items": [{"status": 201, "transaction": {}, "error": None},
                          {"status": 422, "error": {"code": "insufficient_funds"}}]}
    outcome = load.Outcome()
    outcome.record(load.Batch(items), 200, None, 0.1, answered)
    assert (outcome.movements, outcome.refused, outcome.errors) == (1, 1, 0)
    assert dict(outcome.moves) == {1: 5} and outcome.unknown == []

    outcome.record(load.Batch(items), None, None, 30.0)  # no answer came
    assert (outcome.movements, outcome.errors) == (1, 1)
    assert outcome.unknown == [{"reference_id": "a", "user_id": 1, "delta": 5},
                               {"reference_id": "b", "user_id": 2, "delta": -3}]


def test_a_wrong_expected_sum_is_reported():
    before, after = {1: 100, 2: 50}, {1: 130, 2: 50}
    assert conservation.mismatches(before, after, {1: 30}) == []
    assert conservation.mismatches(before, after, {1: 31}) == [
        {"user_id": 1, "moved": 30, "expected": 31}]
    assert conservation.mismatches(before, after, {1: 30, 2: -5}) == [
        {"user_id": 2, "moved": 0, "expected": -5}]


def test_lost_answers_count_only_when_the_ledger_holds_them():
    unknown = [{"reference_id": "a", "user_id": 1, "delta": 5},
               {"reference_id": "b", "user_id": 1, "delta": 9}]
    assert conservation.expected_moves({"1": 10}, unknown, {"a"}) == {1: 15}


def test_hot_wallet_level_and_drain_are_exact(bench):
    level = scenarios.run_level(bench, "hot-wallet", clients=4, seconds=1, warmup=0,
                                hot_user=bench.users[0])
    assert level["ok"] > 0 and level["conservation"]["ok"]
    assert level["hot_wallet"]["never_negative"]
    assert level["hot_wallet"]["end"] == level["hot_wallet"]["start"] - level["ok"]

    drain = scenarios.drain(bench, bench.users[2])
    assert (drain["succeeded"], drain["refused"], drain["ok"]) == (40, 24, True)
    assert drain["end"] == drain["balance"] - 40 * drain["amount"] >= 0


def test_fill_history_keeps_every_invariant(app, database_url, make_user):
    [make_user(balance=10) for _ in range(5)]
    postings_before = database.count_postings(database_url)

    assert fill_history.fund_users(database_url, 1_000) == 7  # alice, bob and the five
    assert fill_history.fill_history(database_url, 2_000, whale_user=2) == 2_000

    assert database.count_postings(database_url) == postings_before + 2 * 7 + 2_000
    report = audit.verify()
    assert report.ok, report.lines()
    alice_wallet = database.gold_wallet_of(database_url, 2)
    assert database.lowest_balance_after(database_url, alice_wallet) >= 100


def test_app_cpu_measures_top_ups_through_the_app_in_process(app, database_url, make_user):
    [make_user(name=f"load-cpu-{n}") for n in range(3)]
    done = subprocess.run([sys.executable, str(BENCH / "app_cpu.py"), "--requests", "25",
                           "--database-url", database_url],
                          capture_output=True, text=True, timeout=100, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(figures["us_per_request"]) == 5 and figures["median"] > 0
    with database.connect(database_url) as conn:
        posted = conn.execute("SELECT count(*) FROM transactions "
                              "WHERE reference_id LIKE 'app-cpu-%'").fetchone()[0]
    assert posted == 3 + 25  # each user once, then the measured requests
    assert audit.verify().ok
