"""Training that keeps the swap.

Ultralytics' trainers rebuild the network from ``model.yaml`` (new training, warm start and resume alike), which
silently loses an in-memory swap. ``attach_trainer`` hooks one ``YOLO`` object so that its trainer's ``get_model``
rebuilds the network, applies the activation recorded in the YAML to every site, and only then loads weights, so
per-site PReLU slopes survive a resume.

Which activation a trainer builds, highest first: an explicit ``act=`` (``load(..., act=)`` or the CLI's ``act=``,
applied to the object as an in-memory swap), then any later in-memory swap, then the model file's ``yolo_leaky:``
key, then its ``activation:`` key. A resume always continues the checkpoint's own network; asking for another
activation on resume is refused.

Learnable slopes (PReLU) are trained without weight decay, as He et al. (2015, sec. 2.1) train them: Ultralytics
decays every weight that is neither a bias nor a norm layer's, which pulls each slope toward 0, i.e. toward ReLU.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

from torch import nn
from ultralytics.nn.tasks import yaml_model_load
from ultralytics.utils import LOGGER
from ultralytics.utils.torch_utils import unwrap_model

from ..utils.errors import UserError
from .offline import COCO8_NAMES, is_offline, resolve_coco8
from .spec import ACTIVATIONS, ActSpec
from .swap import YAML_KEY, selection_from_yaml, set_trainer_hook, spec_from_yaml, swap_activations, swap_description

_HOOKED = "_yolo_leaky_hooked"
# activation modules whose parameters are slopes (trained without weight decay)
SLOPE_TYPES = tuple(kind.cls for name, kind in ACTIVATIONS.items() if ActSpec(name).learnable)
_GROUP_KEYS_IGNORED = ("params", "weight_decay", "param_group")  # what may differ between a decay group and its twin


def swap_aware(base: type, model_yaml: dict | None = None) -> type:
    """Subclass an Ultralytics trainer so that every model it builds carries the YAML's activation at every site.

    Args:
        base: The task's stock trainer class (DetectionTrainer, SegmentationTrainer ...).
        model_yaml: The in-memory YAML of the model being trained. It wins over the YAML the trainer is handed
            (Ultralytics hands over the model file's path, whose keys predate any swap), except on resume.

    Returns:
        The subclass, named ``SwapAware<base name>``.

    Examples:
        >>> from ultralytics.models.yolo.detect import DetectionTrainer
        >>> swap_aware(DetectionTrainer).__name__
        'SwapAwareDetectionTrainer'
    """

    class SwapAwareTrainer(base):
        source_yaml = model_yaml

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
    """
    if getattr(yolo, _HOOKED, False):
        return
    stock_smart_load = yolo._smart_load
    stock_train = yolo.train

    def smart_load(key: str):
        cls = stock_smart_load(key)
        return swap_aware(cls, getattr(yolo.model, "yaml", None)) if key == "trainer" else cls

    def train(trainer=None, **kwargs):
        if trainer is None and isinstance(kwargs.get("data"), (list, tuple)):
            trainer = smart_load("trainer")
        if kwargs.get("data") in COCO8_NAMES:
            kwargs["data"] = resolve_coco8()  # a local COCO8 copy, as the CLI finds it (no download)
        return stock_train(trainer=trainer, **kwargs)

    yolo._smart_load = smart_load
    yolo.train = train
    setattr(yolo, _HOOKED, True)


def _as_dict(cfg) -> dict | None:
    if isinstance(cfg, dict):
        return cfg
    if isinstance(cfg, (str, Path)) and str(cfg).endswith((".yaml", ".yml")):
        return yaml_model_load(cfg)
    return None


set_trainer_hook(attach_trainer)
