"""INT8 post-training quantization per activation, scored by Ultralytics' own validator, timed beside FP32.

Why this exists: users swap SiLU mainly for INT8 deployment (TensorRT#1114: YOLOv5s INT8 PTQ 36.2 -> 5.4 mAP with
SiLU; ultralytics PR #7372: YOLOv8n TFLite full-integer 37.4 -> 29.7), yet on Hailo stock SiLU loses only 0.6-1.3
points. An INT8 gain must be measured per activation, side by side, on identical calibration data, never assumed.

* ``calibration_images``: N images of the dataset's *train* split (never the images that are scored), picked
  deterministically (the split's sorted file list, then a seeded choice), each preprocessed by Ultralytics' own
  ``YOLODataset`` in validation mode with ``rect=False``: the long side resized to ``imgsz``, a square
  ``LetterBox(scaleup=False)`` with grey padding, BGR -> RGB, then ``/ 255`` as ``DetectionValidator.preprocess``
  does. That is what the validator feeds a static-shape ONNX (it forces ``rect=False`` for every non-PyTorch format),
  and what the exporter's own INT8 calibration (``Exporter.get_int8_calibration_dataloader``) builds, except that the
  exporter calibrates on the *val* split by default. The file list, a digest of the files and a digest of the
  preprocessed tensor are recorded, so a report can show that every variant saw the same calibration set.
* ``quantize``: ONNX Runtime ``quantize_static``, QDQ format, per-channel INT8 weights, uint8 activations (the
  U8S8 pair ONNX Runtime recommends for x86 CPUs), an explicit calibration method. Three schemes (``SCHEMES``):
  ``deploy`` (convolutions and activations in INT8, the head's decoding left in float), ``conv-only`` and
  ``naive``.
* ``validate_onnx``: the task's metrics (``core.tasks.task_metrics``: precision, recall, mAP50 and mAP50-95 for
  detection, plus mask or pose mAPs; top-1 and top-5) from ``YOLO(path, task=task).val(...)``.
* Every task: ``head_float_nodes`` finds what ``deploy`` leaves in float in any head (docs/int8.md, per task).
* ``benchmark_fp32_int8``: FP32 and INT8 files of every variant in one interleaved ``bench.benchmark`` call (labels
  ``relu`` and ``relu@int8``), and each variant's INT8/FP32 paired ratio with the same block CI, taken from the same
  rounds (``int8_vs_fp32``).
* OpenVINO: ``export_openvino`` (Ultralytics' exporter, FP32 or ``int8=True`` with NNCF on the same calibration
  images) and ``openvino_fusion`` (which activations the CPU plugin fuses into its convolutions).
* ``measure_int8``: all of the above for one checkpoint per variant; returns a JSON-ready dict.

Calibration method: MinMax (``DEFAULT_METHOD``), ONNX Runtime's default and what Ultralytics' own INT8 exports use
(its ONNX INT8 export calls ``quantize_static`` with the default; its TensorRT calibrator is MINMAX except on DLA).
Measured on the shapes data (yolo11n trained 16 epochs per variant at imgsz 64, 64 calibration images, ``deploy``),
mAP50-95 FP32 ONNX -> MinMax / Entropy / Percentile 99.999:
silu 0.4856 -> 0.4785 / 0.4785 / 0.4836, relu 0.4720 -> 0.4688 / 0.4688 / 0.4713,
leaky_relu:0.1 0.4506 -> 0.4448 / 0.4448 / 0.4528, prelu 0.4663 -> 0.4603 / 0.4603 / 0.4647.
Entropy gave byte-identical scales and zero points to MinMax: ``quantize_static`` passes no histogram size to the
entropy calibrator, whose defaults (128 bins, 128 quantized bins) leave one candidate threshold, the whole
histogram. Percentile was better by 0.0025-0.008 on every variant, at the same calibration time; it is not the
default because it is a tuned clip, its gain is of the size that 64 validation images resolve poorly, and it has not
been measured at COCO scale.
``method="percentile"`` chooses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import yaml as pyyaml

from ..core.loading import load, model_task
from ..core.repair import calibration_set, files_digest
from ..core.spec import ACTIVATIONS
from ..core.tasks import METRICS, task_metrics
from ..data.datasets import check_data_yaml
from ..utils.errors import UserError
from .bench import (
    BenchResult,
    benchmark,
    default_stem,
    export_onnx,
    import_openvino,
    latency_stats,
    openvino_config,
)
from .onnx_check import optimize_with_ort, summarize_fusion

SCHEMES = {
    "deploy": (
        "convolutions, activations and the rest of the network in INT8 (QDQ on every tensor); the head's own "
        "decoding left in float (head_float_nodes; detection: DFL softmax, anchor/stride arithmetic, score sigmoid, "
        "final concat; pose, OBB and segment add their keypoint, angle and coefficient decoding; classify its softmax)"
    ),
    "conv-only": "only Conv inputs, weights and outputs in INT8; activations computed in float between them",
    "naive": "every supported op in INT8, the head's decoding and its output (box pixels and 0-1 scores) included",
}
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_METHOD = "minmax"
INT8_SUFFIX = "@int8"
ACT_ONNX_OPS = tuple(dict.fromkeys(op for kind in ACTIVATIONS.values() for op in kind.onnx_ops))
# OpenVINO op types that can be an activation site (LeakyReLU arrives as PRelu with one constant slope)
ABSENT = "absent"  # openvino_fusion: the op is in no runtime node
FLOAT_SIDE_OUTPUTS = False  # segmentation's prototypes: quantized with their own scale (measured: docs/int8.md)
DETECT_PREPROCESSING = (
    "Ultralytics YOLODataset, validation mode, rect=False: long side to imgsz, LetterBox(scaleup=False) "
    "to a square, BGR->RGB, /255 (as DetectionValidator.preprocess)"
)
CLASSIFY_PREPROCESSING = (
    "Ultralytics ClassificationDataset, validation transforms: short side to imgsz, centre crop, RGB, 0-1 "
    "(as ClassificationValidator.preprocess)"
)
OV_ACT_TYPES = ("Relu", "PRelu", "Swish", "HSwish", "Clamp", "Elu", "Gelu", "Mish", "Sigmoid", "HSigmoid", "Tanh")


# ------------------------------------------------------------------------------------------------- calibration


@dataclass
class Calibration:
    """The calibration set: which images, preprocessed how, and digests that identify it.

    Attributes:
        data: The dataset YAML.
        split: The split the images come from (``train``).
        imgsz: Square input size the images were letterboxed to.
        seed: Seed of the choice.
        files: The chosen images, relative to the dataset root, in the order they are fed.
        files_digest: SHA-256 over each chosen file's name and bytes (``repair.files_digest``, as in swap.json).
        digest: SHA-256 over the preprocessed float32 tensor (shape and bytes): equal digests mean equal inputs.
        images: The preprocessed tensor, ``(N, 3, imgsz, imgsz)`` float32 in [0, 1], RGB.
        paths: The chosen images' paths on this machine (not part of ``to_dict``).
    """

    data: str
    split: str
    imgsz: int
    seed: int
    files: list[str]
    files_digest: str
    digest: str
    images: np.ndarray = field(repr=False)
    paths: list[str] = field(repr=False, default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-ready description (without the tensor)."""
        return {
            "data": self.data,
            "split": self.split,
            "n": len(self.files),
            "imgsz": self.imgsz,
            "seed": self.seed,
            "files": list(self.files),
            "files_digest": self.files_digest,
            "digest": self.digest,
            "preprocessing": CLASSIFY_PREPROCESSING if Path(self.data).is_dir() else DETECT_PREPROCESSING,
        }


