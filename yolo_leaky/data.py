"""Dataset resolution: ``coco8.yaml`` finds a local COCO8 copy before Ultralytics would try to download it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import yaml as pyyaml
from ultralytics.data.utils import IMG_FORMATS

from . import atomic
from .errors import UserError

COCO8_NAMES = ("coco8", "coco8.yaml")
SHAPES_NAMES = ("shapes", "shapes.yaml")  # the synthetic sanity dataset, generated on first use
COCO8_ENV = "YOLO_LEAKY_COCO8"


def is_offline() -> bool:
    """True when ``YOLO_OFFLINE`` is set or Ultralytics finds no network."""
    from ultralytics.utils import is_online

    return os.environ.get("YOLO_OFFLINE", "").lower() in ("1", "true", "yes") or not is_online()


def coco8_candidates() -> list[Path]:
    """Where a local COCO8 may be: $YOLO_LEAKY_COCO8, ../shared/datasets/coco8 (beside the checkout or cwd), and
    Ultralytics' datasets_dir."""
    from ultralytics.utils import SETTINGS

    if os.environ.get(COCO8_ENV):
        return [Path(os.environ[COCO8_ENV])]  # an explicit location is the only one looked at
    repo = Path(__file__).resolve().parents[1]
    found = [Path.cwd().parent / "shared/datasets/coco8", repo.parent / "shared/datasets/coco8"]
    found.append(Path(SETTINGS["datasets_dir"]) / "coco8")
    return found


def find_local_coco8() -> Path | None:
    for path in coco8_candidates():
        if (path / "images/val").is_dir() and any((path / "images/val").iterdir()):
            return path.resolve()
    return None


def locate_data(data: str) -> str | Path:
    """Find the dataset without writing anything: a local COCO8 root (Path), a dataset YAML path, or
    ``coco8.yaml`` for Ultralytics to download on a connected machine. Raises ``UserError`` otherwise."""
    if str(data) in SHAPES_NAMES:
        return "shapes"
    if str(data) in COCO8_NAMES:
        local = find_local_coco8()
        if local is not None:
            return local
        if not is_offline():
            return "coco8.yaml"
        looked = ", ".join(str(p) for p in coco8_candidates())
        raise UserError(
            f"COCO8 not found (looked in {looked}) and this machine is offline; put it at ../shared/datasets/coco8 "
            f"(images/ and labels/ with train/ and val/) or set {COCO8_ENV}=/path/to/coco8"
        )
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


def write_coco8_yaml(root: Path, out_dir: str | Path) -> Path:
    """Write a COCO8 dataset YAML pointing at ``root``, with Ultralytics' class names and no download key."""
    from ultralytics.utils import ROOT

    names = pyyaml.safe_load((ROOT / "cfg/datasets/coco8.yaml").read_text())["names"]
    out = Path(out_dir) / "coco8.yaml"
    text = pyyaml.safe_dump(
        {"path": str(root), "train": "images/train", "val": "images/val", "names": names}, sort_keys=False
    )
    if not out.exists() or out.read_text() != text:
        atomic.write_text(out, text)
    return out


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
