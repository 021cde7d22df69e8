"""The access matrix: every RPC of every service, by every kind of credential.

Each cell is asserted exactly: UNAUTHENTICATED (no, a malformed, wrong, revoked
or expired token; an OIDC id-token that is expired, for another audience, from
another issuer or badly signed), PERMISSION_DENIED (a valid credential whose
roles, or models, do not allow the call), or OK: the call did what it asks
(the probes are real requests against a deployed model; a probe may name codes
that only its handler answers, such as RecordOutcomes' INVALID_ARGUMENT, and
those count as let through). The allowed roles are written out here, by hand,
not read from mrm.core.auth.policy, so a change to the policy fails this test
until someone decides it was meant. A refused write leaves the ledger (its size)
and the registry unchanged.

mTLS has its own stack (tests/e2e/test_access_mtls.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mrm.client.ids import new_record_id
from mrm.client.ledger import LedgerClient, new_record
from mrm.client.registry import RegistryClient
from mrm.core.auth import tokens
from mrm.oip.v2 import grpc_predict_v2_pb2 as oip
from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as oip_grpc
from mrm.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    explain_pb2,
    explain_pb2_grpc,
    ledger_pb2,
    ledger_pb2_grpc,
    monitor_pb2,
    monitor_pb2_grpc,
    proxy_pb2,
    proxy_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)
from tests.conftest import RunningLedger, start_ledger
from tests.support.auth import TEST_TOKEN, issue
from tests.support.decisions import decide, deploy_explained, wait_recorded
from tests.support.issuer import Issuer

OK, UNAUTH, DENIED = (
    grpc.StatusCode.OK,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
)
ALL = frozenset({"admin", "deployer", "auditor", "proxy", "explainer", "registry", "monitor"})
CHANGE = frozenset({"deployer", "admin"})
EXPLAIN_READ = frozenset({"auditor", "deployer", "explainer", "admin"})
MONITOR_READ = frozenset({"auditor", "deployer", "monitor", "admin"})
PUBLIC: frozenset[str] = frozenset()
MODEL = "credit-risk"
VERSION = "1.2.4"
COMMIT = "0" * 40  # deploy_explained's source commit


@dataclass
class World:
    stack: RunningLedger
    issuer: Issuer
    prediction_id: str
    explanation_id: str
    alert_id: str
    version: registry_pb2.ModelVersion
    artifact_sha: str
    rows: np.ndarray[Any, Any]
    input_name: str
    tokens: dict[str, str] = field(default_factory=dict)
    channels: dict[str, grpc.Channel] = field(default_factory=dict)
    counter: Iterator[int] = field(default_factory=lambda: iter(range(1, 1_000_000)))

    def channel(self, addr: str) -> grpc.Channel:
        if addr not in self.channels:
            self.channels[addr] = grpc.insecure_channel(addr)
        return self.channels[addr]

    def tree_size(self) -> int:
        with LedgerClient(self.stack.addr) as ledger:
            return int(ledger.checkpoint(refresh=True).tree_size)


@dataclass(frozen=True)
class Probe:
    """One RPC, called with a real request; `roles` may call it (PUBLIC: anyone)."""

    name: str
    roles: frozenset[str]
    call: Callable[[World, tuple[tuple[str, str], ...]], Any]
    writes: bool = False
    model_scoped: bool = False  # a deployer needs the model among its globs
    reached: frozenset[grpc.StatusCode] = frozenset()
    """Codes that, for this probe, only the handler answers: the call was let through
    (counted as OK), though the request did not do what it asks."""


def _ledger(w: World) -> ledger_pb2_grpc.LedgerServiceStub:
    return ledger_pb2_grpc.LedgerServiceStub(w.channel(w.stack.addr))


def _registry(w: World) -> registry_pb2_grpc.RegistryServiceStub:
    return registry_pb2_grpc.RegistryServiceStub(w.channel(w.stack.registry_addr))


def _explain(w: World) -> explain_pb2_grpc.ExplainServiceStub:
    return explain_pb2_grpc.ExplainServiceStub(w.channel(w.stack.explain_addr))


def _oip(w: World) -> oip_grpc.GRPCInferenceServiceStub:
    return oip_grpc.GRPCInferenceServiceStub(w.channel(w.stack.proxy_addr))


def _monitor_addr(w: World) -> str:
    return w.stack.stack.stack.monitor_addr


def _monitor(w: World) -> monitor_pb2_grpc.MonitorServiceStub:
    return monitor_pb2_grpc.MonitorServiceStub(w.channel(_monitor_addr(w)))


def _outcomes(w: World, md: Any) -> Any:
    # The first allowed call records the outcome; later ones are duplicates (OK too).
    outcome = monitor_pb2.Outcome(mrm_record_id=w.prediction_id, label="1")
    return monitor_pb2_grpc.OutcomeServiceStub(w.channel(_monitor_addr(w))).RecordOutcomes(
        monitor_pb2.RecordOutcomesRequest(outcomes=[outcome], source="matrix"), metadata=md
    )


def _append(w: World, md: Any) -> Any:
    record = new_record("PREDICTION", {"matrix": next(w.counter)}, model_name=MODEL)
    return _ledger(w).AppendRecords(ledger_pb2.AppendRecordsRequest(records=[record]), metadata=md)


def _upload(w: World, md: Any) -> Any:
    data = f"matrix artifact {next(w.counter)}".encode()
    ref = registry_pb2.ArtifactRef(
        sha256=hashlib.sha256(data).hexdigest(), size=len(data), media_type="text/plain"
    )
    parts = iter(
        [
            registry_pb2.UploadArtifactRequest(header=ref),
            registry_pb2.UploadArtifactRequest(chunk=data),
        ]
    )
    return _registry(w).UploadArtifact(parts, metadata=md)


def _version_like(w: World, version: str, **facts: Any) -> registry_pb2.ModelVersion:
    """A new version of the deployed model, on the same (uploaded) artifacts."""
    out = registry_pb2.ModelVersion()
    out.CopyFrom(w.version)
    for output_only in ("create_time", "created_by_identity", "created_by", "stage"):
        out.ClearField(output_only)
    out.ClearField("ingested_record_id")
    out.version = version
    out.facts_json = json.dumps(json.loads(out.facts_json or "{}") | facts)
    return out


def _register(w: World, md: Any) -> Any:
    version = _version_like(w, f"9.0.{next(w.counter)}")
    return _registry(w).RegisterVersion(
        registry_pb2.RegisterVersionRequest(version=version, request_id=new_record_id()),
        metadata=md,
    )


def _promote(w: World, md: Any) -> Any:
    return _registry(w).PromoteVersion(
        registry_pb2.PromoteVersionRequest(
            model_name=MODEL,
            version=VERSION,
            stage=registry_pb2.STAGE_PRODUCTION,
            reason="matrix",
            request_id=new_record_id(),
        ),
        metadata=md,
    )


def _refusal(w: World, md: Any) -> Any:
    return _registry(w).RecordRefusal(
        registry_pb2.RecordRefusalRequest(
            model_name=MODEL,
            version=f"9.9.{next(w.counter)}",
            reasons=["matrix: accuracy below the gate"],
            facts_json="{}",
            request_id=new_record_id(),
        ),
        metadata=md,
    )


def _first(stream: Any) -> Any:
    try:
        return next(iter(stream))
    finally:
        stream.cancel()


def _infer(w: World, md: Any) -> Any:
    array = np.asarray(w.rows[0], np.float32).reshape(1, -1)
    request = oip.ModelInferRequest(
        model_name=MODEL,
        inputs=[
            oip.ModelInferRequest.InferInputTensor(
                name=w.input_name, datatype="FP32", shape=list(array.shape)
            )
        ],
        raw_input_contents=[array.tobytes()],
    )
    reply = _oip(w).ModelInfer(request, metadata=md)
    # sampled into the ledger in the background: wait, so that it does not land
    # during a later cell's "a refused write leaves the ledger unchanged"
    wait_recorded(w.stack, [reply.parameters["mrm_record_id"].string_param])
    return reply


def _on(where: str, call: Callable[[grpc.Channel, Any], Any]) -> Callable[[World, Any], Any]:
    """`call` on the server of `where` (ledger, registry, explain, proxy or monitor)."""

    def probe(w: World, md: Any) -> Any:
        if where == "monitor":
            addr = _monitor_addr(w)
        else:
            addr = w.stack.addr if where == "ledger" else getattr(w.stack, f"{where}_addr")
        return call(w.channel(addr), md)

    return probe


PROBES = [
    # ledger
    Probe("LedgerService/AppendRecords(PREDICTION)", frozenset({"proxy"}), _append, writes=True),
    Probe(
        "LedgerService/GetRecord",
        ALL,
        lambda w, md: _ledger(w).GetRecord(
            ledger_pb2.GetRecordRequest(record_id=w.prediction_id), metadata=md
        ),
    ),
    Probe(
        "LedgerService/QueryRecords",
        ALL,
        lambda w, md: _ledger(w).QueryRecords(
            ledger_pb2.QueryRecordsRequest(page_size=5), metadata=md
        ),
    ),
    Probe(
        "LedgerService/GetCheckpoint",
        ALL,
        lambda w, md: _ledger(w).GetCheckpoint(ledger_pb2.GetCheckpointRequest(), metadata=md),
    ),
    Probe(
        "LedgerService/ListCheckpoints",
        ALL,
        lambda w, md: _ledger(w).ListCheckpoints(
            ledger_pb2.ListCheckpointsRequest(page_size=2), metadata=md
        ),
    ),
    Probe(
        "LedgerService/GetInclusionProof",
        ALL,
        lambda w, md: _ledger(w).GetInclusionProof(
            ledger_pb2.GetInclusionProofRequest(record_id=w.prediction_id), metadata=md
        ),
    ),
    Probe(
        "LedgerService/GetConsistencyProof",
        ALL,
        lambda w, md: _ledger(w).GetConsistencyProof(
            ledger_pb2.GetConsistencyProofRequest(old_size=1, new_size=2),
            metadata=md,
        ),
    ),
    # registry
    Probe(
        "RegistryService/CreateModel",
        CHANGE,
        lambda w, md: _registry(w).CreateModel(
            registry_pb2.CreateModelRequest(
                model=registry_pb2.Model(name=f"credit-matrix-{next(w.counter)}")
            ),
            metadata=md,
        ),
        writes=True,
        model_scoped=True,
    ),
    Probe(
        "RegistryService/GetModel",
        ALL,
        lambda w, md: _registry(w).GetModel(registry_pb2.GetModelRequest(name=MODEL), metadata=md),
    ),
    Probe(
        "RegistryService/ListModels",
        ALL,
        lambda w, md: _registry(w).ListModels(registry_pb2.ListModelsRequest(), metadata=md),
    ),
    Probe("RegistryService/UploadArtifact", CHANGE, _upload, writes=True),
    Probe("RegistryService/RegisterVersion", CHANGE, _register, writes=True, model_scoped=True),
    Probe(
        "RegistryService/GetVersion",
        ALL,
        lambda w, md: _registry(w).GetVersion(
            registry_pb2.GetVersionRequest(model_name=MODEL, version=VERSION), metadata=md
        ),
    ),
    Probe(
        "RegistryService/ListVersions",
        ALL,
        lambda w, md: _registry(w).ListVersions(
            registry_pb2.ListVersionsRequest(model_name=MODEL), metadata=md
        ),
    ),
    Probe(
        "RegistryService/GetArtifact",
        ALL,
        lambda w, md: list(
            _registry(w).GetArtifact(
                registry_pb2.GetArtifactRequest(sha256=w.artifact_sha), metadata=md
            )
        ),
    ),
    Probe("RegistryService/PromoteVersion", CHANGE, _promote, writes=True, model_scoped=True),
    Probe(
        "RegistryService/ListStageChanges",
        ALL,
        lambda w, md: _registry(w).ListStageChanges(
            registry_pb2.ListStageChangesRequest(model_name=MODEL), metadata=md
        ),
    ),
    Probe(
        "RegistryService/WatchDeployments",
        ALL,
        lambda w, md: _first(
            _registry(w).WatchDeployments(
                registry_pb2.WatchDeploymentsRequest(model_name=MODEL), metadata=md
            )
        ),
    ),
    Probe("RegistryService/RecordRefusal", CHANGE, _refusal, writes=True, model_scoped=True),
    # explain
    Probe(
        "ExplainService/ComputeBaseline",
        CHANGE,
        lambda w, md: _explain(w).ComputeBaseline(
            explain_pb2.ComputeBaselineRequest(model_name=MODEL, version=VERSION), metadata=md
        ),
        writes=True,
        model_scoped=True,
    ),
    Probe(
        "ExplainService/ExplainRecord",
        EXPLAIN_READ,
        lambda w, md: _explain(w).ExplainRecord(
            explain_pb2.ExplainRecordRequest(record_id=w.prediction_id), metadata=md
        ),
    ),
    Probe(
        "ExplainService/GetReport",
        EXPLAIN_READ,
        lambda w, md: _explain(w).GetReport(
            explain_pb2.GetReportRequest(record_id=w.explanation_id), metadata=md
        ),
    ),
    Probe(
        "ExplainService/ListDecisions",
        EXPLAIN_READ,
        lambda w, md: _explain(w).ListDecisions(
            explain_pb2.ListDecisionsRequest(subject_id="matrix-subject"), metadata=md
        ),
    ),
    # the proxy's own service, and the inference protocol (open by default)
    Probe(
        "ProxyService/GetProxyStatus",
        frozenset({"admin", "auditor", "deployer"}),
        lambda w, md: proxy_pb2_grpc.ProxyServiceStub(w.channel(w.stack.proxy_addr)).GetProxyStatus(
            proxy_pb2.GetProxyStatusRequest(), metadata=md
        ),
    ),
    Probe(
        "GRPCInferenceService/ServerLive",
        PUBLIC,
        lambda w, md: _oip(w).ServerLive(oip.ServerLiveRequest(), metadata=md),
    ),
    Probe(
        "GRPCInferenceService/ServerReady",
        PUBLIC,
        lambda w, md: _oip(w).ServerReady(oip.ServerReadyRequest(), metadata=md),
    ),
    Probe(
        "GRPCInferenceService/ModelReady",
        PUBLIC,
        lambda w, md: _oip(w).ModelReady(oip.ModelReadyRequest(name=MODEL), metadata=md),
    ),
    Probe(
        "GRPCInferenceService/ServerMetadata",
        PUBLIC,
        lambda w, md: _oip(w).ServerMetadata(oip.ServerMetadataRequest(), metadata=md),
    ),
    Probe(
        "GRPCInferenceService/ModelMetadata",
        PUBLIC,
        lambda w, md: _oip(w).ModelMetadata(oip.ModelMetadataRequest(name=MODEL), metadata=md),
    ),
    Probe("GRPCInferenceService/ModelInfer", PUBLIC, _infer),
    # the monitor: what it found, acknowledgements, and ground truth
    Probe(
        "MonitorService/GetDrift",
        MONITOR_READ,
        lambda w, md: _monitor(w).GetDrift(
            monitor_pb2.GetDriftRequest(model_name=MODEL), metadata=md
        ),
    ),
    Probe(
        "MonitorService/ListAlerts",
        MONITOR_READ,
        lambda w, md: _monitor(w).ListAlerts(
            monitor_pb2.ListAlertsRequest(model_name=MODEL), metadata=md
        ),
    ),
    Probe(
        "MonitorService/AcknowledgeAlert",
        CHANGE,
        # the first allowed call acknowledges; later ones find it acknowledged (OK)
        lambda w, md: _monitor(w).AcknowledgeAlert(
            monitor_pb2.AcknowledgeAlertRequest(alert_record_id=w.alert_id, note="matrix"),
            metadata=md,
        ),
        writes=True,
        model_scoped=True,
    ),
    Probe(
        "OutcomeService/RecordOutcomes",
        CHANGE,
        _outcomes,
        writes=True,
        model_scoped=True,
        reached=frozenset({grpc.StatusCode.INVALID_ARGUMENT}),
    ),
    # on every server: who am I, and health (never needs credentials)
    *[
        Probe(
            f"AuthService/WhoAmI@{where}",
            ALL,
            _on(
                where,
                lambda ch, md: auth_pb2_grpc.AuthServiceStub(ch).WhoAmI(
                    auth_pb2.WhoAmIRequest(), metadata=md
                ),
            ),
        )
        for where in ("ledger", "registry", "explain", "proxy", "monitor")
    ],
    *[
        Probe(
            f"Health/Check@{where}",
            PUBLIC,
            _on(
                where,
                lambda ch, md: health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(), metadata=md
                ),
            ),
        )
        for where in ("ledger", "registry", "explain", "proxy", "monitor")
    ],
]


@dataclass(frozen=True)
class Credential:
    name: str
    authorization: Callable[[World], str | None]
    roles: frozenset[str] | None  # None: not authenticated at all
    models: str = "*"


def _bearer(value: str) -> str:
    return f"Bearer {value}"


def _token_of(name: str) -> Callable[[World], str]:
    return lambda w: _bearer(w.tokens[name])


_STRANGER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CREDENTIALS = [
    Credential("no credentials", lambda w: None, None),
    Credential("malformed: not Bearer", lambda w: "Basic dXNlcjpwYXNz", None),
    Credential("malformed: garbage", lambda w: _bearer("not a token!"), None),
    Credential("wrong token", lambda w: _bearer(tokens.new_token()), None),
    Credential("revoked token", lambda w: _bearer(w.tokens["revoked"]), None),
    Credential("expired token", lambda w: _bearer(w.tokens["expired"]), None),
    *[
        Credential(f"token of role {role}", _token_of(role), frozenset({role}))
        for role in sorted(ALL)
    ],
    Credential(
        "deployer token for other models",
        lambda w: _bearer(w.tokens["fraud-deployer"]),
        frozenset({"deployer"}),
        models="fraud-*",
    ),
    Credential(
        "OIDC: expired",
        lambda w: _bearer(w.issuer.mint(exp=int(time.time()) - 600, iat=int(time.time()) - 1200)),
        None,
    ),
    Credential("OIDC: wrong audience", lambda w: _bearer(w.issuer.mint(aud="not-mrm")), None),
    Credential(
        "OIDC: wrong issuer",
        lambda w: _bearer(w.issuer.mint(iss="https://evil.example")),
        None,
    ),
    Credential("OIDC: bad signature", lambda w: _bearer(w.issuer.mint(key=_STRANGER)), None),
    Credential(
        "OIDC: valid, no rule matches (another repository)",
        lambda w: _bearer(w.issuer.mint(repository="mallory/fork")),
        frozenset(),
    ),
    Credential(
        "OIDC: valid (acme/credit on main: deployer of credit-*)",
        lambda w: _bearer(w.issuer.mint(sha=COMMIT)),  # the commit the probes' version names
        frozenset({"deployer"}),
        models="credit-*",
    ),
]


def expected(probe: Probe, cred: Credential) -> grpc.StatusCode:
    if probe.roles is PUBLIC:
        return OK
    if cred.roles is None:
        return UNAUTH
    if not cred.roles & probe.roles:
        return DENIED
    if (
        probe.model_scoped
        and cred.roles == {"deployer"}
        and not MODEL.startswith(cred.models.rstrip("*"))
    ):
        return DENIED
    return OK


@pytest.fixture(scope="module")
def access_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("matrix")
    issuer = Issuer(tmp / "issuer")
    (tmp / "auth.toml").write_text(issuer.config_toml())
    stack = start_ledger(tmp / "home", auth_config_file=tmp / "auth.toml")
    try:
        _model, X, _published = deploy_explained(stack, tmp / "project")
        rows = X.to_numpy()[:3]
        (prediction,) = decide(stack, MODEL, rows[:1], "matrix-subject")
        with RegistryClient(stack.registry_addr) as reg:
            version = reg.get_version(MODEL, VERSION)
        with grpc.insecure_channel(stack.explain_addr) as ch:
            explained = explain_pb2_grpc.ExplainServiceStub(ch).ExplainRecord(
                explain_pb2.ExplainRecordRequest(record_id=prediction),
                metadata=(("authorization", _bearer(TEST_TOKEN)),),
            )
        with grpc.insecure_channel(stack.proxy_addr) as ch:
            input_name = (
                oip_grpc.GRPCInferenceServiceStub(ch)
                .ModelMetadata(oip.ModelMetadataRequest(name=MODEL))
                .inputs[0]
                .name
            )
        # A raised alert, as the monitor records one, for AcknowledgeAlert to name.
        alert = new_record(
            "ALERT",
            {
                "state": "firing",
                "rule": "feature_drift",
                "metric": "psi",
                "feature": "income",
                "value": 0.41,
                "threshold": 0.2,
                "summary": "feature drift: income psi 0.41 >= 0.2",
            },
            model_name=MODEL,
            model_version=VERSION,
        )
        with LedgerClient(stack.addr) as ledger:
            ledger.append([alert])
        w = World(
            stack,
            issuer,
            prediction,
            explained.explanation.record_id,
            alert.record_id,
            version,
            version.artifacts[0].sha256,
            rows,
            input_name,
        )
        path = stack.settings.resolved_tokens_file()
        for role in ALL:
            w.tokens[role] = issue(path, f"{role}@matrix.example", role)
        w.tokens["fraud-deployer"] = issue(
            path, "fraud@matrix.example", "deployer", models=("fraud-*",)
        )
        w.tokens["revoked"] = issue(path, "gone@matrix.example", "admin")
        w.tokens["expired"] = issue(path, "late@matrix.example", "admin")
        with tokens.editing(path) as entries:
            tokens.revoke(entries, "gone@matrix.example", revoked_by="system:test-suite")
            entries[:] = [
                dataclasses.replace(e, expires_at="2026-01-01T00:00:00Z")
                if e.principal == "late@matrix.example"
                else e
                for e in entries
            ]
        time.sleep(1.5)  # the servers re-read the tokens file within a second
        yield w
        for ch in w.channels.values():
            ch.close()
    finally:
        stack.stack.stop()


def test_the_matrix_covers_every_rpc_of_every_service() -> None:
    names = {p.name.split("@")[0].split("(")[0] for p in PROBES}
    want = set()
    for module in (ledger_pb2, registry_pb2, explain_pb2, proxy_pb2, monitor_pb2, auth_pb2, oip):
        for service in module.DESCRIPTOR.services_by_name.values():
            want |= {f"{service.name}/{m.name}" for m in service.methods}
    assert want - names == set()


@pytest.mark.parametrize("cred", CREDENTIALS, ids=lambda c: c.name)
def test_every_rpc_answers_this_credential_as_the_policy_says(
    access_stack: World, cred: Credential
) -> None:
    authorization = cred.authorization(access_stack)
    md = (("authorization", authorization),) if authorization is not None else ()
    seen: dict[str, str] = {}
    want: dict[str, str] = {}
    for probe in PROBES:
        secret, said = None, ""
        before = access_stack.tree_size() if probe.writes else None
        try:
            probe.call(access_stack, md)
            code = OK
        except grpc.RpcError as e:
            code = e.code()
            said = e.details() or ""
            if code in probe.reached:
                code = OK
            elif code not in (UNAUTH, DENIED):
                pytest.fail(f"{probe.name} with {cred.name}: {code.name} {said}")
            secret = authorization.split(" ")[-1] if authorization else None
        if code is not OK and secret:
            assert secret not in said, "an error echoed the credential"
        seen[probe.name] = code.name
        want[probe.name] = expected(probe, cred).name
        if before is not None and code is not OK:
            assert access_stack.tree_size() == before, f"a refused {probe.name} changed the ledger"
    assert seen == want


def test_refused_registry_writes_leave_nothing_behind(access_stack: World) -> None:
    md = (("authorization", _bearer(access_stack.tokens["auditor"])),)
    with pytest.raises(grpc.RpcError) as refused:
        _registry(access_stack).CreateModel(
            registry_pb2.CreateModelRequest(model=registry_pb2.Model(name="credit-never")),
            metadata=md,
        )
    assert refused.value.code() is DENIED
    assert "auditor@matrix.example" in (refused.value.details() or "")
    with RegistryClient(access_stack.stack.registry_addr) as reg:
        assert "credit-never" not in {m.name for m in reg.list_models()}
        history = list(reg.stage_changes(MODEL))
    with pytest.raises(grpc.RpcError) as promoted:
        _promote(access_stack, md)
    assert promoted.value.code() is DENIED  # an auditor cannot promote
    with RegistryClient(access_stack.stack.registry_addr) as reg:
        assert list(reg.stage_changes(MODEL)) == history


def test_the_actor_is_the_principal_whatever_the_request_claims(access_stack: World) -> None:
    md = (("authorization", _bearer(access_stack.tokens["proxy"])),)
    record = new_record("PREDICTION", {"claimed": True}, model_name=MODEL)
    record.actor = "ceo@bank.example"  # what a forger would type
    before = access_stack.tree_size()
    with pytest.raises(grpc.RpcError) as refused:
        _ledger(access_stack).AppendRecords(
            ledger_pb2.AppendRecordsRequest(records=[record]), metadata=md
        )
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "records[0].actor" in (refused.value.details() or "")
    assert access_stack.tree_size() == before
    record.actor = ""
    _ledger(access_stack).AppendRecords(
        ledger_pb2.AppendRecordsRequest(records=[record]), metadata=md
    )
    with LedgerClient(access_stack.stack.addr) as ledger:
        assert ledger.get_record(record.record_id).actor == "proxy@matrix.example"
    # A deploy's own account of who ran it is kept, as unverified, beside the principal.
    said = {"ci_actor": "ceo@bank.example", "ci_system": "github-actions"}
    version = _version_like(access_stack, "9.1.0", deployed_by=said)
    md = (("authorization", _bearer(access_stack.tokens["deployer"])),)
    done = _registry(access_stack).RegisterVersion(
        registry_pb2.RegisterVersionRequest(version=version, request_id=new_record_id()),
        metadata=md,
    )
    assert done.version.created_by == "deployer@matrix.example"
    identity = done.version.created_by_identity
    assert identity.principal == "deployer@matrix.example"
    assert identity.unverified_claims["ci_actor"] == "ceo@bank.example"
    assert "ci_actor" not in identity.verified_claims
    with LedgerClient(access_stack.stack.addr) as ledger:
        ingested = ledger.get_record(done.version.ingested_record_id)
    assert ingested.actor == "deployer@matrix.example"
    assert json.loads(ingested.body_json)["identity"]["unverified"]["ci_actor"] == (
        "ceo@bank.example"
    )


def test_a_proxy_token_cannot_forge_a_model_ingested_record(access_stack: World) -> None:
    before = access_stack.tree_size()
    forged = new_record("MODEL_INGESTED", {"forged": True}, model_name=MODEL)
    md = (("authorization", _bearer(access_stack.tokens["proxy"])),)
    with pytest.raises(grpc.RpcError) as refused:
        _ledger(access_stack).AppendRecords(
            ledger_pb2.AppendRecordsRequest(records=[forged]), metadata=md
        )
    assert refused.value.code() is DENIED
    assert "MODEL_INGESTED" in (refused.value.details() or "")
    # a batch with one forbidden record is refused whole
    mixed = [new_record("PREDICTION", {"ok": 1}), forged]
    with pytest.raises(grpc.RpcError) as whole:
        _ledger(access_stack).AppendRecords(
            ledger_pb2.AppendRecordsRequest(records=mixed), metadata=md
        )
    assert whole.value.code() is DENIED
    assert access_stack.tree_size() == before


def test_only_the_services_may_name_whom_they_act_for(access_stack: World) -> None:
    md = (
        ("authorization", _bearer(access_stack.tokens["proxy"])),
        ("mrm-on-behalf-of", "ceo@bank.example"),
    )
    with pytest.raises(grpc.RpcError) as refused:
        _append(access_stack, md)
    assert refused.value.code() is DENIED
    assert "on behalf" in (refused.value.details() or "")


def test_unauthenticated_answers_say_which_credential_failed(access_stack: World) -> None:
    def details(authorization: str | None) -> str:
        md = (("authorization", authorization),) if authorization else ()
        with pytest.raises(grpc.RpcError) as e:
            _ledger(access_stack).GetCheckpoint(ledger_pb2.GetCheckpointRequest(), metadata=md)
        assert e.value.code() is UNAUTH
        return e.value.details() or ""

    assert "no credentials" in details(None)
    assert "not one this server issued" in details(_bearer(tokens.new_token()))
    assert "was revoked" in details(_bearer(access_stack.tokens["revoked"]))
    assert "expired" in details(_bearer(access_stack.tokens["expired"]))
    assert "audience" in details(_bearer(access_stack.issuer.mint(aud="nope")))
    assert "issuer" in details(_bearer(access_stack.issuer.mint(iss="https://evil.example")))
    assert "signature" in details(_bearer(access_stack.issuer.mint(key=_STRANGER)))
    assert "expired" in details(
        _bearer(access_stack.issuer.mint(exp=int(time.time()) - 600, iat=int(time.time()) - 1200))
    )


def test_a_verified_ci_identity_is_recorded_on_what_it_changes(access_stack: World) -> None:
    md = (("authorization", _bearer(access_stack.issuer.mint(run_id="777"))),)
    done = _promote(access_stack, md)
    with LedgerClient(access_stack.stack.addr) as ledger:
        record = ledger.get_record(done.record_id)
    body = json.loads(record.body_json)
    assert record.actor == "ci:acme/credit@refs/heads/main"
    assert body["identity"]["method"] == "oidc"
    assert body["identity"]["issuer"] == access_stack.issuer.issuer
    verified = body["identity"]["verified"]
    assert verified["repository"] == "acme/credit"
    assert verified["run_id"] == "777"
    assert {"sha", "ref", "actor", "workflow_ref", "jti"} <= verified.keys()


def test_a_ci_job_cannot_register_a_commit_other_than_the_one_it_runs(access_stack: World) -> None:
    before = access_stack.tree_size()
    md = (("authorization", _bearer(access_stack.issuer.mint(sha="a" * 40))),)
    with pytest.raises(grpc.RpcError) as refused:
        _register(access_stack, md)
    assert refused.value.code() is DENIED
    assert "source_commit" in (refused.value.details() or "")
    assert "verified id-token" in (refused.value.details() or "")
    assert access_stack.tree_size() == before