def calibration_images(data_yaml: str | Path, n: int = 64, imgsz: int = 640, seed: int = 0) -> Calibration:
    """Pick and preprocess ``n`` calibration images from the dataset's train split (method: module docstring).

    Args:
        data_yaml: A dataset YAML with a ``train`` split (detect, segment, pose, obb), or a classification dataset's
            folder (``train/<class>/`` images; preprocessed by Ultralytics' classify transforms, resize and centre
            crop, as its classification validator does).
        n: Images to pick (all of them when the split has fewer).
        imgsz: Square size the exported model takes.
        seed: Seed of ``numpy.random.default_rng`` for the choice among the sorted files.

    Returns:
        A ``Calibration``.

    Raises:
        UserError: No such dataset YAML, no train split, or ``n``/``imgsz`` below 1.
    """
    if n < 1 or imgsz < 1:
        raise UserError(f"calibration needs n >= 1 and imgsz >= 1, got n={n}, imgsz={imgsz}; pass positive values")
    if Path(data_yaml).is_dir():  # a classification dataset (train/<class>/ images), as Ultralytics' classify takes
        if not (Path(data_yaml) / "train").is_dir():
            raise UserError(f"classification dataset {str(data_yaml)!r} has no train/ folder; calibration uses train")
    else:
        cfg = check_data_yaml(Path(data_yaml))
        if not cfg.get("train"):
            raise UserError(f"dataset YAML {str(data_yaml)!r} has no 'train' entry; calibration images come from train")
    paths, images, data = calibration_set(data_yaml, n, imgsz, seed)  # the repairs' set: one path for both
    root = Path(data_yaml) if Path(data_yaml).is_dir() else Path(data["path"])
    files = [_relative(p, root) for p in paths]
    tensor_hash = hashlib.sha256(str(images.shape).encode() + np.ascontiguousarray(images).tobytes())
    return Calibration(
        data=str(data_yaml),
        split="train",
        imgsz=imgsz,
        seed=seed,
        files=files,
        files_digest=files_digest(paths),
        digest=tensor_hash.hexdigest(),
        images=images,
        paths=paths,
    )


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return Path(path).name


def write_calibration_dataset(calib: Calibration, out_dir: str | Path) -> Path:
    """Copy the calibration images and their labels into ``out_dir`` and write a dataset YAML whose ``val`` split is
    exactly them, for calibrators that read a dataset (Ultralytics' OpenVINO INT8 export calibrates on ``val``). For
    a classification dataset (a folder), ``out_dir`` itself becomes the dataset folder and is returned.

    A copy, not a list file: Ultralytics writes its label cache beside the labels, and a list file would overwrite
    the original ``labels/train.cache`` with one for these few images.
    """
    from ultralytics.data.utils import img2label_paths

    out_dir = Path(out_dir)
    if Path(calib.data).is_dir():
        return _write_classify_calibration(calib, out_dir)
    images, labels = out_dir / "images" / "val", out_dir / "labels" / "val"
    for d in (images, labels):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    for k, (src, label) in enumerate(zip(calib.paths, img2label_paths(calib.paths))):
        stem = f"{k:05d}_{Path(src).stem}"  # keeps the calibration order in the sorted listing Ultralytics makes
        shutil.copyfile(src, images / f"{stem}{Path(src).suffix}")
        if Path(label).is_file():
            shutil.copyfile(label, labels / f"{stem}.txt")
    source = pyyaml.safe_load(Path(calib.data).read_text())
    if source.get("names") is None:
        raise UserError(f"dataset YAML {calib.data!r} has no 'names'; add the class names")
    yaml_path = out_dir / "calibration.yaml"
    text = {"path": str(out_dir.resolve()), "train": "images/val", "val": "images/val", "names": source["names"]}
    # the task's own keys (pose's kpt_shape and flip_idx, a class count): its dataset class needs them
    text |= {k: v for k, v in source.items() if k not in ("path", "train", "val", "test", "names", "download")}
    yaml_path.write_text(pyyaml.safe_dump(text, sort_keys=False))
    return yaml_path


def _write_classify_calibration(calib: Calibration, out_dir: Path) -> Path:
    """A classification folder whose ``train`` and ``val`` splits are exactly the calibration images, each under its
    class folder (Ultralytics' classify export calibrates on ``val`` and its dataset check wants ``train`` too)."""
    for split in ("train", "val"):
        shutil.rmtree(out_dir / split, ignore_errors=True)
        for k, src in enumerate(calib.paths):
            folder = out_dir / split / Path(src).parent.name
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, folder / f"{k:05d}_{Path(src).name}")
    return out_dir


# ------------------------------------------------------------------------------------------------ quantization


