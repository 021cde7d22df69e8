"""The proxy's tensor layer: every datatype both ways, raw and typed, and every bad input.

Requests here are built by hand (see `build`), independently of
`encode_outputs`, so a mistake shared by the encoder and the decoder cannot
hide. The last test has Triton's own client put a request on the wire.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import struct
import subprocess
import sys
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from mrm.core.errors import InvalidArgument
from mrm.oip.v2 import grpc_predict_v2_pb2 as pb
from mrm.proxy.tensors import TensorSpec, check_finite, decode_inputs, encode_outputs

Array = npt.NDArray[Any]
INTS = ["UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"]
DATATYPES = ["BOOL", *INTS, "FP16", "FP32", "FP64", "BYTES"]
# The typed field of each datatype, written out here rather than imported.
FIELD = {
    "BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
    "UINT32": "uint_contents", "UINT64": "uint64_contents", "INT8": "int_contents",
    "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip


def sample(datatype: str, rows: int, cols: int = 3) -> Array:
    """Values that reach each type's limits: extremes, negative zero, non-ASCII text."""
    rng = np.random.default_rng(rows)
    shape = (rows, cols)
    if datatype == "BOOL":
        return rng.integers(0, 2, shape).astype(bool)
    if datatype == "BYTES":
        words = np.array(["", "good", "naïve", "日本", "x" * 300], dtype=object)
        return words[rng.integers(0, len(words), shape)]
    if datatype in INTS:
        dtype = np.dtype(datatype.lower())
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
        values.flat[:2] = [info.min, info.max]
        return values
    dtype = np.dtype({"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}[datatype])
    floats: Array = (rng.standard_normal(shape) * 1000).astype(dtype)
    floats.flat[:3] = [np.finfo(dtype).max, -0.0, np.finfo(dtype).tiny]
    return floats


def raw_bytes(datatype: str, array: Array) -> bytes:
    if datatype == "BYTES":
        items = [s.encode() for s in array.ravel()]
        return b"".join(struct.pack("<I", len(b)) + b for b in items)
    return array.astype(array.dtype.newbyteorder("<")).tobytes()


def build(arrays: dict[str, tuple[str, Array]], *, raw: bool) -> pb.ModelInferRequest:
    """A request carrying `arrays` (name: (datatype, values)), raw or typed."""
    request = pb.ModelInferRequest(model_name="credit-risk", model_version="1.2.4")
    for name, (datatype, array) in arrays.items():
        tensor = request.inputs.add(name=name, datatype=datatype, shape=array.shape)
        if raw:
            request.raw_input_contents.append(raw_bytes(datatype, array))
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.extend(s.encode() for s in array.ravel())
        else:
            getattr(tensor.contents, FIELD[datatype]).extend(array.ravel().tolist())
    return request


def spec(name: str, datatype: str, shape: tuple[int, ...] = (-1, 3)) -> TensorSpec:
    return TensorSpec(name, datatype, shape)


def assert_same(got: Array, want: Array) -> None:
    assert got.shape == want.shape
    assert got.dtype == (object if want.dtype == object else want.dtype)
    assert np.array_equal(got, want)
    if want.dtype.kind == "f":  # array_equal does not tell -0.0 from 0.0
        assert np.array_equal(np.signbit(got), np.signbit(want))


def as_request(response: pb.ModelInferResponse) -> pb.ModelInferRequest:
    """The response's outputs sent back as a request's inputs, byte for byte."""
    request = pb.ModelInferRequest(raw_input_contents=response.raw_output_contents)
    for out in response.outputs:
        request.inputs.add(name=out.name, datatype=out.datatype, shape=out.shape)
        if out.HasField("contents"):
            request.inputs[-1].contents.CopyFrom(out.contents)
    return request


@pytest.mark.parametrize("rows", [1, 1000])
@pytest.mark.parametrize(
    ("datatype", "raw"),
    [(d, r) for d in DATATYPES for r in (True, False) if r or d != "FP16"],  # FP16 is raw only
    ids=lambda v: {True: "raw", False: "typed"}.get(v, v),
)
def test_every_datatype_decodes_both_ways(datatype: str, raw: bool, rows: int) -> None:
    want = sample(datatype, rows)
    got = decode_inputs(build({"x": (datatype, want)}, raw=raw), [spec("x", datatype)])
    assert list(got) == ["x"]
    assert_same(got["x"], want)


@pytest.mark.parametrize("rows", [1, 1000])
@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
@pytest.mark.parametrize("datatype", DATATYPES)
def test_every_datatype_encodes_and_decodes_back(datatype: str, raw: bool, rows: int) -> None:
    want = sample(datatype, rows)
    response = pb.ModelInferResponse()
    encode_outputs(response, {"y": want}, raw=raw)
    (out,) = response.outputs
    typed_fp16 = datatype == "FP16" and not raw
    assert out.datatype == ("FP32" if typed_fp16 else datatype)
    assert list(out.shape) == [rows, 3]
    assert bool(response.raw_output_contents) == raw
    assert out.HasField("contents") == (not raw)
    if raw:  # the bytes are exactly what the protocol prescribes
        assert response.raw_output_contents[0] == raw_bytes(datatype, want)
    got = decode_inputs(as_request(response), [spec("y", out.datatype)])["y"]
    assert_same(got, want.astype(np.float32) if typed_fp16 else want)


def test_raw_bytes_follow_the_spec_exactly() -> None:
    request = pb.ModelInferRequest(
        inputs=[
            pb.ModelInferRequest.InferInputTensor(name="f", datatype="FP32", shape=[1, 2]),
            pb.ModelInferRequest.InferInputTensor(name="s", datatype="BYTES", shape=[1, 2]),
        ],
        raw_input_contents=[
            b"\x00\x00\x80?\x00\x00\x00\xc0",
            b"\x02\x00\x00\x00hi\x00\x00\x00\x00",
        ],
    )
    got = decode_inputs(request, [spec("f", "FP32", (-1, 2)), spec("s", "BYTES", (-1, 2))])
    assert got["f"].tolist() == [[1.0, -2.0]]
    assert got["s"].tolist() == [["hi", ""]]


def test_inputs_come_back_in_the_models_order_and_batches_are_free() -> None:
    a, b = sample("FP32", 7), sample("INT64", 7)[:, :1]
    request = build({"b": ("INT64", b), "a": ("FP32", a)}, raw=True)
    got = decode_inputs(request, [spec("a", "FP32"), spec("b", "INT64", (-1, 1))])
    assert list(got) == ["a", "b"]
    assert got["a"].shape == (7, 3)
    empty = decode_inputs(build({"a": ("FP32", a[:0])}, raw=False), [spec("a", "FP32")])
    assert empty["a"].shape == (0, 3)


def test_labels_go_out_as_strings_or_ints() -> None:
    response = pb.ModelInferResponse()
    labels = np.array(["approve", "refuse"], dtype=object)
    encode_outputs(response, {"label": labels, "n": np.array([0, 1], np.int64)}, raw=False)
    assert [(o.name, o.datatype) for o in response.outputs] == [("label", "BYTES"), ("n", "INT64")]
    assert list(response.outputs[0].contents.bytes_contents) == [b"approve", b"refuse"]
    assert list(response.outputs[1].contents.int64_contents) == [0, 1]
    unicode = pb.ModelInferResponse()
    encode_outputs(unicode, {"label": np.array(["oui", "non"])}, raw=True)
    assert unicode.raw_output_contents[0] == b"\x03\x00\x00\x00oui\x03\x00\x00\x00non"
    raw_bytes_out = pb.ModelInferResponse()
    encode_outputs(raw_bytes_out, {"b": np.array([b"\x00\xff", b""], dtype=object)}, raw=True)
    assert raw_bytes_out.raw_output_contents[0] == b"\x02\x00\x00\x00\x00\xff\x00\x00\x00\x00"
    with pytest.raises(TypeError, match="a int cannot be sent as BYTES"):
        encode_outputs(pb.ModelInferResponse(), {"b": np.array([1, "a"], dtype=object)}, raw=True)
    with pytest.raises(TypeError, match="complex128 has no protocol datatype"):
        encode_outputs(pb.ModelInferResponse(), {"z": np.zeros(2, complex)}, raw=True)


# --- Bad input: each an InvalidArgument naming the field and what was expected.

MODEL = [spec("a", "FP32"), spec("b", "INT64", (-1, 1))]


def good(rows: int = 2) -> dict[str, tuple[str, Array]]:
    return {"a": ("FP32", sample("FP32", rows)), "b": ("INT64", sample("INT64", rows)[:, :1])}


def rejects(request: pb.ModelInferRequest, expected: list[TensorSpec] = MODEL) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        decode_inputs(request, expected)
    return caught.value


def test_an_unknown_input_is_named_with_the_models_inputs() -> None:
    request = build({"a": good()["a"], "x": good()["b"]}, raw=True)
    with pytest.raises(InvalidArgument) as caught:
        decode_inputs(request, MODEL, model="credit-risk 1.2.4")
    assert str(caught.value) == (
        "inputs[1].name: 'x' is not an input of credit-risk 1.2.4 (inputs: a, b)"
    )
    request.model_version = ""
    assert rejects(request).description.endswith("not an input of credit-risk (inputs: a, b)")


def test_a_missing_input_says_what_is_needed() -> None:
    error = rejects(build({"a": good()["a"]}, raw=False))
    assert error.field == "inputs"
    assert "needs input 'b' (INT64 [-1, 1]); the request gives a" in error.description
    assert "gives no inputs" in rejects(pb.ModelInferRequest()).description


def test_an_input_given_twice() -> None:
    request = build(good(), raw=True)
    request.inputs.add().CopyFrom(request.inputs[0])
    request.raw_input_contents.append(request.raw_input_contents[0])
    error = rejects(request)
    assert (error.field, error.description) == (
        "inputs[2].name",
        "'a' is given twice (also inputs[0])",
    )


def test_a_wrong_datatype() -> None:
    arrays = good()
    arrays["a"] = ("FP64", arrays["a"][1].astype(np.float64))
    error = rejects(build(arrays, raw=True))
    assert (error.field, error.description) == ("inputs[0].datatype", "'FP64', but a is FP32")


@pytest.mark.parametrize("shape", [[2], [2, 3, 1], [2, 4], [2, -3]])
def test_a_wrong_shape(shape: list[int]) -> None:
    request = build(good(), raw=False)
    request.inputs[0].ClearField("shape")
    request.inputs[0].shape.extend(shape)
    error = rejects(request)
    assert error.field == "inputs[0].shape"
    assert error.description == f"{shape} does not fit a's shape [-1, 3] (-1: any size)"


def test_inputs_must_agree_on_the_number_of_rows() -> None:
    arrays = good()
    arrays["b"] = ("INT64", sample("INT64", 3)[:, :1])
    error = rejects(build(arrays, raw=True))
    assert (error.field, error.description) == ("inputs[1].shape", "has 3 rows but inputs[0] has 2")


def test_typed_element_count_must_match_the_shape() -> None:
    request = build(good(), raw=False)
    request.inputs[0].contents.fp32_contents.append(1.0)
    error = rejects(request)
    assert error.field == "inputs[0].contents.fp32_contents"
    assert error.description == "has 7 values; FP32 [2, 3] needs 6"


def test_raw_length_must_match_the_shape() -> None:
    request = build(good(), raw=True)
    request.raw_input_contents[0] = request.raw_input_contents[0][:-1]
    error = rejects(request)
    assert error.field == "raw_input_contents[0]"
    assert error.description == "has 23 bytes; FP32 [2, 3] needs 24 (6 elements of 4 bytes)"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x01\x00\x00", "ends with 3 bytes, short of a 4-byte length"),
        (b"\x09\x00\x00\x00abc", "an element declares 9 bytes; 3 remain"),
        (b"\x01\x00\x00\x00a", "holds 1 elements; BYTES [1, 2] needs 2"),
        (b"\x00\x00\x00\x00" * 3, "has more than the 2 elements of [1, 2]"),
        (b"\x01\x00\x00\x00\xff\x00\x00\x00\x00", "element 0 is not UTF-8 text"),
    ],
    ids=["short-prefix", "overlong", "too-few", "too-many", "not-utf8"],
)
def test_garbage_bytes_framing(data: bytes, problem: str) -> None:
    request = pb.ModelInferRequest(raw_input_contents=[data])
    request.inputs.add(name="s", datatype="BYTES", shape=[1, 2])
    error = rejects(request, [spec("s", "BYTES", (-1, 2))])
    assert (error.field, error.description) == ("raw_input_contents[0]", problem)


