"""The transport-free inference core, with a real ONNX model and no gRPC: domain
requests in, domain responses and domain errors out, records handed to auditing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from skl2onnx import to_onnx  # type: ignore[import-untyped,unused-ignore]
from sklearn.datasets import make_classification  # type: ignore[import-untyped,unused-ignore]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped,unused-ignore]

from mrm.core.errors import InvalidArgument, NotFound, Unavailable
from mrm.proxy.audit import Stamper
from mrm.proxy.core import InferenceCore, InferRequest, parent_context
from mrm.proxy.models import ModelTable, ServingModel, build
from mrm.proxy.tensors import TensorSpec
from tests.support.proxy_fakes import Sink

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(scope="module")
def trained() -> tuple[bytes, bytes, Any, np.ndarray[Any, Any]]:
    X, y = make_classification(n_samples=200, n_features=4, random_state=1)
    model = LogisticRegression().fit(X, y)
    onx = to_onnx(model, X[:1].astype(np.float32), options={id(model): {"zipmap": False}})
    features = [{"name": f"f{i}", "position": i, "dtype": "float"} for i in range(4)]
    schema = json.dumps({"mode": "tensor", "features": features}).encode()
    return onx.SerializeToString(), schema, model, X[:3].astype(np.float32)


class Models:
    def __init__(self, *models: ServingModel) -> None:
        self.table = ModelTable()
        for m in models:
            self.table = self.table.with_model(m)
        self.ready = asyncio.Event()
        self.ready.set()


def serving(trained: Any, version: str, *, rate: float = 1.0, strict: bool = False) -> Any:
    data, schema, _, _ = trained
    return build("m", version, "PRODUCTION", rate, data, "b" * 64, schema, strict=strict)


def arrays(rows: np.ndarray[Any, Any]) -> Any:
    """A decoder that hands over `rows` under the model's one input name."""

    def decode(specs: Sequence[TensorSpec], label: str) -> dict[str, Any]:
        return {specs[0].name: rows}

    return decode


def infer(core: InferenceCore, request: InferRequest) -> Any:
    async def go() -> Any:
        route = core.route("test/infer", {"rpc.system": "test"})
        return await core.infer(request, route)

    try:
        return asyncio.run(go())
    finally:
        core.close()


def test_a_decision_is_run_stamped_and_offered_to_auditing(trained: Any) -> None:
    _, _, model, rows = trained
    sink = Sink()
    core = InferenceCore(Models(serving(trained, "1.0.0")), Stamper(b"k" * 32), sink)
    parent = parent_context([("traceparent", f"00-{TRACE}-00f067aa0ba902b7-01")])
    reply = infer(
        core, InferRequest("m", "", arrays(rows), id="r1", subject_id="s-1", parent=parent)
    )
    assert (reply.model_name, reply.model_version, reply.id) == ("m", "1.0.0", "r1")
    assert reply.outputs["label"].tolist() == model.predict(rows).tolist()
    np.testing.assert_allclose(reply.outputs["probabilities"], model.predict_proba(rows), atol=1e-5)
    assert reply.parameters == {"trace_id": TRACE, "mrm_record_id": reply.record_id}
    [pending] = sink.offered
    record = pending.record()
    assert (record.record_id, record.trace_id, record.model_version) == (
        reply.record_id,
        TRACE,
        "1.0.0",
    )
    assert record.subject.startswith("hmac-sha256:")
    assert "s-1" not in record.subject
    body = json.loads(record.body_json)
    assert body["request"]["id"] == "r1"


def test_requested_outputs_are_shown_but_the_record_keeps_every_output(trained: Any) -> None:
    sink = Sink()
    core = InferenceCore(Models(serving(trained, "1.0.0")), Stamper(b"k" * 32), sink)
    reply = infer(core, InferRequest("m", "1.0.0", arrays(trained[3]), outputs=["label"]))
    assert list(reply.outputs) == ["label"]
    assert set(json.loads(sink.offered[0].record().body_json)["response"]) == {
        "label",
        "probabilities",
    }


def test_unsampled_decisions_carry_a_trace_id_but_no_record(trained: Any) -> None:
    sink = Sink()
    core = InferenceCore(Models(serving(trained, "1", rate=0.0)), Stamper(b"k" * 32), sink)
    reply = infer(core, InferRequest("m", "1", arrays(trained[3])))
    assert reply.record_id == ""
    assert len(reply.trace_id) == 32
    assert "mrm_record_id" not in reply.parameters
    assert sink.offered == []


@pytest.mark.parametrize(
    ("name", "version", "error", "text"),
    [
        ("", "", InvalidArgument, "model_name"),
        ("nope", "", NotFound, "'nope' is not deployed"),
        ("m", "9.9.9", NotFound, "m 9.9.9 is not deployed (deployed: 1.0.0)"),
    ],
)
def test_unknown_models_and_versions_are_domain_errors(
    trained: Any, name: str, version: str, error: type[Exception], text: str
) -> None:
    core = InferenceCore(Models(serving(trained, "1.0.0")), Stamper(b"k" * 32), Sink())
    with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)")):
        infer(core, InferRequest(name, version, arrays(trained[3])))
    assert not core.model_ready(name, version)


def test_bad_inputs_are_refused_before_anything_is_recorded(trained: Any) -> None:
    sink = Sink()
    models = Models(serving(trained, "1.0.0"))

    def failing(specs: Sequence[TensorSpec], label: str) -> dict[str, Any]:
        raise InvalidArgument("inputs[0].shape", f"[3, 5] does not fit {label}")

    core = InferenceCore(models, Stamper(b"k" * 32), sink)
    with pytest.raises(InvalidArgument, match=r"does not fit m 1\.0\.0"):
        infer(core, InferRequest("m", "", failing))
    nan = trained[3].copy()
    nan[1, 2] = np.nan
    core = InferenceCore(models, Stamper(b"k" * 32), sink)
    with pytest.raises(InvalidArgument, match="row 1, column 2, is NaN"):
        infer(core, InferRequest("m", "", arrays(nan)))
    core = InferenceCore(models, Stamper(b"k" * 32), sink)
    with pytest.raises(InvalidArgument, match=r"\['score'\] are not outputs of m"):
        infer(core, InferRequest("m", "", arrays(trained[3]), outputs=["score"]))
    assert sink.offered == []


def test_a_strict_model_is_served_only_once_its_record_is_durable(trained: Any) -> None:
    strict = Models(serving(trained, "1", strict=True))
    sink = Sink()
    reply = infer(
        InferenceCore(strict, Stamper(b"k" * 32), sink), InferRequest("m", "", arrays(trained[3]))
    )
    assert [r.record_id for r in sink.strict] == [reply.record_id]
    assert sink.offered == []
    failing = InferenceCore(strict, Stamper(b"k" * 32), Sink(strict_error="ledger down"))
    with pytest.raises(Unavailable, match="could not be recorded"):
        infer(failing, InferRequest("m", "", arrays(trained[3])))


def test_metadata_and_readiness(trained: Any) -> None:
    core = InferenceCore(Models(serving(trained, "1.0.0")), Stamper(b"k" * 32), Sink())
    try:
        meta = core.metadata("m")
        assert (meta.name, meta.versions, meta.platform) == ("m", ["1.0.0"], "onnxruntime_onnx")
        assert [s.datatype for s in meta.inputs] == ["FP32"]
        assert core.live()
        assert core.ready()
        assert core.model_ready("m", "1.0.0")
    finally:
        core.close()
