"""PostgreSQL: ledger_apply(), the write step of a transfer in one round trip.

It does on the server what wallet_web/ledger.py `_apply_statements` does statement by
statement on SQLite: claim the reference, guarded wallet updates in the given (sorted) order,
house legs on one shard, the postings. The caller has already validated the legs.

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APPLY = """
CREATE FUNCTION ledger_apply(
    p_kind text, p_reference_id text, p_fingerprint text, p_description text,
    p_metadata jsonb, p_actor text, p_operator_id bigint, p_api_key_id bigint,
    p_reverses_id bigint, p_created_at timestamptz,
    p_accounts bigint[], p_amounts bigint[], p_wallet boolean[], p_shard int
) RETURNS TABLE (transaction_id bigint, balances bigint[])
LANGUAGE plpgsql AS $$
DECLARE
    v_tx bigint;
    v_balance bigint;
    v_balances bigint[] := '{}';
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
            UPDATE accounts SET balance = balance + p_amounts[i]
             WHERE id = p_accounts[i] AND status = 'active' AND balance + p_amounts[i] >= 0
            RETURNING balance INTO v_balance;
        ELSE
            UPDATE balance_shards SET balance = balance + p_amounts[i]
             WHERE account_id = p_accounts[i] AND shard = p_shard
               AND EXISTS (SELECT 1 FROM accounts WHERE id = p_accounts[i] AND status = 'active');
        END IF;
        IF NOT FOUND THEN
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


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(APPLY)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION ledger_apply")