def test_raw_for_some_inputs_and_typed_for_others() -> None:
    request = build(good(), raw=False)
    request.raw_input_contents.append(raw_bytes("FP32", good()["a"][1]))
    error = rejects(request)
    assert error.field == "raw_input_contents"
    assert error.description.startswith("has 1 entries for 2 inputs")


def test_a_tensor_with_both_raw_and_contents() -> None:
    request = build(good(), raw=True)
    request.inputs[1].contents.int64_contents.extend([1, 2])
    error = rejects(request)
    assert error.field == "inputs[1].contents"
    assert "request uses raw_input_contents" in error.description


def test_a_tensor_with_no_data_at_all() -> None:
    request = build(good(), raw=False)
    request.inputs[1].ClearField("contents")
    error = rejects(request)
    assert (error.field, error.description) == (
        "inputs[1].contents",
        "has no data (nor does raw_input_contents)",
    )


def test_typed_values_in_the_wrong_field() -> None:
    request = build(good(), raw=False)
    request.inputs[0].contents.int_contents.append(1)
    error = rejects(request)
    assert error.field == "inputs[0].contents"
    assert error.description == "FP32 values go in fp32_contents, not int_contents"


def test_typed_fp16_is_refused() -> None:
    request = pb.ModelInferRequest()
    request.inputs.add(name="h", datatype="FP16", shape=[1, 1]).contents.fp32_contents.append(1)
    error = rejects(request, [spec("h", "FP16", (-1, 1))])
    assert error.description == "FP16 has no typed form; send it in raw_input_contents"


