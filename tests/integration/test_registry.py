"""RegistryService over real gRPC, with a real ledger, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mrm.client.ledger import LedgerClient
from mrm.client.registry import RegistryClient
from mrm.v1 import registry_pb2 as pb
from mrm.v1 import registry_pb2_grpc as pbg
from tests.conftest import RunningLedger, start_ledger
from tests.support.auth import channel as authorized_channel
from tests.support.ledger import uuid7
from tests.support.statuses import bad_request


@pytest.fixture
def running_stack_each_db(tmp_path: Path, database_url: str) -> Iterator[RunningLedger]:
    """The whole stack on SQLite and on PostgreSQL, watching deployments every 50 ms."""
    running = start_ledger(tmp_path / "home", database_url, watch_interval=0.05)
    yield running
    running.stack.stop()


@pytest.fixture
def registry(running_stack_each_db: RunningLedger) -> Iterator[pbg.RegistryServiceStub]:
    with authorized_channel(running_stack_each_db.registry_addr) as channel:
        yield pbg.RegistryServiceStub(channel)


def upload(
    stub: pbg.RegistryServiceStub, data: bytes, **header: object
) -> pb.UploadArtifactResponse:
    ref = pb.ArtifactRef(
        sha256=str(header.get("sha256", hashlib.sha256(data).hexdigest())),
        size=int(header.get("size", len(data))),  # type: ignore[call-overload]
        media_type="application/onnx",
    )
    parts = [pb.UploadArtifactRequest(header=ref)]
    parts += [pb.UploadArtifactRequest(chunk=data[i : i + 3000]) for i in range(0, len(data), 3000)]
    return stub.UploadArtifact(iter(parts))


def register(
    stub: pbg.RegistryServiceStub, version: str, onnx: bytes, request_id: str = ""
) -> pb.RegisterVersionResponse:
    return stub.RegisterVersion(
        pb.RegisterVersionRequest(
            version=pb.ModelVersion(
                model_name="credit-risk",
                version=version,
                artifacts=[
                    pb.ArtifactRef(
                        role=pb.ARTIFACT_ROLE_ONNX_MODEL, sha256=hashlib.sha256(onnx).hexdigest()
                    )
                ],
                sample_rate=0.5,
                facts_json=json.dumps(
                    {"source_commit": "3f2a9c1", "training_data_id": "sha256:ab"}
                ),
            ),
            request_id=request_id or str(uuid7()),
        )
    )


def promote(
    stub: pbg.RegistryServiceStub, version: str, stage: pb.Stage.ValueType
) -> pb.PromoteVersionResponse:
    return stub.PromoteVersion(
        pb.PromoteVersionRequest(
            model_name="credit-risk",
            version=version,
            stage=stage,
            reason="ci",
            request_id=str(uuid7()),
        )
    )


def test_models(registry: pbg.RegistryServiceStub) -> None:
    made = registry.CreateModel(
        pb.CreateModelRequest(model=pb.Model(name="credit-risk", description="d"))
    )
    again = registry.CreateModel(
        pb.CreateModelRequest(model=pb.Model(name="credit-risk", description="d"))
    )
    assert made.model.name == again.model.name == "credit-risk"
    code, _, _ = bad_request(
        lambda: registry.CreateModel(
            pb.CreateModelRequest(model=pb.Model(name="credit-risk", description="x"))
        )
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert bad_request(
        lambda: registry.CreateModel(pb.CreateModelRequest(model=pb.Model(name="Bad Name")))
    )[:2] == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "model.name",
    )
    for i in range(3):
        registry.CreateModel(pb.CreateModelRequest(model=pb.Model(name=f"m{i}")))
    first = registry.ListModels(pb.ListModelsRequest(page_size=2))
    rest = registry.ListModels(pb.ListModelsRequest(page_size=2, page_token=first.next_page_token))
    assert [m.name for m in [*first.models, *rest.models]] == ["credit-risk", "m0", "m1", "m2"]
    assert (
        bad_request(lambda: registry.GetModel(pb.GetModelRequest(name="nope")))[0]
        == grpc.StatusCode.NOT_FOUND
    )


def test_uploads_are_checked(
    registry: pbg.RegistryServiceStub, running_stack_each_db: RunningLedger
) -> None:
    data = b"onnx bytes " * 1000
    first = upload(registry, data)
    assert not first.already_stored
    assert upload(registry, data).already_stored
    stored = (
        running_stack_each_db.settings.resolved_artifact_dir()
        / "sha256"
        / first.artifact.sha256[:2]
        / first.artifact.sha256
    )
    assert stored.read_bytes() == data
    assert bad_request(lambda: upload(registry, data, sha256="0" * 64))[:2] == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "header.sha256",
    )
    assert bad_request(lambda: upload(registry, data, size=len(data) + 1))[:2] == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "header.size",
    )
    assert bad_request(lambda: upload(registry, data, size=len(data) - 1))[1] == "chunk"
    assert bad_request(lambda: upload(registry, data, size=3 << 30))[1] == "header.size"
    assert (
        bad_request(lambda: registry.UploadArtifact(iter([pb.UploadArtifactRequest(chunk=b"x")])))[
            1
        ]
        == "header"
    )
    got = b"".join(
        c.chunk for c in registry.GetArtifact(pb.GetArtifactRequest(sha256=first.artifact.sha256))
    )
    assert got == data
    code, _, _ = bad_request(
        lambda: list(registry.GetArtifact(pb.GetArtifactRequest(sha256="1" * 64)))
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert not list((stored.parent).glob(".upload-*"))  # failed uploads leave nothing


def test_register_records_in_the_ledger(
    registry: pbg.RegistryServiceStub, running_stack_each_db: RunningLedger
) -> None:
    registry.CreateModel(pb.CreateModelRequest(model=pb.Model(name="credit-risk")))
    onnx = b"model v1"
    upload(registry, onnx)
    request_id = str(uuid7())
    done = register(registry, "1.2.4", onnx, request_id)
    assert not done.already_registered
    assert done.version.ingested_record_id == request_id
    with LedgerClient(running_stack_each_db.addr) as ledger:
        rec = ledger.get_record(request_id)
    assert rec.leaf_index == done.leaf_index
    assert rec.model_name == "credit-risk"
    assert rec.model_version == "1.2.4"
    body = json.loads(rec.body_json)
    assert body["artifacts"] == {"onnx_model": hashlib.sha256(onnx).hexdigest()}
    assert body["facts"]["source_commit"] == "3f2a9c1"
    replay = register(registry, "1.2.4", onnx, request_id)
    assert replay.already_registered
    assert replay.leaf_index == done.leaf_index
    other = b"model v1 retrained"
    upload(registry, other)
    assert (
        bad_request(lambda: register(registry, "1.2.4", other))[0] == grpc.StatusCode.ALREADY_EXISTS
    )
    assert bad_request(lambda: register(registry, "1.2", onnx))[:2] == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "version.version",
    )
    assert bad_request(lambda: register(registry, "2.0.0", b"never uploaded"))[0] == (
        grpc.StatusCode.FAILED_PRECONDITION
    )


def test_promotion_rollback_and_history(
    registry: pbg.RegistryServiceStub, running_stack_each_db: RunningLedger
) -> None:
    registry.CreateModel(pb.CreateModelRequest(model=pb.Model(name="credit-risk")))
    for v in ("1.0.0", "1.1.0"):
        upload(registry, v.encode())
        register(registry, v, v.encode())
    promote(registry, "1.0.0", pb.STAGE_PRODUCTION)
    up = promote(registry, "1.1.0", pb.STAGE_PRODUCTION)
    assert up.demoted_version == "1.0.0"
    back = promote(registry, "1.0.0", pb.STAGE_PRODUCTION)  # the rollback
    assert back.demoted_version == "1.1.0"
    model = registry.GetModel(pb.GetModelRequest(name="credit-risk")).model
    assert model.production_version == "1.0.0"
    assert list(model.staging_versions) == ["1.1.0"]
    assert (
        registry.GetVersion(pb.GetVersionRequest(model_name="credit-risk")).version.version
        == "1.0.0"
    )
    versions = registry.ListVersions(pb.ListVersionsRequest(model_name="credit-risk")).versions
    assert [(v.version, v.stage) for v in versions] == [
        ("1.1.0", pb.STAGE_STAGING),
        ("1.0.0", pb.STAGE_PRODUCTION),
    ]
    with LedgerClient(running_stack_each_db.addr) as ledger:
        deployments = list(ledger.query(kind="DEPLOYMENT", model_name="credit-risk"))
    assert [(r.model_version, json.loads(r.body_json)["demoted_version"]) for r in deployments] == [
        ("1.0.0", ""),
        ("1.1.0", "1.0.0"),
        ("1.0.0", "1.1.0"),
    ]
    assert bad_request(lambda: promote(registry, "1.0.0", pb.STAGE_UNSPECIFIED))[1] == "stage"
    assert (
        bad_request(lambda: promote(registry, "9.9.9", pb.STAGE_STAGING))[0]
        == grpc.StatusCode.NOT_FOUND
    )


def test_nothing_changes_while_the_ledger_is_down(
    registry: pbg.RegistryServiceStub, running_stack_each_db: RunningLedger
) -> None:
    registry.CreateModel(pb.CreateModelRequest(model=pb.Model(name="credit-risk")))
    upload(registry, b"v1")
    running_stack_each_db.stack.run(
        running_stack_each_db.stack.stack.servers["ledger"].stop(), timeout=30
    )
    code, _, details = bad_request(lambda: register(registry, "1.0.0", b"v1"))
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "nothing was changed" in details
    assert (
        bad_request(
            lambda: registry.GetVersion(
                pb.GetVersionRequest(model_name="credit-risk", version="1.0.0")
            )
        )[0]
        == grpc.StatusCode.NOT_FOUND
    )


def test_watch_deployments(registry: pbg.RegistryServiceStub) -> None:
    registry.CreateModel(pb.CreateModelRequest(model=pb.Model(name="credit-risk")))
    for v in ("1.0.0", "1.1.0"):
        upload(registry, v.encode())
        register(registry, v, v.encode())
    promote(registry, "1.0.0", pb.STAGE_PRODUCTION)
    request = pb.WatchDeploymentsRequest(model_name="credit-risk")
    stream = registry.WatchDeployments(request, timeout=30)
    first = next(stream)
    assert first.initial
    assert (first.version.version, first.version.stage) == ("1.0.0", pb.STAGE_PRODUCTION)
    marker = next(stream)
    assert marker.snapshot_complete
    assert not marker.HasField("version")
    promote(registry, "1.1.0", pb.STAGE_PRODUCTION)
    updates = [next(stream), next(stream)]
    changes = {(c.version.version, c.version.stage, c.initial) for c in updates}
    assert changes == {("1.0.0", pb.STAGE_STAGING, False), ("1.1.0", pb.STAGE_PRODUCTION, False)}
    for c in updates:  # the full version, artifacts included, as the proxy needs it
        want = hashlib.sha256(c.version.version.encode()).hexdigest()
        assert [a.sha256 for a in c.version.artifacts] == [want]
    stream.cancel()
    empty = registry.WatchDeployments(
        pb.WatchDeploymentsRequest(model_name="nothing-here"), timeout=30
    )
    assert next(empty).snapshot_complete  # the marker comes even when nothing is deployed
    empty.cancel()


def test_linked_records_land_with_the_version(
    registry: pbg.RegistryServiceStub, running_stack_each_db: RunningLedger
) -> None:
    from mrm.v1 import ledger_pb2

    registry.CreateModel(pb.CreateModelRequest(model=pb.Model(name="credit-risk")))
    upload(registry, b"m")
    lineage, perf = str(uuid7()), str(uuid7())

    def linked(
        kind: ledger_pb2.RecordKind.ValueType, rid: str, version: str = "1.0.0"
    ) -> ledger_pb2.Record:
        return ledger_pb2.Record(
            record_id=rid,
            kind=kind,
            model_name="credit-risk",
            model_version=version,
            body_json='{"x":1}',
        )

    def reg(records: list[ledger_pb2.Record]) -> pb.RegisterVersionResponse:
        return registry.RegisterVersion(
            pb.RegisterVersionRequest(
                version=pb.ModelVersion(
                    model_name="credit-risk",
                    version="1.0.0",
                    artifacts=[
                        pb.ArtifactRef(
                            role=pb.ARTIFACT_ROLE_ONNX_MODEL,
                            sha256=hashlib.sha256(b"m").hexdigest(),
                        )
                    ],
                    sample_rate=1.0,
                ),
                request_id=str(uuid7()),
                linked_records=records,
            )
        )

    assert (
        bad_request(lambda: reg([linked(ledger_pb2.RECORD_KIND_PREDICTION, lineage)]))[1]
        == "linked_records[0].kind"
    )
    assert bad_request(
        lambda: reg([linked(ledger_pb2.RECORD_KIND_DATA_LINEAGE, lineage, "2.0.0")])
    )[1] == ("linked_records[0].model_name")
    done = reg(
        [
            linked(ledger_pb2.RECORD_KIND_DATA_LINEAGE, lineage),
            linked(ledger_pb2.RECORD_KIND_PERFORMANCE_SNAPSHOT, perf),
        ]
    )
    with LedgerClient(running_stack_each_db.addr) as ledger:
        ingested = ledger.get_record(done.version.ingested_record_id)
        assert json.loads(ingested.body_json)["linked_records"] == {
            "data_lineage": lineage,
            "performance_snapshot": perf,
        }
        assert ledger.get_record(lineage).leaf_index == done.leaf_index + 1
        assert ledger.get_record(perf).leaf_index == done.leaf_index + 2
    want = [
        (ledger_pb2.RECORD_KIND_DATA_LINEAGE, lineage, done.leaf_index + 1),
        (ledger_pb2.RECORD_KIND_PERFORMANCE_SNAPSHOT, perf, done.leaf_index + 2),
    ]
    assert [(r.kind, r.record_id, r.leaf_index) for r in done.linked_records] == want
    # A replay reads them back from the ledger: the same leaves, nothing appended.
    again = reg([linked(ledger_pb2.RECORD_KIND_DATA_LINEAGE, lineage)])
    assert again.already_registered
    assert [(r.kind, r.record_id, r.leaf_index) for r in again.linked_records] == want


def test_stage_changes_page(
    registry: pbg.RegistryServiceStub, running_stack_each_db: RunningLedger
) -> None:
    registry.CreateModel(pb.CreateModelRequest(model=pb.Model(name="credit-risk")))
    for v in ("1.0.0", "1.1.0"):
        upload(registry, v.encode())
        register(registry, v, v.encode())
    for v in ("1.0.0", "1.1.0", "1.0.0"):
        promote(registry, v, pb.STAGE_PRODUCTION)
    everything = registry.ListStageChanges(pb.ListStageChangesRequest(model_name="credit-risk"))
    assert everything.next_page_token == ""
    assert len(everything.changes) == 5  # three promotions, two demotions
    paged: list[pb.StageChange] = []
    req = pb.ListStageChangesRequest(model_name="credit-risk", page_size=2)
    pages = 0
    while True:
        page = registry.ListStageChanges(req)
        assert len(page.changes) <= 2
        paged.extend(page.changes)
        pages += 1
        if not page.next_page_token:
            break
        req.page_token = page.next_page_token
    assert pages == 3
    assert [c.record_id + c.version for c in paged] == [
        c.record_id + c.version for c in everything.changes
    ]
    # What `mrmctl models show` reads.
    with RegistryClient(running_stack_each_db.registry_addr) as client:
        assert client.stage_changes("credit-risk", page_size=2) == list(everything.changes)

    def bad(**kw: object) -> tuple[grpc.StatusCode, str]:
        request = pb.ListStageChangesRequest(model_name="credit-risk", **kw)  # type: ignore[arg-type]
        return bad_request(lambda: registry.ListStageChanges(request))[:2]

    assert bad(page_size=-1) == (grpc.StatusCode.INVALID_ARGUMENT, "page_size")
    assert bad(page_size=1001) == (grpc.StatusCode.INVALID_ARGUMENT, "page_size")
    assert bad(page_token="not a token!") == (grpc.StatusCode.INVALID_ARGUMENT, "page_token")
    assert bad(page_token="eHl6") == (grpc.StatusCode.INVALID_ARGUMENT, "page_token")  # "xyz"
