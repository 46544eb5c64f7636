"""What each deployment target does with each activation: one sourced table, its Markdown, and a model check.

``TARGETS`` is the only place in the code that says how a runtime or accelerator treats an activation. Every cell
names its source; where no source at hand says, the cell is ``unknown`` rather than a guess. ``check_target`` turns
the table into one warning line per problem that a model would meet on a target (``yolo-leaky inspect target=...``).
"""

from __future__ import annotations

import difflib
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn
from ultralytics.engine.model import Model

from ..core.spec import LEAKY_PRESETS, TORCH_CLASSES, format_number
from ..utils.errors import UserError

STATUSES = {
    "fused": "fused into the convolution",
    "native": "runs on the target, not known to be fused",
    "constrained": "runs on the target only with a given parameter or shape",
    "cpu-fallback": "falls back to the host CPU",
    "unsupported": "does not run",
    "unknown": "no source at hand says",
}
TABLE_ACTS = ("silu", "relu", "relu6", "leaky_relu", "prelu", "hardswish")
PREFERENCE = ("relu", "relu6", "leaky_relu", "hardswish", "prelu", "silu")  # order of advice when several fit

ORT_FUSION = "https://github.com/microsoft/onnxruntime/blob/main/onnxruntime/core/optimizer/conv_activation_fusion.cc"
ORT_MEASURED = "measured here: onnxruntime 1.32 optimized graph of Conv+activation, x86 CPU, ORT_ENABLE_ALL"
TRT_FUSION = "https://docs.nvidia.com/deeplearning/tensorrt/latest/performance/fusion-catalog.html"
TRT_OPS = "https://github.com/onnx/onnx-tensorrt/blob/main/docs/operators.md"
XNNPACK = "https://github.com/tensorflow/tensorflow/blob/master/tensorflow/lite/delegates/xnnpack/README.md"
CORAL_OPS = "https://coral.ai/docs/edgetpu/models-intro/#supported-operations"
EDGETPU_CPU = "google-coral/edgetpu#272; google-coral/edgetpu#597"
DPU_RELU = "https://docs.amd.com/r/en-US/pg338-dpu/ReLU-Type"
TIDL_OPS = "https://github.com/TexasInstruments/edgeai-tidl-tools/blob/master/docs/supported_ops_rts_versions.md"
RKNN_PROFILE = "THU-MIG/yolov10#115 (RK3588 profiler dump)"
RKNN_OPS = "https://github.com/rockchip-linux/rknn-toolkit2/blob/master/doc/RKNNToolKit2_OP_Support-1.4.0.md"
QNN_HTP = "https://docs.qualcomm.com/bundle/publicresource/80-63442-10/topics/htp_guidelines_activation_functions.md"
HAILO_DET = (
    "https://github.com/hailo-ai/hailo_model_zoo/blob/master/docs/public_models/HAILO8/HAILO8_object_detection.rst"
)
HAILO_CLS = (
    "https://github.com/hailo-ai/hailo_model_zoo/blob/master/docs/public_models/HAILO8/HAILO8_classification.rst"
)
VELA_OPS = "https://github.com/nxp-imx/ethos-u-vela/blob/HEAD/SUPPORTED_OPS.md (Vela 3.6)"
# Filled from a run here: ``targets.ethos_u.activation_cell`` on the stand-in (yolo11n, 64 px) swapped to each
# activation; tests/test_tflite_ethos.py re-derives the SiLU and ReLU cells from a fresh run and compares.
VELA_MEASURED = (
    "measured here: ethos-u-vela 5.2.0 on Ultralytics 8.4.190 LiteRT INT8 export (litert-torch 0.10.0, "
    "ai-edge-quantizer 0.10.0), yolo11n at 64 px, ethos-u55-128 and ethos-u65-256"
)


@dataclass(frozen=True)
class Cell:
    """What one target does with one activation.

    Attributes:
        status: One of ``STATUSES``.
        note: A few words on how, or under which condition.
        source: Where that is written (URL or issue reference); never empty.
        slope: For a ``constrained`` LeakyReLU: the only negative slope the target runs.
        documented: For a cell a toolchain run here decided (``source`` starts with ``measured here:``): the
            ``(status, source)`` that the hand-written cell had, from the vendor's documentation.
        why_differs: Why the measured status is not the documented one; required when they differ
            (``tests/test_tflite_ethos.py`` checks it).
    """

    status: str
    note: str
    source: str
    slope: float | None = None
    documented: tuple[str, str] | None = None
    why_differs: str = ""


