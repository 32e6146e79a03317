"""Numeric bounds of stored money. Every amount, balance and sum the ledger stores or adds up
fits in a signed 64-bit integer by construction, on PostgreSQL (bigint) and on SQLite (whose
integers silently become floats when they overflow).

- A wallet holds at most its asset's `max_balance` (settable, at most BALANCE_CEILING) and a
  movement moves at most the asset's `max_amount` into or out of a wallet.
- A house account's balance is spread over HOUSE_SHARDS rows, each within +-SHARD_CEILING.
  With at most HOUSE_ACCOUNTS_PER_ASSET house accounts per asset, the sum of every house shard
  of an asset stays within a bigint, and so does the sum of its wallets (the two sum to zero).
"""
BIGINT_MAX = 2**63 - 1
HOUSE_SHARDS = 16
HOUSE_ACCOUNTS_PER_ASSET = 8
SHARD_CEILING = BIGINT_MAX // (HOUSE_SHARDS * HOUSE_ACCOUNTS_PER_ASSET)  # 2**56 - 1
BALANCE_CEILING = 10**15

# Defaults of a new asset, far below the ceilings; `flask --app wsgi assets set-limits` changes them.
DEFAULT_MAX_AMOUNT = 10**9
DEFAULT_MAX_BALANCE = 10**12


# Bulk grants (bulk_csv.py): the largest file and the most rows one upload may hold.
BULK_FILE_MAX_BYTES = 8 * 1024 * 1024
BULK_MAX_ROWS = 100_000


def is_id(value: object) -> bool:
    """A database id: a positive bigint (never a bool)."""
    return type(value) is int and 0 < value <= BIGINT_MAX

# Operator controls (wallet_web/controls.py): an asset without a stored policy uses these.
DEFAULT_APPROVAL_THRESHOLD = 10_000  # a dashboard movement of at least this needs a checker
DEFAULT_OPERATOR_DAILY_LIMIT = 50_000  # per operator, asset and UTC day, pending included
