"""A small, learnable detection dataset generated deterministically: coloured shapes on textured backgrounds.

COCO8 cannot show learning (its few val classes barely appear in its 4 train images). This dataset can: four
shape classes, drawn at random sizes, positions and colours on noisy, textured backgrounds, with exact boxes taken
from the drawn pixels. The same parameters and seed give the same bytes (NumPy RNG, OpenCV drawing, PNG files), and
a finished dataset is reused when its manifest matches.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import yaml as pyyaml

CLASSES = ("circle", "square", "triangle", "cross")
FORMAT_VERSION = 1  # the tune split came later from a third RNG stream: train and val bytes are unchanged
MANIFEST = "manifest.json"
YAML_NAME = "shapes.yaml"
TUNE_YAML_NAME = "shapes-tune.yaml"  # trains on train and validates on the tune split
SPLITS = ("train", "val", "tune")

# A recipe that trains yolo11n from scratch to mAP50 0.60-0.70 on the default dataset in ~2 min per activation on
# 2 CPU cores (see tests/test_synthetic.py). Why each setting:
# - batch 8 and nbs 8: one optimizer step per batch (nbs 64 would accumulate 8 batches: 8x fewer steps);
# - AdamW lr0 0.002, lrf 0.1, no warmup: Ultralytics' auto choice (AdamW 0.00125, 100 warmup steps, decay to 1%)
#   is tuned for long runs; 512 steps need a faster start and a later floor;
# - mosaic 0 and scale 0.2: val images are un-augmented single images; heavy mosaic/scale jitter slows learning;
# - val False: validate only at the end (the number we report), not every epoch.
TRAIN_RECIPE = dict(
    epochs=16,
    imgsz=64,
    batch=8,
    nbs=8,
    optimizer="AdamW",
    lr0=0.002,
    lrf=0.1,
    warmup_epochs=0,
    mosaic=0.0,
    scale=0.2,
    val=False,
)


def make_shapes_dataset(
    root: str | Path,
    n_train: int = 256,
    n_val: int = 64,
    imgsz: int = 64,
    n_tune: int = 64,
    seed: int = 0,
    max_objects: int = 2,
    size_range: tuple[float, float] = (0.3, 0.55),
) -> Path:
    """Generate (or reuse) the shapes dataset under ``root`` and return its dataset YAML.

    Args:
        root: Folder for ``images/{train,val,tune}``, ``labels/{train,val,tune}``, the manifest, ``shapes.yaml`` and
            ``shapes-tune.yaml`` (``tune_yaml``).
        n_train: Training images.
        n_val: Validation images: the images every reported score is measured on.
        imgsz: Side of the square images, 64 to 160 px.
        n_tune: Tuning images (0: none), for choosing settings without looking at the validation images; drawn
            from a third stream, so adding them changes no train or val byte.
        seed: RNG seed; train, val and tune use independent streams derived from it.
        max_objects: At most this many shapes per image (at least one).
        size_range: Shape side as a fraction of ``imgsz``, (low, high).

    Returns:
        Path of the dataset YAML (``path`` absolute, ``train``/``val`` relative, ``names``).
    """
    root = Path(root).resolve()
    params = _params(n_train, n_val, imgsz, n_tune, seed, max_objects, size_range)
    if not _reusable(root, params):
        _generate(root, params)
    return _write_yaml(root)


def _params(
    n_train: int, n_val: int, imgsz: int, n_tune: int, seed: int, max_objects: int, size_range: tuple[float, float]
) -> dict:
    """The checked generation parameters as the manifest records them (ValueError on a bad one)."""
    if not 64 <= imgsz <= 160:
        raise ValueError(f"imgsz must be between 64 and 160 px, got {imgsz}")
    if n_train < 1 or n_val < 1 or max_objects < 1 or n_tune < 0:
        raise ValueError("n_train, n_val and max_objects must be at least 1, n_tune at least 0")
    lo, hi = (float(v) for v in size_range)
    if not 0.05 <= lo <= hi <= 0.9:
        raise ValueError(f"size_range must satisfy 0.05 <= low <= high <= 0.9, got {size_range}")
    return {
        "version": FORMAT_VERSION,
        "n_train": n_train,
        "n_val": n_val,
        "n_tune": n_tune,
        "imgsz": imgsz,
        "seed": seed,
        "max_objects": max_objects,
        "size_range": [lo, hi],
        "classes": list(CLASSES),
    }


def _reusable(root: Path, params: dict) -> bool:
    """True when ``root`` holds a complete dataset made with ``params`` whose files are unchanged."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("params") == params and manifest.get("digest") == dataset_digest(root)