@dataclass(frozen=True)
class Target:
    """A deployment target: a display name and one ``Cell`` per activation in ``TABLE_ACTS``."""

    name: str
    cells: dict


def _cells(**cells: Cell) -> dict:
    return cells


TARGETS = {
    "ort-cpu": Target(
        "ONNX Runtime, CPU EP",
        _cells(
            silu=Cell("native", "Sigmoid+Mul become one QuickGelu node, not fused into Conv", ORT_MEASURED),
            relu=Cell("fused", "FusedConv / NCHWc Conv", f"{ORT_FUSION}; {ORT_MEASURED}"),
            relu6=Cell("fused", "exported as Clip, fused like ReLU", f"{ORT_FUSION}; {ORT_MEASURED}"),
            leaky_relu=Cell("fused", "FusedConv / NCHWc Conv", f"{ORT_FUSION}; {ORT_MEASURED}"),
            prelu=Cell("native", "separate PRelu node, not fused", f"{ORT_FUSION}; {ORT_MEASURED}"),
            hardswish=Cell("fused", "into the NCHWc Conv (x86); HardSigmoid+Mul at ORT_ENABLE_EXTENDED", ORT_MEASURED),
        ),
    ),
    "tensorrt": Target(
        "TensorRT (NVIDIA GPU)",
        _cells(
            silu=Cell("native", "Sigmoid and Mul layers", TRT_OPS),
            relu=Cell("fused", "Convolution+ReLU fusion", TRT_FUSION),
            relu6=Cell("native", "Clip layer", TRT_OPS),
            leaky_relu=Cell("native", "LeakyRelu layer", TRT_OPS),
            prelu=Cell("native", "PRelu layer", TRT_OPS),
            hardswish=Cell("native", "HardSwish layer (recent parsers)", TRT_OPS),
        ),
    ),
    "tflite-xnnpack": Target(
        "TFLite XNNPACK delegate",
        _cells(
            silu=Cell("native", "LOGISTIC + MUL, not fused", XNNPACK),
            relu=Cell("fused", "fused activation of CONV_2D", XNNPACK),
            relu6=Cell("fused", "fused activation of CONV_2D", XNNPACK),
            leaky_relu=Cell("native", "separate LEAKY_RELU op", XNNPACK),
            prelu=Cell("native", "separate PRELU op; static per-channel slope", XNNPACK),
            hardswish=Cell("native", "separate HARD_SWISH op", XNNPACK),
        ),
    ),
    "edgetpu": Target(
        "Coral Edge TPU",
        _cells(
            silu=Cell("native", "LOGISTIC and MUL are mapped", CORAL_OPS),
            relu=Cell("native", "mapped to the Edge TPU", CORAL_OPS),
            relu6=Cell("native", "mapped to the Edge TPU", CORAL_OPS),
            leaky_relu=Cell("cpu-fallback", "not mapped; LEAKY_RELU runs on the host CPU", EDGETPU_CPU),
            prelu=Cell("constrained", "alpha must be 1-D (only the innermost dimension > 1)", CORAL_OPS),
            hardswish=Cell("cpu-fallback", "not mapped; HARD_SWISH runs on the host CPU", EDGETPU_CPU),
        ),
    ),
    "dpu": Target(
        "AMD/Xilinx DPU (Vitis AI)",
        _cells(
            silu=Cell("cpu-fallback", "Sigmoid is not supported by the DPU", "Xilinx/Vitis-AI#1024"),
            relu=Cell("fused", "ReLU in the DPU's conv engine", DPU_RELU),
            relu6=Cell("fused", "ReLU6 in the DPU's conv engine", DPU_RELU),
            leaky_relu=Cell(
                "constrained",
                "slope 26/256 = 0.1015625 only (the compiler asserts it); some DPUs need the LeakyReLU option",
                "Xilinx/Vitis-AI#317; Xilinx/Vitis-AI#1161",
                slope=LEAKY_PRESETS["dpu"],
            ),
            prelu=Cell("unknown", "listed for Versal DPUs, refused by the compiler in #584", "Xilinx/Vitis-AI#584"),
            hardswish=Cell("native", "after a conv; after an Eltwise it went to the CPU", "Xilinx/Vitis-AI#1245"),
        ),
    ),
    "tidl": Target(
        "TI TIDL (AM6xA / TDA4)",
        _cells(
            silu=Cell("native", "Sigmoid layer + Mul; LUT-accelerated on AM68A/AM69A, not AM62A", TIDL_OPS),
            relu=Cell(
                "fused",
                "merged into the convolution; TI's lite models map every activation to ReLU",
                f"{TIDL_OPS}; https://github.com/TexasInstruments/edgeai-yolov5",
            ),
            relu6=Cell("native", "Clip imported (PACT); not listed as merged into the conv", TIDL_OPS),
            leaky_relu=Cell("native", "merged into a BatchNorm layer, not the conv", TIDL_OPS),
            prelu=Cell("native", "merged into a BatchNorm layer, not the conv", TIDL_OPS),
            hardswish=Cell("unknown", "HardSwish is not in TIDL's op table (Hard Sigmoid is)", TIDL_OPS),
        ),
    ),
    "rknpu2": Target(
        "Rockchip RKNPU2 (RK3566/68/88)",
        _cells(
            silu=Cell("fused", "ConvExSwish, yet ReLU models were reported ~37% faster", RKNN_PROFILE),
            relu=Cell("fused", "ConvRelu", RKNN_PROFILE),
            relu6=Cell("native", "Clip op", RKNN_OPS),
            leaky_relu=Cell("native", "LeakyRelu op", RKNN_OPS),
            prelu=Cell("native", "PRelu op, slope per layer or per channel", RKNN_OPS),
            hardswish=Cell("native", "HardSwish op", RKNN_OPS),
        ),
    ),
    "qualcomm-htp": Target(
        "Qualcomm HTP (QNN)",
        _cells(
            silu=Cell("unknown", "no fusion listed; the guide suggests hard-swish instead of Swish", QNN_HTP),
            relu=Cell("fused", "preferred for A8/A16", QNN_HTP),
            relu6=Cell("fused", "ReLUX / ReLUMinMax", QNN_HTP),
            leaky_relu=Cell("fused", "on HMX, all precisions", QNN_HTP),
            prelu=Cell("fused", "on HMX, all precisions", QNN_HTP),
            hardswish=Cell("fused", "on HMX, all precisions", QNN_HTP),
        ),
    ),
    "hailo": Target(
        "Hailo-8",
        _cells(
            silu=Cell("native", "yolov11n runs on Hailo-8 (model zoo)", HAILO_DET),
            relu=Cell("native", "resnet_v1_18 runs on Hailo-8 (model zoo)", HAILO_CLS),
            relu6=Cell("native", "mobilenet_v2_1.0 runs on Hailo-8 (model zoo)", HAILO_CLS),
            leaky_relu=Cell("native", "tiny_yolov4 runs on Hailo-8 (model zoo)", HAILO_DET),
            prelu=Cell("unknown", "no PReLU model in the zoo lists checked", f"{HAILO_DET}; {HAILO_CLS}"),
            hardswish=Cell("native", "mobilenet_v3 runs on Hailo-8 (model zoo)", HAILO_CLS),
        ),
    ),
    "ethos-u": Target(
        "Arm Ethos-U (Vela, int8)",
        _cells(
            silu=Cell(
                "native",
                "LOGISTIC + MUL on the NPU, not fused (Vela runs LOGISTIC as a LUT)",
                VELA_MEASURED,
                documented=("native", VELA_OPS),
            ),
            relu=Cell(
                "fused",
                "fused into CONV_2D by the converter; on the NPU",
                VELA_MEASURED,
                documented=("fused", VELA_OPS),
            ),
            relu6=Cell(
                "fused",
                "fused into CONV_2D by the converter; on the NPU",
                VELA_MEASURED,
                documented=("fused", VELA_OPS),
            ),
            leaky_relu=Cell(
                "cpu-fallback",
                "LEAKY_RELU left in float by the INT8 quantizer, so Vela leaves it on the CPU",
                VELA_MEASURED,
                documented=("native", VELA_OPS),
                why_differs=(
                    "Vela runs an int8 LEAKY_RELU on the NPU, but ai-edge-quantizer 0.10 (Ultralytics' LiteRT INT8 "
                    "export) cannot quantize LEAKY_RELU and leaves each one between a DEQUANTIZE and a QUANTIZE"
                ),
            ),
            prelu=Cell(
                "native",
                "no PRELU op: litert-torch writes RELU + MUL + SUB instead, all on the NPU",
                VELA_MEASURED,
                documented=("native", VELA_OPS),
            ),
            hardswish=Cell(
                "native",
                "HARD_SWISH op (int8) on the NPU",
                VELA_MEASURED,
                documented=("native", VELA_OPS),
            ),
        ),
    ),
}


