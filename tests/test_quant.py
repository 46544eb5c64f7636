"""INT8 post-training quantization per activation: real ONNX Runtime quantization of real yolo11n exports, scored by
Ultralytics' own validator, calibrated on identical images for every variant, and timed beside FP32.

The SiLU yolo11n is the offline stand-in, trained on the synthetic shapes data (it learns something real there,
unlike on COCO8); an untrained PReLU export covers the activation op ONNX Runtime does not quantize by default.
"""

import math
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import require

from yolo_leaky import UserError, load
from yolo_leaky.measure.bench import BenchResult, export_onnx
from yolo_leaky.measure.quant import (
    SCHEMES,
    Calibration,
    calibration_images,
    count_quant_nodes,
    detect_decode_nodes,
    int8_vs_fp32,
    quantize,
    validate_onnx,
    write_calibration_dataset,
)

IMGSZ = 64
N_CALIB = 16


@pytest.fixture(scope="session")
def shapes_yaml(tmp_path_factory) -> str:
    from yolo_leaky.data.synthetic import make_shapes_dataset

    return str(make_shapes_dataset(tmp_path_factory.mktemp("shapes")))


@pytest.fixture(scope="session")
def calib(shapes_yaml) -> Calibration:
    return calibration_images(shapes_yaml, n=N_CALIB, imgsz=IMGSZ, seed=0)


@pytest.fixture(scope="session")
def silu_pt(standin) -> str:
    """A trained SiLU yolo11n: the offline stand-in (16 epochs of the shapes recipe on this module's shapes data,
    mAP50-95 0.486; trained once per session and shared with the other modules, or taken from a warm cache)."""
    return str(standin[0])


@pytest.fixture(scope="session")
def silu_onnx(silu_pt, tmp_path_factory) -> str:
    return str(export_onnx(load(silu_pt), tmp_path_factory.mktemp("silu"), IMGSZ, name="silu"))


@pytest.fixture(scope="session")
def silu_deploy(silu_onnx, calib, tmp_path_factory) -> dict:
    return quantize(silu_onnx, tmp_path_factory.mktemp("silu-int8") / "deploy.onnx", calib, "deploy")


@pytest.fixture(scope="session")
def prelu_onnx(tmp_path_factory) -> str:
    return str(export_onnx(load("yolo11n.yaml", act="prelu"), tmp_path_factory.mktemp("prelu"), IMGSZ, name="prelu"))


