"""The proxy refuses ONNX it must not run, anywhere in the model (subgraphs too)."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from mrm.core.errors import FailedPrecondition
from mrm.proxy.models import check_onnx

X = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
Y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])


def _model(nodes: list[onnx.NodeProto], opsets: list[tuple[str, int]]) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [X], [Y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])


def _external(name: str) -> TensorProto:
    weight = helper.make_tensor(name, TensorProto.FLOAT, [1], [1.0])
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="/etc/passwd")
    return weight


def _branch(external: bool) -> onnx.GraphProto:
    out = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])
    w = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    return helper.make_graph(
        [helper.make_node("Identity", ["w"], ["b"])],
        "branch",
        [],
        [out],
        initializer=[_external("w") if external else w],
    )


def _if_model(external_in_branch: bool) -> onnx.ModelProto:
    cond = helper.make_tensor("c", TensorProto.BOOL, [], [True])
    nodes = [
        helper.make_node("Constant", [], ["c"], value=cond),
        helper.make_node(
            "If",
            ["c"],
            ["y"],
            then_branch=_branch(external_in_branch),
            else_branch=_branch(False),
        ),
    ]
    return _model(nodes, [("", 17)])


def test_a_plain_model_and_one_with_clean_subgraphs_are_served() -> None:
    assert check_onnx(
        _model([helper.make_node("Relu", ["x"], ["y"])], [("", 17)]).SerializeToString()
    )
    assert check_onnx(_if_model(external_in_branch=False).SerializeToString())


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"garbage", "invalid"),
        (
            _model(
                [helper.make_node("Magic", ["x"], ["y"], domain="com.example")],
                [("", 17), ("com.example", 1)],
            ).SerializeToString(),
            "com.example",
        ),
        (
            # a custom-domain node without its opset declared is still found
            _model(
                [helper.make_node("Magic", ["x"], ["y"], domain="com.example")], [("", 17)]
            ).SerializeToString(),
            "com.example",
        ),
        (_if_model(external_in_branch=True).SerializeToString(), "external"),
    ],
    ids=["garbage", "custom-domain", "undeclared-custom-domain", "external-data-in-subgraph"],
)
def test_unsafe_onnx_is_refused_with_the_reason(data: bytes, says: str) -> None:
    with pytest.raises(FailedPrecondition, match=says):
        check_onnx(data)
