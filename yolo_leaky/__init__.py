"""yolo-leaky: swap YOLO's SiLU for Leaky ReLU, PReLU or ReLU at every site, train, and compare.

The package is layered, and imports point one way (``tests/test_structure.py`` enforces it):

- ``utils``: errors, atomic writes, the terminal;
- ``core``: the swap library that users import (spec, swap, census, model YAMLs, trainer, loading, repairs);
- ``data``: datasets, the synthetic shapes, the stand-in checkpoint;
- ``measure`` and ``targets``: latency, the export check, unit health, INT8; the deployment targets;
- ``harness``: the comparison (config, cells, executor, summary, report, plots, ``compare``);
- ``cli``.

Examples:
    >>> from yolo_leaky import load, take_census
    >>> model = load("yolo11n.yaml", act="relu")
    >>> census = take_census(model)
    >>> census.silu_sites, census.sites["ReLU"] > 0
    ([], True)
"""

import importlib
import importlib.abc
import importlib.util
import sys

from .core.census import Census, take_census
from .core.loading import load
from .core.modelcfg import write_act_yaml
from .core.repair import calibration_set
from .core.spec import ActSpec, parse_act
from .core.swap import SwapReport, swap_activations
from .core.train import attach_trainer
from .targets.table import check_target
from .utils.errors import UserError
from .version import __version__

# Public names from the layers above the swap library, imported on first use (``import yolo_leaky`` stays light).
_LAZY = {"standin_checkpoint": "data.standin", "measure_int8": "measure.quant"}

__all__ = [
    "__version__",
    "ActSpec",
    "Census",
    "SwapReport",
    "UserError",
    "attach_trainer",
    "calibration_set",
    "check_target",
    "load",
    "measure_int8",
    "parse_act",
    "standin_checkpoint",
    "swap_activations",
    "take_census",
    "write_act_yaml",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Module paths of yolo-leaky 0.2.0 (one flat folder) keep working: ``from yolo_leaky.swap import ...`` gets
# ``yolo_leaky.core.swap``, the same module object.
MOVED_MODULES = {
    "errors": "utils.errors",
    "atomic": "utils.atomic",
    "console": "utils.console",
    "testhold": "utils.testhold",
    "spec": "core.spec",
    "swap": "core.swap",
    "census": "core.census",
    "modelcfg": "core.modelcfg",
    "train": "core.train",
    "loading": "core.loading",
    "memory": "core.memory",
    "repair": "core.repair",
    "synthetic": "data.synthetic",
    "standin": "data.standin",
    "bench": "measure.bench",
    "onnx_check": "measure.onnx_check",
    "diagnostics": "measure.diagnostics",
    "quant": "measure.quant",
    "config": "harness.config",
    "cells": "harness.cells",
    "executor": "harness.executor",
    "summary": "harness.summary",
    "report": "harness.report",
    "plots": "harness.plots",
    "compare": "harness.compare",
}


class _Moved(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        prefix, _, old = fullname.partition(".")
        if prefix == __name__ and old in MOVED_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(f"{__name__}.{MOVED_MODULES[spec.name.partition('.')[2]]}")

    def exec_module(self, module):
        pass  # the module ran when it was imported under its own path


sys.meta_path.append(_Moved())
