"""The registry's domain core. Every change is written to the ledger before it is kept."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mrm.client import errors as client_errors
from mrm.client.ledger import LedgerClient, new_record
from mrm.core.auth import Principal
from mrm.core.errors import AlreadyExists, InvalidArgument, Unavailable
from mrm.kernel.clock import now_us
from mrm.registry.artifacts import ArtifactStore, ArtifactWrite
from mrm.registry.entities import ModelInfo, NewVersion, Promotion, StageEvent, VersionInfo
from mrm.registry.identity import as_json, check_commit, recorded
from mrm.registry.store import RegistryStore
from mrm.tlog.canonical import parse_json_object
from mrm.v1 import ledger_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkedLeaf:
    kind: str  # DATA_LINEAGE, PERFORMANCE_SNAPSHOT, …
    record_id: str
    leaf_index: int


@dataclass(frozen=True)
class Registered:
    version: VersionInfo
    already_registered: bool
    leaf_index: int
    linked: tuple[LinkedLeaf, ...] = ()


class Registry:
    def __init__(
        self, store: RegistryStore, artifacts: ArtifactStore, ledger: LedgerClient
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.ledger = ledger

    # -- the ledger -------------------------------------------------------------

    def _append(self, *records: ledger_pb2.Record, by: Principal) -> int:
        """Append records in one atomic batch, on behalf of `by`; the first one's
        leaf index. Their ids make a retry after a lost reply harmless.
        """
        return self._append_all(*records, by=by)[0]

    def _append_all(self, *records: ledger_pb2.Record, by: Principal) -> list[int]:
        """`_append`, with every record's leaf index, in order."""
        try:
            done = self.ledger.append(list(records), on_behalf_of=by.name)
            return [int(r.leaf_index) for r in done]
        except client_errors.Unavailable as e:
            raise Unavailable(
                f"the ledger is unavailable ({e.summary()}); nothing was changed"
            ) from e
        except client_errors.AlreadyExists as e:
            raise AlreadyExists(f"request_id was used for another change: {e.summary()}") from e
        except client_errors.InvalidArgument as e:
            raise InvalidArgument(
                "version.facts_json", f"the ledger refused it: {e.summary()}"
            ) from e
        except (client_errors.PermissionDenied, client_errors.Unauthenticated) as e:
            # The registry's own credential: an operator's problem, not the caller's.
            log.error("the ledger refused the registry's credential: %s", e.summary())
            raise Unavailable(
                "the ledger refused the registry's credential; nothing was changed"
            ) from e
        except client_errors.MrmRpcError as e:
            raise Unavailable(f"the ledger failed ({e.summary()}); nothing was changed") from e

    # -- models and artifacts ---------------------------------------------------

    def create_model(self, name: str, description: str) -> ModelInfo:
        return self.store.create_model(name, description, now_us())[0]

    def get_model(self, name: str) -> ModelInfo:
        return self.store.get_model(name)

    def list_models(self, *, after: str, limit: int) -> list[ModelInfo]:
        return self.store.list_models(after=after, limit=limit)

    def begin_upload(self, sha256: str, size: int) -> ArtifactWrite:
        return self.artifacts.begin(sha256, size)

    def finish_upload(self, write: ArtifactWrite, media_type: str) -> bool:
        """Publish the verified bytes and index them; True if they were new."""
        write.finish()
        return self.store.add_artifact(write.sha256, write.size, media_type, now_us())

    def read_artifact(self, sha256: str) -> Iterator[bytes]:
        return self.artifacts.read(sha256)

    # -- versions ---------------------------------------------------------------

    def register(self, new: NewVersion, who: Principal) -> Registered:
        """Record MODEL_INGESTED, then register; a replay returns the original."""
        facts = parse_json_object(new.facts_json)
        check_commit(who, facts, "version.facts_json")
        existing = self.store.check_registrable(new)
        if existing is not None:
            return self._replayed(existing)
        identity = recorded(who, facts)
        body = {
            "artifacts": {a.role.lower(): a.sha256 for a in new.artifacts},
            "facts": facts,
            "identity": identity,
            "linked_records": {r.kind.lower(): r.record_id for r in new.linked},
            "registered_by": who.name,
            "sample_rate": new.sample_rate,
            "strict": new.strict,
        }
        ingested = new_record(
            "MODEL_INGESTED",
            body,
            record_id=new.request_id,
            model_name=new.model_name,
            model_version=new.version,
        )
        linked = [
            ledger_pb2.Record(
                record_id=r.record_id,
                kind=ledger_pb2.RecordKind.Value("RECORD_KIND_" + r.kind),
                model_name=new.model_name,
                model_version=new.version,
                body_json=r.body_json,
            )
            for r in new.linked
        ]
        leaf, *linked_leaves = self._append_all(ingested, *linked, by=who)
        version, created = self.store.register_version(new, who.name, now_us(), as_json(identity))
        landed = tuple(
            LinkedLeaf(r.kind, r.record_id, i)
            for r, i in zip(new.linked, linked_leaves, strict=True)
        )
        return Registered(version, not created, leaf, landed)

    def _replayed(self, existing: VersionInfo) -> Registered:
        """The original registration, its linked records read back from the ledger."""
        ingested = self._record(existing.ingested_record_id)
        listed = parse_json_object(ingested.body_json).get("linked_records")
        linked = []
        for record_id in listed.values() if isinstance(listed, dict) else ():
            r = self._record(str(record_id))
            linked.append(
                LinkedLeaf(
                    ledger_pb2.RecordKind.Name(r.kind).removeprefix("RECORD_KIND_"),
                    r.record_id,
                    int(r.leaf_index),
                )
            )
        return Registered(existing, True, int(ingested.leaf_index), tuple(linked))

    def _record(self, record_id: str) -> ledger_pb2.Record:
        try:
            return self.ledger.get_record(record_id)
        except client_errors.MrmRpcError as e:
            raise Unavailable(f"the ledger cannot find record {record_id}: {e.summary()}") from e

    def get_version(self, model_name: str, version: str) -> VersionInfo:
        return self.store.get_version(model_name, version)

    def list_versions(self, model_name: str, *, offset: int, limit: int) -> list[VersionInfo]:
        self.store.get_model(model_name)  # NOT_FOUND for an unknown model
        return self.store.list_versions(model_name, offset=offset, limit=limit)

    def promote(
        self,
        model_name: str,
        version: str,
        stage: str,
        *,
        reason: str,
        who: Principal,
        request_id: str,
    ) -> Promotion:
        """Record the DEPLOYMENT, then apply it."""
        demoted, replayed = self.store.plan_promotion(model_name, version, stage, request_id)
        if replayed is not None:
            return replayed
        identity = recorded(who, {})
        self._append(
            new_record(
                "DEPLOYMENT",
                {
                    "action": "promote",
                    "actor": who.name,
                    "demoted_version": demoted,
                    "identity": identity,
                    "reason": reason,
                    "stage": stage,
                },
                record_id=request_id,
                model_name=model_name,
                model_version=version,
            ),
            by=who,
        )
        return self.store.promote(
            model_name,
            version,
            stage,
            reason=reason,
            actor=who.name,
            record_id=request_id,
            now_us=now_us(),
            expected_demoted=demoted,
            identity_json=as_json(identity),
        )

    def record_refusal(
        self,
        model_name: str,
        version: str,
        reasons: list[str],
        facts_json: str,
        *,
        who: Principal,
        request_id: str,
    ) -> tuple[dict[str, Any], int]:
        """A DEPLOYMENT "refused" record of a deploy a gate stopped: (identity, leaf)."""
        facts = parse_json_object(facts_json)
        check_commit(who, facts, "facts_json")
        identity = recorded(who, facts)
        leaf = self._append(
            new_record(
                "DEPLOYMENT",
                {
                    "action": "refused",
                    "actor": who.name,
                    "facts": facts,
                    "identity": identity,
                    "reasons": reasons,
                },
                record_id=request_id,
                model_name=model_name,
                model_version=version,
            ),
            by=who,
        )
        return identity, leaf

    def history(self, model_name: str, *, offset: int, limit: int) -> list[StageEvent]:
        self.store.get_model(model_name)  # NOT_FOUND for an unknown model
        return self.store.history(model_name, offset=offset, limit=limit)

    def deployments(self, model_name: str) -> list[VersionInfo]:
        return self.store.deployments(model_name or None)