def onnx_input(onnx_path: str | Path) -> tuple[str, list]:
    """Name and shape of the model's first input."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    inp = model.graph.input[0]
    return inp.name, [d.dim_value if d.HasField("dim_value") else d.dim_param for d in inp.type.tensor_type.shape.dim]


def detect_decode_nodes(onnx_path: str | Path | onnx.ModelProto) -> list[str]:
    """The nodes of the Detect head's decoding in an Ultralytics ONNX export.

    The Detect module is the last ``/model.N/`` prefix of the node names. Its convolution towers are submodules
    (``/model.N/cv2.0/...``, ``/model.N/cv3.0/...``, ``one2one_cv2`` ...); what ``Detect.forward`` computes itself
    (``/model.N/<Op>``: reshapes, concats, anchor/stride arithmetic, the score sigmoid, the final concat, and for
    end-to-end heads the top-k selection) and the DFL module (``/model.N/dfl/...``) is the decoding. This is the split
    Ultralytics' own OpenVINO INT8 export makes (its ignored scope is ``<head>/`` and ``<head>.dfl``).

    Raises:
        ValueError: The node names do not carry Ultralytics' module path (not an Ultralytics export), or a graph
            output is not produced by the decoding (a head with outputs of its own, such as segmentation's
            prototypes: ``head_float_nodes`` handles those).
    """
    decode, outputs = _head_decode(onnx_path)
    if any(o not in decode for o in outputs):
        raise ValueError("the graph outputs are not produced by the Detect decoding: unexpected head")
    return decode


def _head_decode(onnx_path: str | Path | onnx.ModelProto) -> tuple[list[str], list[str | None]]:
    """The head's own nodes (``detect_decode_nodes``' rule) and the producers of the graph outputs."""
    model = onnx_path if isinstance(onnx_path, onnx.ModelProto) else onnx.load(str(onnx_path), load_external_data=False)
    indices = [int(m.group(1)) for n in model.graph.node if (m := re.match(r"/model\.(\d+)/", n.name))]
    if not indices:
        raise ValueError("no node is named /model.N/...: not an Ultralytics ONNX export, cannot find the Detect head")
    prefix = f"/model.{max(indices)}/"
    decode = []
    for node in model.graph.node:
        if not node.name.startswith(prefix):
            continue
        rest = node.name[len(prefix) :]
        if "/" not in rest or rest.startswith("dfl/"):
            decode.append(node.name)
    producers = {out: n.name for n in model.graph.node for out in n.output}
    outputs = [producers.get(o.name) for o in model.graph.output]
    if not decode or outputs[0] not in decode:
        raise ValueError(
            f"the first graph output is not produced by the head's own nodes under {prefix}: unexpected head"
        )
    return decode, outputs


def head_float_nodes(onnx_path: str | Path | onnx.ModelProto, float_tensors: bool = FLOAT_SIDE_OUTPUTS) -> list[str]:
    """The nodes the ``deploy`` scheme leaves in float, for every Ultralytics task head (docs/int8.md, per task).

    The head is the last ``/model.N/`` module; what its ``forward`` computes itself (``/model.N/<Op>``) and its DFL
    are the decoding, found as ``detect_decode_nodes`` finds it. That one structural rule covers every task, because
    every head decodes in its own ``forward``:

    * detect: DFL, anchor/stride arithmetic, score sigmoid, the output concat;
    * segment: the same, plus the mask coefficients' reshapes and their place in the output concat (boxes in pixels,
      0-1 scores and coefficients never share one INT8 tensor; the coefficient convolutions ``cv4`` keep their own
      per-tensor scale, as the box and score convolutions do);
    * pose: the keypoint decode ``(x * 2 + anchor - 0.5) * stride``, the visibility sigmoid and the output concat;
    * obb: the angle ``(sigmoid - 0.25) * pi``, the rotated-box decode (cos/sin, ``dist2rbox``) and the output concat;
    * classify: the flatten and the softmax after the head's Linear (the Linear itself is quantized).

    A graph output that the decoding does not produce (segmentation's prototypes, output 1, made by the ``proto``
    convolutions) is a tensor of its own: with ``float_tensors`` the nodes between its last convolution and the
    output (the prototypes' activation) stay float too; otherwise it is quantized with its own scale.

    Args:
        onnx_path: An Ultralytics ONNX export (any task) or its loaded ``ModelProto``.
        float_tensors: Leave the activation that produces a side output (the prototypes) in float.

    Returns:
        Node names, the decoding first.

    Raises:
        ValueError: Not an Ultralytics export, or its first output is not made by the head's own nodes.

    Examples:
        >>> names = head_float_nodes("yolo11n-pose.onnx")  # doctest: +SKIP
        >>> "/model.23/Concat_5" in names  # the output concat  # doctest: +SKIP
        True
    """
    model = onnx_path if isinstance(onnx_path, onnx.ModelProto) else onnx.load(str(onnx_path), load_external_data=False)
    decode, outputs = _head_decode(model)
    if not float_tensors:
        return decode
    by_name = {n.name: n for n in model.graph.node}
    producers = {out: n.name for n in model.graph.node for out in n.output}
    side = [o for o in outputs if o is not None and o not in decode]
    kept = []
    while side:  # back from each side output through its non-convolution nodes, to its last convolution
        name = side.pop()
        node = by_name[name]
        if name in kept or node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        kept.append(name)
        side.extend(producers[i] for i in node.input if i in producers)
    return decode + kept


def quantize(
    fp32_onnx: str | Path,
    out_path: str | Path,
    calib: Calibration,
    scheme: str = "deploy",
    method: str = DEFAULT_METHOD,
    reduce_range: bool = False,
    only: tuple[str, ...] | None = None,
    calibration_cache: str | Path | None = None,
) -> dict:
    """Quantize an exported FP32 ONNX to INT8 with ONNX Runtime (QDQ, per-channel weights).

    Args:
        fp32_onnx: A static-shape Ultralytics ONNX export.
        out_path: Where the INT8 ``.onnx`` goes.
        calib: Calibration images (``calibration_images``) at the model's input size.
        scheme: ``deploy``, ``conv-only`` or ``naive`` (``SCHEMES``).
        method: ``minmax``, ``entropy`` or ``percentile`` (99.999th percentile).
        reduce_range: 7-bit weights, which ONNX Runtime advises on x86 CPUs without VNNI (their u8s8 kernels can
            saturate); off by default.
        only: Quantize only the nodes whose names start with one of these prefixes (``("/model.16/",)``: one
            Ultralytics layer), the rest of the network left in float; the scheme's exclusions still apply.
        calibration_cache: A file for ONNX Runtime's calibration ranges: written by the first call, read by later
            ones on the same FP32 model, calibration images and method (the ranges of a float model do not depend on
            which nodes are then quantized, so every ``only=`` of one draw shares one calibration pass).

    Returns:
        ``scheme``, ``description``, ``method``, ``settings``, ``nodes`` (``count_quant_nodes`` of the result),
        ``activations_folded`` (activation ops the quantizer removed into the quantization range, e.g. every
        ``Relu``), ``excluded`` (node names left in float), ``calibration`` (its digests and size), ``path``.

    Raises:
        UserError: Unknown scheme or method, or calibration images whose size is not the model's input.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    if scheme not in SCHEMES:
        raise UserError(f"unknown INT8 scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    if method not in CALIBRATION_METHODS:
        raise UserError(f"unknown calibration method {method!r}; choose one of {', '.join(CALIBRATION_METHODS)}")
    name, shape = onnx_input(fp32_onnx)
    if len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise UserError(f"{fp32_onnx} has a dynamic input {shape}; export it with a static shape (dynamic=False)")
    if list(shape[2:]) != [calib.imgsz, calib.imgsz]:
        raise UserError(
            f"{fp32_onnx} takes {shape[2]}x{shape[3]} images but the calibration set is {calib.imgsz} px; "
            f"make the calibration images with imgsz={shape[2]}"
        )
    batch = shape[0]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            usable = len(calib.images) - len(calib.images) % batch
            self._batches = iter(calib.images[i : i + batch] for i in range(0, usable, batch))

        def get_next(self):
            x = next(self._batches, None)
            return None if x is None else {name: x}

    excluded: list[str] = []
    op_types = sorted(set(QLinearOpsRegistry) | set(QDQRegistry) | set(ACT_ONNX_OPS))  # PRelu/HardSwish too
    if scheme == "deploy":
        excluded = head_float_nodes(fp32_onnx, FLOAT_SIDE_OUTPUTS)
    elif scheme == "conv-only":
        op_types = ["Conv"]
    source = Path(fp32_onnx)
    if only is not None:
        graph_model = onnx.load(str(fp32_onnx))
        names = [n.name for n in graph_model.graph.node]
        picked = [n for n in names if n.startswith(tuple(only)) and n not in excluded]
        if not picked:
            raise ValueError(f"only={only}: no node of {fp32_onnx} left to quantize (bug: a layer without nodes)")
        excluded = [n for n in names if n not in picked]
        if _unshare_initializers(graph_model, set(picked)):
            source = Path(out_path).with_suffix(".only-fp32.onnx")
            source.parent.mkdir(parents=True, exist_ok=True)
            onnx.save(graph_model, str(source))
    extra = {"CalibPercentile": 99.999} if method == "percentile" else {}
    calibrate = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    settings = {
        "format": "QDQ",
        "per_channel": True,
        "activation_type": "QUInt8",
        "weight_type": "QInt8",
        "reduce_range": reduce_range,
        "op_types_to_quantize": op_types,
        "extra_options": extra,
        "calibration_batch": batch,
        "only": list(only) if only is not None else None,
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    quantize_static(
        str(source),
        str(out_path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=op_types,
        per_channel=True,
        reduce_range=reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=excluded,
        calibrate_method=calibrate[method],
        extra_options=extra,
        **({"calibration_cache_path": str(calibration_cache)} if calibration_cache is not None else {}),
    )
    if source != Path(fp32_onnx):
        source.unlink()
    before = Counter(n.op_type for n in onnx.load(str(fp32_onnx), load_external_data=False).graph.node)
    nodes = count_quant_nodes(out_path)
    after = {op: a["total"] for op, a in nodes["activations"].items()}
    return {
        "scheme": scheme,
        "description": SCHEMES[scheme],
        "method": method,
        "settings": settings,
        "nodes": nodes,
        # ONNX Runtime drops a Relu/Clip whose input is quantized: the uint8 range of the Conv output then starts at 0
        "activations_folded": {
            op: before[op] - after.get(op, 0) for op in ACT_ONNX_OPS if before[op] > after.get(op, 0)
        },
        "excluded": excluded,
        "calibration": {k: v for k, v in calib.to_dict().items() if k != "files"},
        "path": str(out_path),
    }


def _unshare_initializers(model: onnx.ModelProto, picked: set[str]) -> int:
    """Give the ``picked`` nodes their own copy of every initializer they share with other nodes; returns how many.

    onnxslim merges equal constants (the zero biases or the 0.25 PReLU slopes of an untrained network), and ONNX
    Runtime quantizes an initializer in place for every reader: quantizing one layer's weights would quantize another
    layer's too (measured: a layer-16 quantization of an untrained PReLU yolo11n also fed INT8 biases and slopes to
    layers 0-23).
    """
    graph = model.graph
    readers: dict[str, set[bool]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.name in picked)
    shared = {i.name: i for i in graph.initializer if readers.get(i.name) == {True, False}}
    for name, init in shared.items():
        copy_ = onnx.TensorProto()
        copy_.CopyFrom(init)
        copy_.name = f"{name}__only"
        graph.initializer.append(copy_)
    for node in graph.node:
        if node.name in picked:
            for k, name in enumerate(node.input):
                if name in shared:
                    node.input[k] = f"{name}__only"
    return len(shared)


def count_quant_nodes(onnx_path: str | Path | onnx.ModelProto) -> dict:
    """Count what is quantized in an ONNX graph.

    Returns:
        ``QuantizeLinear``, ``DequantizeLinear`` and ``QLinear`` (all ``QLinear*`` ops) counts; ``weights_int8``:
        DequantizeLinear nodes that read a constant (quantized weights and biases); ``activations``: for each
        activation op type present, ``total`` nodes and ``output_quantized`` (output consumed by a QuantizeLinear),
        and ``output_float`` (graph outputs not produced by a DequantizeLinear).
    """
    model = onnx_path if isinstance(onnx_path, onnx.ModelProto) else onnx.load(str(onnx_path), load_external_data=False)
    graph = model.graph
    ops = Counter(n.op_type for n in graph.node)
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    constants = {i.name for i in graph.initializer} | {
        o for n in graph.node if n.op_type == "Constant" for o in n.output
    }
    producers = {out: n.op_type for n in graph.node for out in n.output}
    acts = {}
    for op in ACT_ONNX_OPS:
        nodes = [n for n in graph.node if n.op_type == op]
        if nodes:
            quantized = sum("QuantizeLinear" in consumers.get(n.output[0], []) for n in nodes)
            acts[op] = {"total": len(nodes), "output_quantized": quantized}
    return {
        "QuantizeLinear": ops.get("QuantizeLinear", 0),
        "DequantizeLinear": ops.get("DequantizeLinear", 0),
        "QLinear": sum(v for k, v in ops.items() if k.startswith("QLinear")),
        "weights_int8": sum(n.op_type == "DequantizeLinear" and n.input[0] in constants for n in graph.node),
        "activations": acts,
        "output_float": all(producers.get(o.name) != "DequantizeLinear" for o in graph.output),
    }


# -------------------------------------------------------------------------------------------------- validation


def validate_onnx(
    onnx_path: str | Path, data_yaml: str | Path, imgsz: int, batch: int = 1, task: str = "detect"
) -> dict:
    """Score an exported model with Ultralytics' own validator for its task (``YOLO(path, task=task).val``).

    Works for anything Ultralytics' ``AutoBackend`` runs (an ``.onnx`` file, an OpenVINO model folder). A
    static-shape export is validated at its own input size with ``rect=False``, as Ultralytics does for every
    non-PyTorch format; ``imgsz`` must be that size, so a mismatch is an error rather than a silent override.

    Args:
        onnx_path: The exported model.
        data_yaml: The dataset YAML (its ``val`` split is scored).
        imgsz: The model's square input size.
        batch: Validation batch; a static export runs at its own batch (1) whatever is asked.
        task: The model's task (``core.loading.model_task``); an exported file does not say it reliably.

    Returns:
        The task's record keys (``core.tasks.task_metrics``): ``{"precision", "recall", "map50", "map50_95"}`` for
        detection, plus ``mask_*`` / ``pose_*`` for segment / pose, ``{"top1", "top5"}`` for classify.

    Raises:
        UserError: An unknown task, or ``imgsz`` is not the export's input size.
    """
    if task not in METRICS:
        raise UserError(f"unknown task {task!r} for validation; choose one of {', '.join(METRICS)}")
    from ultralytics import YOLO

    path = Path(onnx_path)
    if path.suffix == ".onnx":
        _, shape = onnx_input(path)
        if len(shape) == 4 and isinstance(shape[2], int) and list(shape[2:]) != [imgsz, imgsz]:
            raise UserError(f"{path} takes {shape[2]}x{shape[3]} images, not imgsz={imgsz}; validate at {shape[2]}")
    if path.suffix == ".xml":
        path = path.parent  # Ultralytics recognises OpenVINO by its *_openvino_model folder
    is_openvino = path.is_dir() and any(path.glob("*.xml"))
    with tempfile.TemporaryDirectory(prefix="yolo-leaky-val-") as tmp, _openvino_fp32(is_openvino):
        metrics = YOLO(str(path), task=task).val(
            data=str(data_yaml),
            imgsz=imgsz,
            batch=batch,
            rect=False,
            device="cpu",
            workers=0,
            plots=False,
            verbose=False,
            project=tmp,
            name="val",
        )
    return task_metrics(metrics.results_dict, task)


@contextlib.contextmanager
def _openvino_fp32(active: bool):
    """While validating an OpenVINO model: every ``openvino.Core`` made sets the CPU plugin to FP32 inference.

    Ultralytics' OpenVINO backend leaves the CPU plugin's default inference precision, which is bf16 on CPUs with
    AMX or AVX512-BF16 (this project's machine: an "FP32" IR scored 0.3423 mAP50-95 in bf16 and 0.3408 in FP32), so
    an FP32 score would not be FP32 and would not match what ``bench`` times. Ultralytics sets the same property on
    Windows; here it is set for the duration of one validation, through a ``Core`` subclass.
    """
    if not active:
        yield
        return
    ov = import_openvino()
    stock = ov.Core

    class Core(stock):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.set_property("CPU", {"INFERENCE_PRECISION_HINT": "f32"})

    ov.Core = Core
    try:
        yield
    finally:
        ov.Core = stock


# ------------------------------------------------------------------------------------------------------ latency


def int8_label(label: str) -> str:
    return f"{label}{INT8_SUFFIX}"


def benchmark_fp32_int8(
    files: dict[str, dict[str, str]],
    runtime: str = "ort-cpu",
    imgsz: int = 640,
    seconds: float = 20,
    threads: int = 1,
    blocks: int = 8,
    warmup: int = 10,
    baseline: str | None = None,
    seed: int = 0,
) -> tuple[BenchResult, dict[str, dict]]:
    """Time the FP32 and INT8 files of every variant in one interleaved benchmark.

    Args:
        files: Variant label -> ``{"fp32": path, "int8": path}`` (ONNX for ``ort-cpu``, OpenVINO ``.xml`` or ONNX
            for ``openvino-cpu``, ``.tflite`` for ``litert-cpu``).
        runtime: ``ort-cpu``, ``openvino-cpu`` or ``litert-cpu``.
        imgsz: The files' square input size.
        seconds: Timing budget of the whole benchmark (see ``bench.benchmark``).
        threads: Intra-op threads.
        blocks: Independent blocks (the paired CIs are taken over them).
        warmup: Untimed calls per model and block.
        baseline: The FP32 label ratios are taken against (default: the first variant).
        seed: Seed of the input, the round orders and the bootstrap.

    Returns:
        The ``BenchResult`` (labels ``<variant>`` and ``<variant>@int8``) and ``int8_vs_fp32`` of it.
    """
    keys = {"ort-cpu": "onnx_paths", "openvino-cpu": "openvino_paths", "litert-cpu": "litert_paths"}
    if runtime not in keys:
        raise UserError(f"INT8 files are timed on ort-cpu, openvino-cpu or litert-cpu, not {runtime!r}")
    paths = {}
    for label, pair in files.items():
        paths[label] = str(pair["fp32"])
        paths[int8_label(label)] = str(pair["int8"])
    key = keys[runtime]
    result = benchmark(
        dict.fromkeys(paths),
        imgsz=imgsz,
        runtime=runtime,
        seconds=seconds,
        threads=threads,
        warmup=warmup,
        baseline=baseline or next(iter(files)),
        seed=seed,
        blocks=blocks,
        **{key: paths},
    )
    return result, int8_vs_fp32(result)


def int8_vs_fp32(result: BenchResult) -> dict[str, dict]:
    """Each variant's INT8 latency against its own FP32, from the rounds of one interleaved benchmark.

    The statistics are ``bench.latency_stats`` with the variant's FP32 label as baseline, over the same rounds and
    blocks (so the pairing within rounds and the block CI are those of the benchmark itself).

    Returns:
        Variant -> ``{"fp32_median_ms", "int8_median_ms", "paired_ratio", "paired_ci_low", "paired_ci_high",
        "paired_half_width_pct", "blocks", "rounds"}`` (ratio below 1: INT8 faster).
    """
    out = {}
    for label in result.stats:
        q = int8_label(label)
        if label.endswith(INT8_SUFFIX) or q not in result.stats:
            continue
        pair = {label: result.samples_ns[label], q: result.samples_ns[q]}
        s = latency_stats(pair, label, seed=result.settings.get("seed", 0), block_of_round=result.block_of_round)[q]
        out[label] = {
            "fp32_median_ms": result.stats[label].median_ms,
            "int8_median_ms": result.stats[q].median_ms,
            "paired_ratio": s.paired_ratio,
            "paired_ci_low": s.paired_ci_low,
            "paired_ci_high": s.paired_ci_high,
            "paired_half_width_pct": s.paired_half_width_pct,
            "blocks": s.blocks,
            "rounds": s.rounds,
        }
    return out


# ----------------------------------------------------------------------------------------------------- OpenVINO


def export_openvino(
    yolo,
    out_dir: str | Path,
    imgsz: int,
    int8: bool = False,
    calib: Calibration | None = None,
    name: str | None = None,
    naive: bool = False,
) -> Path:
    """Export with Ultralytics' exporter to OpenVINO IR (FP32, or INT8 through NNCF: ``quantize=8``, formerly
    ``int8=True``) and return the ``.xml``.

    INT8 calibrates on ``calib``'s images: they are copied into ``out_dir`` with a dataset YAML whose ``val`` split
    is exactly them (Ultralytics' INT8 export calibrates on ``val`` with the validator's preprocessing), so OpenVINO
    and ONNX Runtime see the same calibration set. Ultralytics keeps the Detect decoding and every ``Sigmoid`` in
    float (its ignored scope) and uses NNCF's MIXED preset (symmetric weights, asymmetric activations).

    Args:
        yolo: An Ultralytics ``YOLO`` object (e.g. from ``yolo_leaky.load``).
        out_dir: Folder for the ``<name>_openvino_model`` (or ``<name>_int8_openvino_model``) folder.
        imgsz: Square input size baked into the model (static shape, batch 1).
        int8: Quantize with NNCF.
        calib: Calibration images, required for ``int8``.
        name: Stem; default ``<model>-<act label>``.
        naive: INT8 without Ultralytics' ignored scope (``int8_detect=False`` in its ``torch2openvino``): NNCF
            quantizes the Detect decoding and the Sigmoids too. Not shipped: the contrast to the default.

    Raises:
        UserError: openvino (or, for INT8, nncf) is not installed, or INT8 without calibration images.
    """
    import_openvino()
    if int8:
        if calib is None:
            raise UserError("an INT8 OpenVINO export needs calibration images (calib=calibration_images(...))")
        if calib.imgsz != imgsz:
            raise UserError(f"calibration images are {calib.imgsz} px but the export is imgsz={imgsz}; match them")
        _require("nncf")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = yolo.model
    stem = name or default_stem(net)
    kwargs = {"format": "openvino", "imgsz": imgsz, "dynamic": False, "batch": 1, "device": "cpu"}
    if int8:  # Ultralytics 8.4 spells int8=True as quantize=8 (int8= is deprecated)
        kwargs.update(quantize=8, data=str(write_calibration_dataset(calib, out_dir / f"{stem}_calibration")))
    missing = object()
    old = net.__dict__.get("pt_path", missing)
    net.pt_path = str(out_dir / f"{stem}.pt")  # only its name is used (as in bench.export_onnx)
    try:
        with _openvino_whole_graph(naive and int8):
            produced = Path(yolo.export(**kwargs))
    finally:
        if old is missing:
            del net.pt_path
        else:
            net.pt_path = old
    xml = next(produced.glob("*.xml"), None)
    if xml is None:
        raise RuntimeError(f"Ultralytics' OpenVINO export wrote no .xml into {produced}")
    return xml


@contextlib.contextmanager
def _openvino_whole_graph(on: bool):
    """While exporting: Ultralytics' ``torch2openvino`` called with ``int8_detect=False`` (no ignored scope)."""
    if not on:
        yield
        return
    import ultralytics.utils.export.openvino as ov_export

    old = ov_export.torch2openvino
    ov_export.torch2openvino = lambda *a, **k: old(*a, **{**k, "int8_detect": False})
    try:
        yield
    finally:
        ov_export.torch2openvino = old


def _require(module: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise UserError(f"{module} is not installed; pip install yolo-leaky[openvino]")


def openvino_fusion(model_path: str | Path, threads: int = 1) -> dict:
    """Which activations OpenVINO's CPU plugin fuses into its convolutions.

    Compiles the model with the benchmark's settings (``bench.openvino_config``: FP32 inference precision, one
    stream, ``threads`` threads), reads the runtime graph (``compiled.get_runtime_model()``) and finds, for every
    activation op of the original model, the runtime node whose ``originalLayersNames`` lists it. Its ``layerType``
    says where it runs: ``Convolution`` (fused as a post-op), ``Subgraph`` (a Snippets kernel of fused elementwise
    ops), ``Eltwise`` (a lone elementwise op), and so on. SiLU may appear as ``Swish`` or as ``Sigmoid`` + ``Multiply``
    (only the Sigmoid is counted); LeakyReLU arrives as ``PRelu`` with one constant slope. ``absent``: no runtime
    node names the op, so the plugin optimized it away (seen for ReLU in NNCF INT8 models, where a ReLU feeding an
    unsigned FakeQuantize is redundant: the quantization range already starts at 0).

    Returns:
        ``activations``: original op type -> {runtime layerType: count}; ``fused_into_conv`` and ``standalone``:
        totals over activation ops; ``runtime_layer_types``: all runtime node types with counts; ``precisions``:
        runtime precisions of the convolutions.
    """
    ov = import_openvino()
    core = ov.Core()
    model = core.read_model(str(model_path))
    compiled = core.compile_model(model, "CPU", openvino_config(threads))
    runtime = compiled.get_runtime_model().get_ordered_ops()
    where: dict[str, str] = {}
    layer_types: Counter = Counter()
    precisions: Counter = Counter()
    for op in runtime:
        info = op.get_rt_info()
        kind = str(info["layerType"].astype(str))
        layer_types[kind] += 1
        if kind == "Convolution":
            precisions[str(info["runtimePrecision"].astype(str))] += 1
        for original in str(info["originalLayersNames"].astype(str)).split(","):
            if original:
                where[original] = kind
    acts: dict[str, Counter] = {}
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind in OV_ACT_TYPES:
            acts.setdefault(kind, Counter())[where.get(op.get_friendly_name(), ABSENT)] += 1
    fused = sum(c.get("Convolution", 0) for c in acts.values())
    return {
        "activations": {k: dict(v.most_common()) for k, v in acts.items()},
        "fused_into_conv": fused,
        "standalone": sum(sum(c.values()) for c in acts.values()) - fused,
        "runtime_layer_types": dict(layer_types.most_common()),
        "precisions": dict(precisions),
    }


# ----------------------------------------------------------------------------------------------------- the stage


def measure_int8(
    weights: dict[str, str | Path],
    data_yaml: str | Path,
    out_dir: str | Path,
    imgsz: int = 640,
    batch: int = 1,
    n_calib: int = 64,
    seconds: float = 20,
    threads: int = 1,
    blocks: int = 8,
    schemes: tuple[str, ...] = tuple(SCHEMES),
    timed_scheme: str = "deploy",
    runtimes: tuple[str, ...] = ("ort-cpu", "openvino-cpu"),
    method: str = DEFAULT_METHOD,
    seed: int = 0,
    bench_imgsz: int | None = None,
    baseline: str | None = None,
) -> dict:
    """The INT8 stage for one checkpoint per variant: export, quantize, validate, time, and inspect fusion.

    Per variant: the FP32 ONNX export (Ultralytics' exporter, static ``imgsz``, batch 1), one INT8 ONNX per scheme
    (same calibration images for every variant), each scored by ``validate_onnx``; then one interleaved ``ort-cpu``
    benchmark of every variant's FP32 and ``timed_scheme`` INT8 file. With ``openvino-cpu`` in ``runtimes`` and
    OpenVINO installed: FP32 and NNCF INT8 IR exports, their mAP, one interleaved benchmark, and ``openvino_fusion``.
    When ``bench_imgsz`` differs from ``imgsz``, the timed files are exported again at ``bench_imgsz`` from the same
    checkpoints and quantized the same way, on the same calibration images preprocessed at ``bench_imgsz``: scores
    are taken at ``imgsz``, latency at ``bench_imgsz`` (the size of the FP32 speed tables).

    Args:
        weights: Variant label -> checkpoint (``.pt``).
        data_yaml: Dataset YAML: calibration from ``train``, scores from ``val``.
        out_dir: Folder for the exported and quantized files.
        imgsz: Square input size of every scored export.
        batch: Validation batch (a static export runs at batch 1 anyway).
        n_calib: Calibration images.
        seconds: Timing budget of each benchmark.
        threads: Intra-op threads of the timed sessions.
        blocks: Independent benchmark blocks.
        schemes: The ONNX Runtime schemes to quantize and score.
        timed_scheme: The scheme whose INT8 files are timed.
        runtimes: ``ort-cpu`` and/or ``openvino-cpu``; OpenVINO is skipped (and said so) when not installed.
        method: Calibration method.
        seed: Seed of the calibration choice and of the benchmarks.
        bench_imgsz: Square input size of the timed files (default ``imgsz``); recorded in ``settings``.
        baseline: The variant whose FP32 file the ``<variant>@int8`` latency ratios are taken against. Where it has
            no checkpoint, the benchmark's ratios are taken against the first variant instead and the benchmark
            records that label as its ``baseline``: read it before calling a ratio "against ``baseline``".

    Returns:
        A JSON-ready dict: ``calibration``, ``settings``, ``variants`` (label -> ``fp32`` metrics, ``int8`` scheme ->
        quantize report plus ``metrics``, ``ort_int8`` ops after ONNX Runtime's optimizer, ``openvino`` exports,
        metrics and fusion), ``latency`` (runtime -> benchmark dict and ``int8_vs_fp32``), ``skipped`` (reasons).
    """
    bad = [s for s in (*schemes, timed_scheme) if s not in SCHEMES]
    if bad:
        raise UserError(f"unknown INT8 scheme {bad[0]!r}; choose from {', '.join(SCHEMES)}")
    if timed_scheme not in schemes:
        raise UserError(f"timed_scheme {timed_scheme!r} must be one of the schemes quantized ({', '.join(schemes)})")
    if not weights:
        raise UserError("measure_int8 needs at least one checkpoint (variant label -> .pt)")
    out_dir = Path(out_dir)
    bench_imgsz = bench_imgsz or imgsz
    timing_baseline = baseline if baseline in weights else next(iter(weights))
    task = _one_task(weights)
    calib = calibration_images(data_yaml, n=n_calib, imgsz=imgsz, seed=seed)
    result: dict = {
        "calibration": calib.to_dict(),
        "settings": {
            "imgsz": imgsz,
            "bench_imgsz": bench_imgsz,
            "baseline": baseline,
            "n_calib": n_calib,
            "method": method,
            "schemes": {s: SCHEMES[s] for s in schemes},
            "timed_scheme": timed_scheme,
            "seconds": seconds,
            "threads": threads,
            "blocks": blocks,
            "seed": seed,
        },
        "variants": {},
        "latency": {},
        "skipped": {},
    }
    if task != "detect":  # detection's result keeps its shape (the golden reports read it)
        result["settings"]["task"] = task
    onnx_files: dict[str, dict[str, str]] = {}
    for label, pt in weights.items():
        yolo = load(pt)
        folder = out_dir / _safe(label)
        fp32 = export_onnx(yolo, folder, imgsz, name=f"{_safe(label)}-fp32")
        entry: dict = {
            "weights": str(pt),
            "fp32_onnx": str(fp32),
            "fp32": validate_onnx(fp32, data_yaml, imgsz, batch, task),
        }
        entry["int8"] = {}
        for scheme in schemes:
            q = quantize(fp32, folder / f"{_safe(label)}-int8-{scheme}.onnx", calib, scheme, method)
            q["metrics"] = validate_onnx(q["path"], data_yaml, imgsz, batch, task)
            entry["int8"][scheme] = q
        with tempfile.TemporaryDirectory(prefix="yolo-leaky-ortopt-") as tmp:
            optimized = optimize_with_ort(entry["int8"][timed_scheme]["path"], Path(tmp) / "opt.onnx", threads)
            fusion = summarize_fusion(optimized)
        entry["ort_int8"] = {"standalone": fusion["standalone"], "op_counts": fusion["op_counts"]}
        onnx_files[label] = {"fp32": str(fp32), "int8": entry["int8"][timed_scheme]["path"]}
        result["variants"][label] = entry
    timed_calib = calib
    if runtimes and bench_imgsz != imgsz:  # the same images, preprocessed at the timed size
        timed_calib = calibration_images(data_yaml, n=n_calib, imgsz=bench_imgsz, seed=seed)
        result["calibration_timed"] = timed_calib.to_dict()
    if "ort-cpu" in runtimes:
        if bench_imgsz != imgsz:
            onnx_files = _timed_onnx(weights, out_dir, bench_imgsz, timed_calib, timed_scheme, method)
        res, ratios = benchmark_fp32_int8(
            onnx_files, "ort-cpu", bench_imgsz, seconds, threads, blocks, baseline=timing_baseline, seed=seed
        )
        result["latency"]["ort-cpu"] = {"benchmark": res.to_dict(), "int8_vs_fp32": ratios, "table": res.format_table()}
    if "openvino-cpu" in runtimes:
        try:
            import_openvino()
            _require("nncf")
        except UserError as e:
            result["skipped"]["openvino-cpu"] = str(e)
        else:
            sizes = (imgsz, bench_imgsz, calib, timed_calib)
            _measure_openvino(weights, data_yaml, out_dir, sizes, batch, seconds, threads, blocks, seed, result)
    return result


def _one_task(weights: dict[str, str | Path]) -> str:
    """The task of the checkpoints (every variant is one model's swap, so one task), read from each checkpoint."""
    tasks = {label: model_task(pt) for label, pt in weights.items()}
    if len(set(tasks.values())) > 1:
        raise UserError(f"INT8 compares variants of one model, but the checkpoints are of tasks {tasks}; pass one task")
    task = next(iter(tasks.values()))
    if task not in METRICS:
        raise UserError(f"INT8 has no validator for {task} models; tasks measured: {', '.join(METRICS)}")
    return task


def _timed_onnx(weights, out_dir, bench_imgsz, calib, scheme, method) -> dict[str, dict[str, str]]:
    """FP32 and INT8 (``scheme``) ONNX files of every variant at the timed size ``bench_imgsz``."""
    files = {}
    for label, pt in weights.items():
        folder = out_dir / _safe(label) / f"timed-{bench_imgsz}"
        fp32 = export_onnx(load(pt), folder, bench_imgsz, name=f"{_safe(label)}-fp32")
        q = quantize(fp32, folder / f"{_safe(label)}-int8-{scheme}.onnx", calib, scheme, method)
        files[label] = {"fp32": str(fp32), "int8": q["path"]}
    return files


def _measure_openvino(weights, data_yaml, out_dir, sizes, batch, seconds, threads, blocks, seed, result):
    """NNCF INT8 and FP32 IR of every variant: scored at ``imgsz``, timed at ``bench_imgsz`` (``sizes``: both sizes
    and their calibration sets), ratios against the ONNX Runtime benchmark's baseline."""
    imgsz, bench_imgsz, calib, timed_calib = sizes
    task = result["settings"].get("task", "detect")
    files = {}
    for label, pt in weights.items():
        folder = out_dir / _safe(label)
        fp32 = export_openvino(load(pt), folder, imgsz, name=f"{_safe(label)}-fp32")
        int8 = export_openvino(load(pt), folder, imgsz, int8=True, calib=calib, name=f"{_safe(label)}-nncf")
        files[label] = {"fp32": str(fp32), "int8": str(int8)}
        if bench_imgsz != imgsz:
            timed = folder / f"timed-{bench_imgsz}"
            files[label] = {
                "fp32": str(export_openvino(load(pt), timed, bench_imgsz, name=f"{_safe(label)}-fp32")),
                "int8": str(
                    export_openvino(
                        load(pt), timed, bench_imgsz, int8=True, calib=timed_calib, name=f"{_safe(label)}-nncf"
                    )
                ),
            }
        result["variants"][label]["openvino"] = {
            "fp32_xml": str(fp32),
            "int8_xml": str(int8),
            "fp32": validate_onnx(fp32.parent, data_yaml, imgsz, batch, task),
            "int8": validate_onnx(int8.parent, data_yaml, imgsz, batch, task),
            "fusion_fp32": openvino_fusion(fp32, threads),
            "fusion_int8": openvino_fusion(int8, threads),
        }
    base = result["settings"]["baseline"]
    res, ratios = benchmark_fp32_int8(
        files,
        "openvino-cpu",
        bench_imgsz,
        seconds,
        threads,
        blocks,
        baseline=base if base in files else None,
        seed=seed,
    )
    result["latency"]["openvino-cpu"] = {
        "benchmark": res.to_dict(),
        "int8_vs_fp32": ratios,
        "table": res.format_table(),
    }


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label)
