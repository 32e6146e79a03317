"""The app's own CPU per top-up, in-process: `POST /wallet/topup` through `app.wsgi_app` in one
thread, no gunicorn, no HTTP, no load generator. What it measures is the CPU time of that
thread (time.thread_time: the database's work and the waits on it are not in it), so it is the
figure to compare two versions of the code by on a shared, noisy box, where the throughput of a
whole bench run moves by ±15% on its own.

    .venv/bin/python bench/app_cpu.py                     # 3,000 top-ups, five rounds
    cd /tmp/base && .venv/bin/python /work/main/bench/app_cpu.py --code .   # another checkout

Uses the bench database as bench/run.py left it (its users and wallets; nothing is rebuilt)
with production settings, and the code of `--code` (default: this checkout). Every user is
served once before the rounds, so first-seen accounts are not in the figure. Prints each
round's microseconds per request; alternate two checkouts a few times and compare medians.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROUNDS = 5


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--code", type=Path, default=BENCH_DIR.parent,
                        help="the checkout whose app is measured")
    parser.add_argument("--database-url", default=os.environ.get(
        "BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/bench"))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(BENCH_DIR.parent))
    from bench import database  # noqa: E402  (this checkout's bench helpers)

    key = database.create_write_key(args.database_url, "app-cpu")
    users = database.synthetic_user_ids(args.database_url)[:1000]
    call = _app_caller(args.code.resolve(), args.database_url, key)
    _quiet_stderr()  # one JSON log line per request
    for user in users:
        call(_body(user))
    bodies = [_body(random.choice(users)) for _ in range(args.requests)]
    rounds = []
    for start in range(ROUNDS):
        chunk = bodies[start::ROUNDS]
        began = time.thread_time()
        for body in chunk:
            call(body)
        rounds.append((time.thread_time() - began) * 1e6 / len(chunk))
    print(json.dumps({"code": str(args.code), "us_per_request": sorted(round(r) for r in rounds),
                      "median": round(sorted(rounds)[ROUNDS // 2])}))
    return 0


def _app_caller(code: Path, url: str, key: str):
    """call(body) -> the status line of a top-up answered by `code`'s app."""
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="app-cpu-"))
    os.environ.update(DATABASE_URL=url, WALLET_ENV="production", SECRET_KEY=os.urandom(32).hex())
    sys.path.insert(0, str(code))
    from werkzeug.test import EnvironBuilder  # noqa: E402

    from wsgi import app  # noqa: E402

    base = EnvironBuilder(path="/wallet/topup", method="POST", content_type="application/json",
                          headers={"Authorization": f"Bearer {key}"}).get_environ()

    def call(body: bytes) -> str:
        environ = {**base, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
        answered = []
        b"".join(app.wsgi_app(environ, lambda status, headers, exc=None: answered.append(status)))
        if not answered[0].startswith("200"):
            raise RuntimeError(f"a top-up answered {answered[0]}")
        return answered[0]
    return call


def _body(user: int) -> bytes:
    return json.dumps({"user_id": user, "currency": "GOLD", "amount": random.randint(1, 1000),
                       "reference_id": f"app-cpu-{uuid.uuid4()}", "description": "app cpu"}).encode()


def _quiet_stderr() -> None:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
