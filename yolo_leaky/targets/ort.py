"""``ort-cpu``: ONNX Runtime's CPU execution provider, INT8 QDQ.

The artifact is what ``compare``'s INT8 stage measures (``measure.quant``): Ultralytics' ONNX export (static shape,
batch 1, onnxslim), quantized by ONNX Runtime's ``quantize_static`` in QDQ format on the calibration set, per-channel
INT8 weights and uint8 activations, with the ``deploy`` scheme by default (the head's decoding left in float, for
every task's head: ``measure.quant.head_float_nodes``; quantizing the box pixels and the 0-1 scores into one uint8
tensor is what ruins ``naive``). The float export is kept as ``Build.reference``: the FP32 score and the paired
latency are taken against it, in the same runtime. The artifact is scored by its task's validator (``Build.task``:
segment, pose, OBB and classify models too).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from ..core.tasks import TASKS
from ..measure.quant import DEFAULT_METHOD, SCHEMES
from .base import Backend, Build, run_tool

# what ``measure.quant.head_float_nodes`` leaves in float under ``deploy``, per task (the build command's words)
DECODING = {
    "detect": "Detect-decode",
    "segment": "Segment-head decode (boxes, scores, mask coefficients; prototype activation)",
    "pose": "Pose-head decode (boxes, scores, keypoints)",
    "obb": "OBB-head decode (rotated boxes, angle, scores)",
    "classify": "Classify-head flatten/softmax",
}


class OrtCpu(Backend):
    """ONNX Runtime on the host CPU, INT8 QDQ (``measure.quant.quantize``).

    Args:
        scheme: ``deploy`` (default), ``conv-only`` or ``naive`` (``measure.quant.SCHEMES``).
        method: Calibration method (``minmax`` by default, as Ultralytics' own INT8 exports).

    Examples:
        >>> OrtCpu().missing() is None
        True
    """

    name = "ort-cpu"
    tasks = TASKS
    install = "pip install onnxruntime (a dependency of yolo-leaky: pip install yolo-leaky)"
    runs_on_host = True
    bench_runtime = "ort-cpu"

    def __init__(self, scheme: str = "deploy", method: str = DEFAULT_METHOD) -> None:
        self.scheme, self.method = scheme, method

    def missing(self) -> str | None:
        """None when ONNX Runtime and its quantizer import; else the install step."""
        try:
            import onnxruntime.quantization  # noqa: F401
        except ImportError as e:
            return f"ort-cpu needs ONNX Runtime ({e}); {self.install}"
        return None

    def build(self, weights: Path, calibration, out_dir: Path, imgsz: int) -> Build:
        """FP32 ONNX export, then INT8 QDQ on ``calibration`` (a ``measure.quant.Calibration`` at ``imgsz``)."""
        import onnx
        import onnxruntime
        import torch
        import ultralytics

        from ..core.loading import load, model_task
        from ..measure.bench import export_onnx
        from ..measure.onnx_check import optimize_with_ort, summarize_fusion
        from ..measure.quant import quantize

        out_dir = Path(out_dir)
        stem = Path(weights).stem
        log = out_dir / "toolchain.log"
        task = model_task(weights)
        fp32 = run_tool(
            self.name,
            "Ultralytics ONNX export",
            log,
            lambda: export_onnx(load(weights), out_dir, imgsz, name=f"{stem}-fp32"),
        )
        int8 = out_dir / f"{stem}-int8.onnx"
        q = run_tool(
            self.name,
            "onnxruntime quantize_static",
            log,
            lambda: quantize(fp32, int8, calibration, self.scheme, self.method),
        )
        optimized = out_dir / f"{stem}-int8.ort-optimized.onnx"
        graph = summarize_fusion(optimize_with_ort(int8, optimized, 1))
        optimized.unlink(missing_ok=True)  # a by-product of reading what ORT fuses; not for shipping
        settings = q["settings"]
        commands = [
            f"yolo-leaky export model={weights} format=onnx imgsz={imgsz} simplify=True dynamic=False batch=1 "
            "device=cpu",
            f"onnxruntime.quantization.quantize_static({fp32.name!r}, {int8.name!r}, <reader over the calibration "
            f"images listed in deploy.json>, quant_format=QuantFormat.QDQ, per_channel=True, "
            f"reduce_range={settings['reduce_range']}, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, "
            f"calibrate_method={self.method}, op_types_to_quantize={settings['op_types_to_quantize']}, "
            f"nodes_to_exclude=<the {len(q['excluded'])} {DECODING.get(task, 'head-decode')} nodes listed in "
            "deploy.json>, "
            f"extra_options={settings['extra_options']})",
            "or, the same in one call: yolo_leaky.measure.quant.quantize(fp32_onnx, int8_onnx, "
            f"calibration_images(data, n={len(calibration.files)}, imgsz={imgsz}, seed={calibration.seed}), "
            f"scheme={self.scheme!r}, method={self.method!r})",
        ]
        return Build(
            target=self.name,
            artifact=int8,
            tools={
                "onnxruntime": onnxruntime.__version__,
                "onnx": onnx.__version__,
                "ultralytics": ultralytics.__version__,
                "torch": torch.__version__,
                **_version_of("onnxslim"),
            },
            commands=commands,
            log=log if log.exists() else None,
            reference=fp32,
            task=task,
            details={
                "scheme": self.scheme,
                "scheme_description": SCHEMES[self.scheme],
                "quantization": {k: v for k, v in q.items() if k not in ("calibration", "path")},
                "runtime_graph": {
                    "what": "ONNX Runtime's optimized graph of the artifact (ORT_ENABLE_ALL, CPU EP)",
                    "standalone_activations": graph["standalone"],
                    "op_counts": graph["op_counts"],
                },
            },
        )

    def score(self, build: Build, data_yaml: str, imgsz: int) -> dict[str, float]:
        """Ultralytics' validator on the INT8 ONNX itself (``measure.quant.validate_onnx``)."""
        from ..measure.quant import validate_onnx

        return validate_onnx(build.artifact, data_yaml, imgsz, task=build.task)

    def runner(self, build: Build, imgsz: int, threads: int, seed: int) -> Callable[[], object] | None:
        """One ONNX Runtime inference of the artifact, in the benchmark's session setup."""
        from ..measure.bench import file_runner

        return file_runner("ort-cpu", build.artifact, imgsz, threads, seed)


def _version_of(module: str) -> dict[str, str]:
    """``{module: version}`` when ``module`` is installed, else nothing."""
    if importlib.util.find_spec(module) is None:
        return {}
    from importlib.metadata import PackageNotFoundError, version

    try:
        return {module: version(module)}
    except PackageNotFoundError:
        return {}
