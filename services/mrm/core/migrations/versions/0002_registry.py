"""The registry: models, versions, content-addressed artifacts, stage history.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The stage history is evidence, like the ledger: never rewritten.
_APPEND_ONLY = ("registry_artifacts", "registry_version_artifacts", "registry_stage_events")


def upgrade() -> None:
    op.create_table(
        "registry_models",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "registry_artifacts",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("media_type", sa.String(127), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "registry_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "model_name", sa.String(63), sa.ForeignKey("registry_models.name"), nullable=False
        ),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("major", sa.BigInteger, nullable=False),
        sa.Column("minor", sa.BigInteger, nullable=False),
        sa.Column("patch", sa.BigInteger, nullable=False),
        sa.Column("prerelease", sa.String(64), nullable=False),
        sa.Column("sample_rate", sa.Float, nullable=False),
        sa.Column("facts_json", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("ingested_record_id", sa.Uuid, nullable=False),
        sa.UniqueConstraint("model_name", "version", name="registry_versions_model_version_key"),
        sa.UniqueConstraint("ingested_record_id", name="registry_versions_record_key"),
        sa.CheckConstraint("sample_rate >= 0 AND sample_rate <= 1", name="registry_sample_rate"),
    )
    op.create_table(
        "registry_version_artifacts",
        sa.Column(
            "version_id", sa.Integer, sa.ForeignKey("registry_versions.id"), primary_key=True
        ),
        sa.Column("role", sa.String(32), primary_key=True),
        sa.Column(
            "sha256", sa.String(64), sa.ForeignKey("registry_artifacts.sha256"), nullable=False
        ),
    )
    op.create_table(
        "registry_stage_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("registry_versions.id"), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("record_id", sa.Uuid, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_registry_stage_events_version", "registry_stage_events", ["version_id", "id"]
    )
    _append_only_triggers()


def _append_only_triggers() -> None:
    # mrm_reject_change() exists since 0001 on PostgreSQL.
    if op.get_bind().dialect.name == "postgresql":
        for table in _APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION mrm_reject_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION mrm_reject_change()"
            )
        return
    for table in _APPEND_ONLY:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'mrm: {event} on {table} is not allowed: "
                "the registry history is append-only'); END"
            )


def downgrade() -> None:
    raise RuntimeError("the registry cannot be downgraded: that would destroy its history")
