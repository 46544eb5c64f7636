"""What real yolo11n exports contain, and what ONNX Runtime's CPU optimizer fuses: real export, real ORT sessions."""

import os
import tempfile

os.environ["YOLO_OFFLINE"] = "1"  # also set by tests/conftest.py; kept so this file stands alone
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-leaky-cfg-"))
os.environ.setdefault("YOLO_AUTOINSTALL", "False")

import onnx  # noqa: E402
import pytest  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from yolo_leaky import load  # noqa: E402
from yolo_leaky.measure.bench import export_onnx  # noqa: E402
from yolo_leaky.measure.onnx_check import QUICKGELU_KEY, check_export, op_counts, ort_fusion, silu_patterns  # noqa: E402

IMGSZ = 64
ACTS = {"silu": "silu", "relu": "relu", "leaky": "leaky_relu:0.1", "prelu": "prelu"}
SITES = 77  # activation sites of yolo11n (every Conv with an activation; C2PSA's attention convs have none)


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("onnx")
    return {key: export_onnx(load("yolo11n.yaml", act=act), out, IMGSZ) for key, act in ACTS.items()}


@pytest.fixture(scope="module")
def checks(exports) -> dict:
    return {key: check_export(exports[key], ACTS[key]) for key in ACTS}


def test_op_counts_see_the_swapped_activation(exports):
    counts = {key: op_counts(path) for key, path in exports.items()}
    for c in counts.values():
        assert c["Conv"] >= SITES
    assert counts["relu"]["Relu"] == SITES
    assert counts["leaky"]["LeakyRelu"] == SITES
    assert counts["prelu"]["PRelu"] == SITES
    assert counts["silu"]["Sigmoid"] == SITES + 1  # + the Detect head's class-score sigmoid
    for key in ("relu", "leaky", "prelu"):
        assert counts[key].get("Sigmoid", 0) == 1  # only the head's


def test_silu_patterns_count_sites_not_the_head_sigmoid(exports):
    assert silu_patterns(exports["silu"]) == SITES
    for key in ("relu", "leaky", "prelu"):
        assert silu_patterns(exports[key]) == 0
        assert silu_patterns(exports[key], conv_only=False) == 0


def test_check_export_reports_silu_free(checks):
    assert checks["silu"]["silu_free"] is False
    assert checks["silu"]["silu_patterns"] == SITES
    for key in ("relu", "leaky", "prelu"):
        assert checks[key]["silu_free"] is True
        assert checks[key]["act"] == ACTS[key]
        assert checks[key]["op_counts"]["Conv"] >= SITES


def test_ort_fuses_relu_and_leaky_into_conv(checks):
    relu, leaky = checks["relu"]["ort"], checks["leaky"]["ort"]
    assert relu["fused_into_conv"].get("Relu") == SITES
    assert "Relu" not in relu["standalone"]
    assert leaky["fused_into_conv"].get("LeakyRelu") == SITES
    assert "LeakyRelu" not in leaky["standalone"]
    for info in (relu, leaky):
        assert info["conv_total"] >= SITES
        assert sum(info["conv_kinds"].values()) == info["conv_total"]


def test_ort_keeps_silu_and_prelu_out_of_conv(checks):
    silu, prelu = checks["silu"]["ort"], checks["prelu"]["ort"]
    assert not silu["fused_into_conv"]
    assert silu["standalone"].get(QUICKGELU_KEY, 0) + silu["standalone"].get("SiLU(x*Sigmoid(x))", 0) == SITES
    assert not prelu["fused_into_conv"]
    assert prelu["standalone"]["PRelu"] == SITES


def test_silu_patterns_on_handmade_graphs(tmp_path):
    """x*sigmoid(x) after a Conv counts; a bare Sigmoid, x*sigmoid(y) and a non-Conv x do not (unless asked)."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 1, 1], [1.0])
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Sigmoid", ["c"], ["s"]),
        helper.make_node("Mul", ["c", "s"], ["silu"]),  # a site
        helper.make_node("Sigmoid", ["silu"], ["head"]),  # bare sigmoid: not a site
        helper.make_node("Mul", ["x", "head"], ["gate"]),  # x * sigmoid(other): not a site
        helper.make_node("Sigmoid", ["gate"], ["s2"]),
        helper.make_node("Mul", ["s2", "gate"], ["y"]),  # x*sigmoid(x) whose x is a Mul output
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, 2, 2]) for n in ("x", "y")]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [io[0]], [io[1]], [w]), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    path = tmp_path / "hand.onnx"
    onnx.save(model, path)
    assert silu_patterns(path) == 1
    assert silu_patterns(path, conv_only=False) == 2
    assert op_counts(path) == {"Sigmoid": 3, "Mul": 3, "Conv": 1}
    fused = ort_fusion(path)
    assert fused["conv_total"] == 1
