"""Indexes for finding transactions by what a player tells support: a reference's or a
ticket's first characters, words of the description (the reason), an amount on a date; and
users by the first characters of their name, email or external id.

A reference's prefix: text_pattern_ops on PostgreSQL (LIKE 'abc%' is an index range whatever
the database's collation); SQLite matches it with GLOB, which uses a plain index. PostgreSQL
only: a ticket's and a user's prefixes (text_pattern_ops over the lowered text) and the
description's words (GIN over to_tsvector('simple', ...)); SQLite, the embedded default,
matches those with LIKE.
The expressions are the ones queries.py writes: the planner uses an expression index only for
the same text.

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

POSTGRES_INDEXES = {
    "ix_transactions_ticket_prefix":
        # Not partial: ANALYZE keeps statistics of an expression index, which the planner
        # reads to tell a rare ticket from a common one only when the index is whole.
        "ON transactions (lower(metadata ->> 'ticket') text_pattern_ops)",
    "ix_transactions_description_words":
        "ON transactions USING gin (to_tsvector('simple'::regconfig, description))",
    # The lookup's and the users list's prefixes, case-insensitive (queries.find_users).
    **{f"ix_users_{column}_prefix": f"ON users (lower({column}) text_pattern_ops)"
       for column in ("username", "email", "external_id")},
}


def upgrade():
    op.create_index("ix_postings_amount_created_at", "postings", ["amount", "created_at"])
    op.create_index("ix_transactions_reference_id_prefix", "transactions", ["reference_id"],
                    postgresql_ops={"reference_id": "text_pattern_ops"})
    if op.get_bind().dialect.name == "postgresql":
        for name, definition in POSTGRES_INDEXES.items():
            op.execute(sa.text(f"CREATE INDEX {name} {definition}"))


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for name in POSTGRES_INDEXES:
            op.execute(sa.text(f"DROP INDEX {name}"))
    op.drop_index("ix_transactions_reference_id_prefix", "transactions")
    op.drop_index("ix_postings_amount_created_at", "postings")
