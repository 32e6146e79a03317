"""Accounts lifecycle: users get an external_id and a status (active, frozen, closed), every
status change is recorded in status_changes, wallets may be closed, and transactions may be
transfers.

ledger_apply (PostgreSQL) now lets a credit land on a frozen wallet (compensation must reach a
frozen player) and refuses everything on a closed one; house accounts still take legs only
while active. The lists are written out: a migration is history and must not change when
wallet_web/kinds.py does.

Revision ID: 0005
Revises: 0004
"""
import importlib.util
import os

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
KINDS = ("topup", "bonus", "spend", "transfer", "reversal", "genesis", "adjustment")
KINDS_BEFORE = ("topup", "bonus", "spend", "reversal", "genesis", "adjustment")
STATUSES = ("active", "frozen", "closed")
STATUSES_BEFORE = ("active", "frozen")
WALLET_MAY_TAKE = ("(a.status = 'active' OR (a.status = 'frozen' AND p_amounts[i] > 0))")


def _in(column, values):
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade():
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("external_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("status", sa.String(16), nullable=False,
                                   server_default="active"))
        batch.create_unique_constraint(op.f("uq_users_external_id"), ["external_id"])
        batch.create_check_constraint(op.f("ck_users_status_known"), _in("status", STATUSES))
        batch.create_index("ix_users_status_id", ["status", "id"])
    op.create_table(
        "status_changes",
        sa.Column("id", BigId, nullable=False),
        sa.Column("user_id", BigId, nullable=False),
        sa.Column("previous_status", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("operator_id", BigId, nullable=True),
        sa.Column("api_key_id", BigId, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(_in("status", STATUSES), name=op.f("ck_status_changes_status_known")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_status_changes_user_id_users")),
        sa.ForeignKeyConstraint(["operator_id"], ["operators.id"],
                                name=op.f("fk_status_changes_operator_id_operators")),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"],
                                name=op.f("fk_status_changes_api_key_id_api_keys")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_changes")),
    )
    op.create_index("ix_status_changes_user_id_id", "status_changes", ["user_id", "id"])
    _replace_check("accounts", "status_known", _in("status", STATUSES))
    _replace_check("transactions", "kind_known", _in("kind", KINDS))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_apply_0003().replace("a.status = 'active'", WALLET_MAY_TAKE, 1))


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_apply_0003())
    _replace_check("transactions", "kind_known", _in("kind", KINDS_BEFORE))
    _replace_check("accounts", "status_known", _in("status", STATUSES_BEFORE))
    op.drop_index("ix_status_changes_user_id_id", "status_changes")
    op.drop_table("status_changes")
    with op.batch_alter_table("users") as batch:
        batch.drop_index("ix_users_status_id")
        batch.drop_constraint(op.f("ck_users_status_known"), type_="check")
        batch.drop_constraint(op.f("uq_users_external_id"), type_="unique")
        batch.drop_column("status")
        batch.drop_column("external_id")


def _replace_check(table: str, name: str, condition: str):
    constraint = f"ck_{table}_{name}"
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {constraint} CHECK ({condition}) NOT VALID")
        op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {constraint}")
        return
    with op.batch_alter_table(table) as batch:  # rebuilds the table, dropping its triggers
        batch.drop_constraint(op.f(constraint), type_="check")
        batch.create_check_constraint(op.f(constraint), condition)
    if table == "transactions":
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER transactions_no_{event.lower()} BEFORE {event} ON transactions "
                f"BEGIN SELECT RAISE(ABORT, '{event} on transactions is not allowed: "
                "the ledger is append-only'); END")


def _apply_0003() -> str:
    path = os.path.join(os.path.dirname(__file__), "0003_money_limits.py")
    spec = importlib.util.spec_from_file_location("revision_0003", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.APPLY
