"""Bulk grants: an uploaded file of grants (bulk_grants), its totals per asset, its rows as
previewed, and each row's outcome once posted. Lists are written out: a migration is history.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op


revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
CEILING = 10**15
KINDS = ("topup", "bonus", "spend", "transfer", "reversal", "genesis", "adjustment", "hold",
         "capture", "void")
STATUSES = ("draft", "pending", "posting", "done", "rejected", "expired")
OUTCOMES = ("posted", "replayed", "refused")
SUBMITTED = ("pending", "posting", "done")


def _in(column, values):
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [target],
                                   name=op.f(f"fk_{table}_{column}_{target.split('.')[0]}"))


def _integer(table: str, column: str) -> tuple:
    """SQLite only: an overflowing integer would silently become a float."""
    if op.get_bind().dialect.name != "sqlite":
        return ()
    return (sa.CheckConstraint(f"{column} IS NULL OR typeof({column}) = 'integer'",
                               name=op.f(f"ck_{table}_{column}_is_integer")),)


def upgrade():
    op.create_table(
        "bulk_grants",
        sa.Column("id", BigId, nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("user_column", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rows_total", sa.Integer(), nullable=False),
        sa.Column("rows_done", sa.Integer(), nullable=False),
        sa.Column("posted", sa.Integer(), nullable=False),
        sa.Column("replayed", sa.Integer(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("reason_code", sa.String(32), nullable=True),
        sa.Column("ticket", sa.String(300), nullable=True),
        sa.Column("needs_approval", sa.Boolean(), nullable=False),
        sa.Column("maker_id", BigId, nullable=False),
        sa.Column("maker", sa.String(128), nullable=False),
        sa.Column("checker_id", BigId, nullable=True),
        sa.Column("checker", sa.String(128), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(_in("kind", KINDS), name=op.f("ck_bulk_grants_kind_known")),
        sa.CheckConstraint(_in("status", STATUSES), name=op.f("ck_bulk_grants_status_known")),
        _fk("bulk_grants", "checker_id", "operators.id"),
        _fk("bulk_grants", "maker_id", "operators.id"),
        _fk("bulk_grants", "reason_code", "reason_codes.code"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_grants")),
    )
    op.create_index("ix_bulk_grants_file_sha256", "bulk_grants", ["file_sha256"])
    submitted = sa.text(f"status IN {SUBMITTED}")
    op.create_index("uq_bulk_grants_submitted_file", "bulk_grants", ["file_sha256"], unique=True,
                    postgresql_where=submitted, sqlite_where=submitted)
    op.create_index("ix_bulk_grants_maker_id_submitted_at", "bulk_grants",
                    ["maker_id", "submitted_at"])
    op.create_index("ix_bulk_grants_status_id", "bulk_grants", ["status", "id"])
    op.create_table(
        "bulk_grant_totals",
        sa.Column("grant_id", BigId, nullable=False),
        sa.Column("asset_code", sa.String(16), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        *_integer("bulk_grant_totals", "total"),
        _fk("bulk_grant_totals", "asset_code", "assets.code"),
        _fk("bulk_grant_totals", "grant_id", "bulk_grants.id"),
        sa.PrimaryKeyConstraint("grant_id", "asset_code", name=op.f("pk_bulk_grant_totals")),
    )
    op.create_table(
        "bulk_grant_rows",
        sa.Column("grant_id", BigId, nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("user_ref", sa.String(64), nullable=False),
        sa.Column("asset_code", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        *_integer("bulk_grant_rows", "amount"),
        sa.CheckConstraint(f"amount BETWEEN 1 AND {CEILING}",
                           name=op.f("ck_bulk_grant_rows_amount_in_range")),
        _fk("bulk_grant_rows", "grant_id", "bulk_grants.id"),
        sa.PrimaryKeyConstraint("grant_id", "line", name=op.f("pk_bulk_grant_rows")),
    )
    op.create_table(
        "bulk_grant_outcomes",
        sa.Column("grant_id", BigId, nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=True),
        sa.Column("error_code", sa.String(48), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.CheckConstraint(_in("status", OUTCOMES),
                           name=op.f("ck_bulk_grant_outcomes_status_known")),
        _fk("bulk_grant_outcomes", "grant_id", "bulk_grants.id"),
        sa.PrimaryKeyConstraint("grant_id", "line", name=op.f("pk_bulk_grant_outcomes")),
    )


def downgrade():
    for table in ("bulk_grant_outcomes", "bulk_grant_rows", "bulk_grant_totals"):
        op.drop_table(table)
    for index in ("ix_bulk_grants_status_id", "ix_bulk_grants_maker_id_submitted_at",
                  "uq_bulk_grants_submitted_file", "ix_bulk_grants_file_sha256"):
        op.drop_index(index, "bulk_grants")
    op.drop_table("bulk_grants")
