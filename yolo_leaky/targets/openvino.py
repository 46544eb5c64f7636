"""``openvino-cpu``: OpenVINO's CPU plugin, INT8 IR from NNCF.

The artifact is what ``compare``'s INT8 stage measures for OpenVINO (``measure.quant.export_openvino``):
Ultralytics' OpenVINO exporter with ``quantize=8`` (NNCF post-training quantization, MIXED preset, the Detect
decoding and every Sigmoid left in float by Ultralytics' ignored scope, which covers the whole head of a segment,
pose or OBB model and is absent for a classify model: ``IGNORED_SCOPE``), calibrated on exactly the calibration
set's images. The artifact is scored by its task's validator (``Build.task``). The FP32 IR is kept as
``Build.reference``. Scores and timings run the CPU plugin at FP32 inference precision
(``measure.bench.openvino_config``), so an FP32 IR is not silently run in bf16.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from ..core.tasks import TASKS
from ..utils.errors import UserError
from .base import Backend, Build, run_tool

SCHEMES = {
    "deploy": "Ultralytics' export as it is: NNCF quantizes the network, its ignored scope keeps the Detect decoding "
    "and every Sigmoid in float (for segment, pose and OBB heads, Detect subclasses, the whole head module: its "
    "mask-coefficient, keypoint or angle decoding too; a classify head has no ignored scope, so deploy is naive)",
    "naive": "NNCF on the whole graph (Ultralytics' torch2openvino with int8_detect=False: no ignored scope), the "
    "Detect decoding and its output (box pixels and 0-1 scores) included; not shipped: the contrast",
}
# what Ultralytics' ignored scope (``int8_detect``: a Detect head or subclass) leaves in float, per task
IGNORED_SCOPE = {
    "detect": "the Detect decoding and every Sigmoid left in float by Ultralytics' ignored scope",
    "segment": "the Segment head's own ops (box, score and mask-coefficient decoding) and every Sigmoid left in "
    "float by Ultralytics' ignored scope",
    "pose": "the Pose head's own ops (box, score and keypoint decoding) and every Sigmoid left in float by "
    "Ultralytics' ignored scope",
    "obb": "the OBB head's own ops (rotated-box and angle decoding) and every Sigmoid left in float by Ultralytics' "
    "ignored scope",
    "classify": "no ignored scope: Ultralytics keeps one only for Detect heads, so the Classify head's Linear and "
    "softmax are quantized too",
}


class OpenvinoCpu(Backend):
    """OpenVINO on the host CPU, INT8 IR quantized by NNCF through Ultralytics' exporter.

    Args:
        scheme: ``deploy`` (default, Ultralytics' export) or ``naive`` (``SCHEMES``).

    Examples:
        >>> OpenvinoCpu.install
        'pip install yolo-leaky[openvino]'
    """

    name = "openvino-cpu"
    tasks = TASKS
    install = "pip install yolo-leaky[openvino]"
    runs_on_host = True
    bench_runtime = "openvino-cpu"

    def __init__(self, scheme: str = "deploy") -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"unknown openvino-cpu scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
        self.scheme = scheme

    def missing(self) -> str | None:
        """None when OpenVINO and NNCF import; else one line with the install step."""
        for module in ("openvino", "nncf"):
            try:
                __import__(module)
            except ImportError:
                return f"openvino-cpu needs {module}, which is not installed; {self.install}"
        return None

    def build(self, weights: Path, calibration, out_dir: Path, imgsz: int) -> Build:
        """FP32 IR and NNCF INT8 IR (on ``calibration``'s images) from Ultralytics' exporter."""
        import nncf
        import openvino
        import torch
        import ultralytics

        from ..core.loading import load, model_task
        from ..measure.quant import export_openvino, openvino_fusion

        out_dir = Path(out_dir)
        stem = Path(weights).stem
        log = out_dir / "toolchain.log"
        if calibration.imgsz != imgsz:
            raise UserError(f"calibration images are {calibration.imgsz} px but imgsz={imgsz}; match them")
        fp32 = run_tool(
            self.name,
            "Ultralytics OpenVINO export",
            log,
            lambda: export_openvino(load(weights), out_dir, imgsz, name=f"{stem}-fp32"),
        )
        int8 = run_tool(
            self.name,
            "Ultralytics OpenVINO export with NNCF INT8",
            log,
            lambda: export_openvino(
                load(weights), out_dir, imgsz, int8=True, calib=calibration, name=stem, naive=self.scheme == "naive"
            ),
        )
        shutil.rmtree(out_dir / f"{stem}_calibration", ignore_errors=True)  # a copy of the images listed in deploy.json
        fusion = openvino_fusion(int8)
        commands = [
            f"yolo-leaky export model={weights} format=openvino imgsz={imgsz} dynamic=False batch=1 device=cpu",
            f"yolo-leaky export model={weights} format=openvino quantize=8 data=<a dataset YAML whose val split is "
            f"the {len(calibration.files)} calibration images listed in deploy.json> imgsz={imgsz} dynamic=False "
            "batch=1 device=cpu",
            "or, the same in one call: yolo_leaky.measure.quant.export_openvino(load(weights), out_dir, "
            f"{imgsz}, int8=True, calib=calibration_images(data, n={len(calibration.files)}, imgsz={imgsz}, "
            f"seed={calibration.seed}))",
        ]
        task = model_task(weights)
        return Build(
            target=self.name,
            artifact=int8,
            tools={
                "openvino": openvino.__version__,
                "nncf": nncf.__version__,
                "ultralytics": ultralytics.__version__,
                "torch": torch.__version__,
            },
            commands=commands,
            log=log if log.exists() else None,
            reference=fp32,
            task=task,
            details={
                "scheme": self.scheme,
                "scheme_description": SCHEMES[self.scheme],
                "quantization": "NNCF post-training INT8 through Ultralytics' exporter (MIXED preset; "
                + (IGNORED_SCOPE.get(task, IGNORED_SCOPE["detect"]) if self.scheme == "deploy" else "no ignored scope")
                + ")",
                "runtime_graph": {
                    "what": "OpenVINO CPU plugin's runtime graph of the artifact (FP32 inference precision)",
                    **fusion,
                },
            },
        )

    def score(self, build: Build, data_yaml: str, imgsz: int) -> dict[str, float]:
        """Ultralytics' validator on the INT8 IR itself, the CPU plugin at FP32 inference precision."""
        from ..measure.quant import validate_onnx

        return validate_onnx(build.artifact, data_yaml, imgsz, task=build.task)

    def runner(self, build: Build, imgsz: int, threads: int, seed: int) -> Callable[[], object] | None:
        """One OpenVINO inference of the artifact, in the benchmark's compile setup."""
        from ..measure.bench import file_runner

        return file_runner("openvino-cpu", build.artifact, imgsz, threads, seed)
