"""The Explain service through its gRPC API, on a real stack: ledger, registry,
proxy and Explain, a model deployed with its baseline and real decisions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import pytest
from google.protobuf import json_format

from mrm.client.errors import InvalidArgument, MrmRpcError, NotFound
from mrm.client.explain import ExplainClient
from mrm.client.ledger import LedgerClient, new_record
from mrm.client.registry import RegistryClient
from mrm.v1 import explain_pb2, explain_pb2_grpc
from tests.conftest import RunningLedger, start_ledger
from tests.support.auth import channel as authorized_channel
from tests.support.decisions import decide, deploy_explained


@dataclass
class Deployed:
    stack: RunningLedger
    model: Any
    X: pd.DataFrame
    decisions: list[str]
    ingested: str


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    tmp = tmp_path_factory.mktemp("explain")
    stack = start_ledger(tmp / "home")
    try:
        model, X, published = deploy_explained(stack, tmp)
        ids = decide(stack, "credit-risk", X.iloc[:3].to_numpy(), "applicant-7")
        ids += decide(stack, "credit-risk", X.iloc[3:4].to_numpy(), "applicant-8")
        yield Deployed(stack, model, X, ids, published.records["model_ingested"])
    finally:
        stack.stack.stop()


def code_of(call: Any) -> tuple[grpc.StatusCode, MrmRpcError]:
    with pytest.raises(MrmRpcError) as info:
        call()
    return info.value.code, info.value


def test_deploy_records_the_baseline_once(deployed: Deployed) -> None:
    with ExplainClient(deployed.stack.explain_addr) as ex, LedgerClient(deployed.stack.addr) as led:
        again = ex.compute_baseline("credit-risk", "1.2.4")
        stored = list(led.query(kind="EXPLAINABILITY_BASELINE", model_name="credit-risk"))
    assert again.already_recorded
    assert [r.record_id for r in stored] == [again.baseline.record_id]
    body = json.loads(stored[0].body_json)
    base = again.baseline
    assert base.exact
    assert base.output_space in ("probability", "margin")
    assert [g.feature for g in base.global_importance] == [
        "income",
        "debt_to_income",
        "credit_history_months",
    ]
    assert body["shap_version"] == base.shap_version != ""
    assert len(body["background_sha256"]) == 64
    assert body["artifacts"]["onnx_sha256"]
    assert body["expected_value"] == base.expected_value
    assert json_format.MessageToDict(base.parameters) == body["parameters"]
    # debt_to_income drives the synthetic risk the most (see tests.e2e.test_deploy.applicants)
    top = max(base.global_importance, key=lambda g: g.mean_abs_shap)
    assert top.feature == "debt_to_income"


def test_explaining_records_an_explanation_every_time(deployed: Deployed) -> None:
    first_id = deployed.decisions[0]
    with ExplainClient(deployed.stack.explain_addr) as ex:
        one = ex.explain_record(first_id)
        two = ex.explain_record(first_id)
    assert one.record_id != two.record_id
    assert one.prediction_record_id == two.prediction_record_id == first_id
    with LedgerClient(deployed.stack.addr) as led:
        recorded = {r.record_id: r for r in led.query(kind="EXPLANATION")}
        prediction = led.get_record(first_id)
    assert {one.record_id, two.record_id} <= recorded.keys()
    stored = json.loads(recorded[one.record_id].body_json)
    assert stored["prediction_record_id"] == first_id
    assert recorded[one.record_id].subject == prediction.subject  # findable by subject too
    assert recorded[one.record_id].trace_id == prediction.trace_id == one.trace_id
    # The explanation adds up and names every feature with its stored value.
    row = deployed.X.iloc[0]
    assert [c.feature for c in one.contributions] == list(deployed.X.columns)
    for c in one.contributions:
        assert json.loads(c.value_json) == pytest.approx(float(np.float32(row[c.feature])))
        assert c.value.number_value == json.loads(c.value_json)  # the typed field, the same
    assert json_format.MessageToDict(one.parameters) == json.loads(one.parameters_json)
    total = one.base_value + sum(c.shap for c in one.contributions)
    assert abs(total - one.output_value) <= one.tolerance
    assert one.exact
    assert one.tolerance <= 1e-6
    assert one.reproduction.matches
    assert one.reproduction.detail == ""
    # Worded from the model's [explain] table.
    label = str(deployed.model.predict(deployed.X.iloc[:1])[0])
    assert one.decision == {"1": "Rejected", "0": "Approved"}[label]
    assert one.predicted_label == label
    assert one.class_label == "1"
    assert one.output_label.startswith("probability of default")
    p_default = deployed.model.predict_proba(deployed.X.iloc[:1])[0][1]
    if one.output_space == "probability":
        assert one.output_value == pytest.approx(p_default, abs=1e-5)
    assert one.HasField("probability")
    assert one.probability_label == "probability of default"
    assert one.probability == pytest.approx(p_default, abs=1e-5)
    assert one.report_path == f"/reports/{one.record_id}"


def test_decisions_by_raw_subject_newest_first(deployed: Deployed) -> None:
    with ExplainClient(deployed.stack.explain_addr) as ex:
        mine = [r.record_id for r in ex.decisions("applicant-7", page_size=2)]
        other = [r.record_id for r in ex.decisions("applicant-8")]
        later = list(ex.decisions("applicant-7", since=datetime.now(UTC) + timedelta(days=1)))
        other_model = list(ex.decisions("applicant-7", model_name="another-model"))
        code, err = code_of(lambda: list(ex.decisions("applicant-unknown")))
    assert mine == list(reversed(deployed.decisions[:3]))  # paged by 2, newest first
    assert other == deployed.decisions[3:]
    assert later == []
    assert other_model == []
    assert code == grpc.StatusCode.NOT_FOUND
    assert "subject" in err.message
    with LedgerClient(deployed.stack.addr) as led:
        stored = led.get_record(deployed.decisions[0])
    assert "applicant-7" not in stored.subject + stored.body_json


def test_bad_requests_get_clear_statuses(deployed: Deployed) -> None:
    missing = "01900000-0000-7000-8000-000000000000"
    with ExplainClient(deployed.stack.explain_addr) as ex:
        assert code_of(lambda: ex.explain_record(missing))[0] == grpc.StatusCode.NOT_FOUND
        code, err = code_of(lambda: ex.explain_record(deployed.ingested))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert err.field_violations[0][0] == "record_id"
        assert "MODEL_INGESTED" in err.message
        code, err = code_of(lambda: ex.explain_record("not-a-uuid"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert isinstance(err, InvalidArgument)
        code, err = code_of(lambda: ex.explain_record(deployed.decisions[0], row=1))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert err.field_violations == [("row", "1 is out of range: the request carried 1 row(s)")]
        assert code_of(lambda: ex.report(missing))[0] == grpc.StatusCode.NOT_FOUND
        assert code_of(lambda: ex.report(deployed.ingested))[0] == grpc.StatusCode.INVALID_ARGUMENT
        assert code_of(lambda: list(ex.decisions("")))[1].field_violations[0][0] == "subject_id"
        assert (
            code_of(lambda: list(ex.decisions("x" * 2000)))[0] == grpc.StatusCode.INVALID_ARGUMENT
        )
        code, err = code_of(lambda: list(ex.decisions("applicant-7", model_name="Bad Name")))
        assert err.field_violations[0][0] == "model_name"
        assert code_of(lambda: ex.compute_baseline("nope", "1.0.0"))[0] == grpc.StatusCode.NOT_FOUND
        code, err = code_of(lambda: ex.compute_baseline("credit-risk", "1.2"))
        assert err.field_violations[0][0] == "version"
        req = explain_pb2.ListDecisionsRequest(subject_id="applicant-7")
        req.start_time.seconds, req.end_time.seconds = 100, 50
    with authorized_channel(deployed.stack.explain_addr) as ch:
        stub = explain_pb2_grpc.ExplainServiceStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            stub.ListDecisions(req, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_decision_the_model_no_longer_reproduces_is_a_loud_finding(deployed: Deployed) -> None:
    with LedgerClient(deployed.stack.addr) as led:
        real = led.get_record(deployed.decisions[0])
        body = json.loads(real.body_json)
        label = body["response"]["label"][0]
        body["response"]["label"] = [1 - label]  # a logged answer the model never gave
        forged = new_record(
            "PREDICTION",
            body,
            model_name=real.model_name,
            model_version=real.model_version,
            subject=real.subject,
        )
        led.append([forged])
    with ExplainClient(deployed.stack.explain_addr) as ex:
        exp = ex.explain_record(forged.record_id)
        html = ex.report(exp.record_id).html
    assert not exp.reproduction.matches
    assert f"label[0]: logged {1 - label}" in exp.reproduction.detail
    with LedgerClient(deployed.stack.addr) as led:
        recorded = json.loads(led.get_record(exp.record_id).body_json)
    assert recorded["reproduction"]["matches"] is False  # on the audit trail, not hidden
    assert "REPRODUCIBILITY FAILURE" in html


def test_ledger_down_is_unavailable(tmp_path: Path) -> None:

    stack = start_ledger(tmp_path / "home")
    try:
        server = stack.stack.stack.servers["ledger"]
        stack.stack.run(server.stop())
        with ExplainClient(stack.explain_addr, timeout=20) as ex:
            code, err = code_of(lambda: ex.explain_record("01900000-0000-7000-8000-000000000000"))
            assert code == grpc.StatusCode.UNAVAILABLE
            assert "ledger" in err.message
            code, _ = code_of(lambda: list(ex.decisions("applicant-7")))
            assert code == grpc.StatusCode.UNAVAILABLE
        with RegistryClient(stack.registry_addr) as reg:
            assert reg  # the registry itself is still up; only the ledger is gone
    finally:
        stack.stack.stop()


def test_not_found_subject_is_not_confused_with_no_match(deployed: Deployed) -> None:
    with ExplainClient(deployed.stack.explain_addr) as ex, pytest.raises(NotFound):
        list(ex.decisions("applicant-7 "))  # a different id, byte for byte


def test_reuse_latest_returns_the_recorded_explanation(deployed: Deployed) -> None:
    decision = deployed.decisions[1]
    reuse = explain_pb2.ExplainRecordRequest(record_id=decision, reuse_latest=True)
    with authorized_channel(deployed.stack.explain_addr) as ch:
        stub = explain_pb2_grpc.ExplainServiceStub(ch)
        first, again = stub.ExplainRecord(reuse), stub.ExplainRecord(reuse)
    with ExplainClient(deployed.stack.explain_addr) as ex:
        fresh = ex.explain_record(decision)
        latest = ex.explain_record(decision, reuse_latest=True)
    with LedgerClient(deployed.stack.addr) as led:
        recorded = [
            r.record_id
            for r in led.query(kind="EXPLANATION")
            if json.loads(r.body_json)["prediction_record_id"] == decision
        ]
    assert not first.reused  # none recorded yet: explained, and recorded
    assert again.reused
    assert again.explanation == first.explanation
    assert fresh.record_id != first.explanation.record_id
    assert latest == fresh  # the most recent one
    assert recorded == [first.explanation.record_id, fresh.record_id]
