"""The ledger's tables, as the store queries them. Alembic migrations create them."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

log_identity = sa.Table(
    "ledger_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("origin", sa.String(255), nullable=False),
    sa.Column("verifier_key", sa.Text, nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
)

leaves = sa.Table(
    "ledger_leaves",
    metadata,
    sa.Column("leaf_index", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("record_id", sa.Uuid, nullable=False, unique=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("model_name", sa.String(128), nullable=True),
    sa.Column("model_version", sa.String(64), nullable=True),
    sa.Column("subject", sa.String(128), nullable=True),
    sa.Column("trace_id", sa.String(32), nullable=True),
    sa.Column("span_id", sa.String(16), nullable=True),
    sa.Column("recorded_at_us", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("subtree_hashes", sa.LargeBinary, nullable=False),
    # HMAC by the ledger's key over (leaf_index, leaf_hash): a row written
    # around the ledger, straight into the database, cannot carry a valid one.
    sa.Column("seal", sa.LargeBinary(32), nullable=False),
)

checkpoints = sa.Table(
    "ledger_checkpoints",
    metadata,
    sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("signed_at_us", sa.BigInteger, nullable=False),
)
