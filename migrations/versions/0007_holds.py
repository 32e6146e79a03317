"""Holds: two-phase movements. A hold moves an amount from a wallet to its asset's `holds`
house account; a capture moves it on to revenue (and any remainder back), a void or an
expiry moves it all back. The `holds` table keeps each hold's state and links.

Each existing asset gets its holds account (and its 16 shards) here; new assets get theirs
from accounts.ensure_house_accounts. The lists are written out: a migration is history.

Revision ID: 0007
Revises: 0006
"""
import importlib.util
import os
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JsonDoc = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
CEILING = 10**15
SHARDS = 16
ACCOUNT_KINDS = ("wallet", "treasury", "promotions", "revenue", "equity", "holds")
ACCOUNT_KINDS_BEFORE = ("wallet", "treasury", "promotions", "revenue", "equity")
KINDS = ("topup", "bonus", "spend", "transfer", "reversal", "genesis", "adjustment", "hold",
         "capture", "void")
KINDS_BEFORE = ("topup", "bonus", "spend", "transfer", "reversal", "genesis", "adjustment")
HOLD_STATUSES = ("open", "captured", "voided", "expired")


def _in(column, values):
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade():
    _replace_check("accounts", "kind_known", _in("kind", ACCOUNT_KINDS))
    _replace_check("transactions", "kind_known", _in("kind", KINDS))
    _replace_check("movement_requests", "kind_known", _in("kind", KINDS))
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "holds",
        sa.Column("id", BigId, nullable=False),
        sa.Column("account_id", BigId, nullable=False),
        sa.Column("user_id", BigId, nullable=False),
        sa.Column("asset_code", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("captured_amount", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reference_id", sa.String(128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("hold_transaction_id", BigId, nullable=False),
        sa.Column("settle_transaction_id", BigId, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(_in("status", HOLD_STATUSES), name=op.f("ck_holds_status_known")),
        sa.CheckConstraint(f"amount BETWEEN 1 AND {CEILING}", name=op.f("ck_holds_amount_in_range")),
        sa.CheckConstraint("captured_amount IS NULL OR captured_amount BETWEEN 1 AND amount",
                           name=op.f("ck_holds_captured_within_amount")),
        *((sa.CheckConstraint(f"{c} IS NULL OR typeof({c}) = 'integer'", name=f"{c}_is_integer")
           for c in ("amount", "captured_amount")) if sqlite else ()),
        *(sa.ForeignKeyConstraint([column], [target],
                                  name=op.f(f"fk_holds_{column}_{target.split('.')[0]}"))
          for column, target in (("account_id", "accounts.id"), ("user_id", "users.id"),
                                 ("asset_code", "assets.code"),
                                 ("hold_transaction_id", "transactions.id"),
                                 ("settle_transaction_id", "transactions.id"))),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holds")),
        sa.UniqueConstraint("hold_transaction_id", name=op.f("uq_holds_hold_transaction_id")),
        sa.UniqueConstraint("settle_transaction_id", name=op.f("uq_holds_settle_transaction_id")),
    )
    op.create_index("ix_holds_user_id_id", "holds", ["user_id", "id"])
    op.create_index("ix_holds_open_account_id", "holds", ["account_id", "expires_at"],
                    postgresql_where=sa.text("status = 'open'"),
                    sqlite_where=sa.text("status = 'open'"))
    op.create_index("ix_holds_open_expires_at", "holds", ["expires_at"],
                    postgresql_where=sa.text("status = 'open'"),
                    sqlite_where=sa.text("status = 'open'"))
    with op.batch_alter_table("movement_requests") as batch:  # a dashboard release of a hold
        batch.add_column(sa.Column("hold_id", BigId, nullable=True))
        batch.create_foreign_key(op.f("fk_movement_requests_hold_id_holds"), "holds",
                                 ["hold_id"], ["id"])
    _open_holds_accounts()


def _open_holds_accounts():
    conn = op.get_bind()
    system = conn.execute(sa.text("SELECT id FROM users WHERE username = 'system'")).scalar()
    if system is None:  # an empty database: seed.py opens them with the other house accounts
        return
    now = datetime.now(timezone.utc)
    for (asset,) in conn.execute(sa.text("SELECT code FROM assets ORDER BY code")).all():
        account = conn.execute(sa.text(
            "INSERT INTO accounts (user_id, asset_code, kind, name, balance, allow_negative, "
            "status, created_at) VALUES (:user, :asset, 'holds', :name, 0, true, 'active', :now) "
            "RETURNING id"), {"user": system, "asset": asset, "name": f"Holds {asset}",
                              "now": now}).scalar_one()
        conn.execute(sa.text("INSERT INTO balance_shards (account_id, shard, balance) "
                             "VALUES (:account, :shard, 0)"),
                     [{"account": account, "shard": n} for n in range(SHARDS)])


def downgrade():
    with op.batch_alter_table("movement_requests") as batch:
        batch.drop_constraint(op.f("fk_movement_requests_hold_id_holds"), type_="foreignkey")
        batch.drop_column("hold_id")
    op.drop_index("ix_holds_open_expires_at", "holds")
    op.drop_index("ix_holds_open_account_id", "holds")
    op.drop_index("ix_holds_user_id_id", "holds")
    op.drop_table("holds")
    _replace_check("movement_requests", "kind_known", _in("kind", KINDS_BEFORE))
    _replace_check("transactions", "kind_known", _in("kind", KINDS_BEFORE))
    op.execute("DELETE FROM balance_shards WHERE account_id IN "
               "(SELECT id FROM accounts WHERE kind = 'holds')")
    op.execute("DELETE FROM accounts WHERE kind = 'holds'")  # only unused ones can go
    _replace_check("accounts", "kind_known", _in("kind", ACCOUNT_KINDS_BEFORE))


def _replace_check(table: str, name: str, condition: str):
    _revision("0005_accounts_lifecycle")._replace_check(table, name, condition)


def _revision(name: str):
    path = os.path.join(os.path.dirname(__file__), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"revision_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
