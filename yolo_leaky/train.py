"""Training that keeps the swap.

Ultralytics' trainers rebuild the network from ``model.yaml`` (new training, warm start and resume alike), which
silently loses an in-memory swap. ``attach_trainer`` hooks one ``YOLO`` object so that its trainer's ``get_model``
rebuilds the network, applies the activation recorded in the YAML to every site, and only then loads weights, so
per-site PReLU slopes survive a resume.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

from ultralytics.nn.tasks import yaml_model_load

from .spec import ActSpec, parse_act
from .swap import YAML_KEY, swap_activations

_HOOKED = "_yolo_leaky_hooked"


def spec_from_yaml(cfg: dict | None) -> ActSpec | None:
    """The activation a model YAML asks for: our key first, else Ultralytics' ``activation:`` (validated, never run)."""
    if not isinstance(cfg, dict):
        return None
    ours = cfg.get(YAML_KEY)
    if isinstance(ours, dict) and ours.get("act"):
        return parse_act(str(ours["act"]))
    if cfg.get("activation"):
        return parse_act(str(cfg["activation"]))
    return None


def swap_aware(base: type, model_yaml: dict | None = None) -> type:
    """Subclass an Ultralytics trainer so that every model it builds carries the YAML's activation at every site.

    Args:
        base: The task's stock trainer class (DetectionTrainer, SegmentationTrainer ...).
        model_yaml: The in-memory YAML of the model being trained; used when the trainer is handed a YAML path.
    """

    class SwapAwareTrainer(base):
        source_yaml = model_yaml

        def _setup_train(self):
            with _offline_amp_check():
                return super()._setup_train()

        def get_model(self, cfg=None, weights=None, verbose=True):
            cfg = _as_dict(cfg)
            if self.source_yaml and not (cfg and cfg.get(YAML_KEY)) and not self.resume:
                cfg = copy.deepcopy(self.source_yaml)  # Model.train passes the file path, not the swapped YAML
            spec = spec_from_yaml(cfg)
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


@contextlib.contextmanager
def _offline_amp_check():
    """Offline, Ultralytics' AMP check would try to download yolo26n.pt; skip it (AMP stays on) and say so."""
    from ultralytics.engine import trainer as trainer_module
    from ultralytics.utils import LOGGER, WEIGHTS_DIR

    from .loading import is_offline

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
    """Make ``yolo.train()`` use a swap-aware trainer (per object; stock Ultralytics is left untouched)."""
    if getattr(yolo, _HOOKED, False):
        return
    stock_smart_load = yolo._smart_load

    def smart_load(key: str):
        cls = stock_smart_load(key)
        return swap_aware(cls, getattr(yolo.model, "yaml", None)) if key == "trainer" else cls

    yolo._smart_load = smart_load
    setattr(yolo, _HOOKED, True)


def _as_dict(cfg) -> dict | None:
    if isinstance(cfg, dict):
        return cfg
    if isinstance(cfg, (str, Path)) and str(cfg).endswith((".yaml", ".yml")):
        return yaml_model_load(cfg)
    return None
