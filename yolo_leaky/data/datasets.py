"""Dataset resolution: COCO8 (a local copy first, ``core.offline``), the synthetic shapes, or a checked YAML."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml as pyyaml
from ultralytics.data.utils import IMG_FORMATS

from ..core.offline import COCO8_NAMES, locate_coco8, write_coco8_yaml
from ..utils.errors import UserError

SHAPES_NAMES = ("shapes", "shapes.yaml")  # the synthetic sanity dataset, generated on first use


def locate_data(data: str) -> str | Path:
    """Find the dataset without writing anything: a local COCO8 root (Path), a dataset YAML path, or
    ``coco8.yaml`` for Ultralytics to download on a connected machine. Raises ``UserError`` otherwise."""
    if str(data) in SHAPES_NAMES:
        return "shapes"
    if str(data) in COCO8_NAMES:
        return locate_coco8()
    check_data_yaml(Path(data))
    return str(data)


def resolve_data(data: str, out_dir: str | Path = "runs/data") -> str:
    """Return a dataset YAML path that trains and validates without a download where possible.

    ``coco8``/``coco8.yaml`` resolves to a local copy (see ``coco8_candidates``), for which a dataset YAML is
    written into ``out_dir``; with none, a connected machine falls back to Ultralytics' own download, and an
    offline one stops with a message naming where to put COCO8. ``shapes`` generates the synthetic sanity dataset
    (``synthetic.py``) into ``out_dir/shapes``. Any other value must be an existing dataset YAML with ``val`` images.
    """
    source = locate_data(data)
    if source == "shapes":
        from .synthetic import make_shapes_dataset

        return str(make_shapes_dataset(Path(out_dir) / "shapes"))
    return str(write_coco8_yaml(source, out_dir)) if isinstance(source, Path) else source


def check_data_yaml(path: Path) -> dict:
    """Refuse a dataset YAML that is missing, has no ``val``, or whose val images folder is empty."""
    if not path.is_file():
        raise UserError(
            f"dataset YAML {str(path)!r} does not exist; pass data=coco8.yaml or the path to your dataset YAML"
        )
    try:
        cfg = pyyaml.safe_load(path.read_text())
    except pyyaml.YAMLError:
        raise UserError(f"dataset YAML {str(path)!r} has a syntax error; fix the YAML") from None
    if not isinstance(cfg, dict) or not cfg.get("val"):
        raise UserError(f"dataset YAML {str(path)!r} has no 'val' entry; add val: images/val (and train:)")
    root = Path(cfg.get("path") or path.parent)
    if not root.is_absolute():
        root = (path.parent / root).resolve()
    for split in ("train", "val"):
        if not cfg.get(split):
            continue
        for entry in cfg[split] if isinstance(cfg[split], list) else [cfg[split]]:
            target = root / entry
            if target.is_dir() and not any(p.suffix[1:].lower() in IMG_FORMATS for p in target.rglob("*")):
                raise UserError(
                    f"dataset {split} folder {str(target)!r} holds no images; check 'path' and '{split}' in {path}"
                )
            if not target.exists():
                raise UserError(
                    f"dataset {split} path {str(target)!r} does not exist; check 'path' and '{split}' in {path}"
                )
    return cfg


def dataset_info(data: str | Path) -> dict:
    """Resolve a dataset YAML exactly as Ultralytics does and describe it: image counts, classes per split, digest.

    Images are listed with Ultralytics' own ``BaseDataset.get_img_files`` (folders, ``.txt`` lists, relative
    ``path:``) and labels found with ``img2label_paths``, so the counts are the ones training and validation use.

    Returns:
        ``{"val_images", "train_images", "val_instances", "val_instances_of_train_classes", "val_classes",
        "train_classes", "digest"}``; or ``{"unknown": reason}`` when the dataset cannot be resolved offline.

    Examples:
        >>> info = dataset_info("runs/data/coco8.yaml")  # doctest: +SKIP
        >>> info["val_images"]
        4
    """
    from types import SimpleNamespace

    from ultralytics.data.base import BaseDataset
    from ultralytics.data.utils import check_det_dataset, img2label_paths
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel("WARNING")  # get_img_files logs an image-read speed check; this is a look, not a training run
    try:
        cfg = check_det_dataset(str(data), autodownload=False)
        files = {
            split: BaseDataset.get_img_files(SimpleNamespace(prefix="", fraction=1.0), cfg[split])
            for split in ("train", "val")
        }
    except Exception as e:  # Ultralytics raises many types for a dataset it cannot resolve
        return {"unknown": f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:160]}"}
    finally:
        LOGGER.setLevel(level)
    digest = hashlib.sha256()
    classes = {}
    for split, images in files.items():
        counts: dict[int, int] = {}
        for image, label in zip(images, img2label_paths(images)):
            text = Path(label).read_text() if Path(label).is_file() else ""
            digest.update(f"{split}\0{Path(image).name}\0{Path(image).stat().st_size}\0{text}\0".encode())
            for line in text.splitlines():
                if line.strip():
                    counts[int(float(line.split()[0]))] = counts.get(int(float(line.split()[0])), 0) + 1
        classes[split] = counts
    names = cfg["names"]
    return {
        "val_images": len(files["val"]),
        "train_images": len(files["train"]),
        "val_instances": sum(classes["val"].values()),
        "val_instances_of_train_classes": sum(n for c, n in classes["val"].items() if c in classes["train"]),
        "val_classes": sorted(str(names.get(c, c)) for c in classes["val"]),
        "train_classes": sorted(str(names.get(c, c)) for c in classes["train"]),
        "digest": digest.hexdigest(),
    }


def file_digest(path: str | Path | None) -> str | None:
    """SHA-256 of a local file's bytes (a model YAML or checkpoint); None for a stock name resolved by Ultralytics."""
    if not path or not Path(path).is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
