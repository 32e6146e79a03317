"""Events for integrations (a transactional outbox), webhook endpoints and their deliveries,
and the hash chain that seals transactions and audit events.

Every transaction row gets its `transaction.posted` event from a trigger, in the statement
that inserts it: no writer can forget it and no crash can separate them. Events, chain
entries and audit events carry the writing transaction's id (`xid`, PostgreSQL's
pg_current_xact_id(); 0 on SQLite, where writers are serialized): readers and the sealer take
rows in (xid, id) order and only below the oldest transaction still running, so a row that
commits late is never skipped (events.py). SQLite rebuilds a table in batch mode and drops its
triggers: a later migration that rebuilds `transactions` must create TRIGGERS_SQLITE again.

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
EVENT_TYPES = ("transaction.posted", "user.created", "user.status_changed", "approval.decided")
DELIVERY_STATUSES = ("pending", "delivered", "failed")
CHAINS = ("ledger", "audit")
CURRENT_XID = "(pg_current_xact_id()::text)::bigint"
APPEND_ONLY = ("events", "chain_entries")

EMIT_PG = """
CREATE FUNCTION emit_transaction_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (type, created_at, transaction_id)
    SELECT 'transaction.posted', inserted.created_at, inserted.id
      FROM inserted ORDER BY inserted.id;
    RETURN NULL;
END $$
"""
EMIT_TRIGGER_PG = ("CREATE TRIGGER transactions_emit_events AFTER INSERT ON transactions "
                   "REFERENCING NEW TABLE AS inserted "
                   "FOR EACH STATEMENT EXECUTE FUNCTION emit_transaction_events()")
TRIGGERS_SQLITE = [
    "CREATE TRIGGER transactions_emit_events AFTER INSERT ON transactions BEGIN "
    "INSERT INTO events (xid, type, created_at, transaction_id) "
    "VALUES (0, 'transaction.posted', NEW.created_at, NEW.id); END",
]


def _in(column, values):
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _xid_column() -> sa.Column:
    postgres = op.get_bind().dialect.name == "postgresql"
    return sa.Column("xid", sa.BigInteger(), nullable=False,
                     server_default=sa.text(CURRENT_XID) if postgres else sa.text("0"))


def upgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "events",
        sa.Column("id", BigId, nullable=False),
        _xid_column(),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=True),
        sa.Column("data", Json, nullable=True),
        sa.CheckConstraint(_in("type", EVENT_TYPES), name=op.f("ck_events_type_known")),
        sa.CheckConstraint("(transaction_id IS NULL) <> (data IS NULL)",
                           name=op.f("ck_events_transaction_or_data")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_xid_id", "events", ["xid", "id"])
    op.add_column("audit_events", sa.Column("xid", sa.BigInteger(), nullable=False,
                                            server_default=sa.text("0")))
    if postgres:  # rows before this revision keep 0: they are sealed first, in id order
        op.execute(f"ALTER TABLE audit_events ALTER COLUMN xid SET DEFAULT {CURRENT_XID}")
    op.create_index("ix_audit_events_xid_id", "audit_events", ["xid", "id"])

    op.create_table(
        "chain_entries",
        sa.Column("chain", sa.String(8), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(_in("chain", CHAINS), name=op.f("ck_chain_entries_chain_known")),
        sa.PrimaryKeyConstraint("chain", "seq", name=op.f("pk_chain_entries")),
        sa.UniqueConstraint("chain", "entry_id", name=op.f("uq_chain_entries_chain")),
    )
    op.create_table(
        "chain_heads",
        sa.Column("chain", sa.String(8), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("after_xid", sa.BigInteger(), nullable=False),
        sa.Column("after_id", sa.BigInteger(), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(_in("chain", CHAINS), name=op.f("ck_chain_heads_chain_known")),
        sa.PrimaryKeyConstraint("chain", name=op.f("pk_chain_heads")),
    )
    op.bulk_insert(sa.table("chain_heads", sa.column("chain"), sa.column("seq"),
                            sa.column("hash"), sa.column("after_xid"), sa.column("after_id")),
                   [{"chain": chain, "seq": 0, "hash": "0" * 64, "after_xid": -1, "after_id": 0}
                    for chain in CHAINS])

    op.create_table(
        "webhook_endpoints",
        sa.Column("id", BigId, nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("event_types", Json, nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("description", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("after_xid", sa.BigInteger(), nullable=False),
        sa.Column("after_id", sa.BigInteger(), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", BigId, nullable=False),
        sa.Column("endpoint_id", BigId, nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("give_up_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(_in("status", DELIVERY_STATUSES),
                           name=op.f("ck_webhook_deliveries_status_known")),
        sa.ForeignKeyConstraint(["endpoint_id"], ["webhook_endpoints.id"],
                                name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("endpoint_id", "event_id",
                            name=op.f("uq_webhook_deliveries_endpoint_id")),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries",
                    ["endpoint_id", "next_attempt_at"],
                    postgresql_where=sa.text("status = 'pending'"),
                    sqlite_where=sa.text("status = 'pending'"))
    op.create_index("ix_webhook_deliveries_endpoint_id_id", "webhook_deliveries",
                    ["endpoint_id", "id"])

    # Transactions posted before this revision get their event too, xid 0 like the audit
    # events before it: the feed and the sealer take them first, in id order.
    op.execute("INSERT INTO events (xid, type, created_at, transaction_id) "
               "SELECT 0, 'transaction.posted', created_at, id FROM transactions ORDER BY id")
    if postgres:
        op.execute(EMIT_PG)
        op.execute(EMIT_TRIGGER_PG)
        for table in APPEND_ONLY:  # forbid_ledger_change() is 0001's
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION forbid_ledger_change()")
        return
    for trigger in TRIGGERS_SQLITE:
        op.execute(trigger)
    for table in APPEND_ONLY:
        for event in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{event} on {table} is not allowed: "
                       "it is append-only'); END")


def downgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("DROP TRIGGER transactions_emit_events ON transactions")
        op.execute("DROP FUNCTION emit_transaction_events()")
    else:
        op.execute("DROP TRIGGER transactions_emit_events")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
    op.drop_table("chain_heads")
    op.drop_table("chain_entries")
    op.drop_index("ix_audit_events_xid_id", "audit_events")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("xid")
    if not postgres:  # batch mode rebuilt audit_events without its triggers
        for event in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_events_no_{event.lower()} BEFORE {event} ON "
                       f"audit_events BEGIN SELECT RAISE(ABORT, '{event} on audit_events is not "
                       "allowed: the audit trail is append-only'); END")
    op.drop_table("events")