@pytest.mark.parametrize(("datatype", "value"), [("INT8", 128), ("INT16", -32769), ("UINT8", 256)])
def test_typed_values_must_fit_narrow_ints(datatype: str, value: int) -> None:
    request = pb.ModelInferRequest()
    tensor = request.inputs.add(name="i", datatype=datatype, shape=[1, 2])
    getattr(tensor.contents, FIELD[datatype]).extend([0, value])
    error = rejects(request, [spec("i", datatype, (-1, 2))])
    assert error.description == f"{value} is out of range for {datatype}"


def test_a_huge_declared_shape_is_refused_before_anything_is_allocated() -> None:
    for datatype, data in [("BYTES", b"\x01\x00\x00\x00a"), ("FP64", b"\x00" * 8)]:
        request = pb.ModelInferRequest(raw_input_contents=[data])
        request.inputs.add(name="h", datatype=datatype, shape=[2**40, 2])
        assert rejects(request, [spec("h", datatype, (-1, 2))]).field == "raw_input_contents[0]"


def test_raw_bool_bytes_must_be_zero_or_one() -> None:
    request = pb.ModelInferRequest(raw_input_contents=[b"\x00\x02"])
    request.inputs.add(name="f", datatype="BOOL", shape=[1, 2])
    assert "0 or 1" in rejects(request, [spec("f", "BOOL", (-1, 2))]).description


