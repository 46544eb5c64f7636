"""Unit health: dead / negative-only channels, vanishing gradients and PReLU slope drift, site by site.

A ReLU channel whose input is <= 0 at every position of every image outputs zeros and passes no gradient to the
weights feeding it: it is *dead*. The same count for LeakyReLU/PReLU/SiLU is reported as *negative-only*: those
units still pass (scaled) gradient, so a high value there is not fatal, but it says how much of the network works
on the leaky part of the curve.

All measurements run on a private deep copy of the network, so BatchNorm statistics, ``.grad`` fields and in-place
flags of the caller's model are left untouched, and a callback never disturbs a training run (RNG state included).
"""

from __future__ import annotations

import copy
import random
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.repair import model_task_of
from ..core.spec import DEFAULT_PRELU_INIT
from ..core.swap import (
    YAML_KEY,
    child_slots,
    in_loss_only,
    is_activation_module,
    network_of,
    prelu_stats,
    spec_from_yaml,
    trained_network,
)
from ..core.tasks import TASKS
from ..data.datasets import resolve_data
from ..utils import atomic
from ..utils.errors import UserError

# A channel's gradient counts as ~0 when its mean |g| over batch and positions is below this. Measured with
# Ultralytics' loss on yolo11n at imgsz 64 (log10 histograms of per-channel mean |dL/d output|):
# - fresh ReLU/SiLU init, COCO8, batch 4: live channels 5.8e-6 and up (median ~6e-3); idle ones (box branches at a
#   stride with no assigned anchor) 1e-30..4e-11;
# - trained 16 epochs on the shapes set (relu / silu), batch 8: live channels 1e-5 and up (most 1e-4..1e-2); idle
#   ones (the stride-32 branch, whose class logits saturate on background) 1e-10..1e-6, with 0 (relu) / 60 of 7048
#   (silu) channels between 1e-6 and 1e-5.
# 1e-6 separates the two groups in all of these: it flags channels getting ~100x less than a typical live one.
# A dead ReLU's input gradient is exactly 0.
GRAD_EPS = 1e-6
# the loss gains of Ultralytics 8.4's task losses (detect, segment, pose, obb; classify has none), kept from the
# checkpoint's training arguments so the gradient is the one its training took
LOSS_GAINS = ("box", "cls", "dfl", "pose", "kobj", "rle", "angle")
RELU_LIKE = (nn.ReLU, nn.ReLU6)  # zero output and zero gradient for every input <= 0
RELU_LIKE_MEDIAN = 0.05  # PReLU site median slope below this: drifted towards ReLU
LINEAR_MEDIAN = 0.9  # above this: drifted towards the identity (the unit is nearly linear)


