"""``tflite-int8``: Ultralytics' own LiteRT (TFLite) exporter, full-integer INT8, run by the host interpreter.

This is the numeric path of TFLite on XNNPACK, the Coral Edge TPU and Arm Ethos-U (``ethos_u.py`` compiles this same
file with Vela). The artifact is what ``yolo export format=litert quantize=8`` writes with Ultralytics 8.4 (the
former ``format=tflite int8=True``): ``litert-torch`` converts the PyTorch model (graph input stays NCHW float32),
Ultralytics wraps it so the box coordinates leave the network divided by the input size (``_NormalizeCoords``:
boxes and 0-1 scores then share one INT8 scale without ruining the scores), and ``ai-edge-quantizer`` applies its
``static_wi8_ai8`` recipe (INT8 weights and activations, everything quantized up to the graph output) with float
graph input and output (a QUANTIZE at the entry, a DEQUANTIZE at the exit).

Calibration: Ultralytics' exporter calibrates on the ``val`` split of its ``data=`` (its ``split`` argument is not
accepted for this format), every image of it (``fraction=1.0``), one image per step (``batch=1``), preprocessed by
its validation dataset (letterbox, /255). So that it sees exactly this project's calibration set (the training-split
images of ``measure.quant.calibration_images`` / ``core.repair.calibration_set``), the build copies those images into
a dataset whose ``val`` split is exactly them (``measure.quant.write_calibration_dataset``, as the OpenVINO INT8
export does) and passes that as ``data=``. The exporter warns that fewer than 300 images are few; the count is the
caller's (``deploy``: the calibration set's size).

What is left in float: ``tflite_ops`` reads the artifact's flatbuffer and lists every op whose output tensor is
float, per op type, with the activations fused into convolutions. Measured on the stand-in (yolo11n, 64 px, the
versions of ``pyproject``'s ``tflite`` extra): with SiLU (LOGISTIC + MUL), ReLU (fused into CONV_2D) and PReLU
(decomposed into RELU, MUL and SUB) the only float op is the final DEQUANTIZE; with LeakyReLU the quantizer leaves
all 77 LEAKY_RELU ops in float, each between a DEQUANTIZE and a QUANTIZE, so the "INT8" model computes every
activation in float (on the CPU on Ethos-U). ``docs/targets-evidence.md`` has the per-activation counts.

Examples:
    >>> TFLiteInt8.name, TFLiteInt8.runs_on_host
    ('tflite-int8', True)
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch

from ..core.tasks import TASKS
from ..data.datasets import file_digest
from ..utils.errors import UserError
from .base import Backend, Build, ToolchainRejected

TOOLCHAIN = ("litert_torch", "ai_edge_litert", "ai_edge_quantizer")  # what Ultralytics' LiteRT INT8 export imports
DISTRIBUTIONS = {m: m.replace("_", "-") for m in TOOLCHAIN}  # module -> distribution name
RECIPE = "ai_edge_quantizer recipe.static_wi8_ai8(), graph input and output left float (Ultralytics 8.4 torch2litert)"
SCHEMES = {
    "deploy": "Ultralytics' export as it is: box coordinates (and a pose head's keypoint x, y) divided by the input "
    "size before the output (_NormalizeCoords), so boxes and 0-1 scores share one INT8 scale without ruining the "
    "scores; a classify model's output (class probabilities) is not wrapped",
    "naive": "the Detect output (box pixels and 0-1 scores in one tensor; a segment head's mask coefficients, a "
    "pose head's keypoints, an OBB head's angle beside them) quantized at one INT8 scale as it leaves the head, then "
    "multiplied per channel into Ultralytics' normalized coordinates; not shipped: the contrast. A classify model "
    "has no coordinates: Ultralytics does not wrap it, so naive is the same export as deploy",
}


class TFLiteInt8(Backend):
    """Ultralytics' LiteRT INT8 export, scored and timed on the host interpreter (XNNPACK on x86).

    Args:
        fp32_reference: Also convert the FP32 ``.tflite`` (``Build.reference``), so the FP32 score and the
            latency ratio are taken in the same runtime; one more conversion (about as long as the INT8 export).
        scheme: ``deploy`` (default, Ultralytics' export) or ``naive`` (``SCHEMES``: the contrast that shows what
            the coordinate normalization saves).

    Examples:
        >>> TFLiteInt8().install
        "pip install 'yolo-leaky[tflite]'"
    """

    name = "tflite-int8"
    tasks = TASKS
    install = "pip install 'yolo-leaky[tflite]'"
    runs_on_host = True
    bench_runtime = "litert-cpu"
    table_key = "tflite-xnnpack"  # the table's row for the TFLite runtime on CPUs (its XNNPACK delegate)
    stage_options = {"fp32_reference": False}  # compare targets= scores the artifact only

    def __init__(self, fp32_reference: bool = True, scheme: str = "deploy") -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"unknown tflite-int8 scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
        self.fp32_reference, self.scheme = fp32_reference, scheme

    def missing(self) -> str | None:
        """None when the LiteRT export chain imports here; else which module is missing and the install step."""
        absent = [DISTRIBUTIONS[m] for m in TOOLCHAIN if importlib.util.find_spec(m) is None]
        return f"{self.name} needs {', '.join(absent)}: {self.install}" if absent else None

    def build(self, weights: Path, calibration, out_dir: Path, imgsz: int) -> Build:
        """Export ``weights`` with Ultralytics' LiteRT exporter, full-integer INT8 on ``calibration``'s images.

        Raises:
            UserError: Calibration images of another size than ``imgsz``.
            ToolchainRejected: The exporter or the quantizer failed (its first line and the log's path).
        """
        import torch
        import ultralytics

        from ..core.loading import model_task

        if calibration.imgsz != imgsz:
            raise UserError(f"calibration images are {calibration.imgsz} px but imgsz={imgsz}; make them at {imgsz}")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = Path(weights).stem
        log = out_dir / f"{stem}_litert.log"
        calib_yaml = _calibration_yaml(calibration, out_dir / f"{stem}_calibration")
        naive = self.scheme == "naive"
        key = (file_digest(weights), imgsz, calibration.digest, self.scheme)
        int8 = _reuse(key, out_dir, log)
        if int8 is None:
            int8 = export_litert(weights, out_dir, imgsz, log, self.name, data=calib_yaml, naive=naive)
            _EXPORTS[key] = int8
        reference = export_litert(weights, out_dir, imgsz, log, self.name, naive=naive) if self.fp32_reference else None
        details = {
            "recipe": RECIPE,
            "scheme": self.scheme,
            "scheme_description": SCHEMES[self.scheme],
            "calibration": {
                "how": "Ultralytics' exporter calibrates on data='s val split; that split is exactly these training "
                "images (measure.quant.write_calibration_dataset), batch 1, fraction 1.0",
                **{k: v for k, v in calibration.to_dict().items() if k != "files"},
            },
            "ops": tflite_ops(int8),
        }
        if reference is not None:
            details["reference_ops"] = tflite_ops(reference)
        data_arg = f"data={calib_yaml}"
        commands = [
            f"yolo export model={weights} format=litert quantize=8 {data_arg} imgsz={imgsz} batch=1 device=cpu",
            f"(calibration: {calib_yaml}'s val split is the {len(calibration.files)} training images listed in "
            f"deploy.json, seed {calibration.seed})",
        ]
        if reference is not None:
            commands.append(f"yolo export model={weights} format=litert imgsz={imgsz} batch=1 device=cpu  # FP32")
        return Build(
            target=self.name,
            artifact=int8,
            tools={
                "ultralytics": ultralytics.__version__,
                "torch": torch.__version__.split("+")[0],
                **{DISTRIBUTIONS[m]: _version(DISTRIBUTIONS[m]) for m in TOOLCHAIN},
            },
            commands=commands,
            log=log if log.exists() else None,
            files=[calib_yaml],
            reference=reference,
            details=details,
            task=model_task(weights),
        )

    def score(self, build: Build, data_yaml: str, imgsz: int) -> dict[str, float]:
        """Ultralytics' validator on the ``.tflite`` itself, run by the host LiteRT interpreter."""
        from ..measure.quant import validate_onnx

        return validate_onnx(build.artifact, data_yaml, imgsz, task=build.task)

    def runner(self, build: Build, imgsz: int, threads: int, seed: int) -> Callable[[], object] | None:
        """One inference of the artifact in the LiteRT interpreter (XNNPACK delegate applied by default), set up as
        a benchmark block sets it up (``measure.bench``, runtime ``litert-cpu``); the call returns the interpreter."""
        from ..measure.bench import file_runner

        return file_runner("litert-cpu", build.artifact, imgsz, threads, seed)


_EXPORTS: dict[tuple, Path] = {}  # (checkpoint SHA-256, imgsz, calibration digest, scheme) -> INT8 .tflite


def _reuse(key: tuple, out_dir: Path, log: Path) -> Path | None:
    """A copy in ``out_dir`` of an INT8 export this process already made from the same checkpoint contents,
    calibration tensor, size and scheme (``compare targets=[tflite-int8,ethos-u]`` builds each one twice otherwise),
    or None. The reuse is written to ``log``."""
    done = _EXPORTS.get(key)
    if done is None or not done.is_file():
        return None
    copy = Path(out_dir) / done.name
    if copy.resolve() != done.resolve():
        shutil.copyfile(done, copy)
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"reused {done}: the same checkpoint (sha256 {key[0]}), calibration digest, imgsz and scheme\n")
    return copy


