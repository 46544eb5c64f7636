"""``yolo-leaky deploy``: the artifact a user ships for one target, with the evidence beside it.

``deploy model=<.pt> target=<name> data=<yaml> [act=...] [repair=...]`` loads the checkpoint (swapping its
activations first with ``act=``, and repairing the swap with ``repair=`` on the calibration set), builds the target's
artifact with its backend (``targets.base``), quantized on ``n_calib`` training images (``measure.quant
.calibration_images``: the same draw the repairs use), and writes ``runs/deploy/<name>/``:

* the artifact and, where the backend makes one, the float model in the same format (its reference);
* ``deploy.json``: the accuracy of the quantized artifact itself beside the FP32 reference's on the same validation
  images (same runtime, same preprocessing), the vendor compiler's op placement and estimate (labelled as the
  vendor's estimate), the host latency of artifact and reference in one interleaved benchmark (``measure.bench``:
  fresh process per block, paired ratio with a t-interval over blocks), tool versions and the commands;
* ``deploy.md``: a card rendered from ``deploy.json`` alone (``render_card``).

Everything is built in a hidden temporary folder beside the run folder and renamed into place at the end, so an
interrupted or refused deploy leaves no ``runs/deploy/<name>/``. A toolchain's refusal keeps its full log at
``runs/deploy/<name>.rejected.log``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
import time
from pathlib import Path

from ..core.loading import load, save_checkpoint
from ..core.repair import REPAIRS, repaired
from ..core.spec import parse_act
from ..data.datasets import file_digest, resolve_data
from ..measure.quant import benchmark_fp32_int8, calibration_images, validate_onnx
from ..targets.base import ToolchainRejected, get_backend
from ..targets.table import check_target
from ..utils.atomic import write_json, write_text
from ..utils.console import quiet, say
from ..utils.errors import UserError
from ..version import __version__

DEPLOY_KEYS = {"model", "target", "data", "act", "repair", "imgsz", "name", "project", "n_calib", "seed", "seconds"}
DEFAULTS = {"project": "runs/deploy", "n_calib": 64, "seed": 0, "seconds": 20.0, "repair": "none"}
BLOCKS = 4  # independent benchmark blocks (fresh processes): the paired CI is a t-interval over them
VENDOR_LABEL = "the vendor's own estimate from its compiler, not a measurement on a device"
METRICS = ("map50_95", "map50", "precision", "recall")


def deploy_from_cli(tokens: list[str], force: bool = False) -> Path:
    """Parse ``key=value`` tokens (``DEPLOY_KEYS``) and run ``deploy``; returns the run folder."""
    from .config import parse_kv

    args = parse_kv(tokens, DEPLOY_KEYS)
    for key in ("model", "target", "data"):
        if args.get(key) in (None, ""):
            raise UserError(f"deploy needs {key}=; e.g. yolo-leaky deploy model=best.pt target=ort-cpu data=coco8.yaml")
    command = "yolo-leaky deploy " + " ".join(shlex.quote(t) for t in tokens) + (" --force" if force else "")
    return deploy(**args, force=force, command=command)


def deploy(
    model: str,
    target: str,
    data: str,
    act: str | None = None,
    repair: str = "none",
    imgsz: int | None = None,
    name: str | None = None,
    project: str = DEFAULTS["project"],
    n_calib: int = DEFAULTS["n_calib"],
    seed: int = DEFAULTS["seed"],
    seconds: float = DEFAULTS["seconds"],
    force: bool = False,
    command: str | None = None,
) -> Path:
    """Build, score and time one target's artifact; write ``<project>/<name>/`` atomically (module docstring).

    Args:
        model: A checkpoint (``.pt``), SiLU or already swapped and recovered.
        target: A backend's name (``targets.base.backends()``).
        data: A dataset YAML (``coco8``, ``shapes``): calibration from ``train``, scores from ``val``.
        act: Swap every activation to this first (e.g. ``relu``), to see what the target does with it.
        repair: With ``act``: a training-free repair on the calibration images (``core.repair.REPAIRS``).
        imgsz: Square input size of the artifact; default: the size the checkpoint was trained at, else 640.
        name: Run folder name; default ``<model stem>-<act or 'as-trained'>-<target>``.
        project: Parent folder of the run folders.
        n_calib: Calibration images (from ``train``).
        seed: Seed of the calibration draw and of the benchmark.
        seconds: Timing budget of the latency benchmark (0 skips it).
        force: Replace an existing run folder of that name.
        command: The command line recorded in ``deploy.json`` (the CLI passes it).

    Returns:
        The run folder.

    Raises:
        UserError: A bad argument, a target typo, a missing toolchain, or a toolchain that rejects the model.

    Examples:
        >>> deploy("best.pt", "ort-cpu", "coco8", act="relu", repair="bn", imgsz=320)  # doctest: +SKIP
        PosixPath('runs/deploy/best-relu-ort-cpu')
    """
    backend = get_backend(str(target))  # a typo or a missing toolchain fails before anything is loaded
    spec = parse_act(str(act)) if act is not None else None
    repair = str(repair or "none")
    if repair not in REPAIRS:
        raise UserError(f"unknown repair {repair!r}; choose one of {', '.join(REPAIRS)}")
    if repair != "none" and spec is None:
        raise UserError(f"repair={repair} repairs a swap; add act=<activation>, or drop repair=")
    for key, value, low in (("n_calib", n_calib, 1), ("seconds", seconds, 0), ("imgsz", imgsz or 32, 32)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < low:
            raise UserError(f"{key}={value!r} is not a number >= {low}; pass e.g. {key}={DEFAULTS.get(key, 320)}")
    yolo = load(model, act=spec)
    if yolo.task != "detect":  # every backend's scorer, naive contrast and decode split are detection's
        raise UserError(
            f"deploy builds and scores detection models; {model} is a {yolo.task} model. Compare its activations with "
            f"yolo-leaky compare weights={model} (every task), or export it yourself after load('{model}', act=...)"
        )
    data_yaml = resolve_data(str(data))  # after the model's checks: it may write the synthetic shapes data
    imgsz = int(imgsz or _trained_imgsz(yolo) or 640)
    label = spec.label if spec is not None else "as-trained"
    name = str(name or f"{Path(str(model)).stem}-{label}-{backend.name}")
    if not name or "/" in name or name.startswith("."):
        raise UserError(f"name={name!r} is not a folder name; pass e.g. name=relu-ort")
    project_dir = Path(project)
    final = project_dir / name
    if final.exists() and not force:
        raise UserError(f"{final} already exists; pass another name= or --force to replace it")
    table_key = backend.table_entry()  # tflite-int8 runs where the table's tflite-xnnpack row describes
    warnings = check_target(yolo, table_key) if table_key else []
    for line in warnings:
        say(f"[deploy] warning: {line}")
    project_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=project_dir))
    try:
        with quiet(tmp / "deploy.log"):
            record = _build_all(backend, yolo, model, spec, repair, data_yaml, imgsz, n_calib, seed, seconds, tmp)
        record.update(
            command=command or f"deploy(model={model!r}, target={target!r}, data={data!r}, act={act!r})",
            target_warnings=warnings,
            target_table=table_key,
        )
        write_json(tmp / "deploy.json", record)
        write_text(tmp / "deploy.md", render_card(json.loads((tmp / "deploy.json").read_text())))
        _readable(tmp)
        _replace(tmp, final)
    except ToolchainRejected as e:
        kept = project_dir / f"{name}.rejected.log"
        if e.log.is_file():
            shutil.copyfile(e.log, kept)
        shutil.rmtree(tmp, ignore_errors=True)
        raise e.moved(kept) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"[deploy] {final}/deploy.md")
    return final


def _trained_imgsz(yolo) -> int | None:
    size = ((getattr(yolo, "ckpt", None) or {}).get("train_args") or {}).get("imgsz")
    return int(size) if isinstance(size, int) else None


def _build_all(backend, yolo, model, spec, repair, data_yaml, imgsz, n_calib, seed, seconds, tmp: Path) -> dict:
    """Everything of one deploy inside ``tmp``; returns deploy.json's record (paths relative to the run folder)."""
    say(f"[deploy] {backend.name}: calibration set ({n_calib} train images at {imgsz} px, seed {seed})")
    calib = calibration_images(data_yaml, n=int(n_calib), imgsz=imgsz, seed=int(seed))
    record: dict = {
        "what": f"the {backend.name} artifact of {model}"
        + (f" with every activation swapped to {spec}" if spec else ""),
        "yolo_leaky": __version__,
        "model": {"path": str(model), "sha256": file_digest(model)},
        "act": str(spec) if spec else None,
        "target": backend.name,
        "imgsz": imgsz,
        "data": {"yaml": str(data_yaml), "synthetic": _is_synthetic(data_yaml)},
        "calibration": calib.to_dict(),
    }
    weights = Path(model)
    if spec is not None:
        done = {"repair": "none"}
        if repair != "none":
            import torch

            say(f"[deploy] repair {repair} of the {spec} swap on the calibration set")
            yolo, done = repaired(load(model), yolo, repair, torch.from_numpy(calib.images))
        weights = tmp / f"{Path(str(model)).stem}-{spec.label}.pt"
        save_checkpoint(yolo, weights)
        record["swap"] = {"act": str(spec), "checkpoint": weights.name, "sha256": file_digest(weights), **done}
    say(f"[deploy] {backend.name}: building the artifact")
    started = time.perf_counter()
    build = backend.build(weights, calib, tmp, imgsz)
    record["build_seconds"] = round(time.perf_counter() - started, 1)
    say(f"[deploy] {backend.name}: scoring the artifact and its FP32 reference on {data_yaml}'s val split")
    artifact = backend.score(build, data_yaml, imgsz)
    reference = build.reference or weights
    fp32 = validate_onnx(reference, data_yaml, imgsz)
    record["accuracy"] = {
        "split": "val",
        "artifact": artifact,
        "fp32": fp32,
        "fp32_model": _rel(reference, tmp),
        "delta": {k: artifact[k] - fp32[k] for k in METRICS if k in artifact and k in fp32},
        "how": "Ultralytics' validator (rect=False, batch 1, the artifact's own input size) on the artifact itself "
        "and on the FP32 model in the same format and runtime; the same validation images",
    }
    record["vendor"] = {"label": VENDOR_LABEL, "placement": build.placement, "estimate": build.estimate}
    record["latency"] = _latency(backend, build, imgsz, seconds, seed, spec)
    record["build"] = _relative_build(build.to_dict(), tmp)
    return record


