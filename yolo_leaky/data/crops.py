"""A small, learnable classification dataset generated deterministically: crops of the synthetic shapes.

Each image is one shape of ``synthetic.py`` (same classes, backgrounds, colours and noise), drawn on a larger canvas
and cropped to a square around its box with a random margin, so the shape fills a varying part of the frame. The
class is the folder name, in the ImageNet-style layout Ultralytics' ``ClassificationDataset`` reads:
``<root>/{train,val}/<class>/*.png``. The same parameters and seed give the same bytes, and a finished dataset is
reused when its manifest matches.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from .synthetic import CLASSES, draw_image

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "val")
CANVAS = 2  # shapes are drawn on a canvas this many times the crop side, then cropped around their box


def make_shape_crops(
    root: str | Path,
    n_train: int = 512,
    n_val: int = 128,
    imgsz: int = 64,
    seed: int = 0,
    margin: tuple[float, float] = (1.05, 1.3),
) -> Path:
    """Generate (or reuse) the shape-crops dataset under ``root`` and return ``root`` (what ``data=`` takes).

    Args:
        root: Folder for ``train/<class>/``, ``val/<class>/`` and the manifest.
        n_train: Training images (classes drawn at random, every class present for n_train >= 16 in practice).
        n_val: Validation images: the images every reported top-1 is measured on.
        imgsz: Side of the square crops, 32 to 160 px.
        seed: RNG seed; train and val use independent streams derived from it.
        margin: The crop's side as a multiple of the shape's box side, (low, high), clipped to the canvas. The
            shape fills most of the crop by default: with margins up to 2x, yolo11n-cls stayed at chance at imgsz
            32 (docs/tasks.md).

    Returns:
        The dataset folder (absolute).

    Examples:
        >>> root = make_shape_crops("/tmp/crops", n_train=8, n_val=4)  # doctest: +SKIP
        >>> sorted(p.name for p in (root / "train").iterdir())  # doctest: +SKIP
        ['circle', 'cross', 'square', 'triangle']
    """
    if not 32 <= imgsz <= 160:
        raise ValueError(f"imgsz must be between 32 and 160 px, got {imgsz}")
    if n_train < 1 or n_val < 1:
        raise ValueError("n_train and n_val must be at least 1")
    lo, hi = (float(v) for v in margin)
    if not 1.0 <= lo <= hi <= 3.0:
        raise ValueError(f"margin must satisfy 1 <= low <= high <= 3, got {margin}")
    root = Path(root).resolve()
    params = {
        "version": FORMAT_VERSION,
        "n_train": n_train,
        "n_val": n_val,
        "imgsz": imgsz,
        "seed": seed,
        "margin": [lo, hi],
        "classes": list(CLASSES),
    }
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = None
    if not manifest or manifest.get("params") != params or manifest.get("digest") != crops_digest(root):
        _generate(root, params)
    return root


def crops_digest(root: str | Path) -> str:
    """SHA-256 over the relative paths and bytes of every image (manifest and caches excluded).

    Examples:
        >>> len(crops_digest("/nonexistent"))
        64
    """
    root = Path(root)
    h = hashlib.sha256()
    for f in sorted(p for s in SPLITS for p in (root / s).rglob("*.png")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _generate(root: Path, params: dict) -> None:
    (root / MANIFEST).unlink(missing_ok=True)  # written last: its presence means a complete dataset
    for split in SPLITS:
        shutil.rmtree(root / split, ignore_errors=True)
    size = params["imgsz"]
    for split, n, ss in zip(
        SPLITS, (params["n_train"], params["n_val"]), np.random.SeedSequence(params["seed"]).spawn(2)
    ):
        rng = np.random.default_rng(ss)
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
        for i in range(n):
            cls, crop = _crop(rng, size, tuple(params["margin"]))
            path = root / split / CLASSES[cls] / f"{split}_{i:05d}.png"
            if not cv2.imwrite(str(path), crop):
                raise OSError(f"could not write {path}")
    (root / MANIFEST).write_text(json.dumps({"params": params, "digest": crops_digest(root)}, indent=2))


def _crop(rng: np.random.Generator, size: int, margin: tuple[float, float]) -> tuple[int, np.ndarray]:
    """One shape drawn on a ``CANVAS * size`` canvas, cropped square around its box and resized to ``size``."""
    canvas = CANVAS * size
    while True:  # one object always fits an empty canvas; the loop only guards against a shape too thin to box
        img, labels = draw_image(rng, canvas, 1, (0.3, 0.5))
        if labels:
            break
    cls, (x0, y0, x1, y1), _ = labels[0]
    side = min(canvas, int(max(x1 - x0 + 1, y1 - y0 + 1) * rng.uniform(*margin)))
    # the crop holds the whole box where the canvas allows, at a random offset around it
    cx = int(np.clip(rng.integers(x1 + 1 - side, x0 + 1) if side > x1 - x0 else x0, 0, canvas - side))
    cy = int(np.clip(rng.integers(y1 + 1 - side, y0 + 1) if side > y1 - y0 else y0, 0, canvas - side))
    crop = img[cy : cy + side, cx : cx + side]
    return cls, cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