def export_litert(
    weights: Path, out_dir: Path, imgsz: int, log: Path, target: str, data: Path | None = None, naive: bool = False
) -> Path:
    """Ultralytics' LiteRT export of ``weights`` into ``out_dir``: INT8 (``quantize=8``) when ``data`` (a dataset
    YAML whose val split is the calibration set) is given, else FP32. Output goes to ``log``. ``naive``: the
    ``naive`` scheme (``SCHEMES``), Ultralytics' coordinate normalization replaced by ``_QuantizedDecode``.

    Raises:
        ToolchainRejected: The export failed; its traceback is appended to ``log``.
    """
    from ..core.loading import load
    from ..utils.console import quiet

    yolo = load(weights)
    stem = Path(weights).stem
    kwargs = {"format": "litert", "imgsz": imgsz, "batch": 1, "device": "cpu"}
    if data is not None:
        kwargs.update(quantize=8, data=str(data))
    yolo.model.pt_path = str(Path(out_dir) / f"{stem}.pt")  # the exporter names its file after this (only the name)
    try:
        with quiet(log), _naive_decode(naive):
            produced = Path(yolo.export(**kwargs))
    except UserError:
        raise
    except Exception as e:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"\nUltralytics' LiteRT export raised, called by the {target} backend:\n{traceback.format_exc()}")
        raise ToolchainRejected(target, "Ultralytics' LiteRT export", f"{type(e).__name__}: {e}", log) from None
    if not produced.is_file():
        raise ToolchainRejected(target, "Ultralytics' LiteRT export", f"no .tflite written ({produced})", log)
    return produced