def dataset_digest(root: str | Path) -> str:
    """SHA-256 over the relative paths and bytes of every image and label file (caches and YAML excluded)."""
    root = Path(root)
    h = hashlib.sha256()
    for f in sorted(p for d in ("images", "labels") for p in (root / d).rglob("*") if p.suffix in (".png", ".txt")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _draw_detect(rng: np.random.Generator, params: dict) -> tuple[np.ndarray, str]:
    img, labels = draw_image(rng, params["imgsz"], params["max_objects"], tuple(params["size_range"]))
    return img, "".join(_label_line(*lb) for lb in labels)


def _generate(root: Path, params: dict, draw=_draw_detect) -> None:
    """Write every split's images and labels, then the manifest; ``draw(rng, params)`` makes one image and the text
    of its label file (detection boxes here; the other tasks' labels in ``synthetic_tasks.py``)."""
    (root / MANIFEST).unlink(missing_ok=True)  # written last: its presence means a complete dataset
    for d in ("images", "labels"):
        shutil.rmtree(root / d, ignore_errors=True)
    # spawn(3)'s first two children are spawn(2)'s: the tune stream leaves the train and val bytes as they were
    streams = np.random.SeedSequence(params["seed"]).spawn(len(SPLITS))
    counts = (params["n_train"], params["n_val"], params["n_tune"])
    for split, n, ss in zip(SPLITS, counts, streams):
        rng = np.random.default_rng(ss)
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n):
            img, text = draw(rng, params)
            stem = f"{split}_{i:05d}"
            if not cv2.imwrite(str(root / "images" / split / f"{stem}.png"), img):
                raise OSError(f"could not write {root / 'images' / split / stem}.png")
            (root / "labels" / split / f"{stem}.txt").write_text(text)
    manifest = {"params": params, "digest": dataset_digest(root)}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2))


def _write_yaml(root: Path, val: str = "val", name: str = YAML_NAME, extra: dict | None = None) -> Path:
    cfg = {"path": str(root), "train": "images/train", "val": f"images/{val}", "names": dict(enumerate(CLASSES))}
    cfg.update(extra or {})
    out = root / name
    text = pyyaml.safe_dump(cfg, sort_keys=False)
    if not out.exists() or out.read_text() != text:
        out.write_text(text)
    return out


def tune_yaml(data_yaml: str | Path) -> Path:
    """A dataset YAML beside ``data_yaml`` (a shapes dataset's) that trains on its train split and validates on its
    tune split: settings chosen by validating on it never see the validation images that reports score.

    Raises:
        ValueError: The dataset has no tune images (``n_tune=0``).
    """
    root = Path(data_yaml).resolve().parent
    if not any((root / "images" / "tune").glob("*.png")):
        raise ValueError(f"{root} has no tune split; generate it with n_tune >= 1")
    return _write_yaml(root, val="tune", name=TUNE_YAML_NAME)


def _label_line(cls: int, box: tuple[int, int, int, int], size: int) -> str:
    x0, y0, x1, y1 = box  # inclusive pixel bounds
    w, h = (x1 - x0 + 1) / size, (y1 - y0 + 1) / size
    return f"{cls} {(x0 + x1 + 1) / 2 / size:.6f} {(y0 + y1 + 1) / 2 / size:.6f} {w:.6f} {h:.6f}\n"