def get_target(name: str) -> Target:
    """The ``TARGETS`` entry for ``name``.

    Raises:
        UserError: If ``name`` is not a target key; the message lists the valid ones.
    """
    key = str(name).strip().lower()
    if key in TARGETS:
        return TARGETS[key]
    near = difflib.get_close_matches(key, list(TARGETS), n=1, cutoff=0.6)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    raise UserError(f"unknown target {name!r}{hint}; valid targets: {', '.join(TARGETS)}")


def leaky_slopes(model) -> list[float]:
    """The negative slopes of every ``nn.LeakyReLU`` in ``model`` (a YOLO object or ``nn.Module``), in order."""
    return [m.negative_slope for m in _network(model).modules() if isinstance(m, nn.LeakyReLU)]


def check_target(census_or_model, target: str, slopes: Iterable[float] | None = None) -> list[str]:
    """One warning line per problem ``census_or_model`` would meet on ``target``.

    Args:
        census_or_model: A ``Census`` (``take_census``), or a YOLO object / ``nn.Module``. A model is read module by
            module, so helpers that inference never calls (pose-26's loss-only RealNVP) count too; a census leaves
            them out.
        target: A ``TARGETS`` key, e.g. ``dpu``.
        slopes: LeakyReLU slopes (``leaky_slopes(model)``), for a census, which does not record them; read from
            the modules when a model is given.

    Returns:
        Warnings, empty when every activation in the model is fused or runs natively there.

    Raises:
        UserError: If ``target`` is unknown.

    Examples:
        >>> from torch import nn
        >>> check_target(nn.Sequential(nn.Conv2d(3, 8, 1), nn.LeakyReLU(0.1)), "dpu")
        ['LeakyReLU slope 0.1 is not supported on dpu (needs 0.1015625); use act=leaky_relu:dpu']
    """
    spec = get_target(target)
    key = str(target).strip().lower()
    uses, found_slopes = _usage(census_or_model)
    slopes = found_slopes if slopes is None else list(slopes)
    warnings = []
    for where, act in uses:
        if act not in spec.cells:
            continue  # e.g. Identity: nothing runs there
        cell = spec.cells[act]
        if cell.status == "constrained" and cell.slope is not None:
            warnings += _slope_warnings(key, cell.slope, slopes)
        elif cell.status == "constrained":
            warnings.append(f"{where} on {key} runs only if: {cell.note}; check the compiled model")
        elif cell.status in ("cpu-fallback", "unsupported"):
            verb = "falls back to the host CPU" if cell.status == "cpu-fallback" else "is not supported"
            warnings.append(f"{where} {verb} on {key} ({cell.note}); {_advice(spec)}")
        elif cell.status == "unknown":
            warnings.append(f"{where}: no source at hand says how {key} runs it ({cell.note}); measure it there")
    return warnings