class _QuantizedDecode(torch.nn.Module):
    """The ``naive`` scheme's stand-in for Ultralytics' ``_NormalizeCoords`` (same arguments): the head's output
    tensor, box pixels beside 0-1 scores (and a pose head's keypoint pixels), is left as it is (so the quantizer gives
    it one scale), then one per-channel multiply turns the boxes (and keypoint x, y) into the normalized coordinates
    Ultralytics' LiteRT backend expects; every other channel (scores, mask coefficients, OBB angle, keypoint
    visibility) is multiplied by 1, as ``_NormalizeCoords`` leaves it."""

    def __init__(self, model: torch.nn.Module, h: int, w: int, task: str, nc: int, kpt_shape=None) -> None:
        super().__init__()
        self.model, self.h, self.w, self.task, self.nc, self.kpt_shape = model, h, w, task, nc, kpt_shape

    def forward(self, x: torch.Tensor):
        y = self.model(x)
        det = y[0] if isinstance(y, (tuple, list)) else y
        scale = torch.ones(1, det.shape[1], 1, dtype=det.dtype, device=det.device)
        scale[:, 0:4:2], scale[:, 1:4:2] = 1 / self.w, 1 / self.h
        if self.task == "pose" and self.kpt_shape:
            first, dims = 4 + self.nc, self.kpt_shape[1]
            scale[:, first::dims], scale[:, first + 1 :: dims] = 1 / self.w, 1 / self.h
        det = det * scale
        return (det, *y[1:]) if isinstance(y, (tuple, list)) else det