# ---------------------------------------------------------------------------------------------------------- sites
def activation_sites(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every activation site as ``(path, module)``, in module order; a shared instance appears once per site.

    Sites are modules of an activation type (SiLU, ReLU, LeakyReLU, PReLU, Hardswish, ReLU6) or modules our swap
    installed (marked ``_yolo_leaky_site``, e.g. Identity); anything inside a loss-only helper (RealNVP) is skipped.
    """
    return [
        (path, child)
        for path, _, _, child in child_slots(net)
        if is_activation_module(child) and not in_loss_only(net, path)
    ]


def _private_copy(net: nn.Module) -> tuple[nn.Module, list[tuple[str, nn.Module]]]:
    """Deep-copy ``net`` without its forward hooks, give each site its own out-of-place module, and return the copy
    with its sites."""
    # The caller's forward hooks stay with the caller: distillation's feature hooks hold the last batch's features,
    # non-leaf tensors that cannot be deep-copied, and a measurement must not feed them.
    net = copy.deepcopy(net, {id(m._forward_hooks): OrderedDict() for m in net.modules()})
    seen: set[int] = set()
    for path, module in activation_sites(net):
        if id(module) in seen:  # a shared instance (stock Conv.default_act): one clone per site, so hooks see one site
            module = copy.deepcopy(module)
            parent_path, _, name = path.rpartition(".")
            setattr(net.get_submodule(parent_path) if parent_path else net, name, module)
        seen.add(id(module))
        if getattr(module, "inplace", False):
            module.inplace = False  # so a hook sees the true input and output as two tensors
    for p in net.parameters():
        p.grad = None
    net.float().requires_grad_(True)  # loaded checkpoints come frozen (and may be half); the copy must backprop
    return net, activation_sites(net)


def _channel_view(t: torch.Tensor) -> torch.Tensor:
    """``t`` as (channels, everything else): NCHW keeps dim 1, token layouts (.., C) keep the last dim."""
    t = t.detach().float()
    return t.transpose(0, 1).flatten(1) if t.dim() == 4 else t.reshape(-1, t.shape[-1]).t()


# ---------------------------------------------------------------------------------------------------------- data
def _data_dict(data: str | Path | dict, task: str) -> dict:
    """Resolve a dataset YAML (or ``coco8``), or a classifier's dataset folder, to Ultralytics' checked dataset dict,
    never downloading."""
    if isinstance(data, dict):
        return data
    from ultralytics.data.utils import check_cls_dataset, check_det_dataset

    if task == "classify":
        if not Path(data).is_dir():
            raise UserError(f"dataset {str(data)!r} is not a folder; a classifier needs a folder with train/ and val/")
        return check_cls_dataset(str(data))
    try:
        return check_det_dataset(resolve_data(str(data)), autodownload=False)
    except (FileNotFoundError, SyntaxError, TypeError) as e:
        msg = f"dataset {data!r} could not be read ({e}); pass a dataset YAML with train/val images"
        raise UserError(msg) from None


def _dataset(data: dict, split: str, imgsz: int, task: str):
    """Ultralytics' own dataset of ``task`` for ``split``, letterboxed to ``imgsz`` without augmentation: the
    task's labels (masks, keypoints, rotated boxes) come with the images, as its trainer's loss needs them."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data.build import build_yolo_dataset
    from ultralytics.data.dataset import ClassificationDataset

    if not data.get(split):
        raise UserError(f"dataset has no {split!r} images; add {split}: to the dataset YAML")
    cfg = get_cfg(overrides={"imgsz": imgsz, "task": task, "rect": False, "cache": False, "fraction": 1.0})
    if task == "classify":  # augment=False: the classifier's validation transforms
        return ClassificationDataset(str(data[split]), cfg, augment=False, prefix=split, names=data["names"])
    return build_yolo_dataset(cfg, data[split], 1, data, mode="val", stride=32)  # mode != train: no augment


def _batches(dataset, batch: int, max_images: int, device: torch.device):
    """Yield the first ``max_images`` samples of ``dataset`` in order, ``batch`` at a time, collated by the dataset's
    own ``collate_fn`` (per-instance labels carry their image's index) and preprocessed as the task's validator
    does: every tensor on ``device``, images float in [0, 1] (a YOLO dataset's uint8 divided by 255; the
    classifier's transforms give floats already)."""
    from torch.utils.data import default_collate

    collate = getattr(dataset, "collate_fn", None) or default_collate
    for start in range(0, min(max_images, len(dataset)), batch):
        items = [dataset[i] for i in range(start, min(start + batch, max_images, len(dataset)))]
        b = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in collate(items).items()}
        b["img"] = b["img"].float() / 255 if b["img"].dtype == torch.uint8 else b["img"].float()
        yield b


# ---------------------------------------------------------------------------------------------------------- measures
def _negative_only(
    net: nn.Module, sites, data: dict, task: str, imgsz: int, batch: int, max_images: int, device
) -> tuple:
    """Per site path: a bool tensor, True for channels whose input was <= 0 everywhere. Also the image count."""
    peak: dict[str, torch.Tensor] = {}

    def hook_for(path: str):
        def hook(_module, args, _output):
            m = _channel_view(args[0]).amax(1)
            peak[path] = m if path not in peak else torch.maximum(peak[path], m)

        return hook

    handles = [m.register_forward_hook(hook_for(p)) for p, m in sites]
    images = 0
    try:
        net.eval()
        with torch.inference_mode():
            for b in _batches(_dataset(data, "val", imgsz, task), batch, max_images, device):
                net(b["img"])
                images += b["img"].shape[0]
    finally:
        for h in handles:
            h.remove()
    return {p: v <= 0 for p, v in peak.items()}, images