def _slope_warnings(key: str, needed: float, slopes: list[float] | None) -> list[str]:
    preset = next((name for name, s in LEAKY_PRESETS.items() if s == needed), None)
    fix = f"use act=leaky_relu:{preset}" if preset else f"use act=leaky_relu:{format_number(needed)}"
    if slopes is None:
        return [f"LeakyReLU on {key} needs slope {format_number(needed)}; slopes not checked (pass the model); {fix}"]
    bad = sorted({s for s in slopes if not math.isclose(s, needed, rel_tol=0, abs_tol=1e-7)})
    return [
        f"LeakyReLU slope {format_number(s)} is not supported on {key} (needs {format_number(needed)}); {fix}"
        for s in bad
    ]


def _advice(spec: Target) -> str:
    best = [a for a in PREFERENCE if spec.cells[a].status == "fused"][:2]
    best = best or [a for a in PREFERENCE if spec.cells[a].status == "native"][:2]
    return "use " + " or ".join(f"act={a}" for a in best) if best else "no activation is known to run there"


def _usage(census_or_model) -> tuple[list[tuple[str, str]], list[float] | None]:
    """``(what, activation name)`` per activation type used, and the LeakyReLU slopes (None where unknown)."""
    sites = getattr(census_or_model, "sites", None)
    slopes = None
    if sites is None:
        net = _network(census_or_model)
        sites = Counter(type(m).__name__ for _, m in net.named_modules(remove_duplicate=False))
        slopes = leaky_slopes(net)
    uses = [(f"{cls} ({n} sites)", TORCH_CLASSES[cls]) for cls, n in sorted(sites.items()) if cls in TORCH_CLASSES]
    calls = getattr(census_or_model, "functional_silu_calls", None)
    if calls:  # F.silu outside any nn.SiLU, e.g. an un-swapped SwiGLUFFN
        uses.append((f"F.silu ({calls} calls per forward)", "silu"))
    return uses, slopes


