"""Which roles may call which RPC, and which roles may append which record kinds.

One table for every MRM server, so the access rules read in one place. A method
that is not listed is refused (PERMISSION_DENIED) to every caller: a new RPC is
closed until someone decides who may call it.
"""

from __future__ import annotations

from collections.abc import Mapping

from mrm.core.auth.principal import Role

PUBLIC = frozenset[Role]()
"""No credentials needed: health checks and reflection."""
ANY = frozenset(Role)
"""Any verified principal."""

_ADMIN, _DEPLOYER, _AUDITOR = Role.ADMIN, Role.DEPLOYER, Role.AUDITOR
_CHANGE = frozenset({_DEPLOYER, _ADMIN})
_EXPLAIN_READ = frozenset({_AUDITOR, _DEPLOYER, Role.EXPLAINER, _ADMIN})

_LEDGER = {
    "AppendRecords": frozenset({Role.PROXY, Role.EXPLAINER, Role.REGISTRY, Role.MONITOR, _ADMIN}),
    "GetRecord": ANY,
    "QueryRecords": ANY,
    "GetCheckpoint": ANY,
    "ListCheckpoints": ANY,
    "GetInclusionProof": ANY,
    "GetConsistencyProof": ANY,
}
_REGISTRY = {
    "CreateModel": _CHANGE,
    "UploadArtifact": _CHANGE,
    "RegisterVersion": _CHANGE,
    "PromoteVersion": _CHANGE,
    "RecordRefusal": _CHANGE,
    "GetModel": ANY,
    "ListModels": ANY,
    "GetVersion": ANY,
    "ListVersions": ANY,
    "GetArtifact": ANY,
    "ListStageChanges": ANY,
    "WatchDeployments": ANY,
}
_EXPLAIN = {
    "ComputeBaseline": _CHANGE,
    "ExplainRecord": _EXPLAIN_READ,
    "GetReport": _EXPLAIN_READ,
    "ListDecisions": _EXPLAIN_READ,
}
_MONITOR_READ = frozenset({_AUDITOR, _DEPLOYER, Role.MONITOR, _ADMIN})
_MONITOR = {
    "GetDrift": _MONITOR_READ,
    "ListAlerts": _MONITOR_READ,
    "AcknowledgeAlert": _CHANGE,  # and the deployer's globs cover the alert's model
}
_OUTCOME = {"RecordOutcomes": _CHANGE}  # and the globs cover every outcome's model
_PROXY = {"GetProxyStatus": frozenset({_ADMIN, _AUDITOR, _DEPLOYER})}
_INFERENCE_HEALTH = {"ServerLive", "ServerReady", "ModelReady"}
INFERENCE_SERVICE = "inference.GRPCInferenceService"

TABLE: Mapping[str, frozenset[Role]] = {
    **{f"/mrm.v1.LedgerService/{m}": r for m, r in _LEDGER.items()},
    **{f"/mrm.v1.RegistryService/{m}": r for m, r in _REGISTRY.items()},
    **{f"/mrm.v1.ExplainService/{m}": r for m, r in _EXPLAIN.items()},
    **{f"/mrm.v1.ProxyService/{m}": r for m, r in _PROXY.items()},
    **{f"/mrm.v1.MonitorService/{m}": r for m, r in _MONITOR.items()},
    **{f"/mrm.v1.OutcomeService/{m}": r for m, r in _OUTCOME.items()},
    "/mrm.v1.AuthService/WhoAmI": ANY,
}
_PUBLIC_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)

APPEND_KINDS: Mapping[Role, frozenset[str]] = {
    Role.PROXY: frozenset({"PREDICTION", "GAP"}),
    Role.EXPLAINER: frozenset({"EXPLANATION", "EXPLAINABILITY_BASELINE"}),
    Role.REGISTRY: frozenset(
        {
            "MODEL_INGESTED",
            "DATA_LINEAGE",
            "PERFORMANCE_SNAPSHOT",
            "FAIRNESS_SNAPSHOT",
            "EXPLAINABILITY_BASELINE",  # a baseline registered with its version
            "DEPLOYMENT",
        }
    ),
    Role.MONITOR: frozenset({"DRIFT", "ALERT", "OUTCOME"}),
    Role.ADMIN: frozenset({"ACCESS"}),
}
"""The record kinds each role may append. Deployers append nothing directly: the
registry records their changes, with their verified identity as the actor."""

DELEGATES = frozenset({Role.REGISTRY, Role.EXPLAINER, Role.MONITOR})
"""Roles that may name, in `mrm-on-behalf-of`, the principal they verified."""


def required_roles(method: str, *, inference_needs_token: bool) -> frozenset[Role] | None:
    """The roles that may call `method` (any one suffices); PUBLIC for none needed;
    None for a method nobody may call."""
    if method.startswith(_PUBLIC_SERVICES):
        return PUBLIC
    if method.startswith(f"/{INFERENCE_SERVICE}/"):
        name = method.rsplit("/", 1)[1]
        return ANY if inference_needs_token and name not in _INFERENCE_HEALTH else PUBLIC
    return TABLE.get(method)


def appendable(roles: frozenset[Role]) -> frozenset[str]:
    """Every kind some role of `roles` may append."""
    return frozenset().union(*(APPEND_KINDS.get(r, frozenset()) for r in roles))
