"""Ground truth through `mrmctl outcomes upload` and OutcomeService.RecordOutcomes,
against a real stack (PostgreSQL, every server on a free port, the monitor started
by the stack as `mrm up` starts it) and a deployed model whose decisions are
recorded as the proxy records them: by record id and by subject, all or nothing
(checked first with validate_only, whatever the file's size), --skip-bad,
idempotent, a changed label refused, bad RPC input named by field, the deployer
role checked against the decision's model; and health and reflection answering
for OutcomeService on the monitor's port."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]
import orjson
import pytest
from click.testing import CliRunner, Result
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from mrm.cli import outcomes as outcomes_cli
from mrm.cli.main import mrmctl
from mrm.cli.output import rfc3339
from mrm.client.credentials import ClientAuth
from mrm.client.errors import InvalidArgument, PermissionDenied, Unauthenticated
from mrm.client.ids import new_record_id
from mrm.client.ledger import LedgerClient, Record, new_record
from mrm.client.monitor import MonitorClient, Outcome
from mrm.client.registry import RegistryClient
from mrm.core.keyfile import load_or_create_subject_key
from mrm.deploy.schema import onnx_inputs
from mrm.kernel.schema import InputSchema
from mrm.monitor.outcomes import LEDGER_BATCH
from mrm.proxy.audit import Stamper, prediction_record
from mrm.v1 import registry_pb2
from tests.conftest import RunningLedger
from tests.support.auth import TEST_PRINCIPAL, TEST_TOKEN, issue
from tests.support.auth import channel as authorized_channel
from tests.support.credit import applicants, deploy, project, tree_model


class World:
    """A deployed credit-risk 1.0.0 (classes 0 and 1) and decisions about subjects."""

    def __init__(self, stack: RunningLedger) -> None:
        self.stack = stack
        tokens = stack.settings.resolved_tokens_file()
        self.tokens = tokens
        self.proxy = LedgerClient(
            stack.addr, auth=ClientAuth(issue(tokens, "test-proxy", "proxy"), None, "proxy")
        )
        self.ledger = LedgerClient(stack.addr)
        self.monitor_addr = stack.stack.stack.monitor_addr
        settings = stack.settings
        key = load_or_create_subject_key(settings.resolved_subject_key_file())
        self.stamper = Stamper(key)
        with RegistryClient(stack.registry_addr) as reg:
            version = reg.get_version("credit-risk", "1.0.0")
            shas = {a.role: a.sha256 for a in version.artifacts}
            onnx = reg.download(shas[registry_pb2.ARTIFACT_ROLE_ONNX_MODEL])
            self.schema = InputSchema.from_json(
                reg.download(shas[registry_pb2.ARTIFACT_ROLE_INPUT_SCHEMA])
            )
        self.session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])

    def decide(self, subjects: list[str]) -> list[Record]:
        """One decision per subject, run through ONNX Runtime, recorded as the proxy does."""
        frame = applicants(len(subjects), 7)[["income", "debt_to_income", "credit_history_months"]]
        names = [i.name for i in self.session.get_inputs()]
        records = []
        for i, subject in enumerate(subjects):
            feeds = dict(zip(names, onnx_inputs(self.schema, frame.iloc[[i]]), strict=True))
            out = self.session.run(None, feeds)
            outputs = {
                o.name: np.asarray(v) for o, v in zip(self.session.get_outputs(), out, strict=True)
            }
            records.append(
                prediction_record(
                    record_id=new_record_id(),
                    model_name="credit-risk",
                    model_version="1.0.0",
                    onnx_sha256="0" * 64,
                    subject=self.stamper.subject_ref(subject),
                    trace_id="",
                    span_id="",
                    inputs=feeds,
                    outputs=outputs,
                    request_id=subject,
                )
            )
        self.proxy.append(records)
        return [self.ledger.get_record(r.record_id) for r in records]

    def upload(self, path: Path, *args: str) -> Result:
        return CliRunner().invoke(
            mrmctl, ["--monitor-addr", self.monitor_addr, "outcomes", "upload", str(path), *args]
        )

    def outcomes(self) -> list[Record]:
        return list(self.ledger.query(kind="OUTCOME"))

    def client(self, token: str = TEST_TOKEN) -> MonitorClient:
        return MonitorClient(self.monitor_addr, auth=ClientAuth(token, None, "test"))


@pytest.fixture
def outcomes_stack(
    pg_ledger_server: RunningLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> World:
    project(tmp_path, tree_model)
    result = deploy(
        pg_ledger_server, tmp_path, "model.pkl", "--version", "1.0.0", monkeypatch=monkeypatch
    )
    assert result.exit_code == 0, result.output
    return World(pg_ledger_server)


def _csv(path: Path, header: str, *rows: str) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _bodies(records: list[Record]) -> dict[str, dict[str, Any]]:
    return {(b := orjson.loads(r.body_json))["decision_record_id"]: b for r in records}


def test_upload_by_record_id_and_by_subject_is_recorded_once(
    outcomes_stack: World, tmp_path: Path
) -> None:
    a, b, c = outcomes_stack.decide(["applicant-a", "applicant-b", "applicant-c"])
    labels = tmp_path / "labels.csv"
    _csv(
        labels,
        "mrm_record_id,subject_id,decided_at,label,observed_at",
        f"{a.record_id},,,1,",
        f",applicant-b,{rfc3339(b.recorded_at)},0,",
        f",applicant-c,,1,{rfc3339(c.recorded_at)}",
    )
    first = outcomes_stack.upload(labels)
    assert first.exit_code == 0, first.output
    assert first.output.splitlines()[0] == "recorded 3, duplicates 0, rejected 0"

    recorded = outcomes_stack.outcomes()
    assert len(recorded) == 3
    bodies = _bodies(recorded)
    assert {k: v["label"] for k, v in bodies.items()} == {
        a.record_id: "1",
        b.record_id: "0",
        c.record_id: "1",
    }
    assert bodies[c.record_id]["observed_at"] == rfc3339(c.recorded_at)
    assert all(v["source"] == "labels.csv" for v in bodies.values())
    assert all(r.actor == TEST_PRINCIPAL for r in recorded)  # the caller, not the monitor
    assert {(r.model_name, r.model_version) for r in recorded} == {("credit-risk", "1.0.0")}
    assert {r.subject for r in recorded} == {a.subject, b.subject, c.subject}

    # Again, and the same outcomes as JSON Lines by subject: nothing new.
    again = outcomes_stack.upload(labels, "--output", "json")
    assert again.exit_code == 0, again.output
    report = orjson.loads(again.output)
    assert (report["recorded"], report["duplicates"], report["rejected"]) == (0, 3, 0)
    assert sorted(report["record_ids"]) == sorted(r.record_id for r in recorded)
    jsonl = tmp_path / "labels.jsonl"
    rows = [
        {"subject_id": "applicant-a", "label": 1},
        {},
        {"mrm_record_id": b.record_id, "label": "0"},
    ]
    jsonl.write_text("\n".join(orjson.dumps(r).decode() if r else "" for r in rows) + "\n")
    by_subject = outcomes_stack.upload(jsonl)
    assert by_subject.exit_code == 0, by_subject.output
    assert by_subject.output.splitlines()[0] == "recorded 0, duplicates 2, rejected 0"
    assert len(outcomes_stack.outcomes()) == 3

    # A different label for a decision that has one is refused, the rest with it.
    changed = _csv(tmp_path / "changed.csv", "mrm_record_id,label", f"{a.record_id},0")
    result = outcomes_stack.upload(changed)
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0] == "recorded 0, duplicates 0, rejected 1"
    assert lines[1].startswith("line 2: label: ")
    assert "already has the outcome '1'" in lines[1]
    assert len(outcomes_stack.outcomes()) == 3


def test_bad_rows_are_named_by_line_and_nothing_is_recorded(
    outcomes_stack: World, tmp_path: Path
) -> None:
    d1, d2, d3 = outcomes_stack.decide(["s-1", "s-2", "s-3"])
    (ingested,) = outcomes_stack.ledger.query(kind="MODEL_INGESTED")
    unknown = new_record_id()
    bad = _csv(
        tmp_path / "bad.csv",
        "mrm_record_id,subject_id,decided_at,label,observed_at",
        f"{d1.record_id},,,1,",  # line 2: good
        f"{unknown},,,1,",  # 3: no such record
        f"{ingested.record_id},,,1,",  # 4: not a PREDICTION
        f"{d1.record_id},,,1,",  # 5: the same decision again
        f"{d2.record_id},,,yes,",  # 6: not a class
        f"{d2.record_id.upper()},,,1,",  # 7: not a canonical record id
        f"{d3.record_id},,,1,2020-01-01T00:00:00Z",  # 8: observed before the decision
        ",nobody,,0,",  # 9: no decision about this subject
        ",s-2,2020-01-01T00:00:00Z,0,",  # 10: none that early
        ",s-3,,1,",  # 11: good
    )
    result = outcomes_stack.upload(bad)
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0] == "recorded 0, duplicates 0, rejected 8"
    problems = lines[1:-1]
    assert [p.split(": ")[:2] for p in problems] == [
        ["line 3", "mrm_record_id"],
        ["line 4", "mrm_record_id"],
        ["line 5", "mrm_record_id"],
        ["line 6", "label"],
        ["line 7", "mrm_record_id"],
        ["line 8", "observed_at"],
        ["line 9", "subject_id"],
        ["line 10", "subject_id"],
    ]
    assert f"no record has id {unknown}" in problems[0]
    assert "is a MODEL_INGESTED, not a PREDICTION" in problems[1]
    assert "(line 2)" in problems[2]
    assert "'yes' is not one of the classes of model credit-risk 1.0.0: 0, 1" in problems[3]
    assert "is before the decision" in problems[5]
    assert lines[-1] == "nothing was recorded: 8 of 10 outcomes are invalid"
    assert outcomes_stack.outcomes() == []

    # --skip-bad: the two good rows only; the bad ones are reported the same way.
    skipped = outcomes_stack.upload(bad, "--skip-bad", "--output", "json")
    assert skipped.exit_code == 1, skipped.output
    report = orjson.loads(skipped.output)
    assert (report["recorded"], report["duplicates"], report["rejected"]) == (2, 0, 8)
    assert [(p["line"], p["field"]) for p in report["problems"]][:2] == [
        (3, "mrm_record_id"),
        (4, "mrm_record_id"),
    ]
    assert set(_bodies(outcomes_stack.outcomes())) == {d1.record_id, d3.record_id}


def test_a_wrong_label_type_and_rows_that_cannot_be_read(
    outcomes_stack: World, tmp_path: Path
) -> None:
    (d,) = outcomes_stack.decide(["x"])
    # A label the classifier cannot produce, however it is typed.
    jsonl = tmp_path / "typed.jsonl"
    jsonl.write_text(
        f'{{"mrm_record_id": "{d.record_id}", "label": 2}}\n'
        f'{{"mrm_record_id": "{d.record_id}", "label": true}}\n'
        f'{{"mrm_record_id": "{d.record_id}", "label": "1", "observed_at": "yesterday"}}\n'
    )
    result = outcomes_stack.upload(jsonl)
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[1:3] == [
        "line 2: label: must be a string or a number, not true",
        "line 3: observed_at: 'yesterday' is not an RFC 3339 time (e.g. 2026-05-01T12:00:00Z)",
    ]
    one = tmp_path / "one.jsonl"
    one.write_text(f'{{"mrm_record_id": "{d.record_id}", "label": 2}}\n')
    result = outcomes_stack.upload(one)
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[1].startswith("line 1: label: '2' is not one of the classes")
    assert outcomes_stack.outcomes() == []


def _wait_for_token(call: Any) -> Any:
    """Call until the servers have read a freshly issued token (within a second or so)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return call()
        except Unauthenticated:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_rpc_input_is_checked_and_the_deployer_role_is_required(outcomes_stack: World) -> None:
    (d,) = outcomes_stack.decide(["r"])
    with outcomes_stack.client() as client:
        for outcomes, field in [
            ([], "outcomes"),
            ([Outcome(mrm_record_id=d.record_id, label="1")] * 10_001, "outcomes"),
            ([Outcome(mrm_record_id="not-a-uuid", label="1")], "outcomes[0].mrm_record_id"),
            ([Outcome(label="1")], "outcomes[0].mrm_record_id"),
            ([Outcome(mrm_record_id=d.record_id)], "outcomes[0].label"),
        ]:
            with pytest.raises(InvalidArgument) as caught:
                client.record_outcomes(outcomes)
            assert [f for f, _ in caught.value.field_violations] == [field]
        with pytest.raises(InvalidArgument) as caught:
            client.record_outcomes(
                [Outcome(mrm_record_id=d.record_id, label="1")], source="x" * 201
            )
        assert [f for f, _ in caught.value.field_violations] == ["source"]

        # One violation per bad outcome, each with its line.
        with pytest.raises(InvalidArgument) as caught:
            client.record_outcomes(
                [
                    Outcome(mrm_record_id="nope", label="1", line=7),
                    Outcome(mrm_record_id=d.record_id, label="1", line=8),
                    Outcome(mrm_record_id=d.record_id, label="maybe"),
                ]
            )
        violations = caught.value.field_violations
        assert [f for f, _ in violations] == ["outcomes[0].mrm_record_id", "outcomes[2].label"]
        assert violations[0][1].startswith("line 7: ")
        assert not violations[1][1].startswith("line")
        assert outcomes_stack.outcomes() == []

        # skip_bad: the same request records the good one and answers the problems.
        done = client.record_outcomes(
            [
                Outcome(mrm_record_id="nope", label="1", line=7),
                Outcome(mrm_record_id=d.record_id, label="1", line=8),
            ],
            skip_bad=True,
        )
        assert (done.recorded, done.duplicates, len(done.record_ids)) == (1, 0, 1)
        assert [(p.index, p.line, p.field) for p in done.problems] == [(0, 7, "mrm_record_id")]

    (e,) = outcomes_stack.decide(["s"])
    outcome = [Outcome(mrm_record_id=e.record_id, label="0")]
    for principal, roles, models in [
        ("other-deployer", ("deployer",), ("fraud-*",)),
        ("an-auditor", ("auditor",), ("*",)),
    ]:
        token = issue(outcomes_stack.tokens, principal, *roles, models=models)
        with outcomes_stack.client(token) as client, pytest.raises(PermissionDenied):
            _wait_for_token(lambda c=client: c.record_outcomes(outcome))
    assert len(outcomes_stack.outcomes()) == 1

    token = issue(outcomes_stack.tokens, "credit-deployer", "deployer", models=("credit-*",))
    with outcomes_stack.client(token) as client:
        done = _wait_for_token(lambda: client.record_outcomes(outcome, source="crm export"))
    assert done.recorded == 1
    (mine,) = [r for r in outcomes_stack.outcomes() if r.record_id == done.record_ids[0]]
    assert mine.actor == "credit-deployer"
    assert orjson.loads(mine.body_json)["source"] == "crm export"


