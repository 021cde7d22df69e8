"""The registry's storage: the only module that speaks SQL to the registry tables.

The service writes a change's ledger record first and only then calls the
store to apply it (the ledger is the registry's write-ahead log), so no
database lock is ever held across a call to another service. Each write here
re-checks, inside its transaction, what the service checked before recording.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from mrm.core.errors import AlreadyExists, FailedPrecondition, NotFound
from mrm.registry.entities import (
    ArtifactInfo,
    ModelInfo,
    NewVersion,
    Promotion,
    StageEvent,
    VersionInfo,
)
from mrm.registry.tables import artifacts, models, stage_events, version_artifacts, versions


class RegistryStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._pg = engine.dialect.name == "postgresql"

    @contextmanager
    def _txn(self, model_name: str) -> Iterator[sa.Connection]:
        """A write transaction serialized per model (stage changes must not interleave)."""
        if self._pg:
            with self.engine.begin() as conn:
                key = (0x4D524D10 << 32) | zlib.crc32(model_name.encode())
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
                yield conn
        else:
            immediate = self.engine.connect().execution_options(sqlite_begin="IMMEDIATE")
            with immediate as conn, conn.begin():
                yield conn

    # -- models -----------------------------------------------------------------

    def create_model(self, name: str, description: str, now_us: int) -> tuple[ModelInfo, bool]:
        with self._txn(name) as conn:
            row = conn.execute(sa.select(models).where(models.c.name == name)).first()
            if row is not None:
                if row.description != description:
                    raise AlreadyExists(f"model {name!r} exists with another description")
                return self._model(conn, row), False
            conn.execute(
                models.insert().values(name=name, description=description, created_at_us=now_us)
            )
            return ModelInfo(name, description, now_us), True

    def get_model(self, name: str) -> ModelInfo:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(models).where(models.c.name == name)).first()
            if row is None:
                raise NotFound(f"model {name!r} is not registered")
            return self._model(conn, row)

    def list_models(self, *, after: str, limit: int) -> list[ModelInfo]:
        q = sa.select(models).where(models.c.name > after).order_by(models.c.name).limit(limit)
        with self.engine.connect() as conn:
            return [self._model(conn, r) for r in conn.execute(q)]

    def _model(self, conn: sa.Connection, row: Any) -> ModelInfo:
        stages = self._stages(conn, row.name)
        return ModelInfo(
            name=row.name,
            description=row.description,
            created_at_us=row.created_at_us,
            production_version=next((v for v, s in stages.items() if s == "PRODUCTION"), ""),
            staging_versions=tuple(sorted(v for v, s in stages.items() if s == "STAGING")),
        )

    # -- artifacts --------------------------------------------------------------

    def add_artifact(self, sha256: str, size: int, media_type: str, now_us: int) -> bool:
        """Record an uploaded artifact; False if it was known already."""
        with self.engine.begin() as conn:
            if conn.execute(
                sa.select(artifacts.c.sha256).where(artifacts.c.sha256 == sha256)
            ).first():
                return False
            conn.execute(
                artifacts.insert().values(
                    sha256=sha256, size=size, media_type=media_type, created_at_us=now_us
                )
            )
            return True

    def artifact(self, sha256: str) -> tuple[int, str] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(artifacts).where(artifacts.c.sha256 == sha256)).first()
        return (row.size, row.media_type) if row else None

    # -- versions ---------------------------------------------------------------

    def check_registrable(self, new: NewVersion) -> VersionInfo | None:
        """The version if already registered the same way; raise if it cannot be registered."""
        with self.engine.connect() as conn:
            return self._check_registrable(conn, new)

    def _check_registrable(self, conn: sa.Connection, new: NewVersion) -> VersionInfo | None:
        model = conn.execute(sa.select(models.c.name).where(models.c.name == new.model_name))
        if model.first() is None:
            raise NotFound(f"model {new.model_name!r} is not registered; create it first")
        existing = self._version_row(conn, new.model_name, new.version)
        if existing is not None:
            info = self._version(conn, existing)
            if not info.same_registration(new):
                raise AlreadyExists(
                    f"{new.model_name} {new.version} is registered with other artifacts; "
                    "register a new version"
                )
            return info
        for a in new.artifacts:
            known = conn.execute(sa.select(artifacts.c.size).where(artifacts.c.sha256 == a.sha256))
            if known.first() is None:
                raise FailedPrecondition(
                    f"artifact {a.sha256} ({a.role}) was never uploaded; upload it first"
                )
        return None

    def register_version(
        self, new: NewVersion, actor: str, now_us: int, identity_json: str = ""
    ) -> tuple[VersionInfo, bool]:
        """Insert a version whose MODEL_INGESTED record is already in the ledger."""
        with self._txn(new.model_name) as conn:
            existing = self._check_registrable(conn, new)
            if existing is not None:
                return existing, False
            major, minor, patch, pre = new.semver
            version_id = conn.execute(
                versions.insert()
                .values(
                    model_name=new.model_name,
                    version=new.version,
                    major=major,
                    minor=minor,
                    patch=patch,
                    prerelease=pre,
                    sample_rate=new.sample_rate,
                    strict=new.strict,
                    facts_json=new.facts_json,
                    created_by=actor,
                    created_at_us=now_us,
                    ingested_record_id=uuid.UUID(new.request_id),
                    identity_json=identity_json,
                )
                .returning(versions.c.id)
            ).scalar_one()
            conn.execute(
                version_artifacts.insert(),
                [
                    {"version_id": version_id, "role": a.role, "sha256": a.sha256}
                    for a in new.artifacts
                ],
            )
            row = self._version_row(conn, new.model_name, new.version)
            return self._version(conn, row), True

    def get_version(self, model_name: str, version: str) -> VersionInfo:
        with self.engine.connect() as conn:
            if not version:
                stages = self._stages(conn, model_name)
                version = next((v for v, s in stages.items() if s == "PRODUCTION"), "")
                if not version:
                    raise NotFound(f"model {model_name!r} has no version in production")
            row = self._version_row(conn, model_name, version)
            if row is None:
                raise NotFound(f"{model_name} {version} is not registered")
            return self._version(conn, row)

    def list_versions(self, model_name: str, *, offset: int, limit: int) -> list[VersionInfo]:
        q = (
            sa.select(versions)
            .where(versions.c.model_name == model_name)
            .order_by(
                versions.c.major.desc(),
                versions.c.minor.desc(),
                versions.c.patch.desc(),
                (versions.c.prerelease == "").desc(),  # a release sorts above its pre-releases
                versions.c.prerelease.desc(),
            )
            .offset(offset)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [self._version(conn, r) for r in conn.execute(q)]

    def _version_row(self, conn: sa.Connection, model_name: str, version: str) -> Any:
        return conn.execute(
            sa.select(versions).where(
                versions.c.model_name == model_name, versions.c.version == version
            )
        ).first()

    def _version(self, conn: sa.Connection, row: Any) -> VersionInfo:
        arts = conn.execute(
            sa.select(version_artifacts.c.role, artifacts)
            .join(artifacts, artifacts.c.sha256 == version_artifacts.c.sha256)
            .where(version_artifacts.c.version_id == row.id)
            .order_by(version_artifacts.c.role)
        )
        return VersionInfo(
            model_name=row.model_name,
            version=row.version,
            artifacts=tuple(ArtifactInfo(a.role, a.sha256, a.size, a.media_type) for a in arts),
            stage=self._stages(conn, row.model_name).get(row.version, "NONE"),
            sample_rate=row.sample_rate,
            facts_json=row.facts_json,
            created_by=row.created_by,
            identity_json=row.identity_json,
            created_at_us=row.created_at_us,
            ingested_record_id=str(row.ingested_record_id),
            strict=row.strict,
        )

    # -- stages -----------------------------------------------------------------

    def _stages(self, conn: sa.Connection, model_name: str | None) -> dict[str, str]:
        """Current stage of each version that ever changed stage (others are NONE)."""
        latest = (
            sa.select(sa.func.max(stage_events.c.id))
            .group_by(stage_events.c.version_id)
            .scalar_subquery()
        )
        q = (
            sa.select(versions.c.version, stage_events.c.stage)
            .join(stage_events, stage_events.c.version_id == versions.c.id)
            .where(stage_events.c.id.in_(latest))
        )
        if model_name is not None:
            q = q.where(versions.c.model_name == model_name)
        return {r.version: r.stage for r in conn.execute(q)}

    def promote(
        self,
        model_name: str,
        version: str,
        stage: str,
        *,
        reason: str,
        actor: str,
        record_id: str,
        now_us: int,
        expected_demoted: str,
        identity_json: str = "",
    ) -> Promotion:
        """Move a version to `stage`; a new production version demotes the old to staging.

        `expected_demoted` is what the recorded DEPLOYMENT says leaves production;
        if another promotion got in between, nothing is applied.
        """
        with self._txn(model_name) as conn:
            row = self._version_row(conn, model_name, version)
            if row is None:
                raise NotFound(f"{model_name} {version} is not registered")
            replayed = self._replayed(conn, row, record_id)
            if replayed is not None:
                return replayed
            stages = self._stages(conn, model_name)
            demoted = ""
            if stage == "PRODUCTION":
                demoted = next(
                    (v for v, s in stages.items() if s == "PRODUCTION" and v != version), ""
                )
            events = []
            if demoted != expected_demoted:
                raise FailedPrecondition(
                    f"{model_name} changed while this promotion was recorded "
                    f"({demoted or 'nothing'} is in production now); retry with a new request_id"
                )
            if demoted:
                demoted_row = self._version_row(conn, model_name, demoted)
                events.append((demoted_row.id, demoted, "STAGING", f"replaced by {version}"))
            events.append((row.id, version, stage, reason))
            for version_id, _, new_stage, why in events:
                conn.execute(
                    stage_events.insert().values(
                        version_id=version_id,
                        stage=new_stage,
                        reason=why,
                        actor=actor,
                        record_id=uuid.UUID(record_id),
                        created_at_us=now_us,
                        identity_json=identity_json,
                    )
                )
            return Promotion(
                version=self._version(conn, row),
                demoted_version=demoted,
                events=[
                    StageEvent(model_name, v, s, why, actor, record_id, now_us, identity_json)
                    for _, v, s, why in events
                ],
            )

    def history(self, model_name: str, *, offset: int, limit: int) -> list[StageEvent]:
        """A model's stage changes, oldest first, from the `offset`th (events are
        only appended, so an offset stays put while a client pages)."""
        q = (
            sa.select(versions.c.version, stage_events)
            .join(stage_events, stage_events.c.version_id == versions.c.id)
            .where(versions.c.model_name == model_name)
            .order_by(stage_events.c.id)
            .offset(offset)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [
                StageEvent(
                    model_name,
                    r.version,
                    r.stage,
                    r.reason,
                    r.actor,
                    str(r.record_id),
                    r.created_at_us,
                    r.identity_json,
                )
                for r in conn.execute(q)
            ]

    def deployments(self, model_name: str | None) -> list[VersionInfo]:
        """Every version now in staging or production."""
        with self.engine.connect() as conn:
            q = sa.select(versions)
            if model_name:
                q = q.where(versions.c.model_name == model_name)
            out = []
            for row in conn.execute(q.order_by(versions.c.model_name, versions.c.id)):
                info = self._version(conn, row)
                if info.stage in ("STAGING", "PRODUCTION"):
                    out.append(info)
            return out

    def _replayed(self, conn: sa.Connection, row: Any, record_id: str) -> Promotion | None:
        """The outcome of a promotion already made under this request id, if any."""
        done = conn.execute(
            sa.select(stage_events.c.version_id).where(
                stage_events.c.record_id == uuid.UUID(record_id)
            )
        ).first()
        if done is None:
            return None
        if done.version_id != row.id:
            raise AlreadyExists(f"request_id {record_id} was used for another promotion")
        return Promotion(version=self._version(conn, row))

    def plan_promotion(
        self, model_name: str, version: str, stage: str, record_id: str
    ) -> tuple[str, Promotion | None]:
        """(the version that would leave production, the earlier outcome of a replay)."""
        with self.engine.connect() as conn:
            row = self._version_row(conn, model_name, version)
            if row is None:
                raise NotFound(f"{model_name} {version} is not registered")
            replayed = self._replayed(conn, row, record_id)
            if replayed is not None:
                return "", replayed
            stages = self._stages(conn, model_name)
        if stage != "PRODUCTION":
            return "", None
        return next((v for v, s in stages.items() if s == "PRODUCTION" and v != version), ""), None

    def latest_event_id(self) -> int:
        with self.engine.connect() as conn:
            top = conn.execute(sa.select(sa.func.max(stage_events.c.id))).scalar_one()
        return int(top or 0)

    def changed_since(self, event_id: int, model_name: str | None) -> tuple[int, list[VersionInfo]]:
        """Versions whose stage changed after `event_id`, and the newest event id."""
        q = (
            sa.select(versions, stage_events.c.id.label("event_id"))
            .join(versions, versions.c.id == stage_events.c.version_id)
            .where(stage_events.c.id > event_id)
            .order_by(stage_events.c.id)
        )
        if model_name:
            q = q.where(versions.c.model_name == model_name)
        with self.engine.connect() as conn:
            rows = list(conn.execute(q))
            # One update per version, in its latest state, however often it changed.
            seen = {r.id: self._version(conn, r) for r in rows}
        last = max((r.event_id for r in rows), default=event_id)
        # The new production version first: a follower that switches as it reads
        # then never sees a moment with nothing in production.
        return last, sorted(seen.values(), key=lambda v: v.stage != "PRODUCTION")
