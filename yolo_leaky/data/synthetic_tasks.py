"""The synthetic shapes data for Ultralytics' other box tasks: segmentation, pose and oriented boxes (OBB).

Each is drawn by ``synthetic.py``'s own drawing (background, shape masks, colours, noise) with labels derived from
the exact drawn pixels, generated, digested and reused exactly as the detection data are (same bytes for a seed):

- ``segment``: the detection images, byte for byte; each shape's label is its outline polygon, the centres of its
  boundary pixels in order (``cv2.findContours``), so filling the polygon gives back the drawn mask exactly.
- ``pose``: the detection images; each shape keeps its detection box plus five keypoints (``KEYPOINTS``): its
  centroid, then the middle of its topmost row, rightmost column, bottommost row and leftmost column. They are
  defined for every shape (a square's "top" is its top edge's middle, a triangle's is its apex) and lie on it;
  a horizontal flip swaps right and left (``FLIP_IDX``).
- ``obb``: shapes stretched (width 0.5-1 of their height) and rotated by a random angle; each label is the shape's
  tight box rotated with it, four corners in Ultralytics' normalized ``x1 y1 ... x4 y4`` OBB format.

Coordinates are pixel-centre based: pixel ``(x, y)`` spans ``[x, x+1)``, its centre is ``x + 0.5``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .synthetic import (
    _background,
    _contrasting_colour,
    _generate,
    _label_line,
    _params,
    _reusable,
    _shape_mask,
    _write_yaml,
    draw_image,
)

TASK_FORMAT_VERSION = 1
TASKS = ("segment", "pose", "obb")
KEYPOINTS = ("centre", "top", "right", "bottom", "left")
KPT_SHAPE = [len(KEYPOINTS), 3]  # x, y, visibility (always 2: every keypoint lies on its visible shape)
FLIP_IDX = [0, 1, 4, 3, 2]  # after a left-right flip: centre, top and bottom stay; right and left swap
ASPECT_RANGE = (0.5, 1.0)  # OBB shapes' width as a fraction of their height: a box whose angle is visible


def make_task_dataset(
    root: str | Path,
    task: str,
    n_train: int = 256,
    n_val: int = 64,
    imgsz: int = 64,
    n_tune: int = 64,
    seed: int = 0,
    max_objects: int = 2,
    size_range: tuple[float, float] = (0.3, 0.55),
) -> Path:
    """Generate (or reuse) the shapes dataset for ``task`` under ``root`` and return its dataset YAML.

    Args:
        root: Folder for ``images/``, ``labels/``, the manifest and ``shapes-<task>.yaml``.
        task: ``segment``, ``pose`` or ``obb``.
        n_train: Training images.
        n_val: Validation images.
        imgsz: Side of the square images, 64 to 160 px.
        n_tune: Tuning images (0: none), drawn from a third stream.
        seed: RNG seed; train, val and tune use independent streams derived from it.
        max_objects: At most this many shapes per image (at least one).
        size_range: Shape side (OBB: height) as a fraction of ``imgsz``, (low, high).

    Returns:
        Path of the dataset YAML (pose adds ``kpt_shape`` and ``flip_idx``).

    Examples:
        >>> import tempfile
        >>> yaml_path = make_task_dataset(tempfile.mkdtemp(), "pose", n_train=2, n_val=1, n_tune=0)
        >>> yaml_path.name
        'shapes-pose.yaml'
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    root = Path(root).resolve()
    params = {
        **_params(n_train, n_val, imgsz, n_tune, seed, max_objects, size_range),
        "task": task,
        "task_version": TASK_FORMAT_VERSION,
    }
    if not _reusable(root, params):
        _generate(root, params, draw=DRAW[task])
    extra = {"kpt_shape": KPT_SHAPE, "flip_idx": FLIP_IDX} if task == "pose" else None
    return _write_yaml(root, name=f"shapes-{task}.yaml", extra=extra)