def _predictions(outcomes_stack: World, n: int) -> list[Record]:
    """`n` PREDICTION records of credit-risk 1.0.0, appended as the proxy appends them."""
    decisions = [
        new_record(
            "PREDICTION",
            {"request": {"id": str(i), "inputs": {}}, "response": {}, "onnx_sha256": "0" * 64},
            model_name="credit-risk",
            model_version="1.0.0",
        )
        for i in range(n)
    ]
    for start in range(0, len(decisions), 2000):
        outcomes_stack.proxy.append(decisions[start : start + 2000])
    return decisions


def test_validate_only_appends_nothing_and_reports_what_a_request_would(
    outcomes_stack: World,
) -> None:
    d1, d2, d3 = outcomes_stack.decide(["v-1", "v-2", "v-3"])
    with outcomes_stack.client() as client:
        client.record_outcomes([Outcome(mrm_record_id=d1.record_id, label="1")])
        request = [
            Outcome(mrm_record_id=d1.record_id, label="1", line=2),  # already recorded
            Outcome(mrm_record_id=d1.record_id, label="0", line=3),  # conflicts with it
            Outcome(mrm_record_id=d2.record_id, label="0", line=4),  # new
            Outcome(mrm_record_id=d2.record_id, label="0", line=5),  # twice in the request
            Outcome(mrm_record_id=d3.record_id, label="maybe", line=6),  # not a class
            Outcome(subject_id="v-3", label="1", line=7),  # new, by subject
        ]
        with pytest.raises(InvalidArgument) as caught:
            client.record_outcomes(request)
        refused = [(f, m.removeprefix("line ")) for f, m in caught.value.field_violations]
        for skip_bad in (False, True):
            checked = client.record_outcomes(request, skip_bad=skip_bad, validate_only=True)
            problems = [
                (f"outcomes[{p.index}].{p.field}", f"{p.line}: {p.message}")
                for p in checked.problems
            ]
            assert problems == refused
            assert [p.line for p in checked.problems] == [3, 5, 6]
            assert (checked.recorded, checked.duplicates) == (2, 1)
            assert len(outcomes_stack.outcomes()) == 1

        # The ids it answers are the ones a request records.
        done = client.record_outcomes(request, skip_bad=True)
        assert list(done.record_ids) == list(checked.record_ids)
        assert (done.recorded, done.duplicates) == (2, 1)
        assert len(outcomes_stack.outcomes()) == 3
        again = client.record_outcomes(request, validate_only=True)
        assert (again.recorded, again.duplicates, len(again.problems)) == (0, 3, 3)


