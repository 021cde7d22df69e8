"""The registry's tables, as the store queries them. Alembic migrations create them."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

models = sa.Table(
    "registry_models",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
)

artifacts = sa.Table(
    "registry_artifacts",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("media_type", sa.String(127), nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
)

versions = sa.Table(
    "registry_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(63), sa.ForeignKey("registry_models.name"), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("major", sa.BigInteger, nullable=False),
    sa.Column("minor", sa.BigInteger, nullable=False),
    sa.Column("patch", sa.BigInteger, nullable=False),
    sa.Column("prerelease", sa.String(64), nullable=False),
    sa.Column("sample_rate", sa.Float, nullable=False),
    sa.Column("strict", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("facts_json", sa.Text, nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("ingested_record_id", sa.Uuid, nullable=False, unique=True),
    sa.Column("identity_json", sa.Text, nullable=False, server_default=""),
)

version_artifacts = sa.Table(
    "registry_version_artifacts",
    metadata,
    sa.Column("version_id", sa.Integer, sa.ForeignKey("registry_versions.id"), primary_key=True),
    sa.Column("role", sa.String(32), primary_key=True),
    sa.Column("sha256", sa.String(64), sa.ForeignKey("registry_artifacts.sha256"), nullable=False),
)

stage_events = sa.Table(
    "registry_stage_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("registry_versions.id"), nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("record_id", sa.Uuid, nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("identity_json", sa.Text, nullable=False, server_default=""),
)
