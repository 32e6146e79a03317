"""Operator controls: reason codes, per-asset policies (approval threshold, operator daily
limit) and per-operator limits, movement requests (four-eyes approvals, daily limits), the
approver right and the auditor role on operators, and the append-only audit_events log.

The lists are written out: a migration is history and must not change when the code does.

Revision ID: 0006
Revises: 0005
"""
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JsonDoc = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
CEILING = 10**15
ROLES = ("viewer", "auditor", "operator", "admin")
ROLES_BEFORE = ("viewer", "operator", "admin")
KINDS = ("topup", "bonus", "spend", "transfer", "reversal", "genesis", "adjustment")
REQUEST_STATUSES = ("posting", "posted", "pending", "approving", "approved", "rejected",
                    "expired", "failed")
REASON_CODES = (
    ("goodwill", "Goodwill"),
    ("compensation", "Compensation for an outage or a bug"),
    ("fraud_recovery", "Fraud recovery"),
    ("correction", "Correction of an earlier mistake"),
    ("promotion", "Promotion or event prize"),
    ("purchase_support", "Purchase support (a player's purchase by hand)"),
)


def _in(column, values):
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _integers(*columns):
    if op.get_bind().dialect.name != "sqlite":
        return ()
    return tuple(sa.CheckConstraint(f"{column} IS NULL OR typeof({column}) = 'integer'",
                                    name=f"{column}_is_integer") for column in columns)


def _at():
    return sa.DateTime(timezone=True)


