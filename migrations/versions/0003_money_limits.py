"""Money limits: each asset's maximum amount per movement and maximum wallet balance, and
ceilings on every stored amount and balance (wallet_web/limits.py), so that no value can
overflow a bigint or, on SQLite, turn into a float.

ledger_apply (PostgreSQL) now refuses a wallet leg beyond its asset's limits, and places a
house leg on the first of the 16 shards (starting at a random one) that stays within its
ceiling. The numbers are written out here: a migration is history and must not change when
the code's constants do.

Revision ID: 0003
Revises: 0002
"""
import importlib.util
import os

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SHARD_CEILING = 72057594037927935  # 2**63 // 128: 16 shards x 8 house accounts fit a bigint
BALANCE_CEILING = 10**15
CHECKS = {
    "assets": {
        "limits_in_range": f"max_amount BETWEEN 1 AND max_balance AND max_balance <= {BALANCE_CEILING}",
    },
    "accounts": {
        "balance_within_ceiling":
            f"balance <= {BALANCE_CEILING} AND (NOT allow_negative OR balance = 0)",
    },
    "balance_shards": {
        "balance_within_ceiling": f"balance BETWEEN -{SHARD_CEILING} AND {SHARD_CEILING}",
    },
    "postings": {
        "amount_within_ceiling": f"amount BETWEEN -{SHARD_CEILING} AND {SHARD_CEILING}",
        "balance_after_within_ceiling": f"balance_after BETWEEN 0 AND {BALANCE_CEILING}",
    },
}
INTEGER_COLUMNS = {  # SQLite only
    "assets": ("max_amount", "max_balance"),
    "accounts": ("balance",),
    "balance_shards": ("balance",),
    "postings": ("amount", "balance_after"),
}

APPLY = f"""
CREATE OR REPLACE FUNCTION ledger_apply(
    p_kind text, p_reference_id text, p_fingerprint text, p_description text,
    p_metadata jsonb, p_actor text, p_operator_id bigint, p_api_key_id bigint,
    p_reverses_id bigint, p_created_at timestamptz,
    p_accounts bigint[], p_amounts bigint[], p_wallet boolean[], p_shard int
) RETURNS TABLE (transaction_id bigint, balances bigint[])
LANGUAGE plpgsql AS $$
DECLARE
    v_tx bigint;
    v_balance bigint;
    v_balances bigint[] := '{{}}';
    v_placed boolean;
BEGIN
    INSERT INTO transactions (kind, reference_id, fingerprint, description, metadata, actor,
                              operator_id, api_key_id, reverses_id, created_at)
    VALUES (p_kind, p_reference_id, p_fingerprint, p_description, p_metadata, p_actor,
            p_operator_id, p_api_key_id, p_reverses_id, p_created_at)
    ON CONFLICT DO NOTHING
    RETURNING id INTO v_tx;
    IF v_tx IS NULL THEN  -- reference (or reversal) already taken: the caller replays
        RETURN QUERY SELECT NULL::bigint, NULL::bigint[];
        RETURN;
    END IF;
    FOR i IN 1 .. cardinality(p_accounts) LOOP
        v_balance := NULL;
        IF p_wallet[i] THEN
            -- A debit may leave a wallet above a lowered max_balance; a credit may not.
            UPDATE accounts AS a SET balance = a.balance + p_amounts[i]
              FROM assets AS s
             WHERE a.id = p_accounts[i] AND s.code = a.asset_code AND a.status = 'active'
               AND abs(p_amounts[i]) <= s.max_amount
               AND a.balance + p_amounts[i] >= 0
               AND (p_amounts[i] < 0 OR a.balance + p_amounts[i] <= s.max_balance)
            RETURNING a.balance INTO v_balance;
            v_placed := FOUND;
        ELSE
            UPDATE balance_shards SET balance = balance + p_amounts[i]
             WHERE account_id = p_accounts[i] AND shard = p_shard
               AND balance + p_amounts[i] BETWEEN -{SHARD_CEILING} AND {SHARD_CEILING}
               AND EXISTS (SELECT 1 FROM accounts WHERE id = p_accounts[i] AND status = 'active');
            v_placed := FOUND;
            -- Rare: the random shard is near its ceiling (or the account is frozen).
            IF NOT v_placed AND EXISTS (
                    SELECT 1 FROM accounts WHERE id = p_accounts[i] AND status = 'active') THEN
                FOR k IN 1 .. 15 LOOP
                    UPDATE balance_shards SET balance = balance + p_amounts[i]
                     WHERE account_id = p_accounts[i] AND shard = (p_shard + k) % 16
                       AND balance + p_amounts[i] BETWEEN -{SHARD_CEILING} AND {SHARD_CEILING};
                    IF FOUND THEN
                        v_placed := true;
                        EXIT;
                    END IF;
                END LOOP;
            END IF;
        END IF;
        IF NOT v_placed THEN
            RAISE EXCEPTION 'account refused the leg' USING ERRCODE = 'WL001',
                DETAIL = p_accounts[i]::text;
        END IF;
        v_balances := v_balances || v_balance;
    END LOOP;
    INSERT INTO postings (transaction_id, account_id, amount, balance_after, created_at)
    SELECT v_tx, leg.account_id, leg.amount, leg.balance_after, p_created_at
      FROM unnest(p_accounts, p_amounts, v_balances) AS leg(account_id, amount, balance_after);
    RETURN QUERY SELECT v_tx, v_balances;
END $$
"""
SQLITE_POSTINGS_TRIGGERS = [
    f"CREATE TRIGGER postings_no_{event.lower()} BEFORE {event} ON postings "
    f"BEGIN SELECT RAISE(ABORT, '{event} on postings is not allowed: "
    "the ledger is append-only'); END"
    for event in ("UPDATE", "DELETE")
]


