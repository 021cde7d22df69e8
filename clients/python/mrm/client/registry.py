"""A typed client for mrm.v1.RegistryService."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc

from mrm.client.channel import ServiceClient
from mrm.client.credentials import ClientAuth
from mrm.client.errors import from_rpc_error
from mrm.kernel.ids import new_record_id
from mrm.v1 import ledger_pb2, registry_pb2, registry_pb2_grpc

UPLOAD_CHUNK = 1 << 20
STAGES = {
    "staging": registry_pb2.STAGE_STAGING,
    "production": registry_pb2.STAGE_PRODUCTION,
    "archived": registry_pb2.STAGE_ARCHIVED,
}


def stage_name(value: int) -> str:
    return registry_pb2.Stage.Name(value).removeprefix("STAGE_").lower()  # type: ignore[arg-type]


def role_name(value: int) -> str:
    return registry_pb2.ArtifactRole.Name(value).removeprefix("ARTIFACT_ROLE_").lower()  # type: ignore[arg-type]


class RegistryClient(ServiceClient):
    """RegistryService over one channel. Use as a context manager or call close()."""

    def __init__(
        self, target: str, *, timeout: float = 30.0, auth: ClientAuth | None = None
    ) -> None:
        super().__init__(target, timeout=timeout, auth=auth)
        self._stub = registry_pb2_grpc.RegistryServiceStub(self._channel)

    def create_model(self, name: str, description: str = "") -> registry_pb2.Model:
        req = registry_pb2.CreateModelRequest(
            model=registry_pb2.Model(name=name, description=description)
        )
        return self._call(self._stub.CreateModel, req).model

    def get_model(self, name: str) -> registry_pb2.Model:
        return self._call(self._stub.GetModel, registry_pb2.GetModelRequest(name=name)).model

    def list_models(self) -> Iterator[registry_pb2.Model]:
        req = registry_pb2.ListModelsRequest(page_size=1000)
        while True:
            page = self._call(self._stub.ListModels, req)
            yield from page.models
            if not page.next_page_token:
                return
            req.page_token = page.next_page_token

    def get_version(self, model_name: str, version: str = "") -> registry_pb2.ModelVersion:
        req = registry_pb2.GetVersionRequest(model_name=model_name, version=version)
        return self._call(self._stub.GetVersion, req).version

    def list_versions(self, model_name: str) -> Iterator[registry_pb2.ModelVersion]:
        req = registry_pb2.ListVersionsRequest(model_name=model_name, page_size=1000)
        while True:
            page = self._call(self._stub.ListVersions, req)
            yield from page.versions
            if not page.next_page_token:
                return
            req.page_token = page.next_page_token

    def upload(self, data: bytes, media_type: str) -> registry_pb2.UploadArtifactResponse:
        """Upload bytes (in 1 MiB chunks); the registry checks their sha256 and size."""
        sha = hashlib.sha256(data).hexdigest()
        header = registry_pb2.ArtifactRef(sha256=sha, size=len(data), media_type=media_type)

        def parts() -> Iterator[registry_pb2.UploadArtifactRequest]:
            yield registry_pb2.UploadArtifactRequest(header=header)
            for i in range(0, len(data), UPLOAD_CHUNK):
                yield registry_pb2.UploadArtifactRequest(chunk=data[i : i + UPLOAD_CHUNK])

        try:
            return self._stub.UploadArtifact(parts(), timeout=self.timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def download(self, sha256: str, dest: Path | None = None) -> bytes:
        """An artifact's bytes, checked against the sha256 asked for."""
        try:
            data = b"".join(
                c.chunk
                for c in self._stub.GetArtifact(
                    registry_pb2.GetArtifactRequest(sha256=sha256), timeout=self.timeout
                )
            )
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        got = hashlib.sha256(data).hexdigest()
        if got != sha256:
            raise ValueError(f"artifact {sha256} arrived as bytes hashing to {got}")
        if dest is not None:
            dest.write_bytes(data)
        return data

    def register(
        self,
        version: registry_pb2.ModelVersion,
        *,
        linked_records: list[ledger_pb2.Record] | None = None,
        request_id: str | None = None,
    ) -> registry_pb2.RegisterVersionResponse:
        req = registry_pb2.RegisterVersionRequest(
            version=version,
            request_id=request_id or new_record_id(),
            linked_records=linked_records or [],
        )
        return self._call(self._stub.RegisterVersion, req)

    def stage_changes(
        self, model_name: str, *, page_size: int = 1000
    ) -> list[registry_pb2.StageChange]:
        """A model's whole stage history, oldest first (every page)."""
        req = registry_pb2.ListStageChangesRequest(model_name=model_name, page_size=page_size)
        changes: list[registry_pb2.StageChange] = []
        while True:
            page = self._call(self._stub.ListStageChanges, req)
            changes.extend(page.changes)
            if not page.next_page_token:
                return changes
            req.page_token = page.next_page_token

    def rollback_target(self, model_name: str) -> str:
        """The version that was in production before the current one ("" if none)."""
        current = self.get_model(model_name).production_version
        for change in reversed(self.stage_changes(model_name)):
            if change.stage == registry_pb2.STAGE_PRODUCTION and change.version != current:
                return change.version
        return ""

    def promote(
        self, model_name: str, version: str, stage: str, *, reason: str = ""
    ) -> registry_pb2.PromoteVersionResponse:
        req = registry_pb2.PromoteVersionRequest(
            model_name=model_name,
            version=version,
            stage=STAGES[stage],
            reason=reason,
            request_id=new_record_id(),
        )
        return self._call(self._stub.PromoteVersion, req)

    def record_refusal(
        self,
        model_name: str,
        version: str,
        reasons: Sequence[str],
        facts: Mapping[str, Any],
        *,
        request_id: str | None = None,
    ) -> registry_pb2.RecordRefusalResponse:
        """Record a deploy a gate refused (a DEPLOYMENT "refused" record)."""
        req = registry_pb2.RecordRefusalRequest(
            model_name=model_name,
            version=version,
            reasons=list(reasons),
            facts_json=json.dumps(facts, sort_keys=True),
            request_id=request_id or new_record_id(),
        )
        return self._call(self._stub.RecordRefusal, req)
