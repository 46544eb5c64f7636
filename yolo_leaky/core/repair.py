"""Training-free repairs applied right after a swap, on calibration images from the training split.

A swap keeps every weight but changes every activation's output, most for negative inputs: SiLU's minimum is
-0.278, while LeakyReLU(0.1) keeps 0.1·x and PReLU starts at 0.25·x for any x. Two repairs need no gradient step:

* ``fit``: per-channel PReLU slopes fitted by least squares to SiLU on the pre-activations that the SiLU network
  sees on calibration images. For x >= 0 PReLU is x whatever the slope, so only x < 0 matters and the fit has a
  closed form, per channel: ``a = sum(x * silu(x)) / sum(x * x)`` over the negative pre-activations. ReLU and a
  fixed-slope LeakyReLU have no free parameter: the fit leaves them unchanged (``ls_leaky_slope`` reports which
  single slope would have matched SiLU best, for information only).
* ``bn``: BatchNorm running statistics re-estimated on the calibration images (cumulative average, eval-mode
  everything else): the mean and variance shift that the new activation causes downstream are measured instead
  of carried over from the SiLU network.

Calibration images come from the *training* split, preprocessed as Ultralytics' validator preprocesses them
(``calibration_set``, shared with INT8 calibration; each seed of a run draws its own), so the validation images that
score a repair never compute it.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .spec import ActSpec
from .swap import network_of, swap_activations

REPAIRS = ("none", "bn", "fit", "fit+bn")


def applicable_repair(spec: ActSpec, repair: str) -> str:
    """The part of ``repair`` that applies to activation ``spec``: the slope fit only changes PReLU, so for any other
    activation (SiLU included) ``fit+bn`` is ``bn`` alone and ``fit`` is ``none``.

    Examples:
        >>> from yolo_leaky.core.spec import parse_act
        >>> applicable_repair(parse_act("relu"), "fit+bn"), applicable_repair(parse_act("prelu"), "fit+bn")
        ('bn', 'fit+bn')
    """
    if spec.name != "prelu":
        return repair.replace("fit+", "").replace("fit", "none")
    return repair


def data_task(data_yaml: str | Path) -> str:
    """The task a dataset's own files say it is for, when no model says it: a folder is a classification dataset
    (Ultralytics' ``check_cls_dataset`` rule), a YAML with ``kpt_shape`` a pose dataset, any other YAML ``detect``.

    A segment or OBB YAML reads as ``detect``: its labels (polygons, four corners) parse as detection labels, so the
    same images are kept and preprocessed the same; pass the model's task to read them as its own.

    Examples:
        >>> data_task("coco8-pose.yaml")  # doctest: +SKIP
        'pose'
    """
    if Path(data_yaml).is_dir():
        return "classify"
    from ultralytics.utils import YAML
    from ultralytics.utils.checks import check_yaml

    try:
        cfg = YAML.load(check_yaml(str(data_yaml), hard=False) or str(data_yaml))  # a stock name: Ultralytics' copy
    except (FileNotFoundError, OSError):
        return "detect"  # check_det_dataset names the missing file
    return "pose" if isinstance(cfg, dict) and cfg.get("kpt_shape") else "detect"


def model_task_of(model) -> str:
    """The Ultralytics task of a ``YOLO`` object or its network (``detect``, ``segment``, ``pose``, ``obb``,
    ``classify``), read from the head as Ultralytics' own ``guess_model_task`` reads it.

    Examples:
        >>> from yolo_leaky import load
        >>> model_task_of(load("yolo11n-obb.yaml")), model_task_of(load("yolo11n-cls.yaml").model)
        ('obb', 'classify')
    """
    task = getattr(model, "task", None)
    if isinstance(task, str) and task:
        return task
    from ultralytics.nn.tasks import guess_model_task

    return guess_model_task(network_of(model))


def eval_dataset(data_yaml: str | Path, split: str, imgsz: int, task: str | None = None):
    """Ultralytics' dataset for ``split`` exactly as the task's validator builds it for a static-shape model
    (``rect=False``, no augmentation); returns ``(dataset, resolved data dict)``. ``task`` (the model's task; None:
    ``data_task``) picks the dataset class: a YOLO dataset reading the task's labels (boxes, polygons, keypoints or
    rotated boxes), or for ``classify`` (a folder, Ultralytics' own rule: ``check_cls_dataset`` takes a folder, every
    other task a YAML) the classifier's validator's dataset."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils import LOGGER

    task = task or data_task(data_yaml)
    level = LOGGER.level
    LOGGER.setLevel("WARNING")  # the label scan and image-speed check are not news here
    try:
        if task == "classify" or Path(data_yaml).is_dir():
            return _classify_dataset(data_yaml, split, imgsz)
        data = check_det_dataset(str(data_yaml), autodownload=False)
        cfg = get_cfg(overrides={"imgsz": imgsz, "rect": False, "task": task, "fraction": 1.0})
        return build_yolo_dataset(cfg, data[split], 1, data, mode="val", rect=False), data
    finally:
        LOGGER.setLevel(level)


