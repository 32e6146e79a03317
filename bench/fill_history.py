"""Loads ledger history fast, in SQL, so that `ledger verify` still holds.

    python bench/fill_history.py --postings 1000000 [--database-url URL]

Each generated transaction moves GOLD between one user's wallet and a house account, with two
postings. Per wallet the generated movements alternate top-up (100..999) and spend (50..99), so a
wallet never goes below the balance it had; `balance_after` is that balance plus the running sum
(a window over the posting ids, which grow in generation order), the cached wallet balance moves
by the total, and each house account's total lands on one of its balance shards.
One wallet in ten movements is a "whale" (user 2 by default), for a deep per-account history.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # also as a script

from bench.common import DEFAULT_URL, connect  # noqa: E402

WHALE_EVERY = 10

USER_WALLETS = """
    SELECT a.id FROM accounts a JOIN users u ON u.id = a.user_id
    WHERE a.kind = 'wallet' AND a.asset_code = 'GOLD' AND u.username <> 'system'"""

HISTORY = f"""
    CREATE TEMP TABLE fill_gen ON COMMIT DROP AS
    WITH wallets AS (SELECT array_agg(id ORDER BY id) AS ids FROM ({USER_WALLETS}) w),
    picked AS (
        SELECT n, CASE WHEN n %% {WHALE_EVERY} = 0 THEN %(whale)s
                       ELSE ids[1 + (n * 7919) %% cardinality(ids)] END AS wallet_id
        FROM wallets, generate_series(0::bigint, %(count)s - 1) AS n),
    ordinal AS (SELECT n, wallet_id, row_number() OVER (PARTITION BY wallet_id ORDER BY n) AS r
                FROM picked)
    SELECT n, wallet_id,
           CASE WHEN r %% 2 = 1 THEN 'topup' ELSE 'spend' END AS kind,
           CASE WHEN r %% 2 = 1 THEN 100 + n %% 900 ELSE -(50 + n %% 50) END AS delta
    FROM ordinal"""

OPENING = f"""
    CREATE TEMP TABLE fill_gen ON COMMIT DROP AS
    SELECT row_number() OVER (ORDER BY id) - 1 AS n, id AS wallet_id,
           'topup'::text AS kind, %(amount)s::bigint AS delta
    FROM ({USER_WALLETS}) w"""

POST = [
    """INSERT INTO transactions (id, kind, reference_id, fingerprint, description, actor,
                                 created_at)
       SELECT %(tx_base)s + n, kind, %(tag)s || ':' || n, md5(%(tag)s || ':' || n),
              'bench history', 'bench:fill', now()
       FROM fill_gen""",
    """INSERT INTO events (type, created_at, transaction_id)
       SELECT 'transaction.posted', now(), %(tx_base)s + n FROM fill_gen ORDER BY n""",
    """INSERT INTO postings (id, transaction_id, account_id, amount, balance_after, created_at)
       SELECT %(posting_base)s + 2 * n, %(tx_base)s + n, g.wallet_id, g.delta,
              a.balance + SUM(g.delta) OVER (PARTITION BY g.wallet_id ORDER BY n), now()
       FROM fill_gen g JOIN accounts a ON a.id = g.wallet_id
       UNION ALL
       SELECT %(posting_base)s + 2 * n + 1, %(tx_base)s + n, h.id, -g.delta, NULL, now()
       FROM fill_gen g JOIN house h ON h.kind = g.kind""",
    """UPDATE accounts a SET balance = a.balance + s.total
       FROM (SELECT wallet_id, SUM(delta) AS total FROM fill_gen GROUP BY wallet_id) s
       WHERE a.id = s.wallet_id""",
    """UPDATE balance_shards b SET balance = b.balance + s.total
       FROM (SELECT h.id, -SUM(g.delta) AS total FROM fill_gen g JOIN house h ON h.kind = g.kind
             GROUP BY h.id) s
       WHERE b.account_id = s.id AND b.shard = 0""",
]


def fill_history(url: str, postings: int, whale_user: int = 2, tag: str = "fill") -> int:
    """Adds about `postings` postings (two per transaction); returns how many were added."""
    count = postings // 2
    if count <= 0:
        return 0
    with connect(url, autocommit=False) as conn:
        whale = _gold_wallet(conn, whale_user)
        conn.execute(HISTORY, {"whale": whale, "count": count})
        _post_generated(conn, tag)
    return 2 * count


def fund_users(url: str, amount: int, tag: str = "opening") -> int:
    """One top-up of `amount` GOLD to every user's wallet; returns the number of wallets."""
    with connect(url, autocommit=False) as conn:
        conn.execute(OPENING, {"amount": amount})
        return _post_generated(conn, tag)


def _post_generated(conn: psycopg.Connection, tag: str) -> int:
    """Writes the transactions described in fill_gen(n, wallet_id, kind, delta) and commits."""
    # Writers would break the running balances computed here: keep them out (readers may stay).
    conn.execute("LOCK TABLE accounts, balance_shards, transactions, postings IN EXCLUSIVE MODE")
    count = conn.execute("SELECT COUNT(*) FROM fill_gen").fetchone()[0]
    _house_table(conn)
    params = {"tag": f"{tag}:{_unique_suffix(conn)}",
              "tx_base": _reserve_ids(conn, "transactions", count),
              "posting_base": _reserve_ids(conn, "postings", 2 * count)}
    for statement in POST:
        conn.execute(statement, params)
    conn.commit()
    conn.execute("ANALYZE transactions")
    conn.execute("ANALYZE postings")
    conn.commit()
    return count


def _house_table(conn: psycopg.Connection) -> None:
    """The GOLD house account each generated kind posts against."""
    conn.execute("""
        CREATE TEMP TABLE house ON COMMIT DROP AS
        SELECT k.kind, a.id FROM (VALUES ('topup', 'treasury'), ('spend', 'revenue')) k(kind, house)
        JOIN accounts a ON a.kind = k.house AND a.asset_code = 'GOLD'""")


def _reserve_ids(conn: psycopg.Connection, table: str, count: int) -> int:
    """The first of `count` consecutive ids taken from the table's sequence."""
    sequence = conn.execute("SELECT pg_get_serial_sequence(%s, 'id')", (table,)).fetchone()[0]
    first = conn.execute("SELECT nextval(%s)", (sequence,)).fetchone()[0]
    conn.execute("SELECT setval(%s, %s)", (sequence, first + count))
    return first


def _unique_suffix(conn: psycopg.Connection) -> str:
    return conn.execute("SELECT md5(clock_timestamp()::text || random()::text)").fetchone()[0][:12]


def _gold_wallet(conn: psycopg.Connection, user_id: int) -> int:
    row = conn.execute("SELECT id FROM accounts WHERE user_id = %s AND kind = 'wallet' "
                       "AND asset_code = 'GOLD'", (user_id,)).fetchone()
    if row is None:
        raise SystemExit(f"user {user_id} has no GOLD wallet")
    return row[0]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postings", type=int, required=True, help="postings to add")
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--whale-user", type=int, default=2)
    args = parser.parse_args(argv)
    added = fill_history(args.database_url, args.postings, args.whale_user)
    print(f"added {added:,} postings")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
