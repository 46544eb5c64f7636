"""Training that keeps the swap.

Ultralytics' trainers rebuild the network from ``model.yaml`` (new training, warm start and resume alike), which
silently loses an in-memory swap. ``attach_trainer`` hooks one ``YOLO`` object so that its trainer's ``get_model``
rebuilds the network, applies the activation recorded in the YAML to every site, and only then loads weights, so
per-site PReLU slopes survive a resume.

Which activation a trainer builds, highest first: an explicit ``act=`` (``load(..., act=)`` or the CLI's ``act=``,
applied to the object as an in-memory swap), then any later in-memory swap, then the model file's ``yolo_leaky:``
key, then its ``activation:`` key. A resume always continues the checkpoint's own network; asking for another
activation on resume is refused.

A repair (``train(..., repair="fit+bn")``, as ``compare`` repairs the start of its recovery cells) is applied by the
trainer to the network it builds, after the weights are loaded and before the first step, on ``calibration_set``
drawn from the training split with the run's seed at its image size; it needs a SiLU checkpoint loaded with
``load(pt, act=...)``. What was done is recorded in the network's YAML (so in every checkpoint of the run) and in
``repair.json`` beside ``args.yaml``. A resume never repairs again.

Learnable slopes (PReLU) are trained without weight decay, as He et al. (2015, sec. 2.1) train them: Ultralytics
decays every weight that is neither a bias nor a norm layer's, which pulls each slope toward 0, i.e. toward ReLU.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn
from ultralytics.nn.tasks import yaml_model_load
from ultralytics.utils import LOGGER
from ultralytics.utils.checks import check_imgsz
from ultralytics.utils.torch_utils import unwrap_model

from ..utils import atomic
from ..utils.errors import UserError
from .offline import COCO8_NAMES, is_offline, resolve_coco8
from .repair import REPAIRS, applicable_repair, repair_swap
from .spec import ACTIVATIONS, ActSpec
from .swap import YAML_KEY, selection_from_yaml, set_trainer_hook, spec_from_yaml, swap_activations, swap_description

_HOOKED = "_yolo_leaky_hooked"
SWAP_SOURCE = "_yolo_leaky_swap_source"  # set by load(pt, act=...): the checkpoint a swap started from
CALIB_IMAGES = 64  # training images that calibrate a repair, as compare's calib_images
REPAIR_FILE = "repair.json"  # what a repair did, beside the run's args.yaml
# activation modules whose parameters are slopes (trained without weight decay)
SLOPE_TYPES = tuple(kind.cls for name, kind in ACTIVATIONS.items() if ActSpec(name).learnable)
_GROUP_KEYS_IGNORED = ("params", "weight_decay", "param_group")  # what may differ between a decay group and its twin


def swap_aware(base: type, model_yaml: dict | None = None, repair: dict | None = None) -> type:
    """Subclass an Ultralytics trainer so that every model it builds carries the YAML's activation at every site.

    Args:
        base: The task's stock trainer class (DetectionTrainer, SegmentationTrainer ...).
        model_yaml: The in-memory YAML of the model being trained. It wins over the YAML the trainer is handed
            (Ultralytics hands over the model file's path, whose keys predate any swap), except on resume.
        repair: A checked repair request (``repair_request``): applied to the network built for a new run, after its
            weights are loaded; never on resume.

    Returns:
        The subclass, named ``SwapAware<base name>``.

    Examples:
        >>> from ultralytics.models.yolo.detect import DetectionTrainer
        >>> swap_aware(DetectionTrainer).__name__
        'SwapAwareDetectionTrainer'
    """

    class SwapAwareTrainer(base):
        source_yaml = model_yaml
        repair_request = repair

        def _setup_train(self):
            with _offline_amp_check():
                return super()._setup_train()

        def get_model(self, cfg=None, weights=None, verbose=True):
            cfg = _as_dict(cfg)
            if self.source_yaml is not None:
                if not self.resume:
                    cfg = copy.deepcopy(self.source_yaml)
                else:
                    _check_resume_matches(swap_description(self.source_yaml), swap_description(cfg))
            spec = spec_from_yaml(cfg)  # validates `activation:` before Ultralytics' parse_model could eval it
            if spec is None:
                return super().get_model(cfg=cfg, weights=weights, verbose=verbose)
            # build the stock SiLU network, then give each site its own module; the shared
            # `activation:` instance would hide which Identity/PReLU sites are activations
            build = {k: v for k, v in cfg.items() if k not in ("activation", YAML_KEY)}
            model = super().get_model(cfg=build, weights=None, verbose=verbose)
            report = swap_activations(model, spec, sites=selection_from_yaml(cfg))  # a partial swap's mix too
            self.swap_report = report
            if weights:
                model.load(weights)  # after the swap, so learned slopes find matching shapes
                if self.repair_request and not self.resume:
                    model = self._repair(model, spec)
            return model

        def _repair(self, model, spec: ActSpec):
            request, self.repair_request = self.repair_request, None  # once per run
            imgsz = check_imgsz(self.args.imgsz, stride=max(int(model.stride.max()), 32), floor=32, max_dim=1)
            with _rng_untouched():  # the run's seeded stream is the same as without the repair
                model, record = repair_swap(
                    request["model_class"](request["source"]),  # the SiLU checkpoint, as compare loads it
                    model,
                    spec,
                    request["repair"],
                    self.args.data,
                    request["calib_images"],
                    imgsz,
                    self.args.seed,
                )
            record["source"] = {"weights": request["source"], "sha256": _sha256(request["source"])}
            calibration = {k: v for k, v in record["calibration"].items() if k != "files"}  # the digest pins them
            model.yaml.setdefault(YAML_KEY, {"act": str(spec)})["repair"] = {**record, "calibration": calibration}
            atomic.write_json(Path(self.save_dir) / REPAIR_FILE, record)
            self.repair_record = record
            LOGGER.info(f"yolo-leaky: {describe_repair(record)}; recorded in {Path(self.save_dir) / REPAIR_FILE}")
            return model

        def build_optimizer(self, model, *args, **kwargs):
            optimizer = super().build_optimizer(model, *args, **kwargs)
            # the grouping Ultralytics itself built, which a last.pt saved before this exemption still has
            self.stock_param_groups = [list(group["params"]) for group in optimizer.param_groups]
            moved = exempt_slopes_from_decay(optimizer, model)
            if moved:
                LOGGER.info(f"yolo-leaky: {moved} PReLU slope tensor(s) moved to weight(decay=0.0) (He et al. 2015)")
            return optimizer

        def _load_checkpoint_state(self, ckpt):
            if ckpt.get("optimizer") is not None and getattr(self, "stock_param_groups", None):
                ckpt = {**ckpt, "optimizer": _regroup(ckpt["optimizer"], self.stock_param_groups, self.optimizer)}
            return super()._load_checkpoint_state(ckpt)

    SwapAwareTrainer.__name__ = SwapAwareTrainer.__qualname__ = f"SwapAware{base.__name__}"
    return SwapAwareTrainer


def exempt_slopes_from_decay(optimizer, model: nn.Module) -> int:
    """Move every learnable activation slope (``SLOPE_TYPES``) out of the optimizer's weight-decay groups.

    Each slope joins a group with ``weight_decay == 0`` whose other settings (learning rate, momentum, ...) match
    those of the group it leaves (Ultralytics' ``bn`` group); where there is none, such a group is added. Call it
    before the optimizer takes a step. The model may be wrapped (DDP, Ultralytics' ``DistillationModel``: the
    student's slopes are found there too).

    Args:
        optimizer: A torch optimizer built over the model's parameters.
        model: The model the optimizer trains.

    Returns:
        How many slope tensors were moved.
    """
    slopes = {id(p) for m in unwrap_model(model).modules() if isinstance(m, SLOPE_TYPES) for p in m.parameters()}
    moved = 0
    for group in list(optimizer.param_groups):
        if not group.get("weight_decay"):
            continue
        leaving = [p for p in group["params"] if id(p) in slopes]
        if not leaving:
            continue
        group["params"] = [p for p in group["params"] if id(p) not in slopes]
        settings = {k: v for k, v in group.items() if k not in _GROUP_KEYS_IGNORED}
        twin = next(
            (
                g
                for g in optimizer.param_groups
                if not g.get("weight_decay")
                and g.get("param_group") != "bias"  # bias groups warm up from their own learning rate
                and {k: v for k, v in g.items() if k not in _GROUP_KEYS_IGNORED} == settings
            ),
            None,
        )
        if twin is None:
            optimizer.add_param_group({**settings, "params": leaving, "weight_decay": 0.0, "param_group": "bn"})
        else:
            twin["params"].extend(leaving)
        moved += len(leaving)
    return moved


def _regroup(saved: dict, stock: list[list], optimizer) -> dict:
    """An optimizer state saved with Ultralytics' own grouping (slopes still decayed: a last.pt written before
    ``exempt_slopes_from_decay``), re-indexed into ``optimizer``'s grouping so that a resume can load it.

    A state that already matches, or that was not saved with the ``stock`` grouping, is returned as it is.
    """
    sizes = [len(g["params"]) for g in saved["param_groups"]]
    now = [len(g["params"]) for g in optimizer.param_groups]
    if sizes == now or sizes != [len(g) for g in stock] or len(now) != len(sizes):
        return saved
    param_at = {i: p for g, params in zip(saved["param_groups"], stock) for i, p in zip(g["params"], params)}
    index_now = {id(p): i for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"])}
    state = {index_now[id(param_at[i])]: v for i, v in saved["state"].items()}
    groups = [
        {**old, "params": [index_now[id(p)] for p in g["params"]]}
        for old, g in zip(saved["param_groups"], optimizer.param_groups)
    ]
    return {**saved, "state": state, "param_groups": groups}


def _check_resume_matches(asked: str, trained: str) -> None:
    if asked != trained:
        raise UserError(
            f"resume continues a run trained with act={trained or 'silu'}, but the model now holds act={asked}; "
            "resume without act= (load the last.pt as it is), or start a new run (warm start) without resume"
        )


@contextlib.contextmanager
def _offline_amp_check():
    """Offline, Ultralytics' AMP check would try to download yolo26n.pt; skip it (AMP stays on) and say so."""
    from ultralytics.engine import trainer as trainer_module
    from ultralytics.utils import WEIGHTS_DIR

    if not is_offline() or (WEIGHTS_DIR / "yolo26n.pt").is_file():
        yield
        return
    stock = trainer_module.check_amp

    def skip(model):
        if next(model.parameters()).device.type == "cpu":
            return False
        LOGGER.warning("yolo-leaky: offline, Ultralytics' AMP check (needs yolo26n.pt) skipped; AMP stays on")
        return True

    trainer_module.check_amp = skip
    try:
        yield
    finally:
        trainer_module.check_amp = stock


def attach_trainer(yolo) -> None:
    """Make ``yolo.train()`` use a swap-aware trainer (per object; stock Ultralytics is left untouched).

    ``train(data="coco8.yaml")`` finds a local COCO8 copy first, as the CLI does (``offline.resolve_coco8``).
    ``train(data=[...])`` (Ultralytics' multi-dataset route) is sent through the same swap-aware trainer class:
    left to itself, Ultralytics would run each dataset as a stock ``yolo train`` subprocess that rebuilds the network
    from ``activation:`` alone (one shared module: a per-channel PReLU would become one slope).
    ``train(repair=..., calib_images=...)`` repairs the swap before the first step (``repair_request``); Ultralytics'
    own argument check never sees these two keys.
    """
    if getattr(yolo, _HOOKED, False):
        return
    stock_smart_load = yolo._smart_load
    stock_train = yolo.train
    pending = {"repair": None}

    def smart_load(key: str):
        cls = stock_smart_load(key)
        return swap_aware(cls, getattr(yolo.model, "yaml", None), pending["repair"]) if key == "trainer" else cls

    def train(trainer=None, **kwargs):
        request = repair_request(yolo, kwargs.pop("repair", None), kwargs.pop("calib_images", None), kwargs)
        if trainer is None and isinstance(kwargs.get("data"), (list, tuple)):
            trainer = smart_load("trainer")
        if kwargs.get("data") in COCO8_NAMES:
            kwargs["data"] = resolve_coco8()  # a local COCO8 copy, as the CLI finds it (no download)
        if request is not None and trainer is not None:
            raise UserError("repair= is applied by yolo-leaky's own trainer; drop trainer= or repair=")
        pending["repair"] = request
        try:
            return stock_train(trainer=trainer, **kwargs)
        finally:
            pending["repair"] = None

    yolo._smart_load = smart_load
    yolo.train = train
    setattr(yolo, _HOOKED, True)


def repair_request(yolo, repair, calib_images, train_args: dict) -> dict | None:
    """Check ``train(repair=..., calib_images=...)`` before any work; the request the trainer applies, or None.

    A repair fixes a swap, so it needs the checkpoint the swap started from: ``yolo`` loaded with
    ``load(<.pt>, act=...)`` and not trained since; ``fit`` (PReLU slopes fitted to SiLU) also needs that checkpoint to
    be SiLU. On an activation without slopes, ``fit+bn`` is ``bn`` (as in ``compare``). A resume continues the run as
    saved: the repair it recorded is not repeated, and another one is refused.

    Raises:
        UserError: One line naming the problem and the fix.

    Examples:
        >>> yolo = load("best.pt", act="relu")  # doctest: +SKIP
        >>> repair_request(yolo, "fit+bn", None, {})["calib_images"]  # doctest: +SKIP
        64
    """
    if repair in (None, "none"):
        if calib_images is not None:
            raise UserError("calib_images= sets how many training images calibrate repair=; add repair=bn|fit|fit+bn")
        return None
    if repair not in REPAIRS:
        raise UserError(f"repair={repair!r} is not one of {', '.join(REPAIRS)}; e.g. repair=fit+bn")
    n = CALIB_IMAGES if calib_images is None else calib_images
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"calib_images={calib_images!r} must be a positive integer (default {CALIB_IMAGES})")
    if isinstance(train_args.get("data"), (list, tuple)):
        raise UserError("repair= calibrates on one dataset's training split; pass one data= YAML, not a list")
    recorded = ((getattr(yolo.model, "yaml", None) or {}).get(YAML_KEY) or {}).get("repair")
    if train_args.get("resume"):
        if train_args["resume"] is True and recorded and recorded.get("asked") == repair:
            LOGGER.info(f"yolo-leaky: repair={repair} was applied before this run's first step; resume keeps it")
            return None
        done = f"was repaired with {recorded['asked']}" if recorded else "was not repaired"
        raise UserError(
            f"resume continues the run as saved (its network {done} before the first step); drop repair= to resume"
        )
    source = getattr(yolo, SWAP_SOURCE, None)
    act = spec_from_yaml(getattr(yolo.model, "yaml", None))
    if source is None:
        if not getattr(yolo, "ckpt", None):
            raise UserError("repair= repairs a pretrained checkpoint right after a swap; use model=<silu.pt> act=relu")
        raise UserError(
            f"repair= repairs the swap that act= makes, but {yolo.ckpt_path} was loaded without act= (it holds "
            f"{act or 'silu'}); add act=relu, leaky_relu:0.1 or prelu, or drop repair="
        )
    if source["network"] is not yolo.model:
        raise UserError(
            "repair= applies right after a swap, before the first training step, and this model has been trained "
            f"since; load {source['weights']} again with act= and train it with repair="
        )
    applied = applicable_repair(act, repair)
    if applied == "none":
        raise UserError(f"repair={repair} fits PReLU slopes and act={act} has none; use repair=bn")
    if "fit" in applied and source["act"] != "silu":
        raise UserError(
            f"repair={repair} fits PReLU slopes to SiLU, but {source['weights']} holds {source['act']}; use repair=bn"
        )
    if applied != repair:
        LOGGER.info(f"yolo-leaky: repair={repair} on act={act}: no slope to fit, so {applied} (as compare does)")
    return {
        "repair": repair,
        "calib_images": n,
        "source": source["weights"],
        "source_act": source["act"],
        "model_class": type(yolo),
    }


def describe_repair(record: dict) -> str:
    """One line on what a repair did (``repair_swap``'s record).

    Examples:
        >>> line = describe_repair({"asked": "bn", "repair": "bn", "act": "relu", "bn_layers": 88,
        ...     "calibration": {"images": 64, "seed": 0, "imgsz": 64, "digest": "0123456789abcdef"}})
        >>> for part in line.split(", on "):
        ...     print(part)
        repair=bn on act=relu: 88 BatchNorm layers re-estimated
        64 training images (seed 0, imgsz 64, digest 0123456789ab)
    """
    parts = []
    fit = record.get("fit")
    if fit and fit["sites"]:
        parts.append(f"{fit['sites']} PReLU sites fitted to SiLU (slope mean {fit['slope_mean']:.3f})")
    elif fit:  # e.g. a single-slope PReLU (prelu:layer): no per-channel slope to fit
        parts.append(f"no PReLU site fitted ({fit['skipped']} skipped)")
    if record.get("bn_layers") is not None:
        parts.append(f"{record['bn_layers']} BatchNorm layers re-estimated")
    cal = record["calibration"]
    where = f"{cal['images']} training images (seed {cal['seed']}, imgsz {cal['imgsz']}, digest {cal['digest'][:12]})"
    return f"repair={record['repair']} on act={record['act']}: {', '.join(parts)}, on {where}"


@contextlib.contextmanager
def _rng_untouched():
    """Restore Python's, NumPy's and torch's global random state on exit."""
    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _as_dict(cfg) -> dict | None:
    if isinstance(cfg, dict):
        return cfg
    if isinstance(cfg, (str, Path)) and str(cfg).endswith((".yaml", ".yml")):
        return yaml_model_load(cfg)
    return None


set_trainer_hook(attach_trainer)
