"""Where an explanation's evidence comes from: the ledger's records and the
registry's archived artifacts, fetched through the public clients and checked.

Failures of the two services become the domain errors the caller should see:
an unknown record or model is NOT_FOUND, a service that does not answer is
UNAVAILABLE, and an archived artifact whose bytes no longer hash to the
sha256 recorded for it is FAILED_PRECONDITION, because that is evidence of
tampering with the artifact store.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypedDict, Unpack

from mrm.client import errors as client_errors
from mrm.client.ledger import InclusionProof, LedgerClient, Record
from mrm.client.registry import RegistryClient, role_name
from mrm.core.auth import caller
from mrm.core.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from mrm.tlog.leaf import kind_name
from mrm.v1 import ledger_pb2, registry_pb2

log = logging.getLogger(__name__)
# What an explanation is computed from (the evaluation summary is not needed).
_NEEDED = ("onnx_model", "input_schema", "background_sample")


@dataclass(frozen=True)
class Artifacts:
    """The exact archived bytes a decision was made with, each checked by sha256."""

    onnx: bytes
    onnx_sha256: str
    schema_json: str
    schema_sha256: str
    background: bytes
    background_sha256: str

    @property
    def key(self) -> tuple[str, str, str]:
        return self.onnx_sha256, self.schema_sha256, self.background_sha256

    def hashes(self) -> dict[str, str]:
        return {
            "onnx_sha256": self.onnx_sha256,
            "input_schema_sha256": self.schema_sha256,
            "background_sha256": self.background_sha256,
        }


@contextlib.contextmanager
def upstream(service: str) -> Iterator[None]:
    """Client errors of a dependency, as the domain errors of this service."""
    try:
        yield
    except client_errors.NotFound as e:
        raise NotFound(e.summary()) from None
    except client_errors.FailedPrecondition as e:
        raise FailedPrecondition(f"the {service}: {e.summary()}") from None
    except client_errors.MrmRpcError as e:
        log.warning("the %s failed: %s %s", service, e.code.name, e.summary())
        raise Unavailable(f"the {service} is unavailable ({e.summary()})") from None


class Filters(TypedDict, total=False):
    """QueryRecords filters (the paging is chosen by each method)."""

    kind: str
    model_name: str
    model_version: str
    subject: str
    trace_id: str


class Evidence:
    """Reads records from the ledger and artifacts from the registry; appends records."""

    def __init__(self, ledger: LedgerClient, registry: RegistryClient) -> None:
        self.ledger = ledger
        self.registry = registry

    def record(self, record_id: str) -> Record:
        with upstream("ledger"):
            return self.ledger.get_record(record_id)

    def prediction(self, record_id: str) -> Record:
        record = self.record(record_id)
        if record.kind != ledger_pb2.RECORD_KIND_PREDICTION:
            raise InvalidArgument(
                "record_id",
                f"{record_id} is a {kind_name(record.kind)} record, not a PREDICTION "
                "(only decisions can be explained)",
            )
        return record

    def latest(self, **q: Unpack[Filters]) -> Record | None:
        """The newest record matching the filters, or None."""
        with upstream("ledger"):
            for page in self.ledger.query_pages(page_size=1, newest_first=True, **q):
                return page[0] if page else None
        return None

    def recent(self, limit: int, **q: Unpack[Filters]) -> list[Record]:
        """Up to `limit` matching records, newest first."""
        with upstream("ledger"):
            for page in self.ledger.query_pages(page_size=limit, newest_first=True, **q):
                return list(page)
        return []

    def all(self, **q: Unpack[Filters]) -> list[Record]:
        """Every matching record, oldest first (for the few facts of one version)."""
        with upstream("ledger"):
            return list(self.ledger.query(**q))

    def query_page(self, req: ledger_pb2.QueryRecordsRequest) -> ledger_pb2.QueryRecordsResponse:
        """One page of QueryRecords, with the ledger's own continuation token."""
        with upstream("ledger"):
            return self.ledger.query_page(req)

    def append(self, record: Record) -> ledger_pb2.AppendResult:
        """Append on behalf of the caller being served: the ledger records it as the
        actor (an explanation is recorded with whom it was given to)."""
        with upstream("ledger"):
            (result,) = self.ledger.append([record], on_behalf_of=caller().name)
            return result

    def inclusion(self, record_id: str, tree_size: int = 0) -> InclusionProof:
        """The record's proof against a signed checkpoint (default: the latest, signing
        a fresh one when the record is newer than it)."""
        with upstream("ledger"):
            try:
                return self.ledger.inclusion_proof(record_id=record_id, tree_size=tree_size)
            except (client_errors.FailedPrecondition, client_errors.InvalidArgument):
                if tree_size:
                    raise
                self.ledger.checkpoint(refresh=True)
                return self.ledger.inclusion_proof(record_id=record_id)

    def checkpoint(self) -> ledger_pb2.Checkpoint:
        with upstream("ledger"):
            return self.ledger.checkpoint()

    def version(self, model_name: str, version: str) -> registry_pb2.ModelVersion:
        with upstream("registry"):
            return self.registry.get_version(model_name, version)

    def archived_hashes(self, version: registry_pb2.ModelVersion) -> dict[str, str]:
        """The sha256 of what an explanation of `version` is computed from, as the
        registry archives it, keyed as `Artifacts.hashes` (nothing downloaded)."""
        refs = {role_name(a.role): a.sha256 for a in version.artifacts}
        return {
            "onnx_sha256": refs.get("onnx_model", ""),
            "input_schema_sha256": refs.get("input_schema", ""),
            "background_sha256": refs.get("background_sample", ""),
        }

    def artifacts(self, version: registry_pb2.ModelVersion, onnx_sha256: str = "") -> Artifacts:
        """The version's ONNX model, input schema and background sample, byte-checked.

        `onnx_sha256` is the model a decision says it was served by; it must be
        the version's archived ONNX model.
        """
        refs = {role_name(a.role): a.sha256 for a in version.artifacts}
        where = f"{version.model_name} {version.version}"
        if onnx_sha256 and refs.get("onnx_model") != onnx_sha256:
            raise FailedPrecondition(
                f"POSSIBLE TAMPERING: the decision was served by ONNX model {onnx_sha256}, "
                f"but the registry archives {refs.get('onnx_model')} as {where}"
            )
        for role in _NEEDED:
            if role not in refs:
                raise FailedPrecondition(f"{where} has no archived {role.replace('_', ' ')}")
        data = {role: self._download(role, refs[role], where) for role in _NEEDED}
        return Artifacts(
            onnx=data["onnx_model"],
            onnx_sha256=refs["onnx_model"],
            schema_json=data["input_schema"].decode(),
            schema_sha256=refs["input_schema"],
            background=data["background_sample"],
            background_sha256=refs["background_sample"],
        )

    def _download(self, role: str, sha256: str, where: str) -> bytes:
        """The artifact's bytes; the client checks them against `sha256`."""
        with upstream("registry"):
            try:
                return self.registry.download(sha256)
            except ValueError:  # the bytes do not hash to what was recorded
                log.error("archived %s of %s does not match its sha256 %s", role, where, sha256)
                raise FailedPrecondition(
                    f"TAMPERING: the archived {role.replace('_', ' ')} of {where} no longer "
                    f"matches its recorded sha256 {sha256}; the artifact store was altered, "
                    "so nothing computed from it can be trusted"
                ) from None
