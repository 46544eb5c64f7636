"""The offline stand-in for a COCO-pretrained checkpoint: a SiLU yolo11n pretrained on yolo-leaky's synthetic shapes
data, trained once per machine and cached with its recipe and hash.

The recovery protocol needs a SiLU model that detects something before the swap. On a connected machine that is
``yolo11n.pt`` on COCO8; offline no pretrained weights exist, so this module makes one reproducibly: the shapes
dataset of ``synthetic.py`` (same bytes for a seed) and the fixed recipe ``RECIPE`` (seeded, deterministic on one
machine). It is a stand-in, labelled as such wherever its numbers appear: it says how the swap and its recovery
behave on a network that has learned, never what they cost on COCO. Segment, pose and OBB models get stand-ins of
their own on their tasks' versions of the shapes data (``synthetic_tasks.py``, docs/standin-tasks.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch
import ultralytics

from ..core.loading import load, model_task
from ..core.tasks import task_metrics
from ..utils import atomic
from ..utils.errors import UserError
from .crops import FORMAT_VERSION as CROPS_VERSION
from .crops import make_shape_crops
from .datasets import file_digest
from .synthetic import FORMAT_VERSION, TRAIN_RECIPE, make_shapes_dataset
from .synthetic_tasks import TASK_FORMAT_VERSION, make_task_dataset

STANDIN = "standin"  # the value of ``weights=`` that names this checkpoint
CACHE_ENV = "YOLO_LEAKY_CACHE"
MODEL = "yolo11n.yaml"
RECIPE = {**TRAIN_RECIPE, "seed": 0, "deterministic": True}  # 16 epochs at imgsz 64; see synthetic.TRAIN_RECIPE


def _box_metrics(metrics) -> dict:
    return {"map50": float(metrics.box.map50), "map50_95": float(metrics.box.map)}


def _seg_metrics(metrics) -> dict:
    return {**_box_metrics(metrics), "mask_map50": float(metrics.seg.map50), "mask_map50_95": float(metrics.seg.map)}


def _pose_metrics(metrics) -> dict:
    return {**_box_metrics(metrics), "pose_map50": float(metrics.pose.map50), "pose_map50_95": float(metrics.pose.map)}


def _task_row(task: str, metrics, stands_for: str) -> dict:
    return {
        "data": lambda folder: make_task_dataset(folder / f"shapes-{task}", task),
        "metrics": metrics,
        "ident": f"synthetic {task} shapes v{FORMAT_VERSION}.{TASK_FORMAT_VERSION} (default parameters)",
        "stands_for": stands_for,
        "recipe": RECIPE,
    }


def _class_metrics(metrics) -> dict:
    return task_metrics(metrics.results_dict, "classify")


# The classifier's recipe (measured in docs/tasks.md): the shape crops at imgsz 32, where the cropped shape is all
# there is to see (4x fewer pixels per step than 64), AdamW at lr0 0.001 for 10 epochs of 512 images, and without
# Ultralytics' RandAugment and random erasing, which hide a 32 px shape's outline.
CLS_RECIPE = {
    **RECIPE,
    "epochs": 10,
    "imgsz": 32,
    "batch": 16,
    "nbs": 16,
    "lr0": 0.001,
    "auto_augment": None,
    "erasing": 0.0,
}

# One row per task that has a stand-in: how its data are made (under the stand-in's folder, returning what data=
# takes: a YAML, or a classification dataset's folder), what the data are called in the cache key and the log, what
# real data they stand in for, the training recipe, and which headline metrics its record keeps. A task gets a
# stand-in by adding a row (issue 21).
TASKS: dict[str, dict] = {
    "detect": {
        "data": lambda folder: make_shapes_dataset(folder / "shapes"),
        "ident": f"synthetic shapes v{FORMAT_VERSION} (default parameters)",
        "stands_for": "COCO",
        "recipe": RECIPE,
        "metrics": _box_metrics,
    },
    "classify": {
        "data": lambda folder: make_shape_crops(folder / "crops", imgsz=CLS_RECIPE["imgsz"]),
        "ident": f"synthetic shape crops v{CROPS_VERSION} (imgsz {CLS_RECIPE['imgsz']}, default parameters)",
        "stands_for": "ImageNet",
        "recipe": CLS_RECIPE,
        "metrics": _class_metrics,
    },
    "segment": _task_row("segment", _seg_metrics, "COCO-seg"),
    "pose": _task_row("pose", _pose_metrics, "COCO-pose"),
    "obb": _task_row("obb", _box_metrics, "DOTA"),  # an OBB validator's .box holds the rotated-box mAP
}


def _manifest(data: Path) -> Path:
    """The manifest of a stand-in dataset: inside a classification folder, beside a detection YAML."""
    return data / "manifest.json" if data.is_dir() else data.parent / "manifest.json"


def cache_root() -> Path:
    """Where cached artefacts live: ``$YOLO_LEAKY_CACHE``, else ``~/.cache/yolo-leaky``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "yolo-leaky")