def _network(model) -> nn.Module:
    net = model.model if isinstance(model, Model) else model
    if not isinstance(net, nn.Module):
        raise TypeError(f"expected a Census, a YOLO object or a torch.nn.Module, got {type(model).__name__}")
    return net


def fused_or_native_everywhere() -> list[str]:
    """The activations of ``TABLE_ACTS`` that every target in ``TARGETS`` fuses or runs natively."""
    return [a for a in TABLE_ACTS if all(t.cells[a].status in ("fused", "native") for t in TARGETS.values())]


def render_markdown() -> str:
    """The table as Markdown: the vocabulary, one row per target, and numbered sources (pasted into docs/targets.md)."""
    sources: list[str] = []
    rows = [
        "| target | " + " | ".join(f"`{a}`" for a in TABLE_ACTS) + " |",
        "|---" * (len(TABLE_ACTS) + 1) + "|",
    ]
    for key, spec in TARGETS.items():
        cells = []
        for act in TABLE_ACTS:
            cell = spec.cells[act]
            text = f"**{cell.status}**: {cell.note} {_refs(cell.source, sources)}"
            if cell.documented:
                status, source = cell.documented
                why = f": {cell.why_differs}" if cell.why_differs else ""
                text += f" (documented: {status} {_refs(source, sources)}{why})"
            cells.append(text)
        rows.append(f"| `{key}` {spec.name} | " + " | ".join(cells) + " |")
    legend = "\n".join(f"- **{status}**: {meaning}" for status, meaning in STATUSES.items())
    refs = "\n".join(f"{i}. {_link(src)}" for i, src in enumerate(sources, 1))
    return f"Status vocabulary:\n\n{legend}\n\n" + "\n".join(rows) + f"\n\nSources:\n\n{refs}\n"


def _refs(source: str, sources: list[str]) -> str:
    """``[i][j]`` for each of ``source``'s ``; ``-separated sources, numbering new ones at the end of ``sources``."""
    for src in source.split("; "):
        if src not in sources:
            sources.append(src)
    return "".join(f"[{i}]" for i in sorted(sources.index(src) + 1 for src in source.split("; ")))


def _link(source: str) -> str:
    """A source as Markdown: URLs in angle brackets, ``owner/repo#N`` as a link to that issue."""
    ref, _, rest = source.partition(" ")
    rest = f" {rest}" if rest else ""
    if ref.startswith("https://"):
        return f"<{ref}>{rest}"
    issue = re.fullmatch(r"([\w.-]+/[\w.-]+)#(\d+)", ref)
    return f"[{ref}](https://github.com/{issue[1]}/issues/{issue[2]}){rest}" if issue else source
