"""``yolo-leaky`` command line: Ultralytics' ``key=value`` syntax plus ``act=...``.

    yolo-leaky train   model=yolo11n.yaml act=prelu data=coco8.yaml epochs=3
    yolo-leaky train   model=silu.pt act=relu repair=fit+bn [calib_images=64] [distill_model=silu.pt] data=...
    yolo-leaky train   model=yolo11n.yaml act=relu keep_silu=22,23 data=coco8.yaml   (partial: also layers=, sites=)
    yolo-leaky val     model=runs/detect/train/weights/best.pt data=coco8.yaml
    yolo-leaky predict model=best.pt source=image.jpg
    yolo-leaky export  model=best.pt format=onnx
    yolo-leaky cfg     model=yolo11n,yolov8n act=leaky_relu,prelu,relu out=cfg
    yolo-leaky inspect model=cfg/yolo11n-prelu.yaml [act=...] [target=dpu] [--json]
    yolo-leaky compare [cfg=cfg/compare.yaml] [key=value ...]
    yolo-leaky deploy  model=best.pt target=ort-cpu data=coco8.yaml [act=relu] [repair=bn] [imgsz=320] [name=...]
    yolo-leaky sensitivity model=standin act=relu [data=...] [unit=layer|site] [draws=2] [int8=True]

User errors print one line and exit 2; ``--debug`` or ``YOLO_LEAKY_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
from pathlib import Path

import torch

from .core.census import take_census
from .core.loading import load
from .core.modelcfg import DEFAULT_ACTS, DEFAULT_MODELS, write_act_yaml
from .core.partial import selection_from_args
from .core.spec import parse_act
from .core.swap import swap_description
from .data.datasets import resolve_data
from .harness.compare import compare_from_cli
from .harness.config import TRAIN_ONLY_KEYS, check_ultralytics_args, parse_kv, ultralytics_keys
from .harness.deploy import deploy_from_cli
from .harness.sensitivity import sensitivity_from_cli
from .measure.diagnostics import format_unit_health, unit_health
from .targets.table import check_target, get_target, leaky_slopes
from .utils.errors import UserError

ULTRA_MODES = ("train", "val", "predict", "export")
MODES = (*ULTRA_MODES, "cfg", "inspect", "compare", "deploy", "sensitivity")
FLAGS = ("--json", "--debug", "--force", "--quick", "--help", "-h")
CFG_KEYS = {"model", "act", "out"}
INSPECT_KEYS = {"model", "act", "imgsz", "data", "batch", "device", "target", "layers", "keep_silu", "sites"}


def run_ultralytics_mode(mode: str, args: dict):
    act = args.pop("act", None)
    if act is not None:
        parse_act(str(act))  # fail on a typo before loading anything
    for key in TRAIN_ONLY_KEYS:
        if mode != "train" and key in args:
            raise UserError(f"{key}= applies to train only (it repairs a swap before the first step); drop it")
    sites = selection_from_args(args)
    if sites is not None and act is None:
        raise UserError(f"{sites} needs the activation to put there; add act=, e.g. act=relu {sites}")
    check_ultralytics_args(args)
    model_arg = args.pop("model", "yolo11n.yaml")
    resume = mode == "train" and args.get("resume")
    if resume:
        model_arg = args["resume"] if isinstance(args["resume"], str) else model_arg
    yolo = load(model_arg, act=None if resume else act, sites=None if resume else sites)
    if resume:
        _check_resume(yolo, model_arg, act, sites)
    if mode in ("train", "val") and (args.get("data") or not args.get("resume")):
        args["data"] = resolve_data(args.get("data") or "coco8.yaml")
    if mode == "train" and args.get("resume"):
        args["resume"] = True
    return getattr(yolo, mode)(**args)


def _check_resume(yolo, model_arg: str, act, sites=None) -> None:
    if act is None:
        return
    if not str(model_arg).endswith(".pt"):
        raise UserError("resume needs the run's last.pt; pass model=runs/<task>/<name>/weights/last.pt resume=True")

    trained = swap_description(yolo.model.yaml)
    asked = f"{parse_act(act)}" + (f" {sites}" if sites is not None else "")
    if trained != asked:
        raise UserError(
            f"resume continues a run trained with act={trained}, but act={asked} was given; "
            "drop act= to resume, or start a new run (warm start) with model=<last.pt> act=... without resume"
        )


def run_cfg(args: dict, force: bool) -> list[Path]:

    models = _as_list(args.get("model")) or list(DEFAULT_MODELS)
    acts = [parse_act(a) for a in (_as_list(args.get("act")) or list(DEFAULT_ACTS))]  # validate all before writing
    out = args.get("out") or "cfg"
    written = [write_act_yaml(m, a, out, overwrite=force) for m in models for a in acts]
    for path in written:
        print(path)
    return written


def run_inspect(args: dict, as_json: bool) -> dict:

    if "model" not in args:
        raise UserError("inspect needs model=<yaml|pt>, e.g. yolo-leaky inspect model=yolo11n.yaml act=prelu")
    target = args.get("target")
    if target is not None:
        get_target(target)  # fail on a typo before loading anything
    sites = selection_from_args(args)
    yolo = load(args["model"], act=args.get("act"), sites=sites)
    imgsz = int(args.get("imgsz") or 64)
    ch = int(yolo.model.yaml.get("channels", 3)) if isinstance(getattr(yolo.model, "yaml", None), dict) else 3
    census = take_census(yolo, torch.zeros(1, ch, imgsz, imgsz))
    result = {"model": str(args["model"]), **census.to_dict()}
    if target is not None:
        result["target"] = str(target).strip().lower()
        result["target_warnings"] = check_target(census, target, slopes=leaky_slopes(yolo))
    if args.get("data"):
        result["units"] = unit_health(
            yolo, args["data"], imgsz=int(args.get("imgsz") or 64), batch=int(args.get("batch") or 4)
        )
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print(f"model: {args['model']}")
        print(census.format())
        if "units" in result:
            print(format_unit_health(result["units"]))
        if target is not None:
            found = result["target_warnings"]
            print(f"target {result['target']}: " + (f"{len(found)} warning(s)" if found else "no known problem"))
            for line in found:
                print(f"  warning: {line}")
    return result


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def dispatch(argv: list[str]) -> int:
    flags = {a for a in argv if a.startswith("-")}
    tokens = [a for a in argv if not a.startswith("-")]
    unknown = flags - set(FLAGS)
    if unknown:
        raise UserError(f"unknown flag {sorted(unknown)[0]}; flags are {', '.join(FLAGS)}")
    if not tokens or "--help" in flags or "-h" in flags:
        print(__doc__)
        return 0
    mode, rest = tokens[0], tokens[1:]
    if mode not in MODES:
        near = difflib.get_close_matches(mode, MODES, n=1)
        raise UserError(
            f"unknown mode '{mode}'" + (f"; did you mean '{near[0]}'?" if near else f"; modes: {', '.join(MODES)}")
        )
    if mode in ULTRA_MODES:
        run_ultralytics_mode(mode, parse_kv(rest, ultralytics_keys()))
    elif mode == "cfg":
        run_cfg(parse_kv(rest, CFG_KEYS), force="--force" in flags)
    elif mode == "inspect":
        run_inspect(parse_kv(rest, INSPECT_KEYS), as_json="--json" in flags)
    elif mode == "deploy":
        deploy_from_cli(rest, force="--force" in flags)
    elif mode == "sensitivity":
        sensitivity_from_cli(rest)
    else:
        return compare_from_cli(rest, force="--force" in flags, quick="--quick" in flags)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv or os.environ.get("YOLO_LEAKY_DEBUG", "") not in ("", "0")
    try:
        return dispatch(argv)
    except UserError as e:
        if debug:
            raise
        print(f"yolo-leaky: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("yolo-leaky: interrupted; completed work is kept, run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            raise
        print(
            f"yolo-leaky: internal error (a bug in yolo-leaky or a library it calls, not in your input): "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}; rerun with --debug for the traceback "
            "and report it",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