@contextlib.contextmanager
def _naive_decode(naive: bool):
    """While exporting: Ultralytics' ``_NormalizeCoords`` replaced by ``_QuantizedDecode`` when ``naive``."""
    if not naive:
        yield
        return
    import ultralytics.utils.export.litert as litert

    old = litert._NormalizeCoords
    litert._NormalizeCoords = _QuantizedDecode
    try:
        yield
    finally:
        litert._NormalizeCoords = old


def tflite_ops(path: str | Path) -> dict:
    """What a ``.tflite`` file computes, read from its flatbuffer (no interpreter).

    Returns:
        ``ops``: op type -> count (custom ops by their custom code, e.g. ``ethos-u``); ``float_ops``: op type -> how
        many of them write a float tensor (what the quantizer left in float); ``fused_activations``: activation
        fused into a CONV_2D / DEPTHWISE_CONV_2D / ADD ... -> count; ``input_types`` / ``output_types``: the graph's
        tensor types; ``subgraphs``.

    Examples:
        >>> tflite_ops("missing.tflite")
        Traceback (most recent call last):
        ...
        FileNotFoundError: [Errno 2] No such file or directory: 'missing.tflite'
    """
    buf = Path(path).read_bytes()
    from ai_edge_litert import schema_py_generated as schema

    names = _enum_names(schema.BuiltinOperator)
    types = _enum_names(schema.TensorType)
    acts = _enum_names(schema.ActivationFunctionType)
    model = schema.Model.GetRootAs(buf, 0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())  # the schema keeps both fields
        codes.append(code.CustomCode().decode() if builtin == schema.BuiltinOperator.CUSTOM else names[builtin])
    ops: Counter = Counter()
    floats: Counter = Counter()
    fused: Counter = Counter()
    graph = model.Subgraphs(0)
    for j in range(graph.OperatorsLength()):
        op = graph.Operators(j)
        kind = codes[op.OpcodeIndex()]
        ops[kind] += 1
        outputs = [graph.Tensors(op.Outputs(k)).Type() for k in range(op.OutputsLength()) if op.Outputs(k) >= 0]
        if any(types[t].startswith("FLOAT") for t in outputs):
            floats[kind] += 1
        act = _fused_activation(schema, op)
        if act:
            fused[acts[act]] += 1
    return {
        "ops": dict(ops.most_common()),
        "float_ops": dict(floats.most_common()),
        "fused_activations": dict(fused.most_common()),
        "input_types": [types[graph.Tensors(graph.Inputs(k)).Type()] for k in range(graph.InputsLength())],
        "output_types": [types[graph.Tensors(graph.Outputs(k)).Type()] for k in range(graph.OutputsLength())],
        "subgraphs": model.SubgraphsLength(),
    }


def _fused_activation(schema, op) -> int:
    """The fused activation of ``op`` (0: none) where its options carry one."""
    table = op.BuiltinOptions()
    if table is None:
        return 0
    kind = op.BuiltinOptionsType()
    for name in (
        "Conv2DOptions",
        "DepthwiseConv2DOptions",
        "AddOptions",
        "MulOptions",
        "SubOptions",
        "FullyConnectedOptions",
        "Pool2DOptions",
        "ConcatenationOptions",
    ):
        if kind == getattr(schema.BuiltinOptions, name):
            options = getattr(schema, name)()
            options.Init(table.Bytes, table.Pos)
            return options.FusedActivationFunction()
    return 0


def _enum_names(enum) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}


def _calibration_yaml(calibration, folder: Path) -> Path:
    from ..measure.quant import write_calibration_dataset

    return write_calibration_dataset(calibration, folder)


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"
