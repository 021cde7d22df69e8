"""The RegistryService gRPC adapter: protobuf in, domain call, protobuf out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import grpc

from mrm.client.timestamps import timestamp_us
from mrm.core.auth import deployer_of
from mrm.core.auth.identity import identity_pb
from mrm.core.errors import InvalidArgument
from mrm.registry import validate
from mrm.registry.entities import ModelInfo, VersionInfo
from mrm.registry.service import Registry
from mrm.v1 import auth_pb2, ledger_pb2, registry_pb2_grpc
from mrm.v1 import registry_pb2 as pb

Context = grpc.aio.ServicerContext[object, object]
_MAX_CHUNK = 4 << 20


def model_pb(m: ModelInfo) -> pb.Model:
    return pb.Model(
        name=m.name,
        description=m.description,
        create_time=timestamp_us(m.created_at_us),
        production_version=m.production_version,
        staging_versions=list(m.staging_versions),
    )


def _identity(identity_json: str) -> auth_pb2.Identity | None:
    return identity_pb(json.loads(identity_json)) if identity_json else None


def version_pb(v: VersionInfo) -> pb.ModelVersion:
    return pb.ModelVersion(
        model_name=v.model_name,
        version=v.version,
        artifacts=[
            pb.ArtifactRef(
                role=pb.ArtifactRole.Value("ARTIFACT_ROLE_" + a.role),
                sha256=a.sha256,
                size=a.size,
                media_type=a.media_type,
            )
            for a in v.artifacts
        ],
        stage=pb.Stage.Value("STAGE_" + v.stage),
        sample_rate=v.sample_rate,
        strict=v.strict,
        create_time=timestamp_us(v.created_at_us),
        created_by=v.created_by,
        ingested_record_id=v.ingested_record_id,
        facts_json=v.facts_json,
        created_by_identity=_identity(v.identity_json),
    )


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    """Thin transport over `Registry`; storage work runs in worker threads."""

    def __init__(self, registry: Registry, watch_interval: float) -> None:
        self.registry = registry
        self.watch_interval = watch_interval

    async def CreateModel(
        self, request: pb.CreateModelRequest, context: Context
    ) -> pb.CreateModelResponse:
        name, description = validate.validate_create_model(request)
        deployer_of(name)
        model = await asyncio.to_thread(self.registry.create_model, name, description)
        return pb.CreateModelResponse(model=model_pb(model))

    async def GetModel(self, request: pb.GetModelRequest, context: Context) -> pb.GetModelResponse:
        name = validate.model_name(request.name, "name")
        return pb.GetModelResponse(
            model=model_pb(await asyncio.to_thread(self.registry.get_model, name))
        )

    async def ListModels(
        self, request: pb.ListModelsRequest, context: Context
    ) -> pb.ListModelsResponse:
        size = validate.page_size(request.page_size)
        after = validate.decode_token(request.page_token)
        found = await asyncio.to_thread(
            lambda: self.registry.list_models(after=after, limit=size + 1)
        )
        token = validate.encode_token(found[size - 1].name) if len(found) > size else ""
        return pb.ListModelsResponse(
            models=[model_pb(m) for m in found[:size]], next_page_token=token
        )

    async def UploadArtifact(
        self, request_iterator: AsyncIterator[pb.UploadArtifactRequest], context: Context
    ) -> pb.UploadArtifactResponse:
        header: pb.ArtifactRef | None = None
        write = None
        try:
            async for part in request_iterator:
                if part.WhichOneof("part") == "header":
                    if header is not None:
                        raise InvalidArgument("header", "sent twice; send it once, first")
                    header = part.header
                    write = self.registry.begin_upload(header.sha256, header.size)
                elif write is None:
                    raise InvalidArgument("header", "must come first, before any chunk")
                elif len(part.chunk) > _MAX_CHUNK:
                    raise InvalidArgument("chunk", f"is over {_MAX_CHUNK} bytes")
                else:
                    write.write(part.chunk)
            if header is None or write is None:
                raise InvalidArgument("header", "is missing")
            new = await asyncio.to_thread(self.registry.finish_upload, write, header.media_type)
        except BaseException:
            if write is not None:
                write.abort()
            raise
        return pb.UploadArtifactResponse(artifact=header, already_stored=not new)

    async def RegisterVersion(
        self, request: pb.RegisterVersionRequest, context: Context
    ) -> pb.RegisterVersionResponse:
        new = validate.validate_register(request)
        who = deployer_of(new.model_name)
        done = await asyncio.to_thread(self.registry.register, new, who)
        return pb.RegisterVersionResponse(
            version=version_pb(done.version),
            already_registered=done.already_registered,
            leaf_index=done.leaf_index,
            linked_records=[
                pb.LinkedRecordLeaf(
                    kind=ledger_pb2.RecordKind.Value("RECORD_KIND_" + r.kind),
                    record_id=r.record_id,
                    leaf_index=r.leaf_index,
                )
                for r in done.linked
            ],
        )

    async def GetVersion(
        self, request: pb.GetVersionRequest, context: Context
    ) -> pb.GetVersionResponse:
        name = validate.model_name(request.model_name, "model_name")
        if request.version:
            validate.semver(request.version, "version")
        found = await asyncio.to_thread(self.registry.get_version, name, request.version)
        return pb.GetVersionResponse(version=version_pb(found))

    async def ListVersions(
        self, request: pb.ListVersionsRequest, context: Context
    ) -> pb.ListVersionsResponse:
        name = validate.model_name(request.model_name, "model_name")
        size = validate.page_size(request.page_size)
        offset = validate.offset_token(request.page_token)
        found = await asyncio.to_thread(
            lambda: self.registry.list_versions(name, offset=offset, limit=size + 1)
        )
        nxt = validate.encode_token(str(offset + size)) if len(found) > size else ""
        return pb.ListVersionsResponse(
            versions=[version_pb(v) for v in found[:size]], next_page_token=nxt
        )

    async def GetArtifact(
        self, request: pb.GetArtifactRequest, context: Context
    ) -> AsyncIterator[pb.GetArtifactResponse]:
        chunks = self.registry.read_artifact(request.sha256)
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            yield pb.GetArtifactResponse(chunk=chunk)

    async def PromoteVersion(
        self, request: pb.PromoteVersionRequest, context: Context
    ) -> pb.PromoteVersionResponse:
        name, version, stage, reason, request_id = validate.validate_promote(request)
        who = deployer_of(name)
        done = await asyncio.to_thread(
            lambda: self.registry.promote(
                name, version, stage, reason=reason, who=who, request_id=request_id
            )
        )
        return pb.PromoteVersionResponse(
            version=version_pb(done.version),
            demoted_version=done.demoted_version,
            record_id=request_id,
        )

    async def ListStageChanges(
        self, request: pb.ListStageChangesRequest, context: Context
    ) -> pb.ListStageChangesResponse:
        name = validate.model_name(request.model_name, "model_name")
        size = validate.page_size(request.page_size)
        offset = validate.offset_token(request.page_token)
        found = await asyncio.to_thread(
            lambda: self.registry.history(name, offset=offset, limit=size + 1)
        )
        events = found[:size]
        nxt = validate.encode_token(str(offset + size)) if len(found) > size else ""
        return pb.ListStageChangesResponse(
            next_page_token=nxt,
            changes=[
                pb.StageChange(
                    version=e.version,
                    stage=pb.Stage.Value("STAGE_" + e.stage),
                    reason=e.reason,
                    actor=e.actor,
                    record_id=e.record_id,
                    change_time=timestamp_us(e.created_at_us),
                    identity=_identity(e.identity_json),
                )
                for e in events
            ],
        )

    async def RecordRefusal(
        self, request: pb.RecordRefusalRequest, context: Context
    ) -> pb.RecordRefusalResponse:
        name, version, reasons, facts, request_id = validate.validate_refusal(request)
        who = deployer_of(name)
        identity, leaf = await asyncio.to_thread(
            lambda: self.registry.record_refusal(
                name, version, reasons, facts, who=who, request_id=request_id
            )
        )
        return pb.RecordRefusalResponse(
            record_id=request_id, leaf_index=leaf, identity=identity_pb(identity)
        )

    async def WatchDeployments(
        self, request: pb.WatchDeploymentsRequest, context: Context
    ) -> AsyncIterator[pb.WatchDeploymentsResponse]:
        name = validate.model_name(request.model_name, "model_name") if request.model_name else ""
        # Poll the stage history rather than rely on in-process events: a change
        # made through another replica shows up as well.
        last = await asyncio.to_thread(self.registry.store.latest_event_id)
        for v in await asyncio.to_thread(self.registry.deployments, name):
            yield pb.WatchDeploymentsResponse(version=version_pb(v), initial=True)
        yield pb.WatchDeploymentsResponse(snapshot_complete=True)
        while True:
            await asyncio.sleep(self.watch_interval)
            last, changed = await asyncio.to_thread(
                self.registry.store.changed_since, last, name or None
            )
            for v in changed:
                yield pb.WatchDeploymentsResponse(version=version_pb(v), initial=False)
