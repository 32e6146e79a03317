"""Seed the ledger through the ledger service, so seeded history is real history.

    python seed.py              assets, house accounts, genesis (idempotent)
    python seed.py --users N    also N synthetic users with empty wallets (load tests)

In development (WALLET_ENV=development) it also adds the demo users alice and bob, and prints
a demo API key with write scope and a demo dashboard admin login, once: later runs keep them
(their secrets cannot be recovered from the hashes) and say how to make new ones. Production
gets none of these.
"""
import argparse
import sys

from wallet_web import accounts, api_keys, controls, create_app, ledger, operators, queries
from wallet_web.extensions import db

ASSETS = [("GOLD", "Gold Coins"), ("DIAMOND", "Diamonds"), ("LOYALTY", "Loyalty Points")]
GENESIS_SUPPLY = 1_000_000_000_000
DEMO_USERS = [("alice", "alice@example.com", 100), ("bob", "bob@example.com", 50)]


def seed_demo() -> None:
    """What development and the test fixtures start from: the base and alice and bob."""
    seed_base()
    seed_demo_users()


def seed_base() -> None:
    """What every environment needs: the system user, assets, house accounts, genesis."""
    accounts.ensure_system_user()
    controls.ensure_reason_codes()
    for code, name in ASSETS:
        accounts.ensure_asset(code, name)
    for code, _ in ASSETS:
        house = accounts.ensure_house_accounts(code)
        ledger.post(
            "genesis",
            [ledger.Leg(house["equity"], -GENESIS_SUPPLY), ledger.Leg(house["treasury"], GENESIS_SUPPLY)],
            f"seed:genesis:{code}",
            description=f"Genesis supply of {code}",
        )


def seed_demo_users() -> None:
    for username, email, gold in DEMO_USERS:
        user_id = accounts.ensure_user(username, email)
        ledger.topup(user_id, "GOLD", gold, f"seed:topup:{username}", description="Opening balance")


def seed_synthetic_users(count: int, batch: int = 5000) -> int:
    """Adds `count` users named load-<n>, continuing after the ones already there."""
    start = queries.count_users_named("load-")
    for first in range(start, start + count, batch):
        names = range(first, min(first + batch, start + count))
        accounts.create_users_bulk([(f"load-{n}", f"load-{n}@example.test") for n in names])
    refresh_statistics()
    return start + count


def refresh_statistics() -> None:
    """Plan the next queries on the new row counts: a bulk load must not wait for autovacuum
    (which may be slow, or off) to be seen by the planner."""
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "ANALYZE users, accounts")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--users", type=int, default=0, help="synthetic users to add")
    args = parser.parse_args(argv)
    app = create_app()
    with app.app_context():
        seed_base()
        print("seeded assets, house accounts, genesis")
        if app.config["WALLET_ENV"] == "development":
            seed_demo_users()
            print("seeded demo users alice and bob")
            print(api_keys.ensure_demo_key())
            print(operators.ensure_demo_admin())
        if args.users:
            total = seed_synthetic_users(args.users)
            print(f"added {args.users} synthetic users ({total} in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
