"""ledger_apply_batch (PostgreSQL): many two-leg movements in one call, each its own
transaction row with its own reference_id, under the same rules as ledger_apply.

Lock order, the same as every other writer's: references are claimed first (in reference
order, so two batches never wait on each other's claims in a cycle), then the wallets are
locked in ascending id order across the whole batch, then each house account's shard (by
account id). Every item is checked in the order it was sent against the running balances of
the locked wallets; when one is refused, everything of this attempt is rolled back (its claims
too: a refused item must leave no transaction row) and the remaining items are tried again,
or, when p_atomic, nothing is posted. Each house account gets one shard update per batch (the
sum of its legs) instead of one per item; its postings still record every leg. When no shard
can take the sum, each leg is placed alone, and a leg no shard can take refuses its item.

Returns one row of arrays, in item order: the transaction id (NULL unless posted), the state
('p' posted, 't' reference already taken: the caller replays it, 'c' taken with another
payload or by another caller, which stops an atomic batch, 'r' refused, 'x' not posted because
an atomic batch was refused), the account that refused an item and that wallet's
balance when it did, and each leg's wallet balance after it (NULL for a house leg).

Revision ID: 0008
Revises: 0007
"""
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SHARD_CEILING = 72057594037927935  # limits.SHARD_CEILING, written out: history does not move
WALLET_TAKES = """
CREATE FUNCTION ledger_wallet_takes(p_status text, p_amount bigint, p_after bigint,
                                    p_max_amount bigint, p_max_balance bigint)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    -- ledger_apply's wallet guard: a frozen wallet takes credits only; a debit may leave a
    -- wallet above a lowered max_balance, a credit may not.
    SELECT (p_status = 'active' OR (p_status = 'frozen' AND p_amount > 0))
       AND abs(p_amount) <= p_max_amount AND p_after >= 0
       AND (p_amount < 0 OR p_after <= p_max_balance)
$$
"""
ADD_TO_SHARD = f"""
CREATE FUNCTION ledger_add_to_shard(p_account bigint, p_amount bigint, p_first int)
RETURNS boolean LANGUAGE plpgsql AS $$
-- The amount on the first of the account's 16 shards, from p_first on, that stays within
-- its ceiling; false when none can take it.
BEGIN
    FOR step IN 0 .. 15 LOOP
        UPDATE balance_shards SET balance = balance + p_amount
         WHERE account_id = p_account AND shard = (p_first + step) % 16
           AND balance + p_amount BETWEEN -{SHARD_CEILING} AND {SHARD_CEILING};
        IF FOUND THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END $$
"""
APPLY_BATCH = """
CREATE FUNCTION ledger_apply_batch(
    p_kinds text[], p_references text[], p_fingerprints text[], p_descriptions text[],
    p_metadata jsonb[], p_actor text, p_operator_id bigint, p_api_key_id bigint,
    p_created_at timestamptz,
    p_accounts1 bigint[], p_amounts1 bigint[], p_slots1 int[],
    p_accounts2 bigint[], p_amounts2 bigint[], p_slots2 int[],
    p_wallets bigint[], p_houses bigint[], p_shard int, p_atomic boolean
) RETURNS TABLE (transaction_ids bigint[], states text[], refused bigint[],
                 refused_balances bigint[], balances1 bigint[], balances2 bigint[])
LANGUAGE plpgsql AS $$
-- A slot > 0 is the leg's wallet in p_wallets (ascending ids), a slot < 0 its house account
-- in p_houses (ascending ids).
DECLARE
    n int := cardinality(p_references);
    v_state text[] := array_fill('p'::text, ARRAY[n]);
    v_refused bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    v_seen bigint[] := array_fill(NULL::bigint, ARRAY[n]);  -- the refusing wallet's balance then
    v_tx bigint[];
    v_bal1 bigint[];
    v_bal2 bigint[];
    v_balance bigint[];
    v_status text[];
    v_max_amount bigint[];
    v_max_balance bigint[];
    v_touched boolean[];
    v_house_active boolean[];
    v_house_sum bigint[];
    v_any_refused boolean;
    v_ok1 boolean;
    v_ok2 boolean;
    v_after1 bigint;
    v_after2 bigint;
    v_conflict bigint;
BEGIN
    SELECT array_agg(status = 'active' ORDER BY id) INTO v_house_active
      FROM accounts WHERE id = ANY(p_houses);
    LOOP
        BEGIN
            v_any_refused := false;
            v_bal1 := array_fill(NULL::bigint, ARRAY[n]);
            v_bal2 := array_fill(NULL::bigint, ARRAY[n]);
            v_house_sum := array_fill(0::bigint, ARRAY[greatest(cardinality(p_houses), 1)]);
            v_touched := array_fill(false, ARRAY[greatest(cardinality(p_wallets), 1)]);

            WITH claimed AS (
                INSERT INTO transactions (kind, reference_id, fingerprint, description, metadata,
                                          actor, operator_id, api_key_id, created_at)
                SELECT u.kind, u.reference, u.fingerprint, u.description, u.metadata, p_actor,
                       p_operator_id, p_api_key_id, p_created_at
                  FROM unnest(p_kinds, p_references, p_fingerprints, p_descriptions, p_metadata,
                              v_state)
                       AS u(kind, reference, fingerprint, description, metadata, state)
                 WHERE u.state = 'p'
                 ORDER BY u.reference
                ON CONFLICT (reference_id) DO NOTHING  -- a batch reverses nothing
                RETURNING id, reference_id)
            SELECT array_agg(c.id ORDER BY u.i) INTO v_tx
              FROM unnest(p_references) WITH ORDINALITY AS u(reference, i)
              LEFT JOIN claimed AS c ON c.reference_id = u.reference;
            FOR i IN 1 .. n LOOP
                IF v_state[i] = 'p' AND v_tx[i] IS NULL THEN
                    v_state[i] := 't';
                END IF;
            END LOOP;
            IF p_atomic THEN  -- a reference taken with another payload or by another caller
                FOR v_conflict IN
                    SELECT u.i FROM unnest(p_references, p_fingerprints, v_state)
                                    WITH ORDINALITY AS u(reference, fingerprint, state, i)
                      JOIN transactions AS t ON t.reference_id = u.reference
                     WHERE u.state = 't'
                       AND (t.fingerprint <> u.fingerprint OR t.actor <> p_actor
                            OR t.operator_id IS DISTINCT FROM p_operator_id
                            OR t.api_key_id IS DISTINCT FROM p_api_key_id)
                LOOP
                    v_state[v_conflict] := 'c';
                    v_any_refused := true;
                END LOOP;
            END IF;

            SELECT array_agg(w.balance ORDER BY w.id), array_agg(w.status ORDER BY w.id),
                   array_agg(s.max_amount ORDER BY w.id), array_agg(s.max_balance ORDER BY w.id)
              INTO v_balance, v_status, v_max_amount, v_max_balance
              FROM (SELECT id, balance, status, asset_code FROM accounts
                     WHERE id = ANY(p_wallets) ORDER BY id FOR NO KEY UPDATE) AS w
              JOIN assets AS s ON s.code = w.asset_code;

            FOR i IN 1 .. n LOOP
                CONTINUE WHEN v_state[i] <> 'p';
                v_after1 := NULL;
                v_after2 := NULL;
                IF p_slots1[i] > 0 THEN
                    v_after1 := v_balance[p_slots1[i]] + p_amounts1[i];
                    v_ok1 := ledger_wallet_takes(
                        v_status[p_slots1[i]], p_amounts1[i], v_after1,
                        v_max_amount[p_slots1[i]], v_max_balance[p_slots1[i]]);
                ELSE
                    v_ok1 := v_house_active[-p_slots1[i]];
                END IF;
                IF p_slots2[i] > 0 THEN
                    -- two legs on one wallet cannot happen: a transfer needs two users
                    v_after2 := v_balance[p_slots2[i]] + p_amounts2[i];
                    v_ok2 := ledger_wallet_takes(
                        v_status[p_slots2[i]], p_amounts2[i], v_after2,
                        v_max_amount[p_slots2[i]], v_max_balance[p_slots2[i]]);
                ELSE
                    v_ok2 := v_house_active[-p_slots2[i]];
                END IF;
                IF NOT v_ok1 OR NOT v_ok2 THEN
                    v_state[i] := 'r';
                    IF NOT v_ok1 THEN
                        v_refused[i] := p_accounts1[i];
                        v_seen[i] := v_balance[greatest(p_slots1[i], 0)];
                    ELSE
                        v_refused[i] := p_accounts2[i];
                        v_seen[i] := v_balance[greatest(p_slots2[i], 0)];
                    END IF;
                    v_any_refused := true;
                    CONTINUE;
                END IF;
                IF p_slots1[i] > 0 THEN
                    v_balance[p_slots1[i]] := v_after1;
                    v_touched[p_slots1[i]] := true;
                    v_bal1[i] := v_after1;
                ELSE
                    v_house_sum[-p_slots1[i]] := v_house_sum[-p_slots1[i]] + p_amounts1[i];
                END IF;
                IF p_slots2[i] > 0 THEN
                    v_balance[p_slots2[i]] := v_after2;
                    v_touched[p_slots2[i]] := true;
                    v_bal2[i] := v_after2;
                ELSE
                    v_house_sum[-p_slots2[i]] := v_house_sum[-p_slots2[i]] + p_amounts2[i];
                END IF;
            END LOOP;
            IF v_any_refused THEN
                RAISE EXCEPTION 'a batch item was refused' USING ERRCODE = 'WL002';
            END IF;

            UPDATE accounts AS a SET balance = w.balance
              FROM unnest(p_wallets, v_balance, v_touched) AS w(id, balance, touched)
             WHERE a.id = w.id AND w.touched;
            FOR k IN 1 .. coalesce(cardinality(p_houses), 0) LOOP
                CONTINUE WHEN v_house_sum[k] = 0;
                -- One update of one shard for the batch's sum; when no shard can take the
                -- sum (rare), each item's leg on its own, as a single movement places it.
                IF NOT ledger_add_to_shard(p_houses[k], v_house_sum[k], p_shard) THEN
                    FOR i IN 1 .. n LOOP
                        CONTINUE WHEN v_state[i] <> 'p' OR -k NOT IN (p_slots1[i], p_slots2[i]);
                        IF NOT ledger_add_to_shard(p_houses[k], CASE WHEN p_slots1[i] = -k
                                THEN p_amounts1[i] ELSE p_amounts2[i] END, p_shard) THEN
                            v_state[i] := 'r';
                            v_refused[i] := p_houses[k];
                            v_any_refused := true;
                        END IF;
                    END LOOP;
                END IF;
            END LOOP;
            IF v_any_refused THEN
                RAISE EXCEPTION 'a house account refused a batch item' USING ERRCODE = 'WL002';
            END IF;
            INSERT INTO postings (transaction_id, account_id, amount, balance_after, created_at)
            SELECT u.tx, leg.account_id, leg.amount, leg.balance_after, p_created_at
              FROM unnest(v_tx, v_state, p_accounts1, p_amounts1, v_bal1, p_accounts2, p_amounts2,
                          v_bal2) WITH ORDINALITY AS u(tx, state, a1, m1, b1, a2, m2, b2, i)
             CROSS JOIN LATERAL (VALUES (1, u.a1, u.m1, u.b1), (2, u.a2, u.m2, u.b2))
                   AS leg(n, account_id, amount, balance_after)
             WHERE u.state = 'p'
             ORDER BY u.i, leg.n;
            RETURN QUERY SELECT v_tx, v_state, v_refused, v_seen, v_bal1, v_bal2;
            RETURN;
        EXCEPTION WHEN SQLSTATE 'WL002' THEN
            -- Everything of this attempt is undone; the variables keep what it found.
            IF p_atomic THEN
                FOR i IN 1 .. n LOOP
                    IF v_state[i] = 'p' THEN
                        v_state[i] := 'x';
                    END IF;
                END LOOP;
                RETURN QUERY SELECT array_fill(NULL::bigint, ARRAY[n]), v_state, v_refused, v_seen,
                                    array_fill(NULL::bigint, ARRAY[n]),
                                    array_fill(NULL::bigint, ARRAY[n]);
                RETURN;
            END IF;
        END;
    END LOOP;
END $$
"""


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(WALLET_TAKES)
        op.execute(ADD_TO_SHARD)
        op.execute(APPLY_BATCH)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION ledger_apply_batch")
        op.execute("DROP FUNCTION ledger_add_to_shard")
        op.execute("DROP FUNCTION ledger_wallet_takes")
