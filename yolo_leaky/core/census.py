"""Activation census: what activations a network really has, site by site, and what a forward pass calls."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .partial import compact, layer_of
from .swap import in_loss_only, is_activation_module, network_of, prelu_stats


class SiluCallCounter(TorchFunctionMode):
    """Counts ``torch.nn.functional.silu`` calls made while the mode is active (module or functional)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.silu:
            self.calls += 1
        return func(*args, **(kwargs or {}))


@dataclass
class Census:
    """Activation sites of a network.

    Attributes:
        sites: Site count by module type (a shared instance counts once per site).
        instances: Distinct module instances by type.
        shared: ``(type, sites)`` for each instance used at more than one site.
        silu_sites: Paths of SiLU module sites outside loss-only helpers.
        loss_only_silu: SiLU sites inside loss-only helpers (e.g. RealNVP), left on purpose.
        functional_silu_calls: ``F.silu`` calls in one forward not made by an ``nn.SiLU`` module (None: not run).
        prelu: Per PReLU site: path, slopes, min, median, max.
        by_layer: Site count by type per Ultralytics layer index (``model.model[i]``; key None outside it): the mix
            of a partial swap.
    """

    sites: Counter = field(default_factory=Counter)
    instances: Counter = field(default_factory=Counter)
    shared: list = field(default_factory=list)
    silu_sites: list = field(default_factory=list)
    loss_only_silu: list = field(default_factory=list)
    functional_silu_calls: int | None = None
    prelu: list = field(default_factory=list)
    by_layer: dict = field(default_factory=dict)

    def mix(self) -> dict[str, str]:
        """Each activation type and the layers holding it, e.g. ``{"ReLU": "0-10", "SiLU": "13,16-23"}``."""
        layers: dict[str, list] = {}
        for layer, types in self.by_layer.items():
            for t in types:
                layers.setdefault(t, []).append(layer)
        return {
            t: compact([i for i in v if i is not None]) + (" + outside model.model" if None in v else "")
            for t, v in sorted(layers.items())
        }

    def to_dict(self) -> dict:
        return {
            "sites": dict(self.sites),
            "instances": dict(self.instances),
            "shared": [list(s) for s in self.shared],
            "silu_sites": len(self.silu_sites),
            "silu_site_paths": list(self.silu_sites),
            "loss_only_silu": len(self.loss_only_silu),
            "functional_silu_calls": self.functional_silu_calls,
            "prelu": self.prelu,
            "by_layer": {str(k): dict(v) for k, v in self.by_layer.items()},
            "mix": self.mix(),
        }

    def format(self) -> str:
        lines = ["activation sites: " + (", ".join(f"{k} {v}" for k, v in sorted(self.sites.items())) or "none")]
        lines.append(
            "distinct instances: " + (", ".join(f"{k} {v}" for k, v in sorted(self.instances.items())) or "none")
        )
        lines.append("shared instances: " + (", ".join(f"{t} x{n} sites" for t, n in self.shared) or "none"))
        if len(self.mix()) > 1:
            lines.append("mix by layer: " + "; ".join(f"{t} in {where}" for t, where in self.mix().items()))
        fn = "not measured" if self.functional_silu_calls is None else str(self.functional_silu_calls)
        lines.append(f"SiLU left: {len(self.silu_sites)} module sites, {fn} functional F.silu calls per forward")
        if self.loss_only_silu:
            lines.append(f"loss-only SiLU (not in inference graph, left on purpose): {len(self.loss_only_silu)}")
        if self.prelu:
            slopes = torch.cat([torch.tensor(p["slopes"]) for p in self.prelu])
            lines.append(
                f"PReLU: {len(self.prelu)} sites, {slopes.numel()} slopes, min {slopes.min():.3f} "
                f"median {slopes.median():.3f} max {slopes.max():.3f}"
            )
        return "\n".join(lines)


def take_census(model, example: torch.Tensor | None = None) -> Census:
    """Count the activation sites of ``model`` (a YOLO object or ``nn.Module``).

    Args:
        model: The network to inspect.
        example: An input; when given, one no-grad eval forward counts functional ``F.silu`` calls.
    """
    net = network_of(model)
    census = Census()
    uses: Counter = Counter()
    owners: dict[int, nn.Module] = {}
    for path, module in net.named_modules(remove_duplicate=False):
        if not is_activation_module(module):
            continue
        if isinstance(module, nn.SiLU) and in_loss_only(net, path):
            census.loss_only_silu.append(path)
            continue
        census.sites[type(module).__name__] += 1
        census.by_layer.setdefault(layer_of(path), Counter())[type(module).__name__] += 1
        uses[id(module)] += 1
        owners[id(module)] = module
        if isinstance(module, nn.SiLU):
            census.silu_sites.append(path)
        if isinstance(module, nn.PReLU) and uses[id(module)] == 1:
            census.prelu.append(_prelu_summary(path, module))
    census.instances = Counter(type(m).__name__ for m in owners.values())
    census.shared = [(type(owners[i]).__name__, n) for i, n in uses.items() if n > 1]
    if example is not None:
        census.functional_silu_calls = count_functional_silu(net, example)
    return census


def count_functional_silu(net: nn.Module, example: torch.Tensor) -> int:
    """``F.silu`` calls in one eval forward that do not come from an ``nn.SiLU`` module."""
    module_calls = [0]

    def hook(*_):
        module_calls[0] += 1

    handles = [m.register_forward_pre_hook(hook) for m in net.modules() if isinstance(m, nn.SiLU)]
    counter = SiluCallCounter()
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad(), counter:
            net(example)
    finally:
        net.train(was_training)
        for h in handles:
            h.remove()
    return counter.calls - module_calls[0]


def _prelu_summary(path: str, module: nn.PReLU) -> dict:
    stats = prelu_stats(path, module.weight)
    return {**stats, "slopes": [round(float(v), 5) for v in module.weight.detach().float().flatten().cpu()]}
