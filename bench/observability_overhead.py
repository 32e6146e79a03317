"""What observability (request metrics, ledger metrics, the JSON request log line) costs per
request in CPU time: the same requests through Flask's test client, in alternating rounds
with the hooks installed and removed, best round of each. No network, so the difference is
the hooks' CPU.

    TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/<db> \
        .venv/bin/python bench/observability_overhead.py 2>/dev/null
    (add PROMETHEUS_MULTIPROC_DIR=$(mktemp -d) for gunicorn's multiprocess mode)

The database must be migrated and seeded (any test database after a test run is).
"""
import itertools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sqlalchemy import event  # noqa: E402

from tests.conftest import build_app  # noqa: E402
from wallet_web import api_keys, ledger, observability  # noqa: E402
from wallet_web.extensions import db  # noqa: E402

ROUNDS, REQUESTS = 6, 300
SIGNALS = ((ledger.transaction_posted, observability.on_posted),
           (ledger.transaction_refused, observability.on_refused),
           (ledger.wallets_locked, observability.on_locked))


def switch(app, on: bool) -> None:
    """Install or remove every hook observability adds to a request."""
    before, after = app.before_request_funcs[None], app.after_request_funcs[None]
    pool_listeners = [(name, fn) for name, fn in app.extensions["overhead_listeners"]]
    if on:
        before.insert(0, observability.start_request)
        after.append(observability.finish_request)
        for signal, receiver in SIGNALS:
            signal.connect(receiver)
        for name, listener in pool_listeners:
            event.listen(db.engine, name, listener)
    else:
        before.remove(observability.start_request)
        after.remove(observability.finish_request)
        for signal, receiver in SIGNALS:
            signal.disconnect(receiver)
        for name, listener in pool_listeners:
            event.remove(db.engine, name, listener)


def our_pool_listeners() -> list:
    return [(name, listener) for name in ("checkout", "checkin")
            for listener in getattr(db.engine.pool.dispatch, name)
            if getattr(listener, "__module__", "") == observability.__name__]


def round_us(client, case) -> float:
    """CPU time of this process per request: waiting on PostgreSQL and on other processes of
    a busy machine is not counted, so rounds compare well even on a shared box."""
    started = time.process_time()
    for _ in range(REQUESTS):
        case(client)
    return (time.process_time() - started) / REQUESTS * 1e6


def main() -> None:
    app = build_app(os.environ["TEST_DATABASE_URL"])
    ctx = app.app_context()
    ctx.push()
    app.extensions["overhead_listeners"] = our_pool_listeners()
    headers = {"Authorization": f"Bearer {api_keys.create_key('overhead', 'write')[1]}"}
    numbers = itertools.count()
    run = f"{time.time_ns()}"
    cases = {
        "GET /healthz": lambda c: c.get("/healthz"),
        "GET /wallet/2/balance": lambda c: c.get("/wallet/2/balance", headers=headers),
        "POST /wallet/topup": lambda c: c.post("/wallet/topup", headers=headers, json={
            "user_id": 2, "amount": 1, "reference_id": f"overhead-{run}-{next(numbers)}"}),
    }
    client = app.test_client()
    mode = "multiprocess" if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else "single-process"
    out = sys.__stdout__
    print(f"CPU us per request, best of {ROUNDS} alternating rounds of {REQUESTS}; "
          f"metrics {mode}", file=out)
    for name, case in cases.items():
        best = {True: float("inf"), False: float("inf")}
        for n in range(ROUNDS * 2):
            on = n % 2 == 0
            if not on:
                switch(app, on=False)
            best[on] = min(best[on], round_us(client, case))
            if not on:
                switch(app, on=True)
        print(f"{name:24} with {best[True]:7.1f} us  without {best[False]:7.1f} us  "
              f"overhead {best[True] - best[False]:5.1f} us", file=out)
    ctx.pop()


if __name__ == "__main__":
    main()