def _near_zero_grad(net: nn.Module, sites, data: dict, task: str, imgsz: int, batch: int, device) -> dict:
    """Per site path: ``(output, input)`` bool tensors, True for channels whose mean |dL/d output| (resp. |dL/d input|)
    on one training batch is below ``GRAD_EPS``."""
    grads: dict[tuple[str, int], torch.Tensor] = {}

    def keeper(key: tuple[str, int]):
        def keep(g: torch.Tensor) -> None:
            m = _channel_view(g).abs().mean(1)
            grads[key] = m if key not in grads else grads[key] + m

        return keep

    def hook_for(path: str):
        def hook(_module, args, output):
            for i, t in enumerate((output, args[0] if args else None)):
                if isinstance(t, torch.Tensor) and t.requires_grad:
                    t.register_hook(keeper((path, i)))

        return hook

    _prepare_loss(net, data)
    b = next(_batches(_dataset(data, "train", imgsz, task), batch, batch, device), None)
    if b is None:
        raise UserError("dataset has no training images to take a gradient on")
    handles = [m.register_forward_hook(hook_for(p)) for p, m in sites]
    try:
        net.train()
        loss, _ = net.loss(b)
        loss.sum().backward()
    finally:
        for h in handles:
            h.remove()
    return {p: tuple(grads[(p, i)] < GRAD_EPS if (p, i) in grads else None for i in (0, 1)) for p, _ in sites}


def _prepare_loss(net: nn.Module, data: dict) -> None:
    """Give the copy what ``model.loss`` needs: hyperparameters as a namespace and labels within its classes."""
    from ultralytics.cfg import get_cfg

    if not hasattr(net, "init_criterion"):
        raise UserError(f"{type(net).__name__} has no Ultralytics loss; pass a YOLO object or an Ultralytics model")
    args = getattr(net, "args", None)
    args = vars(args) if hasattr(args, "__dict__") else dict(args or {})
    # the loss reads its gains as attributes (.box, .pose ...); the mask layout (overlap_mask) stays the default,
    # the one _dataset's masks are built with
    net.args = get_cfg(overrides={k: args[k] for k in LOSS_GAINS if k in args})
    net.criterion = None
    nc = getattr(net, "nc", None) or getattr(net.model[-1], "nc", None)
    if nc is not None and int(data.get("nc", 0)) > nc:
        n = data["nc"]
        raise UserError(f"dataset has {n} classes but the model predicts {nc}; build the model with nc={n}")


# ---------------------------------------------------------------------------------------------------------- public
def unit_health(yolo_or_module, data: str | Path | dict, imgsz: int = 64, batch: int = 4, max_images: int = 16) -> dict:
    """Measure dead / negative-only channels and near-zero gradients at every activation site.

    Args:
        yolo_or_module: An Ultralytics ``YOLO`` object or its network (``nn.Module`` with ``.loss``) of any task in
            ``core.tasks.TASKS``; its head's task picks the dataset class and the loss (masks, keypoints, rotated
            boxes or class labels come with the batch).
        data: A dataset YAML path (``coco8`` resolves to a local copy), a classifier's dataset folder, or
            Ultralytics' dataset dict.
        imgsz: Letterbox size of the images.
        batch: Batch size, for the eval pass and for the one training batch.
        max_images: Validation images to run for the dead / negative-only count.

    Returns:
        A JSON-able dict: ``per_layer`` (one entry per site: ``site``, ``type``, ``measure``, ``channels``,
        ``dead_or_negative_only``, ``near_zero_grad``, ``near_zero_grad_input``), ``total`` (channel-weighted
        fractions and counts), ``measure`` (``dead`` when every site is ReLU/ReLU6, else ``negative_only``) and the
        settings used. ``dead_or_negative_only`` is the fraction of channels whose activation input was <= 0 at every
        position of every image (eval mode). ``near_zero_grad`` is the fraction whose mean |dL/d activation output|
        over one un-augmented training batch (train mode, Ultralytics' loss) is below ``GRAD_EPS``: nothing
        downstream asks that unit for anything. ``near_zero_grad_input`` is the same for |dL/d activation input|,
        the gradient that reaches the conv/BN weights feeding the unit: a dead ReLU gives exactly 0 there.
    """
    source = network_of(yolo_or_module)
    task = model_task_of(yolo_or_module)
    if task not in TASKS:
        raise UserError(f"unit health measures {', '.join(TASKS)} models, not {task}; pass a model of one of those")
    device = next(source.parameters()).device
    d = _data_dict(data, task)
    net, sites = _private_copy(source)
    if not sites:
        raise UserError("the model has no activation sites to measure")
    negative, images = _negative_only(net, sites, d, task, imgsz, batch, max_images, device)
    zero_grad = _near_zero_grad(net, sites, d, task, imgsz, batch, device)  # eval pass changed nothing in the copy
    per_layer = [_layer_entry(p, m, negative.get(p), *zero_grad[p]) for p, m in sites]
    return {
        "measure": "dead" if all(isinstance(m, RELU_LIKE) for _, m in sites) else "negative_only",
        "per_layer": per_layer,
        "total": _total(per_layer),
        "images": images,
        "imgsz": imgsz,
        "grad_threshold": GRAD_EPS,
    }


