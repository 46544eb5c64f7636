"""yolo-leaky: swap YOLO's SiLU for Leaky ReLU, PReLU or ReLU at every site, train, and compare."""

from .census import Census, take_census
from .errors import UserError
from .loading import load
from .modelcfg import write_act_yaml
from .spec import ActSpec, parse_act
from .swap import SwapReport, swap_activations
from .train import attach_trainer
from .version import __version__

__all__ = [
    "__version__",
    "ActSpec",
    "Census",
    "SwapReport",
    "UserError",
    "attach_trainer",
    "load",
    "parse_act",
    "swap_activations",
    "take_census",
    "write_act_yaml",
]
