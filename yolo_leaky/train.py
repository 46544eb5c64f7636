"""Training that keeps the swap.

Ultralytics' trainers rebuild the network from ``model.yaml`` (new training, warm start and resume alike), which
silently loses an in-memory swap. ``attach_trainer`` hooks one ``YOLO`` object so that its trainer's ``get_model``
rebuilds the network, applies the activation recorded in the YAML to every site, and only then loads weights, so
per-site PReLU slopes survive a resume.

Which activation a trainer builds, highest first: an explicit ``act=`` (``load(..., act=)`` or the CLI's ``act=``,
applied to the object as an in-memory swap), then any later in-memory swap, then the model file's ``yolo_leaky:``
key, then its ``activation:`` key. A resume always continues the checkpoint's own network; asking for another
activation on resume is refused.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

from ultralytics.nn.tasks import yaml_model_load

from .data import COCO8_NAMES, is_offline, resolve_data
from .errors import UserError
from .swap import YAML_KEY, set_trainer_hook, spec_from_yaml, swap_activations

_HOOKED = "_yolo_leaky_hooked"


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
                    _check_resume_matches(spec_from_yaml(self.source_yaml), spec_from_yaml(cfg))
            spec = spec_from_yaml(cfg)  # validates `activation:` before Ultralytics' parse_model could eval it
            if spec is None:
                return super().get_model(cfg=cfg, weights=weights, verbose=verbose)
            # build the stock SiLU network, then give each site its own module; the shared
            # `activation:` instance would hide which Identity/PReLU sites are activations
            build = {k: v for k, v in cfg.items() if k not in ("activation", YAML_KEY)}
            model = super().get_model(cfg=build, weights=None, verbose=verbose)
            report = swap_activations(model, spec)
            self.swap_report = report
            if weights:
                model.load(weights)  # after the swap, so learned slopes find matching shapes
            return model

    SwapAwareTrainer.__name__ = SwapAwareTrainer.__qualname__ = f"SwapAware{base.__name__}"
    return SwapAwareTrainer


def _check_resume_matches(asked, trained) -> None:
    if str(asked or "silu") != str(trained or "silu"):
        raise UserError(
            f"resume continues a run trained with act={trained or 'silu'}, but the model now holds act={asked}; "
            "resume without act= (load the last.pt as it is), or start a new run (warm start) without resume"
        )


@contextlib.contextmanager
def _offline_amp_check():
    """Offline, Ultralytics' AMP check would try to download yolo26n.pt; skip it (AMP stays on) and say so."""
    from ultralytics.engine import trainer as trainer_module
    from ultralytics.utils import LOGGER, WEIGHTS_DIR

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

    ``train(data="coco8.yaml")`` finds a local COCO8 copy first, as the CLI does (``data.resolve_data``).
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
            kwargs["data"] = resolve_data(kwargs["data"])  # a local COCO8 copy, as the CLI finds it (no download)
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
