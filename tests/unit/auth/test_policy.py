"""The access policy: who may call each RPC, and who may append each record kind."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from types import ModuleType

import pytest

import mrm.v1
from mrm.core.auth import policy
from mrm.core.auth.principal import Role
from mrm.oip.v2 import grpc_predict_v2_pb2 as oip
from mrm.v1 import ledger_pb2

INFERENCE = "/inference.GRPCInferenceService"
ALL_KINDS = {
    value.name.removeprefix("RECORD_KIND_")
    for value in ledger_pb2.RecordKind.DESCRIPTOR.values
    if value.name != "RECORD_KIND_UNSPECIFIED"
}


def _pb2_modules() -> Iterator[ModuleType]:
    for info in pkgutil.iter_modules(mrm.v1.__path__):
        if info.name.endswith("_pb2"):
            yield importlib.import_module(f"mrm.v1.{info.name}")


def _mrm_methods() -> list[str]:
    return [
        f"/{service.full_name}/{method.name}"
        for module in _pb2_modules()
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ]


def _required(method: str, *, needs_token: bool = False) -> frozenset[Role] | None:
    return policy.required_roles(method, inference_needs_token=needs_token)


def test_the_mrm_v1_services_are_all_found() -> None:
    services = {m.split("/")[1] for m in _mrm_methods()}
    assert {
        "mrm.v1.LedgerService",
        "mrm.v1.RegistryService",
        "mrm.v1.ExplainService",
        "mrm.v1.ProxyService",
        "mrm.v1.AuthService",
    } <= services


@pytest.mark.parametrize("method", _mrm_methods())
def test_every_mrm_rpc_has_a_decided_non_empty_policy(method: str) -> None:
    assert method in policy.TABLE, f"{method} has no entry: it is closed to every caller"
    roles = _required(method)
    assert roles, f"{method} is public or open to nobody"
    assert roles <= frozenset(Role)


def test_the_table_lists_no_rpc_that_does_not_exist() -> None:
    assert set(policy.TABLE) - set(_mrm_methods()) == set()


def test_a_method_not_in_the_table_is_open_to_nobody() -> None:
    assert _required("/mrm.v1.LedgerService/DropEverything") is None
    assert _required("/mrm.v1.Unknown/Thing") is None
    assert _required("/mrm.v1.LedgerService/appendrecords") is None  # names are exact


@pytest.mark.parametrize(
    "method",
    [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ],
)
@pytest.mark.parametrize("needs_token", [False, True])
def test_health_and_reflection_are_public(method: str, needs_token: bool) -> None:
    assert _required(method, needs_token=needs_token) is policy.PUBLIC


def _inference_methods() -> list[str]:
    service = oip.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert f"/{service.full_name}" == INFERENCE
    return [method.name for method in service.methods]


def test_inference_health_is_public_even_when_the_inference_token_is_required() -> None:
    health = {"ServerLive", "ServerReady", "ModelReady"}
    assert health <= set(_inference_methods())
    for name in health:
        assert _required(f"{INFERENCE}/{name}", needs_token=True) is policy.PUBLIC


def test_the_other_inference_rpcs_need_a_principal_only_when_required() -> None:
    for name in set(_inference_methods()) - {"ServerLive", "ServerReady", "ModelReady"}:
        assert _required(f"{INFERENCE}/{name}", needs_token=True) == policy.ANY, name
        assert _required(f"{INFERENCE}/{name}", needs_token=False) is policy.PUBLIC, name


def test_whoami_and_reads_are_open_to_every_verified_role() -> None:
    for method in ("/mrm.v1.AuthService/WhoAmI", "/mrm.v1.LedgerService/GetRecord"):
        assert _required(method) == frozenset(Role)


def test_only_deployers_and_admins_change_the_registry() -> None:
    for name in ("CreateModel", "UploadArtifact", "RegisterVersion", "PromoteVersion"):
        assert _required(f"/mrm.v1.RegistryService/{name}") == frozenset(
            {Role.DEPLOYER, Role.ADMIN}
        )


def test_only_roles_that_append_some_kind_may_call_append_records() -> None:
    writers = _required("/mrm.v1.LedgerService/AppendRecords")
    assert writers == frozenset(r for r in Role if policy.appendable(frozenset({r})))
    assert Role.DEPLOYER not in (writers or ())
    assert Role.AUDITOR not in (writers or ())


def test_the_proxy_appends_only_predictions_and_gaps() -> None:
    assert policy.appendable(frozenset({Role.PROXY})) == {"PREDICTION", "GAP"}


def test_the_explainer_appends_explanations_and_baselines() -> None:
    explainer = policy.appendable(frozenset({Role.EXPLAINER}))
    assert explainer == {"EXPLANATION", "EXPLAINABILITY_BASELINE"}


@pytest.mark.parametrize("kind", ["MODEL_INGESTED", "DEPLOYMENT", "FAIRNESS_SNAPSHOT"])
def test_only_the_registry_appends_model_and_deployment_records(kind: str) -> None:
    assert {r for r in Role if kind in policy.appendable(frozenset({r}))} == {Role.REGISTRY}


def test_only_an_admin_appends_access_records() -> None:
    assert {r for r in Role if "ACCESS" in policy.appendable(frozenset({r}))} == {Role.ADMIN}
    assert policy.appendable(frozenset({Role.ADMIN})) == {"ACCESS"}


def test_deployers_and_auditors_append_nothing_directly() -> None:
    assert policy.appendable(frozenset({Role.DEPLOYER, Role.AUDITOR})) == frozenset()
    assert policy.appendable(frozenset()) == frozenset()


def test_several_roles_append_the_union_of_their_kinds() -> None:
    both = policy.appendable(frozenset({Role.PROXY, Role.ADMIN}))
    assert both == {"PREDICTION", "GAP", "ACCESS"}


def test_every_record_kind_has_a_writer_and_every_listed_kind_exists() -> None:
    listed = policy.appendable(frozenset(Role))
    assert listed == ALL_KINDS


def test_only_the_registry_explainer_and_monitor_may_act_on_behalf_of_another() -> None:
    assert {Role.REGISTRY, Role.EXPLAINER, Role.MONITOR} == policy.DELEGATES


def test_the_monitor_appends_only_what_it_finds_and_what_it_is_given() -> None:
    assert policy.appendable(frozenset({Role.MONITOR})) == {"DRIFT", "ALERT", "OUTCOME"}
    for method in ("AcknowledgeAlert",):
        assert _required(f"/mrm.v1.MonitorService/{method}") == frozenset(
            {Role.DEPLOYER, Role.ADMIN}
        )
    assert _required("/mrm.v1.OutcomeService/RecordOutcomes") == frozenset(
        {Role.DEPLOYER, Role.ADMIN}
    )
    assert Role.PROXY not in (_required("/mrm.v1.MonitorService/ListAlerts") or ())
