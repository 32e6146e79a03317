"""The bench database: rebuilt from the migrations, seeded, and read directly for the checks."""
from __future__ import annotations

from sqlalchemy.engine import make_url

from .common import BIN, ROOT, connect, flask, run_app_command

SYNTHETIC_PREFIX = "load-"


def rebuild(url: str, users: int) -> str:
    """Fresh schema, migrations, seed with `users` synthetic users; returns a write API key."""
    ensure_database(url)
    with connect(url) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("DROP SCHEMA IF EXISTS bench CASCADE")
        conn.execute("CREATE SCHEMA public")
    flask(url, "db", "upgrade")
    run_app_command(url, str(BIN / "python"), str(ROOT / "seed.py"), "--users", str(users))
    return create_write_key(url, "bench")


def ensure_database(url: str) -> None:
    name = make_url(url).database
    admin = make_url(url).set(database="postgres").render_as_string(hide_password=False)
    with connect(admin) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')


def create_write_key(url: str, name: str) -> str:
    """`flask api-keys create` prints the key alone on its last line."""
    return flask(url, "api-keys", "create", name, "--scope", "write").strip().splitlines()[-1]


def analyze(url: str) -> None:
    """Planner statistics for the freshly loaded tables, as autovacuum would gather them.
    Without them (autovacuum is off on the shared development server) the account lookup of
    every uncached transfer reads all 10,000 GOLD wallets instead of one index entry."""
    with connect(url) as conn:
        conn.execute("ANALYZE")


def synthetic_user_ids(url: str) -> list[int]:
    with connect(url) as conn:
        rows = conn.execute("SELECT id FROM users WHERE username LIKE %s ORDER BY id",
                            (SYNTHETIC_PREFIX + "%",))
        return [user_id for (user_id,) in rows]


def gold_balances(url: str) -> dict[int, int]:
    """Every user's GOLD wallet balance, read in one snapshot."""
    with connect(url) as conn:
        rows = conn.execute("SELECT user_id, balance FROM accounts "
                            "WHERE kind = 'wallet' AND asset_code = 'GOLD'")
        return dict(rows.fetchall())


def gold_wallet_of(url: str, user_id: int) -> int:
    with connect(url) as conn:
        return conn.execute("SELECT id FROM accounts WHERE user_id = %s AND kind = 'wallet' "
                            "AND asset_code = 'GOLD'", (user_id,)).fetchone()[0]


def lowest_balance_after(url: str, account_id: int) -> int | None:
    with connect(url) as conn:
        return conn.execute("SELECT MIN(balance_after) FROM postings WHERE account_id = %s",
                            (account_id,)).fetchone()[0]


def committed_references(url: str, reference_ids: list[str]) -> set[str]:
    """Which of these references the ledger holds (resolves requests whose answer was lost)."""
    if not reference_ids:
        return set()
    with connect(url) as conn:
        rows = conn.execute("SELECT reference_id FROM transactions WHERE reference_id = ANY(%s)",
                            (reference_ids,))
        return {ref for (ref,) in rows}


def count_postings(url: str) -> int:
    with connect(url) as conn:
        return conn.execute("SELECT COUNT(*) FROM postings").fetchone()[0]


def verify(url: str) -> dict:
    """`flask ledger verify`: exit status and its report lines."""
    try:
        return {"ok": True, "output": flask(url, "ledger", "verify").strip().splitlines()}
    except RuntimeError as error:
        return {"ok": False, "output": str(error).strip().splitlines()[-20:]}


def sweep_until_done(url: str, passes: int = 100) -> int:
    """`flask sweep` until a pass has nothing left to do (the compose service `sweeper` runs it
    every minute: the overview's rollup and the chains keep up with the writes); passes run."""
    for done in range(1, passes + 1):
        counts = dict(item.split("=") for item in flask(url, "sweep").split())
        if not any(int(count) for count in counts.values()):
            return done
    raise RuntimeError(f"the sweeper still had work after {passes} passes")