# ---------------------------------------------------------------------------------------------------------- drawing
def draw_image(
    rng: np.random.Generator,
    size: int,
    max_objects: int,
    size_range: tuple[float, float],
    masks: list | None = None,
) -> tuple[np.ndarray, list]:
    """One BGR image and its labels ``[(class, (x0, y0, x1, y1), size), ...]`` (inclusive pixel boxes).

    ``masks``, when given, receives each labelled shape's boolean pixel mask, in label order (the segmentation and
    pose data of ``synthetic_tasks.py`` derive their labels from them; the drawn bytes are the same either way).
    """
    img = _background(rng, size)
    taken: list[tuple[int, int, int, int]] = []
    labels = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        cls = int(rng.integers(len(CLASSES)))
        mask = _place(rng, cls, size, size_range, taken)
        if mask is None:
            continue
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
        img[mask] = _contrasting_colour(rng, img[mask].mean(0))
        taken.append(box)
        labels.append((cls, box, size))
        if masks is not None:
            masks.append(mask)
    noise = rng.normal(0, 8, img.shape)
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8), labels


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A colour gradient with random low-contrast lines and blobs (texture), as uint8 BGR."""
    c0, c1 = rng.uniform(30, 225, 3), rng.uniform(30, 225, 3)
    t = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    img = (c0 * (1 - t) + c1 * t) * np.ones((1, size, 1), np.float32)
    img = np.ascontiguousarray(np.rot90(img, int(rng.integers(4)))).astype(np.uint8)
    for _ in range(int(rng.integers(3, 9))):
        colour = tuple(int(v) for v in np.clip(img.reshape(-1, 3).mean(0) + rng.normal(0, 25, 3), 0, 255))
        p0, p1 = rng.integers(0, size, 2), rng.integers(0, size, 2)
        if rng.random() < 0.5:
            cv2.line(img, tuple(map(int, p0)), tuple(map(int, p1)), colour, int(rng.integers(1, 3)))
        else:
            cv2.circle(img, tuple(map(int, p0)), int(rng.integers(2, 6)), colour, -1)
    return img


def _place(rng: np.random.Generator, cls: int, size: int, size_range: tuple, taken: list) -> np.ndarray | None:
    """A boolean mask of one shape that does not touch any box in ``taken`` (None if none fits)."""
    for _ in range(20):
        side = int(rng.uniform(*size_range) * size)
        x0, y0 = (int(v) for v in rng.integers(1, size - side - 1, 2))
        if all(x0 > b[2] + 1 or x0 + side < b[0] - 1 or y0 > b[3] + 1 or y0 + side < b[1] - 1 for b in taken):
            return _shape_mask(cls, size, x0, y0, side)
    return None


def _shape_mask(cls: int, size: int, x0: int, y0: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    x1, y1, r = x0 + side, y0 + side, side // 2
    name = CLASSES[cls]
    if name == "circle":
        cv2.circle(mask, (x0 + r, y0 + r), r, 1, -1)
    elif name == "square":
        cv2.rectangle(mask, (x0, y0), (x1, y1), 1, -1)
    elif name == "triangle":
        cv2.fillPoly(mask, [np.array([[x0 + r, y0], [x1, y1], [x0, y1]], np.int32)], 1)
    else:  # cross: a plus sign with arms a third of the side thick
        t = max(2, side // 6)
        cv2.rectangle(mask, (x0, y0 + r - t), (x1, y0 + r + t), 1, -1)
        cv2.rectangle(mask, (x0 + r - t, y0), (x0 + r + t, y1), 1, -1)
    return mask.astype(bool)


def _contrasting_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random colour at least 90 (Euclidean, BGR) away from the mean colour it is drawn on."""
    for _ in range(50):
        colour = rng.uniform(0, 255, 3)
        if np.linalg.norm(colour - under) >= 90:
            return colour.astype(np.uint8)
    return (255 - under).astype(np.uint8)