def _classify_dataset(root: str | Path, split: str, imgsz: int):
    from ultralytics.cfg import get_cfg
    from ultralytics.data.dataset import ClassificationDataset
    from ultralytics.data.utils import check_cls_dataset

    data = check_cls_dataset(str(root), split=split)
    cfg = get_cfg(overrides={"imgsz": imgsz, "task": "classify", "fraction": 1.0})
    dataset = ClassificationDataset(str(data[split]), cfg, augment=False, prefix=split, names=data["names"])
    dataset.im_files = [sample[0] for sample in dataset.samples]  # the attribute detection datasets have
    return dataset, data


def calibration_set(
    data_yaml: str | Path, n: int, imgsz: int, seed: int = 0, task: str | None = None
) -> tuple[list[str], np.ndarray, dict]:
    """The calibration set of one seed of a run: ``n`` training images chosen by a seeded draw among Ultralytics'
    sorted file list, preprocessed exactly as the validator preprocesses them. Seed ``s`` of a run draws with ``s``:
    its repairs and its INT8 calibration both use this set, so the spread over seeds includes the draw.

    Args:
        data_yaml: A dataset YAML that Ultralytics' ``check_det_dataset`` resolves, or a classification dataset's
            folder (``train/<class>/`` images) that ``check_cls_dataset`` resolves.
        n: How many images (all of them when the split is smaller).
        imgsz: Square input size.
        seed: Seed of ``numpy.random.default_rng`` for the draw; the same seed gives the same images.
        task: The model's task, whose dataset class reads the images and labels (None: ``data_task``, right for
            every task's images but a segment or OBB dataset's labels; pass it where the model is known).

    Returns:
        ``(paths, images as float32 (N, 3, imgsz, imgsz) in 0-1 RGB, resolved data dict)``.

    Examples:
        >>> paths, images, data = calibration_set("shapes.yaml", 64, 64)  # doctest: +SKIP
        >>> images.shape, float(images.max()) <= 1.0  # doctest: +SKIP
        ((64, 3, 64, 64), True)
    """
    dataset, data = eval_dataset(data_yaml, "train", imgsz, task)
    count = min(n, len(dataset.im_files))
    picked = np.sort(np.random.default_rng(seed).choice(len(dataset.im_files), size=count, replace=False))
    raw = np.stack([dataset[int(i)]["img"].numpy() for i in picked])
    images = raw.astype(np.float32)
    if raw.dtype == np.uint8:  # YOLO datasets give uint8 images; the classifier's transforms give 0-1 floats
        images = images / 255.0
    return [dataset.im_files[int(i)] for i in picked], images, data


def files_digest(files: list[str]) -> str:
    """SHA-256 over the calibration images' names and bytes: equal digests mean identical calibration sets."""
    h = hashlib.sha256()
    for f in files:
        h.update(Path(f).name.encode() + b"\0" + Path(f).read_bytes())
    return h.hexdigest()


