"""Offline awareness for the swap library: whether this machine is offline, and where a local COCO8 copy is.

It sits in the swap library (not in ``data``) because ``attach_trainer`` resolves ``data="coco8.yaml"`` to a local
copy, as the CLI does, and the swap library imports nothing above it.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml as pyyaml

from ..utils import atomic
from ..utils.errors import UserError

COCO8_NAMES = ("coco8", "coco8.yaml")
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
    repo = Path(__file__).resolve().parents[2]
    found = [Path.cwd().parent / "shared/datasets/coco8", repo.parent / "shared/datasets/coco8"]
    found.append(Path(SETTINGS["datasets_dir"]) / "coco8")
    return found


def find_local_coco8() -> Path | None:
    for path in coco8_candidates():
        if (path / "images/val").is_dir() and any((path / "images/val").iterdir()):
            return path.resolve()
    return None


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


def locate_coco8() -> str | Path:
    """A local COCO8 root (Path), or ``coco8.yaml`` for Ultralytics to download on a connected machine; offline with
    no local copy, a ``UserError`` naming where to put it."""
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


def resolve_coco8(out_dir: str | Path = "runs/data") -> str:
    """A COCO8 dataset YAML: written into ``out_dir`` for a local copy, else Ultralytics' own ``coco8.yaml``."""
    source = locate_coco8()
    return str(write_coco8_yaml(source, out_dir)) if isinstance(source, Path) else source