def test_nan_and_infinity_are_refused_by_row() -> None:
    a = np.ones((4, 3), np.float32)
    a[2, 1] = np.nan
    with pytest.raises(InvalidArgument) as caught:
        check_finite({"n": np.arange(4), "a": a}, allow_nan=False)
    assert str(caught.value) == (
        "inputs['a']: row 2, column 1, is NaN; this model does not accept NaN or infinity"
    )
    check_finite({"a": a}, allow_nan=True)  # a model that takes NaN as "missing"
    a[3, 0] = -np.inf
    with pytest.raises(InvalidArgument, match=r"row 3, column 0, is -infinity; .* not infinity"):
        check_finite({"a": a}, allow_nan=True)
    with pytest.raises(InvalidArgument, match=r"inputs\['v'\]: row 1 is infinity"):
        check_finite({"v": np.array([0.0, np.inf])}, allow_nan=False)
    check_finite({"ok": np.zeros((1000, 30), np.float32)}, allow_nan=False)


# --- Wire compatibility with Triton's own client.

# Runs in its own interpreter: tritonclient's generated code registers the same
# `inference.*` protobuf names as ours, and one process cannot hold both.
TRITON_CLIENT = r"""
import base64, json, sys
from concurrent import futures
import grpc, numpy as np
import tritonclient.grpc as triton

answer = base64.b64decode(sys.stdin.read())
seen = []
def infer(request, context):
    seen.append(request)
    return answer
server = grpc.server(futures.ThreadPoolExecutor(1))
server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
    "inference.GRPCInferenceService", {"ModelInfer": grpc.unary_unary_rpc_method_handler(infer)})])
port = server.add_insecure_port("127.0.0.1:0")
server.start()
inputs = []
for name, datatype, values in [
    ("income", "FP32", np.array([[1.5, -2.0, 3.25], [0.0, 1e30, -0.5]], np.float32)),
    ("age", "INT64", np.array([[42], [-7]], np.int64)),
    ("score", "FP16", np.array([[0.5], [65504]], np.float16)),
    ("flag", "BOOL", np.array([[True], [False]])),
    ("small", "INT8", np.array([[-128], [127]], np.int8)),
    ("city", "BYTES", np.array([["Zürich"], ["Oslo"]], dtype=object)),
]:
    tensor = triton.InferInput(name, list(values.shape), datatype)
    tensor.set_data_from_numpy(values)
    inputs.append(tensor)
client = triton.InferenceServerClient(f"127.0.0.1:{port}")
result = client.infer("credit-risk", inputs, parameters={"subject_id": "c-42"})
server.stop(None)
print(json.dumps({
    "request": base64.b64encode(seen[0]).decode(),
    "label": [b.decode() for b in result.as_numpy("label").ravel()],
    "probabilities": result.as_numpy("probabilities").tolist(),
}))
"""