def _layer_entry(path: str, module: nn.Module, negative, zero, zero_in) -> dict:
    channels = next((int(t.numel()) for t in (negative, zero, zero_in) if t is not None), 0)
    return {
        "site": path,
        "type": type(module).__name__,
        "measure": "dead" if isinstance(module, RELU_LIKE) else "negative_only",
        "channels": channels,
        "dead_or_negative_only": _fraction(negative),
        "near_zero_grad": _fraction(zero),
        "near_zero_grad_input": _fraction(zero_in),
    }


def _fraction(mask: torch.Tensor | None) -> float | None:
    return None if mask is None or mask.numel() == 0 else round(float(mask.float().mean()), 6)


def _total(per_layer: list[dict]) -> dict:
    """Channel-weighted totals over sites, plus how many sites are fully affected."""
    out: dict = {"sites": len(per_layer), "channels": sum(e["channels"] for e in per_layer)}
    for key in ("dead_or_negative_only", "near_zero_grad", "near_zero_grad_input"):
        rows = [e for e in per_layer if e[key] is not None]
        n = sum(e["channels"] for e in rows)
        hits = sum(e[key] * e["channels"] for e in rows)
        out[key] = round(hits / n, 6) if n else None
        out[f"{key}_channels"] = int(round(hits))
        out[f"{key}_sites_all"] = sum(e[key] == 1.0 for e in rows)
    return out


def format_unit_health(d: dict, top: int = 10) -> str:
    """Human-readable unit-health table: totals first, then the ``top`` worst sites.

    Args:
        d: A dict from ``unit_health``.
        top: How many sites to list.
    """
    t, word = d["total"], d["measure"].replace("_", "-")
    grad, grad_in = (_pct(t.get(k)) for k in ("near_zero_grad", "near_zero_grad_input"))
    lines = [
        f"unit health ({d.get('images', '?')} val images at {d.get('imgsz', '?')} px): "
        f"{t['sites']} sites, {t['channels']} channels",
        f"  {word}: {t['dead_or_negative_only']:.1%} of channels ({t['dead_or_negative_only_channels']}), "
        f"{t['dead_or_negative_only_sites_all']} sites entirely",
        f"  near-zero gradient (mean |g| < {d.get('grad_threshold', GRAD_EPS):g}, one training batch): "
        f"{grad} of channels at the output, {grad_in} at the input",
    ]
    worst = [e for e in sorted(d["per_layer"], key=_badness, reverse=True)[:top] if any(_badness(e))]
    if worst:
        lines.append(f"  worst sites ({word} | near-zero grad at output / input; zero output grad = idle downstream):")
        for e in worst:
            g = f"{_pct(e['near_zero_grad'])} / {_pct(e.get('near_zero_grad_input'))}"
            frac = _pct(e["dead_or_negative_only"])
            lines.append(f"    {e['site']:<28} {e['type']:<10} {e['channels']:>4} ch  {frac:>6} | {g}")
    return "\n".join(lines)


def _badness(e: dict) -> tuple[float, float]:
    return e["dead_or_negative_only"] or 0.0, e.get("near_zero_grad_input") or 0.0


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


# ---------------------------------------------------------------------------------------------------------- PReLU
def prelu_slopes(yolo_or_module) -> list[dict]:
    """Per PReLU site: slope statistics and where the slopes drifted from their init.

    Returns:
        One dict per site: ``site``, ``n``, ``init``, ``min``, ``median``, ``max``, ``shift`` (median - init),
        ``drift`` (the site's class by its median: ``negative`` < 0, ``relu_like`` < 0.05, ``linear`` > 0.9, else
        ``moderate``) and ``counts`` (the same classes counted slope by slope).
    """
    net = network_of(yolo_or_module)
    init = _prelu_init(net)
    seen: set[int] = set()
    out = []
    for path, module in activation_sites(net):
        if isinstance(module, nn.PReLU) and id(module) not in seen:
            seen.add(id(module))
            out.append(_slope_entry(path, module.weight.detach().float().flatten().cpu(), init))
    return out


