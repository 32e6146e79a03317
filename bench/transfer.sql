-- One top-up through ledger_apply, the server function the API path calls (wallet_web/ledger.py
-- `_apply_in_database`): wallet leg first (wallets lock in id order, house legs after), the
-- Treasury leg on a random one of its 16 shards, a fresh reference id.
-- Variables (-D): users = synthetic users in bench.wallets, treasury = GOLD Treasury account id.
\set n random(1, :users)
\set amount random(1, 1000)
\set debit -1 * :amount
\set shard random(0, 15)
SELECT transaction_id, balances FROM ledger_apply(
    'topup', 'pgbench-' || gen_random_uuid(), md5(random()::text), '', NULL::jsonb,
    'pgbench', NULL, NULL, NULL, now(),
    ARRAY[(SELECT account_id FROM bench.wallets WHERE n = :n), :treasury]::bigint[],
    ARRAY[:amount, :debit]::bigint[], ARRAY[true, false], :shard);
