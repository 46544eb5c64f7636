"""Write model YAMLs that carry an activation, for the stock ``yolo`` CLI and for ``yolo-leaky``."""

from __future__ import annotations

from pathlib import Path

import yaml as pyyaml

from .errors import UserError
from .spec import ActSpec, parse_act
from .swap import YAML_KEY

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
    return cfg


def header(spec: ActSpec, model: str) -> str:
    stock_exact = spec.name != "prelu"
    lines = [
        f"# {model} with every activation site set to {spec} (written by `yolo-leaky cfg`).",
        f"# yolo-leaky route (exact: one fresh module per site, training keeps it):",
        f"#   yolo-leaky train model=<this file> data=coco8.yaml",
        f"# Stock route: `yolo train model=<this file>` reads only `activation:` ({spec.torch_spelling}),",
    ]
    if stock_exact:
        lines.append("#   which is exact for this model: every SiLU site is a Conv, and the shared instance holds no state.")
    else:
        lines += [
            "#   which is NOT the same network: Ultralytics shares ONE module between all Convs, so the stock route",
            "#   learns a single PReLU slope for the whole model. Use the yolo-leaky route for per-channel PReLU.",
        ]
    return "\n".join(lines) + "\n"


def act_model_yaml(model: str, act: str | ActSpec) -> tuple[dict, str]:
    """Return (yaml dict, header) for ``model`` with ``act`` recorded in both our key and Ultralytics' key."""
    spec = parse_act(act)
    cfg = stock_model_yaml(model)
    cfg["activation"] = spec.torch_spelling
    cfg[YAML_KEY] = {"act": str(spec)}
    return cfg, header(spec, model)


def yaml_name(model: str, spec: ActSpec) -> str:
    return f"{Path(model).stem}-{spec.label}.yaml"


def write_act_yaml(model: str, act: str | ActSpec, out_dir: str | Path = "cfg", overwrite: bool = False) -> Path:
    """Write ``<out_dir>/<model>-<act>.yaml``; refuses to overwrite a different existing file unless asked."""
    spec = parse_act(act)
    cfg, head = act_model_yaml(model, spec)
    text = head + pyyaml.safe_dump(cfg, sort_keys=False, default_flow_style=None, width=120)
    out = Path(out_dir) / yaml_name(model, spec)
    if out.exists() and out.read_text() != text and not overwrite:
        raise UserError(f"{out} exists with different content; pass overwrite=True (CLI: --force) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".yaml.tmp")
    tmp.write_text(text)
    tmp.replace(out)
    return out
