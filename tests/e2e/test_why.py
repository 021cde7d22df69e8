"""`mrmctl why` end to end: `mrmctl deploy` a model, send decisions through the
proxy with subject ids, then ask why, the way a support engineer would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import pytest
from click.testing import CliRunner

from mrm.cli.main import mrmctl
from mrm.client.ledger import LedgerClient
from mrm.client.reasons import MIN_SHARE
from tests.conftest import RunningLedger, start_ledger
from tests.support.credit import project, tree_model
from tests.support.decisions import decide
from tests.support.inference import wait_ready
from tests.support.mrmctl import cli

KEYS = {
    "record_id",
    "model",
    "version",
    "recorded_at",
    "decision",
    "output_value",
    "base_value",
    "output_space",
    "contributions",
    "report_url",
    "trace_url",
    "proof_verified",
    "registered_by",
    "adverse",
    "reasons",
}
# income is left without wording: its reasons get the generated sentence.
WORDING = {
    "debt_to_income": "Debt is high relative to income",
    "credit_history_months": "Length of credit history is too short",
}


@dataclass
class Journey:
    stack: RunningLedger
    model: Any
    X: pd.DataFrame
    alice: list[str]
    bob: list[str]
    tmp: Path


@pytest.fixture(scope="module")
def why_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journey]:
    tmp = tmp_path_factory.mktemp("why")
    stack = start_ledger(tmp / "home")
    mp = pytest.MonkeyPatch()
    try:
        model, X, _ = project(tmp, tree_model, "credit-risk")
        with (tmp / "mrm.toml").open("a") as f:
            f.write(
                '[explain]\npositive_label = "1"\n'
                'labels = { "1" = "Rejected", "0" = "Approved" }\n'
                'output_name = "probability of default"\n'
                "[explain.reasons]\n" + "".join(f'{k} = "{v}"\n' for k, v in WORDING.items())
            )
        mp.chdir(tmp)
        mp.setenv("GITHUB_SHA", "3f2a9c1" + "0" * 33)
        done = cli(stack, "deploy", "model.pkl", "--version", "1.2.4", "--output", "json")
        assert done.exit_code == 0, done.output
        assert "explainability_baseline" in json.loads(done.stdout)["records"]
        wait_ready(stack, "credit-risk")
        rejected = X[model.predict(X) == 1].iloc[:2].to_numpy()
        approved = X[model.predict(X) == 0].iloc[:1].to_numpy()
        alice = decide(stack, "credit-risk", rejected, "alice-1003")
        bob = decide(stack, "credit-risk", approved, "bob-17")
        yield Journey(stack, model, X, alice, bob, tmp)
    finally:
        mp.undo()
        stack.stack.stop()


def test_why_subject_gives_the_human_answer(why_stack: Journey) -> None:
    done = cli(why_stack.stack, "why", "--subject", "alice-1003")
    assert done.exit_code == 0, done.output
    answers = [line for line in done.stdout.splitlines() if " by credit-risk 1.2.4 on " in line]
    assert len(answers) == 2  # both decisions, newest first
    for line in answers:
        assert line.startswith("Rejected by credit-risk 1.2.4 on ")
        assert " UTC (probability of default 0." in line
        assert "). Main factors: " in line
        assert not line.endswith("…")  # three features: all of them are the top three
        assert all(f"{name} = " in line for name in why_stack.X.columns)
    assert done.stdout.count("proof:  ✓ decision and explanation are in the ledger") == 2
    assert f"report: http://{why_stack.stack.http_addr}/reports/" in done.stdout
    assert "trace:  https://jaeger.example/trace/" in done.stdout
    approved = cli(why_stack.stack, "why", "--subject", "bob-17")
    assert approved.exit_code == 0
    assert approved.stdout.startswith("Approved by credit-risk")
    assert "Principal reasons" not in approved.stdout


def test_a_rejection_gives_its_principal_reasons_in_the_configured_words(
    why_stack: Journey,
) -> None:
    doc = json.loads(cli(why_stack.stack, "why", why_stack.alice[0], "--output", "json").stdout)
    assert doc["adverse"] is True
    # The factors that pushed towards "Rejected" (the explained probability of default
    # went up), largest first, and none that pushed towards approval.
    pushing = sorted((c for c in doc["contributions"] if c["shap"] > 0), key=lambda c: -c["shap"])
    assert pushing, "a rejection has at least one factor pushing towards it"
    total = sum(c["shap"] for c in pushing)
    principal = [c for c in pushing if c["shap"] >= MIN_SHARE * total]  # none that barely mattered
    assert [r["feature"] for r in doc["reasons"]] == [c["feature"] for c in principal][:4]
    for rank, (r, c) in enumerate(zip(doc["reasons"], principal, strict=False), start=1):
        assert set(r) == {"rank", "feature", "value", "contribution", "text"}
        assert (r["rank"], r["value"], r["contribution"]) == (rank, c["value"], c["shap"])
        want = WORDING.get(r["feature"], f"{r['feature']} of ")
        assert r["text"].startswith(want)
        if r["feature"] not in WORDING:
            assert r["text"].endswith('weighed against "Approved"')
    done = cli(why_stack.stack, "why", why_stack.alice[0])
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    start = lines.index("  Principal reasons:")
    assert lines[start - 1].startswith("Rejected by credit-risk")  # right after the factors
    shown = lines[start + 1 : start + 1 + len(doc["reasons"])]
    assert [line.split(". ", 1)[0].strip() for line in shown] == [
        str(r["rank"]) for r in doc["reasons"]
    ]
    assert all(
        line.split(". ", 1)[1].startswith(f"{r['text']} ({r['feature']} = ")
        for line, r in zip(shown, doc["reasons"], strict=True)
    )
    bob = json.loads(cli(why_stack.stack, "why", why_stack.bob[0], "--output", "json").stdout)
    assert (bob["adverse"], bob["reasons"]) == (False, [])


def test_reasons_for_a_feature_the_model_lacks_refuse_the_deploy(why_stack: Journey) -> None:
    # Next to the project's files, which the config names relative to itself.
    config = why_stack.tmp / "bad-reasons.toml"
    config.write_text((why_stack.tmp / "mrm.toml").read_text() + 'debt_ratio = "Debt is high"\n')
    done = cli(
        why_stack.stack, "deploy", "model.pkl", "--version", "1.2.5", "--config", str(config)
    )
    assert done.exit_code != 0
    # After the steps that ran, one line; before the model is converted or anything recorded.
    *steps, message = done.stderr.strip().splitlines()
    assert [s.split()[1] for s in steps] == ["load", "eval"]
    assert message.startswith("mrmctl: error: ")
    assert "[explain] reasons.debt_ratio in " in message
    assert "the model has no input 'debt_ratio'" in message


def test_why_json_has_exactly_the_issue_keys(why_stack: Journey) -> None:
    done = cli(why_stack.stack, "why", "--subject", "alice-1003", "--output", "json")
    assert done.exit_code == 0, done.output
    docs = json.loads(done.stdout)
    assert [d["record_id"] for d in docs] == list(reversed(why_stack.alice))
    with LedgerClient(why_stack.stack.addr) as led:
        recorded = {r.record_id: r for r in led.query(kind="PREDICTION")}
    for doc in docs:
        assert set(doc) == KEYS
        assert doc["proof_verified"] is True
        # who registered the version, as the registry verified it (the suite's token)
        assert doc["registered_by"]["principal"] == "test-suite"
        assert doc["registered_by"]["method"] == "token"
        assert (doc["model"], doc["version"], doc["decision"]) == (
            "credit-risk",
            "1.2.4",
            "Rejected",
        )
        rec = recorded[doc["record_id"]]
        assert doc["trace_url"] == f"https://jaeger.example/trace/{rec.trace_id}"
        assert doc["recorded_at"].startswith(
            rec.recorded_at.ToDatetime().strftime("%Y-%m-%dT%H:%M")
        )
        assert [c["feature"] for c in doc["contributions"]] == list(why_stack.X.columns)
        assert set(doc["contributions"][0]) == {"feature", "value", "shap"}
        total = doc["base_value"] + sum(c["shap"] for c in doc["contributions"])
        assert total == pytest.approx(doc["output_value"], abs=1e-6)
        assert doc["report_url"].startswith(f"http://{why_stack.stack.http_addr}/reports/")
    one = cli(why_stack.stack, "why", why_stack.bob[0], "--output", "json")
    assert one.exit_code == 0, one.output
    doc = json.loads(one.stdout)
    assert set(doc) == KEYS
    assert doc["decision"] == "Approved"
    assert doc["proof_verified"] is True


def test_why_filters_and_report_file(why_stack: Journey, tmp_path: Path) -> None:
    with LedgerClient(why_stack.stack.addr) as led:
        newest = led.get_record(why_stack.alice[-1])
    day = newest.recorded_at.ToDatetime().date().isoformat()  # the day it was decided, UTC
    report = tmp_path / "why.html"
    done = cli(
        why_stack.stack,
        "why",
        "--subject",
        "alice-1003",
        "--at",
        day,
        "--model",
        "credit-risk",
        "--limit",
        "1",
        "--report-file",
        str(report),
    )
    assert done.exit_code == 0, done.output
    assert done.stdout.count(" by credit-risk 1.2.4 on ") == 1
    html = report.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert why_stack.alice[-1] in html


def test_no_match_is_a_clear_line_and_exit_1(why_stack: Journey) -> None:
    unknown = cli(why_stack.stack, "why", "--subject", "nobody-42")
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("mrmctl: error: no recorded decision matches: subject")
    assert "Traceback" not in unknown.output
    yesterday = cli(why_stack.stack, "why", "--subject", "alice-1003", "--until", "2020-01-01")
    assert yesterday.exit_code == 1
    assert "until 2020-01-02" in yesterday.stderr
    other = cli(why_stack.stack, "why", "--subject", "alice-1003", "--model", "another")
    assert other.exit_code == 1


def test_usage_errors_are_exit_2_and_a_dead_service_exit_3(why_stack: Journey) -> None:
    both = cli(why_stack.stack, "why", why_stack.alice[0], "--subject", "alice-1003")
    assert both.exit_code == 2
    assert "one of them" in both.stderr
    neither = cli(why_stack.stack, "why")
    assert neither.exit_code == 2
    bad = cli(why_stack.stack, "why", "not-a-record")
    assert bad.exit_code == 2
    assert "UUIDv7" in bad.stderr
    clash = cli(
        why_stack.stack, "why", "--subject", "a", "--at", "2026-01-01", "--since", "2026-01-01"
    )
    assert clash.exit_code == 2
    with LedgerClient(why_stack.stack.addr) as led:
        ingested = next(iter(led.query(kind="MODEL_INGESTED")))
    not_a_decision = cli(why_stack.stack, "why", ingested.record_id)
    assert not_a_decision.exit_code == 2
    assert "not a PREDICTION" in not_a_decision.stderr
    missing = cli(why_stack.stack, "why", "01900000-0000-7000-8000-000000000000")
    assert missing.exit_code == 2
    assert "Traceback" not in missing.output
    down = CliRunner().invoke(
        mrmctl,
        ["--ledger-addr", why_stack.stack.addr, "why", "--subject", "alice-1003"],
        env={"MRM_EXPLAIN_ADDR": "127.0.0.1:9"},
    )
    assert down.exit_code == 3
    assert "MRM_EXPLAIN_ADDR" in down.stderr


def test_an_answer_that_differs_from_the_proven_record_is_not_verified(why_stack: Journey) -> None:
    from mrm.cli.session import LedgerSession
    from mrm.cli.why import proven
    from mrm.client.explain import ExplainClient
    from mrm.client.trust import TrustStore

    with ExplainClient(why_stack.stack.explain_addr) as ex:
        exp = ex.explain_record(why_stack.alice[0])
    with LedgerClient(why_stack.stack.addr) as led:
        session = LedgerSession(led, TrustStore.from_env(announce=lambda _line: None))
        latest = session.trusted(refresh=True)
        assert proven(session, latest, exp)
        doctored = type(exp)()
        doctored.CopyFrom(exp)
        doctored.contributions[0].shap += 0.5  # what a lying Explain service might send
        assert not proven(session, latest, doctored)
        elsewhere = type(exp)()
        elsewhere.CopyFrom(exp)
        elsewhere.prediction_record_id = why_stack.bob[0]
        assert not proven(session, latest, elsewhere)


def _explanations_of(stack: RunningLedger, record_id: str) -> list[str]:
    with LedgerClient(stack.addr) as led:
        return [
            r.record_id
            for r in led.query(kind="EXPLANATION")
            if json.loads(r.body_json)["prediction_record_id"] == record_id
        ]


def test_why_reads_the_recorded_explanation_unless_asked_to_re_explain(
    why_stack: Journey, tmp_path: Path
) -> None:
    decision = why_stack.bob[0]
    before = _explanations_of(why_stack.stack, decision)
    first = cli(why_stack.stack, "why", decision, "--output", "json")
    assert first.exit_code == 0, first.output
    after_one = _explanations_of(why_stack.stack, decision)
    assert len(after_one) == max(len(before), 1)  # one recorded when there was none
    report = tmp_path / "why.html"
    second = cli(why_stack.stack, "why", decision, "--output", "json", "--report-file", str(report))
    assert second.exit_code == 0, second.output
    assert _explanations_of(why_stack.stack, decision) == after_one  # read, not appended
    doc = json.loads(second.stdout)
    assert doc["proof_verified"] is True
    assert doc["report_url"].endswith("/reports/" + after_one[-1])  # the latest one
    assert after_one[-1] in report.read_text()
    fresh = cli(why_stack.stack, "why", decision, "--re-explain", "--output", "json")
    assert fresh.exit_code == 0, fresh.output
    after_re = _explanations_of(why_stack.stack, decision)
    assert after_re[:-1] == after_one
    assert json.loads(fresh.stdout)["report_url"].endswith("/reports/" + after_re[-1])
    assert json.loads(fresh.stdout)["proof_verified"] is True
    again = cli(why_stack.stack, "why", decision, "--output", "json")
    assert json.loads(again.stdout)["report_url"].endswith("/reports/" + after_re[-1])
    assert _explanations_of(why_stack.stack, decision) == after_re
