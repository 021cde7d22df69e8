"""Strict mode per model version: the proxy records each decision before answering.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant server default lets SQLite add the column in place (no table rebuild),
    # and every version registered before strict mode existed is not strict.
    op.add_column(
        "registry_versions",
        sa.Column("strict", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    raise RuntimeError("the registry cannot be downgraded: that would destroy its history")