def recipe_key(model: str = MODEL) -> str:
    """A short hash of everything that decides the stand-in's weights on one machine (the default model's key is the
    one every earlier cache holds: ``model`` was always part of it)."""
    row = TASKS.get(model_task(model), TASKS["detect"])
    ident = {
        "model": model,
        "recipe": row["recipe"],
        "data": row["ident"],
        "validation": "square letterbox (rect=False)",
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]


def standin_checkpoint(log=print, model: str = MODEL) -> tuple[Path, dict]:
    """The stand-in checkpoint and its record, trained on the first call and reused afterwards.

    A record is reused only when its weights still hash to the recorded SHA-256; the weights are written to a
    temporary folder and moved into place, record last, so an interrupted first call leaves nothing that looks done.

    Args:
        log: Called with one progress line before a (~2 min) training.
        model: The stock SiLU YAML to pretrain (``yolo11n.yaml`` by default; ``yolov8n.yaml`` and
            ``yolo26n.yaml`` get stand-ins of their own, cached under their own keys with the same recipe and data;
            a classifier such as ``yolo11n-cls.yaml`` gets its task's row: the shape crops and ``CLS_RECIPE``; a
            segment, pose or OBB YAML such as ``yolo11n-pose.yaml`` is pretrained on its task's shapes data).

    Returns:
        ``(path of standin.pt, record)``, the record holding the recipe, the weights' SHA-256, the dataset digest,
        the stand-in's own validation mAP, its training time and the versions that made it.

    Examples:
        >>> weights, record = standin_checkpoint()  # doctest: +SKIP
        >>> record["metrics"]["map50"] > 0.5  # doctest: +SKIP
        True
    """
    task = model_task(model)
    if task not in TASKS:
        raise UserError(f"no offline stand-in for {task} models yet ({model}); stand-ins exist for: {', '.join(TASKS)}")
    folder = cache_root() / f"standin-{recipe_key(model)}"
    weights, record_path = folder / "standin.pt", folder / "standin.json"
    record = atomic.read_json(record_path)
    if record is not None and weights.is_file() and file_digest(weights) == record.get("weights_sha256"):
        return weights, record
    row = TASKS[task]
    recipe = row["recipe"]
    log(
        f"[stand-in] pretraining a SiLU {Path(model).stem} on the {row['ident'].split(' v')[0]} data once "
        f"({recipe['epochs']} epochs at imgsz {recipe['imgsz']}, ~2 min on 2 CPU cores); cached in {folder}"
    )
    data = row["data"](folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        yolo = load(model)
        start, cpu_start = time.perf_counter(), time.process_time()
        yolo.train(
            data=str(data),
            **recipe,
            workers=0,
            amp=False,
            plots=False,
            verbose=False,
            device="cpu",
            project=tmp,
            name="train",
            exist_ok=True,
        )
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        last = Path(tmp) / "train/weights/last.pt"
        metrics = load(last).val(  # square letterbox, as every accuracy figure of compare (cells.VAL_ARGS)
            data=str(data),
            imgsz=recipe["imgsz"],
            batch=recipe["batch"],
            device="cpu",
            rect=False,
            workers=0,
            plots=False,
            verbose=False,
        )
        shutil.move(str(last), weights)
    record = {
        "what": f"SiLU {Path(model).stem} pretrained on yolo-leaky's {row['ident'].split(' v')[0]} data: an offline "
        f"stand-in, not {row['stands_for']}",
        "model": model,
        "recipe": recipe,
        "data_digest": json.loads(_manifest(Path(data)).read_text())["digest"],
        "weights_sha256": file_digest(weights),
        "task": task,
        "metrics": row["metrics"](metrics),
        "train_seconds": seconds,
        "train_cpu_seconds": cpu_seconds,  # less sensitive than wall time to other jobs on a shared machine
        "versions": {"ultralytics": ultralytics.__version__, "torch": torch.__version__},
        "machine": platform.processor() or platform.machine(),
        "key": recipe_key(model),
    }
    atomic.write_json(record_path, record)
    return weights, record


def standin_eval_data(n_val: int = 512, model: str = MODEL) -> Path:
    """The stand-in's shapes data with ``n_val`` validation images, for measurements finer than 64 images resolve.

    The generator draws each split from its own stream, so the training images (and the first 64 validation
    images) are the bytes the stand-in was trained and validated on; only more validation images are added. The
    stand-in's recipe and cache key are unchanged: this dataset lives beside it.

    Args:
        n_val: Validation images (64 gives the stand-in's own dataset).
        model: Whose stand-in folder holds it (the shapes data are the same for every detection model).

    Returns:
        The dataset YAML.

    Examples:
        >>> standin_eval_data(512).parent.name  # doctest: +SKIP
        'shapes-val512'
    """
    folder = cache_root() / f"standin-{recipe_key(model)}"
    return make_shapes_dataset(folder / ("shapes" if n_val == 64 else f"shapes-val{n_val}"), n_val=n_val)