def _latency(backend, build, imgsz: int, seconds: float, seed: int, spec) -> dict:
    if not seconds:
        return {"skipped": "seconds=0"}
    if not backend.runs_on_host or backend.bench_runtime is None or build.reference is None:
        return {"skipped": f"{backend.name}'s artifact is not timed on this host (no benchmark runtime for it)"}
    label = spec.label if spec is not None else "model"
    say(f"[deploy] {backend.name}: timing FP32 and the artifact, interleaved, {BLOCKS} blocks, {seconds:g} s")
    files = {label: {"fp32": str(build.reference), "int8": str(build.artifact)}}
    res, ratios = benchmark_fp32_int8(files, backend.bench_runtime, imgsz, seconds, 1, BLOCKS, seed=seed)
    r = ratios[label]
    return {
        "runtime": backend.bench_runtime,
        "threads": 1,
        "fp32_median_ms": r["fp32_median_ms"],
        "artifact_median_ms": r["int8_median_ms"],
        "ratio": r["paired_ratio"],
        "ratio_ci": [r["paired_ci_low"], r["paired_ci_high"]],
        "blocks": r["blocks"],
        "rounds": r["rounds"],
        "how": "measure.bench: artifact and FP32 reference timed in the same interleaved rounds, each block in a "
        "fresh process; ratio = geometric mean over blocks of the per-round paired ratio artifact/FP32, 95% "
        "t-interval over blocks",
        "machine": {k: res.env.get(k) for k in ("cpu", "cpus", "platform") if k in res.env},
        "table": res.format_table(),
    }