def _prelu_init(net: nn.Module) -> float:
    """The init recorded in the model YAML by our swap (``prelu:0.1``), else torch's default 0.25."""
    try:
        spec = spec_from_yaml({YAML_KEY: getattr(net, "yaml", {}).get(YAML_KEY)})
    except (AttributeError, UserError):
        spec = None
    return spec.init if spec is not None and spec.init is not None else DEFAULT_PRELU_INIT


def classify_slope(value: float) -> str:
    """``negative`` (< 0), ``relu_like`` (< 0.05), ``linear`` (> 0.9) or ``moderate``."""
    if value < 0:
        return "negative"
    if value < RELU_LIKE_MEDIAN:
        return "relu_like"
    return "linear" if value > LINEAR_MEDIAN else "moderate"


def _slope_entry(path: str, w: torch.Tensor, init: float) -> dict:
    stats = prelu_stats(path, w)
    median = float(w.median())
    classes = [classify_slope(float(v)) for v in w]
    return {
        **stats,
        "init": init,
        "shift": round(median - init, 6),
        "drift": classify_slope(median),
        "counts": {c: classes.count(c) for c in ("negative", "relu_like", "moderate", "linear")},
    }


def summarize_slopes(slopes_or_model) -> dict:
    """Counts of PReLU sites (by median) and of single slopes in each drift class, plus overall statistics.

    Args:
        slopes_or_model: The list from ``prelu_slopes``, or a model to call it on.
    """
    slopes = slopes_or_model if isinstance(slopes_or_model, list) else prelu_slopes(slopes_or_model)
    classes = ("negative", "relu_like", "moderate", "linear")
    out = {"sites": len(slopes), "slopes": sum(s["n"] for s in slopes)}
    out["sites_by_drift"] = {c: sum(s["drift"] == c for s in slopes) for c in classes}
    out["slopes_by_drift"] = {c: sum(s["counts"][c] for s in slopes) for c in classes}
    if slopes:
        medians = torch.tensor([s["median"] for s in slopes])
        out.update(
            min=min(s["min"] for s in slopes),
            max=max(s["max"] for s in slopes),
            median_of_site_medians=round(float(medians.median()), 6),
        )
    return out


# ---------------------------------------------------------------------------------------------------------- training
def track_unit_health(data: str | Path | dict | None = None, every: int = 1, **kwargs) -> Callable:
    """A callback for ``yolo.add_callback("on_fit_epoch_end", cb)`` that tracks unit health while training.

    Every ``every`` epochs (and at the last) it measures the raw (non-EMA) training network (``trained_network``:
    the student alone when distilling), appends
    ``{"epoch": n, **total}`` to ``trainer.unit_health_history`` and rewrites ``trainer.save_dir/unit_health.json``
    atomically. It works on a copy and restores the RNG state, so the training run is not disturbed.

    Args:
        data: Dataset YAML for the measurement; None uses the trainer's own dataset.
        every: Measure every this many epochs.
        **kwargs: Passed to ``unit_health`` (``imgsz``, ``batch``, ``max_images``).
    """

    def callback(trainer) -> None:
        epoch, last = int(trainer.epoch) + 1, int(trainer.epochs)
        if epoch > last or (epoch % max(1, every) and epoch != last):
            return  # epoch > last: Ultralytics' final_eval re-fires the event (epoch + 1) after validating best.pt
        net = trained_network(trainer)  # a distill cell's student, not the teacher and projectors around it
        with _rng_preserved():
            health = unit_health(net, data if data is not None else trainer.data, **kwargs)
        history = getattr(trainer, "unit_health_history", [])
        history.append({"epoch": epoch, "measure": health["measure"], **health["total"]})
        trainer.unit_health_history = history
        atomic.write_json(Path(trainer.save_dir) / "unit_health.json", history)

    return callback


class _rng_preserved:
    """Context manager restoring Python, NumPy and torch (CPU and CUDA) RNG states on exit."""

    def __enter__(self):
        self.state = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None

    def __exit__(self, *exc):
        random.setstate(self.state[0])
        np.random.set_state(self.state[1])
        torch.random.set_rng_state(self.state[2])
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)