def upgrade():
    with op.batch_alter_table("assets") as batch:
        batch.add_column(sa.Column("max_amount", sa.BigInteger(), nullable=False,
                                   server_default="1000000000"))
        batch.add_column(sa.Column("max_balance", sa.BigInteger(), nullable=False,
                                   server_default="1000000000000"))
    if op.get_bind().dialect.name == "postgresql":
        _add_checks_postgresql()
        op.execute(APPLY)
    else:
        _add_checks_sqlite()


def _add_checks_postgresql():
    # NOT VALID then VALIDATE: the scan of existing rows does not block writes.
    for table, checks in CHECKS.items():
        for name, condition in checks.items():
            constraint = f"ck_{table}_{name}"
            op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {constraint} CHECK ({condition}) NOT VALID")
            op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {constraint}")


def _add_checks_sqlite():
    # Batch mode rebuilds each table (migrations/env.py holds foreign keys off meanwhile).
    # Rebuilding postings drops its triggers: they are made again.
    for table, checks in CHECKS.items():
        with op.batch_alter_table(table) as batch:
            for name, condition in checks.items():
                batch.create_check_constraint(op.f(f"ck_{table}_{name}"), condition)
            for column in INTEGER_COLUMNS[table]:
                batch.create_check_constraint(
                    op.f(f"ck_{table}_{column}_is_integer"),
                    f"{column} IS NULL OR typeof({column}) = 'integer'")
    for trigger in SQLITE_POSTINGS_TRIGGERS:
        op.execute(trigger)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_revision_0002().APPLY.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
        for table, checks in CHECKS.items():
            for name in checks:
                op.execute(f"ALTER TABLE {table} DROP CONSTRAINT ck_{table}_{name}")
    else:
        for table, checks in CHECKS.items():
            with op.batch_alter_table(table) as batch:
                for name in [*checks, *(f"{c}_is_integer" for c in INTEGER_COLUMNS[table])]:
                    batch.drop_constraint(op.f(f"ck_{table}_{name}"), type_="check")
        for trigger in SQLITE_POSTINGS_TRIGGERS:
            op.execute(trigger)
    with op.batch_alter_table("assets") as batch:
        batch.drop_column("max_balance")
        batch.drop_column("max_amount")


def _revision_0002():
    path = os.path.join(os.path.dirname(__file__), "0002_ledger_apply_function.py")
    spec = importlib.util.spec_from_file_location("revision_0002", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
