"""PostgreSQL: no foreign-key check on the two rows every movement shares.

A foreign-key check locks the row it finds (FOR KEY SHARE). `postings.account_id` made every
movement lock its house account's row, and `transactions.api_key_id` the row of the key that
sent it: all concurrent movements share those two rows, so each lock had to join a growing
multixact and write WAL for it, which the house-account shards exist to avoid. pgbench on
ledger_apply, 32 clients, this box: 1,364-1,695 transfers/s with the checks, 1,826-1,875
without.

What the checks proved is kept without the lock:
- ledger_apply and ledger_apply_batch write a posting only for an account whose row (or shard)
  they have just updated, and the SQLite statements the same; a transaction's api_key_id is the
  authenticated caller's;
- accounts and API keys can no longer be deleted (a trigger, as for the ledger's own tables);
- `ledger verify` checks that every posting's account and every transaction's key exist.
SQLite keeps both foreign keys: they take no shared row lock there.

Revision ID: 0012
Revises: 0011
"""
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

DROPPED = (("postings", "fk_postings_account_id_accounts", "account_id", "accounts"),
           ("transactions", "fk_transactions_api_key_id_api_keys", "api_key_id", "api_keys"))
UNDELETABLE = ("accounts", "api_keys")


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, name, _column, _referred in DROPPED:
        op.drop_constraint(name, table, type_="foreignkey")
    for table in UNDELETABLE:  # forbid_ledger_change() is 0001's
        op.execute(f"CREATE TRIGGER {table}_never_deleted BEFORE DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION forbid_ledger_change()")


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in UNDELETABLE:
        op.execute(f"DROP TRIGGER {table}_never_deleted ON {table}")
    for table, name, column, referred in DROPPED:
        op.create_foreign_key(name, table, referred, [column], ["id"])