def _is_synthetic(data_yaml: str) -> bool:
    return (Path(data_yaml).parent / "manifest.json").is_file() and Path(data_yaml).name == "shapes.yaml"


def _rel(path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _relative_build(d: dict, root: Path) -> dict:
    for key in ("artifact", "log", "reference"):
        if d.get(key):
            d[key] = _rel(d[key], root)
    d["files"] = [_rel(f, root) for f in d.get("files", [])]
    d["commands"] = [c.replace(str(root.resolve()) + os.sep, "").replace(str(root) + os.sep, "") for c in d["commands"]]
    return d


def _readable(folder: Path) -> None:
    """The modes a plain ``mkdir``/``open`` would have given (mkdtemp and the atomic writer make owner-only ones)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.rglob("*"):
        f.chmod((0o777 if f.is_dir() else 0o666) & ~umask)


def _replace(tmp: Path, final: Path) -> None:
    """Rename the finished ``tmp`` to ``final``; an old ``final`` (``--force``) is moved aside first, then deleted."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
    tmp.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------- card


def render_card(d: dict) -> str:
    """``deploy.md`` from ``deploy.json``'s record alone: every number on the card is a field of the record.

    Examples:
        >>> d = {"target": "ort-cpu", "act": None, "imgsz": 64, "model": {"path": "m.pt"}, "command": "c",
        ...      "data": {"yaml": "d.yaml", "synthetic": False}, "calibration": {"n": 2, "split": "train"},
        ...      "accuracy": {"artifact": {"map50_95": 0.5, "map50": 0.7}, "fp32": {"map50_95": 0.52, "map50": 0.71},
        ...      "delta": {"map50_95": -0.02, "map50": -0.01}}, "vendor": {"placement": None, "estimate": None},
        ...      "latency": {"skipped": "seconds=0"}, "build": {"artifact": "m-int8.onnx", "tools": {}, "commands": []},
        ...      "target_warnings": []}
        >>> "| mAP50-95 | 0.5200 | 0.5000 | -0.0200 |" in render_card(d)
        True
    """
    acc, build, lat, vendor = d["accuracy"], d["build"], d["latency"], d["vendor"]
    act = d.get("act") or "as trained"
    lines = [
        f"# {d['target']}: {Path(d['model']['path']).name}, activations {act}",
        "",
        f"Artifact: `{build['artifact']}` ({d['imgsz']} px, batch 1). Command: `{d['command']}`",
        "",
    ]
    if d["data"].get("synthetic"):
        lines += [
            "**Synthetic data.** Scored on yolo-leaky's synthetic shapes data (the offline stand-in's), not COCO: "
            "these numbers show what the toolchain does to this network, not its accuracy on real images.",
            "",
        ]
    if d.get("swap"):
        s = d["swap"]
        lines += [f"Swapped to `{s['act']}` before building; repair: {s.get('repair', 'none')}.", ""]
    for w in d.get("target_warnings") or []:
        lines.append(f"- warning (targets table): {w}")
    if d.get("target_warnings"):
        lines.append("")
    cal = d["calibration"]
    lines += [
        f"## Accuracy ({d['data']['yaml']}, {acc.get('split', 'val')} split)",
        "",
        f"Quantized on {cal['n']} {cal['split']} images. {acc.get('how', '')}.",
        "",
        "| metric | FP32 | artifact | artifact - FP32 |",
        "|---|---|---|---|",
    ]
    names = {"map50_95": "mAP50-95", "map50": "mAP50", "precision": "precision", "recall": "recall"}
    for key, label in names.items():
        if key in acc["artifact"] and key in acc["fp32"]:
            lines.append(
                f"| {label} | {acc['fp32'][key]:.4f} | {acc['artifact'][key]:.4f} | {acc['delta'][key]:+.4f} |"
            )
    lines += ["", "## Host latency", ""]
    if "skipped" in lat:
        lines.append(f"Not timed: {lat['skipped']}.")
    else:
        lo, hi = lat["ratio_ci"]
        lines += [
            f"{lat['runtime']}, {lat['threads']} thread: FP32 {lat['fp32_median_ms']:.2f} ms, artifact "
            f"{lat['artifact_median_ms']:.2f} ms (medians); artifact/FP32 {lat['ratio']:.3f} "
            f"[95% CI {lo:.3f}, {hi:.3f}] over {lat['blocks']} blocks, {lat['rounds']} rounds. {lat['how']}.",
        ]
    lines += ["", "## The vendor's compiler", ""]
    if vendor.get("placement") is None and vendor.get("estimate") is None:
        lines.append(f"{d['target']} has no compiler that places ops or estimates performance.")
    else:
        if vendor.get("placement") is not None:
            for where, ops in vendor["placement"].items():
                total = sum(ops.values()) if isinstance(ops, dict) else ops
                shown = ", ".join(f"{k} {v}" for k, v in ops.items()) if isinstance(ops, dict) else ""
                lines.append(f"- ops on {where}: {total}" + (f" ({shown})" if shown else ""))
        if vendor.get("estimate") is not None:
            shown = ", ".join(f"{k} {v}" for k, v in vendor["estimate"].items())
            lines.append(f"- estimate ({d['vendor'].get('label', VENDOR_LABEL)}): {shown}")
    lines += ["", "## Tools and commands", ""]
    lines += [f"- {tool} {version}" for tool, version in build.get("tools", {}).items()]
    lines += [""] + [f"    {c}" for c in build.get("commands", [])]
    return "\n".join(lines) + "\n"
