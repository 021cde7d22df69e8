"""The ledger: log identity, leaves with their subtree hashes and seals, signed checkpoints.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TABLES = ("ledger_log", "ledger_leaves", "ledger_checkpoints")

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION mrm_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'mrm: % on % is not allowed: the ledger is append-only', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END $$;
"""


def upgrade() -> None:
    op.create_table(
        "ledger_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("origin", sa.String(255), nullable=False),
        sa.Column("verifier_key", sa.Text, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.CheckConstraint("id = 1", name="ledger_log_single_row"),
    )
    op.create_table(
        "ledger_leaves",
        sa.Column("leaf_index", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("record_id", sa.Uuid, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("model_name", sa.String(128)),
        sa.Column("model_version", sa.String(64)),
        sa.Column("subject", sa.String(128)),
        sa.Column("trace_id", sa.String(32)),
        sa.Column("span_id", sa.String(16)),
        sa.Column("recorded_at_us", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("subtree_hashes", sa.LargeBinary, nullable=False),
        sa.Column("seal", sa.LargeBinary(32), nullable=False),
        sa.CheckConstraint("leaf_index >= 0", name="ledger_leaves_index_nonnegative"),
        sa.UniqueConstraint("record_id", name="ledger_leaves_record_id_key"),
    )
    op.create_index("ix_ledger_leaves_kind", "ledger_leaves", ["kind", "leaf_index"])
    op.create_index(
        "ix_ledger_leaves_model",
        "ledger_leaves",
        ["model_name", "model_version", "leaf_index"],
        postgresql_where=sa.text("model_name IS NOT NULL"),
        sqlite_where=sa.text("model_name IS NOT NULL"),
    )
    op.create_index(
        "ix_ledger_leaves_subject",
        "ledger_leaves",
        ["subject", "leaf_index"],
        postgresql_where=sa.text("subject IS NOT NULL"),
        sqlite_where=sa.text("subject IS NOT NULL"),
    )
    op.create_index(
        "ix_ledger_leaves_trace",
        "ledger_leaves",
        ["trace_id"],
        postgresql_where=sa.text("trace_id IS NOT NULL"),
        sqlite_where=sa.text("trace_id IS NOT NULL"),
    )
    op.create_index("ix_ledger_leaves_recorded_at", "ledger_leaves", ["recorded_at_us"])
    op.create_table(
        "ledger_checkpoints",
        sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("signed_at_us", sa.BigInteger, nullable=False),
    )
    _append_only_triggers()


def _append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        for table in _TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION mrm_reject_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION mrm_reject_change()"
            )
        return
    for table in _TABLES:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'mrm: {event} on {table} is not allowed: "
                "the ledger is append-only'); END"
            )


def downgrade() -> None:
    raise RuntimeError("the ledger cannot be downgraded: that would destroy audit records")