def _silu_probe(silu_model) -> nn.Module:
    """A copy of the SiLU network with one SiLU module per site, at the paths a swap gives its new modules (a stock
    network shares one ``Conv.default_act`` instance between all its sites, which hooks could not tell apart)."""
    probe = copy.deepcopy(network_of(silu_model))
    swap_activations(probe, "silu")
    return probe.eval()


def _activation_inputs(net: nn.Module, images: torch.Tensor, names: set[str], batch: int = 16) -> dict[str, list]:
    """Per-channel sums over the negative pre-activations seen by the modules ``names`` of ``net``:
    ``[sum x*silu(x), sum x*x, count]``."""
    sums: dict[str, list] = {}
    hooks = []

    def hook_for(name):
        def hook(module, inputs, output):
            x = inputs[0].detach()
            if x.dim() != 4:
                return
            neg = x.clamp(max=0.0)
            xs = neg * torch.nn.functional.silu(neg)  # 0 where x >= 0
            acc = sums.setdefault(name, [0.0, 0.0, 0])
            acc[0] = acc[0] + xs.sum(dim=(0, 2, 3)).double()
            acc[1] = acc[1] + (neg * neg).sum(dim=(0, 2, 3)).double()
            acc[2] += int((x < 0).sum())

        return hook

    modules = dict(net.named_modules())
    for name in names:
        hooks.append(modules[name].register_forward_hook(hook_for(name)))
    try:
        with torch.no_grad():
            for i in range(0, len(images), batch):
                net(images[i : i + batch])
    finally:
        for h in hooks:
            h.remove()
    return sums


def fit_prelu_slopes(silu_model, swapped_model, images: torch.Tensor) -> dict:
    """Set every PReLU of ``swapped_model`` to the per-channel least-squares fit of SiLU on calibration images.

    The pre-activations are those of the SiLU network (``silu_model``), site by site: the fit makes each site
    match what the next layer expects, all sites at once.

    Args:
        silu_model: The SiLU network (a YOLO object or its ``nn.Module``), unchanged.
        swapped_model: The same network after a swap to PReLU, changed in place.
        images: A calibration batch (``calibration_batch``).

    Returns:
        ``{"sites": fitted sites, "skipped": sites whose input was not 4-D, "slope_mean", "slope_min", "slope_max"}``.

    Examples:
        >>> silu = load("best.pt")  # doctest: +SKIP
        >>> prelu = load("best.pt", act="prelu")  # doctest: +SKIP
        >>> images = torch.from_numpy(calibration_set("shapes.yaml", 64, 64)[1])  # doctest: +SKIP
        >>> fit_prelu_slopes(silu, prelu, images)["sites"]  # doctest: +SKIP
        77
    """
    silu_net, new_net = _silu_probe(silu_model), network_of(swapped_model).eval()
    prelus = {n: m for n, m in new_net.named_modules() if isinstance(m, nn.PReLU)}
    silu_modules = dict(silu_net.named_modules())
    sums = _activation_inputs(silu_net, images, {n for n in prelus if n in silu_modules})
    slopes = []
    for name, module in prelus.items():
        acc = sums.get(name)
        if acc is None or acc[2] == 0 or module.weight.numel() != len(acc[0]):
            continue
        a = torch.where(acc[1] > 0, acc[0] / acc[1].clamp(min=1e-12), torch.full_like(acc[0], 0.25))
        with torch.no_grad():
            module.weight.copy_(a.to(module.weight.dtype))
        slopes.append(a.float())
    every = torch.cat(slopes) if slopes else torch.zeros(0)
    return {
        "sites": len(slopes),
        "skipped": len(prelus) - len(slopes),
        "slope_mean": float(every.mean()) if len(every) else None,
        "slope_min": float(every.min()) if len(every) else None,
        "slope_max": float(every.max()) if len(every) else None,
    }


