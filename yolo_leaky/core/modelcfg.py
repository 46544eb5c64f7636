"""Write model YAMLs that carry an activation, for the stock ``yolo`` CLI and for ``yolo-leaky``."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import yaml as pyyaml
from torch import nn

from ..utils import atomic
from ..utils.errors import UserError
from .spec import ActSpec, parse_act
from .swap import YAML_KEY, child_slots, spec_from_yaml

DEFAULT_MODELS = ("yolo11n", "yolov8n", "yolo26n")
DEFAULT_ACTS = ("leaky_relu", "prelu", "relu")


def stock_model_yaml(model: str) -> dict:
    """Ultralytics' YAML for a model name such as ``yolo11n`` (scale taken from the name)."""
    from ultralytics.nn.tasks import yaml_model_load

    name = model if model.endswith((".yaml", ".yml")) else f"{model}.yaml"
    try:
        cfg = yaml_model_load(name)
    except FileNotFoundError:
        raise UserError(f"no Ultralytics model YAML named {name!r}; use a name such as yolo11n or yolov8s") from None
    cfg.pop("yaml_file", None)
    spec_from_yaml(cfg)  # a user's YAML may carry code in `activation:`: refuse it before anything builds the network
    return cfg


def stock_route_gaps(cfg: dict) -> Counter:
    """SiLU sites, by parent type, that Ultralytics' ``activation:`` key does not reach (it sets Conv.default_act)."""
    from ultralytics.nn.modules.conv import Conv

    net = build_network({k: v for k, v in cfg.items() if k not in ("activation", YAML_KEY)})
    return Counter(
        type(parent).__name__
        for _, parent, _, child in child_slots(net)
        if isinstance(child, nn.SiLU) and not isinstance(parent, Conv)
    )


def build_network(cfg: dict) -> nn.Module:
    """Build the Ultralytics network a model YAML dict describes, with the right model class for its task."""
    from ultralytics.nn import tasks

    if any("RTDETRDecoder" in str(row) for row in cfg.get("head", [])):
        return tasks.RTDETRDetectionModel(copy.deepcopy(cfg), verbose=False)
    classes = {
        "detect": tasks.DetectionModel,
        "segment": tasks.SegmentationModel,
        "pose": tasks.PoseModel,
        "obb": tasks.OBBModel,
        "classify": tasks.ClassificationModel,
    }
    task = tasks.guess_model_task(cfg)
    if task not in classes:
        raise UserError(
            f"cannot build a {task!r} model from a YAML dict here; use a detect/segment/pose/obb/classify model"
        )
    return classes[task](copy.deepcopy(cfg), verbose=False)


def header(spec: ActSpec, model: str, gaps: Counter) -> str:
    stock_exact = spec.name != "prelu" and not gaps
    lines = [
        f"# {model} with every activation site set to {spec} (written by `yolo-leaky cfg`).",
        "# yolo-leaky route (exact: one fresh module per site, training keeps it):",
        "#   yolo-leaky train model=<this file> data=coco8.yaml",
        f"# Stock route: `yolo train model=<this file>` reads only `activation:` ({spec.torch_spelling}),",
    ]
    if stock_exact:
        lines.append(
            "#   which is exact for this model: every SiLU site is a Conv, and the shared instance holds no state."
        )
    if gaps:
        missed = ", ".join(f"{n} in {t}" for t, n in sorted(gaps.items()))
        lines.append(f"#   which is NOT the same network: it leaves SiLU at {missed}. Use the yolo-leaky route.")
    if spec.name == "prelu":
        lines += [
            "#   which is NOT the same network: Ultralytics shares ONE module between all Convs, so the stock route",
            "#   learns a single PReLU slope for the whole model. Use the yolo-leaky route for per-channel PReLU.",
        ]
    return "\n".join(lines) + "\n"


def act_model_yaml(model: str, act: str | ActSpec) -> tuple[dict, str]:
    """Return (yaml dict, header) for ``model`` with ``act`` recorded in both our key and Ultralytics' key."""
    spec = parse_act(act)
    stock = stock_model_yaml(model)
    if not stock.get("scale"):
        stock.pop("scale", None)  # a YAML without scales (yolov9t)
    cfg = {k: stock[k] for k in ("nc", "scale") if k in stock}
    cfg["activation"] = spec.torch_spelling
    cfg[YAML_KEY] = {"act": str(spec)}
    cfg.update({k: v for k, v in stock.items() if k not in cfg})
    return cfg, header(spec, model, stock_route_gaps(stock))


def dump_model_yaml(cfg: dict) -> str:
    """YAML text in Ultralytics' layout: one flow-style row per layer."""
    lines = []
    for key, value in cfg.items():
        if key in ("backbone", "head") and isinstance(value, list):
            lines.append(f"{key}:")
            lines += [f"  - {pyyaml.safe_dump(row, default_flow_style=True, width=1000).strip()}" for row in value]
        else:
            flow = None if isinstance(value, (dict, list)) else False  # nested rows inline, top-level keys block
            lines.append(pyyaml.safe_dump({key: value}, sort_keys=False, default_flow_style=flow, width=120).rstrip())
    return "\n".join(lines) + "\n"


def yaml_name(model: str, spec: ActSpec) -> str:
    return f"{Path(model).stem}-{spec.label}.yaml"


def write_act_yaml(model: str, act: str | ActSpec, out_dir: str | Path = "cfg", overwrite: bool = False) -> Path:
    """Write ``<out_dir>/<model>-<act>.yaml``; refuses to overwrite a different existing file unless asked."""
    spec = parse_act(act)
    cfg, head = act_model_yaml(model, spec)
    text = head + dump_model_yaml(cfg)
    out = Path(out_dir) / yaml_name(model, spec)
    if out.exists() and out.read_text() != text and not overwrite:
        raise UserError(f"{out} exists with different content; pass overwrite=True (CLI: --force) to replace it")
    return atomic.write_text(out, text)