@pytest.mark.skipif(
    importlib.util.find_spec("tritonclient") is None, reason="tritonclient[grpc] not installed"
)
def test_triton_client_requests_decode_and_our_responses_read_back() -> None:
    response = pb.ModelInferResponse(model_name="credit-risk", model_version="1.2.4")
    probabilities = np.array([[0.25, 0.75], [0.5, 0.5]], np.float32)
    labels = np.array(["refuse", "approve"], dtype=object)
    encode_outputs(response, {"label": labels, "probabilities": probabilities}, raw=True)
    run = subprocess.run(
        [sys.executable, "-c", TRITON_CLIENT],
        input=base64.b64encode(response.SerializeToString()).decode(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = json.loads(run.stdout)
    request = pb.ModelInferRequest.FromString(base64.b64decode(out["request"]))
    assert request.model_name == "credit-risk"
    assert request.parameters["subject_id"].string_param == "c-42"
    expected = [
        spec("income", "FP32"),
        spec("age", "INT64", (-1, 1)),
        spec("score", "FP16", (-1, 1)),
        spec("flag", "BOOL", (-1, 1)),
        spec("small", "INT8", (-1, 1)),
        spec("city", "BYTES", (-1, 1)),
    ]
    got = decode_inputs(request, expected)
    assert got["income"].tolist() == [[1.5, -2.0, 3.25], [0.0, np.float32(1e30), -0.5]]
    assert got["age"].tolist() == [[42], [-7]]
    assert got["score"].tolist() == [[0.5], [65504.0]]
    assert got["flag"].tolist() == [[True], [False]]
    assert got["small"].tolist() == [[-128], [127]]
    assert got["city"].tolist() == [["Zürich"], ["Oslo"]]
    assert out["label"] == ["refuse", "approve"]
    assert out["probabilities"] == probabilities.tolist()