def upgrade():
    with op.batch_alter_table("operators") as batch:
        batch.add_column(sa.Column("can_approve", sa.Boolean(), nullable=False,
                                   server_default="0"))
        batch.drop_constraint(op.f("ck_operators_role_known"), type_="check")
        batch.create_check_constraint(op.f("ck_operators_role_known"), _in("role", ROLES))
    op.execute("UPDATE operators SET can_approve = (role = 'admin')")

    codes = op.create_table(
        "reason_codes",
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("title", sa.String(128), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _at(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_reason_codes")),
    )
    created = datetime.now(timezone.utc)
    op.bulk_insert(codes, [{"code": code, "title": title, "active": True,
                            "created_at": created} for code, title in REASON_CODES])
    op.create_table(
        "policies",
        sa.Column("asset_code", sa.String(16), nullable=False),
        sa.Column("approval_threshold", sa.BigInteger(), nullable=False),
        sa.Column("operator_daily_limit", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _at(), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.CheckConstraint(f"approval_threshold BETWEEN 1 AND {CEILING}",
                           name=op.f("ck_policies_approval_threshold_in_range")),
        sa.CheckConstraint(f"operator_daily_limit BETWEEN 0 AND {CEILING}",
                           name=op.f("ck_policies_operator_daily_limit_in_range")),
        *_integers("approval_threshold", "operator_daily_limit"),
        sa.ForeignKeyConstraint(["asset_code"], ["assets.code"],
                                name=op.f("fk_policies_asset_code_assets")),
        sa.PrimaryKeyConstraint("asset_code", name=op.f("pk_policies")),
    )
    op.create_table(
        "operator_limits",
        sa.Column("operator_id", BigId, nullable=False),
        sa.Column("asset_code", sa.String(16), nullable=False),
        sa.Column("daily_limit", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _at(), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.CheckConstraint(f"daily_limit BETWEEN 0 AND {CEILING}",
                           name=op.f("ck_operator_limits_daily_limit_in_range")),
        *_integers("daily_limit"),
        sa.ForeignKeyConstraint(["operator_id"], ["operators.id"],
                                name=op.f("fk_operator_limits_operator_id_operators")),
        sa.ForeignKeyConstraint(["asset_code"], ["assets.code"],
                                name=op.f("fk_operator_limits_asset_code_assets")),
        sa.PrimaryKeyConstraint("operator_id", "asset_code", name=op.f("pk_operator_limits")),
    )
    _create_movement_requests()
    _create_audit_events()


def _create_movement_requests():
    op.create_table(
        "movement_requests",
        sa.Column("id", BigId, nullable=False),
        sa.Column("reference_id", sa.String(128), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("user_id", BigId, nullable=True),
        sa.Column("to_user_id", BigId, nullable=True),
        sa.Column("reverses_id", BigId, nullable=True),
        sa.Column("asset_code", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("reason_code", sa.String(32), nullable=False),
        sa.Column("ticket", sa.String(300), nullable=True),
        sa.Column("maker_id", BigId, nullable=False),
        sa.Column("maker", sa.String(128), nullable=False),
        sa.Column("checker_id", BigId, nullable=True),
        sa.Column("checker", sa.String(128), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column("transaction_id", BigId, nullable=True),
        sa.Column("created_at", _at(), nullable=False),
        sa.Column("expires_at", _at(), nullable=True),
        sa.Column("decided_at", _at(), nullable=True),
        sa.CheckConstraint(_in("status", REQUEST_STATUSES),
                           name=op.f("ck_movement_requests_status_known")),
        sa.CheckConstraint(_in("kind", KINDS), name=op.f("ck_movement_requests_kind_known")),
        sa.CheckConstraint(f"amount BETWEEN 1 AND {CEILING}",
                           name=op.f("ck_movement_requests_amount_in_range")),
        *_integers("amount"),
        *(sa.ForeignKeyConstraint([column], [target],
                                  name=op.f(f"fk_movement_requests_{column}_{target.split('.')[0]}"))
          for column, target in (("user_id", "users.id"), ("to_user_id", "users.id"),
                                 ("reverses_id", "transactions.id"),
                                 ("asset_code", "assets.code"),
                                 ("reason_code", "reason_codes.code"),
                                 ("maker_id", "operators.id"), ("checker_id", "operators.id"),
                                 ("transaction_id", "transactions.id"))),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_movement_requests")),
        sa.UniqueConstraint("reference_id", name=op.f("uq_movement_requests_reference_id")),
    )
    op.create_index("ix_movement_requests_maker_id_asset_code_created_at", "movement_requests",
                    ["maker_id", "asset_code", "created_at"])
    op.create_index("ix_movement_requests_status_id", "movement_requests", ["status", "id"])


def _create_audit_events():
    op.create_table(
        "audit_events",
        sa.Column("id", BigId, nullable=False),
        sa.Column("created_at", _at(), nullable=False),
        sa.Column("action", sa.String(48), nullable=False),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("operator_id", BigId, nullable=True),
        sa.Column("api_key_id", BigId, nullable=True),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("object_type", sa.String(32), nullable=True),
        sa.Column("object_id", sa.String(128), nullable=True),
        sa.Column("details", JsonDoc, nullable=True),
        sa.CheckConstraint("outcome IN ('done', 'refused')",
                           name=op.f("ck_audit_events_outcome_known")),
        sa.ForeignKeyConstraint(["operator_id"], ["operators.id"],
                                name=op.f("fk_audit_events_operator_id_operators")),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"],
                                name=op.f("fk_audit_events_api_key_id_api_keys")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index("ix_audit_events_action_id", "audit_events", ["action", "id"])
    op.create_index("ix_audit_events_operator_id_id", "audit_events", ["operator_id", "id"])
    op.create_index("ix_audit_events_created_at", "audit_events", ["created_at"])
    if op.get_bind().dialect.name == "postgresql":  # forbid_ledger_change() is 0001's
        op.execute("CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON "
                   "audit_events FOR EACH ROW EXECUTE FUNCTION forbid_ledger_change()")
        return
    for event in ("UPDATE", "DELETE"):
        op.execute(f"CREATE TRIGGER audit_events_no_{event.lower()} BEFORE {event} ON "
                   f"audit_events BEGIN SELECT RAISE(ABORT, '{event} on audit_events is not "
                   "allowed: the audit trail is append-only'); END")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_events_append_only ON audit_events")
    op.drop_table("audit_events")  # SQLite drops the table's triggers with it
    op.drop_table("movement_requests")
    op.drop_table("operator_limits")
    op.drop_table("policies")
    op.drop_table("reason_codes")
    op.execute("UPDATE operators SET role = 'viewer' WHERE role = 'auditor'")  # read-only both
    with op.batch_alter_table("operators") as batch:
        batch.drop_constraint(op.f("ck_operators_role_known"), type_="check")
        batch.create_check_constraint(op.f("ck_operators_role_known"), _in("role", ROLES_BEFORE))
        batch.drop_column("can_approve")