def test_all_or_nothing_across_requests(
    outcomes_stack: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests of two rows: every request is checked before any is recorded,
    and rows in different requests naming one decision are refused."""
    monkeypatch.setattr(outcomes_cli, "MAX_BATCH", 2)
    d = outcomes_stack.decide([f"m-{i}" for i in range(5)])
    rows = [f"{r.record_id},,1" for r in d]
    late_bad = _csv(tmp_path / "late.csv", "mrm_record_id,subject_id,label", *rows[:4], ",m-4,yes")
    result = outcomes_stack.upload(late_bad)
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[1:] == [
        "line 6: label: 'yes' is not one of the classes of model credit-risk 1.0.0: 0, 1",
        "nothing was recorded: 1 of 5 outcomes are invalid",
    ]
    again = _csv(tmp_path / "again.csv", "mrm_record_id,subject_id,label", *rows, ",m-0,0")
    result = outcomes_stack.upload(again)
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[1:] == [
        "line 7: subject_id: names the same decision as line 2 (one outcome per decision)",
        "nothing was recorded: 1 of 6 outcomes are invalid",
    ]
    assert outcomes_stack.outcomes() == []

    good = _csv(tmp_path / "good.csv", "mrm_record_id,subject_id,label", *rows)
    result = outcomes_stack.upload(good)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["recorded 5, duplicates 0, rejected 0"]
    assert set(_bodies(outcomes_stack.outcomes())) == {r.record_id for r in d}


def test_a_bad_row_after_the_first_ledger_batch_records_nothing(
    outcomes_stack: World, tmp_path: Path
) -> None:
    """The ledger takes 4096 records per call: with a bad row past the first 4096
    nothing is recorded; without it, 4097 outcomes are all recorded."""
    decisions = _predictions(outcomes_stack, LEDGER_BATCH + 1)
    rows = [f"{d.record_id},0" for d in decisions]
    bad = _csv(
        tmp_path / "bad.csv", "mrm_record_id,label", *rows[:-1], f"{decisions[-1].record_id},7"
    )
    result = outcomes_stack.upload(bad)
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[1].startswith(f"line {LEDGER_BATCH + 2}: label: '7' is not")
    assert outcomes_stack.outcomes() == []

    many = _csv(tmp_path / "many.csv", "mrm_record_id,label", *rows)
    result = outcomes_stack.upload(many)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"recorded {LEDGER_BATCH + 1}, duplicates 0, rejected 0"]
    assert len(outcomes_stack.outcomes()) == LEDGER_BATCH + 1


def test_monitor_port_answers_health_and_reflection_for_outcome_service(
    ledger_server: RunningLedger,
) -> None:
    services = ("mrm.v1.MonitorService", "mrm.v1.OutcomeService")
    with authorized_channel(ledger_server.stack.stack.monitor_addr) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 15
        while True:  # the monitor turns SERVING once its first readiness probe passes
            statuses = [
                health.Check(health_pb2.HealthCheckRequest(service=name)).status
                for name in ("", *services)
            ]
            if set(statuses) == {health_pb2.HealthCheckResponse.SERVING}:
                break
            assert time.monotonic() < deadline, statuses
            time.sleep(0.1)
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(health_pb2.HealthCheckRequest(service="mrm.v1.NoSuchService"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = refl.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for r in replies for s in r.list_services_response.service}
        assert set(services) <= names