# ------------------------------------------------------------------------------------------------------ labels
def outline(mask: np.ndarray) -> np.ndarray:
    """The outline polygon of one shape's mask: boundary pixel coordinates ``(N, 2)`` (x, y), in order.

    Examples:
        >>> m = np.zeros((8, 8), bool); m[2:5, 3:7] = True
        >>> outline(m).tolist()
        [[3, 2], [3, 4], [6, 4], [6, 2]]
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return max(contours, key=len).reshape(-1, 2)  # a drawn shape is one connected piece


def keypoints(mask: np.ndarray) -> np.ndarray:
    """The five keypoints of ``KEYPOINTS`` of one shape's mask, ``(5, 2)`` pixel coordinates (x, y).

    Examples:
        >>> m = np.zeros((8, 8), bool); m[2:5, 3:6] = True
        >>> keypoints(m).tolist()
        [[4.0, 3.0], [4.0, 2.0], [5.0, 3.0], [4.0, 4.0], [3.0, 3.0]]
    """
    ys, xs = np.nonzero(mask)
    top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
    return np.array(
        [
            [xs.mean(), ys.mean()],
            [xs[ys == top].mean(), top],
            [right, ys[xs == right].mean()],
            [xs[ys == bottom].mean(), bottom],
            [left, ys[xs == left].mean()],
        ]
    )


def _points(pts: np.ndarray, size: int) -> str:
    """Pixel coordinates as normalized ``x y`` pairs of their pixel centres."""
    return " ".join(f"{(x + 0.5) / size:.6f} {(y + 0.5) / size:.6f}" for x, y in pts)


def _draw_segment(rng: np.random.Generator, params: dict) -> tuple[np.ndarray, str]:
    masks: list = []
    img, labels = draw_image(rng, params["imgsz"], params["max_objects"], tuple(params["size_range"]), masks)
    size = params["imgsz"]
    return img, "".join(f"{cls} {_points(outline(m), size)}\n" for (cls, _, _), m in zip(labels, masks))


def _draw_pose(rng: np.random.Generator, params: dict) -> tuple[np.ndarray, str]:
    masks: list = []
    img, labels = draw_image(rng, params["imgsz"], params["max_objects"], tuple(params["size_range"]), masks)
    size = params["imgsz"]
    lines = []
    for (cls, box, _), m in zip(labels, masks):
        kpts = " ".join(f"{(x + 0.5) / size:.6f} {(y + 0.5) / size:.6f} 2" for x, y in keypoints(m))
        lines.append(f"{_label_line(cls, box, size)[:-1]} {kpts}\n")
    return img, "".join(lines)


# --------------------------------------------------------------------------------------------------------- OBB
def draw_rotated_image(
    rng: np.random.Generator,
    size: int,
    max_objects: int,
    size_range: tuple[float, float],
    masks: list | None = None,
) -> tuple[np.ndarray, list]:
    """One BGR image of stretched, rotated shapes and their labels ``[(class, corners (4, 2)), ...]``.

    Corners are in continuous image coordinates (a pixel's centre at ``+0.5``), in order around the box; every
    pixel of the shape lies inside them and each side touches it. ``masks``, when given, receives each shape's mask.
    """
    img = _background(rng, size)
    taken: list[tuple[float, float, float, float]] = []
    labels = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        cls = int(rng.integers(4))
        placed = _place_rotated(rng, cls, size, size_range, taken)
        if placed is None:
            continue
        mask, corners = placed
        img[mask] = _contrasting_colour(rng, img[mask].mean(0))
        taken.append((*corners.min(0), *corners.max(0)))
        labels.append((cls, corners))
        if masks is not None:
            masks.append(mask)
    noise = rng.normal(0, 8, img.shape)
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8), labels


def _place_rotated(rng: np.random.Generator, cls: int, size: int, size_range: tuple, taken: list):
    """``(mask, corners)`` of one stretched, rotated shape clear of every box in ``taken`` (None if none fits)."""
    for _ in range(20):
        side = int(rng.uniform(*size_range) * size)
        aspect, angle = rng.uniform(*ASPECT_RANGE), rng.uniform(0, np.pi)
        local = _shape_mask(cls, side + 1, 0, 0, side)
        ys, xs = np.nonzero(local)
        # the shape's tight box in local continuous coordinates (local pixel x spans [x, x+1))
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        box = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)
        centre = box.mean(0)
        c, s = np.cos(angle), np.sin(angle)
        linear = np.array([[c, -s], [s, c]]) @ np.diag([aspect, 1.0])
        rel = (box - centre) @ linear.T  # corners around the placed centre
        lo, hi = rel.min(0), rel.max(0)
        if (hi - lo > size - 3).any():
            continue
        at = np.array([rng.uniform(1 - lo[0], size - 2 - hi[0]), rng.uniform(1 - lo[1], size - 2 - hi[1])])
        bx0, by0, bx1, by1 = (*(at + lo), *(at + hi))
        if not all(bx0 > b[2] + 1 or bx1 < b[0] - 1 or by0 > b[3] + 1 or by1 < b[1] - 1 for b in taken):
            continue
        # nearest-pixel inverse mapping: an image pixel is set when its centre maps into a drawn local pixel
        v, u = np.mgrid[0:size, 0:size].astype(float)
        src = (np.stack([u.ravel(), v.ravel()], 1) + 0.5 - at) @ np.linalg.inv(linear).T + centre
        sx, sy = np.floor(src[:, 0]).astype(int), np.floor(src[:, 1]).astype(int)
        inside = (sx >= 0) & (sx <= side) & (sy >= 0) & (sy <= side)
        hit = np.zeros(size * size, bool)
        hit[inside] = local[sy[inside], sx[inside]]
        mask = hit.reshape(size, size)
        if mask.any():
            return mask, rel + at
    return None


def _draw_obb(rng: np.random.Generator, params: dict) -> tuple[np.ndarray, str]:
    size = params["imgsz"]
    img, labels = draw_rotated_image(rng, size, params["max_objects"], tuple(params["size_range"]))
    lines = (f"{cls} " + " ".join(f"{v / size:.6f}" for v in corners.ravel()) + "\n" for cls, corners in labels)
    return img, "".join(lines)


DRAW = {"segment": _draw_segment, "pose": _draw_pose, "obb": _draw_obb}
