"""yolo-leaky: swap YOLO's SiLU for Leaky ReLU, PReLU or ReLU at every site, train, and compare."""

from .census import Census, take_census
from .errors import UserError
from .loading import load
from .modelcfg import write_act_yaml
from .spec import ActSpec, parse_act
from .swap import SwapReport, swap_activations
from .train import attach_trainer

__version__ = "0.1.0"
__all__ = [
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