@pytest.fixture(scope="session")
def prelu_schemes(prelu_onnx, calib, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("prelu-int8")
    return {scheme: quantize(prelu_onnx, out / f"{scheme}.onnx", calib, scheme) for scheme in SCHEMES}


def _consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


# --------------------------------------------------------------------------------------------------- calibration


def test_calibration_is_a_seeded_choice_from_train(shapes_yaml, calib):
    again = calibration_images(shapes_yaml, n=N_CALIB, imgsz=IMGSZ, seed=0)
    other = calibration_images(shapes_yaml, n=N_CALIB, imgsz=IMGSZ, seed=1)
    assert again.files == calib.files and again.digest == calib.digest and again.files_digest == calib.files_digest
    assert other.files != calib.files and other.digest != calib.digest
    assert len(calib.files) == N_CALIB and len(set(calib.files)) == N_CALIB
    assert all(f.startswith("images/train/") for f in calib.files)
    assert calib.images.shape == (N_CALIB, 3, IMGSZ, IMGSZ) and calib.images.dtype == np.float32
    assert 0.0 <= calib.images.min() and calib.images.max() <= 1.0
    assert calib.to_dict()["n"] == N_CALIB and "images" not in calib.to_dict()


def test_calibration_images_are_what_the_validator_feeds(calib, tmp_path):
    """The same tensors as Ultralytics' DetectionValidator makes of the same files for a static-shape model."""
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.models.yolo.detect import DetectionValidator

    yaml_path = write_calibration_dataset(calib, tmp_path / "calib")
    validator = DetectionValidator(args={"data": str(yaml_path), "imgsz": IMGSZ, "rect": False, "batch": 1})
    validator.data = check_det_dataset(str(yaml_path))
    validator.stride = 32
    validator.device = torch.device("cpu")
    loader = validator.get_dataloader(validator.data["val"], 1)
    fed = np.concatenate([validator.preprocess(batch)["img"].numpy() for batch in loader])
    np.testing.assert_array_equal(fed, calib.images)


def test_calibration_refuses_bad_input(shapes_yaml, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        calibration_images(tmp_path / "missing.yaml", n=4, imgsz=IMGSZ)
    with pytest.raises(UserError, match="n >= 1"):
        calibration_images(shapes_yaml, n=0, imgsz=IMGSZ)


# -------------------------------------------------------------------------------------------------- quantization


def test_deploy_quantizes_activations_and_keeps_the_decode_float(prelu_onnx, prelu_schemes):
    report = prelu_schemes["deploy"]
    nodes = report["nodes"]
    assert nodes["QuantizeLinear"] > 0 and nodes["DequantizeLinear"] > 0 and nodes["weights_int8"] > 0
    prelu = nodes["activations"]["PRelu"]
    assert prelu["total"] > 50 and prelu["output_quantized"] == prelu["total"]  # every activation output is INT8
    assert nodes["output_float"] and report["activations_folded"] == {}  # PRelu stays a node of its own

    decode = set(detect_decode_nodes(prelu_onnx))
    assert set(report["excluded"]) == decode
    assert {"Softmax", "Sigmoid", "Concat", "Sub", "Add", "Div", "Mul"} <= {
        n.op_type for n in onnx.load(prelu_onnx).graph.node if n.name in decode
    }
    q = onnx.load(report["path"])
    users = _consumers(q)
    kept = [n for n in q.graph.node if n.name in decode]
    assert len(kept) == len(decode)  # the decode survives as float ops, none replaced by a quantized form
    for node in kept:
        assert all(u.op_type != "QuantizeLinear" for out in node.output for u in users.get(out, [])), node.name


def test_schemes_differ_where_they_should(prelu_schemes):
    deploy, conv_only, naive = (prelu_schemes[s]["nodes"] for s in ("deploy", "conv-only", "naive"))
    assert conv_only["activations"]["PRelu"]["output_quantized"] < deploy["activations"]["PRelu"]["output_quantized"]
    assert conv_only["QuantizeLinear"] < deploy["QuantizeLinear"] < naive["QuantizeLinear"]
    assert not naive["output_float"]  # the box pixels and the 0-1 scores leave through one INT8 tensor
    assert naive["activations"]["Sigmoid"]["output_quantized"] == naive["activations"]["Sigmoid"]["total"] == 1


def test_quantize_refuses_bad_arguments(prelu_onnx, shapes_yaml, tmp_path):
    small = calibration_images(shapes_yaml, n=2, imgsz=IMGSZ)
    with pytest.raises(UserError, match="unknown INT8 scheme"):
        quantize(prelu_onnx, tmp_path / "x.onnx", small, "everything")
    with pytest.raises(UserError, match="calibration method"):
        quantize(prelu_onnx, tmp_path / "x.onnx", small, "deploy", method="kl")
    big = calibration_images(shapes_yaml, n=2, imgsz=2 * IMGSZ)
    with pytest.raises(UserError, match="imgsz=64"):
        quantize(prelu_onnx, tmp_path / "x.onnx", big, "deploy")
    assert not (tmp_path / "x.onnx").exists()


def test_quantize_one_layer_alone(prelu_onnx, calib, tmp_path):
    """``only=`` (sensitivity's per-layer INT8): the INT8 weights and the quantized activations are those of layer 16
    (yolo11n's C3k2 with 4 sites), everything else stays float; one calibration pass serves every layer (cache)."""
    cache = tmp_path / "ranges.json"
    report = quantize(prelu_onnx, tmp_path / "l16.onnx", calib, only=("/model.16/",), calibration_cache=cache)
    assert cache.is_file() and report["settings"]["only"] == ["/model.16/"]
    q = onnx.load(report["path"])
    users = _consumers(q)
    weights = {i.name for i in q.graph.initializer}
    fed = {u.name for n in q.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights
           for u in users.get(n.output[0], [])}  # fmt: skip
    assert fed and all(name.startswith("/model.16/") for name in fed), sorted(fed)[:5]
    assert report["nodes"]["activations"]["PRelu"]["output_quantized"] == 4
    other = quantize(prelu_onnx, tmp_path / "l0.onnx", calib, only=("/model.0/",), calibration_cache=cache)
    assert other["nodes"]["activations"]["PRelu"]["output_quantized"] == 1
    with pytest.raises(ValueError, match="no node"):
        quantize(prelu_onnx, tmp_path / "x.onnx", calib, only=("/model.99/",))


def test_count_quant_nodes_on_an_fp32_graph(prelu_onnx):
    nodes = count_quant_nodes(prelu_onnx)
    assert nodes["QuantizeLinear"] == nodes["DequantizeLinear"] == nodes["weights_int8"] == 0
    assert nodes["activations"]["PRelu"]["output_quantized"] == 0 and nodes["output_float"]


@pytest.mark.slow
def test_two_variants_share_one_calibration_set(silu_deploy, prelu_schemes, calib):
    a, b = silu_deploy, prelu_schemes["deploy"]
    assert a["calibration"] == b["calibration"]
    assert a["calibration"]["digest"] == calib.digest and a["calibration"]["files_digest"] == calib.files_digest
    silu = a["nodes"]["activations"]
    # 77 SiLU sites quantized; the Detect head's score Sigmoid is decode and stays float
    assert silu["Sigmoid"]["output_quantized"] == silu["Sigmoid"]["total"] - 1 > 50


# ---------------------------------------------------------------------------------------------------- validation


@pytest.mark.slow
def test_onnx_map_is_the_validators_and_matches_torch(silu_pt, silu_onnx, silu_deploy, shapes_yaml, tmp_path):
    """The FP32 ONNX scores what the torch model scores under the same preprocessing.

    Tolerance 0.005. Measured difference: none to 6 digits (mAP50-95 0.340846 for both on a 10-epoch model; 0.4856
    and 0.4720 for both on 16-epoch SiLU and ReLU models). ORT and torch kernels differ only by float rounding
    (~1e-6 relative), which can matter only for a detection at the 0.001 confidence cut or a tie of scores, in the
    low-precision tail of the PR curve. The bug this guards against is larger: torch's default rect validation
    letterboxes these 64 px images to 96 px, which moved the 10-epoch model from 0.341 to 0.318 (and a 16-epoch
    ReLU model from 0.472 to 0.237).
    """
    torch_metrics = (
        load(silu_pt)
        .val(
            data=shapes_yaml,
            imgsz=IMGSZ,
            batch=1,
            rect=False,
            device="cpu",
            workers=0,
            plots=False,
            verbose=False,
            project=str(tmp_path),
            name="torch",
        )
        .results_dict
    )
    fp32 = validate_onnx(silu_onnx, shapes_yaml, IMGSZ)
    assert fp32["map50_95"] > 0.005, fp32  # learned something: a real score to compare
    assert fp32["map50_95"] == pytest.approx(torch_metrics["metrics/mAP50-95(B)"], abs=0.005)
    assert fp32["map50"] == pytest.approx(torch_metrics["metrics/mAP50(B)"], abs=0.005)
    int8 = validate_onnx(silu_deploy["path"], shapes_yaml, IMGSZ)
    assert set(int8) == {"precision", "recall", "map50", "map50_95"} and int8 != fp32  # another network was scored
    # NaN != NaN: a validator that scored nothing (a missing metric key reads as NaN) would pass the line above
    assert all(0.0 <= v <= 1.0 for v in [*fp32.values(), *int8.values()]), (fp32, int8)
    with pytest.raises(UserError, match="not imgsz=128"):
        validate_onnx(silu_onnx, shapes_yaml, 2 * IMGSZ)


# ------------------------------------------------------------------------------------------------------- latency


def test_int8_ratio_is_taken_within_the_benchmark_rounds():
    """Each variant's INT8/FP32 ratio uses the same rounds and blocks as the benchmark (known samples)."""
    rng = np.random.default_rng(0)
    base = rng.integers(2_000_000, 3_000_000, size=40)
    samples = {"silu": base, "silu@int8": base // 2, "relu": base, "relu@int8": base * 3 // 4}
    blocks = np.repeat(np.arange(4), 10)
    result = BenchResult(
        runtime="ort-cpu",
        imgsz=IMGSZ,
        threads=1,
        baseline="silu",
        rounds=40,
        timing_s=1.0,
        stats={},
        samples_ns=samples,
        block_of_round=blocks,
        settings={"seed": 0},
    )
    from yolo_leaky.measure.bench import latency_stats

    result.stats = latency_stats(samples, "silu", block_of_round=blocks)
    ratios = int8_vs_fp32(result)
    assert set(ratios) == {"silu", "relu"}
    assert ratios["silu"]["paired_ratio"] == pytest.approx(0.5, rel=1e-6)
    assert ratios["relu"]["paired_ratio"] == pytest.approx(0.75, rel=1e-6)
    assert ratios["relu"]["blocks"] == 4 and ratios["relu"]["rounds"] == 40


@pytest.mark.slow
def test_fp32_and_int8_are_timed_in_one_interleaved_benchmark(silu_onnx, silu_deploy, prelu_onnx, prelu_schemes):
    from yolo_leaky.measure.quant import benchmark_fp32_int8

    files = {
        "silu": {"fp32": silu_onnx, "int8": silu_deploy["path"]},
        "prelu": {"fp32": prelu_onnx, "int8": prelu_schemes["deploy"]["path"]},
    }
    result, ratios = benchmark_fp32_int8(files, imgsz=IMGSZ, seconds=1, blocks=2, warmup=1)
    assert list(result.stats) == ["silu", "silu@int8", "prelu", "prelu@int8"] and result.baseline == "silu"
    assert len({len(v) for v in result.samples_ns.values()}) == 1  # every file timed in every round
    for label in ("silu", "prelu"):
        r = ratios[label]
        assert r["paired_ci_low"] <= r["paired_ratio"] <= r["paired_ci_high"] and r["blocks"] == 2
        assert r["int8_median_ms"] == result.stats[f"{label}@int8"].median_ms


# ------------------------------------------------------------------------------------------------------ OpenVINO


def test_openvino_export_and_fusion(tmp_path):
    require("openvino", "openvino")
    from yolo_leaky.measure.quant import export_openvino, openvino_fusion

    xml = export_openvino(load("yolo11n.yaml", act="relu"), tmp_path, IMGSZ, name="relu")
    assert xml.name == "relu.xml" and xml.with_suffix(".bin").is_file()
    fusion = openvino_fusion(xml)
    relu = fusion["activations"]["Relu"]
    assert sum(relu.values()) > 50 and relu.get("Convolution", 0) > 0
    assert fusion["fused_into_conv"] + fusion["standalone"] == sum(
        sum(v.values()) for v in fusion["activations"].values()
    )
    assert fusion["precisions"] == {"f32": fusion["runtime_layer_types"]["Convolution"]}  # FP32, not bf16


def test_int8_stage_scores_at_imgsz_times_at_bench_imgsz_against_the_baseline(tmp_path, monkeypatch):
    """compare's INT8 stage asks measure_int8 to time at the speed tables' size and against the configured
    baseline (silu), whichever variant comes first."""
    from yolo_leaky.harness import compare
    from yolo_leaky.harness.config import CompareConfig

    calls = []
    monkeypatch.setattr(compare, "measure_int8", lambda weights, data, out, **kw: calls.append((weights, kw)) or {})
    c = CompareConfig(
        protocol="scratch", variants=["relu", "silu"], seeds=[0], imgsz=64, bench_imgsz=160, int8=True,
        project=str(tmp_path), name="wiring",
    )  # fmt: skip
    cells = {f"{label}-s0": {"variant": label, "status": "ok", "weights": f"{label}.pt"} for label in ("relu", "silu")}
    compare.measure_int8_stage(c, cells, "data.yaml")
    ((weights, kw),) = calls
    assert list(weights) == ["relu", "silu"]
    assert kw["imgsz"] == 64 and kw["bench_imgsz"] == 160 and kw["baseline"] == "silu"


@pytest.fixture(scope="module")
def openvino_stage(standin, shapes_yaml, calib, tmp_path_factory) -> dict:
    """``quant._measure_openvino`` (the INT8 stage's OpenVINO part) on the stand-in, a trained SiLU yolo11n: its
    FP32 and NNCF INT8 IR exports, both scored by Ultralytics' validator, fusion census, one interleaved benchmark."""
    require("openvino", "openvino")
    require("nncf", "openvino")
    from yolo_leaky.measure.quant import _measure_openvino

    result: dict = {"variants": {"silu": {}}, "latency": {}, "settings": {"baseline": "silu"}}
    out = tmp_path_factory.mktemp("openvino")
    _measure_openvino({"silu": str(standin[0])}, shapes_yaml, out, (IMGSZ, IMGSZ, calib, calib), 1, 1, 1, 2, 0, result)
    return result


def _ir_census(xml: str) -> tuple[Counter, Counter]:
    """Op types, and element types of the constants, of an OpenVINO IR as read from disk."""
    import openvino as ov

    ops = ov.Core().read_model(xml).get_ordered_ops()
    kinds = Counter(op.get_type_name() for op in ops)
    constants = Counter(op.get_output_element_type(0).get_type_name() for op in ops if op.get_type_name() == "Constant")
    return kinds, constants


@pytest.mark.slow
def test_openvino_int8_export_is_an_nncf_int8_ir_that_scores(openvino_stage, calib):
    """``export_openvino(int8=True)``: a real NNCF INT8 IR (FakeQuantize on activations, int8 weights, u8 kernels),
    calibrated on exactly the calibration images, and scored by Ultralytics' validator like the FP32 IR."""
    entry = openvino_stage["variants"]["silu"]["openvino"]
    fp32_xml, int8_xml = Path(entry["fp32_xml"]), Path(entry["int8_xml"])
    assert int8_xml.is_file() and int8_xml.with_suffix(".bin").is_file()
    assert int8_xml.parent.name == "silu-nncf_int8_openvino_model" and int8_xml.parent != fp32_xml.parent
    kinds, constants = _ir_census(str(int8_xml))
    assert kinds["FakeQuantize"] > 50 and constants["i8"] > 50, (kinds, constants)  # activations and weights
    kinds32, constants32 = _ir_census(str(fp32_xml))
    assert kinds32["FakeQuantize"] == 0 and constants32["i8"] == constants32["u8"] == 0  # the contrast is real
    runtime = entry["fusion_int8"]["precisions"]
    assert runtime.get("u8", 0) + runtime.get("i8", 0) > 50, runtime  # the CPU plugin runs its convolutions in INT8
    # NNCF calibrated on the calibration set, in its order (quant.write_calibration_dataset)
    fed = sorted((int8_xml.parents[1] / "silu-nncf_calibration/images/val").iterdir())
    assert [p.name.split("_", 1)[1] for p in fed] == [Path(f).name for f in calib.files]
    fp32, int8 = entry["fp32"], entry["int8"]
    assert set(int8) == set(fp32) == {"precision", "recall", "map50", "map50_95"}
    assert all(math.isfinite(v) for v in (*fp32.values(), *int8.values())), (fp32, int8)
    # the stand-in scores mAP50-95 ~0.5; an INT8 IR that lost the network (bad calibration) scores near 0
    assert fp32["map50_95"] > 0.2 and int8["map50_95"] > 0.5 * fp32["map50_95"], (fp32, int8)
    assert int8 != fp32  # another network was scored


@pytest.mark.slow
def test_measure_openvino_times_fp32_and_int8_and_takes_the_fusion_census(openvino_stage):
    latency = openvino_stage["latency"]["openvino-cpu"]
    bench = latency["benchmark"]
    assert bench["runtime"] == "openvino-cpu" and list(bench["stats"]) == ["silu", "silu@int8"]
    ratio = latency["int8_vs_fp32"]["silu"]
    for key in ("fp32_median_ms", "int8_median_ms", "paired_ratio", "paired_ci_low", "paired_ci_high"):
        assert math.isfinite(ratio[key]) and ratio[key] > 0, (key, ratio)
    assert ratio["paired_ci_low"] <= ratio["paired_ratio"] <= ratio["paired_ci_high"] and ratio["blocks"] == 2
    assert ratio["int8_median_ms"] == bench["stats"]["silu@int8"]["median_ms"] and "silu@int8" in latency["table"]
    entry = openvino_stage["variants"]["silu"]["openvino"]
    keys = {"activations", "fused_into_conv", "standalone", "runtime_layer_types", "precisions"}
    for fusion in (entry["fusion_fp32"], entry["fusion_int8"]):
        assert set(fusion) == keys
        swish = fusion["activations"]["Swish"]  # SiLU: 77 sites, each fused or not, none missing
        assert sum(swish.values()) == 77, fusion["activations"]
        assert fusion["fused_into_conv"] + fusion["standalone"] == sum(
            sum(v.values()) for v in fusion["activations"].values()
        )
    assert entry["fusion_fp32"]["precisions"] == {"f32": entry["fusion_fp32"]["runtime_layer_types"]["Convolution"]}
