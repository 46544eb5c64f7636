"""Dataset resolution: COCO8 (a local copy first, ``core.offline``), the synthetic shapes of the model's task, a
task's small stock dataset (COCO8-seg, COCO8-pose, DOTA8, ImageNet10), a checked YAML, or a classification folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml as pyyaml
from ultralytics.data.utils import IMG_FORMATS

from ..core.offline import COCO8_NAMES, locate_coco8, write_coco8_yaml
from ..utils.errors import UserError

SHAPES_NAMES = ("shapes", "shapes.yaml")  # the synthetic sanity dataset of the model's task, generated on first use
# each task's small stock dataset (the connected path of ``compare weights=auto``): Ultralytics downloads it by name
TASK_DATA = {
    "detect": "coco8.yaml",
    "segment": "coco8-seg.yaml",
    "pose": "coco8-pose.yaml",
    "obb": "dota8.yaml",
    "classify": "imagenet10",
}


def locate_data(data: str, task: str = "detect") -> str | Path:
    """Find the dataset without writing anything: ``shapes`` (the synthetic data of ``task``), a local COCO8 root
    (Path), a dataset YAML path, a classification folder (``task="classify"``), or the name of a task's stock dataset
    (``TASK_DATA``, ``coco8.yaml``) for Ultralytics to find or download.

    Args:
        data: What the user passed as ``data=``.
        task: The model's task: a classifier's data are a folder of ``train/<class>/`` and ``val/<class>/`` images.

    Raises:
        UserError: For data that is missing or malformed, or a stock dataset that is not here on an offline machine.

    Examples:
        >>> locate_data("shapes", "pose")
        'shapes'
    """
    if str(data) in SHAPES_NAMES:
        return "shapes"
    if str(data) in COCO8_NAMES:
        return locate_coco8()
    if str(data) in TASK_DATA.values() and not Path(data).exists():
        return locate_stock(str(data))
    if task == "classify":
        return str(check_class_folder(Path(data)))
    check_data_yaml(Path(data))
    return str(data)


def locate_stock(name: str) -> str:
    """A task's stock dataset (``TASK_DATA``) by name, for Ultralytics to resolve: already in its ``datasets_dir``,
    or downloaded on first use on a connected machine; offline without it, one line saying so."""
    from ultralytics.utils import SETTINGS

    from ..core.offline import is_offline

    root = Path(SETTINGS["datasets_dir"]) / Path(name).stem
    if root.is_dir() or not is_offline():
        return name
    raise UserError(
        f"dataset {name} is not in {root.parent} and this machine is offline, so Ultralytics cannot download it; "
        f"connect once, or pass data=shapes (the offline stand-in data) or data=<your dataset>"
    )


def check_class_folder(path: Path) -> Path:
    """Refuse a classification dataset that is not a folder holding ``train/`` and ``val/`` class folders of images
    (the layout Ultralytics' ``check_cls_dataset`` reads)."""
    if not path.is_dir():
        raise UserError(
            f"classification data {str(path)!r} is not a folder; pass data=<folder with train/<class>/ and "
            "val/<class>/ images> or data=shapes"
        )
    for split in ("train", "val"):
        if not any(p.suffix[1:].lower() in IMG_FORMATS for p in (path / split).glob("*/*")):
            raise UserError(
                f"classification data {str(path)!r} has no images in {split}/<class>/; put each class's images in "
                f"{split}/<class name>/"
            )
    return path


def resolve_data(data: str, out_dir: str | Path = "runs/data", task: str = "detect") -> str:
    """Return what ``data=`` of ``task``'s trainer takes (a dataset YAML, or a classifier's folder), without a
    download where possible.

    ``coco8``/``coco8.yaml`` resolves to a local copy (see ``coco8_candidates``), for which a dataset YAML is
    written into ``out_dir``; with none, a connected machine falls back to Ultralytics' own download, and an
    offline one stops with a message naming where to put COCO8. ``shapes`` generates the synthetic detection data
    (``synthetic.py``) into ``out_dir/shapes``; another task's synthetic data are its stand-in's
    (``standin.TASKS[task]["data"]``, which ``harness.compare.task_data`` calls: this module sits below
    ``standin``). Any other value must be an existing dataset YAML with ``val`` images, a classifier's folder, or a
    task's stock dataset (``TASK_DATA``).
    """
    source = locate_data(data, task)
    if source == "shapes":
        if task != "detect":
            raise ValueError(f"the synthetic {task} data are standin.TASKS[{task!r}]['data']: a bug")
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
    """Resolve a dataset YAML exactly as Ultralytics does and describe it: image counts, classes per split, digest
    (a classifier's folder: ``class_folder_info``).

        Images are listed with Ultralytics' own ``BaseDataset.get_img_files`` (folders, ``.txt`` lists, relative
        ``path:``) and labels found with ``img2label_paths``, so the counts are the ones training and validation use.

        Returns:
            ``{"val_images", "train_images", "val_instances", "val_instances_of_train_classes", "val_classes",
            "train_classes", "digest"}``; or ``{"unknown": reason}`` when the dataset cannot be resolved offline.

        Examples:
            >>> info = dataset_info("runs/data/coco8.yaml")  # doctest: +SKIP
            >>> info["val_images"]  # doctest: +SKIP
            4
    """
    if Path(data).is_dir():
        return class_folder_info(Path(data))
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


def class_folder_info(root: Path) -> dict:
    """``dataset_info`` of a classifier's folder (``train/<class>/``, ``val/<class>/``): an instance is an image,
    its class its folder's name; the digest covers every image's split, class, name and bytes.

    Examples:
        >>> class_folder_info(Path("runs/compare/quick/crops"))["val_classes"]  # doctest: +SKIP
        ['circle', 'cross', 'square', 'triangle']
    """
    digest = hashlib.sha256()
    counts: dict[str, dict[str, int]] = {}
    for split in ("train", "val"):
        counts[split] = {}
        for image in sorted((root / split).glob("*/*")):
            if image.suffix[1:].lower() not in IMG_FORMATS:
                continue
            cls = image.parent.name
            counts[split][cls] = counts[split].get(cls, 0) + 1
            digest.update(f"{split}\0{cls}\0{image.name}\0".encode() + hashlib.sha256(image.read_bytes()).digest())
    return {
        "val_images": sum(counts["val"].values()),
        "train_images": sum(counts["train"].values()),
        "val_instances": sum(counts["val"].values()),
        "val_instances_of_train_classes": sum(n for c, n in counts["val"].items() if c in counts["train"]),
        "val_classes": sorted(counts["val"]),
        "train_classes": sorted(counts["train"]),
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
