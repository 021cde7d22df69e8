"""The verified identity behind each registration and stage change.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Constant defaults again (SQLite adds the columns in place). Rows from before
    # identities were recorded keep "": their records name only the actor.
    for table in ("registry_versions", "registry_stage_events"):
        op.add_column(table, sa.Column("identity_json", sa.Text, nullable=False, server_default=""))


def downgrade() -> None:
    raise RuntimeError("the registry cannot be downgraded: that would destroy its history")