def ls_leaky_slope(silu_model, images: torch.Tensor) -> float | None:
    """The one LeakyReLU slope that best matches SiLU (least squares, every site and channel pooled)."""
    net = _silu_probe(silu_model)
    names = {n for n, m in net.named_modules() if isinstance(m, nn.SiLU)}
    sums = _activation_inputs(net, images, names)
    num = sum(float(s[0].sum()) for s in sums.values())
    den = sum(float(s[1].sum()) for s in sums.values())
    return num / den if den > 0 else None


def reestimate_batchnorm(model, images: torch.Tensor, batch: int = 16) -> int:
    """Recompute every BatchNorm's running mean and variance on ``images`` (no gradient step); returns how many.

    Each BatchNorm averages over all calibration batches (``momentum=None``), every other layer runs in eval mode.
    A network whose BatchNorms were already folded into its convolutions (``fuse()``) has none to re-estimate.
    """
    net = network_of(model)
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    net.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        with torch.no_grad():
            for i in range(0, len(images), batch):
                net(images[i : i + batch])
    finally:
        for m, momentum in zip(bns, saved):
            m.momentum = momentum
        net.eval()
    return len(bns)


def repaired(silu_model, swapped_model, repair: str, images: torch.Tensor) -> tuple[object, dict]:
    """A deep copy of ``swapped_model`` with ``repair`` applied (one of ``REPAIRS``), and what was done."""
    if repair not in REPAIRS:
        raise ValueError(f"repair must be one of {REPAIRS}, got {repair!r}")
    model = copy.deepcopy(swapped_model)
    done: dict = {"repair": repair}
    if "fit" in repair:
        done["fit"] = fit_prelu_slopes(silu_model, model, images)
    if "bn" in repair:
        done["bn_layers"] = reestimate_batchnorm(model, images)
    return model, done


def repair_swap(
    silu_model, swapped_model, spec: ActSpec, repair: str, data_yaml: str | Path, n: int, imgsz: int, seed: int
) -> tuple[object, dict]:
    """Repair one swapped network as ``compare`` repairs the start of a recovery cell: ``applicable_repair`` of
    ``repair``, calibrated on ``calibration_set(data_yaml, n, imgsz, seed)`` read by the network's own task's dataset.

    Args:
        silu_model: The SiLU network the swap started from (used by ``fit``).
        swapped_model: The swapped network (a YOLO object or its ``nn.Module``); left unchanged.
        spec: The activation swapped in.
        repair: One of ``REPAIRS``.
        data_yaml: The dataset YAML (a classifier: its folder) whose training split calibrates the repair.
        n: Calibration images.
        imgsz: Square input size of the calibration images (the training size).
        seed: The draw's seed (a run's training seed).

    Returns:
        ``(repaired copy, record)``; the record says what was asked and applied, what each repair did, and which
        images calibrated it (``calibration``: count, seed, imgsz, data, file names and ``files_digest``).

    Examples:
        >>> silu, relu = load("best.pt"), load("best.pt", act="relu")  # doctest: +SKIP
        >>> model, done = repair_swap(silu, relu, parse_act("relu"), "fit+bn", "s.yaml", 64, 64, 0)  # doctest: +SKIP
        >>> done["repair"]  # doctest: +SKIP
        'bn'
    """
    applied = applicable_repair(spec, repair)
    if applied == "none":
        return copy.deepcopy(swapped_model), {"asked": repair, "act": str(spec), "repair": "none"}
    files, array, _ = calibration_set(data_yaml, n=n, imgsz=imgsz, seed=seed, task=model_task_of(swapped_model))
    model, done = repaired(silu_model, swapped_model, applied, torch.from_numpy(array))
    calibration = {
        "images": len(files),
        "seed": seed,
        "imgsz": imgsz,
        "data": str(data_yaml),
        "digest": files_digest(files),
        "files": [Path(f).name for f in files],
    }
    return model, {"asked": repair, "act": str(spec), **done, "calibration": calibration}
