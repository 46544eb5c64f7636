"""Dataset resolution: ``coco8.yaml`` finds a local COCO8 copy before Ultralytics would try to download it."""

from __future__ import annotations

import os
from pathlib import Path

import yaml as pyyaml

from .errors import UserError

COCO8_NAMES = ("coco8", "coco8.yaml")
SHAPES_NAMES = ("shapes", "shapes.yaml")  # the synthetic sanity dataset, generated on first use
COCO8_ENV = "YOLO_LEAKY_COCO8"


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
    from .loading import is_offline

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

    from . import atomic

    names = pyyaml.safe_load((ROOT / "cfg/datasets/coco8.yaml").read_text())["names"]
    out = Path(out_dir) / "coco8.yaml"
    text = pyyaml.safe_dump({"path": str(root), "train": "images/train", "val": "images/val", "names": names}, sort_keys=False)
    if not out.exists() or out.read_text() != text:
        atomic.write_text(out, text)
    return out


def check_data_yaml(path: Path) -> dict:
    """Refuse a dataset YAML that is missing, has no ``val``, or whose val images folder is empty."""
    if not path.is_file():
        raise UserError(f"dataset YAML {str(path)!r} does not exist; pass data=coco8.yaml or the path to your dataset YAML")
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
            if target.is_dir() and not any(p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp") for p in target.rglob("*")):
                raise UserError(f"dataset {split} folder {str(target)!r} holds no images; check 'path' and '{split}' in {path}")
            if not target.exists():
                raise UserError(f"dataset {split} path {str(target)!r} does not exist; check 'path' and '{split}' in {path}")
    return cfg
